//! HTTP/1.1 server (hyper) and time-to-first-byte client.
//!
//! - [`server`]: serves generated bodies (`/` and `/bytes/N`) from one shared in-memory
//!   chunk, names its replica in [`REPLICA_HEADER`], bounded against hostile clients;
//! - [`client`]: `netload http URL...`, closed or open loop, with per-request connect time,
//!   TTFB and total time in `HdrHistogram`s, per-replica counts and Jain's fairness index;
//! - [`h1`]: the client's lean HTTP/1.1 exchange (`httparse`, one reused buffer).
//!
//! This module holds what both ends and the report share: the header name, the error
//! classification and the JSON schema of [`HttpReport`].

pub mod client;
pub mod h1;
pub mod server;

use std::collections::BTreeMap;
use std::io;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::hist::LatencySummary;
use crate::report::CpuReport;

/// Response header naming the server replica that answered.
pub const REPLICA_HEADER: &str = "x-netload-replica";

/// Environment variable overriding the replica name (after the flag, before the hostname).
pub const REPLICA_ENV: &str = "NETLOAD_REPLICA";

/// Replica label for responses that carried no [`REPLICA_HEADER`].
pub const UNKNOWN_REPLICA: &str = "(none)";

/// Version of the [`HttpReport`] schema; bumped on any incompatible change.
pub const HTTP_SCHEMA_VERSION: u32 = 1;

/// Why a request failed. The run goes on; failures are counted by kind.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorKind {
    /// The connection was refused (nothing listening, or a REJECT rule).
    Refused,
    /// The peer reset or aborted the connection, or closed it before any response.
    Reset,
    /// The request did not complete within `--timeout` (connect, headers or body).
    Timeout,
    /// A response arrived with a status outside 200-299.
    #[serde(rename = "non-2xx")]
    Non2xx,
    /// The body ended before its announced length (the peer closed mid-body).
    ShortBody,
    /// The peer answered with something that is not HTTP/1.x.
    NotHttp,
    /// The host was unreachable (no route, network down, address not available).
    Unreachable,
    /// Anything else (the message of the first one is kept in the report).
    Other,
}

impl ErrorKind {
    /// Classifies an I/O error from connecting or from the connection.
    pub fn of_io(kind: io::ErrorKind) -> Self {
        use io::ErrorKind as K;
        match kind {
            K::ConnectionRefused => ErrorKind::Refused,
            K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe | K::UnexpectedEof => {
                ErrorKind::Reset
            }
            K::TimedOut | K::WouldBlock => ErrorKind::Timeout,
            K::HostUnreachable | K::NetworkUnreachable | K::NetworkDown | K::AddrNotAvailable => {
                ErrorKind::Unreachable
            }
            _ => ErrorKind::Other,
        }
    }

    /// Name as used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Refused => "refused",
            ErrorKind::Reset => "reset",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Non2xx => "non-2xx",
            ErrorKind::ShortBody => "short-body",
            ErrorKind::NotHttp => "not-http",
            ErrorKind::Unreachable => "unreachable",
            ErrorKind::Other => "other",
        }
    }
}

/// The effective settings of an HTTP run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HttpSpec {
    /// Target URLs, used in turn by every worker.
    pub urls: Vec<String>,
    /// Concurrent workers (each with at most one request in flight).
    pub concurrency: u32,
    /// Total requests asked for (`-n`), if the run is bounded by count.
    pub requests: Option<u64>,
    /// Duration asked for (`-t`), seconds, if the run is bounded by time.
    pub duration_s: Option<f64>,
    /// Open-loop target rate, requests per second; absent for closed loop.
    pub rate: Option<f64>,
    /// One TCP connection per request instead of keep-alive.
    pub new_connection: bool,
    /// With `new_connection`: which end closes each connection first (documents written
    /// before it was recorded closed from the client).
    #[serde(default = "crate::spec::CloseBy::before_recorded")]
    pub close: crate::spec::CloseBy,
    /// Per-request timeout (connect + headers + body), seconds.
    pub timeout_s: f64,
    /// OS threads, each with a single-threaded runtime driving its share of the workers.
    pub threads: u32,
}

/// Totals over all successful requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Default)]
pub struct HttpTotals {
    /// Requests attempted (successes plus errors).
    pub requests: u64,
    /// Requests that returned 2xx with their full body.
    pub ok: u64,
    /// Requests that failed, any kind.
    pub errors: u64,
    /// From the first send to the last completion, seconds.
    pub duration_s: f64,
    /// `ok` over `duration_s`.
    pub requests_per_second: f64,
    /// Body bytes of successful requests.
    pub body_bytes: u64,
    /// `body_bytes` over `duration_s`, bits per second.
    pub goodput_bits_per_second: f64,
    /// TCP connections opened.
    pub connections: u64,
    /// Connect time of new connections (TCP handshake).
    pub connect: LatencySummary,
    /// Time to first byte: request start (intended start in open loop; the connect is
    /// included when the request opened a connection, as with `--new-connection`) until the
    /// first response byte was read from the socket, as curl's `time_starttransfer`.
    pub ttfb: LatencySummary,
    /// Request start until the last body byte.
    pub total: LatencySummary,
    /// Open loop only: how long after its intended time each request was handed to a
    /// worker. This delay is part of `ttfb` and `total` by design (coordinated omission);
    /// when it is large while the server is fast, the client was the bottleneck (raise
    /// `-c`), and its floor is the pacer's wake-up latency.
    pub send_lag: Option<LatencySummary>,
}

/// What one replica served.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ReplicaReport {
    /// Replica name from [`REPLICA_HEADER`], or [`UNKNOWN_REPLICA`].
    pub replica: String,
    /// Successful requests it served.
    pub requests: u64,
    /// `requests` over all successful requests, 0..=1.
    pub share: f64,
    /// Body bytes it served.
    pub body_bytes: u64,
    /// Its own TTFB percentiles.
    pub ttfb: LatencySummary,
}

/// Count and first message of one kind of error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ErrorCount {
    /// How many.
    pub count: u64,
    /// The first such error's message, for diagnosis.
    pub example: String,
}

/// `netload http --json`: one versioned document per run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HttpReport {
    /// Always [`HTTP_SCHEMA_VERSION`] for documents written by this build.
    pub schema_version: u32,
    /// netload version that produced the document.
    pub netload_version: String,
    /// Wall-clock start, seconds since the Unix epoch.
    pub started_unix_s: f64,
    /// What was asked for.
    pub spec: HttpSpec,
    /// Totals and latency percentiles of successful requests.
    pub totals: HttpTotals,
    /// Per-replica counts and TTFB, by replica name.
    pub replicas: Vec<ReplicaReport>,
    /// Jain's fairness index of the replicas' request counts (1 = perfectly even).
    pub replica_fairness: Option<f64>,
    /// Failures by kind.
    pub errors: BTreeMap<ErrorKind, ErrorCount>,
    /// Client CPU over the run (process and node).
    pub cpu: CpuReport,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_schemas_are_generated() {
        let http = serde_json::to_value(schemars::schema_for!(HttpReport)).unwrap();
        assert!(http["properties"]["totals"].is_object());
    }

    #[test]
    fn io_errors_are_classified() {
        use io::ErrorKind as K;
        assert_eq!(ErrorKind::of_io(K::ConnectionRefused), ErrorKind::Refused);
        assert_eq!(ErrorKind::of_io(K::ConnectionReset), ErrorKind::Reset);
        assert_eq!(ErrorKind::of_io(K::UnexpectedEof), ErrorKind::Reset);
        assert_eq!(ErrorKind::of_io(K::TimedOut), ErrorKind::Timeout);
        assert_eq!(ErrorKind::of_io(K::HostUnreachable), ErrorKind::Unreachable);
        assert_eq!(ErrorKind::of_io(K::PermissionDenied), ErrorKind::Other);
    }

    #[test]
    fn error_kinds_serialize_as_their_names() {
        for k in [
            ErrorKind::Refused,
            ErrorKind::Reset,
            ErrorKind::Timeout,
            ErrorKind::Non2xx,
            ErrorKind::ShortBody,
            ErrorKind::NotHttp,
            ErrorKind::Unreachable,
            ErrorKind::Other,
        ] {
            assert_eq!(
                serde_json::to_string(&k).unwrap(),
                format!("\"{}\"", k.as_str())
            );
        }
    }
}
