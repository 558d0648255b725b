//! Backend type aliases selected by cargo features.

/// Pure-Rust CPU backend (also compiles to WASM).
#[cfg(feature = "flex")]
pub type Flex = burn::backend::Flex;
/// ndarray CPU backend.
#[cfg(feature = "ndarray")]
pub type NdArray = burn::backend::NdArray;
/// wgpu backend: Vulkan, Metal, DX12, WebGPU.
#[cfg(feature = "wgpu")]
pub type Wgpu = burn::backend::Wgpu;
/// CUDA backend.
#[cfg(feature = "cuda")]
pub type Cuda = burn::backend::Cuda;
