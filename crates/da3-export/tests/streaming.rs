//! The exports that stream over the scene's pixels (PLY, GLB, COLMAP: thresholds by radix
//! selection, points unprojected again on every pass instead of stored) write exactly what
//! computing the same steps on stored copies writes. The stored computations here are the
//! straightforward ones the exporters used before they streamed.

mod common;

use common::scratch;
use da3::Prediction;
use da3_export::colmap::{build_model, export_colmap, write_model, ColmapOptions, SourceImage};
use da3_export::geometry::{
    affine_apply, affine_from_f32, conf_filter, median, subsample_indices, threshold_f32, unproject,
};
use da3_export::glb::{conf_threshold, glb_scene, GlbOptions};
use da3_export::ply::{ply_points, PlyOptions};
use da3_export::ImageRgb8;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A scene of `views` random views: depths with invalid pixels (0, negative, NaN, +∞), a
/// view without any valid depth, tied confidences, black and white pixels, and cameras
/// turned and moved at random.
fn random_scene(views: usize, h: usize, w: usize, seed: u64) -> (Prediction, Vec<ImageRgb8>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n = h * w;
    let mut depth = Vec::with_capacity(views * n);
    for v in 0..views {
        for _ in 0..n {
            depth.push(match (v, rng.random_range(0..20)) {
                (1, _) => 0.0, // view 1 has no valid depth
                (_, 0) => 0.0,
                (_, 1) => -1.0,
                (_, 2) => f32::NAN,
                (_, 3) => f32::INFINITY,
                _ => rng.random_range(0.2f32..9.0),
            });
        }
    }
    // Quantized, so that many confidences tie (the threshold's `>=` then matters).
    let conf: Vec<f32> = (0..views * n).map(|_| 1.0 + (rng.random_range(0..400) as f32) / 100.0).collect();
    let images = (0..views)
        .map(|_| {
            let pixels = (0..n)
                .flat_map(|_| match rng.random_range(0..10) {
                    0 => [3, 9, 12],
                    1 => [250, 241, 255],
                    _ => [rng.random(), rng.random(), rng.random()],
                })
                .collect();
            ImageRgb8::new(w, h, pixels).unwrap()
        })
        .collect();
    let extrinsics = (0..views)
        .map(|_| {
            let (a, b) = (rng.random_range(-1.0f32..1.0), rng.random_range(-1.0f32..1.0));
            let (ca, sa, cb, sb) = (a.cos(), a.sin(), b.cos(), b.sin());
            // Ry(a) · Rx(b), then a random translation.
            let r = [[ca, sa * sb, sa * cb], [0.0, cb, -sb], [-sa, ca * sb, ca * cb]];
            let t: [f32; 3] = std::array::from_fn(|_| rng.random_range(-2.0..2.0));
            std::array::from_fn(|i| [r[i][0], r[i][1], r[i][2], t[i]])
        })
        .collect();
    let intrinsics = (0..views)
        .map(|_| {
            let f = rng.random_range(0.8f32..1.5) * w as f32;
            [[f, 0.0, w as f32 / 2.0], [0.0, f * 1.01, h as f32 / 2.0], [0.0, 0.0, 1.0]]
        })
        .collect();
    let pred = Prediction { views, height: h, width: w, depth, conf, extrinsics, intrinsics, ..Default::default() };
    (pred, images)
}

#[test]
fn ply_points_equal_the_stored_cloud_subsampled() {
    let (pred, images) = random_scene(4, 30, 40, 1);
    for max in [usize::MAX, 1000, 17] {
        let options = PlyOptions { num_max_points: max, ..Default::default() };
        let stored = unproject(&pred, &images, conf_filter(&pred, options.conf_thresh_percentile))
            .unwrap()
            .subsample(max, options.seed);
        let streamed = ply_points(&pred, &images, &options).unwrap();
        assert!(stored.len() == max.min(stored.len()) && stored.len() > 10, "{}", stored.len());
        assert_eq!(streamed, stored, "num_max_points {max}");
    }
}

/// The GLB scene's points as the exporter computed them with everything stored.
fn stored_glb_points(pred: &Prediction, images: &[ImageRgb8], options: &GlbOptions) -> (f64, Vec<[f32; 3]>, Vec<[u8; 3]>) {
    let n = pred.height * pred.width;
    let conf: Vec<f32> = (0..pred.views * n)
        .map(|k| {
            let rgb = &images[k / n].pixels[3 * (k % n)..3 * (k % n) + 3];
            let black = options.filter_black_bg && rgb.iter().all(|&c| c < 16);
            let white = options.filter_white_bg && rgb.iter().all(|&c| c >= 240);
            if black || white {
                1.0
            } else {
                pred.conf[k]
            }
        })
        .collect();
    let threshold = conf_threshold(&conf, options);
    let thr32 = threshold_f32(threshold);
    let cloud = unproject(pred, images, |v, p| conf[v * n + p] >= thr32).unwrap();
    let mut alignment = affine_from_f32(&pred.extrinsics[0]);
    for row in &mut alignment[1..] {
        row.iter_mut().for_each(|v| *v = -*v);
    }
    let moved: Vec<[f64; 3]> = cloud.points.iter().map(|p| affine_apply(&alignment, p.map(f64::from))).collect();
    let center: [f64; 3] =
        std::array::from_fn(|a| median(&moved.iter().map(|p| p[a]).collect::<Vec<_>>()).unwrap_or(0.0));
    let aligned: Vec<[f32; 3]> =
        moved.iter().map(|p| std::array::from_fn(|a| (p[a] - center[a]) as f32)).collect();
    let keep: Vec<usize> = (0..aligned.len()).filter(|&i| aligned[i].iter().all(|c| c.is_finite())).collect();
    let keep: Vec<usize> =
        subsample_indices(keep.len(), options.num_max_points, options.seed).into_iter().map(|i| keep[i]).collect();
    (threshold, keep.iter().map(|&i| aligned[i]).collect(), keep.iter().map(|&i| cloud.colors[i]).collect())
}

#[test]
fn glb_points_equal_the_stored_computation() {
    let (pred, images) = random_scene(5, 24, 36, 2);
    for (max, filter) in [(usize::MAX, false), (500, true), (9, false)] {
        let options =
            GlbOptions { num_max_points: max, filter_black_bg: filter, filter_white_bg: filter, ..Default::default() };
        let (threshold, points, colors) = stored_glb_points(&pred, &images, &options);
        let scene = glb_scene(&pred, &images, &options).unwrap();
        assert!(points.len() > 8, "{}", points.len());
        assert_eq!(scene.conf_threshold.to_bits(), threshold.to_bits(), "threshold, max {max}");
        assert_eq!(scene.points, points, "points, max {max}, filters {filter}");
        assert_eq!(scene.colors, colors, "colours, max {max}, filters {filter}");
    }
}

#[test]
fn colmap_files_equal_the_stored_model_written() {
    let (pred, images) = random_scene(4, 20, 28, 3);
    let sources: Vec<SourceImage> = (0..4)
        .map(|i| SourceImage { name: format!("view {i}.jpg"), width: 28 * (i + 1), height: 20 * 3 / 2 + i })
        .collect();
    let dir = scratch("streaming-colmap");
    let options = ColmapOptions::default();
    let streamed = export_colmap(&dir.join("streamed"), &pred, &images, &sources, &options).unwrap();
    let model = build_model(&pred, &images, &sources, &options).unwrap();
    assert!(model.points.len() > 100 && model.images[1].points2d.is_empty(), "{}", model.points.len());
    let stored = write_model(&dir.join("stored"), &model).unwrap();
    for (a, b) in [(streamed.cameras, stored.cameras), (streamed.images, stored.images), (streamed.points, stored.points)] {
        assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap(), "{} differs", a.display());
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
