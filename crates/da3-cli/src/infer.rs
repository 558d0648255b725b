//! `da3 infer`: depth, confidence and cameras for one multi-view scene.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use burn::tensor::backend::Backend;
use da3::api::Views;
use da3::config::PRESETS;
use da3::preprocess::{OpenCvFlavor, Options, ResizeMethod, DEFAULT_PROCESS_RES};
use da3::{Da3, Da3Config, Prediction, RefViewStrategy};
use da3_export::ExportFormats;

use crate::batch::{crop_warning, load_batch, size_summary};
use crate::device::{dispatch, BackendJob, DeviceKind};
use crate::exports::{check_formats, write_exports, CloudOptions};
use crate::images::DEFAULT_MAX_PIXELS;
use crate::output::write_outputs;
use crate::UsageError;

/// One-line description of `da3 infer`.
pub const ABOUT: &str = "Predict depth, confidence and camera poses for one scene of one or more images";

/// The long help text of `da3 infer` (`da3 infer --help`).
pub const LONG_ABOUT: &str = "Predict depth, confidence and camera poses for one scene of one or more images.

All images are views of the same scene and are processed jointly. Images of any size are \
preprocessed like the reference Python pipeline (InputProcessor; bit-exact for PNG files except \
for rare one-level differences in IPP cubic upscaling, see --opencv-flavor; JPEG files are \
decoded by the image crate, not libjpeg-turbo as in Pillow, so their pixels may differ by a few \
levels): converted to RGB as Pillow does, resized so that the longest side (upper_bound_*) or the \
shortest side (lower_bound_*) is --process-res pixels (OpenCV cubic when enlarging, area when \
shrinking), then made a multiple of 14 on both sides by a second resize to the nearest multiple \
(*_resize) or a centre crop (*_crop). E.g. 1920x1080 at the default 504 becomes 504x280. Images whose processed \
sizes differ are all centre-cropped to the smallest processed width and height (with a \
warning). EXIF orientation is ignored, as in the reference.

All outputs are at the processed resolution; intrinsics are in processed-image pixels. \
Writes into --out:
  results.npz            depth, conf [S,H,W]; extrinsics [S,3,4] (world-to-camera [R|t],
                         OpenCV axes); intrinsics [S,3,3] (pixels); all float32.
                         Mono/metric models predict no conf or cameras: depth and sky
                         [S,H,W] (sky where >= 0.5; sky depth is filled with the 0.99
                         quantile of the rest). da3metric-large: metres = depth * focal / 300
  depth_NNNN.png         16-bit grayscale depth of view NNNN: the view's min depth -> 0,
                         its max -> 65535, linear in between
  depth_png_ranges.json  each view's min/max, to convert back:
                         depth = min + png / 65535 * (max - min); also each view's
                         input image and original size
  processed_NNNN.png     the 8-bit RGB image view NNNN was predicted from (after resizing
                         and cropping), pixel-aligned with depth_NNNN.png

Exit status: 0 on success, 1 on runtime errors, 2 on usage errors.";

/// Arguments of `da3 infer`.
#[derive(Debug, Clone, clap::Args)]
pub struct InferArgs {
    /// Input images (PNG or JPEG) of any size, all views of one scene; grayscale, alpha,
    /// palette and 16-bit images are converted to 8-bit RGB as Pillow does.
    #[arg(required = true, value_name = "IMAGES")]
    pub images: Vec<PathBuf>,

    /// Model: a preset (da3-small, da3-base, da3-large, da3-giant, da3mono-large,
    /// da3metric-large; see `da3 models`), PRESET@1.0, a Hub repository owner/name[@revision],
    /// or the path of a config.json (Hub form {"model_name": "da3-large"} or a full config).
    /// Without --weights or --model-dir the model is downloaded into the Hugging Face cache on
    /// first use (see `da3 fetch --help`); default da3-small. With them, the default is the
    /// config.json next to the weights.
    #[arg(short, long, value_name = "PRESET|REPO|CONFIG.JSON")]
    pub model: Option<String>,

    /// Model weights: a local .safetensors file in the Hub layout (e.g. model.safetensors);
    /// no download.
    #[arg(short, long, value_name = "FILE", conflicts_with = "model_dir")]
    pub weights: Option<PathBuf>,

    /// A local directory holding config.json and model.safetensors (a Hub snapshot); no
    /// download.
    #[arg(long, value_name = "DIR")]
    pub model_dir: Option<PathBuf>,

    /// Backend to run on; only backends compiled in through the cargo features of da3-cli
    /// are available (default build: flex, wgpu).
    #[arg(short, long, value_enum, default_value_t = DeviceKind::Flex)]
    pub device: DeviceKind,

    /// Output directory (created if missing); the outputs of an earlier run there are replaced
    /// (depth and processed PNGs of views beyond this run's count are removed).
    #[arg(short, long, value_name = "DIR", default_value = "da3-out")]
    pub out: PathBuf,

    /// How the reference view (whose camera defines the world frame) is chosen: first,
    /// middle, saddle_balanced or saddle_sim_range.
    #[arg(long, value_name = "STRATEGY", default_value = "saddle_balanced", value_parser = parse_strategy)]
    pub ref_view_strategy: RefViewStrategy,

    /// Processing resolution: the longest side of each image (upper_bound_* methods) or the
    /// shortest (lower_bound_*) is resized to N pixels before both sides are made multiples of
    /// 14. Time and memory grow with the square of N.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_PROCESS_RES, value_parser = parse_process_res)]
    pub process_res: usize,

    /// How images reach the processing resolution: upper_bound_resize (longest side to N, then
    /// each side resized to the nearest multiple of 14), upper_bound_crop (longest side to N,
    /// then centre-cropped down to multiples of 14), lower_bound_resize or lower_bound_crop
    /// (the same with the shortest side to N).
    #[arg(long, value_name = "METHOD", default_value = "upper_bound_resize", value_parser = parse_method)]
    pub process_res_method: ResizeMethod,

    /// Which OpenCV build's cubic upscaling to reproduce. The reference resizes with cv2: on
    /// x86-64 its opencv-python wheels use Intel IPP for cubic upscaling, on ARM64 (Apple
    /// Silicon, aarch64 Linux) plain OpenCV; the two differ by one level on about 3 % of the
    /// samples of an upscaled image (downscaling is the same). Pick the one matching the
    /// machine you compare results with.
    #[arg(long, value_name = "FLAVOR", value_enum, default_value_t = FlavorArg::Ipp)]
    pub opencv_flavor: FlavorArg,

    /// Refuse images of more than N pixels (width x height), checked in the file header before
    /// decoding (decompression bombs), and for the resized image. The default is 100 megapixels.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_PIXELS, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_pixels: u64,

    /// Outputs, dash-separated: mini_npz (results.npz, always written), depth_vis (colourized
    /// depth beside each processed image, 16-bit depth/conf PNGs), ply (binary point cloud
    /// with colours), glb (point cloud + camera frustums, glTF axes, aligned to camera 0; also
    /// writes depth_vis), colmap (cameras.bin, images.bin, points3D.bin in OUT/colmap, with
    /// intrinsics at the original image sizes; needs a *_resize method). E.g. mini_npz-glb-ply.
    #[arg(long, value_name = "FORMATS", default_value = "mini_npz")]
    pub export_format: ExportFormats,

    /// ply, glb, colmap: drop pixels whose confidence is below this percentile (0-100).
    #[arg(long, value_name = "P", default_value_t = 40.0, value_parser = parse_percentile)]
    pub conf_thresh_percentile: f64,

    /// ply, glb: keep at most this many points (a seeded, reproducible subsample).
    #[arg(long, value_name = "N", default_value_t = 1_000_000)]
    pub num_max_points: usize,

    /// glb: draw the camera frustums.
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set)]
    pub show_cameras: bool,

    /// Print nothing on success (no summary, no warnings).
    #[arg(short, long)]
    pub quiet: bool,
}

fn parse_percentile(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(p) if (0.0..=100.0).contains(&p) => Ok(p),
        _ => Err(format!("`{s}` is not a percentile between 0 and 100")),
    }
}

/// `--opencv-flavor`: the OpenCV build whose cubic resize is reproduced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FlavorArg {
    /// OpenCV with Intel IPP (x86-64 opencv-python wheels)
    Ipp,
    /// OpenCV's own code (ARM64 wheels, or IPP disabled)
    Plain,
}

impl From<FlavorArg> for OpenCvFlavor {
    fn from(f: FlavorArg) -> Self {
        match f {
            FlavorArg::Ipp => OpenCvFlavor::Ipp,
            FlavorArg::Plain => OpenCvFlavor::Plain,
        }
    }
}

impl InferArgs {
    /// The preprocessing options given by the flags.
    pub fn options(&self) -> Options {
        Options { process_res: self.process_res, method: self.process_res_method, flavor: self.opencv_flavor.into() }
    }
}

fn parse_strategy(s: &str) -> Result<RefViewStrategy, String> {
    s.parse::<RefViewStrategy>()
}

fn parse_method(s: &str) -> Result<ResizeMethod, String> {
    s.parse::<ResizeMethod>().map_err(|e| e.to_string())
}

fn parse_process_res(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("`{s}` is not a positive number of pixels")),
    }
}

/// Chooses the model configuration from `--model` or the `config.json` next to the weights.
/// Returns the configuration and where it came from (for the summary).
pub fn resolve_config(model: Option<&str>, weights: &Path) -> Result<(Da3Config, String)> {
    let config_file = match model {
        Some(name) if PRESETS.contains(&name) => {
            return Ok((Da3Config::preset(name)?, format!("preset {name}")));
        }
        Some(arg) => {
            let path = PathBuf::from(arg);
            if !path.is_file() {
                return Err(UsageError(format!(
                    "--model `{arg}` is neither a preset ({}) nor an existing config.json file",
                    PRESETS.join(", ")
                ))
                .into());
            }
            path
        }
        None => {
            let path = weights.parent().unwrap_or(Path::new("")).join("config.json");
            if !path.is_file() {
                return Err(UsageError(format!(
                    "--model not given and there is no {} next to the weights; pass --model with \
                     a preset ({}) or the path of a config.json",
                    path.display(),
                    PRESETS.join(", ")
                ))
                .into());
            }
            path
        }
    };
    let text = std::fs::read_to_string(&config_file)
        .with_context(|| format!("cannot read model config {}", config_file.display()))?;
    let config = Da3Config::from_json(&text).with_context(|| format!("invalid model config {}", config_file.display()))?;
    Ok((config, config_file.display().to_string()))
}

/// Loads the weights and predicts on one backend.
struct InferJob<'a> {
    config: Da3Config,
    weights: &'a Path,
    views: &'a Views,
    strategy: RefViewStrategy,
}

/// A prediction with the time spent loading the model and predicting.
struct Timed {
    prediction: Prediction,
    load: Duration,
    inference: Duration,
}

impl BackendJob for InferJob<'_> {
    type Output = Timed;

    fn run<B: Backend>(self, device: B::Device) -> Result<Timed> {
        let start = Instant::now();
        let model = Da3::<B>::from_file(self.config, self.weights, &device)
            .with_context(|| format!("cannot load model weights {}", self.weights.display()))?;
        let load = start.elapsed();
        let start = Instant::now();
        let prediction = model.predict(self.views, self.strategy).context("inference failed")?;
        Ok(Timed { prediction, load, inference: start.elapsed() })
    }
}

/// Runs `da3 infer`.
pub fn run(args: &InferArgs) -> Result<()> {
    if !args.device.is_compiled() {
        // Reported by dispatch with the feature to enable; fail before any slow work.
        return dispatch(args.device, NoJob).map(|_| ());
    }
    let (config, config_source, weights) = crate::hub_cmd::resolve_model(
        args.model.as_deref(),
        args.weights.as_deref(),
        args.model_dir.as_deref(),
        args.quiet,
    )?;

    let options = args.options();
    check_formats(&args.export_format.0, options.method)?;
    let start = Instant::now();
    let pre = load_batch(&args.images, &options, args.max_pixels)?;
    let preprocessing = start.elapsed();
    if !args.quiet {
        if let Some(warning) = crop_warning(&pre, &args.images) {
            eprintln!("{warning}");
        }
    }

    let model_name = config.name.clone();
    let job = InferJob { config, weights: &weights, views: &pre.views, strategy: args.ref_view_strategy };
    let timed = dispatch(args.device, job)?;
    let written = write_outputs(&args.out, &timed.prediction, &args.images, &pre)?;
    let cloud = CloudOptions {
        conf_thresh_percentile: args.conf_thresh_percentile,
        num_max_points: args.num_max_points,
        show_cameras: args.show_cameras,
    };
    let exported = write_exports(&args.out, &args.export_format.0, &timed.prediction, &pre, &args.images, cloud)?;

    if !args.quiet {
        let count = pre.views.count();
        println!(
            "da3 infer: {count} view{}, {}, model {model_name} ({config_source}), device {}, reference view {}",
            if count == 1 { "" } else { "s" },
            size_summary(&pre),
            args.device,
            strategy_name(args.ref_view_strategy),
        );
        println!(
            "  preprocess {:>8.3} s  process_res {} {}, opencv {}",
            preprocessing.as_secs_f64(),
            options.process_res,
            options.method,
            flavor_name(args.opencv_flavor),
        );
        println!("  load       {:>8.3} s  {}", timed.load.as_secs_f64(), weights.display());
        println!("  inference  {:>8.3} s", timed.inference.as_secs_f64());
        println!("  wrote      {}", written.npz.display());
        let pngs = written.depth_pngs.iter().zip(&written.processed_pngs).flat_map(|(d, p)| [d, p]);
        for path in pngs.chain([&written.ranges]).chain(&exported) {
            println!("             {}", path.display());
        }
    }
    Ok(())
}

/// The command-line name of an OpenCV flavor.
fn flavor_name(flavor: FlavorArg) -> &'static str {
    match flavor {
        FlavorArg::Ipp => "ipp",
        FlavorArg::Plain => "plain",
    }
}

/// The command-line name of a strategy: `SaddleBalanced` -> `saddle_balanced`.
fn strategy_name(strategy: RefViewStrategy) -> String {
    let mut out = String::new();
    for (i, c) in format!("{strategy:?}").chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// Placeholder job used only to get [`dispatch`]'s "not compiled in" error.
struct NoJob;

impl BackendJob for NoJob {
    type Output = ();
    fn run<B: Backend>(self, _device: B::Device) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preprocessing_flags_parse() {
        assert_eq!(parse_method("lower_bound_crop"), Ok(ResizeMethod::LowerBoundCrop));
        let e = parse_method("bogus").unwrap_err();
        assert!(e.contains("bogus") && e.contains("upper_bound_resize") && e.contains("lower_bound_crop"), "{e}");
        assert_eq!(parse_process_res("504"), Ok(504));
        assert!(parse_process_res("0").is_err() && parse_process_res("-1").is_err() && parse_process_res("x").is_err());
        assert_eq!(OpenCvFlavor::from(FlavorArg::Plain), OpenCvFlavor::Plain);
        assert_eq!(OpenCvFlavor::from(FlavorArg::Ipp), OpenCvFlavor::default());
    }

    #[test]
    fn strategy_names_round_trip() {
        for name in ["first", "middle", "saddle_balanced", "saddle_sim_range"] {
            assert_eq!(strategy_name(name.parse().unwrap()), name);
        }
    }

    #[test]
    fn presets_and_missing_configs() {
        let (cfg, src) = resolve_config(Some("da3-small"), Path::new("w.safetensors")).unwrap();
        assert_eq!((cfg.backbone.embed_dim, src.as_str()), (384, "preset da3-small"));
        let e = resolve_config(Some("da3-huge"), Path::new("w.safetensors")).unwrap_err();
        assert!(e.downcast_ref::<UsageError>().is_some() && e.to_string().contains("da3-huge"), "{e}");
        let e = resolve_config(None, Path::new("/nonexistent/dir/w.safetensors")).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/dir/config.json"), "{e}");
    }

    #[test]
    fn config_json_next_to_weights_is_used() {
        let dir = std::env::temp_dir().join(format!("da3-cli-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("config.json"), r#"{"model_name": "da3-base"}"#).unwrap();
        let (cfg, _) = resolve_config(None, &dir.join("model.safetensors")).unwrap();
        assert_eq!(cfg.backbone.embed_dim, 768);
        std::fs::write(dir.join("config.json"), "{not json").unwrap();
        let e = format!("{:#}", resolve_config(None, &dir.join("model.safetensors")).unwrap_err());
        assert!(e.contains("config.json") && e.contains("invalid JSON"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
