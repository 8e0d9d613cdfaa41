//! netload: one self-contained binary that is traffic source, sink and measuring instrument.
//!
//! Main types: [`spec::TestSpec`] (what to run, validated), [`report::StreamReport`] (the
//! versioned JSON result), [`server::Server`] and [`client::run_stream_test`].
//!
//! Layout:
//! - [`cli`]: every subcommand's flags and the function that runs it (`main.rs` only parses);
//! - [`spec`]: validated test specs, unit parsing;
//! - [`report`]: JSON result schema;
//! - [`control`]: control-protocol frames, messages and the data-connection preamble;
//! - [`stream`]: TCP and UDP stream engines (one OS thread per stream) and interval sampling;
//! - [`clock`], [`cpu`]: all timing and CPU sampling; [`signals`]: SIGINT/SIGTERM handling;
//! - [`wire`]: UDP datagram header layouts (netload's and iperf3's), shared by spec and engines;
//! - [`sys`]: the only unsafe code (`TCP_INFO`, `MSG_ZEROCOPY` completions, UDP GSO/GRO);
//! - [`hist`]: latency histograms, percentile summaries, Jain's index, open-loop schedule;
//! - [`rr`]: request/response latency (`TCP_RR`, `TCP_CRR`, `UDP_RR`), client and responder;
//! - [`http`]: HTTP server with generated bodies and the TTFB client; [`idle`]: filler mode;
//! - [`probe`]: wait until a TCP port answers or stops answering (datapath readiness);
//! - [`server`], [`client`]: the two ends of a test; [`serve`]: what netload's and the iperf3
//!   server share; [`render`]: human-readable tables;
//! - [`ndr`]: the no-drop rate search of `netload udp --find-rate` (pure search, driver);
//! - [`iperf3`]: iperf3 3.x wire protocol, server side and client side;
//! - [`mod@bench`], [`netns`]: the local microbenchmark, on loopback or between two namespaces.

pub mod bench;
pub mod cli;
pub mod client;
pub mod clock;
pub mod control;
pub mod cpu;
pub mod hist;
pub mod http;
pub mod idle;
pub mod iperf3;
pub mod ndr;
pub mod netns;
pub mod probe;
pub mod render;
pub mod report;
pub mod rr;
pub mod serve;
pub mod server;
pub mod signals;
pub mod spec;
pub mod stream;
pub mod sys;
pub mod wire;
