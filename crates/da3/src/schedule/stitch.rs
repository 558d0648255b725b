//! Aligning the chunks of a chunked run into one pose frame, and merging them.
//!
//! Every chunk is a separate multi-view pass, so its cameras live in its own frame (its own
//! reference view, its own scale). The first chunk defines the frame of the job; each next
//! chunk shares views with what ran before, and the similarity `x ↦ s·R·x + t` that takes its
//! frame into the job's is fitted on those shared views:
//! - rotation: the chordal mean of the per-view relative rotations `R_jobᵀ·R_chunk` (the
//!   camera-to-world rotations satisfy `Rc_job = R · Rc_chunk`), projected onto SO(3) with the
//!   SVD of `linalg`; one shared view already determines it, and unlike Umeyama on camera
//!   centres it does not degenerate when the centres are (nearly) collinear or coincide, as in
//!   a video taken while walking straight or turning on the spot;
//! - scale: the median over the shared views' valid pixels of `depth_job / depth_chunk`
//!   ("scale from depth"): depth is what the scale is for, and unlike the centres' spread it
//!   is defined for any baseline. Umeyama's scale on the centres (`align::umeyama`) is
//!   computed as a cross-check when the centres allow it and reported;
//! - translation: the mean over the shared views of `C_job − s·R·C_chunk`.
//!
//! The chunk's extrinsics are then moved with `align::apply_sim3` and its depth multiplied by
//! `s`; the shared views keep the values of the chunk that produced them first.
//!
//! With input cameras the chunks share no views: each pass has fitted the similarity from the
//! user's cameras into its own predicted frame, and that places chunk k in chunk 0's frame
//! (`T_0 ∘ T_k⁻¹`, see `place_by_input_cameras`), so the user's cameras come out as one rigid
//! set in one frame, as from a single pass.
//!
//! The nested model's metric scale: every pass fits its own least-squares factor from the
//! any-view depth to the metric branch's, and the chunk similarity then re-scales chunk k to
//! chunk 0, so the stitched job would carry chunk 0's factor alone, fitted on its views only.
//! The reference fits one factor over all views of its (single) pass, so a chunked job does
//! too: each view keeps the metric branch's depth in metres (`Prediction::metric_depth`, which
//! no similarity moves), and once the chunks are stitched [`refit_metric_scale`] runs the
//! reference's fit again over all views (the confidence median over every non-sky pixel of the
//! job, the align mask, `g = Σ⟨metric, depth⟩ / Σ⟨depth, depth⟩`), applies `g` to depth and
//! translations, and fills the sky again from all views. Sky pixels (sky score ≥ 0.3) are left
//! out of the depth ratio that fits the chunk scale, since each pass fills its sky with its
//! own constant.
//!
//! 3D Gaussians (`infer_gs`) are moved by the same similarity ([`crate::Gaussians::transform`]),
//! with one correction for the nested model: as in the reference, a pass's Gaussians are
//! computed before the metric scaling, so they live in the pass's frame divided by its metric
//! factor `m` ([`Prediction::scale_factor`]). A chunk's Gaussians are therefore taken into the
//! first chunk's Gaussian frame by `x ↦ (s·R·(m_k·x) + t) / m_0` ([`gaussian_sim3`]); for the
//! other models `m = 1` and this is the chunk's similarity itself. The first chunk's Gaussians
//! are kept as they are, so a job's Gaussians are those of a single pass over the first chunk
//! followed by the later chunks' new views, in the first chunk's frame.

use crate::align::{apply_sim3, camera_centre, umeyama, Extrinsics, InputFrame, Sim3};
use crate::rng::SplitMix64;
use crate::sky::NON_SKY_THRESHOLD;
use crate::linalg::{mul3, signed_svd3, transpose3, M3};
use crate::{Da3Error, Prediction};

/// How one chunk was aligned to the job's frame, with the residuals on the shared views.
#[derive(Debug, Clone, PartialEq)]
pub struct ChunkAlignment {
    /// The similarity taking the chunk's frame into the job's.
    pub sim3: Sim3,
    /// Umeyama's scale on the shared camera centres, when ≥ 3 of them span a plane.
    pub umeyama_scale: Option<f64>,
    /// Largest angle (degrees) between a shared view's rotation in the job and its aligned
    /// rotation from the chunk (0 for a chunk placed by input cameras: no shared views).
    pub max_rotation_error_deg: f64,
    /// Largest distance between a shared view's centre in the job and its aligned centre
    /// from the chunk, relative to the shared views' median depth in the job (0 for a chunk
    /// placed by input cameras).
    pub max_centre_error: f64,
}

/// Fits the similarity taking a chunk's frame into the job's from the views both hold:
/// `job_*` are the job's (already aligned) extrinsics and depth maps of the shared views,
/// `chunk_*` the chunk's own, in the same order.
pub fn fit_chunk_alignment(
    job_ext: &[Extrinsics],
    job_depth: &[&[f32]],
    chunk_ext: &[Extrinsics],
    chunk_depth: &[&[f32]],
) -> Result<ChunkAlignment, Da3Error> {
    let n = job_ext.len();
    if n == 0 || chunk_ext.len() != n || job_depth.len() != n || chunk_depth.len() != n {
        return Err(Da3Error::Input(format!(
            "cannot align a chunk on {} shared views with {} chunk poses; chunks must share at least one view",
            n,
            chunk_ext.len()
        )));
    }
    // Rotation: sum of R_job_c2w · R_chunk_c2wᵀ = R_jobᵀ · R_chunk, projected onto SO(3).
    let rot = |e: &Extrinsics| -> M3 { std::array::from_fn(|r| std::array::from_fn(|c| e[r][c])) };
    let mut sum = [[0.0; 3]; 3];
    for (j, c) in job_ext.iter().zip(chunk_ext) {
        let rel = mul3(&transpose3(&rot(j)), &rot(c));
        for r in 0..3 {
            for k in 0..3 {
                sum[r][k] += rel[r][k];
            }
        }
    }
    let (u, _, v) = signed_svd3(&sum).ok_or_else(|| {
        Da3Error::Input("the shared views' rotations do not determine a chunk rotation (not finite?)".into())
    })?;
    let rotation = mul3(&u, &transpose3(&v));
    // Scale: median depth ratio over pixels valid in both.
    let mut ratios: Vec<f64> = Vec::new();
    for (a, b) in job_depth.iter().zip(chunk_depth) {
        ratios.extend(
            a.iter()
                .zip(b.iter())
                .filter(|(x, y)| x.is_finite() && y.is_finite() && **x > 0.0 && **y > 0.0)
                .map(|(x, y)| *x as f64 / *y as f64),
        );
    }
    if ratios.is_empty() {
        return Err(Da3Error::Input(
            "the shared views have no pixel with positive depth in both chunks, so the chunks' scales cannot be matched".into(),
        ));
    }
    let scale = median(&mut ratios);
    // Translation: centroid of C_job − s·R·C_chunk.
    let c_job: Vec<[f64; 3]> = job_ext.iter().map(camera_centre).collect();
    let c_chunk: Vec<[f64; 3]> = chunk_ext.iter().map(camera_centre).collect();
    let mut translation = [0.0; 3];
    for (j, c) in c_job.iter().zip(&c_chunk) {
        let rc = crate::linalg::mul3v(&rotation, c);
        for k in 0..3 {
            translation[k] += (j[k] - scale * rc[k]) / n as f64;
        }
    }
    let sim3 = Sim3 { rotation, translation, scale };
    let umeyama_scale = if n >= 3 { umeyama(&c_chunk, &c_job).ok().map(|s| s.scale) } else { None };
    // Residuals on the shared views.
    let mut depths: Vec<f64> = job_depth.iter().flat_map(|d| d.iter().filter(|v| **v > 0.0).map(|v| *v as f64)).collect();
    let unit = if depths.is_empty() { 1.0 } else { median(&mut depths).max(f64::MIN_POSITIVE) };
    let (mut max_rot, mut max_centre) = (0.0f64, 0.0f64);
    for (j, c) in job_ext.iter().zip(chunk_ext) {
        let aligned = apply_sim3(&sim3, c);
        // ‖Ra − Rb‖_F = 2√2·sin(θ/2): well conditioned at small angles, unlike acos of the trace.
        let (ra, rb) = (rot(j), rot(&aligned));
        let fro = (0..3).flat_map(|r| (0..3).map(move |c| (r, c))).map(|(r, c)| (ra[r][c] - rb[r][c]).powi(2)).sum::<f64>().sqrt();
        max_rot = max_rot.max((2.0 * (fro / (2.0 * 2f64.sqrt())).min(1.0).asin()).to_degrees());
        let (a, b) = (camera_centre(j), camera_centre(&aligned));
        max_centre = max_centre.max((0..3).map(|k| (a[k] - b[k]).powi(2)).sum::<f64>().sqrt() / unit);
    }
    Ok(ChunkAlignment { sim3, umeyama_scale, max_rotation_error_deg: max_rot, max_centre_error: max_centre })
}

/// A job's prediction being assembled view by view from chunks.
#[derive(Debug, Default)]
pub struct Assembly {
    /// The merged prediction; views are appended in input order.
    pub prediction: Prediction,
    /// How each chunk after the first was aligned (`None` where no alignment was needed).
    pub alignments: Vec<Option<ChunkAlignment>>,
    /// Views the job will have in all: the merged arrays reserve room for them when the first
    /// chunk arrives (0: grow as chunks come).
    pub expected_views: usize,
}

impl Assembly {
    /// Number of views merged so far.
    pub fn views(&self) -> usize {
        self.prediction.views
    }

    /// Adds the chunk `chunk` covering views `start..start + chunk.views`: views before
    /// [`Self::views`] are shared ones (used to align when `align` is set, then dropped), the
    /// rest are appended. With `align`, the chunk's cameras and depth are moved into the job's
    /// frame first. The chunk must start at or before the current end.
    pub fn push(&mut self, start: usize, mut chunk: Prediction, align: bool) -> Result<(), Da3Error> {
        let have = self.prediction.views;
        if start > have || start + chunk.views <= have {
            return Err(Da3Error::Input(format!(
                "internal: chunk {start}..{} does not extend the {have} views merged so far",
                start + chunk.views
            )));
        }
        let shared = have - start;
        if have == 0 {
            self.prediction = chunk;
            reserve_views(&mut self.prediction, self.expected_views);
            return Ok(());
        }
        let input_frames = match (&self.prediction.input_frame, &chunk.input_frame) {
            (Some(job), Some(this)) if !align => Some((job.clone(), this.clone())),
            _ => None,
        };
        if chunk.gaussians.is_some() && !(align && chunk.has_cameras()) && input_frames.is_none() {
            // Without a common pose frame every chunk's Gaussians stay in that chunk's own
            // predicted frame, as the reference leaves them: they do not fit together.
            return Err(Da3Error::Input(
                "3D Gaussians (infer_gs) of separate chunks can only be merged when the chunks are \
                 brought into one pose frame (by predicted or input cameras); run them in one pass \
                 (raise --max-memory or the chunk size)"
                    .into(),
            ));
        }
        let alignment = if let Some((job_frame, chunk_frame)) = input_frames {
            Some(place_by_input_cameras(&mut chunk, &job_frame, &chunk_frame, &self.prediction))
        } else if align && chunk.has_cameras() {
            if shared == 0 {
                return Err(Da3Error::Input("chunks share no view, so their poses cannot be aligned".into()));
            }
            let to64 = |e: &[[f32; 4]; 3]| e.map(|r| r.map(f64::from));
            let job_ext: Vec<Extrinsics> = self.prediction.extrinsics[start..].iter().map(to64).collect();
            let chunk_ext: Vec<Extrinsics> = chunk.extrinsics[..shared].iter().map(to64).collect();
            let job_depth: Vec<Vec<f32>> = (start..have).map(|i| without_sky(&self.prediction, i)).collect();
            let chunk_depth: Vec<Vec<f32>> = (0..shared).map(|i| without_sky(&chunk, i)).collect();
            let (job_depth, chunk_depth): (Vec<&[f32]>, Vec<&[f32]>) =
                (job_depth.iter().map(Vec::as_slice).collect(), chunk_depth.iter().map(Vec::as_slice).collect());
            let fit = fit_chunk_alignment(&job_ext, &job_depth, &chunk_ext, &chunk_depth)?;
            for e in chunk.extrinsics.iter_mut() {
                *e = apply_sim3(&fit.sim3, &to64(e)).map(|r| r.map(|v| v as f32));
            }
            let s = fit.sim3.scale as f32;
            chunk.depth.iter_mut().for_each(|d| *d *= s);
            let to_job = gaussian_sim3(&fit.sim3, chunk.scale_factor, self.prediction.scale_factor);
            if let Some(g) = chunk.gaussians.as_mut() {
                g.transform(&to_job);
            }
            Some(fit)
        } else {
            None
        };
        self.append(chunk, shared)?;
        self.alignments.push(alignment);
        Ok(())
    }

    /// Appends the views of `chunk` from `skip` on.
    fn append(&mut self, chunk: Prediction, skip: usize) -> Result<(), Da3Error> {
        let p = &mut self.prediction;
        if (chunk.height, chunk.width) != (p.height, p.width) {
            return Err(Da3Error::Input("internal: chunks of different image sizes".into()));
        }
        match (p.gaussians.as_mut(), chunk.gaussians.as_ref()) {
            (Some(mine), Some(theirs)) => mine.append_views(theirs, skip)?,
            (None, None) => {}
            _ => return Err(Da3Error::Input("internal: only some chunks have 3D Gaussians".into())),
        }
        let n = chunk.height * chunk.width;
        p.depth.extend_from_slice(&chunk.depth[skip * n..]);
        if !chunk.conf.is_empty() {
            p.conf.extend_from_slice(&chunk.conf[skip * n..]);
        }
        p.extrinsics.extend_from_slice(chunk.extrinsics.get(skip..).unwrap_or(&[]));
        p.intrinsics.extend_from_slice(chunk.intrinsics.get(skip..).unwrap_or(&[]));
        if !chunk.metric_depth.is_empty() {
            p.metric_depth.extend_from_slice(&chunk.metric_depth[skip * n..]);
        }
        if let (Some(sky), Some(more)) = (p.sky.as_mut(), chunk.sky.as_ref()) {
            sky.extend_from_slice(&more[skip * n..]);
        }
        for (mine, theirs) in p.aux_features.iter_mut().zip(&chunk.aux_features) {
            let per_view = theirs.height * theirs.width * theirs.dim;
            mine.data.extend_from_slice(&theirs.data[skip * per_view..]);
        }
        p.views += chunk.views - skip;
        Ok(())
    }
}

/// Reserves room in `p`'s per-view arrays for `total` views in all, so that appending the
/// later chunks never reallocates: a growing array doubles its capacity, and while it moves
/// the old and the new buffer are both live, which had made a chunked job's resident memory
/// climb past what the planner counts (the merged views plus one chunk's prediction).
fn reserve_views(p: &mut Prediction, total: usize) {
    let more = total.saturating_sub(p.views);
    if more == 0 {
        return;
    }
    let n = p.height * p.width;
    for map in [&mut p.depth, &mut p.conf, &mut p.metric_depth] {
        if !map.is_empty() {
            map.reserve_exact(more * n);
        }
    }
    if let Some(sky) = p.sky.as_mut() {
        sky.reserve_exact(more * n);
    }
    p.extrinsics.reserve_exact(more);
    p.intrinsics.reserve_exact(more);
    for f in p.aux_features.iter_mut() {
        f.data.reserve_exact(more * f.height * f.width * f.dim);
    }
    if let Some(g) = p.gaussians.as_mut() {
        g.reserve_views(more);
    }
}

/// Brings a chunk predicted with input cameras into the job's frame, the first chunk's: each
/// pass fitted the similarity `T_k` from the user's cameras into its own predicted frame, so
/// `T_k⁻¹` then `T_0` takes chunk k's frame into chunk 0's. Extrinsics and depth move by it
/// unless the outputs are in the user's frame already (`align_to_input_ext_scale`). The
/// Gaussians, which every pass computes before any alignment in its network frame times
/// `c = pose scale / metric factor`, move by `x ↦ c_0·T_0(T_k⁻¹(x / c_k))`.
fn place_by_input_cameras(chunk: &mut Prediction, job_frame: &InputFrame, chunk_frame: &InputFrame, job: &Prediction) -> ChunkAlignment {
    let to_job = chunk_frame.sim3.inverse().then(&job_frame.sim3); // chunk frame -> job frame
    if !chunk_frame.user_frame {
        let to64 = |e: &[[f32; 4]; 3]| e.map(|r| r.map(f64::from));
        for e in chunk.extrinsics.iter_mut() {
            *e = apply_sim3(&to_job, &to64(e)).map(|r| r.map(|v| v as f32));
        }
        let s = to_job.scale as f32;
        chunk.depth.iter_mut().for_each(|d| *d *= s);
    }
    let gaussian_unit = |p: &Prediction| p.gaussian_pose_scale.unwrap_or(1.0) / p.scale_factor.map_or(1.0, f64::from);
    let sim = Sim3::scaling(1.0 / gaussian_unit(chunk)).then(&to_job).then(&Sim3::scaling(gaussian_unit(job)));
    if let Some(g) = chunk.gaussians.as_mut() {
        g.transform(&sim);
    }
    chunk.input_frame = Some(job_frame.clone());
    ChunkAlignment { sim3: to_job, umeyama_scale: None, max_rotation_error_deg: 0.0, max_centre_error: 0.0 }
}

/// Depth of view `i` with sky pixels (sky score ≥ [`NON_SKY_THRESHOLD`]) set to NaN, which
/// the scale fit skips.
fn without_sky(p: &Prediction, i: usize) -> Vec<f32> {
    let depth = p.depth_of(i);
    match &p.sky {
        Some(sky) => {
            let n = depth.len();
            depth.iter().zip(&sky[i * n..(i + 1) * n]).map(|(d, s)| if *s < NON_SKY_THRESHOLD { *d } else { f32::NAN }).collect()
        }
        None => depth.to_vec(),
    }
}

/// Re-fits the nested model's metric factor over all views of a stitched job, as the
/// reference's single pass fits it over all its views (see the module docs): the reference's
/// steps 2–5 ([`crate::nested::fit_metric_factor`]: confidence median of every non-sky pixel,
/// sampled with `seed` above 100k pixels; align mask; least squares) over the stitched depth
/// and the kept metric depth give `g`; depth, the translations and
/// [`Prediction::scale_factor`] are multiplied by `g` (the Gaussians, which the reference
/// computes before the metric scaling, stay in the frame `cameras / scale_factor`), and the sky
/// pixels get `min(q0.99(non-sky depth), 200)` of all views.
/// Returns `g`, or `None` when the prediction has no metric depth (not the nested model).
pub fn refit_metric_scale(p: &mut Prediction, seed: u64) -> Result<Option<f64>, Da3Error> {
    let Some(sky) = &p.sky else { return Ok(None) };
    if p.views == 0 || p.metric_depth.len() != p.depth.len() || p.conf.len() != p.depth.len() || sky.len() != p.depth.len() {
        return Ok(None);
    }
    let non_sky: Vec<bool> = sky.iter().map(|s| *s < NON_SKY_THRESHOLD).collect();
    let mut rng = SplitMix64::new(seed);
    let g = crate::nested::fit_metric_factor(&p.depth, &p.conf, &p.metric_depth, &non_sky, &mut rng)?;
    let g32 = g as f32;
    p.depth.iter_mut().for_each(|d| *d *= g32);
    for e in p.extrinsics.iter_mut() {
        e.iter_mut().for_each(|row| row[3] *= g32);
    }
    p.scale_factor = p.scale_factor.map(|m| (m as f64 * g) as f32);
    crate::nested::fill_sky(&mut p.depth, &mut p.conf, &non_sky, &mut rng);
    Ok(Some(g))
}

/// The similarity that takes a chunk's Gaussians into the job's Gaussian frame, given the
/// chunk's fitted similarity `sim3` (chunk frame → job frame) and the metric factors of the
/// chunk (`chunk_metric`, `m_k`) and of the first chunk (`job_metric`, `m_0`) of the nested
/// model (`None`: 1): `x ↦ (s·R·(m_k·x) + t) / m_0`. See the module docs.
pub fn gaussian_sim3(sim3: &Sim3, chunk_metric: Option<f32>, job_metric: Option<f32>) -> Sim3 {
    let (mk, m0) = (chunk_metric.map_or(1.0, f64::from), job_metric.map_or(1.0, f64::from));
    Sim3 {
        rotation: sim3.rotation,
        translation: sim3.translation.map(|t| t / m0),
        scale: sim3.scale * mk / m0,
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}
