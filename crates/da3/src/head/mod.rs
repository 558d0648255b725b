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
