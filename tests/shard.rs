//! Shards for batch schedulers: shards merged in any order equal the
//! single-process result bit for bit (surfaces and curvature maps, library
//! and CLI); incomplete, missing, repeated and mismatched shards are refused
//! with errors naming the directories.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::digits_subset;
use tch::nn::VarStore;
use tch::{Device, Tensor};
use tch_landscape::analysis::directions::Directions;
use tch_landscape::analysis::evaluator::ClassifierEvaluator;
use tch_landscape::analysis::hessian::{
    merge_curvature_shards, Curvature, CurvatureMap, Lanczos, SupervisedObjective,
};
use tch_landscape::analysis::params::ParamSet;
use tch_landscape::analysis::shard::Shard;
use tch_landscape::analysis::surface::{
    merge_shards, Surface, SurfaceBuilder, SurfaceResult, SPEC_FILE,
};
use tch_landscape::models::Mlp;
use tch_landscape::Error;

fn setup() -> (VarStore, Mlp, Tensor, Tensor) {
    tch::manual_seed(21);
    let vs = VarStore::new(Device::Cpu);
    let m = Mlp::new(&vs.root(), &[64, 12, 10]);
    let (x, y) = digits_subset(120);
    (vs, m, x, y)
}

fn bits(v: &[f64]) -> Vec<u64> {
    v.iter().map(|x| x.to_bits()).collect()
}

fn shard(i: usize, n: usize) -> Shard {
    Shard::new(i, n).unwrap()
}

/// Cancels the computation once `n` points are computed, as a pre-empted
/// job would stop (the points finished are saved).
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
fn merged_shards_equal_the_single_process_surface() {
    let (vs, model, x, y) = setup();
    let dirs = Directions::random(&ParamSet::from_varstore(&vs).unwrap())
        .seed(4)
        .build()
        .unwrap();
    let mut eval = ClassifierEvaluator::new(&model)
        .split("train", &x, &y)
        .unwrap()
        .split("test", &x.narrow(0, 0, 40), &y.narrow(0, 0, 40))
        .unwrap();
    let tmp = common::tempdir();
    let surface = || {
        Surface::builder(&dirs)
            .grid(-1.0..=1.0, 7, -0.5..=0.5, 5)
            .flush_every(3)
    };
    let single = surface()
        .build()
        .unwrap()
        .evaluate(&vs, &mut eval, tmp.path().join("single"))
        .unwrap();

    let shard_dir = |i: usize| tmp.path().join(format!("shard-{i}"));
    for i in 0..3 {
        // Shard 1 is interrupted once and resumed, as after a pre-empted job.
        if i == 1 {
            let part = cancel_after(surface().shard(shard(1, 3)), 4)
                .build()
                .unwrap()
                .evaluate(&vs, &mut eval, shard_dir(1))
                .unwrap();
            assert_eq!(part.computed, 4);
            assert!(!part.complete);
        }
        let r = surface()
            .shard(shard(i, 3))
            .build()
            .unwrap()
            .evaluate(&vs, &mut eval, shard_dir(i))
            .unwrap();
        assert!(r.complete);
        assert!(r.points.iter().all(|p| p.point.index % 3 == i));
        assert!(
            r.sharpness.is_empty(),
            "a shard has no whole grid for sharpness"
        );
    }
    let merged = merge_shards(
        &[shard_dir(2), shard_dir(0), shard_dir(1)],
        tmp.path().join("merged"),
    )
    .unwrap();
    let loaded = SurfaceResult::load(tmp.path().join("merged")).unwrap();
    for r in [&merged, &loaded] {
        assert_eq!(r.spec.shard, None);
        assert_eq!(r.points.len(), 35);
        for split in ["train", "test"] {
            assert_eq!(
                bits(&r.loss(split)),
                bits(&single.loss(split)),
                "{split} loss"
            );
            assert_eq!(bits(&r.accuracy(split)), bits(&single.accuracy(split)));
        }
        assert_eq!(r.sharpness, single.sharpness);
        assert_eq!(r.spec.directions, single.spec.directions);
        assert_eq!(r.spec.grid, single.spec.grid);
        assert_eq!(r.spec.evaluator, single.spec.evaluator);
    }
    // The merged directory is a finished surface: evaluating it again computes nothing.
    let again = surface()
        .build()
        .unwrap()
        .evaluate(&vs, &mut eval, tmp.path().join("merged"))
        .unwrap();
    assert_eq!(again.computed, 0);
}

fn expect_err(r: tch_landscape::Result<SurfaceResult>, parts: &[&str]) {
    let e = r.expect_err("merge accepted bad shards").to_string();
    for p in parts {
        assert!(e.contains(p), "error '{e}' does not mention '{p}'");
    }
}

#[test]
fn incomplete_missing_and_mismatched_shards_are_refused() {
    let (vs, model, x, y) = setup();
    let dirs = Directions::random(&ParamSet::from_varstore(&vs).unwrap())
        .seed(4)
        .build()
        .unwrap();
    let other_dirs = Directions::random(&ParamSet::from_varstore(&vs).unwrap())
        .seed(5)
        .build()
        .unwrap();
    let mut eval = ClassifierEvaluator::new(&model)
        .split("train", &x, &y)
        .unwrap();
    let mut small_eval = ClassifierEvaluator::new(&model)
        .split("train", &x.narrow(0, 0, 60), &y.narrow(0, 0, 60))
        .unwrap();
    let tmp = common::tempdir();
    let p = |name: &str| tmp.path().join(name);
    let grid = |d| Surface::builder(d).grid(-1.0..=1.0, 4, -1.0..=1.0, 3);
    let run = |b: SurfaceBuilder<'_>, name: &str, e: &mut ClassifierEvaluator| {
        b.build().unwrap().evaluate(&vs, e, p(name)).unwrap()
    };
    let s = |i, n, name: &str, e: &mut ClassifierEvaluator| {
        run(grid(&dirs).shard(shard(i, n)), name, e);
    };
    s(0, 2, "a0", &mut eval);
    s(1, 2, "a1", &mut eval);
    run(grid(&dirs), "whole", &mut eval);
    let merge = |names: &[&str]| {
        let dirs: Vec<PathBuf> = names.iter().map(|n| p(n)).collect();
        merge_shards(&dirs, p("out"))
    };

    expect_err(merge(&["a0"]), &["missing shard(s) 1/2"]);
    expect_err(merge(&["a0", "a0"]), &["given twice", "a0"]);
    expect_err(merge(&["a0", "whole"]), &["whole", "not a shard"]);
    std::fs::create_dir_all(p("empty")).unwrap();
    expect_err(
        merge(&["a0", "empty"]),
        &["empty", "not a surface directory", SPEC_FILE],
    );
    expect_err(merge(&[]), &["no shard"]);

    // Another seed (another model or centre gives another id the same way).
    run(grid(&other_dirs).shard(shard(1, 2)), "seed", &mut eval);
    expect_err(merge(&["a0", "seed"]), &["a0", "seed", "directions"]);
    // Another grid.
    let other_grid = Surface::builder(&dirs).grid(-1.0..=1.0, 5, -1.0..=1.0, 3);
    run(other_grid.shard(shard(1, 2)), "grid", &mut eval);
    expect_err(merge(&["a0", "grid"]), &["grid"]);
    // Another evaluator (other data).
    s(1, 2, "data", &mut small_eval);
    expect_err(merge(&["a0", "data"]), &["evaluator", "60 samples"]);
    // Another shard count.
    s(1, 3, "of3", &mut eval);
    expect_err(merge(&["a0", "of3"]), &["shard count"]);
    // Unfinished: says how far it got.
    let part = grid(&dirs).shard(shard(1, 2)).flush_every(1);
    run(cancel_after(part, 2), "part", &mut eval);
    expect_err(
        merge(&["a0", "part"]),
        &["part", "incomplete", "2 of its 6 points"],
    );
    let e = merge(&["a0", "part"]).unwrap_err();
    assert!(
        matches!(
            e,
            Error::Incomplete {
                done: 2,
                total: 6,
                ..
            }
        ),
        "{e:?}"
    );
    let e = merge(&["a0", "seed"]).unwrap_err();
    assert!(matches!(e, Error::ShardMismatch { .. }), "{e:?}");
    // A damaged spec: a shard 0/0 is an error, not a panic.
    let spec_path = p("a1").join(SPEC_FILE);
    let good = std::fs::read_to_string(&spec_path).unwrap();
    let mut spec: serde_json::Value = serde_json::from_str(&good).unwrap();
    assert_eq!(spec["shard"], serde_json::json!([1, 2]));
    spec["shard"] = serde_json::json!([0, 0]);
    std::fs::write(&spec_path, serde_json::to_string_pretty(&spec).unwrap()).unwrap();
    expect_err(merge(&["a0", "a1"]), &["a1", "surface.json"]);
    let e = grid(&dirs)
        .shard(shard(1, 2))
        .build()
        .unwrap()
        .evaluate(&vs, &mut eval, p("a1"))
        .unwrap_err();
    assert!(matches!(e, Error::Json { .. }), "{e:?}");
    std::fs::write(&spec_path, good).unwrap();
    assert!(
        !p("out").join("surface.parquet").exists(),
        "a refused merge wrote output"
    );

    merge(&["a1", "a0"]).unwrap();
}

#[test]
fn merged_curvature_shards_equal_the_single_process_map() {
    let (vs, model, x, y) = setup();
    let dirs = Directions::random(&ParamSet::from_varstore(&vs).unwrap())
        .seed(4)
        .build()
        .unwrap();
    let objective = || SupervisedObjective::new(&model, &x, &y).unwrap();
    let tmp = common::tempdir();
    let map = |shard: Option<usize>, tol: f64| {
        let mut surface = Surface::builder(&dirs).grid(-0.5..=0.5, 3, -0.5..=0.5, 2);
        if let Some(i) = shard {
            surface = surface.shard(Shard::new(i, 2).unwrap());
        }
        let lanczos = Lanczos::builder().tol(tol).build().unwrap();
        Curvature::builder(surface.build().unwrap())
            .lanczos(lanczos)
            .build()
            .unwrap()
    };
    let single = map(None, 1e-2)
        .evaluate(&vs, objective(), tmp.path().join("single"))
        .unwrap();
    let shards: Vec<PathBuf> = (0..2).map(|i| tmp.path().join(format!("c{i}"))).collect();
    for (i, d) in shards.iter().enumerate() {
        let m = map(Some(i), 1e-2).evaluate(&vs, objective(), d).unwrap();
        assert!(m.complete);
    }
    let merged = merge_curvature_shards(&shards, tmp.path().join("merged")).unwrap();
    assert!(merged.complete);
    assert_eq!(merged.points, single.points);
    assert_eq!(merged.spec.lanczos, single.spec.lanczos);
    assert_eq!(merged.spec.shard, None);

    // Other Lanczos settings are another map.
    let other = tmp.path().join("tol");
    map(Some(1), 1e-3)
        .evaluate(&vs, objective(), &other)
        .unwrap();
    let e = merge_curvature_shards(&[shards[0].clone(), other], tmp.path().join("bad"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("different curvature maps"), "{e}");
}

fn landscape(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_landscape"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("running landscape");
    assert!(
        out.status.success(),
        "landscape {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn landscape_err(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_landscape"))
        .args(args)
        .output()
        .expect("running landscape");
    assert!(!out.status.success(), "landscape {args:?} succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn cli_shards_and_merge_equal_one_process() {
    let tmp = common::tempdir();
    let run = tmp.path().join("run");
    common::demo_run(&run);
    let p = |n: &str| tmp.path().join(n).to_string_lossy().into_owned();
    let run_s = run.to_string_lossy().into_owned();
    let common_args = ["--grid", "6", "--threads", "1", "--seed", "9"];
    let mut args = vec!["surface", run_s.as_str(), "--out"];
    let single = p("single");
    args.push(&single);
    args.extend(common_args);
    landscape(&args);
    let mut shard_dirs = Vec::new();
    for i in 0..4 {
        let (dir, shard) = (p(&format!("s{i}")), format!("{i}/4"));
        let mut a = vec!["surface", run_s.as_str(), "--out", &dir, "--shard", &shard];
        a.extend(common_args);
        let out = landscape(&a);
        assert!(out.contains(&format!("shard {i}/4")), "{out}");
        shard_dirs.push(dir);
    }
    let merged = p("merged");
    let mut a = vec!["merge", "--out", &merged];
    a.extend(shard_dirs.iter().rev().map(String::as_str));
    let out = landscape(&a);
    // 6 × 6 grid points and θ* (no grid point on an even grid), measured
    // by one of the shards.
    assert!(out.contains("37 points from 4 shards"), "{out}");
    let (s, m) = (
        SurfaceResult::load(&single).unwrap(),
        SurfaceResult::load(&merged).unwrap(),
    );
    for split in ["train", "test"] {
        assert_eq!(bits(&s.loss(split)), bits(&m.loss(split)));
    }
    assert_eq!(s.sharpness, m.sharpness);

    // A Slurm array task (ids 4..=7) computes its shard from the environment.
    let slurm = p("slurm");
    let out = Command::new(env!("CARGO_BIN_EXE_landscape"))
        .args(["surface", &run_s, "--out", &slurm, "--shard", "slurm"])
        .args(common_args)
        .env("SLURM_ARRAY_TASK_ID", "5")
        .env("SLURM_ARRAY_TASK_MIN", "4")
        .env("SLURM_ARRAY_TASK_COUNT", "4")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (a, b) = (
        SurfaceResult::load(&slurm).unwrap(),
        SurfaceResult::load(&shard_dirs[1]).unwrap(),
    );
    assert_eq!(a.spec.shard, Some(shard(1, 4)));
    assert_eq!(bits(&a.loss("test")), bits(&b.loss("test")));

    // Refusals on the command line: one line, naming what is wrong.
    let e = landscape_err(&["merge", "--out", &p("x"), &shard_dirs[0], &shard_dirs[1]]);
    assert!(e.contains("missing shard(s) 2/4, 3/4"), "{e}");
    let e = landscape_err(&["surface", &run_s, "--out", &p("x"), "--shard", "4/4"]);
    assert!(e.contains("4/4") && e.contains("0 ≤ i < n"), "{e}");
    let e = landscape_err(&["surface", &run_s, "--out", &p("x"), "--shard", "slurm"]);
    assert!(e.contains("SLURM_ARRAY_TASK_ID"), "{e}");
    common::record_tiny_run(&tmp.path().join("tiny"), 1);
    let e = landscape_err(&["surface", &p("tiny"), "--out", &p("x")]);
    assert!(
        e.contains("--model MODEL.pt") && e.contains("--data"),
        "{e}"
    );
    #[cfg(not(feature = "mpi"))]
    {
        let e = landscape_err(&["surface", &run_s, "--out", &p("x"), "--mpi"]);
        assert!(e.contains("--features mpi"), "{e}");
    }
}

#[test]
fn cli_shards_of_interpolations_and_curvature_maps_merge_to_one_process() {
    let tmp = common::tempdir();
    let run = tmp.path().join("run");
    common::demo_run(&run);
    let p = |n: &str| tmp.path().join(n).to_string_lossy().into_owned();
    let run_s = run.to_string_lossy().into_owned();
    let cases: [(&str, &[&str]); 2] = [
        ("interpolate", &["--x", "-0.5:1.5:7", "--threads", "1"]),
        (
            "curvature",
            &[
                "--map",
                "--x",
                "-0.2:0.2:3",
                "--y",
                "-0.2:0.2:2",
                "--tol",
                "1e-2",
                "--threads",
                "1",
            ],
        ),
    ];
    for (command, extra) in cases {
        let single = p(&format!("{command}-single"));
        let mut a = vec![command, run_s.as_str(), "--out", &single];
        a.extend(extra);
        landscape(&a);
        let mut shards = Vec::new();
        for i in 0..2 {
            let (dir, shard) = (p(&format!("{command}-s{i}")), format!("{i}/2"));
            let mut a = vec![command, run_s.as_str(), "--out", &dir, "--shard", &shard];
            a.extend(extra);
            landscape(&a);
            shards.push(dir);
        }
        let merged = p(&format!("{command}-merged"));
        landscape(&["merge", "--out", &merged, &shards[0], &shards[1]]);
        if command == "curvature" {
            let (s, m) = (
                CurvatureMap::load(&single).unwrap(),
                CurvatureMap::load(&merged).unwrap(),
            );
            assert_eq!(s.points, m.points);
        } else {
            let (s, m) = (
                SurfaceResult::load(&single).unwrap(),
                SurfaceResult::load(&merged).unwrap(),
            );
            for split in ["train", "test"] {
                assert_eq!(bits(&s.loss(split)), bits(&m.loss(split)), "{split}");
            }
        }
    }
}
