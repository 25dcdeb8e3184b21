//! `landscape compare RUN_A RUN_B …`: the same figures of several runs on one
//! page, with identical colour scale, contour levels and axes, which is what
//! makes filter-normalized surfaces comparable (§4 of the paper).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::analysis::surface::SurfaceResult;
use crate::error::{Error, Result};
use crate::report::figures::{render, ContourPlot, LinePlot, Series};
use crate::report::html::Page;
use crate::report::run_report::{list_surfaces, sanitize, ReportOptions};
use crate::store::run::Run;

fn run_label(dir: &Path) -> String {
    dir.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| dir.display().to_string())
}

/// Writes a comparison page of `runs` into `out`; returns `out/index.html`.
pub fn write_comparison(runs: &[PathBuf], out: &Path, opts: &ReportOptions) -> Result<PathBuf> {
    if runs.len() < 2 {
        return Err(Error::invalid(
            "compare",
            "needs at least two run directories",
        ));
    }
    std::fs::create_dir_all(out).map_err(|e| Error::io("creating", out, e))?;
    let mut page = Page::new("Loss landscape comparison");
    let opened: Vec<Run> = runs.iter().map(Run::open).collect::<Result<_>>()?;
    let mut labels: Vec<String> = runs.iter().map(|r| run_label(r)).collect();
    let mut sorted = labels.clone();
    sorted.sort();
    sorted.dedup();
    if sorted.len() < labels.len() {
        // Same directory names: tell runs apart by their parent too.
        labels = runs
            .iter()
            .map(|r| {
                let parent = r.parent().map(run_label).unwrap_or_default();
                format!("{parent}/{}", run_label(r))
            })
            .collect();
    }
    page.section("runs", "Runs");
    let rows: Vec<Vec<String>> = opened
        .iter()
        .zip(&labels)
        .zip(runs)
        .map(|((r, l), d)| {
            vec![
                l.clone(),
                d.display().to_string(),
                r.len().to_string(),
                r.manifest().total_numel().to_string(),
            ]
        })
        .collect();
    page.table(&["run", "directory", "snapshots", "values"], &rows);

    // Training curves, every run on one plot, per metric.
    page.section("training", "Training");
    let mut names: BTreeMap<String, Vec<Series>> = BTreeMap::new();
    for (i, r) in opened.iter().enumerate() {
        let mut per: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
        for m in r.metrics()? {
            per.entry(m.name)
                .or_default()
                .push((m.epoch as f64, m.value));
        }
        for (n, pts) in per {
            names.entry(n).or_default().push(Series {
                name: labels[i].clone(),
                points: pts,
                color: i,
                dashed: false,
            });
        }
    }
    page.figs_start();
    for (k, (metric, series)) in names.into_iter().enumerate() {
        let plot = LinePlot {
            title: metric.clone(),
            x_label: "epoch".into(),
            y_label: metric.clone(),
            series,
            ..Default::default()
        };
        let stem = format!("metric_{k}");
        let svg = render(&plot, out, &stem)?;
        page.figure(&svg, &stem, &format!("{metric} of every run"));
    }
    page.figs_end();

    // Surfaces present in every run, on shared scales.
    page.section("surfaces", "Loss surfaces (shared scales)");
    let per_run: Vec<BTreeMap<String, SurfaceResult>> = runs
        .iter()
        .map(|r| list_surfaces(r).map(|v| v.into_iter().collect()))
        .collect::<Result<_>>()?;
    let common: Vec<String> = per_run[0]
        .keys()
        .filter(|k| per_run.iter().all(|m| m.contains_key(*k)))
        .cloned()
        .collect();
    if common.is_empty() {
        page.missing(
            "No surface name is present in every run.",
            "compute e.g. RUN/surfaces/filter-2d for each run",
        );
    }
    for name in &common {
        let surfs: Vec<&SurfaceResult> = per_run.iter().map(|m| &m[name]).collect();
        let splits = surfs[0].splits();
        for sp in &splits {
            page.figs_start();
            match surfs[0].spec.grid.y {
                None => {
                    let series = surfs
                        .iter()
                        .enumerate()
                        .map(|(i, s)| Series {
                            name: labels[i].clone(),
                            points: s.spec.grid.x.values().into_iter().zip(s.loss(sp)).collect(),
                            color: i,
                            dashed: false,
                        })
                        .collect();
                    let plot = LinePlot {
                        title: format!("{name}: {sp} loss"),
                        x_label: "α".into(),
                        y_label: "loss".into(),
                        series,
                        log_y: opts.log_scale,
                        ..Default::default()
                    };
                    let stem = format!("{}_{}_1d", sanitize(name), sanitize(sp));
                    let svg = render(&plot, out, &stem)?;
                    page.figure(
                        &svg,
                        &stem,
                        &format!("{name}, {sp}: every run on the same axes"),
                    );
                }
                Some(_) => {
                    let base = ContourPlot {
                        log: opts.log_scale,
                        ..Default::default()
                    };
                    let all: Vec<f64> = surfs
                        .iter()
                        .flat_map(|s| s.loss(sp))
                        .map(|v| base.scale(v))
                        .filter(|v| v.is_finite())
                        .collect();
                    let z_range = all
                        .iter()
                        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
                            (a.min(v), b.max(v))
                        });
                    let levels = ContourPlot::auto_levels(&all, opts.levels, opts.log_scale);
                    for (i, s) in surfs.iter().enumerate() {
                        let g = &s.spec.grid;
                        let plot = ContourPlot {
                            title: format!("{}: {name}, {sp}", labels[i]),
                            x_label: "α".into(),
                            y_label: "β".into(),
                            xs: g.x.values(),
                            ys: g.y.map(|a| a.values()).unwrap_or_default(),
                            z: s.loss(sp),
                            levels: levels.clone(),
                            z_range,
                            log: opts.log_scale,
                            z_label: "loss".into(),
                            path: Vec::new(),
                            filled: true,
                        };
                        let stem = format!("{}_{}_{}", sanitize(name), sanitize(sp), i);
                        let svg = render(&plot, out, &stem)?;
                        page.figure(
                            &svg,
                            &stem,
                            &format!(
                                "{} — {name}, {sp}; shared colour scale and levels",
                                labels[i]
                            ),
                        );
                    }
                }
            }
            page.figs_end();
        }
        let rows: Vec<Vec<String>> = surfs
            .iter()
            .enumerate()
            .flat_map(|(i, s)| {
                let label = labels[i].clone();
                s.sharpness.iter().map(move |sh| {
                    vec![
                        label.clone(),
                        sh.split.clone(),
                        format!("{:.4}", sh.centre_loss),
                        sh.curvature_x.map_or("–".into(), |c| format!("{c:.4}")),
                        sh.width
                            .or(sh.area)
                            .map_or("–".into(), |c| format!("{c:.4}")),
                        format!("{:.4}", sh.max_increase),
                    ]
                })
            })
            .collect();
        if !rows.is_empty() {
            page.table(
                &[
                    "run",
                    "split",
                    "L(θ*)",
                    "d²L/dα²",
                    "width / area",
                    "max increase",
                ],
                &rows,
            );
        }
    }
    let index = out.join("index.html");
    std::fs::write(&index, page.finish()).map_err(|e| Error::io("writing", &index, e))?;
    Ok(index)
}
