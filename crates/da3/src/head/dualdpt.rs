//! The DualDPT head of the DA3 main series (`model/dualdpt.py`): depth + confidence at image
//! resolution from the main branch, rays + confidence at 8× the patch grid from the aux branch.
//!
//! The aux branch runs only when its rays are asked for. The reference always runs it and then
//! deletes the rays unless `use_ray_pose` is set (CameraDec gives the poses otherwise), so on
//! its default path the branch is pure cost: a second fusion chain and six 3×3 convolutions at
//! 8× the patch grid. By our count of its convolutions (direct-convolution FLOPs) that is
//! ~19 of ~90 GFLOP of a da3-small pass at 504×378; measured, skipping it took 15–20 % off
//! the pass on CPU (`tools/bench/ab.sh`, 2 threads, against the build that still ran it).

use burn::module::Module;
use burn::tensor::activation::relu;
use burn::tensor::{backend::Backend, Tensor};

use super::fusion::FusionChain;
use super::reassemble::{channel, OutputNeck, Reassemble, NECK_HIDDEN as HIDDEN_OUT};
use super::upsample::resize_bilinear_aligned;
use super::uv_embed::add_uv_embedding;
use crate::config::{HeadConfig, PATCH_SIZE};
use crate::nn::{Conv2d, ConvSpec, LayerNorm};
use crate::size_cache::SizeCache;
use crate::weights::WeightLoader;

/// Epsilon of the head's LayerNorms (PyTorch default).
const LN_EPS: f64 = 1e-5;

/// Index of the only aux pyramid level whose output is used (the finest).
const AUX_LEVEL: usize = 3;

/// Outputs of the head, per frame (BS = batch × views).
#[derive(Debug, Clone)]
pub struct HeadOutput<B: Backend> {
    /// Depth `exp(c0)`: [BS, H, W].
    pub depth: Tensor<B, 3>,
    /// Depth confidence `exp(c1) + 1`: [BS, H, W].
    pub depth_conf: Tensor<B, 3>,
    /// The aux branch's rays, when asked for (see the module doc).
    pub rays: Option<HeadRays<B>>,
}

/// The aux branch's output, per frame (BS = batch × views).
#[derive(Debug, Clone)]
pub struct HeadRays<B: Backend> {
    /// Ray map, linear (direction c0..2, camera centre c3..5): [BS, 8ph, 8pw, 6].
    pub ray: Tensor<B, 4>,
    /// Ray confidence `exp(c6) + 1`: [BS, 8ph, 8pw].
    pub conf: Tensor<B, 3>,
}

/// The DualDPT head: per-stage projection and resizing, two independent fusion chains.
#[derive(Module, Debug)]
pub struct DualDpt<B: Backend> {
    /// LayerNorm over the 2D-wide tokens (`norm`).
    norm: LayerNorm<B>,
    /// Projections, resize layers and 3×3 adapters of the four stages.
    reassemble: Reassemble<B>,
    /// Main fusion chain (`scratch.refinenet{1..4}`).
    fusion: FusionChain<B>,
    /// Aux fusion chain (`scratch.refinenet{1..4}_aux`).
    fusion_aux: FusionChain<B>,
    /// 3×3 F -> F/2 (`scratch.output_conv1`).
    output_conv1: Conv2d<B>,
    /// 3×3 F/2 -> 32 -> ReLU -> 1×1 -> 2 (`scratch.output_conv2`).
    output_conv2: OutputNeck<B>,
    /// Five plain 3×3 convs F -> F/2 -> F -> F/2 -> F -> F/2 (`scratch.output_conv1_aux.3`).
    aux_conv1: Vec<Conv2d<B>>,
    /// 3×3 F/2 -> 32 (`scratch.output_conv2_aux.3.0`).
    aux_conv2_hidden: Conv2d<B>,
    /// LayerNorm(32) over channels, shared by all aux levels (`scratch.output_conv2_aux.*.2`).
    aux_norm: LayerNorm<B>,
    /// 1×1 32 -> 7 (`scratch.output_conv2_aux.3.5`).
    aux_conv2_out: Conv2d<B>,
    /// UV embeddings per map size (see [`crate::size_cache`]).
    #[module(skip)]
    cache: SizeCache,
}

impl<B: Backend> DualDpt<B> {
    /// Loads the head stored under `prefix` (e.g. `model.head`). The unused aux levels 0..2
    /// are marked as ignored, not loaded.
    pub fn load(w: &mut WeightLoader<B>, prefix: &str, cfg: &HeadConfig) -> Self {
        let f = cfg.features;
        let scratch = format!("{prefix}.scratch");
        Self {
            norm: LayerNorm::load(w, &format!("{prefix}.norm"), cfg.dim_in, LN_EPS),
            reassemble: Reassemble::load(w, prefix, cfg),
            fusion: FusionChain::load(w, &scratch, "", f),
            fusion_aux: FusionChain::load(w, &scratch, "_aux", f),
            output_conv1: Conv2d::load(w, &format!("{scratch}.output_conv1"), ConvSpec::same(f, f / 2, 3)),
            output_conv2: OutputNeck::load(w, &format!("{scratch}.output_conv2"), f / 2, 2),
            aux_conv1: load_aux_conv1(w, &scratch, f),
            aux_conv2_hidden: Conv2d::load(
                w,
                &format!("{scratch}.output_conv2_aux.{AUX_LEVEL}.0"),
                ConvSpec::same(f / 2, HIDDEN_OUT, 3),
            ),
            aux_norm: load_aux_norm(w, &scratch),
            aux_conv2_out: Conv2d::load(
                w,
                &format!("{scratch}.output_conv2_aux.{AUX_LEVEL}.5"),
                ConvSpec::same(HIDDEN_OUT, 7, 1),
            ),
            cache: SizeCache::default(),
        }
    }

    /// The cache of UV embeddings.
    pub fn size_cache(&self) -> &SizeCache {
        &self.cache
    }

    /// Runs the head on the four backbone outputs `feats`, each [BS, N, dim_in] with
    /// N = (h/14)·(w/14) row-major patch tokens, for images of `h`×`w` pixels; the aux
    /// branch (rays) runs only if `rays`.
    pub fn forward(&self, feats: [Tensor<B, 3>; 4], h: usize, w: usize, rays: bool) -> HeadOutput<B> {
        let (bs, chunk) = (feats[0].dims()[0], super::frames_per_chunk::<B>());
        if bs <= chunk {
            return self.forward_chunk(feats, h, w, rays);
        }
        let chunks: Vec<HeadOutput<B>> = (0..bs)
            .step_by(chunk)
            .map(|s0| {
                let len = chunk.min(bs - s0);
                self.forward_chunk(feats.clone().map(|f| f.narrow(0, s0, len)), h, w, rays)
            })
            .collect();
        concat_outputs(chunks)
    }

    /// The head on one chunk of frames (`DualDPT._forward_impl`).
    fn forward_chunk(&self, feats: [Tensor<B, 3>; 4], h: usize, w: usize, rays: bool) -> HeadOutput<B> {
        let (ph, pw) = (h / PATCH_SIZE, w / PATCH_SIZE);
        let aspect = w as f64 / h as f64;
        // Stage k, then its 3×3 adapter: [BS, N, dim_in] -> [BS, F, h_k, w_k].
        let adapted = |k: usize, x| self.stage(k, x, ph, pw, aspect);
        let [f0, f1, f2, f3] = feats;
        let layers = [adapted(0, f0), adapted(1, f1), adapted(2, f2), adapted(3, f3)];
        let (depth, depth_conf) = self.main_branch(&layers, ph, pw, aspect);
        let rays = rays.then(|| self.aux_branch(&layers, aspect));
        HeadOutput { depth, depth_conf, rays }
    }

    /// Stage `k`: norm, tokens to map, projection, UV embedding, resize, adapter:
    /// [BS, ph·pw, dim_in] -> [BS, F, ph·{4,2,1,½}, pw·{4,2,1,½}].
    fn stage(&self, k: usize, tokens: Tensor<B, 3>, ph: usize, pw: usize, aspect: f64) -> Tensor<B, 4> {
        let [bs, n, c] = tokens.dims();
        assert_eq!(n, ph * pw, "head stage {k}: {n} tokens for a {ph}x{pw} patch grid");
        let x = self.norm.forward(tokens); // [BS, N, C]
        // A view, not a copy: the projection reads it through its strides on flex (swapping
        // first and then reshaping made burn-flex copy the map on one thread).
        let x = x.reshape([bs, ph, pw, c]).permute([0, 3, 1, 2]); // [BS, C, ph, pw]
        let x = self.reassemble.project(k, x); // [BS, oc_k, ph, pw]
        self.reassemble.resize_adapt(k, add_uv_embedding(x, aspect, &self.cache))
    }

    /// Depth and its confidence at image resolution: each [BS, 14ph, 14pw].
    fn main_branch(
        &self,
        layers: &[Tensor<B, 4>; 4],
        ph: usize,
        pw: usize,
        aspect: f64,
    ) -> (Tensor<B, 3>, Tensor<B, 3>) {
        let x = self.fusion.forward(layers); // [BS, F, 8ph, 8pw]
        let x = self.output_conv1.forward(x); // [BS, F/2, 8ph, 8pw]
        let x = resize_bilinear_aligned(x, [ph * PATCH_SIZE, pw * PATCH_SIZE]); // [BS, F/2, H, W]
        let x = add_uv_embedding(x, aspect, &self.cache);
        let logits = self.output_conv2.forward(x); // [BS, 2, H, W]
        let depth = channel(&logits, 0).exp();
        let conf = channel(&logits, 1).exp() + 1.0;
        (depth, conf)
    }

    /// Rays [BS, 8ph, 8pw, 6] and their confidence [BS, 8ph, 8pw] from the finest aux level.
    fn aux_branch(&self, layers: &[Tensor<B, 4>; 4], aspect: f64) -> HeadRays<B> {
        let mut x = self.fusion_aux.forward(layers); // [BS, F, 8ph, 8pw]
        for conv in &self.aux_conv1 {
            x = conv.forward(x); // [BS, F/2 or F, 8ph, 8pw]
        }
        let x = add_uv_embedding(x, aspect, &self.cache); // [BS, F/2, 8ph, 8pw]
        let x = self.aux_conv2_hidden.forward(x); // [BS, 32, 8ph, 8pw]
        let x = self.aux_norm.forward(x.permute([0, 2, 3, 1])).permute([0, 3, 1, 2]);
        let logits = self.aux_conv2_out.forward(relu(x)); // [BS, 7, 8ph, 8pw]
        let ray = logits.clone().narrow(1, 0, 6).permute([0, 2, 3, 1]); // [BS, 8ph, 8pw, 6]
        let conf = channel(&logits, 6).exp() + 1.0; // [BS, 8ph, 8pw]
        HeadRays { ray, conf }
    }
}

/// The five convs of `scratch.output_conv1_aux.3`; marks levels 0..2 of both aux stacks ignored.
fn load_aux_conv1<B: Backend>(w: &mut WeightLoader<B>, scratch: &str, f: usize) -> Vec<Conv2d<B>> {
    for level in (0..4).filter(|&l| l != AUX_LEVEL) {
        w.ignore_prefix(&format!("{scratch}.output_conv1_aux.{level}."));
        w.ignore_prefix(&format!("{scratch}.output_conv2_aux.{level}."));
    }
    let widths = [f, f / 2, f, f / 2, f, f / 2];
    (0..5)
        .map(|i| {
            let key = format!("{scratch}.output_conv1_aux.{AUX_LEVEL}.{i}");
            Conv2d::load(w, &key, ConvSpec::same(widths[i], widths[i + 1], 3))
        })
        .collect()
}

/// The aux LayerNorm(32). PyTorch shares one module across the 4 levels, so a checkpoint
/// written by `safetensors.save_model` may hold it under any one level (typically `.0.2`);
/// whichever copy exists is used and all aliases count as known.
fn load_aux_norm<B: Backend>(w: &mut WeightLoader<B>, scratch: &str) -> LayerNorm<B> {
    let keys = |name: &str| -> Vec<String> {
        [AUX_LEVEL, 0, 1, 2].iter().map(|l| format!("{scratch}.output_conv2_aux.{l}.2.{name}")).collect()
    };
    let weight = w.tensor_any(&keys("weight"), [HIDDEN_OUT]);
    let bias = w.tensor_any(&keys("bias"), [HIDDEN_OUT]);
    LayerNorm::from_tensors(weight, bias, LN_EPS)
}

/// Concatenates per-chunk outputs along the frame dimension (all chunks have rays or none).
fn concat_outputs<B: Backend>(chunks: Vec<HeadOutput<B>>) -> HeadOutput<B> {
    let mut depth = Vec::new();
    let mut depth_conf = Vec::new();
    let mut ray = Vec::new();
    let mut ray_conf = Vec::new();
    for c in chunks {
        depth.push(c.depth);
        depth_conf.push(c.depth_conf);
        if let Some(rays) = c.rays {
            ray.push(rays.ray);
            ray_conf.push(rays.conf);
        }
    }
    let rays = (!ray.is_empty()).then(|| HeadRays { ray: Tensor::cat(ray, 0), conf: Tensor::cat(ray_conf, 0) });
    HeadOutput { depth: Tensor::cat(depth, 0), depth_conf: Tensor::cat(depth_conf, 0), rays }
}
