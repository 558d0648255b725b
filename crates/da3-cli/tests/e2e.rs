//! End-to-end `da3 infer` runs with the tiny test model of `crates/da3/tests/fixtures`.

mod common;

use std::path::{Path, PathBuf};

use common::{library_preprocess, da3, read_npz, scratch, workspace_root, write_rgb_png};
use da3::preprocess::{Plan, ResizeMethod};
#[cfg(feature = "flex")]
use da3::{Da3, Da3Config, RefViewStrategy};

const W: usize = 56;
const H: usize = 42;
/// `--process-res` equal to the longest side of the W x H test images: no resize.
const RES: &str = "56";

/// The tiny fixture model, or `None` (with a notice) when it is absent.
fn tiny_model() -> Option<(PathBuf, PathBuf)> {
    let fixtures = workspace_root().join("crates/da3/tests/fixtures");
    let (cfg, weights) = (fixtures.join("tiny.config.json"), fixtures.join("tiny.weights.safetensors"));
    if cfg.is_file() && weights.is_file() {
        Some((cfg, weights))
    } else {
        eprintln!("NOTICE: {} not found; skipping the end-to-end test", weights.display());
        None
    }
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// Runs `da3 infer` on `views` generated images and checks everything it writes.
fn run_and_check(name: &str, views: usize, extra: &[&str]) {
    let Some((cfg, weights)) = tiny_model() else { return };
    let dir = scratch(name);
    let images: Vec<String> = (0..views)
        .map(|i| {
            let p = dir.join(format!("view_{i}.png"));
            write_rgb_png(&p, W as u32, H as u32, i as u32);
            s(&p)
        })
        .collect();
    let out_dir = dir.join("out");
    let mut args: Vec<&str> = vec!["infer"];
    args.extend(images.iter().map(String::as_str));
    let (cfg, weights, out_s) = (s(&cfg), s(&weights), s(&out_dir));
    args.extend(["--model", &cfg, "--weights", &weights, "--out", &out_s, "--device", "flex", "--process-res", RES]);
    args.extend(extra);
    let out = da3(&args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "da3 infer failed:\n{}\n{}", stdout, String::from_utf8_lossy(&out.stderr));
    if extra.contains(&"--quiet") {
        assert!(stdout.is_empty(), "--quiet printed: {stdout}");
    } else {
        let plural = if views == 1 { "view" } else { "views" };
        assert!(stdout.contains(&format!("{views} {plural}, 56x42 -> 56x42")), "{stdout}");
        assert!(stdout.contains("processed_0000.png") && stdout.contains("process_res 56 upper_bound_resize"), "{stdout}");
        assert!(stdout.contains("results.npz") && stdout.contains("inference"), "{stdout}");
        // "write  T s  N files": N is the number of paths listed from "wrote" on.
        let files: usize = stdout
            .lines()
            .find_map(|l| l.trim_start().strip_prefix("write ")?.split_whitespace().nth(2)?.parse().ok())
            .unwrap_or_else(|| panic!("no write line: {stdout}"));
        let listed = stdout.lines().skip_while(|l| !l.trim_start().starts_with("wrote ")).count();
        assert_eq!(files, listed, "{stdout}");
        assert_eq!(files, 2 + 2 * views, "results.npz, the ranges JSON and two PNGs per view: {stdout}");
    }

    // results.npz: the mini_npz keys, float32, the right shapes, sane values.
    let arrays = read_npz(&out_dir.join("results.npz"));
    assert_eq!(arrays.keys().collect::<Vec<_>>(), ["conf", "depth", "extrinsics", "intrinsics"]);
    assert_eq!(arrays["depth"].shape, [views, H, W]);
    assert_eq!(arrays["conf"].shape, [views, H, W]);
    assert_eq!(arrays["extrinsics"].shape, [views, 3, 4]);
    assert_eq!(arrays["intrinsics"].shape, [views, 3, 3]);
    let depth = &arrays["depth"].data;
    assert!(depth.iter().all(|d| d.is_finite() && *d > 0.0), "depth must be finite and positive");
    assert!(arrays["conf"].data.iter().all(|c| c.is_finite() && *c >= 1.0), "conf must be finite and >= 1");
    assert!(arrays["extrinsics"].data.iter().chain(&arrays["intrinsics"].data).all(|v| v.is_finite()));
    for k in arrays["intrinsics"].data.chunks_exact(9) {
        assert!(k[0] > 0.0 && k[4] > 0.0, "focal lengths {k:?}");
        assert_eq!((k[1], k[3], k[6], k[7], k[8]), (0.0, 0.0, 0.0, 0.0, 1.0), "pinhole layout {k:?}");
    }

    // PNGs + ranges: 16-bit, full range per view, and they convert back to the npz depth.
    let ranges: serde_json::Value = serde_json::from_slice(&std::fs::read(out_dir.join("depth_png_ranges.json")).unwrap()).unwrap();
    assert_eq!(ranges["views"].as_array().unwrap().len(), views);
    for v in 0..views {
        let view_depth = &depth[v * H * W..(v + 1) * H * W];
        let png_path = out_dir.join(format!("depth_{v:04}.png"));
        let png = image::open(&png_path).unwrap();
        assert_eq!(png.color(), image::ColorType::L16);
        let png = png.into_luma16();
        assert_eq!(png.dimensions(), (W as u32, H as u32));
        let entry = &ranges["views"][v];
        assert_eq!(entry["file"], format!("depth_{v:04}.png"));
        assert_eq!(entry["image"], images[v]);
        assert_eq!((entry["original_width"].as_u64(), entry["original_height"].as_u64()), (Some(W as u64), Some(H as u64)));
        assert_eq!(entry["processed"], format!("processed_{v:04}.png"));
        // No resize at --process-res 56: the processed image is the input.
        let processed = image::open(out_dir.join(format!("processed_{v:04}.png"))).unwrap();
        assert_eq!(processed.color(), image::ColorType::Rgb8);
        assert_eq!(processed.into_rgb8(), image::open(&images[v]).unwrap().into_rgb8());
        let (min, max) = (entry["min"].as_f64().unwrap() as f32, entry["max"].as_f64().unwrap() as f32);
        assert_eq!(min, view_depth.iter().copied().fold(f32::INFINITY, f32::min));
        assert_eq!(max, view_depth.iter().copied().fold(f32::NEG_INFINITY, f32::max));
        assert!(max > min, "the tiny model gives non-constant depth");
        assert_eq!(png.as_raw().iter().min(), Some(&0));
        assert_eq!(png.as_raw().iter().max(), Some(&65535));
        let step = (max - min) / 65535.0;
        for (&d, &q) in view_depth.iter().zip(png.as_raw()) {
            let back = min + q as f32 / 65535.0 * (max - min);
            assert!((back - d).abs() <= step + 1e-6 * d.abs(), "{d} stored as {q}");
        }
    }
    assert!(!out_dir.join(format!("depth_{views:04}.png")).exists());
    assert!(!out_dir.join(format!("processed_{views:04}.png")).exists());
    let leftovers: Vec<_> = std::fs::read_dir(&out_dir).unwrap().filter_map(|e| {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        name.ends_with(".tmp").then_some(name)
    }).collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

#[test]
fn infer_one_view() {
    run_and_check("e2e_one", 1, &[]);
}

#[test]
fn infer_three_views() {
    run_and_check("e2e_three", 3, &["--ref-view-strategy", "first", "--quiet"]);
}

#[test]
fn infer_three_views_default_strategy() {
    run_and_check("e2e_three_default", 3, &[]);
}

#[test]
fn rerun_with_fewer_views_removes_stale_pngs() {
    // Same scratch dir: 3 views first, then 1 view into the same --out.
    run_and_check("e2e_rerun", 3, &["--quiet"]);
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("da3-cli/e2e_rerun/out");
    assert!(out.join("depth_0002.png").is_file());
    let Some((cfg, weights)) = tiny_model() else { return };
    let img = out.parent().unwrap().join("view_0.png");
    let status =
        da3(&["infer", &s(&img), "--model", &s(&cfg), "--weights", &s(&weights), "--out", &s(&out), "-q", "--process-res", RES]);
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    assert!(out.join("depth_0000.png").is_file());
    assert!(!out.join("depth_0001.png").exists() && !out.join("depth_0002.png").exists());
    assert!(out.join("processed_0000.png").is_file());
    assert!(!out.join("processed_0001.png").exists() && !out.join("processed_0002.png").exists());
    assert_eq!(read_npz(&out.join("results.npz"))["depth"].shape, [1, H, W]);
}

/// `--device wgpu` gives the same numbers as flex (lavapipe stands in for a GPU in CI).
#[cfg(feature = "wgpu")]
#[test]
fn wgpu_matches_flex() {
    let Some((cfg, weights)) = tiny_model() else { return };
    let dir = scratch("e2e_wgpu");
    let images: Vec<String> = (0..2)
        .map(|i| {
            let p = dir.join(format!("view_{i}.png"));
            write_rgb_png(&p, W as u32, H as u32, i as u32 + 5);
            s(&p)
        })
        .collect();
    let mut results = Vec::new();
    for device in ["flex", "wgpu"] {
        let out = dir.join(device);
        let mut args = vec!["infer", &images[0], &images[1]];
        let (cfg, weights, out_s) = (s(&cfg), s(&weights), s(&out));
        args.extend(["--model", &cfg, "--weights", &weights, "--out", &out_s, "--device", device, "-q", "--process-res", RES]);
        let run = da3(&args);
        assert!(run.status.success(), "{device}: {}", String::from_utf8_lossy(&run.stderr));
        results.push(read_npz(&out.join("results.npz")));
    }
    for key in ["depth", "conf", "extrinsics", "intrinsics"] {
        let (a, b) = (&results[0][key], &results[1][key]);
        assert_eq!(a.shape, b.shape, "{key}");
        let diff: f64 = a.data.iter().zip(&b.data).map(|(x, y)| f64::from(x - y).powi(2)).sum::<f64>().sqrt();
        let norm: f64 = a.data.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
        assert!(diff <= 1e-3 * norm, "{key}: relative L2 difference {}", diff / norm);
    }
}

/// A mono/metric-style model (tiny DPT + sky fixture) writes depth and sky, no conf or
/// cameras, and its sky pixels all hold the one fill value of the library's sky handling.
#[test]
fn infer_with_a_mono_model_writes_depth_and_sky() {
    let fixtures = workspace_root().join("crates/da3/tests/fixtures");
    let dir = scratch("mono");
    let image = dir.join("view.png");
    write_rgb_png(&image, W as u32, H as u32, 7);
    let out_dir = dir.join("out");
    let (cfg, weights) = (s(&fixtures.join("tiny-mono.config.json")), s(&fixtures.join("tiny-mono.weights.safetensors")));
    let out = da3(&["infer", &s(&image), "--model", &cfg, "--weights", &weights, "--out", &s(&out_dir), "--quiet", "--process-res", RES]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let arrays = read_npz(&out_dir.join("results.npz"));
    assert_eq!(arrays.keys().collect::<Vec<_>>(), ["depth", "sky"]);
    assert_eq!(arrays["sky"].shape, [1, H, W]);
    let (depth, sky) = (&arrays["depth"].data, &arrays["sky"].data);
    assert!(depth.iter().all(|d| d.is_finite() && *d > 0.0));
    let sky_depths: Vec<f32> = depth.iter().zip(sky).filter(|(_, s)| **s >= da3::sky::NON_SKY_THRESHOLD).map(|(d, _)| *d).collect();
    // Deterministic for this fixture and input: both classes are present, so the fill ran.
    assert!(sky_depths.len() > da3::sky::MIN_CLASS_PIXELS && sky_depths.len() + da3::sky::MIN_CLASS_PIXELS < depth.len(), "{} sky pixels", sky_depths.len());
    assert!(sky_depths.iter().all(|d| *d == sky_depths[0]), "sky pixels share the fill value");
}

/// An odd-sized image is preprocessed like the library does it: the depth has the planned
/// size, the processed PNG holds the library's pixels, and depth and intrinsics are those of
/// the network run on the library's output (intrinsics at the processed resolution).
#[cfg(feature = "flex")]
#[test]
fn odd_sized_image_is_preprocessed_like_the_library() {
    let Some((cfg, weights)) = tiny_model() else { return };
    let dir = scratch("e2e_odd");
    let img = dir.join("odd.png");
    write_rgb_png(&img, 97, 61, 3);
    let out_dir = dir.join("out");
    let out = da3(&[
        "infer", &s(&img), "--model", &s(&cfg), "--weights", &s(&weights), "--out", &s(&out_dir), "--device", "flex",
        "--process-res", RES, "--ref-view-strategy", "first",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("1 view, 97x61 -> 56x42"), "{stdout}");

    // 97x61 at 56: 56x35 (35.2 rounded), then the nearest multiples of 14: 56x42 (35 ties up).
    let plan = Plan::new(97, 61, 56, ResizeMethod::UpperBoundResize).unwrap();
    assert_eq!((plan.resized, plan.size), ((56, 35), (56, 42)));
    let (w, h) = plan.size;
    let arrays = read_npz(&out_dir.join("results.npz"));
    assert_eq!(arrays["depth"].shape, [1, h, w]);
    assert_eq!(arrays["conf"].shape, [1, h, w]);

    let pre = library_preprocess(&[&img], 56);
    let processed = image::open(out_dir.join("processed_0000.png")).unwrap().into_rgb8();
    assert_eq!((processed.width() as usize, processed.height() as usize), (w, h));
    assert_eq!(processed.as_raw(), &pre.images[0].pixels, "processed PNG = the library's processed image");

    let config = Da3Config::from_json(&std::fs::read_to_string(&cfg).unwrap()).unwrap();
    let model = Da3::<da3::backends::Flex>::from_file(config, &weights, &Default::default()).unwrap();
    let expected = model.predict(&pre.views, RefViewStrategy::First).unwrap();
    let intrinsics: Vec<f32> = expected.intrinsics.iter().flatten().flatten().copied().collect();
    let close = |a: &[f32], b: &[f32]| a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= 1e-5 * x.abs().max(1.0));
    assert!(close(&arrays["intrinsics"].data, &intrinsics), "{:?} vs {intrinsics:?}", arrays["intrinsics"].data);
    assert!(close(&arrays["depth"].data, &expected.depth), "depth differs from the library's");
    // Principal point near the centre of the processed image, not of the 97x61 original.
    let k = &arrays["intrinsics"].data;
    assert!(k[2] > 0.0 && k[2] < w as f32 && k[5] > 0.0 && k[5] < h as f32, "{k:?}");
}

/// Views whose processed sizes differ are centre-cropped to one common size, with a warning
/// that names each cropped image (and nothing under --quiet).
#[test]
fn views_of_different_sizes_are_cropped_to_a_common_size() {
    let Some((cfg, weights)) = tiny_model() else { return };
    let dir = scratch("e2e_mixed");
    let (wide, square) = (dir.join("wide.png"), dir.join("square.png"));
    write_rgb_png(&wide, 56, 42, 1);
    write_rgb_png(&square, 80, 80, 2);
    let out_dir = dir.join("out");
    let (cfg, weights, out_s) = (s(&cfg), s(&weights), s(&out_dir));
    let base = ["infer", &s(&wide), &s(&square), "--model", &cfg, "--weights", &weights, "--out", &out_s, "--process-res", RES];
    let out = da3(&base);
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.contains("warning") && stderr.contains("centre-cropped"), "{stderr}");
    assert!(stderr.contains(&format!("{}: 80x80 -> 56x56, cropped to 56x42", s(&square))), "{stderr}");
    assert!(!stderr.contains(&s(&wide)), "the wide image is not cropped: {stderr}");
    assert!(stdout.contains("2 views, 56x42/80x80 -> 56x42"), "{stdout}");

    let pre = library_preprocess(&[&wide, &square], 56);
    assert_eq!(pre.cropped_in_batch(), [1]);
    let arrays = read_npz(&out_dir.join("results.npz"));
    assert_eq!(arrays["depth"].shape, [2, H, W]);
    for v in 0..2 {
        let processed = image::open(out_dir.join(format!("processed_{v:04}.png"))).unwrap().into_rgb8();
        assert_eq!(processed.as_raw(), &pre.images[v].pixels, "view {v}");
    }

    let out = da3(&[&base[..], &["--quiet"]].concat());
    assert!(out.status.success());
    assert!(out.stdout.is_empty() && out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// `--export-format` writes every requested format; each is read back (the formats' own
/// parsers and reference checks live in `crates/da3-export/tests`).
#[test]
fn export_formats_are_written_and_readable() {
    let fixtures = workspace_root().join("crates/da3/tests/fixtures");
    let dir = scratch("exports");
    let images: Vec<String> = (0..2)
        .map(|i| {
            let p = dir.join(format!("v{i}.png"));
            write_rgb_png(&p, W as u32, H as u32, 20 + i);
            s(&p)
        })
        .collect();
    let out_dir = dir.join("out");
    let (cfg, weights) = (s(&fixtures.join("tiny.config.json")), s(&fixtures.join("tiny.weights.safetensors")));
    let out = da3(&[
        "infer", &images[0], &images[1], "--model", &cfg, "--weights", &weights, "--out", &s(&out_dir),
        "--process-res", "56", "--export-format", "mini_npz-glb-ply-depth_vis-colmap", "--num-max-points", "500", "--quiet",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let ply = std::fs::read(out_dir.join("scene.ply")).unwrap();
    let header = String::from_utf8_lossy(&ply[..ply.windows(10).position(|w| w == b"end_header").unwrap()]).into_owned();
    assert!(header.contains("format binary_little_endian 1.0") && header.contains("element vertex 500"), "{header}");
    let glb = std::fs::read(out_dir.join("scene.glb")).unwrap();
    assert_eq!(&glb[..4], b"glTF");
    assert_eq!(u32::from_le_bytes(glb[8..12].try_into().unwrap()) as usize, glb.len());
    assert!(out_dir.join("depth_vis/0000.jpg").is_file() && out_dir.join("depth_vis/0001.jpg").is_file());
    let model = da3_export::colmap::read_model(&out_dir.join("colmap")).unwrap();
    assert_eq!(model.images.len(), 2);
    assert!(!model.points.is_empty());
}

#[test]
fn colmap_with_a_crop_method_and_unknown_formats_are_usage_errors() {
    let dir = scratch("export_usage");
    let image = dir.join("v.png");
    write_rgb_png(&image, W as u32, H as u32, 3);
    let fixtures = workspace_root().join("crates/da3/tests/fixtures");
    let weights = s(&fixtures.join("tiny.weights.safetensors"));
    let cfg = s(&fixtures.join("tiny.config.json"));
    for (extra, needle) in [
        (["--export-format", "colmap", "--process-res-method", "upper_bound_crop"], "needs a *_resize"),
        (["--export-format", "glb-obj", "--process-res", "56"], "obj"),
    ] {
        let mut args = vec!["infer", image.to_str().unwrap(), "--model", &cfg, "--weights", &weights];
        args.extend(extra);
        let out = da3(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(needle), "{stderr}");
    }
}
