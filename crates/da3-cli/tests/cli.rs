//! Command-line errors of `da3 infer`: exit codes and messages, without model weights.

mod common;

use std::path::Path;

use common::{da3, scratch, write_bomb_png, write_rgb_png};

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A directory with a dummy (empty) weights file; image checks run before weights are read.
fn setup(name: &str) -> (std::path::PathBuf, String) {
    let dir = scratch(name);
    let weights = dir.join("model.safetensors");
    std::fs::write(&weights, b"").unwrap();
    (dir, weights.display().to_string())
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

#[test]
fn images_over_the_pixel_limit_are_refused_before_decoding() {
    let (dir, weights) = setup("cli_bomb");
    let out_dir = dir.join("out");
    let bomb = dir.join("bomb.png");
    write_bomb_png(&bomb, 100_000, 100_000);
    assert_eq!(image::image_dimensions(&bomb).unwrap(), (100_000, 100_000));
    let out = da3(&["infer", &s(&bomb), "--model", "da3-small", "--weights", &weights, "--out", &s(&out_dir)]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&s(&bomb)) && err.contains("100000x100000"), "{err}");
    assert!(err.contains("limit of 100 megapixels") && err.contains("--max-pixels"), "{err}");
    assert!(!out_dir.exists(), "nothing is written on error");

    // A normal image over a small --max-pixels, given after a good one: refused all the same.
    let (good, img) = (dir.join("good.png"), dir.join("normal.png"));
    write_rgb_png(&good, 14, 14, 0);
    write_rgb_png(&img, 56, 42, 0);
    let args = ["infer", &s(&good), &s(&img), "--model", "da3-small", "--weights", &weights, "--out", &s(&out_dir)];
    let out = da3(&[&args[..], &["--max-pixels", "200", "--process-res", "14"]].concat());
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&s(&img)) && err.contains("56x42") && err.contains("--max-pixels 200"), "{err}");
    assert!(!err.contains(&s(&good)), "{err}");
    assert!(!out_dir.exists(), "nothing is written on error");

    // The resized image counts too: a small image at a huge --process-res.
    let out = da3(&["infer", &s(&img), "--model", "da3-small", "--weights", &weights, "--process-res", "20000"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&s(&img)) && err.contains("20000x15000") && err.contains("--max-pixels"), "{err}");
}

#[test]
fn too_small_for_the_processing_resolution_names_the_file() {
    let (dir, weights) = setup("cli_too_small");
    let img = dir.join("sliver.png");
    write_rgb_png(&img, 200, 2, 0);
    // 200x2 at 56 -> 56x1 -> the short side cannot reach a multiple of 14.
    let out = da3(&["infer", &s(&img), "--model", "da3-small", "--weights", &weights, "--process-res", "56"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&s(&img)) && err.contains("200x2") && err.contains("multiple of 14"), "{err}");
}

#[test]
fn missing_and_undecodable_images_name_the_file() {
    let (dir, weights) = setup("cli_bad_images");
    let missing = dir.join("nope.png");
    let out = da3(&["infer", &s(&missing), "--model", "da3-small", "--weights", &weights]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&s(&missing)), "{err}");

    let text = dir.join("not_an_image.png");
    std::fs::write(&text, "hello").unwrap();
    let out = da3(&["infer", &s(&text), "--model", "da3-small", "--weights", &weights]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&s(&text)) && err.contains("cannot decode"), "{err}");

    // A truncated PNG: the header reads, the pixels do not.
    let truncated = dir.join("truncated.png");
    write_rgb_png(&truncated, 56, 42, 0);
    let bytes = std::fs::read(&truncated).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let out = da3(&["infer", &s(&truncated), "--model", "da3-small", "--weights", &weights]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&s(&truncated)) && err.contains("cannot decode"), "{err}");

    // A truncated JPEG, which the decoder alone would fill in with gray; Pillow refuses it.
    let jpeg = dir.join("truncated.jpg");
    image::RgbImage::from_fn(56, 42, |x, y| image::Rgb([x as u8 * 4, y as u8 * 6, 9])).save(&jpeg).unwrap();
    let bytes = std::fs::read(&jpeg).unwrap();
    std::fs::write(&jpeg, &bytes[..bytes.len() - 2]).unwrap();
    let out = da3(&["infer", &s(&jpeg), "--model", "da3-small", "--weights", &weights]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&s(&jpeg)) && err.contains("cannot decode") && err.contains("truncated"), "{err}");
}

#[test]
fn grayscale_rgba_and_16_bit_images_of_any_size_are_accepted_up_to_the_weights() {
    // All four decode and are preprocessed (to a common size); the run then fails on the empty
    // weights file, which proves that the images passed every check.
    let (dir, weights) = setup("cli_color_types");
    let gray = dir.join("gray.png");
    image::GrayImage::from_fn(28, 14, |x, _| image::Luma([x as u8 * 9])).save(&gray).unwrap();
    let rgba = dir.join("rgba.png");
    image::RgbaImage::from_fn(28, 14, |x, y| image::Rgba([x as u8, y as u8, 7, 128])).save(&rgba).unwrap();
    let deep = dir.join("deep.png");
    image::ImageBuffer::<image::Rgb<u16>, Vec<u16>>::from_fn(28, 14, |x, y| image::Rgb([x as u16 * 2000, y as u16 * 4000, 65535]))
        .save(&deep)
        .unwrap();
    let odd = dir.join("odd.jpg");
    image::RgbImage::from_fn(97, 61, |x, y| image::Rgb([x as u8, y as u8, 3])).save(&odd).unwrap();
    let out = da3(&["infer", &s(&gray), &s(&rgba), &s(&deep), &s(&odd), "--model", "da3-small", "--weights", &weights, "--process-res", "56"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("cannot load model weights") && err.contains("safetensors"), "{err}");
}

#[test]
fn model_resolution_errors_are_usage_errors() {
    let (dir, weights) = setup("cli_model");
    let img = dir.join("a.png");
    write_rgb_png(&img, 56, 42, 0);
    // No --model and no config.json next to the weights.
    let out = da3(&["infer", &s(&img), "--weights", &weights]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(&s(&dir.join("config.json"))) && err.contains("--model"), "{err}");
    // Neither a preset nor a file.
    let out = da3(&["infer", &s(&img), "--model", "da3-huge", "--weights", &weights]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("da3-huge") && err.contains("da3-small"), "{err}");
    // An invalid config file is a runtime error naming the file.
    let cfg = dir.join("bad.json");
    std::fs::write(&cfg, r#"{"model_name": "da3-huge"}"#).unwrap();
    let out = da3(&["infer", &s(&img), "--model", &s(&cfg), "--weights", &weights]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&s(&cfg)) && err.contains("da3-huge"), "{err}");
    // Missing weights.
    let out = da3(&["infer", &s(&img), "--model", "da3-small", "--weights", &s(&dir.join("none.safetensors"))]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("none.safetensors") && err.contains("not found"), "{err}");
}

#[test]
fn bad_flags_exit_with_2() {
    let (dir, weights) = setup("cli_flags");
    let img = dir.join("a.png");
    write_rgb_png(&img, 56, 42, 0);
    let out = da3(&["infer", &s(&img), "--model", "da3-small", "--weights", &weights, "--ref-view-strategy", "best"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("saddle_balanced") && err.contains("best"), "{err}");
    let out = da3(&["infer", &s(&img), "--model", "da3-small", "--weights", &weights, "--device", "tpu"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let out = da3(&["infer", "--model", "da3-small", "--weights", &weights]);
    assert_eq!(out.status.code(), Some(2), "no images: {}", stderr(&out));
}

#[test]
fn bad_preprocessing_flags_exit_with_2() {
    let (dir, weights) = setup("cli_prep_flags");
    let img = dir.join("a.png");
    write_rgb_png(&img, 56, 42, 0);
    let base = ["infer", &s(&img), "--model", "da3-small", "--weights", &weights];
    let run = |extra: &[&str]| da3(&[&base[..], extra].concat());

    let out = run(&["--process-res-method", "bogus"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("bogus"), "{err}");
    for name in ["upper_bound_resize", "upper_bound_crop", "lower_bound_resize", "lower_bound_crop"] {
        assert!(err.contains(name), "{err}");
    }
    let out = run(&["--opencv-flavor", "avx"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("ipp") && err.contains("plain"), "{err}");
    for bad in [["--process-res", "0"], ["--process-res", "big"], ["--max-pixels", "0"], ["--max-pixels", "-5"]] {
        let out = run(&bad);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {}", stderr(&out));
        assert!(!out.status.success());
    }
}

#[cfg(not(feature = "cuda"))]
#[test]
fn backend_not_compiled_in_names_the_feature() {
    let (dir, weights) = setup("cli_device");
    let img = dir.join("a.png");
    write_rgb_png(&img, 56, 42, 0);
    let out = da3(&["infer", &s(&img), "--model", "da3-small", "--weights", &weights, "--device", "cuda"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--features cuda") && err.contains("not compiled"), "{err}");
}

#[test]
fn help_explains_every_flag() {
    let out = da3(&["infer", "--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--model",
        "--weights",
        "--device",
        "--out",
        "--ref-view-strategy",
        "--quiet",
        "IMAGES",
        "--process-res",
        "--process-res-method",
        "--opencv-flavor",
        "--max-pixels",
    ] {
        assert!(help.contains(flag), "help lacks {flag}:\n{help}");
    }
    for word in [
        "da3-small",
        "config.json",
        "flex",
        "cuda",
        "saddle_sim_range",
        "results.npz",
        "65535",
        "multiple of 14",
        "processed_NNNN.png",
        "[default: 504]",
        "upper_bound_resize",
        "lower_bound_crop",
        "x86-64",
        "ARM64",
        "IPP",
        "megapixels",
        "504x280",
    ] {
        assert!(help.contains(word), "help lacks {word}:\n{help}");
    }
}

#[test]
fn every_input_subcommand_explains_the_shared_flags() {
    for (cmd, own) in [
        ("auto", &["INPUT", "--fps", "--sparse-subdir"][..]),
        ("image", &["IMAGE"][..]),
        ("images", &["DIR", "--image-extensions"][..]),
        ("video", &["VIDEO", "--fps", "ffmpeg", "input_images/000000.png"][..]),
        ("colmap", &["DIR", "--sparse-subdir", "SIMPLE_PINHOLE", "cameras.bin"][..]),
        ("infer", &["IMAGES"][..]),
    ] {
        let out = da3(&[cmd, "--help"]);
        assert!(out.status.success(), "{cmd}");
        let help = String::from_utf8_lossy(&out.stdout);
        let shared = [
            "--model", "--weights", "--device", "--process-res", "--process-res-method", "--export-dir", "--out",
            "--export-format", "--ref-view-strategy", "--conf-thresh-percentile", "--num-max-points", "--show-cameras",
            "--quiet", "--poses", "--use-ray-pose", "--align-to-input-ext-scale", "--no-align-to-input-ext-scale",
            "--focal", "--no-pose-condition", "--max-pixels", "--opencv-flavor", "world_to_camera", "Exit status",
        ];
        for flag in shared.iter().chain(own) {
            assert!(help.contains(flag), "`da3 {cmd} --help` lacks {flag}:\n{help}");
        }
    }
}
