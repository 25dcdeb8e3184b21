//! The parameters a Hessian is taken with respect to: the variables of a
//! VarStore chosen by a [`Selection`], and the flat vectors of the Hessian's
//! space (those tensors flattened and concatenated in name order).

use std::collections::HashMap;

use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use crate::error::{Error, Result};
use crate::tensor::{Role, Selection};

/// The selected variables of a VarStore: handles to the live tensors (their
/// current values are used at every HVP), sorted by name. Vectors of the
/// Hessian's space are these tensors flattened and concatenated in this order.
#[derive(Debug)]
pub struct HessianParams {
    names: Vec<String>,
    tensors: Vec<Tensor>,
    numels: Vec<usize>,
    numel: usize,
    selection: Selection,
}

/// True when the Hessian can be taken with respect to `t`.
fn differentiable(t: &Tensor) -> bool {
    t.is_floating_point() && t.requires_grad()
}

/// Checks what can be checked of a selection without a model: a name list
/// is not empty and names no tensor twice.
pub(crate) fn check_selection(selection: &Selection) -> Result<()> {
    if let Selection::Names(names) = selection {
        if names.is_empty() {
            return Err(Error::invalid(
                "parameter selection",
                "names no tensor; expected at least one name",
            ));
        }
        let mut sorted: Vec<&String> = names.iter().collect();
        sorted.sort();
        if let Some(w) = sorted.windows(2).find(|w| w[0] == w[1]) {
            return Err(Error::invalid(
                "parameter selection",
                format!("names tensor '{}' twice", w[0]),
            ));
        }
    }
    Ok(())
}

impl HessianParams {
    /// Selects variables of `vs`. [`Selection::Weights`] takes the trainable
    /// floating-point tensors with two or more dimensions (the reference's
    /// choice), [`Selection::Trainable`] every trainable floating-point
    /// tensor; [`Selection::All`], [`Selection::Names`] and
    /// [`Selection::NameContains`] take what they name and refuse, naming
    /// them, tensors that are not floating point or do not require grad.
    /// Errors too when the selection is empty or names an unknown tensor.
    pub fn select(vs: &VarStore, selection: &Selection) -> Result<HessianParams> {
        check_selection(selection)?;
        let vars = vs.variables();
        if let Selection::Names(names) = selection {
            if let Some(name) = names.iter().find(|n| !vars.contains_key(*n)) {
                return Err(Error::UnknownTensor {
                    tensor: name.clone(),
                    place: "the model's VarStore (Hessian parameter selection)".into(),
                });
            }
        }
        let mut chosen: Vec<(&String, &Tensor)> = vars
            .iter()
            .filter(|(n, t)| {
                let role = Role::classify(differentiable(t), t.dim());
                selection.selects(n, role)
            })
            .collect();
        chosen.sort_by(|a, b| a.0.cmp(b.0));
        check_differentiable(selection, &chosen)?;
        if chosen.is_empty() {
            return Err(empty_selection(selection, &vars));
        }
        let numels: Vec<usize> = chosen.iter().map(|(_, t)| t.numel()).collect();
        Ok(HessianParams {
            names: chosen.iter().map(|(n, _)| (*n).clone()).collect(),
            tensors: chosen.iter().map(|(_, t)| t.shallow_clone()).collect(),
            numel: numels.iter().sum(),
            numels,
            selection: selection.clone(),
        })
    }

    /// Names of the selected tensors, in vector order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The selected tensors (live handles), in vector order.
    pub(crate) fn tensors(&self) -> &[Tensor] {
        &self.tensors
    }

    /// Dimension of the Hessian (total number of selected values).
    pub fn numel(&self) -> usize {
        self.numel
    }

    /// Number of selected tensors.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// True when nothing is selected (never, for a constructed value).
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The selection this was made from.
    pub fn selection(&self) -> &Selection {
        &self.selection
    }

    /// The current values, flattened and concatenated (float64).
    pub fn values(&self) -> Result<Vec<f64>> {
        tch::no_grad(|| {
            let flat = self
                .tensors
                .iter()
                .map(|t| t.f_detach()?.f_to_kind(Kind::Double)?.f_flatten(0, -1))
                .collect::<std::result::Result<Vec<Tensor>, _>>()
                .and_then(|flat| Tensor::f_cat(&flat, 0))
                .map_err(|e| Error::torch("reading parameter values", e))?;
            to_vec(&flat, "reading parameter values")
        })
    }

    /// Splits a flat vector into tensors shaped, typed and placed like the
    /// parameters.
    pub(crate) fn split(&self, v: &[f64]) -> Result<Vec<Tensor>> {
        if v.len() != self.numel {
            return Err(Error::invalid(
                "vector",
                format!(
                    "has {} values, expected {} (the selected parameters' count)",
                    v.len(),
                    self.numel
                ),
            ));
        }
        let mut out = Vec::with_capacity(self.tensors.len());
        let mut pos = 0;
        for (t, &n) in self.tensors.iter().zip(&self.numels) {
            let part = Tensor::from_slice(&v[pos..pos + n])
                .f_reshape(t.size())
                .and_then(|p| p.f_to_kind(t.kind()))
                .and_then(|p| p.f_to_device(t.device()))
                .map_err(|e| Error::torch("building a Hessian-vector product's input", e))?;
            out.push(part);
            pos += n;
        }
        Ok(out)
    }

    /// E.g. `weights (2 tensors, 1200 values)`.
    pub(crate) fn describe(&self) -> String {
        format!(
            "{} ({} tensors, {} values)",
            self.selection,
            self.len(),
            self.numel
        )
    }
}

/// Refuses selected tensors the Hessian cannot be taken with respect to
/// (only [`Selection::All`], `Names` and `NameContains` can select them).
fn check_differentiable(selection: &Selection, chosen: &[(&String, &Tensor)]) -> Result<()> {
    let stuck: Vec<String> = chosen
        .iter()
        .filter(|(_, t)| !differentiable(t))
        .map(|(n, t)| {
            format!(
                "'{n}' ({:?}, requires_grad {})",
                t.kind(),
                t.requires_grad()
            )
        })
        .collect();
    if stuck.is_empty() {
        return Ok(());
    }
    Err(Error::invalid(
        "parameter selection",
        format!(
            "{selection} selects tensors that cannot be differentiated: {}; expected floating-point tensors with requires_grad on (select `trainable` or `weights`, or name the tensors)",
            stuck.join(", ")
        ),
    ))
}

fn empty_selection(selection: &Selection, vars: &HashMap<String, Tensor>) -> Error {
    let mut names: Vec<&String> = vars.keys().collect();
    names.sort();
    Error::invalid(
        "parameter selection",
        format!(
            "{selection} selects no tensor; the model's variables are {names:?} (only floating-point tensors with requires_grad on can be selected)"
        ),
    )
}

/// A tensor's values as float64 on the CPU.
pub(crate) fn to_vec(t: &Tensor, what: &str) -> Result<Vec<f64>> {
    t.f_to_device(Device::Cpu)
        .and_then(|t| t.f_to_kind(Kind::Double))
        .and_then(|t| t.f_contiguous())
        .and_then(|t| Vec::<f64>::try_from(&t))
        .map_err(|e| Error::torch(what, e))
}

#[cfg(test)]
mod tests {
    use tch::nn;

    use super::*;

    /// fc.weight [3, 2], fc.bias [3] (trainable), stat [3] (a buffer).
    fn store() -> VarStore {
        let vs = VarStore::new(Device::Cpu);
        let _ = nn::linear(vs.root() / "fc", 2, 3, Default::default());
        let _ = vs.root().zeros_no_train("stat", &[3]);
        vs
    }

    fn names(v: &[&str]) -> Selection {
        Selection::Names(v.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn selections_pick_the_documented_tensors_in_name_order() {
        let vs = store();
        let pick = |s: &Selection| HessianParams::select(&vs, s).map(|p| p.names().to_vec());
        assert_eq!(pick(&Selection::Weights).unwrap(), ["fc.weight"]);
        assert_eq!(
            pick(&Selection::Trainable).unwrap(),
            ["fc.bias", "fc.weight"]
        );
        assert_eq!(
            pick(&names(&["fc.weight", "fc.bias"])).unwrap(),
            ["fc.bias", "fc.weight"]
        );
        assert_eq!(
            pick(&Selection::NameContains("bias".into())).unwrap(),
            ["fc.bias"]
        );
        let p = HessianParams::select(&vs, &Selection::Trainable).unwrap();
        assert_eq!((p.len(), p.numel()), (2, 9));
        assert_eq!(p.describe(), "trainable (2 tensors, 9 values)");
    }

    #[test]
    fn all_refuses_non_trainable_tensors_by_name() {
        let e = HessianParams::select(&store(), &Selection::All)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("'stat'") && e.contains("requires_grad") && !e.contains("fc.bias"),
            "{e}"
        );
        let e = HessianParams::select(&store(), &names(&["stat"]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("'stat'"), "{e}");
    }

    #[test]
    fn bad_selections_are_errors() {
        let vs = store();
        assert!(matches!(
            HessianParams::select(&vs, &names(&["nope"])),
            Err(Error::UnknownTensor { .. })
        ));
        let e = HessianParams::select(&vs, &names(&["fc.bias", "fc.bias"])).unwrap_err();
        assert!(e.to_string().contains("twice"), "{e}");
        assert!(HessianParams::select(&vs, &names(&[])).is_err());
        let e = HessianParams::select(&vs, &Selection::NameContains("conv".into())).unwrap_err();
        assert!(e.to_string().contains("selects no tensor"), "{e}");
    }

    #[test]
    fn split_and_values_round_trip() {
        let vs = store();
        let p = HessianParams::select(&vs, &Selection::Trainable).unwrap();
        let v: Vec<f64> = (0..9).map(f64::from).collect();
        let parts = p.split(&v).unwrap();
        assert_eq!(parts[0].size(), [3]);
        assert_eq!(parts[1].size(), [3, 2]);
        assert_eq!(parts[1].kind(), Kind::Float);
        assert!(p.split(&v[..4]).is_err());
        tch::no_grad(|| {
            for (t, part) in p.tensors().iter().zip(&parts) {
                t.shallow_clone().copy_(part);
            }
        });
        assert_eq!(p.values().unwrap(), v);
    }
}
