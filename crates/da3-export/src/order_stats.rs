//! NumPy-compatible percentiles of data that is never stored: the values are fed again on
//! every pass (recomputed by the caller, e.g. unprojected from depth), and exact order
//! statistics are found by radix selection on their IEEE total-order bit patterns, 16 bits
//! per pass (2 passes for `f32`, 4 for `f64`). Memory is one 65,536-bin histogram per
//! channel and per sought order statistic, whatever the number of values.
//!
//! Why: the exports' thresholds and centres are percentiles over every pixel of every view.
//! Sorting a copy costs 4–8 bytes per pixel of the scene (GBs at 1000 views); a few more
//! passes over data that is cheap to recompute cost nothing the user keeps.

use crate::geometry::{lerp_percentile, percentile_position, Real};

/// Bits resolved per pass.
const DIGIT_BITS: u32 = 16;
/// Bins of one histogram.
const BINS: usize = 1 << DIGIT_BITS;

/// A float that radix selection can rank: a bijection to unsigned keys that orders like
/// [`Real::total_order`].
pub trait RadixKey: Real {
    /// Width of the key in bits (a multiple of 16).
    const BITS: u32;
    /// The order-preserving key.
    fn key(self) -> u64;
    /// The value of a key ([`RadixKey::key`]'s inverse).
    fn from_key(key: u64) -> Self;
}

impl RadixKey for f32 {
    const BITS: u32 = 32;
    fn key(self) -> u64 {
        let b = self.to_bits();
        u64::from(if b >> 31 == 1 { !b } else { b | 1 << 31 })
    }
    fn from_key(key: u64) -> Self {
        let k = key as u32;
        f32::from_bits(if k >> 31 == 1 { k & !(1 << 31) } else { !k })
    }
}

impl RadixKey for f64 {
    const BITS: u32 = 64;
    fn key(self) -> u64 {
        let b = self.to_bits();
        if b >> 63 == 1 {
            !b
        } else {
            b | 1 << 63
        }
    }
    fn from_key(key: u64) -> Self {
        f64::from_bits(if key >> 63 == 1 { key & !(1 << 63) } else { !key })
    }
}

/// A pass over the data: calls its argument with `(channel, value)` for every value, in
/// any order, the same values on every call.
pub trait Feed<T> {
    /// Feeds every value once.
    fn feed(&mut self, sink: &mut dyn FnMut(usize, T));
}

impl<T, F: FnMut(&mut dyn FnMut(usize, T))> Feed<T> for F {
    fn feed(&mut self, sink: &mut dyn FnMut(usize, T)) {
        self(sink)
    }
}

/// The `p`-th percentiles (0–100, NumPy's "linear" method, NaN above +∞ like
/// [`crate::geometry::percentiles`]) of the values of each channel: `targets` are
/// `(channel, p)` pairs and the result has one entry per target, `None` for a channel
/// without values. `channels` is the number of channels `data` feeds (0..channels).
///
/// `data` is fed `T::BITS / 16` times; the result equals sorting each channel's values.
pub fn streamed_percentiles<T: RadixKey>(
    channels: usize,
    targets: &[(usize, f64)],
    mut data: impl Feed<T>,
) -> Vec<Option<f64>> {
    assert!(targets.iter().all(|&(c, _)| c < channels), "target channel out of range");
    // Pass 1: the top digit of every channel, which also counts the values.
    let top_shift = T::BITS - DIGIT_BITS;
    let mut top = vec![0u64; channels * BINS];
    data.feed(&mut |c, v: T| top[c * BINS + (v.key() >> top_shift) as usize] += 1);
    let counts: Vec<u64> = top.chunks(BINS).map(|h| h.iter().sum()).collect();

    // Every order statistic the percentiles need: (channel, rank), deduplicated.
    let mut wanted: Vec<(usize, u64)> = Vec::new();
    let mut positions = Vec::with_capacity(targets.len());
    for &(c, p) in targets {
        let n = counts[c];
        positions.push((n > 0).then(|| {
            let (lo, hi, t) = percentile_position(n as usize, p);
            let mut index = |rank: usize| match wanted.iter().position(|&w| w == (c, rank as u64)) {
                Some(i) => i,
                None => {
                    wanted.push((c, rank as u64));
                    wanted.len() - 1
                }
            };
            (index(lo), index(hi), t)
        }));
    }

    // Per wanted statistic: the key's known high bits and the rank left within them.
    let mut prefix = vec![0u64; wanted.len()];
    let mut rank: Vec<u64> = wanted.iter().map(|&(_, r)| r).collect();
    for (w, &(c, _)) in wanted.iter().enumerate() {
        let (bin, below) = find_bin(&top[c * BINS..(c + 1) * BINS], rank[w]);
        prefix[w] = bin;
        rank[w] -= below;
    }
    let mut resolved = DIGIT_BITS;
    while resolved < T::BITS && !wanted.is_empty() {
        let shift = T::BITS - resolved - DIGIT_BITS;
        let mut hist = vec![0u64; wanted.len() * BINS];
        data.feed(&mut |c, v: T| {
            let key = v.key();
            for (w, &(wc, _)) in wanted.iter().enumerate() {
                if wc == c && key >> (shift + DIGIT_BITS) == prefix[w] {
                    hist[w * BINS + ((key >> shift) as usize & (BINS - 1))] += 1;
                }
            }
        });
        for w in 0..wanted.len() {
            let (bin, below) = find_bin(&hist[w * BINS..(w + 1) * BINS], rank[w]);
            prefix[w] = prefix[w] << DIGIT_BITS | bin;
            rank[w] -= below;
        }
        resolved += DIGIT_BITS;
    }
    let values: Vec<f64> = prefix.iter().map(|&k| T::from_key(k).to_f64()).collect();
    positions.into_iter().map(|pos| pos.map(|(lo, hi, t)| lerp_percentile(values[lo], values[hi], t))).collect()
}

/// The bin holding the value of 0-based `rank` in histogram `hist`, and how many values lie
/// in the bins below it.
fn find_bin(hist: &[u64], rank: u64) -> (u64, u64) {
    let mut below = 0;
    for (bin, &n) in hist.iter().enumerate() {
        if below + n > rank {
            return (bin as u64, below);
        }
        below += n;
    }
    unreachable!("rank {rank} of {below} values: the data changed between passes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::percentiles;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn keys_order_like_total_cmp<T: RadixKey + std::fmt::Debug>(values: &[T]) {
        for a in values {
            assert_eq!(T::from_key(a.key()).key(), a.key(), "{a:?} round trip");
            for b in values {
                assert_eq!(a.key().cmp(&b.key()), a.total_order(b), "{a:?} vs {b:?}");
            }
        }
    }

    #[test]
    fn keys_order_like_total_cmp_with_specials() {
        let f = [0.0f32, -0.0, 1.0, -1.0, f32::INFINITY, f32::NEG_INFINITY, f32::NAN, -f32::NAN, f32::MIN_POSITIVE, 1e-45, -1e-45, 3.3e38];
        keys_order_like_total_cmp(&f);
        let d = [0.0f64, -0.0, 1.0, -1.0, f64::INFINITY, f64::NEG_INFINITY, f64::NAN, f64::MIN_POSITIVE, 5e-324, -2.5e300];
        keys_order_like_total_cmp(&d);
    }

    /// Each channel's percentiles, streamed, against sorting the stored values.
    fn check<T: RadixKey + std::fmt::Debug>(channels: &[Vec<T>], ps: &[f64]) {
        let targets: Vec<(usize, f64)> = (0..channels.len()).flat_map(|c| ps.iter().map(move |&p| (c, p))).collect();
        let mut passes = 0;
        let got = streamed_percentiles(channels.len(), &targets, |sink: &mut dyn FnMut(usize, T)| {
            passes += 1;
            // Interleaved channels, so that a pass does not see one channel at a time.
            let longest = channels.iter().map(Vec::len).max().unwrap_or(0);
            for i in 0..longest {
                for (c, values) in channels.iter().enumerate() {
                    if let Some(&v) = values.get(i) {
                        sink(c, v);
                    }
                }
            }
        });
        assert!(passes <= (T::BITS / DIGIT_BITS) as usize, "{passes} passes");
        for (&(c, p), g) in targets.iter().zip(&got) {
            let want = percentiles(&channels[c], &[p]).map(|v| v[0]);
            match (g, want) {
                (Some(g), Some(w)) => assert!(g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan()), "channel {c} p{p}: {g} vs {w}"),
                (g, w) => assert_eq!(*g, w, "channel {c} p{p}"),
            }
        }
    }

    #[test]
    fn streamed_percentiles_equal_sorting() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let ps = [0.0, 2.0, 40.0, 50.0, 90.0, 98.0, 100.0, 33.3];
        // Wide range, ties, negatives, zeros of both signs and non-finite values.
        let wide: Vec<f32> = (0..5000).map(|_| (rng.random::<f32>() - 0.3) * 10f32.powi(rng.random_range(-6..6))).collect();
        let ties: Vec<f32> = (0..777).map(|_| rng.random_range(0..5) as f32).collect();
        let mut specials = vec![f32::NAN, f32::INFINITY, f32::NEG_INFINITY, -0.0, 0.0, 1.05, 1.05];
        specials.extend((0..50).map(|i| i as f32 / 7.0));
        // Values equal in their top 16 bits: the later passes decide.
        let close: Vec<f32> = (0..3000).map(|i| 1.0 + (i % 97) as f32 * f32::EPSILON).collect();
        check(&[wide, ties, specials, close, vec![], vec![2.5]], &ps);
        let f64s: Vec<f64> = (0..4000).map(|_| (rng.random::<f64>() - 0.5) * 1e3).collect();
        let near: Vec<f64> = (0..1001).map(|i| 7.0 + (i % 13) as f64 * f64::EPSILON * 7.0).collect();
        check(&[f64s, near, vec![f64::NAN, 1.0]], &ps);
    }
}
