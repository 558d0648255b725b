//! Embedding da3 in a wgpu engine, headless: upload an image into a texture, run DA3 on it on
//! the engine's own device and queue, and render the depth texture it produces with a small
//! colormap pass (inverse depth, turbo) into a colour texture, saved as a PNG.
//!
//! ```text
//! cargo run -p da3 --features wgpu --example engine_depth -- \
//!     [image.png] [config.json model.safetensors] [out.png]
//! ```
//! Defaults: examples/images/view_0.png, the tiny test model (random weights: the picture shows
//! the plumbing, not a meaningful depth), and engine_depth.png. With a real model, pass its
//! config JSON (e.g. `{"model_name": "da3-small"}`) and weights.
//!
//! Only the final colour image is read back, to write the PNG; depth never leaves the GPU.

use std::path::{Path, PathBuf};

use da3::engine::{wgpu, Da3Engine, EngineContext, EngineOptions, GpuImage};
use da3::Da3Config;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let args: Vec<String> = std::env::args().skip(1).collect();
    let image_path = args.first().map(PathBuf::from).unwrap_or_else(|| root.join("../../examples/images/view_0.png"));
    let (config_path, weights_path, out_path) = match args.len() {
        0 | 1 => (root.join("tests/fixtures/tiny.config.json"), root.join("tests/fixtures/tiny.weights.safetensors"), "engine_depth.png".into()),
        3 | 4 => (PathBuf::from(&args[1]), PathBuf::from(&args[2]), args.get(3).cloned().unwrap_or("engine_depth.png".into())),
        _ => return Err("usage: engine_depth [image] [config.json model.safetensors] [out.png]".into()),
    };

    // The engine's device (a real engine has its own; it requests it with this descriptor).
    let ctx = EngineContext::headless()?;
    let (device, queue) = (ctx.device.clone(), ctx.queue.clone());
    println!("adapter: {}", ctx.adapter.get_info().name);

    let config = Da3Config::from_json(&std::fs::read_to_string(&config_path)?)?;
    let engine = Da3Engine::from_file(ctx, config, &weights_path, EngineOptions::default())?;

    // The engine's image: an Rgba8UnormSrgb texture, as a decoded photo would be uploaded.
    let rgba = image::open(&image_path)?.to_rgba8();
    let (w, h) = rgba.dimensions();
    let frame = device.create_texture(&wgpu::TextureDescriptor {
        label: Some("frame"),
        size: wgpu::Extent3d { width: w, height: h, depth_or_array_layers: 1 },
        mip_level_count: 1,
        sample_count: 1,
        dimension: wgpu::TextureDimension::D2,
        format: wgpu::TextureFormat::Rgba8UnormSrgb,
        usage: wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::COPY_DST,
        view_formats: &[],
    });
    queue.write_texture(
        frame.as_image_copy(),
        rgba.as_raw(),
        wgpu::TexelCopyBufferLayout { offset: 0, bytes_per_row: Some(w * 4), rows_per_image: None },
        frame.size(),
    );

    // DA3 on the GPU: texture in, depth texture out.
    let prediction = engine.infer(&[GpuImage::Texture(&frame)])?;
    let depth = prediction.depth_texture(&device, &queue, 0)?;
    let (dw, dh) = (depth.width(), depth.height());
    println!("{}x{} image -> {dw}x{dh} depth texture", w, h);

    // The engine's own passes: inverse-depth range (compute), then the colormap (render).
    let shader = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some("colormap"),
        source: wgpu::ShaderSource::Wgsl(include_str!("engine_depth.wgsl").into()),
    });
    let range = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("inverse depth range"),
        size: 8,
        usage: wgpu::BufferUsages::STORAGE,
        mapped_at_creation: false,
    });
    let depth_view = depth.create_view(&Default::default());
    let reduce = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some("range"),
        layout: None,
        module: &shader,
        entry_point: Some("inverse_depth_range"),
        compilation_options: Default::default(),
        cache: None,
    });
    let colour_format = wgpu::TextureFormat::Rgba8Unorm;
    let render = device.create_render_pipeline(&wgpu::RenderPipelineDescriptor {
        label: Some("colormap"),
        layout: None,
        vertex: wgpu::VertexState { module: &shader, entry_point: Some("vs"), compilation_options: Default::default(), buffers: &[] },
        fragment: Some(wgpu::FragmentState {
            module: &shader,
            entry_point: Some("fs"),
            compilation_options: Default::default(),
            targets: &[Some(colour_format.into())],
        }),
        primitive: Default::default(),
        depth_stencil: None,
        multisample: Default::default(),
        multiview_mask: None,
        cache: None,
    });
    let bind = |layout: wgpu::BindGroupLayout| {
        device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &layout,
            entries: &[
                wgpu::BindGroupEntry { binding: 0, resource: wgpu::BindingResource::TextureView(&depth_view) },
                wgpu::BindGroupEntry { binding: 1, resource: range.as_entire_binding() },
            ],
        })
    };
    let (reduce_group, render_group) = (bind(reduce.get_bind_group_layout(0)), bind(render.get_bind_group_layout(0)));
    let colour = device.create_texture(&wgpu::TextureDescriptor {
        label: Some("depth colour"),
        size: depth.size(),
        mip_level_count: 1,
        sample_count: 1,
        dimension: wgpu::TextureDimension::D2,
        format: colour_format,
        usage: wgpu::TextureUsages::RENDER_ATTACHMENT | wgpu::TextureUsages::COPY_SRC,
        view_formats: &[],
    });
    let colour_view = colour.create_view(&Default::default());
    let padded_row = (dw * 4).div_ceil(wgpu::COPY_BYTES_PER_ROW_ALIGNMENT) * wgpu::COPY_BYTES_PER_ROW_ALIGNMENT;
    let output = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("png pixels"),
        size: (padded_row * dh) as u64,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut encoder = device.create_command_encoder(&Default::default());
    {
        let mut pass = encoder.begin_compute_pass(&Default::default());
        pass.set_pipeline(&reduce);
        pass.set_bind_group(0, &reduce_group, &[]);
        pass.dispatch_workgroups(1, 1, 1);
    }
    {
        let mut pass = encoder.begin_render_pass(&wgpu::RenderPassDescriptor {
            label: Some("colormap"),
            color_attachments: &[Some(wgpu::RenderPassColorAttachment {
                view: &colour_view,
                depth_slice: None,
                resolve_target: None,
                ops: wgpu::Operations { load: wgpu::LoadOp::Clear(wgpu::Color::BLACK), store: wgpu::StoreOp::Store },
            })],
            ..Default::default()
        });
        pass.set_pipeline(&render);
        pass.set_bind_group(0, &render_group, &[]);
        pass.draw(0..3, 0..1);
    }
    encoder.copy_texture_to_buffer(
        colour.as_image_copy(),
        wgpu::TexelCopyBufferInfo {
            buffer: &output,
            layout: wgpu::TexelCopyBufferLayout { offset: 0, bytes_per_row: Some(padded_row), rows_per_image: None },
        },
        colour.size(),
    );
    queue.submit([encoder.finish()]);

    // Save the PNG (the one readback, of the rendered colours).
    output.slice(..).map_async(wgpu::MapMode::Read, |r| r.expect("map the PNG pixels"));
    device.poll(wgpu::PollType::wait_indefinitely())?;
    let data = output.slice(..).get_mapped_range();
    let pixels: Vec<u8> =
        data.chunks_exact(padded_row as usize).flat_map(|row| &row[..(dw * 4) as usize]).copied().collect();
    image::RgbaImage::from_raw(dw, dh, pixels).ok_or("pixel count")?.save(&out_path)?;
    println!("wrote {out_path}");
    Ok(())
}
