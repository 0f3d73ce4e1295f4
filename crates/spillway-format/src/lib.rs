//! Record encoders, compression codecs and table schemas.
//!
//! Owns the byte-level shape of delivered data: today the compression formats of Firehose's
//! `CompressionFormat` ([`compression`]); record format conversion (Parquet, ORC) and table schemas
//! come with it. It never touches the network; destinations receive the bytes it produces.

pub mod compression;
pub mod convert;
pub mod json;
pub mod orc;
pub mod schema;
pub mod table;
