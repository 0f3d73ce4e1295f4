//! State shared by the API handles, the writer thread and readers; ack persistence and
//! segment deletion.

use std::fs;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::Mutex;
use tokio::sync::watch;

use crate::Lsn;
use crate::acks::{ACKS_FILE, AckState};
use crate::error::AckError;
use crate::fsutil::sync_dir;
use crate::segment::SegmentMeta;
use crate::tail::TailCache;

/// Everything guarded by the one state mutex. Critical sections are short and never do I/O.
#[derive(Debug)]
pub(crate) struct State {
    /// Retained segments ordered by lsn; the last one is the active segment.
    pub segments: Vec<SegmentMeta>,
    pub acks: AckState,
}

pub(crate) struct Shared {
    pub dir: PathBuf,
    pub wal_id: u64,
    pub segment_bytes: u64,
    pub max_bytes: u64,
    pub max_batch_bytes: usize,
    pub state: Mutex<State>,
    /// next_lsn of the committed (fsynced) log; stored after the segment index is updated.
    pub committed: AtomicU64,
    /// Bytes in all retained segment files.
    pub used: AtomicU64,
    failed: AtomicBool,
    pub watch: watch::Sender<Lsn>,
    /// The newest committed entries, for readers that are caught up.
    pub tail: Mutex<TailCache>,
    /// `AckState::version` last written to disk.
    persisted: Mutex<u64>,
    /// Serialises segment deletion.
    gc: Mutex<()>,
    #[cfg(test)]
    pub faults: crate::writer::Faults,
}

/// A sealed segment chosen for deletion.
struct Doomed {
    first_lsn: Lsn,
    end_lsn: Lsn,
    path: PathBuf,
    len: u64,
}

impl Shared {
    pub(crate) fn new(dir: PathBuf, wal_id: u64, opts: &crate::WalOptions, state: State, next_lsn: Lsn) -> Shared {
        let used = state.segments.iter().map(|s| s.len).sum();
        Shared {
            dir,
            wal_id,
            segment_bytes: opts.segment_bytes,
            max_bytes: opts.max_bytes,
            max_batch_bytes: opts.max_batch_bytes,
            state: Mutex::new(state),
            committed: AtomicU64::new(next_lsn),
            used: AtomicU64::new(used),
            failed: AtomicBool::new(false),
            watch: watch::Sender::new(next_lsn),
            tail: Mutex::new(TailCache::new(opts.tail_cache_bytes)),
            persisted: Mutex::new(0),
            gc: Mutex::new(()),
            #[cfg(test)]
            faults: Default::default(),
        }
    }

    pub(crate) fn committed(&self) -> Lsn {
        self.committed.load(Ordering::Acquire)
    }

    pub(crate) fn is_failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    pub(crate) fn mark_failed(&self) {
        self.failed.store(true, Ordering::Release);
    }

    /// Makes ack state `version` (or newer) durable. Concurrent callers coalesce: whoever
    /// holds the persist lock writes the newest state for everyone who waited.
    pub(crate) fn persist_acks(&self, version: u64) -> Result<(), AckError> {
        let mut persisted = self.persisted.lock();
        if *persisted >= version {
            return Ok(());
        }
        let path = self.dir.join(ACKS_FILE);
        let (bytes, newest) = {
            let state = self.state.lock();
            let bytes = state.acks.encode(self.wal_id, self.committed());
            (bytes, state.acks.version())
        };
        let stored = bytes.and_then(|bytes| AckState::store(&self.dir, &bytes));
        stored.map_err(|source| AckError::Io { path, source })?;
        *persisted = newest;
        Ok(())
    }

    /// Whether the newest sealed segment can already be deleted (checked after a roll).
    pub(crate) fn newest_sealed_deletable(&self) -> bool {
        let state = self.state.lock();
        let sealed = state.segments.len().saturating_sub(1);
        sealed > 0 && state.acks.deletable(&state.segments[sealed - 1])
    }

    /// Deletes every sealed segment no tag needs any more.
    ///
    /// Order: record the lsn ranges as deleted, persist `acks.json`, drop the segments
    /// from the index (new readers skip them), unlink, fsync the directory. A crash in
    /// between leaves files that the next open deletes because their range is recorded.
    pub(crate) fn collect_garbage(&self) -> Result<(), AckError> {
        let _gc = self.gc.lock();
        let (doomed, version) = self.choose_doomed();
        if doomed.is_empty() {
            return Ok(());
        }
        self.persist_acks(version)?;
        self.state.lock().segments.retain(|s| !doomed.iter().any(|d| d.first_lsn == s.first_lsn));
        {
            let mut tail = self.tail.lock();
            for d in &doomed {
                tail.forget(d.first_lsn, d.end_lsn);
            }
        }
        let mut freed = 0;
        let mut result = Ok(());
        for segment in &doomed {
            match fs::remove_file(&segment.path) {
                Ok(()) => freed += segment.len,
                Err(e) if e.kind() == io::ErrorKind::NotFound => freed += segment.len,
                Err(source) => {
                    result = Err(AckError::Io { path: segment.path.clone(), source });
                }
            }
        }
        self.used.fetch_sub(freed, Ordering::AcqRel);
        result?;
        sync_dir(&self.dir).map_err(|source| AckError::Io { path: self.dir.clone(), source })?;
        tracing::debug!(segments = doomed.len(), freed, "deleted wal segments");
        Ok(())
    }

    fn choose_doomed(&self) -> (Vec<Doomed>, u64) {
        let mut state = self.state.lock();
        let State { segments, acks } = &mut *state;
        let sealed = segments.len().saturating_sub(1);
        let mut doomed = Vec::new();
        for segment in &segments[..sealed] {
            if !acks.deletable(segment) {
                continue;
            }
            if !segment.is_empty() {
                acks.mark_deleted(segment.first_lsn, segment.end_lsn - 1);
            }
            doomed.push(Doomed {
                first_lsn: segment.first_lsn,
                end_lsn: segment.end_lsn,
                path: segment.path.clone(),
                len: segment.len,
            });
        }
        (doomed, acks.version())
    }
}
