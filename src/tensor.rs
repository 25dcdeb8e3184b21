//! Tensor helpers below both the store and the analyses: the dtype names
//! written in manifests, and the checked lookup of a model's variable by
//! name. Nothing here touches files.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use tch::{Kind, Tensor};

use crate::error::{Error, Result};

/// What a recorded variable is, for the analyses that treat kinds differently
/// (e.g. the paper's "ignore biasbn" zeroes directions of 1-D parameters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A trainable tensor with two or more dimensions (linear or conv weight).
    Weight,
    /// A trainable tensor with at most one dimension: biases and normalization
    /// scales/shifts (BatchNorm γ/β).
    Bias,
    /// A non-trainable buffer, e.g. BatchNorm running mean/variance.
    Buffer,
}

impl Role {
    /// Classifies a variable from its trainable flag and number of dimensions.
    pub fn classify(trainable: bool, dims: usize) -> Role {
        match (trainable, dims) {
            (false, _) => Role::Buffer,
            (true, d) if d >= 2 => Role::Weight,
            (true, _) => Role::Bias,
        }
    }

    /// The role's name as written in files.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Weight => "weight",
            Role::Bias => "bias",
            Role::Buffer => "buffer",
        }
    }
}

/// Which tensors an analysis uses: of a recorded run (PCA, the run
/// readers) or of a live model (the Hessian). One vocabulary everywhere; its
/// [`Display`](fmt::Display) form (`weights`, `names:a,b`, `contains:fc`) is
/// what result files record and what [`FromStr`] parses.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Selection {
    /// Every recorded tensor, buffers included.
    All,
    /// Trainable tensors only (weights and biases; no BN running stats).
    Trainable,
    /// Trainable tensors with two or more dimensions ([`Role::Weight`]): the
    /// reference code's choice ("ignore biasbn") for trajectory PCA and the
    /// Hessian, and the default.
    #[default]
    #[serde(alias = "multi_dim")]
    Weights,
    /// Exactly the named tensors.
    Names(Vec<String>),
    /// Tensors whose name contains the given text.
    NameContains(String),
}

impl Selection {
    /// True when the rule selects the tensor `name` of role `role` (for
    /// [`Selection::Names`], when the name is listed).
    pub fn selects(&self, name: &str, role: Role) -> bool {
        match self {
            Selection::All => true,
            Selection::Trainable => role != Role::Buffer,
            Selection::Weights => role == Role::Weight,
            Selection::Names(names) => names.iter().any(|n| n == name),
            Selection::NameContains(s) => name.contains(s.as_str()),
        }
    }
}

impl fmt::Display for Selection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Selection::All => f.write_str("all"),
            Selection::Trainable => f.write_str("trainable"),
            Selection::Weights => f.write_str("weights"),
            Selection::Names(v) => write!(f, "names:{}", v.join(",")),
            Selection::NameContains(t) => write!(f, "contains:{t}"),
        }
    }
}

impl FromStr for Selection {
    type Err = Error;

    /// Parses the [`Display`](fmt::Display) form.
    fn from_str(s: &str) -> Result<Selection> {
        Ok(match s {
            "all" => Selection::All,
            "trainable" => Selection::Trainable,
            "weights" => Selection::Weights,
            _ => {
                if let Some(names) = s.strip_prefix("names:") {
                    Selection::Names(names.split(',').map(str::to_string).collect())
                } else if let Some(text) = s.strip_prefix("contains:") {
                    Selection::NameContains(text.to_string())
                } else {
                    return Err(Error::invalid(
                        "tensor selection",
                        format!(
                            "'{s}' is not one of all, trainable, weights, names:A,B, contains:TEXT"
                        ),
                    ));
                }
            }
        })
    }
}

/// The dtype name written in manifests for a tch kind (floating kinds only).
pub fn kind_name(kind: Kind) -> Option<&'static str> {
    Some(match kind {
        Kind::Float => "float32",
        Kind::Double => "float64",
        Kind::Half => "float16",
        Kind::BFloat16 => "bfloat16",
        _ => return None,
    })
}

/// The tch kind for a dtype name written by [`kind_name`].
pub fn kind_from_name(name: &str) -> Option<Kind> {
    Some(match name {
        "float32" => Kind::Float,
        "float64" => Kind::Double,
        "float16" => Kind::Half,
        "bfloat16" => Kind::BFloat16,
        _ => return None,
    })
}

/// The variable `name` of `vars`, checked to have `shape`; `place` says where
/// it was looked up, for the error message.
pub(crate) fn model_variable(
    vars: &HashMap<String, Tensor>,
    name: &str,
    shape: &[i64],
    place: &str,
) -> Result<Tensor> {
    let var = vars.get(name).ok_or_else(|| Error::UnknownTensor {
        tensor: name.to_string(),
        place: place.to_string(),
    })?;
    if var.size() != shape {
        return Err(Error::ShapeChanged {
            tensor: name.to_string(),
            expected: shape.to_vec(),
            found: var.size(),
            context: format!(" in {place}"),
        });
    }
    Ok(var.shallow_clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_names_round_trip() {
        for k in [Kind::Float, Kind::Double, Kind::Half, Kind::BFloat16] {
            assert_eq!(kind_from_name(kind_name(k).unwrap()), Some(k));
        }
        assert_eq!(kind_name(Kind::Int64), None);
        assert_eq!(kind_from_name("int8"), None);
    }

    #[test]
    fn selection_display_round_trips_and_selects_by_role() {
        for s in [
            Selection::All,
            Selection::Trainable,
            Selection::Weights,
            Selection::Names(vec!["a".into(), "b".into()]),
            Selection::NameContains("fc".into()),
        ] {
            assert_eq!(s.to_string().parse::<Selection>().unwrap(), s);
        }
        assert_eq!(
            Selection::Names(vec!["a".into(), "b".into()]).to_string(),
            "names:a,b"
        );
        assert!(Selection::Weights.selects("w", Role::Weight));
        assert!(!Selection::Weights.selects("b", Role::Bias));
        assert!(Selection::Trainable.selects("b", Role::Bias));
        assert!(!Selection::Trainable.selects("m", Role::Buffer));
        assert!("everything".parse::<Selection>().is_err());
        let old: Selection = serde_json::from_str("\"multi_dim\"").unwrap();
        assert_eq!(old, Selection::Weights);
    }

    #[test]
    fn variable_lookup_names_the_tensor_and_place() {
        let vars = HashMap::from([("w".to_string(), Tensor::zeros([2, 3], tch::kind::FLOAT_CPU))]);
        assert!(model_variable(&vars, "w", &[2, 3], "m").is_ok());
        let e = model_variable(&vars, "b", &[2], "model X")
            .unwrap_err()
            .to_string();
        assert!(e.contains("'b'") && e.contains("model X"), "{e}");
        let e = model_variable(&vars, "w", &[3, 2], "model X")
            .unwrap_err()
            .to_string();
        assert!(e.contains("[2, 3]") && e.contains("[3, 2]"), "{e}");
    }
}
