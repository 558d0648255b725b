//! Aligning predicted cameras with the user's (pose-conditioned inference): the reference's
//! `utils/pose_align.py::align_poses_umeyama` (Umeyama Sim(3) on camera centres, as evo's
//! `PosePath3D.align(correct_scale=True)`, with a RANSAC variant) and
//! `DepthAnything3._align_to_input_extrinsics_intrinsics` (`api.py`), in f64.
//!
//! As in the reference the user's poses are the *estimate* and the prediction the
//! *reference*: the Sim(3) maps the user's camera centres onto the predicted ones, so its
//! scale converts user units into prediction units (depth / scale is in user units).
//!
//! Randomness: the reference's RANSAC (≥ 10 views) samples with `np.random.default_rng(42)`
//! (PCG64). We draw from [`SplitMix64`] seeded by the caller (42 by default) instead; the parity
//! test (`tools/golden/align.py`) hands the reference our samples.
//!
//! Degenerate geometry: where the reference raises (fewer than 3 views, or all camera centres
//! on one line, make the covariance rank < 2), we fall back to a well-defined Sim(3) (see
//! [`fallback_sim3`]) so that pose-conditioned inference on 1 or 2 views still works.

use crate::api::{InputCameras, Prediction};
use crate::camera_enc::Mat4;
use crate::linalg::{mul3, mul3v, signed_svd3, transpose3, M3};
use crate::rng::SplitMix64;
use crate::Da3Error;

/// A world-to-camera `[R | t]`, row-major.
pub type Extrinsics = [[f64; 4]; 3];

/// RANSAC is used from this many views on (`ransac_view_thresh`).
pub const RANSAC_MIN_VIEWS: usize = 10;
/// RANSAC iterations (`ransac_max_iters`).
pub const RANSAC_ITERATIONS: usize = 10;

/// A similarity transform `x ↦ scale · rotation · x + translation`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sim3 {
    /// Rotation.
    pub rotation: M3,
    /// Translation.
    pub translation: [f64; 3],
    /// Scale.
    pub scale: f64,
}

impl Sim3 {
    /// The identity.
    pub fn identity() -> Self {
        Sim3 { rotation: [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], translation: [0.0; 3], scale: 1.0 }
    }

    /// A pure scaling `x ↦ s·x`.
    pub fn scaling(s: f64) -> Self {
        Sim3 { scale: s, ..Self::identity() }
    }

    /// The inverse `x ↦ (1/s)·Rᵀ·(x − t)`.
    pub fn inverse(&self) -> Self {
        let rt = transpose3(&self.rotation);
        let inv_t = mul3v(&rt, &self.translation);
        Sim3 { rotation: rt, translation: inv_t.map(|v| -v / self.scale), scale: 1.0 / self.scale }
    }

    /// `self` first, then `next`: `x ↦ next(self(x))`.
    pub fn then(&self, next: &Sim3) -> Self {
        let rt = mul3v(&next.rotation, &self.translation);
        Sim3 {
            rotation: mul3(&next.rotation, &self.rotation),
            translation: std::array::from_fn(|k| next.scale * rt[k] + next.translation[k]),
            scale: next.scale * self.scale,
        }
    }
}

/// How a pass with input cameras was aligned to them ([`align_to_input_cameras`]); a chunked
/// job brings its chunks into one frame with it.
#[derive(Debug, Clone, PartialEq)]
pub struct InputFrame {
    /// The fitted similarity from the user's camera frame into the pass's predicted frame.
    pub sim3: Sim3,
    /// Whether the outputs were put in the user's frame (`align_to_input_ext_scale`: the
    /// user's extrinsics, depth divided by the scale) rather than in the predicted frame.
    pub user_frame: bool,
}

/// Why Umeyama's method has no unique answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Degenerate;

/// The result of [`align_poses`].
#[derive(Debug, Clone, PartialEq)]
pub struct PoseAlignment {
    /// Maps the estimate's camera centres onto the reference's.
    pub sim3: Sim3,
    /// The estimate's extrinsics moved by `sim3` (world-to-camera, [S, 3, 4]).
    pub aligned: Vec<Extrinsics>,
    /// RANSAC details when it ran.
    pub ransac: Option<RansacTrace>,
}

/// What the RANSAC drew and kept, for parity tests.
#[derive(Debug, Clone, PartialEq)]
pub struct RansacTrace {
    /// The views of each sample, in draw order.
    pub samples: Vec<Vec<usize>>,
    /// Inlier threshold: the median distance from each pre-aligned estimated centre to its
    /// nearest reference centre.
    pub threshold: f64,
    /// The best sample's inliers (`None` when every sample was degenerate).
    pub inliers: Option<Vec<bool>>,
}

/// Umeyama's least-squares Sim(3) with `target ≈ s·R·source + t` (evo's
/// `umeyama_alignment(x=source, y=target, with_scale=True)`). Fails when the cross-covariance
/// has rank < 2 (fewer than 3 points, or all on a line).
pub fn umeyama(source: &[[f64; 3]], target: &[[f64; 3]]) -> Result<Sim3, Degenerate> {
    let n = source.len();
    if n == 0 || n != target.len() {
        return Err(Degenerate);
    }
    let mx = mean(source);
    let my = mean(target);
    let sigma_x = source.iter().map(|p| sq_dist(p, &mx)).sum::<f64>() / n as f64;
    let mut cov = [[0.0; 3]; 3];
    for (x, y) in source.iter().zip(target) {
        for r in 0..3 {
            for c in 0..3 {
                cov[r][c] += (y[r] - my[r]) * (x[c] - mx[c]);
            }
        }
    }
    let cov = cov.map(|row| row.map(|v| v / n as f64));
    let (u, d, v) = signed_svd3(&cov).ok_or(Degenerate)?;
    let rotation = mul3(&u, &transpose3(&v));
    let scale = (d[0] + d[1] + d[2]) / sigma_x;
    if !scale.is_finite() {
        return Err(Degenerate);
    }
    let rm = mul3v(&rotation, &mx);
    let translation = std::array::from_fn(|k| my[k] - scale * rm[k]);
    Ok(Sim3 { rotation, translation, scale })
}

/// `align_poses_umeyama(ext_ref, ext_est, return_aligned=True, ransac=...)`: the Sim(3) taking
/// the estimated cameras onto the reference ones, and the estimated extrinsics moved by it.
/// With `ransac`, 10 random subsets of `max(3, ⌈N/2⌉)` views are fitted and the one with the
/// most inliers (ties: smallest mean error) is refitted on its inliers; `seed` fixes the draws.
pub fn align_poses(ext_ref: &[Extrinsics], ext_est: &[Extrinsics], ransac: bool, seed: u64) -> Result<PoseAlignment, Da3Error> {
    if ext_ref.len() != ext_est.len() || ext_ref.is_empty() {
        return Err(Da3Error::Input(format!(
            "cannot align {} estimated cameras with {} reference cameras",
            ext_est.len(),
            ext_ref.len()
        )));
    }
    let c_ref: Vec<[f64; 3]> = ext_ref.iter().map(camera_centre).collect();
    let c_est: Vec<[f64; 3]> = ext_est.iter().map(camera_centre).collect();
    let fit = |idx: &[usize]| {
        let pick = |c: &[[f64; 3]]| idx.iter().map(|&i| c[i]).collect::<Vec<_>>();
        umeyama(&pick(&c_est), &pick(&c_ref))
    };
    let all: Vec<usize> = (0..ext_ref.len()).collect();
    let (sim3, trace) = if ransac {
        let (s, t) = ransac_sim3(&c_ref, &c_est, seed, &fit).unwrap_or_else(|| (fallback_sim3(ext_ref, ext_est), None));
        (s, t)
    } else {
        (fit(&all).unwrap_or_else(|_| fallback_sim3(ext_ref, ext_est)), None)
    };
    let aligned = ext_est.iter().map(|e| apply_sim3(&sim3, e)).collect();
    Ok(PoseAlignment { sim3, aligned, ransac: trace })
}

/// The RANSAC of `_ransac_align_sim3`; `None` when even the pre-alignment is degenerate.
fn ransac_sim3(
    c_ref: &[[f64; 3]],
    c_est: &[[f64; 3]],
    seed: u64,
    fit: &dyn Fn(&[usize]) -> Result<Sim3, Degenerate>,
) -> Option<(Sim3, Option<RansacTrace>)> {
    let n = c_ref.len();
    let sub_n = 3.max(n.div_ceil(2)).min(n);
    let all: Vec<usize> = (0..n).collect();
    let pre = fit(&all).ok()?;
    let pre_aligned: Vec<[f64; 3]> = c_est.iter().map(|c| transform_point(&pre, c)).collect();
    let nearest: Vec<f64> =
        pre_aligned.iter().map(|p| c_ref.iter().map(|q| sq_dist(p, q).sqrt()).fold(f64::INFINITY, f64::min)).collect();
    let threshold = median(nearest);
    let mut rng = SplitMix64::new(seed);
    let mut samples = Vec::with_capacity(RANSAC_ITERATIONS);
    let mut best: Option<(usize, f64, Sim3, Vec<bool>)> = None;
    for _ in 0..RANSAC_ITERATIONS {
        let sample = rng.sample_distinct(n, sub_n);
        samples.push(sample.clone());
        let Ok(model) = fit(&sample) else { continue };
        let errs: Vec<f64> = c_est.iter().zip(c_ref).map(|(e, r)| sq_dist(&transform_point(&model, e), r).sqrt()).collect();
        let inliers: Vec<bool> = errs.iter().map(|e| *e <= threshold).collect();
        let k = inliers.iter().filter(|i| **i).count();
        let mean_err = if k > 0 {
            errs.iter().zip(&inliers).filter(|(_, i)| **i).map(|(e, _)| e).sum::<f64>() / k as f64
        } else {
            f64::INFINITY
        };
        let better = match &best {
            None => true,
            Some((bk, be, _, _)) => k > *bk || (k == *bk && mean_err < *be),
        };
        if better {
            best = Some((k, mean_err, model, inliers));
        }
    }
    let (sim3, inliers) = match best {
        Some((k, _, model, inliers)) => {
            let idx: Vec<usize> = (0..n).filter(|&i| inliers[i]).collect();
            // The reference refits on ≥ 3 inliers (and raises if they are collinear; we keep
            // the sample's model then).
            let refit = if k >= 3 { fit(&idx).unwrap_or(model) } else { model };
            (refit, Some(inliers))
        }
        None => (pre, None),
    };
    Some((sim3, Some(RansacTrace { samples, threshold, inliers })))
}

/// The Sim(3) used where Umeyama's is not unique (our addition; the reference raises): the
/// rotation that makes camera 0's orientations agree, the ratio of the RMS spreads of the
/// camera centres as scale (1 when the estimate's centres coincide), and the translation that
/// matches the centroids.
pub fn fallback_sim3(ext_ref: &[Extrinsics], ext_est: &[Extrinsics]) -> Sim3 {
    let rot = |e: &Extrinsics| -> M3 { std::array::from_fn(|r| std::array::from_fn(|c| e[r][c])) };
    // Camera-to-world rotations are the transposes; r · R_est_c2w = R_ref_c2w.
    let rotation = mul3(&transpose3(&rot(&ext_ref[0])), &rot(&ext_est[0]));
    let c_ref: Vec<[f64; 3]> = ext_ref.iter().map(camera_centre).collect();
    let c_est: Vec<[f64; 3]> = ext_est.iter().map(camera_centre).collect();
    let (my, mx) = (mean(&c_ref), mean(&c_est));
    let spread = |c: &[[f64; 3]], m: &[f64; 3]| c.iter().map(|p| sq_dist(p, m)).sum::<f64>();
    let (sy, sx) = (spread(&c_ref, &my), spread(&c_est, &mx));
    let scale = if sx > 0.0 && sy > 0.0 { (sy / sx).sqrt() } else { 1.0 };
    let rm = mul3v(&rotation, &mx);
    Sim3 { rotation, translation: std::array::from_fn(|k| my[k] - scale * rm[k]), scale }
}

/// `DepthAnything3._align_to_input_extrinsics_intrinsics`: the prediction takes the user's
/// intrinsics; with `use_input_scale` also the user's extrinsics, with depth divided by the
/// Sim(3) scale (user units), otherwise the user's poses Sim(3)-aligned into the predicted
/// frame. RANSAC from [`RANSAC_MIN_VIEWS`] views on, seeded by `seed`. Returns the alignment.
pub fn align_to_input_cameras(
    prediction: &mut Prediction,
    cameras: &InputCameras,
    use_input_scale: bool,
    seed: u64,
) -> Result<PoseAlignment, Da3Error> {
    if !prediction.has_cameras() {
        return Err(Da3Error::Input(
            "this model predicts no cameras (mono/metric), so it cannot use input cameras; \
             use a main-series model (da3-small/base/large/giant) for pose-conditioned inference"
                .into(),
        ));
    }
    let s = prediction.views;
    if cameras.world_to_camera.len() != s || cameras.intrinsics.len() != s {
        return Err(Da3Error::Input(format!(
            "{} extrinsics and {} intrinsics given for {s} views; give one of each per view",
            cameras.world_to_camera.len(),
            cameras.intrinsics.len()
        )));
    }
    let predicted: Vec<Extrinsics> = prediction.extrinsics.iter().map(|e| e.map(|r| r.map(f64::from))).collect();
    let user: Vec<Extrinsics> = cameras.world_to_camera.iter().map(top_rows).collect();
    let alignment = align_poses(&predicted, &user, s >= RANSAC_MIN_VIEWS, seed)?;
    prediction.intrinsics = cameras.intrinsics.iter().map(|k| k.map(|r| r.map(|v| v as f32))).collect();
    if use_input_scale {
        prediction.extrinsics = user.iter().map(|e| e.map(|r| r.map(|v| v as f32))).collect();
        let scale = alignment.sim3.scale;
        for d in &mut prediction.depth {
            *d = (*d as f64 / scale) as f32;
        }
    } else {
        prediction.extrinsics = alignment.aligned.iter().map(|e| e.map(|r| r.map(|v| v as f32))).collect();
    }
    Ok(alignment)
}

/// The estimate's pose moved by the Sim(3): camera-to-world `[r·R | s·r·C + t]`, returned as
/// world-to-camera.
pub fn apply_sim3(sim3: &Sim3, ext: &Extrinsics) -> Extrinsics {
    let r_w2c: M3 = std::array::from_fn(|r| std::array::from_fn(|c| ext[r][c]));
    let r_c2w = mul3(&sim3.rotation, &transpose3(&r_w2c));
    let centre = transform_point(sim3, &camera_centre(ext));
    let r_new = transpose3(&r_c2w);
    let t = mul3v(&r_new, &centre);
    std::array::from_fn(|r| [r_new[r][0], r_new[r][1], r_new[r][2], -t[r]])
}

/// Camera centre `−Rᵀ t` of a world-to-camera `[R | t]`.
pub fn camera_centre(ext: &Extrinsics) -> [f64; 3] {
    std::array::from_fn(|c| -(0..3).map(|r| ext[r][c] * ext[r][3]).sum::<f64>())
}

/// `sim3` applied to the point `p`.
pub fn transform_point(sim3: &Sim3, p: &[f64; 3]) -> [f64; 3] {
    let rp = mul3v(&sim3.rotation, p);
    std::array::from_fn(|k| sim3.scale * rp[k] + sim3.translation[k])
}

fn top_rows(m: &Mat4) -> Extrinsics {
    [m[0], m[1], m[2]]
}

fn mean(points: &[[f64; 3]]) -> [f64; 3] {
    let n = points.len() as f64;
    std::array::from_fn(|k| points.iter().map(|p| p[k]).sum::<f64>() / n)
}

fn sq_dist(a: &[f64; 3], b: &[f64; 3]) -> f64 {
    (0..3).map(|k| (a[k] - b[k]).powi(2)).sum()
}

/// `np.median`: the mean of the two middle values for an even count.
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        0.0
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn some_sim3() -> Sim3 {
        let (a, b) = (0.7f64, -0.3f64);
        let rz = [[a.cos(), -a.sin(), 0.0], [a.sin(), a.cos(), 0.0], [0.0, 0.0, 1.0]];
        let rx = [[1.0, 0.0, 0.0], [0.0, b.cos(), -b.sin()], [0.0, b.sin(), b.cos()]];
        Sim3 { rotation: mul3(&rz, &rx), translation: [0.4, -1.2, 2.5], scale: 1.7 }
    }

    #[test]
    fn inverse_and_composition_act_on_points_as_written() {
        let (a, b) = (some_sim3(), Sim3 { scale: 0.6, translation: [1.0, 0.0, -0.5], ..Sim3::identity() });
        let p = [0.3, -0.8, 1.9];
        let back = transform_point(&a.inverse(), &transform_point(&a, &p));
        let both = transform_point(&a.then(&b), &p);
        let step = transform_point(&b, &transform_point(&a, &p));
        for k in 0..3 {
            assert!((back[k] - p[k]).abs() < 1e-12, "{back:?} vs {p:?}");
            assert!((both[k] - step[k]).abs() < 1e-12, "{both:?} vs {step:?}");
        }
        assert!((a.then(&Sim3::scaling(2.0)).scale - 3.4).abs() < 1e-12);
    }
}
