//! Reading damaged or foreign run directories: every case must give a clear
//! error of the documented variant naming the file, and nothing may panic.

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use common::*;
use tch_landscape::store::manifest::MANIFEST_FILE;
use tch_landscape::store::metrics::METRICS_FILE;
use tch_landscape::store::snapshot::SNAPSHOT_DIR;
use tch_landscape::{Error, Run, Selection};

/// Runs `f`, failing the test (with `what`) if it panics.
fn no_panic<T>(what: &str, f: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!("{what}: panicked: {msg}");
        }
    }
}

/// Opens `dir`, expecting an error (no panic).
fn open_err(dir: &Path, what: &str) -> Error {
    match no_panic(what, || Run::open(dir)) {
        Ok(_) => panic!("{what}: Run::open succeeded, expected an error"),
        Err(e) => e,
    }
}

#[track_caller]
fn assert_corrupt(e: &Error, file: &Path, what: &str) {
    match e {
        Error::Corrupt { path, .. } => assert_eq!(path, file, "{what}: wrong file in {e}"),
        other => panic!(
            "{what}: expected Error::Corrupt naming {}, got {other:?} ({other})",
            file.display()
        ),
    }
    assert!(
        e.to_string().contains(&file.display().to_string()),
        "{what}: message does not name the file: {e}"
    );
}

fn snap(dir: &Path, i: u32) -> PathBuf {
    dir.join(SNAPSHOT_DIR).join(format!("{i:06}.arrow"))
}

fn tiny_run(root: &Path, name: &str, snapshots: u64) -> PathBuf {
    let dir = root.join(name);
    record_tiny_run(&dir, snapshots);
    dir
}

fn edit_manifest(dir: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    let path = dir.join(MANIFEST_FILE);
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(&path, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
}

#[test]
fn missing_directory() {
    let root = tempdir();
    let dir = root.path().join("does-not-exist");
    let e = open_err(&dir, "missing dir");
    assert!(
        matches!(e, Error::NotARun { ref path, .. } if path == &dir),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains(&dir.display().to_string()) && msg.contains("no such directory"),
        "{msg}"
    );
}

#[test]
fn directory_without_manifest() {
    let root = tempdir();
    std::fs::create_dir_all(root.path().join(SNAPSHOT_DIR)).unwrap();
    let e = open_err(root.path(), "no manifest");
    assert!(matches!(e, Error::NotARun { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains(&root.path().display().to_string()) && msg.contains(MANIFEST_FILE),
        "{msg}"
    );
}

#[test]
fn manifest_from_a_newer_schema() {
    let root = tempdir();
    let dir = tiny_run(root.path(), "r", 2);
    let manifest = dir.join(MANIFEST_FILE);
    for version in [999u64, 2, 0, u64::from(u32::MAX) + 5] {
        edit_manifest(&dir, |v| v["schema_version"] = version.into());
        let e = open_err(&dir, "schema 999");
        match &e {
            Error::SchemaVersion {
                path,
                found,
                supported,
            } => {
                assert_eq!(path, &manifest);
                assert_eq!(*found as u64, version.min(u32::MAX as u64));
                assert_eq!(*supported, 1);
            }
            other => panic!("schema_version {version}: expected SchemaVersion, got {other:?}"),
        }
        let msg = e.to_string();
        assert!(
            msg.contains(&manifest.display().to_string()) && msg.contains("upgrade"),
            "{msg}"
        );
    }
    // A newer version with unknown fields still gets the version error.
    edit_manifest(&dir, |v| {
        v["schema_version"] = 999.into();
        v["tensors"] = serde_json::json!({"new": "layout"});
    });
    assert!(matches!(
        open_err(&dir, "newer layout"),
        Error::SchemaVersion { found: 999, .. }
    ));
}

#[test]
fn manifest_that_is_not_json() {
    let root = tempdir();
    let dir = tiny_run(root.path(), "r", 2);
    let manifest = dir.join(MANIFEST_FILE);
    let original = std::fs::read(&manifest).unwrap();
    for (what, bytes) in [
        ("garbage", b"this is not json {".to_vec()),
        ("empty", Vec::new()),
        ("truncated", original[..original.len() / 2].to_vec()),
    ] {
        std::fs::write(&manifest, &bytes).unwrap();
        let e = open_err(&dir, what);
        assert!(
            matches!(&e, Error::Json { path, .. } if path == &manifest),
            "{what}: {e:?}"
        );
        assert!(
            e.to_string().contains(&manifest.display().to_string()),
            "{e}"
        );
    }
}

#[test]
fn manifest_with_wrong_content() {
    let root = tempdir();
    let dir = tiny_run(root.path(), "r", 2);
    let manifest = dir.join(MANIFEST_FILE);
    let original = std::fs::read(&manifest).unwrap();
    type Edit = Box<dyn Fn(&mut serde_json::Value)>;
    let cases: Vec<(&str, Edit)> = vec![
        (
            "other format",
            Box::new(|v| v["format"] = "something-else".into()),
        ),
        (
            "no format",
            Box::new(|v| {
                v.as_object_mut().unwrap().remove("format");
            }),
        ),
        (
            "no schema_version",
            Box::new(|v| {
                v.as_object_mut().unwrap().remove("schema_version");
            }),
        ),
        (
            "string schema_version",
            Box::new(|v| v["schema_version"] = "1".into()),
        ),
        (
            "bad offset",
            Box::new(|v| v["tensors"][1]["offset"] = 4.into()),
        ),
        (
            "bad numel",
            Box::new(|v| v["tensors"][0]["numel"] = 4.into()),
        ),
        (
            "unsorted",
            Box::new(|v| v["tensors"].as_array_mut().unwrap().reverse()),
        ),
        (
            "negative dim",
            Box::new(|v| v["tensors"][0]["shape"] = serde_json::json!([-3, -1])),
        ),
    ];
    for (what, edit) in cases {
        std::fs::write(&manifest, &original).unwrap();
        edit_manifest(&dir, edit);
        let e = open_err(&dir, what);
        assert_corrupt(&e, &manifest, what);
    }
    // A field of the wrong JSON type is a JSON error naming the manifest.
    std::fs::write(&manifest, &original).unwrap();
    edit_manifest(&dir, |v| v["tensors"] = "fc1".into());
    let e = open_err(&dir, "tensors is a string");
    assert!(
        matches!(&e, Error::Json { path, .. } if path == &manifest),
        "{e:?}"
    );
    // A manifest whose tensor sizes disagree with the snapshots: the snapshot
    // file is reported.
    std::fs::write(&manifest, &original).unwrap();
    edit_manifest(&dir, |v| {
        v["tensors"][0]["shape"] = serde_json::json!([2]);
        v["tensors"][0]["numel"] = 2.into();
        v["tensors"][1]["offset"] = 2.into();
    });
    let e = open_err(&dir, "numel mismatch");
    assert_corrupt(&e, &snap(&dir, 0), "numel mismatch");
    assert!(e.to_string().contains("lin.bias"), "{e}");
}

#[test]
fn truncated_snapshot_files() {
    let root = tempdir();
    let dir = tiny_run(root.path(), "r", 3);
    let file = snap(&dir, 1);
    let original = std::fs::read(&file).unwrap();
    let n = original.len();
    for len in [0, 1, 10, 17, 18, n / 2, n - 10, n - 1] {
        std::fs::write(&file, &original[..len]).unwrap();
        let what = format!("truncated to {len} of {n} bytes");
        let e = open_err(&dir, &what);
        assert_corrupt(&e, &file, &what);
    }
    std::fs::write(&file, &original).unwrap();
    assert_eq!(Run::open(&dir).unwrap().len(), 3);
}

#[test]
fn snapshot_with_trailing_garbage_or_wrong_magic() {
    let root = tempdir();
    let dir = tiny_run(root.path(), "r", 2);
    let file = snap(&dir, 1);
    let original = std::fs::read(&file).unwrap();
    let mut longer = original.clone();
    longer.extend_from_slice(b"0123456789");
    std::fs::write(&file, &longer).unwrap();
    assert_corrupt(&open_err(&dir, "trailing bytes"), &file, "trailing bytes");
    let mut bad = original.clone();
    bad[..6].copy_from_slice(b"PARQ1\0");
    std::fs::write(&file, &bad).unwrap();
    assert_corrupt(&open_err(&dir, "leading magic"), &file, "leading magic");
}

/// Flips every byte of a snapshot file in turn. Arrow IPC files carry no
/// checksum, so a flip inside the float values themselves is not detectable
/// and opens fine (with that value changed); every other flip must give
/// `Error::Corrupt` naming the file or a still-valid file, and no flip may
/// cause a panic when opening or reading the run.
#[test]
fn flipped_bytes_in_a_snapshot_never_panic() {
    let root = tempdir();
    let dir = tiny_run(root.path(), "r", 2);
    let file = snap(&dir, 1);
    let original = std::fs::read(&file).unwrap();
    let clean = Run::open(&dir).unwrap();
    let clean_values = clean.flat_f32(1, &Selection::All).unwrap();
    let clean_meta = clean.snapshot(1).unwrap().meta().clone();
    drop(clean);
    // Opened flips either changed one value, changed the metadata JSON
    // (e.g. a digit of unix_time), or hit padding/unused header bytes.
    let (mut ok, mut corrupt, mut values_changed, mut meta_changed) = (0, 0, 0, 0);
    for pos in 0..original.len() {
        let mut bytes = original.clone();
        bytes[pos] ^= 0xff;
        std::fs::write(&file, &bytes).unwrap();
        let what = format!("byte {pos} of {} flipped", original.len());
        match no_panic(&what, || Run::open(&dir)) {
            Ok(run) => {
                ok += 1;
                // Everything a reader does with the run must work.
                no_panic(&what, || {
                    let flat = run.flat_f32(1, &Selection::All).unwrap();
                    let _ = run.tensors(1).unwrap();
                    let _ = run.stream(&Selection::All, 4).unwrap().count();
                    let _ = run.metrics();
                    let differing = flat
                        .iter()
                        .zip(&clean_values)
                        .filter(|(a, b)| a.to_bits() != b.to_bits())
                        .count();
                    assert!(
                        differing <= 1,
                        "{what}: one byte changed {differing} values"
                    );
                    if differing == 1 {
                        values_changed += 1;
                    } else if run.snapshot(1).unwrap().meta() != &clean_meta {
                        meta_changed += 1;
                    }
                });
            }
            Err(e) => {
                corrupt += 1;
                assert_corrupt(&e, &file, &what);
            }
        }
    }
    eprintln!(
        "{} flips: {ok} opened ({values_changed} changed one value, undetectable without checksums; \
         {meta_changed} changed the metadata), {corrupt} Corrupt",
        original.len()
    );
    // Every value byte is one of the undetectable flips (15 floats here).
    assert_eq!(values_changed, 15 * 4);
    assert!(
        corrupt > original.len() / 4,
        "too few flips detected: {corrupt}"
    );
    // Flips in the trailer are always detected.
    for pos in original.len() - 10..original.len() {
        let mut bytes = original.clone();
        bytes[pos] ^= 0xff;
        std::fs::write(&file, &bytes).unwrap();
        assert_corrupt(&open_err(&dir, "trailer flip"), &file, "trailer flip");
    }
}

#[test]
fn snapshot_file_from_another_run() {
    let root = tempdir();
    let a = tiny_run(root.path(), "a", 3);
    let b = tiny_run(root.path(), "b", 3);
    let a_id = Run::open(&a).unwrap().manifest().run_id.clone();
    let b_id = Run::open(&b).unwrap().manifest().run_id.clone();
    assert_ne!(a_id, b_id);
    let original = std::fs::read(snap(&a, 1)).unwrap();

    // Replacing a snapshot.
    std::fs::copy(snap(&b, 1), snap(&a, 1)).unwrap();
    let e = open_err(&a, "foreign snapshot");
    assert_corrupt(&e, &snap(&a, 1), "foreign snapshot");
    let msg = e.to_string();
    assert!(msg.contains(&a_id) && msg.contains(&b_id), "{msg}");
    std::fs::write(snap(&a, 1), &original).unwrap();

    // Added under a new index.
    std::fs::copy(snap(&b, 2), snap(&a, 7)).unwrap();
    assert_corrupt(
        &open_err(&a, "foreign extra"),
        &snap(&a, 7),
        "foreign extra",
    );
    std::fs::remove_file(snap(&a, 7)).unwrap();

    // From another model (a BatchNorm MLP: other tensor count).
    let c = root.path().join("c");
    record_bn_run(&c, 1, 0);
    std::fs::copy(snap(&c, 1), snap(&a, 1)).unwrap();
    assert_corrupt(&open_err(&a, "other model"), &snap(&a, 1), "other model");
    std::fs::write(snap(&a, 1), &original).unwrap();

    // The run's own snapshot under the wrong index.
    std::fs::copy(snap(&a, 1), snap(&a, 5)).unwrap();
    let e = open_err(&a, "wrong index");
    assert_corrupt(&e, &snap(&a, 5), "wrong index");
    assert!(e.to_string().contains("snapshot 5"), "{e}");
    std::fs::remove_file(snap(&a, 5)).unwrap();

    assert_eq!(Run::open(&a).unwrap().len(), 3);
}

#[test]
fn temp_and_stray_files_are_ignored() {
    let root = tempdir();
    let dir = tiny_run(root.path(), "r", 2);
    let sd = dir.join(SNAPSHOT_DIR);
    std::fs::write(sd.join(".000002.arrow.tmp"), b"half-written garbage").unwrap();
    std::fs::write(sd.join("notes.txt"), b"hello").unwrap();
    std::fs::write(sd.join("12.arrow"), b"not ours").unwrap();
    std::fs::write(dir.join(".metrics.arrow.tmp"), b"x").unwrap();
    let run = Run::open(&dir).unwrap();
    assert_eq!(run.len(), 2);
    assert_eq!(run.metrics().unwrap().len(), 1);
}

#[test]
fn missing_snapshot_directory() {
    let root = tempdir();
    let dir = tiny_run(root.path(), "r", 2);
    let sd = dir.join(SNAPSHOT_DIR);
    std::fs::remove_dir_all(&sd).unwrap();
    let e = open_err(&dir, "no snapshots dir");
    assert!(matches!(&e, Error::Io { path, .. } if path == &sd), "{e:?}");
    assert!(e.to_string().contains(&sd.display().to_string()), "{e}");
}

#[test]
fn damaged_metrics_table() {
    let root = tempdir();
    let dir = tiny_run(root.path(), "r", 4);
    let file = dir.join(METRICS_FILE);
    let original = std::fs::read(&file).unwrap();
    let n = original.len();
    assert_eq!(Run::open(&dir).unwrap().metrics().unwrap().len(), 3);
    for len in [0, 10, n / 2, n - 1] {
        std::fs::write(&file, &original[..len]).unwrap();
        let what = format!("metrics truncated to {len} of {n} bytes");
        // The snapshots are still readable; the metrics report the damage.
        let run = no_panic(&what, || Run::open(&dir)).unwrap();
        match no_panic(&what, || run.metrics()) {
            Err(e) => assert_corrupt(&e, &file, &what),
            Ok(rows) => panic!("{what}: read {} rows from a truncated table", rows.len()),
        }
    }
    // Another Arrow table in its place: columns differ.
    std::fs::copy(snap(&dir, 0), &file).unwrap();
    let run = Run::open(&dir).unwrap();
    assert_corrupt(&run.metrics().unwrap_err(), &file, "snapshot as metrics");
    // Every single-byte flip: an error naming the file or a readable table.
    let mut detected = 0;
    for pos in 0..n {
        let mut bytes = original.clone();
        bytes[pos] ^= 0xff;
        std::fs::write(&file, &bytes).unwrap();
        let what = format!("metrics byte {pos} flipped");
        match no_panic(&what, || run.metrics()) {
            Ok(rows) => assert!(rows.len() <= 3, "{what}"),
            Err(e) => {
                detected += 1;
                assert_corrupt(&e, &file, &what);
            }
        }
    }
    assert!(detected > 0);
    // A missing table is an empty one.
    std::fs::remove_file(&file).unwrap();
    assert!(run.metrics().unwrap().is_empty());
}
