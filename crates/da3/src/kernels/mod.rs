//! da3's own kernels: WGSL sources in `shaders/` and CubeCL kernels for the GPU backends, and
//! multi-threaded, vectorized CPU kernels for Burn's flex backend.

pub mod activation;
pub mod broadcast;
#[cfg(all(test, feature = "flex", not(target_arch = "wasm32")))]
pub(crate) mod test_support;
#[cfg(all(feature = "flex", not(target_arch = "wasm32")))]
pub(crate) mod flex;
#[cfg(all(feature = "flex", not(target_arch = "wasm32")))]
pub(crate) mod rope;
pub mod attention;
#[cfg(all(feature = "flex", not(target_arch = "wasm32")))]
pub(crate) mod conv;
#[cfg(all(feature = "flex", not(target_arch = "wasm32")))]
pub(crate) mod layer_norm;
#[cfg(all(feature = "flex", not(target_arch = "wasm32")))]
pub(crate) mod linear;
#[cfg(all(feature = "flex", not(target_arch = "wasm32")))]
pub(crate) mod resize;

/// `a [m×k] · w [k×n] (+ bias [n])`, row-major and contiguous, on rayon's pool: the CPU
/// matrix product behind every linear layer (and 1×1 convolution) on flex. Public so that
/// `benches/src/bin/gemm.rs` can time it against the reference's BLAS.
///
/// # Panics
/// If the slice lengths do not match `m`, `k`, `n`.
#[cfg(all(feature = "flex", not(target_arch = "wasm32")))]
pub fn cpu_matmul_bias(a: &[f32], w: &[f32], bias: Option<&[f32]>, m: usize, k: usize, n: usize) -> Vec<f32> {
    linear::matmul_bias(a, w, bias, m, k, n)
}

/// Whether `B` runs our CPU kernels, which read strided views directly (so callers may pass
/// views instead of contiguous copies). False on every GPU backend.
pub(crate) fn reads_strided_views<B: burn::tensor::backend::Backend>() -> bool {
    #[cfg(all(feature = "flex", not(target_arch = "wasm32")))]
    if flex::is_flex::<B>() {
        return true;
    }
    false
}
