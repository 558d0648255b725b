//! The size arithmetic of the reference preprocessing (`InputProcessor._process_one`): how
//! big each image becomes, which interpolation each resize uses, where crops start, and how
//! a camera matrix follows.

use std::fmt;
use std::str::FromStr;

use super::resize::Interpolation;
use crate::config::PATCH_SIZE;
use crate::Da3Error;

/// The default `process_res` of the reference.
pub const DEFAULT_PROCESS_RES: usize = 504;

/// How an image is brought to the processing resolution (`process_res_method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ResizeMethod {
    /// Longest side to `process_res`, then each side resized to the nearest multiple of 14.
    #[default]
    UpperBoundResize,
    /// Longest side to `process_res`, then each side centre-cropped down to a multiple of 14.
    UpperBoundCrop,
    /// Shortest side to `process_res`, then each side resized to the nearest multiple of 14.
    LowerBoundResize,
    /// Shortest side to `process_res`, then each side centre-cropped down to a multiple of 14.
    LowerBoundCrop,
}

impl ResizeMethod {
    /// All methods, in the reference's order.
    pub const ALL: [ResizeMethod; 4] =
        [Self::UpperBoundResize, Self::UpperBoundCrop, Self::LowerBoundResize, Self::LowerBoundCrop];

    /// The reference's name (`upper_bound_resize`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Self::UpperBoundResize => "upper_bound_resize",
            Self::UpperBoundCrop => "upper_bound_crop",
            Self::LowerBoundResize => "lower_bound_resize",
            Self::LowerBoundCrop => "lower_bound_crop",
        }
    }

    /// Whether the longest side (rather than the shortest) becomes `process_res`.
    pub fn is_upper_bound(self) -> bool {
        matches!(self, Self::UpperBoundResize | Self::UpperBoundCrop)
    }

    /// Whether sides reach a multiple of 14 by cropping (rather than by resizing).
    pub fn crops(self) -> bool {
        matches!(self, Self::UpperBoundCrop | Self::LowerBoundCrop)
    }
}

impl fmt::Display for ResizeMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An unknown [`ResizeMethod`] name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownResizeMethod(pub String);

impl fmt::Display for UnknownResizeMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<_> = ResizeMethod::ALL.iter().map(|m| m.name()).collect();
        write!(f, "unknown resize method `{}`; valid: {}", self.0, names.join(", "))
    }
}

impl std::error::Error for UnknownResizeMethod {}

impl FromStr for ResizeMethod {
    type Err = UnknownResizeMethod;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|m| m.name() == s).ok_or_else(|| UnknownResizeMethod(s.to_string()))
    }
}

/// Python's `int(round(x))`: round half to even.
pub fn round_half_even(x: f64) -> i64 {
    x.round_ties_even() as i64
}

/// The multiple of `p` nearest to `x`, ties going up (the reference's `nearest_multiple`).
pub fn nearest_multiple(x: usize, p: usize) -> usize {
    let down = x / p * p;
    let up = down + p;
    if up - x <= x - down {
        up
    } else {
        down
    }
}

/// How the divisible-by-14 step changed the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Divisible {
    /// The sides were already multiples of 14.
    Unchanged,
    /// Resized (the `*_resize` methods) with this interpolation.
    Resize(Interpolation),
    /// Centre-cropped (the `*_crop` methods) from this offset.
    Crop {
        /// Columns removed on the left.
        left: usize,
        /// Rows removed on the top.
        top: usize,
    },
}

/// The geometry of one image through the per-image steps. Sizes are `(width, height)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// The input size.
    pub original: (usize, usize),
    /// The interpolation of the boundary resize, `None` when the bound side already had the
    /// target length.
    pub boundary: Option<Interpolation>,
    /// The size after the boundary resize.
    pub resized: (usize, usize),
    /// What the divisible-by-14 step did.
    pub divisible: Divisible,
    /// The size after the divisible-by-14 step: the image's processed size.
    pub size: (usize, usize),
}

impl Plan {
    /// Plans one image of `width × height` pixels. Errors when the result would not have both
    /// sides positive multiples of 14 (degenerate sizes or aspect ratios, which the reference
    /// lets through to fail later in the network).
    pub fn new(width: usize, height: usize, process_res: usize, method: ResizeMethod) -> Result<Self, Da3Error> {
        if width == 0 || height == 0 {
            return Err(Da3Error::Input(format!("image is {width}x{height} pixels; it must not be empty")));
        }
        if process_res == 0 {
            return Err(Da3Error::Input("process_res must be positive".into()));
        }
        let (boundary, resized) = boundary_resize(width, height, process_res, method);
        let (w, h) = resized;
        let (divisible, size) = if method.crops() {
            let (nw, nh) = (w / PATCH_SIZE * PATCH_SIZE, h / PATCH_SIZE * PATCH_SIZE);
            if (nw, nh) == (w, h) {
                (Divisible::Unchanged, resized)
            } else {
                (Divisible::Crop { left: (w - nw) / 2, top: (h - nh) / 2 }, (nw, nh))
            }
        } else {
            let nw = nearest_multiple(w, PATCH_SIZE).max(1);
            let nh = nearest_multiple(h, PATCH_SIZE).max(1);
            if (nw, nh) == (w, h) {
                (Divisible::Unchanged, resized)
            } else {
                let grows = nw > w || nh > h;
                (Divisible::Resize(if grows { Interpolation::Cubic } else { Interpolation::Area }), (nw, nh))
            }
        };
        let plan = Self { original: (width, height), boundary, resized, divisible, size };
        let (fw, fh) = size;
        if fw == 0 || fh == 0 || fw % PATCH_SIZE != 0 || fh % PATCH_SIZE != 0 {
            return Err(Da3Error::Input(format!(
                "a {width}x{height} image becomes {w}x{h} with {method} at process_res {process_res}, \
                 then {fw}x{fh}, which is not a multiple of {PATCH_SIZE} on both sides; \
                 the image is too small or too elongated (use a larger process_res or another method)"
            )));
        }
        Ok(plan)
    }

    /// The size before any crop, after all resizes: `resized` for the crop methods, `size`
    /// for the resize methods.
    pub fn scaled_size(&self) -> (usize, usize) {
        match self.divisible {
            Divisible::Crop { .. } => self.resized,
            _ => self.size,
        }
    }

    /// The crop offset `(left, top)` of the divisible step (0 for the resize methods).
    pub fn crop_offset(&self) -> (usize, usize) {
        match self.divisible {
            Divisible::Crop { left, top } => (left, top),
            _ => (0, 0),
        }
    }

    /// Carries a camera matrix through the steps exactly like the reference: each resize
    /// scales row 0 by `w / orig_w` and row 1 by `h / orig_h` (the factor is a Python float,
    /// rounded to f32 first for a float32 matrix), the crop subtracts `(orig - new) // 2` from
    /// cx and cy.
    pub fn update_intrinsics(&self, k: Intrinsics) -> Intrinsics {
        let k = k.scaled(self.original, self.resized);
        match self.divisible {
            Divisible::Crop { .. } => {
                k.shifted(((self.resized.0 - self.size.0) / 2, (self.resized.1 - self.size.1) / 2))
            }
            _ => k.scaled(self.resized, self.size),
        }
    }
}

/// The boundary resize: `(interpolation, new size)`.
fn boundary_resize(w: usize, h: usize, target: usize, method: ResizeMethod) -> (Option<Interpolation>, (usize, usize)) {
    let side = if method.is_upper_bound() { w.max(h) } else { w.min(h) };
    if side == target {
        return (None, (w, h));
    }
    let scale = target as f64 / side as f64;
    let new = |d: usize| round_half_even(d as f64 * scale).max(1) as usize;
    let interpolation = if scale > 1.0 { Interpolation::Cubic } else { Interpolation::Area };
    (Some(interpolation), (new(w), new(h)))
}

/// A 3×3 pinhole camera matrix in the precision the reference computes it in: the numpy
/// dtype of the intrinsics array given to it. Its output is float32 either way
/// ([`Intrinsics::to_f32`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Intrinsics {
    /// A float32 array (the reference computes in float32).
    F32([[f32; 3]; 3]),
    /// A float64 array (the reference computes in float64, then returns float32).
    F64([[f64; 3]; 3]),
}

impl Intrinsics {
    /// The matrix as the reference returns it (`.float()`).
    pub fn to_f32(&self) -> [[f32; 3]; 3] {
        match self {
            Self::F32(k) => *k,
            Self::F64(k) => k.map(|r| r.map(|v| v as f32)),
        }
    }

    /// The matrix in f64 (exact for both precisions).
    pub fn to_f64(&self) -> [[f64; 3]; 3] {
        match self {
            Self::F32(k) => k.map(|r| r.map(f64::from)),
            Self::F64(k) => *k,
        }
    }

    /// `_resize_ixt`: `K[:1] *= w / orig_w; K[1:2] *= h / orig_h` in the matrix's precision.
    pub fn scaled(self, from: (usize, usize), to: (usize, usize)) -> Self {
        let fx = to.0 as f64 / from.0 as f64;
        let fy = to.1 as f64 / from.1 as f64;
        match self {
            Self::F32(mut k) => {
                let (fx, fy) = (fx as f32, fy as f32);
                k[0] = k[0].map(|v| v * fx);
                k[1] = k[1].map(|v| v * fy);
                Self::F32(k)
            }
            Self::F64(mut k) => {
                k[0] = k[0].map(|v| v * fx);
                k[1] = k[1].map(|v| v * fy);
                Self::F64(k)
            }
        }
    }

    /// `K[0, 2] -= left; K[1, 2] -= top` (numpy computes the float32 case in f64 and stores
    /// it back rounded).
    pub fn shifted(self, (left, top): (usize, usize)) -> Self {
        match self {
            Self::F32(mut k) => {
                k[0][2] = (k[0][2] as f64 - left as f64) as f32;
                k[1][2] = (k[1][2] as f64 - top as f64) as f32;
                Self::F32(k)
            }
            Self::F64(mut k) => {
                k[0][2] -= left as f64;
                k[1][2] -= top as f64;
                Self::F64(k)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_round_is_half_even() {
        assert_eq!(round_half_even(283.5), 284);
        assert_eq!(round_half_even(282.5), 282);
        assert_eq!(round_half_even(0.5), 0);
        assert_eq!(round_half_even(1.5), 2);
        assert_eq!(round_half_even(2.4999), 2);
        assert_eq!(round_half_even(2.5001), 3);
    }

    #[test]
    fn nearest_multiple_ties_go_up() {
        assert_eq!(nearest_multiple(284, 14), 280);
        assert_eq!(nearest_multiple(287, 14), 294); // 7 either way: up
        assert_eq!(nearest_multiple(286, 14), 280);
        assert_eq!(nearest_multiple(288, 14), 294);
        assert_eq!(nearest_multiple(280, 14), 280);
        assert_eq!(nearest_multiple(7, 14), 14);
        assert_eq!(nearest_multiple(6, 14), 0);
        assert_eq!(nearest_multiple(0, 14), 0);
    }

    #[test]
    fn spec_examples() {
        let p = Plan::new(1920, 1080, 504, ResizeMethod::UpperBoundResize).unwrap();
        assert_eq!(p.resized, (504, 284));
        assert_eq!(p.size, (504, 280));
        assert_eq!(p.boundary, Some(Interpolation::Area));
        assert_eq!(p.divisible, Divisible::Resize(Interpolation::Area));
        let p = Plan::new(640, 480, 504, ResizeMethod::UpperBoundResize).unwrap();
        assert_eq!((p.size, p.divisible), ((504, 378), Divisible::Unchanged));
        let p = Plan::new(1920, 1080, 504, ResizeMethod::UpperBoundCrop).unwrap();
        assert_eq!((p.size, p.divisible), ((504, 280), Divisible::Crop { left: 0, top: 2 }));
        let p = Plan::new(1920, 1080, 504, ResizeMethod::LowerBoundResize).unwrap();
        assert_eq!((p.resized, p.size), ((896, 504), (896, 504)));
        let p = Plan::new(100, 60, 504, ResizeMethod::UpperBoundResize).unwrap();
        assert_eq!(p.boundary, Some(Interpolation::Cubic));
        assert_eq!((p.resized, p.size), ((504, 302), (504, 308)));
        assert_eq!(p.divisible, Divisible::Resize(Interpolation::Cubic));
    }

    #[test]
    fn degenerate_sizes_are_errors() {
        assert!(Plan::new(0, 10, 504, ResizeMethod::UpperBoundResize).is_err());
        assert!(Plan::new(1000, 5, 504, ResizeMethod::UpperBoundResize).is_err()); // 504x3 -> 504x1
        assert!(Plan::new(1000, 20, 504, ResizeMethod::UpperBoundCrop).is_err()); // 504x10 -> 504x0
        assert!(Plan::new(10, 10, 0, ResizeMethod::UpperBoundResize).is_err());
        assert!(Plan::new(10, 10, 10, ResizeMethod::UpperBoundCrop).is_err());
        assert!(Plan::new(10, 10, 10, ResizeMethod::UpperBoundResize).is_ok()); // 10 -> 14
    }

    #[test]
    fn method_names_round_trip() {
        for m in ResizeMethod::ALL {
            assert_eq!(m.name().parse::<ResizeMethod>().unwrap(), m);
        }
        let err = "upper".parse::<ResizeMethod>().unwrap_err().to_string();
        assert!(err.contains("upper_bound_resize") && err.contains("lower_bound_crop"), "{err}");
    }

    #[test]
    fn intrinsics_follow_resize_and_crop() {
        let k = Intrinsics::F64([[1000.0, 0.0, 960.0], [0.0, 1000.0, 540.0], [0.0, 0.0, 1.0]]);
        let p = Plan::new(1920, 1080, 504, ResizeMethod::UpperBoundCrop).unwrap();
        let out = p.update_intrinsics(k).to_f64();
        assert_eq!(out[0], [1000.0 * (504.0 / 1920.0), 0.0, 960.0 * (504.0 / 1920.0)]);
        assert_eq!(out[1], [0.0, 1000.0 * (284.0 / 1080.0), 540.0 * (284.0 / 1080.0) - 2.0]);
        assert_eq!(out[2], [0.0, 0.0, 1.0]);
    }
}
