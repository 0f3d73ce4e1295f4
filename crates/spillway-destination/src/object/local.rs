//! [`LocalBucket`]: the embedded object store, one folder per bucket (`<data-dir>/buckets/<bucket>/<key>`).
//!
//! Invariants:
//!
//! - **Key safety.** Every key passes [`check_local_key`] before any file is touched, so a key maps onto a
//!   relative path of normal components and no write can land outside the bucket folder. Keys that collide with
//!   the tree (`a/b` when `a/b/` is a folder, or `a/b/c` when `a/b` is an object) are
//!   [`ObjectError::InvalidKey`] too: S3 allows both, a folder tree cannot.
//! - **Atomicity.** An object is written to a hidden temp file in its target folder (`.spillway-tmp-<process
//!   incarnation>-<uuid>`), then renamed over the final name. Readers see the old object or the new one, never
//!   a torn one; overwriting a key (a replay after a crash writes the same key again) replaces it atomically.
//! - **Durability.** `put` returns `Ok` only after the temp file is fsynced, renamed, and its folder and every
//!   ancestor folder up to the bucket folder are fsynced. Ancestors are fsynced on every put, not only when this
//!   put created them: another put may have created the folder and not yet fsynced its parent, and a clean
//!   folder's fsync is cheap next to the object's own. Folders missing above the bucket folder are created by
//!   [`LocalBucket::new`], fsyncing each new folder's parent.
//! - **Crash leftovers.** A crash leaves at most a temp file, which is never an object: its name is reserved
//!   (no valid key has a segment starting with the prefix). [`LocalBucket::new`] walks the bucket folder once
//!   and removes temp files of earlier process incarnations; the incarnation id in the name keeps it from
//!   removing a temp file another `LocalBucket` of this process is writing. The walk does not follow symbolic
//!   links. Its cost grows with the bucket's entry count; [`super::ObjectStores`] opens each bucket once per
//!   process.
//! - **Off the async workers.** All file work runs on tokio's blocking pool.
//!
//! Local objects carry no metadata: `Content-Type`, `Content-Encoding` and SSE settings in [`PutOptions`] are
//! ignored (the key's extension tells the encoding, as on S3).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use bytes::Bytes;
use futures::future::BoxFuture;

use super::key::{TEMP_PREFIX, check_bucket_name, check_local_key};
use super::{ObjectError, ObjectStoreSink, PutOptions};

/// Identifies this process in temp-file names, so a leftover scan never removes a live write of its own.
static INCARNATION: LazyLock<String> = LazyLock::new(|| uuid::Uuid::new_v4().simple().to_string());

/// One bucket stored as a folder tree.
#[derive(Debug, Clone)]
pub struct LocalBucket {
    bucket: String,
    dir: PathBuf,
}

impl LocalBucket {
    /// Opens (creating if missing) the folder `<root>/<bucket>` and removes temp files left by a crash.
    /// `root` is `<data-dir>/buckets`. Blocking: call it where blocking file I/O is acceptable.
    pub fn new(root: PathBuf, bucket: &str) -> Result<Self, ObjectError> {
        check_bucket_name(bucket).map_err(|reason| ObjectError::InvalidBucket { bucket: bucket.to_owned(), reason })?;
        let dir = root.join(bucket);
        create_dir_all_durable(&dir)?;
        let removed = remove_leftover_temp_files(&dir)?;
        if removed > 0 {
            tracing::info!(bucket, dir = %dir.display(), removed, "removed temp files left by an interrupted write");
        }
        Ok(LocalBucket { bucket: bucket.to_owned(), dir })
    }

    /// The bucket's folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The bucket's name.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }
}

impl ObjectStoreSink for LocalBucket {
    fn put<'a>(&'a self, key: &'a str, body: Bytes, _opts: &'a PutOptions) -> BoxFuture<'a, Result<(), ObjectError>> {
        Box::pin(async move {
            check_local_key(key).map_err(|reason| ObjectError::InvalidKey { key: key.to_owned(), reason })?;
            let dir = self.dir.clone();
            let owned_key = key.to_owned();
            tokio::task::spawn_blocking(move || put_blocking(&dir, &owned_key, &body)).await.map_err(|join| {
                ObjectError::Io { op: "write object", path: self.dir.join(key), source: io::Error::other(join) }
            })?
        })
    }

    fn describe(&self) -> String {
        format!("local folder {}", self.dir.display())
    }
}

/// Writes `body` at `bucket_dir/key` atomically and durably; `key` has passed [`check_local_key`].
fn put_blocking(bucket_dir: &Path, key: &str, body: &[u8]) -> Result<(), ObjectError> {
    let (parents, name) = match key.rsplit_once('/') {
        Some((parents, name)) => (Some(parents), name),
        None => (None, key),
    };
    let mut dir = bucket_dir.to_path_buf();
    for segment in parents.into_iter().flat_map(|p| p.split('/')) {
        let child = dir.join(segment);
        match fs::create_dir(&child) {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
                let meta = fs::metadata(&child).map_err(ObjectError::io("inspect folder", &child))?;
                if !meta.is_dir() {
                    return Err(ObjectError::InvalidKey {
                        key: key.to_owned(),
                        reason: "a parent segment of the key is an existing object",
                    });
                }
            }
            Err(err) => return Err(ObjectError::io("create folder", &child)(err)),
        }
        sync_dir(&dir)?;
        dir = child;
    }

    let tmp = dir.join(format!("{TEMP_PREFIX}{}-{}", *INCARNATION, uuid::Uuid::new_v4().simple()));
    if let Err(err) = write_file_synced(&tmp, body) {
        let _ = fs::remove_file(&tmp);
        return Err(err);
    }
    let target = dir.join(name);
    if let Err(err) = fs::rename(&tmp, &target) {
        let _ = fs::remove_file(&tmp);
        if fs::symlink_metadata(&target).is_ok_and(|meta| meta.is_dir()) {
            return Err(ObjectError::InvalidKey { key: key.to_owned(), reason: "the key names an existing folder" });
        }
        return Err(ObjectError::io("rename into", &target)(err));
    }
    sync_dir(&dir)
}

fn write_file_synced(path: &Path, body: &[u8]) -> Result<(), ObjectError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(ObjectError::io("create temp file", path))?;
    file.write_all(body).map_err(ObjectError::io("write temp file", path))?;
    file.sync_all().map_err(ObjectError::io("fsync temp file", path))
}

/// Makes entry changes (create, rename, unlink) in `dir` durable.
fn sync_dir(dir: &Path) -> Result<(), ObjectError> {
    File::open(dir).and_then(|f| f.sync_all()).map_err(ObjectError::io("fsync folder", dir))
}

/// `create_dir_all`, fsyncing the parent of every folder it creates.
fn create_dir_all_durable(path: &Path) -> Result<(), ObjectError> {
    let mut missing = Vec::new();
    let mut cur = path;
    loop {
        match fs::metadata(cur) {
            Ok(meta) if meta.is_dir() => break,
            Ok(_) => {
                return Err(ObjectError::Io {
                    op: "create folder",
                    path: cur.to_path_buf(),
                    source: io::Error::new(io::ErrorKind::NotADirectory, "an existing file is in the way"),
                });
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                missing.push(cur);
                match cur.parent() {
                    Some(parent) if !parent.as_os_str().is_empty() => cur = parent,
                    _ => break,
                }
            }
            Err(err) => return Err(ObjectError::io("inspect folder", cur)(err)),
        }
    }
    for dir in missing.into_iter().rev() {
        match fs::create_dir(dir) {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => {}
            Err(err) => return Err(ObjectError::io("create folder", dir)(err)),
        }
        let parent = match dir.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        sync_dir(parent)?;
    }
    Ok(())
}

/// Removes temp files of earlier incarnations under `dir` (recursively, not following symbolic links);
/// returns how many.
fn remove_leftover_temp_files(dir: &Path) -> Result<usize, ObjectError> {
    let own_prefix = format!("{TEMP_PREFIX}{}-", *INCARNATION);
    let mut removed = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(folder) = stack.pop() {
        let entries = match fs::read_dir(&folder) {
            Ok(entries) => entries,
            Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
            Err(err) => return Err(ObjectError::io("list folder", &folder)(err)),
        };
        let mut removed_here = false;
        for entry in entries {
            let entry = entry.map_err(ObjectError::io("list folder", &folder))?;
            let file_type = entry.file_type().map_err(ObjectError::io("inspect", entry.path()))?;
            if file_type.is_dir() {
                stack.push(entry.path());
                continue;
            }
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if file_type.is_file() && name.starts_with(TEMP_PREFIX) && !name.starts_with(&own_prefix) {
                match fs::remove_file(entry.path()) {
                    Ok(()) => {
                        removed += 1;
                        removed_here = true;
                    }
                    Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                    Err(err) => return Err(ObjectError::io("remove temp file", entry.path())(err)),
                }
            }
        }
        if removed_here {
            sync_dir(&folder)?;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> PutOptions {
        PutOptions::default()
    }

    /// Every file and folder under `root`, relative, sorted.
    fn tree(root: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for entry in fs::read_dir(&dir).expect("read_dir") {
                let path = entry.expect("entry").path();
                let rel = path.strip_prefix(root).expect("under root").to_string_lossy().into_owned();
                if path.is_dir() {
                    out.push(format!("{rel}/"));
                    stack.push(path);
                } else {
                    out.push(rel);
                }
            }
        }
        out.sort();
        out
    }

    #[tokio::test]
    async fn put_overwrite_and_read_back() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let bucket = LocalBucket::new(tmp.path().join("buckets"), "my-bucket").expect("open");
        bucket.put("a.txt", Bytes::from_static(b"first"), &opts()).await.expect("put");
        assert_eq!(fs::read(tmp.path().join("buckets/my-bucket/a.txt")).expect("read"), b"first");
        bucket.put("a.txt", Bytes::from_static(b"second, longer"), &opts()).await.expect("overwrite");
        assert_eq!(fs::read(tmp.path().join("buckets/my-bucket/a.txt")).expect("read"), b"second, longer");
        bucket.put("empty", Bytes::new(), &opts()).await.expect("empty object");
        assert_eq!(fs::read(tmp.path().join("buckets/my-bucket/empty")).expect("read"), b"");
        assert_eq!(
            tree(tmp.path()),
            ["buckets/", "buckets/my-bucket/", "buckets/my-bucket/a.txt", "buckets/my-bucket/empty"]
        );
        assert_eq!(bucket.describe(), format!("local folder {}", tmp.path().join("buckets/my-bucket").display()));
    }

    #[tokio::test]
    async fn creates_nested_folders_and_leaves_no_temp_files() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let bucket = LocalBucket::new(tmp.path().to_path_buf(), "b").expect("open");
        let key = "logs/2024/05/06/07/stream-1-2024-05-06-07-08-09-uuid.gz";
        bucket.put(key, Bytes::from_static(b"\x1f\x8b"), &opts()).await.expect("put");
        bucket.put("logs/2024/05/06/08/other", Bytes::from_static(b"x"), &opts()).await.expect("put");
        assert_eq!(fs::read(tmp.path().join("b").join(key)).expect("read"), b"\x1f\x8b");
        assert_eq!(
            tree(tmp.path()),
            [
                "b/",
                "b/logs/",
                "b/logs/2024/",
                "b/logs/2024/05/",
                "b/logs/2024/05/06/",
                "b/logs/2024/05/06/07/",
                "b/logs/2024/05/06/07/stream-1-2024-05-06-07-08-09-uuid.gz",
                "b/logs/2024/05/06/08/",
                "b/logs/2024/05/06/08/other",
            ]
        );
    }

    #[tokio::test]
    async fn rejects_invalid_keys_without_writing_anything() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().join("data/buckets");
        let bucket = LocalBucket::new(root, "b").expect("open");
        let before = tree(tmp.path());
        let long_segment = format!("a/{}", "x".repeat(256));
        let long_key = ["k"; 600].join("/");
        let keys = [
            "",
            "/etc/passwd",
            "../escape",
            "../../../escape",
            "a/../../escape",
            "a/./b",
            ".",
            "..",
            "a//b",
            "a/",
            "nul\0",
            "line\nfeed",
            "tab\there",
            "esc\u{1b}",
            long_segment.as_str(),
            long_key.as_str(),
            ".spillway-tmp-0-0",
            "a/.spillway-tmp-x",
        ];
        for key in keys {
            let err = bucket.put(key, Bytes::from_static(b"x"), &opts()).await.expect_err(key);
            assert!(matches!(err, ObjectError::InvalidKey { .. }), "{key:?}: {err}");
            assert!(!err.is_retryable(), "{key:?}");
            assert_eq!(err.firehose_code(), "S3.InvalidKey");
        }
        assert_eq!(tree(tmp.path()), before);
        assert_eq!(before, ["data/", "data/buckets/", "data/buckets/b/"]);
    }

    #[tokio::test]
    async fn keys_colliding_with_the_tree_are_invalid() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let bucket = LocalBucket::new(tmp.path().to_path_buf(), "b").expect("open");
        bucket.put("a/b", Bytes::from_static(b"object"), &opts()).await.expect("put");
        let err = bucket.put("a/b/c", Bytes::from_static(b"x"), &opts()).await.expect_err("under an object");
        assert!(matches!(err, ObjectError::InvalidKey { .. }), "{err}");
        let err = bucket.put("a", Bytes::from_static(b"x"), &opts()).await.expect_err("over a folder");
        assert!(matches!(err, ObjectError::InvalidKey { .. }), "{err}");
        assert_eq!(tree(tmp.path()), ["b/", "b/a/", "b/a/b"]);
        assert_eq!(fs::read(tmp.path().join("b/a/b")).expect("read"), b"object");
    }

    #[test]
    fn rejects_invalid_bucket_names() {
        let tmp = tempfile::tempdir().expect("tempdir");
        for bucket in ["", "..", "a/b", "../x", "nul\0"] {
            let err = LocalBucket::new(tmp.path().to_path_buf(), bucket).expect_err(bucket);
            assert!(matches!(err, ObjectError::InvalidBucket { .. }), "{bucket:?}: {err}");
            assert!(!err.is_retryable());
        }
        assert!(tree(tmp.path()).is_empty());
    }

    #[tokio::test]
    async fn leftover_temp_files_are_not_objects_and_are_cleaned_on_open() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().to_path_buf();
        let bucket = LocalBucket::new(root.clone(), "b").expect("open");
        bucket.put("2024/05/obj", Bytes::from_static(b"whole"), &opts()).await.expect("put");
        // A crash of an earlier process mid-write: a temp file beside the object, and one in the bucket root.
        let torn = root.join("b/2024/05/.spillway-tmp-00000000000000000000000000000000-1");
        fs::write(&torn, b"wh").expect("write torn");
        fs::write(root.join("b/.spillway-tmp-dead-2"), b"").expect("write torn");
        // Not an object: no valid key names it.
        let err = bucket.put(".spillway-tmp-dead-2", Bytes::new(), &opts()).await.expect_err("reserved");
        assert!(matches!(err, ObjectError::InvalidKey { .. }));
        // A temp file of this very process (a write in flight in another LocalBucket) is left alone.
        let live = root.join(format!("b/2024/{TEMP_PREFIX}{}-3", *INCARNATION));
        fs::write(&live, b"in flight").expect("write live");

        drop(bucket);
        let reopened = LocalBucket::new(root.clone(), "b").expect("reopen");
        assert!(!torn.exists());
        assert!(live.exists());
        fs::remove_file(&live).expect("remove live");
        assert_eq!(tree(&root), ["b/", "b/2024/", "b/2024/05/", "b/2024/05/obj"]);
        assert_eq!(fs::read(root.join("b/2024/05/obj")).expect("read"), b"whole");
        reopened.put("2024/05/obj", Bytes::from_static(b"again"), &opts()).await.expect("rewrite");
        assert_eq!(fs::read(root.join("b/2024/05/obj")).expect("read"), b"again");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_puts_of_different_keys() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let bucket = std::sync::Arc::new(LocalBucket::new(tmp.path().to_path_buf(), "b").expect("open"));
        let mut tasks = Vec::new();
        for i in 0..32u32 {
            let bucket = std::sync::Arc::clone(&bucket);
            tasks.push(tokio::spawn(async move {
                // Shared new folders: every task races to create `p/q/<i % 4>`.
                let key = format!("p/q/{}/obj-{i}", i % 4);
                let body = Bytes::from(i.to_le_bytes().repeat(1000));
                bucket.put(&key, body, &PutOptions::default()).await
            }));
        }
        for task in tasks {
            task.await.expect("join").expect("put");
        }
        for i in 0..32u32 {
            let path = tmp.path().join(format!("b/p/q/{}/obj-{i}", i % 4));
            assert_eq!(fs::read(path).expect("read"), i.to_le_bytes().repeat(1000));
        }
        assert!(tree(tmp.path()).iter().all(|p| !p.contains(TEMP_PREFIX)));
        assert_eq!(tree(tmp.path()).len(), 3 + 4 + 32);
    }

    #[tokio::test]
    async fn concurrent_overwrites_of_one_key_leave_one_whole_object() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let bucket = std::sync::Arc::new(LocalBucket::new(tmp.path().to_path_buf(), "b").expect("open"));
        let bodies: Vec<Vec<u8>> = (0..8u8).map(|i| vec![i; 64 * 1024]).collect();
        let mut tasks = Vec::new();
        for body in bodies.clone() {
            let bucket = std::sync::Arc::clone(&bucket);
            tasks.push(tokio::spawn(async move { bucket.put("k", Bytes::from(body), &PutOptions::default()).await }));
        }
        for task in tasks {
            task.await.expect("join").expect("put");
        }
        let got = fs::read(tmp.path().join("b/k")).expect("read");
        assert!(bodies.contains(&got));
        assert_eq!(tree(tmp.path()), ["b/", "b/k"]);
    }
}
