//! Compiled GPU kernels kept on disk between runs.
//!
//! Burn's CUDA backend (CubeCL) compiles every kernel at its first launch in a process: NVRTC
//! turns the generated CUDA C++ into PTX, then the driver JIT-compiles the PTX for the GPU. At
//! the one H100 session the first pass had not finished after minutes of it (README, "GPU
//! (H100)"), and every new `da3` process paid it again. CubeCL can keep NVRTC's PTX on disk (its
//! `[compilation] cache` setting, off unless a `cubecl.toml` sets it), and the CUDA driver keeps
//! its JIT output in a cache of its own (`~/.nv/ComputeCache`, on by default; `CUDA_CACHE_PATH`,
//! `CUDA_CACHE_MAXSIZE`). [`install_cuda`] turns CubeCL's cache on, so that a second run finds
//! both compilations done.
//!
//! Where: `DA3_KERNEL_CACHE=<folder>`, or `off`; by default `<user cache folder>/da3/kernels`
//! (`$XDG_CACHE_HOME` or `~/.cache` on Linux). Under it, one folder per (da3 version, hash of
//! our CubeCL kernels' source, Burn pin, GPU architecture), see [`build_key`]: CubeCL finds a
//! cached kernel by its id, which names the kernel and its compile-time settings but neither
//! its body nor the GPU it was compiled for, so a kernel changed in a newer da3 build, or one
//! cache shared by two GPU generations, would otherwise load a stale or foreign PTX.
//!
//! A `cubecl.toml` or `burn.toml` (section `[cubecl]`) that sets the compilation cache wins, and
//! CubeCL's own environment variables (`CUBECL_DEBUG_LOG`, `CUBECL_AUTOTUNE_LEVEL`, …) apply as
//! they would without da3: the configuration is read the way CubeCL reads it, then only the
//! cache folder is filled in.
//!
//! wgpu gains nothing from this today: CubeCL caches only SPIR-V there, and Burn's `wgpu`
//! backend compiles WGSL (kept by the driver's own pipeline cache where it has one).

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use burn_cubecl::cubecl::config::cache::CacheConfig;
use burn_cubecl::cubecl::config::{CubeClRuntimeConfig, RuntimeConfig};

/// The environment variable that moves or turns off the kernel cache.
pub const ENV_VAR: &str = "DA3_KERNEL_CACHE";

/// What [`install_cuda`] (or [`install_folder`]) did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelCache {
    /// CubeCL keeps compiled kernels in this folder. `fresh`: the folder did not exist before,
    /// so this run compiles every kernel it launches and later runs reuse them.
    Folder { path: PathBuf, fresh: bool },
    /// A `cubecl.toml` or `burn.toml` sets CubeCL's compilation cache; left as it is.
    UserConfigured,
    /// Turned off with `DA3_KERNEL_CACHE=off`, or no user cache folder is known.
    Off,
    /// CubeCL's settings had already been read (a GPU backend ran earlier in this process), and
    /// they cannot change any more.
    TooLate,
    /// The cache folder cannot be created or written (the reason); kernels are compiled again
    /// in every process, as without a cache.
    Unwritable { path: PathBuf, reason: String },
    /// CUDA cannot run here: no driver library, the driver does not start, or no device with
    /// this ordinal (the text says which).
    NoDevice(String),
}

/// Turns CubeCL's compilation cache on for CUDA device `ordinal`, in the folder the module
/// documentation describes. Call it before the first use of a CUDA device in the process (the
/// `da3` CLI does, in its backend dispatch); later it returns [`KernelCache::TooLate`]. Asks the
/// driver for the device's architecture first, so [`KernelCache::NoDevice`] also says, before
/// Burn's backend would panic, that CUDA cannot run here and why.
#[cfg(feature = "cuda")]
pub fn install_cuda(ordinal: usize) -> KernelCache {
    let (major, minor) = match cuda_compute_capability(ordinal) {
        Ok(capability) => capability,
        Err(why) => return KernelCache::NoDevice(why),
    };
    match cache_root(std::env::var_os(ENV_VAR).as_deref(), default_root()) {
        Some(root) => install_folder(&root.join(build_key(&format!("sm{major}{minor}")))),
        None => KernelCache::Off,
    }
}

/// The compute capability of CUDA device `ordinal`, or why there is none.
#[cfg(feature = "cuda")]
fn cuda_compute_capability(ordinal: usize) -> Result<(i32, i32), String> {
    use cudarc::driver::{result, sys, sys::CUdevice_attribute as Attribute};
    // cudarc panics (rather than erring) when libcuda cannot be loaded: look first.
    // SAFETY: only tries to open the library (dlopen) under its usual names.
    if !unsafe { sys::is_culib_present() } {
        return Err("no CUDA driver library (libcuda) on this machine".into());
    }
    let query = || -> Result<(i32, i32), String> {
        result::init().map_err(|e| format!("the CUDA driver does not start: {e:?}"))?;
        let device = result::device::get(ordinal as i32).map_err(|e| format!("no CUDA device {ordinal}: {e:?}"))?;
        let attribute = |which| {
            // SAFETY: `device` is a valid handle from cuDeviceGet; the attributes are plain ints.
            unsafe { result::device::get_attribute(device, which) }.map_err(|e| format!("CUDA device {ordinal}: {e:?}"))
        };
        Ok((
            attribute(Attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)?,
            attribute(Attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)?,
        ))
    };
    std::panic::catch_unwind(query).unwrap_or_else(|_| Err("the CUDA driver library does not load".into()))
}

/// Makes `folder` CubeCL's compilation cache for this process, unless a configuration file
/// sets one ([`KernelCache::UserConfigured`]), CubeCL's settings were already read
/// ([`KernelCache::TooLate`]) or the folder cannot be written ([`KernelCache::Unwritable`]).
pub fn install_folder(folder: &Path) -> KernelCache {
    // The same slot CubeCL's `get()` fills on first use; holding it while deciding keeps a
    // concurrent first use from slipping in between.
    let mut slot = CubeClRuntimeConfig::storage().lock();
    if slot.is_some() {
        return KernelCache::TooLate;
    }
    // Read as CubeCL would have (files in the working folder or its parents, then its
    // environment variables), so that everything else stays the user's.
    let mut config = CubeClRuntimeConfig::from_current_dir().override_from_env();
    let outcome = fill_in_cache(&mut config, folder);
    *slot = Some(Arc::new(config));
    outcome
}

/// Sets `config`'s compilation cache to `folder` (created here) unless it sets one already or
/// the folder cannot be written: CubeCL panics when it cannot open its cache files (a
/// read-only home), so a cache it could not use would stop runs that work without one.
fn fill_in_cache(config: &mut CubeClRuntimeConfig, folder: &Path) -> KernelCache {
    if config.compilation.cache.is_some() {
        return KernelCache::UserConfigured;
    }
    let fresh = !folder.exists();
    if let Err(err) = writable_folder(folder) {
        return KernelCache::Unwritable { path: folder.to_path_buf(), reason: err.to_string() };
    }
    config.compilation.cache = Some(CacheConfig::File(folder.to_path_buf()));
    KernelCache::Folder { path: folder.to_path_buf(), fresh }
}

/// Creates `folder` if needed and checks that a file can be created in it.
fn writable_folder(folder: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(folder)?;
    let probe = folder.join(format!(".da3-write-probe-{}", std::process::id()));
    std::fs::File::create(&probe)?;
    std::fs::remove_file(&probe)
}

/// The cache's root folder: `DA3_KERNEL_CACHE`'s value if set (`off`, `0`, `false` or empty:
/// none), else `default`.
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
fn cache_root(env: Option<&OsStr>, default: Option<PathBuf>) -> Option<PathBuf> {
    match env {
        Some(value) => {
            let text = value.to_string_lossy();
            let off = ["off", "0", "false", "no", ""].iter().any(|word| text.trim().eq_ignore_ascii_case(word));
            (!off).then(|| PathBuf::from(value))
        }
        None => default,
    }
}

/// `<user cache folder>/da3/kernels` (`None` where the platform has none).
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
fn default_root() -> Option<PathBuf> {
    dirs::cache_dir().map(|dir| dir.join("da3").join("kernels"))
}

/// The Burn release da3 is built against (pinned `=0.21.0` in the workspace); part of
/// [`build_key`] because Burn's fused kernels are cached by id too.
const BURN_VERSION: &str = "burn0.21.0";

/// The sources of our CubeCL kernels, whose bodies a cached kernel's id does not cover.
const KERNEL_SOURCES: [&[u8]; 2] = [include_bytes!("kernels/attention/cube.rs"), include_bytes!("kernels/attention/mod.rs")];

/// The folder name for one build and GPU: `<da3 version>-<kernel source hash>-<burn>-<gpu>`.
pub fn build_key(gpu: &str) -> String {
    format!("{}-{:016x}-{BURN_VERSION}-{gpu}", env!("CARGO_PKG_VERSION"), fnv1a(&KERNEL_SOURCES))
}

/// 64-bit FNV-1a over the concatenated `parts` (stable across builds and platforms, unlike
/// `std`'s hasher).
const fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    let mut p = 0;
    while p < parts.len() {
        let bytes = parts[p];
        let mut i = 0;
        while i < bytes.len() {
            hash = (hash ^ bytes[i] as u64).wrapping_mul(0x0100_0000_01b3);
            i += 1;
        }
        p += 1;
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_environment_variable_moves_or_turns_off_the_cache() {
        let default = Some(PathBuf::from("/home/u/.cache/da3/kernels"));
        assert_eq!(cache_root(None, default.clone()), default);
        assert_eq!(cache_root(Some(OsStr::new("/scratch/k")), default.clone()), Some(PathBuf::from("/scratch/k")));
        for off in ["off", "OFF", "0", "false", "no", "", " off "] {
            assert_eq!(cache_root(Some(OsStr::new(off)), default.clone()), None, "{off:?}");
        }
        assert_eq!(cache_root(None, None), None);
    }

    #[test]
    fn the_build_key_names_version_sources_burn_and_gpu() {
        let key = build_key("sm90");
        let parts: Vec<&str> = key.split('-').collect();
        assert_eq!(parts.len(), 4, "{key}");
        assert_eq!(parts[0], env!("CARGO_PKG_VERSION"));
        assert_eq!(parts[1], format!("{:016x}", fnv1a(&KERNEL_SOURCES)));
        assert_eq!((parts[2], parts[3]), ("burn0.21.0", "sm90"));
        assert_ne!(build_key("sm90"), build_key("sm80"));
        // FNV-1a's published test vectors; the parts hash as their concatenation.
        assert_eq!(fnv1a(&[]), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(&[b"a"]), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(&[b"foo", b"bar"]), fnv1a(&[b"foobar"]));
        assert_eq!(fnv1a(&[b"foobar"]), 0x85944171f73967e8);
    }

    /// [`BURN_VERSION`] is written by hand: it must follow the workspace's Burn pin, or a Burn
    /// upgrade would load the old Burn's fused kernels from the cache.
    #[test]
    fn the_burn_in_the_key_is_the_workspace_pin() {
        let manifest = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../Cargo.toml")).unwrap();
        let line = manifest.lines().find(|l| l.starts_with("burn = ")).expect("the workspace pins burn");
        let pin = line.split("version = \"=").nth(1).and_then(|rest| rest.split('"').next()).expect("an exact `=x.y.z` pin");
        assert_eq!(BURN_VERSION, format!("burn{pin}"), "update BURN_VERSION with the pin");
    }

    #[test]
    fn a_configured_cache_is_kept_and_an_unset_one_filled_in_where_writable() {
        let dir = std::env::temp_dir().join(format!("da3-kernel-cache-{}", std::process::id()));
        let folder = dir.join("build-key");
        let mut config = CubeClRuntimeConfig::default();
        assert_eq!(fill_in_cache(&mut config, &folder), KernelCache::Folder { path: folder.clone(), fresh: true });
        assert!(matches!(&config.compilation.cache, Some(CacheConfig::File(p)) if *p == folder));
        assert!(folder.is_dir(), "created, so that CubeCL can write there");
        assert_eq!(std::fs::read_dir(&folder).unwrap().count(), 0, "the write probe is removed");
        // An existing folder is not fresh.
        let mut config = CubeClRuntimeConfig::default();
        assert_eq!(fill_in_cache(&mut config, &folder), KernelCache::Folder { path: folder.clone(), fresh: false });

        // A `cubecl.toml` that sets the cache (and other settings): all of it kept.
        let file = dir.join("cubecl.toml");
        std::fs::write(&file, "[compilation]\ncache = \"global\"\n[autotune]\nlevel = \"minimal\"\n").unwrap();
        let mut user = CubeClRuntimeConfig::from_file_path(&file).unwrap();
        assert_eq!(fill_in_cache(&mut user, &folder), KernelCache::UserConfigured);
        assert!(matches!(user.compilation.cache, Some(CacheConfig::Global)));
        assert!(matches!(user.autotune.level, burn_cubecl::cubecl::config::autotune::AutotuneLevel::Minimal));

        // A folder that cannot be made (under a file, so even root cannot): no cache, and why.
        let blocked = file.join("kernels");
        let mut config = CubeClRuntimeConfig::default();
        match fill_in_cache(&mut config, &blocked) {
            KernelCache::Unwritable { path, reason } => assert!(path == blocked && !reason.is_empty()),
            other => panic!("{other:?}"),
        }
        assert!(config.compilation.cache.is_none(), "CubeCL would panic on a cache it cannot open");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
