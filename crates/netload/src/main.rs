//! `netload` command line: parses arguments and calls the library.

use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use netload::client::{ClientOptions, run_stream_test};
use netload::control::DEFAULT_PORT;
use netload::report::StreamReport;
use netload::server::{Server, ServerConfig};
use netload::spec::{
    BitRate, ByteSize, Direction, Limits, Protocol, TestSpec, Zerocopy, parse_affinity,
};
use netload::{bench, http, idle, ndr, render, rr};

/// Network load generator and sink: TCP/UDP streams with CPU accounting.
#[derive(Parser)]
#[command(name = "netload", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve tests (control and data on one TCP port, UDP on the same port number).
    Server(ServerArgs),
    /// TCP stream throughput test against a netload server.
    Tcp(TcpArgs),
    /// UDP stream throughput test against a netload server.
    Udp(UdpArgs),
    /// Microbenchmark netload on this host: in-process server, loopback or a veth pair.
    Bench(BenchArgs),
    /// Request/response latency: tcp-rr, tcp-crr (connect per transaction), udp-rr.
    Rr(rr::RrArgs),
    /// HTTP/1.1 GETs against one or more URLs: connect time, TTFB, per-replica counts.
    Http(http::client::HttpArgs),
    /// Sleep until SIGTERM/SIGINT: the filler pod of scale scenarios.
    Idle(idle::IdleArgs),
    /// Only the request/response responder (`netload server` also runs one on `--rr-port`).
    RrServer(rr::RrServerArgs),
    /// Only the HTTP server (`netload server --http PORT` also runs one).
    HttpServer(http::server::HttpServerArgs),
    /// Print the JSON Schema of `--json` stream reports (or of `udp --find-rate --json`).
    Schema(SchemaArgs),
}

#[derive(Args)]
struct ServerArgs {
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0")]
    bind: IpAddr,
    /// Port (TCP for control and data, UDP for UDP streams).
    #[arg(short, long, default_value_t = DEFAULT_PORT)]
    port: u16,
    /// Serve one test, then exit.
    #[arg(long)]
    once: bool,
    /// Longest test (warm-up included) a client may ask for, seconds.
    #[arg(long, default_value_t = 3600.0, value_parser = positive_seconds)]
    max_duration: f64,
    /// Most parallel streams per direction a client may ask for.
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u32).range(1..=1024))]
    max_parallel: u32,
    /// Tests running at once.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=256))]
    max_sessions: u32,
    /// Port of the request/response responder for `netload rr` (TCP and UDP); 0 = off.
    /// Without this flag the responder tries port 9202 and is skipped, with a warning, when
    /// that port is taken.
    #[arg(long)]
    rr_port: Option<u16>,
    /// Also serve iperf3 3.x clients (`iperf3 -c HOST -p PORT`) on this port, TCP and UDP;
    /// 5201 when given without a value.
    #[arg(long, num_args = 0..=1, default_missing_value = "5201")]
    iperf3_port: Option<u16>,
    /// HTTP server options (`--http PORT` turns it on).
    #[command(flatten)]
    http: http::server::HttpServerArgs,
}

#[derive(Args)]
struct SchemaArgs {
    /// Which document.
    #[arg(value_enum, default_value_t = SchemaKind::Stream)]
    kind: SchemaKind,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum SchemaKind {
    /// `netload tcp|udp --json`.
    Stream,
    /// `netload udp --find-rate --json`.
    RateSearch,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Peer {
    /// A `netload server`.
    Netload,
    /// An iperf3 3.x server.
    Iperf3,
}

#[derive(Args, Clone)]
struct CommonArgs {
    /// Server host name or address.
    host: String,
    /// Server port [default: 9201, or 5201 with `--peer iperf3`].
    #[arg(short, long)]
    port: Option<u16>,
    /// What the server is: netload, or an iperf3 3.x server (`iperf3 -s`), driven over
    /// iperf3's own protocol; its side of the report is then iperf3's figures.
    #[arg(long, value_enum, default_value_t = Peer::Netload)]
    peer: Peer,
    /// Measured duration, seconds [default: 10; with `--find-rate`, of each confirmation
    /// trial: 2].
    #[arg(short = 't', long = "time", value_parser = positive_seconds)]
    time: Option<f64>,
    /// Warm-up before measuring, seconds (not counted anywhere) [default: 0; with
    /// `--find-rate`, before every trial: 0.25].
    #[arg(long, value_parser = non_negative_seconds)]
    omit: Option<f64>,
    /// Interval report period, seconds (0 = none).
    #[arg(short, long, default_value_t = 1.0, value_parser = non_negative_seconds)]
    interval: f64,
    /// Parallel streams (one thread each, on both ends).
    #[arg(short = 'P', long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=128))]
    parallel: u32,
    /// Server sends, client receives.
    #[arg(short = 'R', long, conflicts_with = "bidir")]
    reverse: bool,
    /// Both ends send at once (separate streams per direction).
    #[arg(long)]
    bidir: bool,
    /// Bytes per write (TCP) or UDP payload bytes per datagram, e.g. 1400 or 256K.
    #[arg(short, long)]
    length: Option<ByteSize>,
    /// Socket buffer size (SO_SNDBUF and SO_RCVBUF), e.g. 4M; the effective value is reported.
    #[arg(short, long)]
    window: Option<ByteSize>,
    /// Pin stream threads: client cores, optionally `/` server cores, e.g. `0,1/1,0`.
    #[arg(long, value_parser = parse_affinity)]
    affinity: Option<(Vec<usize>, Vec<usize>)>,
    /// Print one JSON document at the end instead of the table.
    #[arg(long, conflicts_with = "json_stream")]
    json: bool,
    /// Print one JSON line per interval as it happens, then the report as a last line.
    #[arg(long)]
    json_stream: bool,
    /// Timeout for connecting and for each protocol phase, seconds.
    #[arg(long, default_value_t = 10.0, value_parser = positive_seconds)]
    connect_timeout: f64,
}

#[derive(Args)]
struct TcpArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// TCP_MAXSEG to set; the effective MSS is read back and the test fails if not taken.
    #[arg(long, value_parser = clap::value_parser!(u32).range(88..=65535))]
    mss: Option<u32>,
    /// Disable Nagle's algorithm (TCP_NODELAY).
    #[arg(short = 'N', long)]
    nodelay: bool,
    /// Zero-copy send: `sendfile` or `msg` (MSG_ZEROCOPY).
    #[arg(long, value_enum)]
    zerocopy: Option<ZerocopyArg>,
    /// Receivers discard payload in the kernel (MSG_TRUNC) instead of copying it; labelled in output.
    #[arg(long)]
    rx_discard: bool,
    /// Congestion control algorithm, e.g. cubic or bbr.
    #[arg(long)]
    congestion: Option<String>,
}

#[derive(Args)]
struct UdpArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Target rate per stream in bits/s, e.g. 500M; 0 = unlimited. Paced evenly.
    #[arg(short = 'b', long, default_value = "1G")]
    rate: BitRate,
    /// Do not use UDP GSO/GRO (segmentation and coalescing offload); batching stays on.
    #[arg(long)]
    no_gso: bool,
    /// One datagram per syscall: no sendmmsg/recvmmsg batching and no GSO/GRO.
    #[arg(long)]
    no_batch: bool,
    /// Search for the highest offered rate whose receiver loss is at most LOSS percent
    /// (the no-drop rate; 0.1 when given without a value): probe unlimited, bracket, bisect,
    /// confirm. `--rate` does not apply; `-t` is the length of each confirmation trial.
    #[arg(long, value_name = "LOSS", num_args = 0..=1, default_missing_value = "0.1",
          value_parser = loss_percent, conflicts_with = "rate")]
    find_rate: Option<f64>,
    /// Measured seconds of each search trial (probe, bracket, bisect).
    #[arg(long, default_value_t = 1.0, value_parser = positive_seconds, requires = "find_rate")]
    trial_time: f64,
    /// Confirmation trials the final rate must pass.
    #[arg(long, default_value_t = netload::ndr::DEFAULT_CONFIRMATIONS, requires = "find_rate",
          value_parser = clap::value_parser!(u32).range(0..=10))]
    confirm: u32,
    /// Stop bisecting when the lowest failure is within this many percent of the highest pass.
    #[arg(long, default_value_t = netload::ndr::DEFAULT_RESOLUTION * 100.0,
          value_parser = resolution_percent, requires = "find_rate")]
    resolution: f64,
    /// Wall-time budget of the whole search, seconds; a trial that would end past it is not
    /// started.
    #[arg(long, default_value_t = netload::ndr::DEFAULT_BUDGET.as_secs_f64(),
          value_parser = positive_seconds, requires = "find_rate")]
    search_budget: f64,
    /// Most trials of the search, probe and confirmations included.
    #[arg(long, default_value_t = netload::ndr::DEFAULT_MAX_TRIALS, requires = "find_rate",
          value_parser = clap::value_parser!(u32).range(1..=200))]
    max_trials: u32,
}

#[derive(Clone, Copy, ValueEnum)]
enum ZerocopyArg {
    Sendfile,
    Msg,
}

#[derive(Args)]
struct BenchArgs {
    /// Run between two network namespaces joined by a veth pair (root) instead of loopback.
    #[arg(long)]
    netns: bool,
    /// MTU of the veth pair.
    #[arg(long, default_value_t = 1500, value_parser = clap::value_parser!(u32).range(1280..=65535))]
    mtu: u32,
    /// Seconds per case.
    #[arg(short = 't', long = "time", default_value_t = 3.0, value_parser = positive_seconds)]
    time: f64,
    /// Run only these cases (comma separated); see `--list`.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// List the cases and exit.
    #[arg(long)]
    list: bool,
    /// Write a Markdown report here.
    #[arg(long)]
    report: Option<std::path::PathBuf>,
    /// Write every case's JSON report here (one JSON array).
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

fn positive_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("{s:?} is not a positive number of seconds")),
    }
}

fn loss_percent(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..100.0).contains(&v) => Ok(v),
        _ => Err(format!(
            "{s:?} is not a loss percentage from 0 to below 100"
        )),
    }
}

fn resolution_percent(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v <= 50.0 => Ok(v),
        _ => Err(format!(
            "{s:?} is not a resolution in percent above 0 and at most 50"
        )),
    }
}

fn non_negative_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("{s:?} is not zero or a positive number of seconds")),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Server(args) => server(&args),
        Command::Tcp(args) => {
            let spec = tcp_spec(&args);
            stream_test(&args.common, &spec)
        }
        Command::Udp(args) => {
            let spec = udp_spec(&args);
            match args.find_rate {
                Some(loss) => find_rate(&args, loss, &spec),
                None => stream_test(&args.common, &spec),
            }
        }
        Command::Bench(args) => bench_cmd(&args),
        Command::Rr(args) => rr::run(&args).map(|_| ExitCode::SUCCESS),
        Command::Http(args) => http::client::run(&args).map(|_| ExitCode::SUCCESS),
        Command::Idle(args) => idle::run(&args)
            .map(|_| ExitCode::SUCCESS)
            .context("waiting for a signal"),
        Command::RrServer(args) => rr::run_server(&args).map(|()| ExitCode::SUCCESS),
        Command::HttpServer(args) => http::server::run(&args).map(|()| ExitCode::SUCCESS),
        Command::Schema(args) => {
            let schema = match args.kind {
                SchemaKind::Stream => schemars::schema_for!(StreamReport),
                SchemaKind::RateSearch => schemars::schema_for!(ndr::RateSearchReport),
            };
            println!(
                "{}",
                serde_json::to_string_pretty(&schema).expect("schema serialises")
            );
            Ok(ExitCode::SUCCESS)
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("netload: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn server(args: &ServerArgs) -> Result<ExitCode> {
    let config = ServerConfig {
        bind: SocketAddr::new(args.bind, args.port),
        limits: Limits {
            max_duration_s: args.max_duration,
            max_parallel: args.max_parallel,
        },
        max_sessions: args.max_sessions as usize,
        once: args.once,
        iperf3_port: args.iperf3_port,
        ..ServerConfig::default()
    };
    let server = Server::bind(config)
        .with_context(|| format!("cannot listen on {}:{}", args.bind, args.port))?;
    // The responder and the HTTP server live as long as the stream server.
    let _rr = match args.rr_port {
        Some(0) => None,
        Some(port) => Some(
            rr::serve(
                SocketAddr::new(args.bind, port),
                rr::RrServerConfig::default(),
            )
            .with_context(|| format!("cannot start the rr responder on port {port}"))?,
        ),
        None => {
            let addr = SocketAddr::new(args.bind, rr::DEFAULT_RR_PORT);
            rr::serve(addr, rr::RrServerConfig::default())
                .inspect_err(|e| eprintln!("netload server: no rr responder on {addr}: {e}"))
                .ok()
        }
    };
    let _http = args
        .http
        .http
        .map(|port| {
            let config =
                http::server::ServerConfig::from_args(&args.http).map_err(anyhow::Error::msg)?;
            http::server::HttpServer::bind(SocketAddr::new(args.http.http_bind, port), config)
                .with_context(|| format!("cannot start the HTTP server on port {port}"))
        })
        .transpose()?;
    let stop = server.shutdown_flag();
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, std::sync::Arc::clone(&stop))
            .context("installing signal handlers")?;
    }
    eprintln!("netload server listening on {}", server.local_addr()?);
    if let Some(addr) = server.iperf3_addr() {
        eprintln!("netload server: iperf3 clients served on {addr}");
    }
    server.run().context("server failed")?;
    Ok(ExitCode::SUCCESS)
}

fn common_spec(c: &CommonArgs, protocol: Protocol) -> TestSpec {
    let mut spec = TestSpec::new(protocol);
    spec.duration_s = c.time.unwrap_or(10.0);
    spec.omit_s = c.omit.unwrap_or(0.0);
    spec.interval_s = c.interval;
    spec.parallel = c.parallel;
    spec.direction = if c.bidir {
        Direction::Bidir
    } else if c.reverse {
        Direction::Reverse
    } else {
        Direction::Forward
    };
    if let Some(l) = c.length {
        spec.length = u32::try_from(l.0).unwrap_or(u32::MAX);
    }
    spec.window = c.window.map(|w| u32::try_from(w.0).unwrap_or(u32::MAX));
    if let Some((client, server)) = &c.affinity {
        spec.client_affinity.clone_from(client);
        spec.server_affinity.clone_from(server);
    }
    spec
}

fn tcp_spec(a: &TcpArgs) -> TestSpec {
    let mut spec = common_spec(&a.common, Protocol::Tcp);
    spec.mss = a.mss;
    spec.nodelay = a.nodelay;
    spec.rx_discard = a.rx_discard;
    spec.congestion.clone_from(&a.congestion);
    spec.zerocopy = match a.zerocopy {
        None => Zerocopy::None,
        Some(ZerocopyArg::Sendfile) => Zerocopy::Sendfile,
        Some(ZerocopyArg::Msg) => Zerocopy::Msg,
    };
    spec
}

fn udp_spec(a: &UdpArgs) -> TestSpec {
    let mut spec = common_spec(&a.common, Protocol::Udp);
    spec.udp_rate_bps = a.rate.0;
    spec.udp_gso = !a.no_gso && !a.no_batch;
    spec.udp_batch = !a.no_batch;
    spec
}

fn stream_test(c: &CommonArgs, spec: &TestSpec) -> Result<ExitCode> {
    if let Err(e) = spec.validate(&Limits::default()) {
        Cli::command()
            .error(clap::error::ErrorKind::ValueValidation, e.to_string())
            .exit();
    }
    let port = c.port.unwrap_or(match c.peer {
        Peer::Netload => DEFAULT_PORT,
        Peer::Iperf3 => netload::iperf3::proto::DEFAULT_PORT,
    });
    let mut opts = ClientOptions::new(c.host.clone(), port, spec.clone());
    opts.phase_timeout = Duration::from_secs_f64(c.connect_timeout);
    opts.interrupt = Some(interrupt_flag()?);
    let human = !c.json && !c.json_stream;
    let mut stdout = std::io::stdout().lock();
    if human && spec.interval_s > 0.0 {
        let _ = writeln!(stdout, "{}", render::interval_header(spec));
    }
    let json_stream = c.json_stream;
    let mut on_interval = |i: &netload::report::Interval| {
        let line = if json_stream {
            serde_json::json!({ "event": "interval", "side": "client", "interval": i }).to_string()
        } else if human {
            render::interval_line(i)
        } else {
            return;
        };
        let _ = writeln!(stdout, "{line}");
        let _ = stdout.flush();
    };
    let outcome = match c.peer {
        Peer::Netload => run_stream_test(&opts, &mut on_interval)?,
        Peer::Iperf3 => netload::iperf3::client::run_test(&opts, &mut on_interval)?,
    };
    let report = &outcome.report;
    if c.json {
        let _ = writeln!(stdout, "{}", serde_json::to_string_pretty(report)?);
    } else if c.json_stream {
        let _ = writeln!(
            stdout,
            "{}",
            serde_json::json!({ "event": "end", "report": report })
        );
    } else {
        let _ = write!(
            stdout,
            "{}",
            render::summary(report, &format!("{}:{port}", c.host))
        );
    }
    if report.interrupted {
        Ok(ExitCode::from(130))
    } else if outcome.errors.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        for e in &outcome.errors {
            eprintln!("netload: {e}");
        }
        Ok(ExitCode::from(3))
    }
}

/// Ctrl-C stops both ends early; what was measured is still reported. A second signal
/// while the first is being handled exits at once.
fn interrupt_flag() -> Result<std::sync::Arc<std::sync::atomic::AtomicBool>> {
    let interrupt = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(
            signal,
            130,
            std::sync::Arc::clone(&interrupt),
        )
        .and_then(|_| signal_hook::flag::register(signal, std::sync::Arc::clone(&interrupt)))
        .context("installing signal handlers")?;
    }
    Ok(interrupt)
}

/// `netload udp --find-rate`: trials against the server until the search ends.
fn find_rate(a: &UdpArgs, loss: f64, spec: &TestSpec) -> Result<ExitCode> {
    let c = &a.common;
    let confirm_s = c.time.unwrap_or(2.0);
    let warmup_s = c.omit.unwrap_or(0.25);
    let mut spec = spec.clone();
    spec.omit_s = warmup_s;
    // Validated at the longest trial it will run.
    spec.duration_s = a.trial_time.max(confirm_s);
    if let Err(e) = spec.validate(&Limits::default()) {
        Cli::command()
            .error(clap::error::ErrorKind::ValueValidation, e.to_string())
            .exit();
    }
    let port = c.port.unwrap_or(match c.peer {
        Peer::Netload => DEFAULT_PORT,
        Peer::Iperf3 => netload::iperf3::proto::DEFAULT_PORT,
    });
    // Beyond warm-up and measured window a trial costs its set-up, the receiver's drain
    // grace and the pause before the next one.
    let pause = Duration::from_millis(100);
    let overhead = netload::stream::DRAIN_GRACE.as_secs_f64() + pause.as_secs_f64() + 0.1;
    let opts = ndr::SearchOptions {
        config: ndr::SearchConfig {
            loss_percent: loss,
            resolution: a.resolution / 100.0,
            confirmations: a.confirm,
            max_trials: a.max_trials,
            budget_s: a.search_budget,
            trial_wall_s: warmup_s + a.trial_time + overhead,
            confirm_wall_s: warmup_s + confirm_s + overhead,
        },
        trial_s: a.trial_time,
        confirm_s,
        warmup_s,
        pause,
    };
    let mut base = ClientOptions::new(c.host.clone(), port, spec.clone());
    base.phase_timeout = Duration::from_secs_f64(c.connect_timeout);
    base.interrupt = Some(interrupt_flag()?);
    let human = !c.json && !c.json_stream;
    let mut stdout = std::io::stdout().lock();
    if human {
        let _ = write!(stdout, "{}", render::rate_search_plan(&opts, &spec));
        let _ = stdout.flush();
    }
    let json_stream = c.json_stream;
    let mut on_trial = |t: &ndr::Trial| {
        let line = if json_stream {
            serde_json::json!({ "event": "trial", "trial": t }).to_string()
        } else if human {
            render::rate_search_trial(t)
        } else {
            return;
        };
        let _ = writeln!(stdout, "{line}");
        let _ = stdout.flush();
    };
    let peer = c.peer;
    let mut trial = |o: &ClientOptions, cb: &mut dyn FnMut(&netload::report::Interval)| match peer {
        Peer::Netload => run_stream_test(o, cb),
        Peer::Iperf3 => netload::iperf3::client::run_test(o, cb),
    };
    let report = ndr::run(&base, &opts, &mut trial, &mut on_trial)?;
    if c.json {
        let _ = writeln!(stdout, "{}", serde_json::to_string_pretty(&report)?);
    } else if c.json_stream {
        let _ = writeln!(
            stdout,
            "{}",
            serde_json::json!({ "event": "end", "report": report })
        );
    } else {
        let _ = write!(stdout, "{}", render::rate_search_summary(&report));
    }
    Ok(match report.result.status {
        ndr::SearchStatus::Interrupted => ExitCode::from(130),
        ndr::SearchStatus::NoPassingRate => ExitCode::from(3),
        _ => ExitCode::SUCCESS,
    })
}

fn bench_cmd(args: &BenchArgs) -> Result<ExitCode> {
    let all = bench::standard_cases(args.time);
    if args.list {
        for c in &all {
            println!("{}", c.name);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let cases: Vec<_> = if args.only.is_empty() {
        all
    } else {
        for name in &args.only {
            if !all.iter().any(|c| c.name == name) {
                let known: Vec<_> = all.iter().map(|c| c.name).collect();
                Cli::command()
                    .error(
                        clap::error::ErrorKind::InvalidValue,
                        format!(
                            "unknown case {name:?} for --only (known: {})",
                            known.join(", ")
                        ),
                    )
                    .exit();
            }
        }
        all.into_iter()
            .filter(|c| args.only.iter().any(|n| n == c.name))
            .collect()
    };
    let path = if args.netns {
        format!("veth pair between two network namespaces, MTU {}", args.mtu)
    } else {
        "loopback".to_string()
    };
    eprintln!(
        "netload bench on {path}: {} cases of {} s",
        cases.len(),
        args.time
    );
    let results = bench::run(&cases, args.netns, args.mtu, &mut |name| {
        eprintln!("  running {name}");
    })?;
    print!("{}", bench::terminal(&results));
    if let Some(p) = &args.report {
        std::fs::write(p, bench::markdown(&results, &path))
            .with_context(|| format!("writing {}", p.display()))?;
        eprintln!("report written to {}", p.display());
    }
    if let Some(p) = &args.json {
        let docs: Vec<_> = results
            .iter()
            .map(|r| match &r.outcome {
                Ok(rep) => serde_json::json!({ "case": r.name, "report": rep }),
                Err(e) => serde_json::json!({ "case": r.name, "error": e }),
            })
            .collect();
        std::fs::write(p, serde_json::to_string_pretty(&docs)?)
            .with_context(|| format!("writing {}", p.display()))?;
    }
    let failed = results.iter().filter(|r| r.outcome.is_err()).count();
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}
