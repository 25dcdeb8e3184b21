//! The queries of docs/ANALYSIS.md, taken from the markdown itself (its
//! fenced ```sql title="qN"``` and ```python title="qN"``` blocks), run on a
//! fresh `landscape demo` run in DuckDB and in polars: both answer the same
//! and the answers are sane (every epoch 0..=20 with its loss, positive
//! weight norms, the rebuilt tensor bit-equal to the snapshot file, a finite
//! surface minimum, the PCA path joined with metrics without nulls,
//! non-negative distances). The doc and the code cannot drift apart.
//!
//! Needs the test Python (numpy, pyarrow, duckdb, polars): the interpreter
//! in $TCH_LANDSCAPE_PYTHON, else the one `./landscape-dev setup` installs.

mod common;

use std::process::Command;

use serde_json::Value;

use common::*;

#[test]
fn analysis_md_queries_agree_in_duckdb_and_polars_on_the_demo() {
    python(); // fails early, naming what to install, without the test Python
    let tmp = tempdir();
    let out = Command::new(env!("CARGO_BIN_EXE_landscape"))
        .args(["demo", "--out"])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "landscape demo failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run_dir = tmp.path().join("mlp-digits");
    let doc = repo_root().join("docs/ANALYSIS.md");
    let facts: Value = python_json(
        "analysis_queries.py",
        &[doc.as_os_str(), run_dir.as_os_str()],
    );
    // Every query of the doc ran, in both engines.
    assert_eq!(
        facts["queries"],
        serde_json::json!(["q1", "q2", "q3", "q4grid", "q4min", "q5", "q6"])
    );
    // θ₀ and the 20 epochs of the demo, each with its metrics.
    assert_eq!(
        facts["q1_epochs"],
        serde_json::json!((0..=20).collect::<Vec<u64>>())
    );
    assert_eq!(facts["q2_rows"], 21);
    assert_eq!(facts["q3_shape"], serde_json::json!([256, 256]));
    assert_eq!(facts["q4_grid"], serde_json::json!([25, 25]));
    assert_eq!(facts["q4_splits"], serde_json::json!(["test", "train"]));
    assert_eq!(
        facts["q5_snapshots"],
        serde_json::json!((0..=20).collect::<Vec<u64>>())
    );
    assert_eq!(facts["q6_rows"], 6 * 20);
}
