//! The GLB export, parsed and validated by the `gltf` crate (an independent reader) and
//! checked against hand-computed geometry.
#![allow(clippy::needless_range_loop)]

mod common;

use std::collections::HashMap;

use common::*;
use da3_export::glb::{export_glb, GlbOptions};
use gltf::mesh::Mode;

/// One mesh read back: name, mode, positions, RGBA colours.
type ParsedMesh = (String, Mode, Vec<[f32; 3]>, Vec<[u8; 4]>);

/// Everything read back from a GLB through the `gltf` crate.
struct Parsed {
    /// One entry per mesh, in file order.
    meshes: Vec<ParsedMesh>,
    /// (min, max) of each POSITION accessor, in mesh order.
    bounds: Vec<([f32; 3], [f32; 3])>,
}

fn parse(bytes: &[u8]) -> Parsed {
    // Container layout, checked by hand.
    assert_eq!(&bytes[0..4], b"glTF");
    assert_eq!(u32::from_le_bytes(bytes[4..8].try_into().unwrap()), 2);
    assert_eq!(
        u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize,
        bytes.len()
    );
    let json_len = u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize;
    assert_eq!(&bytes[16..20], b"JSON");
    assert_eq!(json_len % 4, 0);
    let json = &bytes[20..20 + json_len];
    let last_brace = json.iter().rposition(|&b| b == b'}').unwrap();
    assert!(
        json[last_brace + 1..].iter().all(|&b| b == b' '),
        "JSON padded with spaces"
    );
    let bin_header = 20 + json_len;
    if bin_header < bytes.len() {
        let bin_len =
            u32::from_le_bytes(bytes[bin_header..bin_header + 4].try_into().unwrap()) as usize;
        assert_eq!(&bytes[bin_header + 4..bin_header + 8], b"BIN\0");
        assert_eq!(bin_len % 4, 0);
        assert_eq!(bin_header + 8 + bin_len, bytes.len());
    }

    // The gltf crate parses and validates the document (indices, accessor bounds, ...).
    let gltf = gltf::Gltf::from_slice(bytes).expect("valid glTF");
    let blob = gltf.blob.clone().unwrap_or_default();
    let buffers: Vec<_> = gltf.buffers().collect();
    if blob.is_empty() {
        assert!(buffers.is_empty());
    } else {
        assert_eq!(buffers.len(), 1);
        assert_eq!(
            buffers[0].length(),
            blob.len(),
            "buffer byteLength == BIN chunk length"
        );
        assert!(matches!(buffers[0].source(), gltf::buffer::Source::Bin));
    }
    match gltf.default_scene() {
        Some(scene) => assert_eq!(
            scene.nodes().count(),
            gltf.meshes().count(),
            "one node per mesh, all in the scene"
        ),
        None => assert_eq!(
            gltf.meshes().count(),
            0,
            "no scene only when there is no geometry"
        ),
    }
    let mut meshes = Vec::new();
    let mut bounds = Vec::new();
    for mesh in gltf.meshes() {
        assert_eq!(mesh.primitives().count(), 1);
        let prim = mesh.primitives().next().unwrap();
        let pos = prim.get(&gltf::Semantic::Positions).unwrap();
        let col = prim.get(&gltf::Semantic::Colors(0)).unwrap();
        assert_eq!(pos.data_type(), gltf::accessor::DataType::F32);
        assert_eq!(pos.dimensions(), gltf::accessor::Dimensions::Vec3);
        assert_eq!(col.data_type(), gltf::accessor::DataType::U8);
        assert_eq!(col.dimensions(), gltf::accessor::Dimensions::Vec4);
        assert!(col.normalized());
        assert_eq!(pos.count(), col.count());
        let as3 = |v: serde_json::Value| -> [f32; 3] { serde_json::from_value(v).unwrap() };
        bounds.push((as3(pos.min().unwrap()), as3(pos.max().unwrap())));
        let reader = prim.reader(|_| Some(&blob[..]));
        let positions: Vec<[f32; 3]> = reader.read_positions().unwrap().collect();
        let colors: Vec<[u8; 4]> = reader.read_colors(0).unwrap().into_rgba_u8().collect();
        assert_eq!(positions.len(), pos.count());
        meshes.push((
            mesh.name().unwrap().to_string(),
            prim.mode(),
            positions,
            colors,
        ));
    }
    Parsed { meshes, bounds }
}

/// Per-axis median of the points after world -> camera 0 (identity) -> glTF axes.
fn expected_center(points: &[[f64; 3]]) -> [f64; 3] {
    std::array::from_fn(|a| np_percentile(&points.iter().map(|p| p[a]).collect::<Vec<_>>(), 50.0))
}

/// World -> glTF axes of camera 0 (identity): flip y and z.
fn to_gltf(p: [f64; 3]) -> [f64; 3] {
    [p[0], -p[1], -p[2]]
}

fn all_world_points() -> Vec<((usize, usize, usize), [f64; 3])> {
    let mut out = Vec::new();
    for v in 0..2 {
        for y in 0..H {
            for x in 0..W {
                out.push(((v, x, y), to_gltf(world(v, x, y))));
            }
        }
    }
    out
}

#[test]
fn points_and_frustums_read_back_aligned_to_camera_zero() {
    let (pred, images) = synthetic();
    let dir = scratch("glb-all");
    // Threshold min(max(0, pct0 = 1.0), pct90) = 1.0 keeps all 96 pixels.
    let options = GlbOptions {
        conf_thresh: 0.0,
        conf_thresh_percentile: 0.0,
        ..Default::default()
    };
    let path = export_glb(&dir, &pred, &images, &options).unwrap();
    assert_eq!(path, dir.join("scene.glb"));
    assert!(leftover_tmp_files(&dir).is_empty());
    let bytes = std::fs::read(&path).unwrap();
    let parsed = parse(&bytes);
    assert_eq!(parsed.meshes.len(), 3, "points + 2 cameras");

    let world = all_world_points();
    let c = expected_center(&world.iter().map(|w| w.1).collect::<Vec<_>>());
    let expected: HashMap<[u8; 3], [f64; 3]> = world
        .iter()
        .map(|&((v, x, y), p)| (color(v, x, y), [p[0] - c[0], p[1] - c[1], p[2] - c[2]]))
        .collect();

    let (name, mode, positions, colors) = &parsed.meshes[0];
    assert_eq!(
        (name.as_str(), *mode, positions.len()),
        ("points", Mode::Points, 96)
    );
    for (p, rgba) in positions.iter().zip(colors) {
        assert_eq!(rgba[3], 255);
        let e = expected[&[rgba[0], rgba[1], rgba[2]]];
        for a in 0..3 {
            assert_close(
                f64::from(p[a]),
                e[a],
                1e-5,
                &format!("point {rgba:?} axis {a}"),
            );
        }
    }
    // Accessor bounds are the true extremes.
    let (min, max) = parsed.bounds[0];
    for a in 0..3 {
        let lo = expected
            .values()
            .map(|e| e[a])
            .fold(f64::INFINITY, f64::min);
        let hi = expected
            .values()
            .map(|e| e[a])
            .fold(f64::NEG_INFINITY, f64::max);
        assert_close(f64::from(min[a]), lo, 1e-5, "min");
        assert_close(f64::from(max[a]), hi, 1e-5, "max");
    }

    // Frustum size: 0.03 x the 5-95 percentile diagonal of the points.
    let pts: Vec<[f64; 3]> = expected.values().copied().collect();
    let diag = (0..3)
        .map(|a| {
            let axis: Vec<f64> = pts.iter().map(|p| p[a]).collect();
            (np_percentile(&axis, 95.0) - np_percentile(&axis, 5.0)).powi(2)
        })
        .sum::<f64>()
        .sqrt();
    let s = 0.03 * diag;
    for (i, (name, mode, positions, colors)) in parsed.meshes[1..].iter().enumerate() {
        assert_eq!(
            (name.as_str(), *mode, positions.len()),
            (format!("camera_{i:04}").as_str(), Mode::Lines, 16)
        );
        // HSV colours of the reference: h = (i + 0.5) / 2, s = 0.85, v = 0.95.
        let rgb = [[139, 242, 36, 255], [139, 36, 242, 255]][i];
        assert!(colors.iter().all(|c| *c == rgb), "{colors:?}");
        // Segments 0-3 start at the camera centre: (0,0,0) and (-1,0,0) in the world.
        let centre = to_gltf(if i == 0 {
            [0.0, 0.0, 0.0]
        } else {
            [-1.0, 0.0, 0.0]
        });
        for seg in 0..4 {
            for a in 0..3 {
                assert_close(
                    f64::from(positions[2 * seg][a]),
                    centre[a] - c[a],
                    1e-5,
                    "frustum apex",
                );
            }
        }
        // Rectangle edges chain the 4 corners: end of edge k == start of edge k+1.
        for k in 0..4 {
            assert_eq!(positions[8 + 2 * k + 1], positions[8 + 2 * ((k + 1) % 4)]);
            assert_eq!(
                positions[2 * k + 1],
                positions[8 + 2 * k],
                "corner k is both a ray end and an edge start"
            );
        }
    }
    // Camera 0's first corner, pixel (0, 0): K⁻¹(0, 0, 1) = (-1, -0.75, 1), scaled by s.
    let corner = to_gltf([-s, -0.75 * s, s]);
    for a in 0..3 {
        assert_close(
            f64::from(parsed.meshes[1].2[1][a]),
            corner[a] - c[a],
            1e-5,
            "camera 0 corner (0, 0)",
        );
    }
    // Camera 0's far corner, pixel (W-1, H-1) = (7, 5): K⁻¹ -> (0.75, 0.5, 1).
    let corner = to_gltf([0.75 * s, 0.5 * s, s]);
    for a in 0..3 {
        assert_close(
            f64::from(parsed.meshes[1].2[5][a]),
            corner[a] - c[a],
            1e-5,
            "camera 0 corner (7, 5)",
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn default_threshold_and_reproducible_cap() {
    let (pred, images) = synthetic();
    let dir = scratch("glb-cap");
    // Defaults: thr = min(max(1.05, pct40 = 1.38), pct90 = 1.855) = 1.38: 58 pixels pass.
    let bytes =
        std::fs::read(export_glb(&dir, &pred, &images, &GlbOptions::default()).unwrap()).unwrap();
    assert_eq!(parse(&bytes).meshes[0].2.len(), 58);

    let options = GlbOptions {
        num_max_points: 20,
        show_cameras: false,
        seed: 9,
        ..Default::default()
    };
    let a = std::fs::read(export_glb(&dir, &pred, &images, &options).unwrap()).unwrap();
    let b = std::fs::read(export_glb(&dir, &pred, &images, &options).unwrap()).unwrap();
    assert_eq!(a, b, "same seed, same file");
    let parsed = parse(&a);
    assert_eq!(parsed.meshes.len(), 1, "no cameras");
    assert_eq!(parsed.meshes[0].2.len(), 20);
    let c = std::fs::read(
        export_glb(
            &dir,
            &pred,
            &images,
            &GlbOptions {
                seed: 10,
                ..options
            },
        )
        .unwrap(),
    )
    .unwrap();
    assert_ne!(a, c, "another seed, another subset");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn background_filters_drop_black_and_white_pixels() {
    let (pred, mut images) = synthetic();
    // View 1: row 0 near-black, row 1 near-white.
    for x in 0..W {
        images[1].pixels[3 * x..3 * x + 3].copy_from_slice(&[5, 10, 15]);
        images[1].pixels[3 * (W + x)..3 * (W + x) + 3].copy_from_slice(&[240, 250, 255]);
    }
    let dir = scratch("glb-bg");
    // thr = min(max(1.05, pct0 = 1.0), pct90) = 1.05: the 5 pixels with conf 1.00..1.04 go.
    let base = GlbOptions {
        conf_thresh_percentile: 0.0,
        show_cameras: false,
        ..Default::default()
    };
    let count = |o: &GlbOptions| {
        let bytes = std::fs::read(export_glb(&dir, &pred, &images, o).unwrap()).unwrap();
        parse(&bytes).meshes[0].2.len()
    };
    assert_eq!(count(&base), 91);
    assert_eq!(
        count(&GlbOptions {
            filter_black_bg: true,
            ..base.clone()
        }),
        83
    );
    assert_eq!(
        count(&GlbOptions {
            filter_white_bg: true,
            ..base.clone()
        }),
        83
    );
    assert_eq!(
        count(&GlbOptions {
            filter_black_bg: true,
            filter_white_bg: true,
            ..base.clone()
        }),
        75
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn scenes_without_points_are_still_valid() {
    let (mut pred, images) = synthetic();
    pred.depth.iter_mut().for_each(|d| *d = 0.0); // no valid depth: no points
    let dir = scratch("glb-empty");
    let bytes =
        std::fs::read(export_glb(&dir, &pred, &images, &GlbOptions::default()).unwrap()).unwrap();
    let parsed = parse(&bytes);
    assert_eq!(parsed.meshes.len(), 2, "cameras only");
    assert!(parsed.meshes.iter().all(|m| m.1 == Mode::Lines));
    let options = GlbOptions {
        show_cameras: false,
        ..Default::default()
    };
    let bytes = std::fs::read(export_glb(&dir, &pred, &images, &options).unwrap()).unwrap();
    assert!(parse(&bytes).meshes.is_empty(), "an empty scene, no buffer");
    std::fs::remove_dir_all(&dir).unwrap();
}
