//! Atomic file writes: write `NAME.tmp` next to the target, then rename it over `NAME`.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// The temporary path used for `path`: the same directory, the file name plus `.tmp`.
pub fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Creates `path` atomically: `fill` writes into a buffered `NAME.tmp`, which is flushed,
/// synced and renamed to `path`. On any error the temporary file is removed and `path` is
/// left as it was.
pub fn write_atomic<F>(path: &Path, fill: F) -> Result<()>
where
    F: FnOnce(&mut BufWriter<File>) -> Result<()>,
{
    let tmp = tmp_path(path);
    let result = (|| {
        let file = File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
        let mut writer = BufWriter::new(file);
        fill(&mut writer)?;
        writer.flush()?;
        let file = writer.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, path).with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tmp_path_is_a_sibling() {
        assert_eq!(tmp_path(Path::new("out/results.npz")), PathBuf::from("out/results.npz.tmp"));
    }

    #[test]
    fn failed_write_leaves_no_file() {
        let dir = std::env::temp_dir().join(format!("da3-atomic-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let target = dir.join("x.bin");
        let err = write_atomic(&target, |w| {
            w.write_all(b"partial")?;
            anyhow::bail!("boom")
        });
        assert!(err.is_err());
        assert!(!target.exists() && !tmp_path(&target).exists());
        write_atomic(&target, |w| Ok(w.write_all(b"done")?)).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"done");
        assert!(!tmp_path(&target).exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
