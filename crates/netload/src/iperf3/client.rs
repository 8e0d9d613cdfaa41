//! A netload test against an iperf3 server.
