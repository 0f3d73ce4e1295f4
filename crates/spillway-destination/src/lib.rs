//! Destination implementations: object stores (local folder, S3-compatible), Iceberg tables,
//! OpenSearch and HTTP endpoints.
//!
//! Invariant: a destination never chooses object names; it receives them from the pipeline, which
//! derives them from WAL positions so that a replay overwrites instead of duplicating.
