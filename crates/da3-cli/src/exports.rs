//! `--export-format`: the formats written by `da3-export` beside `results.npz`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use da3::preprocess::{Preprocessed, ResizeMethod};
use da3::Prediction;
use da3_export::colmap::{export_colmap, ColmapOptions, SourceImage};
use da3_export::depth_vis::export_depth_vis;
use da3_export::glb::{export_glb, GlbOptions};
use da3_export::ply::{export_ply, PlyOptions};
use da3_export::{ExportFormat, ImageRgb8};

/// Options of the point-cloud formats (`--conf-thresh-percentile`, `--num-max-points`,
/// `--show-cameras`).
#[derive(Debug, Clone, Copy)]
pub struct CloudOptions {
    /// Pixels below this confidence percentile are dropped.
    pub conf_thresh_percentile: f64,
    /// At most this many points (a seeded subsample).
    pub num_max_points: usize,
    /// Draw camera frustums in the GLB.
    pub show_cameras: bool,
}

/// Checks up front what the reference refuses too: COLMAP output needs a `*_resize` method
/// (with cropping, intrinsics at the original size are undefined).
pub fn check_formats(formats: &[ExportFormat], method: ResizeMethod) -> Result<()> {
    let crops = matches!(method, ResizeMethod::UpperBoundCrop | ResizeMethod::LowerBoundCrop);
    if formats.contains(&ExportFormat::Colmap) && crops {
        bail!(crate::UsageError(format!(
            "--export-format colmap needs a *_resize --process-res-method (got {method}): cropped images have no intrinsics at their original size"
        )));
    }
    if formats.contains(&ExportFormat::Npz) {
        bail!(crate::UsageError(
            "--export-format npz (mini_npz plus the processed images) is not implemented yet; use mini_npz, whose results.npz is always written, and the processed_NNNN.png images".into()
        ));
    }
    Ok(())
}

/// Writes every requested format other than `mini_npz` (always written as `results.npz`) into
/// `dir`; returns the paths written. GLB, like the reference, comes with `depth_vis`.
pub fn write_exports(
    dir: &Path,
    formats: &[ExportFormat],
    pred: &Prediction,
    pre: &Preprocessed,
    sources: &[PathBuf],
    cloud: CloudOptions,
) -> Result<Vec<PathBuf>> {
    let images: Vec<ImageRgb8> = pre
        .images
        .iter()
        .map(|im| ImageRgb8::new(im.width, im.height, im.pixels.clone()))
        .collect::<Result<_, _>>()
        .context("internal error: processed image of the wrong size")?;
    let mut written = Vec::new();
    let wants = |f: ExportFormat| formats.contains(&f);
    if wants(ExportFormat::DepthVis) || wants(ExportFormat::Glb) {
        let files = export_depth_vis(dir, pred, &images)?; // writes dir/depth_vis/
        written.extend(files.visualizations);
        written.push(files.ranges);
    }
    if wants(ExportFormat::Ply) {
        let options = PlyOptions {
            conf_thresh_percentile: cloud.conf_thresh_percentile,
            num_max_points: cloud.num_max_points,
            ..PlyOptions::default()
        };
        written.push(export_ply(dir, pred, &images, &options)?);
    }
    if wants(ExportFormat::Glb) {
        let options = GlbOptions {
            conf_thresh_percentile: cloud.conf_thresh_percentile,
            num_max_points: cloud.num_max_points,
            show_cameras: cloud.show_cameras,
            ..GlbOptions::default()
        };
        written.push(export_glb(dir, pred, &images, &options)?);
    }
    if wants(ExportFormat::Colmap) {
        let sources: Vec<SourceImage> = sources
            .iter()
            .zip(&pre.info)
            .map(|(path, info)| {
                let (width, height) = info.original_size();
                let name = path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned());
                SourceImage { name, width, height }
            })
            .collect();
        let options = ColmapOptions { conf_thresh_percentile: cloud.conf_thresh_percentile };
        let files = export_colmap(&dir.join("colmap"), pred, &images, &sources, &options)?;
        written.extend([files.cameras, files.images, files.points]);
    }
    Ok(written)
}
