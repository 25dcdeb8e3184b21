//! Post-run reports: figures (PNG + SVG), a self-contained HTML page per run,
//! side-by-side comparison of runs, and VTK export of surfaces.
//!
//! Every output file (the page, each figure, a VTK file) is written
//! atomically: a final name never holds a truncated file.

pub mod animation;
pub mod compare;
pub(crate) mod figures;
pub(crate) mod html;
mod inputs;
pub(crate) mod metrics;
mod options;
mod output;
pub mod run_report;
pub mod vtk;

pub use compare::write_comparison;
pub use options::{LevelSpacing, RatioScale, ReportOptions, SCALES};
pub use run_report::write_report;
pub use vtk::write_vtk;

/// A file-name-safe version of a user-supplied name: ASCII letters, digits,
/// `-` and `_` are kept, everything else becomes `_`.
pub(crate) fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// An optional figure in a table cell, `–` when absent.
pub(crate) fn fmt_opt(v: Option<f64>) -> String {
    v.map_or("–".into(), |c| format!("{c:.4}"))
}

/// "N of M points have a non-finite loss …" when some of `values` are
/// NaN or infinite (drawn as gaps), for figure captions.
pub(crate) fn non_finite_note(values: &[f64]) -> String {
    match values.iter().filter(|v| !v.is_finite()).count() {
        0 => String::new(),
        n => format!(
            "; {n} of {} points have a non-finite loss (NaN or ±∞) and are left out",
            values.len()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_file_stems() {
        assert_eq!(sanitize("filter-2d"), "filter-2d");
        assert_eq!(sanitize("a b/<c>.d"), "a_b__c__d");
    }

    #[test]
    fn non_finite_values_are_counted() {
        assert_eq!(non_finite_note(&[1.0, 2.0]), "");
        let note = non_finite_note(&[1.0, f64::NAN, f64::INFINITY, 0.5]);
        assert!(note.contains("2 of 4 points"), "{note}");
        assert_eq!(fmt_opt(None), "–");
        assert_eq!(fmt_opt(Some(0.5)), "0.5000");
    }
}
