//! The group-commit writer thread.
//!
//! One thread owns the active segment file. It blocks for the first pending append,
//! drains whatever else is queued (up to `max_batch_bytes`), writes all frames with
//! vectored writes, calls `fdatasync` once, publishes the new end to the index and the
//! watch channel, and only then completes every waiter. A failed write or fsync is
//! rolled back by truncating to the last committed length.

use std::fs::File;
use std::io::{self, IoSlice, Seek, SeekFrom, Write};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, SyncSender};

use bytes::Bytes;
use tokio::sync::oneshot;

use crate::Entry;
use crate::Lsn;
use crate::error::AppendError;
use crate::segment::{self, FRAME_HEADER_LEN, HEADER_LEN, SegmentMeta, encode_frame_header};
use crate::shared::Shared;

/// Payloads up to this size are copied next to their frame header, so a batch of small
/// entries is one contiguous buffer; larger ones are written from the caller's `Bytes`.
const COPY_THRESHOLD: usize = 4096;

pub(crate) type AppendResult = Result<Lsn, AppendError>;

/// Where to deliver the outcome of one append.
pub(crate) enum Reply {
    Async(oneshot::Sender<AppendResult>),
    Blocking(SyncSender<AppendResult>),
}

impl Reply {
    fn send(self, result: AppendResult) {
        // A send error means the caller stopped waiting (e.g. a dropped future); the
        // outcome is then only observable by reading the log.
        match self {
            Reply::Async(tx) => {
                let _ = tx.send(result);
            }
            Reply::Blocking(tx) => {
                let _ = tx.send(result);
            }
        }
    }
}

pub(crate) struct Request {
    pub tag: u64,
    pub payload: Bytes,
    pub reply: Reply,
}

impl Request {
    fn frame_len(&self) -> u64 {
        (FRAME_HEADER_LEN + self.payload.len()) as u64
    }
}

/// The segment currently appended to, as the writer sees it.
pub(crate) struct ActiveSegment {
    pub file: File,
    pub first_lsn: Lsn,
    /// Committed (fsynced) length; the file never holds more after a commit or rollback.
    pub len: u64,
    pub entries: u64,
}

enum Part {
    Scratch(usize, usize),
    Payload(usize),
}

/// Frames staged for one write to the active segment.
#[derive(Default)]
struct Chunk {
    reqs: Vec<Request>,
    scratch: Vec<u8>,
    parts: Vec<Part>,
    bytes: u64,
}

impl Chunk {
    fn is_empty(&self) -> bool {
        self.reqs.is_empty()
    }

    fn push(&mut self, lsn: Lsn, req: Request) {
        self.push_scratch(&encode_frame_header(lsn, req.tag, &req.payload));
        if req.payload.len() <= COPY_THRESHOLD {
            self.push_scratch(&req.payload);
        } else {
            self.parts.push(Part::Payload(self.reqs.len()));
        }
        self.bytes += req.frame_len();
        self.reqs.push(req);
    }

    fn push_scratch(&mut self, bytes: &[u8]) {
        let start = self.scratch.len();
        self.scratch.extend_from_slice(bytes);
        let end = self.scratch.len();
        match self.parts.last_mut() {
            Some(Part::Scratch(_, last_end)) if *last_end == start => *last_end = end,
            _ => self.parts.push(Part::Scratch(start, end)),
        }
    }

    fn io_slices(&self) -> Vec<IoSlice<'_>> {
        let slice = |part: &Part| match *part {
            Part::Scratch(start, end) => IoSlice::new(&self.scratch[start..end]),
            Part::Payload(i) => IoSlice::new(&self.reqs[i].payload),
        };
        self.parts.iter().map(slice).collect()
    }

    fn clear(&mut self) {
        self.reqs.clear();
        self.scratch.clear();
        self.parts.clear();
        self.bytes = 0;
    }
}

pub(crate) struct Writer {
    shared: Arc<Shared>,
    rx: Receiver<Request>,
    active: ActiveSegment,
    /// Next lsn to assign == committed next_lsn (the chunk's entries are not counted).
    next_lsn: Lsn,
    batch: Vec<Request>,
    chunk: Chunk,
    gc_wanted: bool,
}

impl Writer {
    pub(crate) fn new(shared: Arc<Shared>, rx: Receiver<Request>, active: ActiveSegment, next_lsn: Lsn) -> Writer {
        Writer { shared, rx, active, next_lsn, batch: Vec::new(), chunk: Chunk::default(), gc_wanted: false }
    }

    /// Runs until every sender is gone and the queue is drained.
    pub(crate) fn run(mut self) {
        while let Ok(first) = self.rx.recv() {
            self.collect_batch(first);
            self.commit_batch();
            if std::mem::take(&mut self.gc_wanted)
                && let Err(e) = self.shared.collect_garbage()
            {
                tracing::warn!(error = %e, "wal segment deletion after roll failed");
            }
        }
        tracing::debug!("wal writer stopped");
    }

    fn collect_batch(&mut self, first: Request) {
        let mut bytes = first.payload.len();
        self.batch.push(first);
        while bytes < self.shared.max_batch_bytes {
            match self.rx.try_recv() {
                Ok(req) => {
                    bytes += req.payload.len();
                    self.batch.push(req);
                }
                Err(_) => break,
            }
        }
    }

    fn commit_batch(&mut self) {
        let mut batch = std::mem::take(&mut self.batch);
        for req in batch.drain(..) {
            self.stage(req);
        }
        self.batch = batch;
        self.flush();
    }

    /// Assigns the next lsn to `req` and stages it, rolling or rejecting first if needed.
    fn stage(&mut self, req: Request) {
        if self.shared.is_failed() {
            return req.reply.send(Err(AppendError::failed()));
        }
        let frame_len = req.frame_len();
        let has_entries = self.active.entries > 0 || !self.chunk.is_empty();
        let roll = has_entries && self.active.len + self.chunk.bytes + frame_len > self.shared.segment_bytes;
        let needed = frame_len + if roll { HEADER_LEN as u64 } else { 0 };
        let used = self.shared.used.load(Ordering::Acquire) + self.chunk.bytes;
        if used + needed > self.shared.max_bytes {
            let max = self.shared.max_bytes;
            return req.reply.send(Err(AppendError::QuotaExceeded { used, max }));
        }
        if roll {
            self.flush();
            if let Err(e) = self.roll() {
                return req.reply.send(Err(e));
            }
        }
        let lsn = self.next_lsn + self.chunk.reqs.len() as u64;
        self.chunk.push(lsn, req);
    }

    /// Writes and fsyncs the staged chunk, then completes its waiters.
    fn flush(&mut self) {
        if self.chunk.is_empty() {
            return;
        }
        if self.shared.is_failed() {
            self.fail_chunk(AppendError::failed());
        } else {
            match self.write_chunk() {
                Ok(()) => self.publish(),
                Err(e) => self.rollback(e),
            }
        }
        self.chunk.clear();
    }

    fn write_chunk(&mut self) -> io::Result<()> {
        let mut slices = self.chunk.io_slices();
        #[cfg(test)]
        self.shared.faults.before_write(&mut self.active.file, &slices)?;
        write_all_vectored(&mut self.active.file, &mut slices)?;
        #[cfg(test)]
        self.shared.faults.before_sync()?;
        self.active.file.sync_data()
    }

    /// The chunk is durable: index it, advance the committed end, complete waiters.
    fn publish(&mut self) {
        let base = self.next_lsn;
        let mut offset = self.active.len;
        {
            let mut state = self.shared.state.lock();
            if let Some(meta) = state.segments.last_mut() {
                debug_assert_eq!(meta.first_lsn, self.active.first_lsn);
                for (i, req) in self.chunk.reqs.iter().enumerate() {
                    meta.record(base + i as u64, req.tag, offset, req.frame_len());
                    offset += req.frame_len();
                }
            }
        }
        let count = self.chunk.reqs.len() as u64;
        self.active.len = offset;
        self.active.entries += count;
        self.next_lsn = base + count;
        self.shared.used.fetch_add(self.chunk.bytes, Ordering::AcqRel);
        {
            let mut tail = self.shared.tail.lock();
            for (i, req) in self.chunk.reqs.iter().enumerate() {
                tail.push(Entry { lsn: base + i as u64, tag: req.tag, payload: req.payload.clone() });
            }
        }
        self.shared.committed.store(self.next_lsn, Ordering::Release);
        self.shared.watch.send_replace(self.next_lsn);
        for (i, req) in self.chunk.reqs.drain(..).enumerate() {
            req.reply.send(Ok(base + i as u64));
        }
    }

    /// Cuts the active segment back to its committed length; if even that fails the log
    /// enters the failed state, since the file end is no longer known.
    fn rollback(&mut self, error: io::Error) {
        let len = self.active.len;
        let restored = self.truncate_active(len);
        match &restored {
            Ok(()) => tracing::warn!(%error, len, "wal write failed; rolled back"),
            Err(e) => {
                tracing::error!(%error, rollback_error = %e, "wal rollback failed; wal is now failed");
                self.shared.mark_failed();
            }
        }
        self.fail_chunk(AppendError::from_io(error));
    }

    fn truncate_active(&mut self, len: u64) -> io::Result<()> {
        #[cfg(test)]
        self.shared.faults.before_truncate()?;
        self.active.file.set_len(len)?;
        self.active.file.sync_all()?;
        self.active.file.seek(SeekFrom::Start(len))?;
        Ok(())
    }

    fn fail_chunk(&mut self, error: AppendError) {
        for req in self.chunk.reqs.drain(..) {
            req.reply.send(Err(error.clone()));
        }
    }

    /// Seals the active segment (already fsynced) and starts a new one at `next_lsn`.
    fn roll(&mut self) -> Result<(), AppendError> {
        let first = self.next_lsn;
        let (file, path) = segment::create_segment(&self.shared.dir, self.shared.wal_id, first).map_err(|e| {
            if e.leftover {
                tracing::error!(error = %e.source, "cannot remove partial wal segment; wal is now failed");
                self.shared.mark_failed();
            }
            AppendError::from_io(e.source)
        })?;
        self.active = ActiveSegment { file, first_lsn: first, len: HEADER_LEN as u64, entries: 0 };
        self.shared.used.fetch_add(HEADER_LEN as u64, Ordering::AcqRel);
        self.shared.state.lock().segments.push(SegmentMeta::new(path, first));
        self.gc_wanted |= self.shared.newest_sealed_deletable();
        Ok(())
    }
}

/// `write_all` for vectored writes (std's is unstable); handles short writes and EINTR.
fn write_all_vectored(file: &mut File, mut bufs: &mut [IoSlice<'_>]) -> io::Result<()> {
    IoSlice::advance_slices(&mut bufs, 0);
    while !bufs.is_empty() {
        match file.write_vectored(bufs) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut bufs, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Test-only fault injection; each flag fires once.
#[cfg(test)]
#[derive(Default)]
pub(crate) struct Faults {
    /// Write half of the chunk, then fail with ENOSPC.
    pub partial_write_enospc: std::sync::atomic::AtomicBool,
    /// Fail the fsync with EIO after a complete write.
    pub sync_eio: std::sync::atomic::AtomicBool,
    /// Fail the rollback truncate.
    pub truncate_eio: std::sync::atomic::AtomicBool,
}

#[cfg(test)]
impl Faults {
    fn fire(flag: &std::sync::atomic::AtomicBool) -> bool {
        flag.swap(false, Ordering::AcqRel)
    }

    fn before_write(&self, file: &mut File, slices: &[IoSlice<'_>]) -> io::Result<()> {
        if Self::fire(&self.partial_write_enospc) {
            let all: Vec<u8> = slices.iter().flat_map(|s| s.iter().copied()).collect();
            file.write_all(&all[..all.len() / 2])?;
            return Err(io::Error::from_raw_os_error(libc::ENOSPC));
        }
        Ok(())
    }

    fn before_sync(&self) -> io::Result<()> {
        if Self::fire(&self.sync_eio) {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        Ok(())
    }

    fn before_truncate(&self) -> io::Result<()> {
        if Self::fire(&self.truncate_eio) {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        Ok(())
    }
}
