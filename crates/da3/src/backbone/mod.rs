//! The DINOv2 backbone with DA3's alternating local (per-view) / global (all-view) attention.

pub mod attention;
pub mod block;
pub mod patch_embed;
pub mod pos_embed;
pub mod ref_view;
pub mod rope;

use burn::module::{Module, Param};
use burn::tensor::{backend::Backend, DType, FloatDType, Int, Tensor};

use self::block::{Block, BlockSpec};
use self::patch_embed::PatchEmbed;
use self::pos_embed::interpolate_pos_embed;
use self::ref_view::{reorder_indices, restore_indices, select_reference_view, RefViewStrategy, MIN_VIEWS_FOR_SELECTION};
use self::rope::{RopeLayout, RopeTable};
use crate::config::{BackboneConfig, PATCH_SIZE};
use crate::kernels::broadcast::add_to_each;
use crate::kernels::concat::cat_last_dim;
use crate::nn::LayerNorm;
use crate::size_cache::{SizeCache, SizeKey};
use crate::weights::WeightLoader;

/// Eps of the backbone's final norm (PyTorch default).
const FINAL_NORM_EPS: f64 = 1e-5;

/// Features of one out layer, as the heads consume them.
#[derive(Debug, Clone)]
pub struct LayerFeatures<B: Backend> {
    /// Patch tokens `[local ‖ norm(global)]` (or `norm(x)` without cat token), [B, S, N, C].
    pub patches: Tensor<B, 4>,
    /// The raw (un-normed) special token of each view, [B, S, C].
    pub camera_token: Tensor<B, 3>,
    /// The normed tokens with the special one, [B, S, 1+N, C] (contiguous): `patches` is its
    /// view from token 1; [`LayerFeatures::head_tokens`] flattens it without a copy.
    tokens: Tensor<B, 4>,
}

impl<B: Backend> LayerFeatures<B> {
    /// The patch tokens with the views flattened into the batch, [B·S, N, C]: a view of the
    /// contiguous normed tokens (reshaping `patches`, a view, would copy it on flex).
    pub fn head_tokens(&self) -> Tensor<B, 3> {
        let [b, s, n, c] = self.tokens.dims();
        self.tokens.clone().reshape([b * s, n, c]).narrow(1, 1, n - 1)
    }
}

/// Intermediate values recorded for parity tests and debugging.
#[derive(Debug, Default)]
pub struct BackboneTrace<B: Backend> {
    /// Tokens after patch embedding, cls token and positional embedding, [B, S, 1+N, D].
    pub tokens: Option<Tensor<B, 4>>,
    /// Output of every block, [B, S, 1+N, D] (in the reordered view order where reordered).
    pub blocks: Vec<Tensor<B, 4>>,
    /// The selected reference view per batch item, when selection ran.
    pub ref_index: Option<Tensor<B, 1, Int>>,
}

/// `backbone.pretrained`: patch embedding, tokens, blocks and final norm.
#[derive(Module, Debug)]
pub struct DinoV2<B: Backend> {
    patch_embed: PatchEmbed<B>,
    cls_token: Param<Tensor<B, 3>>,
    camera_token: Option<Param<Tensor<B, 3>>>,
    pos_embed: Param<Tensor<B, 3>>,
    blocks: Vec<Block<B>>,
    norm: LayerNorm<B>,
    #[module(skip)]
    config: BackboneConfig,
    /// Positional embeddings and RoPE tables per patch grid (see [`crate::size_cache`]).
    #[module(skip)]
    cache: SizeCache,
}

impl<B: Backend> DinoV2<B> {
    /// Loads `{prefix}.*` (e.g. `model.backbone.pretrained`).
    pub fn load(w: &mut WeightLoader<B>, prefix: &str, cfg: &BackboneConfig) -> Self {
        let d = cfg.embed_dim;
        let blocks = (0..cfg.depth)
            .map(|i| Block::load(w, &format!("{prefix}.blocks.{i}"), &BlockSpec::backbone(cfg, i)))
            .collect();
        Self {
            patch_embed: PatchEmbed::load(w, &format!("{prefix}.patch_embed"), d),
            cls_token: Param::from_tensor(w.tensor(&format!("{prefix}.cls_token"), [1, 1, d])),
            camera_token: cfg
                .alt_start
                .map(|_| Param::from_tensor(w.tensor(&format!("{prefix}.camera_token"), [1, 2, d]))),
            pos_embed: Param::from_tensor(w.tensor(&format!("{prefix}.pos_embed"), [1, 1 + cfg.pos_grid * cfg.pos_grid, d])),
            blocks,
            norm: LayerNorm::load(w, &format!("{prefix}.norm"), d, FINAL_NORM_EPS),
            config: cfg.clone(),
            cache: SizeCache::default(),
        }
    }

    /// The backbone with the patch embedding and the blocks' attention/FFN weights cast to
    /// `dtype` (see [`crate::precision`]); everything else stays f32.
    pub fn with_compute_dtype(self, dtype: FloatDType) -> Self {
        Self {
            patch_embed: self.patch_embed.with_compute_dtype(dtype),
            blocks: self.blocks.into_iter().map(|b| b.with_compute_dtype(dtype)).collect(),
            ..self
        }
    }

    /// The float format of the blocks' matrix products, read from the first block's weights.
    pub fn compute_dtype(&self) -> DType {
        self.blocks.first().map_or(DType::F32, |b| b.compute_dtype())
    }

    /// The cache of size-only tensors (positional embeddings, RoPE tables).
    pub fn size_cache(&self) -> &SizeCache {
        &self.cache
    }

    /// The interpolated positional embedding for an `h`×`w` patch grid, [1, 1+h·w, D].
    /// Cached per grid size and device: it depends only on the size and the (loaded) table.
    pub fn pos_embed_for(&self, h: usize, w: usize) -> Tensor<B, 3> {
        let table = self.pos_embed.val();
        let key = SizeKey { what: "pos_embed", dims: [h, w, 0, 0], extra: 0 };
        self.cache.get_or_build::<B, _>(key, &table.device(), || interpolate_pos_embed(table.clone(), self.config.pos_grid, h, w))
    }

    /// The RoPE table of `layout` for an `h`×`w` patch grid, cached per size and device.
    fn rope_for(&self, layout: RopeLayout, h: usize, w: usize, device: &B::Device) -> RopeTable<B> {
        let head_dim = self.config.embed_dim / self.config.num_heads;
        let (what, views) = match layout {
            RopeLayout::Local => ("rope.local", 0),
            RopeLayout::Global { views } => ("rope.global", views),
        };
        let key = SizeKey { what, dims: [h, w, views, head_dim], extra: 0 };
        self.cache.get_or_build::<B, _>(key, device, || RopeTable::new(layout, h, w, head_dim, device))
    }

    /// Images [B, S, 3, H, W] -> features of the four out layers, in input view order.
    ///
    /// `camera_tokens` [B, S, D] (from CameraEnc) replace the learned camera tokens; the
    /// reference view is then view 0 as given (no selection, no reordering).
    pub fn forward(
        &self,
        images: Tensor<B, 5>,
        strategy: RefViewStrategy,
        camera_tokens: Option<Tensor<B, 3>>,
        trace: Option<&mut BackboneTrace<B>>,
    ) -> [LayerFeatures<B>; 4] {
        self.forward_with_aux(images, strategy, camera_tokens, &[], trace).0
    }

    /// [`Self::forward`] that also returns the normed patch tokens of the blocks in
    /// `feat_layers` (the reference's `export_feat_layers`), each [B, S, N, D], in the order
    /// of `feat_layers`.
    ///
    /// Unlike the reference, which appends them before undoing the reference-view reordering
    /// (so with ≥ 3 views and a reference view other than 0 its views come out permuted), the
    /// aux features are returned in input view order like every other output.
    pub fn forward_with_aux(
        &self,
        images: Tensor<B, 5>,
        strategy: RefViewStrategy,
        camera_tokens: Option<Tensor<B, 3>>,
        feat_layers: &[usize],
        mut trace: Option<&mut BackboneTrace<B>>,
    ) -> ([LayerFeatures<B>; 4], Vec<Tensor<B, 4>>) {
        let cfg = &self.config;
        let [b, s, _, height, width] = images.dims();
        let (h, w) = (height / PATCH_SIZE, width / PATCH_SIZE);
        let (n, d) = (1 + h * w, cfg.embed_dim);
        let device = images.device();

        let mut x = self.embed(images, h, w); // [B, S, 1+N, D]
        if let Some(t) = trace.as_deref_mut() {
            t.tokens = Some(x.clone());
        }
        let local_rope = cfg.rope_start.map(|_| self.rope_for(RopeLayout::Local, h, w, &device));
        let global_rope = cfg.rope_start.map(|_| self.rope_for(RopeLayout::Global { views: s }, h, w, &device));

        let mut local_x = x.clone();
        let mut reorder: Option<Vec<Tensor<B, 1, Int>>> = None; // per batch item: reference view
        let mut outputs = Vec::with_capacity(4);
        let mut aux = Vec::with_capacity(feat_layers.len());
        for (i, block) in self.blocks.iter().enumerate() {
            let uses_rope = cfg.rope_start.is_some_and(|r| i >= r);
            if let Some(alt) = cfg.alt_start {
                if i + 1 == alt && s >= MIN_VIEWS_FOR_SELECTION && camera_tokens.is_none() {
                    let refs = self.select_references(&x, strategy);
                    x = permute_views(x, &refs, s, reorder_indices);
                    local_x = permute_views(local_x, &refs, s, reorder_indices);
                    if let Some(t) = trace.as_deref_mut() {
                        t.ref_index = Some(Tensor::cat(refs.clone(), 0));
                    }
                    reorder = Some(refs);
                }
                if i == alt {
                    x = self.insert_camera_token(x, camera_tokens.clone());
                    // The reference assigns the token in place (`x[:, :, 0] = cam_token`) while
                    // `local_x` is the same tensor object (every block before alt_start is
                    // local), so the local half of the features sees it too. This shows when
                    // alt_start is itself an out layer.
                    local_x = x.clone();
                }
            }
            if cfg.is_global(i) {
                let rope = if uses_rope { global_rope.as_ref() } else { None };
                x = block.forward(x.reshape([b, s * n, d]), rope).reshape([b, s, n, d]);
            } else {
                let rope = if uses_rope { local_rope.as_ref() } else { None };
                x = block.forward(x.reshape([b * s, n, d]), rope).reshape([b, s, n, d]);
                local_x = x.clone();
            }
            if let Some(t) = trace.as_deref_mut() {
                t.blocks.push(x.clone());
            }
            if cfg.out_layers.contains(&i) {
                let out = if cfg.cat_token { cat_last_dim(local_x.clone(), x.clone()) } else { x.clone() };
                let out = match &reorder {
                    Some(refs) => permute_views(out, refs, s, restore_indices),
                    None => out,
                };
                outputs.push((i, out));
            }
            if feat_layers.contains(&i) {
                let out = match &reorder {
                    Some(refs) => permute_views(x.clone(), refs, s, restore_indices),
                    None => x.clone(),
                };
                aux.push((i, self.norm.forward(out).narrow(2, 1, n - 1))); // [B, S, N, D]
            }
        }
        // The heads take the out layers in config order.
        let features = cfg.out_layers.map(|layer| {
            let out = outputs.iter().find(|(i, _)| *i == layer).expect("validated: out layers < depth").1.clone();
            self.to_features(out)
        });
        let aux = feat_layers
            .iter()
            .filter_map(|layer| aux.iter().find(|(i, _)| i == layer).map(|(_, t)| t.clone()))
            .collect();
        (features, aux)
    }

    /// Patch embedding + cls token + positional embedding: [B, S, 3, H, W] -> [B, S, 1+N, D].
    fn embed(&self, images: Tensor<B, 5>, h: usize, w: usize) -> Tensor<B, 4> {
        let [b, s, c, height, width] = images.dims();
        let d = self.config.embed_dim;
        let patches = self.patch_embed.forward(images.reshape([b * s, c, height, width])); // [BS, N, D]
        let patches = patches.cast(FloatDType::F32); // the residual stream is f32
        let cls = self.cls_token.val().expand([b * s, 1, d]); // [BS, 1, D]
        let tokens = add_to_each(Tensor::cat(vec![cls, patches], 1), &self.pos_embed_for(h, w)); // [BS, 1+N, D]
        tokens.reshape([b, s, 1 + h * w, d])
    }

    /// Reference view of each batch item, from the special tokens of `x` [B, S, 1+N, D].
    fn select_references(&self, x: &Tensor<B, 4>, strategy: RefViewStrategy) -> Vec<Tensor<B, 1, Int>> {
        let [b, s, _, d] = x.dims();
        (0..b)
            .map(|bi| {
                let cls = x.clone().narrow(0, bi, 1).narrow(2, 0, 1).reshape([s, d]); // [S, D]
                select_reference_view(cls, strategy)
            })
            .collect()
    }

    /// Replaces token 0 of every view: with `given` [B, S, D] when the cameras are known,
    /// else with the learned reference token for view 0 and the source token for the others.
    fn insert_camera_token(&self, x: Tensor<B, 4>, given: Option<Tensor<B, 3>>) -> Tensor<B, 4> {
        let [b, s, n, d] = x.dims();
        if let Some(given) = given {
            return Tensor::cat(vec![given.unsqueeze_dim::<4>(2), x.narrow(2, 1, n - 1)], 2);
        }
        let tokens = self.camera_token.as_ref().expect("alt_start implies camera_token").val(); // [1, 2, D]
        let reference = tokens.clone().narrow(1, 0, 1).unsqueeze_dim::<4>(2).expand([b, 1, 1, d]); // [B, 1, 1, D]
        let camera = if s > 1 {
            let source = tokens.narrow(1, 1, 1).unsqueeze_dim::<4>(2).expand([b, s - 1, 1, d]); // [B, S-1, 1, D]
            Tensor::cat(vec![reference, source], 1) // [B, S, 1, D]
        } else {
            reference
        };
        Tensor::cat(vec![camera, x.narrow(2, 1, n - 1)], 2)
    }

    /// Applies the final norm (to the global half with cat token) and splits off the special
    /// token: [B, S, 1+N, C] -> features.
    fn to_features(&self, out: Tensor<B, 4>) -> LayerFeatures<B> {
        let [b, s, n, c] = out.dims();
        let d = self.config.embed_dim;
        let camera_token = out.clone().narrow(2, 0, 1).reshape([b, s, c]);
        let normed = if self.config.cat_token {
            cat_last_dim(out.clone().narrow(3, 0, d), self.norm.forward(out.narrow(3, d, d)))
        } else {
            self.norm.forward(out)
        };
        LayerFeatures { patches: normed.clone().narrow(2, 1, n - 1), camera_token, tokens: normed }
    }
}

/// Gathers the views of each batch item with `indices(ref, S)`: [B, S, ...] -> [B, S, ...].
fn permute_views<B: Backend>(
    x: Tensor<B, 4>,
    refs: &[Tensor<B, 1, Int>],
    s: usize,
    indices: fn(Tensor<B, 1, Int>, usize) -> Tensor<B, 1, Int>,
) -> Tensor<B, 4> {
    let per_item: Vec<Tensor<B, 4>> = refs
        .iter()
        .enumerate()
        .map(|(bi, r)| x.clone().narrow(0, bi, 1).select(1, indices(r.clone(), s)))
        .collect();
    Tensor::cat(per_item, 0)
}
