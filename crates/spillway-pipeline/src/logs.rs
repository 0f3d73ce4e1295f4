//! Error logging of `CloudWatchLoggingOptions`: the events Firehose would put to CloudWatch Logs,
//! written as JSON lines to `<data-dir>/logs/<DeliveryStreamName>.jsonl` and to stderr.
//!
//! Firehose documents no exact event schema (reference §18.1: "fields such as
//! `deliveryStreamARN`, `destination`, `deliveryStreamVersionId`, `message`, `errorCode`"). Each line
//! here is one [`LogEvent`]: those fields, plus what CloudWatch Logs itself would add (the event
//! `timestamp`, `logGroupName`, `logStreamName`) and what makes a line useful without its
//! neighbours (`deliveryStreamName`, the Lambda `processor`, `recordCount`, `attemptsMade`).
//!
//! Defaults follow the console: an enabled option without names logs to the group
//! `/aws/kinesisfirehose/<stream>` and the log stream `DestinationDelivery` (`BackupDelivery` for the
//! backup lane, as newer consoles name them). Streams whose options are absent or disabled log
//! nothing here (their errors still reach the server log through `tracing`).
//!
//! Invariants:
//! - logging never fails or blocks delivery: write errors are reported through `tracing` once and
//!   the event is dropped (CloudWatch logging is best effort in Firehose too, and not fsynced here);
//! - at most [`EVENTS_PER_SECOND`] events per stream and second (Firehose samples under high error
//!   rates); the next written event says how many were left out (`suppressedEvents`);
//! - a file grows to [`MAX_FILE_BYTES`], then becomes `<name>.jsonl.1` (replacing the previous one).

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Events written per stream and second; more are counted and left out.
pub const EVENTS_PER_SECOND: u32 = 20;
/// Size at which a stream's log file is rotated.
pub const MAX_FILE_BYTES: u64 = 64 << 20;
/// Log stream of the destination lane when the options name none.
pub const DESTINATION_DELIVERY: &str = "DestinationDelivery";
/// Log stream of the backup lane when the options name none.
pub const BACKUP_DELIVERY: &str = "BackupDelivery";

/// Where a lane's events go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogTarget {
    pub group: String,
    pub stream: String,
}

impl LogTarget {
    /// The target of `CloudWatchLoggingOptions`, or None when logging is disabled or absent.
    pub fn from_options(options: Option<&Value>, delivery_stream: &str, default_stream: &str) -> Option<Self> {
        let o = options?;
        if o.get("Enabled").and_then(Value::as_bool) != Some(true) {
            return None;
        }
        let name = |k: &str| o.get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
        Some(Self {
            group: name("LogGroupName")
                .map_or_else(|| format!("/aws/kinesisfirehose/{delivery_stream}"), str::to_string),
            stream: name("LogStreamName").unwrap_or(default_stream).to_string(),
        })
    }
}

/// The logging of one stream (part of its plan).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamLogging {
    /// Destination delivery, processing and conversion errors.
    pub main: Option<LogTarget>,
    /// Errors of the backup lane (`S3BackupConfiguration`'s own options, else the destination's).
    pub backup: Option<LogTarget>,
}

impl StreamLogging {
    /// From a stored destination configuration (the Create member's JSON).
    pub fn from_destination(destination: &Value, delivery_stream: &str) -> Self {
        let main =
            LogTarget::from_options(destination.get("CloudWatchLoggingOptions"), delivery_stream, DESTINATION_DELIVERY);
        let backup = destination
            .pointer("/S3BackupConfiguration/CloudWatchLoggingOptions")
            .and_then(|o| LogTarget::from_options(Some(o), delivery_stream, BACKUP_DELIVERY))
            .or_else(|| main.as_ref().map(|m| LogTarget { group: m.group.clone(), stream: BACKUP_DELIVERY.into() }));
        Self { main, backup }
    }

    pub fn is_enabled(&self) -> bool {
        self.main.is_some() || self.backup.is_some()
    }
}

/// One line of a log file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogEvent {
    /// Milliseconds since the epoch.
    pub timestamp: i64,
    pub log_group_name: String,
    pub log_stream_name: String,
    pub delivery_stream_name: String,
    #[serde(rename = "deliveryStreamARN")]
    pub delivery_stream_arn: String,
    pub delivery_stream_version_id: String,
    /// The ARN of what failed: the bucket, the catalog, the function's destination.
    pub destination: String,
    pub error_code: String,
    pub message: String,
    /// The Lambda function of processing errors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processor: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_count: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts_made: Option<u32>,
    /// Events of this stream left out since the previous line (rate limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suppressed_events: Option<u64>,
}

/// What went wrong, as the supervisor knows it.
#[derive(Debug, Clone, Default)]
pub struct ErrorEvent<'a> {
    pub error_code: &'a str,
    pub message: &'a str,
    pub destination: &'a str,
    pub processor: Option<&'a str>,
    pub record_count: Option<u64>,
    pub attempts_made: Option<u32>,
}

struct LogFile {
    file: Option<File>,
    len: u64,
    window: Instant,
    in_window: u32,
    suppressed: u64,
}

/// The log files of every stream (one per server).
pub struct ErrorLogs {
    dir: PathBuf,
    stderr: bool,
    files: Mutex<HashMap<String, LogFile>>,
}

impl ErrorLogs {
    /// Logs under `dir` (created on the first event); `stderr` also prints every line there.
    pub fn new(dir: impl Into<PathBuf>, stderr: bool) -> Self {
        Self { dir: dir.into(), stderr, files: Mutex::new(HashMap::new()) }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file of a delivery stream's events.
    pub fn path_of(dir: &Path, delivery_stream: &str) -> PathBuf {
        dir.join(format!("{delivery_stream}.jsonl"))
    }

    /// Writes one event of `stream` (nothing when its lane does not log).
    pub fn write(&self, stream: &StreamLog, backup: bool, event: &ErrorEvent<'_>) {
        let target = if backup { &stream.logging.backup } else { &stream.logging.main };
        let Some(target) = target else { return };
        let mut files = self.files.lock();
        let f = files.entry(stream.name.clone()).or_insert_with(|| LogFile {
            file: None,
            len: 0,
            window: Instant::now(),
            in_window: 0,
            suppressed: 0,
        });
        if f.window.elapsed().as_secs() >= 1 {
            f.window = Instant::now();
            f.in_window = 0;
        }
        if f.in_window >= EVENTS_PER_SECOND {
            f.suppressed += 1;
            return;
        }
        f.in_window += 1;
        let line = LogEvent {
            timestamp: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64),
            log_group_name: target.group.clone(),
            log_stream_name: target.stream.clone(),
            delivery_stream_name: stream.name.clone(),
            delivery_stream_arn: stream.arn.clone(),
            delivery_stream_version_id: stream.version_id.to_string(),
            destination: event.destination.to_string(),
            error_code: event.error_code.to_string(),
            message: event.message.to_string(),
            processor: event.processor.map(str::to_string),
            record_count: event.record_count,
            attempts_made: event.attempts_made,
            suppressed_events: (f.suppressed > 0).then_some(f.suppressed),
        };
        f.suppressed = 0;
        let Ok(mut text) = serde_json::to_string(&line) else { return };
        text.push('\n');
        if self.stderr {
            let _ = std::io::stderr().lock().write_all(text.as_bytes());
        }
        if let Err(e) = self.append(&stream.name, f, text.as_bytes()) {
            f.file = None;
            tracing::warn!(stream = %stream.name, error = %e, dir = %self.dir.display(), "cannot write the error log");
        }
    }

    fn append(&self, name: &str, f: &mut LogFile, line: &[u8]) -> std::io::Result<()> {
        let path = Self::path_of(&self.dir, name);
        if f.file.is_some() && f.len + line.len() as u64 > MAX_FILE_BYTES {
            f.file = None;
            std::fs::rename(&path, self.dir.join(format!("{name}.jsonl.1")))?;
        }
        if f.file.is_none() {
            std::fs::create_dir_all(&self.dir)?;
            let file = OpenOptions::new().create(true).append(true).open(&path)?;
            f.len = file.metadata()?.len();
            f.file = Some(file);
        }
        if let Some(file) = f.file.as_mut() {
            file.write_all(line)?;
            f.len += line.len() as u64;
        }
        Ok(())
    }
}

/// What a stream's events carry about the stream.
#[derive(Debug, Clone, Default)]
pub struct StreamLog {
    pub name: String,
    pub arn: String,
    pub version_id: u64,
    pub logging: StreamLogging,
}

/// A stream's handle on the logs: cheap to clone into jobs.
#[derive(Clone)]
pub struct StreamLogger {
    pub logs: Arc<ErrorLogs>,
    pub stream: Arc<StreamLog>,
}

impl StreamLogger {
    pub fn error(&self, backup: bool, event: &ErrorEvent<'_>) {
        if self.stream.logging.is_enabled() {
            self.logs.write(&self.stream, backup, event);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn stream(logging: StreamLogging) -> StreamLog {
        StreamLog {
            name: "orders".into(),
            arn: "arn:aws:firehose:us-east-1:123456789012:deliverystream/orders".into(),
            version_id: 3,
            logging,
        }
    }

    fn read(dir: &Path) -> Vec<LogEvent> {
        std::fs::read_to_string(ErrorLogs::path_of(dir, "orders"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn options_default_like_the_console() {
        let d = json!({"CloudWatchLoggingOptions": {"Enabled": true}});
        let l = StreamLogging::from_destination(&d, "orders");
        assert_eq!(
            l.main,
            Some(LogTarget { group: "/aws/kinesisfirehose/orders".into(), stream: "DestinationDelivery".into() })
        );
        assert_eq!(l.backup.as_ref().map(|b| b.stream.as_str()), Some("BackupDelivery"));
        let d = json!({"CloudWatchLoggingOptions": {"Enabled": true, "LogGroupName": "g", "LogStreamName": "S3Delivery"},
            "S3BackupConfiguration": {"CloudWatchLoggingOptions": {"Enabled": true, "LogGroupName": "b", "LogStreamName": "bs"}}});
        let l = StreamLogging::from_destination(&d, "orders");
        assert_eq!(l.main, Some(LogTarget { group: "g".into(), stream: "S3Delivery".into() }));
        assert_eq!(l.backup, Some(LogTarget { group: "b".into(), stream: "bs".into() }));
        for off in [json!({}), json!({"CloudWatchLoggingOptions": {"Enabled": false, "LogGroupName": "g"}})] {
            assert!(!StreamLogging::from_destination(&off, "orders").is_enabled());
        }
    }

    #[test]
    fn events_are_json_lines_with_their_group_and_stream() {
        let dir = tempfile::tempdir().unwrap();
        let logs = ErrorLogs::new(dir.path().join("logs"), false);
        let logging =
            StreamLogging::from_destination(&json!({"CloudWatchLoggingOptions": {"Enabled": true}}), "orders");
        let s = stream(logging);
        let event = ErrorEvent {
            error_code: "Lambda.FunctionError",
            message: "The Lambda function was successfully invoked but it returned an error result.",
            destination: "arn:aws:s3:::b",
            processor: Some("arn:aws:lambda:us-east-1:123456789012:function:f"),
            record_count: Some(7),
            attempts_made: None,
        };
        logs.write(&s, false, &event);
        logs.write(&s, true, &ErrorEvent { error_code: "S3.AccessDenied", ..event.clone() });
        let events = read(&dir.path().join("logs"));
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].log_group_name, "/aws/kinesisfirehose/orders");
        assert_eq!(events[0].log_stream_name, "DestinationDelivery");
        assert_eq!(events[0].error_code, "Lambda.FunctionError");
        assert_eq!(events[0].record_count, Some(7));
        assert_eq!(events[0].delivery_stream_version_id, "3");
        assert_eq!(events[1].log_stream_name, "BackupDelivery");
        let raw = std::fs::read_to_string(ErrorLogs::path_of(&dir.path().join("logs"), "orders")).unwrap();
        assert!(raw.starts_with("{\"timestamp\":"), "{raw}");
        assert!(raw.contains("\"deliveryStreamARN\":\"arn:aws:firehose:"), "{raw}");
    }

    #[test]
    fn a_burst_is_sampled_and_the_next_line_counts_what_was_left_out() {
        let dir = tempfile::tempdir().unwrap();
        let logs = ErrorLogs::new(dir.path(), false);
        let s =
            stream(StreamLogging::from_destination(&json!({"CloudWatchLoggingOptions": {"Enabled": true}}), "orders"));
        let event = ErrorEvent { error_code: "S3.SlowDown", message: "m", destination: "d", ..ErrorEvent::default() };
        for _ in 0..(EVENTS_PER_SECOND + 5) {
            logs.write(&s, false, &event);
        }
        assert_eq!(read(dir.path()).len(), EVENTS_PER_SECOND as usize);
        // A new window: the first line says how many were left out.
        let earlier = Instant::now().checked_sub(std::time::Duration::from_secs(2)).unwrap();
        logs.files.lock().get_mut("orders").unwrap().window = earlier;
        logs.write(&s, false, &event);
        let events = read(dir.path());
        assert_eq!(events.last().unwrap().suppressed_events, Some(5));
    }

    #[test]
    fn disabled_streams_write_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let logger = StreamLogger {
            logs: Arc::new(ErrorLogs::new(dir.path(), false)),
            stream: Arc::new(stream(StreamLogging::default())),
        };
        logger.error(false, &ErrorEvent { error_code: "x", ..ErrorEvent::default() });
        assert!(!ErrorLogs::path_of(dir.path(), "orders").exists());
    }
}
