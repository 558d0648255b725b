//! Reference-view selection for S ≥ 3 views, and the view reordering around it.
//!
//! Everything stays on the device (no readback), so the same code can run in a browser where
//! reading a tensor back is asynchronous.

use std::str::FromStr;

use burn::tensor::{backend::Backend, Int, Tensor};

use crate::kernels::matmul::matmul;

/// Views needed before a reference view is selected (`THRESH_FOR_REF_SELECTION`).
pub const MIN_VIEWS_FOR_SELECTION: usize = 3;

/// How the reference view (the one the world frame is tied to) is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RefViewStrategy {
    /// View 0.
    First,
    /// View S / 2.
    Middle,
    /// The view closest to the middle of the range of cls-token similarity, norm and variance.
    #[default]
    SaddleBalanced,
    /// The view with the widest range of cosine similarity to the others.
    SaddleSimRange,
}

impl FromStr for RefViewStrategy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "first" => Ok(Self::First),
            "middle" => Ok(Self::Middle),
            "saddle_balanced" => Ok(Self::SaddleBalanced),
            "saddle_sim_range" => Ok(Self::SaddleSimRange),
            other => Err(format!(
                "unknown reference-view strategy `{other}`; use first, middle, saddle_balanced or saddle_sim_range"
            )),
        }
    }
}

/// The selected view index, [1], from the cls tokens of one scene's views `cls` [S, C].
pub fn select_reference_view<B: Backend>(cls: Tensor<B, 2>, strategy: RefViewStrategy) -> Tensor<B, 1, Int> {
    let [s, _] = cls.dims();
    let device = cls.device();
    match strategy {
        RefViewStrategy::First => Tensor::from_ints([0], &device),
        RefViewStrategy::Middle => Tensor::from_ints([(s / 2) as i32], &device),
        RefViewStrategy::SaddleBalanced => {
            let norm = cls.clone().powi_scalar(2).sum_dim(1).sqrt(); // [S, 1]
            let unit = cls / norm.clone(); // [S, C]
            let sim = matmul(unit.clone(), unit.clone().transpose()) - Tensor::eye(s, &device); // [S, S]
            let sim_score = sim.sum_dim(1).div_scalar((s - 1) as f32); // [S, 1]
            let var = unit.var(1); // [S, 1], unbiased as torch.var
            let balance = (normalize(sim_score) - 0.5).abs() + (normalize(norm) - 0.5).abs() + (normalize(var) - 0.5).abs();
            first_best(balance.neg())
        }
        RefViewStrategy::SaddleSimRange => {
            let unit = cls.clone() / cls.powi_scalar(2).sum_dim(1).sqrt();
            let sim = matmul(unit.clone(), unit.transpose()) - Tensor::eye(s, &device); // [S, S]
            let range = sim.clone().max_dim(1) - sim.min_dim(1); // [S, 1]
            first_best(range)
        }
    }
}

/// Relative margin under which two scores count as tied.
const TIE_TOLERANCE: f32 = 1e-6;

/// Index [1] of the largest score [S, 1]; among scores within [`TIE_TOLERANCE`] of the best,
/// the lowest index. torch's argmax/argmin return the first index on exact ties, and ties are
/// structural here (with 3 views, `saddle_sim_range` scores two views with the same pair
/// similarity), so float noise between implementations must not decide them.
fn first_best<B: Backend>(score: Tensor<B, 2>) -> Tensor<B, 1, Int> {
    let [s, _] = score.dims();
    let best = score.clone().max_dim(0); // [1, 1]
    let margin = best.clone().abs().clamp_min(1.0) * TIE_TOLERANCE;
    let near_best = score.greater_equal((best - margin).expand([s, 1])); // [S, 1]
    // Weight S - i for near-best views, 0 otherwise: the argmax is the first near-best view.
    let rank = Tensor::<B, 1, Int>::arange(0..s as i64, &near_best.device()).neg().add_scalar(s as i64).float().reshape([s, 1]);
    (near_best.float() * rank).argmax(0).reshape([1])
}

/// Min-max normalization over the views (dim 0) with the reference's 1e-8.
fn normalize<B: Backend>(m: Tensor<B, 2>) -> Tensor<B, 2> {
    let min = m.clone().min_dim(0);
    let max = m.clone().max_dim(0);
    (m - min.clone()) / (max - min + 1e-8)
}

/// Gather indices [S] that move view `r` to the front: `[r, 0, .., r-1, r+1, .., S-1]`.
pub fn reorder_indices<B: Backend>(r: Tensor<B, 1, Int>, s: usize) -> Tensor<B, 1, Int> {
    let p = Tensor::<B, 1, Int>::arange(0..s as i64, &r.device());
    let r = r.expand([s]);
    let shifted = p.clone().sub_scalar(1);
    let idx = p.clone().mask_where(p.clone().lower_equal(r.clone()), shifted); // 1..=r take p-1
    idx.mask_where(p.equal_elem(0), r) // position 0 takes r
}

/// Gather indices [S] that undo [`reorder_indices`].
pub fn restore_indices<B: Backend>(r: Tensor<B, 1, Int>, s: usize) -> Tensor<B, 1, Int> {
    let t = Tensor::<B, 1, Int>::arange(0..s as i64, &r.device());
    let r = r.expand([s]);
    let idx = t.clone().mask_where(t.clone().lower(r.clone()), t.clone().add_scalar(1)); // before r: from t+1
    idx.mask_where(t.clone().equal(r), t.zeros_like()) // r: from 0
}

#[cfg(all(test, feature = "flex"))]
mod tests {
    use super::*;
    use crate::backends::Flex;

    fn ints(t: Tensor<Flex, 1, Int>) -> Vec<i64> {
        t.into_data().convert::<i64>().into_vec().unwrap()
    }

    #[test]
    fn reorder_and_restore_are_inverse_permutations() {
        let dev = Default::default();
        for s in 1..6 {
            for r in 0..s {
                let rt = Tensor::<Flex, 1, Int>::from_ints([r as i32], &dev);
                let fwd = ints(reorder_indices(rt.clone(), s));
                let mut expect = vec![r as i64];
                expect.extend((0..s as i64).filter(|&v| v != r as i64));
                assert_eq!(fwd, expect, "s={s} r={r}");
                let back = ints(restore_indices(rt, s));
                let composed: Vec<i64> = back.iter().map(|&i| fwd[i as usize]).collect();
                assert_eq!(composed, (0..s as i64).collect::<Vec<_>>(), "s={s} r={r}");
            }
        }
    }
}
