//! The processing chain of a stream (`ProcessingConfiguration`, reference §11) and the partitioner
//! of dynamic partitioning (§12): validated once into a [`ProcessingPlan`], run by the supervisor
//! over batches of WAL records with [`Processor::run`].
//!
//! Order (§11.1): Decompression → CloudWatch Logs message extraction → RecordDeAggregation →
//! Lambda → MetadataExtraction (jq) → partition prefix → AppendDelimiterToRecord, whatever the
//! order of the processors in the configuration.
//!
//! Invariants:
//! - every input record ends as exactly one of: output record(s) (de-aggregation can make several),
//!   a dropped record (the function said `Dropped`), or a [`FailedRecord`] carrying the record's
//!   *original* bytes (`rawData` of the error output is always the ingested record, §10);
//! - nothing here panics on record contents; bad records become failed records;
//! - output records keep the order of their inputs (the order of the WAL).

use crate::processors::builtin::{BuiltinProcessor, Failed, PROCESSING_FAILED, Record, Stage, deaggregate_kpl};
use crate::processors::jq::{METADATA_EXTRACTION_FAILED, MetadataQuery, QueryKeys};
use crate::processors::lambda::{
    ErrorCode, FunctionBackend, InputRecord, LambdaConfig, Outcome, StreamContext, invoke_batch,
};
use bytes::Bytes;
use chrono::{TimeZone, Utc};
use serde_json::Value;
use spillway_model::prefix::{PartitionKeys, PrefixPlan};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where otfMetadata members are kept among a record's Lambda partition keys.
const OTF_KEY_PREFIX: &str = "\u{0}otfMetadata.";

/// How records find their Iceberg table (reference §14, "Precedence").
#[derive(Debug, Clone, Default)]
pub struct IcebergRouting {
    /// The single `DestinationTableConfiguration` (database, table), if there is exactly one.
    pub default_table: Option<(String, String)>,
}

/// An Iceberg record's destination, as the partition id of the supervisor: `db/table/operation`
/// (names are `[a-zA-Z0-9._]`, so `/` cannot occur in them).
pub fn iceberg_partition(database: &str, table: &str, operation: &str) -> String {
    format!("{database}/{table}/{operation}")
}

/// The (database, table, operation) of an Iceberg partition id.
pub fn parse_iceberg_partition(id: &str) -> Option<(&str, &str, &str)> {
    let mut parts = id.splitn(3, '/');
    Some((parts.next()?, parts.next()?, parts.next()?))
}

fn iceberg_name_ok(name: &str) -> bool {
    (1..=255).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_')
}

impl IcebergRouting {
    /// The partition id of a record, or why it has no valid destination (an error code and message).
    fn route(&self, keys: &Keys<'_>) -> Result<String, (&'static str, String)> {
        let pick = |member: &str| {
            keys.lambda(&format!("{OTF_KEY_PREFIX}{member}")).or_else(|| keys.query(member)).map(str::to_string)
        };
        let (database, table) = match (pick("destinationDatabaseName"), pick("destinationTableName")) {
            (Some(d), Some(t)) => (d, t),
            (d, t) => match &self.default_table {
                Some((dd, dt)) => (d.unwrap_or_else(|| dd.clone()), t.unwrap_or_else(|| dt.clone())),
                None => {
                    return Err((
                        ICEBERG_NO_SUCH_TABLE,
                        "The record names no destination table (destinationDatabaseName and destinationTableName from \
                         the Lambda's otfMetadata or MetadataExtraction) and the stream has no single table."
                            .into(),
                    ));
                }
            },
        };
        for name in [&database, &table] {
            if !iceberg_name_ok(name) {
                return Err((ICEBERG_INVALID_TABLE_NAME, format!("Invalid database or table name '{name}'.")));
            }
        }
        let operation = pick("operation").unwrap_or_else(|| "insert".into()).to_ascii_lowercase();
        if !matches!(operation.as_str(), "insert" | "update" | "delete") {
            return Err((
                ICEBERG_INVALID_OPERATION,
                format!("Invalid operation '{operation}'; it must be insert, update or delete."),
            ));
        }
        Ok(iceberg_partition(&database, &table, &operation))
    }
}

/// Error codes of Iceberg routing (reference §14).
pub const ICEBERG_NO_SUCH_TABLE: &str = "Iceberg.NoSuchTable";
pub const ICEBERG_INVALID_TABLE_NAME: &str = "Iceberg.InvalidTableName";
pub const ICEBERG_INVALID_OPERATION: &str = "Iceberg.InvalidOperation";

/// Error code of records beyond the active-partition limit (observed, reference §12).
pub const ACTIVE_PARTITIONS_LIMIT_EXCEEDED: &str = "DynamicPartitioning.ActivePartitionsLimitExceeded";

/// The validated `ProcessingConfiguration` of a stream (only when enabled with processors).
#[derive(Debug)]
pub struct ProcessingPlan {
    /// Built-ins that run before the Lambda stage, in stage order.
    pub pre: Vec<BuiltinProcessor>,
    pub lambda: Option<LambdaConfig>,
    /// `MetadataExtraction`: the compiled jq query.
    pub metadata: Option<MetadataQuery>,
    /// `AppendDelimiterToRecord`: an LF after every record.
    pub append_delimiter: bool,
}

fn parameters(processor: &Value) -> Vec<(String, String)> {
    processor
        .get("Parameters")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .map(|p| {
                    let s = |k: &str| p.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
                    (s("ParameterName"), s("ParameterValue"))
                })
                .collect()
        })
        .unwrap_or_default()
}

impl ProcessingPlan {
    /// The plan of an (Extended) S3 destination configuration; `None` when processing is off
    /// (absent, `Enabled: false`). Errors are messages for `InvalidArgumentException`.
    pub fn from_config(config: &Value) -> Result<Option<ProcessingPlan>, String> {
        let Some(pc) = config.get("ProcessingConfiguration") else { return Ok(None) };
        if !pc.get("Enabled").and_then(Value::as_bool).unwrap_or(false) {
            return Ok(None);
        }
        let processors = pc.get("Processors").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
        if processors.is_empty() {
            return Err("ProcessingConfiguration is enabled but has no Processors.".into());
        }
        let mut plan = ProcessingPlan { pre: Vec::new(), lambda: None, metadata: None, append_delimiter: false };
        let mut seen: Vec<&str> = Vec::new();
        for p in processors {
            let kind = p.get("Type").and_then(Value::as_str).unwrap_or_default();
            if seen.contains(&kind) {
                return Err(format!("Processor type {kind} can be specified at most once."));
            }
            seen.push(kind);
            let params = parameters(p);
            match Stage::of_type(kind) {
                Some(Stage::Lambda) => {
                    let cfg = LambdaConfig::from_parameters(&params).map_err(|errors| {
                        let list: Vec<String> = errors.iter().map(ToString::to_string).collect();
                        format!("Invalid Lambda processor parameters: {}.", list.join("; "))
                    })?;
                    plan.lambda = Some(cfg);
                }
                Some(Stage::MetadataExtraction) => {
                    let mut query = None;
                    for (name, value) in &params {
                        match name.as_str() {
                            "MetadataExtractionQuery" => query = Some(value.as_str()),
                            "JsonParsingEngine" if value == "JQ-1.6" => {}
                            "JsonParsingEngine" => {
                                return Err(format!("JsonParsingEngine must be JQ-1.6, got {value:?}."));
                            }
                            other => {
                                return Err(format!(
                                    "Parameter {other} does not apply to processor type MetadataExtraction."
                                ));
                            }
                        }
                    }
                    let query = query.ok_or("MetadataExtraction requires a MetadataExtractionQuery parameter.")?;
                    plan.metadata = Some(MetadataQuery::compile(query).map_err(|e| format!("{e}."))?);
                }
                Some(Stage::AppendDelimiter) => {
                    BuiltinProcessor::from_parameters(kind, &params)?;
                    plan.append_delimiter = true;
                }
                Some(_) => plan.pre.push(BuiltinProcessor::from_parameters(kind, &params)?),
                None => return Err(format!("Processor type {kind:?} is not supported.")),
            }
        }
        plan.pre.sort_by_key(BuiltinProcessor::stage);
        let has = |s: Stage| plan.pre.iter().any(|p| p.stage() == s);
        if has(Stage::MessageExtraction) && !has(Stage::Decompression) {
            return Err("CloudWatchLogProcessing requires a Decompression processor.".into());
        }
        Ok(Some(plan))
    }

    /// Checks that the partition keys a `Prefix` uses can be produced (create-time, §12).
    pub fn check_partition_keys(plan: Option<&ProcessingPlan>, prefix: &PrefixPlan) -> Result<(), String> {
        let (query_keys, lambda_keys) = prefix.partition_key_names();
        if !query_keys.is_empty() {
            let Some(query) = plan.and_then(|p| p.metadata.as_ref()) else {
                return Err(format!(
                    "Prefix uses partitionKeyFromQuery:{} but no MetadataExtraction processor is enabled.",
                    query_keys[0]
                ));
            };
            if let Some(fields) = query.field_names()
                && let Some(missing) = query_keys.iter().find(|k| !fields.contains(k))
            {
                return Err(format!(
                    "Prefix uses partitionKeyFromQuery:{missing} but the MetadataExtractionQuery does not produce \
                     the key {missing}."
                ));
            }
        }
        if !lambda_keys.is_empty() && plan.is_none_or(|p| p.lambda.is_none()) {
            return Err(format!(
                "Prefix uses partitionKeyFromLambda:{} but no Lambda processor is enabled.",
                lambda_keys[0]
            ));
        }
        Ok(())
    }
}

/// One record on its way to a partition buffer.
#[derive(Debug, Clone)]
pub struct Processed {
    pub data: Bytes,
    /// The ingested bytes (`rawData` if the record fails later).
    pub raw: Bytes,
    pub arrival_ms: i64,
    pub lsn: u64,
    /// The source record's index in its WAL entry.
    pub index: u32,
    /// The evaluated `Prefix` (dynamic partitioning only).
    pub partition: Option<String>,
}

/// A record that goes to the error output.
#[derive(Debug, Clone)]
pub struct FailedRecord {
    /// The ingested bytes (`rawData`).
    pub raw: Bytes,
    pub arrival_ms: i64,
    pub lsn: u64,
    /// `!{firehose:error-output-type}`.
    pub output_type: &'static str,
    pub code: String,
    pub message: String,
    pub attempts: u32,
    /// `lambdaARN` of Lambda failures.
    pub lambda_arn: Option<String>,
}

impl FailedRecord {
    fn from_builtin(f: Failed) -> Self {
        Self {
            output_type: f.failure.output_type(),
            code: f.failure.error_code().to_string(),
            message: f.failure.error_message().into_owned(),
            attempts: 1,
            lambda_arn: None,
            raw: f.record.raw,
            arrival_ms: f.record.arrival_ms,
            lsn: f.record.lsn,
        }
    }

    /// The error-output JSON line (§10), newline-terminated.
    pub fn write_json_line(&self, ending_ms: i64, out: &mut String) {
        use base64::Engine;
        let _ =
            write!(out, "{{\"attemptsMade\":{},\"arrivalTimestamp\":{},\"errorCode\":", self.attempts, self.arrival_ms);
        out.push_str(&Value::from(self.code.as_str()).to_string());
        out.push_str(",\"errorMessage\":");
        out.push_str(&Value::from(self.message.as_str()).to_string());
        let _ = write!(out, ",\"attemptEndingTimestamp\":{ending_ms},\"rawData\":\"");
        base64::engine::general_purpose::STANDARD.encode_string(&self.raw, out);
        out.push('"');
        if let Some(arn) = &self.lambda_arn {
            // Real objects spell it `lambdaARN` (reference §10, observed).
            out.push_str(",\"lambdaARN\":");
            out.push_str(&Value::from(arn.as_str()).to_string());
        }
        out.push_str("}\n");
    }
}

/// Counters of one run, for the processing metrics.
#[derive(Debug, Default, Clone)]
pub struct RunStats {
    /// (duration, success) of each Lambda invocation batch.
    pub invocations: Vec<(Duration, bool)>,
    pub jq_duration: Option<Duration>,
    /// Records and bytes the function returned `Ok` (`SucceedProcessing.*`).
    pub succeed_records: u64,
    pub succeed_bytes: u64,
    pub dropped: u64,
}

/// The result of processing a batch.
#[derive(Debug, Default)]
pub struct RunOutput {
    pub records: Vec<Processed>,
    pub failed: Vec<FailedRecord>,
    pub stats: RunStats,
}

/// Partition keys of one record: jq's and the function's.
struct Keys<'a> {
    query: Option<&'a QueryKeys>,
    lambda: Option<&'a BTreeMap<String, String>>,
}

impl PartitionKeys for Keys<'_> {
    fn query(&self, key: &str) -> Option<&str> {
        self.query.and_then(|q| q.get(key))
    }
    fn lambda(&self, key: &str) -> Option<&str> {
        self.lambda.and_then(|l| l.get(key)).map(String::as_str)
    }
}

/// A stream's processing at run time: the plan plus the function backend.
#[derive(Clone)]
pub struct Processor {
    pub plan: Option<Arc<ProcessingPlan>>,
    pub lambda: Option<Arc<dyn FunctionBackend>>,
    pub context: StreamContext,
    /// The stream's `Prefix` when dynamic partitioning is on.
    pub partitioner: Option<PrefixPlan>,
    /// Iceberg destinations: each record's table (and operation), from the Lambda's
    /// `otfMetadata`, then the MetadataExtraction keys, then the single configured table.
    pub iceberg: Option<IcebergRouting>,
    /// Seed of `!{firehose:random-string}` in a partitioned prefix (fixed per stream, so a record's
    /// partition is the same on replay).
    pub seed: u64,
}

impl Processor {
    /// Whether records wait in a processor buffer before they are processed.
    pub fn lambda_config(&self) -> Option<&LambdaConfig> {
        self.plan.as_ref().and_then(|p| p.lambda.as_ref())
    }

    pub fn append_delimiter(&self) -> bool {
        self.plan.as_ref().is_some_and(|p| p.append_delimiter)
    }

    /// Runs the chain over `records` (in WAL order).
    pub async fn run(&self, records: Vec<Record>) -> RunOutput {
        let this = self.clone();
        let (records, mut failed) = blocking(move || this.pre(records)).await;
        let mut stats = RunStats::default();
        // Lambda: (record, partition keys from the function)
        let staged: Vec<(Record, Option<BTreeMap<String, String>>)> = match (self.lambda_config(), &self.lambda) {
            (Some(cfg), Some(backend)) => self.invoke(cfg, backend.as_ref(), records, &mut failed, &mut stats).await,
            _ => records.into_iter().map(|r| (r, None)).collect(),
        };
        let this = self.clone();
        let (out, post_failed, jq) = blocking(move || this.post(staged)).await;
        failed.extend(post_failed);
        stats.jq_duration = jq;
        RunOutput { records: out, failed, stats }
    }

    fn pre(&self, mut records: Vec<Record>) -> (Vec<Record>, Vec<FailedRecord>) {
        let mut failed = Vec::new();
        if let Some(plan) = &self.plan {
            let mut rejected = Vec::new();
            for p in &plan.pre {
                if p.stage() == Stage::RecordDeAggregation {
                    // KPL-aggregated records are split into their user records first (a record
                    // without the KPL magic passes through), then the configured sub-record type
                    // applies to each (choice: Firehose does KPL de-aggregation by itself for
                    // Kinesis sources; a DirectPut stream gets it with RecordDeAggregation).
                    let mut out = Vec::with_capacity(records.len());
                    deaggregate_kpl(std::mem::take(&mut records), &mut out, &mut rejected);
                    records = out;
                }
                let mut out = Vec::with_capacity(records.len());
                p.process(std::mem::take(&mut records), &mut out, &mut rejected);
                records = out;
            }
            failed.extend(rejected.into_iter().map(FailedRecord::from_builtin));
        }
        (records, failed)
    }

    async fn invoke(
        &self,
        cfg: &LambdaConfig,
        backend: &dyn FunctionBackend,
        records: Vec<Record>,
        failed: &mut Vec<FailedRecord>,
        stats: &mut RunStats,
    ) -> Vec<(Record, Option<BTreeMap<String, String>>)> {
        // One invocation per BufferSizeInMBs of records (invoke_batch further splits at 6 MB).
        let limit = cfg.buffer_size_bytes().max(1) as usize;
        let mut chunks: Vec<std::ops::Range<usize>> = Vec::new();
        let (mut start, mut size) = (0, 0usize);
        for (i, r) in records.iter().enumerate() {
            if i > start && size + r.data.len() > limit {
                chunks.push(start..i);
                start = i;
                size = 0;
            }
            size += r.data.len();
        }
        if start < records.len() {
            chunks.push(start..records.len());
        }
        let inputs: Vec<InputRecord> = records
            .iter()
            .map(|r| InputRecord { data: r.data.clone(), arrival_ms: r.arrival_ms, kinesis: None })
            .collect();
        let mut calls = Vec::with_capacity(chunks.len());
        for range in &chunks {
            calls.push(timed_batch(backend, cfg, &self.context, &inputs[range.clone()]));
        }
        let results = futures::future::join_all(calls).await;
        let mut out = Vec::with_capacity(records.len());
        let mut records = records.into_iter();
        for (elapsed, outcomes) in results {
            let batch_failed = !outcomes.is_empty()
                && outcomes.iter().all(|o| {
                    matches!(o, Outcome::Failed { code, .. }
                        if !matches!(code, ErrorCode::ProcessingFailedStatus | ErrorCode::MissingRecordId))
                });
            stats.invocations.push((elapsed, !batch_failed));
            for outcome in outcomes {
                let Some(record) = records.next() else { break };
                match outcome {
                    Outcome::Ok { data, mut partition_keys, otf } => {
                        stats.succeed_records += 1;
                        stats.succeed_bytes += data.len() as u64;
                        // Iceberg routing (§14): `metadata.otfMetadata` travels with the partition
                        // keys, under names a partition key cannot collide with in practice.
                        for (k, v) in otf.iter().flatten() {
                            if let Some(v) = v.as_str() {
                                partition_keys.insert(format!("{OTF_KEY_PREFIX}{k}"), v.to_string());
                            }
                        }
                        let keys = (!partition_keys.is_empty()).then_some(partition_keys);
                        out.push((Record { data, ..record }, keys));
                    }
                    Outcome::Dropped => stats.dropped += 1,
                    Outcome::Failed { code, message, detail, attempts_made } => {
                        tracing::debug!(function = %cfg.lambda_arn, code = code.as_str(), %detail, "record failed processing");
                        failed.push(FailedRecord {
                            raw: record.raw,
                            arrival_ms: record.arrival_ms,
                            lsn: record.lsn,
                            output_type: PROCESSING_FAILED,
                            code: code.as_str().to_string(),
                            message,
                            attempts: attempts_made.max(1),
                            lambda_arn: Some(cfg.lambda_arn.clone()),
                        });
                    }
                }
            }
        }
        out
    }

    /// MetadataExtraction, the partition prefix and the delimiter.
    fn post(
        &self,
        staged: Vec<(Record, Option<BTreeMap<String, String>>)>,
    ) -> (Vec<Processed>, Vec<FailedRecord>, Option<Duration>) {
        let metadata = self.plan.as_ref().and_then(|p| p.metadata.as_ref());
        let mut out = Vec::with_capacity(staged.len());
        let mut failed = Vec::new();
        let mut keys = QueryKeys::default();
        let started = Instant::now();
        for (record, lambda_keys) in staged {
            let fail = |record: Record, message: String| FailedRecord {
                raw: record.raw,
                arrival_ms: record.arrival_ms,
                lsn: record.lsn,
                output_type: PROCESSING_FAILED,
                code: METADATA_EXTRACTION_FAILED.to_string(),
                message,
                attempts: 1,
                lambda_arn: None,
            };
            let query = match metadata {
                Some(q) => match q.extract_into(&record.data, &mut keys) {
                    Ok(()) => Some(&keys),
                    Err(e) => {
                        failed.push(fail(record, format!("Metadata extraction failed: {e}.")));
                        continue;
                    }
                },
                None => None,
            };
            let partition = match (&self.partitioner, &self.iceberg) {
                (_, Some(routing)) => match routing.route(&Keys { query, lambda: lambda_keys.as_ref() }) {
                    Ok(id) => Some(id),
                    Err((code, message)) => {
                        failed.push(FailedRecord {
                            code: code.to_string(),
                            output_type: spillway_model::iceberg::ICEBERG_FAILED,
                            ..fail(record, message)
                        });
                        continue;
                    }
                },
                (Some(prefix), None) => {
                    let arrival = Utc.timestamp_millis_opt(record.arrival_ms).single().unwrap_or_else(Utc::now);
                    let k = Keys { query, lambda: lambda_keys.as_ref() };
                    match prefix.evaluate_prefix(arrival, &k, self.seed) {
                        Ok(p) => Some(p),
                        Err(e) => {
                            failed.push(fail(record, format!("The partition prefix cannot be evaluated: {e}.")));
                            continue;
                        }
                    }
                }
                (None, None) => None,
            };
            out.push(Processed {
                data: record.data,
                raw: record.raw,
                arrival_ms: record.arrival_ms,
                lsn: record.lsn,
                index: record.index,
                partition,
            });
        }
        let jq = metadata.map(|_| started.elapsed());
        (out, failed, jq)
    }
}

/// One invocation batch and how long it took (a named `async fn`, so the future's lifetimes stay
/// simple for the `Send` check of the supervisor's task).
async fn timed_batch(
    backend: &dyn FunctionBackend,
    cfg: &LambdaConfig,
    context: &StreamContext,
    inputs: &[InputRecord],
) -> (Duration, Vec<Outcome>) {
    let started = Instant::now();
    let outcomes = invoke_batch(backend, cfg, context, inputs).await;
    (started.elapsed(), outcomes)
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => v,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn plan(processors: Value) -> Result<Option<ProcessingPlan>, String> {
        ProcessingPlan::from_config(&json!({"ProcessingConfiguration": {"Enabled": true, "Processors": processors}}))
    }

    #[test]
    fn plans_validate_and_order_processors() {
        assert!(ProcessingPlan::from_config(&json!({})).unwrap().is_none());
        assert!(
            ProcessingPlan::from_config(
                &json!({"ProcessingConfiguration": {"Enabled": false, "Processors": [{"Type": "Bogus"}]}})
            )
            .unwrap()
            .is_none()
        );
        assert!(plan(json!([])).unwrap_err().contains("no Processors"));
        assert!(plan(json!([{"Type": "Bogus"}])).unwrap_err().contains("not supported"));
        let p = plan(json!([
            {"Type": "AppendDelimiterToRecord"},
            {"Type": "RecordDeAggregation", "Parameters": [{"ParameterName": "SubRecordType", "ParameterValue": "JSON"}]},
            {"Type": "Decompression"},
            {"Type": "MetadataExtraction", "Parameters": [
                {"ParameterName": "MetadataExtractionQuery", "ParameterValue": "{a:.a}"},
                {"ParameterName": "JsonParsingEngine", "ParameterValue": "JQ-1.6"}]}
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(p.pre.len(), 2);
        assert_eq!(p.pre[0].stage(), Stage::Decompression);
        assert!(p.append_delimiter && p.metadata.is_some() && p.lambda.is_none());
        assert!(plan(json!([{"Type": "CloudWatchLogProcessing"}])).unwrap_err().contains("requires a Decompression"));
        assert!(plan(json!([{"Type": "Lambda"}])).unwrap_err().contains("LambdaArn is required"));
        let two = json!({"Type": "Lambda", "Parameters": [{"ParameterName": "LambdaArn",
            "ParameterValue": "arn:aws:lambda:us-east-1:123456789012:function:f"}]});
        assert!(plan(json!([two.clone(), two])).unwrap_err().contains("at most once"));
        assert!(
            plan(json!([{"Type": "MetadataExtraction", "Parameters": [
                {"ParameterName": "MetadataExtractionQuery", "ParameterValue": "{a:.a"}]}]))
            .unwrap_err()
            .contains("MetadataExtractionQuery")
        );
    }

    #[test]
    fn partition_keys_must_be_producible() {
        let prefix = PrefixPlan::parse(spillway_model::prefix::PrefixOptions {
            prefix: Some("c=!{partitionKeyFromQuery:c}/l=!{partitionKeyFromLambda:l}/"),
            error_output_prefix: Some("e/!{firehose:error-output-type}/"),
            custom_time_zone: None,
            dynamic_partitioning: true,
        })
        .unwrap();
        assert!(ProcessingPlan::check_partition_keys(None, &prefix).unwrap_err().contains("MetadataExtraction"));
        let q = |query: &str| {
            plan(json!([{"Type": "MetadataExtraction", "Parameters": [
                {"ParameterName": "MetadataExtractionQuery", "ParameterValue": query}]}]))
            .unwrap()
            .unwrap()
        };
        let e = ProcessingPlan::check_partition_keys(Some(&q("{x:.x}")), &prefix).unwrap_err();
        assert!(e.contains("does not produce the key c"), "{e}");
        let e = ProcessingPlan::check_partition_keys(Some(&q("{c:.c}")), &prefix).unwrap_err();
        assert!(e.contains("no Lambda processor"), "{e}");
    }

    /// A KPL aggregated record (magic, protobuf `AggregatedRecord`, MD5) of `records` under one key.
    fn kpl(records: &[&[u8]]) -> Vec<u8> {
        use md5::Digest;
        let mut message = vec![0x0a, 2, b'p', b'k'];
        for data in records {
            let mut rec = vec![0x08, 0x00, 0x1a, data.len() as u8];
            rec.extend_from_slice(data);
            message.push(0x1a);
            message.push(rec.len() as u8);
            message.extend_from_slice(&rec);
        }
        let mut out = crate::processors::builtin::KPL_MAGIC.to_vec();
        out.extend_from_slice(&message);
        out.extend_from_slice(&md5::Md5::digest(&message));
        out
    }

    #[tokio::test]
    async fn record_deaggregation_splits_kpl_records_then_json() {
        let plan = plan(json!([
            {"Type": "RecordDeAggregation", "Parameters": [{"ParameterName": "SubRecordType", "ParameterValue": "JSON"}]},
            {"Type": "AppendDelimiterToRecord"}
        ]))
        .unwrap()
        .unwrap();
        let processor = Processor {
            plan: Some(Arc::new(plan)),
            lambda: None,
            context: StreamContext {
                delivery_stream_arn: "arn:aws:firehose:us-east-1:1:deliverystream/s".into(),
                region: "us-east-1".into(),
                source_kinesis_stream_arn: None,
            },
            partitioner: None,
            iceberg: None,
            seed: 1,
        };
        let aggregated = Bytes::from(kpl(&[b"{\"a\":1}{\"a\":2}", b"{\"a\":3}"]));
        let plain = Bytes::from_static(b"{\"b\":1}");
        let out = processor.run(vec![Record::new(aggregated.clone(), 5, 1, 0), Record::new(plain, 6, 1, 1)]).await;
        assert!(out.failed.is_empty(), "{:?}", out.failed);
        let data: Vec<&[u8]> = out.records.iter().map(|r| &r.data[..]).collect();
        assert_eq!(data, [&b"{\"a\":1}"[..], b"{\"a\":2}", b"{\"a\":3}", b"{\"b\":1}"]);
        assert!(out.records[..3].iter().all(|r| r.raw == aggregated && r.index == 0));
        assert_eq!(out.records[3].index, 1);
    }

    #[test]
    fn error_lines_have_the_reference_shape() {
        let f = FailedRecord {
            raw: Bytes::from_static(b"abc"),
            arrival_ms: 5,
            lsn: 1,
            output_type: PROCESSING_FAILED,
            code: "Lambda.FunctionError".into(),
            message: "m\"".into(),
            attempts: 4,
            lambda_arn: Some("arn:aws:lambda:us-east-1:1:function:f".into()),
        };
        let mut line = String::new();
        f.write_json_line(9, &mut line);
        assert!(line.ends_with('\n'));
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            v,
            json!({"attemptsMade": 4, "arrivalTimestamp": 5, "errorCode": "Lambda.FunctionError", "errorMessage": "m\"",
                   "attemptEndingTimestamp": 9, "rawData": "YWJj", "lambdaARN": "arn:aws:lambda:us-east-1:1:function:f"})
        );
    }

    #[test]
    fn iceberg_routing_precedence() {
        let routing = IcebergRouting { default_table: Some(("db".into(), "t".into())) };
        let lambda = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs.iter().map(|(k, v)| (format!("{OTF_KEY_PREFIX}{k}"), v.to_string())).collect()
        };
        let route = |l: Option<&BTreeMap<String, String>>| routing.route(&Keys { query: None, lambda: l });
        assert_eq!(route(None).unwrap(), "db/t/insert");
        let l = lambda(&[("destinationDatabaseName", "iot"), ("destinationTableName", "s1"), ("operation", "Update")]);
        assert_eq!(route(Some(&l)).unwrap(), "iot/s1/update");
        let l = lambda(&[("destinationTableName", "other")]);
        assert_eq!(route(Some(&l)).unwrap(), "db/other/insert", "missing members come from the single table");
        let l = lambda(&[("destinationTableName", "../x")]);
        assert_eq!(route(Some(&l)).unwrap_err().0, ICEBERG_INVALID_TABLE_NAME);
        let l = lambda(&[("operation", "merge")]);
        assert_eq!(route(Some(&l)).unwrap_err().0, ICEBERG_INVALID_OPERATION);
        let none = IcebergRouting::default();
        assert_eq!(none.route(&Keys { query: None, lambda: None }).unwrap_err().0, ICEBERG_NO_SUCH_TABLE);
        assert_eq!(parse_iceberg_partition("iot/s1/update"), Some(("iot", "s1", "update")));
    }
}
