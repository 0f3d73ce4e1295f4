//! Sequential reader over committed entries, reading segment files with positional reads.
//!
//! A reader never reads past the committed length of a segment (as published by the
//! writer after fsync), so it cannot observe a half-written batch or bytes that a
//! rollback is about to cut off. It takes the state lock only to locate a segment.

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;

use crate::error::ReadError;
use crate::segment::{FRAME_HEADER_LEN, FrameHeader, MAX_PAYLOAD, frame_crc};
use crate::{Entry, Inner, Lsn};

/// Bytes fetched per positional read.
const READ_CHUNK: usize = 256 << 10;

/// Iterator over committed entries from a starting lsn; see [`crate::Wal::reader`].
///
/// `next()` returns `None` when it reaches the committed end; calling it again later
/// continues with entries committed since (use [`crate::Wal::subscribe`] to wait).
/// After an error the reader re-locates its segment on the next call.
pub struct WalReader {
    inner: Arc<Inner>,
    next: Lsn,
    cursor: Option<Cursor>,
    /// Entries taken from the tail cache, starting at `next`.
    cached: VecDeque<Entry>,
}

/// Entries taken from the tail cache per lock.
const CACHE_BATCH: usize = 256;

/// An open segment and a read-ahead buffer of its committed bytes.
struct Cursor {
    path: PathBuf,
    file: File,
    first_lsn: Lsn,
    /// One past the last committed entry known when the cursor was (re)located.
    end_lsn: Lsn,
    /// Committed byte length known when the cursor was (re)located.
    limit: u64,
    /// Lsn of the frame at `buf[pos..]`.
    lsn: Lsn,
    buf: Vec<u8>,
    pos: usize,
    /// File offset of `buf[0]`.
    buf_offset: u64,
}

impl WalReader {
    pub(crate) fn new(inner: Arc<Inner>, from: Lsn) -> WalReader {
        WalReader { inner, next: from.max(1), cursor: None, cached: VecDeque::new() }
    }

    /// Lsn of the entry the next call to `next()` looks for.
    pub fn position(&self) -> Lsn {
        self.next
    }

    fn read_next(&mut self) -> Result<Option<Entry>, ReadError> {
        if let Some(entry) = self.next_cached() {
            return Ok(Some(entry));
        }
        loop {
            if self.next >= self.inner.shared.committed() {
                return Ok(None);
            }
            let covered = self.cursor.as_ref().is_some_and(|c| self.next < c.end_lsn);
            if !covered && !self.locate()? {
                return Ok(None);
            }
            let Some(cursor) = self.cursor.as_mut() else {
                return Ok(None);
            };
            if self.next >= cursor.end_lsn {
                return Ok(None);
            }
            let entry = cursor.read_frame()?;
            if entry.lsn >= self.next {
                self.next = entry.lsn + 1;
                return Ok(Some(entry));
            }
        }
    }

    /// The next entry from the tail cache, if the reader is within it (caught up).
    fn next_cached(&mut self) -> Option<Entry> {
        if self.cached.front().is_none_or(|e| e.lsn != self.next) {
            self.cached.clear();
            if self.next >= self.inner.shared.committed() {
                return None;
            }
            let tail = self.inner.shared.tail.lock();
            if !tail.read(self.next, CACHE_BATCH, &mut self.cached) {
                return None;
            }
        }
        let entry = self.cached.pop_front()?;
        self.next = entry.lsn + 1;
        Some(entry)
    }

    /// Points the cursor at the first retained segment holding an lsn `>= self.next`,
    /// refreshing the committed bounds if it is the same segment. `false` if none.
    fn locate(&mut self) -> Result<bool, ReadError> {
        loop {
            let target = {
                let state = self.inner.shared.state.lock();
                let Some(meta) = state.segments.iter().find(|s| s.end_lsn > self.next) else {
                    return Ok(false);
                };
                self.next = self.next.max(meta.first_lsn);
                if let Some(cursor) = self.cursor.as_mut().filter(|c| c.first_lsn == meta.first_lsn) {
                    cursor.end_lsn = meta.end_lsn;
                    cursor.limit = meta.len;
                    return Ok(true);
                }
                let (lsn, offset) = meta.seek_hint(self.next);
                (meta.path.clone(), meta.first_lsn, meta.end_lsn, meta.len, lsn, offset)
            };
            let (path, first_lsn, end_lsn, limit, lsn, offset) = target;
            match File::open(&path) {
                Ok(file) => {
                    self.cursor = Some(Cursor {
                        path,
                        file,
                        first_lsn,
                        end_lsn,
                        limit,
                        lsn,
                        buf: Vec::new(),
                        pos: 0,
                        buf_offset: offset,
                    });
                    return Ok(true);
                }
                // Deleted since we looked: it is already gone from the index, so the
                // next lookup finds a later segment.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => return Err(ReadError::Io { path, source }),
            }
        }
    }
}

impl std::fmt::Debug for WalReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WalReader").field("position", &self.next).finish_non_exhaustive()
    }
}

impl Iterator for WalReader {
    type Item = Result<Entry, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.read_next() {
            Ok(entry) => entry.map(Ok),
            Err(e) => {
                self.cursor = None;
                Some(Err(e))
            }
        }
    }
}

impl Cursor {
    fn offset(&self) -> u64 {
        self.buf_offset + self.pos as u64
    }

    fn corrupt(&self, reason: String) -> ReadError {
        ReadError::Corrupt { segment: self.path.clone(), offset: self.offset(), reason }
    }

    /// Reads and verifies the frame at the cursor, which must carry `self.lsn`.
    fn read_frame(&mut self) -> Result<Entry, ReadError> {
        self.fill(FRAME_HEADER_LEN)?;
        let header = FrameHeader::decode(&self.buf[self.pos..]);
        if header.payload_len > MAX_PAYLOAD {
            return Err(self.corrupt(format!("frame length {} too large", header.payload_len)));
        }
        if header.lsn != self.lsn {
            return Err(self.corrupt(format!("frame has lsn {}, expected {}", header.lsn, self.lsn)));
        }
        self.fill(header.frame_len())?;
        let start = self.pos + FRAME_HEADER_LEN;
        let payload = &self.buf[start..start + header.payload_len];
        if frame_crc(header.lsn, header.tag, payload) != header.crc {
            return Err(self.corrupt("frame checksum mismatch".to_owned()));
        }
        let entry = Entry { lsn: header.lsn, tag: header.tag, payload: Bytes::copy_from_slice(payload) };
        self.pos += header.frame_len();
        self.lsn += 1;
        Ok(entry)
    }

    /// Ensures `need` unread bytes are buffered, reading only committed bytes.
    fn fill(&mut self, need: usize) -> Result<(), ReadError> {
        let have = self.buf.len() - self.pos;
        if have >= need {
            return Ok(());
        }
        self.buf.drain(..self.pos);
        self.buf_offset += self.pos as u64;
        self.pos = 0;
        let file_end = self.buf_offset + have as u64;
        let committed_left = self.limit.saturating_sub(file_end);
        if committed_left < (need - have) as u64 {
            return Err(self.corrupt(format!("frame extends past the committed end {} of the segment", self.limit)));
        }
        let want = committed_left.min(need.max(READ_CHUNK) as u64) as usize;
        self.buf.resize(have + want, 0);
        let read = self.file.read_exact_at(&mut self.buf[have..], file_end);
        read.map_err(|source| ReadError::Io { path: self.path.clone(), source })
    }
}
