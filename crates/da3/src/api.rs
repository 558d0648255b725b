//! The library entry point: load a model, give it views, get depth and cameras as plain arrays.

use burn::tensor::{backend::Backend, FloatDType, Tensor, TensorData};

use crate::camera_enc::{normalize_extrinsics, Mat3, Mat4, ViewCameras};
use crate::config::{Da3Config, PATCH_SIZE};
use crate::model::{Da3Model, Da3Output, Outputs, RefViewStrategy};
use crate::precision::Precision;
use crate::weights::WeightLoader;
use crate::Da3Error;

/// ImageNet mean and standard deviation (RGB), applied after scaling pixels to [0, 1].
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// See [`IMAGENET_MEAN`].
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// An 8-bit RGB image borrowed as interleaved rows (`height * width * 3` bytes).
#[derive(Debug, Clone, Copy)]
pub struct RgbView<'a> {
    /// Interleaved RGB bytes, row-major.
    pub pixels: &'a [u8],
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
}

/// Views of one scene ready for the network: ImageNet-normalized float32, [S, 3, H, W].
#[derive(Debug, Clone)]
pub struct Views {
    data: Vec<f32>,
    count: usize,
    height: usize,
    width: usize,
}

impl Views {
    /// Normalizes same-sized RGB images whose sides are multiples of 14.
    pub fn from_rgb8(images: &[RgbView<'_>]) -> Result<Self, Da3Error> {
        let first = images.first().ok_or_else(|| Da3Error::Input("no images given".into()))?;
        let (h, w) = (first.height, first.width);
        let mut data = Vec::with_capacity(images.len() * 3 * h * w);
        for (i, img) in images.iter().enumerate() {
            if (img.height, img.width) != (h, w) {
                return Err(Da3Error::Input(format!(
                    "view {i} is {}x{} but view 0 is {w}x{h}; all views must have the same size",
                    img.width, img.height
                )));
            }
            if img.pixels.len() != h * w * 3 {
                return Err(Da3Error::Input(format!(
                    "view {i}: {} bytes for a {w}x{h} RGB image (expected {})",
                    img.pixels.len(),
                    h * w * 3
                )));
            }
            for c in 0..3 {
                data.extend(img.pixels.iter().skip(c).step_by(3).map(|&p| {
                    (p as f32 / 255.0 - IMAGENET_MEAN[c]) / IMAGENET_STD[c]
                }));
            }
        }
        Self::from_normalized(data, images.len(), h, w)
    }

    /// Wraps already-normalized data laid out as [S, 3, H, W].
    pub fn from_normalized(data: Vec<f32>, count: usize, height: usize, width: usize) -> Result<Self, Da3Error> {
        if count == 0 {
            return Err(Da3Error::Input("no views given".into()));
        }
        if height == 0 || width == 0 || height % PATCH_SIZE != 0 || width % PATCH_SIZE != 0 {
            return Err(Da3Error::Input(format!(
                "image size {width}x{height} is not a multiple of {PATCH_SIZE} on both sides; \
                 resize or crop it first (e.g. to {}x{})",
                (width / PATCH_SIZE).max(1) * PATCH_SIZE,
                (height / PATCH_SIZE).max(1) * PATCH_SIZE
            )));
        }
        if data.len() != count * 3 * height * width {
            return Err(Da3Error::Input(format!(
                "{} values for {count} views of 3x{height}x{width}",
                data.len()
            )));
        }
        Ok(Self { data, count, height, width })
    }

    /// Number of views S.
    pub fn count(&self) -> usize {
        self.count
    }
    /// Height H in pixels.
    pub fn height(&self) -> usize {
        self.height
    }
    /// Width W in pixels.
    pub fn width(&self) -> usize {
        self.width
    }
    /// The normalized values, [S, 3, H, W].
    pub fn data(&self) -> &[f32] {
        &self.data
    }

    /// A copy of the views in `range` (a chunk of a scheduled job).
    pub fn select(&self, range: std::ops::Range<usize>) -> Result<Self, Da3Error> {
        if range.start >= range.end || range.end > self.count {
            return Err(Da3Error::Input(format!("views {range:?} asked of {} views", self.count)));
        }
        let n = 3 * self.height * self.width; // [3, H, W] per view
        Self::from_normalized(self.data[range.start * n..range.end * n].to_vec(), range.len(), self.height, self.width)
    }
}

/// What the network predicts for S views of H×W pixels, as host arrays.
#[derive(Debug, Clone, Default)]
pub struct Prediction {
    /// Number of views S.
    pub views: usize,
    /// Height H.
    pub height: usize,
    /// Width W.
    pub width: usize,
    /// Depth along the optical axis, [S, H, W]: relative scale for the main series and
    /// da3mono-large; for da3metric-large metres = depth · focal_px / 300. Sky pixels of
    /// mono/metric models hold the 0.99 quantile of the non-sky depth.
    pub depth: Vec<f32>,
    /// Confidence (≥ 1), [S, H, W]; empty for mono/metric models, which predict none.
    pub conf: Vec<f32>,
    /// World-to-camera `[R | t]` per view (OpenCV axes), [S, 3, 4]; empty for mono/metric.
    pub extrinsics: Vec<[[f32; 4]; 3]>,
    /// Pinhole intrinsics in processed-image pixels per view, [S, 3, 3]; empty for mono/metric.
    pub intrinsics: Vec<[[f32; 3]; 3]>,
    /// Sky score of mono/metric models, [S, H, W] (sky where ≥ 0.5).
    pub sky: Option<Vec<f32>>,
    /// Whether depth is metric: in metres for the nested model; up to the focal length for
    /// da3metric-large (metres = depth · focal_px / 300).
    pub is_metric: bool,
    /// The nested model's least-squares factor from the any-view branch's scale to metres
    /// (already applied to `depth` and the translations of `extrinsics`).
    pub scale_factor: Option<f32>,
    /// The nested model's metric branch depth in metres, [views, height, width] (see
    /// [`crate::nested::MetricScaling::metric_depth`]): what `depth` is fitted to; a chunked
    /// job re-fits one metric factor over all its views from it. Empty for the other models.
    pub metric_depth: Vec<f32>,
    /// Normed backbone features of the blocks asked for in
    /// [`PredictOptions::export_feat_layers`], in that order.
    pub aux_features: Vec<FeatureLayer>,
    /// World-space 3D Gaussians (one per pixel, in the predicted cameras' frame) when
    /// [`PredictOptions::infer_gs`] was set.
    pub gaussians: Option<crate::Gaussians>,
    /// The GS adapter's pose scale when [`Self::gaussians`] were computed (with input cameras
    /// the Umeyama scale towards them, else 1): the Gaussians live in the network's predicted
    /// frame times this ([`crate::gaussians::pose_scale`]).
    pub gaussian_pose_scale: Option<f64>,
    /// With input cameras: how this pass was aligned to them (the similarity from the user's
    /// frame into the predicted one); a chunked job brings its chunks into one frame with it.
    pub input_frame: Option<crate::align::InputFrame>,
}

/// The normed output of one backbone block (the reference's `aux["feat_layer_{layer}"]`).
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureLayer {
    /// Block index.
    pub layer: usize,
    /// Patch rows h = H / 14.
    pub height: usize,
    /// Patch columns w = W / 14.
    pub width: usize,
    /// Token width D.
    pub dim: usize,
    /// Values, [S, h, w, D] row-major.
    pub data: Vec<f32>,
}

/// Known cameras of the views: turns on pose-conditioned inference.
#[derive(Debug, Clone, PartialEq)]
pub struct InputCameras {
    /// World-to-camera transforms per view (OpenCV axes), in the user's frame and scale.
    pub world_to_camera: Vec<Mat4>,
    /// Pinhole intrinsics per view in pixels of the **processed** image (what the network
    /// sees); `crate::preprocess` rescales the intrinsics of the original photos.
    pub intrinsics: Vec<Mat3>,
}

/// How one prediction runs; the defaults are the reference `inference()`'s.
#[derive(Debug, Clone)]
pub struct PredictOptions {
    /// Which view anchors the world frame when ≥ 3 views are given without cameras.
    pub ref_view_strategy: RefViewStrategy,
    /// Known cameras (pose conditioning); `None` predicts them.
    pub cameras: Option<InputCameras>,
    /// With `cameras`: return the user's extrinsics and rescale depth to their scale (true,
    /// the reference default), or return the predicted poses Sim(3)-aligned to them (false).
    pub align_to_input_ext_scale: bool,
    /// Derive poses from the ray head instead of CameraDec.
    pub use_ray_pose: bool,
    /// Backbone blocks whose normed output to return in [`Prediction::aux_features`].
    pub export_feat_layers: Vec<usize>,
    /// Seed of every random choice (sky quantile sampling, RANSAC) so runs repeat exactly.
    pub seed: u64,
    /// Also run the GS head and return world-space 3D Gaussians in
    /// [`Prediction::gaussians`]; only models with a GS head (da3-giant) have them.
    pub infer_gs: bool,
}

impl Default for PredictOptions {
    fn default() -> Self {
        Self {
            ref_view_strategy: RefViewStrategy::SaddleBalanced,
            cameras: None,
            align_to_input_ext_scale: true,
            use_ray_pose: false,
            export_feat_layers: Vec::new(),
            seed: crate::sky::DEFAULT_SKY_SEED,
            infer_gs: false,
        }
    }
}

impl Prediction {
    /// Whether confidence and cameras were predicted (main-series models).
    pub fn has_cameras(&self) -> bool {
        !self.extrinsics.is_empty()
    }

    /// Depth of view `i`, [H, W] row-major.
    pub fn depth_of(&self, i: usize) -> &[f32] {
        let n = self.height * self.width;
        &self.depth[i * n..(i + 1) * n]
    }
    /// Confidence of view `i`, [H, W] row-major.
    pub fn conf_of(&self, i: usize) -> &[f32] {
        let n = self.height * self.width;
        &self.conf[i * n..(i + 1) * n]
    }
}

/// A loaded DA3 model on a device, ready to predict.
#[derive(Debug)]
pub struct Da3<B: Backend> {
    model: Da3Model<B>,
    /// The nested model's metric branch (da3metric-large), run beside `model` (da3-giant).
    metric_branch: Option<Da3Model<B>>,
    device: B::Device,
    /// The resolved float format of the backbone's matrix products.
    dtype: FloatDType,
}

impl<B: Backend> Da3<B> {
    /// Builds the model from safetensors bytes in the Hub layout (`model.` prefix).
    /// `source_name` names the weights in error messages.
    pub fn from_bytes(config: Da3Config, weights: &[u8], source_name: &str, device: &B::Device) -> Result<Self, Da3Error> {
        config.validate()?;
        let loader = WeightLoader::<B>::new(weights, source_name, device)?;
        Self::from_loader(config, loader, device)
    }

    /// [`Self::from_bytes`] over [`WeightBytes`](crate::weights::WeightBytes): the pages of a
    /// mapped file leave the process's resident set as each tensor is copied out of them, so
    /// loading does not hold the whole file and the built model at once.
    pub fn from_weight_bytes(config: Da3Config, bytes: &crate::weights::WeightBytes, source_name: &str, device: &B::Device) -> Result<Self, Da3Error> {
        config.validate()?;
        let loader = WeightLoader::<B>::from_weight_bytes(bytes, source_name, device)?;
        Self::from_loader(config, loader, device)
    }

    /// Builds the model from a loader over a checkpoint (`config` already validated).
    fn from_loader(config: Da3Config, mut loader: WeightLoader<'_, B>, device: &B::Device) -> Result<Self, Da3Error> {
        let (model, metric_branch) = match &config.metric_branch {
            // Nested: `NestedDepthAnything3Net` holds the branches as `da3` and `da3_metric`.
            Some(branch) => (
                Da3Model::load(&mut loader, "model.da3", &config),
                Some(Da3Model::load(&mut loader, "model.da3_metric", branch)),
            ),
            None => (Da3Model::load(&mut loader, "model", &config), None),
        };
        loader.finish(&config.name)?;
        Ok(Self { model, metric_branch, device: device.clone(), dtype: FloatDType::F32 })
    }

    /// The model with the backbone's matrix products in `precision` (resolved for this device:
    /// `auto` picks bf16/fp16 only where the device accelerates it natively, else fp32). The
    /// weights are converted once, here; the residual stream, LayerNorms, camera modules and
    /// heads stay f32 (see [`crate::precision`]). An explicit mode the device cannot run is an
    /// error. Loading is the place to choose it: a model is one (weights, device, precision).
    pub fn with_precision(self, precision: Precision) -> Result<Self, Da3Error> {
        let dtype = precision.resolve::<B>(&self.device)?;
        if dtype == self.dtype {
            return Ok(self);
        }
        // Only an f32 model is converted: casting bf16 weights to fp16 would stack roundings.
        if self.dtype != FloatDType::F32 {
            return Err(Da3Error::Config(format!(
                "the model already runs in {:?}; load it again to change precision",
                self.dtype
            )));
        }
        Ok(Self {
            model: self.model.with_compute_dtype(dtype),
            metric_branch: self.metric_branch.map(|m| m.with_compute_dtype(dtype)),
            device: self.device,
            dtype,
        })
    }

    /// The float format the backbone's matrix products run in (F32, F16 or BF16).
    pub fn compute_dtype(&self) -> FloatDType {
        self.dtype
    }

    /// Memory-maps a `model.safetensors` file and builds the model from it.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn from_file(config: Da3Config, path: &std::path::Path, device: &B::Device) -> Result<Self, Da3Error> {
        let bytes = crate::weights::WeightBytes::map(path)?;
        Self::from_weight_bytes(config, &bytes, &path.display().to_string(), device)
    }

    /// The device the model lives on.
    pub fn device(&self) -> &B::Device {
        &self.device
    }

    /// The configuration of the loaded model.
    pub fn config(&self) -> &Da3Config {
        self.model.config()
    }

    /// The underlying network (the any-view branch of a nested model), for callers that want
    /// device tensors.
    pub fn model(&self) -> &Da3Model<B> {
        &self.model
    }

    /// The nested model's metric branch, if this is a nested model.
    pub fn metric_branch(&self) -> Option<&Da3Model<B>> {
        self.metric_branch.as_ref()
    }

    /// Runs all views jointly (cross-view attention) and returns depth and cameras.
    pub fn predict(&self, views: &Views, strategy: RefViewStrategy) -> Result<Prediction, Da3Error> {
        self.predict_with(views, &PredictOptions { ref_view_strategy: strategy, ..PredictOptions::default() })
    }

    /// [`Self::predict`] with every option of the reference's `inference()`.
    pub fn predict_with(&self, views: &Views, options: &PredictOptions) -> Result<Prediction, Da3Error> {
        let s = views.count();
        self.check_options(options)?;
        let network_cameras = match &options.cameras {
            Some(cams) => Some(network_cameras(cams, s)?),
            None => None,
        };
        let images = self.images_tensor(&[views]);
        let out = self.model.forward_full(images.clone(), options.ref_view_strategy, network_cameras.as_ref(), self.outputs(options), None);
        // The metric branch runs after the any-view outputs are on the host (`finish_scene`),
        // so the two passes' activations never coexist.
        let metric = || self.metric_branch.as_ref().map(|m| m.forward(images, options.ref_view_strategy));
        self.finish_scene(out, metric, views, network_cameras.as_ref(), options)
    }

    /// Predicts several independent scenes in one forward pass ([B, S, 3, H, W]): each scene
    /// is its own multi-view problem (its own reference view, cross-view attention only within
    /// it), and `result[i]` is what [`Self::predict_with`] returns for `scenes[i]` alone, up to
    /// float rounding (larger matrix products sum in another order). On a GPU one batched pass
    /// keeps the device busier than B small ones; on a CPU it gains little.
    ///
    /// Every scene must have the same view count and size (group scenes by shape, or pad them
    /// to one size first). `options.cameras`, when given, are the cameras of **every** scene: a
    /// calibrated rig (stereo pair, multi-camera car) filmed over time, one scene per time
    /// step; each scene is pose-conditioned on them and aligned to them as `predict_with` would
    /// do it alone. Scenes with different cameras go through [`Self::predict_with`]. Memory grows linearly with
    /// the batch: the memory-aware planner ([`crate::schedule`]) plans views of one scene, not
    /// batches, so pick B within what one pass of B·S views needs. For the nested model the
    /// metric branch runs on the whole batch while the any-view outputs of all scenes are still
    /// on the device (`predict_with` reads them back first); they are small next to a pass's
    /// activations.
    ///
    /// Unlike the reference's batched forward, whose mono/metric sky fill takes one 0.99
    /// quantile over the whole batch, each scene's sky is filled from its own depth: a scene's
    /// result does not depend on what else is in the batch.
    pub fn predict_batch(&self, scenes: &[Views], options: &PredictOptions) -> Result<Vec<Prediction>, Da3Error> {
        let Some(first) = scenes.first() else {
            return Ok(Vec::new());
        };
        let shape = |v: &Views| (v.count(), v.height(), v.width());
        if let Some((i, other)) = scenes.iter().enumerate().find(|(_, v)| shape(v) != shape(first)) {
            return Err(Da3Error::Input(format!(
                "scene {i} has {} views of {}x{} but scene 0 has {} views of {}x{}; one batch runs \
                 scenes of one view count and size: group the scenes by shape, or call predict_with per scene",
                other.count(),
                other.width(),
                other.height(),
                first.count(),
                first.width(),
                first.height()
            )));
        }
        self.check_options(options)?;
        // The rig's cameras, shared by every scene (CameraEnc repeats them over the batch).
        let network_cameras = match &options.cameras {
            Some(cams) => Some(network_cameras(cams, first.count())?),
            None => None,
        };
        let refs: Vec<&Views> = scenes.iter().collect();
        let images = self.images_tensor(&refs); // [B, S, 3, H, W]
        let out = self.model.forward_full(images.clone(), options.ref_view_strategy, network_cameras.as_ref(), self.outputs(options), None);
        let metric = self.metric_branch.as_ref().map(|m| m.forward(images, options.ref_view_strategy));
        scenes
            .iter()
            .enumerate()
            .map(|(i, views)| {
                let metric = metric.as_ref().map(|m| m.scene(i));
                self.finish_scene(out.scene(i), || metric, views, network_cameras.as_ref(), options)
            })
            .collect()
    }

    /// Rejects options this model cannot serve, before any compute.
    fn check_options(&self, options: &PredictOptions) -> Result<(), Da3Error> {
        let depth_limit = self.model.config().backbone.depth;
        if let Some(bad) = options.export_feat_layers.iter().find(|&&l| l >= depth_limit) {
            return Err(Da3Error::Input(format!(
                "feature layer {bad} does not exist: {} has blocks 0..{}",
                self.model.config().name,
                depth_limit - 1
            )));
        }
        if (options.use_ray_pose || options.cameras.is_some()) && !self.model.has_cameras() {
            return Err(Da3Error::Input(format!(
                "{} predicts no cameras, so {} is not available; use a main-series model \
                 (da3-small, da3-base, da3-large or da3-giant)",
                self.config().name,
                if options.use_ray_pose { "use_ray_pose" } else { "pose conditioning (input cameras)" }
            )));
        }
        if options.infer_gs && !self.model.has_gs_head() {
            return Err(Da3Error::Config(format!(
                "model `{}` has no 3D-Gaussian head, so it cannot infer Gaussians (infer_gs); \
                 use da3-giant or da3nested-giant-large (or turn infer_gs off)",
                self.model.config().name
            )));
        }
        Ok(())
    }

    /// The optional network outputs `options` need: the rays only where they are used (see
    /// `Outputs::rays`).
    fn outputs<'a>(&self, options: &'a PredictOptions) -> Outputs<'a> {
        Outputs { feat_layers: &options.export_feat_layers, rays: options.use_ray_pose, gaussians: options.infer_gs }
    }

    /// The scenes' views as one device tensor [B, S, 3, H, W] (same shapes, checked by callers).
    fn images_tensor(&self, scenes: &[&Views]) -> Tensor<B, 5> {
        let (s, h, w) = (scenes[0].count(), scenes[0].height(), scenes[0].width());
        let data = match scenes {
            [one] => one.data().to_vec(),
            _ => scenes.iter().flat_map(|v| v.data().iter().copied()).collect(),
        };
        Tensor::from_data(TensorData::new(data, [scenes.len(), s, 3, h, w]), &self.device)
    }

    /// Everything after the network for one scene (`out` with B = 1): host copies, the ray
    /// poses, Gaussians, the nested model's metric scaling (`metric` runs the metric branch on
    /// this scene, called only for nested models) and the alignment to input cameras.
    fn finish_scene(
        &self,
        mut out: Da3Output<B>,
        metric: impl FnOnce() -> Option<Da3Output<B>>,
        views: &Views,
        network_cameras: Option<&ViewCameras>,
        options: &PredictOptions,
    ) -> Result<Prediction, Da3Error> {
        let (s, h, w) = (views.count(), views.height(), views.width());
        let gs = out.gs.take();
        let rays = out.cameras.as_mut().and_then(|c| c.rays.take()).map(|r| (r.ray.dims(), to_vec(r.ray), to_vec(r.conf)));
        let mut prediction = self.to_prediction(out, s, h, w, &options.export_feat_layers, options.seed);
        // As the reference: the ray head's cameras replace CameraDec's inside the network
        // (before the nested scaling reads the intrinsics).
        if let Some(([_, _, rh, rw, _], ray, ray_conf)) = rays {
            let cams = crate::ray_pose::ray_pose(&ray, &ray_conf, s, (rh, rw), (h, w), options.seed)?;
            prediction.extrinsics = cams.iter().map(|c| c.world_to_camera.map(|r| r.map(|v| v as f32))).collect();
            prediction.intrinsics = cams.iter().map(|c| c.intrinsics.map(|r| r.map(|v| v as f32))).collect();
        }
        // Gaussians use the network's own depth and predicted (or ray) cameras, as the
        // reference's `_process_gs_head` does inside the network: before the nested scaling and
        // any alignment to input cameras.
        if let Some(gs) = gs {
            // Pose-conditioned: the predicted frame is first scaled towards the user's
            // (normalized) cameras, as `GaussianAdapter` does with `gt_extrinsics`.
            let pose_scale =
                network_cameras.map_or(1.0, |cams| crate::gaussians::pose_scale(&cams.world_to_camera, &prediction.extrinsics));
            prediction.gaussians = Some(gaussians_of(&prediction, gs, pose_scale)?);
            prediction.gaussian_pose_scale = Some(pose_scale);
        }
        // Nested model: the metric branch gives the any-view output metric scale.
        if let Some(metric) = metric() {
            let metric_depth = to_vec(metric.depth);
            let sky = to_vec(metric.sky.expect("validated: the metric branch is a DPT model with a sky head"));
            let fit = crate::nested::metric_scaling(
                crate::nested::NestedOutputs {
                    depth: &mut prediction.depth,
                    conf: &mut prediction.conf,
                    extrinsics: &mut prediction.extrinsics,
                    intrinsics: &prediction.intrinsics,
                    metric_depth: &metric_depth,
                    sky: &sky,
                },
                options.seed,
            )?;
            prediction.scale_factor = Some(fit.scale);
            prediction.metric_depth = fit.metric_depth;
            prediction.is_metric = true;
            prediction.sky = Some(sky);
        }
        // The API aligns whichever cameras were predicted to the user's.
        if let Some(cameras) = &options.cameras {
            let fit = crate::align::align_to_input_cameras(&mut prediction, cameras, options.align_to_input_ext_scale, options.seed)?;
            prediction.input_frame = Some(crate::align::InputFrame { sim3: fit.sim3, user_frame: options.align_to_input_ext_scale });
        }
        Ok(prediction)
    }

    /// Copies the network outputs to the host and applies the sky fill of mono/metric models.
    fn to_prediction(&self, out: Da3Output<B>, s: usize, h: usize, w: usize, feat_layers: &[usize], seed: u64) -> Prediction {
        let mut depth = to_vec(out.depth);
        let sky = out.sky.map(to_vec);
        if let Some(sky) = &sky {
            crate::sky::fill_sky_depth(&mut depth, sky, seed);
        }
        let (conf, extrinsics, intrinsics) = match out.cameras {
            Some(cams) => {
                let ext = to_vec(cams.extrinsics);
                let ixt = to_vec(cams.intrinsics);
                (
                    to_vec(cams.depth_conf),
                    ext.chunks_exact(12).map(|m| std::array::from_fn(|r| std::array::from_fn(|c| m[r * 4 + c]))).collect(),
                    ixt.chunks_exact(9).map(|m| std::array::from_fn(|r| std::array::from_fn(|c| m[r * 3 + c]))).collect(),
                )
            }
            None => (Vec::new(), Vec::new(), Vec::new()),
        };
        let aux_features = feat_layers
            .iter()
            .zip(out.aux_features)
            .map(|(&layer, t)| {
                let [_, _, _, dim] = t.dims();
                FeatureLayer { layer, height: h / PATCH_SIZE, width: w / PATCH_SIZE, dim, data: to_vec(t) }
            })
            .collect();
        let is_metric = self.model.config().metric;
        Prediction {
            views: s,
            height: h,
            width: w,
            depth,
            conf,
            extrinsics,
            intrinsics,
            sky,
            is_metric,
            scale_factor: None,
            metric_depth: Vec::new(),
            aux_features,
            gaussians: None,
            gaussian_pose_scale: None,
            input_frame: None,
        }
    }
}

/// Checks the user's cameras against the view count and normalizes them as the reference's
/// `_normalize_extrinsics` does before they reach CameraEnc.
fn network_cameras(cameras: &InputCameras, views: usize) -> Result<ViewCameras, Da3Error> {
    if cameras.world_to_camera.len() != views || cameras.intrinsics.len() != views {
        return Err(Da3Error::Input(format!(
            "{} extrinsics and {} intrinsics given for {views} views; give one of each per view",
            cameras.world_to_camera.len(),
            cameras.intrinsics.len()
        )));
    }
    Ok(ViewCameras {
        world_to_camera: normalize_extrinsics(&cameras.world_to_camera),
        intrinsics: cameras.intrinsics.clone(),
    })
}

/// Runs the Gaussian adapter on the GS head's output and the prediction's depth and cameras.
fn gaussians_of<B: Backend>(pred: &Prediction, gs: crate::model::GsRawOutput<B>, pose_scale: f64) -> Result<crate::Gaussians, Da3Error> {
    let (raw, density) = (to_vec(gs.raw), to_vec(gs.density));
    crate::gaussians::adapt(&crate::gaussians::AdapterInput {
        views: pred.views,
        height: pred.height,
        width: pred.width,
        raw: &raw,
        density: &density,
        depth: &pred.depth,
        extrinsics: &pred.extrinsics,
        intrinsics: &pred.intrinsics,
        pose_scale,
    })
}

fn to_vec<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    crate::readback::to_host(t)
}
