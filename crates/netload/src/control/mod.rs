//! netload's control protocol.
//!
//! One TCP connection per test carries length-prefixed JSON frames (4-byte big-endian
//! length, then UTF-8 JSON, at most [`MAX_CLIENT_FRAME`] bytes from a client). The exchange:
//!
//! ```text
//! client                         server
//! Hello{version}          ─▶
//!                         ◀─     Welcome{version, cookie, limits}
//! Setup{spec}             ─▶
//!                         ◀─     Accepted | Error
//! (data connections, each opened with a Preamble{cookie, stream})
//!                         ◀─     Ready
//! Start                   ─▶     (both run omit + duration, senders stop, receivers drain;
//! [Stop]                  ─▶      an interrupted client stops both ends early)
//! Finish{sent}            ─▶
//!                         ◀─     Report{side, sent}
//! ```
//!
//! Data connections arrive on the same TCP port as control connections; they start with
//! [`DATA_MAGIC`] which, read as a frame length, exceeds any allowed frame, so the server
//! tells them apart from the first four bytes. UDP streams say hello with a datagram
//! carrying [`UDP_MAGIC`] and the same cookie.

mod frame;
mod message;

pub use frame::{FrameError, decode_frame, encode_frame, read_frame, write_frame};
pub use message::{ClientMsg, Cookie, PROTOCOL_NAME, PROTOCOL_VERSION, Preamble, ServerMsg};

/// Largest frame a server accepts from a client, bytes.
pub const MAX_CLIENT_FRAME: usize = 64 * 1024;
/// Largest frame a client accepts from a server (reports carry interval series), bytes.
pub const MAX_SERVER_FRAME: usize = 16 * 1024 * 1024;
/// First bytes of a TCP data connection.
pub const DATA_MAGIC: [u8; 4] = *b"NLDA";
/// First bytes of a UDP stream hello datagram.
pub const UDP_MAGIC: [u8; 4] = *b"NLUD";
/// Default TCP (and UDP) port of `netload server`.
pub const DEFAULT_PORT: u16 = 9201;
