//! The TorchScript path end to end. A CNN with BatchNorm exported from
//! PyTorch (`tests/fixtures/script/make_cnn.py`, run here with the test
//! Python) is loaded as a [`ScriptModel`]: its parameters and buffers are
//! checked against what PyTorch says about them; it is trained from Rust with
//! the recorder attached; the run is matched with models by name
//! ([`ModelMatch`]), reloaded from a snapshot and analysed (surfaces, BatchNorm
//! recalibration, Hessian). A second run recorded through
//! `tch::TrainableCModule` (parameters only) fits the model once its running
//! statistics are recalibrated. The digits are written as safetensors and
//! npz by this test (not by Python) and read back by [`Dataset::load`].
//!
//! Needs Python with torch 2.13: `$TCH_LANDSCAPE_PYTHON` (which
//! `./landscape-dev test` sets), else the interpreter `./landscape-dev setup`
//! installs; without one the tests fail and say so.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::Value;
use tch::nn::{self, ModuleT, OptimizerConfig, VarStore};
use tch::{Device, Kind, Tensor};

use common::{assert_bits_eq, python, repo_root, tempdir};
use tch_landscape::analysis::bn::BnRecalibration;
use tch_landscape::analysis::directions::Directions;
use tch_landscape::analysis::evaluator::{ClassifierEvaluator, Evaluator, SplitResult};
use tch_landscape::analysis::hessian::{Hessian, Lanczos, SupervisedObjective};
use tch_landscape::analysis::model_check::ModelMatch;
use tch_landscape::analysis::surface::{Surface, SurfaceResult};
use tch_landscape::data::digits::Digits;
use tch_landscape::store::dataset::{DataNames, Dataset, Targets};
use tch_landscape::tensor::Selection;
use tch_landscape::{Recorder, Role, Run, ScriptModel};

/// Training samples (the demo's split: the remaining 360 digits are held out).
const TRAIN: i64 = 1437;
/// Epochs of the shared BN-CNN run.
const EPOCHS: u64 = 4;
/// The running statistics of the fixture CNN.
const RUNNING_STATS: [&str; 4] = [
    "bn1.running_mean",
    "bn1.running_var",
    "bn2.running_mean",
    "bn2.running_var",
];

// ---------------------------------------------------------------- fixtures

/// The fixture directory, made once per test process: `cnn.pt`,
/// `cnn-wide.pt`, `state-dict.pt`, `cnn.json`, `cnn-wide.json` (from
/// make_cnn.py) and `digits.safetensors`, `digits.npz` (written here).
fn fixtures() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("script_model");
        if dir.exists() {
            std::fs::remove_dir_all(&dir).expect("removing the old fixtures");
        }
        std::fs::create_dir_all(&dir).expect("creating the fixture directory");
        let py = python();
        let script = repo_root().join("tests/fixtures/script/make_cnn.py");
        let out = Command::new(&py)
            .arg(&script)
            .arg(&dir)
            .output()
            .unwrap_or_else(|e| panic!("running {} {}: {e}", py.display(), script.display()));
        assert!(
            out.status.success(),
            "{} {} failed (does it have torch 2.13? ./landscape-dev setup installs it):\n{}{}",
            py.display(),
            script.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        write_digits(&dir);
        dir
    })
}

/// The bundled digits as the files a user brings: x `[N, 1, 8, 8]` float32
/// (scaled by 1/16 as the Digits loader does), y int64, split 1437 / 360.
fn digit_tensors() -> Vec<(&'static str, Tensor)> {
    let d = Digits::load().expect("the bundled digits");
    let x = d.x.view([-1, 1, 8, 8]);
    let n = x.size()[0];
    vec![
        ("x_train", x.narrow(0, 0, TRAIN).contiguous()),
        ("y_train", d.y.narrow(0, 0, TRAIN).contiguous()),
        ("x_test", x.narrow(0, TRAIN, n - TRAIN).contiguous()),
        ("y_test", d.y.narrow(0, TRAIN, n - TRAIN).contiguous()),
    ]
}

fn write_digits(dir: &Path) {
    let tensors = digit_tensors();
    Tensor::write_safetensors(&tensors, dir.join("digits.safetensors"))
        .expect("writing digits.safetensors");
    Tensor::write_npz(&tensors, dir.join("digits.npz")).expect("writing digits.npz");
}

/// The digits read back from the safetensors file, as a user would.
fn digits() -> Dataset {
    let path = fixtures().join("digits.safetensors");
    let d = Dataset::load(&path, &DataNames::default(), Targets::Classes)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(d.splits.len(), 2, "train and test splits");
    d
}

/// What PyTorch says about a fixture model (`cnn` or `cnn-wide`).
fn facts(stem: &str) -> Value {
    let path = fixtures().join(format!("{stem}.json"));
    let text = std::fs::read_to_string(&path).expect("reading the model facts");
    serde_json::from_str(&text).expect("parsing the model facts")
}

fn load(stem: &str, vs: &VarStore) -> ScriptModel {
    ScriptModel::load(fixtures().join(format!("{stem}.pt")), vs).unwrap_or_else(|e| panic!("{e}"))
}

// ---------------------------------------------------------------- helpers

/// Every variable of `vs` (floating point or integer) as its bytes, by name.
fn var_bytes(vs: &VarStore) -> BTreeMap<String, Vec<u8>> {
    vs.variables()
        .into_iter()
        .map(|(n, t)| {
            let t = t.detach().contiguous();
            let mut bytes = vec![0u8; t.numel() * t.kind().elt_size_in_bytes()];
            t.copy_data_u8(&mut bytes, t.numel());
            (n, bytes)
        })
        .collect()
}

fn f32s(t: &Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(t.detach().to_kind(Kind::Float).flatten(0, -1)).unwrap()
}

/// One epoch of mini-batch training in train mode (cross-entropy, batches of
/// 64 in an order seeded by `seed`); returns the mean batch loss.
fn train_epoch(
    model: &dyn ModuleT,
    opt: &mut nn::Optimizer,
    x: &Tensor,
    y: &Tensor,
    seed: u64,
) -> f64 {
    let mut order: Vec<i64> = (0..x.size()[0]).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    let mut total = 0.0;
    let chunks = order.chunks(64);
    let n = chunks.len();
    for idx in chunks {
        let idx = Tensor::from_slice(idx);
        let loss = model
            .forward_t(&x.index_select(0, &idx), true)
            .cross_entropy_for_logits(&y.index_select(0, &idx));
        opt.backward_step(&loss);
        total += loss.double_value(&[]);
    }
    total / n as f64
}

fn sgd(vs: &VarStore) -> nn::Optimizer {
    nn::Sgd {
        momentum: 0.9,
        ..Default::default()
    }
    .build(vs, 0.05)
    .expect("building SGD")
}

/// Train and test evaluator of `model` (eval mode, batches of `batch`).
fn evaluator<'m>(model: &'m dyn ModuleT, data: &Dataset, batch: i64) -> ClassifierEvaluator<'m> {
    let (train, test) = (&data.splits[0], &data.splits[1]);
    ClassifierEvaluator::new(model)
        .split("train", &train.x, &train.y)
        .and_then(|e| e.split("test", &test.x, &test.y))
        .and_then(|e| e.batch(batch))
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Loss and accuracy of one full-split forward in eval mode, computed here
/// without the library's evaluation code.
fn direct(model: &ScriptModel, x: &Tensor, y: &Tensor) -> (f64, f64) {
    tch::no_grad(|| {
        let out = model.f_forward_t(x, false).unwrap();
        let loss = out.cross_entropy_for_logits(y).double_value(&[]);
        let correct = out.argmax(-1, false).eq_tensor(y).sum(Kind::Int64);
        let n = y.size()[0] as f64;
        (loss, 100.0 * correct.int64_value(&[]) as f64 / n)
    })
}

#[track_caller]
fn assert_same_results(got: &[SplitResult], want: &[SplitResult], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: number of splits");
    for (g, w) in got.iter().zip(want) {
        assert_eq!(g.split, w.split, "{what}");
        assert_eq!(
            g.loss.to_bits(),
            w.loss.to_bits(),
            "{what}: {} loss {} vs {}",
            g.split,
            g.loss,
            w.loss
        );
        assert_eq!(
            g.accuracy.map(f64::to_bits),
            w.accuracy.map(f64::to_bits),
            "{what}: {} accuracy {:?} vs {:?}",
            g.split,
            g.accuracy,
            w.accuracy
        );
    }
}

/// The (train, test) values of a surface's point at α = β = 0.
fn centre_of(r: &SurfaceResult) -> Vec<SplitResult> {
    r.points
        .iter()
        .find(|p| p.point.x == 0.0 && p.point.y == 0.0)
        .unwrap_or_else(|| panic!("{}: no point at the centre", r.dir.display()))
        .splits
        .clone()
}

// -------------------------------------------------- the shared trained run

/// The BN CNN trained from Rust with the recorder attached (made once).
struct Trained {
    run: PathBuf,
    /// Train and test results of the trained model in memory (batches of 128).
    in_memory: Vec<SplitResult>,
    /// Every variable of the trained model, as bytes.
    final_vars: BTreeMap<String, Vec<u8>>,
}

fn trained() -> &'static Trained {
    static TRAINED: OnceLock<Trained> = OnceLock::new();
    TRAINED.get_or_init(|| {
        let data = digits();
        let (x, y) = (&data.splits[0].x, &data.splits[0].y);
        let vs = VarStore::new(Device::Cpu);
        let model = load("cnn", &vs);
        let run = fixtures().join("cnn-run");
        let mut rec = Recorder::builder(&run)
            .metadata("model", "cnn.pt")
            .build(&vs)
            .unwrap_or_else(|e| panic!("{e}"));
        let mut opt = sgd(&vs);
        for epoch in 1..=EPOCHS {
            let loss = train_epoch(&model, &mut opt, x, y, epoch);
            rec.on_epoch_end(epoch, &[("train_loss", loss), ("lr", 0.05)])
                .unwrap();
        }
        rec.finish().unwrap();
        let in_memory = evaluator(&model, &data, 128).evaluate().unwrap();
        println!("trained BN CNN (ScriptModel): {in_memory:?}");
        Trained {
            run,
            in_memory,
            final_vars: var_bytes(&vs),
        }
    })
}

// ------------------------------------------------------------------- tests

/// (a) The fixture loads with every parameter and buffer under its PyTorch
/// name, shape, dtype, trainability and values; the recorder gives them the
/// roles weight/bias/buffer; forward matches PyTorch in both modes and
/// honours the train flag; the variables share storage with the module;
/// bad inputs and bad files are errors naming the file.
#[test]
fn a_torchscript_model_loads_with_its_parameters_and_buffers() {
    let facts = facts("cnn");
    let vs = VarStore::new(Device::Cpu);
    let model = load("cnn", &vs);
    let vars = vs.variables();
    let params = facts["parameters"].as_array().unwrap();
    let buffers = facts["buffers"].as_array().unwrap();
    let mut want_names = Vec::new();
    for (entry, is_buffer) in params
        .iter()
        .map(|p| (p, false))
        .chain(buffers.iter().map(|b| (b, true)))
    {
        let name = entry["name"].as_str().unwrap();
        want_names.push(name.to_string());
        let var = vars
            .get(name)
            .unwrap_or_else(|| panic!("'{name}' is not a variable; have {:?}", vars.keys()));
        let shape: Vec<i64> = entry["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_i64().unwrap())
            .collect();
        assert_eq!(var.size(), shape, "{name}: shape");
        let kind = match entry["dtype"].as_str() {
            None | Some("float32") => Kind::Float,
            Some("int64") => Kind::Int64,
            Some(other) => panic!("{name}: unexpected dtype {other}"),
        };
        assert_eq!(var.kind(), kind, "{name}: dtype");
        let trainable = !is_buffer && entry["requires_grad"].as_bool().unwrap();
        assert_eq!(var.requires_grad(), trainable, "{name}: trainable");
        let sum = var
            .to_kind(Kind::Double)
            .sum(Kind::Double)
            .double_value(&[]);
        let want = entry["sum"].as_f64().unwrap();
        assert!(
            (sum - want).abs() <= 1e-5 * (1.0 + want.abs()),
            "{name}: sum {sum} in Rust, {want} in PyTorch"
        );
    }
    assert_eq!(vars.len(), want_names.len(), "no other variable: {vars:?}");
    assert_eq!(model.variable_names(), want_names.as_slice());
    assert_eq!(vs.trainable_variables().len(), params.len());
    assert!(want_names.iter().any(|n| n == "bn2.num_batches_tracked"));

    // The recorder's roles, from PyTorch's trainability and dimensions.
    let tmp = tempdir();
    Recorder::builder(tmp.path().join("run"))
        .build(&vs)
        .unwrap()
        .finish()
        .unwrap();
    let run = Run::open(tmp.path().join("run")).unwrap();
    let m = run.manifest();
    let roles: BTreeMap<&str, Role> = m
        .tensors
        .iter()
        .map(|t| (t.name.as_str(), t.role))
        .collect();
    for p in params {
        let name = p["name"].as_str().unwrap();
        let dims = p["shape"].as_array().unwrap().len();
        let want = if dims >= 2 { Role::Weight } else { Role::Bias };
        assert_eq!(roles.get(name), Some(&want), "{name}");
    }
    for name in RUNNING_STATS {
        assert_eq!(roles.get(name), Some(&Role::Buffer), "{name}");
    }
    assert_eq!(roles.len(), params.len() + RUNNING_STATS.len());
    assert_eq!(roles.get("conv1.weight"), Some(&Role::Weight));
    assert_eq!(roles.get("bn1.weight"), Some(&Role::Bias));
    let skipped: Vec<&str> = m.skipped.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        skipped,
        ["bn1.num_batches_tracked", "bn2.num_batches_tracked"]
    );

    // Forward in both modes, against PyTorch's logits for the same input.
    let x = Tensor::linspace(0.0, 1.0, 128, tch::kind::FLOAT_CPU).view([2, 1, 8, 8]);
    let close = |got: &Tensor, key: &str| {
        let want: Vec<f64> = facts[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let got = f32s(got);
        assert_eq!(got.len(), want.len(), "{key}");
        let worst = got
            .iter()
            .zip(&want)
            .map(|(g, w)| (*g as f64 - w).abs())
            .fold(0.0, f64::max);
        assert!(worst < 1e-5, "{key}: differs from PyTorch by {worst}");
    };
    let stats = |vs: &VarStore| -> Vec<Vec<f32>> {
        RUNNING_STATS
            .iter()
            .map(|n| f32s(&vs.variables()[*n]))
            .collect()
    };
    let initial = stats(&vs);
    let eval_out = model.f_forward_t(&x, false).unwrap();
    close(&eval_out, "eval_logits");
    assert_eq!(
        stats(&vs),
        initial,
        "an eval-mode forward changed the statistics"
    );
    let counter = |vs: &VarStore| vs.variables()["bn1.num_batches_tracked"].int64_value(&[]);
    assert_eq!(counter(&vs), 0);
    let train_out = tch::no_grad(|| model.forward_t(&x, true));
    close(&train_out, "train_logits");
    assert_ne!(
        stats(&vs),
        initial,
        "a train-mode forward left the statistics"
    );
    assert_eq!(
        counter(&vs),
        1,
        "num_batches_tracked is the module's counter"
    );
    // Eval mode again uses the updated statistics.
    let again = model.forward_t(&x, false);
    assert!(again.ne_tensor(&eval_out).any().int64_value(&[]) == 1);

    // The variables share storage with the module.
    tch::no_grad(|| {
        let _ = vs.variables()["fc.weight"].shallow_clone().fill_(0.0);
        let _ = vs.variables()["fc.bias"].shallow_clone().fill_(0.0);
    });
    let zeros = model.f_forward_t(&x, false).unwrap();
    assert_eq!(f32s(&zeros), vec![0.0; 20], "fc set through the VarStore");

    // A wrong input is an error naming the file, not a panic.
    for bad in [
        Tensor::zeros([4, 64], tch::kind::FLOAT_CPU),
        Tensor::zeros([4, 3, 8, 8], tch::kind::FLOAT_CPU),
        Tensor::zeros([4, 1, 8, 8], tch::kind::INT64_CPU),
    ] {
        let e = model.f_forward_t(&bad, false).unwrap_err().to_string();
        assert!(
            e.contains("cnn.pt") && e.contains(&format!("{:?}", bad.size())),
            "{e}"
        );
    }

    // Bad files: errors naming them, and nothing added to the VarStore.
    let dir = fixtures();
    let tmp = tempdir();
    let garbage = tmp.path().join("garbage.pt");
    std::fs::write(&garbage, b"PK\x03\x04 not really a zip").unwrap();
    let empty = VarStore::new(Device::Cpu);
    for (path, says) in [
        (dir.join("state-dict.pt"), "not a TorchScript module"),
        (garbage, "not a TorchScript module"),
        (dir.join("absent.pt"), "absent.pt"),
        (dir.join("digits.npz"), "not a TorchScript module"),
    ] {
        let e = ScriptModel::load(&path, &empty).unwrap_err().to_string();
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        assert!(e.contains(&file) && e.contains(says), "{e}");
        assert!(empty.variables().is_empty(), "{e}: variables were added");
    }
    // A directory is not a model file.
    let e = ScriptModel::load(dir, &empty).unwrap_err().to_string();
    assert!(e.contains("script_model"), "{e}");
    // The same model twice in one VarStore: refused by name.
    let before = vs.variables().len();
    let e = ScriptModel::load(dir.join("cnn.pt"), &vs)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("cnn.pt") && e.contains("conv1.weight") && e.contains("already"),
        "{e}"
    );
    assert_eq!(vs.variables().len(), before);
}

/// (b) A run recorded from Rust: snapshots hold the BN running statistics;
/// the model file fits it, a model of other widths is refused with every
/// mismatch named; the last snapshot loaded into a fresh model evaluates
/// exactly as the trained model did; a surface's centre is exactly the
/// direct evaluation of the model at that snapshot.
#[test]
fn a_run_recorded_from_rust_matches_reloads_and_surfaces_exactly() {
    let t = trained();
    let data = digits();
    let run = Run::open(&t.run).unwrap();
    assert_eq!(run.len(), EPOCHS as usize + 1);
    let last = run.len() - 1;
    let m = run.manifest();
    for name in RUNNING_STATS {
        let info = m.tensors.iter().find(|t| t.name == name).unwrap();
        assert_eq!(info.role, Role::Buffer, "{name}");
    }
    // The snapshots hold the statistics as training left them.
    let first = run.tensors(0).unwrap();
    let mean0 = &first
        .iter()
        .find(|(n, _)| n == "bn1.running_mean")
        .unwrap()
        .1;
    assert!(
        f32s(mean0).iter().all(|v| *v == 0.0),
        "θ₀: initial statistics"
    );
    for (name, t_last) in run.tensors(last).unwrap() {
        let want = &t.final_vars[&name];
        let mut got = vec![0u8; want.len()];
        let t_last = t_last.contiguous();
        t_last.copy_data_u8(&mut got, t_last.numel());
        assert_eq!(&got, want, "{name}: last snapshot vs the trained model");
    }
    let trained_mean = &t.final_vars["bn1.running_mean"];
    assert!(trained_mean.iter().any(|b| *b != 0), "statistics trained");

    // The same model file fits the run.
    let vs = VarStore::new(Device::Cpu);
    let model = load("cnn", &vs);
    let matched = ModelMatch::check(&run, &vs, false).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(matched.pairs.len(), 14);
    assert!(matched.missing_running_stats.is_empty());

    // A wider model: every mismatch at once, by name.
    let wide_vs = VarStore::new(Device::Cpu);
    let _wide = load("cnn-wide", &wide_vs);
    let e = ModelMatch::check(&run, &wide_vs, false)
        .unwrap_err()
        .to_string();
    println!("cnn-wide.pt vs the cnn.pt run: {e}");
    assert!(e.contains("cnn-run"), "names the run: {e}");
    assert!(
        e.contains("missing in the run (2): head.bias, head.weight"),
        "{e}"
    );
    assert!(e.contains("other shape (7)"), "{e}");
    for name in [
        "conv2.weight",
        "conv2.bias",
        "bn2.weight",
        "bn2.bias",
        "bn2.running_mean",
        "bn2.running_var",
        "fc.weight",
    ] {
        assert!(e.contains(&format!("{name} is [")), "{name}: {e}");
    }
    assert!(!e.contains("conv1.weight"), "conv1 fits: {e}");
    assert!(!e.contains("recalibration"), "no statistic is missing: {e}");
    // ... and the other way round: the run has tensors the model lacks.
    let tmp = tempdir();
    Recorder::builder(tmp.path().join("wide-run"))
        .build(&wide_vs)
        .unwrap()
        .finish()
        .unwrap();
    let wide_run = Run::open(tmp.path().join("wide-run")).unwrap();
    let e = ModelMatch::check(&wide_run, &vs, true)
        .unwrap_err()
        .to_string();
    println!("cnn.pt vs a cnn-wide.pt run: {e}");
    assert!(
        e.contains("not in the model (2): head.bias, head.weight"),
        "{e}"
    );
    assert!(
        e.contains("fc.weight is [10, 256] in the model, [10, 384] in the run"),
        "{e}"
    );

    // The last snapshot in a freshly loaded model evaluates exactly as the
    // trained model did in memory.
    matched.load(&run, last, &vs).unwrap();
    let reloaded = evaluator(&model, &data, 128).evaluate().unwrap();
    assert_same_results(&reloaded, &t.in_memory, "reloaded vs in memory");
    for (name, bytes) in var_bytes(&vs) {
        if name.ends_with("num_batches_tracked") {
            continue; // int64, not recorded
        }
        assert_eq!(&bytes, &t.final_vars[&name], "{name}");
    }

    // Surfaces around that snapshot: the centre is the direct evaluation.
    let (train, test) = (&data.splits[0], &data.splits[1]);
    let want = {
        let (tl, ta) = direct(&model, &train.x, &train.y);
        let (sl, sa) = direct(&model, &test.x, &test.y);
        vec![
            SplitResult {
                split: "train".into(),
                loss: tl,
                accuracy: Some(ta),
            },
            SplitResult {
                split: "test".into(),
                loss: sl,
                accuracy: Some(sa),
            },
        ]
    };
    println!("direct evaluation at snapshot {last}: {want:?}");
    assert!(want[0].accuracy.unwrap() > 90.0, "trained: {want:?}");
    let centre = matched.params_at(&run, last).unwrap();
    // Batches larger than the splits: one forward per split, as `direct`.
    let mut eval = evaluator(&model, &data, 2048);
    let line = Directions::random(&centre).dims(1).seed(7).build().unwrap();
    let r1 = Surface::builder(&line)
        .line(-1.0..=1.0, 5)
        .build()
        .unwrap()
        .evaluate(&vs, &mut eval, tmp.path().join("line"))
        .unwrap();
    let plane = Directions::random(&centre).seed(8).build().unwrap();
    let r2 = Surface::builder(&plane)
        .grid(-1.0..=1.0, 3, -1.0..=1.0, 3)
        .build()
        .unwrap()
        .evaluate(&vs, &mut eval, tmp.path().join("plane"))
        .unwrap();
    for r in [&r1, &r2] {
        assert_same_results(&centre_of(r), &want, &r.dir.display().to_string());
        let losses = r.loss("train");
        assert!(
            losses.iter().any(|l| *l > want[0].loss * 1.01),
            "the surface is not flat: {losses:?}"
        );
    }
    // The model was restored after the surfaces.
    let after = evaluator(&model, &data, 128).evaluate().unwrap();
    assert_same_results(&after, &t.in_memory, "after the surfaces");
}

/// (c) A run recorded through `tch::TrainableCModule` (its parameters only,
/// named with `_`): the model file is refused without running statistics,
/// with a hint at recalibration; accepted when they are optional, and the
/// snapshot loads into the model by name; recalibrated statistics then give
/// the trained accuracy.
#[test]
fn a_run_recorded_through_trainable_cmodule_fits_with_recalibration() {
    let data = digits();
    let (x, y) = (&data.splits[0].x, &data.splits[0].y);
    let tmp = tempdir();
    let run_dir = tmp.path().join("cmodule-run");
    let cvs = VarStore::new(Device::Cpu);
    let mut cmodule = tch::TrainableCModule::load(fixtures().join("cnn.pt"), cvs.root()).unwrap();
    cmodule.set_train();
    let names: Vec<String> = cvs.variables().into_keys().collect();
    assert!(names.iter().any(|n| n == "conv1_weight"), "{names:?}");
    assert!(!names.iter().any(|n| n.contains("running")), "{names:?}");
    let mut rec = Recorder::builder(&run_dir).build(&cvs).unwrap();
    let mut opt = sgd(&cvs);
    for epoch in 1..=3 {
        let loss = train_epoch(&cmodule, &mut opt, x, y, 100 + epoch);
        rec.on_epoch_end(epoch, &[("train_loss", loss)]).unwrap();
    }
    rec.finish().unwrap();
    let trained: BTreeMap<String, Vec<f32>> = cvs
        .variables()
        .into_iter()
        .map(|(n, t)| (n, f32s(&t)))
        .collect();
    // The module's own statistics, kept inside it (not recorded).
    cmodule.set_eval();
    let own = tch::no_grad(|| {
        let out = cmodule.forward_t(&data.splits[1].x, false);
        let correct = out.argmax(-1, false).eq_tensor(&data.splits[1].y);
        100.0 * correct.sum(Kind::Int64).int64_value(&[]) as f64 / 360.0
    });

    let run = Run::open(&run_dir).unwrap();
    let vs = VarStore::new(Device::Cpu);
    let model = load("cnn", &vs);
    let e = ModelMatch::check(&run, &vs, false).unwrap_err().to_string();
    println!("running statistics required: {e}");
    assert!(
        e.contains(
            "missing in the run (4): bn1.running_mean, bn1.running_var, bn2.running_mean, bn2.running_var"
        ),
        "{e}"
    );
    assert!(e.contains("recalibrat"), "suggests recalibration: {e}");
    assert!(!e.contains("not in the model"), "every parameter fits: {e}");
    let m = ModelMatch::check(&run, &vs, true).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(m.missing_running_stats, RUNNING_STATS);
    assert_eq!(m.pairs.len(), 10);
    m.load(&run, run.len() - 1, &vs).unwrap();
    let vars = vs.variables();
    for (cname, values) in &trained {
        let name = cname.replacen('_', ".", 1);
        assert_bits_eq(&f32s(&vars[&name]), values, &name);
    }
    // The statistics are still those of initialization ...
    assert!(f32s(&vars["bn2.running_mean"]).iter().all(|v| *v == 0.0));
    let fixed = evaluator(&model, &data, 128).evaluate().unwrap();
    // ... until recalibrated on the training inputs.
    let recal = evaluator(&model, &data, 128)
        .recalibrate_bn(&vs, x, BnRecalibration::default())
        .unwrap()
        .evaluate()
        .unwrap();
    println!(
        "TrainableCModule run, test accuracy: initial statistics {:?}, recalibrated {:?}, the module's own {own:.2}",
        fixed[1].accuracy, recal[1].accuracy
    );
    assert!(f32s(&vars["bn2.running_mean"]).iter().any(|v| *v != 0.0));
    let acc = recal[1].accuracy.unwrap();
    assert!(acc > 90.0, "recalibrated test accuracy {acc}");
    assert!(
        (acc - own).abs() < 3.0,
        "recalibrated {acc} vs the module's own statistics {own}"
    );
    assert!(recal[0].loss < fixed[0].loss, "{recal:?} vs {fixed:?}");
}

/// (d) BatchNorm recalibration on the trained BN CNN: along a random
/// direction, fixed and recalibrated statistics agree closely at θ* and
/// differ clearly at |α| = 1; recalibration is deterministic for a seed; the
/// model is restored after the surface; the Hessian with recalibration runs.
#[test]
fn batchnorm_recalibration_matters_away_from_the_minimum() {
    let t = trained();
    let data = digits();
    let x = &data.splits[0].x;
    let run = Run::open(&t.run).unwrap();
    let last = run.len() - 1;
    let vs = VarStore::new(Device::Cpu);
    let model = load("cnn", &vs);
    let m = ModelMatch::check(&run, &vs, false).unwrap();
    m.load(&run, last, &vs).unwrap();
    let centre = m.params_at(&run, last).unwrap();
    let dirs = Directions::random(&centre).dims(1).seed(5).build().unwrap();
    let surface = Surface::builder(&dirs).line(-1.0..=1.0, 5).build().unwrap();
    let settings = |seed| BnRecalibration {
        batches: 8,
        batch: 128,
        seed,
    };
    let recalibrated = |seed| {
        evaluator(&model, &data, 512)
            .recalibrate_bn(&vs, x, settings(seed))
            .unwrap()
    };
    let tmp = tempdir();
    let before = var_bytes(&vs);
    let fixed = surface
        .evaluate(
            &vs,
            &mut evaluator(&model, &data, 512),
            tmp.path().join("fixed"),
        )
        .unwrap();
    let r1 = surface
        .evaluate(&vs, &mut recalibrated(3), tmp.path().join("recal-a"))
        .unwrap();
    assert_eq!(
        var_bytes(&vs),
        before,
        "the model is restored after the surface"
    );
    let r2 = surface
        .evaluate(&vs, &mut recalibrated(3), tmp.path().join("recal-b"))
        .unwrap();
    let r3 = surface
        .evaluate(&vs, &mut recalibrated(4), tmp.path().join("recal-c"))
        .unwrap();
    assert_eq!(
        var_bytes(&vs),
        before,
        "the model is restored after the surface"
    );
    for split in ["train", "test"] {
        let bits = |r: &SurfaceResult| -> Vec<u64> {
            r.loss(split)
                .into_iter()
                .chain(r.accuracy(split))
                .map(f64::to_bits)
                .collect()
        };
        assert_eq!(bits(&r1), bits(&r2), "{split}: same seed, same values");
        assert_ne!(
            bits(&r1),
            bits(&r3),
            "{split}: another seed, another subset"
        );
    }
    // Fixed vs recalibrated, at θ* (index 2) and at α = ±1 (0 and 4).
    for split in ["train", "test"] {
        let (f, r) = (fixed.loss(split), r1.loss(split));
        let at_centre = (f[2] - r[2]).abs();
        let away = (f[0] - r[0]).abs().max((f[4] - r[4]).abs());
        println!(
            "{split}: loss fixed {f:.4?}, recalibrated {r:.4?}; |fixed − recalibrated| at θ*: {at_centre:.5}, at |α| = 1: {away:.5} (ratio {:.4})",
            at_centre / away
        );
        assert!(
            away > 0.05,
            "{split}: recalibration changes little at |α| = 1: {away}"
        );
        assert!(
            at_centre < 0.1 * away,
            "{split}: at θ* {at_centre} is not much smaller than at |α| = 1 {away}"
        );
    }

    // The Hessian with recalibrated statistics at θ*, beside fixed ones.
    let lanczos = Lanczos::builder().tol(1e-2).build().unwrap();
    let (xt, yt) = (&data.splits[0].x, &data.splits[0].y);
    let objective = SupervisedObjective::new(&model, xt, yt)
        .and_then(|o| o.batch(TRAIN))
        .unwrap();
    let fixed_spectrum = Hessian::at(&vs, objective, &Selection::Weights)
        .unwrap()
        .eigenvalues(&lanczos)
        .unwrap();
    let objective = SupervisedObjective::new(&model, xt, yt)
        .and_then(|o| o.batch(TRAIN))
        .and_then(|o| o.recalibrate_bn(&vs, x, settings(3)))
        .unwrap();
    assert_eq!(
        var_bytes(&vs),
        before,
        "the Hessian with fixed statistics changed the model"
    );
    let mut h = Hessian::at(&vs, objective, &Selection::Weights).unwrap();
    let s = h.eigenvalues(&lanczos).unwrap();
    println!(
        "Hessian at θ* (weights, {} values): recalibrated λmax {:.5} λmin {:.5} ({} HVPs); fixed λmax {:.5} λmin {:.5}",
        h.dim(),
        s.lambda_max,
        s.lambda_min,
        s.hvps,
        fixed_spectrum.lambda_max,
        fixed_spectrum.lambda_min
    );
    assert!(s.lambda_max.is_finite() && s.lambda_min.is_finite());
    assert!(s.lambda_max > 0.0 && s.lambda_max >= s.lambda_min);
    let rel = (s.lambda_max - fixed_spectrum.lambda_max).abs() / fixed_spectrum.lambda_max;
    assert!(
        rel < 0.25,
        "λmax at θ*: recalibrated vs fixed differ by {rel}"
    );
}

/// (e) The digits written as safetensors and as npz read back identically,
/// and as written.
#[test]
fn datasets_from_safetensors_and_npz_are_identical() {
    let dir = fixtures();
    let names = DataNames::default();
    let a = Dataset::load(dir.join("digits.safetensors"), &names, Targets::Classes).unwrap();
    let b = Dataset::load(dir.join("digits.npz"), &names, Targets::Classes).unwrap();
    let written = digit_tensors();
    assert_eq!(a.splits.len(), 2);
    assert_eq!(b.splits.len(), 2);
    for (k, (sa, sb)) in a.splits.iter().zip(&b.splits).enumerate() {
        assert_eq!(sa.name, sb.name);
        assert_eq!(sa.name, ["train", "test"][k]);
        let n = if k == 0 { TRAIN } else { 1797 - TRAIN };
        assert_eq!(sa.x.size(), [n, 1, 8, 8]);
        assert_eq!((sa.x.kind(), sa.y.kind()), (Kind::Float, Kind::Int64));
        for (what, ta, tb, want) in [
            ("x", &sa.x, &sb.x, &written[2 * k].1),
            ("y", &sa.y, &sb.y, &written[2 * k + 1].1),
        ] {
            assert_eq!(ta.size(), tb.size(), "{what}");
            assert_eq!(ta.kind(), tb.kind(), "{what}");
            assert!(ta.equal(tb), "{} {what}: safetensors vs npz", sa.name);
            assert!(ta.equal(want), "{} {what}: as written", sa.name);
        }
    }
    let (x, y) = (&a.splits[0].x, &a.splits[0].y);
    assert_eq!(
        x.max().double_value(&[]),
        1.0,
        "pixels scaled by 1/16 as the Digits loader does"
    );
    assert_eq!(y.max().int64_value(&[]), 9);
}
