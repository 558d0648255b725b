//! `gs_ply`: read back by a PLY parser written here, then compared with the reference's own
//! exporter (`save_gaussian_ply` with the parameters `export_to_gs_ply` passes) on the same
//! Gaussians, both files parsed by `plyfile`. The Python part runs only where the reference
//! package and plyfile are installed; it is skipped with a notice otherwise.

mod common;

use common::ply::{expected_selection, parse_ply};
use common::*;
use da3::{Gaussians, Prediction};
use da3_export::gs_ply::{export_gs_ply, property_names, GsPlyOptions};

const S: usize = 3;
const H: usize = 40;
const W: usize = 36;

/// Deterministic pseudo-random numbers in [0, 1) (64-bit LCG).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> f32 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 40) as f32 / (1u64 << 24) as f32
    }
}

/// A prediction with random depth and random (but valid) Gaussians.
fn scene() -> Prediction {
    let mut rng = Lcg(777);
    let n = S * H * W;
    let depth: Vec<f32> = (0..n).map(|_| 0.5 + 9.5 * rng.next()).collect();
    let mut g = Gaussians { views: S, height: H, width: W, ..Default::default() };
    for _ in 0..n {
        g.means.push([0.0; 3].map(|_| 4.0 * rng.next() - 2.0));
        g.scales.push([0.0; 3].map(|_| 1e-3 + 0.1 * rng.next()));
        let q = [0.0; 4].map(|_| rng.next() - 0.5);
        let norm = q.iter().map(|c| c * c).sum::<f32>().sqrt();
        g.rotations.push(q.map(|c| c / norm));
        g.harmonics.push([[0.0; 9]; 3].map(|c| c.map(|_| rng.next() - 0.5)));
        g.opacities.push(0.01 + 0.98 * rng.next());
    }
    let eye = [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]];
    let k = [[30.0, 0.0, W as f32 / 2.0], [0.0, 30.0, H as f32 / 2.0], [0.0, 0.0, 1.0]];
    Prediction {
        views: S,
        height: H,
        width: W,
        depth,
        conf: vec![1.0; n],
        extrinsics: vec![eye; S],
        intrinsics: vec![k; S],
        sky: None,
        is_metric: false,
        gaussians: Some(g),
        ..Default::default()
    }
}

#[test]
fn rows_read_back_with_the_3dgs_layout() {
    let pred = scene();
    let g = pred.gaussians.as_ref().unwrap();
    for (interval, dc_only) in [(1, true), (2, false)] {
        let dir = scratch(&format!("gs-ply-{interval}"));
        let options = GsPlyOptions { gs_views_interval: interval, sh_dc_only: dc_only, ..Default::default() };
        let path = export_gs_ply(&dir, &pred, &options).unwrap();
        assert_eq!(path, dir.join("gs_ply/0000.ply"));
        let common::ply::Ply { names, rows } = parse_ply(&std::fs::read(&path).unwrap());
        assert_eq!(names, property_names(dc_only));
        // Outside the 1-pixel border (⌊8/256·40⌋ = ⌊8/256·36⌋ = 1), at most the 0.9 quantile.
        let keep = expected_selection(&pred.depth, S, H, W, interval);
        assert!(keep.len() > 1000, "{}", keep.len());
        assert_eq!(rows.len(), keep.len());
        let col = |n: &str| names.iter().position(|x| x == n).unwrap();
        for (row, &i) in rows.iter().zip(&keep) {
            for c in 0..3 {
                assert_eq!(row[col(&format!("{}", ["x", "y", "z"][c]))], g.means[i][c]);
                assert_eq!(row[col(&format!("f_dc_{c}"))], g.harmonics[i][c][0]);
                assert_close(row[col(&format!("scale_{c}"))] as f64, (g.scales[i][c] as f64).ln(), 1e-6, "scale");
            }
            assert_eq!(&row[col("nx")..col("nx") + 3], &[0.0; 3]);
            for c in 0..4 {
                assert_eq!(row[col(&format!("rot_{c}"))], g.rotations[i][c]);
            }
            let o = g.opacities[i] as f64;
            assert_close(row[col("opacity")] as f64, (o / (1.0 - o)).ln(), 1e-5, "opacity");
            if !dc_only {
                // f_rest: colour-major, degree 1 and 2 coefficients.
                for c in 0..3 {
                    for k in 1..9 {
                        assert_eq!(row[col(&format!("f_rest_{}", c * 8 + k - 1))], g.harmonics[i][c][k]);
                    }
                }
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn missing_gaussians_is_an_error() {
    let mut pred = scene();
    pred.gaussians = None;
    let dir = scratch("gs-ply-none");
    let err = export_gs_ply(&dir, &pred, &GsPlyOptions::default()).unwrap_err().to_string();
    assert!(err.contains("infer_gs"), "{err}");
    let mut pred = scene();
    pred.gaussians.as_mut().unwrap().means.pop();
    assert!(export_gs_ply(&dir, &pred, &GsPlyOptions::default()).is_err());
    let zero = GsPlyOptions { gs_views_interval: 0, ..Default::default() };
    assert!(export_gs_ply(&dir, &scene(), &zero).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Writes the scene's Gaussians and depth as raw float32 files, runs the reference's
/// `save_gaussian_ply` on them with `export_to_gs_ply`'s parameters, and compares both files
/// with plyfile. Prints one JSON line.
const PARITY: &str = r#"
import json, sys
try:
    import numpy as np
    import torch
    from plyfile import PlyData
    from depth_anything_3.specs import Gaussians
    from depth_anything_3.utils.gsply_helpers import save_gaussian_ply
except Exception as e:
    print(f"reference or plyfile unavailable: {e}", file=sys.stderr); sys.exit(77)
d, s, h, w, interval = sys.argv[1], *map(int, sys.argv[2:6])
n = s * h * w
f = lambda name, *shape: torch.from_numpy(np.fromfile(f"{d}/{name}.f32", dtype="<f4").reshape(*shape))
g = Gaussians(means=f("means", 1, n, 3), scales=f("scales", 1, n, 3), rotations=f("rotations", 1, n, 4),
              harmonics=f("harmonics", 1, n, 3, 9), opacities=f("opacities", 1, n))
depth = f("depth", s, h, w)[..., None]
# export_to_gs_ply's call (utils/export/gs.py); gs.py itself imports moviepy and the renderer.
save_gaussian_ply(gaussians=g, save_path=f"{d}/ref.ply", ctx_depth=depth, shift_and_scale=False,
                  save_sh_dc_only=True, gs_views_interval=interval, inv_opacity=True,
                  prune_by_depth_percent=0.9, prune_border_gs=True, match_3dgs_mcmc_dev=False)
ours, ref = PlyData.read(f"{d}/ours/gs_ply/0000.ply"), PlyData.read(f"{d}/ref.ply")
vo, vr = ours["vertex"], ref["vertex"]
no, nr = [p.name for p in vo.properties], [p.name for p in vr.properties]
diff = {}
if no == nr and vo.count == vr.count:
    for name in nr:
        a, b = np.asarray(vo[name], np.float64), np.asarray(vr[name], np.float64)
        diff[name] = float(np.abs(a - b).max()) if a.size else 0.0
same_bytes = open(f"{d}/ours/gs_ply/0000.ply", "rb").read() == open(f"{d}/ref.ply", "rb").read()
print(json.dumps({"names_equal": no == nr, "counts": [vo.count, vr.count], "max_diff": diff,
                  "same_bytes": same_bytes}))
"#;

#[test]
fn matches_the_reference_exporter() {
    let pred = scene();
    let g = pred.gaussians.as_ref().unwrap();
    for interval in [1, 2] {
        let dir = scratch(&format!("gs-ply-parity-{interval}"));
        let options = GsPlyOptions { gs_views_interval: interval, ..Default::default() };
        export_gs_ply(&dir.join("ours"), &pred, &options).unwrap();
        let dump = |name: &str, v: Vec<f32>| {
            std::fs::write(dir.join(format!("{name}.f32")), v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>()).unwrap();
        };
        dump("means", g.means.iter().flatten().copied().collect());
        dump("scales", g.scales.iter().flatten().copied().collect());
        dump("rotations", g.rotations.iter().flatten().copied().collect());
        dump("harmonics", g.harmonics.iter().flatten().flatten().copied().collect());
        dump("opacities", g.opacities.clone());
        dump("depth", pred.depth.clone());
        let args = [dir.to_str().unwrap().to_string(), S.to_string(), H.to_string(), W.to_string(), interval.to_string()];
        if let Some(out) = python(PARITY, &args.iter().map(String::as_str).collect::<Vec<_>>()) {
            let doc: serde_json::Value = serde_json::from_str(out.lines().last().unwrap_or("")).unwrap();
            eprintln!("gs_ply parity with the reference (interval {interval}): {doc}");
            assert_eq!(doc["names_equal"], true, "{doc}");
            assert_eq!(doc["counts"][0], doc["counts"][1], "{doc}");
            assert!(doc["counts"][0].as_u64().unwrap() > 1000, "{doc}");
            for (name, d) in doc["max_diff"].as_object().unwrap() {
                // Everything is copied bit for bit except the two float32 logarithms.
                let tol = if name == "opacity" || name.starts_with("scale_") { 1e-6 } else { 0.0 };
                assert!(d.as_f64().unwrap() <= tol, "{name}: {doc}");
            }
            assert_eq!(doc["max_diff"].as_object().unwrap().len(), 17, "{doc}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
