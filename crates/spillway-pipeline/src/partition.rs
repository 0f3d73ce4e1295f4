//! The buffer of one partition of a processed stream: the records (after processing) that wait
//! for their object, as frames in memory, with the excess spilled to a file.
//!
//! Frame layout (native to this process, never read by another version): `u32 LE data length`,
//! `i64 LE arrival ms`, `u64 LE lsn`, `u32 LE index` of the source record in its WAL entry, then
//! the data.
//!
//! Invariants:
//! - frames are in lsn order; spilled frames come before the in-memory ones;
//! - a spill file is a cache, not a record of truth: it is not fsynced and is deleted at start-up;
//!   after a crash the records are processed again from the WAL;
//! - `data_bytes`, `records`, `first_lsn`, `last_lsn` and `oldest_arrival_ms` describe every frame
//!   of the buffer (spilled or not).

use std::fs;
use std::io::{self, Write};
use std::path::PathBuf;

const HEADER: usize = 24;

/// One record of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    pub arrival_ms: i64,
    pub lsn: u64,
    /// The source record's index in its WAL entry.
    pub index: u32,
    pub data: &'a [u8],
}

/// Iterates the frames of a buffer's bytes; stops at the first incomplete frame (there is none in
/// buffers built by [`PartitionBuffer`]).
pub fn frames(mut buf: &[u8]) -> impl Iterator<Item = Frame<'_>> {
    std::iter::from_fn(move || {
        let header = buf.get(..HEADER)?;
        let len = u32::from_le_bytes(header[0..4].try_into().ok()?) as usize;
        let arrival_ms = i64::from_le_bytes(header[4..12].try_into().ok()?);
        let lsn = u64::from_le_bytes(header[12..20].try_into().ok()?);
        let index = u32::from_le_bytes(header[20..24].try_into().ok()?);
        let data = buf.get(HEADER..HEADER + len)?;
        buf = &buf[HEADER + len..];
        Some(Frame { arrival_ms, lsn, index, data })
    })
}

fn push_frame(out: &mut Vec<u8>, arrival_ms: i64, lsn: u64, index: u32, parts: &[&[u8]]) {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    out.reserve(HEADER + len);
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out.extend_from_slice(&arrival_ms.to_le_bytes());
    out.extend_from_slice(&lsn.to_le_bytes());
    out.extend_from_slice(&index.to_le_bytes());
    for p in parts {
        out.extend_from_slice(p);
    }
}

/// The records of one partition not yet cut into an object.
#[derive(Debug, Default)]
pub struct PartitionBuffer {
    mem: Vec<u8>,
    spill: Option<PathBuf>,
    spilled: usize,
    pub records: u64,
    /// Record bytes (what `BufferingHints.SizeInMBs` measures).
    pub data_bytes: usize,
    pub first_lsn: u64,
    pub last_lsn: u64,
    pub oldest_arrival_ms: i64,
}

/// A buffer's contents taken for an object: the frames (spilled ones first).
#[derive(Debug, Default)]
pub struct Taken {
    pub spill: Option<PathBuf>,
    pub mem: Vec<u8>,
}

impl Taken {
    /// All frames in one buffer (reads and deletes the spill file). Blocking.
    pub fn into_bytes(self) -> io::Result<Vec<u8>> {
        match self.spill {
            None => Ok(self.mem),
            Some(path) => {
                let mut all = fs::read(&path)?;
                all.extend_from_slice(&self.mem);
                let _ = fs::remove_file(&path);
                Ok(all)
            }
        }
    }
}

impl PartitionBuffer {
    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// Bytes held in memory.
    pub fn mem_len(&self) -> usize {
        self.mem.len()
    }

    /// Appends a record (`parts` concatenated: the data and, with AppendDelimiterToRecord, an LF).
    pub fn push(&mut self, arrival_ms: i64, lsn: u64, index: u32, parts: &[&[u8]]) {
        if self.records == 0 {
            self.first_lsn = lsn;
            self.oldest_arrival_ms = arrival_ms;
        }
        self.oldest_arrival_ms = self.oldest_arrival_ms.min(arrival_ms);
        self.last_lsn = self.last_lsn.max(lsn);
        self.records += 1;
        self.data_bytes += parts.iter().map(|p| p.len()).sum::<usize>();
        push_frame(&mut self.mem, arrival_ms, lsn, index, parts);
    }

    /// Hands the in-memory frames over for spilling to `path` (the caller appends them there with
    /// [`append_spill`] and then calls [`spilled`](Self::spilled)).
    pub fn take_for_spill(&mut self, path: PathBuf) -> (PathBuf, Vec<u8>) {
        let path = self.spill.get_or_insert(path).clone();
        (path, std::mem::take(&mut self.mem))
    }

    /// Records that `n` bytes went to the spill file.
    pub fn spilled(&mut self, n: usize) {
        self.spilled += n;
    }

    /// Takes every frame; the buffer is empty afterwards.
    pub fn take_all(&mut self) -> Taken {
        let taken = Taken { spill: self.spill.take(), mem: std::mem::take(&mut self.mem) };
        *self = PartitionBuffer::default();
        taken
    }

    /// Takes the frames with `lsn <= last` (a replayed object), leaving the rest in memory. Blocking
    /// when the buffer has spilled.
    pub fn take_upto(&mut self, last: u64) -> io::Result<Vec<u8>> {
        let all = self.take_all().into_bytes()?;
        let mut head = Vec::new();
        for f in frames(&all) {
            if f.lsn <= last {
                push_frame(&mut head, f.arrival_ms, f.lsn, f.index, &[f.data]);
            } else {
                self.push(f.arrival_ms, f.lsn, f.index, &[f.data]);
            }
        }
        Ok(head)
    }
}

/// Appends frames to a spill file. Blocking.
pub fn append_spill(path: &std::path::Path, bytes: &[u8]) -> io::Result<()> {
    let mut f = fs::OpenOptions::new().create(true).append(true).open(path)?;
    f.write_all(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_through_spill_and_split() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = PartitionBuffer::default();
        b.push(10, 3, 0, &[b"ab", b"\n"]);
        b.push(5, 4, 1, &[b"c"]);
        assert_eq!((b.records, b.data_bytes, b.first_lsn, b.last_lsn, b.oldest_arrival_ms), (2, 4, 3, 4, 5));
        let (path, bytes) = b.take_for_spill(dir.path().join("p.buf"));
        append_spill(&path, &bytes).unwrap();
        b.spilled(bytes.len());
        assert_eq!(b.mem_len(), 0);
        b.push(7, 6, 0, &[b"d"]);
        let head = b.take_upto(4).unwrap();
        let got: Vec<_> = frames(&head).map(|f| (f.lsn, f.data.to_vec())).collect();
        assert_eq!(got, vec![(3, b"ab\n".to_vec()), (4, b"c".to_vec())]);
        assert!(!path.exists(), "the spill file is deleted once read");
        assert_eq!((b.records, b.first_lsn, b.oldest_arrival_ms), (1, 6, 7));
        let rest = b.take_all().into_bytes().unwrap();
        assert_eq!(frames(&rest).map(|f| f.data.to_vec()).collect::<Vec<_>>(), vec![b"d".to_vec()]);
        assert!(b.is_empty());
    }
}
