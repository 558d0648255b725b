//! `da3 image FILE` and `da3 images DIR`: one image, or every image of a folder as one scene.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::args::CommonArgs;
use crate::scene::{run_scene, Scene};
use crate::UsageError;

/// One-line description of `da3 image`.
pub const IMAGE_ABOUT: &str = "Predict depth and camera for a single image";

/// The long help of `da3 image`.
pub const IMAGE_LONG_ABOUT: &str = concat!(
    "Predict depth and camera for a single image (the reference's `image` command).

",
    preprocessing_help!(),
    "\n\n",
    outputs_help!()
);

/// One-line description of `da3 images`.
pub const IMAGES_ABOUT: &str = "Predict depth and cameras for a folder of images, as one scene";

/// The long help of `da3 images`.
pub const IMAGES_LONG_ABOUT: &str = concat!(
    "Predict depth and cameras for a folder of images, as one scene (the reference's `images` \
command).

The folder's files (not its subfolders) whose extension is one of --image-extensions, in any \
letter case, are the views, sorted by file name.

",
    preprocessing_help!(),
    "\n\n",
    outputs_help!()
);

/// The reference's default `--image-extensions`.
pub const DEFAULT_EXTENSIONS: &str = "png,jpg,jpeg";

/// Arguments of `da3 image`.
#[derive(Debug, Clone, clap::Args)]
pub struct ImageArgs {
    /// The input image (PNG or JPEG).
    #[arg(value_name = "IMAGE")]
    pub image: PathBuf,

    /// Flags shared by every inference command.
    #[command(flatten)]
    pub common: CommonArgs,
}

/// Arguments of `da3 images`.
#[derive(Debug, Clone, clap::Args)]
pub struct ImagesArgs {
    /// The folder holding the images of one scene.
    #[arg(value_name = "DIR")]
    pub images_dir: PathBuf,

    /// Comma-separated file extensions of the images to use, matched in any letter case
    /// (e.g. png,jpg,jpeg also takes IMG_1.JPG).
    #[arg(long, value_name = "EXTS", default_value = DEFAULT_EXTENSIONS)]
    pub image_extensions: String,

    /// Flags shared by every inference command.
    #[command(flatten)]
    pub common: CommonArgs,
}

/// Runs `da3 image`.
pub fn run_image(args: &ImageArgs) -> Result<()> {
    if args.image.is_dir() {
        return Err(UsageError(format!(
            "{} is a folder; use `da3 images {}` for a folder of images",
            args.image.display(),
            args.image.display()
        ))
        .into());
    }
    let scene = Scene::from_images("image", vec![args.image.clone()], &args.common)?;
    run_scene(&args.common, scene)
}

/// Runs `da3 images`.
pub fn run_images(args: &ImagesArgs) -> Result<()> {
    let extensions = parse_extensions(&args.image_extensions)?;
    let images = list_images(&args.images_dir, &extensions)?;
    if !args.common.quiet {
        println!("Found {} images in {}", images.len(), args.images_dir.display());
    }
    let scene = Scene::from_images("images", images, &args.common)?;
    run_scene(&args.common, scene)
}

/// `png,.JPG, jpeg` -> `["png", "jpg", "jpeg"]` (lower case, no dots, no repeats).
pub fn parse_extensions(list: &str) -> Result<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for ext in list.split(',') {
        let ext = ext.trim().trim_start_matches('.').to_lowercase();
        if ext.is_empty() {
            return Err(UsageError(format!("--image-extensions `{list}` has an empty entry; give e.g. png,jpg,jpeg")).into());
        }
        if !out.contains(&ext) {
            out.push(ext);
        }
    }
    Ok(out)
}

/// The files of `dir` (not recursive) whose extension is in `extensions` (lower case, without
/// dots), compared case-insensitively, sorted by path like the reference's `sorted(glob)`.
/// An error names the folder when it is missing or holds no such file.
pub fn list_images(dir: &Path, extensions: &[String]) -> Result<Vec<PathBuf>> {
    if !dir.exists() {
        bail!("images folder {} not found", dir.display());
    }
    if !dir.is_dir() {
        return Err(UsageError(format!("{} is not a folder; use `da3 image` for a single image", dir.display())).into());
    }
    let entries = std::fs::read_dir(dir).with_context(|| format!("cannot list the images folder {}", dir.display()))?;
    let mut images = Vec::new();
    for entry in entries {
        let path = entry.with_context(|| format!("cannot list the images folder {}", dir.display()))?.path();
        let matches = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| extensions.iter().any(|x| x.eq_ignore_ascii_case(e)));
        if matches && path.is_file() {
            images.push(path);
        }
    }
    if images.is_empty() {
        bail!(
            "no images with the extensions {} (any letter case) in {}; put PNG or JPEG files there or pass \
             --image-extensions",
            extensions.join(", "),
            dir.display()
        );
    }
    images.sort();
    Ok(images)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extensions_are_normalized() {
        assert_eq!(parse_extensions("png,.JPG, jpeg,png").unwrap(), ["png", "jpg", "jpeg"]);
        assert!(parse_extensions("png,,jpg").is_err());
    }

    #[test]
    fn folder_listing_is_sorted_and_case_insensitive() {
        let dir = std::env::temp_dir().join(format!("da3-folder-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("sub.png")).unwrap();
        for name in ["b.JPG", "a.png", "c.Jpeg", "d.txt", "e.webp", "A.PNG"] {
            std::fs::write(dir.join(name), b"").unwrap();
        }
        let exts = parse_extensions(DEFAULT_EXTENSIONS).unwrap();
        let names: Vec<String> =
            list_images(&dir, &exts).unwrap().iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
        assert_eq!(names, ["A.PNG", "a.png", "b.JPG", "c.Jpeg"]);
        let e = list_images(&dir, &["tif".to_string()]).unwrap_err().to_string();
        assert!(e.contains("no images with the extensions tif") && e.contains(&dir.display().to_string()), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
