//! Segment file format (header, frames), the per-segment in-memory index, and the
//! scan that verifies one segment on open and repairs a torn tail.

use std::collections::HashSet;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::Lsn;
use crate::error::OpenError;
use crate::fsutil::sync_dir;

/// First 8 bytes of every segment file.
pub(crate) const SEGMENT_MAGIC: [u8; 8] = *b"SPWALv1\0";
/// Segment header: magic, wal_id, first_lsn, crc32c of the preceding 24 bytes.
pub(crate) const HEADER_LEN: usize = 28;
/// Frame header: payload_len, masked crc, lsn, tag.
pub(crate) const FRAME_HEADER_LEN: usize = 24;
/// Largest payload accepted by `append` and by the recovery scan.
pub const MAX_PAYLOAD: usize = 64 << 20;
/// Distance in bytes between sparse index points of a segment.
const INDEX_STRIDE: u64 = 256 << 10;
const SEGMENT_SUFFIX: &str = ".wal";
const LEVELDB_MASK_DELTA: u32 = 0xa282_ead8;

pub(crate) fn le_u32(buf: &[u8], at: usize) -> u32 {
    let mut bytes = [0u8; 4];
    bytes.copy_from_slice(&buf[at..at + 4]);
    u32::from_le_bytes(bytes)
}

pub(crate) fn le_u64(buf: &[u8], at: usize) -> u64 {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&buf[at..at + 8]);
    u64::from_le_bytes(bytes)
}

/// `<first_lsn:020>.wal`
pub(crate) fn segment_file_name(first_lsn: Lsn) -> String {
    format!("{first_lsn:020}{SEGMENT_SUFFIX}")
}

/// Inverse of [`segment_file_name`]; `None` for any other file name.
pub(crate) fn parse_segment_file_name(name: &str) -> Option<Lsn> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Segment files in `dir`, sorted by first lsn.
pub(crate) fn list_segments(dir: &Path) -> io::Result<Vec<(Lsn, PathBuf)>> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if let Some(first) = name.to_str().and_then(parse_segment_file_name) {
            found.push((first, entry.path()));
        }
    }
    found.sort_unstable_by_key(|(first, _)| *first);
    Ok(found)
}

pub(crate) fn encode_header(wal_id: u64, first_lsn: Lsn) -> [u8; HEADER_LEN] {
    let mut header = [0u8; HEADER_LEN];
    header[..8].copy_from_slice(&SEGMENT_MAGIC);
    header[8..16].copy_from_slice(&wal_id.to_le_bytes());
    header[16..24].copy_from_slice(&first_lsn.to_le_bytes());
    let crc = crc32c::crc32c(&header[..24]);
    header[24..].copy_from_slice(&crc.to_le_bytes());
    header
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SegmentHeader {
    pub wal_id: u64,
    pub first_lsn: Lsn,
}

/// Checks magic and checksum of the header at the start of `buf`.
pub(crate) fn decode_header(buf: &[u8]) -> Result<SegmentHeader, &'static str> {
    let header = buf.get(..HEADER_LEN).ok_or("segment header is truncated")?;
    if header[..8] != SEGMENT_MAGIC {
        return Err("bad segment magic");
    }
    if crc32c::crc32c(&header[..24]) != le_u32(header, 24) {
        return Err("segment header checksum mismatch");
    }
    Ok(SegmentHeader { wal_id: le_u64(header, 8), first_lsn: le_u64(header, 16) })
}

/// LevelDB-style mask, so a crc stored inside checksummed data does not checksum to itself.
pub(crate) fn mask_crc(crc: u32) -> u32 {
    crc.rotate_right(15).wrapping_add(LEVELDB_MASK_DELTA)
}

/// Masked crc32c over `lsn (u64 LE) ‖ tag (u64 LE) ‖ payload`.
pub(crate) fn frame_crc(lsn: Lsn, tag: u64, payload: &[u8]) -> u32 {
    let mut ids = [0u8; 16];
    ids[..8].copy_from_slice(&lsn.to_le_bytes());
    ids[8..].copy_from_slice(&tag.to_le_bytes());
    mask_crc(crc32c::crc32c_append(crc32c::crc32c(&ids), payload))
}

/// Frame header bytes for an entry; the caller guarantees `payload.len() <= MAX_PAYLOAD`.
pub(crate) fn encode_frame_header(lsn: Lsn, tag: u64, payload: &[u8]) -> [u8; FRAME_HEADER_LEN] {
    let mut header = [0u8; FRAME_HEADER_LEN];
    header[..4].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    header[4..8].copy_from_slice(&frame_crc(lsn, tag, payload).to_le_bytes());
    header[8..16].copy_from_slice(&lsn.to_le_bytes());
    header[16..].copy_from_slice(&tag.to_le_bytes());
    header
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct FrameHeader {
    pub payload_len: usize,
    pub crc: u32,
    pub lsn: Lsn,
    pub tag: u64,
}

impl FrameHeader {
    /// Decodes the first [`FRAME_HEADER_LEN`] bytes of `buf` (which must be that long).
    pub(crate) fn decode(buf: &[u8]) -> FrameHeader {
        FrameHeader {
            payload_len: le_u32(buf, 0) as usize,
            crc: le_u32(buf, 4),
            lsn: le_u64(buf, 8),
            tag: le_u64(buf, 16),
        }
    }

    pub(crate) fn frame_len(&self) -> usize {
        FRAME_HEADER_LEN + self.payload_len
    }
}

/// Why a frame failed verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FrameFault {
    Truncated,
    TooLarge(usize),
    Lsn { found: Lsn, expected: Lsn },
    Checksum,
}

impl fmt::Display for FrameFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameFault::Truncated => write!(f, "truncated frame"),
            FrameFault::TooLarge(len) => write!(f, "frame length {len} exceeds {MAX_PAYLOAD}"),
            FrameFault::Lsn { found, expected } => {
                write!(f, "frame has lsn {found}, expected {expected}")
            }
            FrameFault::Checksum => write!(f, "frame checksum mismatch"),
        }
    }
}

/// Verifies the frame at the start of `data`, which must carry lsn `expected`.
pub(crate) fn check_frame(data: &[u8], expected: Lsn) -> Result<FrameHeader, FrameFault> {
    if data.len() < FRAME_HEADER_LEN {
        return Err(FrameFault::Truncated);
    }
    let header = FrameHeader::decode(data);
    if header.payload_len > MAX_PAYLOAD {
        return Err(FrameFault::TooLarge(header.payload_len));
    }
    if header.lsn != expected {
        return Err(FrameFault::Lsn { found: header.lsn, expected });
    }
    let payload = data.get(FRAME_HEADER_LEN..header.frame_len()).ok_or(FrameFault::Truncated)?;
    if frame_crc(header.lsn, header.tag, payload) != header.crc {
        return Err(FrameFault::Checksum);
    }
    Ok(header)
}

/// In-memory index of one segment: lsn range, committed length, tags, sparse offsets.
#[derive(Debug, Clone)]
pub(crate) struct SegmentMeta {
    pub path: PathBuf,
    pub first_lsn: Lsn,
    /// One past the last entry (`first_lsn` when empty).
    pub end_lsn: Lsn,
    /// Committed bytes including the header.
    pub len: u64,
    pub tags: HashSet<u64>,
    /// `(lsn, offset)` of a frame about every [`INDEX_STRIDE`] bytes, ascending.
    index: Vec<(Lsn, u64)>,
}

impl SegmentMeta {
    pub(crate) fn new(path: PathBuf, first_lsn: Lsn) -> SegmentMeta {
        SegmentMeta {
            path,
            first_lsn,
            end_lsn: first_lsn,
            len: HEADER_LEN as u64,
            tags: HashSet::new(),
            index: Vec::new(),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.end_lsn == self.first_lsn
    }

    /// Records the committed frame `lsn` (the next one) at byte `offset` (the current end).
    pub(crate) fn record(&mut self, lsn: Lsn, tag: u64, offset: u64, frame_len: u64) {
        debug_assert_eq!(lsn, self.end_lsn);
        debug_assert_eq!(offset, self.len);
        let last_point = self.index.last().map_or(HEADER_LEN as u64, |&(_, o)| o);
        if offset - last_point >= INDEX_STRIDE {
            self.index.push((lsn, offset));
        }
        self.tags.insert(tag);
        self.end_lsn = lsn + 1;
        self.len = offset + frame_len;
    }

    /// `(lsn, offset)` of a frame at or before `lsn` to start reading from.
    pub(crate) fn seek_hint(&self, lsn: Lsn) -> (Lsn, u64) {
        match self.index.partition_point(|&(l, _)| l <= lsn) {
            0 => (self.first_lsn, HEADER_LEN as u64),
            i => self.index[i - 1],
        }
    }
}

/// Result of verifying one segment on open.
#[derive(Debug)]
pub(crate) struct Scanned {
    pub meta: SegmentMeta,
    /// Bytes cut off a torn tail (or a torn header that was rewritten).
    pub truncated_bytes: u64,
}

/// Verifies the segment at `path` whose file name says it starts at `first_lsn`.
///
/// Only the last segment may have a torn tail (cut off here); anything else that fails
/// verification is reported as corruption.
pub(crate) fn scan_segment(path: &Path, first_lsn: Lsn, wal_id: u64, is_last: bool) -> Result<Scanned, OpenError> {
    let data = fs::read(path).map_err(OpenError::io(path))?;
    if let Err(reason) = check_header(&data, first_lsn, wal_id) {
        return torn_header(path, &data, first_lsn, wal_id, is_last, reason);
    }
    let mut meta = SegmentMeta::new(path.to_path_buf(), first_lsn);
    let mut offset = HEADER_LEN;
    while offset < data.len() {
        match check_frame(&data[offset..], meta.end_lsn) {
            Ok(frame) => {
                let frame_len = frame.frame_len();
                meta.record(frame.lsn, frame.tag, offset as u64, frame_len as u64);
                offset += frame_len;
            }
            Err(fault) => return bad_frame(&data, offset, meta, fault, is_last),
        }
    }
    Ok(Scanned { meta, truncated_bytes: 0 })
}

/// Verifies the header; see [`HeaderFault`] for the two kinds of failure.
fn check_header(data: &[u8], first_lsn: Lsn, wal_id: u64) -> Result<(), HeaderFault> {
    let header = decode_header(data).map_err(HeaderFault::Unreadable)?;
    if header.wal_id != wal_id {
        return Err(HeaderFault::Mismatch(format!(
            "segment belongs to wal {:016x}, expected {wal_id:016x}",
            header.wal_id
        )));
    }
    if header.first_lsn != first_lsn {
        return Err(HeaderFault::Mismatch(format!(
            "header says first lsn {}, file name says {first_lsn}",
            header.first_lsn
        )));
    }
    Ok(())
}

enum HeaderFault {
    /// Short, bad magic or bad checksum: may be a torn write of a new segment.
    Unreadable(&'static str),
    /// A valid header of another log or another lsn: never a torn write.
    Mismatch(String),
}

/// A header that is short or unreadable in the last segment, with nothing but zeros
/// after it, is a crash while the segment was being created: rewrite it.
fn torn_header(
    path: &Path,
    data: &[u8],
    first_lsn: Lsn,
    wal_id: u64,
    is_last: bool,
    fault: HeaderFault,
) -> Result<Scanned, OpenError> {
    let reason = match fault {
        HeaderFault::Mismatch(reason) => reason,
        HeaderFault::Unreadable(reason) => {
            let nothing_after = data.get(HEADER_LEN..).is_none_or(|rest| rest.iter().all(|&b| b == 0));
            if !(is_last && nothing_after) {
                return Err(OpenError::BadHeader { path: path.to_path_buf(), reason: reason.to_owned() });
            }
            tracing::warn!(segment = %path.display(), reason, "rewriting torn segment header");
            rewrite_header(path, wal_id, first_lsn).map_err(OpenError::io(path))?;
            return Ok(Scanned {
                meta: SegmentMeta::new(path.to_path_buf(), first_lsn),
                truncated_bytes: data.len() as u64,
            });
        }
    };
    Err(OpenError::BadHeader { path: path.to_path_buf(), reason })
}

/// Torn tail (truncate and continue) versus corruption (refuse to open).
fn bad_frame(
    data: &[u8],
    offset: usize,
    meta: SegmentMeta,
    fault: FrameFault,
    is_last: bool,
) -> Result<Scanned, OpenError> {
    let corrupt = |reason: String| OpenError::Corrupt { segment: meta.path.clone(), offset: offset as u64, reason };
    if !is_last {
        return Err(corrupt(format!("{fault} in a sealed segment")));
    }
    if let Some(at) = later_valid_frame(data, offset, meta.end_lsn) {
        return Err(corrupt(format!("{fault}; a valid frame follows at offset {at}")));
    }
    let truncated_bytes = (data.len() - offset) as u64;
    tracing::warn!(
        segment = %meta.path.display(),
        offset,
        truncated_bytes,
        %fault,
        "truncating torn wal tail"
    );
    truncate_file(&meta.path, offset as u64).map_err(OpenError::io(&meta.path))?;
    Ok(Scanned { meta, truncated_bytes })
}

/// Offset of a verifiable frame at or after `from` whose lsn is at least `expected`.
///
/// Every frame takes at least [`FRAME_HEADER_LEN`] bytes, so a genuine later frame has
/// an lsn in `expected ..= expected + remaining / FRAME_HEADER_LEN`; that 8-byte range
/// test rejects almost every position before the crc is computed, keeping this linear.
pub(crate) fn later_valid_frame(data: &[u8], from: usize, expected: Lsn) -> Option<usize> {
    let last_start = data.len().checked_sub(FRAME_HEADER_LEN)?;
    let max_lsn = expected.saturating_add(((data.len() - from) / FRAME_HEADER_LEN) as u64);
    (from..=last_start).find(|&at| {
        let lsn = le_u64(data, at + 8);
        (expected..=max_lsn).contains(&lsn) && check_frame(&data[at..], lsn).is_ok()
    })
}

fn truncate_file(path: &Path, len: u64) -> io::Result<()> {
    let file = OpenOptions::new().write(true).open(path)?;
    file.set_len(len)?;
    file.sync_all()
}

fn rewrite_header(path: &Path, wal_id: u64, first_lsn: Lsn) -> io::Result<()> {
    let mut file = OpenOptions::new().write(true).open(path)?;
    file.set_len(0)?;
    file.write_all(&encode_header(wal_id, first_lsn))?;
    file.sync_all()
}

/// A failed [`create_segment`]; `leftover` means a partial file could not be removed.
#[derive(Debug)]
pub(crate) struct CreateError {
    pub source: io::Error,
    pub leftover: bool,
}

/// Creates `dir/<first_lsn>.wal` with its header, durably (file and directory fsynced).
/// On failure the partial file is removed again.
pub(crate) fn create_segment(dir: &Path, wal_id: u64, first_lsn: Lsn) -> Result<(File, PathBuf), CreateError> {
    let path = dir.join(segment_file_name(first_lsn));
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|source| CreateError { source, leftover: false })?;
    let written =
        file.write_all(&encode_header(wal_id, first_lsn)).and_then(|()| file.sync_all()).and_then(|()| sync_dir(dir));
    match written {
        Ok(()) => Ok((file, path)),
        Err(source) => {
            drop(file);
            let leftover = fs::remove_file(&path).and_then(|()| sync_dir(dir)).is_err();
            Err(CreateError { source, leftover })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(lsn: Lsn, tag: u64, payload: &[u8]) -> Vec<u8> {
        let mut out = encode_frame_header(lsn, tag, payload).to_vec();
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn header_round_trip_and_damage() {
        let header = encode_header(0xabcd, 42);
        let decoded = decode_header(&header);
        assert_eq!(decoded, Ok(SegmentHeader { wal_id: 0xabcd, first_lsn: 42 }));
        for i in 0..HEADER_LEN {
            let mut bad = header;
            bad[i] ^= 0x10;
            assert!(decode_header(&bad).is_err(), "flip at {i} undetected");
        }
        assert!(decode_header(&header[..HEADER_LEN - 1]).is_err());
    }

    #[test]
    fn frame_checks() {
        let data = frame(7, 3, b"hello");
        let header = check_frame(&data, 7).expect("valid frame");
        assert_eq!((header.lsn, header.tag, header.payload_len), (7, 3, 5));
        assert_eq!(check_frame(&data, 8).err(), Some(FrameFault::Lsn { found: 7, expected: 8 }));
        assert_eq!(check_frame(&data[..data.len() - 1], 7).err(), Some(FrameFault::Truncated));
        for i in 0..data.len() {
            let mut bad = data.clone();
            bad[i] ^= 0x01;
            assert!(check_frame(&bad, 7).is_err(), "flip at {i} undetected");
        }
        assert!(check_frame(&[0u8; 64], 1).is_err(), "zeros are not a frame");
    }

    #[test]
    #[allow(clippy::manual_rotate, reason = "spelled out as in LevelDB's crc32c::Mask")]
    fn crc_mask_matches_leveldb() {
        let crc = 0x1234_5678u32;
        assert_eq!(mask_crc(crc), ((crc >> 15) | (crc << 17)).wrapping_add(0xa282_ead8));
    }

    #[test]
    fn later_frame_search() {
        let mut data = frame(5, 1, b"aaaa");
        data.extend(frame(6, 1, b"bbbb"));
        assert_eq!(later_valid_frame(&data, 0, 5), Some(0));
        assert_eq!(later_valid_frame(&data, 1, 5), Some(28));
        assert_eq!(later_valid_frame(&data, 29, 5), None);
        // an older lsn is not evidence of corruption
        assert_eq!(later_valid_frame(&data, 1, 7), None);
    }

    #[test]
    fn file_names() {
        assert_eq!(segment_file_name(12), "00000000000000000012.wal");
        assert_eq!(parse_segment_file_name("00000000000000000012.wal"), Some(12));
        assert_eq!(parse_segment_file_name("0000000000000000012.wal"), None);
        assert_eq!(parse_segment_file_name("00000000000000000012.wal.tmp"), None);
        assert_eq!(parse_segment_file_name("acks.json"), None);
    }

    #[test]
    fn seek_hint_uses_sparse_index() {
        let mut meta = SegmentMeta::new(PathBuf::from("x"), 10);
        let frame_len = 100 << 10;
        let mut offset = HEADER_LEN as u64;
        for lsn in 10..30 {
            meta.record(lsn, 1, offset, frame_len);
            offset += frame_len;
        }
        assert_eq!(meta.seek_hint(10), (10, HEADER_LEN as u64));
        let (lsn, off) = meta.seek_hint(25);
        assert!(lsn <= 25 && lsn > 10, "hint {lsn}");
        assert_eq!(off, HEADER_LEN as u64 + (lsn - 10) * frame_len);
        assert_eq!(meta.end_lsn, 30);
        assert_eq!(meta.len, offset);
    }
}
