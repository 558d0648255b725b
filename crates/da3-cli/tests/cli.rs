//! Command-line errors of `da3 infer`: exit codes and messages, without model weights.

mod common;

use std::path::Path;

use common::{da3, scratch, write_rgb_png};

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
fn wrong_image_size_names_the_file() {
    let (dir, weights) = setup("cli_wrong_size");
    let img = dir.join("odd_size.png");
    write_rgb_png(&img, 57, 42, 0);
    let out = da3(&["infer", &s(&img), "--model", "da3-small", "--weights", &weights, "--out", &s(&dir.join("out"))]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&s(&img)) && err.contains("57x42"), "{err}");
    assert!(err.contains("multiples of 14") && err.contains("56x42") && err.contains("resizing is not supported yet"), "{err}");
    assert!(!dir.join("out").exists(), "nothing is written on error");
}

#[test]
fn views_of_different_sizes_are_rejected() {
    let (dir, weights) = setup("cli_mixed_sizes");
    let (a, b) = (dir.join("a.png"), dir.join("b.png"));
    write_rgb_png(&a, 56, 42, 0);
    write_rgb_png(&b, 42, 56, 1);
    let out = da3(&["infer", &s(&a), &s(&b), "--model", "da3-small", "--weights", &weights]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&s(&b)) && err.contains("42x56") && err.contains("same size"), "{err}");
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
}

#[test]
fn grayscale_rgba_and_16_bit_images_are_accepted_up_to_the_weights() {
    // All three decode and convert; the run then fails on the empty weights file, which proves
    // that the images passed every check.
    let (dir, weights) = setup("cli_color_types");
    let gray = dir.join("gray.png");
    image::GrayImage::from_fn(28, 14, |x, _| image::Luma([x as u8 * 9])).save(&gray).unwrap();
    let rgba = dir.join("rgba.png");
    image::RgbaImage::from_fn(28, 14, |x, y| image::Rgba([x as u8, y as u8, 7, 128])).save(&rgba).unwrap();
    let deep = dir.join("deep.png");
    image::ImageBuffer::<image::Rgb<u16>, Vec<u16>>::from_fn(28, 14, |x, y| image::Rgb([x as u16 * 2000, y as u16 * 4000, 65535]))
        .save(&deep)
        .unwrap();
    let out = da3(&["infer", &s(&gray), &s(&rgba), &s(&deep), "--model", "da3-small", "--weights", &weights]);
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
    for flag in ["--model", "--weights", "--device", "--out", "--ref-view-strategy", "--quiet", "IMAGES"] {
        assert!(help.contains(flag), "help lacks {flag}:\n{help}");
    }
    for word in ["da3-small", "config.json", "flex", "cuda", "saddle_sim_range", "results.npz", "65535", "multiples of 14"] {
        assert!(help.contains(word), "help lacks {word}:\n{help}");
    }
}
