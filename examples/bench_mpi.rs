//! Benchmark of surfaces over MPI on workloads W1 and W2
//! (`../shared/BENCHMARKS.md`): points per second of one filter-normalized
//! surface computed by all ranks of the job. Compare process layouts on the
//! same machine, e.g. 1 process × 2 threads against 2 processes × 1 thread:
//!
//! ```text
//! cargo build --release --features mpi --example bench_mpi
//! mpirun --oversubscribe -np 1 target/release/examples/bench_mpi   # 2 threads
//! mpirun --oversubscribe -np 2 target/release/examples/bench_mpi   # 1 thread each
//! ```
//!
//! Threads per rank are the node's cores divided by the ranks on the node
//! ([`Mpi::init`]). W1's run is trained once by rank 0 into
//! `$TMPDIR/landscape-bench-mpi` (or the directory given as argument).
//! `LANDSCAPE_BENCH_SKIP_W2=1` skips W2.

#[path = "../benches/common/workloads.rs"]
mod workloads;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use mpi::collective::CommunicatorCollectives;
use tch_landscape::analysis::directions::Directions;
use tch_landscape::analysis::params::ParamSet;
use tch_landscape::analysis::surface::Surface;
use tch_landscape::distributed::Mpi;
use workloads::Workload;

fn main() -> Result<()> {
    let mpi = Mpi::init()?;
    let base = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("landscape-bench-mpi"));
    let w1_dir = base.join("w1");
    if mpi.is_writer() {
        workloads::w1_train(&w1_dir);
    }
    mpi.world().barrier();
    let mut list = vec![workloads::w1_at(&w1_dir)];
    if std::env::var_os("LANDSCAPE_BENCH_SKIP_W2").is_none() {
        list.push(workloads::w2());
    }
    for w in &list {
        bench(&mpi, w, &base)?;
    }
    if std::env::var_os("LANDSCAPE_BENCH_RESNET56").is_some() && mpi.is_writer() {
        resnet56_estimate()?;
    }
    Ok(())
}

/// The paper's largest surface, estimated from a measured per-point cost:
/// ResNet-56 (CIFAR, 0.86 M parameters) over the 50,000 training images,
/// 51 × 51 = 2,601 points, split evenly over N ranks like this one.
fn resnet56_estimate() -> Result<()> {
    use tch::nn::VarStore;
    use tch::{Device, Kind, Tensor};
    use tch_landscape::analysis::evaluator::{ClassifierEvaluator, Evaluator};
    use tch_landscape::models::CifarResNet;
    tch::manual_seed(0);
    let vs = VarStore::new(Device::Cpu);
    let model = CifarResNet::new(&vs.root(), 9, 1, true, 10);
    let n = 512;
    let x = Tensor::randn([n, 3, 32, 32], (Kind::Float, Device::Cpu));
    let y = Tensor::randint(10, [n], (Kind::Int64, Device::Cpu));
    let mut eval = ClassifierEvaluator::new(&model)
        .split("train", &x, &y)?
        .batch(128)?;
    eval.evaluate()?;
    let mut t = Vec::new();
    for _ in 0..3 {
        let t0 = Instant::now();
        eval.evaluate()?;
        t.push(t0.elapsed().as_secs_f64());
    }
    t.sort_by(f64::total_cmp);
    let per_image = t[1] / n as f64;
    let per_point = per_image * 50_000.0;
    let total = per_point * 2601.0;
    println!(
        "ResNet-56, {} parameters, {} thread(s): {:.2} ms/image forward -> {:.0} s per point on 50,000 images; 51×51 surface: {:.1} h on 1 rank, {:.1} h on 8, {:.2} h on 64",
        vs.trainable_variables().iter().map(|v| v.numel()).sum::<usize>(),
        tch::get_num_threads(),
        per_image * 1e3,
        per_point,
        total / 3600.0,
        total / 8.0 / 3600.0,
        total / 64.0 / 3600.0
    );
    Ok(())
}

fn bench(mpi: &Mpi, w: &Workload, base: &std::path::Path) -> Result<()> {
    let (vs, mut eval) = (w.make)();
    let dirs = Directions::random(&ParamSet::from_varstore(&vs)?)
        .seed(123)
        .build()?;
    eval.evaluate()?; // warm-up, not timed
    let points = w.n * w.n;
    let mut times = Vec::new();
    for rep in 0..w.reps.max(3) {
        let out = base.join(format!("surface-np{}-{rep}", mpi.size()));
        if mpi.is_writer() && out.exists() {
            std::fs::remove_dir_all(&out)?;
        }
        mpi.world().barrier();
        let t0 = Instant::now();
        let surface = Surface::builder(&dirs)
            .grid(-1.0..=1.0, w.n, -1.0..=1.0, w.n)
            .build()?;
        mpi.evaluate_surface(&surface, &vs, eval.as_mut(), &out)?;
        times.push(t0.elapsed().as_secs_f64() / points as f64);
    }
    times.sort_by(f64::total_cmp);
    let t = times[times.len() / 2];
    if mpi.is_writer() {
        println!(
            "{} ({}×{} grid, {} reps, median): {} process(es) × {} thread(s): {:.2} ms/point, {:.1} points/s (reference {:.2}×)",
            w.name,
            w.n,
            w.n,
            times.len(),
            mpi.size(),
            tch::get_num_threads(),
            t * 1e3,
            1.0 / t,
            w.reference_s / t
        );
    }
    Ok(())
}
