// Flash-style softmax attention: out = softmax(q kᵀ · scale) v, no mask.
//
// q: [B, heads, Tq, HD], k and v: [B, heads, Tk, HD], any strides on the first three dims and
// unit stride on the last (passed in `info`). out: contiguous [B, Tq, heads, HD] (the layout the
// attention's output projection wants; the caller views it as [B, heads, Tq, HD]).
//
// One workgroup = BQ query rows of one (batch, head); one invocation = one query row, holding
// its scaled query and its output accumulator in registers (vec4 lanes). The workgroup walks
// the keys in tiles of BK: it loads a K tile and a V tile into workgroup memory together, then
// every invocation scores its row against the tile and folds it into its running softmax
// (max m, denominator l, accumulator acc rescaled by exp(m_old - m_new)): the Tq×Tk score
// matrix never exists. All arithmetic is f32.
//
// Template values (filled by the host): hd4 = HD / 4, block_q = BQ, block_k = BK,
// tile4 = BK * HD / 4.
//
// Every storage binding is read_write: Burn's memory pool may place the inputs and the output
// in one wgpu buffer, and a read-only binding next to a writable one of the same buffer fails
// validation. Values read from read_write storage are not uniform in WGSL's analysis, so the
// key count reaches the tile loop (which contains barriers) through workgroupUniformLoad.

@group(0) @binding(0) var<storage, read_write> q: array<f32>;
@group(0) @binding(1) var<storage, read_write> k: array<f32>;
@group(0) @binding(2) var<storage, read_write> v: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
// [Tq, Tk, heads, q strides (b, h, t), k strides (b, h, t), v strides (b, h, t), bits of scale]
@group(0) @binding(4) var<storage, read_write> info: array<u32>;

const HD4: u32 = {{ hd4 }}u;
const BQ: u32 = {{ block_q }}u;
const BK: u32 = {{ block_k }}u;
const TILE4: u32 = {{ tile4 }}u;
// Start of the running max: below every finite score, and exp(NEG_BIG - s) is exactly 0.
const NEG_BIG: f32 = -1.0e30;

var<workgroup> k_tile: array<vec4<f32>, TILE4>; // [BK, HD/4]
var<workgroup> v_tile: array<vec4<f32>, TILE4>; // [BK, HD/4]
var<workgroup> key_count: u32;

fn load4(buf: u32, i: u32) -> vec4<f32> {
    // One function per buffer would need pointers to storage (not portable); branch instead.
    if buf == 0u {
        return vec4<f32>(q[i], q[i + 1u], q[i + 2u], q[i + 3u]);
    } else if buf == 1u {
        return vec4<f32>(k[i], k[i + 1u], k[i + 2u], k[i + 3u]);
    }
    return vec4<f32>(v[i], v[i + 1u], v[i + 2u], v[i + 3u]);
}

@compute @workgroup_size({{ block_q }}, 1, 1)
fn main(
    @builtin(local_invocation_index) tid: u32,
    @builtin(workgroup_id) wg: vec3<u32>,
) {
    if tid == 0u {
        key_count = info[1];
    }
    let n_k = workgroupUniformLoad(&key_count);

    let n_q = info[0];
    let heads = info[2];
    let b = wg.z;
    let h = wg.y;
    let row = wg.x * BQ + tid;
    let valid = row < n_q;
    let scale = bitcast<f32>(info[12]);

    var qr: array<vec4<f32>, HD4>;
    var acc: array<vec4<f32>, HD4>;
    var scores: array<f32, BK>;
    let q_base = b * info[3] + h * info[4] + row * info[5];
    for (var d = 0u; d < HD4; d++) {
        if valid {
            qr[d] = load4(0u, q_base + 4u * d) * scale;
        } else {
            qr[d] = vec4<f32>(0.0);
        }
        acc[d] = vec4<f32>(0.0);
    }
    var m = NEG_BIG;
    var l = 0.0;

    let k_base = b * info[6] + h * info[7];
    let k_step = info[8];
    let v_base = b * info[9] + h * info[10];
    let v_step = info[11];

    for (var start = 0u; start < n_k; start += BK) {
        // Cooperative, coalesced load of keys start..start+BK (zeros past the end).
        for (var i = tid; i < TILE4; i += BQ) {
            let key = start + i / HD4;
            let d4 = 4u * (i % HD4);
            if key < n_k {
                k_tile[i] = load4(1u, k_base + key * k_step + d4);
                v_tile[i] = load4(2u, v_base + key * v_step + d4);
            } else {
                k_tile[i] = vec4<f32>(0.0);
                v_tile[i] = vec4<f32>(0.0);
            }
        }
        workgroupBarrier();

        if valid {
            let count = min(BK, n_k - start);
            var m_new = m;
            for (var j = 0u; j < count; j++) {
                var s = 0.0;
                for (var d = 0u; d < HD4; d++) {
                    s += dot(qr[d], k_tile[j * HD4 + d]);
                }
                scores[j] = s;
                m_new = max(m_new, s);
            }
            let alpha = exp(m - m_new);
            l *= alpha;
            for (var d = 0u; d < HD4; d++) {
                acc[d] *= alpha;
            }
            for (var j = 0u; j < count; j++) {
                let p = exp(scores[j] - m_new);
                l += p;
                for (var d = 0u; d < HD4; d++) {
                    acc[d] += p * v_tile[j * HD4 + d];
                }
            }
            m = m_new;
        }
        workgroupBarrier();
    }

    if valid {
        let inv = 1.0 / l;
        let o_base = ((b * n_q + row) * heads + h) * (4u * HD4);
        for (var d = 0u; d < HD4; d++) {
            let o = acc[d] * inv;
            let i = o_base + 4u * d;
            out[i] = o.x;
            out[i + 1u] = o.y;
            out[i + 2u] = o.z;
            out[i + 3u] = o.w;
        }
    }
}
