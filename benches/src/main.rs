//! `da3-bench`: loads one model, runs one input size repeatedly and prints one JSON line with
//! the load time, every iteration's latency and CPU time, and the process's resident memory
//! (at start, after loading, peak of loading alone, peak). `benches/compare.py` runs it
//! interleaved with `benches/reference.py` (the same measurement of the reference PyTorch
//! network) and prints the ratios.
//!
//! With `--profile` it also splits each pass into stages, measured by separate passes (each
//! stage synced before its clock stops): the backbone alone, the whole network (backbone +
//! DualDPT/DPT head + CameraDec) and the whole `predict_with` (plus upload, host readback and
//! conversion). `benches/reference.py --profile` reports the same split for the reference.

use std::time::Instant;

use anyhow::{Context, Result};
use burn::tensor::{backend::Backend, Tensor, TensorData};
use clap::Parser;
use da3::{Da3, Da3Config, PredictOptions, Precision, Views};
use da3_cli::device::{dispatch_with, BackendJob, DeviceKind};

/// Command line of `da3-bench`.
#[derive(Debug, Clone, Parser)]
struct Args {
    /// Model config: a preset name or a config JSON file.
    #[arg(long)]
    model: String,
    /// Weights (`model.safetensors` in the Hub layout).
    #[arg(long)]
    weights: std::path::PathBuf,
    /// Number of views per scene.
    #[arg(long, default_value_t = 1)]
    views: usize,
    /// Independent scenes per forward pass (`Da3::predict_batch`, [B, S, 3, H, W]); 1 runs
    /// `predict_with` on one scene.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    batch: u64,
    /// Input size HxW (multiples of 14).
    #[arg(long, default_value = "378x504")]
    size: String,
    /// Timed iterations after one warm-up pass.
    #[arg(long, default_value_t = 3)]
    iters: usize,
    /// CPU threads of the flex/ndarray backends (Rayon's pool); default: RAYON_NUM_THREADS,
    /// else one per core.
    #[arg(long)]
    threads: Option<usize>,
    /// Also time the stages (backbone, network, whole prediction) in extra passes.
    #[arg(long)]
    profile: bool,
    /// Backend.
    #[arg(long, default_value = "flex")]
    device: DeviceKind,
    /// Precision of the backbone's matrix products: auto, fp32, fp16 or bf16 (as the CLI's
    /// `--precision`).
    #[arg(long, default_value = "fp32", value_parser = parse_precision)]
    precision: Precision,
    /// cuda/wgpu: run on the backend without Burn's op fusion (even in a `fusion` build);
    /// compares the fused backend with the unfused one (our attention kernels run on both).
    #[arg(long)]
    unfused: bool,
    /// Turn the per-resolution cache off (positional-embedding interpolation, RoPE tables, UV
    /// embeddings rebuilt on every pass): `benches/size_cache.py` measures what it saves.
    #[arg(long)]
    no_size_cache: bool,
    /// Leave glibc malloc at its defaults instead of `da3_cli::alloc::keep_freed_memory` (what
    /// the `da3` command sets): measures what keeping freed memory saves.
    #[arg(long)]
    default_malloc: bool,
    /// Poses from the ray map (`use_ray_pose`): the network also runs DualDPT's aux branch,
    /// which the default path skips (the reference runs it on every pass and drops its output).
    #[arg(long)]
    ray_pose: bool,
}

/// Whether `main` applied `da3_cli::alloc::keep_freed_memory` (reported in the JSON line).
static MALLOC_TUNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn cuda_memory_mb(device: DeviceKind) -> Option<(f64, f64)> {
    #[cfg(feature = "cuda")]
    if device == DeviceKind::Cuda {
        return da3::schedule::device::cuda_memory(0).map(|(free, total)| (free as f64 / 1048576.0, total as f64 / 1048576.0));
    }
    let _ = device;
    None
}

fn parse_precision(s: &str) -> std::result::Result<Precision, String> {
    Precision::ALL.into_iter().find(|p| p.name() == s).ok_or_else(|| format!("unknown precision `{s}` (auto, fp32, fp16, bf16)"))
}

struct Bench(Args);

impl BackendJob for Bench {
    type Output = serde_json::Value;

    fn run<B: Backend>(self, device: B::Device) -> Result<serde_json::Value> {
        let args = self.0;
        let (h, w) = parse_size(&args.size)?;
        let config = if args.model.ends_with(".json") {
            Da3Config::from_json(&std::fs::read_to_string(&args.model)?)?
        } else {
            Da3Config::preset(&args.model)?
        };
        let rss_start_kb = proc_status_kb("VmRSS");
        let start = Instant::now();
        let model = Da3::<B>::from_file(config, &args.weights, &device)?.with_precision(args.precision)?;
        model.model().set_size_cache_enabled(!args.no_size_cache);
        B::sync(&device).map_err(|e| anyhow::anyhow!("device sync after loading: {e:?}"))?;
        let load_s = start.elapsed().as_secs_f64();
        let rss_loaded_kb = proc_status_kb("VmRSS");
        let peak_loaded_kb = proc_status_kb("VmHWM"); // the peak of loading alone
        // Deterministic, non-constant input (the same formula as reference.py, over all B·S
        // views); a different one per iteration so no backend can reuse a previous result.
        let batch = args.batch as usize;
        let input = |seed: usize| -> std::result::Result<Vec<Views>, da3::Da3Error> {
            let per_scene = args.views * 3 * h * w;
            (0..batch)
                .map(|b| {
                    let data = (b * per_scene..(b + 1) * per_scene)
                        .map(|i| (((i * 7919 + seed * 104_729) % 1000) as f32 / 500.0) - 1.0)
                        .collect();
                    Views::from_normalized(data, args.views, h, w)
                })
                .collect()
        };
        let options = PredictOptions { use_ray_pose: args.ray_pose, ..PredictOptions::default() };
        // Progress on stderr (compare.py reads the JSON line on stdout): on a GPU the warm-up
        // pass compiles and autotunes every kernel, and a run cut by a timeout still says where
        // its time went.
        eprintln!("da3-bench: loaded in {load_s:.2} s");
        let warm = Instant::now();
        predict(&model, &input(0)?, &options)?; // warm-up
        eprintln!("da3-bench: warm-up pass {:.2} s", warm.elapsed().as_secs_f64());
        let (mut times, mut cpu) = (Vec::with_capacity(args.iters), Vec::with_capacity(args.iters));
        for i in 0..args.iters {
            let views = input(i + 1)?;
            let (start, cpu_start) = (Instant::now(), cpu_time_s());
            let predictions = predict(&model, &views, &options)?;
            times.push(start.elapsed().as_secs_f64());
            eprintln!("da3-bench: pass {} {:.4} s", i + 1, times[i]);
            cpu.push(cpu_time_s() - cpu_start);
            anyhow::ensure!(predictions.iter().all(|p| p.depth.iter().all(|d| d.is_finite())), "non-finite depth");
        }
        let profile = if args.profile { Some(profile(&model, &device, &input, args.iters, &options)?) } else { None };
        Ok(serde_json::json!({
            "impl": "da3",
            "device": args.device.to_string(),
            "backend": B::name(&device),
            "unfused": args.unfused,
            "size_cache": !args.no_size_cache,
            "malloc_keeps_freed": MALLOC_TUNED.load(std::sync::atomic::Ordering::Relaxed),
            "precision": args.precision.name(),
            "compute_dtype": format!("{:?}", model.compute_dtype()),
            "model": args.model,
            "views": args.views,
            "batch": batch,
            "ray_pose": args.ray_pose,
            "size": args.size,
            "threads": rayon::current_num_threads(),
            "load_s": load_s,
            "times_s": times,
            "cpu_s": cpu,
            "rss_start_kb": rss_start_kb,
            "rss_loaded_kb": rss_loaded_kb,
            "peak_loaded_kb": peak_loaded_kb,
            "peak_rss_kb": proc_status_kb("VmHWM"),
            // CUDA: the driver's free / total device memory after the timed passes (the
            // scheduler's input; checks da3::schedule::device::cuda_memory on a GPU).
            "cuda_memory_mb": cuda_memory_mb(args.device),
            "profile": profile,
        }))
    }
}

/// One pass over `scenes`: `predict_with` for one scene (what the single-scene rows have always
/// measured), `predict_batch` for several.
fn predict<B: Backend>(model: &Da3<B>, scenes: &[Views], options: &PredictOptions) -> Result<Vec<da3::Prediction>> {
    Ok(match scenes {
        [one] => vec![model.predict_with(one, options)?],
        _ => model.predict_batch(scenes, options)?,
    })
}

/// Per-stage times over `iters` passes each: `backbone_s` (DINOv2 with alternating attention
/// and reference-view selection), `network_s` (backbone + heads + CameraDec, device tensors
/// out) and `predict_s` (`predict_with`: upload, network, readback, conversion to host
/// arrays). The heads are `network - backbone`, the rest `predict - network`.
fn profile<B: Backend>(
    model: &Da3<B>,
    device: &B::Device,
    input: &dyn Fn(usize) -> std::result::Result<Vec<Views>, da3::Da3Error>,
    iters: usize,
    options: &PredictOptions,
) -> Result<serde_json::Value> {
    let sync = || B::sync(device).map_err(|e| anyhow::anyhow!("device sync: {e:?}"));
    let tensor = |scenes: &[Views]| {
        let v = &scenes[0];
        let data: Vec<f32> = scenes.iter().flat_map(|s| s.data().iter().copied()).collect();
        Tensor::<B, 5>::from_data(TensorData::new(data, [scenes.len(), v.count(), 3, v.height(), v.width()]), device)
    };
    let (mut backbone, mut network, mut predict_s) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..iters {
        let views = input(1000 + i)?;
        let images = tensor(&views);
        sync()?;
        let start = Instant::now();
        let features = model.model().backbone().forward(images, options.ref_view_strategy, None, None);
        sync()?;
        backbone.push(start.elapsed().as_secs_f64());
        drop(features);

        let images = tensor(&views);
        sync()?;
        let start = Instant::now();
        let out = model.model().forward(images, options.ref_view_strategy);
        sync()?;
        network.push(start.elapsed().as_secs_f64());
        drop(out);

        let start = Instant::now();
        predict(model, &views, options)?;
        predict_s.push(start.elapsed().as_secs_f64());
    }
    Ok(serde_json::json!({"backbone_s": backbone, "network_s": network, "predict_s": predict_s}))
}

/// `HxW` -> (H, W).
fn parse_size(size: &str) -> Result<(usize, usize)> {
    size.split_once('x')
        .and_then(|(h, w)| Some((h.parse::<usize>().ok()?, w.parse::<usize>().ok()?)))
        .with_context(|| format!("--size must be HxW (e.g. 378x504), got `{size}`"))
}

/// A `/proc/self/status` field in KiB (`VmRSS`, `VmHWM` = peak resident set); 0 where /proc is
/// unavailable.
fn proc_status_kb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| l.strip_prefix(field)?.strip_prefix(':').map(|v| v.trim().trim_end_matches(" kB").trim().parse().ok()))?
        })
        .unwrap_or(0)
}

/// User + system CPU time of the whole process (all threads), in seconds, from
/// `/proc/self/stat` (clock ticks of 1/100 s); 0 where /proc is unavailable.
fn cpu_time_s() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return 0.0 };
    // Fields after the `(comm)`: state is field 3, utime 14, stime 15.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { return 0.0 };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i - 3).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(14) + ticks(15)) / 100.0
}

fn main() -> Result<()> {
    let args = Args::parse();
    let malloc_tuned = !args.default_malloc && da3_cli::alloc::keep_freed_memory();
    MALLOC_TUNED.store(malloc_tuned, std::sync::atomic::Ordering::Relaxed);
    if let Some(n) = args.threads {
        rayon::ThreadPoolBuilder::new().num_threads(n).build_global().context("setting up the thread pool")?;
    }
    let result = dispatch_with(args.device, args.unfused, Bench(args.clone()))?;
    println!("{result}");
    Ok(())
}
