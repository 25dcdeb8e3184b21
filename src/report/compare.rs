//! `landscape compare RUN_A RUN_B …`: the same figures of several runs on one
//! page, with identical colour scale, contour levels and axes, which is what
//! makes filter-normalized surfaces comparable (§4 of the paper).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::analysis::surface::SurfaceResult;
use crate::error::{Error, Result};
use crate::report::figures::{plotted, ColourScale, ContourPlot, LinePlot, Series};
use crate::report::inputs::list_surfaces;
use crate::report::metrics::Metrics;
use crate::report::output::Output;
use crate::report::{fmt_opt, non_finite_note, sanitize, ReportOptions};
use crate::store::pca::PcaSummary;
use crate::store::run::Run;

/// The compared runs.
struct Runs {
    /// Their directories.
    dirs: Vec<PathBuf>,
    /// Opened.
    runs: Vec<Run>,
    /// Their labels: directory names, with the parent when names repeat.
    labels: Vec<String>,
}

/// The same surface in every run.
struct Shared<'a> {
    name: &'a str,
    split: &'a str,
    surfaces: &'a [&'a SurfaceResult],
    labels: &'a [String],
    opts: &'a ReportOptions,
}

fn dir_name(dir: &Path) -> String {
    dir.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| dir.display().to_string())
}

impl Runs {
    fn open(dirs: &[PathBuf]) -> Result<Runs> {
        let runs: Vec<Run> = dirs.iter().map(Run::open).collect::<Result<_>>()?;
        let mut labels: Vec<String> = dirs.iter().map(|r| dir_name(r)).collect();
        let mut unique = labels.clone();
        unique.sort();
        unique.dedup();
        if unique.len() < labels.len() {
            // Same directory names: tell runs apart by their parent too.
            labels = dirs
                .iter()
                .map(|r| {
                    let parent = r.parent().map(dir_name).unwrap_or_default();
                    format!("{parent}/{}", dir_name(r))
                })
                .collect();
        }
        Ok(Runs {
            dirs: dirs.to_vec(),
            runs,
            labels,
        })
    }
}

/// Writes a comparison page of `runs` into `out`; returns `out/index.html`.
pub fn write_comparison(runs: &[PathBuf], out: &Path, opts: &ReportOptions) -> Result<PathBuf> {
    write_comparison_with_pca(runs, out, opts, None)
}

/// [`write_comparison`], with the optimizer paths of the runs drawn on one
/// plane: `joint_pca` is the directory of a joint trajectory PCA of them
/// (`landscape pca --joint RUN_A RUN_B … --out DIR`).
pub fn write_comparison_with_pca(
    runs: &[PathBuf],
    out: &Path,
    opts: &ReportOptions,
    joint_pca: Option<&Path>,
) -> Result<PathBuf> {
    opts.validate()?;
    if runs.len() < 2 {
        return Err(Error::invalid(
            "compare",
            "needs at least two run directories",
        ));
    }
    let mut page = Output::create(out, "Loss landscape comparison")?;
    page.set_scale(opts.scale);
    let runs = Runs::open(runs)?;
    runs_section(&mut page, &runs);
    training_section(&mut page, &runs)?;
    paths_section(&mut page, &runs, joint_pca)?;
    surfaces_section(&mut page, &runs, opts)?;
    page.finish()
}

fn runs_section(out: &mut Output, runs: &Runs) {
    out.section("runs", "Runs");
    let rows: Vec<Vec<String>> = runs
        .runs
        .iter()
        .zip(&runs.labels)
        .zip(&runs.dirs)
        .map(|((r, l), d)| {
            vec![
                l.clone(),
                d.display().to_string(),
                r.len().to_string(),
                r.manifest().total_numel().to_string(),
            ]
        })
        .collect();
    out.table(&["run", "directory", "snapshots", "values"], &rows);
}

/// Training curves, every run on one plot, per metric: per-epoch metrics
/// against epochs with each run's learning-rate drops, per-step metrics
/// against steps in figures of their own.
fn training_section(out: &mut Output, runs: &Runs) -> Result<()> {
    out.section("training", "Training");
    // (metric, per step) → every run's series, and the drops drawn on it.
    type Figure = (Vec<Series>, Vec<(f64, String)>);
    let mut figures: BTreeMap<(bool, String), Figure> = BTreeMap::new();
    for (i, r) in runs.runs.iter().enumerate() {
        let m = Metrics::from_run(r, &r.metrics()?, None);
        let label = &runs.labels[i];
        for (per_step, series, drops) in [
            (false, &m.epoch, &m.drops.epochs),
            (true, &m.step, &m.drops.steps),
        ] {
            for (name, points) in series {
                let fig = figures.entry((per_step, name.clone())).or_default();
                fig.0.push(Series {
                    name: label.clone(),
                    points: points.clone(),
                    color: i,
                    dashed: false,
                });
                fig.1.extend(
                    drops
                        .iter()
                        .map(|&d| (d as f64 + 0.5, format!("lr drop, {label}"))),
                );
            }
        }
    }
    out.figs_start();
    for (k, ((per_step, metric), (series, vlines))) in figures.into_iter().enumerate() {
        let x = if per_step { "step" } else { "epoch" };
        let plot = LinePlot {
            title: format!("{metric} per {x}"),
            x_label: x.into(),
            y_label: metric.clone(),
            series,
            vlines,
            ..Default::default()
        };
        out.plot(
            &plot,
            &format!("metric_{k}"),
            &format!("{metric} of every run against the {x}; red lines mark each run's learning-rate drops"),
        )?;
    }
    out.figs_end();
    Ok(())
}

/// The optimizer paths of every run on one PCA plane (a joint PCA's), with
/// start and end marked.
fn paths_section(out: &mut Output, runs: &Runs, joint_pca: Option<&Path>) -> Result<()> {
    out.section("paths", "Optimizer paths on one PCA plane");
    let Some(dir) = joint_pca else {
        out.missing(
            "Paths of several runs need one plane: fit it to all of them.",
            "landscape pca --joint RUN_A RUN_B --out DIR; landscape compare RUN_A RUN_B --pca DIR",
        );
        return Ok(());
    };
    let pca = PcaSummary::load_dir(dir)?;
    let ids: Vec<&str> = runs
        .runs
        .iter()
        .map(|r| r.manifest().run_id.as_str())
        .collect();
    let ratio = |k: usize| {
        pca.explained_variance_ratio
            .get(k)
            .copied()
            .unwrap_or(f64::NAN)
    };
    let mut series = Vec::new();
    let mut missing = Vec::new();
    for (k, (id, points)) in pca.paths_by_run().into_iter().enumerate() {
        let i = ids.iter().position(|x| *x == id);
        let label = i.map_or_else(|| format!("run {id}"), |i| runs.labels[i].clone());
        let color = i.unwrap_or(runs.labels.len() + k);
        let xy: Vec<(f64, f64)> = points.iter().map(|p| (p.x(), p.y())).collect();
        for (end, at) in [("start", xy.first()), ("end", xy.last())] {
            if let Some(&p) = at {
                series.push(Series {
                    name: format!("{label} {end}"),
                    points: vec![p],
                    color,
                    dashed: end == "start",
                });
            }
        }
        series.insert(
            0,
            Series {
                name: label,
                points: xy,
                color,
                dashed: false,
            },
        );
    }
    for (i, id) in ids.iter().enumerate() {
        if !pca.runs.iter().any(|r| r.run_id == *id) {
            missing.push(runs.labels[i].clone());
        }
    }
    let plot = LinePlot {
        title: "Optimizer paths (joint PCA)".into(),
        x_label: format!("PC1: {:.1} %", 100.0 * ratio(0)),
        y_label: format!("PC2: {:.1} %", 100.0 * ratio(1)),
        series,
        ..Default::default()
    };
    out.figs_start();
    out.plot(
        &plot,
        "paths_joint_pca",
        &format!(
            "Every run's snapshots projected on one plane fitted to all of them ({}), centred at the first run's final model{}",
            dir.display(),
            if missing.is_empty() {
                String::new()
            } else {
                format!("; not in this PCA: {}", missing.join(", "))
            }
        ),
    )?;
    out.figs_end();
    Ok(())
}

/// Surfaces present in every run, on shared scales, with their sharpness.
fn surfaces_section(out: &mut Output, runs: &Runs, opts: &ReportOptions) -> Result<()> {
    out.section("surfaces", "Loss surfaces (shared scales)");
    let per_run: Vec<BTreeMap<String, SurfaceResult>> = runs
        .dirs
        .iter()
        .map(|r| list_surfaces(r).map(|v| v.into_iter().collect()))
        .collect::<Result<_>>()?;
    let common: Vec<&String> = per_run[0]
        .keys()
        .filter(|k| per_run.iter().all(|m| m.contains_key(*k)))
        .collect();
    // Results only some runs have are listed, not dropped silently.
    let mut partial: BTreeMap<&String, Vec<usize>> = BTreeMap::new();
    for (i, m) in per_run.iter().enumerate() {
        for name in m.keys().filter(|k| !common.contains(k)) {
            partial.entry(name).or_default().push(i);
        }
    }
    if !partial.is_empty() {
        let rows: Vec<Vec<String>> = partial
            .iter()
            .map(|(name, have)| {
                let list = |keep: bool| {
                    (0..runs.labels.len())
                        .filter(|i| have.contains(i) == keep)
                        .map(|i| runs.labels[i].clone())
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                vec![(*name).clone(), list(true), list(false)]
            })
            .collect();
        out.text("Surfaces that only some runs have (not compared; compute them for the others to compare):");
        out.table(&["surface", "present in", "missing in"], &rows);
    }
    if common.is_empty() {
        out.missing(
            "No surface name is present in every run.",
            "compute e.g. RUN/surfaces/filter-2d for each run",
        );
    }
    for name in common {
        let surfaces: Vec<&SurfaceResult> = per_run.iter().map(|m| &m[name]).collect();
        for split in surfaces[0].splits() {
            let shared = Shared {
                name,
                split: &split,
                surfaces: &surfaces,
                labels: &runs.labels,
                opts,
            };
            out.figs_start();
            match surfaces[0].spec.grid.y {
                None => slices_figure(out, &shared)?,
                Some(_) => contour_figures(out, &shared)?,
            }
            out.figs_end();
        }
        sharpness_table(out, &surfaces, &runs.labels);
    }
    Ok(())
}

/// A 1-D slice of every run on the same axes.
fn slices_figure(out: &mut Output, s: &Shared) -> Result<()> {
    let (name, sp) = (s.name, s.split);
    let series = s
        .surfaces
        .iter()
        .enumerate()
        .map(|(i, r)| Series {
            name: s.labels[i].clone(),
            points: r.spec.grid.x.values().into_iter().zip(r.loss(sp)).collect(),
            color: i,
            dashed: false,
        })
        .collect();
    let plot = LinePlot {
        title: format!("{name}: {sp} loss"),
        x_label: "α".into(),
        y_label: "loss".into(),
        series,
        log_y: s.opts.log_scale,
        ..Default::default()
    };
    let losses: Vec<f64> = s.surfaces.iter().flat_map(|r| r.loss(sp)).collect();
    let stem = format!("{}_{}_1d", sanitize(name), sanitize(sp));
    let caption = format!(
        "{name}, {sp}: every run on the same axes{}",
        non_finite_note(&losses)
    );
    out.plot(&plot, &stem, &caption)
}

/// One heat map per run, with the colour scale and levels of all runs.
fn contour_figures(out: &mut Output, s: &Shared) -> Result<()> {
    let (name, sp, log) = (s.name, s.split, s.opts.log_scale);
    let all: Vec<f64> = s
        .surfaces
        .iter()
        .flat_map(|r| r.loss(sp))
        .map(|v| plotted(v, log))
        .filter(|v| v.is_finite())
        .collect();
    let levels = ContourPlot::auto_levels(&all, s.opts.levels, log);
    let colours = ColourScale::of(all.into_iter());
    for (i, r) in s.surfaces.iter().enumerate() {
        let g = &r.spec.grid;
        let z = r.loss(sp);
        let caption = format!(
            "{} — {name}, {sp}; shared colour scale and levels{}",
            s.labels[i],
            non_finite_note(&z)
        );
        let plot = ContourPlot {
            title: format!("{}: {name}, {sp}", s.labels[i]),
            x_label: "α".into(),
            y_label: "β".into(),
            xs: g.x.values(),
            ys: g.y.map(|a| a.values()).unwrap_or_default(),
            z,
            levels: levels.clone(),
            colours,
            log,
            z_label: "loss".into(),
            path: Vec::new(),
            filled: true,
            ..Default::default()
        };
        let stem = format!("{}_{}_{}", sanitize(name), sanitize(sp), i);
        out.plot(&plot, &stem, &caption)?;
    }
    Ok(())
}

fn sharpness_table(out: &mut Output, surfaces: &[&SurfaceResult], labels: &[String]) {
    let rows: Vec<Vec<String>> = surfaces
        .iter()
        .zip(labels)
        .flat_map(|(s, label)| {
            s.sharpness.iter().map(move |sh| {
                vec![
                    label.clone(),
                    crate::report::run_report::reference_cell(sh),
                    sh.split.clone(),
                    format!("{:.4}", sh.reference_loss),
                    fmt_opt(sh.curvature_x),
                    fmt_opt(sh.width.or(sh.area)),
                    format!("{:.4}", sh.max_increase),
                ]
            })
        })
        .collect();
    if !rows.is_empty() {
        out.table(
            &[
                "run",
                "reference point",
                "split",
                "L0 (loss there)",
                "d²L/dα²",
                "width / area",
                "max increase",
            ],
            &rows,
        );
    }
}
