//! `colmap`: a COLMAP sparse model in COLMAP's binary format (`cameras.bin`, `images.bin`,
//! `points3D.bin`, little-endian), like the reference's `export/colmap.py` (which uses
//! pycolmap), plus a reader for the same three files.
//!
//! - One PINHOLE camera per view (camera id = view + 1) whose intrinsics are rescaled from
//!   the processed size to the view's ORIGINAL image size (`fx, cx` by `orig_w / w`,
//!   `fy, cy` by `orig_h / h`; the reference's rule for its `*resize` preprocessing).
//! - One image per view (image id = view + 1) with the world-to-camera rotation as a unit
//!   quaternion `(w, x, y, z)` (COLMAP's order, `w ≥ 0`), the translation, and the name.
//! - One 3D point per pixel with finite depth > 0 and
//!   `conf >= percentile(conf, conf_thresh_percentile)`, in view-major, row-major order
//!   (point ids from 1), coloured from the processed image, with reprojection error -1
//!   ("unknown") and exactly one observation: its own pixel, scaled like the intrinsics
//!   (`x · orig_w / w`, `y · orig_h / h`, integer processed-pixel coordinates as in the
//!   reference). So the model holds no multi-view tracks (reference issue #194).
//!
//! Deliberate differences from the reference: it stores the scaled 2D coordinates in an
//! int32 array, truncating them when `orig / processed` is not an integer; this port keeps
//! them exact (they reproject onto their points with zero error). And the reference selects
//! 3D points with `conf` plus valid depth but 2D points with `conf` alone, which pairs them
//! wrongly when some depth is not positive; this port uses one mask for both.
//!
//! [`export_colmap`] writes the files as it unprojects, view by view, so its memory does
//! not grow with the number of points (the files do: about 100 bytes per point).
//!
//! COLMAP ≥ 3.12 also has `rigs.bin` and `frames.bin`; they are not written. Older readers
//! know only the three files, and pycolmap 4.2 reads a model without them (the tests check
//! this when pycolmap is installed), creating one trivial rig and frame per camera and image.

use std::io::Write;
use std::path::{Path, PathBuf};

use da3::Prediction;

use crate::atomic::{create_dir, write_atomic};
use crate::error::{ExportError, Result};
use crate::geometry::{conf_filter, for_each_point, for_each_point_of_view, Mat3, Point};
use crate::image::{check_inputs_with_cameras, ImageRgb8};

/// File names of the model inside the export directory.
pub const CAMERAS_BIN: &str = "cameras.bin";
/// See [`CAMERAS_BIN`].
pub const IMAGES_BIN: &str = "images.bin";
/// See [`CAMERAS_BIN`].
pub const POINTS3D_BIN: &str = "points3D.bin";

/// COLMAP's model id of PINHOLE (`fx, fy, cx, cy`).
pub const PINHOLE: i32 = 1;

/// Options of [`export_colmap`].
#[derive(Debug, Clone, PartialEq)]
pub struct ColmapOptions {
    /// Keep pixels whose confidence is at least this percentile (0–100) of all confidences.
    pub conf_thresh_percentile: f64,
}

impl Default for ColmapOptions {
    /// The reference's 40th percentile.
    fn default() -> Self {
        Self {
            conf_thresh_percentile: 40.0,
        }
    }
}

/// What the COLMAP export needs to know about each view's source image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceImage {
    /// Image name stored in `images.bin` (the reference uses the file's base name).
    pub name: String,
    /// Width of the original image in pixels.
    pub width: usize,
    /// Height of the original image in pixels.
    pub height: usize,
}

/// A camera of `cameras.bin`.
#[derive(Debug, Clone, PartialEq)]
pub struct Camera {
    /// Camera id (≥ 1).
    pub id: u32,
    /// COLMAP camera model id ([`PINHOLE`] for what this crate writes).
    pub model_id: i32,
    /// Image width in pixels.
    pub width: u64,
    /// Image height in pixels.
    pub height: u64,
    /// Model parameters (`fx, fy, cx, cy` for PINHOLE).
    pub params: Vec<f64>,
}

/// A 2D observation of an [`Image`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point2D {
    /// Pixel coordinates in the original image.
    pub xy: [f64; 2],
    /// The 3D point it observes, if any.
    pub point3d_id: Option<u64>,
}

/// An image of `images.bin`.
#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    /// Image id (≥ 1).
    pub id: u32,
    /// World-to-camera rotation as a unit quaternion `(w, x, y, z)`.
    pub qvec: [f64; 4],
    /// World-to-camera translation.
    pub tvec: [f64; 3],
    /// Id of its camera.
    pub camera_id: u32,
    /// File name.
    pub name: String,
    /// Its 2D points.
    pub points2d: Vec<Point2D>,
}

/// One element of a [`Point3D`]'s track.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrackElement {
    /// Id of the observing image.
    pub image_id: u32,
    /// Index of the observation in that image's `points2d`.
    pub point2d_idx: u32,
}

/// A point of `points3D.bin`.
#[derive(Debug, Clone, PartialEq)]
pub struct Point3D {
    /// Point id (≥ 1).
    pub id: u64,
    /// World coordinates.
    pub xyz: [f64; 3],
    /// Colour.
    pub rgb: [u8; 3],
    /// Mean reprojection error (-1: unknown).
    pub error: f64,
    /// Observations.
    pub track: Vec<TrackElement>,
}

/// A whole sparse model, in file order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Model {
    /// Contents of `cameras.bin`.
    pub cameras: Vec<Camera>,
    /// Contents of `images.bin`.
    pub images: Vec<Image>,
    /// Contents of `points3D.bin`.
    pub points: Vec<Point3D>,
}

/// Paths of the files [`export_colmap`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColmapFiles {
    /// `cameras.bin`.
    pub cameras: PathBuf,
    /// `images.bin`.
    pub images: PathBuf,
    /// `points3D.bin`.
    pub points: PathBuf,
}

/// Builds the model of the COLMAP export (see the module docs); `sources` has one entry per
/// view. It holds every point in memory (over 100 bytes per kept pixel of the scene);
/// [`export_colmap`] writes the same files without storing the points.
pub fn build_model(
    pred: &Prediction,
    images: &[ImageRgb8],
    sources: &[SourceImage],
    options: &ColmapOptions,
) -> Result<Model> {
    let mut model = model_without_points(pred, images, sources)?;
    let keep = conf_filter(pred, options.conf_thresh_percentile);
    for_each_point(pred, images, keep, |pt| {
        let id = model.points.len() as u64 + 1;
        let image = &mut model.images[pt.view];
        let (point2d, point3d) = records(pred, &sources[pt.view], image.id, image.points2d.len(), id, &pt);
        image.points2d.push(point2d);
        model.points.push(point3d);
    })?;
    Ok(model)
}

/// The model's cameras and images, with no 2D or 3D points, after checking the inputs.
fn model_without_points(pred: &Prediction, images: &[ImageRgb8], sources: &[SourceImage]) -> Result<Model> {
    check_inputs_with_cameras(pred, images, "colmap")?;
    if sources.len() != pred.views {
        return Err(ExportError::Input(format!(
            "{} source images for {} predicted views",
            sources.len(),
            pred.views
        )));
    }
    if u32::try_from(pred.views).is_err() || u32::try_from(pred.height * pred.width).is_err() {
        return Err(ExportError::Input("too many views or pixels per view for COLMAP's 32-bit ids".into()));
    }
    for (i, s) in sources.iter().enumerate() {
        if s.width == 0 || s.height == 0 {
            return Err(ExportError::Input(format!(
                "source image {i} ({}) has size {}x{}",
                s.name, s.width, s.height
            )));
        }
        if s.name.contains('\0') {
            return Err(ExportError::Input(format!(
                "source image {i} has a name with a NUL byte: {:?}",
                s.name
            )));
        }
    }
    let mut model = Model::default();
    for (v, src) in sources.iter().enumerate() {
        let (sx, sy) = (
            src.width as f64 / pred.width as f64,
            src.height as f64 / pred.height as f64,
        );
        let k = pred.intrinsics[v].map(|r| r.map(f64::from));
        let id = v as u32 + 1;
        model.cameras.push(Camera {
            id,
            model_id: PINHOLE,
            width: src.width as u64,
            height: src.height as u64,
            params: vec![k[0][0] * sx, k[1][1] * sy, k[0][2] * sx, k[1][2] * sy],
        });
        let e = pred.extrinsics[v].map(|r| r.map(f64::from));
        let rotation: Mat3 = std::array::from_fn(|r| [e[r][0], e[r][1], e[r][2]]);
        model.images.push(Image {
            id,
            qvec: rotation_to_quaternion(&rotation),
            tvec: [e[0][3], e[1][3], e[2][3]],
            camera_id: id,
            name: src.name.clone(),
            points2d: Vec::new(),
        });
    }
    Ok(model)
}

/// The 2D observation (index `index` of image `image_id`) and the 3D point `id` of one
/// unprojected pixel.
fn records(
    pred: &Prediction,
    src: &SourceImage,
    image_id: u32,
    index: usize,
    id: u64,
    pt: &Point,
) -> (Point2D, Point3D) {
    let point2d = Point2D {
        xy: [
            pt.x as f64 * src.width as f64 / pred.width as f64,
            pt.y as f64 * src.height as f64 / pred.height as f64,
        ],
        point3d_id: Some(id),
    };
    let point3d = Point3D {
        id,
        xyz: pt.world.map(f64::from),
        rgb: pt.color,
        error: -1.0,
        // Below 2^32: checked by `model_without_points` (at most H·W points per view).
        track: vec![TrackElement { image_id, point2d_idx: index as u32 }],
    };
    (point2d, point3d)
}

/// Writes the model of the COLMAP export into `dir` (created if needed): the same files
/// as `write_model(dir, &build_model(..))`, without holding the points. A first pass over
/// the pixels counts each view's points; then `points3D.bin` and `images.bin` are written
/// view by view, unprojecting again.
pub fn export_colmap(
    dir: &Path,
    pred: &Prediction,
    images: &[ImageRgb8],
    sources: &[SourceImage],
    options: &ColmapOptions,
) -> Result<ColmapFiles> {
    let model = model_without_points(pred, images, sources)?;
    let keep = conf_filter(pred, options.conf_thresh_percentile);
    let mut per_view = vec![0u64; pred.views];
    for_each_point(pred, images, &keep, |pt| per_view[pt.view] += 1)?;
    // Id of the first point of each view.
    let first_ids: Vec<u64> = per_view.iter().scan(1u64, |next, &n| Some(std::mem::replace(next, *next + n))).collect();
    // Calls `write` with the records of every point of view `v`, stopping at the first error.
    let view_records = |v: usize, write: &mut dyn FnMut(Point2D, Point3D) -> std::io::Result<()>| -> std::io::Result<()> {
        let (mut index, mut result) = (0usize, Ok(()));
        let image_id = model.images[v].id;
        for_each_point_of_view(pred, &images[v], v, &keep, &mut |pt| {
            if result.is_ok() {
                let (p2, p3) = records(pred, &sources[v], image_id, index, first_ids[v] + index as u64, &pt);
                result = write(p2, p3);
            }
            index += 1;
        })
        .map_err(std::io::Error::other)?;
        result
    };
    let files = write_files(dir, &model.cameras, |w| {
        w.write_all(&(model.images.len() as u64).to_le_bytes())?;
        for (v, im) in model.images.iter().enumerate() {
            write_image_header(w, im, per_view[v])?;
            view_records(v, &mut |p2, _| write_point2d(w, &p2))?;
        }
        Ok(())
    }, |w| {
        w.write_all(&per_view.iter().sum::<u64>().to_le_bytes())?;
        (0..pred.views).try_for_each(|v| view_records(v, &mut |_, p3| write_point3d(w, &p3)))
    })?;
    Ok(files)
}

/// Writes `cameras.bin`, `images.bin` and `points3D.bin` of `model` into `dir` (created if
/// needed), each atomically.
pub fn write_model(dir: &Path, model: &Model) -> Result<ColmapFiles> {
    write_files(dir, &model.cameras, |w| {
        w.write_all(&(model.images.len() as u64).to_le_bytes())?;
        for im in &model.images {
            write_image_header(w, im, im.points2d.len() as u64)?;
            im.points2d.iter().try_for_each(|p| write_point2d(w, p))?;
        }
        Ok(())
    }, |w| {
        w.write_all(&(model.points.len() as u64).to_le_bytes())?;
        model.points.iter().try_for_each(|p| write_point3d(w, p))
    })
}

/// Creates `dir` and writes the three files atomically: `cameras.bin` from `cameras`, the
/// contents of `images.bin` and `points3D.bin` from the two writers.
fn write_files(
    dir: &Path,
    cameras: &[Camera],
    images: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
    points: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<ColmapFiles> {
    create_dir(dir)?;
    let files = ColmapFiles {
        cameras: dir.join(CAMERAS_BIN),
        images: dir.join(IMAGES_BIN),
        points: dir.join(POINTS3D_BIN),
    };
    write_atomic(&files.cameras, |w| {
        w.write_all(&(cameras.len() as u64).to_le_bytes())?;
        for c in cameras {
            w.write_all(&c.id.to_le_bytes())?;
            w.write_all(&c.model_id.to_le_bytes())?;
            w.write_all(&c.width.to_le_bytes())?;
            w.write_all(&c.height.to_le_bytes())?;
            c.params
                .iter()
                .try_for_each(|p| w.write_all(&p.to_le_bytes()))?;
        }
        Ok(())
    })?;
    write_atomic(&files.images, |w| images(w))?;
    write_atomic(&files.points, |w| points(w))?;
    Ok(files)
}

/// An image record of `images.bin` up to its number of 2D points (`count`).
fn write_image_header(w: &mut dyn Write, im: &Image, count: u64) -> std::io::Result<()> {
    w.write_all(&im.id.to_le_bytes())?;
    im.qvec
        .iter()
        .chain(&im.tvec)
        .try_for_each(|v| w.write_all(&v.to_le_bytes()))?;
    w.write_all(&im.camera_id.to_le_bytes())?;
    w.write_all(im.name.as_bytes())?;
    w.write_all(&[0])?;
    w.write_all(&count.to_le_bytes())
}

/// One 2D point of `images.bin`.
fn write_point2d(w: &mut dyn Write, p: &Point2D) -> std::io::Result<()> {
    w.write_all(&p.xy[0].to_le_bytes())?;
    w.write_all(&p.xy[1].to_le_bytes())?;
    w.write_all(&p.point3d_id.unwrap_or(u64::MAX).to_le_bytes())
}

/// One point record of `points3D.bin`.
fn write_point3d(w: &mut dyn Write, p: &Point3D) -> std::io::Result<()> {
    w.write_all(&p.id.to_le_bytes())?;
    p.xyz
        .iter()
        .try_for_each(|v| w.write_all(&v.to_le_bytes()))?;
    w.write_all(&p.rgb)?;
    w.write_all(&p.error.to_le_bytes())?;
    w.write_all(&(p.track.len() as u64).to_le_bytes())?;
    for t in &p.track {
        w.write_all(&t.image_id.to_le_bytes())?;
        w.write_all(&t.point2d_idx.to_le_bytes())?;
    }
    Ok(())
}

/// The unit quaternion `(w, x, y, z)` with `w ≥ 0` of a rotation matrix (Shepperd's
/// method, then normalized; a matrix that is not quite orthonormal gives a nearby rotation).
pub fn rotation_to_quaternion(r: &Mat3) -> [f64; 4] {
    let trace = r[0][0] + r[1][1] + r[2][2];
    let q = if trace > 0.0 {
        let s = (trace + 1.0).sqrt() * 2.0;
        [
            s / 4.0,
            (r[2][1] - r[1][2]) / s,
            (r[0][2] - r[2][0]) / s,
            (r[1][0] - r[0][1]) / s,
        ]
    } else if r[0][0] > r[1][1] && r[0][0] > r[2][2] {
        let s = (1.0 + r[0][0] - r[1][1] - r[2][2]).sqrt() * 2.0;
        [
            (r[2][1] - r[1][2]) / s,
            s / 4.0,
            (r[0][1] + r[1][0]) / s,
            (r[0][2] + r[2][0]) / s,
        ]
    } else if r[1][1] > r[2][2] {
        let s = (1.0 + r[1][1] - r[0][0] - r[2][2]).sqrt() * 2.0;
        [
            (r[0][2] - r[2][0]) / s,
            (r[0][1] + r[1][0]) / s,
            s / 4.0,
            (r[1][2] + r[2][1]) / s,
        ]
    } else {
        let s = (1.0 + r[2][2] - r[0][0] - r[1][1]).sqrt() * 2.0;
        [
            (r[1][0] - r[0][1]) / s,
            (r[0][2] + r[2][0]) / s,
            (r[1][2] + r[2][1]) / s,
            s / 4.0,
        ]
    };
    let norm = q.iter().map(|v| v * v).sum::<f64>().sqrt();
    let sign = if q[0] < 0.0 { -1.0 } else { 1.0 };
    q.map(|v| sign * v / norm)
}

/// The rotation matrix of a unit quaternion `(w, x, y, z)` (COLMAP's `qvec2rotmat`).
pub fn quaternion_to_rotation(q: &[f64; 4]) -> Mat3 {
    let [w, x, y, z] = *q;
    [
        [
            1.0 - 2.0 * (y * y + z * z),
            2.0 * (x * y - w * z),
            2.0 * (x * z + w * y),
        ],
        [
            2.0 * (x * y + w * z),
            1.0 - 2.0 * (x * x + z * z),
            2.0 * (y * z - w * x),
        ],
        [
            2.0 * (x * z - w * y),
            2.0 * (y * z + w * x),
            1.0 - 2.0 * (x * x + y * y),
        ],
    ]
}

/// Reads `cameras.bin`, `images.bin` and `points3D.bin` from `dir`.
pub fn read_model(dir: &Path) -> Result<Model> {
    Ok(Model {
        cameras: read_cameras(&dir.join(CAMERAS_BIN))?,
        images: read_images(&dir.join(IMAGES_BIN))?,
        points: read_points3d(&dir.join(POINTS3D_BIN))?,
    })
}

/// Number of parameters of COLMAP camera model `id` (models 0–10), or `None` if unknown.
pub fn camera_model_num_params(id: i32) -> Option<usize> {
    Some(match id {
        0 => 3,     // SIMPLE_PINHOLE
        1 => 4,     // PINHOLE
        2 => 4,     // SIMPLE_RADIAL
        3 => 5,     // RADIAL
        4 | 5 => 8, // OPENCV, OPENCV_FISHEYE
        6 => 12,    // FULL_OPENCV
        7 => 5,     // FOV
        8 => 4,     // SIMPLE_RADIAL_FISHEYE
        9 => 5,     // RADIAL_FISHEYE
        10 => 12,   // THIN_PRISM_FISHEYE
        _ => return None,
    })
}

/// Reads a `cameras.bin` file.
pub fn read_cameras(path: &Path) -> Result<Vec<Camera>> {
    let bytes = read(path)?;
    let mut r = Reader {
        bytes: &bytes,
        pos: 0,
        path,
    };
    let count = r.u64()?;
    let mut cameras = Vec::new();
    for _ in 0..count {
        let id = r.u32()?;
        let model_id = r.i32()?;
        let (width, height) = (r.u64()?, r.u64()?);
        let n = camera_model_num_params(model_id)
            .ok_or_else(|| r.malformed(format!("unknown camera model id {model_id}")))?;
        let params = (0..n).map(|_| r.f64()).collect::<Result<_>>()?;
        cameras.push(Camera {
            id,
            model_id,
            width,
            height,
            params,
        });
    }
    r.finish()?;
    Ok(cameras)
}

/// Reads an `images.bin` file.
pub fn read_images(path: &Path) -> Result<Vec<Image>> {
    let bytes = read(path)?;
    let mut r = Reader {
        bytes: &bytes,
        pos: 0,
        path,
    };
    let count = r.u64()?;
    let mut images = Vec::new();
    for _ in 0..count {
        let id = r.u32()?;
        let qvec = [r.f64()?, r.f64()?, r.f64()?, r.f64()?];
        let tvec = [r.f64()?, r.f64()?, r.f64()?];
        let camera_id = r.u32()?;
        let name = r.c_string()?;
        let n = r.u64()?;
        let mut points2d = Vec::new();
        for _ in 0..n {
            let xy = [r.f64()?, r.f64()?];
            let id = r.u64()?;
            points2d.push(Point2D {
                xy,
                point3d_id: (id != u64::MAX).then_some(id),
            });
        }
        images.push(Image {
            id,
            qvec,
            tvec,
            camera_id,
            name,
            points2d,
        });
    }
    r.finish()?;
    Ok(images)
}

/// Reads a `points3D.bin` file.
pub fn read_points3d(path: &Path) -> Result<Vec<Point3D>> {
    let bytes = read(path)?;
    let mut r = Reader {
        bytes: &bytes,
        pos: 0,
        path,
    };
    let count = r.u64()?;
    let mut points = Vec::new();
    for _ in 0..count {
        let id = r.u64()?;
        let xyz = [r.f64()?, r.f64()?, r.f64()?];
        let rgb = [r.u8()?, r.u8()?, r.u8()?];
        let error = r.f64()?;
        let n = r.u64()?;
        let mut track = Vec::new();
        for _ in 0..n {
            track.push(TrackElement {
                image_id: r.u32()?,
                point2d_idx: r.u32()?,
            });
        }
        points.push(Point3D {
            id,
            xyz,
            rgb,
            error,
            track,
        });
    }
    r.finish()?;
    Ok(points)
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| ExportError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// A little-endian cursor whose errors name the file.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    path: &'a Path,
}

impl Reader<'_> {
    fn malformed(&self, message: String) -> ExportError {
        ExportError::Malformed {
            path: self.path.to_path_buf(),
            message,
        }
    }
    fn take<const N: usize>(&mut self) -> Result<[u8; N]> {
        let end = self.pos.checked_add(N).filter(|&e| e <= self.bytes.len());
        let Some(end) = end else {
            return Err(self.malformed(format!(
                "truncated: {N} more bytes needed at offset {}",
                self.pos
            )));
        };
        let out = self.bytes[self.pos..end]
            .try_into()
            .expect("slice of length N");
        self.pos = end;
        Ok(out)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take::<1>()?[0])
    }
    fn u32(&mut self) -> Result<u32> {
        self.take().map(u32::from_le_bytes)
    }
    fn i32(&mut self) -> Result<i32> {
        self.take().map(i32::from_le_bytes)
    }
    fn u64(&mut self) -> Result<u64> {
        self.take().map(u64::from_le_bytes)
    }
    fn f64(&mut self) -> Result<f64> {
        self.take().map(f64::from_le_bytes)
    }
    fn c_string(&mut self) -> Result<String> {
        let rest = &self.bytes[self.pos..];
        let len = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or_else(|| self.malformed("unterminated image name".into()))?;
        let name = String::from_utf8(rest[..len].to_vec())
            .map_err(|_| self.malformed("image name is not UTF-8".into()))?;
        self.pos += len + 1;
        Ok(name)
    }
    fn finish(&self) -> Result<()> {
        if self.pos != self.bytes.len() {
            return Err(self.malformed(format!("{} trailing bytes", self.bytes.len() - self.pos)));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quaternions_round_trip_in_every_branch() {
        let cases: [[f64; 4]; 5] = [
            [1.0, 0.0, 0.0, 0.0],
            [0.0, 1.0, 0.0, 0.0], // 180° about x: trace -1, x branch
            [0.0, 0.0, 1.0, 0.0],
            [0.0, 0.0, 0.0, 1.0],
            [0.5, -0.5, 0.5, 0.5],
        ];
        for q in cases {
            let back = rotation_to_quaternion(&quaternion_to_rotation(&q));
            let same = q.iter().zip(&back).all(|(a, b)| (a - b).abs() < 1e-12);
            let opposite = q.iter().zip(&back).all(|(a, b)| (a + b).abs() < 1e-12);
            assert!(same || (q[0] == 0.0 && opposite), "{q:?} -> {back:?}");
            assert!(back[0] >= 0.0);
        }
        // 90° about z: (cos 45°, 0, 0, sin 45°).
        let rz = [[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]];
        let q = rotation_to_quaternion(&rz);
        let h = std::f64::consts::FRAC_1_SQRT_2;
        assert!(
            (q[0] - h).abs() < 1e-12
                && q[1].abs() < 1e-12
                && q[2].abs() < 1e-12
                && (q[3] - h).abs() < 1e-12
        );
    }
}
