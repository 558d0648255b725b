//! The COLMAP export, read back by the crate's own reader (round trip), by a stdlib `struct`
//! reader written for this test, by the reference's `read_write_model.py` (from the installed
//! `depth_anything_3` package) and by `pycolmap` when installed.
#![allow(clippy::needless_range_loop)]

mod common;

use common::*;
use da3_export::colmap::{self, export_colmap, ColmapOptions, SourceImage, PINHOLE};

/// Reads the three files with `struct` (mode `struct`) or the reference's
/// `read_write_model.py` (mode `reference`, found beside the installed `depth_anything_3`
/// package without importing it; exit 77 if absent); prints one JSON document.
const READ_STRUCT: &str = r#"
import sys, os, json, struct
mode, d = sys.argv[1], sys.argv[2]
if mode == "reference":
    import importlib.util
    try:
        import numpy
    except ImportError as e:
        print(f"numpy not installed: {e}", file=sys.stderr); sys.exit(77)
    package = importlib.util.find_spec("depth_anything_3")
    if package is None or not package.submodule_search_locations:
        print("the reference package depth_anything_3 is not installed", file=sys.stderr); sys.exit(77)
    # (a namespace package: no __init__.py, so its folder, not an origin file)
    path = os.path.join(list(package.submodule_search_locations)[0], "utils", "read_write_model.py")
    if not os.path.exists(path):
        print(f"{path} not found", file=sys.stderr); sys.exit(77)
    spec = importlib.util.spec_from_file_location("rwm", path)
    rwm = importlib.util.module_from_spec(spec); spec.loader.exec_module(rwm)
    cams, imgs, pts = rwm.read_model(d, ".bin")
    out = {
        "cameras": [[c.id, c.model, c.width, c.height, [float(p) for p in c.params]] for c in cams.values()],
        "images": [[i.id, [float(v) for v in i.qvec], [float(v) for v in i.tvec], i.camera_id, i.name,
                    [[float(a), float(b)] for a, b in i.xys], [int(v) for v in i.point3D_ids]] for i in imgs.values()],
        "points": [[p.id, [float(v) for v in p.xyz], [int(v) for v in p.rgb], float(p.error),
                    [[int(a), int(b)] for a, b in zip(p.image_ids, p.point2D_idxs)]] for p in pts.values()],
    }
else:
    def rd(name):
        with open(os.path.join(d, name), "rb") as f:
            return f.read()
    b = rd("cameras.bin"); o = 8
    cameras = []
    for _ in range(struct.unpack_from("<Q", b, 0)[0]):
        cid, model, w, h = struct.unpack_from("<iiQQ", b, o); o += 24
        assert model == 1, model  # PINHOLE
        params = list(struct.unpack_from("<4d", b, o)); o += 32
        cameras.append([cid, "PINHOLE", w, h, params])
    assert o == len(b)
    b = rd("images.bin"); o = 8
    images = []
    for _ in range(struct.unpack_from("<Q", b, 0)[0]):
        iid, qw, qx, qy, qz, tx, ty, tz, cid = struct.unpack_from("<idddddddi", b, o); o += 64
        end = b.index(b"\0", o); name = b[o:end].decode(); o = end + 1
        n = struct.unpack_from("<Q", b, o)[0]; o += 8
        xys, ids = [], []
        for _ in range(n):
            x, y, pid = struct.unpack_from("<ddq", b, o); o += 24
            xys.append([x, y]); ids.append(pid)
        images.append([iid, [qw, qx, qy, qz], [tx, ty, tz], cid, name, xys, ids])
    assert o == len(b)
    b = rd("points3D.bin"); o = 8
    points = []
    for _ in range(struct.unpack_from("<Q", b, 0)[0]):
        pid, x, y, z, r, g, bl, err = struct.unpack_from("<QdddBBBd", b, o); o += 43
        n = struct.unpack_from("<Q", b, o)[0]; o += 8
        track = [list(struct.unpack_from("<ii", b, o + 8 * k)) for k in range(n)]; o += 8 * n
        points.append([pid, [x, y, z], [r, g, bl], err, track])
    assert o == len(b)
    out = {"cameras": cameras, "images": images, "points": points}
print(json.dumps(out))
"#;

/// Reads the model with pycolmap (exit 77 if not installed) and prints a summary, including
/// each observation reprojected through pycolmap's own camera model.
const READ_PYCOLMAP: &str = r#"
import sys, json
try:
    import pycolmap
except ImportError as e:
    print(f"pycolmap not installed: {e}", file=sys.stderr); sys.exit(77)
rec = pycolmap.Reconstruction(sys.argv[1])
def call(v):
    return v() if callable(v) else v
cams = {cid: [str(c.model).split(".")[-1], c.width, c.height, [float(p) for p in c.params]] for cid, c in rec.cameras.items()}
imgs = {}
max_err = 0.0
for iid, im in rec.images.items():
    cfw = call(im.cam_from_world)
    R = cfw.rotation.matrix().tolist()
    t = [float(v) for v in cfw.translation]
    cam = rec.cameras[im.camera_id]
    for p2 in im.points2D:
        X = rec.points3D[p2.point3D_id].xyz
        Xc = [sum(R[r][k] * X[k] for k in range(3)) + t[r] for r in range(3)]
        uv = cam.img_from_cam([Xc[0] / Xc[2], Xc[1] / Xc[2], 1.0])
        max_err = max(max_err, abs(uv[0] - p2.xy[0]), abs(uv[1] - p2.xy[1]))
    imgs[iid] = [im.name, im.camera_id, R, t, len(im.points2D)]
pts = {pid: [[float(v) for v in p.xyz], [int(v) for v in p.color], p.track.length()] for pid, p in rec.points3D.items()}
print(json.dumps({"cameras": cams, "images": imgs, "points": pts, "max_reprojection_error": max_err}))
"#;

fn sources() -> Vec<SourceImage> {
    vec![
        SourceImage {
            name: "a.jpg".into(),
            width: 16,
            height: 12,
        },
        SourceImage {
            name: "b.png".into(),
            width: 24,
            height: 12,
        },
    ]
}

/// The expected content, by hand: cameras scaled x2 / (x3, x2); image 2 rotated 90° about y.
fn expected_params() -> [[f64; 4]; 2] {
    [[8.0, 8.0, 8.0, 6.0], [12.0, 8.0, 12.0, 6.0]]
}
const H45: f64 = std::f64::consts::FRAC_1_SQRT_2;
fn expected_qvec() -> [[f64; 4]; 2] {
    [[1.0, 0.0, 0.0, 0.0], [H45, 0.0, H45, 0.0]]
}
fn expected_tvec() -> [[f64; 3]; 2] {
    [[0.0, 0.0, 0.0], [0.0, 0.0, -1.0]]
}
/// (view, x, y) of point id `k + 1` when every pixel is kept.
fn pixel_of_point(k: usize) -> (usize, usize, usize) {
    (k / (H * W), k % W, (k % (H * W)) / W)
}
fn expected_xy(v: usize, x: usize, y: usize) -> [f64; 2] {
    [x as f64 * if v == 0 { 2.0 } else { 3.0 }, y as f64 * 2.0]
}

#[test]
fn round_trip_through_the_crate_reader() {
    let (pred, images) = synthetic();
    let dir = scratch("colmap-rust");
    let options = ColmapOptions {
        conf_thresh_percentile: 0.0,
    };
    let files = export_colmap(&dir, &pred, &images, &sources(), &options).unwrap();
    assert_eq!(files.cameras, dir.join("cameras.bin"));
    assert!(leftover_tmp_files(&dir).is_empty());
    let model = colmap::read_model(&dir).unwrap();
    assert_eq!(
        model,
        colmap::build_model(&pred, &images, &sources(), &options).unwrap(),
        "read == written"
    );

    assert_eq!(model.cameras.len(), 2);
    for (i, cam) in model.cameras.iter().enumerate() {
        assert_eq!(
            (cam.id, cam.model_id, cam.width, cam.height),
            (i as u32 + 1, PINHOLE, [16, 24][i], 12)
        );
        assert_eq!(cam.params, expected_params()[i]);
    }
    assert_eq!(model.images.len(), 2);
    for (i, im) in model.images.iter().enumerate() {
        assert_eq!(
            (im.id, im.camera_id, im.name.as_str()),
            (i as u32 + 1, i as u32 + 1, ["a.jpg", "b.png"][i])
        );
        for k in 0..4 {
            assert_close(im.qvec[k], expected_qvec()[i][k], 1e-12, "qvec");
        }
        assert_eq!(im.tvec, expected_tvec()[i]);
        assert_eq!(im.points2d.len(), H * W);
        // The quaternion gives back the extrinsic rotation.
        let r = colmap::quaternion_to_rotation(&im.qvec);
        for a in 0..3 {
            for b in 0..3 {
                assert_close(
                    r[a][b],
                    f64::from(pred.extrinsics[i][a][b]),
                    1e-12,
                    "rotation",
                );
            }
        }
    }
    assert_eq!(model.points.len(), 2 * H * W);
    for (k, p) in model.points.iter().enumerate() {
        let (v, x, y) = pixel_of_point(k);
        assert_eq!(p.id, k as u64 + 1);
        let w = world(v, x, y);
        for a in 0..3 {
            assert_close(p.xyz[a], w[a], 1e-5, "xyz");
        }
        assert_eq!(p.rgb, color(v, x, y));
        assert_eq!(p.error, -1.0);
        assert_eq!(p.track.len(), 1, "exactly one observation per point");
        let t = p.track[0];
        assert_eq!(t.image_id, v as u32 + 1);
        let obs = model.images[v].points2d[t.point2d_idx as usize];
        assert_eq!(obs.point3d_id, Some(p.id));
        assert_eq!(obs.xy, expected_xy(v, x, y));
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn independent_python_readers_agree() {
    let (pred, images) = synthetic();
    let dir = scratch("colmap-python");
    export_colmap(
        &dir,
        &pred,
        &images,
        &sources(),
        &ColmapOptions {
            conf_thresh_percentile: 0.0,
        },
    )
    .unwrap();
    let d = dir.to_str().unwrap();
    for mode in ["struct", "reference"] {
        let Some(out) = python(READ_STRUCT, &[mode, d]) else {
            continue;
        };
        let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
        let cams = doc["cameras"].as_array().unwrap();
        assert_eq!(cams.len(), 2, "{mode}");
        for (i, c) in cams.iter().enumerate() {
            assert_eq!(c[0], i + 1);
            assert_eq!(c[1], "PINHOLE");
            assert_eq!(
                (c[2].as_u64(), c[3].as_u64()),
                (Some([16, 24][i]), Some(12))
            );
            let params: Vec<f64> = serde_json::from_value(c[4].clone()).unwrap();
            assert_eq!(params, expected_params()[i]);
        }
        let imgs = doc["images"].as_array().unwrap();
        assert_eq!(imgs.len(), 2, "{mode}");
        for (i, im) in imgs.iter().enumerate() {
            assert_eq!(
                (im[0].as_u64(), im[3].as_u64(), im[4].as_str()),
                (
                    Some(i as u64 + 1),
                    Some(i as u64 + 1),
                    Some(["a.jpg", "b.png"][i])
                )
            );
            let q: Vec<f64> = serde_json::from_value(im[1].clone()).unwrap();
            for k in 0..4 {
                assert_close(q[k], expected_qvec()[i][k], 1e-12, "qvec");
            }
            let t: Vec<f64> = serde_json::from_value(im[2].clone()).unwrap();
            assert_eq!(t, expected_tvec()[i]);
            let xys: Vec<[f64; 2]> = serde_json::from_value(im[5].clone()).unwrap();
            let ids: Vec<i64> = serde_json::from_value(im[6].clone()).unwrap();
            assert_eq!(xys.len(), H * W);
            for (j, (xy, id)) in xys.iter().zip(&ids).enumerate() {
                let k = i * H * W + j;
                assert_eq!(*id, k as i64 + 1);
                let (v, x, y) = pixel_of_point(k);
                assert_eq!(*xy, expected_xy(v, x, y));
            }
        }
        let pts = doc["points"].as_array().unwrap();
        assert_eq!(pts.len(), 2 * H * W, "{mode}");
        for (k, p) in pts.iter().enumerate() {
            let (v, x, y) = pixel_of_point(k);
            assert_eq!(p[0], k + 1);
            let xyz: Vec<f64> = serde_json::from_value(p[1].clone()).unwrap();
            let w = world(v, x, y);
            for a in 0..3 {
                assert_close(xyz[a], w[a], 1e-5, "xyz");
            }
            let rgb: Vec<u8> = serde_json::from_value(p[2].clone()).unwrap();
            assert_eq!(rgb, color(v, x, y));
            assert_eq!(p[3], -1.0);
            assert_eq!(p[4], serde_json::json!([[v + 1, k - v * H * W]]));
        }
        eprintln!("COLMAP model read back by the {mode} reader");
    }
    if let Some(out) = python(READ_PYCOLMAP, &[d]) {
        let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            doc["cameras"]["1"],
            serde_json::json!(["PINHOLE", 16, 12, [8.0, 8.0, 8.0, 6.0]])
        );
        assert_eq!(
            doc["cameras"]["2"],
            serde_json::json!(["PINHOLE", 24, 12, [12.0, 8.0, 12.0, 6.0]])
        );
        for (i, name) in [(1, "a.jpg"), (2, "b.png")] {
            let im = &doc["images"][i.to_string()];
            assert_eq!(
                (im[0].as_str(), im[1].as_u64(), im[4].as_u64()),
                (Some(name), Some(i), Some((H * W) as u64))
            );
            let r: [[f64; 3]; 3] = serde_json::from_value(im[2].clone()).unwrap();
            for a in 0..3 {
                for b in 0..3 {
                    assert_close(
                        r[a][b],
                        f64::from(pred.extrinsics[i as usize - 1][a][b]),
                        1e-9,
                        "pycolmap rotation",
                    );
                }
            }
            let t: [f64; 3] = serde_json::from_value(im[3].clone()).unwrap();
            assert_eq!(t, expected_tvec()[i as usize - 1]);
        }
        let pts = doc["points"].as_object().unwrap();
        assert_eq!(pts.len(), 2 * H * W);
        assert!(pts.values().all(|p| p[2] == 1), "track length 1");
        assert_eq!(
            doc["points"]["1"],
            serde_json::json!([[-2.0, -1.5, 2.0], [0, 0, 20], 1])
        );
        // Every observation is where pycolmap's PINHOLE model projects its point.
        assert!(
            doc["max_reprojection_error"].as_f64().unwrap() < 1e-4,
            "{}",
            doc["max_reprojection_error"]
        );
        eprintln!("COLMAP model read back by pycolmap");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn threshold_selects_points_and_bad_sources_are_rejected() {
    let (pred, images) = synthetic();
    let dir = scratch("colmap-thr");
    // 50th percentile: only view 1's 48 pixels pass; image 1 has no 2D points.
    export_colmap(
        &dir,
        &pred,
        &images,
        &sources(),
        &ColmapOptions {
            conf_thresh_percentile: 50.0,
        },
    )
    .unwrap();
    let model = colmap::read_model(&dir).unwrap();
    assert_eq!(model.points.len(), H * W);
    assert!(model.images[0].points2d.is_empty());
    assert_eq!(model.images[1].points2d.len(), H * W);
    assert!(model.points.iter().all(|p| p.track[0].image_id == 2));
    assert!(export_colmap(
        &dir,
        &pred,
        &images,
        &sources()[..1],
        &ColmapOptions::default()
    )
    .is_err());
    let mut bad = sources();
    bad[1].name = "b\0.png".into();
    assert!(export_colmap(&dir, &pred, &images, &bad, &ColmapOptions::default()).is_err());
    // Truncated files are reported with their path.
    let cams = dir.join("cameras.bin");
    let bytes = std::fs::read(&cams).unwrap();
    std::fs::write(&cams, &bytes[..bytes.len() - 3]).unwrap();
    let err = colmap::read_cameras(&cams).unwrap_err().to_string();
    assert!(
        err.contains("cameras.bin") && err.contains("truncated"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
