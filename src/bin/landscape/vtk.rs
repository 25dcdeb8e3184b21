//! `landscape vtk`: a 2-D surface as a VTK structured grid for ParaView.

use std::path::PathBuf;

use tch_landscape::analysis::surface::SurfaceResult;
use tch_landscape::report::write_vtk;

/// Export a computed 2-D surface (a directory with surface.parquet) to legacy VTK.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  landscape vtk runs/demo/mlp-digits/surfaces/filter-2d --out filter-2d.vtk"
)]
pub struct Args {
    /// The surface directory.
    surface: PathBuf,
    /// Output file (default: SURFACE/surface.vtk).
    #[arg(long)]
    out: Option<PathBuf>,
    /// The split whose loss is the height (default: the first).
    #[arg(long)]
    split: Option<String>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let s = SurfaceResult::load(&args.surface)?;
    let out = args.out.unwrap_or_else(|| args.surface.join("surface.vtk"));
    write_vtk(&s, &out, args.split.as_deref())?;
    outln!("{}", out.display())?;
    Ok(())
}
