//! The server's core: the stream registry in memory, the control plane over it, and ingest into the
//! WAL. Implements the API's [`Backend`] port.
//!
//! Invariants:
//! - a stream is in the in-memory map iff its definition file exists (saved before insertion,
//!   removed before removal);
//! - a Put is answered with a position only after `Wal::append` returned, i.e. after fdatasync;
//! - control-plane operations are serialized by the map's write lock and run on blocking threads
//!   (they fsync); the put path takes only read locks.

use crate::conversion::ConversionPlan;
use crate::dashboard::History;
use crate::logs::{ErrorLogs, StreamLog, StreamLogging};
use crate::metrics::{Metrics, StreamMetrics};
use crate::processing::ProcessingPlan;
use crate::processors::functions::FunctionRegistry;
use crate::registry::{StoreError, StreamStore};
use crate::state::StateStore;
use crate::supervisor::{self, Command, Resources, StreamPlan, SupervisorHandle};
use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use serde_json::{Value, json};
use spillway_api::{Backend, PutOutcome};
use spillway_destination::ObjectStores;
use spillway_format::table::TableRegistry;
use spillway_model::destination::DestinationKind;
use spillway_model::iceberg::IcebergPlan;
use spillway_model::plan::S3Plan;

/// The Create member of Iceberg destinations.
const ICEBERG_KIND: &str = "IcebergDestinationConfiguration";
use spillway_model::put::PutRequest;
use spillway_model::stream::{self, Ctx, Refusal, StreamRecord};
use spillway_model::{ApiError, ErrorCode, Operation, entry};
use spillway_wal::{AppendError, Wal};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::oneshot;

/// How long `POST /_spillway/streams/{name}/flush` waits for delivery.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(60);

/// Streams per account and Region (the quota of the largest Regions, reference §7).
pub const MAX_STREAMS: usize = 5_000;

/// Identity used in ARNs and messages, and where things are kept.
#[derive(Clone)]
pub struct ServiceConfig {
    pub region: String,
    pub account_id: String,
    /// `<data-dir>/streams`
    pub streams_dir: PathBuf,
    /// `<data-dir>/delivery`
    pub delivery_dir: PathBuf,
    /// Buckets: local folders under `<data-dir>/buckets` or S3-compatible stores.
    pub stores: Arc<ObjectStores>,
    /// Deflate level of GZIP and ZIP objects.
    pub gzip_level: u32,
    /// Functions of Lambda processors (`[functions]` of spillway.toml).
    pub functions: Arc<FunctionRegistry>,
    /// `<data-dir>/spill`: partition buffers beyond their memory budget.
    pub spill_dir: PathBuf,
    /// Active partitions per stream with dynamic partitioning (default 500, as Firehose).
    pub active_partitions_limit: usize,
    /// Memory of one stream's partition buffers before they spill to disk.
    pub partition_memory_bytes: usize,
    /// Table definitions for record format conversion (`[[tables]]`, `<data-dir>/tables`).
    pub tables: Arc<TableRegistry>,
    /// The catalogs of Iceberg streams: the embedded one in the data dir, REST ones by name.
    pub iceberg: Arc<spillway_destination::iceberg::catalogs::Catalogs>,
    /// `<data-dir>/logs`: error events of streams with `CloudWatchLoggingOptions` enabled.
    pub logs_dir: PathBuf,
}

/// Firehose's default active-partition limit per stream (reference §12).
pub const DEFAULT_ACTIVE_PARTITIONS_LIMIT: usize = 500;
/// Default memory of one stream's partition buffers.
pub const DEFAULT_PARTITION_MEMORY_BYTES: usize = 64 << 20;

/// One live delivery stream.
pub struct Stream {
    pub record: RwLock<StreamRecord>,
    pub metrics: StreamMetrics,
}

struct Inner {
    config: ServiceConfig,
    state_store: StateStore,
    supervisors: Mutex<HashMap<String, SupervisorHandle>>,
    wal: Wal,
    store: StreamStore,
    metrics: Metrics,
    streams: RwLock<BTreeMap<String, Arc<Stream>>>,
    started: Instant,
    logs: Arc<ErrorLogs>,
    history: History,
}

/// The backend behind the API. Cheap to clone.
#[derive(Clone)]
pub struct Service {
    inner: Arc<Inner>,
}

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("delivery state folder: {0}")]
    DeliveryState(#[from] std::io::Error),
}

fn now_secs() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

fn now_millis() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// What this build can run: DirectPut streams delivering to S3 / Extended S3 (with data
/// transformation, dynamic partitioning and record format conversion) or to Iceberg tables of the
/// embedded catalog. Other sources and
/// destinations are refused honestly (CREATING_FAILED, or InvalidArgumentException on update)
/// rather than delivered differently from what the configuration asks; a configuration the real
/// service would refuse at the API (bad processor parameters, an unknown table) is refused with
/// InvalidArgumentException. `functions` resolves LambdaArns, `tables` the conversion's table.
pub fn capabilities(
    config: &ServiceConfig,
    stream_type: &str,
    kind: &DestinationKind,
    destination: &Value,
) -> Result<(), Refusal> {
    if stream_type != "DirectPut" {
        return Err(Refusal::Unsupported(format!(
            "spillway cannot read from {stream_type} sources yet; only DirectPut streams are supported"
        )));
    }
    let iceberg = kind.create == ICEBERG_KIND;
    if !iceberg && !kind.is_s3() {
        return Err(Refusal::Unsupported(format!(
            "spillway cannot deliver to {} destinations yet; only S3, Extended S3 and Iceberg destinations are supported",
            kind.label
        )));
    }
    let processing =
        ProcessingPlan::from_config(destination).map_err(|e| Refusal::Invalid(ApiError::invalid_argument(e)))?;
    if let Some(lambda) = processing.as_ref().and_then(|p| p.lambda.as_ref()) {
        // Not a configuration error in AWS terms: the function exists there, spillway does not
        // know where it runs. The stream cannot run: CREATING_FAILED, with what to add.
        config.functions.check(&lambda.lambda_arn)?;
    }
    if iceberg {
        IcebergPlan::from_config(destination).map_err(Refusal::Invalid)?;
        return Ok(());
    }
    let plan = S3Plan::from_config(destination).map_err(Refusal::Invalid)?;
    if plan.dynamic_partitioning {
        ProcessingPlan::check_partition_keys(processing.as_ref(), &plan.main.prefix)
            .map_err(|e| Refusal::Invalid(ApiError::invalid_argument(e)))?;
    }
    ConversionPlan::from_config(destination, &config.tables, &config.region, &config.account_id)
        .map_err(Refusal::Invalid)?;
    Ok(())
}

impl Service {
    /// Loads the registry and wires it to an open WAL.
    pub fn open(config: ServiceConfig, wal: Wal) -> Result<Self, ServiceError> {
        let (store, records) = StreamStore::open(&config.streams_dir)?;
        let metrics = Metrics::new();
        let mut streams = BTreeMap::new();
        for r in records {
            let m = metrics.stream(&r.name);
            streams.insert(r.name.clone(), Arc::new(Stream { record: RwLock::new(r), metrics: m }));
        }
        tracing::info!(streams = streams.len(), "stream registry loaded");
        // A crash between removing a stream's file and retiring its tag leaves entries nobody will
        // read; retire them so their segments can go.
        let known: std::collections::HashSet<u64> = streams.values().map(|s| s.record.read().id).collect();
        for tag in wal.live_tags() {
            if !known.contains(&tag)
                && let Err(e) = wal.retire(tag)
            {
                tracing::warn!(error = %e, tag, "cannot retire the WAL tag of a deleted stream");
            }
        }
        let state_store = StateStore::new(&config.delivery_dir)?;
        let logs = Arc::new(ErrorLogs::new(&config.logs_dir, true));
        Ok(Self {
            inner: Arc::new(Inner {
                logs,
                history: History::default(),
                state_store,
                supervisors: Mutex::new(HashMap::new()),
                config,
                wal,
                store,
                metrics,
                streams: RwLock::new(streams),
                started: Instant::now(),
            }),
        })
    }

    pub fn wal(&self) -> &Wal {
        &self.inner.wal
    }

    fn resources(&self) -> Resources {
        Resources {
            wal: self.inner.wal.clone(),
            stores: Arc::clone(&self.inner.config.stores),
            state_store: self.inner.state_store.clone(),
            gzip_level: self.inner.config.gzip_level,
            functions: Arc::clone(&self.inner.config.functions),
            spill_dir: self.inner.config.spill_dir.clone(),
            active_partitions_limit: self.inner.config.active_partitions_limit,
            partition_memory_bytes: self.inner.config.partition_memory_bytes,
            iceberg: Arc::clone(&self.inner.config.iceberg),
            logs: Arc::clone(&self.inner.logs),
        }
    }

    fn capabilities(&self, stream_type: &str, kind: &DestinationKind, config: &Value) -> Result<(), Refusal> {
        capabilities(&self.inner.config, stream_type, kind, config)
    }

    fn stream_plan(&self, record: &StreamRecord) -> Option<Arc<StreamPlan>> {
        if !record.is_active() {
            return None;
        }
        if record.kind().create == ICEBERG_KIND {
            return self.iceberg_stream_plan(record);
        }
        if !record.kind().is_s3() {
            return None;
        }
        let cfg = &self.inner.config;
        let plan = S3Plan::from_config(&record.destination)
            .map_err(|e| e.message)
            .and_then(|s3| ProcessingPlan::from_config(&record.destination).map(|p| (s3, p)))
            .and_then(|(s3, p)| {
                ConversionPlan::from_config(&record.destination, &cfg.tables, &cfg.region, &cfg.account_id)
                    .map(|c| (s3, p, c))
                    .map_err(|e| e.message)
            });
        match plan {
            Ok((s3, processing, conversion)) => Some(self.new_plan(record, s3, processing, conversion, None)),
            Err(e) => {
                tracing::error!(stream = %record.name, error = %e, "stored configuration has no delivery plan");
                None
            }
        }
    }

    /// The plan of an Iceberg stream: its tables and catalog, and the `S3Configuration` lane of
    /// error records (and, with `S3BackupMode: AllData`, of the source records), buffered by the
    /// Iceberg hints.
    fn iceberg_stream_plan(&self, record: &StreamRecord) -> Option<Arc<StreamPlan>> {
        let built = IcebergPlan::from_config(&record.destination)
            .map_err(|e| e.message)
            .and_then(|ice| ProcessingPlan::from_config(&record.destination).map(|p| (ice, p)));
        let (ice, processing) = match built {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(stream = %record.name, error = %e, "stored configuration has no delivery plan");
                return None;
            }
        };
        let mut s3 = ice.s3.clone();
        s3.backup = ice.backup_all.then(|| s3.main.clone());
        s3.main.buffer_bytes = ice.buffer_bytes;
        s3.main.interval_secs = ice.interval_secs;
        s3.retry_duration_secs = Some(ice.retry_duration_secs);
        Some(self.new_plan(record, s3, processing, None, Some(ice)))
    }

    fn new_plan(
        &self,
        record: &StreamRecord,
        s3: S3Plan,
        processing: Option<ProcessingPlan>,
        conversion: Option<ConversionPlan>,
        iceberg: Option<IcebergPlan>,
    ) -> Arc<StreamPlan> {
        Arc::new(StreamPlan {
            name: record.name.clone(),
            id: record.id,
            version_id: record.version_id,
            arn: self.ctx().arn(&record.name),
            region: self.inner.config.region.clone(),
            s3,
            processing: processing.map(Arc::new),
            conversion: conversion.map(Arc::new),
            iceberg: iceberg.map(Arc::new),
            log: Arc::new(StreamLog {
                name: record.name.clone(),
                arn: self.ctx().arn(&record.name),
                version_id: record.version_id,
                logging: StreamLogging::from_destination(&record.destination, &record.name),
            }),
        })
    }

    /// Starts delivery for a stream if it is ACTIVE (must run inside the runtime).
    fn start_supervisor(&self, record: &StreamRecord) {
        let Some(plan) = self.stream_plan(record) else { return };
        let metrics = self.inner.metrics.delivery(&record.name);
        let processing = self.inner.metrics.processing(&record.name);
        let handle = supervisor::spawn(plan, self.resources(), metrics, processing);
        self.inner.supervisors.lock().insert(record.name.clone(), handle);
    }

    /// Starts the supervisors of every ACTIVE stream, and the dashboard's sampling (call once,
    /// inside the runtime).
    pub fn start_delivery(&self) {
        let records: Vec<StreamRecord> = self.inner.streams.read().values().map(|s| s.record.read().clone()).collect();
        for r in &records {
            self.start_supervisor(r);
        }
        let inner = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(crate::dashboard::SAMPLE_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(inner) = inner.upgrade() else { return };
                let names: Vec<String> = inner.streams.read().keys().cloned().collect();
                inner.history.sample(names.iter().map(String::as_str), &inner.metrics, now_millis());
            }
        });
    }

    /// `GET /_spillway/dashboard`: every stream with its configuration and current totals, and the
    /// series of the selected one (`selected` if it exists, else the first by name).
    pub fn dashboard(&self, selected: Option<&str>) -> Value {
        let records: Vec<StreamRecord> = self.inner.streams.read().values().map(|s| s.record.read().clone()).collect();
        let selected = selected
            .filter(|s| records.iter().any(|r| r.name == *s))
            .or_else(|| records.first().map(|r| r.name.as_str()))
            .map(str::to_string);
        let now = now_millis();
        let mut streams = Vec::with_capacity(records.len());
        let mut series = Value::Null;
        for r in &records {
            let described =
                self.control_blocking(Operation::DescribeDeliveryStream, &json!({"DeliveryStreamName": r.name}));
            let Ok(mut described) = described else { continue };
            let description = described["DeliveryStreamDescription"].take();
            let values = self.inner.metrics.dashboard_values(&r.name);
            if selected.as_deref() == Some(r.name.as_str()) {
                series = self.inner.history.series(&r.name, &values, now);
            }
            let kind = r.kind();
            let summary: Vec<[String; 2]> =
                crate::dashboard::summary(&description).into_iter().map(|(k, v)| [k, v]).collect();
            streams.push(json!({
                "name": r.name,
                "status": description["DeliveryStreamStatus"],
                "type": r.stream_type,
                "destination": kind.label,
                "metric_prefix": if kind.create == ICEBERG_KIND { "DeliveryToIceberg" } else { "DeliveryToS3" },
                "failure": description.pointer("/FailureDescription/Details"),
                "summary": summary,
                "arn": description["DeliveryStreamARN"],
                "totals": crate::dashboard::totals(&values),
            }));
        }
        json!({
            "server": {
                "version": env!("CARGO_PKG_VERSION"),
                "region": self.inner.config.region,
                "account_id": self.inner.config.account_id,
                "uptime_secs": self.inner.started.elapsed().as_secs_f64(),
                "now_ms": now,
                "sample_interval_ms": crate::dashboard::SAMPLE_INTERVAL.as_millis() as u64,
            },
            "selected": selected,
            "streams": streams,
            "series": series,
        })
    }

    /// Graceful shutdown: every supervisor delivers what it buffers until `deadline`; the rest stays
    /// in the WAL for the next start.
    pub async fn shutdown(&self, deadline: Instant) {
        let handles: Vec<(String, SupervisorHandle)> = self.inner.supervisors.lock().drain().collect();
        let mut waits = Vec::new();
        for (name, h) in handles {
            let (tx, rx) = oneshot::channel();
            if h.tx.send(Command::Stop { deadline: Some(deadline), reply: tx }).await.is_ok() {
                waits.push((name, rx, h.task));
            }
        }
        for (name, rx, task) in waits {
            let grace = deadline + Duration::from_secs(2);
            if tokio::time::timeout_at(grace.into(), rx).await.is_err() {
                tracing::warn!(stream = %name, "supervisor did not stop in time");
                task.abort();
            }
        }
    }

    /// `POST /_spillway/streams/{name}/flush`.
    pub async fn flush_stream(&self, name: &str) -> Result<Value, ApiError> {
        let s = self.get(name)?;
        let tx = self.inner.supervisors.lock().get(name).map(|h| h.tx.clone());
        let Some(tx) = tx else {
            let r = s.record.read();
            return Err(ApiError::invalid_argument(format!(
                "Firehose {} is in status {} and has nothing to deliver.",
                r.name, r.status
            )));
        };
        let (reply, rx) = oneshot::channel();
        let upto = self.inner.wal.next_lsn();
        tx.send(Command::Flush { upto, reply }).await.map_err(|_| ApiError::internal())?;
        match tokio::time::timeout(FLUSH_TIMEOUT, rx).await {
            Ok(Ok(report)) => Ok(serde_json::to_value(report).unwrap_or_default()),
            Ok(Err(_)) => Err(ApiError::internal()),
            Err(_) => {
                let failure = self.failure_of(name).unwrap_or_else(|| "delivery is slow".into());
                Err(ApiError::new(ErrorCode::ServiceUnavailable, format!("flush did not finish in time: {failure}")))
            }
        }
    }

    fn failure_of(&self, name: &str) -> Option<String> {
        self.inner.supervisors.lock().get(name).and_then(|h| h.runtime.failure.lock().clone())
    }

    fn ctx(&self) -> Ctx<'_> {
        Ctx { region: &self.inner.config.region, account_id: &self.inner.config.account_id, now: now_secs() }
    }

    fn get(&self, name: &str) -> Result<Arc<Stream>, ApiError> {
        self.inner.streams.read().get(name).cloned().ok_or_else(|| self.ctx().not_found(name))
    }

    fn persist(&self, record: &StreamRecord) -> Result<(), ApiError> {
        self.inner.store.save(record).map_err(|e| {
            tracing::error!(error = %e, stream = %record.name, "cannot save stream definition");
            ApiError::internal()
        })
    }

    /// Applies `f` to a copy of a stream's record; saves and installs the copy if `f` changed it.
    fn mutate<T>(
        &self,
        input: &Value,
        f: impl FnOnce(&mut StreamRecord) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        let name = stream::stream_name(input)?;
        let _serial = self.inner.streams.write();
        let s = _serial.get(name).cloned().ok_or_else(|| self.ctx().not_found(name))?;
        let mut copy = s.record.read().clone();
        let out = f(&mut copy)?;
        if copy != *s.record.read() {
            self.persist(&copy)?;
            *s.record.write() = copy;
        }
        Ok(out)
    }

    /// Runs one control-plane operation (blocking: it may fsync).
    pub fn control_blocking(&self, op: Operation, input: &Value) -> Result<Value, ApiError> {
        match op {
            Operation::CreateDeliveryStream => self.create(input),
            Operation::DeleteDeliveryStream => self.delete(input),
            Operation::DescribeDeliveryStream => {
                let name = stream::stream_name(input)?;
                let s = self.get(name)?;
                let start = input.get("ExclusiveStartDestinationId").and_then(Value::as_str);
                let mut d = s.record.read().describe(start);
                // A failing destination does not change the status (as with Firehose), but says why.
                if let (Some(failure), Some(obj)) = (self.failure_of(name), d.as_object_mut()) {
                    obj.entry("FailureDescription")
                        .or_insert_with(|| json!({"Type": "UNKNOWN_ERROR", "Details": failure}));
                }
                Ok(json!({"DeliveryStreamDescription": d}))
            }
            Operation::ListDeliveryStreams => {
                let streams = self.inner.streams.read();
                let pairs: Vec<(String, String)> = streams
                    .values()
                    .map(|s| {
                        let r = s.record.read();
                        (r.name.clone(), r.stream_type.clone())
                    })
                    .collect();
                stream::list(input, pairs.iter().map(|(n, t)| (n.as_str(), t.as_str())))
            }
            Operation::UpdateDestination => {
                let ctx = self.ctx();
                let changed =
                    self.mutate(input, |r| r.update_destination(input, ctx, &|t, k, c| self.capabilities(t, k, c)))?;
                if changed {
                    let name = stream::stream_name(input)?;
                    let record = self.get(name)?.record.read().clone();
                    let tx = self.inner.supervisors.lock().get(name).map(|h| h.tx.clone());
                    if let (Some(plan), Some(tx)) = (self.stream_plan(&record), tx) {
                        // This runs on a blocking thread; wait for room rather than lose the update.
                        if let Err(e) = tx.blocking_send(Command::Update(plan)) {
                            tracing::warn!(stream = name, error = %e, "supervisor is gone; update not applied");
                        }
                    }
                }
                Ok(json!({}))
            }
            Operation::TagDeliveryStream => self.mutate(input, |r| r.tag(input)).map(|_| json!({})),
            Operation::UntagDeliveryStream => self.mutate(input, |r| r.untag(input)).map(|_| json!({})),
            Operation::ListTagsForDeliveryStream => {
                let name = stream::stream_name(input)?;
                self.get(name)?.record.read().list_tags(input)
            }
            Operation::StartDeliveryStreamEncryption => {
                let now = now_secs();
                self.mutate(input, |r| r.start_encryption(input, now)).map(|_| json!({}))
            }
            Operation::StopDeliveryStreamEncryption => {
                let now = now_secs();
                self.mutate(input, |r| r.stop_encryption(now)).map(|_| json!({}))
            }
            Operation::PutRecord | Operation::PutRecordBatch => Err(ApiError::internal()),
        }
    }

    fn create(&self, input: &Value) -> Result<Value, ApiError> {
        let ctx = self.ctx();
        // Validate before taking the lock: a bad request must not wait on others.
        let record = stream::create(input, new_stream_id(), ctx, &|t, k, c| self.capabilities(t, k, c))?;
        let mut streams = self.inner.streams.write();
        if streams.contains_key(&record.name) {
            return Err(ApiError::in_use(format!(
                "Firehose {} under accountId {} already exists",
                record.name, ctx.account_id
            )));
        }
        if streams.len() >= MAX_STREAMS {
            return Err(ApiError::new(
                ErrorCode::LimitExceeded,
                format!("You have already reached the limit of {MAX_STREAMS} delivery streams for this account."),
            ));
        }
        self.persist(&record)?;
        tracing::info!(stream = %record.name, status = %record.status, id = record.id, "delivery stream created");
        self.start_supervisor(&record);
        let arn = record.arn.clone();
        let m = self.inner.metrics.stream(&record.name);
        streams.insert(record.name.clone(), Arc::new(Stream { record: RwLock::new(record), metrics: m }));
        Ok(json!({"DeliveryStreamARN": arn}))
    }

    fn delete(&self, input: &Value) -> Result<Value, ApiError> {
        let name = stream::stream_name(input)?;
        let mut streams = self.inner.streams.write();
        let s = streams.get(name).cloned().ok_or_else(|| self.ctx().not_found(name))?;
        let id = s.record.read().id;
        self.inner.store.remove(name).map_err(|e| {
            tracing::error!(error = %e, stream = name, "cannot remove stream definition");
            ApiError::internal()
        })?;
        streams.remove(name);
        drop(streams);
        if let Some(h) = self.inner.supervisors.lock().remove(name) {
            let (tx, _rx) = oneshot::channel();
            // Buffered records of a deleted stream are discarded, as Firehose does.
            let _ = h.tx.try_send(Command::Stop { deadline: None, reply: tx });
            h.task.abort();
        }
        if let Err(e) = self.inner.state_store.remove(id) {
            tracing::warn!(error = %e, stream = name, "cannot remove the delivery state");
        }
        // Its records are discarded, as the real service does with buffered data of a deleted stream.
        if let Err(e) = self.inner.wal.retire(id) {
            tracing::warn!(error = %e, stream = name, "cannot retire the stream's WAL tag; its segments are kept");
        }
        self.inner.metrics.remove_stream(name);
        tracing::info!(stream = name, "delivery stream deleted");
        Ok(json!({}))
    }

    /// Ingest: one WAL entry per request, answered after fsync.
    pub async fn put_records(
        &self,
        op: Operation,
        req: PutRequest<'_>,
        started: Instant,
    ) -> Result<PutOutcome, ApiError> {
        let s = self.get(&req.stream_name)?;
        let (id, encrypted) = {
            let r = s.record.read();
            r.check_accepts_records(self.ctx())?;
            (r.id, r.encrypted())
        };
        let n = req.records.len() as u64;
        let bytes = req.decoded_bytes as u64;
        let payload = entry::encode(&req, now_millis())?;
        drop(req);
        match self.inner.wal.append(id, Bytes::from(payload)).await {
            Ok(lsn) => {
                s.metrics.accepted(op == Operation::PutRecordBatch, n, bytes, started.elapsed());
                Ok(PutOutcome::Stored { wal_id: self.inner.wal.wal_id(), lsn, encrypted })
            }
            Err(AppendError::QuotaExceeded { .. } | AppendError::NoSpace) => {
                s.metrics.throttled_records.inc_by(n);
                tracing::warn!(stream = %s.record.read().name, "WAL is full; ingest throttled");
                Ok(PutOutcome::Throttled { encrypted })
            }
            // The stream was deleted while this request waited.
            Err(AppendError::Retired { .. }) => Err(self.ctx().not_found(&s.record.read().name)),
            Err(e) => {
                tracing::error!(error = %e, "WAL append failed");
                Err(ApiError::internal())
            }
        }
    }
}

/// A fresh WAL tag: random, so that a tag is never reused, also across deletions and restarts.
fn new_stream_id() -> u64 {
    let (hi, lo) = uuid::Uuid::new_v4().as_u64_pair();
    (hi ^ lo) | 1
}

impl Backend for Service {
    async fn control(&self, op: Operation, input: Value) -> Result<Value, ApiError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.control_blocking(op, &input)).await.map_err(|e| {
            tracing::error!(error = %e, "control-plane task failed");
            ApiError::internal()
        })?
    }

    fn put<'a>(
        &'a self,
        op: Operation,
        req: PutRequest<'a>,
        started: Instant,
    ) -> impl std::future::Future<Output = Result<PutOutcome, ApiError>> + Send + 'a {
        self.put_records(op, req, started)
    }

    fn metrics(&self) -> String {
        self.inner.metrics.render()
    }

    fn dashboard(&self, stream: Option<&str>) -> Value {
        Service::dashboard(self, stream)
    }

    async fn flush(&self, stream: String) -> Result<Value, ApiError> {
        self.flush_stream(&stream).await
    }

    fn status(&self) -> Value {
        let st = self.inner.wal.stats();
        json!({
            "pid": std::process::id(),
            "uptime_seconds": self.inner.started.elapsed().as_secs_f64(),
            "region": self.inner.config.region,
            "account_id": self.inner.config.account_id,
            "streams": self.inner.streams.read().len(),
            "wal": {
                "wal_id": format!("{:016x}", st.wal_id),
                "segments": st.segments,
                "bytes": st.bytes,
                "max_bytes": st.max_bytes,
                "first_lsn": st.first_lsn,
                "next_lsn": st.next_lsn,
            },
        })
    }
}
