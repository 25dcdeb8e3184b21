//! `landscape import` and `tch_landscape::import`: safetensors checkpoints of
//! a small model with a BatchNorm (weights, biases, running statistics and
//! an int64 `num_batches_tracked`, named as PyTorch names them) become a run
//! whose values, names, roles and epochs are exactly the checkpoints'; `pca`
//! and `report` work on it; broken checkpoints are refused by file and
//! tensor and leave no run; PyTorch's `torch.save` files are refused with
//! the way to convert them.
//!
//! The PyTorch part uses the test Python with torch ($TCH_LANDSCAPE_PYTHON,
//! else the one `./landscape-dev setup` installs) and is skipped, with a
//! note, without it.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tch::{Device, Kind, Tensor};

use common::{python_candidates, tempdir};
use tch_landscape::import::{Import, CONVERT_PYTHON};
use tch_landscape::{Role, Run};

/// The float tensors of the model, sorted, with their roles.
const FLOAT_TENSORS: [(&str, Role); 8] = [
    ("classifier.bias", Role::Bias),
    ("classifier.weight", Role::Weight),
    ("features.0.bias", Role::Bias),
    ("features.0.weight", Role::Weight),
    ("features.1.bias", Role::Bias),
    ("features.1.running_mean", Role::Buffer),
    ("features.1.running_var", Role::Buffer),
    ("features.1.weight", Role::Bias),
];

/// Conv(1→4, 3×3) → BatchNorm2d(4) → Linear(16→3) at step `k` of a random
/// walk: the state dict PyTorch would save, as tch tensors. Deterministic
/// without libtorch's global generator (tests run on parallel threads).
fn state_dict(k: i64) -> Vec<(String, Tensor)> {
    let shapes: [(&str, &[i64]); 8] = [
        ("features.0.weight", &[4, 1, 3, 3]),
        ("features.0.bias", &[4]),
        ("features.1.weight", &[4]),
        ("features.1.bias", &[4]),
        ("features.1.running_mean", &[4]),
        ("features.1.running_var", &[4]),
        ("classifier.weight", &[3, 16]),
        ("classifier.bias", &[3]),
    ];
    let mut out: Vec<(String, Tensor)> = shapes
        .iter()
        .enumerate()
        .map(|(j, (name, shape))| {
            let n: i64 = shape.iter().product();
            let v: Vec<f32> = (0..n)
                .map(|i| {
                    // θ₀ plus k steps of ±0.1 per element.
                    let start = uniform(j as u64, i as u64, 0) * 2.0 - 1.0;
                    let walk: f32 = (1..=k as u64)
                        .map(|step| 0.1 * (uniform(j as u64, i as u64, step) * 2.0 - 1.0))
                        .sum();
                    start + walk
                })
                .collect();
            (name.to_string(), Tensor::from_slice(&v).reshape(*shape))
        })
        .collect();
    out.push((
        "features.1.num_batches_tracked".into(),
        Tensor::from_slice(&[100 * k]).reshape([0i64; 0]),
    ));
    out
}

/// A number in [0, 1) from three integers (splitmix64).
fn uniform(a: u64, b: u64, c: u64) -> f32 {
    let mut z = a
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .wrapping_add(b.wrapping_mul(0xbf58_476d_1ce4_e5b9))
        .wrapping_add(c.wrapping_mul(0x94d0_49bb_1331_11eb))
        .wrapping_add(0x2545_f491_4f6c_dd1d);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z >> 40) as f32 / (1u64 << 24) as f32
}

fn write(path: &Path, tensors: &[(String, Tensor)]) {
    Tensor::write_safetensors(tensors, path).unwrap();
}

/// `n` checkpoints `DIR/epoch_{e}.safetensors` for e = 0, `every`, 2·`every`, ...
fn checkpoints(dir: &Path, n: i64, every: i64) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).unwrap();
    (0..n)
        .map(|k| {
            let p = dir.join(format!("epoch_{}.safetensors", k * every));
            write(&p, &state_dict(k));
            p
        })
        .collect()
}

fn landscape(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_landscape"))
        .args(args)
        .output()
        .unwrap()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The error line of a failed command (exit status 1).
fn fails(out: &Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "stderr:\n{err}");
    assert!(!err.contains("panicked"), "{err}");
    err
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn epochs(run: &Run) -> Vec<u64> {
    (0..run.len())
        .map(|i| run.snapshot(i).unwrap().meta().epoch)
        .collect()
}

/// Every float tensor of snapshot `i` equals checkpoint `k`'s, bit for bit.
fn assert_values(run: &Run, i: usize, k: i64) {
    let want = state_dict(k);
    let got = run.tensors(i).unwrap();
    assert_eq!(got.len(), FLOAT_TENSORS.len());
    for (name, t) in got {
        let (_, w) = want.iter().find(|(n, _)| *n == name).unwrap();
        assert_eq!(t.size(), w.size(), "{name}");
        let a = Vec::<f32>::try_from(t.flatten(0, -1)).unwrap();
        let b = Vec::<f32>::try_from(w.flatten(0, -1)).unwrap();
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&a), bits(&b), "snapshot {i}, tensor {name}");
    }
}

fn assert_no_run(dir: &Path) {
    assert!(Run::open(dir).is_err(), "{} holds a run", dir.display());
    assert!(!dir.join("manifest.json").exists());
    assert!(!dir.join("snapshots").exists());
}

#[test]
fn binary_imports_checkpoints_that_pca_and_report_read() {
    let tmp = tempdir();
    let files = checkpoints(&tmp.path().join("ckpt"), 5, 5);
    let out = tmp.path().join("run");
    // Given out of order: the pattern's epochs order them.
    let mut args = vec!["import", "--epoch-pattern", "epoch_{}.safetensors"];
    args.extend([4, 1, 3, 0, 2].map(|i| s(&files[i])));
    args.extend(["--out", s(&out)]);
    let t = std::time::Instant::now();
    let stdout = ok(&landscape(&args));
    println!(
        "landscape import of 5 checkpoints: {:.3} s\n{stdout}",
        t.elapsed().as_secs_f64()
    );
    assert!(stdout.contains("imported 5 checkpoints"), "{stdout}");
    assert!(stdout.contains("epochs 0 to 20"), "{stdout}");
    assert!(
        stdout.contains("8 recorded (2 weights, 4 biases, 2 buffers)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("not recorded: features.1.num_batches_tracked (Int64)")
            || stdout.contains("not recorded: features.1.num_batches_tracked (int64)"),
        "{stdout}"
    );
    // 36 + 4 + 4 + 4 + 4 + 4 + 48 + 3 recorded, 36 + 4 + 4 + 4 + 48 + 3 trainable.
    assert!(
        stdout.contains("parameters: 107 per snapshot, 99 trainable"),
        "{stdout}"
    );

    let run = Run::open(&out).unwrap();
    assert_eq!(run.len(), 5);
    assert_eq!(epochs(&run), [0, 5, 10, 15, 20]);
    let m = run.manifest();
    assert!(m.finished);
    let names: Vec<(&str, Role)> = m
        .tensors
        .iter()
        .map(|t| (t.name.as_str(), t.role))
        .collect();
    assert_eq!(names, FLOAT_TENSORS);
    for t in &m.tensors {
        assert_eq!(t.trainable, t.role != Role::Buffer, "{}", t.name);
        assert_eq!(t.dtype, "float32");
    }
    assert_eq!(m.skipped.len(), 1);
    assert_eq!(m.skipped[0].name, "features.1.num_batches_tracked");
    assert_eq!(m.user.get("source").map(String::as_str), Some("import"));
    let listed = &m.user["import.checkpoints"];
    assert!(
        listed.contains("epoch_0.safetensors") && listed.contains("epoch_20.safetensors"),
        "{listed}"
    );
    assert_eq!(
        m.user.get("import.epoch_pattern").map(String::as_str),
        Some("epoch_{}.safetensors")
    );
    for i in 0..5 {
        assert_values(&run, i, i as i64);
    }
    assert!(run.verify().is_clean());

    let pca = ok(&landscape(&["pca", s(&out)]));
    assert!(pca.contains("trajectory PCA of 5 snapshots"), "{pca}");
    assert!(out.join("pca/pca.json").exists());
    ok(&landscape(&["report", s(&out)]));
    let html = std::fs::read_to_string(out.join("report/index.html")).unwrap();
    assert!(html.contains("features.0.weight"));
    ok(&landscape(&["verify", s(&out)]));

    // An existing run is kept without --overwrite, replaced with it.
    let again = ["import", s(&files[0]), s(&files[1]), "--out", s(&out)];
    let err = fails(&landscape(&again));
    assert!(
        err.contains("already holds a recorded run") && err.contains("--overwrite"),
        "{err}"
    );
    assert_eq!(Run::open(&out).unwrap().len(), 5);
    ok(&landscape(&[&again[..], &["--overwrite"][..]].concat()));
    let run = Run::open(&out).unwrap();
    assert_eq!(epochs(&run), [0, 1]);
    assert_values(&run, 1, 1);

    // --epochs: one per checkpoint, in the order given.
    let r2 = tmp.path().join("r2");
    let list = [
        "import",
        s(&files[2]),
        s(&files[0]),
        s(&files[1]),
        "--out",
        s(&r2),
        "--epochs",
        "7,3-4",
    ];
    ok(&landscape(&list));
    let run = Run::open(tmp.path().join("r2")).unwrap();
    assert_eq!(epochs(&run), [3, 4, 7]);
    assert_values(&run, 0, 0);
    assert_values(&run, 2, 2);
}

#[test]
fn library_imports_in_file_order_and_keeps_the_first_epoch() {
    let tmp = tempdir();
    let files = checkpoints(&tmp.path().join("ckpt"), 4, 1);
    let out = tmp.path().join("run");
    let summary = Import::builder(&out)
        .checkpoints(&files)
        .metadata("model", "tiny-cnn")
        .build()
        .unwrap()
        .run()
        .unwrap();
    assert_eq!(summary.checkpoints.len(), 4);
    assert_eq!(summary.parameters, 107);
    assert_eq!(summary.trainable_parameters, 99);
    assert_eq!(summary.tensors.len(), 8);
    assert_eq!(summary.not_recorded.len(), 1);
    assert_eq!(summary.bytes_written, 4 * 107 * 4);
    let run = Run::open(&out).unwrap();
    assert_eq!(run.manifest().run_id, summary.run_id);
    assert_eq!(run.manifest().user["model"], "tiny-cnn");
    assert_eq!(epochs(&run), [0, 1, 2, 3]);
    for i in 0..4 {
        assert_values(&run, i, i as i64);
    }

    // Epochs that do not start at 0: θ₀ keeps the first checkpoint's epoch,
    // its snapshot still passes every check.
    let out = tmp.path().join("run-from-3");
    Import::builder(&out)
        .checkpoints(&files)
        .epochs([3, 4, 5, 6])
        .build()
        .unwrap()
        .run()
        .unwrap();
    let run = Run::open(&out).unwrap();
    assert_eq!(epochs(&run), [3, 4, 5, 6]);
    assert!(run.verify().is_clean(), "{:?}", run.verify().problems);
    assert_values(&run, 0, 0);
    ok(&landscape(&["verify", s(&out)]));
}

/// Checkpoints 0..4 with checkpoint `bad` replaced by `tensors`.
fn with_bad(dir: &Path, bad: usize, tensors: Vec<(String, Tensor)>) -> Vec<PathBuf> {
    let files = checkpoints(dir, 4, 1);
    write(&files[bad], &tensors);
    files
}

/// Imports `files` through the binary and the library; both fail with an
/// error containing every one of `needles`, and leave no run.
fn refused(tmp: &Path, files: &[PathBuf], needles: &[&str]) -> String {
    let out = tmp.join("run");
    let mut args = vec!["import", "--out", s(&out)];
    args.extend(files.iter().map(|f| s(f)));
    let err = fails(&landscape(&args));
    for n in needles {
        assert!(err.contains(n), "expected {n:?} in: {err}");
    }
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert_no_run(&out);
    let e = Import::builder(&out)
        .checkpoints(files)
        .build()
        .and_then(|i| i.run())
        .unwrap_err()
        .to_string();
    for n in needles {
        assert!(e.contains(n), "expected {n:?} in: {e}");
    }
    assert_no_run(&out);
    err
}

fn replace(mut sd: Vec<(String, Tensor)>, name: &str, t: Option<Tensor>) -> Vec<(String, Tensor)> {
    let i = sd.iter().position(|(n, _)| n == name).unwrap();
    match t {
        Some(t) => sd[i].1 = t,
        None => drop(sd.remove(i)),
    }
    sd
}

#[test]
fn broken_checkpoints_are_refused_by_file_and_tensor() {
    // A shape that changed in a later file.
    let tmp = tempdir();
    let sd = replace(
        state_dict(2),
        "classifier.weight",
        Some(Tensor::zeros([3, 17], (Kind::Float, Device::Cpu))),
    );
    let files = with_bad(&tmp.path().join("c"), 2, sd);
    refused(
        tmp.path(),
        &files,
        &[
            "epoch_2.safetensors",
            "'classifier.weight'",
            "[3, 17]",
            "expected [3, 16]",
        ],
    );

    // A missing tensor.
    let tmp = tempdir();
    let files = with_bad(
        &tmp.path().join("c"),
        3,
        replace(state_dict(3), "features.1.running_var", None),
    );
    refused(
        tmp.path(),
        &files,
        &[
            "epoch_3.safetensors",
            "'features.1.running_var'",
            "is missing",
        ],
    );

    // A tensor the first checkpoint does not have.
    let tmp = tempdir();
    let mut sd = state_dict(1);
    sd.push((
        "extra.weight".into(),
        Tensor::ones([2, 2], (Kind::Float, Device::Cpu)),
    ));
    let files = with_bad(&tmp.path().join("c"), 1, sd);
    refused(
        tmp.path(),
        &files,
        &[
            "epoch_1.safetensors",
            "'extra.weight'",
            "not in the first checkpoint",
        ],
    );

    // A dtype that changed.
    let tmp = tempdir();
    let sd = replace(
        state_dict(1),
        "features.0.bias",
        Some(Tensor::zeros([4], (Kind::Double, Device::Cpu))),
    );
    let files = with_bad(&tmp.path().join("c"), 1, sd);
    refused(
        tmp.path(),
        &files,
        &[
            "epoch_1.safetensors",
            "'features.0.bias'",
            "float64",
            "expected float32",
        ],
    );

    // A NaN, named by file, tensor and element.
    let tmp = tempdir();
    let w = Tensor::ones([4, 1, 3, 3], (Kind::Float, Device::Cpu));
    let _ = w.view([-1]).get(7).fill_(f64::NAN);
    let files = with_bad(
        &tmp.path().join("c"),
        2,
        replace(state_dict(2), "features.0.weight", Some(w)),
    );
    refused(
        tmp.path(),
        &files,
        &[
            "epoch_2.safetensors",
            "'features.0.weight'",
            "NaN",
            "element 7",
        ],
    );

    // Not safetensors at all, and a truncated one.
    let tmp = tempdir();
    let files = checkpoints(&tmp.path().join("c"), 4, 1);
    std::fs::write(&files[1], "epoch,loss\n1,0.5\n").unwrap();
    refused(
        tmp.path(),
        &files,
        &["epoch_1.safetensors", "not a safetensors file"],
    );
    let bytes = std::fs::read(&files[0]).unwrap();
    write(&files[1], &state_dict(1));
    std::fs::write(&files[3], &bytes[..bytes.len() - 10]).unwrap();
    refused(tmp.path(), &files, &["epoch_3.safetensors", "truncated"]);

    // A directory and a FIFO are refused before they are read.
    let tmp = tempdir();
    let mut files = checkpoints(&tmp.path().join("c"), 2, 1);
    files.push(tmp.path().join("c"));
    refused(tmp.path(), &files, &["not a regular file"]);
    let fifo = tmp.path().join("c/epoch_9.safetensors");
    if Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .is_ok_and(|s| s.success())
    {
        files.pop();
        files.push(fifo);
        refused(
            tmp.path(),
            &files,
            &["epoch_9.safetensors", "not a regular file"],
        );
    }
}

#[test]
fn a_failed_import_keeps_the_run_it_would_replace() {
    let tmp = tempdir();
    let files = checkpoints(&tmp.path().join("c"), 3, 1);
    let out = tmp.path().join("run");
    let import = |files: &[PathBuf]| {
        Import::builder(&out)
            .checkpoints(files)
            .overwrite(true)
            .build()
            .unwrap()
            .run()
    };
    import(&files).unwrap();
    let w = Tensor::ones([3], (Kind::Float, Device::Cpu));
    let _ = w.get(1).fill_(f64::INFINITY);
    let bad = tmp.path().join("c/bad.safetensors");
    write(&bad, &replace(state_dict(1), "classifier.bias", Some(w)));
    let e = import(&[files[0].clone(), bad, files[2].clone()])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("bad.safetensors") && e.contains("'classifier.bias'") && e.contains("inf"),
        "{e}"
    );
    let run = Run::open(&out).unwrap();
    assert_eq!(epochs(&run), [0, 1, 2]);
    assert_values(&run, 2, 2);
}

#[test]
fn epochs_from_names_are_checked() {
    let tmp = tempdir();
    let mut files = checkpoints(&tmp.path().join("c"), 3, 1);
    let out = tmp.path().join("run");
    let pattern = |files: &[PathBuf]| {
        let mut args = vec![
            "import",
            "--out",
            s(&out),
            "--epoch-pattern",
            "epoch_{}.safetensors",
        ];
        args.extend(files.iter().map(|f| s(f)));
        fails(&landscape(&args))
    };
    // A name that does not match.
    let other = tmp.path().join("c/final.safetensors");
    write(&other, &state_dict(3));
    files.push(other);
    let err = pattern(&files);
    assert!(
        err.contains("final.safetensors") && err.contains("does not match the epoch pattern"),
        "{err}"
    );
    // Two names with one epoch.
    files.pop();
    let dup = tmp.path().join("c/epoch_01.safetensors");
    write(&dup, &state_dict(1));
    files.push(dup);
    let err = pattern(&files);
    assert!(
        err.contains("epoch_1.safetensors")
            && err.contains("epoch_01.safetensors")
            && err.contains("epoch 1"),
        "{err}"
    );
    assert_no_run(&out);
    // A pattern without {} (a regular expression, say).
    let err = fails(&landscape(&[
        "import",
        "--out",
        s(&out),
        "--epoch-pattern",
        r"epoch_(\d+)\.safetensors",
        s(&files[0]),
    ]));
    assert!(err.contains("epoch pattern") && err.contains("{}"), "{err}");
    // --epochs with the wrong count.
    let err = fails(&landscape(&[
        "import",
        "--out",
        s(&out),
        "--epochs",
        "0,1",
        s(&files[0]),
    ]));
    assert!(err.contains("--epochs"), "{err}");
}

fn torch_python() -> Option<PathBuf> {
    let py = std::env::var_os("TCH_LANDSCAPE_PYTHON")
        .map(PathBuf::from)
        .into_iter()
        .chain(python_candidates())
        .find(|p| p.exists())?;
    let ok = Command::new(&py)
        .args(["-c", "import torch"])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    ok.then_some(py)
}

#[test]
fn pytorch_files_are_refused_with_how_to_convert_them() {
    let tmp = tempdir();
    let dir = tmp.path().join("ckpt");
    std::fs::create_dir_all(&dir).unwrap();
    let files: Vec<PathBuf> = match torch_python() {
        Some(py) => {
            // The reference code's way: a dict holding the state dict, per epoch,
            // once with the legacy (pre-zip) format.
            let script = r#"
import sys, torch, torch.nn as nn
torch.manual_seed(0)
m = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(16, 3))
for e in range(3):
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.1 * torch.randn_like(p))
    state = {"acc": 50.0 + e, "epoch": e, "state_dict": m.state_dict()}
    torch.save(state, f"{sys.argv[1]}/model_{e}.t7", _use_new_zipfile_serialization=(e != 2))
"#;
            let st = Command::new(&py)
                .args(["-c", script, s(&dir)])
                .status()
                .unwrap();
            assert!(st.success());
            (0..3).map(|e| dir.join(format!("model_{e}.t7"))).collect()
        }
        None => {
            println!("note: no Python with torch (TCH_LANDSCAPE_PYTHON or ./landscape-dev setup): torch.save files imitated by their first bytes");
            let zip = dir.join("model_0.pt");
            std::fs::write(
                &zip,
                b"PK\x03\x04\x14\x00\x00\x08\x00\x00rest of a zip archive",
            )
            .unwrap();
            let pickle = dir.join("model_1.pt");
            std::fs::write(
                &pickle,
                b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19.\x80\x02M\xe9\x03.",
            )
            .unwrap();
            vec![zip, pickle]
        }
    };
    let out = tmp.path().join("run");
    let mut args = vec!["import", "--out", s(&out)];
    args.extend(files.iter().map(|f| s(f)));
    let output = landscape(&args);
    let err = fails(&output);
    assert!(
        err.contains("model_0")
            && err.contains("torch.save")
            && err.contains("not a safetensors file"),
        "{err}"
    );
    assert!(
        err.contains("hint:") && err.contains("safetensors.torch.save_file"),
        "{err}"
    );
    let others = match files.len() {
        2 => " and 1 other checkpoint were".to_string(),
        n => format!(" and {} other checkpoints were", n - 1),
    };
    assert!(err.contains(&others), "{err}");
    assert_no_run(&out);
    // The legacy format is recognised too.
    let last = files.last().unwrap();
    let e = Import::builder(&out)
        .checkpoints([last])
        .build()
        .unwrap()
        .run()
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("torch.save") && e.contains("CONVERT_PYTHON"),
        "{e}"
    );
    let help = ok(&landscape(&["import", "--help"]));
    assert!(help.contains("safetensors.torch.save_file"), "{help}");

    // The conversion, where the Python has safetensors.
    let Some(py) = torch_python() else { return };
    let has_st = Command::new(&py)
        .args(["-c", "import safetensors.torch"])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !has_st {
        println!("note: the test Python has no safetensors package: CONVERT_PYTHON not run");
        return;
    }
    let mut conv = vec!["-c", CONVERT_PYTHON];
    conv.extend(files.iter().map(|f| s(f)));
    assert!(Command::new(&py).args(&conv).status().unwrap().success());
    let converted: Vec<PathBuf> = files
        .iter()
        .map(|f| f.with_extension("safetensors"))
        .collect();
    let mut args = vec![
        "import",
        "--out",
        s(&out),
        "--epoch-pattern",
        "model_{}.safetensors",
    ];
    args.extend(converted.iter().map(|f| s(f)));
    ok(&landscape(&args));
    let run = Run::open(&out).unwrap();
    assert_eq!(epochs(&run), [0, 1, 2]);
    assert_eq!(run.manifest().skipped[0].name, "1.num_batches_tracked");
}
