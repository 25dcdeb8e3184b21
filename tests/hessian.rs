//! Hessian analyses: Lanczos eigenvalues, Hutchinson traces and SLQ densities
//! against closed forms (linear regression with MSE, where H = 2XᵀX/N, and an
//! indefinite quadratic), HVPs against finite differences of gradients,
//! batch averaging, determinism, errors, and curvature maps over a grid.

mod common;

use common::{digits_subset, snapshot_bits};

use nalgebra::{DMatrix, SymmetricEigen};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tch::nn::{self, Module, VarStore};
use tch::{Device, Kind, Tensor};
use tch_landscape::analysis::directions::Directions;
use tch_landscape::analysis::evaluator::{ClassifierEvaluator, LossKind};
use tch_landscape::analysis::hessian::{
    merge_curvature_shards, Curvature, CurvatureMap, Hessian, HessianParams, Hutchinson, Lanczos,
    Objective, Slq, SupervisedObjective, CURVATURE_FILE, CURVATURE_META_KEY,
};
use tch_landscape::analysis::params::ParamSet;
use tch_landscape::analysis::shard::Shard;
use tch_landscape::analysis::surface::Surface;
use tch_landscape::models::Mlp;
use tch_landscape::tensor::Selection;
use tch_landscape::{Error, Result};

fn normals(seed: u64, n: usize) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| StandardNormal.sample(&mut rng)).collect()
}

fn rel_err(a: &[f64], b: &[f64]) -> f64 {
    let diff: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).powi(2))
        .sum::<f64>()
        .sqrt();
    let norm: f64 = b.iter().map(|y| y * y).sum::<f64>().sqrt();
    diff / norm
}

fn assert_rel(a: f64, b: f64, tol: f64, what: &str) {
    assert!(
        (a - b).abs() <= tol * b.abs(),
        "{what}: {a} vs {b} (relative error {:.3e})",
        (a - b).abs() / b.abs()
    );
}

/// Linear regression without bias, float64: loss = mean((Xw − y)²), so the
/// Hessian is exactly 2XᵀX/N whatever w and y are.
struct LinReg {
    vs: VarStore,
    model: nn::Linear,
    x: Tensor,
    y: Tensor,
    /// 2XᵀX/N.
    h: DMatrix<f64>,
}

fn linreg(n: usize, d: usize, seed: u64) -> LinReg {
    // Columns on different scales give a spread spectrum.
    let raw = normals(seed, n * d);
    let xs: Vec<f64> = (0..n * d)
        .map(|k| raw[k] * (0.2 + 0.15 * (k % d) as f64))
        .collect();
    let x = Tensor::from_slice(&xs).reshape([n as i64, d as i64]);
    let y = Tensor::from_slice(&normals(seed + 1, n)).reshape([n as i64, 1]);
    tch::manual_seed(seed as i64);
    let mut vs = VarStore::new(Device::Cpu);
    let cfg = nn::LinearConfig {
        bias: false,
        ..Default::default()
    };
    let model = nn::linear(vs.root() / "fc", d as i64, 1, cfg);
    vs.double();
    let xm = DMatrix::from_row_slice(n, d, &xs);
    let h = xm.transpose() * &xm * (2.0 / n as f64);
    LinReg { vs, model, x, y, h }
}

impl LinReg {
    fn objective(&self, batch: i64) -> SupervisedObjective<'_> {
        SupervisedObjective::new(&self.model, &self.x, &self.y)
            .unwrap()
            .batch(batch)
            .unwrap()
            .loss(LossKind::Mse)
    }

    /// Exact eigenvalues, ascending.
    fn eigenvalues(&self) -> Vec<f64> {
        let mut e: Vec<f64> = SymmetricEigen::new(self.h.clone())
            .eigenvalues
            .iter()
            .copied()
            .collect();
        e.sort_by(f64::total_cmp);
        e
    }
}

#[test]
fn linear_regression_eigenvalues_match_the_closed_form() {
    let lr = linreg(120, 30, 1);
    let exact = lr.eigenvalues();
    let mut h = Hessian::at(&lr.vs, lr.objective(1000), &Selection::Weights).unwrap();
    assert_eq!(h.dim(), 30);

    // One HVP equals H v.
    let v = normals(9, 30);
    let hv = h.hvp(&v).unwrap();
    let want: Vec<f64> = (&lr.h * nalgebra::DVector::from_vec(v))
        .iter()
        .copied()
        .collect();
    assert!(
        rel_err(&hv, &want) < 1e-12,
        "HVP relative error {:.3e}",
        rel_err(&hv, &want)
    );

    let opts = Lanczos::builder()
        .tol(1e-8)
        .top_k(3)
        .bottom_k(2)
        .build()
        .unwrap();
    let s = h.eigenvalues(&opts).unwrap();
    assert_rel(s.lambda_max, exact[29], 1e-4, "λmax");
    assert_rel(s.lambda_min, exact[0], 1e-4, "λmin");
    for (i, t) in s.top.iter().enumerate() {
        assert_rel(*t, exact[29 - i], 1e-4, "top-k");
    }
    for (i, b) in s.bottom.iter().enumerate() {
        assert_rel(*b, exact[i], 1e-4, "bottom-k");
    }
    assert!(s.hvps <= 30 && s.hvps >= 3, "{} HVPs", s.hvps);
    assert_eq!(h.hvps(), 1 + s.hvps);
    assert_rel(s.abs_ratio(), exact[0] / exact[29], 1e-4, "ratio");
}

#[test]
fn krylov_exhaustion_on_a_tiny_problem_gives_exact_values() {
    let lr = linreg(20, 4, 2);
    let exact = lr.eigenvalues();
    let mut h = Hessian::at(&lr.vs, lr.objective(20), &Selection::Weights).unwrap();
    let opts = Lanczos::builder().tol(1e-12).top_k(4).build().unwrap();
    let s = h.eigenvalues(&opts).unwrap();
    assert!(s.exhausted);
    assert_eq!(s.hvps, 4);
    for (i, t) in s.top.iter().enumerate() {
        assert_rel(*t, exact[3 - i], 1e-10, "top-k");
    }
}

#[test]
fn hutchinson_trace_is_within_three_standard_errors() {
    let lr = linreg(120, 30, 3);
    let exact: f64 = lr.h.trace();
    let mut h = Hessian::at(&lr.vs, lr.objective(1000), &Selection::Weights).unwrap();
    let t = h
        .trace(&Hutchinson::builder().probes(100).seed(5).build().unwrap())
        .unwrap();
    assert_eq!((t.probes, t.hvps, t.values.len()), (100, 100, 100));
    assert!(t.std_error > 0.0);
    assert!(
        (t.estimate - exact).abs() <= 3.0 * t.std_error,
        "trace {} ± {} vs exact {exact}",
        t.estimate,
        t.std_error
    );
    // The standard error is the sample std of the probe values / √n.
    let mean = t.values.iter().sum::<f64>() / 100.0;
    let sd = (t.values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 99.0).sqrt();
    assert_rel(t.std_error, sd / 10.0, 1e-12, "standard error");

    let many = h
        .trace(&Hutchinson::builder().probes(3000).seed(6).build().unwrap())
        .unwrap();
    assert_rel(many.estimate, exact, 0.03, "trace with 3000 probes");
    assert!(many.std_error < t.std_error);
}

#[test]
fn uneven_batches_are_averaged_into_the_full_data_hessian() {
    let lr = linreg(100, 12, 4);
    // 100 samples in batches of 40: 40, 40, 20.
    let mut one = Hessian::at(&lr.vs, lr.objective(100), &Selection::Weights).unwrap();
    let mut three = Hessian::at(&lr.vs, lr.objective(40), &Selection::Weights).unwrap();
    assert_eq!(three.objective().num_batches(), 3);
    let v = normals(11, 12);
    let (a, b) = (one.hvp(&v).unwrap(), three.hvp(&v).unwrap());
    assert!(
        rel_err(&b, &a) < 1e-12,
        "batched HVP differs by {:.3e}",
        rel_err(&b, &a)
    );
    assert_rel(three.loss().unwrap(), one.loss().unwrap(), 1e-12, "loss");
    let (ga, gb) = (one.gradient().unwrap(), three.gradient().unwrap());
    assert!(rel_err(&gb, &ga) < 1e-12);
    let opts = Lanczos::builder().tol(1e-9).build().unwrap();
    let (s1, s3) = (
        one.eigenvalues(&opts).unwrap(),
        three.eigenvalues(&opts).unwrap(),
    );
    assert_rel(s3.lambda_max, s1.lambda_max, 1e-10, "λmax");
    assert_rel(s3.lambda_min, s1.lambda_min, 1e-10, "λmin");
    // The average is exactly 2XᵀX/N (a sum over batches would not be).
    let exact = lr.eigenvalues();
    assert_rel(s3.lambda_max, exact[11], 1e-6, "λmax exact");
}

/// Sets the selected parameters to `flat` (in HessianParams order).
fn set_flat(vs: &VarStore, names: &[String], flat: &[f64]) {
    let vars = vs.variables();
    let mut pos = 0;
    tch::no_grad(|| {
        for n in names {
            let mut t = vars[n].shallow_clone();
            let k = t.numel();
            let v = Tensor::from_slice(&flat[pos..pos + k])
                .reshape(t.size())
                .to_kind(t.kind());
            t.copy_(&v);
            pos += k;
        }
    });
}

/// A smooth MLP (tanh), so the finite difference has no kinks to cross.
#[derive(Debug)]
struct TanhMlp {
    fc1: nn::Linear,
    fc2: nn::Linear,
}

impl Module for TanhMlp {
    fn forward(&self, xs: &Tensor) -> Tensor {
        xs.apply(&self.fc1).tanh().apply(&self.fc2)
    }
}

fn check_hvp_against_finite_difference(
    vs: &VarStore,
    objective: impl Objective,
    selection: &Selection,
) {
    let mut h = Hessian::at(vs, objective, selection).unwrap();
    let names = h.params().names().to_vec();
    let theta = h.params().values().unwrap();
    let v = normals(21, h.dim());
    let hv = h.hvp(&v).unwrap();
    let eps = 1e-5;
    let shifted =
        |s: f64| -> Vec<f64> { theta.iter().zip(&v).map(|(t, d)| t + s * eps * d).collect() };
    set_flat(vs, &names, &shifted(1.0));
    let gp = h.gradient().unwrap();
    set_flat(vs, &names, &shifted(-1.0));
    let gm = h.gradient().unwrap();
    set_flat(vs, &names, &theta);
    let fd: Vec<f64> = gp
        .iter()
        .zip(&gm)
        .map(|(p, m)| (p - m) / (2.0 * eps))
        .collect();
    let err = rel_err(&hv, &fd);
    assert!(
        err < 1e-3,
        "{selection:?}: HVP vs finite difference relative error {err:.3e}"
    );
    assert!(hv.iter().any(|x| x.abs() > 1e-6), "HVP is zero");
}

#[test]
fn mlp_hvp_matches_central_finite_difference_of_gradients() {
    let x = Tensor::from_slice(&normals(30, 64 * 6)).reshape([64, 6]);
    let y = Tensor::from_slice(&(0..64).map(|i| (i * 7 % 3) as i64).collect::<Vec<_>>());

    // The crate's ReLU MLP in float64, cross-entropy, 3 batches (25, 25, 14).
    tch::manual_seed(3);
    let mut vs = VarStore::new(Device::Cpu);
    let mlp = Mlp::new(&vs.root(), &[6, 12, 12, 3]);
    vs.double();
    for sel in [Selection::Weights, Selection::Trainable] {
        let obj = SupervisedObjective::new(&mlp, &x, &y)
            .unwrap()
            .batch(25)
            .unwrap();
        check_hvp_against_finite_difference(&vs, obj, &sel);
    }

    // A smooth one, with a name list.
    tch::manual_seed(4);
    let mut vs = VarStore::new(Device::Cpu);
    let tanh = TanhMlp {
        fc1: nn::linear(vs.root() / "fc1", 6, 10, Default::default()),
        fc2: nn::linear(vs.root() / "fc2", 10, 3, Default::default()),
    };
    vs.double();
    let obj = SupervisedObjective::new(&tanh, &x, &y)
        .unwrap()
        .batch(30)
        .unwrap();
    let sel = Selection::Names(vec![
        "fc2.weight".into(),
        "fc1.bias".into(),
        "fc1.weight".into(),
    ]);
    check_hvp_against_finite_difference(&vs, obj, &sel);
}

/// loss = ½ xᵀAx for a parameter vector x: H = A, indefinite.
#[derive(Debug)]
struct Quadratic {
    x: Tensor,
    a: Tensor,
}

impl Objective for Quadratic {
    fn num_batches(&self) -> usize {
        1
    }
    fn batch_loss(&mut self, _b: usize) -> Result<(Tensor, usize)> {
        Ok(((self.x.dot(&self.a.mv(&self.x))) * 0.5, 1))
    }
    fn describe(&self) -> String {
        "½ xᵀAx".into()
    }
}

#[test]
fn indefinite_quadratic_gives_the_negative_lambda_min() {
    let d = 12;
    let eig = [
        -3.0, -0.5, -0.01, 0.1, 0.2, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0,
    ];
    // A = Q diag(λ) Qᵀ with Q orthogonal (QR of a Gaussian matrix).
    let q = DMatrix::from_row_slice(d, d, &normals(40, d * d)).qr().q();
    let a = &q * DMatrix::from_diagonal(&nalgebra::DVector::from_row_slice(&eig)) * q.transpose();
    let a_rows: Vec<f64> = (0..d)
        .flat_map(|i| (0..d).map(move |j| (i, j)))
        .map(|(i, j)| a[(i, j)])
        .collect();
    let mut vs = VarStore::new(Device::Cpu);
    let _x = vs.root().var(
        "x",
        &[d as i64],
        nn::Init::Randn {
            mean: 0.0,
            stdev: 1.0,
        },
    );
    vs.double();
    let x = vs.variables()["x"].shallow_clone();
    let obj = Quadratic {
        x,
        a: Tensor::from_slice(&a_rows).reshape([d as i64, d as i64]),
    };

    // x is 1-D: the default selection (dim > 1) is empty, and says so.
    match Hessian::at(
        &vs,
        Quadratic {
            x: obj.x.shallow_clone(),
            a: obj.a.shallow_clone(),
        },
        &Selection::Weights,
    ) {
        Err(Error::InvalidArgument { reason, .. }) => {
            assert!(reason.contains("selects no tensor"), "{reason}")
        }
        other => panic!("expected an empty-selection error, got {other:?}"),
    }

    let mut h = Hessian::at(&vs, obj, &Selection::Trainable).unwrap();
    let opts = Lanczos::builder()
        .tol(1e-8)
        .top_k(2)
        .bottom_k(3)
        .build()
        .unwrap();
    let s = h.eigenvalues(&opts).unwrap();
    assert_rel(s.lambda_min, -3.0, 1e-6, "λmin");
    assert_rel(s.lambda_max, 4.0, 1e-6, "λmax");
    assert_rel(s.bottom[1], -0.5, 1e-6, "second smallest");
    assert_rel(s.bottom[2], -0.01, 1e-4, "third smallest");
    assert_rel(s.top[1], 3.0, 1e-6, "second largest");
    assert_rel(s.abs_ratio(), 0.75, 1e-6, "ratio");

    // Trace: exact sum of eigenvalues with many probes.
    let exact: f64 = eig.iter().sum();
    let t = h
        .trace(&Hutchinson::builder().probes(4000).seed(1).build().unwrap())
        .unwrap();
    assert!(
        (t.estimate - exact).abs() <= 3.0 * t.std_error,
        "{} ± {} vs {exact}",
        t.estimate,
        t.std_error
    );

    // SLQ with as many steps as dimensions: the nodes are the eigenvalues.
    let dens = h
        .density(
            &Slq::builder()
                .probes(4)
                .steps(100)
                .bins(2000)
                .build()
                .unwrap(),
        )
        .unwrap();
    for (nodes, weights) in dens.nodes.iter().zip(&dens.weights) {
        assert_eq!(nodes.len(), d);
        for (n, e) in nodes.iter().zip(&eig) {
            assert!((n - e).abs() < 1e-8, "node {n} vs eigenvalue {e}");
        }
        assert_rel(weights.iter().sum::<f64>(), 1.0, 1e-10, "weights");
    }
    let step = dens.grid[1] - dens.grid[0];
    assert_rel(
        dens.density.iter().sum::<f64>() * step,
        1.0,
        1e-8,
        "density integral",
    );
    assert!(dens.grid[0] < -3.0 && *dens.grid.last().unwrap() > 4.0);
    assert_eq!(dens.hvps, 4 * d);
    let json = serde_json::to_string(&dens.options).unwrap();
    assert!(json.contains("\"seed\":0"), "{json}");
}

#[test]
fn iteration_cap_gives_an_error_not_a_value() {
    let lr = linreg(120, 30, 5);
    let mut h = Hessian::at(&lr.vs, lr.objective(1000), &Selection::Weights).unwrap();
    let opts = Lanczos::builder().tol(1e-8).max_iter(3).build().unwrap();
    match h.eigenvalues(&opts) {
        Err(e @ Error::NotConverged { .. }) => {
            let Error::NotConverged {
                method,
                iterations,
                residual,
                tol,
                ..
            } = &e
            else {
                unreachable!()
            };
            assert_eq!((*method, *iterations, *tol), ("Lanczos", 3, 1e-8));
            assert!(*residual > *tol, "residual {residual}");
            let msg = e.to_string();
            assert!(msg.contains("did not converge to tol"), "{msg}");
            assert!(msg.contains("raise max_iter or tol"), "{msg}");
            assert!(msg.contains("λmax ≈"), "{msg}");
        }
        other => panic!("expected a non-convergence error, got {other:?}"),
    }
    assert_eq!(h.hvps(), 3);
}

#[test]
fn results_are_deterministic_for_a_seed() {
    let (x, y) = digits_subset(300);
    tch::manual_seed(8);
    let vs = VarStore::new(Device::Cpu);
    let mlp = Mlp::new(&vs.root(), &[64, 24, 10]);
    let run = |seed: u64| {
        let obj = SupervisedObjective::new(&mlp, &x, &y)
            .unwrap()
            .batch(128)
            .unwrap();
        let mut h = Hessian::at(&vs, obj, &Selection::Weights).unwrap();
        let s = h
            .eigenvalues(&Lanczos::builder().seed(seed).build().unwrap())
            .unwrap();
        let t = h
            .trace(&Hutchinson::builder().probes(10).seed(seed).build().unwrap())
            .unwrap();
        (s, t)
    };
    let (s1, t1) = run(3);
    let (s2, t2) = run(3);
    assert_eq!(s1, s2, "same seed, different spectrum");
    assert_eq!(t1, t2, "same seed, different trace");
    let (s3, t3) = run(4);
    assert_ne!(t1.values, t3.values);
    // Another seed converges to the same values within the tolerance.
    assert_rel(s3.lambda_max, s1.lambda_max, 3e-3, "λmax across seeds");
}

#[test]
fn bad_input_gives_errors() {
    let lr = linreg(20, 4, 6);
    let names = |v: &[&str]| Selection::Names(v.iter().map(|s| s.to_string()).collect());
    assert!(matches!(
        HessianParams::select(&lr.vs, &names(&["nope"])),
        Err(Error::UnknownTensor { .. })
    ));
    assert!(HessianParams::select(&lr.vs, &names(&["fc.weight", "fc.weight"])).is_err());
    let _buffer = lr.vs.root().zeros_no_train("buffer", &[3]);
    match HessianParams::select(&lr.vs, &names(&["buffer"])) {
        Err(Error::InvalidArgument { reason, .. }) => {
            assert!(reason.contains("requires_grad"), "{reason}")
        }
        other => panic!("expected an error for a buffer, got {other:?}"),
    }
    let mut h = Hessian::at(&lr.vs, lr.objective(20), &Selection::Weights).unwrap();
    assert!(h.hvp(&[1.0, 2.0]).is_err(), "wrong vector length accepted");
    assert!(Hutchinson::builder().probes(1).build().is_err());
    // Settings are validated once, when built, and the error names the option.
    for (bad, option) in [
        (Lanczos::builder().tol(0.0), "tol"),
        (Lanczos::builder().tol(f64::NAN), "tol"),
        (Lanczos::builder().max_iter(0), "max_iter"),
        (Lanczos::builder().bottom_k(0), "bottom_k"),
    ] {
        match bad.clone().build() {
            Err(Error::InvalidArgument { option: o, .. }) => assert!(o.contains(option), "{o}"),
            other => panic!("{bad:?} accepted: {other:?}"),
        }
    }
    // k larger than the dimension is known only when it runs.
    let too_many = Lanczos::builder().top_k(5).build().unwrap();
    assert!(h.eigenvalues(&too_many).is_err(), "top_k 5 of 4 accepted");
    assert!(Slq::builder().bins(1).build().is_err());
    assert!(SupervisedObjective::new(&lr.model, &lr.x, &lr.y.narrow(0, 0, 5)).is_err());
    assert!(SupervisedObjective::new(&lr.model, &lr.x, &lr.y)
        .unwrap()
        .batch(0)
        .is_err());

    // An objective whose loss is not a scalar, or has no graph.
    struct Bad(bool);
    impl Objective for Bad {
        fn num_batches(&self) -> usize {
            1
        }
        fn batch_loss(&mut self, _b: usize) -> Result<(Tensor, usize)> {
            Ok(if self.0 {
                (Tensor::ones([3], (Kind::Double, Device::Cpu)), 3)
            } else {
                (Tensor::from(1.0f64), 3)
            })
        }
    }
    for b in [true, false] {
        let mut h = Hessian::at(&lr.vs, Bad(b), &Selection::Weights).unwrap();
        assert!(h.hvp(&[0.0; 4]).is_err());
    }
    // An objective on another model: no silent zero Hessian.
    let other = linreg(20, 4, 7);
    let mut h = Hessian::at(&lr.vs, other.objective(20), &Selection::Weights).unwrap();
    match h.hvp(&[1.0; 4]) {
        Err(Error::InvalidArgument { reason, .. }) => {
            assert!(
                reason.contains("does not depend on any selected parameter"),
                "{reason}"
            )
        }
        other => panic!("expected an error, got {other:?}"),
    }
    // The generic Lanczos refuses a dimension of 0.
    assert!(Lanczos::default().run(0, |v| Ok(v.to_vec())).is_err());
    // `all` refuses the buffer among the selected tensors, naming it.
    match Hessian::at(&lr.vs, lr.objective(20), &Selection::All) {
        Err(Error::InvalidArgument { reason, .. }) => {
            assert!(reason.contains("'buffer'"), "{reason}")
        }
        other => panic!("expected `all` to refuse the buffer, got {other:?}"),
    }
}

#[test]
fn curvature_map_restores_the_model_and_its_centre_is_a_direct_lanczos_call() {
    let (x, y) = digits_subset(200);
    tch::manual_seed(11);
    let vs = VarStore::new(Device::Cpu);
    let mlp = Mlp::new(&vs.root(), &[64, 16, 10]);
    let before = snapshot_bits(&vs);
    let dirs = Directions::random(&ParamSet::from_varstore(&vs).unwrap())
        .seed(7)
        .build()
        .unwrap();
    let opts = Lanczos::builder().tol(1e-3).seed(2).build().unwrap();
    let objective = || {
        SupervisedObjective::new(&mlp, &x, &y)
            .unwrap()
            .batch(128)
            .unwrap()
    };
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("curv");
    let curvature = |lanczos: &Lanczos| {
        let surface = Surface::builder(&dirs)
            .grid(-0.5..=0.5, 3, -0.5..=0.5, 3)
            .build()
            .unwrap();
        Curvature::builder(surface)
            .selection(Selection::Weights)
            .lanczos(lanczos.clone())
            .build()
            .unwrap()
    };
    let map = curvature(&opts).evaluate(&vs, objective(), &out).unwrap();
    assert_eq!(
        snapshot_bits(&vs),
        before,
        "parameters differ after the curvature map"
    );
    assert!(map.complete);
    assert_eq!((map.points.len(), map.computed), (9, 9));

    let direct = Hessian::at(&vs, objective(), &Selection::Weights)
        .unwrap()
        .eigenvalues(&opts)
        .unwrap();
    let c = map.centre().expect("grid has its centre");
    assert_eq!((c.ix, c.iy), (1, 1));
    assert_eq!(c.lambda_max, direct.lambda_max);
    assert_eq!(c.lambda_min, direct.lambda_min);
    assert_eq!(c.abs_ratio, direct.abs_ratio());
    // The solver's figures of the same run, and only the centre is the
    // reference point.
    let solver = c.solver.expect("solver figures");
    assert_eq!(solver.hvps, direct.hvps as u64);
    assert_eq!(solver.residual_max, direct.top_residuals[0]);
    assert_eq!(solver.residual_min, direct.bottom_residuals[0]);
    assert!(solver.converged && solver.seconds > 0.0);
    assert!(c.reference);
    assert_eq!(map.points.iter().filter(|p| p.reference).count(), 1);
    for p in &map.points {
        assert!(p.lambda_max > 0.0 && p.lambda_min <= p.lambda_max);
        assert_eq!(p.abs_ratio, (p.lambda_min / p.lambda_max).abs());
        let s = p.solver.expect("solver figures");
        assert!(s.hvps > 0 && s.residual_max <= 1e-3 * p.lambda_max.abs());
    }
    // A curvature map has no sharpness figures: no (empty) sharpness.json.
    assert!(!out.join("sharpness.json").exists());
    assert_eq!(map.lambda_max()[4], c.lambda_max);

    // The clean table reads back, with its settings in metadata.
    let loaded = CurvatureMap::load(&out).unwrap();
    assert_eq!(loaded.points, map.points);
    assert_eq!(loaded.spec, map.spec);
    assert_eq!(loaded.spec.directions.id, dirs.meta.id);
    assert_eq!(loaded.spec.lanczos, opts);
    let file = std::fs::File::open(out.join(CURVATURE_FILE)).unwrap();
    let builder =
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
    let cols: Vec<String> = builder
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(
        cols,
        [
            "index",
            "ix",
            "iy",
            "x",
            "y",
            "lambda_min",
            "lambda_max",
            "abs_ratio",
            "hvps",
            "residual_max",
            "residual_min",
            "converged",
            "seconds",
            "reference"
        ]
    );
    let kv = builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .unwrap();
    for key in [
        CURVATURE_META_KEY,
        "tch_landscape.directions_id",
        "tch_landscape.tol",
        "tch_landscape.lanczos_seed",
    ] {
        assert!(kv.iter().any(|k| k.key == key), "metadata lacks {key}");
    }
    let meta = builder.metadata().row_group(0).column(5).compression();
    assert!(format!("{meta:?}").contains("ZSTD"), "{meta:?}");
    // The wall times as written (they are not part of point equality).
    use arrow::array::Array;
    let table = builder.build().unwrap().next().unwrap().unwrap();
    let seconds = table
        .column(12)
        .as_any()
        .downcast_ref::<arrow::array::Float64Array>()
        .unwrap();
    for p in &loaded.points {
        assert_eq!(seconds.value(p.index), p.solver.unwrap().seconds);
    }

    // A finished map is not recomputed.
    let again = curvature(&opts).evaluate(&vs, objective(), &out).unwrap();
    assert_eq!(again.computed, 0);
    assert_eq!(again.points, map.points);

    // Other settings in the same directory are refused.
    let other = curvature(&Lanczos::builder().tol(1e-2).seed(2).build().unwrap()).evaluate(
        &vs,
        objective(),
        &out,
    );
    assert!(other.is_err(), "a different tolerance resumed the same map");
}

#[test]
fn curvature_map_resumes_and_parallel_replicas_agree() {
    let (x, y) = digits_subset(150);
    tch::manual_seed(12);
    let vs = VarStore::new(Device::Cpu);
    let mlp = Mlp::new(&vs.root(), &[64, 12, 10]);
    let dirs = Directions::random(&ParamSet::from_varstore(&vs).unwrap())
        .seed(3)
        .build()
        .unwrap();
    let opts = Lanczos::builder().tol(1e-4).build().unwrap();
    let objective = || {
        SupervisedObjective::new(&mlp, &x, &y)
            .unwrap()
            .batch(64)
            .unwrap()
    };
    let tmp = tempfile::tempdir().unwrap();
    let curvature = |stop: Option<usize>| {
        let mut surface = Surface::builder(&dirs)
            .grid(-1.0..=1.0, 3, -1.0..=1.0, 2)
            .flush_every(2);
        if let Some(n) = stop {
            // Stops after n points, as if killed (the finished ones are kept).
            let flag = Arc::new(AtomicBool::new(false));
            let (set, mut computed) = (flag.clone(), 0);
            surface = surface.cancel_on(flag).on_progress(move |_, _| {
                computed += 1;
                if computed >= n {
                    set.store(true, Ordering::SeqCst);
                }
            });
        }
        Curvature::builder(surface.build().unwrap())
            .lanczos(opts.clone())
            .build()
            .unwrap()
    };
    let map = |out: &str, stop: Option<usize>| {
        curvature(stop)
            .evaluate(&vs, objective(), tmp.path().join(out))
            .unwrap()
    };
    let full = map("full", None);
    let part = map("resumed", Some(3));
    assert!(!part.complete);
    assert!(!tmp.path().join("resumed").join(CURVATURE_FILE).exists());
    let rest = map("resumed", None);
    // 3 × 2 grid points and θ* (y = ±1 has no row through 0): 7 points.
    assert_eq!((rest.computed, rest.points.len()), (4, 7));
    assert!(rest.complete);
    assert_eq!(rest.points, full.points);

    let par = curvature(None)
        .evaluate_parallel(
            2,
            || {
                let vs = VarStore::new(Device::Cpu);
                let m = Mlp::new(&vs.root(), &[64, 12, 10]);
                let (x, y) = digits_subset(150);
                let obj: Box<dyn Objective> =
                    Box::new(SupervisedObjective::owning(m, &x, &y)?.batch(64)?);
                Ok((vs, obj))
            },
            tmp.path().join("parallel"),
        )
        .unwrap();
    assert!(par.complete);
    for (p, f) in par.points.iter().zip(&full.points) {
        assert_eq!(p.index, f.index);
        assert_rel(p.lambda_max, f.lambda_max, 1e-4, "parallel λmax");
        assert_rel(p.lambda_min, f.lambda_min, 1e-3, "parallel λmin");
    }
}

#[test]
fn merging_surface_shards_as_curvature_maps_is_an_error() {
    let (x, y) = digits_subset(60);
    tch::manual_seed(13);
    let vs = VarStore::new(Device::Cpu);
    let mlp = Mlp::new(&vs.root(), &[64, 8, 10]);
    let dirs = Directions::random(&ParamSet::from_varstore(&vs).unwrap())
        .seed(5)
        .build()
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let shards: Vec<_> = (0..2).map(|i| tmp.path().join(format!("s{i}"))).collect();
    for (i, dir) in shards.iter().enumerate() {
        let mut eval = ClassifierEvaluator::new(&mlp)
            .split("train", &x, &y)
            .unwrap();
        Surface::builder(&dirs)
            .grid(-0.5..=0.5, 2, -0.5..=0.5, 2)
            .shard(Shard::new(i, 2).unwrap())
            .build()
            .unwrap()
            .evaluate(&vs, &mut eval, dir)
            .unwrap();
    }
    match merge_curvature_shards(&shards, tmp.path().join("merged")) {
        Err(e @ Error::ShardMismatch { .. }) => {
            assert!(e.to_string().contains("not a curvature map"), "{e}")
        }
        other => panic!("expected a shard mismatch, got {other:?}"),
    }
    assert!(
        !tmp.path().join("merged").exists(),
        "a refused merge wrote output"
    );

    // A selection naming no tensor is refused when the map is built.
    let e = Curvature::builder(Surface::builder(&dirs).build().unwrap())
        .selection(Selection::Names(vec![]))
        .build()
        .unwrap_err();
    assert!(matches!(e, Error::InvalidArgument { .. }), "{e}");
}
