//! Image preprocessing identical to the reference's `InputProcessor`
//! (`depth_anything_3/utils/io/input_processor.py`, spec §1.11): pixels of any common layout
//! in, ImageNet-normalized [`Views`] out, with the processed RGB images and every camera
//! matrix carried along.
//!
//! Per image ([`prepare`]):
//! 1. convert to RGB8 like Pillow's `convert("RGB")` ([`Pixels`] documents each layout);
//! 2. boundary resize ([`Plan`]): the longest (`upper_bound_*`) or shortest (`lower_bound_*`)
//!    side becomes `process_res`, the other `max(1, round_half_even(side * scale))`, with
//!    OpenCV `INTER_CUBIC` when enlarging and `INTER_AREA` otherwise ([`resize`]);
//! 3. make both sides multiples of 14: resize to the nearest multiple (ties up; cubic if a side
//!    grows, else area) or centre-crop down to one;
//! 4. carry the optional intrinsics through each step ([`Intrinsics`]).
//!
//! Then for the batch ([`assemble`]): images of different sizes are all centre-cropped to the
//! smallest width and height (the reference logs a warning; [`Preprocessed::cropped_in_batch`]
//! lists them), and normalized to `(x / 255 - mean) / std` in f32, bit-identical to torchvision's
//! `ToTensor` + `Normalize`.
//!
//! Exactness: area resizes and cubic resizes under [`OpenCvFlavor::Plain`] are bit-exact;
//! cubic under [`OpenCvFlavor::Ipp`] (the x86-64 `cv2`, the default) differs by one level on
//! 1 to 3 samples in 100,000 of a cubic resize (none in the test fixtures; see [`resize`]).
//!
//! Parallelism is left to the caller: [`prepare`] handles one image and is independent of the
//! others (the reference uses 8 threads), [`preprocess`] runs them in sequence.
//! No file access: decoding is the caller's job.

mod convert;
pub mod plan;
pub mod resize;

use std::borrow::Cow;

pub use convert::Pixels;
pub use plan::{
    nearest_multiple, round_half_even, Divisible, Intrinsics, Plan, ResizeMethod, UnknownResizeMethod,
    DEFAULT_PROCESS_RES,
};
pub use resize::{Interpolation, OpenCvFlavor, Plane, ResizeError};

use crate::api::{RgbView, Views, IMAGENET_MEAN, IMAGENET_STD};
use crate::Da3Error;

/// A borrowed input image.
#[derive(Debug, Clone, Copy)]
pub struct ImageRef<'a> {
    /// The samples and their layout.
    pub pixels: Pixels<'a>,
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
}

/// The preprocessing settings (`process_res`, `process_res_method` and which `cv2` to match).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Target length of the bound side (default 504).
    pub process_res: usize,
    /// How the bound side is chosen and sides reach multiples of 14.
    pub method: ResizeMethod,
    /// Which OpenCV build's cubic interpolation to reproduce.
    pub flavor: OpenCvFlavor,
}

impl Default for Options {
    fn default() -> Self {
        Self { process_res: DEFAULT_PROCESS_RES, method: ResizeMethod::default(), flavor: OpenCvFlavor::default() }
    }
}

/// An owned 8-bit RGB image, interleaved and row-major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RgbImage {
    /// `height * width * 3` bytes.
    pub pixels: Vec<u8>,
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
}

impl RgbImage {
    /// Borrows the image as the API's [`RgbView`].
    pub fn view(&self) -> RgbView<'_> {
        RgbView { pixels: &self.pixels, width: self.width, height: self.height }
    }

    /// The `width × height` window whose top-left corner is `(left, top)`.
    fn crop(&self, left: usize, top: usize, width: usize, height: usize) -> RgbImage {
        let row = self.width * 3;
        let pixels = (top..top + height)
            .flat_map(|y| &self.pixels[y * row + left * 3..y * row + (left + width) * 3])
            .copied()
            .collect();
        RgbImage { pixels, width, height }
    }
}

/// One image after the per-image steps (before the batch is made uniform).
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The geometry it went through.
    pub plan: Plan,
    /// The processed pixels (`plan.size`).
    pub image: RgbImage,
    /// The camera matrix after the per-image steps, if one was given.
    pub intrinsics: Option<Intrinsics>,
}

/// What happened to one image of the batch.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageInfo {
    /// The per-image steps.
    pub plan: Plan,
    /// Offset `(left, top)` of the batch centre crop, when this image was larger than the
    /// smallest of the batch.
    pub batch_crop: Option<(usize, usize)>,
    /// The final `(width, height)`, the same for the whole batch.
    pub size: (usize, usize),
    /// The camera matrix in processed-image pixels, if one was given.
    pub intrinsics: Option<Intrinsics>,
}

impl ImageInfo {
    /// The input `(width, height)`.
    pub fn original_size(&self) -> (usize, usize) {
        self.plan.original
    }

    /// The pixel scale factors `(sx, sy)` from the input to the processed image (before crops).
    pub fn scale(&self) -> (f64, f64) {
        let (w, h) = self.plan.scaled_size();
        (w as f64 / self.plan.original.0 as f64, h as f64 / self.plan.original.1 as f64)
    }

    /// Total crop offset `(left, top)` in scaled pixels: the divisible-by-14 crop plus the batch
    /// crop. A processed pixel `(x, y)` comes from scaled pixel `(x + left, y + top)`.
    pub fn crop_offset(&self) -> (usize, usize) {
        let (l, t) = self.plan.crop_offset();
        let (bl, bt) = self.batch_crop.unwrap_or((0, 0));
        (l + bl, t + bt)
    }
}

/// A preprocessed batch.
#[derive(Debug, Clone)]
pub struct Preprocessed {
    /// The network input, [S, 3, H, W].
    pub views: Views,
    /// The processed RGB images (what was normalized), all of the final size.
    pub images: Vec<RgbImage>,
    /// Per image: sizes, steps, crops and camera matrix.
    pub info: Vec<ImageInfo>,
}

impl Preprocessed {
    /// Indices of the images that were centre-cropped to unify the batch (the reference warns
    /// "Images in batch have different sizes").
    pub fn cropped_in_batch(&self) -> Vec<usize> {
        self.info.iter().enumerate().filter(|(_, i)| i.batch_crop.is_some()).map(|(i, _)| i).collect()
    }

    /// The updated camera matrices as the reference returns them (float32), `None` when any
    /// image has none.
    pub fn intrinsics_f32(&self) -> Option<Vec<[[f32; 3]; 3]>> {
        self.info.iter().map(|i| i.intrinsics.map(|k| k.to_f32())).collect()
    }

    /// The images exactly as the reference's `prediction.processed_images`: recovered from the
    /// normalized tensor (`x * std + mean` in f64, clipped, `* 255`, truncated to u8), which
    /// is one level below [`Preprocessed::images`] for about half of the 8-bit values.
    pub fn reference_processed_images(&self) -> Vec<RgbImage> {
        let lut = reference_pixel_lut();
        self.images
            .iter()
            .map(|img| {
                let pixels = img.pixels.iter().enumerate().map(|(i, &v)| lut[i % 3][v as usize]).collect();
                RgbImage { pixels, width: img.width, height: img.height }
            })
            .collect()
    }
}

/// Per channel, 8-bit value to the reference's round-tripped value (see
/// [`Preprocessed::reference_processed_images`]): `lut[c][v]` for channel `c` of an RGB
/// pixel. For writers that map the images as they write them, without a copy.
pub fn reference_pixel_lut() -> [[u8; 256]; 3] {
    const MEAN: [f64; 3] = [0.485, 0.456, 0.406];
    const STD: [f64; 3] = [0.229, 0.224, 0.225];
    let norm = normalize_lut();
    std::array::from_fn(|c| {
        std::array::from_fn(|v| ((norm[c][v] as f64 * STD[c] + MEAN[c]).clamp(0.0, 1.0) * 255.0) as u8)
    })
}

/// Per channel, 8-bit value to its normalized f32: `(v / 255 - mean) / std`.
fn normalize_lut() -> [[f32; 256]; 3] {
    std::array::from_fn(|c| std::array::from_fn(|v| (v as f32 / 255.0 - IMAGENET_MEAN[c]) / IMAGENET_STD[c]))
}

fn resize_rgb(
    img: &RgbImage,
    size: (usize, usize),
    interpolation: Interpolation,
    flavor: OpenCvFlavor,
) -> Result<RgbImage, Da3Error> {
    let plane = Plane { data: &img.pixels, width: img.width, height: img.height, channels: 3 };
    let pixels =
        resize::resize(plane, size.0, size.1, interpolation, flavor).map_err(|e| Da3Error::Input(e.to_string()))?;
    Ok(RgbImage { pixels, width: size.0, height: size.1 })
}

/// The per-image steps (`_process_one`): conversion to RGB, boundary resize, divisible by 14,
/// intrinsics. Independent of the other images, so callers may run it in parallel.
pub fn prepare(image: ImageRef<'_>, intrinsics: Option<Intrinsics>, options: &Options) -> Result<Prepared, Da3Error> {
    let ImageRef { pixels, width, height } = image;
    let expected = width.checked_mul(height).and_then(|n| n.checked_mul(pixels.channels()));
    if expected != Some(pixels.len()) {
        return Err(Da3Error::Input(format!(
            "{width}x{height} {} image: {} samples given, {} expected",
            pixels.format_name(),
            pixels.len(),
            width.saturating_mul(height).saturating_mul(pixels.channels())
        )));
    }
    let plan = Plan::new(width, height, options.process_res, options.method)?;
    let rgb = match convert::to_rgb8(&pixels) {
        Cow::Borrowed(p) => p.to_vec(),
        Cow::Owned(p) => p,
    };
    let mut img = RgbImage { pixels: rgb, width, height };
    if let Some(interpolation) = plan.boundary {
        img = resize_rgb(&img, plan.resized, interpolation, options.flavor)?;
    }
    match plan.divisible {
        Divisible::Unchanged => {}
        Divisible::Resize(interpolation) => img = resize_rgb(&img, plan.size, interpolation, options.flavor)?,
        Divisible::Crop { left, top } => img = img.crop(left, top, plan.size.0, plan.size.1),
    }
    Ok(Prepared { plan, image: img, intrinsics: intrinsics.map(|k| plan.update_intrinsics(k)) })
}

/// The batch steps (`_unify_batch_shapes` and normalization): centre-crops every image to the
/// smallest width and height of the batch (cx, cy follow) and normalizes.
pub fn assemble(prepared: Vec<Prepared>) -> Result<Preprocessed, Da3Error> {
    let (images, info) = assemble_images(prepared)?;
    let (w, h) = info[0].size;
    let lut = normalize_lut();
    let mut data = Vec::with_capacity(images.len() * 3 * h * w);
    for img in &images {
        for (c, lut) in lut.iter().enumerate() {
            data.extend(img.pixels.iter().skip(c).step_by(3).map(|&v| lut[v as usize]));
        }
    }
    let views = Views::from_normalized(data, images.len(), h, w)?;
    Ok(Preprocessed { views, images, info })
}

/// [`assemble`] without the network input: the batch-cropped processed images and their
/// records only. For callers that keep a scene's images after its views were fed to the
/// network in chunks (the normalized views are 12 bytes per pixel, the images 3).
pub fn assemble_images(prepared: Vec<Prepared>) -> Result<(Vec<RgbImage>, Vec<ImageInfo>), Da3Error> {
    let first = prepared.first().ok_or_else(|| Da3Error::Input("no images given".into()))?;
    let uniform = prepared.iter().all(|p| p.plan.size == first.plan.size);
    let min_w = prepared.iter().map(|p| p.plan.size.0).min().unwrap_or(0);
    let min_h = prepared.iter().map(|p| p.plan.size.1).min().unwrap_or(0);
    let mut images = Vec::with_capacity(prepared.len());
    let mut info = Vec::with_capacity(prepared.len());
    for Prepared { plan, image, intrinsics } in prepared {
        let (w, h) = plan.size;
        let (mut image, mut intrinsics, mut batch_crop) = (image, intrinsics, None);
        if !uniform {
            // Pixels: torchvision's CenterCrop (round((W - w) / 2)); cx, cy: (W - w) // 2.
            // Both agree as the differences are multiples of 14.
            let k_offset = ((w - min_w) / 2, (h - min_h) / 2);
            intrinsics = intrinsics.map(|k| k.shifted(k_offset));
            if (w, h) != (min_w, min_h) {
                let left = round_half_even((w - min_w) as f64 / 2.0) as usize;
                let top = round_half_even((h - min_h) as f64 / 2.0) as usize;
                image = image.crop(left, top, min_w, min_h);
                batch_crop = Some((left, top));
            }
        }
        info.push(ImageInfo { plan, batch_crop, size: (image.width, image.height), intrinsics });
        images.push(image);
    }
    Ok((images, info))
}

/// The whole preprocessing of one batch, in sequence: [`prepare`] for each image, then
/// [`assemble`]. `intrinsics`, when given, holds one matrix per image.
pub fn preprocess(
    images: &[ImageRef<'_>],
    intrinsics: Option<&[Intrinsics]>,
    options: &Options,
) -> Result<Preprocessed, Da3Error> {
    if let Some(k) = intrinsics {
        if k.len() != images.len() {
            return Err(Da3Error::Input(format!(
                "{} intrinsics for {} images; give one matrix per image",
                k.len(),
                images.len()
            )));
        }
    }
    let prepared = images
        .iter()
        .enumerate()
        .map(|(i, img)| {
            prepare(*img, intrinsics.map(|k| k[i]), options).map_err(|e| match e {
                Da3Error::Input(m) => Da3Error::Input(format!("image {i}: {m}")),
                other => other,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    assemble(prepared)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalization_matches_the_api() {
        let pixels: Vec<u8> = (0..14 * 14 * 3).map(|i| (i * 7 % 256) as u8).collect();
        let img = ImageRef { pixels: Pixels::Rgb8(&pixels), width: 14, height: 14 };
        let opts = Options { process_res: 14, ..Options::default() };
        let out = preprocess(&[img], None, &opts).unwrap();
        let view = RgbView { pixels: &pixels, width: 14, height: 14 };
        assert_eq!(out.views.data(), Views::from_rgb8(&[view]).unwrap().data());
        assert_eq!(out.images[0].pixels, pixels);
    }

    #[test]
    fn batch_is_cropped_to_the_smallest_size() {
        let a = vec![10u8; 28 * 42 * 3];
        let b = vec![20u8; 42 * 28 * 3];
        let imgs = [
            ImageRef { pixels: Pixels::Rgb8(&a), width: 28, height: 42 },
            ImageRef { pixels: Pixels::Rgb8(&b), width: 42, height: 28 },
        ];
        let k = Intrinsics::F32([[50.0, 0.0, 14.0], [0.0, 50.0, 21.0], [0.0, 0.0, 1.0]]);
        let opts = Options { process_res: 42, ..Options::default() };
        let out = preprocess(&imgs, Some(&[k, k]), &opts).unwrap();
        assert_eq!((out.views.width(), out.views.height()), (28, 28));
        assert_eq!(out.cropped_in_batch(), vec![0, 1]);
        assert_eq!(out.info[0].batch_crop, Some((0, 7)));
        assert_eq!(out.info[1].batch_crop, Some((7, 0)));
        let ks = out.intrinsics_f32().unwrap();
        assert_eq!((ks[0][0][2], ks[0][1][2]), (14.0, 14.0));
        assert_eq!((ks[1][0][2], ks[1][1][2]), (7.0, 21.0));
    }

    #[test]
    fn bad_inputs_are_errors() {
        let p = vec![0u8; 10];
        let img = ImageRef { pixels: Pixels::Rgb8(&p), width: 2, height: 2 };
        assert!(preprocess(&[img], None, &Options::default()).is_err());
        assert!(preprocess(&[], None, &Options::default()).is_err());
        let p = vec![0u8; 12];
        let img = ImageRef { pixels: Pixels::Rgb8(&p), width: 2, height: 2 };
        let k = Intrinsics::F64([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]);
        assert!(preprocess(&[img], Some(&[k, k]), &Options::default()).is_err());
        assert!(preprocess(&[img], None, &Options::default()).is_ok()); // 2x2 -> 504x504
    }
}
