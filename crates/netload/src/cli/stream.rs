//! `netload tcp HOST` and `netload udp HOST`: one stream test, or with `udp --find-rate` a
//! search for the no-drop rate, against a netload server or an iperf3 3.x server.

use std::io::Write as _;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use serde::Serialize;

use super::{loss_percent, non_negative_seconds, positive_seconds, resolution_percent};
use crate::client::{ClientError, ClientOptions, TestOutcome, run_stream_test};
use crate::report::Interval;
use crate::spec::{
    BitRate, ByteSize, Direction, Limits, Protocol, TestSpec, Zerocopy, parse_affinity,
};
use crate::{control, iperf3, ndr, render, signals};

/// What the server at the other end is.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Peer {
    /// A `netload server`.
    Netload,
    /// An iperf3 3.x server.
    Iperf3,
}

impl Peer {
    fn default_port(self) -> u16 {
        match self {
            Peer::Netload => control::DEFAULT_PORT,
            Peer::Iperf3 => iperf3::proto::DEFAULT_PORT,
        }
    }

    /// Runs one test against this kind of server.
    fn run_test(
        self,
        opts: &ClientOptions,
        on_interval: &mut dyn FnMut(&Interval),
    ) -> Result<TestOutcome, ClientError> {
        match self {
            Peer::Netload => run_stream_test(opts, on_interval),
            Peer::Iperf3 => iperf3::client::run_test(opts, on_interval),
        }
    }
}

/// Flags `netload tcp` and `netload udp` share.
#[derive(Args, Clone)]
pub struct CommonArgs {
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

/// Flags of `netload tcp`.
#[derive(Args)]
pub struct TcpArgs {
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

/// Flags of `netload udp`.
#[derive(Args)]
pub struct UdpArgs {
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
    #[arg(long, default_value_t = ndr::DEFAULT_CONFIRMATIONS, requires = "find_rate",
          value_parser = clap::value_parser!(u32).range(0..=10))]
    confirm: u32,
    /// Stop bisecting when the lowest failure is within this many percent of the highest pass.
    #[arg(long, default_value_t = ndr::DEFAULT_RESOLUTION * 100.0,
          value_parser = resolution_percent, requires = "find_rate")]
    resolution: f64,
    /// Wall-time budget of the whole search, seconds; a trial that would end past it is not
    /// started.
    #[arg(long, default_value_t = ndr::DEFAULT_BUDGET.as_secs_f64(),
          value_parser = positive_seconds, requires = "find_rate")]
    search_budget: f64,
    /// Most trials of the search, probe and confirmations included.
    #[arg(long, default_value_t = ndr::DEFAULT_MAX_TRIALS, requires = "find_rate",
          value_parser = clap::value_parser!(u32).range(1..=200))]
    max_trials: u32,
}

// No doc lines on the variants: clap would print them and change `--help`.
#[derive(Clone, Copy, ValueEnum)]
enum ZerocopyArg {
    Sendfile,
    Msg,
}

/// `netload tcp`: one TCP stream test.
pub fn tcp(args: &TcpArgs) -> Result<ExitCode> {
    stream_test(&args.common, &tcp_spec(args))
}

/// `netload udp`: one UDP stream test, or with `--find-rate` the no-drop rate search.
pub fn udp(args: &UdpArgs) -> Result<ExitCode> {
    let spec = udp_spec(args);
    match args.find_rate {
        Some(loss) => find_rate(args, loss, &spec),
        None => stream_test(&args.common, &spec),
    }
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

/// Validates `spec` as a usage error, then the client options for it: the peer's port,
/// the phase timeout and the Ctrl-C flag.
fn client_options(c: &CommonArgs, spec: &TestSpec) -> Result<(u16, ClientOptions)> {
    if let Err(e) = spec.validate(&Limits::default()) {
        super::usage_error(clap::error::ErrorKind::ValueValidation, e);
    }
    let port = c.port.unwrap_or(c.peer.default_port());
    let mut opts = ClientOptions::new(c.host.clone(), port, spec.clone());
    opts.phase_timeout = Duration::from_secs_f64(c.connect_timeout);
    opts.interrupt = Some(interrupt_flag()?);
    Ok((port, opts))
}

/// Ctrl-C stops both ends early; what was measured is still reported. A second signal
/// while the first is being handled exits at once.
fn interrupt_flag() -> Result<Arc<AtomicBool>> {
    signals::interrupt_flag().context("installing signal handlers")
}

/// How results are printed: a table, one JSON document, or JSON lines as they happen.
#[derive(Clone, Copy)]
struct Output {
    json: bool,
    json_stream: bool,
}

impl Output {
    fn of(c: &CommonArgs) -> Self {
        Output {
            json: c.json,
            json_stream: c.json_stream,
        }
    }

    fn human(self) -> bool {
        !self.json && !self.json_stream
    }

    /// Prints a live event: `event` as a JSON line with `--json-stream`, `line` in the table.
    fn live(
        self,
        out: &mut impl std::io::Write,
        event: impl FnOnce() -> String,
        line: impl FnOnce() -> String,
    ) {
        let text = if self.json_stream {
            event()
        } else if self.human() {
            line()
        } else {
            return;
        };
        let _ = writeln!(out, "{text}");
        let _ = out.flush();
    }

    /// Prints the final report: pretty JSON, an `end` event, or the table.
    fn end<T: Serialize>(
        self,
        out: &mut impl std::io::Write,
        report: &T,
        table: impl FnOnce() -> String,
    ) -> Result<()> {
        if self.json {
            let _ = writeln!(out, "{}", serde_json::to_string_pretty(report)?);
        } else if self.json_stream {
            let _ = writeln!(
                out,
                "{}",
                serde_json::json!({ "event": "end", "report": report })
            );
        } else {
            let _ = write!(out, "{}", table());
        }
        Ok(())
    }
}

fn stream_test(c: &CommonArgs, spec: &TestSpec) -> Result<ExitCode> {
    let (port, opts) = client_options(c, spec)?;
    let output = Output::of(c);
    let mut stdout = std::io::stdout().lock();
    if output.human() && spec.interval_s > 0.0 {
        let _ = writeln!(stdout, "{}", render::interval_header(spec));
    }
    let outcome = {
        let mut on_interval = |i: &Interval| {
            output.live(
                &mut stdout,
                || {
                    serde_json::json!({ "event": "interval", "side": "client", "interval": i })
                        .to_string()
                },
                || render::interval_line(i),
            );
        };
        c.peer.run_test(&opts, &mut on_interval)?
    };
    let report = &outcome.report;
    output.end(&mut stdout, report, || {
        render::summary(report, &format!("{}:{port}", c.host))
    })?;
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

/// `netload udp --find-rate`: trials against the server until the search ends.
fn find_rate(a: &UdpArgs, loss: f64, spec: &TestSpec) -> Result<ExitCode> {
    let c = &a.common;
    let confirm_s = c.time.unwrap_or(2.0);
    let warmup_s = c.omit.unwrap_or(0.25);
    let mut spec = spec.clone();
    spec.omit_s = warmup_s;
    // Validated at the longest trial it will run.
    spec.duration_s = a.trial_time.max(confirm_s);
    let (_, base) = client_options(c, &spec)?;
    // Beyond warm-up and measured window a trial costs its set-up, the receiver's drain
    // grace and the pause before the next one.
    let pause = Duration::from_millis(100);
    let overhead = crate::stream::DRAIN_GRACE.as_secs_f64() + pause.as_secs_f64() + 0.1;
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
    let output = Output::of(c);
    let mut stdout = std::io::stdout().lock();
    if output.human() {
        let _ = write!(stdout, "{}", render::rate_search_plan(&opts, &spec));
        let _ = stdout.flush();
    }
    let report = {
        let mut on_trial = |t: &ndr::Trial| {
            output.live(
                &mut stdout,
                || serde_json::json!({ "event": "trial", "trial": t }).to_string(),
                || render::rate_search_trial(t),
            );
        };
        let peer = c.peer;
        let mut trial = |o: &ClientOptions, cb: &mut dyn FnMut(&Interval)| peer.run_test(o, cb);
        ndr::run(&base, &opts, &mut trial, &mut on_trial)?
    };
    output.end(&mut stdout, &report, || {
        render::rate_search_summary(&report)
    })?;
    Ok(match report.result.status {
        ndr::SearchStatus::Interrupted => ExitCode::from(130),
        ndr::SearchStatus::NoPassingRate => ExitCode::from(3),
        _ => ExitCode::SUCCESS,
    })
}
