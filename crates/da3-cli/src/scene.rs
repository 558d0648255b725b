//! The pipeline every inference subcommand ends in: a [`Scene`] (image files, optionally
//! with known cameras) is read, predicted as one multi-view scene and written out.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use burn::tensor::backend::Backend;
use da3::preprocess::{Intrinsics, Preprocessed};
use da3::config::HeadKind;
use da3::schedule::memory::format_bytes;
use da3::schedule::{DeviceMemory, Event, RunReport, ScheduleOptions};
use da3::{Da3Config, InputCameras, PredictOptions, Prediction, Views};
use da3_export::atomic::write_bytes_atomic;
use da3_export::ImageRgb8;
use serde_json::{json, Map, Value};

use crate::args::{flavor_name, strategy_name, CommonArgs};
use crate::batch::{check_headers, crop_warning, load_batch, size_summary, skipped_warning, Batch};
use crate::device::{dispatch, BackendJob, DeviceKind};
use crate::exports::{check_formats, check_model_outputs, write_exports, CloudOptions};
use crate::infer::{load_model, resolve_model, ModelSpec};
use crate::output::write_outputs;
use crate::poses::{read_poses, KnownCamera};
use crate::progress;
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

/// Loads the model and predicts on one backend within the memory budget (one pass when the
/// views fit, else aligned chunks), with a spinner during inference.
struct PredictJob<'a> {
    spec: &'a ModelSpec,
    views: &'a Views,
    options: PredictOptions,
    show_progress: bool,
    schedule: ScheduleOptions,
    /// Whether the backend computes in host memory (flex, ndarray): the budget is then the
    /// process's resident memory, bounded by the available RAM.
    host_memory: bool,
    quiet: bool,
}

/// A prediction with the time spent loading the model and predicting.
struct Timed {
    prediction: Prediction,
    report: RunReport,
    load: Duration,
    inference: Duration,
}

impl BackendJob for PredictJob<'_> {
    type Output = Timed;

    fn run<B: Backend>(self, device: B::Device) -> Result<Timed> {
        let start = Instant::now();
        let model = load_model::<B>(self.spec, &device)?;
        let load = start.elapsed();
        let start = Instant::now();
        let (count, h, w) = (self.views.count(), self.views.height(), self.views.width());
        // GPUs: Burn exposes no free-memory query, so the budget is --max-memory alone (see
        // da3::schedule::device); out-of-memory errors that surface split the chunk.
        let memory = if self.host_memory {
            DeviceMemory::host()
        } else {
            DeviceMemory::gpu(None, model.memory_model(h, w).weights, None)
        };
        let spinner = progress::spinner(self.show_progress, &format!("inference on {count} view{}", plural(count)));
        let quiet = self.quiet;
        let mut on_event = |event: &Event| match event {
            Event::Chunk { views, .. } if views.len() < count => {
                spinner.set_message(format!("inference on views {}..{} of {count}", views.start + 1, views.end));
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
        let views = self.views;
        let result = model
            .predict_from_source(count, h, w, |r| views.select(r), &self.options, &self.schedule, &memory, &mut on_event)
            .context("inference failed");
        spinner.finish_and_clear();
        let (prediction, report) = result?;
        Ok(Timed { prediction, report, load, inference: start.elapsed() })
    }
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
fn metric_focals(focal: Option<f64>, pre: &Preprocessed) -> Option<Vec<f64>> {
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
fn apply_metric_scale(pred: &mut Prediction, focals: Option<Vec<f64>>) -> Option<Vec<f64>> {
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

/// The cameras handed to the network: the known cameras of the kept views, with the
/// intrinsics rescaled by the preprocessing (float32, as the reference computes them).
fn input_cameras(cameras: &[KnownCamera], batch: &Batch) -> Option<InputCameras> {
    let world_to_camera = batch.kept.iter().map(|&i| cameras[i].world_to_camera).collect();
    let intrinsics = batch
        .pre
        .info
        .iter()
        .map(|info| info.intrinsics.map(|k| k.to_f32().map(|r| r.map(f64::from))))
        .collect::<Option<Vec<_>>>()?;
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
    let spec = resolve_model(common)?;
    check_formats(&common.formats(), common.process_res_method)?;
    check_focal(common, &spec.config)?;
    check_model_outputs(&spec.config, common.infer_gs(), &common.feat_layers())?;
    Ok(spec)
}

/// Runs the whole pipeline on `scene`: check the input headers (before the model is
/// resolved), then the flags and model, read and preprocess the images (skipping unreadable
/// ones), check the export directory, load the model, predict,
/// convert metric depth, write `results.npz`, the PNGs and the requested exports, and print
/// the summary.
pub fn run_scene(common: &CommonArgs, scene: Scene) -> Result<()> {
    let options = common.options();
    // Bad inputs are reported before the model is resolved (which may download it).
    check_headers(&scene.images, &options, common.max_pixels)?;
    let spec = preflight(common)?;
    let show = progress::enabled(common.quiet);
    let cameras = if common.no_pose_condition { None } else { scene.cameras.as_deref() };

    let start = Instant::now();
    let intrinsics: Option<Vec<Intrinsics>> = cameras.map(|c| c.iter().map(|k| Intrinsics::F64(k.intrinsics)).collect());
    let count = scene.images.len();
    let bar = progress::bar(show && count > 1, count as u64, "decode");
    let batch = load_batch(&scene.images, intrinsics.as_deref(), &options, common.max_pixels, &bar);
    bar.finish_and_clear();
    let batch = batch?;
    let preprocessing = start.elapsed();
    let paths = batch.kept_paths(&scene.images);
    // Skipped inputs change the result, so they are reported even under --quiet.
    if let Some(warning) = skipped_warning(&batch.skipped, count) {
        eprintln!("{warning}");
    }
    if !common.quiet {
        if let Some(warning) = crop_warning(&batch.pre, &paths) {
            eprintln!("{warning}");
        }
    }
    prepare_export_dir(&common.export_dir)?;

    // Mono/metric models have no camera modules: known cameras only give them the focal.
    let has_camera_modules = spec.config.head.kind == HeadKind::DualDpt;
    let predict_options = PredictOptions {
        ref_view_strategy: common.ref_view_strategy,
        cameras: cameras.filter(|_| has_camera_modules).and_then(|c| input_cameras(c, &batch)),
        align_to_input_ext_scale: common.align_to_input_ext_scale(),
        use_ray_pose: common.use_ray_pose,
        export_feat_layers: common.feat_layers(),
        infer_gs: common.infer_gs(),
        ..PredictOptions::default()
    };
    let conditioned = predict_options.cameras.is_some();
    let host_memory = matches!(common.device, DeviceKind::Flex | DeviceKind::Ndarray);
    let job = PredictJob {
        spec: &spec,
        views: &batch.pre.views,
        options: predict_options,
        show_progress: show,
        schedule: common.schedule(),
        host_memory,
        quiet: common.quiet,
    };
    let timed = dispatch(common.device, job)?;
    let mut prediction = timed.prediction;
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

    let images: Vec<ImageRgb8> = batch
        .pre
        .images
        .iter()
        .map(|im| ImageRgb8::new(im.width, im.height, im.pixels.clone()))
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
    let written = write_outputs(dir, &prediction, &paths, &batch.pre, &images, extra)?;
    let cloud = CloudOptions {
        conf_thresh_percentile: common.conf_thresh_percentile,
        num_max_points: common.num_max_points,
        show_cameras: common.show_cameras,
        gs_views_interval: common.gs_views_interval as usize,
    };
    let exported = write_exports(dir, &common.formats(), &prediction, &batch.pre, &images, &paths, cloud)?;

    if !common.quiet {
        let count = batch.pre.views.count();
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
        println!(
            "  preprocess {:>8.3} s  process_res {} {}, opencv {}",
            preprocessing.as_secs_f64(),
            options.process_res,
            options.method,
            flavor_name(common.opencv_flavor),
        );
        println!("  load       {:>8.3} s  {}", timed.load.as_secs_f64(), spec.weights.display());
        println!("  inference  {:>8.3} s", timed.inference.as_secs_f64());
        if let Some(line) = chunk_summary(&timed.report) {
            println!("  chunks     {line}");
        }
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
