//! Small filesystem helpers: directory fsync, atomic replace, the directory lock.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Write};
use std::path::Path;

use crate::error::OpenError;

/// Name of the lock file inside the WAL directory.
pub(crate) const LOCK_FILE: &str = "LOCK";

/// Makes directory entry changes (create, rename, unlink) in `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Replaces `dir/name` with `data` crash-safely: write `name.tmp`, fsync, rename, fsync dir.
pub(crate) fn atomic_write(dir: &Path, name: &str, data: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    {
        let mut file = File::create(&tmp)?;
        file.write_all(data)?;
        file.sync_all()?;
    }
    fs::rename(&tmp, dir.join(name))?;
    sync_dir(dir)
}

/// Takes an exclusive `flock` on `dir/LOCK`; the lock lives as long as the returned file.
pub(crate) fn lock_dir(dir: &Path) -> Result<File, OpenError> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(OpenError::io(&path))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(OpenError::Locked { dir: dir.to_path_buf() }),
        Err(TryLockError::Error(source)) => Err(OpenError::Io { path, source }),
    }
}
