//! The tiling scheduler: chunk alignment on a synthetic scene with known poses, out-of-memory
//! recovery with injected failures, decode/inference overlap, the tiny model run in one
//! pass and in chunks, including a measured peak under `--max-memory`, and 3D Gaussians moved
//! across chunks (synthetic frames with known similarities, and the tiny GS model).

mod common;

use std::ops::Range;
use std::sync::mpsc;
use std::sync::Mutex;
use std::time::Duration;

use da3::align::{apply_sim3, Extrinsics, Sim3};
use da3::linalg::{mul3, M3};
use da3::schedule::plan::{plan, ScheduleOptions};
use da3::schedule::runner::{run_chunked, ChunkFailure, Event};
use da3::schedule::stitch::fit_chunk_alignment;
use da3::schedule::{AttentionKind, DeviceMemory, MemoryModel};
use da3::gaussians::{adapt, AdapterInput, RAW_CHANNELS, SH_COEFFS};
use da3::{Da3, Da3Config, Da3Error, Gaussians, PredictOptions, Prediction, RefViewStrategy, Views};

type B = da3::backends::Flex;

const H: usize = 4;
const W: usize = 5;

fn rot(axis: [f64; 3], angle: f64) -> M3 {
    let n = (axis[0] * axis[0] + axis[1] * axis[1] + axis[2] * axis[2]).sqrt();
    let [x, y, z] = axis.map(|a| a / n);
    let (s, c) = angle.sin_cos();
    let t = 1.0 - c;
    [
        [t * x * x + c, t * x * y - s * z, t * x * z + s * y],
        [t * x * y + s * z, t * y * y + c, t * y * z - s * x],
        [t * x * z - s * y, t * y * z + s * x, t * z * z + c],
    ]
}

/// A scene of `n` cameras with known world-to-camera poses and depth maps ([H, W] each).
struct Scene {
    ext: Vec<Extrinsics>,
    depth: Vec<Vec<f32>>,
}

/// Cameras on a helix looking inwards (`line`: all centres on one straight line instead).
fn scene(n: usize, line: bool) -> Scene {
    let ext = (0..n)
        .map(|i| {
            let a = i as f64 * 0.35;
            let r = mul3(&rot([0.0, 1.0, 0.0], a), &rot([1.0, 0.0, 0.2], 0.1 * (i as f64).sin()));
            let centre = if line { [0.3 * i as f64, 0.1 * i as f64, 0.0] } else { [2.0 * a.sin(), 0.2 * i as f64, -2.0 * a.cos()] };
            // w2c: R = rᵀ, t = −R·C.
            let rw: M3 = std::array::from_fn(|row| std::array::from_fn(|col| r[col][row]));
            let t: [f64; 3] = std::array::from_fn(|row| -(0..3).map(|k| rw[row][k] * centre[k]).sum::<f64>());
            std::array::from_fn(|row| [rw[row][0], rw[row][1], rw[row][2], t[row]])
        })
        .collect();
    let depth = (0..n).map(|v| (0..H * W).map(|p| 1.5 + 0.1 * v as f32 + 0.05 * p as f32).collect()).collect();
    Scene { ext, depth }
}

/// A Sim(3) per chunk, different for each (the frame each separate pass would pick).
fn chunk_sim3(i: usize) -> Sim3 {
    Sim3 {
        rotation: rot([0.3, 1.0 - 0.2 * i as f64, 0.5], 0.4 + 0.7 * i as f64),
        translation: [0.5 * i as f64 - 1.0, 0.3, -0.2 * i as f64],
        scale: 0.6 + 0.35 * i as f64,
    }
}

/// What a pass over `range` would return if each pass had its own frame `sim`.
fn fake_pass(scene: &Scene, range: Range<usize>, sim: &Sim3) -> Prediction {
    Prediction {
        views: range.len(),
        height: H,
        width: W,
        depth: range.clone().flat_map(|v| scene.depth[v].iter().map(|d| (*d as f64 * sim.scale) as f32)).collect(),
        conf: vec![1.0; range.len() * H * W],
        extrinsics: range.clone().map(|v| apply_sim3(sim, &scene.ext[v]).map(|r| r.map(|x| x as f32))).collect(),
        intrinsics: vec![[[10.0, 0.0, 2.0], [0.0, 10.0, 2.0], [0.0, 0.0, 1.0]]; range.len()],
        ..Default::default()
    }
}

fn dummy_views(range: Range<usize>) -> Result<Views, Da3Error> {
    Views::from_normalized(range.clone().flat_map(|v| vec![v as f32; 3 * 14 * 14]).collect(), range.len(), 14, 14)
}

fn small_model() -> MemoryModel {
    MemoryModel::new(&Da3Config::preset("da3-small").unwrap(), 280, 280, 100 << 20, AttentionKind::Fused)
}

/// Asserts that the merged prediction is the scene in the first chunk's frame `sim0`.
fn assert_in_frame(scene: &Scene, pred: &Prediction, sim0: &Sim3, tol: f64) {
    assert_eq!(pred.views, scene.ext.len());
    let mut worst = (0.0f64, 0.0f64);
    for v in 0..pred.views {
        let want = apply_sim3(sim0, &scene.ext[v]);
        for r in 0..3 {
            for c in 0..4 {
                worst.0 = worst.0.max((pred.extrinsics[v][r][c] as f64 - want[r][c]).abs());
            }
        }
        for (d, truth) in pred.depth_of(v).iter().zip(&scene.depth[v]) {
            let want = *truth as f64 * sim0.scale;
            worst.1 = worst.1.max((*d as f64 - want).abs() / want);
        }
    }
    assert!(worst.0 < tol && worst.1 < tol, "max |extrinsic error| {:.2e}, max relative depth error {:.2e}", worst.0, worst.1);
}

/// Chunks given a different random Sim(3) each come back in one frame: poses within 1e-5
/// (f32 storage of the chunk outputs bounds it; the fit itself is f64), depth likewise; also
/// for collinear camera centres, where Umeyama on centres is undefined.
#[test]
fn chunks_of_a_synthetic_scene_align_into_one_frame() {
    for (line, overlap) in [(false, 2), (false, 3), (true, 2), (true, 1)] {
        let scene = scene(13, line);
        let opts = ScheduleOptions { chunk_size: Some(5), overlap: Some(overlap), ..Default::default() };
        let plan = plan(&small_model(), &DeviceMemory::gpu(None, 0, None), 13, &opts, true).unwrap();
        assert!(plan.chunks.len() >= 3, "{:?}", plan.chunks);
        let chunk_index = Mutex::new(0usize);
        let run = |range: Range<usize>, _: &Views| {
            let mut i = chunk_index.lock().unwrap();
            *i += 1;
            Ok(fake_pass(&scene, range, &chunk_sim3(*i - 1)))
        };
        let (pred, report) = run_chunked(&plan, true, Some(overlap), dummy_views, run, &mut |_| {}).unwrap();
        assert_eq!(report.chunks, plan.chunks);
        assert_in_frame(&scene, &pred, &chunk_sim3(0), 1e-5);
        for (i, a) in report.alignments.iter().enumerate() {
            let a = a.as_ref().expect("chunks with cameras are aligned");
            // The fitted scale maps chunk i+1's frame into chunk 0's: s0 / s_{i+1}.
            let want = chunk_sim3(0).scale / chunk_sim3(i + 1).scale;
            assert!((a.sim3.scale - want).abs() < 1e-5 * want, "{} vs {want}", a.sim3.scale);
            assert!(a.max_rotation_error_deg < 1e-3 && a.max_centre_error < 1e-5, "{a:?}");
            // Umeyama's scale agrees where ≥ 3 shared centres span a plane; collinear centres
            // give none.
            match (line, a.umeyama_scale) {
                (true, s) => assert!(s.is_none(), "collinear centres: {s:?}"),
                (false, Some(s)) => assert!((s - want).abs() < 1e-4 * want),
                (false, None) => assert!(report.plan.chunks[i + 1].start + 3 > report.plan.chunks[i].end),
            }
        }
    }
}

/// The fit on noisy shared views: the residuals report the disagreement.
#[test]
fn alignment_residuals_report_disagreeing_chunks() {
    let s = scene(4, false);
    let job: Vec<Extrinsics> = s.ext[..2].to_vec();
    let mut moved: Vec<Extrinsics> = job.iter().map(|e| apply_sim3(&chunk_sim3(1), e)).collect();
    moved[1][0][3] += 0.5; // one shared view disagrees by 0.5 in translation
    let d: Vec<&[f32]> = s.depth[..2].iter().map(|v| v.as_slice()).collect();
    let scaled: Vec<Vec<f32>> = s.depth[..2].iter().map(|v| v.iter().map(|x| x * chunk_sim3(1).scale as f32).collect()).collect();
    let ds: Vec<&[f32]> = scaled.iter().map(|v| v.as_slice()).collect();
    let fit = fit_chunk_alignment(&job, &d, &moved, &ds).unwrap();
    // 0.5 in chunk units is 0.5 / 0.95 in job units, shared equally by the two views' centres
    // (the translation is their mean), over a median depth of ≈ 2.1.
    assert!(fit.max_centre_error > 0.05 && fit.max_centre_error < 0.2, "{fit:?}");
    assert!(fit_chunk_alignment(&job, &d, &moved[..1], &ds[..1]).is_err());
}

/// A `run_chunk` that fails for chunks of more than 3 views: the runner splits 8 → 4 → 2, says
/// so, and still returns every view once, aligned.
#[test]
fn out_of_memory_chunks_are_split_and_retried() {
    let scene = scene(11, false);
    let opts = ScheduleOptions { chunk_size: Some(8), ..Default::default() };
    let plan = plan(&small_model(), &DeviceMemory::gpu(None, 0, None), 11, &opts, true).unwrap();
    assert_eq!(plan.chunks, vec![0..8, 3..11]);
    let passes = Mutex::new(0usize);
    let run = |range: Range<usize>, views: &Views| {
        assert_eq!(views.count(), range.len());
        assert_eq!(views.data()[0], range.start as f32, "the chunk's own views");
        if range.len() > 3 {
            return Err(ChunkFailure::OutOfMemory(format!("injected: {} views > 3", range.len())));
        }
        let mut p = passes.lock().unwrap();
        *p += 1;
        Ok(fake_pass(&scene, range, &chunk_sim3(*p - 1)))
    };
    let mut events = Vec::new();
    let (pred, report) = run_chunked(&plan, true, None, dummy_views, run, &mut |e| events.push(e.clone())).unwrap();
    let splits: Vec<(Range<usize>, usize)> = report.splits.iter().map(|s| (s.chunk.clone(), s.new_chunk_size)).collect();
    assert_eq!(splits, vec![(0..8, 4), (0..4, 2)]);
    assert!(report.splits[0].reason.contains("injected"));
    assert_eq!(events.iter().filter(|e| matches!(e, Event::Split(_))).count(), 2);
    // Chunks of 2 share 1 view (default_overlap(2)).
    assert_eq!(report.chunks, (0..10).map(|s| s..s + 2).collect::<Vec<_>>());
    assert_eq!(report.passes, 12);
    assert_in_frame(&scene, &pred, &chunk_sim3(0), 1e-5);

    // Failures that never go away end in an error naming the views and what to do.
    let always = |_: Range<usize>, _: &Views| -> Result<Prediction, ChunkFailure> {
        Err(ChunkFailure::OutOfMemory("injected".into()))
    };
    let e = run_chunked(&plan, true, None, dummy_views, always, &mut |_| {}).unwrap_err();
    assert!(matches!(e, Da3Error::OutOfMemory(_)) && e.to_string().contains("--max-memory"), "{e}");
    // Other errors stop the job at once.
    let broken = |_: Range<usize>, _: &Views| -> Result<Prediction, ChunkFailure> {
        Err(ChunkFailure::Failed(Da3Error::Input("bad view".into())))
    };
    assert!(run_chunked(&plan, true, None, dummy_views, broken, &mut |_| {}).unwrap_err().to_string().contains("bad view"));
}

/// The next chunk's views are loaded while the current chunk runs: the loader of a later
/// chunk blocks until `run_chunk` of the chunk before has started, which would time out if the
/// loading ran before the inference instead of beside it.
#[test]
fn next_chunk_is_decoded_while_the_current_one_runs() {
    let scene = scene(10, false);
    let opts = ScheduleOptions { chunk_size: Some(4), ..Default::default() };
    let plan = plan(&small_model(), &DeviceMemory::gpu(None, 0, None), 10, &opts, true).unwrap();
    let (running_tx, running_rx) = mpsc::channel::<usize>();
    let running_rx = Mutex::new(running_rx);
    let loads = Mutex::new(Vec::new());
    let source = |range: Range<usize>| {
        loads.lock().unwrap().push(range.clone());
        if range.start > 0 {
            // Wait for the chunk before this one to be running.
            let started = running_rx.lock().unwrap().recv_timeout(Duration::from_secs(20));
            if started.is_err() {
                return Err(Da3Error::Input(format!("views {range:?} were loaded while no chunk ran")));
            }
        }
        dummy_views(range)
    };
    let run = |range: Range<usize>, _: &Views| {
        running_tx.send(range.start).unwrap();
        Ok(fake_pass(&scene, range, &chunk_sim3(0)))
    };
    let (pred, report) = run_chunked(&plan, true, None, source, run, &mut |_| {}).unwrap();
    assert_eq!(pred.views, 10);
    assert_eq!(report.chunks, vec![0..4, 2..6, 4..8, 6..10]);
    // Each view is loaded once: the first chunk, then only the new views of each next chunk.
    assert_eq!(*loads.lock().unwrap(), vec![0..4, 4..6, 6..8, 8..10]);
}

fn tiny() -> Da3<B> {
    let dir = common::fixtures();
    let config = Da3Config::from_json(&std::fs::read_to_string(dir.join("tiny.config.json")).unwrap()).unwrap();
    Da3::<B>::from_file(config, &dir.join("tiny.weights.safetensors"), &Default::default()).unwrap()
}

/// Smooth, view-dependent images (normalized values), [S, 3, H, W].
fn tiny_views(s: usize, h: usize, w: usize) -> Views {
    let mut data = Vec::with_capacity(s * 3 * h * w);
    for v in 0..s {
        for c in 0..3 {
            for y in 0..h {
                for x in 0..w {
                    let t = (x as f32 * 0.11 + y as f32 * 0.07 + v as f32 * 0.9 + c as f32).sin();
                    data.push(t + 0.1 * v as f32 - 0.5);
                }
            }
        }
    }
    Views::from_normalized(data, s, h, w).unwrap()
}

/// A job that fits runs as exactly today's single pass: identical bits.
#[test]
fn a_job_that_fits_is_one_pass_identical_to_predict_with() {
    let model = tiny();
    let views = tiny_views(5, 42, 56);
    let options = PredictOptions { ref_view_strategy: RefViewStrategy::Middle, ..Default::default() };
    let single = model.predict_with(&views, &options).unwrap();
    let host = DeviceMemory::host();
    let sched = ScheduleOptions { max_memory: Some(64 << 30), ..Default::default() };
    let (pred, report) = model.predict_scheduled(&views, &options, &sched, &host).unwrap();
    assert!(report.plan.is_single_pass() && report.passes == 1 && report.splits.is_empty());
    assert_eq!(pred.depth, single.depth);
    assert_eq!(pred.conf, single.conf);
    assert_eq!(pred.extrinsics, single.extrinsics);
    assert_eq!(pred.intrinsics, single.intrinsics);
}

/// The tiny model on 10 views in chunks of 4: the first chunk's views are exactly a separate
/// pass over them (it defines the frame); every later view is its own chunk's separate pass
/// moved by the Sim(3) fitted on the shared views (recomputed here from the separate passes,
/// to 1e-5). The random-weight tiny model is not multi-view consistent, so the residual on the
/// shared views measures the model, not the scheduler (exactness is the synthetic test's); it
/// is only checked to be reported and finite.
#[test]
fn tiny_model_in_chunks_of_four_is_aligned_pass_by_pass() {
    let model = tiny();
    let views = tiny_views(10, 42, 56);
    let options = PredictOptions { ref_view_strategy: RefViewStrategy::First, ..Default::default() };
    let sched = ScheduleOptions { chunk_size: Some(4), ..Default::default() };
    let (pred, report) = model.predict_scheduled(&views, &options, &sched, &DeviceMemory::host()).unwrap();
    assert_eq!(report.chunks, vec![0..4, 2..6, 4..8, 6..10]);
    assert_eq!(pred.views, 10);
    let n = 42 * 56;
    // The merged arrays were sized for all 10 views when the first chunk came (growing them
    // chunk by chunk doubled their capacity, past the planner's count of the outputs).
    assert_eq!((pred.depth.len(), pred.depth.capacity()), (10 * n, 10 * n));
    assert_eq!((pred.conf.len(), pred.conf.capacity()), (10 * n, 10 * n));
    assert_eq!(pred.extrinsics.capacity(), 10);
    // Replay: separate passes, aligned one after the other.
    let mut job_ext: Vec<Extrinsics> = Vec::new();
    let mut job_depth: Vec<Vec<f32>> = Vec::new();
    for (i, range) in report.chunks.iter().enumerate() {
        let p = model.predict_with(&views.select(range.clone()).unwrap(), &options).unwrap();
        let ext: Vec<Extrinsics> = p.extrinsics.iter().map(|e| e.map(|r| r.map(f64::from))).collect();
        let depth: Vec<Vec<f32>> = (0..p.views).map(|v| p.depth_of(v).to_vec()).collect();
        if i == 0 {
            assert_eq!(pred.depth[..4 * n], p.depth[..], "the first chunk is a plain pass");
            assert_eq!(pred.extrinsics[..4], p.extrinsics[..]);
            job_ext = ext;
            job_depth = depth;
            continue;
        }
        let shared = job_ext.len() - range.start;
        let jd: Vec<&[f32]> = job_depth[range.start..].iter().map(|d| d.as_slice()).collect();
        let cd: Vec<&[f32]> = depth[..shared].iter().map(|d| d.as_slice()).collect();
        let fit = fit_chunk_alignment(&job_ext[range.start..], &jd, &ext[..shared], &cd).unwrap();
        let reported = report.alignments[i - 1].as_ref().unwrap();
        assert!((reported.sim3.scale - fit.sim3.scale).abs() < 1e-6 * fit.sim3.scale);
        assert!(reported.max_rotation_error_deg.is_finite() && reported.max_centre_error.is_finite());
        for v in shared..range.len() {
            let want = apply_sim3(&fit.sim3, &ext[v]);
            let got = pred.extrinsics[range.start + v];
            for r in 0..3 {
                for c in 0..4 {
                    assert!((got[r][c] as f64 - want[r][c]).abs() < 1e-5, "view {}: {got:?} vs {want:?}", range.start + v);
                }
            }
            for (a, b) in pred.depth_of(range.start + v).iter().zip(&depth[v]) {
                assert!((*a as f64 - *b as f64 * fit.sim3.scale).abs() <= 1e-5 * a.abs() as f64);
            }
            job_ext.push(want);
            job_depth.push(pred.depth_of(range.start + v).to_vec());
        }
    }
}

/// A run under `--max-memory` stays under it, measured: a child process (this test binary
/// running `peak_memory_child`) predicts 32 views of 280x280 with the tiny model and reports
/// its peak resident memory (`VmHWM`, the whole process). Without a budget the single pass
/// peaks above the budget, so the budget is what kept the chunked run down. (16 views were
/// enough until the heads ran one frame at a time on flex: their single pass then peaked at
/// 115 MiB, under the budget; 32 views peak at ~190 MiB.)
#[cfg(target_os = "linux")]
#[test]
fn peak_memory_stays_under_max_memory() {
    let budget: u64 = 160 << 20;
    let run = |budget: Option<u64>| -> (u64, usize) {
        let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
        cmd.args(["--exact", "peak_memory_child", "--ignored", "--nocapture", "--test-threads=1"]);
        cmd.env("DA3_PEAK_CHILD", budget.map_or("none".into(), |b| b.to_string()));
        let out = cmd.output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(out.status.success(), "child failed:\n{text}\n{}", String::from_utf8_lossy(&out.stderr));
        let line = text.split("PEAK ").nth(1).unwrap_or_else(|| panic!("no PEAK line in:\n{text}"));
        let f: Vec<u64> = line.split_whitespace().take(2).map(|v| v.parse().unwrap()).collect();
        (f[0], f[1] as usize)
    };
    let (peak, chunks) = run(Some(budget));
    let (unbounded, one) = run(None);
    eprintln!("peak with --max-memory 160MiB: {} MiB in {chunks} chunks; single pass: {} MiB", peak >> 20, unbounded >> 20);
    assert_eq!(one, 1);
    assert!(chunks > 1, "the budget forces chunks");
    assert!(peak <= budget, "peak {} MiB over the 160 MiB budget", peak >> 20);
    assert!(unbounded > budget, "the single pass ({} MiB) must exceed the budget for this test to mean anything", unbounded >> 20);
}

/// The child of [`peak_memory_stays_under_max_memory`]; does nothing on its own.
#[test]
#[ignore = "run by peak_memory_stays_under_max_memory in a child process"]
fn peak_memory_child() {
    let Ok(budget) = std::env::var("DA3_PEAK_CHILD") else { return };
    let model = tiny();
    let views = tiny_views(32, 280, 280);
    let sched = ScheduleOptions { max_memory: budget.parse().ok(), ..Default::default() };
    let (pred, report) =
        model.predict_scheduled(&views, &PredictOptions::default(), &sched, &DeviceMemory::host()).unwrap();
    assert_eq!(pred.views, 32);
    let peak = da3::schedule::device::peak_rss().unwrap();
    println!("PEAK {peak} {}", report.chunks.len());
}

/// The host's `resident` leaves out freed heap memory the allocator keeps: a process that
/// ran a pass and freed it (a server between requests) is not charged for it twice. In a
/// child process, so that other tests' allocations do not move the numbers.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[test]
fn host_resident_leaves_out_freed_heap() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "freed_heap_child", "--ignored", "--nocapture", "--test-threads=1"])
        .env("DA3_FREED_HEAP_CHILD", "1")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "child failed:\n{text}\n{}", String::from_utf8_lossy(&out.stderr));
    let line = text.split("FREED ").nth(1).unwrap_or_else(|| panic!("no FREED line in:\n{text}"));
    let f: Vec<i64> = line.split_whitespace().take(2).map(|v| v.parse().unwrap()).collect();
    let (rss_growth, resident_growth) = (f[0] >> 20, f[1] >> 20);
    eprintln!("after 64 MiB allocated and freed: RSS +{rss_growth} MiB, resident +{resident_growth} MiB");
    assert!(rss_growth >= 48, "the freed blocks must stay resident for this test to mean anything (+{rss_growth} MiB)");
    assert!(resident_growth.abs() <= 8, "freed heap counted as held: +{resident_growth} MiB");
}

/// The child of [`host_resident_leaves_out_freed_heap`]; does nothing on its own.
#[test]
#[ignore = "run by host_resident_leaves_out_freed_heap in a child process"]
fn freed_heap_child() {
    if std::env::var("DA3_FREED_HEAP_CHILD").is_err() {
        return;
    }
    let rss = || da3::schedule::device::process_rss().unwrap() as i64;
    let (rss0, resident0) = (rss(), DeviceMemory::host().resident as i64);
    // 64 MiB in 64 KiB blocks (heap memory, under glibc's mmap threshold), each written.
    let blocks: Vec<Vec<u8>> = (0..1024).map(|i| vec![i as u8 | 1; 64 << 10]).collect();
    // A block after them keeps the heap from being trimmed back when they are freed.
    let guard = std::hint::black_box(vec![7u8; 4096]);
    drop(std::hint::black_box(blocks));
    let (rss1, resident1) = (rss(), DeviceMemory::host().resident as i64);
    drop(guard);
    println!("FREED {} {}", rss1 - rss0, resident1 - resident0);
}

// ---------------------------------------------------------------------------------------------
// 3D Gaussians in chunked runs.

/// Deterministic raw GS-head channels of global view `v` ([H, W, 37], depth offset `offset`)
/// and its density ([H, W]).
fn raw_gs(v: usize, offset: f32) -> (Vec<f32>, Vec<f32>) {
    let mut raw = Vec::with_capacity(H * W * RAW_CHANNELS);
    for p in 0..H * W {
        for c in 0..RAW_CHANNELS {
            let x = ((v * 31 + p * 7 + c * 13) as f32 * 0.37).sin();
            raw.push(match c {
                0 | 1 => 0.3 * x,                // pixel offsets
                c if c == RAW_CHANNELS - 1 => offset, // depth offset
                _ => x,
            });
        }
    }
    let density = (0..H * W).map(|p| 0.2 + 0.6 * ((v + p) as f32 * 0.21).sin().abs()).collect();
    (raw, density)
}

const K: [[f32; 3]; 3] = [[10.0, 0.0, 2.0], [0.0, 10.0, 2.0], [0.0, 0.0, 1.0]];

/// The adapter's Gaussians of the scene's views `range` seen in the frame `sim` (cameras
/// moved by it, depth scaled by its scale), with depth offset `offset`, all divided by
/// `metric` (the nested model's Gaussians are computed before its metric scaling).
fn adapted(scene: &Scene, range: Range<usize>, sim: &Sim3, offset: f32, metric: f64) -> Gaussians {
    let (mut raw, mut density, mut depth, mut ext) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for v in range.clone() {
        let (r, d) = raw_gs(v, offset);
        raw.extend(r);
        density.extend(d);
        // The distance along the ray is (depth + offset); it scales with the frame.
        depth.extend(scene.depth[v].iter().map(|t| ((*t as f64 + offset as f64) * sim.scale / metric - offset as f64) as f32));
        let mut e = apply_sim3(sim, &scene.ext[v]);
        e.iter_mut().for_each(|row| row[3] /= metric);
        ext.push(e.map(|r| r.map(|x| x as f32)));
    }
    adapt(&AdapterInput {
        views: range.len(),
        height: H,
        width: W,
        raw: &raw,
        density: &density,
        depth: &depth,
        extrinsics: &ext,
        intrinsics: &vec![K; range.len()],
        pose_scale: 1.0,
    })
    .unwrap()
}

/// Largest difference between two sets of Gaussians, field by field (quaternions up to sign).
fn gaussian_error(a: &Gaussians, b: &Gaussians) -> [f64; 5] {
    assert_eq!((a.views, a.height, a.width, a.len()), (b.views, b.height, b.width, b.len()));
    let max = |x: &mut dyn Iterator<Item = f64>| x.fold(0.0f64, f64::max);
    let diff = |p: &[f32], q: &[f32]| p.iter().zip(q).map(|(x, y)| (*x as f64 - *y as f64).abs()).fold(0.0, f64::max);
    [
        max(&mut a.means.iter().zip(&b.means).map(|(p, q)| diff(p, q))),
        max(&mut a.scales.iter().zip(&b.scales).map(|(p, q)| diff(p, q) / q.iter().fold(1e-6f32, |m, v| m.max(*v)) as f64)),
        max(&mut a.rotations.iter().zip(&b.rotations).map(|(p, q)| diff(p, q).min(diff(p, &q.map(|v| -v))))),
        max(&mut a.harmonics.iter().zip(&b.harmonics).map(|(p, q)| diff(p.as_flattened(), q.as_flattened()))),
        diff(&a.opacities, &b.opacities),
    ]
}

/// One Gaussian moved by a hand-computed similarity: 90° about z, scale 2, translation
/// (0, 0, 1) takes the mean (1, 0, 0) to (0, 2, 1), doubles the scales, turns the identity
/// orientation into the 90° one, maps the l = 1 SH of a function along +x onto +y, and keeps
/// the DC term and the opacity.
#[test]
fn gaussian_transform_on_known_values() {
    let c = std::f64::consts::FRAC_1_SQRT_2;
    let sim = Sim3 { rotation: rot([0.0, 0.0, 1.0], std::f64::consts::FRAC_PI_2), translation: [0.0, 0.0, 1.0], scale: 2.0 };
    // l = 1 coefficients are C1·(−y, z, −x): a lobe along +x is (0, 0, −1).
    let mut sh = [[0.0f32; SH_COEFFS]; 3];
    sh[0][0] = 0.7;
    sh[0][3] = -1.0;
    let mut g = Gaussians {
        views: 1,
        height: 1,
        width: 1,
        means: vec![[1.0, 0.0, 0.0]],
        scales: vec![[0.1, 0.2, 0.3]],
        // The reference's components (i, j, k, r): identity is (0, 0, 0, 1).
        rotations: vec![[0.0, 0.0, 0.0, 1.0]],
        harmonics: vec![sh],
        opacities: vec![0.4],
    };
    g.transform(&sim);
    let close = |a: &[f32], b: &[f64]| a.iter().zip(b).all(|(x, y)| (*x as f64 - y).abs() < 1e-6);
    assert!(close(&g.means[0], &[0.0, 2.0, 1.0]), "{:?}", g.means[0]);
    assert!(close(&g.scales[0], &[0.2, 0.4, 0.6]), "{:?}", g.scales[0]);
    // 90° about z: (i, j, k, r) = (0, 0, sin 45°, cos 45°).
    assert!(close(&g.rotations[0], &[0.0, 0.0, c, c]), "{:?}", g.rotations[0]);
    // A lobe along +y is C1·(−1, 0, 0): coefficient 1 = −1, 3 = 0.
    let want: Vec<f64> = [0.7, -1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0].to_vec();
    assert!(close(&g.harmonics[0][0], &want), "{:?}", g.harmonics[0][0]);
    assert!(g.harmonics[0][1].iter().chain(&g.harmonics[0][2]).all(|v| *v == 0.0));
    assert_eq!(g.opacities, vec![0.4]);
}

/// The adapter's Gaussians of a chunk, moved by the chunk's similarity, are the adapter's
/// Gaussians of the same views predicted in the target frame (cameras moved, distances
/// scaled), for every field and a non-zero depth offset: ≤ 1e-5 (f32 storage).
#[test]
fn moved_gaussians_are_the_gaussians_of_the_moved_cameras() {
    let scene = scene(3, false);
    for i in 1..4 {
        let (from, to) = (chunk_sim3(i), chunk_sim3(0));
        let mut moved = adapted(&scene, 0..3, &from, 0.05, 1.0);
        // from-frame → to-frame: to ∘ from⁻¹.
        moved.transform(&compose(&to, &invert(&from)));
        let err = gaussian_error(&moved, &adapted(&scene, 0..3, &to, 0.05, 1.0));
        assert!(err.iter().all(|e| *e < 1e-5), "chunk {i}: max errors means/scales/rotations/SH/opacity {err:?}");
    }
}

fn invert(s: &Sim3) -> Sim3 {
    let rt: M3 = std::array::from_fn(|r| std::array::from_fn(|c| s.rotation[c][r]));
    let t = da3::linalg::mul3v(&rt, &s.translation);
    Sim3 { rotation: rt, translation: t.map(|v| -v / s.scale), scale: 1.0 / s.scale }
}

/// `a ∘ b`: first `b`, then `a`.
fn compose(a: &Sim3, b: &Sim3) -> Sim3 {
    let at = da3::linalg::mul3v(&a.rotation, &b.translation);
    Sim3 {
        rotation: mul3(&a.rotation, &b.rotation),
        translation: std::array::from_fn(|k| a.scale * at[k] + a.translation[k]),
        scale: a.scale * b.scale,
    }
}

/// Chunks in different frames (and, for the nested model, with different metric factors)
/// carrying Gaussians: the merged Gaussians are the scene's in the first chunk's Gaussian frame
/// (≤ 1e-5), one per pixel of every view, and the shared views keep the first chunk's.
#[test]
fn chunk_gaussians_merge_into_the_first_chunks_frame() {
    for nested in [false, true] {
        let scene = scene(11, false);
        let opts = ScheduleOptions { chunk_size: Some(5), overlap: Some(2), ..Default::default() };
        let plan = plan(&small_model(), &DeviceMemory::gpu(None, 0, None), 11, &opts, true).unwrap();
        assert_eq!(plan.chunks, vec![0..5, 3..8, 6..11]);
        let metric = |i: usize| if nested { 1.5 + 0.8 * i as f64 } else { 1.0 };
        let chunk_index = Mutex::new(0usize);
        let run = |range: Range<usize>, _: &Views| {
            let mut i = chunk_index.lock().unwrap();
            *i += 1;
            let (sim, m) = (chunk_sim3(*i - 1), metric(*i - 1));
            let mut p = fake_pass(&scene, range.clone(), &sim);
            p.gaussians = Some(adapted(&scene, range, &sim, 0.0, m));
            p.scale_factor = nested.then_some(m as f32);
            Ok(p)
        };
        let (pred, report) = run_chunked(&plan, true, Some(2), dummy_views, run, &mut |_| {}).unwrap();
        assert_eq!(report.chunks, plan.chunks);
        assert_in_frame(&scene, &pred, &chunk_sim3(0), 1e-5);
        let g = pred.gaussians.as_ref().expect("merged Gaussians");
        assert_eq!((g.views, g.len()), (11, 11 * H * W));
        let want = adapted(&scene, 0..11, &chunk_sim3(0), 0.0, metric(0));
        let err = gaussian_error(g, &want);
        assert!(err.iter().all(|e| *e < 1e-5), "nested {nested}: means/scales/rotations/SH/opacity {err:?}");
        // The first chunk's Gaussians (shared views included) are its own, bit for bit.
        let first = adapted(&scene, 0..5, &chunk_sim3(0), 0.0, metric(0));
        assert_eq!(g.means[..5 * H * W], first.means[..]);
        assert_eq!(g.harmonics[..5 * H * W], first.harmonics[..]);
    }
}

/// With `infer_gs` the planner counts the Gaussians' host arrays (38 f32 per pixel returned
/// per view, and the GS head's raw output read back for the running pass); without it the GS
/// head, which then does not run, is not counted.
#[test]
fn memory_model_counts_gaussians_only_when_inferred() {
    let config = Da3Config::preset("da3-giant").unwrap();
    let base = MemoryModel::new(&config, 280, 280, 0, AttentionKind::Fused);
    let (off, on) = (base.clone().with_gaussians(false), base.clone().with_gaussians(true));
    let full: u64 = 280 * 280;
    // Without Gaussians the GS head's maps, (F/2 + 38 + 3) = 169 of 280² f32 per view, go.
    assert_eq!(base.per_view_values() - off.per_view_values(), (256 / 2 + 38 + 3) * full);
    assert_eq!(on.per_view_values(), base.per_view_values());
    // Returned per view: depth, conf, sky and the Gaussians' 38 values per pixel.
    assert_eq!(off.output_bytes_per_view(), 3 * 4 * full);
    assert_eq!(on.output_bytes_per_view(), 41 * 4 * full);
    assert_eq!((off.pass_host_bytes_per_view(), on.pass_host_bytes_per_view()), (0, 38 * 4 * full));
    // A host plan of 100 views in chunks of 4 carries, besides the GS head's activations, the
    // Gaussians of 100 + 4 views and the raw output of 4: 108·38·4·280² ≈ 1.2 GiB.
    let host = DeviceMemory { available: Some(1 << 40), host: true, resident: 0, max_buffer: None };
    let peak = |m: &MemoryModel| da3::schedule::plan::estimated_peak(m, &host, 100, 4);
    let activations = on.activation_bytes(4) - off.activation_bytes(4);
    assert_eq!(peak(&on) - peak(&off) - activations, (100 + 4 + 4) * 38 * 4 * full);
    // A model without a GS head is unchanged by the option.
    let small = MemoryModel::new(&Da3Config::preset("da3-small").unwrap(), 280, 280, 0, AttentionKind::Fused);
    assert_eq!(small.clone().with_gaussians(true), small);
}

/// Six user cameras (identity rotations but one, centres not on a line) for the posed tests.
fn posed_cameras() -> da3::InputCameras {
    da3::InputCameras {
        world_to_camera: (0..6)
            .map(|v| {
                let mut m = [[0.0; 4]; 4];
                (0..4).for_each(|k| m[k][k] = 1.0);
                let a = if v == 3 { 0.2f64 } else { 0.0 }; // a turn about y
                (m[0][0], m[0][2], m[2][0], m[2][2]) = (a.cos(), a.sin(), -a.sin(), a.cos());
                m[0][3] = 0.1 * v as f64;
                m[1][3] = 0.04 * (v % 2) as f64;
                m[2][3] = 0.02 * (v * v) as f64;
                m
            })
            .collect(),
        intrinsics: vec![[[40.0, 0.0, 21.0], [0.0, 40.0, 14.0], [0.0, 0.0, 1.0]]; 6],
    }
}

/// The tiny GS model with input cameras, 6 views in chunks of 4 (0..4, 2..6; the shared views
/// are not needed to align, the last chunk is only kept full): each pass fits its own similarity from the user's cameras into its
/// predicted frame, and the job places chunk 1 in chunk 0's frame through them. Views 0..4 are
/// the first pass's exactly; views 4..6 have the user's cameras as chunk 0's fit places them
/// (one rigid set of cameras in one frame, ≤ 1e-5), the second pass's depth times the frame
/// change's scale, and its Gaussians moved into chunk 0's Gaussian frame (≤ 1e-5, and near
/// their depth along the job's rays). With `align_to_input_ext_scale` (the default) every chunk
/// is in the user's frame already: the user's cameras and each pass's depth, unmoved, and the
/// Gaussians moved as before.
#[test]
fn tiny_gs_model_with_input_cameras_in_chunks_ends_in_one_frame() {
    use da3::align::transform_point;
    let model = tiny_gs();
    let (h, w) = (28, 42);
    let n = h * w;
    let views = tiny_views(6, h, w);
    let cams = posed_cameras();
    // The predicted frame (the user's cameras aligned into it), not the default user frame.
    let options = PredictOptions { infer_gs: true, cameras: Some(cams.clone()), align_to_input_ext_scale: false, ..Default::default() };
    let sched = ScheduleOptions { chunk_size: Some(4), ..Default::default() };
    let (pred, report) = model.predict_scheduled(&views, &options, &sched, &DeviceMemory::host()).unwrap();
    assert_eq!(report.chunks, vec![0..4, 2..6]); // the last chunk kept full: views 2, 3 done twice
    let pass = |r: Range<usize>, o: &PredictOptions| {
        let sub = da3::InputCameras { world_to_camera: cams.world_to_camera[r.clone()].to_vec(), intrinsics: cams.intrinsics[r.clone()].to_vec() };
        model.predict_with(&views.select(r).unwrap(), &PredictOptions { cameras: Some(sub), ..o.clone() }).unwrap()
    };
    let (first, second) = (pass(0..4, &options), pass(2..6, &options));
    assert_eq!(pred.depth[..4 * n], first.depth[..]);
    assert_eq!(pred.extrinsics[..4], first.extrinsics[..]);
    let g = pred.gaussians.as_ref().expect("chunked posed infer_gs returns Gaussians");
    assert_eq!(g.means[..4 * n], first.gaussians.as_ref().unwrap().means[..]);
    // Views 4..6: the user's cameras placed by chunk 0's fit T_0.
    let t0 = &first.input_frame.as_ref().expect("posed pass").sim3;
    let t1 = &second.input_frame.as_ref().expect("posed pass").sim3;
    for v in 4..6 {
        let m = &cams.world_to_camera[v];
        let want = apply_sim3(t0, &[m[0], m[1], m[2]]);
        let got = pred.extrinsics[v].map(|r| r.map(f64::from));
        let err = (0..3).flat_map(|r| (0..4).map(move |c| (r, c))).map(|(r, c)| (got[r][c] - want[r][c]).abs()).fold(0.0, f64::max);
        assert!(err < 1e-5, "view {v}: {got:?} vs {want:?}");
    }
    // Depth: the second pass's times the frame change's scale s_0 / s_1.
    let s = (t0.scale / t1.scale) as f32;
    for (a, b) in pred.depth[4 * n..].iter().zip(&second.depth[2 * n..]) {
        assert!((a - b * s).abs() <= 1e-5 * (b * s).abs(), "{a} vs {}", b * s);
    }
    // Gaussian means: x ↦ c_0·T_0(T_1⁻¹(x / c_1)), c = pose scale (no metric factor here),
    // composed point by point here.
    let (c0, c1) = (first.gaussian_pose_scale.unwrap(), second.gaussian_pose_scale.unwrap());
    let worst = second.gaussians.as_ref().unwrap().means[2 * n..].iter().zip(&g.means[4 * n..]).map(|(x, got)| {
        let p = transform_point(&t1.inverse(), &x.map(|v| v as f64 / c1));
        let want = transform_point(t0, &p).map(|v| v * c0);
        (0..3).map(|k| (got[k] as f64 - want[k]).abs()).fold(0.0, f64::max)
    }).fold(0.0, f64::max);
    println!("posed chunks: scale s0/s1 = {s}, pose scales {c0} {c1}, Gaussian means ≤ {worst:.1e}");
    assert!(worst < 1e-5, "{worst}");
    let near = (4 * n..6 * n).filter(|&i| {
        let (v, p) = (i / n, i % n);
        let c = da3::align::camera_centre(&pred.extrinsics[v].map(|r| r.map(f64::from)));
        let dist = (0..3).map(|k| (g.means[i][k] as f64 - c[k]).powi(2)).sum::<f64>().sqrt();
        let d = pred.depth_of(v)[p] as f64 * c0; // the Gaussian frame is the job's times c_0
        dist >= 0.5 * d && dist <= 3.0 * d
    });
    assert!(near.count() > n, "most moved Gaussians lie near their depth along the job's rays");
    assert!(report.alignments[0].is_some(), "chunk 1 is reported as placed");

    // In the user's frame: nothing to move for depth and cameras.
    let user = PredictOptions { align_to_input_ext_scale: true, ..options.clone() };
    let (pred, _) = model.predict_scheduled(&views, &user, &sched, &DeviceMemory::host()).unwrap();
    let second = pass(2..6, &user);
    assert_eq!(pred.depth[4 * n..], second.depth[2 * n..]);
    let (t0, t1) = (&pass(0..4, &user).input_frame.unwrap().sim3, &second.input_frame.as_ref().unwrap().sim3);
    let g = pred.gaussians.as_ref().unwrap();
    let worst = second.gaussians.as_ref().unwrap().means[2 * n..].iter().zip(&g.means[4 * n..]).map(|(x, got)| {
        let want = transform_point(t0, &transform_point(&t1.inverse(), &x.map(|v| v as f64 / c1))).map(|v| v * c0);
        (0..3).map(|k| (got[k] as f64 - want[k]).abs()).fold(0.0, f64::max)
    }).fold(0.0, f64::max);
    assert!(worst < 1e-5, "user frame: Gaussian means {worst}");
    for v in 0..6 {
        let m = &cams.world_to_camera[v];
        let want = [m[0], m[1], m[2]];
        assert!((0..3).all(|r| (0..4).all(|c| (pred.extrinsics[v][r][c] as f64 - want[r][c]).abs() < 1e-6)), "view {v}");
    }
}

fn tiny_gs() -> Da3<B> {
    let dir = common::fixtures();
    let config = Da3Config::from_json(&std::fs::read_to_string(dir.join("tiny-gs.config.json")).unwrap()).unwrap();
    Da3::<B>::from_file(config, &dir.join("tiny-gs.weights.safetensors"), &Default::default()).unwrap()
}

/// The tiny GS model through the real scheduler, 6 views in chunks of 4 (0..4, 2..6): the
/// Gaussians of views 0..4 are exactly those of a separate pass over them; views 4..6 are the
/// second chunk's separate pass moved by the reported similarity (≤ 1e-5); one Gaussian per
/// pixel.
#[test]
fn tiny_gs_model_in_chunks_returns_the_chunks_gaussians_in_one_frame() {
    let model = tiny_gs();
    let (h, w) = (28, 42);
    let views = tiny_views(6, h, w);
    let options = PredictOptions { ref_view_strategy: RefViewStrategy::First, infer_gs: true, ..Default::default() };
    let sched = ScheduleOptions { chunk_size: Some(4), ..Default::default() };
    let (pred, report) = model.predict_scheduled(&views, &options, &sched, &DeviceMemory::host()).unwrap();
    assert_eq!(report.chunks, vec![0..4, 2..6]);
    let g = pred.gaussians.as_ref().expect("chunked infer_gs returns Gaussians");
    let n = h * w;
    assert_eq!((g.views, g.height, g.width, g.len()), (6, h, w, 6 * n));
    let first = model.predict_with(&views.select(0..4).unwrap(), &options).unwrap();
    assert_eq!(g.means[..4 * n], first.gaussians.as_ref().unwrap().means[..]);
    assert_eq!(g.rotations[..4 * n], first.gaussians.as_ref().unwrap().rotations[..]);
    assert_eq!(g.harmonics[..4 * n], first.gaussians.as_ref().unwrap().harmonics[..]);
    assert_eq!(g.scales[..4 * n], first.gaussians.as_ref().unwrap().scales[..]);
    let second = model.predict_with(&views.select(2..6).unwrap(), &options).unwrap();
    let mut moved = second.gaussians.unwrap();
    let fit = report.alignments[0].as_ref().expect("aligned");
    moved.transform(&da3::schedule::stitch::gaussian_sim3(&fit.sim3, None, None));
    let tail = |x: &Gaussians| Gaussians {
        views: 2,
        height: h,
        width: w,
        means: x.means[x.len() - 2 * n..].to_vec(),
        scales: x.scales[x.len() - 2 * n..].to_vec(),
        rotations: x.rotations[x.len() - 2 * n..].to_vec(),
        harmonics: x.harmonics[x.len() - 2 * n..].to_vec(),
        opacities: x.opacities[x.len() - 2 * n..].to_vec(),
    };
    let err = gaussian_error(&tail(g), &tail(&moved));
    println!("chunked tiny-gs: views 4..6 vs the moved separate pass: {err:?}");
    assert!(err.iter().all(|e| *e < 1e-5), "{err:?}");
    // The moved Gaussians sit in the job's frame: near the job's depth of their pixel.
    let near = (4 * n..6 * n).filter(|&i| {
        let (v, p) = (i / n, i % n);
        let c = da3::align::camera_centre(&pred.extrinsics[v].map(|r| r.map(f64::from)));
        let dist = (0..3).map(|k| (g.means[i][k] as f64 - c[k]).powi(2)).sum::<f64>().sqrt();
        let d = pred.depth_of(v)[p] as f64;
        dist >= 0.5 * d && dist <= 3.0 * d
    });
    assert!(near.count() > n, "most moved Gaussians lie near their depth along the ray");
}

// ---------------------------------------------------------------------------------------------
// The nested model's metric scale in chunked runs.

/// A nested-model job in chunks: each pass fits its own metric factor on its own views (here
/// the metric truth is 1.3× the scene on views 0..4 and 1.0× elsewhere, so the factors
/// differ), and the stitched job is re-fitted to the one least-squares factor over all views
/// that the reference's single pass computes: depth = g*·depth_true (≤ 1e-5 relative), the
/// translations likewise, sky pixels hold min(q0.99(non-sky depth), 200) of all views. Chunk
/// 0's factor alone would be off by more than 5 %.
#[test]
fn nested_chunks_take_one_metric_scale_fitted_on_all_views() {
    let n_views = 11;
    let scene = scene(n_views, false);
    let metric_gain = |v: usize| if v < 4 { 1.3 } else { 1.0 };
    let is_sky = |p: usize| p % 7 == 3;
    // The reference's factor over all views: Σ m·d / Σ d² over non-sky pixels, true units.
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for v in 0..n_views {
        for (_, d) in scene.depth[v].iter().enumerate().filter(|(p, _)| !is_sky(*p)) {
            num += metric_gain(v) * (*d as f64).powi(2);
            den += (*d as f64).powi(2);
        }
    }
    let g_true = num / den;
    let opts = ScheduleOptions { chunk_size: Some(5), overlap: Some(2), ..Default::default() };
    let plan = plan(&small_model(), &DeviceMemory::gpu(None, 0, None), n_views, &opts, true).unwrap();
    let chunk_index = Mutex::new(0usize);
    let first_factor = Mutex::new(0.0f64);
    // A pass: any-view depth in its own frame (chunk_sim3), scaled by its own metric fit m_k.
    let run = |range: Range<usize>, _: &Views| {
        let mut i = chunk_index.lock().unwrap();
        *i += 1;
        let sim = chunk_sim3(*i - 1);
        let (mut num, mut den) = (0.0f64, 0.0f64);
        for v in range.clone() {
            for (_, d) in scene.depth[v].iter().enumerate().filter(|(p, _)| !is_sky(*p)) {
                let raw = *d as f64 * sim.scale;
                num += metric_gain(v) * *d as f64 * raw;
                den += raw * raw;
            }
        }
        let m = num / den;
        if *i == 1 {
            *first_factor.lock().unwrap() = m * sim.scale;
        }
        let metric_sim = Sim3 { scale: sim.scale * m, translation: sim.translation.map(|t| t * m), ..sim };
        let mut p = fake_pass(&scene, range.clone(), &metric_sim);
        p.sky = Some((0..range.len() * H * W).map(|i| if is_sky(i % (H * W)) { 0.9 } else { 0.0 }).collect());
        for (i, d) in p.depth.iter_mut().enumerate() {
            if is_sky(i % (H * W)) {
                *d = 1000.0 + i as f32; // each pass fills its sky with its own values
            }
        }
        // The metric branch's depth in metres: the truth times the view's gain (frame-free).
        p.metric_depth = range.clone().flat_map(|v| scene.depth[v].iter().map(move |d| (metric_gain(v) * *d as f64) as f32)).collect();
        p.scale_factor = Some(m as f32);
        p.is_metric = true;
        Ok(p)
    };
    let (mut pred, report) = run_chunked(&plan, true, Some(2), dummy_views, run, &mut |_| {}).unwrap();
    assert_eq!(report.chunks, vec![0..5, 3..8, 6..11]);
    // Before the re-fit the job carries chunk 0's factor, which misses the reference's.
    let first = *first_factor.lock().unwrap();
    assert!((first / g_true - 1.0).abs() > 0.05, "chunk 0's factor {first} vs all views' {g_true}: the test needs them apart");
    let g = da3::schedule::stitch::refit_metric_scale(&mut pred, 5).unwrap().expect("metric depth for every view");
    let mut worst = 0.0f64;
    for v in 0..n_views {
        for (p, (d, t)) in pred.depth_of(v).iter().zip(&scene.depth[v]).enumerate() {
            if !is_sky(p) {
                worst = worst.max((*d as f64 / (*t as f64 * g_true) - 1.0).abs());
            }
        }
    }
    assert!(worst < 1e-5, "depth vs the all-view factor: max relative error {worst:.2e} (g = {g})");
    // Translations: the scene's cameras in chunk 0's rotation, scaled by g*.
    let s0 = chunk_sim3(0);
    let want_sim = Sim3 { scale: g_true, translation: s0.translation.map(|t| t * g_true / s0.scale), ..s0 };
    for v in 0..n_views {
        let want = apply_sim3(&want_sim, &scene.ext[v]);
        for r in 0..3 {
            assert!((pred.extrinsics[v][r][3] as f64 - want[r][3]).abs() < 1e-4, "view {v}: {:?} vs {want:?}", pred.extrinsics[v]);
        }
    }
    // One sky value for the whole job: the 0.99 quantile of all non-sky depth (≤ 100k pixels:
    // no sampling).
    let mut non_sky: Vec<f32> = (0..pred.depth.len()).filter(|i| !is_sky(i % (H * W))).map(|i| pred.depth[i]).collect();
    let q = da3::sky::quantile(&mut non_sky, 0.99).min(200.0);
    assert!((0..pred.depth.len()).filter(|i| is_sky(i % (H * W))).all(|i| pred.depth[i] == q && pred.conf[i] == 1.0));
    // A second re-fit changes nothing: the depth is in the metric units now.
    let again = da3::schedule::stitch::refit_metric_scale(&mut pred, 5).unwrap().unwrap();
    assert!((again - 1.0).abs() < 1e-6, "{again}"); // f32 depth: rounding only
}

/// wgpu: the adapter's single-buffer limit as CubeCL allocates by it
/// (`schedule::device::wgpu_max_buffer`, which the CLI hands to the planner) is at least
/// WebGPU's guaranteed 128 MiB, and a plan on that device keeps every pass's largest tensor
/// under it: a job whose one-pass tensor would exceed it is chunked even without a budget.
#[cfg(feature = "wgpu")]
#[test]
fn wgpu_buffer_limit_caps_the_chunks() {
    use da3::backends::Wgpu;
    let device = burn::backend::wgpu::WgpuDevice::default();
    let max_buffer = da3::schedule::device::wgpu_max_buffer(&device);
    println!("wgpu max buffer: {max_buffer} B");
    assert!(max_buffer >= 128 << 20, "{max_buffer}");
    let dir = common::fixtures();
    let config = Da3Config::from_json(&std::fs::read_to_string(dir.join("tiny.config.json")).unwrap()).unwrap();
    let model = Da3::<Wgpu>::from_file(config, &dir.join("tiny.weights.safetensors"), &device).unwrap();
    let (h, w) = (518, 518);
    let mm = model.memory_model(h, w);
    // Enough views that one pass's largest tensor would not fit one buffer.
    let views = (1..1 << 20).find(|&k| mm.largest_tensor_bytes(k) > max_buffer).expect("some view count exceeds the limit");
    let memory = DeviceMemory::gpu(None, mm.weights, Some(max_buffer));
    let options = da3::PredictOptions::default();
    let planned = model.plan(views, h, w, &options, &ScheduleOptions::default(), &memory).unwrap();
    assert!(planned.chunks.len() > 1, "{views} views: {planned:?}");
    for c in &planned.chunks {
        assert!(mm.largest_tensor_bytes(c.len()) <= max_buffer, "chunk {c:?}");
    }
    let unlimited = model.plan(views, h, w, &options, &ScheduleOptions::default(), &DeviceMemory::gpu(None, mm.weights, None)).unwrap();
    assert!(unlimited.is_single_pass(), "without the limit nothing forces chunks");
}
