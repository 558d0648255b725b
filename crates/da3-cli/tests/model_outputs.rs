//! `--infer-gs` / `--export-format gs_ply` and `--export-feat-layers` through the `da3` binary,
//! read back with an independent PLY parser and the tests' npz reader, and compared with the
//! library run on the same preprocessed views.

mod common;
#[path = "../../da3-export/tests/common/ply.rs"]
mod ply;

use std::path::{Path, PathBuf};

use ply::{expected_selection, parse_ply, worst_row_difference, GS_PROPERTIES};
use common::{da3, infer_ok, library_preprocess, read_npz, s, scratch, stderr_of, tiny_fixture, write_rgb_png};

/// `--process-res` equal to the longest side of the 56x42 test images: no resize.
const RES: &str = "56";
const W: usize = 56;
const H: usize = 42;

/// Writes `n` distinct 56x42 PNGs into `dir`.
fn images(dir: &Path, n: usize) -> Vec<PathBuf> {
    (0..n)
        .map(|i| {
            let p = dir.join(format!("view_{i}.png"));
            write_rgb_png(&p, W as u32, H as u32, i as u32 + 3);
            p
        })
        .collect()
}

/// `--export-format mini_npz-gs_ply` (which turns on the GS head) on the tiny giant-style model:
/// the PLY has the 3DGS layout and holds the library's Gaussians after the reference's pruning;
/// `--infer-gs` alone writes the same file; `--gs-views-interval 2` keeps only view 0.
#[cfg(feature = "flex")]
#[test]
fn gs_ply_holds_the_library_gaussians_after_pruning() {
    let Some((cfg, weights)) = tiny_fixture("tiny-gs") else { return };
    let dir = scratch("gs_ply_cli");
    let paths = images(&dir, 2);
    let run = |out: &str, extra: &[&str]| {
        let out_dir = dir.join(out);
        let stdout = infer_ok(&paths, (&cfg, &weights), &out_dir, &[&["--device", "flex", "--process-res", RES][..], extra].concat());
        (out_dir, stdout)
    };

    let (out_dir, stdout) = run("out", &["--export-format", "mini_npz-gs_ply"]);
    let ply_path = out_dir.join("gs_ply/0000.ply");
    assert!(stdout.contains(&s(&ply_path)), "the summary lists the PLY: {stdout}");
    let ply = parse_ply(&std::fs::read(&ply_path).unwrap());
    assert_eq!(ply.names, GS_PROPERTIES);

    // The library on the same views, with the GS head on.
    let config = da3::Da3Config::from_json(&std::fs::read_to_string(&cfg).unwrap()).unwrap();
    let model = da3::Da3::<da3::backends::Flex>::from_file(config, &weights, &Default::default()).unwrap();
    let pre = library_preprocess(&paths, 56);
    let options = da3::PredictOptions { infer_gs: true, ..Default::default() };
    let pred = model.predict_with(&pre.views, &options).unwrap();
    let g = pred.gaussians.as_ref().expect("infer_gs gives Gaussians");
    assert_eq!(g.len(), 2 * H * W);
    let npz = read_npz(&out_dir.join("results.npz"));
    assert_eq!(npz["depth"].data, pred.depth, "CLI and library see the same views");

    let keep = expected_selection(&pred.depth, 2, H, W, 1);
    // 40x54 interior pixels per view (1-pixel border at 42x56), of which ~90% are kept.
    assert!(keep.len() > 2 * 40 * 54 * 85 / 100 && keep.len() <= 2 * 40 * 54, "{}", keep.len());
    let worst = worst_row_difference(&ply.rows, &keep, g);
    assert!(worst <= 1e-6, "PLY vs library Gaussians: max relative difference {worst}");

    // --infer-gs alone adds the gs_ply export: the same file.
    let (out2, _) = run("out_flag", &["--infer-gs", "--quiet"]);
    assert_eq!(std::fs::read(out2.join("gs_ply/0000.ply")).unwrap(), std::fs::read(&ply_path).unwrap());

    // Every 2nd view: only view 0's Gaussians.
    let (out3, _) = run("out_interval", &["--infer-gs", "--gs-views-interval", "2", "--quiet"]);
    let ply3 = parse_ply(&std::fs::read(out3.join("gs_ply/0000.ply")).unwrap());
    let keep0 = expected_selection(&pred.depth, 2, H, W, 2);
    assert_eq!(ply3.rows.len(), keep0.len());
    let bits = |rows: &[Vec<f32>]| rows.iter().flatten().map(|v| v.to_bits()).collect::<Vec<u32>>();
    assert_eq!(bits(&ply3.rows), bits(&ply.rows[..keep0.len()]), "view 0 comes first in both files");
}

/// Models without a GS head refuse --infer-gs and gs_ply with a usage error naming the model
/// and the models that have one, before anything is written.
#[test]
fn infer_gs_needs_a_gs_head() {
    let Some((cfg, weights)) = tiny_fixture("tiny") else { return };
    let dir = scratch("gs_ply_usage");
    let paths = images(&dir, 1);
    for flag in [&["--infer-gs"][..], &["--export-format", "mini_npz-gs_ply"]] {
        let out_dir = dir.join("out");
        let mut args = vec!["infer", paths[0].to_str().unwrap()];
        let (cfg, weights, out_s) = (s(&cfg), s(&weights), s(&out_dir));
        args.extend(["--model", &cfg, "--weights", &weights, "--out", &out_s, "--device", "flex", "--process-res", RES]);
        args.extend(flag);
        let o = da3(&args);
        let err = stderr_of(&o);
        assert_eq!(o.status.code(), Some(2), "{flag:?}: {err}");
        assert!(err.contains("3D-Gaussian head") && err.contains("tiny") && err.contains("da3-giant"), "{err}");
        assert!(!out_dir.join("results.npz").exists(), "nothing is written");
    }
}

/// `--export-feat-layers 0,3,7` stores the library's aux features as `feat_layer_<i>`
/// [S, H/14, W/14, D] in results.npz; a block beyond the backbone is a usage error naming the
/// valid range; a non-number is refused by the parser.
#[cfg(feature = "flex")]
#[test]
fn feature_layers_are_stored_in_results_npz() {
    let Some((cfg, weights)) = tiny_fixture("tiny") else { return };
    let dir = scratch("feat_layers_cli");
    let paths = images(&dir, 3);
    let out_dir = dir.join("out");
    let base: Vec<String> = paths
        .iter()
        .map(|p| s(p))
        .chain(["--model", &s(&cfg), "--weights", &s(&weights), "--device", "flex", "--process-res", RES, "--quiet"].map(String::from))
        .collect();
    let run = |extra: &[&str], out: &Path| {
        let mut args = vec!["infer"];
        args.extend(base.iter().map(String::as_str));
        let out_s = s(out);
        args.extend(["--out", &out_s]);
        args.extend(extra);
        da3(&args)
    };
    let o = run(&["--export-feat-layers", "7,0,3", "--ref-view-strategy", "middle"], &out_dir);
    assert!(o.status.success(), "{}", stderr_of(&o));
    let npz = read_npz(&out_dir.join("results.npz"));

    let config = da3::Da3Config::from_json(&std::fs::read_to_string(&cfg).unwrap()).unwrap();
    let dim = config.backbone.embed_dim;
    let model = da3::Da3::<da3::backends::Flex>::from_file(config, &weights, &Default::default()).unwrap();
    let pre = library_preprocess(&paths, 56);
    let options = da3::PredictOptions {
        export_feat_layers: vec![7, 0, 3],
        ref_view_strategy: da3::RefViewStrategy::Middle,
        ..Default::default()
    };
    let pred = model.predict_with(&pre.views, &options).unwrap();
    assert_eq!(npz["depth"].data, pred.depth);
    assert_eq!(pred.aux_features.len(), 3);
    for f in &pred.aux_features {
        let a = &npz[&format!("feat_layer_{}", f.layer)];
        assert_eq!(a.shape, [3, H / 14, W / 14, dim], "layer {}", f.layer);
        assert_eq!(a.dtype, "<f4");
        assert_eq!(a.data, f.data, "layer {}", f.layer);
    }
    assert_eq!(npz.keys().filter(|k| k.starts_with("feat_layer_")).count(), 3);
    // Layers differ from each other (the test would not notice swapped layers otherwise).
    assert_ne!(npz["feat_layer_0"].data, npz["feat_layer_3"].data);

    let o = run(&["--export-feat-layers", "0,8"], &dir.join("bad"));
    let err = stderr_of(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("block 8 does not exist") && err.contains("0 to 7"), "{err}");
    let o = run(&["--export-feat", "1,x"], &dir.join("bad"));
    let err = stderr_of(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("`x` is not a block index"), "{err}");
}
