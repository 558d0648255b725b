//! The flags every inference subcommand shares (`auto`, `image`, `images`, `video`, `colmap`,
//! `infer`), flattened into each with `#[command(flatten)]`. Named as the reference CLI names
//! them where it has them.

use std::path::PathBuf;

use da3::preprocess::{OpenCvFlavor, Options, ResizeMethod, DEFAULT_PROCESS_RES};
use da3::RefViewStrategy;
use da3_export::{ExportFormat, ExportFormats};

use crate::device::DeviceKind;
use crate::images::DEFAULT_MAX_PIXELS;

/// Which model a command loads (shared by the file commands and `da3 serve`).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ModelArgs {
    /// Model: a preset (da3-small, da3-base, da3-large, da3-giant, da3mono-large,
    /// da3metric-large, da3nested-giant-large; see `da3 models`), PRESET@1.0, a Hub
    /// repository owner/name[@revision], or the path of a config.json (Hub form
    /// {"model_name": "da3-large"} or a full config). Without --weights or --model-dir the
    /// model is downloaded into the Hugging Face cache on first use (see `da3 fetch --help`);
    /// default da3-small. With them, the default is the config.json next to the weights.
    #[arg(short, long, value_name = "PRESET|REPO|CONFIG.JSON", help_heading = "Model")]
    pub model: Option<String>,

    /// Model weights: a local .safetensors file in the Hub layout (e.g. model.safetensors);
    /// no download.
    #[arg(short, long, value_name = "FILE", conflicts_with = "model_dir", help_heading = "Model")]
    pub weights: Option<PathBuf>,

    /// A local directory holding config.json and model.safetensors (a Hub snapshot); no
    /// download.
    #[arg(long, value_name = "DIR", help_heading = "Model")]
    pub model_dir: Option<PathBuf>,
}

/// Flags shared by every inference subcommand.
#[derive(Debug, Clone, clap::Args)]
pub struct CommonArgs {
    /// Which model: --model, --weights, --model-dir.
    #[command(flatten)]
    pub source: ModelArgs,

    /// Also run the 3D-Gaussian head and write the Gaussians as a 3DGS PLY
    /// (DIR/gs_ply/0000.ply, i.e. the gs_ply export, added to --export-format). Only models
    /// with a GS head have it: da3-giant and da3nested-giant-large. Listing gs_ply in
    /// --export-format turns this on too.
    #[arg(long, help_heading = "Model")]
    pub infer_gs: bool,

    /// Backend to run on; only backends compiled in through the cargo features of da3-cli
    /// are available (default build: flex, wgpu).
    #[arg(short, long, value_enum, default_value_t = DeviceKind::Flex, help_heading = "Model")]
    pub device: DeviceKind,

    /// Float format of the backbone's matrix products: auto (fp32 on CPUs; bf16 on GPUs with
    /// native bf16, else fp16 where the GPU accelerates it), fp32, fp16 or bf16. The residual
    /// stream, LayerNorms and heads always run in fp32. A mode the device cannot run is an
    /// error (e.g. fp16 on a wgpu adapter without shader-f16).
    #[arg(long, value_name = "MODE", default_value = "auto", value_parser = parse_precision, help_heading = "Model")]
    pub precision: da3::Precision,

    /// Output directory (created if missing; --out is an alias); the outputs of an earlier run
    /// there are replaced (depth and processed PNGs of views beyond this run's count are
    /// removed). It is checked to be writable before the model is loaded.
    #[arg(long, visible_alias = "out", short = 'o', value_name = "DIR", default_value = "da3-out", help_heading = "Output")]
    pub export_dir: PathBuf,

    /// Outputs, dash-separated: mini_npz (results.npz, always written), npz (the reference's
    /// full npz: processed images as uint8 `image` [S,H,W,3], depth rounded to 6 decimals,
    /// conf to 2, extrinsics, intrinsics; in DIR/exports/npz/results.npz), depth_vis
    /// (colourized depth beside each processed image, 16-bit depth/conf PNGs), ply (binary
    /// point cloud with colours), glb (point cloud + camera frustums, glTF axes, aligned to
    /// camera 0; also writes depth_vis), colmap (cameras.bin, images.bin, points3D.bin in
    /// DIR/colmap, with intrinsics at the original image sizes; needs a *_resize method),
    /// gs_ply (the 3D Gaussians as a 3DGS PLY in DIR/gs_ply/0000.ply, border and farthest-10%
    /// pruned per view as the reference; turns on --infer-gs, so it needs da3-giant or
    /// da3nested-giant-large). E.g. mini_npz-glb-ply.
    #[arg(long, value_name = "FORMATS", default_value = "mini_npz", help_heading = "Output")]
    pub export_format: ExportFormats,

    /// gs_ply: export the Gaussians of every N-th view (0, N, 2N, ...); for dense inputs.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..), help_heading = "Output")]
    pub gs_views_interval: u64,

    /// Also store the normed output of these backbone blocks (comma-separated indices, e.g.
    /// 0,5,11; the reference's --export-feat) in results.npz as `feat_layer_<i>`, float32
    /// [S, H/14, W/14, D] (D: the backbone width), views in input order. Blocks are numbered
    /// from 0 to the backbone depth - 1 (da3-small/base: 11, da3-large: 23, da3-giant: 39).
    #[arg(long, visible_alias = "export-feat", value_name = "LAYERS", value_delimiter = ',', value_parser = parse_layer, help_heading = "Output")]
    pub export_feat_layers: Vec<usize>,

    /// ply, glb, colmap: drop pixels whose confidence is below this percentile (0-100).
    #[arg(long, value_name = "P", default_value_t = 40.0, value_parser = parse_percentile, help_heading = "Output")]
    pub conf_thresh_percentile: f64,

    /// ply, glb: keep at most this many points (a seeded, reproducible subsample).
    #[arg(long, value_name = "N", default_value_t = 1_000_000, help_heading = "Output")]
    pub num_max_points: usize,

    /// glb: draw the camera frustums.
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set, help_heading = "Output")]
    pub show_cameras: bool,

    /// Print no summary, no progress bars and no warnings. Skipped inputs are still reported
    /// on stderr, as they change what was predicted.
    #[arg(short, long, help_heading = "Output")]
    pub quiet: bool,

    /// Processing resolution: the longest side of each image (upper_bound_* methods) or the
    /// shortest (lower_bound_*) is resized to N pixels before both sides are made multiples of
    /// 14. Time and memory grow with the square of N.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_PROCESS_RES, value_parser = parse_process_res, help_heading = "Preprocessing")]
    pub process_res: usize,

    /// How images reach the processing resolution: upper_bound_resize (longest side to N, then
    /// each side resized to the nearest multiple of 14), upper_bound_crop (longest side to N,
    /// then centre-cropped down to multiples of 14), lower_bound_resize or lower_bound_crop
    /// (the same with the shortest side to N).
    #[arg(long, value_name = "METHOD", default_value = "upper_bound_resize", value_parser = parse_method, help_heading = "Preprocessing")]
    pub process_res_method: ResizeMethod,

    /// Which OpenCV build's cubic upscaling to reproduce. The reference resizes with cv2: on
    /// x86-64 its opencv-python wheels use Intel IPP for cubic upscaling, on ARM64 (Apple
    /// Silicon, aarch64 Linux) plain OpenCV; the two differ by one level on about 3 % of the
    /// samples of an upscaled image (downscaling is the same). Pick the one matching the
    /// machine you compare results with.
    #[arg(long, value_name = "FLAVOR", value_enum, default_value_t = FlavorArg::Ipp, help_heading = "Preprocessing")]
    pub opencv_flavor: FlavorArg,

    /// Refuse images of more than N pixels (width x height), checked in the file header before
    /// decoding (decompression bombs), and for the resized image. The default is 100 megapixels.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_PIXELS, value_parser = clap::value_parser!(u64).range(1..), help_heading = "Preprocessing")]
    pub max_pixels: u64,

    /// How the reference view (whose camera defines the world frame) is chosen when there
    /// are 3 or more views and no known cameras: first, middle, saddle_balanced or
    /// saddle_sim_range.
    #[arg(long, value_name = "STRATEGY", default_value = "saddle_balanced", value_parser = parse_strategy, help_heading = "Cameras")]
    pub ref_view_strategy: RefViewStrategy,

    /// Known cameras, a JSON file: {"views": [{"image": "a.jpg", "world_to_camera": 4x4,
    /// "intrinsics": 3x3}, ...]}. world_to_camera is the OpenCV world-to-camera matrix
    /// (x right, y down, z forward; a 3x4 [R|t] is accepted too), intrinsics the pinhole
    /// matrix [[fx,0,cx],[0,fy,cy],[0,0,1]] in pixels of the original image file. Views are
    /// matched to the input images by "image" (the path as given on the command line, or
    /// its file name) or, when no view names an image, by order. The main-series models are
    /// then pose-conditioned (their camera token comes from these cameras); metric models
    /// use the focal length for metres (see --focal).
    #[arg(long, value_name = "FILE", help_heading = "Cameras")]
    pub poses: Option<PathBuf>,

    /// Ignore known cameras (from COLMAP input or --poses) for pose conditioning and
    /// predict the cameras instead.
    #[arg(long, help_heading = "Cameras")]
    pub no_pose_condition: bool,

    /// Derive camera poses from the ray head (confidence-weighted ray origins and a RANSAC
    /// homography, seeded) instead of the camera decoder.
    #[arg(long, help_heading = "Cameras")]
    pub use_ray_pose: bool,

    /// With known cameras: return the input extrinsics and divide depth by the fitted scale,
    /// so depth is in the input's units (the default; the flag only restates it).
    #[arg(long, overrides_with = "no_align_to_input_ext_scale", help_heading = "Cameras")]
    pub align_to_input_ext_scale: bool,

    /// With known cameras: return the predicted poses, Sim(3)-aligned to the input ones,
    /// instead of the input extrinsics.
    #[arg(long, overrides_with = "align_to_input_ext_scale", help_heading = "Cameras")]
    pub no_align_to_input_ext_scale: bool,

    /// Metric models (da3metric-large) only: the focal length in pixels of the original
    /// images; depth is converted to metres = depth x focal / 300, with the focal rescaled
    /// to the processed resolution like the images. Without it, the focal lengths of known
    /// cameras (--poses, COLMAP) are used; with neither, depth stays in units of
    /// focal/300 metres and is not metric.
    #[arg(long, value_name = "PX", value_parser = parse_focal, help_heading = "Cameras")]
    pub focal: Option<f64>,

    /// Memory budget of the run, e.g. 4GiB, 512MiB, 4G (binary units): on the CPU backends
    /// the process's peak resident memory, on GPUs the device memory. Views that do not fit
    /// one multi-view pass run in overlapping chunks whose cameras are aligned into one pose
    /// frame. Without it the CPU budget is 80 % of the available RAM; on GPUs a chunk that
    /// runs out of memory is split and retried.
    #[arg(long, value_name = "SIZE", value_parser = parse_memory, help_heading = "Memory")]
    pub max_memory: Option<u64>,

    /// Views per pass, instead of the largest that fits the budget. Chunks that would exceed
    /// --max-memory are still split.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..), help_heading = "Memory")]
    pub chunk_size: Option<u64>,

    /// Views shared by consecutive chunks, to align their poses (default: a quarter of the
    /// chunk, 2 to 8).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..), help_heading = "Memory")]
    pub chunk_overlap: Option<u64>,
}

impl CommonArgs {
    /// The preprocessing options given by the flags.
    pub fn options(&self) -> Options {
        Options { process_res: self.process_res, method: self.process_res_method, flavor: self.opencv_flavor.into() }
    }

    /// Whether the GS head runs: `--infer-gs`, or gs_ply among the export formats.
    pub fn infer_gs(&self) -> bool {
        self.infer_gs || self.export_format.0.contains(&ExportFormat::GsPly)
    }

    /// The export formats to write: `--export-format`, plus gs_ply with `--infer-gs`.
    pub fn formats(&self) -> Vec<ExportFormat> {
        let mut formats = self.export_format.0.clone();
        if self.infer_gs && !formats.contains(&ExportFormat::GsPly) {
            formats.push(ExportFormat::GsPly);
        }
        formats
    }

    /// `--export-feat-layers` without repeats, in the order given.
    pub fn feat_layers(&self) -> Vec<usize> {
        let mut layers = Vec::new();
        for &l in &self.export_feat_layers {
            if !layers.contains(&l) {
                layers.push(l);
            }
        }
        layers
    }

    /// The scheduler options given by `--max-memory`, `--chunk-size` and `--chunk-overlap`.
    pub fn schedule(&self) -> da3::schedule::ScheduleOptions {
        da3::schedule::ScheduleOptions {
            max_memory: self.max_memory,
            chunk_size: self.chunk_size.map(|n| n as usize),
            overlap: self.chunk_overlap.map(|n| n as usize),
            // Set per job where the image size is known (`scene.rs`).
            kept_bytes_per_view: 0,
        }
    }

    /// `--align-to-input-ext-scale` (default) or `--no-align-to-input-ext-scale`.
    pub fn align_to_input_ext_scale(&self) -> bool {
        !self.no_align_to_input_ext_scale
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

/// The command-line name of an OpenCV flavor.
pub fn flavor_name(flavor: FlavorArg) -> &'static str {
    match flavor {
        FlavorArg::Ipp => "ipp",
        FlavorArg::Plain => "plain",
    }
}

/// The command-line name of a strategy: `SaddleBalanced` -> `saddle_balanced`.
pub fn strategy_name(strategy: RefViewStrategy) -> String {
    let mut out = String::new();
    for (i, c) in format!("{strategy:?}").chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

fn parse_percentile(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(p) if (0.0..=100.0).contains(&p) => Ok(p),
        _ => Err(format!("`{s}` is not a percentile between 0 and 100")),
    }
}

fn parse_focal(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(f) if f.is_finite() && f > 0.0 => Ok(f),
        _ => Err(format!("`{s}` is not a positive focal length in pixels")),
    }
}

fn parse_memory(s: &str) -> Result<u64, String> {
    da3::schedule::parse_byte_size(s).map_err(|e| e.to_string().trim_start_matches("input: ").to_string())
}

fn parse_strategy(s: &str) -> Result<RefViewStrategy, String> {
    s.parse::<RefViewStrategy>()
}

fn parse_method(s: &str) -> Result<ResizeMethod, String> {
    s.parse::<ResizeMethod>().map_err(|e| e.to_string())
}

fn parse_layer(s: &str) -> Result<usize, String> {
    s.trim().parse::<usize>().map_err(|_| format!("`{s}` is not a block index (a whole number >= 0); give e.g. 0,5,11"))
}

fn parse_process_res(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("`{s}` is not a positive number of pixels")),
    }
}

/// `--precision`: auto, fp32, fp16 or bf16.
fn parse_precision(s: &str) -> Result<da3::Precision, String> {
    s.parse().map_err(|e: da3::Da3Error| e.to_string())
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
        assert_eq!(parse_focal("1000.5"), Ok(1000.5));
        assert!(parse_focal("0").is_err() && parse_focal("-3").is_err() && parse_focal("inf").is_err());
    }

    #[test]
    fn memory_flags_parse() {
        assert_eq!(parse_memory("4GiB"), Ok(4 << 30));
        assert_eq!(parse_memory("512MiB"), Ok(512 << 20));
        assert_eq!(parse_memory("4G"), Ok(4 << 30));
        let e = parse_memory("lots").unwrap_err();
        assert!(e.starts_with("`lots` is not a memory size") && e.contains("4GiB"), "{e}");
    }

    #[test]
    fn precision_flag_parses_modes_and_rejects_others() {
        assert_eq!(parse_precision("bf16"), Ok(da3::Precision::Bf16));
        assert_eq!(parse_precision("auto"), Ok(da3::Precision::Auto));
        let e = parse_precision("fp8").unwrap_err();
        assert!(e.contains("fp8") && e.contains("fp16"), "{e}");
    }

    #[test]
    fn strategy_names_round_trip() {
        for name in ["first", "middle", "saddle_balanced", "saddle_sim_range"] {
            assert_eq!(strategy_name(name.parse().unwrap()), name);
        }
    }
}
