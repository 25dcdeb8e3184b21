//! A user's own model from the command line, end to end: a TorchScript CNN
//! with BatchNorm made by `tests/fixtures/script/make_cnn.py`, trained from
//! Rust through `ScriptModel` with the recorder attached, then every
//! evaluating subcommand on it (`surface` with random, PCA and recalibrated
//! variants, `interpolate` between snapshots and between runs, `curvature`
//! at a point and as a map, `report`), with the values at the centre equal to
//! a direct evaluation of the module; and the bad inputs a user makes.
//!
//! Python with torch: $TCH_LANDSCAPE_PYTHON (set by `./landscape-dev test`),
//! else the one `./landscape-dev setup` installs.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use tch::nn::{self, OptimizerConfig, VarStore};
use tch::{Device, Kind, Tensor};
use tch_landscape::analysis::animate::AnimationResult;
use tch_landscape::analysis::evaluator::{ClassifierEvaluator, Evaluator};
use tch_landscape::analysis::model_check::ModelMatch;
use tch_landscape::analysis::surface::SurfaceResult;
use tch_landscape::data::digits::Digits;
use tch_landscape::store::hessian::read_hessian;
use tch_landscape::{Recorder, Run, ScriptModel};

/// cnn.pt and cnn-wide.pt in `dir`, made by the committed fixture script.
fn make_models(dir: &Path) {
    let script = common::repo_root().join("tests/fixtures/script/make_cnn.py");
    let out = Command::new(common::python())
        .arg(&script)
        .arg(dir)
        .output()
        .expect("running make_cnn.py");
    assert!(
        out.status.success(),
        "make_cnn.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The digits as images [N, 1, 8, 8], split 1437 / 360 like the demo.
fn digits() -> (Tensor, Tensor, Tensor, Tensor) {
    let (train, test) = Digits::load().unwrap().split_at(1437).unwrap();
    let img = |x: &Tensor| x.reshape([-1, 1, 8, 8]);
    (img(&train.x), train.y, img(&test.x), test.y)
}

/// digits.safetensors and digits.npz in `dir`.
fn write_data(dir: &Path) -> (PathBuf, PathBuf) {
    let (xt, yt, xv, yv) = digits();
    let named = [
        ("x_train", &xt),
        ("y_train", &yt),
        ("x_test", &xv),
        ("y_test", &yv),
    ];
    let (st, npz) = (dir.join("digits.safetensors"), dir.join("digits.npz"));
    Tensor::write_safetensors(&named, &st).unwrap();
    Tensor::write_npz(&named, &npz).unwrap();
    (st, npz)
}

/// Trains the TorchScript CNN for `epochs` with the recorder attached.
fn record(model_file: &Path, run: &Path, epochs: u64, seed: i64) {
    tch::manual_seed(seed);
    let vs = VarStore::new(Device::Cpu);
    let model = ScriptModel::load(model_file, &vs).unwrap();
    let mut opt = nn::Adam::default().build(&vs, 1e-2).unwrap();
    let (x, y, _, _) = digits();
    let mut rec = Recorder::builder(run).build(&vs).unwrap();
    for epoch in 1..=epochs {
        let perm = Tensor::randperm(x.size()[0], (Kind::Int64, Device::Cpu));
        let mut total = 0.0;
        for idx in perm.split(128, 0) {
            let out = model.f_forward_t(&x.index_select(0, &idx), true).unwrap();
            let loss = out.cross_entropy_for_logits(&y.index_select(0, &idx));
            opt.backward_step(&loss);
            total += loss.double_value(&[]);
        }
        rec.on_epoch_end(epoch, &[("train_loss", total / 12.0)])
            .unwrap();
    }
    rec.finish().unwrap();
}

fn landscape(args: &[&str]) -> (String, f64) {
    let t0 = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_landscape"))
        .args(args)
        .output()
        .unwrap();
    let secs = t0.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "landscape {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!("landscape {}: {secs:.2} s", args[0]);
    (String::from_utf8_lossy(&out.stdout).into_owned(), secs)
}

fn landscape_err(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_landscape"))
        .args(args)
        .output()
        .unwrap();
    assert!(!out.status.success(), "landscape {args:?} succeeded");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err}");
    assert!(!err.contains("panicked"), "{err}");
    err
}

/// Loss and accuracy of the module at snapshot `i`, evaluated directly.
fn direct(model_file: &Path, run: &Path, i: usize) -> Vec<(String, f64, Option<f64>)> {
    let vs = VarStore::new(Device::Cpu);
    let model = ScriptModel::load(model_file, &vs).unwrap();
    let run = Run::open(run).unwrap();
    ModelMatch::check(&run, &vs, false)
        .unwrap()
        .load(&run, i, &vs)
        .unwrap();
    let (xt, yt, xv, yv) = digits();
    let mut eval = ClassifierEvaluator::new(&model)
        .split("train", &xt, &yt)
        .unwrap()
        .split("test", &xv, &yv)
        .unwrap();
    eval.evaluate()
        .unwrap()
        .into_iter()
        .map(|s| (s.split, s.loss, s.accuracy))
        .collect()
}

fn centre_of(dir: &Path) -> Vec<(String, f64, Option<f64>)> {
    let r = SurfaceResult::load(dir).unwrap();
    let p = r
        .points
        .iter()
        .find(|p| p.point.x == 0.0 && p.point.y == 0.0)
        .expect("the grid holds the centre");
    p.splits
        .iter()
        .map(|s| (s.split.clone(), s.loss, s.accuracy))
        .collect()
}

#[test]
fn every_subcommand_runs_on_a_torchscript_model() {
    tch::set_num_threads(2);
    let tmp = common::tempdir();
    let t = |n: &str| tmp.path().join(n);
    let s = |p: PathBuf| p.to_string_lossy().into_owned();
    make_models(tmp.path());
    let (st, npz) = write_data(tmp.path());
    let (model, wide) = (t("cnn.pt"), t("cnn-wide.pt"));
    let (run, run2) = (t("run"), t("run2"));
    record(&model, &run, 3, 1);
    record(&model, &run2, 3, 2);
    let (run_s, model_s, st_s, npz_s) = (s(run.clone()), s(model.clone()), s(st), s(npz));
    let m = ["--model", model_s.as_str(), "--data", st_s.as_str()];
    let with = |args: &[&str]| -> Vec<String> {
        args.iter().chain(m.iter()).map(|a| a.to_string()).collect()
    };
    let call = |args: Vec<String>| {
        let v: Vec<&str> = args.iter().map(String::as_str).collect();
        landscape(&v)
    };

    // surface, default: RUN/surfaces/filter-2d; the centre is the module at
    // the last snapshot, bit for bit.
    call(with(&["surface", &run_s, "--x", "-1:1:5", "--y", "-1:1:3"]));
    let want = direct(&model, &run, 3);
    assert_eq!(centre_of(&run.join("surfaces/filter-2d")), want);
    // The default evaluates on model replicas (one per core, 1 thread
    // each); `--threads 2` on one model: the same surface.
    call(with(&[
        "surface",
        &run_s,
        "--x",
        "-1:1:5",
        "--y",
        "-1:1:3",
        "--threads",
        "2",
        "--name",
        "one-model",
    ]));
    let (rep, one) = (
        SurfaceResult::load(run.join("surfaces/filter-2d")).unwrap(),
        SurfaceResult::load(run.join("surfaces/one-model")).unwrap(),
    );
    assert_eq!(rep.points.len(), one.points.len());
    for (a, b) in rep.points.iter().zip(&one.points) {
        assert_eq!((a.point.x, a.point.y), (b.point.x, b.point.y));
        for (sa, sb) in a.splits.iter().zip(&b.splits) {
            assert!(
                (sa.loss - sb.loss).abs() <= 1e-5 * sb.loss.abs().max(1e-3),
                "({}, {}) {}: replicas {} vs one model {}",
                a.point.x,
                a.point.y,
                sa.split,
                sa.loss,
                sb.loss
            );
        }
    }
    // The same from the .npz file, a 1-D layer-normalized slice at snapshot 1.
    let npz_args: Vec<String> = [
        "surface", &run_s, "--model", &model_s, "--data", &npz_s, "--dims", "1", "--norm", "layer",
        "--ignore", "none", "--x", "-1:1:5", "--at", "1",
    ]
    .iter()
    .map(|a| a.to_string())
    .collect();
    call(npz_args);
    assert_eq!(
        centre_of(&run.join("surfaces/layer-1d-at1")),
        direct(&model, &run, 1)
    );
    // BN recalibration: a line; differs from fixed statistics away from θ*.
    call(with(&[
        "surface",
        &run_s,
        "--dims",
        "1",
        "--x",
        "-1:1:5",
        "--bn",
        "recalibrate",
        "--bn-batches",
        "4",
        "--name",
        "recal-1d",
    ]));
    call(with(&[
        "surface", &run_s, "--dims", "1", "--x", "-1:1:5", "--name", "fixed-1d",
    ]));
    let (recal, fixed) = (
        SurfaceResult::load(run.join("surfaces/recal-1d")).unwrap(),
        SurfaceResult::load(run.join("surfaces/fixed-1d")).unwrap(),
    );
    let (lr, lf) = (recal.loss("train"), fixed.loss("train"));
    println!("train loss along the line, recalibrated {lr:?}, fixed {lf:?}");
    assert!((lr[0] - lf[0]).abs() > 1e-3, "{lr:?} vs {lf:?}");
    assert!(
        recal.spec.evaluator.contains("recalibrated"),
        "{}",
        recal.spec.evaluator
    );
    // PCA plane directions from `landscape pca`.
    landscape(&["pca", &run_s, "-k", "2"]);
    call(with(&[
        "surface",
        &run_s,
        "--directions",
        "pca",
        "--x",
        "-1:1:3",
        "--y",
        "-1:1:3",
    ]));
    assert_eq!(centre_of(&run.join("surfaces/pca-2d")), want);
    // Interpolation θ₀ → θ_final: the ends are the snapshots.
    call(with(&["interpolate", &run_s, "--x", "0:1:3"]));
    let interp = SurfaceResult::load(run.join("surfaces/interp-0-3")).unwrap();
    let at = |x: f64| -> Vec<(String, f64, Option<f64>)> {
        let p = interp.points.iter().find(|p| p.point.x == x).unwrap();
        p.splits
            .iter()
            .map(|s| (s.split.clone(), s.loss, s.accuracy))
            .collect()
    };
    assert_eq!(at(0.0), direct(&model, &run, 0));
    // θ_A + 1·(θ_B − θ_A) is θ_B up to rounding.
    let close = |a: &[(String, f64, Option<f64>)], b: &[(String, f64, Option<f64>)]| {
        a.iter()
            .zip(b)
            .all(|(p, q)| p.0 == q.0 && (p.1 - q.1).abs() <= 1e-5 * q.1.abs().max(1.0))
    };
    assert!(close(&at(1.0), &want), "{:?} vs {want:?}", at(1.0));
    // ... and between two runs' final models.
    call(with(&[
        "interpolate",
        &run_s,
        "--other",
        &s(run2.clone()),
        "--x",
        "0:1:3",
    ]));
    let two = SurfaceResult::load(run.join("surfaces/interp-run2")).unwrap();
    let end = two.points.iter().find(|p| p.point.x == 1.0).unwrap();
    let want2 = direct(&model, &run2, 3);
    let got2: Vec<(String, f64, Option<f64>)> = end
        .splits
        .iter()
        .map(|s| (s.split.clone(), s.loss, s.accuracy))
        .collect();
    assert!(close(&got2, &want2), "{got2:?} vs {want2:?}");
    // A trained curve between the two runs' final models (mode
    // connectivity): the ends of both paths are the two models bit for bit;
    // run again, it resumes the finished training (same curve).
    let run2_s = s(run2.clone());
    let connect = with(&["connect", &run_s, &run2_s, "--epochs", "2", "--points", "5"]);
    let (printed, _) = call(connect.clone());
    assert!(printed.contains("line  barrier on train"), "{printed}");
    let curve_file = run.join("connect/bezier-run2/curve.parquet");
    let (rows, summary) = tch_landscape::store::connect::read_curve(&curve_file).unwrap();
    assert_eq!(rows.len(), 2 * 5 * 2);
    assert_eq!(summary["log"].as_array().unwrap().len(), 2);
    for path in ["curve", "line"] {
        for (t, want) in [(0.0, &want), (1.0, &want2)] {
            let got: Vec<(String, f64, Option<f64>)> = rows
                .iter()
                .filter(|r| r.path == path && r.t == t)
                .map(|r| (r.split.clone(), r.loss, r.accuracy))
                .collect();
            assert_eq!(&got, want, "{path} at t = {t}");
        }
    }
    call(connect);
    let (again, _) = tch_landscape::store::connect::read_curve(&curve_file).unwrap();
    assert_eq!(again, rows);
    // The landscape over training: on fixed random directions each frame
    // is centred on its snapshot exactly, so the final frame's own point
    // is the final model, bit for bit; on the PCA plane it runs through
    // the same TorchScript model and BatchNorm policy.
    call(with(&[
        "animate",
        &run_s,
        "--directions",
        "random",
        "--snapshots",
        "1:3:2",
        "--grid",
        "3",
    ]));
    let anim = AnimationResult::load(run.join("animations/random")).unwrap();
    assert_eq!(anim.frames.len(), 2);
    let own: Vec<(String, f64, Option<f64>)> = anim.frames[1]
        .reference_value("train")
        .into_iter()
        .chain(anim.frames[1].reference_value("test"))
        .map(|s| (s.split.clone(), s.loss, s.accuracy))
        .collect();
    assert_eq!(own, want);
    call(with(&["animate", &run_s, "--grid", "3"]));
    assert!(run.join("animations/pca/animation.gif").is_file());
    // Curvature at a point and as a small map.
    let (printed, _) = call(with(&[
        "curvature",
        &run_s,
        "--top-k",
        "2",
        "--trace",
        "4",
        "--tol",
        "1e-2",
    ]));
    assert!(printed.contains("λmax"), "{printed}");
    let (rows, settings) = read_hessian(&run.join("curvature/hessian-3")).unwrap();
    let get = |q: &str| rows.iter().find(|r| r.quantity == q).unwrap().value;
    assert!(get("lambda_max") > 0.0 && get("lambda_max") >= get("lambda_min"));
    assert_eq!(settings["snapshot"], 3);
    call(with(&[
        "curvature",
        &run_s,
        "--map",
        "--x",
        "-0.2:0.2:2",
        "--y",
        "-0.2:0.2:2",
        "--tol",
        "1e-1",
    ]));
    // The report finds every result.
    landscape(&["report", &run_s]);
    let html = std::fs::read_to_string(run.join("report/index.html")).unwrap();
    for name in [
        "filter-2d",
        "recal-1d",
        "pca-2d",
        "interp-0-3",
        "interp-run2",
        "bezier-run2",
        "ratio-filter-2d",
        "hessian-3",
    ] {
        assert!(html.contains(name), "the report lacks {name}");
    }

    // Bad input: one line naming what is wrong, nothing written.
    let wide_s = s(wide);
    let e = landscape_err(&["surface", &run_s, "--model", &wide_s, "--data", &st_s]);
    assert!(
        e.contains("not in the model") || e.contains("other shape"),
        "{e}"
    );
    assert!(
        e.contains("conv2.weight") && e.contains("head.weight"),
        "{e}"
    );
    let text = t("not-a-model.pt");
    std::fs::write(&text, "hello").unwrap();
    let e = landscape_err(&["surface", &run_s, "--model", &s(text), "--data", &st_s]);
    assert!(
        e.contains("not-a-model.pt") && e.contains("not a TorchScript module"),
        "{e}"
    );
    let e = landscape_err(&["surface", &run_s, "--model", &model_s]);
    assert!(e.contains("--data"), "{e}");
    let e = landscape_err(&["surface", &run_s, "--data", &st_s]);
    assert!(e.contains("--model"), "{e}");
    let e = landscape_err(
        &with(&["surface", &run_s, "--at", "99"])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert!(e.contains("--at 99") && e.contains("0 to 3"), "{e}");
    // Flat inputs do not fit the CNN; classes beyond its 10 outputs.
    let (xt, yt, _, _) = digits();
    let flat = t("flat.safetensors");
    Tensor::write_safetensors(
        &[("x_train", &xt.reshape([-1, 64])), ("y_train", &yt)],
        &flat,
    )
    .unwrap();
    let e = landscape_err(&[
        "surface",
        &run_s,
        "--model",
        &model_s,
        "--data",
        &s(flat.clone()),
    ]);
    assert!(
        e.contains("flat.safetensors") && e.contains("[2, 64]"),
        "{e}"
    );
    let classes = t("classes.safetensors");
    Tensor::write_safetensors(&[("x_train", &xt), ("y_train", &(&yt + 5))], &classes).unwrap();
    let e = landscape_err(&[
        "surface",
        &run_s,
        "--model",
        &model_s,
        "--data",
        &s(classes),
    ]);
    assert!(
        e.contains("classes.safetensors") && e.contains("class 14"),
        "{e}"
    );
    for name in ["surfaces/filter-2d-bad", "surfaces/raw-2d"] {
        assert!(!run.join(name).join("surface.parquet").exists(), "{name}");
    }
    // A second run that does not exist is named.
    let e = landscape_err(&[
        "interpolate",
        &run_s,
        "--other",
        &s(t("absent")),
        "--model",
        &model_s,
        "--data",
        &st_s,
    ]);
    assert!(e.contains("absent"), "{e}");
}
