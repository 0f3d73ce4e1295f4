//! The typed plan of an `IcebergDestinationConfiguration` (reference §5.10, §14).
//!
//! [`IcebergPlan::from_config`] checks what the model's shapes cannot (the catalog ARN forms, the
//! table list, partition specs, retry and buffering ranges) and resolves where things live:
//! - the catalog: an S3 Tables table bucket (`arn:aws:s3tables:<region>:<acct>:bucket/NAME`, or
//!   Glue's `arn:aws:glue:<region>:<acct>:catalog/s3tablescatalog/NAME`) is the catalog `NAME`; the
//!   account's Glue Data Catalog (`arn:aws:glue:<region>:<acct>:catalog`) is `AwsDataCatalog`, the
//!   name Athena gives it;
//! - the warehouse: `WarehouseLocation` (`s3://bucket/path`) when given, else the catalog's own
//!   bucket;
//! - errors and backups: the `S3Configuration` lane (its bucket, `Prefix`, `ErrorOutputPrefix`),
//!   with a table's `S3ErrorOutputPrefix` in place of the lane's error prefix for that table.
//!
//! Pure: no I/O. Called at create / update time (errors reach the client as
//! `InvalidArgumentException`) and when a supervisor starts.

use crate::error::ApiError;
use crate::plan::S3Plan;
use serde_json::Value;

/// Firehose's error output type of Iceberg failures.
pub const ICEBERG_FAILED: &str = "iceberg-failed";

const MIB: usize = 1024 * 1024;

/// Where the tables are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogRef {
    /// The catalog's name (the S3 Tables table bucket, or `AwsDataCatalog`).
    pub name: String,
    /// `CatalogARN` as configured.
    pub arn: String,
    /// `WarehouseLocation` as (bucket, path inside it), if configured.
    pub warehouse: Option<(String, String)>,
}

/// One `DestinationTableConfiguration`.
#[derive(Debug, Clone, PartialEq)]
pub struct TableTarget {
    pub database: String,
    pub table: String,
    pub unique_keys: Vec<String>,
    /// `PartitionSpec.Identity[].SourceName`.
    pub partition_identity: Vec<String>,
    /// `S3ErrorOutputPrefix`: the error prefix of this table's failed records, parsed (it takes
    /// the expressions of an `ErrorOutputPrefix`).
    pub error_output_prefix: Option<crate::prefix::PrefixPlan>,
}

/// The validated Iceberg destination of a stream.
#[derive(Debug, Clone, PartialEq)]
pub struct IcebergPlan {
    pub catalog: CatalogRef,
    pub tables: Vec<TableTarget>,
    /// `BufferingHints`, in bytes and seconds (defaults 5 MiB, 300 s).
    pub buffer_bytes: usize,
    pub interval_secs: u64,
    /// `RetryOptions.DurationInSeconds` (0–7200, default 300).
    pub retry_duration_secs: u64,
    /// `S3BackupMode: AllData` (else FailedDataOnly).
    pub backup_all: bool,
    pub schema_evolution: bool,
    pub table_creation: bool,
    pub append_only: bool,
    /// `S3Configuration`: the bucket of error records and backups.
    pub s3: S3Plan,
}

fn str_of<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

fn enabled(config: &Value, member: &str) -> bool {
    config.get(member).and_then(|c| c.get("Enabled")).and_then(Value::as_bool) == Some(true)
}

/// The catalog named by a `CatalogARN`.
pub fn parse_catalog_arn(arn: &str) -> Result<String, ApiError> {
    let bad = || {
        ApiError::invalid_argument(format!(
            "CatalogARN {arn} is not a Glue Data Catalog ARN (arn:aws:glue:<region>:<account>:catalog, optionally \
             /s3tablescatalog/<table-bucket>) or an S3 Tables table bucket ARN (arn:aws:s3tables:<region>:<account>:bucket/<name>)."
        ))
    };
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let [_, _partition, service, _region, account, resource] = parts.as_slice() else { return Err(bad()) };
    if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let valid_bucket = |name: &str| {
        (3..=63).contains(&name.len())
            && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    match (*service, *resource) {
        ("glue", "catalog") => Ok("AwsDataCatalog".to_string()),
        ("glue", r) => match r.strip_prefix("catalog/s3tablescatalog/") {
            Some(name) if valid_bucket(name) => Ok(name.to_string()),
            _ => Err(bad()),
        },
        ("s3tables", r) => match r.strip_prefix("bucket/") {
            Some(name) if valid_bucket(name) => Ok(name.to_string()),
            _ => Err(bad()),
        },
        _ => Err(bad()),
    }
}

fn name_ok(name: &str) -> bool {
    (1..=255).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_')
}

impl IcebergPlan {
    /// The plan of an `IcebergDestinationConfiguration` (Create shape, or a merged update).
    pub fn from_config(config: &Value) -> Result<IcebergPlan, ApiError> {
        let catalog_cfg = config
            .get("CatalogConfiguration")
            .ok_or_else(|| ApiError::invalid_argument("CatalogConfiguration is required."))?;
        let arn = str_of(catalog_cfg, "CatalogARN")
            .ok_or_else(|| ApiError::invalid_argument("CatalogConfiguration.CatalogARN is required."))?;
        let name = parse_catalog_arn(arn)?;
        let warehouse = match str_of(catalog_cfg, "WarehouseLocation") {
            None => None,
            Some(w) => {
                let rest = w.strip_prefix("s3://").ok_or_else(|| {
                    ApiError::invalid_argument(format!(
                        "CatalogConfiguration.WarehouseLocation must be an s3:// location; got {w}."
                    ))
                })?;
                let (bucket, path) = rest.split_once('/').unwrap_or((rest, ""));
                if bucket.is_empty() {
                    return Err(ApiError::invalid_argument(format!(
                        "CatalogConfiguration.WarehouseLocation has no bucket: {w}."
                    )));
                }
                Some((bucket.to_string(), path.trim_end_matches('/').to_string()))
            }
        };
        let mut tables: Vec<TableTarget> = Vec::new();
        for t in config.get("DestinationTableConfigurationList").and_then(Value::as_array).into_iter().flatten() {
            let database = str_of(t, "DestinationDatabaseName").unwrap_or_default();
            let table = str_of(t, "DestinationTableName").unwrap_or_default();
            for (member, value) in [("DestinationDatabaseName", database), ("DestinationTableName", table)] {
                if !name_ok(value) {
                    return Err(ApiError::invalid_argument(format!(
                        "DestinationTableConfiguration.{member} must be 1 to 255 characters of [a-zA-Z0-9._]; got '{value}'."
                    )));
                }
            }
            if tables.iter().any(|x| x.database == database && x.table == table) {
                return Err(ApiError::invalid_argument(format!(
                    "DestinationTableConfigurationList names {database}.{table} twice."
                )));
            }
            let strings = |v: Option<&Value>, key: &str| -> Vec<String> {
                v.and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|x| if key.is_empty() { x.as_str() } else { str_of(x, key) })
                    .map(str::to_string)
                    .collect()
            };
            let partition_identity = strings(t.get("PartitionSpec").and_then(|p| p.get("Identity")), "SourceName");
            tables.push(TableTarget {
                database: database.to_string(),
                table: table.to_string(),
                unique_keys: strings(t.get("UniqueKeys"), ""),
                partition_identity,
                error_output_prefix: match str_of(t, "S3ErrorOutputPrefix").filter(|p| !p.is_empty()) {
                    None => None,
                    Some(p) => Some(crate::prefix::PrefixPlan::parse(crate::prefix::PrefixOptions {
                        prefix: None,
                        error_output_prefix: Some(p),
                        custom_time_zone: None,
                        dynamic_partitioning: false,
                    })?),
                },
            });
        }
        let hints = config.get("BufferingHints");
        let size = hints.and_then(|h| h.get("SizeInMBs")).and_then(Value::as_u64).unwrap_or(5);
        let interval = hints.and_then(|h| h.get("IntervalInSeconds")).and_then(Value::as_u64).unwrap_or(300);
        if !(1..=128).contains(&size) || interval > 900 {
            return Err(ApiError::invalid_argument(
                "BufferingHints must be 1 to 128 MiB and 0 to 900 seconds for Iceberg destinations.",
            ));
        }
        let retry =
            config.get("RetryOptions").and_then(|r| r.get("DurationInSeconds")).and_then(Value::as_u64).unwrap_or(300);
        if retry > 7200 {
            return Err(ApiError::invalid_argument("RetryOptions.DurationInSeconds must be between 0 and 7200."));
        }
        let backup_all = match str_of(config, "S3BackupMode") {
            None | Some("FailedDataOnly") => false,
            Some("AllData") => true,
            Some(other) => {
                return Err(ApiError::invalid_argument(format!(
                    "S3BackupMode must be FailedDataOnly or AllData; got {other}."
                )));
            }
        };
        let s3_config =
            config.get("S3Configuration").ok_or_else(|| ApiError::invalid_argument("S3Configuration is required."))?;
        let s3 = S3Plan::from_config(s3_config)?;
        let table_creation = enabled(config, "TableCreationConfiguration");
        if (table_creation || enabled(config, "SchemaEvolutionConfiguration"))
            && tables.is_empty()
            && warehouse.is_none()
        {
            return Err(ApiError::invalid_argument(
                "CatalogConfiguration.WarehouseLocation is required when table creation or schema evolution is enabled.",
            ));
        }
        Ok(IcebergPlan {
            catalog: CatalogRef { name, arn: arn.to_string(), warehouse },
            tables,
            buffer_bytes: size as usize * MIB,
            interval_secs: interval,
            retry_duration_secs: retry,
            backup_all,
            schema_evolution: enabled(config, "SchemaEvolutionConfiguration"),
            table_creation,
            append_only: config.get("AppendOnly").and_then(Value::as_bool).unwrap_or(false),
            s3,
        })
    }

    /// The configuration of a table, if it is in `DestinationTableConfigurationList`.
    pub fn table(&self, database: &str, table: &str) -> Option<&TableTarget> {
        self.tables.iter().find(|t| t.database == database && t.table == table)
    }

    /// The configured table of a record that names none: the single `DestinationTableConfiguration`.
    pub fn single_table(&self) -> Option<&TableTarget> {
        match self.tables.as_slice() {
            [only] => Some(only),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn seed000() -> Value {
        json!({
            "RoleARN": "arn:aws:iam::123456789012:role/firehose",
            "CatalogConfiguration": {"CatalogARN": "arn:aws:glue:us-east-1:123456789012:catalog/s3tablescatalog/iot-table-bucket"},
            "DestinationTableConfigurationList": [{
                "DestinationDatabaseName": "iot_namespace", "DestinationTableName": "sensor_readings",
                "S3ErrorOutputPrefix": "errors/iceberg-failed/"
            }],
            "BufferingHints": {"SizeInMBs": 5, "IntervalInSeconds": 300},
            "S3Configuration": {"RoleARN": "arn:aws:iam::123456789012:role/firehose", "BucketARN": "arn:aws:s3:::errors-bucket"}
        })
    }

    #[test]
    fn seed000_configuration() {
        let p = IcebergPlan::from_config(&seed000()).unwrap();
        assert_eq!(p.catalog.name, "iot-table-bucket");
        let t = p.single_table().unwrap();
        assert_eq!((t.database.as_str(), t.table.as_str()), ("iot_namespace", "sensor_readings"));
        let prefix = t.error_output_prefix.as_ref().unwrap();
        // A static prefix gets `<type>/yyyy/MM/dd/HH/`, as an S3 ErrorOutputPrefix does.
        let evaluated = prefix.evaluate_error_prefix(chrono::Utc::now(), ICEBERG_FAILED, 1);
        assert!(evaluated.starts_with("errors/iceberg-failed/iceberg-failed/2"), "{evaluated}");
        assert_eq!((p.buffer_bytes, p.interval_secs, p.retry_duration_secs), (5 * MIB, 300, 300));
        assert_eq!(p.s3.main.bucket_arn, "arn:aws:s3:::errors-bucket");
        assert!(!p.backup_all && !p.append_only);
    }

    #[test]
    fn catalog_arns() {
        assert_eq!(parse_catalog_arn("arn:aws:s3tables:us-east-1:123456789012:bucket/my-tables").unwrap(), "my-tables");
        assert_eq!(parse_catalog_arn("arn:aws:glue:us-east-1:123456789012:catalog").unwrap(), "AwsDataCatalog");
        for bad in [
            "arn:aws:glue:us-east-1:1234:catalog",
            "arn:aws:s3:::bucket",
            "arn:aws:s3tables:us-east-1:123456789012:bucket/UP",
        ] {
            assert!(parse_catalog_arn(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn refuses_bad_members() {
        let cases: [(&str, Value, &str); 5] = [
            ("/DestinationTableConfigurationList/0/DestinationTableName", json!("bad-name"), "DestinationTableName"),
            ("/RetryOptions", json!({"DurationInSeconds": 7201}), "7200"),
            ("/S3BackupMode", json!("Everything"), "S3BackupMode"),
            ("/CatalogConfiguration/WarehouseLocation", json!("file:///x"), "s3://"),
            ("/BufferingHints", json!({"SizeInMBs": 129, "IntervalInSeconds": 1}), "128"),
        ];
        for (pointer, value, fragment) in cases {
            let mut c = seed000();
            let (parent, key) = pointer.rsplit_once('/').unwrap();
            let target = if parent.is_empty() { &mut c } else { c.pointer_mut(parent).unwrap() };
            target[key] = value;
            let e = IcebergPlan::from_config(&c).unwrap_err();
            assert!(e.message.contains(fragment), "{pointer}: {}", e.message);
        }
    }
}
