//! `landscape report`: the HTML report of a run.

use std::path::PathBuf;

use tch_landscape::report::{write_report, LevelSpacing, RatioScale, ReportOptions};

/// Write RUN_DIR/report/index.html (self-contained) with every figure as PNG and SVG beside it.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  landscape report runs/demo/mlp-digits --log\n  landscape report runs/demo/mlp-digits --scale 2 --level-spacing linear --ratio-scale paper"
)]
pub struct Args {
    /// The run directory.
    run: PathBuf,
    /// Output directory (default: RUN/report).
    #[arg(long)]
    out: Option<PathBuf>,
    #[command(flatten)]
    figures: FigureArgs,
}

/// Figure options shared by `report` and `compare`.
#[derive(Debug, clap::Args)]
pub struct FigureArgs {
    /// Plot 2-D losses on a log10 scale.
    #[arg(long)]
    log: bool,
    /// Number of contour levels.
    #[arg(long, default_value_t = 12)]
    levels: usize,
    /// Spacing of the contour levels: linear, quadratic (above the minimum)
    /// or log (log-spaced above the minimum, 3 decades). Default: quadratic,
    /// linear with --log. Each figure's caption states the spacing and range.
    #[arg(long, value_name = "SPACING", value_parser = parse_spacing)]
    level_spacing: Option<LevelSpacing>,
    /// PNG size: 1, 2 or 3 times 720 × 480 pixels, fonts and lines scaled
    /// alike (SVGs are unchanged).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=3), conflicts_with = "dpi")]
    scale: u32,
    /// PNG resolution instead of --scale: 96, 192 or 288 dpi (= 96 × scale).
    #[arg(long, value_parser = ["96", "192", "288"])]
    dpi: Option<String>,
    /// Colour scale of the curvature maps' |λmin/λmax|: data (each map's own
    /// range) or paper (fixed 0–0.5).
    #[arg(long, value_name = "SCALE", default_value = "data", value_parser = parse_ratio_scale)]
    ratio_scale: RatioScale,
}

fn parse_spacing(s: &str) -> Result<LevelSpacing, String> {
    s.parse().map_err(|e: tch_landscape::Error| e.to_string())
}

fn parse_ratio_scale(s: &str) -> Result<RatioScale, String> {
    s.parse().map_err(|e: tch_landscape::Error| e.to_string())
}

impl FigureArgs {
    /// The report options, writing into `out` (default: beside the run).
    pub fn options(&self, out: Option<PathBuf>) -> ReportOptions {
        ReportOptions {
            log_scale: self.log,
            levels: self.levels,
            out,
            scale: match self.dpi.as_deref() {
                Some("192") => 2,
                Some("288") => 3,
                Some(_) => 1,
                None => self.scale,
            },
            level_spacing: self.level_spacing,
            ratio_scale: self.ratio_scale,
        }
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let opts = args.figures.options(args.out);
    let index = write_report(&args.run, &opts)?;
    outln!("{}", index.display())?;
    Ok(())
}
