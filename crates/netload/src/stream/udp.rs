//! UDP stream engine.

/// Bytes at the head of every datagram: sequence number and send time, both u64 big-endian.
pub const HEADER_LEN: usize = 16;
