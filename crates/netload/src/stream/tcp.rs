//! TCP stream engine: socket setup and the send and receive loops.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use socket2::SockRef;

use super::{DATA_IO_TIMEOUT, StreamContext, StreamOutcome, buffer_settings};
use crate::clock;
use crate::report::{EffectiveSettings, ZerocopyStats};
use crate::spec::{TestSpec, Zerocopy};
use crate::sys;

/// Socket options a TCP data socket needs *before* connect or accept completes (MSS and
/// buffer sizes shape the handshake and the window scale).
pub fn pre_connect(sock: &socket2::Socket, spec: &TestSpec) -> io::Result<()> {
    set_window_and_mss(&SockRef::from(sock), spec)
}

fn set_window_and_mss(sock: &SockRef<'_>, spec: &TestSpec) -> io::Result<()> {
    if let Some(window) = spec.window {
        sock.set_send_buffer_size(window as usize)?;
        sock.set_recv_buffer_size(window as usize)?;
    }
    if let Some(mss) = spec.mss {
        nix::sys::socket::setsockopt(&**sock, nix::sys::socket::sockopt::TcpMaxSeg, &mss)
            .map_err(|e| io::Error::other(format!("setting TCP_MAXSEG to {mss}: {e}")))?;
    }
    Ok(())
}

/// Socket options applied to a connected data socket; returns what is in force.
///
/// Fails when the kernel did not take a requested MSS: a benchmark that silently ran at
/// another segment size would be measuring something else.
pub fn post_connect(stream: &TcpStream, spec: &TestSpec) -> io::Result<EffectiveSettings> {
    let sock = SockRef::from(stream);
    // Again after connect: accepted sockets do not inherit these from a shared listener.
    set_window_and_mss(&sock, spec)?;
    stream.set_nodelay(spec.nodelay)?;
    if let Some(algo) = &spec.congestion {
        sock.set_tcp_congestion(algo.as_bytes()).map_err(|e| {
            io::Error::other(format!(
                "congestion control {algo:?} not available ({e}); see /proc/sys/net/ipv4/tcp_available_congestion_control"
            ))
        })?;
    }
    stream.set_read_timeout(Some(DATA_IO_TIMEOUT))?;
    stream.set_write_timeout(Some(DATA_IO_TIMEOUT))?;
    let settings = read_settings(stream, spec);
    if let Some(requested) = spec.mss {
        let info = sys::tcp_info(stream.as_fd())?;
        let sockopt = settings.mss_sockopt.unwrap_or(info.snd_mss);
        let effective = sockopt.max(info.snd_mss);
        if effective > requested {
            return Err(io::Error::other(format!(
                "the kernel did not take --mss {requested}: effective MSS is {effective} (TCP_MAXSEG {sockopt}, tcpi_snd_mss {})",
                info.snd_mss
            )));
        }
    }
    Ok(settings)
}

/// Settings in force on a TCP data socket, read back from the kernel.
pub fn read_settings(stream: &TcpStream, spec: &TestSpec) -> EffectiveSettings {
    let sock = SockRef::from(stream);
    let mut settings = buffer_settings(&sock);
    settings.congestion = sock.tcp_congestion().ok().map(|v| {
        String::from_utf8_lossy(&v)
            .trim_end_matches('\0')
            .to_string()
    });
    settings.mss_sockopt =
        nix::sys::socket::getsockopt(stream, nix::sys::socket::sockopt::TcpMaxSeg).ok();
    settings.rx_discard = spec.rx_discard;
    settings.nodelay = stream.nodelay().ok();
    settings
}

/// A payload buffer; never written after creation, so MSG_ZEROCOPY may reference it.
fn payload(len: usize) -> Vec<u8> {
    // Not all zeros, so a compressing or deduplicating middlebox cannot flatter the result.
    (0..len)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

/// An in-memory file holding the payload, for sendfile.
fn payload_file(len: usize) -> io::Result<OwnedFd> {
    let fd =
        nix::sys::memfd::memfd_create(c"netload-payload", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
            .map_err(io::Error::from)?;
    let mut file = std::fs::File::from(fd);
    file.write_all(&payload(len))?;
    Ok(file.into())
}

/// Sends until the deadline, then shuts down the write side so the receiver sees the end.
pub fn send(ctx: &StreamContext, stream: &TcpStream) -> StreamOutcome {
    let mut outcome = StreamOutcome {
        settings: read_settings(stream, &ctx.spec),
        ..StreamOutcome::default()
    };
    let len = ctx.spec.length as usize;
    let result = match ctx.spec.zerocopy {
        Zerocopy::None => send_copy(ctx, stream, len),
        Zerocopy::Sendfile => send_file(ctx, stream, len),
        Zerocopy::Msg => send_msg_zerocopy(ctx, stream, len, &mut outcome),
    };
    outcome.last_activity = Some(clock::now());
    outcome.settings.zerocopy = ctx.spec.zerocopy.as_str().to_string();
    if let Err(e) = result {
        outcome.error = Some(e.to_string());
    }
    outcome.tcp_end = sys::tcp_info(stream.as_fd()).ok();
    outcome.sent_measured = ctx.counters.bytes.load(Ordering::Relaxed);
    // Ignore errors: the peer may already have closed after an abort.
    let _ = stream.shutdown(Shutdown::Write);
    outcome
}

fn keep_sending(ctx: &StreamContext) -> bool {
    !ctx.control.aborted() && clock::now() < ctx.schedule.deadline
}

fn send_copy(ctx: &StreamContext, mut stream: &TcpStream, len: usize) -> io::Result<()> {
    let buf = payload(len);
    while keep_sending(ctx) {
        match stream.write(&buf) {
            Ok(n) => {
                ctx.counters.bytes.fetch_add(n as u64, Ordering::Relaxed);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // The peer closes (or we shut down) the connection to end an aborted run.
            Err(_) if ctx.control.aborted() => return Ok(()),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn send_file(ctx: &StreamContext, stream: &TcpStream, len: usize) -> io::Result<()> {
    let file = payload_file(len)?;
    let mut offset: i64 = 0;
    while keep_sending(ctx) {
        let remaining = len - offset as usize;
        match nix::sys::sendfile::sendfile(
            stream.as_fd(),
            file.as_fd(),
            Some(&mut offset),
            remaining,
        ) {
            Ok(n) => {
                ctx.counters.bytes.fetch_add(n as u64, Ordering::Relaxed);
                if offset as usize >= len {
                    offset = 0;
                }
            }
            Err(nix::errno::Errno::EINTR) => {}
            Err(_) if ctx.control.aborted() => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Completions are drained every this many sends, which keeps the socket's optmem (one
/// notification per uncompleted send) far below its limit.
const ZEROCOPY_DRAIN_EVERY: u64 = 16;

fn send_msg_zerocopy(
    ctx: &StreamContext,
    stream: &TcpStream,
    len: usize,
    outcome: &mut StreamOutcome,
) -> io::Result<()> {
    let fd = stream.as_fd();
    sys::enable_zerocopy(fd)
        .map_err(|e| io::Error::other(format!("SO_ZEROCOPY not supported here: {e}")))?;
    let buf = payload(len);
    let mut stats = ZerocopyStats::default();
    let mut done = sys::ZerocopyCompletions::default();
    while keep_sending(ctx) {
        match sys::send_zerocopy(fd, &buf) {
            Ok(n) => {
                stats.sends += 1;
                ctx.counters.bytes.fetch_add(n as u64, Ordering::Relaxed);
                if stats.sends % ZEROCOPY_DRAIN_EVERY == 0 {
                    sys::drain_zerocopy_completions(fd, &mut done)?;
                }
            }
            // Out of option memory for notifications: collect some, then go on.
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                sys::drain_zerocopy_completions(fd, &mut done)?;
                std::thread::yield_now();
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    // Collect the remaining completions (bounded: the data is acknowledged quickly).
    let give_up = clock::now() + std::time::Duration::from_secs(2);
    while done.completed < stats.sends && clock::now() < give_up {
        sys::drain_zerocopy_completions(fd, &mut done)?;
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    stats.completed = done.completed;
    stats.copied = done.copied;
    outcome.zerocopy = Some(stats);
    Ok(())
}

/// Receives until the sender's end of stream, counting every byte.
pub fn receive(ctx: &StreamContext, stream: &TcpStream) -> StreamOutcome {
    let mut outcome = StreamOutcome {
        settings: read_settings(stream, &ctx.spec),
        ..StreamOutcome::default()
    };
    let result = if ctx.spec.rx_discard {
        receive_loop(
            ctx,
            stream,
            DISCARD_READ,
            |()| sys::recv_discard(stream.as_fd(), DISCARD_READ),
            &mut outcome,
        )
    } else {
        let mut buf = vec![0u8; (ctx.spec.length as usize).max(MIN_READ)];
        let len = buf.len();
        let mut reader = stream;
        receive_loop(ctx, stream, len, |()| reader.read(&mut buf), &mut outcome)
    };
    if let Err(e) = result {
        outcome.error = Some(e.to_string());
    }
    outcome.tcp_end = sys::tcp_info(stream.as_fd()).ok();
    outcome.settings.zerocopy = Zerocopy::None.as_str().to_string();
    outcome
}

/// Smallest receive buffer: large reads amortise the syscall.
const MIN_READ: usize = 256 << 10;
/// Bytes discarded per `recv(MSG_TRUNC)`: nothing is copied, so larger is cheaper.
const DISCARD_READ: usize = 1 << 20;
/// How often the receive low watermark follows the observed rate.
const WATERMARK_PERIOD: Duration = Duration::from_millis(50);
/// The watermark asks for about this much traffic per wake-up.
const WATERMARK_TARGET: Duration = Duration::from_millis(1);

/// SO_RCVLOWAT that follows the stream's rate: a wake-up per ~1 ms of traffic, at most
/// one read buffer. The kernel otherwise wakes the reader for every segment train that
/// lands; at tens of Gbit/s those wake-ups cost more CPU than the copy (measured on
/// loopback: 0.085 → 0.05 CPU s per Gbit, see benches/). A slow stream gets a small
/// watermark, so interval figures stay fine-grained; end of stream always wakes.
#[derive(Debug, Clone)]
pub struct LowWatermark {
    max: usize,
    current: usize,
    window_start: Instant,
    window_bytes: u64,
}

impl LowWatermark {
    /// Starts at the kernel default (1 byte) with `max` as the ceiling.
    pub fn new(max: usize, now: Instant) -> Self {
        LowWatermark {
            max,
            current: 1,
            window_start: now,
            window_bytes: 0,
        }
    }

    /// Counts `n` bytes read; returns a new watermark to set when the rate calls for one
    /// that differs by more than a quarter from the current one.
    pub fn after_read(&mut self, n: usize, now: Instant) -> Option<usize> {
        self.window_bytes += n as u64;
        let elapsed = now.saturating_duration_since(self.window_start);
        if elapsed < WATERMARK_PERIOD {
            return None;
        }
        let per_target =
            self.window_bytes as f64 * WATERMARK_TARGET.as_secs_f64() / elapsed.as_secs_f64();
        let wanted = (per_target as usize).clamp(1, self.max);
        self.window_start = now;
        self.window_bytes = 0;
        let differs = wanted.abs_diff(self.current) * 4 > self.current;
        differs.then(|| {
            self.current = wanted;
            wanted
        })
    }

    /// The watermark in force.
    pub fn current(&self) -> usize {
        self.current
    }
}

fn receive_loop(
    ctx: &StreamContext,
    stream: &TcpStream,
    read_len: usize,
    mut read: impl FnMut(()) -> io::Result<usize>,
    outcome: &mut StreamOutcome,
) -> io::Result<()> {
    let mut watermark = LowWatermark::new(read_len, clock::now());
    let result = receive_until_end(ctx, stream, &mut watermark, &mut read, outcome);
    outcome.settings.receive_low_watermark = Some(watermark.current() as u32);
    result
}

fn receive_until_end(
    ctx: &StreamContext,
    stream: &TcpStream,
    watermark: &mut LowWatermark,
    read: &mut impl FnMut(()) -> io::Result<usize>,
    outcome: &mut StreamOutcome,
) -> io::Result<()> {
    loop {
        match read(()) {
            Ok(0) => return Ok(()),
            Ok(n) => {
                ctx.counters.bytes.fetch_add(n as u64, Ordering::Relaxed);
                let now = clock::now();
                outcome.last_activity = Some(now);
                if let Some(bytes) = watermark.after_read(n, now) {
                    sys::set_receive_low_watermark(stream.as_fd(), bytes as i32)?;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                if ctx.control.aborted() {
                    return Ok(());
                }
                if clock::now() > ctx.schedule.hard_stop() {
                    return Err(io::Error::other("sender never finished the stream"));
                }
                if clock::now() > ctx.schedule.deadline + DATA_IO_TIMEOUT {
                    return Err(io::Error::other(format!(
                        "no data for {} s: the sender vanished",
                        DATA_IO_TIMEOUT.as_secs()
                    )));
                }
            }
            Err(_) if ctx.control.aborted() => return Ok(()),
            Err(e) => return Err(e),
        }
        if ctx.control.aborted() {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watermark_follows_the_rate_within_bounds() {
        let t0 = clock::now();
        let mut w = LowWatermark::new(256 << 10, t0);
        // Nothing changes before a period has passed.
        assert_eq!(w.after_read(1 << 20, t0 + Duration::from_millis(10)), None);
        // 10 MB in 50 ms is 200 MB/s: 200 kB per ms.
        let set = w
            .after_read(9 << 20, t0 + Duration::from_millis(50))
            .unwrap();
        assert!((190_000..=215_000).contains(&set), "{set}");
        // A much faster stream is capped at one read buffer.
        let t1 = t0 + Duration::from_millis(100);
        assert_eq!(w.after_read(1 << 30, t1), Some(256 << 10));
        // A small wobble does not cost a syscall.
        let t2 = t1 + Duration::from_millis(50);
        assert_eq!(w.after_read(1 << 30, t2), None);
        // A slow stream goes back down, never below one byte.
        let t3 = t2 + Duration::from_millis(100);
        assert_eq!(w.after_read(0, t3), Some(1));
        assert_eq!(w.current(), 1);
    }
}
