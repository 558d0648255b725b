//! The DA3 network: backbone → DualDPT (depth, confidence, rays) and CameraDec (poses) for
//! the main series (plus, for da3-giant and on request, GSDPT: raw per-pixel 3D Gaussians),
//! or backbone → DPT (depth, sky) for the mono and metric models, on [B, S, 3, H, W] device
//! tensors.

use burn::module::Module;
use burn::tensor::{backend::Backend, DType, FloatDType, Tensor};

pub use crate::backbone::ref_view::RefViewStrategy;
use crate::backbone::{BackboneTrace, DinoV2};
use crate::camera::{pose_encoding_to_extrinsics_intrinsics, CameraDec};
use crate::camera_enc::{CameraEnc, ViewCameras};
use crate::config::{Da3Config, HeadKind, PATCH_SIZE};
use crate::head::{Dpt, DualDpt, GsDpt};
use crate::size_cache::{CacheStats, SizeCache};
use crate::weights::WeightLoader;

/// Everything the network predicts for B scenes of S views.
#[derive(Debug, Clone)]
pub struct Da3Output<B: Backend> {
    /// Depth, [B, S, H, W] (before sky filling for mono/metric models, see `crate::sky`).
    pub depth: Tensor<B, 4>,
    /// Camera outputs of the main series (`None` for mono/metric models).
    pub cameras: Option<CameraOutput<B>>,
    /// Sky score of the mono/metric models, [B, S, H, W].
    pub sky: Option<Tensor<B, 4>>,
    /// Normed patch tokens of the requested backbone blocks (`export_feat_layers`), each
    /// [B, S, H/14·W/14, D], in the order requested.
    pub aux_features: Vec<Tensor<B, 4>>,
    /// Raw GS head output; only from [`Da3Model::forward_gs`] on a model with a GS head.
    pub gs: Option<GsRawOutput<B>>,
}

impl<B: Backend> Da3Output<B> {
    /// Scene `index` of the batch, every tensor narrowed to B = 1 (views and pixels kept).
    pub fn scene(&self, index: usize) -> Self {
        let cameras = self.cameras.as_ref().map(|c| CameraOutput {
            depth_conf: c.depth_conf.clone().narrow(0, index, 1),
            rays: c.rays.as_ref().map(|r| RayMap { ray: r.ray.clone().narrow(0, index, 1), conf: r.conf.clone().narrow(0, index, 1) }),
            pose_enc: c.pose_enc.clone().narrow(0, index, 1),
            extrinsics: c.extrinsics.clone().narrow(0, index, 1),
            intrinsics: c.intrinsics.clone().narrow(0, index, 1),
        });
        Self {
            depth: self.depth.clone().narrow(0, index, 1),
            cameras,
            sky: self.sky.as_ref().map(|t| t.clone().narrow(0, index, 1)),
            aux_features: self.aux_features.iter().map(|t| t.clone().narrow(0, index, 1)).collect(),
            gs: self.gs.as_ref().map(|g| GsRawOutput { raw: g.raw.clone().narrow(0, index, 1), density: g.density.clone().narrow(0, index, 1) }),
        }
    }
}

/// The GSDPT head's activated output, before the Gaussian adapter ([`crate::gaussians`]).
#[derive(Debug, Clone)]
pub struct GsRawOutput<B: Backend> {
    /// Raw (linear) Gaussian parameters, channels last: [B, S, H, W, 37].
    pub raw: Tensor<B, 5>,
    /// Density `sigmoid(c37)`, which is the Gaussians' opacity at inference: [B, S, H, W].
    pub density: Tensor<B, 4>,
}

/// The DualDPT and CameraDec outputs of a main-series model.
#[derive(Debug, Clone)]
pub struct CameraOutput<B: Backend> {
    /// Depth confidence (≥ 1), [B, S, H, W].
    pub depth_conf: Tensor<B, 4>,
    /// DualDPT's ray map, when asked for ([`Outputs::rays`]).
    pub rays: Option<RayMap<B>>,
    /// CameraDec's pose encoding `[t, q(xyzw), fov_h, fov_w]`, [B, S, 9].
    pub pose_enc: Tensor<B, 3>,
    /// World-to-camera `[R | t]`, [B, S, 3, 4].
    pub extrinsics: Tensor<B, 4>,
    /// Intrinsics in pixels with the principal point at the centre, [B, S, 3, 3].
    pub intrinsics: Tensor<B, 4>,
}

/// DualDPT's aux output: per-pixel rays at 8× the patch grid (h × w patches).
#[derive(Debug, Clone)]
pub struct RayMap<B: Backend> {
    /// Rays (direction 0..3, origin 3..6), [B, S, 8h, 8w, 6].
    pub ray: Tensor<B, 5>,
    /// Ray confidence (≥ 1), [B, S, 8h, 8w].
    pub conf: Tensor<B, 4>,
}

/// The optional outputs of a forward pass ([`Da3Model::forward_full`]). Depth, its confidence,
/// CameraDec's cameras and the sky are always computed; these only when asked for.
#[derive(Debug, Clone, Copy, Default)]
pub struct Outputs<'a> {
    /// Backbone blocks whose normed patch tokens are returned (`export_feat_layers`), each
    /// below the backbone's depth.
    pub feat_layers: &'a [usize],
    /// DualDPT's ray map (what `use_ray_pose` needs). The reference always computes it and
    /// drops it unless `use_ray_pose` is set; skipping it saves a fusion chain and six 3×3
    /// convolutions at 8× the patch grid. Ignored by mono/metric models (no DualDPT).
    pub rays: bool,
    /// The GS head's raw Gaussians (`infer_gs`); ignored by models without a GS head.
    pub gaussians: bool,
}

/// The heads of a main-series model: DualDPT and the camera encoder/decoder.
#[derive(Module, Debug)]
pub struct MainHeads<B: Backend> {
    head: DualDpt<B>,
    cam_dec: CameraDec<B>,
    cam_enc: CameraEnc<B>,
    /// The 3D-Gaussian head (`gs_head`), for models whose config has `gs_head`.
    gs_head: Option<GsDpt<B>>,
}

/// What runs on the backbone features.
#[derive(Module, Debug)]
pub enum Heads<B: Backend> {
    /// Main series: depth, confidence, rays and cameras.
    Main(MainHeads<B>),
    /// Mono and metric models: depth and sky.
    Mono(Dpt<B>),
}

/// Intermediate values of a forward pass, for parity tests.
#[derive(Debug, Default)]
pub struct Da3Trace<B: Backend> {
    /// Backbone internals.
    pub backbone: BackboneTrace<B>,
    /// The four head inputs, [B, S, N, C].
    pub features: Vec<Tensor<B, 4>>,
    /// The four raw camera tokens, [B, S, C].
    pub camera_tokens: Vec<Tensor<B, 3>>,
    /// CameraEnc's output when cameras were given, [B, S, D].
    pub camera_condition: Option<Tensor<B, 3>>,
}

/// `DepthAnything3Net`: the main series (small, base, large, giant) and mono/metric-large.
#[derive(Module, Debug)]
pub struct Da3Model<B: Backend> {
    backbone: DinoV2<B>,
    heads: Heads<B>,
    #[module(skip)]
    config: Da3Config,
}

impl<B: Backend> Da3Model<B> {
    /// Builds the network from a checkpoint whose keys start with `{prefix}.` (`model` on the
    /// Hub). Problems are recorded in the loader; call `finish` on it afterwards.
    pub fn load(w: &mut WeightLoader<B>, prefix: &str, config: &Da3Config) -> Self {
        let head_prefix = format!("{prefix}.head");
        let heads = match config.head.kind {
            HeadKind::DualDpt => Heads::Main(MainHeads {
                head: DualDpt::load(w, &head_prefix, &config.head),
                cam_dec: CameraDec::load(w, &format!("{prefix}.cam_dec"), config.backbone.out_dim()),
                cam_enc: CameraEnc::load(w, &format!("{prefix}.cam_enc"), config.backbone.embed_dim),
                gs_head: config.gs_head.then(|| GsDpt::load(w, &format!("{prefix}.gs_head"), &config.head)),
            }),
            HeadKind::Dpt => Heads::Mono(Dpt::load(w, &head_prefix, &config.head)),
        };
        Self {
            backbone: DinoV2::load(w, &format!("{prefix}.backbone.pretrained"), &config.backbone),
            heads,
            config: config.clone(),
        }
    }

    /// The backbone (e.g. for the positional embedding at a size).
    pub fn backbone(&self) -> &DinoV2<B> {
        &self.backbone
    }

    /// The configuration the model was built with.
    pub fn config(&self) -> &Da3Config {
        &self.config
    }

    /// The network with its backbone's matrix products in `dtype` (see [`crate::precision`]):
    /// the patch embedding and the blocks' attention and FFN weights are converted; the
    /// residual stream, LayerNorms, camera modules and heads stay f32.
    pub fn with_compute_dtype(self, dtype: FloatDType) -> Self {
        Self { backbone: self.backbone.with_compute_dtype(dtype), ..self }
    }

    /// The float format the backbone's matrix products run in, read from its weights.
    pub fn compute_dtype(&self) -> DType {
        self.backbone.compute_dtype()
    }

    /// Every cache of size-only tensors in the network (backbone, DualDPT, GSDPT).
    fn size_caches(&self) -> Vec<&SizeCache> {
        let mut caches = vec![self.backbone.size_cache()];
        if let Heads::Main(main) = &self.heads {
            caches.push(main.head.size_cache());
            if let Some(gs) = &main.gs_head {
                caches.push(gs.size_cache());
            }
        }
        caches
    }

    /// Turns the per-resolution caches (positional embedding, RoPE tables, UV embeddings; see
    /// [`crate::size_cache`]) on (the default) or off. Results are bit-identical either way.
    pub fn set_size_cache_enabled(&self, enabled: bool) {
        self.size_caches().iter().for_each(|c| c.set_enabled(enabled));
    }

    /// Empties the per-resolution caches (e.g. after replacing weights in place).
    pub fn clear_size_cache(&self) {
        self.size_caches().iter().for_each(|c| c.clear());
    }

    /// Hits, misses and size of the per-resolution caches, summed.
    pub fn size_cache_stats(&self) -> CacheStats {
        self.size_caches().iter().map(|c| c.stats()).fold(CacheStats::default(), |a, s| CacheStats {
            hits: a.hits + s.hits,
            misses: a.misses + s.misses,
            entries: a.entries + s.entries,
            elements: a.elements + s.elements,
        })
    }

    /// Images [B, S, 3, H, W] (ImageNet-normalized, H and W multiples of 14) -> predictions:
    /// depth, confidence and cameras (or sky), without the optional [`Outputs`] (no rays).
    pub fn forward(&self, images: Tensor<B, 5>, strategy: RefViewStrategy) -> Da3Output<B> {
        self.forward_full(images, strategy, None, Outputs::default(), None)
    }

    /// [`Self::forward`] conditioned on known cameras (normalized as by
    /// [`crate::camera_enc::normalize_extrinsics`], intrinsics at the network's resolution).
    /// The cameras are ignored by mono/metric models, which have no camera modules.
    pub fn forward_with_cameras(&self, images: Tensor<B, 5>, cameras: &ViewCameras) -> Da3Output<B> {
        self.forward_full(images, RefViewStrategy::First, Some(cameras), Outputs::default(), None)
    }

    /// Whether the model predicts cameras (the main series).
    pub fn has_cameras(&self) -> bool {
        matches!(self.heads, Heads::Main(_))
    }

    /// Whether the model has the 3D-Gaussian head (da3-giant).
    pub fn has_gs_head(&self) -> bool {
        matches!(&self.heads, Heads::Main(MainHeads { gs_head: Some(_), .. }))
    }

    /// [`Self::forward_traced`] plus the GS head (`infer_gs=True` in the reference): the
    /// output's `gs` is set when the model has a GS head ([`Self::has_gs_head`]) and `None`
    /// otherwise. The head runs on the same features and the normalized `images`.
    pub fn forward_gs(
        &self,
        images: Tensor<B, 5>,
        strategy: RefViewStrategy,
        cameras: Option<&ViewCameras>,
        trace: Option<&mut Da3Trace<B>>,
    ) -> Da3Output<B> {
        self.forward_full(images, strategy, cameras, Outputs { rays: true, gaussians: true, ..Outputs::default() }, trace)
    }

    /// Everything the reference's network computes by default, rays included (for parity
    /// checks), optionally conditioned on `cameras` ([B·S] entries), recording intermediate
    /// values into `trace`.
    pub fn forward_traced(
        &self,
        images: Tensor<B, 5>,
        strategy: RefViewStrategy,
        cameras: Option<&ViewCameras>,
        trace: Option<&mut Da3Trace<B>>,
    ) -> Da3Output<B> {
        self.forward_full(images, strategy, cameras, Outputs { rays: true, ..Outputs::default() }, trace)
    }

    /// The forward pass, optionally conditioned on `cameras` ([B·S] entries), with the optional
    /// `outputs` (feature layers: see [`DinoV2::forward_with_aux`]), recording intermediate
    /// values into `trace`.
    pub fn forward_full(
        &self,
        images: Tensor<B, 5>,
        strategy: RefViewStrategy,
        cameras: Option<&ViewCameras>,
        outputs: Outputs,
        mut trace: Option<&mut Da3Trace<B>>,
    ) -> Da3Output<B> {
        let [b, s, _, height, width] = images.dims();
        // The GS head's image merger sees the input views in their given order.
        let gs_images = outputs.gaussians.then(|| images.clone().reshape([b * s, 3, height, width])); // [BS, 3, H, W]
        debug_assert!(height % PATCH_SIZE == 0 && width % PATCH_SIZE == 0);
        let device = images.device();
        let condition = match (cameras, &self.heads) {
            (Some(c), Heads::Main(main)) => Some(main.cam_enc.forward(c, b, s, height, width, &device)), // [B, S, D]
            _ => None,
        };
        if let Some(t) = trace.as_deref_mut() {
            t.camera_condition = condition.clone();
        }
        let (features, aux_features) =
            self.backbone.forward_with_aux(images, strategy, condition, outputs.feat_layers, trace.as_deref_mut().map(|t| &mut t.backbone));
        if let Some(t) = trace.as_deref_mut() {
            t.features = features.iter().map(|f| f.patches.clone()).collect();
            t.camera_tokens = features.iter().map(|f| f.camera_token.clone()).collect();
        }
        let camera_token = features[3].camera_token.clone(); // [B, S, C]
        let head_in = features.map(|f| f.head_tokens()); // [BS, N, C] each
        match &self.heads {
            Heads::Main(main) => {
                let gs = match (&main.gs_head, gs_images) {
                    (Some(gs_head), Some(imgs)) => {
                        let out = gs_head.forward(head_in.clone(), imgs);
                        let c = out.raw.dims()[3];
                        Some(GsRawOutput {
                            raw: out.raw.reshape([b, s, height, width, c]),
                            density: out.density.reshape([b, s, height, width]),
                        })
                    }
                    _ => None,
                };
                let head = main.head.forward(head_in, height, width, outputs.rays);
                let pose_enc = main.cam_dec.forward(camera_token);
                let (extrinsics, intrinsics) = pose_encoding_to_extrinsics_intrinsics(pose_enc.clone(), height, width);
                let rays = head.rays.map(|r| {
                    let [_, rh, rw, _] = r.ray.dims();
                    RayMap { ray: r.ray.reshape([b, s, rh, rw, 6]), conf: r.conf.reshape([b, s, rh, rw]) }
                });
                Da3Output {
                    depth: head.depth.reshape([b, s, height, width]),
                    cameras: Some(CameraOutput {
                        depth_conf: head.depth_conf.reshape([b, s, height, width]),
                        rays,
                        pose_enc,
                        extrinsics,
                        intrinsics,
                    }),
                    sky: None,
                    aux_features,
                    gs,
                }
            }
            Heads::Mono(head) => {
                let out = head.forward(head_in, height, width);
                Da3Output {
                    depth: out.depth.reshape([b, s, height, width]),
                    cameras: None,
                    sky: Some(out.sky.reshape([b, s, height, width])),
                    aux_features,
                    gs: None,
                }
            }
        }
    }
}
