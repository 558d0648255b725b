//! Views decoded on demand, so that decoding overlaps inference.
//!
//! [`ViewLoader::load`] decodes and preprocesses the images of a range of views (in parallel)
//! when the scheduler asks for them: `Da3::predict_from_source` calls it on a background thread
//! for the next chunk while the current chunk runs. The batch centre-crop size depends only on
//! the images' processed sizes, which their headers give ([`crate::batch::read_headers`]), so
//! a chunk's views are cropped exactly as if every image had been decoded first: the views,
//! images and camera matrices equal [`crate::batch::load_batch`]'s.
//!
//! A file whose header was fine but whose pixels cannot be decoded is recorded as a failure
//! ([`ViewLoader::take_failures`]) and makes `load` fail; the caller removes it and runs again
//! without it (images already decoded are kept).

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Mutex;

use anyhow::{anyhow, Result};
use da3::preprocess::{assemble, assemble_images, Intrinsics, Options, Plan, Prepared, RgbImage};
use da3::{Da3Error, Views};
use indicatif::ProgressBar;
use rayon::prelude::*;

use crate::batch::{batch_size, Failures};
use crate::images::load_and_prepare;

/// Called with each range [`ViewLoader::load`] is asked for, on the thread that loads it,
/// before it decodes anything (tests use it to observe and pace the overlap).
pub type LoadHook<'a> = &'a (dyn Fn(Range<usize>) + Sync);

/// Decodes and preprocesses the views of a scene on demand (see the module docs).
pub struct ViewLoader<'a> {
    paths: &'a [PathBuf],
    /// Per view: its input index and the plan its header gave.
    views: Vec<(usize, Plan)>,
    /// Per input: the camera matrix in pixels of the file.
    intrinsics: Option<&'a [Intrinsics]>,
    options: &'a Options,
    max_pixels: u64,
    /// The per-image results, by input index (kept across [`Self::take_failures`]).
    prepared: Mutex<BTreeMap<usize, Prepared>>,
    /// Files that failed to decode since the last [`Self::take_failures`].
    failures: Mutex<Failures>,
    progress: Mutex<ProgressBar>,
    hook: Option<LoadHook<'a>>,
}

impl<'a> ViewLoader<'a> {
    /// A loader of the `readable` inputs (input index and header plan, in view order, as
    /// [`crate::batch::Headers::readable`]) among `paths`, with one camera matrix per input
    /// when `intrinsics` is given.
    pub fn new(
        paths: &'a [PathBuf],
        readable: Vec<(usize, Plan)>,
        intrinsics: Option<&'a [Intrinsics]>,
        options: &'a Options,
        max_pixels: u64,
    ) -> Self {
        ViewLoader {
            paths,
            views: readable,
            intrinsics,
            options,
            max_pixels,
            prepared: Mutex::default(),
            failures: Mutex::default(),
            progress: Mutex::new(ProgressBar::hidden()),
            hook: None,
        }
    }

    /// Calls `hook` at the start of every [`Self::load`].
    pub fn with_hook(mut self, hook: LoadHook<'a>) -> Self {
        self.hook = Some(hook);
        self
    }

    /// Advances `bar` by one per decoded image from now on.
    pub fn set_progress(&self, bar: ProgressBar) {
        *self.progress.lock().unwrap_or_else(|e| e.into_inner()) = bar;
    }

    /// The number of views.
    pub fn count(&self) -> usize {
        self.views.len()
    }

    /// The input index of each view.
    pub fn inputs(&self) -> Vec<usize> {
        self.views.iter().map(|(i, _)| *i).collect()
    }

    /// The views' preprocessing plans.
    pub fn plans(&self) -> Vec<Plan> {
        self.views.iter().map(|(_, p)| *p).collect()
    }

    /// The `(width, height)` of every view after the batch centre crop.
    pub fn size(&self) -> Option<(usize, usize)> {
        batch_size(&self.plans())
    }

    /// The views' camera matrices after preprocessing and the batch crop (what
    /// [`da3::preprocess::assemble`] gives), computed from the plans alone; `None` without
    /// input intrinsics.
    pub fn processed_intrinsics(&self) -> Option<Vec<Intrinsics>> {
        let given = self.intrinsics?;
        let (min_w, min_h) = self.size()?;
        let uniform = self.views.iter().all(|(_, p)| p.size == self.views[0].1.size);
        let k = self.views.iter().map(|&(i, plan)| {
            let k = plan.update_intrinsics(given[i]);
            // assemble: the principal point moves by (W - w) // 2, (H - h) // 2.
            let (w, h) = plan.size;
            if uniform {
                k
            } else {
                k.shifted(((w - min_w) / 2, (h - min_h) / 2))
            }
        });
        Some(k.collect())
    }

    /// Decodes and preprocesses the views of `range` that are not decoded yet (in parallel),
    /// and returns the normalized views of `range`, centre-cropped to [`Self::size`]. A file
    /// that fails is recorded (see [`Self::take_failures`]) and the call fails.
    pub fn load(&self, range: Range<usize>) -> Result<Views, Da3Error> {
        if let Some(hook) = self.hook {
            hook(range.clone());
        }
        let views = self.views.get(range.clone()).ok_or_else(|| Da3Error::Input(format!("internal: views {range:?} requested")))?;
        let todo: Vec<(usize, Plan)> = {
            let done = self.prepared.lock().unwrap_or_else(|e| e.into_inner());
            views.iter().filter(|(i, _)| !done.contains_key(i)).copied().collect()
        };
        let bar = self.progress.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let results: Vec<(usize, Result<Prepared>)> = todo
            .par_iter()
            .map(|&(i, plan)| {
                let result = self.prepare_one(i, plan);
                bar.inc(1);
                (i, result)
            })
            .collect();
        let mut failed = 0;
        {
            let mut done = self.prepared.lock().unwrap_or_else(|e| e.into_inner());
            let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
            for (i, result) in results {
                match result {
                    Ok(p) => {
                        done.insert(i, p);
                    }
                    Err(e) => {
                        failures.push((i, e));
                        failed += 1;
                    }
                }
            }
        }
        if failed > 0 {
            return Err(Da3Error::Input(format!("{failed} of the images of views {range:?} could not be decoded")));
        }
        self.assemble_range(range)
    }

    /// Decodes and prepares input `i`, refusing a decoded size that differs from its header's.
    fn prepare_one(&self, i: usize, plan: Plan) -> Result<Prepared> {
        let path = &self.paths[i];
        let prepared = load_and_prepare(path, self.intrinsics.map(|k| k[i]), self.options, self.max_pixels)?;
        if prepared.plan != plan {
            let (w, h) = prepared.plan.original;
            let (hw, hh) = plan.original;
            return Err(anyhow!("image {} decodes to {w}x{h} pixels but its header says {hw}x{hh}", path.display()));
        }
        Ok(prepared)
    }

    /// The views of `range` (all decoded), normalized and centre-cropped to [`Self::size`]:
    /// [`assemble`] of the range plus a blank image of the batch size, which makes the
    /// range's crop the whole batch's; the blank one is then left out.
    fn assemble_range(&self, range: Range<usize>) -> Result<Views, Da3Error> {
        let size = self.size().ok_or_else(|| Da3Error::Input("no views to load".into()))?;
        let done = self.prepared.lock().unwrap_or_else(|e| e.into_inner());
        let mut subset: Vec<Prepared> = Vec::with_capacity(range.len() + 1);
        for (i, _) in &self.views[range.clone()] {
            subset.push(done.get(i).cloned().ok_or_else(|| Da3Error::Input(format!("internal: input {i} not decoded")))?);
        }
        drop(done);
        let mut plan = subset[0].plan;
        plan.size = size;
        let blank = RgbImage { pixels: vec![0; size.0 * size.1 * 3], width: size.0, height: size.1 };
        subset.push(Prepared { plan, image: blank, intrinsics: None });
        assemble(subset)?.views.select(0..range.len())
    }

    /// The files that failed to decode since the last call, removed from the views (the
    /// batch size follows the remaining ones).
    pub fn take_failures(&mut self) -> Failures {
        let failures = std::mem::take(self.failures.get_mut().unwrap_or_else(|e| e.into_inner()));
        self.views.retain(|(i, _)| !failures.iter().any(|(f, _)| f == i));
        failures
    }

    /// The processed images and per-image records of every view (all decoded), as
    /// [`crate::batch::load_batch`] gives them, without the normalized network input, which
    /// the chunks were fed from and no output needs.
    pub fn into_processed(self) -> Result<crate::batch::Processed> {
        let mut done = self.prepared.into_inner().unwrap_or_else(|e| e.into_inner());
        let prepared = self
            .views
            .iter()
            .map(|(i, _)| done.remove(i).ok_or_else(|| anyhow!("internal: input {i} was not decoded")))
            .collect::<Result<Vec<_>>>()?;
        let (images, info) = assemble_images(prepared)?;
        Ok(crate::batch::Processed { images, info })
    }
}
