//! What experiments 3 and 4 (§6) share: networks trained alike on the
//! digits, each with a filter-normalized 2-D surface around its minimizer
//! and, for some, a |λmin/λmax| map.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::Result;
use crate::report::run_report::SURFACES_DIR;

use super::surfaces::{filter_plane, mean_abs_ratio, plane, train_sharpness};
use super::train::{Arch, Data, Setup, Trained};
use super::{reports, write_summary, Scale};

/// One network of experiments 3 and 4.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ArchRow {
    /// The run.
    pub run: Trained,
    /// Filter-normalized 2-D sharpness (train split): curvature x, y and
    /// the area of {L < L* + 0.1} in the [-1, 1]² plane (4 = the whole grid).
    pub curvature: (f64, f64),
    /// Area of the sub-level set.
    pub area: f64,
    /// Largest loss increase over the grid.
    pub max_increase: f64,
    /// Mean |λmin/λmax| over the curvature map (deepest pair only).
    pub mean_abs_ratio: Option<f64>,
}

/// Results of experiments 3 or 4.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ArchSummary {
    /// Sizes used.
    pub scale: Scale,
    /// One row per network.
    pub rows: Vec<ArchRow>,
}

impl ArchSummary {
    /// The rows as a Markdown table (one line per network, newline-terminated).
    pub fn markdown(&self) -> String {
        let mut t = String::from(
            "| network | test error % | train loss | curvature x / y | area(L < L*+0.1) of 4 | max ΔL | mean abs(λmin/λmax) |\n\
             |---|---|---|---|---|---|---|\n",
        );
        for r in &self.rows {
            // Writing into a String cannot fail.
            let _ = writeln!(
                t,
                "| {} | {:.2} | {:.4} | {:.2} / {:.2} | {:.3} | {:.2} | {} |",
                r.run.arch,
                r.run.test_error(),
                r.run.train_loss,
                r.curvature.0,
                r.curvature.1,
                r.area,
                r.max_increase,
                r.mean_abs_ratio.map_or("–".into(), |v| format!("{v:.3}"))
            );
        }
        t
    }
}

/// Trains each of `archs` on the digits (SGD 0.05, batch 64, weight decay
/// 5e-4, a learning-rate drop at 2/3 of the epochs) with its analyses
/// (curvature maps for the indices `curvature_for`), writes the reports, the
/// comparison and `summary.json` into `out`.
pub(crate) fn arch_runs(
    out: &Path,
    scale: &Scale,
    archs: &[Arch],
    curvature_for: &[usize],
) -> Result<ArchSummary> {
    scale.validate()?;
    let data = Data::digits()?;
    let setup = Setup {
        out,
        scale,
        data: &data,
    };
    let mut rows = Vec::new();
    let mut dirs = Vec::new();
    for (k, arch) in archs.iter().enumerate() {
        let (row, dir) = arch_run(&setup, arch, curvature_for.contains(&k))?;
        rows.push(row);
        dirs.push(dir);
    }
    reports(out, &dirs)?;
    let s = ArchSummary {
        scale: scale.clone(),
        rows,
    };
    write_summary(out, &s)?;
    Ok(s)
}

/// Trains `arch` and computes its filter-normalized plane (seed 1) and, with
/// `curvature`, the |λmin/λmax| map on the same plane.
fn arch_run(setup: &Setup<'_>, arch: &Arch, curvature: bool) -> Result<(ArchRow, PathBuf)> {
    let name = arch.name();
    let run_dir = setup.run_dir(&name);
    let cfg = setup.scale.sgd(64, 0.05, 5e-4);
    let (run, model) = setup.train(&name, arch, &cfg)?;
    let dirs = filter_plane(&model, 1)?;
    let out = run_dir.join(SURFACES_DIR).join("filter-2d");
    let r = plane(&model, &dirs, setup.scale.points_2d, &out)?;
    let s = train_sharpness(&r)?;
    let mean_abs_ratio = if curvature {
        Some(mean_abs_ratio(&model, &dirs, &run_dir)?)
    } else {
        None
    };
    let row = ArchRow {
        run,
        curvature: (
            s.curvature_x.unwrap_or(f64::NAN),
            s.curvature_y.unwrap_or(f64::NAN),
        ),
        area: s.area.unwrap_or(f64::NAN),
        max_increase: s.max_increase,
        mean_abs_ratio,
    };
    Ok((row, run_dir))
}
