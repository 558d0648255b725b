//! `da3 serve`: an HTTP server that keeps models resident between requests.
//!
//! The server's model (`--model`/`--weights`/`--model-dir`, as for `da3 infer`) is loaded
//! before it listens, so a bad model fails at start, not at the first request. Requests may
//! name another preset or Hub repository and precision: models are cached by (model,
//! precision) on the one `--device`, at most `--max-models` at a time, least recently used
//! out first ([`models::ModelCache`]). Requests run one at a time on one thread of their own
//! (`worker.rs`) while the server keeps accepting them, up to `--max-queued`; each runs
//! within `--max-memory` (chunked like `da3 images` when the views do not fit one pass). The
//! routes are in [`api`].

pub mod api;
pub mod models;
pub mod worker;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use da3::Precision;
use da3_hub::{Hub, DEFAULT_PRESET};

use crate::args::ModelArgs;
use crate::device::DeviceKind;
use crate::infer::ModelSpec;
use crate::UsageError;
use api::ServerState;
use models::{ModelCache, ModelKey};

/// `da3 serve` options.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on. Port 0 picks a free port; the address is printed on the first
    /// line of standard output. There is no authentication or TLS: keep it on localhost or
    /// behind a reverse proxy.
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,

    /// The model of requests that name none, loaded before the server listens (see
    /// `da3 infer --help`; default da3-small).
    #[command(flatten)]
    pub source: ModelArgs,

    /// Backend every model runs on.
    #[arg(short, long, value_enum, default_value_t = DeviceKind::Flex, help_heading = "Model")]
    pub device: DeviceKind,

    /// Precision of requests that name none: auto, fp32, fp16 or bf16 (see `da3 infer --help`).
    #[arg(long, value_name = "MODE", default_value = "auto", help_heading = "Model")]
    pub precision: Precision,

    /// Most models resident at once (each (model, precision) pair is one); the least
    /// recently used is dropped to load another.
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_models: u64,

    /// Let requests name models that are not in the Hugging Face cache (downloaded on first
    /// use). Without it such requests get 404 and `da3 fetch` adds models.
    #[arg(long)]
    pub allow_download: bool,

    /// Most images (views) in one request.
    #[arg(long, value_name = "N", default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_views: u64,

    /// Most prediction requests held at once: the one running and those waiting for it
    /// (each waiting one holds its body). More are answered 503 with `Retry-After`.
    #[arg(long, value_name = "N", default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_queued: u64,

    /// Largest request body (e.g. 512MiB).
    #[arg(long, value_name = "BYTES", default_value = "512MiB", value_parser = parse_bytes)]
    pub max_body: u64,

    /// Memory budget of one prediction (e.g. 4GiB), the server's resident model and its
    /// waiting requests' bodies included on the CPU: views that do not fit one pass run in
    /// chunks aligned into one pose frame, as with `da3 images --max-memory`. Default: the
    /// device's (available RAM on the CPU).
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes)]
    pub max_memory: Option<u64>,

    /// Refuse images of more than N pixels.
    #[arg(long, value_name = "N", default_value_t = crate::images::DEFAULT_MAX_PIXELS, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_pixels: u64,

    /// Print only the address line and errors (no model summary, no line per request).
    #[arg(short, long)]
    pub quiet: bool,
}

fn parse_bytes(s: &str) -> Result<u64, String> {
    da3::schedule::parse_byte_size(s).map_err(|e| e.to_string().trim_start_matches("input: ").to_string())
}

/// The name requests use for the server's own model.
fn default_label(args: &ServeArgs) -> String {
    let m = &args.source;
    match (&m.weights, &m.model_dir, &m.model) {
        (Some(w), _, _) => w.display().to_string(),
        (None, Some(d), _) => d.display().to_string(),
        (None, None, Some(m)) => m.clone(),
        (None, None, None) => DEFAULT_PRESET.to_string(),
    }
}

/// Resolves a requested model name into files: the server's own model, or a preset / Hub
/// repository from the Hugging Face cache (downloaded with `allow_download`).
fn resolve(args: &ServeArgs, label: &str, name: &str, precision: Precision) -> Result<ModelSpec> {
    let (config, config_source, weights) = if name == label {
        let m = &args.source;
        crate::hub_cmd::resolve_model(m.model.as_deref(), m.weights.as_deref(), m.model_dir.as_deref(), true)?
    } else {
        if name.ends_with(".json") || std::path::Path::new(name).exists() {
            return Err(UsageError(format!(
                "requests name models by preset or Hub repository; local files are served only as the server's own --model ({label})"
            ))
            .into());
        }
        let spec = crate::hub_cmd::parse_spec(name)?;
        if !args.allow_download && Hub::from_env()?.cached(&spec).is_none() {
            return Err(UsageError(format!(
                "{name} is not in the Hugging Face cache; run `da3 fetch {name}` on the server, or start it with --allow-download"
            ))
            .into());
        }
        crate::hub_cmd::resolve_model(Some(name), None, None, true)?
    };
    Ok(ModelSpec { config, config_source, weights, precision })
}

/// Runs `da3 serve` until interrupted (Ctrl-C).
pub fn run(args: &ServeArgs) -> Result<()> {
    let label = default_label(args);
    let models = ModelCache::new(args.device, args.max_models as usize);
    let key = ModelKey { model: label.clone(), precision: args.precision };
    let (resident, _) = models
        .get(&key, || resolve(args, &label, &label, args.precision))
        .with_context(|| format!("cannot load the server's model {label}"))?;
    let resolver_args = args.clone();
    let resolver_label = label.clone();
    let state = Arc::new(ServerState {
        models,
        default_model: label.clone(),
        default_precision: args.precision,
        resolve: Box::new(move |name, precision| resolve(&resolver_args, &resolver_label, name, precision)),
        max_views: args.max_views as usize,
        max_pixels: args.max_pixels,
        max_memory: args.max_memory,
        max_body: usize::try_from(args.max_body).unwrap_or(usize::MAX),
        worker: worker::InferenceWorker::start().context("cannot start the inference thread")?,
        max_queued: usize::try_from(args.max_queued).unwrap_or(usize::MAX),
        admitted: AtomicUsize::new(0),
        quiet: args.quiet,
        served: AtomicU64::new(0),
        started: Instant::now(),
    });

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.addr).await.with_context(|| format!("cannot listen on {}", args.addr))?;
        let addr = listener.local_addr()?;
        // The first line of stdout: scripts and tests read the address (port 0) from it. A
        // closed stdout must not take the server down, so write errors are ignored.
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "da3 serve: listening on http://{addr}");
        if !args.quiet {
            let _ = writeln!(
                out,
                "  model      {} ({}, {}), loaded in {:.2} s, device {}",
                label,
                resident.predictor.config().name,
                resident.source,
                resident.load_time.as_secs_f64(),
                args.device
            );
            let _ = writeln!(
                out,
                "  routes     POST /v1/predict (multipart: image parts; fields model, precision, process_res, ...), GET /v1/health"
            );
        }
        let _ = out.flush();
        drop(out);
        drop(resident);
        axum::serve(listener, api::router(state))
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
            .context("the server failed")
    })
}
