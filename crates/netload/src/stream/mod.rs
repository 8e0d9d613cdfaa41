//! Stream engines: one OS thread per stream on both ends.

pub mod udp;
