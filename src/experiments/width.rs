//! Experiment 4 (§6): width.

use std::path::Path;

use crate::error::{Error, Result};

use super::arch::{arch_runs, ArchSummary};
use super::train::Arch;
use super::Scale;

/// Experiment 4 (§6): the depth-8 ResNet at width ×1, ×2, ×4 (or others; with
/// skip connections), as experiment 3 without curvature maps.
pub fn width(out: &Path, scale: &Scale, widths: &[i64]) -> Result<ArchSummary> {
    if widths.is_empty() || widths.iter().any(|&w| w < 1) {
        return Err(Error::invalid(
            "widths",
            "expected one or more multipliers ≥ 1",
        ));
    }
    let archs: Vec<Arch> = widths
        .iter()
        .map(|&width| Arch::ResNet {
            n: 1,
            width,
            skip: true,
        })
        .collect();
    arch_runs(out, scale, &archs, &[])
}
