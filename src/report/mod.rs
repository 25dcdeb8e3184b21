//! Post-run reports: figures (PNG + SVG) and a self-contained HTML page.

pub mod figures;
pub mod html;
pub mod run_report;
