//! `gs_ply`: the predicted 3D Gaussians ([`da3::Gaussians`], from `infer_gs`) as a binary
//! little-endian PLY in the standard 3DGS layout that splat viewers (SuperSplat, gsplat-based
//! viewers, the original 3DGS SIBR viewer) open. Port of the reference's `export_to_gs_ply`
//! (`utils/export/gs.py`) and `save_gaussian_ply` / `export_ply`
//! (`utils/gsply_helpers.py`), with the parameters `export_to_gs_ply` passes:
//!
//! - **views**: every `gs_views_interval`-th view (0, k, 2k, …);
//! - **border pruning**: a view's Gaussians in the outer `⌊8/256·H⌋` rows and `⌊8/256·W⌋`
//!   columns are dropped (border Gaussians are of lower quality);
//! - **depth pruning**: per view, Gaussians whose pixel depth (the prediction's depth) is
//!   above the 0.9 quantile of that view's depth (linear interpolation, as `torch.quantile`)
//!   are dropped — the farthest 10%;
//! - the remaining Gaussians are written view by view in row-major pixel order.
//!
//! Vertex properties, all float32: `x y z` (means), `nx ny nz` (zeros), `f_dc_0..2` (the DC
//! SH coefficient per colour), `f_rest_0..` only with [`GsPlyOptions::sh_dc_only`] off (the
//! 3DGS channel-major order: colour c's coefficients 1..8 at `c·8 + k − 1`), `opacity`
//! (inverse sigmoid), `scale_0..2` (natural log), `rot_0..3` (w, x, y, z as stored in
//! [`da3::Gaussians::rotations`]). The header has exactly the lines `plyfile` writes.
//!
//! Deviation: the reference trims the border with `mask[gh:-gh, gw:-gw]`, which keeps
//! nothing when an image side is under 32 pixels (`⌊8/256·side⌋ = 0`); here a zero trim
//! trims nothing.

use std::io::Write;
use std::path::{Path, PathBuf};

use da3::{Gaussians, Prediction};

use crate::atomic::{create_dir, write_atomic};
use crate::error::{ExportError, Result};

/// Sub-directory of the export directory the file goes to (as the reference).
pub const DIR_NAME: &str = "gs_ply";
/// File name inside [`DIR_NAME`] (the reference's `f"{idx:04d}.ply"` with idx 0).
pub const FILE_NAME: &str = "0000.ply";

/// Options of [`export_gs_ply`]; the defaults are the reference's `export_to_gs_ply`.
#[derive(Debug, Clone, PartialEq)]
pub struct GsPlyOptions {
    /// Export the Gaussians of every this-many views (≥ 1; the reference CLI's
    /// `--gs-views-interval`, default 1).
    pub gs_views_interval: usize,
    /// Keep Gaussians whose depth is at most this quantile of their view's depth (0.9);
    /// `None` or ≥ 1 keeps all.
    pub prune_by_depth_quantile: Option<f64>,
    /// Drop the Gaussians of the border pixels (true).
    pub prune_border: bool,
    /// Write only the DC spherical-harmonic term (true, the reference's `save_sh_dc_only`);
    /// false also writes the 24 `f_rest_*` coefficients of degrees 1 and 2.
    pub sh_dc_only: bool,
}

impl Default for GsPlyOptions {
    fn default() -> Self {
        Self { gs_views_interval: 1, prune_by_depth_quantile: Some(0.9), prune_border: true, sh_dc_only: true }
    }
}

/// Indices (into the flattened `V·H·W` Gaussians) of the Gaussians the export keeps, in
/// file order (see the module docs).
pub fn gs_ply_selection(pred: &Prediction, options: &GsPlyOptions) -> Result<Vec<usize>> {
    let g = gaussians_of(pred)?;
    if options.gs_views_interval == 0 {
        return Err(ExportError::Input("gs_views_interval must be at least 1".into()));
    }
    let (v, h, w) = (pred.views, pred.height, pred.width);
    if (g.views, g.height, g.width) != (v, h, w) || g.len() != v * h * w {
        return Err(ExportError::Input(format!(
            "the prediction has {v} views of {w}x{h} but its Gaussians are {} views of {}x{} ({} Gaussians)",
            g.views,
            g.width,
            g.height,
            g.len()
        )));
    }
    if pred.depth.len() != v * h * w {
        return Err(ExportError::Input(format!("{} depth values for {v} views of {w}x{h}", pred.depth.len())));
    }
    let (trim_h, trim_w) = if options.prune_border { (8 * h / 256, 8 * w / 256) } else { (0, 0) };
    let mut keep = Vec::new();
    for view in (0..v).step_by(options.gs_views_interval) {
        let depth = pred.depth_of(view);
        let limit = match options.prune_by_depth_quantile {
            Some(q) if q < 1.0 => quantile(depth, q),
            _ => f32::INFINITY,
        };
        for y in trim_h..h - trim_h {
            for x in trim_w..w - trim_w {
                // `<=` as the reference; NaN depths fail it and are dropped.
                if depth[y * w + x] <= limit {
                    keep.push((view * h + y) * w + x);
                }
            }
        }
    }
    Ok(keep)
}

/// Writes `dir/gs_ply/0000.ply` (creating the directories) and returns its path. Fails with
/// [`ExportError::Input`] when the prediction has no Gaussians (predict with `infer_gs`).
pub fn export_gs_ply(dir: &Path, pred: &Prediction, options: &GsPlyOptions) -> Result<PathBuf> {
    let keep = gs_ply_selection(pred, options)?;
    let out_dir = dir.join(DIR_NAME);
    create_dir(&out_dir)?;
    let path = out_dir.join(FILE_NAME);
    write_gs_ply(&path, gaussians_of(pred)?, &keep, options.sh_dc_only)?;
    Ok(path)
}

/// The property names of the vertex element, in order.
pub fn property_names(sh_dc_only: bool) -> Vec<String> {
    let mut names: Vec<String> = ["x", "y", "z", "nx", "ny", "nz"].map(String::from).into();
    names.extend((0..3).map(|i| format!("f_dc_{i}")));
    if !sh_dc_only {
        names.extend((0..3 * (da3::gaussians::SH_COEFFS - 1)).map(|i| format!("f_rest_{i}")));
    }
    names.push("opacity".into());
    names.extend((0..3).map(|i| format!("scale_{i}")));
    names.extend((0..4).map(|i| format!("rot_{i}")));
    names
}

/// Writes the Gaussians at `indices` as a 3DGS PLY file, atomically.
pub fn write_gs_ply(path: &Path, g: &Gaussians, indices: &[usize], sh_dc_only: bool) -> Result<()> {
    if let Some(&bad) = indices.iter().find(|&&i| i >= g.len()) {
        return Err(ExportError::Input(format!("Gaussian index {bad} out of range ({} Gaussians)", g.len())));
    }
    let names = property_names(sh_dc_only);
    write_atomic(path, |w| {
        // The header plyfile writes (no comment line), so files compare byte for byte.
        write!(w, "ply\nformat binary_little_endian 1.0\nelement vertex {}\n", indices.len())?;
        for name in &names {
            writeln!(w, "property float {name}")?;
        }
        w.write_all(b"end_header\n")?;
        let mut row = Vec::with_capacity(names.len());
        for &i in indices {
            row.clear();
            row.extend(g.means[i]);
            row.extend([0.0f32; 3]);
            row.extend(g.harmonics[i].map(|c| c[0]));
            if !sh_dc_only {
                for colour in &g.harmonics[i] {
                    row.extend(&colour[1..]);
                }
            }
            row.push(inverse_sigmoid(g.opacities[i]));
            row.extend(g.scales[i].map(f32::ln));
            row.extend(g.rotations[i]);
            for v in &row {
                w.write_all(&v.to_le_bytes())?;
            }
        }
        Ok(())
    })
}

/// `log(x / (1 − x))` in float32, as the reference computes it on float32 tensors.
fn inverse_sigmoid(x: f32) -> f32 {
    (x / (1.0 - x)).ln()
}

fn gaussians_of(pred: &Prediction) -> Result<&Gaussians> {
    pred.gaussians.as_ref().ok_or_else(|| {
        ExportError::Input(
            "gs_ply needs 3D Gaussians, but the prediction has none: predict with infer_gs \
             (the CLI's --infer-gs) on a model with a GS head (da3-giant)"
                .into(),
        )
    })
}

/// `torch.quantile(values, q)` (linear interpolation between the closest ranks) in f64,
/// returned as f32 like the reference's float32 result.
fn quantile(values: &[f32], q: f64) -> f32 {
    let mut v: Vec<f32> = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f32::INFINITY;
    }
    let pos = q * (v.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = (lo + 1).min(v.len() - 1);
    let t = pos - lo as f64;
    (v[lo] as f64 + (v[hi] as f64 - v[lo] as f64) * t) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantile_interpolates_like_torch() {
        // torch.quantile(torch.tensor([4., 1., 3., 2., 10.]), 0.9) = 7.6
        assert!((quantile(&[4.0, 1.0, 3.0, 2.0, 10.0], 0.9) - 7.6).abs() < 1e-6);
        assert_eq!(quantile(&[5.0], 0.9), 5.0);
    }

    #[test]
    fn layout_is_the_3dgs_one() {
        let dc = property_names(true);
        assert_eq!(dc.len(), 17);
        assert_eq!(dc[..9], ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]);
        assert_eq!(dc[9..], ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]);
        let full = property_names(false);
        assert_eq!(full.len(), 17 + 24);
        assert_eq!(full[9], "f_rest_0");
        assert_eq!(full[32], "f_rest_23");
    }
}
