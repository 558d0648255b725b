//! `--export-format`: the formats written by `da3-export` beside `results.npz`.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use da3::preprocess::{reference_pixel_lut, ResizeMethod};

use crate::batch::Processed;
use da3::{Da3Config, Prediction};
use da3_export::colmap::{export_colmap, ColmapOptions, SourceImage};
use da3_export::depth_vis::export_depth_vis;
use da3_export::glb::{export_glb, GlbOptions};
use da3_export::gs_ply::{export_gs_ply, GsPlyOptions};
use da3_export::ply::{export_ply, PlyOptions};
use da3_export::atomic::write_atomic;
use da3_export::{ExportFormat, ImageRgb8};

use crate::npz::{write_npz_any, ElementType, NpyArray, NpyData};

/// Options of the point-cloud formats (`--conf-thresh-percentile`, `--num-max-points`,
/// `--show-cameras`, `--gs-views-interval`).
#[derive(Debug, Clone, Copy)]
pub struct CloudOptions {
    /// Pixels below this confidence percentile are dropped.
    pub conf_thresh_percentile: f64,
    /// At most this many points (a seeded subsample).
    pub num_max_points: usize,
    /// Draw camera frustums in the GLB.
    pub show_cameras: bool,
    /// gs_ply: export the Gaussians of every this-many views.
    pub gs_views_interval: usize,
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
    Ok(())
}

/// Checks the flags that need a model capability, against the model's configuration (before
/// it is loaded): `--infer-gs` (or gs_ply) needs a GS head, `--export-feat-layers` indices
/// must be blocks of its backbone. Both are usage errors naming the model and what is valid.
pub fn check_model_outputs(config: &Da3Config, infer_gs: bool, feat_layers: &[usize]) -> Result<()> {
    if infer_gs && !config.gs_head {
        bail!(crate::UsageError(format!(
            "--infer-gs (and --export-format gs_ply) need a model with a 3D-Gaussian head, and {} has none; \
             use --model da3-giant or da3nested-giant-large, or drop --infer-gs and gs_ply",
            config.name
        )));
    }
    let depth = config.backbone.depth;
    if let Some(bad) = feat_layers.iter().find(|&&l| l >= depth) {
        bail!(crate::UsageError(format!(
            "--export-feat-layers: block {bad} does not exist; {} has {depth} backbone blocks, give indices 0 to {}",
            config.name,
            depth - 1
        )));
    }
    Ok(())
}

/// Where the `npz` export goes, relative to the export directory (the reference's path).
pub const NPZ_EXPORT_PATH: &str = "exports/npz/results.npz";

/// Rounds like `np.round(x, decimals)` on a float32 array: `rint(x * 10^d) / 10^d`, each step
/// in float32 (numpy keeps the array's dtype), ties to even.
pub fn round_like_numpy(values: &[f32], decimals: i32) -> Vec<f32> {
    let factor = 10f32.powi(decimals);
    values.iter().map(|&v| round_with(v, factor)).collect()
}

/// One value of [`round_like_numpy`], with `factor = 10^decimals`.
fn round_with(v: f32, factor: f32) -> f32 {
    (v * factor).round_ties_even() / factor
}

/// Values per piece when an array is written mapped (a multiple of 3: whole RGB pixels).
const PIECE: usize = 3 << 14;

/// Writes [`round_like_numpy`]`(values, decimals)` as little-endian bytes, a piece at a time.
fn write_rounded(w: &mut dyn Write, values: &[f32], decimals: i32) -> std::io::Result<()> {
    let factor = 10f32.powi(decimals);
    let mut buf = Vec::with_capacity(4 * PIECE);
    for piece in values.chunks(PIECE) {
        buf.clear();
        piece.iter().for_each(|&v| buf.extend_from_slice(&round_with(v, factor).to_le_bytes()));
        w.write_all(&buf)?;
    }
    Ok(())
}

/// Writes the processed images as the reference returns them (every pixel through
/// [`reference_pixel_lut`]), a piece at a time.
fn write_reference_images(w: &mut dyn Write, images: &[ImageRgb8]) -> std::io::Result<()> {
    let lut = reference_pixel_lut();
    let mut buf = Vec::with_capacity(PIECE);
    for image in images {
        for piece in image.pixels.chunks(PIECE) {
            buf.clear();
            // PIECE is a multiple of 3, so `i % 3` is the channel.
            buf.extend(piece.iter().enumerate().map(|(i, &v)| lut[i % 3][v as usize]));
            w.write_all(&buf)?;
        }
    }
    Ok(())
}

/// The reference's `npz` export (`export_to_npz`): `image` (S,H,W,3) uint8, the processed
/// images as the reference returns them (recovered from the normalized input, see
/// [`da3::preprocess::Preprocessed::reference_processed_images`]); `depth` rounded to 6
/// decimals; `conf` rounded to 2, `extrinsics` (S,3,4) and `intrinsics` (S,3,3) when
/// predicted. `images` are the processed 8-bit images (`Preprocessed::images`). Written
/// atomically to `dir/exports/npz/results.npz`; the mapped images and rounded maps are
/// computed as they are written, so the export holds no copy of the scene.
pub fn write_npz_export(dir: &Path, pred: &Prediction, images: &[ImageRgb8]) -> Result<PathBuf> {
    let path = dir.join(NPZ_EXPORT_PATH);
    let parent = path.parent().unwrap_or(dir);
    std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    let (s, h, w) = (pred.views, pred.height, pred.width);
    let extrinsics: Vec<f32> = pred.extrinsics.iter().flatten().flatten().copied().collect();
    let intrinsics: Vec<f32> = pred.intrinsics.iter().flatten().flatten().copied().collect();
    let (image_shape, map_shape, ext_shape, ixt_shape) = ([s, h, w, 3], [s, h, w], [s, 3, 4], [s, 3, 3]);
    let pixels = images.iter().map(|im| im.pixels.len()).sum();
    let image = |w: &mut dyn Write| write_reference_images(w, images);
    let depth = |w: &mut dyn Write| write_rounded(w, &pred.depth, 6);
    let conf = |w: &mut dyn Write| write_rounded(w, &pred.conf, 2);
    let mut arrays = vec![
        NpyArray { name: "image", shape: &image_shape, data: NpyData::Written { element: ElementType::U8, len: pixels, write: &image } },
        NpyArray { name: "depth", shape: &map_shape, data: NpyData::Written { element: ElementType::F32, len: pred.depth.len(), write: &depth } },
    ];
    if pred.has_cameras() {
        arrays.push(NpyArray { name: "conf", shape: &map_shape, data: NpyData::Written { element: ElementType::F32, len: pred.conf.len(), write: &conf } });
        arrays.push(NpyArray { name: "extrinsics", shape: &ext_shape, data: NpyData::F32(&extrinsics) });
        arrays.push(NpyArray { name: "intrinsics", shape: &ixt_shape, data: NpyData::F32(&intrinsics) });
    }
    write_atomic(&path, |f| write_npz_any(f, &arrays).map(drop))?;
    Ok(path)
}

/// Writes every requested format other than `mini_npz` (always written as `results.npz`) into
/// `dir`; returns the paths written. GLB, like the reference, comes with `depth_vis`.
/// `images` are `pre`'s processed images, `sources` the input file of each view.
///
/// The per-view files (`npz`, `depth_vis`, on a scoped thread) and the point clouds (PLY, GLB,
/// Gaussians, COLMAP, on the calling thread) are written concurrently, each group in its usual
/// order. Why: each export is serial, and together they took 0.9 s of a 4.6 s `da3 infer` of
/// 8 views at 504×336 (2026-11-24). The per-view group streams view by view, so running it
/// beside the clouds adds little memory; the clouds, which each hold a point set, still run
/// one after another, and on the calling thread: there glibc's arena holds the heap that the
/// pass freed (the `da3` command keeps freed memory), while on a Rayon worker the same PLY
/// export raised that run's peak RSS by 40 MB (414 → 453 MB).
pub fn write_exports(
    dir: &Path,
    formats: &[ExportFormat],
    pred: &Prediction,
    pre: &Processed,
    images: &[ImageRgb8],
    sources: &[PathBuf],
    cloud: CloudOptions,
) -> Result<Vec<PathBuf>> {
    let wants = |f: ExportFormat| formats.contains(&f);
    let per_view = || -> Result<Vec<PathBuf>> {
        let mut written = Vec::new();
        if wants(ExportFormat::Npz) {
            written.push(write_npz_export(dir, pred, images)?);
        }
        if wants(ExportFormat::DepthVis) || wants(ExportFormat::Glb) {
            let files = export_depth_vis(dir, pred, images)?; // writes dir/depth_vis/
            written.extend(files.visualizations);
            written.push(files.ranges);
        }
        Ok(written)
    };
    let clouds = || -> Result<Vec<PathBuf>> {
        let mut written = Vec::new();
        if wants(ExportFormat::Ply) {
            let options = PlyOptions {
                conf_thresh_percentile: cloud.conf_thresh_percentile,
                num_max_points: cloud.num_max_points,
                ..PlyOptions::default()
            };
            written.push(export_ply(dir, pred, images, &options)?);
        }
        if wants(ExportFormat::Glb) {
            let options = GlbOptions {
                conf_thresh_percentile: cloud.conf_thresh_percentile,
                num_max_points: cloud.num_max_points,
                show_cameras: cloud.show_cameras,
                ..GlbOptions::default()
            };
            written.push(export_glb(dir, pred, images, &options)?);
        }
        if wants(ExportFormat::GsPly) {
            // The reference's export_to_gs_ply: border and depth pruning at their defaults.
            let options = GsPlyOptions { gs_views_interval: cloud.gs_views_interval, ..GsPlyOptions::default() };
            written.push(export_gs_ply(dir, pred, &options)?);
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
            let files = export_colmap(&dir.join("colmap"), pred, images, &sources, &options)?;
            written.extend([files.cameras, files.images, files.points]);
        }
        Ok(written)
    };
    let (per_view, clouds) = std::thread::scope(|scope| {
        let per_view = scope.spawn(per_view);
        let clouds = clouds();
        (per_view.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)), clouds)
    });
    let mut written = per_view?;
    written.extend(clouds?);
    Ok(written)
}
