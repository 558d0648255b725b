//! The depth_vis export: the colourization is compared with the reference's own
//! `visualize_depth` (or a NumPy + matplotlib transcription of it when the reference package
//! is not installed), and the JPEGs and 16-bit PNGs are decoded by Pillow and by the `image`
//! crate.
#![allow(clippy::needless_range_loop)]

mod common;

use std::path::Path;

use common::*;
use da3::Prediction;
use da3_export::depth_vis::{colorize_depth, export_depth_vis};
use da3_export::ImageRgb8;

const VW: usize = 64;
const VH: usize = 48;

/// Two smooth views (JPEG-friendly): view 0 a tilted plane with a few invalid pixels
/// (0, negative, NaN), view 1 a bowl; confidence in [1, 3]. No cameras (like a mono model)
/// would do as well, but these have them.
fn smooth() -> (Prediction, Vec<ImageRgb8>) {
    let mut depth = Vec::new();
    let mut conf = Vec::new();
    let mut images = Vec::new();
    for v in 0..2 {
        let mut pixels = Vec::new();
        for y in 0..VH {
            for x in 0..VW {
                let (fx, fy) = (x as f32 / VW as f32, y as f32 / VH as f32);
                let d = if v == 0 {
                    1.0 + 3.0 * fx + fy
                } else {
                    2.0 + 4.0 * ((fx - 0.5).powi(2) + (fy - 0.5).powi(2))
                };
                depth.push(d);
                conf.push(1.0 + 2.0 * fx * fy);
                pixels.extend_from_slice(&[
                    (fx * 255.0) as u8,
                    (fy * 255.0) as u8,
                    (128 + 60 * v) as u8,
                ]);
            }
        }
        images.push(ImageRgb8::new(VW, VH, pixels).unwrap());
    }
    depth[0] = 0.0;
    depth[1] = -1.0;
    depth[2] = f32::NAN;
    let pred = Prediction {
        views: 2,
        height: VH,
        width: VW,
        depth,
        conf,
        extrinsics: vec![],
        intrinsics: vec![],
        sky: None,
        is_metric: false,
        ..Default::default()
    };
    (pred, images)
}

/// Compares with the reference and decodes the files with Pillow; prints one JSON document.
const CHECK: &str = r#"
import sys, os, json
try:
    import numpy as np
    from PIL import Image
except ImportError as e:
    print(f"numpy/Pillow not installed: {e}", file=sys.stderr); sys.exit(77)
scratch, out_dir, w, h, views = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
try:
    from depth_anything_3.utils.visualize import visualize_depth
    source = "reference visualize_depth"
except Exception:
    try:
        import matplotlib
    except ImportError:
        visualize_depth, source = None, None
    else:
        source = "transcription of visualize_depth"
        def visualize_depth(depth, percentile=2):
            depth = depth.copy()
            valid = depth > 0
            depth[valid] = 1 / depth[valid]
            lo = np.percentile(depth[valid], percentile) if valid.sum() > 10 else 0
            hi = np.percentile(depth[valid], 100 - percentile) if valid.sum() > 10 else 0
            if lo == hi:
                lo, hi = lo - 1e-6, hi + 1e-6
            x = 1 - ((depth - lo) / (hi - lo)).clip(0, 1)
            return (matplotlib.colormaps["Spectral"](x[None])[0, :, :, :3] * 255.0).astype(np.uint8)
ranges = json.load(open(os.path.join(out_dir, "depth_vis", "png16_ranges.json")))
result = {"source": source, "views": []}
for v in range(views):
    depth = np.fromfile(os.path.join(scratch, f"depth_{v}.f32"), dtype=np.float32).reshape(h, w)
    ours = np.fromfile(os.path.join(scratch, f"ours_{v}.u8"), dtype=np.uint8).reshape(h, w, 3)
    image = np.fromfile(os.path.join(scratch, f"image_{v}.u8"), dtype=np.uint8).reshape(h, w, 3)
    r = {}
    if visualize_depth is not None:
        ref = visualize_depth(depth)
        r["mismatched_pixels"] = int((ref != ours).any(axis=-1).sum())
    jpg = Image.open(os.path.join(out_dir, "depth_vis", f"{v:04d}.jpg"))
    r["jpg_format"], r["jpg_size"] = jpg.format, list(jpg.size)
    jpg = np.asarray(jpg.convert("RGB")).astype(np.int32)
    r["left_mean_abs"] = float(np.abs(jpg[:, :w] - image).mean())
    r["right_mean_abs"] = float(np.abs(jpg[:, w:] - ours).mean())
    entry = ranges["views"][v]
    for key in ["depth", "conf"]:
        png = Image.open(os.path.join(out_dir, "depth_vis", entry[key]["file"]))
        q = np.asarray(png).astype(np.float64)
        lo, hi = entry[key]["min"], entry[key]["max"]
        values = lo + q / 65535.0 * (hi - lo)
        truth = depth.astype(np.float64) if key == "depth" else np.fromfile(os.path.join(scratch, f"conf_{v}.f32"), dtype=np.float32).reshape(h, w)
        finite = np.isfinite(truth)
        r[key] = {"mode": png.mode, "size": list(png.size), "max_err": float(np.abs(values - truth)[finite].max()),
                  "step": (hi - lo) / 65535.0, "nonfinite_codes": [int(c) for c in q[~finite]]}
    result["views"].append(r)
print(json.dumps(result))
"#;

fn write_raw(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn colourization_matches_the_reference_and_files_decode() {
    let (pred, images) = smooth();
    let scratch = scratch("depth-vis-py");
    let out = scratch.join("out");
    let files = export_depth_vis(&out, &pred, &images).unwrap();
    assert_eq!(
        files.visualizations[1],
        out.join("depth_vis").join("0001.jpg")
    );
    assert!(leftover_tmp_files(&out).is_empty());
    for v in 0..2 {
        let f32s = |s: &[f32]| s.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        write_raw(
            &scratch.join(format!("depth_{v}.f32")),
            &f32s(pred.depth_of(v)),
        );
        write_raw(
            &scratch.join(format!("conf_{v}.f32")),
            &f32s(pred.conf_of(v)),
        );
        write_raw(
            &scratch.join(format!("ours_{v}.u8")),
            &colorize_depth(pred.depth_of(v)),
        );
        write_raw(&scratch.join(format!("image_{v}.u8")), &images[v].pixels);
    }
    let args = [
        scratch.to_str().unwrap(),
        out.to_str().unwrap(),
        &VW.to_string(),
        &VH.to_string(),
        "2",
    ];
    if let Some(text) = python(CHECK, &args) {
        let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
        match doc["source"].as_str() {
            Some(source) => eprintln!("colourization compared with the {source}"),
            None => skip_python_check("matplotlib missing; colourization not compared with the reference"),
        }
        for (v, r) in doc["views"].as_array().unwrap().iter().enumerate() {
            if let Some(m) = r["mismatched_pixels"].as_u64() {
                assert_eq!(
                    m, 0,
                    "view {v}: colours differ from the reference on {m} pixels"
                );
            }
            assert_eq!(r["jpg_format"], "JPEG");
            assert_eq!(r["jpg_size"], serde_json::json!([2 * VW, VH]));
            assert!(
                r["left_mean_abs"].as_f64().unwrap() < 3.0,
                "view {v}: left half is the image: {r}"
            );
            assert!(
                r["right_mean_abs"].as_f64().unwrap() < 3.0,
                "view {v}: right half is the colourized depth: {r}"
            );
            for key in ["depth", "conf"] {
                let m = &r[key];
                assert_eq!(m["mode"], "I;16", "{key}: {m}");
                assert_eq!(m["size"], serde_json::json!([VW, VH]));
                assert!(
                    m["max_err"].as_f64().unwrap() <= 0.5 * m["step"].as_f64().unwrap() + 1e-6,
                    "view {v} {key}: {m}"
                );
            }
            let nonfinite = if v == 0 {
                serde_json::json!([0])
            } else {
                serde_json::json!([])
            };
            assert_eq!(
                r["depth"]["nonfinite_codes"], nonfinite,
                "NaN depth is stored as 0"
            );
        }
    }
    std::fs::remove_dir_all(&scratch).unwrap();
}

#[test]
fn files_decode_with_the_image_crate_and_the_sidecar_maps_back() {
    let (pred, images) = smooth();
    let dir = scratch("depth-vis-rust");
    export_depth_vis(&dir, &pred, &images).unwrap();
    let sidecar: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("depth_vis/png16_ranges.json")).unwrap())
            .unwrap();
    assert_eq!(
        (sidecar["width"].as_u64(), sidecar["height"].as_u64()),
        (Some(VW as u64), Some(VH as u64))
    );
    for v in 0..2 {
        let jpg = image::open(dir.join(format!("depth_vis/{v:04}.jpg")))
            .unwrap()
            .to_rgb8();
        assert_eq!(jpg.dimensions(), (2 * VW as u32, VH as u32));
        let entry = &sidecar["views"][v];
        assert_eq!(entry["visualization"], format!("{v:04}.jpg"));
        for (key, truth) in [("depth", pred.depth_of(v)), ("conf", pred.conf_of(v))] {
            let png = image::open(
                dir.join("depth_vis")
                    .join(entry[key]["file"].as_str().unwrap()),
            )
            .unwrap()
            .to_luma16();
            let (lo, hi) = (
                entry[key]["min"].as_f64().unwrap(),
                entry[key]["max"].as_f64().unwrap(),
            );
            let finite: Vec<f64> = truth
                .iter()
                .filter(|t| t.is_finite())
                .map(|&t| f64::from(t))
                .collect();
            assert_eq!(
                lo,
                finite.iter().copied().fold(f64::INFINITY, f64::min),
                "{key} min"
            );
            assert_eq!(
                hi,
                finite.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                "{key} max"
            );
            for (q, &t) in png.as_raw().iter().zip(truth) {
                if t.is_finite() {
                    let back = lo + f64::from(*q) / 65535.0 * (hi - lo);
                    assert!(
                        (back - f64::from(t)).abs() <= 0.5 * (hi - lo) / 65535.0 + 1e-6,
                        "{key}: {t} -> {q} -> {back}"
                    );
                } else {
                    assert_eq!(*q, 0);
                }
            }
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn models_without_confidence_or_cameras() {
    let (mut pred, images) = smooth();
    pred.conf.clear();
    let dir = scratch("depth-vis-mono");
    let files = export_depth_vis(&dir, &pred, &images).unwrap();
    assert!(files.conf_pngs.is_empty() && files.depth_pngs.len() == 2);
    let sidecar: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&files.ranges).unwrap()).unwrap();
    assert!(sidecar["views"][0]["conf"].is_null());
    // Point exports need cameras.
    let err = da3_export::export_ply(&dir, &pred, &images, &Default::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("cameras"), "{err}");
    assert!(da3_export::export_glb(&dir, &pred, &images, &Default::default()).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}
