//! What memory the device offers: system RAM and this process's resident set for the CPU
//! backends (Linux `/proc`), caller-supplied numbers for GPUs.
//!
//! GPUs: Burn 0.21's `Backend` trait exposes no free-memory query. On CUDA [`cuda_memory`]
//! asks the driver (`cuMemGetInfo` through cudarc, the library Burn's CUDA runtime links);
//! wgpu has no free-memory query at all (CubeCL reports only the adapter's largest single
//! buffer, `DeviceProperties::memory.max_page_size`: [`wgpu_max_buffer`]). A caller fills [`DeviceMemory::gpu`] with
//! what it has; without a number the budget is `--max-memory` alone, and errors that surface (a
//! panic or `sync` error whose message speaks of memory) are recovered by splitting the chunk.

/// The memory a device offers to one job.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceMemory {
    /// Bytes the job may still take (system `MemAvailable`, GPU free memory); `None` when
    /// unknown.
    pub available: Option<u64>,
    /// Whether the device's memory is this process's host memory (CPU backends): host-side
    /// buffers (decoded views, returned predictions) then count against the budget too, and
    /// the weights are already part of `resident`.
    pub host: bool,
    /// Bytes the job holds already before any pass: on the host the process's resident set
    /// (weights included once loaded) less the freed heap memory the allocator keeps for
    /// reuse ([`heap_free_bytes`]), on a GPU the weights.
    pub resident: u64,
    /// The largest single buffer the device allows (wgpu), if limited.
    pub max_buffer: Option<u64>,
}

/// Share of the available memory a plan may use; the rest is left to the OS, other processes
/// and estimation error.
pub const AVAILABLE_SAFETY: f64 = 0.8;

impl DeviceMemory {
    /// The host as seen now: `MemAvailable` and this process's live resident set (`VmRSS`
    /// less [`heap_free_bytes`]).
    ///
    /// Why the freed heap is left out: a process that ran a pass before (`da3 serve`, an
    /// engine predicting again) keeps that pass's freed buffers in its heap (the `da3`
    /// command disables trimming on purpose, see its `alloc.rs`), and the next pass reuses
    /// them. Counting them as held and adding the pass on top counted that memory twice: a
    /// 16-view request that fit `--max-memory 1GiB` was refused as needing 1.09 GiB on every
    /// later try (RSS 146 MiB before the first request, 680 MiB after it).
    ///
    /// Run a process's passes from one thread: glibc keeps a thread's freed heap in that
    /// thread's malloc arena, where a pass on another thread cannot reuse it, so passes taking
    /// turns on several threads can each add a pass's worth of memory (`da3 serve` did, until
    /// its requests moved to one thread: see its `worker.rs`).
    pub fn host() -> Self {
        let resident = process_rss().unwrap_or(0).saturating_sub(heap_free_bytes().unwrap_or(0));
        Self { available: mem_available(), host: true, resident, max_buffer: None }
    }

    /// A GPU with `free` bytes (if known), `weights` bytes resident and a single-buffer limit.
    pub fn gpu(free: Option<u64>, weights: u64, max_buffer: Option<u64>) -> Self {
        Self { available: free.map(|f| f + weights), host: false, resident: weights, max_buffer }
    }

    /// The budget of a job: the smaller of `max_memory` and [`AVAILABLE_SAFETY`] × what the
    /// device offers; `None` when neither is known (plan a single pass).
    pub fn budget(&self, max_memory: Option<u64>) -> Option<u64> {
        let offered = self.available.map(|a| (a as f64 * AVAILABLE_SAFETY) as u64 + if self.host { self.resident } else { 0 });
        match (max_memory, offered) {
            (Some(m), Some(o)) => Some(m.min(o)),
            (m, o) => m.or(o),
        }
    }
}

/// The largest single buffer wgpu allows on `device`'s adapter: what CubeCL reports as its
/// page size (`DeviceProperties::memory.max_page_size`, the adapter's
/// `max_storage_buffer_binding_size`), which no one tensor may exceed. Initializes the device
/// if it is not yet (as loading a model would). For [`DeviceMemory::gpu`]'s `max_buffer`.
#[cfg(all(feature = "wgpu", not(target_arch = "wasm32")))]
pub fn wgpu_max_buffer(device: &burn::backend::wgpu::WgpuDevice) -> u64 {
    use burn_cubecl::cubecl::Runtime;
    burn::backend::wgpu::WgpuRuntime::client(device).properties().memory.max_page_size
}

/// Free and total memory of CUDA device `ordinal` in bytes, from the driver (`cuMemGetInfo` on
/// the device's primary context, the one Burn's CUDA runtime uses, so memory its pool holds
/// counts as used); `None` where the driver cannot be loaded or the device does not exist.
/// The calling thread's current CUDA context is restored afterwards.
#[cfg(all(feature = "cuda", not(target_arch = "wasm32")))]
pub fn cuda_memory(ordinal: usize) -> Option<(u64, u64)> {
    use cudarc::driver::{result::ctx, CudaContext};
    // cudarc panics (rather than erring) when libcuda cannot be loaded: a machine without the
    // driver answers None.
    std::panic::catch_unwind(|| {
        let previous = ctx::get_current().ok().flatten();
        let info = CudaContext::new(ordinal).ok().and_then(|c| c.mem_get_info().ok());
        if let Some(previous) = previous {
            // SAFETY: a context that was current on this thread a moment ago, still alive.
            let _ = unsafe { ctx::set_current(previous) };
        }
        info.map(|(free, total)| (free as u64, total as u64))
    })
    .ok()
    .flatten()
}

/// `MemAvailable` of `/proc/meminfo` in bytes (Linux); `None` elsewhere.
pub fn mem_available() -> Option<u64> {
    proc_field("/proc/meminfo", "MemAvailable:")
}

/// This process's resident set (`VmRSS`) in bytes (Linux); `None` elsewhere.
pub fn process_rss() -> Option<u64> {
    proc_field("/proc/self/status", "VmRSS:")
}

/// Bytes of freed memory the C allocator keeps in its heaps for reuse: glibc's
/// `mallinfo2().fordblks` (free chunks of every arena, each heap's top included). Those pages
/// were written before being freed and stay resident until trimmed, so they are part of
/// `VmRSS` without being held by anything. `None` on other C libraries and on glibc older
/// than 2.33, which lacks `mallinfo2`: it is looked up at run time so that the binary still
/// starts there (the older `mallinfo`'s `int` fields wrap at 2 GiB).
pub fn heap_free_bytes() -> Option<u64> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        type Mallinfo2 = unsafe extern "C" fn() -> libc::mallinfo2;
        static MALLINFO2: std::sync::OnceLock<Option<Mallinfo2>> = std::sync::OnceLock::new();
        let mallinfo2 = MALLINFO2.get_or_init(|| {
            // SAFETY: dlsym with a NUL-terminated name; RTLD_DEFAULT searches the loaded libc.
            let symbol = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"mallinfo2".as_ptr()) };
            // SAFETY: glibc's `mallinfo2` has exactly this signature (glibc ≥ 2.33).
            (!symbol.is_null()).then(|| unsafe { std::mem::transmute::<*mut libc::c_void, Mallinfo2>(symbol) })
        });
        // SAFETY: `mallinfo2` only reads the allocator's statistics (under its arena locks).
        mallinfo2.map(|f| unsafe { f() }.fordblks as u64)
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    None
}

/// This process's peak resident set (`VmHWM`) in bytes (Linux); `None` elsewhere.
pub fn peak_rss() -> Option<u64> {
    proc_field("/proc/self/status", "VmHWM:")
}

/// Resets the peak resident set to the current one (`echo 5 > /proc/self/clear_refs`, Linux
/// ≥ 4.0); returns whether it worked.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// A `kB` field of a `/proc` file, in bytes.
fn proc_field(path: &str, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    let line = text.lines().find(|l| l.starts_with(key))?;
    let kb: u64 = line[key.len()..].trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_is_the_smaller_limit() {
        let gpu = DeviceMemory::gpu(Some(10 << 30), 1 << 30, None);
        assert_eq!(gpu.budget(Some(4 << 30)), Some(4 << 30));
        assert_eq!(gpu.budget(None), Some((11u64 << 30) * 4 / 5));
        let unknown = DeviceMemory::gpu(None, 1 << 30, None);
        assert_eq!(unknown.budget(None), None);
        assert_eq!(unknown.budget(Some(1 << 30)), Some(1 << 30));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn host_memory_is_read() {
        let host = DeviceMemory::host();
        assert!(host.available.unwrap() > 1 << 20 && host.resident > 1 << 20, "{host:?}");
        assert!(peak_rss().unwrap() >= process_rss().unwrap() / 2);
    }
}
