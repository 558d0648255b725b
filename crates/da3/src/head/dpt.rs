//! The DPT head of the mono and metric models (`model/dpt.py`): depth and sky at image
//! resolution from one fusion chain. No token LayerNorm (`norm_type="idt"`) and no UV
//! embeddings (`pos_embed=False`).

use burn::module::Module;
use burn::tensor::activation::relu;
use burn::tensor::{backend::Backend, Tensor};

use super::fusion::FusionChain;
use super::reassemble::{channel, OutputNeck, Reassemble};
use super::upsample::resize_bilinear_aligned;
use crate::config::{HeadConfig, PATCH_SIZE};
use crate::nn::{Conv2d, ConvSpec};
use crate::weights::WeightLoader;

/// Outputs of the DPT head, per frame (BS = batch × views).
#[derive(Debug, Clone)]
pub struct DptOutput<B: Backend> {
    /// Depth `exp(c0)`: [BS, H, W].
    pub depth: Tensor<B, 3>,
    /// Sky score `relu(s)`: [BS, H, W] (< 0.3 counts as non-sky, ≥ 0.5 as sky in outputs).
    pub sky: Tensor<B, 3>,
}

/// The DPT head with its sky branch.
#[derive(Module, Debug)]
pub struct Dpt<B: Backend> {
    reassemble: Reassemble<B>,
    fusion: FusionChain<B>,
    output_conv1: Conv2d<B>,
    output_conv2: OutputNeck<B>,
    sky_output_conv2: OutputNeck<B>,
}

impl<B: Backend> Dpt<B> {
    /// Loads the head stored under `prefix` (e.g. `model.head`).
    pub fn load(w: &mut WeightLoader<B>, prefix: &str, cfg: &HeadConfig) -> Self {
        let f = cfg.features;
        let scratch = format!("{prefix}.scratch");
        Self {
            reassemble: Reassemble::load(w, prefix, cfg),
            fusion: FusionChain::load(w, &scratch, "", f),
            output_conv1: Conv2d::load(w, &format!("{scratch}.output_conv1"), ConvSpec::same(f, f / 2, 3)),
            output_conv2: OutputNeck::load(w, &format!("{scratch}.output_conv2"), f / 2, 1),
            sky_output_conv2: OutputNeck::load(w, &format!("{scratch}.sky_output_conv2"), f / 2, 1),
        }
    }

    /// Runs the head on the four backbone outputs, each [BS, N, dim_in] (N row-major patch
    /// tokens of an `h`×`w` image). Frames run in chunks of [`super::frames_per_chunk`]
    /// (`chunk_size` of the reference's `DPT.forward`), which bounds the memory of many frames.
    pub fn forward(&self, feats: [Tensor<B, 3>; 4], h: usize, w: usize) -> DptOutput<B> {
        let (bs, chunk) = (feats[0].dims()[0], super::frames_per_chunk::<B>());
        if bs <= chunk {
            return self.forward_chunk(feats, h, w);
        }
        let (mut depth, mut sky) = (Vec::new(), Vec::new());
        for s0 in (0..bs).step_by(chunk) {
            let len = chunk.min(bs - s0);
            let out = self.forward_chunk(feats.clone().map(|f| f.narrow(0, s0, len)), h, w);
            depth.push(out.depth);
            sky.push(out.sky);
        }
        DptOutput { depth: Tensor::cat(depth, 0), sky: Tensor::cat(sky, 0) }
    }

    /// The head on one chunk of frames (`DPT._forward_impl`).
    fn forward_chunk(&self, feats: [Tensor<B, 3>; 4], h: usize, w: usize) -> DptOutput<B> {
        let (ph, pw) = (h / PATCH_SIZE, w / PATCH_SIZE);
        let level = |k: usize, tokens: Tensor<B, 3>| {
            let [bs, n, c] = tokens.dims();
            assert_eq!(n, ph * pw, "head stage {k}: {n} tokens for a {ph}x{pw} patch grid");
            let x = tokens.reshape([bs, ph, pw, c]).permute([0, 3, 1, 2]); // [BS, C, ph, pw], a view (see dualdpt)
            self.reassemble.resize_adapt(k, self.reassemble.project(k, x))
        };
        let [f0, f1, f2, f3] = feats;
        let levels = [level(0, f0), level(1, f1), level(2, f2), level(3, f3)];
        let x = self.fusion.forward(&levels); // [BS, F, 8ph, 8pw]
        let x = self.output_conv1.forward(x); // [BS, F/2, 8ph, 8pw]
        let x = resize_bilinear_aligned(x, [ph * PATCH_SIZE, pw * PATCH_SIZE]); // [BS, F/2, H, W]
        let depth = channel(&self.output_conv2.forward(x.clone()), 0).exp();
        let sky = relu(channel(&self.sky_output_conv2.forward(x), 0));
        DptOutput { depth, sky }
    }
}
