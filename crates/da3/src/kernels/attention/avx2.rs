//! The two products of the CPU attention as register-blocked AVX2 + FMA loops, on operands laid
//! out once per head instead of packed by `gemm` in every product; the packing and the tile
//! structs are shared with the AVX-512 blocks (`avx512.rs`).
//!
//! Why: through the `gemm` crate each query block's `q kᵀ` re-packs the whole key tile and each
//! `p v` the whole value tile (gemm packs both operands inside every call), and the scores
//! then take separate passes for the row maximum. Here the keys and values are packed once per
//! (batch, head) into panels of 16 columns ([`pack_keys`], [`pack_values`]), so that a
//! register block reads its operand as one contiguous stream, and the row maximum is taken
//! from the accumulators while the scores are stored.
//!
//! Both products use a 6 × 16 register block: 12 accumulators of 8 f32, two vector loads and
//! six broadcasts per step, which fit AVX2's 16 registers (the shape of `gemm`'s own AVX2
//! microkernel, transposed).

use std::arch::x86_64::*;
use std::mem::MaybeUninit;

/// Rows of the register block.
pub(super) const MR: usize = 6;
/// Columns of the register block (two vectors of 8 f32).
pub(super) const NR: usize = 16;

/// Whether this CPU has the instructions the kernels here use.
pub(super) fn available() -> bool {
    is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
}

/// Packs the `keys` rows of `k` (element [j, d] at `k + j·row + d·col`) into panels of
/// [`NR`] keys: `kp[((j / NR) · hd + d) · NR + j % NR] = k[j, d]`, the keys past `keys` (up to
/// the next multiple of [`NR`]) zero, so every one of those elements is written. A register
/// block's operand for one `d` is then 16 contiguous floats, and its whole panel `hd · 64`
/// contiguous bytes.
///
/// # Safety
/// `k` must be readable at every `(j, d)` above; `kp` must hold `keys.next_multiple_of(NR) · hd`
/// floats.
pub(super) unsafe fn pack_keys(
    k: *const f32,
    row: isize,
    col: isize,
    keys: usize,
    hd: usize,
    kp: &mut [MaybeUninit<f32>],
) {
    debug_assert!(kp.len() >= keys.next_multiple_of(NR) * hd);
    for (panel, dst) in kp
        .chunks_exact_mut(hd * NR)
        .take(keys.div_ceil(NR))
        .enumerate()
    {
        let j0 = panel * NR;
        let n = NR.min(keys - j0);
        for (d, lanes) in dst.chunks_exact_mut(NR).enumerate() {
            for (jj, value) in lanes.iter_mut().enumerate() {
                value.write(if jj < n {
                    *k.offset((j0 + jj) as isize * row + d as isize * col)
                } else {
                    0.0
                });
            }
        }
    }
}

/// Packs the `keys` rows of `v` (row j: `hd` contiguous floats at `v + j·row`) into panels of
/// [`NR`] columns: `vp[((c / NR) · keys + j) · NR + c % NR] = v[j, c]` (`hd` a multiple of
/// [`NR`]), writing every one of its first `keys · hd` elements. The second product then
/// streams one panel's 64-byte rows in order.
///
/// # Safety
/// `v` must be readable as above; `vp` must hold `keys · hd` floats.
pub(super) unsafe fn pack_values(
    v: *const f32,
    row: isize,
    keys: usize,
    hd: usize,
    vp: &mut [MaybeUninit<f32>],
) {
    debug_assert!(hd % NR == 0 && vp.len() >= keys * hd);
    for (panel, dst) in vp.chunks_exact_mut(keys * NR).take(hd / NR).enumerate() {
        for (j, lanes) in dst.chunks_exact_mut(NR).enumerate() {
            let src = v.offset(j as isize * row).add(panel * NR);
            std::ptr::copy_nonoverlapping(src, lanes.as_mut_ptr().cast::<f32>(), NR);
        }
    }
}

/// The operands of a query block's scores against a key tile (see [`scores`]).
#[derive(Clone, Copy)]
pub(super) struct ScoresTile {
    /// The query rows, [rows_pad, hd] contiguous, the scale already applied.
    pub q: *const f32,
    /// Query rows, a multiple of the kernel's row block.
    pub rows_pad: usize,
    /// Head dim.
    pub hd: usize,
    /// The tile's first key panel, in [`pack_keys`]' layout.
    pub kp: *const f32,
    /// Keys in the tile.
    pub keys: usize,
    /// The scores, [rows_pad, ·] with row stride `s_row` (at least `keys` rounded up to [`NR`]).
    pub s: *mut f32,
    /// Row stride of `s`.
    pub s_row: usize,
}

/// The operands of a query block's weighted values over a key tile (see [`weighted_values`]).
#[derive(Clone, Copy)]
pub(super) struct ValuesTile {
    /// The tile's softmax numerators, row stride `p_row`; rows up to the kernel's row block
    /// past `rows` are read, never stored.
    pub p: *const f32,
    /// Row stride of `p`.
    pub p_row: usize,
    /// Query rows.
    pub rows: usize,
    /// Keys in the tile.
    pub keys: usize,
    /// The head's values in [`pack_values`]' layout, `panel_keys` keys per panel; the tile's
    /// first key is `k0`.
    pub vp: *const f32,
    /// Keys per value panel (the head's key count).
    pub panel_keys: usize,
    /// The tile's first key.
    pub k0: usize,
    /// Head dim, a multiple of [`NR`].
    pub hd: usize,
    /// Output row r at `o + r·o_row`.
    pub o: *mut f32,
    /// Row stride of `o`.
    pub o_row: isize,
}

/// Scores of a query block against a key tile: `s[r, j] = Σ_d q[r, d] · k[k0 + j, d]` for
/// `r < rows_pad` and `j < keys.next_multiple_of(NR)`, and `row_max[r]` = the largest
/// `s[r, j]` over `j < keys` (the real keys, not the zero padding); `rows_pad` a multiple of
/// [`MR`].
///
/// # Safety
/// AVX2 and FMA must be available ([`available`]); every pointer must cover the ranges above.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn scores(tile: &ScoresTile, row_max: &mut [f32]) {
    let ScoresTile { q, rows_pad, hd, kp, keys, s, s_row } = *tile;
    debug_assert!(rows_pad % MR == 0 && row_max.len() >= rows_pad);
    let full = keys / NR * NR;
    for r0 in (0..rows_pad).step_by(MR) {
        let mut max = [_mm256_set1_ps(f32::NEG_INFINITY); MR];
        let mut j0 = 0;
        while j0 < keys {
            let mut acc = [[_mm256_setzero_ps(); 2]; MR];
            let mut b = kp.add(j0 * hd); // panel j0 / NR
            let mut a = q.add(r0 * hd);
            for _ in 0..hd {
                let (b0, b1) = (_mm256_loadu_ps(b), _mm256_loadu_ps(b.add(8)));
                for (i, acc) in acc.iter_mut().enumerate() {
                    let ai = _mm256_broadcast_ss(&*a.add(i * hd));
                    acc[0] = _mm256_fmadd_ps(ai, b0, acc[0]);
                    acc[1] = _mm256_fmadd_ps(ai, b1, acc[1]);
                }
                b = b.add(NR);
                a = a.add(1);
            }
            for (i, acc) in acc.iter().enumerate() {
                let dst = s.add((r0 + i) * s_row + j0);
                _mm256_storeu_ps(dst, acc[0]);
                _mm256_storeu_ps(dst.add(8), acc[1]);
                if j0 < full {
                    max[i] = _mm256_max_ps(max[i], _mm256_max_ps(acc[0], acc[1]));
                }
            }
            j0 += NR;
        }
        for (i, max) in max.iter().enumerate() {
            let mut lanes = [0f32; 8];
            _mm256_storeu_ps(lanes.as_mut_ptr(), *max);
            let row = std::slice::from_raw_parts(s.add((r0 + i) * s_row), keys);
            // The last, partial column block: its padding columns are not keys.
            let tail = row[full..].iter();
            row_max[r0 + i] =
                lanes
                    .iter()
                    .chain(tail)
                    .fold(f32::NEG_INFINITY, |m, v| if *v > m { *v } else { m });
        }
    }
}

/// Weighted values of a query block over a key tile, into the output rows:
/// `o[r, c] = o[r, c] · keep[r] + Σ_{j < keys} p[r, j] · v[j, c]` for `r < rows`, `c < hd`
/// (`keep`: `None` = the first tile, `o` is written without being read).
///
/// # Safety
/// AVX2 and FMA must be available ([`available`]); every pointer must cover the ranges above,
/// and `o`'s `rows` rows must not be touched by another thread meanwhile.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn weighted_values(tile: &ValuesTile, keep: Option<&[f32]>) {
    let ValuesTile { p, p_row, rows, keys, vp, panel_keys, k0, hd, o, o_row } = *tile;
    debug_assert!(hd % NR == 0);
    for r0 in (0..rows).step_by(MR) {
        let live = MR.min(rows - r0);
        for c0 in (0..hd).step_by(NR) {
            let mut acc = [[_mm256_setzero_ps(); 2]; MR];
            let mut vj = vp.add((c0 / NR * panel_keys + k0) * NR);
            let pr = p.add(r0 * p_row);
            for j in 0..keys {
                let (v0, v1) = (_mm256_loadu_ps(vj), _mm256_loadu_ps(vj.add(8)));
                for (i, acc) in acc.iter_mut().enumerate() {
                    let pi = _mm256_broadcast_ss(&*pr.add(i * p_row + j));
                    acc[0] = _mm256_fmadd_ps(pi, v0, acc[0]);
                    acc[1] = _mm256_fmadd_ps(pi, v1, acc[1]);
                }
                vj = vj.add(NR);
            }
            for (i, acc) in acc.iter().enumerate().take(live) {
                let dst = o.offset((r0 + i) as isize * o_row).add(c0);
                let (mut lo, mut hi) = (acc[0], acc[1]);
                if let Some(keep) = keep {
                    let f = _mm256_set1_ps(keep[r0 + i]);
                    lo = _mm256_fmadd_ps(_mm256_loadu_ps(dst), f, lo);
                    hi = _mm256_fmadd_ps(_mm256_loadu_ps(dst.add(8)), f, hi);
                }
                _mm256_storeu_ps(dst, lo);
                _mm256_storeu_ps(dst.add(8), hi);
            }
        }
    }
}

/// `x[i] = exp(x[i] − m)` in place; returns the sum of the new values. Needs `x[i] ≤ m`
/// (softmax rows minus their maximum); results below e^−87.3 are that value, not 0.
///
/// The same reduction and polynomial as `cpu::simd::exp_sub_sum`, written with FMA and four
/// independent vectors per step: the portable version (no FMA, so that its three builds agree
/// bit for bit) was latency-bound at about 2.5 cycles per value, a fifth of this path's
/// attention time at one view. This path's results already differ from the gemm path's by
/// summation order, so FMA's single rounding costs nothing in agreement.
///
/// # Safety
/// AVX2 and FMA must be available ([`available`]).
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn exp_sub_sum(x: &mut [f32], m: f32) -> f32 {
    const STEP: usize = 4 * 8;
    let mv = _mm256_set1_ps(m);
    let mut sums = [_mm256_setzero_ps(); 4];
    let mut chunks = x.chunks_exact_mut(STEP);
    for chunk in &mut chunks {
        let p = chunk.as_mut_ptr();
        for (u, sum) in sums.iter_mut().enumerate() {
            let e = exp8(_mm256_sub_ps(_mm256_loadu_ps(p.add(8 * u)), mv));
            _mm256_storeu_ps(p.add(8 * u), e);
            *sum = _mm256_add_ps(*sum, e);
        }
    }
    let mut tail_sum = _mm256_setzero_ps();
    let mut eights = chunks.into_remainder().chunks_exact_mut(8);
    for piece in &mut eights {
        let e = exp8(_mm256_sub_ps(_mm256_loadu_ps(piece.as_ptr()), mv));
        _mm256_storeu_ps(piece.as_mut_ptr(), e);
        tail_sum = _mm256_add_ps(tail_sum, e);
    }
    let last = eights.into_remainder();
    if !last.is_empty() {
        // The last partial vector through masked loads and stores, not a padded copy (two
        // variable-length copies, i.e. `memmove` calls, per row); its padding lanes hold m,
        // so they compute e^0, and are not summed.
        let mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(last.len() as i32), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
        let keep = _mm256_castsi256_ps(mask);
        let x = _mm256_blendv_ps(mv, _mm256_maskload_ps(last.as_ptr(), mask), keep);
        let e = exp8(_mm256_sub_ps(x, mv));
        _mm256_maskstore_ps(last.as_mut_ptr(), mask, e);
        tail_sum = _mm256_add_ps(tail_sum, _mm256_and_ps(e, keep));
    }
    let total = _mm256_add_ps(
        _mm256_add_ps(sums[0], sums[1]),
        _mm256_add_ps(_mm256_add_ps(sums[2], sums[3]), tail_sum),
    );
    let mut lanes = [0f32; 8];
    _mm256_storeu_ps(lanes.as_mut_ptr(), total);
    lanes.iter().sum()
}

fma_exp! {
    /// e^x for eight x ≤ 0 (see `fma_exp.rs`).
    exp8, 256
}
