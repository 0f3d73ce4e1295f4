//! `spillway.toml`: the server's own settings (listen address, data dir, identity, WAL limits,
//! credentials, stores, delivery limits, the functions behind LambdaArns). Stream definitions are not here: they are created through the API (DESIGN.md §2).
//!
//! Unknown keys are errors, so a typo never silently falls back to a default.

use anyhow::Context;
use serde::Deserialize;
use spillway_destination::S3Config;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub wal: WalConfig,
    #[serde(default)]
    pub auth: AuthConfig,
    /// One S3-compatible store for every bucket (otherwise buckets are folders under the data dir).
    pub s3: Option<S3Config>,
    /// Per-bucket S3-compatible stores, by bucket name; they win over `[s3]`.
    #[serde(default)]
    pub buckets: HashMap<String, S3Config>,
    #[serde(default)]
    pub delivery: DeliveryConfig,
    /// Functions of Lambda processors, by LambdaArn or function name (`[functions."..."]`).
    #[serde(default)]
    pub functions: spillway_pipeline::processors::functions::FunctionsConfig,
    /// Table definitions standing in for the Glue tables of `SchemaConfiguration` (`[[tables]]`:
    /// `file = "..."` or `ddl = "..."`, optional `database`); they win over `<data-dir>/tables/`.
    #[serde(default)]
    pub tables: Vec<spillway_format::table::TableSource>,
    /// Iceberg tables of the embedded catalog, created at start-up when missing
    /// (`[[iceberg_tables]]`, the same as `spillway tables create`).
    #[serde(default)]
    pub iceberg_tables: Vec<IcebergTableConfig>,
    /// Iceberg REST catalogs by catalog name (`[iceberg_catalogs.NAME]`: `uri`, `warehouse`,
    /// `sigv4 = {...}` or `token`): a stream whose CatalogARN names NAME (the S3 Tables table
    /// bucket, or `AwsDataCatalog`) writes there instead of the embedded catalog.
    #[serde(default)]
    pub iceberg_catalogs: HashMap<String, spillway_destination::iceberg::rest::RestConfig>,
}

/// One `[[iceberg_tables]]` entry: seed 000's Terraform schema fields, one to one.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct IcebergTableConfig {
    /// `DATABASE.TABLE`.
    pub name: String,
    /// The catalog: the S3 Tables table bucket of the streams' CatalogARN, or `AwsDataCatalog`.
    #[serde(default = "default_catalog")]
    pub catalog: String,
    pub fields: Vec<spillway_destination::iceberg::FieldSpec>,
    /// Identity partitions on these top-level columns.
    #[serde(default)]
    pub partition_by: Vec<String>,
}

impl Config {
    /// The Iceberg catalogs of a server with this configuration and data dir.
    pub fn catalogs(&self, data_dir: &Path) -> spillway_destination::iceberg::catalogs::Catalogs {
        spillway_destination::iceberg::catalogs::Catalogs::new(
            data_dir,
            self.iceberg_catalogs.clone(),
            spillway_destination::iceberg::storage::ObjectStorageFactory::new(self.s3.clone(), self.buckets.clone()),
        )
    }
}

fn default_catalog() -> String {
    "AwsDataCatalog".into()
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryConfig {
    /// Deflate level (0..=9) of GZIP and ZIP objects. Default 6.
    pub gzip_level: Option<u32>,
    /// How long a graceful shutdown may spend delivering buffered records, in seconds. Default 10.
    pub shutdown_timeout_secs: Option<u64>,
    /// Active partitions per stream with dynamic partitioning. Default 500 (Firehose's default).
    pub active_partitions_limit: Option<usize>,
    /// Memory of one stream's partition buffers, in bytes, before the largest spill to disk.
    /// Default 64 MiB.
    pub partition_memory_bytes: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub region: Option<String>,
    pub account_id: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WalConfig {
    /// Disk quota of the WAL in bytes; ingest answers "Slow down." beyond it. Default 8 GiB.
    pub max_bytes: Option<u64>,
    /// Size of one segment file in bytes. Default 64 MiB.
    pub segment_bytes: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    #[serde(default)]
    pub credentials: Vec<Credential>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credential {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl Config {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        let mut config: Config =
            toml::from_str(&text).with_context(|| format!("invalid configuration in {}", path.display()))?;
        // Relative paths in `[[tables]]` are relative to the folder of spillway.toml, like those of `[functions]`.
        let base_dir = path.parent().unwrap_or(Path::new("."));
        for table in &mut config.tables {
            if let Some(file) = &mut table.file
                && file.is_relative()
            {
                *file = base_dir.join(&*file);
            }
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_section_and_rejects_typos() {
        let c: Config = toml::from_str(
            r#"
            [server]
            listen = "127.0.0.1:1"
            region = "eu-west-1"
            [wal]
            max_bytes = 1048576
            [[auth.credentials]]
            access_key_id = "AKID"
            secret_access_key = "secret"
            [s3]
            endpoint = "http://127.0.0.1:8333"
            [buckets.raw]
            endpoint = "http://127.0.0.1:9000"
            [delivery]
            gzip_level = 1
            active_partitions_limit = 20
            [functions."arn:aws:lambda:us-east-1:123456789012:function:f"]
            url = "http://127.0.0.1:9001"
            "#,
        )
        .unwrap();
        assert_eq!(c.server.region.as_deref(), Some("eu-west-1"));
        assert_eq!(c.wal.max_bytes, Some(1_048_576));
        assert_eq!(c.auth.credentials[0].access_key_id, "AKID");
        assert_eq!(c.s3.unwrap().endpoint.as_deref(), Some("http://127.0.0.1:8333"));
        assert_eq!(c.buckets["raw"].endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(c.delivery.gzip_level, Some(1));
        assert_eq!(c.delivery.active_partitions_limit, Some(20));
        assert_eq!(c.functions.len(), 1);
        assert!(toml::from_str::<Config>("[server]\nlisten_addr = \"x\"").is_err());
    }

    #[test]
    fn tables_resolve_relative_files_against_the_configuration_folder() {
        use spillway_format::table::TableSource;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spillway.toml");
        std::fs::write(
            &path,
            r#"
            [[tables]]
            database = "kinesislab"
            file = "tables/nyctaxitrips.sql"

            [[tables]]
            file = "/etc/spillway/orders.json"

            [[tables]]
            database = "web"
            ddl = "CREATE TABLE clicks (url string)"
            "#,
        )
        .unwrap();
        let c = Config::load(&path).unwrap();
        assert_eq!(
            c.tables,
            [
                TableSource {
                    database: Some("kinesislab".into()),
                    file: Some(dir.path().join("tables/nyctaxitrips.sql")),
                    ddl: None
                },
                TableSource { database: None, file: Some("/etc/spillway/orders.json".into()), ddl: None },
                TableSource {
                    database: Some("web".into()),
                    file: None,
                    ddl: Some("CREATE TABLE clicks (url string)".into())
                },
            ]
        );
        assert!(toml::from_str::<Config>("").unwrap().tables.is_empty());
        assert!(toml::from_str::<Config>("[[tables]]\npath = \"t.sql\"").is_err(), "unknown keys are errors");
    }
}
