//! Precision modes against the fp32 goldens of the reference: each reduced mode must stay
//! within a tolerance that fits its format, and must really have run reduced (the backbone's
//! weights are in that format, and the error is well above fp32's), so a mode that silently
//! fell back to fp32 fails.

mod common;

use burn::tensor::backend::Backend;
use burn::tensor::{DType, FloatDType};
use common::{fixtures, rel_l2, values, Golden};
use da3::precision::Precision;
use da3::{Da3, Da3Config, RefViewStrategy};

/// Relative L2 error allowed for fp16 (10-bit mantissa: ~5e-4 per rounding, a few layers deep).
const FP16_TOL: f64 = 5e-3;
/// Relative L2 error allowed for bf16 (7-bit mantissa: 8× fp16's rounding).
const BF16_TOL: f64 = 4e-2;
/// A reduced mode must be at least this much worse than fp32 on some output, or it did not
/// really run reduced.
const MIN_DEGRADATION: f64 = 10.0;

/// Loads `config` from the fixtures on `device` in `precision`.
fn load<B: Backend>(dir: &std::path::Path, config: &str, precision: Precision, device: &B::Device) -> Result<Da3<B>, da3::Da3Error> {
    let cfg = Da3Config::from_json(&std::fs::read_to_string(dir.join(format!("{config}.config.json"))).unwrap()).unwrap();
    let bytes = std::fs::read(dir.join(format!("{config}.weights.safetensors"))).unwrap();
    Da3::<B>::from_bytes(cfg, &bytes, config, device)?.with_precision(precision)
}

/// Relative L2 errors of every output of `case` against its golden, in `precision`.
fn errors<B: Backend>(dir: &std::path::Path, case: &str, precision: Precision, device: &B::Device) -> Vec<(String, f64)> {
    let golden = Golden::read(dir, case);
    let config = &golden.metadata["config"];
    let strategy: RefViewStrategy = golden.metadata["strategy"].parse().unwrap();
    let model = load::<B>(dir, config, precision, device).unwrap();
    let expected_dtype = precision.resolve::<B>(device).unwrap();
    assert_eq!(model.compute_dtype(), expected_dtype);
    assert_eq!(model.model().compute_dtype(), DType::from(expected_dtype), "{case}: the backbone weights are not in {precision}");
    let out = model.model().forward_traced(golden.tensor::<B, 5>("images", device), strategy, None, None);
    let mut outputs = vec![("depth", values(out.depth))];
    if let Some(c) = out.cameras {
        let rays = c.rays.expect("forward_traced computes the rays");
        outputs.extend([("depth_conf", values(c.depth_conf)), ("ray", values(rays.ray)), ("pose_enc", values(c.pose_enc))]);
    }
    if let Some(sky) = out.sky {
        outputs.push(("sky", values(sky)));
    }
    outputs
        .into_iter()
        .map(|(name, (ours, shape))| {
            let (reference, ref_shape) = golden.get(name);
            assert_eq!(&shape, ref_shape, "{case} {name}");
            assert!(ours.iter().all(|v| v.is_finite()), "{case} {name} in {precision}: non-finite values");
            (name.to_string(), rel_l2(&ours, reference))
        })
        .collect()
}

/// Checks `precision` on the tiny goldens: within `tol` everywhere, and clearly worse than
/// fp32 somewhere.
fn check_mode<B: Backend>(precision: Precision, tol: f64, cases: &[&str], device: &B::Device) {
    let dir = fixtures();
    let mut failures = Vec::new();
    for case in cases {
        let fp32 = errors::<B>(&dir, case, Precision::Fp32, device);
        let reduced = errors::<B>(&dir, case, precision, device);
        let mut worst_ratio = 0f64;
        for ((name, e32), (_, e)) in fp32.iter().zip(&reduced) {
            println!("{} {case} {name}: {precision} {e:.2e} (fp32 {e32:.2e})", B::name(device));
            if *e > tol {
                failures.push(format!("{case} {name}: {precision} relative error {e:.2e} > {tol:.0e}"));
            }
            worst_ratio = worst_ratio.max(e / e32.max(1e-12));
        }
        if worst_ratio < MIN_DEGRADATION {
            failures.push(format!("{case}: {precision} is at most {worst_ratio:.1}x fp32's error: did it run in fp32?"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

const CASES: [&str; 3] = ["tiny_s2", "swiglu_s3", "mono_s1"];

#[cfg(feature = "flex")]
mod flex {
    use super::*;
    use da3::backends::Flex;

    #[test]
    fn fp16_matches_fp32_goldens_within_half_precision() {
        check_mode::<Flex>(Precision::Fp16, FP16_TOL, &CASES, &Default::default());
    }

    #[test]
    fn bf16_matches_fp32_goldens_within_bfloat_precision() {
        check_mode::<Flex>(Precision::Bf16, BF16_TOL, &CASES, &Default::default());
    }

    #[test]
    fn auto_is_fp32_on_the_cpu_and_bit_identical_to_it() {
        let dir = fixtures();
        let golden = Golden::read(&dir, "tiny_s2");
        let device = Default::default();
        let run = |p: Precision| {
            let model = load::<Flex>(&dir, "tiny", p, &device).unwrap();
            assert_eq!(model.compute_dtype(), FloatDType::F32);
            values(model.model().forward(golden.tensor::<Flex, 5>("images", &device), RefViewStrategy::SaddleBalanced).depth).0
        };
        assert!(run(Precision::Auto) == run(Precision::Fp32));
    }

    /// Real-size da3-small (random weights at true widths) against its fp32 reference golden.
    /// `DA3_REAL_GOLDENS=~/.cache/da3-real-goldens cargo test ... --test precision -- --ignored --nocapture`
    #[test]
    #[ignore = "needs the real-size fixtures in DA3_REAL_GOLDENS (tools/golden/real_parity.sh)"]
    fn real_size_da3_small_per_mode() {
        let dir = std::path::PathBuf::from(std::env::var("DA3_REAL_GOLDENS").expect("DA3_REAL_GOLDENS"));
        let device = Default::default();
        for (p, tol) in [(Precision::Fp32, 1e-4), (Precision::Fp16, FP16_TOL), (Precision::Bf16, BF16_TOL)] {
            let t = std::time::Instant::now();
            for (name, e) in errors::<Flex>(&dir, "da3-small_s2_280x378", p, &device) {
                println!("da3-small s2 280x378 {name}: {p} {e:.2e}");
                assert!(e <= tol, "{name}: {p} {e:.2e} > {tol:.0e}");
            }
            println!("{p}: {:.1} s", t.elapsed().as_secs_f64());
        }
    }
}

#[cfg(feature = "wgpu")]
mod wgpu {
    use super::*;
    use da3::backends::Wgpu;

    /// fp16 runs where the adapter has `shader-f16`, and is refused with a clear error where
    /// it has not; bf16 (no WGSL type) is refused with a clear error unless supported.
    #[test]
    fn half_modes_run_or_are_refused_clearly() {
        let device = Default::default();
        for (p, dtype, tol) in [(Precision::Fp16, DType::F16, FP16_TOL), (Precision::Bf16, DType::BF16, BF16_TOL)] {
            let supported = <Wgpu as Backend>::supports_dtype(&device, dtype);
            println!("wgpu adapter {}: {p} supported: {supported}", <Wgpu as Backend>::name(&device));
            if supported {
                check_mode::<Wgpu>(p, tol, &["tiny_s2"], &device);
            } else {
                let e = load::<Wgpu>(&fixtures(), "tiny", p, &device).unwrap_err().to_string();
                assert!(e.contains(p.name()) && e.contains("fp32"), "{e}");
            }
        }
        let auto = Precision::Auto.resolve::<Wgpu>(&device).unwrap();
        println!("wgpu auto: {auto:?}");
    }
}

/// Every mode on CUDA (built and run only on a GPU machine: `tools/bench/gpu_session.sh`).
#[cfg(feature = "cuda")]
mod cuda {
    use super::*;
    use da3::backends::Cuda;

    #[test]
    fn fp16_matches_fp32_goldens_within_half_precision() {
        check_mode::<Cuda>(Precision::Fp16, FP16_TOL, &CASES, &Default::default());
    }

    #[test]
    fn bf16_matches_fp32_goldens_within_bfloat_precision() {
        check_mode::<Cuda>(Precision::Bf16, BF16_TOL, &CASES, &Default::default());
    }

    /// `auto` on a GPU with tensor-core bf16 (every CUDA GPU since Ampere) is bf16.
    #[test]
    fn auto_resolves_to_a_half_format_on_cuda() {
        let resolved = Precision::Auto.resolve::<Cuda>(&Default::default()).unwrap();
        println!("auto on {}: {resolved:?}", <Cuda as Backend>::name(&Default::default()));
        assert_ne!(resolved, FloatDType::F32, "auto stayed fp32 on a CUDA GPU");
    }

    /// Real-size da3-small and da3-base per mode against their fp32 reference goldens.
    #[test]
    #[ignore = "needs a CUDA GPU and the real-size fixtures in DA3_REAL_GOLDENS"]
    fn real_size_per_mode() {
        let dir = std::path::PathBuf::from(std::env::var("DA3_REAL_GOLDENS").expect("DA3_REAL_GOLDENS"));
        let device = Default::default();
        for case in ["da3-small_s2_280x378", "da3-base_s2_280x378"] {
            if !dir.join(format!("{case}.golden.safetensors")).exists() {
                continue;
            }
            for (p, tol) in [(Precision::Fp32, 1e-4), (Precision::Fp16, FP16_TOL), (Precision::Bf16, BF16_TOL)] {
                for (name, e) in errors::<Cuda>(&dir, case, p, &device) {
                    println!("cuda {case} {name}: {p} {e:.2e}");
                    assert!(e <= tol, "{case} {name}: {p} {e:.2e} > {tol:.0e}");
                }
            }
        }
    }
}
