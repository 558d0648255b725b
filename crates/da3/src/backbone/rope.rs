//! 2D rotary position embedding (RoPE) of the DA3 backbone.
//!
//! The head dim is split in half: the first half rotates with the token's row (y), the second
//! with its column (x). Each half of width `2q` uses `q` frequencies `1 / 100^(2j / 2q)`,
//! duplicated (`cat(angles, angles)`), and the "rotate-half" form
//! `t·cos + cat(−t[q..2q], t[0..q])·sin` — not the interleaved form.
//!
//! Positions: local blocks use `(y + 1, x + 1)` for patches and `(0, 0)` for the special token;
//! global blocks give every patch of every view `(1, 1)` and the special token `(0, 0)`.

use burn::tensor::{backend::Backend, FloatDType, Tensor, TensorData};

/// Base frequency of the reference (`rope_freq`).
const ROPE_BASE: f32 = 100.0;

/// Precomputed cos/sin tables for one token sequence, each [T, head_dim].
#[derive(Debug, Clone)]
pub struct RopeTable<B: Backend> {
    cos: Tensor<B, 2>,
    sin: Tensor<B, 2>,
}

/// Which positions a table encodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeLayout {
    /// One view: special token at (0,0), patch (y, x) at (y+1, x+1).
    Local,
    /// `views` views concatenated: special tokens at (0,0), every patch at (1,1).
    Global {
        /// Number of views in the sequence.
        views: usize,
    },
}

impl<B: Backend> crate::size_cache::CacheWeight for RopeTable<B> {
    fn elements(&self) -> usize {
        2 * self.cos.shape().num_elements()
    }
}

impl<B: Backend> RopeTable<B> {
    /// Tables for an `h`×`w` patch grid (plus the special token) in the given layout.
    pub fn new(layout: RopeLayout, h: usize, w: usize, head_dim: usize, device: &B::Device) -> Self {
        let positions: Vec<(usize, usize)> = match layout {
            RopeLayout::Local => std::iter::once((0, 0))
                .chain((0..h).flat_map(|y| (0..w).map(move |x| (y + 1, x + 1))))
                .collect(),
            RopeLayout::Global { views } => {
                let one_view = std::iter::once((0, 0)).chain(std::iter::repeat_n((1, 1), h * w));
                one_view.cycle().take(views * (1 + h * w)).collect()
            }
        };
        let half = head_dim / 2;
        let q = half / 2;
        // Computed in f32 like the reference: inv_freq = 1 / 100^(2j / half), angle = pos · inv_freq.
        let inv_freq: Vec<f32> = (0..q).map(|j| 1.0 / ROPE_BASE.powf((2 * j) as f32 / half as f32)).collect();
        let t = positions.len();
        let mut cos = Vec::with_capacity(t * head_dim);
        let mut sin = Vec::with_capacity(t * head_dim);
        for (y, x) in positions {
            for coord in [y, x] {
                for _dup in 0..2 {
                    for f in &inv_freq {
                        let angle = (coord as f32 * f) as f64;
                        cos.push(angle.cos() as f32);
                        sin.push(angle.sin() as f32);
                    }
                }
            }
        }
        Self {
            cos: Tensor::from_data(TensorData::new(cos, [t, head_dim]), device),
            sin: Tensor::from_data(TensorData::new(sin, [t, head_dim]), device),
        }
    }

    /// Rotates queries or keys: [B, heads, T, hd] -> [B, heads, T, hd]. Computed in f32 (as
    /// the reference, whose RoPE promotes to the f32 tables); the result has `x`'s format.
    pub fn apply(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let dtype = x.dtype();
        let x = x.cast(FloatDType::F32);
        // flex: one fused pass, bit-identical to the ops below (see `crate::kernels::rope`).
        #[cfg(all(feature = "flex", not(target_arch = "wasm32")))]
        let x = {
            use crate::kernels::flex::{from_flex, into_flex};
            match (into_flex(x.clone()), into_flex(self.cos.clone()), into_flex(self.sin.clone())) {
                (Ok(xf), Ok(cos), Ok(sin)) => match crate::kernels::rope::rope_apply(&xf, &cos, &sin) {
                    Some(y) => return from_flex::<B, 4>(y).cast(dtype),
                    None => x,
                },
                _ => x,
            }
        };
        let cos = self.cos.clone().unsqueeze::<4>(); // [1, 1, T, hd]
        let sin = self.sin.clone().unsqueeze::<4>();
        (x.clone() * cos + rotate_halves(x) * sin).cast(dtype)
    }
}

/// `cat(−t2, t1)` within each of the two halves (y part, x part) of the last dimension.
fn rotate_halves<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    let hd = x.dims()[3];
    let q = hd / 4;
    let part = |i: usize| x.clone().narrow(3, i * q, q);
    Tensor::cat(vec![part(1).neg(), part(0), part(3).neg(), part(2)], 3)
}

#[cfg(all(test, feature = "flex"))]
mod tests {
    use super::*;
    use crate::backends::Flex;

    /// The fused flex kernel behind `apply` gives exactly (bit for bit) what the generic ops
    /// give, on the strided head views the attention passes, local and global tables.
    #[test]
    fn fused_flex_rope_is_bit_identical() {
        let device = Default::default();
        let (b, h, hd) = (2, 3, 16);
        for (layout, gh, gw) in [(RopeLayout::Local, 4, 5), (RopeLayout::Global { views: 2 }, 2, 3)] {
            let table = RopeTable::<Flex>::new(layout, gh, gw, hd, &device);
            let t = table.cos.dims()[0];
            let values: Vec<f32> = (0..b * t * 3 * h * hd).map(|i| ((i * 7919 % 1009) as f32 * 0.013).sin() * 3.0).collect();
            let fused = Tensor::<Flex, 4>::from_data(TensorData::new(values, [b, t, 3 * h, hd]), &device).swap_dims(1, 2);
            let x = fused.narrow(1, h, h); // [B, H, T, hd], strided like the backbone's k
            let ours = table.apply(x.clone()).into_data().to_vec::<f32>().unwrap();
            let cos = table.cos.clone().unsqueeze::<4>();
            let sin = table.sin.clone().unsqueeze::<4>();
            let generic = (x.clone() * cos + rotate_halves(x) * sin).into_data().to_vec::<f32>().unwrap();
            assert_eq!(ours, generic, "{layout:?}");
        }
    }
}
