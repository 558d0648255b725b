//! Input pixels to 8-bit RGB the way the reference's `PIL.Image.open(path).convert("RGB")`
//! does it (Pillow 13, checked with PNG files of every layout):
//!
//! | input                     | Pillow opens as | `convert("RGB")`                       |
//! |---------------------------|-----------------|----------------------------------------|
//! | RGB 8-bit                 | `RGB`           | unchanged                              |
//! | RGBA 8-bit                | `RGBA`          | alpha dropped (no blending)            |
//! | gray 8-bit                | `L`             | replicated to R, G, B                  |
//! | gray + alpha 8-bit        | `LA`            | gray replicated, alpha dropped         |
//! | gray 16-bit               | `I;16`          | **clipped**: `min(v, 255)`, replicated |
//! | gray + alpha 16-bit       | `LA` (decoder)  | high byte `v >> 8`, alpha dropped      |
//! | RGB 16-bit                | `RGB` (decoder) | high byte `v >> 8`                     |
//! | RGBA 16-bit               | `RGBA` (decoder)| high byte `v >> 8`, alpha dropped      |
//!
//! The 16-bit gray case is Pillow's `I;16 → L` conversion, which saturates instead of
//! scaling: a typical 16-bit depth or thermal PNG becomes almost entirely white. Multi-channel
//! 16-bit PNGs are reduced to 8 bits by Pillow's PNG decoder itself (it keeps the most
//! significant byte). 16-bit samples are given here as numbers (not big-endian bytes).

use std::borrow::Cow;

/// The pixels of an input image, interleaved and row-major, by layout.
#[derive(Debug, Clone, Copy)]
pub enum Pixels<'a> {
    /// 8-bit gray, 1 sample per pixel.
    Gray8(&'a [u8]),
    /// 8-bit gray and alpha, 2 samples per pixel.
    GrayAlpha8(&'a [u8]),
    /// 8-bit RGB, 3 samples per pixel.
    Rgb8(&'a [u8]),
    /// 8-bit RGBA, 4 samples per pixel.
    Rgba8(&'a [u8]),
    /// 16-bit gray, 1 sample per pixel.
    Gray16(&'a [u16]),
    /// 16-bit gray and alpha, 2 samples per pixel.
    GrayAlpha16(&'a [u16]),
    /// 16-bit RGB, 3 samples per pixel.
    Rgb16(&'a [u16]),
    /// 16-bit RGBA, 4 samples per pixel.
    Rgba16(&'a [u16]),
}

impl Pixels<'_> {
    /// Samples per pixel.
    pub fn channels(&self) -> usize {
        match self {
            Self::Gray8(_) | Self::Gray16(_) => 1,
            Self::GrayAlpha8(_) | Self::GrayAlpha16(_) => 2,
            Self::Rgb8(_) | Self::Rgb16(_) => 3,
            Self::Rgba8(_) | Self::Rgba16(_) => 4,
        }
    }

    /// Number of samples held.
    pub fn len(&self) -> usize {
        match self {
            Self::Gray8(p) | Self::GrayAlpha8(p) | Self::Rgb8(p) | Self::Rgba8(p) => p.len(),
            Self::Gray16(p) | Self::GrayAlpha16(p) | Self::Rgb16(p) | Self::Rgba16(p) => p.len(),
        }
    }

    /// Whether no samples are held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The layout's name, for messages.
    pub fn format_name(&self) -> &'static str {
        match self {
            Self::Gray8(_) => "gray8",
            Self::GrayAlpha8(_) => "gray-alpha8",
            Self::Rgb8(_) => "rgb8",
            Self::Rgba8(_) => "rgba8",
            Self::Gray16(_) => "gray16",
            Self::GrayAlpha16(_) => "gray-alpha16",
            Self::Rgb16(_) => "rgb16",
            Self::Rgba16(_) => "rgba16",
        }
    }
}

/// Interleaved RGB8 per Pillow's `convert("RGB")` (see the module docs); borrows RGB8 input.
/// The caller has checked the length.
pub(crate) fn to_rgb8<'a>(pixels: &Pixels<'a>) -> Cow<'a, [u8]> {
    fn gray(samples: impl Iterator<Item = u8>) -> Cow<'static, [u8]> {
        Cow::Owned(samples.flat_map(|v| [v, v, v]).collect())
    }
    fn rgb<T: Copy>(p: &[T], cn: usize, f: impl Fn(T) -> u8) -> Cow<'static, [u8]> {
        Cow::Owned(p.chunks_exact(cn).flat_map(|px| [f(px[0]), f(px[1]), f(px[2])]).collect())
    }
    let high = |v: u16| (v >> 8) as u8;
    match *pixels {
        Pixels::Rgb8(p) => Cow::Borrowed(p),
        Pixels::Rgba8(p) => rgb(p, 4, |v| v),
        Pixels::Gray8(p) => gray(p.iter().copied()),
        Pixels::GrayAlpha8(p) => gray(p.iter().step_by(2).copied()),
        Pixels::Gray16(p) => gray(p.iter().map(|&v| v.min(255) as u8)),
        Pixels::GrayAlpha16(p) => gray(p.iter().step_by(2).map(|&v| high(v))),
        Pixels::Rgb16(p) => rgb(p, 3, high),
        Pixels::Rgba16(p) => rgb(p, 4, high),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_follow_pillow() {
        assert_eq!(&*to_rgb8(&Pixels::Rgba8(&[1, 2, 3, 4, 5, 6, 7, 8])), &[1, 2, 3, 5, 6, 7]);
        assert_eq!(&*to_rgb8(&Pixels::Gray8(&[9, 200])), &[9, 9, 9, 200, 200, 200]);
        assert_eq!(&*to_rgb8(&Pixels::GrayAlpha8(&[9, 0])), &[9, 9, 9]);
        assert_eq!(
            &*to_rgb8(&Pixels::Gray16(&[254, 255, 256, 65535])),
            &[254, 254, 254, 255, 255, 255, 255, 255, 255, 255, 255, 255]
        );
        assert_eq!(&*to_rgb8(&Pixels::GrayAlpha16(&[0x1234, 7])), &[0x12, 0x12, 0x12]);
        assert_eq!(&*to_rgb8(&Pixels::Rgb16(&[0x00ff, 0x0100, 0xffff])), &[0, 1, 255]);
        assert_eq!(&*to_rgb8(&Pixels::Rgba16(&[0x00ff, 0x0100, 0xffff, 0])), &[0, 1, 255]);
    }
}
