//! No import cycles between the modules of any crate in the workspace (issue 16), checked by
//! `scripts/module-cycles.py`; and that script does fail on a cycle, so this check can fail.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/module-cycles.py")
}

fn check(crate_dir: &Path) -> Output {
    Command::new("python3")
        .arg(script())
        .arg(crate_dir)
        .output()
        .expect("python3 runs scripts/module-cycles.py")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A crate tree in a temporary folder: `(path below src/, contents)`.
fn synthetic_crate(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (path, text) in files {
        let path = dir.path().join("src").join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    dir
}

#[test]
fn no_crate_of_the_workspace_has_module_cycles() {
    // Every crate under crates/ (netload and cnibench today), so a new crate is checked too.
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut checked = Vec::new();
    for entry in std::fs::read_dir(&crates).unwrap() {
        let dir = entry.unwrap().path();
        if !dir.join("src").is_dir() {
            continue;
        }
        let o = check(&dir);
        assert!(
            o.status.success(),
            "{}{}",
            stdout(&o),
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(stdout(&o).contains("no module cycles"), "{}", stdout(&o));
        checked.push(dir.file_name().unwrap().to_string_lossy().into_owned());
    }
    for name in ["cnibench", "netload"] {
        assert!(
            checked.iter().any(|c| c == name),
            "{name} not checked: {checked:?}"
        );
    }
}

#[test]
fn a_cycle_between_two_modules_fails_naming_both() {
    let dir = synthetic_crate(&[
        ("lib.rs", "pub mod a;\npub mod b;\n"),
        ("a.rs", "use crate::b::B;\n\npub struct A(pub B);\n"),
        (
            "b.rs",
            "pub struct B;\n\npub fn f(_: &crate::a::A) {}\n// crate::c::X in a comment is no edge\n",
        ),
    ]);
    let o = check(dir.path());
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stdout(&o).contains("cycle: a -> b -> a"), "{}", stdout(&o));
    assert!(stdout(&o).contains("a.rs:1"), "{}", stdout(&o));
    assert!(stdout(&o).contains("b.rs:3"), "{}", stdout(&o));
}

#[test]
fn a_folder_module_and_its_children_are_no_cycle() {
    // mod.rs re-exports its child and the child uses its parent's shared type: one family.
    let dir = synthetic_crate(&[
        ("lib.rs", "pub mod c;\npub mod e;\n"),
        (
            "c/mod.rs",
            "pub mod d;\npub use d::D;\n\npub struct Shared;\n",
        ),
        (
            "c/d.rs",
            "use super::Shared;\n\npub struct D(pub Shared);\n",
        ),
        (
            "e.rs",
            "use crate::c::{D, d::D as Same};\n\npub fn g(_: D, _: Same) {}\n",
        ),
    ]);
    let o = check(dir.path());
    assert!(o.status.success(), "{}", stdout(&o));
}
