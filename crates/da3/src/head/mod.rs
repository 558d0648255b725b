//! The DualDPT depth/ray head and its building blocks.

pub mod dualdpt;
pub mod fusion;
pub mod upsample;
pub mod uv_embed;

pub use dualdpt::{DualDpt, HeadOutput};
