// Loader for engine_preprocess: a storage buffer of RGBA f32 pixels in [0, 1].
@group(0) @binding(2) var<storage, read> src_pixels: array<vec4<f32>>;

fn load_rgb(x: i32, y: i32) -> vec3<f32> {
    let i = params.src_base + u32(y) * params.src_stride + u32(x);
    return src_pixels[i].rgb;
}
