//! da3's own kernels: WGSL sources in `shaders/` and CubeCL kernels for the GPU backends, and
//! multi-threaded, vectorized CPU kernels for Burn's flex backend.

pub mod activation;
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

/// Whether `B` runs our CPU kernels, which read strided views directly (so callers may pass
/// views instead of contiguous copies). False on every GPU backend.
pub(crate) fn reads_strided_views<B: burn::tensor::backend::Backend>() -> bool {
    #[cfg(all(feature = "flex", not(target_arch = "wasm32")))]
    if flex::is_flex::<B>() {
        return true;
    }
    false
}
