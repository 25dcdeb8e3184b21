//! The run directory: on-disk formats, writing and reading.
//!
//! ```text
//! RUN_DIR/
//!   manifest.json          versioned manifest (schemas/manifest.json)
//!   metrics.arrow          user metrics, long form (schemas/metrics.json)
//!   snapshots/000000.arrow one Arrow IPC file per snapshot (schemas/snapshot.json)
//!   .lock                  held by the recorder while it writes
//!   export/*.parquet       written by `landscape export`
//!   surfaces/NAME/         loss surfaces (store::surface)
//!   curvature/NAME/        curvature maps (store::curvature) or the Hessian at a point (store::hessian)
//!   pca/                   trajectory PCA (store::pca)
//! ```
//!
//! Data files of the user's own model: [`dataset`] (safetensors, npz).
//! Result directories of the analyses: [`surface`] (loss surfaces and the
//! curvature maps computed on them).

pub mod animation;
pub mod connect;
pub mod curvature;
pub mod dataset;
pub(crate) mod directions;
pub mod export;
pub mod fsutil;
#[cfg(test)]
mod fuzz;
pub mod hessian;
pub mod manifest;
pub mod metrics;
pub(crate) mod pca;
pub mod run;
pub mod snapshot;
pub mod surface;
pub(crate) mod table;

pub use fsutil::{is_temp_name, LOCK_FILE};
