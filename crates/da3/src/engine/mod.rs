//! Embedding da3 in an engine: run Depth Anything 3 on the engine's own `wgpu::Device` and
//! `Queue`, from a wgpu texture or buffer to depth and confidence in wgpu buffers (or an
//! `R32Float` texture), with no copy through the host.
//!
//! - [`EngineContext`]: the engine's instance, adapter, device and queue. Burn's wgpu runtime
//!   is attached to them ([`burn::backend::wgpu::init_device`]), so the network's kernels and
//!   the engine's passes share one queue and order by submission.
//! - [`Da3Engine::infer`]: [`GpuImage`] views in (a texture, or an RGBA8 / RGBA f32 buffer),
//!   preprocessed on the GPU ([`preprocess`]), [`GpuPrediction`] out: depth and confidence as
//!   [`GpuTensor`]s, f32, row-major [S, H, W], which keep Burn's memory alive while held.
//! - [`GpuTensor::copy_view_to_texture`] copies one view into an `R32Float` texture for
//!   sampling in a render pass.
//!
//! Use this crate's [`wgpu`] re-export (the version Burn 0.21 is built with) for the device.
//! Nothing on this path reads a tensor back; `tests/engine.rs` checks that with
//! [`crate::readback::count`].
//!
//! Limits: the returned depth is the network's own output. The host-side steps of
//! [`crate::Da3::predict`] are not applied: the sky fill of mono/metric models (their sky
//! score is returned in [`GpuPrediction::sky`] instead) and the nested model's metric scaling
//! (nested models are refused). The Burn backend is [`EngineBackend`], without op fusion.
//!
//! # Example
//!
//! Headless (no window): upload an image into a texture, run the tiny test model on it, copy
//! the depth into an `R32Float` texture that a render pass could sample.
//!
//! ```
//! use da3::engine::{wgpu, Da3Engine, EngineContext, EngineOptions, GpuImage};
//! use da3::Da3Config;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // The engine's device; an engine creates it with `EngineContext::device_descriptor`.
//! let ctx = EngineContext::headless()?;
//! let (device, queue) = (ctx.device.clone(), ctx.queue.clone());
//!
//! let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
//! let config = Da3Config::from_json(&std::fs::read_to_string(fixtures.join("tiny.config.json"))?)?;
//! let weights = std::fs::read(fixtures.join("tiny.weights.safetensors"))?;
//! let options = EngineOptions { process_res: 28, ..EngineOptions::default() };
//! let engine = Da3Engine::new(ctx, config, &weights, "tiny", options)?;
//!
//! // A 56x42 RGBA8 texture the engine rendered or uploaded.
//! let (w, h) = (56u32, 42u32);
//! let pixels: Vec<u8> = (0..w * h * 4).map(|i| (i * 37 % 251) as u8).collect();
//! let texture = device.create_texture(&wgpu::TextureDescriptor {
//!     label: Some("camera frame"),
//!     size: wgpu::Extent3d { width: w, height: h, depth_or_array_layers: 1 },
//!     mip_level_count: 1,
//!     sample_count: 1,
//!     dimension: wgpu::TextureDimension::D2,
//!     format: wgpu::TextureFormat::Rgba8UnormSrgb,
//!     usage: wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::COPY_DST,
//!     view_formats: &[],
//! });
//! queue.write_texture(
//!     texture.as_image_copy(),
//!     &pixels,
//!     wgpu::TexelCopyBufferLayout { offset: 0, bytes_per_row: Some(w * 4), rows_per_image: None },
//!     texture.size(),
//! );
//!
//! let prediction = engine.infer(&[GpuImage::Texture(&texture)])?;
//! // Longest side 56 -> 28, then 42 -> 21 -> the nearest multiple of 14, ties up: 28.
//! assert_eq!((prediction.width, prediction.height), (28, 28));
//!
//! // Depth stays on the GPU: copy it into a texture the engine samples.
//! let depth_texture = prediction.depth_texture(&device, &queue, 0)?;
//! assert_eq!(depth_texture.format(), wgpu::TextureFormat::R32Float);
//! # Ok(())
//! # }
//! ```

mod preprocess;

use std::any::Any;

use burn::backend::wgpu::{init_device, CubeTensor, RuntimeOptions, WgpuDevice, WgpuRuntime, WgpuSetup};
use burn::tensor::{DType, Shape, Tensor, TensorPrimitive};
use burn_cubecl::cubecl::Runtime;

pub use preprocess::{BufferImage, GpuImage};
/// The `wgpu` crate Burn's wgpu backend is built with; create the engine's device with it.
pub use wgpu;

use crate::preprocess::{Plan, ResizeMethod, DEFAULT_PROCESS_RES};
use crate::{Da3, Da3Config, Da3Error, RefViewStrategy};

/// The Burn backend the engine API runs on: Burn's wgpu backend without op fusion (the engine
/// reads the output tensors' buffers directly).
pub type EngineBackend = burn::backend::wgpu::CubeBackend<WgpuRuntime, f32, i32, u32>;

/// The engine's wgpu objects, shared with Burn.
#[derive(Debug, Clone)]
pub struct EngineContext {
    /// The instance the adapter came from.
    pub instance: wgpu::Instance,
    /// The adapter the device was requested on.
    pub adapter: wgpu::Adapter,
    /// The engine's device.
    pub device: wgpu::Device,
    /// The engine's queue; Burn submits the network's kernels to it.
    pub queue: wgpu::Queue,
}

impl EngineContext {
    /// What to request the device with so that Burn's kernels can run on it: the adapter's
    /// features (less `MAPPABLE_PRIMARY_BUFFERS`) and limits, as Burn requests its own device.
    /// Burn picks kernels by what the *adapter* supports, so a device with fewer features or
    /// lower compute limits is refused by [`Da3Engine::new`].
    pub fn device_descriptor(adapter: &wgpu::Adapter) -> wgpu::DeviceDescriptor<'static> {
        wgpu::DeviceDescriptor {
            label: Some("da3 engine device"),
            required_features: adapter.features().difference(wgpu::Features::MAPPABLE_PRIMARY_BUFFERS),
            required_limits: adapter.limits(),
            memory_hints: wgpu::MemoryHints::MemoryUsage,
            trace: wgpu::Trace::Off,
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
        }
    }

    /// A headless context on the default adapter (for tools, tests and examples).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn headless() -> Result<Self, Da3Error> {
        use burn_cubecl::cubecl::future::block_on;
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle());
        let adapter = block_on(instance.request_adapter(&wgpu::RequestAdapterOptions::default()))
            .map_err(|e| Da3Error::Input(format!("no wgpu adapter available: {e}; install a Vulkan driver (e.g. mesa-vulkan-drivers)")))?;
        let (device, queue) = block_on(adapter.request_device(&Self::device_descriptor(&adapter)))
            .map_err(|e| Da3Error::Input(format!("requesting a wgpu device on {:?} failed: {e}", adapter.get_info().name)))?;
        Ok(Self { instance, adapter, device, queue })
    }

    /// Checks that the device can run every kernel Burn will choose for the adapter.
    fn check(&self) -> Result<(), Da3Error> {
        use wgpu::Features as F;
        let wanted = F::SHADER_INT64 | F::SHADER_F64 | F::SHADER_F16 | F::SHADER_FLOAT32_ATOMIC | F::SUBGROUP;
        let missing = (self.adapter.features() & wanted).difference(self.device.features());
        let (a, d) = (self.adapter.limits(), self.device.limits());
        let low: Vec<&str> = [
            ("max_compute_invocations_per_workgroup", d.max_compute_invocations_per_workgroup < a.max_compute_invocations_per_workgroup),
            ("max_compute_workgroup_size_x", d.max_compute_workgroup_size_x < a.max_compute_workgroup_size_x),
            ("max_compute_workgroup_size_y", d.max_compute_workgroup_size_y < a.max_compute_workgroup_size_y),
            ("max_compute_workgroup_size_z", d.max_compute_workgroup_size_z < a.max_compute_workgroup_size_z),
            ("max_compute_workgroups_per_dimension", d.max_compute_workgroups_per_dimension < a.max_compute_workgroups_per_dimension),
        ]
        .into_iter()
        .filter_map(|(name, is_low)| is_low.then_some(name))
        .collect();
        if missing.is_empty() && low.is_empty() {
            return Ok(());
        }
        Err(Da3Error::Config(format!(
            "the engine's wgpu device lacks what Burn uses on this adapter (features missing: {missing:?}; \
             limits below the adapter's: {low:?}); request the device with \
             da3::engine::EngineContext::device_descriptor(&adapter) (or add those features and limits)"
        )))
    }
}

/// Preprocessing and inference settings of the engine path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineOptions {
    /// Target length of the bound side (default 504), as [`crate::preprocess::Options`].
    pub process_res: usize,
    /// How the bound side is chosen and sides reach multiples of 14.
    pub method: ResizeMethod,
    /// Which view anchors the world frame when ≥ 3 views are given.
    pub ref_view_strategy: RefViewStrategy,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            process_res: DEFAULT_PROCESS_RES,
            method: ResizeMethod::default(),
            ref_view_strategy: RefViewStrategy::default(),
        }
    }
}

/// A DA3 model attached to an engine's wgpu device.
pub struct Da3Engine {
    model: Da3<EngineBackend>,
    context: EngineContext,
    burn_device: WgpuDevice,
    preprocessor: preprocess::Preprocessor,
    options: EngineOptions,
}

impl std::fmt::Debug for Da3Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Da3Engine")
            .field("model", &self.model.config().name)
            .field("burn_device", &self.burn_device)
            .field("options", &self.options)
            .finish()
    }
}

impl Da3Engine {
    /// Attaches Burn to the engine's device and loads the model from safetensors bytes (Hub
    /// layout); `source_name` names the weights in error messages.
    ///
    /// Call once per device: each call registers a new Burn device on it.
    pub fn new(
        context: EngineContext,
        config: Da3Config,
        weights: &[u8],
        source_name: &str,
        options: EngineOptions,
    ) -> Result<Self, Da3Error> {
        Self::attach(context, &config, options, |device| Da3::from_bytes(config.clone(), weights, source_name, device))
    }

    /// [`Self::new`] with the weights memory-mapped from a `model.safetensors` file (whose
    /// pages are released as the tensors are uploaded, see `WeightBytes::release`).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn from_file(
        context: EngineContext,
        config: Da3Config,
        path: &std::path::Path,
        options: EngineOptions,
    ) -> Result<Self, Da3Error> {
        let bytes = crate::weights::WeightBytes::map(path)?;
        let name = path.display().to_string();
        Self::attach(context, &config, options, |device| Da3::from_weight_bytes(config.clone(), &bytes, &name, device))
    }

    /// Checks the model and context, attaches Burn to the engine's device and runs `load` on it.
    fn attach(
        context: EngineContext,
        config: &Da3Config,
        options: EngineOptions,
        load: impl FnOnce(&WgpuDevice) -> Result<Da3<EngineBackend>, Da3Error>,
    ) -> Result<Self, Da3Error> {
        if config.metric_branch.is_some() {
            return Err(Da3Error::Config(format!(
                "{} is a nested model, whose metric scaling is computed on the host; the engine API \
                 does not read back, so use its any-view model (e.g. da3-giant) or Da3::predict",
                config.name
            )));
        }
        context.check()?;
        let setup = WgpuSetup {
            instance: context.instance.clone(),
            adapter: context.adapter.clone(),
            device: context.device.clone(),
            queue: context.queue.clone(),
            backend: context.adapter.get_info().backend,
        };
        let burn_device = init_device(setup, RuntimeOptions::default());
        let model = load(&burn_device)?;
        Ok(Self { model, context, burn_device, preprocessor: preprocess::Preprocessor::new(), options })
    }

    /// The model as a regular [`Da3`] on the same device, for the host API
    /// ([`Da3::predict`]) next to the GPU path.
    pub fn da3(&self) -> &Da3<EngineBackend> {
        &self.model
    }

    /// Burn's handle of the engine's device (for tensors of [`EngineBackend`]).
    pub fn burn_device(&self) -> &WgpuDevice {
        &self.burn_device
    }

    /// The engine's wgpu objects.
    pub fn context(&self) -> &EngineContext {
        &self.context
    }

    /// The settings given to [`Self::new`].
    pub fn options(&self) -> &EngineOptions {
        &self.options
    }

    /// The preprocessing geometry of an input of `width × height` pixels (the processed size
    /// is `plan.size`).
    pub fn plan(&self, width: u32, height: u32) -> Result<Plan, Da3Error> {
        Plan::new(width as usize, height as usize, self.options.process_res, self.options.method)
    }

    /// Preprocesses views on the GPU into the network input, [1, S, 3, H, W], and returns it
    /// with each view's geometry. All views must reach the same processed size.
    pub fn preprocess(&self, images: &[GpuImage<'_>]) -> Result<(Tensor<EngineBackend, 5>, Vec<Plan>), Da3Error> {
        self.preprocess_with(images, &self.options)
    }

    /// [`Self::preprocess`] with other preprocessing settings (`process_res`, `method`).
    pub fn preprocess_with(
        &self,
        images: &[GpuImage<'_>],
        options: &EngineOptions,
    ) -> Result<(Tensor<EngineBackend, 5>, Vec<Plan>), Da3Error> {
        let first = images.first().ok_or_else(|| Da3Error::Input("no views given".into()))?;
        let plans = images
            .iter()
            .map(|img| {
                let (w, h) = img.size();
                Plan::new(w as usize, h as usize, options.process_res, options.method)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let (w, h) = plans[0].size;
        if let Some((i, p)) = plans.iter().enumerate().find(|(_, p)| p.size != (w, h)) {
            return Err(Da3Error::Input(format!(
                "view {i} ({}x{}) becomes {}x{} but view 0 ({}x{}) becomes {w}x{h}; give views of one \
                 aspect ratio (the host API crops mixed batches, the engine API does not)",
                p.original.0,
                p.original.1,
                p.size.0,
                p.size.1,
                first.size().0,
                first.size().1
            )));
        }
        let s = images.len();
        let view_bytes = (3 * h * w * 4) as u64;
        let (device, queue) = (&self.context.device, &self.context.queue);
        // The network input: fresh Burn memory, written by a GPU copy from our pass's output.
        let client = WgpuRuntime::client(&self.burn_device);
        let handle = client.empty(s * view_bytes as usize);
        let target = client
            .get_resource(handle.clone())
            .map_err(|e| Da3Error::Input(format!("Burn could not expose the input tensor's buffer: {e:?}")))?;
        // Burn's not yet submitted commands may still use this memory under a freed tensor:
        // submit them first, so that our copy is ordered after them on the shared queue.
        client.flush().map_err(|e| Da3Error::Input(format!("Burn could not submit its queued work: {e:?}")))?;
        let scratch = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("da3 engine preprocessed views"),
            size: s as u64 * view_bytes,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let mut encoder =
            device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("da3 engine preprocess") });
        for (v, (img, plan)) in images.iter().zip(&plans).enumerate() {
            self.preprocessor
                .encode(device, &mut encoder, *img, plan, &scratch, (v * 3 * h * w) as u32)
                .map_err(|e| match e {
                    Da3Error::Input(m) => Da3Error::Input(format!("view {v}: {m}")),
                    other => other,
                })?;
        }
        let dst = target.resource();
        encoder.copy_buffer_to_buffer(&scratch, 0, &dst.buffer, dst.offset, s as u64 * view_bytes);
        queue.submit([encoder.finish()]);
        let primitive = CubeTensor::new_contiguous(
            client,
            self.burn_device.clone(),
            Shape::new([1, s, 3, h, w]),
            handle,
            DType::F32,
        );
        Ok((Tensor::from_primitive(TensorPrimitive::Float(primitive)), plans))
    }

    /// Runs the views jointly: GPU preprocessing, the network, outputs left in GPU buffers.
    /// Returns once the work is submitted to the engine's queue (not when it has finished);
    /// anything the engine submits afterwards sees the results.
    pub fn infer(&self, images: &[GpuImage<'_>]) -> Result<GpuPrediction, Da3Error> {
        let (input, _) = self.preprocess(images)?;
        self.infer_tensor(input)
    }

    /// Runs the network on an already normalized input, [1, S, 3, H, W], on [`Self::burn_device`].
    pub fn infer_tensor(&self, images: Tensor<EngineBackend, 5>) -> Result<GpuPrediction, Da3Error> {
        let [b, s, c, h, w] = images.dims();
        if b != 1 || c != 3 || h % crate::config::PATCH_SIZE != 0 || w % crate::config::PATCH_SIZE != 0 {
            return Err(Da3Error::Input(format!(
                "engine input is [{b}, {s}, {c}, {h}, {w}]; expected [1, S, 3, H, W] with H and W multiples of 14"
            )));
        }
        let out = self.model.model().forward(images, self.options.ref_view_strategy);
        let depth = GpuTensor::of(out.depth)?; // [1, S, H, W]
        let conf = out.cameras.map(|c| GpuTensor::of(c.depth_conf)).transpose()?;
        let sky = out.sky.map(GpuTensor::of).transpose()?;
        // Submit everything Burn queued, so that the engine's next submissions come after it.
        WgpuRuntime::client(&self.burn_device)
            .flush()
            .map_err(|e| Da3Error::Input(format!("Burn could not submit the network's work: {e:?}")))?;
        Ok(GpuPrediction { views: s, height: h, width: w, depth, conf, sky })
    }
}

/// The network's outputs for S views of H×W processed pixels, in GPU buffers.
#[derive(Debug)]
pub struct GpuPrediction {
    /// Number of views S.
    pub views: usize,
    /// Processed height H.
    pub height: usize,
    /// Processed width W.
    pub width: usize,
    /// Depth along the optical axis, f32 [S, H, W] (see [`crate::Prediction::depth`]).
    pub depth: GpuTensor,
    /// Confidence (≥ 1), f32 [S, H, W]; `None` for mono/metric models.
    pub conf: Option<GpuTensor>,
    /// Sky score of mono/metric models, f32 [S, H, W] (sky where ≥ 0.5); their depth is
    /// not sky-filled on this path.
    pub sky: Option<GpuTensor>,
}

impl GpuPrediction {
    /// Creates an `R32Float` texture (`W × H`, usable as `TEXTURE_BINDING | COPY_DST |
    /// COPY_SRC`) and fills it with the depth of view `view` on the queue.
    pub fn depth_texture(&self, device: &wgpu::Device, queue: &wgpu::Queue, view: usize) -> Result<wgpu::Texture, Da3Error> {
        let texture = device.create_texture(&wgpu::TextureDescriptor {
            label: Some("da3 depth"),
            size: wgpu::Extent3d { width: self.width as u32, height: self.height as u32, depth_or_array_layers: 1 },
            mip_level_count: 1,
            sample_count: 1,
            dimension: wgpu::TextureDimension::D2,
            format: wgpu::TextureFormat::R32Float,
            usage: wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::COPY_DST | wgpu::TextureUsages::COPY_SRC,
            view_formats: &[],
        });
        let mut encoder = device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("da3 depth texture") });
        self.depth.copy_view_to_texture(&mut encoder, view, self.width, self.height, &texture)?;
        queue.submit([encoder.finish()]);
        Ok(texture)
    }
}

/// A tensor's storage on the GPU: a range of a wgpu buffer, f32 row-major. Holding it keeps
/// Burn from reusing the memory; drop it when the engine no longer reads it (after the
/// engine's commands that read it are submitted).
pub struct GpuTensor {
    buffer: wgpu::Buffer,
    offset: u64,
    size: u64,
    shape: Vec<usize>,
    _keep: Box<dyn Any + Send + Sync>,
}

impl std::fmt::Debug for GpuTensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuTensor").field("offset", &self.offset).field("size", &self.size).field("shape", &self.shape).finish()
    }
}

impl GpuTensor {
    /// Exposes a Burn tensor's buffer (made contiguous first if needed); no readback.
    fn of<const D: usize>(t: Tensor<EngineBackend, D>) -> Result<Self, Da3Error> {
        let shape = t.dims().to_vec();
        let primitive = burn_cubecl::kernel::into_contiguous(t.into_primitive().tensor());
        let managed = primitive
            .client
            .get_resource(primitive.handle.clone())
            .map_err(|e| Da3Error::Input(format!("Burn could not expose an output buffer: {e:?}")))?;
        let res = managed.resource();
        let size = shape.iter().product::<usize>() as u64 * 4;
        let (buffer, offset) = (res.buffer.clone(), res.offset);
        Ok(Self { buffer, offset, size, shape, _keep: Box::new(managed) })
    }

    /// The buffer holding the values (shared with Burn's memory pool: use only
    /// `offset..offset + size`).
    pub fn buffer(&self) -> &wgpu::Buffer {
        &self.buffer
    }
    /// Byte offset of the first value in [`Self::buffer`].
    pub fn offset(&self) -> u64 {
        self.offset
    }
    /// Size in bytes (4 per value).
    pub fn size(&self) -> u64 {
        self.size
    }
    /// The tensor's shape, e.g. [1, S, H, W].
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
    /// The range as a binding for a bind group (a storage buffer needs the offset to be a
    /// multiple of the device's `min_storage_buffer_offset_alignment`; otherwise copy first
    /// with [`Self::copy_to_buffer`]).
    pub fn binding(&self) -> wgpu::BufferBinding<'_> {
        wgpu::BufferBinding { buffer: &self.buffer, offset: self.offset, size: wgpu::BufferSize::new(self.size) }
    }
    /// Encodes a copy of all values into `dst` (`COPY_DST` usage) at `dst_offset`.
    pub fn copy_to_buffer(&self, encoder: &mut wgpu::CommandEncoder, dst: &wgpu::Buffer, dst_offset: u64) {
        encoder.copy_buffer_to_buffer(&self.buffer, self.offset, dst, dst_offset, self.size);
    }

    /// Encodes a copy of view `view` (the `[H, W]` plane number `view`) into an `R32Float`
    /// texture of at least `width × height` with `COPY_DST` usage. Copies row by row, since a
    /// buffer-to-texture copy needs 256-byte aligned rows and `4·W` rarely is.
    pub fn copy_view_to_texture(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        view: usize,
        width: usize,
        height: usize,
        texture: &wgpu::Texture,
    ) -> Result<(), Da3Error> {
        let plane = (width * height * 4) as u64;
        if (view as u64 + 1) * plane > self.size {
            return Err(Da3Error::Input(format!(
                "view {view} of {width}x{height} is outside a tensor of shape {:?}",
                self.shape
            )));
        }
        if texture.format() != wgpu::TextureFormat::R32Float
            || !texture.usage().contains(wgpu::TextureUsages::COPY_DST)
            || (texture.width() as usize) < width
            || (texture.height() as usize) < height
        {
            return Err(Da3Error::Input(format!(
                "depth texture is {:?} {}x{} with {:?}; it must be R32Float, at least {width}x{height}, with COPY_DST",
                texture.format(),
                texture.width(),
                texture.height(),
                texture.usage()
            )));
        }
        for y in 0..height {
            encoder.copy_buffer_to_texture(
                wgpu::TexelCopyBufferInfo {
                    buffer: &self.buffer,
                    layout: wgpu::TexelCopyBufferLayout {
                        offset: self.offset + view as u64 * plane + (y * width * 4) as u64,
                        bytes_per_row: None,
                        rows_per_image: None,
                    },
                },
                wgpu::TexelCopyTextureInfo {
                    texture,
                    mip_level: 0,
                    origin: wgpu::Origin3d { x: 0, y: y as u32, z: 0 },
                    aspect: wgpu::TextureAspect::All,
                },
                wgpu::Extent3d { width: width as u32, height: 1, depth_or_array_layers: 1 },
            );
        }
        Ok(())
    }
}
