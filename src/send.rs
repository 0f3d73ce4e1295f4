//! `spillway send`: puts the lines of a file (or stdin) into a delivery stream with PutRecordBatch.
//!
//! One record per line (NDJSON or any text); empty lines are skipped; a line's "\n" or "\r\n" is
//! dropped and each record's Data is the line plus "\n" (unless `--no-newline`), as the seeds'
//! producers send them. The input is streamed: a buffered line reader fills one batch at a time
//! (≤ 500 records, ≤ 4 MiB of data: Firehose's PutRecordBatch limits) and batches are sent one after
//! the other. A record over Firehose's 1,024,000-byte limit is reported, skipped and counted as
//! failed (its bytes are never held in memory beyond the limit).
//!
//! Records answered with an `ErrorCode` are sent again (only those, up to [`RECORD_RETRIES`] times,
//! with exponential backoff); a whole call that fails (connection, HTTP 5xx, ServiceUnavailable,
//! Throttling) is retried with backoff up to [`CALL_RETRIES`] times; any other API error
//! (ResourceNotFoundException, InvalidArgumentException, ...) stops the command.

use crate::client::{self, ApiError, FirehoseClient};
use anyhow::{Context, bail};
use base64::Engine;
use clap::Args;
use serde_json::{Value, json};
use spillway_model::limits::{MAX_BATCH_BYTES, MAX_BATCH_RECORDS, MAX_RECORD_BYTES};
use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How many times records answered with an `ErrorCode` are sent again.
pub const RECORD_RETRIES: u32 = 5;
/// How many times a whole PutRecordBatch call that failed transiently is made again.
pub const CALL_RETRIES: u32 = 6;
/// The first backoff; doubled on every retry.
const BASE_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

#[derive(Args)]
pub struct SendArgs {
    /// The delivery stream to put the records into.
    #[arg(long)]
    pub stream: String,
    /// The file to read, one record per line; `-` or absent: stdin.
    pub file: Option<PathBuf>,
    /// The spillway server.
    #[arg(long, env = "SPILLWAY_ENDPOINT", default_value = client::DEFAULT_ENDPOINT)]
    pub endpoint: String,
    /// Send each line as it is, without appending "\n" to the record's Data.
    #[arg(long)]
    pub no_newline: bool,
}

pub fn run(args: SendArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(send(args))
}

async fn send(args: SendArgs) -> anyhow::Result<()> {
    let client = FirehoseClient::new(&args.endpoint)?;
    let input: Box<dyn BufRead> = match &args.file {
        Some(path) if path.as_os_str() != "-" => {
            let file = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
            Box::new(BufReader::with_capacity(256 * 1024, file))
        }
        _ => Box::new(BufReader::with_capacity(256 * 1024, std::io::stdin())),
    };
    let newline: &[u8] = if args.no_newline { b"" } else { b"\n" };
    let mut lines = LineReader::new(input, MAX_RECORD_BYTES - newline.len());
    let mut batcher = Batcher::new(MAX_BATCH_RECORDS, MAX_BATCH_BYTES);
    let mut stats = Stats::default();
    let mut progress = Progress::new(std::io::stderr().is_terminal());
    let started = Instant::now();

    let mut sender = Sender { client: &client, stream: &args.stream, stats: &mut stats };
    loop {
        let batch = match lines.next_line().context("cannot read the input")? {
            Some(Line::Record(mut data)) => {
                data.extend_from_slice(newline);
                batcher.push(data)
            }
            Some(Line::Oversized { line, bytes }) => {
                progress.clear();
                eprintln!(
                    "line {line}: {} bytes is over Firehose's record limit of {MAX_RECORD_BYTES} bytes; skipped",
                    bytes + newline.len()
                );
                sender.stats.failed += 1;
                None
            }
            None => break,
        };
        if let Some(batch) = batch {
            sender.send(batch, &mut progress, started).await?;
        }
    }
    if !batcher.is_empty() {
        sender.send(batcher.take(), &mut progress, started).await?;
    }
    progress.clear();
    println!(
        "sent {} records ({} bytes) to {} in {:.2} s; {} failed",
        stats.sent,
        stats.bytes,
        args.stream,
        started.elapsed().as_secs_f64(),
        stats.failed
    );
    if stats.failed > 0 {
        bail!("{} records failed", stats.failed);
    }
    Ok(())
}

#[derive(Default, Clone, Copy)]
struct Stats {
    sent: u64,
    bytes: u64,
    failed: u64,
}

struct Sender<'a> {
    client: &'a FirehoseClient,
    stream: &'a str,
    stats: &'a mut Stats,
}

impl Sender<'_> {
    /// [`Sender::send_batch`] with the command's error context, then a progress update.
    async fn send(&mut self, batch: Vec<Vec<u8>>, progress: &mut Progress, started: Instant) -> anyhow::Result<()> {
        let sent_before = self.stats.sent;
        self.send_batch(batch).await.with_context(|| {
            format!("sending to {} at {} stopped after {sent_before} records", self.stream, self.client.endpoint())
        })?;
        progress.update(self.stats, started);
        Ok(())
    }

    /// Puts `records`; retries the ones answered with an `ErrorCode`. Records still failing after
    /// [`RECORD_RETRIES`] retries are reported and counted; an API error that is not transient is
    /// returned.
    async fn send_batch(&mut self, records: Vec<Vec<u8>>) -> anyhow::Result<()> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut pending: Vec<(String, usize)> = records.iter().map(|r| (b64.encode(r), r.len())).collect();
        drop(records);
        let mut last_error = String::new();
        for attempt in 0..=RECORD_RETRIES {
            if attempt > 0 {
                tokio::time::sleep(backoff(attempt)).await;
            }
            let body = json!({
                "DeliveryStreamName": self.stream,
                "Records": pending.iter().map(|(data, _)| json!({"Data": data})).collect::<Vec<_>>(),
            });
            let answer = call_retrying(self.client, "PutRecordBatch", &body).await?;
            let (ok, retry, error) = split_answer(pending, &answer)?;
            for len in ok {
                self.stats.sent += 1;
                self.stats.bytes += len as u64;
            }
            if let Some(error) = error {
                last_error = error;
            }
            pending = retry;
            if pending.is_empty() {
                return Ok(());
            }
        }
        eprintln!("{} records failed after {RECORD_RETRIES} retries: {last_error}", pending.len());
        self.stats.failed += pending.len() as u64;
        Ok(())
    }
}

/// Splits a batch by a PutRecordBatch answer: the lengths of the records put, the records to send
/// again, and the last error the answer gave.
#[allow(clippy::type_complexity)]
fn split_answer(
    pending: Vec<(String, usize)>,
    answer: &Value,
) -> anyhow::Result<(Vec<usize>, Vec<(String, usize)>, Option<String>)> {
    if answer["FailedPutCount"].as_u64().unwrap_or(0) == 0 {
        return Ok((pending.into_iter().map(|(_, len)| len).collect(), Vec::new(), None));
    }
    let responses = answer["RequestResponses"].as_array().map(Vec::as_slice).unwrap_or_default();
    if responses.len() != pending.len() {
        bail!("the server answered {} RequestResponses for {} records", responses.len(), pending.len());
    }
    let (mut ok, mut retry, mut error) = (Vec::new(), Vec::new(), None);
    for (record, response) in pending.into_iter().zip(responses) {
        match response.get("ErrorCode").and_then(Value::as_str) {
            Some(code) => {
                let message = response.get("ErrorMessage").and_then(Value::as_str).unwrap_or("");
                error = Some(format!("{code}: {message}"));
                retry.push(record);
            }
            None => ok.push(record.1),
        }
    }
    Ok((ok, retry, error))
}

/// `client.call`, retried with backoff while the failure is transient (no answer, HTTP 5xx,
/// ServiceUnavailableException, ThrottlingException).
async fn call_retrying(client: &FirehoseClient, operation: &str, body: &Value) -> anyhow::Result<Value> {
    let mut attempt = 0;
    loop {
        match client.call(operation, body).await {
            Ok(answer) => return Ok(answer),
            Err(e) if attempt < CALL_RETRIES && is_transient(&e) => {
                attempt += 1;
                tracing::debug!(error = %e, attempt, "{operation} failed; retrying");
                tokio::time::sleep(backoff(attempt)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

fn is_transient(e: &anyhow::Error) -> bool {
    match e.downcast_ref::<ApiError>() {
        Some(api) => {
            api.status >= 500
                || matches!(api.error_type.as_str(), "ServiceUnavailableException" | "ThrottlingException")
        }
        None => true,
    }
}

/// The wait before retry number `attempt` (1-based): 100 ms, 200 ms, 400 ms, ... at most 5 s.
fn backoff(attempt: u32) -> Duration {
    BASE_BACKOFF.saturating_mul(1 << attempt.saturating_sub(1).min(16)).min(MAX_BACKOFF)
}

/// One line of the input.
#[derive(Debug, PartialEq)]
pub enum Line {
    /// A non-empty line without its "\n" or "\r\n".
    Record(Vec<u8>),
    /// A line longer than the limit (1-based line number, length without its terminator); its
    /// content was skipped.
    Oversized { line: u64, bytes: usize },
}

/// Reads lines without holding more than `max` bytes of one line.
pub struct LineReader<R> {
    inner: R,
    max: usize,
    line_no: u64,
    eof: bool,
}

impl<R: BufRead> LineReader<R> {
    pub fn new(inner: R, max: usize) -> Self {
        LineReader { inner, max, line_no: 0, eof: false }
    }

    #[cfg(test)]
    pub fn at_eof(&self) -> bool {
        self.eof
    }

    /// The next non-empty line; `None` at the end of the input. A final line without "\n" counts.
    pub fn next_line(&mut self) -> std::io::Result<Option<Line>> {
        loop {
            if self.eof {
                return Ok(None);
            }
            let mut buf = Vec::new();
            let mut len = 0usize;
            let mut last = None;
            let mut oversized = false;
            let mut any = false;
            loop {
                let available = match self.inner.fill_buf() {
                    Ok(b) => b,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                };
                if available.is_empty() {
                    self.eof = true;
                    break;
                }
                any = true;
                let (chunk, consumed, end) = match available.iter().position(|&b| b == b'\n') {
                    Some(i) => (&available[..i], i + 1, true),
                    None => (available, available.len(), false),
                };
                len += chunk.len();
                if let Some(&b) = chunk.last() {
                    last = Some(b);
                }
                // Keep one byte more than `max`: it may be the "\r" of a "\r\n".
                if !oversized && buf.len() + chunk.len() > self.max + 1 {
                    oversized = true;
                    buf = Vec::new();
                }
                if !oversized {
                    buf.extend_from_slice(chunk);
                }
                self.inner.consume(consumed);
                if end {
                    break;
                }
            }
            if !any {
                return Ok(None);
            }
            self.line_no += 1;
            if last == Some(b'\r') {
                len -= 1;
                buf.pop();
            }
            if len > self.max {
                return Ok(Some(Line::Oversized { line: self.line_no, bytes: len }));
            }
            if len > 0 {
                return Ok(Some(Line::Record(buf)));
            }
        }
    }
}

/// Groups records into PutRecordBatch calls of at most `max_records` records and `max_bytes` bytes.
pub struct Batcher {
    records: Vec<Vec<u8>>,
    bytes: usize,
    max_records: usize,
    max_bytes: usize,
}

impl Batcher {
    pub fn new(max_records: usize, max_bytes: usize) -> Self {
        Batcher { records: Vec::new(), bytes: 0, max_records, max_bytes }
    }

    /// Adds `record` (at most `max_bytes` long); returns the batch it did not fit in, if any.
    pub fn push(&mut self, record: Vec<u8>) -> Option<Vec<Vec<u8>>> {
        let full = !self.records.is_empty()
            && (self.records.len() >= self.max_records || self.bytes + record.len() > self.max_bytes);
        let batch = full.then(|| self.take());
        self.bytes += record.len();
        self.records.push(record);
        batch
    }

    /// The records gathered so far (possibly none).
    pub fn take(&mut self) -> Vec<Vec<u8>> {
        self.bytes = 0;
        std::mem::take(&mut self.records)
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

/// A `\r` progress line on stderr, only when stderr is a terminal.
struct Progress {
    enabled: bool,
    shown: bool,
    last: Option<Instant>,
}

impl Progress {
    fn new(enabled: bool) -> Self {
        Progress { enabled, shown: false, last: None }
    }

    fn update(&mut self, stats: &Stats, started: Instant) {
        if !self.enabled || self.last.is_some_and(|t| t.elapsed() < Duration::from_millis(200)) {
            return;
        }
        self.last = Some(Instant::now());
        let secs = started.elapsed().as_secs_f64().max(1e-3);
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r\x1b[Ksent {} records ({:.1} MiB), {:.0} records/s; {} failed",
            stats.sent,
            stats.bytes as f64 / (1024.0 * 1024.0),
            stats.sent as f64 / secs,
            stats.failed
        );
        let _ = err.flush();
        self.shown = true;
    }

    fn clear(&mut self) {
        if self.shown {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[K");
            let _ = err.flush();
            self.shown = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(input: &[u8], max: usize) -> Vec<Line> {
        // A tiny buffer, so lines span many `fill_buf` calls.
        let mut reader = LineReader::new(BufReader::with_capacity(3, input), max);
        let mut out = Vec::new();
        while let Some(line) = reader.next_line().unwrap() {
            out.push(line);
        }
        assert!(reader.at_eof());
        out
    }

    fn rec(s: &str) -> Line {
        Line::Record(s.as_bytes().to_vec())
    }

    #[test]
    fn lines_lf_crlf_empty_and_final_line_without_newline() {
        let lines = read_all(b"{\"a\":1}\n\r\n\nsecond line\r\n\n\nlast", 100);
        assert_eq!(lines, vec![rec("{\"a\":1}"), rec("second line"), rec("last")]);
        assert_eq!(read_all(b"only\r\n", 100), vec![rec("only")]);
        assert_eq!(read_all(b"", 100), vec![]);
        assert_eq!(read_all(b"\n\r\n\n", 100), vec![]);
        // A lone "\r" inside a line is content.
        assert_eq!(read_all(b"a\rb\n", 100), vec![rec("a\rb")]);
    }

    #[test]
    fn oversized_lines_are_reported_and_skipped() {
        let mut input = Vec::new();
        input.extend_from_slice(b"ok\n");
        input.extend_from_slice(&[b'x'; 11]);
        input.extend_from_slice(b"\r\n");
        input.extend_from_slice(&[b'y'; 10]);
        input.extend_from_slice(b"\r\n");
        input.extend_from_slice(&[b'z'; 12]);
        let lines = read_all(&input, 10);
        assert_eq!(
            lines,
            vec![
                rec("ok"),
                Line::Oversized { line: 2, bytes: 11 },
                rec("yyyyyyyyyy"),
                Line::Oversized { line: 4, bytes: 12 },
            ]
        );
        // Exactly at the limit is fine, with or without "\r\n".
        assert_eq!(read_all(b"0123456789\r\n0123456789", 10), vec![rec("0123456789"), rec("0123456789")]);
    }

    #[test]
    fn oversized_line_is_not_held_in_memory() {
        let input = vec![b'x'; 5 * MAX_RECORD_BYTES];
        let mut reader = LineReader::new(BufReader::new(&input[..]), MAX_RECORD_BYTES - 1);
        assert_eq!(reader.next_line().unwrap(), Some(Line::Oversized { line: 1, bytes: 5 * MAX_RECORD_BYTES }));
        assert_eq!(reader.next_line().unwrap(), None);
    }

    fn batches(lens: &[usize], max_records: usize, max_bytes: usize) -> Vec<Vec<usize>> {
        let mut b = Batcher::new(max_records, max_bytes);
        let mut out = Vec::new();
        for &len in lens {
            if let Some(batch) = b.push(vec![0; len]) {
                out.push(batch.iter().map(Vec::len).collect());
            }
        }
        let last = b.take();
        if !last.is_empty() {
            out.push(last.iter().map(Vec::len).collect());
        }
        assert!(b.is_empty());
        out
    }

    #[test]
    fn batches_by_count() {
        let out = batches(&[1; 1234], 500, 1 << 20);
        assert_eq!(out.iter().map(Vec::len).collect::<Vec<_>>(), vec![500, 500, 234]);
        assert_eq!(batches(&[1; 500], 500, 1 << 20).len(), 1);
        assert_eq!(batches(&[], 500, 1 << 20).len(), 0);
    }

    #[test]
    fn batches_by_bytes() {
        assert_eq!(batches(&[4, 4, 2, 1, 10, 3], 500, 10), vec![vec![4, 4, 2], vec![1], vec![10], vec![3]]);
        // Firehose's limits: 5 records of 1,000,000 bytes make two calls (4 MiB = 4,194,304 bytes).
        let out = batches(&[1_000_000; 5], MAX_BATCH_RECORDS, MAX_BATCH_BYTES);
        assert_eq!(out.iter().map(Vec::len).collect::<Vec<_>>(), vec![4, 1]);
        // Exactly 4 MiB fits in one call.
        let out = batches(&[1024 * 1024; 4], MAX_BATCH_RECORDS, MAX_BATCH_BYTES);
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn answers_split_into_sent_and_retried() {
        let pending = vec![("YQ==".to_string(), 1), ("Yg==".to_string(), 1), ("Yw==".to_string(), 1)];
        let answer = json!({"FailedPutCount": 1, "RequestResponses": [
            {"RecordId": "1"}, {"ErrorCode": "ServiceUnavailableException", "ErrorMessage": "slow down"}, {"RecordId": "3"}
        ]});
        let (ok, retry, error) = split_answer(pending.clone(), &answer).unwrap();
        assert_eq!(ok, vec![1, 1]);
        assert_eq!(retry, vec![("Yg==".to_string(), 1)]);
        assert_eq!(error.as_deref(), Some("ServiceUnavailableException: slow down"));
        let (ok, retry, error) = split_answer(pending.clone(), &json!({"FailedPutCount": 0})).unwrap();
        assert_eq!((ok.len(), retry.len(), error), (3, 0, None));
        assert!(split_answer(pending, &json!({"FailedPutCount": 1, "RequestResponses": []})).is_err());
    }

    #[test]
    fn transient_errors_and_backoff() {
        let api = |status, t: &str| anyhow::Error::from(ApiError { status, error_type: t.into(), message: "m".into() });
        assert!(is_transient(&api(503, "ServiceUnavailableException")));
        assert!(is_transient(&api(500, "InternalFailure")));
        assert!(!is_transient(&api(400, "ResourceNotFoundException")));
        assert!(!is_transient(&api(400, "InvalidArgumentException")));
        assert!(is_transient(&anyhow::anyhow!("cannot reach")));
        assert_eq!(backoff(1), Duration::from_millis(100));
        assert_eq!(backoff(3), Duration::from_millis(400));
        assert_eq!(backoff(30), MAX_BACKOFF);
    }
}
