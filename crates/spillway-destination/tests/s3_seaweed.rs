//! `S3Bucket` against a real S3-compatible server (SeaweedFS in practice).
//!
//! Runs only when `SPILLWAY_S3_ENDPOINT`, `SPILLWAY_S3_ACCESS_KEY`, `SPILLWAY_S3_SECRET_KEY` and
//! `SPILLWAY_S3_BUCKET` are set (the bucket must exist, and writing a missing bucket must fail: SeaweedFS needs
//! `-s3.autoCreateBucket=false`); each test prints "skipped: set SPILLWAY_S3_ENDPOINT" and passes otherwise.
//! `tests/compat/s3server.py` starts SeaweedFS that way and runs a command with the variables set:
//!
//! ```text
//! .venv/bin/python tests/compat/s3server.py --bucket spillway-it -- \
//!     cargo test -p spillway-destination --test s3_seaweed
//! ```
//!
//! Objects are read back with a separate `object_store` client, so what is checked is what the server stored.
//! Every run writes under a fresh `it-<uuid>/` prefix.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::{Attribute, Attributes, GetOptions, ObjectStore};
use spillway_destination::{ObjectError, ObjectStoreSink, ObjectStores, PutOptions, S3Bucket, S3Config};

struct Server {
    endpoint: String,
    access_key: String,
    secret_key: String,
    bucket: String,
    prefix: String,
}

fn server() -> Option<Server> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let Some(endpoint) = var("SPILLWAY_S3_ENDPOINT") else {
        println!("skipped: set SPILLWAY_S3_ENDPOINT");
        return None;
    };
    let expect = |name: &str| var(name).unwrap_or_else(|| panic!("SPILLWAY_S3_ENDPOINT is set but {name} is not"));
    Some(Server {
        endpoint,
        access_key: expect("SPILLWAY_S3_ACCESS_KEY"),
        secret_key: expect("SPILLWAY_S3_SECRET_KEY"),
        bucket: expect("SPILLWAY_S3_BUCKET"),
        prefix: format!("it-{}/", uuid::Uuid::new_v4().simple()),
    })
}

impl Server {
    fn config(&self) -> S3Config {
        S3Config {
            endpoint: Some(self.endpoint.clone()),
            access_key_id: Some(self.access_key.clone()),
            secret_access_key: Some(self.secret_key.clone()),
            timeout_secs: Some(30),
            ..Default::default()
        }
    }

    fn sink(&self) -> S3Bucket {
        S3Bucket::new(&self.config(), &self.bucket, None).expect("sink")
    }

    fn key(&self, rest: &str) -> String {
        format!("{}{rest}", self.prefix)
    }

    /// An independent client for reading back.
    fn reader(&self) -> AmazonS3 {
        AmazonS3Builder::new()
            .with_endpoint(&self.endpoint)
            .with_allow_http(true)
            .with_bucket_name(&self.bucket)
            .with_region("us-east-1")
            .with_access_key_id(&self.access_key)
            .with_secret_access_key(&self.secret_key)
            .build()
            .expect("reader")
    }

    async fn get(&self, key: &str) -> (Bytes, Attributes, Option<String>) {
        let result =
            self.reader().get_opts(&Path::parse(key).expect("path"), GetOptions::default()).await.expect("get");
        let (attributes, e_tag) = (result.attributes.clone(), result.meta.e_tag.clone());
        (result.bytes().await.expect("body"), attributes, e_tag)
    }

    async fn head_attributes(&self, key: &str) -> Attributes {
        let opts = GetOptions { head: true, ..Default::default() };
        self.reader().get_opts(&Path::parse(key).expect("path"), opts).await.expect("head").attributes
    }
}

fn attr<'a>(attributes: &'a Attributes, which: &Attribute) -> Option<&'a str> {
    attributes.get(which).map(|v| v.as_ref())
}

fn gzip() -> PutOptions {
    PutOptions { content_encoding: Some("gzip"), ..Default::default() }
}

/// Deterministic incompressible-looking bytes (xorshift).
fn pseudo_random(len: usize) -> Bytes {
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    Bytes::from(out)
}

#[tokio::test]
async fn small_put_with_content_type_and_encoding() {
    let Some(s3) = server() else { return };
    // No `.gz` extension: SeaweedFS replaces application/octet-stream by application/gzip for `.gz` keys.
    let key = s3.key("2024/05/06/07/stream-1-2024-05-06-07-08-09-small");
    s3.sink().put(&key, Bytes::from_static(b"\x1f\x8b\x08\x00 small body"), &gzip()).await.expect("put");

    let (body, attributes, _) = s3.get(&key).await;
    assert_eq!(&body[..], b"\x1f\x8b\x08\x00 small body");
    assert_eq!(attr(&attributes, &Attribute::ContentEncoding), Some("gzip"));
    let head = s3.head_attributes(&key).await;
    assert_eq!(attr(&head, &Attribute::ContentType), Some("application/octet-stream"));
    assert_eq!(attr(&head, &Attribute::ContentEncoding), Some("gzip"));

    let plain = s3.key("plain");
    s3.sink().put(&plain, Bytes::from_static(b"abc"), &PutOptions::default()).await.expect("put");
    let head = s3.head_attributes(&plain).await;
    assert_eq!(attr(&head, &Attribute::ContentType), Some("application/octet-stream"));
    assert_eq!(attr(&head, &Attribute::ContentEncoding), None);
}

#[tokio::test]
async fn twenty_mib_goes_through_multipart() {
    let Some(s3) = server() else { return };
    let key = s3.key("big/object-20mib");
    let body = pseudo_random(20 * 1024 * 1024);
    let opts = PutOptions { content_encoding: Some("snappy-java"), ..Default::default() };
    s3.sink().put(&key, body.clone(), &opts).await.expect("multipart put");

    let (got, attributes, e_tag) = s3.get(&key).await;
    assert_eq!(got.len(), body.len());
    assert!(got == body, "multipart object differs from what was put");
    assert_eq!(attr(&attributes, &Attribute::ContentEncoding), Some("snappy-java"));
    assert_eq!(attr(&attributes, &Attribute::ContentType), Some("application/octet-stream"));
    // S3's ETag of a multipart object is `<md5 of part md5s>-<part count>`: 8 + 8 + 4 MiB.
    let e_tag = e_tag.expect("etag");
    assert!(e_tag.trim_matches('"').ends_with("-3"), "not a 3-part upload: {e_tag}");
}

#[tokio::test]
async fn overwrite_replaces_the_object() {
    let Some(s3) = server() else { return };
    let key = s3.key("overwrite/obj");
    let sink = s3.sink();
    sink.put(&key, Bytes::from_static(b"first version, longer than the second"), &gzip()).await.expect("put");
    sink.put(&key, Bytes::from_static(b"second"), &PutOptions::default()).await.expect("overwrite");
    let (body, attributes, _) = s3.get(&key).await;
    assert_eq!(&body[..], b"second");
    assert_eq!(attr(&attributes, &Attribute::ContentEncoding), None);
}

#[tokio::test]
async fn keys_with_reserved_url_characters_round_trip() {
    let Some(s3) = server() else { return };
    let key = s3.key("special/sp ace+plus=eq%25pct&amp;ü~!'()*/x");
    s3.sink().put(&key, Bytes::from_static(b"special"), &PutOptions::default()).await.expect("put");
    assert_eq!(&s3.get(&key).await.0[..], b"special");
}

#[tokio::test]
async fn missing_bucket_is_no_such_bucket() {
    let Some(s3) = server() else { return };
    let bucket = format!("spillway-missing-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let sink = S3Bucket::new(&s3.config(), &bucket, None).expect("sink");
    let err = sink.put("k", Bytes::from_static(b"x"), &PutOptions::default()).await.expect_err("no bucket");
    assert!(matches!(&err, ObjectError::NoSuchBucket { bucket: b } if *b == bucket), "{err:?}");
    assert_eq!(err.firehose_code(), "S3.NoSuchBucket");
    assert!(err.is_retryable());
}

#[tokio::test]
async fn wrong_secret_is_access_denied() {
    let Some(s3) = server() else { return };
    let cfg = S3Config { secret_access_key: Some("not-the-secret".into()), ..s3.config() };
    let sink = S3Bucket::new(&cfg, &s3.bucket, None).expect("sink");
    let err = sink.put(&s3.key("denied"), Bytes::from_static(b"x"), &PutOptions::default()).await.expect_err("denied");
    assert!(matches!(err, ObjectError::AccessDenied { .. }), "{err:?}");
    assert_eq!(err.firehose_code(), "S3.AccessDenied");
    assert!(err.is_retryable());
}

#[tokio::test]
async fn connection_refused_is_retryable_and_fast() {
    let Some(s3) = server() else { return };
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let cfg = S3Config { endpoint: Some(format!("http://{addr}")), ..s3.config() };
    let sink = S3Bucket::new(&cfg, &s3.bucket, None).expect("sink");
    let start = Instant::now();
    let err = sink.put("k", Bytes::from_static(b"x"), &PutOptions::default()).await.expect_err("refused");
    assert!(matches!(err, ObjectError::Unavailable { .. }), "{err:?}");
    assert!(err.is_retryable());
    assert!(start.elapsed() < Duration::from_secs(5), "took {:?}", start.elapsed());
}

#[tokio::test]
async fn object_stores_route_arns_to_s3_and_folders() {
    let Some(s3) = server() else { return };
    let tmp = tempfile::tempdir().expect("tempdir");
    let stores = ObjectStores::new(tmp.path().join("buckets"), None, HashMap::from([(s3.bucket.clone(), s3.config())]));
    let remote: Arc<dyn ObjectStoreSink> = stores.sink(&format!("arn:aws:s3:::{}", s3.bucket), None).expect("remote");
    let key = s3.key("routed/obj");
    remote.put(&key, Bytes::from_static(b"to s3"), &PutOptions::default()).await.expect("put");
    assert_eq!(&s3.get(&key).await.0[..], b"to s3");

    let local = stores.sink("arn:aws:s3:::only-local", None).expect("local");
    local.put("routed/obj", Bytes::from_static(b"to disk"), &PutOptions::default()).await.expect("put");
    assert_eq!(std::fs::read(tmp.path().join("buckets/only-local/routed/obj")).expect("read"), b"to disk");
}
