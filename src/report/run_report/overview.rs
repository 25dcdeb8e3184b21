//! The "Run" section: manifest fields, user metadata and the recorded tensors.

use crate::report::output::Output;
use crate::store::run::Run;

pub(super) fn section(out: &mut Output, run: &Run) {
    let m = run.manifest();
    out.section("run", "Run");
    out.table(
        &["field", "value"],
        &[
            vec!["run id".into(), m.run_id.clone()],
            vec!["created".into(), m.created_utc.clone()],
            vec!["tch-landscape".into(), m.crate_version.clone()],
            vec!["snapshots".into(), run.len().to_string()],
            vec![
                "tensors".into(),
                format!(
                    "{} ({} values per snapshot)",
                    m.tensors.len(),
                    m.total_numel()
                ),
            ],
            vec![
                "stored as".into(),
                if m.storage_dtype.is_lossy() {
                    format!("{} (rounded: opt-in 16-bit storage)", m.storage_dtype)
                } else {
                    format!("{} (exact)", m.storage_dtype)
                },
            ],
            vec!["finished".into(), m.finished.to_string()],
        ],
    );
    let user: Vec<Vec<String>> = m
        .user
        .iter()
        .map(|(k, v)| vec![k.clone(), v.clone()])
        .collect();
    if !user.is_empty() {
        out.table(&["metadata", "value"], &user);
    }
    let tensors: Vec<Vec<String>> = m
        .tensors
        .iter()
        .map(|t| {
            vec![
                t.name.clone(),
                format!("{:?}", t.shape),
                t.role.as_str().into(),
                t.dtype.clone(),
            ]
        })
        .collect();
    out.table(&["tensor", "shape", "role", "dtype"], &tensors);
}
