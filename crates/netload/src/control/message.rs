//! Control messages and the data-connection preamble.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::report::SideReport;
use crate::spec::{Limits, TestSpec};

/// Protocol name sent in the hello, so a stray client of another protocol is recognised.
pub const PROTOCOL_NAME: &str = "netload";
/// Version of this protocol; both ends must agree.
pub const PROTOCOL_VERSION: u32 = 1;

/// A random 16-byte secret binding data connections to their test.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cookie(pub [u8; 16]);

impl Cookie {
    /// A fresh random cookie.
    pub fn random() -> Self {
        Cookie(rand::random())
    }

    /// Lowercase hex, as carried in JSON.
    pub fn to_hex(self) -> String {
        use std::fmt::Write as _;
        self.0.iter().fold(String::with_capacity(32), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
    }

    /// Parses 32 hex digits.
    pub fn from_hex(s: &str) -> Option<Self> {
        if s.len() != 32 || !s.is_ascii() {
            return None;
        }
        let mut out = [0u8; 16];
        for (i, slot) in out.iter_mut().enumerate() {
            *slot = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(Cookie(out))
    }
}

impl fmt::Debug for Cookie {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Only a prefix: enough to correlate logs, not enough to hijack a test.
        write!(f, "Cookie({}…)", &self.to_hex()[..6])
    }
}

impl Serialize for Cookie {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Cookie {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Cookie::from_hex(&s).ok_or_else(|| serde::de::Error::custom("cookie must be 32 hex digits"))
    }
}

/// Messages from client to server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientMsg {
    /// First message on a control connection.
    Hello {
        /// Must be [`PROTOCOL_NAME`].
        protocol: String,
        /// Client's [`PROTOCOL_VERSION`].
        version: u32,
    },
    /// The test to run.
    Setup {
        /// Requested test; the server validates it against its limits.
        spec: TestSpec,
    },
    /// All streams are connected: start the clock.
    Start,
    /// Stop the test early (the user interrupted the client); both ends report what they
    /// measured so far.
    Stop,
    /// The client's streams are done; `sent[i]` is how many datagrams (UDP) or bytes (TCP)
    /// stream `i` sent over the whole test, for the server's loss accounting.
    Finish {
        /// Per-stream sent totals, indexed by stream id (0 for streams the client received on).
        sent: Vec<u64>,
    },
}

/// Messages from server to client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ServerMsg {
    /// Answer to a compatible hello.
    Welcome {
        /// Server's [`PROTOCOL_VERSION`].
        version: u32,
        /// Secret the client puts in every data connection's preamble.
        cookie: Cookie,
        /// What the server is willing to run.
        limits: Limits,
        /// Server's netload version, for the report.
        server_version: String,
    },
    /// The spec is valid; open the data streams.
    Accepted,
    /// Every data stream has connected.
    Ready,
    /// The server's side of the test.
    Report {
        /// What the server measured.
        side: Box<SideReport>,
        /// Per-stream sent totals of the server's sending streams, as in [`ClientMsg::Finish`].
        sent: Vec<u64>,
        /// Server streams that ended early, and why.
        errors: Vec<String>,
    },
    /// The request cannot be served; the server closes the connection after this.
    Error {
        /// Human-readable reason.
        message: String,
    },
}

/// First bytes of a data connection (TCP) or a UDP hello datagram:
/// magic (4) + cookie (16) + stream id (u32 big-endian).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Preamble {
    /// Test the stream belongs to.
    pub cookie: Cookie,
    /// Stream index within the test.
    pub stream: u32,
}

impl Preamble {
    /// Encoded length.
    pub const LEN: usize = 24;

    /// Encodes with the given magic.
    pub fn encode(&self, magic: [u8; 4]) -> [u8; Self::LEN] {
        let mut out = [0u8; Self::LEN];
        out[..4].copy_from_slice(&magic);
        out[4..20].copy_from_slice(&self.cookie.0);
        out[20..].copy_from_slice(&self.stream.to_be_bytes());
        out
    }

    /// Decodes, checking the magic.
    pub fn decode(bytes: &[u8], magic: [u8; 4]) -> Option<Self> {
        if bytes.len() < Self::LEN || bytes[..4] != magic {
            return None;
        }
        Some(Preamble {
            cookie: Cookie(bytes[4..20].try_into().ok()?),
            stream: u32::from_be_bytes(bytes[20..24].try_into().ok()?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::{DATA_MAGIC, UDP_MAGIC};

    #[test]
    fn cookie_hex_round_trip() {
        let c = Cookie::random();
        assert_eq!(Cookie::from_hex(&c.to_hex()), Some(c));
        assert_eq!(Cookie::from_hex("zz"), None);
        assert_eq!(Cookie::from_hex(&"é".repeat(16)), None);
    }

    #[test]
    fn preamble_round_trip_and_magic_check() {
        let p = Preamble {
            cookie: Cookie::random(),
            stream: 7,
        };
        let bytes = p.encode(DATA_MAGIC);
        assert_eq!(Preamble::decode(&bytes, DATA_MAGIC), Some(p));
        assert_eq!(Preamble::decode(&bytes, UDP_MAGIC), None);
        assert_eq!(Preamble::decode(&bytes[..10], DATA_MAGIC), None);
    }

    #[test]
    fn data_magic_is_never_a_valid_frame_length() {
        assert!(u32::from_be_bytes(DATA_MAGIC) as usize > crate::control::MAX_SERVER_FRAME);
    }

    #[test]
    fn unknown_fields_and_types_are_rejected() {
        assert!(serde_json::from_str::<ClientMsg>(r#"{"type":"finish","sent":[],"x":1}"#).is_err());
        assert!(serde_json::from_str::<ClientMsg>(r#"{"type":"reboot"}"#).is_err());
    }
}
