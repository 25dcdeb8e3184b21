//! The "Landscape over training" section: for every
//! `RUN_DIR/animations/NAME/` (`landscape animate`), an interactive 3-D
//! animation (plotly frames, a slider, play and pause) of the loss surface
//! at each chosen snapshot with the path so far on it, and the animated GIF
//! of the same frames for slides.

use std::path::Path;

use crate::analysis::animate::{AnimationPlane, AnimationResult};
use crate::error::Result;
use crate::report::animation::{write_media_to, MediaOptions};
use crate::report::figures::plotted;
use crate::report::html::Frame3d;
use crate::report::output::Output;
use crate::report::run_report::surfaces::axis_labels;
use crate::report::sanitize;
use crate::store::animation::SPEC_FILE;

/// Where `landscape animate` writes under a run.
pub const ANIMATIONS_DIR: &str = "animations";

pub(super) fn section(out: &mut Output, run_dir: &Path) -> Result<()> {
    out.section("over-training", "Landscape over training");
    let found =
        crate::report::inputs::load_subdirs(&run_dir.join(ANIMATIONS_DIR), SPEC_FILE, |d| {
            AnimationResult::load(d)
        })?;
    if found.is_empty() {
        out.missing(
            "No animation of the landscape over training.",
            "landscape animate RUN_DIR",
        );
        return Ok(());
    }
    for (name, anim) in &found {
        animation(out, name, anim)?;
    }
    Ok(())
}

fn animation(out: &mut Output, name: &str, anim: &AnimationResult) -> Result<()> {
    let Some(split) = anim.preferred_split() else {
        out.text(&format!("{name}: the animation has no values."));
        return Ok(());
    };
    let spec = &anim.spec;
    let n = spec.frames.len();
    let epochs = |i: usize| spec.frames.get(i).map_or(0, |f| f.epoch);
    out.text(&match spec.plane {
        AnimationPlane::Pca => format!(
            "{name}: the {split} loss on the plane through each of {n} snapshots (epochs {} to {}) parallel to the trajectory PCA's PC1/PC2 plane, in its coordinates: the black line is the projected optimizer path up to the frame's snapshot (red), which lies on its own frame. Colour and height are log10 of the loss, on one scale for all frames.",
            epochs(0),
            epochs(n - 1)
        ),
        AnimationPlane::Fixed => format!(
            "{name}: the {split} loss around each of {n} snapshots (epochs {} to {}) along the same two directions ({}), each frame centred on its snapshot (red). Colour and height are log10 of the loss, on one scale for all frames.",
            epochs(0),
            epochs(n - 1),
            spec.directions.description
        ),
    });
    let Some(first) = anim.frames.first() else {
        return Ok(());
    };
    let xs = first.spec.grid.x.values();
    let ys = first.spec.grid.y.map(|a| a.values()).unwrap_or_default();
    let log_loss = |v: f64| plotted(v, true);
    let losses: Vec<f64> = anim.snapshot_losses(&split);
    let mut frames = Vec::with_capacity(n);
    for (i, (f, s)) in spec.frames.iter().zip(&anim.frames).enumerate() {
        let path = spec.frames[..=i]
            .iter()
            .zip(&losses)
            .map(|(g, l)| [g.at[0], g.at[1], log_loss(*l)])
            .collect();
        frames.push(Frame3d {
            label: format!("epoch {}", f.epoch),
            z: s.loss(&split).into_iter().map(log_loss).collect(),
            path: if spec.plane == AnimationPlane::Pca {
                path
            } else {
                Vec::new()
            },
            point: [f.at[0], f.at[1], log_loss(losses[i])],
        });
    }
    let (x_label, y_label) = axis_labels(first, None);
    out.animation_3d(
        &format!("{name}: {split} loss over training"),
        (&xs, &ys),
        &frames,
        (&x_label, &y_label, "log10 loss"),
    );
    let gif = format!("animation-{}.gif", sanitize(name));
    write_media_to(
        anim,
        out.dir(),
        &gif,
        &MediaOptions {
            split: split.clone(),
            pngs: false,
            ..MediaOptions::default()
        },
    )?;
    out.image(
        &gif,
        &format!("{name}: {split} loss over training, animated"),
        &format!(
            "The same {n} frames as an animated GIF (heat map and contour lines of log10 loss, one colour scale; for slides); a PNG per frame at 1440 × 960 is in {}/png",
            anim.dir.display()
        ),
    );
    Ok(())
}
