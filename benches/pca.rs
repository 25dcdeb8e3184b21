//! Trajectory PCA benchmarks (../shared/BENCHMARKS.md):
//!
//! - W3 pca-scale: one bias-free linear layer with P weights, K snapshots
//!   written through the Recorder, values from the workload's hashes
//!   (computed in float64, rounded once to float32). Sizes (1e6, 100) and
//!   (1e7, 100); (5e7, 50) only with `LANDSCAPE_BENCH_W3_LARGE=1` (10 GB on
//!   disk; skipped with a message when less than 30 GB is free).
//! - W1(b): PCA over the 11 snapshots of W1's 10-epoch digits MLP, dim ≤ 1
//!   tensors left out.
//!
//! Every PCA runs in a child process (this binary re-executed with
//! `--child-pca RUN`) so its peak RSS (VmHWM) is the PCA's own. Runs are kept
//! under `$LANDSCAPE_BENCH_DIR` (default /tmp/landscape-bench) and reused.
//!
//! `cargo bench --bench pca [-- w1|w3]`

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use tch::nn;
use tch::{Device, Tensor};
use tch_landscape::analysis::pca::TrajectoryPca;
use tch_landscape::data::digits::Digits;
use tch_landscape::demo::{train_digits, TrainConfig};
use tch_landscape::{Recorder, Run, Selection};

#[path = "common/results.rs"]
mod results;
use results::Results;

const MULTIPLIERS: [u64; 3] = [2_654_435_761, 2_246_822_519, 3_266_489_917];
/// Chunk of the page-cache read used for comparison (the PCA's default).
const READ_CHUNK: usize = tch_landscape::analysis::pca::DEFAULT_CHUNK;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(pos) = args.iter().position(|a| a == "--child-pca") {
        let run = args
            .get(pos + 1)
            .context("--child-pca needs a run directory")?;
        return child(Path::new(run), args.iter().any(|a| a == "--directions"));
    }
    tch::set_num_threads(2);
    let want =
        |w: &str| !args.iter().any(|a| a == "w1" || a == "w3") || args.iter().any(|a| a == w);
    let root = std::env::var_os("LANDSCAPE_BENCH_DIR")
        .map_or_else(|| PathBuf::from("/tmp/landscape-bench"), PathBuf::from);
    std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    println!("trajectory PCA benchmarks; runs under {}", root.display());
    let mut results = Results::default();
    if want("w3") {
        let mut sizes = vec![(1000usize, 1000usize, 100usize), (1000, 10_000, 100)];
        if std::env::var("LANDSCAPE_BENCH_W3_LARGE").as_deref() == Ok("1") {
            let free = free_gib(&root)?;
            // A run generated earlier is reused: then no space is needed.
            let generated = root
                .join("w3-5000x10000-k50")
                .join("manifest.json")
                .exists();
            if free < 30.0 && !generated {
                println!(
                    "W3 5e7x50: skipped, only {free:.1} GiB free under {} (needs 30)",
                    root.display()
                );
            } else {
                sizes.push((5000, 10_000, 50));
            }
        } else {
            println!("W3 5e7x50: not run (set LANDSCAPE_BENCH_W3_LARGE=1; writes 10 GB)");
        }
        for (rows, cols, k) in sizes {
            w3(&root, rows, cols, k, &mut results)?;
        }
    }
    if want("w1") {
        w1b(&root, &mut results)?;
    }
    results.print();
    Ok(())
}

/// W3 at P = rows × cols, K snapshots.
fn w3(root: &Path, rows: usize, cols: usize, k: usize, results: &mut Results) -> Result<()> {
    let p = rows * cols;
    let e = (p as f64).log10().floor();
    let label = format!(
        "W3 P={}e{e} ({rows}x{cols}) K={k}",
        p as f64 / 10f64.powf(e)
    );
    let dir = root.join(format!("w3-{rows}x{cols}-k{k}"));
    if !valid_run(&dir, &label, k) {
        let t0 = Instant::now();
        generate_w3(&dir, &label, rows, cols, k)?;
        println!(
            "{label}: generated through the Recorder in {:.1} s",
            t0.elapsed().as_secs_f64()
        );
    }
    let run = Run::open(&dir)?;
    let bytes = (p * k * 4) as f64;
    read_all(&run)?; // into the page cache
    let reads: Vec<f64> = (0..3)
        .map(|_| read_all(&run).map(|r| r.0))
        .collect::<Result<_>>()?;
    let read_s = median(reads);
    let c = run_child(&dir, false)?;
    let d = run_child(&dir, true)?;
    // "pca_w3_1e6_k100_..."
    let size = format!("{}e{e}", p as f64 / 10f64.powf(e));
    let key = format!("pca_w3_{size}_k{k}");
    results.add(format!("{key}_s"), c.seconds, "s");
    results.add(format!("{key}_peak_rss_mib"), c.vmhwm_kib / 1024.0, "MiB");
    results.add(format!("{key}_read_gbps"), bytes / read_s / 1e9, "GB/s");
    results.add(format!("{key}_pc12_pct"), 100.0 * c.ratio12, "%");
    results.add(format!("{key}_dirs_s"), d.seconds, "s");
    results.add(
        format!("{key}_dirs_peak_rss_mib"),
        d.vmhwm_kib / 1024.0,
        "MiB",
    );
    results.add(format!("pca_w3_{size}_over_read"), c.seconds / read_s, "x");
    results.add(
        format!("pca_w3_{size}_dirs_over_read"),
        d.seconds / read_s,
        "x",
    );
    results.add(format!("pca_w3_{size}_seconds"), c.seconds, "s");
    println!(
        "{label}: PCA {:.2} s (process {:.2} s) | one page-cache read (Run::stream, sum of all floats): {:.2} s, {:.2} GB/s | PCA / read = {:.2} | with the directions (second pass) {:.2} s = {:.2} × read | peak RSS {:.0} MiB, with directions {:.0} MiB (at the end: anon {:.0}, file {:.0}) | PC1+PC2 {:.6} % (rank {})",
        c.seconds,
        c.process_seconds,
        read_s,
        bytes / read_s / 1e9,
        c.seconds / read_s,
        d.seconds,
        d.seconds / read_s,
        c.vmhwm_kib / 1024.0,
        d.vmhwm_kib / 1024.0,
        c.rss_anon_kib / 1024.0,
        c.rss_file_kib / 1024.0,
        100.0 * c.ratio12,
        c.rank
    );
    Ok(())
}

/// W1(b): PCA of the 10-epoch W1 run's 11 snapshots (weights only).
fn w1b(root: &Path, results: &mut Results) -> Result<()> {
    let label = "W1(b) mlp-digits 11 snapshots";
    let dir = root.join("w1-mlp-digits");
    if !valid_run(&dir, "", 11) {
        let cfg = TrainConfig {
            epochs: 10,
            lr_drops: vec![],
            ..TrainConfig::default()
        };
        let (loss, acc) = train_digits(&dir, &Digits::load()?, &cfg)?;
        println!("{label}: trained 10 epochs, final loss {loss:.4}, accuracy {acc:.1} %");
    }
    let run = Run::open(&dir)?;
    let numel: u64 = Selection::Weights
        .indices(run.manifest())?
        .iter()
        .map(|&i| run.manifest().tensors[i].numel)
        .sum();
    let c = run_child(&dir, false)?;
    results.add("pca_w1b_s", c.seconds, "s");
    results.add("pca_w1b_peak_rss_mib", c.vmhwm_kib / 1024.0, "MiB");
    results.add("pca_w1b_pc12_pct", 100.0 * c.ratio12, "%");
    println!(
        "{label}: {numel} weights | PCA {:.4} s (process {:.2} s) | peak RSS {:.0} MiB (at the end: anon {:.0}, file {:.0}) | PC1+PC2 {:.2} % (rank {})",
        c.seconds,
        c.process_seconds,
        c.vmhwm_kib / 1024.0,
        c.rss_anon_kib / 1024.0,
        c.rss_file_kib / 1024.0,
        100.0 * c.ratio12,
        c.rank
    );
    Ok(())
}

/// Whether `dir` holds a finished run of `snapshots` snapshots made for
/// `label` (any label when empty).
fn valid_run(dir: &Path, label: &str, snapshots: usize) -> bool {
    Run::open(dir).is_ok_and(|r| {
        r.manifest().finished
            && r.len() == snapshots
            && (label.is_empty()
                || r.manifest().user.get("workload").map(String::as_str) == Some(label))
    })
}

/// u_m(i) = ((i + 1)·M_m mod 2³²) / 2³² − 0.5 for the three multipliers.
fn hashes(p: usize) -> [Vec<f64>; 3] {
    MULTIPLIERS.map(|m| {
        (0..p as u64)
            .map(|i| ((i + 1).wrapping_mul(m) & 0xffff_ffff) as f64 / 4_294_967_296.0 - 0.5)
            .collect()
    })
}

fn generate_w3(dir: &Path, label: &str, rows: usize, cols: usize, k: usize) -> Result<()> {
    let p = rows * cols;
    let [u0, u1, u2] = hashes(p);
    let vs = nn::VarStore::new(Device::Cpu);
    let _fc = nn::linear(
        vs.root() / "fc",
        cols as i64,
        rows as i64,
        nn::LinearConfig {
            bias: false,
            ..Default::default()
        },
    );
    let mut values = vec![0f32; p];
    let set = |snapshot: usize, values: &mut Vec<f32>| {
        let t = snapshot as f64 / (k - 1) as f64;
        let c = ((7 * snapshot) % 11) as f64 / 10.0 - 0.5;
        for (i, v) in values.iter_mut().enumerate() {
            *v = ((0.05 * u0[i] + (0.02 * t) * u1[i]) + (0.01 * c) * u2[i]) as f32;
        }
        tch::no_grad(|| {
            vs.variables()["fc.weight"]
                .shallow_clone()
                .copy_(&Tensor::from_slice(values).view([rows as i64, cols as i64]));
        });
    };
    set(0, &mut values);
    let mut rec = Recorder::builder(dir)
        .overwrite(true)
        .fsync(false)
        .metadata("workload", label)
        .build(&vs)?;
    for snapshot in 1..k {
        set(snapshot, &mut values);
        rec.on_epoch_end(snapshot as u64, &[])?;
    }
    rec.finish()?;
    Ok(())
}

/// Reads every value of every snapshot once (sum of all floats) with
/// `Run::stream`: (seconds, sum).
fn read_all(run: &Run) -> Result<(f64, f64)> {
    let t0 = Instant::now();
    let mut sum = 0.0f64;
    for c in run.stream(&Selection::All, READ_CHUNK)? {
        let c = c?;
        sum += c.data.iter().map(|&x| x as f64).sum::<f64>();
    }
    Ok((t0.elapsed().as_secs_f64(), sum))
}

struct ChildResult {
    seconds: f64,
    process_seconds: f64,
    vmhwm_kib: f64,
    /// Anonymous and file-backed (mapped snapshot pages, libraries) RSS at
    /// the end of the PCA.
    rss_anon_kib: f64,
    rss_file_kib: f64,
    ratio12: f64,
    rank: usize,
}

fn run_child(dir: &Path, directions: bool) -> Result<ChildResult> {
    let exe = std::env::current_exe()?;
    let t0 = Instant::now();
    let mut cmd = Command::new(exe);
    cmd.arg("--child-pca").arg(dir);
    if directions {
        cmd.arg("--directions");
    }
    let out = cmd.output()?;
    let process_seconds = t0.elapsed().as_secs_f64();
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "PCA child failed ({}): {}{}",
            out.status,
            stdout,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let line = stdout
        .lines()
        .find(|l| l.starts_with("CHILD_PCA "))
        .context("no CHILD_PCA line from the child")?;
    let field = |name: &str| -> Result<f64> {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
            .with_context(|| format!("no {name} in '{line}'"))?
            .parse::<f64>()
            .with_context(|| format!("bad {name} in '{line}'"))
    };
    Ok(ChildResult {
        seconds: field("seconds")?,
        process_seconds,
        vmhwm_kib: field("vmhwm_kib")?,
        rss_anon_kib: field("rss_anon_kib")?,
        rss_file_kib: field("rss_file_kib")?,
        ratio12: field("ratio12")?,
        rank: field("rank")? as usize,
    })
}

/// The child: opens the run, runs the PCA with default settings (weights,
/// 2 components), prints the wall time, PC1+PC2 and VmHWM.
fn child(dir: &Path, directions: bool) -> Result<()> {
    let t0 = Instant::now();
    let run = Run::open(dir)?;
    let pca = TrajectoryPca::builder().build()?.fit(&run)?;
    if directions {
        // The PCA plane's directions: the second pass.
        pca.components(&run)?;
    }
    let seconds = t0.elapsed().as_secs_f64();
    let status = std::fs::read_to_string("/proc/self/status")?;
    let kib = |key: &str| -> Result<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .with_context(|| format!("no {key} in /proc/self/status"))
    };
    println!(
        "CHILD_PCA seconds={seconds} ratio12={} rank={} vmhwm_kib={} rss_anon_kib={} rss_file_kib={}",
        pca.plane_ratio(),
        pca.rank,
        kib("VmHWM:")?,
        kib("RssAnon:")?,
        kib("RssFile:")?
    );
    Ok(())
}

/// Free space under `dir`, in GiB (from `df`).
fn free_gib(dir: &Path) -> Result<f64> {
    let out = Command::new("df")
        .args(["-Pk"])
        .arg(dir)
        .output()
        .context("running df")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let avail = text
        .lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse::<f64>().ok())
        .context("cannot parse df output")?;
    Ok(avail / 1024.0 / 1024.0)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
