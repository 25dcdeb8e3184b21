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
    for version in [999u64, 99, 2, u64::from(u32::MAX)] {
        edit_manifest(&dir, |v| v["schema_version"] = version.into());
        let e = open_err(&dir, "newer schema");
        match &e {
            Error::SchemaVersion {
                path,
                found,
                supported,
            } => {
                assert_eq!(path, &manifest);
                assert_eq!(u64::from(*found), version);
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

/// Versions that are not positive integers below 2^32 are damage, reported
/// as such with what was found (not as a missing field, nor as a newer
/// schema asking for an upgrade).
#[test]
fn manifest_schema_version_that_is_not_a_version() {
    let root = tempdir();
    let dir = tiny_run(root.path(), "r", 2);
    let manifest = dir.join(MANIFEST_FILE);
    let original = std::fs::read(&manifest).unwrap();
    let cases = [
        (serde_json::json!(-1), "found -1"),
        (serde_json::json!("1"), "found \"1\""),
        (serde_json::json!(1u64 << 40), "found 1099511627776"),
        (
            serde_json::json!(u64::from(u32::MAX) + 5),
            "found 4294967300",
        ),
        (serde_json::json!(0), "found 0"),
        (serde_json::json!(1.5), "found 1.5"),
        (serde_json::json!(1e30), "found 1e+30"),
        (serde_json::json!(null), "found null"),
        (serde_json::json!("x".repeat(10_000)), "…"),
    ];
    for (version, shown) in cases {
        std::fs::write(&manifest, &original).unwrap();
        edit_manifest(&dir, |v| v["schema_version"] = version.clone());
        let what = format!("schema_version {version:.20}");
        let e = open_err(&dir, &what);
        assert_corrupt(&e, &manifest, &what);
        let msg = e.to_string();
        assert!(
            msg.contains("positive integer") && msg.contains(shown) && msg.len() < 400,
            "{what}: {msg}"
        );
    }
    std::fs::write(&manifest, &original).unwrap();
    edit_manifest(&dir, |v| {
        v.as_object_mut().unwrap().remove("schema_version");
    });
    let e = open_err(&dir, "no schema_version");
    assert_corrupt(&e, &manifest, "no schema_version");
    assert!(e.to_string().contains("missing"), "{e}");
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
        // 2^32 × 2^32 wraps to 0 in 64-bit arithmetic.
        (
            "overflowing shape",
            Box::new(|v| {
                v["tensors"][0]["shape"] = serde_json::json!([1u64 << 32, 1u64 << 32]);
                v["tensors"][0]["numel"] = 0.into();
                v["tensors"][1]["offset"] = 0.into();
            }),
        ),
        (
            "overflowing numel",
            Box::new(|v| {
                v["tensors"][0]["shape"] = serde_json::json!([1u64 << 62, 8]);
                v["tensors"][0]["numel"] = 0.into();
            }),
        ),
        (
            "huge shape",
            Box::new(|v| {
                v["tensors"][0]["shape"] = serde_json::json!([1u64 << 40, 1u64 << 20]);
                v["tensors"][0]["numel"] = serde_json::json!(1u64 << 60);
            }),
        ),
        (
            "int8 dtype",
            Box::new(|v| v["tensors"][0]["dtype"] = "int8".into()),
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

/// Flips every byte of a snapshot file in turn. Every flip must be found
/// (an `Error::Corrupt` naming the file when the run is opened or the
/// snapshot read, whole or streamed) or leave what is read unchanged (a
/// padding byte): never silently different values or metadata, and never a
/// panic. Without checksums a flip inside a value went unnoticed.
#[test]
fn flipped_bytes_in_a_snapshot_are_found_or_harmless() {
    let root = tempdir();
    let dir = tiny_run(root.path(), "r", 2);
    let file = snap(&dir, 1);
    let original = std::fs::read(&file).unwrap();
    let clean = Run::open(&dir).unwrap();
    let clean_values = clean.flat_f32(1, &Selection::All).unwrap();
    let clean_meta = clean.snapshot(1).unwrap().meta().clone();
    drop(clean);
    let (mut harmless, mut at_open, mut at_read) = (0, 0, 0);
    for pos in 0..original.len() {
        let mut bytes = original.clone();
        bytes[pos] ^= 0xff;
        std::fs::write(&file, &bytes).unwrap();
        let what = format!("byte {pos} of {} flipped", original.len());
        let run = match no_panic(&what, || Run::open(&dir)) {
            Ok(run) => run,
            Err(e) => {
                at_open += 1;
                assert_corrupt(&e, &file, &what);
                continue;
            }
        };
        // Each way of reading the values finds the damage, or reads the
        // clean values. A fresh run for each, so that one read's
        // verification does not cover another's.
        let mut found = 0;
        for how in ["flat_f32", "tensors", "stream"] {
            let fresh = Run::open(&dir).unwrap();
            let got = match how {
                "flat_f32" => fresh.flat_f32(1, &Selection::All),
                "tensors" => fresh
                    .tensors(1)
                    .map(|t| t.iter().flat_map(|(_, t)| tensor_f32(t)).collect()),
                _ => fresh.stream(&Selection::All, 4).and_then(|s| {
                    let mut rows = Vec::new();
                    for c in s {
                        rows.extend_from_slice(c?.row(1));
                    }
                    Ok(rows)
                }),
            };
            match no_panic(&what, || got) {
                Ok(values) => assert_eq!(
                    values.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    clean_values.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    "{what}: {how} read different values without an error"
                ),
                Err(e) => {
                    found += 1;
                    assert_corrupt(&e, &file, &format!("{what} ({how})"));
                    assert!(e.to_string().contains("checksum mismatch"), "{what}: {e}");
                }
            }
        }
        assert!(
            found == 0 || found == 3,
            "{what}: found by {found} of 3 reads"
        );
        let verified = run.verify();
        assert_eq!(
            verified.problems.len(),
            found / 3,
            "{what}: verify disagrees with the reads: {:?}",
            verified.problems
        );
        if found > 0 {
            at_read += 1;
        } else {
            harmless += 1;
            assert_eq!(
                run.snapshot(1).unwrap().meta(),
                &clean_meta,
                "{what}: metadata changed without an error"
            );
        }
    }
    eprintln!(
        "{} flips: {at_open} found at open, {at_read} found when read, {harmless} harmless (padding)",
        original.len()
    );
    // Every value byte is found when read (15 float32 values here).
    assert!(at_read >= 15 * 4, "only {at_read} flips found when read");
    assert!(
        at_open > original.len() / 4,
        "too few flips found at open: {at_open}"
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

    // Added under the next index.
    std::fs::copy(snap(&b, 2), snap(&a, 3)).unwrap();
    assert_corrupt(
        &open_err(&a, "foreign extra"),
        &snap(&a, 3),
        "foreign extra",
    );
    // Under a later index: the gap is found first, and verify names both.
    std::fs::rename(snap(&a, 3), snap(&a, 7)).unwrap();
    assert_corrupt(
        &open_err(&a, "foreign extra after a gap"),
        &a.join(SNAPSHOT_DIR),
        "foreign extra after a gap",
    );
    let v = Run::verify_dir(&a);
    assert_eq!(v.problems.len(), 2, "{:?}", v.problems);
    assert_corrupt(&v.problems[1], &snap(&a, 7), "foreign extra, verify");
    std::fs::remove_file(snap(&a, 7)).unwrap();

    // From another model (a BatchNorm MLP: other tensor count).
    let c = root.path().join("c");
    record_bn_run(&c, 1, 0);
    std::fs::copy(snap(&c, 1), snap(&a, 1)).unwrap();
    assert_corrupt(&open_err(&a, "other model"), &snap(&a, 1), "other model");
    std::fs::write(snap(&a, 1), &original).unwrap();

    // The run's own snapshot under the wrong index.
    std::fs::copy(snap(&a, 1), snap(&a, 3)).unwrap();
    let e = open_err(&a, "wrong index");
    assert_corrupt(&e, &snap(&a, 3), "wrong index");
    assert!(e.to_string().contains("snapshot 3"), "{e}");
    std::fs::remove_file(snap(&a, 3)).unwrap();

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
    // Every single-byte flip: an error naming the file, or the same rows
    // (a padding byte); never different rows.
    std::fs::write(&file, &original).unwrap();
    let clean = run.metrics().unwrap();
    let (mut detected, mut harmless) = (0, 0);
    for pos in 0..n {
        let mut bytes = original.clone();
        bytes[pos] ^= 0xff;
        std::fs::write(&file, &bytes).unwrap();
        let what = format!("metrics byte {pos} flipped");
        match no_panic(&what, || run.metrics()) {
            Ok(rows) => {
                harmless += 1;
                assert_eq!(
                    format!("{rows:?}"),
                    format!("{clean:?}"),
                    "{what}: different rows without an error"
                );
            }
            Err(e) => {
                detected += 1;
                assert_corrupt(&e, &file, &what);
            }
        }
    }
    eprintln!("{n} metrics flips: {detected} found, {harmless} harmless");
    assert!(detected > n / 2, "{detected} of {n}");
    // A missing table is an empty one.
    std::fs::remove_file(&file).unwrap();
    assert!(run.metrics().unwrap().is_empty());
}

#[test]
fn a_snapshot_missing_from_the_middle_is_named() {
    let root = tempdir();
    let dir = tiny_run(root.path(), "r", 5);
    std::fs::remove_file(snap(&dir, 2)).unwrap();
    let e = open_err(&dir, "missing snapshot 2");
    assert_corrupt(&e, &dir.join(SNAPSHOT_DIR), "missing snapshot 2");
    let msg = e.to_string();
    assert!(
        msg.contains("snapshot 2 (000002.arrow) is missing after snapshot 1"),
        "{msg}"
    );
    // Several gaps, the first snapshot included: each is named by verify.
    std::fs::remove_file(snap(&dir, 0)).unwrap();
    std::fs::remove_file(snap(&dir, 3)).unwrap();
    let e = open_err(&dir, "missing 0, 2, 3");
    assert!(
        e.to_string()
            .contains("snapshot 0 (000000.arrow) is missing"),
        "{e}"
    );
    let v = Run::verify_dir(&dir);
    let msgs: Vec<String> = v.problems.iter().map(|e| e.to_string()).collect();
    assert_eq!(msgs.len(), 2, "{msgs:#?}");
    assert!(
        msgs[0].contains("snapshot 0 (000000.arrow) is missing"),
        "{msgs:#?}"
    );
    assert!(
        msgs[1].contains("snapshots 2 to 3 (000002.arrow to 000003.arrow) are missing"),
        "{msgs:#?}"
    );
    // The snapshots present were still checked.
    assert_eq!(v.files, 1 + 2 + 1, "manifest, snapshots 1 and 4, metrics");
}

/// The manifest's tensor table must be the one the snapshots were recorded
/// with: a transposed shape (same element count and offsets) or another
/// floating dtype is found through the digest in every snapshot.
#[test]
fn a_manifest_edited_after_recording_is_refused() {
    let root = tempdir();
    let dir = tiny_run(root.path(), "r", 3);
    let manifest = dir.join(MANIFEST_FILE);
    let original = std::fs::read(&manifest).unwrap();
    let run = Run::open(&dir).unwrap();
    assert_eq!(run.manifest().tensors[1].shape, vec![3, 4]);
    let digest = run.manifest().tensors_crc32();
    assert_eq!(run.snapshot(0).unwrap().meta().tensors_crc32, Some(digest));
    drop(run);
    type Edit = Box<dyn Fn(&mut serde_json::Value)>;
    let cases: Vec<(&str, Edit)> = vec![
        (
            "transposed",
            Box::new(|v| v["tensors"][1]["shape"] = serde_json::json!([4, 3])),
        ),
        (
            "float16",
            Box::new(|v| v["tensors"][0]["dtype"] = "float16".into()),
        ),
        (
            "role",
            Box::new(|v| v["tensors"][0]["role"] = "buffer".into()),
        ),
        (
            "trainable",
            Box::new(|v| v["tensors"][1]["trainable"] = false.into()),
        ),
    ];
    for (what, edit) in cases {
        std::fs::write(&manifest, &original).unwrap();
        edit_manifest(&dir, edit);
        let e = open_err(&dir, what);
        assert_corrupt(&e, &snap(&dir, 0), what);
        assert!(
            e.to_string().contains("changed after recording"),
            "{what}: {e}"
        );
        let v = Run::verify_dir(&dir);
        assert_eq!(
            v.problems.len(),
            3,
            "{what}: one per snapshot: {:?}",
            v.problems
        );
    }
    // Fields outside the tensor table may change (the recorder rewrites
    // the manifest at finish).
    std::fs::write(&manifest, &original).unwrap();
    edit_manifest(&dir, |v| v["user"]["note"] = "edited".into());
    assert_eq!(Run::open(&dir).unwrap().len(), 3);
}

/// Runs `f` on a thread, failing the test if it does not return within a
/// minute (a FIFO or device read blocks or never ends).
fn within_a_minute<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(std::time::Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("{what}: still blocked after a minute"))
}

fn mkfifo(path: &Path) -> bool {
    std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .is_ok_and(|s| s.success())
}

#[cfg(unix)]
#[test]
fn fifos_and_devices_are_refused_without_blocking() {
    let root = tempdir();
    let dir = tiny_run(root.path(), "r", 3);
    let manifest = dir.join(MANIFEST_FILE);
    let original = std::fs::read(&manifest).unwrap();

    // /dev/zero behind a symlink: endless zeros.
    std::fs::remove_file(&manifest).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &manifest).unwrap();
    let d = dir.clone();
    let e = within_a_minute("/dev/zero manifest", move || Run::open(&d).map(|_| ()))
        .expect_err("a device as manifest");
    assert_corrupt(&e, &manifest, "/dev/zero manifest");
    assert!(e.to_string().contains("not a regular file"), "{e}");
    std::fs::remove_file(&manifest).unwrap();

    // A manifest far too large is refused before it is read (sparse).
    let f = std::fs::File::create(&manifest).unwrap();
    f.set_len(65 << 20).unwrap();
    drop(f);
    let e = open_err(&dir, "huge manifest");
    assert_corrupt(&e, &manifest, "huge manifest");
    assert!(e.to_string().contains("too large"), "{e}");
    std::fs::remove_file(&manifest).unwrap();

    if !mkfifo(&manifest) {
        eprintln!("no mkfifo: FIFO cases skipped");
        return;
    }
    let d = dir.clone();
    let e = within_a_minute("FIFO manifest", move || Run::open(&d).map(|_| ()))
        .expect_err("a FIFO as manifest");
    assert_corrupt(&e, &manifest, "FIFO manifest");
    std::fs::remove_file(&manifest).unwrap();
    std::fs::write(&manifest, &original).unwrap();

    let file = snap(&dir, 1);
    std::fs::remove_file(&file).unwrap();
    assert!(mkfifo(&file));
    let d = dir.clone();
    let e = within_a_minute("FIFO snapshot", move || Run::open(&d).map(|_| ()))
        .expect_err("a FIFO as snapshot");
    assert_corrupt(&e, &file, "FIFO snapshot");
    assert!(e.to_string().contains("not a regular file"), "{e}");
    let d = dir.clone();
    let v = within_a_minute("FIFO snapshot, verify", move || Run::verify_dir(&d));
    assert_eq!(v.problems.len(), 1, "{:?}", v.problems);
}

/// A snapshot or metrics file whose checksums are gone (the footer key
/// damaged, or rewritten without them) is refused, naming the file: one
/// damaged byte must not switch checking off.
#[test]
fn files_without_checksums_are_refused() {
    use arrow::ipc::reader::FileReader;
    use arrow::ipc::writer::FileWriter;
    let root = tempdir();
    let dir = tiny_run(root.path(), "r", 3);
    for file in [snap(&dir, 1), dir.join(METRICS_FILE)] {
        let reader = FileReader::try_new(std::fs::File::open(&file).unwrap(), None).unwrap();
        assert!(reader
            .custom_metadata()
            .contains_key(tch_landscape::store::snapshot::CHECKSUM_KEY));
        let schema = reader.schema();
        let batches: Vec<_> = reader.map(|b| b.unwrap()).collect();
        let mut w = FileWriter::try_new(std::fs::File::create(&file).unwrap(), &schema).unwrap();
        for b in &batches {
            w.write(b).unwrap();
        }
        w.finish().unwrap();
    }
    let e = Run::open(&dir).unwrap_err();
    assert_corrupt(&e, &snap(&dir, 1), "snapshot without checksums");
    assert!(e.to_string().contains("checksum"), "{e}");
    let e = tch_landscape::store::metrics::read_metrics(&dir.join(METRICS_FILE)).unwrap_err();
    assert!(
        e.to_string().contains("metrics.arrow") && e.to_string().contains("checksums"),
        "{e}"
    );
    let v = Run::verify_dir(&dir);
    assert_eq!(v.problems.len(), 2, "{:?}", v.problems);
}
