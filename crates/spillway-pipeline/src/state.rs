//! Per-stream delivery state: how far each lane has delivered, and the object a lane is writing now.
//!
//! One JSON file per stream, `<data-dir>/delivery/<stream-id as 16 hex digits>.json`, replaced
//! atomically (temp file, fsync, rename, fsync of the folder).
//!
//! This is what makes delivery effectively-once. Before a lane writes an object it records an
//! [`Intent`]: the WAL range of the records, the bucket and the exact key. After the object is
//! stored it records the lane's new `delivered` position and clears the intent. After a crash, a
//! lane skips every entry below `delivered` and re-writes a pending intent with the same records
//! under the same key, which overwrites whatever the crash left there: no duplicate, no loss.
//!
//! Invariant: `pending.first >= delivered` and the intent's key is final (it carries the suffix time
//! and version chosen when it was cut).

use crate::fsutil::{sync_dir, write_atomic};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::PathBuf;

/// What went wrong with records that go to the error output instead of their destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorOutput {
    /// `!{firehose:error-output-type}`
    pub output_type: String,
    pub code: String,
    pub message: String,
    pub attempts: u32,
    pub ending_ms: i64,
}

/// One object a lane is about to write (or re-write after a crash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Intent {
    /// WAL range of the stream's entries in the object, inclusive.
    pub first: u64,
    pub last: u64,
    pub bucket_arn: String,
    pub key: String,
    /// Firehose `CompressionFormat`.
    pub compression: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key_arn: Option<String>,
    /// Set when the records go to the error output (JSON lines) instead of as they are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorOutput>,
    /// The partition the object belongs to (streams with processing or dynamic partitioning).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
    /// Record format conversion: the key of the `format-conversion-failed` object holding the
    /// records of this range that could not be converted (written only when there are some).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors_key: Option<String>,
}

/// Progress of one lane (`main` or `backup`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaneState {
    /// Every entry of the stream with an lsn below this is delivered by this lane.
    pub delivered: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<Intent>,
}

/// The persisted state of one stream.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryState {
    pub lanes: BTreeMap<String, LaneState>,
    /// Streams with processing or dynamic partitioning: per partition id, the records of that
    /// partition below `delivered` are stored (kept only while above the `main` lane's floor), and
    /// the object being written. The `main` lane's `delivered` is then the floor below which every
    /// record of every partition is stored.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub partitions: BTreeMap<String, LaneState>,
}

impl DeliveryState {
    pub fn lane(&mut self, name: &str) -> &mut LaneState {
        self.lanes.entry(name.to_string()).or_default()
    }
}

/// The folder of delivery state files.
#[derive(Debug, Clone)]
pub struct StateStore {
    dir: PathBuf,
}

impl StateStore {
    pub fn new(dir: impl Into<PathBuf>) -> io::Result<Self> {
        let dir = dir.into();
        fs::create_dir_all(&dir)?;
        Ok(Self { dir })
    }

    fn path(&self, stream_id: u64) -> PathBuf {
        self.dir.join(format!("{stream_id:016x}.json"))
    }

    /// The state of a stream; empty if it never delivered.
    pub fn load(&self, stream_id: u64) -> io::Result<DeliveryState> {
        match fs::read(self.path(stream_id)) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(DeliveryState::default()),
            Err(e) => Err(e),
        }
    }

    /// Replaces the state durably.
    pub fn save(&self, stream_id: u64, state: &DeliveryState) -> io::Result<()> {
        let body = serde_json::to_vec(state).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        write_atomic(&self.path(stream_id), &body)
    }

    /// Forgets a deleted stream.
    pub fn remove(&self, stream_id: u64) -> io::Result<()> {
        match fs::remove_file(self.path(stream_id)) {
            Ok(()) => sync_dir(&self.dir),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_remove() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::new(dir.path()).unwrap();
        assert_eq!(store.load(7).unwrap(), DeliveryState::default());
        let mut s = DeliveryState::default();
        s.lane("main").delivered = 10;
        s.lane("main").pending = Some(Intent {
            first: 10,
            last: 20,
            bucket_arn: "arn:aws:s3:::b".into(),
            key: "2026/01/01/00/s-1-2026-01-01-00-00-00-x".into(),
            compression: "GZIP".into(),
            kms_key_arn: None,
            error: None,
            partition: None,
            errors_key: None,
        });
        s.partitions.entry("dp:a=1/".into()).or_default().delivered = 12;
        store.save(7, &s).unwrap();
        assert_eq!(store.load(7).unwrap(), s);
        store.remove(7).unwrap();
        assert_eq!(store.load(7).unwrap(), DeliveryState::default());
    }
}
