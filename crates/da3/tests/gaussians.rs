//! 3D Gaussians: the GS head and the Gaussian adapter against the reference
//! (`tools/golden/generate.py`, config `tiny-gs`: giant-style with GSDPT + GaussianAdapter,
//! case `gs_s2`: 2 views of 28×42, reference `forward(infer_gs=True)`, SH rotated by e3nn).
//!
//! Three checks per backend:
//! - the network: depth, cameras and the GS head's raw output and density (relative L2 ≤ 1e-4);
//! - the adapter alone, fed the reference's own head output, depth and cameras (≤ 1e-5: only
//!   float rounding separates our f64 host code from the reference's fp32 tensors);
//! - end to end through `Da3::predict_with(infer_gs)` (≤ 1e-4).
//!
//! Case `gs_s3_posed` (3 views with input cameras) adds the adapter's pose scale: the Umeyama
//! scale from the predicted to the normalized input cameras (vs the reference's
//! `batch_align_poses_umeyama`), the clamp, and `predict_with(cameras, infer_gs)` end to end.

mod common;

use burn::tensor::backend::Backend;
use common::{compare, fixtures, load_model, values, Golden};
use da3::gaussians::{adapt, AdapterInput};
use da3::{Da3, Da3Config, Gaussians, PredictOptions, RefViewStrategy, Views};

/// Tolerance on network outputs (as the other golden tests).
const TOL: f64 = 1e-4;
/// Tolerance on the adapter given the reference's inputs.
const ADAPTER_TOL: f64 = 1e-5;

const CASE: &str = "gs_s2";
const POSED_CASE: &str = "gs_s3_posed";

/// The Gaussians' fields as (values, shape) in the reference's [1, N, …] layout.
fn fields(g: &Gaussians) -> [(&'static str, (Vec<f32>, Vec<usize>)); 5] {
    let n = g.len();
    [
        ("means", (g.means.iter().flatten().copied().collect(), vec![1, n, 3])),
        ("scales", (g.scales.iter().flatten().copied().collect(), vec![1, n, 3])),
        ("rotations", (g.rotations.iter().flatten().copied().collect(), vec![1, n, 4])),
        ("harmonics", (g.harmonics.iter().flatten().flatten().copied().collect(), vec![1, n, 3, 9])),
        ("opacities", (g.opacities.clone(), vec![1, n])),
    ]
}

/// Compares every field with `golden.gaussians.*`; returns a report line.
fn check_gaussians(what: &str, g: &Gaussians, golden: &Golden, tol: f64, failures: &mut Vec<String>) -> String {
    let mut report = Vec::new();
    for (name, ours) in fields(g) {
        let stage = format!("gaussians.{name}");
        let reference = golden.get(&stage);
        let max_abs = ours.0.iter().zip(&reference.0).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        let err = compare(&format!("{what} {stage}"), ours, reference, tol, failures);
        report.push(format!("{name}={err:.1e} (max abs {max_abs:.1e})"));
    }
    format!("{what}: {}", report.join(" "))
}

fn matrices<const R: usize, const C: usize>(flat: &[f32]) -> Vec<[[f32; C]; R]> {
    flat.chunks_exact(R * C).map(|m| std::array::from_fn(|r| std::array::from_fn(|c| m[r * C + c]))).collect()
}

/// Network stages and the adapter on our own outputs, for `case` in `dir`.
pub fn check_network<B: Backend>(dir: &std::path::Path, case: &str, device: &B::Device) {
    let golden = Golden::read(dir, case);
    let strategy: RefViewStrategy = golden.metadata["strategy"].parse().unwrap();
    let model = load_model::<B>(dir, &golden.metadata["config"], device);
    assert!(model.has_gs_head());
    let out = model.forward_gs(golden.tensor::<B, 5>("images", device), strategy, None, None);
    let mut failures = Vec::new();
    let mut report = Vec::new();
    let mut check = |stage: &str, ours: (Vec<f32>, Vec<usize>)| {
        let err = compare(stage, ours, golden.get(stage), TOL, &mut failures);
        report.push(format!("{stage}={err:.1e}"));
    };
    let depth = values(out.depth);
    check("depth", depth.clone());
    let cams = out.cameras.expect("main-series model");
    let (ext, ixt) = (values(cams.extrinsics), values(cams.intrinsics));
    check("extrinsics", ext.clone());
    check("intrinsics", ixt.clone());
    let gs = out.gs.expect("forward_gs on a model with a GS head");
    let (raw, density) = (values(gs.raw), values(gs.density));
    check("gs.raw", raw.clone());
    check("gs.density", density.clone());
    let [_, s, h, w] = depth.1[..] else { panic!("depth rank") };
    let ours = adapt(&AdapterInput {
        views: s,
        height: h,
        width: w,
        raw: &raw.0,
        density: &density.0,
        depth: &depth.0,
        extrinsics: &matrices::<3, 4>(&ext.0),
        intrinsics: &matrices::<3, 3>(&ixt.0),
        pose_scale: 1.0,
    })
    .unwrap();
    let line = check_gaussians("network+adapter", &ours, &golden, TOL, &mut failures);
    println!("{case}: {}\n{line}", report.join(" "));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The adapter alone on the reference's head output, depth and cameras.
#[test]
fn adapter_matches_reference_on_reference_inputs() {
    let golden = Golden::read(&fixtures(), CASE);
    let (_, shape) = golden.get("depth");
    let [_, s, h, w] = shape[..] else { panic!("depth rank") };
    let g = adapt(&AdapterInput {
        views: s,
        height: h,
        width: w,
        raw: &golden.get("gs.raw").0,
        density: &golden.get("gs.density").0,
        depth: &golden.get("depth").0,
        extrinsics: &matrices::<3, 4>(&golden.get("extrinsics").0),
        intrinsics: &matrices::<3, 3>(&golden.get("intrinsics").0),
        pose_scale: 1.0,
    })
    .unwrap();
    assert_eq!((g.views, g.height, g.width, g.len()), (s, h, w, s * h * w));
    let mut failures = Vec::new();
    println!("{}", check_gaussians("adapter", &g, &golden, ADAPTER_TOL, &mut failures));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `Da3::predict_with(infer_gs)` end to end, and the error for a model without a GS head.
pub fn check_api<B: Backend>(device: &B::Device) {
    let dir = fixtures();
    let golden = Golden::read(&dir, CASE);
    let load = |name: &str| {
        let cfg = Da3Config::from_json(&std::fs::read_to_string(dir.join(format!("{name}.config.json"))).unwrap()).unwrap();
        let bytes = std::fs::read(dir.join(format!("{name}.weights.safetensors"))).unwrap();
        Da3::<B>::from_bytes(cfg, &bytes, name, device).unwrap()
    };
    let (images, shape) = golden.get("images");
    let views = Views::from_normalized(images.clone(), shape[1], shape[3], shape[4]).unwrap();
    let options = PredictOptions {
        ref_view_strategy: golden.metadata["strategy"].parse().unwrap(),
        infer_gs: true,
        ..PredictOptions::default()
    };
    let pred = load("tiny-gs").predict_with(&views, &options).unwrap();
    let g = pred.gaussians.as_ref().expect("infer_gs returns Gaussians");
    let mut failures = Vec::new();
    println!("{}", check_gaussians("predict_with", g, &golden, TOL, &mut failures));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Without infer_gs there are none; a model without a GS head refuses infer_gs.
    let plain = load("tiny-gs").predict_with(&views, &PredictOptions { infer_gs: false, ..options.clone() }).unwrap();
    assert!(plain.gaussians.is_none());
    let err = load("tiny-swiglu").predict_with(&views, &options).unwrap_err().to_string();
    assert!(err.contains("no 3D-Gaussian head"), "{err}");
}

fn mat4s(flat: &[f32]) -> Vec<[[f64; 4]; 4]> {
    matrices::<4, 4>(flat).into_iter().map(|m| m.map(|r| r.map(f64::from))).collect()
}

#[test]
fn pose_scale_matches_reference_and_is_clamped() {
    let golden = Golden::read(&fixtures(), POSED_CASE);
    let normalized = mat4s(&golden.get("cameras.normalized").0);
    let predicted = matrices::<3, 4>(&golden.get("extrinsics").0);
    let reference = golden.get("gs.pose_scale_unclamped").0[0] as f64;
    let ours = da3::gaussians::pose_scale(&normalized, &predicted);
    println!("pose scale: ours {ours:.7} reference {reference:.7}");
    assert!((1.0 / 3.0..=3.0).contains(&reference), "the fixture should exercise the unclamped path");
    assert!((ours - reference).abs() <= 1e-5 * reference, "ours {ours} reference {reference}");
    // Scaling the predicted camera centres by k scales the answer by 1/k until the clamp.
    let shrink = |k: f32| predicted.iter().map(|e| e.map(|r| [r[0], r[1], r[2], r[3] * k])).collect::<Vec<_>>();
    assert!((da3::gaussians::pose_scale(&normalized, &shrink(0.5)) - 2.0 * ours).abs() < 1e-5);
    assert_eq!(da3::gaussians::pose_scale(&normalized, &shrink(0.01)), 3.0);
    assert_eq!(da3::gaussians::pose_scale(&normalized, &shrink(100.0)), 1.0 / 3.0);
    // Two views: Umeyama is degenerate, the reference falls back to 1.
    assert_eq!(da3::gaussians::pose_scale(&normalized[..2], &predicted[..2]), 1.0);
}

/// `predict_with(cameras, infer_gs)`: the network conditioned on the cameras, the pose scale
/// and the adapter, against the reference's `forward(extrinsics, intrinsics, infer_gs=True)`.
pub fn check_posed_api<B: Backend>(device: &B::Device) {
    let dir = fixtures();
    let golden = Golden::read(&dir, POSED_CASE);
    let cfg = Da3Config::from_json(&std::fs::read_to_string(dir.join("tiny-gs.config.json")).unwrap()).unwrap();
    let bytes = std::fs::read(dir.join("tiny-gs.weights.safetensors")).unwrap();
    let model = Da3::<B>::from_bytes(cfg, &bytes, "tiny-gs", device).unwrap();
    let (images, shape) = golden.get("images");
    let views = Views::from_normalized(images.clone(), shape[1], shape[3], shape[4]).unwrap();
    let intrinsics = matrices::<3, 3>(&golden.get("cameras.intrinsics").0);
    let cameras = da3::InputCameras {
        world_to_camera: mat4s(&golden.get("cameras.world_to_camera").0),
        intrinsics: intrinsics.into_iter().map(|m| m.map(|r| r.map(f64::from))).collect(),
    };
    let options = PredictOptions {
        ref_view_strategy: golden.metadata["strategy"].parse().unwrap(),
        cameras: Some(cameras),
        infer_gs: true,
        ..PredictOptions::default()
    };
    let pred = model.predict_with(&views, &options).unwrap();
    let mut failures = Vec::new();
    println!("{}", check_gaussians("predict_with(cameras)", pred.gaussians.as_ref().unwrap(), &golden, TOL, &mut failures));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Giant at its real widths with reduced depth (`da3-giant-d5`, generated by
/// `tools/golden/real_parity.sh` into `$DA3_REAL_GOLDENS`): the GS head and adapter at real
/// size. The backbone, depth and camera stages of the same case run in `golden.rs`.
#[test]
#[ignore = "needs DA3_REAL_GOLDENS (tools/golden/real_parity.sh)"]
#[cfg(feature = "flex")]
fn real_size_gaussians() {
    let dir = std::path::PathBuf::from(std::env::var("DA3_REAL_GOLDENS").expect("DA3_REAL_GOLDENS = the generator's --out dir"));
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        let Some(case) = name.strip_suffix(".golden.safetensors") else { continue };
        if Golden::read(&dir, case).has("gs.raw") {
            check_network::<da3::backends::Flex>(&dir, case, &Default::default());
        }
    }
}

#[cfg(feature = "flex")]
mod flex {
    #[test]
    fn posed_api() {
        super::check_posed_api::<da3::backends::Flex>(&Default::default());
    }
    #[test]
    fn network() {
        super::check_network::<da3::backends::Flex>(&super::fixtures(), super::CASE, &Default::default());
    }
    #[test]
    fn api() {
        super::check_api::<da3::backends::Flex>(&Default::default());
    }
}

#[cfg(feature = "wgpu")]
mod wgpu {
    #[test]
    fn network() {
        super::check_network::<da3::backends::Wgpu>(&super::fixtures(), super::CASE, &burn::backend::wgpu::WgpuDevice::default());
    }
    #[test]
    fn posed_api() {
        super::check_posed_api::<da3::backends::Wgpu>(&burn::backend::wgpu::WgpuDevice::default());
    }
}
