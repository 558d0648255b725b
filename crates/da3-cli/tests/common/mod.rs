//! Helpers shared by the integration tests: scratch directories, test images, an independent
//! `.npy` reader and access to Python numpy.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A fresh, empty directory for one test under Cargo's per-target temporary directory.
pub fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("da3-cli").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The workspace root (two levels above this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().parent().unwrap().to_path_buf()
}

/// Writes a deterministic, non-constant RGB PNG of `width`x`height` (pattern varies with `seed`).
pub fn write_rgb_png(path: &Path, width: u32, height: u32, seed: u32) {
    let img = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([
            ((x * 255) / width.max(1)) as u8,
            ((y * 255) / height.max(1)) as u8,
            ((x * 7 + y * 13 + seed * 50) % 256) as u8,
        ])
    });
    img.save(path).unwrap();
}

/// Runs the built `da3` binary with `args`.
pub fn da3(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_da3")).args(args).output().expect("cannot run the da3 binary")
}

/// `da3 infer INPUTS --model CONFIG --weights WEIGHTS --out OUT EXTRA…`, which must succeed;
/// returns its stdout.
pub fn infer_ok<P: AsRef<Path>>(inputs: &[P], (config, weights): (&Path, &Path), out: &Path, extra: &[&str]) -> String {
    let mut args: Vec<String> = vec!["infer".into()];
    args.extend(inputs.iter().map(|p| s(p.as_ref())));
    args.extend(["--model".into(), s(config), "--weights".into(), s(weights), "--out".into(), s(out)]);
    args.extend(extra.iter().map(|a| a.to_string()));
    let o = da3(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{extra:?}: {stdout}\n{}", stderr_of(&o));
    stdout
}

/// Whether `python3 -c "import numpy"` works; [`skip_python_check`] when it does not.
pub fn have_numpy() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import numpy"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        skip_python_check("python3 with numpy not available");
    }
    ok
}

/// Reports that an independent Python check cannot run: a `NOTICE` on stderr, or a panic when
/// `DA3_REQUIRE_PYTHON_CHECKS` is set (`scripts/test.sh` sets it after installing the checks'
/// packages, so that CI cannot skip them).
pub fn skip_python_check(why: &str) {
    assert!(std::env::var_os("DA3_REQUIRE_PYTHON_CHECKS").is_none(), "required Python check cannot run (DA3_REQUIRE_PYTHON_CHECKS is set): {why}");
    eprintln!("NOTICE: {why}; independent check skipped");
}

/// A float32 or uint8 array read back from an `.npy` entry (uint8 values are in `data` as
/// exact floats, and `dtype` says which it was).
#[derive(Debug, Clone, PartialEq)]
pub struct Array {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
    /// `<f4` or `|u1`.
    pub dtype: String,
}

/// Parses a little-endian float32 or uint8, C-order `.npy` (version 1.0) without the crate's
/// writer code.
pub fn parse_npy(bytes: &[u8]) -> Array {
    assert_eq!(&bytes[..6], b"\x93NUMPY", "magic");
    assert_eq!(&bytes[6..8], &[1, 0], "version");
    let hlen = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    assert_eq!((10 + hlen) % 64, 0, "header alignment");
    let header = std::str::from_utf8(&bytes[10..10 + hlen]).unwrap();
    let dtype = if header.contains("'descr': '<f4'") {
        "<f4"
    } else {
        assert!(header.contains("'descr': '|u1'"), "{header}");
        "|u1"
    };
    assert!(header.contains("'fortran_order': False"), "{header}");
    let shape_text = header.split("'shape': (").nth(1).unwrap().split(')').next().unwrap();
    let shape: Vec<usize> = shape_text.split(',').map(str::trim).filter(|s| !s.is_empty()).map(|s| s.parse().unwrap()).collect();
    let body = &bytes[10 + hlen..];
    let n: usize = shape.iter().product();
    if dtype == "|u1" {
        assert_eq!(body.len(), n, "data length for shape {shape:?}");
        return Array { shape, data: body.iter().map(|&b| f32::from(b)).collect(), dtype: dtype.into() };
    }
    assert_eq!(body.len(), 4 * n, "data length for shape {shape:?}");
    let data = body.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    Array { shape, data, dtype: dtype.into() }
}

/// Reads every `NAME.npy` entry of an `.npz` with the zip crate's reader and [`parse_npy`].
pub fn read_npz(path: &Path) -> BTreeMap<String, Array> {
    let mut zip = zip::ZipArchive::new(std::fs::File::open(path).unwrap()).unwrap();
    let mut out = BTreeMap::new();
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).unwrap();
        let name = entry.name().strip_suffix(".npy").expect("entries end in .npy").to_string();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).unwrap();
        out.insert(name, parse_npy(&bytes));
    }
    out
}

/// The tiny fixture model `(config, weights)` of `crates/da3/tests/fixtures`, or `None` (with
/// a notice) when it is absent.
pub fn tiny_fixture(name: &str) -> Option<(PathBuf, PathBuf)> {
    let fixtures = workspace_root().join("crates/da3/tests/fixtures");
    let (cfg, weights) = (fixtures.join(format!("{name}.config.json")), fixtures.join(format!("{name}.weights.safetensors")));
    if cfg.is_file() && weights.is_file() {
        Some((cfg, weights))
    } else {
        eprintln!("NOTICE: {} not found; skipping this test", weights.display());
        None
    }
}

/// The tiny mono fixture made metric (`"metric": true` in a copy of its config written to
/// `dir`): `(config, weights)`, or `None` as [`tiny_fixture`].
pub fn tiny_metric_fixture(dir: &Path) -> Option<(PathBuf, PathBuf)> {
    let (cfg, weights) = tiny_fixture("tiny-mono")?;
    let mut config: serde_json::Value = serde_json::from_slice(&std::fs::read(&cfg).unwrap()).unwrap();
    config["metric"] = serde_json::Value::Bool(true);
    let metric_cfg = dir.join("metric.config.json");
    std::fs::write(&metric_cfg, config.to_string()).unwrap();
    Some((metric_cfg, weights))
}

/// `path` as a `String` for command lines.
pub fn s(path: &Path) -> String {
    path.display().to_string()
}

/// stderr of a run, as text.
pub fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Whether `program` runs (`program -version`); prints a visible notice when it does not.
pub fn have_program(program: &str) -> bool {
    let ok = Command::new(program).arg("-version").output().map(|o| o.status.success()).unwrap_or(false);
    if !ok {
        eprintln!("NOTICE: {program} not found on PATH; skipping the part of this test that needs it (apt-get install ffmpeg)");
    }
    ok
}

/// Standard CRC-32 (PNG chunks), bitwise.
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

/// A valid small PNG whose IHDR is rewritten to declare `width`x`height` (CRC fixed up): the
/// header reads fine, the body holds only a few bytes.
pub fn write_bomb_png(path: &Path, width: u32, height: u32) {
    let mut bytes = Vec::new();
    image::RgbImage::new(4, 4).write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png).unwrap();
    // Signature (8), IHDR length (4), "IHDR" (4), width (4), height (4), 5 more bytes, CRC.
    assert_eq!(&bytes[12..16], b"IHDR");
    bytes[16..20].copy_from_slice(&width.to_be_bytes());
    bytes[20..24].copy_from_slice(&height.to_be_bytes());
    let crc = crc32(&bytes[12..29]);
    bytes[29..33].copy_from_slice(&crc.to_be_bytes());
    std::fs::write(path, bytes).unwrap();
}

/// The library's preprocessing of RGB8 PNGs at `process_res`.
pub fn library_preprocess<P: AsRef<Path>>(paths: &[P], process_res: usize) -> da3::preprocess::Preprocessed {
    use da3::preprocess::{preprocess, ImageRef, Options, Pixels};
    let decoded: Vec<image::RgbImage> = paths.iter().map(|p| image::open(p).unwrap().into_rgb8()).collect();
    let refs: Vec<ImageRef<'_>> = decoded
        .iter()
        .map(|img| ImageRef { pixels: Pixels::Rgb8(img.as_raw()), width: img.width() as usize, height: img.height() as usize })
        .collect();
    preprocess(&refs, None, &Options { process_res, ..Options::default() }).unwrap()
}
