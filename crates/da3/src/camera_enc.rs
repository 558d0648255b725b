//! Pose-conditioned input: the user's cameras become the camera tokens of the backbone.
//!
//! `CameraEnc` (`model/cam_enc.py`) turns each view's pose encoding
//! `[t(3), q xyzw(4), fov_h, fov_w]` of its camera-to-world pose into a D-wide token through an
//! MLP and four transformer blocks that attend across the views. The pose encoding is computed
//! on the host: the cameras arrive there from the user, and the quaternion extraction has
//! data-dependent branches.

use burn::module::Module;
use crate::kernels::activation::gelu;
use burn::tensor::{backend::Backend, Tensor, TensorData};

use crate::backbone::block::{Block, BlockSpec};
use crate::config::FfnKind;
use crate::nn::{LayerNorm, Linear};
use crate::weights::WeightLoader;

/// A 4×4 rigid transform, row-major.
pub type Mat4 = [[f64; 4]; 4];
/// A 3×3 matrix, row-major.
pub type Mat3 = [[f64; 3]; 3];

/// Heads of the CameraEnc blocks: 16 for every model size (the configs never override it).
const CAMERA_ENC_HEADS: usize = 16;
/// Blocks of the CameraEnc trunk.
const CAMERA_ENC_DEPTH: usize = 4;
/// Eps of every CameraEnc LayerNorm (PyTorch default).
const CAMERA_ENC_NORM_EPS: f64 = 1e-5;
/// Floor of the median camera distance in [`normalize_extrinsics`].
const MIN_SCENE_SCALE: f64 = 0.1;

/// The cameras of the views of B scenes, scene-major ([B·S] entries).
#[derive(Debug, Clone, PartialEq)]
pub struct ViewCameras {
    /// World-to-camera transforms (OpenCV axes).
    pub world_to_camera: Vec<Mat4>,
    /// Intrinsics in pixels of the image the network sees.
    pub intrinsics: Vec<Mat3>,
}

/// `[R | t]⁻¹ = [Rᵀ | −Rᵀ t]` of a rigid 4×4 transform.
pub fn rigid_inverse(m: &Mat4) -> Mat4 {
    let mut inv = [[0.0; 4]; 4];
    for r in 0..3 {
        for c in 0..3 {
            inv[r][c] = m[c][r];
        }
        inv[r][3] = -(0..3).map(|k| m[k][r] * m[k][3]).sum::<f64>();
    }
    inv[3][3] = 1.0;
    inv
}

fn matmul4(a: &Mat4, b: &Mat4) -> Mat4 {
    std::array::from_fn(|r| std::array::from_fn(|c| (0..4).map(|k| a[r][k] * b[k][c]).sum()))
}

/// The reference API's `_normalize_extrinsics` for one scene: camera 0 becomes the identity
/// (`ex_i · ex_0⁻¹`), then translations are divided by `max(median_i ‖C_i‖, 0.1)` where `C_i`
/// are the camera centres. The median of an even count is the lower middle value, as
/// `torch.median` returns.
pub fn normalize_extrinsics(world_to_camera: &[Mat4]) -> Vec<Mat4> {
    let Some(first) = world_to_camera.first() else { return Vec::new() };
    let to_first = rigid_inverse(first);
    let mut out: Vec<Mat4> = world_to_camera.iter().map(|e| matmul4(e, &to_first)).collect();
    let mut dists: Vec<f64> = out
        .iter()
        .map(|e| {
            let c = rigid_inverse(e);
            (c[0][3].powi(2) + c[1][3].powi(2) + c[2][3].powi(2)).sqrt()
        })
        .collect();
    dists.sort_by(f64::total_cmp);
    let scale = dists[(dists.len() - 1) / 2].max(MIN_SCENE_SCALE);
    for e in &mut out {
        for row in e.iter_mut().take(3) {
            row[3] /= scale;
        }
    }
    out
}

/// Quaternion (x, y, z, w) with w ≥ 0 of a rotation matrix, choosing the best-conditioned of
/// the four candidate formulas as PyTorch3D's `matrix_to_quaternion` (the reference's
/// `mat_to_quat`) does.
pub fn rotation_to_quat_xyzw(m: &Mat3) -> [f64; 4] {
    let (m00, m01, m02) = (m[0][0], m[0][1], m[0][2]);
    let (m10, m11, m12) = (m[1][0], m[1][1], m[1][2]);
    let (m20, m21, m22) = (m[2][0], m[2][1], m[2][2]);
    let q_abs = [1.0 + m00 + m11 + m22, 1.0 + m00 - m11 - m22, 1.0 - m00 + m11 - m22, 1.0 - m00 - m11 + m22]
        .map(|v: f64| if v > 0.0 { v.sqrt() } else { 0.0 });
    // Candidates in (r, i, j, k) order, each scaled by one of the q_abs.
    let candidates = [
        [q_abs[0].powi(2), m21 - m12, m02 - m20, m10 - m01],
        [m21 - m12, q_abs[1].powi(2), m10 + m01, m02 + m20],
        [m02 - m20, m10 + m01, q_abs[2].powi(2), m12 + m21],
        [m10 - m01, m20 + m02, m21 + m12, q_abs[3].powi(2)],
    ];
    // First maximum, as torch.argmax.
    let best = (1..4).fold(0, |b, i| if q_abs[i] > q_abs[b] { i } else { b });
    let denom = 2.0 * q_abs[best].max(0.1);
    let [r, i, j, k] = candidates[best].map(|v| v / denom);
    if r < 0.0 { [-i, -j, -k, -r] } else { [i, j, k, r] }
}

/// `extri_intri_to_pose_encoding` of one view: `[t, q xyzw, fov_h, fov_w]` of the
/// camera-to-world pose, for an `h`×`w` image.
pub fn pose_encoding(camera_to_world: &Mat4, k: &Mat3, h: usize, w: usize) -> [f64; 9] {
    let r: Mat3 = std::array::from_fn(|i| std::array::from_fn(|j| camera_to_world[i][j]));
    let q = rotation_to_quat_xyzw(&r);
    let fov_h = 2.0 * ((h as f64 / 2.0) / k[1][1]).atan();
    let fov_w = 2.0 * ((w as f64 / 2.0) / k[0][0]).atan();
    [camera_to_world[0][3], camera_to_world[1][3], camera_to_world[2][3], q[0], q[1], q[2], q[3], fov_h, fov_w]
}

/// `cam_enc`: pose encodings [B, S, 9] -> camera tokens [B, S, D].
#[derive(Module, Debug)]
pub struct CameraEnc<B: Backend> {
    fc1: Linear<B>,
    fc2: Linear<B>,
    token_norm: LayerNorm<B>,
    trunk: Vec<Block<B>>,
    trunk_norm: LayerNorm<B>,
}

impl<B: Backend> CameraEnc<B> {
    /// Loads `{prefix}.*` (e.g. `model.cam_enc`) for tokens of width `dim`.
    pub fn load(w: &mut WeightLoader<B>, prefix: &str, dim: usize) -> Self {
        let spec = BlockSpec {
            dim,
            num_heads: CAMERA_ENC_HEADS,
            ffn: FfnKind::Mlp,
            ffn_hidden: 4 * dim,
            norm_eps: CAMERA_ENC_NORM_EPS,
            qk_norm: false,
        };
        Self {
            fc1: Linear::load(w, &format!("{prefix}.pose_branch.fc1"), 9, dim / 2, true),
            fc2: Linear::load(w, &format!("{prefix}.pose_branch.fc2"), dim / 2, dim, true),
            token_norm: LayerNorm::load(w, &format!("{prefix}.token_norm"), dim, CAMERA_ENC_NORM_EPS),
            trunk: (0..CAMERA_ENC_DEPTH).map(|i| Block::load(w, &format!("{prefix}.trunk.{i}"), &spec)).collect(),
            trunk_norm: LayerNorm::load(w, &format!("{prefix}.trunk_norm"), dim, CAMERA_ENC_NORM_EPS),
        }
    }

    /// Camera tokens for `cameras` of `b` scenes of `s` views seen at `h`×`w` pixels: [B, S, D].
    /// `cameras` holds either B·S views (scene by scene) or S views that every scene shares (a
    /// calibrated rig filmed over time).
    ///
    /// # Panics
    /// When `cameras` holds neither S nor B·S views (extrinsics and intrinsics alike).
    pub fn forward(&self, cameras: &ViewCameras, b: usize, s: usize, h: usize, w: usize, device: &B::Device) -> Tensor<B, 3> {
        let views = cameras.world_to_camera.len();
        assert!(
            (views == s || views == b * s) && cameras.intrinsics.len() == views,
            "CameraEnc: {views} extrinsics and {} intrinsics for {b} scene(s) of {s} views; give {s} (shared by every \
             scene) or {} (per scene)",
            cameras.intrinsics.len(),
            b * s
        );
        let per_view: Vec<[f32; 9]> = cameras
            .world_to_camera
            .iter()
            .zip(&cameras.intrinsics)
            .map(|(ext, k)| pose_encoding(&rigid_inverse(ext), k, h, w).map(|v| v as f32))
            .collect();
        let encodings: Vec<f32> = per_view.iter().cycle().take(b * s).flatten().copied().collect();
        let pose = Tensor::<B, 3>::from_data(TensorData::new(encodings, [b, s, 9]), device); // [B, S, 9]
        let x = self.fc2.forward(gelu(self.fc1.forward(pose))); // [B, S, D]
        let mut x = self.token_norm.forward(x);
        for block in &self.trunk {
            x = block.forward(x, None); // attention across the S views of each scene
        }
        self.trunk_norm.forward(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rot_z(a: f64) -> Mat3 {
        [[a.cos(), -a.sin(), 0.0], [a.sin(), a.cos(), 0.0], [0.0, 0.0, 1.0]]
    }

    #[test]
    fn quaternion_of_known_rotations() {
        let q = rotation_to_quat_xyzw(&rot_z(std::f64::consts::FRAC_PI_2));
        let h = std::f64::consts::FRAC_1_SQRT_2;
        for (a, b) in q.iter().zip([0.0, 0.0, h, h]) {
            assert!((a - b).abs() < 1e-12, "{q:?}");
        }
        // A half turn about x: w = 0; the x candidate is chosen, standardized sign.
        let q = rotation_to_quat_xyzw(&[[1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, -1.0]]);
        assert_eq!(q, [1.0, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn normalization_makes_camera_zero_identity_and_unit_median_distance() {
        let pose = |t: [f64; 3], a: f64| {
            let r = rot_z(a);
            let mut m = [[0.0; 4]; 4];
            for i in 0..3 {
                m[i][..3].copy_from_slice(&r[i]);
                m[i][3] = t[i];
            }
            m[3][3] = 1.0;
            m
        };
        let cams = [pose([1.0, 2.0, 3.0], 0.3), pose([4.0, 0.0, 1.0], -0.2), pose([0.0, 5.0, 2.0], 1.0)];
        let n = normalize_extrinsics(&cams);
        for (r, row) in n[0].iter().enumerate() {
            for (c, v) in row.iter().enumerate() {
                assert!((v - if r == c { 1.0 } else { 0.0 }).abs() < 1e-12);
            }
        }
        // Camera-0 distance is 0; the median of {0, d1, d2} is the smaller of d1, d2 -> 1.
        let mut d: Vec<f64> = n.iter().map(|e| {
            let c = rigid_inverse(e);
            (c[0][3].powi(2) + c[1][3].powi(2) + c[2][3].powi(2)).sqrt()
        }).collect();
        d.sort_by(f64::total_cmp);
        assert!((d[1] - 1.0).abs() < 1e-12, "{d:?}");
    }
}
