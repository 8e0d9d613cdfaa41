//! The only unsafe code in netload: socket features no crate exposes.
//!
//! - TCP_INFO snapshots ([`tcp_info`]);
//! - MSG_ZEROCOPY sends and their completions from the error queue ([`send_zerocopy`],
//!   [`drain_zerocopy_completions`]);
//! - receive-and-discard with MSG_TRUNC ([`recv_discard`]);
//! - UDP batching with sendmmsg/recvmmsg and GSO/GRO ([`UdpBatch`]);
//! - per-socket drop counts ([`socket_drops`]).
//!
//! Every function takes a borrowed fd, so the caller's socket type owns the lifetime.
#![allow(unsafe_code)]

use std::io;
use std::mem::{MaybeUninit, size_of, size_of_val};
use std::os::fd::{AsRawFd, BorrowedFd};

/// `SO_ZEROCOPY` (asm-generic/socket.h).
const SO_ZEROCOPY: libc::c_int = 60;
/// `SO_EE_ORIGIN_ZEROCOPY` (linux/errqueue.h).
const SO_EE_ORIGIN_ZEROCOPY: u8 = 5;
/// `SO_EE_CODE_ZEROCOPY_COPIED` (linux/errqueue.h): the kernel fell back to copying.
const SO_EE_CODE_ZEROCOPY_COPIED: u8 = 1;

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn check_size(ret: libc::ssize_t) -> io::Result<usize> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret as usize)
    }
}

fn setsockopt_int(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: `value` outlives the call and its size is passed alongside.
    check(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&raw const value).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    })
    .map(drop)
}

/// The TCP_INFO fields netload reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TcpInfo {
    /// `tcpi_total_retrans`: segments retransmitted over the connection's life.
    pub total_retrans: u32,
    /// Smoothed RTT, microseconds.
    pub rtt_us: u32,
    /// RTT variance, microseconds.
    pub rttvar_us: u32,
    /// Congestion window, segments.
    pub snd_cwnd: u32,
    /// Sending MSS, bytes.
    pub snd_mss: u32,
    /// Receiving MSS estimate, bytes.
    pub rcv_mss: u32,
    /// Path MTU, bytes.
    pub pmtu: u32,
}

/// Reads TCP_INFO of a TCP socket.
pub fn tcp_info(fd: BorrowedFd<'_>) -> io::Result<TcpInfo> {
    let mut info = MaybeUninit::<libc::tcp_info>::zeroed();
    let mut len = size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `info`, which is zero-initialised.
    check(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            info.as_mut_ptr().cast(),
            &raw mut len,
        )
    })?;
    // A kernel (or an emulator: qemu-user) may fill less than the struct; the fields left
    // zero would read as an RTT of 0 and no retransmits, so a short answer is an error.
    let needed = tcp_info_bytes_read();
    if (len as usize) < needed {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("TCP_INFO: the kernel returned {len} bytes, fewer than the {needed} read"),
        ));
    }
    // SAFETY: zero-initialised and possibly (partly) overwritten by the kernel: every bit
    // pattern is a valid tcp_info of plain integers.
    let info = unsafe { info.assume_init() };
    Ok(TcpInfo {
        total_retrans: info.tcpi_total_retrans,
        rtt_us: info.tcpi_rtt,
        rttvar_us: info.tcpi_rttvar,
        snd_cwnd: info.tcpi_snd_cwnd,
        snd_mss: info.tcpi_snd_mss,
        rcv_mss: info.tcpi_rcv_mss,
        pmtu: info.tcpi_pmtu,
    })
}

/// Bytes of `struct tcp_info` up to the end of the last field [`tcp_info`] reads.
fn tcp_info_bytes_read() -> usize {
    use std::mem::offset_of;
    let end = |offset: usize| offset + size_of::<u32>();
    [
        end(offset_of!(libc::tcp_info, tcpi_total_retrans)),
        end(offset_of!(libc::tcp_info, tcpi_rtt)),
        end(offset_of!(libc::tcp_info, tcpi_rttvar)),
        end(offset_of!(libc::tcp_info, tcpi_snd_cwnd)),
        end(offset_of!(libc::tcp_info, tcpi_snd_mss)),
        end(offset_of!(libc::tcp_info, tcpi_rcv_mss)),
        end(offset_of!(libc::tcp_info, tcpi_pmtu)),
    ]
    .into_iter()
    .max()
    .unwrap_or(0)
}

/// Receives and discards up to `len` bytes of a TCP stream without copying them to user
/// space (`recv(MSG_TRUNC)`, Linux ≥ 2.4). Returns 0 at end of stream.
pub fn recv_discard(fd: BorrowedFd<'_>, len: usize) -> io::Result<usize> {
    // SAFETY: with MSG_TRUNC on a TCP socket the kernel never writes to the buffer, so a
    // null pointer is valid (tcp_recvmsg skips the copy).
    check_size(unsafe { libc::recv(fd.as_raw_fd(), std::ptr::null_mut(), len, libc::MSG_TRUNC) })
}

/// Enables `SO_ZEROCOPY` so sends may use `MSG_ZEROCOPY`.
pub fn enable_zerocopy(fd: BorrowedFd<'_>) -> io::Result<()> {
    setsockopt_int(fd, libc::SOL_SOCKET, SO_ZEROCOPY, 1)
}

/// `send(buf, MSG_ZEROCOPY)`. The kernel pins `buf`'s pages until the completion for this
/// send is read; callers must not change `buf` before then (netload never writes to its
/// payload buffer after creating it).
pub fn send_zerocopy(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for reads of its length.
    check_size(unsafe {
        libc::send(
            fd.as_raw_fd(),
            buf.as_ptr().cast(),
            buf.len(),
            libc::MSG_ZEROCOPY,
        )
    })
}

/// Totals read from the error queue by [`drain_zerocopy_completions`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ZerocopyCompletions {
    /// Sends completed (each notification covers a range of send calls).
    pub completed: u64,
    /// Of those, sends the kernel reports it copied anyway.
    pub copied: u64,
}

/// Reads every pending MSG_ZEROCOPY completion from the socket's error queue without
/// blocking and adds them to `into`.
pub fn drain_zerocopy_completions(
    fd: BorrowedFd<'_>,
    into: &mut ZerocopyCompletions,
) -> io::Result<()> {
    // Room for one cmsg holding a sock_extended_err plus the offender address.
    let mut control = [0u64; 16];
    loop {
        // SAFETY: msghdr is plain data; all-zero is a valid empty header.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = size_of::<[u64; 16]>() as _;
        // SAFETY: msg points at `control`, which outlives the call; no data iovec.
        let ret = unsafe {
            libc::recvmsg(
                fd.as_raw_fd(),
                &raw mut msg,
                libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT,
            )
        };
        if ret < 0 {
            let err = io::Error::last_os_error();
            return match err.kind() {
                io::ErrorKind::WouldBlock => Ok(()),
                io::ErrorKind::Interrupted => continue,
                _ => Err(err),
            };
        }
        // SAFETY: CMSG_* walk the control buffer the kernel just filled, within msg_controllen.
        unsafe {
            let mut cmsg = libc::CMSG_FIRSTHDR(&raw const msg);
            while !cmsg.is_null() {
                let is_recverr = ((*cmsg).cmsg_level == libc::SOL_IP
                    && (*cmsg).cmsg_type == libc::IP_RECVERR)
                    || ((*cmsg).cmsg_level == libc::SOL_IPV6
                        && (*cmsg).cmsg_type == libc::IPV6_RECVERR);
                if is_recverr {
                    let err: libc::sock_extended_err =
                        std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                    if err.ee_errno == 0 && err.ee_origin == SO_EE_ORIGIN_ZEROCOPY {
                        // ee_info..=ee_data is the inclusive range of send calls completed.
                        let n = u64::from(err.ee_data.wrapping_sub(err.ee_info)) + 1;
                        into.completed += n;
                        if err.ee_code & SO_EE_CODE_ZEROCOPY_COPIED != 0 {
                            into.copied += n;
                        }
                    }
                }
                cmsg = libc::CMSG_NXTHDR(&raw const msg, cmsg);
            }
        }
    }
}

/// Sets `UDP_SEGMENT` (GSO): each send of a large buffer is split into `segment`-byte
/// datagrams by the kernel (or the NIC).
pub fn set_udp_segment(fd: BorrowedFd<'_>, segment: u16) -> io::Result<()> {
    setsockopt_int(
        fd,
        libc::SOL_UDP,
        libc::UDP_SEGMENT,
        libc::c_int::from(segment),
    )
}

/// Enables `UDP_GRO`: consecutive datagrams of one flow arrive coalesced in one read, with
/// the segment size in a control message.
pub fn set_udp_gro(fd: BorrowedFd<'_>) -> io::Result<()> {
    setsockopt_int(fd, libc::SOL_UDP, libc::UDP_GRO, 1)
}

/// Preallocated headers for sendmmsg/recvmmsg over one contiguous buffer split in
/// equal slots, with room for a UDP_GRO control message per slot.
pub struct UdpBatch {
    buf: Vec<u8>,
    slot: usize,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
    controls: Vec<[u64; 4]>,
}

// SAFETY: the raw pointers in iovs/hdrs only point into buffers owned by the same struct.
unsafe impl Send for UdpBatch {}

/// One datagram (or GRO train) received by [`UdpBatch::recv`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// Bytes received in the slot.
    pub len: usize,
    /// Segment size when the kernel coalesced several datagrams (UDP_GRO), else `None`.
    pub gro_segment: Option<usize>,
}

impl UdpBatch {
    /// `count` slots of `slot` bytes each.
    pub fn new(count: usize, slot: usize) -> Self {
        let mut batch = UdpBatch {
            buf: vec![0u8; count * slot],
            slot,
            iovs: Vec::with_capacity(count),
            hdrs: Vec::with_capacity(count),
            controls: vec![[0u64; 4]; count],
        };
        for i in 0..count {
            batch.iovs.push(libc::iovec {
                // SAFETY: i * slot < buf.len().
                iov_base: unsafe { batch.buf.as_mut_ptr().add(i * slot) }.cast(),
                iov_len: slot,
            });
        }
        for i in 0..count {
            // SAFETY: mmsghdr is plain data; zero is a valid empty header.
            let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
            // SAFETY: i < count == iovs.len().
            h.msg_hdr.msg_iov = unsafe { batch.iovs.as_mut_ptr().add(i) };
            h.msg_hdr.msg_iovlen = 1;
            batch.hdrs.push(h);
        }
        batch
    }

    /// Number of slots.
    pub fn count(&self) -> usize {
        self.hdrs.len()
    }

    /// Size of each slot, bytes.
    pub fn slot_len(&self) -> usize {
        self.slot
    }

    /// Mutable view of slot `i`.
    pub fn slot_mut(&mut self, i: usize) -> &mut [u8] {
        &mut self.buf[i * self.slot..(i + 1) * self.slot]
    }

    /// View of the first `len` bytes of slot `i`.
    pub fn slot(&self, i: usize, len: usize) -> &[u8] {
        &self.buf[i * self.slot..i * self.slot + len]
    }

    /// Sends slots `0..n`, each `len` bytes long, on a connected socket with one sendmmsg.
    /// Returns how many were sent.
    pub fn send(&mut self, fd: BorrowedFd<'_>, n: usize, len: usize) -> io::Result<usize> {
        let n = n.min(self.count());
        for (iov, hdr) in self.iovs.iter_mut().zip(self.hdrs.iter_mut()).take(n) {
            iov.iov_len = len;
            hdr.msg_hdr.msg_control = std::ptr::null_mut();
            hdr.msg_hdr.msg_controllen = 0;
        }
        // SAFETY: hdrs[..n] point at iovs/buf owned by self, valid for `len` <= slot bytes.
        let ret =
            unsafe { libc::sendmmsg(fd.as_raw_fd(), self.hdrs.as_mut_ptr(), n as libc::c_uint, 0) };
        check(ret).map(|r| r as usize)
    }

    /// Receives up to `count` datagrams with one recvmmsg, waiting for the first one
    /// (bounded by the socket's receive timeout). Fills `out` with one entry per slot used.
    pub fn recv(&mut self, fd: BorrowedFd<'_>, out: &mut Vec<Received>) -> io::Result<()> {
        out.clear();
        let slot = self.slot;
        let count = self.count();
        for i in 0..count {
            self.iovs[i].iov_len = slot;
            let hdr = &mut self.hdrs[i].msg_hdr;
            hdr.msg_control = self.controls[i].as_mut_ptr().cast();
            hdr.msg_controllen = size_of::<[u64; 4]>() as _;
            hdr.msg_flags = 0;
            self.hdrs[i].msg_len = 0;
        }
        // SAFETY: every header points at buffers owned by self; MSG_WAITFORONE returns after
        // the first datagram once more would block.
        let ret = unsafe {
            libc::recvmmsg(
                fd.as_raw_fd(),
                self.hdrs.as_mut_ptr(),
                count as libc::c_uint,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        let n = check(ret)? as usize;
        for i in 0..n {
            let hdr = &self.hdrs[i];
            let mut gro_segment = None;
            // SAFETY: walks the control buffer of slot i within the length the kernel set.
            unsafe {
                let mut cmsg = libc::CMSG_FIRSTHDR(&raw const hdr.msg_hdr);
                while !cmsg.is_null() {
                    if (*cmsg).cmsg_level == libc::SOL_UDP && (*cmsg).cmsg_type == libc::UDP_GRO {
                        let seg: libc::c_int =
                            std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                        gro_segment = usize::try_from(seg).ok().filter(|&s| s > 0);
                    }
                    cmsg = libc::CMSG_NXTHDR(&raw const hdr.msg_hdr, cmsg);
                }
            }
            out.push(Received {
                len: hdr.msg_len as usize,
                gro_segment,
            });
        }
        Ok(())
    }
}

/// Sets `SO_RCVLOWAT`: a blocking read returns only once this many bytes are queued (or
/// the stream ends), so a fast receiver is woken fewer times per byte.
pub fn set_receive_low_watermark(fd: BorrowedFd<'_>, bytes: i32) -> io::Result<()> {
    setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_RCVLOWAT, bytes)
}

/// Bytes waiting to be read on a socket (`FIONREAD`).
pub fn unread_bytes(fd: BorrowedFd<'_>) -> io::Result<usize> {
    ioctl_count(fd, libc::FIONREAD)
}

/// Bytes a TCP socket holds in its send queue, not yet acknowledged by the peer
/// (`SIOCOUTQ`, which is `TIOCOUTQ`).
pub fn unacked_bytes(fd: BorrowedFd<'_>) -> io::Result<usize> {
    ioctl_count(fd, libc::TIOCOUTQ)
}

/// A socket ioctl that reports a byte count through an int.
fn ioctl_count(fd: BorrowedFd<'_>, request: libc::Ioctl) -> io::Result<usize> {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD and SIOCOUTQ write one c_int through the pointer, which lives
    // across the call.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), request, &raw mut n) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(usize::try_from(n).unwrap_or(0))
}

/// `SO_MEMINFO` (asm-generic/socket.h): the socket's memory counters as `u32`s.
const SO_MEMINFO: libc::c_int = 55;
/// `SK_MEMINFO_VARS` (linux/sock_diag.h): counters `SO_MEMINFO` returns.
const SK_MEMINFO_VARS: usize = 9;
/// `SK_MEMINFO_DROPS` (linux/sock_diag.h): index of `sk_drops`.
const SK_MEMINFO_DROPS: usize = 8;

/// Packets the kernel dropped at this socket since it was created (`sk_drops` through
/// `SO_MEMINFO`, Linux 4.6+): for UDP, mostly a full receive queue (rcvbuf), the same
/// events `/proc/net/snmp` counts as `RcvbufErrors`, but for this socket alone. The
/// kernel adds a GRO/GSO super-packet's segment count, so the unit is datagrams.
pub fn socket_drops(fd: BorrowedFd<'_>) -> io::Result<u64> {
    let mut info = [0u32; SK_MEMINFO_VARS];
    let mut len = size_of_val(&info) as libc::socklen_t;
    // SAFETY: the buffer and its length are passed together; the kernel writes at most
    // `len` bytes and updates `len`.
    check(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_MEMINFO,
            info.as_mut_ptr().cast(),
            &raw mut len,
        )
    })?;
    if (len as usize) < (SK_MEMINFO_DROPS + 1) * size_of::<u32>() {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "SO_MEMINFO without sk_drops",
        ));
    }
    Ok(u64::from(info[SK_MEMINFO_DROPS]))
}

/// Pins the calling thread to `core`.
pub fn pin_current_thread(core: usize) -> io::Result<()> {
    let mut set = nix::sched::CpuSet::new();
    set.set(core).map_err(io::Error::from)?;
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set).map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream, UdpSocket};
    use std::os::fd::AsFd;

    #[test]
    fn tcp_info_of_a_loopback_connection() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let info = tcp_info(c.as_fd()).unwrap();
        assert!(info.snd_mss > 0);
        assert!(info.pmtu >= 1280);
        // The fields read end within the classic 104-byte struct (Linux 2.6), well short
        // of what current kernels return.
        assert!(tcp_info_bytes_read() <= 104, "{}", tcp_info_bytes_read());
    }

    #[test]
    fn zerocopy_on_loopback_completes_as_copied() {
        use std::io::Read;
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (mut s, _) = l.accept().unwrap();
        enable_zerocopy(c.as_fd()).unwrap();
        let buf = vec![7u8; 64 * 1024];
        let mut sent = 0;
        for _ in 0..4 {
            sent += send_zerocopy(c.as_fd(), &buf).unwrap();
        }
        let mut got = vec![0u8; sent];
        s.read_exact(&mut got).unwrap();
        let mut done = ZerocopyCompletions::default();
        for _ in 0..100 {
            drain_zerocopy_completions(c.as_fd(), &mut done).unwrap();
            if done.completed == 4 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(done.completed, 4);
        // Loopback delivers to a local socket: the kernel must copy (documented behaviour).
        assert_eq!(done.copied, 4);
    }

    #[test]
    fn mmsg_batch_and_gso_gro_round_trip() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.connect(rx.local_addr().unwrap()).unwrap();
        rx.set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        let gro = set_udp_gro(rx.as_fd()).is_ok();
        let mut out = Vec::new();
        let mut batch = UdpBatch::new(8, 65_536);
        // Plain batch of 4 datagrams.
        for i in 0..4 {
            batch.slot_mut(i)[0] = i as u8;
        }
        assert_eq!(batch.send(tx.as_fd(), 4, 100).unwrap(), 4);
        let mut got = 0;
        while got < 400 {
            batch.recv(rx.as_fd(), &mut out).unwrap();
            got += out.iter().map(|r| r.len).sum::<usize>();
        }
        assert_eq!(got, 400);
        // GSO: one 4000-byte send becomes 4 datagrams of 1000.
        if set_udp_segment(tx.as_fd(), 1000).is_ok() {
            assert_eq!(batch.send(tx.as_fd(), 1, 4000).unwrap(), 1);
            let mut total = 0;
            while total < 4000 {
                batch.recv(rx.as_fd(), &mut out).unwrap();
                for r in &out {
                    total += r.len;
                    if !gro {
                        assert_eq!(r.len, 1000);
                    }
                }
            }
            assert_eq!(total, 4000);
        }
    }

    #[test]
    fn a_full_receive_queue_shows_up_as_socket_drops() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.connect(rx.local_addr().unwrap()).unwrap();
        socket2::SockRef::from(&rx)
            .set_recv_buffer_size(4096)
            .unwrap();
        assert_eq!(socket_drops(rx.as_fd()).unwrap(), 0);
        // Nobody reads: a few hundred 1000-byte datagrams overflow a 4 KiB queue.
        for _ in 0..300 {
            tx.send(&[0u8; 1000]).unwrap();
        }
        let drops = socket_drops(rx.as_fd()).unwrap();
        assert!(drops > 200, "{drops}");
        assert!(drops <= 300, "{drops}");
    }
}
