//! HTTP/1.1 keep-alive server with generated bodies (`netload server --http PORT`).
//!
//! Routes: `GET /` answers [`ServerConfig::body_size`] bytes, `GET /bytes/N` answers N bytes
//! (up to [`ServerConfig::max_body_size`]); anything else is a 404, other methods a 405.
//! Bodies are one shared, reference-counted in-memory chunk handed to hyper frame after
//! frame, so serving costs no file, no init step and no per-request allocation of payload.
//! Every response carries [`REPLICA_HEADER`].
//!
//! Bounds against hostile clients: a semaphore caps open connections (the accept loop waits
//! for a free slot, excess connections stay in the kernel's backlog); request heads are
//! capped in size (431 beyond it) and must arrive within the header timeout, which also
//! closes idle keep-alive connections; a connection may be limited to a number of requests.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::{Semaphore, watch};

use super::REPLICA_HEADER;

/// Validated server settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Bytes served on `/`.
    pub body_size: u64,
    /// Largest N of `/bytes/N`.
    pub max_body_size: u64,
    /// Value of the replica header.
    pub replica: String,
    /// Most open connections.
    pub max_connections: usize,
    /// Time allowed to receive a request head (and keep-alive idle time).
    pub header_timeout: Duration,
    /// Longest time a write may make no progress before the connection is dropped.
    pub write_timeout: Duration,
    /// Largest request head, bytes.
    pub max_header_size: usize,
    /// Requests per connection before closing it; 0 = unlimited.
    pub max_requests_per_connection: u64,
    /// Bytes per body frame.
    pub chunk_size: usize,
    /// Runtime worker threads.
    pub threads: usize,
}

/// Smallest read buffer hyper accepts (its `MINIMUM_MAX_BUFFER_SIZE`).
const HYPER_MIN_BUF: usize = 8192;

impl ServerConfig {
    /// Defaults for tests and embedding: 10 MiB body, replica `name`.
    pub fn new(replica: impl Into<String>) -> Self {
        ServerConfig {
            body_size: 10 << 20,
            max_body_size: 1 << 30,
            replica: replica.into(),
            max_connections: 10_000,
            header_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(30),
            max_header_size: 16 << 10,
            max_requests_per_connection: 0,
            chunk_size: 256 << 10,
            threads: default_threads(),
        }
    }

    /// Checks ranges, naming the flag at fault.
    pub fn validate(&self) -> Result<(), String> {
        if HeaderValue::from_str(&self.replica).is_err() || self.replica.is_empty() {
            return Err(format!(
                "--replica {:?} is not a valid header value (visible ASCII)",
                self.replica
            ));
        }
        if self.max_connections == 0 || self.max_connections > Semaphore::MAX_PERMITS {
            return Err("--http-max-connections must be at least 1".into());
        }
        if !(1024..=(1 << 20)).contains(&self.max_header_size) {
            return Err("--http-max-header-size must be between 1 KiB and 1 MiB".into());
        }
        if !(1..=(64 << 20)).contains(&self.chunk_size) {
            return Err("--http-chunk-size must be between 1 byte and 64 MiB".into());
        }
        if self.body_size > self.max_body_size {
            return Err("--body-size must not exceed --max-body-size".into());
        }
        if self.threads == 0 || self.threads > 1024 {
            return Err("--http-threads must be between 1 and 1024".into());
        }
        Ok(())
    }
}

/// One runtime thread per CPU.
pub(crate) fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
}

/// This host's name (the pod name on Kubernetes), or `unknown`.
pub fn hostname() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_owned())
        .find(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// Counters of a running server.
#[derive(Debug, Default)]
pub struct ServerStats {
    /// Connections accepted.
    pub connections: AtomicU64,
    /// Requests answered (any status).
    pub requests: AtomicU64,
    /// Body bytes handed to hyper (announced lengths of 2xx answers).
    pub body_bytes: AtomicU64,
    /// Connections that ended with an error (timeouts, oversized heads, resets).
    pub connection_errors: AtomicU64,
}

/// A body of `remaining` bytes cut from one shared chunk, frame after frame.
#[derive(Debug)]
pub struct RepeatBody {
    chunk: Bytes,
    remaining: u64,
}

impl RepeatBody {
    /// `len` bytes made of `chunk` repeated (the last frame cut short).
    pub fn new(chunk: Bytes, len: u64) -> Self {
        assert!(
            !chunk.is_empty() || len == 0,
            "empty chunk for a non-empty body"
        );
        RepeatBody {
            chunk,
            remaining: len,
        }
    }

    /// A short fixed text body.
    pub fn text(text: &'static str) -> Self {
        RepeatBody::new(Bytes::from_static(text.as_bytes()), text.len() as u64)
    }
}

impl Body for RepeatBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if this.remaining == 0 {
            return Poll::Ready(None);
        }
        let n = this
            .chunk
            .len()
            .min(usize::try_from(this.remaining).unwrap_or(usize::MAX));
        this.remaining -= n as u64;
        Poll::Ready(Some(Ok(Frame::data(this.chunk.slice(..n)))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

/// The payload chunk: printable, so a body dumped to a terminal stays readable.
fn make_chunk(size: usize) -> Bytes {
    const PATTERN: &[u8] = b"netload generated body 0123456789abcdefghijklmnopqrstuvwxyz\n";
    PATTERN
        .iter()
        .copied()
        .cycle()
        .take(size)
        .collect::<Vec<u8>>()
        .into()
}

/// A TCP stream whose writes fail with `TimedOut` after making no progress for `timeout`:
/// a client that requests a large body and stops reading cannot hold its connection slot.
pub struct WriteDeadline {
    io: tokio::net::TcpStream,
    timeout: Duration,
    timer: Pin<Box<tokio::time::Sleep>>,
    armed: bool,
}

impl WriteDeadline {
    /// Wraps `io`.
    pub fn new(io: tokio::net::TcpStream, timeout: Duration) -> Self {
        WriteDeadline {
            io,
            timeout,
            timer: Box::pin(tokio::time::sleep(timeout)),
            armed: false,
        }
    }

    fn check<T>(
        &mut self,
        cx: &mut Context<'_>,
        r: Poll<std::io::Result<T>>,
    ) -> Poll<std::io::Result<T>> {
        if r.is_ready() {
            self.armed = false;
            return r;
        }
        if !self.armed {
            self.armed = true;
            let deadline = tokio::time::Instant::from_std(crate::clock::now() + self.timeout);
            self.timer.as_mut().reset(deadline);
        }
        match self.timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(std::io::ErrorKind::TimedOut.into())),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl tokio::io::AsyncRead for WriteDeadline {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for WriteDeadline {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_write(cx, buf);
        this.check(cx, r)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.check(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

struct Shared {
    config: ServerConfig,
    replica: HeaderValue,
    chunk: Bytes,
    stats: Arc<ServerStats>,
}

/// What a request asks for; pure, so routing is unit-tested.
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    /// A body of this many bytes.
    Body(u64),
    /// `/bytes/N` with N above the cap.
    TooLarge,
    /// Unknown path or unparsable N.
    NotFound,
    /// Not GET or HEAD.
    BadMethod,
}

/// Routes `method path` for a server whose `/` body is `body_size` and cap `max`.
pub fn route(method: &Method, path: &str, body_size: u64, max: u64) -> Route {
    if method != Method::GET && method != Method::HEAD {
        return Route::BadMethod;
    }
    if path == "/" {
        return Route::Body(body_size);
    }
    let Some(n) = path.strip_prefix("/bytes/") else {
        return Route::NotFound;
    };
    if n.is_empty() || n.len() > 20 || !n.bytes().all(|b| b.is_ascii_digit()) {
        return Route::NotFound;
    }
    match n.parse::<u64>() {
        Ok(n) if n <= max => Route::Body(n),
        Ok(_) => Route::TooLarge,
        Err(_) => Route::NotFound,
    }
}

fn respond(shared: &Shared, req: &Request<Incoming>, close: bool) -> Response<RepeatBody> {
    shared.stats.requests.fetch_add(1, Ordering::Relaxed);
    let c = &shared.config;
    let (status, body) = match route(req.method(), req.uri().path(), c.body_size, c.max_body_size) {
        Route::Body(n) => {
            shared.stats.body_bytes.fetch_add(n, Ordering::Relaxed);
            (StatusCode::OK, RepeatBody::new(shared.chunk.clone(), n))
        }
        Route::TooLarge => (
            StatusCode::PAYLOAD_TOO_LARGE,
            RepeatBody::text("requested size above --max-body-size\n"),
        ),
        Route::NotFound => (
            StatusCode::NOT_FOUND,
            RepeatBody::text("try / or /bytes/N\n"),
        ),
        Route::BadMethod => (
            StatusCode::METHOD_NOT_ALLOWED,
            RepeatBody::text("GET or HEAD only\n"),
        ),
    };
    let len = body.remaining;
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(REPLICA_HEADER, shared.replica.clone());
    h.insert(CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if close {
        h.insert(CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

/// Serves HTTP on `listener` until `shutdown` resolves; connections still open then are
/// asked to finish their current response (graceful) and dropped after one second.
pub async fn serve(
    listener: tokio::net::TcpListener,
    config: ServerConfig,
    stats: Arc<ServerStats>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let shared = Shared::new(config, stats)?;
    let limit = Arc::new(Semaphore::new(shared.config.max_connections));
    serve_shard(listener, shared, limit, shutdown).await;
    Ok(())
}

impl Shared {
    fn new(config: ServerConfig, stats: Arc<ServerStats>) -> std::io::Result<Arc<Self>> {
        Ok(Arc::new(Shared {
            replica: HeaderValue::from_str(&config.replica)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?,
            chunk: make_chunk(config.chunk_size),
            config,
            stats,
        }))
    }
}

/// The accept loop of one runtime; several shards may share one listening socket (each
/// with its own duplicate of the descriptor), the connection limit and the counters.
async fn serve_shard(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    limit: Arc<Semaphore>,
    shutdown: impl Future<Output = ()>,
) {
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(shared.config.header_timeout)
        .max_buf_size(shared.config.max_header_size.max(HYPER_MIN_BUF))
        .max_header_size(shared.config.max_header_size)
        .keep_alive(true);
    let builder = Arc::new(builder);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            () = &mut shutdown => break,
            p = limit.clone().acquire_owned() => p.expect("semaphore never closed"),
        };
        let (stream, _peer) = tokio::select! {
            () = &mut shutdown => break,
            r = listener.accept() => if let Ok(x) = r { x } else {
                // EMFILE and friends: back off instead of spinning; the loop is bounded by
                // the shutdown signal.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            },
        };
        let _ = stream.set_nodelay(true);
        shared.stats.connections.fetch_add(1, Ordering::Relaxed);
        let shared = shared.clone();
        let builder = builder.clone();
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let served = Arc::new(AtomicU64::new(0));
            let limit = shared.config.max_requests_per_connection;
            let svc_shared = shared.clone();
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let n = served.fetch_add(1, Ordering::Relaxed) + 1;
                let close = limit != 0 && n >= limit;
                let resp = respond(&svc_shared, &req, close);
                async move { Ok::<_, Infallible>(resp) }
            });
            let io = WriteDeadline::new(stream, shared.config.write_timeout);
            let conn = builder.serve_connection(TokioIo::new(io), service);
            tokio::pin!(conn);
            let stopped = async {
                let _ = stop.wait_for(|s| *s).await;
            };
            let result = tokio::select! {
                r = conn.as_mut() => r,
                () = stopped => {
                    conn.as_mut().graceful_shutdown();
                    tokio::time::timeout(Duration::from_secs(1), conn.as_mut())
                        .await
                        .unwrap_or(Ok(()))
                }
            };
            if result.is_err() {
                shared
                    .stats
                    .connection_errors
                    .fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    let _ = stop_tx.send(true);
}

/// A running server: one OS thread per [`ServerConfig::threads`], each with a
/// single-threaded runtime accepting on the shared listener and driving its own
/// connections (no cross-thread wake-ups per request). Dropping it stops it.
pub struct HttpServer {
    addr: SocketAddr,
    stats: Arc<ServerStats>,
    stop: Option<watch::Sender<bool>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl HttpServer {
    /// Starts serving on an already bound `listener` (so tests can bind port 0 and
    /// `SO_REUSEPORT` groups can be built by the caller).
    pub fn start(listener: std::net::TcpListener, config: ServerConfig) -> std::io::Result<Self> {
        config
            .validate()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let stats = Arc::new(ServerStats::default());
        let limit = Arc::new(Semaphore::new(config.max_connections));
        let threads_n = config.threads;
        let shared = Shared::new(config, stats.clone())?;
        let (stop, stopped) = watch::channel(false);
        let mut listeners = (1..threads_n)
            .map(|_| listener.try_clone())
            .collect::<std::io::Result<Vec<_>>>()?;
        listeners.push(listener);
        let mut threads = Vec::with_capacity(threads_n);
        for (i, listener) in listeners.into_iter().enumerate() {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let (shared, limit, mut stopped) = (shared.clone(), limit.clone(), stopped.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("netload-http-server-{i}"))
                .spawn(move || {
                    runtime.block_on(async move {
                        let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                            return;
                        };
                        let shutdown = async move {
                            let _ = stopped.wait_for(|s| *s).await;
                        };
                        serve_shard(listener, shared, limit, shutdown).await;
                    });
                    // Gives graceful shutdowns their second, then cancels what is left.
                    runtime.shutdown_timeout(Duration::from_millis(1500));
                });
            match spawned {
                Ok(t) => threads.push(t),
                Err(e) => {
                    let _ = stop.send(true);
                    for t in threads {
                        let _ = t.join();
                    }
                    return Err(e);
                }
            }
        }
        Ok(HttpServer {
            addr,
            stats,
            stop: Some(stop),
            threads,
        })
    }

    /// Binds `addr` (port 0 picks a free one) and starts serving.
    pub fn bind(addr: SocketAddr, config: ServerConfig) -> std::io::Result<Self> {
        HttpServer::start(std::net::TcpListener::bind(addr)?, config)
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Live counters.
    pub fn stats(&self) -> &ServerStats {
        &self.stats
    }

    /// Stops accepting, lets open responses finish for up to a second, and waits.
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(true);
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let g = Method::GET;
        assert_eq!(route(&g, "/", 10, 100), Route::Body(10));
        assert_eq!(route(&Method::HEAD, "/", 10, 100), Route::Body(10));
        assert_eq!(route(&g, "/bytes/0", 10, 100), Route::Body(0));
        assert_eq!(route(&g, "/bytes/100", 10, 100), Route::Body(100));
        assert_eq!(route(&g, "/bytes/101", 10, 100), Route::TooLarge);
        assert_eq!(route(&g, "/bytes/", 10, 100), Route::NotFound);
        assert_eq!(route(&g, "/bytes/-1", 10, 100), Route::NotFound);
        assert_eq!(
            route(&g, "/bytes/99999999999999999999999", 10, 100),
            Route::NotFound
        );
        assert_eq!(route(&g, "/x", 10, 100), Route::NotFound);
        assert_eq!(route(&Method::POST, "/", 10, 100), Route::BadMethod);
    }

    #[test]
    fn repeat_body_cuts_last_frame() {
        let chunk = make_chunk(4);
        let mut body = RepeatBody::new(chunk, 10);
        assert_eq!(body.size_hint().exact(), Some(10));
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut lens = Vec::new();
        while let Poll::Ready(Some(Ok(f))) = Pin::new(&mut body).poll_frame(&mut cx) {
            lens.push(f.into_data().unwrap().len());
            assert!(lens.len() < 10);
        }
        assert_eq!(lens, [4, 4, 2]);
        assert!(body.is_end_stream());
    }

    #[test]
    fn config_validation_names_flags() {
        let mut c = ServerConfig::new("r1");
        assert_eq!(c.validate(), Ok(()));
        c.replica = "bad\nname".into();
        assert!(c.validate().unwrap_err().contains("--replica"));
        let mut c = ServerConfig::new("r1");
        c.max_header_size = 10;
        assert!(c.validate().unwrap_err().contains("--http-max-header-size"));
    }
}
