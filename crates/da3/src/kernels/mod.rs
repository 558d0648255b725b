//! da3's own GPU kernels (WGSL sources in `shaders/`, CubeCL kernels in Rust).

pub mod attention;
