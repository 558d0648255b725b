//! JPEG decoding against Pillow: every `<case>.jpg` of `tests/fixtures/jpeg/` (made by
//! tools/golden/jpeg.py: 4:2:0/4:2:2/4:4:4/4:1:1/4:4:0, grayscale, CMYK with and without the
//! Adobe marker, progressive, optimized Huffman tables, restart markers, EXIF orientation,
//! low quality, arithmetic coding, 1x1 and 3x5 images) decoded by the CLI's `images::decode` must equal
//! `<case>.png`, Pillow 13's `Image.open(jpg).convert("RGB")`, sample for sample.

mod common;

use std::path::PathBuf;

use common::workspace_root;
use da3_cli::jpeg::{decode, pillow_cmyk_to_rgb};
use image::codecs::jpeg::JpegEncoder;
use image::{GenericImageView, Limits};

/// A 40x30 baseline JPEG of a pattern, encoded by the `image` crate.
fn jpeg() -> Vec<u8> {
    let img = image::RgbImage::from_fn(40, 30, |x, y| image::Rgb([(x * 6) as u8, (y * 8) as u8, ((x ^ y) * 9) as u8]));
    let mut out = Vec::new();
    JpegEncoder::new_with_quality(&mut out, 90).encode_image(&img).unwrap();
    out
}

fn fixture_dir() -> PathBuf {
    workspace_root().join("crates/da3-cli/tests/fixtures/jpeg")
}

/// The case names (file stems of the `.jpg` fixtures), sorted.
fn cases() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(fixture_dir())
        .expect("tests/fixtures/jpeg (run tools/golden/jpeg.py)")
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".jpg").map(str::to_string)
        })
        .collect();
    names.sort();
    names
}

#[test]
fn every_fixture_decodes_exactly_as_pillow() {
    let names = cases();
    assert!(names.len() >= 19, "expected every case of tools/golden/jpeg.py, found {names:?}");
    let mut failures = Vec::new();
    for name in &names {
        let dir = fixture_dir();
        let ours = da3_cli::images::decode(&dir.join(format!("{name}.jpg")), 1 << 30).unwrap();
        // Grayscale stays one channel (the preprocessing copies it to R, G and B, as Pillow's
        // convert("RGB") does); compare in RGB.
        let ours = ours.to_rgb8();
        let pillow = image::open(dir.join(format!("{name}.png"))).unwrap().into_rgb8();
        assert_eq!(ours.dimensions(), pillow.dimensions(), "{name}: size (EXIF orientation must not be applied)");
        let (a, b) = (ours.as_raw(), pillow.as_raw());
        let differ = a.iter().zip(b).filter(|(x, y)| x != y).count();
        let max = a.iter().zip(b).map(|(&x, &y)| x.abs_diff(y)).max().unwrap_or(0);
        eprintln!("{name}: {}x{}, {differ} of {} samples differ from Pillow (max {max})", ours.width(), ours.height(), a.len());
        if differ > 0 {
            failures.push(format!("{name}: {differ} samples differ, max {max} levels"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn grayscale_and_cmyk_keep_pillows_layouts() {
    let dir = fixture_dir();
    let gray = da3_cli::images::decode(&dir.join("gray.jpg"), 1 << 30).unwrap();
    assert!(matches!(gray, image::DynamicImage::ImageLuma8(_)), "{:?}", gray.color());
    let cmyk = da3_cli::images::decode(&dir.join("cmyk_adobe.jpg"), 1 << 30).unwrap();
    assert!(matches!(cmyk, image::DynamicImage::ImageRgb8(_)), "{:?}", cmyk.color());
}

#[test]
fn corrupt_and_oversized_jpegs_are_clean_errors() {
    let dir = common::scratch("jpeg_pillow_corrupt");
    let good = std::fs::read(fixture_dir().join("s420.jpg")).unwrap();
    // Unsupported precision: a 12-bit frame header (Pillow: "cannot handle 12-bit layers").
    let sof = good.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
    let mut bad = good.clone();
    bad[sof + 4] = 12;
    let path = dir.join("twelve_bit.jpg");
    std::fs::write(&path, &bad).unwrap();
    let e = format!("{:#}", da3_cli::images::decode(&path, 1 << 30).unwrap_err());
    assert!(e.contains("cannot decode image") && e.contains("twelve_bit.jpg") && e.contains("libjpeg"), "{e}");
    // A file over the decoder's limits (61x43 with max_pixels 60: sides over 60 are refused;
    // 61x43x3 bytes fit in the 480 B + 64 MiB allowance, so only the sides bound it here).
    let path = dir.join("s420.jpg");
    std::fs::write(&path, &good).unwrap();
    let e = format!("{:#}", da3_cli::images::decode(&path, 60).unwrap_err());
    assert!(e.contains("61x43") && e.contains("limits"), "{e}");
    assert!(da3_cli::images::decode(&path, 61).is_ok());
}

#[test]
fn cmyk_conversion_is_pillows() {
    // Values printed by Pillow 13: Image.fromarray(cmyk, "CMYK").convert("RGB").
    assert_eq!(pillow_cmyk_to_rgb([10, 200, 30, 40]), [207, 46, 190]);
    assert_eq!(pillow_cmyk_to_rgb([255, 255, 255, 255]), [0, 0, 0]);
    assert_eq!(pillow_cmyk_to_rgb([0, 0, 0, 0]), [255, 255, 255]);
    assert_eq!(pillow_cmyk_to_rgb([100, 50, 0, 128]), [77, 102, 127]);
}

#[test]
fn corrupt_data_is_an_error_not_a_panic() {
    let limits = Limits::no_limits();
    let e = decode(b"\x89PNG\r\n\x1a\n", &limits).unwrap_err();
    assert!(e.contains("Not a JPEG file"), "{e}");
    let mut data = jpeg();
    // A frame header that declares 0 components.
    let sof = data.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
    data[sof + 9] = 0;
    let e = decode(&data, &limits).unwrap_err();
    assert!(e.starts_with("libjpeg"), "{e}");
    // Entropy-coded data replaced by garbage decodes (libjpeg warns and fills), like Pillow.
    let mut data = jpeg();
    let n = data.len();
    data[n - 40..n - 2].fill(0x55);
    assert_eq!(decode(&data, &limits).unwrap().dimensions(), (40, 30));
    assert!(decode(&data[..3], &limits).is_err());
}

#[test]
fn limits_are_checked_before_decoding() {
    let data = jpeg();
    let mut limits = Limits::no_limits();
    limits.max_image_width = Some(39);
    assert!(decode(&data, &limits).unwrap_err().contains("40x30"));
    let mut limits = Limits::no_limits();
    limits.max_alloc = Some(40 * 30 * 3 - 1);
    assert!(decode(&data, &limits).unwrap_err().contains("3600 bytes"));
    limits.max_alloc = Some(40 * 30 * 3);
    assert!(decode(&data, &limits).is_ok());
}
