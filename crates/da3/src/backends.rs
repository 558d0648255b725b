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
/// CUDA without Burn's op fusion, whatever the `fusion` feature says, so that benchmarks can
/// compare the fused backend with the unfused one (our kernels run on both; on the fused one
/// as custom fusion ops, see `kernels::attention`).
#[cfg(feature = "cuda")]
pub type CudaUnfused = burn_cubecl::CubeBackend<burn_cubecl::cubecl::cuda::CudaRuntime, f32, i32, u8>;
/// wgpu without Burn's op fusion (see [`CudaUnfused`]); the same type as the engine's backend.
#[cfg(feature = "wgpu")]
pub type WgpuUnfused = burn::backend::wgpu::CubeBackend<burn::backend::wgpu::WgpuRuntime, f32, i32, u32>;
/// wgpu with Burn's op fusion, whatever the `fusion` feature says of [`Wgpu`]: what the
/// tests run our attention kernels' custom fusion op on.
#[cfg(all(feature = "wgpu", feature = "fusion-kernels"))]
pub type WgpuFusion = burn_fusion::Fusion<WgpuUnfused>;
/// CUDA with Burn's op fusion (see [`WgpuFusion`]).
#[cfg(all(feature = "cuda", feature = "fusion-kernels"))]
pub type CudaFusion = burn_fusion::Fusion<CudaUnfused>;
