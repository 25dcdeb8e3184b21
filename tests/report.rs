//! The report end to end: a recorded run with surfaces → `landscape report`
//! → HTML opened in headless Chromium (Debian's `chromium`, installed by
//! `.ci/run`), plus the CLI's other subcommands and its error handling.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::chromium;

use tch::nn::{self, Module, OptimizerConfig, VarStore};
use tch::{Device, Kind, Tensor};
use tch_landscape::analysis::directions::Directions;
use tch_landscape::analysis::evaluator::{ClassifierEvaluator, Evaluator, SplitResult};
use tch_landscape::analysis::params::ParamSet;
use tch_landscape::analysis::surface::Surface;
use tch_landscape::models::Mlp;
use tch_landscape::Recorder;

const EVIL: &str = "<script>alert(1)</script>";

/// A small run with a hostile tensor name and metric name, two surfaces.
fn make_run(dir: &Path) -> PathBuf {
    tch::manual_seed(5);
    let run_dir = dir.join("run");
    let vs = VarStore::new(Device::Cpu);
    let model = Mlp::new(&vs.root(), &[64, 16, 10]);
    let _evil = vs.root().var(EVIL, &[3], nn::Init::Const(0.5));
    let data = tch_landscape::data::digits::Digits::load().unwrap();
    let (x, y) = (data.x.narrow(0, 0, 256), data.y.narrow(0, 0, 256));
    let mut opt = nn::Sgd {
        momentum: 0.9,
        ..Default::default()
    }
    .build(&vs, 0.1)
    .unwrap();
    let mut rec = Recorder::builder(&run_dir).build(&vs).unwrap();
    for epoch in 1..=4u64 {
        let loss = model.forward(&x).cross_entropy_for_logits(&y);
        opt.backward_step(&loss);
        let l = loss.double_value(&[]);
        let lr = if epoch <= 2 { 0.1 } else { 0.01 };
        rec.on_epoch_end(epoch, &[("train_loss", l), ("lr", lr), (EVIL, 1.0)])
            .unwrap();
    }
    rec.finish().unwrap();
    let centre = ParamSet::from_varstore(&vs).unwrap();
    let mut eval = ClassifierEvaluator::new(&model)
        .split("train", &x, &y)
        .unwrap();
    let plane = Directions::random(&centre).seed(1).build().unwrap();
    Surface::builder(&plane)
        .grid(-1.0..=1.0, 9, -1.0..=1.0, 7)
        .build()
        .unwrap()
        .evaluate(&vs, &mut eval, run_dir.join("surfaces/plane"))
        .unwrap();
    let line = Directions::random(&centre).dims(1).seed(2).build().unwrap();
    Surface::builder(&line)
        .line(-1.0..=1.0, 15)
        .build()
        .unwrap()
        .evaluate(&vs, &mut eval, run_dir.join("surfaces/line"))
        .unwrap();
    let _ = Tensor::zeros([1], (Kind::Float, Device::Cpu));
    run_dir
}

fn landscape(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_landscape"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn report_is_complete_and_escapes_user_strings() {
    let tmp = tempfile::tempdir().unwrap();
    let run = make_run(tmp.path());
    let out = landscape(&["report", run.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let index = run.join("report/index.html");
    let html = std::fs::read_to_string(&index).unwrap();
    assert!(!html.contains(EVIL), "unescaped user string in the report");
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    for id in ["run", "training", "weights", "surfaces", "sharpness"] {
        assert!(
            html.contains(&format!("id=\"{id}\"")),
            "section {id} missing"
        );
    }
    for stem in [
        "training_curves",
        "weight_norm",
        "weight_histogram",
        "plane_train_contour",
        "plane_train_heat",
        "line_1d",
    ] {
        for ext in ["png", "svg"] {
            let p = run.join(format!("report/{stem}.{ext}"));
            let bytes = std::fs::read(&p).unwrap_or_else(|_| panic!("{} missing", p.display()));
            match ext {
                "png" => assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n"),
                _ => assert!(String::from_utf8_lossy(&bytes).contains("<svg")),
            }
        }
        assert!(
            html.contains(&format!("data-figure=\"{stem}\"")),
            "figure {stem} not in the page"
        );
    }
}

#[test]
fn report_renders_in_a_real_browser() {
    let tmp = tempfile::tempdir().unwrap();
    let run = make_run(tmp.path());
    let index = tch_landscape::report::run_report::write_report(&run, &Default::default()).unwrap();
    let artifacts = Path::new(env!("CARGO_TARGET_TMPDIR")).join("report-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let shot = artifacts.join("report.png");
    let (dom, errors) = chromium(&index, Some(&shot));
    assert!(errors.is_empty(), "console errors: {errors:?}");
    assert!(
        dom.contains("data-selfcheck=\"ok figures="),
        "self-check failed: {}",
        dom.lines().nth(1).unwrap_or("")
    );
    let n: usize = dom
        .split("data-selfcheck=\"ok figures=")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(n >= 6, "only {n} figures rendered");
    assert!(
        dom.contains("surfaces3d=1 animations=0 frames=0\""),
        "the 3-D surface is missing"
    );
    assert!(
        std::fs::metadata(&shot).unwrap().len() > 10_000,
        "screenshot too small"
    );

    // The checker itself catches broken pages: a thrown error and a missing image.
    let bad = tmp.path().join("bad.html");
    std::fs::write(&bad, "<html><body><img src=\"missing.png\"><script>throw new Error('boom')</script></body></html>").unwrap();
    let (_, errors) = chromium(&bad, None);
    assert!(!errors.is_empty(), "a thrown error was not reported");
}

/// A diverged model: the loss is NaN or +∞ at some points, or everywhere.
struct Diverging {
    calls: usize,
    everywhere: bool,
}

impl Evaluator for Diverging {
    fn evaluate(&mut self) -> tch_landscape::Result<Vec<SplitResult>> {
        self.calls += 1;
        let loss = match self.calls % 5 {
            _ if self.everywhere => f64::NAN,
            0 => f64::NAN,
            3 => f64::INFINITY,
            k => k as f64,
        };
        Ok(vec![SplitResult {
            split: "train".into(),
            loss,
            accuracy: None,
        }])
    }
}

#[test]
fn non_finite_losses_are_left_out_and_said_so() {
    let tmp = tempfile::tempdir().unwrap();
    let run = make_run(tmp.path());
    let vs = VarStore::new(Device::Cpu);
    let _model = Mlp::new(&vs.root(), &[64, 16, 10]);
    let centre = ParamSet::from_varstore(&vs).unwrap();
    let plane = Directions::random(&centre).seed(3).build().unwrap();
    for (name, everywhere) in [("some-nan", false), ("all-nan", true)] {
        let mut eval = Diverging {
            calls: 0,
            everywhere,
        };
        Surface::builder(&plane)
            .grid(-1.0..=1.0, 6, -1.0..=1.0, 5)
            .build()
            .unwrap()
            .evaluate(&vs, &mut eval, run.join("surfaces").join(name))
            .unwrap();
    }
    for log_scale in [false, true] {
        let opts = tch_landscape::report::ReportOptions {
            log_scale,
            ..Default::default()
        };
        let index = tch_landscape::report::write_report(&run, &opts).unwrap();
        let html = std::fs::read_to_string(&index).unwrap();
        let note = |caption: &str| -> String {
            let at = html.find(caption).expect(caption);
            html[at..].split('<').next().unwrap().to_string()
        };
        let some = note("some-nan: train loss heat map with contours");
        assert!(
            some.contains(" of 30 points have a non-finite loss") && !some.contains("; 30 of 30"),
            "the page does not say that losses are missing: {some}"
        );
        let all = note("all-nan: train loss heat map with contours");
        assert!(all.contains("; 30 of 30 points"), "{all}");
        for stem in ["some-nan_train_heat", "all-nan_train_contour"] {
            assert!(html.contains(&format!("data-figure=\"{stem}\"")));
            let png = std::fs::read(run.join(format!("report/{stem}.png"))).unwrap();
            assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        }
    }
}

/// A pca.json without components or path (damaged: a fitted PCA always has
/// both) is refused by name, without panicking or hanging.
#[test]
fn a_pca_without_components_or_path_is_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let run_dir = make_run(tmp.path());
    let run = tch_landscape::store::run::Run::open(&run_dir).unwrap();
    let pca_dir = run_dir.join(tch_landscape::report::run_report::PCA_DIR);
    tch_landscape::analysis::pca::TrajectoryPca::builder()
        .build()
        .unwrap()
        .fit(&run)
        .unwrap()
        .save(&run, &pca_dir)
        .unwrap();
    let json = pca_dir.join(tch_landscape::analysis::pca::SUMMARY_FILE);
    let index = tch_landscape::report::write_report(&run_dir, &Default::default()).unwrap();
    let html = std::fs::read_to_string(&index).unwrap();
    assert!(html.contains("PC1 and PC2 explain") && html.contains("data-figure=\"pca_path\""));
    let clean = std::fs::read_to_string(&json).unwrap();
    for key in ["explained_variance_ratio", "path"] {
        let mut v: serde_json::Value = serde_json::from_str(&clean).unwrap();
        v[key] = serde_json::json!([]);
        std::fs::write(&json, v.to_string()).unwrap();
        let e = tch_landscape::report::write_report(&run_dir, &Default::default()).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("pca.json") && msg.contains("at least one"),
            "{key}: {msg}"
        );
    }
}

#[test]
fn cli_subcommands_work_and_fail_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let run = make_run(tmp.path());
    let r = run.to_str().unwrap();
    let info = landscape(&["info", r]);
    assert!(info.status.success());
    let text = String::from_utf8_lossy(&info.stdout);
    assert!(
        text.contains("5 snapshots") && text.contains("fc1.weight"),
        "{text}"
    );
    let export = landscape(&[
        "export",
        r,
        "--out",
        tmp.path().join("exp").to_str().unwrap(),
    ]);
    assert!(
        export.status.success(),
        "{}",
        String::from_utf8_lossy(&export.stderr)
    );
    assert!(tmp.path().join("exp/trajectory.parquet").exists());
    for bad in [
        vec!["info", "/no/such/run"],
        vec!["export", tmp.path().to_str().unwrap()],
        vec!["report", "/no/such/run"],
    ] {
        let o = landscape(&bad);
        assert!(!o.status.success(), "{bad:?} succeeded");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.starts_with("error: ") && err.trim_end().lines().count() == 1,
            "{bad:?}: {err}"
        );
    }
    // compare: two runs, shared scales; vtk: any grid shape, 2-D only.
    let run2 = make_run(&tmp.path().join("second"));
    let cmp = tmp.path().join("cmp");
    let o = landscape(&[
        "compare",
        r,
        run2.to_str().unwrap(),
        "--out",
        cmp.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let html = std::fs::read_to_string(cmp.join("index.html")).unwrap();
    assert!(
        html.contains("data-figure=\"plane_train_0\"")
            && html.contains("data-figure=\"plane_train_1\"")
    );
    assert!(!html.contains(EVIL));
    let vtk = tmp.path().join("plane.vtk");
    let o = landscape(&[
        "vtk",
        run.join("surfaces/plane").to_str().unwrap(),
        "--out",
        vtk.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = std::fs::read_to_string(&vtk).unwrap();
    assert!(
        text.contains("DIMENSIONS 9 7 1")
            && text.contains("POINTS 63 double")
            && text.contains("SCALARS train_loss double 1")
    );
    assert!(
        text.lines()
            .filter(|l| l.split(' ').count() == 3 && l.parse::<f64>().is_err())
            .count()
            >= 63
    );
    let o = landscape(&["vtk", run.join("surfaces/line").to_str().unwrap()]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("1-D slice"));
    let help = landscape(&["report", "--help"]);
    assert!(String::from_utf8_lossy(&help.stdout).contains("Example:"));
}

/// The `<text>` elements of an SVG drawn by plotters: (x, y, content).
fn svg_texts(svg: &str) -> Vec<(f64, f64, String)> {
    let attr = |tag: &str, name: &str| -> f64 {
        tag.split(&format!(" {name}=\""))
            .nth(1)
            .and_then(|r| r.split('"').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN)
    };
    svg.split("<text")
        .skip(1)
        .filter_map(|t| {
            let (tag, rest) = t.split_once('>')?;
            let content = rest.split("</text>").next()?;
            Some((attr(tag, "x"), attr(tag, "y"), content.trim().to_string()))
        })
        .collect()
}

/// The (width, height) of a PNG file, from its IHDR chunk.
fn png_size(path: &Path) -> (u32, u32) {
    let b = std::fs::read(path).unwrap();
    assert_eq!(&b[..8], b"\x89PNG\r\n\x1a\n", "{}", path.display());
    let be = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    (be(16), be(20))
}

/// The figures a researcher would put into a paper as they are: a small demo
/// run (lr drop, PCA plane, curvature map) reported with `--scale 2
/// --level-spacing linear`: PNGs at twice the pixel size, θ* on every
/// surface figure, PC axes with their explained variance, the path's start,
/// end and lr-drop markers in the legend, legends below the plot area, the
/// curvature map under its own name, no negative zero anywhere; the page
/// renders in Chromium.
#[test]
fn figures_are_ready_for_a_paper() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tch_landscape::demo::DemoConfig {
        train: tch_landscape::demo::TrainConfig {
            epochs: 4,
            lr_drops: vec![2],
            ..Default::default()
        },
        grid_2d: 7,
        grid_1d: 11,
        grid_curvature: 3,
        overwrite: false,
    };
    tch_landscape::demo::run(tmp.path(), &cfg, &mut |_, _, _| {}).unwrap();
    let run = tmp.path().join("mlp-digits");
    let out = tmp.path().join("paper");
    let o = landscape(&[
        "report",
        run.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--scale",
        "2",
        "--level-spacing",
        "linear",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let html = std::fs::read_to_string(out.join("index.html")).unwrap();
    let mut svgs: Vec<(String, String)> = Vec::new();
    for entry in std::fs::read_dir(&out).unwrap() {
        let p = entry.unwrap().path();
        let stem = p.file_stem().unwrap().to_string_lossy().into_owned();
        match p.extension().and_then(|e| e.to_str()) {
            Some("png") => assert_eq!(png_size(&p), (1440, 960), "{stem}.png"),
            Some("svg") => svgs.push((stem, std::fs::read_to_string(&p).unwrap())),
            _ => {}
        }
    }
    assert!(svgs.len() >= 12, "{} figures", svgs.len());
    let has = |stem: &str, f: &dyn Fn(&str) -> bool| {
        let (_, svg) = svgs
            .iter()
            .find(|(s, _)| s == stem)
            .unwrap_or_else(|| panic!("{stem}.svg missing"));
        svg_texts(svg).iter().any(|t| f(&t.2))
    };
    for (stem, svg) in &svgs {
        let texts = svg_texts(svg);
        for (_, _, t) in &texts {
            let t = t.replace('−', "-");
            let negative_zero = t.strip_prefix('-').is_some_and(|r| {
                !r.is_empty() && r.chars().all(|c| matches!(c, '0' | '.' | 'e' | '+' | '-'))
            });
            assert!(!negative_zero, "{stem}.svg prints {t:?}");
        }
        let surface =
            stem.ends_with("_contour") || stem.ends_with("_heat") || stem.ends_with("_1d");
        if surface {
            assert!(
                texts.iter().any(|t| t.2.contains("θ*")),
                "{stem}: no θ* marker"
            );
        }
    }
    // PCA plane: the axes carry the components' explained variance.
    for stem in ["pca-plane_train_contour", "pca_path"] {
        for pc in ["PC1: ", "PC2: "] {
            assert!(
                has(stem, &|t| t.starts_with(pc) && t.ends_with(" %")),
                "{stem}: no {pc}axis label"
            );
        }
    }
    for label in ["start θ₀", "end, final model", "lr drop"] {
        assert!(
            has("pca_path", &|t| t.starts_with(label)),
            "pca_path: no {label}"
        );
    }
    // Legends lie below the x axis's label, outside the plot area.
    for (stem, legend, axis) in [
        ("training_curves", "train_loss", "epoch"),
        ("training_curves", "train_acc", "epoch"),
        ("filter-1d_1d", "train loss", "α"),
        ("weight_histogram", "snapshot 0 (epoch 0)", "weight value"),
    ] {
        let (_, svg) = svgs.iter().find(|(s, _)| s == stem).expect(stem);
        let texts = svg_texts(svg);
        let y = |label: &str| {
            texts
                .iter()
                .find(|t| t.2 == label)
                .unwrap_or_else(|| panic!("{stem}: no text {label:?}"))
                .1
        };
        assert!(
            y(legend) > y(axis),
            "{stem}: legend {legend:?} above the x axis label"
        );
    }
    // The curvature map under its own name, its grid and level crossings said.
    let ratio: Vec<&String> = svgs
        .iter()
        .map(|(s, _)| s)
        .filter(|s| s.ends_with("_ratio"))
        .collect();
    assert!(
        !ratio.is_empty() && ratio.iter().all(|s| s.starts_with("curvature-")),
        "{ratio:?}"
    );
    assert!(html.contains("|λmin/λmax| over α ∈ ["), "curvature caption");
    assert!(html.contains("1 %") && html.contains("5 %"));
    // The level spacing and range are stated.
    assert!(
        html.contains("contour levels linearly spaced from"),
        "levels caption"
    );
    // And the page renders.
    let (dom, errors) = chromium(&out.join("index.html"), None);
    assert!(errors.is_empty(), "console errors: {errors:?}");
    assert!(
        dom.contains("data-selfcheck=\"ok figures="),
        "self-check failed: {}",
        dom.lines().nth(1).unwrap_or("")
    );
}
