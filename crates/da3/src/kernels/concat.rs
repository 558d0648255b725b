//! `cat([a, b], last dim)` behind one function, with a parallel path on Burn's flex backend.
//!
//! The backbone concatenates the local and global halves of every out layer's tokens
//! ([B, S, 1+N, D] ‖ [B, S, 1+N, D]) and again after normalizing the global half. burn-flex's
//! `cat` copies on the calling thread while the thread pool waits (`serial_profile.sh`: about a
//! quarter of a 2-view da3-small pass's remaining serial time).

use burn::tensor::{backend::Backend, Tensor};

/// `cat([a, b], D − 1)`: tensors equal in every dimension but the last. Bit-identical to Burn's.
pub fn cat_last_dim<B: Backend, const D: usize>(a: Tensor<B, D>, b: Tensor<B, D>) -> Tensor<B, D> {
    #[cfg(all(feature = "flex", not(target_arch = "wasm32")))]
    let (a, b) = match flex::cat_last_dim(a, b) {
        Ok(out) => return out,
        Err(operands) => operands,
    };
    Tensor::cat(vec![a, b], D - 1)
}

#[cfg(all(feature = "flex", not(target_arch = "wasm32")))]
mod flex {
    use super::super::flex::{from_flex, into_flex, SharedOut};
    use burn::tensor::{backend::Backend, DType, Tensor, TensorData};
    use burn_flex::FlexTensor;
    use rayon::prelude::*;

    /// Rows per parallel task.
    const ROWS_PER_TASK: usize = 64;

    /// A tensor seen as rows of its last dimension: unit stride inside a row, and the leading
    /// dimensions collapsing to one uniform row stride (contiguous tensors and views that
    /// narrow the last dimension).
    struct Rows<'a> {
        data: &'a [f32],
        offset: usize,
        stride: usize,
        width: usize,
    }

    impl<'a> Rows<'a> {
        fn of(t: &'a FlexTensor) -> Option<Self> {
            let layout = t.layout();
            let (shape, strides) = (layout.shape(), layout.strides());
            let d = shape.num_dims();
            if t.dtype() != DType::F32 || d < 2 || strides[d - 1] != 1 || strides.iter().any(|s| *s < 0) {
                return None;
            }
            let stride = strides[d - 2] as usize;
            let mut expected = stride;
            for i in (0..d - 2).rev() {
                expected *= shape[i + 1];
                if shape[i] > 1 && strides[i] as usize != expected {
                    return None;
                }
            }
            Some(Self { data: t.storage::<f32>(), offset: layout.start_offset(), stride, width: shape[d - 1] })
        }

        fn row(&self, r: usize) -> &[f32] {
            &self.data[self.offset + r * self.stride..][..self.width]
        }
    }

    /// Our path when `B` is flex and both are f32 rows (see [`Rows`]) with equal leading
    /// dimensions; gives both back otherwise.
    #[allow(clippy::type_complexity)]
    pub(super) fn cat_last_dim<B: Backend, const D: usize>(
        a: Tensor<B, D>,
        b: Tensor<B, D>,
    ) -> Result<Tensor<B, D>, (Tensor<B, D>, Tensor<B, D>)> {
        let (ad, bd) = (a.dims(), b.dims());
        if D < 2 || ad[..D - 1] != bd[..D - 1] {
            return Err((a, b));
        }
        let (fa, fb) = match (into_flex(a.clone()), into_flex(b.clone())) {
            (Ok(fa), Ok(fb)) => (fa, fb),
            _ => return Err((a, b)),
        };
        let (Some(ra), Some(rb)) = (Rows::of(&fa), Rows::of(&fb)) else { return Err((a, b)) };
        let rows: usize = ad[..D - 1].iter().product();
        let width = ra.width + rb.width;
        let mut out = Vec::with_capacity(rows * width);
        let dst = SharedOut::spare(&mut out);
        (0..rows.div_ceil(ROWS_PER_TASK)).into_par_iter().for_each(|task| {
            for r in task * ROWS_PER_TASK..rows.min((task + 1) * ROWS_PER_TASK) {
                // SAFETY: row r of the output (width values) belongs to this task alone.
                unsafe {
                    let at = dst.get().add(r * width);
                    std::ptr::copy_nonoverlapping(ra.row(r).as_ptr(), at, ra.width);
                    std::ptr::copy_nonoverlapping(rb.row(r).as_ptr(), at.add(ra.width), rb.width);
                }
            }
        });
        // SAFETY: every row was written in full above.
        unsafe { out.set_len(rows * width) };
        let mut shape = ad;
        shape[D - 1] = width;
        Ok(from_flex(FlexTensor::from_data(TensorData::new(out, shape))))
    }
}

#[cfg(test)]
mod tests {
    use crate::backends::Flex;
    use crate::kernels::test_support::pattern;
    use burn::tensor::Tensor;

    /// Equal to Burn's `cat` on the last dimension: contiguous halves, narrowed views of one
    /// tensor (as `to_features` passes), a transposed operand (declined: Burn's op), rank 3.
    #[test]
    fn matches_burn_cat() {
        let whole: Tensor<Flex, 4> = pattern([2, 3, 50, 96], 1, 1.0, 0.0);
        let cases: Vec<(Tensor<Flex, 4>, Tensor<Flex, 4>)> = vec![
            (pattern([2, 3, 50, 48], 2, 1.0, 0.0), pattern([2, 3, 50, 48], 3, 1.0, 0.0)),
            (whole.clone().narrow(3, 0, 48), whole.clone().narrow(3, 48, 48)),
            (whole.clone().narrow(3, 10, 20), pattern([2, 3, 50, 7], 4, 1.0, 0.0)),
            (pattern([2, 3, 48, 50], 5, 1.0, 0.0).swap_dims(2, 3), pattern([2, 3, 50, 5], 6, 1.0, 0.0)),
        ];
        for (a, b) in cases {
            let expected = Tensor::cat(vec![a.clone(), b.clone()], 3);
            let ours = super::cat_last_dim(a, b);
            assert_eq!(ours.dims(), expected.dims());
            assert_eq!(ours.into_data().to_vec::<f32>().unwrap(), expected.into_data().to_vec::<f32>().unwrap());
        }
        let (a, b): (Tensor<Flex, 3>, Tensor<Flex, 3>) = (pattern([4, 9, 3], 7, 1.0, 0.0), pattern([4, 9, 11], 8, 1.0, 0.0));
        let expected = Tensor::cat(vec![a.clone(), b.clone()], 2).into_data().to_vec::<f32>().unwrap();
        assert_eq!(super::cat_last_dim(a, b).into_data().to_vec::<f32>().unwrap(), expected);
    }
}
