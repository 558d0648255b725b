//! Parity of the nested model (any-view + metric branch) and of the exported backbone
//! features with the reference (fixtures from `tools/golden/family.py`).

mod common;

use common::{compare, fixtures, Golden};
use da3::backends::Flex;
use da3::{Da3, Da3Config, PredictOptions, RefViewStrategy, Views};
use safetensors::tensor::TensorView;
use safetensors::SafeTensors;

/// fp32 tolerance on the relative L2 error (as in golden.rs).
const TOL: f64 = 1e-4;

fn config(name: &str) -> Da3Config {
    Da3Config::from_json(&std::fs::read_to_string(fixtures().join(format!("{name}.config.json"))).unwrap()).unwrap()
}

/// The nested checkpoint as `save_model` writes it for `NestedDepthAnything3Net`: the
/// any-view weights under `model.da3.`, the metric ones under `model.da3_metric.`.
fn nested_weights() -> Vec<u8> {
    let anyview = std::fs::read(fixtures().join("tiny.weights.safetensors")).unwrap();
    let metric = std::fs::read(fixtures().join("tiny-mono.weights.safetensors")).unwrap();
    let (anyview, metric) = (SafeTensors::deserialize(&anyview).unwrap(), SafeTensors::deserialize(&metric).unwrap());
    let mut tensors: Vec<(String, TensorView<'_>)> = Vec::new();
    for (branch, file) in [("da3", &anyview), ("da3_metric", &metric)] {
        for (name, view) in file.tensors() {
            let rest = name.strip_prefix("model.").expect("Hub layout");
            tensors.push((format!("model.{branch}.{rest}"), view));
        }
    }
    safetensors::serialize(tensors, None).unwrap()
}

fn nested_model() -> Da3<Flex> {
    let mut cfg = config("tiny");
    cfg.name = "tiny-nested".into();
    cfg.metric_branch = Some(Box::new(config("tiny-mono")));
    Da3::<Flex>::from_bytes(cfg, &nested_weights(), "tiny-nested", &Default::default()).unwrap()
}

fn views(golden: &Golden) -> Views {
    let (data, shape) = golden.get("images").clone();
    Views::from_normalized(data, shape[1], shape[3], shape[4]).unwrap()
}

fn flat<const R: usize, const C: usize>(m: &[[[f32; C]; R]]) -> Vec<f32> {
    m.iter().flatten().flatten().copied().collect()
}

#[test]
fn nested_matches_reference() {
    let golden = Golden::read(&fixtures(), "nested_s2");
    let model = nested_model();
    let pred = model.predict_with(&views(&golden), &PredictOptions::default()).unwrap();
    let mut failures = Vec::new();
    let mut report = Vec::new();
    let shape = |name: &str| golden.get(name).1.clone();
    for (stage, ours) in [
        ("depth", pred.depth.clone()),
        ("depth_conf", pred.conf.clone()),
        ("extrinsics", flat(&pred.extrinsics)),
        ("intrinsics", flat(&pred.intrinsics)),
    ] {
        let err = compare(stage, (ours, shape(stage)), golden.get(stage), TOL, &mut failures);
        report.push(format!("{stage}={err:.1e}"));
    }
    let reference_scale = golden.get("scale_factor").0[0];
    let scale = pred.scale_factor.expect("nested models report their scale factor");
    println!("nested_s2: {} scale ours {scale} reference {reference_scale}", report.join(" "));
    assert!(((scale - reference_scale) / reference_scale).abs() < 1e-4, "scale {scale} vs {reference_scale}");
    assert!(pred.is_metric);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Sky pixels carry the lowest confidence and one shared depth, capped at 200 m.
    let sky = pred.sky.as_ref().expect("the metric branch's sky");
    let sky_depths: Vec<f32> = pred.depth.iter().zip(sky).filter(|(_, s)| **s >= 0.3).map(|(d, _)| *d).collect();
    assert!(!sky_depths.is_empty() && sky_depths.iter().all(|d| *d == sky_depths[0] && *d <= 200.0));
}

/// The nested model batched (`predict_batch`): the metric branch runs on the whole batch, and
/// each scene gets its own metric fit, i.e. what the scene alone gets; scene 0 (the golden
/// views) still matches the reference.
#[test]
fn nested_batch_equals_each_scene_alone() {
    let golden = Golden::read(&fixtures(), "nested_s2");
    let model = nested_model();
    let first = views(&golden);
    let second = synthetic_views(first.count(), first.height(), first.width());
    let options = PredictOptions::default();
    let batch = model.predict_batch(&[first.clone(), second.clone()], &options).unwrap();
    let reference = golden.get("depth");
    let err = common::rel_l2(&batch[0].depth, &reference.0);
    assert!(err <= TOL, "scene 0 depth vs reference {err:.2e}");
    let scales: Vec<f32> = batch.iter().map(|p| p.scale_factor.expect("nested models report their scale")).collect();
    for (pred, views) in batch.iter().zip([&first, &second]) {
        let alone = model.predict_with(views, &options).unwrap();
        let (err, worst) = common::prediction_diff(pred, &alone);
        println!("nested batch: scale {:?}, batched vs alone {worst} {err:.1e}", pred.scale_factor);
        assert!(err <= 1e-5, "batched vs alone: {worst} {err:.2e}");
    }
    // Two different scenes get two different fits (not one shared over the batch).
    assert!((scales[0] - scales[1]).abs() > 1e-3 * scales[0].abs(), "scales {scales:?}");
}

#[test]
fn nested_checkpoint_with_a_missing_branch_names_the_keys() {
    let mut cfg = config("tiny");
    cfg.metric_branch = Some(Box::new(config("tiny-mono")));
    // A plain (non-nested) checkpoint: every key sits under `model.` instead of the branches.
    let plain = std::fs::read(fixtures().join("tiny.weights.safetensors")).unwrap();
    let err = Da3::<Flex>::from_bytes(cfg, &plain, "tiny.weights.safetensors", &Default::default()).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("model.da3.backbone.pretrained.cls_token"), "{text}");
    assert!(text.contains("model.da3_metric."), "{text}");
}

#[test]
fn exported_features_match_reference_in_input_order() {
    let golden = Golden::read(&fixtures(), "feat_s3");
    let layers: Vec<usize> = golden.metadata["layers"].split(',').map(|l| l.parse().unwrap()).collect();
    let cfg = config("tiny");
    let bytes = std::fs::read(fixtures().join("tiny.weights.safetensors")).unwrap();
    let model = Da3::<Flex>::from_bytes(cfg, &bytes, "tiny", &Default::default()).unwrap();
    let options = PredictOptions {
        ref_view_strategy: RefViewStrategy::Middle,
        export_feat_layers: layers.clone(),
        ..PredictOptions::default()
    };
    let pred = model.predict_with(&views(&golden), &options).unwrap();
    let mut failures = Vec::new();
    compare("depth", (pred.depth.clone(), golden.get("depth").1.clone()), golden.get("depth"), TOL, &mut failures);
    assert_eq!(pred.aux_features.len(), layers.len());
    for (feat, layer) in pred.aux_features.iter().zip(&layers) {
        assert_eq!(feat.layer, *layer);
        let stage = format!("feat_layer.{layer}");
        let shape = vec![1, pred.views, feat.height, feat.width, feat.dim];
        let err = compare(&stage, (feat.data.clone(), shape), golden.get(&stage), TOL, &mut failures);
        println!("{stage}: {err:.1e}");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    let bad = PredictOptions { export_feat_layers: vec![8], ..PredictOptions::default() };
    let err = model.predict_with(&views(&golden), &bad).unwrap_err().to_string();
    assert!(err.contains("feature layer 8") && err.contains("0..7"), "{err}");
}

/// Smooth, view-dependent normalized images, [S, 3, H, W].
fn synthetic_views(s: usize, h: usize, w: usize) -> Views {
    let data = (0..s * 3 * h * w)
        .map(|i| {
            let (v, c, y, x) = (i / (3 * h * w), i / (h * w) % 3, i / w % h, i % w);
            (x as f32 * 0.11 + y as f32 * 0.07 + v as f32 * 0.9 + c as f32).sin() + 0.1 * v as f32 - 0.5
        })
        .collect();
    Views::from_normalized(data, s, h, w).unwrap()
}

/// The nested model on 6 views in chunks of 4 (0..4, 2..6) ends in one metric scale fitted
/// over all views, as the reference's single pass fits it: the re-fitted factor is the
/// reference's least squares Σ⟨metric, depth⟩ / Σ⟨depth, depth⟩ over the align mask of the
/// whole job (confidence at least the median over every non-sky pixel of all views, non-sky,
/// both depths positive), computed here from the separate passes' outputs (chunk 1's new views
/// moved by its fitted scale s); the first chunk's depth is its separate pass's times that
/// factor, the job's scale factor is chunk 0's times it, and the sky holds one depth for the
/// whole job.
#[test]
fn nested_chunks_end_in_one_metric_scale() {
    use da3::schedule::{DeviceMemory, ScheduleOptions};
    let model = nested_model();
    let (h, w) = (42, 56);
    let n = h * w;
    let views = synthetic_views(6, h, w);
    let options = PredictOptions { ref_view_strategy: RefViewStrategy::First, ..Default::default() };
    let sched = ScheduleOptions { chunk_size: Some(4), ..Default::default() };
    let (pred, report) = model.predict_scheduled(&views, &options, &sched, &DeviceMemory::host()).unwrap();
    assert_eq!(report.chunks, vec![0..4, 2..6]);
    let first = model.predict_with(&views.select(0..4).unwrap(), &options).unwrap();
    let second = model.predict_with(&views.select(2..6).unwrap(), &options).unwrap();
    assert_eq!((first.metric_depth.len(), second.metric_depth.len()), (4 * n, 4 * n));
    let s = report.alignments[0].as_ref().expect("aligned").sim3.scale as f32;
    // The stitched job before the re-fit: views 0..4 of the first pass, 4..6 of the second
    // moved by s. (depth, conf, metric depth, non-sky) per pixel.
    let pixels: Vec<(f32, f32, f32, bool)> = (0..6 * n)
        .map(|i| {
            let (p, j, scale) = if i < 4 * n { (&first, i, 1.0) } else { (&second, i - 2 * n, s) };
            (p.depth[j] * scale, p.conf[j], p.metric_depth[j], p.sky.as_ref().unwrap()[j] < 0.3)
        })
        .collect();
    // torch.quantile(·, 0.5) of the non-sky confidences (linear interpolation; < 100k pixels,
    // so the reference does not sample).
    let median = |px: &[(f32, f32, f32, bool)]| {
        let mut conf: Vec<f64> = px.iter().filter(|p| p.3).map(|p| p.1 as f64).collect();
        conf.sort_by(f64::total_cmp);
        let pos = 0.5 * (conf.len() - 1) as f64;
        let (lo, frac) = (pos.floor() as usize, pos - pos.floor());
        (conf[lo] + frac * (conf[(lo + 1).min(conf.len() - 1)] - conf[lo])) as f32
    };
    // Least-squares sums over the align mask with confidence threshold `t`.
    let sums = |px: &[(f32, f32, f32, bool)], t: f32| {
        let (mut num, mut den) = (0f64, 0f64);
        for &(d, c, m, non_sky) in px {
            if c >= t && non_sky && m > 0.01 && d > 0.001 {
                num += m as f64 * d as f64;
                den += d as f64 * d as f64;
            }
        }
        (num, den)
    };
    let (num, den) = sums(&pixels, median(&pixels));
    let g = num / den;
    // With each chunk's own median (chunk 1's taken over its 4 views, summed over its 2 new
    // ones), as the job fitted before it kept the metric depth: a different factor.
    let chunk1: Vec<(f32, f32, f32, bool)> = (0..4 * n)
        .map(|j| (second.depth[j] * s, second.conf[j], second.metric_depth[j], second.sky.as_ref().unwrap()[j] < 0.3))
        .collect();
    let (n0, d0) = sums(&pixels[..4 * n], median(&pixels[..4 * n]));
    let (n1, d1) = sums(&pixels[4 * n..], median(&chunk1));
    let per_chunk = (n0 + n1) / (d0 + d1);
    println!("nested chunks: all-view median ×{g:.7}; per-chunk medians ×{per_chunk:.7}");
    assert!((per_chunk / g - 1.0).abs() > 1e-4, "the test needs the two medians to select different pixels");
    let refit = report.metric_refit.expect("a chunked nested job is re-fitted");
    let (m0, m1) = (first.scale_factor.unwrap(), second.scale_factor.unwrap());
    println!("nested chunks: factors {m0} and {m1} per chunk; all-view re-fit ×{refit:.6}");
    assert!((refit - g).abs() <= 1e-9 * g, "re-fit {refit} vs {g}");
    assert!((g - 1.0).abs() > 1e-6, "the chunks' own factors differ, so the all-view fit moves the job: {g}");
    let job = pred.scale_factor.unwrap();
    assert!((job as f64 / (m0 as f64 * g) - 1.0).abs() < 1e-6, "{job} vs {m0}·{g}");
    let sky = pred.sky.as_ref().unwrap();
    let mut sky_depth = None;
    for i in 0..6 * h * w {
        if sky[i] < 0.3 {
            if i < 4 * h * w {
                let want = first.depth[i] * g as f32;
                assert!((pred.depth[i] - want).abs() <= 1e-6 * want.abs(), "pixel {i}: {} vs {want}", pred.depth[i]);
            }
        } else {
            assert_eq!(*sky_depth.get_or_insert(pred.depth[i]), pred.depth[i], "one sky depth for the job");
        }
    }
}
