//! How much memory a pass of S views needs: an analytic count of the largest live tensors of
//! the backbone and the DPT head, scaled by a factor calibrated against the measured peak
//! resident memory of the `flex` backend (see [`ACTIVATION_CALIBRATION`]).
//!
//! On GPUs the same count is used with the heads in 8-frame chunks. Checked on wgpu without a
//! GPU (`cargo run -p da3 --features wgpu --example calibrate_gpu_memory`, lavapipe, whose
//! CubeCL pools are the code every wgpu adapter runs, with 128 MiB pages at most; da3-small,
//! 2026-11-24). Live tensors, sampled from CubeCL's pool during the pass, peaked at 0.10–0.25
//! of the planned activations. But what the device must provide is the pool's reservation
//! (whole pages, and what the first pass left reserved: its freed pages and the
//! per-resolution size caches; the measuring build had no autotune), and against weights +
//! plan that was:
//!
//! | size | S=1 | S=2 | S=4 |
//! |---|---|---|---|
//! | 280x280, after a warm-up pass | 0.87 (192 MiB) | 1.20 (352) | 0.79 (352) |
//! | 280x280, first pass | 0.87 (192) | 1.09 (320) | 0.79 (352) |
//! | 378x504, after a warm-up pass | 1.10 (360) | 0.76 (384) | 0.63 (544) |
//!
//! So at one or two views a budget set to the whole device can be short by up to a fifth of
//! a small job (page granularity: the reservation moves in 32–128 MiB steps here), and the
//! scheduler's out-of-memory recovery (split and retry) is what covers it. Not yet measured
//! on a real GPU, whose pages are larger (a quarter of a Vulkan heap at most); the GPU
//! session's `memory` step runs this example there.

use super::compute::ComputeModel;
use crate::config::{Da3Config, HeadKind, PATCH_SIZE};
use crate::Da3Error;

/// How the backend computes attention, which decides whether the global attention over all
/// views' tokens costs memory quadratic in S.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttentionKind {
    /// Flash-style / online-softmax attention that never holds the T×T score matrix: Burn's
    /// `attention` on `flex` (tiled loop), `wgpu` and `cuda` (fused kernel).
    Fused,
    /// The score matrix `[heads, T, T]` is materialized (Burn's generic fallback, e.g. on
    /// `ndarray`): global attention then costs `heads · (S·N)²` floats.
    Materialized,
}

/// Multiplier on the analytic activation count so that it bounds the measured peak.
///
/// Measured with `cargo run -p da3 --example calibrate_memory` (flex backend, f32, one child
/// process per case, 2-core Xeon, 2026-11-24): peak resident memory growth during
/// `predict_with` (`/proc/self/status` VmHWM after resetting it through
/// `/proc/self/clear_refs`, minus VmRSS before), divided by the planned bytes of the pass
/// ([`MemoryModel::activation_bytes`]: this factor × the analytic count of
/// [`MemoryModel::activation_values`] with the heads one frame at a time, plus the Winograd
/// filter cache and [`PASS_OVERHEAD_BYTES`]):
///
/// | model | size | S=1 | S=2 | S=4 | S=8 | S=16 |
/// |---|---|---|---|---|---|---|
/// | tiny (D=32, F=16) | 140x140 | 0.40 | 0.42 | 0.46 | 0.50 | — |
/// | tiny | 280x518 | 0.55 | 0.55 | 0.52 | 0.51 | — |
/// | da3-small | 140x140 | 0.54 | 0.56 | 0.59 | 0.66 | 0.69 |
/// | da3-small | 280x280 | 0.54 | 0.62 | 0.70 | 0.64 | 0.81 |
/// | da3-small | 378x504 | 0.54 | 0.63 | 0.65 | 0.71 | 0.85 |
/// | da3-base | 280x280 | 0.57 | — | 0.66 | — | 0.71 |
/// | da3-base | 378x504 | 0.56 | — | 0.69 | — | 0.80 |
/// | da3mono-large | 280x280 | 0.75 | — | 0.84 | — | 0.70 |
/// | da3mono-large | 378x504 | 0.65 | — | 0.71 | — | 0.57 |
///
/// (The tiny and da3-small rows were measured in a run planned with a factor of 1.0 and are
/// recomputed for 1.15; da3-small at S=16 measured 212.5 MiB at 280x280 and 491.1 MiB at
/// 378x504, and at S=32 116.5, 400.9 and 967.1 MiB at the three sizes: 0.76, 0.83, 0.87 of
/// the plan; with the `da3` command's malloc settings, `da3-cli`'s `alloc.rs`, set through
/// `GLIBC_TUNABLES`: 0.59–0.85 at 280x280 and 378x504, 1–16 views.) At many views the
/// backbone's count decides, and the measured growth per view was up to 1.05× it (da3-small
/// 16 → 32 views: 3.1 MiB per view at 140x140, 11.8 at 280x280, 29.7 at 378x504); 1.15 keeps
/// ≥ 10 % above that. At few views the head's count
/// decides, which holds all of one frame's maps live together and so over-estimates.
///
/// Before the heads ran one frame at a time on the CPU (and before the filter cache and the
/// per-view inputs and outputs were counted), the head was counted for every view: a factor
/// of 1.0 then over-estimated 1.6–4.4× at S > 1, and 32 views of the tiny model under a
/// 160 MiB budget ran in 31 chunks peaking at 89 MiB; now in 10 peaking at 116 MiB
/// (`tests/schedule.rs`, `peak_memory_stays_under_max_memory`).
pub const ACTIVATION_CALIBRATION: f64 = 1.15;

/// Fixed bytes a pass needs beyond the per-view activations (kernel scratch, thread stacks,
/// the allocator's arenas). Linear fits of the first measurements (2026-11-22) intercepted at
/// 2–3 MiB; 16 MiB leaves room for backends and machines not measured.
pub const PASS_OVERHEAD_BYTES: u64 = 16 << 20;

/// Values per pixel of one Gaussian (means 3, scales 3, rotation 4, SH 3·9, opacity 1), and
/// of the GS head's raw output (37 channels and the density).
const GAUSSIAN_VALUES: u64 = 38;

/// One view's (or one head frame's) share of a pass, in values (see
/// [`MemoryModel::per_view_values`]).
struct PassValues {
    /// The backbone's peak per view.
    backbone: u64,
    /// The head's maps per frame of a head chunk.
    head: u64,
    /// The stored backbone outputs per view, live until the heads finish.
    features: u64,
    /// Per view, live while the heads run: the input and the heads' outputs.
    outputs: u64,
}

/// The memory needs of one model at one resolution and precision.
#[derive(Debug, Clone, PartialEq)]
pub struct MemoryModel {
    /// Bytes of the weights once loaded (parameters × dtype size).
    pub weights: u64,
    /// Bytes of one value (4 for f32, 2 for f16/bf16).
    pub dtype_bytes: u64,
    /// Image height H and width W in pixels (multiples of 14).
    pub height: usize,
    /// See `height`.
    pub width: usize,
    /// Token width D, heads, blocks' FFN width, head feature widths.
    embed_dim: usize,
    num_heads: usize,
    ffn_hidden: usize,
    out_dim: usize,
    features: usize,
    out_channels: [usize; 4],
    dual_head: bool,
    /// Whether the GS head runs (counted in the activations).
    gs_head: bool,
    /// Whether the job returns 3D Gaussians (host arrays per view; see [`Self::with_gaussians`]).
    gaussians: bool,
    /// Whether a second network (the nested model's metric branch) runs on the same views.
    branches: u64,
    /// Frames whose head maps are live together (the head's chunk, see
    /// [`Self::with_head_frames`]); `None`: every view of the pass.
    head_frames: Option<usize>,
    /// Host bytes per view the caller keeps (see [`Self::with_kept_bytes_per_view`]).
    kept_bytes_per_view: u64,
    /// Bytes the backend's kernels cache per model on its first pass and keep (see
    /// [`Self::with_kernel_cache`]).
    kernel_cache: u64,
    /// How attention is computed.
    pub attention: AttentionKind,
    /// Views per pass beyond which the global attention costs more than the rest of the pass
    /// ([`ComputeModel::balanced_views`]): the compute cap on chunks of jobs that must be
    /// chunked anyway.
    pub balanced_views: usize,
}

impl MemoryModel {
    /// The model of `config` at `height`×`width` with `weights` bytes of parameters.
    pub fn new(config: &Da3Config, height: usize, width: usize, weights: u64, attention: AttentionKind) -> Self {
        let b = &config.backbone;
        Self {
            weights,
            dtype_bytes: 4,
            height,
            width,
            embed_dim: b.embed_dim,
            num_heads: b.num_heads,
            ffn_hidden: b.ffn_hidden(),
            out_dim: b.out_dim(),
            features: config.head.features,
            out_channels: config.head.out_channels,
            dual_head: config.head.kind == HeadKind::DualDpt,
            gs_head: config.gs_head,
            gaussians: false,
            branches: 1 + u64::from(config.metric_branch.is_some()),
            head_frames: None,
            kernel_cache: 0,
            kept_bytes_per_view: 0,
            attention,
            balanced_views: ComputeModel::new(config, height, width).balanced_views(),
        }
    }

    /// The model of a job that does (`infer_gs`) or does not run the GS head. [`Self::new`]
    /// counts the GS head of a model that has one, to be safe; with `false` it is dropped (the
    /// head does not run), with `true` (on a model with a GS head) the host arrays of the
    /// Gaussians are added: 38 f32 per pixel returned for every view (means 3, scales 3,
    /// rotations 4, SH 27, opacity 1) and the head's raw output (37 + density, f32) copied to
    /// the host for the views of the running pass.
    pub fn with_gaussians(mut self, infer_gs: bool) -> Self {
        self.gs_head &= infer_gs;
        self.gaussians = self.gs_head;
        self
    }

    /// The model of a backend whose heads run `frames` frames at a time (`head::frames_per_chunk`:
    /// one on flex, 8 on GPUs): a pass of S views then holds the head maps of min(S, frames)
    /// frames, not of all S. Without it (as from [`Self::new`]) every view's are counted.
    pub fn with_head_frames(mut self, frames: usize) -> Self {
        self.head_frames = Some(frames.max(1));
        self
    }

    /// The model of a backend whose kernels keep `bytes` of per-model tables once the first
    /// pass has run (the CPU's Winograd filter transforms): counted in every pass's
    /// activations, since a job's first pass creates them.
    pub fn with_kernel_cache(mut self, bytes: u64) -> Self {
        self.kernel_cache = bytes;
        self
    }

    /// The model of a job whose caller keeps `bytes` of host memory per view until the job
    /// ends ([`crate::schedule::ScheduleOptions::kept_bytes_per_view`]): counted with every
    /// view's returned prediction ([`Self::output_bytes_per_view`]).
    pub fn with_kept_bytes_per_view(mut self, bytes: u64) -> Self {
        self.kept_bytes_per_view = bytes;
        self
    }

    /// Tokens per view N: the patches plus the class and camera tokens.
    pub fn tokens_per_view(&self) -> usize {
        (self.height / PATCH_SIZE) * (self.width / PATCH_SIZE) + 2
    }

    /// Peak activation bytes of one view, not counting the global attention scores.
    ///
    /// Counted in values, then × dtype size:
    /// - backbone: the residual stream and the local copy kept for `cat_token` (2·N·D), the
    ///   largest block temporary (attention: norm, qkv, q/k/v permuted copies, output and
    ///   projection ≈ 9·N·D; FFN: input + hidden + activated hidden ≈ N·(D + 2·hidden)), and
    ///   the four stored outputs (4·N·out_dim), and the pass's input (3·H·W);
    /// - head: the reassembled levels at 4×, 2×, 1×, ½× the patch grid (their projections and
    ///   the F-wide copies), three F-wide tensors at 8× the grid (fusion with its residual
    ///   units), `output_conv1` (F/2 at 8×) and at full resolution the upsampled F/2 map, the
    ///   32-wide hidden map and the outputs (4 maps); the DualDPT aux branch adds
    ///   (F + 32 + 7) maps at 8× the grid (counted even though it runs only with
    ///   `use_ray_pose`: [`ACTIVATION_CALIBRATION`] was fitted with it counted, and an
    ///   over-estimate only makes chunks smaller); the GS head another full-resolution set.
    ///   The head is counted for every view here; [`Self::activation_values`] counts it for one
    ///   head chunk's frames when the model knows them ([`Self::with_head_frames`]).
    pub fn per_view_values(&self) -> u64 {
        let p = self.value_parts();
        p.backbone.max(p.head + p.features)
    }

    /// Values of the activations of one pass over `views` views, weights and materialized
    /// scores excluded: `views · per_view_values`; with [`Self::with_head_frames`] the larger
    /// of the backbone's peak over every view and, while the heads run, every view's stored
    /// features and outputs plus the head maps of one head chunk's frames.
    pub fn activation_values(&self, views: usize) -> u64 {
        let s = views as u64;
        match self.head_frames {
            None => s * self.per_view_values(),
            Some(frames) => {
                let p = self.value_parts();
                (s * p.backbone).max(s * (p.features + p.outputs) + views.min(frames) as u64 * p.head)
            }
        }
    }

    /// The parts of [`Self::per_view_values`] and [`Self::activation_values`], in values.
    fn value_parts(&self) -> PassValues {
        let n = self.tokens_per_view() as u64;
        let (d, hidden, out_dim) = (self.embed_dim as u64, self.ffn_hidden as u64, self.out_dim as u64);
        let block_tmp = (9 * d).max(d + 2 * hidden);
        let hw = ((self.height / PATCH_SIZE) * (self.width / PATCH_SIZE)) as u64; // patch grid
        let full = (self.height * self.width) as u64; // H·W
        // The pass's input [3, H, W] stays live through the backbone: 588 values per patch,
        // 1.5× a da3-small token (left out, the count fell 10–13 % short of the measured growth
        // per view at 16–32 views).
        let input = 3 * full;
        let backbone = n * (2 * d + block_tmp + 4 * out_dim) + input;
        let f = self.features as u64;
        let oc = self.out_channels.map(|c| c as u64);
        let grid8 = 64 * hw; // (8ph)·(8pw)
        let levels = oc[0] * 16 * hw + oc[1] * 4 * hw + oc[2] * hw + oc[3] * hw / 4 + f * (16 + 4 + 1) * hw + f * hw / 4;
        let mut head = levels + 3 * f * grid8 + f / 2 * grid8 + (f / 2 + 32 + 4) * full;
        // The input; the two main outputs (depth and confidence, or depth and sky) twice: per
        // head chunk and concatenated.
        let mut outputs = input + 2 * 2 * full;
        if self.dual_head {
            head += (f + 32 + 7) * grid8;
            outputs += 2 * 7 * grid8; // rays and their confidence, twice
        }
        if self.gs_head {
            head += (f / 2 + 38 + 3) * full;
            outputs += 2 * GAUSSIAN_VALUES * full; // the raw Gaussians, twice
        }
        // The stored backbone outputs stay live while the head runs.
        PassValues { backbone, head, features: n * 4 * out_dim, outputs }
    }

    /// Bytes of the global attention scores for S views when they are materialized (the
    /// scores and their softmax, [heads, S·N, S·N] each); 0 for fused attention.
    pub fn global_scores_bytes(&self, views: usize) -> u64 {
        match self.attention {
            AttentionKind::Fused => 0,
            AttentionKind::Materialized => {
                let t = (views * self.tokens_per_view()) as u64;
                2 * self.num_heads as u64 * t * t * self.dtype_bytes
            }
        }
    }

    /// Peak bytes of the activations of one pass over `views` views (weights excluded),
    /// calibrated (see [`ACTIVATION_CALIBRATION`]).
    pub fn activation_bytes(&self, views: usize) -> u64 {
        let analytic = self.activation_values(views) * self.dtype_bytes + self.global_scores_bytes(views);
        (analytic as f64 * ACTIVATION_CALIBRATION) as u64 * self.branches + self.kernel_cache + PASS_OVERHEAD_BYTES
    }

    /// Host bytes of the inputs of one view ([3, H, W] f32; the API keeps the views and one
    /// copy on their way to the device).
    pub fn input_bytes_per_view(&self) -> u64 {
        2 * 3 * (self.height * self.width) as u64 * 4
    }

    /// Host bytes of one view's returned prediction (depth, confidence, sky: f32 each; with
    /// [`Self::with_gaussians`] the Gaussians' 38 f32 per pixel), plus what the caller keeps
    /// per view ([`Self::with_kept_bytes_per_view`]).
    pub fn output_bytes_per_view(&self) -> u64 {
        (3 + if self.gaussians { GAUSSIAN_VALUES } else { 0 }) * (self.height * self.width) as u64 * 4
            + self.kept_bytes_per_view
    }

    /// Host bytes per view of the running pass that are not returned: the GS head's raw
    /// output (38 f32 per pixel) read back for the Gaussian adapter, with
    /// [`Self::with_gaussians`]; 0 otherwise.
    pub fn pass_host_bytes_per_view(&self) -> u64 {
        if self.gaussians {
            GAUSSIAN_VALUES * (self.height * self.width) as u64 * 4
        } else {
            0
        }
    }

    /// The largest single tensor of a pass over `views` views, for devices that cap one
    /// buffer (wgpu's `max_storage_buffer_binding_size`): the full-resolution F/2 (or the
    /// 32-wide hidden) map of the head, or the materialized global scores.
    pub fn largest_tensor_bytes(&self, views: usize) -> u64 {
        let full = (self.height * self.width) as u64;
        let map = views as u64 * (self.features as u64 / 2).max(32) * full * self.dtype_bytes;
        map.max(self.global_scores_bytes(views) / 2)
    }
}

/// Parses a byte size: a number with an optional unit, `B`, `K`/`KB`/`KiB`, `M`/`MB`/`MiB`,
/// `G`/`GB`/`GiB`, `T`/`TB`/`TiB` (case-insensitive; all binary, 1 K = 1024, as memory
/// sizes are), e.g. `512MiB`, `4GiB`, `4G`, `1.5g`.
pub fn parse_byte_size(text: &str) -> Result<u64, Da3Error> {
    let t = text.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let bad = || {
        Da3Error::Input(format!("`{text}` is not a memory size; write e.g. 512MiB, 4GiB or 4G (binary units)"))
    };
    let value: f64 = number.parse().map_err(|_| bad())?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return Err(bad()),
    };
    let bytes = value * (1u64 << shift) as f64;
    if !bytes.is_finite() || bytes < 1.0 || bytes > u64::MAX as f64 {
        return Err(bad());
    }
    Ok(bytes as u64)
}

/// Formats bytes for messages: `3.50 GiB`, `512.0 MiB`, `900 B`.
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [(&str, u32); 3] = [("GiB", 30), ("MiB", 20), ("KiB", 10)];
    for (name, shift) in UNITS {
        if bytes >= 1 << shift {
            let v = bytes as f64 / (1u64 << shift) as f64;
            return if shift == 30 { format!("{v:.2} {name}") } else { format!("{v:.1} {name}") };
        }
    }
    format!("{bytes} B")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_sizes_parse() {
        assert_eq!(parse_byte_size("4GiB").unwrap(), 4 << 30);
        assert_eq!(parse_byte_size("4G").unwrap(), 4 << 30);
        assert_eq!(parse_byte_size("512MiB").unwrap(), 512 << 20);
        assert_eq!(parse_byte_size("512 mb").unwrap(), 512 << 20);
        assert_eq!(parse_byte_size("1.5g").unwrap(), 3 << 29);
        assert_eq!(parse_byte_size("1000").unwrap(), 1000);
        for bad in ["", "G", "4X", "-1G", "0", "1.2.3M"] {
            let e = parse_byte_size(bad).unwrap_err().to_string();
            assert!(e.contains("4GiB"), "{bad}: {e}");
        }
        assert_eq!(format_bytes(3 << 29), "1.50 GiB");
        assert_eq!(format_bytes(300 << 20), "300.0 MiB");
    }

    #[test]
    fn small_at_280_is_linear_in_views_with_fused_attention() {
        let config = Da3Config::preset("da3-small").unwrap();
        let m = MemoryModel::new(&config, 280, 280, 100 << 20, AttentionKind::Fused);
        assert_eq!(m.tokens_per_view(), 402);
        let one = m.activation_bytes(1) - PASS_OVERHEAD_BYTES;
        let ten = m.activation_bytes(10) - PASS_OVERHEAD_BYTES;
        assert!((ten as f64 / one as f64 - 10.0).abs() < 1e-6);
        // The head at full resolution dominates: (F/2 + 36) = 68 maps of 280² f32 ≈ 21 MB.
        assert!(one > 21 << 20 && one < 200 << 20, "{one}");
        let mat = MemoryModel::new(&config, 280, 280, 0, AttentionKind::Materialized);
        // 100 views materialized: 2 · 6 · 40200² · 4 B ≈ 77.6 GB of scores.
        assert!(mat.global_scores_bytes(100) > 77_000_000_000);
    }

    /// With the heads one frame at a time (flex), a view beyond the first few costs what the
    /// backbone holds per view, counted by hand for da3-small at 504×378: N = 27·36 + 2 = 974
    /// tokens × (2·384 residual + 3,456 block temporary + 4·768 stored outputs) + the input
    /// 3·378·504. With a GPU's 8-frame chunks, 8 views count every frame's head maps.
    #[test]
    fn head_frames_bound_what_grows_with_the_views() {
        let config = Da3Config::preset("da3-small").unwrap();
        let base = MemoryModel::new(&config, 378, 504, 0, AttentionKind::Fused);
        let cpu = base.clone().with_head_frames(1);
        let per_view = 974 * (2 * 384 + 3456 + 4 * 768) + 3 * 378 * 504;
        assert_eq!(cpu.activation_values(17) - cpu.activation_values(16), per_view);
        assert_eq!(cpu.activation_values(33) - cpu.activation_values(32), per_view);
        // One view: the head's frame with the stored features, the input and the outputs.
        let gpu = base.clone().with_head_frames(8);
        assert_eq!(cpu.activation_values(1), gpu.activation_values(1));
        assert!(cpu.activation_values(1) > base.activation_values(1));
        // 8 views: the GPU's chunk holds 8 frames' head maps, at least the all-views count.
        assert!(gpu.activation_values(8) >= base.activation_values(8));
        assert!(cpu.activation_values(8) < base.activation_values(8) / 3);
        // The filter cache is added once per pass, not per view.
        let cached = cpu.clone().with_kernel_cache(24 << 20);
        assert_eq!(cached.activation_bytes(1) - cpu.activation_bytes(1), 24 << 20);
        assert_eq!(cached.activation_bytes(9) - cpu.activation_bytes(9), 24 << 20);
    }
}
