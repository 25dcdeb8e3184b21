//! Surfaces as legacy VTK files for ParaView: a structured grid of any
//! nx × ny shape whose height is the loss, with loss and accuracy of every
//! split as point data.

use std::fmt::Write as _;
use std::path::Path;

use crate::analysis::surface::SurfaceResult;
use crate::error::{Error, Result};
use crate::report::figures::write_file;

/// Writes `surface` (2-D) to `path` as an ASCII legacy VTK structured grid,
/// atomically. The z coordinate is the loss of `height_split` (the first
/// split when `None`). Non-finite losses are written at the largest finite
/// height and flagged by the point field `valid` (0), since VTK readers
/// differ on NaN.
pub fn write_vtk(surface: &SurfaceResult, path: &Path, height_split: Option<&str>) -> Result<()> {
    if surface.spec.grid.y.is_none() {
        return Err(Error::invalid(
            "vtk export",
            format!(
                "{} is a 1-D slice; VTK export needs a 2-D surface",
                surface.dir.display()
            ),
        ));
    }
    let height = height_of(surface, height_split)?;
    write_file(path, vtk_text(surface, &height).as_bytes())
}

/// The split whose loss is the height: `wanted`, or the first.
fn height_of(surface: &SurfaceResult, wanted: Option<&str>) -> Result<String> {
    let splits = surface.splits();
    match wanted {
        Some(s) if splits.iter().any(|x| x == s) => Ok(s.to_string()),
        Some(s) => Err(Error::invalid(
            "split",
            format!("'{s}' is not in the surface (it has {splits:?})"),
        )),
        None => splits
            .first()
            .cloned()
            .ok_or_else(|| Error::invalid("vtk export", "the surface has no points")),
    }
}

/// A VTK field name: ASCII letters and digits, everything else `_`.
fn field_name(split: &str) -> String {
    split
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// The file's text; `height` is a split of the 2-D `surface`.
fn vtk_text(surface: &SurfaceResult, height: &str) -> String {
    let grid = &surface.spec.grid;
    let (nx, ny) = (grid.nx(), grid.y.map_or(1, |y| y.n));
    let z = surface.loss(height);
    let zmax = z
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .fold(f64::NEG_INFINITY, f64::max);
    let zmax = if zmax.is_finite() { zmax } else { 0.0 };
    let finite_or_top = |v: f64| if v.is_finite() { v } else { zmax };
    let mut s = String::new();
    let _ = writeln!(s, "# vtk DataFile Version 3.0");
    let _ = writeln!(
        s,
        "tch-landscape surface {} (height: {height} loss)",
        surface.spec.directions.id
    );
    let _ = writeln!(
        s,
        "ASCII\nDATASET STRUCTURED_GRID\nDIMENSIONS {nx} {ny} 1\nPOINTS {} double",
        nx * ny
    );
    for (i, zi) in z.iter().enumerate() {
        let p = grid.point(i);
        let _ = writeln!(s, "{} {} {}", p.x, p.y, finite_or_top(*zi));
    }
    let _ = writeln!(s, "POINT_DATA {}", nx * ny);
    let mut field = |name: &str, values: &[f64]| {
        let _ = writeln!(s, "SCALARS {name} double 1\nLOOKUP_TABLE default");
        for v in values {
            let _ = writeln!(s, "{}", finite_or_top(*v));
        }
    };
    let valid: Vec<f64> = z
        .iter()
        .map(|v| if v.is_finite() { 1.0 } else { 0.0 })
        .collect();
    field("valid", &valid);
    for sp in surface.splits() {
        let name = field_name(&sp);
        field(&format!("{name}_loss"), &surface.loss(&sp));
        let acc = surface.accuracy(&sp);
        if acc.iter().any(|v| v.is_finite()) {
            field(&format!("{name}_accuracy"), &acc);
        }
    }
    s
}
