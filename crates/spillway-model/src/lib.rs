//! The Amazon Data Firehose API as spillway understands it: request and response shapes, limits,
//! validation into typed values, and the errors a client sees.
//!
//! Pure: no I/O. The API crate parses requests with it; the pipeline keeps [`stream::StreamRecord`]s
//! and builds WAL entries with [`entry`]. Member names are the botocore model's (PascalCase), error
//! codes and messages the real service's (see `shared/reference/firehose.md`).

pub mod destination;
pub mod entry;
pub mod error;
pub mod iceberg;
pub mod limits;
pub mod names;
pub mod operation;
pub mod plan;
pub mod prefix;
pub mod put;
pub mod record_id;
pub mod stream;

pub use error::{ApiError, ErrorCode, Violations};
pub use operation::Operation;
