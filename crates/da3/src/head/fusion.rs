//! The top-down fusion of the DPT heads: `ResidualConvUnit`, `FeatureFusionBlock` and the
//! chain `refinenet4 -> refinenet3 -> refinenet2 -> refinenet1` (`model/dpt.py`).

use burn::module::Module;
use burn::tensor::{backend::Backend, Tensor};

use super::upsample::resize_bilinear_aligned;
use crate::kernels::broadcast::add;
use crate::nn::{Conv2d, ConvSpec};
use crate::weights::WeightLoader;

/// `out = conv2(relu(conv1(relu(x)))) + x` with two 3×3 convolutions of width F.
#[derive(Module, Debug)]
pub struct ResidualConvUnit<B: Backend> {
    conv1: Conv2d<B>,
    conv2: Conv2d<B>,
}

impl<B: Backend> ResidualConvUnit<B> {
    /// Loads `{prefix}.conv1` and `{prefix}.conv2` (3×3, F -> F, with bias).
    pub fn load(w: &mut WeightLoader<B>, prefix: &str, features: usize) -> Self {
        let spec = ConvSpec::same(features, features, 3);
        Self {
            conv1: Conv2d::load(w, &format!("{prefix}.conv1"), spec),
            conv2: Conv2d::load(w, &format!("{prefix}.conv2"), spec),
        }
    }

    /// [N, F, h, w] -> [N, F, h, w].
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let out = self.conv1.forward_relu_input(x.clone());
        let out = self.conv2.forward_relu_input(out);
        add(x, out)
    }
}

/// One fusion step: optional lateral merge, residual unit, bilinear upsample, 1×1 conv.
#[derive(Module, Debug)]
pub struct FeatureFusionBlock<B: Backend> {
    /// Applied to the lateral input; absent in `refinenet4` (`has_residual=False`).
    res_conf_unit1: Option<ResidualConvUnit<B>>,
    res_conf_unit2: ResidualConvUnit<B>,
    out_conv: Conv2d<B>,
}

impl<B: Backend> FeatureFusionBlock<B> {
    /// Loads `{prefix}.resConfUnit1` (if `has_residual`), `{prefix}.resConfUnit2` and
    /// `{prefix}.out_conv` (1×1, F -> F).
    pub fn load(w: &mut WeightLoader<B>, prefix: &str, features: usize, has_residual: bool) -> Self {
        Self {
            res_conf_unit1: has_residual
                .then(|| ResidualConvUnit::load(w, &format!("{prefix}.resConfUnit1"), features)),
            res_conf_unit2: ResidualConvUnit::load(w, &format!("{prefix}.resConfUnit2"), features),
            out_conv: Conv2d::load(w, &format!("{prefix}.out_conv"), ConvSpec::same(features, features, 1)),
        }
    }

    /// `y = x (+ RCU1(lateral))`, `y = RCU2(y)`, resized to `size` (×2 when `None`), `out_conv`:
    /// [N, F, h, w] (+ lateral [N, F, h, w]) -> [N, F, size].
    pub fn forward(
        &self,
        x: Tensor<B, 4>,
        lateral: Option<Tensor<B, 4>>,
        size: Option<[usize; 2]>,
    ) -> Tensor<B, 4> {
        let mut y = x;
        if let (Some(rcu1), Some(lateral)) = (&self.res_conf_unit1, lateral) {
            y = add(y, rcu1.forward(lateral));
        }
        let y = self.res_conf_unit2.forward(y);
        let [_, _, h, w] = y.dims();
        let y = resize_bilinear_aligned(y, size.unwrap_or([2 * h, 2 * w]));
        self.out_conv.forward(y)
    }
}

/// The four fusion blocks of one branch (`refinenet{1..4}` or `refinenet{1..4}_aux`).
#[derive(Module, Debug)]
pub struct FusionChain<B: Backend> {
    /// `refinenet1` .. `refinenet4`, finest first.
    refinenets: Vec<FeatureFusionBlock<B>>,
}

impl<B: Backend> FusionChain<B> {
    /// Loads `{scratch}.refinenet{1..4}{suffix}`, e.g. suffix `""` or `"_aux"`.
    pub fn load(w: &mut WeightLoader<B>, scratch: &str, suffix: &str, features: usize) -> Self {
        let refinenets = (1..=4)
            .map(|k| {
                FeatureFusionBlock::load(w, &format!("{scratch}.refinenet{k}{suffix}"), features, k != 4)
            })
            .collect();
        Self { refinenets }
    }

    /// Fuses the four adapted stage maps `l` = [l1, l2, l3, l4] (finest first, each
    /// [N, F, h_k, w_k]) top-down: -> [N, F, 2·h1, 2·w1].
    pub fn forward(&self, l: &[Tensor<B, 4>; 4]) -> Tensor<B, 4> {
        let size = |t: &Tensor<B, 4>| {
            let [_, _, h, w] = t.dims();
            Some([h, w])
        };
        let [r1, r2, r3, r4] = [0, 1, 2, 3].map(|i| &self.refinenets[i]);
        let out = r4.forward(l[3].clone(), None, size(&l[2])); // [N, F, h3, w3]
        let out = r3.forward(out, Some(l[2].clone()), size(&l[1])); // [N, F, h2, w2]
        let out = r2.forward(out, Some(l[1].clone()), size(&l[0])); // [N, F, h1, w1]
        r1.forward(out, Some(l[0].clone()), None) // [N, F, 2h1, 2w1]
    }
}
