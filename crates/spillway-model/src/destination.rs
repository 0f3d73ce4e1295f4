//! Destination configurations: which member names each destination type uses in Create, Describe and
//! UpdateDestination, its required members, how a stored configuration is described, and how an
//! update merges into it (reference §3.1, §3.7, §5).
//!
//! Configurations are kept as the JSON the client sent (members in PascalCase, exactly the AWS
//! shapes), so every shape of the model round-trips through Describe, including destinations spillway
//! cannot deliver to yet. Destinations that spillway delivers to are additionally parsed into typed
//! plans by the pipeline.

use crate::error::{ApiError, Violations};
use crate::names::{Pattern, check_enum, check_range, check_string};
use serde_json::{Map, Value, json};

/// One destination type of the model.
#[derive(Debug, PartialEq, Eq)]
pub struct DestinationKind {
    /// Member of CreateDeliveryStreamInput (`ExtendedS3DestinationConfiguration`).
    pub create: &'static str,
    /// Member of DestinationDescription (`ExtendedS3DestinationDescription`).
    pub describe: &'static str,
    /// Member of UpdateDestinationInput (`ExtendedS3DestinationUpdate`).
    pub update: &'static str,
    /// Human name used in messages.
    pub label: &'static str,
    /// Members required by the Create shape.
    pub required: &'static [&'static str],
    /// Members never returned by Describe (paths of nested members use `/`).
    pub sensitive: &'static [&'static str],
}

const fn kind(
    create: &'static str,
    describe: &'static str,
    update: &'static str,
    label: &'static str,
    required: &'static [&'static str],
    sensitive: &'static [&'static str],
) -> DestinationKind {
    DestinationKind { create, describe, update, label, required, sensitive }
}

pub static S3: DestinationKind = kind(
    "S3DestinationConfiguration",
    "S3DestinationDescription",
    "S3DestinationUpdate",
    "S3",
    &["RoleARN", "BucketARN"],
    &[],
);
pub static EXTENDED_S3: DestinationKind = kind(
    "ExtendedS3DestinationConfiguration",
    "ExtendedS3DestinationDescription",
    "ExtendedS3DestinationUpdate",
    "Extended S3",
    &["RoleARN", "BucketARN"],
    &[],
);

/// Every destination type, in the order of CreateDeliveryStreamInput.
pub static KINDS: [&DestinationKind; 10] = [
    &S3,
    &EXTENDED_S3,
    &kind(
        "RedshiftDestinationConfiguration",
        "RedshiftDestinationDescription",
        "RedshiftDestinationUpdate",
        "Redshift",
        &["RoleARN", "ClusterJDBCURL", "CopyCommand", "S3Configuration"],
        &["Password"],
    ),
    &kind(
        "ElasticsearchDestinationConfiguration",
        "ElasticsearchDestinationDescription",
        "ElasticsearchDestinationUpdate",
        "Elasticsearch",
        &["RoleARN", "IndexName", "S3Configuration"],
        &[],
    ),
    &kind(
        "AmazonopensearchserviceDestinationConfiguration",
        "AmazonopensearchserviceDestinationDescription",
        "AmazonopensearchserviceDestinationUpdate",
        "Amazon OpenSearch Service",
        &["RoleARN", "IndexName", "S3Configuration"],
        &[],
    ),
    &kind(
        "SplunkDestinationConfiguration",
        "SplunkDestinationDescription",
        "SplunkDestinationUpdate",
        "Splunk",
        &["HECEndpoint", "HECEndpointType", "S3Configuration"],
        &[],
    ),
    &kind(
        "HttpEndpointDestinationConfiguration",
        "HttpEndpointDestinationDescription",
        "HttpEndpointDestinationUpdate",
        "HTTP endpoint",
        &["EndpointConfiguration", "S3Configuration"],
        &["EndpointConfiguration/AccessKey"],
    ),
    &kind(
        "AmazonOpenSearchServerlessDestinationConfiguration",
        "AmazonOpenSearchServerlessDestinationDescription",
        "AmazonOpenSearchServerlessDestinationUpdate",
        "Amazon OpenSearch Serverless",
        &["RoleARN", "IndexName", "S3Configuration"],
        &[],
    ),
    &kind(
        "SnowflakeDestinationConfiguration",
        "SnowflakeDestinationDescription",
        "SnowflakeDestinationUpdate",
        "Snowflake",
        &["AccountUrl", "Database", "Schema", "Table", "RoleARN", "S3Configuration"],
        &["PrivateKey", "KeyPassphrase"],
    ),
    &kind(
        "IcebergDestinationConfiguration",
        "IcebergDestinationDescription",
        "IcebergDestinationUpdate",
        "Apache Iceberg Tables",
        &["RoleARN", "CatalogConfiguration", "S3Configuration"],
        &[],
    ),
];

/// Finds a kind by its Create member name.
pub fn by_create(member: &str) -> Option<&'static DestinationKind> {
    KINDS.iter().copied().find(|k| k.create == member)
}

/// Finds a kind by its UpdateDestination member name.
pub fn by_update(member: &str) -> Option<&'static DestinationKind> {
    KINDS.iter().copied().find(|k| k.update == member)
}

impl DestinationKind {
    /// S3 and Extended S3 are one family: either update shape applies to either stream.
    pub fn is_s3(&self) -> bool {
        self.create == S3.create || self.create == EXTENDED_S3.create
    }
}

/// lowerCamelCase of a PascalCase member name, for validation paths (`RoleARN` → `roleARN`).
pub fn camel(member: &str) -> String {
    let mut c = member.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

fn obj<'a>(v: &'a Value, path: &str) -> Result<&'a Map<String, Value>, ApiError> {
    v.as_object().ok_or_else(|| ApiError::serialization(format!("{path} must be a JSON object")))
}

fn get_str<'a>(m: &'a Map<String, Value>, key: &str, path: &str) -> Result<Option<&'a str>, ApiError> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ApiError::serialization(format!("{path}.{} must be a string", camel(key)))),
    }
}

fn get_int(m: &Map<String, Value>, key: &str, path: &str) -> Result<Option<i64>, ApiError> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .map(Some)
            .ok_or_else(|| ApiError::serialization(format!("{path}.{} must be an integer", camel(key)))),
        Some(_) => Err(ApiError::serialization(format!("{path}.{} must be an integer", camel(key)))),
    }
}

fn get_bool(m: &Map<String, Value>, key: &str) -> Option<bool> {
    m.get(key).and_then(Value::as_bool)
}

/// Checks a destination configuration of the Create shape: JSON types, required members, and the
/// constraints of the members spillway interprets. `path` is the lowerCamelCase member path.
pub fn validate_create(kind: &DestinationKind, config: &Value, path: &str, v: &mut Violations) -> Result<(), ApiError> {
    let m = obj(config, path)?;
    for req in kind.required {
        if m.get(*req).is_none_or(Value::is_null) {
            v.missing(&format!("{path}.{}", camel(req)));
        }
    }
    if kind.is_s3() {
        validate_s3(m, path, v, true)?;
    } else {
        if let Some(role) = get_str(m, "RoleARN", path)? {
            check_string(v, role, &format!("{path}.roleARN"), 1, 512, Some(Pattern::RoleArn));
        }
        if let Some(s3) = m.get("S3Configuration") {
            let p = format!("{path}.s3Configuration");
            let s3m = obj(s3, &p)?;
            for req in ["RoleARN", "BucketARN"] {
                if s3m.get(req).is_none_or(Value::is_null) {
                    v.missing(&format!("{p}.{}", camel(req)));
                }
            }
            validate_s3(s3m, &p, v, false)?;
        }
    }
    Ok(())
}

/// Checks the members of an S3 / Extended S3 configuration or update (`extended`: the Extended S3
/// members are allowed).
pub fn validate_s3(m: &Map<String, Value>, path: &str, v: &mut Violations, extended: bool) -> Result<(), ApiError> {
    if let Some(role) = get_str(m, "RoleARN", path)? {
        check_string(v, role, &format!("{path}.roleARN"), 1, 512, Some(Pattern::RoleArn));
    }
    if let Some(bucket) = get_str(m, "BucketARN", path)? {
        check_string(v, bucket, &format!("{path}.bucketARN"), 1, 2048, Some(Pattern::BucketArn));
    }
    for key in ["Prefix", "ErrorOutputPrefix"] {
        if let Some(p) = get_str(m, key, path)? {
            check_string(v, p, &format!("{path}.{}", camel(key)), 0, 1024, None);
        }
    }
    if let Some(c) = get_str(m, "CompressionFormat", path)? {
        check_enum(v, c, &format!("{path}.compressionFormat"), &COMPRESSION_FORMATS);
    }
    if let Some(bh) = m.get("BufferingHints") {
        let p = format!("{path}.bufferingHints");
        let bhm = obj(bh, &p)?;
        let size = get_int(bhm, "SizeInMBs", &p)?;
        let interval = get_int(bhm, "IntervalInSeconds", &p)?;
        if let Some(s) = size {
            check_range(v, s, &format!("{p}.sizeInMBs"), 1, 128);
        }
        if let Some(i) = interval {
            check_range(v, i, &format!("{p}.intervalInSeconds"), 0, 900);
        }
        if size.is_some() != interval.is_some() {
            return Err(ApiError::invalid_argument(
                "If you specify a value for SizeInMBs, you must also specify a value for IntervalInSeconds, and vice versa.",
            ));
        }
    }
    if let Some(enc) = m.get("EncryptionConfiguration") {
        let p = format!("{path}.encryptionConfiguration");
        let em = obj(enc, &p)?;
        if let Some(n) = get_str(em, "NoEncryptionConfig", &p)? {
            check_enum(v, n, &format!("{p}.noEncryptionConfig"), &["NoEncryption"]);
        }
        if let Some(kms) = em.get("KMSEncryptionConfig") {
            let kp = format!("{p}.kMSEncryptionConfig");
            match get_str(obj(kms, &kp)?, "AWSKMSKeyARN", &kp)? {
                None => v.missing(&format!("{kp}.aWSKMSKeyARN")),
                Some(k) => check_string(v, k, &format!("{kp}.aWSKMSKeyARN"), 1, 512, Some(Pattern::KmsKeyArn)),
            }
            if em.get("NoEncryptionConfig").is_some_and(|n| !n.is_null()) {
                return Err(ApiError::invalid_argument(
                    "Only one of NoEncryptionConfig and KMSEncryptionConfig can be specified in EncryptionConfiguration",
                ));
            }
        }
    }
    if !extended {
        return Ok(());
    }
    if let Some(mode) = get_str(m, "S3BackupMode", path)? {
        check_enum(v, mode, &format!("{path}.s3BackupMode"), &["Disabled", "Enabled"]);
    }
    if let Some(ext) = get_str(m, "FileExtension", path)? {
        check_string(v, ext, &format!("{path}.fileExtension"), 0, 128, Some(Pattern::FileExtension));
    }
    if let Some(tz) = get_str(m, "CustomTimeZone", path)? {
        check_string(v, tz, &format!("{path}.customTimeZone"), 0, 50, Some(Pattern::CustomTimeZone));
    }
    for (key, nested) in [("S3BackupConfiguration", true), ("S3BackupUpdate", false)] {
        if let Some(b) = m.get(key) {
            let p = format!("{path}.{}", camel(key));
            let bm = obj(b, &p)?;
            if nested {
                for req in ["RoleARN", "BucketARN"] {
                    if bm.get(req).is_none_or(Value::is_null) {
                        v.missing(&format!("{p}.{}", camel(req)));
                    }
                }
            }
            validate_s3(bm, &p, v, false)?;
        }
    }
    Ok(())
}

pub const COMPRESSION_FORMATS: [&str; 5] = ["UNCOMPRESSED", "GZIP", "ZIP", "Snappy", "HADOOP_SNAPPY"];

/// Semantic rules of a complete (merged) Extended S3 configuration, checked after shape validation:
/// backup, format conversion, and the prefixes (parsed into a plan, so a bad expression is refused
/// here, at create or update time).
pub fn check_s3_rules(config: &Value) -> Result<(), ApiError> {
    let Some(m) = config.as_object() else { return Ok(()) };
    crate::plan::S3Plan::from_config(config)?;
    if m.get("S3BackupMode").and_then(Value::as_str) == Some("Enabled") && m.get("S3BackupConfiguration").is_none() {
        return Err(ApiError::invalid_argument("S3BackupConfiguration must be specified when S3BackupMode is Enabled"));
    }
    if let Some(dfc) = m.get("DataFormatConversionConfiguration").and_then(Value::as_object)
        && dfc.get("Enabled").and_then(Value::as_bool).unwrap_or(true)
    {
        let compression = m.get("CompressionFormat").and_then(Value::as_str).unwrap_or("UNCOMPRESSED");
        if compression != "UNCOMPRESSED" {
            return Err(ApiError::invalid_argument(
                "CompressionFormat must be UNCOMPRESSED when data format conversion is enabled.",
            ));
        }
        let size = m.get("BufferingHints").and_then(|b| b.get("SizeInMBs")).and_then(Value::as_i64);
        if size.is_some_and(|s| s < 64) {
            return Err(ApiError::invalid_argument(
                "BufferingHints.SizeInMBs must be at least 64 when data format conversion is enabled.",
            ));
        }
    }
    Ok(())
}

/// Whether dynamic partitioning is enabled in an Extended S3 configuration.
pub fn dynamic_partitioning_enabled(config: &Value) -> bool {
    config.get("DynamicPartitioningConfiguration").and_then(|d| d.get("Enabled")).and_then(Value::as_bool) == Some(true)
}

fn data_format_conversion_enabled(m: &Map<String, Value>) -> bool {
    m.get("DataFormatConversionConfiguration")
        .and_then(Value::as_object)
        .is_some_and(|d| get_bool(d, "Enabled").unwrap_or(true))
}

/// The S3 members echoed in an `S3DestinationDescription`.
const S3_DESCRIPTION_MEMBERS: [&str; 8] = [
    "RoleARN",
    "BucketARN",
    "Prefix",
    "ErrorOutputPrefix",
    "BufferingHints",
    "CompressionFormat",
    "EncryptionConfiguration",
    "CloudWatchLoggingOptions",
];

/// `S3DestinationDescription` of an S3 configuration: its S3 members with the service defaults.
pub fn describe_s3(config: &Value) -> Value {
    let mut out = Map::new();
    if let Some(m) = config.as_object() {
        for key in S3_DESCRIPTION_MEMBERS {
            if let Some(v) = m.get(key) {
                out.insert(key.to_string(), v.clone());
            }
        }
        fill_s3_defaults(&mut out, data_format_conversion_enabled(m));
    }
    Value::Object(out)
}

fn fill_s3_defaults(out: &mut Map<String, Value>, conversion: bool) {
    let size = if conversion { 128 } else { 5 };
    out.entry("BufferingHints").or_insert_with(|| json!({"SizeInMBs": size, "IntervalInSeconds": 300}));
    out.entry("CompressionFormat").or_insert_with(|| json!("UNCOMPRESSED"));
    out.entry("EncryptionConfiguration").or_insert_with(|| json!({"NoEncryptionConfig": "NoEncryption"}));
    out.entry("CloudWatchLoggingOptions").or_insert_with(|| json!({"Enabled": false}));
}

/// `ExtendedS3DestinationDescription` of an (Extended) S3 configuration.
pub fn describe_extended_s3(config: &Value) -> Value {
    let mut out = match config.as_object() {
        Some(m) => m.clone(),
        None => Map::new(),
    };
    let conversion = data_format_conversion_enabled(&out);
    fill_s3_defaults(&mut out, conversion);
    out.entry("S3BackupMode").or_insert_with(|| json!("Disabled"));
    if let Some(backup) = out.remove("S3BackupConfiguration") {
        out.insert("S3BackupDescription".into(), describe_s3(&backup));
    }
    if let Some(Value::Object(dp)) = out.get_mut("DynamicPartitioningConfiguration")
        && dp.get("Enabled").and_then(Value::as_bool) == Some(true)
    {
        dp.entry("RetryOptions").or_insert_with(|| json!({"DurationInSeconds": 300}));
    }
    if let Some(Value::Object(pc)) = out.get_mut("ProcessingConfiguration") {
        fill_lambda_defaults(pc);
    }
    Value::Object(out)
}

/// Lambda processors are echoed with every parameter (reference §3.2).
fn fill_lambda_defaults(pc: &mut Map<String, Value>) {
    let Some(Value::Array(processors)) = pc.get_mut("Processors") else { return };
    for p in processors {
        if p.get("Type").and_then(Value::as_str) != Some("Lambda") {
            continue;
        }
        let Some(Value::Array(params)) = p.get_mut("Parameters") else { continue };
        let has = |params: &Vec<Value>, name: &str| {
            params.iter().any(|x| x.get("ParameterName").and_then(Value::as_str) == Some(name))
        };
        for (name, default) in
            [("NumberOfRetries", "3"), ("RoleArn", ""), ("BufferSizeInMBs", "1"), ("BufferIntervalInSeconds", "60")]
        {
            if !has(params, name) && !default.is_empty() {
                params.push(json!({"ParameterName": name, "ParameterValue": default}));
            }
        }
    }
}

/// The `DestinationDescription` members of a stored destination: `{"<Kind>DestinationDescription": ...}`
/// (Extended S3 and S3 answer with both an Extended S3 and a plain S3 description, as AWS does).
pub fn describe(kind: &DestinationKind, config: &Value) -> Map<String, Value> {
    let mut out = Map::new();
    if kind.is_s3() {
        out.insert(EXTENDED_S3.describe.into(), describe_extended_s3(config));
        out.insert(S3.describe.into(), describe_s3(config));
        return out;
    }
    let mut d = match config.as_object() {
        Some(m) => m.clone(),
        None => Map::new(),
    };
    for path in kind.sensitive {
        match path.split_once('/') {
            None => {
                d.remove(*path);
            }
            Some((outer, inner)) => {
                if let Some(Value::Object(o)) = d.get_mut(outer) {
                    o.remove(inner);
                }
            }
        }
    }
    if let Some(s3) = d.remove("S3Configuration") {
        d.insert("S3DestinationDescription".into(), describe_s3(&s3));
    }
    if let Some(backup) = d.remove("S3BackupConfiguration") {
        d.insert("S3BackupDescription".into(), describe_s3(&backup));
    }
    if let Some(vpc) = d.remove("VpcConfiguration") {
        d.insert("VpcConfigurationDescription".into(), vpc);
    }
    if let Some(Value::Object(pc)) = d.get_mut("ProcessingConfiguration") {
        fill_lambda_defaults(pc);
    }
    out.insert(kind.describe.into(), Value::Object(d));
    out
}

/// Merges an update of the same destination family into a stored configuration (reference §3.7):
/// members present replace stored ones; `S3Update` / `S3BackupUpdate` and
/// `DataFormatConversionConfiguration` merge member by member; `ProcessingConfiguration` is replaced
/// whole, except that an omitted `Enabled` keeps the previous value.
pub fn merge_update(stored: &Value, update: &Map<String, Value>) -> Value {
    let mut out = stored.as_object().cloned().unwrap_or_default();
    for (key, value) in update {
        match key.as_str() {
            "S3Update" => merge_into(&mut out, "S3Configuration", value),
            "S3BackupUpdate" => merge_into(&mut out, "S3BackupConfiguration", value),
            "DataFormatConversionConfiguration" => deep_merge_into(&mut out, key, value),
            "ProcessingConfiguration" => {
                let mut new = value.clone();
                if let (Some(n), Some(prev)) =
                    (new.as_object_mut(), out.get(key).and_then(|p| p.get("Enabled")).cloned())
                {
                    n.entry("Enabled").or_insert(prev);
                }
                out.insert(key.clone(), new);
            }
            _ => {
                out.insert(key.clone(), value.clone());
            }
        }
    }
    Value::Object(out)
}

fn merge_into(out: &mut Map<String, Value>, key: &str, value: &Value) {
    let Some(upd) = value.as_object() else { return };
    let entry = out.entry(key.to_string()).or_insert_with(|| Value::Object(Map::new()));
    if let Some(e) = entry.as_object_mut() {
        for (k, v) in upd {
            e.insert(k.clone(), v.clone());
        }
    }
}

fn deep_merge_into(out: &mut Map<String, Value>, key: &str, value: &Value) {
    match (out.get_mut(key), value) {
        (Some(Value::Object(existing)), Value::Object(upd)) => {
            for (k, v) in upd {
                deep_merge_into(existing, k, v);
            }
        }
        _ => {
            out.insert(key.to_string(), value.clone());
        }
    }
}

/// Turns an update of another destination type into a configuration of the Create shape.
pub fn update_to_config(update: &Map<String, Value>) -> Value {
    let mut out = Map::new();
    for (k, v) in update {
        let key = match k.as_str() {
            "S3Update" => "S3Configuration",
            "S3BackupUpdate" => "S3BackupConfiguration",
            other => other,
        };
        out.insert(key.to_string(), v.clone());
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extended_s3_description_fills_defaults_and_mirrors_s3() {
        let cfg = json!({"RoleARN": "arn:aws:iam::123456789012:role/r", "BucketARN": "arn:aws:s3:::b",
                         "S3BackupMode": "Enabled",
                         "S3BackupConfiguration": {"RoleARN": "arn:aws:iam::123456789012:role/r", "BucketARN": "arn:aws:s3:::bk"}});
        let d = describe(&EXTENDED_S3, &cfg);
        let ext = &d["ExtendedS3DestinationDescription"];
        assert_eq!(ext["BufferingHints"], json!({"SizeInMBs": 5, "IntervalInSeconds": 300}));
        assert_eq!(ext["CompressionFormat"], "UNCOMPRESSED");
        assert_eq!(ext["EncryptionConfiguration"], json!({"NoEncryptionConfig": "NoEncryption"}));
        assert_eq!(ext["CloudWatchLoggingOptions"], json!({"Enabled": false}));
        assert_eq!(ext["S3BackupDescription"]["BucketARN"], "arn:aws:s3:::bk");
        assert!(ext.get("S3BackupConfiguration").is_none());
        assert_eq!(d["S3DestinationDescription"]["BucketARN"], "arn:aws:s3:::b");
        assert!(d["S3DestinationDescription"].get("S3BackupMode").is_none());
    }

    #[test]
    fn conversion_raises_the_default_buffer_size() {
        let cfg = json!({"DataFormatConversionConfiguration": {"Enabled": true}});
        assert_eq!(describe_extended_s3(&cfg)["BufferingHints"]["SizeInMBs"], 128);
    }

    #[test]
    fn other_destinations_hide_secrets_and_rename_nested_s3() {
        let kind = by_create("HttpEndpointDestinationConfiguration").unwrap();
        let cfg = json!({"EndpointConfiguration": {"Url": "https://x", "AccessKey": "secret"},
                         "S3Configuration": {"RoleARN": "arn:aws:iam::123456789012:role/r", "BucketARN": "arn:aws:s3:::b"}});
        let d = describe(kind, &cfg);
        let h = &d["HttpEndpointDestinationDescription"];
        assert!(h["EndpointConfiguration"].get("AccessKey").is_none());
        assert_eq!(h["S3DestinationDescription"]["CompressionFormat"], "UNCOMPRESSED");
        let kind = by_create("SnowflakeDestinationConfiguration").unwrap();
        let d = describe(kind, &json!({"PrivateKey": "k", "User": "u"}));
        assert!(d["SnowflakeDestinationDescription"].get("PrivateKey").is_none());
    }

    #[test]
    fn merge_rules() {
        let stored = json!({"Prefix": "a/", "ProcessingConfiguration": {"Enabled": true, "Processors": [{"Type": "Lambda"}]},
                            "DataFormatConversionConfiguration": {"SchemaConfiguration": {"DatabaseName": "d", "TableName": "t"}},
                            "S3BackupConfiguration": {"BucketARN": "arn:aws:s3:::x", "Prefix": "p/"}});
        let upd = json!({"Prefix": "b/", "ProcessingConfiguration": {"Processors": []},
                         "DataFormatConversionConfiguration": {"SchemaConfiguration": {"TableName": "t2"}},
                         "S3BackupUpdate": {"Prefix": "q/"}});
        let merged = merge_update(&stored, upd.as_object().unwrap());
        assert_eq!(merged["Prefix"], "b/");
        assert_eq!(merged["ProcessingConfiguration"], json!({"Enabled": true, "Processors": []}));
        assert_eq!(
            merged["DataFormatConversionConfiguration"]["SchemaConfiguration"],
            json!({"DatabaseName": "d", "TableName": "t2"})
        );
        assert_eq!(merged["S3BackupConfiguration"], json!({"BucketARN": "arn:aws:s3:::x", "Prefix": "q/"}));
    }

    #[test]
    fn validation() {
        let mut v = Violations::new();
        validate_create(
            &EXTENDED_S3,
            &json!({"BucketARN": "bucket", "CompressionFormat": "SNAPPY"}),
            "extendedS3DestinationConfiguration",
            &mut v,
        )
        .unwrap();
        let e = v.into_result().unwrap_err();
        assert!(e.message.starts_with("3 validation errors detected"), "{}", e.message);
        assert!(e.message.contains(
            "'extendedS3DestinationConfiguration.roleARN' failed to satisfy constraint: Member must not be null"
        ));
        assert!(
            e.message.contains("Member must satisfy enum value set: [UNCOMPRESSED, GZIP, ZIP, Snappy, HADOOP_SNAPPY]")
        );

        let mut v = Violations::new();
        let e = validate_create(
            &EXTENDED_S3,
            &json!({"RoleARN": "arn:aws:iam::123456789012:role/r", "BucketARN": "arn:aws:s3:::b",
            "BufferingHints": {"SizeInMBs": 5}}),
            "x",
            &mut v,
        )
        .unwrap_err();
        assert_eq!(e.code, crate::ErrorCode::InvalidArgument);

        let mut v = Violations::new();
        let e = validate_create(&EXTENDED_S3, &json!({"RoleARN": 5}), "x", &mut v).unwrap_err();
        assert_eq!(e.code, crate::ErrorCode::Serialization);

        let e =
            check_s3_rules(&json!({"CompressionFormat": "GZIP", "DataFormatConversionConfiguration": {}})).unwrap_err();
        assert!(e.message.contains("UNCOMPRESSED"));
        let e = check_s3_rules(&json!({"BufferingHints": {"SizeInMBs": 5, "IntervalInSeconds": 60}, "DataFormatConversionConfiguration": {"Enabled": true}})).unwrap_err();
        assert!(e.message.contains("at least 64"));
        check_s3_rules(&json!({"BufferingHints": {"SizeInMBs": 5, "IntervalInSeconds": 60}, "DataFormatConversionConfiguration": {"Enabled": false}})).unwrap();
    }
}
