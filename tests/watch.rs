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
    PcaSummary, TrajectoryPca, DIRECTIONS_RAW_FILE, PATH_FILE, TENSORS_FILE, VARIANCE_FILE,
};
use tch_landscape::models::Mlp;
use tch_landscape::{Recorder, Run};

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

/// The watcher's CPU per update on a 10M-parameter MLP recorded one
/// snapshot at a time (each snapshot written once the watcher has shown the
/// previous one): `cargo test --release --features cli --test watch --
/// --ignored --nocapture`. `LANDSCAPE_WATCH_SNAPSHOTS` (default 30) sets
/// the number of epochs, `LANDSCAPE_WATCH_EXE` another `landscape` binary
/// to measure (e.g. an earlier build). Prints, per update, the watcher's
/// CPU (user + system, from /proc) and its line.
#[test]
#[ignore = "a measurement: minutes, ~1.3 GB of snapshots"]
fn watcher_cpu_per_update_on_a_10m_parameter_model() {
    let epochs: u64 = std::env::var("LANDSCAPE_WATCH_SNAPSHOTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let exe = std::env::var("LANDSCAPE_WATCH_EXE")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_landscape").to_string());
    let tmp = common::tempdir();
    let dir = tmp.path().join("run");
    tch::manual_seed(0);
    let vs = nn::VarStore::new(tch::Device::Cpu);
    let _m = Mlp::new(&vs.root(), &[1024, 2560, 2048, 1024, 10]);
    let mut rec = Recorder::builder(&dir).fsync(false).build(&vs).unwrap();
    let mut child = Command::new(&exe)
        .args(["watch", dir.to_str().unwrap(), "--interval", "0.2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // utime + stime of the watcher, in seconds.
    let cpu = || -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .unwrap()
            .1
            .split_whitespace()
            .collect();
        // SAFETY: sysconf has no preconditions.
        let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        (fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap()) / tick
    };
    let next = || rx.recv_timeout(Duration::from_secs(600)).unwrap();
    println!("watcher: {exe}, load average {}", load_average());
    let mut before = cpu();
    let first = next();
    println!("{:>3} {:>7.3} s CPU  {first}", 1, cpu() - before);
    before = cpu();
    let mut per = Vec::new();
    for epoch in 1..=epochs {
        tch::no_grad(|| {
            for (_, mut t) in vs.variables() {
                let _ = t.f_add_(&(t.randn_like() * 0.01)).unwrap();
            }
        });
        rec.on_epoch_end(epoch, &[("loss", 1.0 / epoch as f64)])
            .unwrap();
        let line = next();
        let now = cpu();
        println!("{:>3} {:>7.3} s CPU  {line}", epoch + 1, now - before);
        per.push(now - before);
        before = now;
    }
    rec.finish().unwrap();
    let last = next();
    println!("    {:>7.3} s CPU  {last}", cpu() - before);
    child.wait().unwrap();
    let mean = per.iter().sum::<f64>() / per.len() as f64;
    println!(
        "watcher CPU per new snapshot: mean {mean:.3} s over snapshots 2..={}, last {:.3} s; load average {}",
        epochs + 1,
        per.last().unwrap(),
        load_average()
    );
}

/// The trajectory PCA alone, per new snapshot of the same recording as
/// above: a refit from scratch (`TrajectoryPca::fit`, what the watcher did
/// before) against a `LiveGram` update and its fit, CPU time of this
/// process (all threads). `cargo test --release --features cli --test
/// watch -- --ignored --nocapture live_gram`.
#[test]
#[ignore = "a measurement: minutes, ~1.3 GB of snapshots"]
fn live_gram_cpu_per_update_on_a_10m_parameter_model() {
    let epochs: u64 = std::env::var("LANDSCAPE_WATCH_SNAPSHOTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let tmp = common::tempdir();
    let dir = tmp.path().join("run");
    tch::manual_seed(0);
    let vs = nn::VarStore::new(tch::Device::Cpu);
    let _m = Mlp::new(&vs.root(), &[1024, 2560, 2048, 1024, 10]);
    let mut rec = Recorder::builder(&dir).fsync(false).build(&vs).unwrap();
    let cpu = || {
        // SAFETY: an all-zero rusage is valid; getrusage only writes into it.
        let mut u: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: `u` is valid and writable for the call.
        unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
        let s = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
        s(u.ru_utime) + s(u.ru_stime)
    };
    let pca = TrajectoryPca::builder().build().unwrap();
    let mut live = pca.clone().live();
    println!("load average {}", load_average());
    println!("snapshots  refit CPU  live CPU  (new rows)");
    let (mut refit_sum, mut live_sum, mut count) = (0.0, 0.0, 0);
    for epoch in 1..=epochs {
        tch::no_grad(|| {
            for (_, mut t) in vs.variables() {
                let _ = t.f_add_(&(t.randn_like() * 0.01)).unwrap();
            }
        });
        rec.on_epoch_end(epoch, &[]).unwrap();
        let run = Run::open(&dir).unwrap();
        let c0 = cpu();
        let u = live.update(&run).unwrap();
        let got = (run.len() >= 3).then(|| live.fit(&run).unwrap());
        let c1 = cpu();
        let want = (run.len() >= 3).then(|| pca.fit(&run).unwrap());
        let c2 = cpu();
        if let (Some(g), Some(w)) = (&got, &want) {
            let d = (g.plane_ratio() - w.plane_ratio()).abs();
            assert!(
                d < 1e-5,
                "PC1+PC2: {} vs {}",
                g.plane_ratio(),
                w.plane_ratio()
            );
            refit_sum += c2 - c1;
            live_sum += c1 - c0;
            count += 1;
        }
        println!(
            "{:>9} {:>8.3} s {:>7.3} s  ({})",
            run.len(),
            c2 - c1,
            c1 - c0,
            u.new_rows
        );
    }
    rec.finish().unwrap();
    println!(
        "mean per new snapshot (3..={} snapshots): refit {:.3} s, live {:.3} s CPU; load average {}",
        epochs + 1,
        refit_sum / count as f64,
        live_sum / count as f64,
        load_average()
    );
}

/// The 1-, 5- and 15-minute load averages.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}
