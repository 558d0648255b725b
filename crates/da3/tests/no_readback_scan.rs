//! `da3::readback::to_host` must be the library's only device-to-host copy, so that its counter
//! (which `tests/engine.rs` uses to prove the engine path reads nothing back) sees every one.
//! Scans the library sources, test modules excluded, for Burn's and wgpu's readback calls.

use std::path::{Path, PathBuf};

const READBACK_CALLS: [&str; 8] =
    [".into_data(", ".to_data(", ".into_scalar(", "into_data_async", "read_sync", ".read_one(", "map_async", ".read_tensor("];

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The source without its test module (by convention the last item, after `#[cfg(test)]` or
/// `#[cfg(all(test, ...))]`) and without comment lines.
fn library_code(text: &str) -> String {
    let end = ["#[cfg(test)]", "#[cfg(all(test"].iter().filter_map(|m| text.find(m)).min().unwrap_or(text.len());
    text[..end].lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n")
}

#[test]
fn only_readback_rs_reads_tensors_back() {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    assert!(files.len() > 20, "found only {} source files under {}", files.len(), src.display());
    let mut offenders = Vec::new();
    let mut seen_in_readback = false;
    for file in &files {
        let code = library_code(&std::fs::read_to_string(file).unwrap());
        let hits: Vec<&str> = READBACK_CALLS.iter().copied().filter(|c| code.contains(c)).collect();
        if file.ends_with("readback.rs") {
            seen_in_readback = hits.contains(&".into_data(");
        } else if !hits.is_empty() {
            offenders.push(format!("{}: {hits:?}", file.strip_prefix(&src).unwrap().display()));
        }
    }
    assert!(seen_in_readback, "readback.rs no longer calls into_data: update this scan");
    assert!(offenders.is_empty(), "readbacks outside da3::readback::to_host: {offenders:#?}");
}
