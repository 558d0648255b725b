//! Stage-by-stage parity with the reference PyTorch network (fixtures made by
//! `tools/golden/generate.py` from `depth-anything-3==0.1.1` with random weights).
//!
//! Every stage must be within a relative L2 error of 1e-4 in fp32: tight enough that a wrong
//! LayerNorm eps, RoPE layout or pos-embed interpolation fails (each of those moves the error
//! to 1e-3 or more).

mod common;

use burn::tensor::backend::Backend;
use common::{compare, fixtures, load_model, values, Golden};
use da3::camera_enc::{normalize_extrinsics, Mat4, ViewCameras};
use da3::{Da3Trace, Outputs, RefViewStrategy};

/// fp32 tolerance on the relative L2 error of every stage.
const TOL: f64 = 1e-4;

/// Runs one golden case on backend `B` and checks every captured stage.
pub fn check_case<B: Backend>(dir: &std::path::Path, case: &str, device: &B::Device) {
    let golden = Golden::read(dir, case);
    let config = golden.metadata["config"].clone();
    let strategy: RefViewStrategy = golden.metadata["strategy"].parse().unwrap();
    let model = load_model::<B>(dir, &config, device);
    let mut trace = Da3Trace::default();
    let mut failures = Vec::new();
    let mut report = Vec::new();
    // Pose-conditioned cases: normalize the user's cameras ourselves (checked against the
    // reference API's normalization) and run the network on them.
    let cameras = golden.has("cameras.world_to_camera").then(|| {
        let raw: Vec<Mat4> = matrices(&golden.get("cameras.world_to_camera").0);
        let normalized = normalize_extrinsics(&raw);
        let flat: Vec<f32> = normalized.iter().flatten().flatten().map(|v| *v as f32).collect();
        let shape = golden.get("cameras.normalized").1.clone();
        let err = compare("cameras.normalized", (flat, shape), golden.get("cameras.normalized"), TOL, &mut failures);
        report.push(format!("cameras.normalized={err:.1e}"));
        ViewCameras { world_to_camera: normalized, intrinsics: matrices(&golden.get("cameras.intrinsics").0) }
    });
    let out = model.forward_traced(golden.tensor::<B, 5>("images", device), strategy, cameras.as_ref(), Some(&mut trace));

    let mut check = |stage: &str, ours: (Vec<f32>, Vec<usize>), tol: f64| {
        let err = compare(stage, ours, golden.get(stage), tol, &mut failures);
        report.push(format!("{stage}={err:.1e}"));
    };
    if let Some(condition) = trace.camera_condition.clone() {
        check("cam_enc", values(condition), TOL);
    }
    check("tokens", values(trace.backbone.tokens.clone().unwrap()), TOL);
    for (i, block) in trace.backbone.blocks.iter().enumerate() {
        check(&format!("block.{i}"), values(block.clone()), TOL);
    }
    for k in 0..4 {
        check(&format!("feat.{k}"), values(trace.features[k].clone()), TOL);
        check(&format!("cam_token.{k}"), values(trace.camera_tokens[k].clone()), TOL);
    }
    check("depth", values(out.depth.clone()), TOL);
    match (out.cameras, out.sky) {
        (Some(cams), None) => {
            check("depth_conf", values(cams.depth_conf), TOL);
            let rays = cams.rays.expect("forward_traced computes the rays");
            check("ray", values(rays.ray), TOL);
            check("ray_conf", values(rays.conf), TOL);
            check("pose_enc", values(cams.pose_enc), TOL);
            check("extrinsics", values(cams.extrinsics), TOL);
            check("intrinsics", values(cams.intrinsics), TOL);
        }
        (None, Some(sky)) => {
            let sky = values(sky);
            check("sky", sky.clone(), TOL);
            // The network's sky post-processing: every non-sky pixel is used (< 100k), so the
            // filled depth must match the reference's forward() output.
            let (mut depth, shape) = values(out.depth);
            da3::sky::fill_sky_depth(&mut depth, &sky.0, da3::sky::DEFAULT_SKY_SEED).expect("both classes present");
            check("depth_sky_filled", (depth, shape), TOL);
        }
        _ => panic!("a model predicts either cameras or sky"),
    }
    // The default outputs (no rays, `Outputs::rays` off, as `forward` and `predict` without
    // `use_ray_pose` run) skip DualDPT's aux branch and must change nothing else.
    let plain = model.forward_full(golden.tensor::<B, 5>("images", device), strategy, cameras.as_ref(), Outputs::default(), None);
    check("depth", values(plain.depth), TOL);
    let mut stray_rays = false;
    if let Some(cams) = plain.cameras {
        stray_rays = cams.rays.is_some();
        check("depth_conf", values(cams.depth_conf), TOL);
        check("pose_enc", values(cams.pose_enc), TOL);
    }
    if stray_rays {
        failures.push("rays: computed although not asked for".into());
    }
    if golden.has("ref_index") {
        let ours = values(trace.backbone.ref_index.clone().expect("reference view selected").float());
        if ours.0 != golden.get("ref_index").0 {
            failures.push(format!("ref_index: ours {:?}, reference {:?}", ours.0, golden.get("ref_index").0));
        }
    } else if trace.backbone.ref_index.is_some() {
        failures.push("ref_index: selection ran but the reference did not select".into());
    }
    println!("{case}: {}", report.join(" "));
    assert!(failures.is_empty(), "{case}: {} stage(s) off:\n{}", failures.len(), failures.join("\n"));
}

/// Row-major N×N matrices from flat f32 values.
fn matrices<const N: usize>(flat: &[f32]) -> Vec<[[f64; N]; N]> {
    flat.chunks_exact(N * N).map(|m| std::array::from_fn(|r| std::array::from_fn(|c| m[r * N + c] as f64))).collect()
}


/// Tolerance of the positional-embedding check: fp32 summation noise is ~2e-6, while resizing
/// "to size" instead of by the +0.1 scale factor is off by ~1e-1.
const POS_EMBED_TOL: f64 = 1e-5;

/// Checks the interpolated positional embedding at several sizes, including the 518×518
/// special case where the reference uses the raw table.
pub fn check_pos_embed<B: Backend>(dir: &std::path::Path, device: &B::Device) {
    let golden = Golden::read(dir, "tiny_pos_embed");
    let model = load_model::<B>(dir, "tiny", device);
    let mut failures = Vec::new();
    for (h, w) in [(518, 518), (504, 378), (42, 56), (14, 14)] {
        let stage = format!("pos_embed.{h}x{w}");
        let ours = values(model.backbone().pos_embed_for(h / 14, w / 14));
        let err = compare(&stage, ours, golden.get(&stage), POS_EMBED_TOL, &mut failures);
        println!("{stage}: {err:.1e}");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

macro_rules! golden_tests {
    ($backend:ty, $device:expr, [$($case:ident),* $(,)?]) => {
        $(
            #[test]
            fn $case() {
                super::check_case::<$backend>(&super::fixtures(), stringify!($case), &$device);
            }
        )*
        #[test]
        fn pos_embed() {
            super::check_pos_embed::<$backend>(&super::fixtures(), &$device);
        }
    };
}

#[cfg(feature = "flex")]
mod flex {
    golden_tests!(da3::backends::Flex, Default::default(), [
        tiny_s1, tiny_s2, tiny_s4_saddle_balanced, tiny_s3_saddle_sim_range, tiny_s3_middle,
        tiny_s3_first, swiglu_s3, swiglu_s2, tiny_s3_posed, swiglu_s4_posed, mono_s1, mono_s3,
        tiny_b2_s3, swiglu_b3_s4, mono_b2_s2,
    ]);
}

#[cfg(feature = "wgpu")]
mod wgpu {
    golden_tests!(da3::backends::Wgpu, burn::backend::wgpu::WgpuDevice::default(), [
        tiny_s1, tiny_s2, tiny_s4_saddle_balanced, tiny_s3_saddle_sim_range, tiny_s3_middle,
        tiny_s3_first, swiglu_s3, swiglu_s2, tiny_s3_posed, swiglu_s4_posed, mono_s1, mono_s3,
        tiny_b2_s3, swiglu_b3_s4, mono_b2_s2,
    ]);
}

/// The model through Burn's op fusion on wgpu (what `--features fusion` builds run): every op
/// recorded lazily and fused where Burn can, our attention kernel as a custom fusion op.
#[cfg(all(feature = "wgpu", feature = "fusion-kernels"))]
mod wgpu_fusion {
    golden_tests!(da3::backends::WgpuFusion, burn::backend::wgpu::WgpuDevice::default(), [
        tiny_s1, tiny_s2, tiny_s4_saddle_balanced, tiny_s3_saddle_sim_range, tiny_s3_middle,
        tiny_s3_first, swiglu_s3, swiglu_s2, tiny_s3_posed, swiglu_s4_posed, mono_s1, mono_s3,
        tiny_b2_s3, swiglu_b3_s4, mono_b2_s2,
    ]);
}

/// Real-size parity (da3-small, da3-base at their true widths): the fixtures are hundreds of
/// MB, so they are generated outside git by `tools/golden/real_parity.sh`, which runs this.
#[cfg(feature = "flex")]
#[test]
#[ignore = "needs real-size fixtures: run tools/golden/real_parity.sh"]
fn real_size_parity() {
    real_size_parity_on::<da3::backends::Flex>(&Default::default());
}

/// The same on CUDA (the GPU machine: `tools/bench/gpu_session.sh`).
#[cfg(feature = "cuda")]
#[test]
#[ignore = "needs a CUDA GPU and real-size fixtures in DA3_REAL_GOLDENS"]
fn real_size_parity_cuda() {
    real_size_parity_on::<da3::backends::Cuda>(&Default::default());
}

/// Every `*.golden.safetensors` case in `DA3_REAL_GOLDENS` on backend `B`.
#[allow(dead_code)] // unused in a build with neither flex nor cuda
fn real_size_parity_on<B: Backend>(device: &B::Device) {
    let dir = std::path::PathBuf::from(std::env::var("DA3_REAL_GOLDENS").expect("DA3_REAL_GOLDENS = the generator's --out dir"));
    let mut cases: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.strip_suffix(".golden.safetensors").map(String::from))
        .collect();
    cases.sort();
    assert!(!cases.is_empty(), "no *.golden.safetensors in {}", dir.display());
    for case in cases {
        let start = std::time::Instant::now();
        check_case::<B>(&dir, &case, device);
        println!("{case}: {:.1} s", start.elapsed().as_secs_f64());
    }
}

/// The tiny goldens on CUDA (built and run only on a GPU machine: `tools/bench/gpu_session.sh`).
#[cfg(feature = "cuda")]
mod cuda {
    golden_tests!(da3::backends::Cuda, burn::backend::cuda::CudaDevice::default(), [
        tiny_s1, tiny_s2, tiny_s4_saddle_balanced, tiny_s3_saddle_sim_range, tiny_s3_middle,
        tiny_s3_first, swiglu_s3, swiglu_s2, tiny_s3_posed, swiglu_s4_posed, mono_s1, mono_s3,
        tiny_b2_s3, swiglu_b3_s4, mono_b2_s2,
    ]);
}
