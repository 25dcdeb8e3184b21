//! A small PNG encoder for the figures' RGB buffers, so a figure is encoded
//! in memory and written atomically: 8-bit RGB, no interlacing, each row
//! with the filter (None, Sub, Up, Average or Paeth) whose output has the
//! smallest sum of absolute values, zlib-compressed by flate2.

use std::io::Write;

use flate2::write::ZlibEncoder;
use flate2::{Compression, Crc};

const SIGNATURE: &[u8; 8] = b"\x89PNG\r\n\x1a\n";
/// Bytes per pixel (RGB).
const BPP: usize = 3;

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let mut crc = Crc::new();
    crc.update(&out[start..]);
    out.extend_from_slice(&crc.sum().to_be_bytes());
}

fn paeth(a: u8, b: u8, c: u8) -> u8 {
    let p = a as i16 + b as i16 - c as i16;
    let (pa, pb, pc) = (
        (p - a as i16).abs(),
        (p - b as i16).abs(),
        (p - c as i16).abs(),
    );
    if pa <= pb && pa <= pc {
        a
    } else if pb <= pc {
        b
    } else {
        c
    }
}

/// `row` filtered with filter `kind` (0–4) against the previous row `prev`.
fn filter(kind: u8, row: &[u8], prev: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.push(kind);
    for i in 0..row.len() {
        let a = if i >= BPP { row[i - BPP] } else { 0 };
        let (b, c) = (prev[i], if i >= BPP { prev[i - BPP] } else { 0 });
        let predicted = match kind {
            0 => 0,
            1 => a,
            2 => b,
            3 => ((a as u16 + b as u16) / 2) as u8,
            _ => paeth(a, b, c),
        };
        out.push(row[i].wrapping_sub(predicted));
    }
}

/// The sum of the filtered bytes read as signed values (the usual heuristic).
fn cost(filtered: &[u8]) -> u64 {
    filtered[1..]
        .iter()
        .map(|&v| (v as i8).unsigned_abs() as u64)
        .sum()
}

/// Encodes `rgb` (rows of `width` RGB pixels, top to bottom) as a PNG file.
pub(crate) fn encode_rgb(rgb: &[u8], (width, height): (u32, u32)) -> std::io::Result<Vec<u8>> {
    let stride = width as usize * BPP;
    if width == 0 || height == 0 || rgb.len() != stride * height as usize {
        return Err(std::io::Error::other(format!(
            "{} bytes are not a {width}×{height} RGB image",
            rgb.len()
        )));
    }
    let mut z = ZlibEncoder::new(Vec::new(), Compression::default());
    let zero = vec![0u8; stride];
    let (mut best, mut trial) = (Vec::with_capacity(stride + 1), Vec::new());
    for (r, row) in rgb.chunks_exact(stride).enumerate() {
        let prev = if r == 0 {
            &zero[..]
        } else {
            &rgb[(r - 1) * stride..r * stride]
        };
        filter(0, row, prev, &mut best);
        for kind in 1..=4 {
            filter(kind, row, prev, &mut trial);
            if cost(&trial) < cost(&best) {
                std::mem::swap(&mut best, &mut trial);
            }
        }
        z.write_all(&best)?;
    }
    let idat = z.finish()?;
    let mut header = Vec::with_capacity(13);
    header.extend_from_slice(&width.to_be_bytes());
    header.extend_from_slice(&height.to_be_bytes());
    // 8 bits, truecolour (RGB), deflate, adaptive filtering, no interlace.
    header.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut out = Vec::with_capacity(idat.len() + 64);
    out.extend_from_slice(SIGNATURE);
    chunk(&mut out, b"IHDR", &header);
    chunk(&mut out, b"IDAT", &idat);
    chunk(&mut out, b"IEND", &[]);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    /// Decodes what `encode_rgb` writes, checking every chunk's CRC.
    fn decode(png: &[u8]) -> (u32, u32, Vec<u8>) {
        assert_eq!(&png[..8], SIGNATURE);
        let (mut pos, mut ihdr, mut idat) = (8, Vec::new(), Vec::new());
        while pos < png.len() {
            let len = u32::from_be_bytes(png[pos..pos + 4].try_into().unwrap()) as usize;
            let body = &png[pos + 4..pos + 8 + len];
            let mut crc = Crc::new();
            crc.update(body);
            let stored = u32::from_be_bytes(png[pos + 8 + len..pos + 12 + len].try_into().unwrap());
            assert_eq!(crc.sum(), stored, "CRC of {:?}", &body[..4]);
            match &body[..4] {
                b"IHDR" => ihdr = body[4..].to_vec(),
                b"IDAT" => idat.extend_from_slice(&body[4..]),
                _ => {}
            }
            pos += 12 + len;
        }
        let w = u32::from_be_bytes(ihdr[..4].try_into().unwrap());
        let h = u32::from_be_bytes(ihdr[4..8].try_into().unwrap());
        assert_eq!(&ihdr[8..], &[8, 2, 0, 0, 0]);
        let mut raw = Vec::new();
        flate2::read::ZlibDecoder::new(&idat[..])
            .read_to_end(&mut raw)
            .unwrap();
        let stride = w as usize * BPP;
        let mut pixels: Vec<u8> = Vec::new();
        for (r, line) in raw.chunks_exact(stride + 1).enumerate() {
            for i in 0..stride {
                let a = if i >= BPP {
                    pixels[r * stride + i - BPP]
                } else {
                    0
                };
                let b = if r > 0 {
                    pixels[(r - 1) * stride + i]
                } else {
                    0
                };
                let c = if r > 0 && i >= BPP {
                    pixels[(r - 1) * stride + i - BPP]
                } else {
                    0
                };
                let predicted = match line[0] {
                    0 => 0,
                    1 => a,
                    2 => b,
                    3 => ((a as u16 + b as u16) / 2) as u8,
                    4 => paeth(a, b, c),
                    f => panic!("filter {f}"),
                };
                pixels.push(line[1 + i].wrapping_add(predicted));
            }
        }
        (w, h, pixels)
    }

    #[test]
    fn round_trips_through_a_decoder() {
        let (w, h) = (7u32, 5u32);
        let rgb: Vec<u8> = (0..w * h * 3)
            .map(|i| (i * 37 % 251) as u8 ^ if i % 5 == 0 { 0xff } else { 0 })
            .collect();
        let png = encode_rgb(&rgb, (w, h)).unwrap();
        assert_eq!(decode(&png), (w, h, rgb));
        // A smooth image uses the predicting filters and compresses well.
        let smooth: Vec<u8> = (0..64 * 64 * 3).map(|i| ((i / 3) % 64) as u8).collect();
        let png = encode_rgb(&smooth, (64, 64)).unwrap();
        assert!(png.len() < smooth.len() / 20, "{} bytes", png.len());
        assert_eq!(decode(&png).2, smooth);
    }

    #[test]
    fn refuses_a_buffer_of_the_wrong_size() {
        assert!(encode_rgb(&[0; 10], (2, 2)).is_err());
        assert!(encode_rgb(&[], (0, 0)).is_err());
    }

    #[test]
    fn paeth_predicts_the_nearest_neighbour() {
        assert_eq!(paeth(10, 20, 10), 20);
        assert_eq!(paeth(20, 10, 10), 20);
        assert_eq!(paeth(5, 5, 5), 5);
    }
}
