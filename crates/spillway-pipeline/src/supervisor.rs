//! The supervisor of one delivery stream: it takes the stream's records from the WAL, buffers them
//! by the stream's `BufferingHints`, and writes each buffer as one object, retrying until the
//! destination takes it.
//!
//! Data flow: a [`WalReader`] (served from the WAL's in-memory tail when caught up, from the
//! segment files when behind or after a restart) → one buffer per lane (`main`, and `backup` for
//! `S3BackupMode: Enabled`) → cut into an [`Intent`] (WAL range, bucket, exact key), persisted →
//! encoded (concatenation, compression) on the blocking pool → written → the lane's `delivered`
//! position is persisted and the WAL is acknowledged up to the lowest lane position.
//!
//! Invariants:
//! - a buffer holds only references to WAL payloads (`Bytes`), at most one buffer size per lane
//!   plus one entry; everything beyond stays in the WAL, so memory is bounded when a destination is
//!   slow or down;
//! - the WAL is acknowledged only for records every lane has stored, so a crash at any point
//!   replays them; re-written objects reuse their intent's key, so a replay overwrites instead of
//!   duplicating;
//! - a failing destination is retried with exponential backoff for as long as it fails; nothing
//!   is dropped. Records a destination refuses for good (a key it can never hold) go to the error
//!   output; an error object is itself retried until it is stored.
//! - one flush at a time per stream: while a lane is writing, the stream reads nothing new.
//!
//! Streams with processing or dynamic partitioning have a *partitioned* main lane instead
//! ([`Parted`]): WAL entries wait in a queue (for the Lambda processor's buffer hints, if any), the
//! processors run over the queue ([`crate::processing`]), and each processed record goes to the
//! buffer of its partition: `main`, the evaluated prefix of dynamic partitioning, or the error
//! output type. A partition is cut into an object on its own size or interval hint; many due
//! partitions are written together. Invariants of that lane:
//! - its `delivered` position is a *floor*: every record of every partition below it is stored;
//!   above it, a per-partition mark says which records of that partition are stored, so a replay
//!   after a crash skips them, and a pending intent is written again, with the same key, from the
//!   records of its range once they are processed again;
//! - buffers hold processed records in memory up to `partition_memory_bytes` per stream, the rest
//!   in spill files (a cache: the WAL below the floor still holds every record);
//! - effectively-once holds for deterministic processors (built-ins, jq); a function whose output
//!   changes between invocations can, after a crash, put a record in another partition than the
//!   first time.

mod iceberg;

use crate::conversion::{ConversionPlan, FORMAT_CONVERSION_FAILED};
use crate::logs::{ErrorEvent, ErrorLogs, StreamLog, StreamLogger};
use crate::metrics::{DeliveryMetrics, ProcessingMetrics};
use crate::partition::{PartitionBuffer, Taken, append_spill, frames};
use crate::processing::{ACTIVE_PARTITIONS_LIMIT_EXCEEDED, FailedRecord, ProcessingPlan, Processor};
use crate::processors::builtin::{PROCESSING_FAILED, Record};
use crate::processors::functions::FunctionRegistry;
use crate::processors::lambda::{FunctionBackend, Invocation, InvokeError, InvokeFuture, StreamContext};
use crate::state::{DeliveryState, ErrorOutput, Intent, LaneState, StateStore};
use base64::Engine;
use bytes::Bytes;
use chrono::{DateTime, TimeZone, Utc};
use parking_lot::Mutex;
use spillway_destination::{ObjectError, ObjectStores, PutOptions};
use spillway_format::compression::{Compression, Encoder};
use spillway_model::entry::EntryView;
use spillway_model::plan::{ObjectLane, S3Plan};
use spillway_model::prefix::{NoKeys, object_suffix, object_uuid};
use spillway_wal::{Entry, Lsn, Wal, WalReader};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, oneshot};

/// Bytes read from the WAL per step before buffers are checked.
const READ_STEP_BYTES: usize = 8 << 20;
/// How often DataFreshness is refreshed while records wait.
const FRESHNESS_TICK: Duration = Duration::from_secs(1);
/// Retry backoff: doubles from the first value up to the cap.
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_CAP: Duration = Duration::from_secs(10);

/// Error-output type of records an S3 destination refuses for good. Firehose has none (real S3
/// never refuses a key for good); spillway's local folder can (a path segment over 255 bytes, an
/// evaluated prefix over 512 characters), and follows the `<destination>-failed` pattern of the
/// other destinations.
pub const S3_FAILED: &str = "s3-failed";

/// What a supervisor needs to know about its stream; replaced on UpdateDestination.
#[derive(Debug, Clone)]
pub struct StreamPlan {
    pub name: String,
    pub id: u64,
    pub version_id: u64,
    pub arn: String,
    pub region: String,
    pub s3: S3Plan,
    /// `ProcessingConfiguration` when enabled.
    pub processing: Option<Arc<ProcessingPlan>>,
    /// `DataFormatConversionConfiguration` when enabled.
    pub conversion: Option<Arc<ConversionPlan>>,
    /// Iceberg destinations: the tables and catalog (`s3` is then the `S3Configuration` of error
    /// records and backups, with the Iceberg buffering hints and retry options).
    pub iceberg: Option<Arc<spillway_model::iceberg::IcebergPlan>>,
    /// `CloudWatchLoggingOptions`, with what the events say about the stream.
    pub log: Arc<StreamLog>,
}

impl StreamPlan {
    /// Whether the main lane processes records (processors or dynamic partitioning) instead of
    /// delivering the WAL's records as they are.
    pub fn partitioned(&self) -> bool {
        self.processing.is_some() || self.s3.dynamic_partitioning || self.conversion.is_some() || self.iceberg.is_some()
    }
}

/// State shared between a supervisor and the control plane.
#[derive(Debug, Default)]
pub struct StreamRuntime {
    /// Why delivery is failing right now (shown by DescribeDeliveryStream), if it is.
    pub failure: Mutex<Option<String>>,
}

/// What a flush did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct FlushReport {
    #[serde(rename = "Objects")]
    pub objects: Vec<String>,
    #[serde(rename = "Records")]
    pub records: u64,
}

/// Messages to a supervisor.
pub enum Command {
    /// Deliver everything committed before `upto` now, whatever the buffering hints say.
    Flush { upto: Lsn, reply: oneshot::Sender<FlushReport> },
    /// A new plan (UpdateDestination); applies from the next object on.
    Update(Arc<StreamPlan>),
    /// Stop. With a deadline: deliver what is buffered until then (graceful shutdown). Without:
    /// stop at once (the stream was deleted; its records are discarded as Firehose does).
    Stop { deadline: Option<Instant>, reply: oneshot::Sender<()> },
}

/// The handle the control plane keeps.
pub struct SupervisorHandle {
    pub tx: mpsc::Sender<Command>,
    pub runtime: Arc<StreamRuntime>,
    pub task: tokio::task::JoinHandle<()>,
}

/// Shared services a supervisor uses.
#[derive(Clone)]
pub struct Resources {
    pub wal: Wal,
    pub stores: Arc<ObjectStores>,
    pub state_store: StateStore,
    /// Deflate level of GZIP and ZIP objects.
    pub gzip_level: u32,
    /// Functions of Lambda processors.
    pub functions: Arc<FunctionRegistry>,
    /// Where partition buffers spill (`<data-dir>/spill`).
    pub spill_dir: PathBuf,
    /// Active partitions per stream with dynamic partitioning (Firehose's default: 500).
    pub active_partitions_limit: usize,
    /// Memory for the partition buffers of one stream; beyond it the largest buffers spill to disk.
    pub partition_memory_bytes: usize,
    /// The catalogs of Iceberg streams.
    pub iceberg: Arc<spillway_destination::iceberg::catalogs::Catalogs>,
    /// Error logs of `CloudWatchLoggingOptions` (`<data-dir>/logs`).
    pub logs: Arc<ErrorLogs>,
}

/// Starts the supervisor of a stream.
pub fn spawn(
    plan: Arc<StreamPlan>,
    res: Resources,
    metrics: (DeliveryMetrics, DeliveryMetrics),
    processing_metrics: ProcessingMetrics,
) -> SupervisorHandle {
    let (tx, rx) = mpsc::channel(64);
    let runtime = Arc::new(StreamRuntime::default());
    let sup = Supervisor {
        plan,
        res,
        runtime: Arc::clone(&runtime),
        metrics,
        processing_metrics,
        rx,
        state: DeliveryState::default(),
        lanes: Vec::new(),
        part: None,
        reader: None,
        flushes: Vec::new(),
        draining: false,
        iceberg_target: None,
    };
    let task = tokio::spawn(sup.run());
    SupervisorHandle { tx, runtime, task }
}

/// One WAL entry of this stream, buffered by reference.
#[derive(Clone)]
struct Buffered {
    lsn: Lsn,
    arrival_ms: i64,
    payload: Bytes,
    records: u64,
    bytes: usize,
}

/// One destination of the stream's records (`main` or `backup`).
struct Lane {
    name: &'static str,
    entries: VecDeque<Buffered>,
    bytes: usize,
}

impl Lane {
    fn oldest_arrival_ms(&self) -> Option<i64> {
        self.entries.iter().map(|e| e.arrival_ms).min()
    }
}

enum Stopped {
    /// Stop now; `reply` is answered by the caller.
    Now(Option<oneshot::Sender<()>>),
}

struct Supervisor {
    plan: Arc<StreamPlan>,
    res: Resources,
    runtime: Arc<StreamRuntime>,
    metrics: (DeliveryMetrics, DeliveryMetrics),
    processing_metrics: ProcessingMetrics,
    rx: mpsc::Receiver<Command>,
    state: DeliveryState,
    /// Lanes that deliver the WAL's records as they are: `main` (unless partitioned) and `backup`.
    lanes: Vec<Lane>,
    /// The main lane of a stream with processing or dynamic partitioning.
    part: Option<Parted>,
    reader: Option<WalReader>,
    flushes: Vec<(Lsn, oneshot::Sender<FlushReport>, FlushReport)>,
    /// Shutting down: deliver every buffer now, whatever the hints say.
    draining: bool,
    /// Iceberg streams: the catalog, opened at the first commit.
    iceberg_target: Option<iceberg::IcebergTarget>,
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

fn lane_plan<'a>(plan: &'a StreamPlan, lane: &str) -> Option<&'a ObjectLane> {
    match lane {
        "main" => Some(&plan.s3.main),
        _ => plan.s3.backup.as_ref(),
    }
}

/// A 64-bit seed for `!{firehose:random-string}`, fixed by the object's identity.
fn seed(id: u64, first: Lsn, last: Lsn, lane: &str) -> u64 {
    let mut h = id ^ first.rotate_left(21) ^ last.rotate_left(42);
    for b in lane.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
    }
    h
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => v,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

impl Supervisor {
    async fn run(mut self) {
        let name = self.plan.name.clone();
        if let Err(e) = self.start().await {
            tracing::error!(stream = %name, error = %e, "cannot start delivery");
            self.set_failure(Some(format!("cannot start delivery: {e}")));
            // Stay alive to answer commands; nothing is delivered (or lost: it stays in the WAL).
            while let Some(cmd) = self.rx.recv().await {
                if let Command::Stop { reply, .. } = cmd {
                    let _ = reply.send(());
                    return;
                }
            }
            return;
        }
        let reply = self.main_loop().await;
        if let Some(p) = &self.part {
            // Spill files are a cache of records the WAL still holds.
            let dir = p.spill_dir.clone();
            blocking(move || std::fs::remove_dir_all(dir)).await.ok();
        }
        if let Some(r) = reply {
            let _ = r.send(());
        }
        tracing::debug!(stream = %name, "supervisor stopped");
    }

    /// Loads the delivery state and positions the reader.
    async fn start(&mut self) -> std::io::Result<()> {
        let (store, id) = (self.res.state_store.clone(), self.plan.id);
        self.state = blocking(move || store.load(id)).await?;
        let acked = self.res.wal.acked(id);
        for name in self.lane_names() {
            let lane = self.state.lane(name);
            if lane.delivered == 0 {
                lane.delivered = acked;
            }
            self.lanes.push(Lane { name, entries: VecDeque::new(), bytes: 0 });
        }
        if self.plan.partitioned() {
            let lane = self.state.lane("main");
            if lane.delivered == 0 {
                lane.delivered = acked;
            }
            // Spill files of an earlier run are stale: their records are read again from the WAL.
            let dir = self.res.spill_dir.join(format!("{id:016x}"));
            let d = dir.clone();
            blocking(move || {
                let _ = std::fs::remove_dir_all(&d);
                std::fs::create_dir_all(&d)
            })
            .await?;
            self.part = Some(Parted::new(self.build_processor(), dir));
        }
        let mut from = self.lanes.iter().map(|l| self.state.lanes[l.name].delivered).min().unwrap_or(acked);
        if self.part.is_some() {
            from = from.min(self.state.lane("main").delivered);
        }
        self.reader = Some(self.res.wal.reader(from).map_err(std::io::Error::other)?);
        Ok(())
    }

    fn lane_names(&self) -> Vec<&'static str> {
        let mut names = if self.plan.partitioned() { vec![] } else { vec!["main"] };
        if self.plan.s3.backup.is_some() {
            names.push("backup");
        }
        names
    }

    fn set_failure(&self, failure: Option<String>) {
        *self.runtime.failure.lock() = failure;
    }

    /// Returns the reply of a graceful Stop.
    async fn main_loop(&mut self) -> Option<oneshot::Sender<()>> {
        let mut committed = self.res.wal.subscribe();
        loop {
            match self.step().await {
                Ok(()) => {}
                Err(Stopped::Now(reply)) => return reply,
            }
            self.update_freshness();
            let deadline = self.next_deadline();
            tokio::select! {
                biased;
                cmd = self.rx.recv() => match cmd {
                    None => return None,
                    Some(cmd) => if let Err(Stopped::Now(reply)) = self.command(cmd).await {
                        return reply;
                    },
                },
                _ = committed.changed() => {}
                _ = sleep_until_ms(deadline) => {}
                // DataFreshness grows while records wait: refresh it every second.
                _ = tokio::time::sleep(FRESHNESS_TICK), if self.waiting() => {}
            }
        }
    }

    /// Reads what is available, delivers pending intents and full or due buffers, answers flushes.
    async fn step(&mut self) -> Result<(), Stopped> {
        loop {
            let caught_up = self.read_some().await;
            self.run_pending_intents().await?;
            if self.part.is_some() {
                if self.queue_due(false) {
                    self.process_queue().await;
                }
                self.run_pending_partitions().await?;
                self.flush_partitions(Select::Full).await?;
            }
            // Full buffers go first, also while catching up.
            for i in 0..self.lanes.len() {
                let full = lane_plan(&self.plan, self.lanes[i].name)
                    .is_some_and(|p| self.lanes[i].bytes >= p.buffer_bytes.max(1));
                if full && self.pending(i).is_none() {
                    self.flush_lane(i).await?;
                }
            }
            if caught_up {
                break;
            }
        }
        // Caught up: buffers whose interval has passed, and requested flushes.
        let position = self.reader.as_ref().map_or(0, WalReader::position);
        let flush_all = self.draining || self.flushes.iter().any(|(upto, _, _)| position >= *upto);
        if self.part.is_some() {
            if self.queue_due(flush_all) {
                self.process_queue().await;
                self.run_pending_partitions().await?;
            }
            self.flush_partitions(if flush_all { Select::All } else { Select::Due }).await?;
            self.advance_floor().await;
        }
        for i in 0..self.lanes.len() {
            if self.lanes[i].entries.is_empty() || self.pending(i).is_some() {
                continue;
            }
            let due = self.lane_deadline(i).is_some_and(|d| d <= now_ms());
            if due || flush_all {
                self.flush_lane(i).await?;
            }
        }
        if flush_all {
            let (done, waiting): (Vec<_>, Vec<_>) = self.flushes.drain(..).partition(|(upto, _, _)| position >= *upto);
            self.flushes = waiting;
            for (_, reply, report) in done {
                let _ = reply.send(report);
            }
        }
        Ok(())
    }

    /// Whether records wait for delivery.
    fn waiting(&self) -> bool {
        self.lanes.iter().any(|l| !l.entries.is_empty())
            || self.part.as_ref().is_some_and(|p| !p.queue.is_empty() || !p.by_age.is_empty())
    }

    fn pending(&self, lane: usize) -> Option<&Intent> {
        self.state.lanes.get(self.lanes[lane].name).and_then(|s| s.pending.as_ref())
    }

    /// When a lane's interval runs out, in epoch milliseconds.
    fn lane_deadline(&self, i: usize) -> Option<i64> {
        let plan = lane_plan(&self.plan, self.lanes[i].name)?;
        let oldest = self.lanes[i].oldest_arrival_ms()?;
        Some(oldest + plan.interval_secs as i64 * 1000)
    }

    fn next_deadline(&self) -> Option<i64> {
        let lanes = (0..self.lanes.len()).filter_map(|i| self.lane_deadline(i)).min();
        let part = self.part.as_ref().and_then(|p| {
            let queue = p
                .queue_oldest_ms()
                .zip(p.processor.lambda_config())
                .map(|(o, cfg)| o + cfg.buffer_interval.as_millis() as i64);
            let partitions = p.by_age.first().map(|(since, _)| since + self.plan.s3.main.interval_secs as i64 * 1000);
            queue.into_iter().chain(partitions).min()
        });
        lanes.into_iter().chain(part).min()
    }

    fn update_freshness(&self) {
        let now = now_ms();
        let age = |o: Option<i64>| o.map_or(0.0, |o| (now - o).max(0) as f64 / 1000.0);
        for lane in &self.lanes {
            let m = if lane.name == "main" { &self.metrics.0 } else { &self.metrics.1 };
            m.data_freshness.set(age(lane.oldest_arrival_ms()));
        }
        if let Some(p) = &self.part {
            let oldest = p.queue_oldest_ms().into_iter().chain(p.by_age.first().map(|(since, _)| *since)).min();
            if self.plan.iceberg.is_some() {
                // Iceberg streams report their main lane as DeliveryToIceberg (records wait for
                // their commit in the partitioned lane).
                self.processing_metrics.iceberg_data_freshness.set(age(oldest));
            } else {
                self.metrics.0.data_freshness.set(age(oldest));
            }
        }
    }

    /// Reads up to one step of entries into the lane buffers. Returns whether the reader is caught
    /// up (or every lane buffer is full, so reading more would only grow memory).
    async fn read_some(&mut self) -> bool {
        let Some(mut reader) = self.reader.take() else { return true };
        let tag = self.plan.id;
        // Read no more than the fullest lane can still take, so an object is at most one buffer size
        // plus one entry (the rest of a backlog stays in the WAL).
        let room = (0..self.lanes.len())
            .filter_map(|i| {
                lane_plan(&self.plan, self.lanes[i].name).map(|p| p.buffer_bytes.saturating_sub(self.lanes[i].bytes))
            })
            // With a Lambda processor, a step can queue several invocations' worth of records
            // (one per BufferSizeInMBs), which run concurrently up to the function's workers.
            .chain(self.part.as_ref().map(|p| READ_STEP_BYTES.saturating_sub(p.queue_bytes)))
            .min()
            .unwrap_or(READ_STEP_BYTES)
            .clamp(1, READ_STEP_BYTES);
        let (reader, batch, caught_up, error) = blocking(move || {
            let mut batch = Vec::new();
            let mut bytes = 0usize;
            let mut error = None;
            let caught_up = loop {
                match reader.next() {
                    None => break true,
                    Some(Err(e)) => {
                        error = Some(e.to_string());
                        break true;
                    }
                    Some(Ok(entry)) if entry.tag == tag => {
                        bytes += entry.payload.len();
                        batch.push(entry);
                        if bytes >= room {
                            break false;
                        }
                    }
                    Some(Ok(_)) => {}
                }
            };
            (reader, batch, caught_up, error)
        })
        .await;
        self.reader = Some(reader);
        if let Some(e) = error {
            tracing::error!(stream = %self.plan.name, error = %e, "cannot read the WAL");
            self.set_failure(Some(format!("cannot read the write-ahead log: {e}")));
        }
        for entry in batch {
            self.buffer(entry);
        }
        caught_up
    }

    fn buffer(&mut self, entry: Entry) {
        let (records, bytes, arrival_ms) = match EntryView::parse(&entry.payload) {
            Ok(v) => (v.len() as u64, v.data_len(), v.arrival_ms),
            Err(e) => {
                // Not a put entry of this format: it cannot be delivered, and it is not data a client
                // was promised (every acknowledged put is a valid entry). Skip it loudly.
                tracing::error!(stream = %self.plan.name, lsn = entry.lsn, error = %e, "skipping an unreadable WAL entry");
                return;
            }
        };
        for lane in &mut self.lanes {
            let delivered = self.state.lanes.get(lane.name).map_or(0, |s| s.delivered);
            if entry.lsn < delivered {
                continue;
            }
            lane.bytes += bytes;
            lane.entries.push_back(Buffered {
                lsn: entry.lsn,
                arrival_ms,
                payload: entry.payload.clone(),
                records,
                bytes,
            });
        }
        if let Some(p) = &mut self.part {
            let floor = self.state.lanes.get("main").map_or(0, |s| s.delivered);
            if entry.lsn >= floor {
                p.queue_bytes += bytes;
                p.queue.push_back(Buffered { lsn: entry.lsn, arrival_ms, payload: entry.payload, records, bytes });
            }
        }
    }

    /// Re-executes intents left by a crash once their whole range has been read.
    async fn run_pending_intents(&mut self) -> Result<(), Stopped> {
        let position = self.reader.as_ref().map_or(0, WalReader::position);
        for i in 0..self.lanes.len() {
            if let Some(intent) = self.pending(i).cloned()
                && position > intent.last
            {
                tracing::info!(stream = %self.plan.name, lane = self.lanes[i].name, key = %intent.key, "re-delivering an interrupted object");
                self.execute(i, intent).await?;
            }
        }
        Ok(())
    }

    /// Cuts the lane's buffer into an intent, persists it and delivers it.
    async fn flush_lane(&mut self, i: usize) -> Result<(), Stopped> {
        let Some(intent) = self.cut(i) else { return Ok(()) };
        self.persist_intent(i, Some(intent.clone())).await;
        self.execute(i, intent).await
    }

    fn cut(&self, i: usize) -> Option<Intent> {
        let lane = &self.lanes[i];
        let plan = lane_plan(&self.plan, lane.name)?;
        let (first, last) = (lane.entries.front()?.lsn, lane.entries.back()?.lsn);
        Some(self.new_intent(plan, (first, last), lane.oldest_arrival_ms()?, lane.name, ObjectPrefix::Evaluate))
    }

    /// The intent of an object of `plan` holding WAL range `first..=last`; `discriminator` (the
    /// lane or partition) makes its name and random strings unique to it.
    fn new_intent(
        &self,
        plan: &ObjectLane,
        (first, last): (Lsn, Lsn),
        oldest_ms: i64,
        discriminator: &str,
        prefix: ObjectPrefix<'_>,
    ) -> Intent {
        let arrival = Utc.timestamp_millis_opt(oldest_ms).single().unwrap_or_else(Utc::now);
        let s = seed(self.plan.id, first, last, discriminator);
        let compression = Compression::from_firehose(&plan.compression).unwrap_or(Compression::Uncompressed);
        let is_error = matches!(prefix, ObjectPrefix::Error(_));
        // Converted objects are `.parquet` / `.orc` (FileExtension still wins); error output stays
        // JSON lines.
        let conversion = self.plan.conversion.as_ref().filter(|_| !is_error && std::ptr::eq(plan, &self.plan.s3.main));
        let default_extension = match conversion {
            Some(c) => c.conversion.output.extension(),
            None => compression.extension(),
        };
        let extension = plan.file_extension.clone().unwrap_or_else(|| default_extension.to_string());
        let uuid = object_uuid(self.plan.id, first, last, discriminator);
        let tz = plan.prefix.time_zone();
        let now = Utc::now();
        let suffix = object_suffix(&self.plan.name, self.plan.version_id, now, tz, &uuid, &extension);
        let errors_key = conversion.map(|_| {
            let tag = format!("{discriminator}\u{0}{FORMAT_CONVERSION_FAILED}");
            let uuid = object_uuid(self.plan.id, first, last, &tag);
            let prefix = plan.prefix.evaluate_error_prefix(
                arrival,
                FORMAT_CONVERSION_FAILED,
                seed(self.plan.id, first, last, &tag),
            );
            prefix + &object_suffix(&self.plan.name, self.plan.version_id, now, tz, &uuid, compression.extension())
        });
        let mut error = None;
        let prefix = match prefix {
            ObjectPrefix::Evaluated(p) => p.to_string(),
            ObjectPrefix::Error(output_type) => plan.prefix.evaluate_error_prefix(arrival, output_type, s),
            ObjectPrefix::Evaluate => match plan.prefix.evaluate_prefix(arrival, &NoKeys, s) {
                Ok(p) => p,
                Err(e) => {
                    error = Some(ErrorOutput {
                        output_type: S3_FAILED.into(),
                        code: "S3.InvalidPrefix".into(),
                        message: e.to_string(),
                        attempts: 1,
                        ending_ms: now_ms(),
                    });
                    plan.prefix.evaluate_error_prefix(arrival, S3_FAILED, s)
                }
            },
        };
        Intent {
            first,
            last,
            bucket_arn: plan.bucket_arn.clone(),
            key: prefix + &suffix,
            compression: plan.compression.clone(),
            kms_key_arn: plan.kms_key_arn.clone(),
            error,
            partition: None,
            errors_key,
        }
    }

    /// Sends an intent's records to the `s3-failed` error output: same object name under the
    /// evaluated error prefix.
    fn redirect_to_s3_failed(
        &self,
        plan: &ObjectLane,
        intent: &mut Intent,
        oldest_ms: i64,
        (code, message): (String, String),
        attempts: u32,
    ) {
        // Records of an Iceberg table go to Iceberg's error output type.
        let output_type = match &intent.partition {
            Some(p) if p.starts_with(iceberg::ICE_PARTITION) => spillway_model::iceberg::ICEBERG_FAILED,
            _ => S3_FAILED,
        };
        let arrival = Utc.timestamp_millis_opt(oldest_ms).single().unwrap_or_else(Utc::now);
        let s = seed(self.plan.id, intent.first, intent.last, "error");
        let name = intent.key.rsplit('/').next().unwrap_or(&intent.key).to_string();
        intent.key = plan.prefix.evaluate_error_prefix(arrival, output_type, s) + &name;
        intent.errors_key = None;
        intent.error =
            Some(ErrorOutput { output_type: output_type.into(), code, message, attempts, ending_ms: now_ms() });
    }

    async fn persist_intent(&mut self, i: usize, intent: Option<Intent>) {
        self.state.lane(self.lanes[i].name).pending = intent;
        self.save_state().await;
    }

    /// Saves the delivery state, retrying until the disk takes it (delivery must not run ahead of
    /// what a restart would know).
    async fn save_state(&mut self) {
        let mut backoff = BACKOFF_FIRST;
        loop {
            let (store, id, state) = (self.res.state_store.clone(), self.plan.id, self.state.clone());
            match blocking(move || store.save(id, &state)).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::error!(stream = %self.plan.name, error = %e, "cannot save the delivery state; retrying");
                    self.set_failure(Some(format!("cannot save the delivery state: {e}")));
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_CAP);
                }
            }
        }
    }

    /// Writes the object of an intent, retrying until it is stored.
    async fn execute(&mut self, i: usize, mut intent: Intent) -> Result<(), Stopped> {
        let lane_name = self.lanes[i].name;
        let entries: Vec<Buffered> =
            self.lanes[i].entries.iter().take_while(|e| e.lsn <= intent.last).cloned().collect();
        let records: u64 = entries.iter().map(|e| e.records).sum();
        let bytes: usize = entries.iter().map(|e| e.bytes).sum();
        let mut backoff = BACKOFF_FIRST;
        let mut attempts = 0u32;
        let mut since: Option<DateTime<Utc>> = None;
        let mut encoded: Option<Result<Bytes, String>> = None;
        let metrics = if lane_name == "main" { self.metrics.0.clone() } else { self.metrics.1.clone() };
        loop {
            // Encoded once per intent; a retry re-sends the same bytes.
            let body = match &encoded {
                Some(body) => body.clone(),
                None => {
                    let (intent, entries, level) = (intent.clone(), entries.clone(), self.res.gzip_level);
                    let body = blocking(move || encode(&intent, &entries, level)).await;
                    encoded = Some(body.clone());
                    body
                }
            };
            let compression = Compression::from_firehose(&intent.compression).unwrap_or(Compression::Uncompressed);
            let opts = PutOptions {
                content_encoding: compression.content_encoding(),
                sse_kms_key_id: intent.kms_key_arn.clone(),
                ..PutOptions::default()
            };
            let result = match body {
                Ok(body) => {
                    let (stores, bucket, kms) =
                        (Arc::clone(&self.res.stores), intent.bucket_arn.clone(), intent.kms_key_arn.clone());
                    match blocking(move || stores.sink(&bucket, kms.as_deref())).await {
                        Ok(sink) => {
                            attempts += 1;
                            metrics.put_requests.inc();
                            sink.put(&intent.key, body, &opts).await
                        }
                        Err(e) => Err(e),
                    }
                }
                Err(e) => Err(ObjectError::Config { message: format!("cannot encode the object: {e}") }),
            };
            match result {
                Ok(()) => break,
                Err(e) => {
                    metrics.failures.inc();
                    let since = *since.get_or_insert_with(Utc::now);
                    let detail = format!(
                        "{} delivery to {} is failing since {}: {}: {} (attempt {attempts}; the records are kept and retried)",
                        if lane_name == "main" { "S3" } else { "backup" },
                        intent.bucket_arn,
                        since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                        e.firehose_code(),
                        e
                    );
                    tracing::warn!(stream = %self.plan.name, key = %intent.key, code = e.firehose_code(), error = %e, attempts, "object write failed");
                    self.logger().error(
                        lane_name != "main",
                        &ErrorEvent {
                            error_code: e.firehose_code(),
                            message: &e.to_string(),
                            destination: &intent.bucket_arn,
                            record_count: Some(records),
                            attempts_made: Some(attempts),
                            ..ErrorEvent::default()
                        },
                    );
                    self.set_failure(Some(detail));
                    if !e.is_retryable() && intent.error.is_none() {
                        // The destination will never take these records under this key: send them to
                        // the error output instead (and remember that across a crash).
                        if let Some(plan) = lane_plan(&self.plan, lane_name) {
                            let oldest = entries.iter().map(|e| e.arrival_ms).min().unwrap_or(0);
                            let error = (e.firehose_code().to_string(), e.to_string());
                            self.redirect_to_s3_failed(plan, &mut intent, oldest, error, attempts);
                            self.persist_intent(i, Some(intent.clone())).await;
                            encoded = None;
                            continue;
                        }
                    }
                    if let Some(stop) = self.wait_or_command(backoff).await {
                        return Err(stop);
                    }
                    backoff = (backoff * 2).min(BACKOFF_CAP);
                }
            }
        }
        // Stored.
        metrics.success.inc();
        let stored = encoded.as_ref().and_then(|b| b.as_ref().ok()).map_or(0, |b| b.len() as u64);
        if intent.error.is_none() {
            metrics.object_count.inc();
            metrics.records.inc_by(records);
            metrics.bytes.inc_by(bytes as u64);
            metrics.stored_bytes.inc_by(stored);
        } else {
            metrics.error_output_objects.inc();
            metrics.error_output_bytes.inc_by(stored);
        }
        self.set_failure(None);
        let lane = &mut self.lanes[i];
        while lane.entries.front().is_some_and(|e| e.lsn <= intent.last) {
            if let Some(e) = lane.entries.pop_front() {
                lane.bytes -= e.bytes;
            }
        }
        {
            let st = self.state.lane(lane_name);
            st.delivered = intent.last + 1;
            st.pending = None;
        }
        self.save_state().await;
        for (_, _, report) in &mut self.flushes {
            report.objects.push(intent.key.clone());
            report.records += records;
        }
        tracing::debug!(stream = %self.plan.name, lane = lane_name, key = %intent.key, records, "object stored");
        self.ack().await;
        Ok(())
    }

    /// Acknowledges the WAL up to what every lane has stored.
    async fn ack(&self) {
        let part_floor = self.part.as_ref().and_then(|_| self.state.lanes.get("main").map(|s| s.delivered));
        let Some(floor) =
            self.lanes.iter().filter_map(|l| self.state.lanes.get(l.name).map(|s| s.delivered)).chain(part_floor).min()
        else {
            return;
        };
        let (wal, id) = (self.res.wal.clone(), self.plan.id);
        if let Err(e) = blocking(move || wal.ack(id, floor)).await {
            // The records are delivered; the WAL keeps their segment a little longer.
            tracing::warn!(stream = %self.plan.name, error = %e, "cannot acknowledge the WAL");
        }
    }

    /// Sleeps for `d` while answering commands. Returns `Some` if the supervisor must stop.
    async fn wait_or_command(&mut self, d: Duration) -> Option<Stopped> {
        let until = tokio::time::Instant::now() + d;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(until) => return None,
                cmd = self.rx.recv() => match cmd {
                    None => return Some(Stopped::Now(None)),
                    Some(Command::Stop { reply, .. }) => return Some(Stopped::Now(Some(reply))),
                    Some(cmd) => {
                        if let Err(stop) = Box::pin(self.command(cmd)).await {
                            return Some(stop);
                        }
                    }
                },
            }
        }
    }

    async fn command(&mut self, cmd: Command) -> Result<(), Stopped> {
        match cmd {
            Command::Flush { upto, reply } => {
                self.flushes.push((upto, reply, FlushReport::default()));
                Ok(())
            }
            Command::Update(plan) if plan.partitioned() != self.plan.partitioned() => {
                // Processing switched on or off: deliver everything read under the old plan, then
                // start over with the new one from the saved state.
                self.draining = true;
                let drained = Box::pin(self.step()).await;
                self.draining = false;
                drained?;
                self.plan = plan;
                self.lanes.clear();
                self.part = None;
                if let Err(e) = self.start().await {
                    tracing::error!(stream = %self.plan.name, error = %e, "cannot restart delivery");
                    self.set_failure(Some(format!("cannot restart delivery: {e}")));
                }
                Ok(())
            }
            Command::Update(plan) => {
                let had_backup = self.plan.s3.backup.is_some();
                self.plan = plan;
                if self.part.is_some() {
                    let processor = self.build_processor();
                    if let Some(p) = &mut self.part {
                        p.processor = processor;
                    }
                }
                if !had_backup && self.plan.s3.backup.is_some() {
                    // Backup starts with the records read from now on.
                    let position = self.reader.as_ref().map_or(0, WalReader::position);
                    self.state.lane("backup").delivered = position;
                    self.lanes.push(Lane { name: "backup", entries: VecDeque::new(), bytes: 0 });
                    self.save_state().await;
                }
                Ok(())
            }
            Command::Stop { deadline: None, reply } => Err(Stopped::Now(Some(reply))),
            Command::Stop { deadline: Some(deadline), reply } => {
                // Everything committed so far (also entries not read yet), then every buffer.
                self.draining = true;
                let drain = self.step();
                if tokio::time::timeout_at(deadline.into(), drain).await.is_err() {
                    tracing::warn!(stream = %self.plan.name, "shutdown deadline reached; the rest stays in the WAL");
                }
                Err(Stopped::Now(Some(reply)))
            }
        }
    }
}

/// How an object's prefix is found.
enum ObjectPrefix<'a> {
    /// Evaluate the lane's `Prefix` (no partition keys) at the oldest arrival.
    Evaluate,
    /// Already evaluated (a dynamic partition).
    Evaluated(&'a str),
    /// The `ErrorOutputPrefix` for this error output type.
    Error(&'a str),
}

/// Which partitions a flush takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Select {
    /// Those at or over the size hint.
    Full,
    /// Full ones and those whose interval has passed.
    Due,
    /// Every non-empty one (flush request, shutdown).
    All,
}

/// Partition ids: `main` (no dynamic partitioning), `dp:<evaluated prefix>`, `error:<type>`.
const MAIN_PARTITION: &str = "main";
const DP_PARTITION: &str = "dp:";
const ERROR_PARTITION: &str = "error:";

/// Objects written at once when many partitions flush together.
const PARALLEL_PUTS: usize = 16;

/// One partition's buffer and the arrival time it is aged by.
struct Part {
    buf: PartitionBuffer,
    /// Arrival of the first record of the buffer (the `by_age` key).
    since: i64,
}

/// The main lane of a stream with processing or dynamic partitioning: WAL entries wait in `queue`
/// for the processors (for the Lambda buffer when there is a Lambda processor), then the processed
/// records wait in one buffer per partition.
struct Parted {
    processor: Processor,
    queue: VecDeque<Buffered>,
    queue_bytes: usize,
    partitions: HashMap<String, Part>,
    /// (arrival of the first record, partition id) of every non-empty partition.
    by_age: BTreeSet<(i64, String)>,
    /// Partitions of dynamic partitioning with records (the active partitions).
    dp_active: usize,
    spill_dir: PathBuf,
    spill_serial: u64,
}

impl Parted {
    fn new(processor: Processor, spill_dir: PathBuf) -> Self {
        Self {
            processor,
            queue: VecDeque::new(),
            queue_bytes: 0,
            partitions: HashMap::new(),
            by_age: BTreeSet::new(),
            dp_active: 0,
            spill_dir,
            spill_serial: 0,
        }
    }

    fn queue_oldest_ms(&self) -> Option<i64> {
        self.queue.iter().map(|e| e.arrival_ms).min()
    }

    fn push(&mut self, id: &str, arrival_ms: i64, lsn: u64, index: u32, parts: &[&[u8]]) {
        let part = match self.partitions.get_mut(id) {
            Some(p) => p,
            None => {
                if id.starts_with(DP_PARTITION) {
                    self.dp_active += 1;
                }
                self.by_age.insert((arrival_ms, id.to_string()));
                self.partitions
                    .entry(id.to_string())
                    .or_insert(Part { buf: PartitionBuffer::default(), since: arrival_ms })
            }
        };
        part.buf.push(arrival_ms, lsn, index, parts);
    }

    /// Removes a partition's buffer.
    fn take(&mut self, id: &str) -> Option<PartitionBuffer> {
        let part = self.partitions.remove(id)?;
        self.by_age.remove(&(part.since, id.to_string()));
        if id.starts_with(DP_PARTITION) {
            self.dp_active -= 1;
        }
        Some(part.buf)
    }

    fn mem_bytes(&self) -> usize {
        self.partitions.values().map(|p| p.buf.mem_len()).sum()
    }
}

/// A function that cannot be resolved: every invocation fails (`Lambda.ResourceNotFound`), so the
/// records go to the error output after the retries, as with a deleted function in AWS.
struct UnresolvedFunction(String);

impl FunctionBackend for UnresolvedFunction {
    fn invoke<'a>(&'a self, _invocation: &'a Invocation) -> InvokeFuture<'a> {
        let message = self.0.clone();
        Box::pin(async move { Err(InvokeError::Unavailable(message)) })
    }
}

/// One object of a partition being written.
struct Job {
    id: String,
    intent: Intent,
    taken: Option<Taken>,
    /// The frames, once read (kept to re-encode as error output).
    frames: Option<Arc<Vec<u8>>>,
    body: Option<Result<Bytes, String>>,
    /// Record format conversion: the `format-conversion-failed` object, if records failed, and
    /// whether it is stored.
    errors_body: Option<Bytes>,
    errors_stored: bool,
    converted: Option<ConversionCounts>,
    /// Iceberg: what the records became, once the table holds them.
    iceberg: Option<iceberg::IcebergCounts>,
    records: u64,
    bytes: usize,
    /// Once stored: the bytes of the object and of the error object, as written.
    stored_len: u64,
    errors_len: u64,
    oldest_ms: i64,
    attempts: u32,
    failing_since: Option<Instant>,
}

/// What the conversion of one object did (for the metrics, counted once it is stored).
#[derive(Debug, Clone, Copy, Default)]
struct ConversionCounts {
    records: u64,
    bytes: u64,
    failed: u64,
    failed_bytes: u64,
}

/// What writing a job needs besides the job.
#[derive(Clone)]
struct JobContext {
    stores: Arc<ObjectStores>,
    gzip_level: u32,
    metrics: DeliveryMetrics,
    wal: Wal,
    tag: u64,
    conversion: Option<Arc<ConversionPlan>>,
    /// Whether frames hold processed records (so `rawData` must be read back from the WAL).
    processed: bool,
    /// Iceberg streams: the catalog the `ice:` partitions are committed to.
    iceberg: Option<iceberg::IcebergTarget>,
    log: StreamLogger,
}

async fn attempt_owned(i: usize, mut job: Job, ctx: JobContext) -> (usize, Job, Result<(), ObjectError>) {
    let result = attempt_job(&mut job, ctx).await;
    if result.is_ok() {
        // Stored: the records are no longer needed (a batch can hold thousands of objects).
        job.stored_len = job.body.as_ref().and_then(|b| b.as_ref().ok()).map_or(0, |b| b.len() as u64);
        job.errors_len = job.errors_body.as_ref().map_or(0, |b| b.len() as u64);
        job.frames = None;
        job.body = None;
        job.errors_body = None;
    }
    (i, job, result)
}

/// The body of a job's object: the frames as they are (or as error lines), or converted.
struct Encoded {
    body: Result<Bytes, String>,
    errors: Option<Bytes>,
    converted: Option<ConversionCounts>,
}

fn encode_job(intent: &Intent, id: &str, frames: &[u8], ctx: &JobContext) -> Encoded {
    let conversion = ctx.conversion.as_ref().filter(|_| intent.error.is_none() && intent.errors_key.is_some());
    let Some(plan) = conversion else {
        // Records a destination refused go to the error output as they were ingested (§10).
        let originals = intent.error.is_some() && !id.starts_with(ERROR_PARTITION);
        let raw = originals.then(|| original_records(&ctx.wal, ctx.tag, intent.first, intent.last));
        let body = encode_frames(intent, frames, ctx.gzip_level, raw.as_ref());
        return Encoded { body, errors: None, converted: None };
    };
    let converted =
        spillway_format::convert::convert(&plan.conversion, crate::partition::frames(frames).map(|f| f.data));
    let out = match converted {
        Ok(out) => out,
        Err(e) => return Encoded { body: Err(e.to_string()), errors: None, converted: None },
    };
    let counts = ConversionCounts {
        records: out.records,
        bytes: out.bytes,
        failed: out.failed.len() as u64,
        failed_bytes: out.failed_bytes,
    };
    if let Some((_, first)) = out.failed.first() {
        ctx.log.error(
            false,
            &ErrorEvent {
                error_code: first.code,
                message: &first.message,
                destination: &intent.bucket_arn,
                record_count: Some(counts.failed),
                attempts_made: Some(1),
                ..ErrorEvent::default()
            },
        );
    }
    let errors = (!out.failed.is_empty()).then(|| {
        let ending = now_ms();
        render_failed(frames, &out.failed, ctx, (intent.first, intent.last), |text, e, arrival_ms, raw| {
            plan.write_error_line(text, e, arrival_ms, ending, raw)
        })
    });
    Encoded { body: Ok(Bytes::from(out.body)), errors, converted: Some(counts) }
}

/// The error-output object of the frames at the positions of `failed`: one line each, rendered by
/// `line` from the failure, the arrival time and the record as it was ingested (read back from the
/// WAL range when the frames hold processed records). Blocking.
fn render_failed<T>(
    frames: &[u8],
    failed: &[(usize, T)],
    ctx: &JobContext,
    (first, last): (Lsn, Lsn),
    mut line: impl FnMut(&mut String, &T, i64, &[u8]),
) -> Bytes {
    let raw = ctx.processed.then(|| original_records(&ctx.wal, ctx.tag, first, last));
    let all: Vec<crate::partition::Frame<'_>> = crate::partition::frames(frames).collect();
    let mut text = String::new();
    for (i, failure) in failed {
        let Some(f) = all.get(*i) else { continue };
        let original = raw.as_ref().and_then(|o| o.get(&(f.lsn, f.index))).map_or(f.data, |r| &r[..]);
        line(&mut text, failure, f.arrival_ms, original);
    }
    Bytes::from(text)
}

/// One write attempt of a job's object.
async fn attempt_job(job: &mut Job, ctx: JobContext) -> Result<(), ObjectError> {
    if let Some(target) = ctx.iceberg.as_ref()
        && job.id.starts_with(iceberg::ICE_PARTITION)
        && job.intent.error.is_none()
    {
        return iceberg::attempt(job, target, &ctx).await;
    }
    if job.body.is_none() {
        let (taken, frames, intent, id) = (job.taken.take(), job.frames.clone(), job.intent.clone(), job.id.clone());
        let c = ctx.clone();
        let read = blocking(move || {
            let frames = match frames {
                Some(f) => f,
                None => Arc::new(taken.unwrap_or_default().into_bytes()?),
            };
            let encoded = encode_job(&intent, &id, &frames, &c);
            Ok::<_, std::io::Error>((frames, encoded))
        })
        .await;
        match read {
            Ok((frames, encoded)) => {
                job.frames = Some(frames);
                job.body = Some(encoded.body);
                job.errors_body = encoded.errors;
                job.converted = encoded.converted;
            }
            Err(source) => {
                // The spill file cannot be read: the records are still in the WAL (the floor holds
                // them), so a restart delivers them; until then this keeps failing loudly.
                return Err(ObjectError::Io { op: "read spilled records", path: PathBuf::new(), source });
            }
        }
    }
    let body = match &job.body {
        Some(Ok(b)) => b.clone(),
        Some(Err(e)) => return Err(ObjectError::Config { message: format!("cannot encode the object: {e}") }),
        None => return Err(ObjectError::Config { message: "no object body".into() }),
    };
    let compression = Compression::from_firehose(&job.intent.compression).unwrap_or(Compression::Uncompressed);
    let opts = PutOptions {
        content_encoding: compression.content_encoding(),
        sse_kms_key_id: job.intent.kms_key_arn.clone(),
        ..PutOptions::default()
    };
    let (bucket, kms) = (job.intent.bucket_arn.clone(), job.intent.kms_key_arn.clone());
    let stores = Arc::clone(&ctx.stores);
    let sink = blocking(move || stores.sink(&bucket, kms.as_deref())).await?;
    if let (Some(errors), Some(key), false) = (&job.errors_body, &job.intent.errors_key, job.errors_stored) {
        job.attempts += 1;
        ctx.metrics.put_requests.inc();
        sink.put(key, errors.clone(), &opts).await?;
        job.errors_stored = true;
    }
    if body.is_empty() && job.converted.is_some() {
        // Every record failed conversion: there is no file to write.
        return Ok(());
    }
    job.attempts += 1;
    ctx.metrics.put_requests.inc();
    sink.put(&job.intent.key, body, &opts).await
}

impl Supervisor {
    fn logger(&self) -> StreamLogger {
        StreamLogger { logs: Arc::clone(&self.res.logs), stream: Arc::clone(&self.plan.log) }
    }

    fn build_processor(&self) -> Processor {
        let plan = self.plan.processing.clone();
        let lambda = plan.as_ref().and_then(|p| p.lambda.as_ref()).map(|cfg| {
            match self.res.functions.backend(&cfg.lambda_arn) {
                Ok(backend) => backend,
                Err(e) => {
                    tracing::error!(stream = %self.plan.name, function = %cfg.lambda_arn, error = %e, "cannot resolve the Lambda function");
                    Arc::new(UnresolvedFunction(e)) as Arc<dyn FunctionBackend>
                }
            }
        });
        Processor {
            plan,
            lambda,
            context: StreamContext {
                delivery_stream_arn: self.plan.arn.clone(),
                region: self.plan.region.clone(),
                source_kinesis_stream_arn: None,
            },
            partitioner: self.plan.s3.dynamic_partitioning.then(|| self.plan.s3.main.prefix.clone()),
            iceberg: self.plan.iceberg.as_ref().map(|p| crate::processing::IcebergRouting {
                default_table: p.single_table().map(|t| (t.database.clone(), t.table.clone())),
            }),
            seed: self.plan.id,
        }
    }

    /// Whether the queued entries should be processed now.
    fn queue_due(&self, force: bool) -> bool {
        let Some(p) = &self.part else { return false };
        if p.queue.is_empty() {
            return false;
        }
        match p.processor.lambda_config() {
            None => true,
            Some(cfg) => {
                force
                    || self.draining
                    || p.queue_bytes as u64 >= cfg.buffer_size_bytes()
                    || p.queue_oldest_ms().is_some_and(|o| o + cfg.buffer_interval.as_millis() as i64 <= now_ms())
            }
        }
    }

    /// Where processing has got to: every entry below it is processed into the partitions.
    fn processed_position(&self) -> Lsn {
        let position = self.reader.as_ref().map_or(0, WalReader::position);
        self.part.as_ref().and_then(|p| p.queue.front().map(|e| e.lsn)).unwrap_or(position)
    }

    /// Runs the processors over the queued entries and puts the results into their partitions.
    async fn process_queue(&mut self) {
        let Some(p) = &mut self.part else { return };
        let entries: Vec<Buffered> = p.queue.drain(..).collect();
        p.queue_bytes = 0;
        let processor = p.processor.clone();
        let mut records = Vec::with_capacity(entries.iter().map(|e| e.records as usize).sum());
        for e in &entries {
            if let Ok(view) = EntryView::parse(&e.payload) {
                for (i, r) in view.records().enumerate() {
                    records.push(Record::new(e.payload.slice_ref(r), e.arrival_ms, e.lsn, i as u32));
                }
            }
        }
        drop(entries);
        let out = processor.run(records).await;
        let pm = &self.processing_metrics;
        for (duration, success) in &out.stats.invocations {
            pm.invocation(*duration, *success);
        }
        if let Some(d) = out.stats.jq_duration {
            pm.jq_duration.observe(d.as_secs_f64() * 1000.0);
        }
        pm.succeed_records.inc_by(out.stats.succeed_records);
        pm.succeed_bytes.inc_by(out.stats.succeed_bytes);
        self.log_failed_records(&out.failed);
        self.place(out, processor.append_delimiter());
        self.spill_if_needed().await;
    }

    /// One error event per error code of the records processing failed (Firehose logs Lambda
    /// errors to the destination's log stream).
    fn log_failed_records(&self, failed: &[FailedRecord]) {
        if failed.is_empty() || !self.plan.log.logging.is_enabled() {
            return;
        }
        let mut by_code: Vec<(&FailedRecord, u64)> = Vec::new();
        for f in failed {
            match by_code.iter_mut().find(|(g, _)| g.code == f.code) {
                Some((_, n)) => *n += 1,
                None => by_code.push((f, 1)),
            }
        }
        let destination = self.main_destination();
        for (f, n) in by_code {
            self.logger().error(
                false,
                &ErrorEvent {
                    error_code: &f.code,
                    message: &f.message,
                    destination: &destination,
                    processor: f.lambda_arn.as_deref(),
                    record_count: Some(n),
                    attempts_made: Some(f.attempts),
                },
            );
        }
    }

    /// What the destination lane writes to: the table's catalog for Iceberg streams, else the bucket.
    fn main_destination(&self) -> String {
        match &self.plan.iceberg {
            Some(ice) => ice.catalog.arn.clone(),
            None => self.plan.s3.main.bucket_arn.clone(),
        }
    }

    /// The destination of a job, for its error events.
    fn destination_of<'a>(&'a self, job: &'a Job) -> &'a str {
        match &self.plan.iceberg {
            Some(ice) if job.id.starts_with(iceberg::ICE_PARTITION) && job.intent.error.is_none() => &ice.catalog.arn,
            _ => &job.intent.bucket_arn,
        }
    }

    /// Puts processed records into their partitions, and failed ones into the error partitions.
    fn place(&mut self, out: crate::processing::RunOutput, delimit: bool) {
        let pm = &self.processing_metrics;
        let limit = self.res.active_partitions_limit;
        let iceberg_stream = self.plan.iceberg.is_some();
        let marks = &self.state.partitions;
        let delivered = |id: &str| if marks.is_empty() { 0 } else { marks.get(id).map_or(0, |s| s.delivered) };
        let Some(p) = &mut self.part else { return };
        let mut failed = out.failed;
        let mut exceeded = false;
        let mut id = String::new();
        for r in out.records {
            id.clear();
            match &r.partition {
                Some(prefix) => {
                    id.push_str(if iceberg_stream { iceberg::ICE_PARTITION } else { DP_PARTITION });
                    id.push_str(prefix);
                }
                None => id.push_str(MAIN_PARTITION),
            }
            if r.lsn < delivered(&id) {
                continue;
            }
            if r.partition.is_some() && !iceberg_stream && p.dp_active >= limit && !p.partitions.contains_key(&id) {
                exceeded = true;
                failed.push(FailedRecord {
                    raw: r.raw,
                    arrival_ms: r.arrival_ms,
                    lsn: r.lsn,
                    output_type: PROCESSING_FAILED,
                    code: ACTIVE_PARTITIONS_LIMIT_EXCEEDED.into(),
                    message: format!(
                        "The number of active partitions exceeds the limit of {limit} for the delivery stream."
                    ),
                    attempts: 1,
                    lambda_arn: None,
                });
                continue;
            }
            if delimit {
                p.push(&id, r.arrival_ms, r.lsn, r.index, &[&r.data, b"\n"]);
            } else {
                p.push(&id, r.arrival_ms, r.lsn, r.index, &[&r.data]);
            }
        }
        pm.failed_records.inc_by(failed.len() as u64);
        let ending = now_ms();
        let mut line = String::new();
        for f in &failed {
            id.clear();
            id.push_str(ERROR_PARTITION);
            id.push_str(f.output_type);
            if f.lsn < delivered(&id) {
                continue;
            }
            line.clear();
            f.write_json_line(ending, &mut line);
            p.push(&id, f.arrival_ms, f.lsn, 0, &[line.as_bytes()]);
        }
        pm.partition_count_exceeded.set(i64::from(exceeded));
        pm.partition_count.set(p.dp_active as i64);
        pm.active_partitions_limit.set(limit as i64);
    }

    /// Moves the largest in-memory buffers to spill files while the stream's partition buffers hold
    /// more than their memory budget, down to half of it.
    async fn spill_if_needed(&mut self) {
        let budget = self.res.partition_memory_bytes;
        let Some(p) = &mut self.part else { return };
        let mut mem = p.mem_bytes();
        if mem <= budget {
            return;
        }
        let mut sizes: Vec<(usize, String)> =
            p.partitions.iter().map(|(id, part)| (part.buf.mem_len(), id.clone())).collect();
        sizes.sort_unstable_by_key(|(size, _)| std::cmp::Reverse(*size));
        let mut writes = Vec::new();
        for (size, id) in sizes {
            if mem <= budget / 2 || size == 0 {
                break;
            }
            let Some(part) = p.partitions.get_mut(&id) else { continue };
            p.spill_serial += 1;
            let path = p.spill_dir.join(format!("{}.buf", p.spill_serial));
            let (path, bytes) = part.buf.take_for_spill(path);
            part.buf.spilled(bytes.len());
            mem -= size;
            writes.push((path, bytes));
        }
        let count = writes.len();
        let result = blocking(move || {
            for (path, bytes) in &writes {
                append_spill(path, bytes)?;
            }
            Ok::<(), std::io::Error>(())
        })
        .await;
        if let Err(e) = result {
            // The records stay in the WAL below the floor; a restart processes them again.
            tracing::error!(stream = %self.plan.name, error = %e, "cannot spill partition buffers");
            self.set_failure(Some(format!("cannot spill partition buffers: {e}")));
        } else {
            tracing::debug!(stream = %self.plan.name, partitions = count, "spilled partition buffers");
        }
    }

    /// Re-executes partition objects a crash interrupted once their records are processed again.
    async fn run_pending_partitions(&mut self) -> Result<(), Stopped> {
        if self.state.partitions.values().all(|s| s.pending.is_none()) {
            return Ok(());
        }
        let position = self.processed_position();
        let ready: Vec<Intent> =
            self.state.partitions.values().filter_map(|s| s.pending.clone()).filter(|i| position > i.last).collect();
        let mut jobs = Vec::new();
        for intent in ready {
            let Some(id) = intent.partition.clone() else { continue };
            let buf = self.part.as_mut().and_then(|p| p.take(&id));
            let (head, rest) = match buf {
                None => (Vec::new(), None),
                Some(mut buf) => {
                    let last = intent.last;
                    let (head, buf) = blocking(move || (buf.take_upto(last), buf)).await;
                    (head.unwrap_or_default(), Some(buf))
                }
            };
            if let (Some(rest), Some(p)) = (rest, self.part.as_mut())
                && !rest.is_empty()
            {
                p.by_age.insert((rest.oldest_arrival_ms, id.clone()));
                if id.starts_with(DP_PARTITION) {
                    p.dp_active += 1;
                }
                p.partitions.insert(id.clone(), Part { since: rest.oldest_arrival_ms, buf: rest });
            }
            let records = frames(&head).count() as u64;
            let bytes = frames(&head).map(|f| f.data.len()).sum();
            let oldest_ms = frames(&head).map(|f| f.arrival_ms).min().unwrap_or_else(now_ms);
            tracing::info!(stream = %self.plan.name, partition = %id, key = %intent.key, records, "re-delivering an interrupted object");
            jobs.push(Job {
                id,
                intent,
                taken: None,
                frames: Some(Arc::new(head)),
                body: None,
                errors_body: None,
                errors_stored: false,
                converted: None,
                iceberg: None,
                records,
                bytes,
                oldest_ms,
                attempts: 0,
                stored_len: 0,
                errors_len: 0,
                failing_since: None,
            });
        }
        self.deliver_jobs(jobs).await
    }

    /// Cuts the selected partitions into objects and writes them.
    async fn flush_partitions(&mut self, select: Select) -> Result<(), Stopped> {
        let lane = &self.plan.s3.main;
        let (limit, interval_ms, now) = (lane.buffer_bytes.max(1), lane.interval_secs as i64 * 1000, now_ms());
        let Some(p) = &self.part else { return Ok(()) };
        let mut ids: Vec<String> = match select {
            Select::All => p.partitions.keys().cloned().collect(),
            Select::Full | Select::Due => {
                let mut ids: Vec<String> = p
                    .partitions
                    .iter()
                    .filter(|(_, part)| part.buf.data_bytes >= limit)
                    .map(|(id, _)| id.clone())
                    .collect();
                if select == Select::Due {
                    ids.extend(
                        p.by_age
                            .iter()
                            .take_while(|(since, _)| since + interval_ms <= now)
                            .filter(|(_, id)| p.partitions.get(id).is_some_and(|part| part.buf.data_bytes < limit))
                            .map(|(_, id)| id.clone()),
                    );
                }
                ids
            }
        };
        ids.retain(|id| self.state.partitions.get(id).is_none_or(|s| s.pending.is_none()));
        if ids.is_empty() {
            return Ok(());
        }
        let mut jobs = Vec::with_capacity(ids.len());
        for id in ids {
            let Some(mut buf) = self.part.as_mut().and_then(|p| p.take(&id)) else { continue };
            if buf.is_empty() {
                continue;
            }
            let intent = self.cut_partition(&id, &buf);
            self.state.partitions.entry(id.clone()).or_default().pending = Some(intent.clone());
            jobs.push(Job {
                records: buf.records,
                bytes: buf.data_bytes,
                oldest_ms: buf.oldest_arrival_ms,
                taken: Some(buf.take_all()),
                id,
                intent,
                frames: None,
                body: None,
                errors_body: None,
                errors_stored: false,
                converted: None,
                iceberg: None,
                attempts: 0,
                stored_len: 0,
                errors_len: 0,
                failing_since: None,
            });
        }
        self.save_state().await;
        self.deliver_jobs(jobs).await
    }

    /// The object (key and WAL range) of a partition's buffer.
    fn cut_partition(&self, id: &str, buf: &PartitionBuffer) -> Intent {
        if let Some(ice) = id.strip_prefix(iceberg::ICE_PARTITION) {
            // The rows go to the table; the intent's key is where records it refuses go: under the
            // table's `S3ErrorOutputPrefix`, else the `S3Configuration`'s error prefix.
            let range = (buf.first_lsn, buf.last_lsn);
            let failed = spillway_model::iceberg::ICEBERG_FAILED;
            let mut intent =
                self.new_intent(&self.plan.s3.main, range, buf.oldest_arrival_ms, id, ObjectPrefix::Error(failed));
            let table_prefix = crate::processing::parse_iceberg_partition(ice)
                .and_then(|(db, t, _)| self.plan.iceberg.as_ref()?.table(db, t)?.error_output_prefix.as_ref());
            if let Some(prefix) = table_prefix {
                let arrival = Utc.timestamp_millis_opt(buf.oldest_arrival_ms).single().unwrap_or_else(Utc::now);
                let name = intent.key.rsplit('/').next().unwrap_or_default().to_string();
                intent.key =
                    prefix.evaluate_error_prefix(arrival, failed, seed(self.plan.id, range.0, range.1, id)) + &name;
            }
            return Intent { errors_key: Some(intent.key.clone()), partition: Some(id.to_string()), ..intent };
        }
        let prefix = if let Some(prefix) = id.strip_prefix(DP_PARTITION) {
            ObjectPrefix::Evaluated(prefix)
        } else if let Some(output_type) = id.strip_prefix(ERROR_PARTITION) {
            ObjectPrefix::Error(output_type)
        } else {
            ObjectPrefix::Evaluate
        };
        let range = (buf.first_lsn, buf.last_lsn);
        let intent = self.new_intent(&self.plan.s3.main, range, buf.oldest_arrival_ms, id, prefix);
        Intent { partition: Some(id.to_string()), ..intent }
    }

    /// Writes the objects of `jobs` (each intent already persisted), several at a time, retrying the
    /// failing ones until every one is stored; then records the progress and acknowledges the WAL.
    async fn deliver_jobs(&mut self, mut jobs: Vec<Job>) -> Result<(), Stopped> {
        let mut backoff = BACKOFF_FIRST;
        let retry_window = self.plan.s3.retry_duration_secs.map(Duration::from_secs);
        while !jobs.is_empty() {
            if let Err(e) = self.open_iceberg().await {
                tracing::warn!(stream = %self.plan.name, error = %e, "cannot open the Iceberg catalog; retrying");
                self.set_failure(Some(format!("Iceberg catalog unavailable: {e} (the records are kept and retried)")));
                if let Some(stop) = self.wait_or_command(backoff).await {
                    return Err(stop);
                }
                backoff = (backoff * 2).min(BACKOFF_CAP);
                continue;
            }
            let ctx = JobContext {
                stores: Arc::clone(&self.res.stores),
                gzip_level: self.res.gzip_level,
                metrics: self.metrics.0.clone(),
                wal: self.res.wal.clone(),
                tag: self.plan.id,
                conversion: self.plan.conversion.clone(),
                processed: self.plan.processing.is_some(),
                iceberg: self.iceberg_target.clone(),
                log: self.logger(),
            };
            // Owned jobs on tasks: PARALLEL_PUTS in flight, results in the jobs' order.
            let mut results = Vec::with_capacity(jobs.len());
            let mut set = tokio::task::JoinSet::new();
            let total = jobs.len();
            let mut queue = std::mem::take(&mut jobs).into_iter().enumerate();
            let mut slots: Vec<Option<Job>> = (0..total).map(|_| None).collect();
            loop {
                while set.len() < PARALLEL_PUTS {
                    let Some((i, job)) = queue.next() else { break };
                    set.spawn(attempt_owned(i, job, ctx.clone()));
                }
                match set.join_next().await {
                    None => break,
                    Some(Ok((i, job, result))) => {
                        slots[i] = Some(job);
                        results.push((i, result));
                    }
                    Some(Err(e)) => std::panic::resume_unwind(e.into_panic()),
                }
            }
            jobs = slots.into_iter().flatten().collect();
            let mut done = vec![false; jobs.len()];
            let mut converted = false;
            let mut last_error = None;
            for (i, result) in results {
                let job = &mut jobs[i];
                match result {
                    Ok(()) => done[i] = true,
                    Err(e) => {
                        self.metrics.0.failures.inc();
                        let since = *job.failing_since.get_or_insert_with(Instant::now);
                        tracing::warn!(stream = %self.plan.name, key = %job.intent.key, code = e.firehose_code(), error = %e, attempts = job.attempts, "object write failed");
                        ctx.log.error(
                            false,
                            &ErrorEvent {
                                error_code: e.firehose_code(),
                                message: &e.to_string(),
                                destination: self.destination_of(job),
                                record_count: Some(job.records),
                                attempts_made: Some(job.attempts),
                                ..ErrorEvent::default()
                            },
                        );
                        let expired = retry_window.is_some_and(|w| since.elapsed() >= w);
                        let convertible = job.intent.error.is_none() && !job.id.starts_with(ERROR_PARTITION);
                        if (!e.is_retryable() || expired) && convertible {
                            // The destination does not take these records: they go to the error output.
                            let error = if e.is_retryable() {
                                ("S3.RetryDurationExceeded".to_string(), format!("retry duration exceeded: {e}"))
                            } else {
                                (e.firehose_code().to_string(), e.to_string())
                            };
                            let (plan, oldest, attempts) = (&self.plan.s3.main, job.oldest_ms, job.attempts);
                            self.redirect_to_s3_failed(plan, &mut job.intent, oldest, error, attempts);
                            job.body = None;
                            self.state.partitions.entry(job.id.clone()).or_default().pending = Some(job.intent.clone());
                            converted = true;
                        }
                        last_error = Some(format!(
                            "S3 delivery to {} is failing: {}: {} (attempt {}; the records are kept and retried)",
                            job.intent.bucket_arn,
                            e.firehose_code(),
                            e,
                            job.attempts
                        ));
                    }
                }
            }
            let mut remaining = Vec::new();
            for (job, ok) in jobs.into_iter().zip(done) {
                if !ok {
                    remaining.push(job);
                    continue;
                }
                self.metrics.0.success.inc();
                let mut keys = Vec::with_capacity(2);
                let mut records = job.records;
                if let Some(c) = job.converted {
                    let pm = &self.processing_metrics;
                    pm.succeed_conversion_records.inc_by(c.records);
                    pm.succeed_conversion_bytes.inc_by(c.bytes);
                    pm.failed_conversion_records.inc_by(c.failed);
                    pm.failed_conversion_bytes.inc_by(c.failed_bytes);
                    records = c.records;
                    if job.errors_stored
                        && let Some(k) = &job.intent.errors_key
                    {
                        keys.push(k.clone());
                    }
                }
                if let Some(c) = &job.iceberg {
                    let pm = &self.processing_metrics;
                    pm.iceberg_successful_rows.inc_by(c.rows);
                    pm.iceberg_bytes.inc_by(c.bytes);
                    pm.iceberg_failed_rows.inc_by(c.failed);
                    if c.committed {
                        pm.iceberg_commits.inc();
                        pm.iceberg_commit_duration.observe(c.commit_ms);
                        pm.iceberg_data_files.inc_by(c.data_files.len() as u64);
                        pm.iceberg_data_file_bytes.inc_by(c.data_file_bytes);
                        keys.extend(c.data_files.iter().cloned());
                    }
                    if job.errors_stored
                        && let Some(k) = &job.intent.errors_key
                    {
                        keys.push(k.clone());
                    }
                }
                let wrote_main = job.converted.is_none_or(|c| c.records > 0) && job.iceberg.is_none();
                if wrote_main {
                    keys.push(job.intent.key.clone());
                }
                let m = &self.metrics.0;
                let error_object = job.intent.error.is_some() || job.id.starts_with(ERROR_PARTITION);
                if !error_object && wrote_main {
                    m.object_count.inc();
                    m.records.inc_by(records);
                    m.bytes.inc_by(job.bytes as u64);
                    m.stored_bytes.inc_by(job.stored_len);
                } else if error_object && wrote_main {
                    m.error_output_objects.inc();
                    m.error_output_bytes.inc_by(job.stored_len);
                }
                if job.errors_stored && job.errors_len > 0 {
                    m.error_output_objects.inc();
                    m.error_output_bytes.inc_by(job.errors_len);
                }
                self.state
                    .partitions
                    .insert(job.id.clone(), LaneState { delivered: job.intent.last + 1, pending: None });
                for (_, _, report) in &mut self.flushes {
                    report.objects.extend(keys.iter().cloned());
                    report.records += job.records;
                }
            }
            jobs = remaining;
            self.commit_floor();
            self.save_state().await;
            self.ack().await;
            match last_error {
                None => self.set_failure(None),
                Some(e) => self.set_failure(Some(e)),
            }
            if jobs.is_empty() || converted {
                continue;
            }
            if let Some(stop) = self.wait_or_command(backoff).await {
                return Err(stop);
            }
            backoff = (backoff * 2).min(BACKOFF_CAP);
        }
        Ok(())
    }

    /// Opens the embedded catalog of an Iceberg stream once: `<data-dir>/catalog/catalog.db`,
    /// catalog name from the CatalogARN, warehouse `WarehouseLocation` mapped to the local bucket
    /// store (else the bucket named like the catalog).
    async fn open_iceberg(&mut self) -> Result<(), String> {
        let Some(plan) = &self.plan.iceberg else { return Ok(()) };
        if self.iceberg_target.is_some() {
            return Ok(());
        }
        let warehouse = plan.catalog.warehouse.as_ref().map(|(b, p)| (b.as_str(), p.as_str()));
        let catalog = self.res.iceberg.open(&plan.catalog.name, warehouse).await.map_err(|e| e.to_string())?;
        let partition_identity =
            plan.tables.iter().map(|t| ((t.database.clone(), t.table.clone()), t.partition_identity.clone())).collect();
        let unique_keys =
            plan.tables.iter().map(|t| ((t.database.clone(), t.table.clone()), t.unique_keys.clone())).collect();
        self.iceberg_target = Some(iceberg::IcebergTarget {
            catalog,
            stream_key: format!("{:016x}", self.plan.id),
            schema_evolution: plan.schema_evolution,
            table_creation: plan.table_creation,
            partition_identity: Arc::new(partition_identity),
            unique_keys: Arc::new(unique_keys),
            append_only: plan.append_only,
        });
        Ok(())
    }

    /// Saves and acknowledges a floor that moved without an object being written (records dropped
    /// by the function, or processed into partitions that were delivered earlier).
    async fn advance_floor(&mut self) {
        let before = self.state.lanes.get("main").map_or(0, |s| s.delivered);
        self.commit_floor();
        if self.state.lanes.get("main").map_or(0, |s| s.delivered) > before {
            self.save_state().await;
            self.ack().await;
        }
    }

    /// Advances the `main` lane's floor to the lowest record not yet stored, and forgets the
    /// per-partition marks below it.
    fn commit_floor(&mut self) {
        let Some(p) = &self.part else { return };
        let mut floor = self.processed_position();
        for part in p.partitions.values() {
            if !part.buf.is_empty() {
                floor = floor.min(part.buf.first_lsn);
            }
        }
        for s in self.state.partitions.values() {
            if let Some(i) = &s.pending {
                floor = floor.min(i.first);
            }
        }
        let main = self.state.lane("main");
        main.delivered = main.delivered.max(floor);
        let floor = main.delivered;
        self.state.partitions.retain(|_, s| s.pending.is_some() || s.delivered > floor);
    }
}

/// The bytes of a partition object: the frames' data concatenated (or, for records a destination
/// refused, error-output JSON lines whose `rawData` is the ingested record from `originals`, or
/// the frame's data when it is not there), then compressed.
/// The ingested records of a stream's WAL entries `first..=last`, by (lsn, index). Blocking.
fn original_records(wal: &Wal, tag: u64, first: Lsn, last: Lsn) -> HashMap<(Lsn, u32), Bytes> {
    let mut map = HashMap::new();
    let Ok(mut reader) = wal.reader(first) else { return map };
    while let Some(Ok(entry)) = reader.next() {
        if entry.lsn > last {
            break;
        }
        if entry.tag != tag {
            continue;
        }
        if let Ok(view) = EntryView::parse(&entry.payload) {
            for (i, r) in view.records().enumerate() {
                map.insert((entry.lsn, i as u32), entry.payload.slice_ref(r));
            }
        }
    }
    map
}

fn encode_frames(
    intent: &Intent,
    buf: &[u8],
    gzip_level: u32,
    originals: Option<&HashMap<(Lsn, u32), Bytes>>,
) -> Result<Bytes, String> {
    let compression = Compression::from_firehose(&intent.compression).unwrap_or(Compression::Uncompressed);
    let file = intent.key.rsplit('/').next().unwrap_or(&intent.key);
    let entry_name = file.strip_suffix(compression.extension()).unwrap_or(file);
    let mut enc = Encoder::new(compression, gzip_level, entry_name, buf.len());
    let mut line = String::new();
    for f in frames(buf) {
        match &intent.error {
            None => enc.write(f.data).map_err(|e| e.to_string())?,
            Some(err) => {
                let raw = originals.and_then(|o| o.get(&(f.lsn, f.index))).map_or(f.data, |r| &r[..]);
                error_line(&mut line, err, f.arrival_ms, raw);
                enc.write(line.as_bytes()).map_err(|e| e.to_string())?;
            }
        }
    }
    enc.finish().map(Bytes::from).map_err(|e| e.to_string())
}

async fn sleep_until_ms(deadline_ms: Option<i64>) {
    match deadline_ms {
        None => std::future::pending().await,
        Some(d) => {
            let wait = (d - now_ms()).max(0) as u64;
            tokio::time::sleep(Duration::from_millis(wait)).await
        }
    }
}

/// Replaces `line` with the error-output JSON line (reference §10) of one record.
fn error_line(line: &mut String, err: &ErrorOutput, arrival_ms: i64, raw: &[u8]) {
    let value = serde_json::json!({
        "attemptsMade": err.attempts,
        "arrivalTimestamp": arrival_ms,
        "errorCode": err.code,
        "errorMessage": err.message,
        "attemptEndingTimestamp": err.ending_ms,
        "rawData": base64::engine::general_purpose::STANDARD.encode(raw),
    });
    line.clear();
    line.push_str(&value.to_string());
    line.push('\n');
}

/// The bytes of an intent's object: the records concatenated byte for byte (Firehose adds no
/// delimiter), or the error-output JSON lines; then compressed.
fn encode(intent: &Intent, entries: &[Buffered], gzip_level: u32) -> Result<Bytes, String> {
    let compression = Compression::from_firehose(&intent.compression).unwrap_or(Compression::Uncompressed);
    let file = intent.key.rsplit('/').next().unwrap_or(&intent.key);
    let entry_name = file.strip_suffix(compression.extension()).unwrap_or(file);
    let size: usize = entries.iter().map(|e| e.bytes).sum();
    let mut enc = Encoder::new(compression, gzip_level, entry_name, size);
    let mut line = String::new();
    for e in entries.iter().filter(|e| e.lsn >= intent.first && e.lsn <= intent.last) {
        let view = EntryView::parse(&e.payload).map_err(|err| err.to_string())?;
        for record in view.records() {
            match &intent.error {
                None => enc.write(record).map_err(|err| err.to_string())?,
                Some(err) => {
                    error_line(&mut line, err, e.arrival_ms, record);
                    enc.write(line.as_bytes()).map_err(|err| err.to_string())?;
                }
            }
        }
    }
    enc.finish().map(Bytes::from).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(lsn: Lsn, records: &[&[u8]]) -> Buffered {
        let mut payload = vec![1u8, 0, 0, 0];
        payload.extend_from_slice(&(records.len() as u32).to_le_bytes());
        payload.extend_from_slice(&1_700_000_000_000i64.to_le_bytes());
        for r in records {
            payload.extend_from_slice(&(r.len() as u32).to_le_bytes());
        }
        for r in records {
            payload.extend_from_slice(r);
        }
        let bytes = records.iter().map(|r| r.len()).sum();
        Buffered {
            lsn,
            arrival_ms: 1_700_000_000_000,
            payload: Bytes::from(payload),
            records: records.len() as u64,
            bytes,
        }
    }

    fn intent(first: Lsn, last: Lsn, compression: &str, error: Option<ErrorOutput>) -> Intent {
        Intent {
            first,
            last,
            bucket_arn: "arn:aws:s3:::b".into(),
            key: "p/s-1-x.gz".into(),
            compression: compression.into(),
            kms_key_arn: None,
            error,
            partition: None,
            errors_key: None,
        }
    }

    #[test]
    fn objects_concatenate_the_intent_range_without_delimiters() {
        let entries = [entry(3, &[b"abc", b""]), entry(5, &[b"de"]), entry(9, &[b"zz"])];
        let body = encode(&intent(3, 5, "UNCOMPRESSED", None), &entries, 6).unwrap();
        assert_eq!(&body[..], b"abcde");
        let gz = encode(&intent(3, 9, "GZIP", None), &entries, 6).unwrap();
        let plain = spillway_format::compression::decompress(Compression::Gzip, &gz).unwrap();
        assert_eq!(plain, b"abcdezz");
    }

    #[test]
    fn error_output_is_one_json_line_per_record() {
        let err = ErrorOutput {
            output_type: S3_FAILED.into(),
            code: "S3.InvalidKey".into(),
            message: "bad".into(),
            attempts: 2,
            ending_ms: 5,
        };
        let body = encode(&intent(3, 3, "UNCOMPRESSED", Some(err)), &[entry(3, &[b"abc", b"x"])], 6).unwrap();
        let lines: Vec<serde_json::Value> =
            std::str::from_utf8(&body).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["rawData"], "YWJj");
        assert_eq!(lines[0]["errorCode"], "S3.InvalidKey");
        assert_eq!(lines[0]["attemptsMade"], 2);
        assert_eq!(lines[0]["arrivalTimestamp"], 1_700_000_000_000i64);
        assert_eq!(lines[1]["rawData"], "eA==");
    }

    #[test]
    fn partition_objects_concatenate_frames_or_render_error_lines() {
        let mut buf = PartitionBuffer::default();
        buf.push(1_700_000_000_000, 3, 0, &[b"ab", b"\n"]);
        buf.push(1_700_000_000_001, 4, 0, &[b"c", b"\n"]);
        let frames = buf.take_all().into_bytes().unwrap();
        let mut i = intent(3, 4, "UNCOMPRESSED", None);
        assert_eq!(&encode_frames(&i, &frames, 6, None).unwrap()[..], b"ab\nc\n");
        i.error = Some(ErrorOutput {
            output_type: S3_FAILED.into(),
            code: "S3.InvalidKey".into(),
            message: "bad".into(),
            attempts: 3,
            ending_ms: 9,
        });
        let body = encode_frames(&i, &frames, 6, None).unwrap();
        let lines: Vec<serde_json::Value> =
            std::str::from_utf8(&body).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1]["rawData"], "Ywo=");
        assert_eq!(lines[1]["arrivalTimestamp"], 1_700_000_000_001i64);
        assert_eq!(lines[0]["attemptsMade"], 3);
    }

    #[test]
    fn seeds_differ_by_range_and_lane() {
        assert_eq!(seed(1, 2, 3, "main"), seed(1, 2, 3, "main"));
        assert_ne!(seed(1, 2, 3, "main"), seed(1, 2, 4, "main"));
        assert_ne!(seed(1, 2, 3, "main"), seed(1, 2, 3, "backup"));
    }
}
