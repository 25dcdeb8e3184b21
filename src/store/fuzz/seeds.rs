//! The seed generator of the fuzz corpus (see the module docs of `store::fuzz`).

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arrow::array::{ArrayRef, Float32Array, Float64Array, RecordBatch, StringArray};
use arrow::array::{UInt32Array, UInt64Array};
use tch::nn::{self, VarStore};
use tch::{Device, Kind, Tensor};

use super::targets::mixed_schema;
use super::{copy_dir, files_under};
use crate::analysis::directions::Directions;
use crate::analysis::evaluator::ClassifierEvaluator;
use crate::analysis::hessian::{Curvature, Lanczos, SupervisedObjective};
use crate::analysis::params::ParamSet;
use crate::analysis::pca::TrajectoryPca;
use crate::analysis::shard::Shard;
use crate::analysis::surface::Surface;
use crate::error::Result;
use crate::recorder::Recorder;
use crate::store::manifest::StorageDtype;
use crate::store::run::Run;
use crate::tensor::Selection;

/// Copies the listed files (relative paths) of `from` into `to`.
fn copy_files(from: &Path, to: &Path, files: &[&str]) {
    for f in files {
        let dest = to.join(f);
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(from.join(f), &dest)
            .unwrap_or_else(|e| panic!("{}: {e}", from.join(f).display()));
    }
}

/// Copies a directory without its hidden files (locks, temporaries).
fn copy_visible(from: &Path, to: &Path) {
    let mut all = Vec::new();
    files_under(from, "", &mut all);
    let visible: Vec<&str> = all
        .iter()
        .map(String::as_str)
        .filter(|f| !f.split('/').any(|p| p.starts_with('.')))
        .collect();
    copy_files(from, to, &visible);
}

/// A run of a 4 → 3 linear layer: three snapshots, one per epoch end
/// (the first at train start), or step snapshots with metrics per step.
fn record(
    dir: &Path,
    kind: Kind,
    steps: bool,
    storage: Option<StorageDtype>,
) -> Result<(VarStore, nn::Linear)> {
    let mut vs = VarStore::new(Device::Cpu);
    let lin = nn::linear(vs.root() / "lin", 4, 3, Default::default());
    if kind == Kind::Double {
        vs.double();
    }
    let mut builder = Recorder::builder(dir)
        .fsync(false)
        .metadata("model", "fuzz-seed");
    if steps {
        builder = builder.every_n_steps(2);
    }
    if let Some(dtype) = storage {
        builder = builder.storage(dtype);
    }
    let mut rec = builder.build(&vs)?;
    let mut step = 0;
    for epoch in 1..=2u64 {
        tch::no_grad(|| {
            for (_, mut t) in vs.variables() {
                let _ = t.g_add_(&(Tensor::randn_like(&t) * 0.1));
            }
        });
        if steps {
            for _ in 0..2 {
                step += 1;
                rec.on_step_end(epoch, step, &[("batch_loss", 1.0 / step as f64)])?;
            }
        }
        rec.on_epoch_end(
            epoch,
            &[("loss", 1.0 / epoch as f64), ("acc", 30.0 * epoch as f64)],
        )?;
    }
    rec.finish()?;
    Ok((vs, lin))
}

/// A three-batch table of every column type, with nulls.
fn mixed_table(path: &Path) {
    let schema = mixed_schema();
    let mut batches = Vec::new();
    for b in 0..3u32 {
        let n = 2 + b as usize;
        let cols: Vec<ArrayRef> = vec![
            Arc::new(UInt32Array::from_iter_values(
                (0..n as u32).map(|i| i + 10 * b),
            )),
            Arc::new(UInt64Array::from_iter(
                (0..n as u64).map(|i| (i % 2 == 0).then_some(i << 40)),
            )),
            Arc::new(Float32Array::from_iter_values(
                (0..n).map(|i| i as f32 * 0.5),
            )),
            Arc::new(Float64Array::from_iter(
                (0..n).map(|i| (i != 1).then_some(-(i as f64) / 3.0)),
            )),
            Arc::new(StringArray::from_iter(
                (0..n).map(|i| (i != 0).then(|| "é".repeat(i))),
            )),
        ];
        batches.push(RecordBatch::try_new(schema.clone(), cols).unwrap());
    }
    crate::store::table::write_ipc_with(path, &schema, false, |sink| {
        batches.iter().try_for_each(|b| sink.write(b))
    })
    .unwrap();
}

pub(super) fn generate(corpus: &Path) -> Result<()> {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    if corpus.exists() {
        std::fs::remove_dir_all(corpus).unwrap();
    }
    tch::manual_seed(13);

    // Runs: snapshots, manifests, metrics.
    let (vs, lin) = record(&t.join("f32"), Kind::Float, false, None)?;
    record(&t.join("f64"), Kind::Double, true, None)?;
    // Opt-in 16-bit storage (Float16 and raw-bits UInt16 columns).
    record(
        &t.join("f16"),
        Kind::Float,
        false,
        Some(StorageDtype::Float16),
    )?;
    record(
        &t.join("bf16"),
        Kind::Float,
        true,
        Some(StorageDtype::BFloat16),
    )?;
    for run in ["f32", "f64", "f16", "bf16"] {
        copy_visible(&t.join(run), &corpus.join("snapshot").join(run));
        copy_files(
            &t.join(run),
            &corpus.join("manifest").join(run),
            &["manifest.json"],
        );
    }
    copy_files(
        &t.join("f32"),
        &corpus.join("metrics/epochs"),
        &["metrics.arrow"],
    );
    copy_files(
        &t.join("f64"),
        &corpus.join("metrics/steps"),
        &["metrics.arrow"],
    );
    std::fs::create_dir_all(corpus.join("ipc/metrics")).unwrap();
    std::fs::copy(
        t.join("f32/metrics.arrow"),
        corpus.join("ipc/metrics/table.arrow"),
    )
    .unwrap();
    std::fs::create_dir_all(corpus.join("ipc/mixed")).unwrap();
    mixed_table(&corpus.join("ipc/mixed/table.arrow"));

    // PCA of the float32 run.
    let run = Run::open(t.join("f32"))?;
    let pca = TrajectoryPca::builder()
        .selection(Selection::All)
        .build()?
        .fit(&run)?;
    pca.save(&run, &t.join("pca"))?;
    copy_files(&t.join("pca"), &corpus.join("pca_json/f32"), &["pca.json"]);

    // Surfaces around the float32 run's last snapshot.
    let x = Tensor::randn([16, 4], (Kind::Float, Device::Cpu));
    let y = Tensor::randint(3, [16], (Kind::Int64, Device::Cpu));
    let dirs = Directions::random(&ParamSet::from_varstore(&vs)?)
        .seed(7)
        .build()?
        .with_description("fuzz seed".to_string());
    let eval = || -> Result<ClassifierEvaluator<'_>> {
        ClassifierEvaluator::new(&lin)
            .split("train", &x.narrow(0, 0, 8), &y.narrow(0, 0, 8))?
            .split("test", &x.narrow(0, 8, 8), &y.narrow(0, 8, 8))
    };
    let whole = [
        "surface.json",
        "surface.parquet",
        "directions.parquet",
        "sharpness.json",
    ];
    let grid = Surface::builder(&dirs).grid(-1.0..=1.0, 3, -0.5..=0.5, 3);
    grid.build()?
        .evaluate(&vs, &mut eval()?, t.join("grid2d"))?;
    let line = Surface::builder(&dirs).line(-1.0..=1.0, 5);
    line.build()?.evaluate(&vs, &mut eval()?, t.join("line"))?;
    for s in ["grid2d", "line"] {
        copy_files(&t.join(s), &corpus.join("surface_json").join(s), &whole);
        copy_files(&t.join(s), &corpus.join("surface_parquet").join(s), &whole);
    }
    let shard_files = ["surface.json", "surface.parquet", "directions.parquet"];
    for i in 0..2 {
        let dir = t.join(format!("shard-{i}"));
        Surface::builder(&dirs)
            .grid(-1.0..=1.0, 3, -0.5..=0.5, 3)
            .shard(Shard::new(i, 2)?)
            .build()?
            .evaluate(&vs, &mut eval()?, &dir)?;
        copy_files(
            &dir,
            &corpus.join(format!("shard/surface/shard-{i}")),
            &shard_files,
        );
    }
    copy_files(
        &t.join("shard-0"),
        &corpus.join("shard/bad-unfinished/shard-0"),
        &shard_files,
    );

    // Unfinished: cancelled after three points, flushed one at a time.
    for (name, shard) in [
        ("partial", None),
        ("partial-shard", Some(Shard::new(1, 2)?)),
    ] {
        let cancel = Arc::new(AtomicBool::new(false));
        let flag = cancel.clone();
        let mut b = Surface::builder(&dirs)
            .grid(-1.0..=1.0, 3, -0.5..=0.5, 3)
            .flush_every(1)
            .cancel_on(cancel)
            .on_progress(move |done, _| {
                if done >= 3 {
                    flag.store(true, Ordering::SeqCst);
                }
            });
        if let Some(s) = shard {
            b = b.shard(s);
        }
        let r = b.build()?.evaluate(&vs, &mut eval()?, t.join(name))?;
        assert!(!r.complete, "{name}: the cancelled surface completed");
    }
    copy_visible(&t.join("partial"), &corpus.join("segments/partial"));
    let partial = corpus.join("shard/bad-unfinished/shard-1");
    copy_visible(&t.join("partial-shard"), &partial);

    // Curvature-map shards on a line.
    for i in 0..2 {
        let dir = t.join(format!("curvature-{i}"));
        let surface = Surface::builder(&dirs)
            .line(-1.0..=1.0, 4)
            .shard(Shard::new(i, 2)?)
            .build()?;
        Curvature::builder(surface)
            .selection(Selection::Weights)
            .lanczos(Lanczos::builder().tol(1e-2).build()?)
            .build()?
            .evaluate(&vs, SupervisedObjective::new(&lin, &x, &y)?, &dir)?;
        let files = [
            "surface.json",
            "surface.parquet",
            "directions.parquet",
            "curvature.parquet",
        ];
        copy_files(
            &dir,
            &corpus.join(format!("shard/curvature/shard-{i}")),
            &files,
        );
    }

    // One points segment as an IPC seed.
    let mut segs = Vec::new();
    files_under(&corpus.join("segments/partial/points"), "", &mut segs);
    let first = segs.first().expect("segments of the partial surface");
    std::fs::create_dir_all(corpus.join("ipc/points")).unwrap();
    std::fs::copy(
        corpus.join("segments/partial/points").join(first),
        corpus.join("ipc/points/table.arrow"),
    )
    .unwrap();

    let mut all = Vec::new();
    files_under(corpus, "", &mut all);
    let bytes: u64 = all
        .iter()
        .map(|f| std::fs::metadata(corpus.join(f)).unwrap().len())
        .sum();
    eprintln!(
        "{} seed files, {bytes} bytes in {}",
        all.len(),
        corpus.display()
    );
    assert!(
        bytes < 1 << 20,
        "the corpus is {bytes} bytes, more than 1 MiB"
    );
    // Round trip: a copy of the corpus is the corpus.
    copy_dir(corpus, &t.join("copy"));
    Ok(())
}
