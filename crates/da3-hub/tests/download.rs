//! Downloads from a mock Hub on 127.0.0.1 into a temporary Hugging Face cache.

use std::path::{Path, PathBuf};

use da3_hub::mock::{MockHub, MOCK_COMMIT};
use da3_hub::{sha256_file, Hub, HubConfig, HubError, ModelFiles, ModelSpec, Progress};

const REPO: &str = "depth-anything/DA3-SMALL";
const CONFIG: &[u8] = br#"{"model_name": "da3-small"}"#;

/// 300 kB of reproducible pseudo-random bytes standing in for model.safetensors.
fn weights() -> Vec<u8> {
    let mut x = 0x2545_f491_4f6c_dd1du64;
    (0..300_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A fresh directory under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("da3-hub-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn setup(name: &str) -> (MockHub, TempDir, Hub) {
    let server = MockHub::start().unwrap();
    server.add_file(REPO, "config.json", CONFIG.to_vec(), false);
    server.add_file(REPO, "model.safetensors", weights(), true);
    let tmp = TempDir::new(name);
    let hub = Hub::new(HubConfig {
        endpoint: server.endpoint(),
        cache_dir: tmp.0.join("hub"),
        offline: false,
        token: None,
    });
    (server, tmp, hub)
}

fn small() -> ModelSpec {
    ModelSpec::parse("da3-small").unwrap()
}

/// Records progress calls.
#[derive(Default)]
struct Recorder {
    starts: Vec<(String, u64)>,
    bytes: u64,
    finished: usize,
}

impl Progress for Recorder {
    fn start(&mut self, file: &str, total: u64) {
        self.starts.push((file.to_string(), total));
        self.bytes = 0;
    }
    fn advance(&mut self, bytes: u64) {
        self.bytes += bytes;
    }
    fn finish(&mut self) {
        self.finished += 1;
    }
}

#[test]
fn fresh_download_lands_in_the_hf_cache_layout() {
    let (server, tmp, hub) = setup("fresh");
    let mut progress = Recorder::default();
    let fetched = hub.fetch(&small(), &mut progress).unwrap();
    assert_eq!(fetched.downloaded, ["config.json", "model.safetensors"]);

    let repo_dir = tmp.0.join("hub/models--depth-anything--DA3-SMALL");
    let snapshot = repo_dir.join("snapshots").join(MOCK_COMMIT);
    assert_eq!(fetched.files, ModelFiles { config: snapshot.join("config.json"), weights: snapshot.join("model.safetensors") });
    assert_eq!(std::fs::read_to_string(repo_dir.join("refs/main")).unwrap(), MOCK_COMMIT);
    let sha = sha256_file(&fetched.files.weights).unwrap();
    // Snapshot files are relative symlinks into blobs/, the LFS blob named by its sha256.
    assert_eq!(std::fs::read_link(&fetched.files.weights).unwrap(), Path::new("../../blobs").join(&sha));
    assert_eq!(std::fs::read(repo_dir.join("blobs").join(&sha)).unwrap(), weights());
    assert_eq!(std::fs::read(&fetched.files.config).unwrap(), CONFIG);

    // The last file's progress: its full size announced and delivered.
    assert_eq!(progress.starts.last().unwrap(), &("model.safetensors".to_string(), 300_000));
    assert_eq!(progress.bytes, 300_000);
    assert!(progress.finished >= 2);
    // Metadata probe (resolve, then CDN), then the body through the redirect, per LFS file.
    let log = server.requests();
    assert!(log.iter().any(|l| l.starts_with("GET /depth-anything/DA3-SMALL/resolve/main/model.safetensors")), "{log:?}");
    assert!(log.iter().any(|l| l == &format!("GET /cdn/{sha} bytes=0-")), "{log:?}");
}

#[test]
fn second_fetch_uses_the_cache_without_any_request() {
    let (server, _tmp, hub) = setup("cached");
    hub.fetch(&small(), &mut ()).unwrap();
    let before = server.requests().len();
    assert!(before >= 4, "{before}");
    let again = hub.fetch(&small(), &mut ()).unwrap();
    assert!(again.downloaded.is_empty());
    assert_eq!(server.requests().len(), before);
    assert_eq!(hub.cached(&small()), Some(again.files));
}

#[test]
fn offline_mode_uses_the_cache_or_says_what_to_do() {
    let (server, tmp, hub) = setup("offline");
    let offline = Hub::new(HubConfig { offline: true, ..hub.config().clone() });
    let err = offline.fetch(&small(), &mut ()).unwrap_err();
    assert!(matches!(err, HubError::NotCached { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("config.json of depth-anything/DA3-SMALL") && msg.contains("HF_HUB_OFFLINE"), "{msg}");
    assert!(msg.contains(&tmp.0.join("hub").display().to_string()) && msg.contains("--weights"), "{msg}");
    assert!(server.requests().is_empty());

    let online = hub.fetch(&small(), &mut ()).unwrap();
    let n = server.requests().len();
    let cached = offline.fetch(&small(), &mut ()).unwrap();
    assert_eq!((cached.files, cached.downloaded.len()), (online.files, 0));
    assert_eq!(server.requests().len(), n);
}

#[test]
fn interrupted_download_resumes_and_verifies() {
    let (server, tmp, hub) = setup("resume");
    server.interrupt_once(REPO, "model.safetensors", 100_000);
    let err = hub.fetch(&small(), &mut ()).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, HubError::Download { .. }), "{err:?}");
    assert!(msg.contains("model.safetensors of depth-anything/DA3-SMALL") && msg.contains("again to resume"), "{msg}");
    let sha = da3_hub_sha(&weights());
    let part = tmp.0.join("hub/models--depth-anything--DA3-SMALL/blobs").join(format!("{sha}.part"));
    assert_eq!(std::fs::metadata(&part).unwrap().len(), 100_000);
    assert_eq!(hub.cached(&small()), None);

    let mut progress = Recorder::default();
    let fetched = hub.fetch(&small(), &mut progress).unwrap();
    // config.json came from the cache; only the weights were (re)downloaded, from byte 100000.
    assert_eq!(fetched.downloaded, ["model.safetensors"]);
    assert!(server.requests().iter().any(|l| l == &format!("GET /cdn/{sha} bytes=100000-")), "{:?}", server.requests());
    assert_eq!(progress.bytes, 300_000, "progress counts the resumed bytes too");
    assert_eq!(sha256_file(&fetched.files.weights).unwrap(), sha);
    assert!(!part.exists());
}

#[test]
fn checksum_mismatch_deletes_the_download() {
    let (server, tmp, hub) = setup("checksum");
    server.corrupt(REPO, "model.safetensors");
    let err = hub.fetch(&small(), &mut ()).unwrap_err();
    let sha = da3_hub_sha(&weights());
    let HubError::Checksum { expected, actual, .. } = &err else { panic!("{err:?}") };
    assert_eq!(expected, &sha);
    let mut corrupt = weights();
    corrupt[0] ^= 0xff;
    assert_eq!(actual, &da3_hub_sha(&corrupt));
    assert!(err.to_string().contains("deleted, run the command again"), "{err}");
    let repo_dir = tmp.0.join("hub/models--depth-anything--DA3-SMALL");
    assert!(!repo_dir.join("blobs").join(&sha).exists());
    assert!(std::fs::symlink_metadata(repo_dir.join("snapshots").join(MOCK_COMMIT).join("model.safetensors")).is_err());
    assert_eq!(hub.cached(&small()), None);
}

#[test]
fn unknown_repo_names_the_repo_and_endpoint() {
    let (server, _tmp, hub) = setup("notfound");
    let spec = ModelSpec::parse("depth-anything/DA3-NOPE").unwrap();
    let err = hub.fetch(&spec, &mut ()).unwrap_err();
    assert!(matches!(err, HubError::NotFound { status: 404, .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("depth-anything/DA3-NOPE") && msg.contains(&server.endpoint()) && msg.contains("HF_ENDPOINT"), "{msg}");
}

#[test]
fn unreachable_endpoint_is_a_download_error() {
    // A port nothing listens on: bind one, then free it.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let tmp = TempDir::new("unreachable");
    let hub = Hub::new(HubConfig {
        endpoint: format!("http://127.0.0.1:{port}"),
        cache_dir: tmp.0.join("hub"),
        offline: false,
        token: None,
    });
    let msg = hub.fetch(&small(), &mut ()).unwrap_err().to_string();
    assert!(msg.contains(&format!("127.0.0.1:{port}")) && msg.contains("HF_HUB_OFFLINE=1"), "{msg}");
}

#[test]
fn model_dir_needs_both_files() {
    let tmp = TempDir::new("modeldir");
    let err = ModelFiles::from_dir(&tmp.0).unwrap_err().to_string();
    assert!(err.contains("config.json") && err.contains("--model-dir"), "{err}");
    std::fs::write(tmp.0.join("config.json"), CONFIG).unwrap();
    let err = ModelFiles::from_dir(&tmp.0).unwrap_err().to_string();
    assert!(err.contains("model.safetensors"), "{err}");
    std::fs::write(tmp.0.join("model.safetensors"), b"x").unwrap();
    assert_eq!(ModelFiles::from_dir(&tmp.0).unwrap().weights, tmp.0.join("model.safetensors"));
}

fn da3_hub_sha(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}
