//! Decoding overlapped with inference: the CLI's [`ViewLoader`] gives the views, images and
//! camera matrices that decoding everything first ([`load_batch`]) gives, and a chunked
//! [`StreamJob`] decodes each next chunk while the current one runs, with results identical
//! to the non-overlapped path (decode all, then `Da3::predict_from_source` over the decoded
//! views), also when a file fails to decode halfway.

mod common;

use std::ops::Range;
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::Mutex;
use std::time::Duration;

use common::{scratch, tiny_fixture, write_rgb_png};
use da3::preprocess::{Intrinsics, Options};
use da3::schedule::{DeviceMemory, ScheduleOptions};
use da3::{Da3, Da3Config, PredictOptions, Prediction};
use da3_cli::batch::{check_headers, load_batch};
use da3_cli::scene::StreamJob;
use da3_cli::stream::ViewLoader;
use indicatif::ProgressBar;

type B = da3::backends::Flex;

const MAX_PIXELS: u64 = 1 << 30;

fn options() -> Options {
    Options { process_res: 56, ..Options::default() }
}

/// Images of mixed sizes (processed 56x42, 56x56, 42x56: the batch is cropped to 42x42).
fn inputs(name: &str, n: usize) -> Vec<PathBuf> {
    let dir = scratch(name);
    let sizes = [(56, 42), (56, 56), (42, 56), (70, 50), (50, 70)];
    (0..n)
        .map(|i| {
            let p = dir.join(format!("view_{i}.png"));
            let (w, h) = sizes[i % sizes.len()];
            write_rgb_png(&p, w, h, 3 * i as u32 + 1);
            p
        })
        .collect()
}

#[test]
fn loaded_ranges_equal_the_decoded_batch() {
    let paths = inputs("stream_ranges", 5);
    let opts = options();
    let k: Vec<Intrinsics> =
        (0..5).map(|i| Intrinsics::F64([[50.0 + i as f64, 0.0, 27.5], [0.0, 51.0, 21.25], [0.0, 0.0, 1.0]])).collect();
    let (batch, all_views) = load_batch(&paths, Some(&k), &opts, MAX_PIXELS, &ProgressBar::hidden()).unwrap();
    let all = batch.pre;
    assert!(all.info.iter().all(|i| i.batch_crop.is_some()), "the fixture exercises the batch crop");
    let headers = check_headers(&paths, &opts, MAX_PIXELS).unwrap();
    let loader = ViewLoader::new(&paths, headers.readable, Some(&k), &opts, MAX_PIXELS);
    assert_eq!(loader.size(), Some(all.info[0].size));
    // Camera matrices from the headers alone equal the ones of the decoded batch.
    let from_plans = loader.processed_intrinsics().unwrap();
    let decoded: Vec<Intrinsics> = all.info.iter().map(|i| i.intrinsics.unwrap()).collect();
    assert_eq!(from_plans, decoded);
    // Any range, in any order, loaded or cached: the batch's views of that range.
    for range in [2..5, 0..2, 1..4, 4..5, 0..5] {
        let views = loader.load(range.clone()).unwrap();
        assert_eq!(views.data(), all_views.select(range.clone()).unwrap().data(), "views {range:?}");
    }
    let streamed = loader.into_processed().unwrap();
    assert_eq!(streamed.info, all.info);
    let pixels = |p: &da3_cli::batch::Processed| p.images.iter().map(|i| i.pixels.clone()).collect::<Vec<_>>();
    assert_eq!(pixels(&streamed), pixels(&all));
}

fn tiny() -> Option<Da3<B>> {
    let (cfg, weights) = tiny_fixture("tiny")?;
    let config = Da3Config::from_json(&std::fs::read_to_string(cfg).unwrap()).unwrap();
    Some(Da3::<B>::from_file(config, &weights, &Default::default()).unwrap())
}

fn schedule() -> ScheduleOptions {
    ScheduleOptions { chunk_size: Some(3), max_memory: Some(64 << 30), ..Default::default() }
}

/// The non-overlapped path: every image decoded first, then the scheduled prediction.
fn decoded_then_predicted(model: &Da3<B>, paths: &[PathBuf]) -> Prediction {
    let (_, views) = load_batch(paths, None, &options(), MAX_PIXELS, &ProgressBar::hidden()).unwrap();
    let (n, h, w) = (views.count(), views.height(), views.width());
    let source = |r: Range<usize>| views.select(r);
    let memory = DeviceMemory::host();
    let (pred, report) =
        model.predict_from_source(n, h, w, source, &PredictOptions::default(), &schedule(), &memory, &mut |_| {}).unwrap();
    assert!(report.chunks.len() > 1, "the comparison must be chunked: {:?}", report.chunks);
    pred
}

fn assert_same(a: &Prediction, b: &Prediction) {
    assert_eq!((a.views, a.height, a.width), (b.views, b.height, b.width));
    assert!(a.depth == b.depth, "depth differs");
    assert!(a.conf == b.conf, "confidence differs");
    assert_eq!(a.extrinsics, b.extrinsics);
    assert_eq!(a.intrinsics, b.intrinsics);
}

/// A streamed run of `paths` whose loads of later chunks wait (up to 20 s) for a chunk to be
/// running: they only get one if decoding really overlaps inference. Returns the result, the
/// loaded ranges with whether each ran on the calling thread, and the loads that never saw a
/// chunk running.
fn paced_run(model: &Da3<B>, paths: &[PathBuf], name: &str) -> (da3_cli::scene::Streamed, Vec<(Range<usize>, bool)>, Vec<Range<usize>>) {
    let opts = options();
    let headers = check_headers(paths, &opts, MAX_PIXELS).unwrap();
    let (running_tx, running_rx) = mpsc::channel::<Range<usize>>();
    let (running_tx, running_rx) = (Mutex::new(running_tx), Mutex::new(running_rx));
    let main = std::thread::current().id();
    let loads = Mutex::new(Vec::new());
    let unpaced = Mutex::new(Vec::new());
    let on_load = |range: Range<usize>| {
        loads.lock().unwrap().push((range.clone(), std::thread::current().id() == main));
        if range.start > 0 && running_rx.lock().unwrap().recv_timeout(Duration::from_secs(20)).is_err() {
            unpaced.lock().unwrap().push(range);
        }
    };
    let on_chunk = |range: Range<usize>| running_tx.lock().unwrap().send(range).unwrap();
    let export_dir = scratch(&format!("{name}_out")).join("out");
    let job = StreamJob {
        paths,
        headers,
        intrinsics: None,
        cameras: None,
        options: &opts,
        max_pixels: MAX_PIXELS,
        predict: PredictOptions::default(),
        schedule: schedule(),
        kept_bytes_per_pixel: da3_cli::scene::KEPT_BYTES_PER_PIXEL,
        host_memory: true,
        cuda_memory: false,
        gpu_max_buffer: None,
        export_dir: &export_dir,
        show_progress: false,
        quiet: true,
        hook: Some(&on_load),
        chunk_hook: Some(&on_chunk),
    };
    let (streamed, _) = job.run(|| Ok(model)).unwrap();
    assert!(export_dir.is_dir(), "the export directory is prepared before inference");
    let loads = loads.into_inner().unwrap();
    (streamed, loads, unpaced.into_inner().unwrap())
}

#[test]
fn chunked_streaming_overlaps_decoding_and_matches_the_decoded_path() {
    let Some(model) = tiny() else { return };
    let paths = inputs("stream_overlap", 5);
    let expected = decoded_then_predicted(&model, &paths);
    let (streamed, loads, unpaced) = paced_run(&model, &paths, "stream_overlap");
    // Chunks of 3 sharing 2 views: 0..3, 1..4, 2..5. The first chunk is decoded up front on
    // this thread; each next chunk's new view is decoded in the background while a chunk runs.
    assert_eq!(streamed.report.chunks, vec![0..3, 1..4, 2..5]);
    // On this thread: the views decoded before the model loads (as many as rayon threads),
    // the first chunk, and the scheduler's first (cached) request, all from view 0.
    let (here, background): (Vec<_>, Vec<_>) = loads.into_iter().partition(|(_, here)| *here);
    assert!(here.iter().all(|(r, _)| r.start == 0), "{here:?}");
    let background: Vec<Range<usize>> = background.into_iter().map(|(r, _)| r).collect();
    assert_eq!(background, vec![3..4, 4..5], "views decoded in the background");
    assert!(unpaced.is_empty(), "views {unpaced:?} were decoded while no chunk was running");
    assert!(streamed.batch.skipped.is_empty());
    assert_eq!(streamed.batch.kept, [0, 1, 2, 3, 4]);
    assert_same(&streamed.prediction, &expected);
}

#[test]
fn a_file_failing_in_a_later_chunk_is_skipped_and_the_rest_predicted_again() {
    let Some(model) = tiny() else { return };
    let mut paths = inputs("stream_failure", 6);
    // View 5: a PNG whose header is fine but whose pixel data is cut short. Chunks 0..3,
    // 1..4, 2..5, 3..6: it is first decoded in the background while chunk 2..5 runs, so the
    // failure is found after three passes.
    let bytes = std::fs::read(&paths[5]).unwrap();
    std::fs::write(&paths[5], &bytes[..bytes.len() * 2 / 3]).unwrap();
    let (streamed, _, _) = paced_run(&model, &paths, "stream_failure");
    assert_eq!(streamed.batch.kept, [0, 1, 2, 3, 4]);
    let skipped = &streamed.batch.skipped;
    assert_eq!(skipped.len(), 1);
    assert_eq!(skipped[0].path, paths[5]);
    assert!(skipped[0].reason.contains("cannot decode image"), "{}", skipped[0].reason);
    paths.pop();
    assert_same(&streamed.prediction, &decoded_then_predicted(&model, &paths));
}
