//! Layouts of the UDP datagram header, below the stream engines, the spec and the iperf3
//! protocol alike: each of them needs to know how long a header is or how to read one, and
//! none of them should depend on another for it.

/// Bytes at the head of every datagram: sequence number and send time, both u64 big-endian.
pub const HEADER_LEN: usize = 16;

/// Sequence numbers never reach this; larger values are hello/ack datagrams.
const SEQ_LIMIT: u64 = 1 << 56;

/// Writes a datagram header.
pub fn write_header(buf: &mut [u8], seq: u64, send_ns: u64) {
    buf[..8].copy_from_slice(&seq.to_be_bytes());
    buf[8..16].copy_from_slice(&send_ns.to_be_bytes());
}

/// Reads a datagram header; `None` for short or non-data datagrams.
pub fn read_header(buf: &[u8]) -> Option<(u64, u64)> {
    let seq = u64::from_be_bytes(buf.get(..8)?.try_into().ok()?);
    let send_ns = u64::from_be_bytes(buf.get(8..16)?.try_into().ok()?);
    (seq < SEQ_LIMIT).then_some((seq, send_ns))
}

/// Layout of the datagram header, so the engine can talk to a peer that is not netload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UdpWire {
    /// netload's own: sequence number from 0 and send time in ns, both u64 big-endian.
    #[default]
    Netload,
    /// iperf3's (`iperf_udp.c`): seconds and microseconds (u32 each) of the send time, then
    /// a packet count from 1, u32 or (`--udp-counters-64bit`) u64, all big-endian.
    Iperf3 {
        /// The packet count is 64 bits wide.
        counters64: bool,
    },
}

impl UdpWire {
    /// Bytes the header takes.
    pub fn header_len(self) -> usize {
        match self {
            UdpWire::Netload => HEADER_LEN,
            UdpWire::Iperf3 { counters64: false } => 12,
            UdpWire::Iperf3 { counters64: true } => 16,
        }
    }

    /// Writes the header of datagram `seq` (from 0) sent `send_ns` after the stream start.
    pub fn write(self, buf: &mut [u8], seq: u64, send_ns: u64) {
        match self {
            UdpWire::Netload => write_header(buf, seq, send_ns),
            UdpWire::Iperf3 { counters64 } => {
                let sec = (send_ns / 1_000_000_000) as u32;
                let usec = ((send_ns % 1_000_000_000) / 1_000) as u32;
                buf[..4].copy_from_slice(&sec.to_be_bytes());
                buf[4..8].copy_from_slice(&usec.to_be_bytes());
                if counters64 {
                    buf[8..16].copy_from_slice(&(seq + 1).to_be_bytes());
                } else {
                    // iperf3 wraps its 32-bit counter the same way.
                    buf[8..12].copy_from_slice(&((seq + 1) as u32).to_be_bytes());
                }
            }
        }
    }

    /// Reads a header as `(seq from 0, send time ns)`; `None` for short or control datagrams.
    pub fn read(self, buf: &[u8]) -> Option<(u64, u64)> {
        match self {
            UdpWire::Netload => read_header(buf),
            UdpWire::Iperf3 { counters64 } => {
                let sec = u32::from_be_bytes(buf.get(..4)?.try_into().ok()?);
                let usec = u32::from_be_bytes(buf.get(4..8)?.try_into().ok()?);
                let count = if counters64 {
                    u64::from_be_bytes(buf.get(8..16)?.try_into().ok()?)
                } else {
                    u64::from(u32::from_be_bytes(buf.get(8..12)?.try_into().ok()?))
                };
                let send_ns = u64::from(sec) * 1_000_000_000 + u64::from(usec) * 1_000;
                (count > 0).then(|| (count - 1, send_ns))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_and_hello_rejection() {
        let mut buf = [0u8; 32];
        write_header(&mut buf, 42, 7);
        assert_eq!(read_header(&buf), Some((42, 7)));
        assert_eq!(read_header(&buf[..10]), None);
        assert_eq!(read_header(b"NLUD0123456789abcdef"), None);
    }

    #[test]
    fn iperf3_header_matches_iperf_udp_c() {
        let mut buf = [0u8; 16];
        let w = UdpWire::Iperf3 { counters64: false };
        w.write(&mut buf, 0, 2_000_345_678);
        // 2 s, 345 µs, packet count 1.
        assert_eq!(&buf[..12], &[0, 0, 0, 2, 0, 0, 1, 89, 0, 0, 0, 1]);
        assert_eq!(w.read(&buf), Some((0, 2_000_345_000)));
        let w64 = UdpWire::Iperf3 { counters64: true };
        w64.write(&mut buf, (1 << 33) - 1, 0);
        assert_eq!(&buf[8..16], &(1u64 << 33).to_be_bytes());
        assert_eq!(w64.read(&buf), Some(((1 << 33) - 1, 0)));
        // The 4-byte connect reply and a zero count are not data.
        assert_eq!(w.read(b"6789"), None);
        assert_eq!(w.read(&[0u8; 12]), None);
    }
}
