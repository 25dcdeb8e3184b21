//! Directions in parameter space (§3, §4 of the paper): seeded random
//! directions with filter-, layer- or no normalization; the direction between
//! two snapshots (1-D linear interpolation); the plane through three snapshots.
//!
//! A [`Directions`] value carries its centre θ* (the point the grid is laid
//! around) and one or two direction vectors δ, η; a grid point (α, β) is
//! θ* + αδ + βη. Directions are saved to Parquet with their seed and settings
//! in metadata and load back bit-identically, so a surface can be recomputed
//! or extended later.
//!
//! Random values come from ChaCha8 seeded with the user's seed (value-stable
//! across platforms and crate versions), drawn as standard normals tensor by
//! tensor in name order, all of δ before η.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, Float32Array, Int64Array, ListArray, StringArray, UInt32Array,
};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::analysis::params::{NamedTensor, ParamSet};
use crate::error::{Error, Result};
use crate::store::manifest::Role;

/// How random directions are scaled relative to the centre θ* (§4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Normalization {
    /// Each filter (slice along dim 0) gets the norm of θ*'s filter: the
    /// paper's filter normalization.
    Filter,
    /// Each tensor gets the norm of θ*'s tensor.
    Layer,
    /// Raw Gaussian values (misleading across models; kept for comparison).
    None,
}

/// What random directions do for tensors with at most one dimension
/// (biases, BatchNorm γ/β).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ignore {
    /// Zero direction: they stay at θ* (reference default "ignore biasbn").
    BiasAndBn,
    /// The reference's other option: with filter or layer normalization
    /// their direction is a copy of θ*'s values; without normalization, the
    /// raw Gaussian.
    Nothing,
}

/// How the directions were made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DirectionKind {
    /// Seeded random directions.
    Random,
    /// From the centre to a second point (1-D linear interpolation).
    Interpolation,
    /// The plane through three points.
    ThreePoint,
    /// Principal components of a trajectory.
    Pca,
    /// Given by the user.
    Custom,
}

/// Settings and provenance of a set of directions, stored in metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DirectionsMeta {
    /// Content hash of centre and directions (hex): equal ids, equal values.
    pub id: String,
    /// How they were made.
    pub kind: DirectionKind,
    /// Seed of random directions.
    pub seed: Option<u64>,
    /// Normalization of random directions (`None` when not random).
    pub normalization: Option<Normalization>,
    /// Treatment of 1-D tensors by random directions.
    pub ignore: Option<Ignore>,
    /// `fixed` (BN running stats held at θ*) or `interpolated` (they move
    /// with the direction, as between two minimizers).
    pub bn_stats: String,
    /// Number of directions (1 or 2).
    pub n_directions: usize,
    /// Free text: where the centre and end points came from.
    pub description: String,
    /// Extra key/values (e.g. PCA explained variance).
    pub extra: BTreeMap<String, String>,
}

/// A centre θ* and one or two directions.
#[derive(Debug, Clone)]
pub struct Directions {
    /// Provenance and settings.
    pub meta: DirectionsMeta,
    /// θ*, the point at grid coordinates (0, 0).
    pub centre: ParamSet,
    /// δ (and η).
    pub dirs: Vec<ParamSet>,
}

/// Metadata key of the directions file.
pub const DIRECTIONS_META_KEY: &str = "tch_landscape.directions";

impl Directions {
    /// Two random directions around `centre` (a plane for 2-D surfaces).
    pub fn random_plane(
        centre: &ParamSet,
        seed: u64,
        norm: Normalization,
        ignore: Ignore,
    ) -> Result<Directions> {
        Self::random(centre, 2, seed, norm, ignore)
    }

    /// One random direction around `centre` (for 1-D slices).
    pub fn random_line(
        centre: &ParamSet,
        seed: u64,
        norm: Normalization,
        ignore: Ignore,
    ) -> Result<Directions> {
        Self::random(centre, 1, seed, norm, ignore)
    }

    /// Convenience: a random plane around the current variables of `vs`.
    pub fn random_plane_at(
        vs: &tch::nn::VarStore,
        seed: u64,
        norm: Normalization,
        ignore: Ignore,
    ) -> Result<Directions> {
        Self::random_plane(&ParamSet::from_varstore(vs)?, seed, norm, ignore)
    }

    /// `n` random directions around `centre`.
    pub fn random(
        centre: &ParamSet,
        n: usize,
        seed: u64,
        norm: Normalization,
        ignore: Ignore,
    ) -> Result<Directions> {
        if !(1..=2).contains(&n) {
            return Err(Error::invalid(
                "number of directions",
                format!("must be 1 or 2, got {n}"),
            ));
        }
        if centre.tensors.is_empty() {
            return Err(Error::invalid("centre", "has no tensors"));
        }
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut dirs = Vec::with_capacity(n);
        for _ in 0..n {
            dirs.push(centre.map(|t| {
                let numel = t.tensor.numel();
                let v: Vec<f32> = (0..numel)
                    .map(|_| StandardNormal.sample(&mut rng))
                    .collect();
                let d = Tensor::from_slice(&v).reshape(t.tensor.size());
                shape_direction(d, t, norm, ignore)
            }));
        }
        Ok(Self::assemble(
            DirectionsMeta {
                id: String::new(),
                kind: DirectionKind::Random,
                seed: Some(seed),
                normalization: Some(norm),
                ignore: Some(ignore),
                bn_stats: "fixed".into(),
                n_directions: n,
                description: String::new(),
                extra: BTreeMap::new(),
            },
            centre.clone(),
            dirs,
        ))
    }

    /// The line from `a` (α = 0) to `b` (α = 1): θ(α) = (1−α)a + αb. Every
    /// tensor moves, BN running stats included (they are part of θ here).
    pub fn interpolation(a: &ParamSet, b: &ParamSet) -> Result<Directions> {
        let d = b.sub(a)?;
        Ok(Self::assemble(
            Self::endpoint_meta(DirectionKind::Interpolation, 1),
            a.clone(),
            vec![d],
        ))
    }

    /// The plane through `a`, `b`, `c`: centre `a`, δ = b − a, η = c − a, so
    /// (0,0) = a, (1,0) = b, (0,1) = c. BN running stats move too.
    pub fn three_point(a: &ParamSet, b: &ParamSet, c: &ParamSet) -> Result<Directions> {
        let d1 = b.sub(a)?;
        let d2 = c.sub(a)?;
        Ok(Self::assemble(
            Self::endpoint_meta(DirectionKind::ThreePoint, 2),
            a.clone(),
            vec![d1, d2],
        ))
    }

    /// Directions given by the user (checked against `centre`).
    pub fn custom(
        centre: ParamSet,
        dirs: Vec<ParamSet>,
        kind: DirectionKind,
        description: impl Into<String>,
    ) -> Result<Directions> {
        if !(1..=2).contains(&dirs.len()) {
            return Err(Error::invalid(
                "directions",
                format!("need 1 or 2, got {}", dirs.len()),
            ));
        }
        for d in &dirs {
            centre.check_compatible(d, "a direction")?;
        }
        let mut meta = Self::endpoint_meta(kind, dirs.len());
        meta.bn_stats = "fixed".into();
        meta.description = description.into();
        Ok(Self::assemble(meta, centre, dirs))
    }

    fn endpoint_meta(kind: DirectionKind, n: usize) -> DirectionsMeta {
        DirectionsMeta {
            id: String::new(),
            kind,
            seed: None,
            normalization: None,
            ignore: None,
            bn_stats: "interpolated".into(),
            n_directions: n,
            description: String::new(),
            extra: BTreeMap::new(),
        }
    }

    fn assemble(mut meta: DirectionsMeta, centre: ParamSet, dirs: Vec<ParamSet>) -> Directions {
        meta.n_directions = dirs.len();
        let mut d = Directions { meta, centre, dirs };
        d.meta.id = d.content_hash();
        d
    }

    /// Sets the free-text description (provenance) and returns self.
    pub fn with_description(mut self, text: impl Into<String>) -> Self {
        self.meta.description = text.into();
        self
    }

    /// Number of directions.
    pub fn len(&self) -> usize {
        self.dirs.len()
    }

    /// True when there is no direction (never, for a constructed value).
    pub fn is_empty(&self) -> bool {
        self.dirs.is_empty()
    }

    /// θ* + αδ (+ βη), tensor by tensor.
    pub fn point(&self, alpha: f64, beta: f64) -> ParamSet {
        let mut out = self.centre.clone();
        self.point_into(alpha, beta, &mut out);
        out
    }

    /// Writes θ* + αδ (+ βη) into `out` (same layout as the centre), always
    /// from θ*, never by accumulating steps.
    pub fn point_into(&self, alpha: f64, beta: f64, out: &mut ParamSet) {
        tch::no_grad(|| {
            for (k, o) in out.tensors.iter_mut().enumerate() {
                let d: Vec<&Tensor> = self.dirs.iter().map(|d| &d.tensors[k].tensor).collect();
                o.tensor
                    .copy_(&combine(&self.centre.tensors[k].tensor, &d, alpha, beta));
            }
        })
    }

    /// FNV-1a over names, shapes and value bits of centre and directions.
    fn content_hash(&self) -> String {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut feed = |bytes: &[u8]| {
            for &b in bytes {
                h ^= b as u64;
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
        };
        for set in std::iter::once(&self.centre).chain(&self.dirs) {
            for t in &set.tensors {
                feed(t.name.as_bytes());
                for s in t.tensor.size() {
                    feed(&s.to_le_bytes());
                }
                let v = Vec::<f32>::try_from(t.tensor.flatten(0, -1)).unwrap_or_default();
                for x in v {
                    feed(&x.to_bits().to_le_bytes());
                }
            }
        }
        format!("{h:016x}")
    }

    /// Saves centre and directions as zstd Parquet (`schemas/directions.json`).
    pub fn save(&self, path: &Path) -> Result<()> {
        let meta_json = serde_json::to_string(&self.meta).map_err(|source| Error::Json {
            path: path.to_path_buf(),
            source,
        })?;
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(
                ZstdLevel::try_new(3).expect("valid level"),
            ))
            .set_key_value_metadata(Some(vec![KeyValue::new(
                DIRECTIONS_META_KEY.to_string(),
                meta_json,
            )]))
            .build();
        let pq_err = |source| Error::Parquet {
            path: path.to_path_buf(),
            source,
        };
        crate::store::fsutil::write_atomic(path, true, |w| {
            let mut writer =
                ArrowWriter::try_new(w, directions_schema(), Some(props)).map_err(pq_err)?;
            let names = ["centre", "x", "y"];
            for (v, set) in std::iter::once(&self.centre).chain(&self.dirs).enumerate() {
                for t in &set.tensors {
                    let values = Vec::<f32>::try_from(t.tensor.flatten(0, -1))
                        .map_err(|e| Error::torch(format!("reading '{}'", t.name), e))?;
                    let batch =
                        tensor_rows(names[v], t, values).map_err(|e| Error::arrow(path, e))?;
                    writer.write(&batch).map_err(pq_err)?;
                }
            }
            writer.close().map_err(pq_err)?;
            Ok(())
        })
    }

    /// Loads directions saved by [`Directions::save`].
    pub fn load(path: &Path) -> Result<Directions> {
        let file = File::open(path).map_err(|e| Error::io("opening", path, e))?;
        let corrupt = |r: String| Error::corrupt(path, r);
        let builder = ParquetRecordBatchReaderBuilder::try_new(file)
            .map_err(|e| corrupt(format!("not a Parquet file ({e})")))?;
        let meta_json = builder
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .and_then(|kv| kv.iter().find(|k| k.key == DIRECTIONS_META_KEY))
            .and_then(|k| k.value.clone())
            .ok_or_else(|| {
                corrupt(format!(
                    "no '{DIRECTIONS_META_KEY}' metadata: not a directions file"
                ))
            })?;
        let meta: DirectionsMeta = serde_json::from_str(&meta_json)
            .map_err(|e| corrupt(format!("bad directions metadata ({e})")))?;
        if builder.schema().fields() != directions_schema().fields() {
            return Err(corrupt("columns differ from the directions schema".into()));
        }
        let reader = builder.build().map_err(|e| corrupt(e.to_string()))?;
        // (vector, tensor) -> (role, shape, values in chunk order)
        let mut sets: [Vec<LoadedTensor>; 3] = Default::default();
        for batch in reader {
            let batch = batch.map_err(|e| corrupt(e.to_string()))?;
            let vector = downcast::<StringArray>(&batch, 0);
            let tensor = downcast::<StringArray>(&batch, 1);
            let role = downcast::<StringArray>(&batch, 2);
            let shape = downcast::<ListArray>(&batch, 3);
            let values = downcast::<ListArray>(&batch, 6);
            for r in 0..batch.num_rows() {
                let v = match vector.value(r) {
                    "centre" => 0,
                    "x" => 1,
                    "y" => 2,
                    other => return Err(corrupt(format!("unknown vector '{other}'"))),
                };
                let name = tensor.value(r);
                let vals = values.value(r);
                let vals = vals
                    .as_any()
                    .downcast_ref::<Float32Array>()
                    .ok_or_else(|| corrupt("values are not float32".into()))?;
                let set = &mut sets[v];
                if set.last().map(|l| l.0.as_str()) != Some(name) {
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
                    set.push((name.to_string(), role, shp.values().to_vec(), Vec::new()));
                }
                set.last_mut()
                    .expect("pushed above")
                    .3
                    .extend_from_slice(vals.values());
            }
        }
        let to_set = |rows: Vec<LoadedTensor>| -> Result<ParamSet> {
            let mut tensors = Vec::with_capacity(rows.len());
            for (name, role, shape, values) in rows {
                let numel: i64 = shape.iter().product();
                if numel as usize != values.len() {
                    return Err(corrupt(format!(
                        "tensor '{name}' has {} values for shape {shape:?}",
                        values.len()
                    )));
                }
                tensors.push(NamedTensor {
                    name,
                    role,
                    tensor: Tensor::from_slice(&values).reshape(shape.as_slice()),
                });
            }
            Ok(ParamSet { tensors })
        };
        let [c, x, y] = sets;
        let centre = to_set(c)?;
        let mut dirs = vec![to_set(x)?];
        if !y.is_empty() {
            dirs.push(to_set(y)?);
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

    /// Checks that the directions fit the variables of `vs` (names and shapes).
    pub fn check_model(&self, vs: &tch::nn::VarStore) -> Result<()> {
        let vars = vs.variables();
        for t in &self.centre.tensors {
            crate::tensor::model_variable(
                &vars,
                &t.name,
                &t.tensor.size(),
                "the model (the directions were made for another model)",
            )
            .map(drop)?;
        }
        Ok(())
    }
}

/// c + α·d₀ (+ β·d₁): one tensor of the point (α, β), computed from the
/// centre every time.
pub fn combine(c: &Tensor, d: &[&Tensor], alpha: f64, beta: f64) -> Tensor {
    let mut v = c + d[0] * alpha;
    if let Some(d1) = d.get(1) {
        v += *d1 * beta;
    }
    v
}

/// (name, role, shape, values) of one tensor read from a directions file.
type LoadedTensor = (String, Role, Vec<i64>, Vec<f32>);

fn downcast<T: 'static>(batch: &RecordBatch, i: usize) -> &T {
    batch
        .column(i)
        .as_any()
        .downcast_ref::<T>()
        .expect("schema checked")
}

/// Values per row of a directions file.
const DIRECTION_CHUNK: usize = 65_536;

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
    let cols: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec![vector; n_chunks])),
        Arc::new(StringArray::from(vec![t.name.as_str(); n_chunks])),
        Arc::new(StringArray::from(vec![t.role.as_str(); n_chunks])),
        Arc::new(ListArray::try_new(
            Arc::new(Field::new("item", DataType::Int64, false)),
            OffsetBuffer::new(shape_offsets.into()),
            Arc::new(Int64Array::from(shape_values)),
            None,
        )?),
        Arc::new(UInt32Array::from_iter_values(0..n_chunks as u32)),
        Arc::new(arrow::array::UInt64Array::from_iter_values(
            (0..n_chunks).map(|c| (c * DIRECTION_CHUNK) as u64),
        )),
        Arc::new(ListArray::try_new(
            Arc::new(Field::new("item", DataType::Float32, false)),
            OffsetBuffer::new(offsets.into()),
            Arc::new(Float32Array::from(values)),
            None,
        )?),
    ];
    RecordBatch::try_new(directions_schema(), cols)
}

/// Schema of a directions file.
pub fn directions_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("vector", DataType::Utf8, false),
        Field::new("tensor", DataType::Utf8, false),
        Field::new("role", DataType::Utf8, false),
        Field::new(
            "shape",
            DataType::List(Arc::new(Field::new("item", DataType::Int64, false))),
            false,
        ),
        Field::new("chunk", DataType::UInt32, false),
        Field::new("offset", DataType::UInt64, false),
        Field::new(
            "values",
            DataType::List(Arc::new(Field::new("item", DataType::Float32, false))),
            false,
        ),
    ]))
}

/// Applies the normalization and 1-D policy to a raw Gaussian `d` for the
/// centre tensor `t`.
fn shape_direction(d: Tensor, t: &NamedTensor, norm: Normalization, ignore: Ignore) -> Tensor {
    match t.role {
        // BN running statistics are held fixed (§3).
        Role::Buffer => d.zeros_like(),
        Role::Bias => match (ignore, norm) {
            (Ignore::BiasAndBn, _) => d.zeros_like(),
            (Ignore::Nothing, Normalization::None) => d,
            (Ignore::Nothing, _) => t.tensor.copy(),
        },
        Role::Weight => normalize(d, &t.tensor, norm),
    }
}

/// Scales `d` to the norms of `theta` per filter (dim-0 slice), per tensor,
/// or not at all. Norms are computed in float64.
pub fn normalize(d: Tensor, theta: &Tensor, norm: Normalization) -> Tensor {
    match norm {
        Normalization::None => d,
        Normalization::Layer => {
            let tn = theta.to_kind(Kind::Double).norm().double_value(&[]);
            let dn = d.to_kind(Kind::Double).norm().double_value(&[]);
            (d.to_kind(Kind::Double) * (tn / (dn + 1e-10))).to_kind(Kind::Float)
        }
        Normalization::Filter => {
            let shape = d.size();
            let rows = shape.first().copied().unwrap_or(1).max(1);
            let d2 = d.to_kind(Kind::Double).reshape([rows, -1]);
            let t2 = theta.to_kind(Kind::Double).reshape([rows, -1]);
            let tn = t2.norm_scalaropt_dim(2, [1i64].as_slice(), true);
            let dn = d2.norm_scalaropt_dim(2, [1i64].as_slice(), true);
            (d2 * (tn / (dn + 1e-10)))
                .reshape(shape.as_slice())
                .to_kind(Kind::Float)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(tensors: Vec<(&str, Role, Tensor)>) -> ParamSet {
        ParamSet {
            tensors: tensors
                .into_iter()
                .map(|(n, role, tensor)| NamedTensor {
                    name: n.into(),
                    role,
                    tensor,
                })
                .collect(),
        }
    }

    #[test]
    fn filter_normalization_matches_filter_norms() {
        let theta = Tensor::randn([8, 3, 3, 3], (Kind::Float, tch::Device::Cpu));
        let d = Tensor::randn([8, 3, 3, 3], (Kind::Float, tch::Device::Cpu));
        let n = normalize(d, &theta, Normalization::Filter);
        for j in 0..8 {
            let a = n.get(j).norm().double_value(&[]);
            let b = theta.get(j).norm().double_value(&[]);
            assert!((a - b).abs() <= 1e-5 * b, "filter {j}: {a} vs {b}");
        }
    }

    #[test]
    fn random_is_seeded_and_policies_apply() {
        let c = set(vec![
            (
                "a.bias",
                Role::Bias,
                Tensor::ones([4], (Kind::Float, tch::Device::Cpu)),
            ),
            (
                "a.weight",
                Role::Weight,
                Tensor::ones([4, 2], (Kind::Float, tch::Device::Cpu)),
            ),
            (
                "bn.running_mean",
                Role::Buffer,
                Tensor::ones([4], (Kind::Float, tch::Device::Cpu)),
            ),
        ]);
        let d1 = Directions::random_plane(&c, 7, Normalization::Filter, Ignore::BiasAndBn).unwrap();
        let d2 = Directions::random_plane(&c, 7, Normalization::Filter, Ignore::BiasAndBn).unwrap();
        let d3 = Directions::random_plane(&c, 8, Normalization::Filter, Ignore::BiasAndBn).unwrap();
        assert_eq!(d1.meta.id, d2.meta.id);
        assert_ne!(d1.meta.id, d3.meta.id);
        assert_eq!(
            d1.dirs[0].tensors[0]
                .tensor
                .abs()
                .sum(Kind::Float)
                .double_value(&[]),
            0.0
        );
        assert_eq!(
            d1.dirs[0].tensors[2]
                .tensor
                .abs()
                .sum(Kind::Float)
                .double_value(&[]),
            0.0
        );
        let keep = Directions::random_line(&c, 7, Normalization::Filter, Ignore::Nothing).unwrap();
        assert!(keep.dirs[0].tensors[0].tensor.equal(&c.tensors[0].tensor));
        assert_eq!(
            keep.dirs[0].tensors[2]
                .tensor
                .abs()
                .sum(Kind::Float)
                .double_value(&[]),
            0.0
        );
        // δ and η differ
        assert!(!d1.dirs[0].tensors[1]
            .tensor
            .equal(&d1.dirs[1].tensors[1].tensor));
    }

    #[test]
    fn save_load_round_trip() {
        let c = set(vec![(
            "w",
            Role::Weight,
            Tensor::randn([70_000, 2], (Kind::Float, tch::Device::Cpu)),
        )]);
        let d = Directions::random_plane(&c, 1, Normalization::Layer, Ignore::BiasAndBn).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.parquet");
        d.save(&p).unwrap();
        let back = Directions::load(&p).unwrap();
        assert_eq!(back.meta, d.meta);
        assert!(back.dirs[1].tensors[0]
            .tensor
            .equal(&d.dirs[1].tensors[0].tensor));
        assert!(back.centre.tensors[0].tensor.equal(&c.tensors[0].tensor));
    }
}
