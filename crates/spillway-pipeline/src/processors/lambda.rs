//! Lambda-compatible data transformation (reference §11.2, §10; DESIGN §2): the invocation
//! contract (events, response validation, retries) and a local runner for handlers.
//!
//! Owns:
//! - the event JSON Firehose sends a transformation function, split so each event is at most
//!   [`MAX_PAYLOAD_BYTES`] (Lambda's 6 MB synchronous payload limit), and the validation of the
//!   function's response into one [`Outcome`] per input record;
//! - [`LambdaConfig`]: the `Lambda` processor's parameters, checked once;
//! - [`invoke_batch`]: invocation with `NumberOfRetries` retries, each attempt with a fresh
//!   `invocationId` and the same record ids and bytes;
//! - the [`FunctionBackend`] port (`LambdaArn` → something that runs the function), with two
//!   process backends: [`PythonHandler`] (a Python `handler(event, context)` run unchanged through
//!   the embedded `lambda_bootstrap.py`) and [`CommandHandler`] (any program speaking the protocol
//!   below). The Lambda Invoke API over HTTP is another implementation of the same trait.
//!
//! Record ids: opaque strings unique within an invocation. spillway uses the shape of the real
//! service's DirectPut ids, 62 decimal digits: a 56-digit batch number (a random 64-bit number,
//! zero-padded, so ids practically never repeat across batches) followed by the record's 6-digit
//! index in the batch. For a batch of a million records or more the index carries into the batch
//! number; ids stay unique within the batch. Retries resend the same ids.
//!
//! Outcomes (the caller writes `Failed` records to the `processing-failed` error output in the §10
//! shape: `attemptsMade`, `arrivalTimestamp`, `errorCode`, `errorMessage`,
//! `attemptEndingTimestamp`, `rawData` of the original bytes, and the key `lambdaARN`):
//! - `Ok` → the returned bytes replace the record, with `metadata.partitionKeys` (string map;
//!   numbers and booleans are taken as their text, as Lambda's Java mapping does) and
//!   `metadata.otfMetadata` (kept as given) for dynamic partitioning and Iceberg routing;
//! - `Dropped` → discarded;
//! - `ProcessingFailed` → `Failed` with `Lambda.ProcessingFailedStatus` (code observed in
//!   Firehose-compatible emulators, unconfirmed for AWS), not retried;
//! - a requested record id absent from the response → `Failed` with `Lambda.MissingRecordId`,
//!   not retried; ids the function returns that were not sent are ignored;
//! - the whole event fails, and is retried, when: the invocation fails (exception, timeout, crash,
//!   protocol violation: `Lambda.FunctionError`), the response is over 6 MB or an `Ok` record's
//!   `data` is not base64 (`Lambda.FunctionError`), the response is not JSON, has no `records`
//!   array, an entry without a string `recordId`, a `result` other than the three values, an `Ok`
//!   record without `data` or a malformed `metadata` (`Lambda.JsonProcessingException`), or an id
//!   comes back twice (`Lambda.DuplicatedRecordId`). Checks run in that order: structure and
//!   `result` of every entry, then duplicates, then the requested records' `data` and `metadata`.
//!   After `NumberOfRetries + 1` attempts every record of the event is `Failed` with the last
//!   attempt's code and `attempts_made = NumberOfRetries + 1`;
//! - a single record too large to fit in one 6 MB event is `Failed` with `Lambda.FunctionError`
//!   and `attempts_made = 0` without any invocation (unreachable with Firehose's 1,000 KiB record
//!   limit; spillway's own choice of code).
//!
//! `errorMessage` is Firehose's fixed text for the code; the specifics (the function's exception,
//! the broken rule) are in `detail` and in the log, never in the message.
//!
//! Process protocol (JSON lines, one invocation at a time per process):
//! - request, spillway → stdin: `{"event": {...}, "deadline_ms": <epoch ms>}` + `\n`
//! - response, stdout → spillway: `{"ok": <the function's response>}` or
//!   `{"error": {"errorMessage": "...", "errorType": "...", "stackTrace": [...]}}` + `\n`
//! - anything else on stdout (a line that is not such an object, a line over 6 MB, EOF) is a
//!   protocol violation: the process is killed and the attempt fails; the next invocation starts a
//!   fresh process. stderr is forwarded line by line to the log (target `spillway::lambda`, fields
//!   `function` and `worker`). EOF on stdin asks the process to exit.
//!
//! Invariants of the process backends:
//! - a worker serves one invocation at a time; a pool of `workers` processes bounds the
//!   outstanding invocations of one function; workers start on demand and stay warm;
//! - an invocation that times out (default 300 s, Lambda's maximum for Firehose) or breaks the
//!   protocol kills its worker; an error line (the handler raised) keeps it, as Lambda keeps the
//!   sandbox. A worker found dead before use is replaced without spending an attempt;
//! - a worker whose invocation is abandoned (the caller's future dropped) is killed, never reused
//!   in an unknown state; dropping a backend kills its workers.

use base64::Engine;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use bytes::Bytes;
use parking_lot::Mutex;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command};
use tokio::sync::Semaphore;
use uuid::Uuid;

/// Lambda's limit on a synchronous invocation's request and response payloads (6 MB).
pub const MAX_PAYLOAD_BYTES: usize = 6 * 1024 * 1024;

/// Default per-invocation timeout of the process backends: Lambda's maximum for Firehose.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// Default pause before the first retry; doubled per retry up to [`MAX_RETRY_BACKOFF`].
pub const DEFAULT_RETRY_BACKOFF: Duration = Duration::from_millis(500);
/// Upper bound of the pause between two attempts.
pub const MAX_RETRY_BACKOFF: Duration = Duration::from_secs(10);

/// The Python runtime, run as `python -B -c <this> <file.py> <handler>`.
const BOOTSTRAP: &str = include_str!("lambda_bootstrap.py");

/// Room for the `{"ok": ...}` envelope around a response on a protocol line.
const ENVELOPE_SLACK: usize = 1024;
/// Longest stderr line logged as one event; longer lines are logged in pieces.
const STDERR_LINE_CAP: usize = 16 * 1024;

/// `data` as Firehose accepts it from a function: standard alphabet, padding optional.
const LENIENT_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

// ---------------------------------------------------------------------------------------------
// Error codes and outcomes

/// Firehose's `errorCode`s for Lambda processing (reference §11.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// Unhandled exception, timeout, crash, invalid base64 `data`, oversized response.
    FunctionError,
    /// The response is not JSON or does not follow the status model.
    JsonProcessingException,
    /// A record id sent to the function is missing from its response (per record).
    MissingRecordId,
    /// A record id comes back twice (whole event).
    DuplicatedRecordId,
    /// The function returned `ProcessingFailed` for the record (per record, not retried).
    ProcessingFailedStatus,
    /// Throttled / concurrency limit.
    InvokeLimitExceeded,
    /// Not allowed to invoke the function.
    InvokeAccessDenied,
    /// The processor's role cannot be assumed.
    AssumeRoleAccessDenied,
    /// The function does not exist (locally: its program cannot be started).
    ResourceNotFound,
}

impl ErrorCode {
    /// The `errorCode` value, e.g. `Lambda.FunctionError`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FunctionError => "Lambda.FunctionError",
            Self::JsonProcessingException => "Lambda.JsonProcessingException",
            Self::MissingRecordId => "Lambda.MissingRecordId",
            Self::DuplicatedRecordId => "Lambda.DuplicatedRecordId",
            Self::ProcessingFailedStatus => "Lambda.ProcessingFailedStatus",
            Self::InvokeLimitExceeded => "Lambda.InvokeLimitExceeded",
            Self::InvokeAccessDenied => "Lambda.InvokeAccessDenied",
            Self::AssumeRoleAccessDenied => "Lambda.AssumeRoleAccessDenied",
            Self::ResourceNotFound => "Lambda.ResourceNotFound",
        }
    }

    /// Firehose's fixed `errorMessage` for the code.
    pub fn message(self) -> &'static str {
        match self {
            Self::FunctionError => "The Lambda function was successfully invoked but it returned an error result.",
            Self::JsonProcessingException => {
                "There was an error parsing returned records from the Lambda function. Ensure that the returned \
                 records follow the status model required by Firehose."
            }
            Self::MissingRecordId => {
                "One or more record Ids were not returned. Ensure that the Lambda function returns all received \
                 record Ids."
            }
            Self::DuplicatedRecordId => {
                "Multiple records were returned with the same record Id. Ensure that the Lambda function returns \
                 unique record Ids for each record."
            }
            Self::ProcessingFailedStatus => "ProcessingFailed status set for record",
            Self::InvokeLimitExceeded => {
                "The Lambda concurrent execution limit is exceeded. Increase the concurrent execution limit."
            }
            Self::InvokeAccessDenied => {
                "Access was denied. Ensure that the access policy allows access to the Lambda function."
            }
            Self::AssumeRoleAccessDenied => {
                "Access was denied. Ensure that the trust policy for the provided IAM role allows Firehose to assume \
                 the role."
            }
            Self::ResourceNotFound => {
                "The specified function or alias does not exist. Ensure that the correct function or alias is \
                 specified."
            }
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What became of one input record.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Transformed: `data` replaces the record.
    Ok {
        data: Bytes,
        /// `metadata.partitionKeys` (empty when absent).
        partition_keys: BTreeMap<String, String>,
        /// `metadata.otfMetadata` as returned (destination database/table, operation).
        otf: Option<Map<String, Value>>,
    },
    /// Discarded on purpose by the function.
    Dropped,
    /// Goes to the `processing-failed` error output with the original bytes.
    Failed {
        code: ErrorCode,
        /// Firehose's `errorMessage` (fixed per code).
        message: String,
        /// What exactly went wrong, for logs and diagnostics.
        detail: String,
        /// `attemptsMade`: the attempt that settled the record (`NumberOfRetries + 1` when the
        /// retry budget ran out; 0 when the record could not be sent at all).
        attempts_made: u32,
    },
}

impl Outcome {
    fn failed(code: ErrorCode, detail: impl Into<String>, attempts_made: u32) -> Self {
        Self::Failed { code, message: code.message().to_owned(), detail: detail.into(), attempts_made }
    }
}

// ---------------------------------------------------------------------------------------------
// Processor configuration

/// A parsed `arn:<partition>:lambda:<region>:<account>:function:<name>[:<qualifier>]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionArn {
    pub region: String,
    pub account: String,
    pub name: String,
    pub qualifier: Option<String>,
}

impl FunctionArn {
    pub fn parse(arn: &str) -> Option<Self> {
        let parts: Vec<&str> = arn.split(':').collect();
        let (head, qualifier) = match parts.len() {
            7 => (&parts[..], None),
            8 => (&parts[..7], Some(parts[7])),
            _ => return None,
        };
        let name = head[6];
        let name_ok = !name.is_empty()
            && name.len() <= 64
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if head[0] != "arn" || head[1].is_empty() || head[2] != "lambda" || head[5] != "function" || !name_ok {
            return None;
        }
        if qualifier.is_some_and(str::is_empty) {
            return None;
        }
        Some(Self {
            region: head[3].to_owned(),
            account: head[4].to_owned(),
            name: name.to_owned(),
            qualifier: qualifier.map(str::to_owned),
        })
    }

    /// `context.function_version`: a numeric qualifier, else `$LATEST`.
    pub fn version(&self) -> &str {
        match &self.qualifier {
            Some(q) if !q.is_empty() && q.bytes().all(|b| b.is_ascii_digit()) => q,
            _ => "$LATEST",
        }
    }
}

/// A `Lambda` processor's parameters (reference §11.1), validated.
#[derive(Debug, Clone, PartialEq)]
pub struct LambdaConfig {
    /// `LambdaArn` as given (the key resolved to a backend, and `lambdaARN` in error records).
    pub lambda_arn: String,
    pub function: FunctionArn,
    /// `NumberOfRetries` (default 3, 0..=300): attempts = retries + 1.
    pub number_of_retries: u32,
    /// `RoleArn` (default: the destination's role); accepted and kept, not used locally.
    pub role_arn: Option<String>,
    /// `BufferSizeInMBs` (default 1, 0.2..=3), in MiB.
    pub buffer_size_in_mbs: f64,
    /// `BufferIntervalInSeconds` (default 60, 0..=900).
    pub buffer_interval: Duration,
    /// Pause before the first retry, doubled per retry up to [`MAX_RETRY_BACKOFF`]. Not a Firehose
    /// parameter (Firehose's retry cadence is unpublished); [`DEFAULT_RETRY_BACKOFF`] by default.
    pub retry_backoff: Duration,
}

/// A `Lambda` processor parameter that is missing, malformed or out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LambdaParamError {
    #[error("LambdaArn is required for a Lambda processor")]
    MissingLambdaArn,
    #[error("LambdaArn must be arn:aws:lambda:<region>:<account>:function:<name>[:<qualifier>], got {0:?}")]
    InvalidLambdaArn(String),
    #[error("{name} must be {expected}, got {value:?}")]
    Invalid { name: &'static str, value: String, expected: &'static str },
    #[error("{0} is not a Firehose processor parameter name")]
    Unknown(String),
    #[error("parameter {0} is given more than once")]
    Duplicate(String),
}

impl LambdaConfig {
    /// Validates `(ParameterName, ParameterValue)` pairs; reports every problem found. Names of
    /// other processor types' parameters (`Delimiter`, ...) are ignored; unknown names, repeated
    /// names and bad values are errors.
    pub fn from_parameters<N: AsRef<str>, V: AsRef<str>>(params: &[(N, V)]) -> Result<Self, Vec<LambdaParamError>> {
        let mut errors = Vec::new();
        let mut seen: Vec<&str> = Vec::new();
        let mut arn = None;
        let mut cfg = Self {
            lambda_arn: String::new(),
            function: FunctionArn {
                region: String::new(),
                account: String::new(),
                name: String::new(),
                qualifier: None,
            },
            number_of_retries: 3,
            role_arn: None,
            buffer_size_in_mbs: 1.0,
            buffer_interval: Duration::from_secs(60),
            retry_backoff: DEFAULT_RETRY_BACKOFF,
        };
        for (name, value) in params {
            let (name, value) = (name.as_ref(), value.as_ref());
            if seen.contains(&name) {
                errors.push(LambdaParamError::Duplicate(name.to_owned()));
                continue;
            }
            seen.push(name);
            let invalid = |name: &'static str, expected: &'static str| LambdaParamError::Invalid {
                name,
                value: value.to_owned(),
                expected,
            };
            match name {
                "LambdaArn" => match FunctionArn::parse(value) {
                    Some(function) => arn = Some((value.to_owned(), function)),
                    None => errors.push(LambdaParamError::InvalidLambdaArn(value.to_owned())),
                },
                "NumberOfRetries" => match value.trim().parse::<u32>() {
                    Ok(n) if n <= 300 => cfg.number_of_retries = n,
                    _ => errors.push(invalid("NumberOfRetries", "an integer from 0 to 300")),
                },
                "RoleArn" if !value.is_empty() => cfg.role_arn = Some(value.to_owned()),
                "RoleArn" => errors.push(invalid("RoleArn", "a role ARN")),
                "BufferSizeInMBs" => match value.trim().parse::<f64>() {
                    Ok(mb) if (0.2..=3.0).contains(&mb) => cfg.buffer_size_in_mbs = mb,
                    _ => errors.push(invalid("BufferSizeInMBs", "a number from 0.2 to 3")),
                },
                "BufferIntervalInSeconds" => match value.trim().parse::<u64>() {
                    Ok(s) if s <= 900 => cfg.buffer_interval = Duration::from_secs(s),
                    _ => errors.push(invalid("BufferIntervalInSeconds", "an integer from 0 to 900")),
                },
                // Firehose's other processor parameter names: meaningless for a Lambda processor,
                // ignored rather than rejected (a config AWS accepts must keep working).
                "MetadataExtractionQuery"
                | "JsonParsingEngine"
                | "SubRecordType"
                | "Delimiter"
                | "CompressionFormat"
                | "DataMessageExtraction" => {}
                other => errors.push(LambdaParamError::Unknown(other.to_owned())),
            }
        }
        match arn {
            Some((lambda_arn, function)) => {
                cfg.lambda_arn = lambda_arn;
                cfg.function = function;
            }
            None if !errors.iter().any(|e| matches!(e, LambdaParamError::InvalidLambdaArn(_))) => {
                errors.push(LambdaParamError::MissingLambdaArn)
            }
            None => {}
        }
        if errors.is_empty() { Ok(cfg) } else { Err(errors) }
    }

    /// `BufferSizeInMBs` in bytes (MiB-based, as Firehose's buffer sizes).
    pub fn buffer_size_bytes(&self) -> u64 {
        (self.buffer_size_in_mbs * 1024.0 * 1024.0).round() as u64
    }
}

// ---------------------------------------------------------------------------------------------
// Invocation events

/// The delivery stream side of an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamContext {
    pub delivery_stream_arn: String,
    pub region: String,
    /// `sourceKinesisStreamArn`, for streams with a Kinesis Data Streams source only.
    pub source_kinesis_stream_arn: Option<String>,
}

/// `kinesisRecordMetadata` of a record read from a Kinesis data stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KinesisRecordMetadata {
    pub shard_id: String,
    pub partition_key: String,
    pub approximate_arrival_timestamp: i64,
    pub sequence_number: String,
    pub subsequence_number: u64,
}

/// One record to transform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputRecord {
    pub data: Bytes,
    /// `approximateArrivalTimestamp`, epoch milliseconds.
    pub arrival_ms: i64,
    pub kinesis: Option<KinesisRecordMetadata>,
}

/// One invocation as handed to a backend: `payload` is the complete event JSON (at most
/// [`MAX_PAYLOAD_BYTES`], no line breaks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    pub invocation_id: String,
    pub payload: String,
}

/// The record id of the `index`-th record of a batch numbered `base` (62 digits, see the module
/// header).
pub fn record_id(base: u64, index: usize) -> String {
    let value = u128::from(base) * 1_000_000 + index as u128;
    format!("{value:062}")
}

fn json_string(s: &str) -> String {
    Value::from(s).to_string()
}

/// The event up to and including `"records":[`.
fn event_head(invocation_id: &str, stream: &StreamContext) -> String {
    let mut head = String::with_capacity(160 + stream.delivery_stream_arn.len());
    head.push_str("{\"invocationId\":");
    head.push_str(&json_string(invocation_id));
    head.push_str(",\"deliveryStreamArn\":");
    head.push_str(&json_string(&stream.delivery_stream_arn));
    if let Some(source) = &stream.source_kinesis_stream_arn {
        head.push_str(",\"sourceKinesisStreamArn\":");
        head.push_str(&json_string(source));
    }
    head.push_str(",\"region\":");
    head.push_str(&json_string(&stream.region));
    head.push_str(",\"records\":[");
    head
}

/// What closes the event after the records.
const EVENT_TAIL: &str = "]}";

/// One element of `records`.
fn event_record(record_id: &str, record: &InputRecord) -> String {
    let mut s = String::with_capacity(128 + record.data.len() * 4 / 3);
    s.push_str("{\"recordId\":");
    s.push_str(&json_string(record_id));
    s.push_str(",\"approximateArrivalTimestamp\":");
    s.push_str(&record.arrival_ms.to_string());
    s.push_str(",\"data\":\"");
    STANDARD.encode_string(&record.data, &mut s);
    s.push('"');
    if let Some(k) = &record.kinesis {
        s.push_str(",\"kinesisRecordMetadata\":{\"shardId\":");
        s.push_str(&json_string(&k.shard_id));
        s.push_str(",\"partitionKey\":");
        s.push_str(&json_string(&k.partition_key));
        s.push_str(",\"approximateArrivalTimestamp\":");
        s.push_str(&k.approximate_arrival_timestamp.to_string());
        s.push_str(",\"sequenceNumber\":");
        s.push_str(&json_string(&k.sequence_number));
        s.push_str(",\"subsequenceNumber\":");
        s.push_str(&k.subsequence_number.to_string());
        s.push('}');
    }
    s.push('}');
    s
}

/// How a batch is cut into events.
#[derive(Debug, Default, PartialEq, Eq)]
struct EventPlan {
    /// Record indices per event, in batch order.
    events: Vec<Vec<usize>>,
    /// Records that do not fit in an event even alone.
    oversized: Vec<usize>,
}

/// Cuts records (given by their serialized lengths) into consecutive events of at most
/// [`MAX_PAYLOAD_BYTES`], each with a head of `head_len` bytes.
fn plan_events(head_len: usize, entry_lens: impl IntoIterator<Item = usize>) -> EventPlan {
    let empty = head_len + EVENT_TAIL.len();
    let mut plan = EventPlan::default();
    let mut current: Vec<usize> = Vec::new();
    let mut size = empty;
    for (index, len) in entry_lens.into_iter().enumerate() {
        if empty + len > MAX_PAYLOAD_BYTES {
            plan.oversized.push(index);
            continue;
        }
        let comma = usize::from(!current.is_empty());
        if size + comma + len > MAX_PAYLOAD_BYTES {
            plan.events.push(std::mem::take(&mut current));
            size = empty;
        }
        size += usize::from(!current.is_empty()) + len;
        current.push(index);
    }
    if !current.is_empty() {
        plan.events.push(current);
    }
    plan
}

fn event_payload(head: &str, entries: &[String], indices: &[usize]) -> String {
    let body: usize = indices.iter().map(|&i| entries[i].len() + 1).sum();
    let mut payload = String::with_capacity(head.len() + body + EVENT_TAIL.len());
    payload.push_str(head);
    for (n, &i) in indices.iter().enumerate() {
        if n > 0 {
            payload.push(',');
        }
        payload.push_str(&entries[i]);
    }
    payload.push_str(EVENT_TAIL);
    payload
}

// ---------------------------------------------------------------------------------------------
// Response validation

/// A response that fails the whole event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchFailure {
    pub code: ErrorCode,
    pub detail: String,
}

impl BatchFailure {
    fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self { code, detail: detail.into() }
    }

    fn json(detail: impl Into<String>) -> Self {
        Self::new(ErrorCode::JsonProcessingException, detail)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Ok,
    Dropped,
    ProcessingFailed,
}

/// Validates a function's response to an event carrying `record_ids` and returns one outcome per
/// id, in order; `attempt` (1-based) becomes `attempts_made` of per-record failures.
pub fn parse_response(body: &[u8], record_ids: &[&str], attempt: u32) -> Result<Vec<Outcome>, BatchFailure> {
    if body.len() > MAX_PAYLOAD_BYTES {
        return Err(BatchFailure::new(
            ErrorCode::FunctionError,
            format!("the response is {} bytes, over the {MAX_PAYLOAD_BYTES}-byte limit", body.len()),
        ));
    }
    let value: Value =
        serde_json::from_slice(body).map_err(|e| BatchFailure::json(format!("the response is not JSON: {e}")))?;
    let entries = value
        .get("records")
        .and_then(Value::as_array)
        .ok_or_else(|| BatchFailure::json("the response has no records array"))?;

    let mut returned: HashMap<&str, (Status, &Map<String, Value>)> = HashMap::with_capacity(entries.len());
    let mut parsed = Vec::with_capacity(entries.len());
    for (n, entry) in entries.iter().enumerate() {
        let fields = entry.as_object().ok_or_else(|| BatchFailure::json(format!("records[{n}] is not an object")))?;
        let id = fields
            .get("recordId")
            .and_then(Value::as_str)
            .ok_or_else(|| BatchFailure::json(format!("records[{n}] has no string recordId")))?;
        let status = match fields.get("result").and_then(Value::as_str) {
            Some("Ok") => Status::Ok,
            Some("Dropped") => Status::Dropped,
            Some("ProcessingFailed") => Status::ProcessingFailed,
            other => {
                return Err(BatchFailure::json(format!(
                    "records[{n}].result is {other:?}, not Ok, Dropped or ProcessingFailed"
                )));
            }
        };
        parsed.push((id, status, fields));
    }
    for (id, status, fields) in parsed {
        if returned.insert(id, (status, fields)).is_some() {
            return Err(BatchFailure::new(ErrorCode::DuplicatedRecordId, format!("record id {id} is returned twice")));
        }
    }

    let mut outcomes = Vec::with_capacity(record_ids.len());
    for &id in record_ids {
        let outcome = match returned.get(id) {
            None => Outcome::failed(ErrorCode::MissingRecordId, format!("record id {id} is not returned"), attempt),
            Some((Status::Dropped, _)) => Outcome::Dropped,
            Some((Status::ProcessingFailed, _)) => {
                Outcome::failed(ErrorCode::ProcessingFailedStatus, "the function returned ProcessingFailed", attempt)
            }
            Some((Status::Ok, fields)) => ok_outcome(id, fields)?,
        };
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

fn ok_outcome(id: &str, fields: &Map<String, Value>) -> Result<Outcome, BatchFailure> {
    let encoded = fields
        .get("data")
        .and_then(Value::as_str)
        .ok_or_else(|| BatchFailure::json(format!("record {id} is Ok but has no string data")))?;
    let data = LENIENT_BASE64
        .decode(encoded)
        .map_err(|e| BatchFailure::new(ErrorCode::FunctionError, format!("record {id}: data is not base64: {e}")))?;
    let mut partition_keys = BTreeMap::new();
    let mut otf = None;
    match fields.get("metadata") {
        None | Some(Value::Null) => {}
        Some(Value::Object(metadata)) => {
            match metadata.get("partitionKeys") {
                None | Some(Value::Null) => {}
                Some(Value::Object(keys)) => {
                    for (key, value) in keys {
                        let text = match value {
                            Value::String(s) => s.clone(),
                            Value::Number(n) => n.to_string(),
                            Value::Bool(b) => b.to_string(),
                            _ => {
                                return Err(BatchFailure::json(format!(
                                    "record {id}: metadata.partitionKeys.{key} is not a string"
                                )));
                            }
                        };
                        partition_keys.insert(key.clone(), text);
                    }
                }
                Some(_) => {
                    return Err(BatchFailure::json(format!("record {id}: metadata.partitionKeys is not an object")));
                }
            }
            match metadata.get("otfMetadata") {
                None | Some(Value::Null) => {}
                Some(Value::Object(o)) => otf = Some(o.clone()),
                Some(_) => {
                    return Err(BatchFailure::json(format!("record {id}: metadata.otfMetadata is not an object")));
                }
            }
        }
        Some(_) => return Err(BatchFailure::json(format!("record {id}: metadata is not an object"))),
    }
    Ok(Outcome::Ok { data: Bytes::from(data), partition_keys, otf })
}

// ---------------------------------------------------------------------------------------------
// Backends and invocation with retries

/// What [`FunctionBackend::invoke`] returns: the function's response payload (JSON bytes).
pub type InvokeFuture<'a> = Pin<Box<dyn Future<Output = Result<Vec<u8>, InvokeError>> + Send + 'a>>;

/// Runs a transformation function: a local process, or (later) the Lambda Invoke API.
pub trait FunctionBackend: Send + Sync {
    /// Invokes the function synchronously (RequestResponse) with `invocation.payload` as the event
    /// and returns its response payload, unvalidated.
    fn invoke<'a>(&'a self, invocation: &'a Invocation) -> InvokeFuture<'a>;
}

/// A failed invocation. Every kind is retried within `NumberOfRetries`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvokeError {
    /// The function raised (Lambda's `FunctionError: Unhandled`).
    #[error("the function raised {error_type}: {message}")]
    Function { error_type: String, message: String },
    #[error("the function did not answer within {0:?}")]
    Timeout(Duration),
    /// The function's process died or broke the protocol.
    #[error("the function's process failed: {0}")]
    Crashed(String),
    #[error("the function's response is over the {MAX_PAYLOAD_BYTES}-byte limit")]
    ResponseTooLarge,
    #[error("the function is throttled: {0}")]
    Throttled(String),
    #[error("invoking the function is not allowed: {0}")]
    InvokeDenied(String),
    #[error("the processor's role cannot be assumed: {0}")]
    AssumeRoleDenied(String),
    /// The function does not exist or cannot be started.
    #[error("the function is not available: {0}")]
    Unavailable(String),
}

impl InvokeError {
    /// The Firehose error code this failure is reported with.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Function { .. } | Self::Timeout(_) | Self::Crashed(_) | Self::ResponseTooLarge => {
                ErrorCode::FunctionError
            }
            Self::Throttled(_) => ErrorCode::InvokeLimitExceeded,
            Self::InvokeDenied(_) => ErrorCode::InvokeAccessDenied,
            Self::AssumeRoleDenied(_) => ErrorCode::AssumeRoleAccessDenied,
            Self::Unavailable(_) => ErrorCode::ResourceNotFound,
        }
    }
}

/// Transforms `records` (buffer order) with the function and returns one outcome per record, in
/// the same order. Never fails as a whole: failures are outcomes (see the module header).
pub async fn invoke_batch(
    backend: &dyn FunctionBackend,
    cfg: &LambdaConfig,
    stream: &StreamContext,
    records: &[InputRecord],
) -> Vec<Outcome> {
    if records.is_empty() {
        return Vec::new();
    }
    // A random batch number; ids are unique within the batch by index.
    let base = Uuid::new_v4().as_u64_pair().0;
    let ids: Vec<String> = (0..records.len()).map(|i| record_id(base, i)).collect();
    let entries: Vec<String> = records.iter().zip(&ids).map(|(record, id)| event_record(id, record)).collect();
    // Every invocation id is a 36-character UUID, so the head's length is known up front.
    let head_len = event_head(&Uuid::nil().hyphenated().to_string(), stream).len();
    let plan = plan_events(head_len, entries.iter().map(String::len));

    let mut outcomes: Vec<Option<Outcome>> = vec![None; records.len()];
    for &index in &plan.oversized {
        outcomes[index] = Some(Outcome::Failed {
            code: ErrorCode::FunctionError,
            message: "The record is too large to fit in one Lambda invocation (6 MB request limit).".to_owned(),
            detail: format!("record {} alone makes an event over {MAX_PAYLOAD_BYTES} bytes", ids[index]),
            attempts_made: 0,
        });
    }
    let results = futures::future::join_all(
        plan.events.iter().map(|indices| invoke_event(backend, cfg, stream, &ids, &entries, indices)),
    )
    .await;
    for (indices, event_outcomes) in plan.events.iter().zip(results) {
        for (&index, outcome) in indices.iter().zip(event_outcomes) {
            outcomes[index] = Some(outcome);
        }
    }
    outcomes
        .into_iter()
        .map(|o| o.unwrap_or_else(|| Outcome::failed(ErrorCode::FunctionError, "record was not sent", 0)))
        .collect()
}

/// One event with its retries.
async fn invoke_event(
    backend: &dyn FunctionBackend,
    cfg: &LambdaConfig,
    stream: &StreamContext,
    ids: &[String],
    entries: &[String],
    indices: &[usize],
) -> Vec<Outcome> {
    let record_ids: Vec<&str> = indices.iter().map(|&i| ids[i].as_str()).collect();
    let attempts = cfg.number_of_retries.saturating_add(1);
    let mut last = BatchFailure::new(ErrorCode::FunctionError, "no attempt was made");
    for attempt in 1..=attempts {
        let invocation_id = Uuid::new_v4().hyphenated().to_string();
        let payload = event_payload(&event_head(&invocation_id, stream), entries, indices);
        debug_assert!(payload.len() <= MAX_PAYLOAD_BYTES);
        let invocation = Invocation { invocation_id, payload };
        let failure = match backend.invoke(&invocation).await {
            Ok(body) => match parse_response(&body, &record_ids, attempt) {
                Ok(outcomes) => return outcomes,
                Err(failure) => failure,
            },
            Err(e) => BatchFailure::new(e.code(), e.to_string()),
        };
        tracing::warn!(
            function = %cfg.lambda_arn,
            invocation_id = %invocation.invocation_id,
            attempt,
            attempts,
            records = indices.len(),
            code = failure.code.as_str(),
            detail = %failure.detail,
            "lambda invocation failed"
        );
        last = failure;
        if attempt < attempts {
            tokio::time::sleep(retry_pause(cfg.retry_backoff, attempt)).await;
        }
    }
    indices.iter().map(|_| Outcome::failed(last.code, last.detail.clone(), attempts)).collect()
}

fn retry_pause(first: Duration, attempt: u32) -> Duration {
    first.saturating_mul(1 << attempt.saturating_sub(1).min(16)).min(MAX_RETRY_BACKOFF)
}

// ---------------------------------------------------------------------------------------------
// Process backends

/// How the process backends run a function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerOptions {
    /// Processes kept for the function = its outstanding invocations (default 1).
    pub workers: usize,
    /// Per-invocation timeout; the worker is killed when it passes (default 300 s).
    pub timeout: Duration,
    /// Reported as `context.memory_limit_in_mb` (default 128); not enforced.
    pub memory_limit_mb: u32,
    /// Interpreter for [`PythonHandler`] (default `python3`).
    pub python: PathBuf,
    /// Extra environment (the function's environment variables); overrides the defaults.
    pub env: Vec<(String, String)>,
    /// Working directory of a [`CommandHandler`] (a Python handler runs in its module's folder).
    pub cwd: Option<PathBuf>,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        Self {
            workers: 1,
            timeout: DEFAULT_TIMEOUT,
            memory_limit_mb: 128,
            python: PathBuf::from("python3"),
            env: Vec::new(),
            cwd: None,
        }
    }
}

/// A local handler that cannot be set up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandlerError {
    #[error("handler file {0} does not exist")]
    MissingFile(PathBuf),
    #[error("handler name {0:?} is not a Python identifier")]
    BadHandlerName(String),
    #[error("the handler command is empty")]
    EmptyCommand,
    #[error("a handler needs at least one worker")]
    NoWorkers,
}

/// A Python Lambda handler (`def handler(event, context)` in `file`) run unchanged by the embedded
/// bootstrap: `python -B -c <lambda_bootstrap.py> <file> <handler>`.
pub struct PythonHandler {
    pool: WorkerPool,
}

impl PythonHandler {
    /// `lambda_arn` names the function in logs and the context object (`function_name`,
    /// `invoked_function_arn`, region); it need not exist anywhere.
    pub fn new(
        file: impl AsRef<Path>,
        handler: &str,
        lambda_arn: &str,
        options: WorkerOptions,
    ) -> Result<Self, HandlerError> {
        let file = file.as_ref();
        if !file.is_file() {
            return Err(HandlerError::MissingFile(file.to_path_buf()));
        }
        let file = std::path::absolute(file).map_err(|_| HandlerError::MissingFile(file.to_path_buf()))?;
        let identifier = handler.chars().next().is_some_and(|c| c.is_alphabetic() || c == '_')
            && handler.chars().all(|c| c.is_alphanumeric() || c == '_');
        if !identifier {
            return Err(HandlerError::BadHandlerName(handler.to_owned()));
        }
        let folder = file.parent().map(Path::to_path_buf).unwrap_or_default();
        let module = file.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let argv = vec![
            options.python.clone().into_os_string(),
            "-B".into(),
            "-c".into(),
            BOOTSTRAP.into(),
            file.clone().into_os_string(),
            handler.into(),
        ];
        let mut env = vec![
            ("_HANDLER".to_owned(), format!("{module}.{handler}")),
            ("LAMBDA_TASK_ROOT".to_owned(), folder.to_string_lossy().into_owned()),
            ("PYTHONUNBUFFERED".to_owned(), "1".to_owned()),
            ("PYTHONDONTWRITEBYTECODE".to_owned(), "1".to_owned()),
        ];
        env.extend(options.env.iter().cloned());
        let options = WorkerOptions { env, cwd: Some(folder), ..options };
        Ok(Self { pool: WorkerPool::new(argv, lambda_arn, options)? })
    }

    /// Workers started so far (first starts and restarts).
    pub fn workers_started(&self) -> u64 {
        self.pool.started.load(Ordering::Relaxed)
    }

    /// Stops the idle workers and refuses new invocations; busy workers stop when they finish.
    pub async fn shutdown(&self) {
        self.pool.shutdown().await;
    }
}

impl FunctionBackend for PythonHandler {
    fn invoke<'a>(&'a self, invocation: &'a Invocation) -> InvokeFuture<'a> {
        Box::pin(self.pool.invoke(invocation))
    }
}

/// Any program speaking the JSON-lines protocol of the module header, started as `argv`.
pub struct CommandHandler {
    pool: WorkerPool,
}

impl CommandHandler {
    pub fn new(argv: Vec<String>, lambda_arn: &str, options: WorkerOptions) -> Result<Self, HandlerError> {
        if argv.first().is_none_or(|program| program.is_empty()) {
            return Err(HandlerError::EmptyCommand);
        }
        let argv = argv.into_iter().map(Into::into).collect();
        Ok(Self { pool: WorkerPool::new(argv, lambda_arn, options)? })
    }

    /// Workers started so far (first starts and restarts).
    pub fn workers_started(&self) -> u64 {
        self.pool.started.load(Ordering::Relaxed)
    }

    /// Stops the idle workers and refuses new invocations; busy workers stop when they finish.
    pub async fn shutdown(&self) {
        self.pool.shutdown().await;
    }
}

impl FunctionBackend for CommandHandler {
    fn invoke<'a>(&'a self, invocation: &'a Invocation) -> InvokeFuture<'a> {
        Box::pin(self.pool.invoke(invocation))
    }
}

/// Processes running one function, one invocation at a time each.
struct WorkerPool {
    argv: Vec<std::ffi::OsString>,
    env: Vec<(String, String)>,
    cwd: Option<PathBuf>,
    timeout: Duration,
    function: Arc<str>,
    idle: Mutex<Vec<Worker>>,
    permits: Semaphore,
    started: AtomicU64,
    closed: AtomicBool,
}

struct Worker {
    id: u64,
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

/// A reply line.
enum Reply {
    Ok(Vec<u8>),
    Error { error_type: String, message: String },
}

/// Why a worker cannot be used any more.
enum Broken {
    TooLarge,
    Protocol(String),
}

impl WorkerPool {
    fn new(argv: Vec<std::ffi::OsString>, lambda_arn: &str, options: WorkerOptions) -> Result<Self, HandlerError> {
        if options.workers == 0 {
            return Err(HandlerError::NoWorkers);
        }
        let parsed = FunctionArn::parse(lambda_arn);
        let name = parsed.as_ref().map_or(lambda_arn, |f| f.name.as_str());
        let mut env = vec![
            ("AWS_LAMBDA_FUNCTION_NAME".to_owned(), name.to_owned()),
            ("AWS_LAMBDA_FUNCTION_VERSION".to_owned(), parsed.as_ref().map_or("$LATEST", |f| f.version()).to_owned()),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE".to_owned(), options.memory_limit_mb.to_string()),
            ("AWS_LAMBDA_LOG_GROUP_NAME".to_owned(), format!("/aws/lambda/{name}")),
            ("SPILLWAY_INVOKED_FUNCTION_ARN".to_owned(), lambda_arn.to_owned()),
        ];
        if let Some(region) = parsed.as_ref().map(|f| f.region.as_str()).filter(|r| !r.is_empty()) {
            env.push(("AWS_REGION".to_owned(), region.to_owned()));
            env.push(("AWS_DEFAULT_REGION".to_owned(), region.to_owned()));
        }
        env.extend(options.env);
        Ok(Self {
            argv,
            env,
            cwd: options.cwd,
            timeout: options.timeout,
            function: Arc::from(name),
            idle: Mutex::new(Vec::new()),
            permits: Semaphore::new(options.workers),
            started: AtomicU64::new(0),
            closed: AtomicBool::new(false),
        })
    }

    async fn invoke(&self, invocation: &Invocation) -> Result<Vec<u8>, InvokeError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| InvokeError::Unavailable("the handler is shut down".to_owned()))?;
        let mut worker = self.take_worker()?;
        let deadline_ms = SystemTime::now()
            .checked_add(self.timeout)
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(u64::MAX, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        // In valid JSON a raw line feed can only be whitespace, so a space keeps the meaning and
        // the request on one line (events built here never contain one).
        let event: std::borrow::Cow<'_, str> = if invocation.payload.contains('\n') {
            invocation.payload.replace('\n', " ").into()
        } else {
            invocation.payload.as_str().into()
        };
        let request = format!("{{\"event\":{event},\"deadline_ms\":{deadline_ms}}}\n");

        let result = tokio::time::timeout(self.timeout, worker.exchange(request.as_bytes())).await;
        let function = &*self.function;
        match result {
            Ok(Ok(reply)) => {
                self.put_back(worker);
                match reply {
                    Reply::Ok(body) => Ok(body),
                    Reply::Error { error_type, message } => Err(InvokeError::Function { error_type, message }),
                }
            }
            Ok(Err(Broken::TooLarge)) => {
                tracing::warn!(function, worker = worker.id, "response line over the limit; worker killed");
                worker.kill(Duration::ZERO).await;
                Err(InvokeError::ResponseTooLarge)
            }
            Ok(Err(Broken::Protocol(detail))) => {
                let id = worker.id;
                let detail = match worker.kill(Duration::from_millis(100)).await {
                    Some(status) => format!("{detail} ({status})"),
                    None => detail,
                };
                tracing::warn!(function, worker = id, %detail, "worker failed; killed");
                Err(InvokeError::Crashed(detail))
            }
            Err(_) => {
                let timeout = self.timeout;
                tracing::warn!(function, worker = worker.id, ?timeout, "invocation timed out; worker killed");
                worker.kill(Duration::ZERO).await;
                Err(InvokeError::Timeout(self.timeout))
            }
        }
    }

    /// An idle live worker, or a new one.
    fn take_worker(&self) -> Result<Worker, InvokeError> {
        loop {
            let popped = self.idle.lock().pop();
            match popped {
                None => return self.spawn(),
                Some(mut worker) => match worker.child.try_wait() {
                    Ok(None) => return Ok(worker),
                    status => {
                        tracing::warn!(function = &*self.function, worker = worker.id, ?status, "idle worker exited");
                    }
                },
            }
        }
    }

    fn put_back(&self, worker: Worker) {
        if !self.closed.load(Ordering::Acquire) {
            self.idle.lock().push(worker);
        }
    }

    fn spawn(&self) -> Result<Worker, InvokeError> {
        let Some((program, args)) = self.argv.split_first() else {
            return Err(InvokeError::Unavailable("empty command".to_owned()));
        };
        let mut command = Command::new(program);
        command
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(cwd) = &self.cwd {
            command.current_dir(cwd);
        }
        // Out of spillway's process group: a terminal's Ctrl-C reaches spillway, which stops its
        // workers itself.
        #[cfg(unix)]
        command.process_group(0);
        let mut child = command
            .spawn()
            .map_err(|e| InvokeError::Unavailable(format!("cannot start {}: {e}", Path::new(program).display())))?;
        let (Some(stdin), Some(stdout), Some(stderr)) = (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(InvokeError::Unavailable("the worker's pipes are missing".to_owned()));
        };
        let id = self.started.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::debug!(function = &*self.function, worker = id, pid = child.id(), "lambda worker started");
        tokio::spawn(forward_stderr(stderr, self.function.clone(), id));
        Ok(Worker { id, child, stdin, stdout: BufReader::new(stdout) })
    }

    async fn shutdown(&self) {
        self.closed.store(true, Ordering::Release);
        self.permits.close();
        let idle = std::mem::take(&mut *self.idle.lock());
        for mut worker in idle {
            // EOF on stdin asks the worker to exit; kill it if it does not within a second.
            drop(worker.stdin);
            if tokio::time::timeout(Duration::from_secs(1), worker.child.wait()).await.is_err() {
                let _ = worker.child.start_kill();
                let _ = worker.child.wait().await;
            }
        }
    }
}

impl Worker {
    /// Writes one request line and reads one reply line.
    async fn exchange(&mut self, request: &[u8]) -> Result<Reply, Broken> {
        self.stdin.write_all(request).await.map_err(|e| Broken::Protocol(format!("writing the request: {e}")))?;
        self.stdin.flush().await.map_err(|e| Broken::Protocol(format!("writing the request: {e}")))?;
        let mut line = Vec::new();
        match read_capped(&mut self.stdout, MAX_PAYLOAD_BYTES + ENVELOPE_SLACK, &mut line).await {
            Ok(Stop::Newline) => parse_reply(&line).map_err(Broken::Protocol),
            Ok(Stop::Cap) => Err(Broken::TooLarge),
            Ok(Stop::Eof) => Err(Broken::Protocol("the worker closed stdout without a reply".to_owned())),
            Err(e) => Err(Broken::Protocol(format!("reading the reply: {e}"))),
        }
    }

    /// Kills the process and reaps it; returns its exit status when it ends by itself within
    /// `grace` (a worker that broke the protocol is usually exiting).
    async fn kill(mut self, grace: Duration) -> Option<std::process::ExitStatus> {
        let exited = tokio::time::timeout(grace, self.child.wait()).await.ok().and_then(Result::ok);
        if exited.is_none() {
            let _ = self.child.start_kill();
            let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
        }
        exited
    }
}

fn parse_reply(line: &[u8]) -> Result<Reply, String> {
    let preview = || String::from_utf8_lossy(&line[..line.len().min(200)]).into_owned();
    let value: Value = serde_json::from_slice(line).map_err(|e| format!("reply is not JSON ({e}): {}", preview()))?;
    let Value::Object(mut reply) = value else {
        return Err(format!("reply is not an object: {}", preview()));
    };
    if let Some(ok) = reply.remove("ok") {
        return serde_json::to_vec(&ok).map(Reply::Ok).map_err(|e| format!("re-encoding the reply: {e}"));
    }
    if let Some(Value::Object(error)) = reply.remove("error") {
        let text = |key: &str| error.get(key).and_then(Value::as_str).unwrap_or_default().to_owned();
        let error_type = text("errorType");
        return Ok(Reply::Error {
            error_type: if error_type.is_empty() { "Unhandled".to_owned() } else { error_type },
            message: text("errorMessage"),
        });
    }
    Err(format!("reply has neither ok nor error: {}", preview()))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// A whole line was read (the newline is consumed, not stored).
    Newline,
    /// `cap` bytes were stored and the line goes on.
    Cap,
    /// End of stream.
    Eof,
}

/// Appends to `out` the bytes up to the next `\n`, at most `cap` of them.
async fn read_capped<R: AsyncBufRead + Unpin>(reader: &mut R, cap: usize, out: &mut Vec<u8>) -> io::Result<Stop> {
    loop {
        let buf = reader.fill_buf().await?;
        if buf.is_empty() {
            return Ok(Stop::Eof);
        }
        let room = cap.saturating_sub(out.len());
        match buf.iter().position(|&b| b == b'\n') {
            Some(end) if end <= room => {
                out.extend_from_slice(&buf[..end]);
                reader.consume(end + 1);
                return Ok(Stop::Newline);
            }
            _ if buf.len() > room => {
                out.extend_from_slice(&buf[..room]);
                reader.consume(room);
                return Ok(Stop::Cap);
            }
            _ => {
                let n = buf.len();
                out.extend_from_slice(buf);
                reader.consume(n);
            }
        }
    }
}

/// Logs a worker's stderr line by line until it closes.
async fn forward_stderr(stderr: ChildStderr, function: Arc<str>, worker: u64) {
    let mut reader = BufReader::new(stderr);
    let mut line = Vec::new();
    loop {
        line.clear();
        let stop = read_capped(&mut reader, STDERR_LINE_CAP, &mut line).await;
        if !line.is_empty() || matches!(stop, Ok(Stop::Newline)) {
            let text = String::from_utf8_lossy(&line);
            let text = text.trim_end_matches('\r');
            tracing::info!(target: "spillway::lambda", function = &*function, worker, "{text}");
        }
        if !matches!(stop, Ok(Stop::Newline | Stop::Cap)) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::sync::OnceLock;
    use std::time::Instant;

    const ARN: &str = "arn:aws:lambda:us-east-1:123456789012:function:transform";
    const STREAM_ARN: &str = "arn:aws:firehose:us-east-1:123456789012:deliverystream/clicks";

    // ---- helpers ----

    fn cfg(retries: u32) -> LambdaConfig {
        let retries = retries.to_string();
        let mut cfg = LambdaConfig::from_parameters(&[("LambdaArn", ARN), ("NumberOfRetries", retries.as_str())])
            .expect("valid parameters");
        cfg.retry_backoff = Duration::ZERO;
        cfg
    }

    fn stream() -> StreamContext {
        StreamContext {
            delivery_stream_arn: STREAM_ARN.to_owned(),
            region: "us-east-1".to_owned(),
            source_kinesis_stream_arn: None,
        }
    }

    fn rec(data: &[u8]) -> InputRecord {
        InputRecord { data: Bytes::copy_from_slice(data), arrival_ms: 1_507_217_624_302, kinesis: None }
    }

    fn b64(data: &[u8]) -> String {
        STANDARD.encode(data)
    }

    fn ok_data(outcome: &Outcome) -> &[u8] {
        match outcome {
            Outcome::Ok { data, .. } => data,
            other => panic!("expected Ok, got {other:?}"),
        }
    }

    fn failed(outcome: &Outcome) -> (ErrorCode, &str, u32) {
        match outcome {
            Outcome::Failed { code, detail, attempts_made, message } => {
                assert_eq!(message, code.message());
                (*code, detail.as_str(), *attempts_made)
            }
            other => panic!("expected Failed, got {other:?}"),
        }
    }

    /// A backend made of a closure, recording every invocation.
    struct FnBackend<F> {
        respond: F,
        seen: Mutex<Vec<Invocation>>,
    }

    impl<F> FnBackend<F>
    where
        F: Fn(&Invocation, usize) -> Result<Vec<u8>, InvokeError> + Send + Sync,
    {
        fn new(respond: F) -> Self {
            Self { respond, seen: Mutex::new(Vec::new()) }
        }

        fn invocations(&self) -> Vec<Invocation> {
            self.seen.lock().clone()
        }
    }

    impl<F> FunctionBackend for FnBackend<F>
    where
        F: Fn(&Invocation, usize) -> Result<Vec<u8>, InvokeError> + Send + Sync,
    {
        fn invoke<'a>(&'a self, invocation: &'a Invocation) -> InvokeFuture<'a> {
            let call = {
                let mut seen = self.seen.lock();
                seen.push(invocation.clone());
                seen.len()
            };
            let result = (self.respond)(invocation, call);
            Box::pin(async move { result })
        }
    }

    fn event_of(invocation: &Invocation) -> Value {
        serde_json::from_str(&invocation.payload).expect("event is JSON")
    }

    fn ids_of(event: &Value) -> Vec<String> {
        event["records"]
            .as_array()
            .expect("records")
            .iter()
            .map(|r| r["recordId"].as_str().unwrap_or("").to_owned())
            .collect()
    }

    /// The response of a function that returns every record unchanged.
    fn echo_response(invocation: &Invocation) -> Vec<u8> {
        let event = event_of(invocation);
        let records: Vec<Value> = event["records"]
            .as_array()
            .expect("records")
            .iter()
            .map(|r| serde_json::json!({"recordId": r["recordId"], "result": "Ok", "data": r["data"]}))
            .collect();
        serde_json::to_vec(&serde_json::json!({ "records": records })).expect("encodes")
    }

    fn fixtures() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lambda")
    }

    /// The real interpreter behind `python3` (skipping shims keeps worker starts fast).
    fn python() -> PathBuf {
        static PYTHON: OnceLock<PathBuf> = OnceLock::new();
        PYTHON
            .get_or_init(|| {
                std::process::Command::new("python3")
                    .args(["-c", "import sys; print(sys.executable)"])
                    .output()
                    .ok()
                    .and_then(|o| String::from_utf8(o.stdout).ok())
                    .map(|s| PathBuf::from(s.trim()))
                    .filter(|p| p.is_file())
                    .unwrap_or_else(|| PathBuf::from("python3"))
            })
            .clone()
    }

    fn options() -> WorkerOptions {
        WorkerOptions { python: python(), timeout: Duration::from_secs(20), ..WorkerOptions::default() }
    }

    fn handler(file: &str, name: &str, options: WorkerOptions) -> PythonHandler {
        PythonHandler::new(fixtures().join(file), name, ARN, options).expect("handler fixture")
    }

    // ---- events ----

    #[tokio::test]
    async fn event_has_exactly_the_firehose_keys() {
        let backend = FnBackend::new(|inv, _| Ok(echo_response(inv)));
        let mut stream = stream();
        let mut kinesis = rec(b"");
        kinesis.kinesis = Some(KinesisRecordMetadata {
            shard_id: "shardId-000000000000".to_owned(),
            partition_key: "4d1ad2b9-24f8-4b9d-a088-76e9947c317a".to_owned(),
            approximate_arrival_timestamp: 1_507_217_624_302,
            sequence_number: "49546986683135544286507457936321625675700192471156785154".to_owned(),
            subsequence_number: 0,
        });
        let records = [rec(b"Hello World"), kinesis];

        let outcomes = invoke_batch(&backend, &cfg(0), &stream, &records).await;
        assert_eq!(ok_data(&outcomes[0]), b"Hello World");
        assert_eq!(ok_data(&outcomes[1]), b"");

        let invocation = &backend.invocations()[0];
        assert!(invocation.payload.starts_with("{\"invocationId\":\""), "{}", invocation.payload);
        let event = event_of(invocation);
        let keys = |v: &Value| v.as_object().expect("object").keys().cloned().collect::<HashSet<_>>();
        let set = |names: &[&str]| names.iter().map(|s| s.to_string()).collect::<HashSet<_>>();
        assert_eq!(keys(&event), set(&["invocationId", "deliveryStreamArn", "region", "records"]));
        let id = Uuid::parse_str(event["invocationId"].as_str().expect("string")).expect("uuid");
        assert_eq!(id.get_version_num(), 4);
        assert_eq!(event["invocationId"], invocation.invocation_id.as_str());
        assert_eq!(event["deliveryStreamArn"], STREAM_ARN);
        assert_eq!(event["region"], "us-east-1");
        let first = &event["records"][0];
        assert_eq!(keys(first), set(&["recordId", "approximateArrivalTimestamp", "data"]));
        assert_eq!(first["data"], "SGVsbG8gV29ybGQ=");
        assert_eq!(first["approximateArrivalTimestamp"], 1_507_217_624_302_i64);
        let second = &event["records"][1];
        assert_eq!(keys(second), set(&["recordId", "approximateArrivalTimestamp", "data", "kinesisRecordMetadata"]));
        assert_eq!(second["data"], "");
        assert_eq!(
            keys(&second["kinesisRecordMetadata"]),
            set(&["shardId", "partitionKey", "approximateArrivalTimestamp", "sequenceNumber", "subsequenceNumber"])
        );
        assert_eq!(
            second["kinesisRecordMetadata"]["sequenceNumber"],
            "49546986683135544286507457936321625675700192471156785154"
        );
        assert_eq!(second["kinesisRecordMetadata"]["subsequenceNumber"], 0);
        let ids = ids_of(&event);
        for id in &ids {
            assert_eq!(id.len(), 62, "{id}");
            assert!(id.bytes().all(|b| b.is_ascii_digit()), "{id}");
        }
        assert!(ids[0].ends_with("000000") && ids[1].ends_with("000001"), "{ids:?}");
        assert_eq!(ids[0][..56], ids[1][..56]);

        // A Kinesis-sourced stream names its source stream.
        stream.source_kinesis_stream_arn = Some("arn:aws:kinesis:us-east-1:123456789012:stream/src".to_owned());
        invoke_batch(&backend, &cfg(0), &stream, &records[..1]).await;
        let event = event_of(&backend.invocations()[1]);
        assert_eq!(
            keys(&event),
            set(&["invocationId", "deliveryStreamArn", "sourceKinesisStreamArn", "region", "records"])
        );
        assert_eq!(event["sourceKinesisStreamArn"], "arn:aws:kinesis:us-east-1:123456789012:stream/src");
    }

    #[test]
    fn record_ids_are_62_digits_and_distinct() {
        assert_eq!(record_id(0, 0), "0".repeat(62));
        assert_eq!(record_id(u64::MAX, 999_999).len(), 62);
        assert!(record_id(7, 3).ends_with("7000003"));
        // Past a million records the number grows but stays unique.
        assert_ne!(record_id(7, 1_000_000), record_id(8, 0).replace('8', "x"));
        let ids: HashSet<String> = (0..2_000_000).step_by(999_983).map(|i| record_id(42, i)).collect();
        assert_eq!(ids.len(), 3);
    }

    #[test]
    fn events_are_cut_at_exactly_6_mb() {
        let head = 100;
        let fill = MAX_PAYLOAD_BYTES - head - EVENT_TAIL.len();
        assert_eq!(plan_events(head, [fill]), EventPlan { events: vec![vec![0]], oversized: vec![] });
        assert_eq!(plan_events(head, [fill + 1]), EventPlan { events: vec![], oversized: vec![0] });
        // Two records and their comma fill the event exactly; one more byte needs a second event.
        assert_eq!(plan_events(head, [10, fill - 11]).events, vec![vec![0, 1]]);
        assert_eq!(plan_events(head, [10, fill - 10]).events, vec![vec![0], vec![1]]);
        assert_eq!(plan_events(head, [5, fill + 1, 5]), EventPlan { events: vec![vec![0, 2]], oversized: vec![1] });
    }

    #[tokio::test]
    async fn a_large_batch_is_split_into_events_of_at_most_6_mb() {
        let backend = FnBackend::new(|inv, _| Ok(echo_response(inv)));
        let records: Vec<InputRecord> = (0..10u8).map(|i| rec(&vec![b'a' + i; 1_000_000])).collect();

        let outcomes = invoke_batch(&backend, &cfg(0), &stream(), &records).await;

        for (outcome, record) in outcomes.iter().zip(&records) {
            assert_eq!(ok_data(outcome), &record.data[..]);
        }
        let invocations = backend.invocations();
        assert!(invocations.len() >= 3, "{} events", invocations.len());
        let mut all_ids = Vec::new();
        for invocation in &invocations {
            assert!(invocation.payload.len() <= MAX_PAYLOAD_BYTES, "{} bytes", invocation.payload.len());
            all_ids.extend(ids_of(&event_of(invocation)));
        }
        all_ids.sort();
        let distinct: HashSet<&String> = all_ids.iter().collect();
        assert_eq!((all_ids.len(), distinct.len()), (10, 10));
    }

    #[tokio::test]
    async fn a_record_too_large_for_any_event_fails_without_an_invocation() {
        let backend = FnBackend::new(|inv, _| Ok(echo_response(inv)));
        let huge = vec![b'x'; MAX_PAYLOAD_BYTES / 4 * 3 + 1];
        let records = [rec(b"small"), rec(&huge), rec(b"tiny")];

        let outcomes = invoke_batch(&backend, &cfg(3), &stream(), &records).await;

        assert_eq!(ok_data(&outcomes[0]), b"small");
        assert_eq!(ok_data(&outcomes[2]), b"tiny");
        let Outcome::Failed { code, attempts_made, .. } = &outcomes[1] else { panic!("{:?}", outcomes[1]) };
        assert_eq!((*code, *attempts_made), (ErrorCode::FunctionError, 0));
        assert_eq!(backend.invocations().len(), 1);
        assert!(backend.invocations()[0].payload.len() < 1000);
    }

    // ---- response validation (reference §11.2 table) ----

    const IDS: [&str; 3] = ["a", "b", "c"];

    fn parse(body: Value) -> Result<Vec<Outcome>, BatchFailure> {
        parse_response(&serde_json::to_vec(&body).expect("encodes"), &IDS, 1)
    }

    fn entry(id: &str, result: &str, data: &[u8]) -> Value {
        serde_json::json!({"recordId": id, "result": result, "data": b64(data)})
    }

    #[test]
    fn ok_dropped_and_processing_failed_map_per_record() {
        let outcomes = parse(serde_json::json!({"records": [
            entry("c", "ProcessingFailed", b""),
            entry("a", "Ok", b"new a\n"),
            {"recordId": "b", "result": "Dropped"},
        ]}))
        .expect("valid");
        assert_eq!(ok_data(&outcomes[0]), b"new a\n");
        assert_eq!(outcomes[1], Outcome::Dropped);
        assert_eq!(failed(&outcomes[2]).0, ErrorCode::ProcessingFailedStatus);
        assert_eq!(failed(&outcomes[2]).2, 1);
        assert_eq!(ErrorCode::ProcessingFailedStatus.as_str(), "Lambda.ProcessingFailedStatus");
    }

    #[test]
    fn missing_record_ids_fail_only_those_records() {
        let outcomes = parse_response(
            &serde_json::to_vec(&serde_json::json!({"records": [entry("a", "Ok", b"x"), entry("zzz", "Ok", b"y")]}))
                .expect("encodes"),
            &IDS,
            3,
        )
        .expect("valid");
        assert_eq!(ok_data(&outcomes[0]), b"x");
        for outcome in &outcomes[1..] {
            let (code, _, attempts) = failed(outcome);
            assert_eq!((code, attempts), (ErrorCode::MissingRecordId, 3));
        }
        assert_eq!(ErrorCode::MissingRecordId.as_str(), "Lambda.MissingRecordId");
    }

    #[test]
    fn a_duplicated_record_id_fails_the_batch() {
        let failure = parse(serde_json::json!({"records": [
            entry("a", "Ok", b"x"), entry("b", "Ok", b"y"), entry("c", "Ok", b"z"), entry("b", "Dropped", b""),
        ]}))
        .expect_err("duplicate");
        assert_eq!(failure.code, ErrorCode::DuplicatedRecordId);
        assert_eq!(failure.code.as_str(), "Lambda.DuplicatedRecordId");
    }

    #[test]
    fn an_invalid_result_fails_the_batch_as_json_processing() {
        for result in
            [serde_json::json!("OK"), serde_json::json!("Failed"), serde_json::json!(null), serde_json::json!(1)]
        {
            let failure = parse(serde_json::json!({"records": [
                entry("a", "Ok", b"x"), entry("b", "Ok", b"y"), {"recordId": "c", "result": result, "data": ""},
            ]}))
            .expect_err("invalid result");
            assert_eq!(failure.code, ErrorCode::JsonProcessingException, "{result}");
        }
    }

    #[test]
    fn invalid_base64_in_an_ok_record_fails_the_batch_as_function_error() {
        let failure = parse(serde_json::json!({"records": [
            entry("a", "Ok", b"x"), {"recordId": "b", "result": "Ok", "data": "not base64!"}, entry("c", "Ok", b"z"),
        ]}))
        .expect_err("bad base64");
        assert_eq!(failure.code, ErrorCode::FunctionError);
        // Padding is optional, as for Firehose.
        let outcomes = parse(serde_json::json!({"records": [
            {"recordId": "a", "result": "Ok", "data": "eA"}, entry("b", "Dropped", b""), entry("c", "Dropped", b""),
        ]}))
        .expect("unpadded base64");
        assert_eq!(ok_data(&outcomes[0]), b"x");
        // Dropped and failed records may carry anything as data.
        let outcomes = parse(serde_json::json!({"records": [
            {"recordId": "a", "result": "Dropped", "data": "!!"},
            {"recordId": "b", "result": "ProcessingFailed", "data": 5},
            entry("c", "Ok", b""),
        ]}))
        .expect("data of non-Ok records is ignored");
        assert_eq!(ok_data(&outcomes[2]), b"");
    }

    #[test]
    fn unparseable_or_malformed_responses_fail_as_json_processing() {
        for body in [&b"not json"[..], b"null", b"{}", b"{\"records\": {}}", b"[]", b"\"records\""] {
            let failure = parse_response(body, &IDS, 1).expect_err("malformed");
            assert_eq!(failure.code, ErrorCode::JsonProcessingException, "{}", String::from_utf8_lossy(body));
        }
        let ok_with = |extra: Value| {
            let mut record = serde_json::json!({"recordId": "a", "result": "Ok", "data": ""});
            for (k, v) in extra.as_object().expect("object") {
                record[k] = v.clone();
            }
            serde_json::json!({ "records": [record] })
        };
        for bad in [
            serde_json::json!({"records": [1]}),
            serde_json::json!({"records": [{"result": "Ok", "data": ""}]}),
            serde_json::json!({"records": [{"recordId": 7, "result": "Ok", "data": ""}]}),
            serde_json::json!({"records": [{"recordId": "a", "result": "Ok"}]}),
            ok_with(serde_json::json!({"data": null})),
            ok_with(serde_json::json!({"metadata": 1})),
            ok_with(serde_json::json!({"metadata": {"partitionKeys": []}})),
            ok_with(serde_json::json!({"metadata": {"partitionKeys": {"k": {}}}})),
            ok_with(serde_json::json!({"metadata": {"otfMetadata": "t"}})),
        ] {
            assert_eq!(parse(bad.clone()).expect_err("malformed").code, ErrorCode::JsonProcessingException, "{bad}");
        }
    }

    #[test]
    fn a_response_over_6_mb_fails_as_function_error() {
        let data = "A".repeat(MAX_PAYLOAD_BYTES);
        let body =
            serde_json::to_vec(&serde_json::json!({"records": [{"recordId": "a", "result": "Ok", "data": data}]}))
                .expect("encodes");
        assert_eq!(parse_response(&body, &["a"], 1).expect_err("too large").code, ErrorCode::FunctionError);
    }

    #[test]
    fn partition_keys_and_otf_metadata_are_kept() {
        let outcomes = parse(serde_json::json!({"records": [
            {"recordId": "a", "result": "Ok", "data": b64(b"x"), "metadata": {
                "partitionKeys": {"customerId": "123", "year": 2026, "vip": true},
                "otfMetadata": {"destinationDatabaseName": "db", "destinationTableName": "t", "operation": "insert"},
            }},
            {"recordId": "b", "result": "Ok", "data": b64(b"y"), "metadata": null},
            entry("c", "Ok", b"z"),
        ]}))
        .expect("valid");
        let Outcome::Ok { partition_keys, otf, .. } = &outcomes[0] else { panic!("{:?}", outcomes[0]) };
        let expected: BTreeMap<String, String> = [("customerId", "123"), ("year", "2026"), ("vip", "true")]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .into();
        assert_eq!(partition_keys, &expected);
        let otf = otf.as_ref().expect("otf metadata");
        assert_eq!(otf["destinationTableName"], "t");
        assert_eq!(otf["operation"], "insert");
        let Outcome::Ok { partition_keys, otf, .. } = &outcomes[1] else { panic!("{:?}", outcomes[1]) };
        assert!(partition_keys.is_empty() && otf.is_none());
    }

    // ---- configuration ----

    #[test]
    fn config_defaults_and_ranges() {
        let cfg = LambdaConfig::from_parameters(&[("LambdaArn", ARN)]).expect("valid");
        assert_eq!(cfg.number_of_retries, 3);
        assert_eq!(cfg.buffer_size_in_mbs, 1.0);
        assert_eq!(cfg.buffer_size_bytes(), 1_048_576);
        assert_eq!(cfg.buffer_interval, Duration::from_secs(60));
        assert_eq!(cfg.role_arn, None);
        assert_eq!(cfg.function.name, "transform");
        assert_eq!(cfg.function.region, "us-east-1");
        assert_eq!(cfg.function.version(), "$LATEST");

        let cfg = LambdaConfig::from_parameters(&[
            ("LambdaArn", format!("{ARN}:$LATEST")),
            ("NumberOfRetries", "0".to_owned()),
            ("RoleArn", "arn:aws:iam::123456789012:role/firehose".to_owned()),
            ("BufferSizeInMBs", "0.2".to_owned()),
            ("BufferIntervalInSeconds", "900".to_owned()),
        ])
        .expect("valid");
        assert_eq!(cfg.number_of_retries, 0);
        assert_eq!(cfg.function.qualifier.as_deref(), Some("$LATEST"));
        assert_eq!(cfg.buffer_size_bytes(), 209_715);
        assert_eq!(cfg.buffer_interval, Duration::from_secs(900));
        assert!(cfg.role_arn.is_some());
        let cfg =
            LambdaConfig::from_parameters(&[("LambdaArn", format!("{ARN}:12")), ("NumberOfRetries", "300".into())])
                .expect("valid");
        assert_eq!((cfg.function.version(), cfg.number_of_retries), ("12", 300));

        for (name, value) in [
            ("NumberOfRetries", "301"),
            ("NumberOfRetries", "-1"),
            ("NumberOfRetries", "three"),
            ("BufferSizeInMBs", "0.1"),
            ("BufferSizeInMBs", "3.5"),
            ("BufferSizeInMBs", "NaN"),
            ("BufferIntervalInSeconds", "901"),
            ("BufferIntervalInSeconds", "1.5"),
        ] {
            let errors = LambdaConfig::from_parameters(&[("LambdaArn", ARN), (name, value)]).expect_err(value);
            assert!(matches!(&errors[..], [LambdaParamError::Invalid { name: n, .. }] if *n == name), "{errors:?}");
            assert!(errors[0].to_string().contains(name), "{}", errors[0]);
        }
    }

    #[test]
    fn config_errors_are_all_reported() {
        let errors = LambdaConfig::from_parameters(&[
            ("NumberOfRetries", "1000"),
            ("Delimiter", "Cg=="),
            ("NumberOfRetry", "1"),
            ("NumberOfRetries", "1"),
        ])
        .expect_err("invalid");
        assert_eq!(
            errors,
            vec![
                LambdaParamError::Invalid {
                    name: "NumberOfRetries",
                    value: "1000".to_owned(),
                    expected: "an integer from 0 to 300"
                },
                LambdaParamError::Unknown("NumberOfRetry".to_owned()),
                LambdaParamError::Duplicate("NumberOfRetries".to_owned()),
                LambdaParamError::MissingLambdaArn,
            ]
        );
        for arn in
            ["transform", "arn:aws:lambda:us-east-1:1:function:", "arn:aws:s3:::bucket", "arn:aws:lambda:r:1:layer:x"]
        {
            let errors = LambdaConfig::from_parameters(&[("LambdaArn", arn)]).expect_err(arn);
            assert_eq!(errors, vec![LambdaParamError::InvalidLambdaArn(arn.to_owned())]);
        }
    }

    // ---- retries (in-process backend) ----

    #[tokio::test]
    async fn retries_use_a_fresh_invocation_id_and_the_same_records() {
        // Two invalid responses, then a valid one.
        let backend = FnBackend::new(|inv, call| {
            if call <= 2 {
                let ids = ids_of(&event_of(inv));
                let dup: Vec<Value> = ids.iter().chain(&ids).map(|id| entry(id, "Ok", b"x")).collect();
                Ok(serde_json::to_vec(&serde_json::json!({ "records": dup })).expect("encodes"))
            } else {
                Ok(echo_response(inv))
            }
        });
        let records = [rec(b"one"), rec(b"two")];
        let outcomes = invoke_batch(&backend, &cfg(3), &stream(), &records).await;
        assert_eq!(ok_data(&outcomes[0]), b"one");
        assert_eq!(ok_data(&outcomes[1]), b"two");

        let invocations = backend.invocations();
        assert_eq!(invocations.len(), 3);
        let invocation_ids: HashSet<&str> = invocations.iter().map(|i| i.invocation_id.as_str()).collect();
        assert_eq!(invocation_ids.len(), 3);
        let records_of = |i: &Invocation| event_of(i)["records"].clone();
        assert_eq!(records_of(&invocations[0]), records_of(&invocations[1]));
        assert_eq!(records_of(&invocations[0]), records_of(&invocations[2]));
    }

    #[tokio::test]
    async fn after_the_retry_budget_every_record_fails_with_the_last_code() {
        let backend = FnBackend::new(|_, call| match call {
            1 => Err(InvokeError::Throttled("slow down".to_owned())),
            _ => Ok(b"{\"records\": \"nope\"}".to_vec()),
        });
        let outcomes = invoke_batch(&backend, &cfg(2), &stream(), &[rec(b"a"), rec(b"b")]).await;
        assert_eq!(backend.invocations().len(), 3);
        for outcome in &outcomes {
            let (code, _, attempts) = failed(outcome);
            assert_eq!((code, attempts), (ErrorCode::JsonProcessingException, 3));
        }

        let backend = FnBackend::new(|_, _| Err(InvokeError::Throttled("slow down".to_owned())));
        let outcomes = invoke_batch(&backend, &cfg(0), &stream(), &[rec(b"a")]).await;
        assert_eq!(failed(&outcomes[0]).0, ErrorCode::InvokeLimitExceeded);
        assert_eq!(backend.invocations().len(), 1);
        assert!(invoke_batch(&backend, &cfg(0), &stream(), &[]).await.is_empty());
        assert_eq!(backend.invocations().len(), 1);
    }

    #[test]
    fn retry_pauses_double_up_to_the_cap() {
        let first = Duration::from_millis(500);
        assert_eq!(retry_pause(first, 1), first);
        assert_eq!(retry_pause(first, 2), Duration::from_secs(1));
        assert_eq!(retry_pause(first, 300), MAX_RETRY_BACKOFF);
        assert_eq!(retry_pause(Duration::ZERO, 5), Duration::ZERO);
    }

    #[test]
    fn invoke_errors_map_to_lambda_codes() {
        assert_eq!(InvokeError::Timeout(DEFAULT_TIMEOUT).code(), ErrorCode::FunctionError);
        assert_eq!(InvokeError::Crashed(String::new()).code(), ErrorCode::FunctionError);
        assert_eq!(InvokeError::ResponseTooLarge.code(), ErrorCode::FunctionError);
        assert_eq!(InvokeError::InvokeDenied(String::new()).code().as_str(), "Lambda.InvokeAccessDenied");
        assert_eq!(InvokeError::AssumeRoleDenied(String::new()).code().as_str(), "Lambda.AssumeRoleAccessDenied");
        assert_eq!(InvokeError::Unavailable(String::new()).code().as_str(), "Lambda.ResourceNotFound");
    }

    // ---- Python handlers ----

    #[tokio::test]
    async fn a_flaky_handler_succeeds_on_the_third_attempt() {
        let dir = tempfile::tempdir().expect("tempdir");
        let counter = dir.path().join("count");
        let options = WorkerOptions {
            env: vec![("COUNTER_FILE".to_owned(), counter.to_string_lossy().into_owned())],
            ..options()
        };
        let function = handler("handlers.py", "flaky", options);

        let outcomes = invoke_batch(&function, &cfg(3), &stream(), &[rec(b"one"), rec(b"two")]).await;

        assert_eq!(ok_data(&outcomes[0]), b"one");
        assert_eq!(ok_data(&outcomes[1]), b"two");
        assert_eq!(std::fs::read_to_string(&counter).expect("counter"), "3");
        // A raised exception keeps the worker.
        assert_eq!(function.workers_started(), 1);
        let log = std::fs::read_to_string(dir.path().join("count.log")).expect("log");
        let attempts: Vec<Value> = log.lines().map(|l| serde_json::from_str(l).expect("json")).collect();
        assert_eq!(attempts.len(), 3);
        let invocation_ids: HashSet<&str> = attempts.iter().filter_map(|a| a["invocationId"].as_str()).collect();
        assert_eq!(invocation_ids.len(), 3);
        assert!(attempts.iter().all(|a| a["recordIds"] == attempts[0]["recordIds"]));
    }

    #[tokio::test]
    async fn a_handler_that_always_raises_fails_every_record_after_four_attempts() {
        let function = handler("handlers.py", "always_raise", options());
        let outcomes = invoke_batch(&function, &cfg(3), &stream(), &[rec(b"a"), rec(b"b"), rec(b"c")]).await;
        assert_eq!(outcomes.len(), 3);
        for outcome in &outcomes {
            let (code, detail, attempts) = failed(outcome);
            assert_eq!((code, attempts), (ErrorCode::FunctionError, 4));
            assert!(detail.contains("ValueError") && detail.contains("always fails"), "{detail}");
        }
        assert_eq!(ErrorCode::FunctionError.as_str(), "Lambda.FunctionError");
        assert_eq!(
            ErrorCode::FunctionError.message(),
            "The Lambda function was successfully invoked but it returned an error result."
        );
    }

    /// `boto3` when it is installed, else the fixture stand-in (seed 001 imports it, never calls it).
    fn seed_env() -> Vec<(String, String)> {
        let installed = std::process::Command::new(python())
            .args(["-c", "import boto3"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if installed {
            Vec::new()
        } else {
            vec![("PYTHONPATH".to_owned(), fixtures().join("stubs").to_string_lossy().into_owned())]
        }
    }

    #[tokio::test]
    async fn seed_001_lambda_function_runs_unchanged() {
        // The clickstream events of seed 001's test-data.json as `jq -c '.[]'` prints them, sent with
        // `echo $record | base64` (so with a newline), and an empty object.
        let file = std::fs::read_to_string(fixtures().join("seed001/test-data.jsonl")).expect("fixture");
        let clicks: Vec<&str> = file.lines().chain(["{}"]).collect();
        assert_eq!(clicks.len(), 4);
        let mut records: Vec<InputRecord> = clicks.iter().map(|c| rec(format!("{c}\n").as_bytes())).collect();
        // The seed's error-handling test record: base64 of "invalid-json-data".
        records.push(rec(&STANDARD.decode("aW52YWxpZC1qc29uLWRhdGE=").expect("base64")));

        let options = WorkerOptions { env: seed_env(), ..options() };
        let function = handler("seed001/lambda_function.py", "lambda_handler", options);
        let started = chrono::Utc::now().naive_utc();
        let outcomes = invoke_batch(&function, &cfg(3), &stream(), &records).await;

        let expected = [
            (
                "page_view",
                "user123",
                "session456",
                "https://example.com/products",
                "https://google.com",
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64)",
                "192.168.1.1",
            ),
            (
                "click",
                "user456",
                "session789",
                "https://example.com/checkout",
                "https://example.com/cart",
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7)",
                "192.168.1.2",
            ),
            (
                "purchase",
                "user789",
                "session101",
                "https://example.com/success",
                "https://example.com/checkout",
                "Mozilla/5.0 (X11; Linux x86_64)",
                "192.168.1.3",
            ),
            ("unknown", "anonymous", "", "", "", "", ""),
        ];
        for (outcome, (event_type, user, session, page, referrer, agent, ip)) in outcomes.iter().zip(expected) {
            let text = std::str::from_utf8(ok_data(outcome)).expect("utf-8");
            // json.dumps of the seed's dict: its keys in order, then a newline.
            let middle = format!(
                "\", \"event_type\": \"{event_type}\", \"user_id\": \"{user}\", \"session_id\": \"{session}\", \
                 \"page_url\": \"{page}\", \"referrer\": \"{referrer}\", \"user_agent\": \"{agent}\", \
                 \"ip_address\": \"{ip}\", \"processed_by\": \"lambda-firehose-transform\", \"processing_timestamp\": "
            );
            let rest = text.strip_prefix("{\"timestamp\": \"").expect(text);
            let (timestamp, rest) = rest.split_once(&middle).expect(text);
            let processing = rest.strip_suffix("}\n").expect(text);
            let timestamp = chrono::NaiveDateTime::parse_from_str(timestamp, "%Y-%m-%dT%H:%M:%S%.f").expect(text);
            assert!((timestamp - started).num_seconds().abs() < 60, "{timestamp} vs {started}");
            let processing: f64 = processing.parse().expect(text);
            let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs_f64();
            assert!((processing - now).abs() < 86_400.0, "{processing}");
        }
        // Malformed input → the seed marks it ProcessingFailed.
        let (code, _, attempts) = failed(&outcomes[4]);
        assert_eq!((code, attempts), (ErrorCode::ProcessingFailedStatus, 1));
    }

    #[tokio::test]
    async fn the_extra2_enrichment_adds_fuel_times_lap_time() {
        // Seed 002's telemetry record as the function leaves it (copied from the seed); the input is
        // the same record without `EXTRA2`.
        let expected = std::fs::read_to_string(fixtures().join("extra2/expected_output.json")).expect("fixture");
        let input = expected.trim_end().replace(", \"EXTRA2\": 181.43999999999997", "");
        assert_ne!(input, expected.trim_end());
        let function = handler("extra2/hello.py", "lambda_handler", options());
        let outcomes = invoke_batch(&function, &cfg(0), &stream(), &[rec(input.as_bytes())]).await;
        assert_eq!(std::str::from_utf8(ok_data(&outcomes[0])).expect("utf-8"), expected);
    }

    #[tokio::test]
    async fn the_spurious_record_filter_drops_bad_trips() {
        let trip = |changes: Value| {
            let mut trip = serde_json::json!({
                "type": "trip", "trip_id": 1, "pickup_latitude": 40.75, "pickup_longitude": -73.98,
                "dropoff_latitude": 40.76, "dropoff_longitude": -73.97, "trip_distance": 1.2, "passenger_count": 1,
                "pickup_datetime": "2020-09-03T09:00:00Z", "dropoff_datetime": "2020-09-03T09:10:00Z",
                "total_amount": 9.5, "vendor_id": 2,
            });
            for (k, v) in changes.as_object().expect("object") {
                trip[k] = v.clone();
            }
            rec(trip.to_string().as_bytes())
        };
        let records = [
            trip(serde_json::json!({})),
            trip(serde_json::json!({"trip_distance": 0.0})),
            trip(serde_json::json!({"pickup_latitude": 0.0, "pickup_longitude": 0.0})),
            trip(serde_json::json!({"dropoff_datetime": "2020-09-03T08:00:00Z"})),
            trip(serde_json::json!({"type": "watermark"})),
            trip(serde_json::json!({"total_amount": null})),
            rec(b"definitely not json"),
        ];
        let function = handler("spurious_filter/lambda_function.py", "lambda_handler", options());
        let outcomes = invoke_batch(&function, &cfg(0), &stream(), &records).await;

        assert_eq!(
            std::str::from_utf8(ok_data(&outcomes[0])).expect("utf-8"),
            "{\"pickup_latitude\": 40.75, \"pickup_longitude\": -73.98, \"dropoff_latitude\": 40.76, \
             \"dropoff_longitude\": -73.97, \"trip_id\": 1, \"trip_distance\": 1.2, \"passenger_count\": 1, \
             \"pickup_datetime\": \"2020-09-03T09:00:00Z\", \"dropoff_datetime\": \"2020-09-03T09:10:00Z\", \
             \"total_amount\": 9.5}\n"
        );
        for (n, outcome) in outcomes.iter().enumerate().take(6).skip(1) {
            assert_eq!(outcome, &Outcome::Dropped, "record {n}");
        }
        assert_eq!(failed(&outcomes[6]).0, ErrorCode::ProcessingFailedStatus);
    }

    /// Collects log events as text.
    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<String>>>);

    struct Fields<'a>(&'a mut String);

    impl tracing::field::Visit for Fields<'_> {
        fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
            use std::fmt::Write;
            let _ = write!(self.0, " {}={:?}", field.name(), value);
        }
    }

    impl tracing::Subscriber for Capture {
        fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
            tracing::span::Id::from_u64(1)
        }
        fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
        fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
        fn event(&self, event: &tracing::Event<'_>) {
            let mut text = event.metadata().target().to_owned();
            event.record(&mut Fields(&mut text));
            self.0.lock().push(text);
        }
        fn enter(&self, _: &tracing::span::Id) {}
        fn exit(&self, _: &tracing::span::Id) {}
    }

    #[tokio::test]
    async fn prints_to_stdout_do_not_break_the_protocol_and_stderr_reaches_the_log() {
        let capture = Capture::default();
        let _guard = tracing::subscriber::set_default(capture.clone());
        let function = handler("handlers.py", "noisy", options());

        for round in 0..2 {
            let outcomes = invoke_batch(&function, &cfg(0), &stream(), &[rec(b"keep me")]).await;
            assert_eq!(ok_data(&outcomes[0]), b"keep me", "round {round}");
        }
        assert_eq!(function.workers_started(), 1);

        let wanted = ["noisy-stderr-marker", "plain print to stdout", "raw write to fd 1"];
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let lines = capture.0.lock().clone();
            let found = wanted.iter().all(|w| {
                lines
                    .iter()
                    .any(|l| l.starts_with("spillway::lambda") && l.contains(w) && l.contains("function=\"transform\""))
            });
            if found {
                break;
            }
            assert!(Instant::now() < deadline, "log lines: {lines:#?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn a_timed_out_worker_is_killed_and_replaced() {
        let options = WorkerOptions { timeout: Duration::from_secs(1), ..options() };
        let function = handler("handlers.py", "sleepy", options);
        let warm = invoke_batch(&function, &cfg(0), &stream(), &[rec(b"warm up")]).await;
        assert_eq!(ok_data(&warm[0]), b"warm up");

        let start = Instant::now();
        let outcomes = invoke_batch(&function, &cfg(0), &stream(), &[rec(b"sleep")]).await;
        let (code, detail, attempts) = failed(&outcomes[0]);
        assert_eq!((code, attempts), (ErrorCode::FunctionError, 1));
        assert!(detail.contains("did not answer"), "{detail}");
        assert!(start.elapsed() < Duration::from_secs(5), "{:?}", start.elapsed());

        let outcomes = invoke_batch(&function, &cfg(0), &stream(), &[rec(b"awake")]).await;
        assert_eq!(ok_data(&outcomes[0]), b"awake");
        assert_eq!(function.workers_started(), 2);
    }

    #[tokio::test]
    async fn a_crashed_worker_is_restarted_and_the_attempt_retried() {
        let function = handler("handlers.py", "crashy", options());
        let outcomes = invoke_batch(&function, &cfg(2), &stream(), &[rec(b"crash")]).await;
        let (code, detail, attempts) = failed(&outcomes[0]);
        assert_eq!((code, attempts), (ErrorCode::FunctionError, 3));
        assert!(detail.contains("exit status: 3"), "{detail}");
        assert_eq!(function.workers_started(), 3);

        let outcomes = invoke_batch(&function, &cfg(0), &stream(), &[rec(b"fine")]).await;
        assert_eq!(ok_data(&outcomes[0]), b"fine");
        assert_eq!(function.workers_started(), 4);
    }

    #[tokio::test]
    async fn a_worker_that_died_while_idle_is_replaced_without_spending_an_attempt() {
        let function = handler("handlers.py", "exits_when_idle", options());
        let outcomes = invoke_batch(&function, &cfg(0), &stream(), &[rec(b"exit later")]).await;
        assert_eq!(ok_data(&outcomes[0]), b"exit later");
        tokio::time::sleep(Duration::from_millis(500)).await;

        let outcomes = invoke_batch(&function, &cfg(0), &stream(), &[rec(b"still here")]).await;
        assert_eq!(ok_data(&outcomes[0]), b"still here");
        assert_eq!(function.workers_started(), 2);
    }

    #[tokio::test]
    async fn a_multi_line_payload_still_travels_as_one_request_line() {
        let function = handler("handlers.py", "echo", options());
        let event = serde_json::json!({"invocationId": "i", "records": [{"recordId": "1", "data": b64(b"x\ny")}]});
        let payload = serde_json::to_string_pretty(&event).expect("encodes");
        assert!(payload.contains('\n'));
        let body = function.invoke(&Invocation { invocation_id: "i".to_owned(), payload }).await.expect("ok");
        let outcomes = parse_response(&body, &["1"], 1).expect("valid");
        assert_eq!(ok_data(&outcomes[0]), b"x\ny");
    }

    #[tokio::test]
    async fn the_context_object_has_the_lambda_attributes() {
        let arn = "arn:aws:lambda:eu-west-1:123456789012:function:enrich:7";
        let options = WorkerOptions {
            memory_limit_mb: 256,
            env: vec![("CUSTOM_SETTING".to_owned(), "on".to_owned())],
            ..options()
        };
        let function =
            PythonHandler::new(fixtures().join("handlers.py"), "context_probe", arn, options).expect("handler");
        let mut stream = stream();
        stream.region = "eu-west-1".to_owned();
        let invocation_id = Uuid::new_v4().hyphenated().to_string();
        let ids = ["1".to_owned()];
        let payload = event_payload(&event_head(&invocation_id, &stream), &[event_record(&ids[0], &rec(b"x"))], &[0]);

        let body = function.invoke(&Invocation { invocation_id: invocation_id.clone(), payload }).await.expect("ok");
        let outcomes = parse_response(&body, &["1"], 1).expect("valid");
        let probe: Value = serde_json::from_slice(ok_data(&outcomes[0])).expect("json");

        assert_eq!(probe["function_name"], "enrich");
        assert_eq!(probe["function_version"], "7");
        assert_eq!(probe["invoked_function_arn"], arn);
        assert_eq!(probe["memory_limit_in_mb"], "256");
        assert_eq!(probe["aws_request_id"], invocation_id.as_str());
        assert_eq!(probe["log_group_name"], "/aws/lambda/enrich");
        let stream_name = probe["log_stream_name"].as_str().expect("string");
        assert!(stream_name.contains("/[$LATEST]") && stream_name.len() == 10 + 10 + 32, "{stream_name}");
        let remaining = probe["remaining_ms"].as_i64().expect("number");
        assert!(remaining > 10_000 && remaining <= 20_000, "{remaining}");
        assert_eq!(probe["cwd"], fixtures().canonicalize().expect("path").to_string_lossy().as_ref());
        assert_eq!(probe["aws_region"], "eu-west-1");
        assert_eq!(probe["stdin"], "");
        assert_eq!(probe["custom_env"], "on");
    }

    #[tokio::test]
    async fn runtime_errors_are_function_errors_and_bad_returns_are_json_errors() {
        for (name, expected) in
            [("no_such_handler", "Runtime.HandlerNotFound"), ("not_serializable", "Runtime.MarshalError")]
        {
            let function = handler("handlers.py", name, options());
            let outcomes = invoke_batch(&function, &cfg(1), &stream(), &[rec(b"a")]).await;
            let (code, detail, attempts) = failed(&outcomes[0]);
            assert_eq!((code, attempts), (ErrorCode::FunctionError, 2), "{name}");
            assert!(detail.contains(expected), "{name}: {detail}");
            assert_eq!(function.workers_started(), 1, "{name}");
        }
        let function = handler("broken_import/lambda_function.py", "lambda_handler", options());
        let outcomes = invoke_batch(&function, &cfg(0), &stream(), &[rec(b"a")]).await;
        let (code, detail, _) = failed(&outcomes[0]);
        assert_eq!(code, ErrorCode::FunctionError);
        assert!(detail.contains("Runtime.ImportModuleError: Unable to import module 'lambda_function'"), "{detail}");

        let function = handler("handlers.py", "returns_none", options());
        let outcomes = invoke_batch(&function, &cfg(0), &stream(), &[rec(b"a")]).await;
        assert_eq!(failed(&outcomes[0]).0, ErrorCode::JsonProcessingException);

        assert!(matches!(
            PythonHandler::new(fixtures().join("absent.py"), "f", ARN, options()),
            Err(HandlerError::MissingFile(_))
        ));
        assert!(matches!(
            PythonHandler::new(fixtures().join("handlers.py"), "lambda_function.handler", ARN, options()),
            Err(HandlerError::BadHandlerName(_))
        ));
        let no_python = WorkerOptions { python: PathBuf::from("/nonexistent/python3"), ..options() };
        let function = handler("handlers.py", "echo", no_python);
        let outcomes = invoke_batch(&function, &cfg(0), &stream(), &[rec(b"a")]).await;
        assert_eq!(failed(&outcomes[0]).0, ErrorCode::ResourceNotFound);
    }

    #[tokio::test]
    async fn workers_serve_concurrent_invocations_up_to_the_pool_size() {
        let options = WorkerOptions { workers: 2, ..options() };
        let function = handler("handlers.py", "slow_echo", options);
        let (cfg, stream) = (cfg(0), stream());
        let records = [[rec(b"a")], [rec(b"b")], [rec(b"c")]];
        let (a, b, c) = tokio::join!(
            invoke_batch(&function, &cfg, &stream, &records[0]),
            invoke_batch(&function, &cfg, &stream, &records[1]),
            invoke_batch(&function, &cfg, &stream, &records[2]),
        );
        assert_eq!((ok_data(&a[0]), ok_data(&b[0]), ok_data(&c[0])), (&b"a"[..], &b"b"[..], &b"c"[..]));
        assert_eq!(function.workers_started(), 2);

        function.shutdown().await;
        let outcomes = invoke_batch(&function, &cfg, &stream, &[rec(b"late")]).await;
        assert_eq!(failed(&outcomes[0]).0, ErrorCode::ResourceNotFound);
    }

    // ---- any command speaking the protocol ----

    #[tokio::test]
    async fn a_command_speaking_the_json_lines_protocol() {
        let argv = vec![
            python().to_string_lossy().into_owned(),
            fixtures().join("echo_command.py").to_string_lossy().into_owned(),
        ];
        let function = CommandHandler::new(argv, ARN, options()).expect("command");

        let outcomes = invoke_batch(&function, &cfg(0), &stream(), &[rec(b"hello"), rec(b"world")]).await;
        assert_eq!((ok_data(&outcomes[0]), ok_data(&outcomes[1])), (&b"HELLO"[..], &b"WORLD"[..]));

        // An error line is a function error; the process stays.
        let outcomes = invoke_batch(&function, &cfg(0), &stream(), &[rec(b"fail")]).await;
        let (code, detail, _) = failed(&outcomes[0]);
        assert_eq!(code, ErrorCode::FunctionError);
        assert!(detail.contains("Refused") && detail.contains("asked to fail"), "{detail}");
        assert_eq!(function.workers_started(), 1);

        // A line that is not the protocol kills the process; the next invocation starts another.
        let outcomes = invoke_batch(&function, &cfg(0), &stream(), &[rec(b"garbage")]).await;
        let (code, detail, _) = failed(&outcomes[0]);
        assert_eq!(code, ErrorCode::FunctionError);
        assert!(detail.contains("not JSON"), "{detail}");
        let outcomes = invoke_batch(&function, &cfg(0), &stream(), &[rec(b"again")]).await;
        assert_eq!(ok_data(&outcomes[0]), b"AGAIN");
        assert_eq!(function.workers_started(), 2);

        assert_eq!(CommandHandler::new(vec![], ARN, options()).err(), Some(HandlerError::EmptyCommand));
    }

    #[tokio::test]
    async fn a_shell_command_can_answer_too() {
        // `sh` answering every request with an empty (all-missing) response.
        let argv =
            ["sh", "-c", r#"while read -r line; do echo '{"ok": {"records": []}}'; done"#].map(str::to_owned).to_vec();
        let function = CommandHandler::new(argv, ARN, options()).expect("command");
        let outcomes = invoke_batch(&function, &cfg(0), &stream(), &[rec(b"a")]).await;
        assert_eq!(failed(&outcomes[0]).0, ErrorCode::MissingRecordId);
    }

    #[tokio::test]
    async fn an_oversized_reply_line_is_a_function_error() {
        let argv = [
            python().to_string_lossy().into_owned(),
            "-c".to_owned(),
            concat!(
                "import sys\n",
                "for _ in sys.stdin:\n",
                "    sys.stdout.write('{\"ok\": \"' + 'x' * (7 << 20) + '\"}\\n')\n",
                "    sys.stdout.flush()\n",
            )
            .to_owned(),
        ]
        .to_vec();
        let function = CommandHandler::new(argv, ARN, options()).expect("command");
        let outcomes = invoke_batch(&function, &cfg(0), &stream(), &[rec(b"a")]).await;
        let (code, detail, _) = failed(&outcomes[0]);
        assert_eq!(code, ErrorCode::FunctionError);
        assert!(detail.contains("limit"), "{detail}");
    }

    #[tokio::test]
    async fn read_capped_splits_long_lines_and_reports_eof() {
        let mut reader = BufReader::new(&b"abc\ndefghij\nxy"[..]);
        let mut out = Vec::new();
        assert_eq!(read_capped(&mut reader, 5, &mut out).await.expect("read"), Stop::Newline);
        assert_eq!(out, b"abc");
        out.clear();
        assert_eq!(read_capped(&mut reader, 5, &mut out).await.expect("read"), Stop::Cap);
        assert_eq!(out, b"defgh");
        out.clear();
        assert_eq!(read_capped(&mut reader, 5, &mut out).await.expect("read"), Stop::Newline);
        assert_eq!(out, b"ij");
        out.clear();
        assert_eq!(read_capped(&mut reader, 5, &mut out).await.expect("read"), Stop::Eof);
        assert_eq!(out, b"xy");
    }
}
