//! Helpers shared by the integration tests: small real tch models, training
//! steps on the real digits data, and independent deep copies of a VarStore
//! for bit-exact comparisons with what the recorder wrote.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use tch::nn::{self, Module, ModuleT, OptimizerConfig};
use tch::{Device, Kind, Tensor};

use tch_landscape::data::digits::Digits;
use tch_landscape::models::Mlp;

/// 64 → 32 → BatchNorm1d(32) → ReLU → 10. BN's running mean/var are
/// non-trainable variables that training updates in place.
#[derive(Debug)]
pub struct BnNet {
    pub fc1: nn::Linear,
    pub bn: nn::BatchNorm,
    pub fc2: nn::Linear,
}

impl BnNet {
    pub fn new(p: &nn::Path) -> BnNet {
        BnNet {
            fc1: nn::linear(p / "fc1", 64, 32, Default::default()),
            bn: nn::batch_norm1d(p / "bn", 32, Default::default()),
            fc2: nn::linear(p / "fc2", 32, 10, Default::default()),
        }
    }
}

impl ModuleT for BnNet {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let h = self.fc1.forward(xs);
        let h = self.bn.forward_t(&h, train).relu();
        self.fc2.forward(&h)
    }
}

/// The names of the variables of [`BnNet`] built at the root, sorted.
pub const BN_NET_NAMES: [&str; 8] = [
    "bn.bias",
    "bn.running_mean",
    "bn.running_var",
    "bn.weight",
    "fc1.bias",
    "fc1.weight",
    "fc2.bias",
    "fc2.weight",
];

/// An SGD optimizer with momentum for `vs`.
pub fn sgd(vs: &nn::VarStore, lr: f64) -> nn::Optimizer {
    nn::Sgd {
        momentum: 0.9,
        ..Default::default()
    }
    .build(vs, lr)
    .expect("building SGD")
}

/// Mini-batch indices of one epoch over `n` samples (shuffled by libtorch).
pub fn batches(n: i64, batch: i64) -> Vec<Tensor> {
    let perm = Tensor::randperm(n, (Kind::Int64, Device::Cpu));
    let mut out = Vec::new();
    let mut start = 0;
    while start < n {
        let len = batch.min(n - start);
        out.push(perm.narrow(0, start, len));
        start += len;
    }
    out
}

/// One SGD step of `model` on the samples `idx` of `data`; returns the loss.
pub fn step_t(model: &impl ModuleT, opt: &mut nn::Optimizer, data: &Digits, idx: &Tensor) -> f64 {
    let loss = model
        .forward_t(&data.x.index_select(0, idx), true)
        .cross_entropy_for_logits(&data.y.index_select(0, idx));
    opt.backward_step(&loss);
    loss.double_value(&[])
}

/// Same for a plain [`Module`] (e.g. [`Mlp`]).
pub fn step(model: &Mlp, opt: &mut nn::Optimizer, data: &Digits, idx: &Tensor) -> f64 {
    let loss = model
        .forward(&data.x.index_select(0, idx))
        .cross_entropy_for_logits(&data.y.index_select(0, idx));
    opt.backward_step(&loss);
    loss.double_value(&[])
}

/// An independent deep copy of one variable: its shape and its values
/// converted to float32 (exact for float32/float16/bfloat16 variables).
#[derive(Debug, Clone, PartialEq)]
pub struct VarCopy {
    pub shape: Vec<i64>,
    pub kind: Kind,
    pub values: Vec<f32>,
}

/// Deep-copies every floating-point variable of `vs`, keyed by name.
pub fn deep_copy(vs: &nn::VarStore) -> BTreeMap<String, VarCopy> {
    tch::no_grad(|| {
        vs.variables()
            .into_iter()
            .filter(|(_, t)| t.is_floating_point())
            .map(|(name, t)| {
                // `copy()` is a deep copy inside libtorch; the Vec is a second,
                // independent one on the Rust side.
                let owned = t.copy();
                let flat = owned.to_kind(Kind::Float).flatten(0, -1);
                let values = Vec::<f32>::try_from(&flat).expect("tensor to Vec<f32>");
                (
                    name,
                    VarCopy {
                        shape: t.size(),
                        kind: t.kind(),
                        values,
                    },
                )
            })
            .collect()
    })
}

/// Deep-copies every float64 variable of `vs`, keyed by name.
pub fn deep_copy_f64(vs: &nn::VarStore) -> BTreeMap<String, Vec<f64>> {
    tch::no_grad(|| {
        vs.variables()
            .into_iter()
            .filter(|(_, t)| t.kind() == Kind::Double)
            .map(|(name, t)| {
                let flat = t.copy().flatten(0, -1);
                (
                    name,
                    Vec::<f64>::try_from(&flat).expect("tensor to Vec<f64>"),
                )
            })
            .collect()
    })
}

/// The values of a tensor of any floating kind as float32.
pub fn tensor_f32(t: &Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(&t.to_kind(Kind::Float).flatten(0, -1)).expect("tensor to Vec<f32>")
}

/// Asserts two float32 slices are bit-for-bit equal, naming the first
/// difference.
#[track_caller]
pub fn assert_bits_eq(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length differs");
    if let Some(i) = (0..got.len()).find(|&i| got[i].to_bits() != want[i].to_bits()) {
        panic!(
            "{what}: element {i} differs: got {} ({:#010x}), want {} ({:#010x})",
            got[i],
            got[i].to_bits(),
            want[i],
            want[i].to_bits()
        );
    }
}

/// Same for float64.
#[track_caller]
pub fn assert_bits_eq_f64(got: &[f64], want: &[f64], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length differs");
    if let Some(i) = (0..got.len()).find(|&i| got[i].to_bits() != want[i].to_bits()) {
        panic!(
            "{what}: element {i} differs: got {}, want {}",
            got[i], want[i]
        );
    }
}

/// FNV-1a (over 32-bit words) of the bit patterns of a float32 sequence: a
/// cheap fingerprint a child process can print and the parent can recompute
/// from the run.
pub fn fnv1a_f32<'a>(values: impl IntoIterator<Item = &'a f32>) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for v in values {
        h ^= v.to_bits() as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The fingerprint of the float variables of `vs` concatenated in name order,
/// which is the run's manifest order.
pub fn fingerprint(vs: &nn::VarStore) -> u64 {
    let copy = deep_copy(vs);
    fnv1a_f32(copy.values().flat_map(|c| c.values.iter()))
}

/// Path of the repository root (where Cargo.toml is).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A temporary directory under the system temp dir, removed on drop.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("tch-landscape-test-")
        .tempdir()
        .expect("creating a temp dir")
}

/// Records a short run of [`BnNet`] on the digits into `dir`: θ₀ plus one
/// snapshot per epoch, with `train_loss` and `lr` metrics per epoch and a
/// `batch_loss` metric per step. Returns the deep copies taken at each
/// snapshot.
pub fn record_bn_run(dir: &Path, epochs: u64, seed: i64) -> Vec<BTreeMap<String, VarCopy>> {
    tch::manual_seed(seed);
    let data = Digits::load().expect("digits");
    let vs = nn::VarStore::new(Device::Cpu);
    let model = BnNet::new(&vs.root());
    let mut opt = sgd(&vs, 0.05);
    let mut rec = tch_landscape::Recorder::builder(dir)
        .metadata("model", "BnNet")
        .build(&vs)
        .expect("building the recorder");
    let mut copies = vec![deep_copy(&vs)];
    let mut step_no = 0u64;
    for epoch in 1..=epochs {
        let mut total = 0.0;
        let bs = batches(data.len() as i64, 128);
        let nb = bs.len();
        for idx in bs {
            let l = step_t(&model, &mut opt, &data, &idx);
            step_no += 1;
            rec.on_step_end(epoch, step_no, &[("batch_loss", l)])
                .expect("on_step_end");
            total += l;
        }
        rec.on_epoch_end(epoch, &[("train_loss", total / nb as f64), ("lr", 0.05)])
            .expect("on_epoch_end");
        copies.push(deep_copy(&vs));
    }
    rec.finish().expect("finish");
    copies
}

/// A tiny two-tensor model (`lin.weight` [3, 4], `lin.bias` [3]) recorded
/// for `snapshots - 1` epochs of random updates: small files for the
/// corruption tests.
pub fn record_tiny_run(dir: &Path, snapshots: u64) {
    let vs = nn::VarStore::new(Device::Cpu);
    let _lin = nn::linear(vs.root() / "lin", 4, 3, Default::default());
    let mut rec = tch_landscape::Recorder::builder(dir)
        .fsync(false)
        .build(&vs)
        .expect("building the recorder");
    for epoch in 1..snapshots {
        tch::no_grad(|| {
            for (_, mut t) in vs.variables() {
                let _ = t.g_add_(&Tensor::randn_like(&t));
            }
        });
        rec.on_epoch_end(epoch, &[("loss", 1.0 / epoch as f64)])
            .expect("on_epoch_end");
    }
    rec.finish().expect("finish");
}

/// Every variable of `vs` as (name, f32 bit patterns), sorted by name: for
/// bit-exact "the model was restored" checks.
pub fn snapshot_bits(vs: &nn::VarStore) -> Vec<(String, Vec<u32>)> {
    let mut v: Vec<(String, Vec<u32>)> = vs
        .variables()
        .into_iter()
        .map(|(n, t)| {
            let f = Vec::<f32>::try_from(t.detach().flatten(0, -1)).unwrap();
            (n, f.into_iter().map(f32::to_bits).collect())
        })
        .collect();
    v.sort();
    v
}

/// The first `n` digits as (inputs, labels).
pub fn digits_subset(n: i64) -> (Tensor, Tensor) {
    let d = Digits::load().unwrap();
    (d.x.narrow(0, 0, n), d.y.narrow(0, 0, n))
}

/// Where `./landscape-dev setup` puts the test Python: the venv under the
/// cache directory (as scripts/env.sh computes it), then the default path.
pub fn python_candidates() -> Vec<PathBuf> {
    let cache = std::env::var_os("TCH_LANDSCAPE_CACHE")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("XDG_CACHE_HOME").map(|x| PathBuf::from(x).join("tch-landscape"))
        })
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/tch-landscape"))
        });
    cache
        .map(|c| c.join("torch-2.13.0/venv/bin/python"))
        .into_iter()
        .chain([PathBuf::from(
            "/root/.cache/tch-landscape/torch-2.13.0/venv/bin/python",
        )])
        .collect()
}

/// The test Python (torch 2.13, numpy, pyarrow, duckdb, polars, sklearn):
/// `$TCH_LANDSCAPE_PYTHON` (set by `./landscape-dev test`), else the venv
/// `./landscape-dev setup` makes; a clear failure when there is none.
#[allow(dead_code)]
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("TCH_LANDSCAPE_PYTHON") {
        let p = PathBuf::from(p);
        assert!(
            p.exists(),
            "TCH_LANDSCAPE_PYTHON={} does not exist; run ./landscape-dev setup",
            p.display()
        );
        return p;
    }
    let candidates = python_candidates();
    candidates
        .iter()
        .find(|p| p.exists())
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "no test Python found (looked at $TCH_LANDSCAPE_PYTHON and {candidates:?}); \
                 run ./landscape-dev setup (or ./landscape-dev test), which installs it"
            )
        })
}

/// A short run of the demo's model, as `landscape surface` expects.
#[allow(dead_code)]
pub fn demo_run(dir: &Path) {
    let data = tch_landscape::data::digits::Digits::load().unwrap();
    let (train, _) = data.split_at(1437).unwrap();
    let cfg = tch_landscape::demo::TrainConfig {
        epochs: 1,
        lr_drops: vec![],
        ..Default::default()
    };
    tch_landscape::demo::train_digits(dir, &train, &cfg).unwrap();
}

/// Runs the Python script `tests/fixtures/NAME` with `args` under
/// [`python()`] and returns the JSON it prints (a failure shows its stderr).
#[allow(dead_code)]
pub fn python_json(name: &str, args: &[&std::ffi::OsStr]) -> serde_json::Value {
    let py = python();
    let script = repo_root().join("tests/fixtures").join(name);
    let output = std::process::Command::new(&py)
        .arg(&script)
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{} {} failed ({}):\n{}\n(if a module is missing, run ./landscape-dev setup)",
        py.display(),
        script.display(),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "Python printed no JSON ({e}):\n{}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

/// Loads `page` in headless Chromium; returns (dumped DOM, console errors).
#[allow(dead_code)]
pub fn chromium(page: &Path, screenshot: Option<&Path>) -> (String, Vec<String>) {
    let bin = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|b| std::process::Command::new(b).arg("--version").output().is_ok_and(|o| o.status.success()))
        .expect("headless Chromium is needed for the report tests: apt-get install chromium (./landscape-dev test does it)");
    let profile = tempfile::tempdir().unwrap();
    let url = format!("file://{}", page.display());
    let mut base = vec![
        "--headless".to_string(),
        "--no-sandbox".into(),
        "--disable-gpu".into(),
        "--disable-background-networking".into(),
        "--disable-component-update".into(),
        "--disable-sync".into(),
        "--no-first-run".into(),
        format!("--user-data-dir={}", profile.path().display()),
        "--enable-logging=stderr".into(),
        "--v=0".into(),
        "--virtual-time-budget=8000".into(),
        // WebGL (the 3-D surfaces) in headless mode.
        "--enable-unsafe-swiftshader".into(),
        "--use-angle=swiftshader".into(),
    ];
    if let Some(shot) = screenshot {
        let mut a = base.clone();
        a.push(format!("--screenshot={}", shot.display()));
        a.push("--window-size=1400,5000".into());
        a.push(url.clone());
        let o = std::process::Command::new(bin).args(&a).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    base.push("--dump-dom".into());
    base.push(url);
    let o = std::process::Command::new(bin)
        .args(&base)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let errors = String::from_utf8_lossy(&o.stderr)
        .lines()
        .filter(|l| {
            l.contains("CONSOLE")
                && (l.contains("Uncaught") || l.contains("ERROR") || l.contains("error"))
        })
        .map(str::to_string)
        .collect();
    (String::from_utf8_lossy(&o.stdout).into_owned(), errors)
}
