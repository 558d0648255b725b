//! Our GPU attention kernels on Burn's fusion-wrapped CubeCL backends.
//!
//! A fusion backend (`burn_fusion::Fusion<CubeBackend<R, ..>>`, what Burn's `Wgpu` and `Cuda`
//! aliases are with the `fusion` feature) records operations lazily and hands a tensor's
//! buffer to nobody until the recorded stream runs. Our kernels reach it as a *custom fusion
//! operation*: q, k, v and the output are declared as a [`CustomOpIr`] in the stream, and
//! when the stream executes, [`FusedAttention::execute`] gets the inner `CubeTensor`s of q, k
//! and v, launches the same kernel as the unfused backend, and registers its output under the
//! declared id. Fusion flushes whatever element-wise work produces q, k and v before the op
//! (a custom op is never fused into a neighbour), so the kernel sees materialized inputs with
//! their strides.

use burn::tensor::{backend::Backend, Shape, Tensor, TensorPrimitive};
use burn_cubecl::fusion::FusionCubeRuntime;
use burn_cubecl::tensor::CubeTensor;
use burn_cubecl::{CubeBackend, CubeRuntime};
use burn_fusion::stream::{Operation, OperationStreams};
use burn_fusion::{FusionRuntime, FusionTensor};
use burn_ir::{CustomOpIr, HandleContainer, OperationIr, OperationOutput, TensorIr};

use super::{contiguous_rows, downcast, is_primitive_of, Qkv};

/// A kernel over CubeCL tensors: q [B, H, Tq, hd], k, v [B, H, Tk, hd] (unit stride on the
/// last dim) -> contiguous [B, Tq, H, hd].
pub(super) type CubeKernel<R> = fn(CubeTensor<R>, CubeTensor<R>, CubeTensor<R>) -> CubeTensor<R>;

/// The fusion runtime's view of CubeCL tensors on runtime `R`: only its handle conversions
/// (`BackendIr`) are used, which do not depend on the element types.
type HandleBackend<R> = CubeBackend<R, f32, i32, u32>;

/// The recorded attention op: its inputs/outputs and the kernel to launch when it runs.
#[derive(Debug)]
struct FusedAttention<R: CubeRuntime> {
    desc: CustomOpIr,
    kernel: CubeKernel<R>,
}

impl<R: CubeRuntime> Operation<FusionCubeRuntime<R>> for FusedAttention<R> {
    fn execute(&self, handles: &mut HandleContainer<<FusionCubeRuntime<R> as FusionRuntime>::FusionHandle>) {
        let ([q, k, v], [out]) = self.desc.as_fixed();
        let mut input = |ir: &TensorIr| contiguous_rows(handles.get_float_tensor::<HandleBackend<R>>(ir));
        let (q, k, v) = (input(q), input(k), input(v));
        let output = (self.kernel)(q, k, v); // [B, Tq, H, hd]
        handles.register_float_tensor::<HandleBackend<R>>(&out.id, output);
    }
}

/// Records `kernel` in the fusion stream when `B` is the fusion-wrapped CubeCL backend of
/// runtime `R`; gives the inputs back otherwise. `name` identifies the op in the stream (one
/// per kernel, so that two kernels are never taken for the same operation).
pub(super) fn launch_fused_on<B: Backend, R: CubeRuntime>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    name: &'static str,
    kernel: CubeKernel<R>,
) -> Result<Tensor<B, 4>, Qkv<B>> {
    type Fused<R> = FusionTensor<FusionCubeRuntime<R>>;
    if !is_primitive_of::<B, Fused<R>>() {
        return Err((q, k, v));
    }
    let [b, h, tq, hd] = q.dims();
    let dtype = q.dtype(); // the kernels write their input's format
    let primitive = |t: Tensor<B, 4>| -> Fused<R> { downcast(t.into_primitive().tensor()).expect("primitive type checked above") };
    let (q, k, v) = (primitive(q), primitive(k), primitive(v));
    let client = q.client.clone();
    let streams = OperationStreams::with_inputs([&q, &k, &v]);
    let out = TensorIr::uninit(client.create_empty_handle(), Shape::new([b, tq, h, hd]), dtype);
    let desc = CustomOpIr::new(name, &[q.into_ir(), k.into_ir(), v.into_ir()], &[out]);
    let out: Fused<R> = client.register(streams, OperationIr::Custom(desc.clone()), FusedAttention { desc, kernel }).output();
    let out: B::FloatTensorPrimitive = downcast(out).expect("primitive type checked above");
    Ok(Tensor::<B, 4>::from_primitive(TensorPrimitive::Float(out)).swap_dims(1, 2)) // [B, H, Tq, hd]
}
