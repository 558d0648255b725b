// Loader for engine_preprocess: a storage buffer of packed RGBA8 pixels (R in the low byte).
@group(0) @binding(2) var<storage, read> src_pixels: array<u32>;

fn load_rgb(x: i32, y: i32) -> vec3<f32> {
    let i = params.src_base + u32(y) * params.src_stride + u32(x);
    return unpack4x8unorm(src_pixels[i]).rgb;
}
