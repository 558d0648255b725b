//! The backbone's rotary embedding (rotate-half form, see `crate::backbone::rope`) fused into
//! one pass on Burn's flex backend.
//!
//! Burn's ops run it as seven passes (4 narrows, 2 negations, a concatenation, 2 products and
//! a sum) over q and k, most of them through flex's strided iterator on the head views: ~9 %
//! of a da3-small CPU pass. This kernel reads x through its strides once and computes the same
//! `x·cos + rot(x)·sin` with the same float operations (a product, a product, a sum; no fused
//! multiply-add), so its results are bit-identical to the generic path.

use std::mem::MaybeUninit;

use burn::tensor::{DType, TensorData};
use burn_flex::FlexTensor;

/// `x·cos + rot(x)·sin` for f32 x [B, H, T, hd] (any non-negative strides) and contiguous f32
/// tables [T, hd] -> contiguous [B, H, T, hd]; `rot` is `cat(−x1, x0, −x3, x2)` over the four
/// quarters of the last dim. `None` where it does not apply (dtype, rank, negative strides,
/// hd not a multiple of 4, table shape).
pub(crate) fn rope_apply(x: &FlexTensor, cos: &FlexTensor, sin: &FlexTensor) -> Option<FlexTensor> {
    let layout = x.layout();
    if x.dtype() != DType::F32 || cos.dtype() != DType::F32 || sin.dtype() != DType::F32 || layout.num_dims() != 4 {
        return None;
    }
    let dims = layout.shape();
    let [b, h, t, hd] = [dims[0], dims[1], dims[2], dims[3]];
    let s = layout.strides();
    if s.iter().any(|v| *v < 0) || hd % 4 != 0 || s[3] != 1 {
        return None;
    }
    let (cos, sin) = (table(cos, t, hd)?, table(sin, t, hd)?);
    let data = x.storage::<f32>();
    let (offset, sb, sh, st) = (layout.start_offset(), s[0] as usize, s[1] as usize, s[2] as usize);
    let out = super::flex::par_rows(b * h * t * hd, hd, |row, dst| {
        // [B, H, T, hd], one (b, h, t) row per call
        let (bi, hi, ti) = (row / (h * t), row / t % h, row % t);
        let src = &data[offset + bi * sb + hi * sh + ti * st..][..hd];
        rotate_row(src, &cos[ti * hd..][..hd], &sin[ti * hd..][..hd], dst);
    });
    Some(FlexTensor::from_data(TensorData::new(out, [b, h, t, hd])))
}

multiversion! {
    /// One row: `dst = src·cos + rot(src)·sin` (all of length hd, a multiple of 4).
    fn rotate_row(src: &[f32], cos: &[f32], sin: &[f32], dst: &mut [MaybeUninit<f32>]) = rotate_row_generic
}

/// [`rotate_row`] as four unit-stride loops over the quarters, which LLVM vectorizes:
/// `x0·c − x1·s` equals the generic path's `x0·c + (−x1)·s` exactly (IEEE negation and
/// subtraction are exact sign flips), so the result stays bit-identical.
#[inline(always)]
fn rotate_row_generic(src: &[f32], cos: &[f32], sin: &[f32], dst: &mut [MaybeUninit<f32>]) {
    let q = src.len() / 4;
    for half in [0, 2 * q] {
        let (x0, x1) = (&src[half..half + q], &src[half + q..half + 2 * q]);
        let (c0, c1) = (&cos[half..half + q], &cos[half + q..half + 2 * q]);
        let (s0, s1) = (&sin[half..half + q], &sin[half + q..half + 2 * q]);
        let (d0, d1) = dst[half..half + 2 * q].split_at_mut(q);
        for ((((d, a), b), c), s) in d0.iter_mut().zip(x0).zip(x1).zip(c0).zip(s0) {
            d.write(a * c - b * s);
        }
        for ((((d, a), b), c), s) in d1.iter_mut().zip(x1).zip(x0).zip(c1).zip(s1) {
            d.write(a * c + b * s);
        }
    }
}

/// The contiguous [t, hd] values of a table, `None` for another shape or layout.
fn table(m: &FlexTensor, t: usize, hd: usize) -> Option<&[f32]> {
    let l = m.layout();
    let ok = l.num_dims() == 2 && l.shape()[0] == t && l.shape()[1] == hd;
    let (start, end) = l.contiguous_offsets().filter(|_| ok)?;
    Some(&m.storage::<f32>()[start..end])
}
