//! Patch embedding: a 14×14 stride-14 convolution that turns pixels into tokens.

use burn::module::Module;
use burn::tensor::{backend::Backend, Tensor};

use crate::config::PATCH_SIZE;
use crate::nn::{Conv2d, ConvSpec};
use crate::weights::WeightLoader;

/// `patch_embed.proj`: Conv2d(3, D, k=14, s=14).
#[derive(Module, Debug)]
pub struct PatchEmbed<B: Backend> {
    proj: Conv2d<B>,
}

impl<B: Backend> PatchEmbed<B> {
    /// Loads `{prefix}.proj.{weight,bias}`.
    pub fn load(w: &mut WeightLoader<B>, prefix: &str, embed_dim: usize) -> Self {
        let spec = ConvSpec { c_in: 3, c_out: embed_dim, kernel: PATCH_SIZE, stride: PATCH_SIZE, padding: 0, bias: true };
        Self { proj: Conv2d::load(w, &format!("{prefix}.proj"), spec) }
    }

    /// The embedding with its convolution weights cast to `dtype` (see [`crate::precision`]).
    pub fn with_compute_dtype(self, dtype: burn::tensor::FloatDType) -> Self {
        Self { proj: self.proj.map(&mut crate::precision::CastParams::new(dtype)) }
    }

    /// [N, 3, H, W] -> [N, (H/14)·(W/14), D], patches in row-major order, in the convolution
    /// weights' float format.
    pub fn forward(&self, images: Tensor<B, 4>) -> Tensor<B, 3> {
        let x = self.proj.forward(images); // [N, D, h, w]
        x.flatten::<3>(2, 3).swap_dims(1, 2) // [N, h·w, D]
    }
}
