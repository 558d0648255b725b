//! "Same" convolutions (odd k×k kernel, stride 1, padding k/2) on Burn's flex backend: the DPT
//! heads' convolutions, most of their CPU time. 3×3 kernels run Winograd F(4×4, 3×3)
//! (`winograd.rs`, 4× fewer multiply-adds; 1.7× faster than the shifted products below at the
//! heads' shapes, `benches/conv_compare.py`), 1×1 kernels one GEMM per image, other odd sizes
//! k² shifted matrix products.
//!
//! burn-flex lowers every convolution to im2col (a k²-times copy of the input, zero-filled)
//! plus GEMM. The shifted products instead zero-pad the input once ([C_in, H + 2p, W + 2p]);
//! output rows are then computed on the padded width ("wide" rows: W + 2p columns, the last 2p
//! discarded), because on that grid every kernel tap (kh, kw) reads the padded input at one
//! constant offset, `kh·(W + 2p) + kw`. So the output is, per tap, one product
//! `out[C_out, cols] += w[:, :, kh, kw] · padded[C_in, cols + offset]`, run with the `gemm`
//! crate on column tiles (in parallel with rayon, each tile's accumulator in cache), and the
//! bias is added while the wide rows are compacted. Summation order differs from im2col's only
//! in rounding (taps are summed one after another).

use burn::tensor::{DType, TensorData};
use burn_flex::FlexTensor;
use rayon::prelude::*;

use super::flex::{gemm_serial, values, SharedOut, Strided};
use super::linear::{parallel_gemm, Bias};
use super::winograd::{conv3x3, transform_filters, FilterCache};

/// f32 accumulator elements per column tile (C_out × tile columns): 256 KiB, within L2.
const TILE_ELEMENTS: usize = 64 * 1024;

/// x [N, C_in, H, W] ⊛ w [C_out, C_in, k, k] (+ bias [C_out]) with stride 1 and padding
/// `padding` = (k − 1)/2 -> contiguous [N, C_out, H, W] (1×1 kernels: one GEMM per image).
/// `None` where this kernel does not apply: other dtypes, even kernels, other paddings,
/// mismatched shapes.
pub(crate) fn conv2d_same(
    x: &FlexTensor,
    w: &FlexTensor,
    bias: Option<&FlexTensor>,
    padding: usize,
    filters: Option<&FilterCache>,
    relu_input: bool,
) -> Option<FlexTensor> {
    let (xd, wd) = (x.layout().shape(), w.layout().shape());
    if xd.num_dims() != 4 || wd.num_dims() != 4 {
        return None;
    }
    let [n, c_in, h, wid] = [xd[0], xd[1], xd[2], xd[3]];
    let [c_out, w_in, k, k2] = [wd[0], wd[1], wd[2], wd[3]];
    if w_in != c_in || k != k2 || k % 2 == 0 || padding != k / 2 || n * c_in * c_out * h * wid == 0 {
        return None;
    }
    if relu_input && k != 3 {
        return None; // only the Winograd path reads its input through a ReLU
    }
    let weights = values(w)?;
    let bias = match bias {
        Some(b) => Some(values(b)?.get(..c_out)?).filter(|b| b.len() == c_out),
        None => None,
    };
    // The input is read through its strides (the heads' reassembled token maps are permuted
    // views): burn-flex's `to_contiguous` would copy it on the calling thread first.
    let contiguous;
    let mut input = StridedInput::of(x)?;
    if k == 1 && input.strides[2] != wid * input.strides[3] {
        // A 1×1 product needs the H·W plane as one strided axis; copy where it is not.
        contiguous = x.to_contiguous();
        input = StridedInput::of(&contiguous)?;
    }
    if k == 1 {
        return Some(pointwise(&input, weights, bias, [n, c_in, h, wid], c_out));
    }
    let out = if k == 3 {
        let u = match filters {
            Some(cache) => cache.get(w, weights, c_out, c_in),
            None => std::sync::Arc::new(transform_filters(weights, c_out, c_in)),
        };
        conv3x3(&input, &u, bias, [n, c_in, h, wid], c_out, relu_input)
    } else {
        shifted_gemm(&input, weights, bias, [n, c_in, h, wid], c_out, k)
    };
    Some(FlexTensor::from_data(TensorData::new(out, [n, c_out, h, wid])))
}

/// A k×k "same" convolution as k² shifted matrix products (see the module doc).
pub(super) fn shifted_gemm(input: &StridedInput, weights: &[f32], bias: Option<&[f32]>, [n, c_in, h, wid]: [usize; 4], c_out: usize, k: usize) -> Vec<f32> {
    let padding = k / 2;

    let (hp, wp) = (h + 2 * padding, wid + 2 * padding);
    let plane = hp * wp;
    let cols = h * wp; // wide output columns per image
    let tile = (TILE_ELEMENTS / c_out).clamp(256, 4096);
    // The three buffers are written in full by parallel tasks, never zero-filled first: a
    // zero-fill is one serial memset, which was 15 % of the main thread's time in a da3-small
    // pass while the pool waited.
    let mut out = Vec::with_capacity(n * c_out * h * wid); // [N, C_out, H, W]
    // Padded input (+ k spare zeros: a garbage column of the last row reads past the plane).
    let mut padded = Vec::with_capacity(c_in * plane + k);
    let mut wide = Vec::with_capacity(c_out * cols); // [C_out, H·(W + 2p)]
    let (out_ptr, padded_ptr, wide_ptr) = (SharedOut::spare(&mut out), SharedOut::spare(&mut padded), SharedOut::spare(&mut wide));
    for b in 0..n {
        let input = &input;
        (0..c_in).into_par_iter().for_each(|c| {
            // SAFETY: task c writes exactly plane c (hp rows of wp) of `padded`'s capacity.
            unsafe { pad_plane(padded_ptr.get().add(c * plane), input, b, c, h, wid, padding, hp, wp) };
        });
        // SAFETY: the k spare elements after the planes, within the capacity; then every
        // element has been written.
        unsafe {
            std::ptr::write_bytes(padded_ptr.get().add(c_in * plane), 0, k);
            padded.set_len(c_in * plane + k);
        }
        let padded_in = &padded[..];
        (0..cols.div_ceil(tile)).into_par_iter().for_each(|t| {
            let j0 = t * tile;
            let width = tile.min(cols - j0);
            for kh in 0..k {
                for kw in 0..k {
                    let first = kh == 0 && kw == 0;
                    // SAFETY: columns j0..j0+width of `wide` belong to this task (the first tap
                    // writes them without reading: `accumulate = false`); the lhs walks
                    // `weights` ([C_out, C_in, k, k]) at tap (kh, kw) and the rhs walks `padded`
                    // at offset kh·wp + kw + j0, at most c_in·plane + k − 2 < its length.
                    let tap = Strided { ptr: unsafe { weights.as_ptr().add(kh * k + kw) }, row: (c_in * k * k) as isize, col: (k * k) as isize };
                    let shifted = Strided { ptr: unsafe { padded_in.as_ptr().add(kh * wp + kw + j0) }, row: plane as isize, col: 1 };
                    unsafe { gemm_serial(c_out, width, c_in, wide_ptr.get().add(j0), cols as isize, !first, tap, shifted, 1.0) };
                }
            }
        });
        // SAFETY: the tiles above wrote all c_out·cols elements.
        unsafe { wide.set_len(c_out * cols) };
        let wide_in = &wide[..];
        // Compact the wide rows and add the bias: [C_out, H, W + 2p] -> [C_out, H, W].
        (0..c_out).into_par_iter().for_each(|co| {
            let add = bias.map_or(0.0, |b| b[co]);
            let src = &wide_in[co * cols..][..cols];
            // SAFETY: task co writes exactly the h·wid elements of channel co of image b.
            let dst = unsafe { out_ptr.get().add((b * c_out + co) * h * wid) };
            for (y, srow) in src.chunks_exact(wp).enumerate() {
                let drow = unsafe { dst.add(y * wid) };
                for (x, s) in srow[..wid].iter().enumerate() {
                    unsafe { drow.add(x).write(*s + add) };
                }
            }
        });
        // Next image: the buffers are rewritten in full; forget their contents' length.
        unsafe {
            padded.set_len(0);
            wide.set_len(0);
        }
    }
    // SAFETY: every image's channels were written above.
    unsafe { out.set_len(n * c_out * h * wid) };
    out
}

/// A contiguous [N, C_in, H, W] input as a [`StridedInput`] (for `kernels::CpuConv3x3`).
pub(super) fn contiguous_input(x: &[f32], [_, c_in, h, w]: [usize; 4]) -> StridedInput<'_> {
    StridedInput { data: x, offset: 0, strides: [c_in * h * w, h * w, w, 1] }
}

/// A 4-D f32 input read through its strides (non-negative, in elements).
pub(super) struct StridedInput<'a> {
    pub(super) data: &'a [f32],
    offset: usize,
    pub(super) strides: [usize; 4],
}

impl<'a> StridedInput<'a> {
    /// `x` if it is f32 with non-negative strides.
    pub(super) fn of(x: &'a FlexTensor) -> Option<Self> {
        let layout = x.layout();
        let s = layout.strides();
        if x.dtype() != DType::F32 || s.len() != 4 || s.iter().any(|v| *v < 0) {
            return None;
        }
        Some(Self { data: x.storage::<f32>(), offset: layout.start_offset(), strides: [s[0], s[1], s[2], s[3]].map(|v| v as usize) })
    }

    /// Offset of element [b, c, y, 0].
    pub(super) fn row(&self, b: usize, c: usize, y: usize) -> usize {
        self.offset + b * self.strides[0] + c * self.strides[1] + y * self.strides[2]
    }
}

// SAFETY: a `StridedInput` only reads.
unsafe impl Sync for StridedInput<'_> {}

/// A 1×1 convolution: per image one product `w [C_out, C_in] · x [C_in, H·W]` (+ bias per
/// output channel), through [`parallel_gemm`] (burn-flex runs these as a serial im2col copy
/// plus GEMM). The H·W plane of `input` must be one strided axis (stride of H = W · stride of W).
fn pointwise(input: &StridedInput, weights: &[f32], bias: Option<&[f32]>, [n, c_in, h, w]: [usize; 4], c_out: usize) -> FlexTensor {
    let plane = h * w;
    let mut out = Vec::with_capacity(n * c_out * plane); // [N, C_out, H, W]
    let lhs = Strided { ptr: weights.as_ptr(), row: c_in as isize, col: 1 };
    for b in 0..n {
        let rhs = Strided { ptr: input.data[input.row(b, 0, 0)..].as_ptr(), row: input.strides[1] as isize, col: input.strides[3] as isize };
        // SAFETY: weights hold c_out·c_in values; the input's strides address c_in × plane
        // elements of image b within its storage; bias has c_out.
        unsafe { parallel_gemm(&mut out, c_out, c_in, plane, lhs, rhs, bias.map_or(Bias::None, Bias::PerRow)) };
    }
    FlexTensor::from_data(TensorData::new(out, [n, c_out, h, w]))
}

/// Writes one zero-padded plane ([hp, wp], the input at (p, p), zeros around it; hp ≥ h + p,
/// wp ≥ w + p) of channel `c` of image `b` of `input` ([h, w]) at `dst`.
///
/// # Safety
/// `dst` must be valid for hp·wp writes not made by anyone else meanwhile.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn pad_plane(dst: *mut f32, input: &StridedInput, b: usize, c: usize, h: usize, w: usize, p: usize, hp: usize, wp: usize) {
    debug_assert!(hp >= h + p && wp >= w + p);
    let sw = input.strides[3];
    std::ptr::write_bytes(dst, 0, p * wp); // top rows
    for y in 0..h {
        let at = dst.add((y + p) * wp);
        let src = &input.data[input.row(b, c, y)..];
        std::ptr::write_bytes(at, 0, p);
        if sw == 1 {
            std::ptr::copy_nonoverlapping(src.as_ptr(), at.add(p), w);
        } else {
            for x in 0..w {
                at.add(p + x).write(src[x * sw]);
            }
        }
        std::ptr::write_bytes(at.add(p + w), 0, wp - p - w);
    }
    std::ptr::write_bytes(dst.add((h + p) * wp), 0, (hp - h - p) * wp); // bottom rows
}

/// [`conv2d_same`] on Burn tensors when `B` is flex and the kernel applies, else `None`.
pub(crate) fn try_conv2d_same<B: burn::tensor::backend::Backend>(
    x: &burn::tensor::Tensor<B, 4>,
    weight: &burn::tensor::Tensor<B, 4>,
    bias: Option<&burn::tensor::Tensor<B, 1>>,
    padding: usize,
    filters: Option<&FilterCache>,
    relu_input: bool,
) -> Option<burn::tensor::Tensor<B, 4>> {
    let (x, weight, bias) = super::flex::conv_operands(x, weight, bias)?;
    conv2d_same(&x, &weight, bias.as_ref(), padding, filters, relu_input).map(super::flex::from_flex)
}

#[cfg(test)]
mod tests {
    use crate::backends::Flex;
    use burn::tensor::module::conv2d;
    use burn::tensor::ops::ConvOptions;
    use burn::tensor::Tensor;
    use crate::kernels::test_support::{pattern, rel_l2};

    fn tensor<const D: usize>(shape: [usize; D], seed: usize) -> Tensor<Flex, D> {
        pattern(shape, seed, 2.0, 0.0)
    }

    /// Our shifted-GEMM convolution against Burn's (im2col) on flex: 3×3, 5×5 and 1×1, with
    /// and without bias, batch 2, odd sizes, one channel, strided inputs, a tile boundary.
    #[test]
    fn matches_burn_conv2d() {
        // Layout of the input: 0 contiguous, 1 H and W swapped, 2 a permuted token map
        // ([N, H·W, C] viewed as [N, C, H, W], as the heads' reassembled features).
        let cases = [
            ([2, 3, 7, 9], 5, 3, true, 0),
            ([1, 64, 27, 36], 64, 3, true, 0),
            ([1, 1, 5, 4], 2, 3, false, 0),
            ([1, 4, 11, 13], 3, 5, true, 0),
            ([2, 5, 6, 8], 7, 3, true, 1),
            ([1, 8, 40, 70], 16, 3, true, 0),
            ([2, 6, 5, 7], 4, 1, true, 0),   // 1×1: one GEMM per image
            ([1, 64, 40, 70], 32, 1, false, 1), // 1×1, H and W swapped (copied first)
            ([2, 24, 9, 11], 16, 1, true, 2),  // 1×1 on a token map (read through strides)
            ([2, 24, 9, 11], 16, 3, true, 2),  // 3×3 on a token map (gathered while padding)
        ];
        for (shape, c_out, k, with_bias, layout) in cases {
            let [n, c, h, w] = shape;
            let x = match layout {
                0 => tensor(shape, 1),
                1 => tensor([n, c, w, h], 1).swap_dims(2, 3),
                _ => tensor([n, h * w, c], 1).reshape([n, h, w, c]).permute([0, 3, 1, 2]),
            };
            let w = tensor([c_out, shape[1], k, k], 2);
            let b = with_bias.then(|| tensor([c_out], 3));
            let ours = super::try_conv2d_same(&x, &w, b.as_ref(), k / 2, None, false).expect("kernel applies");
            let burn = conv2d(x, w, b, ConvOptions::new([1, 1], [k / 2, k / 2], [1, 1], 1));
            assert_eq!(ours.dims(), burn.dims());
            let (a, r) = (ours.into_data().to_vec::<f32>().unwrap(), burn.into_data().to_vec::<f32>().unwrap());
            let err = rel_l2(&a, &r);
            // 3×3 runs Winograd F(4×4, 3×3), whose rounding differs more from im2col's
            // (both are checked against f64 in `winograd_matches_f64_convolution`).
            let tol = if k == 3 { 5e-6 } else { 1e-6 };
            assert!(err < tol, "{shape:?} k{k}: rel L2 {err:.2e}");
        }
    }

    /// A 3×3 convolution reading its input through a ReLU equals Burn's conv of `relu(x)`
    /// (contiguous and strided inputs); other kernel sizes decline it.
    #[test]
    fn relu_input_matches_burn() {
        for x in [tensor([2, 16, 21, 30], 1), tensor([2, 30, 21, 16], 1).permute([0, 3, 2, 1])] {
            let (w, b) = (tensor([8, 16, 3, 3], 2), tensor([8], 3));
            let ours = super::try_conv2d_same(&x, &w, Some(&b), 1, None, true).expect("kernel applies");
            let burn = conv2d(burn::tensor::activation::relu(x.clone()), w, Some(b), ConvOptions::new([1, 1], [1, 1], [1, 1], 1));
            let err = rel_l2(&ours.into_data().to_vec::<f32>().unwrap(), &burn.into_data().to_vec::<f32>().unwrap());
            assert!(err < 5e-6, "rel L2 {err:.2e}");
            assert!(super::try_conv2d_same(&x, &tensor([8, 16, 1, 1], 2), None, 0, None, true).is_none());
        }
    }

    /// Shapes the kernel does not take are declined (Burn's op runs them).
    #[test]
    fn declines_other_convolutions() {
        let x = tensor([1, 4, 6, 6], 1);
        assert!(super::try_conv2d_same(&x, &tensor([2, 4, 2, 2], 2), None, 1, None, false).is_none()); // even
        assert!(super::try_conv2d_same(&x, &tensor([2, 4, 3, 3], 2), None, 0, None, false).is_none()); // padding 0
        assert!(super::try_conv2d_same(&x, &tensor([2, 3, 3, 3], 2), None, 1, None, false).is_none()); // channels
    }
}
