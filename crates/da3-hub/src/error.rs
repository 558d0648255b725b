//! Errors of the download and cache layer; each message says what to do next.

use std::path::PathBuf;

/// Why a model could not be found, downloaded or verified.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// Neither a preset nor an `owner/name` repository id.
    #[error(
        "unknown model `{0}`; use a preset ({presets}) optionally with @1.0 for the first release, \
         or a Hub repository as owner/name[@revision]",
        presets = crate::presets::PRESETS.map(|p| p.name).join(", ")
    )]
    UnknownModel(String),

    /// `preset@release` with a release that does not exist.
    #[error("{preset} has no release `{release}`; releases: {releases}")]
    UnknownRelease {
        /// The preset.
        preset: &'static str,
        /// What the user asked for.
        release: String,
        /// The releases that exist.
        releases: &'static str,
    },

    /// Offline mode and the file is not cached.
    #[error(
        "{file} of {repo} is not in the Hugging Face cache {cache} and HF_HUB_OFFLINE is set; \
         unset HF_HUB_OFFLINE to download it (or run `da3 fetch` where there is network), or pass \
         local files with --weights or --model-dir"
    )]
    NotCached {
        /// The repository.
        repo: String,
        /// The file in it.
        file: String,
        /// The cache directory searched.
        cache: PathBuf,
    },

    /// The Hub answered 401/403/404 for the repository or file.
    #[error(
        "{file} of {repo} was not found at {endpoint} (HTTP {status}); check the repository name \
         and revision, or HF_ENDPOINT (now {endpoint}); private or gated repositories need a token \
         (HF_TOKEN)"
    )]
    NotFound {
        /// The repository.
        repo: String,
        /// The file in it.
        file: String,
        /// The Hub's base URL (HF_ENDPOINT).
        endpoint: String,
        /// The HTTP status.
        status: u16,
    },

    /// Any other failure to talk to the Hub (network down, server error, dropped connection).
    #[error(
        "downloading {file} of {repo} from {endpoint} failed: {message}; run the command again to \
         resume the download, set HF_HUB_OFFLINE=1 to use only the cache, or pass local files \
         with --weights or --model-dir"
    )]
    Download {
        /// The repository.
        repo: String,
        /// The file in it.
        file: String,
        /// The Hub's base URL.
        endpoint: String,
        /// What went wrong.
        message: String,
    },

    /// The downloaded bytes do not hash to the Hub's checksum.
    #[error(
        "checksum mismatch for {file} of {repo}: the Hub says sha256 {expected}, the download \
         hashes to {actual}; the corrupt file was deleted, run the command again"
    )]
    Checksum {
        /// The repository.
        repo: String,
        /// The file in it.
        file: String,
        /// The Hub's sha256 (its `X-Linked-Etag`).
        expected: String,
        /// The sha256 of what arrived.
        actual: String,
    },

    /// `--model-dir` lacks a file.
    #[error("{path} not found; --model-dir must hold config.json and model.safetensors (the Hub layout)")]
    MissingLocal {
        /// The missing file.
        path: PathBuf,
    },

    /// No cache directory can be determined.
    #[error("cannot find the Hugging Face cache: HOME, HF_HOME and HF_HUB_CACHE are all unset")]
    NoCacheDir,

    /// A file system error in the cache.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        source: std::io::Error,
    },
}
