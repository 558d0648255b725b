//! The HTTP routes of `da3 serve`.
//!
//! - `POST /v1/predict`: `multipart/form-data` with one `image` part per view (PNG or
//!   JPEG; all views of one request are one scene, predicted jointly like `da3 images`) and
//!   optional text fields `model`, `precision`, `process_res`, `process_res_method`,
//!   `ref_view_strategy`, `use_ray_pose` (`true`/`false`), `focal` (pixels of the original
//!   images: a metric model's depth in metres, as `da3 infer --focal`) and `format` (`npz`, the default:
//!   the `results.npz` arrays; `json`: cameras, sizes and depth ranges without the maps;
//!   `glb`: the point cloud and cameras as `scene.glb`).
//! - `GET /v1/health`: the device and the resident models.
//!
//! Errors are JSON `{"error": "..."}`: 400 for a bad request (a field, an image that does
//! not decode, naming the part), 404 for a model that is not available, 413 for too many
//! views or too large a body, 503 when the job does not fit the memory budget or the server
//! already holds `--max-queued` requests (with `Retry-After`), 500 otherwise.

use std::io::Cursor;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Multipart, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use da3::preprocess::{Options, ResizeMethod};
use da3::{Precision, PredictOptions, RefViewStrategy};
use da3_export::glb::{encode_glb, glb_scene, GlbOptions};
use da3_export::ImageRgb8;
use serde_json::{json, Value};

use super::models::{ModelCache, ModelKey, Resident};
use super::worker::InferenceWorker;
use crate::infer::ModelSpec;

/// Everything the routes share.
pub struct ServerState {
    /// The resident models.
    pub models: ModelCache,
    /// The model of requests that name none.
    pub default_model: String,
    /// The precision of requests that name none.
    pub default_precision: Precision,
    /// Turns a requested model name into files (the Hub cache, or the server's own model).
    pub resolve: Box<dyn Fn(&str, Precision) -> anyhow::Result<ModelSpec> + Send + Sync>,
    /// Most views in one request.
    pub max_views: usize,
    /// Most pixels per image (checked by the decoder).
    pub max_pixels: u64,
    /// Memory budget of one prediction (`--max-memory`), else the device's.
    pub max_memory: Option<u64>,
    /// Most bytes in one request body.
    pub max_body: usize,
    /// Runs requests one at a time, from decoding their images to encoding the response,
    /// on one thread (see [`InferenceWorker`]): `--max-memory` is planned for one request's
    /// views, activations and outputs, and waiting requests hold only their bodies.
    pub worker: InferenceWorker,
    /// Most prediction requests held at once, running or waiting (`--max-queued`).
    pub max_queued: usize,
    /// Prediction requests held now: admitted before their body is read, released when
    /// answered (see [`Admitted`]).
    pub admitted: AtomicUsize,
    /// Print no line per request (`--quiet`).
    pub quiet: bool,
    /// Requests answered with a prediction.
    pub served: AtomicU64,
    /// When the server started.
    pub started: Instant,
}

impl ServerState {
    /// Prints one line of the request log on stdout unless `quiet`. A closed stdout must not
    /// take the server down, so write errors are ignored.
    fn log(&self, line: &str) {
        if !self.quiet {
            use std::io::Write;
            let _ = writeln!(std::io::stdout().lock(), "{line}");
        }
    }
}

/// The server's routes over `state`.
pub fn router(state: Arc<ServerState>) -> Router {
    let limit = state.max_body;
    Router::new()
        .route("/v1/health", get(health))
        .route("/v1/predict", post(predict_logged))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// An error response: a status and a message, sent as `{"error": message}`.
#[derive(Debug)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// What went wrong and what to do about it.
    pub message: String,
    /// Seconds a client should wait before retrying (the `Retry-After` header).
    pub retry_after_s: Option<u32>,
}

impl ApiError {
    pub(super) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, message: message.into(), retry_after_s: None }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// The status of a failed prediction: out of memory is 503 (retry later or smaller),
    /// bad inputs 400, the rest 500.
    fn from_prediction(err: anyhow::Error) -> Self {
        let message = format!("{err:#}");
        let status = match err.chain().find_map(|c| c.downcast_ref::<da3::Da3Error>()) {
            Some(da3::Da3Error::OutOfMemory(_)) => StatusCode::SERVICE_UNAVAILABLE,
            Some(da3::Da3Error::Input(_)) => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self::new(status, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(json!({ "error": self.message }))).into_response();
        if let Some(seconds) = self.retry_after_s {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// One admitted prediction request; dropping it (the request answered or abandoned) frees
/// its place.
///
/// Why admission is counted before the body is read: every waiting request keeps its body
/// (up to `--max-body`) while the memory planner sizes only the running one. An unbounded
/// queue of large requests could therefore exhaust RAM; a bounded one holds at most
/// `max_queued` bodies, and the rest are told to retry.
pub struct Admitted(Arc<ServerState>);

impl Admitted {
    /// Admits one more request unless `max_queued` are held; the error is the 503 to send.
    pub fn try_new(state: &Arc<ServerState>) -> Result<Self, ApiError> {
        let limit = state.max_queued;
        match state.admitted.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < limit).then_some(n + 1)) {
            Ok(_) => Ok(Self(state.clone())),
            Err(_) => Err(ApiError {
                retry_after_s: Some(1),
                ..ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "busy: {limit} prediction requests are already running or waiting (--max-queued); retry shortly"
                    ),
                )
            }),
        }
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.0.admitted.fetch_sub(1, Ordering::AcqRel);
    }
}

/// `GET /v1/health`.
async fn health(State(state): State<Arc<ServerState>>) -> Json<Value> {
    let models: Vec<Value> = state.models.resident().iter().map(|r| describe(r)).collect();
    Json(json!({
        "status": "ok",
        "device": state.models.device().to_string(),
        "default_model": state.default_model,
        "models": models,
        "predictions_served": state.served.load(Ordering::Relaxed),
        "requests_in_flight": state.admitted.load(Ordering::Acquire),
        "requests_abandoned": state.worker.abandoned(),
        "max_queued": state.max_queued,
        "uptime_s": state.started.elapsed().as_secs_f64(),
    }))
}

fn describe(r: &Resident) -> Value {
    json!({
        "model": r.key.model,
        "precision": r.key.precision.to_string(),
        "name": r.predictor.config().name,
        "source": r.source,
        "load_s": r.load_time.as_secs_f64(),
    })
}

/// The response format of a prediction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Npz,
    Json,
    /// The `glb` export (`scene.glb`: points and camera frustums), as `da3 infer
    /// --export-format glb` writes it.
    Glb,
}

/// A parsed `POST /v1/predict`.
struct PredictRequest {
    /// `(part name or file name, bytes)` of each image, in order.
    images: Vec<(String, Vec<u8>)>,
    model: Option<String>,
    precision: Option<Precision>,
    options: Options,
    strategy: RefViewStrategy,
    use_ray_pose: bool,
    /// Focal length in pixels of the original images: metric models' depth in metres.
    focal: Option<f64>,
    format: Format,
}

/// Reads the multipart body; every unknown field or bad value is a 400 naming it.
async fn read_request(mut multipart: Multipart, max_views: usize) -> Result<PredictRequest, ApiError> {
    let mut req = PredictRequest {
        images: Vec::new(),
        model: None,
        precision: None,
        options: Options::default(),
        strategy: RefViewStrategy::default(),
        use_ray_pose: false,
        focal: None,
        format: Format::Npz,
    };
    let multipart_error = |e: axum::extract::multipart::MultipartError| ApiError::new(e.status(), e.body_text());
    while let Some(field) = multipart.next_field().await.map_err(multipart_error)? {
        let name = field.name().unwrap_or_default().to_string();
        if name == "image" || name == "images" {
            if req.images.len() == max_views {
                return Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("more than {max_views} images in one request (--max-views); send fewer views or raise the limit"),
                ));
            }
            let label = match field.file_name() {
                Some(f) => format!("#{} ({f})", req.images.len()),
                None => format!("#{}", req.images.len()),
            };
            let bytes = field.bytes().await.map_err(multipart_error)?;
            req.images.push((label, bytes.to_vec()));
            continue;
        }
        let value = field.text().await.map_err(multipart_error)?;
        let value = value.trim();
        let bad = |what: &str| ApiError::bad_request(format!("field `{name}`: `{value}` is not {what}"));
        match name.as_str() {
            "model" => req.model = Some(value.to_string()),
            "precision" => req.precision = Some(value.parse().map_err(|_| bad("auto, fp32, fp16 or bf16"))?),
            "process_res" => {
                req.options.process_res = value.parse().ok().filter(|&n: &usize| (14..=8192).contains(&n)).ok_or_else(|| bad("a whole number of pixels from 14 to 8192"))?
            }
            "process_res_method" => {
                req.options.method = value.parse::<ResizeMethod>().map_err(|_| bad("upper_bound_resize, upper_bound_crop, lower_bound_resize or lower_bound_crop"))?
            }
            "ref_view_strategy" => req.strategy = value.parse().map_err(|_| bad("first, middle, saddle_balanced or saddle_sim_range"))?,
            "use_ray_pose" => req.use_ray_pose = value.parse().map_err(|_| bad("true or false"))?,
            "focal" => {
                req.focal = Some(value.parse().ok().filter(|f: &f64| f.is_finite() && *f > 0.0).ok_or_else(|| bad("a positive focal length in pixels"))?)
            }
            "format" => {
                req.format = match value {
                    "npz" => Format::Npz,
                    "json" => Format::Json,
                    "glb" => Format::Glb,
                    _ => return Err(bad("npz, json or glb")),
                }
            }
            _ => {
                return Err(ApiError::bad_request(format!(
                    "unknown field `{name}`; send images as `image` parts and options among model, precision, process_res, \
                     process_res_method, ref_view_strategy, use_ray_pose, focal, format"
                )))
            }
        }
    }
    if req.images.is_empty() {
        return Err(ApiError::bad_request("no images: send one `image` part (a PNG or JPEG file) per view"));
    }
    Ok(req)
}

/// `POST /v1/predict`.
async fn predict(
    State(state): State<Arc<ServerState>>,
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Result<Response, ApiError> {
    // Before anything of the body is read (see `Admitted`).
    let admitted = Admitted::try_new(&state)?;
    let multipart = multipart.map_err(|e| {
        ApiError::new(e.status(), format!("{}; send multipart/form-data with one `image` part per view", e.body_text()))
    })?;
    let req = read_request(multipart, state.max_views).await?;
    let state2 = state.clone();
    let submitted = Instant::now();
    state
        .worker
        .run(move || {
            let _admitted = admitted;
            run_prediction(&state2, req, submitted)
        })
        .await?
}

/// `POST /v1/predict` with its failures logged (successes are logged where their details
/// are known, in [`run_prediction`]).
async fn predict_logged(
    State(state): State<Arc<ServerState>>,
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Result<Response, ApiError> {
    let result = predict(State(state.clone()), multipart).await;
    if let Err(e) = &result {
        state.log(&format!("{} POST /v1/predict: {}", e.status.as_u16(), e.message));
    }
    result
}

/// Decodes, loads (or finds) the model, predicts and encodes the response; on the inference
/// thread. `submitted`: when the request was queued.
fn run_prediction(state: &ServerState, req: PredictRequest, submitted: Instant) -> Result<Response, ApiError> {
    let queued = submitted.elapsed();
    let start = Instant::now();
    let images = req
        .images
        .into_iter()
        .map(|(label, bytes)| crate::images::decode_bytes(bytes, &format!("part {label}"), state.max_pixels))
        .collect::<anyhow::Result<Vec<_>>>()
        .map_err(|e| ApiError::bad_request(format!("{e:#}")))?;
    let pre = da3::image_api::preprocess_images(&images, &req.options).map_err(|e| ApiError::bad_request(e.to_string()))?;
    drop(images);
    let decode_time = start.elapsed();

    let key = ModelKey {
        model: req.model.unwrap_or_else(|| state.default_model.clone()),
        precision: req.precision.unwrap_or(state.default_precision),
    };
    let (resident, loaded) = state
        .models
        .get(&key, || (state.resolve)(&key.model, key.precision))
        .map_err(|e| {
            let status = if e.chain().any(|c| c.is::<crate::UsageError>()) { StatusCode::NOT_FOUND } else { StatusCode::INTERNAL_SERVER_ERROR };
            ApiError::new(status, format!("model `{}` ({}): {e:#}", key.model, key.precision))
        })?;

    if req.focal.is_some() && !resident.predictor.config().metric {
        return Err(ApiError::bad_request(format!(
            "field `focal` applies to metric models (da3metric-large), not {}",
            resident.predictor.config().name
        )));
    }
    let options = PredictOptions { ref_view_strategy: req.strategy, use_ray_pose: req.use_ray_pose, ..PredictOptions::default() };
    let infer_start = Instant::now();
    let result = resident.predictor.predict(&pre.views, &options, state.max_memory).context("inference failed");
    let (mut prediction, run) = result.map_err(ApiError::from_prediction)?;
    let inference = infer_start.elapsed();
    state.served.fetch_add(1, Ordering::Relaxed);
    // The normalized input is no longer needed: free it before encoding the response.
    let mut pre = crate::batch::Processed::from(pre);
    // Metric models: depth in metres when the focal length is known (as `da3 infer --focal`).
    if resident.predictor.config().metric {
        crate::scene::apply_metric_scale(&mut prediction, crate::scene::metric_focals(req.focal, &pre));
    }
    let timing =
        Timing { decode: decode_time, queued, inference, loaded: loaded.then_some(resident.load_time), passes: run.passes };

    let binary = |bytes: Vec<u8>, content_type: &'static str, file: &'static str| {
        let mut response = Response::new(Body::from(bytes));
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        headers.insert(header::CONTENT_DISPOSITION, HeaderValue::from_static(file));
        for (name, value) in timing.headers(&resident) {
            if let Ok(v) = HeaderValue::from_str(&value) {
                headers.insert(name, v);
            }
        }
        response
    };
    let internal = |what: &str, e: &dyn std::fmt::Display| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("cannot encode the {what}: {e}"));
    let response = match req.format {
        Format::Npz => {
            let bytes = crate::output::write_mini_npz(Cursor::new(Vec::new()), &prediction)
                .map_err(|e| internal("npz", &e))?
                .into_inner();
            binary(bytes, "application/octet-stream", "attachment; filename=\"results.npz\"")
        }
        Format::Json => Json(summary(&prediction, &pre, &resident, &timing)).into_response(),
        Format::Glb => {
            if !prediction.has_cameras() {
                return Err(ApiError::bad_request(format!(
                    "format glb needs a model that predicts cameras; {} predicts depth only (use npz or json)",
                    resident.predictor.config().name
                )));
            }
            // The processed images colour the points (moved, not copied).
            let images: Vec<ImageRgb8> = std::mem::take(&mut pre.images)
                .into_iter()
                .map(|im| ImageRgb8::new(im.width, im.height, im.pixels))
                .collect::<Result<_, _>>()
                .map_err(|e| internal("glb", &e))?;
            let scene = glb_scene(&prediction, &images, &GlbOptions::default()).map_err(|e| internal("glb", &e))?;
            let bytes = encode_glb(&scene).map_err(|e| internal("glb", &e))?;
            binary(bytes, "model/gltf-binary", "attachment; filename=\"scene.glb\"")
        }
    };
    state.log(&format!(
        "200 POST /v1/predict: {} view(s) of {}x{}, {} {}, {} pass(es), {}, {:.2} s (queued {:.2}, inference {:.2})",
        prediction.views,
        prediction.height,
        prediction.width,
        key.model,
        key.precision,
        timing.passes,
        format!("{:?}", req.format).to_lowercase(),
        queued.as_secs_f64() + start.elapsed().as_secs_f64(),
        queued.as_secs_f64(),
        inference.as_secs_f64()
    ));
    Ok(response)
}

/// Where a request's time went.
struct Timing {
    decode: Duration,
    queued: Duration,
    inference: Duration,
    /// The load time when this request loaded the model.
    loaded: Option<Duration>,
    /// Passes the prediction took (more than one when it was chunked to fit memory).
    passes: usize,
}

impl Timing {
    fn headers(&self, resident: &Resident) -> Vec<(&'static str, String)> {
        let mut h = vec![
            ("x-da3-model", resident.predictor.config().name.clone()),
            ("x-da3-precision", resident.key.precision.to_string()),
            ("x-da3-decode-seconds", format!("{:.4}", self.decode.as_secs_f64())),
            ("x-da3-queued-seconds", format!("{:.4}", self.queued.as_secs_f64())),
            ("x-da3-inference-seconds", format!("{:.4}", self.inference.as_secs_f64())),
            ("x-da3-passes", self.passes.to_string()),
        ];
        if let Some(load) = self.loaded {
            h.push(("x-da3-load-seconds", format!("{:.4}", load.as_secs_f64())));
        }
        h
    }
}

/// The `format=json` body: everything but the per-pixel maps.
fn summary(p: &da3::Prediction, pre: &crate::batch::Processed, resident: &Resident, timing: &Timing) -> Value {
    let views: Vec<Value> = (0..p.views)
        .map(|i| {
            let depth = p.depth_of(i);
            let (lo, hi) = depth.iter().filter(|d| d.is_finite()).fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &d| (a.min(d), b.max(d)));
            let (ow, oh) = pre.info[i].original_size();
            let mut v = json!({
                "original_size": [ow, oh],
                "depth_min": lo,
                "depth_max": hi,
            });
            if p.has_cameras() {
                v["extrinsics"] = json!(p.extrinsics[i]);
                v["intrinsics"] = json!(p.intrinsics[i]);
            }
            v
        })
        .collect();
    json!({
        "model": resident.key.model,
        "name": resident.predictor.config().name,
        "precision": resident.key.precision.to_string(),
        "views": p.views,
        "height": p.height,
        "width": p.width,
        "is_metric": p.is_metric,
        "passes": timing.passes,
        "per_view": views,
        "timing_s": {
            "decode": timing.decode.as_secs_f64(),
            "queued": timing.queued.as_secs_f64(),
            "inference": timing.inference.as_secs_f64(),
            "load": timing.loaded.map(|d| d.as_secs_f64()),
        },
    })
}
