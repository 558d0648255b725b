//! Between Burn's generic tensors and burn-flex's concrete `FlexTensor`, for our CPU kernels.
//!
//! The model stays generic over `B: Backend`; a CPU kernel is reached by checking at run time
//! that `B`'s float primitive *is* `FlexTensor` (a `TypeId` comparison) and moving the
//! primitive across (`Any` downcast, no copy). Every other backend keeps Burn's op.

use burn::tensor::{backend::Backend, Tensor, TensorPrimitive};
use burn_flex::FlexTensor;

/// Whether `B` is Burn's flex backend.
pub(crate) fn is_flex<B: Backend>() -> bool {
    core::any::TypeId::of::<B::FloatTensorPrimitive>() == core::any::TypeId::of::<FlexTensor>()
}

/// `x`'s flex tensor (moved, not copied), or `x` back on other backends.
pub(crate) fn into_flex<B: Backend, const D: usize>(x: Tensor<B, D>) -> Result<FlexTensor, Tensor<B, D>> {
    if !is_flex::<B>() {
        return Err(x);
    }
    Ok(cast(x.into_primitive().tensor()))
}

/// A flex tensor as a `Tensor<B, D>`; only called after [`into_flex`] succeeded for `B`.
pub(crate) fn from_flex<B: Backend, const D: usize>(t: FlexTensor) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(cast(t)))
}

/// The contiguous f32 values of `t`, `None` for another dtype or a non-contiguous layout.
pub(crate) fn values(t: &FlexTensor) -> Option<&[f32]> {
    if t.dtype() != burn::tensor::DType::F32 {
        return None;
    }
    let (start, end) = t.layout().contiguous_offsets()?;
    Some(&t.storage::<f32>()[start..end])
}

/// `x` as a `U`, for types checked equal by [`is_flex`].
fn cast<T: 'static, U: 'static>(x: T) -> U {
    let mut slot = Some(x);
    (&mut slot as &mut dyn core::any::Any).downcast_mut::<Option<U>>().and_then(Option::take).expect("flex primitive type checked by is_flex")
}

/// Applies `f` to the values of the contiguous f32 tensor `x`: in place when nobody else holds
/// its storage (moved, not cloned, so a fresh op output is overwritten), else on a copy.
/// Gives `x` back when `B` is not flex or `x` is not a contiguous f32 tensor.
pub(crate) fn update_in_place<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    f: impl FnOnce(&mut [f32]),
) -> Result<Tensor<B, D>, Tensor<B, D>> {
    if x.dtype() != burn::tensor::DType::F32 {
        return Err(x);
    }
    let shape = x.shape();
    let mut t = into_flex(x)?;
    let Some((start, end)) = t.layout().contiguous_offsets() else {
        return Err(from_flex(t));
    };
    let y = match t.try_storage_mut::<f32>() {
        Some(data) => {
            f(&mut data[start..end]);
            t
        }
        None => {
            let mut data = t.storage::<f32>()[start..end].to_vec();
            f(&mut data);
            FlexTensor::from_data(burn::tensor::TensorData::new(data, shape))
        }
    };
    Ok(from_flex(y))
}

/// A mutable output buffer shared by parallel tasks that each write their own disjoint part
/// (rows or columns), as our CPU kernels do.
pub(crate) struct SharedOut(*mut f32);

// SAFETY: every user gives each task a disjoint region of the buffer, and the buffer outlives
// the parallel loop.
unsafe impl Sync for SharedOut {}
unsafe impl Send for SharedOut {}

impl SharedOut {
    /// Wraps the spare (uninitialized) capacity of `buffer`, for kernels that write every
    /// element of their output: no serial zero-fill (a `vec![0.0; n]` of a large output is a
    /// single-threaded memset, measured at 15 % of the main thread's time in a da3-small pass).
    /// The caller fills `n` elements through [`Self::get`] and then calls `set_len(n)`.
    pub(crate) fn spare(buffer: &mut Vec<f32>) -> Self {
        Self(buffer.spare_capacity_mut().as_mut_ptr().cast())
    }

    /// The pointer (a method, so that closures capture the `Sync` wrapper, not the field).
    pub(crate) fn get(&self) -> *mut f32 {
        self.0
    }
}

/// A convolution's operands (input, weight, optional bias) as flex tensors, or `None` unless `B`
/// is flex.
pub(crate) fn conv_operands<B: Backend>(
    x: &Tensor<B, 4>,
    weight: &Tensor<B, 4>,
    bias: Option<&Tensor<B, 1>>,
) -> Option<(FlexTensor, FlexTensor, Option<FlexTensor>)> {
    let x = into_flex(x.clone()).ok()?;
    let weight = into_flex(weight.clone()).ok()?;
    let bias = match bias {
        Some(b) => Some(into_flex(b.clone()).ok()?),
        None => None,
    };
    Some((x, weight, bias))
}

/// A convolution's f32 weights and its bias of exactly `c_out` values; `None` for other dtypes
/// or another bias length.
pub(crate) fn weights_and_bias<'a>(w: &'a FlexTensor, bias: Option<&'a FlexTensor>, c_out: usize) -> Option<(&'a [f32], Option<&'a [f32]>)> {
    let bias = match bias {
        Some(b) => Some(values(b).filter(|b| b.len() == c_out)?),
        None => None,
    };
    Some((values(w)?, bias))
}

/// `len` f32 (a multiple of `row`) written row by row in parallel by `fill(row_index, row)`,
/// which must write every element of its row; no serial zero-fill first (what `vec![0.0; len]`
/// costs on the calling thread while the pool waits).
pub(crate) fn par_rows(len: usize, row: usize, fill: impl Fn(usize, &mut [std::mem::MaybeUninit<f32>]) + Sync) -> Vec<f32> {
    use rayon::prelude::*;
    assert!(row > 0 && len % row == 0, "par_rows: {len} values in rows of {row}");
    let mut out = Vec::with_capacity(len);
    out.spare_capacity_mut()[..len].par_chunks_mut(row).enumerate().for_each(|(i, r)| fill(i, r));
    // SAFETY: every row was written by `fill` (its contract).
    unsafe { out.set_len(len) };
    out
}

/// A strided f32 matrix operand: its first element and its row and column strides (elements).
#[derive(Clone, Copy)]
pub(crate) struct Strided {
    /// Element [0, 0].
    pub ptr: *const f32,
    /// Step between rows.
    pub row: isize,
    /// Step between columns.
    pub col: isize,
}

// SAFETY: a `Strided` is only read through, and its users keep the data alive and unwritten
// while parallel tasks read it.
unsafe impl Sync for Strided {}
unsafe impl Send for Strided {}

/// `dst[m×n] = (dst if accumulate, else 0) + beta · lhs[m×k] · rhs[k×n]` on the calling thread
/// (our kernels parallelize around it) through the `gemm` crate; `dst` has unit column stride.
///
/// # Safety
/// Every element the shapes and strides reach must be in bounds, and `dst` must not overlap
/// the operands or be written by another thread meanwhile.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn gemm_serial(m: usize, n: usize, k: usize, dst: *mut f32, dst_row: isize, accumulate: bool, lhs: Strided, rhs: Strided, beta: f32) {
    gemm::gemm(
        m,
        n,
        k,
        dst,
        1,
        dst_row,
        accumulate,
        lhs.ptr,
        lhs.col,
        lhs.row,
        rhs.ptr,
        rhs.col,
        rhs.row,
        1.0,
        beta,
        false,
        false,
        false,
        gemm::Parallelism::None,
    )
}
