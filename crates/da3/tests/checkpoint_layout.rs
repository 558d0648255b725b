//! Every preset loads the exact key set and shapes of its Hub checkpoint.
//!
//! `fixtures/hub-keys.txt` is the listing of every tensor (key and shape) of the reference's
//! models, per preset (copied from the project's reference notes, made from the reference
//! package's state dicts). For each preset we write a safetensors file with those keys and
//! shapes whose data is a sparse run of zeros (no disk space, no download) and load it with
//! the preset's config: any missing, unexpected or mis-shaped key fails the test with the
//! loader's own report.

use std::io::Write;

use da3::backends::Flex;
use da3::{Da3, Da3Config};

/// Presets with their listed tensors: (name, declared count, [(key, shape)]).
fn listing() -> Vec<(String, usize, Vec<(String, Vec<usize>)>)> {
    let text = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hub-keys.txt")).unwrap();
    let mut presets: Vec<(String, usize, Vec<(String, Vec<usize>)>)> = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        if let Some(header) = line.strip_prefix("=== ") {
            let mut parts = header.split_whitespace();
            let name = parts.next().unwrap().to_string();
            let count = parts.find_map(|p| p.strip_prefix("tensors=")).unwrap().parse().unwrap();
            presets.push((name, count, Vec::new()));
            continue;
        }
        let (key, rest) = line.split_once("  [").unwrap_or_else(|| panic!("unparsable line: {line}"));
        let (shape, range) = rest.split_once(']').unwrap();
        let shape: Vec<usize> = shape.split(',').map(|d| d.trim().parse().unwrap()).collect();
        let keys = match range.trim().strip_prefix("i∈[") {
            Some(r) => {
                let (lo, hi) = r.trim_end_matches(']').split_once('-').unwrap();
                (lo.parse::<usize>().unwrap()..=hi.parse().unwrap()).map(|i| key.replace("{i}", &i.to_string())).collect()
            }
            None => vec![key.to_string()],
        };
        let entries = &mut presets.last_mut().expect("a preset header first").2;
        entries.extend(keys.into_iter().map(|k| (k, shape.clone())));
    }
    presets
}

/// A safetensors file holding `tensors` (f32, all zeros) without writing their data.
fn sparse_checkpoint(path: &std::path::Path, tensors: &[(String, Vec<usize>)]) {
    let mut header = serde_json::Map::new();
    let mut offset = 0usize;
    for (key, shape) in tensors {
        let bytes = 4 * shape.iter().product::<usize>();
        header.insert(
            key.clone(),
            serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + bytes]}),
        );
        offset += bytes;
    }
    let mut json = serde_json::to_vec(&header).unwrap();
    json.resize(json.len().div_ceil(8) * 8, b' ');
    let mut file = std::fs::File::create(path).unwrap();
    file.write_all(&(json.len() as u64).to_le_bytes()).unwrap();
    file.write_all(&json).unwrap();
    file.set_len((8 + json.len() + offset) as u64).unwrap();
}

fn check_preset(name: &str) {
    let (_, count, tensors) = listing().into_iter().find(|(n, ..)| n == name).unwrap_or_else(|| panic!("{name} not listed"));
    assert_eq!(tensors.len(), count, "{name}: listing parsed wrongly");
    let dir = std::env::temp_dir().join(format!("da3-layout-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("model.safetensors");
    sparse_checkpoint(&path, &tensors);
    let result = Da3::<Flex>::from_file(Da3Config::preset(name).unwrap(), &path, &Default::default());
    std::fs::remove_dir_all(&dir).ok();
    if let Err(e) = result {
        panic!("{name}: the Hub layout does not load:\n{e}");
    }
}

#[test]
fn every_preset_is_listed() {
    let names: Vec<String> = listing().into_iter().map(|(n, ..)| n).collect();
    assert_eq!(names, da3::config::PRESETS.map(String::from).to_vec());
}

/// One preset at a time: giant (5.4 GB of f32 zeros) and nested (6.8 GB) must not overlap.
#[test]
fn every_preset_loads_its_hub_layout() {
    for name in da3::config::PRESETS {
        let start = std::time::Instant::now();
        check_preset(name);
        println!("{name}: loaded in {:.1} s", start.elapsed().as_secs_f64());
    }
}
