//! Seeded random directions (§4): Gaussian values, then filter-, layer- or
//! no normalization relative to the centre θ*.
//!
//! Random values come from ChaCha8 seeded with the user's seed (value-stable
//! across platforms and crate versions), drawn as standard normals tensor by
//! tensor in name order, all of δ before η. Every tensor draws its values,
//! also those whose direction is then zeroed, so a tensor's direction does
//! not depend on the 1-D policy of the others.

use std::collections::BTreeMap;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use super::{BnStats, DirectionKind, Directions, DirectionsMeta};
use crate::analysis::params::{NamedTensor, ParamSet};
use crate::error::{Error, Result};
use crate::tensor::Role;

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

/// Configures seeded random directions around a centre; made by
/// [`Directions::random`], checked once in [`build`](RandomBuilder::build).
///
/// Defaults (the paper's setting): 2 directions (a plane), seed 0,
/// [`Normalization::Filter`], [`Ignore::BiasAndBn`]. BatchNorm running
/// statistics always keep a zero direction ([`BnStats::Fixed`]).
#[derive(Debug, Clone)]
pub struct RandomBuilder<'a> {
    centre: &'a ParamSet,
    dims: usize,
    seed: u64,
    normalization: Normalization,
    ignore: Ignore,
}

impl<'a> RandomBuilder<'a> {
    pub(super) fn new(centre: &'a ParamSet) -> Self {
        RandomBuilder {
            centre,
            dims: 2,
            seed: 0,
            normalization: Normalization::Filter,
            ignore: Ignore::BiasAndBn,
        }
    }

    /// Number of directions: 1 (a line, for 1-D slices) or 2 (a plane, the
    /// default).
    pub fn dims(mut self, n: usize) -> Self {
        self.dims = n;
        self
    }

    /// Seed of the random values (default 0): equal seeds, equal directions.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// How the directions are scaled (default [`Normalization::Filter`]).
    pub fn normalization(mut self, n: Normalization) -> Self {
        self.normalization = n;
        self
    }

    /// What happens to 1-D tensors (default [`Ignore::BiasAndBn`]).
    pub fn ignore(mut self, i: Ignore) -> Self {
        self.ignore = i;
        self
    }

    /// Checks the options and draws the directions.
    pub fn build(self) -> Result<Directions> {
        if !(1..=2).contains(&self.dims) {
            return Err(Error::invalid(
                "random directions dims",
                format!("must be 1 (a line) or 2 (a plane), got {}", self.dims),
            ));
        }
        if self.centre.tensors.is_empty() {
            return Err(Error::invalid("random directions centre", "has no tensors"));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        let mut dirs = Vec::with_capacity(self.dims);
        for _ in 0..self.dims {
            dirs.push(self.centre.map(|t| self.draw(t, &mut rng))?);
        }
        let meta = DirectionsMeta {
            id: String::new(),
            kind: DirectionKind::Random,
            seed: Some(self.seed),
            normalization: Some(self.normalization),
            ignore: Some(self.ignore),
            bn_stats: BnStats::Fixed,
            n_directions: self.dims,
            description: String::new(),
            extra: BTreeMap::new(),
        };
        Ok(Directions::assemble(meta, self.centre.clone(), dirs))
    }

    /// One tensor's direction: standard normals shaped like `t`, then the
    /// normalization and 1-D policy.
    fn draw(&self, t: &NamedTensor, rng: &mut ChaCha8Rng) -> Result<Tensor> {
        let v: Vec<f32> = (0..t.tensor.numel())
            .map(|_| StandardNormal.sample(&mut *rng))
            .collect();
        let torch = |e| Error::torch(format!("drawing a direction for '{}'", t.name), e);
        let d = Tensor::from_slice(&v)
            .f_reshape(t.tensor.size())
            .map_err(torch)?;
        match t.role {
            // BN running statistics are held fixed (§3).
            Role::Buffer => Ok(d.zeros_like()),
            Role::Bias => match (self.ignore, self.normalization) {
                (Ignore::BiasAndBn, _) => Ok(d.zeros_like()),
                (Ignore::Nothing, Normalization::None) => Ok(d),
                (Ignore::Nothing, _) => t.tensor.f_detach_copy().map_err(torch),
            },
            Role::Weight => normalize(d, &t.tensor, self.normalization).map_err(torch),
        }
    }
}

/// Scales `d` to the norms of `theta` per filter (dim-0 slice), per tensor,
/// or not at all; float32 result. Norms are computed in float64.
pub(crate) fn normalize(
    d: Tensor,
    theta: &Tensor,
    norm: Normalization,
) -> std::result::Result<Tensor, tch::TchError> {
    let double = |t: &Tensor| t.f_to_kind(Kind::Double);
    match norm {
        Normalization::None => Ok(d),
        Normalization::Layer => {
            let tn = double(theta)?.f_norm()?.f_double_value(&[])?;
            let d = double(&d)?;
            let dn = d.f_norm()?.f_double_value(&[])?;
            d.f_mul_scalar(tn / (dn + 1e-10))?.f_to_kind(Kind::Float)
        }
        Normalization::Filter => {
            let shape = d.size();
            let rows = shape.first().copied().unwrap_or(1).max(1);
            let d2 = double(&d)?.f_reshape([rows, -1])?;
            let t2 = double(theta)?.f_reshape([rows, -1])?;
            let filter_norms = |t: &Tensor| t.f_norm_scalaropt_dim(2, [1i64].as_slice(), true);
            let (tn, dn) = (filter_norms(&t2)?, filter_norms(&d2)?);
            d2.f_mul(&tn.f_div(&dn.f_add_scalar(1e-10)?)?)?
                .f_reshape(shape.as_slice())?
                .f_to_kind(Kind::Float)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::directions::tests::set;

    fn ones(shape: &[i64]) -> Tensor {
        Tensor::ones(shape, (Kind::Float, tch::Device::Cpu))
    }

    fn abs_sum(t: &Tensor) -> f64 {
        t.abs().sum(Kind::Double).double_value(&[])
    }

    #[test]
    fn filter_normalization_matches_filter_norms() {
        let theta = Tensor::randn([8, 3, 3, 3], (Kind::Float, tch::Device::Cpu));
        let d = Tensor::randn([8, 3, 3, 3], (Kind::Float, tch::Device::Cpu));
        let n = normalize(d, &theta, Normalization::Filter).unwrap();
        for j in 0..8 {
            let a = n.get(j).norm().double_value(&[]);
            let b = theta.get(j).norm().double_value(&[]);
            approx::assert_relative_eq!(a, b, max_relative = 1e-5);
        }
        let d = Tensor::randn([8, 3, 3, 3], (Kind::Float, tch::Device::Cpu));
        let n = normalize(d, &theta, Normalization::Layer).unwrap();
        let (a, b) = (n.norm().double_value(&[]), theta.norm().double_value(&[]));
        approx::assert_relative_eq!(a, b, max_relative = 1e-5);
        let bad = normalize(ones(&[3, 2]), &ones(&[2, 2]), Normalization::Filter);
        assert!(bad.is_err(), "mismatched shapes are an error, not a panic");
    }

    fn centre() -> ParamSet {
        set(vec![
            ("a.bias", Role::Bias, ones(&[4])),
            ("a.weight", Role::Weight, ones(&[4, 2])),
            ("bn.running_mean", Role::Buffer, ones(&[4])),
        ])
    }

    #[test]
    fn random_is_seeded_and_policies_apply() {
        let c = centre();
        let d1 = Directions::random(&c).seed(7).build().unwrap();
        let d2 = Directions::random(&c)
            .seed(7)
            .normalization(Normalization::Filter)
            .ignore(Ignore::BiasAndBn)
            .build()
            .unwrap();
        let d3 = Directions::random(&c).seed(8).build().unwrap();
        assert_eq!(d1.meta.id, d2.meta.id, "the defaults are filter, bias+BN");
        assert_ne!(d1.meta.id, d3.meta.id);
        assert_eq!((d1.len(), d1.meta.seed), (2, Some(7)));
        assert_eq!(d1.meta.bn_stats, BnStats::Fixed);
        assert_eq!(abs_sum(&d1.dirs[0].tensors[0].tensor), 0.0);
        assert_eq!(abs_sum(&d1.dirs[0].tensors[2].tensor), 0.0);
        let keep = Directions::random(&c)
            .dims(1)
            .seed(7)
            .ignore(Ignore::Nothing)
            .build()
            .unwrap();
        assert_eq!(keep.len(), 1);
        assert!(keep.dirs[0].tensors[0].tensor.equal(&c.tensors[0].tensor));
        assert_eq!(abs_sum(&keep.dirs[0].tensors[2].tensor), 0.0);
        // The weight's values do not depend on the 1-D policy.
        assert!(keep.dirs[0].tensors[1]
            .tensor
            .equal(&d1.dirs[0].tensors[1].tensor));
        // δ and η differ.
        assert!(!d1.dirs[0].tensors[1]
            .tensor
            .equal(&d1.dirs[1].tensors[1].tensor));
        assert_eq!(Directions::random(&c).build().unwrap().meta.seed, Some(0));
    }

    #[test]
    fn builder_options_are_checked() {
        let c = centre();
        for n in [0, 3] {
            match Directions::random(&c).dims(n).build() {
                Err(Error::InvalidArgument { option, .. }) => assert!(option.contains("dims")),
                other => panic!("dims {n}: {other:?}"),
            }
        }
        let empty = ParamSet { tensors: vec![] };
        assert!(Directions::random(&empty).build().is_err());
    }
}
