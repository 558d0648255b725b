//! The engine API (`da3::engine`) on lavapipe: no host readback on the GPU path, outputs equal
//! to the host API's on identical input, and the GPU preprocessing measured against the CPU's.

#![cfg(feature = "wgpu")]

use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use burn::tensor::Tensor;
use da3::api::{RgbView, Views};
use da3::engine::{wgpu, BufferImage, Da3Engine, EngineBackend, EngineContext, EngineOptions, GpuImage, GpuTensor};
use da3::preprocess::{preprocess, ImageRef, Options, Pixels};
use da3::{readback, Da3Config, RefViewStrategy};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// One engine for the whole file (each `Da3Engine::new` registers a Burn device), behind a
/// lock because the readback counter is process-wide.
fn engine() -> std::sync::MutexGuard<'static, Da3Engine> {
    static ENGINE: OnceLock<Mutex<Da3Engine>> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            let config =
                Da3Config::from_json(&std::fs::read_to_string(fixtures().join("tiny.config.json")).unwrap()).unwrap();
            let ctx = EngineContext::headless().expect("a wgpu adapter (lavapipe: apt-get install mesa-vulkan-drivers)");
            let options = EngineOptions { process_res: 42, ..EngineOptions::default() };
            // From the mapped file (its pages released as the tensors are uploaded);
            // `engine_on_bytes_refuses_nested_models` goes through `Da3Engine::new`.
            let weights = fixtures().join("tiny.weights.safetensors");
            Mutex::new(Da3Engine::from_file(ctx, config, &weights, options).unwrap())
        })
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// Test-side readback of a GPU buffer range (the library never does this on the engine path).
fn read_f32(ctx: &EngineContext, buffer: &wgpu::Buffer, offset: u64, size: u64) -> Vec<f32> {
    let staging = ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("test readback"),
        size,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut enc = ctx.device.create_command_encoder(&Default::default());
    enc.copy_buffer_to_buffer(buffer, offset, &staging, 0, size);
    ctx.queue.submit([enc.finish()]);
    staging.slice(..).map_async(wgpu::MapMode::Read, |r| r.unwrap());
    ctx.device.poll(wgpu::PollType::wait_indefinitely()).unwrap();
    let data = staging.slice(..).get_mapped_range();
    data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

fn read_tensor(ctx: &EngineContext, t: &GpuTensor) -> Vec<f32> {
    read_f32(ctx, t.buffer(), t.offset(), t.size())
}

/// A deterministic textured RGB image.
fn test_rgb(w: usize, h: usize) -> Vec<u8> {
    (0..h)
        .flat_map(|y| {
            (0..w).flat_map(move |x| {
                let r = (128.0 + 100.0 * ((x as f32) * 0.21).sin() * ((y as f32) * 0.13).cos()) as u8;
                let g = ((x * 255) / w.max(1)) as u8;
                let b = ((x * 7 + y * 13) % 256) as u8;
                [r, g, b]
            })
        })
        .collect()
}

fn rgba_of(rgb: &[u8]) -> Vec<u8> {
    rgb.chunks_exact(3).flat_map(|p| [p[0], p[1], p[2], 255]).collect()
}

fn storage_buffer(ctx: &EngineContext, bytes: &[u8]) -> wgpu::Buffer {
    let buffer = ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("test pixels"),
        size: bytes.len() as u64,
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    ctx.queue.write_buffer(&buffer, 0, bytes);
    buffer
}

fn texture(ctx: &EngineContext, rgba: &[u8], w: u32, h: u32, format: wgpu::TextureFormat) -> wgpu::Texture {
    let t = ctx.device.create_texture(&wgpu::TextureDescriptor {
        label: Some("test image"),
        size: wgpu::Extent3d { width: w, height: h, depth_or_array_layers: 1 },
        mip_level_count: 1,
        sample_count: 1,
        dimension: wgpu::TextureDimension::D2,
        format,
        usage: wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::COPY_DST,
        view_formats: &[],
    });
    ctx.queue.write_texture(
        t.as_image_copy(),
        rgba,
        wgpu::TexelCopyBufferLayout { offset: 0, bytes_per_row: Some(w * 4), rows_per_image: None },
        t.size(),
    );
    t
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn max_rel_diff(a: &[f32], b: &[f32]) -> f32 {
    let scale = b.iter().map(|v| v.abs()).fold(0.0, f32::max).max(1e-12);
    max_abs_diff(a, b) / scale
}

/// The GPU path reads nothing back (the counter does not move while it runs, and does move for
/// the host API, so it would see one), and its depth and confidence equal the host API's on
/// the same input: an image already at the processed size, where both preprocessings are exact
/// copies.
#[test]
fn gpu_path_reads_nothing_back_and_matches_the_host_api() {
    let engine = engine();
    let ctx = engine.context().clone();
    let (w, h) = (42usize, 28usize); // process_res 42: unchanged by the upper-bound resize
    let views_rgb = [test_rgb(w, h), test_rgb(w, h).iter().rev().copied().collect::<Vec<_>>()];
    let buffers: Vec<wgpu::Buffer> = views_rgb.iter().map(|rgb| storage_buffer(&ctx, &rgba_of(rgb))).collect();
    let inputs: Vec<GpuImage<'_>> = buffers
        .iter()
        .map(|b| {
            GpuImage::Rgba8Buffer(BufferImage { buffer: b, first_pixel: 0, row_pixels: w as u32, width: w as u32, height: h as u32 })
        })
        .collect();

    let before = readback::count();
    let gpu = engine.infer(&inputs).unwrap();
    let conf = gpu.conf.as_ref().expect("the tiny model is main-series: it predicts confidence");
    let _depth_texture = gpu.depth_texture(&ctx.device, &ctx.queue, 1).unwrap();
    assert_eq!(readback::count(), before, "the engine path read a tensor back to the host");
    assert_eq!((gpu.views, gpu.height, gpu.width), (2, h, w));
    assert_eq!(gpu.depth.shape(), &[1, 2, h, w]);

    let depth = read_tensor(&ctx, &gpu.depth);
    let conf = read_tensor(&ctx, conf);

    let rgb_views: Vec<RgbView<'_>> = views_rgb.iter().map(|p| RgbView { pixels: p, width: w, height: h }).collect();
    let host = engine.da3().predict(&Views::from_rgb8(&rgb_views).unwrap(), RefViewStrategy::default()).unwrap();
    assert!(readback::count() > before, "the host API's readbacks must be counted");
    let (d_err, c_err) = (max_rel_diff(&depth, &host.depth), max_rel_diff(&conf, &host.conf));
    println!("engine vs host API: depth max rel diff {d_err:e}, conf {c_err:e}");
    // Same backend and input up to the f32 rounding of the normalization.
    assert!(d_err < 1e-4, "depth differs from the host API by {d_err}");
    assert!(c_err < 1e-4, "confidence differs from the host API by {c_err}");
}

/// Every input kind gives the CPU preprocessing's normalized input when no resize is needed
/// (sRGB textures are decoded by the GPU and encoded back by the shader).
#[test]
fn identity_preprocessing_equals_the_cpu_normalization() {
    let engine = engine();
    let ctx = engine.context().clone();
    let (w, h) = (42u32, 28u32);
    let rgb = test_rgb(w as usize, h as usize);
    let rgba = rgba_of(&rgb);
    let cpu = Views::from_rgb8(&[RgbView { pixels: &rgb, width: w as usize, height: h as usize }]).unwrap();

    let rgba8 = storage_buffer(&ctx, &rgba);
    let floats: Vec<f32> = rgba.iter().map(|&v| v as f32 / 255.0).collect();
    // Padded rows and an offset start: 3 pixels of padding per row, 5 pixels before the image.
    let mut padded = vec![0f32; 4 * (5 + (w as usize + 3) * h as usize)];
    for y in 0..h as usize {
        let dst = 4 * (5 + y * (w as usize + 3));
        padded[dst..dst + 4 * w as usize].copy_from_slice(&floats[4 * y * w as usize..4 * (y + 1) * w as usize]);
    }
    let rgba32 = storage_buffer(&ctx, bytemuck_f32(&padded));
    let bgra: Vec<u8> = rgba.chunks_exact(4).flat_map(|p| [p[2], p[1], p[0], p[3]]).collect();
    let tex = texture(&ctx, &rgba, w, h, wgpu::TextureFormat::Rgba8Unorm);
    let tex_srgb = texture(&ctx, &rgba, w, h, wgpu::TextureFormat::Rgba8UnormSrgb);
    let tex_bgra = texture(&ctx, &bgra, w, h, wgpu::TextureFormat::Bgra8UnormSrgb);
    let cases: [(&str, GpuImage<'_>, f32); 5] = [
        ("rgba8 buffer", GpuImage::Rgba8Buffer(BufferImage { buffer: &rgba8, first_pixel: 0, row_pixels: w, width: w, height: h }), 1e-6),
        (
            "rgba32f buffer (padded)",
            GpuImage::Rgba32FloatBuffer(BufferImage { buffer: &rgba32, first_pixel: 5, row_pixels: w + 3, width: w, height: h }),
            1e-6,
        ),
        ("Rgba8Unorm texture", GpuImage::Texture(&tex), 1e-6),
        // sRGB decoded by the GPU, encoded back and rounded to whole levels by the shader.
        ("Rgba8UnormSrgb texture", GpuImage::Texture(&tex_srgb), 1e-6),
        ("Bgra8UnormSrgb texture", GpuImage::Texture(&tex_bgra), 1e-6),
    ];
    for (name, input, tol) in cases {
        let (t, plans) = engine.preprocess(&[input]).unwrap();
        assert_eq!(plans[0].size, (w as usize, h as usize));
        let got = host_values(t);
        let err = max_abs_diff(&got, cpu.data());
        println!("{name}: max abs diff {err:e} (normalized units)");
        assert!(err <= tol, "{name}: GPU preprocessing differs from the CPU's by {err} > {tol}");
    }
}

/// The GPU resize (one resample, f32) against the CPU path (OpenCV-exact, 8-bit rounding after
/// each resize), in 8-bit levels, on a photo (examples/images/view_0.png, 84x56).
#[test]
fn gpu_resize_is_close_to_the_cpu_resize() {
    let engine = engine();
    let ctx = engine.context().clone();
    let img = image::open(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/images/view_0.png"))
        .unwrap()
        .to_rgb8();
    let (w, h) = (img.width(), img.height());
    let tex = texture(&ctx, &rgba_of(img.as_raw()), w, h, wgpu::TextureFormat::Rgba8Unorm);
    // (process_res, what the CPU does, bounds on the mean and max abs difference in levels);
    // a single resize differs by the CPU's rounding to 8 bits only (≤ 0.5 level)
    let cases = [
        (42, "area ×1/2", 0.2, 0.51),
        // The CPU resizes twice (84x56 -> 70x47 -> 70x42, rounding to 8 bits in between);
        // the GPU resamples once 84x56 -> 70x42: they differ most on sharp edges.
        (70, "area ×5/6 then area to 70x42", 0.8, 23.0),
        (126, "cubic ×1.5", 0.25, 0.51),
        (168, "cubic ×2", 0.25, 0.51),
    ];
    for (res, what, mean_bound, max_bound) in cases {
        let options = Options { process_res: res, ..Options::default() };
        let cpu = preprocess(&[ImageRef { pixels: Pixels::Rgb8(img.as_raw()), width: w as usize, height: h as usize }], None, &options)
            .unwrap();
        let plan = da3::preprocess::Plan::new(w as usize, h as usize, res, options.method).unwrap();
        let gpu = gpu_preprocess_at(&engine, GpuImage::Texture(&tex), res);
        assert_eq!(gpu.len(), cpu.views.data().len(), "{what}: processed size {:?}", plan.size);
        // Back to 8-bit levels: x·std·255.
        let plane = gpu.len() / 3;
        let levels: Vec<f32> = gpu
            .iter()
            .zip(cpu.views.data())
            .enumerate()
            .map(|(i, (g, c))| (g - c).abs() * [0.229f32, 0.224, 0.225][i / plane] * 255.0)
            .collect();
        let mean = levels.iter().sum::<f32>() / levels.len() as f32;
        let max = levels.iter().copied().fold(0.0, f32::max);
        println!("process_res {res} ({what}, {:?}): GPU vs CPU mean {mean:.3} max {max:.3} levels", plan.size);
        assert!(mean <= mean_bound && max <= max_bound, "{what}: mean {mean} max {max} levels");
    }
}

/// GPU-preprocesses one view at another `process_res`.
fn gpu_preprocess_at(engine: &Da3Engine, input: GpuImage<'_>, process_res: usize) -> Vec<f32> {
    let options = EngineOptions { process_res, ..*engine.options() };
    let (t, _) = engine.preprocess_with(&[input], &options).unwrap();
    host_values(t)
}

fn host_values(t: Tensor<EngineBackend, 5>) -> Vec<f32> {
    t.into_data().convert::<f32>().into_vec::<f32>().unwrap()
}

fn bytemuck_f32(v: &[f32]) -> &[u8] {
    // SAFETY: f32 has no padding or invalid bit patterns; u8 has alignment 1.
    unsafe { std::slice::from_raw_parts(v.as_ptr().cast::<u8>(), std::mem::size_of_val(v)) }
}

/// `Da3Engine::new` (bytes) refuses a nested model before touching the device, with a reason.
#[test]
fn engine_on_bytes_refuses_nested_models() {
    let tiny = Da3Config::from_json(&std::fs::read_to_string(fixtures().join("tiny.config.json")).unwrap()).unwrap();
    let nested = Da3Config { metric_branch: Some(Box::new(tiny.clone())), ..tiny };
    let weights = std::fs::read(fixtures().join("tiny.weights.safetensors")).unwrap();
    let ctx = engine().context().clone();
    let err = Da3Engine::new(ctx, nested, &weights, "tiny", EngineOptions::default()).err().expect("a nested model is refused");
    assert!(err.to_string().contains("nested model"), "{err}");
}

/// Bad inputs are errors that say what to do, not panics.
#[test]
fn bad_inputs_are_errors() {
    let engine = engine();
    let ctx = engine.context().clone();
    let small = storage_buffer(&ctx, &[0u8; 16]);
    let err = engine
        .infer(&[GpuImage::Rgba8Buffer(BufferImage { buffer: &small, first_pixel: 0, row_pixels: 42, width: 42, height: 28 })])
        .unwrap_err()
        .to_string();
    assert!(err.contains("needs"), "{err}");
    let float_tex = ctx.device.create_texture(&wgpu::TextureDescriptor {
        label: None,
        size: wgpu::Extent3d { width: 42, height: 28, depth_or_array_layers: 1 },
        mip_level_count: 1,
        sample_count: 1,
        dimension: wgpu::TextureDimension::D2,
        format: wgpu::TextureFormat::R32Float,
        usage: wgpu::TextureUsages::TEXTURE_BINDING,
        view_formats: &[],
    });
    let err = engine.infer(&[GpuImage::Texture(&float_tex)]).unwrap_err().to_string();
    assert!(err.contains("Rgba8Unorm"), "{err}");
    assert!(engine.infer(&[]).is_err());
}
