//! `netload probe`: waits until a TCP port answers, or until it stops answering.
//!
//! An orchestrator asks two questions of a datapath before it measures it: does the
//! measured address answer yet (a Service VIP is programmed some time after its endpoints
//! are ready), and does a peer that no policy allows fail to connect (a CNI that ignores
//! NetworkPolicy lets it through). Both are "connect until the answer is the one wanted,
//! within a deadline"; every attempt is kept so the caller can say what it saw.
//!
//! `closed` needs several failures in a row: one lost SYN looks like a dropped one, and a
//! policy that is being programmed can let some connections through and not others.

use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Version of the JSON report.
pub const PROBE_SCHEMA: &str = "netload.probe/1";

/// The answer a probe waits for.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum Want {
    /// One connection succeeds.
    Open,
    /// Connections fail ([`ProbeSpec::closed_streak`] in a row).
    Closed,
}

impl Want {
    /// As `--want` takes it and the report's line says it.
    pub fn as_str(self) -> &'static str {
        match self {
            Want::Open => "open",
            Want::Closed => "closed",
        }
    }
}

/// What one connection attempt did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// The handshake completed.
    Connected,
    /// An RST came back (nothing listens, or a policy that rejects).
    Refused,
    /// No answer within the connect timeout (a policy that drops, or no route yet).
    Timeout,
    /// An ICMP error: host or network unreachable (some CNIs reject this way).
    Unreachable,
    /// Any other error (its text is in [`Attempt::error`]).
    Error,
}

/// One connection attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Attempt {
    /// Seconds since the probe started, at the attempt's start.
    pub at_s: f64,
    /// What happened.
    pub outcome: Outcome,
    /// How long the attempt took, milliseconds.
    pub took_ms: f64,
    /// The error's text, for [`Outcome::Error`] (and the others, for the record).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What to probe and how long to try.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeSpec {
    /// The address connected to.
    pub target: SocketAddr,
    /// The answer waited for.
    pub want: Want,
    /// Give up after this long.
    pub within: Duration,
    /// One attempt's connect timeout.
    pub connect_timeout: Duration,
    /// Pause between attempts.
    pub interval: Duration,
    /// Failures in a row that make [`Want::Closed`].
    pub closed_streak: u32,
}

/// Invalid probe settings.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ProbeSpecError {
    /// A duration that must be positive is not.
    #[error("{0} must be a positive number of seconds")]
    NotPositive(&'static str),
    /// A streak of zero failures proves nothing.
    #[error("--closed-streak must be at least 1")]
    ZeroStreak,
    /// The host did not resolve.
    #[error("cannot resolve {host}: {reason}")]
    Resolve {
        /// The host as given.
        host: String,
        /// Why.
        reason: String,
    },
}

impl ProbeSpec {
    /// A spec with the defaults of `netload probe` for `host:port`.
    pub fn new(host: &str, port: u16, want: Want) -> Result<Self, ProbeSpecError> {
        let resolve_err = |reason: String| ProbeSpecError::Resolve {
            host: host.into(),
            reason,
        };
        let target = (host, port)
            .to_socket_addrs()
            .map_err(|e| resolve_err(e.to_string()))?
            .next()
            .ok_or_else(|| resolve_err("no address".into()))?;
        Ok(ProbeSpec {
            target,
            want,
            within: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(1),
            interval: Duration::from_millis(200),
            closed_streak: 3,
        })
    }

    /// Checks the durations and the streak.
    pub fn validate(&self) -> Result<(), ProbeSpecError> {
        for (name, d) in [
            ("--within", self.within),
            ("--connect-timeout", self.connect_timeout),
        ] {
            if d.is_zero() {
                return Err(ProbeSpecError::NotPositive(name));
            }
        }
        if self.closed_streak == 0 {
            return Err(ProbeSpecError::ZeroStreak);
        }
        Ok(())
    }

    /// The most attempts the deadline allows (each takes at least the interval or a
    /// millisecond): the bound on the probe's loop.
    pub fn max_attempts(&self) -> u64 {
        let step = self.interval.max(Duration::from_millis(1));
        (self.within.as_nanos() / step.as_nanos()) as u64 + u64::from(self.closed_streak) + 1
    }
}

/// The probe's report (`--json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ProbeReport {
    /// [`PROBE_SCHEMA`].
    pub schema: String,
    /// The address probed.
    pub target: String,
    /// The answer waited for.
    pub want: Want,
    /// Whether it came before the deadline.
    pub reached: bool,
    /// Seconds from the start until it came (or until the probe gave up).
    pub elapsed_s: f64,
    /// Every attempt, in order.
    pub attempts: Vec<Attempt>,
}

impl ProbeReport {
    /// One line for people: what was wanted, whether it came, the attempts by outcome.
    pub fn summary(&self) -> String {
        let count = |o: Outcome| self.attempts.iter().filter(|a| a.outcome == o).count();
        let mut seen: Vec<String> = [
            Outcome::Connected,
            Outcome::Refused,
            Outcome::Timeout,
            Outcome::Unreachable,
            Outcome::Error,
        ]
        .into_iter()
        .filter(|o| count(*o) > 0)
        .map(|o| format!("{} {}", count(o), outcome_name(o)))
        .collect();
        if let Some(e) = self.attempts.iter().rev().find_map(|a| a.error.as_deref()) {
            seen.push(format!("last error: {e}"));
        }
        format!(
            "{} {} {} after {:.1} s ({} attempts: {})",
            self.target,
            if self.reached { "was" } else { "was not" },
            self.want.as_str(),
            self.elapsed_s,
            self.attempts.len(),
            seen.join(", ")
        )
    }
}

fn outcome_name(o: Outcome) -> &'static str {
    match o {
        Outcome::Connected => "connected",
        Outcome::Refused => "refused",
        Outcome::Timeout => "timed out",
        Outcome::Unreachable => "unreachable",
        Outcome::Error => "failed",
    }
}

/// Classifies a connect error.
pub fn classify(e: &std::io::Error) -> Outcome {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::ConnectionRefused | K::ConnectionReset => Outcome::Refused,
        K::TimedOut | K::WouldBlock => Outcome::Timeout,
        K::HostUnreachable | K::NetworkUnreachable => Outcome::Unreachable,
        _ => Outcome::Error,
    }
}

/// Runs the probe with `connect` as the attempt, `elapsed` (time since the probe started)
/// and `sleep` as time (tests give fakes): stops at the wanted answer, at the deadline, or after
/// [`ProbeSpec::max_attempts`].
pub fn run_with(
    spec: &ProbeSpec,
    mut connect: impl FnMut(&ProbeSpec) -> Result<(), std::io::Error>,
    elapsed: impl Fn() -> Duration,
    mut sleep: impl FnMut(Duration),
) -> ProbeReport {
    let mut attempts = Vec::new();
    let mut failures_in_a_row = 0u32;
    let mut reached = false;
    for _ in 0..spec.max_attempts() {
        let at = elapsed();
        let r = connect(spec);
        let took = elapsed().saturating_sub(at);
        let (outcome, error) = match &r {
            Ok(()) => (Outcome::Connected, None),
            Err(e) => (classify(e), Some(e.to_string())),
        };
        attempts.push(Attempt {
            at_s: at.as_secs_f64(),
            outcome,
            took_ms: took.as_secs_f64() * 1e3,
            error,
        });
        failures_in_a_row = if outcome == Outcome::Connected {
            0
        } else {
            failures_in_a_row + 1
        };
        reached = match spec.want {
            Want::Open => outcome == Outcome::Connected,
            Want::Closed => failures_in_a_row >= spec.closed_streak,
        };
        // A closed streak in progress may finish past the deadline: the attempts it needs
        // are within max_attempts, and stopping early would call a dropping policy open.
        let streak_running = spec.want == Want::Closed && failures_in_a_row > 0;
        if reached || (elapsed() >= spec.within && !streak_running) {
            break;
        }
        sleep(spec.interval);
    }
    ProbeReport {
        schema: PROBE_SCHEMA.into(),
        target: spec.target.to_string(),
        want: spec.want,
        reached,
        elapsed_s: elapsed().as_secs_f64(),
        attempts,
    }
}

/// Runs the probe over real TCP connections.
pub fn run(spec: &ProbeSpec) -> ProbeReport {
    let origin = crate::clock::now();
    run_with(
        spec,
        |s| TcpStream::connect_timeout(&s.target, s.connect_timeout).map(drop),
        || crate::clock::now().saturating_duration_since(origin),
        std::thread::sleep,
    )
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::io::{Error, ErrorKind};

    use super::*;

    fn spec(want: Want) -> ProbeSpec {
        ProbeSpec {
            target: "198.18.0.2:9201".parse().unwrap(),
            want,
            within: Duration::from_secs(2),
            connect_timeout: Duration::from_millis(500),
            interval: Duration::from_millis(200),
            closed_streak: 3,
        }
    }

    /// Runs `spec` against a scripted sequence of outcomes on a fake clock where every
    /// attempt takes `took` (the script repeats its last entry).
    fn scripted(spec: &ProbeSpec, script: &[Option<ErrorKind>], took: Duration) -> ProbeReport {
        let now = Cell::new(Duration::ZERO);
        let i = Cell::new(0usize);
        run_with(
            spec,
            |_| {
                let step = script[i.get().min(script.len() - 1)];
                i.set(i.get() + 1);
                now.set(now.get() + took);
                match step {
                    None => Ok(()),
                    Some(kind) => Err(Error::from(kind)),
                }
            },
            || now.get(),
            |d| now.set(now.get() + d),
        )
    }

    #[test]
    fn open_waits_for_the_first_connection() {
        let r = scripted(
            &spec(Want::Open),
            &[
                Some(ErrorKind::ConnectionRefused),
                Some(ErrorKind::TimedOut),
                None,
            ],
            Duration::from_millis(10),
        );
        assert!(r.reached);
        let outcomes: Vec<Outcome> = r.attempts.iter().map(|a| a.outcome).collect();
        assert_eq!(
            outcomes,
            [Outcome::Refused, Outcome::Timeout, Outcome::Connected]
        );
        assert!(r.summary().contains("was open"), "{}", r.summary());
    }

    #[test]
    fn open_gives_up_at_the_deadline() {
        let r = scripted(
            &spec(Want::Open),
            &[Some(ErrorKind::ConnectionRefused)],
            Duration::from_millis(10),
        );
        assert!(!r.reached);
        // An attempt every 210 ms: the 11th ends at 2.11 s, past the 2 s deadline.
        assert_eq!(r.attempts.len(), 11);
        assert!((r.elapsed_s - 2.11).abs() < 1e-9, "{}", r.elapsed_s);
        assert!(r.summary().contains("was not open"), "{}", r.summary());
        assert!(r.summary().contains("11 refused"), "{}", r.summary());
    }

    #[test]
    fn closed_needs_a_streak_of_failures() {
        // A connection between failures restarts the streak: a policy half programmed.
        let r = scripted(
            &spec(Want::Closed),
            &[
                Some(ErrorKind::TimedOut),
                Some(ErrorKind::TimedOut),
                None,
                Some(ErrorKind::TimedOut),
                Some(ErrorKind::ConnectionRefused),
                Some(ErrorKind::HostUnreachable),
            ],
            Duration::from_millis(10),
        );
        assert!(r.reached);
        assert_eq!(r.attempts.len(), 6);
    }

    #[test]
    fn closed_is_not_reached_while_connections_succeed() {
        let r = scripted(&spec(Want::Closed), &[None], Duration::from_millis(10));
        assert!(!r.reached);
        assert!(r.attempts.iter().all(|a| a.outcome == Outcome::Connected));
        assert!(r.summary().contains("was not closed"), "{}", r.summary());
    }

    #[test]
    fn a_closed_streak_under_way_at_the_deadline_is_finished() {
        // Timeouts of 900 ms: the deadline falls in the middle of the streak.
        let r = scripted(
            &spec(Want::Closed),
            &[None, Some(ErrorKind::TimedOut)],
            Duration::from_millis(900),
        );
        assert!(r.reached, "{r:?}");
        assert_eq!(r.attempts.len(), 4);
    }

    #[test]
    fn the_loop_is_bounded_even_if_the_clock_stands_still() {
        let s = spec(Want::Open);
        let r = run_with(
            &s,
            |_| Err(Error::from(ErrorKind::ConnectionRefused)),
            || Duration::ZERO,
            |_| {},
        );
        assert_eq!(r.attempts.len() as u64, s.max_attempts());
    }

    #[test]
    fn bad_settings_are_refused() {
        let mut s = spec(Want::Open);
        s.within = Duration::ZERO;
        assert_eq!(s.validate(), Err(ProbeSpecError::NotPositive("--within")));
        let mut s = spec(Want::Closed);
        s.closed_streak = 0;
        assert_eq!(s.validate(), Err(ProbeSpecError::ZeroStreak));
        assert!(matches!(
            ProbeSpec::new("no-such-host.invalid", 1, Want::Open),
            Err(ProbeSpecError::Resolve { .. })
        ));
    }

    #[test]
    fn real_connections_on_loopback() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut s = ProbeSpec::new("127.0.0.1", port, Want::Open).unwrap();
        s.within = Duration::from_secs(2);
        assert!(run(&s).reached);
        drop(listener);
        s.want = Want::Closed;
        s.interval = Duration::from_millis(10);
        let r = run(&s);
        assert!(r.reached, "{}", r.summary());
        assert!(r.attempts.iter().all(|a| a.outcome == Outcome::Refused));
    }
}
