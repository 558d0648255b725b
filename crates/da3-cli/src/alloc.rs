//! Process-wide allocator settings for the `da3` command and the benchmarks: freed tensor
//! memory stays in the heap for the next op instead of going back to the OS.
//!
//! Why: with glibc's defaults a CPU pass returns most of its activation buffers to the kernel
//! when they are freed (trimming the heap top; blocks above the mmap threshold are unmapped)
//! and takes them back as fresh zero-filled pages on the next op. On da3-small (504×378,
//! flex, 2 threads) that was 160k page faults per run of 6 passes; with the settings below
//! 75k (the first touch of the peak memory and the weights). Same-run A/B
//! (`tools/bench/ab.sh`, `da3-bench --default-malloc` against the default): 0.92× the median
//! pass time at 8 views; at 1 view 0.96× in one run and 0.999× in another (within noise).
//! The price: peak RSS at 8 views 872 MB instead of 737 (1 view: unchanged, 296 MB), and a
//! process keeps its high-water mark of heap memory until it
//! exits (as PyTorch's caching allocators do); blocks above 32 MiB are still unmapped when freed.

/// Largest mmap threshold glibc's `mallopt` accepts on 64-bit (half its 64 MiB heap size).
const MMAP_THRESHOLD: i32 = 32 << 20;

/// Keeps freed memory for reuse (glibc: mmap threshold 32 MiB, no heap trimming below 2 GiB
/// free), unless the user configured malloc through `GLIBC_TUNABLES` or `MALLOC_*_`
/// variables; a no-op on other C libraries. Returns whether the settings were applied.
/// Call it once at the start of `main`, before the threads start.
pub fn keep_freed_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let user_set = std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("malloc"))
            || std::env::vars_os().any(|(k, _)| k.to_string_lossy().starts_with("MALLOC_"));
        if user_set {
            return false;
        }
        // SAFETY: mallopt only changes malloc's parameters; both values are in range.
        unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 && libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    false
}
