//! A run directory may come from someone else: the tools never write through
//! a symbolic link planted in it, never leave a half-written file under a
//! final name (killed, or out of disk), and one output directory has one
//! writer at a time (issue 13, findings 1, 4 and 5).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use tch::{nn, Device, Kind, Tensor};

fn landscape(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_landscape"))
        .args(args)
        .output()
        .unwrap()
}

fn spawn(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_landscape"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Every file under `dir` (following nothing) with its bytes.
fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            if m.is_dir() {
                stack.push(p);
            } else if m.is_file() {
                out.insert(p.clone(), std::fs::read(&p).unwrap());
            } else {
                out.insert(p.clone(), b"<link>".to_vec());
            }
        }
    }
    out
}

/// A directory outside the run holding one file, and its contents.
fn victim(root: &Path) -> (PathBuf, BTreeMap<PathBuf, Vec<u8>>) {
    let v = root.join("victim");
    std::fs::create_dir_all(&v).unwrap();
    std::fs::write(v.join("index.html"), b"precious").unwrap();
    std::fs::write(v.join("trajectory.parquet"), b"precious too").unwrap();
    let t = tree(&v);
    (v, t)
}

/// A run of the demo's model with `epochs` epochs (PCA needs three
/// snapshots).
fn demo_run(dir: &Path, epochs: u64) {
    let data = tch_landscape::data::digits::Digits::load().unwrap();
    let (train, _) = data.split_at(1437).unwrap();
    let cfg = tch_landscape::demo::TrainConfig {
        epochs,
        lr_drops: vec![],
        ..Default::default()
    };
    tch_landscape::demo::train_digits(dir, &train, &cfg).unwrap();
}

#[cfg(unix)]
#[test]
fn planted_symlinks_never_redirect_a_write() {
    use std::os::unix::fs::symlink;
    let tmp = common::tempdir();
    let run = tmp.path().join("run");
    demo_run(&run, 3);
    let (v, before) = victim(tmp.path());

    // Symlinked output directories: refused, naming the link.
    for (sub, args) in [
        ("report", vec!["report", s(&run)]),
        ("pca", vec!["pca", s(&run)]),
        ("export", vec!["export", s(&run)]),
    ] {
        symlink(&v, run.join(sub)).unwrap();
        let out = landscape(&args);
        let err = stderr(&out);
        assert!(!out.status.success(), "{sub}: {err}");
        assert!(
            err.contains("symbolic link") && err.contains(sub),
            "{sub}: {err}"
        );
        std::fs::remove_file(run.join(sub)).unwrap();
    }
    // A surface whose --out goes through a planted `surfaces` link.
    symlink(&v, run.join("surfaces")).unwrap();
    let out = landscape(&[
        "surface",
        s(&run),
        "--dims",
        "1",
        "--grid",
        "3",
        "--out",
        s(&run.join("surfaces/x")),
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("symbolic link"), "{}", stderr(&out));
    std::fs::remove_file(run.join("surfaces")).unwrap();

    // Symlinked output files (and the old fixed temporary names): replaced
    // by the new file, never written through.
    std::fs::create_dir_all(run.join("report")).unwrap();
    std::fs::create_dir_all(run.join("export")).unwrap();
    symlink(v.join("index.html"), run.join("report/index.html")).unwrap();
    symlink(v.join("index.html"), run.join("report/.index.html.tmp")).unwrap();
    symlink(
        v.join("trajectory.parquet"),
        run.join("export/trajectory.parquet"),
    )
    .unwrap();
    for args in [vec!["report", s(&run)], vec!["export", s(&run)]] {
        let out = landscape(&args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    }
    for f in ["report/index.html", "export/trajectory.parquet"] {
        let m = std::fs::symlink_metadata(run.join(f)).unwrap();
        assert!(m.is_file(), "{f} is still a link");
    }
    assert_eq!(tree(&v), before, "a file outside the run was modified");
}

/// Waits until `dir/.lock` names `pid` (the child took the lock).
fn wait_for_lock(dir: &Path, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(120);
    let want = child.id().to_string();
    loop {
        if let Ok(text) = std::fs::read_to_string(dir.join(".lock")) {
            if text.trim() == want {
                return;
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the first writer ended ({status}) before it was seen holding the lock");
        }
        assert!(Instant::now() < deadline, "no lock in {}", dir.display());
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn finish(mut child: Child) {
    let status = child.wait().unwrap();
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut err);
    }
    assert!(status.success(), "first writer failed: {err}");
}

#[test]
fn a_second_demo_neither_disturbs_nor_silently_replaces_the_first() {
    let tmp = common::tempdir();
    let d = tmp.path().join("demo");
    let demo = ["demo", "--epochs", "2", "--grid", "3", "--out", s(&d)];
    let mut first = spawn(&demo);
    std::thread::sleep(Duration::from_millis(1));
    std::fs::create_dir_all(&d).unwrap();
    wait_for_lock(&d, &mut first);
    // While the first runs, even --overwrite is refused, naming its pid.
    let mut again = demo.to_vec();
    again.push("--overwrite");
    let out = landscape(&again);
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains(&format!("in use by pid {}", first.id())),
        "{err}"
    );
    finish(first);
    let run = d.join("mlp-digits");
    let report = std::fs::read(run.join("report/index.html")).unwrap();
    let snapshots = tree(&run.join("snapshots"));
    assert!(!snapshots.is_empty());
    // Afterwards, replacing the finished run needs --overwrite.
    let out = landscape(&demo);
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("already holds a recorded run") && err.contains("--overwrite"),
        "{err}"
    );
    assert_eq!(tree(&run.join("snapshots")), snapshots);
    assert_eq!(
        std::fs::read(run.join("report/index.html")).unwrap(),
        report
    );
}

#[test]
fn two_surfaces_into_one_directory_do_not_race() {
    let tmp = common::tempdir();
    let run = tmp.path().join("run");
    demo_run(&run, 1);
    let out_dir = run.join("surfaces/f");
    let args = [
        "surface",
        s(&run),
        "--grid",
        "31",
        "--threads",
        "1",
        "--out",
        s(&out_dir),
    ];
    let mut first = spawn(&args);
    std::thread::sleep(Duration::from_millis(1));
    wait_for_lock(&out_dir, &mut first);
    let out = landscape(&args);
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains(&format!("in use by pid {}", first.id())),
        "{err}"
    );
    finish(first);
    assert!(out_dir.join("surface.parquet").is_file());
    // Once the first is done the directory is free (the rerun resumes the
    // finished surface).
    let out = landscape(&args);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// A run of one 1,000,000-parameter tensor, `n` snapshots: an export of
/// about 4 MB per snapshot.
fn big_run(dir: &Path, n: u64) {
    let vs = nn::VarStore::new(Device::Cpu);
    let w = vs.root().var("w", &[1000, 1000], nn::Init::Const(0.0));
    let mut rec = tch_landscape::Recorder::builder(dir)
        .fsync(false)
        .build(&vs)
        .unwrap();
    for epoch in 1..n {
        tch::no_grad(|| {
            let mut w = w.shallow_clone();
            w.copy_(&Tensor::randn([1000, 1000], (Kind::Float, Device::Cpu)));
        });
        rec.on_epoch_end(epoch, &[("loss", epoch as f64)]).unwrap();
    }
    rec.finish().unwrap();
}

/// Reads every row of the Parquet file `p`.
fn read_parquet(p: &Path) -> Result<usize, Box<dyn std::error::Error>> {
    let file = std::fs::File::open(p)?;
    let reader =
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)?.build()?;
    let mut rows = 0;
    for batch in reader {
        rows += batch?.num_rows();
    }
    Ok(rows)
}

/// Every Parquet file in `dir` opens and reads in full; no temporary file
/// is left behind.
fn only_complete_files(dir: &Path, what: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if name == ".lock" {
            continue;
        }
        assert!(
            !tch_landscape::store::is_temp_name(&name) || what == "killed",
            "{what}: temporary file {name} left behind"
        );
        if name.ends_with(".parquet") {
            read_parquet(&p).unwrap_or_else(|e| panic!("{what}: {name} is not complete: {e}"));
        }
    }
}

#[cfg(unix)]
#[test]
fn a_killed_export_leaves_no_partial_file() {
    let tmp = common::tempdir();
    let run = tmp.path().join("run");
    big_run(&run, 12);
    let mut killed_mid_way = 0;
    for (i, ms) in [60, 150, 300, 500, 800, 1300].into_iter().enumerate() {
        let out = tmp.path().join(format!("export-{i}"));
        let mut child = spawn(&["export", s(&run), "--out", s(&out)]);
        std::thread::sleep(Duration::from_millis(ms));
        if child.try_wait().unwrap().is_none() {
            killed_mid_way += 1;
        }
        let _ = child.kill();
        let _ = child.wait();
        only_complete_files(&out, "killed");
    }
    eprintln!("{killed_mid_way} of 6 exports killed while running");
}

/// Unmounts on drop.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_fails_the_export_cleanly() {
    let tmp = common::tempdir();
    let run = tmp.path().join("run");
    big_run(&run, 3);
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=3m", "tmpfs"])
        .arg(&mnt)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("cannot mount a tmpfs here (not root?); disk-full check skipped");
        return;
    }
    let _guard = Mount(mnt.clone());
    // Fill levels from empty to nearly full.
    for fill_kb in [0usize, 500, 1000, 1500, 2000, 2500, 2900] {
        let filler = mnt.join("filler");
        std::fs::write(&filler, vec![0u8; fill_kb * 1024]).unwrap();
        let out = mnt.join("out");
        let o = landscape(&["export", s(&run), "--out", s(&out)]);
        let err = stderr(&o);
        assert!(
            !o.status.success(),
            "fill {fill_kb} KB: export of 12 MB fit in 3 MB?"
        );
        assert!(err.contains("No space left"), "fill {fill_kb} KB: {err}");
        assert!(!err.contains("panicked"), "{err}");
        only_complete_files(&out, &format!("fill {fill_kb} KB"));
        let _ = std::fs::remove_dir_all(&out);
        std::fs::remove_file(&filler).unwrap();
    }
}

#[test]
fn ranges_that_overflow_are_refused_before_any_work() {
    let tmp = common::tempdir();
    let run = tmp.path().join("run");
    demo_run(&run, 1);
    let out_dir = tmp.path().join("s");
    let o = landscape(&[
        "surface",
        s(&run),
        "--grid",
        "5",
        "--range",
        "1e30",
        "--out",
        s(&out_dir),
    ]);
    let err = stderr(&o);
    assert!(!o.status.success(), "{err}");
    assert!(
        err.contains("1e30") || err.contains("1000000000000000000000000000000"),
        "{err}"
    );
    assert!(!out_dir.join("surface.parquet").exists());
}

#[test]
fn an_os_error_is_said_once() {
    let tmp = common::tempdir();
    let o = landscape(&["info", s(&tmp.path().join("nope"))]);
    let err = stderr(&o);
    assert!(!o.status.success());
    let o = landscape(&["export", s(tmp.path()), "--out", s(&tmp.path().join("x"))]);
    let err2 = stderr(&o);
    for e in [err, err2] {
        let lower = e.to_lowercase();
        for msg in ["no such file or directory", "not a directory"] {
            assert!(lower.matches(msg).count() <= 1, "repeated OS message: {e}");
        }
    }
}

#[test]
fn a_closed_pipe_ends_quietly() {
    let tmp = common::tempdir();
    let run = tmp.path().join("run");
    demo_run(&run, 2);
    for args in [vec!["info", s(&run)], vec!["pca", s(&run)]] {
        // The reading end is closed before the command starts, so its
        // first write fails (`landscape info RUN | head -c0`).
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = Command::new(env!("CARGO_BIN_EXE_landscape"))
            .args(&args)
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}
