//! `schemas/*.json` document every on-disk table and the manifest, and the
//! layout documents (`run`, `export`, `surface`, `curvature_dir`, `connect_dir`, `pca`,
//! `report`) every output directory. These tests check that what the code
//! declares and what it actually writes match the documents field by field
//! (names, types, nullability, JSON types, enums), and that every file of a
//! real demo run is documented, with its columns or keys.

mod common;

use std::collections::BTreeSet;
use std::fs::File;
use std::path::{Path, PathBuf};

use arrow::array::Array;
use arrow::datatypes::{DataType, Field, Schema};
use arrow::ipc::reader::FileReader;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::Value;
use tch::nn::{self, ModuleT};
use tch::{Device, Kind, Tensor};

use common::*;
use tch_landscape::data::digits::Digits;
use tch_landscape::store::export::{
    epochs_schema, export_metrics_schema, export_parquet, summary_schema, trajectory_schema,
    EXPORT_SCHEMA_VERSION, RUN_ID_KEY, SCHEMA_VERSION_KEY,
};
use tch_landscape::store::manifest::{StorageDtype, MANIFEST_FILE, SCHEMA_VERSION};
use tch_landscape::store::metrics::{metrics_schema, METRICS_FILE};
use tch_landscape::store::snapshot::{snapshot_schema, SNAPSHOT_DIR, SNAPSHOT_META_KEY};
use tch_landscape::{Recorder, Run};

const DOCS: [&str; 14] = [
    "manifest",
    "snapshot",
    "metrics",
    "trajectory",
    "summary",
    "export_metrics",
    "epochs",
    "surface_points",
    "directions",
    "curvature",
    "pca_variance",
    "pca_path",
    "pca_tensors",
    "pca_plane_check",
];

/// The tables of `landscape export`, versioned by [`EXPORT_SCHEMA_VERSION`].
const EXPORT_DOCS: [&str; 4] = ["trajectory", "summary", "export_metrics", "epochs"];

/// The layout documents: one per kind of output directory.
const LAYOUTS: [&str; 8] = [
    "run",
    "export",
    "surface",
    "curvature_dir",
    "pca",
    "report",
    "connect_dir",
    "animation_dir",
];

fn doc(name: &str) -> Value {
    let path = repo_root().join("schemas").join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: invalid JSON: {e}", path.display()))
}

fn doc_fields<'a>(v: &'a Value, what: &str) -> &'a Vec<Value> {
    v["fields"]
        .as_array()
        .unwrap_or_else(|| panic!("{what}: no \"fields\" array"))
}

/// The documents' stable spelling of an Arrow type: the variant name for
/// primitives ("UInt32", "Utf8", "Float64"), "List(<item type>)" for lists
/// (the item field is documented separately).
fn spell(dt: &DataType) -> String {
    match dt {
        DataType::List(item) => format!("List({})", spell(item.data_type())),
        other => format!("{other:?}"),
    }
}

#[track_caller]
fn assert_field_matches(field: &Field, d: &Value, type_key: &str, what: &str) {
    assert_eq!(
        d["name"].as_str(),
        Some(field.name().as_str()),
        "{what}: field name"
    );
    let name = field.name();
    assert_eq!(
        d[type_key].as_str(),
        Some(spell(field.data_type()).as_str()),
        "{what}: type of '{name}'"
    );
    assert_eq!(
        d["nullable"].as_bool(),
        Some(field.is_nullable()),
        "{what}: nullability of '{name}'"
    );
    assert!(
        d["description"].as_str().is_some_and(|s| s.len() > 10),
        "{what}: '{name}' needs a description"
    );
    match field.data_type() {
        DataType::List(item) => {
            let di = &d["item"];
            assert!(
                di.is_object(),
                "{what}: list field '{name}' needs an \"item\" object"
            );
            assert_eq!(
                di["name"].as_str(),
                Some(item.name().as_str()),
                "{what}: '{name}' item name"
            );
            assert_eq!(
                di["type"].as_str(),
                Some(spell(item.data_type()).as_str()),
                "{what}: '{name}' item type"
            );
            assert_eq!(
                di["nullable"].as_bool(),
                Some(item.is_nullable()),
                "{what}: '{name}' item nullability"
            );
        }
        _ => assert!(d.get("item").is_none(), "{what}: '{name}' is not a list"),
    }
}

/// Asserts an Arrow schema has exactly the documented fields, in order.
#[track_caller]
fn assert_schema_matches(schema: &Schema, doc_name: &str, what: &str) {
    let d = doc(doc_name);
    let fields = doc_fields(&d, doc_name);
    let got: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    let want: Vec<&str> = fields.iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert_eq!(
        got, want,
        "{what}: columns differ from schemas/{doc_name}.json"
    );
    for (f, df) in schema.fields().iter().zip(fields) {
        assert_field_matches(f, df, "type", what);
    }
}

fn json_type_ok(v: &Value, t: &str) -> bool {
    match t {
        "string" => v.is_string(),
        "integer" => v.is_u64() || v.is_i64(),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        "array" => v.is_array(),
        "object" => v.is_object(),
        "null" => v.is_null(),
        other => panic!("unknown json_type '{other}' in a schema document"),
    }
}

/// Asserts a JSON object has exactly the documented keys, each of a
/// documented JSON type (and enum value); recurses into documented arrays.
#[track_caller]
fn assert_object_matches(obj: &Value, fields: &[Value], root: &Value, what: &str) {
    let map = obj
        .as_object()
        .unwrap_or_else(|| panic!("{what}: not a JSON object: {obj}"));
    let got: BTreeSet<&str> = map.keys().map(String::as_str).collect();
    let documented: BTreeSet<&str> = fields.iter().map(|f| f["name"].as_str().unwrap()).collect();
    let required: BTreeSet<&str> = fields
        .iter()
        .filter(|f| f["required"] != Value::Bool(false))
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert!(
        got.is_subset(&documented) && required.is_subset(&got),
        "{what}: keys differ from the documented fields: {got:?} vs documented {documented:?} (required {required:?})"
    );
    for f in fields {
        let name = f["name"].as_str().unwrap();
        let Some(v) = map.get(name) else {
            continue;
        };
        assert!(
            f["required"].is_boolean(),
            "{what}: '{name}' lacks \"required\""
        );
        assert!(
            f["description"].as_str().is_some_and(|s| s.len() > 10),
            "{what}: '{name}' needs a description"
        );
        let types: Vec<&str> = match &f["json_type"] {
            Value::String(s) => vec![s.as_str()],
            Value::Array(a) => a.iter().map(|t| t.as_str().unwrap()).collect(),
            other => panic!("{what}: '{name}' has json_type {other}"),
        };
        assert!(
            types.iter().any(|t| json_type_ok(v, t)),
            "{what}: '{name}' = {v} is not of documented type {types:?}"
        );
        if let Some(allowed) = f.get("enum").and_then(Value::as_array) {
            assert!(
                allowed.contains(v),
                "{what}: '{name}' = {v} is not one of {allowed:?}"
            );
        }
        if let (Some(items), Some(arr)) = (f.get("items").and_then(Value::as_str), v.as_array()) {
            for (i, item) in arr.iter().enumerate() {
                match root.get(items) {
                    Some(entry) => assert_object_matches(
                        item,
                        entry["fields"].as_array().unwrap(),
                        root,
                        &format!("{what}.{name}[{i}]"),
                    ),
                    None => assert!(
                        json_type_ok(item, items),
                        "{what}.{name}[{i}] = {item} is not {items}"
                    ),
                }
            }
        }
        if let (Some(values), Some(m)) = (f.get("values").and_then(Value::as_str), v.as_object()) {
            for (k, x) in m {
                assert!(
                    json_type_ok(x, values),
                    "{what}.{name}.{k} = {x} is not {values}"
                );
            }
        }
    }
}

#[test]
fn every_document_is_versioned_and_complete() {
    for name in DOCS {
        let d = doc(name);
        let version = if EXPORT_DOCS.contains(&name) {
            EXPORT_SCHEMA_VERSION
        } else {
            SCHEMA_VERSION
        };
        assert_eq!(
            d["schema_version"].as_u64(),
            Some(version as u64),
            "schemas/{name}.json"
        );
        assert_eq!(d["name"].as_str(), Some(name));
        for key in ["file", "format", "description"] {
            assert!(
                d[key].as_str().is_some_and(|s| !s.is_empty()),
                "schemas/{name}.json: {key}"
            );
        }
        assert!(!doc_fields(&d, name).is_empty());
    }
}

#[test]
fn declared_arrow_schemas_match_the_documents() {
    use tch_landscape::analysis::{directions, hessian, pca, surface};
    assert_schema_matches(
        &surface::result_schema(),
        "surface_points",
        "result_schema()",
    );
    assert_schema_matches(
        &directions::directions_schema(),
        "directions",
        "directions_schema()",
    );
    assert_schema_matches(
        &hessian::curvature_schema(),
        "curvature",
        "curvature_schema()",
    );
    assert_schema_matches(
        &tch_landscape::store::hessian::hessian_schema(),
        "hessian",
        "hessian_schema()",
    );
    assert_schema_matches(
        &tch_landscape::store::connect::curve_schema(),
        "curve",
        "curve_schema()",
    );
    assert_schema_matches(
        &tch_landscape::store::animation::animation_schema(),
        "animation",
        "animation_schema()",
    );
    assert_schema_matches(&pca::variance_schema(), "pca_variance", "variance_schema()");
    assert_schema_matches(&pca::path_schema(), "pca_path", "path_schema()");
    assert_schema_matches(&pca::tensors_schema(), "pca_tensors", "tensors_schema()");
    assert_schema_matches(
        &pca::plane_check_schema(),
        "pca_plane_check",
        "plane_check_schema()",
    );
    assert_schema_matches(&metrics_schema(), "metrics", "metrics_schema()");
    assert_schema_matches(
        &export_metrics_schema(),
        "export_metrics",
        "export_metrics_schema()",
    );
    assert_schema_matches(&epochs_schema(&[]), "epochs", "epochs_schema([])");
    assert_schema_matches(&trajectory_schema(), "trajectory", "trajectory_schema()");
    assert_schema_matches(&summary_schema(), "summary", "summary_schema()");
    assert_schema_matches(
        &snapshot_schema(StorageDtype::Float32),
        "snapshot",
        "snapshot_schema(float32)",
    );
    // The float64 variant is documented under type_by_storage_dtype.
    let d = doc("snapshot");
    let values = &doc_fields(&d, "snapshot")[0];
    for (dtype, key) in [
        (StorageDtype::Float32, "float32"),
        (StorageDtype::Float64, "float64"),
        (StorageDtype::Float16, "float16"),
        (StorageDtype::BFloat16, "bfloat16"),
    ] {
        let s = snapshot_schema(dtype);
        assert_eq!(s.fields().len(), 1);
        assert_eq!(
            values["type_by_storage_dtype"][key].as_str(),
            Some(spell(s.field(0).data_type()).as_str()),
            "snapshot values type for {key}"
        );
        assert_eq!(values["nullable"].as_bool(), Some(s.field(0).is_nullable()));
    }
    assert_eq!(
        d["schema_metadata"][0]["key"].as_str(),
        Some(SNAPSHOT_META_KEY)
    );
}

/// Records a run exercising every manifest field: BN buffers, a skipped
/// int64 variable, step snapshots, metrics and user metadata.
fn record_full_run(dir: &Path) {
    tch::manual_seed(2);
    let data = Digits::load().unwrap();
    let vs = nn::VarStore::new(Device::Cpu);
    let model = BnNet::new(&vs.root());
    let _counter = vs.root().add(
        "counter",
        Tensor::zeros([1], (Kind::Int64, Device::Cpu)),
        false,
    );
    let mut opt = sgd(&vs, 0.05);
    let mut rec = Recorder::builder(dir)
        .every_n_steps(10)
        .metadata("model", "BnNet")
        .metadata("seed", "2")
        .learning_rate_metric("lr")
        .build(&vs)
        .unwrap();
    rec.on_train_start(&[("train_loss", 2.3)]).unwrap();
    let mut step_no = 0;
    for epoch in 1..=2 {
        for idx in batches(data.len() as i64, 128) {
            let l = step_t(&model, &mut opt, &data, &idx);
            step_no += 1;
            rec.on_step_end(epoch, step_no, &[("batch_loss", l)])
                .unwrap();
        }
        let out = tch::no_grad(|| model.forward_t(&data.x, false));
        assert_eq!(out.size()[0], data.len() as i64);
        rec.on_epoch_end(epoch, &[("train_loss", 0.5)]).unwrap();
    }
    rec.snapshot(3).unwrap();
    rec.finish().unwrap();
}

#[test]
fn written_manifest_matches_the_document() {
    let dir = tempdir();
    record_full_run(dir.path());
    let d = doc("manifest");
    let text = std::fs::read_to_string(dir.path().join(MANIFEST_FILE)).unwrap();
    let manifest: Value = serde_json::from_str(&text).unwrap();
    assert_object_matches(&manifest, doc_fields(&d, "manifest"), &d, "manifest.json");
    // The run exercised the nested entries and non-null optional values.
    assert_eq!(manifest["tensors"].as_array().unwrap().len(), 8);
    assert_eq!(manifest["skipped"].as_array().unwrap().len(), 1);
    assert_eq!(manifest["every_n_steps"], 10);
    assert_eq!(manifest["user"]["model"], "BnNet");
    let roles: BTreeSet<&str> = manifest["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, BTreeSet::from(["weight", "bias", "buffer"]));

    // A run without step snapshots writes null there, also documented.
    let dir2 = tempdir();
    record_tiny_run(dir2.path(), 2);
    let m2: Value =
        serde_json::from_str(&std::fs::read_to_string(dir2.path().join(MANIFEST_FILE)).unwrap())
            .unwrap();
    assert!(m2["every_n_steps"].is_null());
    assert_object_matches(
        &m2,
        doc_fields(&d, "manifest"),
        &d,
        "manifest.json (tiny run)",
    );
}

#[test]
fn written_snapshot_and_metrics_files_match_the_documents() {
    let dir = tempdir();
    record_full_run(dir.path());
    let run = Run::open(dir.path()).unwrap();
    let d = doc("snapshot");
    let meta_doc = &d["schema_metadata"][0];
    let mut triggers = BTreeSet::new();
    let mut steps_null = 0;
    for (i, snap) in run.snapshots().iter().enumerate() {
        let reader = FileReader::try_new(File::open(snap.path()).unwrap(), None).unwrap();
        let schema = reader.schema();
        let what = format!("snapshot file {}", snap.path().display());
        assert_schema_matches(&schema, "snapshot", &what);
        let keys: Vec<&String> = schema.metadata().keys().collect();
        assert_eq!(
            keys,
            vec![SNAPSHOT_META_KEY],
            "{what}: schema metadata keys"
        );
        let meta: Value = serde_json::from_str(&schema.metadata()[SNAPSHOT_META_KEY]).unwrap();
        assert!(json_type_ok(&meta, meta_doc["json_type"].as_str().unwrap()));
        assert_object_matches(&meta, meta_doc["fields"].as_array().unwrap(), &d, &what);
        assert_eq!(meta["index"], i as u64);
        triggers.insert(meta["trigger"].as_str().unwrap().to_string());
        steps_null += meta["step"].is_null() as usize;
        let rows: Vec<usize> = reader.map(|b| b.unwrap().num_rows()).collect();
        let numels: Vec<usize> = run
            .manifest()
            .tensors
            .iter()
            .map(|t| t.numel as usize)
            .collect();
        assert_eq!(
            rows, numels,
            "{what}: one batch per tensor, numel rows each"
        );
    }
    // All four triggers and both step types were exercised.
    assert_eq!(triggers.len(), 4, "{triggers:?}");
    assert_eq!(steps_null, 1, "only θ₀ has no step");

    let reader =
        FileReader::try_new(File::open(dir.path().join(METRICS_FILE)).unwrap(), None).unwrap();
    assert_schema_matches(&reader.schema(), "metrics", "metrics.arrow");
    let rows: usize = reader.map(|b| b.unwrap().num_rows()).sum();
    assert_eq!(rows, run.metrics().unwrap().len());
    assert!(rows > 0);

    // A float64 run's snapshot files use the documented float64 type.
    let dir64 = tempdir();
    let mut vs = nn::VarStore::new(Device::Cpu);
    let _l = nn::linear(vs.root() / "l", 3, 2, Default::default());
    vs.double();
    Recorder::builder(dir64.path())
        .build(&vs)
        .unwrap()
        .finish()
        .unwrap();
    let f = dir64.path().join(SNAPSHOT_DIR).join("000000.arrow");
    let schema = FileReader::try_new(File::open(&f).unwrap(), None)
        .unwrap()
        .schema();
    let values = &doc_fields(&d, "snapshot")[0];
    assert_eq!(
        values["type_by_storage_dtype"]["float64"].as_str(),
        Some(spell(schema.field(0).data_type()).as_str())
    );
}

/// Asserts an `epochs.parquet` schema: the documented fixed fields, then
/// one documented dynamic column per metric.
#[track_caller]
fn assert_epochs_schema_matches(schema: &Schema, what: &str) -> Vec<String> {
    let d = doc("epochs");
    let fixed = doc_fields(&d, "epochs").len();
    assert!(schema.fields().len() >= fixed, "{what}: too few columns");
    let head = Schema::new(schema.fields()[..fixed].to_vec());
    assert_schema_matches(&head, "epochs", what);
    let dynamic = &d["dynamic_fields"];
    schema.fields()[fixed..]
        .iter()
        .map(|f| {
            assert_eq!(
                dynamic["type"].as_str(),
                Some(spell(f.data_type()).as_str()),
                "{what}: metric column '{}'",
                f.name()
            );
            assert_eq!(dynamic["nullable"].as_bool(), Some(f.is_nullable()));
            f.name().clone()
        })
        .collect()
}

#[test]
fn written_parquet_files_match_the_documents() {
    let dir = tempdir();
    record_full_run(dir.path());
    let run = Run::open(dir.path()).unwrap();
    let out = dir.path().join("export");
    let summary = export_parquet(&run, &out, 1000).unwrap();
    let run_id = run.manifest().run_id.as_str();
    for (path, name) in [
        (&summary.trajectory, "trajectory"),
        (&summary.summary, "summary"),
        (&summary.metrics, "export_metrics"),
        (&summary.epochs, "epochs"),
    ] {
        let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap()).unwrap();
        let what = format!("{}", path.display());
        if name == "epochs" {
            let metrics = assert_epochs_schema_matches(builder.schema(), &what);
            assert_eq!(metrics, ["train_loss"], "{what}: only epoch-level metrics");
        } else {
            assert_schema_matches(builder.schema(), name, &what);
        }
        // Documented key/value metadata: the run id and the schema version.
        let kv = builder
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .cloned()
            .unwrap_or_default();
        let d = doc(name);
        let documented: Vec<&str> = d["parquet_metadata"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["key"].as_str().unwrap())
            .collect();
        assert_eq!(documented, [RUN_ID_KEY, SCHEMA_VERSION_KEY], "{what}");
        let value = |key: &str| {
            kv.iter()
                .find(|e| e.key == key)
                .unwrap_or_else(|| panic!("{what}: no '{key}'"))
                .value
                .clone()
        };
        assert_eq!(value(RUN_ID_KEY).as_deref(), Some(run_id));
        assert_eq!(
            value(SCHEMA_VERSION_KEY),
            Some(EXPORT_SCHEMA_VERSION.to_string())
        );
        let batches: Vec<_> = builder.build().unwrap().map(|b| b.unwrap()).collect();
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        assert!(rows > 0, "{what}: empty");
        for b in &batches {
            let ids = b
                .column(0)
                .as_any()
                .downcast_ref::<arrow::array::StringArray>()
                .unwrap();
            assert!(ids.iter().all(|x| x == Some(run_id)), "{what}: run_id");
        }
        if name == "epochs" {
            // One row per snapshot, θ₀ included; train_loss where reported.
            assert_eq!(rows, run.len(), "{what}: one row per snapshot");
            let b = &batches[0];
            let col = |i: usize| b.column(i).clone();
            let trig = col(4);
            let trig = trig
                .as_any()
                .downcast_ref::<arrow::array::StringArray>()
                .unwrap();
            let loss = col(6);
            let loss = loss
                .as_any()
                .downcast_ref::<arrow::array::Float64Array>()
                .unwrap();
            for i in 0..rows {
                let t = trig.value(i);
                assert_eq!(
                    !loss.is_null(i),
                    t == "epoch_end" || t == "train_start",
                    "{what}: row {i} ({t})"
                );
            }
            assert_eq!(loss.value(0), 2.3, "θ₀'s train_loss");
        }
    }
}

/// Whether `pattern` (path components; `*` any characters within a
/// component, `**` any number of components) matches `path`.
fn glob(pattern: &[&str], path: &[&str]) -> bool {
    fn part(p: &[u8], s: &[u8]) -> bool {
        match p.split_first() {
            None => s.is_empty(),
            Some((b'*', rest)) => (0..=s.len()).any(|i| part(rest, &s[i..])),
            Some((c, rest)) => s.first() == Some(c) && part(rest, &s[1..]),
        }
    }
    match pattern.split_first() {
        None => path.is_empty(),
        Some((&"**", rest)) => (0..=path.len()).any(|i| glob(rest, &path[i..])),
        Some((p, rest)) => {
            !path.is_empty() && part(p.as_bytes(), path[0].as_bytes()) && glob(rest, &path[1..])
        }
    }
}

/// The entry of layout `d` documenting `rel` (a file, or a directory when
/// `is_dir`), if any.
fn layout_entry<'a>(d: &'a Value, rel: &str, is_dir: bool) -> Option<&'a Value> {
    let parts: Vec<&str> = rel.split('/').collect();
    d["entries"].as_array().unwrap().iter().find(|e| {
        let p = e["path"].as_str().unwrap();
        let want_dir = p.ends_with('/');
        let pat: Vec<&str> = p.trim_end_matches('/').split('/').collect();
        want_dir == is_dir && glob(&pat, &parts)
    })
}

/// Checks the directory `root` against layout document `layout`: every file
/// and directory under it is documented (recursing into the layouts of
/// documented sub-directories), required entries exist, and documented
/// tables and JSON files have exactly the documented columns or keys.
/// Returns the problems found (undocumented paths, missing entries).
fn check_layout(root: &Path, layout: &str) -> Vec<String> {
    let d = doc(layout);
    let mut problems = Vec::new();
    let mut found: BTreeSet<String> = BTreeSet::new();
    let mut stack: Vec<PathBuf> = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_str()
                .unwrap()
                .to_string();
            let is_dir = path.is_dir();
            let Some(e) = layout_entry(&d, &rel, is_dir) else {
                problems.push(format!(
                    "{}: not documented in schemas/{layout}.json",
                    path.display()
                ));
                continue;
            };
            found.insert(e["path"].as_str().unwrap().to_string());
            if let Some(sub) = e.get("layout").and_then(Value::as_str) {
                problems.extend(check_layout(&path, sub));
            } else if is_dir {
                stack.push(path);
            } else {
                check_documented_file(&path, e);
            }
        }
    }
    for e in d["entries"].as_array().unwrap() {
        let p = e["path"].as_str().unwrap();
        if e["required"].as_bool() == Some(true) && !found.contains(p) {
            problems.push(format!(
                "{}: required entry '{p}' of schemas/{layout}.json is missing",
                root.display()
            ));
        }
    }
    problems
}

/// Checks one file against its layout entry: a table's columns against the
/// entry's document, a JSON file's keys against the entry's fields.
fn check_documented_file(path: &Path, e: &Value) {
    let what = path.display().to_string();
    let ext = path.extension().and_then(|x| x.to_str()).unwrap_or("");
    if let Some(name) = e.get("document").and_then(Value::as_str) {
        match ext {
            "parquet" => {
                let b = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap())
                    .unwrap_or_else(|err| panic!("{what}: {err}"));
                if name == "epochs" {
                    assert_epochs_schema_matches(b.schema(), &what);
                } else if name == "pca_path" {
                    // pc1 … pcK, K the components found (the document shows
                    // K = 2): the other columns as documented.
                    let k = b
                        .schema()
                        .fields()
                        .iter()
                        .filter(|f| f.name().starts_with("pc"))
                        .count();
                    assert!(k >= 1, "{what}: no component column");
                    let want = tch_landscape::analysis::pca::path_schema_for(k);
                    let names = |s: &Schema| -> Vec<String> {
                        s.fields().iter().map(|f| f.name().clone()).collect()
                    };
                    assert_eq!(names(b.schema()), names(&want), "{what}");
                    assert_schema_matches(
                        &tch_landscape::analysis::pca::path_schema(),
                        name,
                        "path_schema()",
                    );
                } else {
                    assert_schema_matches(b.schema(), name, &what);
                }
            }
            "arrow" => {
                let r = FileReader::try_new(File::open(path).unwrap(), None)
                    .unwrap_or_else(|err| panic!("{what}: {err}"));
                assert_schema_matches(&r.schema(), name, &what);
            }
            _ => {
                let v: Value =
                    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
                let d = doc(name);
                assert_object_matches(&v, doc_fields(&d, name), &d, &what);
            }
        }
    }
    let json = || -> Value {
        serde_json::from_str(&std::fs::read_to_string(path).unwrap())
            .unwrap_or_else(|err| panic!("{what}: invalid JSON: {err}"))
    };
    if let Some(fields) = e.get("fields").and_then(Value::as_array) {
        assert_object_matches(&json(), fields, e, &what);
    }
    if let Some(items) = e.get("items").and_then(Value::as_array) {
        let v = json();
        let arr = v
            .as_array()
            .unwrap_or_else(|| panic!("{what}: not an array"));
        for (i, item) in arr.iter().enumerate() {
            assert_object_matches(item, items, e, &format!("{what}[{i}]"));
        }
    }
}

#[test]
fn layout_documents_are_complete() {
    // hessian.json is checked on its own (declared_arrow_schemas_match_the_documents).
    let tables: BTreeSet<&str> = DOCS
        .iter()
        .copied()
        .chain(["hessian", "curve", "animation"])
        .collect();
    for name in LAYOUTS {
        let d = doc(name);
        let what = format!("schemas/{name}.json");
        assert_eq!(d["name"].as_str(), Some(name), "{what}");
        assert_eq!(d["kind"].as_str(), Some("layout"), "{what}");
        assert!(d["schema_version"].as_u64().is_some(), "{what}");
        for key in ["directory", "description"] {
            assert!(
                d[key].as_str().is_some_and(|s| !s.is_empty()),
                "{what}: {key}"
            );
        }
        let entries = d["entries"].as_array().unwrap();
        assert!(!entries.is_empty(), "{what}");
        let mut paths = BTreeSet::new();
        for e in entries {
            let p = e["path"].as_str().unwrap_or_else(|| panic!("{what}: path"));
            assert!(paths.insert(p), "{what}: '{p}' twice");
            let kind = e["kind"].as_str();
            assert!(
                matches!(kind, Some("file" | "dir")),
                "{what}: '{p}' kind {kind:?}"
            );
            assert_eq!(kind == Some("dir"), p.ends_with('/'), "{what}: '{p}'");
            assert!(
                e["description"].as_str().is_some_and(|s| s.len() > 10),
                "{what}: '{p}' needs a description"
            );
            if let Some(t) = e.get("document") {
                let t = t.as_str().unwrap();
                assert!(tables.contains(t), "{what}: '{p}' names unknown table {t}");
            }
            if let Some(l) = e.get("layout") {
                let l = l.as_str().unwrap();
                assert!(
                    LAYOUTS.contains(&l),
                    "{what}: '{p}' names unknown layout {l}"
                );
            }
        }
    }
    // The glob the layouts use.
    assert!(glob(
        &["**", ".*.tmp"],
        &["points", ".000001.arrow.9.0.tmp"]
    ));
    assert!(glob(
        &["snapshots", "*.arrow"],
        &["snapshots", "000000.arrow"]
    ));
    assert!(!glob(
        &["snapshots", "*.arrow"],
        &["snapshots", "a", "b.arrow"]
    ));
    assert!(!glob(&["*.png"], &["x.svg"]));
}

/// Every file and directory the demo writes (recording, export, surfaces,
/// PCA, curvature map, report) is documented in the layout documents, with
/// its columns; an undocumented file or a missing required one is found.
#[test]
fn every_file_of_a_demo_run_is_documented() {
    use tch_landscape::demo::{DemoConfig, TrainConfig};
    let out = tempdir();
    let cfg = DemoConfig {
        train: TrainConfig {
            epochs: 2,
            lr_drops: vec![],
            ..Default::default()
        },
        grid_2d: 3,
        grid_1d: 5,
        grid_curvature: 3,
        overwrite: false,
    };
    let s =
        tch_landscape::demo::run(out.path(), &cfg, &mut |_: &str, _: usize, _: usize| {}).unwrap();
    let problems = check_layout(&s.run_dir, "run");
    assert!(problems.is_empty(), "{problems:#?}");
    // Everything the layouts promise was there to be checked.
    for sub in [
        "export/epochs.parquet",
        "pca/pca.json",
        "surfaces/filter-2d/surface.parquet",
        "surfaces/filter-2d/sharpness.json",
        "curvature/ratio-filter-2d/curvature.parquet",
        "report/index.html",
    ] {
        assert!(s.run_dir.join(sub).is_file(), "{sub}");
    }

    // The check finds an undocumented file and a missing required one.
    std::fs::write(s.run_dir.join("export/notes.csv"), b"x").unwrap();
    std::fs::remove_file(s.run_dir.join("pca/pca-path.parquet")).unwrap();
    let problems = check_layout(&s.run_dir, "run");
    assert_eq!(problems.len(), 2, "{problems:#?}");
    assert!(problems[0].contains("notes.csv") || problems[1].contains("notes.csv"));
    assert!(problems.iter().any(|p| p.contains("pca-path.parquet")));
}

/// θ₀'s metrics (`on_train_start`) are rows of snapshot 0, epoch 0, no step,
/// as schemas/metrics.json says; after training began the call is refused.
#[test]
fn theta0_metrics_are_snapshot_zero_rows() {
    let dir = tempdir();
    let vs = nn::VarStore::new(Device::Cpu);
    let _l = nn::linear(vs.root() / "l", 3, 2, Default::default());
    let mut rec = Recorder::builder(dir.path()).build(&vs).unwrap();
    rec.on_train_start(&[("loss", 2.5), ("acc", 10.0)]).unwrap();
    rec.on_epoch_end(1, &[("loss", 1.5)]).unwrap();
    let err = rec.on_train_start(&[("loss", 9.0)]).unwrap_err();
    assert!(err.to_string().contains("on_train_start"), "{err}");
    rec.finish().unwrap();
    let rows = Run::open(dir.path()).unwrap().metrics().unwrap();
    type Row<'a> = (Option<u32>, u64, Option<u64>, &'a str, f64);
    let got: Vec<Row> = rows
        .iter()
        .map(|r| (r.snapshot, r.epoch, r.step, r.name.as_str(), r.value))
        .collect();
    assert_eq!(
        got,
        [
            (Some(0), 0, None, "loss", 2.5),
            (Some(0), 0, None, "acc", 10.0),
            (Some(1), 1, None, "loss", 1.5)
        ]
    );
}
