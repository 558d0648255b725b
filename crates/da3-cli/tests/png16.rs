//! 16-bit depth PNGs round-trip through the `image` crate's decoder.

mod common;

use da3_cli::png16::{quantize_depth, write_png16, DepthRange};

#[test]
fn png16_round_trips_values_size_and_bit_depth() {
    let (w, h) = (7u32, 5u32);
    let mut values: Vec<u16> = (0..w * h).map(|i| (i * 1871 + 3) as u16).collect();
    values[0] = 0;
    values[1] = 65535;
    values[2] = 256; // distinguishes the byte order
    let mut bytes = Vec::new();
    write_png16(&mut bytes, w, h, &values).unwrap();

    let decoded = image::load_from_memory_with_format(&bytes, image::ImageFormat::Png).unwrap();
    assert_eq!(decoded.color(), image::ColorType::L16);
    assert_eq!((decoded.width(), decoded.height()), (w, h));
    assert_eq!(decoded.into_luma16().into_raw(), values);

    // The PNG header itself says 16-bit grayscale: IHDR bit depth 16, colour type 0.
    assert_eq!(&bytes[12..16], b"IHDR");
    assert_eq!((bytes[24], bytes[25]), (16, 0));
}

#[test]
fn depth_png_decodes_back_to_depth() {
    let (w, h) = (56u32, 42u32);
    let depth: Vec<f32> = (0..w * h).map(|i| 0.5 + (i % w) as f32 * 0.05 + (i / w) as f32 * 0.01).collect();
    let (values, range) = quantize_depth(&depth);
    let dir = common::scratch("png16_depth");
    let path = dir.join("d.png");
    write_png16(std::fs::File::create(&path).unwrap(), w, h, &values).unwrap();
    let back = image::open(&path).unwrap().into_luma16();
    assert_eq!(back.dimensions(), (w, h));
    let min = depth.iter().copied().fold(f32::INFINITY, f32::min);
    let max = depth.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    assert_eq!(range, DepthRange { min, max });
    assert_eq!(back.as_raw().iter().min(), Some(&0));
    assert_eq!(back.as_raw().iter().max(), Some(&65535));
    let step = (max - min) / 65535.0;
    for (&d, &v) in depth.iter().zip(back.as_raw()) {
        assert!((range.dequantize(v) - d).abs() <= 0.5 * step + 1e-6);
    }
}
