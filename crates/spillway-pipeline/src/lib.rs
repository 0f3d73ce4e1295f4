//! The delivery pipeline: the stream registry and control plane, ingest into the WAL, and (as
//! delivery lands) the per-stream supervisors, buffers, processors and partitioning.
//!
//! It implements the API's `Backend` port and owns the WAL handle; it never touches file formats
//! (spillway-format) or destinations' wire protocols (spillway-destination) directly.

pub mod conversion;
pub mod dashboard;
mod fsutil;
pub mod logs;
pub mod metrics;
pub mod partition;
pub mod processing;
pub mod processors;
pub mod registry;
pub mod service;
pub mod state;
pub mod supervisor;

pub use service::{Service, ServiceConfig, capabilities};
