//! Running a plan: chunk after chunk, the next chunk's views decoded on a background thread
//! while the current one is inferred, out-of-memory chunks split in half and retried, and the
//! chunks aligned into one pose frame as they finish.
//!
//! The runner knows nothing of the model: it calls `run_chunk` with each chunk's views, so
//! tests inject failures and fake predictions, and [`crate::Da3`] plugs in the network.
//!
//! What recovery can catch: allocation failures that surface as errors or panics (wgpu/CUDA
//! "out of memory", validation or device-lost errors) and our own check of a chunk's estimate
//! against the budget before launching it. A failed Rust allocation on the CPU aborts the
//! process and cannot be caught, so on the CPU the plan is what keeps a job within memory.

use std::collections::BTreeMap;
use std::ops::Range;

use super::plan::{default_overlap, next_chunk, Plan};
use super::stitch::{Assembly, ChunkAlignment};
use crate::{Da3Error, Prediction, Views};

/// Why a chunk did not produce a prediction.
#[derive(Debug)]
pub enum ChunkFailure {
    /// The chunk did not fit in memory (or would not, by the pre-launch check): split it.
    OutOfMemory(String),
    /// Any other error: the job stops with it.
    Failed(Da3Error),
}

/// A chunk that was split after running out of memory.
#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    /// The views of the chunk that failed.
    pub chunk: Range<usize>,
    /// The chunk size used from then on.
    pub new_chunk_size: usize,
    /// What failed.
    pub reason: String,
}

/// What happens during a run, for progress and logs.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Chunk `index` (0-based, counting retries) is about to run on these views.
    Chunk {
        /// Pass number.
        index: usize,
        /// Its views.
        views: Range<usize>,
    },
    /// A chunk ran out of memory and is retried smaller.
    Split(Split),
}

/// What a run did.
#[derive(Debug, Clone, PartialEq)]
pub struct RunReport {
    /// The plan it started from.
    pub plan: Plan,
    /// The chunks that produced predictions, in order.
    pub chunks: Vec<Range<usize>>,
    /// Passes attempted, failed ones included.
    pub passes: usize,
    /// Out-of-memory splits.
    pub splits: Vec<Split>,
    /// How each chunk after the first was aligned into the first's frame (`None` where no
    /// alignment was needed: input cameras, mono/metric models).
    pub alignments: Vec<Option<ChunkAlignment>>,
    /// The nested model's metric factor re-fitted over all views of a chunked job and applied
    /// to the stitched result (see [`super::stitch::refit_metric_scale`]); `None` otherwise.
    pub metric_refit: Option<f64>,
}

/// Runs `plan` over its views.
///
/// - `source(range)` loads (decodes, resizes, normalizes) the views of `range`; it runs on a
///   background thread for the next chunk while `run_chunk` runs the current one.
/// - `run_chunk(range, views)` predicts one chunk.
/// - `pose_frame`: align the chunks' cameras into the first chunk's frame (see `stitch`).
/// - `min_chunk`: the smallest chunk a split may produce (2 with `pose_frame`, else 1).
/// - `overlap_override`: the user's `--chunk-overlap`, kept (capped below the chunk size)
///   after a split; otherwise the overlap follows [`default_overlap`].
pub fn run_chunked<S, R>(
    plan: &Plan,
    pose_frame: bool,
    overlap_override: Option<usize>,
    source: S,
    mut run_chunk: R,
    on_event: &mut dyn FnMut(&Event),
) -> Result<(Prediction, RunReport), Da3Error>
where
    S: Fn(Range<usize>) -> Result<Views, Da3Error> + Sync,
    R: FnMut(Range<usize>, &Views) -> Result<Prediction, ChunkFailure>,
{
    let total = plan.views;
    let min_chunk = if pose_frame { 2 } else { 1 }.min(total);
    let mut report =
        RunReport {
        plan: plan.clone(),
        chunks: Vec::new(),
        passes: 0,
        splits: Vec::new(),
        alignments: Vec::new(),
        metric_refit: None,
    };
    let mut assembly = Assembly { expected_views: total, ..Assembly::default() };
    let (mut k, mut overlap) = (plan.chunk_size, plan.overlap);
    let mut cache = ViewCache::default();
    std::thread::scope(|scope| -> Result<(), Da3Error> {
        let source = &source;
        let mut prefetch: Option<std::thread::ScopedJoinHandle<'_, Result<(usize, Views), Da3Error>>> = None;
        let mut prev_end: Option<usize> = None;
        while let Some(range) = next_chunk(prev_end, total, k, overlap) {
            if let Some(handle) = prefetch.take() {
                let (start, views) = handle.join().map_err(|_| Da3Error::Input("the view loader panicked".into()))??;
                cache.insert(start, &views);
            }
            for missing in cache.missing(range.clone()) {
                let views = source(missing.clone())?;
                cache.insert(missing.start, &views);
            }
            let views = cache.views(range.clone())?;
            // Decode the next chunk's new views while this one runs.
            if let Some(next) = next_chunk(Some(range.end), total, k, overlap) {
                if let Some(todo) = cache.missing(next).into_iter().next() {
                    prefetch = Some(scope.spawn(move || source(todo.clone()).map(|v| (todo.start, v))));
                }
            }
            on_event(&Event::Chunk { index: report.passes, views: range.clone() });
            report.passes += 1;
            match run_chunk(range.clone(), &views) {
                Ok(prediction) => {
                    if prediction.views != range.len() {
                        return Err(Da3Error::Input(format!(
                            "internal: chunk {range:?} returned {} views",
                            prediction.views
                        )));
                    }
                    assembly.push(range.start, prediction, pose_frame)?;
                    report.chunks.push(range.clone());
                    prev_end = Some(range.end);
                    if let Some(next) = next_chunk(prev_end, total, k, overlap) {
                        cache.drop_before(next.start);
                    }
                }
                Err(ChunkFailure::OutOfMemory(reason)) => {
                    if range.len() <= min_chunk.max(1) {
                        return Err(Da3Error::OutOfMemory(format!(
                            "views {}..{} do not fit even as a chunk of {} ({reason}); raise --max-memory, \
                             lower --process-res, or free memory",
                            range.start,
                            range.end,
                            range.len()
                        )));
                    }
                    k = (range.len() / 2).max(min_chunk);
                    overlap = match (prev_end, pose_frame) {
                        (_, false) => 0,
                        _ => overlap_override.map_or(default_overlap(k), |o| o.min(k - 1)),
                    };
                    let split = Split { chunk: range, new_chunk_size: k, reason };
                    on_event(&Event::Split(split.clone()));
                    report.splits.push(split);
                }
                Err(ChunkFailure::Failed(e)) => return Err(e),
            }
        }
        Ok(())
    })?;
    report.alignments = assembly.alignments.clone();
    Ok((assembly.prediction, report))
}

/// Loaded views by index, kept until no later chunk needs them.
#[derive(Default)]
struct ViewCache {
    views: BTreeMap<usize, Vec<f32>>,
    size: Option<(usize, usize)>,
}

impl ViewCache {
    fn insert(&mut self, start: usize, views: &Views) {
        self.size = Some((views.height(), views.width()));
        let n = 3 * views.height() * views.width();
        for (i, chunk) in views.data().chunks_exact(n).enumerate() {
            self.views.entry(start + i).or_insert_with(|| chunk.to_vec());
        }
    }

    /// The maximal runs of `range` not loaded yet.
    fn missing(&self, range: Range<usize>) -> Vec<Range<usize>> {
        let mut out: Vec<Range<usize>> = Vec::new();
        for i in range.filter(|i| !self.views.contains_key(i)) {
            match out.last_mut() {
                Some(r) if r.end == i => r.end += 1,
                _ => out.push(i..i + 1),
            }
        }
        out
    }

    fn views(&self, range: Range<usize>) -> Result<Views, Da3Error> {
        let (h, w) = self.size.ok_or_else(|| Da3Error::Input("no views loaded".into()))?;
        let mut data = Vec::with_capacity(range.len() * 3 * h * w);
        for i in range.clone() {
            let v = self.views.get(&i).ok_or_else(|| Da3Error::Input(format!("internal: view {i} not loaded")))?;
            if v.len() != 3 * h * w {
                return Err(Da3Error::Input(format!(
                    "view {i} has a different size than the others; all views of a job must have the same size"
                )));
            }
            data.extend_from_slice(v);
        }
        Views::from_normalized(data, range.len(), h, w)
    }

    fn drop_before(&mut self, start: usize) {
        self.views = self.views.split_off(&start);
    }
}
