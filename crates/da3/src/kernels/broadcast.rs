//! Additions between our kernels behind one function each, with parallel, in-place paths on
//! Burn's flex backend: `x [N, ...] + y [1, ...]` (one tensor added to every item of a batch),
//! `x + y` (same shapes: the heads' residual units) and `x + y · γ` (a transformer block's
//! LayerScale residual). burn-flex runs binary ops on the calling thread while the thread pool
//! waits (`tools/bench/serial_profile.sh`: the backbone's residuals and the heads' additions
//! were a quarter of a da3-small pass's serial time).
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

/// `x + y` for tensors of the same shape (`y`'s storage is reused for the sum where it is not
/// shared). Bit-identical to Burn's `x + y`.
pub fn add<B: Backend, const D: usize>(x: Tensor<B, D>, y: Tensor<B, D>) -> Tensor<B, D> {
    #[cfg(all(feature = "flex", not(target_arch = "wasm32")))]
    let (x, y) = match flex::add_scaled(x, y, None) {
        Ok(sum) => return sum,
        Err(operands) => operands,
    };
    x + y
}

/// `x + y · γ` with `γ` [C] along the last dimension of `x` and `y` (same shapes): a
/// transformer block's LayerScale residual. Bit-identical to Burn's `x + y * γ` (a product
/// rounded, then a sum; no fused multiply-add).
pub fn add_scaled<B: Backend, const D: usize>(x: Tensor<B, D>, y: Tensor<B, D>, gamma: &Tensor<B, 1>) -> Tensor<B, D> {
    #[cfg(all(feature = "flex", not(target_arch = "wasm32")))]
    let (x, y) = match flex::add_scaled(x, y, Some(gamma)) {
        Ok(sum) => return sum,
        Err(operands) => operands,
    };
    let c = gamma.dims()[0];
    let mut shape = [1; D];
    shape[D - 1] = c;
    x + y * gamma.clone().reshape(shape)
}

#[cfg(all(feature = "flex", not(target_arch = "wasm32")))]
mod flex {
    use super::super::flex::{into_flex, update_in_place, values};
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

    /// `x + y · γ` (`γ` along the last dimension; `None`: `x + y`) into `y`'s storage when `B`
    /// is flex, all are f32, `x` and `y` contiguous with equal shapes; gives both back
    /// otherwise.
    #[allow(clippy::type_complexity)]
    pub(super) fn add_scaled<B: Backend, const D: usize>(
        x: Tensor<B, D>,
        y: Tensor<B, D>,
        gamma: Option<&Tensor<B, 1>>,
    ) -> Result<Tensor<B, D>, (Tensor<B, D>, Tensor<B, D>)> {
        let c = x.dims()[D - 1];
        if D == 0 || x.dims() != y.dims() || x.dtype() != DType::F32 || y.dtype() != DType::F32 || c == 0 {
            return Err((x, y));
        }
        let gamma = match gamma {
            Some(g) if g.dims()[0] != c || g.dtype() != DType::F32 => return Err((x, y)),
            Some(g) => match into_flex(g.clone()) {
                Ok(g) => Some(g),
                Err(_) => return Err((x, y)),
            },
            None => None,
        };
        let gamma_values = match &gamma {
            Some(g) => match values(g) {
                Some(v) => Some(v),
                None => return Err((x, y)),
            },
            None => None,
        };
        let x_flex = match into_flex(x.clone()) {
            Ok(t) => t,
            Err(x) => return Err((x, y)),
        };
        let Some(xs) = values(&x_flex) else { return Err((x, y)) };
        // Chunks of whole rows, so that γ lines up with each chunk's start.
        let chunk = (CHUNK / c).max(1) * c;
        update_in_place(y, |ys| {
            ys.par_chunks_mut(chunk).zip(xs.par_chunks(chunk)).for_each(|(yc, xc)| match gamma_values {
                Some(g) => yc.chunks_exact_mut(c).zip(xc.chunks_exact(c)).for_each(|(yr, xr)| {
                    for ((y, x), g) in yr.iter_mut().zip(xr).zip(g) {
                        *y = *x + *y * *g;
                    }
                }),
                None => yc.iter_mut().zip(xc).for_each(|(y, x)| *y = *x + *y),
            })
        })
        .map_err(|y| (x, y))
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

    /// `add` and `add_scaled` equal Burn's ops bit for bit: fresh and shared operands, a
    /// strided (declined, Burn's op) one, a rank-4 map.
    #[test]
    fn residual_adds_match_burn() {
        let gamma = tensor([384], 9);
        let cases = [(tensor([2, 973, 384], 1), tensor([2, 973, 384], 2)), (tensor([1, 384, 50], 3).swap_dims(1, 2), tensor([1, 50, 384], 4))];
        for (x, y) in cases {
            let scaled = (x.clone() + y.clone() * gamma.clone().reshape([1, 1, 384])).into_data().to_vec::<f32>().unwrap();
            let summed = (x.clone() + y.clone()).into_data().to_vec::<f32>().unwrap();
            let y_held = y.clone();
            let x_held = x.clone();
            let ours = super::add_scaled(x.clone(), y.clone(), &gamma).into_data().to_vec::<f32>().unwrap();
            assert_eq!(ours, scaled);
            assert_eq!(super::add(x, y).into_data().to_vec::<f32>().unwrap(), summed);
            // Operands held elsewhere are unchanged.
            assert_eq!((x_held + y_held).into_data().to_vec::<f32>().unwrap(), summed);
        }
        let map = (tensor([2, 64, 27, 36], 5), tensor([2, 64, 27, 36], 6));
        let expected = (map.0.clone() + map.1.clone()).into_data().to_vec::<f32>().unwrap();
        assert_eq!(super::add(map.0, map.1).into_data().to_vec::<f32>().unwrap(), expected);
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
