//! The vector `exp` of the CPU attention's softmax, written once for both vector widths that
//! use it (`avx2.rs`: 8 lanes, `avx512.rs`: 16 lanes), which differ only in their intrinsics.

/// Defines `unsafe fn $name(x: __m$bits) -> __m$bits` (`$bits` 256 or 512): e^x for every lane
/// x ≤ 0 (clamped below at −87.3, the smallest normal result), with `cpu::simd::exp`'s
/// Cody–Waite reduction x = n ln2 + r and Cephes' degree-7 polynomial for e^r, as fused
/// multiply-adds; 2^n by building the exponent bits. The intrinsics are those of that width
/// (`_mm256_fmadd_ps`, `_mm512_fmadd_ps`, …).
macro_rules! fma_exp {
    ($(#[$meta:meta])* $name:ident, $bits:literal) => { paste::paste! {
        $(#[$meta])*
        #[inline(always)]
        unsafe fn $name(x: [<__m $bits>]) -> [<__m $bits>] {
            const LN2_HI: f32 = 0.693_359_4;
            const LN2_LO: f32 = -2.121_944_4e-4;
            const ROUND: f32 = 12_582_912.0; // 1.5·2^23: adding it rounds to an integer
            const ROUND_BITS: i32 = 0x4B40_0000;
            let set = [<_mm $bits _set1_ps>];
            let x = [<_mm $bits _max_ps>](x, set(-87.336_55));
            let t = [<_mm $bits _fmadd_ps>](x, set(std::f32::consts::LOG2_E), set(ROUND));
            let n = [<_mm $bits _sub_ps>](t, set(ROUND));
            let r = [<_mm $bits _fnmadd_ps>](n, set(LN2_HI), x);
            let r = [<_mm $bits _fnmadd_ps>](n, set(LN2_LO), r);
            let mut p = set(1.987_569_1e-4);
            for c in [1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 1.666_666_5e-1, 5.000_000_1e-1] {
                p = [<_mm $bits _fmadd_ps>](p, r, set(c));
            }
            let e = [<_mm $bits _add_ps>]([<_mm $bits _fmadd_ps>](p, [<_mm $bits _mul_ps>](r, r), r), set(1.0));
            // 2^n: n + 127 in the exponent field (n is in t's low mantissa bits).
            let t_bits = [<_mm $bits _castps_si $bits>](t);
            let bits = [<_mm $bits _slli_epi32>]::<23>([<_mm $bits _sub_epi32>](t_bits, [<_mm $bits _set1_epi32>](ROUND_BITS - 127)));
            [<_mm $bits _mul_ps>](e, [<_mm $bits _castsi $bits _ps>](bits))
        }
    }};
}

#[cfg(test)]
mod tests {
    /// Both widths' `exp_sub_sum` against f64, each where this CPU has its instructions (a
    /// path the CPU lacks is never taken), at lengths around their vector sizes.
    #[test]
    fn exp_sub_sum_matches_f64() {
        if super::super::avx2::available() {
            check_exp_sub_sum(super::super::avx2::exp_sub_sum, &[0, 1, 7, 8, 9, 31, 32, 33, 973, 4000]);
        }
        if super::super::avx512::available() {
            check_exp_sub_sum(super::super::avx512::exp_sub_sum, &[0, 1, 15, 16, 17, 63, 64, 65, 973, 4000]);
        }
    }

    /// Checks an `exp_sub_sum` (either width's; its CPU features already checked by the caller)
    /// against f64 over the softmax range, at each of `lengths`: each value within 3e-7 relative,
    /// the sum within 1e-6, values clamped at −87.3 as the kernels clamp, and nothing written past
    /// the row (the tails are masked).
    fn check_exp_sub_sum(exp_sub_sum: unsafe fn(&mut [f32], f32) -> f32, lengths: &[usize]) {
        for &len in lengths {
            // Values down to −95 (past the clamp at −87.3) and up to the maximum 0.
            let x: Vec<f32> = (0..len).map(|i| -(((i * 7919) % 9500) as f32) * 0.01).collect();
            let m = if len > 0 { 0.0 } else { 1.0 };
            // The row inside a longer buffer: the values after it must stay untouched.
            let mut buffer = x.clone();
            buffer.extend([7.5f32; 16]);
            // SAFETY: the caller checked that this CPU has the kernel's instructions.
            let sum = unsafe { exp_sub_sum(&mut buffer[..len], m) };
            assert!(buffer[len..].iter().all(|v| *v == 7.5), "len {len}: wrote past the row");
            let mut want_sum = 0f64;
            for (got, v) in buffer[..len].iter().zip(&x) {
                let want = ((*v - m).max(-87.336_55) as f64).exp(); // the clamp in f32, as the kernels'
                want_sum += want;
                assert!(((*got as f64) - want).abs() <= 3e-7 * want, "len {len}: exp({v}) = {got}, want {want}");
            }
            assert!((sum as f64 - want_sum).abs() <= 1e-6 * want_sum.max(1.0), "len {len}: sum {sum} vs {want_sum}");
        }
    }
}
