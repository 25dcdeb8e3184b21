//! `landscape report RUN_DIR`: everything known about a run on one page.
//!
//! Reads the run directory and the analyses stored beside it by convention:
//! `RUN_DIR/surfaces/NAME/` (1-D and 2-D surfaces, interpolations, PCA-plane
//! surfaces), `RUN_DIR/pca/` and `RUN_DIR/curvature/NAME/`. A section whose
//! data is absent says so and how to compute it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::analysis::directions::DirectionKind;
use crate::analysis::surface::SurfaceResult;
use crate::error::{Error, Result};
use crate::report::figures::{render, ContourPlot, HistogramPlot, LinePlot, Series};
use crate::report::html::Page;
use crate::store::manifest::Role;
use crate::store::metrics::MetricRow;
use crate::store::run::Run;

/// Sub-directory of a run holding its surfaces.
pub const SURFACES_DIR: &str = "surfaces";
/// Sub-directory of a run holding its curvature maps.
pub const CURVATURE_DIR: &str = "curvature";
/// Sub-directory of a run holding its trajectory PCA.
pub const PCA_DIR: &str = "pca";

/// Report settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportOptions {
    /// Plot 2-D losses on a log10 scale.
    pub log_scale: bool,
    /// Number of contour levels.
    pub levels: usize,
    /// Output directory (default `RUN_DIR/report`).
    pub out: Option<PathBuf>,
}

impl Default for ReportOptions {
    fn default() -> Self {
        ReportOptions {
            log_scale: false,
            levels: 12,
            out: None,
        }
    }
}

/// Lists the finished surfaces under `dir/surfaces`, by name.
pub fn list_surfaces(run_dir: &Path) -> Result<Vec<(String, SurfaceResult)>> {
    list_dirs_with_results(&run_dir.join(SURFACES_DIR))
}

/// The finished surface-format results in the sub-directories of `dir`.
pub fn list_dirs_with_results(dir: &Path) -> Result<Vec<(String, SurfaceResult)>> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(out);
    };
    let mut names: Vec<(String, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.path()
                .join(crate::analysis::surface::RESULT_FILE)
                .exists()
        })
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .collect();
    names.sort();
    for (name, path) in names {
        out.push((name, SurfaceResult::load(&path)?));
    }
    Ok(out)
}

/// Epochs after which the `lr` metric drops (from the recorded metrics).
pub fn lr_drops(metrics: &[MetricRow]) -> Vec<u64> {
    let mut lr: Vec<(u64, f64)> = metrics
        .iter()
        .filter(|m| m.name == "lr")
        .map(|m| (m.epoch, m.value))
        .collect();
    lr.sort_by_key(|p| p.0);
    lr.windows(2)
        .filter(|w| w[1].1 < w[0].1)
        .map(|w| w[0].0)
        .collect()
}

/// Writes the report of `run_dir`; returns the path of `index.html`.
pub fn write_report(run_dir: &Path, opts: &ReportOptions) -> Result<PathBuf> {
    let run = Run::open(run_dir)?;
    let out = opts.out.clone().unwrap_or_else(|| run_dir.join("report"));
    std::fs::create_dir_all(&out).map_err(|e| Error::io("creating", &out, e))?;
    let m = run.manifest();
    let name = run_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut page = Page::new(&format!("Loss landscape report: {name}"));

    page.section("run", "Run");
    page.table(
        &["field", "value"],
        &[
            vec!["run id".into(), m.run_id.clone()],
            vec!["created".into(), m.created_utc.clone()],
            vec!["tch-landscape".into(), m.crate_version.clone()],
            vec!["snapshots".into(), run.len().to_string()],
            vec![
                "tensors".into(),
                format!(
                    "{} ({} values per snapshot)",
                    m.tensors.len(),
                    m.total_numel()
                ),
            ],
            vec!["finished".into(), m.finished.to_string()],
        ],
    );
    let user: Vec<Vec<String>> = m
        .user
        .iter()
        .map(|(k, v)| vec![k.clone(), v.clone()])
        .collect();
    if !user.is_empty() {
        page.table(&["metadata", "value"], &user);
    }
    let tensor_rows: Vec<Vec<String>> = m
        .tensors
        .iter()
        .map(|t| {
            vec![
                t.name.clone(),
                format!("{:?}", t.shape),
                t.role.as_str().into(),
                t.dtype.clone(),
            ]
        })
        .collect();
    page.table(&["tensor", "shape", "role", "dtype"], &tensor_rows);

    // Training curves.
    page.section("training", "Training");
    let metrics = run.metrics()?;
    let drops = lr_drops(&metrics);
    let vlines: Vec<(f64, String)> = drops
        .iter()
        .map(|&e| (e as f64 + 0.5, "lr drop".to_string()))
        .collect();
    let mut by_name: BTreeMap<&str, Vec<(f64, f64)>> = BTreeMap::new();
    for r in &metrics {
        by_name
            .entry(r.name.as_str())
            .or_default()
            .push((r.epoch as f64, r.value));
    }
    page.figs_start();
    if by_name.is_empty() {
        page.figs_end();
        page.missing(
            "No metrics were recorded.",
            "rec.on_epoch_end(epoch, &[(\"train_loss\", l), (\"lr\", lr)])",
        );
    } else {
        // Colours by name, so a metric keeps its colour across figures.
        let colour: BTreeMap<&str, usize> =
            by_name.keys().enumerate().map(|(i, n)| (*n, i)).collect();
        let pick = |f: &dyn Fn(&str) -> bool| -> Vec<Series> {
            by_name
                .iter()
                .filter(|(n, _)| f(n))
                .map(|(n, p)| Series {
                    name: n.to_string(),
                    points: p.clone(),
                    color: colour[n],
                    dashed: n.contains("test"),
                })
                .collect()
        };
        let losses = pick(&|n| n.contains("loss"));
        let accs = pick(&|n| n.contains("acc"));
        let others = pick(&|n| !n.contains("loss") && !n.contains("acc"));
        let curves = LinePlot {
            title: "Training curves".into(),
            x_label: "epoch".into(),
            y_label: "loss".into(),
            series: if losses.is_empty() {
                others.clone()
            } else {
                losses
            },
            y2: (!accs.is_empty()).then(|| ("accuracy (%)".to_string(), accs)),
            vlines: vlines.clone(),
            log_y: false,
        };
        let svg = render(&curves, &out, "training_curves")?;
        page.figure(
            &svg,
            "training_curves",
            "Recorded metrics per epoch; red lines mark learning-rate drops",
        );
        if !others.is_empty() {
            let plot = LinePlot {
                title: "Other metrics".into(),
                x_label: "epoch".into(),
                y_label: "value".into(),
                series: others,
                vlines,
                ..Default::default()
            };
            let svg = render(&plot, &out, "other_metrics")?;
            page.figure(
                &svg,
                "other_metrics",
                "Other recorded metrics (e.g. learning rate)",
            );
        }
        page.figs_end();
    }

    // Weights: norm per snapshot (Fig. 2b) and histograms first vs last (Fig. 2c).
    page.section("weights", "Weights");
    if run.is_empty() {
        page.missing(
            "The run has no snapshot.",
            "Recorder::builder(dir).build(&vs)",
        );
    } else {
        let sel = crate::store::run::Selection::Weights;
        let has_weights = m.tensors.iter().any(|t| t.role == Role::Weight);
        let sel = if has_weights {
            sel
        } else {
            crate::store::run::Selection::Trainable
        };
        let mut norms = Vec::with_capacity(run.len());
        for (i, s) in run.snapshots().iter().enumerate() {
            let v = run.flat_f32(i, &sel)?;
            let n = v
                .iter()
                .map(|&x| (x as f64) * (x as f64))
                .sum::<f64>()
                .sqrt();
            norms.push((s.meta().epoch as f64, n));
        }
        page.figs_start();
        let plot = LinePlot {
            title: "Weight norm".into(),
            x_label: "epoch".into(),
            y_label: "‖θ‖₂ (weights)".into(),
            series: vec![Series {
                name: "L2 norm".into(),
                points: norms,
                color: 0,
                dashed: false,
            }],
            vlines: drops
                .iter()
                .map(|&e| (e as f64, "lr drop".to_string()))
                .collect(),
            ..Default::default()
        };
        let svg = render(&plot, &out, "weight_norm")?;
        page.figure(
            &svg,
            "weight_norm",
            "L2 norm of the weights (tensors with ≥ 2 dims) per snapshot (paper Fig. 2b)",
        );
        let first = run.flat_f32(0, &sel)?;
        let last = run.flat_f32(run.len() - 1, &sel)?;
        let hist = HistogramPlot {
            title: "Weight histogram".into(),
            x_label: "weight value".into(),
            sets: vec![
                (
                    format!("snapshot 0 (epoch {})", run.snapshots()[0].meta().epoch),
                    first.iter().map(|&x| x as f64).collect(),
                ),
                (
                    format!(
                        "snapshot {} (epoch {})",
                        run.len() - 1,
                        run.snapshots()[run.len() - 1].meta().epoch
                    ),
                    last.iter().map(|&x| x as f64).collect(),
                ),
            ],
            bins: 80,
        };
        let svg = render(&hist, &out, "weight_histogram")?;
        page.figure(
            &svg,
            "weight_histogram",
            "Weights of the first and last snapshot (paper Fig. 2c)",
        );
        page.figs_end();
    }

    // Surfaces.
    let surfaces = list_surfaces(run_dir)?;
    page.section("surfaces", "Loss surfaces");
    if surfaces.is_empty() {
        page.missing(
            "No surface has been computed for this run.",
            "Surface::builder(&dirs).grid(..).build()?.evaluate(&vs, &mut eval, RUN_DIR/surfaces/NAME) — the demo computes several",
        );
    }
    let mut sharp_rows = Vec::new();
    for (sname, s) in &surfaces {
        page.figs_start();
        for svg_and_caption in surface_figures(sname, s, &out, opts)? {
            page.figure(&svg_and_caption.0, &svg_and_caption.1, &svg_and_caption.2);
        }
        if let (Some(y), Some(split)) = (s.spec.grid.y, s.splits().first()) {
            let z: Vec<f64> = s
                .loss(split)
                .into_iter()
                .map(|v| if opts.log_scale { v.log10() } else { v })
                .collect();
            let label = if opts.log_scale { "log10 loss" } else { "loss" };
            page.surface_3d(
                &format!("{sname}: {split} loss (3-D)"),
                &s.spec.grid.x.values(),
                &y.values(),
                &z,
                label,
            );
        }
        page.figs_end();
        for sh in &s.sharpness {
            sharp_rows.push(vec![
                sname.clone(),
                sh.split.clone(),
                format!("{:.4}", sh.centre_loss),
                sh.curvature_x.map_or("–".into(), |c| format!("{c:.4}")),
                sh.curvature_y.map_or("–".into(), |c| format!("{c:.4}")),
                sh.width.map_or("–".into(), |c| format!("{c:.4}")),
                sh.area.map_or("–".into(), |c| format!("{c:.4}")),
                format!("{:.4}", sh.max_increase),
                if sh.bounded {
                    "yes".into()
                } else {
                    "no (grid edge)".into()
                },
            ]);
        }
    }
    // Trajectory PCA (Fig. 9): explained variance and the path.
    page.section("pca", "Optimizer path (trajectory PCA)");
    let pca = read_pca(run_dir)?;
    match &pca {
        None => page.missing("No trajectory PCA for this run.", "landscape pca RUN_DIR"),
        Some(p) => {
            page.text(&format!(
                "PC1 and PC2 explain {:.1} % of the variation of the path ({} snapshots, {} parameters).",
                100.0 * p.ratio.iter().take(2).sum::<f64>(),
                p.path.len(),
                p.numel
            ));
            page.figs_start();
            let bars = crate::report::figures::BarPlot {
                title: "Explained variance".into(),
                x_label: "principal component".into(),
                y_label: "explained variance ratio".into(),
                bars: p
                    .spectrum_ratio
                    .iter()
                    .take(10)
                    .enumerate()
                    .map(|(i, r)| (format!("PC{}", i + 1), *r))
                    .collect(),
                line: Some(p.cumulative.iter().take(10).copied().collect()),
            };
            let svg = render(&bars, &out, "pca_variance")?;
            page.figure(
                &svg,
                "pca_variance",
                "Explained variance ratio per component (bars) and cumulative (line)",
            );
            let plane = surfaces.iter().find(|(_, s)| {
                s.spec.directions.kind == DirectionKind::Pca && s.spec.grid.y.is_some()
            });
            let path: Vec<(f64, f64, bool)> = p
                .path
                .iter()
                .map(|q| (q.1, q.2, drops.contains(&q.0)))
                .collect();
            let (xl, yl) = (
                format!("PC1: {:.1} %", 100.0 * p.ratio[0]),
                format!(
                    "PC2: {:.1} %",
                    100.0 * p.ratio.get(1).copied().unwrap_or(0.0)
                ),
            );
            let fig = match plane {
                Some((pname, ps)) => {
                    let split = ps.splits().first().cloned().unwrap_or_default();
                    let z = ps.loss(&split);
                    let mut c = ContourPlot {
                        title: format!("Optimizer path over {pname} ({split} loss)"),
                        x_label: xl,
                        y_label: yl,
                        xs: ps.spec.grid.x.values(),
                        ys: ps.spec.grid.y.map(|a| a.values()).unwrap_or_default(),
                        z: z.clone(),
                        log: opts.log_scale,
                        z_label: "loss".into(),
                        path,
                        filled: false,
                        ..Default::default()
                    };
                    let scaled: Vec<f64> = z.iter().map(|&v| c.scale(v)).collect();
                    c.levels = ContourPlot::auto_levels(&scaled, opts.levels, opts.log_scale);
                    c.z_range = scaled
                        .iter()
                        .filter(|v| v.is_finite())
                        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
                            (a.min(v), b.max(v))
                        });
                    c
                }
                None => {
                    let (xs, ys): (Vec<f64>, Vec<f64>) = path.iter().map(|q| (q.0, q.1)).unzip();
                    ContourPlot {
                        title: "Optimizer path".into(),
                        x_label: xl,
                        y_label: yl,
                        xs: span(&xs),
                        ys: span(&ys),
                        z: vec![f64::NAN; 4],
                        z_range: (0.0, 1.0),
                        path,
                        ..Default::default()
                    }
                }
            };
            let svg = render(&fig, &out, "pca_path")?;
            page.figure(&svg, "pca_path", "Projected optimizer path, final model at the origin; red: snapshots where the learning rate dropped (paper Fig. 9)");
            page.figs_end();
            if plane.is_none() {
                page.missing("No loss surface on the PCA plane yet.", "PcaResult::directions(&run, false) → Surface … RUN_DIR/surfaces/pca-plane (the demo does this)");
            }
            if !p.tensors.is_empty() {
                let rows: Vec<Vec<String>> = p
                    .tensors
                    .iter()
                    .map(|(n, r)| {
                        vec![
                            n.clone(),
                            format!("{:.1} %", 100.0 * r[0]),
                            format!("{:.1} %", 100.0 * r[1]),
                            format!("{:.1} %", 100.0 * (r[0] + r[1])),
                        ]
                    })
                    .collect();
                page.text("Per tensor: explained variance ratio of the first two principal components of that tensor's own trajectory (how low-dimensional each layer moves).");
                page.table(&["tensor", "PC1", "PC2", "PC1+PC2"], &rows);
            }
        }
    }

    // Curvature maps (Fig. 7).
    page.section("curvature", "Curvature (Hessian eigenvalues)");
    let maps = list_dirs_with_results(&run_dir.join(CURVATURE_DIR))?;
    if maps.is_empty() {
        page.missing(
            "No curvature map for this run.",
            "CurvatureMap over a grid → RUN_DIR/curvature/NAME (the demo computes a small one)",
        );
    }
    for (cname, m) in &maps {
        page.figs_start();
        let g = &m.spec.grid;
        if let Some(y) = g.y {
            let z = m.loss("abs_ratio");
            let plot = ContourPlot {
                title: format!("{cname}: |λmin / λmax|"),
                x_label: "α".into(),
                y_label: "β".into(),
                xs: g.x.values(),
                ys: y.values(),
                z,
                z_range: (0.0, 1.0),
                z_label: "|λmin/λmax|".into(),
                filled: true,
                levels: vec![0.05, 0.1, 0.25, 0.5],
                ..Default::default()
            };
            let stem = format!("{}_ratio", sanitize(cname));
            let svg = render(&plot, &out, &stem)?;
            page.figure(
                &svg,
                &stem,
                "Blue (near 0): locally convex; yellow: strong negative curvature (paper Fig. 7)",
            );
        }
        page.figs_end();
        let (lmin, lmax) = (m.loss("lambda_min"), m.loss("lambda_max"));
        let centre = m.points.iter().min_by(|a, b| {
            (a.point.x.abs() + a.point.y.abs()).total_cmp(&(b.point.x.abs() + b.point.y.abs()))
        });
        if let Some(c) = centre {
            let i = c.point.index;
            page.table(
                &["at", "λmin", "λmax", "|λmin/λmax|"],
                &[vec![
                    format!("centre ({}, {})", c.point.x, c.point.y),
                    format!("{:.5}", lmin[i]),
                    format!("{:.5}", lmax[i]),
                    format!("{:.4}", (lmin[i] / lmax[i]).abs()),
                ]],
            );
        }
    }

    page.section("sharpness", "Sharpness");
    if sharp_rows.is_empty() {
        page.missing(
            "No sharpness figures (they come with 1-D and 2-D surfaces).",
            "landscape demo",
        );
    } else {
        page.text("Curvature at the centre (central differences), width (1-D) or area (2-D) of the connected region around the centre where L < L(θ*) + ε, and the largest loss increase on the grid.");
        page.table(
            &[
                "surface",
                "split",
                "L(θ*)",
                "d²L/dα²",
                "d²L/dβ²",
                "width",
                "area",
                "max increase",
                "bounded",
            ],
            &sharp_rows,
        );
    }

    let html = page.finish();
    let index = out.join("index.html");
    std::fs::write(&index, html).map_err(|e| Error::io("writing", &index, e))?;
    Ok(index)
}

/// Figures of one surface: (svg, file stem, caption).
pub fn surface_figures(
    name: &str,
    s: &SurfaceResult,
    out: &Path,
    opts: &ReportOptions,
) -> Result<Vec<(String, String, String)>> {
    let mut figs = Vec::new();
    let stem = sanitize(name);
    let grid = &s.spec.grid;
    let d = &s.spec.directions;
    let kind = match d.kind {
        DirectionKind::Interpolation => "linear interpolation".to_string(),
        DirectionKind::Pca => "PCA directions".to_string(),
        _ => match (d.normalization, d.seed) {
            (Some(n), Some(seed)) => {
                format!("{n:?}-normalized random directions, seed {seed}").to_lowercase()
            }
            _ => format!("{:?} directions", d.kind).to_lowercase(),
        },
    };
    let splits = s.splits();
    match grid.y {
        None => {
            let xs = grid.x.values();
            let series: Vec<Series> = splits
                .iter()
                .enumerate()
                .map(|(i, sp)| Series {
                    name: format!("{sp} loss"),
                    points: xs.iter().copied().zip(s.loss(sp)).collect(),
                    color: i,
                    dashed: false,
                })
                .collect();
            let acc: Vec<Series> = splits
                .iter()
                .enumerate()
                .filter(|(_, sp)| s.accuracy(sp).iter().any(|v| v.is_finite()))
                .map(|(i, sp)| Series {
                    name: format!("{sp} accuracy"),
                    points: xs.iter().copied().zip(s.accuracy(sp)).collect(),
                    color: i,
                    dashed: true,
                })
                .collect();
            let plot = LinePlot {
                title: format!("{name}: 1-D slice"),
                x_label: if d.kind == DirectionKind::Interpolation {
                    "α  (θ = (1−α)θ₀ + αθ₁)".into()
                } else {
                    "α".into()
                },
                y_label: "loss".into(),
                series,
                y2: (!acc.is_empty()).then(|| ("accuracy (%)".to_string(), acc)),
                log_y: opts.log_scale,
                vlines: Vec::new(),
            };
            let svg = render(&plot, out, &format!("{stem}_1d"))?;
            figs.push((
                svg,
                format!("{stem}_1d"),
                format!("{name}: {kind}; loss (solid) and accuracy (dashed) (paper Figs. 2a, 3)"),
            ));
        }
        Some(y) => {
            for sp in &splits {
                let z = s.loss(sp);
                let mut plot = ContourPlot {
                    title: format!("{name}: {sp} loss"),
                    x_label: "α".into(),
                    y_label: "β".into(),
                    xs: grid.x.values(),
                    ys: y.values(),
                    z: z.clone(),
                    log: opts.log_scale,
                    z_label: "loss".into(),
                    ..Default::default()
                };
                let scaled: Vec<f64> = z.iter().map(|&v| plot.scale(v)).collect();
                plot.levels = ContourPlot::auto_levels(&scaled, opts.levels, opts.log_scale);
                plot.z_range = scaled
                    .iter()
                    .filter(|v| v.is_finite())
                    .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
                        (a.min(v), b.max(v))
                    });
                let lines = ContourPlot {
                    filled: false,
                    ..plot.clone()
                };
                let svg = render(&lines, out, &format!("{stem}_{}_contour", sanitize(sp)))?;
                figs.push((
                    svg,
                    format!("{stem}_{}_contour", sanitize(sp)),
                    format!("{name}: {sp} loss contours, {kind} (paper Figs. 1, 5)"),
                ));
                let filled = ContourPlot {
                    filled: true,
                    ..plot
                };
                let svg = render(&filled, out, &format!("{stem}_{}_heat", sanitize(sp)))?;
                figs.push((
                    svg,
                    format!("{stem}_{}_heat", sanitize(sp)),
                    format!("{name}: {sp} loss heat map with contours"),
                ));
            }
        }
    }
    Ok(figs)
}

/// What the report uses of a trajectory PCA (read from `pca/pca.json`).
#[derive(Debug, Clone, PartialEq)]
pub struct PcaView {
    /// Explained variance ratio of the returned components.
    pub ratio: Vec<f64>,
    /// Ratio of every non-zero component.
    pub spectrum_ratio: Vec<f64>,
    /// Cumulative ratio.
    pub cumulative: Vec<f64>,
    /// (epoch, x, y) per snapshot.
    pub path: Vec<(u64, f64, f64)>,
    /// Selected parameters.
    pub numel: u64,
    /// (tensor, own PC1/PC2 ratios).
    pub tensors: Vec<(String, [f64; 2])>,
}

/// Reads `RUN_DIR/pca/pca.json` when present.
pub fn read_pca(run_dir: &Path) -> Result<Option<PcaView>> {
    let path = run_dir
        .join(PCA_DIR)
        .join(crate::analysis::pca::SUMMARY_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("reading", &path, e)),
    };
    let v: serde_json::Value = serde_json::from_slice(&bytes).map_err(|source| Error::Json {
        path: path.clone(),
        source,
    })?;
    let bad = |what: &str| Error::corrupt(&path, format!("missing or malformed '{what}'"));
    let floats = |key: &str| -> Result<Vec<f64>> {
        v[key]
            .as_array()
            .ok_or_else(|| bad(key))?
            .iter()
            .map(|x| x.as_f64().ok_or_else(|| bad(key)))
            .collect()
    };
    let ratio = floats("explained_variance_ratio")?;
    let cumulative = floats("cumulative_ratio")?;
    let spectrum_ratio = cumulative
        .iter()
        .scan(0.0, |prev, &c| {
            let r = c - *prev;
            *prev = c;
            Some(r)
        })
        .collect();
    let mut path_pts = Vec::new();
    for p in v["path"].as_array().ok_or_else(|| bad("path"))? {
        let coords = p["coords"].as_array().ok_or_else(|| bad("path.coords"))?;
        let c = |i: usize| coords.get(i).and_then(|x| x.as_f64()).unwrap_or(0.0);
        path_pts.push((
            p["epoch"].as_u64().ok_or_else(|| bad("path.epoch"))?,
            c(0),
            c(1),
        ));
    }
    let tensors = v["tensors"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|t| {
                    let r = t["own_ratio"].as_array()?;
                    Some((
                        t["name"].as_str()?.to_string(),
                        [r.first()?.as_f64()?, r.get(1)?.as_f64()?],
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(Some(PcaView {
        ratio,
        spectrum_ratio,
        cumulative,
        path: path_pts,
        numel: v["numel"].as_u64().unwrap_or(0),
        tensors,
    }))
}

fn span(v: &[f64]) -> Vec<f64> {
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let m = ((hi - lo) * 0.1).max(1e-6);
    vec![lo - m, hi + m]
}

/// A file-name-safe version of a user-supplied name.
pub fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}
