//! The hostile-input campaign (`scripts/hostile.py --quick`, issue 13) run
//! against this build's `landscape`: planted symlinks, FIFOs and endless
//! devices, NaN and huge values, closed pipes, damaged files. Fails when a
//! command panics, aborts, hangs, writes outside the run or silently accepts
//! bad input.
//!
//! Needs `python3` (standard library only) and the binary (feature `cli`;
//! without it the test says so and passes).

use std::path::Path;
use std::process::Command;

// The full campaign (181 inputs, about a minute on a demo run):
// `python3 scripts/hostile.py --landscape target/release/landscape --run RUN`.
#[test]
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
    assert!(
        summary.contains(" silent 0,"),
        "the campaign found inputs accepted without a word: {summary}"
    );
}
