//! Bad input, one case each: a clear message naming the file and what to do, no panic, a
//! meaningful exit code (1: bad data or environment, 2: bad flags), and in a multi-image run
//! unreadable images are skipped by name while nothing already written is lost.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{da3, read_npz, s, scratch, skip_python_check, stderr_of, tiny_fixture, write_bomb_png, write_rgb_png};

/// Runs `da3 ARGS` with the tiny model into `out` at --process-res 56.
fn run(args: &[&str], model: &(PathBuf, PathBuf), out: &Path) -> Output {
    let (cfg, weights, out_s) = (s(&model.0), s(&model.1), s(out));
    let mut all = args.to_vec();
    all.extend(["--model", &cfg, "--weights", &weights, "--export-dir", &out_s, "--process-res", "56"]);
    da3(&all)
}

/// Asserts a failed run: `code`, no panic, and every `needle` in stderr.
fn assert_fails(out: &Output, code: i32, needles: &[&str]) -> String {
    let err = stderr_of(out);
    assert_eq!(out.status.code(), Some(code), "{err}");
    assert!(!err.contains("panicked") && !err.contains("RUST_BACKTRACE"), "panic: {err}");
    for n in needles {
        assert!(err.contains(n), "stderr lacks `{n}`:\n{err}");
    }
    err
}

#[test]
fn unreadable_single_images_are_named() {
    let Some(model) = tiny_fixture("tiny") else { return };
    let dir = scratch("bad_single");
    let out = dir.join("out");

    let missing = dir.join("missing.png");
    assert_fails(&run(&["image", &s(&missing)], &model, &out), 1, &[&s(&missing), "cannot open image"]);

    let empty = dir.join("empty.png");
    std::fs::write(&empty, b"").unwrap();
    assert_fails(&run(&["image", &s(&empty)], &model, &out), 1, &[&s(&empty), "cannot decode image", "PNG, JPEG"]);

    let corrupt = dir.join("corrupt.jpg");
    std::fs::write(&corrupt, (0..5000u32).map(|i| (i * 7919 % 251) as u8).collect::<Vec<_>>()).unwrap();
    assert_fails(&run(&["image", &s(&corrupt)], &model, &out), 1, &[&s(&corrupt), "cannot decode image"]);

    let truncated = dir.join("truncated.png");
    write_rgb_png(&truncated, 56, 42, 1);
    let bytes = std::fs::read(&truncated).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() * 2 / 3]).unwrap();
    assert_fails(&run(&["image", &s(&truncated)], &model, &out), 1, &[&s(&truncated), "cannot decode image"]);

    // Formats other than PNG and JPEG are recognized and refused by name.
    let gif = dir.join("anim.gif");
    std::fs::write(&gif, b"GIF89a\x02\x00\x02\x00\x00\x00\x00;").unwrap();
    assert_fails(&run(&["image", &s(&gif)], &model, &out), 1, &[&s(&gif), "supported formats: PNG, JPEG"]);
    let bmp = dir.join("pic.bmp");
    std::fs::write(&bmp, b"BM\x3a\x00\x00\x00\x00\x00\x00\x00\x36\x00\x00\x00\x28\x00\x00\x00").unwrap();
    assert_fails(&run(&["auto", &s(&bmp)], &model, &out), 1, &[&s(&bmp), "supported formats: PNG, JPEG"]);

    // A decompression bomb: a tiny PNG declaring 200000x200000 pixels.
    let bomb = dir.join("bomb.png");
    write_bomb_png(&bomb, 200_000, 200_000);
    assert_fails(&run(&["image", &s(&bomb)], &model, &out), 1, &[&s(&bomb), "200000x200000", "--max-pixels"]);
    assert!(!out.exists(), "nothing is written when no input is usable");

    // A folder without images.
    let folder = dir.join("no_images");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join("readme.txt"), "hi").unwrap();
    assert_fails(&run(&["images", &s(&folder)], &model, &out), 1, &[&s(&folder), "no images", "--image-extensions"]);
    // Only bad images in a folder: each is listed.
    std::fs::copy(&empty, folder.join("a.png")).unwrap();
    std::fs::copy(&corrupt, folder.join("b.jpg")).unwrap();
    assert_fails(&run(&["images", &s(&folder)], &model, &out), 1, &["none of the 2 input images", "a.png", "b.jpg"]);
}

/// CMYK JPEG, 16-bit and alpha PNGs all run, converted to RGB as Pillow does.
#[test]
fn cmyk_16_bit_and_alpha_images_work() {
    let Some(model) = tiny_fixture("tiny") else { return };
    let dir = scratch("bad_color");
    let deep = dir.join("deep.png");
    let deep_img = image::ImageBuffer::<image::Rgb<u16>, Vec<u16>>::from_fn(56, 42, |x, y| {
        image::Rgb([x as u16 * 1000 + 77, y as u16 * 1500, 65535 - x as u16 * 600])
    });
    deep_img.save(&deep).unwrap();
    let alpha = dir.join("alpha.png");
    let alpha_img = image::RgbaImage::from_fn(56, 42, |x, y| image::Rgba([x as u8 * 4, y as u8 * 6, 200, (x * y % 256) as u8]));
    alpha_img.save(&alpha).unwrap();
    let out = dir.join("out");
    let res = run(&["infer", &s(&deep), &s(&alpha), "-q"], &model, &out);
    assert!(res.status.success(), "{}", stderr_of(&res));
    // Pillow: 16-bit RGB keeps the high byte; RGBA drops alpha (no premultiplication).
    let p0 = image::open(out.join("processed_0000.png")).unwrap().into_rgb8();
    let want0 = image::RgbImage::from_fn(56, 42, |x, y| {
        let p = deep_img.get_pixel(x, y).0;
        image::Rgb([(p[0] >> 8) as u8, (p[1] >> 8) as u8, (p[2] >> 8) as u8])
    });
    assert_eq!(p0, want0);
    let p1 = image::open(out.join("processed_0001.png")).unwrap().into_rgb8();
    assert_eq!(p1, image::DynamicImage::ImageRgba8(alpha_img).to_rgb8());

    // CMYK JPEG written by Pillow; compared with Pillow's own convert("RGB").
    if !common::have_numpy() {
        return;
    }
    let cmyk = dir.join("cmyk.jpg");
    let expected = dir.join("cmyk_pillow.png");
    let script = r#"
import sys
from PIL import Image
im = Image.new("CMYK", (56, 42))
im.putdata([((x * 4) % 256, (y * 6) % 256, (x * y) % 256, (x + y) % 64) for y in range(42) for x in range(56)])
im.save(sys.argv[1], quality=95)
Image.open(sys.argv[1]).convert("RGB").save(sys.argv[2])
"#;
    let py = Command::new("python3").args(["-c", script]).arg(&cmyk).arg(&expected).output().unwrap();
    if !py.status.success() {
        skip_python_check(&format!("Pillow not available for the CMYK check ({})", stderr_of(&py)));
        return;
    }
    let res = run(&["image", &s(&cmyk), "-q"], &model, &dir.join("cmyk_out"));
    assert!(res.status.success(), "{}", stderr_of(&res));
    let ours = image::open(dir.join("cmyk_out/processed_0000.png")).unwrap().into_rgb8();
    let pillow = image::open(&expected).unwrap().into_rgb8();
    let diffs: Vec<i32> = ours.as_raw().iter().zip(pillow.as_raw()).map(|(&a, &b)| (a as i32 - b as i32).abs()).collect();
    let max = diffs.iter().copied().max().unwrap();
    let mean = diffs.iter().sum::<i32>() as f64 / diffs.len() as f64;
    println!("CMYK JPEG vs Pillow: max difference {max} levels, mean {mean:.3}");
    // Different JPEG decoders (zune-jpeg vs libjpeg-turbo): a few levels, as for RGB JPEGs.
    assert!(max <= 3 && mean <= 0.1, "CMYK JPEG decoded unlike Pillow: max {max}, mean {mean}");
}

#[test]
fn bad_weights_are_named_with_what_to_do() {
    let Some(model) = tiny_fixture("tiny") else { return };
    let Some(mono) = tiny_fixture("tiny-mono") else { return };
    let dir = scratch("bad_weights");
    let img = dir.join("a.png");
    write_rgb_png(&img, 56, 42, 0);
    let truncated = dir.join("truncated.safetensors");
    let bytes = std::fs::read(&model.1).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let out = dir.join("out");
    let res = run(&["image", &s(&img)], &(model.0.clone(), truncated.clone()), &out);
    assert_fails(&res, 1, &[&s(&truncated), "not a valid safetensors file", "re-download"]);

    // The mono model's weights under the main-series config.
    let res = run(&["image", &s(&img)], &(model.0.clone(), mono.1.clone()), &out);
    let err = assert_fails(&res, 1, &[&s(&mono.1), "cannot load model weights"]);
    assert!(err.contains("missing") || err.contains("mismatch") || err.contains("unexpected"), "{err}");
}

#[test]
fn unwritable_export_dir_fails_before_inference() {
    let Some(model) = tiny_fixture("tiny") else { return };
    let dir = scratch("bad_export_dir");
    let img = dir.join("a.png");
    write_rgb_png(&img, 56, 42, 0);
    // A path under a regular file cannot be created (whoever runs the test, root included).
    let blocker = dir.join("blocker");
    std::fs::write(&blocker, b"file").unwrap();
    let out = blocker.join("out");
    let res = run(&["image", &s(&img)], &model, &out);
    let err = assert_fails(&res, 1, &[&s(&out), "--export-dir"]);
    assert!(!err.contains("inference"), "{err}");
}

/// A corrupt image among good ones is skipped by name (stderr, summary, JSON), the scene is
/// the good images' scene, and a later failed run leaves the earlier outputs intact.
#[test]
fn corrupt_image_among_good_ones_is_skipped_and_nothing_is_lost() {
    let Some(model) = tiny_fixture("tiny") else { return };
    let dir = scratch("bad_skip");
    let photos = dir.join("photos");
    std::fs::create_dir_all(&photos).unwrap();
    write_rgb_png(&photos.join("1.png"), 56, 42, 1);
    write_rgb_png(&photos.join("3.png"), 56, 42, 3);
    let bad = photos.join("2.png");
    let bytes = std::fs::read(photos.join("1.png")).unwrap();
    std::fs::write(&bad, &bytes[..bytes.len() / 2]).unwrap();
    let empty = photos.join("4.jpg");
    std::fs::write(&empty, b"").unwrap();

    let out = dir.join("out");
    let res = run(&["images", &s(&photos)], &model, &out);
    let (stdout, err) = (String::from_utf8_lossy(&res.stdout).into_owned(), stderr_of(&res));
    assert!(res.status.success(), "{err}");
    assert!(err.contains("skipped 2 of 4") && err.contains(&s(&bad)) && err.contains(&s(&empty)), "{err}");
    assert!(stdout.contains("2 views") && stdout.contains("skipped    2 inputs"), "{stdout}");
    let ranges: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("depth_png_ranges.json")).unwrap()).unwrap();
    let skipped: Vec<&str> = ranges["skipped"].as_array().unwrap().iter().map(|v| v["image"].as_str().unwrap()).collect();
    assert_eq!(skipped, [s(&bad), s(&empty)]);
    // Skipped inputs are reported even under --quiet.
    let quiet = run(&["images", &s(&photos), "--quiet"], &model, &dir.join("quiet"));
    assert!(quiet.status.success() && quiet.stdout.is_empty());
    assert!(stderr_of(&quiet).contains(&s(&bad)));

    // The same as predicting the good images alone.
    let good = run(&["infer", &s(&photos.join("1.png")), &s(&photos.join("3.png")), "-q"], &model, &dir.join("good"));
    assert!(good.status.success(), "{}", stderr_of(&good));
    assert_eq!(read_npz(&out.join("results.npz")), read_npz(&dir.join("good/results.npz")));

    // A later run with no usable input fails and leaves the earlier outputs as they were.
    let before = std::fs::read(out.join("results.npz")).unwrap();
    let res = run(&["infer", &s(&bad), &s(&empty)], &model, &out);
    assert_fails(&res, 1, &["none of the 2 input images"]);
    assert_eq!(std::fs::read(out.join("results.npz")).unwrap(), before);
    assert!(out.join("depth_0001.png").is_file());
}
