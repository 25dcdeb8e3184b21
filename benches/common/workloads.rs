//! Workloads W1 and W2 of `../shared/BENCHMARKS.md`, shared by the
//! surface benchmark and the MPI benchmark example.

use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};
use tch_landscape::analysis::evaluator::{ClassifierEvaluator, Evaluator};
use tch_landscape::data::digits::Digits;
use tch_landscape::demo::{train_digits, TrainConfig};
use tch_landscape::models::{CifarResNet, Mlp, W1_SIZES};
use tch_landscape::Run;

/// A surface workload: how to build one model replica at the centre.
pub struct Workload {
    pub name: &'static str,
    /// Builds (VarStore, evaluator) at the centre.
    pub make: Box<dyn Fn() -> (VarStore, Box<dyn Evaluator>) + Sync>,
    pub n: usize,
    pub reps: usize,
    pub reference_s: f64,
}

/// Trains W1's run into `dir` (10 epochs, SGD 0.1 momentum 0.9, batch 64,
/// seed 0) unless it is there.
pub fn w1_train(dir: &std::path::Path) {
    if Run::open(dir).is_ok() {
        return;
    }
    let data = Digits::load().unwrap();
    let cfg = TrainConfig {
        epochs: 10,
        lr_drops: vec![],
        ..TrainConfig::default()
    };
    let (loss, acc) = train_digits(dir, &data, &cfg).unwrap();
    println!("W1 training: final full-data loss {loss:.4}, accuracy {acc:.1} %");
}

/// W1 at the final snapshot of the run trained by [`w1_train`] in `dir`.
pub fn w1_at(dir: &std::path::Path) -> Workload {
    let run = Run::open(dir).unwrap();
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

/// W1 with its run trained into a fresh temporary directory.
#[allow(dead_code)]
pub fn w1() -> Workload {
    let dir = tempfile::tempdir().unwrap().keep().join("w1");
    w1_train(&dir);
    w1_at(&dir)
}

/// W2: ResNet-20 (random init, seed 0) on 512 synthetic CIFAR-shaped inputs.
pub fn w2() -> Workload {
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
