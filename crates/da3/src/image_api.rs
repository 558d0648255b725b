//! CPU convenience API on the `image` crate's types (feature `image`): decoded images in,
//! [`Prediction`] out, depth as `ImageBuffer<Luma<f32>>`.
//!
//! The images go through the library's reference preprocessing ([`crate::preprocess`]) exactly
//! as [`crate::preprocess::ImageRef`]s of the matching [`Pixels`] layout would.

use burn::tensor::backend::Backend;
use image::{DynamicImage, ImageBuffer, Luma};

use crate::preprocess::{self, ImageRef, Pixels, Preprocessed};
use crate::{Da3, Da3Error, PredictOptions, Prediction};

/// A depth (or confidence) map as an `image` buffer of f32 values.
pub type DepthImage = ImageBuffer<Luma<f32>, Vec<f32>>;

/// Borrows a decoded image as the preprocessing's input layout. 8- and 16-bit gray, gray +
/// alpha, RGB and RGBA map directly; f32 images are converted to 8-bit RGB first (owned in
/// `scratch`). The `da3` CLI decodes files with `image` and hands them over through this too.
pub fn image_ref<'a>(img: &'a DynamicImage, scratch: &'a mut Option<image::RgbImage>) -> ImageRef<'a> {
    let (width, height) = (img.width() as usize, img.height() as usize);
    let pixels = match img {
        DynamicImage::ImageLuma8(b) => Pixels::Gray8(b.as_raw()),
        DynamicImage::ImageLumaA8(b) => Pixels::GrayAlpha8(b.as_raw()),
        DynamicImage::ImageRgb8(b) => Pixels::Rgb8(b.as_raw()),
        DynamicImage::ImageRgba8(b) => Pixels::Rgba8(b.as_raw()),
        DynamicImage::ImageLuma16(b) => Pixels::Gray16(b.as_raw()),
        DynamicImage::ImageLumaA16(b) => Pixels::GrayAlpha16(b.as_raw()),
        DynamicImage::ImageRgb16(b) => Pixels::Rgb16(b.as_raw()),
        DynamicImage::ImageRgba16(b) => Pixels::Rgba16(b.as_raw()),
        other => Pixels::Rgb8(scratch.insert(other.to_rgb8()).as_raw()),
    };
    ImageRef { pixels, width, height }
}

/// Preprocesses decoded images with the default [`preprocess::Options`] (or `options`).
pub fn preprocess_images(images: &[DynamicImage], options: &preprocess::Options) -> Result<Preprocessed, Da3Error> {
    let mut scratch: Vec<Option<image::RgbImage>> = vec![None; images.len()];
    let refs: Vec<ImageRef<'_>> = images.iter().zip(scratch.iter_mut()).map(|(img, s)| image_ref(img, s)).collect();
    preprocess::preprocess(&refs, None, options)
}

impl<B: Backend> Da3<B> {
    /// Preprocesses the images as the reference does (default options) and runs them jointly
    /// with the default [`PredictOptions`].
    pub fn predict_images(&self, images: &[DynamicImage]) -> Result<Prediction, Da3Error> {
        self.predict_images_with(images, &preprocess::Options::default(), &PredictOptions::default())
    }

    /// [`Self::predict_images`] for one image.
    pub fn predict_image(&self, image: &DynamicImage) -> Result<Prediction, Da3Error> {
        self.predict_images(std::slice::from_ref(image))
    }

    /// [`Self::predict_images`] with explicit preprocessing and prediction options.
    pub fn predict_images_with(
        &self,
        images: &[DynamicImage],
        preprocessing: &preprocess::Options,
        options: &PredictOptions,
    ) -> Result<Prediction, Da3Error> {
        let pre = preprocess_images(images, preprocessing)?;
        self.predict_with(&pre.views, options)
    }
}

impl Prediction {
    /// Depth of view `i` as an image (processed size, f32 values); `None` past the last view.
    pub fn depth_image(&self, i: usize) -> Option<DepthImage> {
        self.plane_image(&self.depth, i)
    }

    /// Confidence of view `i` as an image; `None` past the last view or for models without one.
    pub fn conf_image(&self, i: usize) -> Option<DepthImage> {
        self.plane_image(&self.conf, i)
    }

    fn plane_image(&self, values: &[f32], i: usize) -> Option<DepthImage> {
        let n = self.height * self.width;
        let plane = values.get(i * n..(i + 1) * n)?;
        ImageBuffer::from_raw(self.width as u32, self.height as u32, plane.to_vec())
    }
}
