//! The paper's experiments at small scale on real data (UCI digits, 10,000
//! MNIST digits), shared by the `exp_*` examples (full size, minutes on 2
//! cores) and the test suite (smoke size, seconds). Every function trains
//! its runs with the recording hook, computes its analyses with the library,
//! writes the runs' reports and a comparison report, and returns its figures
//! (also saved as `summary.json`), so docs/EXPERIMENTS.md quotes only what
//! the code measured. The library prints nothing: the examples print the
//! returned figures; progress goes to `tracing`.
//!
//! One experiment per file (`batch_size`, `scale_invariance`, `depth`,
//! `width`, with experiment 1's `interpolation`); `train` holds the shared
//! set-up (data, networks, the training of a run), `surfaces` the shared
//! slices, planes and curvature maps, `arch` what experiments 3 and 4 share.

mod arch;
mod batch_size;
mod depth;
mod interpolation;
mod scale_invariance;
mod surfaces;
mod train;
mod width;

pub use arch::{ArchRow, ArchSummary};
pub use batch_size::{batch_size, BatchRow, BatchSummary};
pub use depth::depth;
pub use interpolation::Interpolation;
pub use scale_invariance::{scale_invariance, ScaleSummary};
pub use surfaces::Slice;
pub use train::Trained;
pub use width::width;

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::demo::TrainConfig;
use crate::error::{Error, Result};
use crate::report::compare::write_comparison;
use crate::report::run_report::{write_report, ReportOptions};

/// Sizes of an experiment: `full` for the examples, `smoke` for the tests.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Scale {
    /// Training epochs.
    pub epochs: u64,
    /// Points of 1-D slices and interpolations (at least 3).
    pub points_1d: usize,
    /// Points per axis of 2-D surfaces (at least 3).
    pub points_2d: usize,
    /// Training samples of MNIST (experiments 1, 5, 6).
    pub mnist_train: usize,
    /// Test samples of MNIST.
    pub mnist_test: usize,
    /// Direction seeds for experiment 6.
    pub seeds: usize,
}

impl Scale {
    /// The examples' size (minutes on 2 cores).
    pub fn full() -> Scale {
        Scale {
            epochs: 40,
            points_1d: 41,
            points_2d: 21,
            mnist_train: 4000,
            mnist_test: 1000,
            seeds: 5,
        }
    }

    /// The tests' size (seconds).
    pub fn smoke() -> Scale {
        Scale {
            // 3 epochs: the trajectory PCA needs two non-zero differences.
            epochs: 3,
            points_1d: 5,
            points_2d: 3,
            mnist_train: 300,
            mnist_test: 100,
            seeds: 2,
        }
    }

    /// Checks the sizes every experiment needs: an epoch, and 3 points per
    /// axis (a centre with both neighbours).
    fn validate(&self) -> Result<()> {
        let at_least = |option: &str, value: usize, min: usize| {
            if value < min {
                return Err(Error::invalid(
                    format!("scale.{option}"),
                    format!("expected at least {min}, got {value}"),
                ));
            }
            Ok(())
        };
        at_least("epochs", self.epochs as usize, 1)?;
        at_least("points_1d", self.points_1d, 3)?;
        at_least("points_2d", self.points_2d, 3)
    }

    /// SGD with momentum 0.9 and seed 0 for `epochs`, with the learning rate
    /// dropped after 2/3 of them (at least after the first).
    fn sgd(&self, batch: i64, lr: f64, weight_decay: f64) -> TrainConfig {
        TrainConfig {
            seed: 0,
            epochs: self.epochs,
            batch,
            lr,
            momentum: 0.9,
            weight_decay,
            lr_drops: vec![(self.epochs * 2 / 3).max(1)],
        }
    }
}

/// Writes `value` as `out/summary.json`.
fn write_summary<T: Serialize>(out: &Path, value: &T) -> Result<()> {
    crate::store::fsutil::create_output_dir(out)?;
    let path = out.join("summary.json");
    let bytes = serde_json::to_vec_pretty(value).map_err(|source| Error::Json {
        path: path.clone(),
        source,
    })?;
    std::fs::write(&path, bytes).map_err(|e| Error::io("writing", &path, e))
}

/// Writes the report of each of `runs` and their comparison into
/// `out/compare`; returns the comparison's page.
fn reports(out: &Path, runs: &[PathBuf]) -> Result<PathBuf> {
    for r in runs {
        write_report(r, &ReportOptions::default())?;
    }
    write_comparison(runs, &out.join("compare"), &ReportOptions::default())
}

/// Median and (min, max) of `v` (NaN for none).
pub fn median_spread(v: &[f64]) -> (f64, f64, f64) {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    if s.is_empty() {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    let m = if s.len() % 2 == 1 {
        s[s.len() / 2]
    } else {
        0.5 * (s[s.len() / 2 - 1] + s[s.len() / 2])
    };
    (m, s[0], s[s.len() - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_spread_of_odd_even_and_empty_sets() {
        assert_eq!(median_spread(&[3.0, 1.0, 2.0]), (2.0, 1.0, 3.0));
        assert_eq!(median_spread(&[4.0, 1.0, 2.0, 3.0]), (2.5, 1.0, 4.0));
        assert!(median_spread(&[]).0.is_nan());
    }

    #[test]
    fn scale_validation_names_the_option() {
        assert!(Scale::smoke().validate().is_ok() && Scale::full().validate().is_ok());
        let e = Scale {
            points_1d: 1,
            ..Scale::smoke()
        }
        .validate()
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("scale.points_1d") && e.contains("at least 3"),
            "{e}"
        );
        let cfg = Scale::full().sgd(64, 0.05, 5e-4);
        assert_eq!((cfg.lr_drops, cfg.momentum), (vec![26], 0.9));
    }
}
