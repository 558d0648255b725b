//! Atomic file writes: everything is written to `NAME.tmp` beside the target, then renamed.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::error::{ExportError, Result};

/// The temporary path used for `path`: the same directory, the file name plus `.tmp`.
pub fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Creates `path` atomically: `fill` writes into a buffered `NAME.tmp`, which is flushed,
/// synced and renamed to `path`. On any error the temporary file is removed, `path` is left
/// as it was, and the error names `path`.
pub fn write_atomic<F>(path: &Path, fill: F) -> Result<()>
where
    F: FnOnce(&mut BufWriter<File>) -> std::io::Result<()>,
{
    let tmp = tmp_path(path);
    let result = (|| {
        let mut writer = BufWriter::new(File::create(&tmp)?);
        fill(&mut writer)?;
        let file = writer.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, path)
    })();
    result.map_err(|source| {
        let _ = std::fs::remove_file(&tmp);
        ExportError::Write {
            path: path.to_path_buf(),
            source,
        }
    })
}

/// Writes `bytes` to `path` atomically (see [`write_atomic`]).
pub fn write_bytes_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic(path, |w| w.write_all(bytes))
}

/// Creates `dir` and its parents, with an error naming `dir`.
pub fn create_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|source| ExportError::Write {
        path: dir.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tmp_path_is_a_sibling() {
        assert_eq!(
            tmp_path(Path::new("out/scene.glb")),
            PathBuf::from("out/scene.glb.tmp")
        );
    }

    #[test]
    fn failed_write_leaves_nothing_and_names_the_path() {
        let dir = std::env::temp_dir().join(format!("da3-export-atomic-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let target = dir.join("x.bin");
        let err = write_atomic(&target, |w| {
            w.write_all(b"partial")?;
            Err(std::io::Error::other("boom"))
        })
        .unwrap_err();
        assert!(
            err.to_string().contains("x.bin") && err.to_string().contains("boom"),
            "{err}"
        );
        assert!(!target.exists() && !tmp_path(&target).exists());
        write_bytes_atomic(&target, b"done").unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"done");
        assert!(!tmp_path(&target).exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
