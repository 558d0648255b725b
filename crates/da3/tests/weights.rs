//! A wrong or damaged weights file gives one clear error naming every problem, never a panic.

#![cfg(feature = "flex")]

mod common;

use std::collections::HashMap;

use common::fixtures;
use da3::backends::Flex;
use da3::{Da3, Da3Config, Da3Error, WeightProblem, WeightsError};
use safetensors::{tensor::TensorView, Dtype, SafeTensors};

fn config(name: &str) -> Da3Config {
    Da3Config::from_json(&std::fs::read_to_string(fixtures().join(format!("{name}.config.json"))).unwrap()).unwrap()
}

fn weights(name: &str) -> Vec<u8> {
    std::fs::read(fixtures().join(format!("{name}.weights.safetensors"))).unwrap()
}

fn load(cfg: Da3Config, bytes: &[u8]) -> Result<Da3<Flex>, Da3Error> {
    Da3::<Flex>::from_bytes(cfg, bytes, "test.safetensors", &Default::default())
}

fn problems(result: Result<Da3<Flex>, Da3Error>) -> (Vec<WeightProblem>, String) {
    match result {
        Err(e @ Da3Error::Weights(WeightsError::Mismatch { .. })) => {
            let msg = e.to_string();
            let Da3Error::Weights(WeightsError::Mismatch { problems, .. }) = e else { unreachable!() };
            (problems, msg)
        }
        other => panic!("expected a mismatch error, got {other:?}"),
    }
}

/// Re-serializes `bytes` after `edit` changes the tensor map.
fn rewrite(bytes: &[u8], edit: impl FnOnce(&mut HashMap<String, (Dtype, Vec<usize>, Vec<u8>)>)) -> Vec<u8> {
    let st = SafeTensors::deserialize(bytes).unwrap();
    let mut map: HashMap<String, (Dtype, Vec<usize>, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .map(|(k, v)| (k, (v.dtype(), v.shape().to_vec(), v.data().to_vec())))
        .collect();
    edit(&mut map);
    let views: Vec<(String, TensorView<'_>)> = map
        .iter()
        .map(|(k, (d, s, b))| (k.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    safetensors::serialize(views, None).unwrap()
}

#[test]
fn the_fixture_loads_cleanly() {
    load(config("tiny"), &weights("tiny")).unwrap();
}

#[test]
fn truncated_file_is_reported_as_corrupt_with_its_name() {
    let bytes = weights("tiny");
    for cut in [0, 7, 100, bytes.len() / 2, bytes.len() - 1] {
        match load(config("tiny"), &bytes[..cut]) {
            Err(Da3Error::Weights(WeightsError::Corrupt { source_name, .. })) => assert_eq!(source_name, "test.safetensors"),
            other => panic!("cut at {cut}: expected Corrupt, got {other:?}"),
        }
    }
}

#[test]
fn weights_of_another_model_list_missing_and_unexpected_keys() {
    let (problems, msg) = problems(load(config("tiny"), &weights("tiny-swiglu")));
    let missing = |k: &str| problems.iter().any(|p| matches!(p, WeightProblem::Missing { key, expected } if key == k && expected == &vec![128, 32]));
    let unexpected = |k: &str| problems.iter().any(|p| matches!(p, WeightProblem::Unexpected { key, .. } if key == k));
    assert!(missing("model.backbone.pretrained.blocks.0.mlp.fc1.weight"), "{msg}");
    assert!(unexpected("model.backbone.pretrained.blocks.0.mlp.w12.weight"), "{msg}");
    // tiny has 8 blocks, tiny-swiglu 7: block 7 is missing entirely.
    assert!(problems.iter().any(|p| matches!(p, WeightProblem::Missing { key, .. } if key == "model.backbone.pretrained.blocks.7.norm1.weight")));
    assert!(msg.contains("missing key `model.backbone.pretrained.blocks.0.mlp.fc1.weight` (expected shape [128, 32])"), "{msg}");
}

#[test]
fn shape_mismatch_names_key_expected_and_found() {
    let mut cfg = config("tiny");
    cfg.head.features = 32;
    let (problems, msg) = problems(load(cfg, &weights("tiny")));
    assert!(
        problems.contains(&WeightProblem::ShapeMismatch {
            key: "model.head.scratch.layer1_rn.weight".into(),
            expected: vec![32, 8, 3, 3],
            found: vec![16, 8, 3, 3],
        }),
        "{msg}"
    );
    assert!(msg.contains("shape mismatch for `model.head.scratch.layer1_rn.weight`: expected [32, 8, 3, 3], found [16, 8, 3, 3]"));
}

#[test]
fn extra_and_removed_keys_are_both_reported() {
    let bytes = rewrite(&weights("tiny"), |m| {
        m.remove("model.cam_dec.fc_t.bias");
        m.insert("model.head.sky_output_conv2.0.bias".into(), (Dtype::F32, vec![2], vec![0; 8]));
    });
    let (problems, _) = problems(load(config("tiny"), &bytes));
    assert_eq!(
        problems,
        vec![
            WeightProblem::Missing { key: "model.cam_dec.fc_t.bias".into(), expected: vec![3] },
            WeightProblem::Unexpected { key: "model.head.sky_output_conv2.0.bias".into(), found: vec![2] },
        ]
    );
}

#[test]
fn half_precision_checkpoints_load_as_f32() {
    let bytes = rewrite(&weights("tiny"), |m| {
        for (dtype, _, data) in m.values_mut() {
            *data = data
                .chunks_exact(4)
                .flat_map(|b| half::f16::from_f32(f32::from_le_bytes([b[0], b[1], b[2], b[3]])).to_le_bytes())
                .collect();
            *dtype = Dtype::F16;
        }
    });
    load(config("tiny"), &bytes).unwrap();
}

#[test]
fn integer_tensors_are_rejected_by_dtype() {
    let bytes = rewrite(&weights("tiny"), |m| m.get_mut("model.cam_dec.fc_t.bias").unwrap().0 = Dtype::I32);
    let (problems, _) = problems(load(config("tiny"), &bytes));
    assert_eq!(problems, vec![WeightProblem::UnsupportedDtype { key: "model.cam_dec.fc_t.bias".into(), dtype: "I32".into() }]);
}

#[test]
fn a_missing_file_names_the_path() {
    let err = Da3::<Flex>::from_file(config("tiny"), std::path::Path::new("/nonexistent/model.safetensors"), &Default::default()).unwrap_err();
    assert!(err.to_string().starts_with("/nonexistent/model.safetensors:"), "{err}");
}
