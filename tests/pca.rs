//! Trajectory PCA on real recorded runs: every trajectory here is written by
//! the Recorder from a VarStore whose variables the test sets by hand (or
//! trains), read back by `Run`, and analysed by `TrajectoryPca`. Checked
//! against exact geometry (a line, a plane), an in-memory SVD, and
//! scikit-learn values produced by `tests/fixtures/pca/generate.py`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use nalgebra::DMatrix;
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};
use serde_json::Value;
use tch::nn::{self, OptimizerConfig};
use tch::{Device, Kind, Tensor};

use common::*;
use tch_landscape::analysis::directions::{DirectionKind, Directions};
use tch_landscape::analysis::evaluator::ClassifierEvaluator;
use tch_landscape::analysis::pca::{
    plane_check, read_path_table, GramPrecision, PathPoint, PcaResult, PcaSummary, SignRule,
    TrajectoryPca,
};
use tch_landscape::data::digits::Digits;
use tch_landscape::models::Mlp;
use tch_landscape::{Error, Recorder, Run, Selection};

/// Records `snapshots` (per snapshot, the values of each tensor in the
/// order of `tensors`, which must be sorted by name) through the Recorder.
fn record(dir: &Path, tensors: &[(&str, &[i64])], snapshots: &[Vec<Vec<f32>>]) -> Run {
    let vs = nn::VarStore::new(Device::Cpu);
    let vars: Vec<Tensor> = tensors
        .iter()
        .map(|(name, shape)| match name.rsplit_once('.') {
            Some((prefix, leaf)) => (vs.root() / prefix).var(leaf, shape, nn::Init::Const(0.0)),
            None => vs.root().var(name, shape, nn::Init::Const(0.0)),
        })
        .collect();
    let set = |values: &[Vec<f32>]| {
        tch::no_grad(|| {
            for (v, x) in vars.iter().zip(values) {
                v.shallow_clone()
                    .copy_(&Tensor::from_slice(x).reshape(v.size()));
            }
        })
    };
    set(&snapshots[0]);
    let mut rec = Recorder::builder(dir)
        .fsync(false)
        .build(&vs)
        .expect("recorder");
    for (epoch, s) in snapshots.iter().enumerate().skip(1) {
        set(s);
        rec.on_epoch_end(epoch as u64, &[]).expect("snapshot");
    }
    rec.finish().expect("finish");
    Run::open(dir).expect("open run")
}

fn gaussian(rng: &mut rand_chacha::ChaCha8Rng, n: usize, scale: f32) -> Vec<f32> {
    (0..n)
        .map(|_| {
            let z: f32 = StandardNormal.sample(rng);
            z * scale
        })
        .collect()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn norm(a: &[f64]) -> f64 {
    dot(a, a).sqrt()
}

fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

#[track_caller]
fn assert_close(got: f64, want: f64, tol: f64, what: &str) {
    assert!(
        (got - want).abs() <= tol * want.abs().max(1.0),
        "{what}: got {got}, want {want} (tolerance {tol})"
    );
}

#[track_caller]
fn assert_rel(got: &[f64], want: &[f64], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * w.abs(),
            "{what}[{i}]: got {g}, want {w} (relative tolerance {tol})"
        );
    }
}

/// The selected values of every snapshot of `run`, float64.
fn flat(run: &Run, sel: &Selection) -> Vec<Vec<f64>> {
    (0..run.len())
        .map(|i| f64s(&run.flat_f32(i, sel).unwrap()))
        .collect()
}

/// ‖d − Σ⟨d, pc⟩pc‖ / ‖d‖ over the given orthonormal components.
fn off_span(d: &[f64], pcs: &[Vec<f64>]) -> f64 {
    let mut r = d.to_vec();
    for pc in pcs {
        let c = dot(d, pc);
        r.iter_mut().zip(pc).for_each(|(x, p)| *x -= c * p);
    }
    norm(&r) / norm(d)
}

/// The exact variant: float64 products, signs from the components (the
/// conventions the references below use); the default's agreement with it
/// is `the_default_one_pass_pca_agrees_with_the_exact_one`.
fn exact() -> tch_landscape::analysis::pca::PcaBuilder {
    TrajectoryPca::builder()
        .precision(GramPrecision::Float64)
        .signs(SignRule::Components)
}

fn fit(run: &Run, k: usize, chunk: usize, sel: Selection) -> PcaResult {
    exact()
        .components(k)
        .chunk(chunk)
        .selection(sel)
        .build()
        .expect("valid settings")
        .fit(run)
        .expect("pca")
}

fn components_f64(pca: &PcaResult, run: &Run) -> Vec<Vec<f64>> {
    pca.components(run)
        .unwrap()
        .iter()
        .map(|c| f64s(c))
        .collect()
}

const LINE_TENSORS: [(&str, &[i64]); 2] = [("lin.bias", &[3]), ("lin.weight", &[3, 4])];

/// Weights a + tᵢ·d (exact in float32), biases moving at random.
fn line_run(dir: &Path) -> (Run, Vec<f64>) {
    let a: Vec<f32> = (0..12).map(|j| (j as f32 - 5.0) / 8.0).collect();
    let d: Vec<f32> = [3, -1, 2, 0, 1, 4, -2, 1, 1, -3, 2, 5]
        .iter()
        .map(|&x| x as f32 / 4.0)
        .collect();
    let ts = [0.0f32, 1.0, 3.0, 4.0, 6.0, 7.0, 9.0];
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let snaps: Vec<Vec<Vec<f32>>> = ts
        .iter()
        .map(|&t| {
            let w = a.iter().zip(&d).map(|(a, d)| a + t * d).collect();
            vec![gaussian(&mut rng, 3, 1.0), w]
        })
        .collect();
    (record(dir, &LINE_TENSORS, &snaps), f64s(&d))
}

#[test]
fn line_trajectory_has_one_component_along_the_line() {
    let tmp = tempdir();
    let (run, d) = line_run(&tmp.path().join("run"));
    for k in [1, 2] {
        let pca = fit(&run, k, 4096, Selection::Weights);
        assert_close(pca.explained_variance_ratio[0], 1.0, 1e-6, "ratio of PC1");
        // Exactly collinear: PC2 does not exist, it is not made up.
        assert_eq!(pca.rank, 1);
        assert_eq!(pca.n_components(), 1);
        assert_eq!(pca.cumulative_ratio.len(), 1);
        let pcs = components_f64(&pca, &run);
        assert_close(norm(&pcs[0]), 1.0, 1e-6, "‖pc1‖");
        let cos = dot(&pcs[0], &d) / norm(&d);
        assert_close(cos.abs(), 1.0, 1e-6, "|cos(pc1, line)|");
        // Coordinates: (tᵢ − t_final)·‖d‖ up to the component's sign.
        let ts = [0.0, 1.0, 3.0, 4.0, 6.0, 7.0, 9.0];
        for (p, t) in pca.path.iter().zip(ts) {
            assert_close(p.x(), (t - 9.0) * norm(&d) * cos.signum(), 1e-6, "x");
            assert_eq!(p.y(), 0.0);
            assert!(p.residual < 1e-6, "residual {}", p.residual);
        }
        assert_eq!(pca.path.last().unwrap().x(), 0.0);
        // A one-component plane gives a line of directions.
        assert_eq!(pca.directions(&run, false).unwrap().len(), 1);
    }
}

#[test]
fn plane_trajectory_is_spanned_by_two_components() {
    let tmp = tempdir();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2);
    let tensors: [(&str, &[i64]); 3] = [
        ("a.bias", &[6]),
        ("a.weight", &[6, 5]),
        ("b.weight", &[4, 6]),
    ];
    let a: Vec<f32> = gaussian(&mut rng, 54, 1.0);
    let d1 = gaussian(&mut rng, 54, 0.3);
    let d2 = gaussian(&mut rng, 54, 0.3);
    let st = [
        (0.0f32, 0.0f32),
        (1.0, 2.0),
        (2.0, 1.0),
        (3.0, 4.0),
        (4.0, 2.0),
        (5.0, 5.0),
        (6.0, 3.0),
        (7.0, 3.5),
    ];
    let snaps: Vec<Vec<Vec<f32>>> = st
        .iter()
        .map(|&(s, t)| {
            let w: Vec<f32> = (0..54).map(|j| a[j] + s * d1[j] + t * d2[j]).collect();
            vec![
                gaussian(&mut rng, 6, 1.0),
                w[..30].to_vec(),
                w[30..].to_vec(),
            ]
        })
        .collect();
    let run = record(&tmp.path().join("run"), &tensors, &snaps);
    let pca = fit(&run, 3, 4096, Selection::Weights);
    assert_close(
        pca.explained_variance_ratio[0] + pca.explained_variance_ratio[1],
        1.0,
        1e-6,
        "PC1 + PC2",
    );
    assert!(pca.plane_ratio() > 1.0 - 1e-6);
    let pcs = components_f64(&pca, &run);
    assert_close(dot(&pcs[0], &pcs[1]), 0.0, 1e-6, "⟨pc1, pc2⟩");
    for (k, pc) in pcs.iter().enumerate().take(2) {
        assert_close(norm(pc), 1.0, 1e-6, &format!("‖pc{}‖", k + 1));
    }
    // The float32 rounding of the snapshots is off the plane, and nothing else.
    for (name, d) in [("d1", &d1), ("d2", &d2)] {
        let r = off_span(&f64s(d), &pcs[..2]);
        assert!(
            r < 1e-6,
            "{name} is {r} (relative) off the span of PC1 and PC2"
        );
    }
    let x = flat(&run, &Selection::Weights);
    let fin = x.last().unwrap();
    for (p, xi) in pca.path.iter().zip(&x) {
        assert!(
            p.residual < 1e-6,
            "snapshot {} is {} off the plane",
            p.snapshot,
            p.residual
        );
        let delta: Vec<f64> = xi.iter().zip(fin).map(|(a, b)| a - b).collect();
        // (The components come back as float32.)
        assert_close(p.x(), dot(&delta, &pcs[0]), 1e-6, "x = ⟨Δ, pc1⟩");
        assert_close(p.y(), dot(&delta, &pcs[1]), 1e-6, "y = ⟨Δ, pc2⟩");
    }
}

#[test]
fn matches_an_in_memory_svd_on_random_data() {
    let tmp = tempdir();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    let tensors: [(&str, &[i64]); 3] = [
        ("l1.bias", &[5]),
        ("l1.weight", &[5, 7]),
        ("l2.weight", &[3, 5]),
    ];
    let snaps: Vec<Vec<Vec<f32>>> = (0..9)
        .map(|_| {
            vec![
                gaussian(&mut rng, 5, 1.0),
                gaussian(&mut rng, 35, 1.0),
                gaussian(&mut rng, 15, 1.0),
            ]
        })
        .collect();
    let run = record(&tmp.path().join("run"), &tensors, &snaps);
    let pca = fit(&run, 4, 4096, Selection::All);
    assert_eq!(pca.numel, 55);

    // Reference: SVD of the centred 8 × 55 matrix.
    let x = flat(&run, &Selection::All);
    let (m, p) = (x.len() - 1, x[0].len());
    let fin = &x[m];
    let mut mat = DMatrix::from_fn(m, p, |i, j| x[i][j] - fin[j]);
    for j in 0..p {
        let mean = mat.column(j).mean();
        mat.column_mut(j).add_scalar_mut(-mean);
    }
    let svd = mat.clone().svd(false, true);
    let mut order: Vec<usize> = (0..svd.singular_values.len()).collect();
    order.sort_by(|&a, &b| svd.singular_values[b].total_cmp(&svd.singular_values[a]));
    let vt = svd.v_t.as_ref().unwrap();
    let var: Vec<f64> = order
        .iter()
        .map(|&i| svd.singular_values[i].powi(2) / (m - 1) as f64)
        .collect();
    let total: f64 = var.iter().sum();
    assert_eq!(pca.rank, m - 1, "8 random rows, centred: rank 7");
    assert_rel(
        &pca.explained_variance,
        &var[..4],
        1e-6,
        "explained variance",
    );
    assert_rel(&pca.spectrum, &var[..m - 1], 1e-6, "spectrum");
    let ratio: Vec<f64> = var.iter().map(|v| v / total).collect();
    assert_rel(&pca.explained_variance_ratio, &ratio[..4], 1e-6, "ratio");
    assert_close(
        *pca.cumulative_ratio.last().unwrap(),
        1.0,
        1e-12,
        "cumulative ratio",
    );
    assert_close(pca.total_variance, total, 1e-9, "total variance");

    let pcs = components_f64(&pca, &run);
    for k in 0..4 {
        let want: Vec<f64> = vt.row(order[k]).iter().copied().collect();
        let s = dot(&pcs[k], &want).signum();
        for j in 0..p {
            assert!(
                (pcs[k][j] - s * want[j]).abs() < 1e-6,
                "pc{} [{j}] {} vs {}",
                k + 1,
                pcs[k][j],
                s * want[j]
            );
        }
        // The sign convention: the largest |coordinate| is positive.
        let big = pcs[k]
            .iter()
            .copied()
            .fold(0.0f64, |b, v| if v.abs() > b.abs() { v } else { b });
        assert!(big > 0.0, "pc{} has its largest coordinate negative", k + 1);
        for (pt, xi) in pca.path.iter().zip(&x) {
            let delta: Vec<f64> = xi.iter().zip(fin).map(|(a, b)| a - b).collect();
            assert_close(pt.coords[k], dot(&delta, &pcs[k]), 1e-6, "coordinate");
        }
    }
    // Residuals: distance to the span of PC1 and PC2.
    for (pt, xi) in pca.path.iter().zip(&x).take(m) {
        let delta: Vec<f64> = xi.iter().zip(fin).map(|(a, b)| a - b).collect();
        assert_close(pt.residual, off_span(&delta, &pcs[..2]), 1e-6, "residual");
    }
}

fn fixture_path() -> PathBuf {
    repo_root().join("tests/fixtures/pca/sklearn.json")
}

fn f64_list(v: &Value) -> Vec<f64> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number"))
        .collect()
}

#[test]
fn matches_scikit_learn_on_the_committed_fixture() {
    let doc: Value = serde_json::from_slice(&std::fs::read(fixture_path()).unwrap()).unwrap();
    let tensors: Vec<(String, Vec<i64>)> = doc["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let shape = t["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_i64().unwrap())
                .collect();
            (t["name"].as_str().unwrap().to_string(), shape)
        })
        .collect();
    let snaps: Vec<Vec<Vec<f32>>> = doc["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            tensors
                .iter()
                .map(|(n, _)| f64_list(&s[n]).iter().map(|&v| v as f32).collect())
                .collect()
        })
        .collect();
    let spec: Vec<(&str, &[i64])> = tensors
        .iter()
        .map(|(n, s)| (n.as_str(), s.as_slice()))
        .collect();
    let tmp = tempdir();
    let run = record(&tmp.path().join("run"), &spec, &snaps);
    let pca = fit(&run, 2, 5, Selection::Weights);
    let want = &doc["pca"];

    assert_rel(
        &pca.explained_variance,
        &f64_list(&want["explained_variance"]),
        1e-6,
        "explained_variance_",
    );
    assert_rel(
        &pca.explained_variance_ratio,
        &f64_list(&want["explained_variance_ratio"]),
        1e-6,
        "explained_variance_ratio_",
    );
    let cum = f64_list(&want["cumulative_ratio"]);
    assert_rel(
        &pca.cumulative_ratio,
        &cum[..pca.rank],
        1e-6,
        "cumulative ratio",
    );
    let pcs = components_f64(&pca, &run);
    for (k, want_pc) in want["components"].as_array().unwrap().iter().enumerate() {
        let want_pc = f64_list(want_pc);
        let s = dot(&pcs[k], &want_pc).signum();
        assert_eq!(
            s,
            1.0,
            "pc{}: sign differs from sklearn's svd_flip convention",
            k + 1
        );
        for (j, (g, w)) in pcs[k].iter().zip(&want_pc).enumerate() {
            assert!(
                (g - s * w).abs() < 1e-6,
                "components_[{k}][{j}]: {g} vs {w}"
            );
        }
    }
    for (pt, w) in pca.path.iter().zip(want["coords"].as_array().unwrap()) {
        let w = f64_list(w);
        assert_close(pt.x(), w[0], 1e-6, "x");
        assert_close(pt.y(), w[1], 1e-6, "y");
    }
}

/// The committed fixture is what its generator writes (skips when the test
/// Python lacks scikit-learn).
#[test]
fn committed_fixture_is_reproduced_by_its_generator() {
    let python = python();
    let ok = Command::new(&python)
        .args(["-c", "import sklearn, numpy"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        eprintln!(
            "skipping: {} has no scikit-learn (./landscape-dev setup installs it)",
            python.display()
        );
        return;
    }
    let tmp = tempdir();
    let out = tmp.path().join("sklearn.json");
    let status = Command::new(&python)
        .arg(repo_root().join("tests/fixtures/pca/generate.py"))
        .arg(&out)
        .status()
        .expect("running generate.py");
    assert!(status.success(), "generate.py failed");
    let fresh: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let committed: Value = serde_json::from_slice(&std::fs::read(fixture_path()).unwrap()).unwrap();
    assert_eq!(
        fresh["snapshots"], committed["snapshots"],
        "snapshot values differ"
    );
    for key in [
        "explained_variance",
        "explained_variance_ratio",
        "cumulative_ratio",
    ] {
        assert_rel(
            &f64_list(&fresh["pca"][key]),
            &f64_list(&committed["pca"][key]),
            1e-9,
            key,
        );
    }
}

fn random_run(dir: &Path, snapshots: usize, seed: u64) -> Run {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let tensors: [(&str, &[i64]); 4] = [
        ("fc1.bias", &[30]),
        ("fc1.weight", &[30, 16]),
        ("fc2.bias", &[10]),
        ("fc2.weight", &[10, 30]),
    ];
    let mut theta: Vec<Vec<f32>> = tensors
        .iter()
        .map(|(_, s)| gaussian(&mut rng, s.iter().product::<i64>() as usize, 0.5))
        .collect();
    let mut snaps = Vec::new();
    for _ in 0..snapshots {
        snaps.push(theta.clone());
        for t in theta.iter_mut() {
            let step = gaussian(&mut rng, t.len(), 0.05);
            t.iter_mut().zip(step).for_each(|(x, s)| *x += 0.02 + s);
        }
    }
    record(dir, &tensors, &snaps)
}

#[test]
fn chunk_size_does_not_change_the_result() {
    let tmp = tempdir();
    let run = random_run(&tmp.path().join("run"), 7, 4);
    for sel in [Selection::Weights, Selection::All] {
        let base = fit(&run, 3, 4096, sel.clone());
        let base_pcs = components_f64(&base, &run);
        for chunk in [1, 7] {
            let other = fit(&run, 3, chunk, sel.clone());
            assert_eq!(other.rank, base.rank);
            assert_rel(&other.spectrum, &base.spectrum, 1e-6, "spectrum");
            assert_rel(
                &other.cumulative_ratio,
                &base.cumulative_ratio,
                1e-6,
                "cumulative ratio",
            );
            for (a, b) in other.path.iter().zip(&base.path) {
                for (x, y) in a.coords.iter().zip(&b.coords) {
                    assert_close(
                        *x,
                        *y,
                        1e-6,
                        &format!("chunk {chunk}: coordinate of snapshot {}", a.snapshot),
                    );
                }
                assert_close(a.residual, b.residual, 1e-6, "residual");
            }
            for (a, b) in other.tensors.iter().zip(&base.tensors) {
                assert_eq!(a.name, b.name);
                assert_close(a.variance, b.variance, 1e-6, "tensor variance");
                assert_close(a.own_ratio[0], b.own_ratio[0], 1e-6, "own ratio");
                assert_close(a.share[0], b.share[0], 1e-6, "share");
            }
            for (a, b) in components_f64(&other, &run).iter().zip(&base_pcs) {
                for (x, y) in a.iter().zip(b) {
                    assert!(
                        (x - y).abs() < 1e-6,
                        "chunk {chunk}: component value {x} vs {y}"
                    );
                }
            }
        }
    }
}

#[test]
fn thread_count_changes_only_the_rounding() {
    let tmp = tempdir();
    // 41 snapshots × 4096-value chunks: large enough for threaded products.
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    let snaps: Vec<Vec<Vec<f32>>> = (0..41)
        .map(|_| vec![gaussian(&mut rng, 64 * 128, 1.0)])
        .collect();
    let run = record(&tmp.path().join("run"), &[("w.weight", &[64, 128])], &snaps);
    let build = |threads| {
        TrajectoryPca::builder()
            .threads(threads)
            .chunk(4096)
            .build()
            .unwrap()
    };
    let before = tch::get_num_threads();
    let one = build(1).fit(&run).unwrap();
    let three = build(3).fit(&run).unwrap();
    assert_eq!(
        tch::get_num_threads(),
        before,
        "the thread setting is restored"
    );
    assert_rel(&one.spectrum, &three.spectrum, 1e-5, "spectrum");
    // Random data: PC1 and PC2 are close (gap ~1 % of λ), so float32
    // rounding of ~1e-6 moves the eigenvectors by ~1e-4.
    let scale = one
        .path
        .iter()
        .map(|p| p.coords[0].abs())
        .fold(0.0, f64::max);
    for (a, b) in one.path.iter().zip(&three.path) {
        for (x, y) in a.coords.iter().zip(&b.coords) {
            assert!((x - y).abs() <= 1e-3 * scale, "coordinate {x} vs {y}");
        }
    }
}

/// The default (float32 products, signs from the path, one pass) against
/// the exact variant (float64, signs from the components, two passes):
/// the same PCA to float32 precision, each component up to its sign, and
/// the path rule holds: on every component the snapshot with the largest
/// |centred coordinate| has a positive one.
#[test]
fn the_default_one_pass_pca_agrees_with_the_exact_one() {
    let tmp = tempdir();
    let run = random_run(&tmp.path().join("run"), 9, 17);
    let fast = TrajectoryPca::builder()
        .components(3)
        .chunk(100)
        .build()
        .unwrap()
        .fit(&run)
        .unwrap();
    let slow = fit(&run, 3, 100, Selection::Weights);
    assert_eq!((fast.passes, slow.passes), (1, 2));
    assert_eq!(fast.summary().signs, "path");
    assert_eq!(fast.summary().gram_precision, "f32");
    assert_eq!(fast.rank, slow.rank);
    assert_rel(&fast.spectrum, &slow.spectrum, 1e-5, "spectrum");
    assert_rel(
        &fast.explained_variance_ratio,
        &slow.explained_variance_ratio,
        1e-5,
        "ratios",
    );
    let in_fit: Vec<&PathPoint> = fast.path.iter().filter(|p| p.in_fit).collect();
    for k in 0..3 {
        let scale = fast
            .path
            .iter()
            .map(|p| p.coords[k].abs())
            .fold(0.0, f64::max);
        let sign = (fast.path[0].coords[k] * slow.path[0].coords[k]).signum();
        for (a, b) in fast.path.iter().zip(&slow.path) {
            assert!(
                (a.coords[k] - sign * b.coords[k]).abs() <= 1e-5 * scale,
                "PC{} of snapshot {}: {} vs {}",
                k + 1,
                a.snapshot,
                a.coords[k],
                sign * b.coords[k]
            );
            assert!((a.residual - b.residual).abs() < 1e-4, "residual");
        }
        for (a, b) in fast.tensors.iter().zip(&slow.tensors) {
            assert_close(a.share[k], b.share[k], 1e-5, "share");
        }
        let mean = in_fit.iter().map(|p| p.coords[k]).sum::<f64>() / in_fit.len() as f64;
        let big = in_fit
            .iter()
            .map(|p| p.coords[k] - mean)
            .fold(0.0f64, |b, x| if x.abs() > b.abs() { x } else { b });
        assert!(big > 0.0, "PC{}: largest centred coordinate {big}", k + 1);
    }
}

#[test]
fn degenerate_runs_and_settings_are_clear_errors() {
    let tmp = tempdir();
    let pca = TrajectoryPca::builder().build().unwrap();
    let w = vec![1.0f32, 2.0, 3.0, 4.0];
    let tensors: [(&str, &[i64]); 1] = [("l.weight", &[2, 2])];
    let expect_invalid = |r: tch_landscape::Result<PcaResult>, needle: &str| match r {
        Err(Error::InvalidArgument { reason, .. }) => assert!(
            reason.contains(needle),
            "message '{reason}' lacks '{needle}'"
        ),
        other => panic!("expected an invalid-argument error mentioning '{needle}', got {other:?}"),
    };

    let single = record(&tmp.path().join("single"), &tensors, &[vec![w.clone()]]);
    expect_invalid(pca.fit(&single), "at least 3 snapshots");
    let two = record(
        &tmp.path().join("two"),
        &tensors,
        &[vec![w.clone()], vec![vec![0.0; 4]]],
    );
    expect_invalid(pca.fit(&two), "at least 3 snapshots");
    let same = record(
        &tmp.path().join("same"),
        &tensors,
        &vec![vec![w.clone()]; 5],
    );
    expect_invalid(pca.fit(&same), "identical");
    // Everything identical but the final snapshot: the centred rows are zero.
    let mut snaps = vec![vec![w.clone()]; 4];
    snaps.push(vec![vec![9.0; 4]]);
    let before_final = record(&tmp.path().join("before-final"), &tensors, &snaps);
    expect_invalid(pca.fit(&before_final), "identical");
    // An unknown tensor name is reported as such.
    let run = random_run(&tmp.path().join("random"), 4, 6);
    let names = TrajectoryPca::builder()
        .selection(Selection::Names(vec!["nope.weight".into()]))
        .build()
        .unwrap();
    assert!(matches!(names.fit(&run), Err(Error::UnknownTensor { .. })));

    for (b, what) in [
        (TrajectoryPca::builder().components(0), "components"),
        (TrajectoryPca::builder().chunk(0), "chunk"),
        (TrajectoryPca::builder().threads(0), "threads"),
    ] {
        match b.build() {
            Err(Error::InvalidArgument { option, .. }) => {
                assert!(option.contains(what), "{option}")
            }
            other => panic!("expected an error for {what} = 0, got {other:?}"),
        }
    }
    // A result belongs to its run.
    let ok = pca.fit(&run).unwrap();
    assert!(matches!(
        ok.components(&same),
        Err(Error::InvalidArgument { .. })
    ));
}

#[test]
fn per_tensor_figures_add_up() {
    let tmp = tempdir();
    let run = random_run(&tmp.path().join("run"), 8, 7);
    let pca = fit(&run, 2, 100, Selection::All);
    assert_eq!(pca.tensors.len(), 4);
    let frac: f64 = pca.tensors.iter().map(|t| t.variance_fraction).sum();
    assert_close(frac, 1.0, 1e-9, "variance fractions");
    for k in 0..2 {
        let share: f64 = pca.tensors.iter().map(|t| t.share[k]).sum();
        assert_close(share, 1.0, 1e-6, "shares of a component");
    }
    let total: f64 = pca.tensors.iter().map(|t| t.variance).sum();
    assert_close(total, pca.total_variance, 1e-9, "total variance");
    // Own ratios against a PCA restricted to that tensor.
    for t in &pca.tensors {
        let own = fit(&run, 2, 4096, Selection::Names(vec![t.name.clone()]));
        assert_eq!(own.summary().selection, format!("names:{}", t.name));
        assert_close(
            t.own_ratio[0],
            own.explained_variance_ratio[0],
            1e-9,
            "own ratio PC1",
        );
        assert_close(
            t.own_ratio[1],
            own.explained_variance_ratio[1],
            1e-9,
            "own ratio PC2",
        );
    }
}

#[test]
fn directions_are_unit_or_filter_normalized_around_the_final_snapshot() {
    let tmp = tempdir();
    let run = random_run(&tmp.path().join("run"), 8, 8);
    let pca = fit(&run, 2, 4096, Selection::Weights);
    let last = run.len() - 1;
    let centre = run.tensors(last).unwrap();
    let raw = pca.directions(&run, false).unwrap();
    let filt = pca.directions(&run, true).unwrap();
    for d in [&raw, &filt] {
        assert_eq!(d.meta.kind, DirectionKind::Pca);
        assert_eq!(d.len(), 2);
        assert_eq!(d.centre.tensors.len(), 4, "all recorded tensors");
        for ((name, t), c) in centre.iter().zip(&d.centre.tensors) {
            assert_eq!(name, &c.name);
            assert!(
                t.equal(&c.tensor),
                "centre '{name}' is not the final snapshot"
            );
        }
        for dir in &d.dirs {
            for t in dir.tensors.iter().filter(|t| t.name.ends_with("bias")) {
                assert_eq!(
                    t.tensor.abs().sum(Kind::Double).double_value(&[]),
                    0.0,
                    "unselected '{}' must be zero",
                    t.name
                );
            }
        }
        assert!(d.meta.extra.contains_key("pca.explained_variance_ratio"));
    }
    assert_eq!(raw.meta.extra["pca.normalization"], "raw_unit_norm");
    assert_eq!(filt.meta.extra["pca.normalization"], "filter");
    for dir in &raw.dirs {
        assert_close(dir.norm().unwrap(), 1.0, 1e-6, "raw direction norm");
    }
    assert_close(
        raw.dirs[0].dot(&raw.dirs[1]).unwrap(),
        0.0,
        1e-6,
        "raw directions orthogonal",
    );
    for dir in &filt.dirs {
        for (t, c) in dir
            .tensors
            .iter()
            .zip(&filt.centre.tensors)
            .filter(|(t, _)| t.name.ends_with("weight"))
        {
            for j in 0..t.tensor.size()[0] {
                let (a, b) = (
                    t.tensor.get(j).norm().double_value(&[]),
                    c.tensor.get(j).norm().double_value(&[]),
                );
                assert_close(a, b, 1e-5, &format!("filter {j} of '{}'", t.name));
            }
        }
    }
    // The raw plane point at a snapshot's coordinates is its projection.
    let p = &pca.path[2];
    let point = raw.point(p.x(), p.y()).unwrap();
    let snap = run.tensors(2).unwrap();
    let resid: f64 = point
        .tensors
        .iter()
        .zip(&snap)
        .filter(|(t, _)| t.name.ends_with("weight"))
        .map(|(t, (_, s))| {
            (&t.tensor - s)
                .to_kind(Kind::Double)
                .square()
                .sum(Kind::Double)
                .double_value(&[])
        })
        .sum::<f64>()
        .sqrt();
    let x = flat(&run, &Selection::Weights);
    let delta: Vec<f64> = x[2].iter().zip(&x[last]).map(|(a, b)| a - b).collect();
    let delta = norm(&delta);
    assert_close(
        resid / delta,
        p.residual,
        1e-4,
        "distance from the plane point",
    );
    // Round trip through Directions::save / load.
    let path = tmp.path().join("d.parquet");
    filt.save(&path).unwrap();
    let back = Directions::load(&path).unwrap();
    assert_eq!(back.meta, filt.meta);
}

#[test]
fn save_writes_the_tables_the_summary_and_both_directions() {
    let tmp = tempdir();
    let run = random_run(&tmp.path().join("run"), 6, 9);
    let pca = fit(&run, 2, 4096, Selection::Weights);
    let files = pca.save(&run, &tmp.path().join("pca")).unwrap();
    let rows = |p: &Path| -> (usize, Vec<String>, Option<String>) {
        let f = std::fs::File::open(p).unwrap();
        let b = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f).unwrap();
        let meta = b
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .and_then(|kv| {
                kv.iter()
                    .find(|k| k.key == "tch_landscape.pca")
                    .and_then(|k| k.value.clone())
            });
        let names = b
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let n = b
            .build()
            .unwrap()
            .map(|batch| batch.unwrap().num_rows())
            .sum();
        (n, names, meta)
    };
    let (n, cols, meta) = rows(&files.path);
    assert_eq!(n, 6);
    assert_eq!(
        cols,
        ["run_id", "snapshot", "epoch", "pc1", "pc2", "residual", "in_fit"]
    );
    let meta: Value = serde_json::from_str(&meta.expect("pca metadata")).unwrap();
    assert_eq!(meta["selection"], "weights");
    assert_eq!(meta["components"], 2);
    assert_eq!(meta["run_id"], run.manifest().run_id.as_str());
    assert_eq!(meta["schema_version"], 2);
    assert_eq!(meta["include_final"], false);
    assert_eq!(rows(&files.variance).0, pca.rank);
    assert_eq!(rows(&files.variance).1[0], "run_id");
    assert_eq!(rows(&files.tensors).0, 2);
    let summary: Value = serde_json::from_slice(&std::fs::read(&files.summary).unwrap()).unwrap();
    assert_eq!(summary["format"], "tch-landscape-pca");
    assert_eq!(summary["path"].as_array().unwrap().len(), 6);
    assert_close(
        summary["plane_ratio"].as_f64().unwrap(),
        pca.plane_ratio(),
        1e-12,
        "plane ratio",
    );
    for p in [&files.directions_raw, &files.directions_filter] {
        let d = Directions::load(p).unwrap();
        assert_eq!(d.meta.kind, DirectionKind::Pca);
        assert_eq!(d.meta.bn_stats.to_string(), "fixed");
        assert_eq!(d.meta.extra["pca.selection"], "weights");
    }
    // The summary reads back through the library, as the report reads it.
    let back = PcaSummary::load(&files.summary).unwrap();
    assert_eq!((back.selection.as_str(), back.rank), ("weights", pca.rank));
    assert_eq!(back.path.len(), 6);
    assert_eq!(
        files.summary.file_name().unwrap(),
        tch_landscape::analysis::pca::SUMMARY_FILE
    );
}

/// Trains a 64-32-10 MLP on the digits for 6 epochs with the recorder.
fn trained_mlp(dir: &Path) -> (nn::VarStore, Mlp, Digits) {
    tch::manual_seed(0);
    let data = Digits::load().unwrap();
    let vs = nn::VarStore::new(Device::Cpu);
    let model = Mlp::new(&vs.root(), &[64, 32, 10]);
    let mut opt = nn::Sgd {
        momentum: 0.9,
        ..Default::default()
    }
    .build(&vs, 0.1)
    .unwrap();
    let mut rec = Recorder::builder(dir).fsync(false).build(&vs).unwrap();
    for epoch in 1..=6 {
        for idx in batches(data.len() as i64, 64) {
            step(&model, &mut opt, &data, &idx);
        }
        rec.on_epoch_end(epoch, &[]).unwrap();
    }
    rec.finish().unwrap();
    (vs, model, data)
}

#[test]
fn plane_check_on_a_trained_mlp() {
    let tmp = tempdir();
    let dir = tmp.path().join("run");
    let (vs, model, data) = trained_mlp(&dir);
    let run = Run::open(&dir).unwrap();
    let pca = fit(&run, 2, 4096, Selection::Weights);
    assert!(
        pca.plane_ratio() > 0.3 && pca.plane_ratio() <= 1.0 + 1e-12,
        "PC1+PC2 = {}",
        pca.plane_ratio()
    );
    // Not the final snapshot, where the check ends: restoring must show.
    run.load_into(1, &vs).unwrap();
    let before = deep_copy(&vs);
    let mut eval = ClassifierEvaluator::new(&model)
        .split("train", &data.x, &data.y)
        .unwrap();
    let check = plane_check(&run, &pca, &vs, &mut eval).unwrap();
    assert_eq!(deep_copy(&vs), before, "the VarStore was not restored");
    assert_eq!(check.rows.len(), run.len());
    let last = check.rows.last().unwrap();
    assert_eq!((last.x, last.y, last.residual), (0.0, 0.0, 0.0));
    assert_eq!(
        last.plane_loss, last.true_loss,
        "the final snapshot lies on the plane"
    );
    assert_eq!(last.plane_accuracy, last.true_accuracy);
    // True losses are those of the snapshots themselves.
    let first = &check.rows[0];
    run.load_into(0, &vs).unwrap();
    let (loss0, _) = tch_landscape::demo::evaluate(&model, &data.x, &data.y, 128).unwrap();
    assert_close(first.true_loss, loss0, 1e-9, "true loss at snapshot 0");
    assert!(
        first.true_loss > 1.5 && last.true_loss < 0.5,
        "{} → {}",
        first.true_loss,
        last.true_loss
    );
    for r in &check.rows {
        assert!(r.plane_loss.is_finite() && r.true_loss.is_finite());
        assert_eq!(r.split, "train");
    }
    // The plane loss of an off-plane snapshot differs from its true loss.
    assert!(check
        .rows
        .iter()
        .any(|r| r.residual > 1e-3 && r.plane_loss != r.true_loss));
    let table = tmp.path().join("plane-check.parquet");
    check.save(&table).unwrap();
    let f = std::fs::File::open(&table).unwrap();
    let n: usize = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)
        .unwrap()
        .build()
        .unwrap()
        .map(|b| b.unwrap().num_rows())
        .sum();
    assert_eq!(n, run.len());

    // A model missing a recorded tensor is refused, and left untouched.
    let other = nn::VarStore::new(Device::Cpu);
    let small = Mlp::new(&other.root(), &[64, 32]); // no fc2
    let before = deep_copy(&other);
    let mut eval = ClassifierEvaluator::new(&small)
        .split("train", &data.x, &data.y)
        .unwrap();
    assert!(matches!(
        plane_check(&run, &pca, &other, &mut eval),
        Err(Error::UnknownTensor { .. })
    ));
    assert_eq!(deep_copy(&other), before);
}

/// Runs `script` with the test Python, `input` (JSON) on stdin; its stdout
/// parsed as JSON.
fn python_json(script: &str, input: &Value) -> Value {
    use std::io::Write;
    let mut child = Command::new(python())
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("starting the test Python");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("python's JSON")
}

/// scikit-learn's PCA (full SVD) of the rows θᵢ − θ_centre: with
/// `include_final` every snapshot (the reference code's matrix: its loop
/// includes the final model, an all-zero row), else all but the centre (the
/// paper's text). Ratios, variances, components and the projections
/// ⟨θᵢ − θ_centre, pc_k⟩ of every snapshot.
const SKLEARN_PCA: &str = r#"
import json, sys
import numpy as np
from sklearn.decomposition import PCA
d = json.load(sys.stdin)
X = np.array(d["rows"], dtype=np.float64)
c = X[d["centre"]]
D = X - c
M = D if d["include_final"] else np.delete(D, d["centre"], axis=0)
p = PCA(n_components=d["k"], svd_solver="full").fit(M)
print(json.dumps({
    "ratio": p.explained_variance_ratio_.tolist(),
    "variance": p.explained_variance_.tolist(),
    "components": p.components_.tolist(),
    "coords": (D @ p.components_.T).tolist(),
}))
"#;

/// Checks `pca` (fitted on the rows `rows`, centre row `centre`) against
/// scikit-learn; returns scikit-learn's ratios.
fn check_against_sklearn(
    pca: &PcaResult,
    comps: &[Vec<f64>],
    rows: &[Vec<f64>],
    centre: usize,
    include_final: bool,
) -> Vec<f64> {
    let k = pca.n_components();
    let r = python_json(
        SKLEARN_PCA,
        &serde_json::json!({"rows": rows, "centre": centre, "include_final": include_final, "k": k}),
    );
    let ratio = f64_list(&r["ratio"]);
    assert_rel(
        &pca.explained_variance_ratio,
        &ratio,
        1e-9,
        "ratios vs sklearn",
    );
    assert_rel(
        &pca.explained_variance,
        &f64_list(&r["variance"]),
        1e-9,
        "variances vs sklearn",
    );
    let scale = rows
        .iter()
        .map(|x| {
            norm(
                &x.iter()
                    .zip(&rows[centre])
                    .map(|(a, b)| a - b)
                    .collect::<Vec<_>>(),
            )
        })
        .fold(0.0, f64::max);
    for (j, c) in r["components"].as_array().unwrap().iter().enumerate() {
        let want = f64_list(c);
        // The same axis; the sign by the same rule (largest |entry| positive).
        let d = dot(&comps[j], &want);
        assert!(
            (d.abs() - 1.0).abs() < 1e-6,
            "PC{} vs sklearn: |dot| {d}",
            j + 1
        );
        let sign = d.signum();
        for (i, p) in pca.path.iter().enumerate() {
            let w = sign * f64_list(&r["coords"][i])[j];
            assert!(
                (p.coords[j] - w).abs() <= 1e-7 * scale,
                "PC{} of path point {i}: got {}, sklearn {w}",
                j + 1,
                p.coords[j]
            );
        }
    }
    ratio
}

#[test]
fn include_final_is_the_reference_codes_zero_row_and_matches_scikit_learn() {
    let tmp = tempdir();
    let run = random_run(&tmp.path().join("run"), 7, 21);
    let fit_with = |include: bool| {
        exact()
            .components(3)
            .chunk(100)
            .include_final(include)
            .build()
            .unwrap()
            .fit(&run)
            .unwrap()
    };
    let (paper, reference) = (fit_with(false), fit_with(true));
    let rows = flat(&run, &Selection::Weights);
    let n = rows.len();
    let comps = |p: &PcaResult| components_f64(p, &run);
    let r_paper = check_against_sklearn(&paper, &comps(&paper), &rows, n - 1, false);
    let r_ref = check_against_sklearn(&reference, &comps(&reference), &rows, n - 1, true);
    // The zero row moves the ratios: not the same PCA.
    let moved = r_paper
        .iter()
        .zip(&r_ref)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    assert!(
        moved > 1e-4,
        "include_final changed nothing: {r_paper:?} vs {r_ref:?}"
    );
    // One more row: the variances are sums of squares over m − 1 = n − 1
    // instead of n − 2 (sklearn's convention), the centre is in the fit.
    assert_eq!(reference.rank, n - 1);
    assert_eq!(paper.rank, n - 2);
    assert!(reference.path[n - 1].in_fit && !paper.path[n - 1].in_fit);
    assert!(paper.path[..n - 1].iter().all(|p| p.in_fit));
    assert!(reference.path[n - 1].coords.iter().all(|&c| c == 0.0));
    // Stored: pca.json, the tables' metadata, the directions.
    let files = reference.save(&run, &tmp.path().join("pca")).unwrap();
    let back = PcaSummary::load(&files.summary).unwrap();
    assert!(back.include_final && back.path[n - 1].in_fit);
    let path = read_path_table(&files.path).unwrap();
    assert_eq!(
        path, reference.path,
        "the table is exact (pca.json goes through decimal JSON)"
    );
    let d = Directions::load(&files.directions_raw).unwrap();
    assert_eq!(d.meta.extra["pca.include_final"], "true");
}

#[test]
fn path_table_holds_every_component_and_in_fit() {
    let tmp = tempdir();
    let run = random_run(&tmp.path().join("run"), 6, 4);
    let pca = fit(&run, 4, 1000, Selection::Weights);
    assert_eq!(pca.n_components(), 4);
    let files = pca.save(&run, &tmp.path().join("pca")).unwrap();
    let path = read_path_table(&files.path).unwrap();
    assert_eq!(path.len(), 6);
    for (p, q) in path.iter().zip(&pca.path) {
        assert_eq!(p.pcs().len(), 4);
        assert_eq!(p.pcs(), q.coords.as_slice());
        assert_eq!(p.run_id, run.manifest().run_id);
    }
    let in_fit: Vec<bool> = path.iter().map(|p| p.in_fit).collect();
    assert_eq!(in_fit, [true, true, true, true, true, false]);
}

/// The numpy reference of a joint PCA: rows = every snapshot of every run
/// minus the first run's final snapshot (that row left out), mean-centred,
/// exact SVD.
const NUMPY_JOINT: &str = r#"
import json, sys
import numpy as np
d = json.load(sys.stdin)
X = np.array(d["rows"], dtype=np.float64)
c = X[d["centre"]]
D = X - c
M = np.delete(D, d["centre"], axis=0)
Mc = M - M.mean(axis=0)
u, s, vt = np.linalg.svd(Mc, full_matrices=False)
lam = s**2
k = d["k"]
print(json.dumps({
    "ratio": (lam[:k] / lam.sum()).tolist(),
    "variance": (lam[:k] / (M.shape[0] - 1)).tolist(),
    "components": vt[:k].tolist(),
    "coords": (D @ vt[:k].T).tolist(),
}))
"#;

#[test]
fn a_joint_pca_of_two_runs_matches_numpy_on_the_stacked_matrix() {
    let tmp = tempdir();
    let a = random_run(&tmp.path().join("a"), 5, 31);
    let b = random_run(&tmp.path().join("b"), 4, 32);
    let pca = exact()
        .components(3)
        .chunk(64)
        .build()
        .unwrap()
        .fit_joint(&[&a, &b])
        .unwrap();
    assert_eq!(pca.path.len(), 9);
    assert_eq!(pca.run_id, a.manifest().run_id);
    let mut rows = flat(&a, &Selection::Weights);
    rows.extend(flat(&b, &Selection::Weights));
    let r = python_json(
        NUMPY_JOINT,
        &serde_json::json!({"rows": rows, "centre": 4, "k": 3}),
    );
    assert_rel(
        &pca.explained_variance_ratio,
        &f64_list(&r["ratio"]),
        1e-9,
        "joint ratios",
    );
    assert_rel(
        &pca.explained_variance,
        &f64_list(&r["variance"]),
        1e-9,
        "joint variances",
    );
    let comps: Vec<Vec<f64>> = pca
        .components_of(&[&a, &b])
        .unwrap()
        .iter()
        .map(|c| f64s(c))
        .collect();
    let scale = 10.0;
    for j in 0..3 {
        let want = f64_list(&r["components"][j]);
        let d = dot(&comps[j], &want);
        assert!((d.abs() - 1.0).abs() < 1e-6, "joint PC{}: |dot| {d}", j + 1);
        for (i, p) in pca.path.iter().enumerate() {
            let w = d.signum() * f64_list(&r["coords"][i])[j];
            assert!(
                (p.coords[j] - w).abs() <= 1e-7 * scale,
                "PC{} of point {i}",
                j + 1
            );
        }
    }
    // Rows of both runs, told apart by run id; only A's final one is out.
    let ids: Vec<&str> = pca.path.iter().map(|p| p.run_id.as_str()).collect();
    let (ia, ib) = (a.manifest().run_id.as_str(), b.manifest().run_id.as_str());
    assert_eq!(ids, [ia, ia, ia, ia, ia, ib, ib, ib, ib]);
    let out: Vec<usize> = (0..9).filter(|&i| !pca.path[i].in_fit).collect();
    assert_eq!(out, [4]);

    // Saved like a run's PCA; the loader gives the paths per run.
    let dir = tmp.path().join("joint");
    let files = pca.save_joint(&[&a, &b], &dir).unwrap();
    let back = PcaSummary::load_dir(&dir).unwrap();
    let per_run = back.paths_by_run();
    assert_eq!(per_run.len(), 2);
    assert_eq!((per_run[0].0, per_run[0].1.len()), (ia, 5));
    assert_eq!((per_run[1].0, per_run[1].1.len()), (ib, 4));
    assert_eq!(back.explained_variance_ratio, pca.explained_variance_ratio);
    assert_eq!(back.runs[1].snapshots, 4);
    assert_eq!(read_path_table(&files.path).unwrap(), pca.path);
    // The plane is centred on A's final model.
    let d = Directions::load(&files.directions_raw).unwrap();
    assert_eq!(d.meta.kind, DirectionKind::Pca);
    assert!(d.meta.extra["pca.runs"].contains(ib));
    // The wrong runs are refused.
    assert!(pca.components_of(&[&b, &a]).is_err());
    assert!(pca.components(&a).is_err());
}

#[test]
fn a_joint_pca_refuses_runs_with_other_shapes_by_name() {
    let tmp = tempdir();
    let a = random_run(&tmp.path().join("a"), 4, 1);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2);
    let tensors: [(&str, &[i64]); 4] = [
        ("fc1.bias", &[30]),
        ("fc1.weight", &[30, 15]),
        ("fc2.bias", &[10]),
        ("fc2.weight", &[10, 30]),
    ];
    let snaps: Vec<Vec<Vec<f32>>> = (0..3)
        .map(|_| {
            tensors
                .iter()
                .map(|(_, s)| gaussian(&mut rng, s.iter().product::<i64>() as usize, 1.0))
                .collect()
        })
        .collect();
    let b = record(&tmp.path().join("b"), &tensors, &snaps);
    let pca = TrajectoryPca::builder().build().unwrap();
    let e = pca.fit_joint(&[&a, &b]).unwrap_err().to_string();
    assert!(
        e.contains(b.manifest().run_id.as_str())
            && e.contains("fc1.weight")
            && e.contains("[30, 15]"),
        "{e}"
    );
    let e = pca.fit_joint(&[&a, &a]).unwrap_err().to_string();
    assert!(e.contains("given twice"), "{e}");
}

#[cfg(feature = "cli")]
#[test]
fn cli_joint_and_include_final() {
    let tmp = tempdir();
    let a = random_run(&tmp.path().join("a"), 5, 41);
    let b = random_run(&tmp.path().join("b"), 5, 42);
    let s = |p: &Path| p.to_string_lossy().into_owned();
    let landscape = |args: &[String]| {
        let out = Command::new(env!("CARGO_BIN_EXE_landscape"))
            .args(args)
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let out = tmp.path().join("joint");
    let (ok, text) = landscape(&[
        "pca".into(),
        "--joint".into(),
        s(a.dir()),
        s(b.dir()),
        "--out".into(),
        s(&out),
        "--include-final".into(),
    ]);
    assert!(ok, "{text}");
    let back = PcaSummary::load_dir(&out).unwrap();
    assert_eq!(
        (back.runs.len(), back.path.len(), back.include_final),
        (2, 10, true)
    );
    let (ok, text) = landscape(&["pca".into(), "--joint".into(), s(a.dir())]);
    assert!(!ok && text.contains("at least two"), "{text}");
    let (ok, text) = landscape(&["pca".into(), s(a.dir()), s(b.dir())]);
    assert!(!ok && text.contains("--joint"), "{text}");
}

/// The progress hook hears every pass: the Gram pass counts up to the
/// selection's values per snapshot, chunk by chunk; the components' signs
/// pass and the directions pass follow when they run.
#[test]
fn progress_reports_every_pass_to_the_end() {
    use std::sync::{Arc, Mutex};
    use tch_landscape::analysis::pca::PcaProgress;
    let dir = tempdir();
    let run = random_run(dir.path(), 6, 9);
    let numel = 30 * 16 + 10 * 30; // the weights
    for (signs, passes) in [
        (SignRule::Path, vec!["gram", "directions"]),
        (
            SignRule::Components,
            vec!["gram", "projection", "directions"],
        ),
    ] {
        let seen: Arc<Mutex<Vec<PcaProgress>>> = Arc::default();
        let log = seen.clone();
        let pca = TrajectoryPca::builder()
            .chunk(64)
            .signs(signs)
            .on_progress(move |p| log.lock().unwrap().push(p))
            .build()
            .unwrap()
            .fit(&run)
            .unwrap();
        pca.components(&run).unwrap();
        let seen = seen.lock().unwrap();
        let mut order: Vec<&str> = seen.iter().map(|p| p.pass).collect();
        order.dedup();
        assert_eq!(order, passes, "{signs:?}");
        for pass in passes {
            let of: Vec<&PcaProgress> = seen.iter().filter(|p| p.pass == pass).collect();
            assert!(of.iter().all(|p| p.total == numel as u64), "{pass}");
            assert!(of.windows(2).all(|w| w[0].done < w[1].done), "{pass}");
            assert_eq!(of.last().unwrap().done, numel as u64, "{pass}");
            // 64-value chunks of a 480- and a 300-value tensor.
            assert_eq!(
                of.len(),
                480usize.div_ceil(64) + 300usize.div_ceil(64),
                "{pass}"
            );
        }
    }
}

/// The tensors of the live-Gram tests (sorted by name, as the manifest).
const LIVE_TENSORS: [(&str, &[i64]); 4] = [
    ("fc1.bias", &[30]),
    ("fc1.weight", &[30, 16]),
    ("fc2.bias", &[10]),
    ("fc2.weight", &[10, 30]),
];

/// A recorder on a VarStore of [`LIVE_TENSORS`] whose every epoch moves
/// the variables by a drift plus noise, both shrinking by 0.8 per epoch
/// (late snapshots crowd around the final one: the hard case for Gram
/// rows kept relative to θ₀).
struct LiveRecording {
    vs: nn::VarStore,
    rec: Option<Recorder>,
    rng: rand_chacha::ChaCha8Rng,
    epoch: u64,
}

impl LiveRecording {
    fn start(dir: &Path, seed: u64) -> LiveRecording {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let vs = nn::VarStore::new(Device::Cpu);
        for (name, shape) in LIVE_TENSORS {
            let (prefix, leaf) = name.rsplit_once('.').unwrap();
            let n = shape.iter().product::<i64>() as usize;
            let init = Tensor::from_slice(&gaussian(&mut rng, n, 0.5)).reshape(shape);
            let _ = (vs.root() / prefix).var_copy(leaf, &init);
        }
        let rec = Recorder::builder(dir).fsync(false).build(&vs).unwrap();
        LiveRecording {
            vs,
            rec: Some(rec),
            rng,
            epoch: 0,
        }
    }

    /// One epoch's move and its snapshot (written when this returns).
    fn epoch(&mut self) {
        let scale = 0.8f32.powi(self.epoch as i32);
        tch::no_grad(|| {
            let mut vars: Vec<(String, Tensor)> = self.vs.variables().into_iter().collect();
            vars.sort_by(|a, b| a.0.cmp(&b.0));
            for (_, mut v) in vars {
                let n = v.numel();
                let noise = gaussian(&mut self.rng, n, 0.05 * scale);
                let step = Tensor::from_slice(&noise).reshape(v.size()) + 0.03 * scale as f64;
                let _ = v.f_add_(&step).unwrap();
            }
        });
        self.epoch += 1;
        let rec = self.rec.as_mut().unwrap();
        rec.on_epoch_end(self.epoch, &[]).unwrap();
    }
}

/// The largest differences between a live fit and a full one: explained
/// variance ratios (relative), path coordinates (relative to the
/// component's largest |coordinate|), residuals, per-tensor shares and own
/// ratios (absolute: they lie in [0, 1]), tensor variances (relative).
fn live_vs_full(live: &PcaResult, full: &PcaResult) -> (f64, String) {
    assert_eq!(live.rank, full.rank, "rank");
    assert_eq!(live.path.len(), full.path.len());
    assert_eq!(live.n_components(), full.n_components());
    let mut worst = (0f64, String::new());
    let mut see = |d: f64, what: &dyn Fn() -> String| {
        if d > worst.0 {
            worst = (d, what());
        }
    };
    for (a, b) in live
        .explained_variance_ratio
        .iter()
        .zip(&full.explained_variance_ratio)
    {
        see((a - b).abs() / b.abs(), &|| format!("ratio {a} vs {b}"));
    }
    for k in 0..full.n_components() {
        let scale = full
            .path
            .iter()
            .map(|p| p.coords[k].abs())
            .fold(0.0, f64::max);
        for (a, b) in live.path.iter().zip(&full.path) {
            assert_eq!((a.snapshot, a.in_fit), (b.snapshot, b.in_fit));
            see((a.coords[k] - b.coords[k]).abs() / scale, &|| {
                format!(
                    "PC{} of snapshot {}: {} vs {}",
                    k + 1,
                    a.snapshot,
                    a.coords[k],
                    b.coords[k]
                )
            });
        }
    }
    for (a, b) in live.path.iter().zip(&full.path) {
        // Squared: a residual near 0 is the square root of rounding.
        see((a.residual.powi(2) - b.residual.powi(2)).abs(), &|| {
            format!(
                "residual of snapshot {}: {} vs {}",
                a.snapshot, a.residual, b.residual
            )
        });
    }
    for (a, b) in live.tensors.iter().zip(&full.tensors) {
        assert_eq!(a.name, b.name);
        see(
            (a.variance - b.variance).abs() / b.variance.abs().max(f64::MIN_POSITIVE),
            &|| format!("variance of {}", a.name),
        );
        for (x, y) in a
            .share
            .iter()
            .zip(&b.share)
            .chain(a.own_ratio.iter().zip(&b.own_ratio))
        {
            see((x - y).abs(), &|| {
                format!("share or own ratio of {}: {x} vs {y}", a.name)
            });
        }
    }
    let (a, b) = (live.summary(), full.summary());
    assert_eq!(
        (a.selection, a.snapshots, a.numel),
        (b.selection, b.snapshots, b.numel)
    );
    worst
}

/// A run fed to a `LiveGram` snapshot by snapshot while it is recorded
/// (3 snapshots, then 4, … 14): after each, its fit from the kept rows
/// equals the full one-pass fit of the snapshots so far in the same
/// precision (the live rows are float64 products), with the default path
/// signs and with the reference code's variant (the final snapshot a zero
/// row, signs from the components). Measured: ≤ 1e-13 (tolerance 1e-9);
/// against the default float32 full fit, whose own rounding it is, ≤ 2e-6
/// (tolerance 1e-5).
#[test]
fn a_live_gram_fed_snapshot_by_snapshot_matches_the_full_fit() {
    let tmp = tempdir();
    let dir = tmp.path().join("run");
    let mut recording = LiveRecording::start(&dir, 21);
    let base = variants_path();
    let variants = [
        base.clone(),
        base.include_final(true).signs(SignRule::Components),
    ];
    // Built with the default float32: the live Gram's products are float64.
    let mut lives = variants.clone().map(|b| b.build().unwrap().live());
    let exact = variants.map(|b| b.precision(GramPrecision::Float64).build().unwrap());
    let f32_full = base_f32_full();
    let mut worst = [
        (0f64, String::new()),
        (0f64, String::new()),
        (0f64, String::new()),
    ];
    let mut see = |i: usize, d: (f64, String), n: usize, tol: f64| {
        assert!(
            d.0 <= tol,
            "variant {i}, {n} snapshots: {:e} ({})",
            d.0,
            d.1
        );
        if d.0 > worst[i].0 {
            worst[i] = (d.0, format!("{n} snapshots, {}", d.1));
        }
    };
    // The first variant from θ₀ alone on, the second from 2 snapshots.
    let theta0 = Run::open(&dir).unwrap();
    assert_eq!(lives[0].update(&theta0).unwrap().new_rows, 1);
    for epoch in 1..=13 {
        recording.epoch();
        let run = Run::open(&dir).unwrap();
        for (i, (pca, live)) in exact.iter().zip(&mut lives).enumerate() {
            let u = live.update(&run).unwrap();
            assert_eq!((u.snapshots, u.rebuilt.clone()), (run.len(), None));
            let rows = if epoch == 1 && i == 1 { 2 } else { 1 };
            assert_eq!(u.new_rows, rows, "epoch {epoch}");
            let (got, want) = match (live.fit(&run), pca.fit(&run)) {
                (Ok(g), Ok(w)) => (g, w),
                (Err(_), Err(_)) => continue, // too few snapshots, both
                (g, w) => panic!("variant {i}, {} snapshots: {g:?} vs {w:?}", run.len()),
            };
            let (a, b) = (got.summary(), want.summary());
            assert_eq!((&a.signs, &a.gram_precision), (&b.signs, &b.gram_precision));
            assert_eq!(a.gram_precision, "f64");
            see(i, live_vs_full(&got, &want), run.len(), 1e-9);
            if i == 0 {
                let fast = f32_full.fit(&run).unwrap();
                see(2, live_vs_full(&got, &fast), run.len(), 1e-5);
            }
        }
    }
    // Nothing new: no row.
    let run = Run::open(&dir).unwrap();
    assert_eq!(lives[0].update(&run).unwrap().new_rows, 0);
    // All 14 rows at once (libtorch's products, not the few-rows pass):
    // the same rows.
    let mut fresh = variants_path().build().unwrap().live();
    assert_eq!(fresh.update(&run).unwrap().new_rows, 14);
    let (d, what) = live_vs_full(&fresh.fit(&run).unwrap(), &lives[0].fit(&run).unwrap());
    assert!(d <= 1e-12, "14 rows at once vs one by one: {d:e} ({what})");
    for (w, what) in worst.iter().zip([
        "path signs",
        "reference variant",
        "path signs vs float32 fit",
    ]) {
        println!(
            "largest live − full difference, {what}: {:e} ({})",
            w.0, w.1
        );
    }
}

/// The live tests' PCA settings with path signs.
fn variants_path() -> tch_landscape::analysis::pca::PcaBuilder {
    TrajectoryPca::builder()
        .components(3)
        .chunk(100)
        .selection(Selection::All)
}

/// The default PCA of the live tests' runs (float32 products).
fn base_f32_full() -> TrajectoryPca {
    variants_path().build().unwrap()
}

/// A run that changed under a `LiveGram` is refused by `update` and `fit`
/// (fewer snapshots, a snapshot file replaced, another run), and
/// `refresh` rebuilds from scratch.
#[test]
fn a_live_gram_refuses_a_run_that_changed_and_refresh_rebuilds() {
    let tmp = tempdir();
    let dir = tmp.path().join("run");
    let mut recording = LiveRecording::start(&dir, 22);
    for _ in 0..5 {
        recording.epoch();
    }
    recording.rec.take().unwrap().finish().unwrap();
    let pca = TrajectoryPca::builder().build().unwrap();
    let exact = TrajectoryPca::builder()
        .precision(GramPrecision::Float64)
        .build()
        .unwrap();
    let mut live = pca.clone().live();
    let run = Run::open(&dir).unwrap();
    assert_eq!(live.update(&run).unwrap().new_rows, 6);
    assert_eq!(live.snapshots(), 6);
    let expect_refused =
        |live: &mut tch_landscape::analysis::pca::LiveGram, run: &Run, needle: &str| {
            let why = live.changed(run).unwrap().expect("a change");
            assert!(why.contains(needle), "'{why}' lacks '{needle}'");
            match live.update(run) {
                Err(Error::InvalidArgument { reason, .. }) => {
                    assert!(reason.contains(needle), "{reason}")
                }
                other => panic!("update of a changed run: {other:?}"),
            }
            assert!(live.fit(run).is_err(), "fit of a changed run");
        };
    // Shortened: the last snapshot is gone.
    std::fs::remove_file(run.snapshot(5).unwrap().path()).unwrap();
    let short = Run::open(&dir).unwrap();
    expect_refused(&mut live, &short, "has 5 snapshots, 6 were read before");
    assert_eq!(live.snapshots(), 6, "a refused update keeps the rows");
    let u = live.refresh(&short).unwrap();
    assert_eq!((u.snapshots, u.new_rows), (5, 5));
    assert!(u.rebuilt.unwrap().contains("5 snapshots"));
    let (d, what) = live_vs_full(&live.fit(&short).unwrap(), &exact.fit(&short).unwrap());
    assert!(d <= 1e-9, "after the rebuild: {d:e} ({what})");
    // A snapshot file that is not the one read (here: only its time).
    let f = std::fs::File::options()
        .write(true)
        .open(short.snapshot(1).unwrap().path())
        .unwrap();
    f.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(60))
        .unwrap();
    let touched = Run::open(&dir).unwrap();
    expect_refused(&mut live, &touched, "snapshot 1 of run");
    assert!(live.refresh(&touched).unwrap().rebuilt.is_some());
    // Another run.
    let other_dir = tmp.path().join("other");
    let mut other = LiveRecording::start(&other_dir, 23);
    for _ in 0..3 {
        other.epoch();
    }
    let other = Run::open(&other_dir).unwrap();
    expect_refused(&mut live, &other, "now holds run");
    // A new snapshot with a NaN: an error naming the file and the tensor,
    // the rows kept as they were.
    let nan_dir = tmp.path().join("nan");
    let mut nan = LiveRecording::start(&nan_dir, 24);
    nan.epoch();
    let mut live_nan = exact.clone().live();
    live_nan.update(&Run::open(&nan_dir).unwrap()).unwrap();
    tch::no_grad(|| {
        let v = nan.vs.variables()["fc2.weight"].shallow_clone();
        let _ = v.f_view([-1]).unwrap().get(7).fill_(f64::NAN);
    });
    nan.epoch();
    let bad = Run::open(&nan_dir).unwrap();
    match live_nan.update(&bad) {
        Err(Error::NonFinite { path, tensor, .. }) => {
            assert_eq!(tensor, "fc2.weight");
            assert_eq!(path, bad.snapshot(2).unwrap().path());
        }
        other => panic!("a NaN in the new snapshot: {other:?}"),
    }
    assert_eq!(live_nan.snapshots(), 2);
    // Rows of fewer snapshots than the run has: update first.
    let mut fresh = pca.live();
    assert!(fresh.fit(&other).is_err(), "nothing taken in");
    fresh.update(&other).unwrap();
    assert!(fresh.fit(&other).is_ok());
}
