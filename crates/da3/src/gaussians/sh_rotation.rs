//! Rotation of real spherical-harmonic coefficients (degree ≤ 2) in the 3DGS basis: our own
//! real Wigner-D matrices, replacing the reference's `rotate_sh` (`utils/sh_helpers.py`), which
//! needs e3nn (Euler angles of an axis-permuted, SVD-projected matrix, then `wigner_D`).
//!
//! `rotate_sh(c, R)` returns the coefficients of the rotated function `f'(d) = f(Rᵀ d)`, where
//! `f(d) = Σ c_m Y_m(d)` in the basis the 3DGS renderers use:
//!
//! - l = 0: `C0`;
//! - l = 1: `C1 · (−y, z, −x)`;
//! - l = 2: `C2 · (xy, −yz, (2z² − x² − y²)/…, −xz, (x² − y²)/…)` (the `SH_C2` table below).
//!
//! (Checked numerically against e3nn: `rotate_sh` matches `f(Rᵀ d)` to 3e-6 in fp32.) The
//! matrices are closed-form, no angles involved:
//!
//! - l = 1: `Y₁(d) = C1·A d` with the signed permutation `A`, so `c' = A R Aᵀ c`.
//! - l = 2: `Y₂,m(d) = dᵀ Q_m d` with symmetric traceless `Q_m`, mutually orthogonal in the
//!   Frobenius product; `Y₂,m(Rᵀ d) = dᵀ (R Q_m Rᵀ) d = Σ_n M_mn Y₂,n(d)` with
//!   `M_mn = ⟨R Q_m Rᵀ, Q_n⟩ / ⟨Q_n, Q_n⟩`, so `c'_n = Σ_m M_mn c_m`.

/// 3×3 matrix, row-major.
pub type Mat3 = [[f64; 3]; 3];

/// Coefficients per colour channel for degree 2: 1 + 3 + 5.
pub const SH_COEFFS: usize = 9;

/// `SH_C2` of the 3DGS renderers (coefficients of xy, yz, 2z²−x²−y², xz, x²−y²).
const SH_C2: [f64; 5] = [
    1.0925484305920792,
    -1.0925484305920792,
    0.31539156525252005,
    -1.0925484305920792,
    0.5462742152960396,
];

/// `Y₁(d) = C1 · A d`: rows pick −y, z, −x.
const A1: Mat3 = [[0.0, -1.0, 0.0], [0.0, 0.0, 1.0], [-1.0, 0.0, 0.0]];

/// The block-diagonal real Wigner-D of degrees 0..=2 for the rotation `r`: the 9×9 matrix
/// `D` with `c_rotated = D · c` for one colour channel's coefficients `c`.
pub fn wigner_d(r: &Mat3) -> [[f64; SH_COEFFS]; SH_COEFFS] {
    let mut d = [[0.0; SH_COEFFS]; SH_COEFFS];
    d[0][0] = 1.0;
    // l = 1: A R Aᵀ.
    let d1 = mul(&mul(&A1, r), &transpose(&A1));
    for i in 0..3 {
        for j in 0..3 {
            d[1 + i][1 + j] = d1[i][j];
        }
    }
    // l = 2: D[n][m] = M_mn = ⟨R Q_m Rᵀ, Q_n⟩ / ⟨Q_n, Q_n⟩.
    let q = quadrics();
    let rt = transpose(r);
    for (m, qm) in q.iter().enumerate() {
        let rotated = mul(&mul(r, qm), &rt);
        for (n, qn) in q.iter().enumerate() {
            d[4 + n][4 + m] = frobenius(&rotated, qn) / frobenius(qn, qn);
        }
    }
    d
}

/// Applies `D` to one channel's 9 coefficients.
pub fn rotate(d: &[[f64; SH_COEFFS]; SH_COEFFS], c: &[f64; SH_COEFFS]) -> [f64; SH_COEFFS] {
    std::array::from_fn(|i| (0..SH_COEFFS).map(|j| d[i][j] * c[j]).sum())
}

/// The symmetric traceless matrices of the five degree-2 basis functions, `Y₂,m(d) = dᵀ Q_m d`.
fn quadrics() -> [Mat3; 5] {
    let c = SH_C2;
    let h = 0.5;
    [
        [[0.0, h * c[0], 0.0], [h * c[0], 0.0, 0.0], [0.0, 0.0, 0.0]],
        [[0.0, 0.0, 0.0], [0.0, 0.0, h * c[1]], [0.0, h * c[1], 0.0]],
        [[-c[2], 0.0, 0.0], [0.0, -c[2], 0.0], [0.0, 0.0, 2.0 * c[2]]],
        [[0.0, 0.0, h * c[3]], [0.0, 0.0, 0.0], [h * c[3], 0.0, 0.0]],
        [[c[4], 0.0, 0.0], [0.0, -c[4], 0.0], [0.0, 0.0, 0.0]],
    ]
}

fn mul(a: &Mat3, b: &Mat3) -> Mat3 {
    std::array::from_fn(|i| std::array::from_fn(|j| (0..3).map(|k| a[i][k] * b[k][j]).sum()))
}

fn transpose(a: &Mat3) -> Mat3 {
    std::array::from_fn(|i| std::array::from_fn(|j| a[j][i]))
}

fn frobenius(a: &Mat3, b: &Mat3) -> f64 {
    (0..3).flat_map(|i| (0..3).map(move |j| (i, j))).map(|(i, j)| a[i][j] * b[i][j]).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The 3DGS basis at a unit direction (what a renderer evaluates).
    fn basis(d: [f64; 3]) -> [f64; SH_COEFFS] {
        let [x, y, z] = d;
        let c1 = 0.4886025119029199;
        let c = SH_C2;
        [
            0.28209479177387814,
            -c1 * y,
            c1 * z,
            -c1 * x,
            c[0] * x * y,
            c[1] * y * z,
            c[2] * (2.0 * z * z - x * x - y * y),
            c[3] * x * z,
            c[4] * (x * x - y * y),
        ]
    }

    fn rotation(q: [f64; 4]) -> Mat3 {
        let n = q.iter().map(|v| v * v).sum::<f64>().sqrt();
        let [w, x, y, z] = q.map(|v| v / n);
        [
            [1.0 - 2.0 * (y * y + z * z), 2.0 * (x * y - z * w), 2.0 * (x * z + y * w)],
            [2.0 * (x * y + z * w), 1.0 - 2.0 * (x * x + z * z), 2.0 * (y * z - x * w)],
            [2.0 * (x * z - y * w), 2.0 * (y * z + x * w), 1.0 - 2.0 * (x * x + y * y)],
        ]
    }

    /// The reference's `rotate_sh` (e3nn 0.6.0, fp32) on coefficients `0.1·k − 0.35` (c0 = 1)
    /// for the rotations of unit quaternions (w, x, y, z) ∝ (0.9, 0.1, −0.3, 0.2) and
    /// (0.2, −0.7, 0.5, 0.4); script in the commit that added this test:
    /// ```python
    /// from depth_anything_3.utils.sh_helpers import rotate_sh
    /// c = torch.arange(9, dtype=torch.float32) * 0.1 - 0.35; c[0] = 1.0
    /// print(rotate_sh(c[None], R.float()[None])[0].tolist())
    /// ```
    #[test]
    #[allow(clippy::excessive_precision)]
    fn matches_e3nn_rotate_sh() {
        let cases = [
            (
                [0.9, 0.1, -0.3, 0.2],
                [1.0, -2.8684208e-01, -7.2105289e-02, -4.7367774e-03, 5.6684428e-01, 1.4105588e-01, -4.9375400e-02, 9.9001080e-03, 2.6221147e-01],
            ),
            (
                [0.2, -0.7, 0.5, 0.4],
                [1.0, 2.3297872e-01, 7.7659495e-02, 1.6489363e-01, -3.1885627e-01, -1.0522632e-01, -2.4297014e-02, 1.5032109e-02, -5.4675567e-01],
            ),
        ];
        let c: [f64; 9] = std::array::from_fn(|k| if k == 0 { 1.0 } else { 0.1 * k as f64 - 0.35 });
        for (q, expected) in cases {
            let got = rotate(&wigner_d(&rotation(q)), &c);
            let err = got.iter().zip(expected).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
            assert!(err < 2e-6, "q={q:?}: max error {err:.2e}\n ours {got:?}\n e3nn {expected:?}");
        }
    }

    #[test]
    fn rotated_function_is_the_function_of_rotated_directions() {
        let r = rotation([0.3, -0.5, 0.7, 0.1]);
        let c: [f64; 9] = std::array::from_fn(|k| (k as f64 * 0.37).sin());
        let rotated = rotate(&wigner_d(&r), &c);
        for d in [[0.6, 0.0, 0.8], [-0.48, 0.6, 0.64], [0.0, -1.0, 0.0], [0.36, 0.48, -0.8]] {
            // f'(d) = f(Rᵀ d)
            let rtd: [f64; 3] = std::array::from_fn(|i| (0..3).map(|k| r[k][i] * d[k]).sum());
            let lhs: f64 = basis(d).iter().zip(&rotated).map(|(y, c)| y * c).sum();
            let rhs: f64 = basis(rtd).iter().zip(&c).map(|(y, c)| y * c).sum();
            assert!((lhs - rhs).abs() < 1e-12, "{d:?}: {lhs} vs {rhs}");
        }
    }

    #[test]
    fn wigner_d_is_a_representation() {
        let (a, b) = (rotation([0.9, 0.1, -0.3, 0.2]), rotation([0.2, -0.7, 0.5, 0.4]));
        let (da, db, dab) = (wigner_d(&a), wigner_d(&b), wigner_d(&mul(&a, &b)));
        for i in 0..SH_COEFFS {
            for j in 0..SH_COEFFS {
                let prod: f64 = (0..SH_COEFFS).map(|k| da[i][k] * db[k][j]).sum();
                assert!((prod - dab[i][j]).abs() < 1e-12, "D(AB) != D(A)D(B) at {i},{j}");
                // Orthogonal: D Dᵀ = I.
                let ddt: f64 = (0..SH_COEFFS).map(|k| da[i][k] * da[j][k]).sum();
                assert!((ddt - f64::from(u8::from(i == j))).abs() < 1e-12, "D Dᵀ != I at {i},{j}");
            }
        }
    }
}
