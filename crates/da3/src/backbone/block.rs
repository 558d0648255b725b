//! The pre-norm transformer block with LayerScale, and its two FFN kinds.

use burn::module::{Module, Param};
use crate::kernels::activation::gelu;
use burn::tensor::activation::silu;
use burn::tensor::{backend::Backend, DType, FloatDType, Tensor};

use super::attention::SelfAttention;
use super::rope::RopeTable;
use crate::config::{BackboneConfig, FfnKind};
use crate::kernels::broadcast::add_scaled;
use crate::nn::{LayerNorm, Linear};
use crate::precision::CastParams;
use crate::weights::WeightLoader;

/// Eps of the backbone blocks' own LayerNorms (`ln_eps` in the reference).
pub const BACKBONE_NORM_EPS: f64 = 1e-6;

/// The shape of one transformer block.
#[derive(Debug, Clone, Copy)]
pub struct BlockSpec {
    /// Token width D.
    pub dim: usize,
    /// Attention heads.
    pub num_heads: usize,
    /// FFN kind.
    pub ffn: FfnKind,
    /// FFN hidden width.
    pub ffn_hidden: usize,
    /// Eps of `norm1` and `norm2`.
    pub norm_eps: f64,
    /// Whether q and k are LayerNorm-ed per head.
    pub qk_norm: bool,
}

impl BlockSpec {
    /// Block `i` of a DINOv2 backbone.
    pub fn backbone(cfg: &BackboneConfig, i: usize) -> Self {
        Self {
            dim: cfg.embed_dim,
            num_heads: cfg.num_heads,
            ffn: cfg.ffn,
            ffn_hidden: cfg.ffn_hidden(),
            norm_eps: BACKBONE_NORM_EPS,
            qk_norm: cfg.qknorm_start.is_some_and(|s| i >= s),
        }
    }
}

/// `fc1 → exact GELU → fc2` (vits, vitb, vitl).
#[derive(Module, Debug)]
pub struct Mlp<B: Backend> {
    fc1: Linear<B>,
    fc2: Linear<B>,
}

/// `w12 → silu(x1)·x2 → w3` (vitg).
#[derive(Module, Debug)]
pub struct SwiGlu<B: Backend> {
    w12: Linear<B>,
    w3: Linear<B>,
}

/// The feed-forward network of a block.
#[derive(Module, Debug)]
pub enum Ffn<B: Backend> {
    /// GELU MLP.
    Mlp(Mlp<B>),
    /// SwiGLU.
    SwiGlu(SwiGlu<B>),
}

impl<B: Backend> Ffn<B> {
    fn load(w: &mut WeightLoader<B>, prefix: &str, spec: &BlockSpec) -> Self {
        let (d, h) = (spec.dim, spec.ffn_hidden);
        match spec.ffn {
            FfnKind::Mlp => Self::Mlp(Mlp {
                fc1: Linear::load(w, &format!("{prefix}.fc1"), d, h, true),
                fc2: Linear::load(w, &format!("{prefix}.fc2"), h, d, true),
            }),
            FfnKind::SwiGlu => Self::SwiGlu(SwiGlu {
                w12: Linear::load(w, &format!("{prefix}.w12"), d, 2 * h, true),
                w3: Linear::load(w, &format!("{prefix}.w3"), h, d, true),
            }),
        }
    }

    /// [B, T, D] -> [B, T, D].
    fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        match self {
            Self::Mlp(m) => m.fc2.forward(gelu(m.fc1.forward(x))),
            Self::SwiGlu(m) => {
                let x12 = m.w12.forward(x); // [B, T, 2h]
                let h = x12.dims()[2] / 2;
                let gated = silu(x12.clone().narrow(2, 0, h)) * x12.narrow(2, h, h);
                m.w3.forward(gated)
            }
        }
    }
}

/// `x = x + ls1·attn(norm1(x)); x = x + ls2·ffn(norm2(x))`.
#[derive(Module, Debug)]
pub struct Block<B: Backend> {
    norm1: LayerNorm<B>,
    attn: SelfAttention<B>,
    ls1: Param<Tensor<B, 1>>,
    norm2: LayerNorm<B>,
    mlp: Ffn<B>,
    ls2: Param<Tensor<B, 1>>,
}

impl<B: Backend> Block<B> {
    /// Loads block `{prefix}` (e.g. `model.backbone.pretrained.blocks.3`).
    pub fn load(w: &mut WeightLoader<B>, prefix: &str, spec: &BlockSpec) -> Self {
        let d = spec.dim;
        Self {
            norm1: LayerNorm::load(w, &format!("{prefix}.norm1"), d, spec.norm_eps),
            attn: SelfAttention::load(w, &format!("{prefix}.attn"), d, spec.num_heads, spec.qk_norm),
            ls1: Param::from_tensor(w.tensor(&format!("{prefix}.ls1.gamma"), [d])),
            norm2: LayerNorm::load(w, &format!("{prefix}.norm2"), d, spec.norm_eps),
            mlp: Ffn::load(w, &format!("{prefix}.mlp"), spec),
            ls2: Param::from_tensor(w.tensor(&format!("{prefix}.ls2.gamma"), [d])),
        }
    }

    /// The block with its attention and FFN weights (not its LayerNorms or LayerScales) cast
    /// to `dtype` (see [`crate::precision`]).
    pub fn with_compute_dtype(self, dtype: FloatDType) -> Self {
        let mut cast = CastParams::new(dtype);
        Self { attn: self.attn.map(&mut cast), mlp: self.mlp.map(&mut cast), ..self }
    }

    /// [B, T, D] -> [B, T, D]. The residual stream keeps the input's format (f32); the attention
    /// and FFN run in their weights' format and are cast back before the LayerScale.
    pub fn forward(&self, x: Tensor<B, 3>, rope: Option<&RopeTable<B>>) -> Tensor<B, 3> {
        let dtype = x.dtype();
        let attn = self.attn.forward(self.norm1.forward(x.clone()), rope).cast(dtype); // [B, T, D]
        let x = add_scaled(x, attn, &self.ls1.val()); // x + attn · ls1
        let ffn = self.mlp.forward(self.norm2.forward(x.clone())).cast(dtype);
        add_scaled(x, ffn, &self.ls2.val()) // x + ffn · ls2
    }

    /// The float format of the block's matrix products (its `fc1`/`w12` weight's).
    pub fn compute_dtype(&self) -> DType {
        match &self.mlp {
            Ffn::Mlp(m) => m.fc1.weight.val().dtype(),
            Ffn::SwiGlu(m) => m.w12.weight.val().dtype(),
        }
    }
}
