//! Shared pieces of the integration tests: a synthetic prediction whose geometry is known in
//! closed form, scratch directories, and a runner for independent Python readers.
#![allow(dead_code)]

pub mod ply;

use std::path::{Path, PathBuf};
use std::process::Command;

use da3::Prediction;
use da3_export::ImageRgb8;

/// Width and height of the synthetic views.
pub const W: usize = 8;
/// See [`W`].
pub const H: usize = 6;
/// Focal length and principal point of both views (processed pixels).
pub const F: f32 = 4.0;
/// See [`F`].
pub const CX: f32 = 4.0;
/// See [`F`].
pub const CY: f32 = 3.0;

/// Depth of view 0 (constant).
pub fn depth0(_x: usize, _y: usize) -> f32 {
    2.0
}
/// Depth of view 1 (a plane tilted along x).
pub fn depth1(x: usize, _y: usize) -> f32 {
    1.0 + 0.25 * x as f32
}
/// Confidence of pixel `(x, y)` of view `v`: distinct values 1.0, 1.01, ... over all pixels.
pub fn conf(v: usize, x: usize, y: usize) -> f32 {
    1.0 + (v * H * W + y * W + x) as f32 * 0.01
}
/// Colour of pixel `(x, y)` of view `v`: unique per pixel.
pub fn color(v: usize, x: usize, y: usize) -> [u8; 3] {
    [(x * 30) as u8, (y * 40) as u8, (v * 200 + 20) as u8]
}

/// World coordinates of pixel `(x, y)` of view `v`, by hand:
/// view 0 is the identity camera; view 1 has `R = Ry(90°)` and `t = (0, 0, -1)`, so
/// `X_w = Rᵀ (X_c - t) = (-(z_c + 1), y_c, x_c)`.
pub fn world(v: usize, x: usize, y: usize) -> [f64; 3] {
    let d = f64::from(if v == 0 { depth0(x, y) } else { depth1(x, y) });
    let xc = (x as f64 - f64::from(CX)) / f64::from(F) * d;
    let yc = (y as f64 - f64::from(CY)) / f64::from(F) * d;
    if v == 0 {
        [xc, yc, d]
    } else {
        [-(d + 1.0), yc, xc]
    }
}

/// Two views: identity camera with constant depth 2, and a camera rotated 90° about y and
/// translated, seeing a tilted plane.
pub fn synthetic() -> (Prediction, Vec<ImageRgb8>) {
    let mut depth = Vec::new();
    let mut confs = Vec::new();
    let mut images = Vec::new();
    for v in 0..2 {
        let mut pixels = Vec::new();
        for y in 0..H {
            for x in 0..W {
                depth.push(if v == 0 { depth0(x, y) } else { depth1(x, y) });
                confs.push(conf(v, x, y));
                pixels.extend_from_slice(&color(v, x, y));
            }
        }
        images.push(ImageRgb8::new(W, H, pixels).unwrap());
    }
    let k = [[F, 0.0, CX], [0.0, F, CY], [0.0, 0.0, 1.0]];
    let pred = Prediction {
        views: 2,
        height: H,
        width: W,
        depth,
        conf: confs,
        extrinsics: vec![
            [
                [1.0, 0.0, 0.0, 0.0],
                [0.0, 1.0, 0.0, 0.0],
                [0.0, 0.0, 1.0, 0.0],
            ],
            [
                [0.0, 0.0, 1.0, 0.0],
                [0.0, 1.0, 0.0, 0.0],
                [-1.0, 0.0, 0.0, -1.0],
            ],
        ],
        intrinsics: vec![k, k],
        sky: None,
        is_metric: false,
        ..Default::default()
    };
    (pred, images)
}

/// A fresh scratch directory for one test.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("da3-export-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Every `*.tmp` file under `dir`, recursively.
pub fn leftover_tmp_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(leftover_tmp_files(&path));
        } else if path.extension().is_some_and(|e| e == "tmp") {
            out.push(path);
        }
    }
    out
}

/// Runs `script` with `python3 -c`, passing `args`, and returns its stdout. Returns `None`
/// (after [`skip_python_check`], which panics when `DA3_REQUIRE_PYTHON_CHECKS` is set) when
/// python3 is missing or the script exits with status 77, which the scripts use when a module
/// they need cannot be imported. Panics on any other failure.
pub fn python(script: &str, args: &[&str]) -> Option<String> {
    let out = match Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
    {
        Ok(out) => out,
        Err(e) => {
            skip_python_check(&format!("python3 is not available ({e})"));
            return None;
        }
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.code() == Some(77) {
        skip_python_check(stderr.trim());
        return None;
    }
    assert!(
        out.status.success(),
        "python check failed ({}):\n{stderr}",
        out.status
    );
    Some(String::from_utf8(out.stdout).unwrap())
}

/// Reports that an independent Python check cannot run: a `NOTICE` on stderr, or a panic when
/// `DA3_REQUIRE_PYTHON_CHECKS` is set (`scripts/test.sh` sets it after installing the checks'
/// packages, so that CI cannot skip them).
pub fn skip_python_check(why: &str) {
    assert!(std::env::var_os("DA3_REQUIRE_PYTHON_CHECKS").is_none(), "required Python check cannot run (DA3_REQUIRE_PYTHON_CHECKS is set): {why}");
    eprintln!("NOTICE: {why}; independent check skipped");
}

/// Asserts that two floats agree to `tol`.
#[track_caller]
pub fn assert_close(a: f64, b: f64, tol: f64, what: &str) {
    assert!((a - b).abs() <= tol, "{what}: {a} vs {b}");
}

/// NumPy's linear percentile, written independently of the crate's for the tests.
pub fn np_percentile(values: &[f64], p: f64) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let pos = p / 100.0 * (v.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
}
