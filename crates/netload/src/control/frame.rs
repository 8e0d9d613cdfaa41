//! Length-prefixed JSON frames.

use std::io::{self, Read, Write};

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Why a frame could not be read or decoded.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The announced length exceeds the cap for this direction.
    #[error("frame of {len} bytes exceeds the {max}-byte limit")]
    TooLarge {
        /// Announced length.
        len: usize,
        /// Allowed maximum.
        max: usize,
    },
    /// The payload is not a valid message.
    #[error("malformed control message: {0}")]
    Malformed(#[source] serde_json::Error),
    /// The peer closed the connection between frames.
    #[error("peer closed the control connection")]
    Closed,
    /// The socket failed or timed out.
    #[error("control connection: {0}")]
    Io(#[from] io::Error),
}

/// Serialises `msg` as one frame.
pub fn encode_frame<T: Serialize>(msg: &T) -> Vec<u8> {
    let body = serde_json::to_vec(msg).expect("control messages always serialise");
    let mut out = Vec::with_capacity(4 + body.len());
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// Decodes one frame from the head of `buf`: `Ok(Some((msg, used)))`, or `Ok(None)` when
/// `buf` does not yet hold a whole frame. Pure, so it is fuzzed directly.
pub fn decode_frame<T: DeserializeOwned>(
    buf: &[u8],
    max: usize,
) -> Result<Option<(T, usize)>, FrameError> {
    let Some(head) = buf.get(..4) else {
        return Ok(None);
    };
    let len = u32::from_be_bytes(head.try_into().expect("4 bytes")) as usize;
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    let Some(body) = buf.get(4..4 + len) else {
        return Ok(None);
    };
    let msg = serde_json::from_slice(body).map_err(FrameError::Malformed)?;
    Ok(Some((msg, 4 + len)))
}

/// Writes one frame.
pub fn write_frame<T: Serialize>(mut w: impl Write, msg: &T) -> io::Result<()> {
    w.write_all(&encode_frame(msg))?;
    w.flush()
}

/// Reads one frame of at most `max` bytes. `prefix` holds bytes already read from the
/// connection (the server peeks at the first four to tell control from data).
pub fn read_frame<T: DeserializeOwned>(
    mut r: impl Read,
    max: usize,
    prefix: Option<[u8; 4]>,
) -> Result<T, FrameError> {
    let mut head = [0u8; 4];
    match prefix {
        Some(p) => head = p,
        None => read_exact_or_closed(&mut r, &mut head)?,
    }
    let len = u32::from_be_bytes(head) as usize;
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    let mut body = vec![0u8; len];
    read_exact_or_closed(&mut r, &mut body)?;
    serde_json::from_slice(&body).map_err(FrameError::Malformed)
}

fn read_exact_or_closed(r: &mut impl Read, buf: &mut [u8]) -> Result<(), FrameError> {
    r.read_exact(buf).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => FrameError::Closed,
        _ => FrameError::Io(e),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::ClientMsg;
    use proptest::prelude::*;

    #[test]
    fn round_trip() {
        let msg = ClientMsg::Start;
        let bytes = encode_frame(&msg);
        let (back, used): (ClientMsg, usize) = decode_frame(&bytes, 1024).unwrap().unwrap();
        assert_eq!(back, msg);
        assert_eq!(used, bytes.len());
        let read: ClientMsg = read_frame(&bytes[..], 1024, None).unwrap();
        assert_eq!(read, msg);
    }

    #[test]
    fn partial_frames_wait_for_more() {
        let bytes = encode_frame(&ClientMsg::Start);
        for cut in 0..bytes.len() {
            assert!(
                decode_frame::<ClientMsg>(&bytes[..cut], 1024)
                    .unwrap()
                    .is_none()
            );
        }
    }

    #[test]
    fn oversized_length_is_rejected_before_reading_the_body() {
        let bytes = [0xff, 0xff, 0xff, 0xff];
        assert!(matches!(
            decode_frame::<ClientMsg>(&bytes, 1024),
            Err(FrameError::TooLarge { .. })
        ));
        assert!(matches!(
            read_frame::<ClientMsg>(&bytes[..], 1024, None),
            Err(FrameError::TooLarge { .. })
        ));
    }

    #[test]
    fn truncated_stream_is_closed_not_a_hang() {
        let bytes = encode_frame(&ClientMsg::Start);
        assert!(matches!(
            read_frame::<ClientMsg>(&bytes[..bytes.len() - 1], 1024, None),
            Err(FrameError::Closed)
        ));
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        /// The decoder never panics, never reads past its input, and never accepts more
        /// than the cap, whatever the bytes.
        #[test]
        fn decoder_survives_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(Some((_, used))) = decode_frame::<ClientMsg>(&bytes, 128) {
                prop_assert!(used <= bytes.len() && used <= 132);
            }
        }

        /// Any JSON-ish body inside a valid length prefix decodes or errors cleanly.
        #[test]
        fn decoder_survives_arbitrary_bodies(body in "\\PC{0,200}") {
            let mut bytes = (body.len() as u32).to_be_bytes().to_vec();
            bytes.extend_from_slice(body.as_bytes());
            let _ = decode_frame::<ClientMsg>(&bytes, 1024);
        }
    }
}
