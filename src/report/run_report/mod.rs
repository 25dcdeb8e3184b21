//! `landscape report RUN_DIR`: everything known about a run on one page.
//!
//! Reads the run directory and the analyses stored beside it by convention:
//! `RUN_DIR/surfaces/NAME/` (1-D and 2-D surfaces, interpolations, PCA-plane
//! surfaces), `RUN_DIR/pca/`, `RUN_DIR/curvature/NAME/` and
//! `RUN_DIR/connect/NAME/`, each through the
//! loader of the module that wrote it. A section whose data is absent says
//! so and how to compute it. One file per section:
//!
//! | section | file | paper |
//! |---|---|---|
//! | run, metadata, tensors | `overview.rs` | |
//! | training curves | `training.rs` | |
//! | weight norm and histograms | `weights.rs` | Fig. 2b, 2c |
//! | 1-D slices, 2-D contours and heat maps, 3-D view | `surfaces.rs` | Figs. 1, 2a, 3, 5 |
//! | optimizer path and explained variance | `pca.rs` | Fig. 9 |
//! | curvature maps, Hessian at a point | `curvature.rs` | Fig. 7 |
//! | sharpness table | `sharpness.rs` | |
//! | curve vs line between two models | `connect.rs` | (Garipov et al. 2018) |

mod connect;
mod curvature;
mod over_training;
mod overview;
mod pca;
mod sharpness;
pub(crate) use sharpness::reference_cell;
pub(crate) mod surfaces;
mod training;
mod weights;

use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::report::inputs::{list_curvature_maps, list_point_hessians, list_surfaces, read_pca};
use crate::report::metrics::Metrics;
use crate::report::output::Output;
use crate::store::run::Run;

pub use crate::report::options::ReportOptions;

pub use crate::store::run::{CURVATURE_DIR, PCA_DIR, SURFACES_DIR};

/// Writes the report of `run_dir` into `opts.out` (default
/// `RUN_DIR/report`): `index.html`, self-contained, with every figure also
/// as PNG and SVG beside it. Returns the path of `index.html`.
pub fn write_report(run_dir: &Path, opts: &ReportOptions) -> Result<PathBuf> {
    opts.validate()?;
    let run = Run::open(run_dir)?;
    let dir = opts.out.clone().unwrap_or_else(|| run_dir.join("report"));
    let name = run_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut out = Output::create(&dir, &format!("Loss landscape report: {name}"))?;
    out.set_scale(opts.scale);
    overview::section(&mut out, &run);
    let metrics = Metrics::from_run(&run, &run.metrics()?, None);
    let drops = metrics.drops.epochs.clone();
    training::section(&mut out, &metrics)?;
    weights::section(&mut out, &run, &drops)?;
    let surfaces = list_surfaces(run_dir)?;
    let pca = read_pca(run_dir)?;
    surfaces::section(&mut out, &surfaces, opts, pca.as_ref())?;
    pca::section(
        &mut out,
        pca::Inputs {
            pca: pca.as_ref(),
            surfaces: &surfaces,
            drops: &drops,
            opts,
        },
    )?;
    curvature::section(
        &mut out,
        &list_curvature_maps(run_dir)?,
        &list_point_hessians(run_dir)?,
        opts,
    )?;
    sharpness::section(&mut out, &surfaces);
    connect::section(&mut out, run_dir)?;
    over_training::section(&mut out, run_dir)?;
    out.finish()
}
