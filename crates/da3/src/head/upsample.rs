//! Bilinear resizing with `align_corners=True`, as every resize of the DPT heads does.
//!
//! Burn's `interpolate` honours `align_corners` on the backends the crate supports (flex,
//! ndarray and the CubeCL kernel behind wgpu and cuda all map output pixel `i` to input
//! coordinate `i·(in-1)/(out-1)`, like PyTorch), so it is used directly; the unit test below
//! pins it to numbers produced by `torch.nn.functional.interpolate`.

use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use burn::tensor::{backend::Backend, Tensor};

/// Bilinear resize to `size` = [h, w] with corner pixels aligned
/// (`F.interpolate(x, size, mode="bilinear", align_corners=True)`): [N, C, h0, w0] -> [N, C, h, w].
pub fn resize_bilinear_aligned<B: Backend>(x: Tensor<B, 4>, size: [usize; 2]) -> Tensor<B, 4> {
    // flex: our table-driven kernel (see `crate::kernels::resize`); elsewhere Burn's op.
    #[cfg(all(feature = "flex", not(target_arch = "wasm32")))]
    let x = match crate::kernels::flex::into_flex(x) {
        Ok(t) => match crate::kernels::resize::resize_bilinear_aligned(&t, size) {
            Some(y) => return crate::kernels::flex::from_flex(y),
            None => crate::kernels::flex::from_flex(t),
        },
        Err(x) => x,
    };
    let options = InterpolateOptions::new(InterpolateMode::Bilinear).with_align_corners(true);
    interpolate(x, size, options)
}

#[cfg(test)]
#[allow(clippy::excessive_precision)] // tables printed by Python at full precision
mod tests {
    use super::*;
    use crate::backends::Flex;
    use burn::tensor::TensorData;

    /// ```python
    /// x = (torch.arange(24, dtype=torch.float32).reshape(1, 2, 3, 4) ** 1.5) / 10
    /// y = F.interpolate(x, size=(5, 7), mode="bilinear", align_corners=True)
    /// print(y.flatten().tolist())
    /// ```
    #[rustfmt::skip]
    const EXPECTED: [f32; 70] = [
        0.000000000e+00, 5.000000075e-02, 1.000000015e-01, 1.914213449e-01, 2.828426957e-01, 4.012289643e-01, 5.196152329e-01,
        4.000000060e-01, 5.045084953e-01, 6.090170145e-01, 7.426426411e-01, 8.762682676e-01, 1.031044483e+00, 1.185820580e+00,
        8.000000119e-01, 9.590170383e-01, 1.118034005e+00, 1.293864012e+00, 1.469693899e+00, 1.660859942e+00, 1.852025986e+00,
        1.531370759e+00, 1.720193863e+00, 1.909017086e+00, 2.112501621e+00, 2.315985680e+00, 2.533071041e+00, 2.750156641e+00,
        2.262741566e+00, 2.481370926e+00, 2.700000048e+00, 2.931138992e+00, 3.162277699e+00, 3.405282497e+00, 3.648287296e+00,
        4.156921864e+00, 4.422069550e+00, 4.687216759e+00, 4.962768555e+00, 5.238320351e+00, 5.523897648e+00, 5.809474945e+00,
        5.278460979e+00, 5.563354492e+00, 5.848248482e+00, 6.142892361e+00, 6.437536716e+00, 6.741613865e+00, 7.045691490e+00,
        6.400000095e+00, 6.704639912e+00, 7.009279728e+00, 7.323016167e+00, 7.636753082e+00, 7.959330559e+00, 8.281908035e+00,
        7.672136307e+00, 7.994240284e+00, 8.316344261e+00, 8.647089005e+00, 8.977833748e+00, 9.316997528e+00, 9.656160355e+00,
        8.944272041e+00, 9.283840179e+00, 9.623409271e+00, 9.971161842e+00, 1.031891441e+01, 1.067466354e+01, 1.103041267e+01,
    ];

    #[test]
    fn bilinear_align_corners_matches_torch() {
        let device = Default::default();
        let values: Vec<f32> = (0..24).map(|i| (i as f32).powf(1.5) / 10.0).collect();
        let x = Tensor::<Flex, 4>::from_data(TensorData::new(values, [1, 2, 3, 4]), &device);
        let y = resize_bilinear_aligned(x, [5, 7]);
        assert_eq!(y.dims(), [1, 2, 5, 7]);
        let got = y.into_data().to_vec::<f32>().unwrap();
        let max_err = got.iter().zip(EXPECTED).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(max_err < 1e-5, "max error {max_err}: {got:?}");
    }

    /// Our flex kernel against PyTorch on a larger upsampling (2×2 planes 9×13 -> 37×50):
    /// sampled values and the sum, printed by
    /// ```python
    /// k = np.array([(i * 7919) % 613 for i in range(468)], dtype=np.float32)
    /// x = torch.from_numpy(np.sqrt(k) - np.float32(12)).reshape(2, 2, 9, 13)
    /// y = F.interpolate(x, size=(37, 50), mode="bilinear", align_corners=True).flatten()
    /// ```
    #[test]
    fn flex_kernel_matches_torch_upsampling() {
        #[rustfmt::skip]
        const SAMPLES: [(usize, f32); 16] = [
            (0, -1.200000000e+01), (1, -6.189153671e+00), (49, -8.394449234e+00), (50, -6.666667461e+00),
            (777, 5.549979806e-01), (1234, 3.746882915e+00), (1850, 4.733200073e+00), (2222, 1.178324127e+01),
            (3001, -3.281715631e+00), (3699, 1.269817734e+01), (3700, 1.166431999e+01), (4444, 1.077810001e+01),
            (5555, 8.473633528e-01), (6000, 3.693170547e-01), (7000, -4.487273842e-02), (7399, 1.160084724e+01),
        ];
        const SUM: f64 = 33081.08462650847;
        let values: Vec<f32> = (0..468).map(|i| ((i * 7919 % 613) as f32).sqrt() - 12.0).collect();
        let x = Tensor::<Flex, 4>::from_data(TensorData::new(values, [2, 2, 9, 13]), &Default::default());
        let y: Vec<f32> = resize_bilinear_aligned(x, [37, 50]).into_data().to_vec().unwrap();
        for (i, want) in SAMPLES {
            assert!((y[i] - want).abs() <= 1e-6 * want.abs().max(1.0), "element {i}: {} vs torch {want}", y[i]);
        }
        let sum: f64 = y.iter().map(|v| *v as f64).sum();
        assert!((sum - SUM).abs() < 1e-3, "sum {sum} vs torch {SUM}");
    }

    /// Our flex kernel against Burn's own op, whose f64 source coordinates differ from
    /// PyTorch's f32 ones by up to ~2e-6 pixels, i.e. up to ~4e-5 on these values (ours follows
    /// PyTorch: `flex_kernel_matches_torch_upsampling`), at the head's resize shapes: upsampling ×2 and to odd sizes,
    /// downsampling, the identity, 1-pixel edges and a strided (non-contiguous) input.
    #[test]
    fn flex_kernel_matches_burn_op() {
        let device = Default::default();
        let cases: [([usize; 4], [usize; 2]); 6] =
            [([1, 3, 27, 36], [54, 72]), ([2, 2, 9, 13], [37, 50]), ([1, 2, 20, 30], [7, 11]), ([1, 1, 5, 6], [5, 6]), ([1, 1, 1, 4], [3, 9]), ([1, 2, 4, 1], [8, 1])];
        let close = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(p, q)| (p - q).abs() / q.abs().max(1.0)).fold(0f32, f32::max);
        for (shape, size) in cases {
            let n: usize = shape.iter().product();
            let values: Vec<f32> = (0..n).map(|i| ((i * 7919 % 613) as f32).sqrt() - 12.0).collect();
            let x = Tensor::<Flex, 4>::from_data(TensorData::new(values, shape), &device);
            let burn = interpolate(x.clone(), size, InterpolateOptions::new(InterpolateMode::Bilinear).with_align_corners(true));
            let ours = resize_bilinear_aligned(x, size);
            let (a, b) = (ours.into_data().to_vec::<f32>().unwrap(), burn.into_data().to_vec::<f32>().unwrap());
            let err = close(&a, &b);
            assert!(err < 1e-4, "{shape:?} -> {size:?}: max relative error {err}");
        }
        // Strided input: the transposed view of a [1, 1, 6, 5] tensor.
        let values: Vec<f32> = (0..30).map(|i| (i as f32 * 0.37).sin()).collect();
        let x = Tensor::<Flex, 4>::from_data(TensorData::new(values, [1, 1, 6, 5]), &device).swap_dims(2, 3);
        let burn = interpolate(x.clone(), [9, 11], InterpolateOptions::new(InterpolateMode::Bilinear).with_align_corners(true));
        let ours = resize_bilinear_aligned(x, [9, 11]);
        let (a, b) = (ours.into_data().to_vec::<f32>().unwrap(), burn.into_data().to_vec::<f32>().unwrap());
        assert!(close(&a, &b) < 1e-5, "strided input");
    }
}
