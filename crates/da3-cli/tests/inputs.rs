//! The input subcommands end to end with the tiny fixture model: `image`, `images`, `auto`,
//! `video` (with ffmpeg), `colmap` and `--poses` (checked against the library's
//! pose-conditioned prediction), `--focal`, and the `npz` export (read back by numpy and by
//! our own reader).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{da3, have_numpy, have_program, read_npz, s, scratch, stderr_of, tiny_fixture, write_rgb_png, Array};
use std::collections::BTreeMap;

/// Runs `da3 ARGS --model CFG --weights W --export-dir OUT -q --process-res 56` and returns
/// the arrays of OUT/results.npz.
fn run_ok(args: &[&str], model: &(PathBuf, PathBuf), out: &Path, extra: &[&str]) -> BTreeMap<String, Array> {
    let (cfg, weights, out_s) = (s(&model.0), s(&model.1), s(out));
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--model", &cfg, "--weights", &weights, "--export-dir", &out_s, "-q", "--process-res", "56"]);
    all.extend(extra);
    let run = da3(&all);
    assert!(run.status.success(), "{all:?}: {}", stderr_of(&run));
    read_npz(&out.join("results.npz"))
}

fn assert_same(a: &BTreeMap<String, Array>, b: &BTreeMap<String, Array>, what: &str) {
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>(), "{what}");
    for (key, x) in a {
        assert_eq!(x, &b[key], "{what}: {key}");
    }
}

#[test]
fn image_images_and_auto_match_infer() {
    let Some(model) = tiny_fixture("tiny") else { return };
    let dir = scratch("inputs_folder");
    let photos = dir.join("photos");
    std::fs::create_dir_all(&photos).unwrap();
    // Mixed-case extensions; sorted by name: A.PNG, b.Png, c.png (uppercase sorts first).
    let names = ["c.png", "A.PNG", "b.Png"];
    for (i, name) in names.iter().enumerate() {
        write_rgb_png(&photos.join(name), 56, 42, i as u32 + 1);
    }
    std::fs::write(photos.join("notes.txt"), "not an image").unwrap();
    let sorted: Vec<String> = ["A.PNG", "b.Png", "c.png"].iter().map(|n| s(&photos.join(n))).collect();

    let mut infer_args = vec!["infer"];
    infer_args.extend(sorted.iter().map(String::as_str));
    let expected = run_ok(&infer_args, &model, &dir.join("infer"), &[]);
    assert_eq!(expected["depth"].shape, [3, 42, 56]);
    let images = run_ok(&["images", &s(&photos)], &model, &dir.join("images"), &[]);
    assert_same(&expected, &images, "images DIR");
    let auto = run_ok(&["auto", &s(&photos)], &model, &dir.join("auto"), &[]);
    assert_same(&expected, &auto, "auto DIR");
    // The JSON records the views in the sorted order.
    let ranges: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("images/depth_png_ranges.json")).unwrap()).unwrap();
    let recorded: Vec<&str> = ranges["views"].as_array().unwrap().iter().map(|v| v["image"].as_str().unwrap()).collect();
    assert_eq!(recorded, sorted);
    assert_eq!(ranges["skipped"], serde_json::json!([]));

    let one = run_ok(&["infer", &sorted[1]], &model, &dir.join("infer1"), &[]);
    assert_same(&one, &run_ok(&["image", &sorted[1]], &model, &dir.join("image"), &[]), "image FILE");
    assert_same(&one, &run_ok(&["auto", &sorted[1]], &model, &dir.join("auto1"), &[]), "auto FILE");

    // Only JPEGs requested: none there.
    let (cfg, weights) = (s(&model.0), s(&model.1));
    let out = da3(&["images", &s(&photos), "--image-extensions", "jpg", "--model", &cfg, "--weights", &weights]);
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&s(&photos)) && err.contains("no images with the extensions jpg"), "{err}");
    // auto on something that is none of the kinds.
    let out = da3(&["auto", &s(&photos.join("notes.txt")), "--model", &cfg, "--weights", &weights]);
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("notes.txt") && err.contains("COLMAP folder"), "{err}");
}

/// A small rotation about the y axis by `angle` radians, then a translation.
fn pose(angle: f64, t: [f64; 3]) -> [[f64; 4]; 4] {
    let (c, s) = (angle.cos(), angle.sin());
    [[c, 0.0, s, t[0]], [0.0, 1.0, 0.0, t[1]], [-s, 0.0, c, t[2]], [0.0, 0.0, 0.0, 1.0]]
}

/// Known cameras: `--poses` and a COLMAP scene give the library's pose-conditioned
/// prediction, with the intrinsics rescaled from the 112x84 originals to 56x42.
#[cfg(feature = "flex")]
#[test]
fn poses_and_colmap_condition_on_the_known_cameras() {
    use da3::preprocess::{preprocess, ImageRef, Intrinsics, Options, Pixels};
    use da3::{Da3, Da3Config, InputCameras, PredictOptions};
    use da3_export::colmap::{rotation_to_quaternion, write_model, Camera, Image, Model};

    let Some(model) = tiny_fixture("tiny") else { return };
    let dir = scratch("inputs_posed");
    let scene = dir.join("scene");
    std::fs::create_dir_all(scene.join("images")).unwrap();
    let names = ["v0.png", "v1.png", "v2.png"];
    let paths: Vec<PathBuf> = names.iter().map(|n| scene.join("images").join(n)).collect();
    for (i, p) in paths.iter().enumerate() {
        write_rgb_png(p, 112, 84, 10 + i as u32);
    }
    let poses = [pose(0.0, [0.0, 0.0, 0.0]), pose(0.1, [-0.3, 0.0, 0.05]), pose(-0.15, [0.4, 0.1, -0.1])];
    let k = [[100.0, 0.0, 56.0], [0.0, 104.0, 42.0], [0.0, 0.0, 1.0]];

    // --poses, views named in a different order than the inputs.
    let views: Vec<serde_json::Value> = [2, 0, 1]
        .iter()
        .map(|&i| serde_json::json!({"image": names[i], "world_to_camera": poses[i], "intrinsics": k}))
        .collect();
    let poses_file = dir.join("poses.json");
    std::fs::write(&poses_file, serde_json::to_string_pretty(&serde_json::json!({ "views": views })).unwrap()).unwrap();
    let inputs: Vec<String> = paths.iter().map(|p| s(p)).collect();
    let mut args = vec!["infer"];
    args.extend(inputs.iter().map(String::as_str));
    let posed = run_ok(&args, &model, &dir.join("posed"), &["--poses", &s(&poses_file), "--device", "flex"]);
    let free = run_ok(&args, &model, &dir.join("free"), &["--device", "flex"]);
    let diff: f32 = posed["depth"].data.iter().zip(&free["depth"].data).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
    assert!(diff > 1e-4, "pose conditioning changes the prediction (max diff {diff})");

    // The library, fed the same cameras with intrinsics rescaled by the preprocessing.
    let decoded: Vec<image::RgbImage> = paths.iter().map(|p| image::open(p).unwrap().into_rgb8()).collect();
    let refs: Vec<ImageRef<'_>> =
        decoded.iter().map(|im| ImageRef { pixels: Pixels::Rgb8(im.as_raw()), width: 112, height: 84 }).collect();
    let ks = [Intrinsics::F64(k); 3];
    let pre = preprocess(&refs, Some(&ks), &Options { process_res: 56, ..Options::default() }).unwrap();
    let processed_k = pre.intrinsics_f32().unwrap();
    assert_eq!(processed_k[0], [[50.0, 0.0, 28.0], [0.0, 52.0, 21.0], [0.0, 0.0, 1.0]]);
    let config = Da3Config::from_json(&std::fs::read_to_string(&model.0).unwrap()).unwrap();
    let net = Da3::<da3::backends::Flex>::from_file(config, &model.1, &Default::default()).unwrap();
    let cameras = InputCameras {
        world_to_camera: poses.to_vec(),
        intrinsics: processed_k.iter().map(|k| k.map(|r| r.map(f64::from))).collect(),
    };
    let expected = net.predict_with(&pre.views, &PredictOptions { cameras: Some(cameras), ..PredictOptions::default() }).unwrap();
    let max_rel = posed["depth"].data.iter().zip(&expected.depth).map(|(a, b)| (a - b).abs() / b.abs().max(1e-6)).fold(0.0, f32::max);
    assert!(max_rel <= 1e-5, "CLI --poses vs library: max relative depth difference {max_rel}");
    println!("--poses vs library predict_with: max relative depth difference {max_rel:e}");

    // The same cameras as a COLMAP scene (PINHOLE camera, qvec/tvec).
    let colmap = Model {
        cameras: vec![Camera { id: 1, model_id: 1, width: 112, height: 84, params: vec![100.0, 104.0, 56.0, 42.0] }],
        images: (0..3)
            .map(|i| {
                let r = [[poses[i][0][0], poses[i][0][1], poses[i][0][2]], [poses[i][1][0], poses[i][1][1], poses[i][1][2]], [
                    poses[i][2][0],
                    poses[i][2][1],
                    poses[i][2][2],
                ]];
                Image {
                    id: i as u32 + 1,
                    qvec: rotation_to_quaternion(&r),
                    tvec: [poses[i][0][3], poses[i][1][3], poses[i][2][3]],
                    camera_id: 1,
                    name: names[i].to_string(),
                    points2d: Vec::new(),
                }
            })
            .collect(),
        points: Vec::new(),
    };
    write_model(&scene.join("sparse"), &colmap).unwrap();
    for (cmd, out) in [("colmap", "colmap"), ("auto", "auto")] {
        let got = run_ok(&[cmd, &s(&scene)], &model, &dir.join(out), &["--device", "flex"]);
        let max_rel = got["depth"].data.iter().zip(&posed["depth"].data).map(|(a, b)| (a - b).abs() / b.abs()).fold(0.0, f32::max);
        assert!(max_rel <= 1e-5, "{cmd} vs --poses: max relative depth difference {max_rel}");
    }
    let ignored = run_ok(&["colmap", &s(&scene)], &model, &dir.join("ignored"), &["--device", "flex", "--no-pose-condition"]);
    assert_same(&ignored, &free, "--no-pose-condition");

    // A model in sparse/0 is pointed out; --poses with COLMAP input is refused.
    std::fs::rename(scene.join("sparse"), dir.join("sparse0")).unwrap();
    std::fs::create_dir_all(scene.join("sparse")).unwrap();
    std::fs::rename(dir.join("sparse0"), scene.join("sparse/0")).unwrap();
    let (cfg, weights) = (s(&model.0), s(&model.1));
    let out = da3(&["colmap", &s(&scene), "--model", &cfg, "--weights", &weights]);
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("--sparse-subdir 0"), "{err}");
    run_ok(&["colmap", &s(&scene)], &model, &dir.join("sub0"), &["--sparse-subdir", "0"]);
    let out = da3(&["colmap", &s(&scene), "--sparse-subdir", "0", "--poses", &s(&poses_file), "--model", &cfg, "--weights", &weights]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
}

#[test]
fn video_frames_are_extracted_at_the_requested_rate() {
    let Some(model) = tiny_fixture("tiny") else { return };
    if !have_program("ffmpeg") || !have_program("ffprobe") {
        return;
    }
    let dir = scratch("inputs_video");
    let frames: Vec<PathBuf> = (0..10)
        .map(|i| {
            let p = dir.join(format!("f{i:02}.png"));
            write_rgb_png(&p, 56, 42, i);
            p
        })
        .collect();
    // Lossless (PNG in Matroska) at 10 fps, so the extracted frames are the originals.
    let video = dir.join("clip.mkv");
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-framerate", "10", "-i"])
        .arg(dir.join("f%02d.png"))
        .args(["-c:v", "png"])
        .arg(&video)
        .status()
        .unwrap();
    assert!(status.success());
    let out_dir = dir.join("out");
    // interval = int(10 / 4) = 2: frames 0, 2, 4, 6, 8.
    let arrays = run_ok(&["video", &s(&video), "--fps", "4"], &model, &out_dir, &[]);
    assert_eq!(arrays["depth"].shape, [5, 42, 56]);
    for k in 0..5 {
        let extracted = image::open(out_dir.join(format!("input_images/{k:06}.png"))).unwrap();
        assert_eq!(extracted.color(), image::ColorType::Rgb8);
        assert_eq!(extracted.into_rgb8(), image::open(&frames[2 * k]).unwrap().into_rgb8(), "frame {k}");
    }
    assert!(!out_dir.join("input_images/000005.png").exists());
    // A second run at a lower rate replaces the frames: int(10 / 3) = 3 -> 0, 3, 6, 9.
    let arrays = run_ok(&["auto", &s(&video), "--fps", "3"], &model, &out_dir, &[]);
    assert_eq!(arrays["depth"].shape, [4, 42, 56]);
    assert!(!out_dir.join("input_images/000004.png").exists(), "stale frames are removed");
    let third = image::open(out_dir.join("input_images/000003.png")).unwrap().into_rgb8();
    assert_eq!(third, image::open(&frames[9]).unwrap().into_rgb8());

    // Not a video.
    let fake = dir.join("fake.mp4");
    std::fs::write(&fake, b"not a video").unwrap();
    let (cfg, weights) = (s(&model.0), s(&model.1));
    let out = da3(&["video", &s(&fake), "--model", &cfg, "--weights", &weights, "--export-dir", &s(&dir.join("o2"))]);
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&s(&fake)) && err.contains("cannot read video"), "{err}");
}

#[test]
fn video_without_ffmpeg_names_what_to_install() {
    let Some(model) = tiny_fixture("tiny") else { return };
    let dir = scratch("inputs_noffmpeg");
    let video = dir.join("clip.mp4");
    std::fs::write(&video, b"whatever").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_da3"))
        .args(["video", &s(&video), "--model", &s(&model.0), "--weights", &s(&model.1)])
        .env("PATH", dir.join("empty-path"))
        .output()
        .unwrap();
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("ffmpeg") && err.contains("apt-get install ffmpeg") && err.contains("da3 images"), "{err}");
}

/// The `npz` export: the reference's layout, read back by our parser and by numpy, whose own
/// `np.round` must give the stored depth and conf from the unrounded `results.npz`.
#[test]
fn npz_export_has_the_reference_layout() {
    let Some(model) = tiny_fixture("tiny") else { return };
    let dir = scratch("inputs_npz");
    let imgs: Vec<String> = (0..2)
        .map(|i| {
            let p = dir.join(format!("v{i}.png"));
            write_rgb_png(&p, 97, 61, 30 + i);
            s(&p)
        })
        .collect();
    let out = dir.join("out");
    let mini = run_ok(&["infer", &imgs[0], &imgs[1]], &model, &out, &["--export-format", "npz"]);
    let npz_path = out.join("exports/npz/results.npz");
    let full = read_npz(&npz_path);
    assert_eq!(full.keys().collect::<Vec<_>>(), ["conf", "depth", "extrinsics", "image", "intrinsics"]);
    assert_eq!((full["image"].dtype.as_str(), &full["image"].shape[..]), ("|u1", &[2, 42, 56, 3][..]));
    assert_eq!(full["extrinsics"], mini["extrinsics"]);
    assert_eq!(full["intrinsics"], mini["intrinsics"]);
    // Depth within half a unit of the 6th decimal (plus f32 rounding), conf of the 2nd.
    for (key, step) in [("depth", 1e-6f32), ("conf", 1e-2)] {
        for (r, x) in full[key].data.iter().zip(&mini[key].data) {
            assert!((r - x).abs() <= step / 2.0 + 1e-6 * x.abs(), "{key}: {x} rounded to {r}");
        }
    }
    // `image` is the reference's processed_images: the processed PNG, denormalized.
    let processed = image::open(out.join("processed_0001.png")).unwrap().into_rgb8();
    let image_1: Vec<f32> = full["image"].data[42 * 56 * 3..].to_vec();
    let max_diff = processed.as_raw().iter().zip(&image_1).map(|(&a, &b)| (a as f32 - b).abs()).fold(0.0, f32::max);
    assert!(max_diff <= 1.0, "image differs from the processed PNG by {max_diff} levels");

    if !have_numpy() {
        return;
    }
    let script = r#"
import sys, numpy as np
full = np.load(sys.argv[1]); mini = np.load(sys.argv[2])
assert sorted(full.files) == ['conf', 'depth', 'extrinsics', 'image', 'intrinsics'], full.files
assert full['image'].dtype == np.uint8 and full['image'].shape == (2, 42, 56, 3)
assert full['depth'].dtype == np.float32 and full['depth'].shape == (2, 42, 56)
assert np.array_equal(full['depth'], np.round(mini['depth'], 6)), 'depth rounding'
assert np.array_equal(full['conf'], np.round(mini['conf'], 2)), 'conf rounding'
assert np.array_equal(full['extrinsics'], mini['extrinsics'])
print('numpy ok')
"#;
    let run = Command::new("python3").args(["-c", script]).arg(&npz_path).arg(out.join("results.npz")).output().unwrap();
    assert!(run.status.success(), "{}", stderr_of(&run));
    assert!(String::from_utf8_lossy(&run.stdout).contains("numpy ok"));
}

/// `--focal` turns a metric model's depth into metres (depth x focal / 300, the focal scaled
/// to the processed size); without it the depth is left as is and marked not metric.
#[test]
fn focal_converts_metric_depth_to_metres() {
    let dir = scratch("inputs_focal");
    let Some(model) = common::tiny_metric_fixture(&dir) else { return };
    let img = dir.join("a.png");
    write_rgb_png(&img, 112, 84, 4);

    let (cfg_s, weights_s, out_s) = (s(&model.0), s(&model.1), s(&dir.join("plain")));
    let plain_run = da3(&["image", &s(&img), "--model", &cfg_s, "--weights", &weights_s, "--export-dir", &out_s, "--process-res", "56"]);
    assert!(plain_run.status.success(), "{}", stderr_of(&plain_run));
    assert!(stderr_of(&plain_run).contains("pass --focal"), "{}", stderr_of(&plain_run));
    let plain = read_npz(&dir.join("plain/results.npz"));
    let metres = run_ok(&["image", &s(&img)], &model, &dir.join("metres"), &["--focal", "100"]);
    // 112x84 -> 56x42: the focal of 100 px becomes 50 px.
    let scale = (50.0f64 / 300.0) as f32;
    assert_eq!(metres["depth"].data, plain["depth"].data.iter().map(|d| d * scale).collect::<Vec<_>>());
    let json = |d: &str| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(dir.join(d).join("depth_png_ranges.json")).unwrap()).unwrap()
    };
    assert_eq!(json("plain")["is_metric"], false);
    assert_eq!(json("metres")["is_metric"], true);
    assert_eq!(json("metres")["metric_focal_px"], serde_json::json!([50.0]));

    // The intrinsics of --poses give the focal too: (fx + fy) / 2 = 102 -> 51 px.
    let poses = dir.join("poses.json");
    std::fs::write(&poses, r#"[{"world_to_camera": [[1,0,0,0],[0,1,0,0],[0,0,1,0]], "intrinsics": [[100,0,56],[0,104,42],[0,0,1]]}]"#).unwrap();
    let posed = run_ok(&["image", &s(&img)], &model, &dir.join("posed"), &["--poses", &s(&poses)]);
    let scale = (51.0f64 / 300.0) as f32;
    assert_eq!(posed["depth"].data, plain["depth"].data.iter().map(|d| d * scale).collect::<Vec<_>>());

    // --focal with a relative-depth model is a usage error.
    let Some((tiny_cfg, tiny_weights)) = tiny_fixture("tiny") else { return };
    let out = da3(&["image", &s(&img), "--model", &s(&tiny_cfg), "--weights", &s(&tiny_weights), "--focal", "100"]);
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--focal") && err.contains("metric models"), "{err}");
}
