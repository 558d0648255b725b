//! # da3 — Depth Anything 3 in Burn
//!
//! One definition of the Depth Anything 3 network (any-view depth, confidence and camera
//! pose) as Burn modules, generic over the backend: `flex`/`ndarray` on the CPU, `wgpu`
//! (Vulkan, Metal, DX12, WebGPU) and `cuda`.
//!
//! Layout: [`config`] (presets and arbitrary sizes), [`weights`] (checkpoint loading with
//! complete error reports), [`nn`] (basic layers), [`backbone`] (DINOv2 with alternating
//! attention), [`head`] (DualDPT), [`camera`] (CameraDec and pose decoding), [`model`] (the
//! network), [`api`] (load + predict on plain arrays).

pub mod align;
pub mod api;
pub mod backbone;
pub mod backends;
pub mod camera;
pub mod camera_enc;
pub mod config;
// Native only: a browser page has no engine device to share (crates/da3-web is the browser API).
#[cfg(all(feature = "wgpu", not(target_arch = "wasm32")))]
pub mod engine;
pub mod error;
pub mod gaussians;
#[cfg(feature = "image")]
pub mod image_api;
pub mod head;
// Where CubeCL has its file caches (its `std_io` platforms); not in a browser.
#[cfg(all(
    any(feature = "wgpu", feature = "cuda"),
    any(target_os = "linux", target_os = "windows", target_os = "macos", target_os = "android")
))]
pub mod kernel_cache;
pub mod kernels;
pub mod linalg;
pub mod model;
pub mod nested;
pub mod nn;
pub mod precision;
pub mod preprocess;
pub mod readback;
pub mod ray_pose;
pub mod rng;
pub mod schedule;
pub mod size_cache;
pub mod sky;
pub mod weights;

pub use api::{Da3, FeatureLayer, InputCameras, PredictOptions, Prediction, Views};
pub use config::Da3Config;
pub use error::{Da3Error, WeightProblem, WeightsError};
pub use gaussians::Gaussians;
pub use precision::Precision;
pub use model::{Da3Model, Da3Output, Da3Trace, Outputs, RayMap, RefViewStrategy};
