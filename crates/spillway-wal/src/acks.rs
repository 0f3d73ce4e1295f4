//! Per-tag acknowledgement state, the record of intentionally deleted lsn ranges, and
//! their persistence in `acks.json`.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs;
use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::Lsn;
use crate::error::OpenError;
use crate::fsutil::atomic_write;
use crate::segment::SegmentMeta;

pub(crate) const ACKS_FILE: &str = "acks.json";
const ACKS_FORMAT: u32 = 1;

/// The JSON document stored in `acks.json`.
#[derive(Debug, Serialize, Deserialize)]
struct AckFile {
    format: u32,
    wal_id: u64,
    /// `next_lsn` when the file was written: the log may never end below it.
    next_lsn: Lsn,
    /// tag -> first lsn not yet delivered.
    acked: BTreeMap<u64, Lsn>,
    retired: BTreeSet<u64>,
    /// Inclusive lsn ranges whose segments were deleted on purpose.
    deleted: Vec<[Lsn; 2]>,
}

/// In-memory ack state; `version` counts changes so persistence can be coalesced.
#[derive(Debug)]
pub(crate) struct AckState {
    acked: HashMap<u64, Lsn>,
    retired: HashSet<u64>,
    /// Sorted, non-adjacent, non-overlapping inclusive ranges.
    deleted: Vec<(Lsn, Lsn)>,
    next_lsn_floor: Lsn,
    version: u64,
}

impl Default for AckState {
    fn default() -> Self {
        AckState { acked: HashMap::new(), retired: HashSet::new(), deleted: Vec::new(), next_lsn_floor: 1, version: 0 }
    }
}

impl AckState {
    /// Loads `dir/acks.json`; a missing file is an empty state.
    pub(crate) fn load(dir: &Path, wal_id: u64) -> Result<AckState, OpenError> {
        let path = dir.join(ACKS_FILE);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(AckState::default()),
            Err(source) => return Err(OpenError::Io { path, source }),
        };
        let bad = |reason: String| OpenError::BadAcks { path: path.clone(), reason };
        let file: AckFile = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
        if file.format != ACKS_FORMAT {
            return Err(bad(format!("unsupported format {}", file.format)));
        }
        if file.wal_id != wal_id {
            return Err(bad(format!("file belongs to wal {:016x}, expected {wal_id:016x}", file.wal_id)));
        }
        let mut state = AckState {
            acked: file.acked.into_iter().collect(),
            retired: file.retired.into_iter().collect(),
            deleted: Vec::new(),
            next_lsn_floor: file.next_lsn.max(1),
            version: 0,
        };
        for [first, last] in file.deleted {
            if first > last || first == 0 {
                return Err(bad(format!("invalid deleted range {first}..={last}")));
            }
            state.mark_deleted(first, last);
        }
        state.version = 0;
        Ok(state)
    }

    /// Serialises the state; `next_lsn` is the committed end at this moment.
    pub(crate) fn encode(&self, wal_id: u64, next_lsn: Lsn) -> io::Result<Vec<u8>> {
        let file = AckFile {
            format: ACKS_FORMAT,
            wal_id,
            next_lsn: next_lsn.max(self.next_lsn_floor),
            acked: self.acked.iter().map(|(&t, &l)| (t, l)).collect(),
            retired: self.retired.iter().copied().collect(),
            deleted: self.deleted.iter().map(|&(f, l)| [f, l]).collect(),
        };
        serde_json::to_vec_pretty(&file).map_err(io::Error::other)
    }

    /// Writes `acks.json` crash-safely.
    pub(crate) fn store(dir: &Path, bytes: &[u8]) -> io::Result<()> {
        atomic_write(dir, ACKS_FILE, bytes)
    }

    pub(crate) fn version(&self) -> u64 {
        self.version
    }

    /// The `next_lsn` recorded by the last persisted state (1 if none).
    pub(crate) fn next_lsn_floor(&self) -> Lsn {
        self.next_lsn_floor
    }

    /// First undelivered lsn of `tag` (1 if never acked).
    pub(crate) fn acked(&self, tag: u64) -> Lsn {
        self.acked.get(&tag).copied().unwrap_or(1)
    }

    /// Raises the ack position of `tag`; lower values are ignored. Returns whether it changed.
    pub(crate) fn ack(&mut self, tag: u64, upto: Lsn) -> bool {
        if upto <= self.acked(tag) {
            return false;
        }
        self.acked.insert(tag, upto);
        self.version += 1;
        true
    }

    pub(crate) fn retire(&mut self, tag: u64) -> bool {
        let changed = self.retired.insert(tag);
        if changed {
            self.version += 1;
        }
        changed
    }

    pub(crate) fn is_retired(&self, tag: u64) -> bool {
        self.retired.contains(&tag)
    }

    /// No tag present in the segment still needs any of its entries.
    pub(crate) fn deletable(&self, meta: &SegmentMeta) -> bool {
        meta.tags.iter().all(|&tag| self.is_retired(tag) || self.acked(tag) >= meta.end_lsn)
    }

    /// Records that lsns `first..=last` were deleted on purpose.
    pub(crate) fn mark_deleted(&mut self, first: Lsn, last: Lsn) {
        if self.covers(first, last) {
            return;
        }
        self.deleted.push((first, last));
        self.deleted.sort_unstable();
        let mut merged: Vec<(Lsn, Lsn)> = Vec::with_capacity(self.deleted.len());
        for &(f, l) in &self.deleted {
            match merged.last_mut() {
                Some(prev) if f <= prev.1.saturating_add(1) => prev.1 = prev.1.max(l),
                _ => merged.push((f, l)),
            }
        }
        self.deleted = merged;
        self.version += 1;
    }

    /// Whether every lsn in `first..=last` lies in a deleted range.
    pub(crate) fn covers(&self, first: Lsn, last: Lsn) -> bool {
        self.deleted.iter().any(|&(f, l)| f <= first && last <= l)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn ack_is_monotonic() {
        let mut acks = AckState::default();
        assert_eq!(acks.acked(1), 1);
        assert!(acks.ack(1, 10));
        assert!(!acks.ack(1, 5));
        assert!(!acks.ack(1, 10));
        assert_eq!(acks.acked(1), 10);
        assert_eq!(acks.version(), 1);
    }

    #[test]
    fn deleted_ranges_merge() {
        let mut acks = AckState::default();
        acks.mark_deleted(10, 19);
        acks.mark_deleted(30, 39);
        assert!(!acks.covers(10, 39));
        acks.mark_deleted(20, 29);
        assert!(acks.covers(10, 39));
        assert_eq!(acks.deleted, vec![(10, 39)]);
        assert!(!acks.covers(9, 10));
        assert!(!acks.covers(39, 40));
    }

    #[test]
    fn deletable_needs_every_tag() {
        let mut meta = SegmentMeta::new(PathBuf::from("x"), 1);
        meta.record(1, 7, 28, 30);
        meta.record(2, 8, 58, 30);
        let mut acks = AckState::default();
        assert!(!acks.deletable(&meta));
        acks.ack(7, 3);
        assert!(!acks.deletable(&meta));
        acks.ack(8, 2);
        assert!(!acks.deletable(&meta), "lsn 2 of tag 8 is not delivered");
        acks.retire(8);
        assert!(acks.deletable(&meta));
    }

    #[test]
    fn round_trip_through_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut acks = AckState::default();
        acks.ack(u64::MAX, 5);
        acks.retire(3);
        acks.mark_deleted(1, 4);
        let bytes = acks.encode(99, 6).expect("encode");
        AckState::store(dir.path(), &bytes).expect("store");
        let loaded = AckState::load(dir.path(), 99).expect("load");
        assert_eq!(loaded.acked(u64::MAX), 5);
        assert!(loaded.is_retired(3));
        assert!(loaded.covers(1, 4));
        assert_eq!(loaded.next_lsn_floor(), 6);
        assert!(matches!(AckState::load(dir.path(), 98), Err(OpenError::BadAcks { .. })));
    }
}
