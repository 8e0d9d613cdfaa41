//! iperf3 wire-protocol interoperability: `netload server --iperf3-port` serves iperf3 3.x
//! clients, and `netload tcp|udp HOST --peer iperf3` drives an `iperf3 -s`.
//!
//! Both run netload's own stream engines ([`crate::stream`]); only the control exchange
//! and the UDP datagram header ([`crate::wire::UdpWire`]) are iperf3's.
//!
//! Layout:
//! - [`proto`]: states, cookie, JSON framing, parameters and results (pure, unit-tested);
//! - [`server`]: the iperf3 port of `netload server`;
//! - [`client`]: a netload test against an iperf3 server.

pub mod client;
pub mod proto;
pub mod server;

use std::net::Shutdown;
use std::os::fd::AsFd;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::clock;
use crate::report::StreamRole;
use crate::stream::{DRAIN_GRACE, DataSocket, RunControl};

/// Ends a run whose peer has stopped: waits (at most [`DRAIN_GRACE`]) until the receiving
/// TCP sockets hold no unread bytes, or none that a reader will take (a queue that stops
/// shrinking sits below the reader's low watermark), then aborts the streams and shuts the
/// TCP sockets down. iperf3 peers stop reading and writing at TEST_END and close their data
/// sockets only after the results, so nothing else would end the streams promptly.
pub(crate) fn stop_streams(control: &RunControl, sockets: &[(DataSocket, StreamRole)]) {
    let give_up = clock::now() + DRAIN_GRACE;
    let unread = || -> usize {
        sockets
            .iter()
            .filter_map(|(s, role)| match (s, role) {
                (DataSocket::Tcp(t), StreamRole::Receive) => {
                    crate::sys::unread_bytes(t.as_fd()).ok()
                }
                _ => None,
            })
            .sum()
    };
    let mut last = unread();
    while last > 0 && clock::now() < give_up {
        std::thread::sleep(Duration::from_millis(20));
        let now = unread();
        if now == last {
            break;
        }
        last = now;
    }
    control.abort.store(true, Ordering::Relaxed);
    for (s, _) in sockets {
        if let DataSocket::Tcp(t) = s {
            let _ = t.shutdown(Shutdown::Both);
        }
    }
}
