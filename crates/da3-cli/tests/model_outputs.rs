//! `--infer-gs` / `--export-format gs_ply` and `--export-feat-layers` through the `da3` binary,
//! read back with an independent PLY parser and the tests' npz reader, and compared with the
//! library run on the same preprocessed views.

mod common;

use std::path::{Path, PathBuf};

use common::{library_preprocess, da3, read_npz, s, scratch, stderr_of, tiny_fixture, write_rgb_png};

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

/// A binary little-endian PLY with one all-float vertex element, parsed independently of
/// `da3_export`: property names and one row of values per vertex.
struct Ply {
    names: Vec<String>,
    rows: Vec<Vec<f32>>,
}

fn parse_ply(bytes: &[u8]) -> Ply {
    let end = bytes.windows(11).position(|w| w == b"end_header\n").expect("end_header") + 11;
    let header = std::str::from_utf8(&bytes[..end]).unwrap();
    let mut lines = header.lines();
    assert_eq!(lines.next(), Some("ply"));
    assert_eq!(lines.next(), Some("format binary_little_endian 1.0"));
    let mut count = None;
    let mut names = Vec::new();
    for line in lines {
        let parts: Vec<&str> = line.split_whitespace().collect();
        match parts.as_slice() {
            ["element", "vertex", n] => count = Some(n.parse::<usize>().unwrap()),
            ["element", other, _] => panic!("unexpected element {other}"),
            ["property", "float", name] => names.push(name.to_string()),
            ["property", ..] => panic!("non-float property: {line}"),
            ["end_header"] => {}
            _ => panic!("unexpected header line: {line}"),
        }
    }
    let count = count.expect("element vertex");
    let body = &bytes[end..];
    assert_eq!(body.len(), count * names.len() * 4, "body size for {count} vertices of {} floats", names.len());
    let values: Vec<f32> = body.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    let rows = values.chunks_exact(names.len()).map(<[f32]>::to_vec).collect();
    Ply { names, rows }
}

/// `torch.quantile` (linear interpolation) of one view's depth, written out for the test.
fn quantile(values: &[f32], q: f64) -> f32 {
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let pos = q * (v.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = (lo + 1).min(v.len() - 1);
    (v[lo] as f64 + (v[hi] as f64 - v[lo] as f64) * (pos - lo as f64)) as f32
}

/// The reference's gs_ply pruning (`save_gaussian_ply` as `export_to_gs_ply` calls it): every
/// `interval`-th view, the outer ⌊8/256·side⌋ rows/columns dropped, depth above the view's
/// 0.9 quantile dropped; indices into the V·H·W Gaussians in file order.
fn expected_selection(depth: &[f32], views: usize, h: usize, w: usize, interval: usize) -> Vec<usize> {
    let (th, tw) = (8 * h / 256, 8 * w / 256);
    let mut keep = Vec::new();
    for v in (0..views).step_by(interval) {
        let d = &depth[v * h * w..(v + 1) * h * w];
        let limit = quantile(d, 0.9);
        for y in th..h - th {
            for x in tw..w - tw {
                if d[y * w + x] <= limit {
                    keep.push((v * h + y) * w + x);
                }
            }
        }
    }
    keep
}

/// The 3DGS layout `export_to_gs_ply` writes (`save_sh_dc_only=True`).
const GS_PROPERTIES: [&str; 17] = [
    "x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1", "scale_2", "rot_0",
    "rot_1", "rot_2", "rot_3",
];

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
        let mut args = vec!["infer".to_string()];
        args.extend(paths.iter().map(|p| s(p)));
        for a in ["--model", &s(&cfg), "--weights", &s(&weights), "--out", &s(&out_dir), "--device", "flex", "--process-res", RES] {
            args.push(a.to_string());
        }
        args.extend(extra.iter().map(|a| a.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = da3(&args);
        assert!(o.status.success(), "{extra:?}: {}", stderr_of(&o));
        let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
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
    assert_eq!(ply.rows.len(), keep.len(), "vertex count");
    let mut worst = 0f32;
    for (row, &i) in ply.rows.iter().zip(&keep) {
        let expect: Vec<f32> = g.means[i]
            .into_iter()
            .chain([0.0; 3])
            .chain(g.harmonics[i].map(|c| c[0]))
            .chain([(g.opacities[i] / (1.0 - g.opacities[i])).ln()])
            .chain(g.scales[i].map(f32::ln))
            .chain(g.rotations[i])
            .collect();
        for (a, b) in row.iter().zip(&expect) {
            // A negative depth-plus-offset gives a negative scale, whose log is NaN (the
            // reference's torch.log does the same): NaN must stay NaN, at the same place.
            assert_eq!(a.is_nan(), b.is_nan(), "Gaussian {i}: {row:?} vs {expect:?}");
            if !b.is_nan() {
                worst = worst.max((a - b).abs() / b.abs().max(1.0));
            }
        }
    }
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
