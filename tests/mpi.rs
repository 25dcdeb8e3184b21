//! MPI (feature `mpi`): `mpirun -np 2` on localhost computes surfaces and a
//! curvature map identical, bit for bit, to one process with the same
//! threads per process; it resumes after an interruption, refuses ranks that
//! disagree, and reports a failing worker on every rank.
//!
//! The parent test re-runs this test binary under `mpirun`; the child test
//! (`mpi_child`) does the MPI work and asserts what each rank sees.
#![cfg(feature = "mpi")]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::digits_subset;
use tch::nn::VarStore;
use tch::{Device, Tensor};
use tch_landscape::analysis::directions::Directions;
use tch_landscape::analysis::evaluator::{ClassifierEvaluator, Evaluator, SplitResult};
use tch_landscape::analysis::hessian::{Curvature, CurvatureMap, Lanczos, SupervisedObjective};
use tch_landscape::analysis::params::ParamSet;
use tch_landscape::analysis::surface::{Surface, SurfaceBuilder, SurfaceResult};
use tch_landscape::distributed::Mpi;
use tch_landscape::models::Mlp;

const CHILD_ENV: &str = "LANDSCAPE_MPI_TEST_DIR";

fn setup() -> (VarStore, Mlp, Tensor, Tensor) {
    tch::manual_seed(33);
    let vs = VarStore::new(Device::Cpu);
    let m = Mlp::new(&vs.root(), &[64, 16, 10]);
    let (x, y) = digits_subset(200);
    (vs, m, x, y)
}

fn evaluator<'a>(model: &'a Mlp, x: &Tensor, y: &Tensor) -> ClassifierEvaluator<'a> {
    ClassifierEvaluator::new(model)
        .split("train", x, y)
        .unwrap()
        .split("test", &x.narrow(0, 0, 50), &y.narrow(0, 0, 50))
        .unwrap()
}

fn builder(dirs: &Directions) -> SurfaceBuilder<'_> {
    Surface::builder(dirs)
        .grid(-1.0..=1.0, 9, -1.0..=1.0, 7)
        .flush_every(5)
}

fn surface(dirs: &Directions) -> Surface<'_> {
    builder(dirs).build().unwrap()
}

fn curvature(dirs: &Directions) -> Curvature<'_> {
    let surface = Surface::builder(dirs)
        .grid(-0.5..=0.5, 3, -0.5..=0.5, 2)
        .build()
        .unwrap();
    Curvature::builder(surface)
        .lanczos(Lanczos::builder().tol(1e-2).build().unwrap())
        .build()
        .unwrap()
}

/// Requests each MPI worker keeps in flight (points it may finish after a
/// cancellation).
const DEPTH: usize = 2;

fn bits(v: &[f64]) -> Vec<u64> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Fails on its `fail_at`-th point, otherwise evaluates like `inner`.
struct Flaky<'a> {
    inner: ClassifierEvaluator<'a>,
    calls: usize,
    fail_at: usize,
}

impl Evaluator for Flaky<'_> {
    fn evaluate(&mut self) -> tch_landscape::Result<Vec<SplitResult>> {
        self.calls += 1;
        if self.calls == self.fail_at {
            return Err(tch_landscape::Error::invalid("test", "injected failure"));
        }
        self.inner.evaluate()
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
}

fn mpirun() -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("mpirun"))
            .find(|p| p.is_file())
    })
}

#[test]
fn mpirun_two_ranks_equal_one_process() {
    let mpirun =
        mpirun().expect("mpirun not found: install openmpi-bin (./landscape-dev setup does)");
    tch::set_num_threads(1);
    let tmp = common::tempdir();
    let (vs, model, x, y) = setup();
    let dirs = Directions::random(&ParamSet::from_varstore(&vs).unwrap())
        .seed(8)
        .build()
        .unwrap();
    let mut eval = evaluator(&model, &x, &y);
    let single = surface(&dirs)
        .evaluate(&vs, &mut eval, tmp.path().join("single"))
        .unwrap();
    let single_curv = curvature(&dirs)
        .evaluate(
            &vs,
            SupervisedObjective::new(&model, &x, &y).unwrap(),
            tmp.path().join("single-curv"),
        )
        .unwrap();

    let mut child = Command::new(&mpirun)
        .args([
            "--allow-run-as-root",
            "--oversubscribe",
            "-np",
            "2",
            "-x",
            CHILD_ENV,
        ])
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", "mpi_child", "--nocapture", "--test-threads", "1"])
        .env(CHILD_ENV, tmp.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running mpirun");
    // A protocol bug must fail the test, not hang CI.
    let deadline = Instant::now() + Duration::from_secs(300);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "mpirun failed:\n{log}");
    for rank in 0..2 {
        assert!(
            log.contains(&format!("rank {rank} of 2: all checks passed")),
            "{log}"
        );
    }

    let mpi = SurfaceResult::load(tmp.path().join("mpi")).unwrap();
    for split in ["train", "test"] {
        assert_eq!(
            bits(&mpi.loss(split)),
            bits(&single.loss(split)),
            "{split} loss"
        );
        assert_eq!(bits(&mpi.accuracy(split)), bits(&single.accuracy(split)));
    }
    assert_eq!(mpi.sharpness, single.sharpness);
    assert_eq!(mpi.spec.directions, single.spec.directions);
    let resumed = SurfaceResult::load(tmp.path().join("resumed")).unwrap();
    assert_eq!(bits(&resumed.loss("train")), bits(&single.loss("train")));
    let curv = CurvatureMap::load(tmp.path().join("mpi-curv")).unwrap();
    assert_eq!(curv.points, single_curv.points);

    // The CLI under mpirun equals the CLI in one process.
    let run = tmp.path().join("run");
    common::demo_run(&run);
    let cli = |out: &str, mpi: Option<&Path>, command: &[&str]| {
        let mut c = match mpi {
            Some(m) => {
                let mut c = Command::new(m);
                c.args(["--allow-run-as-root", "--oversubscribe", "-np", "2"])
                    .arg(env!("CARGO_BIN_EXE_landscape"));
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_landscape")),
        };
        c.arg(command[0])
            .arg(&run)
            .arg("--out")
            .arg(tmp.path().join(out))
            .args(&command[1..])
            .args(["--threads", "1"]);
        if mpi.is_some() {
            c.arg("--mpi");
        }
        let o = c.output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    // Every evaluating subcommand: a surface, an interpolation, a curvature map.
    let surface_args = ["surface", "--grid", "7"];
    let interpolate_args = ["interpolate", "--x", "-0.5:1.5:9"];
    let curvature_args = [
        "curvature",
        "--map",
        "--x",
        "-0.2:0.2:3",
        "--y",
        "-0.2:0.2:2",
        "--tol",
        "1e-2",
    ];
    for (name, args) in [
        ("surface", &surface_args[..]),
        ("interpolate", &interpolate_args[..]),
        ("curvature", &curvature_args[..]),
    ] {
        let printed = cli(&format!("cli-mpi-{name}"), Some(&mpirun), args);
        if name != "curvature" {
            assert!(printed.contains("2 process(es)"), "{name}: {printed}");
        }
        cli(&format!("cli-single-{name}"), None, args);
        let (a, b) = (
            tmp.path().join(format!("cli-mpi-{name}")),
            tmp.path().join(format!("cli-single-{name}")),
        );
        if name == "curvature" {
            let (a, b) = (
                CurvatureMap::load(a).unwrap(),
                CurvatureMap::load(b).unwrap(),
            );
            assert_eq!(a.points, b.points, "{name}");
        } else {
            let (a, b) = (
                SurfaceResult::load(a).unwrap(),
                SurfaceResult::load(b).unwrap(),
            );
            assert_eq!(bits(&a.loss("test")), bits(&b.loss("test")), "{name}");
            assert_eq!(bits(&a.loss("train")), bits(&b.loss("train")), "{name}");
        }
    }
}

/// Runs under mpirun (see above); does nothing in a plain `cargo test`.
#[test]
fn mpi_child() {
    let Some(dir) = std::env::var_os(CHILD_ENV).map(PathBuf::from) else {
        return;
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .try_init();
    let mpi = Mpi::init().unwrap();
    assert_eq!(mpi.size(), 2);
    assert_eq!(mpi.device(), Device::Cpu);
    tch::set_num_threads(1);
    let rank = mpi.rank();
    // A failed check must end every rank (not leave the others waiting).
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| child(&mpi, &dir))).is_err() {
        eprintln!("rank {rank}: a check failed; aborting the MPI job");
        mpi.abort(1);
    }
    println!("rank {rank} of 2: all checks passed");
}

fn child(mpi: &Mpi, dir: &Path) {
    let rank = mpi.rank();
    let (vs, model, x, y) = setup();
    let dirs = Directions::random(&ParamSet::from_varstore(&vs).unwrap())
        .seed(8)
        .build()
        .unwrap();
    let mut eval = evaluator(&model, &x, &y);

    // 1. The whole grid; only rank 0 gets (and writes) the result.
    let whole = surface(&dirs);
    let r = mpi
        .evaluate_surface(&whole, &vs, &mut eval, dir.join("mpi"))
        .unwrap();
    assert_eq!(r.is_some(), rank == 0);
    if let Some(r) = &r {
        assert_eq!((r.computed, r.points.len()), (63, 63));
    }

    // 2. Cancelled on rank 0 after 20 points (the workers' points in
    //    flight are kept too), then resumed: only the rest is computed.
    let flag = Arc::new(AtomicBool::new(false));
    let set = flag.clone();
    let cancelled = builder(&dirs)
        .cancel_on(flag)
        .on_progress(move |done, _| {
            if done >= 20 {
                set.store(true, Ordering::SeqCst);
            }
        })
        .build()
        .unwrap();
    let part = mpi
        .evaluate_surface(&cancelled, &vs, &mut eval, dir.join("resumed"))
        .unwrap();
    let rest = mpi
        .evaluate_surface(&whole, &vs, &mut eval, dir.join("resumed"))
        .unwrap();
    if rank == 0 {
        let (part, rest) = (part.unwrap(), rest.unwrap());
        assert!(!part.complete && rest.complete);
        assert!(
            (20..=20 + 2 * DEPTH).contains(&part.computed),
            "{} points before the cancellation took effect",
            part.computed
        );
        assert_eq!(rest.computed, 63 - part.computed);
    }

    // 3. A worker that fails: every rank gets an error naming it; what was
    //    finished is kept and a rerun completes the grid.
    let mut flaky = Flaky {
        inner: ClassifierEvaluator::new(&model)
            .split("train", &x, &y)
            .unwrap(),
        calls: 0,
        fail_at: if rank == 1 { 3 } else { usize::MAX },
    };
    let e = mpi
        .evaluate_surface(&whole, &vs, &mut flaky, dir.join("flaky"))
        .unwrap_err()
        .to_string();
    if rank == 0 {
        assert!(
            e.contains("rank 1 failed") && e.contains("injected failure"),
            "{e}"
        );
    } else {
        assert!(e.contains("injected failure"), "{e}");
    }
    let done = mpi
        .evaluate_surface(&whole, &vs, &mut flaky, dir.join("flaky"))
        .unwrap();
    if let Some(d) = done {
        assert!(d.computed < 63, "the finished points were recomputed");
        assert_eq!(d.points.len(), 63);
    }

    // 4. Ranks that built different directions are refused, on every rank.
    let seed = if rank == 1 { 9 } else { 8 };
    let other = Directions::random(&ParamSet::from_varstore(&vs).unwrap())
        .seed(seed)
        .build()
        .unwrap();
    let e = mpi
        .evaluate_surface(&surface(&other), &vs, &mut eval, dir.join("disagree"))
        .unwrap_err();
    assert!(
        matches!(e, tch_landscape::Error::ShardMismatch { .. }),
        "{e:?}"
    );
    let e = e.to_string();
    assert!(
        e.contains("ranks disagree") || e.contains("rank 1 has"),
        "{e}"
    );
    assert!(!dir.join("disagree").exists());

    // 5. A curvature map.
    let m = mpi
        .evaluate_curvature(
            curvature(&dirs),
            &vs,
            SupervisedObjective::new(&model, &x, &y).unwrap(),
            dir.join("mpi-curv"),
        )
        .unwrap();
    if let Some(m) = m {
        assert!(m.complete);
    }
}
