//! The measuring client of `netload rr`: one thread per connection, blocking sockets, a
//! latency histogram per thread and interval, merged into one [`RrReport`].

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::wire::{
    HELLO_LEN, MAGIC, MAX_CPU_REPORT, UDP_RESP_HEADER, cpu_hello, hello, one_shot_hello,
};
use super::{RR_SCHEMA_VERSION, RrInterval, RrMode, RrReport, RrSpec};
use crate::clock;
use crate::cpu::{self, CpuSample};
use crate::hist::{self, LatencyHistogram, LatencySummary, Schedule};
use crate::http::ErrorKind;
use crate::report::CpuReport;
use crate::spec::CloseBy;

/// Client side of a CPU session: opened before the test, closed after it.
struct CpuSession(TcpStream);

impl CpuSession {
    /// Opens a session; `None` when the responder does not answer (it then simply has no
    /// CPU figures in the report).
    fn open(addr: SocketAddr, timeout: Duration) -> Option<Self> {
        let mut s = TcpStream::connect_timeout(&addr, timeout).ok()?;
        s.set_read_timeout(Some(timeout)).ok()?;
        s.set_write_timeout(Some(timeout)).ok()?;
        s.write_all(&cpu_hello()).ok()?;
        let mut ack = [0u8; 1];
        s.read_exact(&mut ack).ok()?;
        (ack[0] == 1).then_some(CpuSession(s))
    }

    /// Ends the session and returns the responder's CPU over it.
    fn close(mut self) -> Option<CpuReport> {
        self.0.write_all(&[1]).ok()?;
        let mut len = [0u8; 4];
        self.0.read_exact(&mut len).ok()?;
        let len = u32::from_be_bytes(len);
        if len > MAX_CPU_REPORT {
            return None;
        }
        let mut json = vec![0u8; len as usize];
        self.0.read_exact(&mut json).ok()?;
        serde_json::from_slice(&json).ok()
    }
}

/// What one client thread measured.
struct ThreadResult {
    intervals: Vec<LatencyHistogram>,
    total: LatencyHistogram,
    send_lag: LatencyHistogram,
    errors: BTreeMap<ErrorKind, u64>,
}

struct ClientCtx {
    addr: SocketAddr,
    /// Where threads flush their histograms at each interval boundary, so a thread holds
    /// only the current interval's (memory independent of `-P` times intervals).
    results: std::sync::Mutex<ThreadResult>,
    n_intervals: usize,
    stop: Arc<AtomicBool>,
    spec: RrSpec,
    start: Instant,
    deadline: Instant,
    timeout: Duration,
    interval: Duration,
}

/// Waits for `buf` to fill, by spinning on a non-blocking socket or blocking; errors with
/// `TimedOut` past `limit`.
///
/// A blocking read waits at most the socket's read timeout, set once to `--timeout` when
/// the connection opens: setting it per transaction would put a `setsockopt` (and the
/// socket lock it takes) inside every measured round trip. A response that arrives in
/// pieces is checked against `limit` between reads.
fn recv_full(stream: &mut TcpStream, buf: &mut [u8], limit: Instant, spin: bool) -> io::Result<()> {
    let mut got = 0;
    let mut polls = 0u32;
    while got < buf.len() {
        match stream.read(&mut buf[got..]) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => {
                got += n;
                if got < buf.len() && clock::now() >= limit {
                    return Err(io::ErrorKind::TimedOut.into());
                }
            }
            Err(e) if nothing_yet(&e) => poll_again(&mut polls, spin, limit)?,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A read that found no data: a spinning socket had none, or a blocking read's timeout
/// ran out (Linux reports both as `EAGAIN`, `WouldBlock`; other systems say `TimedOut`).
fn nothing_yet(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// After a read that found no data: `TimedOut` for a blocking socket (its read timeout is
/// the transaction's) or, spinning, once past `limit`; the clock is read only every 256
/// polls so the spin is not mostly `clock_gettime`.
fn poll_again(polls: &mut u32, spin: bool, limit: Instant) -> io::Result<()> {
    *polls += 1;
    if !spin || polls.is_multiple_of(256) && clock::now() >= limit {
        return Err(io::ErrorKind::TimedOut.into());
    }
    std::hint::spin_loop();
    Ok(())
}

fn classify(e: &io::Error) -> ErrorKind {
    ErrorKind::of_io(e.kind())
}

fn connect(ctx: &ClientCtx) -> io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&ctx.addr, ctx.timeout)?;
    s.set_nodelay(true)?;
    s.set_write_timeout(Some(ctx.timeout))?;
    s.set_read_timeout(Some(ctx.timeout))?;
    Ok(s)
}

enum Link {
    None,
    Tcp(TcpStream),
    Udp(UdpSocket, u64, Vec<u8>),
}

fn transaction(ctx: &ClientCtx, link: &mut Link, req: &[u8], resp: &mut [u8]) -> io::Result<()> {
    let limit = clock::now() + ctx.timeout;
    let spin = ctx.spec.busy_poll;
    match ctx.spec.mode {
        RrMode::TcpRr => {
            if matches!(link, Link::None) {
                let mut s = connect(ctx)?;
                s.write_all(&hello(ctx.spec.request_size, ctx.spec.response_size))?;
                s.set_nonblocking(spin)?;
                *link = Link::Tcp(s);
            }
            let Link::Tcp(s) = link else { unreachable!() };
            write_all_spin(s, req)?;
            recv_full(s, resp, limit, spin)
        }
        RrMode::TcpCrr => {
            let mut s = connect(ctx)?;
            let (request, response) = (ctx.spec.request_size, ctx.spec.response_size);
            let opening = match ctx.spec.close {
                CloseBy::Server => one_shot_hello(request, response),
                CloseBy::Client | CloseBy::Reset => hello(request, response),
            };
            let mut msg = Vec::with_capacity(HELLO_LEN + req.len());
            msg.extend_from_slice(&opening);
            msg.extend_from_slice(req);
            s.write_all(&msg)?;
            recv_full(&mut s, resp, limit, false)?;
            close_crr(s, ctx.spec.close, limit)
        }
        RrMode::UdpRr => {
            if matches!(link, Link::None) {
                let local: SocketAddr = if ctx.addr.is_ipv4() {
                    (Ipv4Addr::UNSPECIFIED, 0).into()
                } else {
                    (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
                };
                let sock = UdpSocket::bind(local)?;
                sock.connect(ctx.addr)?;
                sock.set_nonblocking(spin)?;
                // Once, not per transaction (see `recv_full`); re-armed only after a stale
                // datagram.
                sock.set_read_timeout(Some(ctx.timeout))?;
                *link = Link::Udp(sock, 0, req.to_vec());
            }
            let Link::Udp(sock, seq, buf) = link else {
                unreachable!()
            };
            *seq += 1;
            buf[..4].copy_from_slice(&MAGIC);
            buf[4..8].copy_from_slice(&ctx.spec.response_size.to_be_bytes());
            buf[8..16].copy_from_slice(&seq.to_be_bytes());
            sock.send(buf)?;
            let mut polls = 0u32;
            // Bounded by `limit`: stale or foreign datagrams are skipped until then.
            let mut rearmed = false;
            loop {
                match sock.recv(resp) {
                    Ok(n) if n >= UDP_RESP_HEADER && resp[..8] == seq.to_be_bytes() => {
                        if rearmed {
                            sock.set_read_timeout(Some(ctx.timeout))?;
                        }
                        return Ok(());
                    }
                    // A late answer to an earlier (timed-out) request: wait for ours, but
                    // only until `limit`.
                    Ok(_) if !spin => {
                        let left = limit.saturating_duration_since(clock::now());
                        if left.is_zero() {
                            sock.set_read_timeout(Some(ctx.timeout))?;
                            return Err(io::ErrorKind::TimedOut.into());
                        }
                        sock.set_read_timeout(Some(left))?;
                        rearmed = true;
                    }
                    Ok(_) => {}
                    Err(e) if nothing_yet(&e) => {
                        if rearmed {
                            sock.set_read_timeout(Some(ctx.timeout))?;
                        }
                        poll_again(&mut polls, spin, limit)?;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
}

/// Ends a `tcp-crr` connection the way `close` says. The transaction's latency is already
/// taken; the wait for the responder's FIN still counts in the transaction rate, as the
/// close does in netperf's `TCP_CRR`.
fn close_crr(mut s: TcpStream, close: CloseBy, limit: Instant) -> io::Result<()> {
    match close {
        CloseBy::Client => Ok(()),
        CloseBy::Reset => socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO)),
        CloseBy::Server => {
            let mut rest = [0u8; 1];
            loop {
                match s.read(&mut rest) {
                    Ok(0) => return Ok(()),
                    // The responder sends nothing after its response.
                    Ok(_) => return Err(io::ErrorKind::InvalidData.into()),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                        ) && clock::now() < limit => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
}

fn write_all_spin(s: &mut TcpStream, mut buf: &[u8]) -> io::Result<()> {
    // Request sizes are far below the socket buffer, so a non-blocking write only spins
    // when the peer has stopped reading; bounded by the response timeout that follows.
    let mut spins = 0u32;
    while !buf.is_empty() {
        match s.write(buf) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                spins += 1;
                if spins > 10_000_000 {
                    return Err(io::ErrorKind::TimedOut.into());
                }
                std::hint::spin_loop();
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Number of intervals of a run; transactions completing after the deadline fold into
/// the last one.
fn interval_count(length: Duration, interval: Duration) -> usize {
    if interval.is_zero() {
        0
    } else {
        length.as_nanos().div_ceil(interval.as_nanos()).max(1) as usize
    }
}

/// Adds a thread's current interval into the shared results and empties it.
fn flush(ctx: &ClientCtx, index: usize, cur: &mut LatencyHistogram, lag: &mut LatencyHistogram) {
    let mut shared = ctx
        .results
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    hist::merge(&mut shared.total, cur);
    hist::merge(&mut shared.send_lag, lag);
    if let Some(h) = shared.intervals.get_mut(index) {
        hist::merge(h, cur);
    }
    cur.reset();
    lag.reset();
}

fn client_thread(ctx: &ClientCtx, index: u32) {
    if !ctx.spec.client_affinity.is_empty() {
        let _ = crate::sys::pin_current_thread(
            ctx.spec.client_affinity[index as usize % ctx.spec.client_affinity.len()],
        );
    }
    let n_intervals = ctx.n_intervals;
    let mut cur = hist::new_histogram();
    let mut cur_index = 0usize;
    let mut errors: BTreeMap<ErrorKind, u64> = BTreeMap::new();
    let mut send_lag = hist::new_coarse_histogram();
    let schedule = ctx.spec.rate.map(|r| {
        let per_thread = r / f64::from(ctx.spec.parallel);
        let offset = Duration::from_secs_f64(f64::from(index) / r);
        Schedule::new(ctx.start + offset, per_thread)
    });
    let req = vec![b'q'; ctx.spec.request_size as usize];
    let mut resp = vec![0u8; ctx.spec.response_size as usize];
    let mut link = Link::None;
    let mut k = 0u64;
    // Bounded by the deadline: every transaction ends within the timeout.
    loop {
        let start = if let Some(s) = schedule {
            let due = s.due(k);
            if due >= ctx.deadline {
                break;
            }
            // Sleeps in slices so an interrupt is seen within 100 ms even at low rates.
            while clock::now() < due && !ctx.stop.load(Ordering::Relaxed) {
                if ctx.spec.busy_poll {
                    std::hint::spin_loop();
                } else {
                    clock::sleep_until(due.min(clock::now() + Duration::from_millis(100)));
                }
            }
            if ctx.stop.load(Ordering::Relaxed) {
                break;
            }
            hist::record(&mut send_lag, clock::now().saturating_duration_since(due));
            due
        } else {
            let now = clock::now();
            if now >= ctx.deadline || ctx.stop.load(Ordering::Relaxed) {
                break;
            }
            now
        };
        k += 1;
        match transaction(ctx, &mut link, &req, &mut resp) {
            Ok(()) => {
                let end = clock::now();
                if n_intervals > 0 {
                    let i =
                        hist::interval_index(end - ctx.start, ctx.interval).min(n_intervals - 1);
                    if i != cur_index {
                        flush(ctx, cur_index, &mut cur, &mut send_lag);
                        cur_index = i;
                    }
                }
                hist::record(&mut cur, end - start);
            }
            Err(e) => {
                *errors.entry(classify(&e)).or_insert(0) += 1;
                if !matches!(ctx.spec.mode, RrMode::UdpRr) || e.kind() != io::ErrorKind::TimedOut {
                    link = Link::None;
                }
                // A refused or unreachable peer fails at once: do not spin on it.
                if matches!(classify(&e), ErrorKind::Refused | ErrorKind::Unreachable) {
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
    }
    flush(ctx, cur_index, &mut cur, &mut send_lag);
    let mut shared = ctx
        .results
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    for (k, n) in errors {
        *shared.errors.entry(k).or_insert(0) += n;
    }
}

/// Runs the test and returns its report.
pub fn execute(spec: &RrSpec) -> anyhow::Result<RrReport> {
    execute_until(spec, &Arc::new(AtomicBool::new(false)))
}

/// Runs the test, ending early (and still reporting) once `stop` is raised.
pub fn execute_until(spec: &RrSpec, stop: &Arc<AtomicBool>) -> anyhow::Result<RrReport> {
    use anyhow::Context as _;
    spec.validate()?;
    let addr = (spec.host.as_str(), spec.port)
        .to_socket_addrs()
        .with_context(|| format!("resolving {}", spec.host))?
        .next()
        .with_context(|| format!("{} resolves to no address", spec.host))?;
    let server_cpu = CpuSession::open(addr, Duration::from_secs_f64(spec.timeout_s.max(1.0)));
    let started_unix_s = clock::wall_time();
    let cpu_start = CpuSample::take();
    let start = clock::now();
    let interval = Duration::from_secs_f64(spec.interval_s);
    let n_intervals = interval_count(Duration::from_secs_f64(spec.duration_s), interval);
    let ctx = Arc::new(ClientCtx {
        addr,
        results: std::sync::Mutex::new(ThreadResult {
            intervals: (0..n_intervals)
                .map(|_| hist::new_coarse_histogram())
                .collect(),
            total: hist::new_histogram(),
            send_lag: hist::new_histogram(),
            errors: BTreeMap::new(),
        }),
        n_intervals,
        stop: stop.clone(),
        spec: spec.clone(),
        start,
        deadline: start + Duration::from_secs_f64(spec.duration_s),
        timeout: Duration::from_secs_f64(spec.timeout_s),
        interval,
    });
    let handles = (0..spec.parallel)
        .map(|i| {
            let ctx = ctx.clone();
            std::thread::Builder::new()
                .name(format!("rr-{i}"))
                .spawn(move || client_thread(&ctx, i))
        })
        .collect::<io::Result<Vec<_>>>()
        .context("starting client threads")?;
    for h in handles {
        h.join()
            .map_err(|_| anyhow::anyhow!("client thread panicked"))?;
    }
    let end = clock::now();
    let results = std::mem::replace(
        &mut *ctx
            .results
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
        ThreadResult {
            intervals: Vec::new(),
            total: hist::new_histogram(),
            send_lag: hist::new_histogram(),
            errors: BTreeMap::new(),
        },
    );
    let cpu_end = CpuSample::take();
    let duration_s = (end - start).as_secs_f64();
    let mut report = build_report(
        spec,
        std::slice::from_ref(&results),
        duration_s,
        started_unix_s,
        cpu::window(&cpu_start, &cpu_end, 0),
    );
    report.server_cpu = server_cpu.and_then(CpuSession::close);
    Ok(report)
}

fn build_report(
    spec: &RrSpec,
    results: &[ThreadResult],
    duration_s: f64,
    started_unix_s: f64,
    cpu: CpuReport,
) -> RrReport {
    let mut total = hist::new_histogram();
    let mut send_lag = hist::new_histogram();
    let mut errors = BTreeMap::new();
    let n_intervals = results.first().map_or(0, |r| r.intervals.len());
    let mut intervals: Vec<LatencyHistogram> = (0..n_intervals)
        .map(|_| hist::new_coarse_histogram())
        .collect();
    for r in results {
        hist::merge(&mut total, &r.total);
        hist::merge(&mut send_lag, &r.send_lag);
        for (i, h) in r.intervals.iter().enumerate() {
            hist::merge(&mut intervals[i], h);
        }
        for (k, n) in &r.errors {
            *errors.entry(*k).or_insert(0) += n;
        }
    }
    let series = intervals
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let start_s = i as f64 * spec.interval_s;
            let end_s = (start_s + spec.interval_s).min(duration_s.max(start_s));
            let len = end_s - start_s;
            RrInterval {
                start_s,
                end_s,
                transactions: h.len(),
                transactions_per_second: if len > 0.0 { h.len() as f64 / len } else { 0.0 },
                latency: LatencySummary::of(h),
            }
        })
        .filter(|iv| iv.end_s > iv.start_s || iv.transactions > 0)
        .collect();
    RrReport {
        schema_version: RR_SCHEMA_VERSION,
        netload_version: env!("CARGO_PKG_VERSION").to_owned(),
        started_unix_s,
        spec: spec.clone(),
        transactions: total.len(),
        duration_s,
        transactions_per_second: if duration_s > 0.0 {
            total.len() as f64 / duration_s
        } else {
            0.0
        },
        latency: LatencySummary::of(&total),
        send_lag: spec.rate.map(|_| LatencySummary::of(&send_lag)),
        intervals: series,
        errors,
        cpu_us_per_transaction: (!total.is_empty())
            .then(|| (cpu.process_user_s + cpu.process_system_s) * 1e6 / total.len() as f64),
        cpu,
        server_cpu: None,
    }
}

/// Human-readable table of a report.
pub fn render_table(r: &RrReport) -> String {
    let mut out = String::new();
    let s = &r.spec;
    let _ = writeln!(
        out,
        "netload rr {}{} to {}:{}, {}/{} bytes, {} connection(s), {}{}; latency is the round trip",
        s.mode.as_str(),
        if s.mode == RrMode::TcpCrr {
            format!(" (close: {})", s.close.as_str())
        } else {
            String::new()
        },
        s.host,
        s.port,
        s.request_size,
        s.response_size,
        s.parallel,
        s.rate.map_or_else(
            || "closed loop".to_owned(),
            |r| format!("open loop at {r} tps")
        ),
        // Spinning changes what is measured (no wake-up on the client), so say so.
        if s.busy_poll {
            ", busy-poll (client spins on a non-blocking socket)"
        } else {
            ""
        },
    );
    let _ = writeln!(
        out,
        "{:>13} {:>10} {:>12} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "interval s", "trans", "trans/s", "p50 µs", "p90 µs", "p99 µs", "p99.9 µs", "max µs"
    );
    let row = |out: &mut String, label: &str, n: u64, tps: f64, l: &LatencySummary| {
        let _ = writeln!(
            out,
            "{label:>13} {n:>10} {tps:>12.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1}",
            l.p50_us, l.p90_us, l.p99_us, l.p99_9_us, l.max_us
        );
    };
    for iv in &r.intervals {
        let label = format!("{:.1}-{:.1}", iv.start_s, iv.end_s);
        row(
            &mut out,
            &label,
            iv.transactions,
            iv.transactions_per_second,
            &iv.latency,
        );
    }
    if let Some(lag) = &r.send_lag {
        row(&mut out, "send lag", lag.count, 0.0, lag);
    }
    row(
        &mut out,
        "total",
        r.transactions,
        r.transactions_per_second,
        &r.latency,
    );
    if !r.errors.is_empty() {
        let list: Vec<String> = r
            .errors
            .iter()
            .map(|(k, n)| format!("{} {n}", k.as_str()))
            .collect();
        let _ = writeln!(out, "errors: {}", list.join(", "));
    }
    let _ = writeln!(out, "{}", crate::render::cpu_line("client", &r.cpu));
    if let Some(c) = &r.server_cpu {
        let _ = writeln!(out, "{}", crate::render::cpu_line("server", c));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rr::wire::UDP_REQ_HEADER;

    /// What `netload rr 127.0.0.1 -p 1 --mode udp-rr -t 1 --affinity 0/1` asks for.
    fn spec() -> RrSpec {
        RrSpec {
            host: "127.0.0.1".into(),
            port: 1,
            mode: RrMode::UdpRr,
            request_size: UDP_REQ_HEADER as u32,
            response_size: UDP_RESP_HEADER as u32,
            duration_s: 1.0,
            parallel: 1,
            rate: None,
            interval_s: 1.0,
            timeout_s: 1.0,
            close: CloseBy::Server,
            client_affinity: vec![0],
            server_affinity: vec![1],
            busy_poll: false,
        }
    }

    #[test]
    fn table_snapshot() {
        let spec = spec();
        let mut t = ThreadResult {
            intervals: vec![hist::new_histogram(), hist::new_histogram()],
            total: hist::new_histogram(),
            send_lag: hist::new_histogram(),
            errors: BTreeMap::new(),
        };
        for us in 1..=100u64 {
            let d = Duration::from_micros(us * 10);
            hist::record(&mut t.total, d);
            hist::record(&mut t.intervals[usize::from(us > 50)], d);
        }
        t.errors.insert(ErrorKind::Timeout, 3);
        let mut spec = spec;
        spec.interval_s = 0.5;
        let r = build_report(&spec, &[t], 1.0, 0.0, CpuReport::default());
        assert_eq!(r.transactions, 100);
        assert_eq!(r.intervals.len(), 2);
        assert_eq!(r.intervals[0].transactions, 50);
        insta::assert_snapshot!("rr_table", render_table(&r));
        assert!(!render_table(&r).contains("busy-poll"));
        let mut busy = r.clone();
        busy.spec.busy_poll = true;
        assert!(
            render_table(&busy)
                .lines()
                .next()
                .unwrap()
                .contains("busy-poll (client spins")
        );
    }
}
