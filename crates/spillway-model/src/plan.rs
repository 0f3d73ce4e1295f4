//! Typed delivery plans of (Extended) S3 destinations, derived from the stored configuration.
//!
//! [`S3Plan::from_config`] is called at CreateDeliveryStream and UpdateDestination time (so every
//! error reaches the client as an `InvalidArgumentException`) and again when a supervisor starts;
//! the second call cannot fail for a configuration that passed the first. Defaults are the real
//! service's (reference §8): 5 MiB / 300 s, UNCOMPRESSED, no SSE.

use crate::error::ApiError;
use crate::prefix::{PrefixOptions, PrefixPlan};
use serde_json::Value;

const MIB: usize = 1024 * 1024;

/// Where and how one lane (the destination, or the source-record backup) writes objects.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectLane {
    pub bucket_arn: String,
    pub prefix: PrefixPlan,
    /// `BufferingHints.SizeInMBs`, in bytes, measured before compression.
    pub buffer_bytes: usize,
    /// `BufferingHints.IntervalInSeconds`; 0 delivers as soon as possible.
    pub interval_secs: u64,
    /// `CompressionFormat` as Firehose spells it.
    pub compression: String,
    /// `FileExtension`: `None` (or empty) keeps the compression's default extension.
    pub file_extension: Option<String>,
    /// `EncryptionConfiguration.KMSEncryptionConfig.AWSKMSKeyARN`.
    pub kms_key_arn: Option<String>,
}

/// The delivery plan of an S3 / Extended S3 stream.
#[derive(Debug, Clone, PartialEq)]
pub struct S3Plan {
    pub main: ObjectLane,
    /// `S3BackupMode: Enabled`: the source records, with the backup's own buffering and compression.
    pub backup: Option<ObjectLane>,
    pub dynamic_partitioning: bool,
    /// Processors that are enabled (`ProcessingConfiguration.Enabled` and a non-empty list).
    pub processing: bool,
    /// `DataFormatConversionConfiguration` applies (present and not `Enabled: false`).
    pub format_conversion: bool,
    /// `RetryOptions.DurationInSeconds` of dynamic partitioning (default 300): how long an object
    /// of a partition is retried before its records go to the error output.
    pub retry_duration_secs: Option<u64>,
}

fn str_of<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

fn lane(config: &Value, dynamic_partitioning: bool, conversion: bool) -> Result<ObjectLane, ApiError> {
    let bucket_arn = str_of(config, "BucketARN").unwrap_or_default().to_string();
    let prefix = PrefixPlan::parse(PrefixOptions {
        prefix: str_of(config, "Prefix"),
        error_output_prefix: str_of(config, "ErrorOutputPrefix"),
        custom_time_zone: str_of(config, "CustomTimeZone"),
        dynamic_partitioning,
    })?;
    let hints = config.get("BufferingHints");
    let default_size = if conversion { 128 } else { 5 };
    let size = hints.and_then(|h| h.get("SizeInMBs")).and_then(Value::as_u64).unwrap_or(default_size);
    let interval = hints.and_then(|h| h.get("IntervalInSeconds")).and_then(Value::as_u64).unwrap_or(300);
    let kms_key_arn = config
        .get("EncryptionConfiguration")
        .and_then(|e| e.get("KMSEncryptionConfig"))
        .and_then(|k| str_of(k, "AWSKMSKeyARN"))
        .map(str::to_string);
    Ok(ObjectLane {
        bucket_arn,
        prefix,
        buffer_bytes: size as usize * MIB,
        interval_secs: interval,
        compression: str_of(config, "CompressionFormat").unwrap_or("UNCOMPRESSED").to_string(),
        file_extension: str_of(config, "FileExtension").filter(|e| !e.is_empty()).map(str::to_string),
        kms_key_arn,
    })
}

impl S3Plan {
    /// The plan of an (Extended) S3 destination configuration in the Create shape.
    pub fn from_config(config: &Value) -> Result<S3Plan, ApiError> {
        let dynamic_partitioning = crate::destination::dynamic_partitioning_enabled(config);
        let format_conversion = config
            .get("DataFormatConversionConfiguration")
            .and_then(Value::as_object)
            .is_some_and(|d| d.get("Enabled").and_then(Value::as_bool).unwrap_or(true));
        let processing = config.get("ProcessingConfiguration").is_some_and(|p| {
            p.get("Enabled").and_then(Value::as_bool).unwrap_or(false)
                && p.get("Processors").and_then(Value::as_array).is_some_and(|l| !l.is_empty())
        });
        let main = lane(config, dynamic_partitioning, format_conversion)?;
        let backup = match (str_of(config, "S3BackupMode"), config.get("S3BackupConfiguration")) {
            (Some("Enabled"), Some(b)) => Some(lane(b, false, false)?),
            _ => None,
        };
        let retry_duration_secs = dynamic_partitioning.then(|| {
            config
                .get("DynamicPartitioningConfiguration")
                .and_then(|d| d.get("RetryOptions"))
                .and_then(|r| r.get("DurationInSeconds"))
                .and_then(Value::as_u64)
                .unwrap_or(300)
        });
        Ok(S3Plan { main, backup, dynamic_partitioning, processing, format_conversion, retry_duration_secs })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_and_members() {
        let p = S3Plan::from_config(&json!({"RoleARN": "r", "BucketARN": "arn:aws:s3:::b"})).unwrap();
        assert_eq!(p.main.bucket_arn, "arn:aws:s3:::b");
        assert_eq!(p.main.buffer_bytes, 5 * MIB);
        assert_eq!(p.main.interval_secs, 300);
        assert_eq!(p.main.compression, "UNCOMPRESSED");
        assert!(p.backup.is_none() && !p.processing && !p.dynamic_partitioning && !p.format_conversion);

        let p = S3Plan::from_config(&json!({"BucketARN": "arn:aws:s3:::b", "CompressionFormat": "GZIP",
            "BufferingHints": {"SizeInMBs": 1, "IntervalInSeconds": 0}, "FileExtension": ".json.gz",
            "EncryptionConfiguration": {"KMSEncryptionConfig": {"AWSKMSKeyARN": "arn:aws:kms:us-east-1:123456789012:key/k"}},
            "S3BackupMode": "Enabled", "S3BackupConfiguration": {"BucketARN": "arn:aws:s3:::bk", "Prefix": "raw/"},
            "ProcessingConfiguration": {"Enabled": true, "Processors": [{"Type": "AppendDelimiterToRecord"}]}}))
        .unwrap();
        assert_eq!(p.main.buffer_bytes, MIB);
        assert_eq!(p.main.interval_secs, 0);
        assert_eq!(p.main.file_extension.as_deref(), Some(".json.gz"));
        assert_eq!(p.main.kms_key_arn.as_deref(), Some("arn:aws:kms:us-east-1:123456789012:key/k"));
        assert_eq!(p.backup.as_ref().unwrap().bucket_arn, "arn:aws:s3:::bk");
        assert!(p.processing);
    }

    #[test]
    fn prefix_errors_surface() {
        let e =
            S3Plan::from_config(&json!({"BucketARN": "arn:aws:s3:::b", "Prefix": "!{timestamp:yyyy}/"})).unwrap_err();
        assert!(e.message.contains("ErrorOutputPrefix cannot be null or empty"), "{}", e.message);
    }
}
