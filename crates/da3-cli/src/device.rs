//! Runtime choice of the Burn backend among those compiled in through cargo features.

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};

use anyhow::Result;
use burn::tensor::backend::Backend;

use crate::UsageError;

/// A backend the user can ask for with `--device`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DeviceKind {
    /// Pure-Rust CPU backend (cargo feature `flex`).
    Flex,
    /// ndarray CPU backend (cargo feature `ndarray`).
    Ndarray,
    /// wgpu GPU backend: Vulkan, Metal, DX12 (cargo feature `wgpu`).
    Wgpu,
    /// CUDA GPU backend (cargo feature `cuda`).
    Cuda,
}

impl DeviceKind {
    /// Every kind, compiled in or not.
    pub const ALL: [DeviceKind; 4] = [Self::Flex, Self::Ndarray, Self::Wgpu, Self::Cuda];

    /// The cargo feature of `da3-cli` that compiles this backend in.
    pub fn feature(self) -> &'static str {
        match self {
            Self::Flex => "flex",
            Self::Ndarray => "ndarray",
            Self::Wgpu => "wgpu",
            Self::Cuda => "cuda",
        }
    }

    /// Whether this binary was built with the backend.
    pub fn is_compiled(self) -> bool {
        match self {
            Self::Flex => cfg!(feature = "flex"),
            Self::Ndarray => cfg!(feature = "ndarray"),
            Self::Wgpu => cfg!(feature = "wgpu"),
            Self::Cuda => cfg!(feature = "cuda"),
        }
    }

    /// The kinds compiled into this binary.
    pub fn compiled() -> Vec<DeviceKind> {
        Self::ALL.into_iter().filter(|k| k.is_compiled()).collect()
    }
}

impl fmt::Display for DeviceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.feature())
    }
}

/// Work that is generic over the backend; [`dispatch`] runs it on the chosen one.
pub trait BackendJob {
    /// What the job returns.
    type Output;
    /// Runs on backend `B` with its default device.
    fn run<B: Backend>(self, device: B::Device) -> Result<Self::Output>;
}

/// Runs `job` on the backend `kind` with its default device.
///
/// A backend that is not compiled in is a [`UsageError`] naming the cargo feature to enable;
/// a panic inside the backend (e.g. no GPU adapter) becomes an error instead of an abort.
pub fn dispatch<J: BackendJob>(kind: DeviceKind, job: J) -> Result<J::Output> {
    dispatch_with(kind, false, job)
}

/// [`dispatch`], with `unfused` choosing, for cuda and wgpu, the backend without Burn's op
/// fusion even in a build with the `fusion` feature (our GPU attention kernels run on both);
/// benchmarks use it to compare the two. CPU backends ignore it.
pub fn dispatch_with<J: BackendJob>(kind: DeviceKind, unfused: bool, job: J) -> Result<J::Output> {
    if !kind.is_compiled() {
        let compiled: Vec<String> = DeviceKind::compiled().iter().map(|k| k.to_string()).collect();
        return Err(UsageError(format!(
            "device `{kind}` is not compiled into this binary (compiled in: {}); rebuild with \
             `cargo build -p da3-cli --features {}`",
            if compiled.is_empty() { "none".to_string() } else { compiled.join(", ") },
            kind.feature()
        ))
        .into());
    }
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        #[cfg(all(feature = "cuda", any(target_os = "linux", target_os = "windows")))]
        if kind == DeviceKind::Cuda {
            keep_cuda_kernels()?;
        }
        if unfused { run_unfused(kind, job) } else { run_compiled(kind, job) }
    }));
    match outcome {
        Ok(result) => result,
        Err(payload) => {
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_string());
            Err(anyhow::anyhow!("the `{kind}` backend failed: {msg}"))
        }
    }
}

/// Before the first CUDA use in the process: compiled kernels are kept on disk, so that only
/// the first run of a da3 build on a GPU pays their compilation (`da3::kernel_cache`; minutes on
/// an H100 at one session). Says so when this run is that first one, and fails with the
/// driver's reason where CUDA cannot run (instead of the backend's panic from a worker thread).
#[cfg(all(feature = "cuda", any(target_os = "linux", target_os = "windows")))]
fn keep_cuda_kernels() -> Result<()> {
    use da3::kernel_cache::{install_cuda, KernelCache, ENV_VAR};
    match install_cuda(0) {
        KernelCache::NoDevice(why) => Err(anyhow::anyhow!(
            "`--device cuda` cannot run here: {why}. Install the NVIDIA driver, or pick another device \
             (--device wgpu for Vulkan/Metal/DX12, --device flex for the CPU)"
        )),
        KernelCache::Folder { path, fresh: true } => {
            eprintln!(
                "note: first CUDA run of this da3 build on this GPU: its kernels are compiled as they are first \
                 used, which can take minutes, and kept in {} for later runs ({ENV_VAR}=<folder> or `off` to change this)",
                path.display()
            );
            Ok(())
        }
        KernelCache::Unwritable { path, reason } => {
            eprintln!(
                "warning: cannot keep compiled CUDA kernels in {} ({reason}): every run compiles them again; \
                 set {ENV_VAR}=<folder> to a writable folder",
                path.display()
            );
            Ok(())
        }
        KernelCache::UserConfigured | KernelCache::Off | KernelCache::TooLate | KernelCache::Folder { .. } => Ok(()),
    }
}

#[allow(unreachable_patterns, unused_variables)]
fn run_compiled<J: BackendJob>(kind: DeviceKind, job: J) -> Result<J::Output> {
    match kind {
        #[cfg(feature = "flex")]
        DeviceKind::Flex => job.run::<da3::backends::Flex>(Default::default()),
        #[cfg(feature = "ndarray")]
        DeviceKind::Ndarray => job.run::<da3::backends::NdArray>(Default::default()),
        #[cfg(feature = "wgpu")]
        DeviceKind::Wgpu => job.run::<da3::backends::Wgpu>(burn::backend::wgpu::WgpuDevice::default()),
        #[cfg(feature = "cuda")]
        DeviceKind::Cuda => job.run::<da3::backends::Cuda>(burn::backend::cuda::CudaDevice::default()),
        _ => unreachable!("checked by is_compiled"),
    }
}

#[allow(unreachable_patterns)]
fn run_unfused<J: BackendJob>(kind: DeviceKind, job: J) -> Result<J::Output> {
    match kind {
        #[cfg(feature = "wgpu")]
        DeviceKind::Wgpu => job.run::<da3::backends::WgpuUnfused>(burn::backend::wgpu::WgpuDevice::default()),
        #[cfg(feature = "cuda")]
        DeviceKind::Cuda => job.run::<da3::backends::CudaUnfused>(burn::backend::cuda::CudaDevice::default()),
        _ => run_compiled(kind, job),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Name;
    impl BackendJob for Name {
        type Output = String;
        fn run<B: Backend>(self, _device: B::Device) -> Result<String> {
            Ok(B::name(&Default::default()))
        }
    }

    #[test]
    fn missing_backend_names_the_feature() {
        for kind in DeviceKind::ALL.into_iter().filter(|k| !k.is_compiled()) {
            let err = dispatch(kind, Name).unwrap_err();
            assert!(err.downcast_ref::<UsageError>().is_some());
            assert!(err.to_string().contains(&format!("--features {}", kind.feature())), "{err}");
        }
    }

    #[cfg(feature = "flex")]
    #[test]
    fn flex_runs() {
        assert!(!dispatch(DeviceKind::Flex, Name).unwrap().is_empty());
    }
}
