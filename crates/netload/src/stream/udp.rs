//! UDP stream engine: sequence-numbered datagrams, batched with sendmmsg/recvmmsg and
//! offloaded with GSO/GRO where the kernel has them, paced evenly when a rate is set.
//!
//! Every datagram (every GSO segment) starts with a header ([`crate::wire::UdpWire`]):
//! sequence number and the sender's send time. Sequence numbers give loss, duplicates and
//! reordering ([`SeqTracker`]); send times give RFC 3550 jitter ([`Jitter`]).

use std::io;
use std::net::UdpSocket;
use std::os::fd::AsFd;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use socket2::SockRef;

use super::{DRAIN_GRACE, StreamContext, StreamOutcome, buffer_settings};
use crate::clock;
use crate::report::{EffectiveSettings, UdpStats};
use crate::spec::TestSpec;
use crate::sys::{self, UdpBatch};

/// Most segments one GSO send may carry (`UDP_MAX_SEGMENTS` in the kernel).
const MAX_GSO_SEGMENTS: usize = 64;
/// Largest GSO super-buffer: the total must fit one IP datagram's length field.
const MAX_GSO_BYTES: usize = 65_000;
/// Messages per sendmmsg/recvmmsg call without GSO.
const MMSG_BATCH: usize = 64;
/// Super-buffers per sendmmsg call with GSO.
const GSO_BATCH: usize = 4;
/// A paced sender never sends more than this much back to back.
const MAX_BURST: Duration = Duration::from_micros(100);
/// Most a paced sender may fall behind its schedule and still catch up: the depth of its
/// token bucket. A sender descheduled for longer (a loaded host, a late timer) would
/// otherwise send the whole debt back to back at line rate, a burst that overflows queues
/// the path would not overflow at the offered rate (measured on loopback: trials offered
/// 19.4 Gbit/s sent 22 Gbit/s in their window and lost 2.7%). The lag beyond this is
/// forgiven: the sender then offers less than asked, which its sent rate shows.
pub const MAX_PACING_DEBT: Duration = Duration::from_millis(1);
/// The bucket is never shallower than this many bits (256 KB): at low rates a millisecond is
/// a few datagrams, less than a loaded host's wake-up latency, and forgiving that lag cut a
/// 50 Mbit/s sender to 18 Mbit/s, while a catch-up of this size overflows no queue.
pub const MIN_PACING_DEBT_BITS: f64 = 2_097_152.0;

/// How a datagram relates to those before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// The next expected, or later (skipped ones count as missing).
    InOrder,
    /// Earlier than the highest seen, first time: fills a gap.
    Late,
    /// Seen before.
    Duplicate,
}

/// Bits of history kept to tell a late datagram from a duplicate.
const HISTORY_BITS: u64 = 1 << 16;

/// Loss, duplicate and reordering accounting over sequence numbers.
#[derive(Debug, Clone)]
pub struct SeqTracker {
    next: u64,
    seen: Vec<u64>,
    /// Sequence numbers skipped and not (yet) filled.
    pub missing: u64,
    /// Datagrams seen twice or more.
    pub duplicates: u64,
    /// Datagrams that arrived after a higher sequence number.
    pub out_of_order: u64,
}

impl Default for SeqTracker {
    fn default() -> Self {
        SeqTracker {
            next: 0,
            seen: vec![0; (HISTORY_BITS / 64) as usize],
            missing: 0,
            duplicates: 0,
            out_of_order: 0,
        }
    }
}

impl SeqTracker {
    fn bit(&self, seq: u64) -> bool {
        let i = seq % HISTORY_BITS;
        self.seen[(i / 64) as usize] & (1 << (i % 64)) != 0
    }

    fn set(&mut self, seq: u64, on: bool) {
        let i = seq % HISTORY_BITS;
        let word = &mut self.seen[(i / 64) as usize];
        if on {
            *word |= 1 << (i % 64);
        } else {
            *word &= !(1 << (i % 64));
        }
    }

    /// Records one datagram.
    pub fn record(&mut self, seq: u64) -> Arrival {
        if seq >= self.next {
            let skipped = seq - self.next;
            // Forget history for the skipped range (bounded by the history size).
            let clear_from = self.next.max(seq.saturating_sub(HISTORY_BITS));
            for s in clear_from..seq {
                self.set(s, false);
            }
            self.set(seq, true);
            self.missing += skipped;
            self.next = seq + 1;
            return Arrival::InOrder;
        }
        if self.next - seq <= HISTORY_BITS && self.bit(seq) {
            self.duplicates += 1;
            return Arrival::Duplicate;
        }
        // Older than the history: counted as late, since that is by far the likelier case.
        self.set(seq, true);
        self.out_of_order += 1;
        self.missing = self.missing.saturating_sub(1);
        Arrival::Late
    }
}

/// RFC 3550 §6.4.1 interarrival jitter: J += (|D| − J) / 16, where D is the change in
/// transit time (arrival minus send stamp) between consecutive datagrams. The two ends'
/// clock offset cancels in D.
#[derive(Debug, Clone, Copy, Default)]
pub struct Jitter {
    last_transit_ns: Option<i128>,
    jitter_ns: f64,
}

impl Jitter {
    /// Adds a datagram sent at `send_ns` (sender's clock) and received at `arrival_ns`.
    pub fn update(&mut self, send_ns: u64, arrival_ns: u64) {
        let transit = i128::from(arrival_ns) - i128::from(send_ns);
        if let Some(last) = self.last_transit_ns {
            let d = (transit - last).unsigned_abs() as f64;
            self.jitter_ns += (d - self.jitter_ns) / 16.0;
        }
        self.last_transit_ns = Some(transit);
    }

    /// Current estimate, milliseconds.
    pub fn millis(&self) -> f64 {
        self.jitter_ns / 1e6
    }
}

/// Receive buffer a UDP socket asks for when `--window` is not given: about 5 ms of
/// traffic at 50 Gbit/s, so a receiver thread that is briefly descheduled does not drop
/// datagrams (loopback, GSO/GRO, unlimited rate: 2.3-2.6% loss with 8 MiB, 0-0.25% with
/// 32 MiB at the same ~50 Gbit/s). The kernel caps it at `net.core.rmem_max` unless we may
/// force it (CAP_NET_ADMIN); the value in force is reported.
pub const DEFAULT_UDP_RECEIVE_BUFFER: usize = 32 << 20;

/// Configures a UDP data socket; returns what is in force.
pub fn configure(socket: &UdpSocket, spec: &TestSpec) -> io::Result<EffectiveSettings> {
    let sock = SockRef::from(socket);
    if let Some(window) = spec.window {
        sock.set_send_buffer_size(window as usize)?;
        sock.set_recv_buffer_size(window as usize)?;
    } else {
        sock.set_recv_buffer_size(DEFAULT_UDP_RECEIVE_BUFFER)?;
        if sock.recv_buffer_size()? < DEFAULT_UDP_RECEIVE_BUFFER {
            // Above rmem_max only with CAP_NET_ADMIN; without it the capped value stands
            // and is reported.
            let _ = nix::sys::socket::setsockopt(
                socket,
                nix::sys::socket::sockopt::RcvBufForce,
                &DEFAULT_UDP_RECEIVE_BUFFER,
            );
        }
    }
    Ok(buffer_settings(&sock))
}

/// Datagrams per burst that keeps a paced sender's bursts under 100 µs.
pub fn paced_burst(rate_bps: u64, length: usize) -> usize {
    if rate_bps == 0 {
        return usize::MAX;
    }
    let bits = rate_bps as f64 * MAX_BURST.as_secs_f64();
    ((bits / (length as f64 * 8.0)) as usize).max(1)
}

/// What a paced sender does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// Sleep until this instant: the next batch is not due yet.
    Wait(Instant),
    /// Send now; the schedule (the instant its sent bits are counted from) may have moved
    /// up to forgive a lag beyond [`MAX_PACING_DEBT`].
    Send {
        /// The schedule's new zero.
        epoch: Instant,
    },
}

/// Token-bucket pacing at `rate_bps`: the batch after `sent_bits` is due at `epoch +
/// sent_bits / rate`; a sender later than the bucket's depth ([`pacing_depth`]) moves
/// `epoch` so that it is exactly that late.
pub fn pace(now: Instant, epoch: Instant, sent_bits: f64, rate_bps: f64) -> Pace {
    let due = epoch + Duration::from_secs_f64(sent_bits / rate_bps);
    if due > now {
        return Pace::Wait(due);
    }
    let lag = now - due;
    Pace::Send {
        epoch: epoch + lag.saturating_sub(pacing_depth(rate_bps)),
    }
}

/// Depth of a paced sender's bucket as time at `rate_bps`: [`MAX_PACING_DEBT`], or
/// [`MIN_PACING_DEBT_BITS`] at the rate when that is longer.
pub fn pacing_depth(rate_bps: f64) -> Duration {
    MAX_PACING_DEBT.max(Duration::from_secs_f64(MIN_PACING_DEBT_BITS / rate_bps))
}

/// Messages for one sendmmsg of a paced sender `since_epoch` into its schedule with
/// `sent_bits` sent: the on-schedule burst, plus whole messages of `message_bits` it is
/// behind by, at most `max`.
pub fn catch_up_messages(
    since_epoch: Duration,
    sent_bits: f64,
    rate_bps: f64,
    message_bits: f64,
    on_schedule: usize,
    max: usize,
) -> usize {
    let behind = (since_epoch.as_secs_f64() * rate_bps - sent_bits).max(0.0);
    (on_schedule + (behind / message_bits) as usize).min(max)
}

/// Sends sequence-numbered datagrams until the deadline.
pub fn send(ctx: &StreamContext, socket: &UdpSocket) -> StreamOutcome {
    let mut outcome = run_loop(ctx, socket, send_loop);
    outcome.last_activity = Some(clock::now());
    outcome
}

fn run_loop(
    ctx: &StreamContext,
    socket: &UdpSocket,
    body: fn(&StreamContext, &UdpSocket, &mut StreamOutcome) -> io::Result<()>,
) -> StreamOutcome {
    let mut outcome = StreamOutcome::default();
    if let Err(e) = body(ctx, socket, &mut outcome) {
        outcome.error = Some(e.to_string());
    }
    outcome
}

fn send_loop(
    ctx: &StreamContext,
    socket: &UdpSocket,
    outcome: &mut StreamOutcome,
) -> io::Result<()> {
    let fd = socket.as_fd();
    let len = ctx.spec.length as usize;
    let burst = paced_burst(ctx.spec.udp_rate_bps, len);
    let gso_segments = (MAX_GSO_BYTES / len).min(MAX_GSO_SEGMENTS).min(burst);
    let gso = ctx.spec.udp_gso && gso_segments >= 2 && sys::set_udp_segment(fd, len as u16).is_ok();
    let (messages, segments) = if gso {
        (GSO_BATCH, gso_segments)
    } else if ctx.spec.udp_batch {
        (MMSG_BATCH, 1)
    } else {
        (1, 1)
    };
    // On schedule, a paced sender sends one burst per call; behind it (within the bucket's
    // depth), up to a full batch, so it catches up in fewer syscalls instead of one burst
    // per wake-up (one message per sendmmsg fell short of 15 Gbit/s on a loaded host).
    let on_schedule = (burst / segments).clamp(1, messages);
    let message_bits = (segments * len * 8) as f64;
    let mut batch = UdpBatch::new(messages, segments * len);
    for i in 0..messages {
        batch.slot_mut(i).fill(0x5a);
    }
    outcome.settings = configure(socket, &ctx.spec)?;
    outcome.settings.udp_gso_segment = gso.then_some(len as u32);
    outcome.settings.udp_batch = Some(messages as u32);
    outcome.settings.zerocopy = "none".into();
    let start = ctx.schedule.start;
    let omit_ns = (ctx.schedule.origin - start).as_nanos() as u64;
    let rate = ctx.spec.udp_rate_bps as f64;
    let mut epoch = start;
    let mut seq: u64 = 0;
    let mut sent_bits = 0.0f64;
    let mut measured = 0u64;
    let _ = nix::sys::prctl::set_timerslack(1_000);
    loop {
        let now = clock::now();
        if ctx.control.aborted() || now >= ctx.schedule.deadline {
            break;
        }
        let mut n = messages;
        if rate > 0.0 {
            match pace(now, epoch, sent_bits, rate) {
                Pace::Wait(due) => {
                    clock::sleep_until(due.min(ctx.schedule.deadline));
                    continue;
                }
                Pace::Send { epoch: e } => epoch = e,
            }
            n = catch_up_messages(
                now - epoch,
                sent_bits,
                rate,
                message_bits,
                on_schedule,
                messages,
            );
        }
        let send_ns = (clock::now() - start).as_nanos() as u64;
        let mut s = seq;
        for m in 0..n {
            let slot = batch.slot_mut(m);
            for k in 0..segments {
                ctx.spec.udp_wire.write(&mut slot[k * len..], s, send_ns);
                s += 1;
            }
        }
        let sent = match batch.send(fd, n, segments * len) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => 0,
            // The receiver's port is not open yet or any more: ICMP unreachable bounced back.
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => 0,
            Err(e) => return Err(e),
        };
        let datagrams = (sent * segments) as u64;
        seq += datagrams;
        if send_ns >= omit_ns {
            measured += datagrams;
        }
        sent_bits += (datagrams * len as u64 * 8) as f64;
        ctx.counters.packets.fetch_add(datagrams, Ordering::Relaxed);
        ctx.counters
            .bytes
            .fetch_add(datagrams * len as u64, Ordering::Relaxed);
    }
    outcome.sent_measured = measured;
    outcome.udp = Some(UdpStats {
        packets: seq,
        ..UdpStats::default()
    });
    Ok(())
}

/// Receives datagrams until the senders' deadline plus a drain grace.
pub fn receive(ctx: &StreamContext, socket: &UdpSocket) -> StreamOutcome {
    run_loop(ctx, socket, receive_loop)
}

fn receive_loop(
    ctx: &StreamContext,
    socket: &UdpSocket,
    outcome: &mut StreamOutcome,
) -> io::Result<()> {
    let fd = socket.as_fd();
    let len = ctx.spec.length as usize;
    let gro = ctx.spec.udp_gso && sys::set_udp_gro(fd).is_ok();
    let (count, slot) = if gro {
        (8, 65_536)
    } else if ctx.spec.udp_batch {
        (MMSG_BATCH, len.max(ctx.spec.udp_wire.header_len()))
    } else {
        (1, len.max(ctx.spec.udp_wire.header_len()))
    };
    outcome.settings = configure(socket, &ctx.spec)?;
    outcome.settings.udp_gro = Some(gro);
    outcome.settings.udp_batch = Some(count as u32);
    outcome.settings.zerocopy = "none".into();
    socket.set_read_timeout(Some(Duration::from_millis(50)))?;
    let mut batch = UdpBatch::new(count, slot);
    let mut received = Vec::with_capacity(count);
    let mut tracker = SeqTracker::default();
    let mut jitter = Jitter::default();
    let start = ctx.schedule.start;
    let omit_ns = (ctx.schedule.origin - start).as_nanos() as u64;
    let stop_at = ctx.schedule.deadline + DRAIN_GRACE;
    let mut packets = 0u64;
    // Packets as the socket queued them (one per recvmmsg slot), against datagrams.
    let mut queued = 0u64;
    let mut distinct_measured = 0u64;
    let mut last_activity: Option<Instant> = None;
    // Queue drops from the end of the warm-up on, like loss; read once the origin has
    // passed (within one read timeout of it).
    let mut drops_at_origin: Option<u64> = None;
    while !ctx.control.aborted() && clock::now() < stop_at {
        if drops_at_origin.is_none() && clock::now() >= ctx.schedule.origin {
            drops_at_origin = Some(sys::socket_drops(fd).unwrap_or(0));
        }
        match batch.recv(fd, &mut received) {
            Ok(()) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                        | io::ErrorKind::ConnectionRefused
                ) =>
            {
                continue;
            }
            Err(e) => return Err(e),
        }
        let arrived = clock::now();
        let arrival_ns = (arrived - start).as_nanos() as u64;
        let mut bytes = 0u64;
        let mut measured_bytes = 0u64;
        queued += received.len() as u64;
        for (i, r) in received.iter().enumerate() {
            let data = batch.slot(i, r.len);
            let seg = r.gro_segment.unwrap_or(r.len).max(1);
            for datagram in data.chunks(seg) {
                let Some((seq, send_ns)) = ctx.spec.udp_wire.read(datagram) else {
                    continue;
                };
                packets += 1;
                bytes += datagram.len() as u64;
                let arrival = tracker.record(seq);
                jitter.update(send_ns, arrival_ns);
                if send_ns >= omit_ns && arrival != Arrival::Duplicate {
                    distinct_measured += 1;
                    measured_bytes += datagram.len() as u64;
                }
            }
        }
        if measured_bytes > 0 {
            last_activity = Some(arrived);
        }
        ctx.counters.bytes.fetch_add(bytes, Ordering::Relaxed);
        ctx.counters
            .measured_bytes
            .fetch_add(measured_bytes, Ordering::Relaxed);
        ctx.counters.packets.store(packets, Ordering::Relaxed);
        ctx.counters
            .missing
            .store(tracker.missing, Ordering::Relaxed);
    }
    outcome.last_activity = last_activity;
    outcome.udp_measured_distinct = distinct_measured;
    outcome.udp = Some(UdpStats {
        packets,
        lost: tracker.missing,
        duplicates: tracker.duplicates,
        out_of_order: tracker.out_of_order,
        jitter_ms: jitter.millis(),
        socket_drops: sys::socket_drops(fd)
            .ok()
            .map(|end| end.saturating_sub(drops_at_origin.unwrap_or(0))),
        datagrams_per_packet: (queued > 0).then(|| packets as f64 / queued as f64),
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn tracker_counts_loss_reorder_and_duplicates() {
        let mut t = SeqTracker::default();
        for s in [0, 1, 3, 4] {
            assert_eq!(t.record(s), Arrival::InOrder);
        }
        assert_eq!(t.missing, 1);
        assert_eq!(t.record(2), Arrival::Late);
        assert_eq!(t.missing, 0);
        assert_eq!(t.out_of_order, 1);
        assert_eq!(t.record(2), Arrival::Duplicate);
        assert_eq!(t.record(4), Arrival::Duplicate);
        assert_eq!(t.duplicates, 2);
        // A huge jump is bounded work and counts every skipped number.
        assert_eq!(t.record(10_000_000), Arrival::InOrder);
        assert_eq!(t.missing, 10_000_000 - 5);
    }

    #[test]
    fn jitter_of_constant_transit_is_zero_and_follows_rfc3550() {
        let mut j = Jitter::default();
        for i in 0..100 {
            j.update(i * 1000, i * 1000 + 500);
        }
        assert!(j.millis().abs() < f64::EPSILON);
        let mut j = Jitter::default();
        j.update(0, 0);
        j.update(1_000_000, 2_000_000); // D = 1 ms
        assert!((j.millis() - 1.0 / 16.0).abs() < 1e-12);
    }

    #[test]
    fn a_late_sender_catches_up_at_most_the_bucket_depth() {
        let t0 = clock::now();
        // 1 Gbit/s, 1 Mbit sent: due at 1 ms.
        let due = t0 + Duration::from_millis(1);
        assert_eq!(pace(t0, t0, 1e6, 1e9), Pace::Wait(due));
        // Slightly late: send, the schedule stays.
        let now = due + MAX_PACING_DEBT / 2;
        assert_eq!(pace(now, t0, 1e6, 1e9), Pace::Send { epoch: t0 });
        // 10 ms late (descheduled): the schedule moves up so that only the bucket's depth
        // is caught up (2.1 ms at 1 Gbit/s: the 256 KB floor), and the next batch is due
        // after that.
        let depth = pacing_depth(1e9);
        assert!(depth > MAX_PACING_DEBT && depth < Duration::from_millis(3));
        let now = due + Duration::from_millis(10);
        let Pace::Send { epoch } = pace(now, t0, 1e6, 1e9) else {
            panic!("a late batch is sent")
        };
        assert_eq!(
            Some(epoch),
            (t0 + Duration::from_millis(10)).checked_sub(depth)
        );
        let lag = now - (epoch + Duration::from_millis(1));
        assert_eq!(lag, depth);
        // At 20 Gbit/s a millisecond is deeper than the floor.
        assert_eq!(pacing_depth(20e9), MAX_PACING_DEBT);
    }

    #[test]
    fn a_sender_behind_schedule_sends_bigger_batches_up_to_the_cap() {
        // 10 Gbit/s, 64 kB messages (512 kbit): on schedule, one.
        let m = 512_000.0;
        assert_eq!(
            catch_up_messages(Duration::from_millis(1), 1e7, 1e10, m, 1, 4),
            1
        );
        // 0.1 ms (1 Mbit) behind: the burst plus the 1.95 messages owed, rounded down.
        assert_eq!(
            catch_up_messages(Duration::from_micros(1100), 1e7, 1e10, m, 1, 4),
            2
        );
        // Far behind: the cap.
        assert_eq!(
            catch_up_messages(Duration::from_millis(5), 1e7, 1e10, m, 1, 4),
            4
        );
    }

    #[test]
    fn pacing_bursts_stay_short() {
        assert_eq!(paced_burst(0, 1400), usize::MAX);
        // 1 Gbit/s, 1400 B: 100 µs is about 8.9 datagrams.
        assert_eq!(paced_burst(1_000_000_000, 1400), 8);
        assert_eq!(paced_burst(1_000, 1400), 1);
    }

    proptest! {
        /// Whatever the order of arrival, distinct = sent - missing at the end, and every
        /// repeat is a duplicate.
        #[test]
        fn tracker_accounts_every_datagram(
            order in proptest::collection::vec(0u64..500, 1..400)
        ) {
            let mut t = SeqTracker::default();
            let mut distinct = std::collections::HashSet::new();
            let mut dups = 0;
            for &s in &order {
                if !distinct.insert(s) {
                    dups += 1;
                }
                t.record(s);
            }
            let highest = *order.iter().max().unwrap();
            prop_assert_eq!(t.duplicates, dups);
            prop_assert_eq!(t.missing, highest + 1 - distinct.len() as u64);
        }
    }
}
