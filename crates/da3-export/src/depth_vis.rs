//! `depth_vis`: per view, the processed image beside its colourized depth as
//! `depth_vis/%04d.jpg` (JPEG quality 95), like the reference's `export/depth_vis.py`; plus,
//! beyond the reference, lossless 16-bit PNGs of depth (`depth_%04d.png`) and confidence
//! (`conf_%04d.png`, when the model predicts confidence; `"conf": null` in the sidecar
//! otherwise) with a sidecar `png16_ranges.json` that maps them back to floats.
//!
//! Colourization follows `utils/visualize.py::visualize_depth`: inverse depth of the pixels
//! with depth > 0, normalized between its 2nd and 98th percentiles (over those pixels only;
//! `0..0` when there are at most 10), clipped to `[0, 1]`, flipped (`1 - x`, so near is red
//! and far is blue) and looked up in matplotlib's "Spectral" colormap
//! ([`crate::spectral`]). Pixels with depth ≤ 0 keep their raw value before the
//! normalization, as in the reference (so 0 maps to the near end); NaN maps to black.
//!
//! 16-bit mapping, per view and per map, with `min`/`max` the extreme finite values:
//! `png = round((value - min) / (max - min) * 65535)`, inverted by
//! `value = min + png / 65535 * (max - min)` (within half a step). Non-finite values are
//! stored as 0, and a constant map (`max == min`) is all 0.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use da3::Prediction;
use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;
use image::{ExtendedColorType, ImageBuffer, ImageEncoder, Luma};

use crate::atomic::{create_dir, write_bytes_atomic};
use crate::error::{ExportError, Result};
use crate::geometry::percentiles;
use crate::image::{check_inputs, ImageRgb8};
use crate::spectral::spectral;

/// Sub-directory of the export directory that holds this format's files.
pub const DIR: &str = "depth_vis";
/// File name of the sidecar with the 16-bit ranges.
pub const RANGES_NAME: &str = "png16_ranges.json";
/// JPEG quality of the visualizations (the reference's `imageio.imwrite(..., quality=95)`).
pub const JPEG_QUALITY: u8 = 95;

/// File name of view `i`'s visualization: `0000.jpg`, `0001.jpg`, ...
pub fn vis_name(i: usize) -> String {
    format!("{i:04}.jpg")
}
/// File name of view `i`'s 16-bit depth PNG.
pub fn depth_png_name(i: usize) -> String {
    format!("depth_{i:04}.png")
}
/// File name of view `i`'s 16-bit confidence PNG.
pub fn conf_png_name(i: usize) -> String {
    format!("conf_{i:04}.png")
}

/// Paths of everything [`export_depth_vis`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DepthVisFiles {
    /// One side-by-side JPEG per view.
    pub visualizations: Vec<PathBuf>,
    /// One 16-bit depth PNG per view.
    pub depth_pngs: Vec<PathBuf>,
    /// One 16-bit confidence PNG per view (none when the model predicts no confidence).
    pub conf_pngs: Vec<PathBuf>,
    /// The JSON sidecar.
    pub ranges: PathBuf,
}

/// Writes the visualizations, 16-bit PNGs and sidecar of every view into `dir/depth_vis/`
/// (created if needed).
pub fn export_depth_vis(
    dir: &Path,
    pred: &Prediction,
    images: &[ImageRgb8],
) -> Result<DepthVisFiles> {
    check_inputs(pred, images)?;
    let out = dir.join(DIR);
    create_dir(&out)?;
    let (w, h) = (pred.width, pred.height);
    let mut files = DepthVisFiles {
        visualizations: vec![],
        depth_pngs: vec![],
        conf_pngs: vec![],
        ranges: out.join(RANGES_NAME),
    };
    let mut views = Vec::with_capacity(pred.views);
    for (i, image) in images.iter().enumerate() {
        let colored = colorize_depth(pred.depth_of(i));
        let path = out.join(vis_name(i));
        let jpeg = encode_jpeg(
            &side_by_side(&image.pixels, &colored, w, h),
            2 * w,
            h,
            JPEG_QUALITY,
        )
        .map_err(|source| ExportError::Encode {
            path: path.clone(),
            source,
        })?;
        write_bytes_atomic(&path, &jpeg)?;
        files.visualizations.push(path);

        let mut entry = serde_json::Map::new();
        entry.insert("view".into(), i.into());
        entry.insert("visualization".into(), vis_name(i).into());
        entry.insert("conf".into(), serde_json::Value::Null);
        let conf = if pred.conf.is_empty() {
            None
        } else {
            Some(pred.conf_of(i))
        };
        let maps = [
            Some((
                "depth",
                pred.depth_of(i),
                depth_png_name(i),
                &mut files.depth_pngs,
            )),
            conf.map(|c| ("conf", c, conf_png_name(i), &mut files.conf_pngs)),
        ];
        for (key, values, name, list) in maps.into_iter().flatten() {
            let (q, range) = quantize16(values);
            let path = out.join(&name);
            let png = encode_png16(&q, w, h).map_err(|source| ExportError::Encode {
                path: path.clone(),
                source,
            })?;
            write_bytes_atomic(&path, &png)?;
            list.push(path);
            entry.insert(
                key.into(),
                serde_json::json!({ "file": name, "min": range.min, "max": range.max }),
            );
        }
        views.push(serde_json::Value::Object(entry));
    }
    let doc = serde_json::json!({
        "mapping": "value = min + png / 65535 * (max - min); png = round((value - min) / (max - min) * 65535); \
                    non-finite values are stored as 0; a constant map (max == min) is all 0",
        "width": w,
        "height": h,
        "views": views,
    });
    let mut text =
        serde_json::to_string_pretty(&doc).map_err(|e| ExportError::Input(e.to_string()))?;
    text.push('\n');
    write_bytes_atomic(&files.ranges, text.as_bytes())?;
    Ok(files)
}

/// Colourizes one depth map (row-major, any size) as RGB bytes, exactly like the reference's
/// `visualize_depth` (see the module docs).
pub fn colorize_depth(depth: &[f32]) -> Vec<u8> {
    let value = |d: f32| if d > 0.0 { 1.0 / d } else { d };
    let valid: Vec<f32> = depth
        .iter()
        .filter(|&&d| d > 0.0)
        .map(|&d| value(d))
        .collect();
    let (mut lo, mut hi) = if valid.len() <= 10 {
        (0.0, 0.0)
    } else {
        let p = percentiles(&valid, &[2.0, 98.0]).unwrap_or_else(|| vec![0.0, 0.0]);
        (p[0], p[1])
    };
    if lo == hi {
        lo -= 1e-6;
        hi += 1e-6;
    }
    // NumPy (1.x) evaluates `(depth - lo) / (hi - lo)` in float32 with both scalars cast.
    let (lo32, span32) = (lo as f32, (hi - lo) as f32);
    depth
        .iter()
        .flat_map(|&d| {
            let x = ((value(d) - lo32) / span32).clamp(0.0, 1.0);
            spectral(1.0 - x)
        })
        .collect()
}

/// Places two `w`×`h` RGB images side by side (`left` first) into one `2w`×`h` image.
pub(crate) fn side_by_side(left: &[u8], right: &[u8], w: usize, h: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 * w * h * 3);
    for y in 0..h {
        out.extend_from_slice(&left[y * w * 3..(y + 1) * w * 3]);
        out.extend_from_slice(&right[y * w * 3..(y + 1) * w * 3]);
    }
    out
}

/// Encodes RGB bytes as a JPEG of the given quality (1–100).
pub fn encode_jpeg(rgb: &[u8], w: usize, h: usize, quality: u8) -> image::ImageResult<Vec<u8>> {
    let (w, h) = (to_u32(w)?, to_u32(h)?);
    let mut buf = Vec::new();
    JpegEncoder::new_with_quality(&mut buf, quality).write_image(
        rgb,
        w,
        h,
        ExtendedColorType::Rgb8,
    )?;
    Ok(buf)
}

/// Encodes `values` (`h` rows of `w`) as a 16-bit grayscale PNG.
pub fn encode_png16(values: &[u16], w: usize, h: usize) -> image::ImageResult<Vec<u8>> {
    let (w, h) = (to_u32(w)?, to_u32(h)?);
    let buffer: ImageBuffer<Luma<u16>, &[u16]> = ImageBuffer::from_raw(w, h, values)
        .ok_or_else(|| parameter_error(format!("{} values for a {w}x{h} image", values.len())))?;
    let mut buf = Vec::new();
    buffer.write_with_encoder(PngEncoder::new(Cursor::new(&mut buf)))?;
    Ok(buf)
}

fn to_u32(v: usize) -> image::ImageResult<u32> {
    u32::try_from(v).map_err(|_| parameter_error(format!("image side {v} is too large")))
}

fn parameter_error(message: String) -> image::ImageError {
    image::ImageError::Parameter(image::error::ParameterError::from_kind(
        image::error::ParameterErrorKind::Generic(message),
    ))
}

/// The range a 16-bit map is relative to (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Range16 {
    /// Value stored as 0.
    pub min: f32,
    /// Value stored as 65535.
    pub max: f32,
}

impl Range16 {
    /// The smallest and largest finite value of `values` (`0, 0` when none is finite).
    pub fn of(values: &[f32]) -> Self {
        let finite = values.iter().copied().filter(|v| v.is_finite());
        let (min, max) = finite.fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
        if min > max {
            Self { min: 0.0, max: 0.0 }
        } else {
            Self { min, max }
        }
    }

    /// The 16-bit code of `v`.
    pub fn quantize(&self, v: f32) -> u16 {
        let span = f64::from(self.max) - f64::from(self.min);
        if !(v.is_finite() && span > 0.0 && span.is_finite()) {
            return 0;
        }
        ((f64::from(v) - f64::from(self.min)) / span * 65535.0)
            .round()
            .clamp(0.0, 65535.0) as u16
    }

    /// The value a 16-bit code stands for.
    pub fn dequantize(&self, q: u16) -> f32 {
        let span = f64::from(self.max) - f64::from(self.min);
        (f64::from(self.min) + f64::from(q) / 65535.0 * span) as f32
    }
}

/// Quantizes one map to 16 bits with its own range.
pub fn quantize16(values: &[f32]) -> (Vec<u16>, Range16) {
    let range = Range16::of(values);
    (values.iter().map(|&v| range.quantize(v)).collect(), range)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spectral::SPECTRAL_LUT;

    #[test]
    fn near_is_red_and_far_is_blue() {
        // 20 pixels from depth 1 (near) to 20 (far): the near end gets the first colour.
        let depth: Vec<f32> = (1..=20).map(|d| d as f32).collect();
        let rgb = colorize_depth(&depth);
        assert_eq!(&rgb[..3], &SPECTRAL_LUT[0]);
        assert_eq!(&rgb[rgb.len() - 3..], &SPECTRAL_LUT[255]);
    }

    #[test]
    fn few_valid_pixels_and_invalid_ones() {
        // <= 10 valid pixels: range 0±1e-6, so every positive inverse depth clips to 1 -> LUT[0];
        // depth 0 sits at the middle (x = 0.5 -> 1 - x = 0.5 -> LUT[128]); NaN is black.
        let rgb = colorize_depth(&[2.0, 0.0, f32::NAN]);
        assert_eq!(&rgb[0..3], &SPECTRAL_LUT[0]);
        assert_eq!(&rgb[3..6], &SPECTRAL_LUT[128]);
        assert_eq!(&rgb[6..9], &[0, 0, 0]);
    }

    #[test]
    fn quantization_round_trips() {
        let (q, r) = quantize16(&[2.0, 3.0, 4.0, f32::NAN]);
        assert_eq!(r, Range16 { min: 2.0, max: 4.0 });
        assert_eq!(q, vec![0, 32768, 65535, 0]);
        assert_eq!(r.dequantize(65535), 4.0);
        assert_eq!(quantize16(&[1.5, 1.5]).0, vec![0, 0]);
        assert_eq!(Range16::of(&[f32::NAN]), Range16 { min: 0.0, max: 0.0 });
    }

    #[test]
    fn side_by_side_interleaves_rows() {
        let l = [1, 1, 1, 2, 2, 2];
        let r = [3, 3, 3, 4, 4, 4];
        assert_eq!(
            side_by_side(&l, &r, 1, 2),
            vec![1, 1, 1, 3, 3, 3, 2, 2, 2, 4, 4, 4]
        );
    }
}
