//! A small, thread-safe, bounded cache of device tensors that depend only on the input size.
//!
//! Several parts of the network are a pure function of the image size (and the device): the
//! bicubic interpolation of the positional embedding to the patch grid, the 2D RoPE cos/sin
//! tables of the local and global blocks, and the UV embeddings the DualDPT/GSDPT heads add at
//! each pyramid level. Without a cache they are rebuilt on the host, uploaded and (for the UV
//! embeddings) materialized at full map size on every call and every head chunk.
//!
//! [`SizeCache`] keeps the most recently used entries, keyed by what they are, their sizes and
//! the device, so one model serves several resolutions and devices correctly. It is bounded
//! both in entries ([`DEFAULT_MAX_ENTRIES`]) and in tensor elements ([`DEFAULT_MAX_ELEMENTS`]),
//! evicting the least recently used entry first. A cached value is exactly the tensor the
//! uncached path builds, so results are bit-identical with or without it.
//!
//! Sharing: the model is used through `&self` from several threads, so the cache is a mutex
//! around a short list; builders run outside the lock (two threads may build the same entry
//! once each; the second insert is dropped). Cloning a module gives the clone an **empty**
//! cache of the same capacity, so a copy whose weights are then changed never sees entries
//! derived from the original's weights (only the positional embedding depends on weights).

use std::any::Any;
use std::sync::{Arc, Mutex};

use burn::tensor::{backend::Backend, Tensor};

/// Entries kept at most (a few resolutions × the handful of tables per resolution).
pub const DEFAULT_MAX_ENTRIES: usize = 48;
/// Tensor elements kept at most (64 Mi f32 = 256 MiB); the largest entry is a full-resolution
/// UV embedding, e.g. [1, 128, 378, 504] = 24 Mi elements for da3-large.
pub const DEFAULT_MAX_ELEMENTS: usize = 64 << 20;

/// What a cached value is and the sizes it was built for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SizeKey {
    /// The kind of table (e.g. `"pos_embed"`, `"rope.local"`, `"uv"`).
    pub what: &'static str,
    /// The sizes it depends on (unused slots zero).
    pub dims: [usize; 4],
    /// Any other input it depends on, bit-exact (e.g. the aspect ratio's `f64::to_bits`).
    pub extra: u64,
}

/// Values the cache can hold: anything that reports its size in tensor elements.
pub trait CacheWeight {
    /// Number of tensor elements the value keeps alive on the device.
    fn elements(&self) -> usize;
}

impl<B: Backend, const D: usize> CacheWeight for Tensor<B, D> {
    fn elements(&self) -> usize {
        self.shape().num_elements()
    }
}

struct Entry {
    key: SizeKey,
    /// The backend's device (`B::Device`), type-erased so the cache needs no backend parameter
    /// (a generic field would make Burn's `Module` derive treat it as a submodule).
    device: Box<dyn Any + Send>,
    elements: usize,
    value: Box<dyn Any + Send>,
}

struct Inner {
    /// Least recently used first.
    entries: Vec<Entry>,
    max_entries: usize,
    max_elements: usize,
    hits: u64,
    misses: u64,
}

/// A bounded LRU cache of size-only tensors of any backend; see the module docs.
pub struct SizeCache {
    inner: Arc<Mutex<Inner>>,
}

/// Hit and miss counts of a [`SizeCache`] since it was created or cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CacheStats {
    /// Lookups answered from the cache.
    pub hits: u64,
    /// Lookups that built the value.
    pub misses: u64,
    /// Entries held now.
    pub entries: usize,
    /// Tensor elements held now.
    pub elements: usize,
}

impl Default for SizeCache {
    fn default() -> Self {
        Self::with_capacity(DEFAULT_MAX_ENTRIES, DEFAULT_MAX_ELEMENTS)
    }
}

impl Clone for SizeCache {
    /// An empty cache with the same limits (see the module docs for why not shared).
    fn clone(&self) -> Self {
        let (e, n) = {
            let inner = self.lock();
            (inner.max_entries, inner.max_elements)
        };
        Self::with_capacity(e, n)
    }
}

impl std::fmt::Debug for SizeCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.stats();
        write!(f, "SizeCache {{ entries: {}, elements: {}, hits: {}, misses: {} }}", s.entries, s.elements, s.hits, s.misses)
    }
}

impl SizeCache {
    /// A cache holding at most `max_entries` values and `max_elements` tensor elements;
    /// `max_entries == 0` disables caching (every lookup builds).
    pub fn with_capacity(max_entries: usize, max_elements: usize) -> Self {
        let inner = Inner { entries: Vec::new(), max_entries, max_elements, hits: 0, misses: 0 };
        Self { inner: Arc::new(Mutex::new(inner)) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the list inconsistent (every mutation is
        // a single push/remove), so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Turns caching on (default limits) or off (every lookup builds; entries dropped).
    pub fn set_enabled(&self, enabled: bool) {
        let mut inner = self.lock();
        inner.max_entries = if enabled { DEFAULT_MAX_ENTRIES } else { 0 };
        inner.max_elements = DEFAULT_MAX_ELEMENTS;
        evict(&mut inner);
    }

    /// Drops every entry and resets the counters.
    pub fn clear(&self) {
        let mut inner = self.lock();
        inner.entries.clear();
        inner.hits = 0;
        inner.misses = 0;
    }

    /// Hit/miss counters and current size.
    pub fn stats(&self) -> CacheStats {
        let inner = self.lock();
        CacheStats {
            hits: inner.hits,
            misses: inner.misses,
            entries: inner.entries.len(),
            elements: inner.entries.iter().map(|e| e.elements).sum(),
        }
    }

    /// The value for `key` on `device`: the cached one, or `build()`'s (then cached if it fits).
    pub fn get_or_build<B: Backend, T>(&self, key: SizeKey, device: &B::Device, build: impl FnOnce() -> T) -> T
    where
        T: CacheWeight + Clone + Send + 'static,
    {
        let same = |e: &Entry| e.key == key && e.device.downcast_ref::<B::Device>() == Some(device);
        {
            let mut inner = self.lock();
            let found = inner.entries.iter().position(same);
            if let Some(i) = found {
                if let Some(v) = inner.entries[i].value.downcast_ref::<T>() {
                    let v = v.clone();
                    let entry = inner.entries.remove(i);
                    inner.entries.push(entry); // most recently used last
                    inner.hits += 1;
                    return v;
                }
            }
            inner.misses += 1;
        }
        let value = build();
        let elements = value.elements();
        let mut inner = self.lock();
        if inner.max_entries == 0 || elements > inner.max_elements {
            return value;
        }
        if !inner.entries.iter().any(same) {
            inner.entries.push(Entry { key: key.clone(), device: Box::new(device.clone()), elements, value: Box::new(value.clone()) });
            evict(&mut inner);
        }
        value
    }
}

/// Drops least recently used entries until both limits hold.
fn evict(inner: &mut Inner) {
    let mut total: usize = inner.entries.iter().map(|e| e.elements).sum();
    while !inner.entries.is_empty() && (inner.entries.len() > inner.max_entries || total > inner.max_elements) {
        total -= inner.entries.remove(0).elements;
    }
}

#[cfg(all(test, feature = "flex"))]
mod tests {
    use super::*;
    use crate::backends::Flex;

    fn key(what: &'static str, h: usize) -> SizeKey {
        SizeKey { what, dims: [h, 0, 0, 0], extra: 0 }
    }

    #[test]
    fn hits_misses_and_lru_eviction() {
        let device = Default::default();
        let cache = SizeCache::with_capacity(2, 1000);
        let build = |v: f32| move || Tensor::<Flex, 1>::full([4], v, &Default::default());
        let a = cache.get_or_build::<Flex, _>(key("t", 1), &device, build(1.0));
        assert_eq!(cache.get_or_build::<Flex, _>(key("t", 1), &device, build(9.0)).into_data(), a.clone().into_data());
        cache.get_or_build::<Flex, _>(key("t", 2), &device, build(2.0));
        cache.get_or_build::<Flex, _>(key("t", 1), &device, build(9.0)); // 1 is now the most recent
        cache.get_or_build::<Flex, _>(key("t", 3), &device, build(3.0)); // evicts 2
        let s = cache.stats();
        assert_eq!((s.hits, s.misses, s.entries, s.elements), (2, 3, 2, 8));
        // 2 was evicted: rebuilt with the new builder's value.
        let two = cache.get_or_build::<Flex, _>(key("t", 2), &device, build(7.0));
        assert_eq!(two.into_data().to_vec::<f32>().unwrap(), vec![7.0; 4]);
        // 1 was evicted by that insert (3 was used more recently).
        let one = cache.get_or_build::<Flex, _>(key("t", 1), &device, build(5.0));
        assert_eq!(one.into_data().to_vec::<f32>().unwrap(), vec![5.0; 4]);
    }

    #[test]
    fn element_budget_and_disabled_cache() {
        let device = Default::default();
        let cache = SizeCache::with_capacity(10, 10);
        let t = |n: usize| move || Tensor::<Flex, 1>::zeros([n], &Default::default());
        cache.get_or_build::<Flex, _>(key("big", 1), &device, t(11)); // larger than the budget: not kept
        cache.get_or_build::<Flex, _>(key("a", 1), &device, t(6));
        cache.get_or_build::<Flex, _>(key("b", 1), &device, t(6)); // 12 > 10: evicts a
        assert_eq!(cache.stats().entries, 1);
        assert_eq!(cache.stats().elements, 6);
        cache.set_enabled(false);
        assert_eq!(cache.stats().entries, 0);
        cache.get_or_build::<Flex, _>(key("c", 1), &device, t(1));
        assert_eq!(cache.stats().entries, 0);
        // A clone starts empty.
        cache.set_enabled(true);
        cache.get_or_build::<Flex, _>(key("c", 1), &device, t(1));
        assert_eq!(cache.clone().stats().entries, 0);
    }
}
