//! `cv::resize` with `INTER_CUBIC` and `INTER_AREA`, bit for bit.
//!
//! Reproduces `cv2.resize` of `opencv-python` 4.11 (`imgproc/src/resize.cpp`, SSE baseline)
//! on 8- and 16-bit images with 1 to 4 interleaved channels. The paths and their arithmetic:
//!
//! - **Cubic, OpenCV's own code** (`resizeGeneric_` + `HResizeCubic`/`VResizeCubic`): source
//!   coordinate `(dx + 0.5) * scale - 0.5` in f64 rounded to f32, Keys kernel with
//!   `A = -0.75` in f32, border replicated. For u8 the weights are rounded to fixed point
//!   (×2048) and the horizontal pass sums in integers; the vertical pass is *not* uniform: whole
//!   blocks of 8 output samples go through the SIMD `VResizeCubicVec_32s8u` (f32, round half to
//!   even) and the row's last `width·channels mod 8` samples through the scalar `FixedPtCast`
//!   (`(v + 2^21) >> 22`). For u16 everything is f32 (SIMD blocks and scalar tail sum in
//!   different orders).
//! - **Cubic under IPP**: the x86-64 wheels hand `INTER_CUBIC` to Intel IPP when the image has
//!   1, 3 or 4 channels and a source of at least 4×4 pixels (measured). IPP is a float
//!   convolution; it is modelled in f64 (see [`OpenCvFlavor::Ipp`]).
//! - **Area, integer factors** (`resizeAreaFast_`): box mean; 2×2 with 1, 3 or 4 channels
//!   rounds `(sum + 2) >> 2`, other factors `round_half_even(sum · (1/area))` in f32.
//! - **Area, other factors** (`ResizeArea_Invoker`): per-axis area weights
//!   (`computeResizeAreaTab`), accumulated in f32, rounded half to even. IPP never takes
//!   `INTER_AREA`, so both flavours are the same.
//!
//! `INTER_AREA` with a destination larger than the source on a side is a bilinear variant in
//! OpenCV; the preprocessing never asks for it and it is refused ([`ResizeError::AreaUpscale`]).
//!
//! The module depends on nothing else in the crate and works on any target (no SIMD: the
//! SIMD arithmetic is replayed in scalar code).

use std::collections::VecDeque;
use std::fmt;

/// Interpolation methods (the subset of OpenCV's used by the DA3 preprocessing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interpolation {
    /// `cv::INTER_CUBIC`: bicubic (Keys, A = -0.75) with replicated borders.
    Cubic,
    /// `cv::INTER_AREA`: pixel-area averaging; downscaling (or equal size) only.
    Area,
}

/// Which build of OpenCV to reproduce; they differ only for `INTER_CUBIC`.
///
/// The reference runs `cv2` from the `opencv-python` wheels. On x86-64 (Linux, Windows,
/// Intel macOS) those use Intel IPP for cubic resizing; on ARM64 (Apple Silicon, aarch64
/// Linux) they do not, and neither does `cv2.ipp.setUseIPP(False)`. The two disagree by one
/// level on about 3 % of the samples of a cubic upscale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OpenCvFlavor {
    /// x86-64 wheels (IPP on). Cubic is modelled as an f64 convolution; IPP itself computes
    /// in floating point in an order that even differs between its SSE4.2, AVX2 and AVX-512
    /// kernels (they disagree with each other on ~5 samples per million), and the model
    /// differs from each by one level on 1 to 3 samples in 100,000 of an 8-bit cubic resize
    /// (values within ~1e-5 of a rounding tie). For 16-bit images IPP's own rounding shows
    /// more: ~0.3 %.
    #[default]
    Ipp,
    /// OpenCV's own code (ARM64 wheels, or IPP disabled): bit-exact.
    Plain,
}

/// Why a resize cannot be done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResizeError {
    /// A source or destination side is 0, or too large for OpenCV's `int` arithmetic.
    BadSize {
        /// Source `(width, height)`.
        src: (usize, usize),
        /// Destination `(width, height)`.
        dst: (usize, usize),
    },
    /// The channel count is not 1 to 4.
    Channels(usize),
    /// The pixel buffer does not hold `width * height * channels` samples.
    BadLength {
        /// Samples expected.
        expected: usize,
        /// Samples given.
        found: usize,
    },
    /// `Interpolation::Area` with a destination larger than the source on some side.
    AreaUpscale {
        /// Source `(width, height)`.
        src: (usize, usize),
        /// Destination `(width, height)`.
        dst: (usize, usize),
    },
}

impl fmt::Display for ResizeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadSize { src, dst } => write!(
                f,
                "cannot resize {}x{} to {}x{}: every side must be between 1 and {MAX_SIDE}",
                src.0, src.1, dst.0, dst.1
            ),
            Self::Channels(c) => write!(f, "cannot resize an image with {c} channels (1 to 4 supported)"),
            Self::BadLength { expected, found } => {
                write!(f, "pixel buffer holds {found} samples, expected {expected}")
            }
            Self::AreaUpscale { src, dst } => write!(
                f,
                "area interpolation from {}x{} to {}x{} would enlarge the image; use cubic",
                src.0, src.1, dst.0, dst.1
            ),
        }
    }
}

impl std::error::Error for ResizeError {}

/// The largest side accepted (OpenCV computes offsets as `int`).
pub const MAX_SIDE: usize = 1 << 24;

mod sealed {
    pub trait Sealed {}
    impl Sealed for u8 {}
    impl Sealed for u16 {}
}

/// A sample type resized here: `u8` (`CV_8U`) or `u16` (`CV_16U`).
pub trait Sample: Copy + Default + Send + Sync + sealed::Sealed + 'static {
    /// Whether OpenCV's own `INTER_CUBIC` uses its fixed-point path (only 8-bit does).
    const FIXED_POINT: bool;
    /// The sample as an integer.
    fn to_i32(self) -> i32;
    /// OpenCV's `saturate_cast<T>(int)`.
    fn saturate_i32(v: i32) -> Self;
    /// OpenCV's `saturate_cast<T>(float)`: round half to even, then clamp.
    fn saturate_f32(v: f32) -> Self {
        Self::saturate_i32(round_f32(v))
    }
}

impl Sample for u8 {
    const FIXED_POINT: bool = true;
    fn to_i32(self) -> i32 {
        self as i32
    }
    fn saturate_i32(v: i32) -> Self {
        v.clamp(0, u8::MAX as i32) as u8
    }
}

impl Sample for u16 {
    const FIXED_POINT: bool = false;
    fn to_i32(self) -> i32 {
        self as i32
    }
    fn saturate_i32(v: i32) -> Self {
        v.clamp(0, u16::MAX as i32) as u16
    }
}

/// `cvRound(float)`: round half to even (SSE `cvtss2si` in the default rounding mode).
fn round_f32(v: f32) -> i32 {
    let r = v.round_ties_even();
    if r.is_nan() || r < i32::MIN as f32 || r >= i32::MAX as f32 {
        i32::MIN // what cvtss2si returns for out-of-range values
    } else {
        r as i32
    }
}

/// An interleaved image: `height` rows of `width * channels` samples, no padding.
#[derive(Debug, Clone, Copy)]
pub struct Plane<'a, T> {
    /// The samples, row-major, channels interleaved.
    pub data: &'a [T],
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// Channels per pixel (1 to 4).
    pub channels: usize,
}

/// Resizes `src` to `dst_width × dst_height` exactly like
/// `cv2.resize(src, (dst_width, dst_height), interpolation=...)` of the given OpenCV flavour.
/// Returns the interleaved samples of the result (same channel count).
pub fn resize<T: Sample>(
    src: Plane<'_, T>,
    dst_width: usize,
    dst_height: usize,
    interpolation: Interpolation,
    flavor: OpenCvFlavor,
) -> Result<Vec<T>, ResizeError> {
    let Plane { data, width, height, channels } = src;
    let (s, d) = ((width, height), (dst_width, dst_height));
    if [width, height, dst_width, dst_height].iter().any(|&v| v == 0 || v > MAX_SIDE) {
        return Err(ResizeError::BadSize { src: s, dst: d });
    }
    if !(1..=4).contains(&channels) {
        return Err(ResizeError::Channels(channels));
    }
    let expected = width.checked_mul(height).and_then(|n| n.checked_mul(channels));
    if expected != Some(data.len()) {
        return Err(ResizeError::BadLength { expected: expected.unwrap_or(usize::MAX), found: data.len() });
    }
    if s == d {
        return Ok(data.to_vec());
    }
    let img = Src { data, width, height, cn: channels };
    // cv::resize: inv_scale = dsize / ssize; hal::resize: scale = 1 / inv_scale.
    let scale_x = 1.0 / (dst_width as f64 / width as f64);
    let scale_y = 1.0 / (dst_height as f64 / height as f64);
    match interpolation {
        Interpolation::Cubic => Ok(cubic(&img, dst_width, dst_height, scale_x, scale_y, flavor)),
        Interpolation::Area => {
            if !(scale_x >= 1.0 && scale_y >= 1.0) {
                return Err(ResizeError::AreaUpscale { src: s, dst: d });
            }
            // saturate_cast<int>(double) rounds half to even.
            let (ix, iy) = (scale_x.round_ties_even(), scale_y.round_ties_even());
            let integer = (scale_x - ix).abs() < f64::EPSILON && (scale_y - iy).abs() < f64::EPSILON;
            // An integer factor within EPSILON means the sides divide exactly.
            if integer && width == dst_width * ix as usize && height == dst_height * iy as usize {
                Ok(area_fast(&img, dst_width, dst_height, ix as usize, iy as usize))
            } else {
                Ok(area_generic(&img, dst_width, dst_height, scale_x, scale_y))
            }
        }
    }
}

/// A validated source image.
struct Src<'a, T> {
    data: &'a [T],
    width: usize,
    height: usize,
    cn: usize,
}

impl<T: Sample> Src<'_, T> {
    fn row(&self, y: usize) -> &[T] {
        let n = self.width * self.cn;
        &self.data[y * n..(y + 1) * n]
    }
}

// ---------------------------------------------------------------------------------------------
// INTER_CUBIC
// ---------------------------------------------------------------------------------------------

/// Whether IPP takes over `INTER_CUBIC`: 1, 3 or 4 channels and a source of at least 4×4
/// (measured with opencv-python 4.11; smaller sources and 2 channels fall back to OpenCV's code).
fn ipp_takes_cubic(img: &Src<'_, impl Sample>) -> bool {
    img.cn != 2 && img.width >= 4 && img.height >= 4
}

fn cubic<T: Sample>(
    img: &Src<'_, T>,
    dw: usize,
    dh: usize,
    scale_x: f64,
    scale_y: f64,
    flavor: OpenCvFlavor,
) -> Vec<T> {
    if flavor == OpenCvFlavor::Ipp && ipp_takes_cubic(img) {
        return cubic_ipp(img, dw, dh, scale_x, scale_y);
    }
    let xs = cubic_axis(dw, scale_x, |f: f32| {
        let s = f.floor();
        (s as i64, cubic_coeffs_f32(f - s))
    });
    let ys = cubic_axis(dh, scale_y, |f: f32| {
        let s = f.floor();
        (s as i64, cubic_coeffs_f32(f - s))
    });
    let taps = cubic_taps(&xs, img.width, img.cn);
    if T::FIXED_POINT {
        let alpha: Vec<[i32; 4]> = xs.iter().map(|&(_, w)| fixed_weights(w)).collect();
        let ys: Vec<(i64, [i32; 4])> = ys.iter().map(|&(s, w)| (s, fixed_weights(w))).collect();
        let hpass = |row: &[T]| hresize_fixed(row, img.cn, &taps, &alpha);
        vertical(img, &ys, dw * img.cn, hpass, vresize_fixed)
    } else {
        let alpha: Vec<[f32; 4]> = xs.iter().map(|&(_, w)| w).collect();
        let hpass = |row: &[T]| hresize_f32(row, img.cn, &taps, &alpha);
        vertical(img, &ys, dw * img.cn, hpass, vresize_f32)
    }
}

/// The IPP cubic (`ippiResizeCubic`, B = 0, C = 0.75): modelled as the exact separable
/// convolution in f64, rows first, rounded half to even. IPP computes in floating point in an
/// order that even differs between its SSE4.2, AVX2 and AVX-512 kernels; the model differs
/// from each by one level on values within ~1e-5 of a rounding tie (see [`OpenCvFlavor::Ipp`]).
fn cubic_ipp<T: Sample>(img: &Src<'_, T>, dw: usize, dh: usize, scale_x: f64, scale_y: f64) -> Vec<T> {
    let xs = cubic_axis_f64(dw, scale_x);
    let ys = cubic_axis_f64(dh, scale_y);
    let taps = cubic_taps(&xs, img.width, img.cn);
    let alpha: Vec<[f64; 4]> = xs.iter().map(|&(_, w)| w).collect();
    let hpass = |row: &[T]| {
        let mut out = Vec::with_capacity(taps.len() * img.cn);
        for (t, a) in taps.iter().zip(&alpha) {
            for c in 0..img.cn {
                let p = |j: usize| row[t[j] + c].to_i32() as f64 * a[j];
                out.push(p(0) + p(1) + p(2) + p(3));
            }
        }
        out
    };
    let vpass = |rows: [&[f64]; 4], b: [f64; 4], out: &mut [T]| {
        for (x, o) in out.iter_mut().enumerate() {
            let v = rows[0][x] * b[0] + rows[1][x] * b[1] + rows[2][x] * b[2] + rows[3][x] * b[3];
            *o = T::saturate_i32(v.round_ties_even().clamp(i32::MIN as f64, i32::MAX as f64) as i32);
        }
    };
    vertical(img, &ys, dw * img.cn, hpass, vpass)
}

/// OpenCV's `interpolateCubic` (f32, evaluated in the same order).
fn cubic_coeffs_f32(x: f32) -> [f32; 4] {
    const A: f32 = -0.75;
    let c0 = ((A * (x + 1.0) - 5.0 * A) * (x + 1.0) + 8.0 * A) * (x + 1.0) - 4.0 * A;
    let c1 = ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0;
    let c2 = ((A + 2.0) * (1.0 - x) - (A + 3.0)) * (1.0 - x) * (1.0 - x) + 1.0;
    let c3 = 1.0 - c0 - c1 - c2;
    [c0, c1, c2, c3]
}

/// The Keys kernel (A = -0.75) at the four taps of fraction `t`, in f64.
fn cubic_coeffs_f64(t: f64) -> [f64; 4] {
    const A: f64 = -0.75;
    let far = |x: f64| ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A;
    let near = |x: f64| ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0;
    [far(t + 1.0), near(t), near(1.0 - t), far(2.0 - t)]
}

/// Source index (`cvFloor`) and kernel weights of each destination coordinate, from the
/// source coordinate `(d + 0.5) * scale - 0.5` rounded to f32 as OpenCV does.
fn cubic_axis<C>(dst_len: usize, scale: f64, split: impl Fn(f32) -> (i64, C)) -> Vec<(i64, C)> {
    (0..dst_len).map(|d| split(((d as f64 + 0.5) * scale - 0.5) as f32)).collect()
}

/// Like [`cubic_axis`] with the coordinate and the weights in f64 (the IPP model).
fn cubic_axis_f64(dst_len: usize, scale: f64) -> Vec<(i64, [f64; 4])> {
    (0..dst_len)
        .map(|d| {
            let f = (d as f64 + 0.5) * scale - 0.5;
            let s = f.floor();
            (s as i64, cubic_coeffs_f64(f - s))
        })
        .collect()
}

/// `saturate_cast<short>(w * INTER_RESIZE_COEF_SCALE)`.
fn fixed_weights(w: [f32; 4]) -> [i32; 4] {
    w.map(|c| round_f32(c * 2048.0).clamp(i16::MIN as i32, i16::MAX as i32))
}

/// Per destination pixel: the four source pixel indices (replicated border) times `cn`.
fn cubic_taps<C>(axis: &[(i64, C)], src_len: usize, cn: usize) -> Vec<[usize; 4]> {
    let last = src_len as i64 - 1;
    axis.iter().map(|&(s, _)| std::array::from_fn(|j| (s - 1 + j as i64).clamp(0, last) as usize * cn)).collect()
}

/// `HResizeCubic<uchar, int, short>`: integer sums of fixed-point weights.
fn hresize_fixed<T: Sample>(row: &[T], cn: usize, taps: &[[usize; 4]], alpha: &[[i32; 4]]) -> Vec<i32> {
    let mut out = Vec::with_capacity(taps.len() * cn);
    for (t, a) in taps.iter().zip(alpha) {
        for c in 0..cn {
            out.push((0..4).map(|j| row[t[j] + c].to_i32() * a[j]).sum());
        }
    }
    out
}

/// `HResizeCubic<ushort, float, float>`: f32, summed left to right.
fn hresize_f32<T: Sample>(row: &[T], cn: usize, taps: &[[usize; 4]], alpha: &[[f32; 4]]) -> Vec<f32> {
    let mut out = Vec::with_capacity(taps.len() * cn);
    for (t, a) in taps.iter().zip(alpha) {
        for c in 0..cn {
            let p = |j: usize| row[t[j] + c].to_i32() as f32 * a[j];
            out.push(p(0) + p(1) + p(2) + p(3));
        }
    }
    out
}

/// Lanes of OpenCV's 128-bit `v_int16`/`v_uint16`: the SIMD vertical pass handles
/// `width / 8` whole blocks, the scalar code the rest of the row.
const SIMD_BLOCK: usize = 8;

/// `VResizeCubic<uchar, int, short, FixedPtCast<int, uchar, 22>, VResizeCubicVec_32s8u>`.
fn vresize_fixed<T: Sample>(rows: [&[i32]; 4], beta: [i32; 4], out: &mut [T]) {
    let width = out.len();
    let simd_end = width - width % SIMD_BLOCK;
    // SIMD: f32 weights beta / 2^22, S0*b0 + (S1*b1 + (S2*b2 + S3*b3)), cvRound, saturate.
    let b = beta.map(|v| v as f32 * (1.0 / (2048.0 * 2048.0)));
    for (x, o) in out[..simd_end].iter_mut().enumerate() {
        let s = |k: usize| rows[k][x] as f32 * b[k];
        *o = T::saturate_f32(s(0) + (s(1) + (s(2) + s(3))));
    }
    // Scalar tail: (sum + 2^21) >> 22.
    for (x, o) in out.iter_mut().enumerate().skip(simd_end) {
        let sum: i32 = (0..4).map(|k| rows[k][x].wrapping_mul(beta[k])).fold(0i32, i32::wrapping_add);
        *o = T::saturate_i32(sum.wrapping_add(1 << 21) >> 22);
    }
}

/// `VResizeCubic<ushort, float, float, Cast<float, ushort>, VResizeCubicVec_32f16u>`.
fn vresize_f32<T: Sample>(rows: [&[f32]; 4], b: [f32; 4], out: &mut [T]) {
    let width = out.len();
    let simd_end = width - width % SIMD_BLOCK;
    for (x, o) in out.iter_mut().enumerate() {
        let s = |k: usize| rows[k][x] * b[k];
        let v = if x < simd_end { s(0) + (s(1) + (s(2) + s(3))) } else { s(0) + s(1) + s(2) + s(3) };
        *o = T::saturate_f32(v);
    }
}

/// The vertical half of `resizeGeneric_`: horizontal rows are computed once per source row
/// (a sliding window, rows clipped to the image), then combined four at a time.
fn vertical<T: Sample, W, C: Copy>(
    img: &Src<'_, T>,
    ys: &[(i64, C)],
    row_len: usize,
    hpass: impl Fn(&[T]) -> Vec<W>,
    vpass: impl Fn([&[W]; 4], C, &mut [T]),
) -> Vec<T> {
    let last = img.height as i64 - 1;
    let mut out = vec![T::default(); row_len * ys.len()];
    // The first source row held and the horizontal results of consecutive rows from it.
    let mut start = 0usize;
    let mut rows: VecDeque<Vec<W>> = VecDeque::new();
    for (&(sy, beta), dst) in ys.iter().zip(out.chunks_exact_mut(row_len)) {
        let lo = (sy - 1).clamp(0, last) as usize;
        let hi = (sy + 2).clamp(0, last) as usize;
        if rows.is_empty() || lo >= start + rows.len() {
            rows.clear();
            start = lo;
        }
        while start < lo {
            rows.pop_front();
            start += 1;
        }
        while start + rows.len() <= hi {
            rows.push_back(hpass(img.row(start + rows.len())));
        }
        let pick = |k: i64| rows[(sy - 1 + k).clamp(0, last) as usize - start].as_slice();
        vpass([pick(0), pick(1), pick(2), pick(3)], beta, dst);
    }
    out
}

// ---------------------------------------------------------------------------------------------
// INTER_AREA
// ---------------------------------------------------------------------------------------------

/// `resizeAreaFast_`: both scale factors are integers.
fn area_fast<T: Sample>(img: &Src<'_, T>, dw: usize, dh: usize, sx: usize, sy: usize) -> Vec<T> {
    let cn = img.cn;
    let mut out = vec![T::default(); dw * dh * cn];
    let area = sx * sy;
    let scale = 1.0f32 / area as f32;
    // ResizeAreaFastVec's fast mode: 2x2 with 1, 3 or 4 channels rounds (sum + 2) >> 2.
    let two_by_two = sx == 2 && sy == 2 && cn != 2;
    // Offsets of the block's samples, in OpenCV's order (row by row).
    let ofs: Vec<(usize, usize)> = (0..sy).flat_map(|r| (0..sx).map(move |c| (r, c * cn))).collect();
    for (dy, dst) in out.chunks_exact_mut(dw * cn).enumerate() {
        let rows: Vec<&[T]> = (0..sy).map(|r| img.row(dy * sy + r)).collect();
        for (e, o) in dst.iter_mut().enumerate() {
            let base = (e / cn) * sx * cn + e % cn;
            let at = |k: usize| rows[ofs[k].0][base + ofs[k].1].to_i32();
            *o = if two_by_two {
                T::saturate_i32((at(0) + at(1) + at(2) + at(3) + 2) >> 2)
            } else if T::FIXED_POINT {
                // WT = int.
                let sum: i32 = (0..area).map(at).sum();
                T::saturate_f32(sum as f32 * scale)
            } else {
                // WT = float, the loop unrolled by 4 (groups summed as int).
                let mut sum = 0f32;
                let mut k = 0;
                while k + 4 <= area {
                    sum += (at(k) + at(k + 1) + at(k + 2) + at(k + 3)) as f32;
                    k += 4;
                }
                while k < area {
                    sum += at(k) as f32;
                    k += 1;
                }
                T::saturate_f32(sum * scale)
            };
        }
    }
    out
}

/// One entry of `computeResizeAreaTab`: destination index, source index, weight.
#[derive(Debug, Clone, Copy)]
struct Decimate {
    di: usize,
    si: usize,
    alpha: f32,
}

/// OpenCV's `computeResizeAreaTab` (indices in pixels, not multiplied by `cn`).
fn area_tab(ssize: usize, dsize: usize, scale: f64) -> Vec<Decimate> {
    let mut tab = Vec::with_capacity(ssize * 2);
    for dx in 0..dsize {
        let fsx1 = dx as f64 * scale;
        let fsx2 = fsx1 + scale;
        let cell_width = scale.min(ssize as f64 - fsx1);
        let mut sx1 = fsx1.ceil() as i64;
        let sx2 = (fsx2.floor() as i64).min(ssize as i64 - 1);
        sx1 = sx1.min(sx2);
        if sx1 as f64 - fsx1 > 1e-3 {
            tab.push(Decimate { di: dx, si: (sx1 - 1) as usize, alpha: ((sx1 as f64 - fsx1) / cell_width) as f32 });
        }
        for sx in sx1..sx2 {
            tab.push(Decimate { di: dx, si: sx as usize, alpha: (1.0 / cell_width) as f32 });
        }
        if fsx2 - sx2 as f64 > 1e-3 {
            let w = (fsx2 - sx2 as f64).min(1.0).min(cell_width);
            tab.push(Decimate { di: dx, si: sx2 as usize, alpha: (w / cell_width) as f32 });
        }
    }
    tab
}

/// `ResizeArea_Invoker<T, float>`: non-integer downscaling.
fn area_generic<T: Sample>(img: &Src<'_, T>, dw: usize, dh: usize, scale_x: f64, scale_y: f64) -> Vec<T> {
    let cn = img.cn;
    let xtab = area_tab(img.width, dw, scale_x);
    let ytab = area_tab(img.height, dh, scale_y);
    let width = dw * cn;
    let mut out = vec![T::default(); width * dh];
    let mut buf = vec![0f32; width];
    let mut sum = vec![0f32; width];
    let mut j = 0;
    for (dy, dst) in out.chunks_exact_mut(width).enumerate() {
        let mut first = true;
        while j < ytab.len() && ytab[j].di == dy {
            let Decimate { si, alpha: beta, .. } = ytab[j];
            let row = img.row(si);
            buf.fill(0.0);
            for t in &xtab {
                for c in 0..cn {
                    buf[t.di * cn + c] += row[t.si * cn + c].to_i32() as f32 * t.alpha;
                }
            }
            for (s, &b) in sum.iter_mut().zip(&buf) {
                *s = if first { beta * b } else { *s + beta * b };
            }
            first = false;
            j += 1;
        }
        for (o, &s) in dst.iter_mut().zip(&sum) {
            *o = T::saturate_f32(s);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cubic_weights_at_zero_are_identity() {
        assert_eq!(cubic_coeffs_f32(0.0), [0.0, 1.0, 0.0, 0.0]);
    }

    #[test]
    fn same_size_is_a_copy() {
        let src: Vec<u8> = (0..30).collect();
        let plane = Plane { data: &src, width: 5, height: 2, channels: 3 };
        assert_eq!(resize(plane, 5, 2, Interpolation::Cubic, OpenCvFlavor::Ipp).unwrap(), src);
    }

    #[test]
    fn constant_images_stay_constant() {
        let src = vec![77u8; 13 * 7 * 3];
        let plane = Plane { data: &src, width: 13, height: 7, channels: 3 };
        for flavor in [OpenCvFlavor::Ipp, OpenCvFlavor::Plain] {
            for (w, h, m) in [(26, 14, Interpolation::Cubic), (5, 3, Interpolation::Area), (6, 7, Interpolation::Area)]
            {
                assert!(resize(plane, w, h, m, flavor).unwrap().iter().all(|&v| v == 77));
            }
        }
    }

    #[test]
    fn bad_inputs_are_errors() {
        let src = vec![0u8; 12];
        let p = |width, height, channels| Plane { data: &src, width, height, channels };
        let run = |p, w, h, m| resize(p, w, h, m, OpenCvFlavor::Ipp);
        assert!(matches!(run(p(2, 2, 3), 0, 2, Interpolation::Cubic), Err(ResizeError::BadSize { .. })));
        assert!(matches!(run(p(2, 2, 3), 4, 4, Interpolation::Area), Err(ResizeError::AreaUpscale { .. })));
        assert!(matches!(run(p(2, 3, 3), 1, 1, Interpolation::Area), Err(ResizeError::BadLength { .. })));
        assert!(matches!(run(p(1, 2, 6), 1, 1, Interpolation::Area), Err(ResizeError::Channels(6))));
    }
}
