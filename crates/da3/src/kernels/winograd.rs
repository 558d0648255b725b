//! 3×3 "same" convolutions (stride 1, padding 1) by Winograd's minimal filtering F(4×4, 3×3):
//! the DPT heads' 3×3 convolutions, about a third of a da3-small pass's arithmetic.
//!
//! Each 4×4 block of output pixels ("tile") is computed from the 6×6 input window around it as
//! `Y = Aᵀ [ U ⊙ V ] A` with `U = G g Gᵀ` (the filter, transformed once per call) and
//! `V = Bᵀ d B` (the window). Summed over input channels, the 36 element-wise products become
//! 36 independent matrix products `M_ξ = U_ξ [C_out × C_in] · V_ξ [C_in × tiles]`: 36
//! multiply-adds per tile and channel pair instead of the direct convolution's 144 (4×
//! fewer), plus the transforms, which are linear in the channel count, not its square.
//!
//! The matrices are Lavin & Gray's (arXiv:1509.09308) for the points 0, ±1, ±2, ∞, the ones
//! oneDNN and cuDNN use for this tile size. In f32 the result differs from a direct convolution
//! by rounding only (about 1e-6 relative at the heads' shapes, see the tests); the filter
//! transform is done in f64.
//!
//! Work is split into blocks of [`BLOCK_TILES`] tiles of one image; each block gathers and
//! transforms its windows channel by channel, runs the 36 products on its thread (the `gemm`
//! crate, serial), and transforms the products back straight into the output, adding the bias.
//! Nothing is zero-filled on the calling thread: the tiles partition the output.

use rayon::prelude::*;

use super::conv::StridedInput;
use burn_flex::FlexTensor;

use super::flex::{gemm_serial, SharedOut, Strided};

/// Output pixels per tile side (m of F(m×m, 3×3)).
const M: usize = 4;
/// Input window side (m + 3 − 1).
const WIN: usize = 6;
/// Transformed elements per tile (WIN²): the number of matrix products.
const XI: usize = WIN * WIN;
/// Tiles transformed together, one per SIMD lane (16 f32 = one AVX-512 register).
const LANES: usize = 16;
/// Tiles per parallel task, rounded down to whole tile rows (at least one): the products are
/// [C_out × C_in]·[C_in × tiles]. Measured on the heads' shapes (`benches/conv_compare.py`'s
/// weighted pass, 2 threads): 32 tiles 175–183 ms, 64: 165, 100: 162–166, 144: 151, 200:
/// 158–163, 288: 171, 576: 223 (past it the transformed inputs and products, 36·(C_in +
/// C_out)·tiles f32, fall out of the caches).
///
/// Tried and dropped (2026-11-23, `conv --only winograd`, best of 3 alternating rounds, AMD
/// AVX2 host; described in issue 5's stop-19 note): our own AVX2 register blocks for the 36
/// products instead of `gemm` (no packing) took 0.95–1.11× the time per shape at 144 tiles, no
/// clear gain; with them, blocks of 32 tiles (rows cut into runs, so that V and M stay in L2)
/// took 1.1–1.7× the time on the maps from 54×72 up (0.9× on the 14×18 ones). Our reading, not
/// measured: every block then re-reads all of U (36·C_out·C_in f32), about as many bytes as the
/// V and M that the smaller block keeps in L2.
const BLOCK_TILES: usize = 144;

/// `Bᵀ` (6×6): the input transform (written out in [`bt_apply`]; the tests check the two agree).
#[cfg_attr(not(test), allow(dead_code))]
const BT: [[f32; WIN]; WIN] = [
    [4.0, 0.0, -5.0, 0.0, 1.0, 0.0],
    [0.0, -4.0, -4.0, 1.0, 1.0, 0.0],
    [0.0, 4.0, -4.0, -1.0, 1.0, 0.0],
    [0.0, -2.0, -1.0, 2.0, 1.0, 0.0],
    [0.0, 2.0, -1.0, -2.0, 1.0, 0.0],
    [0.0, 4.0, 0.0, -5.0, 0.0, 1.0],
];

/// `G` (6×3): the filter transform (applied in f64).
const G: [[f64; 3]; WIN] = [
    [1.0 / 4.0, 0.0, 0.0],
    [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
    [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
    [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0],
    [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0],
    [0.0, 0.0, 1.0],
];

/// `Aᵀ` (4×6): the output transform (written out in [`at_apply`]; the tests check the two agree).
#[cfg_attr(not(test), allow(dead_code))]
const AT: [[f32; WIN]; M] = [
    [1.0, 1.0, 1.0, 1.0, 1.0, 0.0],
    [0.0, 1.0, -1.0, 2.0, -2.0, 0.0],
    [0.0, 1.0, 1.0, 4.0, 4.0, 0.0],
    [0.0, 1.0, -1.0, 8.0, -8.0, 1.0],
];

/// One value per lane (tile) of a segment.
type Lanes = [f32; LANES];

/// x [N, C_in, H, W] (read through its strides; through a ReLU first if `relu_input`) ⊛ w
/// (+ bias [C_out]), stride 1, padding 1 -> contiguous [N, C_out, H, W] values; `u` is
/// w [C_out, C_in, 3, 3] transformed by [`transform_filters`].
pub(super) fn conv3x3(input: &StridedInput, u: &[f32], bias: Option<&[f32]>, [n, c_in, h, w]: [usize; 4], c_out: usize, relu_input: bool) -> Vec<f32> {
    assert_eq!(u.len(), XI * c_out * c_in, "winograd conv3x3: transformed filter size");
    let g = Geometry { relu: relu_input, ..Geometry::new(c_in, c_out, h, w) };
    // Blocks of whole tile rows, so that only a row's last segment has fewer than 16 tiles,
    // and at least one block per thread (a 54×72 map with 8 + 6 rows ran 1.4× slower than with
    // 7 + 7 on 2 threads).
    let per_thread = (g.th * n).div_ceil(rayon::current_num_threads().max(1));
    let rows_per_block = (BLOCK_TILES / g.tw).min(per_thread).clamp(1, g.th);
    let blocks = g.th.div_ceil(rows_per_block);
    let mut out = Vec::with_capacity(n * c_out * h * w); // [N, C_out, H, W]
    let out_ptr = SharedOut::spare(&mut out);
    let g = &g;
    (0..n * blocks).into_par_iter().for_each(|task| {
        let (b, block) = (task / blocks, task % blocks);
        let ty0 = block * rows_per_block;
        let rows = rows_per_block.min(g.th - ty0);
        // SAFETY: image b's [C_out, H, W] part of the output's capacity, of which the block
        // writes only the pixels of its own tiles (see `run_block`).
        unsafe { run_block(g, input, b, u, bias, ty0, rows, out_ptr.get().add(b * c_out * h * w)) };
    });
    // SAFETY: the tiles of every image cover its C_out × H × W outputs exactly once.
    unsafe { out.set_len(n * c_out * h * w) };
    out
}

/// The Winograd transform of one convolution layer's filters, kept with the weight tensor it
/// was computed from (a clone: it shares the weight's storage and keeps it alive, so the same
/// storage address means the same weights). Cloned modules share it. Computed on the first
/// call, reused by every later one (it costs milliseconds for the heads' wider layers, as much
/// as the convolution itself on small maps).
#[derive(Clone, Default)]
pub(crate) struct FilterCache(std::sync::Arc<std::sync::Mutex<Option<(FlexTensor, std::sync::Arc<Vec<f32>>)>>>);

impl std::fmt::Debug for FilterCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FilterCache")
    }
}

impl FilterCache {
    /// The transformed filters of `weight` ([C_out, C_in, 3, 3], contiguous f32 `values`).
    pub(crate) fn get(&self, weight: &FlexTensor, values: &[f32], c_out: usize, c_in: usize) -> std::sync::Arc<Vec<f32>> {
        let same = |held: &FlexTensor| {
            held.storage::<f32>().as_ptr() == weight.storage::<f32>().as_ptr() && held.layout() == weight.layout()
        };
        if let Some((held, u)) = &*self.0.lock().unwrap_or_else(|e| e.into_inner()) {
            if same(held) {
                return u.clone();
            }
        }
        // Computed without holding the lock: the transform runs on the Rayon pool, and a pool
        // thread waiting for it may take up other work, such as another pass through this
        // layer (passes run from inside the pool), which would then wait for the lock forever.
        // Two threads that miss at once both compute it, with equal results.
        let u = std::sync::Arc::new(transform_filters(values, c_out, c_in));
        #[cfg(test)]
        CACHED_VALUES.with(|c| c.set(c.get() + u.len() as u64));
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some((weight.clone(), u.clone()));
        u
    }
}

#[cfg(test)]
thread_local! {
    /// Values of the filter transforms this thread has computed into caches so far (tests
    /// compare it with the scheduler's count, `Da3::conv_filter_cache_bytes`; per thread, as
    /// the layers call [`FilterCache::get`] on the caller's thread and tests run in parallel).
    pub(crate) static CACHED_VALUES: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Values of the transform of one 3×3 weight value (36 per 9).
pub(crate) const TRANSFORMED_PER_WEIGHT: u64 = (XI / 9) as u64;

/// Sizes shared by the blocks of one convolution, and the layout of a block's padded rows.
///
/// The input is zero-padded (the image at (1, 1) of a (4·th + 2) × (4·tw + 2) plane, so that
/// every tile's 6×6 window is in bounds) and each padded row is stored split by column phase:
/// `Q_p[l] = row[4l + p]` for p = 0..3, one segment of `qs` values each. Then column c of
/// the windows of 16 consecutive tiles (tile x = tx..tx+16, window column 4·x + c) is one
/// contiguous load: `Q_c[tx..]` for c < 4, `Q_{c−4}[tx + 1..]` for c = 4, 5.
struct Geometry {
    c_in: usize,
    c_out: usize,
    /// Output (= input) height and width.
    h: usize,
    w: usize,
    /// Tile rows and columns.
    th: usize,
    tw: usize,
    /// Values per phase segment (tw + 1 used, the rest zeros so that 16-lane loads stay in it).
    qs: usize,
    /// Values per padded, phase-split row (4·qs).
    row: usize,
    /// Whether the input goes through a ReLU as it is read (the heads' residual units apply
    /// one before each convolution; fused here, it costs no pass of its own).
    relu: bool,
}

impl Geometry {
    fn new(c_in: usize, c_out: usize, h: usize, w: usize) -> Self {
        let (th, tw) = (h.div_ceil(M), w.div_ceil(M));
        let qs = tw + LANES;
        Self { c_in, c_out, h, w, th, tw, qs, row: 4 * qs, relu: false }
    }
}

/// Writes padded row `y` (0 and rows past the image: zeros) of channel `c` of image `b`, split
/// by phase (see [`Geometry`]), to `row` (`g.row` values).
#[inline(always)]
fn split_row(row: &mut [f32], input: &StridedInput, b: usize, c: usize, y: usize, g: &Geometry) {
    row.fill(0.0);
    if y == 0 || y > g.h {
        return; // padding rows
    }
    let src = &input.data[input.row(b, c, y - 1)..];
    let sw = input.strides[3];
    // Input column x is padded column x + 1: phase (x + 1) % 4, index (x + 1) / 4.
    let (q0, rest) = row.split_at_mut(g.qs);
    let (q1, rest) = rest.split_at_mut(g.qs);
    let (q2, q3) = rest.split_at_mut(g.qs);
    let quads = if sw == 1 { g.w / 4 } else { 0 };
    if quads > 0 {
        // Exact lengths, so that the deinterleave compiles to vector shuffles.
        let src = &src[..4 * quads];
        let (d0, d1, d2, d3) = (&mut q0[1..=quads], &mut q1[..quads], &mut q2[..quads], &mut q3[..quads]);
        if g.relu {
            for l in 0..quads {
                d1[l] = relu(src[4 * l]);
                d2[l] = relu(src[4 * l + 1]);
                d3[l] = relu(src[4 * l + 2]);
                d0[l] = relu(src[4 * l + 3]);
            }
        } else {
            for l in 0..quads {
                d1[l] = src[4 * l];
                d2[l] = src[4 * l + 1];
                d3[l] = src[4 * l + 2];
                d0[l] = src[4 * l + 3];
            }
        }
    }
    for x in 4 * quads..g.w {
        let v = if g.relu { relu(src[x * sw]) } else { src[x * sw] };
        let x = x + 1;
        [&mut *q0, &mut *q1, &mut *q2, &mut *q3][x % 4][x / 4] = v;
    }
}

/// `max(v, 0)`, NaN kept (as PyTorch's and Burn's ReLU).
#[inline(always)]
fn relu(v: f32) -> f32 {
    if v < 0.0 {
        0.0
    } else {
        v
    }
}

/// Output channels per task of [`transform_filters`].
const FILTER_BAND: usize = 8;

/// `U_ξ = (G g Gᵀ)_ξ` for every filter: [36, C_out, C_in], computed in f64.
///
/// In parallel bands of [`FILTER_BAND`] output channels, each a row range of all 36 planes,
/// and with the input channel innermost so that both stages vectorize. Why: it runs on the
/// first pass of every layer (then [`FilterCache`] keeps it), serially it was 0.2 s of
/// da3-large's first pass on 2 cores (`perf`, 2026-11-24: 214 samples at 999 Hz). Each value
/// is the same sum in the same order as the plain definition (`(G g)` then `(G g) Gᵀ`, terms
/// in k order, no fused multiply-adds), so the result is bit for bit the serial one's (tested).
pub(super) fn transform_filters(weights: &[f32], c_out: usize, c_in: usize) -> Vec<f32> {
    assert_eq!(weights.len(), c_out * c_in * 9, "winograd filter transform: weight size");
    let mut u = vec![0.0f32; XI * c_out * c_in];
    if u.is_empty() {
        return u;
    }
    // bands[b][ξ]: rows b·FILTER_BAND.. of plane ξ ([rows, C_in]).
    let mut bands: Vec<Vec<&mut [f32]>> = (0..c_out.div_ceil(FILTER_BAND)).map(|_| Vec::with_capacity(XI)).collect();
    for plane in u.chunks_mut(c_out * c_in) {
        for (band, rows) in bands.iter_mut().zip(plane.chunks_mut(FILTER_BAND * c_in)) {
            band.push(rows);
        }
    }
    bands.into_par_iter().enumerate().for_each(|(b, mut planes)| {
        let mut gg = vec![0.0f64; WIN * 3 * c_in]; // G g: [6, 3, C_in]
        for r in 0..planes[0].len() / c_in {
            let filters = &weights[(b * FILTER_BAND + r) * c_in * 9..][..c_in * 9]; // [C_in, 3, 3]
            for (ci, g) in filters.chunks_exact(9).enumerate() {
                for (i, gi) in G.iter().enumerate() {
                    for j in 0..3 {
                        gg[(i * 3 + j) * c_in + ci] = gi[0] * g[j] as f64 + gi[1] * g[3 + j] as f64 + gi[2] * g[6 + j] as f64;
                    }
                }
            }
            for i in 0..WIN {
                let [g0, g1, g2] = [0, 1, 2].map(|k| &gg[(i * 3 + k) * c_in..][..c_in]);
                for (j, gj) in G.iter().enumerate() {
                    let out = &mut planes[i * WIN + j][r * c_in..][..c_in];
                    for ci in 0..c_in {
                        out[ci] = (g0[ci] * gj[0] + g1[ci] * gj[1] + g2[ci] * gj[2]) as f32;
                    }
                }
            }
        }
    });
    u
}

/// Up to 16 consecutive tiles of one tile row, transformed together (one per lane).
#[derive(Clone, Copy)]
struct Segment {
    /// First column of the segment in the block's matrices.
    col: usize,
    /// Tile row and first tile column.
    ty: usize,
    tx: usize,
    /// Tiles in the segment.
    lanes: usize,
}

thread_local! {
    /// Per-thread scratch of [`run_block`]: one channel's padded rows, transformed inputs,
    /// products.
    static SCRATCH: std::cell::RefCell<[Vec<f32>; 3]> = const { std::cell::RefCell::new([Vec::new(), Vec::new(), Vec::new()]) };
}

/// Tile rows `ty0 .. ty0 + rows` of image `b`: per input channel, its 4·rows + 2 padded rows
/// split by phase (in L1/L2, not a padded copy of the whole input) and the input transform;
/// then the 36 products; then the output transform + bias, written to `out` ([C_out, H, W]
/// of this image).
///
/// # Safety
/// `out` must be valid for C_out·H·W writes, of which this call makes exactly those of its
/// tiles' pixels, and no other thread writes them meanwhile.
#[allow(clippy::too_many_arguments)]
unsafe fn run_block(g: &Geometry, input: &StridedInput, b: usize, u: &[f32], bias: Option<&[f32]>, ty0: usize, rows: usize, out: *mut f32) {
    let block = Block { input, b, ty0, rows };
    SCRATCH.with(|scratch| {
        let [padded, v, prod] = &mut *scratch.borrow_mut();
        run_block_simd(g, &block, u, bias, out, padded, v, prod)
    })
}

/// The input rows of one task of [`conv3x3`].
struct Block<'a, 'b> {
    input: &'a StridedInput<'b>,
    /// Image.
    b: usize,
    /// First tile row and tile rows.
    ty0: usize,
    rows: usize,
}

multiversion! {
    /// [`run_block_generic`] for the widest vector unit the CPU has.
    #[allow(clippy::too_many_arguments)]
    unsafe fn run_block_simd(g: &Geometry, block: &Block, u: &[f32], bias: Option<&[f32]>, out: *mut f32, padded: &mut Vec<f32>, v: &mut Vec<f32>, prod: &mut Vec<f32>) = run_block_generic
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn run_block_generic(g: &Geometry, block: &Block, u: &[f32], bias: Option<&[f32]>, out: *mut f32, padded: &mut Vec<f32>, v: &mut Vec<f32>, prod: &mut Vec<f32>) {
    // Segments: runs of ≤ 16 tiles within one tile row; column j of the block's matrices is
    // tile j of the block (row-major); `ty` is relative to the block.
    let mut segments = Vec::with_capacity(block.rows * g.tw.div_ceil(LANES));
    for ty in 0..block.rows {
        for tx in (0..g.tw).step_by(LANES) {
            segments.push(Segment { col: ty * g.tw + tx, ty, tx, lanes: LANES.min(g.tw - tx) });
        }
    }
    let cols = block.rows * g.tw;
    let padded_rows = M * block.rows + 2;
    if padded.len() < padded_rows * g.row {
        padded.resize(padded_rows * g.row, 0.0);
    }
    // Row stride of V and M: 16 spare columns, so that every segment stores and loads all 16
    // lanes (a partial segment's extra lanes land in the next segment's columns, rewritten
    // after, or in the spare ones; the products never read them).
    let stride = cols + LANES;
    // Transformed inputs V: [C_in, 36, stride] (product ξ reads rows ci at step 36·stride).
    // Channel-major, so that the 36 transformed values of a window are stored 4·stride bytes
    // apart rather than C_in·cols·4 (a multiple of 4 KiB that maps all 36 stores to one L1 set).
    // The scratch only grows (zero-filled once per thread), so it is always initialized.
    if v.len() < g.c_in * XI * stride {
        v.resize(g.c_in * XI * stride, 0.0);
    }
    let mut d = [[0.0f32; LANES]; XI];
    let mut vt = [[0.0f32; LANES]; XI];
    let mut t = [[0.0f32; LANES]; XI];
    for ci in 0..g.c_in {
        for (j, row) in padded[..padded_rows * g.row].chunks_exact_mut(g.row).enumerate() {
            split_row(row, block.input, block.b, ci, M * block.ty0 + j, g);
        }
        for s in &segments {
            let window = &padded[M * s.ty * g.row..];
            for r in 0..WIN {
                let row = &window[r * g.row..][..g.row];
                for p in 0..4 {
                    d[r * WIN + p] = lanes_at(row, p * g.qs + s.tx);
                }
                d[r * WIN + 4] = lanes_at(row, s.tx + 1);
                d[r * WIN + 5] = lanes_at(row, g.qs + s.tx + 1);
            }
            input_transform(&d, &mut t, &mut vt);
            for (xi, lanes) in vt.iter().enumerate() {
                let at = (ci * XI + xi) * stride + s.col;
                v[at..at + LANES].copy_from_slice(lanes);
            }
        }
    }
    // Products M_ξ = U_ξ · V_ξ: [C_out, 36, stride] (channel-major like V).
    if prod.len() < g.c_out * XI * stride {
        prod.resize(g.c_out * XI * stride, 0.0);
    }
    for xi in 0..XI {
        let lhs = Strided { ptr: u[xi * g.c_out * g.c_in..].as_ptr(), row: g.c_in as isize, col: 1 };
        let rhs = Strided { ptr: v[xi * stride..].as_ptr(), row: (XI * stride) as isize, col: 1 };
        // SAFETY: U_ξ is C_out × C_in and V_ξ C_in × cols (rows 36·stride apart), in bounds;
        // the destination rows (co, ξ) of `prod` are written without being read.
        gemm_serial(g.c_out, cols, g.c_in, prod.as_mut_ptr().add(xi * stride), (XI * stride) as isize, false, lhs, rhs, 1.0);
    }
    // Output transform + bias, then each tile's 4×4 pixels (those inside the image).
    let mut m = [[0.0f32; LANES]; XI];
    let mut y = [[0.0f32; LANES]; M * M];
    let mut ty = [[0.0f32; LANES]; M * WIN];
    for co in 0..g.c_out {
        let add = bias.map_or(0.0, |b| b[co]);
        let channel_out = out.add(co * g.h * g.w);
        let products = &prod[co * XI * stride..][..XI * stride];
        for s in &segments {
            for (xi, lanes) in m.iter_mut().enumerate() {
                *lanes = lanes_at(products, xi * stride + s.col);
            }
            output_transform(&m, &mut ty, &mut y);
            let (y0, x0) = (M * (block.ty0 + s.ty), M * s.tx);
            let width = (M * s.lanes).min(g.w - x0);
            for i in 0..M.min(g.h - y0) {
                // Interleave the lanes back into pixels: x = x0 + 4l + j.
                let mut pixels = [0.0f32; M * LANES];
                for (l, quad) in pixels.chunks_exact_mut(M).enumerate() {
                    for (j, px) in quad.iter_mut().enumerate() {
                        *px = y[i * M + j][l] + add;
                    }
                }
                store_prefix(channel_out.add((y0 + i) * g.w + x0), &pixels, width);
            }
        }
    }
}

/// Writes `values[..width]` to `dst` in 16- and 4-value pieces (no `memcpy` call for the
/// short, variable widths of a tile row's last segment).
///
/// # Safety
/// `dst` must be valid for `width` writes.
#[inline(always)]
unsafe fn store_prefix(dst: *mut f32, values: &[f32; M * LANES], width: usize) {
    let mut k = 0;
    while k + LANES <= width {
        dst.add(k).cast::<Lanes>().write_unaligned(lanes_at(values, k));
        k += LANES;
    }
    while k + M <= width {
        dst.add(k).cast::<[f32; M]>().write_unaligned(values[k..k + M].try_into().expect("4 values"));
        k += M;
    }
    while k < width {
        dst.add(k).write(values[k]);
        k += 1;
    }
}

/// The 16 values of `src` from `at` (a fixed-size copy: vector moves, no `memcpy` call).
#[inline(always)]
fn lanes_at(src: &[f32], at: usize) -> Lanes {
    src[at..][..LANES].try_into().expect("16 values")
}

/// `Bᵀ d B` for 16 windows at once (lane l = window l): [36] -> [36], row-major 6×6
/// (`t`: scratch).
#[inline(always)]
fn input_transform(d: &[Lanes; XI], t: &mut [Lanes; XI], v: &mut [Lanes; XI]) {
    // Rows: t[r][j] = Σ_k Bᵀ[j][k] d[r][k]; then columns: v[i][j] = Σ_k Bᵀ[i][k] t[k][j].
    for r in 0..WIN {
        let row: [&Lanes; WIN] = std::array::from_fn(|k| &d[r * WIN + k]);
        let mut y = [[0.0f32; LANES]; WIN];
        bt_apply(row, &mut y);
        for j in 0..WIN {
            t[r * WIN + j] = y[j];
        }
    }
    for j in 0..WIN {
        let col: [&Lanes; WIN] = std::array::from_fn(|k| &t[k * WIN + j]);
        let mut y = [[0.0f32; LANES]; WIN];
        bt_apply(col, &mut y);
        for i in 0..WIN {
            v[i * WIN + j] = y[i];
        }
    }
}

/// `Bᵀ x` for six lane vectors (the sparse rows of [`BT`] written out).
#[inline(always)]
fn bt_apply(x: [&Lanes; WIN], y: &mut [Lanes; WIN]) {
    for l in 0..LANES {
        let [x0, x1, x2, x3, x4, x5] = x.map(|v| v[l]);
        y[0][l] = 4.0 * x0 - 5.0 * x2 + x4;
        y[1][l] = -4.0 * (x1 + x2) + x3 + x4;
        y[2][l] = 4.0 * (x1 - x2) - x3 + x4;
        y[3][l] = 2.0 * (x3 - x1) - x2 + x4;
        y[4][l] = 2.0 * (x1 - x3) - x2 + x4;
        y[5][l] = 4.0 * x1 - 5.0 * x3 + x5;
    }
}

/// `Aᵀ m A` for 16 tiles at once: [36] (6×6) -> [16] (4×4, row-major) (`t`: scratch).
#[inline(always)]
fn output_transform(m: &[Lanes; XI], t: &mut [Lanes; M * WIN], y: &mut [Lanes; M * M]) {
    // t [4, 6] = Aᵀ m, then y = t A.
    for j in 0..WIN {
        let col: [&Lanes; WIN] = std::array::from_fn(|k| &m[k * WIN + j]);
        let mut r = [[0.0f32; LANES]; M];
        at_apply(col, &mut r);
        for i in 0..M {
            t[i * WIN + j] = r[i];
        }
    }
    for i in 0..M {
        let row: [&Lanes; WIN] = std::array::from_fn(|k| &t[i * WIN + k]);
        let mut r = [[0.0f32; LANES]; M];
        at_apply(row, &mut r);
        for j in 0..M {
            y[i * M + j] = r[j];
        }
    }
}

/// `Aᵀ x` for six lane vectors (the rows of [`AT`] written out).
#[inline(always)]
fn at_apply(x: [&Lanes; WIN], y: &mut [Lanes; M]) {
    for l in 0..LANES {
        let [x0, x1, x2, x3, x4, x5] = x.map(|v| v[l]);
        let (s12, d12, s34, d34) = (x1 + x2, x1 - x2, x3 + x4, x3 - x4);
        y[0][l] = x0 + s12 + s34;
        y[1][l] = d12 + 2.0 * d34;
        y[2][l] = s12 + 4.0 * s34;
        y[3][l] = d12 + 8.0 * d34 + x5;
    }
}

#[cfg(test)]
mod tests {
    use super::{AT, BT, G, WIN};
    use crate::kernels::conv::StridedInput;
    use crate::kernels::flex::into_flex;
    use crate::kernels::test_support::{pattern, rel_l2};

    /// Direct 3×3 "same" correlation in f64: the ground truth.
    fn conv_f64(x: &[f32], wt: &[f32], bias: &[f32], [n, ci, h, w]: [usize; 4], co: usize) -> Vec<f32> {
        let mut out = vec![0.0f32; n * co * h * w];
        for b in 0..n {
            for o in 0..co {
                for y in 0..h {
                    for xx in 0..w {
                        let mut acc = bias[o] as f64;
                        for c in 0..ci {
                            for ky in 0..3 {
                                for kx in 0..3 {
                                    let (iy, ix) = (y as isize + ky as isize - 1, xx as isize + kx as isize - 1);
                                    if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                                        let v = x[((b * ci + c) * h + iy as usize) * w + ix as usize] as f64;
                                        acc += v * wt[((o * ci + c) * 3 + ky) * 3 + kx] as f64;
                                    }
                                }
                            }
                        }
                        out[((b * co + o) * h + y) * w + xx] = acc as f32;
                    }
                }
            }
        }
        out
    }

    /// Winograd against an f64 direct convolution at the heads' channel counts, on sizes that
    /// are and are not multiples of the tile, with blocks of several tile rows and of one,
    /// partial 16-tile segments, batch 2, one channel, and a strided (permuted) input. Its rounding error stays within a few times
    /// that of the shifted-GEMM path (also measured here against f64).
    #[test]
    fn winograd_matches_f64_convolution() {
        let cases = [
            ([1, 64, 27, 36], 64, false),
            ([2, 32, 13, 22], 64, false),
            ([1, 64, 54, 72], 32, false), // 243 tiles: four blocks, a partial last one
            ([1, 1, 5, 3], 2, false),
            ([2, 3, 1, 1], 4, false),
            ([2, 24, 9, 11], 16, true),
            ([1, 8, 9, 301], 8, false), // 76 tiles per row: one row per block, 4 full segments + 12
        ];
        for (shape, co, permuted) in cases {
            let [n, ci, h, w] = shape;
            let x = if permuted {
                pattern([n, h * w, ci], 1, 2.0, 0.1).reshape([n, h, w, ci]).permute([0, 3, 1, 2])
            } else {
                pattern(shape, 1, 2.0, 0.1)
            };
            let wt = pattern([co, ci, 3, 3], 2, 0.5, 0.0).into_data().to_vec::<f32>().unwrap();
            let bias = pattern([co], 3, 1.0, 0.0).into_data().to_vec::<f32>().unwrap();
            let truth = conv_f64(&x.clone().into_data().to_vec::<f32>().unwrap(), &wt, &bias, shape, co);
            let flex = into_flex(x).ok().unwrap();
            let input = StridedInput::of(&flex).unwrap();
            let wino = super::conv3x3(&input, &super::transform_filters(&wt, co, ci), Some(&bias), shape, co, false);
            let direct = crate::kernels::conv::shifted_gemm(&input, &wt, Some(&bias), shape, co, 3);
            assert_eq!((wino.len(), direct.len()), (truth.len(), truth.len()));
            let (err, direct_err) = (rel_l2(&wino, &truth), rel_l2(&direct, &truth));
            eprintln!("{shape:?} -> {co}: Winograd {err:.2e}, shifted GEMM {direct_err:.2e}");
            assert!(err < 5e-6, "{shape:?} -> {co}: Winograd rel L2 {err:.2e} (shifted GEMM {direct_err:.2e})");
        }
    }

    /// The parallel filter transform is bit for bit the serial definition (`U = G g Gᵀ` in f64,
    /// filter by filter), at band-aligned, partial-band and single-channel sizes.
    #[test]
    fn filter_transform_is_the_serial_definition() {
        for (co, ci) in [(1, 1), (8, 3), (13, 7), (70, 33), (3, 64)] {
            let wt = pattern([co, ci, 3, 3], 5, 0.7, 0.01).into_data().to_vec::<f32>().unwrap();
            let mut serial = vec![0.0f32; super::XI * co * ci];
            for o in 0..co {
                for c in 0..ci {
                    let g = &wt[(o * ci + c) * 9..][..9];
                    let gg: Vec<[f64; 3]> =
                        super::G.iter().map(|gi| [0, 1, 2].map(|j| (0..3).map(|k| gi[k] * g[k * 3 + j] as f64).sum())).collect();
                    for i in 0..super::WIN {
                        for j in 0..super::WIN {
                            let v: f64 = (0..3).map(|k| gg[i][k] * super::G[j][k]).sum();
                            serial[((i * super::WIN + j) * co + o) * ci + c] = v as f32;
                        }
                    }
                }
            }
            let parallel = super::transform_filters(&wt, co, ci);
            assert!(parallel.iter().zip(&serial).all(|(a, b)| a.to_bits() == b.to_bits()), "{co}x{ci}: differs from the serial transform");
        }
    }

    /// The filter cache computes a layer's transform once, reuses it while the weight tensor
    /// is the same, and recomputes it for a different weight (same shape, other values) and
    /// for a different view of the same storage.
    #[test]
    fn filter_cache_follows_the_weight() {
        let cache = super::FilterCache::default();
        let tensor = |seed| into_flex(pattern([4, 3, 3, 3], seed, 1.0, 0.0)).ok().unwrap();
        let (w1, w2) = (tensor(1), tensor(2));
        let values = |t: &burn_flex::FlexTensor| t.storage::<f32>().to_vec();
        let transform = |t: &burn_flex::FlexTensor| super::transform_filters(&values(t), 4, 3);
        let first = cache.get(&w1, &values(&w1), 4, 3);
        assert_eq!(*first, transform(&w1));
        let again = cache.get(&w1.clone(), &values(&w1), 4, 3);
        assert!(std::sync::Arc::ptr_eq(&first, &again), "same weight: cached transform reused");
        let other = cache.get(&w2, &values(&w2), 4, 3);
        assert_eq!(*other, transform(&w2));
        assert_ne!(*other, *first);
        // Back to w1 (the cache holds one layer's transform: recomputed, equal).
        assert_eq!(*cache.get(&w1, &values(&w1), 4, 3), transform(&w1));
    }

    /// The written-out transforms are the matrices: `Aᵀ[(Gg Gᵀ) ⊙ (Bᵀ d B)]A` of one window
    /// equals the direct 3×3 correlation of it (exact arithmetic up to f64 rounding).
    #[test]
    fn transforms_compute_a_correlation() {
        let d: Vec<f64> = (0..36).map(|i| ((i * 7919) % 23) as f64 / 11.0 - 1.0).collect();
        let g: Vec<f64> = (0..9).map(|i| ((i * 104729) % 17) as f64 / 8.0 - 1.0).collect();
        let mul = |a: &[f64], (ar, ac): (usize, usize), b: &[f64], bc: usize| -> Vec<f64> {
            let mut o = vec![0.0; ar * bc];
            for i in 0..ar {
                for j in 0..bc {
                    o[i * bc + j] = (0..ac).map(|k| a[i * ac + k] * b[k * bc + j]).sum();
                }
            }
            o
        };
        let t = |a: &[f64], r: usize, c: usize| -> Vec<f64> { (0..c * r).map(|i| a[(i % r) * c + i / r]).collect() };
        let bt: Vec<f64> = BT.iter().flatten().map(|&v| v as f64).collect();
        let at: Vec<f64> = AT.iter().flatten().map(|&v| v as f64).collect();
        let gm: Vec<f64> = G.iter().flatten().copied().collect();
        let u = mul(&mul(&gm, (6, 3), &g, 3), (6, 3), &t(&gm, 6, 3), 6);
        let v = mul(&mul(&bt, (6, 6), &d, 6), (6, 6), &t(&bt, 6, 6), 6);
        let p: Vec<f64> = u.iter().zip(&v).map(|(a, b)| a * b).collect();
        let y = mul(&mul(&at, (4, 6), &p, 6), (4, 6), &t(&at, 4, 6), 4);
        for i in 0..4 {
            for j in 0..4 {
                let direct: f64 = (0..3).flat_map(|a| (0..3).map(move |b| (a, b))).map(|(a, b)| g[a * 3 + b] * d[(i + a) * WIN + j + b]).sum();
                assert!((y[i * 4 + j] - direct).abs() < 1e-12, "({i},{j}): {} vs {direct}", y[i * 4 + j]);
            }
        }
        // The lane-wise versions agree with the matrices.
        let lanes: [[f32; 16]; 36] = std::array::from_fn(|i| [d[i] as f32; 16]);
        let mut v32 = [[0.0f32; 16]; 36];
        super::input_transform(&lanes, &mut [[0.0; 16]; 36], &mut v32);
        for i in 0..36 {
            assert!((v32[i][0] as f64 - v[i]).abs() < 1e-5, "V[{i}]");
        }
        let m: [[f32; 16]; 36] = std::array::from_fn(|i| [p[i] as f32; 16]);
        let mut y32 = [[0.0f32; 16]; 16];
        super::output_transform(&m, &mut [[0.0; 16]; 24], &mut y32);
        for i in 0..16 {
            assert!((y32[i][5] as f64 - y[i]).abs() < 1e-4 * (1.0 + y[i].abs()), "Y[{i}]");
        }
    }
}
