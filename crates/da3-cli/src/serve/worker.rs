//! The one thread that runs `da3 serve`'s requests, one at a time, in arrival order.
//!
//! Why one dedicated thread rather than tokio's blocking pool behind a lock: glibc gives each
//! thread its own malloc arena, and the `da3` command keeps freed memory in its heaps for
//! reuse (`alloc.rs`). Requests that ran on different pool threads each left their pass's
//! freed buffers in a different arena, which the next request's thread could not reuse: four
//! 16-view requests under `--max-memory 1GiB`, each planned at a 740 MiB peak, took the
//! process to 1327 MiB (`benches/serve_memory.sh`). On one thread every pass reuses the same
//! heap. Running one request at a time also saturates a CPU and keeps a GPU's memory to one
//! job's plan.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};

use axum::http::StatusCode;

use super::api::ApiError;

type Job = Box<dyn FnOnce() + Send>;

/// Handle to the inference thread; the thread ends when the handle is dropped.
pub struct InferenceWorker {
    jobs: mpsc::Sender<Job>,
    /// Jobs dropped unrun because nobody was waiting for them any more.
    abandoned: Arc<AtomicU64>,
}

impl InferenceWorker {
    /// Starts the thread (named `da3-inference`).
    pub fn start() -> std::io::Result<Self> {
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new().name("da3-inference".into()).spawn(move || {
            for job in queue {
                // A panicking job drops its answer channel (its request gets a 500); the
                // thread goes on with the next.
                let _ = catch_unwind(AssertUnwindSafe(job));
            }
        })?;
        Ok(Self { jobs, abandoned: Arc::new(AtomicU64::new(0)) })
    }

    /// Runs `job` on the inference thread after the jobs queued before it, and waits for its
    /// result without blocking the async runtime.
    ///
    /// A job whose caller stopped waiting before its turn (the client closed the connection,
    /// so the server dropped the request's future) is dropped unrun: a queue of abandoned
    /// requests would otherwise keep the thread busy for nobody.
    pub async fn run<T: Send + 'static>(&self, job: impl FnOnce() -> T + Send + 'static) -> Result<T, ApiError> {
        let (answer, result) = tokio::sync::oneshot::channel();
        let abandoned = self.abandoned.clone();
        self.jobs
            .send(Box::new(move || {
                if answer.is_closed() {
                    abandoned.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                let _ = answer.send(job());
            }))
            .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "the inference thread has stopped"))?;
        result.await.map_err(|_| {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "the prediction failed unexpectedly (a panic; see the server's log)")
        })
    }

    /// Jobs dropped unrun so far (see [`Self::run`]).
    pub fn abandoned(&self) -> u64 {
        self.abandoned.load(Ordering::Relaxed)
    }
}
