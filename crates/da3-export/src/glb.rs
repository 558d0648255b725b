//! `glb`: the point cloud and camera frustum wireframes as one binary glTF 2.0 file,
//! `scene.glb`, following the reference's `export/glb.py`:
//!
//! 1. Optionally, near-black (all channels < 16) and near-white (all ≥ 240) pixels get
//!    confidence 1 (the minimum), so the threshold drops them (off by default).
//! 2. Threshold `thr = min(max(conf_thresh, pct(conf, conf_thresh_percentile)),
//!    pct(conf, ensure_thresh_percentile))` over all views' pixels (defaults 1.05, 40, 90).
//! 3. Pixels with finite depth > 0 and `conf >= thr` (compared in float32, as NumPy 1.x
//!    does in the reference) are unprojected to world points.
//! 4. Alignment `A = T_center · M · w2c₀`: world → camera 0 (its world-to-camera
//!    extrinsic), OpenCV → glTF axes (`M` flips Y and Z), then minus the per-axis median of
//!    the points so transformed. `A` is applied to points and frustums alike.
//! 5. At most `num_max_points` points are kept, by a seeded uniform subsample.
//! 6. With `show_cameras`, each camera is drawn as 8 line segments (centre to the 4 image
//!    corners at depth `size`, and the rectangle joining them) in an HSV colour
//!    (`h = (i + 0.5) / n`, s 0.85, v 0.95), where `size = camera_size × ‖p95 − p5‖` of
//!    the kept points (1 when fewer than 2 points).
//!
//! Memory: only the kept points are stored. The percentiles of steps 2 and 4 are exact
//! order statistics found by radix selection ([`crate::order_stats`]), and steps 3–5
//! unproject the pixels again on each pass (8 passes), so a 1000-view scene costs what its
//! `num_max_points` cost, not tens of bytes per pixel.
//!
//! Layout: a `points` mesh with one POINTS primitive (POSITION float VEC3 with min/max,
//! COLOR_0 normalized unsigned byte VEC4) and one `camera_NNNN` mesh per camera with one
//! LINES primitive (16 vertices, same attributes), one node per mesh, all in scene 0, one
//! buffer stored in the GLB's BIN chunk. Meshes without vertices are left out.
//!
//! Differences from the reference: the reference also writes `depth_vis/` and `scene.jpg`
//! from its GLB export (use [`crate::depth_vis`] for that), and reads a `sky_mask` that its
//! prediction never has; this port has no sky handling either.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use da3::Prediction;
use gltf_json as json;
use json::validation::{Checked::Valid, USize64};

use crate::atomic::{create_dir, write_bytes_atomic};
use crate::error::{ExportError, Result};
use crate::geometry::{
    affine_apply, affine_compose, affine_from_f32, cam_to_world, for_each_point, inverse_intrinsics, mat3_mul_vec,
    percentiles, threshold_f32, Affine, Point,
};
use crate::order_stats::streamed_percentiles;
use crate::image::{check_inputs_with_cameras, ImageRgb8};

/// File name of the scene in the export directory.
pub const FILE_NAME: &str = "scene.glb";

/// Options of [`export_glb`]; the defaults are the reference's.
#[derive(Debug, Clone, PartialEq)]
pub struct GlbOptions {
    /// At most this many points are kept (seeded subsample).
    pub num_max_points: usize,
    /// Base confidence threshold, before the percentile clamps.
    pub conf_thresh: f64,
    /// Lower clamp of the threshold: this percentile (0–100) of all confidences.
    pub conf_thresh_percentile: f64,
    /// Upper clamp of the threshold: this percentile of all confidences.
    pub ensure_thresh_percentile: f64,
    /// Drop pixels whose RGB channels are all below 16.
    pub filter_black_bg: bool,
    /// Drop pixels whose RGB channels are all at least 240.
    pub filter_white_bg: bool,
    /// Draw camera frustums.
    pub show_cameras: bool,
    /// Frustum size as a fraction of the scene diagonal.
    pub camera_size: f64,
    /// Seed of the subsampling generator.
    pub seed: u64,
}

impl Default for GlbOptions {
    /// 1M points, `conf_thresh` 1.05, percentiles 40 / 90, no background filters, cameras
    /// shown at 0.03 of the scene diagonal, seed 42.
    fn default() -> Self {
        Self {
            num_max_points: 1_000_000,
            conf_thresh: 1.05,
            conf_thresh_percentile: 40.0,
            ensure_thresh_percentile: 90.0,
            filter_black_bg: false,
            filter_white_bg: false,
            show_cameras: true,
            camera_size: 0.03,
            seed: 42,
        }
    }
}

/// One camera's wireframe, already in the scene's (aligned glTF) frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Frustum {
    /// 8 segments: centre→corner for the 4 image corners, then the 4 rectangle edges.
    pub segments: [[[f32; 3]; 2]; 8],
    /// RGB colour.
    pub color: [u8; 3],
}

/// Everything that goes into `scene.glb`, before encoding.
#[derive(Debug, Clone, PartialEq)]
pub struct GlbScene {
    /// Points in the aligned glTF frame.
    pub points: Vec<[f32; 3]>,
    /// RGB of each point.
    pub colors: Vec<[u8; 3]>,
    /// Camera wireframes (empty without `show_cameras`).
    pub cameras: Vec<Frustum>,
    /// The alignment `A` applied to world coordinates: `x' = A x` (3×4).
    pub alignment: Affine,
    /// The confidence threshold that was used.
    pub conf_threshold: f64,
}

/// Builds the scene of the GLB export (steps 1–6 of the module docs).
pub fn glb_scene(
    pred: &Prediction,
    images: &[ImageRgb8],
    options: &GlbOptions,
) -> Result<GlbScene> {
    check_inputs_with_cameras(pred, images, "glb")?;
    if pred.views == 0 {
        return Err(ExportError::Input("no views to export".into()));
    }
    let n = pred.height * pred.width;
    let all_at_least = |rgb: &[u8], v: u8| rgb.iter().all(|&c| c >= v);
    // Confidence of pixel `k` of the scene after the background filters, computed where
    // used: a copy would cost 4 bytes per pixel of every view.
    let conf_at = |k: usize| -> f32 {
        let rgb = &images[k / n].pixels[3 * (k % n)..3 * (k % n) + 3];
        let black = options.filter_black_bg && rgb.iter().all(|&c| c < 16);
        let white = options.filter_white_bg && all_at_least(rgb, 240);
        if black || white {
            1.0
        } else {
            // Without predicted confidence every pixel counts as confident.
            pred.conf.get(k).copied().unwrap_or(f32::INFINITY)
        }
    };
    let bounds = streamed_percentiles(
        1,
        &[(0, options.conf_thresh_percentile), (0, options.ensure_thresh_percentile)],
        |sink: &mut dyn FnMut(usize, f32)| (0..pred.views * n).for_each(|k| sink(0, conf_at(k))),
    );
    let conf_threshold = clamp_threshold(options, bounds[0].zip(bounds[1]));
    let thr32 = threshold_f32(conf_threshold);
    let keep = |v: usize, p: usize| conf_at(v * n + p) >= thr32;

    // World -> camera 0 -> glTF axes, then centred on the median point. The points are
    // unprojected again on every pass instead of being stored (tens of bytes per pixel).
    let mut alignment = affine_from_f32(&pred.extrinsics[0]);
    for row in &mut alignment[1..] {
        row.iter_mut().for_each(|v| *v = -*v);
    }
    let axes = alignment;
    let moved = |pt: &Point| affine_apply(&axes, pt.world.map(f64::from));
    let mut failed = None;
    let medians = streamed_percentiles(3, &[(0, 50.0), (1, 50.0), (2, 50.0)], |sink: &mut dyn FnMut(usize, f64)| {
        let pass = for_each_point(pred, images, keep, |pt| moved(&pt).iter().enumerate().for_each(|(a, &c)| sink(a, c)));
        if let Err(e) = pass {
            failed.get_or_insert(e);
        }
    });
    if let Some(e) = failed {
        return Err(e);
    }
    let center: [f64; 3] = std::array::from_fn(|a| medians[a].unwrap_or(0.0));
    for (r, c) in center.iter().enumerate() {
        alignment[r][3] -= c;
    }
    let aligned = |pt: &Point| -> [f32; 3] {
        let p = moved(pt);
        std::array::from_fn(|a| (p[a] - center[a]) as f32)
    };
    let finite = |p: &[f32; 3]| p.iter().all(|c| c.is_finite());
    // A seeded subsample of the finite aligned points: one pass counts them, one keeps the
    // drawn ones.
    let mut count = 0usize;
    for_each_point(pred, images, keep, |pt| count += usize::from(finite(&aligned(&pt))))?;
    let drawn = crate::geometry::subsample_indices(count, options.num_max_points, options.seed);
    let (mut points, mut colors) = (Vec::with_capacity(drawn.len()), Vec::with_capacity(drawn.len()));
    let (mut index, mut next) = (0usize, drawn.iter().peekable());
    for_each_point(pred, images, keep, |pt| {
        let p = aligned(&pt);
        if !finite(&p) {
            return;
        }
        if next.peek() == Some(&&index) {
            points.push(p);
            colors.push(pt.color);
            next.next();
        }
        index += 1;
    })?;

    let mut cameras = Vec::new();
    if options.show_cameras {
        let size = scene_scale(&points) * options.camera_size;
        for i in 0..pred.views {
            let segments = frustum_segments(pred, i, size, &alignment)?;
            cameras.push(Frustum {
                segments,
                color: index_color(i, pred.views),
            });
        }
    }
    Ok(GlbScene {
        points,
        colors,
        cameras,
        alignment,
        conf_threshold,
    })
}

/// `min(max(conf_thresh, pct(conf, p_low)), pct(conf, p_high))`, or `conf_thresh` when
/// `conf` is empty.
pub fn conf_threshold(conf: &[f32], options: &GlbOptions) -> f64 {
    let p = percentiles(conf, &[options.conf_thresh_percentile, options.ensure_thresh_percentile]);
    clamp_threshold(options, p.map(|p| (p[0], p[1])))
}

/// `min(max(conf_thresh, low), high)` of the percentiles `(low, high)`, or `conf_thresh`
/// without them.
fn clamp_threshold(options: &GlbOptions, percentiles: Option<(f64, f64)>) -> f64 {
    match percentiles {
        Some((low, high)) => options.conf_thresh.max(low).min(high),
        None => options.conf_thresh,
    }
}

/// The scene diagonal: `‖p95 − p5‖` of the points per axis, or 1 when there are fewer than
/// 2 points or it is not a positive finite number.
pub fn scene_scale(points: &[[f32; 3]]) -> f64 {
    if points.len() < 2 {
        return 1.0;
    }
    let sq: f64 = (0..3)
        .map(|a| {
            let axis: Vec<f32> = points.iter().map(|p| p[a]).collect();
            let p = percentiles(&axis, &[5.0, 95.0]).unwrap_or_else(|| vec![0.0, 0.0]);
            (p[1] - p[0]).powi(2)
        })
        .sum();
    let diag = sq.sqrt();
    if diag.is_finite() && diag > 0.0 {
        diag
    } else {
        1.0
    }
}

/// The 8 segments of camera `i`'s frustum at depth `size`, transformed by `alignment`.
fn frustum_segments(
    pred: &Prediction,
    i: usize,
    size: f64,
    alignment: &Affine,
) -> Result<[[[f32; 3]; 2]; 8]> {
    let (w, h) = ((pred.width as f64 - 1.0), (pred.height as f64 - 1.0));
    let k_inv = inverse_intrinsics(pred, i)?;
    let to_scene = affine_compose(alignment, &cam_to_world(pred, i)?);
    let corners = [[0.0, 0.0], [w, 0.0], [w, h], [0.0, h]].map(|[x, y]| {
        let ray = mat3_mul_vec(&k_inv, [x, y, 1.0]);
        let z = if ray[2] == 0.0 { 1.0 } else { ray[2] };
        affine_apply(&to_scene, ray.map(|c| c / z * size))
    });
    let center = affine_apply(&to_scene, [0.0; 3]);
    let f = |p: [f64; 3]| p.map(|c| c as f32);
    Ok(std::array::from_fn(|s| {
        if s < 4 {
            [f(center), f(corners[s])]
        } else {
            [f(corners[s - 4]), f(corners[(s - 3) % 4])]
        }
    }))
}

/// The reference's camera colour: HSV `((i + 0.5) / n, 0.85, 0.95)` to bytes (truncating).
pub fn index_color(i: usize, n: usize) -> [u8; 3] {
    let h = (i as f64 + 0.5) / n.max(1) as f64;
    let (s, v) = (0.85, 0.95);
    let sector = (h * 6.0).floor();
    let f = h * 6.0 - sector;
    let (p, q, t) = (v * (1.0 - s), v * (1.0 - f * s), v * (1.0 - (1.0 - f) * s));
    let rgb = match (sector as i64).rem_euclid(6) {
        0 => [v, t, p],
        1 => [q, v, p],
        2 => [p, v, t],
        3 => [p, q, v],
        4 => [t, p, v],
        _ => [v, p, q],
    };
    rgb.map(|c| (c * 255.0) as u8)
}

/// Builds the scene and writes `dir/scene.glb` (creating `dir` if needed); returns its path.
pub fn export_glb(
    dir: &Path,
    pred: &Prediction,
    images: &[ImageRgb8],
    options: &GlbOptions,
) -> Result<PathBuf> {
    let scene = glb_scene(pred, images, options)?;
    create_dir(dir)?;
    let path = dir.join(FILE_NAME);
    let bytes = encode_glb(&scene)?;
    write_bytes_atomic(&path, &bytes)?;
    Ok(path)
}

/// Accumulates the BIN chunk and the glTF objects that point into it.
struct Builder {
    root: json::Root,
    bin: Vec<u8>,
}

impl Builder {
    /// Appends `bytes` as a vertex buffer view and returns its index.
    fn view(&mut self, bytes: &[u8]) -> json::Index<json::buffer::View> {
        let offset = self.bin.len();
        self.bin.extend_from_slice(bytes);
        self.root.push(json::buffer::View {
            buffer: json::Index::new(0),
            byte_length: USize64::from(bytes.len()),
            byte_offset: Some(USize64::from(offset)),
            byte_stride: None,
            name: None,
            target: Some(Valid(json::buffer::Target::ArrayBuffer)),
            extensions: None,
            extras: Default::default(),
        })
    }

    /// Adds a mesh of one primitive drawing `positions` with per-vertex `colors`.
    fn mesh(
        &mut self,
        name: String,
        mode: json::mesh::Mode,
        positions: &[[f32; 3]],
        colors: &[[u8; 3]],
    ) -> json::Index<json::Mesh> {
        let pos_bytes: Vec<u8> = positions
            .iter()
            .flatten()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let col_bytes: Vec<u8> = colors
            .iter()
            .flat_map(|c| [c[0], c[1], c[2], 255])
            .collect();
        let (mut min, mut max) = ([f32::INFINITY; 3], [f32::NEG_INFINITY; 3]);
        for p in positions {
            for a in 0..3 {
                min[a] = min[a].min(p[a]);
                max[a] = max[a].max(p[a]);
            }
        }
        let pos_view = self.view(&pos_bytes);
        let col_view = self.view(&col_bytes);
        let accessor =
            |view,
             component,
             type_,
             count: usize,
             normalized,
             bounds: Option<([f32; 3], [f32; 3])>| json::Accessor {
                buffer_view: Some(view),
                byte_offset: None,
                count: USize64::from(count),
                component_type: Valid(json::accessor::GenericComponentType(component)),
                extensions: None,
                extras: Default::default(),
                type_: Valid(type_),
                min: bounds.map(|b| json::Value::from(b.0.to_vec())),
                max: bounds.map(|b| json::Value::from(b.1.to_vec())),
                name: None,
                normalized,
                sparse: None,
            };
        use json::accessor::{ComponentType, Type};
        let pos = self.root.push(accessor(
            pos_view,
            ComponentType::F32,
            Type::Vec3,
            positions.len(),
            false,
            Some((min, max)),
        ));
        let col = self.root.push(accessor(
            col_view,
            ComponentType::U8,
            Type::Vec4,
            colors.len(),
            true,
            None,
        ));
        let primitive = json::mesh::Primitive {
            attributes: BTreeMap::from([
                (Valid(json::mesh::Semantic::Positions), pos),
                (Valid(json::mesh::Semantic::Colors(0)), col),
            ]),
            extensions: None,
            extras: Default::default(),
            indices: None,
            material: None,
            mode: Valid(mode),
            targets: None,
        };
        self.root.push(json::Mesh {
            extensions: None,
            extras: Default::default(),
            name: Some(name),
            primitives: vec![primitive],
            weights: None,
        })
    }
}

/// Encodes a scene as GLB bytes: 12-byte header, JSON chunk padded with spaces, BIN chunk
/// padded with zeros (both to 4 bytes).
pub fn encode_glb(scene: &GlbScene) -> Result<Vec<u8>> {
    let mut b = Builder {
        root: json::Root::default(),
        bin: Vec::new(),
    };
    b.root.asset.generator = Some(format!("da3-export {}", env!("CARGO_PKG_VERSION")));
    let mut meshes = Vec::new();
    if !scene.points.is_empty() {
        meshes.push(b.mesh(
            "points".into(),
            json::mesh::Mode::Points,
            &scene.points,
            &scene.colors,
        ));
    }
    for (i, cam) in scene.cameras.iter().enumerate() {
        let positions: Vec<[f32; 3]> = cam.segments.iter().flatten().copied().collect();
        let colors = vec![cam.color; positions.len()];
        meshes.push(b.mesh(
            format!("camera_{i:04}"),
            json::mesh::Mode::Lines,
            &positions,
            &colors,
        ));
    }
    let nodes: Vec<_> = meshes
        .iter()
        .map(|&mesh| {
            let name = b.root.meshes[mesh.value()].name.clone();
            b.root.push(json::Node {
                mesh: Some(mesh),
                name,
                ..Default::default()
            })
        })
        .collect();
    // An empty scene cannot be written (gltf-json drops an empty `nodes`, which its own
    // reader then requires): a file without geometry has no scene at all, which glTF allows.
    if !nodes.is_empty() {
        let scene_index = b.root.push(json::Scene {
            extensions: None,
            extras: Default::default(),
            name: Some("da3".into()),
            nodes,
        });
        b.root.scene = Some(scene_index);
    }
    if !b.bin.is_empty() {
        b.root.push(json::Buffer {
            byte_length: USize64::from(b.bin.len()),
            name: None,
            uri: None,
            extensions: None,
            extras: Default::default(),
        });
    }
    let mut json_bytes = json::serialize::to_vec(&b.root)
        .map_err(|e| ExportError::Input(format!("glTF JSON: {e}")))?;
    pad(&mut json_bytes, b' ');
    let mut bin = b.bin;
    pad(&mut bin, 0);
    let bin_chunk = if bin.is_empty() { 0 } else { 8 + bin.len() };
    let total = 12 + 8 + json_bytes.len() + bin_chunk;
    if u32::try_from(total).is_err() {
        return Err(ExportError::Input(format!(
            "the scene needs {total} bytes, more than a GLB file can hold (4 GiB); lower num_max_points"
        )));
    }
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(b"glTF");
    out.extend_from_slice(&2u32.to_le_bytes());
    out.extend_from_slice(&(total as u32).to_le_bytes());
    out.extend_from_slice(&(json_bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(b"JSON");
    out.extend_from_slice(&json_bytes);
    if !bin.is_empty() {
        out.extend_from_slice(&(bin.len() as u32).to_le_bytes());
        out.extend_from_slice(b"BIN\0");
        out.extend_from_slice(&bin);
    }
    Ok(out)
}

fn pad(bytes: &mut Vec<u8>, with: u8) {
    while !bytes.len().is_multiple_of(4) {
        bytes.push(with);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hsv_colours_match_the_reference() {
        // Python: _index_color_rgb(0, 2) -> h=0.25: sector 1 -> (q, v, p)
        // q = 0.95*(1-0.5*0.85) = 0.54625 -> 139; v -> 242; p = 0.1425 -> 36.
        assert_eq!(index_color(0, 2), [139, 242, 36]);
        // h = 0.75: sector 4 -> (t, p, v); t = 0.95*(1-0.5*0.85) -> 139.
        assert_eq!(index_color(1, 2), [139, 36, 242]);
    }

    #[test]
    fn threshold_is_clamped_by_both_percentiles() {
        let conf: Vec<f32> = (0..101).map(|i| 1.0 + i as f32 / 100.0).collect(); // 1.00 ..= 2.00
        let o = GlbOptions::default();
        assert!((conf_threshold(&conf, &o) - 1.4).abs() < 1e-6); // pct 40 = 1.4 > 1.05
        let low = GlbOptions {
            conf_thresh: 1.9999,
            ..o.clone()
        };
        assert!((conf_threshold(&conf, &low) - 1.9).abs() < 1e-6); // clamped to pct 90
        let flat = vec![1.0f32; 10];
        assert_eq!(conf_threshold(&flat, &o), 1.0); // max(1.05, 1) = 1.05, min(1.05, 1) = 1
        assert_eq!(scene_scale(&[[0.0; 3]]), 1.0);
    }
}
