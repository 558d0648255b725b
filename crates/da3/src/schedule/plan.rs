//! Planning a job of many views: how many views one pass takes (the chunk size K), how many
//! views consecutive chunks share (the overlap O) and which chunks run. Pure logic.

use std::ops::Range;

use super::compute::MIN_BALANCED_VIEWS;
use super::device::DeviceMemory;
use super::memory::{format_bytes, MemoryModel};
use crate::Da3Error;

/// Most views two chunks share by default: beyond 8 the alignment gains little and every
/// shared view is inferred twice.
pub const MAX_DEFAULT_OVERLAP: usize = 8;

/// What the caller asks of the scheduler.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScheduleOptions {
    /// Upper bound on the memory of the job (`--max-memory`): on CPU backends the process's
    /// peak resident memory, on GPUs the device memory.
    pub max_memory: Option<u64>,
    /// Views per pass, overriding the planned size (`--chunk-size`).
    pub chunk_size: Option<usize>,
    /// Views shared by consecutive chunks, overriding the default (`--chunk-overlap`).
    pub overlap: Option<usize>,
    /// Host bytes per view that the caller keeps until the job ends, outside the returned
    /// prediction (the `da3` command: each view's processed 8-bit image; `da3 serve`: also
    /// the request's normalized input): counted against a CPU budget with every returned view
    /// (and the running chunk's, as the outputs are).
    pub kept_bytes_per_view: u64,
}

/// What set the chunk size of a [`Plan`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkLimit {
    /// Nothing: every view runs in one pass.
    None,
    /// `--chunk-size`.
    Requested,
    /// The memory budget (or the device's largest buffer).
    Memory,
    /// The compute cap: larger chunks would fit, but their global attention would cost more
    /// than the rest of the pass (see [`crate::schedule::compute`]).
    Compute,
}

/// How a job runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Views in the job.
    pub views: usize,
    /// Views per pass K (≤ `views`).
    pub chunk_size: usize,
    /// Views shared by consecutive chunks O (0 for a single pass, or when chunks need no
    /// common frame).
    pub overlap: usize,
    /// The chunks in run order (see [`next_chunk`]).
    pub chunks: Vec<Range<usize>>,
    /// The budget planned against, if any.
    pub budget: Option<u64>,
    /// Estimated peak bytes of the job under this plan (same accounting as the budget).
    pub estimated_peak: u64,
    /// What set the chunk size.
    pub limit: ChunkLimit,
}

impl Plan {
    /// Whether the job runs as one multi-view pass (today's behaviour).
    pub fn is_single_pass(&self) -> bool {
        self.chunks.len() == 1
    }
}

/// The default overlap for chunks of `k` views: a quarter of the chunk, at least 2 and at most
/// [`MAX_DEFAULT_OVERLAP`], always leaving one new view per chunk.
///
/// Why ≥ 2: the chunk-to-chunk rotation and scale come from the shared views' relative poses
/// and depths (see `stitch`), which one view already determines; a second view averages out
/// its error and gives a residual that says whether the chunks agree. Umeyama's Sim(3) on the
/// camera centres needs ≥ 3 non-collinear centres, so it is only the cross-check.
pub fn default_overlap(k: usize) -> usize {
    (k / 4).clamp(2, MAX_DEFAULT_OVERLAP).min(k.saturating_sub(1))
}

/// The chunk after one ending at `prev_end` (`None` for the first): starts `overlap` views
/// before `prev_end` and holds `k` views; the last chunk is moved back to end at `total` with
/// `k` views, sharing more than `overlap` (better alignment at no extra pass).
pub fn next_chunk(prev_end: Option<usize>, total: usize, k: usize, overlap: usize) -> Option<Range<usize>> {
    let k = k.clamp(1, total.max(1));
    match prev_end {
        None => Some(0..k.min(total)),
        Some(end) if end >= total => None,
        Some(end) => {
            let start = end.saturating_sub(overlap);
            let start = if start + k >= total { total.saturating_sub(k).min(start) } else { start };
            Some(start..(start + k).min(total))
        }
    }
}

/// All chunks for chunk size `k` and `overlap`.
pub fn chunks(total: usize, k: usize, overlap: usize) -> Vec<Range<usize>> {
    let mut out: Vec<Range<usize>> = Vec::new();
    while let Some(c) = next_chunk(out.last().map(|c| c.end), total, k, overlap) {
        out.push(c);
    }
    out
}

/// Estimated peak bytes of a job of `total` views run in chunks of `k` (what counts against
/// the budget): on the host the resident set, the pass's activations, two chunks of inputs
/// (the running one and the prefetched one), the returned arrays of every view and a chunk's
/// prediction before it is merged (with Gaussians also the GS head's raw output read back for
/// the chunk); on a GPU the weights and the pass's activations.
pub fn estimated_peak(model: &MemoryModel, device: &DeviceMemory, total: usize, k: usize) -> u64 {
    let pass = model.activation_bytes(k);
    if device.host {
        device.resident
            + pass
            + 2 * k as u64 * model.input_bytes_per_view()
            + (total + k) as u64 * model.output_bytes_per_view()
            + k as u64 * model.pass_host_bytes_per_view()
    } else {
        device.resident + pass
    }
}

/// Plans a job of `total` views. `pose_frame`: whether chunks must share views to be aligned
/// into one pose frame (models that predict cameras, without input cameras); otherwise chunks
/// do not overlap.
///
/// Chunk size: `--chunk-size` if given; all views if they fit the budget (one joint pass);
/// else the largest chunk that fits, capped at the model's balanced size
/// ([`MemoryModel::balanced_views`], at least [`MIN_BALANCED_VIEWS`]) so that a job that is
/// chunked anyway does not spend most of its time in global attention.
pub fn plan(
    model: &MemoryModel,
    device: &DeviceMemory,
    total: usize,
    options: &ScheduleOptions,
    pose_frame: bool,
) -> Result<Plan, Da3Error> {
    if total == 0 {
        return Err(Da3Error::Input("no views to plan".into()));
    }
    let budget = device.budget(options.max_memory);
    let fits = |k: usize| {
        budget.is_none_or(|b| estimated_peak(model, device, total, k) <= b)
            && device.max_buffer.is_none_or(|m| model.largest_tensor_bytes(k) <= m)
    };
    let min_k = if pose_frame { 2 } else { 1 };
    let (k, limit) = match options.chunk_size {
        Some(0) => return Err(Da3Error::Input("the chunk size must be at least 1 view".into())),
        Some(k) => (k.min(total), ChunkLimit::Requested),
        // Everything fits: one joint pass, as the reference runs it, whatever its attention costs.
        None if fits(total) => (total, ChunkLimit::None),
        None => {
            // Largest k that fits: the estimate grows with k, so bisect.
            let (mut lo, mut hi) = (0usize, total); // fits(lo) or lo == 0; !fits(hi)
            while hi - lo > 1 {
                let mid = (lo + hi) / 2;
                if fits(mid) {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            if lo < min_k.min(total) {
                let need = estimated_peak(model, device, total, min_k.min(total));
                return Err(Da3Error::OutOfMemory(format!(
                    "{total} views of {}x{} need at least {} with {} views per pass (weights {}, \
                     {} per view), but the budget is {}; raise --max-memory, lower --process-res, \
                     or free memory",
                    model.width,
                    model.height,
                    format_bytes(need),
                    min_k.min(total),
                    format_bytes(model.weights),
                    format_bytes(model.activation_bytes(2) - model.activation_bytes(1)),
                    format_bytes(budget.unwrap_or(0)),
                )));
            }
            // Chunked anyway: no larger than the compute cap (never below MIN_BALANCED_VIEWS).
            let cap = model.balanced_views.max(MIN_BALANCED_VIEWS);
            if cap < lo {
                (cap, ChunkLimit::Compute)
            } else {
                (lo, ChunkLimit::Memory)
            }
        }
    };
    if pose_frame && k < 2 && k < total {
        return Err(Da3Error::Input(
            "chunks of 1 view cannot be aligned into one pose frame; use a chunk size of at least 2".into(),
        ));
    }
    let overlap = if k >= total || !pose_frame {
        0
    } else {
        match options.overlap {
            Some(o) if o == 0 || o >= k => {
                return Err(Da3Error::Input(format!(
                    "a chunk overlap of {o} views does not work with {k} views per chunk: chunks must \
                     share at least 1 view (to align their poses) and add at least 1; use 1..={}",
                    k - 1
                )))
            }
            Some(o) => o,
            None => default_overlap(k),
        }
    };
    Ok(Plan {
        views: total,
        chunk_size: k,
        overlap,
        chunks: chunks(total, k, overlap),
        budget,
        estimated_peak: estimated_peak(model, device, total, k),
        limit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::memory::AttentionKind;
    use crate::Da3Config;

    fn small_280() -> MemoryModel {
        let config = Da3Config::preset("da3-small").unwrap();
        MemoryModel::new(&config, 280, 280, 100 << 20, AttentionKind::Fused)
    }

    #[test]
    fn chunks_cover_every_view_with_the_overlap() {
        assert_eq!(chunks(10, 4, 2), vec![0..4, 2..6, 4..8, 6..10]);
        // The last chunk is moved back to hold k views.
        assert_eq!(chunks(11, 4, 2), vec![0..4, 2..6, 4..8, 6..10, 7..11]);
        assert_eq!(chunks(5, 8, 2), vec![0..5]);
        assert_eq!(chunks(3, 2, 1), vec![0..2, 1..3]);
        assert_eq!(chunks(7, 3, 0), vec![0..3, 3..6, 4..7]);
        for (n, k, o) in [(1000, 37, 8), (17, 5, 2), (9, 2, 1)] {
            let cs = chunks(n, k, o);
            assert_eq!(cs.first().unwrap().start, 0);
            assert_eq!(cs.last().unwrap().end, n);
            for w in cs.windows(2) {
                assert!(w[1].start + o <= w[0].end && w[1].end > w[0].end, "{w:?}");
                assert_eq!(w[1].len(), k);
            }
        }
        assert_eq!(default_overlap(2), 1);
        assert_eq!(default_overlap(4), 2);
        assert_eq!(default_overlap(20), 5);
        assert_eq!(default_overlap(100), 8);
    }

    #[test]
    fn single_pass_when_everything_fits() {
        let m = small_280();
        let dev = DeviceMemory::gpu(None, m.weights, None);
        let p = plan(&m, &dev, 50, &ScheduleOptions::default(), true).unwrap();
        assert_eq!((p.chunk_size, p.overlap, p.chunks.clone()), (50, 0, vec![0..50]));
        let p = plan(&m, &dev, 50, &ScheduleOptions { max_memory: Some(64 << 30), ..Default::default() }, true).unwrap();
        assert!(p.is_single_pass());
    }

    #[test]
    fn budget_picks_the_largest_chunk_that_fits() {
        let m = small_280();
        let dev = DeviceMemory::gpu(None, m.weights, None);
        // A budget that fits 12 views per pass (below the compute cap of 24).
        let budget = estimated_peak(&m, &dev, 1000, 12);
        let p = plan(&m, &dev, 1000, &ScheduleOptions { max_memory: Some(budget), ..Default::default() }, true).unwrap();
        assert_eq!((p.chunk_size, p.limit), (12, ChunkLimit::Memory));
        assert_eq!(p.overlap, 3);
        assert_eq!(p.chunks.len(), (1000usize - 12).div_ceil(12 - 3) + 1);
        // The same job on the host also pays for the returned arrays of all 1000 views: a
        // budget that fits 10 views per pass there fits more on a GPU.
        let host = DeviceMemory { available: None, host: true, resident: m.weights, max_buffer: None };
        let host_budget = estimated_peak(&m, &host, 1000, 10);
        let ph = plan(&m, &host, 1000, &ScheduleOptions { max_memory: Some(host_budget), ..Default::default() }, true).unwrap();
        assert_eq!((ph.chunk_size, ph.limit), (10, ChunkLimit::Memory));
        let pg = plan(&m, &dev, 1000, &ScheduleOptions { max_memory: Some(host_budget), ..Default::default() }, true).unwrap();
        assert!(pg.chunk_size > 10, "{pg:?}");
        // A wgpu-style single-buffer limit caps the chunk too.
        let max_buffer = m.largest_tensor_bytes(10);
        let capped = DeviceMemory::gpu(None, m.weights, Some(max_buffer));
        let pc = plan(&m, &capped, 1000, &ScheduleOptions { max_memory: Some(4 << 30), ..Default::default() }, true).unwrap();
        assert_eq!((pc.chunk_size, pc.limit), (10, ChunkLimit::Memory));
        assert!(m.largest_tensor_bytes(11) > max_buffer);
    }

    /// Host bytes the caller keeps per view (the `da3` command's 8-bit images) count on the
    /// host with every view's prediction, and not against a GPU's memory.
    #[test]
    fn kept_bytes_count_on_the_host_only() {
        let m = small_280();
        let kept = m.clone().with_kept_bytes_per_view(9 * 280 * 280);
        let host = DeviceMemory { available: None, host: true, resident: m.weights, max_buffer: None };
        let dev = DeviceMemory::gpu(None, m.weights, None);
        let extra = estimated_peak(&kept, &host, 100, 10) - estimated_peak(&m, &host, 100, 10);
        assert_eq!(extra, (100 + 10) * 9 * 280 * 280);
        assert_eq!(estimated_peak(&kept, &dev, 100, 10), estimated_peak(&m, &dev, 100, 10));
        // A host budget that fits 10 views per pass without them fits fewer with them.
        let budget = Some(estimated_peak(&m, &host, 100, 10));
        let p = plan(&kept, &host, 100, &ScheduleOptions { max_memory: budget, ..Default::default() }, true).unwrap();
        assert!(p.chunk_size < 10 && p.estimated_peak <= budget.unwrap(), "{p:?}");
    }

    /// A budget that would fit 200+ views per chunk gets chunks of the balanced size instead
    /// (24 for da3-small at 280×280: there the global attention costs as much as the rest of
    /// the pass); a job that fits whole still runs as one pass.
    #[test]
    fn compute_caps_chunks_of_a_job_that_is_chunked_anyway() {
        let m = small_280();
        assert_eq!(m.balanced_views, 24);
        let dev = DeviceMemory::gpu(None, m.weights, None);
        let budget = Some(16u64 << 30);
        let p = plan(&m, &dev, 1000, &ScheduleOptions { max_memory: budget, ..Default::default() }, true).unwrap();
        assert!(estimated_peak(&m, &dev, 1000, 200) <= 16 << 30, "the budget alone would allow 200 views");
        assert_eq!((p.chunk_size, p.overlap, p.limit), (24, 6, ChunkLimit::Compute));
        assert_eq!(p.chunks.len(), (1000usize - 24).div_ceil(24 - 6) + 1);
        // 200 views fit the same budget in one pass: no cap (a joint pass, as the reference).
        let whole = plan(&m, &dev, 200, &ScheduleOptions { max_memory: budget, ..Default::default() }, true).unwrap();
        assert_eq!((whole.chunk_size, whole.limit), (200, ChunkLimit::None));
        // `--chunk-size` wins over the cap.
        let asked = ScheduleOptions { max_memory: budget, chunk_size: Some(60), ..Default::default() };
        let p = plan(&m, &dev, 1000, &asked, true).unwrap();
        assert_eq!((p.chunk_size, p.limit), (60, ChunkLimit::Requested));
    }

    #[test]
    fn overrides_and_impossible_budgets() {
        let m = small_280();
        let dev = DeviceMemory::gpu(None, m.weights, None);
        let o = |k, ov| ScheduleOptions { max_memory: None, chunk_size: Some(k), overlap: ov, ..Default::default() };
        let p = plan(&m, &dev, 10, &o(4, None), true).unwrap();
        assert_eq!((p.chunk_size, p.overlap, p.chunks.len()), (4, 2, 4));
        let p = plan(&m, &dev, 10, &o(4, Some(3)), true).unwrap();
        assert_eq!(p.chunks, vec![0..4, 1..5, 2..6, 3..7, 4..8, 5..9, 6..10]);
        assert!(plan(&m, &dev, 10, &o(4, Some(4)), true).unwrap_err().to_string().contains("1..=3"));
        // Without a common pose frame (mono models, input cameras) chunks do not overlap.
        assert_eq!(plan(&m, &dev, 10, &o(4, None), false).unwrap().chunks, vec![0..4, 4..8, 6..10]);
        let tiny = ScheduleOptions { max_memory: Some(m.weights + (1 << 20)), ..Default::default() };
        let e = plan(&m, &dev, 10, &tiny, true).unwrap_err();
        assert!(matches!(e, Da3Error::OutOfMemory(_)) && e.to_string().contains("--max-memory"), "{e}");
    }
}
