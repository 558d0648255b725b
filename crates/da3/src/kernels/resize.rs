//! Bilinear resize with `align_corners=True` on Burn's flex backend, as PyTorch computes it.
//!
//! burn-flex's bilinear `interpolate` recomputes both source coordinates per output pixel in
//! f64 (`floor`, four weights, conversions): ~10 % of a da3-small CPU pass, all of it in the
//! DPT heads' upsampling. Ours builds the column indices and weights once per call and blends
//! rows, in parallel over output rows, with PyTorch's CPU formula and float arithmetic
//! (`upsample_bilinear2d`: source index `scale · i` with `scale = (in − 1)/(out − 1)` in f32,
//! weights `1 − λ, λ`, result `(p00·w0 + p01·w1)·h0 + (p10·w0 + p11·w1)·h1`), so it is at least
//! as close to the reference as Burn's.

use std::mem::MaybeUninit;

use burn::tensor::{DType, TensorData};
use burn_flex::FlexTensor;

/// Source indices and weights along one axis, PyTorch's `compute_source_index_and_lambda`
/// for `align_corners=True`: (i0, i1, λ0, λ1) per output index.
fn axis_table(input: usize, output: usize) -> Vec<(usize, usize, f32, f32)> {
    let scale = if output > 1 { (input - 1) as f32 / (output - 1) as f32 } else { 0.0 };
    (0..output)
        .map(|o| {
            if input == output {
                return (o, o, 1.0, 0.0);
            }
            let real = scale * o as f32;
            let i0 = (real.floor() as usize).min(input - 1);
            let l1 = (real - i0 as f32).clamp(0.0, 1.0);
            let i1 = if i0 < input - 1 { i0 + 1 } else { i0 };
            (i0, i1, 1.0 - l1, l1)
        })
        .collect()
}

/// [N, C, h0, w0] f32 -> [N, C, h, w] contiguous; `None` for other dtypes or empty inputs.
pub(crate) fn resize_bilinear_aligned(x: &FlexTensor, [out_h, out_w]: [usize; 2]) -> Option<FlexTensor> {
    let layout = x.layout();
    if x.dtype() != DType::F32 || layout.num_dims() != 4 {
        return None;
    }
    let dims = layout.shape();
    let [n, c, in_h, in_w] = [dims[0], dims[1], dims[2], dims[3]];
    if in_h == 0 || in_w == 0 || out_h == 0 || out_w == 0 || n * c == 0 {
        return None;
    }
    let contiguous;
    let src = match layout.contiguous_offsets() {
        Some((start, end)) => &x.storage::<f32>()[start..end],
        None => {
            contiguous = x.to_contiguous();
            contiguous.storage::<f32>()
        }
    };
    let (rows, cols) = (axis_table(in_h, out_h), axis_table(in_w, out_w));
    let planes = n * c;
    let geometry = Geometry { in_h, in_w, out_h, out_w, rows: &rows, cols: &cols };
    let out = if in_h <= out_h && planes >= PLANES_PER_THREAD * rayon::current_num_threads() {
        by_planes(src, planes, &geometry)
    } else {
        by_rows(src, planes, &geometry)
    };
    Some(FlexTensor::from_data(TensorData::new(out, [n, c, out_h, out_w])))
}

/// Planes per thread below which [`by_rows`] runs instead of [`by_planes`] (too few planes to
/// keep every thread busy).
const PLANES_PER_THREAD: usize = 4;

/// Sizes and axis tables of one resize.
struct Geometry<'a> {
    in_h: usize,
    in_w: usize,
    out_h: usize,
    out_w: usize,
    rows: &'a [(usize, usize, f32, f32)],
    cols: &'a [(usize, usize, f32, f32)],
}

/// Parallel over output rows; each blends its two source rows horizontally, then vertically.
fn by_rows(src: &[f32], planes: usize, g: &Geometry) -> Vec<f32> {
    let (in_h, in_w, out_h, out_w) = (g.in_h, g.in_w, g.out_h, g.out_w);
    super::flex::par_rows(planes * out_h * out_w, out_w, |r, dst| {
        // [N, C, h, w], one output row per call
        let (plane, oh) = (r / out_h, r % out_h);
        let (h0, h1, wh0, wh1) = g.rows[oh];
        let base = plane * in_h * in_w;
        let (row0, row1) = (&src[base + h0 * in_w..][..in_w], &src[base + h1 * in_w..][..in_w]);
        for (o, &(w0, w1, ww0, ww1)) in dst.iter_mut().zip(g.cols) {
            o.write((row0[w0] * ww0 + row0[w1] * ww1) * wh0 + (row1[w0] * ww0 + row1[w1] * ww1) * wh1);
        }
    })
}

/// Upsampling, parallel over planes: each source row is blended horizontally once (into a
/// per-thread [in_h, out_w] buffer) instead of once for every output row that reads it (about
/// 2·out_h/in_h times; the table lookups are gathers that do not vectorize), then each output
/// row is a vectorized blend of two of those rows. Same products and sums in the same order as
/// [`by_rows`], so the results are bit-identical.
fn by_planes(src: &[f32], planes: usize, g: &Geometry) -> Vec<f32> {
    use rayon::prelude::*;
    let (in_h, in_w, out_w) = (g.in_h, g.in_w, g.out_w);
    let plane_out = g.out_h * out_w;
    let mut out: Vec<f32> = Vec::with_capacity(planes * plane_out);
    out.spare_capacity_mut()[..planes * plane_out].par_chunks_mut(plane_out).enumerate().for_each(|(p, dst)| {
        let src = &src[p * in_h * in_w..][..in_h * in_w];
        HORIZONTAL.with_borrow_mut(|blended| {
            // Written in place, row by row: collecting a flat_map (a push per value, with its
            // capacity check) was 1–2 % of a da3-small pass.
            blended.resize(in_h * out_w, 0.0);
            for (row, dst) in src.chunks_exact(in_w).zip(blended.chunks_exact_mut(out_w)) {
                for (d, &(w0, w1, ww0, ww1)) in dst.iter_mut().zip(g.cols) {
                    *d = row[w0] * ww0 + row[w1] * ww1;
                }
            }
            for (dst_row, &(h0, h1, wh0, wh1)) in dst.chunks_exact_mut(out_w).zip(g.rows) {
                lerp_rows(&blended[h0 * out_w..][..out_w], &blended[h1 * out_w..][..out_w], wh0, wh1, dst_row);
            }
        });
    });
    // SAFETY: every plane's task wrote all its out_h·out_w values.
    unsafe { out.set_len(planes * plane_out) };
    out
}

thread_local! {
    /// [`by_planes`]' horizontally blended source rows, kept across calls.
    static HORIZONTAL: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

multiversion! {
    /// `dst = a·wa + b·wb`, elementwise.
    fn lerp_rows(a: &[f32], b: &[f32], wa: f32, wb: f32, dst: &mut [MaybeUninit<f32>]) = lerp_rows_generic
}

#[inline(always)]
fn lerp_rows_generic(a: &[f32], b: &[f32], wa: f32, wb: f32, dst: &mut [MaybeUninit<f32>]) {
    for ((d, x), y) in dst.iter_mut().zip(a).zip(b) {
        d.write(x * wa + y * wb);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plane-parallel upsampling path equals the row-parallel one bit for bit, at the
    /// heads' shapes (×2 and to the image size) and at odd ones.
    #[test]
    fn plane_path_is_bit_identical_to_row_path() {
        for ([planes, in_h, in_w], [out_h, out_w]) in [([8, 27, 36], [54, 72]), ([5, 216, 288], [378, 504]), ([3, 9, 13], [37, 50]), ([2, 1, 4], [3, 9])] {
            let src: Vec<f32> = (0..planes * in_h * in_w).map(|i| ((i * 7919 % 613) as f32).sqrt() - 12.0).collect();
            let (rows, cols) = (axis_table(in_h, out_h), axis_table(in_w, out_w));
            let g = Geometry { in_h, in_w, out_h, out_w, rows: &rows, cols: &cols };
            let (a, b) = (by_planes(&src, planes, &g), by_rows(&src, planes, &g));
            assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()), "{planes}x{in_h}x{in_w} -> {out_h}x{out_w}");
        }
    }
}
