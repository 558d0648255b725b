//! Weight shards: the browser downloads a checkpoint as several safetensors files (see
//! `weights/shard.py`); the model loader reads one. This joins them.

use std::borrow::Cow;
use std::collections::BTreeMap;

use safetensors::SafeTensors;

/// Joins safetensors shards into one safetensors buffer (tensors keep their dtype: the model
/// loader converts fp16/bf16 to fp32 itself). A single shard is returned as is, without a
/// copy. Fails on a corrupt shard or a key present in two shards.
pub fn merge_shards(shards: &[Vec<u8>]) -> Result<Cow<'_, [u8]>, String> {
    match shards {
        [] => Err("no weight shards given; pass at least one .safetensors file".into()),
        [one] => Ok(Cow::Borrowed(one.as_slice())),
        many => {
            let mut views = BTreeMap::new();
            for (i, bytes) in many.iter().enumerate() {
                let st = SafeTensors::deserialize(bytes)
                    .map_err(|e| format!("weight shard {i} is not a valid safetensors file: {e}"))?;
                for (name, view) in st.tensors() {
                    if views.insert(name.clone(), view).is_some() {
                        return Err(format!("tensor `{name}` is in two weight shards (second: shard {i})"));
                    }
                }
            }
            let merged = safetensors::serialize(views, None).map_err(|e| format!("joining the weight shards: {e}"))?;
            Ok(Cow::Owned(merged))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use safetensors::tensor::TensorView;
    use safetensors::Dtype;

    fn shard(tensors: &[(&str, &[u8])]) -> Vec<u8> {
        let views: Vec<_> =
            tensors.iter().map(|(n, b)| (n.to_string(), TensorView::new(Dtype::F16, vec![b.len() / 2], b).unwrap())).collect();
        safetensors::serialize(views, None).unwrap()
    }

    #[test]
    fn merged_shards_hold_every_tensor_unchanged() {
        let a = shard(&[("x", &[1, 2, 3, 4])]);
        let b = shard(&[("y", &[5, 6]), ("z", &[7, 8, 9, 10, 11, 12])]);
        let shards = vec![a, b];
        let merged = merge_shards(&shards).unwrap();
        let st = SafeTensors::deserialize(&merged).unwrap();
        assert_eq!(st.tensor("x").unwrap().data(), &[1, 2, 3, 4]);
        assert_eq!(st.tensor("y").unwrap().data(), &[5, 6]);
        assert_eq!(st.tensor("z").unwrap().data(), &[7, 8, 9, 10, 11, 12]);
        assert_eq!(st.tensor("z").unwrap().dtype(), Dtype::F16);
    }

    #[test]
    fn one_shard_is_used_without_a_copy() {
        let shards = vec![shard(&[("x", &[1, 2])])];
        assert!(matches!(merge_shards(&shards).unwrap(), Cow::Borrowed(b) if b.as_ptr() == shards[0].as_ptr()));
    }

    #[test]
    fn no_shards_is_an_error() {
        let err = merge_shards(&[]).unwrap_err();
        assert!(err.contains("no weight shards"), "{err}");
    }

    #[test]
    fn a_corrupt_shard_is_named() {
        let mut bad = shard(&[("y", &[5, 6])]);
        bad.truncate(bad.len() - 1); // the header promises one more byte than there is
        let shards = vec![shard(&[("x", &[1, 2])]), bad];
        let err = merge_shards(&shards).unwrap_err();
        assert!(err.contains("weight shard 1 is not a valid safetensors file"), "{err}");
    }

    #[test]
    fn duplicate_keys_are_refused() {
        let shards = vec![shard(&[("x", &[1, 2])]), shard(&[("x", &[3, 4])])];
        let err = merge_shards(&shards).unwrap_err();
        assert!(err.contains("`x`"), "{err}");
    }
}
