//! The HTTP face of spillway: the Firehose AWS JSON 1.1 protocol on `POST /`, SigV4 verification,
//! `/metrics`, and the `/_spillway/` admin endpoints.
//!
//! It owns the wire: reading bodies (bounded), dispatching on `X-Amz-Target`, authenticating,
//! shaping success and error responses (`__type`, `message`, `x-amzn-RequestId`). It knows neither
//! the WAL nor destinations: everything behind the wire goes through the [`Backend`] port.
//!
//! Invariant: a Put answer with a RecordId is only sent after the backend said the records are durable.

pub mod sigv4;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::Response;
use axum::routing::{get, post};
use bytes::Bytes;
use serde_json::Value;
use spillway_model::limits::MAX_REQUEST_BODY_BYTES;
use spillway_model::put::{PutRequest, parse_put_record, parse_put_record_batch};
use spillway_model::record_id::{RecordPosition, encode_into};
use spillway_model::{ApiError, ErrorCode, Operation};
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub const CONTENT_TYPE_JSON_11: &str = "application/x-amz-json-1.1";

/// The outcome of a durable put: the records are entry `lsn` of WAL `wal_id`, in request order.
#[derive(Debug, Clone, Copy)]
pub enum PutOutcome {
    Stored {
        wal_id: u64,
        lsn: u64,
        encrypted: bool,
    },
    /// Every record was refused with `ServiceUnavailableException` ("Slow down."): PutRecordBatch
    /// answers 200 with per-record failures, PutRecord the whole-call exception.
    Throttled {
        encrypted: bool,
    },
}

/// What the API needs from the rest of the server.
pub trait Backend: Send + Sync + 'static {
    /// A control-plane operation (everything but PutRecord and PutRecordBatch) on its JSON input.
    fn control(&self, op: Operation, input: Value) -> impl Future<Output = Result<Value, ApiError>> + Send;
    /// Stores a validated put durably. `started` is when the request arrived (for latency metrics).
    fn put<'a>(
        &'a self,
        op: Operation,
        req: PutRequest<'a>,
        started: Instant,
    ) -> impl Future<Output = Result<PutOutcome, ApiError>> + Send + 'a;
    /// Prometheus text exposition of every metric.
    fn metrics(&self) -> String;
    /// `GET /_spillway/dashboard[?stream=NAME]`: the dashboard's data (see [`DASHBOARD_HTML`]).
    fn dashboard(&self, stream: Option<&str>) -> Value;
    /// `GET /_spillway/status`: server and WAL state as JSON.
    fn status(&self) -> Value;
    /// `POST /_spillway/streams/{name}/flush`: deliver every buffer of a stream now; answers when the
    /// records committed before the call are stored.
    fn flush(&self, stream: String) -> impl Future<Output = Result<Value, ApiError>> + Send;
}

/// API settings.
#[derive(Default)]
pub struct ApiConfig {
    /// SigV4 verification; `None` accepts any request (the development default).
    pub verifier: Option<sigv4::Verifier>,
}

struct AppState<B> {
    backend: Arc<B>,
    config: ApiConfig,
}

/// The router, for embedding (tests) or [`serve`].
pub fn router<B: Backend>(backend: Arc<B>, config: ApiConfig) -> Router {
    let state = Arc::new(AppState { backend, config });
    Router::new()
        .route("/", post(firehose::<B>))
        .route("/metrics", get(metrics::<B>))
        .route("/dashboard", get(dashboard_page))
        .route("/dashboard/", get(dashboard_page))
        .route("/_spillway/dashboard", get(dashboard_data::<B>))
        .route("/_spillway/status", get(status::<B>))
        .route("/_spillway/streams/{name}/flush", post(flush::<B>))
        .with_state(state)
}

/// Serves until `shutdown` is cancelled, then finishes the requests in flight.
pub async fn serve<B: Backend>(
    listener: TcpListener,
    backend: Arc<B>,
    config: ApiConfig,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = router(backend, config);
    axum::serve(listener, app).with_graceful_shutdown(async move { shutdown.cancelled().await }).await
}

/// The operator's dashboard (`GET /dashboard`): one self-contained page, no external assets. It
/// polls `GET /_spillway/dashboard?stream=NAME`, whose JSON is:
/// `{"server": {version, region, account_id, uptime_secs, now_ms, sample_interval_ms},
///   "selected": NAME|null,
///   "streams": [{name, status, type, destination, metric_prefix, failure, arn,
///                summary: [[label, value]] (the configuration, from DescribeDeliveryStream),
///                totals: {METRIC: number}}],
///   "series": {"t": [ms...], METRIC: [number...]} | null}`
/// with the metrics of `spillway_pipeline::metrics::DASHBOARD_SERIES` (cumulative, except
/// `DataFreshness`).
pub const DASHBOARD_HTML: &str = include_str!("dashboard.html");

async fn dashboard_page() -> Response {
    let mut resp = Response::new(Body::from(DASHBOARD_HTML));
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

async fn dashboard_data<B: Backend>(State(state): State<Arc<AppState<B>>>, uri: Uri) -> Response {
    let stream = uri.query().and_then(|q| {
        q.split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == "stream")
            .map(|(_, v)| percent_encoding::percent_decode_str(v).decode_utf8_lossy().replace('+', " "))
    });
    let body = state.backend.dashboard(stream.as_deref()).to_string();
    let mut resp = Response::new(Body::from(body));
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn request_id() -> HeaderValue {
    let mut buf = uuid::Uuid::encode_buffer();
    HeaderValue::from_str(uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buf))
        .unwrap_or_else(|_| HeaderValue::from_static("00000000-0000-0000-0000-000000000000"))
}

fn json_response(status: StatusCode, body: impl Into<Body>) -> Response {
    let mut resp = Response::new(body.into());
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE_JSON_11));
    h.insert("x-amzn-requestid", request_id());
    resp
}

fn error_response(e: &ApiError) -> Response {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
    let mut resp = json_response(status, e.body().to_string());
    resp.headers_mut().insert("x-amzn-errortype", HeaderValue::from_static(e.aws_type()));
    resp
}

async fn firehose<B: Backend>(
    State(state): State<Arc<AppState<B>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let body = match axum::body::to_bytes(body, MAX_REQUEST_BODY_BYTES).await {
        Ok(b) => b,
        Err(_) => {
            return error_response(&ApiError::invalid_argument(format!(
                "Request body exceeds {MAX_REQUEST_BODY_BYTES} bytes"
            )));
        }
    };
    match handle(&state, &method, &uri, &headers, &body, started).await {
        Ok(resp) => resp,
        Err(e) => {
            if e.code == ErrorCode::InternalFailure {
                tracing::error!(error = %e, "request failed");
            } else {
                tracing::debug!(error = %e, "request rejected");
            }
            error_response(&e)
        }
    }
}

async fn handle<B: Backend>(
    state: &AppState<B>,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
    started: Instant,
) -> Result<Response, ApiError> {
    if let Some(verifier) = &state.config.verifier {
        // HTTP/2 carries the host in the URI authority, not in a `Host` header; clients sign it as `host`.
        let with_host;
        let headers_for_sig = match (headers.contains_key(header::HOST), uri.authority()) {
            (false, Some(authority)) => {
                with_host = {
                    let mut h = headers.clone();
                    if let Ok(v) = HeaderValue::from_str(authority.as_str()) {
                        h.insert(header::HOST, v);
                    }
                    h
                };
                &with_host
            }
            _ => headers,
        };
        verifier
            .verify(method.as_str(), uri.path(), uri.query().unwrap_or(""), headers_for_sig, body, chrono::Utc::now())
            .map_err(|e| {
                tracing::debug!(error = %e, "request signature rejected");
                ApiError::new(auth_code(e.aws_type()), e.message())
            })?;
    }
    let target = headers.get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or("");
    let op = Operation::from_target(target).ok_or_else(|| {
        ApiError::new(ErrorCode::UnknownOperation, format!("Operation {target:?} is not supported by this service"))
    })?;
    match op {
        Operation::PutRecord => {
            let req = parse_put_record(body)?;
            let outcome = state.backend.put(op, req, started).await?;
            match outcome {
                PutOutcome::Stored { wal_id, lsn, encrypted } => {
                    let mut out = String::with_capacity(80);
                    out.push_str("{\"RecordId\":\"");
                    encode_into(&mut out, RecordPosition { wal_id, lsn, index: 0 });
                    out.push_str("\",\"Encrypted\":");
                    out.push_str(if encrypted { "true}" } else { "false}" });
                    Ok(json_response(StatusCode::OK, out))
                }
                PutOutcome::Throttled { .. } => Err(ApiError::slow_down()),
            }
        }
        Operation::PutRecordBatch => {
            let req = parse_put_record_batch(body)?;
            let n = req.records.len();
            let outcome = state.backend.put(op, req, started).await?;
            Ok(json_response(StatusCode::OK, batch_response(outcome, n)))
        }
        _ => {
            let input: Value = if body.is_empty() {
                Value::Object(Default::default())
            } else {
                serde_json::from_slice(body)
                    .map_err(|e| ApiError::serialization(format!("cannot parse request body: {e}")))?
            };
            let out = state.backend.control(op, input).await?;
            Ok(json_response(StatusCode::OK, out.to_string()))
        }
    }
}

/// The PutRecordBatch answer, written directly (it is on the hot path: 500 ids per call).
fn batch_response(outcome: PutOutcome, n: usize) -> String {
    match outcome {
        PutOutcome::Stored { wal_id, lsn, encrypted } => {
            let mut out = String::with_capacity(64 + n * 52);
            out.push_str("{\"FailedPutCount\":0,\"Encrypted\":");
            out.push_str(if encrypted { "true" } else { "false" });
            out.push_str(",\"RequestResponses\":[");
            for i in 0..n {
                if i > 0 {
                    out.push(',');
                }
                out.push_str("{\"RecordId\":\"");
                encode_into(&mut out, RecordPosition { wal_id, lsn, index: i as u16 });
                out.push_str("\"}");
            }
            out.push_str("]}");
            out
        }
        PutOutcome::Throttled { encrypted } => {
            const FAILED: &str = "{\"ErrorCode\":\"ServiceUnavailableException\",\"ErrorMessage\":\"Slow down.\"}";
            let mut out = String::with_capacity(64 + n * (FAILED.len() + 1));
            out.push_str(&format!("{{\"FailedPutCount\":{n},\"Encrypted\":{encrypted},\"RequestResponses\":["));
            for i in 0..n {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(FAILED);
            }
            out.push_str("]}");
            out
        }
    }
}

fn auth_code(aws_type: &str) -> ErrorCode {
    match aws_type {
        "MissingAuthenticationTokenException" => ErrorCode::MissingAuthenticationToken,
        "IncompleteSignatureException" => ErrorCode::IncompleteSignature,
        "UnrecognizedClientException" => ErrorCode::UnrecognizedClient,
        "AccessDeniedException" => ErrorCode::AccessDenied,
        _ => ErrorCode::InvalidSignature,
    }
}

async fn metrics<B: Backend>(State(state): State<Arc<AppState<B>>>) -> Response {
    let mut resp = Response::new(Body::from(state.backend.metrics()));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    resp
}

async fn status<B: Backend>(State(state): State<Arc<AppState<B>>>) -> Response {
    let mut resp = Response::new(Body::from(state.backend.status().to_string()));
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

async fn flush<B: Backend>(State(state): State<Arc<AppState<B>>>, Path(name): Path<String>) -> Response {
    match state.backend.flush(name).await {
        Ok(v) => {
            let mut resp = Response::new(Body::from(v.to_string()));
            resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            resp
        }
        Err(e) => error_response(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_response_shapes() {
        let ok: Value =
            serde_json::from_str(&batch_response(PutOutcome::Stored { wal_id: 1, lsn: 2, encrypted: false }, 3))
                .unwrap();
        assert_eq!(ok["FailedPutCount"], 0);
        let ids: Vec<&str> =
            ok["RequestResponses"].as_array().unwrap().iter().map(|r| r["RecordId"].as_str().unwrap()).collect();
        assert_eq!(ids.len(), 3);
        assert_eq!(ids[2], "00000000000000010000000000000002".to_string() + "0002");
        let failed: Value =
            serde_json::from_str(&batch_response(PutOutcome::Throttled { encrypted: true }, 2)).unwrap();
        assert_eq!(failed["FailedPutCount"], 2);
        assert_eq!(failed["Encrypted"], true);
        assert_eq!(failed["RequestResponses"][1]["ErrorCode"], "ServiceUnavailableException");
        assert_eq!(failed["RequestResponses"][1]["ErrorMessage"], "Slow down.");
    }
}
