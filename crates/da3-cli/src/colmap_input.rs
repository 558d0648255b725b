//! `da3 colmap DIR`: a COLMAP scene (`DIR/images/` and the binary model in `DIR/sparse/`) as
//! pose-conditioned input, like the reference's `ColmapHandler`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use da3_export::colmap::{quaternion_to_rotation, read_cameras, read_images, Camera};

use crate::args::CommonArgs;
use crate::poses::KnownCamera;
use crate::scene::{run_scene, Scene};
use crate::UsageError;

/// One-line description of `da3 colmap`.
pub const ABOUT: &str = "Pose-conditioned prediction for a COLMAP scene (images/ + sparse/)";

/// The long help of `da3 colmap`.
pub const LONG_ABOUT: &str = concat!(
    "Pose-conditioned prediction for a COLMAP scene (the reference's `colmap` command).

DIR holds images/ and the binary sparse model sparse/cameras.bin and sparse/images.bin (or \
sparse/SUBDIR/ with --sparse-subdir; convert a text model with `colmap model_converter \
--output_type BIN`). The views are the images of images.bin, in its order, whose file exists in \
DIR/images (the others are left out with a note). Each view's world-to-camera matrix is built \
from its qvec and tvec; its intrinsics come from its camera: PINHOLE (fx, fy, cx, cy), \
SIMPLE_PINHOLE (f, cx, cy), and for any other model, as in the reference, f = the first \
parameter, cx = width/2, cy = height/2 with the distortion ignored. The intrinsics are rescaled \
to the processed images and the main-series models are conditioned on these cameras (their \
camera token comes from them); --no-pose-condition predicts the cameras instead. With \
--align-to-input-ext-scale (the default) the results are in the COLMAP frame and scale.

",
    preprocessing_help!(),
    "\n\n",
    outputs_help!()
);

/// Arguments of `da3 colmap`.
#[derive(Debug, Clone, clap::Args)]
pub struct ColmapArgs {
    /// The COLMAP scene folder, holding images/ and sparse/.
    #[arg(value_name = "DIR")]
    pub colmap_dir: PathBuf,

    /// The model's subfolder of sparse/ (e.g. 0 for sparse/0/); empty: sparse/ itself.
    #[arg(long, value_name = "SUBDIR", default_value = "")]
    pub sparse_subdir: String,

    /// Flags shared by every inference command.
    #[command(flatten)]
    pub common: CommonArgs,
}

/// Runs `da3 colmap`.
pub fn run(args: &ColmapArgs) -> Result<()> {
    run_colmap(&args.colmap_dir, &args.sparse_subdir, &args.common, "colmap")
}

/// Runs a COLMAP scene (also for `da3 auto`).
pub fn run_colmap(dir: &Path, sparse_subdir: &str, common: &CommonArgs, command: &'static str) -> Result<()> {
    if common.poses.is_some() {
        return Err(UsageError("--poses cannot be combined with COLMAP input, whose cameras come from sparse/".into()).into());
    }
    let (images, cameras) = read_colmap_scene(dir, sparse_subdir, common.quiet)?;
    let camera_source = format!("COLMAP {}", sparse_dir(dir, sparse_subdir).display());
    let scene = Scene { command, images, cameras: Some(cameras), camera_source };
    run_scene(common, scene)
}

/// `DIR/sparse` or `DIR/sparse/SUBDIR`.
fn sparse_dir(dir: &Path, sparse_subdir: &str) -> PathBuf {
    if sparse_subdir.is_empty() {
        dir.join("sparse")
    } else {
        dir.join("sparse").join(sparse_subdir)
    }
}

/// Pinhole intrinsics of a COLMAP camera in its image's pixels, as the reference builds
/// them; `false` when the model was approximated (distortion ignored, principal point at the
/// centre).
pub fn camera_intrinsics(camera: &Camera) -> ([[f64; 3]; 3], bool) {
    let p = &camera.params;
    let (fx, fy, cx, cy, exact) = match (camera.model_id, p.len()) {
        (1, 4) => (p[0], p[1], p[2], p[3], true), // PINHOLE
        (0, 3) => (p[0], p[0], p[1], p[2], true), // SIMPLE_PINHOLE
        _ => {
            let f = p.first().copied().unwrap_or(1000.0);
            (f, f, camera.width as f64 / 2.0, camera.height as f64 / 2.0, false)
        }
    };
    ([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]], exact)
}

/// Reads a COLMAP scene: the image files (in `images.bin` order, those present in
/// `DIR/images`) and their cameras (world-to-camera from qvec/tvec, pinhole intrinsics in
/// original pixels).
pub fn read_colmap_scene(dir: &Path, sparse_subdir: &str, quiet: bool) -> Result<(Vec<PathBuf>, Vec<KnownCamera>)> {
    if !dir.is_dir() {
        bail!("COLMAP folder {} not found", dir.display());
    }
    let images_dir = dir.join("images");
    if !images_dir.is_dir() {
        bail!("COLMAP folder {} has no images/ subfolder", dir.display());
    }
    let sparse = sparse_dir(dir, sparse_subdir);
    let cameras_bin = sparse.join("cameras.bin");
    if !cameras_bin.is_file() {
        let hint = if sparse.join("cameras.txt").is_file() {
            "; it holds a text model: convert it with `colmap model_converter --input_path SPARSE --output_path SPARSE --output_type BIN`".to_string()
        } else if sparse_subdir.is_empty() && sparse.join("0").join("cameras.bin").is_file() {
            "; the model is in sparse/0: pass --sparse-subdir 0".to_string()
        } else {
            String::new()
        };
        bail!("no COLMAP binary model in {} (cameras.bin not found){hint}", sparse.display());
    }
    let cameras = read_cameras(&cameras_bin).context("cannot read the COLMAP cameras")?;
    let colmap_images = read_images(&sparse.join("images.bin")).context("cannot read the COLMAP images")?;
    let mut files = Vec::new();
    let mut known = Vec::new();
    let mut missing = Vec::new();
    let mut approximated: Vec<i32> = Vec::new();
    for image in &colmap_images {
        let path = images_dir.join(&image.name);
        if !path.is_file() {
            missing.push(image.name.clone());
            continue;
        }
        let camera = cameras.iter().find(|c| c.id == image.camera_id).with_context(|| {
            format!("COLMAP image {} refers to camera {}, which is not in {}", image.name, image.camera_id, cameras_bin.display())
        })?;
        let (intrinsics, exact) = camera_intrinsics(camera);
        if !exact && !approximated.contains(&camera.model_id) {
            approximated.push(camera.model_id);
        }
        let r = quaternion_to_rotation(&image.qvec);
        let t = image.tvec;
        let world_to_camera =
            [[r[0][0], r[0][1], r[0][2], t[0]], [r[1][0], r[1][1], r[1][2], t[1]], [r[2][0], r[2][1], r[2][2], t[2]], [0.0, 0.0, 0.0, 1.0]];
        let camera = KnownCamera { world_to_camera, intrinsics };
        camera.check(&format!("COLMAP image {}", image.name))?;
        files.push(path);
        known.push(camera);
    }
    if files.is_empty() {
        bail!(
            "none of the {} images of {} is in {}; check the folder layout (DIR/images/NAME as named in images.bin)",
            colmap_images.len(),
            sparse.display(),
            images_dir.display()
        );
    }
    if !quiet {
        println!(
            "Loaded COLMAP model {}: {} cameras, {} images, {} found in {}",
            sparse.display(),
            cameras.len(),
            colmap_images.len(),
            files.len(),
            images_dir.display()
        );
        if !missing.is_empty() {
            eprintln!("note: {} COLMAP images are not in {} and are left out: {}", missing.len(), images_dir.display(), missing.join(", "));
        }
        if !approximated.is_empty() {
            eprintln!(
                "note: COLMAP camera model id(s) {approximated:?} are not pinhole; as in the reference, their first parameter is \
                 used as the focal length, the principal point is the image centre and distortion is ignored"
            );
        }
    }
    Ok((files, known))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn camera_models_map_like_the_reference() {
        let cam = |model_id, params: Vec<f64>| Camera { id: 1, model_id, width: 640, height: 480, params };
        assert_eq!(camera_intrinsics(&cam(1, vec![500.0, 510.0, 320.5, 240.5])), ([[500.0, 0.0, 320.5], [0.0, 510.0, 240.5], [0.0, 0.0, 1.0]], true));
        assert_eq!(camera_intrinsics(&cam(0, vec![500.0, 300.0, 200.0])), ([[500.0, 0.0, 300.0], [0.0, 500.0, 200.0], [0.0, 0.0, 1.0]], true));
        // OPENCV (id 4): fx, fy, cx, cy, k1, k2, p1, p2 -> f = fx, centre of the image.
        let opencv = cam(4, vec![450.0, 460.0, 300.0, 200.0, 0.1, 0.0, 0.0, 0.0]);
        assert_eq!(camera_intrinsics(&opencv), ([[450.0, 0.0, 320.0], [0.0, 450.0, 240.0], [0.0, 0.0, 1.0]], false));
    }
}
