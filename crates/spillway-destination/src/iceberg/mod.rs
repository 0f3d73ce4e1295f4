//! The Iceberg sink: Iceberg catalogs (embedded in the data dir, or REST), table creation from a
//! simple schema or from records, schema evolution, appends that carry a stream's WAL range in
//! their snapshot summary, and compaction.
//!
//! # What it owns
//!
//! [`IcebergCatalog`] is one catalog, written through iceberg-rust 0.10: the embedded one (an
//! `iceberg-catalog-sql` catalog on SQLite) or an Iceberg REST catalog ([`rest`], SigV4-signed for
//! S3 Tables, Glue and SeaweedFS). Files go through [`storage`] (`file://` warehouses in the data
//! dir, `s3://` ones on any S3-compatible store); [`catalogs`] says which catalog a name means.
//! It owns the catalog database, the table metadata and the data files under the warehouse; the
//! pipeline owns the WAL, the conversion of records to Arrow (with the columns
//! [`IcebergCatalog::table_info`] gives) and the error output. [`evolve`] types records for
//! automatic table creation and schema evolution; [`compact`] rewrites small files; [`rowdelta`]
//! applies `update` and `delete` operations copy-on-write.
//!
//! # On-disk layout
//!
//! - Catalog database: `db_path` (spillway uses `<data-dir>/catalog/catalog.db`). Its tables
//!   `iceberg_tables` and `iceberg_namespace_properties` are those of the Java JDBC and PyIceberg
//!   SQL catalogs; the `catalog_name` column holds the catalog name, so one database holds many
//!   catalogs. PyIceberg reads it with
//!   `SqlCatalog(name, uri="sqlite:///<db_path>", warehouse="file://<warehouse_dir>")`.
//! - Warehouse: a local folder (spillway uses `<data-dir>/buckets/<catalog name>` for an S3 Tables
//!   table bucket `arn:aws:s3tables:<region>:<account>:bucket/<catalog name>`, i.e. the table
//!   bucket is an embedded bucket of that name), or `s3://bucket/path` when that bucket is on an
//!   S3-compatible store ([`catalogs`]). REST catalogs choose their tables' locations.
//! - Table `database.table`: `<warehouse_dir>/<database>.db/<table>/` (the Hive, Spark and
//!   PyIceberg convention), with `metadata/` (`NNNNN-<uuid>.metadata.json`, manifest lists
//!   `snap-*.avro`, manifests `*-m0.avro`) and `data/` (Parquet, SNAPPY:
//!   `wal-<first>-<last>-NNNNN-<uuid>.parquet`, under `<column>=<value>/` folders for identity
//!   partitions, the value escaped like Java's `URLEncoder` so that record values never leave the
//!   table folder).
//!
//! # Invariants
//!
//! - Tables are Iceberg format v2 (Firehose requires it: other versions read as
//!   `Iceberg.NoSuchTable`).
//! - One [`IcebergCatalog::append`] is one fast-append snapshot, whose summary holds
//!   `spillway.<stream_key>.wal-first` and `spillway.<stream_key>.wal-last`; the data files are
//!   written before the commit and are invisible until it succeeds (an interrupted append leaves
//!   unreferenced files only). The same commit sets the table property
//!   `spillway.<stream_key>.wal-last`. [`IcebergCatalog::committed_position`] reads the highest
//!   `wal-last` of the property and the summaries of the current snapshot's history, so a replay
//!   after a crash skips what the table holds: exactly once, even after snapshot expiry.
//! - Commits that iceberg-rust's `Transaction` cannot express (compaction's `replace` snapshot)
//!   go through [`IcebergCatalog::commit_updates`]: the REST commit endpoint, or for the embedded
//!   catalog a compare-and-swap of the metadata location in SQLite, as the SQL catalog does.
//! - Names: databases and tables are 1..255 of `[A-Za-z0-9_]` and match exactly (case kept).
//!   Firehose also allows '.', but the SQL catalog and PyIceberg read '.' as a namespace level.
//!
//! # Types
//!
//! The converter's Hive type for each Iceberg type ([`TableInfo::columns`]):
//!
//! | Iceberg | converter (Hive) | written as |
//! |---|---|---|
//! | boolean, int, float, double, date | same | same |
//! | long | bigint | long |
//! | decimal(P,S) | decimal(P,S) | decimal(P,S) |
//! | timestamp, timestamptz | timestamp (UTC micros) | timestamp / timestamptz (`+00:00`) |
//! | string | string | string |
//! | uuid | string | uuid (any text form of a UUID; else the append fails) |
//! | time | string | time (`HH:MM[:SS[.ffffff]]`; else the append fails) |
//! | binary, fixed[N] | binary | binary / fixed (exactly N bytes; else the append fails) |
//! | struct, list, map | struct, array, map | same |
//!
//! `time` is text rather than `bigint` because JSON producers write times as text, as they do
//! dates and timestamps; Hive has no time type.

mod adapt;
pub mod catalogs;
pub mod compact;
pub mod evolve;
pub mod rest;
pub mod rowdelta;
pub mod storage;
mod types;

#[cfg(test)]
mod tests;

pub use evolve::{NewColumn, SchemaInference};
pub use types::{field_type_text, parse_field_type};

use iceberg::arrow::{RecordBatchPartitionSplitter, schema_to_arrow_schema};
use iceberg::spec::{DataFile, DataFileFormat, FormatVersion, PartitionKey, Transform, UnboundPartitionSpec};
use iceberg::table::Table;
use iceberg::transaction::{ApplyTransactionAction, Transaction};
use iceberg::writer::base_writer::data_file_writer::DataFileWriterBuilder;
use iceberg::writer::file_writer::ParquetWriterBuilder;
use iceberg::writer::file_writer::location_generator::{DefaultFileNameGenerator, LocationGenerator};
use iceberg::writer::file_writer::rolling_writer::RollingFileWriterBuilder;
use iceberg::writer::partitioning::PartitioningWriter;
use iceberg::writer::partitioning::fanout_writer::FanoutWriter;
use iceberg::writer::partitioning::unpartitioned_writer::UnpartitionedWriter;
use iceberg::{Catalog, CatalogBuilder, ErrorKind, NamespaceIdent, TableCreation, TableIdent};
use iceberg_catalog_sql::{
    SQL_CATALOG_PROP_BIND_STYLE, SQL_CATALOG_PROP_URI, SQL_CATALOG_PROP_WAREHOUSE, SqlBindStyle, SqlCatalog,
    SqlCatalogBuilder,
};
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use spillway_format::schema::Column;
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One Iceberg column as users write it (seed 000's Terraform `field { name, type, required }`,
/// also the TOML/JSON form).
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
pub struct FieldSpec {
    pub name: String,
    /// An Iceberg type: boolean, int, long, float, double, decimal(P,S), date, time, timestamp,
    /// timestamptz, string, uuid, binary, fixed[N], struct<name:type,...>, list<type>,
    /// map<ktype,vtype> (case-insensitive, spaces allowed).
    #[serde(rename = "type")]
    pub field_type: String,
    #[serde(default)]
    pub required: bool,
}

/// Reads a schema file's JSON: `[{"name", "type", "required"}, ...]` or `{"fields": [...]}`.
pub fn parse_field_specs(json: &str) -> Result<Vec<FieldSpec>, IcebergError> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Form {
        List(Vec<FieldSpec>),
        Object { fields: Vec<FieldSpec> },
    }
    match serde_json::from_str::<Form>(json) {
        Ok(Form::List(fields) | Form::Object { fields }) => Ok(fields),
        Err(_) => {
            // The untagged error says nothing useful; name the problem of the closest form.
            let detail = match serde_json::from_str::<serde_json::Value>(json) {
                Err(e) => e.to_string(),
                Ok(serde_json::Value::Array(_)) => {
                    serde_json::from_str::<Vec<FieldSpec>>(json).err().map(|e| e.to_string()).unwrap_or_default()
                }
                Ok(_) => {
                    #[derive(serde::Deserialize)]
                    #[allow(dead_code)]
                    struct Object {
                        fields: Vec<FieldSpec>,
                    }
                    serde_json::from_str::<Object>(json).err().map(|e| e.to_string()).unwrap_or_default()
                }
            };
            Err(IcebergError::InvalidSchema(format!(
                "expected a JSON list of {{\"name\", \"type\", \"required\"}} fields or {{\"fields\": [...]}}: {detail}"
            )))
        }
    }
}

/// What the Iceberg sink can fail with.
#[derive(Debug, thiserror::Error)]
pub enum IcebergError {
    #[error("Table {database}.{table} was not found in the catalog.")]
    NoSuchTable { database: String, table: String },
    #[error("Table {database}.{table} is in Iceberg format version {version}; only version 2 is supported.")]
    UnsupportedFormatVersion { database: String, table: String, version: u8 },
    #[error("Invalid table name: {0}")]
    InvalidTableName(String),
    #[error("Invalid schema: {0}")]
    InvalidSchema(String),
    #[error("Table {database}.{table} already exists.")]
    TableExists { database: String, table: String },
    /// The records' columns do not match the table (its schema changed after they were converted).
    #[error("The records do not match the table's schema: {0}")]
    SchemaMismatch(String),
    /// A required column is null; `row` counts across the batches of the append, from 0.
    #[error("Column {column} is required, but row {row} has no value for it.")]
    MissingRequiredValue { column: String, row: usize },
    /// A value the column's type cannot hold; `row` counts across the batches of the append, from 0.
    #[error("Row {row}, column {column}: {reason}")]
    InvalidValue { column: String, row: usize, reason: String },
    /// Iceberg refused the data or found the table's metadata invalid.
    #[error("Iceberg refused the data: {0}")]
    InvalidData(String),
    /// A table feature iceberg-rust cannot write (encryption, for one).
    #[error("Not supported: {0}")]
    Unsupported(String),
    #[error("Invalid Iceberg catalog configuration: {0}")]
    Config(String),
    /// The catalog or its storage failed (iceberg's error text).
    #[error("Iceberg catalog error: {0}")]
    Catalog(String),
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl IcebergError {
    /// Firehose error code for the error output. `Iceberg.NoSuchTable`, `Iceberg.InvalidTableName`
    /// and `Iceberg.MissingColumnWithinRecord` are Firehose's; `Iceberg.SchemaMismatch` is also
    /// what the pipeline uses for records the converter refuses; the others are spillway's.
    pub fn firehose_code(&self) -> &'static str {
        match self {
            IcebergError::NoSuchTable { .. } | IcebergError::UnsupportedFormatVersion { .. } => "Iceberg.NoSuchTable",
            IcebergError::InvalidTableName(_) => "Iceberg.InvalidTableName",
            IcebergError::InvalidSchema(_) => "Iceberg.InvalidSchema",
            IcebergError::TableExists { .. } => "Iceberg.TableAlreadyExists",
            IcebergError::SchemaMismatch(_) | IcebergError::InvalidValue { .. } => "Iceberg.SchemaMismatch",
            IcebergError::MissingRequiredValue { .. } => "Iceberg.MissingColumnWithinRecord",
            IcebergError::InvalidData(_) => "Iceberg.InvalidData",
            IcebergError::Unsupported(_) => "Iceberg.UnsupportedOperation",
            IcebergError::Config(_) => "Iceberg.InvalidConfiguration",
            IcebergError::Catalog(_) => "Iceberg.CatalogError",
            IcebergError::Io { .. } => "Iceberg.StorageError",
        }
    }

    /// Whether the same call may succeed later without changing its input (the catalog or the
    /// disk was unavailable, a commit kept conflicting). Everything else needs the records, the
    /// table or the configuration changed: the records belong in the error output.
    pub fn is_retryable(&self) -> bool {
        matches!(self, IcebergError::Catalog(_) | IcebergError::Io { .. })
    }

    /// The message without the variant's prefix (for wrapping).
    fn detail(&self) -> String {
        match self {
            IcebergError::InvalidSchema(m) | IcebergError::InvalidTableName(m) => m.clone(),
            other => other.to_string(),
        }
    }

    fn from_iceberg(e: iceberg::Error, database: &str, table: &str) -> Self {
        match e.kind() {
            ErrorKind::TableNotFound | ErrorKind::NamespaceNotFound => {
                IcebergError::NoSuchTable { database: database.to_string(), table: table.to_string() }
            }
            ErrorKind::TableAlreadyExists => {
                IcebergError::TableExists { database: database.to_string(), table: table.to_string() }
            }
            ErrorKind::FeatureUnsupported => IcebergError::Unsupported(e.to_string()),
            ErrorKind::DataInvalid | ErrorKind::PreconditionFailed => IcebergError::InvalidData(e.to_string()),
            _ => IcebergError::Catalog(e.to_string()),
        }
    }
}

/// A table as the record converter needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct TableInfo {
    /// The data columns, as the Hive types the JSON converter builds (see the module docs).
    pub columns: Vec<Column>,
    /// The identifier (unique key) columns, by full dotted name, in field-id order.
    pub identifier_columns: Vec<String>,
    /// The table's location (`file:///...`).
    pub location: String,
    pub format_version: u8,
}

/// What one append wrote.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AppendResult {
    /// The new snapshot; None when there was nothing to append.
    pub snapshot_id: Option<i64>,
    /// The data files' locations, as the table's manifests name them.
    pub data_files: Vec<String>,
    pub rows: u64,
    /// Bytes of the data files.
    pub bytes: u64,
}

/// The embedded Iceberg catalog (cheap to clone).
#[derive(Clone)]
pub struct IcebergCatalog {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Backend,
    name: String,
    /// The embedded catalog's SQLite database; empty for a REST catalog.
    db_path: PathBuf,
    /// `file://<absolute warehouse dir>` (embedded), or the REST catalog's warehouse location.
    warehouse: String,
}

/// Where the catalog lives: both implement `iceberg::Catalog`, and both can commit table updates
/// that iceberg-rust's `Transaction` cannot build (the replace snapshot of a compaction).
enum Backend {
    Sql(SqlCatalog),
    Rest(Box<rest::RestCatalog>),
}

impl fmt::Debug for IcebergCatalog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IcebergCatalog")
            .field("name", &self.inner.name)
            .field("db_path", &self.inner.db_path)
            .field("warehouse", &self.inner.warehouse)
            .finish()
    }
}

/// Snapshot summary key of a stream's last (or first) WAL position.
pub fn summary_key(stream_key: &str, which: &str) -> String {
    format!("spillway.{stream_key}.wal-{which}")
}

fn check_names(database: &str, table: &str) -> Result<(), IcebergError> {
    for (what, name) in [("database", database), ("table", table)] {
        let ok = !name.is_empty() && name.len() <= 255 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !ok {
            return Err(IcebergError::InvalidTableName(format!(
                "{what} name {name:?} of {database}.{table} must be 1 to 255 letters, digits or underscores"
            )));
        }
    }
    Ok(())
}

/// `path` with the characters a sqlx SQLite URL treats specially percent-encoded.
fn sqlite_url_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

async fn absolute_dir(dir: &Path) -> Result<PathBuf, IcebergError> {
    tokio::fs::create_dir_all(dir).await.map_err(|source| IcebergError::Io {
        op: "create",
        path: dir.to_path_buf(),
        source,
    })?;
    tokio::fs::canonicalize(dir).await.map_err(|source| IcebergError::Io {
        op: "resolve",
        path: dir.to_path_buf(),
        source,
    })
}

impl IcebergCatalog {
    /// The embedded catalog: an iceberg-catalog-sql catalog on SQLite at `db_path` (created with
    /// its folder), catalog name `name` (the `catalog_name` column PyIceberg's SqlCatalog filters
    /// on), default warehouse `warehouse_dir` (a local folder, created; tables live under
    /// `<warehouse_dir>/<database>.db/<table>`).
    pub async fn embedded(db_path: &Path, name: &str, warehouse_dir: &Path) -> Result<Self, IcebergError> {
        let warehouse_dir = absolute_dir(warehouse_dir).await?;
        let Some(warehouse) = warehouse_dir.to_str() else {
            return Err(IcebergError::Config(format!("{} is not UTF-8", warehouse_dir.display())));
        };
        let warehouse = format!("file://{}", warehouse.trim_end_matches('/'));
        Self::embedded_at(db_path, name, warehouse, Arc::new(storage::ObjectStorageFactory::default())).await
    }

    /// The embedded catalog with its warehouse at `warehouse` (a URL: `file:///dir`,
    /// `s3://bucket/path`), files read and written through `storage`.
    pub async fn embedded_at(
        db_path: &Path,
        name: &str,
        warehouse: String,
        storage: Arc<dyn iceberg::io::StorageFactory>,
    ) -> Result<Self, IcebergError> {
        if name.trim().is_empty() {
            return Err(IcebergError::Config("the catalog name is empty".into()));
        }
        let Some(file_name) = db_path.file_name() else {
            return Err(IcebergError::Config(format!("{} is not a file path", db_path.display())));
        };
        let parent = match db_path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let db_path = absolute_dir(parent).await?.join(file_name);
        let Some(db) = db_path.to_str() else {
            return Err(IcebergError::Config(format!("{} is not UTF-8", db_path.display())));
        };
        let warehouse = warehouse.trim_end_matches('/').to_string();
        let props = HashMap::from([
            (SQL_CATALOG_PROP_URI.to_string(), format!("sqlite:{}?mode=rwc", sqlite_url_path(db))),
            (SQL_CATALOG_PROP_WAREHOUSE.to_string(), warehouse.clone()),
            (SQL_CATALOG_PROP_BIND_STYLE.to_string(), SqlBindStyle::QMark.to_string()),
        ]);
        let catalog = SqlCatalogBuilder::default()
            .with_storage_factory(storage)
            .load(name, props)
            .await
            .map_err(|e| IcebergError::Catalog(e.to_string()))?;
        Ok(IcebergCatalog {
            inner: Arc::new(Inner { backend: Backend::Sql(catalog), name: name.to_string(), db_path, warehouse }),
        })
    }

    /// A REST catalog (see [`rest::RestCatalog`]); tables keep the locations the catalog gives.
    pub fn rest(name: &str, catalog: rest::RestCatalog) -> Self {
        let warehouse = catalog.warehouse_location().unwrap_or_default().to_string();
        IcebergCatalog {
            inner: Arc::new(Inner {
                backend: Backend::Rest(Box::new(catalog)),
                name: name.to_string(),
                db_path: PathBuf::new(),
                warehouse,
            }),
        }
    }

    fn catalog(&self) -> &dyn Catalog {
        match &self.inner.backend {
            Backend::Sql(c) => c,
            Backend::Rest(c) => c.as_ref(),
        }
    }

    /// Commits `updates` to `table` under `requirements` (each checked by the catalog against the
    /// table's current metadata, so a concurrent commit fails this one with a retryable error).
    pub(crate) async fn commit_updates(
        &self,
        table: &Table,
        requirements: Vec<iceberg::TableRequirement>,
        updates: Vec<iceberg::TableUpdate>,
    ) -> Result<Table, IcebergError> {
        let ident = table.identifier();
        let ice = |e| IcebergError::from_iceberg(e, &ident.namespace().join("."), ident.name());
        match &self.inner.backend {
            Backend::Sql(_) => compact::commit_sql(&self.inner.db_path, &self.inner.name, table, requirements, updates)
                .await
                .map_err(ice),
            Backend::Rest(c) => c.commit_updates(ident, requirements, updates).await.map_err(ice),
        }
    }

    /// Whether this is the embedded (SQLite) catalog.
    pub fn is_embedded(&self) -> bool {
        matches!(self.inner.backend, Backend::Sql(_))
    }

    /// The catalog name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The SQLite database (absolute).
    pub fn db_path(&self) -> &Path {
        &self.inner.db_path
    }

    /// The warehouse location (`file:///...`).
    pub fn warehouse(&self) -> &str {
        &self.inner.warehouse
    }

    /// The location a new table `database.table` gets in the embedded catalog (a REST catalog
    /// chooses its own: None).
    pub fn table_location(&self, database: &str, table: &str) -> Option<String> {
        self.is_embedded().then(|| format!("{}/{database}.db/{table}", self.inner.warehouse))
    }

    /// Creates namespace (database) if needed and the table (Iceberg format v2) with `fields`
    /// (field ids 1..n in order, nested ones after), identity partitions on `partition_by`
    /// columns (top-level names); `Ok(false)` if it already existed and `if_not_exists`.
    pub async fn create_table(
        &self,
        database: &str,
        table: &str,
        fields: &[FieldSpec],
        partition_by: &[String],
        if_not_exists: bool,
    ) -> Result<bool, IcebergError> {
        check_names(database, table)?;
        let schema = types::build_schema(fields)?;
        let mut spec = UnboundPartitionSpec::builder();
        for column in partition_by {
            let Some(field) = schema.as_struct().fields().iter().find(|f| &f.name == column) else {
                return Err(IcebergError::InvalidSchema(format!(
                    "partition column {column:?} is not a top-level field"
                )));
            };
            if !field.field_type.is_primitive() {
                return Err(IcebergError::InvalidSchema(format!(
                    "partition column {column:?} is a {}, not a primitive",
                    field_type_text(&field.field_type)
                )));
            }
            spec = spec
                .add_partition_field(field.id, &field.name, Transform::Identity)
                .map_err(|e| IcebergError::InvalidSchema(e.message().to_string()))?;
        }
        let catalog = self.catalog();
        let ice = |e| IcebergError::from_iceberg(e, database, table);
        let ns = NamespaceIdent::new(database.to_string());
        if !catalog.namespace_exists(&ns).await.map_err(ice)?
            && let Err(e) = catalog.create_namespace(&ns, HashMap::new()).await
            && e.kind() != ErrorKind::NamespaceAlreadyExists
        {
            return Err(ice(e));
        }
        let ident = TableIdent::new(ns.clone(), table.to_string());
        let exists = || {
            if if_not_exists {
                Ok(false)
            } else {
                Err(IcebergError::TableExists { database: database.to_string(), table: table.to_string() })
            }
        };
        if catalog.table_exists(&ident).await.map_err(ice)? {
            return exists();
        }
        let creation = TableCreation::builder()
            .name(table.to_string())
            .location_opt(self.table_location(database, table))
            .schema(schema)
            .partition_spec(spec.build())
            .properties([("write.parquet.compression-codec".to_string(), "snappy".to_string())])
            .format_version(FormatVersion::V2)
            .build();
        match catalog.create_table(&ns, creation).await {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == ErrorKind::TableAlreadyExists => exists(),
            Err(e) => Err(ice(e)),
        }
    }

    async fn load(&self, database: &str, table: &str) -> Result<Table, IcebergError> {
        check_names(database, table)?;
        let ident = TableIdent::new(NamespaceIdent::new(database.to_string()), table.to_string());
        self.catalog().load_table(&ident).await.map_err(|e| IcebergError::from_iceberg(e, database, table))
    }

    fn check_version(table: &Table, database: &str, name: &str) -> Result<(), IcebergError> {
        let version = match table.metadata().format_version() {
            FormatVersion::V2 => return Ok(()),
            FormatVersion::V1 => 1,
            FormatVersion::V3 => 3,
        };
        Err(IcebergError::UnsupportedFormatVersion { database: database.to_string(), table: name.to_string(), version })
    }

    /// The table's current schema for the record converter (see the module docs for the types),
    /// and its identifier (unique key) columns. Err(NoSuchTable) if missing; a table in a format
    /// other than v2 is refused with the same Firehose code.
    pub async fn table_info(&self, database: &str, table: &str) -> Result<TableInfo, IcebergError> {
        let t = self.load(database, table).await?;
        Self::check_version(&t, database, table)?;
        let metadata = t.metadata();
        let schema = metadata.current_schema();
        let columns = types::columns_of(schema.as_struct().fields(), None)?;
        let mut ids: Vec<i32> = schema.identifier_field_ids().collect();
        ids.sort_unstable();
        let identifier_columns = ids.iter().filter_map(|id| schema.name_by_field_id(*id).map(str::to_string)).collect();
        Ok(TableInfo { columns, identifier_columns, location: metadata.location().to_string(), format_version: 2 })
    }

    /// The table's current columns in the form [`create_table`](Self::create_table) takes (types
    /// as [`field_type_text`] prints them).
    pub async fn table_fields(&self, database: &str, table: &str) -> Result<Vec<FieldSpec>, IcebergError> {
        let t = self.load(database, table).await?;
        Ok(t.metadata()
            .current_schema()
            .as_struct()
            .fields()
            .iter()
            .map(|f| FieldSpec {
                name: f.name.clone(),
                field_type: field_type_text(&f.field_type),
                required: f.required,
            })
            .collect())
    }

    /// Highest `last` WAL position this table recorded for `stream_key`: the table property
    /// `spillway.<stream_key>.wal-last` (set by every append, so it survives snapshot expiry) and
    /// the same key in the summaries of the current snapshot and its ancestors; None if none.
    /// After a rollback the property may be ahead of the rows the table holds: a rollback is the
    /// user's decision to drop those rows, and replaying them would undo it.
    pub async fn committed_position(
        &self,
        database: &str,
        table: &str,
        stream_key: &str,
    ) -> Result<Option<u64>, IcebergError> {
        let t = self.load(database, table).await?;
        let key = summary_key(stream_key, "last");
        let metadata = t.metadata();
        // The table property is written with every append (it outlives expired snapshots); the
        // summaries of the current ancestry also count (tables appended before the property).
        let mut best: Option<u64> = metadata.properties().get(&key).and_then(|v| v.parse::<u64>().ok());
        let mut next = metadata.current_snapshot_id();
        let mut steps = 0;
        while let Some(id) = next
            && steps <= metadata.snapshots().len()
        {
            let Some(snapshot) = metadata.snapshot_by_id(id) else { break };
            if let Some(v) = snapshot.summary().additional_properties.get(&key).and_then(|v| v.parse::<u64>().ok()) {
                best = Some(best.map_or(v, |b| b.max(v)));
            }
            next = snapshot.parent_snapshot_id();
            steps += 1;
        }
        Ok(best)
    }

    /// Writes `batches` (from spillway's JSON converter, with the columns of
    /// [`table_info`](Self::table_info)) as SNAPPY Parquet data files under the table's location,
    /// one per partition for partitioned tables, and commits ONE fast-append snapshot whose summary
    /// carries `spillway.<stream_key>.wal-first = wal_first` and `.wal-last = wal_last`. Empty
    /// input commits nothing. Commit conflicts are retried (iceberg's `commit.retry.*`); values the
    /// table cannot take fail the whole append before anything is written.
    pub async fn append(
        &self,
        database: &str,
        table: &str,
        batches: Vec<arrow_array::RecordBatch>,
        stream_key: &str,
        wal_first: u64,
        wal_last: u64,
    ) -> Result<AppendResult, IcebergError> {
        if batches.iter().all(|b| b.num_rows() == 0) {
            return Ok(AppendResult::default());
        }
        let t = self.load(database, table).await?;
        Self::check_version(&t, database, table)?;
        let ice = |e| IcebergError::from_iceberg(e, database, table);
        let metadata = t.metadata();
        let schema = metadata.current_schema().clone();
        let arrow_schema = Arc::new(schema_to_arrow_schema(&schema).map_err(ice)?);

        // Re-type everything first: a value the table refuses fails the append before any write.
        let adapted = adapt_all(&batches, &arrow_schema)?;
        drop(batches);

        let files = write_data_files(&t, adapted, format!("wal-{wal_first}-{wal_last}")).await.map_err(ice)?;
        if files.is_empty() {
            return Ok(AppendResult::default());
        }
        let result = AppendResult {
            snapshot_id: None,
            data_files: files.iter().map(|f| f.file_path().to_string()).collect(),
            rows: files.iter().map(|f| f.record_count()).sum(),
            bytes: files.iter().map(|f| f.file_size_in_bytes()).sum(),
        };
        let summary = HashMap::from([
            (summary_key(stream_key, "first"), wal_first.to_string()),
            (summary_key(stream_key, "last"), wal_last.to_string()),
        ]);
        let tx = Transaction::new(&t);
        // File names carry a fresh UUID, so the duplicate check (which reads every manifest of the
        // table on each commit) cannot find anything.
        let action =
            tx.fast_append().with_check_duplicate(false).add_data_files(files).set_snapshot_properties(summary);
        let tx = action.apply(tx).map_err(ice)?;
        // The same position as a table property, in the same commit: it survives the expiry of
        // the snapshots that carry it in their summaries.
        let tx = tx
            .update_table_properties()
            .set(summary_key(stream_key, "last"), wal_last.to_string())
            .apply(tx)
            .map_err(ice)?;
        let committed = tx.commit(self.catalog()).await.map_err(ice)?;
        Ok(AppendResult { snapshot_id: committed.metadata().current_snapshot_id(), ..result })
    }
}

/// `batches` re-typed to `schema` (the table's Arrow schema), empty ones left out; rows in the
/// errors count across batches, from 0.
pub(crate) fn adapt_all(
    batches: &[arrow_array::RecordBatch],
    schema: &arrow_schema::SchemaRef,
) -> Result<Vec<arrow_array::RecordBatch>, IcebergError> {
    let mut out = Vec::with_capacity(batches.len());
    let mut offset = 0;
    for batch in batches.iter().filter(|b| b.num_rows() > 0) {
        let b = adapt::adapt_batch(batch, schema).map_err(|e| {
            let (column, row) = (e.path, offset + e.row);
            match e.problem {
                adapt::Problem::Missing => IcebergError::MissingRequiredValue { column, row },
                adapt::Problem::Invalid(reason) => IcebergError::InvalidValue { column, row, reason },
                adapt::Problem::Mismatch(reason) => IcebergError::SchemaMismatch(reason),
            }
        })?;
        offset += batch.num_rows();
        out.push(b);
    }
    Ok(out)
}

/// Writes `batches` (already in the table's current Arrow schema, see `adapt`) as SNAPPY Parquet
/// data files `<prefix>-NNNNN-<uuid>.parquet` under the table's data location, rolled at
/// `write.target-file-size-bytes`, one set per partition of the default spec. Nothing is committed.
pub(crate) async fn write_data_files(
    table: &Table,
    batches: Vec<arrow_array::RecordBatch>,
    prefix: String,
) -> iceberg::Result<Vec<DataFile>> {
    let metadata = table.metadata();
    let schema = metadata.current_schema().clone();
    let target_size = metadata.table_properties()?.write_target_file_size_bytes;
    let properties = WriterProperties::builder().set_compression(Compression::SNAPPY).build();
    let parquet = ParquetWriterBuilder::new(properties, schema.clone());
    let names = DefaultFileNameGenerator::new(prefix, Some(uuid::Uuid::now_v7().to_string()), DataFileFormat::Parquet);
    let rolling = RollingFileWriterBuilder::new(
        parquet,
        target_size,
        table.file_io().clone(),
        DataLocation::new(metadata),
        names,
    );
    let builder = DataFileWriterBuilder::new(rolling);
    let spec = metadata.default_partition_spec().clone();
    if spec.is_unpartitioned() {
        let mut writer = UnpartitionedWriter::new(builder);
        for b in batches {
            writer.write(b).await?;
        }
        writer.close().await
    } else {
        let splitter = RecordBatchPartitionSplitter::try_new_with_computed_values(schema, spec)?;
        let mut writer = FanoutWriter::new(builder);
        for b in batches {
            for (key, part) in splitter.split(&b)? {
                writer.write(key, part).await?;
            }
        }
        writer.close().await
    }
}

/// Data file locations: `<data location>/<file>` or `<data location>/<partition path>/<file>`,
/// where the data location is `write.data.path` (or `write.folder-storage.path`) if the table
/// sets it, else `<table location>/data`. Unlike iceberg-rust's `DefaultLocationGenerator`, the
/// partition values are escaped, so a record's value (`../..`) cannot move a file out of the table.
#[derive(Clone, Debug)]
struct DataLocation {
    data: String,
}

impl DataLocation {
    fn new(metadata: &iceberg::spec::TableMetadata) -> Self {
        let props = metadata.properties();
        let data = props
            .get("write.data.path")
            .or_else(|| props.get("write.folder-storage.path"))
            .cloned()
            .unwrap_or_else(|| format!("{}/data", metadata.location()));
        DataLocation { data: data.trim_end_matches('/').to_string() }
    }
}

impl LocationGenerator for DataLocation {
    fn generate_location(&self, partition_key: Option<&PartitionKey>, file_name: &str) -> String {
        match partition_key.filter(|k| !k.spec().is_unpartitioned()) {
            None => format!("{}/{file_name}", self.data),
            Some(key) => format!("{}/{}/{file_name}", self.data, partition_path(key)),
        }
    }
}

/// `name=value/...` with both escaped like Java's `URLEncoder` (what Iceberg Java writes).
fn partition_path(key: &PartitionKey) -> String {
    let types = key.spec().partition_type(key.schema()).ok();
    key.spec()
        .fields()
        .iter()
        .enumerate()
        .map(|(i, field)| {
            let value = key.data().fields().get(i).and_then(Option::as_ref);
            let human = match types.as_ref().and_then(|t| t.fields().get(i)) {
                Some(t) => field.transform.to_human_string(&t.field_type, value),
                None => "null".to_string(),
            };
            format!("{}={}", url_encode(&field.name), url_encode(&human))
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn url_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'-' | b'*' | b'_' => out.push(b as char),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    // "." and ".." alone would still name a folder of the path.
    if out == "." || out == ".." { out.replace('.', "%2E") } else { out }
}
