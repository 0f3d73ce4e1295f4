//! An Apache ORC (format v1) file writer for Arrow record batches: Firehose's record format conversion with the
//! `OrcSerDe` serializer.
//!
//! Owns the ORC bytes of a delivered object: the type tree, the column encodings, the generic compression, the
//! statistics and the row index. [`OrcWriter::write`] takes record batches (any number, any sizes) and
//! [`OrcWriter::close`] returns the writer with the complete file. The converter decides the schema and builds the
//! batches; this module never looks at JSON.
//!
//! # Types
//!
//! | Arrow (from [`crate::schema`])            | ORC          | streams (besides PRESENT)                              |
//! |-------------------------------------------|--------------|--------------------------------------------------------|
//! | Boolean                                   | BOOLEAN      | DATA: boolean RLE                                      |
//! | Int8 / Int16 / Int32 / Int64              | BYTE / SHORT / INT / LONG | DATA: byte RLE (BYTE), signed integer RLE v1 |
//! | Float32 / Float64                         | FLOAT / DOUBLE | DATA: IEEE 754 little-endian                         |
//! | Decimal128(p, s)                          | DECIMAL(p, s) | DATA: zigzag base-128 varints; SECONDARY: scale (signed RLE v1) |
//! | Utf8 (Hive string, char(n), varchar(n))   | STRING       | DATA: bytes; LENGTH: unsigned RLE v1                   |
//! | Binary                                    | BINARY       | as STRING                                              |
//! | Date32                                    | DATE         | DATA: days since 1970-01-01, signed RLE v1             |
//! | Timestamp(any unit, no zone)              | TIMESTAMP    | DATA: seconds since 2015-01-01 UTC (signed RLE v1); SECONDARY: nanoseconds (unsigned RLE v1) |
//! | List (child "element")                    | LIST         | LENGTH: unsigned RLE v1                                |
//! | Map (entries "key_value": "key", "value") | MAP          | LENGTH: unsigned RLE v1                                |
//! | Struct                                    | STRUCT       | (PRESENT only)                                         |
//!
//! Anything else (unsigned integers, large / view strings, time zones on timestamps, unions...) is refused by
//! [`OrcWriter::try_new`] with [`OrcError::UnsupportedType`]. Hive `char(n)` / `varchar(n)` columns are written as
//! STRING: every ORC reader (Hive, Trino / Athena, Spark) reads a STRING column into a char / varchar table column.
//!
//! # Layout and invariants
//! - Column ids are the pre-order numbering of the type tree; column 0 is the root struct of the schema's fields.
//! - Every column uses the DIRECT encoding (RLE v1, no dictionary), valid in both 0.11 and 0.12 files.
//! - A column's PRESENT stream is written only in stripes where the column has a null. Values of null slots are
//!   never written; a child column holds entries only for the non-null slots of its parent (whatever Arrow keeps
//!   under a null struct slot or in the offsets range of a null list / map slot is ignored).
//! - Timestamps are written as UTC wall-clock times and every stripe footer says `writerTimezone: "UTC"`. Seconds
//!   are stored the way the Java and C++ writers store them: the floored second, plus one when it is negative and
//!   the nanoseconds exceed 999,999 (readers subtract that one again). ORC cannot represent times strictly between
//!   1969-12-31 23:59:59 and the epoch with a fraction of at least 1 ms: like files from the reference writers,
//!   they read back one second late.
//! - Stripes: rows are buffered per stream (compressed as each compression chunk fills). The buffered size is
//!   checked after every 1024th row of a stripe; once it reaches `stripe_size_bytes` the stripe is written (so a
//!   stripe holds a multiple of 1024 rows, except the last). Each stripe is
//!   `[ROW_INDEX streams][data streams][stripe footer]`; the file is
//!   `"ORC" [stripes] [metadata] [footer] [postscript] [postscript length byte]`.
//! - Row index: with `row_index_stride > 0`, one entry per `row_index_stride` rows of a stripe (counted from the
//!   stripe's first row) for every column, with the stream positions readers seek to and the row group's
//!   statistics. The footer's `rowIndexStride` is the option's value (0: no index streams).
//! - Statistics for every column, per row group, per stripe (the metadata section) and for the file (footer):
//!   value count and hasNull always; minimum / maximum / sum as in [`stats`].
//! - Deterministic: the same batches produce the same bytes, however they are split into [`OrcWriter::write`]
//!   calls (no clocks, no host names).
//! - After an I/O or compression error the writer is poisoned: later calls fail with [`OrcError::Poisoned`].
//!
//! The postscript records `writerVersion` 6 (ORC-135: timestamp statistics are in UTC) and no writer id, i.e. the
//! Java writer's numbering: readers use those to decide which old writer bugs to work around, and this output has
//! none of them. The footer leaves out the newer optional fields (calendar, software version, encryption).
//!
//! # OrcSerDe options
//! - Honoured: `Compression` (NONE / ZLIB (level 6) / SNAPPY), `StripeSizeBytes` (compared with the compressed
//!   size of the buffered streams, as the Java writer does with its buffers), `RowIndexStride`, `FormatVersion`
//!   (the postscript's version; the encodings used are readable by 0.11 readers either way), and the compression
//!   chunk size ([`OrcOptions::compression_block_size`], not a Firehose option).
//! - Accepted, not applied:
//!   - `BloomFilterColumns` / `BloomFilterFalsePositiveProbability`: no bloom filter streams are written. They
//!     only let readers skip row groups for equality predicates; min / max statistics still do for ranges.
//!   - `DictionaryKeyThreshold`: strings are always DIRECT. Dictionary encoding shrinks repetitive string columns
//!     (before generic compression, which recovers much of it) but needs the whole stripe's strings buffered.
//!   - `EnablePadding` / `PaddingTolerance` (and `BlockSizeBytes`, not even accepted): padding aligns stripes
//!     with HDFS blocks, which mean nothing in an S3 object.

mod column;
mod proto;
mod rle;
mod stats;
mod stream;
mod writer;

#[cfg(test)]
mod tests;

pub use writer::OrcWriter;

/// Generic compression of every stream, footer and metadata (Firehose `OrcSerDe.Compression`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OrcCompression {
    None,
    Zlib,
    #[default]
    Snappy,
}

/// The file format version in the postscript (Firehose `OrcSerDe.FormatVersion`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OrcFormatVersion {
    V0_11,
    #[default]
    V0_12,
}

/// Writer options: Firehose's `OrcSerDe` settings plus the compression chunk size.
#[derive(Debug, Clone)]
pub struct OrcOptions {
    /// Default SNAPPY.
    pub compression: OrcCompression,
    /// A stripe is completed once its buffered (compressed) streams reach this size. Default 64 MiB.
    pub stripe_size_bytes: usize,
    /// Rows per row index entry; 0 writes no row index. Default 10,000.
    pub row_index_stride: u32,
    /// Largest uncompressed size of a compression chunk, 1 byte to 8 MiB - 1. Default 256 KiB.
    pub compression_block_size: usize,
    /// Default V0_12.
    pub format_version: OrcFormatVersion,
    /// Accepted, not applied (no bloom filters are written).
    pub bloom_filter_columns: Vec<String>,
    /// Accepted, not applied. Default 0.05.
    pub bloom_filter_fpp: f64,
    /// Accepted, not applied (strings are always DIRECT). Firehose documents no default; 0.0 (never use a
    /// dictionary) is what this writer does.
    pub dictionary_key_threshold: f64,
    /// Accepted, not applied. Default false.
    pub enable_padding: bool,
    /// Accepted, not applied. Default 0.05.
    pub padding_tolerance: f64,
}

impl Default for OrcOptions {
    fn default() -> Self {
        Self {
            compression: OrcCompression::Snappy,
            stripe_size_bytes: 64 << 20,
            row_index_stride: 10_000,
            compression_block_size: 256 << 10,
            format_version: OrcFormatVersion::V0_12,
            bloom_filter_columns: Vec::new(),
            bloom_filter_fpp: 0.05,
            dictionary_key_threshold: 0.0,
            enable_padding: false,
            padding_tolerance: 0.05,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OrcError {
    /// A schema column whose Arrow type this writer cannot write.
    #[error("column '{column}': {reason}")]
    UnsupportedType { column: String, reason: String },
    /// A batch that does not match the writer's schema.
    #[error("record batch does not match the ORC schema: {0}")]
    SchemaMismatch(String),
    /// A value ORC cannot represent (a timestamp beyond the 64-bit seconds range).
    #[error("column {column}: value out of range: {reason}")]
    ValueOutOfRange { column: u32, reason: String },
    #[error("invalid ORC option: {0}")]
    InvalidOption(String),
    #[error("ORC compression failed: {0}")]
    Compression(String),
    #[error("I/O error writing ORC: {0}")]
    Io(#[from] std::io::Error),
    /// An earlier error left the file incomplete.
    #[error("the ORC writer failed earlier and cannot continue")]
    Poisoned,
}
