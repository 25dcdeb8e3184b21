//! Metrics-logging benchmark (`cargo bench --bench metrics`, harness = false).
//!
//! A [`Recorder`] on a tiny VarStore (one 4→2 linear layer, no snapshots
//! between θ₀ and the end) receives `on_step_end(epoch, step, &[("loss", ..),
//! ("acc", ..), ("lr", ..)])` N times, then `finish()`; once with the default
//! [`Durability::Written`] and once with [`Durability::Queued`] (fsync on, the
//! default, in both). Prints the mean cost per call (µs), the `finish()` time
//! and the total, checks that the run reads back with all 3·N rows in order,
//! and prints the peak RSS. For scale, it also times a bare round trip to
//! another thread (what a Written call waits for at least).
//!
//! N defaults to 1,000,000; other sizes can be given after `--`:
//! `cargo bench --bench metrics -- 1000 10000 30000`. Files go to a temporary
//! directory under /tmp (or $TMPDIR), removed at the end.
//!
//! Ends with `RESULT <name> <value> <unit>` lines (see `benches/README.md`).

use std::path::Path;
use std::time::Instant;

use tch::nn;
use tch::Device;
use tch_landscape::{Durability, Recorder, Run};

#[path = "common/results.rs"]
mod results;
use results::{load_average, peak_rss_mib, Results};

const DEFAULT_CALLS: [u64; 1] = [1_000_000];
const NAMES: [&str; 3] = ["loss", "acc", "lr"];

/// `n` as `me<k>` (1e6, 3e4) when it is a one-digit multiple of a power of
/// ten, else in full: the size part of the RESULT names.
fn size_label(n: u64) -> String {
    let mut m = n;
    let mut e = 0;
    while m >= 10 && m.is_multiple_of(10) {
        m /= 10;
        e += 1;
    }
    if m < 10 && e > 0 {
        format!("{m}e{e}")
    } else {
        n.to_string()
    }
}

/// Mean time of a bare round trip to another thread, as the recorder does
/// for each `Durability::Written` report: a job through a bounded channel,
/// answered on a fresh bounded(1) channel. The floor of a Written call.
fn round_trip_us(n: u32) -> f64 {
    let (tx, rx) = crossbeam_channel::bounded::<crossbeam_channel::Sender<()>>(2);
    let worker = std::thread::spawn(move || {
        for ack in rx {
            let _ = ack.send(());
        }
    });
    let t0 = Instant::now();
    for _ in 0..n {
        let (ack, done) = crossbeam_channel::bounded(1);
        tx.send(ack).unwrap();
        done.recv().unwrap();
    }
    let us = t0.elapsed().as_secs_f64() * 1e6 / f64::from(n);
    drop(tx);
    worker.join().unwrap();
    us
}

struct Measured {
    call_us: f64,
    /// Mean cost of the first and of the last 10 % of the calls.
    first_us: f64,
    last_us: f64,
    finish_s: f64,
    total_s: f64,
    read_s: f64,
    /// Peak RSS of the process so far, just after `finish()`.
    rss_after_finish: Option<f64>,
}

fn one(dir: &Path, vs: &nn::VarStore, durability: Durability, calls: u64) -> Measured {
    let mut rec = Recorder::builder(dir)
        .durability(durability)
        .build(vs)
        .unwrap();
    rec.flush().unwrap();
    let steps_per_epoch = 1000;
    let window = (calls / 10).max(1);
    let (mut first_end, mut last_start) = (None, None);
    let t0 = Instant::now();
    for step in 1..=calls {
        if step == calls - window + 1 {
            last_start = Some(Instant::now());
        }
        let x = step as f64;
        rec.on_step_end(
            step / steps_per_epoch,
            step,
            &[("loss", 1.0 / x), ("acc", x), ("lr", 0.1)],
        )
        .unwrap();
        if step == window {
            first_end = Some(t0.elapsed().as_secs_f64());
        }
    }
    let loop_s = t0.elapsed().as_secs_f64();
    let last_s = last_start.map_or(f64::NAN, |t| t.elapsed().as_secs_f64());
    let t1 = Instant::now();
    rec.finish().unwrap();
    let finish_s = t1.elapsed().as_secs_f64();
    let total_s = t0.elapsed().as_secs_f64();
    let rss_after_finish = peak_rss_mib();

    let t2 = Instant::now();
    let rows = Run::open(dir).unwrap().metrics().unwrap();
    let read_s = t2.elapsed().as_secs_f64();
    assert_eq!(rows.len() as u64, 3 * calls, "rows read back");
    for (i, r) in rows.iter().enumerate() {
        let step = i as u64 / 3 + 1;
        assert_eq!(r.step, Some(step), "row {i}: step");
        assert_eq!(r.name, NAMES[i % 3], "row {i}: name");
    }
    Measured {
        call_us: loop_s * 1e6 / calls as f64,
        first_us: first_end.unwrap_or(f64::NAN) * 1e6 / window as f64,
        last_us: last_s * 1e6 / window as f64,
        finish_s,
        total_s,
        read_s,
        rss_after_finish,
    }
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` runs this with
    // no such flag: then only a quick smoke run makes sense.
    let args: Vec<String> = std::env::args().skip(1).collect();
    let bench = args.iter().any(|a| a == "--bench");
    let mut sizes: Vec<u64> = args.iter().filter_map(|a| a.parse().ok()).collect();
    if sizes.is_empty() {
        sizes = if bench {
            DEFAULT_CALLS.to_vec()
        } else {
            vec![100]
        };
    }
    tch::set_num_threads(1);
    let started = Instant::now();
    let load_start = load_average();
    let tmp = tempfile::Builder::new()
        .prefix("tch-landscape-bench-metrics-")
        .tempdir()
        .unwrap();
    let vs = nn::VarStore::new(Device::Cpu);
    let _layer = nn::linear(vs.root(), 4, 2, Default::default());
    println!(
        "tch-landscape metrics benchmark: on_step_end with 3 metrics, no snapshots between θ₀ and finish(), fsync on; files in {}",
        tmp.path().display()
    );
    println!(
        "  {:<10} {:>10} {:>12} {:>12} {:>12} {:>12} {:>14}",
        "mode",
        "calls",
        "per call µs (first→last 10 %)",
        "finish s",
        "total s",
        "read s",
        "peak RSS MiB"
    );
    let mut results = Results::default();
    for &n in &sizes {
        for (mode, durability) in [
            ("written", Durability::Written),
            ("queued", Durability::Queued),
        ] {
            let dir = tmp.path().join(format!("{mode}-{n}"));
            let m = one(&dir, &vs, durability, n);
            println!(
                "  {:<10} {:>10} {:>12} {:>12.3} {:>12.3} {:>12.3} {:>14.0}",
                mode,
                n,
                format!("{:.2} ({:.2}→{:.2})", m.call_us, m.first_us, m.last_us),
                m.finish_s,
                m.total_s,
                m.read_s,
                m.rss_after_finish.unwrap_or(f64::NAN)
            );
            std::fs::remove_dir_all(&dir).unwrap();
            let label = size_label(n);
            results.add(format!("metrics_{mode}_{label}_call_us"), m.call_us, "us");
            results.add(
                format!("metrics_{mode}_{label}_first_call_us"),
                m.first_us,
                "us",
            );
            results.add(
                format!("metrics_{mode}_{label}_last_call_us"),
                m.last_us,
                "us",
            );
            if mode == "written" && n == 1_000_000 {
                // The name: the default's cost per call at 10⁶ calls.
                results.add("metrics_step_call_us_at_1m", m.call_us, "us");
            }
            results.add(format!("metrics_{mode}_{label}_finish_s"), m.finish_s, "s");
            results.add(format!("metrics_{mode}_{label}_total_s"), m.total_s, "s");
            results.add(format!("metrics_{mode}_{label}_read_s"), m.read_s, "s");
            if let Some(rss) = m.rss_after_finish {
                results.add(format!("metrics_{mode}_{label}_peak_rss_mib"), rss, "MiB");
            }
        }
    }
    let rt = round_trip_us(if bench { 200_000 } else { 100 });
    println!("bare thread round trip (channel job + ack, the floor of a Written call): {rt:.2} µs");
    results.add("metrics_round_trip_us", rt, "us");
    let rss = peak_rss_mib();
    match rss {
        Some(m) => println!("peak RSS (VmHWM): {m:.0} MiB"),
        None => println!("peak RSS: unavailable (no /proc/self/status)"),
    }
    println!(
        "total bench time: {:.1} s; 1-min load average {} at start, {} at end ({} CPUs)",
        started.elapsed().as_secs_f64(),
        load_start,
        load_average(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    if let Some(m) = rss {
        results.add("metrics_peak_rss_mib", m, "MiB");
    }
    results.print();
}
