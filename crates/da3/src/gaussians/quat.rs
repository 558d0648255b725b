//! The reference's quaternion conversions (`model/utils/transform.py`), ported with their
//! component conventions, which the GS head was trained through.

use super::sh_rotation::Mat3;

/// `quat_to_mat`: quaternion with the real part **last** (i, j, k, r) to a rotation matrix,
/// with `2/|q|²` so that unnormalized input still gives a rotation.
pub fn quat_to_mat(q: [f64; 4]) -> Mat3 {
    let [i, j, k, r] = q;
    let two_s = 2.0 / (i * i + j * j + k * k + r * r);
    [
        [1.0 - two_s * (j * j + k * k), two_s * (i * j - k * r), two_s * (i * k + j * r)],
        [two_s * (i * j + k * r), 1.0 - two_s * (i * i + k * k), two_s * (j * k - i * r)],
        [two_s * (i * k - j * r), two_s * (j * k + i * r), 1.0 - two_s * (i * i + j * j)],
    ]
}

/// `mat_to_quat`: rotation matrix to (i, j, k, r) with the real part last and r ≥ 0, choosing
/// the best-conditioned of the four candidates (the first largest `q_abs`, as `argmax` does;
/// denominators floored at 0.1 as in the reference).
pub fn mat_to_quat(m: &Mat3) -> [f64; 4] {
    let [[m00, m01, m02], [m10, m11, m12], [m20, m21, m22]] = *m;
    let q_abs = [
        1.0 + m00 + m11 + m22,
        1.0 + m00 - m11 - m22,
        1.0 - m00 + m11 - m22,
        1.0 - m00 - m11 + m22,
    ]
    .map(|v| if v > 0.0 { v.sqrt() } else { 0.0 });
    // Rows: candidates in (r, i, j, k) order.
    let candidates = [
        [q_abs[0] * q_abs[0], m21 - m12, m02 - m20, m10 - m01],
        [m21 - m12, q_abs[1] * q_abs[1], m10 + m01, m02 + m20],
        [m02 - m20, m10 + m01, q_abs[2] * q_abs[2], m12 + m21],
        [m10 - m01, m20 + m02, m21 + m12, q_abs[3] * q_abs[3]],
    ];
    let best = (1..4).fold(0, |b, c| if q_abs[c] > q_abs[b] { c } else { b });
    let denom = 2.0 * q_abs[best].max(0.1);
    let [r, i, j, k] = candidates[best].map(|v| v / denom);
    let out = [i, j, k, r];
    if r < 0.0 {
        out.map(|v| -v)
    } else {
        out
    }
}

/// `cam_quat_xyzw_to_world_quat_wxyz` for one Gaussian: the normalized raw quaternion `q`
/// (channels 5..9, "xyzw") is reordered to (q3, q0, q1, q2), read by [`quat_to_mat`] (real
/// part last), rotated by the camera-to-world rotation `c2w`, and converted back with
/// [`mat_to_quat`]. The result is what the reference stores and renders as "wxyz"; the
/// component handling is kept exactly, because the checkpoint was trained through it.
pub fn camera_to_world_quat(q: [f64; 4], c2w: &Mat3) -> [f64; 4] {
    let cam = quat_to_mat([q[3], q[0], q[1], q[2]]);
    let world: Mat3 = std::array::from_fn(|a| std::array::from_fn(|b| (0..3).map(|k| c2w[a][k] * cam[k][b]).sum()));
    mat_to_quat(&world)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_is_standardized() {
        for q in [[0.1, -0.2, 0.3, 0.9], [0.7, 0.1, -0.1, -0.7], [0.0, 0.0, 1.0, 0.0], [0.5, 0.5, 0.5, -0.5]] {
            let n = q.iter().map(|v| v * v).sum::<f64>().sqrt();
            let sign = if q[3] < 0.0 { -1.0 } else { 1.0 };
            let back = mat_to_quat(&quat_to_mat(q));
            for c in 0..4 {
                assert!((back[c] - sign * q[c] / n).abs() < 1e-12, "{q:?} -> {back:?}");
            }
        }
    }

    #[test]
    fn identity_camera_keeps_the_raw_quaternion_reordered() {
        // With c2w = I the raw (a, b, c, d) comes back as (d, a, b, c), up to sign.
        let eye = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
        let out = camera_to_world_quat([0.2, -0.4, 0.4, 0.8], &eye);
        let expected = [0.8, 0.2, -0.4, 0.4];
        for c in 0..4 {
            assert!((out[c] - expected[c]).abs() < 1e-12, "{out:?}");
        }
    }
}
