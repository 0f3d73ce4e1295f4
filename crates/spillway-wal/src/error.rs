//! Error types, one enum per operation.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use crate::Lsn;

/// Failure of [`crate::Wal::open`].
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The options cannot describe a working log (e.g. a zero segment size).
    #[error("invalid wal options: {0}")]
    InvalidOptions(String),
    /// An I/O operation on `path` failed.
    #[error("i/o error on {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Another `Wal` (in this or another process) holds the directory lock.
    #[error("wal directory {} is locked by another instance", dir.display())]
    Locked { dir: PathBuf },
    /// A segment header (or `wal.id`) is unreadable or belongs to another log.
    #[error("bad header in {}: {reason}", path.display())]
    BadHeader { path: PathBuf, reason: String },
    /// Committed data is damaged or missing; the log refuses to guess.
    #[error("corrupt wal segment {} at offset {offset}: {reason}", segment.display())]
    Corrupt { segment: PathBuf, offset: u64, reason: String },
    /// `acks.json` is unreadable or belongs to another log.
    #[error("bad acks file {}: {reason}", path.display())]
    BadAcks { path: PathBuf, reason: String },
}

impl OpenError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> OpenError {
        let path = path.into();
        move |source| OpenError::Io { path, source }
    }
}

/// Failure of [`crate::Wal::append`]; nothing was made durable.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AppendError {
    /// The segment files would exceed `WalOptions::max_bytes`; retry after acks free space.
    #[error("wal quota exceeded: {used} of {max} bytes in use")]
    QuotaExceeded { used: u64, max: u64 },
    /// The device reported ENOSPC or EDQUOT; the partial write was rolled back.
    #[error("no space left for the wal")]
    NoSpace,
    /// A write or fsync failed, or the log is in the failed state.
    #[error("wal write failed")]
    Io(#[source] Arc<io::Error>),
    /// The payload is larger than [`crate::MAX_PAYLOAD`], or could not fit within
    /// `max_bytes` even if the log were empty.
    #[error("payload of {len} bytes exceeds the maximum of {max} bytes")]
    TooLarge { len: usize, max: usize },
    /// The tag was retired; its entries would never be read.
    #[error("tag {tag} is retired")]
    Retired { tag: u64 },
    /// The log was closed.
    #[error("wal is closed")]
    Closed,
}

impl AppendError {
    /// Whether retrying the same append later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, AppendError::QuotaExceeded { .. } | AppendError::NoSpace)
    }

    /// Maps a write/fsync error: out-of-space conditions become [`AppendError::NoSpace`].
    pub(crate) fn from_io(err: io::Error) -> AppendError {
        let no_space =
            err.kind() == io::ErrorKind::StorageFull || matches!(err.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT));
        if no_space { AppendError::NoSpace } else { AppendError::Io(Arc::new(err)) }
    }

    /// The error returned once the log is in the failed state.
    pub(crate) fn failed() -> AppendError {
        AppendError::Io(Arc::new(io::Error::other("wal is in the failed state after an unrecoverable write error")))
    }
}

/// Failure of [`crate::Wal::ack`] or [`crate::Wal::retire`].
#[derive(Debug, thiserror::Error)]
pub enum AckError {
    /// Acknowledging lsns that were never committed would drop future entries.
    #[error("cannot ack tag {tag} up to lsn {upto}: next lsn is {next_lsn}")]
    BeyondEnd { tag: u64, upto: Lsn, next_lsn: Lsn },
    /// Persisting the acks file or deleting a segment failed.
    #[error("i/o error on {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Failure while reading entries back.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("i/o error on {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A committed frame failed verification (bit rot or external modification).
    #[error("corrupt wal segment {} at offset {offset}: {reason}", segment.display())]
    Corrupt { segment: PathBuf, offset: u64, reason: String },
}
