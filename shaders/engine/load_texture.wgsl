// Loader for engine_preprocess: a sampled 2D texture (any float-sampleable format).
@group(0) @binding(2) var src_texture: texture_2d<f32>;

fn load_rgb(x: i32, y: i32) -> vec3<f32> {
    return textureLoad(src_texture, vec2<i32>(x, y), 0).rgb;
}
