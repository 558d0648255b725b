//! Small dense f64 linear algebra for the host-side camera geometry (ray poses, pose
//! alignment): symmetric eigen-decomposition by cyclic Jacobi, a rotation-friendly 3×3 SVD
//! and 3×3 helpers. Sizes are at most 9×9, so clarity wins over speed.

/// A 3×3 matrix, row-major.
pub type M3 = [[f64; 3]; 3];

/// `a · b`.
pub fn mul3(a: &M3, b: &M3) -> M3 {
    std::array::from_fn(|r| std::array::from_fn(|c| (0..3).map(|k| a[r][k] * b[k][c]).sum()))
}

/// `aᵀ`.
pub fn transpose3(a: &M3) -> M3 {
    std::array::from_fn(|r| std::array::from_fn(|c| a[c][r]))
}

/// `a · v`.
pub fn mul3v(a: &M3, v: &[f64; 3]) -> [f64; 3] {
    std::array::from_fn(|r| (0..3).map(|k| a[r][k] * v[k]).sum())
}

/// Determinant of a 3×3 matrix.
pub fn det3(a: &M3) -> f64 {
    a[0][0] * (a[1][1] * a[2][2] - a[1][2] * a[2][1]) - a[0][1] * (a[1][0] * a[2][2] - a[1][2] * a[2][0])
        + a[0][2] * (a[1][0] * a[2][1] - a[1][1] * a[2][0])
}

/// Dot product.
pub fn dot3(a: &[f64; 3], b: &[f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

/// Cross product.
pub fn cross3(a: &[f64; 3], b: &[f64; 3]) -> [f64; 3] {
    [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]
}

/// Eigen-decomposition of a symmetric N×N matrix by cyclic Jacobi rotations: eigenvalues in
/// ascending order and the matching unit eigenvectors as the columns of the second result.
/// Non-finite input gives non-finite output (never a panic).
pub fn sym_eigen<const N: usize>(a: &[[f64; N]; N]) -> ([f64; N], [[f64; N]; N]) {
    let mut a = *a;
    let mut v: [[f64; N]; N] = std::array::from_fn(|r| std::array::from_fn(|c| f64::from(r == c)));
    for _sweep in 0..64 {
        let off: f64 = (0..N).flat_map(|r| (0..N).filter(move |c| *c != r).map(move |c| (r, c))).map(|(r, c)| a[r][c] * a[r][c]).sum();
        let scale: f64 = (0..N).map(|i| a[i][i] * a[i][i]).sum::<f64>() + off;
        if !(off > 1e-30 * scale) {
            break; // converged (or NaN, which no rotation repairs)
        }
        for p in 0..N {
            for q in p + 1..N {
                if a[p][q] == 0.0 {
                    continue;
                }
                // Rotation that zeroes a[p][q] (Golub & Van Loan, Alg. 8.4.1).
                let theta = (a[q][q] - a[p][p]) / (2.0 * a[p][q]);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..N {
                    let (akp, akq) = (a[k][p], a[k][q]);
                    a[k][p] = c * akp - s * akq;
                    a[k][q] = s * akp + c * akq;
                }
                for k in 0..N {
                    let (apk, aqk) = (a[p][k], a[q][k]);
                    a[p][k] = c * apk - s * aqk;
                    a[q][k] = s * apk + c * aqk;
                }
                for row in v.iter_mut() {
                    let (vp, vq) = (row[p], row[q]);
                    row[p] = c * vp - s * vq;
                    row[q] = s * vp + c * vq;
                }
            }
        }
    }
    let mut order: [usize; N] = std::array::from_fn(|i| i);
    order.sort_by(|&i, &j| a[i][i].total_cmp(&a[j][j]));
    let values = std::array::from_fn(|i| a[order[i]][order[i]]);
    let vectors = std::array::from_fn(|r| std::array::from_fn(|c| v[r][order[c]]));
    (values, vectors)
}

/// A 3×3 SVD `m = U · diag(s) · Vᵀ` with `det U = det V = +1`: `s[0] ≥ s[1] ≥ |s[2]|` and only
/// `s[2]` may be negative. This "signed" form is what rotation fitting needs: the closest
/// rotation to `m` is `U Vᵀ` and Umeyama's `tr(D S)` is `s[0] + s[1] + s[2]`.
/// Returns `None` when `m` has rank < 2 (`s[1] ≤ 1e-12 · s[0]`), where that rotation is not
/// unique.
pub fn signed_svd3(m: &M3) -> Option<(M3, [f64; 3], M3)> {
    let mtm = mul3(&transpose3(m), m);
    let (_, ev) = sym_eigen(&mtm); // ascending eigenvalues
    let col = |k: usize| [ev[0][k], ev[1][k], ev[2][k]];
    let (v0, v1) = (col(2), col(1));
    let v2 = cross3(&v0, &v1); // det V = +1
    let a0 = mul3v(m, &v0);
    let s0 = dot3(&a0, &a0).sqrt();
    if !(s0 > 0.0) || !s0.is_finite() {
        return None;
    }
    let u0 = a0.map(|x| x / s0);
    let a1 = mul3v(m, &v1);
    let proj = dot3(&u0, &a1);
    let a1 = [a1[0] - proj * u0[0], a1[1] - proj * u0[1], a1[2] - proj * u0[2]];
    let s1 = dot3(&a1, &a1).sqrt();
    if !(s1 > 1e-12 * s0) {
        return None;
    }
    let u1 = a1.map(|x| x / s1);
    let u2 = cross3(&u0, &u1); // det U = +1
    let s2 = dot3(&u2, &mul3v(m, &v2));
    let u = std::array::from_fn(|r| [u0[r], u1[r], u2[r]]);
    let v = std::array::from_fn(|r| [v0[r], v1[r], v2[r]]);
    Some((u, [s0, s1, s2], v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jacobi_diagonalizes() {
        let a = [[4.0, 1.0, -2.0], [1.0, 2.0, 0.5], [-2.0, 0.5, 3.0]];
        let (w, v) = sym_eigen(&a);
        for k in 0..3 {
            let x = [v[0][k], v[1][k], v[2][k]];
            let ax = mul3v(&a, &x);
            for r in 0..3 {
                assert!((ax[r] - w[k] * x[r]).abs() < 1e-12);
            }
        }
        assert!(w[0] <= w[1] && w[1] <= w[2]);
    }

    #[test]
    fn signed_svd_reconstructs() {
        let m = [[0.3, -1.2, 2.0], [0.7, 0.1, -0.4], [-1.1, 0.5, 0.9]];
        for m in [m, m.map(|r| r.map(|x| -x))] {
            let (u, s, v) = signed_svd3(&m).unwrap();
            assert!((det3(&u) - 1.0).abs() < 1e-12 && (det3(&v) - 1.0).abs() < 1e-12);
            let d = [[s[0], 0.0, 0.0], [0.0, s[1], 0.0], [0.0, 0.0, s[2]]];
            let back = mul3(&mul3(&u, &d), &transpose3(&v));
            for r in 0..3 {
                for c in 0..3 {
                    assert!((back[r][c] - m[r][c]).abs() < 1e-12);
                }
            }
        }
        assert!(signed_svd3(&[[1.0, 2.0, 3.0], [2.0, 4.0, 6.0], [0.0; 3]]).is_none());
    }
}
