//! Analyses of a recorded run or a live model: directions, loss surfaces,
//! evaluation and sharpness figures.

pub mod animate;
pub mod bn;
pub mod connect;
pub mod directions;
pub mod evaluator;
pub mod grid;
pub mod hessian;
pub mod model_check;
pub mod params;
pub mod pca;
pub mod shard;
pub mod sharpness;
pub mod supervised;
pub mod surface;
