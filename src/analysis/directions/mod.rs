//! Directions in parameter space (§3, §4 of the paper): seeded random
//! directions with filter-, layer- or no normalization; the direction between
//! two snapshots (1-D linear interpolation); the plane through three snapshots.
//!
//! A [`Directions`] value carries its centre θ* (the point the grid is laid
//! around) and one or two direction vectors δ, η; a grid point (α, β) is
//! θ* + αδ + βη. Directions are saved to Parquet with their seed and settings
//! in metadata ([`Directions::save`], `schemas/directions.json`) and load back
//! bit-identically, so a surface can be recomputed or extended later.
//!
//! Random directions are configured with [`Directions::random`]:
//!
//! ```no_run
//! # fn main() -> tch_landscape::Result<()> {
//! use tch_landscape::analysis::directions::{Directions, Normalization};
//! use tch_landscape::analysis::params::ParamSet;
//! # let vs = tch::nn::VarStore::new(tch::Device::Cpu);
//! let centre = ParamSet::from_varstore(&vs)?;
//! // The paper's defaults: a plane, filter normalization, biases and BN at θ*.
//! let plane = Directions::random(&centre).seed(123).build()?;
//! // One layer-normalized direction, for a 1-D slice.
//! let line = Directions::random(&centre)
//!     .dims(1)
//!     .seed(7)
//!     .normalization(Normalization::Layer)
//!     .build()?;
//! # Ok(()) }
//! ```

mod file;
mod random;

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use tch::Tensor;

use crate::analysis::params::{NamedTensor, ParamSet};
use crate::error::{Error, Result};

pub(crate) use random::normalize;
pub use random::{Ignore, Normalization, RandomBuilder};

pub use crate::store::directions::{directions_schema, DIRECTIONS_META_KEY};

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

/// What happens to BatchNorm running statistics (buffers) along the
/// directions. Written to files as `fixed` / `interpolated`, the
/// [`Display`](fmt::Display) form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BnStats {
    /// Held at θ* (random, PCA and custom directions, §3).
    Fixed,
    /// They move with the direction, as between two minimizers
    /// (interpolation, three-point plane).
    Interpolated,
}

impl fmt::Display for BnStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BnStats::Fixed => "fixed",
            BnStats::Interpolated => "interpolated",
        })
    }
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
    /// Whether BN running stats are held at θ* or move with the direction.
    pub bn_stats: BnStats,
    /// Number of directions (1 or 2).
    pub n_directions: usize,
    /// Free text: where the centre and end points came from.
    pub description: String,
    /// Extra key/values (e.g. PCA explained variance).
    pub extra: BTreeMap<String, String>,
}

/// Key in [`DirectionsMeta::extra`] of the reference point, `"x,y"`.
pub const REFERENCE_KEY: &str = "reference";
/// Key in [`DirectionsMeta::extra`] of the reference point's description.
pub const REFERENCE_LABEL_KEY: &str = "reference_label";
/// Key in [`DirectionsMeta::extra`] of the id of the run the directions
/// were made from (the `run_id` column of results).
pub const RUN_ID_KEY: &str = "run_id";

impl DirectionsMeta {
    /// The reference point of results along these directions: the one their
    /// sharpness figures are measured at and figures mark. Stored with
    /// [`Directions::with_reference`]; by default the centre θ* (0, 0), and
    /// for an interpolation its end point b (α = 1), the trained model when
    /// the line runs from an initialization to it.
    pub fn reference(&self) -> [f64; 2] {
        let stored = self.extra.get(REFERENCE_KEY).and_then(|v| {
            let (x, y) = v.split_once(',')?;
            Some([x.trim().parse().ok()?, y.trim().parse().ok()?])
        });
        stored.unwrap_or(match self.kind {
            DirectionKind::Interpolation => [1.0, 0.0],
            _ => [0.0, 0.0],
        })
    }

    /// What the reference point is, in words (e.g. "θ*, the centre" or
    /// "the trained model (epoch 20), α = 1").
    pub fn reference_label(&self) -> String {
        match self.extra.get(REFERENCE_LABEL_KEY) {
            Some(l) => l.clone(),
            None => match self.kind {
                DirectionKind::Interpolation => "the end point b (α = 1)".into(),
                _ => "θ*, the centre (0, 0)".into(),
            },
        }
    }

    /// The id of the run the directions were made from, when known.
    pub fn run_id(&self) -> Option<String> {
        self.extra.get(RUN_ID_KEY).cloned()
    }
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

impl Directions {
    /// Starts configuring seeded random directions around `centre`; see
    /// [`RandomBuilder`] for the options and their defaults (a plane, seed
    /// 0, filter normalization, biases and BN held at θ*).
    pub fn random(centre: &ParamSet) -> RandomBuilder<'_> {
        RandomBuilder::new(centre)
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

    /// Directions given by the user (checked against `centre`); BN running
    /// stats are held fixed.
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
        meta.bn_stats = BnStats::Fixed;
        meta.description = description.into();
        Ok(Self::assemble(meta, centre, dirs))
    }

    /// The metadata of directions that are not random: no seed or
    /// normalization, BN stats interpolated.
    fn endpoint_meta(kind: DirectionKind, n: usize) -> DirectionsMeta {
        DirectionsMeta {
            id: String::new(),
            kind,
            seed: None,
            normalization: None,
            ignore: None,
            bn_stats: BnStats::Interpolated,
            n_directions: n,
            description: String::new(),
            extra: BTreeMap::new(),
        }
    }

    /// Completes `meta` (number of directions, content id).
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

    /// Sets the reference point (grid coordinates `[x, y]`, `y` 0 for one
    /// direction) and what it is, in words; see [`DirectionsMeta::reference`].
    pub fn with_reference(mut self, at: [f64; 2], label: impl Into<String>) -> Self {
        self.meta
            .extra
            .insert(REFERENCE_KEY.into(), format!("{},{}", at[0], at[1]));
        self.meta
            .extra
            .insert(REFERENCE_LABEL_KEY.into(), label.into());
        self
    }

    /// Records the id of the run the directions were made from (results
    /// write it as their `run_id` column).
    pub fn with_run_id(mut self, run_id: impl Into<String>) -> Self {
        self.meta.extra.insert(RUN_ID_KEY.into(), run_id.into());
        self
    }

    /// The same directions laid through another point: the grid point
    /// `at` = (a, b) of the result is `theta` (θ* = θ − aδ − bη), so grids
    /// of several snapshots share coordinates — `[0, 0]` centres the grid
    /// on `theta` itself (exactly, without arithmetic), the plane's own
    /// coordinates of `theta` keep a PCA plane's axes. Only the centre's
    /// tensors are taken from `theta` (by name); the settings (kind, seed,
    /// normalization) are kept, the id is recomputed, and the reference
    /// point becomes `at`, labelled `label`.
    pub fn recentred(&self, theta: &ParamSet, at: [f64; 2], label: &str) -> Result<Directions> {
        let mut tensors = Vec::with_capacity(self.centre.tensors.len());
        for (k, c) in self.centre.tensors.iter().enumerate() {
            let t = theta
                .tensors
                .iter()
                .find(|t| t.name == c.name)
                .ok_or_else(|| Error::UnknownTensor {
                    tensor: c.name.clone(),
                    place: "the new centre of the directions".into(),
                })?;
            if t.tensor.size() != c.tensor.size() {
                return Err(Error::invalid(
                    "directions",
                    format!(
                        "'{}' has shape {:?} at the new centre, {:?} in the directions",
                        c.name,
                        t.tensor.size(),
                        c.tensor.size()
                    ),
                ));
            }
            let tensor = if at == [0.0, 0.0] {
                t.tensor.copy()
            } else {
                let d = self.direction_tensors(k, &c.name)?;
                tch::no_grad(|| combine(&t.tensor, &d, -at[0], -at[1])).map_err(|e| {
                    Error::torch(format!("moving '{}' to the new centre", c.name), e)
                })?
            };
            tensors.push(NamedTensor {
                name: c.name.clone(),
                role: c.role,
                tensor,
            });
        }
        let mut meta = self.meta.clone();
        meta.extra.remove(REFERENCE_KEY);
        meta.extra.remove(REFERENCE_LABEL_KEY);
        let dirs = self
            .dirs
            .iter()
            .map(|d| d.map(|t| Ok(t.tensor.shallow_clone())))
            .collect::<Result<Vec<_>>>()?;
        let moved = Self::assemble(meta, ParamSet { tensors }, dirs);
        Ok(moved.with_reference(at, label))
    }

    /// Number of directions.
    pub fn len(&self) -> usize {
        self.dirs.len()
    }

    /// True when there is no direction (never, for a constructed value).
    pub fn is_empty(&self) -> bool {
        self.dirs.is_empty()
    }

    /// Tensor `k` (named `name`, as the centre's) of every direction; an
    /// error when a direction does not have it there.
    fn direction_tensors(&self, k: usize, name: &str) -> Result<Vec<&Tensor>> {
        self.dirs
            .iter()
            .map(|dir| {
                dir.tensors
                    .get(k)
                    .filter(|t| t.name == name)
                    .map(|t| &t.tensor)
                    .ok_or_else(|| Error::UnknownTensor {
                        tensor: name.to_string(),
                        place: "a direction".into(),
                    })
            })
            .collect()
    }

    /// θ* + αδ (+ βη), tensor by tensor, always from θ*; an error when a
    /// direction does not match the centre (names and shapes).
    pub fn point(&self, alpha: f64, beta: f64) -> Result<ParamSet> {
        let mut tensors = Vec::with_capacity(self.centre.tensors.len());
        for (k, c) in self.centre.tensors.iter().enumerate() {
            let d = self.direction_tensors(k, &c.name)?;
            let tensor = tch::no_grad(|| combine(&c.tensor, &d, alpha, beta)).map_err(|e| {
                Error::torch(format!("forming '{}' at ({alpha}, {beta})", c.name), e)
            })?;
            tensors.push(NamedTensor {
                name: c.name.clone(),
                role: c.role,
                tensor,
            });
        }
        Ok(ParamSet { tensors })
    }

    /// FNV-1a over names, shapes and value bits of centre and directions.
    pub(crate) fn content_hash(&self) -> String {
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
/// centre every time; an error when the shapes differ.
pub(crate) fn combine(
    c: &Tensor,
    d: &[&Tensor],
    alpha: f64,
    beta: f64,
) -> std::result::Result<Tensor, tch::TchError> {
    let mut v = c.f_add(&d[0].f_mul_scalar(alpha)?)?;
    if let Some(d1) = d.get(1) {
        v = v.f_add(&d1.f_mul_scalar(beta)?)?;
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::Role;
    use tch::Kind;

    pub(super) fn set(tensors: Vec<(&str, Role, Tensor)>) -> ParamSet {
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

    fn from(v: &[f32]) -> Tensor {
        Tensor::from_slice(v)
    }

    #[test]
    fn endpoint_directions_reach_their_points_and_hash_their_values() {
        let a = set(vec![("w", Role::Weight, from(&[1.0, 2.0]))]);
        let b = set(vec![("w", Role::Weight, from(&[3.0, -2.0]))]);
        let c = set(vec![("w", Role::Weight, from(&[0.0, 5.0]))]);
        let plane = Directions::three_point(&a, &b, &c).unwrap();
        assert_eq!(plane.meta.kind, DirectionKind::ThreePoint);
        assert_eq!(plane.meta.bn_stats, BnStats::Interpolated);
        assert_eq!(plane.len(), 2);
        for (x, y, want) in [(0.0, 0.0, &a), (1.0, 0.0, &b), (0.0, 1.0, &c)] {
            let p = plane.point(x, y).unwrap();
            assert!(
                p.tensors[0].tensor.equal(&want.tensors[0].tensor),
                "({x}, {y})"
            );
        }
        let line = Directions::interpolation(&a, &b).unwrap();
        let mid = line.point(0.5, 0.0).unwrap();
        assert!(mid.tensors[0].tensor.equal(&from(&[2.0, 0.0])));
        assert_ne!(line.meta.id, plane.meta.id);
        let again = Directions::interpolation(&a, &b).unwrap();
        assert_eq!(line.meta.id, again.meta.id);
        let custom = Directions::custom(a.clone(), vec![b.clone()], DirectionKind::Custom, "x");
        assert_eq!(custom.unwrap().meta.bn_stats, BnStats::Fixed);
        assert!(Directions::custom(a.clone(), vec![], DirectionKind::Custom, "").is_err());
        let other = set(vec![("v", Role::Weight, from(&[0.0, 0.0]))]);
        assert!(Directions::interpolation(&a, &other).is_err());
    }

    #[test]
    fn recentred_directions_put_the_new_point_at_the_chosen_grid_point() {
        let a = set(vec![("w", Role::Weight, from(&[1.0, 2.0]))]);
        let b = set(vec![("w", Role::Weight, from(&[3.0, -2.0]))]);
        let c = set(vec![("w", Role::Weight, from(&[0.0, 5.0]))]);
        let plane = Directions::three_point(&a, &b, &c).unwrap();
        let theta = set(vec![("w", Role::Weight, from(&[10.0, 20.0]))]);
        // At (0, 0) the centre is θ itself, bit for bit.
        let here = plane.recentred(&theta, [0.0, 0.0], "θ").unwrap();
        assert!(here.centre.tensors[0]
            .tensor
            .equal(&theta.tensors[0].tensor));
        assert_ne!(here.meta.id, plane.meta.id);
        assert_eq!(here.meta.kind, plane.meta.kind);
        assert_eq!(here.meta.reference(), [0.0, 0.0]);
        // At (2, −1) the grid point (2, −1) is θ; the directions are the same.
        let moved = plane.recentred(&theta, [2.0, -1.0], "θ").unwrap();
        let p = moved.point(2.0, -1.0).unwrap();
        assert!(p.tensors[0].tensor.equal(&theta.tensors[0].tensor));
        // θ − 2δ + η with δ = b − a = (2, −4), η = c − a = (−1, 3).
        let want = from(&[5.0, 31.0]);
        assert!(moved.centre.tensors[0].tensor.equal(&want));
        assert_eq!(moved.meta.reference(), [2.0, -1.0]);
        assert_eq!(moved.meta.reference_label(), "θ");
        // θ without the directions' tensor, or of another shape: refused.
        let other = set(vec![("v", Role::Weight, from(&[0.0, 0.0]))]);
        assert!(plane.recentred(&other, [0.0, 0.0], "").is_err());
        let wide = set(vec![("w", Role::Weight, from(&[0.0, 0.0, 0.0]))]);
        assert!(plane.recentred(&wide, [1.0, 1.0], "").is_err());
    }

    #[test]
    fn bn_stats_are_written_as_before() {
        for (b, s) in [
            (BnStats::Fixed, "fixed"),
            (BnStats::Interpolated, "interpolated"),
        ] {
            assert_eq!(b.to_string(), s);
            assert_eq!(serde_json::to_string(&b).unwrap(), format!("\"{s}\""));
            assert_eq!(
                serde_json::from_str::<BnStats>(&format!("\"{s}\"")).unwrap(),
                b
            );
        }
    }

    #[test]
    fn a_point_of_mismatched_directions_is_an_error() {
        let a = set(vec![("w", Role::Weight, from(&[1.0, 2.0]))]);
        let mut d = Directions::interpolation(&a, &a).unwrap();
        d.dirs[0].tensors[0].tensor = Tensor::zeros([3], (Kind::Float, tch::Device::Cpu));
        assert!(matches!(d.point(1.0, 0.0), Err(Error::Torch { .. })));
        d.dirs[0].tensors.clear();
        assert!(matches!(
            d.point(1.0, 0.0),
            Err(Error::UnknownTensor { .. })
        ));
    }
}
