//! Loading of Hugging Face `model.safetensors` checkpoints into the model.
//!
//! The model is built directly from the file: every module asks the [`WeightLoader`] for its
//! tensors by key and expected shape. The loader never stops at the first problem: it records
//! every missing key, shape mismatch and bad dtype, then reports the keys nobody asked for, so
//! a wrong file produces one complete, actionable error instead of a panic.

use std::collections::{BTreeMap, HashSet};

use burn::tensor::{backend::Backend, Tensor, TensorData};
use safetensors::{tensor::TensorView, Dtype, SafeTensors};

use crate::error::{WeightProblem, WeightsError};

/// Raw bytes of a safetensors file: memory-mapped from disk, or owned (tests, browser).
pub enum WeightBytes {
    /// Owned bytes, e.g. fetched over the network.
    Owned(Vec<u8>),
    /// A read-only memory map of a file on disk.
    #[cfg(not(target_arch = "wasm32"))]
    Mapped(memmap2::Mmap),
}

impl WeightBytes {
    /// Memory-maps `path` (no copy until tensors are uploaded to the device).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn map(path: &std::path::Path) -> Result<Self, crate::Da3Error> {
        let io = |source| crate::Da3Error::Io { path: path.display().to_string(), source };
        let file = std::fs::File::open(path).map_err(io)?;
        // SAFETY: the map is read-only; a file truncated by another process while mapped is the
        // usual mmap caveat, accepted here as by every safetensors loader.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
        Ok(Self::Mapped(map))
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        match self {
            Self::Owned(v) => v,
            #[cfg(not(target_arch = "wasm32"))]
            Self::Mapped(m) => m,
        }
    }
}

/// Hands out tensors by key to the modules being built, and audits the file.
pub struct WeightLoader<'a, B: Backend> {
    source_name: String,
    tensors: SafeTensors<'a>,
    device: B::Device,
    used: HashSet<String>,
    ignored_prefixes: Vec<String>,
    problems: Vec<WeightProblem>,
}

impl<'a, B: Backend> WeightLoader<'a, B> {
    /// Parses the safetensors header of `bytes`; `source_name` names the file in errors.
    pub fn new(bytes: &'a [u8], source_name: &str, device: &B::Device) -> Result<Self, WeightsError> {
        let tensors = SafeTensors::deserialize(bytes).map_err(|e| WeightsError::Corrupt {
            source_name: source_name.to_string(),
            reason: e.to_string(),
        })?;
        Ok(Self {
            source_name: source_name.to_string(),
            tensors,
            device: device.clone(),
            used: HashSet::new(),
            ignored_prefixes: Vec::new(),
            problems: Vec::new(),
        })
    }

    /// The device tensors are created on.
    pub fn device(&self) -> &B::Device {
        &self.device
    }

    /// Whether the file holds `key`.
    pub fn contains(&self, key: &str) -> bool {
        self.tensors.tensor(key).is_ok()
    }

    /// Marks every key under `prefix` as known but deliberately not loaded (e.g. the unused
    /// aux head levels), so it is neither loaded nor reported as unexpected.
    pub fn ignore_prefix(&mut self, prefix: &str) {
        self.ignored_prefixes.push(prefix.to_string());
    }

    /// The tensor stored under `key`, checked against `shape` and converted to float32.
    ///
    /// On a problem the problem is recorded and a small placeholder is returned, so that
    /// building continues and all problems are reported together by [`Self::finish`].
    pub fn tensor<const D: usize>(&mut self, key: &str, shape: [usize; D]) -> Tensor<B, D> {
        match self.read(key, &shape) {
            Some(values) => Tensor::from_data(TensorData::new(values, shape), &self.device),
            None => Tensor::zeros([1; D], &self.device),
        }
    }

    /// The 2-d tensor `key` of shape [rows, cols], transposed on the host: a contiguous
    /// [cols, rows] tensor. (A transposed *view* would be copied again on every use: Burn's
    /// `linear` reshapes its weight, which materializes a non-contiguous one each call.)
    pub fn matrix_transposed(&mut self, key: &str, [rows, cols]: [usize; 2]) -> Tensor<B, 2> {
        match self.read(key, &[rows, cols]) {
            Some(values) => {
                // In 32×32 tiles: a plain column-order write misses the cache on every element
                // (seconds for a large model).
                const TILE: usize = 32;
                let mut t = vec![0f32; values.len()];
                for r0 in (0..rows).step_by(TILE) {
                    for c0 in (0..cols).step_by(TILE) {
                        for r in r0..(r0 + TILE).min(rows) {
                            for c in c0..(c0 + TILE).min(cols) {
                                t[c * rows + r] = values[r * cols + c];
                            }
                        }
                    }
                }
                Tensor::from_data(TensorData::new(t, [cols, rows]), &self.device)
            }
            None => Tensor::zeros([1, 1], &self.device),
        }
    }

    /// Like [`Self::tensor`] but reads the first key of `keys` that the file holds. Used where
    /// `safetensors.save_model` stored one copy of a tensor shared under several names.
    pub fn tensor_any<const D: usize>(&mut self, keys: &[String], shape: [usize; D]) -> Tensor<B, D> {
        let key = keys.iter().find(|k| self.contains(k)).unwrap_or(&keys[0]).clone();
        for k in keys {
            // The aliases are one tensor: none of them is unexpected.
            self.used.insert(k.clone());
        }
        self.tensor(&key, shape)
    }

    fn read(&mut self, key: &str, shape: &[usize]) -> Option<Vec<f32>> {
        let view = match self.tensors.tensor(key) {
            Ok(v) => v,
            Err(_) => {
                self.problems.push(WeightProblem::Missing { key: key.into(), expected: shape.to_vec() });
                return None;
            }
        };
        self.used.insert(key.to_string());
        if view.shape() != shape {
            self.problems.push(WeightProblem::ShapeMismatch {
                key: key.into(),
                expected: shape.to_vec(),
                found: view.shape().to_vec(),
            });
            return None;
        }
        match to_f32(&view) {
            Some(v) => Some(v),
            None => {
                self.problems.push(WeightProblem::UnsupportedDtype {
                    key: key.into(),
                    dtype: format!("{:?}", view.dtype()),
                });
                None
            }
        }
    }

    /// Ends loading: an error listing every problem, with unexpected keys, or `Ok`.
    /// `model` names the model in the message.
    pub fn finish(mut self, model: &str) -> Result<(), WeightsError> {
        let mut unexpected: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (name, view) in self.tensors.tensors() {
            let ignored = self.ignored_prefixes.iter().any(|p| name.starts_with(p.as_str()));
            if !self.used.contains(&name) && !ignored {
                unexpected.insert(name, view.shape().to_vec());
            }
        }
        for (key, found) in unexpected {
            self.problems.push(WeightProblem::Unexpected { key, found });
        }
        if self.problems.is_empty() {
            Ok(())
        } else {
            Err(WeightsError::Mismatch {
                source_name: self.source_name,
                model: model.to_string(),
                problems: self.problems,
            })
        }
    }
}

/// Converts a stored tensor of any float dtype to float32 values.
fn to_f32(view: &TensorView<'_>) -> Option<Vec<f32>> {
    let bytes = view.data();
    let values = match view.dtype() {
        Dtype::F32 => bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
        Dtype::F16 => bytes
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Dtype::BF16 => bytes
            .chunks_exact(2)
            .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Dtype::F64 => bytes
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")) as f32)
            .collect(),
        _ => return None,
    };
    Some(values)
}
