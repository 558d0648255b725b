//! `x [N, ...] + y [1, ...]` (one tensor added to every item of a batch) behind one function,
//! with a parallel, in-place path on Burn's flex backend.
//!
//! burn-flex runs a binary op whose operands differ in shape through its generic broadcast
//! loop on the calling thread. The heads add their cached UV embedding ([1, C, h, w]) to the
//! feature maps of every view this way; with 2 views at 504×378 that was 0.5 s of serial work
//! per da3-small pass (perf), more than the rest of the head. With one view the shapes are
//! equal and Burn's fast path runs, which is why single-view passes did not show it.

use burn::tensor::{backend::Backend, Tensor};

/// `x + y` with `y` of batch size 1 broadcast over `x`'s first dimension.
pub fn add_to_each<B: Backend, const D: usize>(x: Tensor<B, D>, y: &Tensor<B, D>) -> Tensor<B, D> {
    #[cfg(all(feature = "flex", not(target_arch = "wasm32")))]
    let x = match flex::add_to_each(x, y) {
        Ok(sum) => return sum,
        Err(x) => x,
    };
    x + y.clone()
}

#[cfg(all(feature = "flex", not(target_arch = "wasm32")))]
mod flex {
    use super::super::flex::{into_flex, update_in_place};
    use burn::tensor::{backend::Backend, DType, Tensor};
    use rayon::prelude::*;

    /// Elements per parallel task.
    const CHUNK: usize = 1 << 15;

    /// Our path when `B` is flex, both are f32 and contiguous, `y` has batch size 1 and the
    /// other dimensions match; gives `x` back otherwise.
    pub(super) fn add_to_each<B: Backend, const D: usize>(x: Tensor<B, D>, y: &Tensor<B, D>) -> Result<Tensor<B, D>, Tensor<B, D>> {
        let (xd, yd) = (x.dims(), y.dims());
        if D == 0 || yd[0] != 1 || xd[1..] != yd[1..] || y.dtype() != DType::F32 {
            return Err(x);
        }
        let Ok(y) = into_flex(y.clone()) else { return Err(x) };
        let Some((ys, ye)) = y.layout().contiguous_offsets() else { return Err(x) };
        let item = &y.storage::<f32>()[ys..ye];
        update_in_place(x, |data| {
            data.par_chunks_mut(item.len()).for_each(|one| {
                one.par_chunks_mut(CHUNK).zip(item.par_chunks(CHUNK)).for_each(|(a, b)| {
                    a.iter_mut().zip(b).for_each(|(a, b)| *a += b);
                })
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::backends::Flex;
    use crate::kernels::test_support::pattern;
    use burn::tensor::Tensor;

    fn tensor<const D: usize>(shape: [usize; D], seed: usize) -> Tensor<Flex, D> {
        pattern(shape, seed, 1.0, 0.0)
    }

    /// Equal to Burn's broadcasting add, bit for bit (one f32 addition per element), for a
    /// batch of 3, a batch of 1, a tensor that is shared (not overwritten) and a strided one.
    #[test]
    fn matches_burn_broadcast_add() {
        let y = tensor([1, 5, 70, 130], 2);
        for x in [tensor([3, 5, 70, 130], 1), tensor([1, 5, 70, 130], 3), tensor([2, 130, 70, 5], 4).permute([0, 3, 2, 1])] {
            let expected = (x.clone() + y.clone()).into_data().to_vec::<f32>().unwrap();
            let shared = x.clone();
            let ours = super::add_to_each(x, &y).into_data().to_vec::<f32>().unwrap();
            assert_eq!(ours, expected);
            // The input held elsewhere is unchanged.
            let again = (shared + y.clone()).into_data().to_vec::<f32>().unwrap();
            assert_eq!(again, expected);
        }
    }
}
