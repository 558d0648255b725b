//! The pipeline every inference subcommand ends in: a [`Scene`] (image files, optionally
//! with known cameras) is read, predicted as one multi-view scene and written out.

use std::borrow::Borrow;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use burn::tensor::backend::Backend;
use da3::preprocess::{Intrinsics, Options};
use da3::config::HeadKind;
use da3::schedule::memory::format_bytes;
use da3::schedule::{ChunkLimit, DeviceMemory, Event, RunReport, ScheduleOptions};
use da3::{Da3, Da3Config, InputCameras, PredictOptions, Prediction};
use indicatif::ProgressBar;
use da3_export::atomic::write_bytes_atomic;
use da3_export::ImageRgb8;
use serde_json::{json, Map, Value};

use crate::args::{flavor_name, strategy_name, CommonArgs};
use crate::batch::{
    check_headers, crop_warning, no_good_image, size_summary, skipped_warning, Batch, Failures, Headers, Skipped,
};
use crate::device::{dispatch, BackendJob, DeviceKind};
use crate::exports::{check_formats, check_model_outputs, write_exports, CloudOptions};
use crate::infer::{load_model, resolve_model, ModelSpec};
use crate::output::write_outputs;
use crate::poses::{read_poses, KnownCamera};
use crate::progress;
use crate::stream::{LoadHook, ViewLoader};
use crate::UsageError;

/// The input of one run: image files of one scene, optionally with their known cameras.
#[derive(Debug, Clone)]
pub struct Scene {
    /// The subcommand, for the summary (`images`, `colmap`, ...).
    pub command: &'static str,
    /// The image files, in view order.
    pub images: Vec<PathBuf>,
    /// One known camera per image (original-image pixels), for pose conditioning.
    pub cameras: Option<Vec<KnownCamera>>,
    /// Where the cameras came from, for the summary.
    pub camera_source: String,
}

impl Scene {
    /// A scene of `images`, with the cameras of `--poses` when given.
    pub fn from_images(command: &'static str, images: Vec<PathBuf>, common: &CommonArgs) -> Result<Self> {
        let mut scene = Scene { command, images, cameras: None, camera_source: String::new() };
        if let Some(file) = &common.poses {
            scene.cameras = Some(read_poses(file, &scene.images)?);
            scene.camera_source = format!("--poses {}", file.display());
        }
        Ok(scene)
    }
}

/// Loads the model on one backend, then decodes and predicts the scene ([`StreamJob`]).
struct PredictJob<'a> {
    spec: &'a ModelSpec,
    stream: StreamJob<'a>,
}

/// A prediction with the time spent loading the model and predicting.
struct Timed {
    streamed: Streamed,
    load: Duration,
}

impl BackendJob for PredictJob<'_> {
    type Output = Timed;

    fn run<B: Backend>(self, device: B::Device) -> Result<Timed> {
        let spec = self.spec;
        let (streamed, load) = self.stream.run(|| load_model::<B>(spec, &device))?;
        Ok(Timed { streamed, load })
    }
}

/// Decoding and prediction of one scene, with the decoding of later chunks overlapped with
/// inference: the first few views (one parallel round) are decoded before the model is loaded
/// (a single bad image is reported without loading any weights), the views are planned from
/// the headers (the batch crop size is known before decoding), the first chunk (every view,
/// when the job fits in one pass) is decoded in
/// parallel with a progress bar, the export directory is checked, and
/// `Da3::predict_from_source` runs the chunks, decoding the next chunk's new views on a
/// background thread while the current one runs ([`ViewLoader`]).
///
/// Files that fail to decode are skipped with a warning (as long as one good image remains):
/// when the failure is found during inference, the prediction is run again without it
/// (decoded images are kept). The result is the one [`crate::batch::load_batch`] followed by
/// one prediction over all views gives.
pub struct StreamJob<'a> {
    /// Every input file, in input order.
    pub paths: &'a [PathBuf],
    /// Their headers ([`check_headers`]).
    pub headers: Headers,
    /// Per input: the camera matrix in pixels of the file, tracked through preprocessing.
    pub intrinsics: Option<&'a [Intrinsics]>,
    /// Per input: the known camera the network is conditioned on.
    pub cameras: Option<&'a [KnownCamera]>,
    /// The preprocessing options.
    pub options: &'a Options,
    /// `--max-pixels`.
    pub max_pixels: u64,
    /// Prediction options (their `cameras` are filled from `cameras`).
    pub predict: PredictOptions,
    /// `--max-memory`, `--chunk-size`, `--chunk-overlap`.
    pub schedule: ScheduleOptions,
    /// Host bytes per pixel of every view that the command keeps until its outputs are
    /// written ([`KEPT_BYTES_PER_PIXEL`]), counted against a CPU budget.
    pub kept_bytes_per_pixel: u64,
    /// Whether the backend computes in host memory (flex, ndarray): the budget is then the
    /// process's resident memory, bounded by the available RAM.
    pub host_memory: bool,
    /// Whether the backend is CUDA (device 0): its free memory is asked of the driver.
    pub cuda_memory: bool,
    /// The largest single buffer the GPU allows ([`gpu_max_buffer`]): no pass may need a
    /// larger tensor.
    pub gpu_max_buffer: Option<u64>,
    /// Where outputs go: checked (created, probed) once the first images are decoded.
    pub export_dir: &'a Path,
    /// Draw progress bars.
    pub show_progress: bool,
    /// `--quiet`: no warnings except skipped inputs.
    pub quiet: bool,
    /// Called at the start of each load (see [`crate::stream::LoadHook`]).
    pub hook: Option<LoadHook<'a>>,
    /// Called with each chunk's views just before its inference starts (tests pace and
    /// observe the overlap with it).
    pub chunk_hook: Option<LoadHook<'a>>,
}

/// Host bytes per pixel of each view that the command holds beyond the returned prediction:
/// the processed 8-bit image through the run (`Preprocessed::images`, 3). Writing the
/// outputs at the end adds no copy of the scene: the images are moved into the writers, the
/// `npz` export maps and rounds its arrays as it writes them, and the point-cloud exports
/// stream over the pixels (`da3_export::geometry::for_each_point`). What writing does hold
/// is one view's buffers and the `--num-max-points` cloud (under 50 MB at the default
/// million points), which reuse the memory the last pass freed.
pub const KEPT_BYTES_PER_PIXEL: u64 = 3;

/// What [`StreamJob::run`] produced.
pub struct Streamed {
    /// Depth, confidence and cameras of the kept views.
    pub prediction: Prediction,
    /// How the scheduler ran.
    pub report: RunReport,
    /// The preprocessed views, the kept inputs and the skipped ones.
    pub batch: Batch,
    /// Whether the network was conditioned on known cameras.
    pub conditioned: bool,
    /// Time spent decoding before inference started (the first chunk).
    pub decode: Duration,
    /// Time from the start of inference to the end (later chunks' decoding overlapped).
    pub inference: Duration,
}

/// Free device memory of a CUDA job (`cuda`: the driver's count, now); `None` elsewhere.
/// The largest single buffer the `kind` backend allows, where it is limited and known: on
/// wgpu the adapter's storage-binding limit ([`da3::schedule::device::wgpu_max_buffer`]);
/// `None` elsewhere, and where the device cannot start (the load reports that).
pub fn gpu_max_buffer(kind: DeviceKind) -> Option<u64> {
    #[cfg(feature = "wgpu")]
    if kind == DeviceKind::Wgpu {
        let device = burn::backend::wgpu::WgpuDevice::default();
        return std::panic::catch_unwind(|| da3::schedule::device::wgpu_max_buffer(&device)).ok();
    }
    let _ = kind;
    None
}

pub(crate) fn gpu_free_memory(cuda: bool) -> Option<u64> {
    #[cfg(feature = "cuda")]
    if cuda {
        return da3::schedule::device::cuda_memory(0).map(|(free, _total)| free);
    }
    let _ = cuda;
    None
}

impl StreamJob<'_> {
    /// Decodes and predicts with the model `load` gives, loaded once the first views decoded
    /// (see [`StreamJob`]). Returns the result and the time `load` took.
    pub fn run<B: Backend, M: Borrow<Da3<B>>>(self, load: impl FnOnce() -> Result<M>) -> Result<(Streamed, Duration)> {
        let mut load = Some(load);
        let mut loaded: Option<M> = None;
        let mut load_time = Duration::ZERO;
        let StreamJob { paths, headers, intrinsics, cameras, options, max_pixels, predict, schedule, .. } = self;
        let (quiet, show) = (self.quiet, self.show_progress);
        let mut loader = ViewLoader::new(paths, headers.readable, intrinsics, options, max_pixels);
        if let Some(hook) = self.hook {
            loader = loader.with_hook(hook);
        }
        let mut skipped = headers.failures;
        let (mut decode, mut warned, mut dir_ready) = (Duration::ZERO, false, false);
        loop {
            let count = loader.count();
            let Some((w, h)) = loader.size() else {
                skipped.sort_by_key(|(i, _)| *i);
                return Err(no_good_image(paths, skipped));
            };
            if loaded.is_none() {
                // Before the weights: one parallel round of decoding, so that a bad image
                // alone is reported without loading the model.
                let start = Instant::now();
                let head = loader.load(0..count.min(rayon::current_num_threads().max(1)));
                decode += start.elapsed();
                if !decoded_or_skipped(head, &mut loader, &mut skipped)? {
                    continue;
                }
                let start = Instant::now();
                let load = load.take().ok_or_else(|| anyhow::anyhow!("internal: model loaded twice"))?;
                loaded = Some(load()?);
                load_time = start.elapsed();
            }
            let model: &Da3<B> = loaded.as_ref().ok_or_else(|| anyhow::anyhow!("internal: no model"))?.borrow();
            let mut opts = predict.clone();
            if let Some(c) = cameras {
                opts.cameras = input_cameras(c, &loader);
            }
            // GPUs: CUDA's free memory comes from the driver; wgpu has no free-memory query, so
            // its budget is --max-memory alone, with the adapter's single-buffer limit capping
            // each pass's largest tensor (see da3::schedule::device). Out-of-memory
            // errors that surface split the chunk either way.
            let memory = if self.host_memory {
                DeviceMemory::host()
            } else {
                DeviceMemory::gpu(gpu_free_memory(self.cuda_memory), model.memory_model(h, w).weights, self.gpu_max_buffer)
            };
            let kept_bytes_per_view = self.kept_bytes_per_pixel * (h * w) as u64;
            let schedule = ScheduleOptions { kept_bytes_per_view, ..schedule.clone() };
            let plan = model.plan(count, h, w, &opts, &schedule, &memory).context("inference failed")?;
            let first = plan.chunks.first().cloned().unwrap_or(0..count);

            let start = Instant::now();
            let bar = progress::bar(show && first.len() > 1, first.len() as u64, "decode");
            loader.set_progress(bar.clone());
            let loaded = loader.load(first);
            bar.finish_and_clear();
            loader.set_progress(ProgressBar::hidden());
            decode += start.elapsed();
            if !decoded_or_skipped(loaded, &mut loader, &mut skipped)? {
                continue;
            }
            if !warned {
                warned = true;
                let kept: Vec<PathBuf> = loader.inputs().iter().map(|&i| paths[i].clone()).collect();
                // Skipped inputs change the result, so they are reported even under --quiet.
                if let Some(warning) = skipped_warning(&skipped_list(paths, &mut skipped), paths.len()) {
                    eprintln!("{warning}");
                }
                if !quiet {
                    if let Some(warning) = crop_warning(&loader.plans(), &kept) {
                        eprintln!("{warning}");
                    }
                }
            }
            if !dir_ready {
                prepare_export_dir(self.export_dir)?;
                dir_ready = true;
            }

            let start = Instant::now();
            let spinner = progress::spinner(show, &format!("inference on {count} view{}", plural(count)));
            let chunk_hook = self.chunk_hook;
            let mut on_event = |event: &Event| match event {
                Event::Chunk { views, .. } => {
                    if let Some(hook) = chunk_hook {
                        hook(views.clone());
                    }
                    if views.len() < count {
                        spinner.set_message(format!("inference on views {}..{} of {count}", views.start + 1, views.end));
                    }
                }
                Event::Split(split) if !quiet => spinner.suspend(|| {
                    eprintln!(
                        "warning: views {}..{} ran out of memory ({}); retrying in chunks of {}",
                        split.chunk.start + 1,
                        split.chunk.end,
                        split.reason,
                        split.new_chunk_size
                    )
                }),
                _ => {}
            };
            let source = |range| loader.load(range);
            let result = model.predict_from_source(count, h, w, source, &opts, &schedule, &memory, &mut on_event);
            spinner.finish_and_clear();
            let failed = loader.take_failures();
            if !failed.is_empty() {
                // Found while a later chunk was decoded: run again without those files.
                for (i, e) in &failed {
                    eprintln!(
                        "warning: skipping input {} that could not be read ({e:#}); predicting the other views again",
                        paths[*i].display()
                    );
                }
                skipped.extend(failed);
                continue;
            }
            let (prediction, report) = result.context("inference failed")?;
            let inference = start.elapsed();
            let kept = loader.inputs();
            let pre = loader.into_processed()?;
            let skipped = skipped_list(paths, &mut skipped);
            let conditioned = opts.cameras.is_some();
            let batch = Batch { pre, kept, skipped };
            return Ok((Streamed { prediction, report, batch, conditioned, decode, inference }, load_time));
        }
    }
}

/// The outcome of decoding a range of views: `Ok(true)` when it decoded; `Ok(false)` when
/// some files failed to decode, which are then moved from `loader` into `skipped` (the caller
/// starts over without them); the error itself when it was not a file's (nothing to skip).
fn decoded_or_skipped<T>(
    result: std::result::Result<T, da3::Da3Error>,
    loader: &mut ViewLoader<'_>,
    skipped: &mut Failures,
) -> Result<bool> {
    let Err(e) = result else { return Ok(true) };
    let failed = loader.take_failures();
    if failed.is_empty() {
        return Err(e.into());
    }
    skipped.extend(failed);
    Ok(false)
}

/// The skipped inputs in input order, as [`Skipped`] records (`failures` is sorted).
fn skipped_list(paths: &[PathBuf], failures: &mut Failures) -> Vec<Skipped> {
    failures.sort_by_key(|(i, _)| *i);
    failures.iter().map(|(i, e)| Skipped { path: paths[*i].clone(), reason: format!("{e:#}") }).collect()
}

/// The summary line of a chunked run: chunks, their size and overlap, the budget, splits.
fn chunk_summary(report: &RunReport) -> Option<String> {
    let plan = &report.plan;
    if plan.is_single_pass() && report.splits.is_empty() {
        return None;
    }
    let shared = report.chunks.windows(2).map(|w| w[0].end.saturating_sub(w[1].start)).min().unwrap_or(0);
    let mut line = format!(
        "{} chunks of up to {} views ({} pass{}), consecutive chunks sharing at least {shared}",
        report.chunks.len(),
        report.chunks.iter().map(|c| c.len()).max().unwrap_or(0),
        report.passes,
        if report.passes == 1 { "" } else { "es" },
    );
    if report.alignments.iter().any(Option::is_some) {
        line += ", aligned into one pose frame";
    }
    if let Some(b) = plan.budget {
        line += &format!("; budget {}", format_bytes(b));
    }
    if plan.limit == ChunkLimit::Compute {
        line += &format!(
            "; chunks capped at {} views, where global attention would cost more than the rest of a pass \
             (--chunk-size overrides)",
            plan.chunk_size
        );
    }
    if !report.splits.is_empty() {
        line += &format!("; {} out-of-memory split{}", report.splits.len(), plural(report.splits.len()));
    }
    Some(line)
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// Placeholder job used only to get [`dispatch`]'s "not compiled in" error.
struct NoJob;

impl BackendJob for NoJob {
    type Output = ();
    fn run<B: Backend>(self, _device: B::Device) -> Result<()> {
        Ok(())
    }
}

/// Refuses `--focal` for models whose depth is not metric up to the focal length.
fn check_focal(common: &CommonArgs, config: &Da3Config) -> Result<()> {
    if common.focal.is_some() && !config.metric {
        return Err(UsageError(format!(
            "--focal applies to metric models (da3metric-large) only; model {} predicts relative depth",
            config.name
        ))
        .into());
    }
    Ok(())
}

/// Creates the export directory and checks that a file can be written in it, before the
/// (slow) model load; the error says what to do.
pub fn prepare_export_dir(dir: &Path) -> Result<()> {
    let advice = || {
        format!(
            "cannot write to the export directory {}; choose another --export-dir or make it writable",
            dir.display()
        )
    };
    std::fs::create_dir_all(dir).with_context(advice)?;
    let probe = dir.join(".da3-write-test");
    write_bytes_atomic(&probe, b"").with_context(advice)?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// The focal length (pixels of the processed image) of each view of a metric model: from
/// `--focal` (original pixels, scaled like the image) or the known intrinsics, else `None`.
pub(crate) fn metric_focals(focal: Option<f64>, pre: &crate::batch::Processed) -> Option<Vec<f64>> {
    match focal {
        Some(f) => Some(
            pre.info
                .iter()
                .map(|info| {
                    let (sx, sy) = info.scale();
                    f * (sx + sy) / 2.0
                })
                .collect(),
        ),
        None => pre.info.iter().map(|info| info.intrinsics.map(|k| (k.to_f64()[0][0] + k.to_f64()[1][1]) / 2.0)).collect(),
    }
}

/// Converts a metric model's depth to metres (`depth * focal / 300` per view) when the
/// focal lengths are known, and sets `is_metric` accordingly. Returns the focal lengths used.
pub(crate) fn apply_metric_scale(pred: &mut Prediction, focals: Option<Vec<f64>>) -> Option<Vec<f64>> {
    let Some(focals) = focals else {
        pred.is_metric = false;
        return None;
    };
    let n = pred.height * pred.width;
    for (i, f) in focals.iter().enumerate() {
        let scale = da3::sky::metric_scale(*f) as f32;
        pred.depth[i * n..(i + 1) * n].iter_mut().for_each(|d| *d *= scale);
    }
    pred.is_metric = true;
    Some(focals)
}

/// The cameras handed to the network: the known cameras of the loader's views, with the
/// intrinsics rescaled by the preprocessing (float32, as the reference computes them).
fn input_cameras(cameras: &[KnownCamera], loader: &ViewLoader<'_>) -> Option<InputCameras> {
    let world_to_camera = loader.inputs().iter().map(|&i| cameras[i].world_to_camera).collect();
    let intrinsics =
        loader.processed_intrinsics()?.iter().map(|k| k.to_f32().map(|r| r.map(f64::from))).collect();
    Some(InputCameras { world_to_camera, intrinsics })
}

/// The checks that need no input file: the backend is compiled in, the model and weights
/// resolve, the flags go together. Commands that do slow work before [`run_scene`] (frame
/// extraction) call it first.
pub fn preflight(common: &CommonArgs) -> Result<ModelSpec> {
    if !common.device.is_compiled() {
        // Reported by dispatch with the feature to enable; fail before any slow work.
        dispatch(common.device, NoJob)?;
    }
    check_formats(&common.formats(), common.process_res_method)?;
    // A Hub preset's architecture is known statically: refuse flags it cannot serve
    // (--infer-gs without a GS head, feature layers past its depth, --focal on a relative
    // model) before the download.
    let known = crate::hub_cmd::known_preset_config(
        common.source.model.as_deref(),
        common.source.weights.as_deref(),
        common.source.model_dir.as_deref(),
    );
    if let Some(config) = &known {
        check_model_config(common, config)?;
    }
    let spec = resolve_model(common)?;
    check_model_config(common, &spec.config)?;
    Ok(spec)
}

/// The flag checks that depend on the model: `--focal`, `--infer-gs`, `--export-feat-layers`.
fn check_model_config(common: &CommonArgs, config: &Da3Config) -> Result<()> {
    check_focal(common, config)?;
    check_model_outputs(config, common.infer_gs(), &common.feat_layers())
}

/// Runs the whole pipeline on `scene`: check the input headers (before the model is
/// resolved), then the flags and model; load the model, decode and preprocess the images
/// (skipping unreadable ones), check the export directory and predict, with later chunks
/// decoded during inference ([`StreamJob`]); convert metric depth, write `results.npz`, the
/// PNGs and the requested exports, and print the summary.
pub fn run_scene(common: &CommonArgs, scene: Scene) -> Result<()> {
    let options = common.options();
    // Bad inputs are reported before the model is resolved (which may download it).
    let headers = check_headers(&scene.images, &options, common.max_pixels)?;
    let spec = preflight(common)?;
    let show = progress::enabled(common.quiet);
    let cameras = if common.no_pose_condition { None } else { scene.cameras.as_deref() };
    let intrinsics: Option<Vec<Intrinsics>> = cameras.map(|c| c.iter().map(|k| Intrinsics::F64(k.intrinsics)).collect());

    // Mono/metric models have no camera modules: known cameras only give them the focal.
    let has_camera_modules = spec.config.head.kind == HeadKind::DualDpt;
    let predict = PredictOptions {
        ref_view_strategy: common.ref_view_strategy,
        align_to_input_ext_scale: common.align_to_input_ext_scale(),
        use_ray_pose: common.use_ray_pose,
        export_feat_layers: common.feat_layers(),
        infer_gs: common.infer_gs(),
        ..PredictOptions::default()
    };
    let stream = StreamJob {
        paths: &scene.images,
        headers,
        intrinsics: intrinsics.as_deref(),
        cameras: cameras.filter(|_| has_camera_modules),
        options: &options,
        max_pixels: common.max_pixels,
        predict,
        schedule: common.schedule(),
        kept_bytes_per_pixel: KEPT_BYTES_PER_PIXEL,
        host_memory: matches!(common.device, DeviceKind::Flex | DeviceKind::Ndarray),
        cuda_memory: common.device == DeviceKind::Cuda,
        gpu_max_buffer: gpu_max_buffer(common.device),
        export_dir: &common.export_dir,
        show_progress: show,
        quiet: common.quiet,
        hook: None,
        chunk_hook: None,
    };
    let timed = dispatch(common.device, PredictJob { spec: &spec, stream })?;
    let Streamed { mut prediction, report, mut batch, conditioned, decode, inference } = timed.streamed;
    let paths = batch.kept_paths(&scene.images);
    let focals = if spec.config.metric {
        let focals = apply_metric_scale(&mut prediction, metric_focals(common.focal, &batch.pre));
        if focals.is_none() && !common.quiet {
            eprintln!(
                "warning: {} is a metric model but no focal length is known, so depth is in units of focal/300 metres; \
                 pass --focal PX (or --poses) to get metres",
                spec.config.name
            );
        }
        focals
    } else {
        None
    };

    // Moved, not copied: nothing reads `batch.pre.images` after this.
    let images: Vec<ImageRgb8> = std::mem::take(&mut batch.pre.images)
        .into_iter()
        .map(|im| ImageRgb8::new(im.width, im.height, im.pixels))
        .collect::<Result<_, _>>()
        .context("internal error: processed image of the wrong size")?;
    let mut extra = Map::new();
    extra.insert("is_metric".into(), Value::Bool(prediction.is_metric));
    if let Some(f) = &focals {
        extra.insert("metric_focal_px".into(), json!(f));
    }
    let skipped: Vec<Value> =
        batch.skipped.iter().map(|s| json!({"image": s.path.display().to_string(), "reason": s.reason})).collect();
    extra.insert("skipped".into(), Value::Array(skipped));
    let dir = &common.export_dir;
    let cloud = CloudOptions {
        conf_thresh_percentile: common.conf_thresh_percentile,
        num_max_points: common.num_max_points,
        show_cameras: common.show_cameras,
        gs_views_interval: common.gs_views_interval as usize,
    };
    // The default outputs (streamed view by view) and the exports write different files:
    // concurrently, the exports' point clouds on this thread (see `write_exports` for why).
    let writing = Instant::now();
    let spinner = progress::spinner(show, "writing outputs");
    let (written, exported) = std::thread::scope(|scope| {
        let written = scope.spawn(|| write_outputs(dir, &prediction, &paths, &batch.pre, &images, extra));
        let exported = write_exports(dir, &common.formats(), &prediction, &batch.pre, &images, &paths, cloud);
        (written.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)), exported)
    });
    spinner.finish_and_clear();
    let (written, exported) = (written?, exported?);
    let writing = writing.elapsed();

    if !common.quiet {
        let count = batch.pre.info.len();
        println!(
            "da3 {}: {count} view{}, {}, model {} ({}), device {}, reference view {}",
            scene.command,
            plural(count),
            size_summary(&batch.pre),
            spec.config.name,
            spec.config_source,
            common.device,
            strategy_name(common.ref_view_strategy),
        );
        if !batch.skipped.is_empty() {
            println!("  skipped    {} input{} (listed above)", batch.skipped.len(), plural(batch.skipped.len()));
        }
        if conditioned {
            println!("  cameras    pose-conditioned on {count} known cameras ({})", scene.camera_source);
        }
        if let Some(f) = &focals {
            let (lo, hi) = f.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(*v), b.max(*v)));
            println!("  depth      metres (focal {lo:.1}..{hi:.1} px at the processed size)");
        }
        let overlapped = if report.plan.is_single_pass() { "" } else { " (first chunk; the others during inference)" };
        println!(
            "  preprocess {:>8.3} s  process_res {} {}, opencv {}{overlapped}",
            decode.as_secs_f64(),
            options.process_res,
            options.method,
            flavor_name(common.opencv_flavor),
        );
        println!("  load       {:>8.3} s  {}", timed.load.as_secs_f64(), spec.weights.display());
        println!("  inference  {:>8.3} s", inference.as_secs_f64());
        if let Some(line) = chunk_summary(&report) {
            println!("  chunks     {line}");
        }
        let files = 2 + written.depth_pngs.len() + written.processed_pngs.len() + exported.len();
        println!("  write      {:>8.3} s  {files} files", writing.as_secs_f64());
        println!("  wrote      {}", written.npz.display());
        let pngs = written.depth_pngs.iter().zip(&written.processed_pngs).flat_map(|(d, p)| [d, p]);
        for path in pngs.chain([&written.ranges]).chain(&exported) {
            println!("             {}", path.display());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_dir_under_a_file_is_refused_with_advice() {
        let dir = std::env::temp_dir().join(format!("da3-scene-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("file");
        std::fs::write(&file, b"x").unwrap();
        let e = format!("{:#}", prepare_export_dir(&file.join("out")).unwrap_err());
        assert!(e.contains("file/out") && e.contains("--export-dir"), "{e}");
        prepare_export_dir(&dir.join("ok")).unwrap();
        assert_eq!(std::fs::read_dir(dir.join("ok")).unwrap().count(), 0, "the probe is removed");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
