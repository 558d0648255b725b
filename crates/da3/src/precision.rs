//! Precision modes: which float format the backbone's matrix products run in.
//!
//! Like the reference (`torch.autocast` around the backbone only), reduced precision applies to
//! the transformer's linear layers and the patch embedding: their weights are stored in the
//! chosen format and their inputs are cast to it; attention runs on half-precision q/k/v. The
//! residual stream, every LayerNorm (computed in f32), RoPE, the positional embedding, the
//! camera encoder/decoder and all heads stay in f32, as the reference's
//! `autocast(enabled=False)` regions do.
//!
//! The precision is chosen **when the model is loaded** ([`crate::Da3::with_precision`]), not
//! per prediction: the weights are converted once (half the backbone's memory, no per-call
//! conversion), and a model instance is one (preset, device, precision) combination, which is
//! what the CLI and the size caches key on. Two precisions need two loaded models.

use std::fmt;
use std::str::FromStr;

use burn::module::{ModuleMapper, Param};
use burn::tensor::backend::{Backend, DTypeUsage};
use burn::tensor::{DType, FloatDType, Tensor};

use crate::Da3Error;

/// The float format of the backbone's matrix products.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Precision {
    /// f32 on CPUs and on devices without hardware-accelerated half formats; bf16 where the
    /// device has native (matrix-unit) bf16; else fp16 where it has native fp16. Never bf16 by
    /// emulation.
    #[default]
    Auto,
    /// Everything in f32 (bit-compatible with the fp32 goldens).
    Fp32,
    /// IEEE half precision (10-bit mantissa); needs f16 arithmetic on the device (wgpu:
    /// the adapter's `shader-f16` feature).
    Fp16,
    /// bfloat16 (7-bit mantissa, f32 range); needs bf16 arithmetic on the device.
    Bf16,
}

impl Precision {
    /// All modes, in the order the CLI lists them.
    pub const ALL: [Precision; 4] = [Precision::Auto, Precision::Fp32, Precision::Fp16, Precision::Bf16];

    /// The name used on the command line (`auto`, `fp32`, `fp16`, `bf16`).
    pub fn name(self) -> &'static str {
        match self {
            Precision::Auto => "auto",
            Precision::Fp32 => "fp32",
            Precision::Fp16 => "fp16",
            Precision::Bf16 => "bf16",
        }
    }

    /// The float format this mode runs in on `device` of backend `B`, or an error naming the
    /// backend when an explicit mode is not supported there.
    pub fn resolve<B: Backend>(self, device: &B::Device) -> Result<FloatDType, Da3Error> {
        let explicit = |dtype: DType, mode: Precision| {
            if B::supports_dtype(device, dtype) {
                Ok(dtype.into())
            } else {
                Err(Da3Error::Config(format!(
                    "precision {mode} is not supported by the {} backend on this device (no {dtype:?} \
                     arithmetic{}); use --precision fp32 or auto",
                    B::name(device),
                    if dtype == DType::F16 { ", e.g. a wgpu adapter without shader-f16" } else { "" },
                )))
            }
        };
        match self {
            Precision::Fp32 => Ok(FloatDType::F32),
            Precision::Fp16 => explicit(DType::F16, self),
            Precision::Bf16 => explicit(DType::BF16, self),
            Precision::Auto => Ok(auto_dtype::<B>(device)),
        }
    }
}

/// `auto`: a half format only where the device accelerates it in hardware (tensor cores,
/// cooperative matrices) *and* supports general arithmetic on it. CPUs (flex, ndarray) and
/// software adapters (lavapipe) have no such units and run f32: there half precision saves
/// memory bandwidth only, at a visible accuracy cost, and CPU bf16 is emulated.
fn auto_dtype<B: Backend>(device: &B::Device) -> FloatDType {
    let native = |dtype: DType| {
        let usage = B::dtype_usage(device, dtype);
        usage.is_superset(DTypeUsage::general()) && usage.contains(DTypeUsage::Accelerated)
    };
    if native(DType::BF16) {
        FloatDType::BF16
    } else if native(DType::F16) {
        FloatDType::F16
    } else {
        FloatDType::F32
    }
}

/// A module mapper that casts float parameters to one format, except those under a field whose
/// name contains `norm` (LayerNorms stay f32, as autocast keeps them).
#[derive(Debug)]
pub(crate) struct CastParams {
    dtype: FloatDType,
    path: Vec<String>,
}

impl CastParams {
    /// Casts to `dtype`.
    pub(crate) fn new(dtype: FloatDType) -> Self {
        Self { dtype, path: Vec::new() }
    }
}

impl<B: Backend> ModuleMapper<B> for CastParams {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_owned());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        if self.path.iter().any(|n| n.contains("norm")) {
            return param;
        }
        let dtype = self.dtype;
        param.map(|t| t.cast(dtype))
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Precision {
    type Err = Da3Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Precision::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| Da3Error::Input(format!("unknown precision `{s}`: use auto, fp32, fp16 or bf16")))
    }
}

#[cfg(all(test, feature = "flex"))]
mod tests {
    use super::*;
    use crate::backends::Flex;

    #[test]
    fn names_round_trip_and_unknown_names_fail() {
        for p in Precision::ALL {
            assert_eq!(p.name().parse::<Precision>().unwrap(), p);
        }
        assert_eq!("BF16".parse::<Precision>().unwrap(), Precision::Bf16);
        let e = "fp8".parse::<Precision>().unwrap_err().to_string();
        assert!(e.contains("fp8") && e.contains("bf16"), "{e}");
    }

    #[test]
    fn flex_runs_auto_in_f32_and_supports_both_half_formats() {
        let device = Default::default();
        assert_eq!(Precision::Auto.resolve::<Flex>(&device).unwrap(), FloatDType::F32);
        assert_eq!(Precision::Fp32.resolve::<Flex>(&device).unwrap(), FloatDType::F32);
        assert_eq!(Precision::Fp16.resolve::<Flex>(&device).unwrap(), FloatDType::F16);
        assert_eq!(Precision::Bf16.resolve::<Flex>(&device).unwrap(), FloatDType::BF16);
    }
}
