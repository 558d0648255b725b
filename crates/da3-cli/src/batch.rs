//! The input batch of `da3 infer`: every file's header read and checked ([`read_headers`]),
//! then the files decoded and preprocessed in parallel and assembled into the network input
//! ([`load_batch`] all at once; [`crate::stream::ViewLoader`] chunk by chunk, overlapped with
//! inference); plus the messages describing it.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use da3::preprocess::{assemble, ImageInfo, Intrinsics, Options, Plan, Preprocessed, RgbImage};
use da3::Views;
use indicatif::ProgressBar;
use rayon::prelude::*;

use crate::images::{check_size, load_and_prepare, read_dimensions};

/// An input image left out of the scene, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The file.
    pub path: PathBuf,
    /// The error, with its causes (`cannot decode image a.png (...): ...`).
    pub reason: String,
}

/// The processed images and per-image records of a scene's views: what the outputs need once
/// the prediction is made. The normalized network input (12 bytes per pixel, four times the
/// images) is not kept: at 1000 views of 504x378 it was 2.3 GB held through the writing of
/// the outputs, past a 4 GiB budget.
#[derive(Debug, Clone, Default)]
pub struct Processed {
    /// The processed RGB images, all of the final size.
    pub images: Vec<RgbImage>,
    /// Per image: sizes, steps, crops and camera matrix.
    pub info: Vec<ImageInfo>,
}

impl From<Preprocessed> for Processed {
    /// Drops the network input.
    fn from(pre: Preprocessed) -> Self {
        Self { images: pre.images, info: pre.info }
    }
}

/// The preprocessed scene and what was left out of it.
#[derive(Debug, Clone)]
pub struct Batch {
    /// The processed images and records of the kept views.
    pub pre: Processed,
    /// For each kept view, its index in the input list (in input order).
    pub kept: Vec<usize>,
    /// The inputs that could not be read or decoded, in input order.
    pub skipped: Vec<Skipped>,
}

impl Batch {
    /// The paths of the kept views.
    pub fn kept_paths(&self, paths: &[PathBuf]) -> Vec<PathBuf> {
        self.kept.iter().map(|&i| paths[i].clone()).collect()
    }
}

/// Preprocesses `paths` like the reference's `InputProcessor`, carrying each image's
/// `intrinsics` (pixels of the file) along when given.
///
/// First every header is read and checked ([`check_size`]: size limit, plan): a file whose
/// header cannot be read (missing, empty, not PNG/JPEG) is set aside, while a file refused
/// by a limit stops the run (raising the flag is the fix, and nothing is decoded). Then the
/// remaining files are decoded and prepared in parallel (`progress` advances per file);
/// files that fail to decode (corrupt, truncated) are set aside too. The set-aside files are
/// returned as [`Batch::skipped`] as long as one good image remains; otherwise the error of
/// the only input, or a list of every input's error, is returned. Errors name the file.
/// The good images are [`assemble`]d (different processed sizes are centre-cropped to the
/// smallest); the network input is returned beside the batch.
pub fn load_batch(
    paths: &[PathBuf],
    intrinsics: Option<&[Intrinsics]>,
    options: &Options,
    max_pixels: u64,
    progress: &ProgressBar,
) -> Result<(Batch, Views)> {
    if paths.is_empty() {
        bail!("no input images given");
    }
    if let Some(k) = intrinsics {
        if k.len() != paths.len() {
            bail!("internal error: {} intrinsics for {} images", k.len(), paths.len());
        }
    }
    let (readable, mut failures) = header_pass(paths, options, max_pixels)?;
    progress.inc(failures.len() as u64);
    let decoded: Vec<(usize, Result<_>)> = readable
        .par_iter()
        .map(|&i| {
            let result = load_and_prepare(&paths[i], intrinsics.map(|k| k[i]), options, max_pixels);
            progress.inc(1);
            (i, result)
        })
        .collect();
    let mut prepared = Vec::new();
    let mut kept = Vec::new();
    for (i, result) in decoded {
        match result {
            Ok(p) => {
                prepared.push(p);
                kept.push(i);
            }
            Err(e) => failures.push((i, e)),
        }
    }
    failures.sort_by_key(|(i, _)| *i);
    if prepared.is_empty() {
        return Err(no_good_image(paths, failures));
    }
    let skipped = failures.into_iter().map(|(i, e)| Skipped { path: paths[i].clone(), reason: format!("{e:#}") }).collect();
    let Preprocessed { views, images, info } = assemble(prepared).context("cannot assemble the preprocessed images")?;
    Ok((Batch { pre: Processed { images, info }, kept, skipped }, views))
}

/// Input indices paired with why each could not be used.
pub type Failures = Vec<(usize, anyhow::Error)>;

/// The inputs' headers, read and checked before any pixel is decoded.
#[derive(Debug)]
pub struct Headers {
    /// The inputs whose header was read: input index and preprocessing plan, in input order.
    pub readable: Vec<(usize, Plan)>,
    /// The inputs whose header could not be read, and why, in input order.
    pub failures: Failures,
}

/// Reads and checks every header ([`check_size`]): the readable files with their plans, and
/// the errors of the others. A file refused by a limit is an error of the whole run (raising
/// the flag is the fix).
pub fn read_headers(paths: &[PathBuf], options: &Options, max_pixels: u64) -> Result<Headers> {
    let mut failures = Vec::new();
    let mut readable = Vec::new();
    for (i, path) in paths.iter().enumerate() {
        match read_dimensions(path) {
            Ok(size) => readable.push((i, check_size(path, size, options, max_pixels)?)),
            Err(e) => failures.push((i, e)),
        }
    }
    Ok(Headers { readable, failures })
}

/// [`read_headers`] as indices: the readable files and the errors of the others.
fn header_pass(paths: &[PathBuf], options: &Options, max_pixels: u64) -> Result<(Vec<usize>, Failures)> {
    let headers = read_headers(paths, options, max_pixels)?;
    Ok((headers.readable.iter().map(|(i, _)| *i).collect(), headers.failures))
}

/// The cheap part of [`load_batch`], run before the model is resolved (and possibly
/// downloaded): every header is read and checked, and the run fails with `load_batch`'s
/// error when a file is refused by a limit or when no file has a readable header (a missing
/// path, an empty or non-image file). Files that fail later, while decoding, are found by
/// `load_batch` or the [`crate::stream::ViewLoader`]. Returns the headers.
pub fn check_headers(paths: &[PathBuf], options: &Options, max_pixels: u64) -> Result<Headers> {
    if paths.is_empty() {
        bail!("no input images given");
    }
    let headers = read_headers(paths, options, max_pixels)?;
    if headers.readable.is_empty() {
        return Err(no_good_image(paths, headers.failures));
    }
    Ok(headers)
}

/// The error when no input could be used: the only input's own error, or every input's.
pub fn no_good_image(paths: &[PathBuf], mut failures: Failures) -> anyhow::Error {
    if failures.len() == 1 {
        return failures.remove(0).1;
    }
    let mut text = format!("none of the {} input images could be read:", paths.len());
    for (i, e) in &failures {
        text.push_str(&format!("\n  {}: {e:#}", paths[*i].display()));
    }
    text.push_str("\nCheck that the files are complete PNG or JPEG images.");
    anyhow::anyhow!(text)
}

/// The warning listing the skipped inputs, or `None` when none was skipped.
pub fn skipped_warning(skipped: &[Skipped], total: usize) -> Option<String> {
    if skipped.is_empty() {
        return None;
    }
    let mut text = format!(
        "warning: skipped {} of {total} input images that could not be read (the scene is predicted from the other {}):",
        skipped.len(),
        total - skipped.len()
    );
    for s in skipped {
        text.push_str(&format!("\n  {}: {}", s.path.display(), s.reason));
    }
    Some(text)
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
pub fn size_summary(pre: &Processed) -> String {
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
/// `  b.png: 61x97 -> 42x56, cropped to 42x42`. `plans` are the views' preprocessing plans
/// (known from the headers), `paths` their files. `None` when nothing is cropped.
pub fn crop_warning(plans: &[Plan], paths: &[PathBuf]) -> Option<String> {
    let size = batch_size(plans)?;
    let cropped: Vec<usize> = (0..plans.len()).filter(|&i| plans[i].size != size).collect();
    if cropped.is_empty() {
        return None;
    }
    let size = size_text(size);
    let mut text = format!(
        "warning: the images have different processed sizes; {} of them {} centre-cropped to the \
         common {size} (the smallest processed width and height), so their edges are not predicted:",
        cropped.len(),
        if cropped.len() == 1 { "was" } else { "were" },
    );
    for i in cropped {
        let plan = &plans[i];
        let path = paths.get(i).map(|p| p.display().to_string()).unwrap_or_else(|| format!("image {i}"));
        text.push_str(&format!("\n  {path}: {} -> {}, cropped to {size}", size_text(plan.original), size_text(plan.size)));
    }
    Some(text)
}

/// The `(width, height)` every view of a batch gets: the smallest processed width and the
/// smallest processed height ([`assemble`]'s centre crop), `None` for no views.
pub fn batch_size(plans: &[Plan]) -> Option<(usize, usize)> {
    let w = plans.iter().map(|p| p.size.0).min()?;
    let h = plans.iter().map(|p| p.size.1).min()?;
    Some((w, h))
}

#[cfg(test)]
mod tests {
    use super::*;
    use da3::preprocess::{preprocess, ImageRef, Pixels};

    #[test]
    fn skipped_warning_names_each_file() {
        assert!(skipped_warning(&[], 3).is_none());
        let s = [Skipped { path: PathBuf::from("bad.png"), reason: "cannot decode image bad.png".into() }];
        let w = skipped_warning(&s, 3).unwrap();
        assert!(w.contains("skipped 1 of 3") && w.contains("other 2") && w.contains("\n  bad.png: cannot decode"), "{w}");
    }

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
        assert_eq!(size_summary(&batch(&[(1920, 1080)], 504).into()), "1920x1080 -> 504x280");
        assert_eq!(size_summary(&batch(&[(97, 61), (97, 61)], 56).into()), "97x61 -> 56x42");
        assert_eq!(size_summary(&batch(&[(56, 42), (56, 56)], 56).into()), "56x42/56x56 -> 56x42");
        let many = batch(&[(56, 42), (56, 56), (42, 56), (28, 56), (56, 28)], 56);
        assert_eq!(size_summary(&many.into()), "56x42/56x56/42x56/2 more sizes -> 28x28");
    }

    fn plans(pre: &Preprocessed) -> Vec<Plan> {
        pre.info.iter().map(|i| i.plan).collect()
    }

    #[test]
    fn warning_names_each_cropped_image() {
        let paths = [PathBuf::from("wide.png"), PathBuf::from("square.png")];
        assert!(crop_warning(&plans(&batch(&[(56, 42), (56, 42)], 56)), &paths).is_none());
        let pre = batch(&[(56, 42), (56, 56)], 56);
        assert_eq!(pre.cropped_in_batch(), [1], "the library crops what the warning names");
        assert_eq!(batch_size(&plans(&pre)), Some(pre.info[0].size));
        let w = crop_warning(&plans(&pre), &paths).unwrap();
        assert!(w.contains("square.png: 56x56 -> 56x56, cropped to 56x42") && !w.contains("wide.png"), "{w}");
        assert!(w.contains("1 of them was"), "{w}");
    }
}
