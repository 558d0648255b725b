//! `da3_cli::alloc::keep_freed_memory`: freed activation-sized buffers come back without new
//! page faults, where glibc's defaults trim them off the heap and fault every page in again on
//! the next op. Its own process without the test harness (`harness = false`): the setting is
//! process-wide, and the buffers are allocated on the main thread, as the model's outputs are
//! (glibc's per-thread arenas also delete a heap that falls empty whatever the settings).

/// Minor page faults of the calling thread so far.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn thread_minor_faults() -> i64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct it is given.
    assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_THREAD, usage.as_mut_ptr()) }, 0);
    // SAFETY: initialized by the successful call above.
    unsafe { usage.assume_init() }.ru_minflt
}

/// One op's worth of buffers: allocates `count` buffers of `bytes`, touches every page, frees
/// them all; returns the page faults it took.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn faults_of_one_round(count: usize, bytes: usize) -> i64 {
    let before = thread_minor_faults();
    let buffers: Vec<Vec<u8>> = (0..count).map(|_| vec![1u8; bytes]).collect();
    std::hint::black_box(&buffers);
    drop(buffers);
    thread_minor_faults() - before
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn main() {
    // 8 × 8 MiB (16,384 pages), like a backbone layer's activations at a few views.
    let (count, bytes) = (8, 8 << 20);
    if std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("malloc")) || std::env::vars().any(|(k, _)| k.starts_with("MALLOC_")) {
        eprintln!("skipped: malloc is configured through the environment");
        return;
    }
    let defaults: Vec<i64> = (0..3).map(|_| faults_of_one_round(count, bytes)).collect();
    assert!(defaults[2] > 8_000, "glibc's defaults faulted only {defaults:?} pages: the test measures nothing");
    assert!(da3_cli::alloc::keep_freed_memory(), "settings not applied");
    let kept: Vec<i64> = (0..3).map(|_| faults_of_one_round(count, bytes)).collect();
    assert!(kept[2] < 200, "{kept:?} page faults per round kept, glibc's defaults {defaults:?}");
    println!("freed buffers reused: page faults per round {kept:?}, glibc's defaults {defaults:?}: ok");
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn main() {
    println!("skipped: keep_freed_memory configures glibc malloc only");
}
