//! The UV sine positional embedding that DualDPT adds to its feature maps.
//!
//! Port of `create_uv_grid` + `position_grid_to_embed` (`model/utils/head_utils.py`) and
//! `DualDPT._add_pos_embed`. The embedding depends only on the map size, the channel count
//! and the image aspect ratio, so it is computed on the host. It is separable: the first half
//! of the channels depends only on the column (u), the second half only on the row (v). Only
//! the two 1D tables are uploaded (`C/2 · (h + w)` values) and broadcast on the device.

use burn::tensor::{backend::Backend, Tensor, TensorData};

use crate::size_cache::{SizeCache, SizeKey};

/// Weight of the embedding added to the features (`ratio` in the reference).
pub const UV_EMBED_RATIO: f64 = 0.1;

/// Base of the frequency ladder (`omega_0` in the reference).
const OMEGA_0: f64 = 100.0;

/// `n` coordinates evenly spread over `[-span·(n-1)/n, span·(n-1)/n]` (`torch.linspace`).
fn axis_coords(n: usize, span: f64) -> Vec<f64> {
    let end = span * (n as f64 - 1.0) / n as f64;
    if n == 1 {
        return vec![-end];
    }
    let step = 2.0 * end / (n as f64 - 1.0);
    (0..n).map(|i| -end + step * i as f64).collect()
}

/// Sine/cosine table of one axis, channel-major [2q, n]: rows `k < q` hold `sin(x·ω_k)`,
/// rows `q + k` hold `cos(x·ω_k)`, with `ω_k = 100^(-k/q)`; scaled by `ratio`.
fn sincos_table(coords: &[f64], q: usize, ratio: f64) -> Vec<f32> {
    let n = coords.len();
    let mut table = vec![0f32; 2 * q * n];
    for k in 0..q {
        let omega = 1.0 / OMEGA_0.powf(k as f64 / q as f64);
        for (j, &x) in coords.iter().enumerate() {
            table[k * n + j] = (ratio * (x * omega).sin()) as f32;
            table[(q + k) * n + j] = (ratio * (x * omega).cos()) as f32;
        }
    }
    table
}

/// The host tables of the embedding of an `h`×`w` map with `channels` channels for an image
/// of aspect ratio `aspect` = W/H, scaled by `ratio`: (u table [C/2, w], v table [C/2, h]).
pub fn uv_tables(h: usize, w: usize, channels: usize, aspect: f64, ratio: f64) -> (Vec<f32>, Vec<f32>) {
    assert!(channels.is_multiple_of(4), "UV embedding needs channels divisible by 4, got {channels}");
    let diag = (aspect * aspect + 1.0).sqrt();
    let (span_x, span_y) = (aspect / diag, 1.0 / diag);
    let q = channels / 4;
    let u = sincos_table(&axis_coords(w, span_x), q, ratio);
    let v = sincos_table(&axis_coords(h, span_y), q, ratio);
    (u, v)
}

/// The embedding of an `h`×`w` map with `channels` channels, times `ratio`: [1, C, h, w].
pub fn uv_embedding<B: Backend>(
    h: usize,
    w: usize,
    channels: usize,
    aspect: f64,
    ratio: f64,
    device: &B::Device,
) -> Tensor<B, 4> {
    let half = channels / 2;
    let (u, v) = uv_tables(h, w, channels, aspect, ratio);
    let u = Tensor::<B, 4>::from_data(TensorData::new(u, [1, half, 1, w]), device); // [1, C/2, 1, w]
    let v = Tensor::<B, 4>::from_data(TensorData::new(v, [1, half, h, 1]), device); // [1, C/2, h, 1]
    Tensor::cat(vec![u.expand([1, half, h, w]), v.expand([1, half, h, w])], 1) // [1, C, h, w]
}

/// `x + 0.1 · uv_embedding` for a feature map of an image with aspect ratio `aspect` = W/H
/// (`DualDPT._add_pos_embed`): [BS, C, h, w] -> [BS, C, h, w].
///
/// The embedding is taken from `cache` (keyed by map size, channels, aspect and device) and
/// built there once: it is materialized at full map size, so rebuilding it per call and per
/// head chunk costs a full-size write.
pub fn add_uv_embedding<B: Backend>(x: Tensor<B, 4>, aspect: f64, cache: &SizeCache) -> Tensor<B, 4> {
    let [_, c, h, w] = x.dims();
    let device = x.device();
    let key = SizeKey { what: "uv", dims: [h, w, c, 0], extra: aspect.to_bits() };
    let pe = cache.get_or_build::<B, _>(key, &device, || uv_embedding::<B>(h, w, c, aspect, UV_EMBED_RATIO, &device)); // [1, C, h, w]
    crate::kernels::broadcast::add_to_each(x, &pe)
}

#[cfg(test)]
#[allow(clippy::excessive_precision)] // tables printed by Python at full precision
mod tests {
    use super::*;
    use crate::backends::Flex;

    /// Expected values from the reference, [h=2, w=3, C=12] with aspect 504/378, ×0.1:
    /// ```python
    /// import sys, torch; sys.path.insert(0, '/tmp/ref')
    /// from depth_anything_3.model.utils.head_utils import create_uv_grid, position_grid_to_embed
    /// pe = create_uv_grid(3, 2, aspect_ratio=504/378, dtype=torch.float32)  # (width, height)
    /// pe = position_grid_to_embed(pe, 12) * 0.1          # [2, 3, 12]
    /// print(pe.permute(2, 0, 1).flatten().tolist())      # [12, 2, 3] channel-major
    /// ```
    #[rustfmt::skip]
    const EXPECTED: [f32; 72] = [
        // u: sin at 3 frequencies
        -5.084065720e-02, 0.000000000e+00, 5.084065720e-02, -5.084065720e-02, 0.000000000e+00, 5.084065720e-02,
        -1.146505028e-02, 0.000000000e+00, 1.146505028e-02, -1.146505028e-02, 0.000000000e+00, 1.146505028e-02,
        -2.475261223e-03, 0.000000000e+00, 2.475261223e-03, -2.475261223e-03, 0.000000000e+00, 2.475261223e-03,
        // u: cos
        8.611171693e-02, 1.000000015e-01, 8.611171693e-02, 8.611171693e-02, 1.000000015e-01, 8.611171693e-02,
        9.934058785e-02, 1.000000015e-01, 9.934058785e-02, 9.934058785e-02, 1.000000015e-01, 9.934058785e-02,
        9.996936470e-02, 1.000000015e-01, 9.996936470e-02, 9.996936470e-02, 1.000000015e-01, 9.996936470e-02,
        // v: sin
        -2.955202200e-02, -2.955202200e-02, -2.955202200e-02, 2.955202200e-02, 2.955202200e-02, 2.955202200e-02,
        -6.458804011e-03, -6.458804011e-03, -6.458804011e-03, 6.458804011e-03, 6.458804011e-03, 6.458804011e-03,
        -1.392431557e-03, -1.392431557e-03, -1.392431557e-03, 1.392431557e-03, 1.392431557e-03, 1.392431557e-03,
        // v: cos
        9.553365409e-02, 9.553365409e-02, 9.553365409e-02, 9.553365409e-02, 9.553365409e-02, 9.553365409e-02,
        9.979119897e-02, 9.979119897e-02, 9.979119897e-02, 9.979119897e-02, 9.979119897e-02, 9.979119897e-02,
        9.999030828e-02, 9.999030828e-02, 9.999030828e-02, 9.999030828e-02, 9.999030828e-02, 9.999030828e-02,
    ];

    #[test]
    fn uv_embedding_matches_reference() {
        let device = Default::default();
        let pe = uv_embedding::<Flex>(2, 3, 12, 504.0 / 378.0, UV_EMBED_RATIO, &device);
        assert_eq!(pe.dims(), [1, 12, 2, 3]);
        let got = pe.into_data().to_vec::<f32>().unwrap();
        let max_err = got.iter().zip(EXPECTED).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(max_err < 1e-6, "max error {max_err}: {got:?}");
    }

    #[test]
    fn embedding_is_added_to_every_frame() {
        let device = Default::default();
        let x = Tensor::<Flex, 4>::ones([2, 12, 2, 3], &device);
        let cache = SizeCache::default();
        let got = add_uv_embedding(x.clone(), 504.0 / 378.0, &cache).into_data().to_vec::<f32>().unwrap();
        // The second call is served from the cache and gives the same bits.
        let again = add_uv_embedding(x, 504.0 / 378.0, &cache).into_data().to_vec::<f32>().unwrap();
        assert_eq!(cache.stats().hits, 1);
        assert_eq!(got, again);
        let expected: Vec<f32> = EXPECTED.iter().chain(EXPECTED.iter()).map(|v| v + 1.0).collect();
        let max_err = got.iter().zip(&expected).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(max_err < 1e-6, "max error {max_err}");
    }
}
