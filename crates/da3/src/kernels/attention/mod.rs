//! Fused softmax attention kernels behind [`crate::backbone::attention::attend`].
//!
//! Five implementations of `softmax(q kᵀ / sqrt(hd)) v` over [B, heads, T, hd] (no mask):
//! - [`AttentionPath::Cpu`]: our multi-threaded CPU kernel (rayon + `gemm` + vectorized `exp`),
//!   Burn's flex backend only (`cpu.rs`);
//! - [`AttentionPath::Wgsl`]: our flash-style WGSL kernel (`shaders/attention/flash.wgsl`),
//!   Burn's wgpu backend only;
//! - [`AttentionPath::Cube`]: the same algorithm as a CubeCL `#[cube]` kernel, for every CubeCL
//!   runtime da3 builds (CUDA, wgpu);
//! - [`AttentionPath::Burn`]: Burn's `attention` op (autotuned flash attention with a
//!   materialized fallback on CubeCL backends, a tiled loop on flex);
//! - [`AttentionPath::Plain`]: matmul, softmax, matmul (the T×T scores materialized).
//!
//! The model stays generic over `B: Backend`. The custom kernels are reached by a localized
//! runtime specialization: the tensor primitive is downcast (`Any`) to CubeCL's tensor type of
//! a runtime we have a kernel for, or to Burn's lazy `FusionTensor` over one (then the kernel
//! is recorded as a custom fusion op, `fusion.rs`, with the `fusion-kernels` feature); any
//! other backend (flex's own kernels aside: ndarray, and fusion without that feature) keeps
//! Burn's op. Downcasting, rather than a backend extension trait, keeps every `B: Backend`
//! bound in the model as it is and needs no per-backend impls in downstream crates.

#[cfg(any(feature = "wgpu", feature = "cuda"))]
mod cube;
#[cfg(all(feature = "flex", target_arch = "x86_64"))]
#[macro_use]
mod fma_exp;
#[cfg(all(feature = "flex", target_arch = "x86_64"))]
mod avx2;
#[cfg(all(feature = "flex", target_arch = "x86_64"))]
mod avx512;
#[cfg(all(feature = "flex", not(target_arch = "wasm32")))]
mod cpu;
#[cfg(all(feature = "fusion-kernels", any(feature = "wgpu", feature = "cuda")))]
mod fusion;
#[cfg(feature = "wgpu")]
mod wgsl;

use burn::tensor::activation::softmax;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{backend::Backend, DType, Tensor};

/// Query rows per workgroup (one per invocation) of both GPU kernels.
#[cfg(any(feature = "wgpu", feature = "cuda"))]
const QUERY_ROWS: usize = 64;
/// Largest head dim the custom kernels take (query and accumulator live in registers);
/// larger ones use Burn's op.
pub const MAX_HEAD_DIM: usize = 128;

/// Keys per K/V tile for head dim `hd`: the two f32 tiles fill at most 16 KiB of workgroup
/// memory (WebGPU's default limit), at most 64 keys (32 for hd = 64).
#[cfg(any(feature = "wgpu", feature = "cuda"))]
fn block_k(hd: usize) -> usize {
    (2048 / hd).clamp(1, 64)
}

/// One implementation of softmax attention (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttentionPath {
    /// Our CPU kernel (Burn's flex backend).
    Cpu,
    /// Our WGSL flash kernel (Burn's wgpu backend without fusion).
    Wgsl,
    /// Our CubeCL flash kernel (CUDA and wgpu backends without fusion).
    Cube,
    /// Burn's `attention` op.
    Burn,
    /// matmul → softmax → matmul.
    Plain,
}

impl AttentionPath {
    /// Every path, in the order benchmarks print them.
    pub const ALL: [AttentionPath; 5] = [Self::Cpu, Self::Wgsl, Self::Cube, Self::Burn, Self::Plain];

    /// Short lowercase name (benchmark tables, test messages).
    pub fn name(self) -> &'static str {
        match self {
            Self::Cpu => "cpu",
            Self::Wgsl => "wgsl",
            Self::Cube => "cube",
            Self::Burn => "burn",
            Self::Plain => "plain",
        }
    }
}

/// Whether our GPU kernel `path` takes these inputs: q [B, H, Tq, hd] and k, v [B, H, Tk, hd]
/// with matching B, H, hd, Tk ≥ 1, hd a multiple of 4 (vec4 lanes of the WGSL kernel) ≤
/// [`MAX_HEAD_DIM`], all three in one format: f32 for the WGSL kernel; f32, f16 or bf16 for the
/// CubeCL kernel (which widens half inputs to f32 as it reads them).
fn supported<B: Backend>(path: AttentionPath, q: &Tensor<B, 4>, k: &Tensor<B, 4>, v: &Tensor<B, 4>) -> bool {
    let ([b, h, _, hd], kd, vd) = (q.dims(), k.dims(), v.dims());
    let dtype = q.dtype();
    let formats = k.dtype() == dtype
        && v.dtype() == dtype
        && match path {
            AttentionPath::Cube => matches!(dtype, DType::F32 | DType::F16 | DType::BF16),
            _ => dtype == DType::F32,
        };
    formats && kd == vd && kd[0] == b && kd[1] == h && kd[3] == hd && kd[2] > 0 && hd % 4 == 0 && hd <= MAX_HEAD_DIM
}

/// The path [`crate::backbone::attention::attend`] takes on backend `B`: the fastest correct
/// one measured there (see [`default_path_reason`]).
pub fn default_path<B: Backend>() -> AttentionPath {
    // flex: our CPU kernel; CubeCL runtimes: decided in `cube_runtime_default`; every other
    // backend (ndarray, fusion-wrapped ones) keeps Burn's op.
    if is_flex::<B>() {
        return AttentionPath::Cpu;
    }
    cube_runtime_default::<B>().unwrap_or(AttentionPath::Burn)
}

/// Whether `B` is Burn's flex backend (its float primitive is flex's tensor).
fn is_flex<B: Backend>() -> bool {
    #[cfg(all(feature = "flex", not(target_arch = "wasm32")))]
    if super::flex::is_flex::<B>() {
        return true;
    }
    false
}

/// Why [`default_path`] is what it is (measurements by `benches/src/bin/attention.rs`).
pub fn default_path_reason() -> &'static str {
    DEFAULT_REASON
}

/// Measured reason for the defaults (kept next to [`cube_runtime_default`]).
const DEFAULT_REASON: &str = "flex: our CPU kernel, 3-8x faster than Burn's op at every model shape \
(benches/src/bin/attention.rs on a 2-core AVX-512 CPU: local 1 view 33 vs 102 ms, global 4 views 300 vs 1784 ms, \
8,000 tokens 1.46 vs 6.5 s; only the camera encoder's 8-token case is faster in plain matmul-softmax-matmul, \
0.07 vs 0.26 ms, too small to matter). wgpu: our WGSL flash kernel (passes every parity test at 1e-7..2e-6 \
relative L2 error, up to 8,000 tokens, and the model goldens on lavapipe). CUDA without fusion: our \
CubeCL flash kernel (H100, attention --device cuda --unfused, 2026-11-22: max error 2.3e-7 against f64 at \
1 view x 6 heads x 973 tokens, where Burn's op and plain matmul-softmax-matmul are off by 1.1e-4 and \
9.3e-5 since Burn's f32 matmul runs on TF32 tensor cores; time against Burn's op 1.15-1.24x for one \
view's 973 tokens (0.45 vs 0.36-0.39 ms), 0.36-0.45x for 8 views' local attention, 0.11-0.12x for global \
attention over 7,784 and 31,136 tokens: 4.5 vs 42.6 ms at 6 heads, 13.3 vs 116 ms and 184 vs 1545 ms at \
16). Its exactness at long sequences rests on the same kernel's wgpu parity tests up to 8,000 tokens; \
the f64 check of the long CUDA shapes was cut by the GPU time limit. Fusion-wrapped wgpu/CUDA backends: \
the same kernels, recorded as a custom fusion op (with the fusion-kernels feature). All others: Burn's attention op.";

/// The default path on the CubeCL runtimes we have kernels for, `None` on other backends.
///
/// - Burn's wgpu backend, with or without fusion: [`AttentionPath::Wgsl`], verified correct at
///   every model shape and through the model goldens on lavapipe. Speed against Burn's op: not
///   measured yet.
/// - CUDA, with or without fusion: [`AttentionPath::Cube`], exact against f64 on an H100 and
///   8-9x faster than Burn's op at the global-attention shapes (see [`DEFAULT_REASON`]).
///
/// The fusion-wrapped backends run the same kernels as a custom fusion op (`fusion.rs`), where
/// the `fusion-kernels` feature (part of `fusion` and `fast`) is on.
#[allow(unused_variables)]
fn cube_runtime_default<B: Backend>() -> Option<AttentionPath> {
    #[cfg(feature = "wgpu")]
    if is_cube_runtime::<B, burn::backend::wgpu::WgpuRuntime>() {
        return Some(AttentionPath::Wgsl);
    }
    #[cfg(feature = "cuda")]
    if is_cube_runtime::<B, burn_cubecl::cubecl::cuda::CudaRuntime>() {
        return Some(AttentionPath::Cube);
    }
    None
}

/// Whether `B`'s float tensors are CubeCL tensors on runtime `R`, directly or (with the
/// `fusion-kernels` feature) through Burn's fusion.
#[cfg(any(feature = "wgpu", feature = "cuda"))]
pub(crate) fn is_cube_runtime<B: Backend, R: burn_cubecl::CubeRuntime>() -> bool {
    #[cfg(feature = "fusion-kernels")]
    if is_primitive_of::<B, burn_fusion::FusionTensor<burn_cubecl::fusion::FusionCubeRuntime<R>>>() {
        return true;
    }
    is_primitive_of::<B, burn_cubecl::tensor::CubeTensor<R>>()
}

/// Whether `B`'s float tensor primitive is `T`.
#[allow(dead_code)]
pub(crate) fn is_primitive_of<B: Backend, T: 'static>() -> bool {
    core::any::TypeId::of::<B::FloatTensorPrimitive>() == core::any::TypeId::of::<T>()
}

/// q, k and v, given back by [`attend_with`] when its path cannot run them.
pub type Qkv<B> = (Tensor<B, 4>, Tensor<B, 4>, Tensor<B, 4>);

/// Softmax attention on the default path of `B` (see [`default_path`]). Where the WGSL
/// kernel declines (half-precision q/k/v of the fp16 mode) the CubeCL twin takes them, with its
/// f32 accumulation; whatever neither takes goes to Burn's op.
pub fn attend_default<B: Backend>(q: Tensor<B, 4>, k: Tensor<B, 4>, v: Tensor<B, 4>) -> Tensor<B, 4> {
    let default = default_path::<B>();
    let (q, k, v) = match attend_with(default, q, k, v) {
        Ok(out) => return out,
        Err(back) => back,
    };
    let (q, k, v) = match default {
        AttentionPath::Wgsl => match attend_with(AttentionPath::Cube, q, k, v) {
            Ok(out) => return out,
            Err(back) => back,
        },
        _ => (q, k, v),
    };
    burn_attention(q, k, v)
}

/// Softmax attention `softmax(q kᵀ / sqrt(hd)) v` through `path`: q [B, H, Tq, hd], k and v
/// [B, H, Tk, hd] -> [B, H, Tq, hd]. Gives the inputs back when `path` cannot run them here
/// (a custom kernel on a backend or shape it does not serve).
pub fn attend_with<B: Backend>(path: AttentionPath, q: Tensor<B, 4>, k: Tensor<B, 4>, v: Tensor<B, 4>) -> Result<Tensor<B, 4>, Qkv<B>> {
    match path {
        AttentionPath::Burn => Ok(burn_attention(q, k, v)),
        AttentionPath::Plain => Ok(plain_attention(q, k, v)),
        AttentionPath::Wgsl | AttentionPath::Cube if !supported(path, &q, &k, &v) => Err((q, k, v)),
        AttentionPath::Cpu => launch_cpu(q, k, v),
        AttentionPath::Wgsl => launch_wgsl(q, k, v),
        AttentionPath::Cube => launch_cube(q, k, v),
    }
}

/// Burn's fused `attention` op.
pub fn burn_attention<B: Backend>(q: Tensor<B, 4>, k: Tensor<B, 4>, v: Tensor<B, 4>) -> Tensor<B, 4> {
    attention(q, k, v, None, None, AttentionModuleOptions::default())
}

/// matmul → softmax → matmul, the [B, H, Tq, Tk] scores materialized.
pub fn plain_attention<B: Backend>(q: Tensor<B, 4>, k: Tensor<B, 4>, v: Tensor<B, 4>) -> Tensor<B, 4> {
    let hd = q.dims()[3];
    let scores = q.matmul(k.swap_dims(2, 3)).mul_scalar(1.0 / (hd as f64).sqrt()); // [B, H, Tq, Tk]
    softmax(scores, 3).matmul(v) // [B, H, Tq, hd]
}

/// Our CPU kernel when `B`'s float primitive is flex's tensor (any strides, f32); gives the
/// inputs back otherwise.
#[cfg(all(feature = "flex", not(target_arch = "wasm32")))]
fn launch_cpu<B: Backend>(q: Tensor<B, 4>, k: Tensor<B, 4>, v: Tensor<B, 4>) -> Result<Tensor<B, 4>, Qkv<B>> {
    use super::flex::{from_flex, into_flex};
    let (Ok(qf), Ok(kf), Ok(vf)) = (into_flex(q.clone()), into_flex(k.clone()), into_flex(v.clone())) else {
        return Err((q, k, v));
    };
    match cpu::flash_attention(&qf, &kf, &vf) {
        Some(out) => Ok(from_flex::<B, 4>(out).swap_dims(1, 2)), // [B, Tq, H, hd] seen as [B, H, Tq, hd]
        None => Err((q, k, v)),
    }
}

#[cfg(not(all(feature = "flex", not(target_arch = "wasm32"))))]
fn launch_cpu<B: Backend>(q: Tensor<B, 4>, k: Tensor<B, 4>, v: Tensor<B, 4>) -> Result<Tensor<B, 4>, Qkv<B>> {
    Err((q, k, v))
}

#[cfg(feature = "wgpu")]
fn launch_wgsl<B: Backend>(q: Tensor<B, 4>, k: Tensor<B, 4>, v: Tensor<B, 4>) -> Result<Tensor<B, 4>, Qkv<B>> {
    use burn::backend::wgpu::WgpuRuntime;
    launch_on::<B, WgpuRuntime>(q, k, v, "da3_attention_wgsl", wgsl::flash_attention)
}

#[cfg(not(feature = "wgpu"))]
fn launch_wgsl<B: Backend>(q: Tensor<B, 4>, k: Tensor<B, 4>, v: Tensor<B, 4>) -> Result<Tensor<B, 4>, Qkv<B>> {
    Err((q, k, v))
}

#[allow(unused_mut)]
fn launch_cube<B: Backend>(q: Tensor<B, 4>, k: Tensor<B, 4>, v: Tensor<B, 4>) -> Result<Tensor<B, 4>, Qkv<B>> {
    let mut qkv = (q, k, v);
    #[cfg(feature = "wgpu")]
    {
        use burn::backend::wgpu::WgpuRuntime;
        qkv = match launch_on::<B, WgpuRuntime>(qkv.0, qkv.1, qkv.2, "da3_attention_cube", cube::flash_attention::<WgpuRuntime>) {
            Ok(out) => return Ok(out),
            Err(back) => back,
        };
    }
    #[cfg(feature = "cuda")]
    {
        use burn_cubecl::cubecl::cuda::CudaRuntime;
        qkv = match launch_on::<B, CudaRuntime>(qkv.0, qkv.1, qkv.2, "da3_attention_cube", cube::flash_attention::<CudaRuntime>) {
            Ok(out) => return Ok(out),
            Err(back) => back,
        };
    }
    Err(qkv)
}

/// Runs `kernel` when `B`'s float primitive is CubeCL's tensor on runtime `R` (or, with the
/// `fusion-kernels` feature, Burn's fusion over it: the kernel is recorded as the custom fusion
/// op `name`); gives the inputs back otherwise. The kernel returns contiguous [B, Tq, H, hd],
/// seen here as [B, H, Tq, hd] (a stride view: the attention's `swap_dims(1, 2)` back to
/// tokens-major is free).
#[cfg(any(feature = "wgpu", feature = "cuda"))]
#[allow(unused_variables)]
fn launch_on<B: Backend, R: burn_cubecl::CubeRuntime>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    name: &'static str,
    kernel: fn(
        burn_cubecl::tensor::CubeTensor<R>,
        burn_cubecl::tensor::CubeTensor<R>,
        burn_cubecl::tensor::CubeTensor<R>,
    ) -> burn_cubecl::tensor::CubeTensor<R>,
) -> Result<Tensor<B, 4>, Qkv<B>> {
    use burn_cubecl::tensor::CubeTensor;
    if !is_primitive_of::<B, CubeTensor<R>>() {
        #[cfg(feature = "fusion-kernels")]
        return fusion::launch_fused_on::<B, R>(q, k, v, name, kernel);
        #[cfg(not(feature = "fusion-kernels"))]
        return Err((q, k, v));
    }
    let prepare = |t: Tensor<B, 4>| -> CubeTensor<R> {
        contiguous_rows(downcast(t.into_primitive().tensor()).expect("primitive type checked above"))
    };
    let out = kernel(prepare(q), prepare(k), prepare(v)); // [B, Tq, H, hd]
    let out: B::FloatTensorPrimitive = downcast(out).expect("primitive type checked above");
    Ok(Tensor::<B, 4>::from_primitive(burn::tensor::TensorPrimitive::Float(out)).swap_dims(1, 2)) // [B, H, Tq, hd]
}

/// `t` with unit stride on the last dim (the kernels index rows by stride, elements
/// contiguously): as it is when it has one, else a contiguous copy.
#[cfg(any(feature = "wgpu", feature = "cuda"))]
fn contiguous_rows<R: burn_cubecl::CubeRuntime>(t: burn_cubecl::tensor::CubeTensor<R>) -> burn_cubecl::tensor::CubeTensor<R> {
    if t.meta.strides()[3] == 1 {
        t
    } else {
        burn_cubecl::kernel::into_contiguous(t)
    }
}

/// `x` as a `U` when `T` is `U` (a move, no copy).
#[cfg(any(feature = "wgpu", feature = "cuda"))]
pub(crate) fn downcast<T: 'static, U: 'static>(x: T) -> Option<U> {
    let mut slot = Some(x);
    (&mut slot as &mut dyn core::any::Any).downcast_mut::<Option<U>>().and_then(Option::take)
}
