//! Experiment 3 (§6): depth and skip connections.

use std::path::Path;

use crate::error::{Error, Result};

use super::arch::{arch_runs, ArchSummary};
use super::train::Arch;
use super::Scale;

/// Experiment 3 (§6): conv ResNets of depth 8, 14 and 20 (or others) on the digits
/// (1 × 8 × 8), with and without skip connections; filter-normalized 2-D
/// surfaces around each minimizer, and |λmin/λmax| maps (3 × 3, 256
/// samples) for the deepest pair. `blocks`: blocks per stage of each depth
/// (depth 6n + 2; `[1, 2, 3]` for 8, 14, 20).
pub fn depth(out: &Path, scale: &Scale, blocks: &[usize]) -> Result<ArchSummary> {
    if blocks.is_empty() || blocks.contains(&0) {
        return Err(Error::invalid("blocks", "expected one or more counts ≥ 1"));
    }
    let archs: Vec<Arch> = blocks
        .iter()
        .flat_map(|&n| [true, false].map(|skip| Arch::ResNet { n, width: 1, skip }))
        .collect();
    let deepest = [archs.len() - 2, archs.len() - 1];
    arch_runs(out, scale, &archs, &deepest)
}
