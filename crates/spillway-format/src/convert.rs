//! Record format conversion of one object: JSON records in, one Parquet or ORC file out, plus the
//! records that could not be converted.
//!
//! [`Conversion`] is the immutable plan (table columns, input SerDe, output SerDe); [`convert`]
//! runs it over an object's records on the calling thread. Rows go from the [`JsonConverter`] to
//! the file writer in batches of at most [`BATCH_ROWS`] rows or [`BATCH_BYTES`] bytes, so the
//! Arrow form of a 128 MiB buffer never exists at once; the writer holds the encoded row group.
//!
//! Invariants: the output depends only on the records and the plan (a replay after a crash
//! writes the same file); the file holds exactly the records that are not in `failed`, in order.

use crate::json::{ConversionError, Deserializer, JsonConverter};
use crate::orc::{OrcOptions, OrcWriter};
use crate::schema::Column;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression as ParquetCodec, GzipLevel};
use parquet::file::properties::{WriterProperties, WriterVersion};

/// Rows handed to the file writer at a time.
pub const BATCH_ROWS: usize = 64 * 1024;
/// Bytes of Arrow data handed to the file writer at a time.
pub const BATCH_BYTES: usize = 32 << 20;

/// `ParquetSerDe.Compression`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParquetCompression {
    Snappy,
    Gzip,
    Uncompressed,
}

/// `ParquetSerDe` options (reference §13.1), defaults as Firehose's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParquetOptions {
    pub compression: ParquetCompression,
    /// `BlockSizeBytes`: the row group size (an HDFS block in Hive's writer).
    pub block_size_bytes: usize,
    /// `PageSizeBytes`.
    pub page_size_bytes: usize,
    /// `EnableDictionaryCompression` (parquet-mr's default: on).
    pub enable_dictionary: bool,
    /// `MaxPaddingBytes`: padding row groups to HDFS block boundaries; there are no blocks to
    /// align to in an object, so it is accepted and has no effect.
    pub max_padding_bytes: usize,
    /// `WriterVersion` V2 (else V1).
    pub writer_version_2: bool,
}

impl Default for ParquetOptions {
    fn default() -> Self {
        Self {
            compression: ParquetCompression::Snappy,
            block_size_bytes: 256 << 20,
            page_size_bytes: 1 << 20,
            enable_dictionary: true,
            max_padding_bytes: 0,
            writer_version_2: false,
        }
    }
}

impl ParquetOptions {
    fn properties(&self) -> WriterProperties {
        let codec = match self.compression {
            ParquetCompression::Snappy => ParquetCodec::SNAPPY,
            ParquetCompression::Gzip => ParquetCodec::GZIP(GzipLevel::default()),
            ParquetCompression::Uncompressed => ParquetCodec::UNCOMPRESSED,
        };
        WriterProperties::builder()
            .set_compression(codec)
            .set_max_row_group_bytes(Some(self.block_size_bytes))
            .set_max_row_group_row_count(None)
            .set_data_page_size_limit(self.page_size_bytes)
            .set_dictionary_enabled(self.enable_dictionary)
            .set_writer_version(if self.writer_version_2 {
                WriterVersion::PARQUET_2_0
            } else {
                WriterVersion::PARQUET_1_0
            })
            .set_created_by(format!("spillway version {}", env!("CARGO_PKG_VERSION")))
            .build()
    }
}

/// `OutputFormatConfiguration.Serializer`.
#[derive(Debug, Clone)]
pub enum OutputFormat {
    Parquet(ParquetOptions),
    Orc(OrcOptions),
}

impl OutputFormat {
    /// The object name extension Firehose gives converted files.
    pub fn extension(&self) -> &'static str {
        match self {
            OutputFormat::Parquet(_) => ".parquet",
            OutputFormat::Orc(_) => ".orc",
        }
    }
}

/// The plan of a stream's record format conversion.
#[derive(Debug, Clone)]
pub struct Conversion {
    /// The table's data columns (partition columns are never written into files).
    pub columns: Vec<Column>,
    pub deserializer: Deserializer,
    pub output: OutputFormat,
}

/// A converted object.
#[derive(Debug, Default)]
pub struct Converted {
    /// The file; empty when no record converted (no file is written then).
    pub body: Vec<u8>,
    pub rows: u64,
    /// Records converted, and their input bytes.
    pub records: u64,
    pub bytes: u64,
    /// Records that could not be converted: (position in the input, why).
    pub failed: Vec<(usize, ConversionError)>,
    pub failed_bytes: u64,
}

/// The output file could not be written (not a record's fault).
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error("cannot write Parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("cannot write ORC: {0}")]
    Orc(#[from] crate::orc::OrcError),
    #[error("cannot build a record batch: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
}

enum FileWriter {
    Parquet(Box<ArrowWriter<Vec<u8>>>),
    Orc(Box<OrcWriter<Vec<u8>>>),
}

impl FileWriter {
    fn write(&mut self, batch: &arrow_array::RecordBatch) -> Result<(), ConvertError> {
        match self {
            FileWriter::Parquet(w) => w.write(batch)?,
            FileWriter::Orc(w) => w.write(batch)?,
        }
        Ok(())
    }

    fn finish(self) -> Result<Vec<u8>, ConvertError> {
        Ok(match self {
            FileWriter::Parquet(w) => w.into_inner()?,
            FileWriter::Orc(w) => w.close()?,
        })
    }
}

/// Converts an object's records into one file.
pub fn convert<'a>(plan: &Conversion, records: impl IntoIterator<Item = &'a [u8]>) -> Result<Converted, ConvertError> {
    let mut converter = JsonConverter::new(&plan.columns, &plan.deserializer);
    let schema = converter.schema().clone();
    let mut writer = match &plan.output {
        OutputFormat::Parquet(o) => {
            FileWriter::Parquet(Box::new(ArrowWriter::try_new(Vec::new(), schema, Some(o.properties()))?))
        }
        OutputFormat::Orc(o) => FileWriter::Orc(Box::new(OrcWriter::try_new(Vec::new(), schema, o.clone())?)),
    };
    let mut out = Converted::default();
    for (i, record) in records.into_iter().enumerate() {
        match converter.push_record(record) {
            Ok(_) => {
                out.records += 1;
                out.bytes += record.len() as u64;
            }
            Err(e) => {
                out.failed.push((i, e));
                out.failed_bytes += record.len() as u64;
            }
        }
        // Sizes are summed over the columns: look every 1024 rows.
        let rows = converter.rows();
        if rows >= BATCH_ROWS || (i % 1024 == 1023 && converter.mem_size() >= BATCH_BYTES) {
            out.rows += converter.rows() as u64;
            writer.write(&converter.flush()?)?;
        }
    }
    if converter.rows() > 0 {
        out.rows += converter.rows() as u64;
        writer.write(&converter.flush()?)?;
    }
    if out.rows > 0 {
        out.body = writer.finish()?;
    }
    Ok(out)
}
