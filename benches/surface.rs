//! Benchmark of loss-surface evaluation on workloads W1 and W2
//! (`../shared/BENCHMARKS.md`): points per second, and the overhead over
//! calling the same evaluator directly (the raw forward passes of the same
//! data), for one replica × 2 intra-op threads and 2 replicas × 1 thread.
//!
//! Run: `cargo bench --bench surface` (W2 can be skipped with
//! `LANDSCAPE_BENCH_SKIP_W2=1`).

use std::time::Instant;

use tch::nn;
use tch::Device;
use tch_landscape::analysis::directions::Directions;
use tch_landscape::analysis::evaluator::Evaluator;
use tch_landscape::analysis::params::ParamSet;
use tch_landscape::analysis::surface::Surface;

#[path = "common/workloads.rs"]
mod workloads;

use workloads::{w1, w2, Workload};

#[path = "common/results.rs"]
mod results;
use results::Results;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn time_raw(eval: &mut dyn Evaluator, n: usize) -> f64 {
    let t0 = Instant::now();
    for _ in 0..n {
        eval.evaluate().unwrap();
    }
    t0.elapsed().as_secs_f64() / n as f64
}

fn run(w: &Workload, results: &mut Results) {
    let tmp = tempfile::tempdir().unwrap();
    let (vs, mut eval) = (w.make)();
    let dirs = Directions::random(&ParamSet::from_varstore(&vs).unwrap())
        .seed(123)
        .build()
        .unwrap();
    let points = w.n * w.n;
    tch::set_num_threads(2);
    eval.evaluate().unwrap(); // warm-up, not timed
    let raw2 = median(
        (0..w.reps)
            .map(|_| time_raw(eval.as_mut(), 20.min(points)))
            .collect(),
    );
    let mut one = Vec::new();
    for r in 0..w.reps {
        let out = tmp.path().join(format!("one-{r}"));
        let t0 = Instant::now();
        Surface::builder(&dirs)
            .grid(-1.0..=1.0, w.n, -1.0..=1.0, w.n)
            .build()
            .unwrap()
            .evaluate(&vs, eval.as_mut(), &out)
            .unwrap();
        one.push(t0.elapsed().as_secs_f64() / points as f64);
    }
    tch::set_num_threads(1);
    let raw1 = median(
        (0..w.reps)
            .map(|_| time_raw(eval.as_mut(), 20.min(points)))
            .collect(),
    );
    let mut two = Vec::new();
    for r in 0..w.reps {
        let out = tmp.path().join(format!("two-{r}"));
        let t0 = Instant::now();
        Surface::builder(&dirs)
            .grid(-1.0..=1.0, w.n, -1.0..=1.0, w.n)
            .build()
            .unwrap()
            .evaluate_parallel(2, || Ok((w.make)()), &out)
            .unwrap();
        two.push(t0.elapsed().as_secs_f64() / points as f64);
    }
    tch::set_num_threads(2);
    let (one, two) = (median(one), median(two));
    // "W1 mlp-digits" → "surface_w1_..."
    let key = w
        .name
        .split_whitespace()
        .next()
        .unwrap_or("w")
        .to_lowercase();
    let mut add = |what: &str, value: f64, unit: &'static str| {
        results.add(format!("surface_{key}_{what}"), value, unit)
    };
    add("raw_2threads_ms_per_point", raw2 * 1e3, "ms");
    add("1x2_ms_per_point", one * 1e3, "ms");
    add("1x2_overhead_pct", 100.0 * (one / raw2 - 1.0), "%");
    add("1x2_vs_reference_x", w.reference_s / one, "x");
    add("raw_1thread_ms_per_point", raw1 * 1e3, "ms");
    add("2x1_ms_per_point", two * 1e3, "ms");
    add("2x1_vs_reference_x", w.reference_s / two, "x");
    // The default layout (replicas × 1 thread when cores allow) and the
    // raw forward rate it is measured against (1 thread, both replicas).
    add("points_per_s", 1.0 / two, "1/s");
    add("raw_points_per_s", 2.0 / raw1, "1/s");
    add("vs_raw_pct", 100.0 * (raw1 / 2.0) / two, "%");
    println!(
        "{} ({}×{} grid, {} reps, median):",
        w.name, w.n, w.n, w.reps
    );
    println!(
        "  raw evaluation, 2 threads          {:>9.2} ms/point",
        raw2 * 1e3
    );
    println!(
        "  surface, 1 replica × 2 threads     {:>9.2} ms/point  {:>8.1} points/s  overhead {:>+6.1} %  vs reference {:.2}×",
        one * 1e3,
        1.0 / one,
        100.0 * (one / raw2 - 1.0),
        w.reference_s / one
    );
    println!(
        "  raw evaluation, 1 thread           {:>9.2} ms/point (one replica alone)",
        raw1 * 1e3
    );
    println!(
        "  surface, 2 replicas × 1 thread     {:>9.2} ms/point  {:>8.1} points/s  ({:.2}× the 1-replica rate, vs reference {:.2}×)",
        two * 1e3,
        1.0 / two,
        one / two,
        w.reference_s / two
    );
}

fn main() {
    let _ = nn::VarStore::new(Device::Cpu);
    let mut results = Results::default();
    run(&w1(), &mut results);
    if std::env::var_os("LANDSCAPE_BENCH_SKIP_W2").is_none() {
        run(&w2(), &mut results);
    }
    results.print();
}
