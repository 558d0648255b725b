//! `attention`: times every softmax-attention path of da3 (our WGSL flash kernel, our CubeCL
//! flash kernel, Burn's `attention` op, matmul-softmax-matmul) at the model's shapes on one
//! device, and prints one table row per (shape, path) with the time relative to Burn's op.
//!
//! ```text
//! cargo run --release -p da3-bench --bin attention -- --device wgpu
//! cargo run --release -p da3-bench --bin attention --no-default-features --features cuda -- --device cuda
//! ```
//! Each measurement: one untimed warm-up call (compilation, autotune), then `--iters` calls on
//! inputs that differ per call, each followed by a device sync; min and median are printed.
//! A path that does not serve the backend (our kernels on flex) prints `n/a`.
//! `--json` prints one JSON line per (shape, path) instead of the table:
//! `benches/attention_compare.py` drives it to time our CPU kernel against the reference's
//! `scaled_dot_product_attention` in the same run.

use std::time::Instant;

use anyhow::Result;
use burn::tensor::{backend::Backend, Distribution, Tensor};
use clap::Parser;
use da3::kernels::attention::{attend_with, default_path, AttentionPath};
use da3_cli::device::{dispatch_with, BackendJob, DeviceKind};

/// Command line of `attention`.
#[derive(Debug, Clone, Parser)]
struct Args {
    /// Backend.
    #[arg(long, default_value = "wgpu")]
    device: DeviceKind,
    /// Timed calls per (shape, path).
    #[arg(long, default_value_t = 3)]
    iters: usize,
    /// Shapes B,H,T,hd separated by spaces (default: the model's attention shapes).
    #[arg(long, num_args = 1.., value_delimiter = ' ')]
    shapes: Vec<String>,
    /// Skip the plain path at shapes whose [B, H, T, T] scores exceed this many MiB.
    #[arg(long, default_value_t = 2048)]
    plain_max_mib: usize,
    /// cuda/wgpu: the backend without Burn's op fusion (as a `fusion` build's would otherwise
    /// be); our kernels run on both, on the fused one as a custom fusion op.
    #[arg(long)]
    unfused: bool,
    /// Only these paths (cpu, wgsl, cube, burn, plain), separated by commas; default: all.
    #[arg(long, value_delimiter = ',')]
    paths: Vec<String>,
    /// One JSON line per (shape, path) that serves the backend, instead of the table.
    #[arg(long)]
    json: bool,
}

/// The model's attention shapes [B, heads, T, hd] (da3-small heads at hd 64).
const DEFAULT_SHAPES: [(&str, [usize; 4]); 6] = [
    ("local, 1 view 504x378", [1, 6, 973, 64]),
    ("local, 4 views", [4, 6, 973, 64]),
    ("global, 4 views", [1, 6, 4 * 973, 64]),
    ("global, 8000 tokens", [1, 6, 8000, 64]),
    ("odd T", [3, 6, 101, 64]),
    ("camera enc (small)", [1, 16, 8, 24]),
];

struct Bench(Args);

impl BackendJob for Bench {
    type Output = ();

    fn run<B: Backend>(self, device: B::Device) -> Result<()> {
        let args = self.0;
        let shapes: Vec<(String, [usize; 4])> = if args.shapes.is_empty() {
            DEFAULT_SHAPES.iter().map(|(n, s)| (n.to_string(), *s)).collect()
        } else {
            args.shapes
                .iter()
                .map(|s| {
                    let d: Vec<usize> = s.split(',').map(|x| x.trim().parse()).collect::<Result<_, _>>()?;
                    let shape: [usize; 4] = d.try_into().map_err(|_| anyhow::anyhow!("a shape is B,H,T,hd: {s}"))?;
                    Ok((s.clone(), shape))
                })
                .collect::<Result<_>>()?
        };
        for wanted in &args.paths {
            if !AttentionPath::ALL.iter().any(|p| p.name() == wanted) {
                anyhow::bail!("--paths: unknown path `{wanted}` (cpu, wgsl, cube, burn, plain)");
            }
        }
        let paths: Vec<AttentionPath> =
            AttentionPath::ALL.into_iter().filter(|p| args.paths.is_empty() || args.paths.iter().any(|w| w == p.name())).collect();
        if !args.json {
            println!("device: {}; default path: {}", args.device, default_path::<B>().name());
            println!("device: {} ({})", args.device, B::name(&device));
            println!("{:<24} {:<18} {:<6} {:>10} {:>10} {:>9} {:>17}", "case", "shape", "path", "min ms", "median ms", "vs burn", "max |err| vs f64");
        }
        for (name, shape) in shapes {
            let mut burn_min = None;
            let mut rows = Vec::new();
            for &path in &paths {
                let [b, h, t, _] = shape;
                if path == AttentionPath::Plain && b * h * t * t * 4 > args.plain_max_mib << 20 {
                    rows.push((path, None));
                    continue;
                }
                let times = time_path::<B>(path, shape, args.iters, &device)?;
                if path == AttentionPath::Burn {
                    burn_min = times.map(|t| t.0);
                }
                let err = if times.is_some() { max_err_vs_exact::<B>(path, shape, &device) } else { None };
                rows.push((path, times.map(|t| (t, err))));
            }
            if args.json {
                for (path, timed) in rows {
                    if let Some(((min, median), err)) = timed {
                        let row = serde_json::json!({
                            "impl": "da3", "path": path.name(), "shape": shape, "min_s": min, "median_s": median,
                            "max_err_vs_f64": err, "threads": rayon::current_num_threads(),
                        });
                        println!("{row}");
                    }
                }
                continue;
            }
            for (path, timed) in rows {
                let times = timed.map(|(t, _)| t);
                let err = match timed.and_then(|(_, e)| e) {
                    Some(e) => format!("{e:.1e}"),
                    None => "-".into(),
                };
                let (min, median) = match times {
                    Some(t) => (format!("{:.2}", t.0 * 1e3), format!("{:.2}", t.1 * 1e3)),
                    None => ("n/a".into(), "n/a".into()),
                };
                let ratio = match (times, burn_min) {
                    (Some(t), Some(burn)) => format!("{:.2}x", t.0 / burn),
                    _ => "-".into(),
                };
                println!("{:<24} {:<18} {:<6} {:>10} {:>10} {:>9} {:>17}", name, format!("{shape:?}"), path.name(), min, median, ratio, err);
            }
        }
        Ok(())
    }
}

/// (min, median) seconds of `path` at `shape`, or `None` when the path does not serve `B`.
fn time_path<B: Backend>(path: AttentionPath, shape: [usize; 4], iters: usize, device: &B::Device) -> Result<Option<(f64, f64)>> {
    // q, k, v as the model lays them out: [B, T, H, hd] viewed as [B, H, T, hd].
    let [b, h, t, hd] = shape;
    let iters = iters.max(1);
    let input = || Tensor::<B, 4>::random([b, t, h, hd], Distribution::Normal(0.0, 1.0), device).swap_dims(1, 2);
    let sync = || B::sync(device).map_err(|e| anyhow::anyhow!("device sync failed: {e:?}"));
    let mut times = Vec::with_capacity(iters);
    for i in 0..=iters {
        let (q, k, v) = (input(), input(), input());
        sync()?;
        let start = Instant::now();
        let Ok(out) = attend_with(path, q, k, v) else { return Ok(None) };
        sync()?;
        let elapsed = start.elapsed().as_secs_f64();
        drop(out);
        if i > 0 {
            times.push(elapsed); // call 0 compiles the kernels (and autotunes Burn's)
        }
    }
    times.sort_by(f64::total_cmp);
    Ok(Some((times[0], times[times.len() / 2])))
}

/// Largest absolute error of `path` against exact attention computed in f64 on the host, over
/// 64 sampled query rows of random inputs (the parity check that goes with each timing; `None`
/// where the path does not serve `B`). Exact rather than against Burn's op: on CUDA both Burn's
/// op and the plain path may run their matrix products in TF32.
fn max_err_vs_exact<B: Backend>(path: AttentionPath, shape: [usize; 4], device: &B::Device) -> Option<f64> {
    let [b, h, t, hd] = shape;
    let input = || Tensor::<B, 4>::random([b, t, h, hd], Distribution::Normal(0.0, 1.0), device).swap_dims(1, 2);
    let (q, k, v) = (input(), input(), input());
    let host = |x: &Tensor<B, 4>| x.clone().into_data().convert::<f32>().into_vec::<f32>().expect("f32 data"); // [B, H, T, hd]
    let (qh, kh, vh) = (host(&q), host(&k), host(&v));
    let ours = host(&attend_with(path, q, k, v).ok()?);
    let scale = 1.0 / (hd as f64).sqrt();
    let mut worst = 0f64;
    for sample in 0..64usize {
        let row = (sample * 7_919 + 13) % (b * h * t); // (b, h, t) flattened
        let head = row / t; // b * H + h
        let qr = &qh[row * hd..(row + 1) * hd];
        let scores: Vec<f64> = (0..t)
            .map(|j| {
                let kr = &kh[(head * t + j) * hd..(head * t + j + 1) * hd];
                qr.iter().zip(kr).map(|(a, b)| *a as f64 * *b as f64).sum::<f64>() * scale
            })
            .collect();
        let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let weights: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
        let total: f64 = weights.iter().sum();
        for d in 0..hd {
            let exact: f64 = (0..t).map(|j| weights[j] * vh[(head * t + j) * hd + d] as f64).sum::<f64>() / total;
            worst = worst.max((ours[row * hd + d] as f64 - exact).abs());
        }
    }
    Some(worst)
}

fn main() -> Result<()> {
    let args = Args::parse();
    dispatch_with(args.device, args.unfused, Bench(args.clone()))
}
