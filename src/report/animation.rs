//! Media of an animation of the landscape over training: one heat map with
//! contour lines per frame on one fixed colour scale and one set of levels
//! (so frames compare), the optimizer's path so far and the frame's
//! snapshot on top; written as an animated GIF (for slides and READMEs) and
//! a PNG per frame.

use std::path::{Path, PathBuf};

use crate::analysis::animate::{AnimationPlane, AnimationResult};
use crate::error::{Error, Result};
use crate::report::figures::{
    plotted, render_png, render_rgb, write_file, ColourScale, ContourPlot, LevelSpacing, Marker,
    Shape, PALETTE, SIZE,
};
use crate::report::run_report::surfaces::axis_labels;
use crate::store::fsutil::create_dir_in;

/// The animated GIF's name in an animation's directory.
pub const GIF_FILE: &str = "animation.gif";
/// The directory of the PNG frames in an animation's directory.
pub const PNG_DIR: &str = "png";

/// How the media are drawn.
#[derive(Debug, Clone)]
pub struct MediaOptions {
    /// The split drawn (default `train`).
    pub split: String,
    /// Colour the log10 of the loss (default: true — losses over training
    /// span decades, and a linear scale leaves the late frames one colour).
    pub log: bool,
    /// Contour levels (default 12).
    pub levels: usize,
    /// Seconds each GIF frame is shown; the last one is held 3× as long.
    pub frame_seconds: f64,
    /// PNG frames' scale (1 to 3; default 2, 1440 × 960 pixels for slides).
    pub png_scale: u32,
    /// Also write the PNG frames (default true).
    pub pngs: bool,
}

impl Default for MediaOptions {
    fn default() -> Self {
        MediaOptions {
            split: "train".into(),
            log: true,
            levels: 12,
            frame_seconds: 0.6,
            png_scale: 2,
            pngs: true,
        }
    }
}

/// The files written by [`write_media`].
#[derive(Debug, Clone)]
pub struct Media {
    /// The animated GIF.
    pub gif: PathBuf,
    /// The PNG frames, in frame order.
    pub pngs: Vec<PathBuf>,
}

/// The frames of `anim` as figures, on one colour scale and one set of
/// levels; an error names the split when no frame has it.
fn frame_figures(anim: &AnimationResult, opts: &MediaOptions) -> Result<Vec<ContourPlot>> {
    let split = opts.split.as_str();
    if !anim.splits().iter().any(|s| s == split) {
        return Err(Error::invalid(
            "split",
            format!(
                "'{split}' is not a split of the animation in {} (it has {})",
                anim.dir.display(),
                anim.splits().join(", ")
            ),
        ));
    }
    let all: Vec<f64> = anim
        .frames
        .iter()
        .flat_map(|f| f.loss(split))
        .map(|v| plotted(v, opts.log))
        .collect();
    let spacing = LevelSpacing::or_default(None, opts.log);
    let levels = ContourPlot::spaced_levels(&all, opts.levels, spacing);
    let colours = ColourScale::of(all.iter().copied());
    let n = anim.frames.len();
    let pca = anim.spec.plane == AnimationPlane::Pca;
    let mut figs = Vec::with_capacity(n);
    for (i, (f, s)) in anim.spec.frames.iter().zip(&anim.frames).enumerate() {
        let (x_label, y_label) = axis_labels(s, None);
        let path: Vec<(f64, f64, bool)> = anim
            .spec
            .path
            .iter()
            .filter(|p| p.snapshot <= f.snapshot)
            .map(|p| (p.x, p.y, false))
            .collect();
        let mut markers = Vec::new();
        if let Some(first) = anim.spec.path.first() {
            markers.push(Marker {
                x: first.x,
                y: first.y,
                shape: Shape::Triangle,
                colour: PALETTE[2],
                label: format!("start θ₀ (epoch {})", first.epoch),
            });
        }
        if let (true, Some(last)) = (pca, anim.spec.path.last()) {
            markers.push(Marker {
                x: last.x,
                y: last.y,
                shape: Shape::Square,
                colour: PALETTE[0],
                label: format!("final model (epoch {})", last.epoch),
            });
        }
        markers.push(Marker {
            x: f.at[0],
            y: f.at[1],
            shape: Shape::Circle,
            colour: PALETTE[3],
            label: format!("this frame's model (epoch {})", f.epoch),
        });
        figs.push(ContourPlot {
            title: format!(
                "{split} loss at epoch {} (frame {}/{n}){}",
                f.epoch,
                i + 1,
                if opts.log { ", log10" } else { "" }
            ),
            x_label,
            y_label,
            xs: s.spec.grid.x.values(),
            ys: s.spec.grid.y.map(|a| a.values()).unwrap_or_default(),
            z: s.loss(split),
            levels: levels.clone(),
            colours,
            log: opts.log,
            z_label: "loss".into(),
            path_label: if pca {
                "optimizer path so far".into()
            } else {
                String::new()
            },
            path,
            filled: true,
            markers,
            reference: None,
        });
    }
    Ok(figs)
}

/// Writes `animation.gif` (and, when asked, `png/frame-NNN.png`) into the
/// animation's directory; see [`write_media_to`].
pub fn write_media(anim: &AnimationResult, opts: &MediaOptions) -> Result<Media> {
    write_media_to(anim, &anim.dir, GIF_FILE, opts)
}

/// Writes the animated GIF `dir/gif_name` (looping, every frame quantized
/// to its own 256-colour palette) and, when `opts.pngs`, a PNG per frame
/// under `dir/png/`; every file atomically.
pub fn write_media_to(
    anim: &AnimationResult,
    dir: &Path,
    gif_name: &str,
    opts: &MediaOptions,
) -> Result<Media> {
    if !(opts.frame_seconds > 0.0 && opts.frame_seconds <= 60.0) {
        return Err(Error::invalid(
            "frame_seconds",
            format!("{}: expected 0 < seconds ≤ 60", opts.frame_seconds),
        ));
    }
    let figs = frame_figures(anim, opts)?;
    let gif_path = dir.join(gif_name);
    let mut pngs = Vec::new();
    if opts.pngs {
        let png_dir = dir.join(PNG_DIR);
        create_dir_in(dir, &png_dir)?;
        for (i, fig) in figs.iter().enumerate() {
            let path = png_dir.join(format!("frame-{i:03}.png"));
            render_png(fig, opts.png_scale, &path)?;
            pngs.push(path);
        }
    }
    let gif_err = |e: gif::EncodingError| {
        Error::io("encoding", &gif_path, std::io::Error::other(e.to_string()))
    };
    let mut bytes = Vec::new();
    {
        let (w, h) = (SIZE.0 as u16, SIZE.1 as u16);
        let mut enc = gif::Encoder::new(&mut bytes, w, h, &[]).map_err(gif_err)?;
        enc.set_repeat(gif::Repeat::Infinite).map_err(gif_err)?;
        let delay = (opts.frame_seconds * 100.0).round().max(1.0) as u16;
        for (i, fig) in figs.iter().enumerate() {
            let (rgb, _) = render_rgb(fig, 1, &gif_path)?;
            let mut frame = gif::Frame::from_rgb_speed(w, h, &rgb, 10);
            frame.delay = if i + 1 == figs.len() {
                3 * delay
            } else {
                delay
            };
            enc.write_frame(&frame).map_err(gif_err)?;
        }
    }
    write_file(&gif_path, &bytes)?;
    Ok(Media {
        gif: gif_path,
        pngs,
    })
}
