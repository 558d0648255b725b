//! Parity with the reference exporters themselves (`glb.py` through trimesh, `colmap.py`
//! through pycolmap) on a random scene of 3 views with rotated cameras. Runs only where the
//! reference package `depth_anything_3` and those libraries are installed; skipped with a
//! notice otherwise.

mod common;

use common::*;
use da3::Prediction;
use da3_export::colmap::{export_colmap, ColmapOptions, SourceImage};
use da3_export::glb::{export_glb, GlbOptions};
use da3_export::ImageRgb8;

const S: usize = 3;
const RH: usize = 28;
const RW: usize = 42;

/// Deterministic pseudo-random numbers in [0, 1) (64-bit LCG).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 40) as f32 / (1u64 << 24) as f32
    }
}

/// Rotation of `angle` about the unit vector `axis` (Rodrigues).
fn rotation(axis: [f64; 3], angle: f64) -> [[f64; 3]; 3] {
    let n = (axis[0] * axis[0] + axis[1] * axis[1] + axis[2] * axis[2]).sqrt();
    let [x, y, z] = axis.map(|a| a / n);
    let (s, c) = angle.sin_cos();
    let t = 1.0 - c;
    [
        [c + x * x * t, x * y * t - z * s, x * z * t + y * s],
        [y * x * t + z * s, c + y * y * t, y * z * t - x * s],
        [z * x * t - y * s, z * y * t + x * s, c + z * z * t],
    ]
}

fn random_scene() -> (Prediction, Vec<ImageRgb8>) {
    let mut rng = Lcg(12345);
    let n = S * RH * RW;
    let depth: Vec<f32> = (0..n).map(|_| 0.5 + 4.5 * rng.next()).collect();
    let conf: Vec<f32> = (0..n).map(|_| 1.0 - (1.0 - rng.next()).ln()).collect();
    let images = (0..S)
        .map(|_| {
            ImageRgb8::new(
                RW,
                RH,
                (0..RH * RW * 3)
                    .map(|_| (rng.next() * 256.0) as u8)
                    .collect(),
            )
            .unwrap()
        })
        .collect();
    let axes = [[0.3, 1.0, 0.2], [1.0, -0.4, 0.3], [-0.2, 0.5, 1.0]];
    let extrinsics = (0..S)
        .map(|i| {
            let r = rotation(axes[i], 0.2 + 0.15 * i as f64);
            let t = [rng.next() - 0.5, rng.next() - 0.5, rng.next() - 0.5];
            std::array::from_fn(|row| {
                [r[row][0] as f32, r[row][1] as f32, r[row][2] as f32, t[row]]
            })
        })
        .collect();
    let intrinsics = (0..S)
        .map(|i| {
            [
                [35.0 + i as f32, 0.0, RW as f32 / 2.0],
                [0.0, 36.0, RH as f32 / 2.0],
                [0.0, 0.0, 1.0],
            ]
        })
        .collect();
    let pred = Prediction {
        views: S,
        height: RH,
        width: RW,
        depth,
        conf,
        extrinsics,
        intrinsics,
        sky: None,
        is_metric: false,
        gaussians: None,
    };
    (pred, images)
}

/// Loads the reference exporters without the package's `export/__init__.py` (which imports
/// video and Gaussian-splatting dependencies), runs one, and compares with our output.
const PARITY: &str = r#"
import sys, os, types, json
mode, d, S, H, W = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:6])
try:
    import numpy as np
    import depth_anything_3.utils
    for m in ["moviepy", "moviepy.editor", "evo", "imageio"]:
        sys.modules.setdefault(m, types.ModuleType(m))
    pkg = types.ModuleType("depth_anything_3.utils.export")
    pkg.__path__ = [list(depth_anything_3.utils.__path__)[0] + "/export"]
    sys.modules["depth_anything_3.utils.export"] = pkg
    if mode == "glb":
        import trimesh, scipy
        from depth_anything_3.utils.export import glb as ref
    else:
        import pycolmap
        from depth_anything_3.utils.export import colmap as ref
except Exception as e:
    print(f"reference exporter unavailable: {e!r}", file=sys.stderr); sys.exit(77)
f = lambda n, t=np.float32: np.fromfile(os.path.join(d, n), dtype=t)
class P: pass
p = P()
p.depth, p.conf = f("depth.f32").reshape(S, H, W), f("conf.f32").reshape(S, H, W)
p.extrinsics, p.intrinsics = f("ext.f32").reshape(S, 3, 4), f("ixt.f32").reshape(S, 3, 3)
p.processed_images = f("img.u8", np.uint8).reshape(S, H, W, 3)
out = {}
if mode == "glb":
    ref.export_to_glb(p, os.path.join(d, "ref"), num_max_points=10**9, export_depth_vis=False)
    def parts(path):
        g = list(trimesh.load(path).geometry.values())
        return [x for x in g if isinstance(x, trimesh.PointCloud)], [x for x in g if not isinstance(x, trimesh.PointCloud)]
    (rp,), rcams = parts(os.path.join(d, "ref", "scene.glb"))
    (op,), ocams = parts(os.path.join(d, "ours", "scene.glb"))
    def order(pc):
        v, c = np.asarray(pc.vertices), np.asarray(pc.colors)[:, :3]
        o = np.lexsort((v[:, 2], v[:, 1], v[:, 0], c[:, 2], c[:, 1], c[:, 0]))
        return v[o], c[o]
    (rv, rc), (ov, oc) = order(rp), order(op)
    out["counts"] = [len(rv), len(ov)]
    out["colors_equal"] = bool(len(rv) == len(ov) and (rc == oc).all())
    out["max_point_diff"] = float(np.abs(rv - ov).max()) if len(rv) == len(ov) else None
    out["cameras"] = [len(rcams), len(ocams)]
    diffs = []
    for r, o in zip(rcams, ocams):
        ru = np.unique(np.round(np.asarray(r.vertices), 5), axis=0)
        ou = np.unique(np.round(np.asarray(o.vertices), 5), axis=0)
        diffs.append(float(np.abs(ru - ou).max()) if ru.shape == ou.shape else None)
    out["camera_vertex_diffs"] = diffs
else:
    paths = [os.path.join(d, "src", f"view{i}.png") for i in range(S)]
    os.makedirs(os.path.join(d, "ref"), exist_ok=True)
    ref.export_to_colmap(p, os.path.join(d, "ref"), paths)
    r, o = pycolmap.Reconstruction(os.path.join(d, "ref")), pycolmap.Reconstruction(os.path.join(d, "ours"))
    cfw = lambda im: im.cam_from_world() if callable(im.cam_from_world) else im.cam_from_world
    out["cameras"] = max(float(np.abs(np.asarray(r.cameras[i].params) - np.asarray(o.cameras[i].params)).max()) for i in r.cameras)
    out["sizes"] = all((r.cameras[i].width, r.cameras[i].height) == (o.cameras[i].width, o.cameras[i].height) for i in r.cameras)
    out["names"] = all(r.images[i].name == o.images[i].name for i in r.images)
    out["poses"] = max(float(np.abs(cfw(r.images[i]).matrix() - cfw(o.images[i]).matrix()).max()) for i in r.images)
    out["counts"] = [len(r.points3D), len(o.points3D)]
    out["points"] = max(float(np.abs(r.points3D[k].xyz - o.points3D[k].xyz).max()) for k in r.points3D)
    out["colors_equal"] = all((r.points3D[k].color == o.points3D[k].color).all() for k in r.points3D)
    xy = lambda rec, i: np.asarray([q.xy for q in rec.images[i].points2D])
    out["points2d"] = max(float(np.abs(xy(r, i) - xy(o, i)).max()) for i in r.images)
    out["points2d_truncated"] = max(float(np.abs(xy(r, i) - np.trunc(xy(o, i))).max()) for i in r.images)
    out["ids2d"] = all([q.point3D_id for q in r.images[i].points2D] == [q.point3D_id for q in o.images[i].points2D] for i in r.images)
print(json.dumps(out))
"#;

fn write_inputs(dir: &std::path::Path, pred: &Prediction, images: &[ImageRgb8]) {
    let f32s =
        |v: &mut dyn Iterator<Item = f32>| v.flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    std::fs::write(dir.join("depth.f32"), f32s(&mut pred.depth.iter().copied())).unwrap();
    std::fs::write(dir.join("conf.f32"), f32s(&mut pred.conf.iter().copied())).unwrap();
    std::fs::write(
        dir.join("ext.f32"),
        f32s(&mut pred.extrinsics.iter().flatten().flatten().copied()),
    )
    .unwrap();
    std::fs::write(
        dir.join("ixt.f32"),
        f32s(&mut pred.intrinsics.iter().flatten().flatten().copied()),
    )
    .unwrap();
    std::fs::write(
        dir.join("img.u8"),
        images
            .iter()
            .flat_map(|i| i.pixels.iter().copied())
            .collect::<Vec<u8>>(),
    )
    .unwrap();
}

fn args(dir: &std::path::Path, mode: &'static str) -> Vec<String> {
    vec![
        mode.into(),
        dir.to_str().unwrap().into(),
        S.to_string(),
        RH.to_string(),
        RW.to_string(),
    ]
}

#[test]
fn glb_matches_the_reference_exporter() {
    let (pred, images) = random_scene();
    let dir = scratch("parity-glb");
    write_inputs(&dir, &pred, &images);
    export_glb(
        &dir.join("ours"),
        &pred,
        &images,
        &GlbOptions {
            num_max_points: usize::MAX,
            ..Default::default()
        },
    )
    .unwrap();
    let a = args(&dir, "glb");
    if let Some(out) = python(PARITY, &a.iter().map(String::as_str).collect::<Vec<_>>()) {
        // The reference logs to stdout; the result is the last line.
        let doc: serde_json::Value =
            serde_json::from_str(out.lines().last().unwrap_or("")).unwrap();
        eprintln!("GLB parity with the reference: {doc}");
        assert_eq!(doc["counts"][0], doc["counts"][1], "{doc}");
        assert!(doc["counts"][0].as_u64().unwrap() > 1000, "{doc}");
        assert_eq!(doc["colors_equal"], true, "{doc}");
        assert!(doc["max_point_diff"].as_f64().unwrap() < 1e-5, "{doc}");
        assert_eq!(doc["cameras"], serde_json::json!([S, S]));
        for d in doc["camera_vertex_diffs"].as_array().unwrap() {
            assert!(d.as_f64().is_some_and(|d| d < 1e-4), "{doc}");
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn colmap_matches_the_reference_exporter() {
    let (pred, images) = random_scene();
    let dir = scratch("parity-colmap");
    write_inputs(&dir, &pred, &images);
    // Original images of other sizes (the reference reads their sizes from disk).
    let sizes = [(84, 56), (126, 56), (63, 70)];
    std::fs::create_dir_all(dir.join("src")).unwrap();
    let mut sources = Vec::new();
    for (i, &(w, h)) in sizes.iter().enumerate() {
        let name = format!("view{i}.png");
        image::RgbImage::new(w, h)
            .save(dir.join("src").join(&name))
            .unwrap();
        sources.push(SourceImage {
            name,
            width: w as usize,
            height: h as usize,
        });
    }
    export_colmap(
        &dir.join("ours"),
        &pred,
        &images,
        &sources,
        &ColmapOptions::default(),
    )
    .unwrap();
    let a = args(&dir, "colmap");
    if let Some(out) = python(PARITY, &a.iter().map(String::as_str).collect::<Vec<_>>()) {
        // The reference logs to stdout; the result is the last line.
        let doc: serde_json::Value =
            serde_json::from_str(out.lines().last().unwrap_or("")).unwrap();
        eprintln!("COLMAP parity with the reference: {doc}");
        assert!(doc["cameras"].as_f64().unwrap() < 1e-4, "{doc}");
        assert_eq!(
            (
                &doc["sizes"],
                &doc["names"],
                &doc["colors_equal"],
                &doc["ids2d"]
            ),
            (&true.into(), &true.into(), &true.into(), &true.into()),
            "{doc}"
        );
        assert!(doc["poses"].as_f64().unwrap() < 1e-6, "{doc}");
        assert_eq!(doc["counts"][0], doc["counts"][1], "{doc}");
        assert!(doc["points"].as_f64().unwrap() < 1e-5, "{doc}");
        // The reference stores 2D points in an int32 array, so it truncates `x · orig_w / w`
        // when the scale is not an integer (view 2 here: 1.5 and 2.5); we keep the exact value
        // (zero reprojection error), which truncates to the reference's.
        assert!(doc["points2d"].as_f64().unwrap() < 1.0, "{doc}");
        assert_eq!(doc["points2d_truncated"].as_f64().unwrap(), 0.0, "{doc}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
