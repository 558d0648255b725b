//! The CPU attention's AVX-512 + FMA code: its two products as 16-lane register blocks over
//! `avx2.rs`' packed panels (the default path on AVX-512 CPUs, see `cpu::Products`), and the
//! softmax `exp`, which the gemm path uses on these CPUs too.
//!
//! Why the `exp`: the portable `cpu::simd::exp_sub_sum`, built for AVX-512 at run time, issues
//! a separate multiply and add per polynomial step (Rust does not contract them into FMAs) and
//! runs the last `len % 16` values of every row as scalars; profiled on da3-small at one view
//! on a 2-core Xeon (Emerald Rapids) it was 5.8 % of the pass's CPU samples. Here the
//! polynomial uses FMAs and the row's tail is one masked vector. FMA's single rounding moves
//! the results by an ulp at most (`fma_exp.rs`' test bounds them against f64).

use std::arch::x86_64::*;

use super::avx2::{ScoresTile, ValuesTile};

/// Whether this CPU has the instructions used here.
pub(super) fn available() -> bool {
    is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("fma")
}

/// `x[i] = exp(x[i] − m)` in place; returns the sum of the new values. Needs `x[i] ≤ m`
/// (softmax rows minus their maximum); results below e^−87.3 are that value, not 0.
///
/// # Safety
/// AVX-512F and FMA must be available ([`available`]).
#[target_feature(enable = "avx512f,fma")]
pub(super) unsafe fn exp_sub_sum(x: &mut [f32], m: f32) -> f32 {
    // Vectors of 16, the last one masked: lanes past the row load as m (e^0) and are neither
    // stored nor summed. One loop suffices: its iterations depend on each other only through
    // the running sum (one add), so the out-of-order core overlaps their exps.
    let mv = _mm512_set1_ps(m);
    let mut sum = _mm512_setzero_ps();
    for piece in x.chunks_mut(16) {
        let mask: __mmask16 = (1u32 << piece.len()).wrapping_sub(1) as u16;
        let e = exp16(_mm512_sub_ps(_mm512_mask_loadu_ps(mv, mask, piece.as_ptr()), mv));
        _mm512_mask_storeu_ps(piece.as_mut_ptr(), mask, e);
        sum = _mm512_mask_add_ps(sum, mask, sum, e);
    }
    _mm512_reduce_add_ps(sum)
}

fma_exp! {
    /// e^x for sixteen x ≤ 0 (see `fma_exp.rs`).
    exp16, 512
}

/// Rows of the scores' register block (12 rows × 2 panels of 16 keys: 24 accumulators).
pub(super) const MR: usize = 12;
/// Rows of the weighted values' register block (6 rows × 64 columns: 24 accumulators).
const MR_VALUES: usize = 6;
/// Columns of the weighted values' register block: the head dim must be a multiple.
pub(super) const COLUMNS: usize = 64;
/// Columns of one value panel and keys of one key panel (`avx2.rs`' packing, shared).
const PANEL: usize = super::avx2::NR;

/// Scores of a query block against a key tile, as `avx2::scores` (same tile, same packed
/// keys), with 16-lane vectors: a register block covers two key panels, the tile's last odd
/// panel one.
///
/// # Safety
/// AVX-512F and FMA must be available ([`available`]); `rows_pad` a multiple of [`MR`]; every
/// pointer must cover the ranges of `avx2::scores`.
#[target_feature(enable = "avx512f,fma")]
pub(super) unsafe fn scores(tile: &ScoresTile, row_max: &mut [f32]) {
    let ScoresTile { q, rows_pad, hd, kp, keys, s, s_row } = *tile;
    debug_assert!(rows_pad % MR == 0 && row_max.len() >= rows_pad);
    for r0 in (0..rows_pad).step_by(MR) {
        let mut max = [_mm512_set1_ps(f32::NEG_INFINITY); MR];
        let mut j0 = 0;
        while j0 < keys {
            let a = q.add(r0 * hd);
            let dst = s.add(r0 * s_row + j0);
            if j0 + PANEL < keys {
                score_block::<2>(a, hd, kp.add(j0 * hd), dst, s_row, keys - j0, &mut max);
                j0 += 2 * PANEL;
            } else {
                score_block::<1>(a, hd, kp.add(j0 * hd), dst, s_row, keys - j0, &mut max);
                j0 += PANEL;
            }
        }
        for (i, max) in max.iter().enumerate() {
            // The lanes' maximum covers every whole panel; the last partial one is read back
            // (its padding columns are not keys).
            let full = keys / PANEL * PANEL;
            let row = std::slice::from_raw_parts(s.add((r0 + i) * s_row), keys);
            let tail = row[full..].iter().fold(f32::NEG_INFINITY, |m, v| if *v > m { *v } else { m });
            let m = _mm512_reduce_max_ps(*max);
            row_max[r0 + i] = if tail > m { tail } else { m };
        }
    }
}

/// One [`MR`] × `P` panels register block of [`scores`]: `left` keys remain from its first.
#[inline(always)]
unsafe fn score_block<const P: usize>(
    a: *const f32,
    hd: usize,
    b: *const f32,
    dst: *mut f32,
    s_row: usize,
    left: usize,
    max: &mut [__m512; MR],
) {
    let mut acc = [[_mm512_setzero_ps(); P]; MR];
    for d in 0..hd {
        rank_one_update(&mut acc, a.add(d), hd, b.add(d * PANEL), hd * PANEL);
    }
    for (i, acc) in acc.iter().enumerate() {
        for (p, acc) in acc.iter().enumerate() {
            _mm512_storeu_ps(dst.add(i * s_row + p * PANEL), *acc);
            if (p + 1) * PANEL <= left {
                max[i] = _mm512_max_ps(max[i], *acc);
            }
        }
    }
}

/// Weighted values of a query block over a key tile into the output rows, as
/// `avx2::weighted_values` (same tile, same packed values), 64 columns at a time.
///
/// # Safety
/// AVX-512F and FMA must be available ([`available`]); `hd` a multiple of 64; as
/// `avx2::weighted_values` otherwise.
#[target_feature(enable = "avx512f,fma")]
pub(super) unsafe fn weighted_values(tile: &ValuesTile, keep: Option<&[f32]>) {
    let ValuesTile { p, p_row, rows, keys, vp, panel_keys, k0, hd, o, o_row } = *tile;
    const GROUP: usize = COLUMNS / PANEL; // panels of 16 columns per register block
    debug_assert!(hd % COLUMNS == 0);
    for r0 in (0..rows).step_by(MR_VALUES) {
        let live = MR_VALUES.min(rows - r0);
        for c0 in (0..hd).step_by(COLUMNS) {
            let mut acc = [[_mm512_setzero_ps(); GROUP]; MR_VALUES];
            let v0 = vp.add((c0 / PANEL * panel_keys + k0) * PANEL);
            let pr = p.add(r0 * p_row);
            for j in 0..keys {
                rank_one_update(&mut acc, pr.add(j), p_row, v0.add(j * PANEL), panel_keys * PANEL);
            }
            for (i, acc) in acc.iter().enumerate().take(live) {
                let dst = o.offset((r0 + i) as isize * o_row).add(c0);
                for (g, acc) in acc.iter().enumerate() {
                    let mut out = *acc;
                    if let Some(keep) = keep {
                        out = _mm512_fmadd_ps(_mm512_loadu_ps(dst.add(g * PANEL)), _mm512_set1_ps(keep[r0 + i]), out);
                    }
                    _mm512_storeu_ps(dst.add(g * PANEL), out);
                }
            }
        }
    }
}

/// One step of a register block: `acc[i][p] += a[i·a_step] · b[p·b_step .. + 16]` for its `R`
/// rows and `P` vectors (`R` broadcasts, `P` loads, `R·P` FMAs).
#[inline(always)]
unsafe fn rank_one_update<const R: usize, const P: usize>(
    acc: &mut [[__m512; P]; R],
    a: *const f32,
    a_step: usize,
    b: *const f32,
    b_step: usize,
) {
    let bv: [__m512; P] = std::array::from_fn(|p| _mm512_loadu_ps(b.add(p * b_step)));
    for (i, acc) in acc.iter_mut().enumerate() {
        let ai = _mm512_set1_ps(*a.add(i * a_step));
        for (acc, b) in acc.iter_mut().zip(&bv) {
            *acc = _mm512_fmadd_ps(ai, *b, *acc);
        }
    }
}
