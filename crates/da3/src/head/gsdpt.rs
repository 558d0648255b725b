//! The GSDPT head of da3-giant and the nested model (`model/gsdpt.py`): per-pixel raw 3D
//! Gaussian parameters at image resolution.
//!
//! A DPT without token norm (`norm_type="idt"`) and with UV embeddings (`pos_embed=True`):
//! reassembly and one fusion chain as in the other heads, `output_conv1` before the bilinear
//! resize to (H, W), then the **image merger** (three 3×3 convs with GELU on the
//! ImageNet-normalized input images) is added, the UV embedding is added again, and
//! `output_conv2` maps F/2 → 32 → 38 channels. Activation (`activate_head_gs`): the first 37
//! channels stay linear, the last one is a sigmoid density (= the opacity at inference, since
//! `map_pdf_to_opacity` has exponent 1 then).

use burn::module::Module;
use crate::kernels::activation::gelu;
use burn::tensor::activation::sigmoid;
use burn::tensor::{backend::Backend, Tensor};

use super::fusion::FusionChain;
use super::reassemble::{channel, OutputNeck, Reassemble};
use super::upsample::resize_bilinear_aligned;
use super::uv_embed::add_uv_embedding;
use crate::config::{HeadConfig, PATCH_SIZE};
use crate::nn::{Conv2d, ConvSpec};
use crate::size_cache::SizeCache;
use crate::weights::WeightLoader;

/// Channels of the head's output: 37 raw Gaussian parameters and one density.
pub const GS_OUT_CHANNELS: usize = 38;

/// Raw (linear) Gaussian parameters per pixel: offset_xy 2, scales 3, quaternion 4, SH 27,
/// depth offset 1 (see [`crate::gaussians`]).
pub const GS_RAW_CHANNELS: usize = GS_OUT_CHANNELS - 1;

/// Outputs of the GS head, per frame (BS = batch × views).
#[derive(Debug, Clone)]
pub struct GsHeadOutput<B: Backend> {
    /// Raw Gaussian parameters, channels last: [BS, H, W, 37].
    pub raw: Tensor<B, 4>,
    /// Density `sigmoid(c37)` = opacity: [BS, H, W].
    pub density: Tensor<B, 3>,
}

/// `images_merger`: Conv3×3(3 → F/8) → GELU → Conv3×3(→ F/4) → GELU → Conv3×3(→ F/2) → GELU.
#[derive(Module, Debug)]
pub struct ImagesMerger<B: Backend> {
    convs: Vec<Conv2d<B>>,
}

impl<B: Backend> ImagesMerger<B> {
    /// Loads `{prefix}.0`, `.2` and `.4` (the GELUs at 1, 3, 5 have no weights).
    pub fn load(w: &mut WeightLoader<B>, prefix: &str, features: usize) -> Self {
        let widths = [3, features / 8, features / 4, features / 2];
        let convs = (0..3)
            .map(|i| Conv2d::load(w, &format!("{prefix}.{}", 2 * i), ConvSpec::same(widths[i], widths[i + 1], 3)))
            .collect();
        Self { convs }
    }

    /// Normalized images [BS, 3, H, W] -> [BS, F/2, H, W].
    pub fn forward(&self, images: Tensor<B, 4>) -> Tensor<B, 4> {
        self.convs.iter().fold(images, |x, conv| gelu(conv.forward(x)))
    }
}

/// The GSDPT head.
#[derive(Module, Debug)]
pub struct GsDpt<B: Backend> {
    reassemble: Reassemble<B>,
    fusion: FusionChain<B>,
    /// 3×3 F -> F/2 (`scratch.output_conv1`).
    output_conv1: Conv2d<B>,
    /// `images_merger`.
    images_merger: ImagesMerger<B>,
    /// 3×3 F/2 -> 32 -> ReLU -> 1×1 -> 38 (`scratch.output_conv2`).
    output_conv2: OutputNeck<B>,
    /// UV embeddings per map size (see [`crate::size_cache`]).
    #[module(skip)]
    cache: SizeCache,
}

impl<B: Backend> GsDpt<B> {
    /// Loads the head stored under `prefix` (e.g. `model.gs_head`); it has the widths of the
    /// model's main head (`configs/da3-giant.yaml` shares them).
    pub fn load(w: &mut WeightLoader<B>, prefix: &str, cfg: &HeadConfig) -> Self {
        let f = cfg.features;
        let scratch = format!("{prefix}.scratch");
        Self {
            reassemble: Reassemble::load(w, prefix, cfg),
            fusion: FusionChain::load(w, &scratch, "", f),
            output_conv1: Conv2d::load(w, &format!("{scratch}.output_conv1"), ConvSpec::same(f, f / 2, 3)),
            images_merger: ImagesMerger::load(w, &format!("{prefix}.images_merger"), f),
            output_conv2: OutputNeck::load(w, &format!("{scratch}.output_conv2"), f / 2, GS_OUT_CHANNELS),
            cache: SizeCache::default(),
        }
    }

    /// The cache of UV embeddings.
    pub fn size_cache(&self) -> &SizeCache {
        &self.cache
    }

    /// Runs the head on the four backbone outputs `feats`, each [BS, N, dim_in] (N row-major
    /// patch tokens), and the ImageNet-normalized `images` [BS, 3, H, W] they came from.
    pub fn forward(&self, feats: [Tensor<B, 3>; 4], images: Tensor<B, 4>) -> GsHeadOutput<B> {
        let (bs, chunk) = (feats[0].dims()[0], super::frames_per_chunk::<B>());
        if bs <= chunk {
            return self.forward_chunk(feats, images);
        }
        let (mut raw, mut density) = (Vec::new(), Vec::new());
        for s0 in (0..bs).step_by(chunk) {
            let len = chunk.min(bs - s0);
            let out = self.forward_chunk(feats.clone().map(|f| f.narrow(0, s0, len)), images.clone().narrow(0, s0, len));
            raw.push(out.raw);
            density.push(out.density);
        }
        GsHeadOutput { raw: Tensor::cat(raw, 0), density: Tensor::cat(density, 0) }
    }

    /// The head on one chunk of frames (`GSDPT._forward_impl`).
    fn forward_chunk(&self, feats: [Tensor<B, 3>; 4], images: Tensor<B, 4>) -> GsHeadOutput<B> {
        let [_, _, h, w] = images.dims();
        let (ph, pw) = (h / PATCH_SIZE, w / PATCH_SIZE);
        let aspect = w as f64 / h as f64;
        let level = |k: usize, tokens: Tensor<B, 3>| {
            let [bs, n, c] = tokens.dims();
            assert_eq!(n, ph * pw, "GS head stage {k}: {n} tokens for a {ph}x{pw} patch grid");
            let x = tokens.reshape([bs, ph, pw, c]).permute([0, 3, 1, 2]); // [BS, C, ph, pw], a view (see dualdpt)
            let x = add_uv_embedding(self.reassemble.project(k, x), aspect, &self.cache); // [BS, oc_k, ph, pw]
            self.reassemble.resize_adapt(k, x) // [BS, F, h_k, w_k]
        };
        let [f0, f1, f2, f3] = feats;
        let levels = [level(0, f0), level(1, f1), level(2, f2), level(3, f3)];
        let x = self.fusion.forward(&levels); // [BS, F, 8ph, 8pw]
        let x = self.output_conv1.forward(x); // [BS, F/2, 8ph, 8pw]
        let x = resize_bilinear_aligned(x, [ph * PATCH_SIZE, pw * PATCH_SIZE]); // [BS, F/2, H, W]
        let x = x + self.images_merger.forward(images); // [BS, F/2, H, W]
        let x = add_uv_embedding(x, aspect, &self.cache);
        let logits = self.output_conv2.forward(x); // [BS, 38, H, W]
        let raw = logits.clone().narrow(1, 0, GS_RAW_CHANNELS).permute([0, 2, 3, 1]); // [BS, H, W, 37]
        let density = sigmoid(channel(&logits, GS_RAW_CHANNELS)); // [BS, H, W]
        GsHeadOutput { raw, density }
    }
}
