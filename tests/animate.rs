//! `landscape animate` on a short run of the demo's model: frames on the PCA
//! plane and along random directions, their values against independent
//! computations (each frame's snapshot, the plain PCA-plane surface), the
//! table, the GIF and PNG frames, resuming, and the report's animation in
//! headless Chromium.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use tch_landscape::analysis::animate::{AnimationPlane, AnimationResult};
use tch_landscape::analysis::surface::SurfaceResult;

fn landscape(args: &[&str]) -> (String, String, bool) {
    let o = Command::new(env!("CARGO_BIN_EXE_landscape"))
        .args(args)
        .output()
        .unwrap();
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
        o.status.success(),
    )
}

fn ok(args: &[&str]) -> String {
    let (out, err, success) = landscape(args);
    assert!(success, "landscape {args:?} failed:\n{out}\n{err}");
    out
}

/// A run of the demo's MLP with 5 snapshots (θ₀ and 4 epochs).
fn run(dir: &Path) -> PathBuf {
    let data = tch_landscape::data::digits::Digits::load().unwrap();
    let (train, _) = data.split_at(1437).unwrap();
    let cfg = tch_landscape::demo::TrainConfig {
        epochs: 4,
        lr_drops: vec![],
        ..Default::default()
    };
    let run = dir.join("mlp-digits");
    tch_landscape::demo::train_digits(&run, &train, &cfg).unwrap();
    run
}

/// Rows of a Parquet file.
fn parquet_rows(path: &Path) -> i64 {
    let f = std::fs::File::open(path).unwrap();
    let r = parquet::file::reader::SerializedFileReader::new(f).unwrap();
    parquet::file::reader::FileReader::metadata(&r)
        .file_metadata()
        .num_rows()
}

#[test]
fn frames_follow_the_snapshots_and_the_report_animates_them() {
    let tmp = common::tempdir();
    let run = run(tmp.path());
    let run_s = run.to_str().unwrap();
    let frames = ["--snapshots", "0:4:2", "--grid", "7"];

    // The PCA plane (fitted first: the run has no PCA yet).
    let printed = ok(&[&["animate", run_s][..], &frames].concat());
    assert!(printed.contains("fitting the trajectory PCA"), "{printed}");
    let pca = AnimationResult::load(run.join("animations/pca")).unwrap();
    assert_eq!(pca.spec.plane, AnimationPlane::Pca);
    let snaps: Vec<usize> = pca.spec.frames.iter().map(|f| f.snapshot).collect();
    assert_eq!(snaps, [0, 2, 4]);
    assert_eq!(
        pca.spec.path.len(),
        5,
        "every snapshot is on the drawn path"
    );
    // Each frame's reference point is its snapshot's place on the path...
    for f in &pca.spec.frames {
        let p = &pca.spec.path[f.snapshot];
        assert_eq!(f.at, [p.x, p.y]);
    }
    assert_eq!(pca.spec.frames[2].at, [0.0, 0.0], "the final model");
    assert!(pca.spec.frames[0].at[0].abs() > 0.1, "θ₀ is away from it");

    // Random directions: frame k is centred on θ_k itself.
    ok(&[
        &["animate", run_s, "--directions", "random", "--range", "0.5"][..],
        &frames,
    ]
    .concat());
    let random = AnimationResult::load(run.join("animations/random")).unwrap();
    assert_eq!(random.spec.plane, AnimationPlane::Fixed);
    // ... so the loss at the snapshot on the PCA-plane frame (through
    // θ_k, moved there and back by float arithmetic) equals the loss at
    // θ_k, to float rounding; a wrong shift would miss by the basin.
    for split in ["train", "test"] {
        let (a, b) = (pca.snapshot_losses(split), random.snapshot_losses(split));
        assert_eq!(a.len(), 3);
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() <= 1e-4 * y.abs(), "{split}: {a:?} vs {b:?}");
        }
        assert!(b[0] > 5.0 * b[2], "training lowered the loss: {b:?}");
    }

    // The last PCA frame is the plain PCA-plane surface (unit-norm
    // components, same lattice), value for value.
    let (gx, gy) = (
        pca.spec.grid.x.values(),
        pca.spec.grid.y.as_ref().unwrap().values(),
    );
    let axis = |v: &[f64]| format!("{}:{}:{}", v[0], v[v.len() - 1], v.len());
    ok(&[
        "surface",
        run_s,
        "--directions",
        "pca",
        "--raw-pca",
        "--x",
        &axis(&gx),
        "--y",
        &axis(&gy),
        "--name",
        "plane",
    ]);
    let plane = SurfaceResult::load(run.join("surfaces/plane")).unwrap();
    let last = &pca.frames[2];
    for split in ["train", "test"] {
        assert_eq!(plane.loss(split), last.loss(split), "{split}");
    }

    // The table: every (frame, point, split), the snapshot's own point
    // included when off the lattice.
    let dir = run.join("animations/pca");
    let expected: usize = pca.frames.iter().map(|f| f.points.len() * 2).sum();
    assert_eq!(
        parquet_rows(&dir.join("animation.parquet")),
        expected as i64
    );
    assert_eq!(pca.rows().len(), expected);

    // The GIF: three frames of 720 × 480, looping; a PNG per frame.
    let mut opts = gif::DecodeOptions::new();
    opts.set_color_output(gif::ColorOutput::RGBA);
    let mut dec = opts
        .read_info(std::fs::File::open(dir.join("animation.gif")).unwrap())
        .unwrap();
    assert_eq!((dec.width(), dec.height()), (720, 480));
    let mut n = 0;
    while let Some(f) = dec.read_next_frame().unwrap() {
        assert!(f.delay > 0);
        n += 1;
    }
    assert_eq!(n, 3);
    for i in 0..3 {
        assert!(dir.join(format!("png/frame-{i:03}.png")).is_file());
    }

    // Rerun: nothing is recomputed; other settings are refused by name.
    let again = ok(&[&["animate", run_s][..], &frames].concat());
    assert_eq!(again.matches(": 0 points computed").count(), 3, "{again}");
    assert!(!again.contains("fitting"), "{again}");
    let (_, err, success) = landscape(&["animate", run_s, "--snapshots", "0:4:2", "--grid", "5"]);
    assert!(!success && err.contains("animation.json"), "{err}");
    let (_, err, success) = landscape(&["animate", run_s, "--snapshots", "3:9"]);
    assert!(!success && err.contains("--snapshots"), "{err}");

    // Shards (each process every other point of every frame), merged,
    // give the whole animation value for value.
    let part = |i: usize| tmp.path().join(format!("part-{i}"));
    for i in 0..2 {
        let shard = format!("{i}/2");
        let out = part(i);
        let printed = ok(&[
            &[
                "animate",
                run_s,
                "--shard",
                &shard,
                "--out",
                out.to_str().unwrap(),
            ][..],
            &frames,
        ]
        .concat());
        assert!(printed.contains("landscape merge"), "{printed}");
    }
    let merged = tmp.path().join("merged");
    ok(&[
        "merge",
        part(0).to_str().unwrap(),
        part(1).to_str().unwrap(),
        "--out",
        merged.to_str().unwrap(),
    ]);
    let m = AnimationResult::load(&merged).unwrap();
    assert_eq!(m.spec.shard, None);
    for (a, b) in m.frames.iter().zip(&pca.frames) {
        assert_eq!(a.loss("train"), b.loss("train"));
    }
    assert!(merged.join("animation.gif").is_file());

    // The report animates both, and Chromium's self-check counts the frames.
    ok(&["report", run_s]);
    let index = run.join("report/index.html");
    let html = std::fs::read_to_string(&index).unwrap();
    assert!(html.contains("Landscape over training"));
    assert!(run.join("report/animation-pca.gif").is_file());
    let (dom, errors) = common::chromium(&index, None);
    assert!(errors.is_empty(), "{errors:?}");
    assert!(
        dom.contains("data-selfcheck=\"ok figures=") && dom.contains("animations=2 frames=6\""),
        "{}",
        dom.split("data-selfcheck=")
            .nth(1)
            .map_or("no self-check", |s| &s[..s.len().min(200)])
    );
}
