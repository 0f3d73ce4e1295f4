//! The built-in record processors of `ProcessingConfiguration` (reference §11.1, §11.3), KPL de-aggregation
//! (reference §4) and the error-output line for records they reject (reference §10).
//!
//! Everything here is a pure function over record bytes: no I/O, clocks or shared state. The supervisor parses each
//! configured processor once with [`BuiltinProcessor::from_parameters`] (at create/update time, so a bad parameter is
//! an `InvalidArgumentException`), orders them by [`Stage`], and calls [`BuiltinProcessor::process`] on batches.
//! Lambda and MetadataExtraction live in sibling modules; this module only knows their place in the order.
//!
//! # Order
//!
//! Records from a Kinesis Data Streams source first go through [`deaggregate_kpl`] (Firehose does this automatically
//! for KDS sources, with no processor configured; reference §4). Then the processors run in this order, whatever their
//! order in the configuration (reference §11.1; [`Stage`] sorts in this order):
//!
//! 1. `Decompression`: gunzip.
//! 2. `CloudWatchLogProcessing`: CloudWatch Logs message extraction.
//! 3. `RecordDeAggregation`: JSON or DELIMITED splitting.
//! 4. `Lambda` (sibling module).
//! 5. `MetadataExtraction` (sibling module).
//! 6. `AppendDelimiterToRecord`: LF after each record.
//!
//! # Behaviour
//!
//! | Processor | One input record becomes | Failure (error-output type) |
//! |---|---|---|
//! | KPL de-aggregation | its user records (`data` fields) if it starts with the KPL magic, else itself | bad MD5, malformed protobuf (`processing-failed`) |
//! | `Decompression` (`GZIP`) | the gunzipped bytes | not gzip, corrupt gzip (`decompression-failed`) |
//! | `CloudWatchLogProcessing`, extraction on | `DATA_MESSAGE`: each `logEvents[].message` + LF; `CONTROL_MESSAGE`: one empty record | not a CloudWatch Logs envelope (`decompression-failed`) |
//! | `CloudWatchLogProcessing`, extraction off | itself | none |
//! | `RecordDeAggregation` `JSON` | each top-level JSON object, byte for byte | not a sequence of objects, more than 500 (`processing-failed`) |
//! | `RecordDeAggregation` `DELIMITED` | the pieces between delimiters (`java.lang.String#split` rules) | more than 500 (`processing-failed`) |
//! | `AppendDelimiterToRecord` | itself + LF | none |
//!
//! # Invariants
//!
//! - Never panics on any input bytes: every length, index and varint read from a record is bounds-checked.
//! - All or nothing per input record: a record either produces all its outputs or goes whole to the `failed` list,
//!   never both; outputs keep input order.
//! - [`Record::raw`] is never touched: it stays the bytes as ingested, so error output carries the original
//!   (still compressed, still aggregated) bytes, as `rawData` must (reference §10, §11.3).
//! - No per-output-record allocation: sub-records are [`Bytes`] slices of the input (splitting) or of one buffer per
//!   input record (decompression, extraction) or per batch (delimiter).

use std::borrow::Cow;
use std::fmt::{self, Write as _};
use std::ops::Range;

use base64::Engine as _;
use base64::alphabet;
use base64::engine::general_purpose::STANDARD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use bytes::{BufMut, Bytes, BytesMut};
use md5::{Digest, Md5};
use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use spillway_format::compression::{Compression, decompress};

/// At most this many sub-records per input record for `RecordDeAggregation` (reference §7, §11.1). KPL
/// de-aggregation and CloudWatch Logs extraction are not limited by it.
pub const MAX_SUB_RECORDS: usize = 500;

/// First four bytes of a KPL aggregated record.
pub const KPL_MAGIC: [u8; 4] = [0xF3, 0x89, 0x9A, 0xC2];

/// Length of the MD5 digest that ends a KPL aggregated record.
const KPL_DIGEST_LEN: usize = 16;

/// First two bytes of every gzip member (RFC 1952).
const GZIP_MAGIC: [u8; 2] = [0x1F, 0x8B];

/// `!{firehose:error-output-type}` for records rejected by de-aggregation (and Lambda).
pub const PROCESSING_FAILED: &str = "processing-failed";

/// `!{firehose:error-output-type}` for records rejected by decompression or CloudWatch Logs message extraction.
pub const DECOMPRESSION_FAILED: &str = "decompression-failed";

/// `errorCode` and `errorMessage` of decompression failures. The reference records both as `Decompression failed.`
/// (observed); we write that string in both fields and keep the precise reason for logs ([`Failure`]'s `Display`).
const DECOMPRESSION_FAILED_TEXT: &str = "Decompression failed.";

/// A record flowing through processing: its current bytes, its original bytes and where it came from.
///
/// Sub-records produced by splitting share `raw`, `arrival_ms`, `lsn` and `index` with the record they came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The bytes after the processors run so far.
    pub data: Bytes,
    /// The bytes as ingested, before any processor: `rawData` of error output (reference §10).
    pub raw: Bytes,
    /// Approximate arrival time, epoch milliseconds (`arrivalTimestamp`).
    pub arrival_ms: i64,
    /// The WAL entry the record came from.
    pub lsn: u64,
    /// The record's position within that entry.
    pub index: u32,
}

impl Record {
    /// A record as ingested: `raw` is `data`.
    pub fn new(data: Bytes, arrival_ms: i64, lsn: u64, index: u32) -> Self {
        Self { raw: data.clone(), data, arrival_ms, lsn, index }
    }

    /// A record derived from this one (same origin and raw bytes) holding `data`.
    fn derive(&self, data: Bytes) -> Self {
        Self { data, raw: self.raw.clone(), arrival_ms: self.arrival_ms, lsn: self.lsn, index: self.index }
    }
}

/// Why a processor rejected a record. `Display` is the detailed reason for logs; [`error_code`](Self::error_code) and
/// [`error_message`](Self::error_message) are what the error output carries.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// `Decompression` input that does not start with the gzip magic bytes.
    #[error("record is not gzip data")]
    NotGzip,
    /// `Decompression` input with the gzip magic that does not decompress.
    #[error("gzip data does not decompress: {0}")]
    CorruptGzip(String),
    /// `CloudWatchLogProcessing` input that is not a CloudWatch Logs subscription envelope.
    #[error("not a CloudWatch Logs envelope: {0}")]
    BadEnvelope(String),
    /// `RecordDeAggregation` `JSON` input that is not a sequence of JSON objects.
    #[error("not a sequence of JSON objects at byte {offset}: {reason}")]
    MalformedJson { offset: usize, reason: String },
    /// `RecordDeAggregation` input that splits into more than [`MAX_SUB_RECORDS`] records.
    #[error("record splits into more than {MAX_SUB_RECORDS} sub-records")]
    TooManySubRecords,
    /// KPL aggregated record whose MD5 trailer does not match its protobuf message.
    #[error("KPL aggregated record fails its MD5 check")]
    KplChecksum,
    /// KPL aggregated record that is too short or whose protobuf message is malformed.
    #[error("malformed KPL aggregated record: {0}")]
    MalformedKpl(&'static str),
}

impl Failure {
    /// The `!{firehose:error-output-type}` the record is written under.
    pub fn output_type(&self) -> &'static str {
        match self {
            Self::NotGzip | Self::CorruptGzip(_) | Self::BadEnvelope(_) => DECOMPRESSION_FAILED,
            Self::MalformedJson { .. } | Self::TooManySubRecords | Self::KplChecksum | Self::MalformedKpl(_) => {
                PROCESSING_FAILED
            }
        }
    }

    /// The `errorCode` of the error output. Decompression failures use the observed value; the real service's codes
    /// for de-aggregation failures are unknown, so these follow the `Processor.Reason` pattern of other codes.
    pub fn error_code(&self) -> &'static str {
        match self {
            Self::NotGzip | Self::CorruptGzip(_) | Self::BadEnvelope(_) => DECOMPRESSION_FAILED_TEXT,
            Self::MalformedJson { .. } => "RecordDeAggregation.MalformedJson",
            Self::TooManySubRecords => "RecordDeAggregation.TooManySubRecords",
            Self::KplChecksum => "RecordDeAggregation.KplChecksumMismatch",
            Self::MalformedKpl(_) => "RecordDeAggregation.MalformedKplRecord",
        }
    }

    /// The `errorMessage` of the error output.
    pub fn error_message(&self) -> Cow<'static, str> {
        match self {
            Self::NotGzip | Self::CorruptGzip(_) | Self::BadEnvelope(_) => Cow::Borrowed(DECOMPRESSION_FAILED_TEXT),
            Self::MalformedJson { offset, reason } => {
                Cow::Owned(format!("The record is not a sequence of JSON objects (at byte {offset}: {reason})."))
            }
            Self::TooManySubRecords => {
                Cow::Owned(format!("The record de-aggregates into more than {MAX_SUB_RECORDS} sub-records."))
            }
            Self::KplChecksum => Cow::Borrowed("The KPL aggregated record fails its MD5 check."),
            Self::MalformedKpl(reason) => Cow::Owned(format!("The KPL aggregated record is malformed ({reason}).")),
        }
    }
}

/// A record a processor rejected, as it was when it entered that processor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failed {
    pub record: Record,
    pub failure: Failure,
}

/// Where a processor type runs in the processing order (reference §11.1). Sorting by stage gives the order
/// processors run in, whatever their order in the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stage {
    Decompression,
    MessageExtraction,
    RecordDeAggregation,
    Lambda,
    MetadataExtraction,
    AppendDelimiter,
}

impl Stage {
    /// The stage of a Firehose processor `Type`, built-in or not.
    pub fn of_type(processor_type: &str) -> Option<Self> {
        match processor_type {
            "Decompression" => Some(Self::Decompression),
            "CloudWatchLogProcessing" => Some(Self::MessageExtraction),
            "RecordDeAggregation" => Some(Self::RecordDeAggregation),
            "Lambda" => Some(Self::Lambda),
            "MetadataExtraction" => Some(Self::MetadataExtraction),
            "AppendDelimiterToRecord" => Some(Self::AppendDelimiter),
            _ => None,
        }
    }
}

/// A byte string to split on, with its KMP failure table so a search is linear in the record whatever the
/// delimiter (a naive search is quadratic on inputs like `aaaa…` with delimiter `aa…ab`).
#[derive(Clone, PartialEq, Eq)]
pub struct Delimiter {
    bytes: Box<[u8]>,
    /// `fail[i]`: length of the longest proper prefix of `bytes[..=i]` that is also its suffix.
    fail: Box<[usize]>,
}

impl Delimiter {
    /// `None` for an empty delimiter.
    fn new(bytes: Vec<u8>) -> Option<Self> {
        if bytes.is_empty() {
            return None;
        }
        let mut fail = vec![0; bytes.len()];
        let mut k = 0;
        for i in 1..bytes.len() {
            while k > 0 && bytes[i] != bytes[k] {
                k = fail[k - 1];
            }
            if bytes[i] == bytes[k] {
                k += 1;
            }
            fail[i] = k;
        }
        Some(Self { bytes: bytes.into_boxed_slice(), fail: fail.into_boxed_slice() })
    }

    /// The delimiter's bytes (never empty).
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Position of the first occurrence starting at or after `from`.
    fn find(&self, haystack: &[u8], from: usize) -> Option<usize> {
        let mut k = 0;
        for (i, &b) in haystack.iter().enumerate().skip(from) {
            // `k < bytes.len()` throughout: it is reset or returned as soon as it reaches the length.
            while k > 0 && self.bytes[k] != b {
                k = self.fail[k - 1];
            }
            if self.bytes[k] == b {
                k += 1;
                if k == self.bytes.len() {
                    return Some(i + 1 - k);
                }
            }
        }
        None
    }
}

impl fmt::Debug for Delimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Delimiter").field(&self.bytes).finish()
    }
}

/// `RecordDeAggregation`'s `SubRecordType`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubRecordType {
    Json,
    Delimited(Delimiter),
}

/// A validated built-in processor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuiltinProcessor {
    /// `Decompression` with `CompressionFormat` `GZIP` (the only format).
    Decompression,
    /// `CloudWatchLogProcessing` with `DataMessageExtraction`.
    CloudWatchLogProcessing { data_message_extraction: bool },
    /// `RecordDeAggregation`.
    RecordDeAggregation(SubRecordType),
    /// `AppendDelimiterToRecord`: always LF.
    AppendDelimiterToRecord,
}

/// Decodes the `Delimiter` parameter: standard alphabet, padding optional (as `java.util.Base64.getDecoder()`).
const DELIMITER_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

impl BuiltinProcessor {
    /// Parses and validates a processor from its Firehose `Type` and `Parameters` (name/value pairs).
    ///
    /// # Errors
    ///
    /// A message for `InvalidArgumentException` when the type is not built-in (`Lambda`, `MetadataExtraction`) or
    /// unknown, a parameter does not apply to the type or appears twice, or a value is invalid. Missing optional
    /// parameters take their defaults: `CompressionFormat` `GZIP`, `DataMessageExtraction` `false`.
    /// `AppendDelimiterToRecord` accepts and ignores `Delimiter` (the service canonicalises it away, reference
    /// §11.1), as does `RecordDeAggregation` with `SubRecordType` `JSON`.
    pub fn from_parameters<N: AsRef<str>, V: AsRef<str>>(
        processor_type: &str,
        parameters: &[(N, V)],
    ) -> Result<Self, String> {
        let allowed: &[&str] = match processor_type {
            "Decompression" => &["CompressionFormat"],
            "CloudWatchLogProcessing" => &["DataMessageExtraction"],
            "RecordDeAggregation" => &["SubRecordType", "Delimiter"],
            "AppendDelimiterToRecord" => &["Delimiter"],
            "Lambda" | "MetadataExtraction" => return Err(format!("{processor_type} is not a built-in processor")),
            other => return Err(format!("unknown processor type {other:?}")),
        };
        for (i, (name, _)) in parameters.iter().enumerate() {
            let name = name.as_ref();
            if !allowed.contains(&name) {
                return Err(format!("parameter {name:?} does not apply to processor type {processor_type}"));
            }
            if parameters[..i].iter().any(|(other, _)| other.as_ref() == name) {
                return Err(format!("parameter {name} is given more than once for processor type {processor_type}"));
            }
        }
        let param = |wanted: &str| parameters.iter().find(|(n, _)| n.as_ref() == wanted).map(|(_, v)| v.as_ref());
        match processor_type {
            "Decompression" => match param("CompressionFormat").unwrap_or("GZIP") {
                "GZIP" => Ok(Self::Decompression),
                other => Err(format!("CompressionFormat must be GZIP, got {other:?}")),
            },
            "CloudWatchLogProcessing" => {
                let value = param("DataMessageExtraction").unwrap_or("false");
                let data_message_extraction = if value.eq_ignore_ascii_case("true") {
                    true
                } else if value.eq_ignore_ascii_case("false") {
                    false
                } else {
                    return Err(format!("DataMessageExtraction must be true or false, got {value:?}"));
                };
                Ok(Self::CloudWatchLogProcessing { data_message_extraction })
            }
            "RecordDeAggregation" => match param("SubRecordType") {
                Some("JSON") => Ok(Self::RecordDeAggregation(SubRecordType::Json)),
                Some("DELIMITED") => {
                    let encoded = param("Delimiter").ok_or("SubRecordType DELIMITED requires a Delimiter")?;
                    let bytes = DELIMITER_BASE64
                        .decode(encoded)
                        .map_err(|e| format!("Delimiter must be base64 ({e}), got {encoded:?}"))?;
                    let delimiter = Delimiter::new(bytes).ok_or("Delimiter must not be empty")?;
                    Ok(Self::RecordDeAggregation(SubRecordType::Delimited(delimiter)))
                }
                Some(other) => Err(format!("SubRecordType must be JSON or DELIMITED, got {other:?}")),
                None => Err("RecordDeAggregation requires SubRecordType".to_owned()),
            },
            _ => Ok(Self::AppendDelimiterToRecord),
        }
    }

    /// Where this processor runs in the processing order.
    pub fn stage(&self) -> Stage {
        match self {
            Self::Decompression => Stage::Decompression,
            Self::CloudWatchLogProcessing { .. } => Stage::MessageExtraction,
            Self::RecordDeAggregation(_) => Stage::RecordDeAggregation,
            Self::AppendDelimiterToRecord => Stage::AppendDelimiter,
        }
    }

    /// Runs the processor over `input`, appending results to `out` (in input order) and rejected records, unchanged,
    /// to `failed`.
    pub fn process(&self, input: impl IntoIterator<Item = Record>, out: &mut Vec<Record>, failed: &mut Vec<Failed>) {
        match self {
            Self::AppendDelimiterToRecord => {
                let start = out.len();
                out.extend(input);
                if let Some(batch) = out.get_mut(start..) {
                    append_lf(batch);
                }
            }
            Self::CloudWatchLogProcessing { data_message_extraction: false } => out.extend(input),
            Self::Decompression => {
                for record in input {
                    match gunzip(&record.data) {
                        Ok(data) => out.push(Record { data, ..record }),
                        Err(failure) => failed.push(Failed { record, failure }),
                    }
                }
            }
            Self::CloudWatchLogProcessing { data_message_extraction: true } => {
                each_record(input, out, failed, extract_messages)
            }
            Self::RecordDeAggregation(SubRecordType::Json) => each_record(input, out, failed, split_json),
            Self::RecordDeAggregation(SubRecordType::Delimited(delimiter)) => {
                each_record(input, out, failed, |record, out| split_delimited(record, delimiter, out))
            }
        }
    }
}

/// De-aggregates KPL aggregated records (reference §4): a record starting with [`KPL_MAGIC`] becomes its user
/// records' `data`, in order; any other record passes through unchanged.
///
/// Firehose applies this automatically to records read from a Kinesis data stream, before any processor; the caller
/// decides which records that is. A record with the magic whose MD5 trailer does not match, or whose protobuf is
/// malformed (truncated, bad varint, missing required field, key index out of range), fails as `processing-failed`.
/// The KCL instead passes such records through unchanged as "not aggregated"; we reject them so corruption is
/// visible in the error output rather than delivered as binary garbage. Unknown fields and `tags` are skipped.
pub fn deaggregate_kpl(input: impl IntoIterator<Item = Record>, out: &mut Vec<Record>, failed: &mut Vec<Failed>) {
    each_record(input, out, failed, split_kpl)
}

/// Applies a one-record-to-many step, keeping the all-or-nothing invariant.
fn each_record(
    input: impl IntoIterator<Item = Record>,
    out: &mut Vec<Record>,
    failed: &mut Vec<Failed>,
    mut step: impl FnMut(&Record, &mut Vec<Record>) -> Result<(), Failure>,
) {
    for record in input {
        let start = out.len();
        if let Err(failure) = step(&record, out) {
            out.truncate(start);
            failed.push(Failed { record, failure });
        }
    }
}

/// Appends LF to every record, copying the batch once into one shared buffer.
///
/// Choice: LF after *each* record, as the AWS documentation describes the processor. The reference also records an
/// observation that objects have LF *between* records but none after the last one; that is a property of the
/// object, not of a record (the processor cannot know which record ends an object), so we follow the documented
/// per-record behaviour.
fn append_lf(records: &mut [Record]) {
    if records.is_empty() {
        return;
    }
    let total = records.iter().map(|r| r.data.len() + 1).sum();
    let mut buf = BytesMut::with_capacity(total);
    for record in records.iter() {
        buf.extend_from_slice(&record.data);
        buf.put_u8(b'\n');
    }
    let buf = buf.freeze();
    let mut at = 0;
    for record in records {
        let end = at + record.data.len() + 1;
        record.data = buf.slice(at..end);
        at = end;
    }
}

/// Gunzips one record (all members, as `MultiGzDecoder`). The output is capped only by spillway-format's
/// `MAX_DECOMPRESSED_LEN`.
fn gunzip(data: &[u8]) -> Result<Bytes, Failure> {
    if !data.starts_with(&GZIP_MAGIC) {
        return Err(Failure::NotGzip);
    }
    decompress(Compression::Gzip, data).map(Bytes::from).map_err(|e| Failure::CorruptGzip(e.to_string()))
}

// ---------------------------------------------------------------------------------------------------------------
// RecordDeAggregation
// ---------------------------------------------------------------------------------------------------------------

/// `JSON`: one sub-record per top-level JSON object, byte for byte (whitespace between objects dropped, so a
/// newline-separated record loses its newlines; reference §12 advises AppendDelimiterToRecord). Objects may be
/// concatenated (`{..}{..}`) or separated by JSON whitespace. Anything else at top level (arrays, scalars, garbage,
/// an empty or all-whitespace record) fails the record, as does invalid JSON inside an object.
fn split_json(record: &Record, out: &mut Vec<Record>) -> Result<(), Failure> {
    let data = &record.data[..];
    let mut stream = serde_json::Deserializer::from_slice(data).into_iter::<IgnoredAny>();
    let mut count = 0;
    loop {
        let after = stream.byte_offset();
        let start = after + data.get(after..).map_or(0, leading_whitespace);
        match data.get(start) {
            None if count == 0 => {
                return Err(Failure::MalformedJson { offset: start, reason: "no JSON object".to_owned() });
            }
            None => return Ok(()),
            Some(b'{') => {}
            Some(_) => return Err(Failure::MalformedJson { offset: start, reason: "expected `{`".to_owned() }),
        }
        match stream.next() {
            Some(Ok(IgnoredAny)) => {}
            Some(Err(e)) => return Err(Failure::MalformedJson { offset: start, reason: e.to_string() }),
            None => return Err(Failure::MalformedJson { offset: start, reason: "unexpected end".to_owned() }),
        }
        count += 1;
        if count > MAX_SUB_RECORDS {
            return Err(Failure::TooManySubRecords);
        }
        out.push(record.derive(record.data.slice(start..stream.byte_offset())));
    }
}

/// Number of JSON whitespace bytes at the start of `data`.
fn leading_whitespace(data: &[u8]) -> usize {
    data.iter().take_while(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r')).count()
}

/// `DELIMITED`: the pieces between delimiter occurrences (left to right, non-overlapping), with the semantics of
/// Java's `String#split` (the service is a JVM; its exact rule is unobserved):
/// - a record without the delimiter passes through as one record, even when empty;
/// - empty pieces at the start and between two delimiters are kept (as empty records);
/// - empty pieces at the end are dropped, so `a####` is `[a]` and a record of only delimiters yields nothing.
///
/// More than [`MAX_SUB_RECORDS`] pieces (after dropping trailing empties) fails the record.
fn split_delimited(record: &Record, delimiter: &Delimiter, out: &mut Vec<Record>) -> Result<(), Failure> {
    let data = &record.data[..];
    let Some(first) = delimiter.find(data, 0) else {
        out.push(record.clone());
        return Ok(());
    };
    let mut count = 0;
    // Empty pieces seen but not yet emitted: they are emitted only if a non-empty piece follows.
    let mut pending_empty = 0;
    let mut start = 0;
    let mut next = Some(first);
    loop {
        let end = next.unwrap_or(data.len());
        if end == start {
            pending_empty += 1;
        } else {
            count += pending_empty + 1;
            if count > MAX_SUB_RECORDS {
                return Err(Failure::TooManySubRecords);
            }
            out.extend(std::iter::repeat_with(|| record.derive(Bytes::new())).take(pending_empty));
            pending_empty = 0;
            out.push(record.derive(record.data.slice(start..end)));
        }
        match next {
            None => return Ok(()),
            Some(at) => {
                start = at + delimiter.as_bytes().len();
                next = delimiter.find(data, start);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// KPL aggregation
// ---------------------------------------------------------------------------------------------------------------

/// Splits one record per the KPL aggregation format:
///
/// ```text
/// magic F3 89 9A C2 | protobuf AggregatedRecord | MD5(protobuf), 16 bytes
///
/// message AggregatedRecord { repeated string partition_key_table = 1; repeated string explicit_hash_key_table = 2;
///                            repeated Record records = 3; }
/// message Record { required uint64 partition_key_index = 1; optional uint64 explicit_hash_key_index = 2;
///                  required bytes data = 3; repeated Tag tags = 4; }
/// ```
///
/// Two passes over the message: the first counts the key tables (fields may come in any order), the second parses
/// each record, checks its key indexes and emits its `data` as a slice of the input.
fn split_kpl(record: &Record, out: &mut Vec<Record>) -> Result<(), Failure> {
    let data = &record.data[..];
    let Some(rest) = data.strip_prefix(&KPL_MAGIC) else {
        out.push(record.clone());
        return Ok(());
    };
    let message_len = rest.len().checked_sub(KPL_DIGEST_LEN).ok_or(Failure::MalformedKpl("shorter than its MD5"))?;
    let (message, digest) = rest.split_at(message_len);
    if Md5::digest(message).as_slice() != digest {
        return Err(Failure::KplChecksum);
    }
    let body = KPL_MAGIC.len()..KPL_MAGIC.len() + message_len;

    let (mut partition_keys, mut explicit_hash_keys) = (0u64, 0u64);
    let mut reader = ProtoReader::new(data, body.clone());
    while let Some((field, value)) = reader.next_field()? {
        match (field, value) {
            (1, Wire::Len(_)) => partition_keys += 1,
            (2, Wire::Len(_)) => explicit_hash_keys += 1,
            _ => {}
        }
    }
    let mut reader = ProtoReader::new(data, body);
    while let Some((field, value)) = reader.next_field()? {
        if let (3, Wire::Len(range)) = (field, value) {
            let payload = kpl_user_record(data, range, partition_keys, explicit_hash_keys)?;
            out.push(record.derive(record.data.slice(payload)));
        }
    }
    Ok(())
}

/// Parses one `Record` message; returns the range of its `data`.
fn kpl_user_record(
    data: &[u8],
    range: Range<usize>,
    partition_keys: u64,
    explicit_hash_keys: u64,
) -> Result<Range<usize>, Failure> {
    let (mut partition_key, mut explicit_hash_key, mut payload) = (None, None, None);
    let mut reader = ProtoReader::new(data, range);
    // Protobuf semantics: for a repeated non-repeated field the last occurrence wins; a known field number with an
    // unexpected wire type is an unknown field.
    while let Some((field, value)) = reader.next_field()? {
        match (field, value) {
            (1, Wire::Varint(v)) => partition_key = Some(v),
            (2, Wire::Varint(v)) => explicit_hash_key = Some(v),
            (3, Wire::Len(r)) => payload = Some(r),
            _ => {}
        }
    }
    let partition_key = partition_key.ok_or(Failure::MalformedKpl("record without partition_key_index"))?;
    if partition_key >= partition_keys {
        return Err(Failure::MalformedKpl("partition_key_index out of range"));
    }
    if explicit_hash_key.is_some_and(|i| i >= explicit_hash_keys) {
        return Err(Failure::MalformedKpl("explicit_hash_key_index out of range"));
    }
    payload.ok_or(Failure::MalformedKpl("record without data"))
}

/// One protobuf field value, as far as KPL parsing needs it.
enum Wire {
    Varint(u64),
    /// Length-delimited: the range of its bytes in the reader's buffer.
    Len(Range<usize>),
    /// Fixed 32- or 64-bit, skipped.
    Fixed,
}

/// A bounds-checked protobuf field reader over `buf[pos..end]`; ranges it returns index `buf`.
struct ProtoReader<'a> {
    buf: &'a [u8],
    pos: usize,
    end: usize,
}

impl<'a> ProtoReader<'a> {
    /// Largest protobuf field number.
    const MAX_FIELD: u64 = (1 << 29) - 1;

    /// `range` must lie within `buf` (callers pass ranges this reader produced); a range that does not reads as empty.
    fn new(buf: &'a [u8], range: Range<usize>) -> Self {
        let end = range.end.min(buf.len());
        Self { buf, pos: range.start.min(end), end }
    }

    fn byte(&mut self) -> Result<u8, Failure> {
        if self.pos >= self.end {
            return Err(Failure::MalformedKpl("truncated varint"));
        }
        let b = self.buf.get(self.pos).copied().ok_or(Failure::MalformedKpl("truncated varint"))?;
        self.pos += 1;
        Ok(b)
    }

    fn varint(&mut self) -> Result<u64, Failure> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            // The tenth byte holds bit 63 only.
            if shift == 63 && b > 1 {
                return Err(Failure::MalformedKpl("varint overflows 64 bits"));
            }
            value |= u64::from(b & 0x7F) << shift;
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(Failure::MalformedKpl("varint overflows 64 bits"))
    }

    fn skip(&mut self, n: usize) -> Result<Range<usize>, Failure> {
        if n > self.end - self.pos {
            return Err(Failure::MalformedKpl("field overruns its message"));
        }
        let range = self.pos..self.pos + n;
        self.pos += n;
        Ok(range)
    }

    /// The next `(field number, value)`, or `None` at the end of the message.
    fn next_field(&mut self) -> Result<Option<(u64, Wire)>, Failure> {
        if self.pos >= self.end {
            return Ok(None);
        }
        let key = self.varint()?;
        let field = key >> 3;
        if field == 0 || field > Self::MAX_FIELD {
            return Err(Failure::MalformedKpl("invalid field number"));
        }
        let value = match key & 7 {
            0 => Wire::Varint(self.varint()?),
            1 => {
                self.skip(8)?;
                Wire::Fixed
            }
            2 => {
                let len = self.varint()?;
                let len = usize::try_from(len).map_err(|_| Failure::MalformedKpl("field overruns its message"))?;
                Wire::Len(self.skip(len)?)
            }
            5 => {
                self.skip(4)?;
                Wire::Fixed
            }
            // 3 and 4 are deprecated groups, which the KPL never writes; 6 and 7 do not exist.
            _ => return Err(Failure::MalformedKpl("unsupported wire type")),
        };
        Ok(Some((field, value)))
    }
}

// ---------------------------------------------------------------------------------------------------------------
// CloudWatch Logs message extraction
// ---------------------------------------------------------------------------------------------------------------

/// `DataMessageExtraction` on a decompressed CloudWatch Logs subscription envelope (reference §11.3):
/// `DATA_MESSAGE` → each `logEvents[].message` followed by LF, one record each, in order (no events → no records);
/// `CONTROL_MESSAGE` → one empty record (the reference observes "empty records"; we emit exactly one per envelope
/// rather than dropping it, so the record count matches the service). Any other input (not JSON, not an object,
/// missing or unknown `messageType`, an event without a string `message`, trailing data) fails as
/// `decompression-failed`.
///
/// The envelope is parsed with a streaming visitor that copies each message (escapes resolved) straight into one
/// buffer, so the record costs three allocations however many events it holds.
fn extract_messages(record: &Record, out: &mut Vec<Record>) -> Result<(), Failure> {
    let json = &record.data[..];
    // Messages plus their LFs are never longer than the JSON holding them (`""` is two bytes, LF one).
    let mut messages = Messages { buf: Vec::with_capacity(json.len()), ends: Vec::new() };
    let mut de = serde_json::Deserializer::from_slice(json);
    let kind = EnvelopeSeed(&mut messages)
        .deserialize(&mut de)
        .and_then(|kind| de.end().map(|()| kind))
        .map_err(|e| Failure::BadEnvelope(e.to_string()))?;
    match kind {
        MessageType::Control => out.push(record.derive(Bytes::new())),
        MessageType::Data => {
            let Messages { buf, ends } = messages;
            let buf = Bytes::from(buf);
            let mut start = 0;
            for end in ends {
                out.push(record.derive(buf.slice(start..end)));
                start = end;
            }
        }
    }
    Ok(())
}

/// Extracted messages, each followed by LF, back to back; `ends[i]` is where message `i` (with its LF) ends.
struct Messages {
    buf: Vec<u8>,
    ends: Vec<usize>,
}

#[derive(Deserialize)]
#[serde(field_identifier)]
enum EnvelopeField {
    #[serde(rename = "messageType")]
    MessageType,
    #[serde(rename = "logEvents")]
    LogEvents,
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
#[serde(field_identifier)]
enum EventField {
    #[serde(rename = "message")]
    Message,
    #[serde(other)]
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
enum MessageType {
    #[serde(rename = "DATA_MESSAGE")]
    Data,
    #[serde(rename = "CONTROL_MESSAGE")]
    Control,
}

/// The envelope object; yields its `messageType` and writes `logEvents` messages into the sink.
struct EnvelopeSeed<'m>(&'m mut Messages);

impl<'de> DeserializeSeed<'de> for EnvelopeSeed<'_> {
    type Value = MessageType;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<MessageType, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for EnvelopeSeed<'_> {
    type Value = MessageType;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a CloudWatch Logs subscription envelope")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<MessageType, A::Error> {
        let EnvelopeSeed(messages) = self;
        let mut kind = None;
        let mut seen_events = false;
        while let Some(field) = map.next_key()? {
            match field {
                EnvelopeField::MessageType => {
                    if kind.is_some() {
                        return Err(de::Error::duplicate_field("messageType"));
                    }
                    kind = Some(map.next_value()?);
                }
                EnvelopeField::LogEvents => {
                    if seen_events {
                        return Err(de::Error::duplicate_field("logEvents"));
                    }
                    seen_events = true;
                    map.next_value_seed(EventsSeed(&mut *messages))?;
                }
                EnvelopeField::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        kind.ok_or_else(|| de::Error::missing_field("messageType"))
    }
}

/// The `logEvents` array.
struct EventsSeed<'m>(&'m mut Messages);

impl<'de> DeserializeSeed<'de> for EventsSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for EventsSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of log events")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let EventsSeed(messages) = self;
        while seq.next_element_seed(EventSeed(&mut *messages))?.is_some() {}
        Ok(())
    }
}

/// One `logEvents` element: `{"id","timestamp","message"}`; only `message` is used.
struct EventSeed<'m>(&'m mut Messages);

impl<'de> DeserializeSeed<'de> for EventSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for EventSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a log event object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let EventSeed(messages) = self;
        let mut seen = false;
        while let Some(field) = map.next_key()? {
            match field {
                EventField::Message => {
                    if seen {
                        return Err(de::Error::duplicate_field("message"));
                    }
                    seen = true;
                    map.next_value_seed(MessageSeed(&mut *messages))?;
                }
                EventField::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        if seen { Ok(()) } else { Err(de::Error::missing_field("message")) }
    }
}

/// A `message` string: appended to the sink with its LF.
struct MessageSeed<'m>(&'m mut Messages);

impl<'de> DeserializeSeed<'de> for MessageSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl Visitor<'_> for MessageSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a log message string")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        let MessageSeed(messages) = self;
        messages.buf.extend_from_slice(v.as_bytes());
        messages.buf.push(b'\n');
        messages.ends.push(messages.buf.len());
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Error output
// ---------------------------------------------------------------------------------------------------------------

/// The error-output JSON object (reference §10) for a record a built-in processor rejected, without a trailing
/// newline:
///
/// `{"attemptsMade":N,"arrivalTimestamp":MS,"errorCode":"..","errorMessage":"..","attemptEndingTimestamp":MS,"rawData":"<base64>"}`
///
/// `rawData` is the base64 of [`Record::raw`], the bytes as ingested. Decompression failures are observed with
/// `attemptsMade` 1; the caller supplies attempts and the ending time.
pub fn error_record_json(failure: &Failure, record: &Record, attempts: u32, ending_ms: i64) -> String {
    let mut line = String::with_capacity(192 + record.raw.len().div_ceil(3) * 4);
    write_error_record_json(&mut line, failure, record, attempts, ending_ms);
    line
}

/// [`error_record_json`] appended to `out`, for callers that reuse a buffer.
pub fn write_error_record_json(out: &mut String, failure: &Failure, record: &Record, attempts: u32, ending_ms: i64) {
    // Writing to a `String` cannot fail.
    let _ = write!(out, "{{\"attemptsMade\":{attempts},\"arrivalTimestamp\":{},\"errorCode\":", record.arrival_ms);
    push_json_string(out, failure.error_code());
    out.push_str(",\"errorMessage\":");
    push_json_string(out, &failure.error_message());
    let _ = write!(out, ",\"attemptEndingTimestamp\":{ending_ms},\"rawData\":\"");
    STANDARD.encode_string(&record.raw, out);
    out.push_str("\"}");
}

/// Appends `s` as a JSON string literal.
fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use spillway_format::compression::Encoder;

    use super::*;

    fn rec(data: &[u8]) -> Record {
        Record::new(Bytes::copy_from_slice(data), 1_700_000_000_000, 7, 3)
    }

    fn processor(kind: &str, params: &[(&str, &str)]) -> BuiltinProcessor {
        BuiltinProcessor::from_parameters(kind, params).expect("valid processor")
    }

    fn json() -> BuiltinProcessor {
        processor("RecordDeAggregation", &[("SubRecordType", "JSON")])
    }

    fn delimited(base64: &str) -> BuiltinProcessor {
        processor("RecordDeAggregation", &[("SubRecordType", "DELIMITED"), ("Delimiter", base64)])
    }

    /// Runs `p` on one record; returns the outputs' bytes and the failures.
    fn run(p: &BuiltinProcessor, data: &[u8]) -> (Vec<Vec<u8>>, Vec<Failed>) {
        let (mut out, mut failed) = (Vec::new(), Vec::new());
        p.process([rec(data)], &mut out, &mut failed);
        check_invariants(data, &out, &failed);
        (out.iter().map(|r| r.data.to_vec()).collect(), failed)
    }

    fn run_kpl(data: &[u8]) -> (Vec<Vec<u8>>, Vec<Failed>) {
        let (mut out, mut failed) = (Vec::new(), Vec::new());
        deaggregate_kpl([rec(data)], &mut out, &mut failed);
        check_invariants(data, &out, &failed);
        (out.iter().map(|r| r.data.to_vec()).collect(), failed)
    }

    /// All-or-nothing; raw bytes and origin untouched; a failed record is handed back unchanged.
    fn check_invariants(input: &[u8], out: &[Record], failed: &[Failed]) {
        assert!(out.is_empty() || failed.is_empty(), "a record both failed and produced output");
        assert!(failed.len() <= 1);
        for r in out.iter().chain(failed.iter().map(|f| &f.record)) {
            assert_eq!(&r.raw[..], input);
            assert_eq!((r.arrival_ms, r.lsn, r.index), (1_700_000_000_000, 7, 3));
        }
        for f in failed {
            assert_eq!(&f.record.data[..], input);
        }
    }

    fn ok(outputs: (Vec<Vec<u8>>, Vec<Failed>)) -> Vec<Vec<u8>> {
        assert!(outputs.1.is_empty(), "unexpected failure: {:?}", outputs.1);
        outputs.0
    }

    fn failure(outputs: (Vec<Vec<u8>>, Vec<Failed>)) -> Failure {
        assert!(outputs.0.is_empty(), "unexpected output: {:?}", outputs.0);
        assert_eq!(outputs.1.len(), 1, "expected exactly one failure");
        outputs.1.into_iter().next().map(|f| f.failure).expect("one failure")
    }

    fn strs(v: &[&str]) -> Vec<Vec<u8>> {
        v.iter().map(|s| s.as_bytes().to_vec()).collect()
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = Encoder::new(Compression::Gzip, 6, "", 0);
        enc.write(data).expect("gzip write");
        enc.finish().expect("gzip finish")
    }

    // ---- protobuf encoding for hand-built KPL records ----

    fn varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    fn field_varint(out: &mut Vec<u8>, field: u64, v: u64) {
        varint(out, field << 3);
        varint(out, v);
    }

    fn field_bytes(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
        varint(out, field << 3 | 2);
        varint(out, bytes.len() as u64);
        out.extend_from_slice(bytes);
    }

    fn kpl_frame(message: &[u8]) -> Vec<u8> {
        let mut out = KPL_MAGIC.to_vec();
        out.extend_from_slice(message);
        out.extend_from_slice(&Md5::digest(message));
        out
    }

    /// An AggregatedRecord with two partition keys, one explicit hash key and three user records (one with a tag,
    /// one with an unknown fixed32 field), the key tables placed after the first record.
    fn kpl_message() -> Vec<u8> {
        let mut r1 = Vec::new();
        field_varint(&mut r1, 1, 0);
        field_bytes(&mut r1, 3, b"first");
        let mut r2 = Vec::new();
        field_varint(&mut r2, 1, 1);
        field_varint(&mut r2, 2, 0);
        field_bytes(&mut r2, 3, b"{\"second\":2}");
        let mut tag = Vec::new();
        field_bytes(&mut tag, 1, b"k");
        field_bytes(&mut tag, 2, b"v");
        field_bytes(&mut r2, 4, &tag);
        let mut r3 = Vec::new();
        field_bytes(&mut r3, 3, b"");
        field_varint(&mut r3, 1, 0);
        varint(&mut r3, 9 << 3 | 5);
        r3.extend_from_slice(&[1, 2, 3, 4]);

        let mut m = Vec::new();
        field_bytes(&mut m, 3, &r1);
        field_bytes(&mut m, 1, b"pk-a");
        field_bytes(&mut m, 1, b"pk-b");
        field_bytes(&mut m, 2, b"170141183460469231731687303715884105728");
        field_bytes(&mut m, 3, &r2);
        field_bytes(&mut m, 3, &r3);
        m
    }

    // ---- AppendDelimiterToRecord ----

    #[test]
    fn append_delimiter_adds_lf_after_every_record() {
        let p = processor("AppendDelimiterToRecord", &[] as &[(&str, &str)]);
        let (mut out, mut failed) = (Vec::new(), Vec::new());
        p.process([rec(b"a"), rec(b""), rec(b"ccc\n")], &mut out, &mut failed);
        assert!(failed.is_empty());
        let data: Vec<_> = out.iter().map(|r| r.data.to_vec()).collect();
        assert_eq!(data, strs(&["a\n", "\n", "ccc\n\n"]));
        let raw: Vec<_> = out.iter().map(|r| r.raw.to_vec()).collect();
        assert_eq!(raw, strs(&["a", "", "ccc\n"]));
        // A Delimiter parameter is accepted and ignored: the delimiter is always LF.
        let p = processor("AppendDelimiterToRecord", &[("Delimiter", "IyMjIw==")]);
        assert_eq!(ok(run(&p, b"x")), strs(&["x\n"]));
    }

    // ---- RecordDeAggregation JSON ----

    #[test]
    fn json_concatenated_objects() {
        assert_eq!(ok(run(&json(), br#"{"a":1}{"a":2}{}"#)), strs(&[r#"{"a":1}"#, r#"{"a":2}"#, "{}"]));
    }

    #[test]
    fn json_newline_separated_objects() {
        assert_eq!(ok(run(&json(), b"{\"a\":1}\n{\"a\":2}\n")), strs(&[r#"{"a":1}"#, r#"{"a":2}"#]));
    }

    #[test]
    fn json_braces_inside_strings_and_nesting() {
        let input = br#"{"a":"}{"}{"b":"\"{","c":{"d":[{"e":"]"}]}}"#;
        assert_eq!(ok(run(&json(), input)), strs(&[r#"{"a":"}{"}"#, r#"{"b":"\"{","c":{"d":[{"e":"]"}]}}"#]));
    }

    #[test]
    fn json_whitespace_around_and_between_objects() {
        let input = b" \t\r\n{\"a\" : 1 }  \r\n\t {\"b\":[1, 2]}\n\n ";
        assert_eq!(ok(run(&json(), input)), strs(&["{\"a\" : 1 }", "{\"b\":[1, 2]}"]));
    }

    #[test]
    fn json_invalid_fails_whole_record() {
        for input in [
            &br#"{"a":1}{"a":}"#[..],
            br#"{"a":1}{"a":1"#,
            br#"{"a":1,}"#,
            br#"{"a":1}x"#,
            br#"{"a":1} 2"#,
            br#"[{"a":1},{"a":2}]"#,
            br#""str""#,
            b"",
            b" \n ",
            b"{\"a\":\"\x01\"}",
        ] {
            let f = failure(run(&json(), input));
            assert!(matches!(f, Failure::MalformedJson { .. }), "{input:?} gave {f:?}");
            assert_eq!(f.output_type(), PROCESSING_FAILED);
        }
    }

    #[test]
    fn json_at_most_500_objects() {
        let input = r#"{"i":0}"#.repeat(MAX_SUB_RECORDS);
        assert_eq!(ok(run(&json(), input.as_bytes())).len(), MAX_SUB_RECORDS);
        let input = format!("{input}\n{{}}");
        assert_eq!(failure(run(&json(), input.as_bytes())), Failure::TooManySubRecords);
    }

    // ---- RecordDeAggregation DELIMITED ----

    #[test]
    fn delimited_splits_on_hashes() {
        let p = delimited("IyMjIw==");
        assert_eq!(ok(run(&p, b"a####bb####c")), strs(&["a", "bb", "c"]));
        // Occurrences do not overlap: "#####" is one delimiter and a "#".
        assert_eq!(ok(run(&p, b"a#####b")), strs(&["a", "#b"]));
        assert_eq!(ok(run(&p, b"a###b")), strs(&["a###b"]));
    }

    #[test]
    fn delimited_keeps_leading_and_inner_empty_pieces() {
        let p = delimited("IyMjIw==");
        assert_eq!(ok(run(&p, b"####a########b")), strs(&["", "a", "", "b"]));
    }

    #[test]
    fn delimited_drops_trailing_empty_pieces() {
        let p = delimited("IyMjIw==");
        assert_eq!(ok(run(&p, b"a####b####")), strs(&["a", "b"]));
        assert_eq!(ok(run(&p, b"a############")), strs(&["a"]));
        assert_eq!(ok(run(&p, b"########")), Vec::<Vec<u8>>::new());
        // Without the delimiter the record passes through, even when empty.
        assert_eq!(ok(run(&p, b"abc")), strs(&["abc"]));
        assert_eq!(ok(run(&p, b"")), strs(&[""]));
    }

    #[test]
    fn delimited_at_most_500_pieces() {
        let p = delimited("Cg=="); // "\n", unpadded forms are accepted too
        let input = "x\n".repeat(MAX_SUB_RECORDS);
        assert_eq!(ok(run(&p, input.as_bytes())).len(), MAX_SUB_RECORDS);
        let input = format!("{input}x");
        assert_eq!(failure(run(&p, input.as_bytes())), Failure::TooManySubRecords);
        // Trailing empties do not count; inner ones do.
        let input = format!("{}\n\n\n", "x\n".repeat(MAX_SUB_RECORDS - 1) + "x");
        assert_eq!(ok(run(&p, input.as_bytes())).len(), MAX_SUB_RECORDS);
        let input = format!("{}\nx", "\n".repeat(MAX_SUB_RECORDS));
        assert_eq!(failure(run(&p, input.as_bytes())), Failure::TooManySubRecords);
    }

    #[test]
    fn delimiter_search_matches_naive_search() {
        let naive = |hay: &[u8], needle: &[u8], from: usize| {
            (from..hay.len()).find(|&i| hay.get(i..).is_some_and(|rest| rest.starts_with(needle)))
        };
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for _ in 0..2000 {
            let needle: Vec<u8> = (0..1 + rng.below(5)).map(|_| b'a' + rng.below(2) as u8).collect();
            let hay: Vec<u8> = (0..rng.below(40)).map(|_| b'a' + rng.below(2) as u8).collect();
            let d = Delimiter::new(needle.clone()).expect("non-empty");
            for from in 0..=hay.len() + 1 {
                assert_eq!(d.find(&hay, from), naive(&hay, &needle, from), "{hay:?} {needle:?} {from}");
            }
        }
    }

    // ---- KPL ----

    #[test]
    fn kpl_deaggregates_hand_built_record() {
        let input = kpl_frame(&kpl_message());
        assert_eq!(ok(run_kpl(&input)), strs(&["first", "{\"second\":2}", ""]));
    }

    #[test]
    fn kpl_without_magic_passes_through() {
        assert_eq!(ok(run_kpl(b"plain record")), strs(&["plain record"]));
        assert_eq!(ok(run_kpl(&KPL_MAGIC[..3])), vec![KPL_MAGIC[..3].to_vec()]);
        assert_eq!(ok(run_kpl(b"")), strs(&[""]));
    }

    #[test]
    fn kpl_bad_md5_fails() {
        let mut input = kpl_frame(&kpl_message());
        let last = input.len() - 1;
        input[last] ^= 1;
        let f = failure(run_kpl(&input));
        assert_eq!(f, Failure::KplChecksum);
        assert_eq!(f.output_type(), PROCESSING_FAILED);
        // A flipped message byte fails the same way.
        let mut input = kpl_frame(&kpl_message());
        input[6] ^= 0x40;
        assert_eq!(failure(run_kpl(&input)), Failure::KplChecksum);
        // Magic with less than a digest after it.
        let mut short = KPL_MAGIC.to_vec();
        short.extend_from_slice(&[0; 15]);
        assert!(matches!(failure(run_kpl(&short)), Failure::MalformedKpl(_)));
    }

    #[test]
    fn kpl_truncated_protobuf_fails_without_panicking() {
        let message = kpl_message();
        // Cutting inside the last record (valid MD5 over the cut message) is malformed, not a panic.
        let f = failure(run_kpl(&kpl_frame(&message[..message.len() - 1])));
        assert!(matches!(f, Failure::MalformedKpl(_)), "{f:?}");
        for cut in 0..message.len() {
            let (out, failed) = run_kpl(&kpl_frame(&message[..cut]));
            assert!(out.len() < 3 || !failed.is_empty(), "cut {cut} kept every record");
        }
    }

    #[test]
    fn kpl_malformed_messages_fail() {
        let mut bad_index = Vec::new();
        field_bytes(&mut bad_index, 1, b"pk");
        let mut r = Vec::new();
        field_varint(&mut r, 1, 1);
        field_bytes(&mut r, 3, b"x");
        field_bytes(&mut bad_index, 3, &r);

        let mut bad_ehk = Vec::new();
        field_bytes(&mut bad_ehk, 1, b"pk");
        let mut r = Vec::new();
        field_varint(&mut r, 1, 0);
        field_varint(&mut r, 2, 0);
        field_bytes(&mut r, 3, b"x");
        field_bytes(&mut bad_ehk, 3, &r);

        let mut no_data = Vec::new();
        field_bytes(&mut no_data, 1, b"pk");
        let mut r = Vec::new();
        field_varint(&mut r, 1, 0);
        field_bytes(&mut no_data, 3, &r);

        let mut no_key = Vec::new();
        field_bytes(&mut no_key, 1, b"pk");
        let mut r = Vec::new();
        field_bytes(&mut r, 3, b"x");
        field_bytes(&mut no_key, 3, &r);

        let overflow = [0x08, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x02];
        let huge_len = [0x1A, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01];
        let group = [0x0B];
        let field_zero = [0x02, 0x00];

        for message in [bad_index, bad_ehk, no_data, no_key] {
            assert!(matches!(failure(run_kpl(&kpl_frame(&message))), Failure::MalformedKpl(_)));
        }
        for message in [&overflow[..], &huge_len, &group, &field_zero] {
            assert!(matches!(failure(run_kpl(&kpl_frame(message))), Failure::MalformedKpl(_)));
        }
        // An empty aggregate is well formed and holds no records.
        assert_eq!(ok(run_kpl(&kpl_frame(&[]))), Vec::<Vec<u8>>::new());
    }

    // ---- Decompression and CloudWatch Logs ----

    const ENVELOPE: &str = r#"{"messageType":"DATA_MESSAGE","owner":"123456789012","logGroup":"/aws/lambda/f",
        "logStream":"2024/01/01/[$LATEST]abc","subscriptionFilters":["all"],
        "logEvents":[{"id":"3795","timestamp":1704067200000,"message":"m1"},
                     {"id":"3796","timestamp":1704067200001,"message":"m2"},
                     {"id":"3797","timestamp":1704067200002,"message":"m3"}]}"#;

    fn decompress_and_extract(compressed: &[u8]) -> (Vec<Vec<u8>>, Vec<Failed>) {
        let extract = processor("CloudWatchLogProcessing", &[("DataMessageExtraction", "true")]);
        let (mut mid, mut out, mut failed) = (Vec::new(), Vec::new(), Vec::new());
        BuiltinProcessor::Decompression.process([rec(compressed)], &mut mid, &mut failed);
        extract.process(mid, &mut out, &mut failed);
        check_invariants(compressed, &out, &[]);
        for f in &failed {
            assert_eq!(&f.record.raw[..], compressed);
        }
        (out.iter().map(|r| r.data.to_vec()).collect(), failed)
    }

    #[test]
    fn cloudwatch_data_message_yields_one_line_per_event() {
        let compressed = gzip(ENVELOPE.as_bytes());
        assert_eq!(ok(decompress_and_extract(&compressed)), strs(&["m1\n", "m2\n", "m3\n"]));
        // Escapes are resolved; a message's own newline stays.
        let escaped = r#"{"logEvents":[{"message":"a \"q\" \u00e9\nb"},{"message":""}],"messageType":"DATA_MESSAGE"}"#;
        assert_eq!(ok(decompress_and_extract(&gzip(escaped.as_bytes()))), strs(&["a \"q\" é\nb\n", "\n"]));
    }

    #[test]
    fn cloudwatch_without_extraction_delivers_decompressed_envelope() {
        let compressed = gzip(ENVELOPE.as_bytes());
        assert_eq!(ok(run(&BuiltinProcessor::Decompression, &compressed)), vec![ENVELOPE.as_bytes().to_vec()]);
        let off = processor("CloudWatchLogProcessing", &[("DataMessageExtraction", "false")]);
        assert_eq!(ok(run(&off, ENVELOPE.as_bytes())), vec![ENVELOPE.as_bytes().to_vec()]);
    }

    #[test]
    fn cloudwatch_control_message_yields_one_empty_record() {
        let control = r#"{"messageType":"CONTROL_MESSAGE","owner":"CloudwatchLogs","logGroup":"","logStream":"",
            "subscriptionFilters":[],"logEvents":[{"id":"","timestamp":1,
            "message":"CWL CONTROL MESSAGE: Checking health of destination Firehose."}]}"#;
        assert_eq!(ok(decompress_and_extract(&gzip(control.as_bytes()))), strs(&[""]));
    }

    #[test]
    fn non_gzip_input_is_decompression_failed() {
        let f = failure(run(&BuiltinProcessor::Decompression, ENVELOPE.as_bytes()));
        assert_eq!(f, Failure::NotGzip);
        assert_eq!(f.output_type(), DECOMPRESSION_FAILED);
        assert_eq!((f.error_code(), &*f.error_message()), ("Decompression failed.", "Decompression failed."));
        let mut corrupt = gzip(ENVELOPE.as_bytes());
        corrupt.truncate(corrupt.len() / 2);
        assert!(matches!(failure(run(&BuiltinProcessor::Decompression, &corrupt)), Failure::CorruptGzip(_)));
    }

    #[test]
    fn bad_envelope_after_gunzip_is_decompression_failed() {
        for json in [
            "not json",
            "[]",
            r#"{"logEvents":[]}"#,
            r#"{"messageType":"OTHER","logEvents":[]}"#,
            r#"{"messageType":"DATA_MESSAGE","logEvents":[{"id":"1"}]}"#,
            r#"{"messageType":"DATA_MESSAGE","logEvents":[{"message":1}]}"#,
            r#"{"messageType":"DATA_MESSAGE","logEvents":[]} {}"#,
        ] {
            let (out, failed) = decompress_and_extract(&gzip(json.as_bytes()));
            assert!(out.is_empty(), "{json}");
            assert_eq!(failed.len(), 1, "{json}");
            assert!(matches!(failed[0].failure, Failure::BadEnvelope(_)), "{json}");
            assert_eq!(failed[0].failure.output_type(), DECOMPRESSION_FAILED);
        }
    }

    // ---- error output ----

    #[test]
    fn error_record_json_has_reference_fields() {
        let original = gzip(b"not an envelope");
        let record = Record::new(Bytes::from(original.clone()), 1_741_088_912_364, 1, 0);
        let line = error_record_json(&Failure::NotGzip, &record, 1, 1_741_089_007_666);
        assert!(!line.ends_with('\n'));
        let keys =
            ["attemptsMade", "arrivalTimestamp", "errorCode", "errorMessage", "attemptEndingTimestamp", "rawData"];
        let positions: Vec<_> = keys.iter().map(|k| line.find(&format!("\"{k}\":")).expect("key present")).collect();
        assert!(positions.is_sorted(), "fields out of order: {line}");
        let v: serde_json::Value = serde_json::from_str(&line).expect("valid JSON");
        assert_eq!(v.as_object().expect("object").len(), keys.len());
        assert_eq!(v["attemptsMade"], 1);
        assert_eq!(v["arrivalTimestamp"], 1_741_088_912_364i64);
        assert_eq!(v["attemptEndingTimestamp"], 1_741_089_007_666i64);
        assert_eq!(v["errorCode"], "Decompression failed.");
        assert_eq!(v["errorMessage"], "Decompression failed.");
        let raw = STANDARD.decode(v["rawData"].as_str().expect("string")).expect("base64");
        assert_eq!(raw, original);

        // rawData is the original bytes even after the record was transformed; messages are escaped.
        let mut derived = record.derive(Bytes::from_static(b"changed"));
        derived.arrival_ms = 5;
        let failure = Failure::MalformedJson { offset: 3, reason: "bad \"x\"\n\u{1}".to_owned() };
        let v: serde_json::Value =
            serde_json::from_str(&error_record_json(&failure, &derived, 4, 6)).expect("valid JSON");
        assert_eq!(v["errorCode"], "RecordDeAggregation.MalformedJson");
        assert_eq!(v["errorMessage"], "The record is not a sequence of JSON objects (at byte 3: bad \"x\"\n\u{1}).");
        assert_eq!(v["attemptsMade"], 4);
        assert_eq!(STANDARD.decode(v["rawData"].as_str().expect("string")).expect("base64"), original);
    }

    // ---- configuration ----

    #[test]
    fn from_parameters_validates() {
        assert_eq!(processor("Decompression", &[] as &[(&str, &str)]), BuiltinProcessor::Decompression);
        assert_eq!(processor("Decompression", &[("CompressionFormat", "GZIP")]), BuiltinProcessor::Decompression);
        assert_eq!(
            processor("CloudWatchLogProcessing", &[("DataMessageExtraction", "TRUE")]),
            BuiltinProcessor::CloudWatchLogProcessing { data_message_extraction: true }
        );
        match processor("RecordDeAggregation", &[("SubRecordType", "DELIMITED"), ("Delimiter", "IyMjIw==")]) {
            BuiltinProcessor::RecordDeAggregation(SubRecordType::Delimited(d)) => assert_eq!(d.as_bytes(), b"####"),
            other => panic!("{other:?}"),
        }
        let owned = vec![("SubRecordType".to_owned(), "JSON".to_owned())];
        assert!(BuiltinProcessor::from_parameters("RecordDeAggregation", &owned).is_ok());

        for (kind, params) in [
            ("Decompression", &[("CompressionFormat", "ZIP")][..]),
            ("Decompression", &[("SubRecordType", "JSON")]),
            ("CloudWatchLogProcessing", &[("DataMessageExtraction", "yes")]),
            ("RecordDeAggregation", &[]),
            ("RecordDeAggregation", &[("SubRecordType", "json")]),
            ("RecordDeAggregation", &[("SubRecordType", "DELIMITED")]),
            ("RecordDeAggregation", &[("SubRecordType", "DELIMITED"), ("Delimiter", "")]),
            ("RecordDeAggregation", &[("SubRecordType", "DELIMITED"), ("Delimiter", "###")]),
            ("RecordDeAggregation", &[("SubRecordType", "JSON"), ("SubRecordType", "JSON")]),
            ("Lambda", &[]),
            ("MetadataExtraction", &[]),
            ("Nope", &[]),
        ] {
            assert!(BuiltinProcessor::from_parameters(kind, params).is_err(), "{kind} {params:?}");
        }
    }

    #[test]
    fn stages_sort_into_processing_order() {
        let types = ["AppendDelimiterToRecord", "Lambda", "RecordDeAggregation", "MetadataExtraction"];
        let mut stages: Vec<_> = types.iter().chain(&["CloudWatchLogProcessing", "Decompression"]).collect();
        stages.sort_by_key(|t| Stage::of_type(t));
        assert_eq!(
            stages,
            [
                &"Decompression",
                &"CloudWatchLogProcessing",
                &"RecordDeAggregation",
                &"Lambda",
                &"MetadataExtraction",
                &"AppendDelimiterToRecord"
            ]
        );
        assert_eq!(json().stage(), Stage::RecordDeAggregation);
        assert_eq!(BuiltinProcessor::Decompression.stage(), Stage::Decompression);
        assert_eq!(Stage::of_type("Other"), None);
    }

    #[test]
    fn splitting_slices_the_input_without_copying() {
        let kpl = kpl_frame(&kpl_message());
        type Step<'a> = &'a dyn Fn(Record, &mut Vec<Record>, &mut Vec<Failed>);
        let cases: [(Step<'_>, &[u8]); 3] = [
            (&|r, out, failed| json().process([r], out, failed), br#"{"a":1} {"b":2}"#),
            (&|r, out, failed| delimited("IyMjIw==").process([r], out, failed), b"ab####cd####"),
            (&|r, out, failed| deaggregate_kpl([r], out, failed), &kpl),
        ];
        for (step, input) in cases {
            let record = rec(input);
            let range = record.data.as_ptr_range();
            let (mut out, mut failed) = (Vec::new(), Vec::new());
            step(record, &mut out, &mut failed);
            assert!(failed.is_empty() && out.len() >= 2);
            for r in out.iter().filter(|r| !r.data.is_empty()) {
                assert!(range.contains(&r.data.as_ptr()), "sub-record was copied");
            }
        }
    }

    #[test]
    fn deep_nesting_does_not_overflow_the_stack() {
        let deep = format!("{}1{}", "{\"a\":[".repeat(100_000), "]}".repeat(100_000));
        assert_eq!(ok(run(&json(), deep.as_bytes())).len(), 1);
        let unclosed = "{\"a\":[".repeat(100_000);
        assert!(matches!(failure(run(&json(), unclosed.as_bytes())), Failure::MalformedJson { .. }));
        let envelope = format!(r#"{{"messageType":"DATA_MESSAGE","x":{deep},"logEvents":[{{"message":{deep}}}]}}"#);
        let (out, failed) = decompress_and_extract(&gzip(envelope.as_bytes()));
        assert!(out.is_empty() && matches!(failed[..], [Failed { failure: Failure::BadEnvelope(_), .. }]));
    }

    // ---- robustness ----

    /// xorshift64*: deterministic, so a failure reproduces (proptest is not a dependency of this crate).
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }

        fn mutate(&mut self, mut data: Vec<u8>) -> Vec<u8> {
            for _ in 0..1 + self.below(4) {
                match self.below(4) {
                    0 if !data.is_empty() => {
                        let i = self.below(data.len());
                        data[i] ^= 1 << self.below(8);
                    }
                    1 if !data.is_empty() => data.truncate(self.below(data.len())),
                    2 => {
                        let i = self.below(data.len() + 1);
                        data.insert(i, self.next() as u8);
                    }
                    _ if !data.is_empty() => {
                        let i = self.below(data.len());
                        data[i] = [b'{', b'}', b'"', b'\\', b'#', 0x80, 0xFF, 0][self.below(8)];
                    }
                    _ => {}
                }
            }
            data
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_any_processor() {
        let processors = [
            BuiltinProcessor::Decompression,
            processor("CloudWatchLogProcessing", &[("DataMessageExtraction", "true")]),
            processor("CloudWatchLogProcessing", &[("DataMessageExtraction", "false")]),
            json(),
            delimited("IyMjIw=="),
            delimited("Cg=="),
            processor("AppendDelimiterToRecord", &[] as &[(&str, &str)]),
        ];
        let message = kpl_message();
        let mut rng = Rng(0x0123_4567_89AB_CDEF);
        for i in 0..3000 {
            let input = match i % 6 {
                0 => (0..rng.below(300)).map(|_| rng.next() as u8).collect(),
                1 if i % 12 == 1 => rng.mutate(br#"{"a":"}{"} {"b":[1,{"c":null}]}####{"d":"\u00e9"}"#.to_vec()),
                1 => rng.mutate(b"{\"a\":\"}{\\\"\"}\n{\"b\":[1,{\"c\":null}],\"d\":-1.5e3}".to_vec()),
                2 => rng.mutate(kpl_frame(&message)),
                // Mutated protobuf under a valid MD5 reaches the protobuf reader.
                3 => kpl_frame(&rng.mutate(message.clone())),
                4 => rng.mutate(gzip(ENVELOPE.as_bytes())),
                _ => gzip(&rng.mutate(ENVELOPE.as_bytes().to_vec())),
            };
            for p in &processors {
                run(p, &input);
            }
            run_kpl(&input);
            decompress_and_extract(&input);
            let line = error_record_json(&Failure::MalformedKpl("x"), &rec(&input), 1, 2);
            assert!(serde_json::from_str::<serde_json::Value>(&line).is_ok());
        }
    }
}
