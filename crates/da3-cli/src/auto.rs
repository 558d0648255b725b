//! `da3 auto INPUT`: detects the input kind like the reference's `detect_input_type` and runs
//! the matching command.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use crate::args::CommonArgs;
use crate::colmap_input::run_colmap;
use crate::folder::{list_images, parse_extensions, DEFAULT_EXTENSIONS};
use crate::scene::{preflight, run_scene, Scene};
use crate::video::{extract_frames, parse_fps};
use crate::UsageError;

/// One-line description of `da3 auto`.
pub const ABOUT: &str = "Detect the input kind (image, folder, video, COLMAP scene) and predict it";

/// The long help of `da3 auto`.
pub const LONG_ABOUT: &str = concat!(
    "Detect the input kind and predict it (the reference's `auto` command):
  a file with an image extension (png, jpg, jpeg, webp, bmp, tiff, tif)  -> `da3 image`
  a file with a video extension (mp4, avi, mov, mkv, flv, wmv, webm, m4v) -> `da3 video`
  a folder with images/ and sparse/ subfolders                           -> `da3 colmap`
  a folder holding image files                                           -> `da3 images`
    (with the extensions png, jpg, jpeg, as in the reference)
Extensions are compared in any letter case. Only PNG and JPEG images can be decoded.

",
    preprocessing_help!(),
    "\n\n",
    outputs_help!()
);

/// Image file extensions `auto` recognizes (the reference's `IMAGE_EXTENSIONS`).
pub const IMAGE_EXTENSIONS: [&str; 7] = ["png", "jpg", "jpeg", "webp", "bmp", "tiff", "tif"];
/// Video file extensions `auto` recognizes (the reference's `VIDEO_EXTENSIONS`).
pub const VIDEO_EXTENSIONS: [&str; 8] = ["mp4", "avi", "mov", "mkv", "flv", "wmv", "webm", "m4v"];

/// Arguments of `da3 auto`.
#[derive(Debug, Clone, clap::Args)]
pub struct AutoArgs {
    /// The input: an image, a folder of images, a video or a COLMAP scene folder.
    #[arg(value_name = "INPUT")]
    pub input: PathBuf,

    /// Video input: frames per second to sample (see `da3 video --help`).
    #[arg(long, value_name = "FPS", default_value_t = 1.0, value_parser = parse_fps)]
    pub fps: f64,

    /// COLMAP input: the model's subfolder of sparse/ (e.g. 0 for sparse/0/).
    #[arg(long, value_name = "SUBDIR", default_value = "")]
    pub sparse_subdir: String,

    /// Flags shared by every inference command.
    #[command(flatten)]
    pub common: CommonArgs,
}

/// What an input path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    /// One image file.
    Image,
    /// A folder of images.
    Images,
    /// A video file.
    Video,
    /// A COLMAP scene folder.
    Colmap,
}

/// Whether `path`'s extension is one of `list`, in any letter case.
fn has_extension(path: &Path, list: &[&str]) -> bool {
    path.extension().and_then(|e| e.to_str()).is_some_and(|e| list.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

/// The reference's `detect_input_type`; `None` for a path that is none of the kinds (or
/// does not exist).
pub fn detect_input_kind(path: &Path) -> Option<InputKind> {
    if path.is_file() {
        if has_extension(path, &IMAGE_EXTENSIONS) {
            return Some(InputKind::Image);
        }
        if has_extension(path, &VIDEO_EXTENSIONS) {
            return Some(InputKind::Video);
        }
        return None;
    }
    if path.is_dir() {
        if path.join("images").is_dir() && path.join("sparse").is_dir() {
            return Some(InputKind::Colmap);
        }
        let entries = std::fs::read_dir(path).ok()?;
        let any_image = entries.filter_map(|e| e.ok()).map(|e| e.path()).any(|p| p.is_file() && has_extension(&p, &IMAGE_EXTENSIONS));
        return any_image.then_some(InputKind::Images);
    }
    None
}

/// Runs `da3 auto`.
pub fn run(args: &AutoArgs) -> Result<()> {
    let input = &args.input;
    if !input.exists() {
        bail!("input {} not found", input.display());
    }
    let Some(kind) = detect_input_kind(input) else {
        return Err(UsageError(format!(
            "cannot tell what kind of input {} is; supported inputs:\n  - an image file (.png, .jpg, .jpeg)\n  - a folder of images\n  \
             - a video file (.mp4, .avi, .mov, .mkv, .flv, .wmv, .webm, .m4v)\n  - a COLMAP folder (with images/ and sparse/ subfolders)",
            input.display()
        ))
        .into());
    };
    let common = &args.common;
    if !common.quiet {
        println!("Detected input type: {} ({})", format!("{kind:?}").to_uppercase(), input.display());
    }
    match kind {
        InputKind::Image => run_scene(common, Scene::from_images("auto", vec![input.clone()], common)?),
        InputKind::Images => {
            let images = list_images(input, &parse_extensions(DEFAULT_EXTENSIONS)?)?;
            if !common.quiet {
                println!("Found {} images in {}", images.len(), input.display());
            }
            run_scene(common, Scene::from_images("auto", images, common)?)
        }
        InputKind::Video => {
            preflight(common)?;
            let frames = extract_frames(input, &common.export_dir, args.fps, common.quiet)?;
            run_scene(common, Scene::from_images("auto", frames, common)?)
        }
        InputKind::Colmap => run_colmap(input, &args.sparse_subdir, common, "auto"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_kinds_are_detected_like_the_reference() {
        let dir = std::env::temp_dir().join(format!("da3-auto-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for sub in ["colmap/images", "colmap/sparse", "photos", "empty", "docs"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        for file in ["a.PNG", "clip.MP4", "notes.txt", "photos/x.jpeg", "docs/readme.md"] {
            std::fs::write(dir.join(file), b"").unwrap();
        }
        assert_eq!(detect_input_kind(&dir.join("a.PNG")), Some(InputKind::Image));
        assert_eq!(detect_input_kind(&dir.join("clip.MP4")), Some(InputKind::Video));
        assert_eq!(detect_input_kind(&dir.join("notes.txt")), None);
        assert_eq!(detect_input_kind(&dir.join("colmap")), Some(InputKind::Colmap));
        assert_eq!(detect_input_kind(&dir.join("photos")), Some(InputKind::Images));
        assert_eq!(detect_input_kind(&dir.join("empty")), None);
        assert_eq!(detect_input_kind(&dir.join("docs")), None);
        assert_eq!(detect_input_kind(&dir.join("missing")), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
