//! Reading input images: the header check against a pixel limit (decompression bombs), decoding
//! into the layout that keeps the file's samples, and the per-image preprocessing step.

use std::io::Cursor;
use std::path::Path;

use anyhow::{bail, Context, Result};
use da3::preprocess::{prepare, Intrinsics, Options, Plan, Prepared};
use da3::Da3Error;
use image::{DynamicImage, ImageFormat, ImageReader, Limits};

/// Default of `--max-pixels`: 100 megapixels.
pub const DEFAULT_MAX_PIXELS: u64 = 100_000_000;

/// Bytes per pixel of the widest layout PNG and JPEG decode to (16-bit RGBA).
const MAX_BYTES_PER_PIXEL: u64 = 8;

/// Allocation allowance of a decoder beyond its output buffer (zlib window, text chunks,
/// colour profiles, JPEG component planes).
const DECODER_SLACK_BYTES: u64 = 64 << 20;

/// The first part of every decoding error (tests and users look for it).
fn cannot_decode(path: &Path) -> String {
    format!("cannot decode image {} (supported formats: PNG, JPEG)", path.display())
}

/// Opens `path` and guesses its format from the content.
fn reader(path: &Path) -> Result<ImageReader<std::io::BufReader<std::fs::File>>> {
    let reader = ImageReader::open(path).with_context(|| format!("cannot open image {}", path.display()))?;
    reader.with_guessed_format().with_context(|| format!("cannot read image {}", path.display()))
}

/// The `(width, height)` an image file declares in its header, read without decoding pixels
/// (JPEG files by libjpeg, the decoder [`decode`] uses; others by the `image` crate).
pub fn read_dimensions(path: &Path) -> Result<(u32, u32)> {
    let reader = reader(path)?;
    if reader.format() == Some(ImageFormat::Jpeg) {
        return crate::jpeg::dimensions(path).map_err(|e| anyhow::anyhow!("{}: {e}", cannot_decode(path)));
    }
    reader.into_dimensions().with_context(|| cannot_decode(path))
}

/// `n` pixels in megapixels, for messages (`"10000"`, `"2.5"`, `"0.0024"`).
pub fn megapixels(n: u64) -> String {
    let mp = n as f64 / 1e6;
    if mp >= 10.0 {
        format!("{mp:.0}")
    } else {
        format!("{}", (mp * 1e4).round() / 1e4)
    }
}

/// Refuses a `width × height` image (as declared by `path`'s header) over `max_pixels`.
pub fn check_pixel_limit(path: &Path, (width, height): (u32, u32), max_pixels: u64) -> Result<()> {
    let n = u64::from(width) * u64::from(height);
    if n > max_pixels {
        bail!(
            "image {} is {width}x{height} pixels ({} megapixels), over the limit of {} megapixels \
             (--max-pixels {max_pixels}); refusing to decode it (raise --max-pixels to allow it)",
            path.display(),
            megapixels(n),
            megapixels(max_pixels),
        );
    }
    Ok(())
}

/// Checks one input before decoding: reads its header, refuses it if it is over `max_pixels`,
/// plans its preprocessing and refuses sizes the plan rejects (too small or elongated) or
/// whose resized image would be over `max_pixels` (a large `--process-res`). Errors name the
/// file.
pub fn check_input(path: &Path, options: &Options, max_pixels: u64) -> Result<Plan> {
    check_size(path, read_dimensions(path)?, options, max_pixels)
}

/// The checks of [`check_input`] after the header was read: `(width, height)` against
/// `max_pixels` and the preprocessing plan.
pub fn check_size(path: &Path, (width, height): (u32, u32), options: &Options, max_pixels: u64) -> Result<Plan> {
    check_pixel_limit(path, (width, height), max_pixels)?;
    let plan = Plan::new(width as usize, height as usize, options.process_res, options.method)
        .with_context(|| format!("cannot preprocess image {} ({width}x{height})", path.display()))?;
    let pixels = |(w, h): (usize, usize)| (w as u64).saturating_mul(h as u64);
    let largest = if pixels(plan.resized) >= pixels(plan.size) { plan.resized } else { plan.size };
    let n = pixels(largest);
    if n > max_pixels {
        bail!(
            "image {} ({width}x{height}) would be resized to {}x{} pixels ({} megapixels) at \
             --process-res {}, over the limit of {} megapixels (--max-pixels {max_pixels})",
            path.display(),
            largest.0,
            largest.1,
            megapixels(n),
            options.process_res,
            megapixels(max_pixels),
        );
    }
    Ok(plan)
}

/// The `image` decoder limits for `max_pixels`: no side longer than `max_pixels`, and
/// allocations up to a 16-bit RGBA image of `max_pixels` plus some decoder overhead.
pub fn decoder_limits(max_pixels: u64) -> Limits {
    let mut limits = Limits::default();
    let side = u32::try_from(max_pixels).unwrap_or(u32::MAX);
    limits.max_image_width = Some(side);
    limits.max_image_height = Some(side);
    limits.max_alloc = Some(max_pixels.saturating_mul(MAX_BYTES_PER_PIXEL).saturating_add(DECODER_SLACK_BYTES));
    limits
}

/// Decodes a PNG or JPEG file (format guessed from the content) as Pillow's `Image.open`
/// gives it: the file's bit depth and channels are kept, palette images are expanded to
/// RGB(A), and the EXIF orientation is **not** applied (neither does the reference). PNG files
/// are decoded by the `image` crate, JPEG files by libjpeg ([`crate::jpeg::decode`]); both
/// give exactly Pillow's samples (CMYK JPEGs are converted to RGB with Pillow's formula).
/// Truncated JPEGs, which libjpeg would fill in, are refused as Pillow refuses them
/// ([`crate::jpeg::is_truncated`]). The decoders run under [`decoder_limits`]`(max_pixels)`;
/// call [`check_input`] first for a clear message.
pub fn decode(path: &Path, max_pixels: u64) -> Result<DynamicImage> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read image {}", path.display()))?;
    decode_bytes(bytes, &path.display().to_string(), max_pixels)
}

/// [`decode`] of an image file's bytes (an upload, say); `name` names it in errors.
pub fn decode_bytes(bytes: Vec<u8>, name: &str, max_pixels: u64) -> Result<DynamicImage> {
    let cannot = || format!("cannot decode image {name} (supported formats: PNG, JPEG)");
    if image::guess_format(&bytes).ok() == Some(ImageFormat::Jpeg) {
        if crate::jpeg::is_truncated(&bytes) {
            bail!("{}: the JPEG data is truncated (the file ends before its end-of-image marker)", cannot());
        }
        return crate::jpeg::decode(&bytes, &decoder_limits(max_pixels)).map_err(|e| anyhow::anyhow!("{}: {e}", cannot()));
    }
    let mut reader =
        ImageReader::new(Cursor::new(bytes)).with_guessed_format().with_context(|| format!("cannot read image {name}"))?;
    reader.limits(decoder_limits(max_pixels));
    reader.decode().with_context(cannot)
}

/// The preprocessing of one decoded image ([`da3::preprocess::prepare`]), with its samples
/// handed over by [`da3::image_api::image_ref`] in the matching [`da3::preprocess::Pixels`]
/// layout so that the library converts them to RGB exactly as Pillow does (16-bit gray is
/// clipped, other 16-bit layouts keep the high byte).
///
/// Layouts without a `Pixels` variant (32-bit float images, which PNG and JPEG decoding do not
/// produce) are first converted to 8-bit RGB with the `image` crate's `to_rgb8` (values in
/// [0, 1] scaled to 0..=255, alpha dropped).
pub fn prepare_decoded(
    image: &DynamicImage,
    intrinsics: Option<Intrinsics>,
    options: &Options,
) -> Result<Prepared, Da3Error> {
    let mut scratch = None;
    let image = da3::image_api::image_ref(image, &mut scratch);
    prepare(image, intrinsics, options)
}

/// Decodes `path` and runs the per-image preprocessing, carrying `intrinsics` (in pixels of
/// the file) along; errors name the file.
pub fn load_and_prepare(path: &Path, intrinsics: Option<Intrinsics>, options: &Options, max_pixels: u64) -> Result<Prepared> {
    let image = decode(path, max_pixels)?;
    prepare_decoded(&image, intrinsics, options).with_context(|| format!("cannot preprocess image {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{ImageBuffer, Luma, LumaA, Rgb, Rgba};

    fn opts(process_res: usize) -> Options {
        Options { process_res, ..Options::default() }
    }

    /// The processed RGB bytes of a 14x14 image (no resize at process_res 14).
    fn rgb_of(image: DynamicImage) -> Vec<u8> {
        prepare_decoded(&image, None, &opts(14)).unwrap().image.pixels
    }

    #[test]
    fn layouts_are_handed_over_unconverted() {
        let gray16 = ImageBuffer::from_pixel(14, 14, Luma([1000u16]));
        // Pillow clips 16-bit gray (to_rgb8 would give 1000 / 257 = 3).
        assert_eq!(&rgb_of(DynamicImage::ImageLuma16(gray16))[..3], &[255, 255, 255]);
        let gray16 = ImageBuffer::from_pixel(14, 14, Luma([100u16]));
        assert_eq!(&rgb_of(DynamicImage::ImageLuma16(gray16))[..3], &[100, 100, 100]);
        let rgb16 = ImageBuffer::from_pixel(14, 14, Rgb([0x12ffu16, 0x3400, 0xffff]));
        assert_eq!(&rgb_of(DynamicImage::ImageRgb16(rgb16))[..3], &[0x12, 0x34, 0xff]);
        let rgba16 = ImageBuffer::from_pixel(14, 14, Rgba([0x0100u16, 0x0200, 0x0300, 0]));
        assert_eq!(&rgb_of(DynamicImage::ImageRgba16(rgba16))[..3], &[1, 2, 3]);
        let la16 = ImageBuffer::from_pixel(14, 14, LumaA([0x7f80u16, 0]));
        assert_eq!(&rgb_of(DynamicImage::ImageLumaA16(la16))[..3], &[0x7f, 0x7f, 0x7f]);
        let rgba8 = ImageBuffer::from_pixel(14, 14, Rgba([9u8, 8, 7, 0]));
        assert_eq!(&rgb_of(DynamicImage::ImageRgba8(rgba8))[..3], &[9, 8, 7]);
        let la8 = ImageBuffer::from_pixel(14, 14, LumaA([42u8, 1]));
        assert_eq!(&rgb_of(DynamicImage::ImageLumaA8(la8))[..3], &[42, 42, 42]);
        let f32img = ImageBuffer::from_pixel(14, 14, Rgb([1.0f32, 0.0, 0.5]));
        assert_eq!(&rgb_of(DynamicImage::ImageRgb32F(f32img))[..3], &[255, 0, 128]);
    }

    #[test]
    fn pixel_limit_names_the_file_and_limit() {
        assert!(check_pixel_limit(Path::new("a.png"), (100, 100), 10_000).is_ok());
        let e = check_pixel_limit(Path::new("big.png"), (100_000, 100_000), DEFAULT_MAX_PIXELS).unwrap_err();
        let e = e.to_string();
        assert!(e.contains("big.png") && e.contains("100000x100000") && e.contains("10000 megapixels"), "{e}");
        assert!(e.contains("limit of 100 megapixels") && e.contains("--max-pixels 100000000"), "{e}");
    }

    #[test]
    fn megapixel_formatting() {
        assert_eq!(megapixels(100_000_000), "100");
        assert_eq!(megapixels(2_500_000), "2.5");
        assert_eq!(megapixels(2352), "0.0024");
    }

    #[test]
    fn limits_cover_the_largest_layout() {
        let l = decoder_limits(100);
        assert_eq!((l.max_image_width, l.max_image_height), (Some(100), Some(100)));
        assert_eq!(l.max_alloc, Some(800 + DECODER_SLACK_BYTES));
        let l = decoder_limits(u64::MAX);
        assert_eq!((l.max_image_width, l.max_alloc), (Some(u32::MAX), Some(u64::MAX)));
    }
}
