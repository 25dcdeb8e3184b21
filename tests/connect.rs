//! Mode connectivity on two minima of the digits MLP trained from different
//! seeds: the trained curve's barrier is far below the straight line's, the
//! ends are the models exactly, and a training resumed after an interruption
//! ends with the same bend.

mod common;

use common::*;
use tch::nn;
use tch_landscape::analysis::connect::{
    evaluate_paths, ConnectSummary, Curve, CurveKind, CurveTrainer, PathRow, TrainSettings,
};
use tch_landscape::analysis::evaluator::{ClassifierEvaluator, Evaluator};
use tch_landscape::analysis::params::ParamSet;
use tch_landscape::data::digits::Digits;
use tch_landscape::models::Mlp;

const SIZES: [i64; 3] = [64, 32, 10];

/// libtorch's random generator is global to the process: the tests train
/// (and `CurveTrainer` seeds it per epoch) one at a time, so each sees the
/// same draws whatever the test threads do.
static TORCH_RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A minimum of the MLP from `seed` (SGD, 60 epochs).
fn minimum(data: &Digits, seed: i64) -> ParamSet {
    tch::manual_seed(seed);
    let vs = nn::VarStore::new(tch::Device::Cpu);
    let model = Mlp::new(&vs.root(), &SIZES);
    let mut opt = sgd(&vs, 0.1);
    for _ in 0..60 {
        for idx in batches(data.len() as i64, 64) {
            step(&model, &mut opt, data, &idx);
        }
    }
    ParamSet::from_varstore(&vs).unwrap()
}

fn settings(epochs: usize) -> TrainSettings {
    TrainSettings {
        epochs,
        lr: 0.05,
        seed: 7,
        ..TrainSettings::default()
    }
}

fn bits(p: &ParamSet) -> Vec<Vec<u32>> {
    p.tensors
        .iter()
        .map(|t| tensor_f32(&t.tensor).iter().map(|x| x.to_bits()).collect())
        .collect()
}

#[test]
fn a_trained_curve_connects_two_minima_below_the_line() {
    let _rng = TORCH_RNG.lock().unwrap_or_else(|p| p.into_inner());
    let digits = Digits::load().unwrap();
    let (train, test) = digits.split_at(1400).unwrap();
    let a = minimum(&train, 1);
    let b = minimum(&train, 2);
    let vs = nn::VarStore::new(tch::Device::Cpu);
    let model = Mlp::new(&vs.root(), &SIZES);
    let mut eval = ClassifierEvaluator::new(&model)
        .split("train", &train.x, &train.y)
        .unwrap()
        .split("test", &test.x, &test.y)
        .unwrap();

    for kind in [CurveKind::Bezier, CurveKind::Polychain] {
        let dir = tempdir();
        let state = dir.path().join("curve-state.arrow");
        let mut curve = Curve::midpoint(kind, a.clone(), b.clone()).unwrap();
        let log = CurveTrainer::new(&vs, &model, &train.x, &train.y)
            .settings(settings(12))
            .train(&mut curve, Some(&state))
            .unwrap();
        assert_eq!(log.len(), 12);
        let rows = evaluate_paths(&curve, &vs, &mut eval, 21).unwrap();
        assert_eq!(rows.len(), 2 * 21 * 2);
        let summary = ConnectSummary {
            curve: kind,
            settings: settings(12),
            points: 21,
            ends: ["a".into(), "b".into()],
            evaluator: eval.describe(),
            barriers: ConnectSummary::barriers_of(&rows),
            log,
            seconds: 0.0,
        };
        let line = summary.barrier("line", "train").unwrap();
        let on_curve = summary.barrier("curve", "train").unwrap();
        println!(
            "{kind}: train barrier line {line:.4}, curve {on_curve:.4}; test line {:.4}, curve {:.4}",
            summary.barrier("line", "test").unwrap(),
            summary.barrier("curve", "test").unwrap()
        );
        assert!(
            line > 0.2,
            "{kind}: the two minima are not separated (line barrier {line})"
        );
        assert!(
            on_curve < 0.25 * line,
            "{kind}: curve barrier {on_curve} is not clearly below the line's {line}"
        );

        // The ends of both paths are the two models, bit for bit.
        for (t, end) in [(0.0, &a), (1.0, &b)] {
            end.copy_into(&vs).unwrap();
            let want = eval.evaluate().unwrap();
            for path in ["curve", "line"] {
                let got: Vec<&PathRow> =
                    rows.iter().filter(|r| r.path == path && r.t == t).collect();
                assert_eq!(got.len(), want.len());
                for (g, w) in got.iter().zip(&want) {
                    assert_eq!(g.split, w.split);
                    assert_eq!(g.loss.to_bits(), w.loss.to_bits(), "{path} t={t}");
                    assert_eq!(g.accuracy.map(f64::to_bits), w.accuracy.map(f64::to_bits));
                }
            }
        }
        summary.save(dir.path(), &rows).unwrap();
        assert!(dir.path().join("curve.parquet").is_file());
        assert!(dir.path().join("connect.json").is_file());
    }
}

#[test]
fn an_interrupted_training_resumes_to_the_same_bend() {
    let _rng = TORCH_RNG.lock().unwrap_or_else(|p| p.into_inner());
    let digits = Digits::load().unwrap();
    let (train, _) = digits.split_at(600).unwrap();
    let a = minimum(&train, 3);
    let b = minimum(&train, 4);
    let vs = nn::VarStore::new(tch::Device::Cpu);
    let model = Mlp::new(&vs.root(), &SIZES);
    let trainer =
        |epochs| CurveTrainer::new(&vs, &model, &train.x, &train.y).settings(settings(epochs));
    let fresh = || Curve::midpoint(CurveKind::Bezier, a.clone(), b.clone()).unwrap();
    // Uninterrupted: 6 epochs.
    let mut whole = fresh();
    let d1 = tempdir();
    let log1 = trainer(6)
        .train(&mut whole, Some(&d1.path().join("s.arrow")))
        .unwrap();
    // Interrupted after epoch 3 (what a kill during epoch 4 leaves on disk:
    // the state saved after epoch 3), then resumed by a new process's
    // objects from the file alone.
    let d2 = tempdir();
    let state = d2.path().join("s.arrow");
    trainer(3).train(&mut fresh(), Some(&state)).unwrap();
    let mut resumed = fresh();
    let log2 = trainer(6).train(&mut resumed, Some(&state)).unwrap();
    assert_eq!(log2, log1);
    assert_eq!(bits(&resumed.bend), bits(&whole.bend));
    // The bend moved: the check above can fail.
    assert_ne!(bits(&whole.bend), bits(&fresh().bend));
    // A state of another curve or seed is refused, by file name.
    for (kind, seed) in [(CurveKind::Polychain, 7), (CurveKind::Bezier, 8)] {
        let mut s = settings(6);
        s.seed = seed;
        let e = CurveTrainer::new(&vs, &model, &train.x, &train.y)
            .settings(s)
            .train(
                &mut Curve::midpoint(kind, a.clone(), b.clone()).unwrap(),
                Some(&state),
            )
            .unwrap_err()
            .to_string();
        assert!(e.contains("s.arrow") && e.contains("another curve"), "{e}");
    }
    // A state of more epochs than asked for is refused.
    let e = trainer(2)
        .train(&mut fresh(), Some(&state))
        .unwrap_err()
        .to_string();
    assert!(e.contains("6 trained epochs"), "{e}");
}
