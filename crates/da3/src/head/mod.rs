//! Dense prediction heads: DualDPT (main series: depth, confidence, rays), DPT (mono and
//! metric models: depth and sky) and GSDPT (per-pixel 3D Gaussians of da3-giant), built from
//! shared reassembly and fusion pieces.

pub mod dpt;
pub mod dualdpt;
pub mod fusion;
pub mod gsdpt;
pub mod reassemble;
pub mod upsample;
pub mod uv_embed;

pub use dpt::{Dpt, DptOutput};
pub use dualdpt::{DualDpt, HeadOutput, HeadRays};
pub use gsdpt::{GsDpt, GsHeadOutput};

use burn::tensor::backend::Backend;

/// Frames a head processes at once on backend `B`: one on the CPU (`flex`), the reference's
/// `chunk_size` of 8 elsewhere. The heads work on each frame alone, so the chunk changes only
/// memory and speed, never the values.
///
/// Why one frame on the CPU: at 8 frames the head's full-resolution maps of all frames are
/// live together, far past the caches. da3-small at 8 views of 504×378 (`da3-bench`, 2
/// threads, 2-core Xeon, 2026-11-24, `tools/bench/ab.sh` against chunks of 8): peak RSS 860 →
/// 489 MB, median pass 0.914× (min 0.875×, 6 rounds); at 2 views 368 → 322 MB, 0.981×. On a
/// GPU a chunk of 8 keeps the device busy with fewer, larger kernels, as in the reference.
pub(crate) fn frames_per_chunk<B: Backend>() -> usize {
    #[cfg(all(feature = "flex", not(target_arch = "wasm32")))]
    if crate::kernels::flex::is_flex::<B>() {
        return 1;
    }
    8
}
