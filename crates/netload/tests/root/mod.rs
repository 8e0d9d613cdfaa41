//! The gate of the root tier, shared by the tests that create network namespaces.

/// Whether this process may create namespaces; without root a test passes only when
/// `NETLOAD_SKIP_ROOT_TESTS` says the skip is deliberate, so CI cannot lose the tier unseen.
pub fn require_root() -> bool {
    if nix::unistd::Uid::effective().is_root() {
        return true;
    }
    assert!(
        std::env::var_os("NETLOAD_SKIP_ROOT_TESTS").is_some(),
        "network-namespace tests need root; set NETLOAD_SKIP_ROOT_TESTS=1 to skip them knowingly"
    );
    false
}
