//! `ply`: the predicted point cloud as a binary little-endian PLY file (`x y z` float32,
//! `red green blue` uchar) in world coordinates. Not a reference format (its PR was closed
//! upstream); the points are selected like the COLMAP export's:
//!
//! - every pixel with finite depth > 0 and `conf >= percentile(conf, conf_thresh_percentile)`
//!   (the percentile over all views' pixels, NumPy's linear method; every pixel when the
//!   prediction has no confidence) is unprojected with
//!   `K⁻¹` and the camera-to-world inverse of its extrinsics;
//! - when more than `num_max_points` remain, a uniform subsample is drawn with a seeded
//!   ChaCha8 generator, so a rerun writes the same file. Only the drawn points are stored
//!   (two passes over the pixels), so memory does not grow with the scene.

use std::io::Write;
use std::path::{Path, PathBuf};

use da3::Prediction;

use crate::atomic::{create_dir, write_atomic};
use crate::error::Result;
use crate::geometry::{conf_filter, sampled_cloud, Cloud};
use crate::image::{check_inputs_with_cameras, ImageRgb8};

/// File name of the point cloud in the export directory.
pub const FILE_NAME: &str = "scene.ply";

/// Options of [`export_ply`].
#[derive(Debug, Clone, PartialEq)]
pub struct PlyOptions {
    /// Keep pixels whose confidence is at least this percentile (0–100) of all confidences.
    pub conf_thresh_percentile: f64,
    /// At most this many points are written.
    pub num_max_points: usize,
    /// Seed of the subsampling generator.
    pub seed: u64,
}

impl Default for PlyOptions {
    /// 40th percentile, one million points, seed 42.
    fn default() -> Self {
        Self {
            conf_thresh_percentile: 40.0,
            num_max_points: 1_000_000,
            seed: 42,
        }
    }
}

/// Selects, unprojects and subsamples the points of the PLY export (see the module docs).
pub fn ply_points(pred: &Prediction, images: &[ImageRgb8], options: &PlyOptions) -> Result<Cloud> {
    check_inputs_with_cameras(pred, images, "ply")?;
    sampled_cloud(
        pred,
        images,
        conf_filter(pred, options.conf_thresh_percentile),
        options.num_max_points,
        options.seed,
    )
}

/// Writes `dir/scene.ply` (creating `dir` if needed) and returns its path.
pub fn export_ply(
    dir: &Path,
    pred: &Prediction,
    images: &[ImageRgb8],
    options: &PlyOptions,
) -> Result<PathBuf> {
    let cloud = ply_points(pred, images, options)?;
    create_dir(dir)?;
    let path = dir.join(FILE_NAME);
    write_ply(&path, &cloud.points, &cloud.colors)?;
    Ok(path)
}

/// Writes coloured points as a binary little-endian PLY file, atomically. Points and colours
/// are paired up to the shorter list.
pub fn write_ply(path: &Path, points: &[[f32; 3]], colors: &[[u8; 3]]) -> Result<()> {
    let count = points.len().min(colors.len());
    write_atomic(path, |w| {
        write!(
            w,
            "ply\nformat binary_little_endian 1.0\ncomment written by da3-export\nelement vertex {count}\n\
             property float x\nproperty float y\nproperty float z\n\
             property uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n"
        )?;
        for (p, c) in points.iter().zip(colors) {
            for v in p {
                w.write_all(&v.to_le_bytes())?;
            }
            w.write_all(c)?;
        }
        Ok(())
    })
}
