//! `netload http URL...`: HTTP/1.1 GETs with per-request connect time, time to first byte
//! and total time, per-replica counts and Jain's fairness index.
//!
//! `-c` workers each keep at most one request in flight (and one keep-alive connection per
//! URL, unless `--new-connection`). Closed loop: a worker sends its next request when the
//! previous one ends. Open loop (`--rate`): request `k` is due at `k / rate` and its
//! latencies are measured from that intended time, so a stalled server inflates the tail
//! instead of slowing the client down (coordinated omission). Every failure is counted by
//! [`ErrorKind`] and the run goes on; every request is bounded by `--timeout`.
//!
//! Replicas behind one Service address are chosen per *connection* (kube-proxy, IPVS and
//! eBPF balancers all pin a connection to one backend): with keep-alive, `-c` connections
//! reach at most `-c` replicas. Use `--new-connection` (or a large `-c`) to measure the
//! spread over replicas.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::net::{SocketAddr, ToSocketAddrs};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hyper::header::HeaderValue;

use super::h1::{Broken, Conn};
use super::{
    ErrorCount, ErrorKind, HTTP_SCHEMA_VERSION, HttpReport, HttpSpec, HttpTotals, ReplicaReport,
    UNKNOWN_REPLICA,
};
use crate::clock;
use crate::cpu::{self, CpuSample};
use crate::hist::{self, LatencyHistogram, LatencySummary, Schedule};
use crate::spec::CloseBy;

/// Most concurrent workers.
pub const MAX_CONCURRENCY: u32 = 100_000;

/// Longest run or timeout accepted, seconds (one day).
pub const MAX_SECONDS: f64 = 86_400.0;

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// A flag is out of range.
    #[error("invalid {flag}: {problem}")]
    Invalid {
        /// The flag at fault.
        flag: &'static str,
        /// What is wrong and what is allowed.
        problem: String,
    },
    /// A URL could not be parsed or resolved.
    #[error("bad URL {url:?}: {problem}")]
    Url {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The runtime could not be built.
    #[error("starting the runtime")]
    Runtime(#[source] std::io::Error),
}

fn invalid(flag: &'static str, problem: impl Into<String>) -> ClientError {
    ClientError::Invalid {
        flag,
        problem: problem.into(),
    }
}

/// Checks every field of `spec`, naming the flag at fault.
pub fn validate(spec: &HttpSpec) -> Result<(), ClientError> {
    let secs = |v: f64| v.is_finite() && v > 0.0 && v <= MAX_SECONDS;
    if spec.urls.is_empty() {
        return Err(invalid("URL", "give at least one URL"));
    }
    if spec.concurrency == 0 || spec.concurrency > MAX_CONCURRENCY {
        return Err(invalid(
            "--concurrency",
            format!("must be between 1 and {MAX_CONCURRENCY}"),
        ));
    }
    if spec.requests == Some(0) {
        return Err(invalid("--requests", "must be at least 1"));
    }
    if let Some(t) = spec.duration_s
        && !secs(t)
    {
        return Err(invalid(
            "--time",
            format!("must be in (0, {MAX_SECONDS}] seconds"),
        ));
    }
    if spec.requests.is_none() && spec.duration_s.is_none() {
        return Err(invalid("--time", "give -n or -t"));
    }
    if let Some(r) = spec.rate
        && !(r.is_finite() && r > 0.0 && r <= 10_000_000.0)
    {
        return Err(invalid(
            "--rate",
            "must be in (0, 10000000] requests per second",
        ));
    }
    if !secs(spec.timeout_s) {
        return Err(invalid(
            "--timeout",
            format!("must be in (0, {MAX_SECONDS}] seconds"),
        ));
    }
    if spec.threads == 0 || spec.threads > 1024 {
        return Err(invalid("--threads", "must be between 1 and 1024"));
    }
    Ok(())
}

/// One resolved URL.
#[derive(Debug, Clone)]
pub struct Target {
    /// The URL as given.
    pub url: String,
    /// Address connected to (the first one the name resolved to).
    pub addr: SocketAddr,
    /// `Host` header value.
    pub host: HeaderValue,
    /// Path and query sent in the request line.
    pub path: String,
    /// Origin-form URI of the request line (parsed once).
    pub uri: hyper::Uri,
    /// The request head sent for every GET (built once).
    pub request: Vec<u8>,
    /// The same head with `Connection: close`.
    pub request_close: Vec<u8>,
}

/// Parses and resolves `url` (`http://` only).
pub fn resolve(url: &str) -> Result<Target, ClientError> {
    let bad = |problem: &str| ClientError::Url {
        url: url.to_owned(),
        problem: problem.to_owned(),
    };
    let uri: hyper::Uri = url
        .parse()
        .map_err(|e: hyper::http::uri::InvalidUri| bad(&e.to_string()))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some(_) => return Err(bad("only http:// is supported")),
        None => return Err(bad("missing http:// scheme")),
    }
    let authority = uri.authority().ok_or_else(|| bad("missing host"))?;
    let port = authority.port_u16().unwrap_or(80);
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let addr = (host, port)
        .to_socket_addrs()
        .map_err(|e| bad(&format!("cannot resolve: {e}")))?
        .next()
        .ok_or_else(|| bad("resolves to no address"))?;
    let path = uri
        .path_and_query()
        .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned());
    Ok(Target {
        url: url.to_owned(),
        addr,
        host: HeaderValue::from_str(authority.as_str()).map_err(|_| bad("bad host"))?,
        uri: path.parse().map_err(|_| bad("bad path"))?,
        request: super::h1::get_request(&path, authority.as_str()),
        request_close: super::h1::get_request_close(&path, authority.as_str()),
        path,
    })
}

/// Measurements of one worker (or of all, once merged).
#[derive(Debug, Clone)]
pub struct Recorder {
    /// Connect time of each new connection.
    pub connect: LatencyHistogram,
    /// Time to first byte of each successful request.
    pub ttfb: LatencyHistogram,
    /// Total time of each successful request.
    pub total: LatencyHistogram,
    /// Successful requests.
    pub ok: u64,
    /// Body bytes of successful requests.
    pub body_bytes: u64,
    /// Connections opened.
    pub connections: u64,
    /// Per-replica request count, bytes and TTFB.
    pub replicas: HashMap<String, (u64, u64, LatencyHistogram)>,
    /// Failures by kind.
    pub errors: BTreeMap<ErrorKind, ErrorCount>,
    /// Last completion of any request.
    pub last_end: Option<Instant>,
    /// Open loop: delay between a request's intended time and its hand-over to a worker.
    pub send_lag: LatencyHistogram,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder {
            connect: hist::new_histogram(),
            ttfb: hist::new_histogram(),
            total: hist::new_histogram(),
            ok: 0,
            body_bytes: 0,
            connections: 0,
            replicas: HashMap::new(),
            errors: BTreeMap::new(),
            last_end: None,
            send_lag: hist::new_histogram(),
        }
    }
}

impl Recorder {
    /// Counts a failure of `kind`, keeping the first message.
    pub fn error(&mut self, kind: ErrorKind, message: impl Into<String>) {
        self.errors
            .entry(kind)
            .and_modify(|e| e.count += 1)
            .or_insert_with(|| ErrorCount {
                count: 1,
                example: message.into(),
            });
    }

    fn success(&mut self, replica: &str, ttfb: Duration, total: Duration, bytes: u64) {
        self.ok += 1;
        self.body_bytes += bytes;
        hist::record(&mut self.ttfb, ttfb);
        hist::record(&mut self.total, total);
        if let Some(r) = self.replicas.get_mut(replica) {
            r.0 += 1;
            r.1 += bytes;
            hist::record(&mut r.2, ttfb);
        } else {
            let mut h = hist::new_histogram();
            hist::record(&mut h, ttfb);
            self.replicas.insert(replica.to_owned(), (1, bytes, h));
        }
    }

    /// Adds `other` into `self`: histograms merged, counts summed.
    pub fn merge(&mut self, other: &Recorder) {
        hist::merge(&mut self.connect, &other.connect);
        hist::merge(&mut self.ttfb, &other.ttfb);
        hist::merge(&mut self.total, &other.total);
        self.ok += other.ok;
        self.body_bytes += other.body_bytes;
        self.connections += other.connections;
        for (name, (n, b, h)) in &other.replicas {
            let e = self
                .replicas
                .entry(name.clone())
                .or_insert_with(|| (0, 0, hist::new_histogram()));
            e.0 += n;
            e.1 += b;
            hist::merge(&mut e.2, h);
        }
        for (kind, c) in &other.errors {
            self.errors
                .entry(*kind)
                .and_modify(|e| e.count += c.count)
                .or_insert_with(|| c.clone());
        }
        self.last_end = self.last_end.max(other.last_end);
        hist::merge(&mut self.send_lag, &other.send_lag);
    }

    /// Failures of every kind.
    pub fn error_count(&self) -> u64 {
        self.errors.values().map(|e| e.count).sum()
    }
}

struct Ctx {
    targets: Vec<Target>,
    stop: Arc<AtomicBool>,
    next: AtomicU64,
    requests: Option<u64>,
    deadline: Option<Instant>,
    schedule: Option<Schedule>,
    timeout: Duration,
    /// `Some` with one connection per request: who closes it first.
    per_request: Option<CloseBy>,
}

struct Failure {
    kind: ErrorKind,
    message: String,
    /// The connection is still usable (a complete non-2xx answer).
    keep: bool,
}

fn fail(kind: ErrorKind, message: impl std::fmt::Display) -> Failure {
    Failure {
        kind,
        message: message.to_string(),
        keep: false,
    }
}

async fn connect(target: &Target, rec: &RefCell<Recorder>) -> Result<Conn, Failure> {
    let t0 = clock::now();
    let stream = tokio::net::TcpStream::connect(target.addr)
        .await
        .map_err(|e| fail(ErrorKind::of_io(e.kind()), format!("{}: {e}", target.addr)))?;
    {
        let mut rec = rec.borrow_mut();
        hist::record(&mut rec.connect, clock::now() - t0);
        rec.connections += 1;
    }
    let _ = stream.set_nodelay(true);
    Ok(Conn::new(stream))
}

fn failure(b: &Broken) -> Failure {
    let kind = match b {
        Broken::Io(e) => ErrorKind::of_io(e.kind()),
        Broken::ClosedBeforeAnswer | Broken::IncompleteHead => ErrorKind::Reset,
        Broken::NotHttp(_) => ErrorKind::NotHttp,
        Broken::ShortBody(..) => ErrorKind::ShortBody,
    };
    fail(kind, b)
}

async fn one_request(
    slot: &mut Option<Conn>,
    target: &Target,
    close: Option<CloseBy>,
    start: Instant,
    rec: &RefCell<Recorder>,
) -> Result<(), Failure> {
    let reused = slot.is_some();
    let request = match close {
        Some(CloseBy::Server) => &target.request_close,
        _ => &target.request,
    };
    let result = match slot {
        Some(c) => c.exchange(request).await,
        None => {
            slot.insert(connect(target, rec).await?)
                .exchange(request)
                .await
        }
    };
    let answer = match result {
        Ok(a) => a,
        // A kept-alive connection the server had closed while idle (keep-alive timeout,
        // request limit): the GET never reached it, so retry once on a new connection, as
        // any pooling client does. A fresh connection failing the same way is an error.
        Err(Broken::ClosedBeforeAnswer | Broken::Io(_)) if reused => {
            *slot = None;
            let conn = slot.insert(connect(target, rec).await?);
            conn.exchange(request).await.map_err(|e| failure(&e))?
        }
        Err(e) => return Err(failure(&e)),
    };
    let keep = answer.keep_alive;
    let total = clock::now() - start;
    if !(200..300).contains(&answer.status) {
        return Err(Failure {
            kind: ErrorKind::Non2xx,
            message: format!("status {} from {}", answer.status, target.url),
            keep,
        });
    }
    let ttfb = answer.first_byte.saturating_duration_since(start);
    let replica = slot.as_ref().and_then(Conn::replica);
    rec.borrow_mut().success(
        replica.unwrap_or(UNKNOWN_REPLICA),
        ttfb,
        total,
        answer.bytes,
    );
    if !keep {
        // The server closes: wait for its FIN so our close is the passive one (no TIME_WAIT
        // here). The answer is already measured; the wait counts only in the request rate.
        if let Some(conn) = slot.as_mut() {
            conn.await_close()
                .await
                .map_err(|e| fail(ErrorKind::of_io(e.kind()), e))?;
        }
        *slot = None;
    }
    Ok(())
}

/// Open-loop tickets of one runtime, shared by its workers.
type Tickets = Arc<tokio::sync::Mutex<tokio::sync::mpsc::UnboundedReceiver<u64>>>;

/// One worker: at most one request in flight. Workers of a runtime share its recorder
/// (single-threaded, so a `RefCell` never borrowed across an await): memory stays per
/// thread, not per worker, even with many thousands of workers.
async fn worker(ctx: Arc<Ctx>, tickets: Option<Tickets>, rec: Rc<RefCell<Recorder>>) {
    let mut conns: Vec<Option<Conn>> = ctx.targets.iter().map(|_| None).collect();
    loop {
        let (k, start) = if let (Some(s), Some(t)) = (ctx.schedule, &tickets) {
            // The pacer hands out request numbers at their due times; a ticket waits in
            // the queue while every worker is busy, and that wait counts (from `due`).
            let Some(k) = t.lock().await.recv().await else {
                break;
            };
            let due = s.due(k);
            hist::record(
                &mut rec.borrow_mut().send_lag,
                clock::now().saturating_duration_since(due),
            );
            (k, due)
        } else {
            let k = ctx.next.fetch_add(1, Ordering::Relaxed);
            let now = clock::now();
            if ctx.requests.is_some_and(|n| k >= n)
                || ctx.stop.load(Ordering::Relaxed)
                || ctx.deadline.is_some_and(|d| now >= d)
            {
                break;
            }
            (k, now)
        };
        let i = (k % ctx.targets.len() as u64) as usize;
        let limit = clock::now() + ctx.timeout;
        let result = tokio::time::timeout_at(
            limit.into(),
            one_request(&mut conns[i], &ctx.targets[i], ctx.per_request, start, &rec),
        )
        .await;
        match result {
            Ok(Ok(())) => {}
            Ok(Err(f)) => {
                rec.borrow_mut().error(f.kind, f.message);
                if !f.keep {
                    conns[i] = None;
                }
            }
            Err(_) => {
                rec.borrow_mut().error(
                    ErrorKind::Timeout,
                    format!(
                        "no complete answer from {} within {:?}",
                        ctx.targets[i].url, ctx.timeout
                    ),
                );
                conns[i] = None;
            }
        }
        if let Some(close) = ctx.per_request {
            if let (CloseBy::Reset, Some(conn)) = (close, &conns[i]) {
                let _ = conn.reset_on_close();
            }
            conns[i] = None;
        }
        rec.borrow_mut().last_end = Some(clock::now());
    }
}

/// Open loop: hands request `k` to the runtimes (in turn) at its due time, sleeping on the
/// high-resolution timer rather than tokio's millisecond wheel, until the count, the
/// deadline or an interrupt ends the run. Dropping the senders then ends the workers.
fn pace(ctx: &Ctx, schedule: Schedule, senders: &[tokio::sync::mpsc::UnboundedSender<u64>]) {
    let mut k = 0u64;
    loop {
        if ctx.requests.is_some_and(|n| k >= n) || ctx.stop.load(Ordering::Relaxed) {
            break;
        }
        let due = schedule.due(k);
        if ctx.deadline.is_some_and(|d| due >= d) {
            break;
        }
        // Sleeps in slices so an interrupt is seen within 100 ms even at low rates.
        while clock::now() < due && !ctx.stop.load(Ordering::Relaxed) {
            clock::sleep_until(due.min(clock::now() + Duration::from_millis(100)));
        }
        if senders[(k % senders.len() as u64) as usize]
            .send(k)
            .is_err()
        {
            break;
        }
        k += 1;
    }
}

/// Runs the test `spec` describes and returns its report.
pub fn execute(spec: &HttpSpec) -> Result<HttpReport, ClientError> {
    execute_until(spec, &Arc::new(AtomicBool::new(false)))
}

/// Runs the test, ending early (and still reporting) once `stop` is raised; requests in
/// flight then finish or time out.
pub fn execute_until(spec: &HttpSpec, stop: &Arc<AtomicBool>) -> Result<HttpReport, ClientError> {
    validate(spec)?;
    let targets = spec
        .urls
        .iter()
        .map(|u| resolve(u))
        .collect::<Result<Vec<_>, _>>()?;
    // One single-threaded runtime per OS thread, each driving its share of the workers and
    // their connections (as wrk does): no cross-thread wake-ups on the request path.
    let threads = spec.threads.min(spec.concurrency) as usize;
    let mut shards = Vec::with_capacity(threads);
    for t in 0..threads {
        let workers = spec.concurrency as usize / threads
            + usize::from(t < spec.concurrency as usize % threads);
        let (tx, rx) = std::sync::mpsc::channel::<(Arc<Ctx>, Option<Tickets>)>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<std::io::Result<()>>();
        let handle = std::thread::Builder::new()
            .name(format!("netload-http-{t}"))
            .spawn(move || -> Recorder {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => {
                        let _ = ready_tx.send(Ok(()));
                        rt
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return Recorder::default();
                    }
                };
                let Ok((ctx, tickets)) = rx.recv() else {
                    return Recorder::default();
                };
                let rec = Rc::new(RefCell::new(Recorder::default()));
                let local = tokio::task::LocalSet::new();
                local.block_on(&runtime, async {
                    let handles: Vec<_> = (0..workers)
                        .map(|_| {
                            tokio::task::spawn_local(worker(
                                ctx.clone(),
                                tickets.clone(),
                                rec.clone(),
                            ))
                        })
                        .collect();
                    for h in handles {
                        let _ = h.await;
                    }
                });
                drop(local);
                Rc::try_unwrap(rec).map_or_else(|rc| rc.borrow().clone(), RefCell::into_inner)
            })
            .map_err(ClientError::Runtime)?;
        ready_rx
            .recv()
            .unwrap_or_else(|_| Err(std::io::Error::other("runtime thread died")))
            .map_err(ClientError::Runtime)?;
        shards.push((tx, handle));
    }
    let started_unix_s = clock::wall_time();
    let cpu_start = CpuSample::take();
    let start = clock::now();
    let ctx = Arc::new(Ctx {
        targets,
        stop: stop.clone(),
        next: AtomicU64::new(0),
        requests: spec.requests,
        deadline: spec.duration_s.map(|t| start + Duration::from_secs_f64(t)),
        schedule: spec.rate.map(|r| Schedule::new(start, r)),
        timeout: Duration::from_secs_f64(spec.timeout_s),
        per_request: spec.new_connection.then_some(spec.close),
    });
    let mut merged = Recorder::default();
    let mut senders = Vec::new();
    let handles: Vec<_> = shards
        .into_iter()
        .map(|(tx, handle)| {
            let tickets = ctx.schedule.map(|_| {
                let (send, recv) = tokio::sync::mpsc::unbounded_channel();
                senders.push(send);
                Arc::new(tokio::sync::Mutex::new(recv))
            });
            let _ = tx.send((ctx.clone(), tickets));
            handle
        })
        .collect();
    let pacer = match ctx.schedule {
        Some(schedule) => {
            let ctx = ctx.clone();
            Some(
                std::thread::Builder::new()
                    .name("netload-http-pacer".into())
                    .spawn(move || pace(&ctx, schedule, &senders))
                    .map_err(ClientError::Runtime)?,
            )
        }
        None => None,
    };
    if let Some(p) = pacer {
        let _ = p.join();
    }
    for h in handles {
        if let Ok(rec) = h.join() {
            merged.merge(&rec);
        }
    }
    let cpu_end = CpuSample::take();
    let end = merged.last_end.unwrap_or(start);
    let duration_s = (end - start).as_secs_f64();
    Ok(build_report(
        spec,
        &merged,
        duration_s,
        started_unix_s,
        cpu::window(&cpu_start, &cpu_end, merged.body_bytes),
    ))
}

/// Assembles the report from merged measurements (pure).
pub fn build_report(
    spec: &HttpSpec,
    rec: &Recorder,
    duration_s: f64,
    started_unix_s: f64,
    cpu: crate::report::CpuReport,
) -> HttpReport {
    let per_s = |v: f64| {
        if duration_s > 0.0 {
            v / duration_s
        } else {
            0.0
        }
    };
    let errors = rec.error_count();
    let mut replicas: Vec<ReplicaReport> = rec
        .replicas
        .iter()
        .map(|(name, (n, b, h))| ReplicaReport {
            replica: name.clone(),
            requests: *n,
            share: if rec.ok > 0 {
                *n as f64 / rec.ok as f64
            } else {
                0.0
            },
            body_bytes: *b,
            ttfb: LatencySummary::of(h),
        })
        .collect();
    replicas.sort_by(|a, b| a.replica.cmp(&b.replica));
    let counts: Vec<f64> = replicas.iter().map(|r| r.requests as f64).collect();
    HttpReport {
        schema_version: HTTP_SCHEMA_VERSION,
        netload_version: env!("CARGO_PKG_VERSION").to_owned(),
        started_unix_s,
        spec: spec.clone(),
        totals: HttpTotals {
            requests: rec.ok + errors,
            ok: rec.ok,
            errors,
            duration_s,
            requests_per_second: per_s(rec.ok as f64),
            body_bytes: rec.body_bytes,
            goodput_bits_per_second: per_s(rec.body_bytes as f64 * 8.0),
            connections: rec.connections,
            connect: LatencySummary::of(&rec.connect),
            ttfb: LatencySummary::of(&rec.ttfb),
            total: LatencySummary::of(&rec.total),
            send_lag: spec.rate.map(|_| LatencySummary::of(&rec.send_lag)),
        },
        replica_fairness: hist::jain_index(&counts),
        replicas,
        errors: rec.errors.clone(),
        cpu,
    }
}

fn lat_row(out: &mut String, name: &str, s: &LatencySummary) {
    let _ = writeln!(
        out,
        "{name:<8} {:>8} {:>10.1} {:>10.1} {:>10.1} {:>10.1} {:>10.1}",
        s.count, s.p50_us, s.p90_us, s.p99_us, s.p99_9_us, s.max_us
    );
}

/// Human-readable table of a report.
pub fn render_table(r: &HttpReport) -> String {
    let mut out = String::new();
    let s = &r.spec;
    let t = &r.totals;
    let _ = writeln!(
        out,
        "netload http: {} URL(s), concurrency {}, {}, {}",
        s.urls.len(),
        s.concurrency,
        s.rate.map_or_else(
            || "closed loop".to_owned(),
            |r| format!("open loop at {r} req/s")
        ),
        if s.new_connection {
            format!("new connection per request (close: {})", s.close.as_str())
        } else {
            "keep-alive".to_owned()
        },
    );
    let _ = writeln!(
        out,
        "{} ok, {} errors in {:.2} s: {:.1} req/s, goodput {:.3} Gbit/s, {} connections",
        t.ok,
        t.errors,
        t.duration_s,
        t.requests_per_second,
        t.goodput_bits_per_second / 1e9,
        t.connections
    );
    let _ = writeln!(
        out,
        "\n{:<8} {:>8} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "µs", "count", "p50", "p90", "p99", "p99.9", "max"
    );
    lat_row(&mut out, "connect", &t.connect);
    lat_row(&mut out, "ttfb", &t.ttfb);
    lat_row(&mut out, "total", &t.total);
    if let Some(lag) = &t.send_lag {
        lat_row(&mut out, "lag", lag);
        let _ = writeln!(
            out,
            "(open loop: times count from each request's intended send time; lag = how late the client handed it out)"
        );
    }
    if !r.replicas.is_empty() {
        let _ = writeln!(
            out,
            "\n{:<24} {:>8} {:>7} {:>12} {:>12}",
            "replica", "requests", "share", "ttfb p50 µs", "ttfb p99 µs"
        );
        for rep in &r.replicas {
            let _ = writeln!(
                out,
                "{:<24} {:>8} {:>6.1}% {:>12.1} {:>12.1}",
                rep.replica,
                rep.requests,
                rep.share * 100.0,
                rep.ttfb.p50_us,
                rep.ttfb.p99_us
            );
        }
        if let Some(j) = r.replica_fairness {
            let _ = writeln!(out, "Jain's fairness index over replicas: {j:.4}");
        }
    }
    if !r.errors.is_empty() {
        let _ = writeln!(out, "\nerrors:");
        for (kind, e) in &r.errors {
            let _ = writeln!(
                out,
                "  {:<12} {:>8}  e.g. {}",
                kind.as_str(),
                e.count,
                e.example
            );
        }
    }
    let _ = writeln!(out, "\n{}", crate::render::cpu_line("client", &r.cpu));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> HttpSpec {
        HttpSpec {
            urls: vec!["http://127.0.0.1:1/".into()],
            concurrency: 1,
            requests: Some(1),
            duration_s: None,
            rate: None,
            new_connection: false,
            close: CloseBy::Server,
            timeout_s: 1.0,
            threads: 1,
        }
    }

    #[test]
    fn validation_names_the_flag() {
        let ok = spec();
        assert!(validate(&ok).is_ok());
        let check = |f: &dyn Fn(&mut HttpSpec), flag: &str| {
            let mut s = spec();
            f(&mut s);
            match validate(&s) {
                Err(ClientError::Invalid { flag: got, .. }) => assert_eq!(got, flag),
                other => panic!("expected {flag}, got {other:?}"),
            }
        };
        check(&|s| s.concurrency = 0, "--concurrency");
        check(&|s| s.requests = Some(0), "--requests");
        check(&|s| s.rate = Some(-1.0), "--rate");
        check(&|s| s.timeout_s = f64::NAN, "--timeout");
        check(
            &|s| {
                s.requests = None;
                s.duration_s = Some(0.0);
            },
            "--time",
        );
    }

    #[test]
    fn urls_are_parsed() {
        let t = resolve("http://127.0.0.1:8080/bytes/10?x=1").unwrap();
        assert_eq!(t.addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(t.path, "/bytes/10?x=1");
        assert_eq!(t.host, "127.0.0.1:8080");
        assert_eq!(resolve("http://127.0.0.1").unwrap().addr.port(), 80);
        assert_eq!(resolve("http://127.0.0.1").unwrap().path, "/");
        assert!(matches!(
            resolve("https://127.0.0.1/"),
            Err(ClientError::Url { .. })
        ));
        assert!(matches!(
            resolve("127.0.0.1:80"),
            Err(ClientError::Url { .. })
        ));
        assert!(matches!(resolve("http://"), Err(ClientError::Url { .. })));
    }

    #[test]
    fn merged_recorders_add_up_and_report_fairness() {
        let mut a = Recorder::default();
        let mut b = Recorder::default();
        a.success(
            "r1",
            Duration::from_micros(100),
            Duration::from_micros(200),
            10,
        );
        a.success(
            "r2",
            Duration::from_micros(100),
            Duration::from_micros(200),
            10,
        );
        b.success(
            "r1",
            Duration::from_micros(300),
            Duration::from_micros(400),
            10,
        );
        b.error(ErrorKind::Refused, "first");
        a.error(ErrorKind::Refused, "second");
        a.merge(&b);
        let r = build_report(&spec(), &a, 1.0, 0.0, crate::report::CpuReport::default());
        assert_eq!(r.totals.ok, 3);
        assert_eq!(r.totals.errors, 2);
        assert_eq!(r.totals.requests, 5);
        assert_eq!(r.errors[&ErrorKind::Refused].count, 2);
        assert_eq!(r.replicas.len(), 2);
        assert_eq!(r.replicas[0].replica, "r1");
        assert_eq!(r.replicas[0].requests, 2);
        assert!((r.replicas[0].share - 2.0 / 3.0).abs() < 1e-9);
        // (2+1)^2 / (2 * 5) = 0.9
        assert!((r.replica_fairness.unwrap() - 0.9).abs() < 1e-9);
        assert!(render_table(&r).contains("Jain"));
        insta::assert_snapshot!("http_table", render_table(&r));
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["schema_version"], 1);
        assert_eq!(json["errors"]["refused"]["count"], 2);
    }
}
