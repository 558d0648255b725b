//! Launch of the hand-written WGSL flash-attention kernel (`shaders/attention/flash.wgsl`) on
//! Burn's wgpu runtime.
//!
//! The kernel is handed to CubeCL as a [`CubeTask`] whose "compilation" returns our WGSL text
//! with the tile sizes filled in (what Burn's `template` feature does, without turning that
//! feature on for every crate that builds da3). With no intermediate representation, CubeCL's
//! wgpu server creates the shader module from WGSL and lets wgpu derive the bind-group layout
//! from the shader's declarations, whichever compiler (WGSL or SPIR-V) the runtime otherwise
//! uses for CubeCL kernels.

use burn::backend::wgpu::{CubeTensor, WgpuRuntime};
use burn::tensor::{DType, Shape};
use burn_cubecl::cubecl::prelude::{CompiledKernel, CubeCount, CubeDim, ExecutionMode, KernelId, KernelMetadata, StorageType};
use burn_cubecl::cubecl::server::KernelArguments;
use burn_cubecl::cubecl::prelude::CubePrimitive;
use burn_cubecl::cubecl::{CompilationError, Compiler, CubeTask};

use super::{block_k, QUERY_ROWS};

const SOURCE: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shaders/attention/flash.wgsl"));

/// The WGSL kernel for one head dim (the tile sizes are compile-time constants of the shader).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct FlashWgsl {
    head_dim: usize,
}

impl FlashWgsl {
    /// The shader text with the template values filled in.
    fn source(&self) -> String {
        let bk = block_k(self.head_dim);
        SOURCE
            .replace("{{ hd4 }}", &(self.head_dim / 4).to_string())
            .replace("{{ block_q }}", &QUERY_ROWS.to_string())
            .replace("{{ block_k }}", &bk.to_string())
            .replace("{{ tile4 }}", &(bk * self.head_dim / 4).to_string())
    }
}

impl KernelMetadata for FlashWgsl {
    fn id(&self) -> KernelId {
        KernelId::new::<Self>().info(self.head_dim)
    }

    fn address_type(&self) -> StorageType {
        u32::as_type_native_unchecked().storage_type()
    }
}

impl<C: Compiler> CubeTask<C> for FlashWgsl {
    fn compile(
        &self,
        _compiler: &mut C,
        _options: &C::CompilationOptions,
        _mode: ExecutionMode,
        _address_type: StorageType,
    ) -> Result<CompiledKernel<C>, CompilationError> {
        Ok(CompiledKernel {
            entrypoint_name: "main".to_string(),
            debug_name: Some("da3::flash_attention_wgsl"),
            source: self.source(),
            cube_dim: CubeDim::new_1d(QUERY_ROWS as u32),
            debug_info: None,
            repr: None,
        })
    }
}

/// Runs the WGSL kernel: q [B, heads, Tq, hd], k and v [B, heads, Tk, hd] (f32, unit stride on
/// the last dim) -> contiguous [B, Tq, heads, hd]. The caller checks the preconditions
/// ([`super::supported`]).
pub(super) fn flash_attention(
    q: CubeTensor<WgpuRuntime>,
    k: CubeTensor<WgpuRuntime>,
    v: CubeTensor<WgpuRuntime>,
) -> CubeTensor<WgpuRuntime> {
    let dims = q.meta.shape();
    let (b, heads, n_q, hd) = (dims[0], dims[1], dims[2], dims[3]);
    let n_k = k.meta.shape()[2];
    let (qs, ks, vs) = (q.meta.strides().clone(), k.meta.strides().clone(), v.meta.strides().clone());
    let scale = 1.0 / (hd as f32).sqrt();
    let info: Vec<u32> = [n_q, n_k, heads, qs[0], qs[1], qs[2], ks[0], ks[1], ks[2], vs[0], vs[1], vs[2]]
        .iter()
        .map(|&x| x as u32)
        .chain([scale.to_bits()])
        .collect();
    let info_bytes: Vec<u8> = info.iter().flat_map(|x| x.to_le_bytes()).collect();

    let client = q.client.clone();
    let out_shape = Shape::new([b, n_q, heads, hd]);
    let out_handle = client.empty(out_shape.num_elements() * core::mem::size_of::<f32>());
    let out = CubeTensor::new_contiguous(client.clone(), q.device.clone(), out_shape, out_handle, DType::F32);
    let info_handle = client.create_from_slice(&info_bytes);

    let count = CubeCount::Static(n_q.div_ceil(QUERY_ROWS) as u32, heads as u32, b as u32);
    let args = KernelArguments::new().with_buffers(vec![
        q.handle.binding(),
        k.handle.binding(),
        v.handle.binding(),
        out.handle.clone().binding(),
        info_handle.binding(),
    ]);
    client.launch(Box::new(FlashWgsl { head_dim: hd }), count, args);
    out
}
