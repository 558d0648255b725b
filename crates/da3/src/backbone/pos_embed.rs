//! Interpolation of the learned 37×37 positional embedding to the input's patch grid.
//!
//! The reference calls `F.interpolate(mode="bicubic", scale_factor=((h + 0.1)/37, (w + 0.1)/37))`
//! with no explicit size, so PyTorch samples at `src = (dst + 0.5) · 37 / (out + 0.1) − 0.5`,
//! which is *not* a resize "to size (h, w)". The separable bicubic filter (A = −0.75, clamped
//! borders) is built on the host as two small matrices and applied with two matmuls, exactly and
//! on any backend.

use burn::tensor::{backend::Backend, Tensor, TensorData};

use crate::kernels::matmul::matmul;

/// The reference's `interpolate_offset`.
const INTERPOLATE_OFFSET: f64 = 0.1;
/// PyTorch's bicubic coefficient.
const CUBIC_A: f64 = -0.75;

fn cubic_near(x: f64) -> f64 {
    ((CUBIC_A + 2.0) * x - (CUBIC_A + 3.0)) * x * x + 1.0
}

fn cubic_far(x: f64) -> f64 {
    ((CUBIC_A * x - 5.0 * CUBIC_A) * x + 8.0 * CUBIC_A) * x - 4.0 * CUBIC_A
}

/// Row-stochastic matrix [out, grid] mapping `grid` samples to `out` as PyTorch's bicubic
/// upsampling does with scale factor `(out + 0.1) / grid` and `align_corners=False`.
pub fn bicubic_matrix(out: usize, grid: usize) -> Vec<f32> {
    let scale_factor = (out as f64 + INTERPOLATE_OFFSET) / grid as f64;
    // PyTorch keeps this scale in the input's float type.
    let scale = (1.0 / scale_factor) as f32 as f64;
    let mut m = vec![0f32; out * grid];
    for dst in 0..out {
        let src = scale * (dst as f64 + 0.5) - 0.5;
        let base = src.floor();
        let t = src - base;
        let coeffs = [cubic_far(t + 1.0), cubic_near(t), cubic_near(1.0 - t), cubic_far(2.0 - t)];
        for (k, c) in coeffs.iter().enumerate() {
            let idx = (base as i64 - 1 + k as i64).clamp(0, grid as i64 - 1) as usize;
            m[dst * grid + idx] += *c as f32;
        }
    }
    m
}

/// The positional embedding for an `h`×`w` patch grid: [1, 1 + h·w, D] (class row first).
///
/// `table` is the learned `pos_embed` [1, 1 + grid², D]. At the training size (a square grid
/// of exactly `grid` patches) the table is returned unchanged, as in the reference.
pub fn interpolate_pos_embed<B: Backend>(table: Tensor<B, 3>, grid: usize, h: usize, w: usize) -> Tensor<B, 3> {
    if h == grid && w == grid {
        return table;
    }
    let [_, _, d] = table.dims();
    let device = table.device();
    let cls = table.clone().narrow(1, 0, 1); // [1, 1, D]
    let patches = table.narrow(1, 1, grid * grid).reshape([grid, grid * d]); // [G, G·D]
    let rows = Tensor::<B, 2>::from_data(TensorData::new(bicubic_matrix(h, grid), [h, grid]), &device);
    let cols = Tensor::<B, 2>::from_data(TensorData::new(bicubic_matrix(w, grid), [w, grid]), &device);
    let by_rows = matmul(rows, patches).reshape([h, grid, d]); // [h, G, D]
    let cols = cols.unsqueeze_dim::<3>(0).expand([h, w, grid]); // [h, w, G]
    let grid_embed = matmul(cols, by_rows).reshape([1, h * w, d]); // [1, h·w, D]
    Tensor::cat(vec![cls, grid_embed], 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bicubic_weights_match_pytorch_scale_factor_interpolation() {
        // torch 2.15: F.interpolate(torch.eye(37)[None, None], scale_factor=(3.1 / 37, 1.0),
        // mode="bicubic", align_corners=False)[0, 0] rows 0 and 2, non-zero entries.
        let m = bicubic_matrix(3, 37);
        let expect = [(0, 4, -0.0993829), (0, 5, 0.6356565), (0, 6, 0.5510631), (0, 7, -0.0873365),
                      (2, 28, -0.1110897), (2, 29, 0.790442), (2, 30, 0.3775474), (2, 31, -0.0568998)];
        for (row, col, v) in expect {
            let got = m[row * 37 + col];
            // torch evaluates the coefficients in f32, we in f64: ~1e-6 apart. Resizing "to size"
            // instead of by the scale factor would move these weights by ~0.1.
            assert!((got - v).abs() < 5e-6, "m[{row},{col}] = {got}, torch {v}");
        }
        for r in m.chunks(37) {
            assert_eq!(r.iter().filter(|v| **v != 0.0).count(), 4);
        }
    }
}
