//! The error type of every exporter.

use std::path::PathBuf;

/// What can go wrong while exporting (or reading back) a prediction.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Creating, writing or renaming a file or directory failed.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file or directory that could not be written.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Reading a file failed.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file that could not be read.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A file was read but its contents are not what the format says.
    #[error("{}: {message}", path.display())]
    Malformed {
        /// The file being parsed.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// Encoding an image (JPEG or PNG) failed.
    #[error("cannot encode {}: {source}", path.display())]
    Encode {
        /// The image file being produced.
        path: PathBuf,
        /// The encoder's error.
        #[source]
        source: image::ImageError,
    },
    /// The prediction, images or options are inconsistent (sizes, counts, singular matrices).
    #[error("invalid export input: {0}")]
    Input(String),
}

/// Shorthand for results of this crate.
pub type Result<T, E = ExportError> = std::result::Result<T, E>;
