//! Writing a partition of an Iceberg stream: the records routed to one table (`db/table/op`
//! partition ids, [`crate::processing::IcebergRouting`]) become rows of one append commit.
//!
//! Exactly-once: every commit carries the stream's WAL range in its snapshot summary
//! (`spillway.<stream>.wal-last`). Before appending, the job asks the table what it already holds
//! for this stream; a range at or below that was committed before a crash and is not appended
//! again. Conversion is deterministic, so the records that fail it (and go to `iceberg-failed` in
//! the `S3Configuration` bucket, under the intent's `errors_key`) are the same on every attempt.
//!
//! Updates and deletes (`update`/`delete` partitions) are applied copy-on-write by
//! [`IcebergCatalog::apply_row_changes`], keyed by the table's `UniqueKeys` (else its identifier
//! fields), in one overwrite commit carrying the WAL range like an append, under the stream key
//! `<stream>.update` or `<stream>.delete`: a flush cuts the insert, update and delete partitions
//! of a table separately, so their WAL ranges overlap and each needs its own position.
//!
//! Records that cannot reach their table for good (no such table, no unique keys for an update,
//! an update to an AppendOnly stream) go to the error output; failures that may pass (the catalog or storage unavailable) are
//! retried by the caller, up to the stream's `RetryOptions`.

use super::{Job, JobContext, error_line, now_ms, render_failed};
use crate::processing::{ICEBERG_INVALID_OPERATION, parse_iceberg_partition};
use crate::state::ErrorOutput;
use spillway_destination::ObjectError;
use spillway_destination::iceberg::SchemaInference;
use spillway_destination::iceberg::rowdelta::RowOp;
use spillway_destination::iceberg::{IcebergCatalog, IcebergError};
use spillway_format::json::{ConversionError, Deserializer, JsonConverter, PARSE_ERROR};
use spillway_model::iceberg::ICEBERG_FAILED;
use std::collections::HashMap;
use std::sync::Arc;

/// Partition ids of Iceberg tables: `ice:<db>/<table>/<operation>`.
pub(super) const ICE_PARTITION: &str = "ice:";

/// The catalog of a stream, its key in snapshot summaries, and what it may do to tables.
#[derive(Clone)]
pub(super) struct IcebergTarget {
    pub catalog: IcebergCatalog,
    pub stream_key: String,
    /// `SchemaEvolutionConfiguration.Enabled`: add the columns records bring.
    pub schema_evolution: bool,
    /// `TableCreationConfiguration.Enabled`: create missing tables from their records.
    pub table_creation: bool,
    /// `PartitionSpec.Identity` source columns of the configured tables, by (database, table),
    /// for the tables the stream creates.
    pub partition_identity: Arc<HashMap<(String, String), Vec<String>>>,
    /// `DestinationTableConfiguration.UniqueKeys` of the configured tables, by (database, table):
    /// the keys of updates and deletes (else the table's identifier fields).
    pub unique_keys: Arc<HashMap<(String, String), Vec<String>>>,
    /// `AppendOnly`: the stream takes inserts only.
    pub append_only: bool,
}

/// Error codes of records a table refuses (unconfirmed beyond `Iceberg.NoSuchTable` and
/// `Iceberg.MissingColumnWithinRecord`, which the reference lists).
const ICEBERG_SCHEMA_MISMATCH: &str = "Iceberg.SchemaMismatch";
const ICEBERG_INVALID_JSON: &str = "Iceberg.InvalidJson";
const ICEBERG_UNSUPPORTED_OPERATION: &str = "Iceberg.UnsupportedOperation";
/// An update or delete for a table without unique keys (spillway's name; Firehose's code is
/// unconfirmed: the reference only says such records go to the error output).
const ICEBERG_MISSING_UNIQUE_KEYS: &str = "Iceberg.MissingUniqueKeys";

fn retryable(e: IcebergError) -> ObjectError {
    ObjectError::Remote { code: e.firehose_code().to_string(), message: e.to_string(), retryable: true }
}

/// What a job's records became.
#[derive(Debug, Clone, Default)]
pub(super) struct IcebergCounts {
    pub rows: u64,
    pub bytes: u64,
    pub failed: u64,
    pub committed: bool,
    /// Milliseconds the append took (data files written and the snapshot committed).
    pub commit_ms: f64,
    /// Data files the commit wrote (their locations: what a flush reports), and their bytes.
    pub data_files: Vec<String>,
    pub data_file_bytes: u64,
}

/// Records that failed, by frame position: (code, message).
type Failures = Vec<(usize, (String, String))>;

/// One attempt at an Iceberg job: append (unless the table already holds the range), then the
/// error records of what failed.
pub(super) async fn attempt(job: &mut Job, target: &IcebergTarget, ctx: &JobContext) -> Result<(), ObjectError> {
    if job.iceberg.is_some() {
        // The rows are in the table; only the error object may be left to write.
        return write_errors(job, ctx).await;
    }
    let frames = match &job.frames {
        Some(f) => Arc::clone(f),
        None => {
            let taken = job.taken.take();
            let read = super::blocking(move || taken.unwrap_or_default().into_bytes().map(Arc::new)).await;
            let f = read.map_err(|source| ObjectError::Io {
                op: "read spilled records",
                path: std::path::PathBuf::new(),
                source,
            })?;
            job.frames = Some(Arc::clone(&f));
            f
        }
    };
    let Some(destination) = job.id.strip_prefix(ICE_PARTITION).and_then(parse_iceberg_partition) else {
        return Err(ObjectError::Config { message: format!("not an Iceberg partition: {}", job.id) });
    };
    let (failures, counts) = insert(&frames, target, destination, (job.intent.first, job.intent.last)).await?;
    if let Some((_, (code, message))) = failures.first() {
        let (db, table, _) = destination;
        ctx.log.error(
            false,
            &crate::logs::ErrorEvent {
                error_code: code,
                message,
                destination: &format!("{db}.{table}"),
                record_count: Some(failures.len() as u64),
                attempts_made: Some(1),
                ..Default::default()
            },
        );
    }
    finish_with(job, ctx, &frames, failures, counts).await
}

/// Writes a range's records to their table: appends inserts, applies updates and deletes
/// (copy-on-write, one commit). `Ok`: what failed (every record, when the table cannot take any of
/// them) and the counts; `Err`: a failure that may pass, to retry.
async fn insert(
    frames: &Arc<Vec<u8>>,
    target: &IcebergTarget,
    (db, table, op): (&str, &str, &str),
    (first, last): (u64, u64),
) -> Result<(Failures, IcebergCounts), ObjectError> {
    let fail_all = |code: &str, message: String| -> (Failures, IcebergCounts) {
        let failures =
            crate::partition::frames(frames).enumerate().map(|(i, _)| (i, (code.to_string(), message.clone())));
        (failures.collect(), IcebergCounts::default())
    };
    // A failure that may pass is retried; any other fails every record of the range.
    let give_up = |e: IcebergError| {
        if e.is_retryable() { Err(retryable(e)) } else { Ok(fail_all(e.firehose_code(), e.to_string())) }
    };
    let row_op = match op {
        "insert" => None,
        "update" => Some(RowOp::Update),
        "delete" => Some(RowOp::Delete),
        // Routing refuses other operations; a partition id from elsewhere still must not write.
        _ => {
            return Ok(fail_all(
                ICEBERG_INVALID_OPERATION,
                format!("Invalid operation '{op}'; it must be insert, update or delete."),
            ));
        }
    };
    if row_op.is_some() && target.append_only {
        return Ok(fail_all(
            ICEBERG_UNSUPPORTED_OPERATION,
            format!("The stream is AppendOnly: it takes inserts only, so the {op} was not applied."),
        ));
    }
    let info = match row_op {
        None => match table_for_inserts(frames, target, db, table).await {
            Ok(info) => info,
            Err(e) => return give_up(e),
        },
        Some(_) => match target.catalog.table_info(db, table).await {
            Ok(info) => info,
            Err(e) => return give_up(e),
        },
    };
    let keys = match row_op {
        None => Vec::new(),
        Some(_) => {
            let configured = target.unique_keys.get(&(db.to_string(), table.to_string())).filter(|k| !k.is_empty());
            match configured {
                Some(keys) => keys.clone(),
                None if !info.identifier_columns.is_empty() => info.identifier_columns.clone(),
                None => {
                    return Ok(fail_all(
                        ICEBERG_MISSING_UNIQUE_KEYS,
                        format!(
                            "Table {db}.{table} has no unique keys: set UniqueKeys in its DestinationTableConfiguration \
                             or identifier fields on the table to update or delete rows."
                        ),
                    ));
                }
            }
        }
    };
    let f = Arc::clone(frames);
    let (batches, failed, rows, bytes) = super::blocking(move || to_batches(&f, &info.columns)).await;
    let batches = batches.map_err(|e| ObjectError::Config { message: format!("cannot build a batch: {e}") })?;
    let mut counts = IcebergCounts { rows, bytes, ..IcebergCounts::default() };
    // The insert, update and delete partitions of one table are cut separately, so their WAL
    // ranges overlap: each operation keeps its own position (inserts keep the stream's key).
    let stream_key = match row_op {
        None => target.stream_key.clone(),
        Some(RowOp::Update) => format!("{}.update", target.stream_key),
        Some(RowOp::Delete) => format!("{}.delete", target.stream_key),
    };
    let held = target.catalog.committed_position(db, table, &stream_key).await.map_err(retryable)?;
    // Committed before a crash: the table has these rows already.
    if held.is_some_and(|p| p >= last) || batches.is_empty() {
        return Ok((failed, counts));
    }
    let started = std::time::Instant::now();
    let written = match row_op {
        None => {
            target.catalog.append(db, table, batches, &stream_key, first, last).await.map(|r| (r.data_files, r.bytes))
        }
        Some(op) => target
            .catalog
            .apply_row_changes(db, table, op, &keys, batches, &stream_key, first, last)
            .await
            .map(|r| (r.files_written, r.bytes_written)),
    };
    match written {
        Ok((files, file_bytes)) => {
            counts.committed = true;
            counts.data_files = files;
            counts.data_file_bytes = file_bytes;
            counts.commit_ms = started.elapsed().as_secs_f64() * 1000.0;
            Ok((failed, counts))
        }
        Err(e) => give_up(e),
    }
}

/// The table inserts go to, created from the records (`TableCreationConfiguration`) and given the
/// columns they bring (`SchemaEvolutionConfiguration`) when the stream may. The inference is
/// deterministic, so a replay after a crash adds nothing the first attempt did not.
async fn table_for_inserts(
    frames: &Arc<Vec<u8>>,
    target: &IcebergTarget,
    db: &str,
    table: &str,
) -> Result<spillway_destination::iceberg::TableInfo, IcebergError> {
    if !target.schema_evolution && !target.table_creation {
        return target.catalog.table_info(db, table).await;
    }
    let f = Arc::clone(frames);
    let inference = super::blocking(move || {
        let mut inference = SchemaInference::new();
        for fr in crate::partition::frames(&f) {
            inference.observe(fr.data);
        }
        inference
    })
    .await;
    let info = match target.catalog.table_info(db, table).await {
        Err(IcebergError::NoSuchTable { .. }) if target.table_creation && !inference.is_empty() => {
            let key = (db.to_string(), table.to_string());
            let partition_by = target.partition_identity.get(&key).map(Vec::as_slice).unwrap_or_default();
            if target.catalog.create_inferred(db, table, &inference, partition_by).await? {
                tracing::info!(database = db, table, "created the Iceberg table from its records");
            }
            target.catalog.table_info(db, table).await?
        }
        other => other?,
    };
    if !target.schema_evolution {
        return Ok(info);
    }
    match target.catalog.evolve(db, table, &inference).await {
        Ok(0) => Ok(info),
        Ok(added) => {
            tracing::info!(database = db, table, added, "added columns to the Iceberg table");
            target.catalog.table_info(db, table).await
        }
        Err(e) if e.is_retryable() => Err(e),
        Err(e) => {
            // The rows still fit the columns the table has; the new fields are left out.
            tracing::warn!(database = db, table, error = %e, "cannot add columns to the Iceberg table");
            Ok(info)
        }
    }
}

/// The rows of a range's records for a table of `columns` (Iceberg: one JSON object per record),
/// the records that fail, and the rows and bytes converted. Blocking.
fn to_batches(
    frames: &[u8],
    columns: &[spillway_format::schema::Column],
) -> (Result<Vec<arrow_array::RecordBatch>, arrow_schema::ArrowError>, Failures, u64, u64) {
    let mut converter = JsonConverter::new(columns, &Deserializer::default()).with_single_object();
    let (mut failed, mut batches) = (Vec::new(), Vec::new());
    let (mut rows, mut bytes) = (0u64, 0u64);
    for (i, fr) in crate::partition::frames(frames).enumerate() {
        match converter.push_record(fr.data) {
            Ok(n) => {
                rows += n as u64;
                bytes += fr.data.len() as u64;
            }
            Err(e) => failed.push((i, (code_of(&e).to_string(), e.message))),
        }
        if converter.rows() >= spillway_format::convert::BATCH_ROWS {
            batches.push(converter.flush());
        }
    }
    if converter.rows() > 0 {
        batches.push(converter.flush());
    }
    (batches.into_iter().collect(), failed, rows, bytes)
}

fn code_of(e: &ConversionError) -> &'static str {
    if e.code == PARSE_ERROR { ICEBERG_INVALID_JSON } else { ICEBERG_SCHEMA_MISMATCH }
}

/// Renders the error records of `failures` (by frame position) and writes them.
async fn finish_with(
    job: &mut Job,
    ctx: &JobContext,
    frames: &Arc<Vec<u8>>,
    failures: Failures,
    mut counts: IcebergCounts,
) -> Result<(), ObjectError> {
    counts.failed = failures.len() as u64;
    if !failures.is_empty() {
        let (f, c, range) = (Arc::clone(frames), ctx.clone(), (job.intent.first, job.intent.last));
        let body = super::blocking(move || {
            let (mut line, ending) = (String::new(), now_ms());
            render_failed(&f, &failures, &c, range, |text, (code, message), arrival_ms, raw| {
                let err = ErrorOutput {
                    output_type: ICEBERG_FAILED.into(),
                    code: code.clone(),
                    message: message.clone(),
                    attempts: 1,
                    ending_ms: ending,
                };
                error_line(&mut line, &err, arrival_ms, raw);
                text.push_str(&line);
            })
        })
        .await;
        job.errors_body = Some(body);
    }
    job.iceberg = Some(counts);
    write_errors(job, ctx).await
}

/// Writes the job's error object once.
async fn write_errors(job: &mut Job, ctx: &JobContext) -> Result<(), ObjectError> {
    let (Some(body), Some(key)) = (&job.errors_body, &job.intent.errors_key) else { return Ok(()) };
    if job.errors_stored {
        return Ok(());
    }
    let (stores, bucket) = (Arc::clone(&ctx.stores), job.intent.bucket_arn.clone());
    let sink = super::blocking(move || stores.sink(&bucket, None)).await?;
    job.attempts += 1;
    ctx.metrics.put_requests.inc();
    sink.put(key, body.clone(), &spillway_destination::PutOptions::default()).await?;
    job.errors_stored = true;
    Ok(())
}
