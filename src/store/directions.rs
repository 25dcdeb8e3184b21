//! The directions file (`schemas/directions.json`): a centre θ* and one or
//! two directions, bit-exact, with their metadata (`DirectionsMeta`) as JSON
//! under [`DIRECTIONS_META_KEY`]. One row per vector × tensor chunk of at
//! most 65,536 values. `Directions::save` and `Directions::load` convert to
//! and from the plain [`TensorRecord`]s written and read here; the loader
//! checks the content hash against the recorded id.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, Float32Array, Int64Array, ListArray, StringArray, UInt32Array, UInt64Array,
};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::store::table::{self, column};
use crate::tensor::Role;

/// Metadata key of the directions file.
pub const DIRECTIONS_META_KEY: &str = "tch_landscape.directions";

/// Values per row of a directions file.
const DIRECTION_CHUNK: usize = 65_536;

/// The vectors of a file, in order: θ*, δ, η.
const VECTORS: [&str; 3] = ["centre", "x", "y"];

/// Schema of a directions file.
pub fn directions_schema() -> SchemaRef {
    let list = |item| DataType::List(Arc::new(Field::new("item", item, false)));
    Arc::new(Schema::new(vec![
        Field::new("vector", DataType::Utf8, false),
        Field::new("tensor", DataType::Utf8, false),
        Field::new("role", DataType::Utf8, false),
        Field::new("shape", list(DataType::Int64), false),
        Field::new("chunk", DataType::UInt32, false),
        Field::new("offset", DataType::UInt64, false),
        Field::new("values", list(DataType::Float32), false),
    ]))
}

/// One tensor of one vector of a directions file, as written and read.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TensorRecord {
    /// Tensor name.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// Its shape.
    pub shape: Vec<i64>,
    /// Its values, flattened (row-major).
    pub values: Vec<f32>,
}

/// Writes a directions file as zstd Parquet (`schemas/directions.json`),
/// atomically: `meta` as JSON under [`DIRECTIONS_META_KEY`], then the
/// tensors of each vector in order (centre, x, then y if given). Each
/// vector's tensors are produced one at a time, so only one tensor's values
/// are held here at once; the first error ends the write.
pub(crate) fn write<M, V>(path: &Path, meta: &M, vectors: impl IntoIterator<Item = V>) -> Result<()>
where
    M: Serialize,
    V: IntoIterator<Item = Result<TensorRecord>>,
{
    let meta = [table::json_entry(path, DIRECTIONS_META_KEY, meta)?];
    table::write_parquet(path, directions_schema(), &meta, |sink| {
        for (tensors, vector) in vectors.into_iter().zip(VECTORS) {
            for t in tensors {
                let batch = tensor_rows(vector, t?).map_err(|e| Error::arrow(path, e))?;
                sink.write(&batch)?;
            }
        }
        Ok(())
    })?;
    Ok(())
}

/// Reads a directions file written by [`write`]: its metadata and the
/// tensors of the centre, x and y (empty when the file has one direction),
/// checking the columns and that every tensor holds as many values as its
/// shape says.
pub(crate) fn read<M: DeserializeOwned>(path: &Path) -> Result<(M, [Vec<TensorRecord>; 3])> {
    let table = table::read_parquet(path, &directions_schema(), "a directions file")?;
    let meta: M = table.json_meta(path, DIRECTIONS_META_KEY, "a directions file")?;
    let mut sets: [Vec<TensorRecord>; 3] = Default::default();
    // Each batch is dropped once its values are copied.
    for batch in table.batches {
        read_rows(&batch, path, &mut sets)?;
    }
    for t in sets.iter().flatten() {
        check_len(t, path)?;
    }
    Ok((meta, sets))
}

/// Appends the rows of `batch` to the tensors of their vector in `sets`
/// (a tensor's chunks follow each other).
fn read_rows(batch: &RecordBatch, path: &Path, sets: &mut [Vec<TensorRecord>; 3]) -> Result<()> {
    let corrupt = |r: String| Error::corrupt(path, r);
    let vector = column::<StringArray>(batch, 0, path)?;
    let tensor = column::<StringArray>(batch, 1, path)?;
    let role = column::<StringArray>(batch, 2, path)?;
    let shape = column::<ListArray>(batch, 3, path)?;
    let values = column::<ListArray>(batch, 6, path)?;
    for r in 0..batch.num_rows() {
        let v = VECTORS
            .iter()
            .position(|&name| name == vector.value(r))
            .ok_or_else(|| corrupt(format!("unknown vector '{}'", vector.value(r))))?;
        let name = tensor.value(r);
        let vals = values.value(r);
        let vals = vals
            .as_any()
            .downcast_ref::<Float32Array>()
            .ok_or_else(|| corrupt("values are not float32".into()))?;
        let set = &mut sets[v];
        match set.last_mut() {
            Some(last) if last.name == name => last.values.extend_from_slice(vals.values()),
            _ => {
                let role = match role.value(r) {
                    "weight" => Role::Weight,
                    "bias" => Role::Bias,
                    "buffer" => Role::Buffer,
                    other => return Err(corrupt(format!("unknown role '{other}'"))),
                };
                let shp = shape.value(r);
                let shp = shp
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .ok_or_else(|| corrupt("shape is not int64".into()))?;
                set.push(TensorRecord {
                    name: name.to_string(),
                    role,
                    shape: shp.values().to_vec(),
                    values: vals.values().to_vec(),
                });
            }
        }
    }
    Ok(())
}

/// Checks that `t` holds as many values as its shape says.
fn check_len(t: &TensorRecord, path: &Path) -> Result<()> {
    let numel = t
        .shape
        .iter()
        .try_fold(1i64, |n, &s| (s >= 0).then(|| n.checked_mul(s)).flatten());
    if numel.and_then(|n| usize::try_from(n).ok()) != Some(t.values.len()) {
        return Err(Error::corrupt(
            path,
            format!(
                "tensor '{}' has {} values for shape {:?}",
                t.name,
                t.values.len(),
                t.shape
            ),
        ));
    }
    Ok(())
}

/// The rows of one tensor of `vector`: its values in chunks of at most
/// [`DIRECTION_CHUNK`] (moved into the batch, not copied).
fn tensor_rows(
    vector: &str,
    t: TensorRecord,
) -> std::result::Result<RecordBatch, arrow::error::ArrowError> {
    let n = t.values.len();
    let n_chunks = n.div_ceil(DIRECTION_CHUNK).max(1);
    let offsets: Vec<i32> = (0..=n_chunks)
        .map(|c| (c * DIRECTION_CHUNK).min(n) as i32)
        .collect();
    let shape = &t.shape;
    let shape_offsets: Vec<i32> = (0..=n_chunks).map(|c| (c * shape.len()) as i32).collect();
    let shape_values: Vec<i64> = (0..n_chunks).flat_map(|_| shape.iter().copied()).collect();
    let item = |dt| Arc::new(Field::new("item", dt, false));
    let cols: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec![vector; n_chunks])),
        Arc::new(StringArray::from(vec![t.name.as_str(); n_chunks])),
        Arc::new(StringArray::from(vec![t.role.as_str(); n_chunks])),
        Arc::new(ListArray::try_new(
            item(DataType::Int64),
            OffsetBuffer::new(shape_offsets.into()),
            Arc::new(Int64Array::from(shape_values)),
            None,
        )?),
        Arc::new(UInt32Array::from_iter_values(0..n_chunks as u32)),
        Arc::new(UInt64Array::from_iter_values(
            (0..n_chunks).map(|c| (c * DIRECTION_CHUNK) as u64),
        )),
        Arc::new(ListArray::try_new(
            item(DataType::Float32),
            OffsetBuffer::new(offsets.into()),
            Arc::new(Float32Array::from(t.values)),
            None,
        )?),
    ];
    RecordBatch::try_new(directions_schema(), cols)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str, role: Role, shape: &[i64], seed: f32) -> TensorRecord {
        let n = shape.iter().product::<i64>() as usize;
        TensorRecord {
            name: name.into(),
            role,
            shape: shape.to_vec(),
            values: (0..n).map(|i| seed + i as f32 * 0.5).collect(),
        }
    }

    fn ok(v: Vec<TensorRecord>) -> Vec<Result<TensorRecord>> {
        v.into_iter().map(Ok).collect()
    }

    #[test]
    fn records_round_trip_bit_exactly_over_several_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.parquet");
        let mut w = record("w", Role::Weight, &[70_000, 2], 1.0);
        w.values[3] = -0.0;
        w.values[140_000 - 1] = f32::NAN;
        let centre = vec![
            record("b", Role::Bias, &[3], 0.0),
            w,
            record("s", Role::Buffer, &[], 7.0),
        ];
        let x = vec![record("b", Role::Bias, &[3], -1.0)];
        let y = vec![record("b", Role::Bias, &[3], 2.0)];
        let meta = serde_json::json!({ "id": "abc", "n_directions": 2 });
        write(
            &p,
            &meta,
            [ok(centre.clone()), ok(x.clone()), ok(y.clone())],
        )
        .unwrap();
        let (back_meta, [c, bx, by]): (serde_json::Value, _) = read(&p).unwrap();
        assert_eq!(back_meta, meta);
        let bits = |v: &[TensorRecord]| -> Vec<(String, Role, Vec<i64>, Vec<u32>)> {
            v.iter()
                .map(|t| {
                    let b = t.values.iter().map(|x| x.to_bits()).collect();
                    (t.name.clone(), t.role, t.shape.clone(), b)
                })
                .collect()
        };
        assert_eq!(bits(&c), bits(&centre));
        assert_eq!((bits(&bx), bits(&by)), (bits(&x), bits(&y)));
        // The 140,000 values are in three rows of at most 65,536.
        let t = table::read_parquet(&p, &directions_schema(), "a directions file").unwrap();
        let rows: usize = t.batches.iter().map(|b| b.num_rows()).sum();
        assert_eq!(rows, 1 + 3 + 1 + 1 + 1);

        write(&p, &meta, [ok(centre), ok(x)]).unwrap();
        let (_, [_, _, y]): (serde_json::Value, _) = read(&p).unwrap();
        assert!(y.is_empty());
    }

    #[test]
    fn a_short_tensor_a_failed_tensor_or_a_foreign_table_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.parquet");
        let mut short = record("w", Role::Weight, &[3, 2], 0.0);
        short.values.pop();
        write(&p, &serde_json::json!({}), [ok(vec![short])]).unwrap();
        let e = read::<serde_json::Value>(&p).unwrap_err();
        assert!(matches!(e, Error::Corrupt { .. }), "{e}");
        assert!(e.to_string().contains("5 values for shape [3, 2]"), "{e}");

        let failed = vec![Err(Error::corrupt(&p, "no values"))];
        let e = write(&p, &serde_json::json!({}), [failed]).unwrap_err();
        assert!(e.to_string().contains("no values"), "{e}");

        let other = dir.path().join("other.parquet");
        let batch = tensor_rows("x", record("b", Role::Bias, &[3], 0.0)).unwrap();
        table::write_parquet_batch(&other, &batch, &[]).unwrap();
        let e = read::<serde_json::Value>(&other).unwrap_err().to_string();
        assert!(e.contains(DIRECTIONS_META_KEY), "{e}");
    }
}
