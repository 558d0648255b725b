//! Strided convolutions on Burn's flex backend by a parallel im2col and [`parallel_gemm`]: the
//! DPT heads' stride-2 3×3 down-projection (the last reassemble level).
//!
//! burn-flex also lowers them to im2col plus GEMM, but builds the column matrix on the calling
//! thread while the pool waits (15 % of the main thread's serial time in a da3-small pass,
//! `tools/bench/serial_profile.sh`). Here each row of the column matrix, one (input channel,
//! kernel tap) pair over all output pixels, is written by a parallel task, and the product
//! adds the bias. Same sums as burn-flex's im2col product, up to the GEMM's summation order.

use burn::tensor::TensorData;
use burn_flex::FlexTensor;

use super::conv::StridedInput;
use super::flex::{par_rows, weights_and_bias, Strided};
use super::linear::{parallel_gemm, Bias};

/// x [N, C_in, H, W] ⊛ w [C_out, C_in, k, k] (+ bias [C_out]) with the given stride and
/// padding -> [N, C_out, H', W']. `None` where it does not apply (other dtypes, mismatched
/// shapes, an empty output).
pub(crate) fn conv2d_im2col(x: &FlexTensor, w: &FlexTensor, bias: Option<&FlexTensor>, stride: usize, padding: usize) -> Option<FlexTensor> {
    let (xd, wd) = (x.layout().shape(), w.layout().shape());
    if xd.num_dims() != 4 || wd.num_dims() != 4 || stride == 0 {
        return None;
    }
    let [n, c_in, h, wid] = [xd[0], xd[1], xd[2], xd[3]];
    let [c_out, w_in, k, k2] = [wd[0], wd[1], wd[2], wd[3]];
    if w_in != c_in || k != k2 || h + 2 * padding < k || wid + 2 * padding < k {
        return None;
    }
    let (out_h, out_w) = ((h + 2 * padding - k) / stride + 1, (wid + 2 * padding - k) / stride + 1);
    if n * c_in * c_out * out_h * out_w == 0 {
        return None;
    }
    let (weights, bias) = weights_and_bias(w, bias, c_out)?;
    let input = StridedInput::of(x)?;
    let (plane, depth) = (out_h * out_w, c_in * k * k);
    let mut out = Vec::with_capacity(n * c_out * plane); // [N, C_out, H', W']
    for b in 0..n {
        // [C_in·k·k, H'·W']: row (ci, ky, kx) holds x[b, ci, oy·s + ky − p, ox·s + kx − p], 0 outside.
        let columns = par_rows(depth * plane, plane, |r, dst| {
            let (ci, ky, kx) = (r / (k * k), r / k % k, r % k);
            for oy in 0..out_h {
                let y = (oy * stride + ky) as isize - padding as isize;
                let dst = &mut dst[oy * out_w..][..out_w];
                if y < 0 || y >= h as isize {
                    dst.iter_mut().for_each(|v| {
                        v.write(0.0);
                    });
                    continue;
                }
                let src = &input.data[input.row(b, ci, y as usize)..];
                for (ox, v) in dst.iter_mut().enumerate() {
                    let xx = (ox * stride + kx) as isize - padding as isize;
                    v.write(if xx < 0 || xx >= wid as isize { 0.0 } else { src[xx as usize * input.strides[3]] });
                }
            }
        });
        let lhs = Strided { ptr: weights.as_ptr(), row: depth as isize, col: 1 };
        let rhs = Strided { ptr: columns.as_ptr(), row: plane as isize, col: 1 };
        // SAFETY: the weight holds c_out·depth values, the columns depth·plane; bias has c_out.
        unsafe { parallel_gemm(&mut out, c_out, depth, plane, lhs, rhs, bias.map_or(Bias::None, Bias::PerRow)) };
    }
    Some(FlexTensor::from_data(TensorData::new(out, [n, c_out, out_h, out_w])))
}

/// [`conv2d_im2col`] on Burn tensors when `B` is flex and the kernel applies, else `None`.
pub(crate) fn try_conv2d_im2col<B: burn::tensor::backend::Backend>(
    x: &burn::tensor::Tensor<B, 4>,
    weight: &burn::tensor::Tensor<B, 4>,
    bias: Option<&burn::tensor::Tensor<B, 1>>,
    stride: usize,
    padding: usize,
) -> Option<burn::tensor::Tensor<B, 4>> {
    let (x, weight, bias) = super::flex::conv_operands(x, weight, bias)?;
    conv2d_im2col(&x, &weight, bias.as_ref(), stride, padding).map(super::flex::from_flex)
}

#[cfg(test)]
mod tests {
    use crate::backends::Flex;
    use crate::kernels::test_support::{pattern, rel_l2};
    use burn::tensor::module::conv2d;
    use burn::tensor::ops::ConvOptions;
    use burn::tensor::Tensor;

    /// Ours against Burn's convolution on flex: the heads' stride-2 3×3 layer at an odd map
    /// size, batch 2, without bias, a 4×4 stride-3 kernel and a permuted input.
    #[test]
    fn matches_burn_conv2d() {
        // n, c_in, c_out, h, w, k, stride, padding, bias, permuted (NHWC storage as NCHW)
        let cases = [
            (1, 64, 64, 27, 36, 3, 2, 1, true, false),
            (2, 16, 24, 9, 7, 3, 2, 1, false, false),
            (1, 8, 8, 10, 11, 4, 3, 2, true, false),
            (2, 16, 16, 8, 10, 3, 2, 1, true, true),
        ];
        for (n, c_in, c_out, h, w, k, stride, padding, with_bias, permuted) in cases {
            let x: Tensor<Flex, 4> =
                if permuted { pattern([n, h, w, c_in], 1, 2.0, 0.0).permute([0, 3, 1, 2]) } else { pattern([n, c_in, h, w], 1, 2.0, 0.0) };
            let weight: Tensor<Flex, 4> = pattern([c_out, c_in, k, k], 2, 2.0, 0.0);
            let bias: Option<Tensor<Flex, 1>> = with_bias.then(|| pattern([c_out], 3, 2.0, 0.0));
            let ours = super::try_conv2d_im2col(&x, &weight, bias.as_ref(), stride, padding).expect("kernel applies");
            let burn = conv2d(x, weight, bias, ConvOptions::new([stride; 2], [padding; 2], [1, 1], 1));
            assert_eq!(ours.dims(), burn.dims());
            let err = rel_l2(&ours.into_data().to_vec::<f32>().unwrap(), &burn.into_data().to_vec::<f32>().unwrap());
            assert!(err < 1e-6, "n={n} {c_in}->{c_out} {h}x{w} k={k} s={stride} p={padding}: rel L2 {err:.2e}");
        }
    }
}
