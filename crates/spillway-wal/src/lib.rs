//! Segmented, checksummed write-ahead log with group commit, crash recovery and
//! per-tag acknowledgement.
//!
//! The log stores opaque byte payloads, each tagged with a caller-chosen `u64` tag (for
//! example one tag per delivery stream). [`Wal::append`] resolves only after the entry
//! is written **and** `fdatasync`ed. Consumers read entries back with [`Wal::reader`],
//! and report progress per tag with [`Wal::ack`]; segment files are deleted once no tag
//! needs any entry in them.
//!
//! # Invariants
//!
//! * Every entry has a log sequence number ([`Lsn`]). The first entry ever is lsn 1;
//!   lsns are consecutive inside a segment, strictly increasing across the log, and
//!   never reused, also across restarts and after segments were deleted.
//! * Only committed (fsynced) entries are visible: to readers, to [`Wal::next_lsn`],
//!   and to the [`Wal::subscribe`] channel.
//! * An append that returned `Ok(lsn)` survives any crash and is readable until its tag
//!   acks past it or is retired. Recovery never silently drops such an entry: damage
//!   that is not a torn tail makes [`Wal::open`] fail with [`OpenError::Corrupt`].
//! * An append that returned an error was not committed (though, like any entry whose
//!   fsync did not complete, it may reappear after a crash if its bytes happened to
//!   reach the disk; callers must tolerate at-least-once).
//! * Segments: the last segment is the *active* one and is never deleted, so the end
//!   of the log (and therefore `next_lsn`) is always on disk.
//!
//! # Directory layout
//!
//! ```text
//! <dir>/LOCK                      flock()ed while a Wal is open (OpenError::Locked)
//! <dir>/wal.id                    20 bytes: b"SPWALID1", wal_id u64 LE, crc32c(first 16) u32 LE
//! <dir>/acks.json                 ack state, replaced atomically
//! <dir>/<first_lsn:020>.wal       segment files, e.g. 00000000000000000001.wal
//! ```
//!
//! `wal.id` is written once when the directory is initialised (tmp file, fsync,
//! rename, fsync dir) and holds a random 64-bit id ([`Wal::wal_id`]).
//!
//! # Segment file
//!
//! All integers little-endian. A segment is a 28-byte header followed by frames:
//!
//! ```text
//! header: offset 0  [8]  magic b"SPWALv1\0"
//!                8  u64  wal_id (must equal wal.id)
//!               16  u64  first_lsn (must equal the number in the file name)
//!               24  u32  crc32c of bytes 0..24 (plain, unmasked)
//! frame:  offset 0  u32  payload_len (<= MAX_PAYLOAD = 64 MiB)
//!                4  u32  masked crc32c over lsn ‖ tag ‖ payload (lsn and tag as u64 LE)
//!                8  u64  lsn (first_lsn for the first frame, then +1 per frame)
//!               16  u64  tag
//!               24  [payload_len] payload
//! ```
//!
//! The mask is LevelDB's: `crc.rotate_right(15).wrapping_add(0xa282ead8)`. A writer
//! rolls to a new segment before a frame that would take a non-empty segment beyond
//! `segment_bytes`; a new segment is created with its header, fsynced, and the
//! directory fsynced before any frame is written into it.
//!
//! # acks.json
//!
//! ```text
//! { "format": 1, "wal_id": <u64>, "next_lsn": <committed next_lsn when written>,
//!   "acked": { "<tag>": <first undelivered lsn>, ... }, "retired": [<tag>, ...],
//!   "deleted": [[<first lsn>, <last lsn>], ...] }
//! ```
//!
//! Written crash-safely (`acks.json.tmp`, fsync, rename, fsync dir) before [`Wal::ack`]
//! or [`Wal::retire`] return; concurrent calls coalesce into one write. `deleted` lists
//! the merged inclusive lsn ranges whose segments were deleted on purpose, so a gap
//! between segments can be told apart from a lost file.
//!
//! # Segment deletion
//!
//! A sealed (non-active) segment is deleted when every tag present in it is retired or
//! acked beyond the segment's last lsn. Deletion runs after `ack`/`retire` (and after a
//! roll, and on open): the range is first recorded in `acks.json`, then the file is
//! unlinked and the directory fsynced. Segments need not be deleted oldest-first.
//!
//! # Recovery ([`Wal::open`])
//!
//! Segments are verified in lsn order: header (magic, crc, wal_id, first_lsn), then
//! every frame (length <= 64 MiB, complete, lsn == expected, crc).
//!
//! * A bad frame in the **last** segment with no valid frame after it is a torn tail
//!   (including a zero-filled tail): the file is truncated there (ftruncate + fsync) and
//!   the cut bytes are reported in [`Recovery::truncated_bytes`]. "Valid frame after
//!   it" means any offset at or after the bad one holding a frame with a verifying crc
//!   and an lsn >= the expected one; candidate offsets are filtered by the plausible
//!   lsn range first, so the search is linear.
//! * If such a valid frame exists, the damage is corruption: [`OpenError::Corrupt`]
//!   with the segment path and the offset of the bad frame.
//! * A bad frame in any other segment, an lsn gap between segments that `acks.json`
//!   does not record as deleted, overlapping segments, or a log ending below the
//!   `next_lsn` recorded in `acks.json`: [`OpenError::Corrupt`].
//! * A header of the wrong log or lsn: [`OpenError::BadHeader`]. A short or unreadable
//!   header in the last segment followed only by zeros is a crash while the segment
//!   was created: the header is rewritten.
//! * Sealed segments entirely inside a recorded deleted range are removed (a crash
//!   interrupted their deletion).
//!
//! Limitation: the torn-tail rule assumes the last write's bytes reach the disk in
//! order. If a crash persists a later page of an unsynced write but not an earlier
//! one, open reports corruption (failing safe) and an operator must truncate the file
//! at the reported offset.
//!
//! # Threads and blocking
//!
//! One dedicated writer thread owns the active segment. Appenders send requests over
//! a channel; the writer blocks for the first, drains all pending ones (up to
//! `max_batch_bytes`), writes them with one vectored write, fsyncs once, updates the
//! index and completes all waiters. No lock that appenders or readers need is held
//! during the write or the fsync. A failed write/fsync is rolled back by truncating the
//! active segment to its committed length; if that fails too the log enters a failed
//! state and every later append returns [`AppendError::Io`].
//!
//! [`Wal::ack`], [`Wal::retire`], [`Wal::append_blocking`], [`Wal::open`],
//! [`Wal::close`] and reading block on disk I/O; from async code call them via
//! `spawn_blocking`. [`Wal::append`] is async and never blocks the runtime.

mod acks;
mod error;
mod fsutil;
mod reader;
mod recovery;
mod segment;
mod shared;
mod tail;
mod writer;

use std::fs::File;
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Arc, atomic::Ordering};
use std::thread::JoinHandle;

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use tokio::sync::{oneshot, watch};

pub use error::{AckError, AppendError, OpenError, ReadError};
pub use reader::WalReader;
pub use segment::MAX_PAYLOAD;

use acks::AckState;
use segment::FRAME_HEADER_LEN;
use shared::{Shared, State};
use writer::{ActiveSegment, Reply, Request, Writer};

/// Log sequence number of an entry.
pub type Lsn = u64;

/// Configuration for [`Wal::open`].
#[derive(Debug, Clone)]
pub struct WalOptions {
    /// Directory of the log; created if missing.
    pub dir: PathBuf,
    /// Roll to a new segment file once a segment would exceed this many bytes.
    pub segment_bytes: u64,
    /// Quota for all segment files together (at least `segment_bytes`); appends that
    /// would exceed it fail with [`AppendError::QuotaExceeded`] without writing.
    pub max_bytes: u64,
    /// Upper bound on the payload bytes gathered into one group commit.
    pub max_batch_bytes: usize,
    /// Payload bytes of the newest committed entries kept in memory for readers (0 disables).
    pub tail_cache_bytes: usize,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions {
            dir: PathBuf::from("wal"),
            segment_bytes: 64 << 20,
            max_bytes: 8 << 30,
            max_batch_bytes: 16 << 20,
            tail_cache_bytes: 64 << 20,
        }
    }
}

impl WalOptions {
    fn validate(&self) -> Result<(), OpenError> {
        let invalid = |msg: &str| Err(OpenError::InvalidOptions(msg.to_owned()));
        if self.segment_bytes == 0 {
            return invalid("segment_bytes must be positive");
        }
        if self.max_batch_bytes == 0 {
            return invalid("max_batch_bytes must be positive");
        }
        if self.max_bytes < self.segment_bytes {
            return invalid("max_bytes must be at least segment_bytes");
        }
        Ok(())
    }
}

/// One committed entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub lsn: Lsn,
    pub tag: u64,
    pub payload: Bytes,
}

/// What [`Wal::open`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// Entries in the retained segments.
    pub entries: u64,
    /// Retained segment files (including the active one).
    pub segments: usize,
    /// Bytes cut off a torn tail (or a rewritten torn header).
    pub truncated_bytes: u64,
    pub next_lsn: Lsn,
}

/// A snapshot of the log's size and position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalStats {
    pub wal_id: u64,
    pub segments: usize,
    /// Bytes in all segment files.
    pub bytes: u64,
    /// Lsn of the oldest retained entry (`next_lsn` if there is none).
    pub first_lsn: Lsn,
    pub next_lsn: Lsn,
    pub max_bytes: u64,
}

/// Handle to an open write-ahead log; clones share it.
#[derive(Clone)]
pub struct Wal {
    inner: Arc<Inner>,
}

/// Owned by the handles and readers; dropping the last one stops the writer and then
/// releases the directory lock.
pub(crate) struct Inner {
    shared: Arc<Shared>,
    tx: RwLock<Option<mpsc::Sender<Request>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    /// Held for the directory lock; dropped after the writer has stopped.
    _lock: File,
}

impl Inner {
    fn shutdown(&self) {
        drop(self.tx.write().take());
        if let Some(handle) = self.writer.lock().take()
            && handle.join().is_err()
        {
            tracing::error!("wal writer thread panicked");
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shared = &self.inner.shared;
        f.debug_struct("Wal")
            .field("dir", &shared.dir)
            .field("wal_id", &format_args!("{:016x}", shared.wal_id))
            .field("next_lsn", &shared.committed())
            .finish_non_exhaustive()
    }
}

impl Wal {
    /// Opens (creating if needed) the log in `opts.dir`, verifies and repairs it as
    /// described in the crate docs, and starts the writer thread.
    pub fn open(opts: WalOptions) -> Result<(Wal, Recovery), OpenError> {
        opts.validate()?;
        let dir = opts.dir.clone();
        std::fs::create_dir_all(&dir).map_err(OpenError::io(&dir))?;
        let lock = fsutil::lock_dir(&dir)?;
        let wal_id = recovery::load_or_create_id(&dir)?;
        let acks = AckState::load(&dir, wal_id)?;
        let found = recovery::recover(&dir, wal_id, &acks)?;
        let recovery = Recovery {
            entries: found.segments.iter().map(|s| s.end_lsn - s.first_lsn).sum(),
            segments: found.segments.len(),
            truncated_bytes: found.truncated_bytes,
            next_lsn: found.next_lsn,
        };
        let wal = Wal::start(opts, wal_id, acks, found, lock)?;
        if let Err(e) = wal.inner.shared.collect_garbage() {
            tracing::warn!(error = %e, "wal segment deletion on open failed");
        }
        tracing::info!(
            dir = %dir.display(),
            wal_id = format_args!("{wal_id:016x}"),
            entries = recovery.entries,
            segments = recovery.segments,
            truncated_bytes = recovery.truncated_bytes,
            next_lsn = recovery.next_lsn,
            "wal opened"
        );
        Ok((wal, recovery))
    }

    fn start(
        opts: WalOptions,
        wal_id: u64,
        acks: AckState,
        found: recovery::Recovered,
        lock: File,
    ) -> Result<Wal, OpenError> {
        let active_meta = found.segments.last();
        let active = ActiveSegment {
            file: found.active_file,
            first_lsn: active_meta.map_or(found.next_lsn, |s| s.first_lsn),
            len: active_meta.map_or(0, |s| s.len),
            entries: active_meta.map_or(0, |s| s.end_lsn - s.first_lsn),
        };
        let state = State { segments: found.segments, acks };
        let shared = Arc::new(Shared::new(opts.dir.clone(), wal_id, &opts, state, found.next_lsn));
        let (tx, rx) = mpsc::channel();
        let writer = Writer::new(shared.clone(), rx, active, found.next_lsn);
        let handle = std::thread::Builder::new()
            .name("spillway-wal-writer".to_owned())
            .spawn(move || writer.run())
            .map_err(OpenError::io(&opts.dir))?;
        Ok(Wal {
            inner: Arc::new(Inner { shared, tx: RwLock::new(Some(tx)), writer: Mutex::new(Some(handle)), _lock: lock }),
        })
    }

    /// Appends one entry and resolves with its lsn once it is written and fsynced.
    ///
    /// If the future is dropped after the request was queued, the entry may still be
    /// committed.
    pub async fn append(&self, tag: u64, payload: Bytes) -> Result<Lsn, AppendError> {
        let (tx, rx) = oneshot::channel();
        self.submit(tag, payload, Reply::Async(tx))?;
        rx.await.unwrap_or(Err(AppendError::Closed))
    }

    /// Blocking variant of [`Wal::append`]; do not call it from async code.
    pub fn append_blocking(&self, tag: u64, payload: Bytes) -> Result<Lsn, AppendError> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.submit(tag, payload, Reply::Blocking(tx))?;
        rx.recv().unwrap_or(Err(AppendError::Closed))
    }

    fn submit(&self, tag: u64, payload: Bytes, reply: Reply) -> Result<(), AppendError> {
        self.precheck(tag, payload.len())?;
        let tx = self.inner.tx.read();
        let tx = tx.as_ref().ok_or(AppendError::Closed)?;
        let request = Request { tag, payload, reply };
        tx.send(request).map_err(|_| AppendError::Closed)
    }

    /// Cheap early rejections; the writer re-checks the quota exactly.
    fn precheck(&self, tag: u64, len: usize) -> Result<(), AppendError> {
        let shared = &self.inner.shared;
        // An entry that cannot fit even into an empty log is never retryable.
        let overhead = (segment::HEADER_LEN + FRAME_HEADER_LEN) as u64;
        let max = shared.max_bytes.saturating_sub(overhead);
        let max = usize::try_from(max).map_or(MAX_PAYLOAD, |m| m.min(MAX_PAYLOAD));
        if len > max {
            return Err(AppendError::TooLarge { len, max });
        }
        if shared.is_failed() {
            return Err(AppendError::failed());
        }
        let used = shared.used.load(Ordering::Acquire);
        if used + (FRAME_HEADER_LEN + len) as u64 > shared.max_bytes {
            return Err(AppendError::QuotaExceeded { used, max: shared.max_bytes });
        }
        if shared.state.lock().acks.is_retired(tag) {
            return Err(AppendError::Retired { tag });
        }
        Ok(())
    }

    /// Records that every entry of `tag` with lsn < `upto` is delivered, durably, then
    /// deletes segments no longer needed. Lower values than the current one are ignored;
    /// `upto` beyond [`Wal::next_lsn`] is rejected. Blocks on fsync.
    pub fn ack(&self, tag: u64, upto: Lsn) -> Result<(), AckError> {
        let shared = &self.inner.shared;
        let next_lsn = shared.committed();
        if upto > next_lsn {
            return Err(AckError::BeyondEnd { tag, upto, next_lsn });
        }
        let version = {
            let mut state = shared.state.lock();
            state.acks.ack(tag, upto);
            state.acks.version()
        };
        shared.persist_acks(version)?;
        shared.collect_garbage()
    }

    /// Declares that `tag` will never be read again, durably; its entries stop keeping
    /// segments alive and later appends with it fail with [`AppendError::Retired`].
    pub fn retire(&self, tag: u64) -> Result<(), AckError> {
        let shared = &self.inner.shared;
        let version = {
            let mut state = shared.state.lock();
            state.acks.retire(tag);
            state.acks.version()
        };
        shared.persist_acks(version)?;
        shared.collect_garbage()
    }

    /// Tags that still have entries in the retained segments and are not retired, in ascending order.
    /// The caller compares them with the consumers it knows, and retires the orphans (for example the
    /// tag of a stream whose deletion was interrupted by a crash before `retire`).
    pub fn live_tags(&self) -> Vec<u64> {
        let state = self.inner.shared.state.lock();
        let mut tags: Vec<u64> =
            state.segments.iter().flat_map(|s| s.tags.iter().copied()).filter(|t| !state.acks.is_retired(*t)).collect();
        tags.sort_unstable();
        tags.dedup();
        tags
    }

    /// First undelivered lsn of `tag` (1 if never acked).
    pub fn acked(&self, tag: u64) -> Lsn {
        self.inner.shared.state.lock().acks.acked(tag)
    }

    /// Next lsn to be assigned: one past the last committed entry.
    pub fn next_lsn(&self) -> Lsn {
        self.inner.shared.committed()
    }

    /// Receives `next_lsn` after every group commit.
    pub fn subscribe(&self) -> watch::Receiver<Lsn> {
        self.inner.shared.watch.subscribe()
    }

    /// Reader over committed entries (all tags) with lsn >= `from`, starting at the
    /// oldest retained entry if `from` is older; deleted ranges are skipped.
    pub fn reader(&self, from: Lsn) -> Result<WalReader, ReadError> {
        Ok(WalReader::new(self.inner.clone(), from))
    }

    pub fn stats(&self) -> WalStats {
        let shared = &self.inner.shared;
        let next_lsn = shared.committed();
        let state = shared.state.lock();
        let first_lsn = state.segments.iter().find(|s| !s.is_empty()).map_or(next_lsn, |s| s.first_lsn);
        WalStats {
            wal_id: shared.wal_id,
            segments: state.segments.len(),
            bytes: shared.used.load(Ordering::Acquire),
            first_lsn,
            next_lsn,
            max_bytes: shared.max_bytes,
        }
    }

    /// Random id of this log, fixed when the directory was initialised.
    pub fn wal_id(&self) -> u64 {
        self.inner.shared.wal_id
    }

    /// Stops the writer after committing (or failing) every append already queued;
    /// later appends return [`AppendError::Closed`]. Idempotent. Reads, acks and
    /// retires keep working; the directory lock is released when the last handle and
    /// reader are dropped.
    pub fn close(&self) {
        self.inner.shutdown();
    }
}

#[cfg(test)]
mod tests;
