//! The new rows of a [`LiveGram`](super::LiveGram) straight from the
//! snapshot files: the products ⟨θₛ − θ₀, θᵢ − θ₀⟩ of a few new snapshots s
//! with every snapshot i, chunk by chunk, in float64, reading each snapshot
//! once from its mapping (no element-major copy, no Gram product of all
//! pairs). The snapshots taken in before were checked then (checksums,
//! finite values) and are known unchanged (their files'
//! [fingerprints](super::LiveGram::changed)); only the new ones are checked
//! here.

use nalgebra::DMatrix;

use super::stream::{Reporter, Selected};
use crate::error::{Error, Result};
use crate::store::run::Run;
use crate::store::snapshot::SnapshotFile;

/// New rows at most this many are computed by [`direct_pass`] (k·n
/// multiply-adds per value, on one thread); more (a rebuild) by libtorch's
/// matrix product on element-major copies.
pub(super) const DIRECT_ROWS: usize = 4;

/// Values of each snapshot read between two releases of its mapped pages
/// (1 MiB of float32), as [`Run::stream`] does.
const RELEASE_VALUES: usize = 1 << 18;

/// The new rows of each tensor while a pass sums them: `k` rows (snapshots
/// `first..first + k`) of `cols` columns (snapshots `1..=cols`), appended to
/// `out` as triangle rows once the tensor's chunks are through.
pub(super) struct Blocks<'a> {
    pub(super) current: Option<(usize, DMatrix<f64>)>,
    pub(super) out: &'a mut [Vec<f64>],
    pub(super) first: usize,
    pub(super) k: usize,
    pub(super) cols: usize,
}

impl Blocks<'_> {
    /// The block of the selected tensor at `pos`, the previous tensor's
    /// appended when it changes (chunks come tensor by tensor).
    pub(super) fn block(&mut self, pos: usize) -> &mut DMatrix<f64> {
        if self.current.as_ref().is_some_and(|(p, _)| *p != pos) {
            self.finish();
        }
        let (k, cols) = (self.k, self.cols);
        &mut self
            .current
            .get_or_insert_with(|| (pos, DMatrix::zeros(k, cols)))
            .1
    }

    /// Appends the current block: row s = first + a is `[0 (θ₀), G0[s][1..=s]]`.
    pub(super) fn finish(&mut self) {
        if let Some((pos, block)) = self.current.take() {
            for a in 0..self.k {
                let s = self.first + a;
                self.out[pos].push(0.0);
                self.out[pos].extend((0..s).map(|c| block[(a, c)]));
            }
        }
    }
}

/// The pass of [`DIRECT_ROWS`] or fewer new rows over `run` (snapshots
/// `first..n` new in the rows, `fresh..n` not checked yet): every selected
/// tensor `chunk` values at a time, each chunk's products added to
/// `blocks`. The fresh snapshots are checked (checksum of each tensor
/// first, then every value finite as float32: an error names the file, the
/// tensor and the element).
pub(super) fn direct_pass(
    run: &Run,
    selected: &[Selected],
    chunk: usize,
    fresh: usize,
    blocks: &mut Blocks<'_>,
    report: &mut Reporter,
) -> Result<()> {
    let snaps = run.snapshots();
    let names = &run.manifest().tensors;
    for snap in &snaps[fresh..] {
        for s in selected {
            snap.verify_tensor(s.tensor)?;
        }
    }
    let first = blocks.first;
    let mut scratch: Vec<Vec<f32>> = vec![Vec::new(); snaps.len()];
    let mut d = Vec::new();
    for (pos, s) in selected.iter().enumerate() {
        let k = s.tensor;
        let (mut start, mut released) = (0, 0);
        while start < s.numel {
            let len = chunk.min(s.numel - start);
            let rows = rows_of(snaps, k, start, len, &mut scratch);
            for (i, row) in rows.iter().enumerate().skip(fresh) {
                if let Some(j) = row.iter().position(|x| !x.is_finite()) {
                    return Err(non_finite(&snaps[i], &names[k].name, k, start + j));
                }
            }
            direct_rows(blocks.block(pos), &rows, first, &mut d);
            report.add(len);
            start += len;
            if start == s.numel || start - released >= RELEASE_VALUES {
                for snap in snaps {
                    snap.release_range(k, released, start - released);
                }
                released = start;
            }
        }
    }
    Ok(())
}

/// Checks snapshot `snap` alone (a run of one snapshot: no row to compute,
/// but later passes count on it being checked): each selected tensor's
/// checksum and finite values.
pub(super) fn check_snapshot(run: &Run, snap: &SnapshotFile, selected: &[Selected]) -> Result<()> {
    let names = &run.manifest().tensors;
    let mut row = Vec::new();
    for s in selected {
        snap.verify_tensor(s.tensor)?;
        let mut start = 0;
        while start < s.numel {
            let len = RELEASE_VALUES.min(s.numel - start);
            row.resize(len, 0.0);
            snap.copy_f32(s.tensor, start, &mut row);
            if let Some(j) = row.iter().position(|x| !x.is_finite()) {
                return Err(non_finite(snap, &names[s.tensor].name, s.tensor, start + j));
            }
            snap.release_range(s.tensor, start, len);
            start += len;
        }
    }
    Ok(())
}

/// The values `start..start + len` of tensor `k` of every snapshot as
/// float32: borrowed from the mapping (float32 runs) or converted into
/// `scratch`.
fn rows_of<'a>(
    snaps: &'a [SnapshotFile],
    k: usize,
    start: usize,
    len: usize,
    scratch: &'a mut [Vec<f32>],
) -> Vec<&'a [f32]> {
    snaps
        .iter()
        .zip(scratch.iter_mut())
        .map(|(snap, buf)| match snap.f32_values(k) {
            Some(v) => v.get(start..start + len).unwrap_or_default(),
            None => {
                buf.resize(len, 0.0);
                snap.copy_f32(k, start, buf);
                &buf[..]
            }
        })
        .collect()
}

/// The error for element `at` of tensor `k` (named `name`) of `snap`.
fn non_finite(snap: &SnapshotFile, name: &str, k: usize, at: usize) -> Error {
    Error::NonFinite {
        path: snap.path().to_path_buf(),
        tensor: name.to_string(),
        index: at as u64,
        value: snap
            .values(k)
            .and_then(|v| v.get_f64(at))
            .unwrap_or(f64::NAN),
    }
}

/// Adds a chunk's share of the rows of snapshots `first..first + k` to
/// `block` (k × n−1, column c = snapshot c + 1; `rows[i]` the chunk of
/// snapshot i), for the columns of the lower triangle: Σₜ (θₛ − θ₀)ₜ
/// (θᵢ − θ₀)ₜ in float64 (the float32 values' differences are exact), for
/// i = 1..=s. `d` is scratch.
pub(super) fn direct_rows(
    block: &mut DMatrix<f64>,
    rows: &[&[f32]],
    first: usize,
    d: &mut Vec<f64>,
) {
    let z = rows[0];
    for a in 0..block.nrows() {
        let s = first + a;
        d.clear();
        d.extend(
            rows[s]
                .iter()
                .zip(z)
                .map(|(&x, &y)| f64::from(x) - f64::from(y)),
        );
        for i in 1..=s {
            block[(a, i - 1)] += dot_delta(d, rows[i], z);
        }
    }
}

/// Σₜ d[t]·(r[t] − z[t]), the difference and the sum in float64: with
/// AVX2 where the CPU has it (the build targets plain x86-64), else as
/// compiled.
fn dot_delta(d: &[f64], r: &[f32], z: &[f32]) -> f64 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2 (checked just above).
        return unsafe { dot_delta_avx2(d, r, z) };
    }
    dot_delta_plain(d, r, z)
}

/// [`dot_delta_plain`] compiled for AVX2.
///
/// # Safety
/// The CPU must have AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn dot_delta_avx2(d: &[f64], r: &[f32], z: &[f32]) -> f64 {
    dot_delta_plain(d, r, z)
}

/// Σₜ d[t]·(r[t] − z[t]) in sixteen partial sums (independent lanes: the
/// loop vectorises without reassociating), added pairwise at the end.
#[inline(always)]
fn dot_delta_plain(d: &[f64], r: &[f32], z: &[f32]) -> f64 {
    const L: usize = 16;
    let mut acc = [0.0f64; L];
    let (dc, rc, zc) = (d.chunks_exact(L), r.chunks_exact(L), z.chunks_exact(L));
    let tail: f64 = dc
        .remainder()
        .iter()
        .zip(rc.remainder())
        .zip(zc.remainder())
        .map(|((&d, &r), &z)| d * (f64::from(r) - f64::from(z)))
        .sum();
    for ((d, r), z) in dc.zip(rc).zip(zc) {
        for j in 0..L {
            acc[j] += d[j] * (f64::from(r[j]) - f64::from(z[j]));
        }
    }
    let mut width = L;
    while width > 1 {
        width /= 2;
        for j in 0..width {
            acc[j] += acc[j + width];
        }
    }
    acc[0] + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direct_rows_are_the_products_relative_to_the_first_snapshot() {
        // 4 snapshots of 7 values; rows of snapshots 2 and 3.
        let snaps: Vec<Vec<f32>> = (0..4)
            .map(|s| {
                (0..7)
                    .map(|t| ((s * 7 + t) * 37 % 11) as f32 - 5.0)
                    .collect()
            })
            .collect();
        let rows: Vec<&[f32]> = snaps.iter().map(|v| v.as_slice()).collect();
        let mut block = DMatrix::zeros(2, 3);
        let mut d = Vec::new();
        // Two chunks: 0..5 and 5..7.
        let (a, b): (Vec<&[f32]>, Vec<&[f32]>) = rows.iter().map(|r| (&r[..5], &r[5..])).unzip();
        direct_rows(&mut block, &a, 2, &mut d);
        direct_rows(&mut block, &b, 2, &mut d);
        let delta = |i: usize, t: usize| f64::from(snaps[i][t]) - f64::from(snaps[0][t]);
        for (r, s) in [(0, 2), (1, 3)] {
            for i in 1..=s {
                let want: f64 = (0..7).map(|t| delta(s, t) * delta(i, t)).sum();
                assert_eq!(block[(r, i - 1)], want, "({s}, {i})");
            }
        }
        assert_eq!(block[(0, 2)], 0.0, "above the diagonal: not computed");
    }

    #[test]
    fn the_dot_product_is_float64_in_every_build() {
        // Lengths around the 16 lanes; values whose float32 differences
        // and products are exact in float64.
        for len in [0, 1, 15, 16, 17, 33, 100] {
            let r: Vec<f32> = (0..len).map(|t| (t as f32) * 0.5 + 1e6).collect();
            let z: Vec<f32> = (0..len).map(|t| 1e6 - (t % 7) as f32).collect();
            let d: Vec<f64> = (0..len).map(|t| (t % 5) as f64 - 2.0).collect();
            let want: f64 = (0..len)
                .map(|t| d[t] * (f64::from(r[t]) - f64::from(z[t])))
                .sum();
            assert_eq!(dot_delta(&d, &r, &z), want, "len {len}");
            assert_eq!(dot_delta_plain(&d, &r, &z), want, "len {len}");
        }
    }
}
