//! Resident models of `da3 serve`: loaded once, kept across requests, cached by
//! (model, precision) on the server's one device, least recently used first out.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use burn::tensor::backend::Backend;
use da3::schedule::{DeviceMemory, RunReport, ScheduleOptions};
use da3::{Da3, Da3Config, Precision, Prediction, PredictOptions, Views};

use crate::device::{dispatch, BackendJob, DeviceKind};
use crate::infer::{load_model, ModelSpec};

/// Host bytes per pixel of every view that a request holds while it is predicted (see
/// [`Predictor::predict`]).
pub const REQUEST_BYTES_PER_PIXEL: u64 = 15;

/// What identifies a resident model on the server's device.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ModelKey {
    /// The model as the request or the command line named it (preset, Hub repository, or
    /// the server's own `--model`/`--weights`).
    pub model: String,
    /// The precision it was loaded in.
    pub precision: Precision,
}

/// A model loaded on some backend, usable without knowing which.
pub trait Predictor: Send + Sync {
    /// [`Da3::predict_scheduled`] within `max_memory` (else the device's own limit).
    fn predict(&self, views: &Views, options: &PredictOptions, max_memory: Option<u64>) -> Result<(Prediction, RunReport), da3::Da3Error>;
    /// The network configuration.
    fn config(&self) -> &Da3Config;
}

/// A [`Da3`] on backend `B`. Predictions on one model run one at a time (the lock), which
/// also keeps a GPU's memory to one job's activations.
struct Loaded<B: Backend> {
    model: Mutex<Da3<B>>,
    config: Da3Config,
    /// Whether the backend computes in host memory (the budget is then the process's).
    host_memory: bool,
    cuda: bool,
    /// The largest single buffer the GPU allows (wgpu).
    max_buffer: Option<u64>,
}

impl<B: Backend> Predictor for Loaded<B> {
    fn predict(&self, views: &Views, options: &PredictOptions, max_memory: Option<u64>) -> Result<(Prediction, RunReport), da3::Da3Error> {
        let model = self.model.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let memory = if self.host_memory {
            DeviceMemory::host()
        } else {
            let weights = model.memory_model(views.height(), views.width()).weights;
            DeviceMemory::gpu(crate::scene::gpu_free_memory(self.cuda), weights, self.max_buffer)
        };
        // The request holds every view through the job: its normalized f32 input (12 bytes
        // per pixel) and its 8-bit processed image (3), counted against a host budget.
        let kept_bytes_per_view = REQUEST_BYTES_PER_PIXEL * (views.height() * views.width()) as u64;
        let schedule = ScheduleOptions { max_memory, kept_bytes_per_view, ..ScheduleOptions::default() };
        model.predict_scheduled(views, options, &schedule, &memory)
    }

    fn config(&self) -> &Da3Config {
        &self.config
    }
}

/// Loads a [`ModelSpec`] on the backend [`dispatch`] picks.
struct LoadJob<'a> {
    spec: &'a ModelSpec,
    device: DeviceKind,
}

impl BackendJob for LoadJob<'_> {
    type Output = Box<dyn Predictor>;

    fn run<B: Backend>(self, device: B::Device) -> Result<Box<dyn Predictor>> {
        let model = load_model::<B>(self.spec, &device)?;
        Ok(Box::new(Loaded {
            config: model.config().clone(),
            model: Mutex::new(model),
            host_memory: matches!(self.device, DeviceKind::Flex | DeviceKind::Ndarray),
            cuda: self.device == DeviceKind::Cuda,
            max_buffer: crate::scene::gpu_max_buffer(self.device),
        }))
    }
}

/// A model in the cache.
pub struct Resident {
    /// Its key.
    pub key: ModelKey,
    /// Where its configuration came from (`preset da3-small from the HF cache`, a path).
    pub source: String,
    /// The loaded model.
    pub predictor: Box<dyn Predictor>,
    /// How long loading took.
    pub load_time: Duration,
}

struct Entry {
    resident: Arc<Resident>,
    last_used: Instant,
}

/// The resident models: at most `capacity`, evicting the least recently used. An evicted
/// model's memory is freed once the requests still using it finish.
pub struct ModelCache {
    device: DeviceKind,
    capacity: usize,
    entries: Mutex<Vec<Entry>>,
    /// Held while a model loads, so that two requests for a new model load it once (and two
    /// large loads do not overlap in memory).
    loading: Mutex<()>,
}

impl ModelCache {
    /// An empty cache of `capacity` (at least 1) models on `device`.
    pub fn new(device: DeviceKind, capacity: usize) -> Self {
        Self { device, capacity: capacity.max(1), entries: Mutex::new(Vec::new()), loading: Mutex::new(()) }
    }

    /// The device every model runs on.
    pub fn device(&self) -> DeviceKind {
        self.device
    }

    /// The model of `key`, loaded from what `resolve` returns when it is not resident.
    /// Returns the model and whether this call loaded it.
    pub fn get(&self, key: &ModelKey, resolve: impl FnOnce() -> Result<ModelSpec>) -> Result<(Arc<Resident>, bool)> {
        if let Some(found) = self.lookup(key) {
            return Ok((found, false));
        }
        let _loading = self.loading.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(found) = self.lookup(key) {
            return Ok((found, false));
        }
        let spec = resolve()?;
        // Make room before loading, so that the evicted model's memory can be freed (once
        // the requests still using it finish) before the new one takes its own: with one slot
        // and large models, loading first would need both at once.
        {
            let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
            while entries.len() >= self.capacity {
                let oldest = (0..entries.len()).min_by_key(|&i| entries[i].last_used).expect("not empty");
                entries.remove(oldest);
            }
        }
        let start = Instant::now();
        let predictor = dispatch(self.device, LoadJob { spec: &spec, device: self.device })?;
        let resident = Arc::new(Resident {
            key: key.clone(),
            source: spec.config_source.clone(),
            predictor,
            load_time: start.elapsed(),
        });
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.push(Entry { resident: resident.clone(), last_used: Instant::now() });
        Ok((resident, true))
    }

    /// The resident models, most recently used first.
    pub fn resident(&self) -> Vec<Arc<Resident>> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let mut order: Vec<&Entry> = entries.iter().collect();
        order.sort_by_key(|e| std::cmp::Reverse(e.last_used));
        order.into_iter().map(|e| e.resident.clone()).collect()
    }

    fn lookup(&self, key: &ModelKey) -> Option<Arc<Resident>> {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let entry = entries.iter_mut().find(|e| &e.resident.key == key)?;
        entry.last_used = Instant::now();
        Some(entry.resident.clone())
    }
}
