//! File assembly: header, stripes (row index, data streams, stripe footer), metadata, footer, postscript.

use std::io::Write;

use arrow_array::RecordBatch;
use arrow_schema::{DataType, SchemaRef};

use super::column::{self, Column, StreamKind};
use super::proto::Proto;
use super::stream::{Compressor, MAX_BLOCK_SIZE};
use super::{OrcCompression, OrcError, OrcFormatVersion, OrcOptions};

/// Rows written between two checks of the buffered stripe size.
const SEGMENT_ROWS: usize = 1024;

/// `PostScript.writerVersion`: 6 = ORC-135 (timestamp statistics in UTC), the newest fix this writer's output
/// corresponds to. See the module documentation.
const WRITER_VERSION: u64 = 6;

/// The writer time zone recorded in every stripe footer: timestamps are written as UTC wall-clock times.
const WRITER_TIMEZONE: &[u8] = b"UTC";

struct StripeInfo {
    offset: u64,
    index_length: u64,
    data_length: u64,
    footer_length: u64,
    rows: u64,
}

/// Writes Arrow record batches as one ORC file. See the [module documentation](super).
pub struct OrcWriter<W: Write> {
    out: W,
    schema: SchemaRef,
    options: OrcOptions,
    cx: Compressor,
    /// The root struct (column 0) and the tree below it.
    root: Column,
    /// Encoded `Type` messages, by column id.
    types: Vec<Vec<u8>>,
    /// Bytes written so far (the file offset of the next stripe).
    offset: u64,
    stripes: Vec<StripeInfo>,
    /// Encoded `StripeStatistics` bodies, one per stripe.
    stripe_stats: Vec<Vec<u8>>,
    /// Rows in the current stripe and in its current row group.
    stripe_rows: u64,
    group_rows: u64,
    /// Rows in finished stripes.
    rows: u64,
    /// Rows per row group; 0 writes no row index.
    stride: u64,
    poisoned: bool,
}

impl<W: Write> OrcWriter<W> {
    /// Starts a file with `schema`'s columns; writes the 3-byte header. Refuses Arrow types without an ORC
    /// mapping here and invalid options.
    pub fn try_new(mut writer: W, schema: SchemaRef, options: OrcOptions) -> Result<Self, OrcError> {
        if options.compression_block_size == 0 || options.compression_block_size > MAX_BLOCK_SIZE {
            return Err(OrcError::InvalidOption(format!(
                "compression_block_size must be between 1 and {MAX_BLOCK_SIZE} bytes, not {}",
                options.compression_block_size
            )));
        }
        let cx = Compressor::new(options.compression, options.compression_block_size);
        let mut types = Vec::new();
        let mut next_id = 0;
        let root = column::build(&DataType::Struct(schema.fields().clone()), "", &mut next_id, &mut types, &cx)?;
        writer.write_all(b"ORC")?;
        Ok(Self {
            out: writer,
            schema,
            stride: u64::from(options.row_index_stride),
            options,
            cx,
            root,
            types,
            offset: 3,
            stripes: Vec::new(),
            stripe_stats: Vec::new(),
            stripe_rows: 0,
            group_rows: 0,
            rows: 0,
            poisoned: false,
        })
    }

    /// The schema the writer was created with.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Appends the rows of `batch`, whose columns must have the writer's types (field names and nullability may
    /// differ). Completes stripes as they reach `stripe_size_bytes`. After an I/O or compression error the writer
    /// is poisoned and every later call fails.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), OrcError> {
        if self.poisoned {
            return Err(OrcError::Poisoned);
        }
        let fields = self.schema.fields();
        if batch.num_columns() != fields.len() {
            return Err(OrcError::SchemaMismatch(format!(
                "the batch has {} columns, the schema {}",
                batch.num_columns(),
                fields.len()
            )));
        }
        for (field, array) in fields.iter().zip(batch.columns()) {
            if !column::same_shape(field.data_type(), array.data_type()) {
                return Err(OrcError::SchemaMismatch(format!(
                    "column '{}' is {} in the schema but {} in the batch",
                    field.name(),
                    field.data_type(),
                    array.data_type()
                )));
            }
        }
        let result = self.write_rows(batch);
        if result.is_err() {
            self.poisoned = true;
        }
        result
    }

    fn write_rows(&mut self, batch: &RecordBatch) -> Result<(), OrcError> {
        let n = batch.num_rows();
        let mut row = 0;
        while row < n {
            if self.stride > 0 && self.group_rows == 0 {
                self.root.start_group(&self.cx);
            }
            // Segments end at multiples of SEGMENT_ROWS rows into the stripe (and at row group ends), so where
            // stripes end does not depend on how the rows were split into batches.
            let mut take = (n - row).min(SEGMENT_ROWS - (self.stripe_rows % SEGMENT_ROWS as u64) as usize);
            if self.stride > 0 {
                take = take.min((self.stride - self.group_rows) as usize);
            }
            self.root.write_root(batch.columns(), row, row + take, &mut self.cx)?;
            row += take;
            self.group_rows += take as u64;
            self.stripe_rows += take as u64;
            if self.stride > 0 && self.group_rows == self.stride {
                self.root.end_group(true);
                self.group_rows = 0;
            }
            if self.stripe_rows.is_multiple_of(SEGMENT_ROWS as u64)
                && self.root.buffered_len() >= self.options.stripe_size_bytes
            {
                self.flush_stripe()?;
            }
        }
        Ok(())
    }

    /// Writes the buffered rows as a stripe (nothing when there are none).
    fn flush_stripe(&mut self) -> Result<(), OrcError> {
        if self.stripe_rows == 0 {
            return Ok(());
        }
        if self.group_rows > 0 {
            self.root.end_group(self.stride > 0);
            self.group_rows = 0;
        }
        self.root.finish_streams(&mut self.cx)?;

        let mut footer = Proto::new();
        let mut index_length = 0u64;
        if self.stride > 0 {
            let mut indexes = Vec::with_capacity(self.types.len());
            self.root.collect_indexes(&mut indexes);
            for (column, raw) in indexes {
                let bytes = self.cx.compress_all(&raw)?;
                self.out.write_all(&bytes)?;
                put_stream(&mut footer, StreamKind::RowIndex, column, bytes.len() as u64);
                index_length += bytes.len() as u64;
            }
        }
        let mut data_length = 0u64;
        let mut streams = Vec::new();
        self.root.collect_streams(&mut streams);
        for s in &streams {
            self.out.write_all(s.bytes)?;
            put_stream(&mut footer, s.kind, s.column, s.bytes.len() as u64);
            data_length += s.bytes.len() as u64;
        }
        drop(streams);
        for _ in 0..self.types.len() {
            // ColumnEncoding { kind: DIRECT }: RLE v1, no dictionary.
            footer.message(2, |m| {
                m.uint(1, 0);
            });
        }
        footer.bytes(3, WRITER_TIMEZONE);
        let footer = self.cx.compress_all(&footer.into_bytes())?;
        self.out.write_all(&footer)?;

        let mut stats = Proto::new();
        self.root.encode_stripe_stats(&mut stats, 1);
        self.stripe_stats.push(stats.into_bytes());
        self.stripes.push(StripeInfo {
            offset: self.offset,
            index_length,
            data_length,
            footer_length: footer.len() as u64,
            rows: self.stripe_rows,
        });
        self.offset += index_length + data_length + footer.len() as u64;
        self.rows += self.stripe_rows;
        self.stripe_rows = 0;
        self.root.reset_stripe();
        Ok(())
    }

    /// Writes the last stripe and the file tail, and returns the inner writer (flushed).
    pub fn close(mut self) -> Result<W, OrcError> {
        if self.poisoned {
            return Err(OrcError::Poisoned);
        }
        self.flush_stripe()?;
        let content_length = self.offset;

        let mut metadata = Proto::new();
        for stats in &self.stripe_stats {
            metadata.message(1, |m| m.buf.extend_from_slice(stats));
        }
        let metadata = self.cx.compress_all(&metadata.into_bytes())?;
        self.out.write_all(&metadata)?;

        let mut footer = Proto::new();
        footer.uint(1, 3).uint(2, content_length);
        for s in &self.stripes {
            footer.message(3, |m| {
                m.uint(1, s.offset).uint(2, s.index_length).uint(3, s.data_length).uint(4, s.footer_length);
                m.uint(5, s.rows);
            });
        }
        for t in &self.types {
            footer.message(4, |m| m.buf.extend_from_slice(t));
        }
        footer.uint(6, self.rows);
        self.root.encode_file_stats(&mut footer, 7);
        footer.uint(8, self.stride);
        let footer = self.cx.compress_all(&footer.into_bytes())?;
        self.out.write_all(&footer)?;

        let mut ps = Proto::new();
        ps.uint(1, footer.len() as u64)
            .uint(
                2,
                match self.options.compression {
                    OrcCompression::None => 0,
                    OrcCompression::Zlib => 1,
                    OrcCompression::Snappy => 2,
                },
            )
            .uint(3, self.options.compression_block_size as u64)
            .packed_uint(
                4,
                match self.options.format_version {
                    OrcFormatVersion::V0_11 => &[0, 11],
                    OrcFormatVersion::V0_12 => &[0, 12],
                },
            )
            .uint(5, metadata.len() as u64)
            .uint(6, WRITER_VERSION)
            .bytes(8000, b"ORC");
        let ps = ps.into_bytes();
        // At most ~50 bytes: the length fits the final byte.
        self.out.write_all(&ps)?;
        self.out.write_all(&[ps.len() as u8])?;
        self.out.flush()?;
        Ok(self.out)
    }
}

fn put_stream(footer: &mut Proto, kind: StreamKind, column: u32, length: u64) {
    footer.message(1, |m| {
        m.uint(1, kind as u64).uint(2, u64::from(column)).uint(3, length);
    });
}
