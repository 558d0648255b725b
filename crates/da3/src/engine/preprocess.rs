//! GPU preprocessing: an engine texture or buffer to the network's normalized [3, H, W] input,
//! in one compute pass (`shaders/engine/*.wgsl`).
//!
//! Geometry is the CPU path's ([`Plan`]): the same processed size, crop and scale. The pixels
//! differ slightly: the CPU path reproduces OpenCV bit for bit (cubic or area resize, rounded to
//! 8 bits after each of up to two resizes); the GPU resamples once from the input, per axis with
//! Keys bicubic (A = -0.75) when enlarging and exact pixel-area weights otherwise, in f32 without
//! intermediate rounding. At the identity size both are exact copies.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::preprocess::Plan;
use crate::Da3Error;

const COMMON: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shaders/engine/preprocess.wgsl"));
const LOAD_TEXTURE: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shaders/engine/load_texture.wgsl"));
const LOAD_RGBA8: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shaders/engine/load_rgba8.wgsl"));
const LOAD_RGBA32F: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shaders/engine/load_rgba32f.wgsl"));

/// Flag bit: the texture decodes sRGB to linear on load; encode it back.
const FLAG_SRGB: u32 = 1;
/// Flag bit: the source holds 8-bit levels; round to them after decoding.
const FLAG_8BIT: u32 = 4;

/// One view to preprocess on the GPU, borrowed from the engine.
///
/// Colour semantics: the network expects what a photo file holds, sRGB-encoded values. For
/// `*Unorm` formats and buffers the stored values are taken as sRGB-encoded as they are; for
/// `*UnormSrgb` formats (which the GPU decodes to linear on load) they are encoded back, so an
/// image uploaded into either format gives the same input. Alpha is ignored.
#[derive(Debug, Clone, Copy)]
pub enum GpuImage<'a> {
    /// A 2D texture with `TEXTURE_BINDING` usage, format `Rgba8Unorm`, `Rgba8UnormSrgb`,
    /// `Bgra8Unorm` or `Bgra8UnormSrgb`; mip level 0, array layer 0 is read.
    Texture(&'a wgpu::Texture),
    /// A `STORAGE` buffer of RGBA8 pixels (4 bytes each, R first).
    Rgba8Buffer(BufferImage<'a>),
    /// A `STORAGE` buffer of RGBA f32 pixels (16 bytes each) with sRGB-encoded values in [0, 1].
    Rgba32FloatBuffer(BufferImage<'a>),
}

/// An image held in a wgpu buffer.
#[derive(Debug, Clone, Copy)]
pub struct BufferImage<'a> {
    /// The buffer (needs `STORAGE` usage).
    pub buffer: &'a wgpu::Buffer,
    /// Index of the first pixel (top-left) in pixels from the start of the buffer.
    pub first_pixel: u32,
    /// Pixels from one row to the next (≥ `width`).
    pub row_pixels: u32,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}

impl GpuImage<'_> {
    /// The input `(width, height)`.
    pub fn size(&self) -> (u32, u32) {
        match self {
            Self::Texture(t) => (t.width(), t.height()),
            Self::Rgba8Buffer(b) | Self::Rgba32FloatBuffer(b) => (b.width, b.height),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Loader {
    Texture,
    Rgba8,
    Rgba32F,
}

/// Uniform block of the shader (`Params` in preprocess.wgsl): 12 four-byte fields.
struct Params {
    src_size: [u32; 2],
    dst_size: [u32; 2],
    scale: [f32; 2],
    offset: [u32; 2],
    flags: u32,
    src_base: u32,
    src_stride: u32,
    out_base: u32,
}

impl Params {
    /// The little-endian bytes of the uniform block, in declaration order.
    fn bytes(&self) -> Vec<u8> {
        let words = [
            self.src_size[0],
            self.src_size[1],
            self.dst_size[0],
            self.dst_size[1],
            self.scale[0].to_bits(),
            self.scale[1].to_bits(),
            self.offset[0],
            self.offset[1],
            self.flags,
            self.src_base,
            self.src_stride,
            self.out_base,
        ];
        words.iter().flat_map(|w| w.to_le_bytes()).collect()
    }
}

/// The compute pipelines (one per input kind, built on first use).
pub(crate) struct Preprocessor {
    pipelines: Mutex<HashMap<Loader, wgpu::ComputePipeline>>,
}

impl Preprocessor {
    pub(crate) fn new() -> Self {
        Self { pipelines: Mutex::new(HashMap::new()) }
    }

    fn pipeline(&self, device: &wgpu::Device, loader: Loader) -> wgpu::ComputePipeline {
        let mut map = self.pipelines.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(loader)
            .or_insert_with(|| {
                let load = match loader {
                    Loader::Texture => LOAD_TEXTURE,
                    Loader::Rgba8 => LOAD_RGBA8,
                    Loader::Rgba32F => LOAD_RGBA32F,
                };
                let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some("da3 engine preprocess"),
                    source: wgpu::ShaderSource::Wgsl(format!("{load}\n{COMMON}").into()),
                });
                device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some("da3 engine preprocess"),
                    layout: None,
                    module: &module,
                    entry_point: Some("main"),
                    compilation_options: Default::default(),
                    cache: None,
                })
            })
            .clone()
    }

    /// Encodes the pass that writes `image`, resampled per `plan`, as normalized planes
    /// [3, H, W] f32 into `out` (`STORAGE` usage) from value index `out_base` on.
    pub(crate) fn encode(
        &self,
        device: &wgpu::Device,
        encoder: &mut wgpu::CommandEncoder,
        image: GpuImage<'_>,
        plan: &Plan,
        out: &wgpu::Buffer,
        out_base: u32,
    ) -> Result<(), Da3Error> {
        let (loader, flags, base, stride) = match image {
            GpuImage::Texture(t) => {
                check_texture(t)?;
                // Loads from Bgra8 textures come back in RGBA order: only sRGB matters.
                let flags = if t.format().is_srgb() { FLAG_SRGB } else { 0 };
                (Loader::Texture, flags | FLAG_8BIT, 0, 0)
            }
            GpuImage::Rgba8Buffer(b) => {
                check_buffer(&b, 4)?;
                (Loader::Rgba8, FLAG_8BIT, b.first_pixel, b.row_pixels)
            }
            GpuImage::Rgba32FloatBuffer(b) => {
                check_buffer(&b, 16)?;
                (Loader::Rgba32F, 0, b.first_pixel, b.row_pixels)
            }
        };
        let (sw, sh) = plan.scaled_size();
        let (ow, oh) = plan.original;
        let (left, top) = plan.crop_offset();
        let (w, h) = plan.size;
        let params = Params {
            src_size: [ow as u32, oh as u32],
            dst_size: [w as u32, h as u32],
            scale: [(ow as f64 / sw as f64) as f32, (oh as f64 / sh as f64) as f32],
            offset: [left as u32, top as u32],
            flags,
            src_base: base,
            src_stride: stride,
            out_base,
        };
        let bytes = params.bytes();
        let uniform = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("da3 engine preprocess params"),
            size: bytes.len() as u64,
            usage: wgpu::BufferUsages::UNIFORM,
            mapped_at_creation: true,
        });
        uniform.slice(..).get_mapped_range_mut().copy_from_slice(&bytes);
        uniform.unmap();
        let pipeline = self.pipeline(device, loader);
        let view;
        let source = match image {
            GpuImage::Texture(t) => {
                view = t.create_view(&wgpu::TextureViewDescriptor {
                    dimension: Some(wgpu::TextureViewDimension::D2),
                    base_mip_level: 0,
                    mip_level_count: Some(1),
                    base_array_layer: 0,
                    array_layer_count: Some(1),
                    ..Default::default()
                });
                wgpu::BindingResource::TextureView(&view)
            }
            GpuImage::Rgba8Buffer(b) | GpuImage::Rgba32FloatBuffer(b) => b.buffer.as_entire_binding(),
        };
        let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("da3 engine preprocess"),
            layout: &pipeline.get_bind_group_layout(0),
            entries: &[
                wgpu::BindGroupEntry { binding: 0, resource: uniform.as_entire_binding() },
                wgpu::BindGroupEntry { binding: 1, resource: out.as_entire_binding() },
                wgpu::BindGroupEntry { binding: 2, resource: source },
            ],
        });
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some("da3 engine preprocess"),
            timestamp_writes: None,
        });
        pass.set_pipeline(&pipeline);
        pass.set_bind_group(0, &bind_group, &[]);
        pass.dispatch_workgroups((w as u32).div_ceil(8), (h as u32).div_ceil(8), 1);
        Ok(())
    }
}

fn check_texture(t: &wgpu::Texture) -> Result<(), Da3Error> {
    use wgpu::TextureFormat as F;
    if !matches!(t.format(), F::Rgba8Unorm | F::Rgba8UnormSrgb | F::Bgra8Unorm | F::Bgra8UnormSrgb) {
        return Err(Da3Error::Input(format!(
            "input texture has format {:?}; da3's engine API reads Rgba8Unorm, Rgba8UnormSrgb, \
             Bgra8Unorm or Bgra8UnormSrgb (copy or render the image into one of those first)",
            t.format()
        )));
    }
    if !t.usage().contains(wgpu::TextureUsages::TEXTURE_BINDING) {
        return Err(Da3Error::Input(format!(
            "input texture ({}x{}) lacks TextureUsages::TEXTURE_BINDING; create it with that usage \
             so da3's preprocessing pass can read it",
            t.width(),
            t.height()
        )));
    }
    if t.dimension() != wgpu::TextureDimension::D2 || t.sample_count() != 1 {
        return Err(Da3Error::Input(format!(
            "input texture must be a single-sampled 2D texture (got {:?}, {} samples)",
            t.dimension(),
            t.sample_count()
        )));
    }
    Ok(())
}

fn check_buffer(b: &BufferImage<'_>, pixel_bytes: u64) -> Result<(), Da3Error> {
    if !b.buffer.usage().contains(wgpu::BufferUsages::STORAGE) {
        return Err(Da3Error::Input(
            "input buffer lacks BufferUsages::STORAGE; create it with that usage so da3's \
             preprocessing pass can read it"
                .into(),
        ));
    }
    if b.row_pixels < b.width {
        return Err(Da3Error::Input(format!(
            "input buffer rows are {} pixels apart but the image is {} wide; row_pixels must be ≥ width",
            b.row_pixels, b.width
        )));
    }
    let last = b.first_pixel as u64 + (b.height.max(1) as u64 - 1) * b.row_pixels as u64 + b.width as u64;
    if last * pixel_bytes > b.buffer.size() {
        return Err(Da3Error::Input(format!(
            "input buffer holds {} bytes but a {}x{} image (first pixel {}, {} pixels per row, {pixel_bytes} \
             bytes each) needs {}",
            b.buffer.size(),
            b.width,
            b.height,
            b.first_pixel,
            b.row_pixels,
            last * pixel_bytes
        )));
    }
    Ok(())
}
