//! The files `da3 infer` writes: `results.npz`, `depth_NNNN.png`, `processed_NNNN.png` and
//! `depth_png_ranges.json`.

use std::io::{Seek, Write};
use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};
use serde_json::Value;
use crate::batch::Processed;
use da3::Prediction;
use image::codecs::png::PngEncoder;
use image::{ExtendedColorType, ImageEncoder};

use da3_export::atomic::write_atomic;
use da3_export::{check_inputs, ImageRgb8};
use crate::npz::{write_npz, NpzArray};
use crate::png16::{quantize_depth, write_png16};

/// File name of the arrays, with the upstream "mini_npz" keys.
pub const NPZ_NAME: &str = "results.npz";
/// File name of the per-view depth ranges of the PNGs.
pub const RANGES_NAME: &str = "depth_png_ranges.json";

/// File name of view `i`'s depth PNG: `depth_0000.png`, `depth_0001.png`, ...
pub fn depth_png_name(i: usize) -> String {
    format!("depth_{i:04}.png")
}

/// File name of the processed RGB image of view `i`: `processed_0000.png`, ...
pub fn processed_png_name(i: usize) -> String {
    format!("processed_{i:04}.png")
}

/// Paths of everything [`write_outputs`] wrote.
#[derive(Debug, Clone)]
pub struct Written {
    /// `results.npz`.
    pub npz: PathBuf,
    /// One 16-bit depth PNG per view.
    pub depth_pngs: Vec<PathBuf>,
    /// One 8-bit RGB PNG per view: the image the network saw.
    pub processed_pngs: Vec<PathBuf>,
    /// `depth_png_ranges.json`.
    pub ranges: PathBuf,
}

/// Checks that the prediction's arrays have the sizes its `views`, `height`, `width` announce
/// and that there is one processed image of that size per view
/// ([`da3_export::check_inputs`]), plus the sky map of mono/metric models.
pub fn check_prediction(p: &Prediction, images: &[ImageRgb8]) -> Result<()> {
    check_inputs(p, images).context("internal error")?;
    let n = p.views * p.height * p.width;
    ensure!(
        p.sky.as_ref().is_none_or(|sky| sky.len() == n),
        "internal error: prediction for {} views of {}x{} has a sky map of {} values",
        p.views,
        p.width,
        p.height,
        p.sky.as_ref().map_or(0, Vec::len)
    );
    Ok(())
}

/// Removes `depth_NNNN.png` and `processed_NNNN.png` files for `NNNN >= views` left by an
/// earlier run with more views (consecutive numbers only, stopping at the first missing one),
/// so the directory never mixes scenes.
fn remove_stale_pngs(dir: &Path, views: usize) -> Result<()> {
    for name in [depth_png_name as fn(usize) -> String, processed_png_name] {
        for i in views.. {
            let path = dir.join(name(i));
            if !path.is_file() {
                break;
            }
            std::fs::remove_file(&path).with_context(|| format!("cannot remove stale {}", path.display()))?;
        }
    }
    Ok(())
}

/// Writes `results.npz` (`depth`, `conf` [S,H,W], `extrinsics` [S,3,4], `intrinsics` [S,3,3],
/// float32; like upstream's mini_npz, each key only when the model predicts it, plus `sky`
/// [S,H,W] for mono/metric models and `feat_layer_<i>` [S,H/14,W/14,D] for each
/// [`Prediction::aux_features`] layer), one 16-bit PNG per view and `depth_png_ranges.json` into
/// `dir` (created if needed), replacing the outputs of an earlier run; plus
/// `processed_NNNN.png`, the 8-bit RGB image each view was predicted from
/// ([`Preprocessed::images`], pixel-aligned with the depth). `sources` names the input image
/// of each view (recorded in the JSON with its original size); `images` are `pre`'s processed
/// images; `extra` is merged into the top level of the JSON (skipped inputs, depth units).
pub fn write_outputs(
    dir: &Path,
    p: &Prediction,
    sources: &[PathBuf],
    pre: &Processed,
    images: &[ImageRgb8],
    extra: serde_json::Map<String, Value>,
) -> Result<Written> {
    check_prediction(p, images)?;
    ensure!(pre.info.len() == p.views, "internal error: {} image records for {} views", pre.info.len(), p.views);
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create output directory {}", dir.display()))?;
    let (s, h, w) = (p.views, p.height, p.width);

    let npz = dir.join(NPZ_NAME);
    write_atomic(&npz, |f| write_mini_npz(f, p).map(drop))?;

    let mut depth_pngs = Vec::with_capacity(s);
    let mut processed_pngs = Vec::with_capacity(s);
    let mut views = Vec::with_capacity(s);
    for i in 0..s {
        let (values, range) = quantize_depth(p.depth_of(i));
        let name = depth_png_name(i);
        let path = dir.join(&name);
        write_atomic(&path, |f| write_png16(f, w as u32, h as u32, &values).map_err(std::io::Error::other))?;
        depth_pngs.push(path);
        let processed = processed_png_name(i);
        let path = dir.join(&processed);
        let img = &images[i];
        write_atomic(&path, |f| {
            let encoder = PngEncoder::new(f);
            encoder.write_image(&img.pixels, w as u32, h as u32, ExtendedColorType::Rgb8).map_err(std::io::Error::other)
        })?;
        processed_pngs.push(path);
        let (orig_w, orig_h) = pre.info[i].original_size();
        views.push(serde_json::json!({
            "file": name,
            "processed": processed,
            "image": sources.get(i).map(|p| p.display().to_string()),
            "original_width": orig_w,
            "original_height": orig_h,
            "min": range.min,
            "max": range.max,
        }));
    }

    remove_stale_pngs(dir, s)?;

    let ranges = dir.join(RANGES_NAME);
    let mut doc = serde_json::json!({
        "mapping": "depth = min + png / 65535 * (max - min); png = round((depth - min) / (max - min) * 65535); non-finite depth is stored as 0",
        "width": w,
        "height": h,
        "views": views,
    });
    if let Value::Object(map) = &mut doc {
        map.extend(extra);
    }
    write_atomic(&ranges, |f| {
        serde_json::to_writer_pretty(&mut *f, &doc)?;
        f.write_all(b"\n")
    })?;
    Ok(Written { npz, depth_pngs, processed_pngs, ranges })
}

/// Writes `p`'s arrays with the upstream "mini_npz" keys as an `.npz` into `w`: `depth`
/// [S,H,W]; with cameras `conf` [S,H,W], `extrinsics` [S,3,4], `intrinsics` [S,3,3]; `sky`
/// [S,H,W] for models that predict it; `feat_layer_<i>` [S,H/14,W/14,D] when requested.
/// `results.npz` and `da3 serve`'s npz responses.
pub fn write_mini_npz<W: Write + Seek>(w: W, p: &Prediction) -> std::io::Result<W> {
    let (s, h, wd) = (p.views, p.height, p.width);
    let extrinsics: Vec<f32> = p.extrinsics.iter().flatten().flatten().copied().collect();
    let intrinsics: Vec<f32> = p.intrinsics.iter().flatten().flatten().copied().collect();
    let (map_shape, ext_shape, ixt_shape) = ([s, h, wd], [s, 3, 4], [s, 3, 3]);
    let mut arrays = vec![NpzArray { name: "depth", shape: &map_shape, data: &p.depth }];
    if p.has_cameras() {
        arrays.push(NpzArray { name: "conf", shape: &map_shape, data: &p.conf });
        arrays.push(NpzArray { name: "extrinsics", shape: &ext_shape, data: &extrinsics });
        arrays.push(NpzArray { name: "intrinsics", shape: &ixt_shape, data: &intrinsics });
    }
    if let Some(sky) = &p.sky {
        arrays.push(NpzArray { name: "sky", shape: &map_shape, data: sky });
    }
    // The reference's `aux["feat_layer_<i>"]` arrays, [S, H/14, W/14, D].
    let feat_names: Vec<String> = p.aux_features.iter().map(|f| format!("feat_layer_{}", f.layer)).collect();
    let feat_shapes: Vec<[usize; 4]> = p.aux_features.iter().map(|f| [s, f.height, f.width, f.dim]).collect();
    for ((f, name), shape) in p.aux_features.iter().zip(&feat_names).zip(&feat_shapes) {
        if f.data.len() != shape.iter().product::<usize>() {
            return Err(std::io::Error::other(format!(
                "internal error: feature layer {} has {} values for shape {shape:?}",
                f.layer,
                f.data.len()
            )));
        }
        arrays.push(NpzArray { name, shape, data: &f.data });
    }
    write_npz(w, &arrays)
}
