//! The few layers the network needs, loaded straight from checkpoint tensors.
//!
//! Own small modules instead of `burn::nn` ones: they are built from the file (no random
//! init of hundreds of MB that is then overwritten) and keep the PyTorch key layout visible.

use burn::module::{Module, Param};
use burn::tensor::module::{conv2d, conv_transpose2d};
use burn::tensor::ops::{ConvOptions, ConvTransposeOptions};
use burn::tensor::{backend::Backend, FloatDType, Tensor, TensorPrimitive};

use crate::weights::WeightLoader;

/// `y = x W + b` with PyTorch's `nn.Linear` keys (`{p}.weight` [out, in], `{p}.bias` [out]).
#[derive(Module, Debug)]
pub struct Linear<B: Backend> {
    /// Weight, stored transposed and contiguous: [in, out].
    pub weight: Param<Tensor<B, 2>>,
    /// Bias [out].
    pub bias: Option<Param<Tensor<B, 1>>>,
}

impl<B: Backend> Linear<B> {
    /// Loads `{prefix}.weight` and, if `bias`, `{prefix}.bias`.
    pub fn load(w: &mut WeightLoader<B>, prefix: &str, d_in: usize, d_out: usize, bias: bool) -> Self {
        let weight = w.matrix_transposed(&format!("{prefix}.weight"), [d_out, d_in]); // [in, out], contiguous
        let bias = bias.then(|| Param::from_tensor(w.tensor(&format!("{prefix}.bias"), [d_out])));
        Self { weight: Param::from_tensor(weight), bias }
    }

    /// Applies the layer over the last dimension: [..., in] -> [..., out].
    ///
    /// Runs in the weight's float format (as autocast does): the input is cast to it and the
    /// output has it. With f32 weights (everything outside a reduced-precision backbone) the
    /// cast is a no-op.
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let weight = self.weight.val();
        let x = x.cast(weight.dtype());
        let bias = self.bias.as_ref().map(|b| b.val());
        // flex: one parallel pass, no serial zero-fill or bias pass (see `crate::kernels::linear`).
        #[cfg(all(feature = "flex", not(target_arch = "wasm32")))]
        if let Some(y) = crate::kernels::linear::try_linear(&x, &weight, bias.as_ref()) {
            return y;
        }
        // CUDA: f32 products without TF32 (see `crate::kernels::matmul`).
        crate::kernels::matmul::linear(x, weight, bias)
    }
}

/// Layer normalization over the last dimension with an explicit epsilon.
///
/// The eps matters for parity: the reference mixes 1e-6 (backbone blocks) and 1e-5 (others).
#[derive(Module, Debug)]
pub struct LayerNorm<B: Backend> {
    /// Scale [d].
    pub weight: Param<Tensor<B, 1>>,
    /// Shift [d].
    pub bias: Param<Tensor<B, 1>>,
    /// Added to the variance.
    pub eps: f64,
}

impl<B: Backend> LayerNorm<B> {
    /// Loads `{prefix}.weight` and `{prefix}.bias` of size `d`.
    pub fn load(w: &mut WeightLoader<B>, prefix: &str, d: usize, eps: f64) -> Self {
        Self::from_tensors(
            w.tensor(&format!("{prefix}.weight"), [d]),
            w.tensor(&format!("{prefix}.bias"), [d]),
            eps,
        )
    }

    /// Builds the layer from its scale and shift.
    pub fn from_tensors(weight: Tensor<B, 1>, bias: Tensor<B, 1>, eps: f64) -> Self {
        Self { weight: Param::from_tensor(weight), bias: Param::from_tensor(bias), eps }
    }

    /// Normalizes over the last dimension: [..., d] -> [..., d].
    ///
    /// Always computed in f32 (as autocast does); a half-precision input gets a result in its
    /// own format back.
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        // flex: reads strided inputs (the QK-norm's head views) in place (see
        // `crate::kernels::layer_norm`).
        #[cfg(all(feature = "flex", not(target_arch = "wasm32")))]
        if let Some(y) = crate::kernels::layer_norm::try_layer_norm(&x, &self.weight.val(), &self.bias.val(), self.eps) {
            return y;
        }
        let dtype = x.dtype();
        let out: Tensor<B, D> = Tensor::from_primitive(TensorPrimitive::Float(B::layer_norm(
            x.cast(FloatDType::F32).into_primitive().tensor(),
            self.weight.val().cast(FloatDType::F32).into_primitive().tensor(),
            Some(self.bias.val().cast(FloatDType::F32).into_primitive().tensor()),
            self.eps,
        )));
        out.cast(dtype)
    }
}

/// A 2D convolution with square kernel, stride and padding (`nn.Conv2d` keys).
#[derive(Module, Debug)]
pub struct Conv2d<B: Backend> {
    /// Kernel [out, in, k, k].
    pub weight: Param<Tensor<B, 4>>,
    /// Bias [out].
    pub bias: Option<Param<Tensor<B, 1>>>,
    /// Stride in both directions.
    pub stride: usize,
    /// Zero padding on every side.
    pub padding: usize,
    /// flex: the Winograd transform of a 3×3 weight, computed on first use (see
    /// `kernels::winograd::FilterCache`).
    #[module(skip)]
    filters: FilterCache,
}

/// What [`Conv2d`] keeps of its weight for our CPU kernels: the Winograd filter transform
/// on flex, nothing elsewhere.
#[cfg(all(feature = "flex", not(target_arch = "wasm32")))]
type FilterCache = crate::kernels::winograd::FilterCache;
#[cfg(not(all(feature = "flex", not(target_arch = "wasm32"))))]
type FilterCache = ();

/// Shape of a square 2D convolution: channels in and out, kernel, stride, padding.
#[derive(Debug, Clone, Copy)]
pub struct ConvSpec {
    /// Input channels.
    pub c_in: usize,
    /// Output channels.
    pub c_out: usize,
    /// Kernel size.
    pub kernel: usize,
    /// Stride.
    pub stride: usize,
    /// Padding.
    pub padding: usize,
    /// Whether the layer has a bias.
    pub bias: bool,
}

impl ConvSpec {
    /// A `k`×`k` convolution with stride 1 and "same" padding, with bias.
    pub fn same(c_in: usize, c_out: usize, k: usize) -> Self {
        Self { c_in, c_out, kernel: k, stride: 1, padding: k / 2, bias: true }
    }
}

impl<B: Backend> Conv2d<B> {
    /// A convolution with the given kernel [out, in, k, k], bias [out], stride and padding.
    pub fn new(weight: Tensor<B, 4>, bias: Option<Tensor<B, 1>>, stride: usize, padding: usize) -> Self {
        Self { weight: Param::from_tensor(weight), bias: bias.map(Param::from_tensor), stride, padding, filters: FilterCache::default() }
    }

    /// Loads `{prefix}.weight` (and `{prefix}.bias`) for the given shape.
    pub fn load(w: &mut WeightLoader<B>, prefix: &str, s: ConvSpec) -> Self {
        let weight = w.tensor(&format!("{prefix}.weight"), [s.c_out, s.c_in, s.kernel, s.kernel]);
        let bias = s.bias.then(|| w.tensor(&format!("{prefix}.bias"), [s.c_out]));
        Self::new(weight, bias, s.stride, s.padding)
    }

    /// [N, C_in, H, W] -> [N, C_out, H', W'], in the weight's float format (see
    /// [`Linear::forward`]).
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        self.forward_impl(x, false)
    }

    /// `forward(relu(x))`; on flex the ReLU is applied as the 3×3 kernel reads its input
    /// (no pass of its own, no copy of a shared `x`).
    pub fn forward_relu_input(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        self.forward_impl(x, true)
    }

    fn forward_impl(&self, x: Tensor<B, 4>, relu_input: bool) -> Tensor<B, 4> {
        let options = ConvOptions::new([self.stride; 2], [self.padding; 2], [1, 1], 1);
        let weight = self.weight.val();
        let x = x.cast(weight.dtype());
        let bias = self.bias.as_ref().map(|b| b.val());
        // flex: "same" convolutions by our kernels: 3×3 by Winograd, 1×1 as one GEMM, other
        // odd sizes as shifted GEMMs (see `crate::kernels::conv`).
        #[cfg(all(feature = "flex", not(target_arch = "wasm32")))]
        if self.stride == 1 {
            if let Some(y) = crate::kernels::conv::try_conv2d_same(&x, &weight, bias.as_ref(), self.padding, Some(&self.filters), relu_input) {
                return y;
            }
        } else if !relu_input {
            // Strided (the heads' stride-2 down-projection): parallel im2col + GEMM.
            if let Some(y) = crate::kernels::conv_im2col::try_conv2d_im2col(&x, &weight, bias.as_ref(), self.stride, self.padding) {
                return y;
            }
        }
        let x = if relu_input { burn::tensor::activation::relu(x) } else { x };
        conv2d(x, weight, bias, options)
    }
}

/// A 2D transposed convolution with kernel = stride and no padding (an exact k× upsampler).
#[derive(Module, Debug)]
pub struct ConvTranspose2d<B: Backend> {
    /// Kernel [in, out, k, k] (PyTorch layout).
    pub weight: Param<Tensor<B, 4>>,
    /// Bias [out].
    pub bias: Param<Tensor<B, 1>>,
    /// Kernel size and stride.
    pub stride: usize,
}

impl<B: Backend> ConvTranspose2d<B> {
    /// Loads `{prefix}.weight` [c, c, k, k] and `{prefix}.bias` [c].
    pub fn load(w: &mut WeightLoader<B>, prefix: &str, channels: usize, k: usize) -> Self {
        let weight = w.tensor(&format!("{prefix}.weight"), [channels, channels, k, k]);
        let bias = w.tensor(&format!("{prefix}.bias"), [channels]);
        Self { weight: Param::from_tensor(weight), bias: Param::from_tensor(bias), stride: k }
    }

    /// [N, C, H, W] -> [N, C, kH, kW].
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        #[cfg(all(feature = "flex", not(target_arch = "wasm32")))]
        if self.weight.dims()[2..] == [self.stride; 2] {
            if let Some(y) = crate::kernels::conv_transpose::try_conv_transpose_k_eq_s(&x, &self.weight.val(), Some(&self.bias.val())) {
                return y; // flex: one parallel product + a parallel scatter (burn-flex's op is serial)
            }
        }
        let options = ConvTransposeOptions::new([self.stride; 2], [0, 0], [0, 0], [1, 1], 1);
        conv_transpose2d(x, self.weight.val(), Some(self.bias.val()), options)
    }
}
