//! Reading the network outputs back from the GPU and handing them to JavaScript.

use burn::tensor::Tensor;
use da3::{Da3Output, Prediction, Views};
use da3_export::glb::{encode_glb, glb_scene, GlbOptions, GlbScene};
use da3_export::ImageRgb8;
use wasm_bindgen::prelude::*;

use crate::model::{js_err, Backend};

/// Milliseconds per stage of one prediction.
#[derive(Debug, Clone, Copy, Default)]
pub struct Timings {
    /// Image conversion, resize and normalization (0 for pre-normalized input).
    pub preprocess_ms: f64,
    /// Upload and recording of the network's GPU work (returns before the GPU finishes).
    pub encode_ms: f64,
    /// Waiting for the GPU and reading the outputs back.
    pub gpu_ms: f64,
}

/// One prediction: depth, confidence and cameras of S views of H×W pixels, and the processed
/// images they belong to.
#[wasm_bindgen]
pub struct Output {
    pub(crate) prediction: Prediction,
    pub(crate) images: Vec<ImageRgb8>,
    pub(crate) timings: Timings,
}

/// Reads one host copy of a device tensor (WebGPU only allows asynchronous readback).
async fn to_vec<const D: usize>(t: Tensor<Backend, D>) -> Result<Vec<f32>, JsError> {
    let data = t.into_data_async().await.map_err(|e| js_err(format!("GPU readback failed: {e:?}")))?;
    data.convert::<f32>().into_vec::<f32>().map_err(|e| js_err(format!("GPU readback: {e:?}")))
}

/// Turns the network's device outputs into an [`Output`] (the same conversion as the
/// library's `Da3::predict`, with asynchronous readback).
pub(crate) async fn read_back(
    out: Da3Output<Backend>,
    s: usize,
    h: usize,
    w: usize,
    processed: Vec<Vec<u8>>,
) -> Result<Output, JsError> {
    let mut depth = to_vec(out.depth).await?;
    let sky = match out.sky {
        Some(t) => Some(to_vec(t).await?),
        None => None,
    };
    if let Some(sky) = &sky {
        da3::sky::fill_sky_depth(&mut depth, sky, da3::sky::DEFAULT_SKY_SEED);
    }
    let (conf, extrinsics, intrinsics) = match out.cameras {
        Some(cams) => {
            let ext = to_vec(cams.extrinsics).await?;
            let ixt = to_vec(cams.intrinsics).await?;
            (
                to_vec(cams.depth_conf).await?,
                ext.chunks_exact(12).map(|m| std::array::from_fn(|r| std::array::from_fn(|c| m[r * 4 + c]))).collect(),
                ixt.chunks_exact(9).map(|m| std::array::from_fn(|r| std::array::from_fn(|c| m[r * 3 + c]))).collect(),
            )
        }
        None => (Vec::new(), Vec::new(), Vec::new()),
    };
    let prediction =
        Prediction { views: s, height: h, width: w, depth, conf, extrinsics, intrinsics, sky, ..Default::default() };
    let images = processed.into_iter().map(|pixels| ImageRgb8 { width: w, height: h, pixels }).collect();
    Ok(Output { prediction, images, timings: Timings::default() })
}

/// The 8-bit RGB images that normalized views came from (rounded back from the floats).
pub(crate) fn denormalize(views: &Views) -> Vec<Vec<u8>> {
    let n = views.height() * views.width();
    views
        .data()
        .chunks_exact(3 * n)
        .map(|v| {
            (0..n)
                .flat_map(|p| {
                    (0..3).map(move |c| {
                        let x = v[c * n + p] * da3::api::IMAGENET_STD[c] + da3::api::IMAGENET_MEAN[c];
                        (x * 255.0).round().clamp(0.0, 255.0) as u8
                    })
                })
                .collect()
        })
        .collect()
}

/// RGB → RGBA (opaque), the layout of a canvas `ImageData`.
fn rgba(rgb: &[u8]) -> Vec<u8> {
    rgb.chunks_exact(3).flat_map(|p| [p[0], p[1], p[2], 255]).collect()
}

/// Per-channel min–max normalization of confidence to grey levels (≥ 1 by construction).
fn conf_gray(conf: &[f32]) -> Vec<u8> {
    let (lo, hi) = conf.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &c| (a.min(c), b.max(c)));
    let span = if hi > lo { hi - lo } else { 1.0 };
    conf.iter().flat_map(|&c| { let g = ((c - lo) / span * 255.0).round() as u8; [g, g, g] }).collect()
}

#[wasm_bindgen]
impl Output {
    /// Number of views S.
    #[wasm_bindgen(getter)]
    pub fn views(&self) -> usize {
        self.prediction.views
    }
    /// Height H of every map.
    #[wasm_bindgen(getter)]
    pub fn height(&self) -> usize {
        self.prediction.height
    }
    /// Width W of every map.
    #[wasm_bindgen(getter)]
    pub fn width(&self) -> usize {
        self.prediction.width
    }
    /// Depth of all views, [S, H, W] row-major.
    #[wasm_bindgen(getter)]
    pub fn depth(&self) -> Vec<f32> {
        self.prediction.depth.clone()
    }
    /// Confidence of all views, [S, H, W] (empty for mono/metric models).
    #[wasm_bindgen(getter)]
    pub fn conf(&self) -> Vec<f32> {
        self.prediction.conf.clone()
    }
    /// World-to-camera `[R | t]` of all views, [S, 3, 4] (empty for mono/metric models).
    #[wasm_bindgen(getter)]
    pub fn extrinsics(&self) -> Vec<f32> {
        self.prediction.extrinsics.iter().flatten().flatten().copied().collect()
    }
    /// Intrinsics in processed-image pixels, [S, 3, 3] (empty for mono/metric models).
    #[wasm_bindgen(getter)]
    pub fn intrinsics(&self) -> Vec<f32> {
        self.prediction.intrinsics.iter().flatten().flatten().copied().collect()
    }
    /// Milliseconds of preprocessing.
    #[wasm_bindgen(getter, js_name = preprocessMs)]
    pub fn preprocess_ms(&self) -> f64 {
        self.timings.preprocess_ms
    }
    /// Milliseconds of upload and GPU command recording.
    #[wasm_bindgen(getter, js_name = encodeMs)]
    pub fn encode_ms(&self) -> f64 {
        self.timings.encode_ms
    }
    /// Milliseconds waiting for the GPU and reading back.
    #[wasm_bindgen(getter, js_name = gpuMs)]
    pub fn gpu_ms(&self) -> f64 {
        self.timings.gpu_ms
    }

    /// The processed input image of view `i` as RGBA, H×W.
    #[wasm_bindgen(js_name = imageRgba)]
    pub fn image_rgba(&self, i: usize) -> Result<Vec<u8>, JsError> {
        self.check_view(i)?;
        Ok(rgba(&self.images[i].pixels))
    }

    /// Colourized depth of view `i` as RGBA, H×W: the reference's `visualize_depth` (inverse
    /// depth, 2–98 % percentiles, Spectral colour map).
    #[wasm_bindgen(js_name = depthRgba)]
    pub fn depth_rgba(&self, i: usize) -> Result<Vec<u8>, JsError> {
        self.check_view(i)?;
        Ok(rgba(&da3_export::depth_vis::colorize_depth(self.prediction.depth_of(i))))
    }

    /// Confidence of view `i` as grey RGBA, H×W (min–max of the view; bright = confident).
    #[wasm_bindgen(js_name = confRgba)]
    pub fn conf_rgba(&self, i: usize) -> Result<Vec<u8>, JsError> {
        self.check_view(i)?;
        if self.prediction.conf.is_empty() {
            return Err(js_err(format!("model predicts no confidence (mono/metric); nothing to draw for view {i}")));
        }
        Ok(rgba(&conf_gray(self.prediction.conf_of(i))))
    }

    /// The 3D scene of the GLB export: confident points in camera 0's frame with glTF axes
    /// (y up), centred on their median, plus one frustum per camera. `conf_percentile` drops
    /// the least confident pixels (reference default 40), `max_points` caps the count.
    pub fn scene(&self, conf_percentile: f64, max_points: usize) -> Result<Scene, JsError> {
        let options =
            GlbOptions { conf_thresh_percentile: conf_percentile, num_max_points: max_points, ..GlbOptions::default() };
        let scene = glb_scene(&self.prediction, &self.images, &options).map_err(js_err)?;
        Ok(Scene { scene })
    }

    fn check_view(&self, i: usize) -> Result<(), JsError> {
        if i >= self.prediction.views {
            return Err(js_err(format!("view {i} does not exist: the prediction has {} views", self.prediction.views)));
        }
        Ok(())
    }
}

/// Points and camera frustums ready for a 3D viewer, and the same scene as a GLB file.
#[wasm_bindgen]
pub struct Scene {
    scene: GlbScene,
}

#[wasm_bindgen]
impl Scene {
    /// Point positions, [N, 3] flattened.
    #[wasm_bindgen(getter)]
    pub fn positions(&self) -> Vec<f32> {
        self.scene.points.iter().flatten().copied().collect()
    }
    /// Point colours as RGB bytes, [N, 3] flattened.
    #[wasm_bindgen(getter)]
    pub fn colors(&self) -> Vec<u8> {
        self.scene.colors.iter().flatten().copied().collect()
    }
    /// Frustum line segments of all cameras: [C, 8 segments, 2 ends, 3] flattened.
    #[wasm_bindgen(getter)]
    pub fn frustums(&self) -> Vec<f32> {
        self.scene.cameras.iter().flat_map(|c| c.segments.iter().flatten().flatten().copied()).collect()
    }
    /// Frustum colours, [C, 3] RGB bytes.
    #[wasm_bindgen(getter, js_name = frustumColors)]
    pub fn frustum_colors(&self) -> Vec<u8> {
        self.scene.cameras.iter().flat_map(|c| c.color).collect()
    }
    /// The scene as a binary glTF file (what `da3 --export-format glb` writes).
    pub fn glb(&self) -> Result<Vec<u8>, JsError> {
        encode_glb(&self.scene).map_err(js_err)
    }
}
