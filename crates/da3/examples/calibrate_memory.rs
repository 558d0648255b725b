//! Measures the peak resident memory of `predict_with` on the flex backend and compares it
//! with the scheduler's analytic activation count (`schedule::memory`), to calibrate
//! `ACTIVATION_CALIBRATION` and `PASS_OVERHEAD_BYTES`. Linux only (reads `/proc/self`).
//!
//! ```text
//! cargo run -p da3 --example calibrate_memory -- [CONFIG.json WEIGHTS.safetensors] [HxW ...] [--views 1,2,4,8]
//! ```
//! Defaults to the tiny test model at 140x140, 280x280 and 280x518. Every case runs in a
//! fresh child process (`--case S HxW`): freed memory stays resident in the allocator, so a
//! second measurement in the same process would read low.

use da3::schedule::device::{peak_rss, process_rss, reset_peak_rss};
use da3::schedule::memory::{ACTIVATION_CALIBRATION, PASS_OVERHEAD_BYTES};
use da3::{Da3, Da3Config, PredictOptions, Views};

type B = da3::backends::Flex;

#[path = "common/calibration.rs"]
mod calibration;

fn main() {
    let args = calibration::Calibration::from_args(&[(140, 140), (280, 280), (280, 518)], &[1, 2, 4, 8]);
    let Some((s, h, w)) = args.case else {
        println!("calibration {ACTIVATION_CALIBRATION}, overhead {} MiB", PASS_OVERHEAD_BYTES >> 20);
        println!(
            "{:>9} {:>3} {:>12} {:>12} {:>7} {:>12} {:>12} {:>7}",
            "HxW", "S", "measured", "analytic", "ratio", "resident", "planned", "m/plan"
        );
        args.run_children(true);
        return;
    };
    let (config, weights) = (&args.config, &args.weights);
    let config = Da3Config::from_json(&std::fs::read_to_string(config).unwrap()).unwrap();
    let device = Default::default();
    let model = Da3::<B>::from_file(config, &weights, &device).unwrap();
    let mm = model.memory_model(h, w);
    let data: Vec<f32> = (0..s * 3 * h * w).map(|i| ((i * 7919) % 255) as f32 / 128.0 - 1.0).collect();
    let views = Views::from_normalized(data, s, h, w).unwrap();
    assert!(reset_peak_rss(), "needs /proc/self/clear_refs (Linux)");
    let before = process_rss().unwrap();
    let pred = model.predict_with(&views, &PredictOptions::default()).unwrap();
    let measured = peak_rss().unwrap().saturating_sub(before);
    drop(pred);
    let analytic = mm.activation_values(s) * mm.dtype_bytes + mm.global_scores_bytes(s);
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    let planned = mm.activation_bytes(s);
    println!(
        "{:>9} {s:>3} {:>8.1} MiB {:>8.1} MiB {:>7.3} {:>8.1} MiB {:>8.1} MiB {:>7.3}",
        format!("{h}x{w}"),
        mib(measured),
        mib(analytic),
        measured as f64 / analytic as f64,
        mib(before),
        mib(planned),
        measured as f64 / planned as f64
    );
}
