//! `--chunk-size` / `--max-memory`: a job run in aligned chunks writes every view once, and
//! the summary says how it ran; an impossible budget is refused with advice.

mod common;

use common::{da3, read_npz, s, scratch, stderr_of, tiny_fixture, write_rgb_png};

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
