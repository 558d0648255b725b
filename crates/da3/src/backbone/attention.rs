//! Multi-head self-attention of the backbone, and [`attend`]: the one attention function
//! every attention in the crate goes through (so faster kernels replace it in one place).

use burn::module::Module;
use burn::tensor::{backend::Backend, Tensor};

use super::rope::RopeTable;
use crate::nn::{LayerNorm, Linear};
use crate::weights::WeightLoader;

/// Eps of the QK-norm LayerNorms (PyTorch default; the blocks' own norms use 1e-6).
const QK_NORM_EPS: f64 = 1e-5;

/// Softmax attention `softmax(q kᵀ / sqrt(hd)) v` over [B, heads, T, hd] tensors.
///
/// Runs the fastest correct implementation measured on `B` (chosen, with the measurements, in
/// [`crate::kernels::attention::default_path`]): our flash kernels on the CubeCL backends they
/// serve, Burn's `attention` op elsewhere (a tiled online-softmax loop on `flex`). None of them
/// materializes the T×T score matrix of global attention over all views.
pub fn attend<B: Backend>(q: Tensor<B, 4>, k: Tensor<B, 4>, v: Tensor<B, 4>) -> Tensor<B, 4> {
    crate::kernels::attention::attend_default(q, k, v)
}

/// `attn`: fused qkv projection, optional QK-norm and RoPE, attention, output projection.
#[derive(Module, Debug)]
pub struct SelfAttention<B: Backend> {
    qkv: Linear<B>,
    proj: Linear<B>,
    q_norm: Option<LayerNorm<B>>,
    k_norm: Option<LayerNorm<B>>,
    num_heads: usize,
}

impl<B: Backend> SelfAttention<B> {
    /// Loads `{prefix}.qkv`, `{prefix}.proj` and, with `qk_norm`, `{prefix}.{q,k}_norm`.
    pub fn load(w: &mut WeightLoader<B>, prefix: &str, dim: usize, num_heads: usize, qk_norm: bool) -> Self {
        let hd = dim / num_heads;
        let norm = |w: &mut WeightLoader<B>, name: &str| {
            qk_norm.then(|| LayerNorm::load(w, &format!("{prefix}.{name}"), hd, QK_NORM_EPS))
        };
        Self {
            qkv: Linear::load(w, &format!("{prefix}.qkv"), dim, 3 * dim, true),
            proj: Linear::load(w, &format!("{prefix}.proj"), dim, dim, true),
            q_norm: norm(w, "q_norm"),
            k_norm: norm(w, "k_norm"),
            num_heads,
        }
    }

    /// [B, T, D] -> [B, T, D]; `rope` rotates q and k when given.
    pub fn forward(&self, x: Tensor<B, 3>, rope: Option<&RopeTable<B>>) -> Tensor<B, 3> {
        let [b, t, d] = x.dims();
        let hd = d / self.num_heads;
        // Rows of the qkv output are [q (head-major) | k | v].
        let heads = self.num_heads;
        let (mut q, mut k, v) = if crate::kernels::reads_strided_views::<B>() {
            // Views only (no copies): our CPU kernels read q, k, v through their strides.
            let qkv = self.qkv.forward(x).reshape([b, t, 3 * heads, hd]).swap_dims(1, 2); // [B, 3·heads, T, hd]
            let take = |i: usize| qkv.clone().narrow(1, i * heads, heads); // [B, heads, T, hd]
            (take(0), take(1), take(2))
        } else {
            // GPU backends: contiguous copies at offset 0 (a view's buffer offset need not meet
            // WebGPU's 256-byte binding alignment, which broke the browser build).
            let qkv = self.qkv.forward(x).reshape([b, t, 3, heads, hd]); // [B, T, 3, heads, hd]
            let take = |i: usize| qkv.clone().narrow(2, i, 1).reshape([b, t, heads, hd]).swap_dims(1, 2); // [B, heads, T, hd]
            (take(0), take(1), take(2))
        };
        if let (Some(qn), Some(kn)) = (&self.q_norm, &self.k_norm) {
            q = qn.forward(q);
            k = kn.forward(k);
        }
        if let Some(rope) = rope {
            q = rope.apply(q);
            k = rope.apply(k);
        }
        let out = attend(q, k, v).swap_dims(1, 2).reshape([b, t, d]); // [B, T, D]
        self.proj.forward(out)
    }
}
