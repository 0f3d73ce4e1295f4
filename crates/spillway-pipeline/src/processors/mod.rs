//! Data transformation (`ProcessingConfiguration`): the built-in processors, jq metadata extraction
//! and Lambda-compatible functions (reference §11, §12).
//!
//! Each submodule is pure or owns its own process/network edge; the supervisor wires them into the
//! delivery path.

pub mod builtin;
pub mod functions;
pub mod jq;
pub mod lambda;
pub mod lambda_http;
