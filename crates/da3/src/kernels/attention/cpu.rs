//! Our CPU attention for Burn's `flex` backend: `softmax(q kᵀ / sqrt(hd)) v`, parallel over
//! (batch, head, query block) with rayon and a vectorized `exp`. The two products run one of
//! three ways ([`Products`]): on x86-64 CPUs with AVX-512, our 16-lane register blocks
//! (`avx512.rs`) over each head's keys and values, packed by the task that runs the head; on
//! x86-64 CPUs with AVX2 + FMA and no AVX-512, our 8-lane blocks (`avx2.rs`) over the same
//! per-head panels; elsewhere, and for head dims the blocks do not cover, through
//! the `gemm` crate.
//!
//! Why not burn-flex's own `attention`: it loops over (batch, head) on one thread with 64-key
//! tiles and calls libm's scalar `expf` per score. Profiled on da3-small (1 view, 504×378, 2
//! threads) it was ~20 % of the whole pass with one core idle (`tools/bench/profile.sh`).
//!
//! Algorithm (flash-style online softmax over key tiles, so the T×T score matrix of global
//! attention over all views is never materialized): for a block of [`BLOCK_Q`] query rows and
//! each tile of at most [`BLOCK_K`] keys, `s = q kᵀ · scale` (gemm), the running row maximum
//! `m`, `p = exp(s − m)`, the running row sum `l`, and `o = o · exp(m_old − m) + p v` (gemm);
//! finally `o / l`. With at most [`BLOCK_K`] keys (one view of da3-small at 504×378 has 973
//! tokens) there is a single tile and this is the exact two-pass softmax.
//!
//! Inputs are read through their strides (no copies of q/k/v views on the gemm path; the AVX2
//! path copies the keys and values into its panels and each block's queries); the output is written
//! contiguous as [B, Tq, H, hd], which the caller sees as a [B, H, Tq, hd] stride view, so the
//! attention's `swap_dims(1, 2)` back to tokens-major and the merge of the heads are free.

use burn::tensor::{DType, TensorData};
use burn_flex::FlexTensor;
use rayon::prelude::*;

use crate::kernels::flex::{gemm_serial, SharedOut, Strided};

/// Most query rows per parallel task (and per gemm). Larger blocks mean fewer, larger
/// products and fewer re-packings of the key and value tiles: on 2 threads, 256 rows took
/// 0.87× the time of 64 at two views' attention and 0.75–0.85× at eight views' global
/// attention (`benches/src/bin/attention.rs --device flex`). Fewer rows where the job would
/// not give every thread four tasks (many cores, one view).
const BLOCK_Q: usize = 256;
/// Fewest query rows per task.
const MIN_BLOCK_Q: usize = 32;
/// Keys per tile of the online softmax: a task's scores are at most BLOCK_Q × BLOCK_K f32
/// (1 MiB, a core's L2 here; 2,048 keys measured the same).
const BLOCK_K: usize = 1024;

/// A 4-d f32 view into a flex tensor's storage: [B, H, T, hd] with element strides.
struct View<'a> {
    data: &'a [f32],
    offset: usize,
    shape: [usize; 4],
    strides: [isize; 4],
}

impl<'a> View<'a> {
    /// `None` for other dtypes, other ranks or negative strides (flipped views).
    fn of(t: &'a FlexTensor) -> Option<Self> {
        let layout = t.layout();
        if t.dtype() != DType::F32 || layout.num_dims() != 4 || layout.strides().iter().any(|s| *s < 0) {
            return None;
        }
        let dims = layout.shape();
        let s = layout.strides();
        Some(Self {
            data: t.storage::<f32>(),
            offset: layout.start_offset(),
            shape: [dims[0], dims[1], dims[2], dims[3]],
            strides: [s[0], s[1], s[2], s[3]],
        })
    }

    /// Pointer to element [b, h, t, 0]. The storage slice covers every element of the view
    /// (flex's layout invariant), so the pointer and the strided rows stay inside it.
    fn row(&self, b: usize, h: usize, t: usize) -> *const f32 {
        let index = self.offset as isize + b as isize * self.strides[0] + h as isize * self.strides[1] + t as isize * self.strides[2];
        debug_assert!(index >= 0 && (index as usize) < self.data.len());
        // SAFETY: in bounds of `data` by the layout invariant above.
        unsafe { self.data.as_ptr().offset(index) }
    }
}

/// softmax(q kᵀ / sqrt(hd)) v for f32 q [B, H, Tq, hd], k and v [B, H, Tk, hd] (any
/// non-negative strides) -> contiguous [B, Tq, H, hd]. `None` (inputs untouched) where this
/// kernel does not apply: other dtypes, negative strides, mismatched or empty shapes.
pub(super) fn flash_attention(q: &FlexTensor, k: &FlexTensor, v: &FlexTensor) -> Option<FlexTensor> {
    flash_attention_with(q, k, v, Products::for_this_cpu())
}

/// How a task computes its two products.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Products {
    /// `gemm` crate calls (every CPU).
    Gemm,
    /// Our AVX2 + FMA register blocks on keys and values packed once per call (`avx2.rs`).
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// Our AVX-512 register blocks (`avx512.rs`) on each head's keys and values, packed by the
    /// task that runs the head's query blocks.
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl Products {
    /// [`Products::Avx512`] on x86-64 CPUs with AVX-512F and FMA, [`Products::Avx2`] on those
    /// with AVX2 and FMA but without AVX-512, else [`Products::Gemm`].
    ///
    /// Why: `gemm` re-packs the key and value tiles in every query block's products, and the
    /// scores then take separate passes for the row maximum. On the 2-core AVX2 host of the
    /// benchmarks the AVX2 path took 0.93–0.96× the gemm path's time at one view's attention
    /// [1, 6, 973, 64], 0.94–0.97× at eight views' local attention, 0.81–0.82× at their global
    /// attention over 7,784 tokens and 0.85–0.87× at da3-large's 16 heads (`attention --device
    /// flex --paths cpu`, best of 5 calls, two rounds, against the gemm-only build of
    /// `5dff106`). On AVX-512 CPUs gemm's 16-lane microkernels beat those 8-lane blocks (on a
    /// 2-core Intel Xeon, Emerald Rapids: 1.2× gemm's time at one view, 1.4–1.6× elsewhere),
    /// and a first 16-lane version that packed every head's keys and values up front, before
    /// any block ran, lost at eight views (1.19× gemm's time at their local attention: 48 heads'
    /// panels, 24 MB, no longer in cache when their blocks read them). The AVX-512 path now
    /// packs each head in the task that then runs its query blocks. On that Xeon it took
    /// 0.79–1.01× gemm's time at [1, 6, 973] × 64 (one view of da3-small), 0.92–0.98× at
    /// [8, 6, 973], 0.94–0.97× at [1, 6, 7784], 0.82–0.89× at [1, 16, 973] and 0.84–0.85× at
    /// [1, 16, 7784] (three runs, each the best of 3–5 alternated rounds of 8 calls, 2026-11-24:
    /// `DA3_CPU_ATTENTION_PRODUCTS=gemm|avx512 RAYON_NUM_THREADS=2 attention --device flex
    /// --paths cpu --json --iters 8 --shapes 1,6,973,64 8,6,973,64 1,16,973,64 1,6,7784,64
    /// 1,16,7784,64`); a whole da3-small pass at one view 0.99× (`tools/bench/ab.sh`, 6 rounds
    /// × 4 passes), at eight views 0.96× by the min and 1.01× by the median (3 rounds × 2,
    /// within this host's noise).
    ///
    /// `DA3_CPU_ATTENTION_PRODUCTS=gemm`, `=avx2` or `=avx512` (read once) overrides the
    /// choice, so that `benches/attention_compare.py --products` can time them on one machine;
    /// a path this CPU lacks the instructions for keeps the default.
    fn for_this_cpu() -> Self {
        static CHOICE: std::sync::OnceLock<Products> = std::sync::OnceLock::new();
        *CHOICE.get_or_init(|| {
            let wanted = std::env::var("DA3_CPU_ATTENTION_PRODUCTS").ok();
            #[cfg(target_arch = "x86_64")]
            {
                let (avx512, avx2) = (super::avx512::available(), super::avx2::available());
                match wanted.as_deref() {
                    Some("gemm") => return Self::Gemm,
                    Some("avx2") if avx2 => return Self::Avx2,
                    _ if avx512 => return Self::Avx512,
                    _ if avx2 => return Self::Avx2,
                    _ => {}
                }
            }
            let _ = wanted;
            Self::Gemm
        })
    }
}

impl Products {
    /// The register-blocked kernels of the packed paths; `None` for [`Products::Gemm`].
    #[cfg(target_arch = "x86_64")]
    fn packed(self) -> Option<&'static PackedKernels> {
        match self {
            Self::Gemm => None,
            Self::Avx2 => Some(&AVX2),
            Self::Avx512 => Some(&AVX512),
        }
    }
}

/// [`flash_attention`] with the products computed by `products` (tests compare them).
fn flash_attention_with(q: &FlexTensor, k: &FlexTensor, v: &FlexTensor, products: Products) -> Option<FlexTensor> {
    let (qv, kv, vv) = (View::of(q)?, View::of(k)?, View::of(v)?);
    let [b, h, _, hd] = qv.shape;
    let tk = kv.shape[2];
    if kv.shape != vv.shape || kv.shape[0] != b || kv.shape[1] != h || kv.shape[3] != hd || tk == 0 || hd == 0 {
        return None;
    }
    #[cfg(target_arch = "x86_64")]
    if let Some(kernels) = products.packed().filter(|k| hd % k.columns == 0 && vv.strides[3] == 1) {
        return Some(flash_attention_packed(kernels, &qv, &kv, &vv));
    }
    let keys_per_tile = BLOCK_K.min(tk);
    Some(run_blocks(qv.shape, 16, BLOCK_Q, |_| (), |_, block| {
        SCRATCH.with_borrow_mut(|scratch| {
            scratch.reserve(block.rows, keys_per_tile);
            // SAFETY: run_blocks gives each block its own output rows.
            unsafe { attend_block(&qv, &kv, &vv, block, scratch) };
        });
    }))
}

/// Runs `attend(&head(b · H + h), block)` in parallel for every (batch b, head h, block of
/// query rows) of q's `shape` [B, H, Tq, hd] and returns the [B, Tq, H, hd] output the blocks
/// fill (written in full by them, so never zero-filled; each block gets its own rows).
/// `head(bh)` runs once per head, in the task that then runs that head's blocks (in parallel
/// under it): what it prepares (the packed paths' keys and values) is in that core's
/// cache when they read it. Rows per block: the queries split into about four tasks per
/// thread, rounded up to a multiple of `step`, within [`MIN_BLOCK_Q`] ..= `max_rows`.
fn run_blocks<C: Sync>(
    shape: [usize; 4],
    step: usize,
    max_rows: usize,
    head: impl Fn(usize) -> C + Sync,
    attend: impl Fn(&C, &Block) + Sync,
) -> FlexTensor {
    let [b, h, tq, hd] = shape;
    let mut out = Vec::with_capacity(b * tq * h * hd);
    let out_ptr = SharedOut::spare(&mut out);
    let scale = 1.0 / (hd as f32).sqrt();
    let tasks_wanted = 4 * rayon::current_num_threads().max(1);
    let block_q = (b * h * tq).div_ceil(tasks_wanted).next_multiple_of(step).clamp(MIN_BLOCK_Q, max_rows);
    let q_blocks = tq.div_ceil(block_q);
    (0..b * h).into_par_iter().for_each(|bh| {
        let context = head(bh);
        let (bi, hi) = (bh / h, bh % h);
        (0..q_blocks).into_par_iter().for_each(|qb| {
            let q0 = qb * block_q;
            let rows = block_q.min(tq - q0);
            // SAFETY: rows q0..q0+rows of head hi in batch bi belong to this task alone; the
            // pointer stays inside `out` (b·tq·h·hd elements).
            let dst = unsafe { out_ptr.get().add(((bi * tq + q0) * h + hi) * hd) };
            attend(&context, &Block { b: bi, h: hi, q0, rows, scale, dst, dst_rs: (h * hd) as isize });
        });
    });
    // SAFETY: the tasks cover every (b, query, head) row of hd values.
    unsafe { out.set_len(b * tq * h * hd) };
    FlexTensor::from_data(TensorData::new(out, [b, tq, h, hd]))
}

/// Most query rows per task of the AVX2 and AVX-512 paths. Their blocks cost no re-packing, so
/// they are sized for the caches: 48 rows × 1,024 keys of scores are 192 KiB, which stay in L2 next to the
/// value panels that the second product streams. 48, 96 and 192 rows measured alike within
/// the noise (`attention --device flex --paths cpu`, 2 threads, two rounds); 48 was as fast
/// as the best at every shape and gives the most tasks to balance (on the AVX-512 path 48, 96
/// and 192 measured alike too, on the Xeon).
#[cfg(target_arch = "x86_64")]
const PACKED_BLOCK_Q: usize = 48;

/// The register-blocked products and `exp` of one instruction set (`avx2.rs`, `avx512.rs`),
/// over the same packed keys and values. Called once per key tile, so through pointers.
#[cfg(target_arch = "x86_64")]
struct PackedKernels {
    /// Query rows are padded to a multiple of this.
    mr: usize,
    /// The head dim must be a multiple of this (the values' register block).
    columns: usize,
    scores: unsafe fn(&super::avx2::ScoresTile, &mut [f32]),
    weighted_values: unsafe fn(&super::avx2::ValuesTile, Option<&[f32]>),
    exp_sub_sum: unsafe fn(&mut [f32], f32) -> f32,
}

#[cfg(target_arch = "x86_64")]
const AVX2: PackedKernels = {
    use super::avx2::{exp_sub_sum, scores, weighted_values, MR, NR};
    PackedKernels { mr: MR, columns: NR, scores, weighted_values, exp_sub_sum }
};

#[cfg(target_arch = "x86_64")]
const AVX512: PackedKernels = {
    use super::avx512::{exp_sub_sum, scores, weighted_values, COLUMNS, MR};
    PackedKernels { mr: MR, columns: COLUMNS, scores, weighted_values, exp_sub_sum }
};

/// The AVX2 and AVX-512 paths of [`flash_attention_with`] (`hd` a multiple of `kernels`'
/// columns, `v` rows contiguous): each head's keys and values are packed (`avx2.rs`' panels
/// of 16) by the task that then runs the head's query blocks with `kernels` (see
/// [`Products::for_this_cpu`] for why not all up front).
#[cfg(target_arch = "x86_64")]
fn flash_attention_packed(kernels: &PackedKernels, qv: &View, kv: &View, vv: &View) -> FlexTensor {
    use super::avx2::{pack_keys, pack_values, NR};
    let [_, h, _, hd] = qv.shape;
    let tk = kv.shape[2];
    // Per head: its keys in panels of 16 ([tk_pad / 16, hd, 16], zero past tk), then its
    // values in panels of 16 columns ([hd / 16, tk, 16]).
    let tk_pad = tk.next_multiple_of(NR);
    let head_len = (tk_pad + tk) * hd;
    let pack_head = |bh: usize| {
        let (bi, hi) = (bh / h, bh % h);
        // Into uninitialized memory: pack_keys and pack_values write every element.
        crate::kernels::flex::par_rows(head_len, head_len, |_, head| {
            let (kp, vp) = head.split_at_mut(tk_pad * hd);
            // SAFETY: rows 0..tk of head hi in batch bi are inside k's and v's storage
            // (View::row); kp holds tk_pad·hd and vp tk·hd elements, all of which the two
            // calls write.
            unsafe {
                pack_keys(kv.row(bi, hi, 0), kv.strides[2], kv.strides[3], tk, hd, kp);
                pack_values(vv.row(bi, hi, 0), vv.strides[2], tk, hd, vp);
            }
        })
    };
    run_blocks(qv.shape, kernels.mr, PACKED_BLOCK_Q, pack_head, |packed, block| {
        let (kp, vp) = packed.split_at(tk_pad * hd);
        // SAFETY: run_blocks gives each block its own output rows; the CPU has `kernels`'
        // instructions (Products::for_this_cpu checked them, or the tests did before picking
        // the path).
        SCRATCH.with_borrow_mut(|scratch| unsafe { attend_block_packed(kernels, qv, kp, vp, tk, block, scratch) });
    })
}

/// One (batch, head, query block) of a packed path: the online softmax of [`attend_block`]
/// with `kernels`' products (`kp`, `vp`: this head's packed keys and values, `tk` keys).
///
/// # Safety
/// As [`attend_block`]; the CPU must have `kernels`' instructions.
#[cfg(target_arch = "x86_64")]
unsafe fn attend_block_packed(kernels: &PackedKernels, q: &View, kp: &[f32], vp: &[f32], tk: usize, block: &Block, scratch: &mut Scratch) {
    let Block { b, h, q0, rows, scale, dst, dst_rs } = *block;
    use super::avx2::{ScoresTile, ValuesTile, NR};
    let hd = q.shape[3];
    let rows_pad = rows.next_multiple_of(kernels.mr);
    let s_row = BLOCK_K.min(tk).next_multiple_of(NR);
    scratch.reserve(rows_pad, s_row);
    let Scratch { scores: s, row_max, row_sum, query, tile_max, keep } = scratch;
    // The query rows, scaled (exact for hd = 64: the scale is 1/8), contiguous; the padding
    // rows zero.
    query.clear();
    query.resize(rows_pad * hd, 0.0);
    for (r, dst_row) in query.chunks_exact_mut(hd).take(rows).enumerate() {
        let src = q.row(b, h, q0 + r);
        for (d, value) in dst_row.iter_mut().enumerate() {
            *value = *src.offset(d as isize * q.strides[3]) * scale;
        }
    }
    row_max[..rows].fill(f32::NEG_INFINITY);
    let mut k0 = 0;
    while k0 < tk {
        let keys = BLOCK_K.min(tk - k0);
        let tile = ScoresTile { q: query.as_ptr(), rows_pad, hd, kp: kp.as_ptr().add(k0 * hd), keys, s: s.as_mut_ptr(), s_row };
        (kernels.scores)(&tile, tile_max);
        let first = k0 == 0;
        for r in 0..rows {
            let row = &mut s[r * s_row..][..keys];
            let m_old = row_max[r];
            let m_new = m_old.max(tile_max[r]);
            let sum = (kernels.exp_sub_sum)(row, m_new);
            if first {
                row_sum[r] = sum;
            } else {
                // What earlier tiles accumulated, rescaled to the new maximum.
                keep[r] = (m_old - m_new).exp();
                row_sum[r] = row_sum[r] * keep[r] + sum;
            }
            row_max[r] = m_new;
        }
        let keep = if first { None } else { Some(&keep[..rows]) };
        let tile = ValuesTile { p: s.as_ptr(), p_row: s_row, rows, keys, vp: vp.as_ptr(), panel_keys: tk, k0, hd, o: dst, o_row: dst_rs };
        (kernels.weighted_values)(&tile, keep);
        k0 += keys;
    }
    block.normalize(hd, row_sum);
}

/// One task: query rows `q0 .. q0 + rows` of head `h` in batch `b`, whose outputs go to `rows`
/// rows at `dst` (row stride `dst_rs`, unit column stride), which no other thread touches
/// meanwhile (the caller's guarantee, for every `unsafe fn` that takes a `Block`).
#[derive(Clone, Copy)]
struct Block {
    b: usize,
    h: usize,
    q0: usize,
    rows: usize,
    /// 1 / sqrt(hd).
    scale: f32,
    dst: *mut f32,
    dst_rs: isize,
}

impl Block {
    /// Divides every output row (of `hd` values) by its softmax sum.
    ///
    /// # Safety
    /// As [`Block`]'s output rows.
    unsafe fn normalize(&self, hd: usize, row_sum: &[f32]) {
        for (r, sum) in row_sum[..self.rows].iter().enumerate() {
            let inv = 1.0 / sum;
            let out_row = std::slice::from_raw_parts_mut(self.dst.offset(r as isize * self.dst_rs), hd);
            out_row.iter_mut().for_each(|o| *o *= inv);
        }
    }
}

/// Per-thread buffers of the tasks, kept across calls (no allocation or zeroing per task).
#[derive(Default)]
struct Scratch {
    scores: Vec<f32>,
    row_max: Vec<f32>,
    row_sum: Vec<f32>,
    /// AVX2 path: the scaled query rows, each tile's row maxima, the rescaling factors.
    query: Vec<f32>,
    tile_max: Vec<f32>,
    keep: Vec<f32>,
}

impl Scratch {
    /// Room for `rows` rows of `keys` scores.
    fn reserve(&mut self, rows: usize, keys: usize) {
        if self.scores.len() < rows * keys {
            self.scores.resize(rows * keys, 0.0);
        }
        if self.row_max.len() < rows {
            self.row_max.resize(rows, 0.0);
            self.row_sum.resize(rows, 0.0);
            self.tile_max.resize(rows, 0.0);
            self.keep.resize(rows, 0.0);
        }
    }
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

/// One (batch, head, query block) through `gemm` (see [`Block`]).
///
/// # Safety
/// As [`Block`]'s output rows.
unsafe fn attend_block(q: &View, k: &View, v: &View, block: &Block, scratch: &mut Scratch) {
    let Block { b, h, q0, rows, scale, dst, dst_rs } = *block;
    let hd = q.shape[3];
    let tk = k.shape[2];
    let Scratch { scores, row_max, row_sum, .. } = scratch;
    row_max[..rows].fill(f32::NEG_INFINITY);
    row_sum[..rows].fill(0.0);
    let mut k0 = 0;
    while k0 < tk {
        let keys = BLOCK_K.min(tk - k0);
        let s = &mut scores[..rows * keys]; // [rows, keys], row-major
        // s = scale · q[q0.., :] · k[k0.., :]ᵀ  (rhs[d, j] = k[k0 + j, d])
        let q_rows = Strided { ptr: q.row(b, h, q0), row: q.strides[2], col: q.strides[3] };
        let k_cols = Strided { ptr: k.row(b, h, k0), row: k.strides[3], col: k.strides[2] };
        gemm_serial(rows, keys, hd, s.as_mut_ptr(), keys as isize, false, q_rows, k_cols, scale);
        let first = k0 == 0;
        for r in 0..rows {
            let row = &mut s[r * keys..(r + 1) * keys];
            let m_old = row_max[r];
            let m_new = m_old.max(simd::max(row));
            let sum = exp_sub_sum(row, m_new);
            if first {
                row_sum[r] = sum;
            } else {
                // Rescale what earlier tiles accumulated to the new maximum.
                let correction = (m_old - m_new).exp();
                row_sum[r] = row_sum[r] * correction + sum;
                let out_row = std::slice::from_raw_parts_mut(dst.offset(r as isize * dst_rs), hd);
                out_row.iter_mut().for_each(|o| *o *= correction);
            }
            row_max[r] = m_new;
        }
        // o (+)= p · v[k0.., :]
        let p = Strided { ptr: s.as_ptr(), row: keys as isize, col: 1 };
        let v_rows = Strided { ptr: v.row(b, h, k0), row: v.strides[2], col: v.strides[3] };
        gemm_serial(rows, hd, keys, dst, dst_rs, !first, p, v_rows, 1.0);
        k0 += keys;
    }
    block.normalize(hd, row_sum);
}

/// `x[i] = exp(x[i] − m)` in place, returning the sum, for the gemm path: `avx512.rs`'s FMA
/// version on CPUs with AVX-512 and FMA (where the gemm path serves head dims that are not a
/// multiple of 64, strided values and `DA3_CPU_ATTENTION_PRODUCTS=gemm`), else the portable
/// [`simd::exp_sub_sum`]. (AVX2 CPUs take the AVX2 path and its own FMA `exp` instead.)
///
/// The AVX-512 version took 0.87–0.95× the portable one's time per attention call at
/// da3-small's and da3-large's shapes on a 2-core Xeon (Emerald Rapids; `attention --device
/// flex --paths cpu`, best of 10 calls, 4 alternated rounds, 2026-11-24) and 0.95× the min
/// (0.99× the median) of a whole da3-small pass at one view (`tools/bench/ab.sh`, 6 rounds × 4
/// passes). `DA3_CPU_ATTENTION_EXP=portable` (read once) keeps the portable one, so that the
/// two can be timed against each other in one binary.
fn exp_sub_sum(x: &mut [f32], m: f32) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        static USE_AVX512: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        let portable = || std::env::var("DA3_CPU_ATTENTION_EXP").is_ok_and(|v| v == "portable");
        if *USE_AVX512.get_or_init(|| super::avx512::available() && !portable()) {
            // SAFETY: AVX-512F and FMA checked just above.
            return unsafe { super::avx512::exp_sub_sum(x, m) };
        }
    }
    simd::exp_sub_sum(x, m)
}

/// Vectorized row maximum and `exp`, compiled for AVX-512 and AVX2+FMA and picked at run time
/// (the crate itself is built for baseline x86-64, where LLVM only uses SSE2).
pub(crate) mod simd {
    /// Lanes of the independent accumulators (lets LLVM vectorize the reductions without
    /// reassociating a single sum).
    const LANES: usize = 16;

    multiversion! {
        /// Largest element of `x` (−∞ for an empty slice).
        pub fn max(x: &[f32]) -> f32 = max_generic
    }

    multiversion! {
        /// `x[i] = exp(x[i] − m)` in place; returns the sum of the new values. Needs `x[i] ≤ m`
        /// (softmax rows minus their maximum): results below e^−87.3 are that value, not 0.
        pub fn exp_sub_sum(x: &mut [f32], m: f32) -> f32 = exp_sub_sum_generic
    }

    #[inline(always)]
    fn max_generic(x: &[f32]) -> f32 {
        let mut acc = [f32::NEG_INFINITY; LANES];
        let chunks = x.chunks_exact(LANES);
        let tail = chunks.remainder();
        for c in chunks {
            for j in 0..LANES {
                // Not f32::max: its NaN rule blocks the plain vector max instruction.
                acc[j] = if c[j] > acc[j] { c[j] } else { acc[j] };
            }
        }
        let mut m = f32::NEG_INFINITY;
        for v in acc.iter().chain(tail) {
            m = if *v > m { *v } else { m };
        }
        m
    }

    #[inline(always)]
    fn exp_sub_sum_generic(x: &mut [f32], m: f32) -> f32 {
        let mut acc = [0f32; LANES];
        let mut chunks = x.chunks_exact_mut(LANES);
        for c in &mut chunks {
            for j in 0..LANES {
                let e = exp(c[j] - m);
                c[j] = e;
                acc[j] += e;
            }
        }
        let mut sum = 0.0;
        for v in chunks.into_remainder() {
            *v = exp(*v - m);
            sum += *v;
        }
        acc.iter().sum::<f32>() + sum
    }

    /// e^x for x ≤ 0 (clamped below at −87.3, the smallest normal result), within ~2 ulp of
    /// libm's `expf`: Cody–Waite reduction x = n ln2 + r, |r| ≤ ln2/2, and the degree-7
    /// polynomial of Cephes' `expf` for e^r; 2^n by building the exponent bits.
    #[inline(always)]
    pub fn exp(x: f32) -> f32 {
        const LOG2E: f32 = std::f32::consts::LOG2_E;
        const LN2_HI: f32 = 0.693_359_4;
        const LN2_LO: f32 = -2.121_944_4e-4;
        // Round-to-nearest of x·log2(e) by the 1.5·2^23 trick (exact for |x·log2e| < 2^22).
        const ROUND: f32 = 12_582_912.0;
        // Bits of 1.5·2^23 as an f32: `t` below is that plus n, so its low bits are n.
        const ROUND_BITS: u32 = 0x4B40_0000;
        let x = if x < -87.336_55 { -87.336_55 } else { x };
        let t = x * LOG2E + ROUND;
        let n = t - ROUND;
        let r = x - n * LN2_HI - n * LN2_LO;
        let mut p = 1.987_569_1e-4_f32;
        p = p * r + 1.398_199_9e-3;
        p = p * r + 8.333_452e-3;
        p = p * r + 4.166_579_6e-2;
        p = p * r + 1.666_666_5e-1;
        p = p * r + 5.000_000_1e-1;
        let e = p * r * r + r + 1.0;
        // 2^n from n's integer bits (no float-to-int conversion, which LLVM does not vectorize
        // with Rust's saturating `as`): n + 127 in the exponent field.
        let bits = t.to_bits().wrapping_sub(ROUND_BITS).wrapping_add(127) << 23;
        e * f32::from_bits(bits)
    }
}

#[cfg(test)]
mod tests {
    use super::{flash_attention_with, simd, Products};
    use crate::kernels::flex::into_flex;
    use crate::kernels::test_support::{pattern, rel_l2};

    /// softmax(q kᵀ / sqrt(hd)) v in f64 over contiguous [B, H, T, hd] values -> [B, T, H, hd].
    fn attention_f64(
        q: &[f32],
        k: &[f32],
        v: &[f32],
        [b, h, tq, hd]: [usize; 4],
        tk: usize,
    ) -> Vec<f32> {
        let mut out = vec![0f32; b * tq * h * hd];
        let scale = 1.0 / (hd as f64).sqrt();
        for bi in 0..b {
            for hi in 0..h {
                let head = |x: &[f32], t: usize, rows: usize| {
                    x[((bi * h + hi) * rows + t) * hd..][..hd].to_vec()
                };
                for i in 0..tq {
                    let qi = head(q, i, tq);
                    let scores: Vec<f64> = (0..tk)
                        .map(|j| {
                            qi.iter()
                                .zip(head(k, j, tk))
                                .map(|(a, c)| *a as f64 * c as f64)
                                .sum::<f64>()
                                * scale
                        })
                        .collect();
                    let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    let weights: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                    let total: f64 = weights.iter().sum();
                    for d in 0..hd {
                        let o: f64 = (0..tk)
                            .map(|j| weights[j] * v[((bi * h + hi) * tk + j) * hd + d] as f64)
                            .sum();
                        out[((bi * tq + i) * h + hi) * hd + d] = (o / total) as f32;
                    }
                }
            }
        }
        out
    }

    /// Both ways of computing the products against attention in f64: odd query counts (a
    /// partial register block), key counts that are not a multiple of 16 (zero-padded key
    /// panels), several key tiles (online-softmax rescaling), q and k read through transposed
    /// strides (values contiguous, so the AVX2 path packs strided keys), and values with
    /// strided columns too (the AVX2 path declines those and the gemm path runs).
    #[test]
    fn both_product_paths_match_f64() {
        // (q shape, keys, q and k transposed, v transposed)
        let cases: [([usize; 4], usize, bool, bool); 8] = [
            ([1, 2, 37, 64], 53, false, false),
            // Two key tiles (1,024 + 76 keys: the second ends in an odd, partial panel).
            ([1, 2, 50, 64], 1100, true, false),
            // Two column groups of the AVX-512 values' block; 45 keys = 2 + 1 partial panels.
            ([2, 3, 30, 128], 45, false, false),
            ([2, 3, 7, 32], 1100, false, false),
            ([1, 1, 100, 16], 2100, true, false),
            ([1, 2, 1, 64], 1, false, false),
            ([2, 2, 13, 48], 29, true, false),
            ([2, 2, 13, 48], 29, true, true),
        ];
        for ([b, h, tq, hd], tk, transposed_qk, transposed_v) in cases {
            let q = pattern([b, h, tq, hd], 1, 2.0, 0.1);
            let k = pattern([b, h, tk, hd], 2, 2.0, -0.1);
            let v = pattern([b, h, tk, hd], 3, 1.0, 0.2);
            let want = attention_f64(
                &q.to_data().to_vec::<f32>().unwrap(),
                &k.to_data().to_vec::<f32>().unwrap(),
                &v.to_data().to_vec::<f32>().unwrap(),
                [b, h, tq, hd],
                tk,
            );
            // Same values through other strides: q and k stored [B, H, hd, T] and viewed back.
            let restride = |x: burn::tensor::Tensor<crate::backends::Flex, 4>, transposed: bool| {
                if transposed {
                    let stored = x.swap_dims(2, 3).into_data(); // [B, H, hd, T] values
                    burn::tensor::Tensor::from_data(stored, &Default::default()).swap_dims(2, 3)
                } else {
                    x
                }
            };
            let (qf, kf) = (into_flex(restride(q, transposed_qk)).unwrap(), into_flex(restride(k, transposed_qk)).unwrap());
            let vf = into_flex(restride(v, transposed_v)).unwrap();
            let mut paths = vec![Products::Gemm];
            #[cfg(target_arch = "x86_64")]
            if super::super::avx2::available() {
                paths.push(Products::Avx2);
            }
            #[cfg(target_arch = "x86_64")]
            if super::super::avx512::available() {
                paths.push(Products::Avx512);
            }
            for products in paths {
                let out =
                    flash_attention_with(&qf, &kf, &vf, products).expect("f32 inputs are taken");
                let got = out.storage::<f32>().to_vec();
                let err = rel_l2(&got, &want);
                assert!(
                    err < 2e-6,
                    "{products:?} at {:?}, {tk} keys: rel L2 {err:.2e}",
                    [b, h, tq, hd]
                );
            }
        }
    }

    /// The vectorized exp against libm over the softmax range, by relative error.
    #[test]
    fn exp_matches_libm() {
        let mut worst = 0f64;
        let mut x = -87.0f32;
        while x <= 0.0 {
            let (ours, libm) = (simd::exp(x) as f64, (x as f64).exp());
            worst = worst.max(((ours - libm) / libm).abs());
            x += 0.000_37;
        }
        assert!(worst < 3e-7, "worst relative error {worst}");
        assert_eq!(simd::exp(0.0), 1.0);
    }

    /// Reductions and the in-place exp at lengths around the lane count (tails).
    #[test]
    fn max_and_exp_sum_match_scalar() {
        for len in [0usize, 1, 15, 16, 17, 33, 973] {
            let x: Vec<f32> = (0..len).map(|i| ((i * 7919) % 1013) as f32 * 0.01 - 5.0).collect();
            let m = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            assert_eq!(simd::max(&x), m);
            let mut y = x.clone();
            let sum = simd::exp_sub_sum(&mut y, m);
            let want: f64 = x.iter().map(|v| ((*v - m) as f64).exp()).sum();
            assert!((sum as f64 - want).abs() <= 1e-6 * want.max(1.0), "len {len}: {sum} vs {want}");
            for (a, b) in y.iter().zip(&x) {
                let e = ((*b - m) as f64).exp();
                assert!(((*a as f64) - e).abs() <= 3e-7 * e, "{a} vs {e}");
            }
        }
    }
}
