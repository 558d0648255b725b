//! Deterministic inputs and the error measure of the CPU kernels' parity tests.

use crate::backends::Flex;
use burn::tensor::{Tensor, TensorData};

/// A flex tensor of `shape` filled with a fixed pseudo-random pattern in
/// `[shift − scale/2, shift + scale/2)`; `seed` shifts the pattern.
pub(crate) fn pattern<const D: usize>(shape: [usize; D], seed: usize, scale: f32, shift: f32) -> Tensor<Flex, D> {
    let n: usize = shape.iter().product();
    let values: Vec<f32> = (0..n).map(|i| (((i + seed) * 7919 % 1013) as f32 / 1013.0 - 0.5) * scale + shift).collect();
    Tensor::from_data(TensorData::new(values, shape), &Default::default())
}

/// Relative L2 error of `a` against the reference `r`, in f64.
pub(crate) fn rel_l2(a: &[f32], r: &[f32]) -> f64 {
    let num: f64 = a.iter().zip(r).map(|(p, q)| (*p as f64 - *q as f64).powi(2)).sum();
    let den: f64 = r.iter().map(|q| (*q as f64).powi(2)).sum();
    (num / den).sqrt()
}
