//! Stream engines: one OS thread per stream on both ends, sampled by the side's own thread.
//!
//! Client and server run the same code: [`run_side`] takes connected sockets, one per
//! stream, each with a role (send or receive), runs every stream on its own thread, and
//! samples shared atomic counters at interval boundaries. Stream threads never lock and
//! never allocate in their loops; the sampler only reads atomics and TCP_INFO.

pub mod tcp;
pub mod udp;

use std::net::{TcpStream, UdpSocket};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::clock::{self, TestClock};
use crate::cpu::{self, CpuSample};
use crate::report::{
    CoreSamples, EffectiveSettings, Interval, SideReport, StreamRole, StreamStats, TcpStats,
    ThreadPlacement, UdpStats, ZerocopyStats,
};
use crate::spec::{Protocol, TestSpec};
use crate::sys;

/// Read/write timeout on data sockets: a peer silent this long has vanished.
pub const DATA_IO_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a UDP receiver keeps listening after the senders' deadline, for datagrams
/// still in flight (and how long a TCP receiver waits for end of stream after it).
pub const DRAIN_GRACE: Duration = Duration::from_millis(500);
/// Bound on how long a side may run past its scheduled end before it gives up.
pub const OVERRUN_LIMIT: Duration = Duration::from_secs(15);

/// A connected data socket.
#[derive(Debug, Clone)]
pub enum DataSocket {
    /// A TCP stream.
    Tcp(Arc<TcpStream>),
    /// A connected UDP socket.
    Udp(Arc<UdpSocket>),
}

/// One stream as this end runs it.
#[derive(Debug, Clone)]
pub struct StreamPlan {
    /// Stream index, shared by both ends.
    pub id: u32,
    /// Whether this end sends or receives.
    pub role: StreamRole,
    /// Core to pin the stream's thread to.
    pub core: Option<usize>,
    /// The socket.
    pub socket: DataSocket,
}

/// Which end of a test a [`StreamPlan`] is made for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    /// The end that asked for the test.
    Client,
    /// The end that serves it.
    Server,
}

impl StreamPlan {
    /// Stream `id` of `spec` as `end` runs it: each end receives where the other sends and
    /// pins to its own cores.
    pub(crate) fn for_end(spec: &TestSpec, end: End, id: u32, socket: DataSocket) -> StreamPlan {
        let (sends, cores) = match end {
            End::Client => (spec.client_sends_on(id), &spec.client_affinity),
            End::Server => (!spec.client_sends_on(id), &spec.server_affinity),
        };
        StreamPlan {
            id,
            role: if sends {
                StreamRole::Send
            } else {
                StreamRole::Receive
            },
            core: core_for(cores, id as usize),
            socket,
        }
    }
}

/// Counters a stream thread publishes for the sampler.
#[derive(Debug, Default)]
pub struct StreamCounters {
    /// Payload bytes so far (whole test, warm-up included).
    pub bytes: AtomicU64,
    /// Datagrams so far (UDP).
    pub packets: AtomicU64,
    /// Datagrams currently believed missing (UDP receivers).
    pub missing: AtomicU64,
    /// Bytes counted only from the measured window on (UDP receivers classify by the
    /// sender's timestamp; others copy `bytes` at the origin).
    pub measured_bytes: AtomicU64,
    /// Kernel thread id of the stream's thread (0 until it starts), so the sampler can see
    /// which core it is on.
    pub tid: AtomicI32,
}

/// Shared state of one side's run.
#[derive(Debug)]
pub struct RunControl {
    /// Set to stop every stream early (error or interrupt).
    pub abort: AtomicBool,
    /// Streams still running.
    running: AtomicUsize,
}

impl RunControl {
    /// Fresh control for `streams` streams.
    pub fn new(streams: usize) -> Arc<Self> {
        Arc::new(RunControl {
            abort: AtomicBool::new(false),
            running: AtomicUsize::new(streams),
        })
    }

    /// Whether the run was aborted.
    pub fn aborted(&self) -> bool {
        self.abort.load(Ordering::Relaxed)
    }
}

/// Timing of a run on this end's clock.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    /// When the streams start (warm-up begins).
    pub start: Instant,
    /// Zero of the test clock: end of warm-up.
    pub origin: Instant,
    /// When senders stop.
    pub deadline: Instant,
}

impl Schedule {
    /// Schedule of `spec` starting at `start`.
    pub fn new(spec: &TestSpec, start: Instant) -> Self {
        let origin = start + Duration::from_secs_f64(spec.omit_s);
        Schedule {
            start,
            origin,
            deadline: origin + Duration::from_secs_f64(spec.duration_s),
        }
    }

    /// Past this, every stream gives up.
    pub fn hard_stop(&self) -> Instant {
        self.deadline + OVERRUN_LIMIT
    }
}

/// What a stream thread hands back when it ends.
#[derive(Debug, Default)]
pub struct StreamOutcome {
    /// Last instant payload moved (receivers: last byte read; senders: last write).
    pub last_activity: Option<Instant>,
    /// TCP_INFO at the end (TCP).
    pub tcp_end: Option<sys::TcpInfo>,
    /// Datagram accounting (UDP).
    pub udp: Option<UdpStats>,
    /// Distinct datagrams received that the sender stamped inside the measured window
    /// (UDP receivers), for loss against the sender's count.
    pub udp_measured_distinct: u64,
    /// Sent total for the peer's accounting: datagrams stamped in the measured window
    /// (UDP senders) or bytes (TCP senders).
    pub sent_measured: u64,
    /// MSG_ZEROCOPY outcome.
    pub zerocopy: Option<ZerocopyStats>,
    /// The thread's core and context switches (voluntary, involuntary) at its end.
    pub ended_on: Option<(Option<usize>, (u64, u64))>,
    /// Settings read back from the socket.
    pub settings: EffectiveSettings,
    /// Why the stream stopped early, if it did.
    pub error: Option<String>,
}

/// Everything a stream thread needs.
pub struct StreamContext {
    /// Test being run.
    pub spec: TestSpec,
    /// This stream.
    pub plan: StreamPlan,
    /// Published counters.
    pub counters: Arc<StreamCounters>,
    /// Shared abort flag.
    pub control: Arc<RunControl>,
    /// Timing.
    pub schedule: Schedule,
}

/// A side's run, before the peer's figures are known.
#[derive(Debug)]
pub struct SideRun {
    /// The side's report (UDP loss filled in later from the peer's sent counts).
    pub report: SideReport,
    /// Per stream id: what this side sent, for the peer ([`crate::control::ClientMsg::Finish`]).
    pub sent: Vec<u64>,
    /// Per stream id: distinct measured datagrams this side received (UDP).
    pub received_distinct: Vec<u64>,
    /// Errors of streams that ended early.
    pub errors: Vec<String>,
}

/// Runs every stream of this side to completion and reports.
///
/// `on_interval` sees each interval as it closes (for live output).
pub fn run_side(
    spec: &TestSpec,
    plans: Vec<StreamPlan>,
    schedule: Schedule,
    control: &Arc<RunControl>,
    on_interval: &mut dyn FnMut(&Interval),
) -> SideRun {
    let stream_count = spec.stream_count() as usize;
    let counters: Vec<Arc<StreamCounters>> = plans
        .iter()
        .map(|_| Arc::new(StreamCounters::default()))
        .collect();
    let sockets: Vec<StreamPlan> = plans.clone();
    let handles: Vec<_> = plans
        .into_iter()
        .zip(&counters)
        .map(|(plan, counters)| {
            let ctx = StreamContext {
                spec: spec.clone(),
                counters: Arc::clone(counters),
                control: Arc::clone(control),
                schedule,
                plan,
            };
            let control = Arc::clone(control);
            thread::Builder::new()
                .name(format!("stream-{}", ctx.plan.id))
                .spawn(move || {
                    let outcome = run_stream(&ctx);
                    control.running.fetch_sub(1, Ordering::Release);
                    outcome
                })
                .expect("spawning a stream thread")
        })
        .collect();

    let mut sampler = Sampler::new(spec, &sockets, &counters, schedule);
    clock::sleep_until(schedule.origin);
    // Counters first, CPU second: the byte window must start as close to the origin as
    // this thread can manage, and it starts exactly when the snapshot is taken.
    sampler.mark_origin(schedule.origin > schedule.start);
    let cpu_start = CpuSample::take();
    if spec.interval_s > 0.0 {
        let step = Duration::from_secs_f64(spec.interval_s);
        let mut next = schedule.origin + step;
        while control.running.load(Ordering::Acquire) > 0 && next <= schedule.deadline {
            // Short sleeps so a finished run is noticed promptly.
            let now = clock::now();
            if now < next {
                thread::sleep((next - now).min(Duration::from_millis(20)));
                continue;
            }
            let interval = sampler.close_interval(next);
            on_interval(&interval);
            next += step;
        }
    }
    let outcomes: Vec<StreamOutcome> = handles
        .into_iter()
        .map(|h| {
            h.join().unwrap_or_else(|_| StreamOutcome {
                error: Some("stream thread panicked".into()),
                ..StreamOutcome::default()
            })
        })
        .collect();
    let cpu_end = CpuSample::take();
    let window_end = outcomes
        .iter()
        .filter_map(|o| o.last_activity)
        .max()
        .unwrap_or(schedule.deadline)
        .max(sampler.clock.origin());
    if let Some(last) = sampler.close_final(window_end, spec.interval_s) {
        on_interval(&last);
    }
    sampler.finish(
        spec,
        &sockets,
        outcomes,
        stream_count,
        &cpu_start,
        &cpu_end,
        window_end,
    )
}

fn run_stream(ctx: &StreamContext) -> StreamOutcome {
    let tid = nix::unistd::gettid().as_raw();
    ctx.counters.tid.store(tid, Ordering::Relaxed);
    let mut outcome = run_stream_pinned(ctx);
    outcome.ended_on = cpu::own_switches().map(|switches| (cpu::thread_core(tid), switches));
    outcome
}

fn run_stream_pinned(ctx: &StreamContext) -> StreamOutcome {
    if let Some(core) = ctx.plan.core
        && let Err(e) = sys::pin_current_thread(core)
    {
        ctx.control.abort.store(true, Ordering::Relaxed);
        return StreamOutcome {
            error: Some(format!(
                "cannot pin stream {} to core {core}: {e}",
                ctx.plan.id
            )),
            ..StreamOutcome::default()
        };
    }
    let outcome = match (&ctx.plan.socket, ctx.plan.role) {
        (DataSocket::Tcp(s), StreamRole::Send) => tcp::send(ctx, s),
        (DataSocket::Tcp(s), StreamRole::Receive) => tcp::receive(ctx, s),
        (DataSocket::Udp(s), StreamRole::Send) => udp::send(ctx, s),
        (DataSocket::Udp(s), StreamRole::Receive) => udp::receive(ctx, s),
    };
    if outcome.error.is_some() {
        ctx.control.abort.store(true, Ordering::Relaxed);
    }
    outcome
}

/// Turns counter snapshots into intervals.
struct Sampler<'a> {
    protocol: Protocol,
    sockets: &'a [StreamPlan],
    counters: &'a [Arc<StreamCounters>],
    clock: TestClock,
    last_at: Instant,
    last_sent: u64,
    last_received: u64,
    last_packets: u64,
    last_missing: u64,
    last_retrans: u64,
    origin_bytes: Vec<u64>,
    origin_packets: u64,
    origin_retrans: u64,
    intervals: Vec<Interval>,
    /// Per stream, samples of the core its thread was on (index = core).
    cores_seen: Vec<Vec<u32>>,
}

impl<'a> Sampler<'a> {
    fn new(
        spec: &TestSpec,
        sockets: &'a [StreamPlan],
        counters: &'a [Arc<StreamCounters>],
        schedule: Schedule,
    ) -> Self {
        Sampler {
            protocol: spec.protocol,
            sockets,
            counters,
            clock: TestClock::starting_at(schedule.origin),
            last_at: schedule.origin,
            last_sent: 0,
            last_received: 0,
            last_packets: 0,
            last_missing: 0,
            last_retrans: 0,
            origin_bytes: vec![0; counters.len()],
            origin_packets: 0,
            origin_retrans: 0,
            intervals: Vec::new(),
            cores_seen: vec![Vec::new(); counters.len()],
        }
    }

    /// Notes the core each stream thread is on now: one `/proc` read per stream per
    /// interval, off the data path.
    fn sample_cores(&mut self) {
        for (seen, c) in self.cores_seen.iter_mut().zip(self.counters) {
            let tid = c.tid.load(Ordering::Relaxed);
            if let Some(core) = (tid > 0).then(|| cpu::thread_core(tid)).flatten() {
                if seen.len() <= core {
                    seen.resize(core + 1, 0);
                }
                seen[core] += 1;
            }
        }
    }

    /// Bytes stream `i` moved in the measured window (UDP receivers count by the sender's
    /// timestamp, everything else from the origin snapshot).
    fn measured_bytes(&self, i: usize) -> u64 {
        let c = &self.counters[i];
        if self.protocol == Protocol::Udp && self.sockets[i].role == StreamRole::Receive {
            c.measured_bytes.load(Ordering::Relaxed)
        } else {
            c.bytes
                .load(Ordering::Relaxed)
                .saturating_sub(self.origin_bytes[i])
        }
    }

    /// Bytes per role since the origin, datagrams, and datagrams believed missing.
    fn totals(&self) -> (u64, u64, u64, u64) {
        let (mut sent, mut received, mut packets, mut missing) = (0, 0, 0, 0);
        for (i, plan) in self.sockets.iter().enumerate() {
            let c = &self.counters[i];
            let role = &plan.role;
            let bytes = self.measured_bytes(i);
            match role {
                StreamRole::Send => sent += bytes,
                StreamRole::Receive => received += bytes,
            }
            packets += c.packets.load(Ordering::Relaxed);
            missing += c.missing.load(Ordering::Relaxed);
        }
        (sent, received, packets, missing)
    }

    /// Retransmits over every TCP socket of this side (receivers normally contribute 0).
    fn retrans_now(&self) -> u64 {
        self.sockets
            .iter()
            .filter_map(|p| match &p.socket {
                DataSocket::Tcp(t) => Some(&**t),
                DataSocket::Udp(_) => None,
            })
            .filter_map(|s| sys::tcp_info(s.as_fd()).ok())
            .map(|i| u64::from(i.total_retrans))
            .sum()
    }

    /// Where stream `i`'s measured window starts in its byte count.
    ///
    /// A TCP byte is in the window when it crosses the connection after the origin, on
    /// both ends: not when the application wrote or read it. Bytes still queued in socket
    /// buffers at the origin (megabytes: the send queue plus the receive queue) were
    /// written during the warm-up; counting them where the application reads them gave the
    /// receiver that much more than the sender. So a receiver's window starts after what it
    /// has yet to read (`FIONREAD`), a sender's before what the peer has yet to acknowledge
    /// (`SIOCOUTQ`). The queue is read before the counter: a read or write the stream thread
    /// completes in between shifts the split by at most that one call.
    fn origin_count(&self, i: usize) -> u64 {
        let plan = &self.sockets[i];
        let queued = match &plan.socket {
            DataSocket::Tcp(t) => match plan.role {
                StreamRole::Receive => sys::unread_bytes(t.as_fd()),
                StreamRole::Send => sys::unacked_bytes(t.as_fd()),
            }
            .map_or(0, |n| n as u64),
            DataSocket::Udp(_) => 0,
        };
        let count = self.counters[i].bytes.load(Ordering::Relaxed);
        match plan.role {
            StreamRole::Receive => count + queued,
            StreamRole::Send => count.saturating_sub(queued),
        }
    }

    /// Snapshots the counters at the end of warm-up; without warm-up everything counts,
    /// including what moved while this thread was waking up.
    fn mark_origin(&mut self, after_warmup: bool) {
        if after_warmup {
            let now = clock::now();
            self.clock = TestClock::starting_at(now);
            self.last_at = now;
            self.origin_bytes = (0..self.counters.len())
                .map(|i| self.origin_count(i))
                .collect();
            let (_, _, packets, missing) = self.totals();
            self.last_packets = packets;
            self.origin_packets = packets;
            self.last_missing = missing;
        }
        self.origin_retrans = self.retrans_now();
        self.last_retrans = self.origin_retrans;
        self.sample_cores();
    }

    fn close_interval(&mut self, at: Instant) -> Interval {
        let (sent, received, packets, missing) = self.totals();
        let first_tcp = self.sockets.iter().find_map(|p| match &p.socket {
            DataSocket::Tcp(t) => sys::tcp_info(t.as_fd()).ok(),
            DataSocket::Udp(_) => None,
        });
        let is_tcp = self.protocol == Protocol::Tcp;
        let retrans = if is_tcp { self.retrans_now() } else { 0 };
        let secs = (at - self.last_at).as_secs_f64();
        let sent_bytes = sent - self.last_sent;
        let received_bytes = received.saturating_sub(self.last_received);
        let udp = self.protocol == Protocol::Udp;
        let interval = Interval {
            start_s: self.clock.seconds(self.last_at),
            end_s: self.clock.seconds(at),
            sent_bytes,
            received_bytes,
            bits_per_second: rate_bps(sent_bytes + received_bytes, secs),
            retransmits: is_tcp.then(|| retrans.saturating_sub(self.last_retrans)),
            rtt_us: first_tcp.map(|i| i.rtt_us),
            cwnd: first_tcp.map(|i| i.snd_cwnd),
            packets: udp.then(|| packets.saturating_sub(self.last_packets)),
            lost: udp.then(|| missing.saturating_sub(self.last_missing)),
        };
        self.last_at = at;
        self.last_sent = sent;
        self.last_received = received;
        self.last_packets = packets;
        self.last_missing = missing;
        self.last_retrans = retrans;
        self.intervals.push(interval.clone());
        self.sample_cores();
        interval
    }

    /// Closes the remainder up to `end` (the last byte moved) as a final, usually short,
    /// interval, so every byte of the window is in exactly one interval.
    ///
    /// A remainder shorter than a millisecond is no interval of its own (its rate would be
    /// noise), but bytes may still have moved in it: a receiver drains its queue in a burst
    /// right after the sampler's last snapshot. Those go into the last interval, which then
    /// ends at `end`.
    fn close_final(&mut self, end: Instant, interval_s: f64) -> Option<Interval> {
        if interval_s <= 0.0 {
            return None;
        }
        let tail = end.saturating_duration_since(self.last_at);
        if tail >= Duration::from_millis(1) || self.intervals.is_empty() {
            return Some(self.close_interval(end));
        }
        let rest = self.close_interval(end);
        self.intervals.pop();
        let last = self.intervals.last_mut().expect("checked non-empty");
        last.end_s = last.end_s.max(rest.end_s);
        last.sent_bytes += rest.sent_bytes;
        last.received_bytes += rest.received_bytes;
        last.bits_per_second = rate_bps(
            last.sent_bytes + last.received_bytes,
            last.end_s - last.start_s,
        );
        last.retransmits = last.retransmits.zip(rest.retransmits).map(|(a, b)| a + b);
        last.packets = last.packets.zip(rest.packets).map(|(a, b)| a + b);
        last.lost = last.lost.zip(rest.lost).map(|(a, b)| a + b);
        None
    }

    #[allow(clippy::too_many_arguments)]
    fn finish(
        self,
        spec: &TestSpec,
        sockets: &[StreamPlan],
        outcomes: Vec<StreamOutcome>,
        stream_count: usize,
        cpu_start: &CpuSample,
        cpu_end: &CpuSample,
        window_end: Instant,
    ) -> SideRun {
        let (sent_total, received_total, packets_total, _) = self.totals();
        let duration_s = (window_end - self.clock.origin()).as_secs_f64();
        let mut sent = vec![0u64; stream_count];
        let mut received_distinct = vec![0u64; stream_count];
        let mut streams = Vec::new();
        let mut errors = Vec::new();
        let mut settings: Option<EffectiveSettings> = None;
        let mut retransmits = 0u64;
        let mut mss = None;
        let mut jitter_sum = 0.0;
        let mut jitter_n = 0usize;
        for (i, (plan, outcome)) in sockets.iter().zip(outcomes).enumerate() {
            let (id, role) = (&plan.id, &plan.role);
            let bytes = self.measured_bytes(i);
            if let Some(slot) = sent.get_mut(*id as usize) {
                *slot = outcome.sent_measured;
            }
            if let Some(slot) = received_distinct.get_mut(*id as usize) {
                *slot = outcome.udp_measured_distinct;
            }
            let tcp = outcome.tcp_end.map(|end| TcpStats {
                retransmits: 0,
                rtt_us: end.rtt_us,
                rttvar_us: end.rttvar_us,
                snd_cwnd: end.snd_cwnd,
                snd_mss: end.snd_mss,
                rcv_mss: end.rcv_mss,
                pmtu: end.pmtu,
            });
            // The MSS that matters is the one segments are sent with.
            if mss.is_none() && *role == StreamRole::Send {
                mss = tcp.map(|t| t.snd_mss);
            }
            if let (Some(udp), StreamRole::Receive) = (outcome.udp, role) {
                jitter_sum += udp.jitter_ms;
                jitter_n += 1;
            }
            let stream_window = outcome
                .last_activity
                .map_or(duration_s, |t| self.clock.seconds(t).max(0.0));
            let placement = outcome
                .ended_on
                .map(|(last_core, (voluntary, involuntary))| ThreadPlacement {
                    cores_seen: self.cores_seen[i]
                        .iter()
                        .enumerate()
                        .filter(|(_, n)| **n > 0)
                        .map(|(core, &samples)| CoreSamples { core, samples })
                        .collect(),
                    last_core,
                    voluntary_switches: voluntary,
                    involuntary_switches: involuntary,
                });
            streams.push(StreamStats {
                id: *id,
                role: *role,
                bytes,
                bits_per_second: rate_bps(bytes, stream_window),
                cpu_core: plan.core,
                placement,
                tcp,
                udp: outcome.udp,
                zerocopy: outcome.zerocopy,
            });
            if settings.is_none() {
                settings = Some(outcome.settings);
            }
            if let Some(e) = outcome.error {
                errors.push(format!("stream {id}: {e}"));
            }
        }
        // Retransmits over the measured window, from the same TCP_INFO readings as the intervals.
        if spec.protocol == Protocol::Tcp {
            retransmits = self.retrans_now().saturating_sub(self.origin_retrans);
        }
        let mut settings = settings.unwrap_or_default();
        settings.affinity = sockets.iter().filter_map(|p| p.core).collect();
        if mss.is_none() {
            mss = streams.iter().find_map(|s| s.tcp.map(|t| t.snd_mss));
        }
        let bytes = sent_total + received_total;
        let cpu = cpu::window(cpu_start, cpu_end, bytes);
        let udp = spec.protocol == Protocol::Udp;
        let report = SideReport {
            bytes,
            bits_per_second: rate_bps(bytes, duration_s),
            sent_bytes: sent_total,
            received_bytes: received_total,
            duration_s,
            retransmits: (spec.protocol == Protocol::Tcp).then_some(retransmits),
            mss,
            packets: udp.then_some(packets_total.saturating_sub(self.origin_packets)),
            lost: None,
            jitter_ms: (jitter_n > 0).then(|| jitter_sum / jitter_n as f64),
            intervals: self.intervals,
            streams,
            cpu,
            settings,
        };
        SideRun {
            report,
            sent,
            received_distinct,
            errors,
        }
    }
}

/// `bytes` over `secs` in bits per second (0 for an empty window).
pub fn rate_bps(bytes: u64, secs: f64) -> f64 {
    if secs > 0.0 {
        bytes as f64 * 8.0 / secs
    } else {
        0.0
    }
}

/// The core for a stream from a cycled list.
pub fn core_for(cores: &[usize], index: usize) -> Option<usize> {
    (!cores.is_empty()).then(|| cores[index % cores.len()])
}

/// Effective buffer sizes of a socket.
pub fn buffer_settings(sock: &socket2::SockRef<'_>) -> EffectiveSettings {
    EffectiveSettings {
        send_buffer: sock.send_buffer_size().ok().map(|v| v as u32),
        receive_buffer: sock.recv_buffer_size().ok().map(|v| v as u32),
        ..EffectiveSettings::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_of_empty_window_is_zero() {
        assert!(rate_bps(100, 0.0).abs() < f64::EPSILON);
        assert!((rate_bps(1_000, 1.0) - 8_000.0).abs() < 1e-9);
    }

    #[test]
    fn cores_cycle() {
        assert_eq!(core_for(&[], 3), None);
        assert_eq!(core_for(&[1, 2], 3), Some(2));
    }

    fn tcp_plan(id: u32, role: StreamRole, stream: TcpStream) -> StreamPlan {
        StreamPlan {
            id,
            role,
            core: None,
            socket: DataSocket::Tcp(Arc::new(stream)),
        }
    }

    fn schedule_now() -> Schedule {
        let now = clock::now();
        Schedule {
            start: now,
            origin: now,
            deadline: now + Duration::from_secs(1),
        }
    }

    /// A connected loopback pair: (client, accepted).
    fn tcp_pair() -> (TcpStream, TcpStream) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        (c, s)
    }

    /// Polls (at most 2 s) until `f` holds.
    fn wait_for(mut f: impl FnMut() -> bool) {
        for _ in 0..200 {
            if f() {
                return;
            }
            thread::sleep(Duration::from_millis(10));
        }
        panic!("condition never held");
    }

    #[test]
    fn warmup_bytes_still_queued_at_the_origin_are_not_measured() {
        // Receiver: 50 kB arrived during the warm-up, none read yet.
        let (mut writer, reader) = tcp_pair();
        std::io::Write::write_all(&mut writer, &vec![1u8; 50_000]).unwrap();
        let fd = reader.try_clone().unwrap();
        wait_for(|| sys::unread_bytes(fd.as_fd()).unwrap() == 50_000);
        // Sender: writes until the peer (which never reads) closes its window, so the send
        // queue holds bytes the peer has not acknowledged.
        let (sender, _silent_peer) = tcp_pair();
        sender.set_nonblocking(true).unwrap();
        let chunk = vec![2u8; 65_536];
        let mut written = 0u64;
        loop {
            match std::io::Write::write(&mut &sender, &chunk) {
                Ok(n) => written += n as u64,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("{e}"),
            }
        }
        let sfd = sender.try_clone().unwrap();
        let unacked = sys::unacked_bytes(sfd.as_fd()).unwrap() as u64;
        assert!(
            unacked > 0,
            "the send queue should hold unacknowledged bytes"
        );

        let spec = TestSpec::new(Protocol::Tcp);
        let plans = vec![
            tcp_plan(0, StreamRole::Receive, reader),
            tcp_plan(1, StreamRole::Send, sender),
        ];
        let counters: Vec<Arc<StreamCounters>> = (0..2)
            .map(|_| Arc::new(StreamCounters::default()))
            .collect();
        counters[1].bytes.store(written, Ordering::Relaxed);
        let mut sampler = Sampler::new(&spec, &plans, &counters, schedule_now());
        sampler.mark_origin(true);
        // The receiver now reads the queued bytes and 1000 that arrive after the origin; the
        // peer acknowledges what the sender had queued.
        counters[0].bytes.store(51_000, Ordering::Relaxed);
        assert_eq!(sampler.measured_bytes(0), 1_000);
        counters[1].bytes.store(written + 5_000, Ordering::Relaxed);
        assert_eq!(sampler.measured_bytes(1), unacked + 5_000);
        // Both ends agree on the split: the queued bytes count where they cross the
        // connection, which for the sender is inside the window.
        assert!(sampler.measured_bytes(1) > 5_000);
    }

    #[test]
    fn a_sub_millisecond_tail_still_lands_in_an_interval() {
        let (a, b) = tcp_pair();
        let spec = TestSpec::new(Protocol::Tcp);
        let plans = vec![tcp_plan(0, StreamRole::Receive, a)];
        let counters = vec![Arc::new(StreamCounters::default())];
        let schedule = schedule_now();
        let mut sampler = Sampler::new(&spec, &plans, &counters, schedule);
        sampler.mark_origin(false);
        counters[0].bytes.store(1_000_000, Ordering::Relaxed);
        let step = schedule.origin + Duration::from_millis(200);
        sampler.close_interval(step);
        // The queue drains right after the last snapshot, within the same millisecond.
        counters[0].bytes.store(1_500_000, Ordering::Relaxed);
        let end = step + Duration::from_micros(300);
        assert_eq!(sampler.close_final(end, 0.2), None);
        assert_eq!(sampler.intervals.len(), 1);
        let last = &sampler.intervals[0];
        assert_eq!(last.received_bytes, 1_500_000);
        assert!((last.end_s - 0.2003).abs() < 1e-9, "{}", last.end_s);
        assert!((last.bits_per_second - 1.5e6 * 8.0 / 0.2003).abs() < 1.0);
        // A longer tail is an interval of its own.
        counters[0].bytes.store(1_600_000, Ordering::Relaxed);
        let later = end + Duration::from_millis(5);
        let tail = sampler.close_final(later, 0.2).unwrap();
        assert_eq!(tail.received_bytes, 100_000);
        drop(b);
    }
}
