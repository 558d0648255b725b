//! `--chunk-size` / `--max-memory`: a job run in aligned chunks writes every view once, and
//! the summary says how it ran; an impossible budget is refused with advice; `--infer-gs` in
//! chunks writes one Gaussian PLY of every view.

mod common;
#[path = "../../da3-export/tests/common/ply.rs"]
mod ply;

use common::{da3, infer_ok, library_preprocess, read_npz, s, scratch, stderr_of, tiny_fixture, write_rgb_png};
use ply::{expected_selection, parse_ply, worst_row_difference, GS_PROPERTIES};

const W: u32 = 56;
const H: u32 = 42;

fn images(dir: &std::path::Path, n: u32) -> Vec<String> {
    (0..n)
        .map(|i| {
            let p = dir.join(format!("view_{i}.png"));
            write_rgb_png(&p, W, H, 7 * i + 1);
            s(&p)
        })
        .collect()
}

#[test]
fn chunked_run_writes_every_view_and_says_how_it_ran() {
    let Some((cfg, weights)) = tiny_fixture("tiny") else { return };
    let dir = scratch("chunks_cli");
    let imgs = images(&dir, 5);
    let out_dir = dir.join("out");
    let (cfg, weights, out_s) = (s(&cfg), s(&weights), s(&out_dir));
    let mut args: Vec<&str> = vec!["infer"];
    args.extend(imgs.iter().map(String::as_str));
    args.extend(["--model", &cfg, "--weights", &weights, "--out", &out_s, "--device", "flex", "--process-res", "56"]);
    args.extend(["--chunk-size", "3", "--max-memory", "64GiB"]);
    let out = da3(&args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", stderr_of(&out));
    // Chunks of 3 sharing default_overlap(3) = 2 views: 0..3, 1..4, 2..5.
    assert!(
        stdout.contains("chunks     3 chunks of up to 3 views (3 passes), consecutive chunks sharing at least 2, aligned into one pose frame"),
        "{stdout}"
    );
    let arrays = read_npz(&out_dir.join("results.npz"));
    assert_eq!(arrays["depth"].shape, [5, H as usize, W as usize]);
    assert_eq!(arrays["extrinsics"].shape, [5, 3, 4]);
    assert!(arrays["depth"].data.iter().all(|d| d.is_finite() && *d > 0.0));
    assert!(arrays["extrinsics"].data.iter().all(|v| v.is_finite()));
}

#[test]
fn impossible_budget_and_bad_sizes_are_refused_with_advice() {
    let Some((cfg, weights)) = tiny_fixture("tiny") else { return };
    let dir = scratch("chunks_cli_budget");
    let imgs = images(&dir, 3);
    let (cfg, weights, out_s) = (s(&cfg), s(&weights), s(&dir.join("out")));
    let mut args: Vec<&str> = vec!["infer"];
    args.extend(imgs.iter().map(String::as_str));
    args.extend(["--model", &cfg, "--weights", &weights, "--out", &out_s, "--device", "flex", "--process-res", "56"]);
    let mut tiny_budget = args.clone();
    tiny_budget.extend(["--max-memory", "1KiB"]);
    let out = da3(&tiny_budget);
    let err = stderr_of(&out);
    assert!(!out.status.success() && err.contains("out of memory") && err.contains("raise --max-memory"), "{err}");
    let mut bad = args.clone();
    bad.extend(["--max-memory", "lots"]);
    let out = da3(&bad);
    assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
    assert!(stderr_of(&out).contains("not a memory size"));
}

/// `--infer-gs` on a job run in aligned chunks (the tiny giant-style GS model, 5 views):
/// - flex with `--chunk-size 3`: the Gaussian PLY holds exactly the library's chunked
///   Gaussians (`predict_scheduled` with the same chunks) after the reference's pruning;
/// - wgpu with `--max-memory` set to what a pass of 3 views needs by the planner's own model
///   (weights plus the activations, Gaussians included): the budget alone forces 3 chunks and
///   the PLY holds every view's Gaussians, close to the flex run's.
#[cfg(feature = "flex")]
#[test]
fn chunked_infer_gs_writes_one_gaussian_ply() {
    use da3::schedule::{DeviceMemory, ScheduleOptions};
    let Some((cfg, weights)) = tiny_fixture("tiny-gs") else { return };
    let dir = scratch("chunks_gs_cli");
    let imgs = images(&dir, 5);
    let run = |out: &str, extra: &[&str]| {
        let out_dir = dir.join(out);
        let args = [&["--process-res", "56", "--infer-gs"][..], extra].concat();
        let stdout = infer_ok(&imgs, (&cfg, &weights), &out_dir, &args);
        (out_dir, stdout)
    };
    let chunked = "chunks     3 chunks of up to 3 views (3 passes), consecutive chunks sharing at least 2, aligned into one pose frame";
    let (h, w) = (H as usize, W as usize);

    let (out_flex, stdout) = run("flex", &["--device", "flex", "--chunk-size", "3", "--max-memory", "64GiB"]);
    assert!(stdout.contains(chunked), "{stdout}");
    let ply_flex = parse_ply(&std::fs::read(out_flex.join("gs_ply/0000.ply")).unwrap());
    assert_eq!(ply_flex.names, GS_PROPERTIES);
    let config = da3::Da3Config::from_json(&std::fs::read_to_string(&cfg).unwrap()).unwrap();
    let model = da3::Da3::<da3::backends::Flex>::from_file(config, &weights, &Default::default()).unwrap();
    let pre = library_preprocess(&imgs, 56);
    let options = da3::PredictOptions { infer_gs: true, ..Default::default() };
    let sched = ScheduleOptions { chunk_size: Some(3), ..Default::default() };
    let (pred, report) = model.predict_scheduled(&pre.views, &options, &sched, &DeviceMemory::host()).unwrap();
    assert_eq!(report.chunks, vec![0..3, 1..4, 2..5]);
    let g = pred.gaussians.as_ref().expect("chunked infer_gs gives Gaussians");
    assert_eq!((g.views, g.len()), (5, 5 * h * w));
    let npz = read_npz(&out_flex.join("results.npz"));
    assert_eq!(npz["depth"].data, pred.depth, "CLI and library see the same views and chunks");
    let keep = expected_selection(&pred.depth, 5, h, w, 1);
    // 40x54 interior pixels per view (1-pixel border at 42x56), of which ~90% are kept.
    assert!(keep.len() > 5 * 40 * 54 * 85 / 100 && keep.len() <= 5 * 40 * 54, "{}", keep.len());
    let worst = worst_row_difference(&ply_flex.rows, &keep, g);
    assert!(worst <= 1e-6, "PLY vs library chunked Gaussians: max relative difference {worst}");

    #[cfg(feature = "wgpu")]
    {
        // On a GPU the planner's estimate is the weights plus one pass's activations, by the
        // wgpu model's own memory model (its heads run 8 frames at a time, flex's one).
        let config = da3::Da3Config::from_json(&std::fs::read_to_string(&cfg).unwrap()).unwrap();
        let gpu_model = da3::Da3::<da3::backends::Wgpu>::from_file(config, &weights, &Default::default()).unwrap();
        let mm = gpu_model.memory_model(h, w).with_gaussians(true);
        drop(gpu_model);
        let budget = (mm.weights + mm.activation_bytes(3)).to_string();
        let (out_gpu, stdout) = run("wgpu", &["--device", "wgpu", "--max-memory", &budget]);
        assert!(stdout.contains(chunked), "the budget of {budget} B forces chunks of 3: {stdout}");
        let ply = parse_ply(&std::fs::read(out_gpu.join("gs_ply/0000.ply")).unwrap());
        assert_eq!(ply.names, GS_PROPERTIES);
        let depth = read_npz(&out_gpu.join("results.npz"))["depth"].data.clone();
        let keep = expected_selection(&depth, 5, h, w, 1);
        assert_eq!(ply.rows.len(), keep.len(), "one vertex per kept pixel of all 5 views");
        // Positions agree with flex's to the backends' difference (relative to the extent).
        let extent = g.means.iter().flatten().fold(0f32, |m, v| m.max(v.abs()));
        let worst = ply.rows.iter().zip(&keep).map(|(r, &i)| (0..3).map(|k| (r[k] - g.means[i][k]).abs()).fold(0f32, f32::max)).fold(0f32, f32::max);
        println!("wgpu vs flex chunked Gaussian positions: max difference {worst:.2e} (extent {extent:.2})");
        // (1.3e-5 on lavapipe; 1e-3 leaves room for a GPU's arithmetic.)
        assert!(worst <= 1e-3 * extent, "{worst} vs extent {extent}");
    }
}
