//! World-space 3D Gaussians from the GS head: the reference's `GaussianAdapter`
//! (`model/gs_adapter.py`, configured as in `configs/da3-giant.yaml`: SH degree 2, SH
//! predicted (not colour), depth and xy offsets predicted, scales in [1e-5, 30]).
//!
//! Runs on the **host**, in f64, per view and pixel. Why not on the device: the work is
//! per-pixel elementwise plus a handful of 3×3 products (a few hundred flops per Gaussian,
//! negligible beside the network); the result must reach the host anyway (as
//! [`crate::Prediction`] arrays and for the PLY export), and the raw head output is the same
//! size as the Gaussians, so computing on the device saves no transfer; the reference's
//! `mat_to_quat` picks one of four candidates per Gaussian, a branch that is plain code here
//! and awkward as tensor masks; and the SH rotation needs one 9×9 matrix per **view**, built
//! in closed form ([`sh_rotation`]). Host code also gives the same numbers on every backend.
//!
//! Per pixel (x, y) of view v, with the raw channels `r[0..37]` of the GS head:
//!
//! 1. `d = depth + r[36]` (the depth offset is the **last** channel, taken first);
//! 2. `xy = ((x + ½ + r[0]) / W, (y + ½ + r[1]) / H)`; the ray `K̂⁻¹ (xy, 1)` (K̂ = K with its
//!    rows divided by W and H) is normalized, rotated to the world by the predicted
//!    camera-to-world pose, and the mean is `centre + d · ray` (d is a distance along the
//!    unit ray, as in the reference);
//! 3. scales `(1e-5 + (30 − 1e-5)·sigmoid(r[2..5])) · d · 0.1 · Σᵢ (K̂[:2,:2]⁻¹ (1/W, 1/H))ᵢ`;
//! 4. rotation from `r[5..9] / (|·| + 1e-8)` by [`quat::camera_to_world_quat`];
//! 5. SH `r[9..36]` as [3 colours][9], times the mask (1 for l = 0, 0.1·0.25ˡ for l ≥ 1),
//!    rotated to the world by [`sh_rotation::wigner_d`] of the camera-to-world rotation;
//! 6. opacity = the head's density (`map_pdf_to_opacity` is the identity at inference).
//!
//! With input cameras (pose-conditioned inference) the reference rescales the predicted frame
//! first: [`pose_scale`] is the Umeyama scale from the predicted camera centres to the
//! normalized input ones, clamped to [1/3, 3]; camera centres and `d` are multiplied by it
//! ([`AdapterInput::pose_scale`]). Without input cameras it is 1.
//!
//! [`frame`] moves Gaussians by a similarity and concatenates views, for chunked runs
//! ([`crate::schedule::stitch`]).

pub mod frame;
pub mod quat;
pub mod sh_rotation;

use crate::Da3Error;
pub use sh_rotation::SH_COEFFS;

/// Raw channels per pixel that the adapter reads (the GS head's 38 minus the density).
pub const RAW_CHANNELS: usize = 37;

/// Smallest and largest scale before the depth and pixel-size factors.
const SCALE_MIN: f64 = 1e-5;
const SCALE_MAX: f64 = 30.0;

/// Multiplier of the per-pixel footprint in the scale formula (`get_scale_multiplier`).
const SCALE_MULTIPLIER: f64 = 0.1;

/// Epsilon added to the quaternion norm.
const QUAT_EPS: f64 = 1e-8;

/// 3D Gaussians in world space (the predicted cameras' frame), one per input pixel,
/// flattened view-major as `V·H·W` (index `(v·H + y)·W + x`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Gaussians {
    /// Number of views V.
    pub views: usize,
    /// Height H of each view.
    pub height: usize,
    /// Width W of each view.
    pub width: usize,
    /// Centres, [N, 3].
    pub means: Vec<[f32; 3]>,
    /// Standard deviations along the local axes (linear, not log), [N, 3].
    pub scales: Vec<[f32; 3]>,
    /// Orientations as 3DGS renderers read them, (w, x, y, z) (see
    /// [`quat::camera_to_world_quat`] for how the reference produces them), [N, 4].
    pub rotations: Vec<[f32; 4]>,
    /// Spherical-harmonic coefficients of degree ≤ 2 per colour channel, [N, 3 (RGB), 9];
    /// coefficient 0 is the DC term.
    pub harmonics: Vec<[[f32; SH_COEFFS]; 3]>,
    /// Opacities in (0, 1) (not inverse-sigmoid), [N].
    pub opacities: Vec<f32>,
}

impl Gaussians {
    /// Number of Gaussians, V·H·W.
    pub fn len(&self) -> usize {
        self.means.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.means.is_empty()
    }
}

/// What the adapter reads: the GS head's output and the depth and cameras of the same pass,
/// as host arrays of V views of H×W pixels.
#[derive(Debug, Clone, Copy)]
pub struct AdapterInput<'a> {
    /// Number of views V.
    pub views: usize,
    /// Height H.
    pub height: usize,
    /// Width W.
    pub width: usize,
    /// Raw GS parameters, channels last: [V, H, W, 37].
    pub raw: &'a [f32],
    /// Density (= opacity), [V, H, W].
    pub density: &'a [f32],
    /// The network's depth, [V, H, W].
    pub depth: &'a [f32],
    /// Predicted world-to-camera `[R | t]` per view.
    pub extrinsics: &'a [[[f32; 4]; 3]],
    /// Predicted intrinsics in pixels per view.
    pub intrinsics: &'a [[[f32; 3]; 3]],
    /// Factor on the camera centres and depths: [`pose_scale`] with input cameras, else 1.
    pub pose_scale: f64,
}

/// Bounds of [`pose_scale`] (`gs_adapter.py`: `torch.clamp(pose_scales, 1/3, 3)`).
const POSE_SCALE_RANGE: (f64, f64) = (1.0 / 3.0, 3.0);

/// The reference's GS pose-scale alignment (`batch_align_poses_umeyama(gt, pred)` in
/// `GaussianAdapter.forward`): the Umeyama Sim(3) scale taking the predicted camera centres
/// onto the `input` ones (the user's cameras as normalized for CameraEnc), clamped to
/// [1/3, 3]. Where Umeyama has no answer (1–2 views, collinear centres) the reference catches
/// evo's exception and uses 1; so do we.
pub fn pose_scale(input: &[crate::camera_enc::Mat4], predicted: &[[[f32; 4]; 3]]) -> f64 {
    let centres = |ext: &[[f64; 4]; 3]| crate::align::camera_centre(ext);
    let target: Vec<[f64; 3]> = input.iter().map(|m| centres(&[m[0], m[1], m[2]])).collect();
    let source: Vec<[f64; 3]> = predicted.iter().map(|e| centres(&e.map(|r| r.map(f64::from)))).collect();
    match crate::align::umeyama(&source, &target) {
        Ok(sim3) => sim3.scale.clamp(POSE_SCALE_RANGE.0, POSE_SCALE_RANGE.1),
        Err(crate::align::Degenerate) => 1.0,
    }
}

/// The GaussianAdapter: world-space Gaussians from the GS head's output (see the module docs).
pub fn adapt(input: &AdapterInput<'_>) -> Result<Gaussians, Da3Error> {
    let (v, h, w) = (input.views, input.height, input.width);
    let n = v * h * w;
    let sizes = [
        ("raw", input.raw.len(), n * RAW_CHANNELS),
        ("density", input.density.len(), n),
        ("depth", input.depth.len(), n),
        ("extrinsics", input.extrinsics.len(), v),
        ("intrinsics", input.intrinsics.len(), v),
    ];
    if let Some((name, got, want)) = sizes.iter().find(|(_, got, want)| got != want) {
        return Err(Da3Error::Input(format!(
            "Gaussian adapter: {got} {name} values for {v} views of {w}x{h} (expected {want})"
        )));
    }
    let mut out = Gaussians {
        views: v,
        height: h,
        width: w,
        means: Vec::with_capacity(n),
        scales: Vec::with_capacity(n),
        rotations: Vec::with_capacity(n),
        harmonics: Vec::with_capacity(n),
        opacities: input.density.to_vec(),
    };
    for view in 0..v {
        let cam = ViewGeometry::new(&input.extrinsics[view], &input.intrinsics[view], w, h, input.pose_scale)?;
        for y in 0..h {
            for x in 0..w {
                let p = (view * h + y) * w + x;
                let raw = &input.raw[p * RAW_CHANNELS..(p + 1) * RAW_CHANNELS];
                let g = cam.gaussian(raw, input.depth[p] as f64, x, y);
                out.means.push(g.mean);
                out.scales.push(g.scale);
                out.rotations.push(g.rotation);
                out.harmonics.push(g.harmonics);
            }
        }
    }
    Ok(out)
}

/// One Gaussian without its opacity.
struct Gaussian {
    mean: [f32; 3],
    scale: [f32; 3],
    rotation: [f32; 4],
    harmonics: [[f32; SH_COEFFS]; 3],
}

/// Per-view quantities shared by all pixels of the view.
struct ViewGeometry {
    /// Camera-to-world rotation.
    rotation: sh_rotation::Mat3,
    /// Camera centre in the world.
    centre: [f64; 3],
    /// Inverse of the intrinsics normalized by (W, H).
    k_inv: sh_rotation::Mat3,
    /// The footprint factor of the scales.
    scale_multiplier: f64,
    /// The SH rotation to the world.
    wigner: [[f64; SH_COEFFS]; SH_COEFFS],
    /// [`AdapterInput::pose_scale`], applied to the depths (the centre already has it).
    pose_scale: f64,
    width: f64,
    height: f64,
}

impl ViewGeometry {
    fn new(w2c: &[[f32; 4]; 3], k: &[[f32; 3]; 3], width: usize, height: usize, pose_scale: f64) -> Result<Self, Da3Error> {
        let (wf, hf) = (width as f64, height as f64);
        // c2w = [Rᵀ | −Rᵀ t] (`affine_inverse`).
        let rotation: sh_rotation::Mat3 = std::array::from_fn(|i| std::array::from_fn(|j| w2c[j][i] as f64));
        let centre = std::array::from_fn(|i| -pose_scale * (0..3).map(|k| rotation[i][k] * w2c[k][3] as f64).sum::<f64>());
        let mut k_norm: sh_rotation::Mat3 = std::array::from_fn(|i| std::array::from_fn(|j| k[i][j] as f64));
        for j in 0..3 {
            k_norm[0][j] /= wf;
            k_norm[1][j] /= hf;
        }
        let k_inv = invert3(&k_norm)
            .ok_or_else(|| Da3Error::Input(format!("Gaussian adapter: singular intrinsics {k:?}")))?;
        // 0.1 · Σᵢ (K̂[:2,:2]⁻¹ · (1/W, 1/H))ᵢ
        let [[a, b], [c, d]] = [[k_norm[0][0], k_norm[0][1]], [k_norm[1][0], k_norm[1][1]]];
        let det = a * d - b * c;
        if det == 0.0 || !det.is_finite() {
            return Err(Da3Error::Input(format!("Gaussian adapter: singular focal block in intrinsics {k:?}")));
        }
        let (px, py) = (1.0 / wf, 1.0 / hf);
        let footprint = (d * px - b * py) / det + (-c * px + a * py) / det;
        Ok(Self {
            rotation,
            centre,
            k_inv,
            scale_multiplier: SCALE_MULTIPLIER * footprint,
            wigner: sh_rotation::wigner_d(&rotation),
            pose_scale,
            width: wf,
            height: hf,
        })
    }

    /// The Gaussian of pixel (x, y) with raw channels `raw` and network depth `depth`.
    fn gaussian(&self, raw: &[f32], depth: f64, x: usize, y: usize) -> Gaussian {
        let r = |i: usize| raw[i] as f64;
        let dist = (depth + r(RAW_CHANNELS - 1)) * self.pose_scale;
        // Mean: along the unit ray through the offset pixel centre.
        let u = (x as f64 + 0.5) / self.width + r(0) / self.width;
        let v = (y as f64 + 0.5) / self.height + r(1) / self.height;
        let cam_dir: [f64; 3] = std::array::from_fn(|i| self.k_inv[i][0] * u + self.k_inv[i][1] * v + self.k_inv[i][2]);
        let norm = cam_dir.iter().map(|c| c * c).sum::<f64>().sqrt();
        let mean = std::array::from_fn(|i| {
            let dir: f64 = (0..3).map(|k| self.rotation[i][k] * cam_dir[k]).sum::<f64>() / norm;
            (self.centre[i] + dir * dist) as f32
        });
        // Scales.
        let scale = std::array::from_fn(|i| {
            let s = SCALE_MIN + (SCALE_MAX - SCALE_MIN) * sigmoid(r(2 + i));
            (s * dist * self.scale_multiplier) as f32
        });
        // Rotation.
        let q: [f64; 4] = std::array::from_fn(|i| r(5 + i));
        let qn = q.iter().map(|c| c * c).sum::<f64>().sqrt() + QUAT_EPS;
        let rotation = quat::camera_to_world_quat(q.map(|c| c / qn), &self.rotation).map(|c| c as f32);
        // Spherical harmonics: mask, then rotate each colour channel.
        let harmonics = std::array::from_fn(|colour| {
            let c: [f64; SH_COEFFS] = std::array::from_fn(|k| r(9 + colour * SH_COEFFS + k) * sh_mask(k));
            sh_rotation::rotate(&self.wigner, &c).map(|v| v as f32)
        });
        Gaussian { mean, scale, rotation, harmonics }
    }
}

/// The SH mask of coefficient `k`: 1 for degree 0, `0.1 · 0.25^l` for degree l ≥ 1.
pub fn sh_mask(k: usize) -> f64 {
    let degree = (k as f64).sqrt().floor() as i32;
    if degree == 0 {
        1.0
    } else {
        0.1 * 0.25f64.powi(degree)
    }
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Inverse of a 3×3 matrix by cofactors; `None` when singular.
fn invert3(m: &sh_rotation::Mat3) -> Option<sh_rotation::Mat3> {
    let c = |r0: usize, r1: usize, c0: usize, c1: usize| m[r0][c0] * m[r1][c1] - m[r0][c1] * m[r1][c0];
    let cof = [
        [c(1, 2, 1, 2), -c(1, 2, 0, 2), c(1, 2, 0, 1)],
        [-c(0, 2, 1, 2), c(0, 2, 0, 2), -c(0, 2, 0, 1)],
        [c(0, 1, 1, 2), -c(0, 1, 0, 2), c(0, 1, 0, 1)],
    ];
    let det = m[0][0] * cof[0][0] + m[0][1] * cof[0][1] + m[0][2] * cof[0][2];
    if det == 0.0 || !det.is_finite() {
        return None;
    }
    // inverse = adjugate / det, adjugate = cofactorᵀ
    Some(std::array::from_fn(|i| std::array::from_fn(|j| cof[j][i] / det)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sh_mask_matches_reference() {
        let expected = [1.0, 0.025, 0.025, 0.025, 0.00625, 0.00625, 0.00625, 0.00625, 0.00625];
        for (k, e) in expected.iter().enumerate() {
            assert!((sh_mask(k) - e).abs() < 1e-15, "{k}");
        }
    }

    #[test]
    fn inverse_times_matrix_is_identity() {
        let m = [[500.0, 1.0, 250.0], [0.0, 480.0, 190.0], [0.0, 0.0, 1.0]];
        let inv = invert3(&m).unwrap();
        for i in 0..3 {
            for j in 0..3 {
                let p: f64 = (0..3).map(|k| m[i][k] * inv[k][j]).sum();
                assert!((p - f64::from(u8::from(i == j))).abs() < 1e-12);
            }
        }
        assert!(invert3(&[[1.0, 2.0, 3.0], [2.0, 4.0, 6.0], [0.0, 0.0, 1.0]]).is_none());
    }

    #[test]
    fn mismatched_sizes_are_an_error() {
        let ext = [[[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]]];
        let k = [[[2.0, 0.0, 1.0], [0.0, 2.0, 1.0], [0.0, 0.0, 1.0]]];
        let input = AdapterInput {
            views: 1,
            height: 2,
            width: 2,
            raw: &[0.0; 4 * RAW_CHANNELS - 1],
            density: &[0.5; 4],
            depth: &[1.0; 4],
            extrinsics: &ext,
            intrinsics: &k,
            pose_scale: 1.0,
        };
        let err = adapt(&input).unwrap_err().to_string();
        assert!(err.contains("raw"), "{err}");
    }
}
