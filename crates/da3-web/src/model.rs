//! The wasm-bindgen API: WebGPU init, [`Model`] loading and prediction.

use burn::backend::wgpu::{init_setup_async, graphics::WebGpu, RuntimeOptions, WgpuDevice};
use burn::tensor::{Tensor, TensorData};
use da3::preprocess::{self, ImageRef, Pixels};
use da3::{Da3, Da3Config, RefViewStrategy, Views};
use wasm_bindgen::prelude::*;

/// The backend: Burn's wgpu runtime, which targets WebGPU in a browser.
pub type Backend = burn::backend::Wgpu;

/// Installs the panic hook so a Rust panic shows up as a readable console error.
#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
}

/// Requests the WebGPU adapter and device and registers them with Burn. Must be awaited once
/// before [`Model::load`]. Returns a description of the adapter (name, backend, driver).
#[wasm_bindgen(js_name = initWebgpu)]
pub async fn init_webgpu() -> Result<String, JsError> {
    let device = WgpuDevice::default();
    let setup = init_setup_async::<WebGpu>(&device, RuntimeOptions::default()).await;
    let info = setup.adapter.get_info();
    Ok(format!("{} ({:?}, {})", info.name, info.backend, info.driver).trim().to_string())
}

/// Milliseconds since the page started (`performance.now()`), for stage timings.
pub(crate) fn now_ms() -> f64 {
    web_sys::window().and_then(|w| w.performance()).map(|p| p.now()).unwrap_or_else(js_sys::Date::now)
}

pub(crate) fn js_err(e: impl std::fmt::Display) -> JsError {
    JsError::new(&e.to_string())
}

/// A loaded DA3 model on the WebGPU device.
#[wasm_bindgen]
pub struct Model {
    inner: Da3<Backend>,
    device: WgpuDevice,
    load_ms: f64,
}

#[wasm_bindgen]
impl Model {
    /// Builds the model from its `config.json` text (a preset name form `{"model_name":
    /// "da3-small"}` or a full config) and the weight shards: safetensors files in the Hub
    /// layout, fp16/bf16/fp32 (converted to fp32 on upload). One shard is used as is; several
    /// are merged first. Call [`init_webgpu`] before.
    pub fn load(config_json: &str, shards: Vec<js_sys::Uint8Array>) -> Result<Model, JsError> {
        let t0 = now_ms();
        let config = Da3Config::from_json(config_json).map_err(js_err)?;
        let shards: Vec<Vec<u8>> = shards.iter().map(|a| a.to_vec()).collect();
        let bytes = crate::merge_shards(&shards).map_err(js_err)?;
        let device = WgpuDevice::default();
        let inner = Da3::<Backend>::from_bytes(config, &bytes, "weights", &device).map_err(js_err)?;
        Ok(Model { inner, device, load_ms: now_ms() - t0 })
    }

    /// The model's name (e.g. `da3-small`).
    #[wasm_bindgen(getter)]
    pub fn name(&self) -> String {
        self.inner.config().name.clone()
    }

    /// Milliseconds spent parsing the weights and uploading them to the device.
    #[wasm_bindgen(getter, js_name = loadMs)]
    pub fn load_ms(&self) -> f64 {
        self.load_ms
    }

    /// Whether the model predicts confidence and cameras (main series).
    #[wasm_bindgen(getter, js_name = hasCameras)]
    pub fn has_cameras(&self) -> bool {
        self.inner.model().has_cameras()
    }

    /// Preprocesses RGBA images (canvas `ImageData`: `width * height * 4` bytes each, given as
    /// one array per image plus their sizes) exactly like the reference (`upper_bound_resize`
    /// to `process_res`, multiples of 14) and predicts them jointly.
    #[wasm_bindgen(js_name = predictRgba)]
    pub async fn predict_rgba(
        &self,
        images: Vec<js_sys::Uint8Array>,
        widths: Vec<u32>,
        heights: Vec<u32>,
        process_res: u32,
        ref_view_strategy: String,
    ) -> Result<crate::Output, JsError> {
        let t0 = now_ms();
        if images.len() != widths.len() || images.len() != heights.len() {
            return Err(js_err(format!(
                "{} images but {} widths and {} heights; give one size per image",
                images.len(),
                widths.len(),
                heights.len()
            )));
        }
        let options = preprocess::Options { process_res: process_res as usize, ..Default::default() };
        let mut prepared = Vec::with_capacity(images.len());
        for (i, img) in images.iter().enumerate() {
            let rgba = img.to_vec();
            let image = ImageRef { pixels: Pixels::Rgba8(&rgba), width: widths[i] as usize, height: heights[i] as usize };
            prepared.push(preprocess::prepare(image, None, &options).map_err(|e| js_err(format!("image {i}: {e}")))?);
        }
        let pre = preprocess::assemble(prepared).map_err(js_err)?;
        let processed = pre.images.iter().map(|im| im.pixels.clone()).collect::<Vec<_>>();
        let preprocess_ms = now_ms() - t0;
        let mut out = self.run(&pre.views, &ref_view_strategy, processed).await?;
        out.timings.preprocess_ms = preprocess_ms;
        Ok(out)
    }

    /// Predicts views that are already network input: ImageNet-normalized floats laid out
    /// [S, 3, H, W] with H and W multiples of 14 (the golden fixtures' `images`).
    #[wasm_bindgen(js_name = predictNormalized)]
    pub async fn predict_normalized(
        &self,
        data: Vec<f32>,
        views: usize,
        height: usize,
        width: usize,
        ref_view_strategy: String,
    ) -> Result<crate::Output, JsError> {
        let views = Views::from_normalized(data, views, height, width).map_err(js_err)?;
        let processed = crate::output::denormalize(&views);
        self.run(&views, &ref_view_strategy, processed).await
    }
}

impl Model {
    /// Uploads the views, runs the network and reads the outputs back asynchronously.
    async fn run(&self, views: &Views, strategy: &str, processed: Vec<Vec<u8>>) -> Result<crate::Output, JsError> {
        let strategy: RefViewStrategy = strategy.parse().map_err(js_err)?;
        let (s, h, w) = (views.count(), views.height(), views.width());
        let t0 = now_ms();
        // [1, S, 3, H, W]
        let images = Tensor::<Backend, 5>::from_data(TensorData::new(views.data().to_vec(), [1, s, 3, h, w]), &self.device);
        let out = self.inner.model().forward(images, strategy);
        let t1 = now_ms();
        let output = crate::output::read_back(out, s, h, w, processed).await?;
        let t2 = now_ms();
        let mut output = output;
        output.timings.encode_ms = t1 - t0;
        output.timings.gpu_ms = t2 - t1;
        Ok(output)
    }
}
