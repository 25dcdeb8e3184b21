//! The library as a dependency: `examples/downstream` (a crate with the
//! README's dependency line and build script) builds against this checkout
//! and its binary runs from another directory with no LD_LIBRARY_PATH.
//! Builds in its own target directory (several minutes the first time).

mod common;

use std::process::Command;

#[test]
fn a_dependent_crate_builds_and_finds_libtorch_at_run_time() {
    let root = common::repo_root();
    let krate = root.join("examples/downstream");
    let target = root.join("target/downstream");
    // The same dependency versions as this checkout.
    std::fs::copy(root.join("Cargo.lock"), krate.join("Cargo.lock")).unwrap();
    let build = Command::new(env!("CARGO"))
        .args(["build", "--release", "--manifest-path"])
        .arg(krate.join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(krate.join("Cargo.lock"));
    assert!(
        build.status.success(),
        "building examples/downstream failed:\n{}",
        String::from_utf8_lossy(&build.stderr)
    );
    let tmp = common::tempdir();
    let run = Command::new(target.join("release/downstream"))
        .arg(tmp.path().join("run"))
        .current_dir(tmp.path())
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "the downstream binary failed:\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let out = String::from_utf8_lossy(&run.stdout);
    assert!(out.contains("downstream ok: 9 points"), "{out}");
    assert!(tmp
        .path()
        .join("run/surfaces/filter-2d/surface.parquet")
        .exists());
}
