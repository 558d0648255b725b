// engine_depth example: colour a depth texture (R32Float) produced by da3's engine API.

@group(0) @binding(0) var depth: texture_2d<f32>;
@group(0) @binding(1) var<storage, read_write> range: array<f32, 2>; // [min, max] of 1/depth

var<workgroup> lo: array<f32, 256>;
var<workgroup> hi: array<f32, 256>;

// One workgroup finds the range of inverse depth over the whole texture.
@compute @workgroup_size(256)
fn inverse_depth_range(@builtin(local_invocation_index) i: u32) {
    let size = textureDimensions(depth);
    var a = 3.4e38;
    var b = -3.4e38;
    for (var p = i; p < size.x * size.y; p += 256u) {
        let v = 1.0 / max(textureLoad(depth, vec2<u32>(p % size.x, p / size.x), 0).r, 1e-6);
        a = min(a, v);
        b = max(b, v);
    }
    lo[i] = a;
    hi[i] = b;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s >>= 1u) {
        if i < s {
            lo[i] = min(lo[i], lo[i + s]);
            hi[i] = max(hi[i], hi[i + s]);
        }
        workgroupBarrier();
    }
    if i == 0u {
        range[0] = lo[0];
        range[1] = hi[0];
    }
}

struct VsOut {
    @builtin(position) pos: vec4<f32>,
    @location(0) uv: vec2<f32>,
}

// A full-screen triangle.
@vertex
fn vs(@builtin(vertex_index) i: u32) -> VsOut {
    let uv = vec2<f32>(f32((i << 1u) & 2u), f32(i & 2u));
    return VsOut(vec4<f32>(uv * vec2<f32>(2.0, -2.0) + vec2<f32>(-1.0, 1.0), 0.0, 1.0), uv);
}

// Turbo colormap, polynomial fit (Google, Apache-2.0).
fn turbo(t: f32) -> vec3<f32> {
    let r4 = vec4<f32>(0.13572138, 4.61539260, -42.66032258, 132.13108234);
    let g4 = vec4<f32>(0.09140261, 2.19418839, 4.84296658, -14.18503333);
    let b4 = vec4<f32>(0.10667330, 12.64194608, -60.58204836, 110.36276771);
    let r2 = vec2<f32>(-152.94239396, 59.28637943);
    let g2 = vec2<f32>(4.27729857, 2.82956604);
    let b2 = vec2<f32>(-89.90310912, 27.34824973);
    let x = clamp(t, 0.0, 1.0);
    let v4 = vec4<f32>(1.0, x, x * x, x * x * x);
    let v2 = v4.zw * v4.z;
    return vec3<f32>(dot(v4, r4) + dot(v2, r2), dot(v4, g4) + dot(v2, g2), dot(v4, b4) + dot(v2, b2));
}

@fragment
fn fs(in: VsOut) -> @location(0) vec4<f32> {
    let size = vec2<f32>(textureDimensions(depth));
    let p = vec2<u32>(min(in.uv * size, size - 1.0));
    let inv = 1.0 / max(textureLoad(depth, p, 0).r, 1e-6);
    let t = (inv - range[0]) / max(range[1] - range[0], 1e-12);
    return vec4<f32>(turbo(t), 1.0);
}
