//! The dashboard's data: a short history of every stream's metrics, and the JSON the page at
//! `/dashboard` polls (`GET /_spillway/dashboard`, shape in the API crate's docs).
//!
//! It owns the history only: values come from [`Metrics::dashboard_values`], stream
//! configurations from DescribeDeliveryStream.
//!
//! Invariants:
//! - at most [`SAMPLES`] samples per stream, one per [`SAMPLE_INTERVAL`] (about 40 KiB per stream);
//!   a stream's history is dropped at the first sample after the stream is gone;
//! - a response's last point is taken at request time, so the totals the page shows are current
//!   to the request, not to the last sample.

use crate::metrics::{DASHBOARD_SERIES, DashboardValues, Metrics};
use parking_lot::Mutex;
use serde_json::{Map, Value, json};
use std::collections::{HashMap, VecDeque};
use std::time::Duration;

/// How often the history takes a sample.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(2);
/// Samples kept per stream: ten minutes.
pub const SAMPLES: usize = 300;

#[derive(Default)]
struct Ring {
    t: VecDeque<i64>,
    values: VecDeque<DashboardValues>,
}

/// Every stream's recent samples.
#[derive(Default)]
pub struct History {
    rings: Mutex<HashMap<String, Ring>>,
}

impl History {
    /// Takes one sample of each stream in `names`; forgets streams that are not.
    pub fn sample<'a>(&self, names: impl IntoIterator<Item = &'a str>, metrics: &Metrics, now_ms: i64) {
        let mut rings = self.rings.lock();
        let mut seen = Vec::new();
        for name in names {
            let values = metrics.dashboard_values(name);
            let ring = rings.entry(name.to_string()).or_default();
            if ring.t.len() == SAMPLES {
                ring.t.pop_front();
                ring.values.pop_front();
            }
            ring.t.push_back(now_ms);
            ring.values.push_back(values);
            seen.push(name.to_string());
        }
        rings.retain(|k, _| seen.contains(k));
    }

    /// The series of one stream, oldest first, ending with `current` at `now_ms`:
    /// `{"t": [...], "<metric>": [...], ...}`.
    pub fn series(&self, name: &str, current: &DashboardValues, now_ms: i64) -> Value {
        let rings = self.rings.lock();
        let empty = Ring::default();
        let ring = rings.get(name).unwrap_or(&empty);
        // The newest sample would make a step of a few milliseconds: the request's point replaces it.
        let keep = ring.t.iter().take_while(|&&t| t + 200 < now_ms).count();
        let mut t: Vec<i64> = ring.t.iter().take(keep).copied().collect();
        t.push(now_ms);
        let mut out = Map::new();
        out.insert("t".into(), json!(t));
        for (i, metric) in DASHBOARD_SERIES.iter().enumerate() {
            let mut v: Vec<f64> = ring.values.iter().take(keep).map(|vals| vals[i]).collect();
            v.push(current[i]);
            out.insert((*metric).into(), json!(v));
        }
        Value::Object(out)
    }
}

/// The totals object of the JSON: `{"IncomingRecords": n, ...}`.
pub fn totals(values: &DashboardValues) -> Value {
    let mut out = Map::new();
    for (metric, v) in DASHBOARD_SERIES.iter().zip(values) {
        out.insert((*metric).into(), json!(v));
    }
    Value::Object(out)
}

/// The configuration summary of a stream from its `DeliveryStreamDescription`: ordered
/// `[label, value]` pairs of what an operator looks for first.
pub fn summary(description: &Value) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut push = |label: &str, value: String| {
        if !value.is_empty() {
            out.push((label.to_string(), value));
        }
    };
    let Some(dest) = description
        .pointer("/Destinations/0")
        .and_then(Value::as_object)
        .and_then(|d| d.iter().find(|(k, _)| k.ends_with("DestinationDescription") && *k != "S3DestinationDescription"))
        .or_else(|| {
            description
                .pointer("/Destinations/0")
                .and_then(Value::as_object)
                .and_then(|d| d.iter().find(|(k, _)| k.ends_with("DestinationDescription")))
        })
        .map(|(_, v)| v)
    else {
        return out;
    };
    let s = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or_default().to_string();
    if let Some(catalog) = dest.pointer("/CatalogConfiguration/CatalogARN") {
        push("Catalog", s(Some(catalog)));
        let tables: Vec<String> = dest
            .get("DestinationTableConfigurationList")
            .and_then(Value::as_array)
            .map(|l| {
                l.iter()
                    .map(|t| format!("{}.{}", s(t.get("DestinationDatabaseName")), s(t.get("DestinationTableName"))))
                    .collect()
            })
            .unwrap_or_default();
        push("Tables", tables.join(", "));
        push("Error bucket", s(dest.pointer("/S3DestinationDescription/BucketARN")));
    } else {
        push("Destination", s(dest.get("BucketARN")));
    }
    if let Some(h) = dest.get("BufferingHints") {
        let size = h.get("SizeInMBs").and_then(Value::as_u64);
        let secs = h.get("IntervalInSeconds").and_then(Value::as_u64);
        if let (Some(size), Some(secs)) = (size, secs) {
            push("Buffering", format!("{size} MiB or {secs} s"));
        }
    }
    push("Prefix", s(dest.get("Prefix")));
    push("Error output prefix", s(dest.get("ErrorOutputPrefix")));
    let compression = s(dest.get("CompressionFormat"));
    if compression != "UNCOMPRESSED" {
        push("Compression", compression);
    }
    if dest.pointer("/ProcessingConfiguration/Enabled").and_then(Value::as_bool) == Some(true) {
        let processors: Vec<String> = dest
            .pointer("/ProcessingConfiguration/Processors")
            .and_then(Value::as_array)
            .map(|l| {
                l.iter()
                    .map(|p| {
                        let kind = s(p.get("Type"));
                        let arn = p.get("Parameters").and_then(Value::as_array).and_then(|ps| {
                            ps.iter().find(|p| p.get("ParameterName").and_then(Value::as_str) == Some("LambdaArn"))
                        });
                        match arn {
                            Some(a) => format!("{kind} {}", s(a.get("ParameterValue"))),
                            None => kind,
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        push("Processing", processors.join(", "));
    }
    if dest.pointer("/DynamicPartitioningConfiguration/Enabled").and_then(Value::as_bool) == Some(true) {
        push("Dynamic partitioning", "Enabled".into());
    }
    if dest.pointer("/DataFormatConversionConfiguration/Enabled").and_then(Value::as_bool) != Some(false)
        && let Some(serializer) =
            dest.pointer("/DataFormatConversionConfiguration/OutputFormatConfiguration/Serializer")
    {
        let format = if serializer.get("OrcSerDe").is_some() { "ORC" } else { "Parquet" };
        let table = dest
            .pointer("/DataFormatConversionConfiguration/SchemaConfiguration")
            .map(|t| format!(" ({}.{})", s(t.get("DatabaseName")), s(t.get("TableName"))));
        push("Format", format!("{format}{}", table.unwrap_or_default()));
    }
    let backup = s(dest.get("S3BackupMode"));
    if !backup.is_empty() && backup != "Disabled" && backup != "FailedDataOnly" {
        push("Backup", backup);
    }
    let name = description.get("DeliveryStreamName").and_then(Value::as_str).unwrap_or_default();
    let logging = crate::logs::LogTarget::from_options(
        dest.get("CloudWatchLoggingOptions"),
        name,
        crate::logs::DESTINATION_DELIVERY,
    );
    if let Some(target) = logging {
        push("Logging", format!("{} / {}", target.group, target.stream));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_keeps_the_last_samples_and_ends_at_the_request() {
        let m = Metrics::new();
        let s = m.stream("a");
        let h = History::default();
        for i in 0..(SAMPLES as i64 + 5) {
            s.incoming_records.inc();
            h.sample(["a"], &m, i * 2000);
        }
        s.incoming_records.inc();
        let now = (SAMPLES as i64 + 5) * 2000;
        let series = h.series("a", &m.dashboard_values("a"), now);
        let t = series["t"].as_array().unwrap();
        assert_eq!(t.len(), SAMPLES + 1);
        assert_eq!(t.last().unwrap(), now);
        let incoming = series["IncomingRecords"].as_array().unwrap();
        assert_eq!(incoming.last().unwrap().as_f64(), Some(SAMPLES as f64 + 6.0));
        assert_eq!(incoming[0].as_f64(), Some(6.0));
        // A stream that is gone is forgotten.
        h.sample(std::iter::empty(), &m, now);
        assert_eq!(h.series("a", &m.dashboard_values("a"), now)["t"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn summary_of_an_extended_s3_stream() {
        let d = json!({"Destinations": [{"DestinationId": "destinationId-000000000001",
            "S3DestinationDescription": {"BucketARN": "arn:aws:s3:::copy"},
            "ExtendedS3DestinationDescription": {
                "BucketARN": "arn:aws:s3:::b", "Prefix": "data/", "CompressionFormat": "GZIP",
                "BufferingHints": {"SizeInMBs": 64, "IntervalInSeconds": 60},
                "ProcessingConfiguration": {"Enabled": true, "Processors": [{"Type": "Lambda", "Parameters": [
                    {"ParameterName": "LambdaArn", "ParameterValue": "arn:aws:lambda:us-east-1:1:function:f"}]}]},
                "DataFormatConversionConfiguration": {"Enabled": true,
                    "SchemaConfiguration": {"DatabaseName": "db", "TableName": "t"},
                    "OutputFormatConfiguration": {"Serializer": {"ParquetSerDe": {}}}},
                "CloudWatchLoggingOptions": {"Enabled": true, "LogGroupName": "/aws/kinesisfirehose/x"}}}]});
        let pairs = summary(&d);
        let get = |l: &str| pairs.iter().find(|(k, _)| k == l).map(|(_, v)| v.as_str());
        assert_eq!(get("Destination"), Some("arn:aws:s3:::b"));
        assert_eq!(get("Buffering"), Some("64 MiB or 60 s"));
        assert_eq!(get("Compression"), Some("GZIP"));
        assert_eq!(get("Processing"), Some("Lambda arn:aws:lambda:us-east-1:1:function:f"));
        assert_eq!(get("Format"), Some("Parquet (db.t)"));
        assert_eq!(get("Logging"), Some("/aws/kinesisfirehose/x / DestinationDelivery"));
    }
}
