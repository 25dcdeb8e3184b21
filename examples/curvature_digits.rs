//! Curvature of the demo MLP on the digits data (Figure 7 of Li et al. 2018).
//!
//! Trains W1's MLP with the demo's settings (20 epochs, SGD 0.1 momentum 0.9,
//! batch 64, seed 0, learning-rate drop after epoch 12), then at the trained
//! model prints λmin, λmax, |λmin/λmax| of the Hessian of the full-data mean
//! loss with respect to the weight matrices and Hutchinson's trace ± its
//! standard error, and computes a 7 × 7 map of |λmin/λmax| on [-0.5, 0.5]²
//! along two filter-normalized random directions (seed 123, biases fixed).
//!
//! Run: `cargo run --release --example curvature_digits [OUT_DIR]`
//! (default `runs/curvature-digits`; about a minute and a half on 2 cores:
//! the map runs two model replicas with one thread each).
//! Expect λmax of a few tenths, a small negative λmin (|λmin/λmax| of about
//! 0.01 at the minimum) and ratios that grow away from the centre; the map is
//! resumable: run it again and it finds its points on disk.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use tch::nn::VarStore;
use tch::Device;
use tch_landscape::analysis::directions::Directions;
use tch_landscape::analysis::hessian::{
    Curvature, Hessian, Hutchinson, Lanczos, Objective, SupervisedObjective,
};
use tch_landscape::analysis::params::ParamSet;
use tch_landscape::analysis::surface::Surface;
use tch_landscape::data::digits::Digits;
use tch_landscape::demo::{train_digits, TrainConfig};
use tch_landscape::models::{Mlp, W1_SIZES};
use tch_landscape::tensor::Selection;
use tch_landscape::Run;

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    tch::set_num_threads(2);
    let out = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("runs/curvature-digits"));
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let t0 = Instant::now();

    let data = Digits::load()?;
    let run_dir = out.join("mlp-digits");
    let (loss, acc) =
        train_digits(&run_dir, &data, &TrainConfig::default()).context("training the demo MLP")?;
    println!(
        "trained the demo MLP: full-data loss {loss:.4}, accuracy {acc:.1} %  ({:.1} s)",
        t0.elapsed().as_secs_f64()
    );

    let run = Run::open(&run_dir)?;
    let vs = VarStore::new(Device::Cpu);
    let model = Mlp::new(&vs.root(), &W1_SIZES);
    run.load_into(run.len() - 1, &vs)?;

    // All 1797 samples in one batch: the gradient graph is reused between HVPs.
    let objective = || SupervisedObjective::new(&model, &data.x, &data.y)?.batch(1797);
    let mut h = Hessian::at(&vs, objective()?, &Selection::Weights)?;
    let t1 = Instant::now();
    let s = h.eigenvalues(&Lanczos::default())?;
    println!(
        "Hessian w.r.t. {} weight tensors ({} values), Lanczos tol {}: {} HVPs, {:.1} s",
        h.params().len(),
        h.dim(),
        s.options.tol(),
        s.hvps,
        t1.elapsed().as_secs_f64()
    );
    println!("  λmax          {:>10.5}", s.lambda_max);
    println!("  λmin          {:>10.5}", s.lambda_min);
    println!("  |λmin/λmax|   {:>10.5}", s.abs_ratio());
    let tr = h.trace(&Hutchinson::builder().probes(100).seed(0).build()?)?;
    println!(
        "  trace         {:>10.4} ± {:.4} (Hutchinson, {} probes, standard error)",
        tr.estimate, tr.std_error, tr.probes
    );

    let dirs = Directions::random(&ParamSet::from_varstore(&vs)?)
        .seed(123)
        .build()?
        .with_description("demo MLP after 20 epochs");
    let map_dir = out.join("curvature");
    let t2 = Instant::now();
    // Points are independent: two replicas of the model with one intra-op
    // thread each keep both cores busy without the threads waiting on each
    // other inside every small kernel.
    tch::set_num_threads(1);
    let final_snapshot = run.len() - 1;
    let surface = Surface::builder(&dirs)
        .grid(-0.5..=0.5, 7, -0.5..=0.5, 7)
        .on_progress(|done, total| {
            eprint!("\rcurvature map: {done}/{total} points");
            let _ = std::io::stderr().flush();
        })
        .build()?;
    let map = Curvature::builder(surface)
        .selection(Selection::Weights)
        // The reference's tolerance: enough for a ratio map, and quick.
        .lanczos(Lanczos::builder().tol(1e-2).build()?)
        .build()?
        .evaluate_parallel(
            2,
            || {
                // Each replica builds its own model and data on its thread
                // (tensors cannot be shared between threads).
                let vs = VarStore::new(Device::Cpu);
                let model = Mlp::new(&vs.root(), &W1_SIZES);
                Run::open(&run_dir)?.load_into(final_snapshot, &vs)?;
                let data = Digits::load()?;
                let objective: Box<dyn Objective> =
                    Box::new(SupervisedObjective::owning(model, &data.x, &data.y)?.batch(1797)?);
                Ok((vs, objective))
            },
            &map_dir,
        )?;
    eprintln!();
    println!(
        "|λmin/λmax| on a 7×7 grid over [-0.5, 0.5]² (filter-normalized random directions, seed 123; {} points computed in {:.1} s):",
        map.computed,
        t2.elapsed().as_secs_f64()
    );
    let grid = *map.grid();
    let ratio = map.abs_ratio();
    print!("   β \\ α ");
    for x in grid.x.values() {
        print!("{x:>7.2}");
    }
    println!();
    for iy in (0..grid.ny()).rev() {
        print!("  {:>6.2} ", grid.y.map_or(0.0, |a| a.value(iy)));
        for ix in 0..grid.nx() {
            print!("{:>7.3}", ratio[iy * grid.nx() + ix]);
        }
        println!();
    }
    let c = map.centre().context("the grid has no centre point")?;
    println!(
        "  centre: λmin {:.5}, λmax {:.5}, |λmin/λmax| {:.4}",
        c.lambda_min, c.lambda_max, c.abs_ratio
    );
    println!(
        "wrote {}",
        map_dir
            .join(tch_landscape::analysis::hessian::CURVATURE_FILE)
            .display()
    );
    println!("total {:.1} s", t0.elapsed().as_secs_f64());
    Ok(())
}
