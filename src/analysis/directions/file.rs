//! [`Directions::save`] and [`Directions::load`]: the directions as the
//! plain tensor records of `store::directions`, and the content-hash check
//! of a loaded file.

use std::path::Path;

use tch::Tensor;

use super::{Directions, DirectionsMeta};
use crate::analysis::params::{NamedTensor, ParamSet};
use crate::error::{Error, Result};
use crate::store::directions::{self, TensorRecord};

impl Directions {
    /// Saves centre and directions as zstd Parquet (`schemas/directions.json`),
    /// atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let vectors = std::iter::once(&self.centre)
            .chain(&self.dirs)
            .map(|set| set.tensors.iter().map(to_record));
        directions::write(path, &self.meta, vectors)
    }

    /// Loads directions saved by [`Directions::save`], checking the columns,
    /// every tensor's length, the shapes against the centre and the content
    /// hash against the recorded id.
    pub fn load(path: &Path) -> Result<Directions> {
        let (meta, [c, x, y]) = directions::read::<DirectionsMeta>(path)?;
        let centre = to_set(c, path)?;
        let mut dirs = vec![to_set(x, path)?];
        if !y.is_empty() {
            dirs.push(to_set(y, path)?);
        }
        for d in &dirs {
            centre.check_compatible(d, &format!("directions file {}", path.display()))?;
        }
        let corrupt = |r: String| Error::corrupt(path, r);
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

/// The record of one tensor: its values read as float32.
fn to_record(t: &NamedTensor) -> Result<TensorRecord> {
    let values = t
        .tensor
        .f_flatten(0, -1)
        .and_then(Vec::<f32>::try_from)
        .map_err(|e| Error::torch(format!("reading '{}'", t.name), e))?;
    Ok(TensorRecord {
        name: t.name.clone(),
        role: t.role,
        shape: t.tensor.size(),
        values,
    })
}

/// The tensors of one vector as a [`ParamSet`] (the store has checked that
/// each holds as many values as its shape says).
fn to_set(rows: Vec<TensorRecord>, path: &Path) -> Result<ParamSet> {
    let mut tensors = Vec::with_capacity(rows.len());
    for t in rows {
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

#[cfg(test)]
mod tests {
    use tch::Kind;

    use super::super::Normalization;
    use super::*;
    use crate::tensor::Role;

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
            .normalization(Normalization::Layer)
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
    fn a_changed_value_or_a_wrong_direction_count_is_refused() {
        let c = set(&[3, 2]);
        let d = Directions::random(&c).seed(2).build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.parquet");
        let mut changed = d.clone();
        changed.dirs[0].tensors[1].tensor = changed.dirs[0].tensors[1].tensor.ones_like();
        changed.save(&p).unwrap();
        let e = Directions::load(&p).unwrap_err().to_string();
        assert!(e.contains("content hash"), "{e}");
        let mut one = d.clone();
        one.dirs.pop();
        one.save(&p).unwrap();
        let e = Directions::load(&p).unwrap_err().to_string();
        assert!(
            e.contains("metadata says 2 directions, file holds 1"),
            "{e}"
        );
    }
}
