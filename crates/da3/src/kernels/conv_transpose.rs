//! Transposed convolutions whose kernel equals their stride (no padding, no overlap) on Burn's
//! flex backend: the DPT heads' 4× and 2× up-projections (`ConvTranspose2d(k, stride=k)`).
//!
//! With k = stride every input pixel writes its own k×k output block, so the layer is one
//! matrix product per image, `P[(c_out, i, j), h·w] = Σ_ci W[ci, c_out, i, j] · x[ci, h·w]`,
//! followed by a scatter of P's rows into the blocks (plus the bias). burn-flex runs it on the
//! calling thread while the pool waits (8 % of the main thread's serial time in a da3-small
//! pass, `tools/bench/serial_profile.sh`); here the product is [`parallel_gemm`] and the
//! scatter writes output rows in parallel. Each output element is one product sum plus the
//! bias, as in Burn's op, so the results differ by summation-order rounding only.

use burn::tensor::TensorData;
use burn_flex::FlexTensor;

use super::conv::StridedInput;
use super::flex::{par_rows, weights_and_bias, Strided};
use super::linear::{parallel_gemm, Bias};

/// x [N, C_in, H, W] with weight [C_in, C_out, k, k] (PyTorch's layout for transposed
/// convolutions) and an optional bias [C_out], stride k, no padding -> [N, C_out, kH, kW].
/// `None` where it does not apply (other dtypes or shapes, a plane that is not one strided
/// axis).
pub(crate) fn conv_transpose_k_eq_s(x: &FlexTensor, w: &FlexTensor, bias: Option<&FlexTensor>) -> Option<FlexTensor> {
    let (xd, wd) = (x.layout().shape(), w.layout().shape());
    if xd.num_dims() != 4 || wd.num_dims() != 4 {
        return None;
    }
    let [n, c_in, h, wid] = [xd[0], xd[1], xd[2], xd[3]];
    let [w_in, c_out, k, k2] = [wd[0], wd[1], wd[2], wd[3]];
    if w_in != c_in || k != k2 || n * c_in * c_out * h * wid * k == 0 {
        return None;
    }
    let (weights, bias) = weights_and_bias(w, bias, c_out)?;
    let input = StridedInput::of(x)?;
    if h > 1 && input.strides[2] != wid * input.strides[3] {
        return None;
    }
    let plane = h * wid;
    let taps = c_out * k * k; // rows of P: (c_out, i, j)
    // P of every image: [N, C_out·k·k, H·W].
    let mut products = Vec::with_capacity(n * taps * plane);
    // Wᵀ: element ((co, i, j), ci) of the weight [C_in, C_out·k·k] read transposed.
    let lhs = Strided { ptr: weights.as_ptr(), row: 1, col: taps as isize };
    for b in 0..n {
        let rhs = Strided { ptr: input.data[input.row(b, 0, 0)..].as_ptr(), row: input.strides[1] as isize, col: input.strides[3] as isize };
        // SAFETY: the weight holds c_in·taps values; the input's strides address c_in × plane
        // elements of image b within its storage.
        unsafe { parallel_gemm(&mut products, taps, c_in, plane, lhs, rhs, Bias::None) };
    }
    let (out_h, out_w) = (h * k, wid * k);
    // One output row (b, co, oy) per call: oy = y·k + i takes P rows (co, i, 0..k) at pixel row y.
    let out = par_rows(n * c_out * out_h * out_w, out_w, |row, dst| {
        let (b, co, oy) = (row / (c_out * out_h), row / out_h % c_out, row % out_h);
        let (y, i) = (oy / k, oy % k);
        let add = bias.map_or(0.0, |bias: &[f32]| bias[co]);
        for j in 0..k {
            let p = &products[(b * taps + (co * k + i) * k + j) * plane + y * wid..][..wid];
            for (x, &v) in p.iter().enumerate() {
                dst[x * k + j].write(v + add);
            }
        }
    });
    Some(FlexTensor::from_data(TensorData::new(out, [n, c_out, out_h, out_w])))
}

/// [`conv_transpose_k_eq_s`] on Burn tensors when `B` is flex and the kernel applies, else `None`.
pub(crate) fn try_conv_transpose_k_eq_s<B: burn::tensor::backend::Backend>(
    x: &burn::tensor::Tensor<B, 4>,
    weight: &burn::tensor::Tensor<B, 4>,
    bias: Option<&burn::tensor::Tensor<B, 1>>,
) -> Option<burn::tensor::Tensor<B, 4>> {
    let (x, weight, bias) = super::flex::conv_operands(x, weight, bias)?;
    conv_transpose_k_eq_s(&x, &weight, bias.as_ref()).map(super::flex::from_flex)
}

#[cfg(test)]
mod tests {
    use crate::backends::Flex;
    use crate::kernels::test_support::{pattern, rel_l2};
    use burn::tensor::module::conv_transpose2d;
    use burn::tensor::ops::ConvTransposeOptions;
    use burn::tensor::Tensor;

    /// Ours against Burn's transposed convolution on flex: the heads' k = 4 and k = 2 layers
    /// (batch 2, non-square maps), without bias, and a permuted (channels-last) input.
    #[test]
    fn matches_burn_conv_transpose() {
        // n, c_in, c_out, h, w, k, bias, permuted (NHWC storage viewed as NCHW)
        let cases = [
            (2, 48, 48, 5, 7, 4, true, false),
            (1, 96, 96, 6, 9, 2, true, false),
            (1, 8, 12, 3, 4, 2, false, false),
            (2, 16, 16, 4, 6, 4, true, true),
        ];
        for (n, c_in, c_out, h, w, k, with_bias, permuted) in cases {
            let x: Tensor<Flex, 4> = if permuted {
                pattern([n, h, w, c_in], 1, 2.0, 0.0).permute([0, 3, 1, 2])
            } else {
                pattern([n, c_in, h, w], 1, 2.0, 0.0)
            };
            let weight: Tensor<Flex, 4> = pattern([c_in, c_out, k, k], 2, 2.0, 0.0);
            let bias: Option<Tensor<Flex, 1>> = with_bias.then(|| pattern([c_out], 3, 2.0, 0.0));
            let ours = super::try_conv_transpose_k_eq_s(&x, &weight, bias.as_ref()).expect("kernel applies");
            let options = ConvTransposeOptions::new([k, k], [0, 0], [0, 0], [1, 1], 1);
            let burn = conv_transpose2d(x, weight, bias, options);
            assert_eq!(ours.dims(), burn.dims());
            let err = rel_l2(&ours.into_data().to_vec::<f32>().unwrap(), &burn.into_data().to_vec::<f32>().unwrap());
            assert!(err < 1e-6, "n={n} {c_in}->{c_out} {h}x{w} k={k}: rel L2 {err:.2e}");
        }
    }
}
