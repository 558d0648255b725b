//! The PLY export, read back by independent parsers (Python `plyfile` when installed, and a
//! stdlib `struct` reader written for this test).

mod common;

use std::collections::HashMap;

use common::*;
use da3_export::ply::{export_ply, PlyOptions};

/// Reads a PLY with `plyfile` (mode `plyfile`, exit 77 if missing) or with a hand-written
/// `struct` parser (mode `struct`); prints `{"format", "names", "rows": [[x, y, z, r, g, b]]}`.
const READ_PLY: &str = r#"
import sys, json, struct
mode, path = sys.argv[1], sys.argv[2]
if mode == "plyfile":
    try:
        from plyfile import PlyData
    except ImportError as e:
        print(f"plyfile not installed: {e}", file=sys.stderr); sys.exit(77)
    ply = PlyData.read(path)
    v = ply["vertex"]
    names = [p.name for p in v.properties]
    rows = [[float(r["x"]), float(r["y"]), float(r["z"]), int(r["red"]), int(r["green"]), int(r["blue"])] for r in v.data]
    fmt = ply.byte_order
else:
    data = open(path, "rb").read()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    header = data[:end].decode("ascii").splitlines()
    assert header[0] == "ply"
    fmt = header[1]
    count = int([l for l in header if l.startswith("element vertex")][0].split()[2])
    names = [l.split()[2] for l in header if l.startswith("property")]
    types = [l.split()[1] for l in header if l.startswith("property")]
    assert types == ["float"] * 3 + ["uchar"] * 3, types
    body = data[end:]
    assert len(body) == 15 * count, (len(body), count)
    rows = [list(struct.unpack_from("<3f3B", body, 15 * i)) for i in range(count)]
print(json.dumps({"format": fmt, "names": names, "rows": rows}))
"#;

/// Rows of the file as read by every available independent reader (at least the struct one
/// when python3 exists).
fn read_back(path: &std::path::Path) -> Vec<Vec<Vec<f64>>> {
    let mut all = Vec::new();
    for mode in ["plyfile", "struct"] {
        let Some(out) = python(READ_PLY, &[mode, path.to_str().unwrap()]) else {
            continue;
        };
        let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
        let fmt = doc["format"].as_str().unwrap();
        assert!(
            fmt == "<" || fmt == "format binary_little_endian 1.0",
            "{mode}: {fmt}"
        );
        assert_eq!(
            doc["names"],
            serde_json::json!(["x", "y", "z", "red", "green", "blue"]),
            "{mode}"
        );
        let rows: Vec<Vec<f64>> = serde_json::from_value(doc["rows"].clone()).unwrap();
        all.push(rows);
    }
    all
}

/// Maps each pixel's unique colour back to `(view, x, y)`.
fn pixel_of_color() -> HashMap<[u8; 3], (usize, usize, usize)> {
    let mut map = HashMap::new();
    for v in 0..2 {
        for y in 0..H {
            for x in 0..W {
                map.insert(color(v, x, y), (v, x, y));
            }
        }
    }
    map
}

/// Every row is the hand-computed world point of the pixel its colour names.
fn check_rows(rows: &[Vec<f64>]) {
    let pixels = pixel_of_color();
    for row in rows {
        let rgb = [row[3] as u8, row[4] as u8, row[5] as u8];
        let &(v, x, y) = pixels
            .get(&rgb)
            .unwrap_or_else(|| panic!("unexpected colour {rgb:?}"));
        let expected = world(v, x, y);
        for a in 0..3 {
            assert_close(
                row[a],
                expected[a],
                1e-5,
                &format!("view {v} pixel ({x}, {y}) axis {a}"),
            );
        }
    }
}

#[test]
fn all_points_read_back_with_known_coordinates_and_colours() {
    let (pred, images) = synthetic();
    let dir = scratch("ply-all");
    let options = PlyOptions {
        conf_thresh_percentile: 0.0,
        ..Default::default()
    };
    let path = export_ply(&dir, &pred, &images, &options).unwrap();
    assert_eq!(path, dir.join("scene.ply"));
    assert!(leftover_tmp_files(&dir).is_empty());
    let readers = read_back(&path);
    if readers.is_empty() {
        eprintln!("NOTICE: no independent PLY reader ran");
    }
    for rows in readers {
        assert_eq!(rows.len(), 2 * H * W);
        check_rows(&rows);
        // A few points computed by hand, in file order (view-major, row-major).
        let at = |v: usize, x: usize, y: usize| &rows[v * H * W + y * W + x];
        assert_eq!(at(0, 0, 0), &vec![-2.0, -1.5, 2.0, 0.0, 0.0, 20.0]);
        assert_eq!(at(1, 4, 3), &vec![-3.0, 0.0, 0.0, 120.0, 120.0, 220.0]);
        assert_eq!(at(1, 0, 0), &vec![-2.0, -0.75, -1.0, 0.0, 0.0, 220.0]);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn confidence_percentile_keeps_the_upper_half() {
    // 96 distinct confidences 1.00 ..= 1.95 in pixel order; the 50th percentile is 1.475,
    // so exactly the 48 pixels of view 1 pass.
    let (pred, images) = synthetic();
    let dir = scratch("ply-half");
    let path = export_ply(
        &dir,
        &pred,
        &images,
        &PlyOptions {
            conf_thresh_percentile: 50.0,
            ..Default::default()
        },
    )
    .unwrap();
    for rows in read_back(&path) {
        assert_eq!(rows.len(), H * W);
        assert!(
            rows.iter().all(|r| r[5] == 220.0),
            "only view 1 (blue 220) should pass"
        );
        check_rows(&rows);
    }
    // The default (40th percentile: 1.38) keeps the 58 pixels with conf >= 1.38.
    let path = export_ply(&dir, &pred, &images, &PlyOptions::default()).unwrap();
    for rows in read_back(&path) {
        assert_eq!(rows.len(), 96 - 38);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn capped_subsample_is_reproducible() {
    let (pred, images) = synthetic();
    let (a, b) = (scratch("ply-cap-a"), scratch("ply-cap-b"));
    let options = PlyOptions {
        conf_thresh_percentile: 0.0,
        num_max_points: 10,
        seed: 3,
    };
    let pa = export_ply(&a, &pred, &images, &options).unwrap();
    let pb = export_ply(&b, &pred, &images, &options).unwrap();
    assert_eq!(
        std::fs::read(&pa).unwrap(),
        std::fs::read(&pb).unwrap(),
        "same seed, same file"
    );
    let pc = export_ply(&b, &pred, &images, &PlyOptions { seed: 4, ..options }).unwrap();
    assert_ne!(
        std::fs::read(&pa).unwrap(),
        std::fs::read(&pc).unwrap(),
        "another seed, another subset"
    );
    for rows in read_back(&pa) {
        assert_eq!(rows.len(), 10);
        check_rows(&rows);
    }
    std::fs::remove_dir_all(&a).unwrap();
    std::fs::remove_dir_all(&b).unwrap();
}
