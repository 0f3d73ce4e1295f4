//! Object-store destinations: where a delivery stream's objects (S3 destination, backups, error output) land.
//!
//! A Firehose `BucketARN` names a bucket; [`ObjectStores`] maps it to an [`ObjectStoreSink`]: by default a
//! folder `<data-dir>/buckets/<bucket>/` ([`LocalBucket`]), or any S3-compatible endpoint per bucket or
//! globally ([`S3Bucket`]). A sink only writes whole objects under keys the pipeline chose; the same key written
//! twice (a replay after a crash) replaces the object.
//!
//! Shared invariants, whatever the sink:
//!
//! - a put is atomic (no reader sees a partial object) and, once it returns `Ok`, durable;
//! - keys are checked before anything is written ([`key`]); an invalid key is never retried;
//! - a sink does not retry beyond a few quick transport retries: the pipeline owns backoff and the retry window,
//!   guided by [`ObjectError::is_retryable`] and reporting [`ObjectError::firehose_code`].

use bytes::Bytes;
use futures::future::BoxFuture;

mod error;
pub mod key;
mod local;
mod s3;
mod stores;

pub use error::ObjectError;
pub use local::LocalBucket;
pub use s3::{
    DEFAULT_MULTIPART_THRESHOLD, DEFAULT_REGION, DEFAULT_TIMEOUT_SECS, PART_SIZE, PARTS_IN_FLIGHT, S3Bucket, S3Config,
    STORE_RETRIES,
};
pub use stores::ObjectStores;

/// `Content-Type` of every object Firehose writes.
pub const CONTENT_TYPE_OCTET_STREAM: &str = "application/octet-stream";

/// Metadata of one object write (firehose.md §9.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutOptions {
    /// `Content-Encoding`: `gzip`, `zip`, `snappy-java`, `hadoop-snappy`, or none when uncompressed.
    pub content_encoding: Option<&'static str>,
    /// `Content-Type`; Firehose always writes [`CONTENT_TYPE_OCTET_STREAM`].
    pub content_type: &'static str,
    /// `KMSEncryptionConfig.AWSKMSKeyARN`: S3 sinks send `x-amz-server-side-encryption: aws:kms` with this key.
    /// An S3 sink is built for one key ([`ObjectStores::sink`]) and refuses a put asking for another
    /// ([`ObjectError::Config`]); folders ignore it.
    pub sse_kms_key_id: Option<String>,
}

impl Default for PutOptions {
    fn default() -> Self {
        PutOptions { content_encoding: None, content_type: CONTENT_TYPE_OCTET_STREAM, sse_kms_key_id: None }
    }
}

/// Where objects of one bucket go.
pub trait ObjectStoreSink: Send + Sync {
    /// Writes `body` at `key`, atomically and durably, replacing any object there.
    fn put<'a>(&'a self, key: &'a str, body: Bytes, opts: &'a PutOptions) -> BoxFuture<'a, Result<(), ObjectError>>;

    /// A one-line description for logs (`local folder /data/buckets/b`, `s3 bucket b at http://host:9000`).
    fn describe(&self) -> String;
}
