//! The softmax `exp` of the CPU attention's gemm path as AVX-512 + FMA code, for CPUs that have
//! AVX-512 (where the products stay with `gemm`, see `cpu::Products`).
//!
//! Why: the portable `cpu::simd::exp_sub_sum`, built for AVX-512 at run time, issues a separate
//! multiply and add per polynomial step (Rust does not contract them into FMAs) and runs the
//! last `len % 16` values of every row as scalars; profiled on da3-small at one view on a 2-core
//! Xeon (Emerald Rapids) it was 5.8 % of the pass's CPU samples. Here the polynomial uses FMAs and the
//! row's tail is one masked vector. The gemm path's results already differ from a scalar softmax by summation order;
//! FMA's single rounding moves them by an ulp at most (the test below bounds it against f64).

use std::arch::x86_64::*;

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
