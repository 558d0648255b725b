//! Camera poses and intrinsics from the ray map (`use_ray_pose`): the reference's
//! `get_extrinsic_from_camray` (`utils/ray_utils.py`) and the conversion in
//! `DepthAnything3Net._process_ray_pose_estimation` (`model/da3.py`), on host arrays in f64.
//!
//! Per view, with the ray map `[h', w', 6]` (direction 0..3, origin 3..6) and its confidence:
//! - the camera centre is the confidence-weighted mean of the ray origins;
//! - a homography maps an identity camera's image plane (cell centres of a `[-1, 1]²` grid) to
//!   the ray directions divided by their z. It is fitted by a confidence-weighted RANSAC:
//!   100 samples of 8 points from the 30 % most confident, each a weighted DLT, scored by the
//!   summed confidence of points reprojecting within 0.2; the best sample's inliers (at most
//!   8000, drawn at random from the 95 % most confident when there are more) are refitted;
//! - a QL decomposition of the homography (sign fixed to det > 0) gives the camera-to-world
//!   rotation and the lower-triangular `L`; `L / L₂₂` holds 1/focal on its diagonal and the
//!   principal point offset in its last row (both for a 2×2 image).
//!
//! The reference draws the samples with `torch.randperm` (unseeded). We draw them from
//! [`SplitMix64`] seeded by the caller so runs repeat exactly; like the reference, one table of
//! 100 samples is shared by all views. [`ray_pose_traced`] exposes the draws so the parity test
//! (`tools/golden/ray_pose.py`) can hand the same ones to the reference's functions.

use crate::linalg::{det3, sym_eigen, M3};
use crate::rng::SplitMix64;
use crate::Da3Error;

/// RANSAC iterations (`get_params_for_ransac`).
pub const RANSAC_ITERATIONS: usize = 100;
/// Points per RANSAC sample.
pub const SAMPLE_POINTS: usize = 8;
/// Samples come from the `max(8, ⌊0.3·N⌋)` most confident points.
pub const CANDIDATE_RATIO: f64 = 0.3;
/// Inlier threshold on the reprojection distance (image plane of size 2).
pub const REPROJECTION_THRESHOLD: f64 = 0.2;
/// At most this many inliers enter the final fit.
pub const MAX_REFIT_INLIERS: usize = 8000;
/// With more inliers than that, they are drawn from this most-confident fraction.
pub const REFIT_KEEP_RATIO: f64 = 0.95;
/// Rays whose direction has `|z|` at or below this get zero weight.
pub const Z_THRESHOLD: f64 = 1e-4;

/// A camera recovered from the ray map.
#[derive(Debug, Clone, PartialEq)]
pub struct RayCamera {
    /// World-to-camera `[R | t]` (OpenCV axes).
    pub world_to_camera: [[f64; 4]; 3],
    /// Pinhole intrinsics in pixels of the `H×W` image.
    pub intrinsics: M3,
}

/// What one view's fit went through, for parity tests.
#[derive(Debug, Clone, PartialEq)]
pub struct ViewFit {
    /// The RANSAC sample whose inliers were refitted (first best by summed confidence).
    pub best_sample: usize,
    /// Its inliers, as flat ray-map indices in ascending order.
    pub inliers: Vec<usize>,
    /// When there were more than [`MAX_REFIT_INLIERS`]: positions drawn into the list of
    /// inliers sorted by descending confidence (the reference's `perm`).
    pub refit_draw: Option<Vec<usize>>,
    /// The refitted homography, normalized to `H₂₂ = 1` (before the determinant sign fix).
    pub homography: M3,
    /// Camera-to-world rotation.
    pub rotation: M3,
    /// Camera centre in the world (the reference's `T`).
    pub centre: [f64; 3],
    /// Focal lengths (x, y) for an image of size 2×2.
    pub focal: [f64; 2],
    /// Principal point (x, y) for an image of size 2×2.
    pub principal_point: [f64; 2],
}

/// Every random draw and per-view fit of one call.
#[derive(Debug, Clone, PartialEq)]
pub struct RayPoseTrace {
    /// Size of the candidate pool (`max(8, ⌊0.3·N⌋)`).
    pub candidates: usize,
    /// The RANSAC samples: positions into the candidates sorted by descending confidence.
    pub samples: Vec<[usize; SAMPLE_POINTS]>,
    /// One entry per view.
    pub views: Vec<ViewFit>,
}

/// Cameras of `views` views from their ray maps `ray` [S, h', w', 6] and confidences
/// `ray_conf` [S, h', w'] for images of `height`×`width` pixels; `seed` fixes the RANSAC draws.
pub fn ray_pose(
    ray: &[f32],
    ray_conf: &[f32],
    views: usize,
    grid: (usize, usize),
    image: (usize, usize),
    seed: u64,
) -> Result<Vec<RayCamera>, Da3Error> {
    ray_pose_traced(ray, ray_conf, views, grid, image, seed).map(|(_, cams)| cams)
}

/// [`ray_pose`], also returning every draw and per-view result. `grid` is (h', w') of the ray
/// map and `image` is (H, W) of the processed image.
pub fn ray_pose_traced(
    ray: &[f32],
    ray_conf: &[f32],
    views: usize,
    grid: (usize, usize),
    image: (usize, usize),
    seed: u64,
) -> Result<(RayPoseTrace, Vec<RayCamera>), Da3Error> {
    let (gh, gw) = grid;
    let n = gh * gw;
    if ray.len() != views * n * 6 || ray_conf.len() != views * n {
        return Err(Da3Error::Input(format!(
            "ray map of {} values and confidence of {} for {views} views of {gh}x{gw} (expected {} and {})",
            ray.len(),
            ray_conf.len(),
            views * n * 6,
            views * n
        )));
    }
    if n < SAMPLE_POINTS {
        return Err(Da3Error::Input(format!(
            "a {gh}x{gw} ray map has fewer than {SAMPLE_POINTS} rays; ray poses need a larger image"
        )));
    }
    let candidates = ((n as f64 * CANDIDATE_RATIO) as usize).max(SAMPLE_POINTS);
    let mut rng = SplitMix64::new(seed);
    let samples: Vec<[usize; SAMPLE_POINTS]> = (0..RANSAC_ITERATIONS)
        .map(|_| rng.sample_distinct(candidates, SAMPLE_POINTS).try_into().expect("8 draws"))
        .collect();
    let src = source_grid(gh, gw);
    let mut fits = Vec::with_capacity(views);
    let mut cams = Vec::with_capacity(views);
    for v in 0..views {
        let fit = fit_view(&ray[v * n * 6..(v + 1) * n * 6], &ray_conf[v * n..(v + 1) * n], &src, &samples, candidates, &mut rng)
            .map_err(|why| Da3Error::Input(format!("ray pose of view {v}: {why}")))?;
        cams.push(camera_from_fit(&fit, image));
        fits.push(fit);
    }
    Ok((RayPoseTrace { candidates, samples, views: fits }, cams))
}

/// The identity camera's image plane: cell centres of a `w'×h'` grid over `[-1, 1]²`,
/// row-major (`unproject_depth` with `ixt_normalized`, K = [[1,0,1],[0,1,1],[0,0,1]]).
fn source_grid(gh: usize, gw: usize) -> Vec<[f64; 2]> {
    let centre = |i: usize, count: usize| (2 * i + 1) as f64 / count as f64 - 1.0;
    (0..gh).flat_map(|y| (0..gw).map(move |x| [centre(x, gw), centre(y, gh)])).collect()
}

/// RANSAC homography, QL decomposition and centre of one view.
fn fit_view(
    ray: &[f32],
    conf: &[f32],
    src: &[[f64; 2]],
    samples: &[[usize; SAMPLE_POINTS]],
    candidates: usize,
    rng: &mut SplitMix64,
) -> Result<ViewFit, String> {
    let n = src.len();
    // Destinations: ray directions over their z; rays with |z| ≤ 1e-4 keep x, y and get weight
    // 0 (the reference zeroes the confidence in place, so the centre ignores them too).
    // Non-finite or negative confidences also weigh 0 (the reference would produce NaN).
    let mut dst = Vec::with_capacity(n);
    let mut weight = Vec::with_capacity(n);
    for (r, &c) in ray.chunks_exact(6).zip(conf) {
        let (x, y, z) = (r[0] as f64, r[1] as f64, r[2] as f64);
        let valid = z.abs() > Z_THRESHOLD && c.is_finite() && c >= 0.0 && r.iter().all(|v| v.is_finite());
        dst.push(if z.abs() > Z_THRESHOLD { [x / z, y / z] } else { [x, y] });
        weight.push(if valid { c as f64 } else { 0.0 });
    }
    let total: f64 = weight.iter().sum();
    if !(total > 0.0) {
        return Err("no ray has a usable direction and confidence".into());
    }
    let mut centre = [0.0; 3];
    for (r, w) in ray.chunks_exact(6).zip(&weight) {
        for k in 0..3 {
            if *w > 0.0 {
                centre[k] += w * r[3 + k] as f64;
            }
        }
    }
    let centre = centre.map(|c| c / total);

    // Candidates: the most confident points (stable order on ties).
    let mut by_weight: Vec<usize> = (0..n).collect();
    by_weight.sort_by(|&a, &b| weight[b].total_cmp(&weight[a]));
    let pool = &by_weight[..candidates];

    let mut best: Option<(usize, f64, Vec<bool>)> = None;
    for (i, sample) in samples.iter().enumerate() {
        let points: Vec<usize> = sample.iter().map(|&p| pool[p]).collect();
        let h = weighted_dlt(points.iter().map(|&k| (src[k], dst[k], weight[k])));
        let inlier: Vec<bool> = (0..n).map(|k| reprojection_error(&h, src[k], dst[k]) < REPROJECTION_THRESHOLD).collect();
        let score: f64 = inlier.iter().zip(&weight).filter(|(i, _)| **i).map(|(_, w)| w).sum();
        if best.as_ref().is_none_or(|(_, s, _)| score > *s) {
            best = Some((i, score, inlier));
        }
    }
    let (best_sample, _, inlier) = best.expect("100 samples");
    let inliers: Vec<usize> = (0..n).filter(|&k| inlier[k]).collect();
    if inliers.len() < 4 {
        return Err(format!("only {} rays agree with any homography (4 needed)", inliers.len()));
    }
    let mut sorted = inliers.clone();
    sorted.sort_by(|&a, &b| weight[b].total_cmp(&weight[a]));
    let (refit, refit_draw) = if sorted.len() > MAX_REFIT_INLIERS {
        let keep = ((sorted.len() as f64 * REFIT_KEEP_RATIO) as usize).max(MAX_REFIT_INLIERS);
        let draw = rng.sample_distinct(keep, MAX_REFIT_INLIERS);
        (draw.iter().map(|&p| sorted[p]).collect(), Some(draw))
    } else {
        (sorted, None)
    };
    let homography = weighted_dlt(refit.iter().map(|&k| (src[k], dst[k], weight[k])));
    if !homography.iter().flatten().all(|v| v.is_finite()) {
        return Err("the ray directions do not determine a homography".into());
    }
    let a = if det3(&homography) < 0.0 { homography.map(|r| r.map(|v| -v)) } else { homography };
    let (rotation, l) = ql_decomposition(&a).ok_or("the fitted homography is singular")?;
    let focal = [l[2][2] / l[0][0], l[2][2] / l[1][1]];
    let principal_point = [l[2][0] / l[2][2] + 1.0, l[2][1] / l[2][2] + 1.0];
    Ok(ViewFit { best_sample, inliers, refit_draw, homography, rotation, centre, focal, principal_point })
}

/// Weighted least-squares homography (`find_homography_least_squares_weighted_torch`): the
/// right singular vector of the smallest singular value of the 2N×9 DLT matrix with rows
/// scaled by √w, i.e. the eigenvector of the smallest eigenvalue of its Gram matrix,
/// normalized to `H₂₂ = 1`.
fn weighted_dlt(points: impl Iterator<Item = ([f64; 2], [f64; 2], f64)>) -> M3 {
    let mut gram = [[0.0f64; 9]; 9];
    for ([x, y], [u, v], w) in points {
        let r1 = [-x, -y, -1.0, 0.0, 0.0, 0.0, x * u, y * u, u];
        let r2 = [0.0, 0.0, 0.0, -x, -y, -1.0, x * v, y * v, v];
        for i in 0..9 {
            for j in 0..9 {
                gram[i][j] += w * (r1[i] * r1[j] + r2[i] * r2[j]);
            }
        }
    }
    let (_, vectors) = sym_eigen(&gram);
    let h: [f64; 9] = std::array::from_fn(|i| vectors[i][0]);
    std::array::from_fn(|r| std::array::from_fn(|c| h[r * 3 + c] / h[8]))
}

/// Distance between `H·src` (dehomogenized) and `dst`; NaN when H is degenerate (never inlier).
fn reprojection_error(h: &M3, src: [f64; 2], dst: [f64; 2]) -> f64 {
    let p = [0, 1, 2].map(|r| h[r][0] * src[0] + h[r][1] * src[1] + h[r][2]);
    let (dx, dy) = (p[0] / p[2] - dst[0], p[1] / p[2] - dst[1]);
    (dx * dx + dy * dy).sqrt()
}

/// `A = Q · L` with Q orthogonal and L lower triangular with a positive diagonal (unique for
/// an invertible A, so equal to the reference's QR-of-reversed-columns with its sign fix).
/// Gram–Schmidt on the columns of A from the last to the first. `None` if A is singular.
fn ql_decomposition(a: &M3) -> Option<(M3, M3)> {
    let col = |c: usize| [a[0][c], a[1][c], a[2][c]];
    let mut q = [[0.0f64; 3]; 3]; // columns q[.][c]
    let mut l = [[0.0f64; 3]; 3];
    for c in (0..3).rev() {
        let mut x = col(c);
        // Two passes of modified Gram–Schmidt against the columns already found.
        for _ in 0..2 {
            for k in c + 1..3 {
                let qk = [q[0][k], q[1][k], q[2][k]];
                let d = qk[0] * x[0] + qk[1] * x[1] + qk[2] * x[2];
                l[k][c] += d;
                for r in 0..3 {
                    x[r] -= d * qk[r];
                }
            }
        }
        let norm = (x[0] * x[0] + x[1] * x[1] + x[2] * x[2]).sqrt();
        if !(norm > 1e-12 * (1.0 + l.iter().flatten().fold(0.0f64, |m, v| m.max(v.abs())))) {
            return None;
        }
        l[c][c] = norm;
        for r in 0..3 {
            q[r][c] = x[r] / norm;
        }
    }
    // A = Q·L: column c of A = Σ_k q_k · L[k][c] with k ≥ c, so L[k][c] for k > c holds the
    // projections computed above: L is lower triangular.
    Some((q, l))
}

/// The reference's `affine_inverse` of `[R | T]` and the intrinsics of `da3.py`:
/// `fx = f_x/2·W`, `fy = f_y/2·H`, `cx = p_x·W/2`, `cy = p_y·H/2`.
fn camera_from_fit(fit: &ViewFit, (height, width): (usize, usize)) -> RayCamera {
    let r = &fit.rotation;
    let c = &fit.centre;
    let world_to_camera = std::array::from_fn(|i| {
        let t = -(0..3).map(|k| r[k][i] * c[k]).sum::<f64>();
        [r[0][i], r[1][i], r[2][i], t]
    });
    let (w, h) = (width as f64, height as f64);
    let intrinsics = [
        [fit.focal[0] / 2.0 * w, 0.0, fit.principal_point[0] * w * 0.5],
        [0.0, fit.focal[1] / 2.0 * h, fit.principal_point[1] * h * 0.5],
        [0.0, 0.0, 1.0],
    ];
    RayCamera { world_to_camera, intrinsics }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linalg::{mul3, transpose3};

    #[test]
    fn ql_reconstructs_with_positive_diagonal() {
        let a = [[0.9, -0.3, 0.2], [0.25, 1.1, -0.4], [-0.1, 0.35, 0.8]];
        let (q, l) = ql_decomposition(&a).unwrap();
        let qa = mul3(&q, &l);
        let qtq = mul3(&transpose3(&q), &q);
        for r in 0..3 {
            assert!(l[r][r] > 0.0);
            for c in 0..3 {
                assert!((qa[r][c] - a[r][c]).abs() < 1e-12);
                assert!((qtq[r][c] - f64::from(r == c)).abs() < 1e-12);
                if c > r {
                    assert_eq!(l[r][c], 0.0);
                }
            }
        }
        assert!(ql_decomposition(&[[1.0, 2.0, 0.0], [2.0, 4.0, 0.0], [0.0, 0.0, 1.0]]).is_none());
    }
}
