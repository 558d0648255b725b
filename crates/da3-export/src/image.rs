//! The processed RGB images that exports colour their points and visualizations with, and
//! the consistency checks every exporter runs first.

use da3::Prediction;

use crate::error::{ExportError, Result};

/// An owned 8-bit RGB image: `height` rows of `width` pixels, 3 interleaved bytes each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRgb8 {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// `height * width * 3` bytes, row-major RGB.
    pub pixels: Vec<u8>,
}

impl ImageRgb8 {
    /// Wraps `pixels`, checking that there are `width * height * 3` of them.
    pub fn new(width: usize, height: usize, pixels: Vec<u8>) -> Result<Self> {
        let image = Self {
            width,
            height,
            pixels,
        };
        image.check()?;
        Ok(image)
    }

    /// An image filled with one colour.
    pub fn filled(width: usize, height: usize, rgb: [u8; 3]) -> Self {
        Self {
            width,
            height,
            pixels: rgb.repeat(width * height),
        }
    }

    fn check(&self) -> Result<()> {
        if self.pixels.len() != self.width * self.height * 3 {
            return Err(ExportError::Input(format!(
                "{} bytes for a {}x{} RGB image (expected {})",
                self.pixels.len(),
                self.width,
                self.height,
                self.width * self.height * 3
            )));
        }
        Ok(())
    }
}

/// Checks that the prediction's arrays have the sizes its `views`, `height` and `width`
/// announce (confidence and cameras may be empty, as mono/metric models predict none), and
/// that there is one processed image of that size per view.
pub fn check_inputs(pred: &Prediction, images: &[ImageRgb8]) -> Result<()> {
    let n = pred.views * pred.height * pred.width;
    let conf_ok = pred.conf.is_empty() || pred.conf.len() == n;
    let cams_ok = (pred.extrinsics.is_empty() && pred.intrinsics.is_empty())
        || (pred.extrinsics.len() == pred.views && pred.intrinsics.len() == pred.views);
    if pred.depth.len() != n || !conf_ok || !cams_ok {
        return Err(ExportError::Input(format!(
            "prediction for {} views of {}x{} has {} depth, {} conf, {} extrinsics and {} intrinsics values",
            pred.views,
            pred.width,
            pred.height,
            pred.depth.len(),
            pred.conf.len(),
            pred.extrinsics.len(),
            pred.intrinsics.len()
        )));
    }
    if images.len() != pred.views {
        return Err(ExportError::Input(format!(
            "{} images for {} predicted views",
            images.len(),
            pred.views
        )));
    }
    for (i, image) in images.iter().enumerate() {
        image
            .check()
            .map_err(|e| ExportError::Input(format!("image {i}: {e}")))?;
        if (image.width, image.height) != (pred.width, pred.height) {
            return Err(ExportError::Input(format!(
                "image {i} is {}x{} but the prediction is {}x{}; pass the processed images",
                image.width, image.height, pred.width, pred.height
            )));
        }
    }
    Ok(())
}

/// [`check_inputs`], and that the prediction has cameras, which `format` needs to place
/// points in the world (mono/metric models predict none).
pub fn check_inputs_with_cameras(
    pred: &Prediction,
    images: &[ImageRgb8],
    format: &str,
) -> Result<()> {
    check_inputs(pred, images)?;
    if pred.views > 0 && pred.extrinsics.is_empty() {
        return Err(ExportError::Input(format!(
            "the {format} export needs predicted cameras, which this model does not predict (mono/metric models); \
             use a main-series model or the depth_vis export"
        )));
    }
    Ok(())
}
