//! `da3-bench`: loads one model, runs one input size repeatedly and prints one JSON line with
//! the load time, every iteration's latency and the peak resident memory. `benches/compare.py`
//! runs it interleaved with `benches/reference.py` (the same measurement of the reference
//! PyTorch network) and prints the ratios.

use std::time::Instant;

use anyhow::{Context, Result};
use burn::tensor::backend::Backend;
use clap::Parser;
use da3::{Da3, Da3Config, PredictOptions, Views};
use da3_cli::device::{dispatch, BackendJob, DeviceKind};

/// Command line of `da3-bench`.
#[derive(Debug, Clone, Parser)]
struct Args {
    /// Model config: a preset name or a config JSON file.
    #[arg(long)]
    model: String,
    /// Weights (`model.safetensors` in the Hub layout).
    #[arg(long)]
    weights: std::path::PathBuf,
    /// Number of views per forward pass.
    #[arg(long, default_value_t = 1)]
    views: usize,
    /// Input size HxW (multiples of 14).
    #[arg(long, default_value = "378x504")]
    size: String,
    /// Timed iterations after one warm-up pass.
    #[arg(long, default_value_t = 3)]
    iters: usize,
    /// Backend.
    #[arg(long, default_value = "flex")]
    device: DeviceKind,
}

struct Bench(Args);

impl BackendJob for Bench {
    type Output = serde_json::Value;

    fn run<B: Backend>(self, device: B::Device) -> Result<serde_json::Value> {
        let args = self.0;
        let (h, w) = args
            .size
            .split_once('x')
            .and_then(|(h, w)| Some((h.parse::<usize>().ok()?, w.parse::<usize>().ok()?)))
            .context("--size must be HxW")?;
        let config = if args.model.ends_with(".json") {
            Da3Config::from_json(&std::fs::read_to_string(&args.model)?)?
        } else {
            Da3Config::preset(&args.model)?
        };
        let start = Instant::now();
        let model = Da3::<B>::from_file(config, &args.weights, &device)?;
        let load_s = start.elapsed().as_secs_f64();
        // Deterministic, non-constant input; a different one per iteration so no backend can
        // reuse a previous result.
        let input = |seed: usize| {
            let data = (0..args.views * 3 * h * w).map(|i| (((i * 7919 + seed * 104_729) % 1000) as f32 / 500.0) - 1.0).collect();
            Views::from_normalized(data, args.views, h, w)
        };
        model.predict_with(&input(0)?, &PredictOptions::default())?; // warm-up
        let mut times = Vec::with_capacity(args.iters);
        for i in 0..args.iters {
            let views = input(i + 1)?;
            let start = Instant::now();
            let prediction = model.predict_with(&views, &PredictOptions::default())?;
            times.push(start.elapsed().as_secs_f64());
            anyhow::ensure!(prediction.depth.iter().all(|d| d.is_finite()), "non-finite depth");
        }
        Ok(serde_json::json!({
            "impl": "da3",
            "device": args.device.to_string(),
            "load_s": load_s,
            "times_s": times,
            "peak_rss_kb": peak_rss_kb(),
        }))
    }
}

/// The process's peak resident set (`VmHWM`), in KiB; 0 where /proc is unavailable.
fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("VmHWM:").map(|v| v.trim().trim_end_matches(" kB").trim().parse().ok()))?)
        .unwrap_or(0)
}

fn main() -> Result<()> {
    let args = Args::parse();
    let result = dispatch(args.device, Bench(args.clone()))?;
    println!("{result}");
    Ok(())
}
