//! Row-level updates and deletes of Iceberg tables ([`IcebergCatalog::apply_row_changes`]): the
//! Firehose operations `update` and `delete` (reference §14), applied copy-on-write.
//!
//! # What it owns
//!
//! Matching a job's rows to the table's rows by unique key, rewriting the data files that hold a
//! matching key without those rows (plus, for updates, the job's rows), and the ONE `overwrite`
//! snapshot that swaps them, with the stream's WAL range. The manifests, the manifest list and the
//! commit are compaction's ([`super::compact`]'s `write_snapshot` and `IcebergCatalog::commit_updates`).
//!
//! # Why copy-on-write
//!
//! Firehose writes delete files (merge-on-read). spillway rewrites data files instead:
//! iceberg-rust 0.10.1's `Transaction` cannot commit delete files (it has no row-delta action), and
//! readers differ in what delete files they apply (PyIceberg 0.12 reads no equality deletes). A
//! copy-on-write table has data files only, so every reader (PyIceberg, DuckDB, Spark, Trino) sees
//! the result, at the price of rewriting every file that holds a changed key.
//!
//! # Algorithm
//!
//! 1. The job's rows are re-typed to the table's current schema (`adapt`, as appends are; for a
//!    delete only the key columns, so the other columns may be missing or null). Keys are the
//!    values of the key columns, compared by value; a row with a null in a key column matches
//!    nothing (an update adds it, a delete ignores it). Within an update, the LAST row of a key wins.
//! 2. The live data files of the current snapshot that may hold a key (files whose column bounds
//!    or identity partition values rule out every key of the job are skipped, through iceberg's
//!    scan planning, for key columns of type int, long, string, date and boolean) are read whole
//!    in the current schema. A file with a matching row is rewritten without its matching rows;
//!    the others are untouched.
//! 3. The kept rows of the rewritten files and (update) the job's rows are written as new data
//!    files `wal-<first>-<last>-NNNNN-<uuid>.parquet` in the default partition spec.
//! 4. One snapshot, operation `overwrite`: the rewritten files Deleted, the new files Added, Java's
//!    summary counts (`added-records` counts every row of the new files, `deleted-records` every
//!    row of the rewritten ones, as Java's copy-on-write writers do) plus
//!    `spillway.<stream>.wal-first/last`; the same commit sets the table property
//!    `spillway.<stream>.wal-last`. It requires `main` to still be the snapshot the rows were
//!    matched against: a concurrent commit (an append of another stream) fails it with a conflict,
//!    and the whole change is redone on the new snapshot (the rows matched again), up to
//!    [`RETRIES`] times, then a retryable error.
//! 5. Nothing to rewrite or add (a delete whose keys are in no row, or a table without a snapshot):
//!    no snapshot; the table property alone records the WAL range, so a replay skips it. An update
//!    on a table without a snapshot is an append (operation `append`).
//!
//! # Invariants
//!
//! - One job is one commit: readers see the table before or after it, never in between.
//! - Rows of other keys are unchanged (the same values; they may move to a new file).
//! - Exactly once: the commit carries the WAL range (summary and property), and
//!   [`IcebergCatalog::committed_position`] tells the caller to skip a range the table holds.
//! - Tables with delete files (written by another engine) or in a format other than v2 are refused
//!   ([`IcebergError::Unsupported`]).

use super::compact::{Current, ManifestCache, Written, is_commit_conflict, jitter, new_snapshot_id, read_files};
use super::compact::{snapshot_summary, write_snapshot};
use super::{IcebergCatalog, IcebergError, adapt_all, summary_key, write_data_files};
use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, BooleanArray, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use futures::TryStreamExt;
use iceberg::arrow::schema_to_arrow_schema;
use iceberg::expr::{Predicate, Reference};
use iceberg::spec::{DEFAULT_SCHEMA_NAME_MAPPING, DataFile, Datum, NameMapping, Operation, TableMetadata};
use iceberg::table::Table;
use iceberg::transaction::{ApplyTransactionAction, Transaction};
use iceberg::{TableRequirement, TableUpdate};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// How many times a change that lost a commit race is redone on the new snapshot.
pub const RETRIES: usize = 5;

/// A row-level operation of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowOp {
    /// The rows of each key are replaced by the job's row of that key (added if none).
    Update,
    /// The rows of each key are removed.
    Delete,
}

/// What one [`IcebergCatalog::apply_row_changes`] did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RowChangeResult {
    /// The new snapshot; None when nothing changed (the WAL range is still recorded).
    pub snapshot_id: Option<i64>,
    /// Rows of the job added (updates).
    pub rows_added: u64,
    /// Rows of the table removed.
    pub rows_deleted: u64,
    /// Data files rewritten (removed from the table, their other rows written again).
    pub files_rewritten: usize,
    /// Data files the change wrote (their locations), and their bytes.
    pub files_written: Vec<String>,
    pub bytes_written: u64,
}

impl IcebergCatalog {
    /// Applies one job's rows: `Update` = for every key in `batches`, the rows with that key are
    /// removed and the batch's row is added (the LAST row per key in the batch wins; an unknown key
    /// just adds the row); `Delete` = the rows whose key is in `batches` are removed (other columns
    /// of the batch are ignored). `keys` are top-level column names. One `overwrite` snapshot
    /// carrying `spillway.<stream_key>.wal-first/last`, and the table property
    /// `spillway.<stream_key>.wal-last` in the same commit (see the module docs).
    #[allow(clippy::too_many_arguments)]
    pub async fn apply_row_changes(
        &self,
        database: &str,
        table: &str,
        op: RowOp,
        keys: &[String],
        batches: Vec<RecordBatch>,
        stream_key: &str,
        wal_first: u64,
        wal_last: u64,
    ) -> Result<RowChangeResult, IcebergError> {
        if batches.iter().all(|b| b.num_rows() == 0) {
            return Ok(RowChangeResult::default());
        }
        if keys.is_empty() {
            return Err(IcebergError::SchemaMismatch(format!(
                "{database}.{table}: an {} needs unique key columns",
                if op == RowOp::Update { "update" } else { "delete" }
            )));
        }
        let job = Job { database, table, op, keys, batches: &batches, stream_key, wal_first, wal_last };
        let mut cache = ManifestCache::new();
        let mut attempt = 0;
        loop {
            let t = self.load(database, table).await?;
            Self::check_version(&t, database, table)?;
            match self.try_apply(&t, &job, &mut cache).await {
                Err(e) if is_commit_conflict(&e) && attempt < RETRIES => {
                    attempt += 1;
                    tracing::info!(database, table, attempt, "a row-level change lost a commit race; redoing it");
                    tokio::time::sleep(jitter(20 * attempt as u64)).await;
                }
                other => return other,
            }
        }
    }

    async fn try_apply(
        &self,
        t: &Table,
        job: &Job<'_>,
        cache: &mut ManifestCache,
    ) -> Result<RowChangeResult, IcebergError> {
        let (database, name) = (job.database, job.table);
        let ice = |e| IcebergError::from_iceberg(e, database, name);
        let metadata = t.metadata();
        let schema = metadata.current_schema().clone();
        let arrow_schema = Arc::new(schema_to_arrow_schema(&schema).map_err(ice)?);
        let key_columns = key_columns(&arrow_schema, job.keys, database, name)?;

        // The job's rows in the table's types: whole rows for an update, the keys for a delete.
        let input = match job.op {
            RowOp::Update => adapt_all(job.batches, &arrow_schema)?,
            RowOp::Delete => {
                let key_schema = Arc::new(Schema::new(
                    key_columns
                        .iter()
                        .map(|&i| arrow_schema.field(i).as_ref().clone().with_nullable(true))
                        .collect::<Vec<Field>>(),
                ));
                let mut out = Vec::with_capacity(job.batches.len());
                for b in job.batches.iter().filter(|b| b.num_rows() > 0) {
                    out.push(adapt_all(&[project_keys(b, &key_schema)?], &key_schema)?.remove(0));
                }
                out
            }
        };
        let input_keys: Vec<usize> = match job.op {
            RowOp::Update => key_columns.clone(),
            RowOp::Delete => (0..key_columns.len()).collect(),
        };

        // Key → the (batch, row) that wins it.
        let mut wanted: HashMap<Vec<u8>, (usize, usize)> = HashMap::new();
        let mut buf = Vec::new();
        for (b, batch) in input.iter().enumerate() {
            let cols = KeyColumns::new(batch, &input_keys, database, name)?;
            for row in 0..batch.num_rows() {
                if cols.encode(row, &mut buf) {
                    wanted.insert(buf.clone(), (b, row));
                }
            }
        }

        // The job's rows to add: the winner of each key, and rows without a key.
        let mut new_rows = Vec::new();
        if job.op == RowOp::Update {
            for (b, batch) in input.iter().enumerate() {
                let cols = KeyColumns::new(batch, &input_keys, database, name)?;
                let keep: BooleanArray = (0..batch.num_rows())
                    .map(|row| Some(!cols.encode(row, &mut buf) || wanted.get(buf.as_slice()) == Some(&(b, row))))
                    .collect();
                let kept = arrow_select::filter::filter_record_batch(batch, &keep)
                    .map_err(|e| IcebergError::InvalidData(e.to_string()))?;
                if kept.num_rows() > 0 {
                    new_rows.push(kept);
                }
            }
        }
        let rows_added: u64 = new_rows.iter().map(|b| b.num_rows() as u64).sum();

        let Some(current) = Current::read(t, database, name, cache).await? else {
            // No snapshot: nothing to remove.
            return match job.op {
                RowOp::Update => {
                    let r = self.append(database, name, new_rows, job.stream_key, job.wal_first, job.wal_last).await?;
                    Ok(RowChangeResult {
                        snapshot_id: r.snapshot_id,
                        rows_added,
                        files_written: r.data_files,
                        bytes_written: r.bytes,
                        ..RowChangeResult::default()
                    })
                }
                RowOp::Delete => self.record_position(t, job).await,
            };
        };

        // The files that may hold a key, read whole; those with a matching row rewritten.
        let candidates = if wanted.is_empty() {
            Some(HashSet::new())
        } else {
            candidate_files(t, &arrow_schema, &key_columns, &input, &input_keys).await.map_err(ice)?
        };
        let field_ids: Vec<i32> = schema.as_struct().fields().iter().map(|f| f.id).collect();
        let name_mapping = name_mapping(metadata, database, name)?;
        let mut removed_paths: HashSet<String> = HashSet::new();
        let mut removed_files: Vec<&DataFile> = Vec::new();
        let mut kept_rows: Vec<RecordBatch> = Vec::new();
        let mut rows_deleted = 0u64;
        for (entry, _) in current.live() {
            if candidates.as_ref().is_some_and(|c| !c.contains(entry.file_path())) {
                continue;
            }
            let batches = read_files(t, &[entry], &schema, &field_ids, &name_mapping).await.map_err(ice)?;
            let mut masks = Vec::with_capacity(batches.len());
            let mut matched = 0u64;
            for batch in &batches {
                let cols = KeyColumns::new(batch, &key_columns, database, name)?;
                let keep: BooleanArray = (0..batch.num_rows())
                    .map(|row| {
                        let hit = cols.encode(row, &mut buf) && wanted.contains_key(buf.as_slice());
                        matched += u64::from(hit);
                        Some(!hit)
                    })
                    .collect();
                masks.push(keep);
            }
            if matched == 0 {
                continue;
            }
            rows_deleted += matched;
            removed_paths.insert(entry.file_path().to_string());
            removed_files.push(entry.data_file());
            for (batch, keep) in batches.iter().zip(&masks) {
                let kept = arrow_select::filter::filter_record_batch(batch, keep)
                    .map_err(|e| IcebergError::InvalidData(e.to_string()))?;
                if kept.num_rows() > 0 {
                    // In the schema of the job's rows when it is the same (the writer takes one).
                    let same = RecordBatch::try_new(Arc::clone(&arrow_schema), kept.columns().to_vec());
                    kept_rows.push(same.unwrap_or(kept));
                }
            }
        }
        if removed_files.is_empty() && new_rows.is_empty() {
            return self.record_position(t, job).await;
        }

        // The new files, then the snapshot.
        let mut to_write = kept_rows;
        to_write.extend(new_rows);
        let added =
            write_data_files(t, to_write, format!("wal-{}-{}", job.wal_first, job.wal_last)).await.map_err(ice)?;
        let snapshot_id = new_snapshot_id(metadata);
        let parent_id = current.snapshot.snapshot_id();
        let mut summary =
            snapshot_summary(metadata, current.snapshot.summary(), &removed_files, &added, Operation::Overwrite);
        let wal = [
            (summary_key(job.stream_key, "first"), job.wal_first.to_string()),
            (summary_key(job.stream_key, "last"), job.wal_last.to_string()),
        ];
        summary.additional_properties.extend(wal.iter().cloned());
        let mut written = Written(added.iter().map(|f| f.file_path().to_string()).collect());
        let staged =
            write_snapshot(t, database, name, &current, &removed_paths, &added, snapshot_id, summary, &mut written)
                .await;
        let (requirements, mut updates) = match staged {
            Ok(staged) => staged,
            Err(e) => {
                written.discard(t).await;
                return Err(e);
            }
        };
        updates.push(TableUpdate::SetProperties { updates: HashMap::from([wal[1].clone()]) });
        let result = RowChangeResult {
            snapshot_id: Some(snapshot_id),
            rows_added,
            rows_deleted,
            files_rewritten: removed_files.len(),
            files_written: added.iter().map(|f| f.file_path().to_string()).collect(),
            bytes_written: added.iter().map(|f| f.file_size_in_bytes()).sum(),
        };
        self.commit_change(t, job, requirements, updates, snapshot_id, parent_id, written).await.map(|()| result)
    }

    /// Commits a staged change; on failure, deletes its files unless it may have landed.
    #[allow(clippy::too_many_arguments)]
    async fn commit_change(
        &self,
        t: &Table,
        job: &Job<'_>,
        requirements: Vec<TableRequirement>,
        updates: Vec<TableUpdate>,
        snapshot_id: i64,
        parent_id: i64,
        written: Written,
    ) -> Result<(), IcebergError> {
        let error = match self.commit_updates(t, requirements, updates).await {
            Ok(_) => return Ok(()),
            Err(e) => e,
        };
        // Whether it landed after all (an error after the swap), or lost to another commit.
        let now = self.load(job.database, job.table).await.ok();
        if let Some(now) = &now
            && now.metadata().snapshot_by_id(snapshot_id).is_some()
        {
            return Ok(());
        }
        let moved = now.as_ref().is_some_and(|n| n.metadata().current_snapshot_id() != Some(parent_id));
        if is_commit_conflict(&error) || (error.is_retryable() && moved) || self.is_embedded() {
            written.discard(t).await;
            if !is_commit_conflict(&error) && error.is_retryable() && moved {
                // Lost to another commit: redo it on the new snapshot.
                return Err(IcebergError::Catalog(format!(
                    "{}: {error}",
                    iceberg::ErrorKind::CatalogCommitConflicts.into_static()
                )));
            }
            return Err(error);
        }
        tracing::warn!(database = job.database, table = job.table, error = %error,
            "row-level commit failed; its files are left in place");
        Err(error)
    }

    /// Records the job's WAL range in the table property alone (nothing to change in the rows).
    async fn record_position(&self, t: &Table, job: &Job<'_>) -> Result<RowChangeResult, IcebergError> {
        let ice = |e| IcebergError::from_iceberg(e, job.database, job.table);
        let tx = Transaction::new(t);
        let tx = tx
            .update_table_properties()
            .set(summary_key(job.stream_key, "last"), job.wal_last.to_string())
            .apply(tx)
            .map_err(ice)?;
        tx.commit(self.catalog()).await.map_err(ice)?;
        Ok(RowChangeResult::default())
    }
}

/// The arguments of one [`IcebergCatalog::apply_row_changes`].
struct Job<'a> {
    database: &'a str,
    table: &'a str,
    op: RowOp,
    keys: &'a [String],
    batches: &'a [RecordBatch],
    stream_key: &'a str,
    wal_first: u64,
    wal_last: u64,
}

/// The positions of the key columns in the table's Arrow schema (exact name, else the only
/// case-insensitive match).
fn key_columns(schema: &SchemaRef, keys: &[String], database: &str, table: &str) -> Result<Vec<usize>, IcebergError> {
    let mut out = Vec::with_capacity(keys.len());
    for key in keys {
        let found = schema.fields().iter().position(|f| f.name() == key).or_else(|| {
            let mut matches = schema.fields().iter().enumerate().filter(|(_, f)| f.name().eq_ignore_ascii_case(key));
            match (matches.next(), matches.next()) {
                (Some((i, _)), None) => Some(i),
                _ => None,
            }
        });
        let Some(i) = found else {
            return Err(IcebergError::SchemaMismatch(format!(
                "the unique key column {key:?} is not a top-level column of {database}.{table}"
            )));
        };
        if !key_type_ok(schema.field(i).data_type()) {
            return Err(IcebergError::SchemaMismatch(format!(
                "the unique key column {key:?} of {database}.{table} is a {}, which cannot be a key",
                schema.field(i).data_type()
            )));
        }
        if !out.contains(&i) {
            out.push(i);
        }
    }
    Ok(out)
}

fn key_type_ok(t: &DataType) -> bool {
    t.primitive_width().is_some()
        || matches!(
            t,
            DataType::Boolean
                | DataType::Utf8
                | DataType::LargeUtf8
                | DataType::Binary
                | DataType::LargeBinary
                | DataType::FixedSizeBinary(_)
        )
}

/// `batch`'s columns that name a key column (by name, as `adapt` matches them).
fn project_keys(batch: &RecordBatch, keys: &SchemaRef) -> Result<RecordBatch, IcebergError> {
    let (mut fields, mut columns) = (Vec::new(), Vec::new());
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        if keys.fields().iter().any(|k| k.name() == field.name() || k.name().eq_ignore_ascii_case(field.name())) {
            fields.push(field.clone());
            columns.push(column.clone());
        }
    }
    let options = arrow_array::RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    RecordBatch::try_new_with_options(Arc::new(Schema::new(fields)), columns, &options)
        .map_err(|e| IcebergError::SchemaMismatch(e.to_string()))
}

fn name_mapping(
    metadata: &TableMetadata,
    database: &str,
    table: &str,
) -> Result<Option<Arc<NameMapping>>, IcebergError> {
    match metadata.properties().get(DEFAULT_SCHEMA_NAME_MAPPING) {
        Some(raw) => Ok(Some(Arc::new(serde_json::from_str::<NameMapping>(raw).map_err(|e| {
            IcebergError::InvalidData(format!(
                "{database}.{table}: table property {DEFAULT_SCHEMA_NAME_MAPPING} is not a name mapping: {e}"
            ))
        })?))),
        None => Ok(None),
    }
}

/// The key columns of a batch, encoded row by row into comparable bytes.
struct KeyColumns<'a> {
    columns: Vec<KeyColumn<'a>>,
}

enum KeyColumn<'a> {
    Bool(&'a arrow_array::BooleanArray),
    Str(&'a arrow_array::StringArray),
    LargeStr(&'a arrow_array::LargeStringArray),
    Bin(&'a arrow_array::BinaryArray),
    LargeBin(&'a arrow_array::LargeBinaryArray),
    Fixed(&'a arrow_array::FixedSizeBinaryArray),
    /// Fixed-width primitives: the values buffer from the array's offset, and the width.
    Prim(&'a ArrayRef, arrow_buffer::Buffer, usize),
}

impl<'a> KeyColumns<'a> {
    fn new(batch: &'a RecordBatch, positions: &[usize], database: &str, table: &str) -> Result<Self, IcebergError> {
        let mut columns = Vec::with_capacity(positions.len());
        for &i in positions {
            let Some(a) = batch.columns().get(i) else {
                return Err(IcebergError::SchemaMismatch(format!("{database}.{table}: a key column is missing")));
            };
            let column = match a.data_type() {
                DataType::Boolean => KeyColumn::Bool(a.as_boolean()),
                DataType::Utf8 => KeyColumn::Str(a.as_string::<i32>()),
                DataType::LargeUtf8 => KeyColumn::LargeStr(a.as_string::<i64>()),
                DataType::Binary => KeyColumn::Bin(a.as_binary::<i32>()),
                DataType::LargeBinary => KeyColumn::LargeBin(a.as_binary::<i64>()),
                DataType::FixedSizeBinary(_) => KeyColumn::Fixed(a.as_fixed_size_binary()),
                t => match t.primitive_width() {
                    Some(width) => {
                        let data = a.to_data();
                        let Some(values) = data.buffers().first() else {
                            return Err(IcebergError::SchemaMismatch(format!("key column of type {t} has no values")));
                        };
                        let values = values.slice_with_length(
                            data.offset() * width,
                            (data.len() * width).min(values.len().saturating_sub(data.offset() * width)),
                        );
                        KeyColumn::Prim(a, values, width)
                    }
                    None => {
                        return Err(IcebergError::SchemaMismatch(format!(
                            "{database}.{table}: a key column of type {t} cannot be compared"
                        )));
                    }
                },
            };
            columns.push(column);
        }
        Ok(KeyColumns { columns })
    }

    /// Writes row `row`'s key into `buf` (cleared first); false if a key column is null there.
    fn encode(&self, row: usize, buf: &mut Vec<u8>) -> bool {
        buf.clear();
        for column in &self.columns {
            let (null, bytes): (bool, &[u8]) = match column {
                KeyColumn::Bool(a) => (a.is_null(row), if a.value(row) { &[1] } else { &[0] }),
                KeyColumn::Str(a) => (a.is_null(row), a.value(row).as_bytes()),
                KeyColumn::LargeStr(a) => (a.is_null(row), a.value(row).as_bytes()),
                KeyColumn::Bin(a) => (a.is_null(row), a.value(row)),
                KeyColumn::LargeBin(a) => (a.is_null(row), a.value(row)),
                KeyColumn::Fixed(a) => (a.is_null(row), a.value(row)),
                KeyColumn::Prim(a, values, width) => {
                    (a.is_null(row), values.get(row * width..(row + 1) * width).unwrap_or_default())
                }
            };
            if null {
                return false;
            }
            buf.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            buf.extend_from_slice(bytes);
        }
        true
    }
}

/// The data files of `table`'s current snapshot that may hold one of the keys, by iceberg's scan
/// planning (partition values and column bounds) on `key IN (...)` for the key columns of types it
/// can compare; None when no key column can prune (every file may hold a key).
async fn candidate_files(
    table: &Table,
    schema: &SchemaRef,
    key_columns: &[usize],
    input: &[RecordBatch],
    input_keys: &[usize],
) -> iceberg::Result<Option<HashSet<String>>> {
    let mut predicate: Option<Predicate> = None;
    for (k, &column) in key_columns.iter().enumerate() {
        let name = schema.field(column).name();
        let mut values: Vec<Datum> = Vec::new();
        let mut seen = HashSet::new();
        let mut usable = true;
        for batch in input {
            let Some(a) = batch.columns().get(input_keys[k]) else { return Ok(None) };
            for row in 0..a.len() {
                if a.is_null(row) {
                    continue;
                }
                let datum = match a.data_type() {
                    DataType::Int32 => Datum::int(a.as_primitive::<arrow_array::types::Int32Type>().value(row)),
                    DataType::Int64 => Datum::long(a.as_primitive::<arrow_array::types::Int64Type>().value(row)),
                    DataType::Date32 => Datum::date(a.as_primitive::<arrow_array::types::Date32Type>().value(row)),
                    DataType::Utf8 => Datum::string(a.as_string::<i32>().value(row)),
                    DataType::Boolean => Datum::bool(a.as_boolean().value(row)),
                    _ => {
                        usable = false;
                        break;
                    }
                };
                if seen.insert(datum.to_string()) {
                    values.push(datum);
                }
            }
            if !usable {
                break;
            }
        }
        if !usable || values.is_empty() {
            continue;
        }
        let p = Reference::new(name).is_in(values);
        predicate = Some(match predicate {
            None => p,
            Some(q) => q.and(p),
        });
    }
    let Some(predicate) = predicate else { return Ok(None) };
    let scan = table.scan().select_empty().with_filter(predicate).build()?;
    let tasks: Vec<iceberg::scan::FileScanTask> = scan.plan_files().await?.try_collect().await?;
    Ok(Some(tasks.into_iter().map(|t| t.data_file_path).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::types::Int64Type;
    use iceberg::scan::FileScanTask;
    use spillway_format::json::{Deserializer, JsonConverter};

    const DB: &str = "shop";
    const SCHEMA: &str = r#"[
        {"name": "id", "type": "long"},
        {"name": "grp", "type": "string"},
        {"name": "amount", "type": "long", "required": true},
        {"name": "note", "type": "string"}
    ]"#;

    use crate::iceberg::tests::open_tables as open;

    async fn create(catalog: &IcebergCatalog, table: &str, partition_by: &[&str]) {
        crate::iceberg::tests::create_table(catalog, DB, table, SCHEMA, partition_by).await
    }

    async fn batch(catalog: &IcebergCatalog, table: &str, records: &[String]) -> RecordBatch {
        let info = catalog.table_info(DB, table).await.expect("info");
        let deserializer = Deserializer::default();
        let mut converter = JsonConverter::new(&info.columns, &deserializer);
        for r in records {
            converter.push_record(r.as_bytes()).expect("record");
        }
        converter.flush().expect("flush")
    }

    fn rec(id: i64, grp: &str, amount: i64) -> String {
        format!(r#"{{"id":{id},"grp":"{grp}","amount":{amount},"note":"n{id}"}}"#)
    }

    /// Appends rows `ids` (group g<id % 3>, amount id) at WAL positions `ids` of stream "s".
    async fn append(catalog: &IcebergCatalog, table: &str, ids: std::ops::Range<i64>) {
        let records: Vec<String> = ids.clone().map(|i| rec(i, &format!("g{}", i % 3), i)).collect();
        let b = batch(catalog, table, &records).await;
        catalog.append(DB, table, vec![b], "s", ids.start as u64, ids.end as u64 - 1).await.expect("append");
    }

    async fn apply(
        catalog: &IcebergCatalog,
        table: &str,
        op: RowOp,
        keys: &[&str],
        records: &[String],
        wal: (u64, u64),
    ) -> Result<RowChangeResult, IcebergError> {
        let b = batch(catalog, table, records).await;
        let keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
        catalog.apply_row_changes(DB, table, op, &keys, vec![b], "s.rows", wal.0, wal.1).await
    }

    /// Every row as (id, grp, amount), sorted (ids of null as -1).
    async fn rows(catalog: &IcebergCatalog, table: &str) -> Vec<(i64, String, i64)> {
        let t = catalog.load(DB, table).await.expect("load");
        if t.metadata().current_snapshot().is_none() {
            return Vec::new();
        }
        let scan = t.scan().select(["id", "grp", "amount"]).build().expect("scan");
        let batches: Vec<RecordBatch> = scan.to_arrow().await.expect("arrow").try_collect().await.expect("read");
        let mut out = Vec::new();
        for b in &batches {
            let (id, grp, amount) = (
                b.column(0).as_primitive::<Int64Type>(),
                b.column(1).as_string::<i32>(),
                b.column(2).as_primitive::<Int64Type>(),
            );
            for r in 0..b.num_rows() {
                let id = if id.is_null(r) { -1 } else { id.value(r) };
                let g = if grp.is_null(r) { "null".to_string() } else { grp.value(r).to_string() };
                out.push((id, g, amount.value(r)));
            }
        }
        out.sort();
        out
    }

    async fn files(catalog: &IcebergCatalog, table: &str) -> Vec<String> {
        let t = catalog.load(DB, table).await.expect("load");
        let scan = t.scan().select_all().build().expect("scan");
        let tasks: Vec<FileScanTask> = scan.plan_files().await.expect("plan").try_collect().await.expect("tasks");
        let mut paths: Vec<String> = tasks.into_iter().map(|t| t.data_file_path).collect();
        paths.sort();
        paths
    }

    fn expected(ids: impl Iterator<Item = i64>) -> Vec<(i64, String, i64)> {
        let mut v: Vec<_> = ids.map(|i| (i, format!("g{}", i % 3), i)).collect();
        v.sort();
        v
    }

    #[tokio::test]
    async fn an_update_replaces_the_rows_of_its_keys_and_touches_no_other_file() {
        let tmp = tempfile::tempdir().expect("tmp");
        let catalog = open(tmp.path()).await;
        create(&catalog, "t", &[]).await;
        append(&catalog, "t", 0..10).await;
        append(&catalog, "t", 10..20).await;
        append(&catalog, "t", 20..30).await;
        let before = files(&catalog, "t").await;
        let parent = catalog.load(DB, "t").await.expect("load").metadata().current_snapshot_id();

        // Keys 5 and 7 exist (5 twice: the last wins), 100 does not (an upsert).
        let changes = [rec(5, "x", 500), rec(7, "y", 700), rec(5, "z", 501), rec(100, "w", 1000)];
        let r = apply(&catalog, "t", RowOp::Update, &["id"], &changes, (30, 33)).await.expect("update");
        assert_eq!((r.rows_added, r.rows_deleted, r.files_rewritten), (3, 2, 1));
        let mut want = expected((0..30).filter(|i| *i != 5 && *i != 7));
        want.extend([(5, "z".into(), 501), (7, "y".into(), 700), (100, "w".into(), 1000)]);
        want.sort();
        assert_eq!(rows(&catalog, "t").await, want);
        let after = files(&catalog, "t").await;
        assert_eq!(after.len(), 3);
        assert_eq!(after.iter().filter(|p| before.contains(p)).count(), 2, "the files without a key are kept");

        let t = catalog.load(DB, "t").await.expect("load");
        let snapshot = t.metadata().current_snapshot().expect("current");
        assert_eq!(snapshot.snapshot_id(), r.snapshot_id.expect("snapshot"));
        assert_eq!(snapshot.parent_snapshot_id(), parent);
        let summary = snapshot.summary();
        assert_eq!(summary.operation, Operation::Overwrite);
        let p = |k: &str| summary.additional_properties.get(k).cloned().unwrap_or_default();
        assert_eq!(
            [p("added-data-files"), p("deleted-data-files"), p("added-records"), p("deleted-records")],
            ["1", "1", "11", "10"]
        );
        assert_eq!([p("total-data-files"), p("total-records")], ["3", "31"]);
        assert_eq!([p("spillway.s.rows.wal-first"), p("spillway.s.rows.wal-last")], ["30", "33"]);
        assert_eq!(t.metadata().properties().get("spillway.s.rows.wal-last").map(String::as_str), Some("33"));
        assert_eq!(catalog.committed_position(DB, "t", "s.rows").await.expect("position"), Some(33));
        assert_eq!(catalog.committed_position(DB, "t", "s").await.expect("position"), Some(29));
    }

    #[tokio::test]
    async fn a_delete_removes_its_keys_and_a_delete_of_nothing_records_its_position() {
        let tmp = tempfile::tempdir().expect("tmp");
        let catalog = open(tmp.path()).await;
        create(&catalog, "t", &[]).await;
        // On a table without a snapshot: nothing to delete, the position is recorded.
        let r = apply(&catalog, "t", RowOp::Delete, &["id"], &[r#"{"id":1}"#.into()], (0, 0)).await.expect("delete");
        assert_eq!(r, RowChangeResult::default());
        assert_eq!(catalog.committed_position(DB, "t", "s.rows").await.expect("position"), Some(0));

        append(&catalog, "t", 0..10).await;
        append(&catalog, "t", 10..20).await;
        // Only the key matters: the record lacks the required amount.
        let deletes = [r#"{"id":3}"#.to_string(), r#"{"id":4,"grp":"other"}"#.into(), r#"{"id":99}"#.into()];
        let r = apply(&catalog, "t", RowOp::Delete, &["id"], &deletes, (20, 22)).await.expect("delete");
        assert_eq!((r.rows_added, r.rows_deleted, r.files_rewritten), (0, 2, 1));
        assert_eq!(rows(&catalog, "t").await, expected((0..20).filter(|i| *i != 3 && *i != 4)));

        // A whole file deleted: no file is added in its place.
        let all: Vec<String> = (10..20).map(|i| format!(r#"{{"id":{i}}}"#)).collect();
        let r = apply(&catalog, "t", RowOp::Delete, &["id"], &all, (23, 32)).await.expect("delete");
        assert_eq!((r.rows_deleted, r.files_rewritten), (10, 1));
        assert_eq!(files(&catalog, "t").await.len(), 1);
        let t = catalog.load(DB, "t").await.expect("load");
        let summary = t.metadata().current_snapshot().expect("current").summary();
        assert_eq!(summary.additional_properties.get("added-data-files"), None);
        assert_eq!(summary.additional_properties.get("total-records").map(String::as_str), Some("8"));

        // Keys no row has: no snapshot, but the position is recorded.
        let snapshots = t.metadata().snapshots().count();
        let r = apply(&catalog, "t", RowOp::Delete, &["id"], &[r#"{"id":99}"#.into()], (33, 33)).await.expect("none");
        assert_eq!(r, RowChangeResult::default());
        let t = catalog.load(DB, "t").await.expect("load");
        assert_eq!(t.metadata().snapshots().count(), snapshots);
        assert_eq!(catalog.committed_position(DB, "t", "s.rows").await.expect("position"), Some(33));
        assert_eq!(rows(&catalog, "t").await.len(), 8);
    }

    #[tokio::test]
    async fn partitioned_tables_composite_keys_and_null_keys() {
        let tmp = tempfile::tempdir().expect("tmp");
        let catalog = open(tmp.path()).await;
        create(&catalog, "p", &["grp"]).await;
        append(&catalog, "p", 0..12).await;
        let before = files(&catalog, "p").await;
        assert_eq!(before.len(), 3);

        // Key (grp, id): (g1, 4) exists, (g0, 4) does not; a null id matches nothing and is added.
        let changes = [rec(4, "g1", 40), rec(4, "g0", 41), r#"{"grp":"g2","amount":7}"#.to_string()];
        let r = apply(&catalog, "p", RowOp::Update, &["grp", "id"], &changes, (12, 14)).await.expect("update");
        assert_eq!((r.rows_added, r.rows_deleted, r.files_rewritten), (3, 1, 1));
        let mut want = expected((0..12).filter(|i| *i != 4));
        want.extend([(4, "g1".into(), 40), (4, "g0".into(), 41), (-1, "g2".into(), 7)]);
        want.sort();
        assert_eq!(rows(&catalog, "p").await, want);
        // Only g1's file was rewritten (partition values prune the others).
        let after = files(&catalog, "p").await;
        assert_eq!(after.iter().filter(|p| before.contains(p)).count(), 2, "{after:?}");

        // Deletes: a null key is ignored; (g0, 4) goes, (g1, 4) stays.
        let deletes = [r#"{"grp":"g0","id":4}"#.to_string(), r#"{"grp":"g2"}"#.into()];
        let r = apply(&catalog, "p", RowOp::Delete, &["grp", "id"], &deletes, (15, 16)).await.expect("delete");
        assert_eq!((r.rows_deleted, r.files_rewritten), (1, 1));
        want.retain(|row| *row != (4, "g0".into(), 41));
        assert_eq!(rows(&catalog, "p").await, want);

        let e = apply(&catalog, "p", RowOp::Delete, &["nope"], &deletes, (17, 17)).await.expect_err("unknown key");
        assert!(matches!(&e, IcebergError::SchemaMismatch(m) if m.contains("nope")), "{e:?}");
    }

    /// Appends from another catalog (another stream) while updates run: every update lands once,
    /// on top of every append (a lost race is redone on the new snapshot).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn updates_and_concurrent_appends_keep_every_row() {
        let tmp = tempfile::tempdir().expect("tmp");
        let catalog = open(tmp.path()).await;
        create(&catalog, "t", &[]).await;
        append(&catalog, "t", 0..10).await;
        let writer = open(tmp.path()).await;
        let appends = tokio::spawn(async move {
            for k in 1..13 {
                append(&writer, "t", k * 10..k * 10 + 10).await;
            }
        });
        for k in 0..8i64 {
            let changes = [rec(k, "u", 1000 + k)];
            let wal = (1000 + k as u64, 1000 + k as u64);
            apply(&catalog, "t", RowOp::Update, &["id"], &changes, wal).await.expect("update");
        }
        appends.await.expect("appends");
        let mut want = expected(8..130);
        want.extend((0..8).map(|k| (k, "u".to_string(), 1000 + k)));
        want.sort();
        assert_eq!(rows(&catalog, "t").await, want);
        assert_eq!(catalog.committed_position(DB, "t", "s.rows").await.expect("position"), Some(1007));
    }
}
