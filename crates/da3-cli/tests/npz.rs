//! `.npz` writer checked by independent readers: Python numpy (when installed) and a small
//! hand-written `.npy` parser over the zip crate's reader.

mod common;

use std::process::Command;

use da3_cli::npz::{write_npz, NpzArray};

struct Fixture {
    depth: Vec<f32>,
    ext: Vec<f32>,
    vec5: Vec<f32>,
    big: Vec<f32>,
}

fn fixture() -> Fixture {
    Fixture {
        depth: (0..24).map(|i| i as f32 * 0.25 - 3.0).collect(),
        ext: vec![1.0, -0.0, 1e-8, 3.4e38, -1.5, 0.1, 2.0, 7.25, f32::MIN_POSITIVE, -2.5e-3, 42.0, 1.0 / 3.0],
        vec5: vec![5.0, 4.0, 3.0, 2.0, 1.0],
        // More values than one write chunk (65536) to cover the chunked writing.
        big: (0..200_003).map(|i| ((i as f32) * 0.001).sin()).collect(),
    }
}

fn write_fixture(path: &std::path::Path, f: &Fixture) {
    let file = std::fs::File::create(path).unwrap();
    write_npz(
        file,
        &[
            NpzArray { name: "depth", shape: &[2, 3, 4], data: &f.depth },
            NpzArray { name: "extrinsics", shape: &[1, 3, 4], data: &f.ext },
            NpzArray { name: "vec5", shape: &[5], data: &f.vec5 },
            NpzArray { name: "empty", shape: &[0, 3], data: &[] },
            NpzArray { name: "big", shape: &[200_003], data: &f.big },
        ],
    )
    .unwrap();
}

#[test]
fn npz_reads_back_with_the_rust_parser() {
    let dir = common::scratch("npz_rust");
    let path = dir.join("t.npz");
    let f = fixture();
    write_fixture(&path, &f);
    let arrays = common::read_npz(&path);
    assert_eq!(arrays.keys().collect::<Vec<_>>(), ["big", "depth", "empty", "extrinsics", "vec5"]);
    assert_eq!(arrays["depth"].shape, [2, 3, 4]);
    assert_eq!(arrays["depth"].data, f.depth);
    assert_eq!(arrays["extrinsics"].shape, [1, 3, 4]);
    assert_eq!(arrays["extrinsics"].data.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
               f.ext.iter().map(|v| v.to_bits()).collect::<Vec<_>>());
    assert_eq!(arrays["vec5"].shape, [5]);
    assert_eq!(arrays["vec5"].data, f.vec5);
    assert_eq!(arrays["empty"].shape, [0, 3]);
    assert!(arrays["empty"].data.is_empty());
    assert_eq!(arrays["big"].data, f.big);
    // Entries are deflate-compressed.
    let mut zip = zip::ZipArchive::new(std::fs::File::open(&path).unwrap()).unwrap();
    assert_eq!(zip.by_name("big.npy").unwrap().compression(), zip::CompressionMethod::Deflated);
}

#[test]
fn npz_reads_back_with_numpy() {
    if !common::have_numpy() {
        return;
    }
    let dir = common::scratch("npz_numpy");
    let path = dir.join("t.npz");
    let f = fixture();
    write_fixture(&path, &f);
    let script = r#"
import json, sys, zipfile
import numpy as np
path = sys.argv[1]
d = np.load(path)
out = {"files": sorted(d.files)}
for k in d.files:
    a = d[k]
    out[k] = {"shape": list(a.shape), "dtype": a.dtype.str, "fortran": bool(a.flags.f_contiguous and a.ndim > 1)}
for k in ["depth", "extrinsics", "vec5"]:
    out[k]["values"] = [float(v) for v in d[k].ravel()]
big = d["big"]
out["big"]["sum"] = float(big.astype(np.float64).sum())
out["big"]["probe"] = [float(big[i]) for i in (0, 65535, 65536, 131072, 200002)]
z = zipfile.ZipFile(path)
offsets = {}
for name in z.namelist():
    fh = z.open(name)
    version = np.lib.format.read_magic(fh)
    np.lib.format.read_array_header_1_0(fh)
    offsets[name] = [list(version), fh.tell()]
out["offsets"] = offsets
out["compress"] = sorted({i.compress_type for i in z.infolist()})
print(json.dumps(out))
"#;
    let output = Command::new("python3").args(["-c", script]).arg(&path).output().unwrap();
    assert!(output.status.success(), "python failed: {}", String::from_utf8_lossy(&output.stderr));
    let v: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();

    assert_eq!(v["files"], serde_json::json!(["big", "depth", "empty", "extrinsics", "vec5"]));
    for (k, shape) in [("depth", vec![2, 3, 4]), ("extrinsics", vec![1, 3, 4]), ("vec5", vec![5]), ("empty", vec![0, 3]), ("big", vec![200_003])] {
        assert_eq!(v[k]["shape"], serde_json::json!(shape), "{k}");
        assert_eq!(v[k]["dtype"], "<f4", "{k}");
    }
    let values = |k: &str| -> Vec<f32> { v[k]["values"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect() };
    assert_eq!(values("depth"), f.depth);
    assert_eq!(values("vec5"), f.vec5);
    let ext = values("extrinsics");
    for (a, b) in ext.iter().zip(&f.ext) {
        assert_eq!(a, b); // -0.0 == 0.0 here; bit-exactness is checked by the Rust parser test
    }
    let probe: Vec<f32> = v["big"]["probe"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
    assert_eq!(probe, [0, 65535, 65536, 131072, 200_002].map(|i| f.big[i]));
    let sum: f64 = f.big.iter().map(|&x| f64::from(x)).sum();
    assert!((v["big"]["sum"].as_f64().unwrap() - sum).abs() < 1e-6 * sum.abs().max(1.0));
    // numpy sees format 1.0 with the data starting at a multiple of 64 bytes.
    for (name, off) in v["offsets"].as_object().unwrap() {
        assert_eq!(off[0], serde_json::json!([1, 0]), "{name}");
        assert_eq!(off[1].as_u64().unwrap() % 64, 0, "{name}");
    }
    assert_eq!(v["compress"], serde_json::json!([8]), "deflate");
}
