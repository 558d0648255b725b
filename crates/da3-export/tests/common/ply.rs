//! An independent reader of the binary PLY files the exporters write, and the reference's
//! gs_ply pruning worked out by hand, shared by the `gs_ply` tests of da3-export and the CLI
//! tests (which include this file with `#[path]`).
#![allow(dead_code)]

/// A binary little-endian PLY with one all-float vertex element: property names and one row
/// of values per vertex.
pub struct Ply {
    /// Property names in file order.
    pub names: Vec<String>,
    /// One row per vertex, in property order.
    pub rows: Vec<Vec<f32>>,
}

/// Parses `bytes`, panicking on anything but one vertex element of float properties.
pub fn parse_ply(bytes: &[u8]) -> Ply {
    let end = bytes.windows(11).position(|w| w == b"end_header\n").expect("end_header") + 11;
    let header = std::str::from_utf8(&bytes[..end]).unwrap();
    let mut lines = header.lines();
    assert_eq!(lines.next(), Some("ply"));
    assert_eq!(lines.next(), Some("format binary_little_endian 1.0"));
    let mut count = None;
    let mut names = Vec::new();
    for line in lines {
        let parts: Vec<&str> = line.split_whitespace().collect();
        match parts.as_slice() {
            ["element", "vertex", n] => count = Some(n.parse::<usize>().unwrap()),
            ["element", other, _] => panic!("unexpected element {other}"),
            ["property", "float", name] => names.push(name.to_string()),
            ["property", ..] => panic!("non-float property: {line}"),
            ["end_header"] => {}
            _ => panic!("unexpected header line: {line}"),
        }
    }
    let count = count.expect("element vertex");
    let body = &bytes[end..];
    assert_eq!(body.len(), count * names.len() * 4, "body size for {count} vertices of {} floats", names.len());
    let values: Vec<f32> = body.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    let rows = values.chunks_exact(names.len()).map(<[f32]>::to_vec).collect();
    Ply { names, rows }
}

/// The 3DGS layout `export_to_gs_ply` writes (`save_sh_dc_only=True`).
pub const GS_PROPERTIES: [&str; 17] = [
    "x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1", "scale_2", "rot_0",
    "rot_1", "rot_2", "rot_3",
];

/// `torch.quantile` / `np.percentile` (linear interpolation) of `values` at `q` in [0, 1].
pub fn quantile(values: &[f32], q: f64) -> f32 {
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let pos = q * (v.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = (lo + 1).min(v.len() - 1);
    (v[lo] as f64 + (v[hi] as f64 - v[lo] as f64) * (pos - lo as f64)) as f32
}

/// The reference's gs_ply pruning (`save_gaussian_ply` as `export_to_gs_ply` calls it): every
/// `interval`-th view, the outer ⌊8/256·side⌋ rows/columns dropped, depth above the view's
/// 0.9 quantile dropped; indices into the V·H·W Gaussians in file order.
pub fn expected_selection(depth: &[f32], views: usize, h: usize, w: usize, interval: usize) -> Vec<usize> {
    let (th, tw) = (8 * h / 256, 8 * w / 256);
    let mut keep = Vec::new();
    for v in (0..views).step_by(interval) {
        let d = &depth[v * h * w..(v + 1) * h * w];
        let limit = quantile(d, 0.9);
        for y in th..h - th {
            for x in tw..w - tw {
                if d[y * w + x] <= limit {
                    keep.push((v * h + y) * w + x);
                }
            }
        }
    }
    keep
}

/// The gs_ply row (3DGS layout, DC only) of Gaussian `i`: position, zero normals, the DC
/// colour, inverse-sigmoid opacity, log scales and the rotation as stored.
pub fn gs_row(g: &da3::Gaussians, i: usize) -> Vec<f32> {
    g.means[i]
        .into_iter()
        .chain([0.0; 3])
        .chain(g.harmonics[i].map(|c| c[0]))
        .chain([(g.opacities[i] / (1.0 - g.opacities[i])).ln()])
        .chain(g.scales[i].map(f32::ln))
        .chain(g.rotations[i])
        .collect()
}

/// The largest relative difference (to max(|expected|, 1)) between `rows` and the rows of the
/// Gaussians `keep` selects; NaN must stay NaN at the same place (a negative
/// depth-plus-offset gives a negative scale, whose log is NaN, as the reference's torch.log).
pub fn worst_row_difference(rows: &[Vec<f32>], keep: &[usize], g: &da3::Gaussians) -> f32 {
    assert_eq!(rows.len(), keep.len(), "vertex count");
    let mut worst = 0f32;
    for (row, &i) in rows.iter().zip(keep) {
        let expect = gs_row(g, i);
        for (a, b) in row.iter().zip(&expect) {
            assert_eq!(a.is_nan(), b.is_nan(), "Gaussian {i}: {row:?} vs {expect:?}");
            if !b.is_nan() {
                worst = worst.max((a - b).abs() / b.abs().max(1.0));
            }
        }
    }
    worst
}
