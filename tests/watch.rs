//! `landscape watch` on a run while it is being recorded: it reads only
//! complete snapshots, picks up one written after it started, refits the
//! PCA (one new Gram row per new snapshot) and rewrites the report each
//! time, and stops when the run finishes.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use tch::nn;
use tch_landscape::analysis::pca::{
    PcaSummary, DIRECTIONS_RAW_FILE, PATH_FILE, TENSORS_FILE, VARIANCE_FILE,
};
use tch_landscape::models::Mlp;
use tch_landscape::Recorder;

#[test]
fn the_watcher_follows_a_run_being_recorded_and_stops_when_it_finishes() {
    let tmp = common::tempdir();
    let dir = tmp.path().join("run");
    tch::manual_seed(5);
    let vs = nn::VarStore::new(tch::Device::Cpu);
    let _m = Mlp::new(&vs.root(), &[16, 8, 4]);
    let mut rec = Recorder::builder(&dir).build(&vs).unwrap();
    let step = |rec: &mut Recorder, epoch: u64| {
        tch::no_grad(|| {
            for (_, mut t) in vs.variables() {
                let _ = t.f_add_(&(t.randn_like() * 0.1)).unwrap();
            }
        });
        rec.on_epoch_end(epoch, &[("loss", 1.0 / epoch as f64)])
            .unwrap();
    };
    step(&mut rec, 1);
    step(&mut rec, 2);
    let mut child = Command::new(env!("CARGO_BIN_EXE_landscape"))
        .args(["watch", dir.to_str().unwrap(), "--interval", "0.1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let next = |what: &str| -> String {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("no update for {what}: {e}"));
        println!("{line}");
        line
    };
    // The three snapshots recorded before it started (θ₀, epochs 1, 2).
    let first = next("the first look");
    assert!(
        first.starts_with("updated: 3 snapshots, PC1+PC2") && first.contains(", 3 new Gram rows"),
        "{first}"
    );
    let html = std::fs::read_to_string(dir.join("report/index.html")).unwrap();
    assert!(
        html.contains("Optimizer path"),
        "the report has no PCA section"
    );
    // One snapshot written after it started.
    step(&mut rec, 3);
    let second = next("the snapshot written after the start");
    assert!(
        second.starts_with("updated: 4 snapshots") && second.contains(", 1 new Gram row ("),
        "{second}"
    );
    assert!(!second.contains("finished"), "{second}");
    // The recorder is never blocked: this snapshot went through at once.
    rec.finish().unwrap();
    let last = next("the finished run");
    assert!(
        last.starts_with("updated: 4 snapshots")
            && last.contains("0 new Gram rows")
            && last.contains("run finished"),
        "{last}"
    );
    let status = child.wait().unwrap();
    assert!(status.success(), "the watcher failed: {status}");
    // The PCA of the 4 snapshots, as `landscape pca` writes it.
    let pca = PcaSummary::load_dir(&dir.join("pca")).unwrap();
    assert_eq!((pca.snapshots, pca.path.len(), pca.passes), (4, 4, 1));
    assert_eq!(
        (pca.signs.as_str(), pca.gram_precision.as_str()),
        ("path", "f64")
    );
    for f in [TENSORS_FILE, PATH_FILE, VARIANCE_FILE] {
        assert!(dir.join("pca").join(f).is_file(), "{f}");
    }
    assert!(!dir.join("pca").join(DIRECTIONS_RAW_FILE).exists());
}
