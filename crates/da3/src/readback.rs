//! The one place da3 copies a tensor from the device to the host.
//!
//! Every host readback of the library goes through [`to_host`], which counts them, so a test
//! can prove that a path (the engine API, [`crate::engine`]) reads nothing back: take
//! [`count`] before and after. `tests/no_readback_scan.rs` checks that no other library code
//! calls Burn's readback functions directly, so the counter sees them all.

use std::sync::atomic::{AtomicU64, Ordering};

use burn::tensor::{backend::Backend, Tensor};

static READBACKS: AtomicU64 = AtomicU64::new(0);

/// Number of device-to-host tensor copies made by this process so far.
pub fn count() -> u64 {
    READBACKS.load(Ordering::SeqCst)
}

/// Copies a float tensor to the host as f32 values in row-major order (blocks until the
/// device has computed it).
pub fn to_host<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    READBACKS.fetch_add(1, Ordering::SeqCst);
    t.into_data().convert::<f32>().into_vec::<f32>().expect("a float tensor converts to f32")
}
