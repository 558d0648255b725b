//! `Da3::predict_batch`: several independent scenes in one forward pass. Each scene's result
//! must be the reference's batched network output for that scene (the golden `*_b*` cases,
//! made by `tools/golden/generate.py` with B > 1) and what `predict_with` gives for the scene
//! alone.

mod common;

use burn::tensor::backend::Backend;
use std::path::Path;

use common::{compare, fixtures, prediction_diff, Golden};
use da3::{Da3, Da3Config, Da3Error, InputCameras, PredictOptions, Views};

/// fp32 tolerance against the reference (as in golden.rs).
const TOL: f64 = 1e-4;
/// Batched against one-scene passes of our own: the same arithmetic, in larger products whose
/// sums run in another order (measured ~1e-7).
const SAME_TOL: f64 = 1e-5;

fn model<B: Backend>(dir: &Path, name: &str, device: &B::Device) -> Da3<B> {
    let config = Da3Config::from_json(&std::fs::read_to_string(dir.join(format!("{name}.config.json"))).unwrap()).unwrap();
    Da3::<B>::from_file(config, &dir.join(format!("{name}.weights.safetensors")), device).unwrap()
}

/// The golden case's B scenes, [S, 3, H, W] each.
fn scenes(golden: &Golden) -> Vec<Views> {
    let (data, shape) = golden.get("images");
    let [b, s, _, h, w] = shape[..] else { panic!("images are [B, S, 3, H, W]") };
    let per_scene = s * 3 * h * w;
    (0..b).map(|i| Views::from_normalized(data[i * per_scene..(i + 1) * per_scene].to_vec(), s, h, w).unwrap()).collect()
}

/// Scene `i` of a golden [B, ...] tensor, with B = 1.
fn scene_of(golden: &Golden, name: &str, i: usize) -> (Vec<f32>, Vec<usize>) {
    let (data, shape) = golden.get(name);
    let n = data.len() / shape[0];
    let mut one = shape.clone();
    one[0] = 1;
    (data[i * n..(i + 1) * n].to_vec(), one)
}

/// A main-series batch (scenes that select different reference views) against the
/// reference's batched network and against one-scene passes; with the ray poses and
/// exported features on, which take the per-scene paths after the network.
fn main_series_batch<B: Backend>(dir: &Path, case: &str, device: &B::Device) {
    let golden = Golden::read(dir, case);
    let model = model::<B>(dir, &golden.metadata["config"], device);
    let options = PredictOptions {
        ref_view_strategy: golden.metadata["strategy"].parse().unwrap(),
        ..PredictOptions::default()
    };
    let scenes = scenes(&golden);
    let batch = model.predict_batch(&scenes, &options).unwrap();
    assert_eq!(batch.len(), scenes.len());
    let mut failures = Vec::new();
    let mut report = Vec::new();
    for (i, pred) in batch.iter().enumerate() {
        let flat = |m: &[[[f32; 4]; 3]]| m.iter().flatten().flatten().copied().collect::<Vec<f32>>();
        let flat3 = |m: &[[[f32; 3]; 3]]| m.iter().flatten().flatten().copied().collect::<Vec<f32>>();
        for (stage, ours) in [
            ("depth", pred.depth.clone()),
            ("depth_conf", pred.conf.clone()),
            ("extrinsics", flat(&pred.extrinsics)),
            ("intrinsics", flat3(&pred.intrinsics)),
        ] {
            let reference = scene_of(&golden, stage, i);
            let err = compare(&format!("scene {i} {stage}"), (ours, reference.1.clone()), &reference, TOL, &mut failures);
            report.push(format!("{i}.{stage}={err:.1e}"));
        }
        let alone = model.predict_with(&scenes[i], &options).unwrap();
        let (err, worst) = prediction_diff(pred, &alone);
        report.push(format!("{i}.alone={err:.1e}"));
        if !(err <= SAME_TOL) {
            failures.push(format!("scene {i}: batched vs alone {worst} {err:.2e}"));
        }
    }
    println!("{case}: {}", report.join(" "));
    assert!(failures.is_empty(), "{case}:\n{}", failures.join("\n"));

    // Ray poses and exported features run per scene after the network.
    let options = PredictOptions { use_ray_pose: true, export_feat_layers: vec![0, 3], ..options };
    let batch = model.predict_batch(&scenes, &options).unwrap();
    for (i, pred) in batch.iter().enumerate() {
        let alone = model.predict_with(&scenes[i], &options).unwrap();
        assert_eq!(pred.aux_features.len(), 2);
        let (err, worst) = prediction_diff(pred, &alone);
        println!("{case} scene {i} with rays and features: batched vs alone {worst} {err:.1e}");
        assert!(err <= SAME_TOL, "scene {i} with ray poses and features: {worst} {err:.2e}");
    }
}

/// Mono model: the network against the reference's batched pass, and each scene's sky filled
/// from its own depth (the reference's batched forward pools the quantile over the batch; we
/// keep scenes independent), i.e. exactly what the scene alone gets.
fn mono_batch<B: Backend>(device: &B::Device) {
    let golden = Golden::read(&fixtures(), "mono_b2_s2");
    let model = model::<B>(&fixtures(), "tiny-mono", device);
    let scenes = scenes(&golden);
    let batch = model.predict_batch(&scenes, &PredictOptions::default()).unwrap();
    let mut failures = Vec::new();
    for (i, pred) in batch.iter().enumerate() {
        let sky = pred.sky.clone().expect("mono models predict sky");
        let reference_sky = scene_of(&golden, "sky", i);
        compare(&format!("scene {i} sky"), (sky.clone(), reference_sky.1.clone()), &reference_sky, TOL, &mut failures);
        // Non-sky pixels keep the network's depth.
        let reference = scene_of(&golden, "depth", i).0;
        let keep: Vec<(f32, f32)> = pred.depth.iter().zip(&reference).zip(&sky).filter(|(_, s)| **s < 0.3).map(|((a, b), _)| (*a, *b)).collect();
        assert!(keep.len() > 10, "scene {i}: the case must have non-sky pixels");
        let (ours, theirs): (Vec<f32>, Vec<f32>) = keep.into_iter().unzip();
        let err = common::rel_l2(&ours, &theirs);
        assert!(err <= TOL, "scene {i}: non-sky depth {err:.2e}");
        let alone = model.predict_with(&scenes[i], &PredictOptions::default()).unwrap();
        let (err, worst) = prediction_diff(pred, &alone);
        println!("mono_b2_s2 scene {i}: non-sky depth vs reference ok, batched vs alone {worst} {err:.1e}");
        assert!(err <= SAME_TOL, "scene {i}: batched vs alone {worst} {err:.2e}");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[cfg(feature = "flex")]
mod flex {
    use super::*;
    use da3::backends::Flex;

    #[test]
    fn tiny_b2_s3() {
        main_series_batch::<Flex>(&fixtures(), "tiny_b2_s3", &Default::default());
    }

    #[test]
    fn swiglu_b3_s4() {
        main_series_batch::<Flex>(&fixtures(), "swiglu_b3_s4", &Default::default());
    }

    #[test]
    fn mono_b2_s2() {
        mono_batch::<Flex>(&Default::default());
    }

    /// A calibrated rig over time: every scene pose-conditioned on the same cameras
    /// (`options.cameras`), each scene = `predict_with` alone with them (alignment to the
    /// cameras included); the golden scene also matches the reference API's aligned outputs.
    /// The GS case adds the Gaussians, whose pose scale is fitted per scene.
    #[test]
    fn rig_cameras_shared_by_every_scene() {
        for (case, infer_gs) in [("tiny_s3_posed", false), ("gs_s3_posed", true)] {
            let golden = Golden::read(&fixtures(), case);
            let model = model::<Flex>(&fixtures(), &golden.metadata["config"], &Default::default());
            let (data, shape) = golden.get("images");
            let (s, h, w) = (shape[1], shape[3], shape[4]);
            let recorded = Views::from_normalized(data.clone(), s, h, w).unwrap();
            // A second time step: the same rig, other pixels.
            let other = Views::from_normalized(data.iter().rev().copied().collect(), s, h, w).unwrap();
            let matrices = |name: &str, n: usize| -> Vec<Vec<f64>> {
                golden.get(name).0.chunks_exact(n * n).map(|m| m.iter().map(|v| *v as f64).collect()).collect()
            };
            let cameras = InputCameras {
                world_to_camera: matrices("cameras.world_to_camera", 4)
                    .iter()
                    .map(|m| std::array::from_fn(|r| std::array::from_fn(|c| m[r * 4 + c])))
                    .collect(),
                intrinsics: matrices("cameras.intrinsics", 3)
                    .iter()
                    .map(|m| std::array::from_fn(|r| std::array::from_fn(|c| m[r * 3 + c])))
                    .collect(),
            };
            let options = PredictOptions {
                ref_view_strategy: golden.metadata["strategy"].parse().unwrap(),
                cameras: Some(cameras),
                infer_gs,
                ..PredictOptions::default()
            };
            let batch = model.predict_batch(&[recorded.clone(), other.clone()], &options).unwrap();
            if golden.has("aligned.depth") {
                let err = common::rel_l2(&batch[0].depth, &golden.get("aligned.depth").0);
                assert!(err <= TOL, "{case}: aligned depth vs the reference API {err:.2e}");
            }
            for (i, (pred, views)) in batch.iter().zip([&recorded, &other]).enumerate() {
                assert!(pred.input_frame.is_some(), "{case} scene {i}: aligned to the input cameras");
                assert_eq!(pred.gaussians.is_some(), infer_gs);
                let alone = model.predict_with(views, &options).unwrap();
                let (err, worst) = prediction_diff(pred, &alone);
                println!("{case} rig scene {i}: batched vs alone {worst} {err:.1e}");
                assert!(err <= SAME_TOL, "{case} scene {i}: {worst} {err:.2e}");
            }
            let depth_gap = common::rel_l2(&batch[1].depth, &batch[0].depth);
            assert!(depth_gap > 1e-2, "{case}: the two time steps must differ ({depth_gap:.1e})");
        }
    }

    /// The model level with per-scene cameras (B·S of them, as `CameraEnc::forward` takes):
    /// each scene of the batch equals a one-scene pass with its own cameras, and its cameras
    /// matter (the other scene's give another result).
    #[test]
    fn per_scene_cameras_at_the_model_level() {
        use burn::tensor::{Tensor, TensorData};
        use da3::camera_enc::{normalize_extrinsics, ViewCameras};
        use da3::{Outputs, RefViewStrategy};
        let golden = Golden::read(&fixtures(), "tiny_s3_posed");
        let model = model::<Flex>(&fixtures(), &golden.metadata["config"], &Default::default());
        let net = model.model();
        let (data, shape) = golden.get("images");
        let (s, h, w) = (shape[1], shape[3], shape[4]);
        let scenes = [data.clone(), data.iter().rev().copied().collect::<Vec<f32>>()];
        let mats = |name: &str, n: usize| -> Vec<Vec<f64>> {
            golden.get(name).0.chunks_exact(n * n).map(|m| m.iter().map(|v| *v as f64).collect()).collect()
        };
        let ext: Vec<[[f64; 4]; 4]> =
            mats("cameras.world_to_camera", 4).iter().map(|m| std::array::from_fn(|r| std::array::from_fn(|c| m[r * 4 + c]))).collect();
        let ixt: Vec<[[f64; 3]; 3]> =
            mats("cameras.intrinsics", 3).iter().map(|m| std::array::from_fn(|r| std::array::from_fn(|c| m[r * 3 + c]))).collect();
        // Scene 1 was taken by the same cameras in another order.
        let (ext_rev, ixt_rev): (Vec<_>, Vec<_>) = (ext.iter().rev().copied().collect(), ixt.iter().rev().copied().collect());
        let cams = [
            ViewCameras { world_to_camera: normalize_extrinsics(&ext), intrinsics: ixt },
            ViewCameras { world_to_camera: normalize_extrinsics(&ext_rev), intrinsics: ixt_rev },
        ];
        let images = |scenes: &[&Vec<f32>]| {
            let all: Vec<f32> = scenes.iter().flat_map(|v| v.iter().copied()).collect();
            Tensor::<Flex, 5>::from_data(TensorData::new(all, [scenes.len(), s, 3, h, w]), &Default::default())
        };
        let run = |imgs: Tensor<Flex, 5>, cams: &ViewCameras| {
            let out = net.forward_full(imgs, RefViewStrategy::SaddleBalanced, Some(cams), Outputs::default(), None);
            let ext = out.cameras.expect("main series").extrinsics;
            (common::values(out.depth).0, common::values(ext).0)
        };
        let both = ViewCameras {
            world_to_camera: cams.iter().flat_map(|c| c.world_to_camera.clone()).collect(),
            intrinsics: cams.iter().flat_map(|c| c.intrinsics.clone()).collect(),
        };
        let (depth, ext) = run(images(&[&scenes[0], &scenes[1]]), &both);
        let (n_depth, n_ext) = (depth.len() / 2, ext.len() / 2);
        for i in 0..2 {
            let (alone_depth, alone_ext) = run(images(&[&scenes[i]]), &cams[i]);
            let d = common::rel_l2(&depth[i * n_depth..(i + 1) * n_depth], &alone_depth);
            let e = common::rel_l2(&ext[i * n_ext..(i + 1) * n_ext], &alone_ext);
            println!("per-scene cameras, scene {i}: batched vs alone depth {d:.1e}, extrinsics {e:.1e}");
            assert!(d <= SAME_TOL && e <= SAME_TOL, "scene {i}: depth {d:.2e}, extrinsics {e:.2e}");
        }
        let (wrong_depth, _) = run(images(&[&scenes[1]]), &cams[0]);
        let gap = common::rel_l2(&wrong_depth, &depth[n_depth..]);
        assert!(gap > 1e-3, "scene 1's own cameras must matter ({gap:.1e})");
    }

    /// Real size: da3-small, 2 scenes of 3 views at 280×378 (products split into parallel
    /// tiles, unlike the tiny cases), against the reference's batched network and one-scene
    /// passes. Fixtures: `tools/golden/real_parity.sh`, which runs this.
    #[test]
    #[ignore = "needs real-size fixtures: run tools/golden/real_parity.sh"]
    fn real_size_batch() {
        let dir = std::path::PathBuf::from(std::env::var("DA3_REAL_GOLDENS").expect("DA3_REAL_GOLDENS = the generator's --out dir"));
        main_series_batch::<Flex>(&dir, "da3-small_b2_s3_280x378", &Default::default());
    }

    /// What a batch cannot take fails before any compute, naming the fix; an empty batch is
    /// an empty result.
    #[test]
    fn refuses_mixed_shapes_and_bad_options() {
        let model = model::<Flex>(&fixtures(), "tiny", &Default::default());
        let views = |s: usize, h: usize, w: usize| Views::from_normalized(vec![0.1; s * 3 * h * w], s, h, w).unwrap();
        assert!(model.predict_batch(&[], &PredictOptions::default()).unwrap().is_empty());
        let err = model.predict_batch(&[views(2, 28, 42), views(3, 28, 42)], &PredictOptions::default()).unwrap_err();
        assert!(matches!(err, Da3Error::Input(_)), "{err}");
        let msg = err.to_string();
        assert!(msg.contains("scene 1 has 3 views of 42x28") && msg.contains("scene 0 has 2 views"), "{msg}");
        let err = model.predict_batch(&[views(2, 28, 42), views(2, 42, 42)], &PredictOptions::default()).unwrap_err();
        assert!(err.to_string().contains("scene 1 has 2 views of 42x42"), "{err}");
        let eye = [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]];
        let k = [[40.0, 0.0, 21.0], [0.0, 40.0, 14.0], [0.0, 0.0, 1.0]];
        let cameras = InputCameras { world_to_camera: vec![eye; 3], intrinsics: vec![k; 3] };
        let options = PredictOptions { cameras: Some(cameras), ..PredictOptions::default() };
        let err = model.predict_batch(&[views(2, 28, 42)], &options).unwrap_err();
        assert!(err.to_string().contains("3 extrinsics and 3 intrinsics given for 2 views"), "{err}");
        let options = PredictOptions { export_feat_layers: vec![99], ..PredictOptions::default() };
        let err = model.predict_batch(&[views(2, 28, 42)], &options).unwrap_err();
        assert!(err.to_string().contains("feature layer 99"), "{err}");
    }
}

/// The batched model and mono cases on a GPU backend.
macro_rules! gpu_batch_tests {
    ($backend:ty) => {
        #[test]
        fn tiny_b2_s3() {
            super::main_series_batch::<$backend>(&super::fixtures(), "tiny_b2_s3", &Default::default());
        }

        #[test]
        fn mono_b2_s2() {
            super::mono_batch::<$backend>(&Default::default());
        }
    };
}

#[cfg(feature = "wgpu")]
mod wgpu {
    gpu_batch_tests!(da3::backends::Wgpu);
}

/// On CUDA (built and run only on a GPU machine).
#[cfg(feature = "cuda")]
mod cuda {
    gpu_batch_tests!(da3::backends::Cuda);
}
