//! Writing a partition of an Iceberg stream: the records routed to one table (`db/table/op`
//! partition ids, [`crate::processing::IcebergRouting`]) become rows of one append commit.
//!
//! Exactly-once: every commit carries the stream's WAL range in its snapshot summary
//! (`spillway.<stream>.wal-last`). Before appending, the job asks the table what it already holds
//! for this stream; a range at or below that was committed before a crash and is not appended
//! again. Conversion is deterministic, so the records that fail it (and go to `iceberg-failed` in
//! the `S3Configuration` bucket, under the intent's `errors_key`) are the same on every attempt.
//!
//! Records that cannot reach their table for good (no such table, an operation the writer cannot
//! commit) go to the error output; failures that may pass (the catalog or storage unavailable) are
//! retried by the caller, up to the stream's `RetryOptions`.

use super::{Job, JobContext, error_line, now_ms, original_records};
use crate::processing::parse_iceberg_partition;
use crate::state::ErrorOutput;
use bytes::Bytes;
use spillway_destination::ObjectError;
use spillway_destination::iceberg::{IcebergCatalog, IcebergError};
use spillway_format::json::{ConversionError, Deserializer, JsonConverter, PARSE_ERROR};
use spillway_model::iceberg::ICEBERG_FAILED;
use std::sync::Arc;

/// Partition ids of Iceberg tables: `ice:<db>/<table>/<operation>`.
pub(super) const ICE_PARTITION: &str = "ice:";

/// The catalog of a stream and its key in snapshot summaries.
#[derive(Clone)]
pub(super) struct IcebergTarget {
    pub catalog: IcebergCatalog,
    pub stream_key: String,
}

/// Error codes of records a table refuses (unconfirmed beyond `Iceberg.NoSuchTable` and
/// `Iceberg.MissingColumnWithinRecord`, which the reference lists).
const ICEBERG_SCHEMA_MISMATCH: &str = "Iceberg.SchemaMismatch";
const ICEBERG_INVALID_JSON: &str = "Iceberg.InvalidJson";
const ICEBERG_UNSUPPORTED_OPERATION: &str = "Iceberg.UnsupportedOperation";

fn retryable(e: IcebergError) -> ObjectError {
    ObjectError::Remote { code: e.firehose_code().to_string(), message: e.to_string(), retryable: true }
}

/// What a job's records became.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct IcebergCounts {
    pub rows: u64,
    pub bytes: u64,
    pub failed: u64,
    pub committed: bool,
}

/// One attempt at an Iceberg job: append (unless the table already holds the range), then the
/// error records of what failed.
pub(super) async fn attempt(job: &mut Job, target: &IcebergTarget, ctx: &JobContext) -> Result<(), ObjectError> {
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
    let Some((db, table, op)) = job.id.strip_prefix(ICE_PARTITION).and_then(parse_iceberg_partition) else {
        return Err(ObjectError::Config { message: format!("not an Iceberg partition: {}", job.id) });
    };
    let (db, table, op) = (db.to_string(), table.to_string(), op.to_string());
    if job.iceberg.is_none() {
        // Every record of the range fails the same way when the table cannot take any of them.
        let fail_all = |code: &str, message: String| -> Vec<(usize, String, String)> {
            crate::partition::frames(&frames).enumerate().map(|(i, _)| (i, code.to_string(), message.clone())).collect()
        };
        let mut counts = IcebergCounts::default();
        let failures = if op != "insert" {
            // iceberg-rust 0.10 commits appends only: no row-delta action for delete files.
            fail_all(
                ICEBERG_UNSUPPORTED_OPERATION,
                format!(
                    "The {op} operation needs row-level deletes, which spillway cannot commit yet; the record was not applied."
                ),
            )
        } else {
            match target.catalog.table_info(&db, &table).await {
                Err(e) if e.is_retryable() => return Err(retryable(e)),
                Err(e) => fail_all(e.firehose_code(), e.to_string()),
                Ok(info) => {
                    let f = Arc::clone(&frames);
                    let converted = super::blocking(move || {
                        let mut converter =
                            JsonConverter::new(&info.columns, &Deserializer::default()).with_single_object();
                        let mut failed = Vec::new();
                        let (mut rows, mut bytes) = (0u64, 0u64);
                        let mut batches = Vec::new();
                        for (i, fr) in crate::partition::frames(&f).enumerate() {
                            match converter.push_record(fr.data) {
                                Ok(n) => {
                                    rows += n as u64;
                                    bytes += fr.data.len() as u64;
                                }
                                Err(e) => failed.push((i, code_of(&e).to_string(), e.message)),
                            }
                            if converter.rows() >= spillway_format::convert::BATCH_ROWS {
                                batches.push(converter.flush());
                            }
                        }
                        if converter.rows() > 0 {
                            batches.push(converter.flush());
                        }
                        let batches: Result<Vec<_>, _> = batches.into_iter().collect();
                        (batches, failed, rows, bytes)
                    })
                    .await;
                    let (batches, failed, rows, bytes) = converted;
                    let batches =
                        batches.map_err(|e| ObjectError::Config { message: format!("cannot build a batch: {e}") })?;
                    counts.rows = rows;
                    counts.bytes = bytes;
                    let (first, last) = (job.intent.first, job.intent.last);
                    let held = target.catalog.committed_position(&db, &table, &target.stream_key).await;
                    match held {
                        Err(e) => return Err(retryable(e)),
                        // Committed before a crash: the table has these rows already.
                        Ok(Some(p)) if p >= last => {}
                        Ok(_) if batches.is_empty() => {}
                        Ok(_) => {
                            match target.catalog.append(&db, &table, batches, &target.stream_key, first, last).await {
                                Ok(_) => counts.committed = true,
                                Err(e) if e.is_retryable() => return Err(retryable(e)),
                                Err(e) => {
                                    counts.rows = 0;
                                    counts.bytes = 0;
                                    return finish_with(
                                        job,
                                        target,
                                        ctx,
                                        &frames,
                                        fail_all(e.firehose_code(), e.to_string()),
                                        counts,
                                    )
                                    .await;
                                }
                            }
                        }
                    }
                    failed
                }
            }
        };
        return finish_with(job, target, ctx, &frames, failures, counts).await;
    }
    write_errors(job, ctx).await
}

fn code_of(e: &ConversionError) -> &'static str {
    if e.code == PARSE_ERROR { ICEBERG_INVALID_JSON } else { ICEBERG_SCHEMA_MISMATCH }
}

/// Renders the error records of `failures` (by frame position) and writes them.
async fn finish_with(
    job: &mut Job,
    _target: &IcebergTarget,
    ctx: &JobContext,
    frames: &Arc<Vec<u8>>,
    failures: Vec<(usize, String, String)>,
    mut counts: IcebergCounts,
) -> Result<(), ObjectError> {
    counts.failed = failures.len() as u64;
    if !failures.is_empty() {
        let (f, wal, tag, processed) = (Arc::clone(frames), ctx.wal.clone(), ctx.tag, ctx.processed);
        let (first, last) = (job.intent.first, job.intent.last);
        let body = super::blocking(move || {
            let all: Vec<crate::partition::Frame<'_>> = crate::partition::frames(&f).collect();
            let raw = processed.then(|| original_records(&wal, tag, first, last));
            let (mut text, mut line, ending) = (String::new(), String::new(), now_ms());
            for (i, code, message) in failures {
                let Some(fr) = all.get(i) else { continue };
                let original = raw.as_ref().and_then(|o| o.get(&(fr.lsn, fr.index))).map_or(fr.data, |r| &r[..]);
                let err =
                    ErrorOutput { output_type: ICEBERG_FAILED.into(), code, message, attempts: 1, ending_ms: ending };
                error_line(&mut line, &err, fr.arrival_ms, original);
                text.push_str(&line);
            }
            Bytes::from(text)
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
