//! 16-bit grayscale PNGs of depth maps.
//!
//! Mapping (per view): with `min` and `max` the smallest and largest finite depth of the view,
//! a depth `d` is stored as `round((d - min) / (max - min) * 65535)`, so `min` → 0 and
//! `max` → 65535. The inverse is `d = min + v / 65535 * (max - min)` (exact to within
//! `(max - min) / 131070`). Non-finite depths are stored as 0; a constant view (`max == min`)
//! is all 0. The CLI writes each view's `min`/`max` to `depth_png_ranges.json`.

use std::io::Write;

use image::codecs::png::PngEncoder;
use image::{ImageBuffer, Luma};

/// Largest value of a 16-bit sample.
pub const U16_MAX: f32 = 65535.0;

/// The depth range of one view that the 16-bit values are relative to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DepthRange {
    /// Depth stored as 0.
    pub min: f32,
    /// Depth stored as 65535.
    pub max: f32,
}

impl DepthRange {
    /// The smallest and largest finite value of `depth` (`0, 0` when none is finite).
    pub fn of(depth: &[f32]) -> Self {
        let mut range: Option<(f32, f32)> = None;
        for &d in depth.iter().filter(|d| d.is_finite()) {
            range = Some(match range {
                None => (d, d),
                Some((lo, hi)) => (lo.min(d), hi.max(d)),
            });
        }
        let (min, max) = range.unwrap_or((0.0, 0.0));
        Self { min, max }
    }

    /// The 16-bit value of depth `d`: `round((d - min) / (max - min) * 65535)`, clamped.
    pub fn quantize(&self, d: f32) -> u16 {
        let span = f64::from(self.max) - f64::from(self.min);
        if !d.is_finite() || span <= 0.0 || !span.is_finite() {
            return 0;
        }
        let t = (f64::from(d) - f64::from(self.min)) / span;
        (t * f64::from(U16_MAX)).round().clamp(0.0, f64::from(U16_MAX)) as u16
    }

    /// The depth a 16-bit value stands for: `min + v / 65535 * (max - min)`.
    pub fn dequantize(&self, v: u16) -> f32 {
        let span = f64::from(self.max) - f64::from(self.min);
        (f64::from(self.min) + f64::from(v) / f64::from(U16_MAX) * span) as f32
    }
}

/// Maps one view's depth to 16-bit values with its own min/max (see the module docs).
pub fn quantize_depth(depth: &[f32]) -> (Vec<u16>, DepthRange) {
    let range = DepthRange::of(depth);
    (depth.iter().map(|&d| range.quantize(d)).collect(), range)
}

/// Encodes `values` (`height` rows of `width`, row-major) as a 16-bit grayscale PNG.
pub fn write_png16<W: Write>(w: W, width: u32, height: u32, values: &[u16]) -> image::ImageResult<()> {
    let expected = width as usize * height as usize;
    let buffer: ImageBuffer<Luma<u16>, &[u16]> = ImageBuffer::from_raw(width, height, values).ok_or_else(|| {
        image::ImageError::Parameter(image::error::ParameterError::from_kind(
            image::error::ParameterErrorKind::Generic(format!(
                "{} values for a {width}x{height} image (expected {expected})",
                values.len()
            )),
        ))
    })?;
    buffer.write_with_encoder(PngEncoder::new(w))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_and_max_map_to_the_ends() {
        let (v, r) = quantize_depth(&[2.0, 3.0, 4.0, 2.5]);
        assert_eq!(r, DepthRange { min: 2.0, max: 4.0 });
        assert_eq!(v, vec![0, 32768, 65535, 16384]); // 32767.5 and 16383.75 round up
    }

    #[test]
    fn constant_and_non_finite_views() {
        let (v, r) = quantize_depth(&[1.5, 1.5]);
        assert_eq!((v, r), (vec![0, 0], DepthRange { min: 1.5, max: 1.5 }));
        let (v, r) = quantize_depth(&[f32::NAN, 1.0, f32::INFINITY, 3.0]);
        assert_eq!(r, DepthRange { min: 1.0, max: 3.0 });
        assert_eq!(v, vec![0, 0, 0, 65535]);
        let (v, r) = quantize_depth(&[f32::NAN]);
        assert_eq!((v, r), (vec![0], DepthRange { min: 0.0, max: 0.0 }));
    }

    #[test]
    fn dequantize_inverts_within_half_a_step() {
        let depth: Vec<f32> = (0..1000).map(|i| 0.3 + (i as f32 * 0.731).sin().abs() * 7.0).collect();
        let (v, r) = quantize_depth(&depth);
        let step = (r.max - r.min) / 65535.0;
        for (&d, &q) in depth.iter().zip(&v) {
            assert!((r.dequantize(q) - d).abs() <= 0.5 * step + 1e-6, "{d} -> {q}");
        }
    }

    #[test]
    fn wrong_buffer_size_is_an_error() {
        assert!(write_png16(Vec::new(), 3, 2, &[0; 5]).is_err());
    }
}
