//! Loading input images as RGB8 and checking the sizes `infer` can take.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use image::RgbImage;

/// Pixels per patch side: both image sides must be multiples of this.
pub const PATCH: u32 = da3::config::PATCH_SIZE as u32;

/// A decoded input image and the file it came from.
#[derive(Debug, Clone)]
pub struct InputImage {
    /// The file it was read from (for messages).
    pub path: PathBuf,
    /// The pixels, converted to 8-bit RGB.
    pub rgb: RgbImage,
}

/// Decodes a PNG or JPEG file (format guessed from its content) and converts it to RGB8
/// (grayscale, alpha and 16-bit images included).
pub fn load_rgb8(path: &Path) -> Result<InputImage> {
    let reader = image::ImageReader::open(path).with_context(|| format!("cannot open image {}", path.display()))?;
    let reader = reader
        .with_guessed_format()
        .with_context(|| format!("cannot read image {}", path.display()))?;
    let decoded = reader
        .decode()
        .with_context(|| format!("cannot decode image {} (supported formats: PNG, JPEG)", path.display()))?;
    Ok(InputImage { path: path.to_path_buf(), rgb: decoded.to_rgb8() })
}

/// The nearest smaller size with both sides multiples of 14 (at least 14).
pub fn patch_aligned(width: u32, height: u32) -> (u32, u32) {
    ((width / PATCH).max(1) * PATCH, (height / PATCH).max(1) * PATCH)
}

/// Checks that all images share one size whose sides are multiples of 14; returns
/// `(width, height)`. Errors name the offending file and its size.
pub fn check_sizes(images: &[InputImage]) -> Result<(u32, u32)> {
    let Some(first) = images.first() else { bail!("no input images given") };
    for img in images {
        let (w, h) = img.rgb.dimensions();
        if w == 0 || h == 0 || w % PATCH != 0 || h % PATCH != 0 {
            let (aw, ah) = patch_aligned(w, h);
            bail!(
                "image {} is {w}x{h} pixels, but both sides must be multiples of {PATCH} \
                 (e.g. {aw}x{ah}); resizing is not supported yet by `da3 infer`, so resize or \
                 crop the image first",
                img.path.display()
            );
        }
    }
    let size = first.rgb.dimensions();
    for img in &images[1..] {
        if img.rgb.dimensions() != size {
            let (w, h) = img.rgb.dimensions();
            bail!(
                "image {} is {w}x{h} pixels but {} is {}x{}; all views of a scene must have the \
                 same size (resizing is not supported yet by `da3 infer`)",
                img.path.display(),
                first.path.display(),
                size.0,
                size.1
            );
        }
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn img(name: &str, w: u32, h: u32) -> InputImage {
        InputImage { path: PathBuf::from(name), rgb: RgbImage::new(w, h) }
    }

    #[test]
    fn sizes_are_checked_with_file_names() {
        assert_eq!(check_sizes(&[img("a.png", 56, 42), img("b.png", 56, 42)]).unwrap(), (56, 42));
        let e = check_sizes(&[img("a.png", 56, 42), img("b.png", 57, 42)]).unwrap_err().to_string();
        assert!(e.contains("b.png") && e.contains("57x42") && e.contains("56x42") && e.contains("resizing"), "{e}");
        let e = check_sizes(&[img("a.png", 56, 42), img("c.png", 42, 56)]).unwrap_err().to_string();
        assert!(e.contains("c.png") && e.contains("42x56") && e.contains("a.png"), "{e}");
        assert!(check_sizes(&[]).is_err());
    }

    #[test]
    fn aligned_suggestion() {
        assert_eq!(patch_aligned(57, 43), (56, 42));
        assert_eq!(patch_aligned(5, 500), (14, 490));
    }
}
