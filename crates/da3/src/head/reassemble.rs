//! Pieces shared by the DPT-style heads: the per-stage reassembly of backbone tokens into a
//! feature pyramid, and the small convolutional output neck.

use burn::module::Module;
use burn::tensor::activation::relu;
use burn::tensor::{backend::Backend, Tensor};

use crate::config::HeadConfig;
use crate::nn::{Conv2d, ConvSpec, ConvTranspose2d};
use crate::weights::WeightLoader;

/// Width of the hidden layer of every output neck (`head_features_2`).
pub const NECK_HIDDEN: usize = 32;

/// `projects.k` (1×1), `resize_layers.k` (×4, ×2, identity, /2) and `scratch.layer{k+1}_rn`
/// (3×3, no bias): token maps [BS, C, ph, pw] -> pyramid level k [BS, F, h_k, w_k].
#[derive(Module, Debug)]
pub struct Reassemble<B: Backend> {
    projects: Vec<Conv2d<B>>,
    resize_up4: ConvTranspose2d<B>,
    resize_up2: ConvTranspose2d<B>,
    resize_down2: Conv2d<B>,
    layer_rn: Vec<Conv2d<B>>,
}

impl<B: Backend> Reassemble<B> {
    /// Loads the stages of the head at `prefix` (e.g. `model.head`).
    pub fn load(w: &mut WeightLoader<B>, prefix: &str, cfg: &HeadConfig) -> Self {
        let (oc, f) = (cfg.out_channels, cfg.features);
        let down2 = ConvSpec { c_in: oc[3], c_out: oc[3], kernel: 3, stride: 2, padding: 1, bias: true };
        Self {
            projects: (0..4)
                .map(|k| Conv2d::load(w, &format!("{prefix}.projects.{k}"), ConvSpec::same(cfg.dim_in, oc[k], 1)))
                .collect(),
            resize_up4: ConvTranspose2d::load(w, &format!("{prefix}.resize_layers.0"), oc[0], 4),
            resize_up2: ConvTranspose2d::load(w, &format!("{prefix}.resize_layers.1"), oc[1], 2),
            resize_down2: Conv2d::load(w, &format!("{prefix}.resize_layers.3"), down2),
            layer_rn: (0..4)
                .map(|k| {
                    let spec = ConvSpec { bias: false, ..ConvSpec::same(oc[k], f, 3) };
                    Conv2d::load(w, &format!("{prefix}.scratch.layer{}_rn", k + 1), spec)
                })
                .collect(),
        }
    }

    /// Stage `k` projection: [BS, C, ph, pw] -> [BS, oc_k, ph, pw].
    pub fn project(&self, k: usize, x: Tensor<B, 4>) -> Tensor<B, 4> {
        self.projects[k].forward(x)
    }

    /// Stage `k` resize and adapter: [BS, oc_k, ph, pw] -> [BS, F, ph·{4,2,1,½}, pw·{4,2,1,½}].
    pub fn resize_adapt(&self, k: usize, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let x = match k {
            0 => self.resize_up4.forward(x),   // [BS, oc0, 4ph, 4pw]
            1 => self.resize_up2.forward(x),   // [BS, oc1, 2ph, 2pw]
            2 => x,                            // [BS, oc2, ph, pw]
            _ => self.resize_down2.forward(x), // [BS, oc3, ⌈ph/2⌉, ⌈pw/2⌉]
        };
        self.layer_rn[k].forward(x)
    }
}

/// `Conv3×3(F/2 → 32) → ReLU → Conv1×1(32 → out)` (`output_conv2`, `sky_output_conv2`).
#[derive(Module, Debug)]
pub struct OutputNeck<B: Backend> {
    hidden: Conv2d<B>,
    out: Conv2d<B>,
}

impl<B: Backend> OutputNeck<B> {
    /// Loads `{prefix}.0` and `{prefix}.2`.
    pub fn load(w: &mut WeightLoader<B>, prefix: &str, c_in: usize, c_out: usize) -> Self {
        Self {
            hidden: Conv2d::load(w, &format!("{prefix}.0"), ConvSpec::same(c_in, NECK_HIDDEN, 3)),
            out: Conv2d::load(w, &format!("{prefix}.2"), ConvSpec::same(NECK_HIDDEN, c_out, 1)),
        }
    }

    /// [BS, F/2, H, W] -> [BS, out, H, W].
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        self.out.forward(relu(self.hidden.forward(x)))
    }
}

/// Channel `c` of a map: [N, C, h, w] -> [N, h, w].
pub fn channel<B: Backend>(x: &Tensor<B, 4>, c: usize) -> Tensor<B, 3> {
    x.clone().narrow(1, c, 1).squeeze_dim(1)
}
