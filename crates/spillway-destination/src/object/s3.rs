//! [`S3Bucket`]: one bucket of an S3-compatible store (AWS S3, MinIO, Ceph, R2, SeaweedFS...) through
//! `object_store`'s `AmazonS3`.
//!
//! - **Requests.** SigV4 with static keys (or `object_store`'s environment chain: `AWS_*` variables, web
//!   identity, ECS/EKS, instance metadata) when none are configured. Path-style addressing by default.
//!   Bodies below [`S3Config::multipart_threshold`] (16 MiB by default) go in one `PutObject`; larger ones in a
//!   multipart upload of [`PART_SIZE`] parts, at most [`PARTS_IN_FLIGHT`] at a time, aborted on any failure.
//!   (`WriteMultipart::finish` does not abort when the last part fails, so the parts are driven here directly.)
//!   An upload that dies with the process is left incomplete on the server; keep an
//!   `AbortIncompleteMultipartUpload` lifecycle rule on real buckets.
//! - **Metadata.** `Content-Type` and `Content-Encoding` are `object_store` attributes, sent on `PutObject` and
//!   `CreateMultipartUpload`. SSE-KMS (`x-amz-server-side-encryption: aws:kms` plus the key id) is a client
//!   setting in `object_store` 0.13, not a per-request one, so a bucket written with two keys has two clients:
//!   [`super::ObjectStores`] caches one `S3Bucket` per (bucket, KMS key).
//! - **Retries.** The pipeline retries with its own backoff for as long as Firehose would; `object_store`
//!   retries only briefly ([`STORE_RETRIES`] times) and every request has a timeout, so a dead endpoint is
//!   reported within seconds.
//! - **Errors.** Mapped onto [`ObjectError`] by the S3 error code when the store sent one, else by transport
//!   failure type; see [`super::error`].
//! - **Keys.** [`check_key`] applies (no empty or `.`/`..` segments, no control characters, at most 1,024
//!   bytes): `object_store` paths cannot hold the rest, and a key is stored exactly as given.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey};
use object_store::client::{HttpError, HttpErrorKind};
use object_store::path::Path;
use object_store::{
    Attribute, AttributeValue, Attributes, BackoffConfig, ClientOptions, ObjectStore, PutMultipartOptions,
    PutOptions as StorePutOptions, PutPayload, RetryConfig,
};

use super::error::{firehose_code_for_s3, s3_error_fields};
use super::key::{check_bucket_name, check_key};
use super::{ObjectError, ObjectStoreSink, PutOptions};

/// Default size from which a body goes through a multipart upload.
pub const DEFAULT_MULTIPART_THRESHOLD: u64 = 16 * 1024 * 1024;
/// Size of each multipart part but the last (S3's minimum is 5 MiB).
pub const PART_SIZE: usize = 8 * 1024 * 1024;
/// Parts uploaded concurrently.
pub const PARTS_IN_FLIGHT: usize = 4;
/// Default timeout of one HTTP request, in seconds.
pub const DEFAULT_TIMEOUT_SECS: u64 = 30;
/// Retries `object_store` makes itself (5xx, 429, connection errors) before reporting the failure.
pub const STORE_RETRIES: usize = 2;
/// Region used when neither the config nor the environment names one.
pub const DEFAULT_REGION: &str = "us-east-1";

/// S3 codes that the same request can never get past.
const PERMANENT_CODES: &[&str] = &["EntityTooLarge"];
/// S3 codes that reject the key itself.
const KEY_CODES: &[&str] = &["KeyTooLongError", "InvalidObjectName"];

/// How to reach an S3-compatible store: the `[s3]` (global) or `[buckets.NAME]` (per bucket) table of
/// `spillway.toml`.
#[derive(Clone, Default, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    /// `http(s)://host[:port]`; AWS S3 when absent. With virtual-hosted style, `{bucket}` in the endpoint is
    /// replaced by the bucket name, and an endpoint without it gets `<bucket>.` put before its host.
    pub endpoint: Option<String>,
    /// Signing region; `AWS_REGION`/`AWS_DEFAULT_REGION` or `us-east-1` when absent.
    pub region: Option<String>,
    /// Static credentials; both or neither. Neither: `object_store`'s environment chain.
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub session_token: Option<String>,
    /// `https://bucket.host/key` instead of `https://host/bucket/key`.
    #[serde(default)]
    pub virtual_hosted_style: bool,
    /// Allow plain `http://`; defaults to true when the endpoint is `http://`.
    #[serde(default)]
    pub allow_http: Option<bool>,
    /// Bodies of at least this many bytes use a multipart upload; default 16 MiB.
    pub multipart_threshold: Option<u64>,
    /// Timeout of one HTTP request, in seconds; default 30.
    pub timeout_secs: Option<u64>,
}

impl fmt::Debug for S3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redact = |v: &Option<String>| v.as_ref().map(|_| "<redacted>");
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &redact(&self.secret_access_key))
            .field("session_token", &redact(&self.session_token))
            .field("virtual_hosted_style", &self.virtual_hosted_style)
            .field("allow_http", &self.allow_http)
            .field("multipart_threshold", &self.multipart_threshold)
            .field("timeout_secs", &self.timeout_secs)
            .finish()
    }
}

/// One bucket (with one SSE setting) of an S3-compatible store.
#[derive(Debug)]
pub struct S3Bucket {
    bucket: String,
    sse_kms_key_id: Option<String>,
    store: AmazonS3,
    multipart_threshold: u64,
    description: String,
}

impl S3Bucket {
    /// Builds the client; no request is made. `sse_kms_key_id` (Firehose's `KMSEncryptionConfig.AWSKMSKeyARN`)
    /// makes every write SSE-KMS with that key.
    pub fn new(cfg: &S3Config, bucket: &str, sse_kms_key_id: Option<&str>) -> Result<Self, ObjectError> {
        let (store, description) = Self::build_store(cfg, bucket, sse_kms_key_id)?;
        Ok(S3Bucket {
            bucket: bucket.to_owned(),
            sse_kms_key_id: sse_kms_key_id.map(str::to_owned),
            store,
            multipart_threshold: cfg.multipart_threshold.unwrap_or(DEFAULT_MULTIPART_THRESHOLD),
            description,
        })
    }

    /// The `AmazonS3` client of `bucket` as [`S3Bucket::new`] builds it (no request is made), and its
    /// description. Also the client of the Iceberg storage (`crate::iceberg::storage`).
    pub(crate) fn build_store(
        cfg: &S3Config,
        bucket: &str,
        sse_kms_key_id: Option<&str>,
    ) -> Result<(AmazonS3, String), ObjectError> {
        check_bucket_name(bucket).map_err(|reason| ObjectError::InvalidBucket { bucket: bucket.to_owned(), reason })?;
        let config_error = |message: String| ObjectError::Config { message };

        let static_keys = match (&cfg.access_key_id, &cfg.secret_access_key) {
            (Some(id), Some(secret)) => Some((id, secret)),
            (None, None) if cfg.session_token.is_some() => {
                return Err(config_error("session_token needs access_key_id and secret_access_key".into()));
            }
            (None, None) => None,
            _ => return Err(config_error("access_key_id and secret_access_key must be set together".into())),
        };
        let mut builder = match static_keys {
            Some((id, secret)) => {
                let builder = AmazonS3Builder::new().with_access_key_id(id).with_secret_access_key(secret);
                match &cfg.session_token {
                    Some(token) => builder.with_token(token),
                    None => builder,
                }
            }
            None => AmazonS3Builder::from_env(),
        };

        let region = match (&cfg.region, builder.get_config_value(&AmazonS3ConfigKey::Region)) {
            (Some(region), _) => region.clone(),
            (None, Some(env_region)) if !env_region.is_empty() => env_region,
            (None, _) => DEFAULT_REGION.to_owned(),
        };
        builder = builder
            .with_bucket_name(bucket)
            .with_region(&region)
            .with_virtual_hosted_style_request(cfg.virtual_hosted_style);

        let endpoint = match &cfg.endpoint {
            Some(endpoint) => {
                let endpoint = endpoint.trim_end_matches('/');
                let Some((scheme, rest)) = endpoint.split_once("://") else {
                    return Err(config_error(format!("endpoint {endpoint:?} is not an http:// or https:// URL")));
                };
                if !matches!(scheme, "http" | "https") || rest.is_empty() {
                    return Err(config_error(format!("endpoint {endpoint:?} is not an http:// or https:// URL")));
                }
                let is_http = scheme == "http";
                let allow_http = cfg.allow_http.unwrap_or(is_http);
                if is_http && !allow_http {
                    return Err(config_error(format!("endpoint {endpoint:?} is http:// but allow_http is false")));
                }
                let endpoint = if endpoint.contains("{bucket}") {
                    endpoint.replace("{bucket}", bucket)
                } else if cfg.virtual_hosted_style {
                    format!("{scheme}://{bucket}.{rest}")
                } else {
                    endpoint.to_owned()
                };
                builder = builder.with_endpoint(&endpoint);
                Some((endpoint, allow_http))
            }
            None => None,
        };
        let allow_http = match &endpoint {
            Some((_, allow_http)) => *allow_http,
            None => cfg.allow_http.unwrap_or(false),
        };
        let endpoint = endpoint.map(|(endpoint, _)| endpoint);

        // One ClientOptions carries allow_http and the timeouts: `with_client_options` replaces the whole set.
        let timeout = Duration::from_secs(cfg.timeout_secs.unwrap_or(DEFAULT_TIMEOUT_SECS).max(1));
        let connect_timeout = timeout.min(Duration::from_secs(5));
        let client_options = ClientOptions::new()
            .with_allow_http(allow_http)
            .with_timeout(timeout)
            .with_connect_timeout(connect_timeout);
        builder = builder.with_client_options(client_options).with_retry(RetryConfig {
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(2),
                base: 2.0,
            },
            max_retries: STORE_RETRIES,
            retry_timeout: timeout.saturating_mul(STORE_RETRIES as u32 + 1),
        });
        if let Some(key) = sse_kms_key_id {
            builder = builder.with_sse_kms_encryption(key);
        }
        let store = builder.build().map_err(|err| config_error(err.to_string()))?;

        let mut description = match &endpoint {
            Some(endpoint) => format!("s3 bucket {bucket} at {endpoint}"),
            None => format!("s3 bucket {bucket} (aws, {region})"),
        };
        if let Some(key) = sse_kms_key_id {
            description.push_str(&format!(" with sse-kms key {key}"));
        }
        Ok((store, description))
    }

    /// The bucket's name.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    async fn put_multipart(&self, path: &Path, body: Bytes, attributes: Attributes) -> Result<(), ObjectError> {
        let opts = PutMultipartOptions { attributes, ..Default::default() };
        let mut upload = self.store.put_multipart_opts(path, opts).await.map_err(|err| self.map_error(err, path))?;
        let parts: Vec<_> = (0..body.len())
            .step_by(PART_SIZE)
            .map(|start| upload.put_part(PutPayload::from(body.slice(start..body.len().min(start + PART_SIZE)))))
            .collect();
        let uploaded = futures::stream::iter(parts).buffer_unordered(PARTS_IN_FLIGHT).try_collect::<Vec<()>>().await;
        let result = match uploaded {
            Ok(_) => upload.complete().await.map(drop),
            Err(err) => Err(err),
        };
        if let Err(err) = result {
            if let Err(abort) = upload.abort().await {
                tracing::warn!(bucket = %self.bucket, key = %path, error = %abort, "could not abort multipart upload");
            }
            return Err(self.map_error(err, path));
        }
        Ok(())
    }

    fn map_error(&self, err: object_store::Error, path: &Path) -> ObjectError {
        map_store_error(err, &self.bucket, path.as_ref())
    }
}

impl ObjectStoreSink for S3Bucket {
    fn put<'a>(&'a self, key: &'a str, body: Bytes, opts: &'a PutOptions) -> BoxFuture<'a, Result<(), ObjectError>> {
        Box::pin(async move {
            check_key(key).map_err(|reason| ObjectError::InvalidKey { key: key.to_owned(), reason })?;
            if opts.sse_kms_key_id != self.sse_kms_key_id {
                return Err(ObjectError::Config {
                    message: format!(
                        "put asks for sse-kms key {:?} but the sink of bucket {} was built for {:?}",
                        opts.sse_kms_key_id, self.bucket, self.sse_kms_key_id
                    ),
                });
            }
            let path = Path::parse(key).map_err(|_| ObjectError::InvalidKey {
                key: key.to_owned(),
                reason: "key is not a valid object path",
            })?;
            let mut attributes = Attributes::new();
            attributes.insert(Attribute::ContentType, AttributeValue::from(opts.content_type));
            if let Some(encoding) = opts.content_encoding {
                attributes.insert(Attribute::ContentEncoding, AttributeValue::from(encoding));
            }
            if !body.is_empty() && body.len() as u64 >= self.multipart_threshold {
                self.put_multipart(&path, body, attributes).await
            } else {
                let opts = StorePutOptions { attributes, ..Default::default() };
                self.store
                    .put_opts(&path, PutPayload::from(body), opts)
                    .await
                    .map(drop)
                    .map_err(|e| self.map_error(e, &path))
            }
        })
    }

    fn describe(&self) -> String {
        self.description.clone()
    }
}

/// Classifies an `object_store` error: S3 error code first, then the transport failure kind, then the
/// `object_store` variant.
pub(crate) fn map_store_error(err: object_store::Error, bucket: &str, key: &str) -> ObjectError {
    let text = err.to_string();
    let transport = error_chain(&err).find_map(|e| e.downcast_ref::<HttpError>()).map(HttpError::kind);
    let status_denied =
        matches!(err, object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. });
    // The innermost error is `object_store`'s request error: status and response body only. Outer layers
    // render the key, which must not be mistaken for the server's answer.
    let innermost = error_chain(&err).last().map(ToString::to_string).unwrap_or_default();

    if let Some((code, message)) = s3_error_fields(&innermost) {
        let message = message.unwrap_or(&text).to_owned();
        let denied_code = matches!(
            firehose_code_for_s3(code),
            "S3.AccessDenied" | "S3.AccountProblem" | "S3.AllAccessDisabled" | "S3.InvalidPayer" | "S3.NotSignedUp"
        );
        return if code == "NoSuchBucket" {
            ObjectError::NoSuchBucket { bucket: bucket.to_owned() }
        } else if KEY_CODES.contains(&code) {
            ObjectError::InvalidKey { key: key.to_owned(), reason: "the store rejected the key" }
        } else if denied_code || (status_denied && !code.starts_with("KMS.")) {
            ObjectError::AccessDenied { bucket: bucket.to_owned(), code: code.to_owned(), message }
        } else {
            ObjectError::Remote { code: code.to_owned(), message, retryable: !PERMANENT_CODES.contains(&code) }
        };
    }
    if status_denied {
        return ObjectError::AccessDenied { bucket: bucket.to_owned(), code: "AccessDenied".into(), message: text };
    }
    if matches!(
        transport,
        Some(HttpErrorKind::Connect | HttpErrorKind::Request | HttpErrorKind::Timeout | HttpErrorKind::Interrupted)
    ) {
        return ObjectError::Unavailable { message: text };
    }
    match err {
        object_store::Error::NotFound { .. } => {
            ObjectError::Remote { code: "NotFound".into(), message: text, retryable: true }
        }
        object_store::Error::NotImplemented { .. }
        | object_store::Error::NotSupported { .. }
        | object_store::Error::UnknownConfigurationKey { .. }
        | object_store::Error::InvalidPath { .. } => ObjectError::Config { message: text },
        _ => ObjectError::Remote { code: "Unknown".into(), message: text, retryable: true },
    }
}

fn error_chain<'e>(
    err: &'e (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'e (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(err), |e| e.source())
}

#[cfg(test)]
mod tests {
    //! Request shape and error mapping against a scripted HTTP server on loopback; the real-server tests are in
    //! `tests/s3_seaweed.rs`.

    use std::sync::{Arc, Mutex};
    use std::time::Instant;

    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    use tokio::net::TcpListener;

    use super::*;

    #[derive(Debug, Clone)]
    struct Request {
        method: String,
        target: String,
        headers: Vec<(String, String)>,
        body_len: usize,
    }

    impl Request {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
        }
    }

    struct Reply {
        status: u16,
        headers: Vec<(&'static str, String)>,
        body: String,
    }

    fn ok_etag() -> Reply {
        Reply { status: 200, headers: vec![("ETag", "\"etag\"".into())], body: String::new() }
    }

    fn s3_error(status: u16, code: &str) -> Reply {
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>scripted {code}</Message>\
             <Key>k</Key><RequestId>1</RequestId></Error>"
        );
        Reply { status, headers: vec![("Content-Type", "application/xml".into())], body }
    }

    type Log = Arc<Mutex<Vec<Request>>>;

    /// Serves HTTP/1.1 on 127.0.0.1 until the test ends, answering each request with `handler`.
    async fn serve(handler: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> (String, Log) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
        let log: Log = Arc::default();
        let handler = Arc::new(handler);
        let server_log = Arc::clone(&log);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (handler, log) = (Arc::clone(&handler), Arc::clone(&server_log));
                tokio::spawn(async move {
                    let (read, mut write) = stream.into_split();
                    let mut read = BufReader::new(read);
                    loop {
                        let mut line = String::new();
                        if read.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        let mut parts = line.split_whitespace();
                        let method = parts.next().unwrap_or_default().to_owned();
                        let target = parts.next().unwrap_or_default().to_owned();
                        let mut headers = Vec::new();
                        loop {
                            let mut line = String::new();
                            if read.read_line(&mut line).await.unwrap_or(0) == 0 {
                                return;
                            }
                            let line = line.trim_end();
                            if line.is_empty() {
                                break;
                            }
                            if let Some((name, value)) = line.split_once(':') {
                                headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
                            }
                        }
                        let len = headers
                            .iter()
                            .find(|(n, _)| n == "content-length")
                            .and_then(|(_, v)| v.parse::<usize>().ok())
                            .unwrap_or(0);
                        let mut body = vec![0; len];
                        if read.read_exact(&mut body).await.is_err() {
                            return;
                        }
                        let request = Request { method, target, headers, body_len: len };
                        let reply = handler(&request);
                        log.lock().expect("log").push(request);
                        let mut out =
                            format!("HTTP/1.1 {} Scripted\r\nContent-Length: {}\r\n", reply.status, reply.body.len());
                        for (name, value) in reply.headers {
                            out.push_str(&format!("{name}: {value}\r\n"));
                        }
                        out.push_str("\r\n");
                        out.push_str(&reply.body);
                        if write.write_all(out.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (endpoint, log)
    }

    fn config(endpoint: &str) -> S3Config {
        S3Config {
            endpoint: Some(endpoint.to_owned()),
            access_key_id: Some("AKIDEXAMPLE".into()),
            secret_access_key: Some("secret".into()),
            ..Default::default()
        }
    }

    fn gzip_opts(kms: Option<&str>) -> PutOptions {
        PutOptions { content_encoding: Some("gzip"), sse_kms_key_id: kms.map(str::to_owned), ..Default::default() }
    }

    #[tokio::test]
    async fn put_sends_metadata_sse_and_a_sigv4_signature() {
        let (endpoint, log) = serve(|_| ok_etag()).await;
        let kms = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
        let sink = S3Bucket::new(&config(&endpoint), "my-bucket", Some(kms)).expect("sink");
        sink.put("2024/05/06/obj.gz", Bytes::from_static(b"\x1f\x8bdata"), &gzip_opts(Some(kms))).await.expect("put");

        let plain = S3Bucket::new(&config(&endpoint), "my-bucket", None).expect("sink");
        plain.put("plain", Bytes::from_static(b"abc"), &PutOptions::default()).await.expect("put");

        let log = log.lock().expect("log");
        let [sse, plain] = &log[..] else { panic!("expected two requests: {log:?}") };
        assert_eq!((sse.method.as_str(), sse.target.as_str()), ("PUT", "/my-bucket/2024/05/06/obj.gz"));
        assert_eq!(sse.body_len, 6);
        assert_eq!(sse.header("content-type"), Some("application/octet-stream"));
        assert_eq!(sse.header("content-encoding"), Some("gzip"));
        assert_eq!(sse.header("x-amz-server-side-encryption"), Some("aws:kms"));
        assert_eq!(sse.header("x-amz-server-side-encryption-aws-kms-key-id"), Some(kms));
        let auth = sse.header("authorization").expect("signed");
        assert!(auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/"), "{auth}");
        assert!(auth.contains("/us-east-1/s3/aws4_request"), "{auth}");

        assert_eq!(plain.target, "/my-bucket/plain");
        assert_eq!(plain.header("content-type"), Some("application/octet-stream"));
        assert_eq!(plain.header("content-encoding"), None);
        assert_eq!(plain.header("x-amz-server-side-encryption"), None);
    }

    #[tokio::test]
    async fn a_put_asking_for_another_kms_key_is_refused() {
        let (endpoint, log) = serve(|_| ok_etag()).await;
        let sink = S3Bucket::new(&config(&endpoint), "b-1", Some("key-a")).expect("sink");
        let err = sink.put("k", Bytes::from_static(b"x"), &gzip_opts(Some("key-b"))).await.expect_err("mismatch");
        assert!(matches!(err, ObjectError::Config { .. }), "{err}");
        assert!(log.lock().expect("log").is_empty());
    }

    #[tokio::test]
    async fn virtual_hosted_style_and_keys() {
        let (endpoint, log) = serve(|_| ok_etag()).await;
        // `{bucket}` placeholder: the host stays 127.0.0.1 here so the request still reaches the scripted server.
        let cfg = S3Config {
            virtual_hosted_style: true,
            endpoint: Some(format!("{endpoint}/{{bucket}}")),
            ..config(&endpoint)
        };
        let sink = S3Bucket::new(&cfg, "vhost", None).expect("sink");
        sink.put("sp ace/ü+=", Bytes::from_static(b"x"), &PutOptions::default()).await.expect("put");
        assert_eq!(log.lock().expect("log")[0].target, "/vhost/sp%20ace/%C3%BC%2B%3D");
        for bad in ["", "/abs", "a//b", "a/../b", "nul\0"] {
            let err = sink.put(bad, Bytes::from_static(b"x"), &PutOptions::default()).await.expect_err(bad);
            assert!(matches!(err, ObjectError::InvalidKey { .. }), "{bad:?}: {err}");
        }
        assert_eq!(log.lock().expect("log").len(), 1);
    }

    #[test]
    fn config_validation() {
        let bad = [
            S3Config { endpoint: Some("ftp://h".into()), ..Default::default() },
            S3Config { endpoint: Some("127.0.0.1:9000".into()), ..Default::default() },
            S3Config { endpoint: Some("http://h".into()), allow_http: Some(false), ..Default::default() },
            S3Config { secret_access_key: Some("s".into()), ..Default::default() },
            S3Config { session_token: Some("t".into()), ..Default::default() },
        ];
        for cfg in bad {
            let err = S3Bucket::new(&cfg, "b-1", None).expect_err("invalid");
            assert!(matches!(err, ObjectError::Config { .. }), "{cfg:?}: {err}");
        }
        let err = S3Bucket::new(&config("http://h"), "a/b", None).expect_err("bucket");
        assert!(matches!(err, ObjectError::InvalidBucket { .. }));
        let vhost =
            S3Bucket::new(&S3Config { virtual_hosted_style: true, ..config("https://s3.example.com") }, "b-1", None);
        assert_eq!(vhost.expect("vhost").describe(), "s3 bucket b-1 at https://b-1.s3.example.com");
        let aws =
            S3Bucket::new(&S3Config { endpoint: None, region: Some("eu-west-1".into()), ..config("") }, "b-1", None);
        assert_eq!(aws.expect("aws").describe(), "s3 bucket b-1 (aws, eu-west-1)");
    }

    #[test]
    fn config_debug_redacts_secrets() {
        let cfg = S3Config {
            secret_access_key: Some("very-private".into()),
            session_token: Some("session-private".into()),
            ..config("http://h")
        };
        let debug = format!("{cfg:?}");
        assert!(!debug.contains("private"), "{debug}");
        assert!(debug.contains("AKIDEXAMPLE"));
    }

    #[test]
    fn config_from_toml() {
        let cfg: S3Config = toml::from_str(
            "endpoint = \"http://127.0.0.1:9000\"\nregion = \"eu-west-1\"\naccess_key_id = \"k\"\n\
             secret_access_key = \"s\"\nvirtual_hosted_style = true\nmultipart_threshold = 5242880\ntimeout_secs = 5\n",
        )
        .expect("parse");
        assert_eq!(cfg.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(cfg.region.as_deref(), Some("eu-west-1"));
        assert!(cfg.virtual_hosted_style);
        assert_eq!((cfg.multipart_threshold, cfg.timeout_secs, cfg.allow_http), (Some(5_242_880), Some(5), None));
        let empty: S3Config = toml::from_str("").expect("all optional");
        assert!(!empty.virtual_hosted_style && empty.endpoint.is_none());
        assert!(toml::from_str::<S3Config>("endpiont = \"x\"").is_err(), "unknown fields are rejected");
    }

    async fn put_error(reply: fn() -> Reply) -> (ObjectError, usize) {
        let (endpoint, log) = serve(move |_| reply()).await;
        let sink = S3Bucket::new(&config(&endpoint), "b-1", None).expect("sink");
        let err = sink.put("k", Bytes::from_static(b"x"), &PutOptions::default()).await.expect_err("scripted error");
        let requests = log.lock().expect("log").len();
        (err, requests)
    }

    #[tokio::test]
    async fn maps_s3_errors() {
        let (err, n) = put_error(|| s3_error(404, "NoSuchBucket")).await;
        assert!(matches!(&err, ObjectError::NoSuchBucket { bucket } if bucket == "b-1"), "{err}");
        assert_eq!((err.firehose_code(), err.is_retryable(), n), ("S3.NoSuchBucket", true, 1));

        let (err, _) = put_error(|| s3_error(403, "AccessDenied")).await;
        assert!(
            matches!(&err, ObjectError::AccessDenied { code, message, .. } if code == "AccessDenied" && message == "scripted AccessDenied"),
            "{err}"
        );
        assert_eq!((err.firehose_code(), err.is_retryable()), ("S3.AccessDenied", true));

        let (err, _) = put_error(|| s3_error(403, "SignatureDoesNotMatch")).await;
        assert!(matches!(err, ObjectError::AccessDenied { .. }), "{err}");
        assert_eq!(err.firehose_code(), "S3.AccessDenied");

        let (err, _) = put_error(|| s3_error(403, "AllAccessDisabled")).await;
        assert_eq!(err.firehose_code(), "S3.AllAccessDisabled");

        let (err, _) = put_error(|| s3_error(400, "KMS.NotFoundException")).await;
        assert!(matches!(&err, ObjectError::Remote { code, .. } if code == "KMS.NotFoundException"), "{err}");
        assert_eq!((err.firehose_code(), err.is_retryable()), ("S3.KMS.NotFoundException", true));

        let (err, _) = put_error(|| s3_error(400, "EntityTooLarge")).await;
        assert!(!err.is_retryable(), "{err}");

        let (err, _) = put_error(|| s3_error(400, "KeyTooLongError")).await;
        assert!(matches!(err, ObjectError::InvalidKey { .. }), "{err}");
    }

    #[tokio::test]
    async fn server_errors_are_retried_briefly_then_retryable() {
        let (err, n) = put_error(|| s3_error(503, "SlowDown")).await;
        assert!(matches!(&err, ObjectError::Remote { code, retryable: true, .. } if code == "SlowDown"), "{err}");
        assert_eq!(n, 1 + STORE_RETRIES);
        assert_eq!(err.firehose_code(), "InternalError");

        let (err, n) = put_error(|| Reply { status: 500, headers: vec![], body: String::new() }).await;
        assert!(matches!(&err, ObjectError::Remote { code, retryable: true, .. } if code == "Unknown"), "{err}");
        assert_eq!(n, 1 + STORE_RETRIES);

        let (err, n) = put_error(|| s3_error(500, "InternalError")).await;
        assert!(matches!(&err, ObjectError::Remote { code, retryable: true, .. } if code == "InternalError"), "{err}");
        assert_eq!(n, 1 + STORE_RETRIES);
    }

    #[tokio::test]
    async fn connection_refused_is_unavailable_and_fast() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        let sink = S3Bucket::new(&config(&format!("http://{addr}")), "b-1", None).expect("sink");
        let start = Instant::now();
        let err = sink.put("k", Bytes::from_static(b"x"), &PutOptions::default()).await.expect_err("refused");
        assert!(matches!(err, ObjectError::Unavailable { .. }), "{err}");
        assert!(err.is_retryable());
        assert_eq!(err.firehose_code(), "InternalError");
        assert!(start.elapsed() < Duration::from_secs(5), "{:?}", start.elapsed());
    }

    #[tokio::test]
    async fn an_unanswered_request_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        // Accepts and holds connections without answering.
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                held.push(stream);
            }
        });
        let cfg = S3Config { timeout_secs: Some(1), ..config(&format!("http://{addr}")) };
        let sink = S3Bucket::new(&cfg, "b-1", None).expect("sink");
        let start = Instant::now();
        let err = sink.put("k", Bytes::from_static(b"x"), &PutOptions::default()).await.expect_err("timeout");
        assert!(matches!(err, ObjectError::Unavailable { .. }), "{err}");
        assert!(err.is_retryable());
        assert!(start.elapsed() < Duration::from_secs(10), "{:?}", start.elapsed());
    }

    fn multipart_reply(request: &Request, fail_part: Option<&str>) -> Reply {
        let target = request.target.as_str();
        match request.method.as_str() {
            "POST" if target.ends_with("?uploads=") => Reply {
                status: 200,
                headers: vec![],
                body: "<InitiateMultipartUploadResult><Bucket>b-1</Bucket><Key>big</Key><UploadId>up-1</UploadId>\
                       </InitiateMultipartUploadResult>"
                    .into(),
            },
            "PUT" if fail_part.is_some_and(|p| target.contains(&format!("partNumber={p}&"))) => {
                s3_error(403, "AccessDenied")
            }
            "PUT" => ok_etag(),
            "POST" => Reply {
                status: 200,
                headers: vec![],
                body: "<CompleteMultipartUploadResult><ETag>\"all\"</ETag></CompleteMultipartUploadResult>".into(),
            },
            "DELETE" => Reply { status: 204, headers: vec![], body: String::new() },
            _ => s3_error(400, "InvalidRequest"),
        }
    }

    fn big_body() -> Bytes {
        Bytes::from((0..PART_SIZE + 1024 * 1024 + 1).map(|i| (i % 251) as u8).collect::<Vec<u8>>())
    }

    #[tokio::test]
    async fn large_bodies_use_multipart_with_metadata_on_create() {
        let (endpoint, log) = serve(|r| multipart_reply(r, None)).await;
        let cfg = S3Config { multipart_threshold: Some(1024 * 1024), ..config(&endpoint) };
        let sink = S3Bucket::new(&cfg, "b-1", Some("key-1")).expect("sink");
        sink.put("big", big_body(), &gzip_opts(Some("key-1"))).await.expect("multipart put");
        // Below the threshold: a single put.
        sink.put("small", Bytes::from(vec![1; 1024]), &gzip_opts(Some("key-1"))).await.expect("small put");

        let log = log.lock().expect("log");
        let summary: Vec<(String, String, usize)> =
            log.iter().map(|r| (r.method.clone(), r.target.clone(), r.body_len)).collect();
        let create = &log[0];
        assert_eq!((create.method.as_str(), create.target.as_str()), ("POST", "/b-1/big?uploads="), "{summary:?}");
        assert_eq!(create.header("content-type"), Some("application/octet-stream"));
        assert_eq!(create.header("content-encoding"), Some("gzip"));
        assert_eq!(create.header("x-amz-server-side-encryption"), Some("aws:kms"));
        assert_eq!(create.header("x-amz-server-side-encryption-aws-kms-key-id"), Some("key-1"));
        let mut parts: Vec<(String, usize)> = log
            .iter()
            .filter(|r| r.method == "PUT" && r.target.starts_with("/b-1/big?"))
            .map(|r| (r.target.clone(), r.body_len))
            .collect();
        parts.sort();
        assert_eq!(
            parts,
            [
                ("/b-1/big?partNumber=1&uploadId=up-1".to_owned(), PART_SIZE),
                ("/b-1/big?partNumber=2&uploadId=up-1".to_owned(), 1024 * 1024 + 1),
            ],
            "{summary:?}"
        );
        assert!(log.iter().any(|r| r.method == "POST" && r.target == "/b-1/big?uploadId=up-1"), "{summary:?}");
        assert!(!log.iter().any(|r| r.method == "DELETE"), "{summary:?}");
        assert!(log.iter().any(|r| r.method == "PUT" && r.target == "/b-1/small" && r.body_len == 1024), "{summary:?}");
    }

    #[tokio::test]
    async fn a_failed_part_aborts_the_upload() {
        let (endpoint, log) = serve(|r| multipart_reply(r, Some("2"))).await;
        let cfg = S3Config { multipart_threshold: Some(1024 * 1024), ..config(&endpoint) };
        let sink = S3Bucket::new(&cfg, "b-1", None).expect("sink");
        let err = sink.put("big", big_body(), &PutOptions::default()).await.expect_err("part 2 fails");
        assert!(matches!(err, ObjectError::AccessDenied { .. }), "{err}");
        let log = log.lock().expect("log");
        let summary: Vec<(String, String)> = log.iter().map(|r| (r.method.clone(), r.target.clone())).collect();
        assert!(summary.contains(&("DELETE".into(), "/b-1/big?uploadId=up-1".into())), "{summary:?}");
        assert!(!summary.contains(&("POST".into(), "/b-1/big?uploadId=up-1".into())), "{summary:?}");
    }
}
