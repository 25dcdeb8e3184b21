//! Shards: a deterministic share of a grid, for batch schedulers (Slurm
//! array jobs, Kubernetes indexed jobs) that run one process per share
//! without talking to each other. Shard `i/n` holds the points whose flat
//! grid index ≡ i (mod n), so every shard gets points from the whole grid
//! (cheap and expensive regions alike). Each shard is computed into its own
//! directory ([`SurfaceBuilder::shard`](crate::analysis::surface::SurfaceBuilder::shard));
//! [`merge_shards`](crate::analysis::surface::merge_shards) then combines
//! them into the result one process would have written.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::analysis::grid::MAX_GRID_POINTS;
use crate::error::{Error, Result};

/// Shard `index` of `count`, written `index/count` (0-based); always valid
/// (0 ≤ index < count). Stored in JSON as `[index, count]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "(usize, usize)", into = "(usize, usize)")]
pub struct Shard {
    index: usize,
    count: usize,
}

impl Shard {
    /// Shard `index` of `count`; an error unless 0 ≤ index < count.
    pub fn new(index: usize, count: usize) -> Result<Shard> {
        if count == 0 || index >= count {
            return Err(Error::invalid(
                "shard",
                format!("{index}/{count}: expected i/n with 0 ≤ i < n"),
            ));
        }
        if count > MAX_GRID_POINTS {
            return Err(Error::invalid(
                "shard",
                format!(
                    "{index}/{count}: more shards than the {MAX_GRID_POINTS} points a grid may have"
                ),
            ));
        }
        Ok(Shard { index, count })
    }

    /// Which shard, 0 ≤ index < count.
    pub fn index(&self) -> usize {
        self.index
    }

    /// How many shards.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Whether the grid point with flat index `point` belongs to this shard.
    pub fn contains(&self, point: usize) -> bool {
        point % self.count == self.index
    }

    /// The shard of a Slurm array task: `SLURM_ARRAY_TASK_ID` minus
    /// `SLURM_ARRAY_TASK_MIN` (default 0) of `SLURM_ARRAY_TASK_COUNT`.
    /// `None` outside an array job.
    pub fn from_slurm_env() -> Result<Option<Shard>> {
        let var = |name: &str| -> Result<Option<usize>> {
            match std::env::var(name) {
                Ok(v) => v.trim().parse().map(Some).map_err(|_| {
                    Error::invalid(name, format!("expected a whole number, got '{v}'"))
                }),
                Err(_) => Ok(None),
            }
        };
        let (Some(id), Some(count)) = (var("SLURM_ARRAY_TASK_ID")?, var("SLURM_ARRAY_TASK_COUNT")?)
        else {
            return Ok(None);
        };
        let min = var("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
        let index = id.checked_sub(min).ok_or_else(|| {
            Error::invalid(
                "SLURM_ARRAY_TASK_ID",
                format!("{id} is below SLURM_ARRAY_TASK_MIN {min}"),
            )
        })?;
        Shard::new(index, count).map(Some)
    }
}

/// Whether grid point `point` is part of the work: every point is when
/// there is no shard.
pub(crate) fn covers(shard: Option<Shard>, point: usize) -> bool {
    shard.is_none_or(|s| s.contains(point))
}

impl TryFrom<(usize, usize)> for Shard {
    type Error = Error;

    fn try_from((index, count): (usize, usize)) -> Result<Shard> {
        Shard::new(index, count)
    }
}

impl From<Shard> for (usize, usize) {
    fn from(s: Shard) -> (usize, usize) {
        (s.index, s.count)
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl FromStr for Shard {
    type Err = Error;

    /// Parses `i/n`, e.g. `3/8`.
    fn from_str(s: &str) -> Result<Shard> {
        let bad = || Error::invalid("shard", format!("'{s}': expected i/n, e.g. 0/4"));
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let i = i.trim().parse().map_err(|_| bad())?;
        let n = n.trim().parse().map_err(|_| bad())?;
        Shard::new(i, n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_checks() {
        let s: Shard = "2/5".parse().unwrap();
        assert_eq!(s, Shard { index: 2, count: 5 });
        assert_eq!((s.index(), s.count()), (2, 5));
        assert_eq!(s.to_string(), "2/5");
        assert!(s.contains(7) && !s.contains(8));
        for bad in ["5/5", "1/0", "1", "a/2", "1/2/3", "-1/2"] {
            let e = bad.parse::<Shard>().unwrap_err().to_string();
            assert!(e.contains("shard"), "{bad}: {e}");
        }
    }

    #[test]
    fn every_point_in_exactly_one_shard() {
        let n = 7;
        for p in 0..100 {
            let owners = (0..n)
                .filter(|&i| Shard::new(i, n).unwrap().contains(p))
                .count();
            assert_eq!(owners, 1);
        }
        assert!((0..10).all(|p| covers(None, p)));
        assert!(!covers(Some(Shard::new(1, 2).unwrap()), 4));
    }

    #[test]
    fn json_form_is_a_pair_and_is_validated() {
        let s = Shard::new(1, 4).unwrap();
        assert_eq!(serde_json::to_string(&s).unwrap(), "[1,4]");
        assert_eq!(serde_json::from_str::<Shard>("[1,4]").unwrap(), s);
        for bad in ["[0,0]", "[4,4]", "[1]", "\"1/4\""] {
            let e = serde_json::from_str::<Shard>(bad);
            assert!(e.is_err(), "{bad} was accepted");
        }
        let e = serde_json::from_str::<Shard>("[0,0]")
            .unwrap_err()
            .to_string();
        assert!(e.contains("0 ≤ i < n"), "{e}");
    }
}
