//! The tiling scheduler: runs jobs of many views within a memory budget.
//!
//! - [`memory`]: what a pass of S views costs (weights, activations, global attention) for a
//!   model, resolution and precision, calibrated on measured peaks.
//! - [`device`]: what the device offers (system RAM and the process's resident set on the
//!   CPU; caller-supplied numbers for GPUs) and the budget `min(--max-memory, 0.8·available)`.
//! - [`compute`]: what a pass of S views costs in arithmetic per view, and the largest chunk
//!   whose global attention does not dominate it (the cap on chunks of a job that must be
//!   chunked anyway).
//! - [`plan`]: the chunk size, overlap and chunks (pure logic).
//! - [`runner`]: runs the chunks with the next chunk's decoding overlapped, splits chunks
//!   that run out of memory and retries them, and aligns the chunks into one pose frame
//!   ([`stitch`]: rotation from the shared views' relative poses, scale from their depth;
//!   3D Gaussians moved by the same similarity).
//!
//! [`crate::Da3::predict_scheduled`] and [`crate::Da3::predict_from_source`] put it together;
//! a job that fits runs as one multi-view pass, exactly as [`crate::Da3::predict_with`].

pub mod compute;
pub mod device;
pub mod memory;
pub mod plan;
pub mod runner;
pub mod stitch;

use std::ops::Range;
use std::panic::{catch_unwind, AssertUnwindSafe};

use burn::module::Module;
use burn::tensor::backend::Backend;

pub use device::DeviceMemory;
pub use memory::{parse_byte_size, AttentionKind, MemoryModel};
pub use plan::{ChunkLimit, Plan, ScheduleOptions};
pub use runner::{ChunkFailure, Event, RunReport, Split};

use crate::api::{Da3, InputCameras, PredictOptions, Prediction, Views};
use crate::Da3Error;

impl<B: Backend> Da3<B> {
    /// The memory model of this network at `height`×`width` on its backend (f32 weights and
    /// activations; materialized attention scores on `ndarray`, whose attention is Burn's
    /// generic fallback; fused everywhere else), with its heads' chunk of frames
    /// ([`MemoryModel::with_head_frames`]).
    pub fn memory_model(&self, height: usize, width: usize) -> MemoryModel {
        let params = self.model().num_params() + self.metric_branch().map_or(0, |m| m.num_params());
        let attention =
            if B::name(self.device()).contains("ndarray") { AttentionKind::Materialized } else { AttentionKind::Fused };
        MemoryModel::new(self.config(), height, width, params as u64 * 4, attention)
            .with_head_frames(crate::head::frames_per_chunk::<B>())
            .with_kernel_cache(self.conv_filter_cache_bytes())
    }

    /// Bytes that the CPU (flex) backend's 3×3 convolutions keep beside their weights once
    /// they have run: every stride-1 layer's Winograd filter transform, 36 f32 per 9 weights
    /// (`kernels::winograd`; da3-small 24 MiB, da3-base 96 MiB); 0 on other backends.
    pub fn conv_filter_cache_bytes(&self) -> u64 {
        #[cfg(all(feature = "flex", not(target_arch = "wasm32")))]
        if crate::kernels::flex::is_flex::<B>() {
            let mut count = Conv3x3Values::default();
            self.model().visit(&mut count);
            if let Some(metric) = self.metric_branch() {
                metric.visit(&mut count);
            }
            return count.values * crate::kernels::winograd::TRANSFORMED_PER_WEIGHT * 4;
        }
        0
    }

    /// Whether chunks of a job with these options must be aligned into one pose frame: the
    /// model predicts cameras and none are given.
    fn needs_pose_frame(&self, options: &PredictOptions) -> bool {
        self.model().has_cameras() && options.cameras.is_none()
    }

    /// Plans a job of `views` views of `height`×`width` on `device_memory`.
    pub fn plan(
        &self,
        views: usize,
        height: usize,
        width: usize,
        options: &PredictOptions,
        schedule: &ScheduleOptions,
        device_memory: &DeviceMemory,
    ) -> Result<Plan, Da3Error> {
        let model = self
            .memory_model(height, width)
            .with_gaussians(options.infer_gs)
            .with_kept_bytes_per_view(schedule.kept_bytes_per_view);
        plan::plan(&model, device_memory, views, schedule, self.needs_pose_frame(options))
    }

    /// [`Self::predict_with`] within a memory budget: one pass when the job fits, else
    /// overlapping chunks aligned into one pose frame (see [`crate::schedule`]). Every view
    /// is returned once, in input order.
    pub fn predict_scheduled(
        &self,
        views: &Views,
        options: &PredictOptions,
        schedule: &ScheduleOptions,
        device_memory: &DeviceMemory,
    ) -> Result<(Prediction, RunReport), Da3Error> {
        let source = |range: Range<usize>| views.select(range);
        self.predict_from_source(
            views.count(),
            views.height(),
            views.width(),
            source,
            options,
            schedule,
            device_memory,
            &mut |_| {},
        )
    }

    /// [`Self::predict_scheduled`] with views loaded on demand: `source(range)` returns the
    /// normalized views of `range` (all `height`×`width`) and is called on a background
    /// thread for the next chunk while the current one runs. `on_event` hears of every pass
    /// and every out-of-memory split. The weights stay loaded across chunks (they are
    /// `self`'s).
    #[allow(clippy::too_many_arguments)]
    pub fn predict_from_source<S>(
        &self,
        count: usize,
        height: usize,
        width: usize,
        source: S,
        options: &PredictOptions,
        schedule: &ScheduleOptions,
        device_memory: &DeviceMemory,
        on_event: &mut dyn FnMut(&Event),
    ) -> Result<(Prediction, RunReport), Da3Error>
    where
        S: Fn(Range<usize>) -> Result<Views, Da3Error> + Sync,
    {
        let model = self
            .memory_model(height, width)
            .with_gaussians(options.infer_gs)
            .with_kept_bytes_per_view(schedule.kept_bytes_per_view);
        let pose_frame = self.needs_pose_frame(options);
        let plan = plan::plan(&model, device_memory, count, schedule, pose_frame)?;
        if let Some(c) = &options.cameras {
            if c.world_to_camera.len() != count || c.intrinsics.len() != count {
                return Err(Da3Error::Input(format!(
                    "{} extrinsics and {} intrinsics given for {count} views; give one of each per view",
                    c.world_to_camera.len(),
                    c.intrinsics.len()
                )));
            }
        }
        let budget = plan.budget;
        let run_chunk = |range: Range<usize>, views: &Views| -> Result<Prediction, ChunkFailure> {
            // Our own check before launching: a chunk whose estimate exceeds the budget (an
            // explicit --chunk-size, or a retry) is split instead of risking an abort.
            if let Some(b) = budget {
                let need = plan::estimated_peak(&model, device_memory, count, range.len());
                if need > b {
                    return Err(ChunkFailure::OutOfMemory(format!(
                        "{} views per pass need an estimated {}, over the budget of {}",
                        range.len(),
                        memory::format_bytes(need),
                        memory::format_bytes(b)
                    )));
                }
            }
            let mut opts = options.clone();
            if let Some(c) = &options.cameras {
                opts.cameras = Some(InputCameras {
                    world_to_camera: c.world_to_camera[range.clone()].to_vec(),
                    intrinsics: c.intrinsics[range.clone()].to_vec(),
                });
            }
            match catch_unwind(AssertUnwindSafe(|| self.predict_with(views, &opts))) {
                Ok(Ok(p)) => Ok(p),
                Ok(Err(Da3Error::OutOfMemory(m))) => Err(ChunkFailure::OutOfMemory(m)),
                Ok(Err(e)) => Err(ChunkFailure::Failed(e)),
                Err(panic) => {
                    let message = panic_message(panic.as_ref());
                    if is_out_of_memory(&message) {
                        Err(ChunkFailure::OutOfMemory(message))
                    } else {
                        std::panic::resume_unwind(panic)
                    }
                }
            }
        };
        let (mut prediction, mut report) =
            runner::run_chunked(&plan, pose_frame, schedule.overlap, source, run_chunk, on_event)?;
        // One metric factor for the nested model over all chunks, in one frame: the predicted
        // one, or with input cameras the first chunk's (not when the outputs are in the user's
        // units, which the reference's alignment puts them in after the metric scaling).
        let one_frame = pose_frame || (options.cameras.is_some() && !options.align_to_input_ext_scale);
        if one_frame && report.chunks.len() > 1 {
            report.metric_refit = stitch::refit_metric_scale(&mut prediction, options.seed)?;
        }
        Ok((prediction, report))
    }
}

/// The text of a panic payload.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "panic".into())
}

/// Whether a backend's error message reports an allocation failure (wgpu: "Out of Memory",
/// `OutOfMemory`; CUDA: `CUDA_ERROR_OUT_OF_MEMORY`; CubeCL: "out of memory", "Unable to
/// allocate"; wgpu buffer limits: "exceeds the limit", "max_buffer_size").
pub fn is_out_of_memory(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    ["out of memory", "outofmemory", "out_of_memory", "unable to allocate", "allocation failed", "max_buffer_size", "max_storage_buffer_binding_size"]
        .iter()
        .any(|k| m.contains(k))
}

/// Counts the values of the 3×3 convolution weights that run through the Winograd kernel:
/// every rank-4 parameter with a 3×3 kernel except inside the reassembly's stride-2
/// down-projection (field `Reassemble::resize_down2`, im2col; the only strided 3×3 layer).
#[cfg(all(feature = "flex", not(target_arch = "wasm32")))]
#[derive(Default)]
struct Conv3x3Values {
    values: u64,
    /// Depth of the `resize_down2` submodule being visited (0: outside it).
    strided: usize,
}

#[cfg(all(feature = "flex", not(target_arch = "wasm32")))]
impl<B: Backend> burn::module::ModuleVisitor<B> for Conv3x3Values {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        if self.strided > 0 || name == "resize_down2" {
            self.strided += 1;
        }
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.strided = self.strided.saturating_sub(1);
    }

    fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<burn::tensor::Tensor<B, D>>) {
        let dims = param.val().dims();
        if D == 4 && dims[2] == 3 && dims[3] == 3 && self.strided == 0 {
            self.values += dims.iter().product::<usize>() as u64;
        }
    }
}

#[cfg(all(test, feature = "flex", not(target_arch = "wasm32")))]
mod tests {
    use crate::kernels::winograd::CACHED_VALUES;
    use crate::{Da3, Da3Config, PredictOptions, Views};

    /// The scheduler's count of the CPU's Winograd filter cache is what a pass that runs every
    /// head (rays and Gaussians included) actually caches: the dual-DPT, mono-DPT and GS
    /// fixtures, whose stride-2 down-projections must not be counted.
    #[test]
    fn filter_cache_count_matches_what_a_pass_caches() {
        let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        for name in ["tiny", "tiny-mono", "tiny-gs"] {
            let config = std::fs::read_to_string(fixtures.join(format!("{name}.config.json"))).unwrap();
            let config = Da3Config::from_json(&config).unwrap();
            let weights = fixtures.join(format!("{name}.weights.safetensors"));
            let model = Da3::<crate::backends::Flex>::from_file(config, &weights, &Default::default()).unwrap();
            let counted = model.conv_filter_cache_bytes();
            let (s, h, w) = (2, 28, 42);
            let data: Vec<f32> = (0..s * 3 * h * w).map(|i| (i % 17) as f32 / 8.0 - 1.0).collect();
            let views = Views::from_normalized(data, s, h, w).unwrap();
            let rays = model.model().has_cameras();
            let options = PredictOptions { use_ray_pose: rays, infer_gs: name == "tiny-gs", ..Default::default() };
            let before = CACHED_VALUES.with(|c| c.get());
            model.predict_with(&views, &options).unwrap();
            let cached = (CACHED_VALUES.with(|c| c.get()) - before) * 4;
            assert!(counted > 0, "{name}: no 3×3 layers counted");
            assert_eq!(counted, cached, "{name}: counted {counted} B, a pass cached {cached} B");
        }
    }
}
