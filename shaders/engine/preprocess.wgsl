// da3 engine API: GPU preprocessing of one view (see crates/da3/src/engine/preprocess.rs).
//
// Resamples the input once from its size to the processed size (a window `offset` + `dst`
// of the input scaled by 1 / `scale`) and writes ImageNet-normalized planes, [3, H, W] f32.
// Per axis: Keys bicubic (A = -0.75, replicated border) when enlarging, exact pixel-area
// averaging otherwise (OpenCV's INTER_CUBIC / INTER_AREA, without their 8-bit rounding).
// A loader defining `load_rgb(x, y) -> vec3<f32>` (sRGB-encoded values in [0, 1]) and the
// binding 2 it reads is prepended by the host.

struct Params {
    src_size: vec2<u32>, // input width, height
    dst_size: vec2<u32>, // processed width, height
    scale: vec2<f32>,    // input pixels per scaled pixel
    offset: vec2<u32>,   // crop offset in scaled pixels
    flags: u32,          // bit 0: re-encode linear to sRGB; bit 2: 8-bit source
    src_base: u32,       // buffer inputs: first pixel index
    src_stride: u32,     // buffer inputs: pixels per row
    out_base: u32,       // first output value (view v: v·3·H·W)
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> out_planes: array<f32>;

const MEAN = vec3<f32>(0.485, 0.456, 0.406);
const STD = vec3<f32>(0.229, 0.224, 0.225);

fn cubic_weight(d: f32) -> f32 {
    let a = -0.75;
    let x = abs(d);
    if x <= 1.0 {
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
    }
    if x < 2.0 {
        return ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a;
    }
    return 0.0;
}

// The first source index and tap count of output index `o` on an axis.
fn taps(o: u32, scale: f32, n: u32) -> vec2<i32> {
    if scale < 1.0 {
        let center = (f32(o) + 0.5) * scale - 0.5;
        return vec2<i32>(i32(floor(center)) - 1, 4);
    }
    let x0 = f32(o) * scale;
    let x1 = min(f32(o + 1u) * scale, f32(n));
    let first = i32(floor(x0));
    return vec2<i32>(first, i32(ceil(x1)) - first);
}

// The weight of source index `i` (unclamped) for output index `o`.
fn weight(o: u32, i: i32, scale: f32, n: u32) -> f32 {
    if scale < 1.0 {
        let center = (f32(o) + 0.5) * scale - 0.5;
        return cubic_weight(center - f32(i));
    }
    let x0 = f32(o) * scale;
    let x1 = min(f32(o + 1u) * scale, f32(n));
    return max(min(x1, f32(i + 1)) - max(x0, f32(i)), 0.0) / (x1 - x0);
}

fn srgb_encode(c: vec3<f32>) -> vec3<f32> {
    let lo = c * 12.92;
    let hi = 1.055 * pow(c, vec3<f32>(1.0 / 2.4)) - 0.055;
    return select(hi, lo, c <= vec3<f32>(0.0031308));
}

fn pixel(x: i32, y: i32) -> vec3<f32> {
    let cx = clamp(x, 0, i32(params.src_size.x) - 1);
    let cy = clamp(y, 0, i32(params.src_size.y) - 1);
    var c = load_rgb(cx, cy);
    if (params.flags & 1u) != 0u {
        c = srgb_encode(c);
    }
    if (params.flags & 4u) != 0u {
        // 8-bit sources hold whole levels: undo the decode/encode round trip's error (a
        // software sRGB decode is off by up to a third of a level).
        c = round(c * 255.0) / 255.0;
    }
    return c;
}

@compute @workgroup_size(8, 8, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    if gid.x >= params.dst_size.x || gid.y >= params.dst_size.y {
        return;
    }
    let ox = gid.x + params.offset.x;
    let oy = gid.y + params.offset.y;
    let tx = taps(ox, params.scale.x, params.src_size.x);
    let ty = taps(oy, params.scale.y, params.src_size.y);
    var acc = vec3<f32>(0.0);
    for (var j = 0; j < ty.y; j++) {
        let sy = ty.x + j;
        let wy = weight(oy, sy, params.scale.y, params.src_size.y);
        var row = vec3<f32>(0.0);
        for (var i = 0; i < tx.y; i++) {
            let sx = tx.x + i;
            row += weight(ox, sx, params.scale.x, params.src_size.x) * pixel(sx, sy);
        }
        acc += wy * row;
    }
    // The CPU path saturates to 8 bits after a cubic resize; so do we (without the rounding).
    let v = (clamp(acc, vec3<f32>(0.0), vec3<f32>(1.0)) - MEAN) / STD;
    let plane = params.dst_size.x * params.dst_size.y;
    let idx = gid.y * params.dst_size.x + gid.x;
    let base = params.out_base + idx;
    out_planes[base] = v.x;
    out_planes[base + plane] = v.y;
    out_planes[base + 2u * plane] = v.z;
}
