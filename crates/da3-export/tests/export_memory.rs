//! The point-cloud exports hold memory for what they write, not for the scene: on a
//! 40-view scene of 210×280 (2.35 M pixels), the PLY, GLB and COLMAP exports each raise the
//! process's peak resident memory by a few MiB, where storing every confident point (what
//! they did before they streamed) took 40–70 bytes per pixel, 90–160 MiB here and tens of
//! GB at 1000 views of 504×378.
//!
//! One test in its own binary: the peak (`VmHWM`) is the whole process's.

use da3::schedule::device::{peak_rss, process_rss, reset_peak_rss};
use da3::Prediction;
use da3_export::colmap::{export_colmap, ColmapOptions, SourceImage};
use da3_export::glb::{export_glb, GlbOptions};
use da3_export::ply::{export_ply, PlyOptions};
use da3_export::ImageRgb8;

const VIEWS: usize = 40;
const H: usize = 210;
const W: usize = 280;

/// A smooth scene (a slanted plane seen by cameras moving along x), built without a
/// random generator so that it costs nothing but its arrays.
fn scene() -> (Prediction, Vec<ImageRgb8>) {
    let n = H * W;
    let depth: Vec<f32> = (0..VIEWS * n).map(|k| 2.0 + (k % W) as f32 / W as f32 + (k % 7) as f32 * 0.01).collect();
    let conf: Vec<f32> = (0..VIEWS * n).map(|k| 1.0 + ((k * 2_654_435_761) % 1000) as f32 / 250.0).collect();
    let images = (0..VIEWS)
        .map(|v| ImageRgb8::new(W, H, (0..3 * n).map(|i| ((i * 7 + v * 13) % 256) as u8).collect()).unwrap())
        .collect();
    let extrinsics = (0..VIEWS).map(|v| [[1.0, 0.0, 0.0, -0.1 * v as f32], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]]).collect();
    let k = [[300.0, 0.0, W as f32 / 2.0], [0.0, 300.0, H as f32 / 2.0], [0.0, 0.0, 1.0]];
    let pred = Prediction {
        views: VIEWS,
        height: H,
        width: W,
        depth,
        conf,
        extrinsics,
        intrinsics: vec![k; VIEWS],
        ..Default::default()
    };
    (pred, images)
}

/// The rise of the peak resident memory over the resident memory before `run`, in MiB.
fn peak_rise(run: impl FnOnce()) -> f64 {
    assert!(reset_peak_rss(), "cannot reset the peak resident memory (/proc/self/clear_refs)");
    let before = process_rss().unwrap();
    run();
    (peak_rss().unwrap().saturating_sub(before)) as f64 / (1 << 20) as f64
}

#[test]
#[cfg(target_os = "linux")]
fn point_cloud_exports_do_not_grow_with_the_scene() {
    let (pred, images) = scene();
    let dir = std::env::temp_dir().join(format!("da3-export-memory-{}", std::process::id()));
    let max_points = 100_000; // ~4 MB of output points; the scene has ~1.4 M confident pixels
    let sources: Vec<SourceImage> =
        (0..VIEWS).map(|i| SourceImage { name: format!("{i}.jpg"), width: 2 * W, height: 2 * H }).collect();
    let rises = [
        ("ply", peak_rise(|| {
            export_ply(&dir, &pred, &images, &PlyOptions { num_max_points: max_points, ..Default::default() }).unwrap();
        })),
        ("glb", peak_rise(|| {
            export_glb(&dir, &pred, &images, &GlbOptions { num_max_points: max_points, ..Default::default() }).unwrap();
        })),
        // COLMAP keeps every confident pixel (the reference does not subsample): its files
        // are ~100 MB here, written as they are computed.
        ("colmap", peak_rise(|| {
            export_colmap(&dir.join("colmap"), &pred, &images, &sources, &ColmapOptions::default()).unwrap();
        })),
    ];
    let points = da3_export::colmap::read_points3d(&dir.join("colmap/points3D.bin")).unwrap().len();
    std::fs::remove_dir_all(&dir).unwrap();
    eprintln!("peak rise per export (MiB): {rises:?}; COLMAP points {points}");
    assert!(points > 1_000_000, "the scene should keep most pixels: {points}");
    for (what, rise) in rises {
        assert!(rise < 16.0, "{what} raised the peak resident memory by {rise:.1} MiB");
    }
}
