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
