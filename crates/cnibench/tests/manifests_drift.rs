//! manifests/ is `cnibench render --suite thesis --sample --out manifests`, byte for byte.
//! (The full render is validated against the Kubernetes schemas by scripts/test.sh.)

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const REGENERATE: &str = "cargo run -p cnibench -- render --suite thesis --sample --out manifests";

/// Every YAML file under `dir`, relative path → bytes (README.md and other text is not
/// rendered and so not compared).
fn yaml_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "yaml") {
                let rel = p
                    .strip_prefix(dir)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/");
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

#[test]
fn manifests_match_the_rendered_thesis_sample() {
    let manifests: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../manifests");
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_cnibench"))
        .args(["render", "--suite", "thesis", "--sample", "--out"])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "render failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let want = yaml_files(tmp.path());
    // rbac.yaml, a point per scenario (six), the largest points and their scale files.
    assert!(want.len() > 8, "only {} files rendered", want.len());
    let have = yaml_files(&manifests);
    let missing: Vec<&String> = want.keys().filter(|k| !have.contains_key(*k)).collect();
    let stale: Vec<&String> = have.keys().filter(|k| !want.contains_key(*k)).collect();
    let differ: Vec<&String> = want
        .iter()
        .filter(|(k, v)| have.get(*k).is_some_and(|h| h != *v))
        .map(|(k, _)| k)
        .collect();
    assert!(
        missing.is_empty() && stale.is_empty() && differ.is_empty(),
        "manifests/ is out of date (missing {missing:?}, not rendered any more {stale:?}, \
         different {differ:?}); regenerate with `rm -rf manifests/thesis manifests/rbac.yaml && {REGENERATE}`"
    );
}
