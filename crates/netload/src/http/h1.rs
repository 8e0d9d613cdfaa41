//! The client's HTTP/1.1 exchange: one GET on a kept-alive connection, framed by hand and
//! parsed with `httparse` (hyper's own parser).
//!
//! Why not hyper's client: a load generator spends its CPU on the request path, and hyper's
//! client (request and header maps, a dispatcher with channels and wakers, a body stream)
//! cost about 7 µs of user CPU per small request here, against wrk's 1.5 µs: enough for the
//! client, not the server, to set the requests/s. This path writes one pre-built request,
//! reads into one reused buffer, parses the head without allocating and discards the body
//! while counting it. It takes only what a GET needs: `Content-Length`, chunked and
//! read-until-close bodies, 1xx interim answers, `Connection: close` and HTTP/1.0.
//!
//! Time to first byte is stamped on the first read that returns response bytes, as curl's
//! `time_starttransfer` is.

use std::io;
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::REPLICA_HEADER;
use crate::clock;

/// Largest response head accepted, bytes.
pub const MAX_HEAD: usize = 64 << 10;
/// Headers parsed per response; more is a broken peer.
const MAX_HEADERS: usize = 64;
/// Size of each connection's read buffer (bodies are read and discarded in slices of it).
const BUF: usize = 64 << 10;

/// How the body of a response is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body (1xx, 204, 304).
    Empty,
    /// `Content-Length` bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the server closes the connection.
    UntilClose,
}

/// What the response head says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// Status code.
    pub status: u16,
    /// Bytes of the head (status line, headers, blank line).
    pub len: usize,
    /// How the body ends.
    pub framing: Framing,
    /// The connection may carry another request afterwards.
    pub keep_alive: bool,
    /// Range of the replica header's value within the parsed bytes.
    pub replica: Option<std::ops::Range<usize>>,
}

/// Why an exchange failed.
#[derive(Debug)]
pub enum Broken {
    /// A socket error (connect aside).
    Io(io::Error),
    /// The server closed the connection before any response byte.
    ClosedBeforeAnswer,
    /// The server closed the connection inside the response head.
    IncompleteHead,
    /// Not an HTTP/1.x response (or a head above [`MAX_HEAD`]).
    NotHttp(String),
    /// The body ended early: bytes received and the announced length, when there was one.
    ShortBody(u64, Option<u64>),
}

impl std::fmt::Display for Broken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Broken::Io(e) => write!(f, "{e}"),
            Broken::ClosedBeforeAnswer => f.write_str("connection closed before any response byte"),
            Broken::IncompleteHead => f.write_str("connection closed inside the response head"),
            Broken::NotHttp(why) => write!(f, "not an HTTP/1.x response: {why}"),
            Broken::ShortBody(got, Some(n)) => write!(f, "{got} of {n} body bytes"),
            Broken::ShortBody(got, None) => {
                write!(f, "chunked body cut after {got} bytes")
            }
        }
    }
}

/// Parses a complete response head at the start of `buf`; `Ok(None)` when more bytes are
/// needed.
pub fn parse_head(buf: &[u8]) -> Result<Option<Head>, Broken> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => {
            return Err(Broken::NotHttp(format!("head above {MAX_HEAD} bytes")));
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(Broken::NotHttp(e.to_string())),
    };
    let status = resp.code.unwrap_or(0);
    let http11 = resp.version == Some(1);
    let (mut length, mut chunked, mut close, mut keep) = (None, false, false, false);
    let mut replica = None;
    let base = buf.as_ptr() as usize;
    for h in resp.headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("content-length") {
            let n = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or_else(|| Broken::NotHttp("bad content-length".into()))?;
            if length.is_some_and(|l| l != n) {
                return Err(Broken::NotHttp("conflicting content-length".into()));
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            // Chunked must be the last coding (RFC 9112 6.1).
            chunked = h
                .value
                .rsplit(|b| *b == b',')
                .next()
                .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if name.eq_ignore_ascii_case("connection") {
            for token in h.value.split(|b| *b == b',') {
                close |= token.trim_ascii().eq_ignore_ascii_case(b"close");
                keep |= token.trim_ascii().eq_ignore_ascii_case(b"keep-alive");
            }
        } else if name.eq_ignore_ascii_case(REPLICA_HEADER) {
            let start = h.value.as_ptr() as usize - base;
            replica = Some(start..start + h.value.len());
        }
    }
    let framing = if (100..200).contains(&status) || status == 204 || status == 304 {
        Framing::Empty
    } else if chunked {
        Framing::Chunked
    } else if let Some(n) = length {
        Framing::Length(n)
    } else {
        Framing::UntilClose
    };
    let keep_alive = framing != Framing::UntilClose && if http11 { !close } else { keep };
    Ok(Some(Head {
        status,
        len,
        framing,
        keep_alive,
        replica,
    }))
}

/// The outcome of one exchange.
#[derive(Debug)]
pub struct Answer {
    /// Status code.
    pub status: u16,
    /// When the first response byte was read.
    pub first_byte: Instant,
    /// Body bytes (all of the announced length: a shorter body is [`Broken::ShortBody`]).
    pub bytes: u64,
    /// The connection can carry the next request.
    pub keep_alive: bool,
}

/// One client connection with its read buffer.
pub struct Conn {
    io: TcpStream,
    buf: Box<[u8]>,
    /// Unconsumed bytes are `buf[start..end]`.
    start: usize,
    end: usize,
    /// Value of the replica header of the last answer (kept, since the buffer is reused).
    replica: Option<String>,
}

impl Conn {
    /// Wraps a connected socket.
    pub fn new(io: TcpStream) -> Self {
        Conn {
            io,
            buf: vec![0u8; BUF].into_boxed_slice(),
            start: 0,
            end: 0,
            replica: None,
        }
    }

    /// The replica header of the last answer.
    pub fn replica(&self) -> Option<&str> {
        self.replica.as_deref()
    }

    /// Reads more bytes behind the unconsumed ones; 0 at end of stream.
    async fn fill(&mut self) -> io::Result<usize> {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "response head fills the read buffer",
            ));
        }
        let n = self.io.read(&mut self.buf[self.end..]).await?;
        self.end += n;
        Ok(n)
    }

    /// Consumes up to `want` bytes of body, reading as needed; the count consumed, 0 at EOF.
    async fn consume(&mut self, want: u64) -> io::Result<u64> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            if self.fill().await? == 0 {
                return Ok(0);
            }
        }
        let have = (self.end - self.start) as u64;
        let n = have.min(want);
        // n <= have, which is a buffer length.
        self.start += usize::try_from(n).unwrap_or(usize::MAX);
        Ok(n)
    }

    /// Waits for the server's end of stream after an answer that closes the connection, so
    /// that the client's close is the passive one and leaves no `TIME_WAIT` socket. Bytes
    /// after the answer are discarded (a broken server's, not ours to measure).
    pub async fn await_close(&mut self) -> io::Result<()> {
        // Bounded by the caller's request timeout; each pass drains what arrived.
        loop {
            self.start = 0;
            self.end = 0;
            if self.fill().await? == 0 {
                return Ok(());
            }
        }
    }

    /// Makes the coming close abort the connection with a reset (`SO_LINGER` 0).
    pub fn reset_on_close(&self) -> io::Result<()> {
        self.io.set_zero_linger()
    }

    /// Sends `request` (a complete GET head) and reads the whole answer.
    pub async fn exchange(&mut self, request: &[u8]) -> Result<Answer, Broken> {
        self.io.write_all(request).await.map_err(Broken::Io)?;
        let mut first_byte = None;
        let head = loop {
            if self.start < self.end {
                match parse_head(&self.buf[self.start..self.end])? {
                    Some(h) if (100..200).contains(&h.status) => {
                        self.start += h.len; // interim answer: the real one follows
                        continue;
                    }
                    Some(h) => break h,
                    None => {}
                }
            }
            let n = self.fill().await.map_err(|e| match e.kind() {
                io::ErrorKind::InvalidData => Broken::NotHttp(e.to_string()),
                _ => Broken::Io(e),
            })?;
            if n == 0 {
                return Err(if first_byte.is_none() {
                    Broken::ClosedBeforeAnswer
                } else {
                    Broken::IncompleteHead
                });
            }
            first_byte.get_or_insert_with(clock::now);
        };
        let first_byte = first_byte.unwrap_or_else(clock::now);
        // Kept only when it changed: one allocation per connection, not per request.
        match &head.replica {
            Some(r) => {
                let v = &self.buf[self.start + r.start..self.start + r.end];
                if self.replica.as_ref().is_none_or(|old| old.as_bytes() != v) {
                    self.replica = Some(String::from_utf8_lossy(v).into_owned());
                }
            }
            None => self.replica = None,
        }
        self.start += head.len;
        let mut bytes = 0u64;
        match head.framing {
            Framing::Empty => {}
            Framing::Length(n) => {
                while bytes < n {
                    let got = self.consume(n - bytes).await.map_err(Broken::Io)?;
                    if got == 0 {
                        return Err(Broken::ShortBody(bytes, Some(n)));
                    }
                    bytes += got;
                }
            }
            Framing::UntilClose => loop {
                let got = self.consume(u64::MAX).await.map_err(Broken::Io)?;
                if got == 0 {
                    break;
                }
                bytes += got;
            },
            Framing::Chunked => bytes = self.chunked_body().await?,
        }
        Ok(Answer {
            status: head.status,
            first_byte,
            bytes,
            keep_alive: head.keep_alive,
        })
    }

    /// Reads a chunked body and its trailers; returns the data bytes.
    async fn chunked_body(&mut self) -> Result<u64, Broken> {
        let mut bytes = 0u64;
        let cut = |bytes| Broken::ShortBody(bytes, None);
        loop {
            let size = loop {
                match httparse::parse_chunk_size(&self.buf[self.start..self.end]) {
                    Ok(httparse::Status::Complete((used, size))) => {
                        self.start += used;
                        break size;
                    }
                    Ok(httparse::Status::Partial) => {
                        if self.fill().await.map_err(Broken::Io)? == 0 {
                            return Err(cut(bytes));
                        }
                    }
                    Err(_) => return Err(Broken::NotHttp("bad chunk size".into())),
                }
            };
            if size == 0 {
                // Trailer lines, then the blank line that ends the message.
                loop {
                    let rest = &self.buf[self.start..self.end];
                    if let Some(i) = rest.windows(2).position(|w| w == b"\r\n") {
                        self.start += i + 2;
                        if i == 0 {
                            return Ok(bytes);
                        }
                    } else if self.fill().await.map_err(Broken::Io)? == 0 {
                        return Err(cut(bytes));
                    }
                }
            }
            let mut left = size;
            while left > 0 {
                let got = self.consume(left).await.map_err(Broken::Io)?;
                if got == 0 {
                    return Err(cut(bytes));
                }
                left -= got;
                bytes += got;
            }
            // The CRLF after the chunk's data.
            while self.end - self.start < 2 {
                if self.fill().await.map_err(Broken::Io)? == 0 {
                    return Err(cut(bytes));
                }
            }
            if &self.buf[self.start..self.start + 2] != b"\r\n" {
                return Err(Broken::NotHttp("chunk data not followed by CRLF".into()));
            }
            self.start += 2;
        }
    }
}

/// The request head sent for every GET of `path` on `host` (built once per URL).
pub fn get_request(path: &str, host: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nhost: {host}\r\n\r\n").into_bytes()
}

/// A GET head asking the server to close the connection after its answer (so the server,
/// not the client, keeps the `TIME_WAIT` socket).
pub fn get_request_close(path: &str, host: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(text: &str) -> Head {
        parse_head(text.as_bytes()).unwrap().unwrap()
    }

    #[test]
    fn framing_follows_the_headers() {
        let h = head("HTTP/1.1 200 OK\r\nContent-Length: 12\r\nx-netload-replica: r1\r\n\r\nbody");
        assert_eq!(h.framing, Framing::Length(12));
        assert!(h.keep_alive);
        assert_eq!(
            h.len,
            "HTTP/1.1 200 OK\r\nContent-Length: 12\r\nx-netload-replica: r1\r\n\r\n".len()
        );
        let r = h.replica.unwrap();
        assert_eq!(
            &"HTTP/1.1 200 OK\r\nContent-Length: 12\r\nx-netload-replica: r1\r\n\r\n"[r],
            "r1"
        );
        let h = head(
            "HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\ncontent-length: 5\r\n\r\n",
        );
        assert_eq!(h.framing, Framing::Chunked);
        let h =
            head("HTTP/1.1 200 OK\r\nConnection: keep-alive, close\r\ncontent-length: 0\r\n\r\n");
        assert!(!h.keep_alive);
        let h = head("HTTP/1.1 200 OK\r\n\r\n");
        assert_eq!((h.framing, h.keep_alive), (Framing::UntilClose, false));
        let h = head("HTTP/1.0 200 OK\r\ncontent-length: 1\r\n\r\n");
        assert!(!h.keep_alive, "HTTP/1.0 closes unless it says keep-alive");
        let h = head("HTTP/1.0 200 OK\r\ncontent-length: 1\r\nconnection: Keep-Alive\r\n\r\n");
        assert!(h.keep_alive);
        assert_eq!(
            head("HTTP/1.1 204 No Content\r\n\r\n").framing,
            Framing::Empty
        );
        assert_eq!(
            head("HTTP/1.1 100 Continue\r\n\r\n").framing,
            Framing::Empty
        );
    }

    #[test]
    fn partial_and_broken_heads() {
        assert!(
            parse_head(b"HTTP/1.1 200 OK\r\ncontent-le")
                .unwrap()
                .is_none()
        );
        assert!(matches!(
            parse_head(b"SSH-2.0-OpenSSH\r\n\r\n"),
            Err(Broken::NotHttp(_))
        ));
        assert!(matches!(
            parse_head(b"HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n"),
            Err(Broken::NotHttp(_))
        ));
        assert!(matches!(
            parse_head(b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n"),
            Err(Broken::NotHttp(_))
        ));
        let mut huge = b"HTTP/1.1 200 OK\r\nx: ".to_vec();
        huge.resize(MAX_HEAD, b'a');
        assert!(matches!(parse_head(&huge), Err(Broken::NotHttp(_))));
    }

    #[test]
    fn request_head() {
        assert_eq!(
            get_request("/bytes/64?x=1", "127.0.0.1:8080"),
            b"GET /bytes/64?x=1 HTTP/1.1\r\nhost: 127.0.0.1:8080\r\n\r\n"
        );
    }

    /// Runs `exchange` against a peer that answers `answer` (then closes when `close`).
    fn exchange_with(
        answer: &'static [u8],
        close: bool,
    ) -> Result<(Answer, Option<String>), Broken> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = l.local_addr().unwrap();
            let peer = tokio::spawn(async move {
                let (mut s, _) = l.accept().await.unwrap();
                let mut b = [0u8; 1024];
                let _ = s.read(&mut b).await;
                // Dribbled in small pieces, so every framing path meets partial input.
                for piece in answer.chunks(3) {
                    s.write_all(piece).await.unwrap();
                    s.flush().await.unwrap();
                    tokio::task::yield_now().await;
                }
                if !close {
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                }
            });
            let mut c = Conn::new(TcpStream::connect(addr).await.unwrap());
            let r = tokio::time::timeout(
                std::time::Duration::from_secs(5),
                c.exchange(&get_request("/", "h")),
            )
            .await
            .expect("bounded");
            let _ = peer.await;
            r.map(|a| (a, c.replica().map(str::to_owned)))
        })
    }

    #[test]
    fn bodies_of_every_framing_are_counted() {
        let (a, rep) = exchange_with(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 10\r\nx-netload-replica: r7\r\n\r\n0123456789",
            false,
        )
        .unwrap();
        assert_eq!((a.status, a.bytes, a.keep_alive), (200, 10, true));
        assert_eq!(rep.as_deref(), Some("r7"));
        let (a, _) = exchange_with(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n4\r\nWiki\r\n5;x=y\r\npedia\r\n0\r\nt: 1\r\n\r\n",
            false,
        )
        .unwrap();
        assert_eq!((a.bytes, a.keep_alive), (9, true));
        let (a, _) = exchange_with(b"HTTP/1.1 200 OK\r\n\r\nuntil close", true).unwrap();
        assert_eq!((a.bytes, a.keep_alive), (11, false));
    }

    #[test]
    fn cut_answers_are_errors() {
        assert!(matches!(
            exchange_with(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n01234", true),
            Err(Broken::ShortBody(5, Some(10)))
        ));
        assert!(matches!(
            exchange_with(
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n4\r\nWi",
                true
            ),
            Err(Broken::ShortBody(2, None))
        ));
        assert!(matches!(
            exchange_with(b"HTTP/1.1 200", true),
            Err(Broken::IncompleteHead)
        ));
        assert!(matches!(
            exchange_with(b"", true),
            Err(Broken::ClosedBeforeAnswer)
        ));
        assert!(matches!(
            exchange_with(b"garbage\r\n\r\n", true),
            Err(Broken::NotHttp(_))
        ));
    }
}
