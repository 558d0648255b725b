//! Camera decoding: the `CameraDec` MLP (`model/cam_dec.py`) and the conversion of its pose
//! encoding to extrinsics and intrinsics (`model/utils/transform.py`,
//! `utils/geometry.py::affine_inverse`).
//!
//! Everything is done with tensor ops, so no device-to-host read is needed (readback is
//! asynchronous in the browser).

use burn::module::Module;
use burn::tensor::activation::relu;
use burn::tensor::{backend::Backend, Tensor};

use crate::nn::Linear;
use crate::weights::WeightLoader;

/// Smallest `tan(fov/2)` used for the focal lengths (`torch.clamp(..., 1e-6)`).
const MIN_HALF_FOV_TAN: f64 = 1e-6;

/// Decodes a camera token into the pose encoding `[t(3), q xyzw(4), fov_h, fov_w]`.
#[derive(Module, Debug)]
pub struct CameraDec<B: Backend> {
    /// `backbone.0`: Linear(2D, 2D), followed by ReLU.
    backbone0: Linear<B>,
    /// `backbone.2`: Linear(2D, 2D), followed by ReLU.
    backbone2: Linear<B>,
    /// `fc_t`: Linear(2D, 3), translation.
    fc_t: Linear<B>,
    /// `fc_qvec`: Linear(2D, 4), quaternion xyzw (not normalised).
    fc_qvec: Linear<B>,
    /// `fc_fov.0`: Linear(2D, 2), followed by ReLU; fields of view (h, w) in radians.
    fc_fov: Linear<B>,
}

impl<B: Backend> CameraDec<B> {
    /// Loads the decoder stored under `prefix` (e.g. `model.cam_dec`); `dim` is the token width 2D.
    pub fn load(w: &mut WeightLoader<B>, prefix: &str, dim: usize) -> Self {
        let linear = |w: &mut WeightLoader<B>, name: &str, d_out| {
            Linear::load(w, &format!("{prefix}.{name}"), dim, d_out, true)
        };
        Self {
            backbone0: linear(w, "backbone.0", dim),
            backbone2: linear(w, "backbone.2", dim),
            fc_t: linear(w, "fc_t", 3),
            fc_qvec: linear(w, "fc_qvec", 4),
            fc_fov: linear(w, "fc_fov.0", 2),
        }
    }

    /// Camera tokens [B, S, 2D] -> pose encoding [B, S, 9] = [t(3), q xyzw(4), fov_h, fov_w].
    pub fn forward(&self, cam_tokens: Tensor<B, 3>) -> Tensor<B, 3> {
        let x = relu(self.backbone0.forward(cam_tokens)); // [B, S, 2D]
        let x = relu(self.backbone2.forward(x)); // [B, S, 2D]
        let t = self.fc_t.forward(x.clone()); // [B, S, 3]
        let q = self.fc_qvec.forward(x.clone()); // [B, S, 4]
        let fov = relu(self.fc_fov.forward(x)); // [B, S, 2]
        Tensor::cat(vec![t, q, fov], 2)
    }
}

/// Converts a pose encoding [B, S, 9] of `h`×`w` images into world-to-camera extrinsics
/// [B, S, 3, 4] and intrinsics [B, S, 3, 3] (principal point at the image centre).
///
/// The encoding holds the camera-to-world pose `[R(q) | t]`; the extrinsics returned are its
/// inverse `[Rᵀ | -Rᵀ t]`, as the reference model outputs.
pub fn pose_encoding_to_extrinsics_intrinsics<B: Backend>(
    pose_enc: Tensor<B, 3>,
    h: usize,
    w: usize,
) -> (Tensor<B, 4>, Tensor<B, 4>) {
    let [b, s, _] = pose_enc.dims();
    let t = pose_enc.clone().narrow(2, 0, 3).reshape([b, s, 3, 1]); // [B, S, 3, 1]
    let rot_t = quat_to_mat(pose_enc.clone().narrow(2, 3, 4)).swap_dims(2, 3); // Rᵀ [B, S, 3, 3]
    let trans = crate::kernels::matmul::matmul(rot_t.clone(), t).neg(); // -Rᵀ t [B, S, 3, 1]
    let extrinsics = Tensor::cat(vec![rot_t, trans], 3); // [B, S, 3, 4]
    let intrinsics = intrinsics_from_fov(pose_enc.narrow(2, 7, 2), h, w); // [B, S, 3, 3]
    (extrinsics, intrinsics)
}

/// Rotation matrices of quaternions xyzw (scalar last, any norm: `two_s = 2/|q|²`):
/// [B, S, 4] -> [B, S, 3, 3].
fn quat_to_mat<B: Backend>(q: Tensor<B, 3>) -> Tensor<B, 4> {
    let [b, s, _] = q.dims();
    let part = |k| q.clone().narrow(2, k, 1); // [B, S, 1]
    let (i, j, k, r) = (part(0), part(1), part(2), part(3));
    let mul = |a: &Tensor<B, 3>, b: &Tensor<B, 3>| a.clone() * b.clone();
    let norm2 = (q.clone() * q).sum_dim(2); // [B, S, 1]
    let two_s = norm2.ones_like() * 2.0 / norm2;
    let scaled = |x: Tensor<B, 3>| two_s.clone() * x;
    let diagonal = |a: &Tensor<B, 3>, b: &Tensor<B, 3>| scaled(mul(a, a) + mul(b, b)).neg() + 1.0;
    let entries = vec![
        diagonal(&j, &k),
        scaled(mul(&i, &j) - mul(&k, &r)),
        scaled(mul(&i, &k) + mul(&j, &r)),
        scaled(mul(&i, &j) + mul(&k, &r)),
        diagonal(&i, &k),
        scaled(mul(&j, &k) - mul(&i, &r)),
        scaled(mul(&i, &k) - mul(&j, &r)),
        scaled(mul(&j, &k) + mul(&i, &r)),
        diagonal(&i, &j),
    ];
    Tensor::cat(entries, 2).reshape([b, s, 3, 3])
}

/// Pinhole intrinsics from fields of view `[fov_h, fov_w]` [B, S, 2] for `h`×`w` images:
/// `f = (size/2) / max(tan(fov/2), 1e-6)`, principal point (w/2, h/2) -> [B, S, 3, 3].
fn intrinsics_from_fov<B: Backend>(fov: Tensor<B, 3>, h: usize, w: usize) -> Tensor<B, 4> {
    let [b, s, _] = fov.dims();
    let half_tan = (fov / 2.0).tan().clamp_min(MIN_HALF_FOV_TAN); // [B, S, 2]
    let (half_h, half_w) = (h as f64 / 2.0, w as f64 / 2.0);
    let focal = |k: usize, half: f64| {
        let tan = half_tan.clone().narrow(2, k, 1); // [B, S, 1]
        tan.ones_like() * half / tan
    };
    let (fy, fx) = (focal(0, half_h), focal(1, half_w));
    let zero = fx.zeros_like();
    let constant = |v: f64| zero.clone() + v;
    let entries = vec![
        fx,
        zero.clone(),
        constant(half_w),
        zero.clone(),
        fy,
        constant(half_h),
        zero.clone(),
        zero.clone(),
        constant(1.0),
    ];
    Tensor::cat(entries, 2).reshape([b, s, 3, 3])
}

#[cfg(test)]
#[allow(clippy::excessive_precision)] // tables printed by Python at full precision
mod tests {
    use super::*;
    use crate::backends::Flex;
    use burn::tensor::TensorData;

    /// Largest `|got - expected| / max(1, |expected|)`.
    fn max_rel_err(got: Vec<f32>, expected: &[f32]) -> f32 {
        assert_eq!(got.len(), expected.len());
        got.iter().zip(expected).map(|(a, b)| (a - b).abs() / b.abs().max(1.0)).fold(0.0, f32::max)
    }

    /// Two cameras: an unnormalised quaternion, and a near-identity one with a zero fov that
    /// hits the tan clamp.
    #[rustfmt::skip]
    const POSE_ENC: [f32; 18] = [
        0.3, -1.2, 2.5, 0.4, -0.2, 0.1, 1.7, 0.9, 1.1,
        -0.5, 0.25, 0.0, 0.02, 0.01, -0.03, 0.8, 0.0, 1.4,
    ];

    /// ```python
    /// import sys, torch; sys.path.insert(0, '/tmp/ref')
    /// from depth_anything_3.model.utils.transform import pose_encoding_to_extri_intri
    /// from depth_anything_3.utils.geometry import affine_inverse
    /// pe = torch.tensor(POSE_ENC).reshape(1, 2, 9)
    /// c2w, ixt = pose_encoding_to_extri_intri(pe, (378, 504))
    /// print(affine_inverse(c2w).flatten().tolist(), ixt.flatten().tolist())
    /// ```
    #[rustfmt::skip]
    const EXTRINSICS: [f32; 24] = [
        9.677419066e-01, 5.806451291e-02, 2.451612800e-01, -8.335483074e-01,
        -1.612903178e-01, 8.903225660e-01, 4.258064628e-01, 5.225801468e-02,
        -1.935483962e-01, -4.516128898e-01, 8.709677458e-01, -2.661290407e+00,
        9.968818426e-01, -7.421265543e-02, -2.681633830e-02, 5.169940591e-01,
        7.545992732e-02, 9.959463477e-01, 4.895541072e-02, -2.112566233e-01,
        2.307452448e-02, -5.082631484e-02, 9.984409213e-01, 2.424384095e-02,
    ];
    #[rustfmt::skip]
    const INTRINSICS: [f32; 18] = [
        4.110224304e+02, 0.000000000e+00, 2.520000000e+02,
        0.000000000e+00, 3.912597351e+02, 1.890000000e+02,
        0.000000000e+00, 0.000000000e+00, 1.000000000e+00,
        2.991849365e+02, 0.000000000e+00, 2.520000000e+02,
        0.000000000e+00, 1.890000000e+08, 1.890000000e+02,
        0.000000000e+00, 0.000000000e+00, 1.000000000e+00,
    ];

    #[test]
    fn pose_decoding_matches_reference() {
        let device = Default::default();
        let pose = Tensor::<Flex, 3>::from_data(TensorData::new(POSE_ENC.to_vec(), [1, 2, 9]), &device);
        let (ext, ixt) = pose_encoding_to_extrinsics_intrinsics(pose, 378, 504);
        assert_eq!(ext.dims(), [1, 2, 3, 4]);
        assert_eq!(ixt.dims(), [1, 2, 3, 3]);
        let ext_err = max_rel_err(ext.into_data().to_vec().unwrap(), &EXTRINSICS);
        let ixt_err = max_rel_err(ixt.into_data().to_vec().unwrap(), &INTRINSICS);
        assert!(ext_err < 1e-5, "extrinsics relative error {ext_err}");
        assert!(ixt_err < 1e-5, "intrinsics relative error {ixt_err}");
    }
}
