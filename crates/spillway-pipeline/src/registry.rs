//! Crash-safe persistence of delivery stream definitions: one JSON file per stream in
//! `<data-dir>/streams/`.
//!
//! Invariant: a file is either the old or the new definition, never a mix: each save writes
//! `<name>.json.tmp`, fsyncs it, renames it over `<name>.json` and fsyncs the directory. A deletion
//! removes the file and fsyncs the directory before the caller forgets the stream.

use crate::fsutil::{sync_dir, write_atomic};
use serde::{Deserialize, Serialize};
use spillway_model::stream::StreamRecord;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

const FORMAT: u32 = 1;

#[derive(Serialize, Deserialize)]
struct StreamFile {
    format: u32,
    stream: StreamRecord,
}

/// Errors of the stream store, with the file they concern.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("stream registry i/o on {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("stream registry file {path} is unreadable: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io { path: path.to_path_buf(), source }
}

/// The folder of stream files.
pub struct StreamStore {
    dir: PathBuf,
}

impl StreamStore {
    /// Opens (creating) the folder and loads every stream in it, sorted by name.
    pub fn open(dir: impl Into<PathBuf>) -> Result<(Self, Vec<StreamRecord>), StoreError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let mut streams = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io_err(&dir))? {
            let path = entry.map_err(io_err(&dir))?.path();
            match path.extension().and_then(|e| e.to_str()) {
                Some("json") => {
                    let bytes = fs::read(&path).map_err(io_err(&path))?;
                    let file: StreamFile = serde_json::from_slice(&bytes)
                        .map_err(|e| StoreError::Corrupt { path: path.clone(), reason: e.to_string() })?;
                    if file.format != FORMAT {
                        return Err(StoreError::Corrupt { path, reason: format!("unknown format {}", file.format) });
                    }
                    streams.push(file.stream);
                }
                // A save interrupted by a crash: the previous definition (if any) is intact.
                Some("tmp") => fs::remove_file(&path).map_err(io_err(&path))?,
                _ => {}
            }
        }
        streams.sort_by(|a, b| a.name.cmp(&b.name));
        Ok((Self { dir }, streams))
    }

    fn path(&self, name: &str) -> PathBuf {
        // Stream names match [a-zA-Z0-9_.-]+ and are 1..64 long, so they are safe file names; "." and
        // ".." are the only names that are not, and they get a prefix.
        if name.chars().all(|c| c == '.') {
            self.dir.join(format!("_{name}.json"))
        } else {
            self.dir.join(format!("{name}.json"))
        }
    }

    /// Saves a stream durably.
    pub fn save(&self, stream: &StreamRecord) -> Result<(), StoreError> {
        let path = self.path(&stream.name);
        let body = serde_json::to_vec_pretty(&StreamFile { format: FORMAT, stream: stream.clone() })
            .map_err(|e| StoreError::Corrupt { path: path.clone(), reason: e.to_string() })?;
        write_atomic(&path, &body).map_err(io_err(&path))
    }

    /// Removes a stream durably.
    pub fn remove(&self, name: &str) -> Result<(), StoreError> {
        let path = self.path(name);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(StoreError::Io { path, source: e }),
        }
        self.sync_dir()
    }

    fn sync_dir(&self) -> Result<(), StoreError> {
        sync_dir(&self.dir).map_err(io_err(&self.dir))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use spillway_model::stream::{Ctx, create};

    fn record(name: &str) -> StreamRecord {
        let input = json!({"DeliveryStreamName": name, "ExtendedS3DestinationConfiguration":
            {"RoleARN": "arn:aws:iam::123456789012:role/r", "BucketARN": "arn:aws:s3:::b"}});
        create(&input, 9, Ctx { region: "us-east-1", account_id: "123456789012", now: 1.0 }, &|_, _, _| Ok(())).unwrap()
    }

    #[test]
    fn save_load_remove() {
        let dir = tempfile::tempdir().unwrap();
        let (store, loaded) = StreamStore::open(dir.path()).unwrap();
        assert!(loaded.is_empty());
        store.save(&record("b")).unwrap();
        store.save(&record("a")).unwrap();
        store.save(&record("..")).unwrap();
        fs::write(dir.path().join("c.json.tmp"), b"{torn").unwrap();
        let (store, loaded) = StreamStore::open(dir.path()).unwrap();
        let names: Vec<&str> = loaded.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, vec!["..", "a", "b"]);
        assert_eq!(loaded[1], record("a"));
        assert!(!dir.path().join("c.json.tmp").exists());
        store.remove("a").unwrap();
        let (_, loaded) = StreamStore::open(dir.path()).unwrap();
        assert_eq!(loaded.len(), 2);
    }

    #[test]
    fn corrupt_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("x.json"), b"{not json").unwrap();
        let err = StreamStore::open(dir.path()).err().unwrap();
        assert!(err.to_string().contains("x.json"), "{err}");
    }
}
