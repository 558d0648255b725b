//! `da3::kernel_cache::install_folder` against CubeCL's process-wide settings (its own test
//! binary: those settings can be set once per process, before any GPU backend runs).

use burn_cubecl::cubecl::config::autotune::AutotuneLevel;
use burn_cubecl::cubecl::config::cache::CacheConfig;
use burn_cubecl::cubecl::config::{CubeClRuntimeConfig, RuntimeConfig};
use da3::kernel_cache::{install_folder, KernelCache};

#[test]
fn install_sets_the_cache_folder_keeps_cubecls_environment_and_happens_once() {
    let folder = std::env::temp_dir().join(format!("da3-kernel-cache-it-{}", std::process::id()));
    // CubeCL's own environment variables still apply (read as CubeCL reads them).
    // This binary's only test: no other thread reads the environment meanwhile.
    std::env::set_var("CUBECL_AUTOTUNE_LEVEL", "minimal");

    assert_eq!(install_folder(&folder), KernelCache::Folder { path: folder.clone(), fresh: true });
    let config = CubeClRuntimeConfig::get();
    assert!(matches!(&config.compilation.cache, Some(CacheConfig::File(p)) if *p == folder), "{:?}", config.compilation.cache);
    assert!(matches!(config.autotune.level, AutotuneLevel::Minimal));

    // Settings already in use cannot change: a second install says so and changes nothing.
    assert_eq!(install_folder(&folder.join("other")), KernelCache::TooLate);
    assert!(matches!(&CubeClRuntimeConfig::get().compilation.cache, Some(CacheConfig::File(p)) if *p == folder));
    assert!(folder.is_dir() && !folder.join("other").exists());
    std::fs::remove_dir_all(&folder).unwrap();
}
