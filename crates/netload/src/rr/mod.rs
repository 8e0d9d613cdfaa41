//! Request/response latency: `netload rr HOST --mode tcp-rr|tcp-crr|udp-rr`, and its
//! responder [`RrServer`] (`netload rr-server`).
//!
//! One OS thread per connection on both ends, blocking sockets, `TCP_NODELAY`: the
//! latency measured is the kernel's and the network's, not an event loop's.
//!
//! - `tcp-rr`: one connection per thread; each transaction writes the request and reads the
//!   whole response.
//! - `tcp-crr`: a new connection per transaction (connect, request, response, close): the
//!   cost that grows with conntrack and DNAT state. Who closes first decides where the
//!   `TIME_WAIT` socket stays ([`CloseBy`]): by default the responder closes first, so the
//!   client keeps no `TIME_WAIT` state and its ephemeral ports never run low; a client that
//!   closed first would hold one `TIME_WAIT` socket per transaction for 60 s, and once half
//!   its port range is taken every `connect` searches milliseconds for a free port: the
//!   figure would then measure the kernel's port allocator, not the network.
//! - `udp-rr`: one datagram each way, matched by sequence number; a response not back within
//!   `--timeout` counts as a timeout (lost).
//!
//! Latency is the **round trip** (sockperf and netperf print half of it). Closed loop by
//! default; `--rate` makes it open loop, measuring from each transaction's intended send
//! time ([`crate::hist::Schedule`]). Percentiles come from `HdrHistogram`s merged across
//! threads, per interval and in total.
//!
//! Layout, as in [`crate::http`]:
//! - [`spec`]: transaction kinds, sizes and the validated [`RrSpec`];
//! - [`wire`]: the hellos and UDP headers both ends speak;
//! - [`server`]: the responder [`RrServer`] (`netload rr-server`, and `netload server`'s);
//! - [`client`]: the measuring client ([`execute`]) and its table.
//!
//! This module holds the JSON schema of [`RrReport`], which both ends' figures fill.

pub mod client;
pub mod server;
pub mod spec;
pub mod wire;

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::hist::LatencySummary;
use crate::http::ErrorKind;
use crate::report::CpuReport;
pub use crate::spec::CloseBy;
pub use client::{execute, execute_until, render_table};
pub use server::{RrServer, RrServerConfig, serve};
pub use spec::{RrMode, RrSizes, RrSpec, RrSpecError};
pub use wire::{
    CPU_MAGIC, HELLO_LEN, Hello, MAGIC, MAX_MESSAGE, MAX_UDP_MESSAGE, ONE_SHOT_MAGIC,
    UDP_REQ_HEADER, UDP_RESP_HEADER, cpu_hello, hello, one_shot_hello, parse_hello,
    parse_udp_request,
};

/// Default port of the standalone responder.
pub const DEFAULT_RR_PORT: u16 = 9202;
/// Version of the [`RrReport`] schema.
pub const RR_SCHEMA_VERSION: u32 = 1;

/// One interval of the series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RrInterval {
    /// Start on the test clock, seconds.
    pub start_s: f64,
    /// End on the test clock, seconds.
    pub end_s: f64,
    /// Transactions completed in the interval.
    pub transactions: u64,
    /// `transactions` over the interval length.
    pub transactions_per_second: f64,
    /// Round-trip latency of those transactions.
    pub latency: LatencySummary,
}

/// `netload rr --json`: one versioned document per run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RrReport {
    /// Always [`RR_SCHEMA_VERSION`] for documents written by this build.
    pub schema_version: u32,
    /// netload version that produced the document.
    pub netload_version: String,
    /// Wall-clock start, seconds since the Unix epoch.
    pub started_unix_s: f64,
    /// What was run.
    pub spec: RrSpec,
    /// Completed transactions.
    pub transactions: u64,
    /// Measured window, seconds.
    pub duration_s: f64,
    /// `transactions` over `duration_s`.
    pub transactions_per_second: f64,
    /// Round-trip latency (request sent, or due in open loop, to response fully read).
    pub latency: LatencySummary,
    /// Open loop only: how late each request was sent after its intended time (the
    /// thread's wake-up latency, or a backlog when the peer is slower than `--rate`);
    /// part of `latency` by design.
    pub send_lag: Option<LatencySummary>,
    /// Per-interval series (completion time decides the interval).
    pub intervals: Vec<RrInterval>,
    /// Failed transactions by kind.
    pub errors: BTreeMap<ErrorKind, u64>,
    /// Client CPU over the window.
    pub cpu: CpuReport,
    /// Client process CPU (user + system) per transaction, microseconds (netperf's
    /// "service demand"); absent when nothing completed.
    pub cpu_us_per_transaction: Option<f64>,
    /// Responder CPU over the run (from a CPU session on the responder's port); absent
    /// when the responder did not answer one.
    pub server_cpu: Option<CpuReport>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_schema_is_generated() {
        let rr = serde_json::to_value(schemars::schema_for!(RrReport)).unwrap();
        assert!(rr["properties"]["latency"].is_object());
    }
}
