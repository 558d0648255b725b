//! f32 matrix products with our own AVX-512 microkernel: the linear layers and 1×1
//! convolutions on flex. The `gemm` crate took 1.3× MKL's time at the backbone's shapes
//! (`benches/gemm_compare.py`, 2 threads); this takes 0.81× the `gemm` crate's time there
//! (geometric mean of 8 shapes, interleaved runs, best of 5 × 10 calls), with 0.69–1.06× per shape.
//!
//! The layout is that of BLIS-style products:
//! - Both operands are packed once per call, in parallel: `lhs` into panels of [`MR`] = 12
//!   rows (`[k][12]`), `rhs` into panels of [`NR`] = 32 columns (`[k][32]`, zero-padded past
//!   the last column). Packing per task instead (each task re-packing its rows and columns)
//!   was 30 % of the time in a perf profile; once per call it is about 8 %.
//! - The output is cut into tasks of about [`MC_TARGET`] × [`NC_TARGET`]; each walks k in
//!   slices of [`KC`] and, per slice, runs the 12×32 microkernel over its row panels (outer
//!   loop: the 12×KC panel of broadcast values stays in L1) and column panels (inner loop:
//!   streamed from L2). The microkernel keeps 24 accumulators in registers and does two
//!   vector loads and twelve broadcasts per step of k: 125 GFLOP/s on one core with its
//!   operands in L1, against about 120 for MKL's whole product.
//! - The first slice of k writes `acc + bias` without reading the output (which needs no
//!   zero-fill); later slices add onto it. Columns past `n` are masked; a panel of fewer than
//!   12 rows runs a shorter kernel instance.
//!
//! Measured alternatives (2 threads, same shapes): 6×64 and 8×48 microkernels (96 and 72
//! GFLOP/s in L1); k slices of 256 and 384 (1.07× and 1.04× the time of 128 with these loops);
//! column panels outer (1.04–1.07×). The same kernel, serial, for the products inside the
//! attention and Winograd kernels (`flex::gemm_serial`) took 1.5× and 1.2× the `gemm` crate's
//! time there: at their sizes, packing per call (and gathering the transposed keys element by
//! element) outweighs the faster microkernel, so they keep the `gemm` crate.
//!
//! Chosen at run time where the CPU has AVX-512F ([`available`]; `DA3_NO_AVX512_GEMM=1`
//! turns it off, for comparisons); elsewhere the callers keep the `gemm` crate. Sums run in
//! another order than the `gemm` crate's, so results differ by rounding only.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use rayon::prelude::*;

use super::flex::Strided;
use super::linear::Bias;

/// Rows per microkernel (accumulators: 2·MR zmm registers).
const MR: usize = 12;
/// AVX-512 vectors of columns per microkernel.
const NV: usize = 2;
/// Columns per microkernel.
const NR: usize = 16 * NV;
/// Slice of the shared dimension per microkernel call: the row panel (MR·KC f32 = 6 KiB) stays
/// in L1 while column panels (16 KiB each) stream past it.
const KC: usize = 128;
/// Target task height (rows), rounded to whole row panels.
const MC_TARGET: usize = 192;
/// Target task width (columns), rounded to whole column panels.
const NC_TARGET: usize = 384;
/// Fewest rows for which callers use [`gemm`] (four full row panels): with fewer, most of the
/// 12-row microkernel's accumulators are idle.
pub(crate) const MIN_ROWS: usize = 4 * MR;
/// Tasks per thread at least, where the shape allows: a thread slowed by another process then
/// does not hold back the whole product.
const TASKS_PER_THREAD: usize = 3;

/// Whether this CPU runs [`gemm`] (x86-64 with AVX-512F, checked once at run time).
pub(crate) fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static AVX512: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *AVX512.get_or_init(|| std::arch::is_x86_feature_detected!("avx512f") && std::env::var_os("DA3_NO_AVX512_GEMM").is_none())
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// A pointer to the output shared by the tasks, each writing its own rows × columns.
#[derive(Clone, Copy)]
struct Out(*mut f32);
// SAFETY: the tasks write disjoint blocks of the output, which outlives the parallel loop.
unsafe impl Sync for Out {}
unsafe impl Send for Out {}

/// `out[m×n] (row stride n) = lhs[m×k] · rhs[k×n] + bias`, on rayon's pool. Every element of
/// `out` is written without being read first (it may be uninitialized).
///
/// # Safety
/// [`available`] must be true; `lhs` and `rhs` must address m×k and k×n valid elements
/// through their strides; `out` must hold m·n writable elements that nothing else accesses
/// meanwhile; a bias must have n (per column) or m (per row) elements; `k` must be > 0.
pub(crate) unsafe fn gemm(out: *mut f32, m: usize, k: usize, n: usize, lhs: Strided, rhs: Strided, bias: Bias) {
    debug_assert!(available() && k > 0);
    // The calling thread's buffers; a fresh pair if they are in use (a product started from
    // a task that rayon runs while this thread waits for its own product).
    let mut buffers = PACKED.with(|b| b.try_borrow_mut().map(|mut b| std::mem::take(&mut *b)).unwrap_or_default());
    let [a_buf, b_buf] = &mut buffers;
    let (row_panels, col_panels) = (m.div_ceil(MR), n.div_ceil(NR));
    let a_pack = Out(aligned(a_buf, row_panels * MR * k));
    let b_pack = Out(aligned(b_buf, col_panels * NR * k));
    // Both operands packed once, in parallel, panel by panel.
    (0..row_panels + col_panels).into_par_iter().for_each(|panel| {
        let (a_pack, b_pack, lhs, rhs) = (a_pack, b_pack, lhs, rhs);
        // SAFETY: panel `panel` of its pack (disjoint per panel, within the sizes allocated
        // above); its source rows or columns are within the operands.
        unsafe {
            if panel < row_panels {
                let i0 = panel * MR;
                pack_lhs_panel(a_pack.0.add(i0 * k), lhs, i0, MR.min(m - i0), k);
            } else {
                let j0 = (panel - row_panels) * NR;
                pack_rhs_panel(b_pack.0.add(j0 * k), rhs, j0, NR.min(n - j0), k);
            }
        }
    });
    let threads = rayon::current_num_threads().max(1);
    let (mc, nc) = task_shape(m, n, threads);
    let tasks: Vec<(usize, usize)> = (0..m).step_by(mc).flat_map(|r| (0..n).step_by(nc).map(move |c| (r, c))).collect();
    let out = Out(out);
    let run = |&(r0, c0): &(usize, usize)| {
        let (out, a_pack, b_pack) = (out, a_pack, b_pack);
        // SAFETY: the task's block lies within the m×n output (blocks are disjoint) and reads
        // the packed panels of its rows and columns.
        unsafe { run_task(out.0, n, r0, c0, mc.min(m - r0), nc.min(n - c0), k, a_pack.0, b_pack.0, bias) };
    };
    if tasks.len() == 1 {
        run(&tasks[0]);
    } else {
        tasks.par_iter().with_max_len(1).for_each(run);
    }
    PACKED.with(|b| {
        if let Ok(mut b) = b.try_borrow_mut() {
            *b = buffers;
        }
    });
}

/// Task height and width (whole panels) for an m×n output on `threads` threads: about
/// [`MC_TARGET`] × [`NC_TARGET`], narrower until there are [`TASKS_PER_THREAD`] tasks per
/// thread or the tasks are two column panels wide.
fn task_shape(m: usize, n: usize, threads: usize) -> (usize, usize) {
    let row_blocks = (m as f64 / MC_TARGET as f64).round().max(1.0) as usize;
    let mc = m.div_ceil(row_blocks).next_multiple_of(MR);
    let row_blocks = m.div_ceil(mc);
    let mut col_blocks = n.div_ceil(NC_TARGET);
    let width = |blocks: usize| n.div_ceil(blocks).next_multiple_of(NR);
    while row_blocks * col_blocks < TASKS_PER_THREAD * threads && width(col_blocks + 1) >= 2 * NR && width(col_blocks + 1) < width(col_blocks) {
        col_blocks += 1;
    }
    (mc, width(col_blocks))
}

thread_local! {
    /// The calling thread's packing buffers, kept between products: [lhs panels, rhs panels].
    static PACKED: std::cell::RefCell<[Vec<f32>; 2]> = const { std::cell::RefCell::new([Vec::new(), Vec::new()]) };
}

/// A 64-byte aligned pointer into `buffer` with room for `len` f32.
fn aligned(buffer: &mut Vec<f32>, len: usize) -> *mut f32 {
    if buffer.len() < len + 16 {
        // Zeroed once when it grows (the buffer is kept for the next product).
        buffer.resize(len + 16, 0.0);
    }
    let ptr = buffer.as_mut_ptr();
    // SAFETY: at most 15 elements past the start, within the len + 16 allocated.
    unsafe { ptr.add(ptr.align_offset(64)) }
}

/// One task: output rows r0..r0+rows, columns c0..c0+cols, from the packed operands.
///
/// # Safety
/// As [`gemm`], for this block; the packs hold every panel of its rows and columns.
#[allow(clippy::too_many_arguments)]
unsafe fn run_task(out: *mut f32, ldc: usize, r0: usize, c0: usize, rows: usize, cols: usize, k: usize, a_pack: *const f32, b_pack: *const f32, bias: Bias) {
    for k0 in (0..k).step_by(KC) {
        let kc = KC.min(k - k0);
        for i0 in (r0..r0 + rows).step_by(MR) {
            for j0 in (c0..c0 + cols).step_by(NR) {
                // SAFETY: panel offsets within the packs; the tile within the task's block.
                unsafe {
                    let a = a_pack.add(i0 * k + k0 * MR);
                    let b = b_pack.add(j0 * k + k0 * NR);
                    let tile = Tile { c: out.add(i0 * ldc + j0), ldc, cols: NR.min(c0 + cols - j0), first: k0 == 0, bias, row: i0, col: j0 };
                    microkernel_rows(MR.min(r0 + rows - i0), kc, a, b, tile);
                }
            }
        }
    }
}

/// Columns `j0 .. j0 + width` of `rhs` (all k rows) as one panel `[k][NR]`, zero-padded.
///
/// # Safety
/// `dst` holds NR·k f32; the source columns are in bounds.
unsafe fn pack_rhs_panel(dst: *mut f32, rhs: Strided, j0: usize, width: usize, k: usize) {
    let panel = unsafe { std::slice::from_raw_parts_mut(dst, NR * k) };
    let src = |kk: usize, j: usize| unsafe { *rhs.ptr.offset(kk as isize * rhs.row + (j0 + j) as isize * rhs.col) };
    if rhs.col == 1 && width == NR {
        for (kk, row) in panel.chunks_exact_mut(NR).enumerate() {
            // SAFETY: NR contiguous elements of row kk from column j0.
            row.copy_from_slice(unsafe { std::slice::from_raw_parts(rhs.ptr.offset(kk as isize * rhs.row + j0 as isize), NR) });
        }
    } else if rhs.col == 1 {
        for (kk, row) in panel.chunks_exact_mut(NR).enumerate() {
            for (j, v) in row.iter_mut().enumerate() {
                *v = if j < width { src(kk, j) } else { 0.0 };
            }
        }
    } else {
        // Columns strided (a permuted token map, rows contiguous): read down the columns.
        for j in 0..NR {
            for kk in 0..k {
                panel[kk * NR + j] = if j < width { src(kk, j) } else { 0.0 };
            }
        }
    }
}

/// Rows `i0 .. i0 + height` of `lhs` (all k columns) as one panel `[k][MR]` (rows past
/// `height` are left unwritten: the microkernel for a short panel never reads them).
///
/// # Safety
/// `dst` holds MR·k f32; the source rows are in bounds.
unsafe fn pack_lhs_panel(dst: *mut f32, lhs: Strided, i0: usize, height: usize, k: usize) {
    let panel = unsafe { std::slice::from_raw_parts_mut(dst, MR * k) };
    if lhs.col == 1 {
        for i in 0..height {
            // SAFETY: k contiguous elements of row i0 + i.
            let src = unsafe { std::slice::from_raw_parts(lhs.ptr.offset((i0 + i) as isize * lhs.row), k) };
            for (kk, &v) in src.iter().enumerate() {
                panel[kk * MR + i] = v;
            }
        }
    } else {
        for kk in 0..k {
            for i in 0..height {
                panel[kk * MR + i] = unsafe { *lhs.ptr.offset((i0 + i) as isize * lhs.row + kk as isize * lhs.col) };
            }
        }
    }
}

/// Where a microkernel writes: its MR×NR output block and how.
#[derive(Clone, Copy)]
struct Tile<'a> {
    /// Output element of the block's first row and column.
    c: *mut f32,
    /// Output row stride.
    ldc: usize,
    /// Valid columns of the block (≤ NR).
    cols: usize,
    /// First slice of k: write `acc + bias`; later slices: add `acc` to the output.
    first: bool,
    bias: Bias<'a>,
    /// The block's first output row and column (for the bias).
    row: usize,
    col: usize,
}

/// The microkernel instance for a panel of `rows` (1..=MR) rows.
///
/// # Safety
/// As [`microkernel`].
unsafe fn microkernel_rows(rows: usize, kc: usize, a: *const f32, b: *const f32, tile: Tile) {
    unsafe {
        match rows {
            12 => microkernel::<12>(kc, a, b, tile),
            11 => microkernel::<11>(kc, a, b, tile),
            10 => microkernel::<10>(kc, a, b, tile),
            9 => microkernel::<9>(kc, a, b, tile),
            8 => microkernel::<8>(kc, a, b, tile),
            7 => microkernel::<7>(kc, a, b, tile),
            6 => microkernel::<6>(kc, a, b, tile),
            5 => microkernel::<5>(kc, a, b, tile),
            4 => microkernel::<4>(kc, a, b, tile),
            3 => microkernel::<3>(kc, a, b, tile),
            2 => microkernel::<2>(kc, a, b, tile),
            1 => microkernel::<1>(kc, a, b, tile),
            _ => unreachable!("row panel of {rows} rows"),
        }
    }
}

/// R×32 block of `A_panel[kc×MR] · B_panel[kc×NR]` into `tile`.
///
/// # Safety
/// AVX-512F must be present; `a` holds kc·MR and `b` kc·NR f32; the tile's R rows × `cols`
/// columns of output (and the bias elements it reads) are in bounds.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn microkernel<const R: usize>(kc: usize, a: *const f32, b: *const f32, tile: Tile) {
    unsafe {
        let mut acc = [[_mm512_setzero_ps(); NV]; R];
        for kk in 0..kc {
            let mut bv = [_mm512_setzero_ps(); NV];
            for (v, bv) in bv.iter_mut().enumerate() {
                *bv = _mm512_loadu_ps(b.add(kk * NR + 16 * v));
            }
            let a_row = a.add(kk * MR);
            for (r, acc) in acc.iter_mut().enumerate() {
                let av = _mm512_set1_ps(*a_row.add(r));
                for v in 0..NV {
                    acc[v] = _mm512_fmadd_ps(av, bv[v], acc[v]);
                }
            }
        }
        let mut masks = [0 as __mmask16; NV];
        for (v, mask) in masks.iter_mut().enumerate() {
            let n = tile.cols.saturating_sub(16 * v).min(16);
            *mask = ((1u32 << n) - 1) as __mmask16;
        }
        for (r, acc) in acc.iter().enumerate() {
            let row = tile.c.add(r * tile.ldc);
            for v in 0..NV {
                let (mask, dst) = (masks[v], row.add(16 * v));
                let mut value = acc[v];
                if tile.first {
                    match tile.bias {
                        Bias::None => {}
                        Bias::PerColumn(bias) => value = _mm512_add_ps(value, _mm512_maskz_loadu_ps(mask, bias.as_ptr().add(tile.col + 16 * v))),
                        Bias::PerRow(bias) => value = _mm512_add_ps(value, _mm512_set1_ps(bias[tile.row + r])),
                    }
                } else {
                    value = _mm512_add_ps(value, _mm512_maskz_loadu_ps(mask, dst));
                }
                _mm512_mask_storeu_ps(dst, mask, value);
            }
        }
    }
}

/// Never called: [`available`] is false off x86-64.
#[cfg(not(target_arch = "x86_64"))]
unsafe fn microkernel<const R: usize>(_kc: usize, _a: *const f32, _b: *const f32, _tile: Tile) {
    unreachable!("the AVX-512 GEMM runs on x86-64 only")
}

#[cfg(test)]
mod tests {
    use super::super::flex::Strided;
    use super::super::linear::Bias;

    /// f64 reference product through the strides.
    fn reference(m: usize, k: usize, n: usize, lhs: &[f32], ls: (usize, usize), rhs: &[f32], rs: (usize, usize), bias: Bias) -> Vec<f64> {
        let mut out = vec![0.0f64; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut s = match bias {
                    Bias::None => 0.0,
                    Bias::PerColumn(b) => b[j] as f64,
                    Bias::PerRow(b) => b[i] as f64,
                };
                for p in 0..k {
                    s += lhs[i * ls.0 + p * ls.1] as f64 * rhs[p * rs.0 + j * rs.1] as f64;
                }
                out[i * n + j] = s;
            }
        }
        out
    }

    fn values(len: usize, seed: u64) -> Vec<f32> {
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
            })
            .collect()
    }

    /// Against an f64 product: row panels of every height (m mod 12), partial column panels,
    /// several k slices (k > KC, not a multiple of it), transposed operands, each bias kind,
    /// tasks split by rows and by columns.
    #[test]
    fn matches_f64_product() {
        if !super::available() {
            eprintln!("skipped: no AVX-512F on this CPU (the gemm crate's path is tested instead)");
            return;
        }
        let cases = [
            // m, k, n, lhs transposed, rhs transposed, bias (0 none, 1 per column, 2 per row)
            (974, 384, 1152, false, false, 1),
            (37, 600, 70, false, false, 2),
            (5, 17, 3, false, false, 0),
            (130, 513, 200, true, false, 1),
            (64, 96, 777, false, true, 2),
            (1, 1000, 1000, false, false, 1),
            (250, 3, 33, true, true, 0),
        ];
        for (case, &(m, k, n, lt, rt, bias_kind)) in cases.iter().enumerate() {
            let a = values(m * k, 3 * case as u64 + 1);
            let b = values(k * n, 3 * case as u64 + 2);
            let bias_values = values(m.max(n), 3 * case as u64 + 3);
            let bias = match bias_kind {
                1 => Bias::PerColumn(&bias_values[..n]),
                2 => Bias::PerRow(&bias_values[..m]),
                _ => Bias::None,
            };
            let ls = if lt { (1, m) } else { (k, 1) };
            let rs = if rt { (1, k) } else { (n, 1) };
            let expected = reference(m, k, n, &a, ls, &b, rs, bias);
            let lhs = Strided { ptr: a.as_ptr(), row: ls.0 as isize, col: ls.1 as isize };
            let rhs = Strided { ptr: b.as_ptr(), row: rs.0 as isize, col: rs.1 as isize };
            let mut out = vec![f32::NAN; m * n];
            // SAFETY: operands and output sized as the shapes require.
            unsafe { super::gemm(out.as_mut_ptr(), m, k, n, lhs, rhs, bias) };
            let worst = out
                .iter()
                .zip(&expected)
                .map(|(&o, &e)| (o as f64 - e).abs() / (k as f64).sqrt())
                .fold(0.0f64, f64::max);
            assert!(worst < 1e-6, "case {case} ({m}×{k}·{k}×{n}): max error {worst:.2e} (per √k)");
        }
    }

    /// The task split covers the output with whole panels and gives several tasks per thread.
    #[test]
    fn task_shapes() {
        assert_eq!(super::task_shape(974, 1152, 2), (204, 384));
        let (mc, nc) = super::task_shape(974, 384, 2);
        assert_eq!((mc % super::MR, nc % super::NR), (0, 0));
        assert!(974usize.div_ceil(mc) * 384usize.div_ceil(nc) >= 6, "{mc}×{nc}");
        assert_eq!(super::task_shape(3, 100, 1), (12, 64));
    }
}
