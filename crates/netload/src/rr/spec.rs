//! What a request/response test is: its kind, its message sizes and the validated
//! [`RrSpec`] that `netload rr`'s flags become.

use clap::ValueEnum;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::wire::{MAX_MESSAGE, MAX_UDP_MESSAGE, UDP_REQ_HEADER, UDP_RESP_HEADER};
use crate::spec::CloseBy;

/// Transaction kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum RrMode {
    /// Many transactions over one TCP connection per thread.
    TcpRr,
    /// One TCP connection per transaction (connect, request, response, close).
    TcpCrr,
    /// One UDP datagram each way.
    UdpRr,
}

impl RrMode {
    /// Name as on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            RrMode::TcpRr => "tcp-rr",
            RrMode::TcpCrr => "tcp-crr",
            RrMode::UdpRr => "udp-rr",
        }
    }
}

/// `--size REQ[/RESP]`: request and response sizes in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RrSizes {
    /// Request bytes.
    pub request: u32,
    /// Response bytes.
    pub response: u32,
}

impl std::str::FromStr for RrSizes {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let one = |v: &str| -> Result<u32, String> {
            let b = v.parse::<crate::spec::ByteSize>()?.0;
            u32::try_from(b).map_err(|_| format!("{v:?} is too large"))
        };
        let (req, resp) = if let Some((a, b)) = s.split_once('/') {
            (one(a)?, one(b)?)
        } else {
            let v = one(s)?;
            (v, v)
        };
        Ok(RrSizes {
            request: req,
            response: resp,
        })
    }
}

/// A validated request/response test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RrSpec {
    /// Responder host as given.
    pub host: String,
    /// Responder port.
    pub port: u16,
    /// Transaction kind.
    pub mode: RrMode,
    /// Request bytes.
    pub request_size: u32,
    /// Response bytes.
    pub response_size: u32,
    /// Measured duration, seconds.
    pub duration_s: f64,
    /// Parallel connections (threads).
    pub parallel: u32,
    /// Open-loop rate in transactions per second; absent for closed loop.
    pub rate: Option<f64>,
    /// Interval period, seconds; 0 = no series.
    pub interval_s: f64,
    /// Per-transaction timeout, seconds.
    pub timeout_s: f64,
    /// `tcp-crr`: which end closes each connection first (documents written before it was
    /// recorded closed from the client).
    #[serde(default = "CloseBy::before_recorded")]
    pub close: CloseBy,
    /// Client cores, cycled over threads.
    pub client_affinity: Vec<usize>,
    /// Server cores (applied by the responder when it is told; not yet on the wire).
    pub server_affinity: Vec<usize>,
    /// Client spins on non-blocking sockets while waiting.
    pub busy_poll: bool,
}

/// An invalid spec, naming the flag.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid {flag}: {problem}")]
pub struct RrSpecError {
    /// The flag at fault.
    pub flag: &'static str,
    /// What is wrong and what is allowed.
    pub problem: String,
}

fn bad(flag: &'static str, problem: impl Into<String>) -> RrSpecError {
    RrSpecError {
        flag,
        problem: problem.into(),
    }
}

impl RrSpec {
    /// Checks ranges, naming the flag at fault.
    pub fn validate(&self) -> Result<(), RrSpecError> {
        if !(self.duration_s.is_finite() && self.duration_s > 0.0 && self.duration_s <= 86_400.0) {
            return Err(bad("--time", "must be in (0, 86400] seconds"));
        }
        if self.parallel == 0 || self.parallel > 1024 {
            return Err(bad("--parallel", "must be between 1 and 1024"));
        }
        if let Some(r) = self.rate
            && !(r.is_finite() && r > 0.0 && r <= 10_000_000.0)
        {
            return Err(bad(
                "--rate",
                "must be in (0, 10000000] transactions per second",
            ));
        }
        if !(self.interval_s == 0.0
            || (self.interval_s.is_finite()
                && self.interval_s >= 0.01
                && self.duration_s / self.interval_s <= 10_000.0))
        {
            return Err(bad(
                "--interval",
                "must be 0 or at least 0.01 s, with at most 10000 intervals",
            ));
        }
        if !(self.timeout_s.is_finite() && self.timeout_s >= 0.001 && self.timeout_s <= 3600.0) {
            return Err(bad("--timeout", "must be in [0.001, 3600] seconds"));
        }
        let (min_req, min_resp, max) = match self.mode {
            RrMode::UdpRr => (
                UDP_REQ_HEADER as u32,
                UDP_RESP_HEADER as u32,
                MAX_UDP_MESSAGE,
            ),
            RrMode::TcpRr | RrMode::TcpCrr => (1, 1, MAX_MESSAGE),
        };
        if !(min_req..=max).contains(&self.request_size)
            || !(min_resp..=max).contains(&self.response_size)
        {
            return Err(bad(
                "--size",
                format!(
                    "request must be {min_req}..={max} and response {min_resp}..={max} bytes for this mode"
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(
            "64/1K".parse::<RrSizes>(),
            Ok(RrSizes {
                request: 64,
                response: 1024
            })
        );
        assert_eq!(
            "100".parse::<RrSizes>(),
            Ok(RrSizes {
                request: 100,
                response: 100
            })
        );
        assert!("x/1".parse::<RrSizes>().is_err());
        assert!("8G".parse::<RrSizes>().is_err());
    }
}
