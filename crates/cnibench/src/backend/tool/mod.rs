//! Driving the tools the backends run: started processes and their output, netload's and
//! iperf3's command lines and results. Backends import this module; it imports none of
//! them.
//!
//! - [`iperf3`]: iperf3 as the alternative stream tool of loopback and lab (`--tool`).

pub mod iperf3;
