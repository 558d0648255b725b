//! da3's own kernels: WGSL sources in `shaders/` and CubeCL kernels for the GPU backends, and
//! multi-threaded, vectorized CPU kernels for Burn's flex backend.

/// `$vis fn $name(args) -> ret` (or `$vis unsafe fn …`), running the `#[inline(always)]`
/// function `$generic` compiled three ways and picked at run time: for AVX-512 (+AVX2, FMA),
/// for AVX2+FMA, and for the baseline the crate is built for (x86-64's SSE2, or any other
/// architecture). The crate is built for baseline x86-64, where LLVM vectorizes with SSE2
/// only; this gives a plain loop written with independent lanes the wide registers, with the
/// `unsafe` of `target_feature` kept inside. Every CPU kernel's vectorized loop goes through it
/// (GELU, attention's max/exp, Winograd, LayerNorm, RoPE, upsampling).
/// LLVM does not contract `a * b + c` into a fused multiply-add (Rust emits no fast-math
/// flags), so the three builds compute bit-identical elementwise results; reductions written
/// with fixed lanes also round the same way in all three.
#[cfg(all(feature = "flex", not(target_arch = "wasm32")))]
macro_rules! multiversion {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? = $generic:path) => {
        multiversion!(@emit [$(#[$meta])*] [$vis] [] $name [$($arg: $ty),*] [$($ret)?] $generic);
    };
    ($(#[$meta:meta])* $vis:vis unsafe fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? = $generic:path) => {
        multiversion!(@emit [$(#[$meta])*] [$vis] [unsafe] $name [$($arg: $ty),*] [$($ret)?] $generic);
    };
    // `$unsafe` is empty for a safe `$generic` (the fallback call is a plain block then).
    (@emit [$($meta:tt)*] [$vis:vis] [$($unsafe:ident)?] $name:ident [$($arg:ident: $ty:ty),*] [$($ret:ty)?] $generic:path) => {
        $($meta)*
        $vis $($unsafe)? fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn avx512($($arg: $ty),*) $(-> $ret)? {
                    $generic($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn avx2($($arg: $ty),*) $(-> $ret)? {
                    $generic($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has AVX-512F (checked above); `$generic`'s own contract,
                    // if it is unsafe, is the caller's (this function is unsafe then too).
                    return unsafe { avx512($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                    // SAFETY: the CPU has AVX2 and FMA (checked above); as above.
                    return unsafe { avx2($($arg),*) };
                }
            }
            $($unsafe)? { $generic($($arg),*) }
        }
    };
}

pub mod activation;
pub mod broadcast;
pub mod concat;
pub mod matmul;
#[cfg(all(test, feature = "flex", not(target_arch = "wasm32")))]
pub(crate) mod test_support;
#[cfg(all(feature = "flex", not(target_arch = "wasm32")))]
pub(crate) mod flex;
#[cfg(all(feature = "flex", not(target_arch = "wasm32")))]
pub(crate) mod rope;
pub mod attention;
#[cfg(all(feature = "flex", not(target_arch = "wasm32")))]
pub(crate) mod conv;
#[cfg(all(feature = "flex", not(target_arch = "wasm32")))]
pub(crate) mod conv_im2col;
#[cfg(all(feature = "flex", not(target_arch = "wasm32")))]
pub(crate) mod conv_transpose;
#[cfg(all(feature = "flex", not(target_arch = "wasm32")))]
pub(crate) mod layer_norm;
#[cfg(all(feature = "flex", not(target_arch = "wasm32")))]
pub(crate) mod linear;
#[cfg(all(feature = "flex", not(target_arch = "wasm32")))]
pub(crate) mod resize;
#[cfg(all(feature = "flex", not(target_arch = "wasm32")))]
pub(crate) mod winograd;

/// `a [m×k] · w [k×n] (+ bias [n])`, row-major and contiguous, on rayon's pool: the CPU
/// matrix product behind every linear layer (and 1×1 convolution) on flex. Public so that
/// `benches/src/bin/gemm.rs` can time it against the reference's BLAS.
///
/// # Panics
/// If the slice lengths do not match `m`, `k`, `n`.
#[cfg(all(feature = "flex", not(target_arch = "wasm32")))]
pub fn cpu_matmul_bias(a: &[f32], w: &[f32], bias: Option<&[f32]>, m: usize, k: usize, n: usize) -> Vec<f32> {
    linear::matmul_bias(a, w, bias, m, k, n)
}

/// How [`CpuConv3x3::run`] computes a 3×3 convolution.
#[cfg(all(feature = "flex", not(target_arch = "wasm32")))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conv3x3Algorithm {
    /// Winograd F(4×4, 3×3) (`winograd.rs`): what the model runs on flex.
    Winograd,
    /// Nine shifted matrix products over the padded input (`conv.rs`): the previous path.
    ShiftedGemm,
}

/// One 3×3 convolution layer (stride 1, padding 1) on the CPU, prepared once as the model
/// prepares it (the Winograd filter transform computed up front). Public so that
/// `benches/src/bin/conv.rs` can time both algorithms against the reference's convolution.
#[cfg(all(feature = "flex", not(target_arch = "wasm32")))]
#[derive(Debug, Clone)]
pub struct CpuConv3x3 {
    weights: Vec<f32>,
    transformed: Vec<f32>,
    bias: Option<Vec<f32>>,
    c_in: usize,
    c_out: usize,
}

#[cfg(all(feature = "flex", not(target_arch = "wasm32")))]
impl CpuConv3x3 {
    /// A layer with weights [C_out, C_in, 3, 3] and an optional bias [C_out].
    ///
    /// # Panics
    /// If the slice lengths do not match the channel counts.
    pub fn new(weights: &[f32], bias: Option<&[f32]>, c_in: usize, c_out: usize) -> Self {
        assert!(weights.len() == c_out * c_in * 9 && bias.is_none_or(|b| b.len() == c_out), "CpuConv3x3: operand sizes");
        let transformed = winograd::transform_filters(weights, c_out, c_in);
        Self { weights: weights.to_vec(), transformed, bias: bias.map(<[f32]>::to_vec), c_in, c_out }
    }

    /// x [N, C_in, H, W] (contiguous, `[n, h, w]` given) -> [N, C_out, H, W], on rayon's pool.
    ///
    /// # Panics
    /// If `x` does not hold N·C_in·H·W values.
    pub fn run(&self, x: &[f32], [n, h, w]: [usize; 3], algorithm: Conv3x3Algorithm) -> Vec<f32> {
        let shape = [n, self.c_in, h, w];
        assert_eq!(x.len(), n * self.c_in * h * w, "CpuConv3x3::run: input size");
        let input = conv::contiguous_input(x, shape);
        match algorithm {
            Conv3x3Algorithm::Winograd => winograd::conv3x3(&input, &self.transformed, self.bias.as_deref(), shape, self.c_out, false),
            Conv3x3Algorithm::ShiftedGemm => conv::shifted_gemm(&input, &self.weights, self.bias.as_deref(), shape, self.c_out, 3),
        }
    }
}

/// Whether `B` runs our CPU kernels, which read strided views directly (so callers may pass
/// views instead of contiguous copies). False on every GPU backend.
pub(crate) fn reads_strided_views<B: burn::tensor::backend::Backend>() -> bool {
    #[cfg(all(feature = "flex", not(target_arch = "wasm32")))]
    if flex::is_flex::<B>() {
        return true;
    }
    false
}
