//! Small numeric helpers shared by the exporters: 3×3 inverses, camera-to-world poses,
//! NumPy-compatible percentiles, seeded subsampling and unprojection of depth to points.

use da3::Prediction;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::error::{ExportError, Result};
use crate::image::ImageRgb8;
use crate::order_stats::streamed_percentiles;

/// A 3×3 matrix, row-major, in double precision.
pub type Mat3 = [[f64; 3]; 3];
/// An affine transform `[A | t]` (3×4, row-major): `y = A x + t`.
pub type Affine = [[f64; 4]; 3];

/// The inverse of `m`, or `None` if it is singular or not finite.
pub fn inverse3(m: &Mat3) -> Option<Mat3> {
    let c = |r: usize, s: usize| {
        m[(r + 1) % 3][(s + 1) % 3] * m[(r + 2) % 3][(s + 2) % 3]
            - m[(r + 1) % 3][(s + 2) % 3] * m[(r + 2) % 3][(s + 1) % 3]
    };
    // cofactor(r, s) = c(r, s) thanks to the cyclic index order; inverse = adjugate / det.
    let det = m[0][0] * c(0, 0) + m[0][1] * c(0, 1) + m[0][2] * c(0, 2);
    if det == 0.0 || !det.is_finite() {
        return None;
    }
    let inv: Mat3 = std::array::from_fn(|i| std::array::from_fn(|j| c(j, i) / det));
    inv.iter().flatten().all(|v| v.is_finite()).then_some(inv)
}

/// Applies `m` to the column vector `v`.
pub fn mat3_mul_vec(m: &Mat3, v: [f64; 3]) -> [f64; 3] {
    std::array::from_fn(|r| m[r][0] * v[0] + m[r][1] * v[1] + m[r][2] * v[2])
}

/// Applies the affine transform `a` to the point `p`.
pub fn affine_apply(a: &Affine, p: [f64; 3]) -> [f64; 3] {
    std::array::from_fn(|r| a[r][0] * p[0] + a[r][1] * p[1] + a[r][2] * p[2] + a[r][3])
}

/// The composition `a ∘ b` (apply `b` first).
pub fn affine_compose(a: &Affine, b: &Affine) -> Affine {
    std::array::from_fn(|r| {
        std::array::from_fn(|c| {
            let lin = a[r][0] * b[0][c] + a[r][1] * b[1][c] + a[r][2] * b[2][c];
            if c == 3 {
                lin + a[r][3]
            } else {
                lin
            }
        })
    })
}

/// The inverse of an affine transform (general 3×3 inverse, not assuming a rotation), or
/// `None` if its linear part is singular.
pub fn affine_inverse(a: &Affine) -> Option<Affine> {
    let lin: Mat3 = std::array::from_fn(|r| [a[r][0], a[r][1], a[r][2]]);
    let inv = inverse3(&lin)?;
    let t = mat3_mul_vec(&inv, [a[0][3], a[1][3], a[2][3]]);
    Some(std::array::from_fn(|r| {
        [inv[r][0], inv[r][1], inv[r][2], -t[r]]
    }))
}

/// A `[[f32; 4]; 3]` extrinsic widened to double precision.
pub fn affine_from_f32(e: &[[f32; 4]; 3]) -> Affine {
    e.map(|row| row.map(f64::from))
}

/// A `[[f32; 3]; 3]` intrinsic matrix widened to double precision.
pub fn mat3_from_f32(k: &[[f32; 3]; 3]) -> Mat3 {
    k.map(|row| row.map(f64::from))
}

/// Camera-to-world pose of view `i` (inverse of its world-to-camera extrinsic).
pub fn cam_to_world(pred: &Prediction, i: usize) -> Result<Affine> {
    let e = pred
        .extrinsics
        .get(i)
        .ok_or_else(|| ExportError::Input(format!("no extrinsics for view {i}")))?;
    affine_inverse(&affine_from_f32(e)).ok_or_else(|| {
        ExportError::Input(format!("extrinsics of view {i} are not invertible: {e:?}"))
    })
}

/// Inverse intrinsics of view `i`.
pub fn inverse_intrinsics(pred: &Prediction, i: usize) -> Result<Mat3> {
    let k = pred
        .intrinsics
        .get(i)
        .ok_or_else(|| ExportError::Input(format!("no intrinsics for view {i}")))?;
    inverse3(&mat3_from_f32(k)).ok_or_else(|| {
        ExportError::Input(format!("intrinsics of view {i} are not invertible: {k:?}"))
    })
}

/// A float type the percentile helpers accept (`f32` or `f64`).
pub trait Real: Copy {
    /// The value in double precision.
    fn to_f64(self) -> f64;
    /// IEEE total order (NaN above +∞).
    fn total_order(&self, other: &Self) -> std::cmp::Ordering;
}

impl Real for f32 {
    fn to_f64(self) -> f64 {
        f64::from(self)
    }
    fn total_order(&self, other: &Self) -> std::cmp::Ordering {
        self.total_cmp(other)
    }
}

impl Real for f64 {
    fn to_f64(self) -> f64 {
        self
    }
    fn total_order(&self, other: &Self) -> std::cmp::Ordering {
        self.total_cmp(other)
    }
}

/// The `p`-th percentile (0–100) of `values` as `numpy.percentile` computes it (method
/// "linear": interpolate between the two nearest order statistics), or `None` when empty.
/// NaNs sort above +∞ here, where NumPy would return NaN.
pub fn percentile<T: Real>(values: &[T], p: f64) -> Option<f64> {
    percentiles(values, &[p]).map(|v| v[0])
}

/// Several percentiles of the same data (see [`percentile`]), equal to sorting once and
/// reading [`percentile_of_sorted`].
///
/// Only the order statistics the percentiles need are selected (`select_nth_unstable`, in
/// ascending rank, each within the part right of the previous one): O(n) per statistic
/// instead of a sort's O(n log n). Why: the GLB's scene scale (5th and 95th percentiles of
/// every axis of up to a million points) sorted 1 % of an 8-view `da3 infer` with every
/// export on its critical path (2026-11-24).
pub fn percentiles<T: Real>(values: &[T], ps: &[f64]) -> Option<Vec<f64>> {
    if values.is_empty() {
        return None;
    }
    let mut partial = values.to_vec();
    let positions: Vec<(usize, usize, f64)> = ps.iter().map(|&p| percentile_position(values.len(), p)).collect();
    let mut ranks: Vec<usize> = positions.iter().flat_map(|&(lo, hi, _)| [lo, hi]).collect();
    ranks.sort_unstable();
    ranks.dedup();
    // After each selection partial[r] is the rank-r statistic and nothing right of it is
    // smaller, so the next (larger) rank is found among partial[r + 1..].
    let mut start = 0;
    for r in ranks {
        partial[start..].select_nth_unstable_by(r - start, T::total_order);
        start = r + 1;
    }
    Some(positions.into_iter().map(|(lo, hi, t)| lerp_percentile(partial[lo].to_f64(), partial[hi].to_f64(), t)).collect())
}

/// [`percentile`] of already sorted data (NaN when empty).
pub fn percentile_of_sorted<T: Real>(sorted: &[T], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let (lo, hi, t) = percentile_position(sorted.len(), p);
    lerp_percentile(sorted[lo].to_f64(), sorted[hi].to_f64(), t)
}

/// Where the `p`-th percentile of `n > 0` sorted values lies: between the order statistics
/// `lo` and `hi` (0-based ranks), at fraction `t` of the way (NumPy's "linear" method).
pub fn percentile_position(n: usize, p: f64) -> (usize, usize, f64) {
    let index = (p / 100.0).clamp(0.0, 1.0) * (n - 1) as f64;
    let lo = (index.floor() as usize).min(n - 1);
    let hi = (lo + 1).min(n - 1);
    (lo, hi, index - lo as f64)
}

/// NumPy's `_lerp` of the order statistics `a <= b` at `t`: the formula that is exact at the
/// end nearer to `t`.
pub fn lerp_percentile(a: f64, b: f64, t: f64) -> f64 {
    let diff = b - a;
    if t >= 0.5 {
        b - diff * (1.0 - t)
    } else {
        a + diff * t
    }
}

/// The median of `values` as `numpy.median` computes it (mean of the two middle values for
/// an even count), or `None` when empty.
pub fn median<T: Real>(values: &[T]) -> Option<f64> {
    percentile(values, 50.0)
}

/// `k` distinct indices out of `0..n`, drawn uniformly with a ChaCha8 generator seeded by
/// `seed` (the same on every platform and run), in increasing order. All of `0..n` when
/// `k >= n`.
pub fn subsample_indices(n: usize, k: usize, seed: u64) -> Vec<usize> {
    if k >= n {
        return (0..n).collect();
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut idx = rand::seq::index::sample(&mut rng, n, k).into_vec();
    idx.sort_unstable();
    idx
}

/// Points unprojected from depth, with the colour and pixel each came from.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Cloud {
    /// World coordinates.
    pub points: Vec<[f32; 3]>,
    /// RGB of the source pixel in the processed image.
    pub colors: Vec<[u8; 3]>,
    /// `(view, x, y)` of the source pixel (processed-image pixels).
    pub pixels: Vec<(usize, usize, usize)>,
}

impl Cloud {
    /// Number of points.
    pub fn len(&self) -> usize {
        self.points.len()
    }
    /// Whether there is no point.
    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }
    /// An empty cloud with room for `n` points.
    pub fn with_capacity(n: usize) -> Cloud {
        Cloud { points: Vec::with_capacity(n), colors: Vec::with_capacity(n), pixels: Vec::with_capacity(n) }
    }
    /// Appends one point.
    pub fn push(&mut self, pt: Point) {
        self.points.push(pt.world);
        self.colors.push(pt.color);
        self.pixels.push((pt.view, pt.x, pt.y));
    }
    /// Keeps only the points at `indices`, in that order (indices past the end are skipped).
    pub fn select(&self, indices: &[usize]) -> Cloud {
        let indices: Vec<usize> = indices
            .iter()
            .copied()
            .filter(|&i| i < self.len())
            .collect();
        Cloud {
            points: indices.iter().map(|&i| self.points[i]).collect(),
            colors: indices.iter().map(|&i| self.colors[i]).collect(),
            pixels: indices.iter().map(|&i| self.pixels[i]).collect(),
        }
    }
    /// Keeps at most `max` points, chosen by [`subsample_indices`] with `seed`.
    pub fn subsample(self, max: usize, seed: u64) -> Cloud {
        if self.len() <= max {
            return self;
        }
        self.select(&subsample_indices(self.len(), max, seed))
    }
}

/// The pixel filter `conf >= percentile(conf, p)` over all views (NumPy's linear
/// percentile), as a `keep(view, pixel)` closure for [`unproject`]; keeps every pixel when
/// the prediction has no confidence. The comparison is made in float32 (see
/// [`threshold_f32`]). The percentile is found without copying the confidences
/// ([`streamed_percentiles`]).
pub fn conf_filter(pred: &Prediction, p: f64) -> impl Fn(usize, usize) -> bool + '_ {
    let conf = &pred.conf;
    let threshold = streamed_percentiles(1, &[(0, p)], |sink: &mut dyn FnMut(usize, f32)| {
        conf.iter().for_each(|&c| sink(0, c))
    })[0]
    .map(threshold_f32);
    let n = pred.height * pred.width;
    move |v, i| threshold.is_none_or(|t| pred.conf[v * n + i] >= t)
}

/// A threshold as the reference compares it with a float32 array: NumPy 1.x (which the
/// reference pins) casts a scalar to the array's dtype, so `conf >= 1.05` keeps a
/// confidence of `1.05f32` (which is below 1.05 in double precision).
pub fn threshold_f32(t: f64) -> f32 {
    t as f32
}

/// One unprojected point (see [`for_each_point`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    /// World coordinates.
    pub world: [f32; 3],
    /// RGB of the source pixel in the processed image.
    pub color: [u8; 3],
    /// View of the source pixel.
    pub view: usize,
    /// Column of the source pixel (processed-image pixels).
    pub x: usize,
    /// Row of the source pixel.
    pub y: usize,
}

/// Calls `visit` with every point of view `v` that [`unproject`] keeps, in row-major order,
/// without storing them: pixels with finite positive depth for which `keep(v, pixel_index)`
/// holds, `X_world = c2w · (depth · K⁻¹ · [x, y, 1])` with pixel centres at integer
/// coordinates like the reference (`glb.py::_depths_to_world_points_with_colors`); points
/// that come out non-finite are dropped. A view without any kept pixel is skipped before
/// its camera is read.
pub fn for_each_point_of_view(
    pred: &Prediction,
    image: &ImageRgb8,
    v: usize,
    keep: &impl Fn(usize, usize) -> bool,
    visit: &mut impl FnMut(Point),
) -> Result<()> {
    let (h, w) = (pred.height, pred.width);
    let depth = pred.depth_of(v);
    if !(0..h * w).any(|p| depth[p].is_finite() && depth[p] > 0.0 && keep(v, p)) {
        return Ok(());
    }
    let k_inv = inverse_intrinsics(pred, v)?;
    let c2w = cam_to_world(pred, v)?;
    let rgb = &image.pixels;
    for y in 0..h {
        for x in 0..w {
            let p = y * w + x;
            let d = depth[p];
            if !(d.is_finite() && d > 0.0 && keep(v, p)) {
                continue;
            }
            let ray = mat3_mul_vec(&k_inv, [x as f64, y as f64, 1.0]);
            let d = f64::from(d);
            let world = affine_apply(&c2w, [ray[0] * d, ray[1] * d, ray[2] * d]).map(|c| c as f32);
            if world.iter().all(|c| c.is_finite()) {
                visit(Point { world, color: [rgb[3 * p], rgb[3 * p + 1], rgb[3 * p + 2]], view: v, x, y });
            }
        }
    }
    Ok(())
}

/// [`for_each_point_of_view`] over every view, in view order: the points of [`unproject`],
/// one at a time.
pub fn for_each_point(
    pred: &Prediction,
    images: &[ImageRgb8],
    keep: impl Fn(usize, usize) -> bool,
    mut visit: impl FnMut(Point),
) -> Result<()> {
    for (v, image) in images.iter().enumerate().take(pred.views) {
        for_each_point_of_view(pred, image, v, &keep, &mut visit)?;
    }
    Ok(())
}

/// Every point [`for_each_point`] visits, stored. Holds about 40 bytes per kept pixel of
/// the whole scene: for large scenes, [`sampled_cloud`] stores only what it keeps.
pub fn unproject(
    pred: &Prediction,
    images: &[ImageRgb8],
    keep: impl Fn(usize, usize) -> bool,
) -> Result<Cloud> {
    let mut cloud = Cloud::default();
    for_each_point(pred, images, keep, |pt| cloud.push(pt))?;
    Ok(cloud)
}

/// `unproject(pred, images, keep).subsample(max, seed)` without storing the points that
/// the subsample drops: one pass counts the points, a second keeps the drawn ones.
pub fn sampled_cloud(
    pred: &Prediction,
    images: &[ImageRgb8],
    keep: impl Fn(usize, usize) -> bool,
    max: usize,
    seed: u64,
) -> Result<Cloud> {
    let mut count = 0usize;
    for_each_point(pred, images, &keep, |_| count += 1)?;
    let drawn = subsample_indices(count, max, seed);
    let mut cloud = Cloud::with_capacity(drawn.len());
    let (mut index, mut next) = (0usize, drawn.iter().peekable());
    for_each_point(pred, images, &keep, |pt| {
        if next.peek() == Some(&&index) {
            cloud.push(pt);
            next.next();
        }
        index += 1;
    })?;
    Ok(cloud)
}

#[cfg(test)]
#[allow(clippy::needless_range_loop)]
mod tests {
    use super::*;

    #[test]
    fn inverse_of_a_general_matrix() {
        let m: Mat3 = [[2.0, 1.0, 0.5], [0.0, 3.0, 1.0], [1.0, 0.0, 4.0]];
        let inv = inverse3(&m).unwrap();
        for i in 0..3 {
            for j in 0..3 {
                let v: f64 = (0..3).map(|k| m[i][k] * inv[k][j]).sum();
                assert!(
                    (v - f64::from(u8::from(i == j))).abs() < 1e-12,
                    "{i}{j}: {v}"
                );
            }
        }
        assert!(inverse3(&[[1.0, 2.0, 3.0], [2.0, 4.0, 6.0], [0.0, 0.0, 1.0]]).is_none());
    }

    #[test]
    fn affine_inverse_round_trips() {
        let a: Affine = [
            [0.0, -1.0, 0.0, 1.0],
            [1.0, 0.0, 0.0, 2.0],
            [0.0, 0.0, 2.0, 3.0],
        ];
        let id = affine_compose(&affine_inverse(&a).unwrap(), &a);
        let p = affine_apply(&id, [0.3, -0.7, 5.0]);
        assert!(
            (p[0] - 0.3).abs() < 1e-12 && (p[1] + 0.7).abs() < 1e-12 && (p[2] - 5.0).abs() < 1e-12
        );
    }

    #[test]
    fn percentiles_match_numpy() {
        // np.percentile([1, 2, 3, 4], [0, 10, 40, 50, 90, 100]) -> 1, 1.3, 2.2, 2.5, 3.7, 4
        let v = [4.0f32, 1.0, 3.0, 2.0];
        let got = percentiles(&v, &[0.0, 10.0, 40.0, 50.0, 90.0, 100.0]).unwrap();
        for (g, e) in got.iter().zip([1.0, 1.3, 2.2, 2.5, 3.7, 4.0]) {
            assert!((g - e).abs() < 1e-12, "{got:?}");
        }
        assert_eq!(median(&[5.0f64, 1.0, 3.0]), Some(3.0));
        assert_eq!(median(&[4.0f32, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(percentile::<f64>(&[], 50.0), None);
        assert_eq!(percentile(&[7.0f32], 98.0), Some(7.0));
    }

    /// Selected order statistics are the sorted data's, bit for bit: ties, ±0, NaN, ±∞, one
    /// value, and percentiles given out of order or repeated.
    #[test]
    fn percentiles_equal_sorting() {
        let mut state = 12345u64;
        let mut next = || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 33) as u32
        };
        let specials = [0.0f32, -0.0, f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 1.5, 1.5];
        let ps = [98.0, 2.0, 50.0, 0.0, 100.0, 2.0, 33.3, 99.99];
        for n in [1usize, 2, 3, 10, 257, 5000] {
            let values: Vec<f32> = (0..n)
                .map(|_| {
                    let r = next();
                    if r % 13 == 0 { specials[(r / 13) as usize % specials.len()] } else { (r % 1000) as f32 / 7.0 - 50.0 }
                })
                .collect();
            let mut sorted = values.clone();
            sorted.sort_unstable_by(f32::total_cmp);
            let want: Vec<f64> = ps.iter().map(|&p| percentile_of_sorted(&sorted, p)).collect();
            let got = percentiles(&values, &ps).unwrap();
            assert!(got.iter().zip(&want).all(|(g, w)| g.to_bits() == w.to_bits()), "n = {n}: {got:?} vs {want:?}");
        }
    }

    #[test]
    fn subsampling_is_seeded_and_distinct() {
        let a = subsample_indices(1000, 100, 7);
        assert_eq!(a, subsample_indices(1000, 100, 7));
        assert_ne!(a, subsample_indices(1000, 100, 8));
        assert_eq!(a.len(), 100);
        assert!(a.windows(2).all(|w| w[0] < w[1]) && *a.last().unwrap() < 1000);
        assert_eq!(subsample_indices(5, 10, 0), vec![0, 1, 2, 3, 4]);
    }
}
