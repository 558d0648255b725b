//! LayerNorm over the last dimension on Burn's flex backend, reading its input through strides.
//!
//! burn-flex's `layer_norm` is parallel over rows but first makes its input contiguous, on the
//! calling thread, through its generic strided iterator. The backbone's QK-norm LayerNorms get
//! q and k as strided views of the fused qkv output, so that copy ran serially 16 times per
//! pass at full tensor size: 22 % of the main thread's time in a da3-small pass (perf); the
//! DualDPT head's LayerNorm over the channels of a permuted [BS, h, w, C] view of its NCHW
//! maps did the same at 4M values per view. Here each row is read in place through the strides
//! (gathered when the normalized dim is not unit-stride) and the rows are normalized in
//! parallel into a contiguous output.
//!
//! Numerics: a two-pass mean and variance (biased, as PyTorch's) accumulated in f64 per row
//! (in 8 lane sums, vectorized for AVX-512 / AVX2 at run time),
//! `(x − mean) / √(var + eps)` in f64, then `· γ + β` in f32: within 1e-6 relative L2 of an
//! f64 LayerNorm even for rows with a large mean and a small spread, and of burn-flex's op
//! elsewhere (test below).

use std::mem::MaybeUninit;

use burn::tensor::{backend::Backend, DType, Tensor, TensorData};
use burn_flex::FlexTensor;
use rayon::prelude::*;

use super::flex::{from_flex, into_flex, values};

/// Rows per parallel task.
const ROWS_PER_TASK: usize = 32;

/// LayerNorm of f32 `x` [..., d] (any non-negative strides) with contiguous f32 `gamma`,
/// `beta` [d] -> contiguous [..., d]. `None` where it does not apply.
pub(crate) fn layer_norm(x: &FlexTensor, gamma: &FlexTensor, beta: &FlexTensor, eps: f64) -> Option<FlexTensor> {
    let layout = x.layout();
    let rank = layout.num_dims();
    if x.dtype() != DType::F32 || rank == 0 {
        return None;
    }
    let dims: Vec<usize> = (0..rank).map(|i| layout.shape()[i]).collect();
    let strides = layout.strides();
    let d = dims[rank - 1];
    if d == 0 || strides.iter().any(|s| *s < 0) {
        return None;
    }
    let step = strides[rank - 1] as usize; // stride of the normalized dim
    let (gamma, beta) = (values(gamma)?, values(beta)?);
    if gamma.len() != d || beta.len() != d {
        return None;
    }
    let data = x.storage::<f32>();
    let offset = layout.start_offset();
    let lead = &dims[..rank - 1];
    let lead_strides: Vec<usize> = strides[..rank - 1].iter().map(|s| *s as usize).collect();
    // Element offset of row `r` (row-major over the leading dims).
    let row_start = |mut r: usize| {
        let mut at = offset;
        for (n, s) in lead.iter().zip(&lead_strides).rev() {
            at += (r % n) * s;
            r /= n;
        }
        at
    };
    let rows: usize = lead.iter().product();
    // Written in full below, never zero-filled first (a serial memset on the calling thread).
    let mut out: Vec<f32> = Vec::with_capacity(rows * d);
    out.spare_capacity_mut()[..rows * d].par_chunks_mut(ROWS_PER_TASK * d).enumerate().for_each(|(task, chunk)| {
        let mut gathered = vec![0f32; if step == 1 { 0 } else { d }];
        for (i, dst) in chunk.chunks_exact_mut(d).enumerate() {
            let start = row_start(task * ROWS_PER_TASK + i);
            let src: &[f32] = if step == 1 {
                &data[start..][..d]
            } else {
                // A channels-last view of an NCHW map (the heads' LayerNorm over channels):
                // consecutive rows are neighbouring pixels, so a task's gathers stay in cache.
                gathered.iter_mut().enumerate().for_each(|(j, g)| *g = data[start + j * step]);
                &gathered
            };
            normalize_row(src, gamma, beta, eps, dst);
        }
    });
    // SAFETY: the tasks above wrote every one of the rows·d elements.
    unsafe { out.set_len(rows * d) };
    Some(FlexTensor::from_data(TensorData::new(out, dims)))
}

multiversion! {
    /// One row: `dst = (src − mean) / √(var + eps) · γ + β`.
    fn normalize_row(src: &[f32], gamma: &[f32], beta: &[f32], eps: f64, dst: &mut [MaybeUninit<f32>]) = normalize_row_generic
}

/// Independent f64 accumulators of the row statistics: sums over lanes let LLVM use vector
/// adds without reassociating one serial sum (which it may not do for floats).
const LANES: usize = 8;

/// Sum of `f(x)` over the row, in [`LANES`] f64 partial sums.
#[inline(always)]
fn lane_sum(src: &[f32], f: impl Fn(f32) -> f64) -> f64 {
    let mut acc = [0f64; LANES];
    let chunks = src.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for j in 0..LANES {
            acc[j] += f(c[j]);
        }
    }
    acc.iter().sum::<f64>() + tail.iter().map(|v| f(*v)).sum::<f64>()
}

#[inline(always)]
fn normalize_row_generic(src: &[f32], gamma: &[f32], beta: &[f32], eps: f64, dst: &mut [MaybeUninit<f32>]) {
    let d = src.len() as f64;
    let mean = lane_sum(src, |v| v as f64) / d;
    let var = lane_sum(src, |v| (v as f64 - mean) * (v as f64 - mean)) / d;
    let inv_std = 1.0 / (var + eps).sqrt();
    for (((o, x), g), b) in dst.iter_mut().zip(src).zip(gamma).zip(beta) {
        o.write(((*x as f64 - mean) * inv_std) as f32 * g + b);
    }
}

/// [`layer_norm`] on Burn tensors when `B` is flex and the kernel applies, else `None`.
pub(crate) fn try_layer_norm<B: Backend, const D: usize>(
    x: &Tensor<B, D>,
    gamma: &Tensor<B, 1>,
    beta: &Tensor<B, 1>,
    eps: f64,
) -> Option<Tensor<B, D>> {
    let x = into_flex(x.clone()).ok()?;
    let gamma = into_flex(gamma.clone()).ok()?;
    let beta = into_flex(beta.clone()).ok()?;
    layer_norm(&x, &gamma, &beta, eps).map(from_flex)
}

#[cfg(test)]
mod tests {
    use crate::backends::Flex;
    use burn::tensor::ops::ModuleOps;
    use burn::tensor::{Tensor, TensorPrimitive};

    use crate::kernels::test_support::{pattern as tensor, rel_l2};

    fn burn_layer_norm<const D: usize>(x: Tensor<Flex, D>, g: Tensor<Flex, 1>, b: Tensor<Flex, 1>, eps: f64) -> Vec<f32> {
        let y = Flex::layer_norm(x.into_primitive().tensor(), g.into_primitive().tensor(), Some(b.into_primitive().tensor()), eps);
        Tensor::<Flex, D>::from_primitive(TensorPrimitive::Float(y)).into_data().to_vec::<f32>().unwrap()
    }

    /// LayerNorm of the rows of `x` in f64 (an independent reference).
    fn f64_layer_norm(x: &[f32], g: &[f32], b: &[f32], eps: f64) -> Vec<f32> {
        x.chunks_exact(g.len())
            .flat_map(|row| {
                let d = row.len() as f64;
                let mean = row.iter().map(|v| *v as f64).sum::<f64>() / d;
                let var = row.iter().map(|v| (*v as f64 - mean).powi(2)).sum::<f64>() / d;
                row.iter().zip(g).zip(b).map(move |((v, g), b)| ((*v as f64 - mean) / (var + eps).sqrt() * *g as f64 + *b as f64) as f32)
            })
            .collect()
    }

    /// Ours against an f64 LayerNorm and against burn-flex's `layer_norm` (the op it replaces):
    /// contiguous rows, the QK-norm's strided head view of a fused qkv tensor, and a row count
    /// that is not a multiple of the task size. Rows with a large mean and a small spread
    /// (cancellation) are checked against f64 only: burn-flex's single-pass f32 Welford loses
    /// them (NaN there), our two-pass f64 statistics do not.
    #[test]
    fn matches_burn_layer_norm() {
        let (g, b) = (tensor([64], 7, 2.0, 1.0), tensor([64], 9, 1.0, 0.0));
        let (gv, bv) = (g.to_data().to_vec::<f32>().unwrap(), b.to_data().to_vec::<f32>().unwrap());
        // [B, T, 3·H·hd] -> q as a [B, H, T, hd] view (hd = 64), as in the backbone.
        let qkv = tensor([2, 37, 3 * 4 * 64], 1, 4.0, 0.5);
        let q = qkv.clone().reshape([2, 37, 12, 64]).swap_dims(1, 2).narrow(1, 4, 4);
        // A channels-last view of an NCHW map ([N, C, h, w] -> [N, h, w, C]), as the head's.
        let channels_last = tensor([2, 64, 7, 9], 5, 3.0, -0.2).permute([0, 2, 3, 1]);
        let cases: Vec<(Tensor<Flex, 4>, f64, bool)> = vec![
            (tensor([1, 2, 33, 64], 3, 1.0, 0.0), 1e-5, true),
            (q, 1e-5, true),
            (channels_last, 1e-5, true),
            (tensor([1, 1, 5, 64], 4, 0.01, 100.0), 1e-6, false),
        ];
        for (case, (x, eps, against_burn)) in cases.into_iter().enumerate() {
            let ours = super::try_layer_norm(&x, &g, &b, eps).expect("kernel applies");
            assert_eq!(ours.dims(), x.dims());
            let ours = ours.into_data().to_vec::<f32>().unwrap();
            let exact = f64_layer_norm(&x.to_data().to_vec::<f32>().unwrap(), &gv, &bv, eps);
            let err = rel_l2(&ours, &exact);
            assert!(err < 1e-6, "case {case}: rel L2 to f64 {err:.2e}");
            if against_burn {
                let err = rel_l2(&ours, &burn_layer_norm(x, g.clone(), b.clone(), eps));
                assert!(err < 1e-6, "case {case}: rel L2 to burn-flex {err:.2e}");
            }
        }
    }

    /// Parameters of the wrong size are declined (Burn's op reports them).
    #[test]
    fn declines_mismatched_parameters() {
        let b = tensor([8], 2, 1.0, 0.0);
        assert!(super::try_layer_norm(&tensor([5, 8], 3, 1.0, 0.0), &tensor([7], 1, 1.0, 1.0), &b, 1e-5).is_none());
        assert!(super::try_layer_norm(&tensor([5, 8], 3, 1.0, 0.0), &b, &tensor([9], 1, 1.0, 1.0), 1e-5).is_none());
    }
}
