//! `conv`: times da3's CPU 3×3 convolutions (`da3::kernels::CpuConv3x3`: Winograd F(4×4, 3×3),
//! what the DPT heads run on flex, and the shifted-GEMM path it replaced) at the heads' shapes
//! and prints one JSON line per shape and algorithm. Driven by `benches/conv_compare.py`, which
//! times the reference's convolution (PyTorch's `conv2d`, oneDNN on x86) in the same run.
//!
//! ```text
//! cargo build --release -p da3-bench --no-default-features --features flex
//! RAYON_NUM_THREADS=2 target/release/conv --shapes 64,64,108,144 32,32,378,504
//! ```

use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Parser;
use da3::kernels::{Conv3x3Algorithm, CpuConv3x3};

/// Command line of `conv`.
#[derive(Debug, Clone, Parser)]
struct Args {
    /// Convolutions C_in,C_out,H,W (one image, 3×3, stride 1, padding 1), separated by spaces.
    #[arg(long, num_args = 1.., value_delimiter = ' ', required = true)]
    shapes: Vec<String>,
    /// Timed calls per shape and algorithm (after one warm-up call).
    #[arg(long, default_value_t = 10)]
    iters: usize,
    /// Time only this algorithm (`winograd` or `shifted_gemm`; for profiling one of them).
    #[arg(long)]
    only: Option<String>,
}

fn parse(shape: &str) -> Result<[usize; 4]> {
    let dims: Vec<usize> = shape.split(',').map(|d| d.trim().parse().context("a dimension")).collect::<Result<_>>()?;
    match dims[..] {
        [ci, co, h, w] if ci * co * h * w > 0 => Ok([ci, co, h, w]),
        _ => bail!("shape `{shape}`: expected C_in,C_out,H,W (positive)"),
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    for shape in &args.shapes {
        let [ci, co, h, w] = parse(shape)?;
        // Deterministic, non-trivial operands (values in [-1, 1)), as conv_compare.py builds them.
        let fill = |len: usize, seed: usize| -> Vec<f32> {
            (0..len).map(|i| ((i * 7919 + seed) % 2003) as f32 / 1001.5 - 1.0).collect()
        };
        let (x, wt, bias) = (fill(ci * h * w, 1), fill(co * ci * 9, 2), fill(co, 3));
        // Prepared once, as the model's layers are (Winograd's filter transform not timed).
        let layer = CpuConv3x3::new(&wt, Some(&bias), ci, co);
        for (name, algorithm) in [("winograd", Conv3x3Algorithm::Winograd), ("shifted_gemm", Conv3x3Algorithm::ShiftedGemm)] {
            if args.only.as_deref().is_some_and(|only| only != name) {
                continue;
            }
            let run = || layer.run(&x, [1, h, w], algorithm);
            let mut check = run(); // warm-up
            let mut times = Vec::with_capacity(args.iters);
            for _ in 0..args.iters {
                let start = Instant::now();
                let out = run();
                times.push(start.elapsed().as_secs_f64());
                check = out;
            }
            times.sort_by(f64::total_cmp);
            println!(
                "{}",
                serde_json::json!({
                    "impl": format!("da3_{name}"), "shape": [ci, co, h, w], "threads": rayon::current_num_threads(),
                    "min_s": times[0], "median_s": times[times.len() / 2],
                    "checksum": check.iter().map(|v| *v as f64).sum::<f64>(),
                })
            );
        }
    }
    Ok(())
}
