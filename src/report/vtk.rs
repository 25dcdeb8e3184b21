//! Surfaces as legacy VTK files for ParaView: a structured grid of any
//! nx × ny shape whose height is the loss, with loss and accuracy of every
//! split as point data.

use std::fmt::Write as _;
use std::path::Path;

use crate::analysis::surface::SurfaceResult;
use crate::error::{Error, Result};

/// Writes `surface` (2-D) to `path` as an ASCII legacy VTK structured grid.
/// The z coordinate is the loss of `height_split` (the first split when
/// `None`). Non-finite losses are written at the largest finite height and
/// flagged by the point field `valid` (0), since VTK readers differ on NaN.
pub fn write_vtk(surface: &SurfaceResult, path: &Path, height_split: Option<&str>) -> Result<()> {
    let grid = &surface.spec.grid;
    let Some(y) = grid.y else {
        return Err(Error::invalid(
            "vtk export",
            format!(
                "{} is a 1-D slice; VTK export needs a 2-D surface",
                surface.dir.display()
            ),
        ));
    };
    let splits = surface.splits();
    let height = match height_split {
        Some(s) if splits.iter().any(|x| x == s) => s.to_string(),
        Some(s) => {
            return Err(Error::invalid(
                "split",
                format!("'{s}' is not in the surface (it has {splits:?})"),
            ))
        }
        None => splits
            .first()
            .cloned()
            .ok_or_else(|| Error::invalid("vtk export", "the surface has no points"))?,
    };
    let z = surface.loss(&height);
    let zmax = z
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .fold(f64::NEG_INFINITY, f64::max);
    let zmax = if zmax.is_finite() { zmax } else { 0.0 };
    let (nx, ny) = (grid.nx(), y.n);
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
        let h = if zi.is_finite() { *zi } else { zmax };
        let _ = writeln!(s, "{} {} {}", p.x, p.y, h);
    }
    let _ = writeln!(s, "POINT_DATA {}", nx * ny);
    let field = |s: &mut String, name: &str, values: &[f64]| {
        let _ = writeln!(s, "SCALARS {name} double 1\nLOOKUP_TABLE default");
        for v in values {
            let _ = writeln!(s, "{}", if v.is_finite() { *v } else { zmax });
        }
    };
    let valid: Vec<f64> = z
        .iter()
        .map(|v| if v.is_finite() { 1.0 } else { 0.0 })
        .collect();
    field(&mut s, "valid", &valid);
    for sp in &splits {
        let clean: String = sp
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        field(&mut s, &format!("{clean}_loss"), &surface.loss(sp));
        let acc = surface.accuracy(sp);
        if acc.iter().any(|v| v.is_finite()) {
            field(&mut s, &format!("{clean}_accuracy"), &acc);
        }
    }
    std::fs::write(path, s).map_err(|e| Error::io("writing", path, e))
}
