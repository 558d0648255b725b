//! The model's matrix products, in true f32 on CUDA.
//!
//! Burn's CubeCL matmul (`cubek`'s `Strategy::Auto`, what `Tensor::matmul` and `linear` run
//! without autotune) takes the tensor-core kernel first, and on CUDA it feeds f32 operands to
//! the tensor cores as **TF32** (10-bit mantissa; `cubek_matmul::definition::adjust_dtypes`).
//! That is ~5e-4 relative error per product: our attention benchmark on the H100 saw Burn's
//! f32 matmul at 9.3e-5 absolute error where our f32 kernel had 2.3e-7 (README "GPU (H100)").
//! A relative error of 1e-4 per stage is what the golden tests allow, and `--precision fp32`
//! promises f32 — PyTorch's own default for matmuls is strict f32 too
//! (`torch.backends.cuda.matmul.allow_tf32 = False`) — so on CUDA every f32 product of the
//! model goes through [`unit_matmul`]: the same `cubek` matmul with its unit (CUDA-core) tiling,
//! f32 multiply-adds in f32. The reduced modes (bf16/fp16 operands) keep Burn's tensor-core
//! path; so do wgpu (cubecl-wgpu registers no TF32 type, so `adjust_dtypes` leaves f32
//! operands f32) and the CPU backends.

use burn::tensor::{backend::Backend, DType, Tensor};

/// `lhs · rhs` over the last two dims, batch dims broadcast (as `Tensor::matmul`): in true f32
/// on CUDA for f32 operands (see the module doc), Burn's matmul otherwise.
pub fn matmul<B: Backend, const D: usize>(lhs: Tensor<B, D>, rhs: Tensor<B, D>) -> Tensor<B, D> {
    if strict_f32_on_cuda::<B>(lhs.dtype(), rhs.dtype()) {
        return unit_matmul(lhs, rhs).unwrap_or_else(|(lhs, rhs)| lhs.matmul(rhs));
    }
    lhs.matmul(rhs)
}

/// `x W + b` with `weight` W [in, out] and `bias` b [out] (as `burn::tensor::module::linear`):
/// in true f32 on CUDA for f32 operands (see the module doc), Burn's `linear` otherwise.
pub fn linear<B: Backend, const D: usize>(x: Tensor<B, D>, weight: Tensor<B, 2>, bias: Option<Tensor<B, 1>>) -> Tensor<B, D> {
    if D >= 2 && strict_f32_on_cuda::<B>(x.dtype(), weight.dtype()) {
        let y = matmul(x, weight.unsqueeze::<D>()); // [..., out]
        return match bias {
            Some(b) => y + b.unsqueeze::<D>(),
            None => y,
        };
    }
    burn::tensor::module::linear(x, weight, bias)
}

/// Whether `B` is a CUDA backend (fused or not) and both operands are f32: the products that
/// Burn's matmul would run in TF32.
#[allow(unused_variables)]
fn strict_f32_on_cuda<B: Backend>(lhs: DType, rhs: DType) -> bool {
    #[cfg(feature = "cuda")]
    if lhs == DType::F32 && rhs == DType::F32 {
        return super::attention::is_cube_runtime::<B, burn_cubecl::cubecl::cuda::CudaRuntime>();
    }
    false
}

/// `lhs · rhs` by `cubek`'s unit (non-tensor-core) matmul when `B` is a CubeCL backend (wgpu
/// or CUDA, with or without Burn's fusion when the `fusion-kernels` feature is on) and both
/// operands are f32; gives them back otherwise. On CUDA [`matmul`] takes this path for every
/// f32 product; on lavapipe (no matrix units) it is the kernel Burn's matmul falls back to for
/// f32 anyway, which is how the tests check it there.
#[allow(clippy::type_complexity)]
pub fn unit_matmul<B: Backend, const D: usize>(lhs: Tensor<B, D>, rhs: Tensor<B, D>) -> Result<Tensor<B, D>, (Tensor<B, D>, Tensor<B, D>)> {
    if lhs.dtype() != DType::F32 || rhs.dtype() != DType::F32 {
        return Err((lhs, rhs));
    }
    #[allow(unused_mut)]
    let mut operands = (lhs, rhs);
    #[cfg(feature = "wgpu")]
    {
        operands = match unit_matmul_on::<B, D, burn::backend::wgpu::WgpuRuntime>(operands.0, operands.1) {
            Ok(out) => return Ok(out),
            Err(back) => back,
        };
    }
    #[cfg(feature = "cuda")]
    {
        operands = match unit_matmul_on::<B, D, burn_cubecl::cubecl::cuda::CudaRuntime>(operands.0, operands.1) {
            Ok(out) => return Ok(out),
            Err(back) => back,
        };
    }
    Err(operands)
}

/// [`unit_matmul`] on runtime `R`: the unfused backend's tensors directly, the fused one's as
/// a custom fusion op.
#[cfg(any(feature = "wgpu", feature = "cuda"))]
#[allow(clippy::type_complexity)]
fn unit_matmul_on<B: Backend, const D: usize, R: burn_cubecl::CubeRuntime>(
    lhs: Tensor<B, D>,
    rhs: Tensor<B, D>,
) -> Result<Tensor<B, D>, (Tensor<B, D>, Tensor<B, D>)> {
    use burn::tensor::TensorPrimitive;
    use burn_cubecl::tensor::CubeTensor;
    if !super::attention::is_primitive_of::<B, CubeTensor<R>>() {
        #[cfg(feature = "fusion-kernels")]
        return fused::unit_matmul_fused_on::<B, D, R>(lhs, rhs);
        #[cfg(not(feature = "fusion-kernels"))]
        return Err((lhs, rhs));
    }
    let primitive = |t: Tensor<B, D>| -> CubeTensor<R> {
        super::attention::downcast(t.into_primitive().tensor()).expect("primitive type checked above")
    };
    let out = launch_unit_matmul(primitive(lhs), primitive(rhs));
    let out: B::FloatTensorPrimitive = super::attention::downcast(out).expect("primitive type checked above");
    Ok(Tensor::from_primitive(TensorPrimitive::Float(out)))
}

/// The output shape of `lhs · rhs`: broadcast batch dims, then [M, N].
#[cfg(any(feature = "wgpu", feature = "cuda"))]
fn product_shape(lhs: &[usize], rhs: &[usize]) -> Vec<usize> {
    let d = lhs.len();
    let mut shape: Vec<usize> = (0..d - 2).map(|i| lhs[i].max(rhs[i])).collect();
    shape.extend([lhs[d - 2], rhs[d - 1]]);
    shape
}

/// Launches `cubek`'s `SimpleUnit` matmul on two f32 CubeCL tensors (any strides, batch dims
/// of size 1 broadcast, as Burn's own launch passes them) into a new contiguous output.
#[cfg(any(feature = "wgpu", feature = "cuda"))]
fn launch_unit_matmul<R: burn_cubecl::CubeRuntime>(
    lhs: burn_cubecl::tensor::CubeTensor<R>,
    rhs: burn_cubecl::tensor::CubeTensor<R>,
) -> burn_cubecl::tensor::CubeTensor<R> {
    use cubek::matmul::definition::{MatmulElems, MatmulGlobalElems};
    use cubek::matmul::launch::{launch_ref, Strategy};
    use cubek::std::InputBinding;
    let shape = product_shape(&lhs.meta.shape().to_vec(), &rhs.meta.shape().to_vec());
    let out = burn_cubecl::ops::numeric::empty_device_dtype(lhs.client.clone(), lhs.device.clone(), shape.into(), DType::F32);
    let client = out.client.clone();
    let f32_type = || DType::F32.into();
    let mut dtypes = MatmulElems::from_globals(&MatmulGlobalElems { lhs: f32_type(), rhs: f32_type(), out: f32_type() });
    launch_ref(
        &Strategy::SimpleUnit(Default::default()),
        &client,
        InputBinding::new(lhs.binding(), f32_type()),
        InputBinding::new(rhs.binding(), f32_type()),
        out.clone().binding(),
        &mut dtypes,
    )
    // cubek's own `Auto` strategy unwraps this same launch as its fallback: it supports every
    // layout and size Burn hands to a matmul.
    .expect("cubek's unit matmul launches for any f32 operands");
    out
}

/// The unit matmul as a custom op of Burn's fusion stream (as the attention kernels are, see
/// `attention/fusion.rs`).
#[cfg(all(feature = "fusion-kernels", any(feature = "wgpu", feature = "cuda")))]
mod fused {
    use burn::tensor::{backend::Backend, Shape, Tensor, TensorPrimitive};
    use burn_cubecl::fusion::FusionCubeRuntime;
    use burn_cubecl::{CubeBackend, CubeRuntime};
    use burn_fusion::stream::{Operation, OperationStreams};
    use burn_fusion::{FusionRuntime, FusionTensor};
    use burn_ir::{CustomOpIr, HandleContainer, OperationIr, OperationOutput, TensorIr};

    use super::super::attention::{downcast, is_primitive_of};

    /// The fusion runtime's view of CubeCL tensors on `R` (handle conversions only).
    type HandleBackend<R> = CubeBackend<R, f32, i32, u32>;

    /// The recorded product: lhs, rhs -> out.
    #[derive(Debug)]
    struct FusedUnitMatmul<R: CubeRuntime> {
        desc: CustomOpIr,
        runtime: core::marker::PhantomData<R>,
    }

    impl<R: CubeRuntime> Operation<FusionCubeRuntime<R>> for FusedUnitMatmul<R> {
        fn execute(&self, handles: &mut HandleContainer<<FusionCubeRuntime<R> as FusionRuntime>::FusionHandle>) {
            let ([lhs, rhs], [out]) = self.desc.as_fixed();
            let lhs = handles.get_float_tensor::<HandleBackend<R>>(lhs);
            let rhs = handles.get_float_tensor::<HandleBackend<R>>(rhs);
            handles.register_float_tensor::<HandleBackend<R>>(&out.id, super::launch_unit_matmul(lhs, rhs));
        }
    }

    /// Records the product when `B` is the fusion-wrapped CubeCL backend of `R`.
    #[allow(clippy::type_complexity)]
    pub(super) fn unit_matmul_fused_on<B: Backend, const D: usize, R: CubeRuntime>(
        lhs: Tensor<B, D>,
        rhs: Tensor<B, D>,
    ) -> Result<Tensor<B, D>, (Tensor<B, D>, Tensor<B, D>)> {
        type Fused<R> = FusionTensor<FusionCubeRuntime<R>>;
        if !is_primitive_of::<B, Fused<R>>() {
            return Err((lhs, rhs));
        }
        let shape = super::product_shape(&lhs.dims(), &rhs.dims());
        let primitive = |t: Tensor<B, D>| -> Fused<R> { downcast(t.into_primitive().tensor()).expect("primitive type checked above") };
        let (lhs, rhs) = (primitive(lhs), primitive(rhs));
        let client = lhs.client.clone();
        let streams = OperationStreams::with_inputs([&lhs, &rhs]);
        let out = TensorIr::uninit(client.create_empty_handle(), Shape::from(shape), burn::tensor::DType::F32);
        let desc = CustomOpIr::new("da3_unit_matmul", &[lhs.into_ir(), rhs.into_ir()], &[out]);
        let op = FusedUnitMatmul { desc: desc.clone(), runtime: core::marker::PhantomData };
        let out: Fused<R> = client.register(streams, OperationIr::Custom(desc), op).output();
        let out: B::FloatTensorPrimitive = downcast(out).expect("primitive type checked above");
        Ok(Tensor::from_primitive(TensorPrimitive::Float(out)))
    }
}

#[cfg(all(test, feature = "wgpu"))]
mod tests {
    use burn::tensor::{backend::Backend, DType, Tensor, TensorData};

    use super::unit_matmul;

    /// Deterministic values in [-1, 1).
    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (0..n)
            .map(|_| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    /// `lhs · rhs` in f64 for row-major [batch, m, k] · [batch or 1, k, n].
    fn product_f64(lhs: &[f32], rhs: &[f32], [batch, m, k, n]: [usize; 4], rhs_batched: bool) -> Vec<f32> {
        let mut out = Vec::with_capacity(batch * m * n);
        for b in 0..batch {
            let rb = if rhs_batched { b } else { 0 };
            for i in 0..m {
                for j in 0..n {
                    let sum: f64 = (0..k).map(|p| lhs[(b * m + i) * k + p] as f64 * rhs[(rb * k + p) * n + j] as f64).sum();
                    out.push(sum as f32);
                }
            }
        }
        out
    }

    fn rel_l2(ours: &[f32], reference: &[f32]) -> f64 {
        assert_eq!(ours.len(), reference.len());
        let num: f64 = ours.iter().zip(reference).map(|(a, b)| (*a as f64 - *b as f64).powi(2)).sum();
        let den: f64 = reference.iter().map(|b| (*b as f64).powi(2)).sum();
        (num / den).sqrt()
    }

    /// Broadcast batch, a transposed (column-major) operand and odd sizes, against f64: the
    /// unit kernel must be plain f32 (~1e-7), far from TF32's ~5e-4.
    fn matches_f64<B: Backend>(device: &B::Device) {
        let [batch, m, k, n] = [3, 37, 50, 29];
        let (lhs, rhs) = (values(batch * m * k, 1), values(k * n, 2));
        let reference = product_f64(&lhs, &rhs, [batch, m, k, n], false);
        let lhs_t = Tensor::<B, 3>::from_data(TensorData::new(lhs.clone(), [batch, m, k]), device);
        let rhs_t = Tensor::<B, 3>::from_data(TensorData::new(rhs.clone(), [1, k, n]), device);
        let out = unit_matmul(lhs_t.clone(), rhs_t).unwrap_or_else(|_| panic!("the unit matmul runs f32 on a CubeCL backend"));
        assert_eq!(out.dims(), [batch, m, n]);
        let err = rel_l2(&out.into_data().to_vec::<f32>().unwrap(), &reference);
        assert!(err < 1e-6, "broadcast rhs: relative L2 error {err:.2e}");

        // rhs as the transposed view of an [n, k] matrix (strides [1, k]), batched per item.
        let rhs_nk: Vec<f32> = values(batch * n * k, 3);
        let rhs_kn: Vec<f32> = (0..batch)
            .flat_map(|b| {
                let rhs_nk = &rhs_nk;
                (0..k).flat_map(move |p| (0..n).map(move |j| rhs_nk[(b * n + j) * k + p]))
            })
            .collect();
        let reference = product_f64(&lhs, &rhs_kn, [batch, m, k, n], true);
        let rhs_view = Tensor::<B, 3>::from_data(TensorData::new(rhs_nk, [batch, n, k]), device).swap_dims(1, 2);
        let out = unit_matmul(lhs_t, rhs_view).unwrap_or_else(|_| panic!("runs"));
        let err = rel_l2(&out.into_data().to_vec::<f32>().unwrap(), &reference);
        assert!(err < 1e-6, "transposed rhs: relative L2 error {err:.2e}");
    }

    #[test]
    fn unit_matmul_matches_f64_on_wgpu() {
        matches_f64::<crate::backends::WgpuUnfused>(&Default::default());
    }

    #[cfg(feature = "fusion-kernels")]
    #[test]
    fn unit_matmul_matches_f64_on_fused_wgpu() {
        matches_f64::<crate::backends::WgpuFusion>(&Default::default());
    }

    /// Half operands (the reduced modes keep Burn's tensor-core path) and the CPU backends
    /// are given back unchanged.
    #[test]
    fn unit_matmul_declines_half_operands_and_cpu_backends() {
        let device = Default::default();
        let a = Tensor::<crate::backends::WgpuUnfused, 2>::from_data(TensorData::new(values(12, 4), [3, 4]), &device);
        let half = a.clone().cast(DType::F16);
        let (back, _) = unit_matmul(half.clone(), half.clone().transpose()).err().expect("f16 declined");
        assert_eq!(back.dtype(), DType::F16);
        #[cfg(feature = "flex")]
        {
            let cpu = Tensor::<crate::backends::Flex, 2>::from_data(TensorData::new(values(12, 4), [3, 4]), &Default::default());
            assert!(unit_matmul(cpu.clone(), cpu.transpose()).is_err(), "flex declined");
        }
    }
}
