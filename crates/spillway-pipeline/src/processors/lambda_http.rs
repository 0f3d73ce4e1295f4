//! The Lambda Invoke API as a [`FunctionBackend`] (reference §11.2): a transformation function
//! that runs in AWS Lambda, LocalStack or the Lambda runtime interface emulator, called over HTTP.
//!
//! Owns the request (`POST {endpoint}/2015-03-31/functions/{FunctionName}/invocations`,
//! `X-Amz-Invocation-Type: RequestResponse`, the event as the body, optional `?Qualifier=`), its
//! SigV4 signature (service `lambda`, payload hash included; only when credentials are
//! configured) and the mapping of every HTTP answer to the invocation contract of `lambda.rs`:
//! - 2xx without `X-Amz-Function-Error` → the body, byte for byte;
//! - 2xx with `X-Amz-Function-Error` → [`InvokeError::Function`] with the body's
//!   `errorType`/`errorMessage` (the header value and the raw body when the body is not that JSON);
//! - errors are classified by the AWS error type (`x-amzn-ErrorType` header, else the JSON body's
//!   `__type`/`code`), then by status: throttling / 429 → `Throttled`; access denied, bad or
//!   missing signature / 401, 403 → `InvokeDenied`; `ResourceNotFoundException` / 404 →
//!   `Unavailable`; `RequestTooLargeException` / 413 → `ResponseTooLarge`; anything else, and
//!   connection failures → `Crashed` (a retryable function error);
//! - a response body over [`MAX_PAYLOAD_BYTES`] → `ResponseTooLarge` (the read stops there);
//! - no complete answer within `timeout` → `Timeout`.
//!
//! Invariants:
//! - at most `max_concurrency` invocations are outstanding at once (a semaphore; waiting for a
//!   permit does not count against the timeout);
//! - nothing the network sends can make it panic: no `unwrap` on headers, bodies or JSON;
//! - the secret access key and session token appear in no error, log line or `Debug` output;
//! - everything that can be checked without the network (URL, names, credentials, the HTTP
//!   client) is checked by [`InvokeApiBackend::new`], so a built backend only fails per call.

use super::lambda::{FunctionBackend, Invocation, InvokeError, InvokeFuture, MAX_PAYLOAD_BYTES};
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::Url;
use reqwest::header::HeaderMap;
use serde_json::Value;
use spillway_destination::text::{error_chain, preview};
use std::fmt;
use std::time::{Duration, SystemTime};
use tokio::sync::Semaphore;

/// Default per-invocation timeout: Lambda's maximum for Firehose.
pub const DEFAULT_TIMEOUT: Duration = super::lambda::DEFAULT_TIMEOUT;
/// Default number of outstanding invocations of one backend.
pub const DEFAULT_MAX_CONCURRENCY: usize = 5;
/// Default signing region.
pub const DEFAULT_REGION: &str = "us-east-1";
/// The Invoke API's version path segment.
const API_VERSION: &str = "2015-03-31";

/// RFC 3986 unreserved characters stay; everything else (`:` of ARNs and qualifiers included) is
/// `%XX`, as the AWS SDKs encode path labels and query values.
const ENCODE_SET: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// Static credentials to sign requests with.
#[derive(Clone, PartialEq, Eq)]
pub struct InvokeCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl fmt::Debug for InvokeCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InvokeCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"** redacted **")
            .field("session_token", &self.session_token.as_ref().map(|_| "** redacted **"))
            .finish()
    }
}

/// How to reach one function through the Invoke API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvokeApiOptions {
    /// Base URL, e.g. `https://lambda.us-east-1.amazonaws.com` or `http://127.0.0.1:9001`; a path
    /// (`http://host/prefix`) is kept in front of the API path.
    pub endpoint: String,
    /// The `FunctionName` path segment: a name, `name:qualifier`, or a full function ARN.
    pub function_name: String,
    /// Sent as `?Qualifier=` (version or alias) when set.
    pub qualifier: Option<String>,
    /// Signing region (only used with credentials).
    pub region: String,
    /// When set, requests are SigV4-signed for service `lambda`; otherwise they carry no
    /// `Authorization` header.
    pub credentials: Option<InvokeCredentials>,
    /// Time allowed for one invocation, from sending the request to the end of the response.
    pub timeout: Duration,
    /// Outstanding invocations at most.
    pub max_concurrency: usize,
}

impl InvokeApiOptions {
    /// Options with the defaults: no qualifier, region `us-east-1`, unsigned, 300 s, 5 at a time.
    pub fn new(endpoint: impl Into<String>, function_name: impl Into<String>) -> Self {
        Self {
            endpoint: endpoint.into(),
            function_name: function_name.into(),
            qualifier: None,
            region: DEFAULT_REGION.to_owned(),
            credentials: None,
            timeout: DEFAULT_TIMEOUT,
            max_concurrency: DEFAULT_MAX_CONCURRENCY,
        }
    }
}

/// Options an Invoke API backend cannot be built with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvokeApiConfigError {
    #[error("url {url:?} is not a valid http(s) URL: {reason}")]
    BadEndpoint { url: String, reason: String },
    #[error("{field} {problem}")]
    Invalid { field: &'static str, problem: String },
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

/// Calls one function through the Lambda Invoke API (see the module header).
pub struct InvokeApiBackend {
    client: reqwest::Client,
    /// The complete invocation URL (path and query already encoded).
    url: Url,
    region: String,
    credentials: Option<aws_credential_types::Credentials>,
    timeout: Duration,
    permits: Semaphore,
}

impl fmt::Debug for InvokeApiBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InvokeApiBackend")
            .field("url", &self.url.as_str())
            .field("region", &self.region)
            .field("signed", &self.credentials.is_some())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl InvokeApiBackend {
    pub fn new(opts: InvokeApiOptions) -> Result<Self, InvokeApiConfigError> {
        let invalid =
            |field: &'static str, problem: &str| InvokeApiConfigError::Invalid { field, problem: problem.to_owned() };
        let url = invocation_url(&opts.endpoint, &opts.function_name, opts.qualifier.as_deref())?;
        if opts.qualifier.as_deref().is_some_and(str::is_empty) {
            return Err(invalid("qualifier", "must not be empty"));
        }
        if opts.max_concurrency == 0 {
            return Err(invalid("max_concurrency", "must be at least 1"));
        }
        if opts.timeout.is_zero() {
            return Err(invalid("timeout", "must be more than zero"));
        }
        let header_safe = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic());
        if !header_safe(&opts.region) {
            return Err(invalid("region", "must be a non-empty region name without spaces"));
        }
        let credentials = match opts.credentials {
            None => None,
            Some(c) => {
                if !header_safe(&c.access_key_id) {
                    return Err(invalid("access_key_id", "must be non-empty printable ASCII without spaces"));
                }
                if !header_safe(&c.secret_access_key) {
                    return Err(invalid("secret_access_key", "must be non-empty printable ASCII without spaces"));
                }
                if c.session_token.as_deref().is_some_and(|t| !header_safe(t)) {
                    return Err(invalid("session_token", "must be non-empty printable ASCII without spaces"));
                }
                Some(aws_credential_types::Credentials::new(
                    c.access_key_id,
                    c.secret_access_key,
                    c.session_token,
                    None,
                    "spillway.toml",
                ))
            }
        };
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(opts.max_concurrency)
            .connect_timeout(opts.timeout.min(Duration::from_secs(30)))
            .build()
            .map_err(|e| InvokeApiConfigError::Client(error_chain(&e)))?;
        Ok(Self {
            client,
            url,
            region: opts.region,
            credentials,
            timeout: opts.timeout,
            permits: Semaphore::new(opts.max_concurrency),
        })
    }

    /// The URL every invocation is sent to.
    pub fn url(&self) -> &str {
        self.url.as_str()
    }

    async fn call(&self, invocation: &Invocation) -> Result<Vec<u8>, InvokeError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| InvokeError::Unavailable("the backend is shut down".to_owned()))?;
        let request = self.request(invocation)?;
        match tokio::time::timeout(self.timeout, self.exchange(request)).await {
            Ok(result) => result,
            Err(_) => Err(InvokeError::Timeout(self.timeout)),
        }
    }

    /// The signed (or unsigned) request for one invocation.
    fn request(&self, invocation: &Invocation) -> Result<reqwest::Request, InvokeError> {
        const HEADERS: [(&str, &str); 2] =
            [("content-type", "application/json"), ("x-amz-invocation-type", "RequestResponse")];
        let body = invocation.payload.as_bytes();
        let mut builder = self.client.post(self.url.clone());
        for (name, value) in HEADERS {
            builder = builder.header(name, value);
        }
        if let Some(credentials) = &self.credentials {
            let identity = credentials.clone().into();
            let params = v4::SigningParams::builder()
                .identity(&identity)
                .region(&self.region)
                .name("lambda")
                .time(SystemTime::now())
                .settings(SigningSettings::default())
                .build()
                .map_err(|e| InvokeError::Crashed(format!("cannot sign the request: {e}")))?
                .into();
            let signable =
                SignableRequest::new("POST", self.url.as_str(), HEADERS.into_iter(), SignableBody::Bytes(body))
                    .map_err(|e| InvokeError::Crashed(format!("cannot sign the request: {e}")))?;
            let (instructions, _signature) = sign(signable, &params)
                .map_err(|e| InvokeError::Crashed(format!("cannot sign the request: {e}")))?
                .into_parts();
            for (name, value) in instructions.headers() {
                builder = builder.header(name, value);
            }
        }
        builder.body(body.to_vec()).build().map_err(|e| InvokeError::Crashed(error_chain(&e)))
    }

    /// Sends the request and maps the answer.
    async fn exchange(&self, request: reqwest::Request) -> Result<Vec<u8>, InvokeError> {
        let mut response = self
            .client
            .execute(request)
            .await
            .map_err(|e| InvokeError::Crashed(format!("invoking {}: {}", self.url, error_chain(&e))))?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        if response.content_length().is_some_and(|n| n > MAX_PAYLOAD_BYTES as u64) {
            return Err(InvokeError::ResponseTooLarge);
        }
        let mut body = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > MAX_PAYLOAD_BYTES {
                        return Err(InvokeError::ResponseTooLarge);
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) => {
                    return Err(InvokeError::Crashed(format!(
                        "reading the response of {}: {}",
                        self.url,
                        error_chain(&e)
                    )));
                }
            }
        }
        map_response(status, &headers, body)
    }
}

impl FunctionBackend for InvokeApiBackend {
    fn invoke<'a>(&'a self, invocation: &'a Invocation) -> InvokeFuture<'a> {
        Box::pin(self.call(invocation))
    }
}

/// `{endpoint}/2015-03-31/functions/{function_name}/invocations[?Qualifier=...]`.
fn invocation_url(endpoint: &str, function_name: &str, qualifier: Option<&str>) -> Result<Url, InvokeApiConfigError> {
    let bad = |reason: &str| InvokeApiConfigError::BadEndpoint { url: endpoint.to_owned(), reason: reason.to_owned() };
    let mut url = Url::parse(endpoint).map_err(|e| bad(&e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("the scheme must be http or https"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("a host is required"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("credentials do not belong in the URL"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("a query or fragment is not allowed"));
    }
    if function_name.is_empty() {
        return Err(InvokeApiConfigError::Invalid { field: "function_name", problem: "must not be empty".to_owned() });
    }
    let prefix = url.path().trim_end_matches('/').to_owned();
    let name = utf8_percent_encode(function_name, ENCODE_SET);
    url.set_path(&format!("{prefix}/{API_VERSION}/functions/{name}/invocations"));
    if let Some(qualifier) = qualifier {
        url.set_query(Some(&format!("Qualifier={}", utf8_percent_encode(qualifier, ENCODE_SET))));
    }
    Ok(url)
}

/// Maps a complete HTTP answer (body at most [`MAX_PAYLOAD_BYTES`]) to the invocation result.
fn map_response(status: u16, headers: &HeaderMap, body: Vec<u8>) -> Result<Vec<u8>, InvokeError> {
    let json: Option<Value> = serde_json::from_slice(&body).ok();
    let field = |names: &[&str]| -> Option<String> {
        let object = json.as_ref()?.as_object()?;
        names.iter().find_map(|name| object.get(*name)?.as_str().map(str::to_owned))
    };
    if (200..300).contains(&status) {
        let Some(kind) = headers.get("x-amz-function-error") else {
            return Ok(body);
        };
        let kind = kind.to_str().ok().filter(|k| !k.is_empty()).unwrap_or("Unhandled");
        let error_type = field(&["errorType"]).filter(|t| !t.is_empty()).unwrap_or_else(|| kind.to_owned());
        let message = field(&["errorMessage"]).unwrap_or_else(|| preview(&body));
        return Err(InvokeError::Function { error_type, message });
    }

    // `x-amzn-ErrorType: ResourceNotFoundException:http://internal.amazon.com/...`, or
    // `"__type": "com.amazonaws...#ResourceNotFoundException"` in the body.
    let error_type = headers
        .get("x-amzn-errortype")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| field(&["__type", "code", "Code"]))
        .map(|t| short_type(&t))
        .filter(|t| !t.is_empty());
    let message = field(&["message", "Message", "errorMessage"]).unwrap_or_else(|| preview(&body));
    let detail = match (&error_type, field(&["Type"])) {
        (Some(t), _) => format!("HTTP {status} {t}: {message}"),
        (None, Some(origin)) => format!("HTTP {status} ({origin}): {message}"),
        (None, None) => format!("HTTP {status}: {message}"),
    };
    let by_type = error_type.as_deref().and_then(|t| match t {
        "TooManyRequestsException" | "ThrottlingException" | "Throttling" | "ThrottledException" => {
            Some(InvokeError::Throttled(detail.clone()))
        }
        "AccessDeniedException"
        | "AccessDenied"
        | "UnrecognizedClientException"
        | "InvalidSignatureException"
        | "IncompleteSignatureException"
        | "IncompleteSignature"
        | "MissingAuthenticationTokenException"
        | "ExpiredTokenException"
        | "InvalidClientTokenId"
        | "SignatureDoesNotMatch" => Some(InvokeError::InvokeDenied(detail.clone())),
        "ResourceNotFoundException" => Some(InvokeError::Unavailable(detail.clone())),
        "RequestTooLargeException" => Some(InvokeError::ResponseTooLarge),
        _ => None,
    });
    Err(by_type.unwrap_or(match status {
        429 => InvokeError::Throttled(detail),
        401 | 403 => InvokeError::InvokeDenied(detail),
        404 => InvokeError::Unavailable(detail),
        413 => InvokeError::ResponseTooLarge,
        _ => InvokeError::Crashed(detail),
    }))
}

/// `ns#Name:uri` → `Name`.
fn short_type(raw: &str) -> String {
    let after_hash = raw.rsplit('#').next().unwrap_or(raw);
    after_hash.split(':').next().unwrap_or(after_hash).trim().to_owned()
}

#[cfg(test)]
mod tests {
    //! The server here is a stand-in for the Lambda Invoke API: neither AWS Lambda nor the Lambda
    //! runtime interface emulator (nor LocalStack) can be installed on this machine. It speaks the
    //! documented wire format: `POST /2015-03-31/functions/{name}/invocations`, the function's
    //! response as the body, `X-Amz-Function-Error` for function errors, `x-amzn-ErrorType` and a
    //! JSON `{"Type", "message"}` body for API errors.

    use super::*;
    use crate::processors::lambda::{ErrorCode, InputRecord, LambdaConfig, Outcome, StreamContext, invoke_batch};
    use axum::Router;
    use axum::body::Bytes as BodyBytes;
    use axum::extract::{OriginalUri, Path as UrlPath, State};
    use axum::http::{HeaderMap as AxumHeaders, Method, StatusCode};
    use axum::response::{IntoResponse, Response};
    use axum::routing::post;
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use parking_lot::Mutex;
    use spillway_api::sigv4::{Credentials as ServerCredentials, Verifier};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Instant;

    const AKID: &str = "AKIDEXAMPLE";
    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    const TOKEN: &str = "FwoGZXIvYXdzEXAMPLEtoken==";

    /// What the server saw of one request.
    #[derive(Debug, Clone)]
    struct Seen {
        name: String,
        raw_path: String,
        query: Option<String>,
        headers: AxumHeaders,
        body: Vec<u8>,
        /// `Ok(access key id)` when the signature verified, else the verifier's error.
        sigv4: Result<String, String>,
    }

    #[derive(Default)]
    struct Server {
        seen: Mutex<Vec<Seen>>,
        current: AtomicUsize,
        peak: AtomicUsize,
        calls: AtomicUsize,
    }

    impl Server {
        fn seen(&self) -> Vec<Seen> {
            self.seen.lock().clone()
        }
    }

    fn verifier() -> Verifier {
        Verifier::new(
            "lambda",
            vec![ServerCredentials {
                access_key_id: AKID.to_owned(),
                secret_access_key: SECRET.to_owned(),
                session_token: Some(TOKEN.to_owned()),
            }],
        )
    }

    fn api_error(status: StatusCode, error_type: &str, message: &str) -> Response {
        let body = serde_json::json!({"Type": "User", "message": message}).to_string();
        (
            status,
            [("x-amzn-ErrorType", format!("{error_type}:http://internal.amazon.com/coral/com.amazonaws.awslambda/"))],
            body,
        )
            .into_response()
    }

    /// The response of a transformation function that upper-cases every record and drops the
    /// ones that are exactly `drop`.
    fn transform(event: &[u8]) -> Vec<u8> {
        let event: Value = serde_json::from_slice(event).expect("the event is JSON");
        let records: Vec<Value> = event["records"]
            .as_array()
            .expect("records")
            .iter()
            .map(|r| {
                let data = STANDARD.decode(r["data"].as_str().expect("data")).expect("base64");
                if data == b"drop" {
                    serde_json::json!({"recordId": r["recordId"], "result": "Dropped"})
                } else {
                    let upper = STANDARD.encode(data.to_ascii_uppercase());
                    serde_json::json!({"recordId": r["recordId"], "result": "Ok", "data": upper,
                                       "metadata": {"partitionKeys": {"len": data.len()}}})
                }
            })
            .collect();
        serde_json::to_vec(&serde_json::json!({ "records": records })).expect("encodes")
    }

    async fn invocations(
        State(server): State<Arc<Server>>,
        UrlPath(name): UrlPath<String>,
        method: Method,
        OriginalUri(uri): OriginalUri,
        headers: AxumHeaders,
        body: BodyBytes,
    ) -> Response {
        let call = server.calls.fetch_add(1, Ordering::SeqCst) + 1;
        let sigv4 = verifier()
            .verify(method.as_str(), uri.path(), uri.query().unwrap_or(""), &headers, &body, chrono::Utc::now())
            .map_err(|e| e.to_string());
        server.seen.lock().push(Seen {
            name: name.clone(),
            raw_path: uri.path().to_owned(),
            query: uri.query().map(str::to_owned),
            headers: headers.clone(),
            body: body.to_vec(),
            sigv4,
        });
        let now = server.current.fetch_add(1, Ordering::SeqCst) + 1;
        server.peak.fetch_max(now, Ordering::SeqCst);
        let response = match name.as_str() {
            "echo" => (StatusCode::OK, body.to_vec()).into_response(),
            "slow" => {
                tokio::time::sleep(Duration::from_millis(150)).await;
                (StatusCode::OK, body.to_vec()).into_response()
            }
            "sleepy" => {
                tokio::time::sleep(Duration::from_secs(5)).await;
                (StatusCode::OK, "late").into_response()
            }
            "raises" => (
                StatusCode::OK,
                [("X-Amz-Function-Error", "Unhandled")],
                r#"{"errorMessage":"boom","errorType":"ValueError","stackTrace":["  File x"]}"#,
            )
                .into_response(),
            "raises-plain" => {
                (StatusCode::OK, [("X-Amz-Function-Error", "Handled")], "Task timed out after 3.00 seconds")
                    .into_response()
            }
            "throttled" => api_error(StatusCode::TOO_MANY_REQUESTS, "TooManyRequestsException", "Rate exceeded"),
            "throttled-bare" => (StatusCode::TOO_MANY_REQUESTS, "slow down").into_response(),
            "missing" => api_error(StatusCode::NOT_FOUND, "ResourceNotFoundException", "Function not found: missing"),
            "denied" => api_error(StatusCode::FORBIDDEN, "AccessDeniedException", "not authorized"),
            "unrecognized" => (
                StatusCode::FORBIDDEN,
                r#"{"__type":"com.amazon.coral.service#UnrecognizedClientException","message":"bad token"}"#,
            )
                .into_response(),
            "too-large" => api_error(StatusCode::PAYLOAD_TOO_LARGE, "RequestTooLargeException", "too large"),
            "huge" => (StatusCode::OK, vec![b' '; MAX_PAYLOAD_BYTES + 1]).into_response(),
            // Chunked, so no Content-Length announces the size: the read itself must stop.
            "huge-chunked" => {
                let chunks = (0..7).map(|_| Ok::<_, std::io::Error>(BodyBytes::from(vec![b' '; 1024 * 1024])));
                (StatusCode::OK, axum::body::Body::from_stream(futures::stream::iter(chunks))).into_response()
            }
            "service" => api_error(StatusCode::INTERNAL_SERVER_ERROR, "ServiceException", "internal"),
            "conflict" => api_error(StatusCode::CONFLICT, "ResourceConflictException", "being updated"),
            "transform" => (StatusCode::OK, transform(&body)).into_response(),
            "flaky" if call == 1 => api_error(StatusCode::TOO_MANY_REQUESTS, "TooManyRequestsException", "later"),
            "flaky" => (StatusCode::OK, transform(&body)).into_response(),
            // Any other name: the decoded name back, so tests can check the path encoding.
            _ => (StatusCode::OK, name.clone()).into_response(),
        };
        server.current.fetch_sub(1, Ordering::SeqCst);
        response
    }

    /// Starts the stand-in API on 127.0.0.1:0; returns its base URL.
    async fn serve() -> (String, Arc<Server>) {
        let server = Arc::new(Server::default());
        let app = Router::new()
            .route("/2015-03-31/functions/{name}/invocations", post(invocations))
            .with_state(server.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (format!("http://{addr}"), server)
    }

    fn backend(endpoint: &str, name: &str) -> InvokeApiBackend {
        InvokeApiBackend::new(InvokeApiOptions::new(endpoint, name)).expect("backend")
    }

    fn invocation(payload: &str) -> Invocation {
        Invocation { invocation_id: "00000000-0000-0000-0000-000000000001".to_owned(), payload: payload.to_owned() }
    }

    async fn invoke(endpoint: &str, name: &str) -> Result<Vec<u8>, InvokeError> {
        backend(endpoint, name).invoke(&invocation(r#"{"records":[]}"#)).await
    }

    #[tokio::test]
    async fn ok_body_is_returned_byte_for_byte_with_the_invoke_headers() {
        let (endpoint, server) = serve().await;
        // Not valid UTF-8 escapes in JSON, odd spacing, unicode: the backend must not reformat.
        let payload =
            "{ \"invocationId\" : \"x\",\n\"records\":[{\"data\":\"4pyTIMOgIGxh\"}], \"s\":\"\u{2713}\\u00e9\" }";
        let body = backend(&endpoint, "echo").invoke(&invocation(payload)).await.expect("invocation");
        assert_eq!(body, payload.as_bytes());

        let seen = server.seen();
        assert_eq!(seen.len(), 1);
        let request = &seen[0];
        assert_eq!(request.raw_path, "/2015-03-31/functions/echo/invocations");
        assert_eq!(request.query, None);
        assert_eq!(request.body, payload.as_bytes());
        assert_eq!(request.headers.get("content-type").map(|v| v.as_bytes()), Some(&b"application/json"[..]));
        assert_eq!(request.headers.get("x-amz-invocation-type").map(|v| v.as_bytes()), Some(&b"RequestResponse"[..]));
        // Unsigned: no credentials configured, no SigV4 headers at all.
        assert!(request.headers.get("authorization").is_none());
        assert!(request.headers.get("x-amz-date").is_none());
        assert!(request.headers.get("x-amz-security-token").is_none());
        assert!(request.sigv4.is_err(), "{request:?}");
    }

    #[tokio::test]
    async fn arn_names_and_qualifiers_are_percent_encoded() {
        let (endpoint, server) = serve().await;
        let arn = "arn:aws:lambda:us-east-1:123456789012:function:my-fn:prod";
        let body = backend(&endpoint, arn).invoke(&invocation("{}")).await.expect("invocation");
        assert_eq!(body, arn.as_bytes(), "the server decodes the path segment back to the ARN");

        let mut opts = InvokeApiOptions::new(format!("{endpoint}/"), "my-fn");
        opts.qualifier = Some("$LATEST".to_owned());
        let with_qualifier = InvokeApiBackend::new(opts).expect("backend");
        assert_eq!(
            with_qualifier.url(),
            format!("{endpoint}/2015-03-31/functions/my-fn/invocations?Qualifier=%24LATEST")
        );
        assert_eq!(with_qualifier.invoke(&invocation("{}")).await.expect("invocation"), b"my-fn");

        let seen = server.seen();
        assert_eq!(
            seen[0].raw_path,
            "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A123456789012%3Afunction%3Amy-fn%3Aprod/invocations"
        );
        assert_eq!(seen[0].name, arn);
        assert_eq!(seen[1].query.as_deref(), Some("Qualifier=%24LATEST"));
    }

    #[tokio::test]
    async fn requests_with_credentials_are_sigv4_signed_for_lambda() {
        let (endpoint, server) = serve().await;
        let credentials = InvokeCredentials {
            access_key_id: AKID.to_owned(),
            secret_access_key: SECRET.to_owned(),
            session_token: Some(TOKEN.to_owned()),
        };
        let mut opts = InvokeApiOptions::new(&endpoint, "arn:aws:lambda:eu-west-1:123456789012:function:f");
        opts.qualifier = Some("live".to_owned());
        opts.region = "eu-west-1".to_owned();
        opts.credentials = Some(credentials.clone());
        let signed = InvokeApiBackend::new(opts).expect("backend");
        let payload = r#"{"invocationId":"a b","records":[{"data":"aGk="}]}"#;
        signed.invoke(&invocation(payload)).await.expect("invocation");

        // A wrong secret must not verify: proves the server really checks.
        let mut opts = InvokeApiOptions::new(&endpoint, "f");
        opts.credentials = Some(InvokeCredentials { secret_access_key: "not-the-secret".to_owned(), ..credentials });
        InvokeApiBackend::new(opts).expect("backend").invoke(&invocation(payload)).await.expect("invocation");

        let seen = server.seen();
        assert_eq!(seen[0].sigv4, Ok(AKID.to_owned()), "{:?}", seen[0]);
        let authorization = seen[0].headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default();
        assert!(authorization.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/"), "{authorization}");
        assert!(authorization.contains("/eu-west-1/lambda/aws4_request"), "{authorization}");
        assert!(authorization.contains("x-amz-invocation-type"), "{authorization}");
        assert_eq!(seen[0].headers.get("x-amz-security-token").map(|v| v.as_bytes()), Some(TOKEN.as_bytes()));
        assert!(seen[1].sigv4.as_ref().is_err_and(|e| e.contains("signature")), "{:?}", seen[1].sigv4);
        // Secrets stay out of Debug output.
        let debug =
            format!("{signed:?} {:?}", InvokeApiOptions { credentials: None, ..InvokeApiOptions::new("x", "y") });
        assert!(!debug.contains(SECRET) && !debug.contains(TOKEN), "{debug}");
        let debug = format!(
            "{:?}",
            InvokeCredentials {
                access_key_id: AKID.to_owned(),
                secret_access_key: SECRET.to_owned(),
                session_token: Some(TOKEN.to_owned())
            }
        );
        assert!(!debug.contains(SECRET) && !debug.contains(TOKEN), "{debug}");
    }

    #[tokio::test]
    async fn function_errors_carry_type_and_message() {
        let (endpoint, _server) = serve().await;
        assert_eq!(
            invoke(&endpoint, "raises").await,
            Err(InvokeError::Function { error_type: "ValueError".to_owned(), message: "boom".to_owned() })
        );
        assert_eq!(
            invoke(&endpoint, "raises-plain").await,
            Err(InvokeError::Function {
                error_type: "Handled".to_owned(),
                message: "Task timed out after 3.00 seconds".to_owned()
            })
        );
    }

    #[tokio::test]
    async fn api_errors_map_to_invoke_errors() {
        let (endpoint, _server) = serve().await;
        let check = |result: Result<Vec<u8>, InvokeError>, code: ErrorCode, want: &str| {
            let error = result.expect_err("an error");
            assert_eq!(error.code(), code, "{error:?}");
            assert!(error.to_string().contains(want), "{error} should mention {want}");
            error
        };
        let e = check(invoke(&endpoint, "throttled").await, ErrorCode::InvokeLimitExceeded, "TooManyRequestsException");
        assert!(
            matches!(e, InvokeError::Throttled(ref d) if d.contains("429") && d.contains("Rate exceeded")),
            "{e:?}"
        );
        let e = check(invoke(&endpoint, "throttled-bare").await, ErrorCode::InvokeLimitExceeded, "slow down");
        assert!(matches!(e, InvokeError::Throttled(_)), "{e:?}");
        let e = check(invoke(&endpoint, "missing").await, ErrorCode::ResourceNotFound, "Function not found");
        assert!(matches!(e, InvokeError::Unavailable(_)), "{e:?}");
        let e = check(invoke(&endpoint, "denied").await, ErrorCode::InvokeAccessDenied, "AccessDeniedException");
        assert!(matches!(e, InvokeError::InvokeDenied(_)), "{e:?}");
        let e = check(invoke(&endpoint, "unrecognized").await, ErrorCode::InvokeAccessDenied, "UnrecognizedClient");
        assert!(matches!(e, InvokeError::InvokeDenied(_)), "{e:?}");
        assert_eq!(invoke(&endpoint, "too-large").await, Err(InvokeError::ResponseTooLarge));
        assert_eq!(invoke(&endpoint, "huge").await.map(|b| b.len()), Err(InvokeError::ResponseTooLarge));
        assert_eq!(invoke(&endpoint, "huge-chunked").await.map(|b| b.len()), Err(InvokeError::ResponseTooLarge));
        let e = check(invoke(&endpoint, "service").await, ErrorCode::FunctionError, "ServiceException");
        assert!(matches!(e, InvokeError::Crashed(ref d) if d.contains("500")), "{e:?}");
        let e = check(invoke(&endpoint, "conflict").await, ErrorCode::FunctionError, "ResourceConflictException");
        assert!(matches!(e, InvokeError::Crashed(_)), "{e:?}");
    }

    #[tokio::test]
    async fn connection_failures_are_crashes() {
        // A port nobody listens on: bind, note the port, close.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("address");
        drop(listener);
        let error = invoke(&format!("http://{addr}"), "f").await.expect_err("nothing listens");
        assert!(matches!(error, InvokeError::Crashed(_)), "{error:?}");
        assert_eq!(error.code(), ErrorCode::FunctionError);
    }

    #[tokio::test]
    async fn slow_functions_time_out() {
        let (endpoint, _server) = serve().await;
        let mut opts = InvokeApiOptions::new(&endpoint, "sleepy");
        opts.timeout = Duration::from_millis(300);
        let backend = InvokeApiBackend::new(opts).expect("backend");
        let started = Instant::now();
        let result = backend.invoke(&invocation("{}")).await;
        assert_eq!(result, Err(InvokeError::Timeout(Duration::from_millis(300))));
        assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    }

    #[tokio::test]
    async fn outstanding_invocations_are_bounded() {
        let (endpoint, server) = serve().await;
        let mut opts = InvokeApiOptions::new(&endpoint, "slow");
        opts.max_concurrency = 2;
        let backend = InvokeApiBackend::new(opts).expect("backend");
        let invocations: Vec<Invocation> = (0..6).map(|i| invocation(&format!("{{\"n\":{i}}}"))).collect();
        let results = futures::future::join_all(invocations.iter().map(|inv| backend.invoke(inv))).await;
        for (inv, result) in invocations.iter().zip(results) {
            assert_eq!(result.expect("invocation"), inv.payload.as_bytes());
        }
        assert_eq!(server.calls.load(Ordering::SeqCst), 6);
        assert_eq!(server.peak.load(Ordering::SeqCst), 2, "two at a time, and no more");
    }

    #[test]
    fn options_are_checked_up_front() {
        let build =
            |endpoint: &str, name: &str| InvokeApiBackend::new(InvokeApiOptions::new(endpoint, name)).map(|_| ());
        assert!(matches!(build("not a url", "f"), Err(InvokeApiConfigError::BadEndpoint { .. })));
        assert!(matches!(build("ftp://host", "f"), Err(InvokeApiConfigError::BadEndpoint { .. })));
        assert!(matches!(build("http://host/?x=1", "f"), Err(InvokeApiConfigError::BadEndpoint { .. })));
        assert!(matches!(build("http://k:s@host", "f"), Err(InvokeApiConfigError::BadEndpoint { .. })));
        assert!(matches!(build("http://host", ""), Err(InvokeApiConfigError::Invalid { field: "function_name", .. })));
        assert!(build("https://lambda.us-east-1.amazonaws.com", "f").is_ok());
        let mut opts = InvokeApiOptions::new("http://host:9001/prefix/", "f");
        assert_eq!(
            InvokeApiBackend::new(opts.clone()).expect("backend").url(),
            "http://host:9001/prefix/2015-03-31/functions/f/invocations"
        );
        opts.max_concurrency = 0;
        assert!(matches!(
            InvokeApiBackend::new(opts.clone()),
            Err(InvokeApiConfigError::Invalid { field: "max_concurrency", .. })
        ));
        opts.max_concurrency = 1;
        opts.credentials = Some(InvokeCredentials {
            access_key_id: "AK".to_owned(),
            secret_access_key: "with space".to_owned(),
            session_token: None,
        });
        let error = InvokeApiBackend::new(opts).expect_err("bad secret");
        assert!(matches!(error, InvokeApiConfigError::Invalid { field: "secret_access_key", .. }));
        assert!(!error.to_string().contains("with space"), "{error}");
    }

    #[test]
    fn error_types_are_shortened() {
        assert_eq!(
            short_type("ResourceNotFoundException:http://internal.amazon.com/coral/x/"),
            "ResourceNotFoundException"
        );
        assert_eq!(short_type("com.amazon.coral.service#UnrecognizedClientException"), "UnrecognizedClientException");
        assert_eq!(short_type("TooManyRequestsException"), "TooManyRequestsException");
        // Garbage from the network never panics.
        let mut headers = HeaderMap::new();
        headers.insert("x-amzn-errortype", reqwest::header::HeaderValue::from_static(":::#"));
        assert!(matches!(map_response(500, &headers, vec![0xff, 0xfe]), Err(InvokeError::Crashed(_))));
        headers.clear();
        headers.insert("x-amz-function-error", reqwest::header::HeaderValue::from_static(""));
        assert!(matches!(
            map_response(200, &headers, b"[1]".to_vec()),
            Err(InvokeError::Function { ref error_type, .. }) if error_type == "Unhandled"
        ));
    }

    // ---- end to end through invoke_batch ----

    fn lambda_config(retries: u32) -> LambdaConfig {
        let retries = retries.to_string();
        let mut cfg = LambdaConfig::from_parameters(&[
            ("LambdaArn", "arn:aws:lambda:us-east-1:123456789012:function:transform"),
            ("NumberOfRetries", retries.as_str()),
        ])
        .expect("parameters");
        cfg.retry_backoff = Duration::ZERO;
        cfg
    }

    fn stream() -> StreamContext {
        StreamContext {
            delivery_stream_arn: "arn:aws:firehose:us-east-1:123456789012:deliverystream/clicks".to_owned(),
            region: "us-east-1".to_owned(),
            source_kinesis_stream_arn: None,
        }
    }

    fn records(data: &[&[u8]]) -> Vec<InputRecord> {
        data.iter()
            .map(|d| InputRecord {
                data: bytes::Bytes::copy_from_slice(d),
                arrival_ms: 1_507_217_624_302,
                kinesis: None,
            })
            .collect()
    }

    #[tokio::test]
    async fn invoke_batch_runs_through_the_invoke_api() {
        let (endpoint, server) = serve().await;
        let function = backend(&endpoint, "transform");
        let outcomes = invoke_batch(&function, &lambda_config(3), &stream(), &records(&[b"hello", b"drop", b""])).await;

        assert_eq!(outcomes.len(), 3);
        match &outcomes[0] {
            Outcome::Ok { data, partition_keys, otf } => {
                assert_eq!(&data[..], b"HELLO");
                assert_eq!(partition_keys.get("len").map(String::as_str), Some("5"));
                assert_eq!(otf, &None);
            }
            other => panic!("expected Ok, got {other:?}"),
        }
        assert_eq!(outcomes[1], Outcome::Dropped);
        assert!(matches!(&outcomes[2], Outcome::Ok { data, .. } if data.is_empty()), "{:?}", outcomes[2]);

        let seen = server.seen();
        assert_eq!(seen.len(), 1, "one event, one request");
        let event: Value = serde_json::from_slice(&seen[0].body).expect("event JSON");
        assert_eq!(event["deliveryStreamArn"], "arn:aws:firehose:us-east-1:123456789012:deliverystream/clicks");
        assert_eq!(event["records"][0]["data"], STANDARD.encode("hello"));
    }

    #[tokio::test]
    async fn invoke_batch_retries_throttled_invocations() {
        let (endpoint, server) = serve().await;
        let function = backend(&endpoint, "flaky");
        let outcomes = invoke_batch(&function, &lambda_config(1), &stream(), &records(&[b"a"])).await;
        assert!(matches!(&outcomes[0], Outcome::Ok { data, .. } if &data[..] == b"A"), "{outcomes:?}");
        let seen = server.seen();
        assert_eq!(seen.len(), 2);
        let ids = |s: &Seen| {
            let event: Value = serde_json::from_slice(&s.body).expect("event JSON");
            (event["invocationId"].clone(), event["records"][0]["recordId"].clone())
        };
        let (first, second) = (ids(&seen[0]), ids(&seen[1]));
        assert_ne!(first.0, second.0, "a fresh invocationId per attempt");
        assert_eq!(first.1, second.1, "the same record ids");

        // Throttled every time: the batch fails with the throttling code after all attempts.
        let function = backend(&endpoint, "throttled");
        let outcomes = invoke_batch(&function, &lambda_config(2), &stream(), &records(&[b"a", b"b"])).await;
        for outcome in &outcomes {
            match outcome {
                Outcome::Failed { code, attempts_made, .. } => {
                    assert_eq!((*code, *attempts_made), (ErrorCode::InvokeLimitExceeded, 3));
                }
                other => panic!("expected Failed, got {other:?}"),
            }
        }
    }
}
