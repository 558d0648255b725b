//! `da3 fetch`, `da3 models` and `da3 infer` resolving its model through the Hub, against the
//! mock Hub of da3-hub on 127.0.0.1 serving the tiny fixture model as a DA3 repository.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{read_npz, scratch, workspace_root, write_rgb_png};
use da3_hub::mock::{MockHub, MOCK_COMMIT};

const REPO: &str = "depth-anything/DA3-SMALL";

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// The tiny fixture model's config and weights.
fn tiny() -> (PathBuf, PathBuf) {
    let fixtures = workspace_root().join("crates/da3/tests/fixtures");
    (fixtures.join("tiny.config.json"), fixtures.join("tiny.weights.safetensors"))
}

/// A mock Hub whose DA3-SMALL repository holds the tiny model (a full config.json, which the
/// loader accepts like the Hub's `{"model_name": ...}` form).
fn hub() -> MockHub {
    let (cfg, weights) = tiny();
    let server = MockHub::start().unwrap();
    server.add_file(REPO, "config.json", std::fs::read(cfg).unwrap(), false);
    server.add_file(REPO, "model.safetensors", std::fs::read(weights).unwrap(), true);
    server
}

/// Runs `da3` with a clean Hugging Face environment: HF_HOME under `dir`, HF_ENDPOINT the mock.
fn da3_env(args: &[&str], dir: &Path, endpoint: &str, offline: bool) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_da3"));
    cmd.args(args).env("HF_HOME", dir.join("hf")).env("HF_ENDPOINT", endpoint);
    for var in ["HF_HUB_CACHE", "HF_TOKEN", "HF_HUB_OFFLINE"] {
        cmd.env_remove(var);
    }
    if offline {
        cmd.env("HF_HUB_OFFLINE", "1");
    }
    cmd.output().expect("cannot run the da3 binary")
}

fn text(out: &Output) -> (String, String) {
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn fetch_then_models_shows_it_cached() {
    let server = hub();
    let dir = scratch("hub_fetch");
    let ep = server.endpoint();

    let out = da3_env(&["models"], &dir, &ep, false);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    for (preset, repo, licence) in [
        ("da3-small (default)", "depth-anything/DA3-SMALL", "Apache-2.0"),
        ("da3-base", "depth-anything/DA3-BASE", "Apache-2.0"),
        ("da3-large", "depth-anything/DA3-LARGE-1.1", "CC-BY-NC-4.0"),
        ("da3-giant", "depth-anything/DA3-GIANT-1.1", "CC-BY-NC-4.0"),
        ("da3mono-large", "depth-anything/DA3MONO-LARGE", "Apache-2.0"),
        ("da3metric-large", "depth-anything/DA3METRIC-LARGE", "Apache-2.0"),
        ("da3nested-giant-large", "depth-anything/DA3NESTED-GIANT-LARGE-1.1", "CC-BY-NC-4.0"),
    ] {
        let line = stdout.lines().find(|l| l.starts_with(preset)).unwrap_or_else(|| panic!("{preset}:\n{stdout}"));
        assert!(line.contains(repo) && line.contains(licence) && line.contains(" no "), "{line}");
    }
    assert!(stdout.contains(&s(&dir.join("hf/hub"))), "{stdout}");
    assert!(server.requests().is_empty(), "`da3 models` needs no network");

    let out = da3_env(&["fetch", "da3-small"], &dir, &ep, false);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let snapshot = dir.join("hf/hub/models--depth-anything--DA3-SMALL/snapshots").join(MOCK_COMMIT);
    assert!(stdout.contains("depth-anything/DA3-SMALL (downloaded)") && stdout.contains("Apache-2.0"), "{stdout}");
    assert!(stdout.contains(&s(&snapshot.join("model.safetensors"))), "{stdout}");
    assert_eq!(std::fs::read(snapshot.join("model.safetensors")).unwrap(), std::fs::read(tiny().1).unwrap());

    let n = server.requests().len();
    let out = da3_env(&["fetch", "da3-small"], &dir, &ep, false);
    assert!(text(&out).0.contains("(already in the cache)"), "{:?}", text(&out));
    assert_eq!(server.requests().len(), n, "a cached model needs no request");

    let out = da3_env(&["models"], &dir, &ep, false);
    let stdout = text(&out).0;
    let small = stdout.lines().find(|l| l.starts_with("da3-small")).unwrap();
    assert!(small.contains(" yes "), "{small}");
    let base = stdout.lines().find(|l| l.starts_with("da3-base")).unwrap();
    assert!(base.contains(" no "), "{base}");
}

#[test]
fn fetch_errors_are_clear() {
    let server = hub();
    let dir = scratch("hub_fetch_errors");
    let ep = server.endpoint();

    let out = da3_env(&["fetch", "da3-huge"], &dir, &ep, false);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("unknown model `da3-huge`") && stderr.contains("da3-small"), "{stderr}");

    let out = da3_env(&["fetch", "depth-anything/DA3-NOPE"], &dir, &ep, false);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("depth-anything/DA3-NOPE") && stderr.contains("HTTP 404") && stderr.contains(&ep), "{stderr}");

    let out = da3_env(&["fetch", "da3-base"], &dir, &ep, true);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("depth-anything/DA3-BASE is not in the Hugging Face cache") && stderr.contains("HF_HUB_OFFLINE"), "{stderr}");
    assert_eq!(server.requests().len(), 1, "only the 404 request: {:?}", server.requests());
}

/// `--model da3-small` downloads through the Hub; `--model-dir` and offline mode reuse the
/// snapshot; all give the same depth as `--model CONFIG --weights FILE` on the fixture files.
#[test]
fn infer_resolves_presets_through_the_hub() {
    let server = hub();
    let dir = scratch("hub_infer");
    let ep = server.endpoint();
    let img = dir.join("view.png");
    write_rgb_png(&img, 56, 42, 0);
    let (cfg, weights) = tiny();
    let common = ["--device", "flex", "--process-res", "56", "--quiet"];
    let img_s = s(&img);
    let infer = |model_args: &[&str], out: &str, offline: bool| {
        let out_dir = s(&dir.join(out));
        let args = [&["infer", &img_s, "--out", &out_dir][..], model_args, &common].concat();
        let o = da3_env(&args, &dir, &ep, offline);
        assert!(o.status.success(), "{model_args:?}: {:?}", text(&o));
        assert!(o.stdout.is_empty(), "--quiet");
        read_npz(&dir.join(out).join("results.npz"))
    };

    let local = infer(&["--model", &s(&cfg), "--weights", &s(&weights)], "out_local", false);
    assert!(server.requests().is_empty());
    let hub = infer(&["--model", "da3-small"], "out_hub", false);
    assert!(server.requests().len() >= 4, "{:?}", server.requests());
    assert_eq!(local["depth"].shape, [1, 42, 56]);
    assert_eq!(hub, local);

    let n = server.requests().len();
    let snapshot = dir.join("hf/hub/models--depth-anything--DA3-SMALL/snapshots").join(MOCK_COMMIT);
    assert_eq!(infer(&["--model-dir", &s(&snapshot)], "out_dir", false), local);
    // No --model at all: the default preset, da3-small, from the cache, offline.
    assert_eq!(infer(&[], "out_default", true), local);
    assert_eq!(server.requests().len(), n, "cached and local models need no request");

    // Usage errors, before any download.
    let usage = |args: &[&str], expect: &[&str]| {
        let o = da3_env(&[&["infer", &img_s][..], args].concat(), &dir, &ep, false);
        let (_, stderr) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {stderr}");
        for e in expect {
            assert!(stderr.contains(e), "{args:?}: `{e}` not in {stderr}");
        }
    };
    usage(&["--model", &s(&cfg)], &["--weights FILE", "--model-dir DIR"]);
    usage(&["--model-dir", &s(&dir)], &["config.json not found", "--model-dir"]);
    usage(&["--model-dir", &s(&snapshot), "--weights", &s(&weights)], &["cannot be used with"]);
    assert_eq!(server.requests().len(), n);
}

/// Every subcommand reports a bad input (missing, unreadable, over --max-pixels) before the
/// model is resolved: not one request reaches the Hub and nothing is downloaded.
#[test]
fn bad_inputs_fail_before_any_hub_request() {
    let server = hub();
    let dir = scratch("hub_bad_inputs");
    let ep = server.endpoint();
    let missing = dir.join("missing.png");
    let empty_dir = dir.join("no_images");
    std::fs::create_dir_all(&empty_dir).unwrap();
    let junk_dir = dir.join("junk");
    std::fs::create_dir_all(&junk_dir).unwrap();
    std::fs::write(junk_dir.join("empty.png"), b"").unwrap();
    std::fs::write(junk_dir.join("text.jpg"), b"not a jpeg").unwrap();
    let bomb = dir.join("bomb.png");
    common::write_bomb_png(&bomb, 20_000, 20_000);
    let colmap = dir.join("colmap");
    std::fs::create_dir_all(colmap.join("images")).unwrap();
    std::fs::create_dir_all(colmap.join("sparse")).unwrap();

    let good = dir.join("good.png");
    common::write_rgb_png(&good, 64, 48, 1);

    let out = s(&dir.join("out"));
    let cases: Vec<(Vec<String>, &str)> = vec![
        // Flags the preset's architecture cannot serve, known from the preset table alone.
        (vec!["infer".into(), s(&good), "--infer-gs".into()], "3D-Gaussian head"),
        (vec!["infer".into(), s(&good), "--export-format".into(), "mini_npz-gs_ply".into()], "3D-Gaussian head"),
        (vec!["infer".into(), s(&good), "--export-feat-layers".into(), "3,12".into()], "block 12 does not exist"),
        (vec!["infer".into(), s(&good), "--focal".into(), "500".into()], "--focal applies to metric models"),
        (vec!["infer".into(), s(&missing)], "missing.png"),
        (vec!["image".into(), s(&missing)], "missing.png"),
        (vec!["auto".into(), s(&missing)], "missing.png"),
        (vec!["images".into(), s(&empty_dir)], "no images"),
        (vec!["images".into(), s(&junk_dir)], "none of the 2 input images could be read"),
        (vec!["auto".into(), s(&junk_dir)], "none of the 2 input images could be read"),
        (vec!["infer".into(), s(&bomb)], "--max-pixels"),
        (vec!["video".into(), s(&dir.join("missing.mp4"))], "missing.mp4 not found"),
        (vec!["colmap".into(), s(&colmap)], "cameras.bin not found"),
        (vec!["auto".into(), s(&colmap)], "cameras.bin not found"),
    ];
    for (args, expect) in cases {
        let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
        args.extend(["--model", "da3-small", "--out", &out, "--device", "flex", "--process-res", "56"]);
        let o = da3_env(&args, &dir, &ep, false);
        let (_, stderr) = text(&o);
        assert!(!o.status.success(), "{args:?} succeeded");
        assert!(stderr.contains(expect), "{args:?}: `{expect}` not in {stderr}");
        assert!(server.requests().is_empty(), "{args:?} reached the Hub: {:?}", server.requests());
    }
    assert!(!dir.join("hf/hub/models--depth-anything--DA3-SMALL").exists(), "nothing downloaded");
}
