//! Opening a WAL directory: the `wal.id` file, verifying every segment in order, lsn
//! continuity between segments, and finishing interrupted segment deletions.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::Lsn;
use crate::acks::AckState;
use crate::error::OpenError;
use crate::fsutil::{atomic_write, sync_dir};
use crate::segment::{self, SegmentMeta, le_u32, le_u64, list_segments, scan_segment};

pub(crate) const ID_FILE: &str = "wal.id";
const ID_MAGIC: [u8; 8] = *b"SPWALID1";
const ID_LEN: usize = 20;

/// Reads `dir/wal.id`, creating it (with a fresh random id) for a new directory.
pub(crate) fn load_or_create_id(dir: &Path) -> Result<u64, OpenError> {
    let path = dir.join(ID_FILE);
    match fs::read(&path) {
        Ok(bytes) => decode_id(&bytes).map_err(|reason| OpenError::BadHeader { path, reason: reason.to_owned() }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => create_id(dir, path),
        Err(source) => Err(OpenError::Io { path, source }),
    }
}

fn create_id(dir: &Path, path: PathBuf) -> Result<u64, OpenError> {
    let segments = list_segments(dir).map_err(OpenError::io(dir))?;
    if !segments.is_empty() {
        return Err(OpenError::BadHeader { path, reason: "missing while segment files exist".to_owned() });
    }
    let (high, low) = uuid::Uuid::new_v4().as_u64_pair();
    let wal_id = high ^ low;
    atomic_write(dir, ID_FILE, &encode_id(wal_id)).map_err(OpenError::io(&path))?;
    tracing::info!(dir = %dir.display(), wal_id = format_args!("{wal_id:016x}"), "initialised new wal");
    Ok(wal_id)
}

/// `b"SPWALID1" ‖ wal_id (u64 LE) ‖ crc32c of the first 16 bytes (u32 LE)`.
fn encode_id(wal_id: u64) -> [u8; ID_LEN] {
    let mut out = [0u8; ID_LEN];
    out[..8].copy_from_slice(&ID_MAGIC);
    out[8..16].copy_from_slice(&wal_id.to_le_bytes());
    let crc = crc32c::crc32c(&out[..16]);
    out[16..].copy_from_slice(&crc.to_le_bytes());
    out
}

fn decode_id(bytes: &[u8]) -> Result<u64, &'static str> {
    if bytes.len() != ID_LEN || bytes[..8] != ID_MAGIC {
        return Err("not a wal id file");
    }
    if crc32c::crc32c(&bytes[..16]) != le_u32(bytes, 16) {
        return Err("wal id checksum mismatch");
    }
    Ok(le_u64(bytes, 8))
}

/// The verified log as found on disk.
#[derive(Debug)]
pub(crate) struct Recovered {
    /// Retained segments in lsn order; the last one is the active segment.
    pub segments: Vec<SegmentMeta>,
    /// Open handle on the active segment, positioned at its end.
    pub active_file: File,
    pub next_lsn: Lsn,
    pub truncated_bytes: u64,
}

/// Verifies all segments of `dir` and prepares the active segment.
pub(crate) fn recover(dir: &Path, wal_id: u64, acks: &AckState) -> Result<Recovered, OpenError> {
    let _ = fs::remove_file(dir.join(format!("{}.tmp", crate::acks::ACKS_FILE)));
    let files = list_segments(dir).map_err(OpenError::io(dir))?;
    let files = drop_deleted(dir, files, acks)?;
    let mut segments = Vec::with_capacity(files.len());
    let mut truncated_bytes = 0;
    for (i, (first_lsn, path)) in files.iter().enumerate() {
        let scanned = scan_segment(path, *first_lsn, wal_id, i + 1 == files.len())?;
        truncated_bytes += scanned.truncated_bytes;
        segments.push(scanned.meta);
    }
    let next_lsn = check_continuity(dir, &segments, acks)?;
    let active_file = match segments.last() {
        Some(active) => open_active(active)?,
        None => {
            let (file, path) = segment::create_segment(dir, wal_id, next_lsn)
                .map_err(|e| OpenError::Io { path: dir.to_path_buf(), source: e.source })?;
            segments.push(SegmentMeta::new(path, next_lsn));
            file
        }
    };
    Ok(Recovered { segments, active_file, next_lsn, truncated_bytes })
}

/// Removes sealed segments whose whole lsn range `acks.json` records as deleted: a
/// crash interrupted their deletion. A sealed segment's range ends where the next starts.
fn drop_deleted(dir: &Path, files: Vec<(Lsn, PathBuf)>, acks: &AckState) -> Result<Vec<(Lsn, PathBuf)>, OpenError> {
    let mut kept = Vec::with_capacity(files.len());
    let mut removed = false;
    for (i, (first, path)) in files.iter().enumerate() {
        let next_first = files.get(i + 1).map(|(next, _)| *next);
        match next_first {
            Some(next) if next > *first && acks.covers(*first, next - 1) => {
                tracing::info!(segment = %path.display(), "finishing interrupted segment deletion");
                fs::remove_file(path).map_err(OpenError::io(path))?;
                removed = true;
            }
            _ => kept.push((*first, path.clone())),
        }
    }
    if removed {
        sync_dir(dir).map_err(OpenError::io(dir))?;
    }
    Ok(kept)
}

/// Every lsn below the end must be in a segment or in a recorded deleted range, and the
/// log must not end below the `next_lsn` that `acks.json` saw. Returns `next_lsn`.
fn check_continuity(dir: &Path, segments: &[SegmentMeta], acks: &AckState) -> Result<Lsn, OpenError> {
    let mut expected: Lsn = 1;
    for segment in segments {
        if segment.first_lsn < expected {
            return Err(OpenError::Corrupt {
                segment: segment.path.clone(),
                offset: 0,
                reason: format!(
                    "segment starts at lsn {} which overlaps the previous segment ending before {expected}",
                    segment.first_lsn
                ),
            });
        }
        if segment.first_lsn > expected && !acks.covers(expected, segment.first_lsn - 1) {
            return Err(OpenError::Corrupt {
                segment: segment.path.clone(),
                offset: 0,
                reason: format!(
                    "lsns {expected}..{} are missing (no segment and not recorded as deleted)",
                    segment.first_lsn
                ),
            });
        }
        expected = segment.end_lsn;
    }
    let floor = acks.next_lsn_floor();
    if expected < floor {
        if segments.is_empty() && acks.covers(expected, floor - 1) {
            return Ok(floor);
        }
        let segment = segments.last().map_or_else(|| dir.to_path_buf(), |s| s.path.clone());
        return Err(OpenError::Corrupt {
            segment,
            offset: 0,
            reason: format!("log ends before lsn {expected} but acks.json recorded next lsn {floor}"),
        });
    }
    Ok(expected)
}

fn open_active(meta: &SegmentMeta) -> Result<File, OpenError> {
    let mut file = OpenOptions::new().write(true).open(&meta.path).map_err(OpenError::io(&meta.path))?;
    file.seek(SeekFrom::Start(meta.len)).map_err(OpenError::io(&meta.path))?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_round_trip() {
        let bytes = encode_id(0x0123_4567_89ab_cdef);
        assert_eq!(decode_id(&bytes), Ok(0x0123_4567_89ab_cdef));
        let mut bad = bytes;
        bad[9] ^= 1;
        assert!(decode_id(&bad).is_err());
        assert!(decode_id(&bytes[..19]).is_err());
    }
}
