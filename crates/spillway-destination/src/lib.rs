//! Destination implementations: object stores (local folder, S3-compatible), Iceberg tables,
//! OpenSearch and HTTP endpoints.
//!
//! Invariant: a destination never chooses object names; it receives them from the pipeline, which
//! derives them from WAL positions so that a replay overwrites instead of duplicating.

pub mod iceberg;
pub mod object;
pub mod text;

pub use object::{
    CONTENT_TYPE_OCTET_STREAM, LocalBucket, ObjectError, ObjectStoreSink, ObjectStores, PutOptions, S3Bucket, S3Config,
};
