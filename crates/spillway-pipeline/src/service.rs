//! The server's core: the stream registry in memory, the control plane over it, and ingest into the
//! WAL. Implements the API's [`Backend`] port.
//!
//! Invariants:
//! - a stream is in the in-memory map iff its definition file exists (saved before insertion,
//!   removed before removal);
//! - a Put is answered with a position only after `Wal::append` returned, i.e. after fdatasync;
//! - control-plane operations are serialized by the map's write lock and run on blocking threads
//!   (they fsync); the put path takes only read locks.

use crate::metrics::{Metrics, StreamMetrics};
use crate::registry::{StoreError, StreamStore};
use bytes::Bytes;
use parking_lot::RwLock;
use serde_json::{Value, json};
use spillway_api::{Backend, PutOutcome};
use spillway_model::destination::DestinationKind;
use spillway_model::put::PutRequest;
use spillway_model::stream::{self, Ctx, StreamRecord};
use spillway_model::{ApiError, ErrorCode, Operation, entry};
use spillway_wal::{AppendError, Wal};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Streams per account and Region (the quota of the largest Regions, reference §7).
pub const MAX_STREAMS: usize = 5_000;

/// Identity used in ARNs and messages.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    pub region: String,
    pub account_id: String,
    /// `<data-dir>/streams`
    pub streams_dir: PathBuf,
}

/// One live delivery stream.
pub struct Stream {
    pub record: RwLock<StreamRecord>,
    pub metrics: StreamMetrics,
}

struct Inner {
    config: ServiceConfig,
    wal: Wal,
    store: StreamStore,
    metrics: Metrics,
    streams: RwLock<BTreeMap<String, Arc<Stream>>>,
    started: Instant,
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
}

fn now_secs() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

fn now_millis() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// What this build can run: DirectPut streams delivering to S3 / Extended S3.
pub fn capabilities(stream_type: &str, kind: &DestinationKind) -> Result<(), String> {
    if stream_type != "DirectPut" {
        return Err(format!(
            "spillway cannot read from {stream_type} sources yet; only DirectPut streams are supported"
        ));
    }
    if !kind.is_s3() {
        return Err(format!(
            "spillway cannot deliver to {} destinations yet; only S3 and Extended S3 destinations are supported",
            kind.label
        ));
    }
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
        Ok(Self {
            inner: Arc::new(Inner {
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

    /// Names and WAL tags of every stream.
    pub fn stream_tags(&self) -> Vec<(String, u64)> {
        self.inner
            .streams
            .read()
            .values()
            .map(|s| {
                let r = s.record.read();
                (r.name.clone(), r.id)
            })
            .collect()
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
                Ok(json!({"DeliveryStreamDescription": s.record.read().describe(start)}))
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
                self.mutate(input, |r| r.update_destination(input, ctx, &capabilities)).map(|_| json!({}))
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
        let record = stream::create(input, new_stream_id(), ctx, &capabilities)?;
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
            Err(AppendError::Retired { .. }) => Err(self.ctx().not_found(&req_name(&s))),
            Err(e) => {
                tracing::error!(error = %e, "WAL append failed");
                Err(ApiError::internal())
            }
        }
    }
}

fn req_name(s: &Stream) -> String {
    s.record.read().name.clone()
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
