//! Moving Gaussians between world frames and concatenating them, for chunked runs
//! ([`crate::schedule::stitch`]): each chunk's Gaussians live in that chunk's world frame and
//! are moved into the job's by the chunk's fitted similarity `x ↦ s·R·x + t`.
//!
//! What each field does under the similarity (the same `R`, `s`, `t` that
//! [`crate::align::apply_sim3`] applies to the chunk's cameras):
//! - means: `s·R·x + t`;
//! - rotations: the orientation matrix `M` (camera-to-world rotation times the head's camera
//!   orientation, see [`super::quat::camera_to_world_quat`]) becomes `R·M`, converted back with
//!   the reference's own [`super::quat::mat_to_quat`], so the components keep exactly the
//!   convention the adapter writes (the reference's (i, j, k, r) stored as "wxyz"). A chunk's
//!   moved Gaussian is then what the adapter would have produced had the chunk's cameras been
//!   predicted in the job's frame (checked in `tests/schedule.rs`);
//! - scales: `×s` (they are proportional to the distance along the ray);
//! - spherical harmonics (degree 2): view-dependent colour is a function on directions in the
//!   world frame, so rotating the frame rotates it: each colour's 9 coefficients are multiplied
//!   by the real Wigner-D of `R` ([`super::sh_rotation::wigner_d`]), exactly as the adapter
//!   rotates the head's camera-frame coefficients by the camera-to-world rotation (the Wigner-D
//!   is a representation, `D(R·C) = D(R)·D(C)`, so both orders agree). The DC term (l = 0) is
//!   unchanged; scale and translation do not act on directions;
//! - opacities: unchanged.

use super::quat::{mat_to_quat, quat_to_mat};
use super::sh_rotation::{rotate, wigner_d};
use super::Gaussians;
use crate::align::Sim3;
use crate::linalg::{mul3, mul3v};
use crate::Da3Error;

impl Gaussians {
    /// Moves every Gaussian by the similarity `sim3` (`x ↦ s·R·x + t`), see the module docs.
    pub fn transform(&mut self, sim3: &Sim3) {
        let (r, s, t) = (&sim3.rotation, sim3.scale, sim3.translation);
        for m in &mut self.means {
            let x = mul3v(r, &m.map(f64::from));
            *m = std::array::from_fn(|k| (s * x[k] + t[k]) as f32);
        }
        for sc in &mut self.scales {
            *sc = sc.map(|v| (s * v as f64) as f32);
        }
        for q in &mut self.rotations {
            let m = quat_to_mat(q.map(f64::from));
            *q = mat_to_quat(&mul3(r, &m)).map(|v| v as f32);
        }
        let d = wigner_d(r);
        for h in &mut self.harmonics {
            *h = h.map(|c| rotate(&d, &c.map(f64::from)).map(|v| v as f32));
        }
    }

    /// Reserves room for `more` views' Gaussians beyond the ones held.
    pub fn reserve_views(&mut self, more: usize) {
        let n = more * self.height * self.width;
        self.means.reserve_exact(n);
        self.scales.reserve_exact(n);
        self.rotations.reserve_exact(n);
        self.harmonics.reserve_exact(n);
        self.opacities.reserve_exact(n);
    }

    /// Appends the Gaussians of `other`'s views from `skip` on (the views before are shared
    /// ones, already held). Both must have the same image size.
    pub fn append_views(&mut self, other: &Gaussians, skip: usize) -> Result<(), Da3Error> {
        if (other.height, other.width) != (self.height, self.width) || skip > other.views {
            return Err(Da3Error::Input(format!(
                "internal: cannot append views {skip}.. of {} Gaussian views of {}x{} to views of {}x{}",
                other.views, other.width, other.height, self.width, self.height
            )));
        }
        let from = skip * self.height * self.width;
        self.means.extend_from_slice(&other.means[from..]);
        self.scales.extend_from_slice(&other.scales[from..]);
        self.rotations.extend_from_slice(&other.rotations[from..]);
        self.harmonics.extend_from_slice(&other.harmonics[from..]);
        self.opacities.extend_from_slice(&other.opacities[from..]);
        self.views += other.views - skip;
        Ok(())
    }
}
