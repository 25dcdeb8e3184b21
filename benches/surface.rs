//! Benchmark of loss-surface evaluation on workloads W1 and W2
//! (`../shared/BENCHMARKS.md`): points per second, and the overhead over
//! calling the same evaluator directly (the raw forward passes of the same
//! data), for one replica × 2 intra-op threads and 2 replicas × 1 thread.
//!
//! Run: `cargo bench --bench surface` (W2 can be skipped with
//! `LANDSCAPE_BENCH_SKIP_W2=1`).

use std::time::Instant;

use tch::nn::{self, VarStore};
use tch::{Device, Kind, Tensor};
use tch_landscape::analysis::directions::{Directions, Ignore, Normalization};
use tch_landscape::analysis::evaluator::{ClassifierEvaluator, Evaluator};
use tch_landscape::analysis::params::ParamSet;
use tch_landscape::analysis::surface::Surface;
use tch_landscape::data::digits::Digits;
use tch_landscape::demo::{train_digits, TrainConfig};
use tch_landscape::models::{CifarResNet, Mlp, W1_SIZES};
use tch_landscape::Run;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

struct Workload {
    name: &'static str,
    /// Builds (VarStore, evaluator) at the centre.
    make: Box<dyn Fn() -> (VarStore, Box<dyn Evaluator>) + Sync>,
    n: usize,
    reps: usize,
    reference_s: f64,
}

fn time_raw(eval: &mut dyn Evaluator, n: usize) -> f64 {
    let t0 = Instant::now();
    for _ in 0..n {
        eval.evaluate().unwrap();
    }
    t0.elapsed().as_secs_f64() / n as f64
}

fn run(w: &Workload) {
    let tmp = tempfile::tempdir().unwrap();
    let (vs, mut eval) = (w.make)();
    let dirs = Directions::random_plane(
        &ParamSet::from_varstore(&vs).unwrap(),
        123,
        Normalization::Filter,
        Ignore::BiasAndBn,
    )
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
        Surface::new(&dirs)
            .grid(-1.0..=1.0, w.n, -1.0..=1.0, w.n)
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
        Surface::new(&dirs)
            .grid(-1.0..=1.0, w.n, -1.0..=1.0, w.n)
            .evaluate_parallel(2, || Ok((w.make)()), &out)
            .unwrap();
        two.push(t0.elapsed().as_secs_f64() / points as f64);
    }
    tch::set_num_threads(2);
    let (one, two) = (median(one), median(two));
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

fn w1() -> Workload {
    // Train W1's run once (10 epochs, SGD 0.1 momentum 0.9, batch 64, seed 0).
    let dir = tempfile::tempdir().unwrap().keep();
    let data = Digits::load().unwrap();
    let cfg = TrainConfig {
        epochs: 10,
        lr_drops: vec![],
        ..TrainConfig::default()
    };
    let (loss, acc) = train_digits(&dir.join("w1"), &data, &cfg).unwrap();
    println!("W1 training: final full-data loss {loss:.4}, accuracy {acc:.1} %");
    let run = Run::open(dir.join("w1")).unwrap();
    let last = run.len() - 1;
    let centre: Vec<(String, Vec<f32>)> = run
        .tensors(last)
        .unwrap()
        .into_iter()
        .map(|(n, t)| (n, Vec::<f32>::try_from(t.flatten(0, -1)).unwrap()))
        .collect();
    Workload {
        name: "W1 mlp-digits",
        make: Box::new(move || {
            let vs = VarStore::new(Device::Cpu);
            let model = Mlp::new(&vs.root(), &W1_SIZES);
            tch::no_grad(|| {
                let vars = vs.variables();
                for (n, v) in &centre {
                    let mut t = vars[n].shallow_clone();
                    t.copy_(&Tensor::from_slice(v).reshape(t.size()));
                }
            });
            let data = Digits::load().unwrap();
            let eval = ClassifierEvaluator::owning(model)
                .split("train", &data.x, &data.y)
                .unwrap()
                .batch(128)
                .unwrap();
            (vs, Box::new(eval) as Box<dyn Evaluator>)
        }),
        n: 21,
        reps: 3,
        reference_s: 0.0171,
    }
}

fn w2() -> Workload {
    Workload {
        name: "W2 resnet20-synth",
        make: Box::new(|| {
            tch::manual_seed(0);
            let vs = VarStore::new(Device::Cpu);
            let model = CifarResNet::resnet20(&vs.root());
            let x = Tensor::randn([512, 3, 32, 32], (Kind::Float, Device::Cpu));
            let y = Tensor::randint(10, [512], (Kind::Int64, Device::Cpu));
            let eval = ClassifierEvaluator::owning(model)
                .split("train", &x, &y)
                .unwrap()
                .batch(128)
                .unwrap();
            (vs, Box::new(eval) as Box<dyn Evaluator>)
        }),
        n: 11,
        reps: 1,
        reference_s: 0.547,
    }
}

fn main() {
    let _ = nn::VarStore::new(Device::Cpu);
    run(&w1());
    if std::env::var_os("LANDSCAPE_BENCH_SKIP_W2").is_none() {
        run(&w2());
    }
}
