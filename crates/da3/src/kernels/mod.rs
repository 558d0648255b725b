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
pub(crate) mod resize;
