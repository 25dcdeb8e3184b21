//! # tch-landscape
//!
//! Record the parameter trajectory of a [`tch`] training run and analyse its
//! loss landscape, after "Visualizing the Loss Landscape of Neural Nets"
//! (Li, Xu, Taylor, Studer, Goldstein, NeurIPS 2018).
//!
//! Attach the hook to an existing loop:
//!
//! ```no_run
//! # fn main() -> tch_landscape::Result<()> {
//! # let vs = tch::nn::VarStore::new(tch::Device::Cpu);
//! let mut rec = tch_landscape::Recorder::builder("runs/mlp").build(&vs)?; // θ₀
//! for epoch in 1..=10u64 {
//!     // ... the user's own training code ...
//!     rec.on_epoch_end(epoch, &[("train_loss", 0.1)])?;
//! }
//! rec.finish()?;
//! # Ok(()) }
//! ```
//!
//! Then read it back with [`Run::open`], or export it with
//! `landscape export runs/mlp` (Parquet for pyarrow, polars, DuckDB).
//! Checkpoints saved by another program (one safetensors file per epoch)
//! become a run with [`import`] (`landscape import`).
//!
//! Data flows one way: training loop → [`Recorder`] → writer thread → run
//! directory ([`store`]) → analysis → results.
#![warn(missing_docs)]

pub mod analysis;
#[cfg(feature = "mpi")]
pub mod distributed;
pub mod error;
pub mod import;
pub mod recorder;
pub mod report;
pub mod script;
pub mod store;
pub mod tensor;

// Applications built on the library, behind cargo features so that a library
// user pulls neither their code nor 1.6 MB of embedded data.
#[cfg(feature = "data")]
pub mod data;
#[cfg(feature = "data")]
pub mod demo;
#[cfg(feature = "experiments")]
pub mod experiments;
#[cfg(feature = "data")]
pub mod models;

pub use error::{Error, Result};
pub use recorder::{Durability, Recorder, RecorderBuilder, RunSummary};
pub use script::ScriptModel;
pub use store::manifest::{Manifest, Role, StorageDtype, TensorInfo};
pub use store::run::{Run, Selection};
