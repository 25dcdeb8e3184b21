//! `landscape verify` and `landscape info` on damaged runs, through the
//! binary: every problem is a line naming its file (and tensor), the exit
//! status says whether anything is wrong, and names read from files reach
//! the terminal with their control characters escaped.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tch::nn::{self, Init, Module, OptimizerConfig, VarStore};
use tch::Device;
use tch_landscape::analysis::directions::Directions;
use tch_landscape::analysis::evaluator::ClassifierEvaluator;
use tch_landscape::analysis::params::ParamSet;
use tch_landscape::analysis::pca::TrajectoryPca;
use tch_landscape::analysis::surface::Surface;
use tch_landscape::models::Mlp;
use tch_landscape::{Error, Recorder, Run};

/// A tensor name that clears the screen and reverses the rest of the line.
const EVIL_TENSOR: &str = "evil\u{1b}[2J\u{202e}name";
/// The same, escaped as the terminal output writes it.
const EVIL_TENSOR_SHOWN: &str = "evil\\u{1b}[2J\\u{202e}name";
const EVIL_METRIC: &str = "loss\u{1b}[31m";
const EVIL_METRIC_SHOWN: &str = "loss\\u{1b}[31m";

/// A run of 5 snapshots of a small MLP on digits plus a hostile-named
/// tensor, which becomes NaN from epoch `nan_at` on. With `results`, a line
/// surface and the trajectory PCA are stored in it.
fn make_run(dir: &Path, nan_at: Option<u64>, results: bool) -> PathBuf {
    tch::manual_seed(3);
    let run_dir = dir.join("run");
    let vs = VarStore::new(Device::Cpu);
    let model = Mlp::new(&vs.root(), &[64, 8, 10]);
    let mut evil = vs.root().var(EVIL_TENSOR, &[2, 3], Init::Const(0.5));
    let data = tch_landscape::data::digits::Digits::load().unwrap();
    let (x, y) = (data.x.narrow(0, 0, 128), data.y.narrow(0, 0, 128));
    let mut opt = nn::Sgd::default().build(&vs, 0.1).unwrap();
    let mut rec = Recorder::builder(&run_dir)
        .fsync(false)
        .metadata("note\u{1b}]0;title\u{7}", "value\u{1b}[1m")
        .build(&vs)
        .unwrap();
    for epoch in 1..=4u64 {
        let loss = model.forward(&x).cross_entropy_for_logits(&y);
        opt.backward_step(&loss);
        if nan_at == Some(epoch) {
            tch::no_grad(|| {
                let _ = evil.fill_(f64::NAN);
            });
        }
        rec.on_epoch_end(
            epoch,
            &[("train_loss", loss.double_value(&[])), (EVIL_METRIC, 1.0)],
        )
        .unwrap();
    }
    rec.finish().unwrap();
    if results {
        let centre = ParamSet::from_varstore(&vs).unwrap();
        let mut eval = ClassifierEvaluator::new(&model)
            .split("train", &x, &y)
            .unwrap();
        let line = Directions::random(&centre).dims(1).seed(2).build().unwrap();
        Surface::builder(&line)
            .line(-1.0..=1.0, 5)
            .build()
            .unwrap()
            .evaluate(&vs, &mut eval, run_dir.join("surfaces/line"))
            .unwrap();
        let run = Run::open(&run_dir).unwrap();
        TrajectoryPca::builder()
            .build()
            .unwrap()
            .fit(&run)
            .unwrap()
            .save(&run, &run_dir.join("pca"))
            .unwrap();
    }
    run_dir
}

fn landscape(args: &[&Path]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_landscape"))
        .args(args)
        .output()
        .unwrap()
}

fn verify(run: &Path) -> (bool, String, String) {
    let out = landscape(&[Path::new("verify"), run]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.success(), stdout, stderr)
}

/// Asserts that verify fails with a `problem:` line holding every one of
/// `needles`.
#[track_caller]
fn assert_problem(run: &Path, what: &str, needles: &[&str]) {
    let (ok, stdout, stderr) = verify(run);
    assert!(!ok, "{what}: verify succeeded:\n{stdout}");
    assert_eq!(
        stdout
            .lines()
            .filter(|l| l.starts_with("problem: "))
            .count(),
        1,
        "{what}: one problem line expected:\n{stdout}"
    );
    let line = stdout
        .lines()
        .find(|l| l.starts_with("problem: "))
        .unwrap_or_default();
    for n in needles {
        assert!(line.contains(n), "{what}: '{n}' not in:\n{stdout}");
    }
    assert!(
        stdout.contains("FAILED: ") && stderr.contains("failed verification"),
        "{what}: {stdout}\n{stderr}"
    );
    assert!(
        !stdout.contains('\u{1b}'),
        "{what}: raw escape in:\n{stdout}"
    );
}

fn snap(run: &Path, i: u32) -> PathBuf {
    run.join("snapshots").join(format!("{i:06}.arrow"))
}

/// Replaces `path`'s content by `edit` of it for the duration of `check`.
fn with_edited(path: &Path, edit: impl FnOnce(&mut Vec<u8>), check: impl FnOnce()) {
    let original = std::fs::read(path).unwrap();
    let mut bytes = original.clone();
    edit(&mut bytes);
    std::fs::write(path, &bytes).unwrap();
    check();
    std::fs::write(path, &original).unwrap();
}

fn set_json(path: &Path, key: &str, value: serde_json::Value) -> impl FnOnce(&mut Vec<u8>) {
    let key = key.to_string();
    let what = path.display().to_string();
    move |bytes| {
        let mut v: serde_json::Value = serde_json::from_slice(bytes).expect(&what);
        v[key] = value;
        *bytes = serde_json::to_vec_pretty(&v).unwrap();
    }
}

#[test]
fn a_clean_run_verifies_and_each_damage_is_one_named_problem() {
    let tmp = tempfile::tempdir().unwrap();
    let run = make_run(tmp.path(), None, true);
    let (ok, stdout, stderr) = verify(&run);
    assert!(ok, "{stdout}\n{stderr}");
    assert!(stdout.starts_with("OK: "), "{stdout}");
    // Manifest, 5 snapshots, metrics; surface.json, surface.parquet,
    // sharpness.json, directions.parquet; pca.json and two directions.
    assert!(
        stdout.contains("14 files checked (2 result directories), 0 problems"),
        "{stdout}"
    );

    // A flipped bit in a value of snapshot 2: its bytes are found in the
    // file by their bit pattern.
    let (file, name, at) = {
        let r = Run::open(&run).unwrap();
        let s = r.snapshot(2).unwrap();
        let k = 1;
        let v = s.f32_values(k).unwrap();
        let pattern: Vec<u8> = v[..4].iter().flat_map(|x| x.to_le_bytes()).collect();
        let bytes = std::fs::read(s.path()).unwrap();
        let at = bytes
            .windows(pattern.len())
            .position(|w| w == pattern.as_slice())
            .expect("values in the file");
        (
            s.path().to_path_buf(),
            r.manifest().tensors[k].name.clone(),
            at,
        )
    };
    with_edited(
        &file,
        |b| b[at + 5] ^= 0x04,
        || {
            assert_problem(
                &run,
                "flipped value",
                &[
                    "000002.arrow",
                    &format!("tensor '{name}'"),
                    "checksum mismatch",
                ],
            );
            let r = Run::open(&run).unwrap();
            let e = r.tensors(2).unwrap_err();
            assert!(
                matches!(&e, Error::Corrupt { path, .. } if path == &file),
                "{e:?}"
            );
            assert!(r.flat_f32(1, &tch_landscape::Selection::All).is_ok());
        },
    );

    let spec = run.join("surfaces/line/surface.json");
    with_edited(&spec, set_json(&spec, "schema_version", 99.into()), || {
        assert_problem(
            &run,
            "surface v99",
            &["surface.json", "schema version 99", "upgrade"],
        );
    });
    let pca = run.join("pca/pca.json");
    with_edited(&pca, set_json(&pca, "schema_version", "1".into()), || {
        assert_problem(
            &run,
            "pca.json \"1\"",
            &["pca.json", "positive integer", "found \"1\""],
        );
    });
    let result = run.join("surfaces/line/surface.parquet");
    with_edited(
        &result,
        |b| b.truncate(b.len() / 2),
        || {
            assert_problem(&run, "truncated surface", &["surface.parquet"]);
        },
    );
    let metrics = run.join("metrics.arrow");
    with_edited(
        &metrics,
        |b| b.truncate(b.len() - 3),
        || {
            assert_problem(&run, "truncated metrics", &["metrics.arrow"]);
        },
    );

    // A snapshot missing from the middle: verify names it, info refuses.
    let moved = tmp.path().join("moved.arrow");
    std::fs::rename(snap(&run, 2), &moved).unwrap();
    assert_problem(
        &run,
        "missing snapshot",
        &["snapshot 2 (000002.arrow) is missing"],
    );
    let info = landscape(&[Path::new("info"), &run]);
    assert!(!info.status.success());
    let stderr = String::from_utf8_lossy(&info.stderr);
    assert!(
        stderr.contains("snapshot 2 (000002.arrow) is missing"),
        "{stderr}"
    );
    std::fs::rename(&moved, snap(&run, 2)).unwrap();

    let (ok, stdout, _) = verify(&run);
    assert!(ok, "restored: {stdout}");
}

#[test]
fn a_nan_snapshot_is_named_by_verify_info_and_pca() {
    let tmp = tempfile::tempdir().unwrap();
    let run = make_run(tmp.path(), Some(3), false);
    let (ok, stdout, _) = verify(&run);
    assert!(!ok, "{stdout}");
    let lines: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("non-finite: "))
        .collect();
    assert_eq!(lines.len(), 2, "snapshots 3 and 4:\n{stdout}");
    for (line, i) in lines.iter().zip([3, 4]) {
        for needle in [
            format!("{i:06}.arrow"),
            format!("snapshot {i}, tensor '{EVIL_TENSOR_SHOWN}'"),
            "6 non-finite values, the first (NaN) at element 0".into(),
        ] {
            assert!(line.contains(&needle), "'{needle}' not in {line}");
        }
    }
    assert!(!stdout.contains("problem: "), "{stdout}");

    // info warns, one line per affected tensor, and succeeds.
    let out = landscape(&[Path::new("info"), &run]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let warnings: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("warning: "))
        .collect();
    assert_eq!(warnings.len(), 2, "{stdout}");
    assert!(warnings[0].contains("000003.arrow") && warnings[0].contains(EVIL_TENSOR_SHOWN));

    // PCA names the first snapshot and tensor holding NaN, instead of
    // failing later for the wrong reason.
    let r = Run::open(&run).unwrap();
    let e = TrajectoryPca::builder()
        .build()
        .unwrap()
        .fit(&r)
        .unwrap_err();
    match &e {
        Error::NonFinite {
            path,
            tensor,
            index,
            value,
        } => {
            assert_eq!(path, &snap(&run, 3));
            assert_eq!(tensor, EVIL_TENSOR);
            assert_eq!(*index, 0);
            assert!(value.is_nan());
        }
        other => panic!("expected NonFinite, got {other:?}"),
    }
    let out = landscape(&[Path::new("pca"), &run]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("000003.arrow")
            && stderr.contains("not finite")
            && !stderr.contains("identical"),
        "{stderr}"
    );
}

#[test]
fn info_escapes_control_characters_in_names() {
    let tmp = tempfile::tempdir().unwrap();
    let run = make_run(tmp.path(), None, false);
    let out = landscape(&[Path::new("info"), &run]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    for c in ['\u{1b}', '\u{7}', '\u{202e}'] {
        assert!(!stdout.contains(c), "raw {c:?} in:\n{stdout}");
    }
    for shown in [
        EVIL_TENSOR_SHOWN,
        EVIL_METRIC_SHOWN,
        "note\\u{1b}]0;title\\u{7} = value\\u{1b}[1m",
    ] {
        assert!(stdout.contains(shown), "'{shown}' not in:\n{stdout}");
    }
    assert!(!stdout.contains("warning"), "{stdout}");
}
