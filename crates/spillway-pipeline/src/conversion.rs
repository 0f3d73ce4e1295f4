//! Record format conversion of a stream (`DataFormatConversionConfiguration`, reference §13):
//! validated once into a [`ConversionPlan`] at CreateDeliveryStream / UpdateDestination time and
//! again when a supervisor starts, then run per object by the supervisor
//! ([`spillway_format::convert::convert`]).
//!
//! Invariants:
//! - a plan exists only for a configuration the real service would accept: every member present
//!   and valid, the table found (its `SchemaConfiguration` resolved against spillway's table
//!   definitions instead of Glue); anything else is an `InvalidArgumentException`;
//! - the table is resolved when the plan is built: a changed definition applies from the next
//!   UpdateDestination or restart (Glue's `VersionId: LATEST` is "the newest definition spillway has
//!   read");
//! - records that cannot be converted become `format-conversion-failed` error records (§10) with
//!   the original record as `rawData`.

use base64::Engine;
use serde_json::{Map, Value, json};
use spillway_format::convert::{Conversion, OutputFormat, ParquetCompression, ParquetOptions};
use spillway_format::json::{ConversionError, Deserializer, TimestampFormat};
use spillway_format::orc::{OrcCompression, OrcFormatVersion, OrcOptions};
use spillway_format::table::{TableDefinition, TableRegistry};
use spillway_model::error::ApiError;
use std::collections::HashMap;
use std::sync::Arc;

/// `!{firehose:error-output-type}` of records that could not be converted.
pub const FORMAT_CONVERSION_FAILED: &str = "format-conversion-failed";

const MIB: i64 = 1 << 20;

/// The `dataCatalogTable` of error records: the table as the configuration names it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DataCatalogTable {
    pub catalog_id: String,
    pub database_name: String,
    pub table_name: String,
    pub region: String,
    pub version_id: String,
    pub catalog_arn: Option<String>,
}

/// A stream's validated record format conversion.
#[derive(Debug)]
pub struct ConversionPlan {
    pub conversion: Conversion,
    pub table: Arc<TableDefinition>,
    pub catalog: DataCatalogTable,
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::invalid_argument(message)
}

fn object<'a>(v: &'a Value, path: &str) -> Result<&'a Map<String, Value>, ApiError> {
    v.as_object().ok_or_else(|| invalid(format!("{path} must be an object.")))
}

fn int(m: &Map<String, Value>, key: &str, path: &str) -> Result<Option<i64>, ApiError> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_i64().map(Some).ok_or_else(|| invalid(format!("{path}.{key} must be an integer."))),
    }
}

fn float(m: &Map<String, Value>, key: &str, path: &str) -> Result<Option<f64>, ApiError> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_f64().map(Some).ok_or_else(|| invalid(format!("{path}.{key} must be a number."))),
    }
}

fn boolean(m: &Map<String, Value>, key: &str, path: &str) -> Result<Option<bool>, ApiError> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_bool().map(Some).ok_or_else(|| invalid(format!("{path}.{key} must be a boolean."))),
    }
}

fn string<'a>(m: &'a Map<String, Value>, key: &str, path: &str) -> Result<Option<&'a str>, ApiError> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_str().map(Some).ok_or_else(|| invalid(format!("{path}.{key} must be a string."))),
    }
}

/// A member constraint of the model (`min`/`max`), with the model's wording.
fn at_least(value: Option<i64>, min: i64, member: &str) -> Result<(), ApiError> {
    match value {
        Some(v) if v < min => Err(invalid(format!("{member} must be at least {min}; got {v}."))),
        _ => Ok(()),
    }
}

fn fraction(value: Option<f64>, member: &str) -> Result<(), ApiError> {
    match value {
        Some(v) if !(0.0..=1.0).contains(&v) => Err(invalid(format!("{member} must be between 0 and 1; got {v}."))),
        _ => Ok(()),
    }
}

/// Exactly one member of a union shape (`Deserializer`, `Serializer`).
fn one_of<'a>(m: &'a Map<String, Value>, members: &[&str], path: &str) -> Result<(&'a str, &'a Value), ApiError> {
    let present: Vec<(&String, &Value)> =
        m.iter().filter(|(k, v)| members.contains(&k.as_str()) && !v.is_null()).collect();
    match present.as_slice() {
        [(k, v)] => Ok((k.as_str(), v)),
        [] => Err(invalid(format!("{path} must specify one of {}.", members.join(", ")))),
        _ => Err(invalid(format!("{path} must specify only one of {}.", members.join(", ")))),
    }
}

fn deserializer(input: &Value) -> Result<Deserializer, ApiError> {
    let path = "DataFormatConversionConfiguration.InputFormatConfiguration";
    let d = object(input, path)?
        .get("Deserializer")
        .ok_or_else(|| invalid(format!("{path}.Deserializer is required when data format conversion is enabled.")))?;
    let d = object(d, &format!("{path}.Deserializer"))?;
    let (which, options) = one_of(d, &["OpenXJsonSerDe", "HiveJsonSerDe"], &format!("{path}.Deserializer"))?;
    let o = object(options, which)?;
    if which == "OpenXJsonSerDe" {
        let mut mappings = HashMap::new();
        if let Some(m) = o.get("ColumnToJsonKeyMappings").filter(|v| !v.is_null()) {
            for (column, key) in object(m, "ColumnToJsonKeyMappings")? {
                let key = key.as_str().filter(|k| !k.is_empty()).ok_or_else(|| {
                    invalid(format!(
                        "Invalid deserializer option(s): ColumnToJsonKeyMappings.{column} must be a non-empty string."
                    ))
                })?;
                if column.is_empty() || column.chars().any(char::is_whitespace) {
                    return Err(invalid(format!(
                        "Invalid deserializer option(s): ColumnToJsonKeyMappings has an invalid column name '{column}'."
                    )));
                }
                mappings.insert(column.to_lowercase(), key.to_string());
            }
        }
        return Ok(Deserializer::OpenX {
            case_insensitive: boolean(o, "CaseInsensitive", which)?.unwrap_or(true),
            column_to_json_key: mappings,
            dots_to_underscores: boolean(o, "ConvertDotsInJsonKeysToUnderscores", which)?.unwrap_or(false),
        });
    }
    let mut formats = Vec::new();
    if let Some(list) = o.get("TimestampFormats").filter(|v| !v.is_null()) {
        let list = list.as_array().ok_or_else(|| invalid("HiveJsonSerDe.TimestampFormats must be a list."))?;
        for f in list {
            let text =
                f.as_str().ok_or_else(|| invalid("HiveJsonSerDe.TimestampFormats must be a list of strings."))?;
            formats.push(
                TimestampFormat::parse(text)
                    .map_err(|e| invalid(format!("Invalid deserializer option(s): TimestampFormats: {e}.")))?,
            );
        }
    }
    Ok(Deserializer::Hive { timestamp_formats: formats })
}

fn serializer(output: &Value) -> Result<OutputFormat, ApiError> {
    let path = "DataFormatConversionConfiguration.OutputFormatConfiguration";
    let s = object(output, path)?
        .get("Serializer")
        .ok_or_else(|| invalid(format!("{path}.Serializer is required when data format conversion is enabled.")))?;
    let s = object(s, &format!("{path}.Serializer"))?;
    let (which, options) = one_of(s, &["ParquetSerDe", "OrcSerDe"], &format!("{path}.Serializer"))?;
    let o = object(options, which)?;
    if which == "ParquetSerDe" {
        let block = int(o, "BlockSizeBytes", which)?;
        let page = int(o, "PageSizeBytes", which)?;
        let padding = int(o, "MaxPaddingBytes", which)?;
        at_least(block, 64 * MIB, "ParquetSerDe.BlockSizeBytes")?;
        at_least(page, 64 * 1024, "ParquetSerDe.PageSizeBytes")?;
        at_least(padding, 0, "ParquetSerDe.MaxPaddingBytes")?;
        let compression = match string(o, "Compression", which)? {
            None | Some("SNAPPY") => ParquetCompression::Snappy,
            Some("GZIP") => ParquetCompression::Gzip,
            Some("UNCOMPRESSED") => ParquetCompression::Uncompressed,
            Some(other) => {
                return Err(invalid(format!(
                    "ParquetSerDe.Compression must be one of UNCOMPRESSED, GZIP, SNAPPY; got {other}."
                )));
            }
        };
        let writer_version_2 = match string(o, "WriterVersion", which)? {
            None | Some("V1") => false,
            Some("V2") => true,
            Some(other) => {
                return Err(invalid(format!("ParquetSerDe.WriterVersion must be one of V1, V2; got {other}.")));
            }
        };
        let d = ParquetOptions::default();
        return Ok(OutputFormat::Parquet(ParquetOptions {
            compression,
            block_size_bytes: block.map_or(d.block_size_bytes, |b| b as usize),
            page_size_bytes: page.map_or(d.page_size_bytes, |p| p as usize),
            enable_dictionary: boolean(o, "EnableDictionaryCompression", which)?.unwrap_or(d.enable_dictionary),
            max_padding_bytes: padding.map_or(0, |p| p as usize),
            writer_version_2,
        }));
    }
    let stripe = int(o, "StripeSizeBytes", which)?;
    let block = int(o, "BlockSizeBytes", which)?;
    let stride = int(o, "RowIndexStride", which)?;
    at_least(stripe, 8 * MIB, "OrcSerDe.StripeSizeBytes")?;
    at_least(block, 64 * MIB, "OrcSerDe.BlockSizeBytes")?;
    at_least(stride, 1000, "OrcSerDe.RowIndexStride")?;
    let tolerance = float(o, "PaddingTolerance", which)?;
    let fpp = float(o, "BloomFilterFalsePositiveProbability", which)?;
    let threshold = float(o, "DictionaryKeyThreshold", which)?;
    fraction(tolerance, "OrcSerDe.PaddingTolerance")?;
    fraction(fpp, "OrcSerDe.BloomFilterFalsePositiveProbability")?;
    fraction(threshold, "OrcSerDe.DictionaryKeyThreshold")?;
    let compression = match string(o, "Compression", which)? {
        None | Some("SNAPPY") => OrcCompression::Snappy,
        Some("ZLIB") => OrcCompression::Zlib,
        Some("NONE") => OrcCompression::None,
        Some(other) => {
            return Err(invalid(format!("OrcSerDe.Compression must be one of NONE, ZLIB, SNAPPY; got {other}.")));
        }
    };
    let format_version = match string(o, "FormatVersion", which)? {
        None | Some("V0_12") => OrcFormatVersion::V0_12,
        Some("V0_11") => OrcFormatVersion::V0_11,
        Some(other) => {
            return Err(invalid(format!("OrcSerDe.FormatVersion must be one of V0_11, V0_12; got {other}.")));
        }
    };
    let mut bloom_filter_columns = Vec::new();
    if let Some(list) = o.get("BloomFilterColumns").filter(|v| !v.is_null()) {
        for c in list.as_array().ok_or_else(|| invalid("OrcSerDe.BloomFilterColumns must be a list."))? {
            let c = c.as_str().ok_or_else(|| invalid("OrcSerDe.BloomFilterColumns must be a list of strings."))?;
            bloom_filter_columns.push(c.to_lowercase());
        }
    }
    let d = OrcOptions::default();
    Ok(OutputFormat::Orc(OrcOptions {
        compression,
        stripe_size_bytes: stripe.map_or(d.stripe_size_bytes, |s| s as usize),
        row_index_stride: stride.map_or(d.row_index_stride, |s| s as u32),
        format_version,
        bloom_filter_columns,
        bloom_filter_fpp: fpp.unwrap_or(d.bloom_filter_fpp),
        dictionary_key_threshold: threshold.unwrap_or(d.dictionary_key_threshold),
        enable_padding: boolean(o, "EnablePadding", which)?.unwrap_or(d.enable_padding),
        padding_tolerance: tolerance.unwrap_or(d.padding_tolerance),
        ..d
    }))
}

impl ConversionPlan {
    /// The plan of an Extended S3 configuration's `DataFormatConversionConfiguration`; `None` when
    /// there is none or it is `Enabled: false`. `account_id` is the default `CatalogId`.
    pub fn from_config(
        config: &Value,
        tables: &TableRegistry,
        region: &str,
        account_id: &str,
    ) -> Result<Option<ConversionPlan>, ApiError> {
        let Some(dfc) = config.get("DataFormatConversionConfiguration").filter(|v| !v.is_null()) else {
            return Ok(None);
        };
        let path = "DataFormatConversionConfiguration";
        let m = object(dfc, path)?;
        if boolean(m, "Enabled", path)? == Some(false) {
            return Ok(None);
        }
        let required = |member: &str| {
            m.get(member)
                .filter(|v| !v.is_null())
                .ok_or_else(|| invalid(format!("{path}.{member} is required when data format conversion is enabled.")))
        };
        let schema = object(required("SchemaConfiguration")?, "SchemaConfiguration")?;
        let input = required("InputFormatConfiguration")?;
        let output = required("OutputFormatConfiguration")?;
        let p = "SchemaConfiguration";
        let database = string(schema, "DatabaseName", p)?
            .filter(|s| !s.is_empty())
            .ok_or_else(|| invalid("SchemaConfiguration.DatabaseName is required."))?;
        let table_name = string(schema, "TableName", p)?
            .filter(|s| !s.is_empty())
            .ok_or_else(|| invalid("SchemaConfiguration.TableName is required."))?;
        let deserializer = deserializer(input)?;
        let output = serializer(output)?;
        let table = tables.lookup(database, table_name).map_err(|e| {
            invalid(format!(
                "Failed to get the table {database}.{table_name} (DataFormatConversion.EntityNotFound): {e}"
            ))
        })?;
        let catalog = DataCatalogTable {
            catalog_id: string(schema, "CatalogId", p)?.unwrap_or(account_id).to_string(),
            database_name: database.to_string(),
            table_name: table_name.to_string(),
            region: string(schema, "Region", p)?.unwrap_or(region).to_string(),
            version_id: string(schema, "VersionId", p)?.unwrap_or("LATEST").to_string(),
            catalog_arn: None,
        };
        let conversion = Conversion { columns: table.columns.clone(), deserializer, output };
        Ok(Some(ConversionPlan { conversion, table, catalog }))
    }

    /// Appends the `format-conversion-failed` error record (§10) of one record to `line`.
    pub fn write_error_line(
        &self,
        line: &mut String,
        error: &ConversionError,
        arrival_ms: i64,
        ending_ms: i64,
        raw: &[u8],
    ) {
        let value = json!({
            "attemptsMade": 1,
            "arrivalTimestamp": arrival_ms,
            "lastErrorCode": error.code,
            "lastErrorMessage": error.message,
            "attemptEndingTimestamp": ending_ms,
            "rawData": base64::engine::general_purpose::STANDARD.encode(raw),
            // DirectPut records have no Kinesis sequence numbers.
            "sequenceNumber": null,
            "subSequenceNumber": null,
            "dataCatalogTable": self.catalog,
        });
        line.push_str(&value.to_string());
        line.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> (tempfile::TempDir, TableRegistry) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("shop")).unwrap();
        std::fs::write(
            dir.path().join("shop/orders.sql"),
            "CREATE TABLE orders (id bigint, ts timestamp) PARTITIONED BY (dt string)",
        )
        .unwrap();
        let reg = TableRegistry::new(Some(dir.path().to_path_buf()), &[]).unwrap();
        (dir, reg)
    }

    fn config(dfc: Value) -> Value {
        json!({"BucketARN": "arn:aws:s3:::b", "DataFormatConversionConfiguration": dfc})
    }

    fn base() -> Value {
        json!({
            "SchemaConfiguration": {"DatabaseName": "Shop", "TableName": "ORDERS"},
            "InputFormatConfiguration": {"Deserializer": {"OpenXJsonSerDe": {}}},
            "OutputFormatConfiguration": {"Serializer": {"ParquetSerDe": {}}},
        })
    }

    #[test]
    fn resolves_the_table_and_the_defaults() {
        let (_dir, reg) = registry();
        let plan = ConversionPlan::from_config(&config(base()), &reg, "eu-west-1", "111122223333").unwrap().unwrap();
        assert_eq!(plan.conversion.columns.len(), 2, "partition columns are not written");
        assert_eq!(plan.catalog.catalog_id, "111122223333");
        assert_eq!(plan.catalog.region, "eu-west-1");
        assert_eq!(plan.catalog.version_id, "LATEST");
        assert!(matches!(&plan.conversion.output, OutputFormat::Parquet(p) if *p == ParquetOptions::default()));
        assert!(matches!(&plan.conversion.deserializer, Deserializer::OpenX { case_insensitive: true, .. }));
        let mut off = base();
        off["Enabled"] = json!(false);
        off["SchemaConfiguration"]["TableName"] = json!("missing");
        assert!(ConversionPlan::from_config(&config(off), &reg, "r", "a").unwrap().is_none());
    }

    #[test]
    fn refuses_what_the_real_service_refuses() {
        let (_dir, reg) = registry();
        let cases = [
            ("/SchemaConfiguration/TableName", json!("nope"), "shop.nope"),
            ("/InputFormatConfiguration", json!({}), "Deserializer is required"),
            ("/OutputFormatConfiguration/Serializer", json!({"ParquetSerDe": {}, "OrcSerDe": {}}), "only one"),
            ("/OutputFormatConfiguration/Serializer", json!({"ParquetSerDe": {"PageSizeBytes": 1}}), "PageSizeBytes"),
            (
                "/OutputFormatConfiguration/Serializer",
                json!({"OrcSerDe": {"PaddingTolerance": 2.0}}),
                "PaddingTolerance",
            ),
            (
                "/OutputFormatConfiguration/Serializer",
                json!({"OrcSerDe": {"Compression": "LZ4"}}),
                "NONE, ZLIB, SNAPPY",
            ),
            (
                "/InputFormatConfiguration/Deserializer",
                json!({"HiveJsonSerDe": {"TimestampFormats": ["yyyy G"]}}),
                "Invalid deserializer option",
            ),
        ];
        for (pointer, value, fragment) in cases {
            let mut dfc = base();
            *dfc.pointer_mut(pointer).unwrap() = value;
            let e = ConversionPlan::from_config(&config(dfc), &reg, "r", "a").unwrap_err();
            assert!(e.message.contains(fragment), "{pointer}: {}", e.message);
        }
    }

    #[test]
    fn orc_options_and_error_lines() {
        let (_dir, reg) = registry();
        let mut dfc = base();
        dfc["OutputFormatConfiguration"]["Serializer"] = json!({"OrcSerDe": {"Compression": "ZLIB", "StripeSizeBytes": 8388608, "RowIndexStride": 5000, "FormatVersion": "V0_11"}});
        let plan = ConversionPlan::from_config(&config(dfc), &reg, "r", "a").unwrap().unwrap();
        let OutputFormat::Orc(o) = &plan.conversion.output else { panic!() };
        assert_eq!((o.compression, o.stripe_size_bytes, o.row_index_stride), (OrcCompression::Zlib, 8 << 20, 5000));
        assert_eq!(o.format_version, OrcFormatVersion::V0_11);
        let mut line = String::new();
        let e = ConversionError { code: spillway_format::json::MALFORMED_DATA, message: "m".into() };
        plan.write_error_line(&mut line, &e, 5, 9, b"{x");
        let v: Value = serde_json::from_str(line.trim_end()).unwrap();
        assert_eq!(v["rawData"], "e3g=");
        assert_eq!(v["lastErrorCode"], "DataFormatConversion.MalformedData");
        assert_eq!(v["dataCatalogTable"]["databaseName"], "Shop");
        assert_eq!((v["arrivalTimestamp"].as_i64(), v["attemptEndingTimestamp"].as_i64()), (Some(5), Some(9)));
    }
}
