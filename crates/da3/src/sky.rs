//! Sky handling and metric scale of the mono and metric models (`_process_mono_sky_estimation`).
//!
//! Pixels with a sky score below 0.3 are non-sky. When both classes have more than 10 pixels,
//! sky pixels get the 0.99 quantile of the non-sky depth. The reference estimates the quantile
//! from at most 100k pixels drawn with `torch.randint` (unseeded, so runs differ); we draw
//! them from a seeded SplitMix64 stream so results are reproducible, and below 100k pixels both
//! use every pixel and agree exactly.

use crate::rng::SplitMix64;

/// Sky scores below this are non-sky (inside the network's post-processing).
pub const NON_SKY_THRESHOLD: f32 = 0.3;
/// Sky scores at or above this are reported as sky in outputs (`OutputProcessor`).
pub const SKY_MASK_THRESHOLD: f32 = 0.5;
/// Each class needs more than this many pixels for the fill to happen.
pub const MIN_CLASS_PIXELS: usize = 10;
/// At most this many non-sky depths are used for the quantile.
pub const MAX_QUANTILE_SAMPLES: usize = 100_000;
/// The quantile of non-sky depth that sky pixels get.
pub const SKY_DEPTH_QUANTILE: f64 = 0.99;
/// Default seed of the quantile sampler.
pub const DEFAULT_SKY_SEED: u64 = 42;

/// Sets the sky pixels of `depth` (all views together, as the reference pools the batch) to
/// the 0.99 quantile of the non-sky depth. Returns the value used, or `None` when one class
/// has too few pixels (then nothing changes).
pub fn fill_sky_depth(depth: &mut [f32], sky: &[f32], seed: u64) -> Option<f32> {
    assert_eq!(depth.len(), sky.len(), "depth and sky must cover the same pixels");
    let non_sky: Vec<f32> = depth.iter().zip(sky).filter(|(_, s)| **s < NON_SKY_THRESHOLD).map(|(d, _)| *d).collect();
    let sky_pixels = depth.len() - non_sky.len();
    if non_sky.len() <= MIN_CLASS_PIXELS || sky_pixels <= MIN_CLASS_PIXELS {
        return None;
    }
    let mut sample = sample_with_replacement(non_sky, &mut SplitMix64::new(seed));
    let fill = quantile(&mut sample, SKY_DEPTH_QUANTILE);
    for (d, s) in depth.iter_mut().zip(sky) {
        if *s >= NON_SKY_THRESHOLD {
            *d = fill;
        }
    }
    Some(fill)
}

/// At most [`MAX_QUANTILE_SAMPLES`] of `values`, drawn with replacement like the reference's
/// `torch.randint` subsample; all of them when there are no more than that.
pub fn sample_with_replacement(values: Vec<f32>, rng: &mut SplitMix64) -> Vec<f32> {
    if values.len() <= MAX_QUANTILE_SAMPLES {
        return values;
    }
    (0..MAX_QUANTILE_SAMPLES).map(|_| values[(rng.next_u64() % values.len() as u64) as usize]).collect()
}

/// At most [`MAX_QUANTILE_SAMPLES`] distinct entries of `values` (the reference's `randperm`
/// subsample); all of them when there are no more than that.
pub fn sample_without_replacement(values: Vec<f32>, rng: &mut SplitMix64) -> Vec<f32> {
    if values.len() <= MAX_QUANTILE_SAMPLES {
        return values;
    }
    rng.sample_distinct(values.len(), MAX_QUANTILE_SAMPLES).into_iter().map(|i| values[i]).collect()
}

/// `torch.quantile` with linear interpolation: `v[lo] + (v[hi] − v[lo])·(q(n−1) − lo)`.
/// Reorders `values`. Panics on an empty slice (callers check the count first).
pub fn quantile(values: &mut [f32], q: f64) -> f32 {
    values.sort_by(f32::total_cmp);
    let pos = q * (values.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    let (a, b) = (values[lo] as f64, values[hi] as f64);
    (a + (b - a) * (pos - lo as f64)) as f32
}

/// Factor from da3metric-large's output to metres for a camera of focal length `focal_px`
/// (pixels, at the resolution the network saw): `metres = depth · focal / 300`.
pub fn metric_scale(focal_px: f64) -> f64 {
    focal_px / 300.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantile_interpolates_like_torch() {
        // torch.quantile(torch.tensor([4., 1., 3., 2., 10.]), 0.99) = 9.76
        let mut v = [4.0, 1.0, 3.0, 2.0, 10.0];
        assert!((quantile(&mut v, 0.99) - 9.76).abs() < 1e-5);
    }

    #[test]
    fn sky_is_filled_only_with_enough_pixels_of_both_classes() {
        let depth: Vec<f32> = (0..40).map(|i| i as f32).collect();
        let mut sky = vec![0.0; 40];
        sky[..11].fill(0.9); // 11 sky pixels, 29 non-sky (depths 11..=39)
        let mut d = depth.clone();
        let fill = fill_sky_depth(&mut d, &sky, 0).unwrap();
        // quantile of 11..=39 (29 values) at 0.99: 11 + 0.99·28 = 38.72
        assert!((fill - 38.72).abs() < 1e-4, "{fill}");
        assert!(d[..11].iter().all(|v| *v == fill) && d[11..] == depth[11..]);
        sky[10] = 0.29; // now only 10 sky pixels: unchanged
        let mut d = depth.clone();
        assert_eq!(fill_sky_depth(&mut d, &sky, 0), None);
        assert_eq!(d, depth);
    }

    #[test]
    fn sampling_is_reproducible_for_a_seed() {
        let n = MAX_QUANTILE_SAMPLES + 5000;
        let depth: Vec<f32> = (0..n).map(|i| ((i * 7919) % 1000) as f32).collect();
        let mut sky = vec![0.0; n];
        sky[..100].fill(1.0);
        let (mut a, mut b) = (depth.clone(), depth.clone());
        assert_eq!(fill_sky_depth(&mut a, &sky, 7), fill_sky_depth(&mut b, &sky, 7));
        let fill = fill_sky_depth(&mut a, &sky, 7).unwrap();
        assert!((fill - 989.0).abs() < 3.0, "{fill}"); // true 0.99 quantile of 0..999 is ~989
    }
}
