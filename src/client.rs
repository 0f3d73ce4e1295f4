//! A small Firehose API client for the command line (`spillway send`, `generate`, `streams`):
//! JSON 1.1 calls (`X-Amz-Target: Firehose_20150804.<Operation>`) to a spillway endpoint over
//! HTTP/1.1 keep-alive.
//!
//! Requests are unsigned: a server with `[auth]` credentials refuses them (use the AWS CLI or an
//! SDK there). Errors carry the server's `__type` and message, so a user sees
//! `ResourceNotFoundException: ...` exactly as the AWS CLI would show it.

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// The default endpoint of `spillway serve`.
pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:4573";

/// A Firehose API error answered by the server.
#[derive(Debug)]
pub struct ApiError {
    pub status: u16,
    pub error_type: String,
    pub message: String,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {} (HTTP {})", self.error_type, self.message, self.status)
    }
}

impl std::error::Error for ApiError {}

/// One endpoint's client (cheap to clone).
#[derive(Clone)]
pub struct FirehoseClient {
    endpoint: String,
    http: Client<HttpConnector, Full<Bytes>>,
}

impl FirehoseClient {
    /// `endpoint`: `http://host:port` of a spillway server (https is not supported by this client).
    pub fn new(endpoint: &str) -> anyhow::Result<Self> {
        let endpoint = endpoint.trim_end_matches('/').to_string();
        if !endpoint.starts_with("http://") {
            bail!("endpoint {endpoint:?} must be http://host:port (a spillway server)");
        }
        let http = Client::builder(TokioExecutor::new()).pool_max_idle_per_host(16).build_http();
        Ok(FirehoseClient { endpoint, http })
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Calls `operation` with `body`; the answer's JSON, or an [`ApiError`] (as `anyhow::Error`,
    /// downcastable) for an error status.
    pub async fn call(&self, operation: &str, body: &Value) -> anyhow::Result<Value> {
        let req = http::Request::post(&self.endpoint)
            .header("content-type", "application/x-amz-json-1.1")
            .header("x-amz-target", format!("Firehose_20150804.{operation}"))
            .body(Full::new(Bytes::from(body.to_string())))?;
        let resp = self.http.request(req).await.with_context(|| format!("cannot reach {}", self.endpoint))?;
        let status = resp.status().as_u16();
        let bytes = resp.into_body().collect().await?.to_bytes();
        let value: Value =
            if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap_or(Value::Null) };
        if status != 200 {
            let error_type = value["__type"].as_str().unwrap_or("UnknownError");
            let error_type = error_type.rsplit('#').next().unwrap_or(error_type).to_string();
            let message = value["message"].as_str().or(value["Message"].as_str()).unwrap_or("").to_string();
            return Err(ApiError { status, error_type, message }.into());
        }
        Ok(value)
    }

    /// `POST /_spillway/streams/{name}/flush`: delivers what the stream buffers; the answer's JSON.
    pub async fn flush(&self, stream: &str) -> anyhow::Result<Value> {
        let req = http::Request::post(format!("{}/_spillway/streams/{stream}/flush", self.endpoint))
            .body(Full::new(Bytes::new()))?;
        let resp = self.http.request(req).await.with_context(|| format!("cannot reach {}", self.endpoint))?;
        let status = resp.status();
        let bytes = resp.into_body().collect().await?.to_bytes();
        if !status.is_success() {
            bail!("flush of {stream} failed (HTTP {status}): {}", String::from_utf8_lossy(&bytes));
        }
        Ok(serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }
}
