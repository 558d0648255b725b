//! Dense prediction heads: DualDPT (main series: depth, confidence, rays) and DPT (mono and
//! metric models: depth and sky), built from shared reassembly and fusion pieces.

pub mod dpt;
pub mod dualdpt;
pub mod fusion;
pub mod reassemble;
pub mod upsample;
pub mod uv_embed;

pub use dpt::{Dpt, DptOutput};
pub use dualdpt::{DualDpt, HeadOutput};
