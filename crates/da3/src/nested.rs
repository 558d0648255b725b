//! The nested model's metric scaling (`NestedDepthAnything3Net`, `model/da3.py`): the any-view
//! branch (da3-giant) predicts depth, confidence and cameras up to scale; the metric branch
//! (da3metric-large) predicts focal-normalized depth and sky. This module turns the pair into
//! metric depth and poses on the host, step for step as the reference:
//!
//! 1. metric depth · ((fx + fy) / 2) / 300 with the **any-view branch's** intrinsics, per view;
//! 2. non-sky = metric sky score < 0.3 (more than 10 such pixels are required);
//! 3. median confidence over the non-sky pixels (`torch.quantile(·, 0.5)`, linear interpolation,
//!    over at most 100k pixels);
//! 4. align mask = conf ≥ median ∧ non-sky ∧ metric depth > 0.01 ∧ depth > 0.001;
//! 5. least-squares scale without shift `s = ⟨metric, depth⟩ / max(⟨depth, depth⟩, 1e-12)` over the
//!    mask; depth and the translations of the extrinsics are multiplied by `s`;
//! 6. sky pixels get depth `min(q0.99(non-sky depth), 200)` and confidence 1.
//!
//! Where the reference subsamples with `torch.randperm`/`torch.randint` (unseeded), we draw
//! from a seeded generator, so runs repeat; below 100k pixels every pixel is used and both agree
//! exactly. Where the reference asserts (too few non-sky pixels) or silently returns a zero
//! scale (an empty align mask), we return an error that says what happened.

use crate::rng::SplitMix64;
use crate::sky::{quantile, sample_with_replacement, sample_without_replacement, MIN_CLASS_PIXELS, NON_SKY_THRESHOLD};
use crate::Da3Error;

/// The metric model's depth unit is depth · focal / this.
pub const METRIC_FOCAL_UNIT: f32 = 300.0;
/// Pixels whose metric depth is at or below this are not used for the scale fit.
pub const MIN_METRIC_DEPTH: f32 = 1e-2;
/// Pixels whose any-view depth is at or below this are not used for the scale fit.
pub const MIN_DEPTH: f32 = 1e-3;
/// Sky depth never exceeds this many metres.
pub const MAX_SKY_DEPTH: f32 = 200.0;
/// Confidence given to sky pixels (the lowest the network can predict).
pub const SKY_CONFIDENCE: f32 = 1.0;

/// The outputs of both branches that the scaling reads and rewrites, for S views of H×W.
#[derive(Debug)]
pub struct NestedOutputs<'a> {
    /// Any-view depth, [S, H, W]; rescaled to metres and sky-filled in place.
    pub depth: &'a mut [f32],
    /// Any-view confidence, [S, H, W]; sky pixels set to 1 in place.
    pub conf: &'a mut [f32],
    /// Any-view world-to-camera `[R | t]`, [S]; translations rescaled in place.
    pub extrinsics: &'a mut [[[f32; 4]; 3]],
    /// Any-view intrinsics in processed pixels, [S].
    pub intrinsics: &'a [[[f32; 3]; 3]],
    /// Metric branch depth (focal-normalized), [S, H, W].
    pub metric_depth: &'a [f32],
    /// Metric branch sky score, [S, H, W].
    pub sky: &'a [f32],
}

/// The result of [`metric_scaling`].
#[derive(Debug, Clone, PartialEq)]
pub struct MetricScaling {
    /// The least-squares factor `s` applied to depth and translations.
    pub scale: f32,
    /// The metric branch's depth in metres (step 1: focal-normalized depth · focal / 300 with
    /// the any-view intrinsics), [S, H, W]. A chunked job keeps it per view and re-fits one
    /// factor over all its views, confidence median included
    /// ([`crate::schedule::stitch::refit_metric_scale`]).
    pub metric_depth: Vec<f32>,
}

/// Makes the any-view outputs metric (steps 1–6 above) and returns the scale factor `s`.
pub fn apply_metric_scaling(out: NestedOutputs<'_>, seed: u64) -> Result<f32, Da3Error> {
    metric_scaling(out, seed).map(|m| m.scale)
}

/// [`apply_metric_scaling`], also returning the metric depth in metres.
pub fn metric_scaling(out: NestedOutputs<'_>, seed: u64) -> Result<MetricScaling, Da3Error> {
    let views = out.intrinsics.len();
    let pixels = out.depth.len();
    if views == 0 || pixels % views != 0 || [out.conf.len(), out.metric_depth.len(), out.sky.len()] != [pixels; 3] {
        return Err(Da3Error::Input(format!(
            "nested scaling: {views} views with {pixels} depth, {} conf, {} metric depth and {} sky values",
            out.conf.len(),
            out.metric_depth.len(),
            out.sky.len()
        )));
    }
    let metric = metric_depth_in_metres(out.metric_depth, out.intrinsics);
    let non_sky: Vec<bool> = out.sky.iter().map(|s| *s < NON_SKY_THRESHOLD).collect();
    let mut rng = SplitMix64::new(seed);
    let scale = fit_metric_factor(out.depth, out.conf, &metric, &non_sky, &mut rng)? as f32;
    for d in out.depth.iter_mut() {
        *d *= scale;
    }
    for e in out.extrinsics.iter_mut() {
        for row in e.iter_mut() {
            row[3] *= scale;
        }
    }
    fill_sky(out.depth, out.conf, &non_sky, &mut rng);
    Ok(MetricScaling { scale, metric_depth: metric })
}

/// Step 1: the metric branch's focal-normalized depth [S, H, W] in metres, with each view's
/// focal length `(fx + fy) / 2` from `intrinsics` [S].
pub fn metric_depth_in_metres(metric_depth: &[f32], intrinsics: &[[[f32; 3]; 3]]) -> Vec<f32> {
    let per_view = metric_depth.len() / intrinsics.len().max(1);
    metric_depth
        .chunks_exact(per_view.max(1))
        .zip(intrinsics)
        .flat_map(|(d, k)| {
            let focal = (k[0][0] + k[1][1]) / 2.0;
            d.iter().map(move |v| v * (focal / METRIC_FOCAL_UNIT))
        })
        .collect()
}

/// Steps 2–5 over every pixel given: the least-squares factor from `depth` to `metric` (both
/// [S, H, W], metric in metres) over the align mask (confidence at least the median of the
/// non-sky pixels' confidence, sampled with `rng` above 100k pixels; non-sky; both depths
/// positive). Errors where the reference asserts (too few non-sky pixels) or would silently
/// return zero (an empty mask).
pub fn fit_metric_factor(depth: &[f32], conf: &[f32], metric: &[f32], non_sky: &[bool], rng: &mut SplitMix64) -> Result<f64, Da3Error> {
    let pixels = depth.len();
    let non_sky_count = non_sky.iter().filter(|m| **m).count();
    if non_sky_count <= MIN_CLASS_PIXELS {
        return Err(Da3Error::Input(format!(
            "the metric branch sees sky in all but {non_sky_count} of {pixels} pixels, too few to fit \
             the metric scale (more than {MIN_CLASS_PIXELS} are needed); use da3-giant for relative \
             depth of such images"
        )));
    }
    let conf_non_sky: Vec<f32> = conf.iter().zip(non_sky).filter(|(_, m)| **m).map(|(c, _)| *c).collect();
    let mut conf_sample = sample_without_replacement(conf_non_sky, rng);
    let median_conf = quantile(&mut conf_sample, 0.5);

    let (mut num, mut den) = (0f64, 0f64);
    let mut used = 0usize;
    for i in 0..pixels {
        let (d, m) = (depth[i], metric[i]);
        if conf[i] >= median_conf && non_sky[i] && m > MIN_METRIC_DEPTH && d > MIN_DEPTH {
            num += m as f64 * d as f64;
            den += d as f64 * d as f64;
            used += 1;
        }
    }
    if used == 0 {
        return Err(Da3Error::Input(
            "no confident non-sky pixel with positive depth in both branches: the metric scale \
             cannot be fitted (the reference would silently return zero depth)"
                .into(),
        ));
    }
    Ok(num / den.max(1e-12))
}

/// Step 6: sky pixels (`!non_sky`) get depth `min(q0.99(non-sky depth), 200)` and
/// confidence 1.
pub fn fill_sky(depth: &mut [f32], conf: &mut [f32], non_sky: &[bool], rng: &mut SplitMix64) {
    let depth_non_sky: Vec<f32> = depth.iter().zip(non_sky).filter(|(_, m)| **m).map(|(d, _)| *d).collect();
    if depth_non_sky.is_empty() {
        return;
    }
    let mut depth_sample = sample_with_replacement(depth_non_sky, rng);
    let sky_depth = quantile(&mut depth_sample, crate::sky::SKY_DEPTH_QUANTILE).min(MAX_SKY_DEPTH);
    for ((d, c), m) in depth.iter_mut().zip(conf.iter_mut()).zip(non_sky) {
        if !m {
            *d = sky_depth;
            *c = SKY_CONFIDENCE;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sky::MAX_QUANTILE_SAMPLES;

    fn identity_ext(t: [f32; 3]) -> [[f32; 4]; 3] {
        [[1.0, 0.0, 0.0, t[0]], [0.0, 1.0, 0.0, t[1]], [0.0, 0.0, 1.0, t[2]]]
    }

    #[test]
    fn recovers_a_known_scale_and_fills_sky() {
        // Two views of 4x8 pixels; the metric branch says the scene is 3x deeper than the
        // any-view depth once its focal-normalized depth is multiplied by focal/300 = 2.
        let (views, hw) = (2, 32);
        let mut depth: Vec<f32> = (0..views * hw).map(|i| 1.0 + (i % 7) as f32 * 0.25).collect();
        let metric: Vec<f32> = depth.iter().map(|d| d * 3.0 / 2.0).collect();
        let mut sky = vec![0.0f32; views * hw];
        for s in sky.iter_mut().step_by(5) {
            *s = 0.9;
        }
        let mut conf = vec![2.0f32; views * hw];
        let mut ext = vec![identity_ext([1.0, -2.0, 0.5]); views];
        let k = [[600.0, 0.0, 4.0], [0.0, 600.0, 2.0], [0.0, 0.0, 1.0]];
        let before = depth.clone();
        let scale = apply_metric_scaling(
            NestedOutputs {
                depth: &mut depth,
                conf: &mut conf,
                extrinsics: &mut ext,
                intrinsics: &[k; 2],
                metric_depth: &metric,
                sky: &sky,
            },
            7,
        )
        .unwrap();
        assert!((scale - 3.0).abs() < 1e-5, "scale {scale}");
        assert!((ext[1][1][3] + 6.0).abs() < 1e-4);
        let mut scaled: Vec<f32> = before.iter().zip(&sky).filter(|(_, s)| **s < 0.3).map(|(d, _)| d * 3.0).collect();
        let q = quantile(&mut scaled, 0.99);
        for i in 0..views * hw {
            if sky[i] >= 0.3 {
                assert_eq!((depth[i], conf[i]), (q, 1.0));
            } else {
                assert!((depth[i] - before[i] * 3.0).abs() < 1e-5);
            }
        }
    }

    #[test]
    fn all_sky_is_an_error_not_a_crash() {
        let mut depth = vec![1.0f32; 64];
        let mut conf = vec![1.0f32; 64];
        let err = apply_metric_scaling(
            NestedOutputs {
                depth: &mut depth,
                conf: &mut conf,
                extrinsics: &mut [identity_ext([0.0; 3])],
                intrinsics: &[[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]],
                metric_depth: &[1.0; 64],
                sky: &[0.95; 64],
            },
            1,
        )
        .unwrap_err();
        assert!(err.to_string().contains("sky"), "{err}");
    }

    #[test]
    fn subsampling_without_replacement_keeps_distinct_values() {
        let values: Vec<f32> = (0..MAX_QUANTILE_SAMPLES + 500).map(|i| i as f32).collect();
        let mut sample = sample_without_replacement(values, &mut SplitMix64::new(3));
        assert_eq!(sample.len(), MAX_QUANTILE_SAMPLES);
        sample.sort_by(f32::total_cmp);
        sample.dedup();
        assert_eq!(sample.len(), MAX_QUANTILE_SAMPLES);
    }
}
