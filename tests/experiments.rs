//! Smoke versions of the experiments of docs/EXPERIMENTS.md (tiny epochs and
//! grids), so the examples cannot rot: each runs end to end, writes its runs,
//! reports and summary, and the properties that hold at any size are checked
//! (scale invariance exactly, finite figures, files in place).

mod common;

use tch_landscape::experiments::{batch_size, depth, scale_invariance, width, Scale};

#[test]
fn scale_invariance_smoke() {
    let tmp = common::tempdir();
    let s = scale_invariance(tmp.path(), &Scale::smoke()).unwrap();
    // Rescaling fc1 by 10 and fc2 by 1/10 keeps the function of a ReLU net.
    assert!(s.max_rel_logit_diff < 1e-4, "{}", s.max_rel_logit_diff);
    // Filter-normalized slices are the same up to float rounding; the
    // un-normalized ones are not.
    assert!(s.filter_max_diff < 1e-3, "filter: {}", s.filter_max_diff);
    assert!(
        s.raw_max_diff > 100.0 * s.filter_max_diff.max(1e-6),
        "raw {} vs filter {}",
        s.raw_max_diff,
        s.filter_max_diff
    );
    assert!(tmp.path().join("summary.json").exists());
    assert!(tmp.path().join("original/report/index.html").exists());
}

#[test]
fn batch_size_smoke() {
    let tmp = common::tempdir();
    let scale = Scale::smoke();
    let s = batch_size(tmp.path(), &scale).unwrap();
    assert_eq!(s.rows.len(), 4);
    assert_eq!(s.interpolations.len(), 2);
    for r in &s.rows {
        assert!(r.run.test_loss.is_finite() && r.run.weight_norm > 0.0);
        assert_eq!(r.seed_widths.len(), scale.seeds);
        assert!(r.pca_explained_2 > 0.0 && r.pca_explained_2 <= 1.0 + 1e-9);
        assert!(r.filter.width > 0.0 && r.raw.width > 0.0);
        let run = tmp.path().join(&r.run.name);
        for sub in [
            "surfaces/filter-2d/surface.parquet",
            "surfaces/pca-plane/surface.parquet",
            "pca/pca.json",
            "report/index.html",
        ] {
            assert!(run.join(sub).exists(), "{sub} missing for {}", r.run.name);
        }
    }
    for i in &s.interpolations {
        assert!(i.width_small_batch > 0.0 && i.width_large_batch > 0.0);
    }
    assert!(tmp.path().join("compare/index.html").exists());
}

#[test]
fn depth_and_width_smoke() {
    let tmp = common::tempdir();
    let scale = Scale::smoke();
    let d = depth(&tmp.path().join("depth"), &scale, &[1]).unwrap();
    assert_eq!(d.rows.len(), 2);
    assert_eq!(d.rows[0].run.arch, "resnet-8");
    assert_eq!(d.rows[1].run.arch, "resnet-8-noshort");
    for r in &d.rows {
        let ratio = r
            .mean_abs_ratio
            .expect("the deepest pair has curvature maps");
        assert!(ratio.is_finite() && ratio >= 0.0);
        assert!(r.area > 0.0 && r.area <= 4.0 + 1e-9);
    }
    let w = width(&tmp.path().join("width"), &scale, &[1, 2]).unwrap();
    assert_eq!(w.rows.len(), 2);
    assert_eq!(w.rows[1].run.arch, "resnet-8-w2");
    assert!(tmp.path().join("width/compare/index.html").exists());
}
