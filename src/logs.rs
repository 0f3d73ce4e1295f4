//! `spillway logs`: reads the error events streams with `CloudWatchLoggingOptions` enabled write
//! under `<data-dir>/logs/` (one JSON line each, format in `spillway_pipeline::logs`).
//!
//! It reads the files directly, so it works with the server running or stopped. Output is one line
//! per event (`TIME GROUP STREAM CODE: MESSAGE`), or the stored JSON lines with `--json`, oldest
//! first across streams; `--follow` keeps printing new events as they are written.

use crate::config::Config;
use anyhow::Context;
use clap::Args;
use spillway_pipeline::logs::LogEvent;
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Args)]
pub struct LogsArgs {
    /// Only the events of this delivery stream.
    stream: Option<String>,
    /// Where the server keeps its data [default: the configuration's, else ./spillway-data].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// The server's configuration file (for its data directory).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Only events of this log group.
    #[arg(long)]
    log_group_name: Option<String>,
    /// Only events of this log stream (DestinationDelivery, BackupDelivery, ...).
    #[arg(long)]
    log_stream_name: Option<String>,
    /// Only events of the last DURATION (e.g. 10m, 2h).
    #[arg(long, value_parser = humantime::parse_duration)]
    since: Option<Duration>,
    /// Print the stored JSON lines instead of text.
    #[arg(long)]
    json: bool,
    /// Keep printing events as they are written (Ctrl-C stops).
    #[arg(long, short)]
    follow: bool,
}

struct Filter {
    stream: Option<String>,
    group: Option<String>,
    log_stream: Option<String>,
    since_ms: i64,
}

impl Filter {
    fn keeps(&self, e: &LogEvent) -> bool {
        self.stream.as_ref().is_none_or(|s| *s == e.delivery_stream_name)
            && self.group.as_ref().is_none_or(|g| *g == e.log_group_name)
            && self.log_stream.as_ref().is_none_or(|s| *s == e.log_stream_name)
            && e.timestamp >= self.since_ms
    }
}

pub fn run(args: LogsArgs) -> anyhow::Result<()> {
    let config = match &args.config {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    let data_dir = args.data_dir.or(config.server.data_dir.clone()).unwrap_or_else(|| PathBuf::from("./spillway-data"));
    let dir = data_dir.join("logs");
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
    let filter = Filter {
        stream: args.stream,
        group: args.log_group_name,
        log_stream: args.log_stream_name,
        since_ms: args.since.map_or(i64::MIN, |d| now_ms - d.as_millis() as i64),
    };
    let mut offsets: HashMap<PathBuf, u64> = HashMap::new();
    let mut events = Vec::new();
    for path in log_files(&dir, filter.stream.as_deref())? {
        // The rotated file first: it holds the older events.
        let rotated = path.with_extension("jsonl.1");
        if rotated.exists() {
            read_from(&rotated, 0, &filter, &mut events)?;
        }
        let end = read_from(&path, 0, &filter, &mut events)?;
        offsets.insert(path, end);
    }
    events.sort_by_key(|(e, _)| e.timestamp);
    let mut out = std::io::stdout().lock();
    for (e, line) in &events {
        print_event(&mut out, e, line, args.json)?;
    }
    out.flush()?;
    if !args.follow {
        if events.is_empty() && !args.json {
            eprintln!(
                "no error events in {} (streams log there when their CloudWatchLoggingOptions are enabled)",
                dir.display()
            );
        }
        return Ok(());
    }
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let mut new = Vec::new();
        for path in log_files(&dir, filter.stream.as_deref())? {
            let start = offsets.get(&path).copied().unwrap_or(0);
            // A rotation starts the file again.
            let len = std::fs::metadata(&path).map_or(0, |m| m.len());
            let start = if len < start { 0 } else { start };
            let end = read_from(&path, start, &filter, &mut new)?;
            offsets.insert(path, end);
        }
        new.sort_by_key(|(e, _)| e.timestamp);
        for (e, line) in &new {
            print_event(&mut out, e, line, args.json)?;
        }
        out.flush()?;
    }
}

/// The current log files, of one delivery stream or all.
fn log_files(dir: &Path, stream: Option<&str>) -> anyhow::Result<Vec<PathBuf>> {
    if let Some(s) = stream {
        let p = spillway_pipeline::logs::ErrorLogs::path_of(dir, s);
        return Ok(if p.exists() { vec![p] } else { Vec::new() });
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", dir.display())),
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    files.sort();
    Ok(files)
}

/// Reads complete lines of `path` from `start`; returns where the next read starts (a line still
/// being written is left for then).
fn read_from(path: &Path, start: u64, filter: &Filter, out: &mut Vec<(LogEvent, String)>) -> anyhow::Result<u64> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(start),
        Err(e) => return Err(e).with_context(|| format!("cannot open {}", path.display())),
    };
    file.seek(SeekFrom::Start(start))?;
    let mut reader = BufReader::new(file);
    let mut pos = start;
    let mut line = String::new();
    loop {
        line.clear();
        let n = reader.read_line(&mut line)?;
        if n == 0 || !line.ends_with('\n') {
            return Ok(pos);
        }
        pos += n as u64;
        let text = line.trim_end();
        match serde_json::from_str::<LogEvent>(text) {
            Ok(e) if filter.keeps(&e) => out.push((e, text.to_string())),
            Ok(_) => {}
            Err(e) => eprintln!("{}: skipping a line that is not an event: {e}", path.display()),
        }
    }
}

fn print_event(out: &mut impl Write, e: &LogEvent, line: &str, json: bool) -> std::io::Result<()> {
    if json {
        return writeln!(out, "{line}");
    }
    writeln!(out, "{}", text_line(e))
}

/// `2026-11-22T10:04:31.123Z /aws/kinesisfirehose/x DestinationDelivery [x] CODE: MESSAGE (N records, attempt A)`
fn text_line(e: &LogEvent) -> String {
    let time = chrono::DateTime::from_timestamp_millis(e.timestamp)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_else(|| e.timestamp.to_string());
    let mut details = Vec::new();
    if let Some(n) = e.record_count {
        details.push(format!("{n} record{}", if n == 1 { "" } else { "s" }));
    }
    if let Some(a) = e.attempts_made {
        details.push(format!("attempts {a}"));
    }
    if let Some(p) = &e.processor {
        details.push(format!("processor {p}"));
    }
    if let Some(s) = e.suppressed_events {
        details.push(format!("{s} earlier events left out"));
    }
    let details = if details.is_empty() { String::new() } else { format!(" ({})", details.join(", ")) };
    format!(
        "{time} {} {} [{}] {}: {}{details}",
        e.log_group_name, e.log_stream_name, e.delivery_stream_name, e.error_code, e.message
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(stream: &str, ts: i64, code: &str) -> String {
        serde_json::to_string(&LogEvent {
            timestamp: ts,
            log_group_name: format!("/aws/kinesisfirehose/{stream}"),
            log_stream_name: "DestinationDelivery".into(),
            delivery_stream_name: stream.into(),
            delivery_stream_arn: format!("arn:aws:firehose:us-east-1:000000000000:deliverystream/{stream}"),
            delivery_stream_version_id: "1".into(),
            destination: "arn:aws:s3:::b".into(),
            error_code: code.into(),
            message: "m".into(),
            processor: None,
            record_count: Some(3),
            attempts_made: Some(1),
            suppressed_events: None,
        })
        .unwrap()
    }

    #[test]
    fn reads_complete_lines_and_resumes_after_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.jsonl");
        let partial = event("a", 2, "S3.SlowDown");
        std::fs::write(&path, format!("{}\n{}", event("a", 1, "S3.AccessDenied"), &partial[..10])).unwrap();
        let filter = Filter { stream: None, group: None, log_stream: None, since_ms: i64::MIN };
        let mut out = Vec::new();
        let end = read_from(&path, 0, &filter, &mut out).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].0.error_code, "S3.AccessDenied");
        std::fs::write(&path, format!("{}\n{partial}\n", event("a", 1, "S3.AccessDenied"))).unwrap();
        let mut more = Vec::new();
        read_from(&path, end, &filter, &mut more).unwrap();
        assert_eq!(more.len(), 1);
        assert_eq!(more[0].0.error_code, "S3.SlowDown");
    }

    #[test]
    fn filters_and_text() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.jsonl");
        std::fs::write(&path, format!("{}\n{}\n", event("a", 1_000, "S3.AccessDenied"), event("a", 5_000, "X")))
            .unwrap();
        let filter =
            Filter { stream: None, group: Some("/aws/kinesisfirehose/a".into()), log_stream: None, since_ms: 2_000 };
        let mut out = Vec::new();
        read_from(&path, 0, &filter, &mut out).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(
            text_line(&out[0].0),
            "1970-01-01T00:00:05.000Z /aws/kinesisfirehose/a DestinationDelivery [a] X: m (3 records, attempts 1)"
        );
        let other = Filter { stream: None, group: Some("/other".into()), log_stream: None, since_ms: 0 };
        let mut none = Vec::new();
        read_from(&path, 0, &other, &mut none).unwrap();
        assert!(none.is_empty());
    }
}
