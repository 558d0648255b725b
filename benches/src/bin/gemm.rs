//! `gemm`: times da3's CPU matrix product (`da3::kernels::cpu_matmul_bias`, what every linear
//! layer runs on flex) at the model's shapes and prints one JSON line per shape. Driven by
//! `benches/gemm_compare.py`, which times the reference's (PyTorch's BLAS) in the same run.
//!
//! ```text
//! cargo build --release -p da3-bench --no-default-features --features flex
//! RAYON_NUM_THREADS=2 target/release/gemm --shapes 974,384,1152 974,1536,384
//! ```

use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Parser;

/// Command line of `gemm`.
#[derive(Debug, Clone, Parser)]
struct Args {
    /// Products M,K,N (an [M, K] · [K, N] + bias), separated by spaces.
    #[arg(long, num_args = 1.., value_delimiter = ' ', required = true)]
    shapes: Vec<String>,
    /// Timed calls per shape (after one warm-up call).
    #[arg(long, default_value_t = 20)]
    iters: usize,
}

fn parse(shape: &str) -> Result<[usize; 3]> {
    let dims: Vec<usize> = shape.split(',').map(|d| d.trim().parse().context("a dimension")).collect::<Result<_>>()?;
    match dims[..] {
        [m, k, n] if m * k * n > 0 => Ok([m, k, n]),
        _ => bail!("shape `{shape}`: expected M,K,N (positive)"),
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    for shape in &args.shapes {
        let [m, k, n] = parse(shape)?;
        // Deterministic, non-trivial operands (values in [-1, 1)).
        let fill = |len: usize, seed: usize| -> Vec<f32> {
            (0..len).map(|i| ((i * 7919 + seed) % 2003) as f32 / 1001.5 - 1.0).collect()
        };
        let (a, w, bias) = (fill(m * k, 1), fill(k * n, 2), fill(n, 3));
        let mut check = da3::kernels::cpu_matmul_bias(&a, &w, Some(&bias), m, k, n); // warm-up
        let mut times = Vec::with_capacity(args.iters);
        for _ in 0..args.iters {
            let start = Instant::now();
            let out = da3::kernels::cpu_matmul_bias(&a, &w, Some(&bias), m, k, n);
            times.push(start.elapsed().as_secs_f64());
            check = out;
        }
        times.sort_by(f64::total_cmp);
        let (min, median) = (times[0], times[times.len() / 2]);
        println!(
            "{}",
            serde_json::json!({
                "impl": "da3", "shape": [m, k, n], "threads": rayon::current_num_threads(),
                "min_s": min, "median_s": median, "gflops_at_min": 2.0 * (m * k * n) as f64 / min / 1e9,
                "checksum": check.iter().map(|v| *v as f64).sum::<f64>(),
            })
        );
    }
    Ok(())
}
