//! Loss surfaces: correctness against closed forms, PyTorch and the paper's
//! invariance; exact restoration of the model; resuming; bad input.

mod common;

use common::{digits_subset, snapshot_bits};

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use tch::nn::{self, Module, VarStore};
use tch::{Device, Kind, Tensor};
use tch_landscape::analysis::directions::{DirectionKind, Directions, Ignore, Normalization};
use tch_landscape::analysis::evaluator::{ClassifierEvaluator, Evaluator, LossKind, SplitResult};
use tch_landscape::analysis::params::{NamedTensor, ParamSet};
use tch_landscape::analysis::surface::{Surface, SurfaceBuilder, SurfaceResult};
use tch_landscape::models::Mlp;
use tch_landscape::{Error, Role};

fn mlp(seed: i64, sizes: &[i64]) -> (VarStore, Mlp) {
    tch::manual_seed(seed);
    let vs = VarStore::new(Device::Cpu);
    let m = Mlp::new(&vs.root(), sizes);
    (vs, m)
}

#[test]
fn model_is_restored_bit_exactly_after_success_and_failure() {
    let (vs, model) = mlp(1, &[64, 16, 10]);
    let (x, y) = digits_subset(200);
    let before = snapshot_bits(&vs);
    let dirs = Directions::random(&ParamSet::from_varstore(&vs).unwrap())
        .seed(5)
        .build()
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let mut eval = ClassifierEvaluator::new(&model)
        .split("train", &x, &y)
        .unwrap();
    let r = Surface::builder(&dirs)
        .grid(-1.0..=1.0, 4, -1.0..=1.0, 3)
        .build()
        .unwrap()
        .evaluate(&vs, &mut eval, tmp.path().join("ok"))
        .unwrap();
    // 4 × 3 grid points and θ* (x has no 0 on an even axis).
    assert_eq!(r.points.len(), 13);
    assert_eq!(
        snapshot_bits(&vs),
        before,
        "parameters differ after a successful surface"
    );

    struct Failing<'a> {
        inner: ClassifierEvaluator<'a>,
        calls: Cell<usize>,
    }
    impl Evaluator for Failing<'_> {
        fn evaluate(&mut self) -> tch_landscape::Result<Vec<SplitResult>> {
            self.calls.set(self.calls.get() + 1);
            if self.calls.get() == 5 {
                return Err(Error::invalid(
                    "test evaluator",
                    "fails on purpose at call 5",
                ));
            }
            self.inner.evaluate()
        }
        fn describe(&self) -> String {
            self.inner.describe()
        }
    }
    let mut failing = Failing {
        inner: ClassifierEvaluator::new(&model)
            .split("train", &x, &y)
            .unwrap(),
        calls: Cell::new(0),
    };
    let err = Surface::builder(&dirs)
        .grid(-1.0..=1.0, 4, -1.0..=1.0, 3)
        .build()
        .unwrap()
        .evaluate(&vs, &mut failing, tmp.path().join("fail"))
        .unwrap_err();
    assert!(err.to_string().contains("fails on purpose"), "{err}");
    assert_eq!(
        snapshot_bits(&vs),
        before,
        "parameters differ after a failed surface"
    );
    // The 4 points finished before the failure were saved: resuming
    // computes only the other 9 (8 grid points and θ*).
    let r2 = Surface::builder(&dirs)
        .grid(-1.0..=1.0, 4, -1.0..=1.0, 3)
        .build()
        .unwrap()
        .evaluate(&vs, &mut eval, tmp.path().join("fail"))
        .unwrap();
    assert_eq!(r2.points.len(), 13);
    assert_eq!(r2.computed, 9);
    assert_eq!(r2.loss("train"), r.loss("train"));
}

/// §4: scaling a ReLU layer by c and the next by 1/c changes nothing for
/// filter-normalized surfaces, and changes un-normalized ones.
#[test]
fn filter_normalized_surface_is_scale_invariant() {
    let (x, y) = digits_subset(300);
    let surface = |scale: f64, norm: Normalization| -> Vec<f64> {
        let (vs, model) = mlp(3, &[64, 32, 32, 10]);
        tch::no_grad(|| {
            let v = vs.variables();
            let (mut w1, mut b1, mut w2) = (
                v["fc1.weight"].shallow_clone(),
                v["fc1.bias"].shallow_clone(),
                v["fc2.weight"].shallow_clone(),
            );
            let _ = w1.f_mul_scalar_(scale).unwrap();
            let _ = b1.f_mul_scalar_(scale).unwrap();
            let _ = w2.f_mul_scalar_(1.0 / scale).unwrap();
        });
        let dirs = Directions::random(&ParamSet::from_varstore(&vs).unwrap())
            .seed(123)
            .normalization(norm)
            .build()
            .unwrap();
        let mut eval = ClassifierEvaluator::new(&model)
            .split("train", &x, &y)
            .unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let surface = Surface::builder(&dirs)
            .grid(-1.0..=1.0, 5, -1.0..=1.0, 5)
            .build()
            .unwrap();
        let r = surface.evaluate(&vs, &mut eval, tmp.path()).unwrap();
        r.loss("train")
    };
    let max_rel = |a: &[f64], b: &[f64]| {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs() / x.abs().max(1e-12))
            .fold(0.0, f64::max)
    };
    let base = surface(1.0, Normalization::Filter);
    let scaled = surface(10.0, Normalization::Filter);
    assert!(
        max_rel(&base, &scaled) < 1e-4,
        "filter-normalized surfaces differ: {}",
        max_rel(&base, &scaled)
    );
    let base_raw = surface(1.0, Normalization::None);
    let scaled_raw = surface(10.0, Normalization::None);
    assert!(
        max_rel(&base_raw, &scaled_raw) > 1e-2,
        "un-normalized surfaces should differ"
    );
}

/// Linear regression with MSE: L(w) = mean((Xw − y)²), known in closed form.
#[test]
fn linear_regression_surface_matches_closed_form() {
    tch::manual_seed(11);
    let vs = VarStore::new(Device::Cpu);
    let lin = nn::linear(
        vs.root() / "lin",
        5,
        1,
        nn::LinearConfig {
            bias: false,
            ..Default::default()
        },
    );
    let x = Tensor::randn([64, 5], (Kind::Float, Device::Cpu));
    let y = Tensor::randn([64, 1], (Kind::Float, Device::Cpu));
    let dirs = Directions::random(&ParamSet::from_varstore(&vs).unwrap())
        .seed(9)
        .build()
        .unwrap();
    let module = nn::func(move |xs| lin.forward(xs));
    let mut eval = ClassifierEvaluator::new(&module)
        .split("train", &x, &y)
        .unwrap()
        .batch(10)
        .unwrap()
        .loss(LossKind::Mse);
    let tmp = tempfile::tempdir().unwrap();
    let r = Surface::builder(&dirs)
        .grid(-2.0..=1.0, 7, -0.5..=1.5, 4)
        .build()
        .unwrap()
        .evaluate(&vs, &mut eval, tmp.path())
        .unwrap();
    let xd = x.to_kind(Kind::Double);
    let yd = y.to_kind(Kind::Double);
    let w = dirs.centre.tensors[0].tensor.to_kind(Kind::Double);
    let (d1, d2) = (
        dirs.dirs[0].tensors[0].tensor.to_kind(Kind::Double),
        dirs.dirs[1].tensors[0].tensor.to_kind(Kind::Double),
    );
    for p in &r.points {
        let wp = &w + &d1 * p.point.x + &d2 * p.point.y;
        let expected = (xd.matmul(&wp.tr()) - &yd)
            .square()
            .mean(Kind::Double)
            .double_value(&[]);
        let got = p.splits[0].loss;
        assert!(
            (got - expected).abs() <= 1e-5 * expected.max(1.0),
            "({}, {}): {got} vs {expected}",
            p.point.x,
            p.point.y
        );
        assert!(p.splits[0].accuracy.is_none());
    }
}

/// Values agree with PyTorch computing L(θ* + αδ + βη) for the same
/// parameters, directions and data (fixture from tests/fixtures/surface/generate.py).
#[test]
fn agrees_with_pytorch_fixture() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/surface/surface_reference.json"
    ))
    .unwrap();
    let f: serde_json::Value = serde_json::from_str(&text).unwrap();
    let sizes: Vec<i64> = f["sizes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    let (vs, model) = mlp(0, &sizes);
    let set = |key: &str| -> ParamSet {
        let mut names: Vec<&String> = f[key].as_object().unwrap().keys().collect();
        names.sort();
        let vars = vs.variables();
        ParamSet {
            tensors: names
                .into_iter()
                .map(|n| {
                    let v: Vec<f32> = f[key][n]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|x| x.as_f64().unwrap() as f32)
                        .collect();
                    let shape = vars[n].size();
                    NamedTensor {
                        name: n.clone(),
                        role: Role::classify(true, shape.len()),
                        tensor: Tensor::from_slice(&v).reshape(shape),
                    }
                })
                .collect(),
        }
    };
    let dirs = Directions::custom(
        set("params"),
        vec![set("dx"), set("dy")],
        DirectionKind::Custom,
        "pytorch fixture",
    )
    .unwrap();
    let xs: Vec<f32> = f["x"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    let ys: Vec<i64> = f["y"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    let x = Tensor::from_slice(&xs).reshape([ys.len() as i64, sizes[0]]);
    let y = Tensor::from_slice(&ys);
    let mut eval = ClassifierEvaluator::new(&model)
        .split("train", &x, &y)
        .unwrap()
        .batch(f["batch"].as_i64().unwrap())
        .unwrap();
    for p in f["points"].as_array().unwrap() {
        let (a, b) = (p["a"].as_f64().unwrap(), p["b"].as_f64().unwrap());
        let tmp = tempfile::tempdir().unwrap();
        let r = Surface::builder(&dirs)
            .grid(a..=a, 1, b..=b, 1)
            .build()
            .unwrap()
            .evaluate(&vs, &mut eval, tmp.path())
            .unwrap();
        let (loss, acc) = (
            r.points[0].splits[0].loss,
            r.points[0].splits[0].accuracy.unwrap(),
        );
        let want = p["loss"].as_f64().unwrap();
        assert!(
            (loss - want).abs() <= 1e-5 * want.max(1.0),
            "({a}, {b}): {loss} vs PyTorch {want}"
        );
        assert!(
            (acc - p["accuracy"].as_f64().unwrap()).abs() < 1e-9,
            "({a}, {b}): accuracy {acc}"
        );
    }
}

fn small_setup() -> (VarStore, Mlp, Tensor, Tensor) {
    let (vs, model) = mlp(7, &[64, 12, 10]);
    let (x, y) = digits_subset(150);
    (vs, model, x, y)
}

#[test]
fn resumes_without_recomputing_and_gives_identical_results() {
    let (vs, model, x, y) = small_setup();
    let dirs = Directions::random(&ParamSet::from_varstore(&vs).unwrap())
        .seed(1)
        .build()
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let mut eval = ClassifierEvaluator::new(&model)
        .split("train", &x, &y)
        .unwrap()
        .split("test", &x.narrow(0, 0, 50), &y.narrow(0, 0, 50))
        .unwrap();
    let surface = || {
        Surface::builder(&dirs)
            .grid(-1.0..=1.0, 6, -0.5..=0.5, 5)
            .flush_every(4)
    };
    // One built surface, evaluated into two directories.
    let built = surface().build().unwrap();
    let full = built
        .evaluate(&vs, &mut eval, tmp.path().join("full"))
        .unwrap();
    assert!(full.complete);
    // Cancelled after 10 points: the points finished are kept (two full
    // segments and the last two), nothing final is written.
    let part = cancel_after(surface(), 10)
        .build()
        .unwrap()
        .evaluate(&vs, &mut eval, tmp.path().join("resumed"))
        .unwrap();
    assert_eq!((part.computed, part.points.len()), (10, 10));
    assert!(!part.complete && part.sharpness.is_empty());
    assert!(!tmp.path().join("resumed/surface.parquet").exists());
    let resumed = built
        .evaluate(&vs, &mut eval, tmp.path().join("resumed"))
        .unwrap();
    // 6 × 5 grid points and θ* (off the even x axis), less the 10 kept.
    assert_eq!(resumed.computed, 21, "computed points again");
    assert!(resumed.complete);
    for split in ["train", "test"] {
        assert_eq!(full.loss(split), resumed.loss(split));
        assert_eq!(full.accuracy(split), resumed.accuracy(split));
    }
    // A finished directory is not recomputed, and loads back.
    let again = built
        .evaluate(&vs, &mut eval, tmp.path().join("resumed"))
        .unwrap();
    assert_eq!(again.computed, 0);
    let loaded = SurfaceResult::load(tmp.path().join("resumed")).unwrap();
    assert_eq!(loaded.loss("test"), full.loss("test"));
    assert_eq!(loaded.sharpness, full.sharpness);
    // A different grid in the same directory is refused.
    let err = Surface::builder(&dirs)
        .grid(-1.0..=1.0, 7, -0.5..=0.5, 5)
        .build()
        .unwrap()
        .evaluate(&vs, &mut eval, tmp.path().join("resumed"))
        .unwrap_err();
    assert!(err.to_string().contains("different surface"), "{err}");

    // A damaged segment is an error naming it when resuming, never a panic.
    let cut = tmp.path().join("cut");
    cancel_after(surface(), 5)
        .build()
        .unwrap()
        .evaluate(&vs, &mut eval, &cut)
        .unwrap();
    let seg = cut.join("points/000000.arrow");
    let bytes = std::fs::read(&seg).unwrap();
    std::fs::write(&seg, &bytes[..bytes.len() - 9]).unwrap();
    let err = built.evaluate(&vs, &mut eval, &cut).unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err:?}");
    assert!(err.to_string().contains("000000.arrow"), "{err}");
}

#[test]
fn non_square_grids_lines_and_metadata() {
    let (vs, model, x, y) = small_setup();
    let dirs = Directions::random(&ParamSet::from_varstore(&vs).unwrap())
        .seed(2)
        .normalization(Normalization::Layer)
        .ignore(Ignore::Nothing)
        .build()
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let mut eval = ClassifierEvaluator::new(&model)
        .split("train", &x, &y)
        .unwrap();
    let r = Surface::builder(&dirs)
        .grid(-2.0..=1.0, 7, 0.0..=0.5, 3)
        .build()
        .unwrap()
        .evaluate(&vs, &mut eval, tmp.path().join("g"))
        .unwrap();
    assert_eq!(r.points.len(), 21);
    let p = &r.points[10];
    assert_eq!((p.point.ix, p.point.iy), (3, 1));
    assert!((p.point.x - -0.5).abs() < 1e-12 && (p.point.y - 0.25).abs() < 1e-12);
    // Parquet metadata carries directions id, seed and normalization.
    let file = std::fs::File::open(tmp.path().join("g/surface.parquet")).unwrap();
    let reader = parquet::file::reader::SerializedFileReader::new(file).unwrap();
    let kv = parquet::file::reader::FileReader::metadata(&reader)
        .file_metadata()
        .key_value_metadata()
        .unwrap()
        .clone();
    let get = |k: &str| {
        kv.iter()
            .find(|e| e.key == k)
            .and_then(|e| e.value.clone())
            .unwrap()
    };
    assert_eq!(get("tch_landscape.seed"), "2");
    assert_eq!(get("tch_landscape.normalization"), "layer");
    assert_eq!(get("tch_landscape.directions_id"), dirs.meta.id);
    // 1-D slice along the first direction, with sharpness figures.
    let line = Directions::random(&ParamSet::from_varstore(&vs).unwrap())
        .dims(1)
        .seed(4)
        .build()
        .unwrap();
    let r = Surface::builder(&line)
        .line(-1.0..=1.0, 21)
        .build()
        .unwrap()
        .evaluate(&vs, &mut eval, tmp.path().join("l"))
        .unwrap();
    assert_eq!(r.points.len(), 21);
    let s = &r.sharpness[0];
    assert!(s.width.unwrap() > 0.0 && s.curvature_x.is_some() && s.area.is_none());
    // Directions load back identically and give the same surface.
    let loaded = Directions::load(&tmp.path().join("l/directions.parquet")).unwrap();
    assert_eq!(loaded.meta, line.meta);
    let r2 = Surface::builder(&loaded)
        .line(-1.0..=1.0, 21)
        .build()
        .unwrap()
        .evaluate(&vs, &mut eval, tmp.path().join("l2"))
        .unwrap();
    assert_eq!(r2.loss("train"), r.loss("train"));
}

#[test]
fn interpolation_hits_both_end_points() {
    let (vs_a, model, x, y) = small_setup();
    let a = ParamSet::from_varstore(&vs_a).unwrap();
    let (vs_b, model_b) = mlp(99, &[64, 12, 10]);
    let b = ParamSet::from_varstore(&vs_b).unwrap();
    let dirs = Directions::interpolation(&a, &b).unwrap();
    let mut eval = ClassifierEvaluator::new(&model)
        .split("train", &x, &y)
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let r = Surface::builder(&dirs)
        .line(-0.5..=1.5, 9)
        .build()
        .unwrap()
        .evaluate(&vs_a, &mut eval, tmp.path())
        .unwrap();
    let direct_a = eval.evaluate().unwrap()[0].loss;
    let direct_b = ClassifierEvaluator::new(&model_b)
        .split("train", &x, &y)
        .unwrap()
        .evaluate()
        .unwrap()[0]
        .loss;
    let loss = r.loss("train");
    assert!(
        (loss[2] - direct_a).abs() < 1e-6,
        "α=0: {} vs {}",
        loss[2],
        direct_a
    );
    assert!(
        (loss[6] - direct_b).abs() < 1e-5,
        "α=1: {} vs {}",
        loss[6],
        direct_b
    );
    assert_eq!(r.spec.directions.bn_stats.to_string(), "interpolated");
    // The sharpness figures are measured at the trained end (α = 1), not
    // at α = 0.
    let sh = &r.sharpness[0];
    assert_eq!(sh.reference, [1.0, 0.0]);
    assert_eq!(sh.reference_loss, loss[6]);
    assert!(
        sh.reference_label.contains("α = 1"),
        "{}",
        sh.reference_label
    );
}

#[test]
fn the_reference_point_is_measured_even_when_no_grid_point_is_there() {
    let (vs, model, x, y) = small_setup();
    let centre = ParamSet::from_varstore(&vs).unwrap();
    let dirs = Directions::random(&centre)
        .seed(3)
        .build()
        .unwrap()
        .with_reference([0.0, 0.0], "θ* (test)")
        .with_run_id("run-x");
    let mut eval = ClassifierEvaluator::new(&model)
        .split("train", &x, &y)
        .unwrap();
    let direct = eval.evaluate().unwrap()[0].loss;
    // An even grid lacks (0, 0); a one-point grid is far from it; an odd
    // grid has it.
    for (n, range, on_grid) in [
        (4, -1.0..=1.0, false),
        (1, -1.0..=-1.0, false),
        (5, -1.0..=1.0, true),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let r = Surface::builder(&dirs)
            .grid(range.clone(), n, range.clone(), n)
            .build()
            .unwrap()
            .evaluate(&vs, &mut eval, tmp.path())
            .unwrap();
        let extra = usize::from(!on_grid);
        assert_eq!(r.points.len(), n * n + extra, "n = {n}");
        assert_eq!(r.loss("train").len(), n * n);
        let at = r.reference_value("train").unwrap().loss;
        assert_eq!(at, direct, "n = {n}: the loss at θ* is the model's own");
        let sh = &r.sharpness[0];
        assert_eq!((sh.reference_loss, sh.reference_on_grid), (direct, on_grid));
        assert_eq!(sh.reference_label, "θ* (test)");
        let flagged: Vec<_> = r.points.iter().filter(|p| p.point.reference).collect();
        assert_eq!(flagged.len(), 1);
        assert_eq!(flagged[0].point.on_grid, on_grid);
        assert_eq!((flagged[0].point.x, flagged[0].point.y), (0.0, 0.0));
        // Loaded back: the same points and figures; the table says which
        // row is the reference and whose run it is.
        let loaded = SurfaceResult::load(tmp.path()).unwrap();
        assert_eq!(loaded.points, r.points);
        assert_eq!(loaded.sharpness, r.sharpness);
        if n == 1 {
            // Outside the grid's range: L0 and the largest increase only.
            assert_eq!((sh.curvature_x, sh.area), (None, None));
        } else {
            assert!(sh.area.is_some());
        }
    }
}

#[test]
fn version_1_surfaces_are_read_and_measured_at_the_trained_end() {
    // `landscape demo`'s interpolation (θ₀ → θ_20, α from −0.5 to 1.5) as
    // version 1 wrote it: its sharpness.json took L0 = 2.50 at α = 0, the
    // initialization.
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/v1/interpolation"
    );
    let old = std::fs::read_to_string(format!("{dir}/sharpness.json")).unwrap();
    assert!(old.contains("\"centre_loss\": 2.50"), "{old}");
    let r = SurfaceResult::load(dir).unwrap();
    assert_eq!(r.spec.schema_version, 1);
    assert!(r.points.iter().all(|p| p.point.on_grid));
    let sh = r.sharpness.iter().find(|s| s.split == "train").unwrap();
    assert_eq!(sh.reference, [1.0, 0.0]);
    assert!(sh.reference_loss < 0.01, "{}", sh.reference_loss);
    assert_eq!(
        Some(sh.reference_loss),
        r.reference_value("train").map(|s| s.loss)
    );
}

#[test]
fn bad_input_gets_clear_errors_and_nan_points_are_kept() {
    let (vs, model, x, y) = small_setup();
    let dirs = Directions::random(&ParamSet::from_varstore(&vs).unwrap())
        .seed(1)
        .build()
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let mut eval = ClassifierEvaluator::new(&model)
        .split("train", &x, &y)
        .unwrap();
    let e = Surface::builder(&dirs)
        .grid(1.0..=-1.0, 5, -1.0..=1.0, 5)
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("inverted"), "{e}");
    let e = Surface::builder(&dirs)
        .grid(-1.0..=1.0, 0, -1.0..=1.0, 5)
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("at least 1 point"), "{e}");
    let line = Directions::random(&ParamSet::from_varstore(&vs).unwrap())
        .dims(1)
        .seed(1)
        .build()
        .unwrap();
    let e = Surface::builder(&line)
        .grid(-1.0..=1.0, 3, -1.0..=1.0, 3)
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("two directions"), "{e}");
    for (builder, option) in [
        (Surface::builder(&dirs).flush_every(0), "flush_every"),
        (
            Surface::builder(&dirs).sharpness_epsilon(0.0),
            "sharpness epsilon",
        ),
    ] {
        let e = builder.build().unwrap_err();
        assert!(e.to_string().contains(option), "{e}");
        assert!(matches!(e, Error::InvalidArgument { .. }), "{e:?}");
    }
    // Directions of another model.
    let (other_vs, _) = mlp(1, &[64, 13, 10]);
    let e = Surface::builder(&dirs)
        .grid(-1.0..=1.0, 2, -1.0..=1.0, 2)
        .build()
        .unwrap()
        .evaluate(&other_vs, &mut eval, tmp.path().join("d"))
        .unwrap_err();
    assert!(
        e.to_string().contains("fc1.bias") || e.to_string().contains("fc1.weight"),
        "{e}"
    );
    assert!(matches!(e, Error::ShapeChanged { .. }), "{e:?}");
    let e = ClassifierEvaluator::new(&model)
        .split("train", &x, &y.narrow(0, 0, 10))
        .unwrap_err();
    assert!(e.to_string().contains("same first dimension"), "{e}");

    // NaN at some points: recorded as NaN, computation continues.
    struct NanAt<'a>(ClassifierEvaluator<'a>, usize);
    impl Evaluator for NanAt<'_> {
        fn evaluate(&mut self) -> tch_landscape::Result<Vec<SplitResult>> {
            self.1 += 1;
            let mut r = self.0.evaluate()?;
            if self.1.is_multiple_of(3) {
                r[0].loss = f64::NAN;
            }
            Ok(r)
        }
    }
    let mut nan = NanAt(
        ClassifierEvaluator::new(&model)
            .split("train", &x, &y)
            .unwrap(),
        0,
    );
    let r = Surface::builder(&dirs)
        .grid(-1.0..=1.0, 3, -1.0..=1.0, 3)
        .build()
        .unwrap()
        .evaluate(&vs, &mut nan, tmp.path().join("nan"))
        .unwrap();
    let loss = r.loss("train");
    assert_eq!(loss.iter().filter(|v| v.is_nan()).count(), 3);
    assert_eq!(
        SurfaceResult::load(tmp.path().join("nan"))
            .unwrap()
            .loss("train")
            .iter()
            .filter(|v| v.is_nan())
            .count(),
        3
    );
}

#[test]
fn parallel_replicas_match_a_single_replica() {
    let (vs, model, x, y) = small_setup();
    let dirs = Directions::random(&ParamSet::from_varstore(&vs).unwrap())
        .seed(8)
        .build()
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let mut eval = ClassifierEvaluator::new(&model)
        .split("train", &x, &y)
        .unwrap();
    let single = Surface::builder(&dirs)
        .grid(-1.0..=1.0, 5, -1.0..=1.0, 4)
        .build()
        .unwrap()
        .evaluate(&vs, &mut eval, tmp.path().join("s"))
        .unwrap();
    let centre: Vec<(String, Vec<f32>)> = dirs
        .centre
        .tensors
        .iter()
        .map(|t| {
            (
                t.name.clone(),
                Vec::<f32>::try_from(t.tensor.flatten(0, -1)).unwrap(),
            )
        })
        .collect();
    let xs = Vec::<f32>::try_from(x.flatten(0, -1)).unwrap();
    let ys = Vec::<i64>::try_from(&y).unwrap();
    let par = Surface::builder(&dirs)
        .grid(-1.0..=1.0, 5, -1.0..=1.0, 4)
        .build()
        .unwrap()
        .evaluate_parallel(
            3,
            || {
                let vs = VarStore::new(Device::Cpu);
                let m = Mlp::new(&vs.root(), &[64, 12, 10]);
                let vars = vs.variables();
                tch::no_grad(|| {
                    for (n, v) in &centre {
                        let mut t = vars[n].shallow_clone();
                        t.copy_(&Tensor::from_slice(v).reshape(t.size()));
                    }
                });
                let x = Tensor::from_slice(&xs).reshape([-1, 64]);
                let y = Tensor::from_slice(&ys);
                let e = ClassifierEvaluator::owning(m).split("train", &x, &y)?;
                Ok((vs, Box::new(e) as Box<dyn Evaluator>))
            },
            tmp.path().join("p"),
        )
        .unwrap();
    let (a, b) = (single.loss("train"), par.loss("train"));
    for (u, v) in a.iter().zip(&b) {
        assert!((u - v).abs() <= 1e-6 * u.abs().max(1.0), "{u} vs {v}");
    }
    assert_eq!(single.accuracy("train"), par.accuracy("train"));

    // A replica that panics is an error naming it; the others stop.
    let calls = AtomicUsize::new(0);
    let e = Surface::builder(&dirs)
        .grid(-1.0..=1.0, 5, -1.0..=1.0, 4)
        .build()
        .unwrap()
        .evaluate_parallel(
            2,
            || {
                if calls.fetch_add(1, Ordering::SeqCst) > 0 {
                    panic!("replica failed on purpose");
                }
                let vs = VarStore::new(Device::Cpu);
                let m = Mlp::new(&vs.root(), &[64, 12, 10]);
                let x = Tensor::from_slice(&xs).reshape([-1, 64]);
                let e =
                    ClassifierEvaluator::owning(m).split("train", &x, &Tensor::from_slice(&ys))?;
                Ok((vs, Box::new(e) as Box<dyn Evaluator>))
            },
            tmp.path().join("panic"),
        )
        .unwrap_err();
    assert!(matches!(e, Error::WorkerPanicked { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains("replica thread") && msg.contains("on purpose"),
        "{msg}"
    );
    let e = Surface::builder(&dirs)
        .build()
        .unwrap()
        .evaluate_parallel(0, || unreachable!(), tmp.path().join("zero"))
        .unwrap_err();
    assert!(e.to_string().contains("replicas"), "{e}");
}

/// Cancels the computation once `n` points are computed, as if the process
/// were killed (but the points finished are all saved).
fn cancel_after(builder: SurfaceBuilder<'_>, n: usize) -> SurfaceBuilder<'_> {
    let flag = Arc::new(AtomicBool::new(false));
    let (set, mut computed) = (flag.clone(), 0);
    builder.cancel_on(flag).on_progress(move |_, _| {
        computed += 1;
        if computed >= n {
            set.store(true, Ordering::SeqCst);
        }
    })
}

#[test]
fn a_surface_json_asking_for_absurd_grids_is_refused_before_allocating() {
    let (vs, model) = mlp(3, &[64, 8, 10]);
    let (x, y) = digits_subset(40);
    let dirs = Directions::random(&ParamSet::from_varstore(&vs).unwrap())
        .seed(1)
        .build()
        .unwrap();
    let mut eval = ClassifierEvaluator::new(&model)
        .split("train", &x, &y)
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("s");
    Surface::builder(&dirs)
        .grid(-1.0..=1.0, 3, -1.0..=1.0, 2)
        .build()
        .unwrap()
        .evaluate(&vs, &mut eval, &out)
        .unwrap();
    let spec_path = out.join("surface.json");
    let spec = std::fs::read_to_string(&spec_path).unwrap();
    for n in ["1000000000000", "9223372036854776121"] {
        let tampered = spec.replacen("\"n\": 3", &format!("\"n\": {n}"), 1);
        assert_ne!(tampered, spec, "the spec's x axis is written as \"n\": 3");
        std::fs::write(&spec_path, tampered).unwrap();
        let e = SurfaceResult::load(&out).unwrap_err().to_string();
        assert!(e.contains("surface.json") && e.contains("points"), "{e}");
    }
}
