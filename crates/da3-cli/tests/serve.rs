//! `da3 serve`: the real binary on a free port, driven over HTTP/1.1 by a minimal client
//! written here (std sockets, so the tests share no code with the server's HTTP stack).
//!
//! What it checks: a served prediction is the one `da3 infer` writes (bit for bit, npz), the
//! JSON summary carries the same cameras, models stay resident and are cached by (model,
//! precision) with LRU eviction, and every bad request gets a JSON error with the right
//! status (400 bad fields and images, 404 uncached models, 413 too many views or bytes, 503
//! when the job does not fit `--max-memory` or `--max-queued` requests are already held).

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use common::{infer_ok, parse_npy, read_npz, s, scratch, tiny_fixture, workspace_root, Array};

/// A running `da3 serve`, killed when dropped.
struct Server {
    child: Child,
    addr: String,
    /// The lines it printed after its address line (the request log).
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Server {
    /// Starts `da3 serve --addr 127.0.0.1:0` with the tiny model and `extra` arguments, with
    /// an empty Hugging Face cache, and waits for its address line.
    fn start(name: &str, extra: &[&str]) -> Option<Server> {
        let (config, weights) = tiny_fixture("tiny")?;
        Some(Self::start_with(name, &config, &weights, extra))
    }

    /// [`Server::start`] with another model.
    fn start_with(name: &str, config: &Path, weights: &Path, extra: &[&str]) -> Server {
        let hf = scratch(&format!("serve-hf-{name}"));
        Self::spawn(config, weights, extra, &[("HF_HUB_CACHE", s(&hf)), ("HF_HUB_OFFLINE", "1".into())])
    }

    /// Starts `da3 serve --addr 127.0.0.1:0 -m CONFIG -w WEIGHTS EXTRA…` with the Hugging
    /// Face environment `hf_env` (the caller's HF variables removed first) and waits for its
    /// address line.
    fn spawn(config: &Path, weights: &Path, extra: &[&str], hf_env: &[(&str, String)]) -> Server {
        let mut args = vec!["serve".to_string(), "--addr".into(), "127.0.0.1:0".into(), "-m".into(), s(config), "-w".into(), s(weights)];
        args.extend(extra.iter().map(|a| a.to_string()));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_da3"));
        cmd.args(&args);
        for var in ["HF_HOME", "HF_HUB_CACHE", "HF_ENDPOINT", "HF_TOKEN", "HF_HUB_OFFLINE"] {
            cmd.env_remove(var);
        }
        cmd.envs(hf_env.iter().map(|(k, v)| (k, v)));
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().expect("cannot start da3 serve");
        let mut line = String::new();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        stdout.read_line(&mut line).unwrap();
        // Keep reading what it prints, so that its stdout stays open, and keep the lines.
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let lines = log.clone();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        });
        let addr = line.trim().strip_prefix("da3 serve: listening on http://").unwrap_or_else(|| panic!("first line: {line:?}")).to_string();
        Server { child, addr, log }
    }

    /// Sends one request and returns (status, lower-cased headers, body).
    fn request(&self, method: &str, path: &str, content_type: Option<&str>, body: &[u8]) -> (u16, BTreeMap<String, String>, Vec<u8>) {
        let mut stream = TcpStream::connect(&self.addr).unwrap();
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n", self.addr, body.len());
        if let Some(ct) = content_type {
            head.push_str(&format!("Content-Type: {ct}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).unwrap();
        // The server may answer (413) before reading a large body; a failed write is fine.
        let _ = stream.write_all(body);
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).unwrap();
        let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("end of headers");
        let head = String::from_utf8_lossy(&raw[..split]).into_owned();
        let mut lines = head.lines();
        let status: u16 = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
        let headers: BTreeMap<String, String> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let mut body = raw[split + 4..].to_vec();
        if headers.get("transfer-encoding").is_some_and(|t| t == "chunked") {
            body = dechunk(&body);
        }
        (status, headers, body)
    }

    /// `POST /v1/predict` with `images` (one part each) and text `fields`.
    fn predict(&self, images: &[(&str, Vec<u8>)], fields: &[(&str, &str)]) -> (u16, BTreeMap<String, String>, Vec<u8>) {
        let boundary = "da3-test-boundary-7f3a";
        let mut body = Vec::new();
        for (name, bytes) in images {
            body.extend(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes());
            body.extend(bytes);
            body.extend(b"\r\n");
        }
        for (name, value) in fields {
            body.extend(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n").as_bytes());
        }
        body.extend(format!("--{boundary}--\r\n").as_bytes());
        self.request("POST", "/v1/predict", Some(&format!("multipart/form-data; boundary={boundary}")), &body)
    }

    /// `clients` predictions sent at once, each of `views` copies of an example image with
    /// `fields`; their (status, body) in client order.
    fn concurrently(&self, clients: usize, views: usize, fields: &[(&str, &str)]) -> Vec<(u16, Vec<u8>)> {
        let png = std::fs::read(&example_images()[1]).unwrap();
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..clients)
                .map(|_| {
                    let images: Vec<(&str, Vec<u8>)> = (0..views).map(|_| ("v.png", png.clone())).collect();
                    scope.spawn(move || {
                        let (st, _, body) = self.predict(&images, fields);
                        (st, body)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        })
    }

    /// Waits (up to 10 s) for a request-log line that contains `text`.
    fn logged(&self, text: &str) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            if let Some(line) = self.log.lock().unwrap().iter().find(|l| l.contains(text)) {
                return line.clone();
            }
            assert!(std::time::Instant::now() < deadline, "no log line with `{text}` in {:?}", self.log.lock().unwrap());
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    fn health(&self) -> serde_json::Value {
        let (status, _, body) = self.request("GET", "/v1/health", None, b"");
        assert_eq!(status, 200);
        serde_json::from_slice(&body).unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = body.windows(2).position(|w| w == b"\r\n").unwrap();
        let size = usize::from_str_radix(std::str::from_utf8(&body[..line_end]).unwrap().trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.extend(&body[line_end + 2..line_end + 2 + size]);
        body = &body[line_end + 4 + size..];
    }
}

/// The npz entries of an in-memory `.npz`.
fn npz_of(bytes: &[u8]) -> BTreeMap<String, Array> {
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    (0..zip.len())
        .map(|i| {
            let mut entry = zip.by_index(i).unwrap();
            let name = entry.name().strip_suffix(".npy").unwrap().to_string();
            let mut data = Vec::new();
            entry.read_to_end(&mut data).unwrap();
            (name, parse_npy(&data))
        })
        .collect()
}

fn example_images() -> Vec<PathBuf> {
    (0..3).map(|i| workspace_root().join(format!("examples/images/view_{i}.png"))).collect()
}

fn error_of(status: u16, body: &[u8], want: u16, contains: &str) {
    let text = String::from_utf8_lossy(body);
    assert_eq!(status, want, "{text}");
    let doc: serde_json::Value = serde_json::from_slice(body).unwrap_or_else(|_| panic!("not JSON: {text}"));
    let message = doc["error"].as_str().unwrap_or_else(|| panic!("no error field: {text}"));
    assert!(message.contains(contains), "`{contains}` not in: {message}");
}

#[test]
fn served_predictions_equal_da3_infer() {
    let Some(server) = Server::start("equal", &[]) else { return };
    let paths = example_images();
    let images: Vec<(&str, Vec<u8>)> =
        paths.iter().map(|p| (p.file_name().unwrap().to_str().unwrap(), std::fs::read(p).unwrap())).collect();
    let fields = [("process_res", "112"), ("ref_view_strategy", "middle")];
    let (status, headers, body) = server.predict(&images, &fields);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(headers.get("content-type").map(String::as_str), Some("application/octet-stream"));
    assert_eq!(headers.get("x-da3-model").map(String::as_str), Some("tiny"));
    assert_eq!(headers.get("x-da3-passes").map(String::as_str), Some("1"));
    let served = npz_of(&body);

    let (config, weights) = tiny_fixture("tiny").unwrap();
    let out = scratch("serve-equal-infer");
    infer_ok(&paths, (&config, &weights), &out, &["--process-res", "112", "--ref-view-strategy", "middle", "--export-format", "glb", "--quiet"]);
    let written = read_npz(&out.join("results.npz"));
    assert_eq!(served.keys().collect::<Vec<_>>(), vec!["conf", "depth", "extrinsics", "intrinsics"]);
    assert_eq!(served, written, "the served arrays differ from da3 infer's results.npz");
    assert_eq!(served["depth"].shape, vec![3, 70, 112]);
    // One log line per request.
    let line = server.logged("200 POST /v1/predict");
    assert!(line.contains("3 view(s) of 70x112") && line.contains("1 pass(es), npz"), "{line}");

    // The JSON summary: the same cameras, per view, and the sizes.
    let (status, _, body) = server.predict(&images, &[("process_res", "112"), ("ref_view_strategy", "middle"), ("format", "json")]);
    assert_eq!(status, 200);
    let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!((doc["views"].as_u64(), doc["height"].as_u64(), doc["width"].as_u64()), (Some(3), Some(70), Some(112)));
    for v in 0..3 {
        let ext: Vec<f32> = doc["per_view"][v]["extrinsics"].as_array().unwrap().iter().flat_map(|r| r.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32)).collect();
        assert_eq!(ext, written["extrinsics"].data[v * 12..(v + 1) * 12], "view {v}");
        let depth = &written["depth"].data[v * 70 * 112..(v + 1) * 70 * 112];
        let max = depth.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        assert_eq!(doc["per_view"][v]["depth_max"].as_f64().unwrap() as f32, max);
    }
    // The GLB scene: the bytes of the glb export.
    let (status, headers, glb) = server.predict(&images, &[("process_res", "112"), ("ref_view_strategy", "middle"), ("format", "glb")]);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&glb));
    assert_eq!(headers.get("content-type").map(String::as_str), Some("model/gltf-binary"));
    assert!(glb == std::fs::read(out.join("scene.glb")).unwrap(), "the served GLB differs from da3 infer's scene.glb");
    assert_eq!(server.health()["predictions_served"], 3);
}

#[test]
fn models_stay_resident_and_are_cached_by_precision() {
    let Some(server) = Server::start("cache", &["--max-models", "1"]) else { return };
    let image = vec![("a.png", std::fs::read(&example_images()[0]).unwrap())];
    let resident = |h: &serde_json::Value| -> Vec<String> {
        h["models"].as_array().unwrap().iter().map(|m| m["precision"].as_str().unwrap().to_string()).collect()
    };
    assert_eq!(resident(&server.health()), vec!["auto"], "the server's model is loaded before it listens");
    // The resident model answers without loading.
    let (status, headers, _) = server.predict(&image, &[("process_res", "56")]);
    assert_eq!(status, 200);
    assert!(!headers.contains_key("x-da3-load-seconds"), "{headers:?}");
    // Another precision is another model: loaded once, and with --max-models 1 it replaces
    // the first.
    let (status, headers, fp32) = server.predict(&image, &[("process_res", "56"), ("precision", "fp32")]);
    assert_eq!(status, 200);
    assert!(headers.contains_key("x-da3-load-seconds"), "{headers:?}");
    assert_eq!(resident(&server.health()), vec!["fp32"]);
    let (_, headers, again) = server.predict(&image, &[("process_res", "56"), ("precision", "fp32")]);
    assert!(!headers.contains_key("x-da3-load-seconds"), "{headers:?}");
    assert_eq!(fp32, again, "the same request gives the same bytes");
    // On the CPU auto is fp32: the same numbers from the two instances.
    let (_, _, auto) = server.predict(&image, &[("process_res", "56")]);
    assert_eq!(npz_of(&auto), npz_of(&fp32));
    assert_eq!(resident(&server.health()), vec!["auto"]);
}

#[test]
fn bad_requests_get_json_errors() {
    let Some(server) = Server::start("errors", &["--max-views", "2", "--max-body", "200KiB"]) else { return };
    let png = std::fs::read(&example_images()[0]).unwrap();
    let one = vec![("a.png", png.clone())];

    let (st, _, body) = server.predict(&[("a.png", png.clone()), ("notes.txt", b"not an image".to_vec())], &[]);
    error_of(st, &body, 400, "cannot decode image part #1 (notes.txt)");
    server.logged("400 POST /v1/predict: cannot decode image part #1 (notes.txt)");
    let truncated = {
        let mut jpeg = Vec::new();
        image::DynamicImage::ImageRgb8(image::RgbImage::new(32, 32)).write_to(&mut std::io::Cursor::new(&mut jpeg), image::ImageFormat::Jpeg).unwrap();
        jpeg.truncate(jpeg.len() / 2);
        jpeg
    };
    let (st, _, body) = server.predict(&[("cut.jpg", truncated)], &[]);
    error_of(st, &body, 400, "truncated");
    let (st, _, body) = server.predict(&one, &[("process_res", "7")]);
    error_of(st, &body, 400, "field `process_res`");
    let (st, _, body) = server.predict(&one, &[("precision", "fp8")]);
    error_of(st, &body, 400, "field `precision`");
    let (st, _, body) = server.predict(&one, &[("format", "xml")]);
    error_of(st, &body, 400, "npz, json or glb");
    let (st, _, body) = server.predict(&one, &[("focal", "500")]);
    error_of(st, &body, 400, "`focal` applies to metric models");
    let (st, _, body) = server.predict(&one, &[("colour", "blue")]);
    error_of(st, &body, 400, "unknown field `colour`");
    let (st, _, body) = server.predict(&[], &[("process_res", "56")]);
    error_of(st, &body, 400, "no images");
    let (st, _, body) = server.request("POST", "/v1/predict", Some("application/json"), b"{}");
    error_of(st, &body, 400, "multipart/form-data");
    // Models outside the (empty) Hugging Face cache are not downloaded without
    // --allow-download, and local files are not served by request.
    let (st, _, body) = server.predict(&one, &[("model", "da3-small")]);
    error_of(st, &body, 404, "da3 fetch da3-small");
    let (st, _, body) = server.predict(&one, &[("model", "/etc/passwd")]);
    error_of(st, &body, 404, "local files are served only as the server's own --model");
    // Limits.
    let three: Vec<(&str, Vec<u8>)> = (0..3).map(|_| ("a.png", png.clone())).collect();
    let (st, _, body) = server.predict(&three, &[]);
    error_of(st, &body, 413, "more than 2 images");
    let big = vec![("big.png", vec![0u8; 300 << 10])];
    let (st, _, body) = server.predict(&big, &[]);
    error_of(st, &body, 413, "");
    // The server is still up and serving after all of that.
    let (st, _, _) = server.predict(&one, &[("process_res", "56")]);
    assert_eq!(st, 200);
}

#[test]
fn jobs_over_the_memory_budget_get_503() {
    let Some(server) = Server::start("memory", &["--max-memory", "64KiB"]) else { return };
    let one = vec![("a.png", std::fs::read(&example_images()[0]).unwrap())];
    let (st, _, body) = server.predict(&one, &[("process_res", "56")]);
    error_of(st, &body, 503, "out of memory");
    assert_eq!(server.health()["status"], "ok");
}

/// Concurrent requests that each need chunking stay within `--max-memory` together: the
/// server's peak resident memory (VmHWM) is under the budget. Before requests ran on one
/// thread, each blocking-pool thread kept its own pass's freed heap in its own malloc arena,
/// and four of these requests (each planned under the budget) peaked past it.
#[cfg(target_os = "linux")]
#[test]
fn concurrent_chunked_requests_stay_within_max_memory() {
    let budget_mib = 160;
    let Some(server) = Server::start("budget", &["--max-memory", &format!("{budget_mib}MiB")]) else { return };
    let answers = server.concurrently(4, 16, &[("process_res", "280"), ("format", "json")]);
    for (st, body) in &answers {
        assert_eq!(*st, 200, "{}", String::from_utf8_lossy(body));
        let doc: serde_json::Value = serde_json::from_slice(body).unwrap();
        assert!(doc["passes"].as_u64().unwrap() > 1, "the budget must force chunks for this test to mean anything");
    }
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.child.id())).unwrap();
    let peak_kib: u64 = status.lines().find_map(|l| l.strip_prefix("VmHWM:")).unwrap().trim().trim_end_matches("kB").trim().parse().unwrap();
    eprintln!("4 concurrent 16-view requests under --max-memory {budget_mib}MiB: server peak {} MiB", peak_kib >> 10);
    assert!(peak_kib >> 10 <= budget_mib, "server peak {} MiB over the {budget_mib} MiB budget", peak_kib >> 10);
}

/// Requests may name a preset from the Hub: with `--allow-download` the server fetches it
/// (here from da3-hub's mock Hub, whose DA3-SMALL repository holds the tiny model), loads it
/// and keeps it resident; the prediction equals the server's own model's (the same weights).
#[test]
fn allow_download_fetches_a_requested_preset_once() {
    let Some((config, weights)) = tiny_fixture("tiny") else { return };
    let hub = da3_hub::mock::MockHub::start().unwrap();
    hub.add_file("depth-anything/DA3-SMALL", "config.json", std::fs::read(&config).unwrap(), false);
    hub.add_file("depth-anything/DA3-SMALL", "model.safetensors", std::fs::read(&weights).unwrap(), true);
    let dir = scratch("serve-download");
    let env = [("HF_HOME", s(&dir.join("hf"))), ("HF_ENDPOINT", hub.endpoint())];
    let server = Server::spawn(&config, &weights, &["--allow-download"], &env);
    let one = vec![("a.png", std::fs::read(&example_images()[0]).unwrap())];
    let (st, _, own) = server.predict(&one, &[("process_res", "56")]);
    assert_eq!(st, 200);
    let (st, headers, fetched) = server.predict(&one, &[("process_res", "56"), ("model", "da3-small")]);
    assert_eq!(st, 200, "{}", String::from_utf8_lossy(&fetched));
    assert!(headers.contains_key("x-da3-load-seconds"), "{headers:?}");
    assert_eq!(npz_of(&fetched), npz_of(&own));
    let downloads = hub.requests().len();
    assert!(downloads > 0);
    let (st, headers, _) = server.predict(&one, &[("process_res", "56"), ("model", "da3-small")]);
    assert_eq!(st, 200);
    assert!(!headers.contains_key("x-da3-load-seconds"), "resident now: {headers:?}");
    assert_eq!(hub.requests().len(), downloads, "nothing fetched again");
    let models = server.health()["models"].as_array().unwrap().iter().map(|m| m["model"].as_str().unwrap().to_string()).collect::<Vec<_>>();
    assert_eq!(models, vec!["da3-small".to_string(), s(&weights)]);
    drop(server);
    // Without --allow-download a preset already in the cache is served too.
    let server = Server::spawn(&config, &weights, &[], &env);
    let (st, headers, _) = server.predict(&one, &[("process_res", "56"), ("model", "da3-small")]);
    assert_eq!(st, 200);
    assert!(headers.contains_key("x-da3-load-seconds"));
    assert_eq!(hub.requests().len(), downloads, "served from the cache");
}

/// The server's model must load before it listens: a bad one fails at start with the
/// loader's message.
#[test]
fn a_bad_model_fails_at_start() {
    let Some((config, _)) = tiny_fixture("tiny") else { return };
    let bogus = scratch("serve-bad-model").join("bogus.safetensors");
    std::fs::write(&bogus, b"not safetensors").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_da3"))
        .args(["serve", "--addr", "127.0.0.1:0", "-m", &s(&config), "-w", &s(&bogus)])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("cannot load the server's model") && stderr.contains("bogus.safetensors"), "{stderr}");
    assert!(out.stdout.is_empty(), "it must not claim to listen: {}", String::from_utf8_lossy(&out.stdout));
}

/// A metric model's depth is in metres when the request gives the focal length (pixels of
/// the original image), as with `da3 infer --focal`; without it, it is marked not metric.
#[test]
fn focal_gives_metric_depth_in_metres() {
    let dir = scratch("serve-focal");
    let Some((metric_cfg, weights)) = common::tiny_metric_fixture(&dir) else { return };
    let img = dir.join("a.png");
    common::write_rgb_png(&img, 112, 84, 4);
    let server = Server::start_with("focal", &metric_cfg, &weights, &[]);
    let png = vec![("a.png", std::fs::read(&img).unwrap())];
    let (st, _, plain) = server.predict(&png, &[("process_res", "56")]);
    assert_eq!(st, 200);
    let (st, _, metres) = server.predict(&png, &[("process_res", "56"), ("focal", "100")]);
    assert_eq!(st, 200);
    // 112x84 -> 56x42: the focal of 100 px becomes 50 px.
    let scale = (50.0f64 / 300.0) as f32;
    let (plain, metres) = (npz_of(&plain), npz_of(&metres));
    assert_eq!(metres["depth"].data, plain["depth"].data.iter().map(|d| d * scale).collect::<Vec<_>>());
    let infer = dir.join("infer");
    infer_ok(&[&img], (&metric_cfg, &weights), &infer, &["--process-res", "56", "--focal", "100", "--quiet"]);
    assert_eq!(read_npz(&infer.join("results.npz"))["depth"], metres["depth"]);
    let is_metric = |fields: &[(&str, &str)]| {
        let (_, _, body) = server.predict(&png, fields);
        serde_json::from_slice::<serde_json::Value>(&body).unwrap()["is_metric"].clone()
    };
    assert_eq!(is_metric(&[("process_res", "56"), ("format", "json")]), false);
    assert_eq!(is_metric(&[("process_res", "56"), ("format", "json"), ("focal", "100")]), true);
    let (st, _, body) = server.predict(&png, &[("focal", "-3")]);
    error_of(st, &body, 400, "positive focal length");
    // A depth-only model has no cameras to place a GLB scene with.
    let (st, _, body) = server.predict(&png, &[("format", "glb")]);
    error_of(st, &body, 400, "predicts depth only");
}

/// Requests sent at once are queued for the one inference slot and all answered, with the
/// same bytes for the same request.
#[test]
fn concurrent_requests_are_queued_and_all_answered() {
    let Some(server) = Server::start("concurrent", &[]) else { return };
    let answers = server.concurrently(4, 1, &[("process_res", "70")]);
    for (st, body) in &answers {
        assert_eq!(*st, 200, "{}", String::from_utf8_lossy(body));
        assert_eq!(body, &answers[0].1);
    }
    assert_eq!(server.health()["predictions_served"], 4);
}

/// A server that holds `--max-queued` requests answers more with 503 and `Retry-After`
/// before reading their bodies, and a place is freed when its request is abandoned.
#[test]
fn requests_past_max_queued_get_503_busy() {
    let Some(server) = Server::start("busy", &["--max-queued", "1"]) else { return };
    let in_flight = |want: u64| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while server.health()["requests_in_flight"] != want {
            assert!(std::time::Instant::now() < deadline, "requests_in_flight never became {want}: {}", server.health());
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    };
    assert_eq!(server.health()["max_queued"], 1);
    in_flight(0);

    // A request whose body stalls half-way holds the only place.
    let boundary = "da3-test-boundary-7f3a";
    let mut stalled = TcpStream::connect(&server.addr).unwrap();
    let head = format!(
        "POST /v1/predict HTTP/1.1\r\nHost: {}\r\nContent-Length: 1000000\r\nContent-Type: multipart/form-data; boundary={boundary}\r\n\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.png\"\r\n\r\npartial image bytes",
        server.addr
    );
    stalled.write_all(head.as_bytes()).unwrap();
    in_flight(1);

    let png = std::fs::read(&example_images()[1]).unwrap();
    let (st, headers, body) = server.predict(&[("b.png", png.clone())], &[("process_res", "70")]);
    error_of(st, &body, 503, "--max-queued");
    assert_eq!(headers.get("retry-after").map(String::as_str), Some("1"));

    // The client gives up: its place is freed and the next request is served.
    drop(stalled);
    in_flight(0);
    let (st, _, body) = server.predict(&[("b.png", png)], &[("process_res", "70")]);
    assert_eq!(st, 200, "{}", String::from_utf8_lossy(&body));
    let health = server.health();
    assert_eq!(health["predictions_served"], 1);
    assert_eq!(health["requests_in_flight"], 0);
}

/// A request whose client disconnects while it waits for its turn is dropped unrun: the
/// inference thread goes from the running request straight to the next live one.
#[test]
fn abandoned_queued_requests_are_not_run() {
    let Some(server) = Server::start("abandoned", &[]) else { return };
    let wait_for = |field: &str, want: u64| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while server.health()[field] != want {
            assert!(std::time::Instant::now() < deadline, "{field} never became {want}: {}", server.health());
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    };
    let png = std::fs::read(&example_images()[1]).unwrap();
    std::thread::scope(|scope| {
        // A: a request that holds the inference thread for a while (about 0.5 s in the test
        // profile; B is queued and dropped within milliseconds).
        let long = scope.spawn(|| {
            let views: Vec<(&str, Vec<u8>)> = (0..8).map(|_| ("a.png", png.clone())).collect();
            server.predict(&views, &[("process_res", "280"), ("format", "json")]).0
        });
        wait_for("requests_in_flight", 1);
        // B: a whole request, queued behind A, whose client then goes away.
        let boundary = "da3-test-boundary-7f3a";
        let mut body = format!("--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"b.png\"\r\n\r\n").into_bytes();
        body.extend(&png);
        body.extend(format!("\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"process_res\"\r\n\r\n70\r\n--{boundary}--\r\n").as_bytes());
        let mut b = TcpStream::connect(&server.addr).unwrap();
        let head = format!(
            "POST /v1/predict HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\nContent-Type: multipart/form-data; boundary={boundary}\r\n\r\n",
            server.addr,
            body.len()
        );
        b.write_all(head.as_bytes()).unwrap();
        b.write_all(&body).unwrap();
        wait_for("requests_in_flight", 2);
        assert_eq!(server.health()["predictions_served"], 0, "A finished before B was abandoned: make A longer");
        drop(b);
        assert_eq!(long.join().unwrap(), 200);
    });
    wait_for("requests_in_flight", 0);
    let health = server.health();
    assert_eq!(health["requests_abandoned"], 1, "{health}");
    assert_eq!(health["predictions_served"], 1, "{health}");
}

/// The server on wgpu (lavapipe in CI): the resident GPU model, run from the server's
/// inference thread (not the one that loaded it), answers each request like the CPU one (to
/// the backends' difference).
#[cfg(feature = "wgpu")]
#[test]
fn wgpu_server_answers_like_the_cpu_one() {
    let Some(gpu) = Server::start("wgpu", &["--device", "wgpu"]) else { return };
    let Some(cpu) = Server::start("wgpu-cpu", &[]) else { return };
    let paths = example_images();
    let images: Vec<(&str, Vec<u8>)> = paths[..2].iter().map(|p| ("v.png", std::fs::read(p).unwrap())).collect();
    let (st, _, want) = cpu.predict(&images, &[("process_res", "56")]);
    assert_eq!(st, 200);
    let want = npz_of(&want);
    for round in 0..3 {
        let (st, headers, body) = gpu.predict(&images, &[("process_res", "56")]);
        assert_eq!(st, 200, "{}", String::from_utf8_lossy(&body));
        assert!(!headers.contains_key("x-da3-load-seconds"), "round {round}: the model stays resident");
        let got = npz_of(&body);
        for key in ["depth", "conf", "extrinsics"] {
            let (a, b) = (&got[key].data, &want[key].data);
            assert_eq!(a.len(), b.len());
            let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
            let worst = a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
            assert!(worst <= 1e-3 * scale, "{key}, round {round}: wgpu vs flex {worst} (scale {scale})");
        }
    }
    assert_eq!(gpu.health()["device"], "wgpu");
}
