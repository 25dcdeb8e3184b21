//! What a report reads beside a run, each through the loader of the module
//! that wrote it: surfaces ([`SurfaceResult::load`]), curvature maps
//! ([`CurvatureMap::load`]) and the trajectory PCA ([`PcaSummary::load`]);
//! and the learning-rate drops in the recorded metrics.

use std::path::{Path, PathBuf};

use crate::analysis::hessian::{CurvatureMap, CURVATURE_FILE};
use crate::analysis::pca::{PcaSummary, SUMMARY_FILE};
use crate::analysis::surface::{SurfaceResult, RESULT_FILE};
use crate::error::{Error, Result};
use crate::store::hessian::{read_hessian, HessianRow, HESSIAN_FILE};
use crate::store::run::{CURVATURE_DIR, PCA_DIR, SURFACES_DIR};

/// The sub-directories of `dir` holding `marker`, sorted by name, each
/// loaded by `load`. A missing `dir` holds none.
pub(crate) fn load_subdirs<T>(
    dir: &Path,
    marker: &str,
    load: impl Fn(&Path) -> Result<T>,
) -> Result<Vec<(String, T)>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
            ) =>
        {
            return Ok(Vec::new())
        }
        Err(e) => return Err(Error::io("listing", dir, e)),
    };
    let mut found: Vec<(String, PathBuf)> = entries
        .filter_map(|e| e.ok())
        // Anything under the marker's name counts (a FIFO or a dangling
        // link too), so its loader refuses it by name instead of the
        // report leaving the analysis out without a word.
        .filter(|e| std::fs::symlink_metadata(e.path().join(marker)).is_ok())
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .collect();
    found.sort();
    found
        .into_iter()
        .map(|(name, path)| Ok((name, load(&path)?)))
        .collect()
}

/// The finished surfaces under `RUN_DIR/surfaces`, by name.
pub(crate) fn list_surfaces(run_dir: &Path) -> Result<Vec<(String, SurfaceResult)>> {
    load_subdirs(&run_dir.join(SURFACES_DIR), RESULT_FILE, |d| {
        SurfaceResult::load(d)
    })
}

/// The finished curvature maps under `RUN_DIR/curvature`, by name.
pub(crate) fn list_curvature_maps(run_dir: &Path) -> Result<Vec<(String, CurvatureMap)>> {
    load_subdirs(&run_dir.join(CURVATURE_DIR), CURVATURE_FILE, |d| {
        CurvatureMap::load(d)
    })
}

/// The Hessians computed at one point (`landscape curvature` without
/// `--map`) under `RUN_DIR/curvature`, by name: rows and settings.
pub(crate) type PointHessian = (Vec<HessianRow>, serde_json::Value);

/// The point Hessians under `RUN_DIR/curvature`, by name.
pub(crate) fn list_point_hessians(run_dir: &Path) -> Result<Vec<(String, PointHessian)>> {
    load_subdirs(&run_dir.join(CURVATURE_DIR), HESSIAN_FILE, read_hessian)
}

/// `RUN_DIR/pca/pca.json`, when present.
pub(crate) fn read_pca(run_dir: &Path) -> Result<Option<PcaSummary>> {
    let path = run_dir.join(PCA_DIR).join(SUMMARY_FILE);
    if !path.exists() {
        return Ok(None);
    }
    PcaSummary::load(&path).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_analyses_are_empty_not_errors() {
        let dir = tempfile::tempdir().unwrap();
        assert!(list_surfaces(dir.path()).unwrap().is_empty());
        assert!(list_curvature_maps(dir.path()).unwrap().is_empty());
        assert!(read_pca(dir.path()).unwrap().is_none());
        // A directory without the marker file is not a result.
        std::fs::create_dir_all(dir.path().join(SURFACES_DIR).join("unfinished")).unwrap();
        assert!(list_surfaces(dir.path()).unwrap().is_empty());
    }
}
