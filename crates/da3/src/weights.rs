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

    /// Tells the OS that `data` (a part of these bytes) has been copied out and its pages need
    /// not stay mapped: for a file mapping they leave the process's resident set (the page
    /// cache keeps them; a later read faults them back in, unchanged). Owned bytes are left as
    /// they are. Without it every page of the file stays resident until the map is dropped,
    /// so loading peaked at the file's size plus the built tensors (3.2 GB for da3-large,
    /// whose tensors alone are 1.6 GB).
    pub fn release(&self, data: &[u8]) {
        #[cfg(all(unix, not(target_arch = "wasm32")))]
        if let Self::Mapped(map) = self {
            let start = (data.as_ptr() as usize).wrapping_sub(map.as_ptr() as usize);
            if data.is_empty() || start.checked_add(data.len()).is_none_or(|end| end > map.len()) {
                return; // not inside this map
            }
            // SAFETY: a read-only shared file mapping: MADV_DONTNEED drops the page-table
            // entries, and the next access reads the same file contents back, so every borrow
            // of the bytes keeps seeing the same values. A failure only keeps the pages.
            let _ = unsafe { map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, data.len()) };
        }
        let _ = data;
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
    /// The mapped file the tensors are read from, whose pages are released as each tensor is
    /// copied out ([`WeightBytes::release`]); `None` for plain bytes.
    mapped: Option<&'a WeightBytes>,
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
            mapped: None,
            device: device.clone(),
            used: HashSet::new(),
            ignored_prefixes: Vec::new(),
            problems: Vec::new(),
        })
    }

    /// [`Self::new`] over a [`WeightBytes`], releasing the pages of a mapped file as the
    /// tensors are copied out of it (see [`WeightBytes::release`]).
    pub fn from_weight_bytes(bytes: &'a WeightBytes, source_name: &str, device: &B::Device) -> Result<Self, WeightsError> {
        let mut loader = Self::new(bytes.as_slice(), source_name, device)?;
        loader.mapped = Some(bytes);
        Ok(loader)
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
        let Some(view) = self.view(key, &[rows, cols]) else {
            return Tensor::zeros([1, 1], &self.device);
        };
        // f32 in the file (the released checkpoints): transposed straight from the mapped
        // bytes, without a converted copy first.
        let transposed = match f32_slice(&view) {
            Some(values) => transpose(values, rows, cols),
            None => match self.convert(key, &view) {
                Some(values) => transpose(&values, rows, cols),
                None => return Tensor::zeros([1, 1], &self.device),
            },
        };
        self.release(&view);
        Tensor::from_data(TensorData::new(transposed, [cols, rows]), &self.device)
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
        let view = self.view(key, shape)?;
        let values = match f32_slice(&view) {
            Some(values) => Some(values.to_vec()), // a plain copy out of the mapped file
            None => self.convert(key, &view),
        };
        self.release(&view);
        values
    }

    /// Releases the file pages of a tensor that has been copied out.
    fn release(&self, view: &TensorView<'_>) {
        if let Some(bytes) = self.mapped {
            bytes.release(view.data());
        }
    }

    /// The stored tensor `key`, marked as used, if it exists with `shape` (else the problem
    /// is recorded).
    fn view(&mut self, key: &str, shape: &[usize]) -> Option<TensorView<'a>> {
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
        Some(view)
    }

    /// `view`'s values as f32 (a problem is recorded for a dtype that is not a float).
    fn convert(&mut self, key: &str, view: &TensorView<'_>) -> Option<Vec<f32>> {
        let values = to_f32(view);
        if values.is_none() {
            self.problems.push(WeightProblem::UnsupportedDtype { key: key.into(), dtype: format!("{:?}", view.dtype()) });
        }
        values
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

/// A stored f32 tensor's values, borrowed from the file's bytes (no copy) where they are
/// 4-byte aligned, as safetensors' 8-byte-aligned data offsets make them in a mapped file.
fn f32_slice<'v>(view: &TensorView<'v>) -> Option<&'v [f32]> {
    if view.dtype() != Dtype::F32 || cfg!(target_endian = "big") {
        return None;
    }
    let bytes = view.data();
    // SAFETY: every bit pattern is a valid f32; `align_to` only hands out the aligned middle,
    // which must then be the whole slice.
    let (head, values, tail) = unsafe { bytes.align_to::<f32>() };
    (head.is_empty() && tail.is_empty()).then_some(values)
}

/// `values` [rows, cols] (row-major) transposed into a new row-major [cols, rows].
///
/// By bands of [`TRANSPOSE_BAND`] output rows (source columns), in parallel on the CPU
/// backends' thread pool where there is one: a band walks the source 16 rows at a time and
/// writes each of its output rows' 16 values as one 64-byte line. The loop it replaced (32×32
/// tiles, serial, from a converted copy of the file's values) took 41 % of the CPU samples of a
/// da3-large load (`perf`, 2.6 s load).
fn transpose(values: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    const ROWS_PER_STEP: usize = 16;
    assert_eq!(values.len(), rows * cols, "transpose: [rows, cols] must match the values");
    let mut out: Vec<f32> = Vec::with_capacity(rows * cols);
    if rows * cols == 0 {
        return out;
    }
    let fill = |band: usize, dst: &mut [std::mem::MaybeUninit<f32>]| {
        let c0 = band * TRANSPOSE_BAND;
        let width = dst.len() / rows; // output rows in this band
        for r0 in (0..rows).step_by(ROWS_PER_STEP) {
            let n = ROWS_PER_STEP.min(rows - r0);
            for c in 0..width {
                let line = &mut dst[c * rows + r0..c * rows + r0 + n];
                for (k, slot) in line.iter_mut().enumerate() {
                    slot.write(values[(r0 + k) * cols + c0 + c]);
                }
            }
        }
    };
    let spare = &mut out.spare_capacity_mut()[..rows * cols];
    #[cfg(all(feature = "flex", not(target_arch = "wasm32")))]
    {
        use rayon::prelude::*;
        spare.par_chunks_mut(TRANSPOSE_BAND * rows).enumerate().for_each(|(band, dst)| fill(band, dst));
    }
    #[cfg(not(all(feature = "flex", not(target_arch = "wasm32"))))]
    spare.chunks_mut(TRANSPOSE_BAND * rows).enumerate().for_each(|(band, dst)| fill(band, dst));
    // SAFETY: the bands cover the rows·cols elements, and each band writes every element of
    // its chunk (`width` output rows × all `rows` source rows).
    unsafe { out.set_len(rows * cols) };
    out
}

/// Output rows per task of [`transpose`].
const TRANSPOSE_BAND: usize = 64;

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

#[cfg(test)]
mod tests {
    use super::transpose;

    /// A mapped checkpoint whose pages are released as tensors are copied out: every tensor
    /// (plain and transposed) has the file's values, also when read again after its pages
    /// were released, and the mapped pages leave the resident set.
    #[cfg(all(feature = "flex", unix, not(target_arch = "wasm32")))]
    #[test]
    fn mapped_pages_released_after_copy_read_back_unchanged() {
        use super::{WeightBytes, WeightLoader};
        use safetensors::tensor::TensorView;
        type B = crate::backends::Flex;
        let (rows, cols) = (512, 1024); // 2 MB per tensor: 512 pages
        let values: Vec<Vec<f32>> = (0..3).map(|t| (0..rows * cols).map(|i| (i * 7 + t) as f32 * 0.25).collect()).collect();
        let bytes: Vec<Vec<u8>> = values.iter().map(|v| v.iter().flat_map(|x| x.to_le_bytes()).collect()).collect();
        let views: Vec<(String, TensorView)> = bytes
            .iter()
            .enumerate()
            .map(|(i, b)| (format!("t{i}"), TensorView::new(safetensors::Dtype::F32, vec![rows, cols], b).unwrap()))
            .collect();
        let dir = std::env::temp_dir().join(format!("da3-release-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("model.safetensors");
        safetensors::serialize_to_file(views, None, &path).unwrap();

        let mapped = WeightBytes::map(&path).unwrap();
        let resident = || resident_pages(mapped.as_slice());
        let device = Default::default();
        let data = |t: burn::tensor::Tensor<B, 2>| t.into_data().to_vec::<f32>().unwrap();
        // Plain bytes: every page read stays resident.
        let mut keeps = WeightLoader::<B>::new(mapped.as_slice(), "test", &device).unwrap();
        for t in ["t0", "t1", "t2"] {
            keeps.tensor(t, [rows, cols]);
        }
        let kept = resident();
        assert!(kept >= 3 * 512, "{kept} pages resident after reading 1536 pages of tensors");
        // Over the mapping: each tensor's pages are released once it is copied out.
        let mut loader = WeightLoader::<B>::from_weight_bytes(&mapped, "test", &device).unwrap();
        let plain = loader.tensor("t0", [rows, cols]);
        let transposed = loader.matrix_transposed("t1", [rows, cols]);
        let again = loader.tensor("t0", [rows, cols]); // its pages were released: read back
        let t2 = loader.tensor("t2", [rows, cols]);
        loader.finish("test").unwrap();
        let left = resident();
        assert_eq!(data(plain), values[0]);
        assert_eq!(data(again), values[0]);
        assert_eq!(data(t2), values[2]);
        assert_eq!(data(transposed), transpose(&values[1], rows, cols));
        // What may stay: the header's pages and those the kernel maps around a fault (up to
        // `/proc/sys/vm/fault_around_bytes`, 64 KB, so a few windows at tensor boundaries).
        assert!(left * 8 < kept, "{left} of {kept} pages still resident after every tensor was copied out");
        drop(mapped);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// How many of the pages under `bytes` are resident in this process's page tables
    /// (`mincore` reports the page cache for file mappings, so read `/proc/self/smaps`' Rss of
    /// the mapping instead).
    #[cfg(all(feature = "flex", unix, not(target_arch = "wasm32")))]
    fn resident_pages(bytes: &[u8]) -> usize {
        let start = bytes.as_ptr() as usize;
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let mut in_map = false;
        for line in smaps.lines() {
            if let Some((range, _)) = line.split_once(' ') {
                if let Some((a, b)) = range.split_once('-') {
                    if let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16)) {
                        in_map = a <= start && start < b;
                        continue;
                    }
                }
            }
            if in_map {
                if let Some(kb) = line.strip_prefix("Rss:") {
                    return kb.trim().trim_end_matches("kB").trim().parse::<usize>().unwrap() / 4;
                }
            }
        }
        panic!("mapping not found in /proc/self/smaps");
    }

    #[test]
    fn transpose_matches_index_definition() {
        // Sizes around the band (64) and step (16) edges, and degenerate ones.
        for (rows, cols) in [(1, 1), (3, 5), (16, 64), (17, 65), (130, 7), (7, 130), (33, 200), (0, 4)] {
            let values: Vec<f32> = (0..rows * cols).map(|i| i as f32 * 0.5 - 3.0).collect();
            let t = transpose(&values, rows, cols);
            assert_eq!(t.len(), rows * cols);
            for r in 0..rows {
                for c in 0..cols {
                    assert_eq!(t[c * rows + r], values[r * cols + c], "[{rows}, {cols}] at ({r}, {c})");
                }
            }
        }
    }
}
