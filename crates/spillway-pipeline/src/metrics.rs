//! Every metric spillway exposes, under Firehose's CloudWatch names (reference §18).
//!
//! Prometheus names are the CloudWatch names with `.` replaced by `_` (`PutRecordBatch.Latency` →
//! `PutRecordBatch_Latency`); counters get the `_total` suffix of OpenMetrics. Every series carries a
//! `delivery_stream` label. Handles are resolved once per stream ([`StreamMetrics`]), so the hot path
//! only does atomic adds.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StreamLabel {
    pub delivery_stream: String,
}

type Histograms = Family<StreamLabel, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 0.25 ms .. ~8 s
    Histogram::new(exponential_buckets(0.25, 2.0, 16))
}

fn commit_histogram() -> Histogram {
    // 1 ms .. ~70 s in steps of 25 %: fine enough for the benchmark's percentiles.
    Histogram::new(exponential_buckets(1.0, 1.25, 51))
}

/// Delivery metric families of one destination lane (`DeliveryToS3`, `BackupToS3`).
pub struct DeliveryFamilies {
    bytes: Family<StreamLabel, Counter>,
    records: Family<StreamLabel, Counter>,
    object_count: Family<StreamLabel, Counter>,
    put_requests: Family<StreamLabel, Counter>,
    success: Family<StreamLabel, Counter>,
    failures: Family<StreamLabel, Counter>,
    stored_bytes: Family<StreamLabel, Counter>,
    error_output_objects: Family<StreamLabel, Counter>,
    error_output_bytes: Family<StreamLabel, Counter>,
    data_freshness: Family<StreamLabel, Gauge<f64, AtomicU64>>,
}

/// One stream's delivery handles for one lane.
#[derive(Clone)]
pub struct DeliveryMetrics {
    /// `.Bytes`: record bytes delivered (before compression, as Firehose counts).
    pub bytes: Counter,
    /// `.Records`: records delivered.
    pub records: Counter,
    /// `.ObjectCount`: objects written.
    pub object_count: Counter,
    /// PUT calls, retries included.
    pub put_requests: Counter,
    /// `.Success` numerator: successful PUTs (the ratio is `Success / (Success + Failures)`).
    pub success: Counter,
    /// Failed PUT attempts.
    pub failures: Counter,
    /// spillway's own: bytes of the objects written, as stored (compressed, converted).
    pub stored_bytes: Counter,
    /// spillway's own: error-output objects written (`processing-failed`, `format-conversion-failed`,
    /// ...), and their bytes as stored.
    pub error_output_objects: Counter,
    pub error_output_bytes: Counter,
    /// `.DataFreshness`: age in seconds of the oldest record not yet delivered.
    pub data_freshness: Gauge<f64, AtomicU64>,
}

impl DeliveryFamilies {
    fn register(registry: &mut Registry, name: &str) -> Self {
        let mut counter = |suffix: &str, help: &str| {
            let f = Family::<StreamLabel, Counter>::default();
            registry.register(format!("{name}_{suffix}"), help.to_string(), f.clone());
            f
        };
        let bytes = counter("Bytes", "Record bytes delivered, before compression");
        let records = counter("Records", "Records delivered");
        let object_count = counter("ObjectCount", "Objects written");
        let put_requests = counter("PutRequests", "PUT calls, retries included");
        let success = counter("Success", "Successful PUT calls");
        let failures = counter("Failures", "Failed PUT calls");
        let stored_bytes = counter("StoredBytes", "Bytes of the objects written, as stored");
        let error_output_objects = counter("ErrorOutputObjects", "Error-output objects written");
        let error_output_bytes = counter("ErrorOutputBytes", "Bytes of the error-output objects written");
        let data_freshness = Family::<StreamLabel, Gauge<f64, AtomicU64>>::default();
        registry.register(
            format!("{name}_DataFreshness"),
            "Age in seconds of the oldest record not yet delivered",
            data_freshness.clone(),
        );
        Self {
            bytes,
            records,
            object_count,
            put_requests,
            success,
            failures,
            stored_bytes,
            error_output_objects,
            error_output_bytes,
            data_freshness,
        }
    }

    fn stream(&self, l: &StreamLabel) -> DeliveryMetrics {
        DeliveryMetrics {
            bytes: self.bytes.get_or_create(l).clone(),
            records: self.records.get_or_create(l).clone(),
            object_count: self.object_count.get_or_create(l).clone(),
            put_requests: self.put_requests.get_or_create(l).clone(),
            success: self.success.get_or_create(l).clone(),
            failures: self.failures.get_or_create(l).clone(),
            stored_bytes: self.stored_bytes.get_or_create(l).clone(),
            error_output_objects: self.error_output_objects.get_or_create(l).clone(),
            error_output_bytes: self.error_output_bytes.get_or_create(l).clone(),
            data_freshness: self.data_freshness.get_or_create(l).clone(),
        }
    }

    fn remove(&self, l: &StreamLabel) {
        for f in [
            &self.bytes,
            &self.records,
            &self.object_count,
            &self.put_requests,
            &self.success,
            &self.failures,
            &self.stored_bytes,
            &self.error_output_objects,
            &self.error_output_bytes,
        ] {
            f.remove(l);
        }
        self.data_freshness.remove(l);
    }
}

/// Processing and dynamic-partitioning metric families.
pub struct ProcessingFamilies {
    execute_duration: Histograms,
    execute_duration_total: Family<StreamLabel, Counter<f64, AtomicU64>>,
    execute_success: Family<StreamLabel, Gauge<f64, AtomicU64>>,
    invocations: Family<StreamLabel, Counter>,
    invocation_failures: Family<StreamLabel, Counter>,
    succeed_records: Family<StreamLabel, Counter>,
    succeed_bytes: Family<StreamLabel, Counter>,
    failed_records: Family<StreamLabel, Counter>,
    partition_count: Family<StreamLabel, Gauge>,
    partition_count_exceeded: Family<StreamLabel, Gauge>,
    active_partitions_limit: Family<StreamLabel, Gauge>,
    jq_duration: Histograms,
    conversion: [Family<StreamLabel, Counter>; 4],
    iceberg_freshness: Family<StreamLabel, Gauge<f64, AtomicU64>>,
    iceberg_commit_duration: Histograms,
    iceberg: [Family<StreamLabel, Counter>; 6],
}

/// One stream's processing handles.
#[derive(Clone)]
pub struct ProcessingMetrics {
    /// `ExecuteProcessing.Duration`: milliseconds per Lambda invocation (retries included).
    pub execute_duration: Histogram,
    /// spillway's own: milliseconds of all invocations (the dashboard's average duration).
    pub execute_duration_total: Counter<f64, AtomicU64>,
    /// `ExecuteProcessing.Success`: successful invocations / all invocations, since start.
    pub execute_success: Gauge<f64, AtomicU64>,
    pub invocations: Counter,
    pub invocation_failures: Counter,
    /// `SucceedProcessing.Records` / `.Bytes`: records the function returned `Ok`.
    pub succeed_records: Counter,
    pub succeed_bytes: Counter,
    /// Records sent to the error output by processing or partitioning.
    pub failed_records: Counter,
    /// `PartitionCount`: active partitions.
    pub partition_count: Gauge,
    /// `PartitionCountExceeded`: 1 while records are refused for the active-partition limit.
    pub partition_count_exceeded: Gauge,
    pub active_partitions_limit: Gauge,
    /// `JQProcessing.Duration`: milliseconds of jq per processed batch.
    pub jq_duration: Histogram,
    /// `SucceedConversion.Records` / `.Bytes`: records converted to Parquet / ORC (counted when
    /// their object is stored).
    pub succeed_conversion_records: Counter,
    pub succeed_conversion_bytes: Counter,
    /// `FailedConversion.Records` / `.Bytes`: records sent to `format-conversion-failed`.
    pub failed_conversion_records: Counter,
    pub failed_conversion_bytes: Counter,
    /// `DeliveryToIceberg.SuccessfulRowCount` / `.FailedRowCount` / `.Bytes` / `.Success`
    /// (commits).
    pub iceberg_successful_rows: Counter,
    pub iceberg_failed_rows: Counter,
    pub iceberg_bytes: Counter,
    pub iceberg_commits: Counter,
    /// spillway's own `DeliveryToIceberg.DataFiles` / `.DataFileBytes`: data files written by
    /// commits, and their bytes.
    pub iceberg_data_files: Counter,
    pub iceberg_data_file_bytes: Counter,
    /// `DeliveryToIceberg.DataFreshness`: age in seconds of the oldest record not yet committed
    /// to its table (or sent to the error output).
    pub iceberg_data_freshness: Gauge<f64, AtomicU64>,
    /// spillway's own: milliseconds per Iceberg append (data files written, snapshot committed).
    pub iceberg_commit_duration: Histogram,
}

impl ProcessingMetrics {
    /// Records one invocation.
    pub fn invocation(&self, duration: Duration, success: bool) {
        let ms = duration.as_secs_f64() * 1000.0;
        self.execute_duration.observe(ms);
        self.execute_duration_total.inc_by(ms);
        self.invocations.inc();
        if !success {
            self.invocation_failures.inc();
        }
        let total = self.invocations.get() as f64;
        self.execute_success.set((total - self.invocation_failures.get() as f64) / total);
    }
}

impl ProcessingFamilies {
    fn register(registry: &mut Registry) -> Self {
        let execute_duration: Histograms = Family::new_with_constructor(latency_histogram);
        registry.register(
            "ExecuteProcessing_Duration",
            "Milliseconds per Lambda invocation, retries included",
            execute_duration.clone(),
        );
        let execute_duration_total = Family::<StreamLabel, Counter<f64, AtomicU64>>::default();
        registry.register(
            "ExecuteProcessing_DurationTotal",
            "Milliseconds of all Lambda invocations, retries included",
            execute_duration_total.clone(),
        );
        let execute_success = Family::<StreamLabel, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "ExecuteProcessing_Success",
            "Successful Lambda invocations over all invocations",
            execute_success.clone(),
        );
        let mut counter = |name: &str, help: &str| {
            let f = Family::<StreamLabel, Counter>::default();
            registry.register(name, help, f.clone());
            f
        };
        let invocations = counter("ExecuteProcessing_Invocations", "Lambda invocations");
        let invocation_failures = counter("ExecuteProcessing_Failures", "Lambda invocations that failed");
        let succeed_records = counter("SucceedProcessing_Records", "Records the function returned Ok");
        let succeed_bytes = counter("SucceedProcessing_Bytes", "Bytes of the records the function returned Ok");
        let failed_records =
            counter("FailedProcessing_Records", "Records sent to the error output by processing or partitioning");
        let mut gauge = |name: &str, help: &str| {
            let f = Family::<StreamLabel, Gauge>::default();
            registry.register(name, help, f.clone());
            f
        };
        let partition_count = gauge("PartitionCount", "Active partitions");
        let partition_count_exceeded =
            gauge("PartitionCountExceeded", "1 while records are refused for the active-partition limit");
        let active_partitions_limit = gauge("ActivePartitionsLimit", "Active-partition limit");
        let jq_duration: Histograms = Family::new_with_constructor(latency_histogram);
        registry.register("JQProcessing_Duration", "Milliseconds of jq per processed batch", jq_duration.clone());
        let mut counter = |name: &str, help: &str| {
            let f = Family::<StreamLabel, Counter>::default();
            registry.register(name, help, f.clone());
            f
        };
        let conversion = [
            counter("SucceedConversion_Records", "Records converted to Parquet or ORC"),
            counter("SucceedConversion_Bytes", "Bytes of the records converted to Parquet or ORC"),
            counter("FailedConversion_Records", "Records that could not be converted"),
            counter("FailedConversion_Bytes", "Bytes of the records that could not be converted"),
        ];
        let iceberg = [
            counter("DeliveryToIceberg_SuccessfulRowCount", "Rows committed to Iceberg tables"),
            counter("DeliveryToIceberg_FailedRowCount", "Rows sent to the iceberg-failed error output"),
            counter("DeliveryToIceberg_Bytes", "Bytes of the records committed to Iceberg tables"),
            counter("DeliveryToIceberg_Success", "Iceberg commits"),
            counter("DeliveryToIceberg_DataFiles", "Data files written by Iceberg commits"),
            counter("DeliveryToIceberg_DataFileBytes", "Bytes of the data files written by Iceberg commits"),
        ];
        let iceberg_freshness = Family::<StreamLabel, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "DeliveryToIceberg_DataFreshness",
            "Age in seconds of the oldest record not yet committed to its Iceberg table",
            iceberg_freshness.clone(),
        );
        let iceberg_commit_duration: Histograms = Family::new_with_constructor(commit_histogram);
        registry.register(
            "DeliveryToIceberg_CommitDuration",
            "Milliseconds per Iceberg append: data files written and the snapshot committed",
            iceberg_commit_duration.clone(),
        );
        Self {
            execute_duration,
            execute_duration_total,
            execute_success,
            invocations,
            invocation_failures,
            succeed_records,
            succeed_bytes,
            failed_records,
            partition_count,
            partition_count_exceeded,
            active_partitions_limit,
            jq_duration,
            conversion,
            iceberg,
            iceberg_freshness,
            iceberg_commit_duration,
        }
    }

    fn stream(&self, l: &StreamLabel) -> ProcessingMetrics {
        ProcessingMetrics {
            execute_duration: self.execute_duration.get_or_create(l).clone(),
            execute_duration_total: self.execute_duration_total.get_or_create(l).clone(),
            execute_success: self.execute_success.get_or_create(l).clone(),
            invocations: self.invocations.get_or_create(l).clone(),
            invocation_failures: self.invocation_failures.get_or_create(l).clone(),
            succeed_records: self.succeed_records.get_or_create(l).clone(),
            succeed_bytes: self.succeed_bytes.get_or_create(l).clone(),
            failed_records: self.failed_records.get_or_create(l).clone(),
            partition_count: self.partition_count.get_or_create(l).clone(),
            partition_count_exceeded: self.partition_count_exceeded.get_or_create(l).clone(),
            active_partitions_limit: self.active_partitions_limit.get_or_create(l).clone(),
            jq_duration: self.jq_duration.get_or_create(l).clone(),
            succeed_conversion_records: self.conversion[0].get_or_create(l).clone(),
            succeed_conversion_bytes: self.conversion[1].get_or_create(l).clone(),
            failed_conversion_records: self.conversion[2].get_or_create(l).clone(),
            failed_conversion_bytes: self.conversion[3].get_or_create(l).clone(),
            iceberg_successful_rows: self.iceberg[0].get_or_create(l).clone(),
            iceberg_failed_rows: self.iceberg[1].get_or_create(l).clone(),
            iceberg_bytes: self.iceberg[2].get_or_create(l).clone(),
            iceberg_commits: self.iceberg[3].get_or_create(l).clone(),
            iceberg_data_files: self.iceberg[4].get_or_create(l).clone(),
            iceberg_data_file_bytes: self.iceberg[5].get_or_create(l).clone(),
            iceberg_data_freshness: self.iceberg_freshness.get_or_create(l).clone(),
            iceberg_commit_duration: self.iceberg_commit_duration.get_or_create(l).clone(),
        }
    }

    fn remove(&self, l: &StreamLabel) {
        self.execute_duration.remove(l);
        self.execute_duration_total.remove(l);
        self.execute_success.remove(l);
        for f in [&self.invocations, &self.invocation_failures, &self.succeed_records, &self.succeed_bytes] {
            f.remove(l);
        }
        self.failed_records.remove(l);
        for f in [&self.partition_count, &self.partition_count_exceeded, &self.active_partitions_limit] {
            f.remove(l);
        }
        self.jq_duration.remove(l);
        for f in self.conversion.iter().chain(&self.iceberg) {
            f.remove(l);
        }
        self.iceberg_freshness.remove(l);
        self.iceberg_commit_duration.remove(l);
    }
}

/// The dashboard's series of a stream (all cumulative but `DataFreshness`), built from the metrics
/// above: delivery sums the S3 and Iceberg families, `FailedRecords` every error-output cause.
pub const DASHBOARD_SERIES: [&str; 17] = [
    "IncomingRecords",
    "IncomingBytes",
    "ThrottledRecords",
    "DeliveredRecords",
    "DeliveredBytes",
    "DeliverySuccess",
    "DeliveryFailures",
    "FailedRecords",
    "DataFreshness",
    "ProcessingInvocations",
    "ProcessingErrors",
    "ProcessingDurationSum",
    "ProcessingDurationCount",
    "StoredObjects",
    "StoredBytes",
    "ErrorObjects",
    "ErrorBytes",
];

/// Values in the order of [`DASHBOARD_SERIES`].
pub type DashboardValues = [f64; DASHBOARD_SERIES.len()];

/// All metric families.
pub struct Metrics {
    registry: Registry,
    delivery_to_s3: DeliveryFamilies,
    backup_to_s3: DeliveryFamilies,
    processing: ProcessingFamilies,
    incoming_records: Family<StreamLabel, Counter>,
    incoming_bytes: Family<StreamLabel, Counter>,
    incoming_put_requests: Family<StreamLabel, Counter>,
    throttled_records: Family<StreamLabel, Counter>,
    put_record_requests: Family<StreamLabel, Counter>,
    put_record_bytes: Family<StreamLabel, Counter>,
    put_record_batch_requests: Family<StreamLabel, Counter>,
    put_record_batch_records: Family<StreamLabel, Counter>,
    put_record_batch_bytes: Family<StreamLabel, Counter>,
    put_record_latency: Histograms,
    put_record_batch_latency: Histograms,
}

/// One stream's metric handles.
#[derive(Clone)]
pub struct StreamMetrics {
    pub incoming_records: Counter,
    pub incoming_bytes: Counter,
    pub incoming_put_requests: Counter,
    pub throttled_records: Counter,
    pub put_record_requests: Counter,
    pub put_record_bytes: Counter,
    pub put_record_batch_requests: Counter,
    pub put_record_batch_records: Counter,
    pub put_record_batch_bytes: Counter,
    pub put_record_latency: Histogram,
    pub put_record_batch_latency: Histogram,
}

impl StreamMetrics {
    /// Records an accepted put.
    pub fn accepted(&self, batch: bool, records: u64, bytes: u64, latency: Duration) {
        self.incoming_records.inc_by(records);
        self.incoming_bytes.inc_by(bytes);
        self.incoming_put_requests.inc();
        let ms = latency.as_secs_f64() * 1000.0;
        if batch {
            self.put_record_batch_requests.inc();
            self.put_record_batch_records.inc_by(records);
            self.put_record_batch_bytes.inc_by(bytes);
            self.put_record_batch_latency.observe(ms);
        } else {
            self.put_record_requests.inc();
            self.put_record_bytes.inc_by(bytes);
            self.put_record_latency.observe(ms);
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let mut counter = |name: &str, help: &str| {
            let f = Family::<StreamLabel, Counter>::default();
            registry.register(name, help, f.clone());
            f
        };
        let incoming_records = counter("IncomingRecords", "Records accepted by PutRecord and PutRecordBatch");
        let incoming_bytes = counter("IncomingBytes", "Bytes accepted by PutRecord and PutRecordBatch");
        let incoming_put_requests = counter("IncomingPutRequests", "Successful PutRecord and PutRecordBatch calls");
        let throttled_records = counter("ThrottledRecords", "Records refused with ServiceUnavailableException");
        let put_record_requests = counter("PutRecord_Requests", "PutRecord calls");
        let put_record_bytes = counter("PutRecord_Bytes", "Bytes put with PutRecord");
        let put_record_batch_requests = counter("PutRecordBatch_Requests", "PutRecordBatch calls");
        let put_record_batch_records = counter("PutRecordBatch_Records", "Records put with PutRecordBatch");
        let put_record_batch_bytes = counter("PutRecordBatch_Bytes", "Bytes put with PutRecordBatch");
        let put_record_latency: Histograms = Family::new_with_constructor(latency_histogram);
        registry.register("PutRecord_Latency", "PutRecord latency in milliseconds", put_record_latency.clone());
        let put_record_batch_latency: Histograms = Family::new_with_constructor(latency_histogram);
        registry.register(
            "PutRecordBatch_Latency",
            "PutRecordBatch latency in milliseconds",
            put_record_batch_latency.clone(),
        );
        let delivery_to_s3 = DeliveryFamilies::register(&mut registry, "DeliveryToS3");
        let backup_to_s3 = DeliveryFamilies::register(&mut registry, "BackupToS3");
        let processing = ProcessingFamilies::register(&mut registry);
        Self {
            registry,
            delivery_to_s3,
            backup_to_s3,
            processing,
            incoming_records,
            incoming_bytes,
            incoming_put_requests,
            throttled_records,
            put_record_requests,
            put_record_bytes,
            put_record_batch_requests,
            put_record_batch_records,
            put_record_batch_bytes,
            put_record_latency,
            put_record_batch_latency,
        }
    }

    /// The handles of one stream (created on first use).
    pub fn stream(&self, name: &str) -> StreamMetrics {
        let l = StreamLabel { delivery_stream: name.to_string() };
        StreamMetrics {
            incoming_records: self.incoming_records.get_or_create(&l).clone(),
            incoming_bytes: self.incoming_bytes.get_or_create(&l).clone(),
            incoming_put_requests: self.incoming_put_requests.get_or_create(&l).clone(),
            throttled_records: self.throttled_records.get_or_create(&l).clone(),
            put_record_requests: self.put_record_requests.get_or_create(&l).clone(),
            put_record_bytes: self.put_record_bytes.get_or_create(&l).clone(),
            put_record_batch_requests: self.put_record_batch_requests.get_or_create(&l).clone(),
            put_record_batch_records: self.put_record_batch_records.get_or_create(&l).clone(),
            put_record_batch_bytes: self.put_record_batch_bytes.get_or_create(&l).clone(),
            put_record_latency: self.put_record_latency.get_or_create(&l).clone(),
            put_record_batch_latency: self.put_record_batch_latency.get_or_create(&l).clone(),
        }
    }

    /// Delivery handles of a stream: (`DeliveryToS3`, `BackupToS3`).
    pub fn delivery(&self, name: &str) -> (DeliveryMetrics, DeliveryMetrics) {
        let l = StreamLabel { delivery_stream: name.to_string() };
        (self.delivery_to_s3.stream(&l), self.backup_to_s3.stream(&l))
    }

    /// Processing handles of a stream.
    pub fn processing(&self, name: &str) -> ProcessingMetrics {
        self.processing.stream(&StreamLabel { delivery_stream: name.to_string() })
    }

    /// Drops the series of a deleted stream.
    pub fn remove_stream(&self, name: &str) {
        let l = StreamLabel { delivery_stream: name.to_string() };
        self.processing.remove(&l);
        self.delivery_to_s3.remove(&l);
        self.backup_to_s3.remove(&l);
        for f in [
            &self.incoming_records,
            &self.incoming_bytes,
            &self.incoming_put_requests,
            &self.throttled_records,
            &self.put_record_requests,
            &self.put_record_bytes,
            &self.put_record_batch_requests,
            &self.put_record_batch_records,
            &self.put_record_batch_bytes,
        ] {
            f.remove(&l);
        }
        self.put_record_latency.remove(&l);
        self.put_record_batch_latency.remove(&l);
    }

    /// The dashboard's values of one stream, in the order of [`DASHBOARD_SERIES`] (without creating
    /// series of a stream that has none).
    pub fn dashboard_values(&self, name: &str) -> DashboardValues {
        let l = StreamLabel { delivery_stream: name.to_string() };
        let c = |f: &Family<StreamLabel, Counter>| f.get(&l).map_or(0.0, |c| c.get() as f64);
        let g = |f: &Family<StreamLabel, Gauge<f64, AtomicU64>>| f.get(&l).map_or(0.0, |g| g.get());
        let (s3, p) = (&self.delivery_to_s3, &self.processing);
        let duration = p.execute_duration_total.get(&l).map_or(0.0, |c| c.get());
        [
            c(&self.incoming_records),
            c(&self.incoming_bytes),
            c(&self.throttled_records),
            c(&s3.records) + c(&p.iceberg[0]),
            c(&s3.bytes) + c(&p.iceberg[2]),
            c(&s3.success) + c(&p.iceberg[3]),
            c(&s3.failures),
            c(&p.failed_records) + c(&p.conversion[2]) + c(&p.iceberg[1]),
            g(&s3.data_freshness).max(g(&p.iceberg_freshness)),
            c(&p.invocations),
            c(&p.invocation_failures),
            duration,
            c(&p.invocations),
            c(&s3.object_count) + c(&p.iceberg[4]),
            c(&s3.stored_bytes) + c(&p.iceberg[5]),
            c(&s3.error_output_objects),
            c(&s3.error_output_bytes),
        ]
    }

    /// OpenMetrics text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_firehose_names_per_stream() {
        let m = Metrics::new();
        let s = m.stream("orders");
        s.accepted(true, 500, 100_000, Duration::from_millis(3));
        let text = m.render();
        assert!(text.contains("IncomingRecords_total{delivery_stream=\"orders\"} 500"), "{text}");
        assert!(text.contains("IncomingBytes_total{delivery_stream=\"orders\"} 100000"));
        assert!(text.contains("PutRecordBatch_Latency_count{delivery_stream=\"orders\"} 1"));
        m.remove_stream("orders");
        assert!(!m.render().contains("orders"));
    }
}
