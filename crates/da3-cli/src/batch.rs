//! The input batch of `da3 infer`: every file checked, then decoded and preprocessed in
//! parallel, then assembled into the network input; plus the messages describing it.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use da3::preprocess::{assemble, Options, Preprocessed};
use rayon::prelude::*;

use crate::images::{check_input, load_and_prepare};

/// Preprocesses `paths` like the reference's `InputProcessor`: first every header is checked
/// ([`check_input`]: size limit, plan), so that nothing is decoded when any file is refused;
/// then the files are decoded and prepared in parallel, and [`assemble`]d (images of
/// different processed sizes are centre-cropped to the smallest). Errors name the file; with
/// several bad files, the first in order is reported.
pub fn load_batch(paths: &[PathBuf], options: &Options, max_pixels: u64) -> Result<Preprocessed> {
    if paths.is_empty() {
        bail!("no input images given");
    }
    for path in paths {
        check_input(path, options, max_pixels)?;
    }
    let prepared: Vec<Result<_>> = paths.par_iter().map(|p| load_and_prepare(p, options, max_pixels)).collect();
    let prepared = prepared.into_iter().collect::<Result<Vec<_>>>()?;
    assemble(prepared).context("cannot assemble the preprocessed images")
}

/// `WxH` of a `(width, height)`.
fn size_text((w, h): (usize, usize)) -> String {
    format!("{w}x{h}")
}

/// Distinct sizes listed before the rest are summarized as "N more sizes".
const MAX_SIZES_LISTED: usize = 3;

/// The sizes of the batch for the summary: `1920x1080 -> 504x280`. Distinct original sizes
/// are listed in order of first appearance, separated by `/` (`97x61/61x97 -> 42x42`), at
/// most three and then a count.
pub fn size_summary(pre: &Preprocessed) -> String {
    let mut distinct: Vec<(usize, usize)> = Vec::new();
    for info in &pre.info {
        if !distinct.contains(&info.original_size()) {
            distinct.push(info.original_size());
        }
    }
    let mut originals: Vec<String> = distinct.iter().take(MAX_SIZES_LISTED).map(|&s| size_text(s)).collect();
    if distinct.len() > MAX_SIZES_LISTED {
        originals.push(format!("{} more sizes", distinct.len() - MAX_SIZES_LISTED));
    }
    let processed = pre.info.first().map(|i| size_text(i.size)).unwrap_or_default();
    format!("{} -> {processed}", originals.join("/"))
}

/// The warning about the batch crop, when images had different processed sizes: one line
/// per cropped image, naming its file, e.g.
/// `  b.png: 61x97 -> 42x56, cropped to 42x42`. `None` when nothing was cropped.
pub fn crop_warning(pre: &Preprocessed, paths: &[PathBuf]) -> Option<String> {
    let cropped = pre.cropped_in_batch();
    let size = size_text(pre.info.first()?.size);
    if cropped.is_empty() {
        return None;
    }
    let mut text = format!(
        "warning: the images have different processed sizes; {} of them {} centre-cropped to the \
         common {size} (the smallest processed width and height), so their edges are not predicted:",
        cropped.len(),
        if cropped.len() == 1 { "was" } else { "were" },
    );
    for i in cropped {
        let info = &pre.info[i];
        let path = paths.get(i).map(|p| p.display().to_string()).unwrap_or_else(|| format!("image {i}"));
        text.push_str(&format!(
            "\n  {path}: {} -> {}, cropped to {size}",
            size_text(info.original_size()),
            size_text(info.plan.size)
        ));
    }
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use da3::preprocess::{preprocess, ImageRef, Pixels};

    fn batch(sizes: &[(usize, usize)], process_res: usize) -> Preprocessed {
        let buffers: Vec<Vec<u8>> = sizes.iter().map(|(w, h)| vec![128; w * h * 3]).collect();
        let refs: Vec<ImageRef<'_>> = sizes
            .iter()
            .zip(&buffers)
            .map(|(&(width, height), b)| ImageRef { pixels: Pixels::Rgb8(b), width, height })
            .collect();
        preprocess(&refs, None, &Options { process_res, ..Options::default() }).unwrap()
    }

    #[test]
    fn summary_lists_original_and_processed_sizes() {
        assert_eq!(size_summary(&batch(&[(1920, 1080)], 504)), "1920x1080 -> 504x280");
        assert_eq!(size_summary(&batch(&[(97, 61), (97, 61)], 56)), "97x61 -> 56x42");
        assert_eq!(size_summary(&batch(&[(56, 42), (56, 56)], 56)), "56x42/56x56 -> 56x42");
        let many = batch(&[(56, 42), (56, 56), (42, 56), (28, 56), (56, 28)], 56);
        assert_eq!(size_summary(&many), "56x42/56x56/42x56/2 more sizes -> 28x28");
    }

    #[test]
    fn warning_names_each_cropped_image() {
        let paths = [PathBuf::from("wide.png"), PathBuf::from("square.png")];
        assert!(crop_warning(&batch(&[(56, 42), (56, 42)], 56), &paths).is_none());
        let w = crop_warning(&batch(&[(56, 42), (56, 56)], 56), &paths).unwrap();
        assert!(w.contains("square.png: 56x56 -> 56x56, cropped to 56x42") && !w.contains("wide.png"), "{w}");
        assert!(w.contains("1 of them was"), "{w}");
    }
}
