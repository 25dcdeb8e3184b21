//! Copying a VarStore's variables to host memory on the training thread.
//!
//! `VarStore::variables()` returns shallow clones that share storage with the
//! live parameters, which the optimizer keeps changing; so every value is
//! deep-copied into an owned `Vec` before it leaves the training thread
//! (under [`Durability::Queued`](crate::Durability::Queued); the waiting
//! durabilities hand over the live tensors). The writer gives those `Vec`s
//! back after writing ([`HostPool`]): the next copy of the same tensor reuses
//! memory whose pages are already mapped, instead of faulting in fresh ones.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tch::{Device, Kind, Tensor};

use crate::error::{Error, Result};
use crate::store::manifest::{Role, SkippedTensor, StorageDtype, TensorInfo};
use crate::store::snapshot::HostValues;
use crate::tensor::kind_name;

/// The live variables of a VarStore (`VarStore::variables_`), shared so the
/// recorder does not borrow the VarStore.
pub(crate) type SharedVariables = Arc<Mutex<tch::nn::Variables>>;

/// Host buffers handed back by the writer, at most one per recorded tensor,
/// reused by the next copy of that tensor (the pool holds at most one
/// snapshot's worth of memory).
#[derive(Debug, Default)]
pub(crate) struct HostPool {
    slots: Mutex<Vec<Option<HostValues>>>,
}

impl HostPool {
    /// Keeps the buffers of one written snapshot (in manifest order; a slot
    /// already filled keeps its buffer).
    pub fn give(&self, buffers: Vec<Option<HostValues>>) {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if slots.len() < buffers.len() {
            slots.resize_with(buffers.len(), || None);
        }
        for (slot, b) in slots.iter_mut().zip(buffers) {
            if slot.is_none() {
                *slot = b;
            }
        }
    }

    /// The kept buffer of tensor `i`, when there is one.
    fn take(&self, i: usize) -> Option<HostValues> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.get_mut(i).and_then(Option::take)
    }
}

/// A shallow-cloned, name-sorted view of the variables.
pub(crate) fn sorted_variables(vars: &SharedVariables) -> Vec<(String, Tensor)> {
    let guard = vars.lock().unwrap_or_else(|p| p.into_inner());
    let mut v: Vec<(String, Tensor)> = guard
        .named_variables
        .iter()
        .map(|(k, t)| (k.clone(), t.shallow_clone()))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// The tensor list of a new run: recorded tensors (sorted, with offsets), the
/// skipped ones, and the storage dtype.
pub(crate) fn describe(
    vars: &[(String, Tensor)],
) -> (Vec<TensorInfo>, Vec<SkippedTensor>, StorageDtype) {
    let mut infos = Vec::new();
    let mut skipped = Vec::new();
    let mut offset = 0u64;
    let mut any_f64 = false;
    for (name, t) in vars {
        let kind = t.kind();
        match kind_name(kind) {
            Some(dtype) => {
                let shape = t.size();
                let numel = shape.iter().product::<i64>() as u64;
                let trainable = t.requires_grad();
                any_f64 |= kind == Kind::Double;
                infos.push(TensorInfo {
                    name: name.clone(),
                    role: Role::classify(trainable, shape.len()),
                    shape,
                    dtype: dtype.to_string(),
                    trainable,
                    numel,
                    offset,
                });
                offset += numel;
            }
            None => skipped.push(SkippedTensor {
                name: name.clone(),
                dtype: format!("{kind:?}"),
                reason: "only floating-point variables are recorded".into(),
            }),
        }
    }
    let dtype = if any_f64 {
        StorageDtype::Float64
    } else {
        StorageDtype::Float32
    };
    (infos, skipped, dtype)
}

/// Keeps the tensors `selection` picks; the others join `skipped` with the
/// selection as the reason, and offsets are recomputed. An error for a
/// listed name that is no recordable variable, or when nothing is picked.
pub(crate) fn select(
    tensors: Vec<TensorInfo>,
    mut skipped: Vec<SkippedTensor>,
    selection: &crate::tensor::Selection,
) -> Result<(Vec<TensorInfo>, Vec<SkippedTensor>)> {
    if let crate::tensor::Selection::Names(names) = selection {
        if let Some(missing) = names
            .iter()
            .find(|n| !tensors.iter().any(|t| &t.name == *n))
        {
            return Err(Error::invalid(
                "RecorderBuilder::select",
                format!(
                    "'{missing}' is not a floating-point variable of the VarStore (it has {})",
                    tensors
                        .iter()
                        .map(|t| t.name.as_str())
                        .take(8)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
    }
    let (mut kept, left): (Vec<TensorInfo>, Vec<TensorInfo>) = tensors
        .into_iter()
        .partition(|t| selection.selects(&t.name, t.role));
    if kept.is_empty() {
        return Err(Error::invalid(
            "RecorderBuilder::select",
            format!("the selection '{selection}' picks none of the VarStore's variables"),
        ));
    }
    let mut offset = 0;
    for t in &mut kept {
        t.offset = offset;
        offset += t.numel;
    }
    skipped.extend(left.into_iter().map(|t| SkippedTensor {
        name: t.name,
        dtype: t.dtype,
        reason: format!("not selected (RecorderBuilder::select({selection}))"),
    }));
    skipped.sort_by(|a, b| a.name.cmp(&b.name));
    Ok((kept, skipped))
}

/// Deep-copies the recorded variables to host memory, checking that the set
/// of variables and their shapes still match the manifest. With `borrow`,
/// variables already on the CPU in the storage dtype and contiguous are
/// handed over as they are ([`HostValues::Borrowed`]): the caller then keeps
/// them unchanged until the writer has written them. Otherwise the values are
/// copied into `pool`'s buffers where it has them.
pub(crate) fn copy_to_host(
    vars: &SharedVariables,
    tensors: &[TensorInfo],
    skipped: &[SkippedTensor],
    dtype: StorageDtype,
    context: &str,
    borrow: bool,
    pool: &HostPool,
) -> Result<Vec<HostValues>> {
    let guard = vars.lock().unwrap_or_else(|p| p.into_inner());
    let named: &HashMap<String, Tensor> = &guard.named_variables;
    if named.len() != tensors.len() + skipped.len() {
        let known: std::collections::HashSet<&str> = tensors
            .iter()
            .map(|t| t.name.as_str())
            .chain(skipped.iter().map(|s| s.name.as_str()))
            .collect();
        let mut added: Vec<String> = named
            .keys()
            .filter(|k| !known.contains(k.as_str()))
            .cloned()
            .collect();
        added.sort();
        let mut removed: Vec<String> = known
            .iter()
            .filter(|k| !named.contains_key(**k))
            .map(|k| k.to_string())
            .collect();
        removed.sort();
        return Err(Error::VariablesChanged { added, removed });
    }
    let mut out = Vec::with_capacity(tensors.len());
    tch::no_grad(|| -> Result<()> {
        for (i, info) in tensors.iter().enumerate() {
            let t = named
                .get(&info.name)
                .ok_or_else(|| Error::VariablesChanged {
                    added: vec![],
                    removed: vec![info.name.clone()],
                })?;
            let shape = t.size();
            if shape != info.shape {
                return Err(Error::ShapeChanged {
                    tensor: info.name.clone(),
                    expected: info.shape.clone(),
                    found: shape,
                    context: context.to_string(),
                });
            }
            let reuse = if borrow { None } else { pool.take(i) };
            out.push(copy_one(t, info, dtype, borrow, reuse)?);
        }
        Ok(())
    })?;
    Ok(out)
}

fn copy_one(
    t: &Tensor,
    info: &TensorInfo,
    dtype: StorageDtype,
    borrow: bool,
    reuse: Option<HostValues>,
) -> Result<HostValues> {
    let n = info.numel as usize;
    let err = |e| Error::torch(format!("copying '{}' to host memory", info.name), e);
    let kind = match dtype {
        StorageDtype::Float32 => Kind::Float,
        StorageDtype::Float64 => Kind::Double,
        StorageDtype::Float16 => Kind::Half,
        StorageDtype::BFloat16 => Kind::BFloat16,
    };
    // `to_device`/`to_kind` return the same storage when nothing changes, so
    // the explicit copy below is always the one deep copy.
    let src = t
        .f_to_device(Device::Cpu)
        .and_then(|t| t.f_to_kind(kind))
        .and_then(|t| t.f_contiguous())
        .and_then(|t| t.f_detach())
        .map_err(err)?;
    if dtype == StorageDtype::Float16 {
        check_float16_range(t, &src, info)?;
    }
    if borrow {
        return Ok(HostValues::Borrowed(src));
    }
    Ok(match (dtype, reuse) {
        (StorageDtype::Float16 | StorageDtype::BFloat16, _) => {
            // Rounding to 16 bits made a private copy (unless the model has
            // that dtype already): nothing the training changes, so it is
            // written from its own memory like a borrowed tensor.
            let own = if src.data_ptr() == t.data_ptr() {
                src.f_zeros_like()
                    .and_then(|mut c| c.f_copy_(&src).map(|()| c))
                    .map_err(err)?
            } else {
                src
            };
            HostValues::Borrowed(own)
        }
        (StorageDtype::Float32, Some(HostValues::F32(mut v))) if v.len() == n => {
            src.f_copy_data(&mut v, n).map_err(err)?;
            HostValues::F32(v)
        }
        (StorageDtype::Float64, Some(HostValues::F64(mut v))) if v.len() == n => {
            src.f_copy_data(&mut v, n).map_err(err)?;
            HostValues::F64(v)
        }
        (StorageDtype::Float32, _) => {
            let mut v = vec![0f32; n];
            src.f_copy_data(&mut v, n).map_err(err)?;
            HostValues::F32(v)
        }
        (StorageDtype::Float64, _) => {
            let mut v = vec![0f64; n];
            src.f_copy_data(&mut v, n).map_err(err)?;
            HostValues::F64(v)
        }
    })
}

/// An error naming the tensor when rounding `t` to float16 (`half`) made a
/// finite value infinite (|x| > 65504): float16 storage would lose it.
fn check_float16_range(t: &Tensor, half: &Tensor, info: &TensorInfo) -> Result<()> {
    let any = |x: &Tensor| -> Result<bool> {
        x.f_isinf()
            .and_then(|x| x.f_any())
            .and_then(|x| x.f_int64_value(&[]))
            .map(|v| v != 0)
            .map_err(|e| Error::torch(format!("checking '{}' for float16", info.name), e))
    };
    if any(half)? && !any(t)? {
        return Err(Error::invalid(
            format!("tensor '{}'", info.name),
            "has values beyond float16's range (|x| > 65504), which float16 storage would \
             record as infinite; use bfloat16 storage (float32's range) or the default exact \
             storage",
        ));
    }
    Ok(())
}
