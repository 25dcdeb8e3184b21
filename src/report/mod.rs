//! Post-run reports: figures (PNG + SVG), a self-contained HTML page per run,
//! side-by-side comparison of runs, and VTK export of surfaces.

pub mod compare;
pub mod figures;
pub mod html;
pub mod run_report;
pub mod vtk;
