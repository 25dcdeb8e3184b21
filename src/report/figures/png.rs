//! PNG encoding of a rendered figure in memory (the `png` crate), so the
//! file can be written atomically like every other output.

/// Encodes `rgb` (rows of `width` RGB pixels, top to bottom) as a PNG file,
/// with adaptive row filters and the default compression.
pub(crate) fn encode_rgb(rgb: &[u8], (width, height): (u32, u32)) -> std::io::Result<Vec<u8>> {
    if width == 0 || height == 0 || rgb.len() != width as usize * height as usize * 3 {
        return Err(std::io::Error::other(format!(
            "{} bytes are not a {width}×{height} RGB image",
            rgb.len()
        )));
    }
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_adaptive_filter(png::AdaptiveFilterType::Adaptive);
    let mut writer = encoder.write_header().map_err(std::io::Error::other)?;
    writer
        .write_image_data(rgb)
        .map_err(std::io::Error::other)?;
    writer.finish().map_err(std::io::Error::other)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_a_decoder() {
        let (w, h) = (7u32, 5u32);
        let rgb: Vec<u8> = (0..w * h * 3).map(|i| (i * 37 % 251) as u8).collect();
        let bytes = encode_rgb(&rgb, (w, h)).unwrap();
        let mut reader = png::Decoder::new(bytes.as_slice()).read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!((info.width, info.height), (w, h));
        assert_eq!(info.color_type, png::ColorType::Rgb);
        assert_eq!(&buf[..info.buffer_size()], rgb.as_slice());
    }

    #[test]
    fn refuses_a_buffer_of_the_wrong_size() {
        assert!(encode_rgb(&[0; 10], (2, 2)).is_err());
        assert!(encode_rgb(&[], (0, 0)).is_err());
    }
}
