//! The CubeCL (`#[cube]`) flash-attention kernel: the same algorithm as
//! `shaders/attention/flash.wgsl`, written once for every CubeCL runtime (CUDA, and wgpu, which
//! is how it is tested on machines without an NVIDIA GPU).
//!
//! One cube = [`QUERY_ROWS`] query rows of one (batch, head); one unit = one query row, with its
//! scaled query, output accumulator and the scores of the current key tile in local arrays.
//! The cube stages K and V tiles of `block_k` keys in shared memory and every unit folds each
//! tile into its running softmax (online max and denominator, f32 throughout), so the Tq×Tk
//! score matrix is never materialized.
//!
//! Every loop over the head dim is unrolled at compile time (`hd` is comptime), so the per-unit
//! arrays index by constants (registers, not local memory, on CUDA) and the only runtime loops
//! are over keys. That matters for correctness on lavapipe too: llvmpipe ends every loop of an
//! invocation once all of them together have run `LP_MAX_TGSI_LOOP_ITERATIONS` = 65535
//! iterations (Mesa's `lp_bld_limits.h`: "shared between every loop"). With runtime loops over
//! hd = 64 that budget was spent after ~480 keys (2 × 64 iterations per key), and the kernel
//! silently dropped the remaining keys: rel. error 0.04 at T = 513, 0.15 at T = 973. Unrolled,
//! a unit runs ~3 loop iterations per key (score, accumulate, its share of the tile load), so
//! lavapipe stays exact up to ~21 000 keys; the WGSL kernel (vec4 lanes, hd/4 loops that Mesa
//! unrolls itself) up to ~29 000. Real GPUs have no such limit.

use burn::tensor::{DType, Shape};
use burn_cubecl::cubecl;
use burn_cubecl::cubecl::prelude::*;
use burn_cubecl::tensor::CubeTensor;
use burn_cubecl::CubeRuntime;

use super::{block_k, QUERY_ROWS};

#[cube(launch)]
fn flash_attention_kernel<E: Float + cubecl::CubeElement, F: Float + cubecl::CubeElement>(
    q: &Tensor<E>,    // [B, heads, Tq, hd]
    k: &Tensor<E>,    // [B, heads, Tk, hd]
    v: &Tensor<E>,    // [B, heads, Tk, hd]
    out: &mut Tensor<E>, // [B, Tq, heads, hd], contiguous
    scale: F,
    #[comptime] hd: usize,
    #[comptime] rows: usize,
    #[comptime] bk: usize,
) {
    let b = CUBE_POS_Z as usize;
    let h = CUBE_POS_Y as usize;
    let tid = UNIT_POS_X as usize;
    let row = CUBE_POS_X as usize * rows + tid;
    let n_q = q.shape(2);
    let n_k = k.shape(2);
    let valid = row < n_q;

    let mut k_tile = SharedMemory::<F>::new(bk * hd); // [bk, hd]
    let mut v_tile = SharedMemory::<F>::new(bk * hd); // [bk, hd]
    let mut qr = Array::<F>::new(hd);
    let mut acc = Array::<F>::new(hd);
    let mut scores = Array::<F>::new(bk);

    let q_base = b * q.stride(0) + h * q.stride(1) + row * q.stride(2);
    #[unroll]
    for d in 0..hd {
        let mut x = F::new(0.0);
        if valid {
            x = F::cast_from(q[q_base + d]) * scale;
        }
        qr[d] = x;
        acc[d] = F::new(0.0);
    }
    let mut m = F::new(-1.0e30); // below every finite score; exp(-1e30 - s) is exactly 0
    let mut l = F::new(0.0);

    let k_base = b * k.stride(0) + h * k.stride(1);
    let k_step = k.stride(2);
    let v_base = b * v.stride(0) + h * v.stride(1);
    let v_step = v.stride(2);
    let tile = bk * hd;

    let mut start = 0usize;
    while start < n_k {
        // Cooperative, coalesced load of keys start..start+bk (zeros past the end).
        let mut i = tid;
        while i < tile {
            let key = start + i / hd;
            let d = i % hd;
            let mut kx = F::new(0.0);
            let mut vx = F::new(0.0);
            if key < n_k {
                kx = F::cast_from(k[k_base + key * k_step + d]);
                vx = F::cast_from(v[v_base + key * v_step + d]);
            }
            k_tile[i] = kx;
            v_tile[i] = vx;
            i += rows;
        }
        sync_cube();

        if valid {
            let mut count = n_k - start;
            if count > bk {
                count = bk;
            }
            let mut m_new = m;
            for j in 0..count {
                let mut s = F::new(0.0);
                #[unroll]
                for d in 0..hd {
                    s += qr[d] * k_tile[j * hd + d];
                }
                scores[j] = s;
                if s > m_new {
                    m_new = s;
                }
            }
            let alpha = (m - m_new).exp();
            l *= alpha;
            #[unroll]
            for d in 0..hd {
                acc[d] *= alpha;
            }
            for j in 0..count {
                let p = (scores[j] - m_new).exp();
                l += p;
                #[unroll]
                for d in 0..hd {
                    acc[d] += p * v_tile[j * hd + d];
                }
            }
            m = m_new;
        }
        sync_cube();
        start += bk;
    }

    if valid {
        let inv = F::new(1.0) / l;
        let o_base = b * out.stride(0) + row * out.stride(1) + h * out.stride(2);
        #[unroll]
        for d in 0..hd {
            out[o_base + d] = E::cast_from(acc[d] * inv);
        }
    }
}

/// Runs the CubeCL kernel: q [B, heads, Tq, hd], k and v [B, heads, Tk, hd] (f32, f16 or
/// bf16, all three alike, unit stride on the last dim) -> contiguous [B, Tq, heads, hd] in
/// their format. Half inputs are widened to f32 as they are read: the K/V tiles in shared
/// memory, the scores, the online softmax and the accumulator are f32 whatever the input
/// (the precision modes keep attention's accumulation in f32, see `crate::precision`). The
/// caller checks the preconditions ([`super::supported`]).
pub(super) fn flash_attention<R: CubeRuntime>(q: CubeTensor<R>, k: CubeTensor<R>, v: CubeTensor<R>) -> CubeTensor<R> {
    let dims = q.meta.shape();
    let (b, heads, n_q, hd) = (dims[0], dims[1], dims[2], dims[3]);
    let dtype = q.dtype;
    let client = q.client.clone();
    let out_shape = Shape::new([b, n_q, heads, hd]);
    let out_handle = client.empty(out_shape.num_elements() * dtype.size());
    let out = CubeTensor::new_contiguous(client.clone(), q.device.clone(), out_shape, out_handle, dtype);
    let count = CubeCount::Static(n_q.div_ceil(QUERY_ROWS) as u32, heads as u32, b as u32);
    let dim = CubeDim::new_1d(QUERY_ROWS as u32);
    let scale = 1.0 / (hd as f32).sqrt();
    let (qa, ka, va, oa) = (q.into_tensor_arg(), k.into_tensor_arg(), v.into_tensor_arg(), out.clone().into_tensor_arg());
    let (rows, bk) = (QUERY_ROWS, block_k(hd));
    match dtype {
        DType::F16 => flash_attention_kernel::launch::<half::f16, f32, R>(&client, count, dim, qa, ka, va, oa, scale, hd, rows, bk),
        DType::BF16 => flash_attention_kernel::launch::<half::bf16, f32, R>(&client, count, dim, qa, ka, va, oa, scale, hd, rows, bk),
        _ => flash_attention_kernel::launch::<f32, f32, R>(&client, count, dim, qa, ka, va, oa, scale, hd, rows, bk),
    }
    out
}
