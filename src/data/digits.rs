//! The UCI handwritten digits (1797 images 8 × 8, pixels 0–16, labels 0–9),
//! shipped in `data/digits.csv.gz` (CC BY 4.0, see `data/README.md`).

use std::io::Read;
use std::path::Path;

use tch::{Kind, Tensor};

use crate::error::{Error, Result};

/// The compressed CSV, embedded so binaries work from any directory.
pub const DIGITS_CSV_GZ: &[u8] = include_bytes!("../../data/digits.csv.gz");

/// Number of samples in the set.
pub const N_SAMPLES: usize = 1797;
/// Pixels per image.
pub const N_FEATURES: usize = 64;
/// Number of classes.
pub const N_CLASSES: usize = 10;

/// The digits as tensors: `x` is `[N, 64]` float32 scaled by 1/16 (values in
/// [0, 1], as in benchmark W1); `y` is `[N]` int64 labels.
#[derive(Debug)]
pub struct Digits {
    /// Inputs, `[N, 64]`, float32 in [0, 1].
    pub x: Tensor,
    /// Labels, `[N]`, int64 in 0..10.
    pub y: Tensor,
}

impl Digits {
    /// Loads the embedded copy.
    pub fn load() -> Result<Digits> {
        parse_gz(DIGITS_CSV_GZ, Path::new("<embedded data/digits.csv.gz>"))
    }

    /// Loads a digits CSV (gzip-compressed or plain) from `path`: 64 pixel
    /// values then the label on each line.
    pub fn from_file(path: &Path) -> Result<Digits> {
        let bytes = std::fs::read(path).map_err(|e| Error::io("reading", path, e))?;
        if bytes.starts_with(&[0x1f, 0x8b]) {
            parse_gz(&bytes, path)
        } else {
            parse_csv(&String::from_utf8_lossy(&bytes), path)
        }
    }

    /// Splits into the first `n` samples and the rest (e.g. train / test).
    pub fn split_at(&self, n: usize) -> Result<(Digits, Digits)> {
        let total = self.len();
        if n == 0 || n >= total {
            return Err(Error::invalid(
                "split point",
                format!("must be in 1..{total}, got {n}"),
            ));
        }
        Ok((self.range(0, n), self.range(n, total - n)))
    }

    /// Samples `start..start + len` (a view, no copy).
    pub fn range(&self, start: usize, len: usize) -> Digits {
        Digits {
            x: self.x.narrow(0, start as i64, len as i64),
            y: self.y.narrow(0, start as i64, len as i64),
        }
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.y.size()[0] as usize
    }

    /// True when there are no samples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn parse_gz(bytes: &[u8], path: &Path) -> Result<Digits> {
    let mut text = String::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_string(&mut text)
        .map_err(|e| Error::Data {
            path: path.to_path_buf(),
            reason: format!("not a readable gzip text file ({e})"),
        })?;
    parse_csv(&text, path)
}

fn parse_csv(text: &str, path: &Path) -> Result<Digits> {
    let bad = |line: usize, reason: String| Error::Data {
        path: path.to_path_buf(),
        reason: format!("line {line}: {reason}"),
    };
    let mut xs = Vec::with_capacity(N_SAMPLES * N_FEATURES);
    let mut ys = Vec::with_capacity(N_SAMPLES);
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let fields: Vec<&str> = line.split(',').collect();
        if fields.len() != N_FEATURES + 1 {
            return Err(bad(
                i + 1,
                format!(
                    "expected {} comma-separated values, found {}",
                    N_FEATURES + 1,
                    fields.len()
                ),
            ));
        }
        for f in &fields[..N_FEATURES] {
            let v: f32 = f
                .trim()
                .parse()
                .map_err(|_| bad(i + 1, format!("pixel '{f}' is not a number")))?;
            xs.push(v / 16.0);
        }
        let label: i64 = fields[N_FEATURES]
            .trim()
            .parse()
            .ok()
            .filter(|l| (0..N_CLASSES as i64).contains(l))
            .ok_or_else(|| {
                bad(
                    i + 1,
                    format!("label '{}' is not an integer 0..9", fields[N_FEATURES]),
                )
            })?;
        ys.push(label);
    }
    if ys.is_empty() {
        return Err(Error::Data {
            path: path.to_path_buf(),
            reason: "no samples".into(),
        });
    }
    let n = ys.len() as i64;
    Ok(Digits {
        x: Tensor::from_slice(&xs)
            .reshape([n, N_FEATURES as i64])
            .to_kind(Kind::Float),
        y: Tensor::from_slice(&ys),
    })
}
