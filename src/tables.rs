//! `spillway tables`: the table definitions that stand in for the Glue tables named by
//! `SchemaConfiguration` (list, show, add, remove). The definitions, their layout under
//! `<data-dir>/tables/` and the registry are `spillway_format::table`'s; this file finds the data
//! dir and the configuration the way `serve` does, and prints.
//!
//! `create` makes an Iceberg table for an Iceberg stream in catalog `--catalog`: a REST catalog of
//! the configuration (`[iceberg_catalogs.NAME]`), which chooses the table's location, or else the
//! embedded catalog (`spillway_destination::iceberg`): database `<data-dir>/catalog/catalog.db`,
//! warehouse `<data-dir>/buckets/<catalog>/`, so the table lands at
//! `<data-dir>/buckets/<catalog>/<database>.db/<table>/`. That is where a stream whose CatalogARN
//! names the S3 Tables table bucket `<catalog>` (`arn:aws:s3tables:<region>:<acct>:bucket/<catalog>`
//! or `arn:aws:glue:<region>:<acct>:catalog/s3tablescatalog/<catalog>`) and which has no
//! `WarehouseLocation` keeps its tables: the table bucket is the embedded bucket of that name.
//!
//! `compact` rewrites the small data files of such a table into fewer, larger ones in one
//! `replace` commit (`IcebergCatalog::compact`); the rows do not change, and it is safe while the
//! server appends to the table.

use crate::config::Config;
use anyhow::Context;
use clap::{Args, Subcommand};
use spillway_destination::iceberg::catalogs::Catalogs;
use spillway_destination::iceberg::compact::CompactOptions;
use spillway_destination::iceberg::{IcebergCatalog, parse_field_specs};
use spillway_format::table::{DEFAULT_DATABASE, TableDefinition, TableRegistry};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Subcommand)]
pub enum TablesCommand {
    /// List every table: database, name, column count, partition keys and where it is defined.
    List {
        #[command(flatten)]
        place: Place,
    },
    /// Show a table's columns, partition keys and the Arrow schema of the files written for it.
    Show {
        /// DATABASE.TABLE, or TABLE for the database "default".
        name: String,
        #[command(flatten)]
        place: Place,
    },
    /// Check a definition (Hive DDL .sql/.hql/.ddl, or JSON) and copy it into <data-dir>/tables/<database>/.
    /// A running server finds it at its next lookup.
    Add {
        /// The definition file.
        file: PathBuf,
        /// Database of an unqualified definition [default: the one it names, else "default"].
        #[arg(long)]
        database: Option<String>,
        /// Replace an existing definition of the same table.
        #[arg(long)]
        replace: bool,
        #[command(flatten)]
        place: Place,
    },
    /// Delete a table's definition from <data-dir>/tables/.
    Remove {
        /// DATABASE.TABLE, or TABLE for the database "default".
        name: String,
        #[command(flatten)]
        place: Place,
    },
    /// Create an Iceberg table (format v2) for Iceberg streams in the embedded catalog
    /// <data-dir>/catalog/catalog.db, stored under <data-dir>/buckets/<catalog>/<database>.db/<table>/.
    Create {
        /// DATABASE.TABLE (a stream's DestinationDatabaseName and DestinationTableName), or TABLE
        /// for the database "default".
        name: String,
        /// JSON file of the columns: [{"name": ..., "type": ..., "required": ...}, ...] or
        /// {"fields": [...]}, Iceberg types (long, double, timestamptz, decimal(10,2), list<string>,
        /// struct<a:int>, ...) as in the `field` blocks of an S3 Tables table's Terraform schema.
        #[arg(long, value_name = "FILE")]
        schema: PathBuf,
        /// Identity-partition the table on this top-level column (repeat for more).
        #[arg(long = "partition-by", value_name = "COL")]
        partition_by: Vec<String>,
        /// The catalog: the S3 Tables table bucket of the streams' CatalogARN
        /// (`...:bucket/NAME` or `...:catalog/s3tablescatalog/NAME`); `AwsDataCatalog` (the
        /// default) is the account's Glue Data Catalog (`arn:aws:glue:<region>:<account>:catalog`).
        #[arg(long, default_value = "AwsDataCatalog", value_name = "NAME")]
        catalog: String,
        /// Succeed without changing anything when the table exists.
        #[arg(long)]
        if_not_exists: bool,
        #[command(flatten)]
        place: Place,
    },
    /// Compact an Iceberg table of the embedded catalog: rewrite the small data files of each
    /// partition (smaller than 3/4 of the target size) into fewer, larger ones, in one `replace`
    /// commit; the rows do not change. Safe while the server appends to the table.
    Compact {
        /// DATABASE.TABLE, or TABLE for the database "default".
        name: String,
        /// The catalog, as for `create`.
        #[arg(long, default_value = "AwsDataCatalog", value_name = "NAME")]
        catalog: String,
        /// Target size of the files, in bytes [default: the table's write.target-file-size-bytes, 512 MiB].
        #[arg(long, value_name = "BYTES", value_parser = clap::value_parser!(u64).range(1..))]
        target_file_size: Option<u64>,
        /// Rewrite a partition's small files only when it has at least this many.
        #[arg(long, value_name = "N", default_value_t = 2,
              value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(2..))]
        min_input_files: usize,
        #[command(flatten)]
        place: Place,
    },
}

/// Where the tables are: the same data dir and configuration as `spillway serve`.
#[derive(Args)]
pub struct Place {
    /// The server's data directory [default: data_dir of [server] in the configuration, else ./spillway-data].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Optional configuration file (spillway.toml), for its [[tables]].
    #[arg(long)]
    config: Option<PathBuf>,
}

impl Place {
    fn config(&self) -> anyhow::Result<Config> {
        Ok(match &self.config {
            Some(p) => Config::load(p)?,
            None => Config::default(),
        })
    }

    fn data_dir_of(&self, config: &Config) -> PathBuf {
        self.data_dir.clone().or(config.server.data_dir.clone()).unwrap_or_else(|| PathBuf::from("./spillway-data"))
    }

    /// The registry `serve` would build.
    fn open(&self) -> anyhow::Result<TableRegistry> {
        let config = self.config()?;
        open_registry(&self.data_dir_of(&config), &config.tables)
    }

    /// The Iceberg catalogs `serve` would use.
    fn catalogs(&self) -> anyhow::Result<Catalogs> {
        let config = self.config()?;
        Ok(config.catalogs(&self.data_dir_of(&config)))
    }
}

fn open_registry(data_dir: &Path, sources: &[spillway_format::table::TableSource]) -> anyhow::Result<TableRegistry> {
    Ok(TableRegistry::new(Some(data_dir.join("tables")), sources)?)
}

pub fn run(command: TablesCommand) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match command {
        TablesCommand::List { place } => list(&place.open()?, &mut out),
        TablesCommand::Show { name, place } => show(&place.open()?, &name, &mut out),
        TablesCommand::Add { file, database, replace, place } => {
            add(&place.open()?, &file, database.as_deref(), replace, &mut out)
        }
        TablesCommand::Remove { name, place } => remove(&place.open()?, &name, &mut out),
        TablesCommand::Create { name, schema, partition_by, catalog, if_not_exists, place } => {
            let request = CreateRequest { name, schema, partition_by, catalog, if_not_exists };
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(create(&place.catalogs()?, &request, &mut out))
        }
        TablesCommand::Compact { name, catalog, target_file_size, min_input_files, place } => {
            let request = CompactRequest { name, catalog, target_file_size, min_input_files };
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(compact(&place.catalogs()?, &request, &mut out))
        }
    }
}

/// `DB.TABLE` or `TABLE` (database "default").
fn split_name(name: &str) -> anyhow::Result<(&str, &str)> {
    let (db, table) = name.split_once('.').unwrap_or((DEFAULT_DATABASE, name));
    if db.is_empty() || table.is_empty() {
        anyhow::bail!("expected DATABASE.TABLE or TABLE, got {name:?}");
    }
    Ok((db, table))
}

fn partition_summary(table: &TableDefinition) -> String {
    if table.partition_keys.is_empty() {
        return "-".to_string();
    }
    table.partition_keys.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(",")
}

/// Rows with their columns padded to the widest cell (the last column is not padded).
fn write_rows(out: &mut dyn Write, rows: &[Vec<String>]) -> std::io::Result<()> {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|i| rows.iter().filter_map(|r| r.get(i)).map(|c| c.chars().count()).max().unwrap_or(0))
        .collect();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 < row.len() {
                line.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            } else {
                line.push_str(cell);
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

pub fn list(registry: &TableRegistry, out: &mut dyn Write) -> anyhow::Result<()> {
    let (tables, errors) = registry.list();
    if tables.is_empty() {
        match registry.dir() {
            Some(dir) => writeln!(out, "no tables (add one with 'spillway tables add FILE', or in {})", dir.display())?,
            None => writeln!(out, "no tables")?,
        }
    } else {
        let mut rows = vec![["DATABASE", "TABLE", "COLUMNS", "PARTITION KEYS", "SOURCE"].map(String::from).to_vec()];
        rows.extend(tables.iter().map(|t| {
            vec![
                t.database.clone(),
                t.name.clone(),
                t.columns.len().to_string(),
                partition_summary(t),
                t.source.clone(),
            ]
        }));
        write_rows(out, &rows)?;
    }
    if !errors.is_empty() {
        writeln!(out)?;
        writeln!(out, "broken definitions (ignored until fixed):")?;
        for e in &errors {
            writeln!(out, "  {e}")?;
        }
        anyhow::bail!("{} table definition(s) could not be read", errors.len());
    }
    Ok(())
}

pub fn show(registry: &TableRegistry, name: &str, out: &mut dyn Write) -> anyhow::Result<()> {
    let (db, table) = split_name(name)?;
    let t = registry.lookup(db, table)?;
    writeln!(out, "table:  {}", t.qualified_name())?;
    writeln!(out, "source: {}", t.source)?;
    for (label, value) in [
        ("location", &t.location),
        ("serde", &t.serde_library),
        ("input format", &t.input_format),
        ("output format", &t.output_format),
    ] {
        if let Some(v) = value {
            writeln!(out, "{label}: {v}")?;
        }
    }
    let columns = |cols: &[spillway_format::schema::Column]| -> Vec<Vec<String>> {
        cols.iter().map(|c| vec![format!("  {}", c.name), c.data_type.to_string()]).collect()
    };
    writeln!(out, "\ncolumns:")?;
    write_rows(out, &columns(&t.columns))?;
    if !t.partition_keys.is_empty() {
        writeln!(out, "\npartition keys (in the object keys, not in the files):")?;
        write_rows(out, &columns(&t.partition_keys))?;
    }
    if !t.properties.is_empty() {
        writeln!(out, "\nproperties:")?;
        let rows: Vec<Vec<String>> = t.properties.iter().map(|(k, v)| vec![format!("  {k}"), v.clone()]).collect();
        write_rows(out, &rows)?;
    }
    writeln!(out, "\narrow schema of the data files (every field nullable):")?;
    let schema = t.arrow_schema();
    let rows: Vec<Vec<String>> =
        schema.fields().iter().map(|f| vec![format!("  {}", f.name()), f.data_type().to_string()]).collect();
    write_rows(out, &rows)?;
    Ok(())
}

pub fn add(
    registry: &TableRegistry,
    file: &Path,
    database: Option<&str>,
    replace: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let t = registry.add(file, database, replace).with_context(|| format!("cannot add {}", file.display()))?;
    writeln!(
        out,
        "added {} ({} columns, partition keys: {}) as {}",
        t.qualified_name(),
        t.columns.len(),
        partition_summary(&t),
        t.source
    )?;
    Ok(())
}

pub fn remove(registry: &TableRegistry, name: &str, out: &mut dyn Write) -> anyhow::Result<()> {
    let (db, table) = split_name(name)?;
    registry.remove(db, table)?;
    writeln!(out, "removed {}.{}", db.to_lowercase(), table.to_lowercase())?;
    Ok(())
}

/// What `spillway tables create` was asked.
pub struct CreateRequest {
    pub name: String,
    pub schema: PathBuf,
    pub partition_by: Vec<String>,
    pub catalog: String,
    pub if_not_exists: bool,
}

/// Catalog `name`: a REST catalog of the configuration, else the embedded catalog of the data dir
/// (see the module docs for the layout).
pub async fn open_catalog(catalogs: &Catalogs, name: &str) -> anyhow::Result<IcebergCatalog> {
    catalogs.open(name, None).await.with_context(|| format!("cannot open the Iceberg catalog {name}"))
}

pub async fn create(catalogs: &Catalogs, request: &CreateRequest, out: &mut dyn Write) -> anyhow::Result<()> {
    let (db, table) = split_name(&request.name)?;
    let text = std::fs::read_to_string(&request.schema)
        .with_context(|| format!("cannot read the schema {}", request.schema.display()))?;
    let fields = parse_field_specs(&text).with_context(|| format!("in {}", request.schema.display()))?;
    let catalog = open_catalog(catalogs, &request.catalog).await?;
    let created = catalog
        .create_table(db, table, &fields, &request.partition_by, request.if_not_exists)
        .await
        .with_context(|| format!("cannot create {db}.{table} in catalog {}", request.catalog))?;
    if !created {
        writeln!(out, "{db}.{table} already exists in catalog {} (unchanged)", request.catalog)?;
        return Ok(());
    }
    let info = catalog.table_info(db, table).await?;
    writeln!(
        out,
        "created Iceberg table {db}.{table} (format v{}) in catalog {}",
        info.format_version,
        catalog.name()
    )?;
    writeln!(out, "catalog database: {}", catalog.db_path().display())?;
    writeln!(out, "location: {}", info.location)?;
    let partitions = if request.partition_by.is_empty() { "-".to_string() } else { request.partition_by.join(",") };
    writeln!(out, "partitioned by (identity): {partitions}")?;
    writeln!(out, "\ncolumns:")?;
    let rows: Vec<Vec<String>> = catalog
        .table_fields(db, table)
        .await?
        .into_iter()
        .map(|f| vec![format!("  {}", f.name), f.field_type, if f.required { "required" } else { "optional" }.into()])
        .collect();
    write_rows(out, &rows)?;
    Ok(())
}

/// What `spillway tables compact` was asked.
pub struct CompactRequest {
    pub name: String,
    pub catalog: String,
    pub target_file_size: Option<u64>,
    pub min_input_files: usize,
}

/// `n` bytes for people: `512 B`, `1.2 MiB`.
fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

fn files(n: usize) -> String {
    if n == 1 { "1 file".to_string() } else { format!("{n} files") }
}

pub async fn compact(catalogs: &Catalogs, request: &CompactRequest, out: &mut dyn Write) -> anyhow::Result<()> {
    let (db, table) = split_name(&request.name)?;
    let db_file = &catalogs.catalog_db;
    if !catalogs.rest.contains_key(&request.catalog) && !db_file.is_file() {
        anyhow::bail!("no Iceberg catalog in {} (create a table with 'spillway tables create')", db_file.display());
    }
    let catalog = open_catalog(catalogs, &request.catalog).await?;
    let options =
        CompactOptions { target_file_size_bytes: request.target_file_size, min_input_files: request.min_input_files };
    let report = catalog
        .compact(db, table, &options)
        .await
        .with_context(|| format!("cannot compact {db}.{table} in catalog {}", request.catalog))?;
    match report.snapshot_id {
        None => writeln!(out, "nothing to compact in {db}.{table} ({})", files(report.files_before))?,
        Some(snapshot) => writeln!(
            out,
            "compacted {db}.{table}: {} -> {} ({} rewritten, {} written, {} rows, {} -> {}), snapshot {snapshot}",
            files(report.files_before),
            report.files_after,
            report.rewritten_files,
            report.added_files,
            report.rows,
            human_bytes(report.bytes_before),
            human_bytes(report.bytes_after),
        )?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    fn local(data_dir: &std::path::Path) -> Catalogs {
        Catalogs::new(data_dir, Default::default(), Default::default())
    }

    use super::*;

    fn text(out: Vec<u8>) -> String {
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn add_list_show_remove() {
        let tmp = tempfile::tempdir().unwrap();
        let data_dir = tmp.path().join("data");
        let inline = spillway_format::table::TableSource {
            database: Some("web".into()),
            file: None,
            ddl: Some("CREATE TABLE clicks (url string, at timestamp)".into()),
        };
        let registry = open_registry(&data_dir, &[inline]).unwrap();
        let ddl = tmp.path().join("trips.sql");
        std::fs::write(
            &ddl,
            "CREATE EXTERNAL TABLE trips (trip_id bigint, fare decimal(10,2), tags array<string>)\n\
             PARTITIONED BY (year string, month string) STORED AS PARQUET",
        )
        .unwrap();

        let mut out = Vec::new();
        add(&registry, &ddl, Some("KinesisLab"), false, &mut out).unwrap();
        let added = data_dir.join("tables/kinesislab/trips.sql");
        assert_eq!(
            text(out),
            format!("added kinesislab.trips (3 columns, partition keys: year,month) as {}\n", added.display())
        );
        let err = add(&registry, &ddl, Some("kinesislab"), false, &mut Vec::new()).unwrap_err();
        assert!(format!("{err:#}").contains("already exists"), "{err:#}");

        let mut out = Vec::new();
        list(&registry, &mut out).unwrap();
        let out = text(out);
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[0].starts_with("DATABASE    TABLE   COLUMNS  PARTITION KEYS  SOURCE"), "{out}");
        assert!(lines[1].starts_with("kinesislab  trips   3        year,month      "), "{out}");
        assert_eq!(lines[2], "web         clicks  2        -               spillway.toml", "{out}");

        let mut out = Vec::new();
        show(&registry, "KinesisLab.Trips", &mut out).unwrap();
        let out = text(out);
        assert!(out.starts_with("table:  kinesislab.trips\n"), "{out}");
        assert!(out.contains("\n  fare     decimal(10,2)\n"), "{out}");
        assert!(out.contains("partition keys (in the object keys, not in the files):\n  year   string\n"), "{out}");
        assert!(out.contains("input format: org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"), "{out}");
        let schema = out.split("arrow schema").nth(1).unwrap();
        assert!(schema.contains("trip_id") && schema.contains("Decimal128(10, 2)"), "{out}");
        assert!(!schema.contains("year"), "partition keys are not in the files: {out}");

        let err = show(&registry, "nope", &mut Vec::new()).unwrap_err().to_string();
        assert!(err.starts_with("Table default.nope was not found."), "{err}");

        // A broken file is listed after the tables, and makes `list` fail.
        std::fs::write(data_dir.join("tables/kinesislab/bad.sql"), "CREATE TABLE bad (a nope)").unwrap();
        let mut out = Vec::new();
        let err = list(&registry, &mut out).unwrap_err();
        assert_eq!(err.to_string(), "1 table definition(s) could not be read");
        assert!(text(out).contains("broken definitions (ignored until fixed):\n  "), "broken files are reported");
        std::fs::remove_file(data_dir.join("tables/kinesislab/bad.sql")).unwrap();

        let mut out = Vec::new();
        remove(&registry, "kinesislab.trips", &mut out).unwrap();
        assert_eq!(text(out), "removed kinesislab.trips\n");
        assert!(!added.exists());
        assert!(remove(&registry, "web.clicks", &mut Vec::new()).unwrap_err().to_string().contains("spillway.toml"));
        assert!(split_name(".x").is_err());
        assert_eq!(split_name("t").unwrap(), ("default", "t"));
    }

    #[test]
    fn place_reads_the_data_dir_and_tables_of_the_configuration() {
        let tmp = tempfile::tempdir().unwrap();
        let data_dir = tmp.path().join("from-config");
        std::fs::write(tmp.path().join("t.sql"), "CREATE TABLE cfg.t (a int)").unwrap();
        let config = tmp.path().join("spillway.toml");
        std::fs::write(&config, format!("[server]\ndata_dir = {:?}\n[[tables]]\nfile = \"t.sql\"\n", data_dir))
            .unwrap();
        let registry = Place { data_dir: None, config: Some(config.clone()) }.open().unwrap();
        assert_eq!(registry.dir(), Some(data_dir.join("tables").as_path()));
        assert_eq!(registry.lookup("cfg", "t").unwrap().source, tmp.path().join("t.sql").display().to_string());
        let other = tmp.path().join("flag");
        let registry = Place { data_dir: Some(other.clone()), config: Some(config) }.open().unwrap();
        assert_eq!(registry.dir(), Some(other.join("tables").as_path()), "--data-dir wins");
    }

    #[test]
    fn create_makes_an_iceberg_table_in_the_embedded_catalog() {
        let tmp = tempfile::tempdir().unwrap();
        let data_dir = tmp.path().join("data");
        // Seed 000's Terraform fields, one to one.
        let schema = tmp.path().join("readings.json");
        std::fs::write(
            &schema,
            r#"{"fields": [
                {"name": "sensor_id", "type": "string", "required": false},
                {"name": "timestamp", "type": "long", "required": false},
                {"name": "location", "type": "string", "required": false},
                {"name": "temperature", "type": "double", "required": false},
                {"name": "humidity", "type": "double", "required": false},
                {"name": "pressure", "type": "double", "required": false}
            ]}"#,
        )
        .unwrap();
        let request = CreateRequest {
            name: "firehosetos3demo.readings".into(),
            schema: schema.clone(),
            partition_by: vec!["location".into()],
            catalog: "firehosetos3demo".into(),
            if_not_exists: false,
        };
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let mut out = Vec::new();
        runtime.block_on(create(&local(&data_dir), &request, &mut out)).unwrap();
        let out = text(out);
        let table_dir = data_dir.canonicalize().unwrap().join("buckets/firehosetos3demo/firehosetos3demo.db/readings");
        assert!(
            out.starts_with(
                "created Iceberg table firehosetos3demo.readings (format v2) in catalog firehosetos3demo\n"
            ),
            "{out}"
        );
        assert!(out.contains(&format!("location: file://{}\n", table_dir.display())), "{out}");
        assert!(out.contains("partitioned by (identity): location\n"), "{out}");
        assert!(out.contains("\n  timestamp    long    optional\n"), "{out}");
        assert!(table_dir.join("metadata").is_dir());
        assert!(data_dir.join("catalog/catalog.db").is_file());

        let err = runtime.block_on(create(&local(&data_dir), &request, &mut Vec::new())).unwrap_err();
        assert!(format!("{err:#}").contains("already exists"), "{err:#}");
        let again = CreateRequest { if_not_exists: true, ..request };
        let mut out = Vec::new();
        runtime.block_on(create(&local(&data_dir), &again, &mut out)).unwrap();
        assert_eq!(text(out), "firehosetos3demo.readings already exists in catalog firehosetos3demo (unchanged)\n");

        let info = runtime
            .block_on(async {
                open_catalog(&local(&data_dir), "firehosetos3demo")
                    .await?
                    .table_info("firehosetos3demo", "readings")
                    .await
                    .map_err(anyhow::Error::from)
            })
            .unwrap();
        assert_eq!(info.columns.len(), 6);

        std::fs::write(&schema, r#"[{"name": "a", "type": "bigint"}]"#).unwrap();
        let bad = CreateRequest {
            name: "db.t".into(),
            schema,
            partition_by: vec![],
            catalog: "spillway".into(),
            if_not_exists: false,
        };
        let err = runtime.block_on(create(&local(&data_dir), &bad, &mut Vec::new())).unwrap_err();
        assert!(format!("{err:#}").contains("Iceberg calls it long"), "{err:#}");
        let bad_catalog = CreateRequest { catalog: "../x".into(), ..bad };
        assert!(runtime.block_on(create(&local(&data_dir), &bad_catalog, &mut Vec::new())).is_err());
    }

    #[test]
    fn compact_merges_the_small_files_of_an_iceberg_table() {
        let tmp = tempfile::tempdir().unwrap();
        let data_dir = tmp.path().join("data");
        let request = CompactRequest {
            name: "firehosetos3demo.readings".into(),
            catalog: "firehosetos3demo".into(),
            target_file_size: None,
            min_input_files: 2,
        };
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let err = runtime.block_on(compact(&local(&data_dir), &request, &mut Vec::new())).unwrap_err();
        assert!(err.to_string().starts_with("no Iceberg catalog in "), "{err:#}");
        assert!(!data_dir.exists(), "nothing created");

        let schema = tmp.path().join("readings.json");
        std::fs::write(&schema, r#"[{"name": "sensor_id", "type": "string"}, {"name": "timestamp", "type": "long"}]"#)
            .unwrap();
        let create_request = CreateRequest {
            name: request.name.clone(),
            schema,
            partition_by: vec![],
            catalog: request.catalog.clone(),
            if_not_exists: false,
        };
        runtime.block_on(create(&local(&data_dir), &create_request, &mut Vec::new())).unwrap();
        let catalog = runtime.block_on(open_catalog(&local(&data_dir), "firehosetos3demo")).unwrap();
        let mut out = Vec::new();
        runtime.block_on(compact(&local(&data_dir), &request, &mut out)).unwrap();
        assert_eq!(text(out), "nothing to compact in firehosetos3demo.readings (0 files)\n");

        let columns = runtime.block_on(catalog.table_info("firehosetos3demo", "readings")).unwrap().columns;
        let deserializer = spillway_format::json::Deserializer::default();
        for k in 0..4u64 {
            let mut converter = spillway_format::json::JsonConverter::new(&columns, &deserializer);
            for i in k * 10..k * 10 + 10 {
                converter.push_record(format!(r#"{{"sensor_id": "s{i}", "timestamp": {i}}}"#).as_bytes()).unwrap();
            }
            let batch = converter.flush().unwrap();
            let append = catalog.append("firehosetos3demo", "readings", vec![batch], "s", k * 10, k * 10 + 9);
            runtime.block_on(append).unwrap();
        }
        let mut out = Vec::new();
        runtime.block_on(compact(&local(&data_dir), &request, &mut out)).unwrap();
        let out = text(out);
        assert!(
            out.starts_with("compacted firehosetos3demo.readings: 4 files -> 1 (4 rewritten, 1 written, 40 rows, "),
            "{out}"
        );
        let snapshot = out.trim_end().rsplit_once("), snapshot ").map(|(_, id)| id.parse::<i64>());
        assert!(matches!(snapshot, Some(Ok(id)) if id > 0), "{out}");
        let position = runtime.block_on(catalog.committed_position("firehosetos3demo", "readings", "s")).unwrap();
        assert_eq!(position, Some(39), "the appends' WAL position survives");
        assert!(out.contains(" KiB -> ") && out.ends_with('\n'), "{out}");

        let mut out = Vec::new();
        runtime.block_on(compact(&local(&data_dir), &request, &mut out)).unwrap();
        assert_eq!(text(out), "nothing to compact in firehosetos3demo.readings (1 file)\n");
        let missing = CompactRequest { name: "firehosetos3demo.nope".into(), ..request };
        let err = runtime.block_on(compact(&local(&data_dir), &missing, &mut Vec::new())).unwrap_err();
        assert!(format!("{err:#}").contains("was not found"), "{err:#}");
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(5 * 1024 * 1024 * 1024), "5.0 GiB");
    }
}
