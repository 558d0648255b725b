//! Known cameras: the `--poses` JSON file and the checks shared with COLMAP input.
//!
//! Schema of `--poses FILE` (also in `da3 infer --help` and the README):
//!
//! ```json
//! {
//!   "views": [
//!     {
//!       "image": "IMG_0001.jpg",
//!       "world_to_camera": [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]],
//!       "intrinsics": [[1000, 0, 960], [0, 1000, 540], [0, 0, 1]]
//!     }
//!   ]
//! }
//! ```
//!
//! - `world_to_camera`: 4×4 (or 3×4 `[R|t]`) world-to-camera matrix in OpenCV axes (x right,
//!   y down, z forward), rotation orthonormal with determinant +1;
//! - `intrinsics`: 3×3 pinhole matrix in pixels of the **original** image file (the CLI
//!   rescales it through the preprocessing);
//! - `image` (optional): the input it belongs to, as given on the command line or by file
//!   name. When no view has `image`, views are matched to the inputs by order. A bare JSON
//!   array of views is accepted too.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use da3::camera_enc::{Mat3, Mat4};
use serde::Deserialize;

/// A known camera of one input image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KnownCamera {
    /// World-to-camera transform (OpenCV axes).
    pub world_to_camera: Mat4,
    /// Pinhole intrinsics in pixels of the original image.
    pub intrinsics: Mat3,
}

/// Largest `|R Rᵀ - I|` entry accepted for a rotation (JSON files often hold rounded values).
const ORTHONORMAL_TOLERANCE: f64 = 1e-2;

impl KnownCamera {
    /// Checks that the matrices are a rigid transform and a pinhole camera; `what` names the
    /// camera in the error (`view 2 (a.jpg) of poses.json`).
    pub fn check(&self, what: &str) -> Result<()> {
        let m = &self.world_to_camera;
        let k = &self.intrinsics;
        if m.iter().flatten().chain(k.iter().flatten()).any(|v| !v.is_finite()) {
            bail!("{what}: the matrices hold non-finite numbers");
        }
        if m[3] != [0.0, 0.0, 0.0, 1.0] {
            bail!("{what}: the last row of world_to_camera must be [0, 0, 0, 1], not {:?}", m[3]);
        }
        let mut worst: f64 = 0.0;
        for i in 0..3 {
            for j in 0..3 {
                let dot: f64 = (0..3).map(|c| m[i][c] * m[j][c]).sum();
                worst = worst.max((dot - if i == j { 1.0 } else { 0.0 }).abs());
            }
        }
        let det = m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1]) - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
            + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]);
        if worst > ORTHONORMAL_TOLERANCE || det <= 0.0 {
            bail!(
                "{what}: the rotation part of world_to_camera is not a rotation (|R R^T - I| up to {worst:.3}, \
                 determinant {det:.3}); give a world-to-camera [R|t] with orthonormal R"
            );
        }
        if k[0][0] <= 0.0 || k[1][1] <= 0.0 || k[2] != [0.0, 0.0, 1.0] || k[1][0] != 0.0 {
            bail!("{what}: intrinsics must be [[fx, s, cx], [0, fy, cy], [0, 0, 1]] with fx, fy > 0, not {k:?}");
        }
        Ok(())
    }
}

/// One view of the JSON file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PoseEntry {
    image: Option<String>,
    world_to_camera: Vec<Vec<f64>>,
    intrinsics: Vec<Vec<f64>>,
}

/// The `rows × cols` matrix `m`, or an error naming `name`.
fn matrix<const R: usize, const C: usize>(m: &[Vec<f64>], name: &str) -> Result<[[f64; C]; R]> {
    if m.len() != R || m.iter().any(|r| r.len() != C) {
        let shape: Vec<usize> = m.iter().map(Vec::len).collect();
        bail!("{name} must be a {R}x{C} matrix (a list of {R} rows of {C} numbers), got rows of lengths {shape:?}");
    }
    Ok(std::array::from_fn(|i| std::array::from_fn(|j| m[i][j])))
}

impl PoseEntry {
    fn camera(&self) -> Result<KnownCamera> {
        let world_to_camera = if self.world_to_camera.len() == 3 {
            let m: [[f64; 4]; 3] = matrix(&self.world_to_camera, "world_to_camera")?;
            [m[0], m[1], m[2], [0.0, 0.0, 0.0, 1.0]]
        } else {
            matrix::<4, 4>(&self.world_to_camera, "world_to_camera")?
        };
        Ok(KnownCamera { world_to_camera, intrinsics: matrix::<3, 3>(&self.intrinsics, "intrinsics")? })
    }
}

/// Reads `--poses FILE` and returns the camera of each of `images`, in their order.
pub fn read_poses(file: &Path, images: &[PathBuf]) -> Result<Vec<KnownCamera>> {
    let text = std::fs::read_to_string(file).with_context(|| format!("cannot read poses file {}", file.display()))?;
    let entries = parse_entries(&text).with_context(|| format!("invalid poses file {} (see `da3 infer --help` for its schema)", file.display()))?;
    let label = |i: usize, e: &PoseEntry| match &e.image {
        Some(name) => format!("view {i} ({name}) of {}", file.display()),
        None => format!("view {i} of {}", file.display()),
    };
    let mut cameras = Vec::with_capacity(entries.len());
    for (i, e) in entries.iter().enumerate() {
        let camera = e.camera().with_context(|| label(i, e))?;
        camera.check(&label(i, e))?;
        cameras.push(camera);
    }
    let named = entries.iter().filter(|e| e.image.is_some()).count();
    if named == 0 {
        if entries.len() != images.len() {
            bail!(
                "poses file {} has {} views for {} input images; give one view per image, or name each view's \"image\"",
                file.display(),
                entries.len(),
                images.len()
            );
        }
        return Ok(cameras);
    }
    if named != entries.len() {
        bail!("poses file {}: either every view names its \"image\" or none does (then views match the inputs by order)", file.display());
    }
    images
        .iter()
        .map(|path| {
            let given = path.to_string_lossy();
            let base = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let matches = |e: &PoseEntry| e.image.as_deref().is_some_and(|n| n == given || n == base);
            let found: Vec<usize> = entries.iter().enumerate().filter(|(_, e)| matches(e)).map(|(i, _)| i).collect();
            match found[..] {
                [i] => Ok(cameras[i]),
                [] => bail!(
                    "poses file {} has no view for image {}; add one with \"image\": \"{base}\"",
                    file.display(),
                    path.display()
                ),
                _ => bail!("poses file {} has {} views for image {}; keep one", file.display(), found.len(), path.display()),
            }
        })
        .collect()
}

fn parse_entries(text: &str) -> Result<Vec<PoseEntry>> {
    let value: serde_json::Value = serde_json::from_str(text).context("not valid JSON")?;
    let views = match value {
        serde_json::Value::Array(views) => views,
        serde_json::Value::Object(mut map) => match map.remove("views") {
            Some(serde_json::Value::Array(views)) => views,
            _ => bail!("expected an object with a \"views\" list"),
        },
        _ => bail!("expected an object with a \"views\" list"),
    };
    views
        .into_iter()
        .enumerate()
        .map(|(i, v)| serde_json::from_value(v).with_context(|| format!("view {i}")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(name: &str, text: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("da3-poses-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    const K: &str = "[[100, 0, 28], [0, 110, 21], [0, 0, 1]]";

    #[test]
    fn views_match_by_name_or_order() {
        let rot = "[[0, -1, 0, 1], [1, 0, 0, 2], [0, 0, 1, 3]]";
        let id = "[[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]";
        let text = format!(
            r#"{{"views": [{{"image": "b.png", "world_to_camera": {rot}, "intrinsics": {K}}},
                          {{"image": "dir/a.png", "world_to_camera": {id}, "intrinsics": {K}}}]}}"#
        );
        let file = write("named.json", &text);
        let images = [PathBuf::from("dir/a.png"), PathBuf::from("other/b.png")];
        let cams = read_poses(&file, &images).unwrap();
        assert_eq!(cams[0].world_to_camera[0], [1.0, 0.0, 0.0, 0.0]);
        assert_eq!(cams[1].world_to_camera[0], [0.0, -1.0, 0.0, 1.0]);
        assert_eq!(cams[1].world_to_camera[3], [0.0, 0.0, 0.0, 1.0]);
        assert_eq!(cams[1].intrinsics[1], [0.0, 110.0, 21.0]);
        let e = format!("{:#}", read_poses(&file, &[PathBuf::from("c.png")]).unwrap_err());
        assert!(e.contains("no view for image c.png") && e.contains("\"image\": \"c.png\""), "{e}");

        let text = format!(r#"[{{"world_to_camera": {id}, "intrinsics": {K}}}]"#);
        let file = write("ordered.json", &text);
        assert_eq!(read_poses(&file, &[PathBuf::from("x.png")]).unwrap().len(), 1);
        let e = format!("{:#}", read_poses(&file, &images).unwrap_err());
        assert!(e.contains("1 views for 2 input images"), "{e}");
    }

    #[test]
    fn bad_matrices_are_named() {
        let cases = [
            (format!(r#"[{{"world_to_camera": [[1, 0, 0], [0, 1, 0]], "intrinsics": {K}}}]"#), "4x4"),
            (format!(r#"[{{"world_to_camera": [[2, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]], "intrinsics": {K}}}]"#), "not a rotation"),
            (r#"[{"world_to_camera": [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]], "intrinsics": [[0, 0, 1], [0, 1, 1], [0, 0, 1]]}]"#.into(), "fx, fy > 0"),
            (format!(r#"[{{"world_to_camera": [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]], "K": {K}}}]"#), "unknown field `K`"),
            ("{\"views\": 3}".into(), "\"views\" list"),
            ("{".into(), "not valid JSON"),
        ];
        for (i, (text, needle)) in cases.iter().enumerate() {
            let file = write(&format!("bad{i}.json"), text);
            let e = format!("{:#}", read_poses(&file, &[PathBuf::from("a.png")]).unwrap_err());
            assert!(e.contains(needle) && e.contains(&format!("bad{i}.json")), "{needle}: {e}");
        }
    }
}
