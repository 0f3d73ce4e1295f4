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

use crate::metrics::DeliveryMetrics;
use crate::state::{DeliveryState, ErrorOutput, Intent, StateStore};
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
use std::collections::VecDeque;
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
    pub s3: S3Plan,
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
}

/// Starts the supervisor of a stream.
pub fn spawn(plan: Arc<StreamPlan>, res: Resources, metrics: (DeliveryMetrics, DeliveryMetrics)) -> SupervisorHandle {
    let (tx, rx) = mpsc::channel(64);
    let runtime = Arc::new(StreamRuntime::default());
    let sup = Supervisor {
        plan,
        res,
        runtime: Arc::clone(&runtime),
        metrics,
        rx,
        state: DeliveryState::default(),
        lanes: Vec::new(),
        reader: None,
        flushes: Vec::new(),
        draining: false,
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
    rx: mpsc::Receiver<Command>,
    state: DeliveryState,
    lanes: Vec<Lane>,
    reader: Option<WalReader>,
    flushes: Vec<(Lsn, oneshot::Sender<FlushReport>, FlushReport)>,
    /// Shutting down: deliver every buffer now, whatever the hints say.
    draining: bool,
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
        let from = self.lanes.iter().map(|l| self.state.lanes[l.name].delivered).min().unwrap_or(acked);
        self.reader = Some(self.res.wal.reader(from).map_err(std::io::Error::other)?);
        Ok(())
    }

    fn lane_names(&self) -> Vec<&'static str> {
        let mut names = vec!["main"];
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
                _ = tokio::time::sleep(FRESHNESS_TICK), if self.lanes.iter().any(|l| !l.entries.is_empty()) => {}
            }
        }
    }

    /// Reads what is available, delivers pending intents and full or due buffers, answers flushes.
    async fn step(&mut self) -> Result<(), Stopped> {
        loop {
            let caught_up = self.read_some().await;
            self.run_pending_intents().await?;
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
        (0..self.lanes.len()).filter_map(|i| self.lane_deadline(i)).min()
    }

    fn update_freshness(&self) {
        let now = now_ms();
        for (i, lane) in self.lanes.iter().enumerate() {
            let age = lane.oldest_arrival_ms().map_or(0.0, |o| (now - o).max(0) as f64 / 1000.0);
            let m = if i == 0 { &self.metrics.0 } else { &self.metrics.1 };
            m.data_freshness.set(age);
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
        let first = lane.entries.front()?.lsn;
        let last = lane.entries.back()?.lsn;
        let arrival = Utc.timestamp_millis_opt(lane.oldest_arrival_ms()?).single().unwrap_or_else(Utc::now);
        let s = seed(self.plan.id, first, last, lane.name);
        let compression = Compression::from_firehose(&plan.compression).unwrap_or(Compression::Uncompressed);
        let extension = plan.file_extension.clone().unwrap_or_else(|| compression.extension().to_string());
        let uuid = object_uuid(self.plan.id, first, last, lane.name);
        let tz = plan.prefix.time_zone();
        let suffix = object_suffix(&self.plan.name, self.plan.version_id, Utc::now(), tz, &uuid, &extension);
        let (key, error) = match plan.prefix.evaluate_prefix(arrival, &NoKeys, s) {
            Ok(prefix) => (prefix + &suffix, None),
            Err(e) => {
                let prefix = plan.prefix.evaluate_error_prefix(arrival, S3_FAILED, s);
                let error = ErrorOutput {
                    output_type: S3_FAILED.into(),
                    code: "S3.InvalidPrefix".into(),
                    message: e.to_string(),
                    attempts: 1,
                    ending_ms: now_ms(),
                };
                (prefix + &suffix, Some(error))
            }
        };
        Some(Intent {
            first,
            last,
            bucket_arn: plan.bucket_arn.clone(),
            key,
            compression: plan.compression.clone(),
            kms_key_arn: plan.kms_key_arn.clone(),
            error,
        })
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
        let metrics = if i == 0 { self.metrics.0.clone() } else { self.metrics.1.clone() };
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
                    self.set_failure(Some(detail));
                    if !e.is_retryable() && intent.error.is_none() {
                        // The destination will never take these records under this key: send them to
                        // the error output instead (and remember that across a crash).
                        let plan = lane_plan(&self.plan, lane_name);
                        let arrival =
                            Utc.timestamp_millis_opt(entries.iter().map(|e| e.arrival_ms).min().unwrap_or(0)).single();
                        if let (Some(plan), Some(arrival)) = (plan, arrival) {
                            let s = seed(self.plan.id, intent.first, intent.last, "error");
                            let name = intent.key.rsplit('/').next().unwrap_or(&intent.key).to_string();
                            intent.key = plan.prefix.evaluate_error_prefix(arrival, S3_FAILED, s) + &name;
                            intent.error = Some(ErrorOutput {
                                output_type: S3_FAILED.into(),
                                code: e.firehose_code().into(),
                                message: e.to_string(),
                                attempts,
                                ending_ms: now_ms(),
                            });
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
        if intent.error.is_none() {
            metrics.object_count.inc();
            metrics.records.inc_by(records);
            metrics.bytes.inc_by(bytes as u64);
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
        let Some(floor) = self.lanes.iter().filter_map(|l| self.state.lanes.get(l.name).map(|s| s.delivered)).min()
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
            Command::Update(plan) => {
                let had_backup = self.plan.s3.backup.is_some();
                self.plan = plan;
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

async fn sleep_until_ms(deadline_ms: Option<i64>) {
    match deadline_ms {
        None => std::future::pending().await,
        Some(d) => {
            let wait = (d - now_ms()).max(0) as u64;
            tokio::time::sleep(Duration::from_millis(wait)).await
        }
    }
}

/// The bytes of an intent's object: the records concatenated byte for byte (Firehose adds no
/// delimiter), or the error-output JSON lines; then compressed.
fn encode(intent: &Intent, entries: &[Buffered], gzip_level: u32) -> Result<Bytes, String> {
    let compression = Compression::from_firehose(&intent.compression).unwrap_or(Compression::Uncompressed);
    let file = intent.key.rsplit('/').next().unwrap_or(&intent.key);
    let entry_name = file.strip_suffix(compression.extension()).unwrap_or(file);
    let size: usize = entries.iter().map(|e| e.bytes).sum();
    let mut enc = Encoder::new(compression, gzip_level, entry_name, size);
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut line = String::new();
    for e in entries.iter().filter(|e| e.lsn >= intent.first && e.lsn <= intent.last) {
        let view = EntryView::parse(&e.payload).map_err(|err| err.to_string())?;
        for record in view.records() {
            match &intent.error {
                None => enc.write(record).map_err(|err| err.to_string())?,
                Some(err) => {
                    line.clear();
                    let value = serde_json::json!({
                        "attemptsMade": err.attempts,
                        "arrivalTimestamp": e.arrival_ms,
                        "errorCode": err.code,
                        "errorMessage": err.message,
                        "attemptEndingTimestamp": err.ending_ms,
                        "rawData": b64.encode(record),
                    });
                    line.push_str(&value.to_string());
                    line.push('\n');
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
    fn seeds_differ_by_range_and_lane() {
        assert_eq!(seed(1, 2, 3, "main"), seed(1, 2, 3, "main"));
        assert_ne!(seed(1, 2, 3, "main"), seed(1, 2, 4, "main"));
        assert_ne!(seed(1, 2, 3, "main"), seed(1, 2, 3, "backup"));
    }
}
