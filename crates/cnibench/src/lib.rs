//! cnibench: runs suites of CNI benchmark scenarios with netload and reports them.

pub mod lab;
