//! Firehose S3 `CompressionFormat` codecs: the exact bytes of a delivered object.
//!
//! [`Encoder`] is fed records one at a time (they are never concatenated first) and produces the whole object
//! in memory (objects are at most 128 MiB before compression). [`decompress`] is the inverse, for tests and tools.
//!
//! # Formats
//!
//! | Firehose value  | [`Compression`]  | extension  | `Content-Encoding` |
//! |-----------------|------------------|------------|--------------------|
//! | `UNCOMPRESSED`  | `Uncompressed`   | (none)     | (none)             |
//! | `GZIP`          | `Gzip`           | `.gz`      | `gzip`             |
//! | `ZIP`           | `Zip`            | `.zip`     | `zip`              |
//! | `Snappy`        | `Snappy`         | `.snappy`  | `snappy-java`      |
//! | `HADOOP_SNAPPY` | `HadoopSnappy`   | `.snappy`  | `hadoop-snappy`    |
//!
//! `HADOOP_SNAPPY` is documented with `.hsnappy`, but the real service writes `.snappy` (reference §9.2).
//! All integers below are big-endian unless noted.
//!
//! ## UNCOMPRESSED
//! The records concatenated byte for byte, nothing added.
//!
//! ## GZIP (RFC 1952)
//! Exactly one gzip member: the 10-byte header `1f 8b 08 00 | 00 00 00 00 | xfl | ff` (CM = deflate, FLG = 0:
//! no name, comment, extra or header CRC; MTIME = 0; XFL as zlib sets it for the level; OS = 255 "unknown"),
//! then one raw DEFLATE stream at the caller's level (0..=9, higher values clamp to 9), then the trailer
//! `CRC32 (LE u32) | ISIZE = input length mod 2^32 (LE u32)`. The encoder never sync-flushes, so block
//! boundaries depend only on the input bytes and the level.
//!
//! ## ZIP (PKWARE APPNOTE)
//! A zip archive holding exactly one DEFLATE entry (method 8) named by the caller (the object's file name without
//! `.zip`): local file header, deflate data, central directory with one record, end of central directory. The
//! entry's last-modified time is fixed at the DOS epoch 1980-01-01 00:00:00; sizes and CRC sit in the local header
//! (no data descriptor); no extra fields, comment or zip64 (an entry is far below 4 GiB); made by Unix, mode 0644. Level: 1..=9 (0 is raised to 1 because the zip writer rejects a "deflate" level
//! of 0; higher values clamp to 9).
//!
//! ## Snappy (xerial snappy-java stream, `SnappyOutputStream`)
//! ```text
//! header  : 82 'S' 'N' 'A' 'P' 'P' 'Y' 00   (8-byte magic)
//!           00 00 00 01                      (i32 version = 1)
//!           00 00 00 01                      (i32 minimum compatible version = 1)
//! block*  : i32 compressed length | raw snappy block (one snappy "block format" buffer)
//! ```
//! Every block except the last holds exactly [`SNAPPY_JAVA_BLOCK_SIZE`] (32 KiB, snappy-java's default) uncompressed
//! bytes; the last holds the remaining 1..=32 KiB. Block boundaries ignore record boundaries. Empty input is the
//! 16-byte header alone (snappy-java writes the header on close even with no data). The decoder also accepts
//! concatenated streams (a magic header where a block length is expected), as snappy-java's reader does.
//!
//! ## HADOOP_SNAPPY (Hadoop `BlockCompressorStream` with `SnappyCodec`)
//! ```text
//! block*  : u32 uncompressed length | u32 compressed length | raw snappy block
//! ```
//! Every block except the last holds exactly [`HADOOP_SNAPPY_BLOCK_SIZE`] uncompressed bytes, the last the rest.
//! That size is Hadoop's `MAX_INPUT_SIZE = bufferSize - (bufferSize / 6 + 32)` for the default
//! `io.compression.codec.snappy.buffersize` of 256 KiB, i.e. 218 422 bytes: Hadoop's decompressor copies each
//! compressed chunk into a 256 KiB direct buffer and fails on a chunk that does not fit, which a full 256 KiB block
//! of incompressible data would produce. Empty input is an empty object. The decoder follows
//! `BlockDecompressorStream`: a block may consist of several `[u32 compressed length][raw snappy]` chunks whose
//! decompressed sizes add up to the block's uncompressed length, and a block length of 0 ends the stream.
//!
//! # Invariants
//! - Deterministic: the same input, level and entry name always produce the same bytes, however the input is split
//!   into [`Encoder::write`] calls (no clocks, no randomness, no host names, no flush points tied to writes).
//! - Streaming: the snappy formats buffer at most one block of input and compress whole blocks straight into the
//!   output vector; GZIP/ZIP hand zlib input in fixed 64 KiB chunks (some zlib-rs levels otherwise make block
//!   boundaries depend on write sizes).
//! - [`Encoder::input_len`] counts the uncompressed bytes accepted so far.
//! - After an error the encoder is poisoned: every later call fails with [`CompressionError::Poisoned`].
//! - [`decompress`] never trusts length fields for allocation beyond what the data can justify and refuses to
//!   produce more than [`MAX_DECOMPRESSED_LEN`] bytes.

use std::fmt;
use std::io::{self, Cursor, Read, Write};

use flate2::GzBuilder;
use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, DateTime, ZipArchive, ZipWriter};

/// Default deflate level for GZIP and ZIP.
pub const DEFAULT_LEVEL: u32 = 6;

/// Uncompressed bytes per block in the xerial snappy-java stream (snappy-java's default block size).
pub const SNAPPY_JAVA_BLOCK_SIZE: usize = 32 * 1024;

/// The 8-byte magic that opens a snappy-java stream.
pub const SNAPPY_JAVA_MAGIC: [u8; 8] = [0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0x00];

/// Stream format version written in the snappy-java header.
pub const SNAPPY_JAVA_VERSION: i32 = 1;

/// Minimum compatible version written in the snappy-java header.
pub const SNAPPY_JAVA_COMPATIBLE_VERSION: i32 = 1;

/// Length of the snappy-java stream header: magic, version, compatible version.
pub const SNAPPY_JAVA_HEADER_LEN: usize = 16;

/// Hadoop's default `io.compression.codec.snappy.buffersize`.
pub const HADOOP_SNAPPY_BUFFER_SIZE: usize = 256 * 1024;

/// Uncompressed bytes per HADOOP_SNAPPY block: Hadoop's `MAX_INPUT_SIZE` for the default buffer size
/// (`bufferSize - (bufferSize / 6 + 32)` = 218 422), so the compressed block always fits the reader's buffer.
pub const HADOOP_SNAPPY_BLOCK_SIZE: usize = HADOOP_SNAPPY_BUFFER_SIZE - (HADOOP_SNAPPY_BUFFER_SIZE / 6 + 32);

/// Largest output [`decompress`] will produce (8 times the largest object Firehose writes).
pub const MAX_DECOMPRESSED_LEN: usize = 1 << 30;

/// GZIP and ZIP hand zlib input in chunks of exactly this size (the last one shorter). This batches small records
/// into one deflate call and, because some zlib-rs levels (0, 1, 5, 6) pick block boundaries and matches based on
/// how much input each call supplies, makes the output independent of how records were split into writes.
const DEFLATE_CHUNK: usize = 64 * 1024;

/// Largest output-capacity hint honoured by [`Encoder::new`].
const MAX_CAPACITY_HINT: usize = 256 * 1024 * 1024;

/// A raw snappy block never expands by more than about 21.4x (a 3-byte copy of 64 bytes); anything claiming more
/// is corrupt. Used to refuse absurd allocations while decoding.
const MAX_SNAPPY_EXPANSION: usize = 24;

/// A Firehose S3 `CompressionFormat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    Uncompressed,
    Gzip,
    Zip,
    Snappy,
    HadoopSnappy,
}

impl Compression {
    /// Every format, in Firehose's enum order.
    pub const ALL: [Compression; 5] = [
        Compression::Uncompressed,
        Compression::Gzip,
        Compression::Zip,
        Compression::Snappy,
        Compression::HadoopSnappy,
    ];

    /// Parses a Firehose `CompressionFormat` value (exact, case-sensitive).
    pub fn from_firehose(value: &str) -> Option<Self> {
        match value {
            "UNCOMPRESSED" => Some(Self::Uncompressed),
            "GZIP" => Some(Self::Gzip),
            "ZIP" => Some(Self::Zip),
            "Snappy" => Some(Self::Snappy),
            "HADOOP_SNAPPY" => Some(Self::HadoopSnappy),
            _ => None,
        }
    }

    /// The Firehose `CompressionFormat` value.
    pub fn firehose_name(self) -> &'static str {
        match self {
            Self::Uncompressed => "UNCOMPRESSED",
            Self::Gzip => "GZIP",
            Self::Zip => "ZIP",
            Self::Snappy => "Snappy",
            Self::HadoopSnappy => "HADOOP_SNAPPY",
        }
    }

    /// The default object-key extension as the real service writes it ("" when uncompressed).
    pub fn extension(self) -> &'static str {
        match self {
            Self::Uncompressed => "",
            Self::Gzip => ".gz",
            Self::Zip => ".zip",
            Self::Snappy | Self::HadoopSnappy => ".snappy",
        }
    }

    /// The `Content-Encoding` the real service sets on the object.
    pub fn content_encoding(self) -> Option<&'static str> {
        match self {
            Self::Uncompressed => None,
            Self::Gzip => Some("gzip"),
            Self::Zip => Some("zip"),
            Self::Snappy => Some("snappy-java"),
            Self::HadoopSnappy => Some("hadoop-snappy"),
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.firehose_name())
    }
}

/// Errors from [`Encoder`] and [`decompress`].
#[derive(Debug, thiserror::Error)]
pub enum CompressionError {
    #[error("I/O error in {format} codec: {source}")]
    Io {
        format: Compression,
        #[source]
        source: io::Error,
    },
    #[error("zip error: {0}")]
    Zip(#[from] zip::result::ZipError),
    #[error("snappy error: {0}")]
    Snappy(#[from] snap::Error),
    #[error("corrupt {format} data: {reason}")]
    Corrupt { format: Compression, reason: String },
    #[error("zip archive must hold exactly one entry, found {0}")]
    ZipEntryCount(usize),
    #[error("decompressed {format} data exceeds {limit} bytes")]
    TooLarge { format: Compression, limit: usize },
    #[error("encoder unusable after an earlier error")]
    Poisoned,
}

fn io_err(format: Compression) -> impl FnOnce(io::Error) -> CompressionError {
    move |source| CompressionError::Io { format, source }
}

fn corrupt(format: Compression, reason: impl Into<String>) -> CompressionError {
    CompressionError::Corrupt { format, reason: reason.into() }
}

/// Streaming compressor for one object. See the module documentation for the exact output.
pub struct Encoder {
    compression: Compression,
    state: State,
    input_len: u64,
}

enum State {
    Uncompressed(Vec<u8>),
    // Boxed: the codec states are hundreds of bytes to kilobytes; keep `Encoder` cheap to move.
    Gzip(Box<FixedChunks<GzEncoder<Vec<u8>>>>),
    Zip(Box<FixedChunks<ZipWriter<Cursor<Vec<u8>>>>>),
    Snappy(Box<SnappyBlocks>),
    /// Construction failed; the error is reported by the next call.
    Deferred(CompressionError),
    Poisoned,
}

impl Encoder {
    /// Creates an encoder.
    ///
    /// `level`: deflate level for GZIP (0..=9) and ZIP (1..=9); out-of-range values are clamped, see the module
    /// docs. `zip_entry_name`: the single entry's name, used only for ZIP. `capacity_hint`: initial capacity of the
    /// output buffer in bytes (capped at 256 MiB). An invalid entry name is reported by the first
    /// [`write`](Self::write) or [`finish`](Self::finish).
    pub fn new(compression: Compression, level: u32, zip_entry_name: &str, capacity_hint: usize) -> Self {
        let out = Vec::with_capacity(capacity_hint.min(MAX_CAPACITY_HINT));
        let state = match compression {
            Compression::Uncompressed => State::Uncompressed(out),
            Compression::Gzip => {
                let encoder =
                    GzBuilder::new().mtime(0).operating_system(255).write(out, flate2::Compression::new(level.min(9)));
                State::Gzip(Box::new(FixedChunks::new(encoder)))
            }
            Compression::Zip => {
                let mut writer = ZipWriter::new(Cursor::new(out));
                let options = SimpleFileOptions::default()
                    .compression_method(CompressionMethod::Deflated)
                    .compression_level(Some(i64::from(level.clamp(1, 9))))
                    .last_modified_time(DateTime::default());
                match writer.start_file(zip_entry_name, options) {
                    Ok(()) => State::Zip(Box::new(FixedChunks::new(writer))),
                    Err(e) => State::Deferred(e.into()),
                }
            }
            Compression::Snappy => State::Snappy(Box::new(SnappyBlocks::new(Framing::SnappyJava, out))),
            Compression::HadoopSnappy => State::Snappy(Box::new(SnappyBlocks::new(Framing::Hadoop, out))),
        };
        Self { compression, state, input_len: 0 }
    }

    /// The format this encoder writes.
    pub fn compression(&self) -> Compression {
        self.compression
    }

    /// Appends uncompressed bytes (typically one record).
    pub fn write(&mut self, data: &[u8]) -> Result<(), CompressionError> {
        let format = self.compression;
        let result = match &mut self.state {
            State::Uncompressed(out) => {
                out.extend_from_slice(data);
                Ok(())
            }
            State::Gzip(w) => w.write(data).map_err(io_err(format)),
            State::Zip(w) => w.write(data).map_err(io_err(format)),
            State::Snappy(blocks) => blocks.write(data),
            State::Deferred(_) | State::Poisoned => Err(CompressionError::Poisoned),
        };
        match result {
            Ok(()) => {
                self.input_len += data.len() as u64;
                Ok(())
            }
            Err(e) => Err(self.poison(e)),
        }
    }

    /// Uncompressed bytes written so far.
    pub fn input_len(&self) -> u64 {
        self.input_len
    }

    /// Completes the object and returns its bytes.
    pub fn finish(self) -> Result<Vec<u8>, CompressionError> {
        let format = self.compression;
        match self.state {
            State::Uncompressed(out) => Ok(out),
            State::Gzip(w) => {
                // Never `flush` the encoder: a sync flush would add an empty stored block.
                let encoder = w.into_inner().map_err(io_err(format))?;
                encoder.finish().map_err(io_err(format))
            }
            State::Zip(w) => {
                let writer = w.into_inner().map_err(io_err(format))?;
                Ok(writer.finish()?.into_inner())
            }
            State::Snappy(blocks) => blocks.finish(),
            State::Deferred(e) => Err(e),
            State::Poisoned => Err(CompressionError::Poisoned),
        }
    }

    /// Marks the encoder unusable and returns the error to report now (a deferred construction error wins).
    fn poison(&mut self, error: CompressionError) -> CompressionError {
        match std::mem::replace(&mut self.state, State::Poisoned) {
            State::Deferred(deferred) => deferred,
            _ => error,
        }
    }
}

impl fmt::Debug for Encoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Encoder")
            .field("compression", &self.compression)
            .field("input_len", &self.input_len)
            .field("poisoned", &matches!(self.state, State::Deferred(_) | State::Poisoned))
            .finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// `[i32 compressed length][raw snappy]` blocks after a 16-byte header.
    SnappyJava,
    /// `[u32 uncompressed length][u32 compressed length][raw snappy]` blocks.
    Hadoop,
}

impl Framing {
    fn block_size(self) -> usize {
        match self {
            Framing::SnappyJava => SNAPPY_JAVA_BLOCK_SIZE,
            Framing::Hadoop => HADOOP_SNAPPY_BLOCK_SIZE,
        }
    }

    fn format(self) -> Compression {
        match self {
            Framing::SnappyJava => Compression::Snappy,
            Framing::Hadoop => Compression::HadoopSnappy,
        }
    }
}

/// Block-buffering snappy writer shared by both framings.
struct SnappyBlocks {
    framing: Framing,
    block_size: usize,
    /// Pending uncompressed bytes, always shorter than `block_size` between calls.
    pending: Vec<u8>,
    out: Vec<u8>,
    encoder: snap::raw::Encoder,
}

impl SnappyBlocks {
    fn new(framing: Framing, mut out: Vec<u8>) -> Self {
        if framing == Framing::SnappyJava {
            out.extend_from_slice(&SNAPPY_JAVA_MAGIC);
            out.extend_from_slice(&SNAPPY_JAVA_VERSION.to_be_bytes());
            out.extend_from_slice(&SNAPPY_JAVA_COMPATIBLE_VERSION.to_be_bytes());
        }
        let block_size = framing.block_size();
        Self { framing, block_size, pending: Vec::with_capacity(block_size), out, encoder: snap::raw::Encoder::new() }
    }

    fn write(&mut self, data: &[u8]) -> Result<(), CompressionError> {
        let Self { framing, block_size, pending, out, encoder } = self;
        feed_blocks(pending, *block_size, data, |block| compress_block(*framing, encoder, block, out))
    }

    fn finish(mut self) -> Result<Vec<u8>, CompressionError> {
        if !self.pending.is_empty() {
            compress_block(self.framing, &mut self.encoder, &self.pending, &mut self.out)?;
        }
        Ok(self.out)
    }
}

/// Splits a stream of writes into blocks of exactly `block_size` bytes: `sink` sees every full block, in order;
/// a partial block stays in `pending` (never `block_size` bytes or more between calls). Full blocks available in
/// `data` itself go to `sink` without being copied into `pending`.
fn feed_blocks<E>(
    pending: &mut Vec<u8>,
    block_size: usize,
    mut data: &[u8],
    mut sink: impl FnMut(&[u8]) -> Result<(), E>,
) -> Result<(), E> {
    while !data.is_empty() {
        if pending.is_empty() && data.len() >= block_size {
            let (block, rest) = data.split_at(block_size);
            sink(block)?;
            data = rest;
            continue;
        }
        let take = (block_size - pending.len()).min(data.len());
        let (head, rest) = data.split_at(take);
        pending.extend_from_slice(head);
        data = rest;
        if pending.len() == block_size {
            sink(pending)?;
            pending.clear();
        }
    }
    Ok(())
}

/// A writer fed in chunks of exactly [`DEFLATE_CHUNK`] bytes, whatever the caller's write sizes.
struct FixedChunks<W: Write> {
    inner: W,
    pending: Vec<u8>,
}

impl<W: Write> FixedChunks<W> {
    fn new(inner: W) -> Self {
        Self { inner, pending: Vec::with_capacity(DEFLATE_CHUNK) }
    }

    fn write(&mut self, data: &[u8]) -> io::Result<()> {
        let Self { inner, pending } = self;
        feed_blocks(pending, DEFLATE_CHUNK, data, |chunk| inner.write_all(chunk))
    }

    /// Hands over the final partial chunk and returns the writer (without flushing it).
    fn into_inner(mut self) -> io::Result<W> {
        if !self.pending.is_empty() {
            self.inner.write_all(&self.pending)?;
        }
        Ok(self.inner)
    }
}

/// Appends one framed block: its length prefix(es) and the raw snappy bytes, compressed in place into `out`.
fn compress_block(
    framing: Framing,
    encoder: &mut snap::raw::Encoder,
    block: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), CompressionError> {
    let format = framing.format();
    let prefix_len = match framing {
        Framing::SnappyJava => 4,
        Framing::Hadoop => 8,
    };
    let max = snap::raw::max_compress_len(block.len());
    if max == 0 {
        return Err(corrupt(format, "block too large for snappy"));
    }
    let start = out.len();
    let body = start + prefix_len;
    out.resize(body + max, 0);
    let written = match encoder.compress(block, &mut out[body..]) {
        Ok(n) => n,
        Err(e) => {
            out.truncate(start);
            return Err(e.into());
        }
    };
    out.truncate(body + written);
    // Blocks are at most 256 KiB, so both lengths always fit in 31 bits.
    let compressed = u32::try_from(written).map_err(|_| corrupt(format, "compressed block too large"))?;
    match framing {
        Framing::SnappyJava => out[start..body].copy_from_slice(&compressed.to_be_bytes()),
        Framing::Hadoop => {
            let uncompressed = u32::try_from(block.len()).map_err(|_| corrupt(format, "block too large"))?;
            out[start..start + 4].copy_from_slice(&uncompressed.to_be_bytes());
            out[start + 4..body].copy_from_slice(&compressed.to_be_bytes());
        }
    }
    Ok(())
}

/// Decompresses a whole object written in `compression` (for tests and tools; the output must fit in memory and
/// in [`MAX_DECOMPRESSED_LEN`]).
pub fn decompress(compression: Compression, data: &[u8]) -> Result<Vec<u8>, CompressionError> {
    match compression {
        Compression::Uncompressed => {
            if data.len() > MAX_DECOMPRESSED_LEN {
                return Err(CompressionError::TooLarge { format: compression, limit: MAX_DECOMPRESSED_LEN });
            }
            Ok(data.to_vec())
        }
        Compression::Gzip => read_limited(compression, MultiGzDecoder::new(data)),
        Compression::Zip => {
            let mut archive = ZipArchive::new(Cursor::new(data))?;
            if archive.len() != 1 {
                return Err(CompressionError::ZipEntryCount(archive.len()));
            }
            let entry = archive.by_index(0)?;
            read_limited(compression, entry)
        }
        Compression::Snappy => decode_snappy_java(data),
        Compression::HadoopSnappy => decode_hadoop_snappy(data),
    }
}

fn read_limited(format: Compression, reader: impl Read) -> Result<Vec<u8>, CompressionError> {
    let mut out = Vec::new();
    let limit = MAX_DECOMPRESSED_LEN as u64 + 1;
    reader.take(limit).read_to_end(&mut out).map_err(|e| corrupt(format, e.to_string()))?;
    if out.len() > MAX_DECOMPRESSED_LEN {
        return Err(CompressionError::TooLarge { format, limit: MAX_DECOMPRESSED_LEN });
    }
    Ok(out)
}

/// Cursor over a byte slice with bounds-checked big-endian reads.
struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    format: Compression,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> &'a [u8] {
        &self.data[self.pos..]
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], CompressionError> {
        let rest = self.remaining();
        if rest.len() < n {
            return Err(corrupt(
                self.format,
                format!("truncated {what} at offset {}: need {n} bytes, have {}", self.pos, rest.len()),
            ));
        }
        self.pos += n;
        Ok(&rest[..n])
    }

    fn u32(&mut self, what: &str) -> Result<u32, CompressionError> {
        let bytes = self.take(4, what)?;
        Ok(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }
}

/// Decodes one raw snappy block, appending to `out`; returns the decompressed length.
fn decode_raw_snappy(
    format: Compression,
    decoder: &mut snap::raw::Decoder,
    input: &[u8],
    out: &mut Vec<u8>,
) -> Result<usize, CompressionError> {
    let len = snap::raw::decompress_len(input).map_err(|e| corrupt(format, e.to_string()))?;
    if len > input.len().saturating_mul(MAX_SNAPPY_EXPANSION) {
        return Err(corrupt(format, format!("snappy block of {} bytes claims {len} bytes", input.len())));
    }
    if out.len().saturating_add(len) > MAX_DECOMPRESSED_LEN {
        return Err(CompressionError::TooLarge { format, limit: MAX_DECOMPRESSED_LEN });
    }
    let start = out.len();
    out.resize(start + len, 0);
    let written = decoder.decompress(input, &mut out[start..]).map_err(|e| corrupt(format, e.to_string()))?;
    if written != len {
        return Err(corrupt(format, format!("snappy block decoded to {written} bytes, header said {len}")));
    }
    Ok(len)
}

fn decode_snappy_java(data: &[u8]) -> Result<Vec<u8>, CompressionError> {
    let format = Compression::Snappy;
    let mut reader = Reader { data, pos: 0, format };
    let mut decoder = snap::raw::Decoder::new();
    let mut out = Vec::new();
    read_snappy_java_header(&mut reader)?;
    while !reader.remaining().is_empty() {
        if reader.remaining().starts_with(&SNAPPY_JAVA_MAGIC) {
            // Concatenated stream: a fresh header where a block length would be.
            read_snappy_java_header(&mut reader)?;
            continue;
        }
        let len = reader.u32("block length")?;
        if i32::try_from(len).is_err() {
            return Err(corrupt(format, format!("negative block length {len:#010x}")));
        }
        let block = reader.take(len as usize, "block")?;
        decode_raw_snappy(format, &mut decoder, block, &mut out)?;
    }
    Ok(out)
}

fn read_snappy_java_header(reader: &mut Reader<'_>) -> Result<(), CompressionError> {
    let format = reader.format;
    let magic = reader.take(SNAPPY_JAVA_MAGIC.len(), "header")?;
    if magic != SNAPPY_JAVA_MAGIC {
        return Err(corrupt(format, "missing snappy-java magic header"));
    }
    let version = reader.u32("header")?;
    let compatible = reader.u32("header")?;
    if version < 1 || compatible != SNAPPY_JAVA_COMPATIBLE_VERSION as u32 {
        return Err(corrupt(format, format!("unsupported snappy-java version {version}, compatible {compatible}")));
    }
    Ok(())
}

fn decode_hadoop_snappy(data: &[u8]) -> Result<Vec<u8>, CompressionError> {
    let format = Compression::HadoopSnappy;
    let mut reader = Reader { data, pos: 0, format };
    let mut decoder = snap::raw::Decoder::new();
    let mut out = Vec::new();
    while !reader.remaining().is_empty() {
        let block_len = reader.u32("block length")? as usize;
        if block_len == 0 {
            // Hadoop's BlockDecompressorStream treats an empty block as end of stream.
            break;
        }
        let mut produced = 0usize;
        while produced < block_len {
            let chunk_len = reader.u32("chunk length")? as usize;
            let chunk = reader.take(chunk_len, "chunk")?;
            produced += decode_raw_snappy(format, &mut decoder, chunk, &mut out)?;
        }
        if produced != block_len {
            return Err(corrupt(format, format!("block decoded to {produced} bytes, header said {block_len}")));
        }
    }
    Ok(out)
}
