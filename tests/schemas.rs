//! `schemas/*.json` document every on-disk table and the manifest. These tests
//! check that what the code declares and what it actually writes match the
//! documents field by field: names, types, nullability, JSON types, enums.

mod common;

use std::collections::BTreeSet;
use std::fs::File;
use std::path::Path;

use arrow::datatypes::{DataType, Field, Schema};
use arrow::ipc::reader::FileReader;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::Value;
use tch::nn::{self, ModuleT};
use tch::{Device, Kind, Tensor};

use common::*;
use tch_landscape::data::digits::Digits;
use tch_landscape::store::export::{export_parquet, summary_schema, trajectory_schema};
use tch_landscape::store::manifest::{StorageDtype, MANIFEST_FILE, SCHEMA_VERSION};
use tch_landscape::store::metrics::{metrics_schema, METRICS_FILE};
use tch_landscape::store::snapshot::{snapshot_schema, SNAPSHOT_DIR, SNAPSHOT_META_KEY};
use tch_landscape::{Recorder, Run};

const DOCS: [&str; 12] = [
    "manifest",
    "snapshot",
    "metrics",
    "trajectory",
    "summary",
    "surface_points",
    "directions",
    "curvature",
    "pca_variance",
    "pca_path",
    "pca_tensors",
    "pca_plane_check",
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
    assert_eq!(
        got, documented,
        "{what}: keys differ from the documented fields"
    );
    for f in fields {
        let name = f["name"].as_str().unwrap();
        let v = &map[name];
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
        assert_eq!(
            d["schema_version"].as_u64(),
            Some(SCHEMA_VERSION as u64),
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
        &surface::points_schema(),
        "surface_points",
        "points_schema()",
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
    assert_schema_matches(&pca::variance_schema(), "pca_variance", "variance_schema()");
    assert_schema_matches(&pca::path_schema(), "pca_path", "path_schema()");
    assert_schema_matches(&pca::tensors_schema(), "pca_tensors", "tensors_schema()");
    assert_schema_matches(
        &pca::plane_check_schema(),
        "pca_plane_check",
        "plane_check_schema()",
    );
    assert_schema_matches(&metrics_schema(), "metrics", "metrics_schema()");
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
        .build(&vs)
        .unwrap();
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

#[test]
fn written_parquet_files_match_the_documents() {
    let dir = tempdir();
    record_full_run(dir.path());
    let run = Run::open(dir.path()).unwrap();
    let out = dir.path().join("export");
    let summary = export_parquet(&run, &out, 1000).unwrap();
    for (path, name) in [
        (&summary.trajectory, "trajectory"),
        (&summary.summary, "summary"),
        (&summary.metrics, "metrics"),
    ] {
        let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap()).unwrap();
        let what = format!("{}", path.display());
        assert_schema_matches(builder.schema(), name, &what);
        // Documented key/value metadata is present with the run id.
        let kv = builder
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .cloned()
            .unwrap_or_default();
        let d = doc(name);
        for m in d["parquet_metadata"].as_array().unwrap() {
            let key = m["key"].as_str().unwrap();
            let found = kv
                .iter()
                .find(|e| e.key == key)
                .unwrap_or_else(|| panic!("{what}: no '{key}'"));
            assert_eq!(found.value.as_deref(), Some(run.manifest().run_id.as_str()));
        }
        let rows: usize = builder
            .build()
            .unwrap()
            .map(|b| b.unwrap().num_rows())
            .sum();
        assert!(rows > 0, "{what}: empty");
    }
}
