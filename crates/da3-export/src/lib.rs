//! Export formats of `da3` predictions, ported from Depth Anything 3's `utils/export`:
//!
//! - [`depth_vis`]: processed image beside its colourized depth (JPEG), plus 16-bit PNGs of
//!   depth and confidence with a JSON sidecar mapping them back to floats;
//! - [`ply`]: binary little-endian point cloud in world coordinates;
//! - [`glb`]: point cloud and camera frustums as binary glTF, aligned to camera 0;
//! - [`colmap`]: COLMAP's binary sparse model (`cameras.bin`, `images.bin`, `points3D.bin`),
//!   with a reader;
//! - [`gs_ply`]: the predicted 3D Gaussians in the standard 3DGS PLY layout.
//!
//! Every exporter takes the [`da3::Prediction`] and the processed RGB images it was
//! predicted from ([`ImageRgb8`], one per view, of the prediction's size). Every file is
//! written atomically (`NAME.tmp` in the same directory, then renamed), and every failure
//! is an [`ExportError`] naming the path involved.

#![warn(missing_docs)]

pub mod atomic;
pub mod colmap;
pub mod depth_vis;
pub mod error;
pub mod format;
pub mod geometry;
pub mod glb;
pub mod gs_ply;
pub mod image;
pub mod order_stats;
pub mod ply;
pub mod spectral;

pub use colmap::{export_colmap, ColmapOptions};
pub use depth_vis::export_depth_vis;
pub use error::{ExportError, Result};
pub use format::{ExportFormat, ExportFormats, ParseFormatError};
pub use glb::{export_glb, GlbOptions};
pub use gs_ply::{export_gs_ply, GsPlyOptions};
pub use image::{check_inputs, check_inputs_with_cameras, ImageRgb8};
pub use ply::{export_ply, PlyOptions};
