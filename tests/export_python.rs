//! The Parquet export read from Python with pyarrow, polars and DuckDB, and
//! a snapshot file read with pyarrow's IPC reader: row counts, column names
//! and types, and values bit-equal to what the Rust reader sees.
//!
//! Needs the test Python (numpy, pyarrow, duckdb, polars): the interpreter
//! in $TCH_LANDSCAPE_PYTHON, else the one `./landscape-dev setup` installs.

mod common;

use serde_json::{json, Value};

use common::*;
use tch_landscape::store::export::export_parquet;
use tch_landscape::Run;

fn u32s(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap_or_else(|| panic!("expected an array, got {v}"))
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn python_reads_the_export_and_snapshots() {
    python(); // fails early, naming what to install, without the test Python
    let dir = tempdir();
    let run_dir = dir.path().join("run");
    let copies = record_bn_run(&run_dir, 3, 21);
    let run = Run::open(&run_dir).unwrap();
    assert_eq!(run.len(), 4);
    let chunk = 100;
    let exp = export_parquet(&run, &dir.path().join("export"), chunk).unwrap();
    let m = run.manifest();
    let tensors = &m.tensors;
    let rows_per_snapshot: u64 = tensors.iter().map(|t| t.numel.div_ceil(chunk as u64)).sum();
    assert_eq!(exp.trajectory_rows, rows_per_snapshot * run.len() as u64);
    let metrics = run.metrics().unwrap();

    // Probes: the Rust reader's values, also checked against the training
    // loop's own copies.
    let probe_list = [
        ("fc1.weight", 2usize),
        ("bn.running_var", 3),
        ("fc2.bias", 0),
        ("bn.weight", 1),
    ];
    let mut probes = Vec::new();
    for (name, s) in probe_list {
        let k = tensors.iter().position(|t| t.name == name).unwrap();
        let v = run.snapshot(s).unwrap().f32_values(k).unwrap().to_vec();
        assert_bits_eq(&v, &copies[s][name].values, name);
        probes.push(json!({"tensor": name, "snapshot": s, "bits": bits(&v)}));
    }
    let snapshot_index = 2;
    let snapshot_file = run.snapshot(snapshot_index).unwrap().path().to_path_buf();
    let expected = json!({
        "trajectory": exp.trajectory,
        "summary": exp.summary,
        "metrics": exp.metrics,
        "epochs": exp.epochs,
        "snapshot_file": snapshot_file,
        "probes": probes,
    });
    let expected_path = dir.path().join("expected.json");
    std::fs::write(
        &expected_path,
        serde_json::to_vec_pretty(&expected).unwrap(),
    )
    .unwrap();

    let got: Value = python_json("check_export.py", &[expected_path.as_os_str()]);
    eprintln!("python versions: {}", got["versions"]);

    // pyarrow: row counts, and columns exactly as documented in schemas/
    // (epochs: the documented fixed columns, then one Float64 per epoch
    // metric); run_id as a column and as metadata, schema version 2.
    let n_rows = [
        ("trajectory", exp.trajectory_rows as usize),
        ("summary", run.len() * tensors.len()),
        ("metrics", metrics.len()),
        ("epochs", run.len()),
    ];
    for (name, rows) in n_rows {
        let t = &got["pyarrow"][name];
        assert_eq!(t["rows"].as_u64(), Some(rows as u64), "pyarrow {name} rows");
        let doc_name = if name == "metrics" {
            "export_metrics"
        } else {
            name
        };
        let doc: Value = serde_json::from_str(
            &std::fs::read_to_string(repo_root().join(format!("schemas/{doc_name}.json"))).unwrap(),
        )
        .unwrap();
        let mut documented: Vec<Value> = doc["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                let mut d =
                    json!({"name": f["name"], "type": f["type"], "nullable": f["nullable"]});
                if let Some(item) = f.get("item") {
                    d["item"] = item.clone();
                }
                d
            })
            .collect();
        if name == "epochs" {
            for m in ["train_loss", "lr"] {
                documented.push(json!({"name": m, "type": "Float64", "nullable": true}));
            }
        }
        assert_eq!(
            t["fields"].as_array().unwrap(),
            &documented,
            "pyarrow's view of {name}.parquet"
        );
        assert_eq!(
            t["run_id"].as_str(),
            Some(m.run_id.as_str()),
            "{name} run id metadata"
        );
        assert_eq!(
            t["run_id_column"],
            json!([m.run_id]),
            "{name} run_id column"
        );
        assert_eq!(t["schema_version"], "2", "{name} schema version");
    }

    // epochs.parquet: θ₀ and one row per epoch; the epoch metrics spread
    // (θ₀ has none in this run: null), batch_loss (a step metric) not.
    let e = &got["epochs"];
    assert_eq!(e["snapshot"], json!([0, 1, 2, 3]));
    assert_eq!(e["epoch"], json!([0, 1, 2, 3]));
    assert_eq!(
        e["trigger"],
        json!(["train_start", "epoch_end", "epoch_end", "epoch_end"])
    );
    assert!(e["step"][0].is_null() && e["step"][1].as_u64().unwrap() > 0);
    let train_loss: Vec<Value> = (0..4)
        .map(|s| {
            metrics
                .iter()
                .find(|r| r.snapshot == Some(s) && r.name == "train_loss")
                .map_or(Value::Null, |r| json!(r.value))
        })
        .collect();
    assert!(train_loss[0].is_null() && !train_loss[1].is_null());
    assert_eq!(e["metrics"]["train_loss"], json!(train_loss));
    assert_eq!(e["metrics"]["lr"], json!([null, 0.05, 0.05, 0.05]));
    assert!(e["metrics"].get("batch_loss").is_none());

    // polars: same shapes, its own dtype names.
    let polars_dtypes = [
        (
            "trajectory",
            vec![
                "String",
                "UInt32",
                "UInt64",
                "UInt64",
                "String",
                "String",
                "List(Int64)",
                "UInt64",
                "UInt32",
                "UInt64",
                "List(Float32)",
            ],
        ),
        (
            "summary",
            vec![
                "String", "UInt32", "UInt64", "String", "String", "UInt64", "Float64", "Float64",
                "Float64", "Float64", "Float64",
            ],
        ),
        (
            "metrics",
            vec![
                "String", "UInt32", "UInt64", "UInt64", "String", "Float64", "Float64",
            ],
        ),
        (
            "epochs",
            vec![
                "String", "UInt32", "UInt64", "UInt64", "String", "Float64", "Float64", "Float64",
            ],
        ),
    ];
    for ((name, rows), (_, dtypes)) in n_rows.iter().zip(&polars_dtypes) {
        let p = &got["polars"][name];
        assert_eq!(p["rows"].as_u64(), Some(*rows as u64), "polars {name} rows");
        let d: Vec<&str> = p["dtypes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_str().unwrap())
            .collect();
        assert_eq!(&d, dtypes, "polars {name} dtypes");
        let cols: Vec<&str> = p["columns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_str().unwrap())
            .collect();
        assert_eq!(
            cols,
            got["pyarrow"][name]["fields"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f["name"].as_str().unwrap())
                .collect::<Vec<_>>()
        );
    }

    // Probe values: bit-equal through pyarrow, polars and DuckDB.
    for (p, want) in got["probes"].as_array().unwrap().iter().zip(&probes) {
        let what = format!("{} @ snapshot {}", p["tensor"], p["snapshot"]);
        let want_bits = u32s(&want["bits"]);
        for reader in ["pyarrow_bits", "polars_bits", "duckdb_bits"] {
            assert_eq!(u32s(&p[reader]), want_bits, "{what}: {reader}");
        }
        assert_eq!(p["python_says_equal"], true, "{what}");
        let n_chunks = want_bits.len().div_ceil(chunk);
        let chunks: Vec<u64> = (0..n_chunks as u64).collect();
        let offsets: Vec<u64> = (0..n_chunks as u64).map(|c| c * chunk as u64).collect();
        assert_eq!(p["chunks"], json!(chunks), "{what}");
        assert_eq!(p["offsets"], json!(offsets), "{what}");
        // Role, shape and numel on every row: the tensor rebuilds alone.
        let t = tensors.iter().find(|t| t.name == want["tensor"]).unwrap();
        assert_eq!(p["shape"], json!(t.shape), "{what}");
        assert_eq!(p["same_shape_every_row"], true, "{what}");
        assert_eq!(p["reshaped"], json!(t.shape), "{what}");
        assert_eq!(p["numel"], json!([t.numel]), "{what}");
        assert_eq!(p["role"], json!([t.role.as_str()]), "{what}");
    }

    // Summary statistics agree with numpy on the exported values.
    let s = &got["summary_check"];
    assert_eq!(s["rows"].as_u64(), Some((run.len() * tensors.len()) as u64));
    assert!(s["max_rel_l2_diff"].as_f64().unwrap() < 1e-12, "{s}");
    assert!(s["max_abs_mean_diff"].as_f64().unwrap() < 1e-12, "{s}");
    assert!(s["max_abs_std_diff"].as_f64().unwrap() < 1e-9, "{s}");
    assert_eq!(s["min_max_equal"], true, "{s}");
    assert_eq!(s["numel_equal"], true, "{s}");

    // DuckDB aggregates.
    let d = &got["duckdb"];
    for t in tensors {
        let rows = t.numel.div_ceil(chunk as u64) * run.len() as u64;
        assert_eq!(
            d["rows_per_tensor"][&t.name].as_u64(),
            Some(rows),
            "duckdb rows of {}",
            t.name
        );
        assert_eq!(
            d["values_per_tensor"][&t.name].as_u64(),
            Some(t.numel),
            "duckdb values of {}",
            t.name
        );
    }
    assert_eq!(
        d["rows_per_tensor"].as_object().unwrap().len(),
        tensors.len()
    );
    assert_eq!(d["snapshots"], json!((0..run.len()).collect::<Vec<_>>()));
    assert_eq!(
        d["summary_rows"].as_u64(),
        Some((run.len() * tensors.len()) as u64)
    );
    assert_eq!(d["buffer_rows"].as_u64(), Some(2 * run.len() as u64));
    let mut counts = std::collections::BTreeMap::<String, u64>::new();
    for r in &metrics {
        *counts.entry(r.name.clone()).or_default() += 1;
    }
    assert_eq!(d["metric_counts"], json!(counts));

    // The snapshot file through pyarrow.ipc.open_file.
    let ipc = &got["ipc"];
    assert_eq!(ipc["num_batches"].as_u64(), Some(tensors.len() as u64));
    assert_eq!(
        ipc["fields"],
        json!([{"name": "values", "type": "Float32", "nullable": false}])
    );
    let snap = run.snapshot(snapshot_index).unwrap();
    for (k, t) in tensors.iter().enumerate() {
        assert_eq!(ipc["rows"][k].as_u64(), Some(t.numel), "{}", t.name);
        assert_eq!(
            u32s(&ipc["bits"][k]),
            bits(snap.f32_values(k).unwrap()),
            "pyarrow ipc {}",
            t.name
        );
    }
    assert_eq!(ipc["meta"]["index"].as_u64(), Some(snapshot_index as u64));
    assert_eq!(ipc["meta"]["run_id"].as_str(), Some(m.run_id.as_str()));
    assert_eq!(ipc["meta"]["trigger"], "epoch_end");
    assert_eq!(ipc["meta"]["epoch"].as_u64(), Some(2));
}
