//! A user's program: a model of its own, the recording hook, a surface.
use tch::nn::{self, Module, OptimizerConfig};
use tch_landscape::analysis::{directions::Directions, evaluator::ClassifierEvaluator};
use tch_landscape::analysis::{params::ParamSet, surface::Surface};
use tch_landscape::Recorder;

fn main() -> tch_landscape::Result<()> {
    let dir = std::env::args().nth(1).expect("usage: downstream RUN_DIR");
    let vs = nn::VarStore::new(tch::Device::Cpu);
    let model = nn::linear(vs.root() / "fc", 3, 3, Default::default());
    let x = tch::Tensor::randn([32, 3], tch::kind::FLOAT_CPU);
    let y = x.argmax(1, false);
    let mut opt = nn::Sgd::default().build(&vs, 0.1).expect("optimizer");
    let mut rec = Recorder::builder(&dir).build(&vs)?;
    for epoch in 1..=3 {
        opt.backward_step(&model.forward(&x).cross_entropy_for_logits(&y));
        rec.on_epoch_end(epoch, &[])?;
    }
    rec.finish()?;
    let dirs = Directions::random(&ParamSet::from_varstore(&vs)?)
        .seed(1)
        .build()?;
    let mut eval = ClassifierEvaluator::new(&model).split("train", &x, &y)?;
    let surface = Surface::builder(&dirs)
        .grid(-1.0..=1.0, 3, -1.0..=1.0, 3)
        .build()?;
    let result = surface.evaluate(&vs, &mut eval, format!("{dir}/surfaces/filter-2d"))?;
    println!("downstream ok: {} points", result.points.len());
    Ok(())
}
