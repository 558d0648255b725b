//! 3D Gaussians: the GS head and the Gaussian adapter against the reference
//! (`tools/golden/generate.py`, config `tiny-gs`: giant-style with GSDPT + GaussianAdapter,
//! case `gs_s2`: 2 views of 28×42, reference `forward(infer_gs=True)`, SH rotated by e3nn).
//!
//! Three checks per backend:
//! - the network: depth, cameras and the GS head's raw output and density (relative L2 ≤ 1e-4);
//! - the adapter alone, fed the reference's own head output, depth and cameras (≤ 1e-5: only
//!   float rounding separates our f64 host code from the reference's fp32 tensors);
//! - end to end through `Da3::predict_with(infer_gs)` (≤ 1e-4).

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

/// Network stages and the adapter on our own outputs.
pub fn check_network<B: Backend>(device: &B::Device) {
    let dir = fixtures();
    let golden = Golden::read(&dir, CASE);
    let strategy: RefViewStrategy = golden.metadata["strategy"].parse().unwrap();
    let model = load_model::<B>(&dir, &golden.metadata["config"], device);
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
    })
    .unwrap();
    let line = check_gaussians("network+adapter", &ours, &golden, TOL, &mut failures);
    println!("{CASE}: {}\n{line}", report.join(" "));
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

#[cfg(feature = "flex")]
mod flex {
    #[test]
    fn network() {
        super::check_network::<da3::backends::Flex>(&Default::default());
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
        super::check_network::<da3::backends::Wgpu>(&burn::backend::wgpu::WgpuDevice::default());
    }
}
