//! Small-file compaction of Iceberg tables ([`IcebergCatalog::compact`]), and commits of any table
//! updates to the embedded SQLite catalog (`commit_sql`).
//!
//! # What it owns
//!
//! - The replace snapshot of a compaction: which files are rewritten, the Parquet files that replace
//!   them (written by `write_data_files`), the manifests, the manifest
//!   list, the summary and the commit, retried on conflicts.
//! - Raw commits to the embedded catalog: iceberg-rust's `Transaction` cannot build a replace
//!   snapshot, and `SqlCatalog::update_table` only takes a `TableCommit`, which only the iceberg
//!   crate can build. `commit_sql` does what `update_table` does for requirements and updates we
//!   build ourselves: reload the current metadata location from `iceberg_tables`, check the
//!   requirements against that metadata, apply the updates, write
//!   `<location>/metadata/<version + 1>-<uuid>.metadata.json`, then swap `metadata_location` with a
//!   compare-and-swap on the location it read (`UPDATE ... WHERE metadata_location = <read>`).
//!
//! # Algorithm
//!
//! 1. The live data files of the current snapshot: manifest list, then every manifest's entries
//!    with status Added or Existing. Tables with live delete files, or in a format other than v2,
//!    are refused ([`IcebergError::Unsupported`]): rewriting data files under position or equality
//!    deletes needs sequence-number care this module does not take.
//! 2. Grouped by partition (spec id and partition value); only the default spec's partitions are
//!    compacted, since the new files are written in it. A Parquet file is small when it is smaller
//!    than 3/4 of the target size ([`CompactOptions::target_file_size_bytes`], else the table's
//!    `write.target-file-size-bytes`, 512 MiB). A group with at least
//!    [`CompactOptions::min_input_files`] small files is cut into bins of at most the target size
//!    of input (oldest files first); each bin of at least `min_input_files` files is rewritten.
//! 3. A bin's files are read through iceberg's Arrow reader in the table's current schema (files
//!    written before a schema change read as the current schema), one bin at a time (a bin is held
//!    in memory), and written as `compact-<snapshot id>-NNNNN-<uuid>.parquet`; the new files must
//!    hold the bin's row count, in the bin's partition, or the attempt fails.
//! 4. One snapshot, operation `replace`, parent the current snapshot, sequence number the next one,
//!    schema the current one. Its manifests: one of the added files (Added, the new sequence
//!    number); one that replaces every manifest listing a rewritten file, with those files Deleted
//!    and the manifests' other live files Existing (snapshot ids and sequence numbers kept; one
//!    merged manifest rather than one per touched manifest, which would leave as many small
//!    manifests as there were appends); every other manifest reused as is. The summary is Java's:
//!    `added-data-files`, `deleted-data-files`, `added-records`, `deleted-records`,
//!    `added-files-size`, `removed-files-size`, `changed-partition-count` and the `total-*` running
//!    totals from the parent's.
//! 5. Committed through `IcebergCatalog::commit_updates` with the requirements "same table UUID"
//!    and "`main` still points at the snapshot compacted". On a conflict (a stream appended
//!    meanwhile) the table is reloaded and, if every replaced file is still live there (and the
//!    default spec unchanged), step 4 is redone on the new snapshot with the same new data files,
//!    as Java's RewriteFiles does (up to 10 times, after a random pause of up to 20 ms): no data is
//!    read or written again, and manifests already read are not read again, so a compaction does
//!    not starve behind frequent appends. Otherwise (another compaction replaced some of the files)
//!    the whole compaction is redone, up to 3 times. The files of a failed attempt are deleted
//!    (best-effort). Nothing to compact commits nothing.
//!
//! # Invariants
//!
//! - One compaction is one commit: readers see all the old files or all the new ones, never a mix.
//! - Rows are unchanged: the same rows, values and count (checked per bin before the commit).
//! - Concurrent commits are safe: the server's appends and a compaction from the CLI (or two CLI
//!   compactions) each swap `metadata_location` only if it still names the metadata they read and
//!   checked their requirements against (SQLite's compare-and-swap in `iceberg_tables`, the same
//!   one `SqlCatalog::update_table` does), so a commit never overwrites another: the loser fails
//!   with a retryable `CatalogCommitConflicts` and nothing of it is visible. A compaction also
//!   requires `main` to still be the snapshot it compacted, so it never drops a concurrent append.
//! - Snapshot summaries of older snapshots stay in the history, so
//!   [`IcebergCatalog::committed_position`] still finds the streams' WAL positions after a
//!   compaction (it walks the ancestors).

use super::{IcebergCatalog, IcebergError, write_data_files};
use futures::{StreamExt, TryStreamExt};
use iceberg::scan::FileScanTask;
use iceberg::spec::{
    DEFAULT_SCHEMA_NAME_MAPPING, DataContentType, DataFile, DataFileFormat, FormatVersion, MAIN_BRANCH, Manifest,
    ManifestContentType, ManifestEntry, ManifestFile, ManifestListWriter, ManifestWriterBuilder, NameMapping,
    Operation, SchemaRef, Snapshot, SnapshotRef, SnapshotReference, SnapshotRetention, SnapshotSummaryCollector,
    Struct, Summary, TableMetadata, TableMetadataBuilder, TableProperties,
};
use iceberg::table::Table;
use iceberg::{Error, ErrorKind, MetadataLocation, Runtime, TableIdent, TableRequirement, TableUpdate};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{ConnectOptions, Connection};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

// The `iceberg_tables` table of iceberg-catalog-sql (and of the Java JDBC and PyIceberg catalogs).
const CATALOG_TABLE: &str = "iceberg_tables";
const FIELD_CATALOG_NAME: &str = "catalog_name";
const FIELD_TABLE_NAMESPACE: &str = "table_namespace";
const FIELD_TABLE_NAME: &str = "table_name";
const FIELD_METADATA_LOCATION: &str = "metadata_location";
const FIELD_PREVIOUS_METADATA_LOCATION: &str = "previous_metadata_location";
const FIELD_RECORD_TYPE: &str = "iceberg_type";
const TABLE_RECORD_TYPE: &str = "TABLE";

/// How many times a compaction whose replaced files changed under it is redone (read and written
/// again).
const REDO_RETRIES: usize = 3;
/// How many times a compaction that lost a commit race to an append is restaged on the new
/// snapshot (cheap: manifests only), on top of the redos.
const RESTAGE_RETRIES: usize = 10;

/// Commits `updates` to `table` in the embedded catalog at `db_path` (catalog `catalog_name`), if
/// every requirement holds for the table's current metadata (reloaded from the database, not
/// `table`'s): `SqlCatalog::update_table` for updates we build ourselves. Fails with a retryable
/// `CatalogCommitConflicts` when a requirement does not hold or another commit swapped the
/// metadata location first. Returns the table as committed (same identifier and FileIO).
pub(super) async fn commit_sql(
    db_path: &Path,
    catalog_name: &str,
    table: &Table,
    requirements: Vec<TableRequirement>,
    updates: Vec<TableUpdate>,
) -> iceberg::Result<Table> {
    let ident = table.identifier();
    let mut conn = connect(db_path).await?;
    let result = async {
        let current_location = current_metadata_location(&mut conn, catalog_name, ident).await?;
        let current = TableMetadata::read_from(table.file_io(), &current_location).await?;
        for requirement in &requirements {
            requirement.check(Some(&current)).map_err(|e| {
                Error::new(ErrorKind::CatalogCommitConflicts, format!("Requirement failed for table {ident}"))
                    .with_retryable(true)
                    .with_source(e)
            })?;
        }
        let mut builder = TableMetadataBuilder::new_from_metadata(current, Some(current_location.clone()));
        for update in updates {
            builder = update.apply(builder)?;
        }
        let metadata = builder.build()?.metadata;
        let location = MetadataLocation::from_str(&current_location)?.with_next_version().with_new_metadata(&metadata);
        metadata.write_to(table.file_io(), &location).await?;
        let location = location.to_string();
        if let Err(e) = swap_metadata_location(&mut conn, catalog_name, ident, &current_location, &location).await {
            if e.kind() == ErrorKind::CatalogCommitConflicts {
                // Nobody refers to it: the swap did not happen.
                let _ = table.file_io().delete(&location).await;
            }
            return Err(e);
        }
        Table::builder()
            .file_io(table.file_io().clone())
            .identifier(ident.clone())
            .metadata_location(location)
            .metadata(metadata)
            .runtime(Runtime::try_current()?)
            .build()
    }
    .await;
    let _ = conn.close().await;
    result
}

fn sql_error(e: sqlx::Error) -> Error {
    Error::new(ErrorKind::Unexpected, "the catalog database failed").with_source(e)
}

/// A short-lived connection to the catalog database (the catalog's own pool is not reachable; the
/// default busy timeout waits for its writers).
async fn connect(db_path: &Path) -> iceberg::Result<SqliteConnection> {
    SqliteConnectOptions::new().filename(db_path).create_if_missing(false).connect().await.map_err(|e| {
        Error::new(ErrorKind::Unexpected, format!("cannot open the catalog database {}", db_path.display()))
            .with_source(e)
    })
}

async fn current_metadata_location(
    conn: &mut SqliteConnection,
    catalog_name: &str,
    ident: &TableIdent,
) -> iceberg::Result<String> {
    let sql = format!(
        "SELECT {FIELD_METADATA_LOCATION} FROM {CATALOG_TABLE}
         WHERE {FIELD_CATALOG_NAME} = ? AND {FIELD_TABLE_NAMESPACE} = ? AND {FIELD_TABLE_NAME} = ?
           AND ({FIELD_RECORD_TYPE} = '{TABLE_RECORD_TYPE}' OR {FIELD_RECORD_TYPE} IS NULL)"
    );
    let row: Option<(Option<String>,)> = sqlx::query_as(&sql)
        .bind(catalog_name)
        .bind(ident.namespace().join("."))
        .bind(ident.name())
        .fetch_optional(&mut *conn)
        .await
        .map_err(sql_error)?;
    match row {
        Some((Some(location),)) => Ok(location),
        Some((None,)) => Err(Error::new(ErrorKind::DataInvalid, format!("Table {ident} has no metadata location"))),
        None => Err(Error::new(ErrorKind::TableNotFound, format!("No such table: {ident}"))),
    }
}

/// Points the table at `new` if it still points at `expected` (else a retryable
/// `CatalogCommitConflicts`).
async fn swap_metadata_location(
    conn: &mut SqliteConnection,
    catalog_name: &str,
    ident: &TableIdent,
    expected: &str,
    new: &str,
) -> iceberg::Result<()> {
    let sql = format!(
        "UPDATE {CATALOG_TABLE} SET {FIELD_METADATA_LOCATION} = ?, {FIELD_PREVIOUS_METADATA_LOCATION} = ?
         WHERE {FIELD_CATALOG_NAME} = ? AND {FIELD_TABLE_NAMESPACE} = ? AND {FIELD_TABLE_NAME} = ?
           AND ({FIELD_RECORD_TYPE} = '{TABLE_RECORD_TYPE}' OR {FIELD_RECORD_TYPE} IS NULL)
           AND {FIELD_METADATA_LOCATION} = ?"
    );
    let done = sqlx::query(&sql)
        .bind(new)
        .bind(expected)
        .bind(catalog_name)
        .bind(ident.namespace().join("."))
        .bind(ident.name())
        .bind(expected)
        .execute(&mut *conn)
        .await
        .map_err(sql_error)?;
    if done.rows_affected() == 0 {
        return Err(Error::new(ErrorKind::CatalogCommitConflicts, format!("Commit conflicted for table: {ident}"))
            .with_retryable(true));
    }
    Ok(())
}

/// What [`IcebergCatalog::compact`] rewrites.
#[derive(Debug, Clone)]
pub struct CompactOptions {
    /// The size files are compacted to; a file smaller than 3/4 of it is small. Default: the
    /// table's `write.target-file-size-bytes` (512 MiB unless set). The new files roll over at the
    /// table's property in any case.
    pub target_file_size_bytes: Option<u64>,
    /// The fewest small files of a partition worth rewriting (default 2; below 2 counts as 2, since
    /// rewriting one file alone compacts nothing).
    pub min_input_files: usize,
}

impl Default for CompactOptions {
    fn default() -> Self {
        CompactOptions { target_file_size_bytes: None, min_input_files: 2 }
    }
}

/// What one compaction did. File and byte counts are of the table's live data files.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CompactReport {
    pub files_before: usize,
    pub files_after: usize,
    /// Data files replaced.
    pub rewritten_files: usize,
    /// Data files written in their place.
    pub added_files: usize,
    /// Rows rewritten (the rows of the replaced files, which the new files hold).
    pub rows: u64,
    pub bytes_before: u64,
    pub bytes_after: u64,
    /// The replace snapshot; None when there was nothing to compact (nothing committed).
    pub snapshot_id: Option<i64>,
}

/// The data half of a compaction: the files to replace and the files written in their place (not
/// committed; valid on any later snapshot in which the replaced files are still live).
struct Rewrite {
    /// Paths of the data files replaced.
    removed: HashSet<String>,
    /// The new data files, all in the partition spec `spec_id`.
    added: Vec<DataFile>,
    spec_id: i32,
    /// The id in the new files' names, which the snapshot takes unless the table has it by then.
    snapshot_id: i64,
}

impl Rewrite {
    async fn discard(self, table: &Table) {
        Written(self.added.iter().map(|f| f.file_path().to_string()).collect()).discard(table).await;
    }
}

/// A snapshot of a [`Rewrite`] on a given table snapshot: written but not committed.
struct Staged {
    report: CompactReport,
    snapshot_id: i64,
    parent_id: i64,
    requirements: Vec<TableRequirement>,
    updates: Vec<TableUpdate>,
    /// The manifests and manifest list it wrote.
    written: Written,
}

enum Plan {
    Nothing(CompactReport),
    Rewrite(Rewrite),
}

/// Files an attempt wrote: deleted if it does not commit.
#[derive(Default)]
pub(super) struct Written(pub(super) Vec<String>);

impl Written {
    pub(super) async fn discard(self, table: &Table) {
        for path in self.0 {
            if let Err(e) = table.file_io().delete(&path).await {
                tracing::warn!(path, error = %e, "cannot delete a file of a commit that failed");
            }
        }
    }
}

/// Why a staged snapshot did not commit.
enum Failure {
    /// The table changed under it (retryable); its metadata files are deleted.
    Conflict(IcebergError),
    /// It did not commit; its metadata files are deleted.
    Failed(IcebergError),
    /// It may have committed or not (a remote catalog failed): nothing is deleted.
    Unknown(IcebergError),
}

impl IcebergCatalog {
    /// Rewrites the small data files of `database.table` into fewer, larger ones in ONE `replace`
    /// snapshot (see the module docs); rows are unchanged. A commit that loses to a concurrent
    /// append puts the same new files on the new snapshot (up to 10 times); if the files it
    /// replaces changed, the whole compaction is redone (up to 3 times). Nothing to compact: a
    /// report with `snapshot_id: None`, nothing committed.
    pub async fn compact(
        &self,
        database: &str,
        table: &str,
        options: &CompactOptions,
    ) -> Result<CompactReport, IcebergError> {
        let (mut redos, mut restages) = (0, 0);
        let mut cache = ManifestCache::new();
        'plan: loop {
            let mut t = self.load(database, table).await?;
            let rewrite = match plan_rewrite(&t, database, table, options, &mut cache).await? {
                Plan::Nothing(report) => return Ok(report),
                Plan::Rewrite(rewrite) => rewrite,
            };
            loop {
                let staged = match stage(&t, database, table, &rewrite, &mut cache).await {
                    Ok(Some(staged)) => staged,
                    Ok(None) => {
                        // The files it replaces are no longer all live (another compaction?).
                        rewrite.discard(&t).await;
                        redos += 1;
                        tracing::info!(database, table, redos, "the files a compaction replaces changed; redoing it");
                        if redos > REDO_RETRIES {
                            return Err(IcebergError::Catalog(format!(
                                "{}: the data files of {database}.{table} kept changing during the compaction",
                                ErrorKind::CatalogCommitConflicts.into_static()
                            )));
                        }
                        tokio::time::sleep(jitter(50 * redos as u64)).await;
                        continue 'plan;
                    }
                    Err(e) => {
                        rewrite.discard(&t).await;
                        return Err(e);
                    }
                };
                match self.commit_staged(&t, database, table, staged).await {
                    Ok(report) => return Ok(report),
                    Err(Failure::Conflict(e)) => {
                        restages += 1;
                        tracing::info!(database, table, restages, "compaction lost a commit race; restaging it");
                        if restages > RESTAGE_RETRIES {
                            rewrite.discard(&t).await;
                            return Err(e);
                        }
                        // A short random pause, out of step with the appends it lost to.
                        tokio::time::sleep(jitter(20)).await;
                        match self.load(database, table).await {
                            Ok(now) => t = now,
                            Err(e) => {
                                rewrite.discard(&t).await;
                                return Err(e);
                            }
                        }
                    }
                    Err(Failure::Failed(e)) => {
                        rewrite.discard(&t).await;
                        return Err(e);
                    }
                    Err(Failure::Unknown(e)) => return Err(e),
                }
            }
        }
    }

    /// Commits a staged compaction of `table` (the table it was staged on).
    async fn commit_staged(
        &self,
        table: &Table,
        database: &str,
        name: &str,
        staged: Staged,
    ) -> Result<CompactReport, Failure> {
        let Staged { report, snapshot_id, parent_id, requirements, updates, written } = staged;
        let error = match self.commit_updates(table, requirements, updates).await {
            Ok(_) => return Ok(report),
            Err(e) => e,
        };
        // Whether it landed after all (an error after the swap), or lost to another commit.
        let now = self.load(database, name).await.ok();
        if let Some(now) = &now
            && now.metadata().snapshot_by_id(snapshot_id).is_some()
        {
            return Ok(report);
        }
        let moved = now.as_ref().is_some_and(|t| t.metadata().current_snapshot_id() != Some(parent_id));
        if is_commit_conflict(&error) || (error.is_retryable() && moved) {
            written.discard(table).await;
            return Err(Failure::Conflict(error));
        }
        if self.is_embedded() {
            // SQLite either swapped the location or not: it did not.
            written.discard(table).await;
            return Err(Failure::Failed(error));
        }
        tracing::warn!(database, table = name, error = %error, "compaction commit failed; its files are left in place");
        Err(Failure::Unknown(error))
    }
}

/// Whether a commit failed because the table changed under it (iceberg's `CatalogCommitConflicts`,
/// which `IcebergError::from_iceberg` keeps as the start of the text).
pub(super) fn is_commit_conflict(e: &IcebergError) -> bool {
    matches!(e, IcebergError::Catalog(m) if m.starts_with(ErrorKind::CatalogCommitConflicts.into_static()))
}

/// Manifests read so far, by path (a manifest never changes once written): a restaged attempt
/// reads only the manifests of the commits that beat it.
pub(super) type ManifestCache = HashMap<String, Arc<Manifest>>;

/// The current snapshot of a table and its manifests.
pub(super) struct Current {
    pub(super) snapshot: SnapshotRef,
    pub(super) manifests: Vec<(ManifestFile, Arc<Manifest>)>,
}

impl Current {
    /// Reads the current snapshot's manifests; None if the table has no snapshot. Refuses tables
    /// this module cannot compact (format other than v2, live delete files).
    pub(super) async fn read(
        table: &Table,
        database: &str,
        name: &str,
        cache: &mut ManifestCache,
    ) -> Result<Option<Current>, IcebergError> {
        let ice = |e| IcebergError::from_iceberg(e, database, name);
        let metadata = table.metadata();
        if metadata.format_version() != FormatVersion::V2 {
            return Err(IcebergError::Unsupported(format!(
                "rewriting data files of {database}.{name}: the table is in Iceberg format {}; only v2 tables are rewritten",
                metadata.format_version()
            )));
        }
        let Some(snapshot) = metadata.current_snapshot() else { return Ok(None) };
        let list = table.manifest_list_reader(snapshot).load().await.map_err(ice)?;
        let mut manifests = Vec::with_capacity(list.entries().len());
        for file in list.entries() {
            let manifest = match cache.get(&file.manifest_path) {
                Some(manifest) => manifest.clone(),
                None => {
                    let manifest = Arc::new(file.load_manifest(table.file_io()).await.map_err(ice)?);
                    cache.insert(file.manifest_path.clone(), manifest.clone());
                    manifest
                }
            };
            let deletes = manifest.entries().iter().any(|e| e.is_alive() && e.content_type() != DataContentType::Data);
            if deletes
                || (file.content == ManifestContentType::Deletes && manifest.entries().iter().any(|e| e.is_alive()))
            {
                return Err(IcebergError::Unsupported(format!(
                    "rewriting data files of {database}.{name}: the table has delete files (row-level deletes)"
                )));
            }
            manifests.push((file.clone(), manifest));
        }
        Ok(Some(Current { snapshot: snapshot.clone(), manifests }))
    }

    /// The live data files, with the partition spec of their manifest.
    pub(super) fn live(&self) -> impl Iterator<Item = (&ManifestEntry, i32)> {
        self.manifests
            .iter()
            .filter(|(file, _)| file.content == ManifestContentType::Data)
            .flat_map(|(file, manifest)| manifest.entries().iter().map(move |e| (e.as_ref(), file.partition_spec_id)))
            .filter(|(e, _)| e.is_alive())
    }
}

/// Chooses the files to rewrite in `table`'s current snapshot and writes their replacements.
async fn plan_rewrite(
    table: &Table,
    database: &str,
    name: &str,
    options: &CompactOptions,
    cache: &mut ManifestCache,
) -> Result<Plan, IcebergError> {
    let ice = |e| IcebergError::from_iceberg(e, database, name);
    let invalid = |m: String| IcebergError::InvalidData(format!("compaction of {database}.{name}: {m}"));
    let metadata = table.metadata();
    let Some(current) = Current::read(table, database, name, cache).await? else {
        return Ok(Plan::Nothing(CompactReport::default()));
    };
    let (files_before, bytes_before) =
        current.live().fold((0, 0), |(n, bytes), (e, _)| (n + 1, bytes + e.file_size_in_bytes()));
    let nothing = CompactReport {
        files_before,
        files_after: files_before,
        bytes_before,
        bytes_after: bytes_before,
        ..CompactReport::default()
    };

    // Small files by partition, in bins of at most the target size.
    let target = match options.target_file_size_bytes {
        Some(t) => t,
        None => metadata.table_properties().map_err(ice)?.write_target_file_size_bytes as u64,
    };
    let small_below = target / 4 * 3 + target % 4 * 3 / 4;
    let min_files = options.min_input_files.max(2);
    let spec_id = metadata.default_partition_spec_id();
    let mut groups: Vec<(&Struct, Vec<&ManifestEntry>)> = Vec::new();
    let mut group_of: HashMap<&Struct, usize> = HashMap::new();
    for (entry, entry_spec) in current.live() {
        let data = entry.data_file();
        if entry_spec != spec_id
            || data.file_format() != DataFileFormat::Parquet
            || data.file_size_in_bytes() >= small_below
        {
            continue;
        }
        let i = *group_of.entry(data.partition()).or_insert_with(|| {
            groups.push((data.partition(), Vec::new()));
            groups.len() - 1
        });
        groups[i].1.push(entry);
    }
    let mut bins: Vec<(&Struct, Vec<&ManifestEntry>)> = Vec::new();
    for (partition, files) in &mut groups {
        if files.len() < min_files {
            continue;
        }
        files.sort_by_key(|e| (e.sequence_number(), e.file_path()));
        let mut bin: Vec<&ManifestEntry> = Vec::new();
        let mut size = 0u64;
        for entry in files.iter().copied() {
            let len = entry.file_size_in_bytes();
            if !bin.is_empty() && size.saturating_add(len) > target {
                bins.push((partition, std::mem::take(&mut bin)));
                size = 0;
            }
            size = size.saturating_add(len);
            bin.push(entry);
        }
        bins.push((partition, bin));
    }
    bins.retain(|(_, files)| files.len() >= min_files);
    if bins.is_empty() {
        return Ok(Plan::Nothing(nothing));
    }

    // Each bin read in the current schema and written again.
    let snapshot_id = new_snapshot_id(metadata);
    let schema = metadata.current_schema().clone();
    let field_ids: Vec<i32> = schema.as_struct().fields().iter().map(|f| f.id).collect();
    let name_mapping = match metadata.properties().get(DEFAULT_SCHEMA_NAME_MAPPING) {
        Some(raw) => Some(Arc::new(serde_json::from_str::<NameMapping>(raw).map_err(|e| {
            invalid(format!("table property {DEFAULT_SCHEMA_NAME_MAPPING} is not a name mapping: {e}"))
        })?)),
        None => None,
    };
    let mut rewrite = Rewrite { removed: HashSet::new(), added: Vec::new(), spec_id, snapshot_id };
    for (partition, files) in &bins {
        let written = rewrite_bin(table, files, &schema, &field_ids, &name_mapping, snapshot_id).await.map_err(ice);
        let problem = match &written {
            Err(_) => None,
            Ok(new_files) => {
                let rows_in: u64 = files.iter().map(|e| e.record_count()).sum();
                let rows_out: u64 = new_files.iter().map(DataFile::record_count).sum();
                if rows_in != rows_out {
                    Some(invalid(format!("{} files of {rows_in} rows were rewritten as {rows_out} rows", files.len())))
                } else {
                    new_files.iter().find(|f| f.partition() != *partition).map(|f| {
                        invalid(format!(
                            "{} was written in partition {:?}, not in the partition {:?} of the files it replaces",
                            f.file_path(),
                            f.partition(),
                            partition
                        ))
                    })
                }
            }
        };
        let new_files = match (written, problem) {
            (Ok(new_files), None) => new_files,
            (Ok(new_files), Some(e)) => {
                rewrite.added.extend(new_files);
                rewrite.discard(table).await;
                return Err(e);
            }
            (Err(e), _) => {
                // The writer's own files of a failed write are not known: they stay as orphans.
                rewrite.discard(table).await;
                return Err(e);
            }
        };
        rewrite.removed.extend(files.iter().map(|e| e.file_path().to_string()));
        rewrite.added.extend(new_files);
    }
    Ok(Plan::Rewrite(rewrite))
}

/// Reads `files` (one partition's) in the table's current schema and writes them again.
async fn rewrite_bin(
    table: &Table,
    files: &[&ManifestEntry],
    schema: &SchemaRef,
    field_ids: &[i32],
    name_mapping: &Option<Arc<NameMapping>>,
    snapshot_id: i64,
) -> iceberg::Result<Vec<DataFile>> {
    let batches = read_files(table, files, schema, field_ids, name_mapping).await?;
    write_data_files(table, batches, format!("compact-{snapshot_id}")).await
}

/// Reads the whole of `files` in `schema` (the table's current one), columns `field_ids`: files
/// written before a schema change read as the current schema.
pub(super) async fn read_files(
    table: &Table,
    files: &[&ManifestEntry],
    schema: &SchemaRef,
    field_ids: &[i32],
    name_mapping: &Option<Arc<NameMapping>>,
) -> iceberg::Result<Vec<arrow_array::RecordBatch>> {
    let tasks: Vec<iceberg::Result<FileScanTask>> = files
        .iter()
        .map(|e| {
            let data = e.data_file();
            Ok(FileScanTask::builder()
                .with_file_size_in_bytes(data.file_size_in_bytes())
                .with_start(0)
                .with_length(data.file_size_in_bytes())
                .with_record_count(Some(data.record_count()))
                .with_data_file_path(data.file_path().to_string())
                .with_data_file_format(data.file_format())
                .with_schema(schema.clone())
                .with_project_field_ids(field_ids.to_vec())
                .with_partition(Some(data.partition().clone()))
                .with_name_mapping(name_mapping.clone())
                .with_case_sensitive(true)
                .build())
        })
        .collect();
    table.reader_builder().build().read(futures::stream::iter(tasks).boxed())?.stream().try_collect().await
}

/// Writes the manifests and manifest list of `rewrite` on `table`'s current snapshot; None if a
/// file it replaces is no longer live there, or the default partition spec changed.
async fn stage(
    table: &Table,
    database: &str,
    name: &str,
    rewrite: &Rewrite,
    cache: &mut ManifestCache,
) -> Result<Option<Staged>, IcebergError> {
    let mut written = Written::default();
    let staged = stage_into(table, database, name, rewrite, cache, &mut written).await;
    if !matches!(staged, Ok(Some(_))) {
        written.discard(table).await;
    }
    staged
}

async fn stage_into(
    table: &Table,
    database: &str,
    name: &str,
    rewrite: &Rewrite,
    cache: &mut ManifestCache,
    written: &mut Written,
) -> Result<Option<Staged>, IcebergError> {
    let metadata = table.metadata();
    let Some(current) = Current::read(table, database, name, cache).await? else { return Ok(None) };
    let default_spec = metadata.default_partition_spec().clone();
    if default_spec.spec_id() != rewrite.spec_id {
        return Ok(None);
    }
    let (mut files_before, mut bytes_before) = (0, 0);
    let mut removed: Vec<&DataFile> = Vec::new();
    for (entry, _) in current.live() {
        files_before += 1;
        bytes_before += entry.file_size_in_bytes();
        if rewrite.removed.contains(entry.file_path()) {
            removed.push(entry.data_file());
        }
    }
    if removed.len() != rewrite.removed.len() {
        return Ok(None);
    }
    let snapshot_id = match metadata.snapshot_by_id(rewrite.snapshot_id) {
        None => rewrite.snapshot_id,
        Some(_) => new_snapshot_id(metadata),
    };
    let parent_id = current.snapshot.snapshot_id();
    let summary = snapshot_summary(metadata, current.snapshot.summary(), &removed, &rewrite.added, Operation::Replace);
    let (requirements, updates) = write_snapshot(
        table,
        database,
        name,
        &current,
        &rewrite.removed,
        &rewrite.added,
        snapshot_id,
        summary,
        written,
    )
    .await?;
    let bytes_removed: u64 = removed.iter().map(|f| f.file_size_in_bytes()).sum();
    let bytes_added: u64 = rewrite.added.iter().map(DataFile::file_size_in_bytes).sum();
    let report = CompactReport {
        files_before,
        files_after: files_before - removed.len() + rewrite.added.len(),
        rewritten_files: removed.len(),
        added_files: rewrite.added.len(),
        rows: removed.iter().map(|f| f.record_count()).sum(),
        bytes_before,
        bytes_after: bytes_before - bytes_removed + bytes_added,
        snapshot_id: Some(snapshot_id),
    };
    Ok(Some(Staged { report, snapshot_id, parent_id, requirements, updates, written: std::mem::take(written) }))
}

/// Writes the manifests and manifest list of snapshot `snapshot_id` on top of `current` (the
/// current snapshot of `table`): the live data files whose paths are in `removed` become Deleted,
/// `added` are Added (in the default partition spec, the next sequence number). The manifests
/// listing a removed file become ONE manifest (those files Deleted, the others Existing, sequence
/// numbers kept); every other manifest is reused as is; empty manifests are not written. Returns
/// the commit's requirements (same table, `main` still at `current`) and updates (the snapshot,
/// `main` moved to it). The files it writes are pushed on `written`. Nothing is committed.
#[allow(clippy::too_many_arguments)]
pub(super) async fn write_snapshot(
    table: &Table,
    database: &str,
    name: &str,
    current: &Current,
    removed: &HashSet<String>,
    added: &[DataFile],
    snapshot_id: i64,
    summary: Summary,
    written: &mut Written,
) -> Result<(Vec<TableRequirement>, Vec<TableUpdate>), IcebergError> {
    let ice = |e| IcebergError::from_iceberg(e, database, name);
    let invalid = |m: String| IcebergError::InvalidData(format!("commit to {database}.{name}: {m}"));
    let metadata = table.metadata();
    let file_io = table.file_io();
    let default_spec = metadata.default_partition_spec().clone();
    let parent_id = current.snapshot.snapshot_id();
    let sequence_number = metadata.next_sequence_number();
    let schema = metadata.current_schema().clone();
    let commit_id = uuid::Uuid::new_v4();
    let metadata_dir = format!("{}/metadata", metadata.location().trim_end_matches('/'));
    let manifest_path = |n: u32| format!("{metadata_dir}/{commit_id}-m{n}.avro");
    let new_writer = |path: &str| -> Result<_, IcebergError> {
        let output = file_io.new_output(path).map_err(ice)?;
        let spec = default_spec.as_ref().clone();
        Ok(ManifestWriterBuilder::new(output, Some(snapshot_id), schema.clone(), spec).build_v2_data())
    };
    let mut new_manifests: Vec<ManifestFile> = Vec::with_capacity(current.manifests.len() + 2);

    // The new files.
    if !added.is_empty() {
        let path = manifest_path(0);
        let mut writer = new_writer(&path)?;
        written.0.push(path);
        for file in added {
            writer.add_file(file.clone(), sequence_number).map_err(ice)?;
        }
        new_manifests.push(writer.write_manifest_file().await.map_err(ice)?);
    }

    // The manifests that list a removed file become ONE manifest (all of the default spec, as
    // the removed files are): those files Deleted, the others Existing, sequence numbers kept.
    // One per touched manifest would leave as many small manifests as there were appends.
    let (touched, untouched): (Vec<_>, Vec<_>) = current.manifests.iter().partition(|(file, manifest)| {
        file.content == ManifestContentType::Data
            && manifest.entries().iter().any(|e| e.is_alive() && removed.contains(e.file_path()))
    });
    if let Some((file, _)) = touched.iter().find(|(file, _)| file.partition_spec_id != default_spec.spec_id()) {
        return Err(invalid(format!("{} is not of the default partition spec", file.manifest_path)));
    }
    if !touched.is_empty() {
        let path = manifest_path(1);
        let mut writer = new_writer(&path)?;
        written.0.push(path);
        for entry in touched.iter().flat_map(|(_, manifest)| manifest.entries()).filter(|e| e.is_alive()) {
            let missing = |what: &str| invalid(format!("the manifest entry of {} has no {what}", entry.file_path()));
            let data_sequence = entry.sequence_number().ok_or_else(|| missing("sequence number"))?;
            let file_sequence = Some(entry.file_sequence_number.ok_or_else(|| missing("file sequence number"))?);
            if removed.contains(entry.file_path()) {
                writer.add_delete_file(entry.data_file().clone(), data_sequence, file_sequence).map_err(ice)?;
            } else {
                let added_by = entry.snapshot_id().ok_or_else(|| missing("snapshot id"))?;
                writer
                    .add_existing_file(entry.data_file().clone(), added_by, data_sequence, file_sequence)
                    .map_err(ice)?;
            }
        }
        new_manifests.push(writer.write_manifest_file().await.map_err(ice)?);
    }
    // Every other manifest as it is (data and delete manifests alike).
    new_manifests.extend(untouched.into_iter().map(|(file, _)| file.clone()));

    let list_path = format!("{metadata_dir}/snap-{snapshot_id}-0-{commit_id}.avro");
    let output = file_io.new_output(&list_path).map_err(ice)?;
    written.0.push(list_path.clone());
    let mut list =
        ManifestListWriter::v2(output.writer().await.map_err(ice)?, snapshot_id, Some(parent_id), sequence_number);
    list.add_manifests(new_manifests.into_iter()).map_err(ice)?;
    list.close().await.map_err(ice)?;

    let new_snapshot = Snapshot::builder()
        .with_manifest_list(list_path)
        .with_snapshot_id(snapshot_id)
        .with_parent_snapshot_id(Some(parent_id))
        .with_sequence_number(sequence_number)
        .with_summary(summary)
        .with_schema_id(metadata.current_schema_id())
        .with_timestamp_ms(chrono::Utc::now().timestamp_millis().max(metadata.last_updated_ms()))
        .build();
    let updates = vec![
        TableUpdate::AddSnapshot { snapshot: new_snapshot },
        TableUpdate::SetSnapshotRef {
            ref_name: MAIN_BRANCH.to_string(),
            reference: SnapshotReference::new(snapshot_id, SnapshotRetention::branch(None, None, None)),
        },
    ];
    let requirements = vec![
        TableRequirement::UuidMatch { uuid: metadata.uuid() },
        TableRequirement::RefSnapshotIdMatch { r#ref: MAIN_BRANCH.to_string(), snapshot_id: Some(parent_id) },
    ];
    Ok((requirements, updates))
}

/// A random pause of up to `max_ms` milliseconds.
pub(super) fn jitter(max_ms: u64) -> Duration {
    Duration::from_millis((uuid::Uuid::new_v4().as_u128() % u128::from(max_ms.max(1))) as u64)
}

/// A positive snapshot id no snapshot of the table has (iceberg-rust's way).
pub(super) fn new_snapshot_id(metadata: &TableMetadata) -> i64 {
    loop {
        let (high, low) = uuid::Uuid::new_v4().as_u64_pair();
        let id = ((high ^ low) & (i64::MAX as u64)) as i64;
        if id != 0 && metadata.snapshot_by_id(id).is_none() {
            return id;
        }
    }
}

/// The summary Java writes for a rewrite or an overwrite: the collector's added/removed counts
/// (and partition summaries up to `write.summary.partition-limit`), then the running totals from
/// the parent's.
pub(super) fn snapshot_summary(
    metadata: &TableMetadata,
    previous: &Summary,
    removed: &[&DataFile],
    added: &[DataFile],
    operation: Operation,
) -> Summary {
    let schema = metadata.current_schema().clone();
    let spec = metadata.default_partition_spec().clone();
    let mut collector = SnapshotSummaryCollector::default();
    let limit = metadata
        .properties()
        .get(TableProperties::PROPERTY_WRITE_PARTITION_SUMMARY_LIMIT)
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(TableProperties::PROPERTY_WRITE_PARTITION_SUMMARY_LIMIT_DEFAULT);
    collector.set_partition_summary_limit(limit);
    for file in added {
        collector.add_file(file, schema.clone(), spec.clone());
    }
    for file in removed {
        collector.remove_file(file, schema.clone(), spec.clone());
    }
    let mut properties = collector.build();
    for (total, plus, minus) in [
        ("total-data-files", "added-data-files", "deleted-data-files"),
        ("total-delete-files", "added-delete-files", "removed-delete-files"),
        ("total-records", "added-records", "deleted-records"),
        ("total-files-size", "added-files-size", "removed-files-size"),
        ("total-position-deletes", "added-position-deletes", "removed-position-deletes"),
        ("total-equality-deletes", "added-equality-deletes", "removed-equality-deletes"),
    ] {
        // Like Java, a total the parent lacks (or cannot be read) is left out.
        let number = |m: &HashMap<String, String>, key: &str| m.get(key).map_or(Some(0), |v| v.parse::<u64>().ok());
        let Some(before) = previous.additional_properties.get(total).and_then(|v| v.parse::<u64>().ok()) else {
            continue;
        };
        if let (Some(plus), Some(minus)) = (number(&properties, plus), number(&properties, minus)) {
            properties.insert(total.to_string(), (before + plus).saturating_sub(minus).to_string());
        }
    }
    Summary { operation, additional_properties: properties }
}

#[cfg(test)]
mod tests {
    use super::super::AppendResult;
    use super::*;
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Float64Type, Int64Type};
    use arrow_array::{Array, ArrayRef, RecordBatch};
    use arrow_schema::DataType;
    use iceberg::spec::{PrimitiveType, Type};
    use iceberg::transaction::{AddColumn, ApplyTransactionAction, Transaction};
    use iceberg::{NamespaceIdent, TableCreation};
    use spillway_format::json::{Deserializer, JsonConverter};
    use std::path::PathBuf;

    const SCHEMA: &str = r#"[
        {"name": "sensor_id", "type": "string"},
        {"name": "timestamp", "type": "long"},
        {"name": "location", "type": "string"},
        {"name": "temperature", "type": "double"},
        {"name": "humidity", "type": "double"},
        {"name": "pressure", "type": "double"}
    ]"#;
    const DB: &str = "lake";
    const LOCATIONS: [&str; 3] = ["warehouse_a", "office b", "lab"];

    use crate::iceberg::tests::open_tables as open;

    async fn create(catalog: &IcebergCatalog, table: &str, partition_by: &[&str]) {
        crate::iceberg::tests::create_table(catalog, DB, table, SCHEMA, partition_by).await
    }

    /// A reading; an empty `location` is a null one.
    fn reading(i: usize, location: &str) -> String {
        let location = if location.is_empty() { "null".to_string() } else { format!("{location:?}") };
        format!(
            r#"{{"sensor_id":"sensor_{:03}","timestamp":{},"location":{location},"temperature":{},"humidity":{},"pressure":{},"note":"n{i}"}}"#,
            i % 10,
            1_700_000_000 + i,
            20.0 + (i % 7) as f64 * 1.5,
            40.0 + (i % 5) as f64,
            1000.0 + i as f64 * 0.25
        )
    }

    /// Appends the readings `ids` (locations cycling through `locations`) as one commit of stream
    /// "s" at WAL positions `ids`.
    async fn append(
        catalog: &IcebergCatalog,
        table: &str,
        ids: std::ops::Range<usize>,
        locations: &[&str],
    ) -> AppendResult {
        let info = catalog.table_info(DB, table).await.expect("info");
        let deserializer = Deserializer::default();
        let mut converter = JsonConverter::new(&info.columns, &deserializer);
        for i in ids.clone() {
            converter.push_record(reading(i, locations[i % locations.len()]).as_bytes()).expect("record");
        }
        let batch = converter.flush().expect("flush");
        catalog.append(DB, table, vec![batch], "s", ids.start as u64, ids.end as u64 - 1).await.expect("append")
    }

    fn cell(column: &ArrayRef, row: usize) -> String {
        if column.is_null(row) {
            return "null".into();
        }
        match column.data_type() {
            DataType::Utf8 => column.as_string::<i32>().value(row).to_string(),
            DataType::Int64 => column.as_primitive::<Int64Type>().value(row).to_string(),
            DataType::Float64 => format!("{:?}", column.as_primitive::<Float64Type>().value(row)),
            other => panic!("unexpected column type {other}"),
        }
    }

    /// Every row of the current snapshot, as sorted `name=value,...` lines.
    async fn rows(table: &Table) -> Vec<String> {
        let scan = table.scan().select_all().build().expect("scan");
        let batches: Vec<RecordBatch> = scan.to_arrow().await.expect("arrow").try_collect().await.expect("read");
        let mut out = Vec::new();
        for b in &batches {
            for r in 0..b.num_rows() {
                let cells: Vec<String> = b
                    .schema()
                    .fields()
                    .iter()
                    .zip(b.columns())
                    .map(|(f, c)| format!("{}={}", f.name(), cell(c, r)))
                    .collect();
                out.push(cells.join(","));
            }
        }
        out.sort();
        out
    }

    /// The live data files of the current snapshot, by path.
    async fn files(table: &Table) -> Vec<String> {
        let scan = table.scan().select_all().build().expect("scan");
        let tasks: Vec<FileScanTask> = scan.plan_files().await.expect("plan").try_collect().await.expect("tasks");
        let mut paths: Vec<String> = tasks.into_iter().map(|t| t.data_file_path).collect();
        paths.sort();
        paths
    }

    fn file_name(path: &str) -> &str {
        path.rsplit('/').next().unwrap_or(path)
    }

    #[tokio::test]
    async fn small_appends_become_one_file_with_the_same_rows() {
        let tmp = tempfile::tempdir().expect("tmp");
        let catalog = open(tmp.path()).await;
        create(&catalog, "readings", &[]).await;
        for k in 0..12 {
            append(&catalog, "readings", k * 10 + 1..k * 10 + 11, &LOCATIONS).await;
        }
        let before = catalog.load(DB, "readings").await.expect("load");
        let rows_before = rows(&before).await;
        assert_eq!(rows_before.len(), 120);
        assert_eq!(files(&before).await.len(), 12);
        let parent = before.metadata().current_snapshot_id();

        let report = catalog.compact(DB, "readings", &CompactOptions::default()).await.expect("compact");
        assert_eq!(
            (report.files_before, report.files_after, report.rewritten_files, report.added_files, report.rows),
            (12, 1, 12, 1, 120)
        );
        assert!(report.bytes_before > report.bytes_after && report.bytes_after > 0, "{report:?}");
        let after = catalog.load(DB, "readings").await.expect("load");
        assert_eq!(after.metadata().current_snapshot_id(), report.snapshot_id);
        assert_eq!(rows(&after).await, rows_before, "same rows");
        let paths = files(&after).await;
        assert_eq!(paths.len(), 1);
        let snapshot_id = report.snapshot_id.expect("snapshot");
        assert!(file_name(&paths[0]).starts_with(&format!("compact-{snapshot_id}-")), "{paths:?}");
        assert!(paths[0].starts_with(&format!("{}/data/", after.metadata().location())), "{paths:?}");

        // The history: a replace snapshot on top of the last append, with Java's summary.
        let snapshot = after.metadata().current_snapshot().expect("current");
        assert_eq!(snapshot.parent_snapshot_id(), parent);
        assert_eq!(snapshot.sequence_number(), 13);
        assert_eq!(snapshot.schema_id(), Some(after.metadata().current_schema_id()));
        let summary = snapshot.summary();
        assert_eq!(summary.operation, Operation::Replace);
        let p = |k: &str| summary.additional_properties.get(k).cloned().unwrap_or_default();
        assert_eq!(
            [p("added-data-files"), p("deleted-data-files"), p("added-records"), p("deleted-records")],
            ["1", "12", "120", "120"]
        );
        assert_eq!([p("total-data-files"), p("total-records"), p("total-delete-files")], ["1", "120", "0"]);
        assert_eq!(p("total-files-size"), report.bytes_after.to_string());
        assert_eq!(after.metadata().snapshots().count(), 13);
        // Its manifests: the new file (sequence number 13), and the twelve append manifests merged
        // into one listing their files as deleted, each with its own sequence number.
        let list = after.manifest_list_reader(snapshot).load().await.expect("manifest list");
        let counts: Vec<_> = list
            .entries()
            .iter()
            .map(|m| (m.added_files_count, m.existing_files_count, m.deleted_files_count, m.sequence_number))
            .collect();
        assert_eq!(counts, [(Some(1), Some(0), Some(0), 13), (Some(0), Some(0), Some(12), 13)]);
        let added = list.entries()[0].load_manifest(after.file_io()).await.expect("manifest");
        assert_eq!(added.entries()[0].sequence_number(), Some(13));
        assert_eq!(added.entries()[0].snapshot_id(), Some(snapshot_id));
        let deleted = list.entries()[1].load_manifest(after.file_io()).await.expect("manifest");
        let mut sequences: Vec<i64> = deleted.entries().iter().filter_map(|e| e.sequence_number()).collect();
        sequences.sort_unstable();
        assert_eq!(sequences, (1..=12).collect::<Vec<i64>>());
        assert!(deleted.entries().iter().all(|e| !e.is_alive() && e.snapshot_id() == Some(snapshot_id)));

        // The WAL position of the appends is still found, and appends go on.
        assert_eq!(catalog.committed_position(DB, "readings", "s").await.expect("position"), Some(120));
        append(&catalog, "readings", 121..131, &LOCATIONS).await;
        assert_eq!(catalog.committed_position(DB, "readings", "s").await.expect("position"), Some(130));
        let t = catalog.load(DB, "readings").await.expect("load");
        assert_eq!(rows(&t).await.len(), 130);

        // Once more: the compacted file and the new one.
        let again = catalog.compact(DB, "readings", &CompactOptions::default()).await.expect("again");
        assert_eq!((again.files_before, again.files_after, again.rows), (2, 1, 130));
        let t = catalog.load(DB, "readings").await.expect("load");
        assert_eq!(rows(&t).await.len(), 130);
        let p =
            |k: &str| t.metadata().current_snapshot().and_then(|s| s.summary().additional_properties.get(k).cloned());
        assert_eq!(p("total-records").as_deref(), Some("130"));
        assert_eq!(p("total-data-files").as_deref(), Some("1"));

        // A catalog opened afterwards (another process) reads the same table.
        let other = open(tmp.path()).await;
        assert_eq!(rows(&other.load(DB, "readings").await.expect("load")).await.len(), 130);
    }

    #[tokio::test]
    async fn a_partitioned_table_compacts_each_partition() {
        let tmp = tempfile::tempdir().expect("tmp");
        let catalog = open(tmp.path()).await;
        create(&catalog, "by_location", &["location"]).await;
        let locations = ["warehouse_a", "office b", "lab", ""];
        for k in 0..5 {
            let r = append(&catalog, "by_location", k * 8 + 1..k * 8 + 9, &locations).await;
            assert_eq!(r.data_files.len(), 4);
        }
        // One small file alone in its partition: nothing to merge it with.
        append(&catalog, "by_location", 100..103, &["solo"]).await;
        let before = catalog.load(DB, "by_location").await.expect("load");
        let rows_before = rows(&before).await;
        assert_eq!(files(&before).await.len(), 21);

        let report = catalog.compact(DB, "by_location", &CompactOptions::default()).await.expect("compact");
        assert_eq!(
            (report.files_before, report.files_after, report.rewritten_files, report.added_files, report.rows),
            (21, 5, 20, 4, 40)
        );
        let after = catalog.load(DB, "by_location").await.expect("load");
        assert_eq!(rows(&after).await, rows_before);
        let paths = files(&after).await;
        let folders: Vec<(&str, bool)> = paths
            .iter()
            .map(|p| {
                let mut parts = p.rsplit('/');
                let name = parts.next().unwrap_or_default();
                (parts.next().unwrap_or_default(), name.starts_with("compact-"))
            })
            .collect();
        assert_eq!(
            folders,
            [
                ("location=lab", true),
                ("location=null", true),
                ("location=office+b", true),
                ("location=solo", false),
                ("location=warehouse_a", true)
            ]
        );
        // Filters on the partition still prune to the compacted file.
        let filter = iceberg::expr::Reference::new("location").equal_to(iceberg::spec::Datum::string("office b"));
        let scan = after.scan().with_filter(filter).select_all().build().expect("scan");
        let tasks: Vec<FileScanTask> = scan.plan_files().await.expect("plan").try_collect().await.expect("tasks");
        assert_eq!(tasks.len(), 1);
        assert_eq!(tasks[0].record_count, Some(10));
        let summary = after.metadata().current_snapshot().expect("current").summary();
        assert_eq!(summary.additional_properties.get("changed-partition-count").map(String::as_str), Some("4"));
        assert_eq!(summary.additional_properties.get("total-data-files").map(String::as_str), Some("5"));

        // A smaller target: only files under 3/4 of it are small, in bins of at most the target.
        let tmp = tempfile::tempdir().expect("tmp");
        let catalog = open(tmp.path()).await;
        create(&catalog, "t", &[]).await;
        for k in 0..6 {
            append(&catalog, "t", k * 5..k * 5 + 5, &LOCATIONS).await;
        }
        let t = catalog.load(DB, "t").await.expect("load");
        let sizes: Vec<u64> = {
            let scan = t.scan().select_all().build().expect("scan");
            let tasks: Vec<FileScanTask> = scan.plan_files().await.expect("plan").try_collect().await.expect("tasks");
            tasks.iter().map(|t| t.file_size_in_bytes).collect()
        };
        let largest = sizes.iter().copied().max().unwrap_or_default();
        // Three files fit a bin: two bins of three.
        let options = CompactOptions { target_file_size_bytes: Some(largest * 3 + 2), min_input_files: 2 };
        let report = catalog.compact(DB, "t", &options).await.expect("compact");
        assert_eq!((report.files_before, report.rewritten_files, report.added_files, report.files_after), (6, 6, 2, 2));
        let t = catalog.load(DB, "t").await.expect("load");
        assert_eq!(rows(&t).await.len(), 30);
    }

    #[tokio::test]
    async fn nothing_to_compact_commits_nothing() {
        let tmp = tempfile::tempdir().expect("tmp");
        let catalog = open(tmp.path()).await;
        create(&catalog, "t", &[]).await;
        let options = CompactOptions::default();
        assert_eq!(catalog.compact(DB, "t", &options).await.expect("empty table"), CompactReport::default());
        let r = append(&catalog, "t", 1..11, &LOCATIONS).await;
        let report = catalog.compact(DB, "t", &options).await.expect("one file");
        assert_eq!(
            report,
            CompactReport {
                files_before: 1,
                files_after: 1,
                bytes_before: r.bytes,
                bytes_after: r.bytes,
                ..CompactReport::default()
            }
        );
        append(&catalog, "t", 11..21, &LOCATIONS).await;
        append(&catalog, "t", 21..31, &LOCATIONS).await;
        // Three files, but none small for a tiny target, or fewer than asked for.
        let tiny = CompactOptions { target_file_size_bytes: Some(100), ..CompactOptions::default() };
        let many = CompactOptions { min_input_files: 4, ..CompactOptions::default() };
        for o in [tiny, many] {
            let report = catalog.compact(DB, "t", &o).await.expect("nothing");
            assert_eq!((report.files_before, report.files_after, report.snapshot_id), (3, 3, None));
        }
        let t = catalog.load(DB, "t").await.expect("load");
        assert_eq!(t.metadata().snapshots().count(), 3, "nothing committed");
        let e = catalog.compact(DB, "nope", &CompactOptions::default()).await.expect_err("missing");
        assert!(matches!(e, IcebergError::NoSuchTable { .. }), "{e:?}");
    }

    #[tokio::test]
    async fn format_v1_tables_are_refused() {
        let tmp = tempfile::tempdir().expect("tmp");
        let catalog = open(tmp.path()).await;
        create(&catalog, "v2", &[]).await;
        let schema = catalog.load(DB, "v2").await.expect("load").metadata().current_schema().as_ref().clone();
        let creation = TableCreation::builder()
            .name("v1".to_string())
            .location(format!("{}/{DB}.db/v1", catalog.warehouse()))
            .schema(schema)
            .format_version(FormatVersion::V1)
            .build();
        catalog.catalog().create_table(&NamespaceIdent::new(DB.into()), creation).await.expect("create v1");
        let e = catalog.compact(DB, "v1", &CompactOptions::default()).await.expect_err("v1");
        assert!(matches!(&e, IcebergError::Unsupported(m) if m.contains("v1")), "{e:?}");
    }

    #[tokio::test]
    async fn files_from_before_a_schema_change_are_rewritten_in_the_current_schema() {
        let tmp = tempfile::tempdir().expect("tmp");
        let catalog = open(tmp.path()).await;
        create(&catalog, "t", &[]).await;
        append(&catalog, "t", 0..5, &LOCATIONS).await;
        append(&catalog, "t", 5..10, &LOCATIONS).await;
        let t = catalog.load(DB, "t").await.expect("load");
        let tx = Transaction::new(&t);
        let action = tx.update_schema().add_column(AddColumn::optional("note", Type::Primitive(PrimitiveType::String)));
        action.apply(tx).expect("apply").commit(catalog.catalog()).await.expect("add column");
        append(&catalog, "t", 10..15, &LOCATIONS).await;
        let before = rows(&catalog.load(DB, "t").await.expect("load")).await;
        assert_eq!(before.iter().filter(|r| r.ends_with(",note=null")).count(), 10, "{before:?}");

        let report = catalog.compact(DB, "t", &CompactOptions::default()).await.expect("compact");
        assert_eq!((report.rewritten_files, report.added_files, report.rows), (3, 1, 15));
        let t = catalog.load(DB, "t").await.expect("load");
        assert_eq!(rows(&t).await, before);
        assert!(before.iter().any(|r| r.ends_with(",note=n12")), "{before:?}");
    }

    #[tokio::test]
    async fn a_compaction_that_loses_a_race_puts_its_files_on_the_new_snapshot() {
        let tmp = tempfile::tempdir().expect("tmp");
        let catalog = open(tmp.path()).await;
        create(&catalog, "t", &[]).await;
        for k in 0..3 {
            append(&catalog, "t", k * 10..k * 10 + 10, &LOCATIONS).await;
        }
        let base = catalog.load(DB, "t").await.expect("load");
        let options = CompactOptions::default();
        let Plan::Rewrite(rewrite) =
            plan_rewrite(&base, DB, "t", &options, &mut ManifestCache::new()).await.expect("plan")
        else {
            panic!("nothing to rewrite");
        };
        let Plan::Rewrite(twin) =
            plan_rewrite(&base, DB, "t", &options, &mut ManifestCache::new()).await.expect("plan")
        else {
            panic!("nothing to rewrite");
        };
        assert_ne!(rewrite.snapshot_id, twin.snapshot_id);
        let local = |p: &str| PathBuf::from(p.trim_start_matches("file://"));
        let new_files: Vec<String> = rewrite.added.iter().map(|f| f.file_path().to_string()).collect();
        let twin_files: Vec<String> = twin.added.iter().map(|f| f.file_path().to_string()).collect();
        assert_eq!((new_files.len(), rewrite.removed.len()), (1, 3));
        let staged = stage(&base, DB, "t", &rewrite, &mut ManifestCache::new()).await.expect("stage").expect("staged");
        let metadata_files = staged.written.0.clone();
        assert_eq!(metadata_files.len(), 3, "two manifests and a manifest list: {metadata_files:?}");
        assert!(metadata_files.iter().chain(&new_files).all(|p| local(p).is_file()), "{metadata_files:?}");

        // A stream appends meanwhile: the staged snapshot no longer applies.
        append(&catalog, "t", 30..40, &LOCATIONS).await;
        match catalog.commit_staged(&base, DB, "t", staged).await {
            Err(Failure::Conflict(e)) => assert!(is_commit_conflict(&e), "{e:?}"),
            Err(Failure::Failed(e) | Failure::Unknown(e)) => panic!("not a conflict: {e:?}"),
            Ok(r) => panic!("committed on a stale base: {r:?}"),
        }
        assert!(metadata_files.iter().all(|p| !local(p).exists()), "the snapshot's files are deleted");
        assert!(new_files.iter().all(|p| local(p).is_file()), "the data files are kept");
        let now = catalog.load(DB, "t").await.expect("load");
        assert_eq!(now.metadata().current_snapshot().expect("current").summary().operation, Operation::Append);

        // The same data files on the new snapshot, which keeps the append.
        let staged = stage(&now, DB, "t", &rewrite, &mut ManifestCache::new()).await.expect("stage").expect("rebased");
        let report = catalog.commit_staged(&now, DB, "t", staged).await.unwrap_or_else(|_| panic!("commit"));
        assert_eq!(
            (report.files_before, report.files_after, report.rewritten_files, report.added_files, report.rows),
            (4, 2, 3, 1, 30)
        );
        let t = catalog.load(DB, "t").await.expect("load");
        assert_eq!(rows(&t).await.len(), 40);
        let live = files(&t).await;
        assert_eq!(live.len(), 2);
        assert!(live.contains(&new_files[0]), "{live:?}");
        let summary = t.metadata().current_snapshot().expect("current").summary();
        assert_eq!(summary.additional_properties.get("total-records").map(String::as_str), Some("40"));
        assert_eq!(summary.additional_properties.get("total-data-files").map(String::as_str), Some("2"));

        // The twin replaces files that are gone: it no longer stages, and its files are deleted.
        assert!(stage(&t, DB, "t", &twin, &mut ManifestCache::new()).await.expect("stage").is_none());
        twin.discard(&t).await;
        assert!(twin_files.iter().all(|p| !local(p).exists()));
        let report = catalog.compact(DB, "t", &options).await.expect("compact");
        assert_eq!((report.files_before, report.files_after, report.rows), (2, 1, 40));
        assert_eq!(rows(&catalog.load(DB, "t").await.expect("load")).await.len(), 40);
    }

    #[tokio::test]
    async fn commit_sql_checks_requirements_and_swaps_only_from_the_location_it_read() {
        let tmp = tempfile::tempdir().expect("tmp");
        let catalog = open(tmp.path()).await;
        create(&catalog, "t", &[]).await;
        append(&catalog, "t", 0..5, &LOCATIONS).await;
        let base = catalog.load(DB, "t").await.expect("load");
        let db = catalog.db_path().to_path_buf();
        let set = |k: &str| TableUpdate::SetProperties { updates: HashMap::from([(k.to_string(), "yes".to_string())]) };
        let on_main = |id| TableRequirement::RefSnapshotIdMatch { r#ref: MAIN_BRANCH.into(), snapshot_id: id };
        let current = base.metadata().current_snapshot_id();

        // Two commits from the same base: both hold (nothing moved main), each applies to the
        // metadata it reloads, so neither loses the other's update.
        let first = commit_sql(&db, "tables", &base, vec![on_main(current)], vec![set("a")]).await.expect("first");
        assert_eq!(first.metadata().properties().get("a").map(String::as_str), Some("yes"));
        let second = commit_sql(&db, "tables", &base, vec![on_main(current)], vec![set("b")]).await.expect("second");
        assert!(second.metadata().properties().contains_key("a") && second.metadata().properties().contains_key("b"));
        let location = second.metadata_location().expect("location").to_string();
        assert!(location.contains("/metadata/00003-"), "{location}");
        assert_eq!(catalog.load(DB, "t").await.expect("load").metadata_location(), Some(location.as_str()));

        // A requirement that no longer holds: a retryable conflict, nothing written.
        append(&catalog, "t", 5..10, &LOCATIONS).await;
        let e = commit_sql(&db, "tables", &base, vec![on_main(current)], vec![set("c")]).await.expect_err("stale");
        assert_eq!(e.kind(), ErrorKind::CatalogCommitConflicts);
        assert!(e.retryable());
        let e = IcebergError::from_iceberg(e, DB, "t");
        assert!(is_commit_conflict(&e) && e.is_retryable(), "{e:?}");
        assert!(!catalog.load(DB, "t").await.expect("load").metadata().properties().contains_key("c"));
        let e = commit_sql(&db, "tables", &base, vec![TableRequirement::UuidMatch { uuid: uuid::Uuid::nil() }], vec![])
            .await
            .expect_err("another table");
        assert_eq!(e.kind(), ErrorKind::CatalogCommitConflicts);

        // Two replace snapshots staged on the same base: the first commits, the second conflicts.
        append(&catalog, "t", 10..15, &LOCATIONS).await;
        let base = catalog.load(DB, "t").await.expect("load");
        let mut cache = ManifestCache::new();
        let mut staged = Vec::new();
        for _ in 0..2 {
            let Plan::Rewrite(rewrite) =
                plan_rewrite(&base, DB, "t", &CompactOptions::default(), &mut cache).await.expect("plan")
            else {
                panic!("nothing to rewrite")
            };
            staged.push(stage(&base, DB, "t", &rewrite, &mut cache).await.expect("stage").expect("staged"));
        }
        let [a, b] = <[Staged; 2]>::try_from(staged).unwrap_or_else(|_| panic!("two"));
        let first = commit_sql(&db, "tables", &base, a.requirements, a.updates).await.expect("first replace");
        assert_eq!(first.metadata().current_snapshot_id(), Some(a.snapshot_id));
        let e = commit_sql(&db, "tables", &base, b.requirements, b.updates).await.expect_err("second replace");
        assert_eq!(e.kind(), ErrorKind::CatalogCommitConflicts);
        let t = catalog.load(DB, "t").await.expect("load");
        assert_eq!(t.metadata().current_snapshot_id(), Some(a.snapshot_id));
        assert!(t.metadata().snapshot_by_id(b.snapshot_id).is_none());
        assert_eq!(rows(&t).await.len(), 15);

        // The swap itself: from a location that is no longer current, it fails and changes nothing.
        let now = catalog.load(DB, "t").await.expect("load");
        let now_location = now.metadata_location().expect("location").to_string();
        let mut conn = connect(&db).await.expect("connect");
        let e = swap_metadata_location(&mut conn, "tables", now.identifier(), &location, "file:///elsewhere.json")
            .await
            .expect_err("stale swap");
        assert_eq!(e.kind(), ErrorKind::CatalogCommitConflicts);
        assert_eq!(current_metadata_location(&mut conn, "tables", now.identifier()).await.expect("read"), now_location);
        let other = TableIdent::new(NamespaceIdent::new(DB.into()), "nope".into());
        let e = current_metadata_location(&mut conn, "tables", &other).await.expect_err("missing");
        assert_eq!(e.kind(), ErrorKind::TableNotFound);
        conn.close().await.expect("close");
    }

    /// Appends from other catalogs (as the server's streams commit) while compactions run: every
    /// appended row is in the table exactly once at the end.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn compactions_and_concurrent_appends_keep_every_row() {
        let tmp = tempfile::tempdir().expect("tmp");
        let catalog = open(tmp.path()).await;
        create(&catalog, "t", &["location"]).await;
        for k in 0..4 {
            append(&catalog, "t", k * 6..k * 6 + 6, &LOCATIONS).await;
        }
        let writer = open(tmp.path()).await;
        let appends = tokio::spawn(async move {
            for k in 4..16 {
                append(&writer, "t", k * 6..k * 6 + 6, &LOCATIONS).await;
            }
        });
        let mut compacted = 0;
        for _ in 0..4 {
            match catalog.compact(DB, "t", &CompactOptions::default()).await {
                Ok(r) => compacted += usize::from(r.snapshot_id.is_some()),
                Err(e) => assert!(is_commit_conflict(&e), "only conflicts may fail it: {e:?}"),
            }
        }
        appends.await.expect("appends");
        catalog.compact(DB, "t", &CompactOptions::default()).await.expect("final compaction");
        let t = catalog.load(DB, "t").await.expect("load");
        let all = rows(&t).await;
        assert_eq!(all.len(), 96);
        let mut ids: Vec<&str> =
            all.iter().filter_map(|r| r.split(',').find(|c| c.starts_with("timestamp="))).collect();
        ids.dedup();
        assert_eq!(ids.len(), 96, "no duplicates");
        assert_eq!(files(&t).await.len(), 3, "one file per partition");
        assert!(compacted >= 1 || t.metadata().snapshots().count() > 16);
        assert_eq!(catalog.committed_position(DB, "t", "s").await.expect("position"), Some(95));
    }
}
