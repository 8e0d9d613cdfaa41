//! CLI tests of the built `cnibench` binary. Tiers: `fake_*` (no network, no privileges),
//! `loopback_*` (processes on 127.0.0.1).
//!
//! Index:
//! - [`util`]: running the binary, temp dirs, reading run directories;
//! - [`fake_e2e`]: run → report → compare on the fake backend, plan, suite overrides;
//! - [`bad_input`]: missing netload, unwritable output, failing backend, foreign run dirs,
//!   bad suite files;
//! - [`resume`]: resume after a simulated crash (torn last line) and after Ctrl-C;
//! - [`filed`]: runs filed under benches/runs/ re-render as written (also from a gzip log),
//!   and the HTML report loads in headless Chromium without errors;
//! - [`lab`]: the lab backend as root (`netns_` tests, one at a time);
//! - [`loopback`]: the loopback backend against a stand-in netload and, when built, the
//!   real one.

mod bad_input;
mod fake_e2e;
mod filed;
mod lab;
mod loopback;
mod resume;
mod util;
