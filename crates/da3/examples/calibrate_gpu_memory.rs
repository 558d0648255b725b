//! Measures what a pass of `predict_with` takes from a GPU's memory pool (CubeCL's, on wgpu
//! or CUDA) and compares it with the scheduler's plan for that device (`Da3::memory_model`:
//! the heads in chunks of 8 frames, fused attention). CubeCL's memory management is the same
//! code on every wgpu adapter, lavapipe included, so this runs without a GPU; only the page
//! sizes follow the adapter (lavapipe: 128 MiB pages at most; a Vulkan GPU: a quarter of its
//! memory heap).
//!
//! ```text
//! cargo run --release -p da3 --features wgpu --example calibrate_gpu_memory -- \
//!     [CONFIG.json WEIGHTS.safetensors] [HxW ...] [--views 1,2,4]
//! ```
//! `DA3_DEVICE=cuda` measures CUDA instead (a build with the `cuda` feature). Defaults to the
//! tiny test model at 140x140 and 280x280. Each case runs in a fresh child process: one
//! warm-up pass (the size caches, kernel compilation, and autotuning in builds with the
//! `autotune` feature; skipped with `DA3_NO_WARMUP=1`), then a measured pass while a
//! thread samples the pool (`ComputeClient::memory_usage` on the predicting thread's
//! stream) every millisecond. Printed per case:
//! - `in use`: the peak bytes of live tensors above those before the pass, against the
//!   planned activations (a lower bound: a sampler starved of CPU misses short peaks);
//! - `reserved`: the pool's peak reservation (pages, so padding and freed-but-kept memory
//!   too: what the device must provide), against weights + plan, the planner's estimate;
//! - `res. before`: the reservation before the measured pass (the weights, and what the
//!   warm-up left reserved).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use burn::backend::wgpu::WgpuRuntime;
use burn::tensor::backend::Backend;
use burn_cubecl::cubecl::Runtime;
use da3::{Da3, Da3Config, PredictOptions, Views};

#[path = "common/calibration.rs"]
mod calibration;

fn main() {
    let args = calibration::Calibration::from_args(&[(140, 140), (280, 280)], &[1, 2, 4]);
    let Some((views, h, w)) = args.case else {
        println!(
            "{:>9} {:>3} {:>11} {:>11} {:>7} {:>11} {:>11} {:>11} {:>11} {:>7}",
            "HxW", "S", "in use", "planned", "ratio", "weights", "res. before", "reserved", "w+plan", "ratio"
        );
        args.run_children(false);
        return;
    };
    let device = std::env::var("DA3_DEVICE").unwrap_or_else(|_| "wgpu".into());
    match device.as_str() {
        "wgpu" => measure::<da3::backends::Wgpu, WgpuRuntime>(&args, views, h, w, Default::default()),
        #[cfg(feature = "cuda")]
        "cuda" => measure::<da3::backends::Cuda, burn_cubecl::cubecl::cuda::CudaRuntime>(&args, views, h, w, Default::default()),
        other => panic!("DA3_DEVICE={other}: wgpu, or cuda in a build with the `cuda` feature"),
    }
}

/// Measures one case on backend `B`, whose device is runtime `R`'s.
fn measure<B: Backend, R: Runtime<Device = B::Device>>(args: &calibration::Calibration, views: usize, h: usize, w: usize, device: B::Device) {
    let size = format!("{h}x{w}");
    let config = Da3Config::from_json(&std::fs::read_to_string(&args.config).unwrap()).unwrap();
    let model = Da3::<B>::from_file(config, &args.weights, &device).unwrap();
    let mm = model.memory_model(h, w);
    let data: Vec<f32> = (0..views * 3 * h * w).map(|i| ((i * 7919) % 255) as f32 / 128.0 - 1.0).collect();
    let input = Views::from_normalized(data, views, h, w).unwrap();
    let options = PredictOptions::default();
    // Warm-up (size caches, kernels; autotune where built with it) unless `DA3_NO_WARMUP` is
    // set: then the measured pass is the process's first, as a server's or the CLI's first
    // chunk is.
    if std::env::var_os("DA3_NO_WARMUP").is_none() {
        drop(model.predict_with(&input, &options).unwrap());
    }

    let client = R::client(&device);
    let before = client.memory_usage().unwrap();
    let (peak_in_use, peak_reserved) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let done = Arc::new(AtomicBool::new(false));
    // CubeCL keeps memory pools per stream, and a stream per thread: the sampler reads this
    // thread's.
    let stream = burn_cubecl::cubecl::stream_id::StreamId::current();
    let sampler = {
        let (mut client, done) = (client.clone(), done.clone());
        // SAFETY: the sampler only queries memory usage on that stream; it submits no work.
        unsafe { client.set_stream(stream) };
        let (in_use, reserved) = (peak_in_use.clone(), peak_reserved.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Acquire) {
                if let Ok(u) = client.memory_usage() {
                    in_use.fetch_max(u.bytes_in_use, Ordering::Relaxed);
                    reserved.fetch_max(u.bytes_reserved, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    let prediction = model.predict_with(&input, &options).unwrap();
    done.store(true, Ordering::Release);
    sampler.join().unwrap();
    drop(prediction);

    let mib = |b: u64| format!("{:.1} MiB", b as f64 / (1 << 20) as f64);
    let in_use = peak_in_use.load(Ordering::Relaxed).saturating_sub(before.bytes_in_use);
    let planned = mm.activation_bytes(views);
    let reserved = peak_reserved.load(Ordering::Relaxed);
    println!(
        "{:>9} {views:>3} {:>11} {:>11} {:>7.3} {:>11} {:>11} {:>11} {:>11} {:>7.3}",
        size,
        mib(in_use),
        mib(planned),
        in_use as f64 / planned as f64,
        mib(mm.weights),
        mib(before.bytes_reserved),
        mib(reserved),
        mib(mm.weights + planned),
        reserved as f64 / (mm.weights + planned) as f64
    );
}
