//! # da3-web — Depth Anything 3 in the browser
//!
//! WASM bindings (wasm-bindgen) around the `da3` library on Burn's wgpu backend, which in a
//! browser runs on WebGPU with WGSL shaders. The page (`web/`) drives it:
//!
//! 1. [`init_webgpu`] once (async adapter/device request; a browser cannot block on it);
//! 2. [`Model::load`] with the config JSON and the weight shards (fp16 or fp32 safetensors,
//!    already sha256-verified by the page, see `web/weights.js`);
//! 3. [`Model::predict_rgba`] (pixels from a canvas) or [`Model::predict_normalized`]
//!    (network-ready floats, used by the golden test), which reads results back with
//!    `into_data_async` (WebGPU has no synchronous readback);
//! 4. [`Output`] hands out depth, confidence, cameras, colourized maps, the 3D scene (points
//!    and camera frustums) and a GLB file, plus the time of each stage.
//!
//! Everything except the async device init and readback is the native library's code.
//!
//! The browser bindings need the `web` feature (default). Without it only the pure parts build
//! ([`merge_shards`]), so their unit tests run natively without compiling Burn:
//! `cargo test --no-default-features --target x86_64-unknown-linux-gnu` (scripts/test-web.sh).

#[cfg(feature = "web")]
mod model;
#[cfg(feature = "web")]
mod output;
mod shards;

#[cfg(feature = "web")]
pub use model::{init_webgpu, start, Backend, Model};
#[cfg(feature = "web")]
pub use output::Output;
pub use shards::merge_shards;
