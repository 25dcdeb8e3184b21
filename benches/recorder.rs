//! Recorder benchmark (`cargo bench --bench recorder`, harness = false).
//!
//! (a) Epoch time of a real training loop on a ~10M-parameter MLP with
//!     synthetic data, without the hook and with a per-epoch hook in both
//!     durability modes, measured interleaved (round-robin, rotating order)
//!     in one process; prints medians and the overhead of each mode.
//! (b) Sustained snapshot throughput: N snapshots of the same model written
//!     back-to-back through the recorder, fsync on and off, in both modes.
//!
//! Runs on the CPU with `tch::set_num_threads(2)`; files go to a temporary
//! directory under /tmp (or $TMPDIR), removed at the end. Takes about a
//! minute on 2 cores.

use std::path::Path;
use std::time::{Duration, Instant};

use tch::nn::{self, Module, OptimizerConfig};
use tch::{Device, Kind, Tensor};

use tch_landscape::models::Mlp;
use tch_landscape::{Durability, Recorder, StorageDtype};

#[path = "common/results.rs"]
mod results;
use results::{load_average, peak_rss_mib, Results};

/// ≈ 10M parameters: 1024·2560 + 2560·2048 + 2048·1024 + 1024·10 (+ biases).
const SIZES: [i64; 5] = [1024, 2560, 2048, 1024, 10];
const BATCH: i64 = 128;
/// Target duration of one epoch without the hook.
const TARGET_EPOCH: Duration = Duration::from_millis(1300);
const ROUNDS: usize = 9;
/// Epochs of each block of (d).
const WATCH_EPOCHS: usize = 6;
const THROUGHPUT_SNAPSHOTS: u32 = 8;
const THROUGHPUT_REPS: usize = 3;

struct Trainer {
    vs: nn::VarStore,
    model: Mlp,
    opt: nn::Optimizer,
    x: Tensor,
    y: Tensor,
    batches: i64,
}

impl Trainer {
    fn new(batches: i64) -> Trainer {
        tch::manual_seed(0);
        let vs = nn::VarStore::new(Device::Cpu);
        let model = Mlp::new(&vs.root(), &SIZES);
        let opt = nn::Sgd {
            momentum: 0.9,
            ..Default::default()
        }
        .build(&vs, 1e-3)
        .unwrap();
        let (x, y) = synthetic(batches);
        Trainer {
            vs,
            model,
            opt,
            x,
            y,
            batches,
        }
    }

    fn step(&mut self, b: i64) {
        let xb = self.x.narrow(0, b * BATCH, BATCH);
        let yb = self.y.narrow(0, b * BATCH, BATCH);
        let loss = self.model.forward(&xb).cross_entropy_for_logits(&yb);
        self.opt.backward_step(&loss);
    }

    fn epoch(&mut self) {
        for b in 0..self.batches {
            self.step(b);
        }
    }

    fn params(&self) -> i64 {
        self.vs
            .trainable_variables()
            .iter()
            .map(|t| t.numel() as i64)
            .sum()
    }
}

fn synthetic(batches: i64) -> (Tensor, Tensor) {
    let n = batches * BATCH;
    let x = Tensor::randn([n, SIZES[0]], (Kind::Float, Device::Cpu));
    let y = Tensor::randint(SIZES[SIZES.len() - 1], [n], (Kind::Int64, Device::Cpu));
    (x, y)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    NoHook,
    Written,
    Synced,
    Queued,
    WrittenBf16,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::NoHook => "no hook",
            Mode::Written => "hook, Durability::Written",
            Mode::Synced => "hook, Durability::Synced",
            Mode::Queued => "hook, Durability::Queued",
            Mode::WrittenBf16 => "hook, Written, bfloat16 storage",
        }
    }

    /// The mode's part of the RESULT names.
    fn key(self) -> &'static str {
        match self {
            Mode::NoHook => "nohook",
            Mode::Written => "written",
            Mode::Synced => "synced",
            Mode::Queued => "queued",
            Mode::WrittenBf16 => "written_bf16",
        }
    }
}

fn epoch_overhead(tmp: &Path, results: &mut Results) -> Trainer {
    // Calibrate the number of batches so one epoch takes >= TARGET_EPOCH
    // (fastest of several steps, so a busy machine does not shorten epochs).
    let mut t = Trainer::new(6);
    for b in 0..2 {
        t.step(b); // warm-up
    }
    let per_step = (2..6)
        .map(|b| {
            let t0 = Instant::now();
            t.step(b);
            t0.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min);
    let mut batches = (TARGET_EPOCH.as_secs_f64() / per_step).ceil().max(4.0) as i64;
    let mut t = Trainer::new(batches);
    // Warm-up epochs; grow the epoch while it is shorter than the target
    // (the step timing above can be inflated by other load on the machine).
    for _ in 0..3 {
        let t0 = Instant::now();
        t.epoch();
        let secs = t0.elapsed().as_secs_f64();
        if secs >= TARGET_EPOCH.as_secs_f64() * 0.9 {
            break;
        }
        batches = (batches as f64 * TARGET_EPOCH.as_secs_f64() / secs).ceil() as i64;
        let (x, y) = synthetic(batches);
        (t.x, t.y, t.batches) = (x, y, batches);
    }
    println!(
        "(a) epoch time: MLP {:?} = {} parameters ({:.1} MB float32), {} batches of {} synthetic samples per epoch",
        SIZES,
        t.params(),
        t.params() as f64 * 4.0 / 1e6,
        t.batches,
        BATCH
    );

    let mut written = Recorder::builder(tmp.join("epoch-written"))
        .build(&t.vs)
        .unwrap();
    let mut synced = Recorder::builder(tmp.join("epoch-synced"))
        .durability(Durability::Synced)
        .build(&t.vs)
        .unwrap();
    let mut queued = Recorder::builder(tmp.join("epoch-queued"))
        .durability(Durability::Queued)
        .build(&t.vs)
        .unwrap();
    queued.flush().unwrap();
    let mut bf16 = Recorder::builder(tmp.join("epoch-bf16"))
        .storage(StorageDtype::BFloat16)
        .build(&t.vs)
        .unwrap();
    let modes = [
        Mode::NoHook,
        Mode::Written,
        Mode::Synced,
        Mode::Queued,
        Mode::WrittenBf16,
    ];
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); modes.len()];
    // Seconds the training thread spent inside the hook call.
    let mut blocked: Vec<Vec<f64>> = vec![Vec::new(); modes.len()];
    let mut epoch = 0u64;
    for round in 0..ROUNDS {
        for j in 0..modes.len() {
            let m = (round + j) % modes.len(); // rotate the order every round
            epoch += 1;
            let t0 = Instant::now();
            t.epoch();
            let c0 = Instant::now();
            match modes[m] {
                Mode::NoHook => {}
                Mode::Written => written.on_epoch_end(epoch, &[("loss", 0.0)]).unwrap(),
                Mode::Synced => synced.on_epoch_end(epoch, &[("loss", 0.0)]).unwrap(),
                Mode::Queued => queued.on_epoch_end(epoch, &[("loss", 0.0)]).unwrap(),
                Mode::WrittenBf16 => bf16.on_epoch_end(epoch, &[("loss", 0.0)]).unwrap(),
            }
            blocked[m].push(c0.elapsed().as_secs_f64());
            times[m].push(t0.elapsed().as_secs_f64());
        }
    }
    let summaries = [
        None,
        Some(written.finish().unwrap()),
        Some(synced.finish().unwrap()),
        Some(queued.finish().unwrap()),
        Some(bf16.finish().unwrap()),
    ];
    std::fs::remove_dir_all(tmp.join("epoch-written")).unwrap();
    std::fs::remove_dir_all(tmp.join("epoch-synced")).unwrap();
    std::fs::remove_dir_all(tmp.join("epoch-queued")).unwrap();
    std::fs::remove_dir_all(tmp.join("epoch-bf16")).unwrap();
    // Paired by round: each hooked epoch against the no-hook epoch of the
    // same round (the machine's drift cancels; what is left is the noise).
    let paired: Vec<Vec<f64>> = times
        .iter()
        .map(|v| v.iter().zip(&times[0]).map(|(h, b)| h - b).collect())
        .collect();
    let base = median(&mut times[0].clone());
    let noise = spread_pct(&times[0], base);
    results.add("recorder_epoch_noise_pct", noise, "%");
    println!(
        "  {:<28} {:>10} {:>8} {:>8} {:>17} {:>9} {:>11}",
        "mode", "median (s)", "min (s)", "max (s)", "paired (± 2 SE)", "in call", "writer CPU"
    );
    for (k, m) in modes.iter().enumerate() {
        let mut v = times[k].clone();
        let med = median(&mut v);
        let (lo, hi) = (v[0], v[v.len() - 1]);
        if *m == Mode::NoHook {
            results.add("recorder_epoch_nohook_s", med, "s");
            println!("  {:<28} {med:>10.3} {lo:>8.3} {hi:>8.3}", m.name());
            continue;
        }
        let key = m.key();
        let (mean, se) = mean_se(&paired[k]);
        let over = (med - base) / base * 100.0;
        let call = median(&mut blocked[k].clone()) / base * 100.0;
        let s = summaries[k].as_ref().unwrap();
        // The writer's CPU per snapshot, as a share of a no-hook epoch: the
        // most it can take from the training threads when all cores are busy.
        let cpu = s
            .writer_cpu_seconds
            .map(|c| c / s.snapshots.max(1) as f64 / base * 100.0);
        results.add(format!("recorder_epoch_overhead_{key}_pct"), over, "%");
        results.add(format!("recorder_overhead_{key}_pct"), over, "%");
        results.add(
            format!("recorder_overhead_{key}_paired_pct"),
            mean / base * 100.0,
            "%",
        );
        results.add(format!("recorder_blocked_{key}_pct"), call, "%");
        if let Some(cpu) = cpu {
            results.add(format!("recorder_writer_cpu_{key}_pct"), cpu, "%");
        }
        println!(
            "  {:<28} {med:>10.3} {lo:>8.3} {hi:>8.3} {:>+8.1}% ± {:>4.1}% {call:>8.2}% {:>10}",
            m.name(),
            mean / base * 100.0,
            2.0 * se / base * 100.0,
            cpu.map_or("-".into(), |c| format!("{c:.2}%")),
        );
    }
    println!(
        "  ({ROUNDS} interleaved rounds; no-hook epochs spread {noise:.1}% (max - min over \
         median); paired = mean of (hooked - no-hook) within a round; in call = median time \
         the training thread spent in on_epoch_end; writer CPU = the writer thread's CPU time \
         per snapshot; all as % of the no-hook median)"
    );
    t
}

/// CPU seconds (user + system) of the child processes waited for so far.
fn children_cpu_seconds() -> f64 {
    // SAFETY: an all-zero rusage is valid; getrusage only writes into it.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is valid and writable for the call.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut u) };
    let s = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    s(u.ru_utime) + s(u.ru_stime)
}

/// (d) The default recorder with `landscape watch` following the run: the
/// time the training thread spends in the call with and without the
/// watcher (blocks of epochs, not interleaved: the watcher's work spills
/// into the next epoch), and the watcher's CPU per snapshot.
fn watched(tmp: &Path, results: &mut Results, t: &mut Trainer) {
    let Some(exe) = option_env!("CARGO_BIN_EXE_landscape") else {
        println!("(d) with a watcher: not run (build the bench with --features cli)");
        return;
    };
    println!();
    println!("(d) Durability::Written without, then with `landscape watch` on the run ({WATCH_EPOCHS} epochs each)");
    let mut block = |name: &str, watch: bool| -> (f64, f64, Option<f64>) {
        let dir = tmp.join(format!("watch-{name}"));
        let mut rec = Recorder::builder(&dir).build(&t.vs).unwrap();
        let mut child = watch.then(|| {
            std::process::Command::new(exe)
                .args(["watch", dir.to_str().unwrap(), "--interval", "0.5"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap()
        });
        let (mut epochs, mut calls) = (Vec::new(), Vec::new());
        for epoch in 1..=WATCH_EPOCHS as u64 {
            let t0 = Instant::now();
            t.epoch();
            let c0 = Instant::now();
            rec.on_epoch_end(epoch, &[("loss", 0.0)]).unwrap();
            calls.push(c0.elapsed().as_secs_f64());
            epochs.push(t0.elapsed().as_secs_f64());
        }
        rec.finish().unwrap();
        let cpu = child.as_mut().map(|c| {
            let before = children_cpu_seconds();
            // The watcher stops once it has seen the finished run.
            let _ = c.wait();
            children_cpu_seconds() - before
        });
        std::fs::remove_dir_all(&dir).unwrap();
        (median(&mut epochs), median(&mut calls), cpu)
    };
    let (e0, c0, _) = block("off", false);
    let (e1, c1, cpu) = block("on", true);
    println!("  {:<24} {:>12} {:>12}", "", "median epoch", "in the call");
    for (name, e, c) in [("without watcher", e0, c0), ("with watcher", e1, c1)] {
        println!("  {name:<24} {e:>10.3} s {:>9.1} ms", c * 1e3);
    }
    results.add("recorder_watch_epoch_pct", (e1 - e0) / e0 * 100.0, "%");
    results.add("recorder_watch_blocked_ms", c1 * 1e3, "ms");
    results.add("recorder_nowatch_blocked_ms", c0 * 1e3, "ms");
    if let Some(cpu) = cpu {
        // The watcher saw the snapshots 0..=WATCH_EPOCHS.
        let per = cpu / (WATCH_EPOCHS + 1) as f64;
        println!(
            "  the watcher used {cpu:.2} s of CPU in all (a PCA refit and a report per new snapshot): {per:.3} s per snapshot ({:.1} % of an epoch)",
            per / e0 * 100.0
        );
        results.add("recorder_watch_cpu_per_snapshot_s", per, "s");
    }
}

/// (max − min) / median of `v`, in percent.
fn spread_pct(v: &[f64], median: f64) -> f64 {
    let (lo, hi) = v
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| {
            (lo.min(x), hi.max(x))
        });
    (hi - lo) / median * 100.0
}

/// Mean and standard error of the mean.
fn mean_se(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    (mean, (var / n).sqrt())
}

/// Flushes dirty pages of earlier sections so they do not slow the next one.
fn settle_disk() {
    let _ = std::process::Command::new("sync").status();
}

fn throughput(tmp: &Path, results: &mut Results) {
    tch::manual_seed(1);
    let vs = nn::VarStore::new(Device::Cpu);
    let _model = Mlp::new(&vs.root(), &SIZES);
    let bytes_per: u64 = vs.variables().values().map(|t| t.numel() as u64 * 4).sum();
    println!();
    println!(
        "(b) sustained snapshot throughput: {THROUGHPUT_SNAPSHOTS} snapshots x {:.1} MB back-to-back via Recorder::snapshot, then finish(); {THROUGHPUT_REPS} interleaved repetitions",
        bytes_per as f64 / 1e6
    );
    let configs = [
        (Durability::Written, true),
        (Durability::Written, false),
        (Durability::Synced, true),
        (Durability::Queued, true),
        (Durability::Queued, false),
    ];
    let mut secs: Vec<Vec<f64>> = vec![Vec::new(); configs.len()];
    for rep in 0..THROUGHPUT_REPS {
        for j in 0..configs.len() {
            let c = (rep + j) % configs.len();
            let (durability, fsync) = configs[c];
            let dir = tmp.join(format!("tp-{durability:?}-{fsync}-{rep}"));
            let mut rec = Recorder::builder(&dir)
                .durability(durability)
                .fsync(fsync)
                .build(&vs)
                .unwrap();
            settle_disk();
            let t0 = Instant::now();
            for i in 0..THROUGHPUT_SNAPSHOTS {
                rec.snapshot(i as u64 + 1).unwrap();
            }
            let summary = rec.finish().unwrap();
            secs[c].push(t0.elapsed().as_secs_f64());
            assert_eq!(summary.snapshots, THROUGHPUT_SNAPSHOTS as u64 + 1);
            // θ₀ was written before the clock started.
            assert_eq!(
                summary.bytes - bytes_per,
                bytes_per * THROUGHPUT_SNAPSHOTS as u64
            );
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }
    let bytes = (bytes_per * THROUGHPUT_SNAPSHOTS as u64) as f64;
    println!(
        "  {:<28} {:>7} {:>12} {:>10} {:>10} {:>14}",
        "mode", "fsync", "median (s)", "GB/s", "GB/s range", "per snap (ms)"
    );
    for ((durability, fsync), v) in configs.iter().zip(secs.iter_mut()) {
        let med = median(v);
        if (*durability, *fsync) == (Durability::Written, true) {
            results.add("recorder_write_gbps", bytes / med / 1e9, "GB/s");
        }
        results.add(
            format!(
                "recorder_throughput_{}_{}_gbps",
                format!("{durability:?}").to_lowercase(),
                if *fsync { "fsync" } else { "nofsync" }
            ),
            bytes / med / 1e9,
            "GB/s",
        );
        println!(
            "  {:<28} {:>7} {:>12.3} {:>10.3} {:>10} {:>14.1}",
            format!("Durability::{durability:?}"),
            if *fsync { "on" } else { "off" },
            med,
            bytes / med / 1e9,
            format!(
                "{:.2}-{:.2}",
                bytes / v[v.len() - 1] / 1e9,
                bytes / v[0] / 1e9
            ),
            med * 1e3 / THROUGHPUT_SNAPSHOTS as f64
        );
    }
}

/// Parameters of the synthetic large model: 16 tensors of 2^26 float32
/// (1.07e9 parameters, 4.3 GB).
const LARGE_TENSORS: i64 = 16;
const LARGE_NUMEL: i64 = 1 << 26;

/// The child of the large-model section (its own process, so VmHWM is its
/// own): builds the model, measures one plain write of its bytes into a
/// file (the page-cache write bandwidth, for scale), then records θ₀ and one
/// snapshot with the default recorder, and prints a CHILD_1B line.
fn child_large(dir: &Path) {
    use std::io::Write;
    let vs = nn::VarStore::new(Device::Cpu);
    let root = vs.root();
    let tensors: Vec<Tensor> = (0..LARGE_TENSORS)
        .map(|i| root.var(&format!("w{i:02}"), &[LARGE_NUMEL], nn::Init::Const(0.25)))
        .collect();
    let bytes = (LARGE_TENSORS * LARGE_NUMEL * 4) as f64;
    let model_mib = peak_rss_mib().unwrap_or(0.0);
    // One plain write of the same bytes from the tensors' memory.
    let raw = dir.join("raw.bin");
    let t0 = Instant::now();
    {
        let mut f = std::fs::File::create(&raw).unwrap();
        for t in &tensors {
            let n = t.numel() * 4;
            // SAFETY: a contiguous CPU float32 tensor of n bytes, only read.
            let b = unsafe { std::slice::from_raw_parts(t.data_ptr() as *const u8, n) };
            f.write_all(b).unwrap();
        }
    }
    let raw_s = t0.elapsed().as_secs_f64();
    std::fs::remove_file(&raw).unwrap();
    settle_disk();
    let run = dir.join("run");
    let t0 = Instant::now();
    let mut rec = Recorder::builder(&run).fsync(false).build(&vs).unwrap();
    let theta0_s = t0.elapsed().as_secs_f64();
    settle_disk();
    let t0 = Instant::now();
    rec.on_epoch_end(1, &[("loss", 1.0)]).unwrap();
    let snap_s = t0.elapsed().as_secs_f64();
    rec.finish().unwrap();
    let peak = peak_rss_mib().unwrap_or(0.0);
    std::fs::remove_dir_all(&run).unwrap();
    println!(
        "CHILD_1B bytes={bytes} model_mib={model_mib} raw_s={raw_s} theta0_s={theta0_s} snap_s={snap_s} peak_mib={peak}"
    );
}

/// (c): the large model in a child process, when LANDSCAPE_BENCH_1B=1.
fn large(tmp: &Path, results: &mut Results) {
    if std::env::var("LANDSCAPE_BENCH_1B").as_deref() != Ok("1") {
        println!("(c) 1e9-parameter model: not run (set LANDSCAPE_BENCH_1B=1; needs ~5 GB of memory and 9 GB of disk)");
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new(exe)
        .arg("--child-1b")
        .arg(tmp)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let Some(line) = stdout.lines().find(|l| l.starts_with("CHILD_1B ")) else {
        println!(
            "(c) 1e9-parameter model: the child failed: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        return;
    };
    let field = |k: &str| -> f64 {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(k)?.strip_prefix('='))
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN)
    };
    let (bytes, model, raw, snap, peak) = (
        field("bytes"),
        field("model_mib"),
        field("raw_s"),
        field("snap_s"),
        field("peak_mib"),
    );
    println!();
    println!(
        "(c) 1e9-parameter model ({:.2} GB float32, 16 tensors), default durability (Written), fsync off (page cache):",
        bytes / 1e9
    );
    println!(
        "  plain write of the same bytes {:.2} s = {:.2} GB/s | snapshot {:.2} s = {:.2} GB/s ({:.0} % of the plain write) | θ₀ {:.2} s",
        raw,
        bytes / raw / 1e9,
        snap,
        bytes / snap / 1e9,
        100.0 * raw / snap,
        field("theta0_s")
    );
    println!(
        "  peak RSS {peak:.0} MiB = the model ({model:.0} MiB) + {:.0} MiB",
        peak - model
    );
    results.add("recorder_1b_peak_rss_mib", peak, "MiB");
    results.add("recorder_1b_over_model_mib", peak - model, "MiB");
    results.add("recorder_1b_write_gbps", bytes / snap / 1e9, "GB/s");
    results.add("recorder_1b_vs_plain_write_pct", 100.0 * raw / snap, "%");
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(pos) = args.iter().position(|a| a == "--child-1b") {
        child_large(Path::new(&args[pos + 1]));
        return;
    }
    // `cargo bench` passes --bench; `cargo test --benches` runs this with
    // no such flag: then only a quick smoke run makes sense.
    if !std::env::args().any(|a| a == "--bench") {
        println!("recorder bench: run with `cargo bench --bench recorder`");
        return;
    }
    tch::set_num_threads(2);
    let started = Instant::now();
    let load_start = load_average();
    let tmp = tempfile::Builder::new()
        .prefix("tch-landscape-bench-")
        .tempdir()
        .unwrap();
    println!(
        "tch-landscape recorder benchmark (CPU, {} libtorch threads), files in {}",
        tch::get_num_threads(),
        tmp.path().display()
    );
    let mut results = Results::default();
    let mut trainer = epoch_overhead(tmp.path(), &mut results);
    settle_disk();
    watched(tmp.path(), &mut results, &mut trainer);
    drop(trainer);
    settle_disk();
    throughput(tmp.path(), &mut results);
    settle_disk();
    large(tmp.path(), &mut results);
    println!();
    match peak_rss_mib() {
        Some(m) => {
            println!("peak RSS (VmHWM): {m:.0} MiB");
            results.add("recorder_peak_rss_mib", m, "MiB");
        }
        None => println!("peak RSS: unavailable (no /proc/self/status)"),
    }
    println!(
        "total bench time: {:.1} s; 1-min load average {} at start, {} at end ({} CPUs)",
        started.elapsed().as_secs_f64(),
        load_start,
        load_average(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    results.print();
}
