//! Finding model files in the Hugging Face cache and downloading the missing ones.
//!
//! The cache is the one the Python `huggingface_hub` uses, so checkpoints are shared with it:
//! `HUB_CACHE/models--OWNER--NAME/{blobs/SHA256, snapshots/COMMIT/FILE -> ../../blobs/SHA256,
//! refs/REVISION}`. Downloads go through the `hf-hub` crate, which writes `blobs/SHA256.part`
//! and resumes it with an HTTP Range request when a download is run again after an
//! interruption. `hf-hub` does not verify what it downloaded; [`Hub::fetch`] checks every LFS
//! file (blob named by a sha256, the Hub's `X-Linked-Etag`) and deletes it on a mismatch.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use hf_hub::api::sync::{ApiBuilder, ApiError};
use hf_hub::{Cache, Repo, RepoType};
use sha2::{Digest, Sha256};

use crate::{HubError, ModelSpec};

/// The Hub's address when `HF_ENDPOINT` is unset.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// The model configuration file in a DA3 repository (`{"model_name": "da3-large"}`).
pub const CONFIG_FILE: &str = "config.json";

/// The weights file in a DA3 repository.
pub const WEIGHTS_FILE: &str = "model.safetensors";

/// Where models come from and go to, normally read from the environment like `huggingface_hub`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubConfig {
    /// The Hub's base URL (`HF_ENDPOINT`, default <https://huggingface.co>).
    pub endpoint: String,
    /// The hub cache directory holding `models--OWNER--NAME` folders: `HF_HUB_CACHE`, else
    /// `HF_HOME/hub`, else `XDG_CACHE_HOME/huggingface/hub`, else `~/.cache/huggingface/hub`.
    pub cache_dir: PathBuf,
    /// `HF_HUB_OFFLINE=1`: never touch the network, use only the cache.
    pub offline: bool,
    /// `HF_TOKEN`, for private or gated repositories; when unset `hf-hub` reads the token file
    /// next to the cache (`huggingface-cli login`).
    pub token: Option<String>,
}

impl HubConfig {
    /// Reads `HF_ENDPOINT`, `HF_HUB_CACHE`, `HF_HOME`, `XDG_CACHE_HOME`, `HOME`,
    /// `HF_HUB_OFFLINE` and `HF_TOKEN`.
    pub fn from_env() -> Result<Self, HubError> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// [`HubConfig::from_env`] with the variables looked up by `var` (empty values count as unset).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, HubError> {
        let var = |name: &str| var(name).filter(|v| !v.is_empty());
        let endpoint = var("HF_ENDPOINT").unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());
        let cache_dir = if let Some(dir) = var("HF_HUB_CACHE") {
            PathBuf::from(dir)
        } else if let Some(home) = var("HF_HOME") {
            Path::new(&home).join("hub")
        } else if let Some(xdg) = var("XDG_CACHE_HOME") {
            Path::new(&xdg).join("huggingface").join("hub")
        } else if let Some(home) = var("HOME").or_else(|| var("USERPROFILE")) {
            Path::new(&home).join(".cache").join("huggingface").join("hub")
        } else {
            return Err(HubError::NoCacheDir);
        };
        // The values huggingface_hub accepts as true.
        let offline = var("HF_HUB_OFFLINE")
            .is_some_and(|v| matches!(v.to_ascii_uppercase().as_str(), "1" | "ON" | "YES" | "TRUE"));
        Ok(Self { endpoint: endpoint.trim_end_matches('/').to_string(), cache_dir, offline, token: var("HF_TOKEN") })
    }
}

/// The two files of a DA3 model on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelFiles {
    /// `config.json`.
    pub config: PathBuf,
    /// `model.safetensors`.
    pub weights: PathBuf,
}

impl ModelFiles {
    /// The files of a local directory in the Hub layout (`--model-dir`); both must exist.
    pub fn from_dir(dir: &Path) -> Result<Self, HubError> {
        let files = Self { config: dir.join(CONFIG_FILE), weights: dir.join(WEIGHTS_FILE) };
        for path in [&files.config, &files.weights] {
            if !path.is_file() {
                return Err(HubError::MissingLocal { path: path.clone() });
            }
        }
        Ok(files)
    }
}

/// Receives download progress, e.g. to draw a progress bar.
pub trait Progress {
    /// A file download (re)starts: `total` bytes in all. May be called again for the same file
    /// when a download resumes; `advance` then first reports the bytes already on disk.
    fn start(&mut self, file: &str, total: u64);
    /// `bytes` more bytes are on disk.
    fn advance(&mut self, bytes: u64);
    /// The file is complete.
    fn finish(&mut self);
}

/// No progress reporting.
impl Progress for () {
    fn start(&mut self, _file: &str, _total: u64) {}
    fn advance(&mut self, _bytes: u64) {}
    fn finish(&mut self) {}
}

/// Adapts a [`Progress`] to `hf-hub`'s progress trait.
struct Adapter<'a>(&'a mut dyn Progress);

impl hf_hub::api::Progress for Adapter<'_> {
    fn init(&mut self, size: usize, filename: &str) {
        self.0.start(filename, size as u64);
    }
    fn update(&mut self, size: usize) {
        self.0.advance(size as u64);
    }
    fn finish(&mut self) {
        self.0.finish();
    }
}

/// The result of [`Hub::fetch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// Where the files are (snapshot paths in the cache).
    pub files: ModelFiles,
    /// The files that were downloaded now; empty when everything came from the cache.
    pub downloaded: Vec<String>,
}

/// Access to the Hub and its local cache.
#[derive(Debug, Clone)]
pub struct Hub {
    config: HubConfig,
}

impl Hub {
    /// A hub with these settings.
    pub fn new(config: HubConfig) -> Self {
        Self { config }
    }

    /// A hub configured from the environment ([`HubConfig::from_env`]).
    pub fn from_env() -> Result<Self, HubError> {
        Ok(Self::new(HubConfig::from_env()?))
    }

    /// The settings.
    pub fn config(&self) -> &HubConfig {
        &self.config
    }

    fn cache_repo(&self, spec: &ModelSpec) -> hf_hub::CacheRepo {
        Cache::new(self.config.cache_dir.clone()).repo(hf_repo(spec))
    }

    /// The model's files if both are in the cache (no network access).
    pub fn cached(&self, spec: &ModelSpec) -> Option<ModelFiles> {
        let repo = self.cache_repo(spec);
        Some(ModelFiles { config: repo.get(CONFIG_FILE)?, weights: repo.get(WEIGHTS_FILE)? })
    }

    /// Returns the model's files, downloading those not in the cache. Cached files are used
    /// without contacting the Hub (a branch such as `main` is not re-checked for new commits;
    /// delete the cache folder to update). In offline mode a missing file is an error.
    pub fn fetch(&self, spec: &ModelSpec, progress: &mut dyn Progress) -> Result<Fetched, HubError> {
        let mut downloaded = Vec::new();
        let mut paths = Vec::new();
        for file in [CONFIG_FILE, WEIGHTS_FILE] {
            if let Some(path) = self.cache_repo(spec).get(file) {
                paths.push(path);
                continue;
            }
            if self.config.offline {
                return Err(HubError::NotCached {
                    repo: spec.display_name(),
                    file: file.to_string(),
                    cache: self.config.cache_dir.clone(),
                });
            }
            paths.push(self.download(spec, file, progress)?);
            downloaded.push(file.to_string());
        }
        let weights = paths.pop().expect("two files");
        let config = paths.pop().expect("two files");
        Ok(Fetched { files: ModelFiles { config, weights }, downloaded })
    }

    /// Downloads one file into the cache and verifies it.
    fn download(&self, spec: &ModelSpec, file: &str, progress: &mut dyn Progress) -> Result<PathBuf, HubError> {
        let mut builder = ApiBuilder::from_cache(Cache::new(self.config.cache_dir.clone()))
            .with_endpoint(self.config.endpoint.clone())
            .with_progress(false)
            .with_user_agent("da3", env!("CARGO_PKG_VERSION"));
        if let Some(token) = &self.config.token {
            builder = builder.with_token(Some(token.clone()));
        }
        let api = builder.build().map_err(|e| self.download_error(spec, file, e))?;
        let path = api
            .repo(hf_repo(spec))
            .download_with_progress(file, Adapter(progress))
            .map_err(|e| self.download_error(spec, file, e))?;
        verify(&path).map_err(|e| match e {
            Verify::Mismatch { expected, actual } => {
                HubError::Checksum { repo: spec.display_name(), file: file.to_string(), expected, actual }
            }
            Verify::Io(source) => HubError::Io { context: format!("cannot verify {}", path.display()), source },
        })?;
        Ok(path)
    }

    /// Turns an `hf-hub` error into one that names the repository, file and endpoint.
    fn download_error(&self, spec: &ModelSpec, file: &str, error: ApiError) -> HubError {
        let (repo, file, endpoint) = (spec.display_name(), file.to_string(), self.config.endpoint.clone());
        let message = match error {
            ApiError::RequestError(e) => match *e {
                ureq::Error::Status(status @ (401 | 403 | 404), _) => {
                    return HubError::NotFound { repo, file, endpoint, status }
                }
                ureq::Error::Status(status, _) => format!("the server answered HTTP {status}"),
                ureq::Error::Transport(t) => t.to_string(),
            },
            ApiError::MissingHeader(h) => {
                format!("the server sent no `{h}` header (is HF_ENDPOINT a Hugging Face Hub?)")
            }
            ApiError::IoError(e) => format!("{e} (the partial download is kept)"),
            other => other.to_string(),
        };
        HubError::Download { repo, file, endpoint, message }
    }
}

fn hf_repo(spec: &ModelSpec) -> Repo {
    Repo::with_revision(spec.repo.clone(), RepoType::Model, spec.revision.clone())
}

/// Why a cached file failed verification.
enum Verify {
    Mismatch { expected: String, actual: String },
    Io(std::io::Error),
}

/// Checks a snapshot file against its blob name when that is a sha256 (LFS files, whose blobs
/// the Hub names by the `X-Linked-Etag` sha256). Small git files are named by a git sha1 and
/// are not checked. On a mismatch the blob and the snapshot link are deleted, so the next run
/// downloads afresh.
fn verify(snapshot_path: &Path) -> Result<(), Verify> {
    let blob = std::fs::canonicalize(snapshot_path).map_err(Verify::Io)?;
    let Some(expected) = blob.file_name().and_then(|n| n.to_str()).filter(|n| is_sha256(n)) else {
        return Ok(());
    };
    let actual = sha256_file(&blob).map_err(Verify::Io)?;
    if actual == expected {
        return Ok(());
    }
    let expected = expected.to_string();
    std::fs::remove_file(&blob).map_err(Verify::Io)?;
    std::fs::remove_file(snapshot_path).map_err(Verify::Io)?;
    Err(Verify::Mismatch { expected, actual })
}

fn is_sha256(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The lowercase hex sha256 of a file.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

/// Lowercase hex of bytes.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
    }

    #[test]
    fn environment_follows_huggingface_hub() {
        let c = HubConfig::from_vars(vars(&[("HOME", "/h")])).unwrap();
        assert_eq!(c.cache_dir, PathBuf::from("/h/.cache/huggingface/hub"));
        assert_eq!((c.endpoint.as_str(), c.offline, c.token.as_deref()), (DEFAULT_ENDPOINT, false, None));
        let c = HubConfig::from_vars(vars(&[("HOME", "/h"), ("XDG_CACHE_HOME", "/x")])).unwrap();
        assert_eq!(c.cache_dir, PathBuf::from("/x/huggingface/hub"));
        let c = HubConfig::from_vars(vars(&[("HOME", "/h"), ("HF_HOME", "/hf"), ("HF_HUB_OFFLINE", "yes")])).unwrap();
        assert_eq!((c.cache_dir, c.offline), (PathBuf::from("/hf/hub"), true));
        let c = HubConfig::from_vars(vars(&[
            ("HF_HOME", "/hf"),
            ("HF_HUB_CACHE", "/c"),
            ("HF_ENDPOINT", "http://127.0.0.1:9/"),
            ("HF_HUB_OFFLINE", "0"),
            ("HF_TOKEN", "t"),
        ]))
        .unwrap();
        assert_eq!(c.cache_dir, PathBuf::from("/c"));
        assert_eq!((c.endpoint.as_str(), c.offline, c.token.as_deref()), ("http://127.0.0.1:9", false, Some("t")));
        assert!(matches!(HubConfig::from_vars(vars(&[])), Err(HubError::NoCacheDir)));
    }

    #[test]
    fn sha256_of_known_bytes() {
        let dir = std::env::temp_dir().join(format!("da3-hub-sha-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("abc"), b"abc").unwrap();
        // FIPS 180-2 test vector.
        assert_eq!(
            sha256_file(&dir.join("abc")).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
