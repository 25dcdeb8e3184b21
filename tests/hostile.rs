//! The hostile-input campaign (`scripts/hostile.py --quick`, issue 13) run
//! against this build's `landscape`: planted symlinks, FIFOs and endless
//! devices, NaN and huge values, closed pipes, damaged files. Fails when a
//! command panics, aborts, hangs or writes outside the run.
//!
//! Needs `python3` (standard library only) and the binary (feature `cli`;
//! without it the test says so and passes).

use std::path::Path;
use std::process::Command;

// Ignored until the fixes of issue 13 are merged (today the campaign finds
// hangs on FIFOs, writes through planted directory symlinks and more): the
// lead removes this `#[ignore]` then. Run it with
// `cargo test --release --features cli --test hostile -- --ignored --nocapture`.
#[test]
#[ignore]
fn hostile_inputs_neither_crash_hang_nor_write_outside() {
    let Some(binary) = option_env!("CARGO_BIN_EXE_landscape") else {
        eprintln!("the landscape binary is not built (feature cli): nothing to run");
        return;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("python3")
        .arg(root.join("scripts/hostile.py"))
        .arg("--quick")
        .arg("--landscape")
        .arg(binary)
        .output()
        .expect("running python3 scripts/hostile.py (is python3 installed?)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}{stderr}");
    let summary = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with("inputs "))
        .unwrap_or("no summary line");
    assert!(
        out.status.success(),
        "the hostile-input campaign found panics, aborts, hangs or outside writes: {summary}"
    );
    assert!(
        !summary.starts_with("inputs 0,"),
        "the campaign ran no input: {summary}"
    );
}
