//! `netload` command line.

fn main() {}
