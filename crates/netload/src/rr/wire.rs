//! Wire format (own port until the control protocol carries it): a TCP connection starts
//! with a 12-byte hello `"NLRR", request size, response size` (big-endian u32); then every
//! transaction is `request size` bytes in, `response size` bytes out. The hello
//! `"NLR1", ...` asks for one transaction after which the responder closes first. A UDP request starts
//! with `"NLRR", response size, sequence (u64)`; the response starts with the sequence.
//!
//! A CPU session (hello `"NLRC"`) brackets a run: the responder samples its CPU when it
//! opens and when the client sends one byte, and answers with the window as JSON.

/// First bytes of every hello and UDP request.
pub const MAGIC: [u8; 4] = *b"NLRR";
/// First bytes of a hello asking for one transaction, after which the responder closes
/// the connection first ([`crate::spec::CloseBy::Server`]).
pub const ONE_SHOT_MAGIC: [u8; 4] = *b"NLR1";
/// Bytes of the TCP hello.
pub const HELLO_LEN: usize = 12;
/// Bytes of the UDP request header (magic, response size, sequence).
pub const UDP_REQ_HEADER: usize = 16;
/// Bytes of the UDP response header (sequence).
pub const UDP_RESP_HEADER: usize = 8;
/// Largest request or response (TCP), bytes.
pub const MAX_MESSAGE: u32 = 1 << 20;
/// Largest UDP payload over IPv4.
pub const MAX_UDP_MESSAGE: u32 = 65_507;
/// Largest CPU report accepted by the client, bytes.
pub(crate) const MAX_CPU_REPORT: u32 = 64 << 10;

/// First bytes of a CPU session: the responder samples its CPU now and again when the
/// client sends one byte, and answers with the window as JSON (u32 length prefix).
pub const CPU_MAGIC: [u8; 4] = *b"NLRC";

/// The hello that opens a CPU session.
pub fn cpu_hello() -> [u8; HELLO_LEN] {
    let mut h = [0u8; HELLO_LEN];
    h[..4].copy_from_slice(&CPU_MAGIC);
    h
}

/// The TCP hello for `sizes`: any number of transactions on the connection.
pub fn hello(request: u32, response: u32) -> [u8; HELLO_LEN] {
    hello_with(MAGIC, request, response)
}

/// The TCP hello of one transaction after which the responder closes first.
pub fn one_shot_hello(request: u32, response: u32) -> [u8; HELLO_LEN] {
    hello_with(ONE_SHOT_MAGIC, request, response)
}

fn hello_with(magic: [u8; 4], request: u32, response: u32) -> [u8; HELLO_LEN] {
    let mut h = [0u8; HELLO_LEN];
    h[..4].copy_from_slice(&magic);
    h[4..8].copy_from_slice(&request.to_be_bytes());
    h[8..].copy_from_slice(&response.to_be_bytes());
    h
}

/// A parsed TCP hello.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hello {
    /// Request bytes.
    pub request: u32,
    /// Response bytes.
    pub response: u32,
    /// One transaction, then the responder closes first.
    pub one_shot: bool,
}

/// The hello's sizes and kind; `None` unless the magic is known and both sizes are within
/// 1..=[`MAX_MESSAGE`].
pub fn parse_hello(h: &[u8; HELLO_LEN]) -> Option<Hello> {
    let one_shot = match h[..4].try_into().ok()? {
        MAGIC => false,
        ONE_SHOT_MAGIC => true,
        _ => return None,
    };
    let request = u32::from_be_bytes(h[4..8].try_into().ok()?);
    let response = u32::from_be_bytes(h[8..].try_into().ok()?);
    let ok = |v: u32| (1..=MAX_MESSAGE).contains(&v);
    (ok(request) && ok(response)).then_some(Hello {
        request,
        response,
        one_shot,
    })
}

/// The response a responder owes to UDP request `datagram`: the response size and the
/// sequence; `None` for anything that is not a well-formed request.
pub fn parse_udp_request(datagram: &[u8]) -> Option<(usize, u64)> {
    if datagram.len() < UDP_REQ_HEADER || datagram[..4] != MAGIC {
        return None;
    }
    let resp = u32::from_be_bytes(datagram[4..8].try_into().ok()?);
    let seq = u64::from_be_bytes(datagram[8..16].try_into().ok()?);
    ((UDP_RESP_HEADER as u32..=MAX_UDP_MESSAGE).contains(&resp)).then_some((resp as usize, seq))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_round_trips_and_rejects_garbage() {
        let sizes = |h: Option<Hello>| h.map(|h| (h.request, h.response, h.one_shot));
        assert_eq!(sizes(parse_hello(&hello(1, 1000))), Some((1, 1000, false)));
        assert_eq!(
            sizes(parse_hello(&one_shot_hello(7, 9))),
            Some((7, 9, true))
        );
        assert_eq!(parse_hello(&hello(0, 1)), None);
        assert_eq!(parse_hello(&hello(1, MAX_MESSAGE + 1)), None);
        let mut h = hello(1, 1);
        h[0] = b'X';
        assert_eq!(parse_hello(&h), None);
    }

    #[test]
    fn udp_request_parsing() {
        let mut d = vec![0u8; 32];
        d[..4].copy_from_slice(&MAGIC);
        d[4..8].copy_from_slice(&100u32.to_be_bytes());
        d[8..16].copy_from_slice(&7u64.to_be_bytes());
        assert_eq!(parse_udp_request(&d), Some((100, 7)));
        assert_eq!(parse_udp_request(&d[..15]), None);
        d[4..8].copy_from_slice(&4u32.to_be_bytes());
        assert_eq!(parse_udp_request(&d), None);
    }
}
