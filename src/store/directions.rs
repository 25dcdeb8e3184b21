//! The directions file (`schemas/directions.json`): a centre θ* and one or
//! two directions, bit-exact, with their [`DirectionsMeta`] as JSON under
//! [`DIRECTIONS_META_KEY`]. One row per vector × tensor chunk of at most
//! 65,536 values; the content hash is checked on load.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, Float32Array, Int64Array, ListArray, StringArray, UInt32Array, UInt64Array,
};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use tch::Tensor;

use crate::analysis::directions::{Directions, DirectionsMeta};
use crate::analysis::params::{NamedTensor, ParamSet};
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

impl Directions {
    /// Saves centre and directions as zstd Parquet (`schemas/directions.json`),
    /// atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let meta = serde_json::to_string(&self.meta).map_err(|source| Error::Json {
            path: path.to_path_buf(),
            source,
        })?;
        let meta = [(DIRECTIONS_META_KEY.to_string(), meta)];
        table::write_parquet(path, directions_schema(), &meta, |sink| {
            for (set, vector) in std::iter::once(&self.centre).chain(&self.dirs).zip(VECTORS) {
                for t in &set.tensors {
                    let values = t
                        .tensor
                        .f_flatten(0, -1)
                        .and_then(Vec::<f32>::try_from)
                        .map_err(|e| Error::torch(format!("reading '{}'", t.name), e))?;
                    let batch =
                        tensor_rows(vector, t, values).map_err(|e| Error::arrow(path, e))?;
                    sink.write(&batch)?;
                }
            }
            Ok(())
        })?;
        Ok(())
    }

    /// Loads directions saved by [`Directions::save`], checking the columns,
    /// every tensor's length, the shapes against the centre and the content
    /// hash against the recorded id.
    pub fn load(path: &Path) -> Result<Directions> {
        let table = table::read_parquet(path, &directions_schema(), "a directions file")?;
        let meta: DirectionsMeta =
            table.json_meta(path, DIRECTIONS_META_KEY, "a directions file")?;
        let mut sets: [Vec<LoadedTensor>; 3] = Default::default();
        // Each batch is dropped once its values are copied.
        for batch in table.batches {
            read_rows(&batch, path, &mut sets)?;
        }
        let corrupt = |r: String| Error::corrupt(path, r);
        let [c, x, y] = sets;
        let centre = to_set(c, path)?;
        let mut dirs = vec![to_set(x, path)?];
        if !y.is_empty() {
            dirs.push(to_set(y, path)?);
        }
        for d in &dirs {
            centre.check_compatible(d, &format!("directions file {}", path.display()))?;
        }
        if dirs.len() != meta.n_directions {
            return Err(corrupt(format!(
                "metadata says {} directions, file holds {}",
                meta.n_directions,
                dirs.len()
            )));
        }
        let loaded = Directions { meta, centre, dirs };
        let id = loaded.content_hash();
        if id != loaded.meta.id {
            return Err(corrupt(format!(
                "content hash {id} differs from the recorded id {}",
                loaded.meta.id
            )));
        }
        Ok(loaded)
    }
}

/// One tensor read from a directions file: name, role, shape, values.
struct LoadedTensor {
    name: String,
    role: Role,
    shape: Vec<i64>,
    values: Vec<f32>,
}

/// Appends the rows of `batch` to the tensors of their vector in `sets`
/// (a tensor's chunks follow each other).
fn read_rows(batch: &RecordBatch, path: &Path, sets: &mut [Vec<LoadedTensor>; 3]) -> Result<()> {
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
                set.push(LoadedTensor {
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

/// The tensors of one vector as a [`ParamSet`], each checked to hold as many
/// values as its shape says.
fn to_set(rows: Vec<LoadedTensor>, path: &Path) -> Result<ParamSet> {
    let mut tensors = Vec::with_capacity(rows.len());
    for t in rows {
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
        let tensor = Tensor::from_slice(&t.values)
            .f_reshape(t.shape.as_slice())
            .map_err(|e| {
                Error::torch(
                    format!("rebuilding '{}' from {}", t.name, path.display()),
                    e,
                )
            })?;
        tensors.push(NamedTensor {
            name: t.name,
            role: t.role,
            tensor,
        });
    }
    Ok(ParamSet { tensors })
}

/// The rows of one tensor of `vector`: its values in chunks of at most
/// [`DIRECTION_CHUNK`].
fn tensor_rows(
    vector: &str,
    t: &NamedTensor,
    values: Vec<f32>,
) -> std::result::Result<RecordBatch, arrow::error::ArrowError> {
    let n = values.len();
    let n_chunks = n.div_ceil(DIRECTION_CHUNK).max(1);
    let offsets: Vec<i32> = (0..=n_chunks)
        .map(|c| (c * DIRECTION_CHUNK).min(n) as i32)
        .collect();
    let shape = t.tensor.size();
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
            Arc::new(Float32Array::from(values)),
            None,
        )?),
    ];
    RecordBatch::try_new(directions_schema(), cols)
}

#[cfg(test)]
mod tests {
    use tch::Kind;

    use super::*;

    fn set(shape: &[i64]) -> ParamSet {
        ParamSet {
            tensors: vec![
                NamedTensor {
                    name: "b".into(),
                    role: Role::Bias,
                    tensor: Tensor::randn([shape[0]], (Kind::Float, tch::Device::Cpu)),
                },
                NamedTensor {
                    name: "w".into(),
                    role: Role::Weight,
                    tensor: Tensor::randn(shape, (Kind::Float, tch::Device::Cpu)),
                },
            ],
        }
    }

    #[test]
    fn save_load_round_trip_is_bit_exact_over_several_chunks() {
        let c = set(&[70_000, 2]);
        let d = Directions::random(&c)
            .seed(1)
            .normalization(crate::analysis::directions::Normalization::Layer)
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.parquet");
        d.save(&p).unwrap();
        let back = Directions::load(&p).unwrap();
        assert_eq!(back.meta, d.meta);
        for (a, b) in back
            .dirs
            .iter()
            .chain([&back.centre])
            .zip(d.dirs.iter().chain([&c]))
        {
            for (x, y) in a.tensors.iter().zip(&b.tensors) {
                assert_eq!((&x.name, x.role), (&y.name, y.role));
                assert!(x.tensor.equal(&y.tensor), "'{}'", x.name);
            }
        }
        let line = Directions::interpolation(&c, &set(&[70_000, 2])).unwrap();
        line.save(&p).unwrap();
        assert_eq!(Directions::load(&p).unwrap().meta, line.meta);
    }

    #[test]
    fn a_changed_value_or_foreign_table_is_refused() {
        let c = set(&[3, 2]);
        let d = Directions::random(&c).seed(2).build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.parquet");
        let mut changed = d.clone();
        changed.dirs[0].tensors[1].tensor = changed.dirs[0].tensors[1].tensor.ones_like();
        changed.save(&p).unwrap();
        let e = Directions::load(&p).unwrap_err().to_string();
        assert!(e.contains("content hash"), "{e}");
        let other = dir.path().join("other.parquet");
        let batch = tensor_rows("x", &c.tensors[0], vec![0.0; 3]).unwrap();
        table::write_parquet_batch(&other, &batch, &[]).unwrap();
        let e = Directions::load(&other).unwrap_err().to_string();
        assert!(e.contains(DIRECTIONS_META_KEY), "{e}");
    }
}
