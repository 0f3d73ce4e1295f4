//! Record encoders, compression codecs and table schemas.
//!
//! Owns the byte-level shape of delivered data: JSON lines, Parquet, ORC, and the compression formats
//! of Firehose's `CompressionFormat`. It never touches the network; destinations receive the bytes it
//! produces. Empty until delivery lands (see issue "Delivery to S3").

pub mod compression;
