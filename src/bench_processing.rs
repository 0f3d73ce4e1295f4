//! `spillway bench processing`: end-to-end benchmarks of data transformation and dynamic
//! partitioning against a release server (this binary) with a fresh data directory.
//!
//! - `--mode partitions`: JSON records spread evenly over `--partitions` customer ids,
//!   partitioned by a jq `MetadataExtraction` query (`{customer_id: .customer_id}`) into
//!   `customer_id=!{partitionKeyFromQuery:customer_id}/`; records/s from the first put until every
//!   record is in an object, objects written, and the server's peak RSS.
//! - `--mode lambda`: seed 001's clickstream events through seed 001's `lambda_function.py`, run
//!   unchanged by the warm local Python handler (`--workers` processes); records/s end to end and
//!   the split: how long the Python workers were busy (`ExecuteProcessing.Duration`) and what the
//!   same handler does alone in a Python loop on the same batches (no spillway at all).

use crate::bench::{HttpClient, Spawned, call, peak_rss_kib, spawn_server_at};
use crate::bench_delivery::{client, create, data_dir, flush, metric, wait_ready};
use anyhow::{Context, bail};
use base64::Engine;
use bytes::Bytes;
use clap::{Args, ValueEnum};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Seed 001's transformation function, as shipped in the seed.
const SEED001_LAMBDA: &str =
    include_str!("../crates/spillway-pipeline/tests/fixtures/lambda/seed001/lambda_function.py");
const ROLE: &str = "arn:aws:iam::000000000000:role/bench";
const FUNCTION_ARN: &str = "arn:aws:lambda:us-east-1:000000000000:function:seed001-transform";

#[derive(Clone, Copy, ValueEnum)]
pub enum Mode {
    Partitions,
    Lambda,
}

#[derive(Args, Clone)]
pub struct ProcessingArgs {
    #[arg(long, value_enum, default_value = "partitions")]
    mode: Mode,
    /// Concurrent PutRecordBatch connections.
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// Load duration.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Distinct partition keys (partitions mode).
    #[arg(long, default_value_t = 10_000)]
    partitions: usize,
    /// Python worker processes (lambda mode).
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Records sent (lambda mode; the load stops early at `--duration`).
    #[arg(long, default_value_t = 200_000)]
    records: u64,
    /// Data directory [default: a temp dir, removed afterwards].
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

/// PutRecordBatch bodies of 500 records each, made of `record(i)` for consecutive `i`.
fn bodies(count: usize, record: impl Fn(usize) -> String) -> Vec<Bytes> {
    let b64 = base64::engine::general_purpose::STANDARD;
    (0..count)
        .map(|b| {
            let mut out = String::from("{\"DeliveryStreamName\":\"bench\",\"Records\":[");
            for i in 0..500 {
                if i > 0 {
                    out.push(',');
                }
                out.push_str("{\"Data\":\"");
                b64.encode_string(record(b * 500 + i), &mut out);
                out.push_str("\"}");
            }
            out.push_str("]}");
            Bytes::from(out)
        })
        .collect()
}

/// `connections` tasks sending `bodies` round-robin until `until`; returns records acknowledged.
async fn load(
    client: &HttpClient,
    endpoint: &str,
    bodies: Vec<Bytes>,
    connections: usize,
    until: Instant,
    max_records: u64,
) -> anyhow::Result<u64> {
    let bodies = std::sync::Arc::new(bodies);
    let budget = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(max_records.div_ceil(500)));
    let tasks: Vec<_> = (0..connections)
        .map(|c| {
            let (client, endpoint, bodies, budget) =
                (client.clone(), endpoint.to_string(), bodies.clone(), budget.clone());
            tokio::spawn(async move {
                let mut acked = 0u64;
                let mut n = c;
                let take = || {
                    budget.fetch_update(
                        std::sync::atomic::Ordering::Relaxed,
                        std::sync::atomic::Ordering::Relaxed,
                        |b| b.checked_sub(1),
                    )
                };
                while Instant::now() < until && take().is_ok() {
                    let body = bodies[n % bodies.len()].clone();
                    n += connections;
                    let (code, resp) = call(&client, &endpoint, "PutRecordBatch", body).await?;
                    if code != 200 {
                        bail!("PutRecordBatch answered {code}: {}", String::from_utf8_lossy(&resp));
                    }
                    let v: serde_json::Value = serde_json::from_slice(&resp)?;
                    acked += 500 - v["FailedPutCount"].as_u64().unwrap_or(0);
                }
                anyhow::Ok(acked)
            })
        })
        .collect();
    let mut total = 0;
    for t in tasks {
        total += t.await??;
    }
    Ok(total)
}

pub fn processing(args: ProcessingArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        match args.mode {
            Mode::Partitions => partitions(&args).await,
            Mode::Lambda => lambda(&args).await,
        }
    })
}

async fn partitions(args: &ProcessingArgs) -> anyhow::Result<()> {
    let (dir, remove) = data_dir(args.data_dir.as_ref(), "partitions");
    let config = format!("[delivery]\nactive_partitions_limit = {}\n", args.partitions.max(500));
    let (endpoint, server): (String, Spawned) = spawn_server_at(dir, remove, Some(&config))?;
    let c = client(args.connections);
    let status = wait_ready(&c, &endpoint).await?;
    create(
        &c,
        &endpoint,
        serde_json::json!({"RoleARN": ROLE, "BucketARN": "arn:aws:s3:::bench",
            "Prefix": "customer_id=!{partitionKeyFromQuery:customer_id}/",
            "ErrorOutputPrefix": "errors/!{firehose:error-output-type}/",
            "BufferingHints": {"SizeInMBs": 64, "IntervalInSeconds": 900},
            "DynamicPartitioningConfiguration": {"Enabled": true},
            "ProcessingConfiguration": {"Enabled": true, "Processors": [
                {"Type": "MetadataExtraction", "Parameters": [
                    {"ParameterName": "MetadataExtractionQuery", "ParameterValue": "{customer_id: .customer_id}"},
                    {"ParameterName": "JsonParsingEngine", "ParameterValue": "JQ-1.6"}]},
                {"Type": "AppendDelimiterToRecord"}]}}),
    )
    .await?;
    let n = args.partitions.max(1);
    // Enough distinct bodies that every partition gets records.
    let bodies = bodies(n.div_ceil(500).max(8), |i| {
        format!(
            "{{\"customer_id\":\"c{:05}\",\"event\":\"page_view\",\"ts\":1795000000,\"seq\":{i},\"payload\":\"{}\"}}",
            i % n,
            "x".repeat(64)
        )
    });
    let record_bytes = 120.0;
    let start = Instant::now();
    let records = load(&c, &endpoint, bodies, args.connections, start + args.duration, u64::MAX).await?;
    let ingested = start.elapsed();
    let objects = flush(&c, &endpoint).await?;
    let elapsed = start.elapsed();
    let delivered = metric(&c, &endpoint, "DeliveryToS3_Records_total").await? as u64;
    if delivered != records {
        bail!("{records} records acknowledged but {delivered} delivered");
    }
    let jq_ms = metric(&c, &endpoint, "JQProcessing_Duration_sum").await?;
    let rss = status["pid"].as_u64().and_then(peak_rss_kib);
    let rps = records as f64 / elapsed.as_secs_f64();
    println!(
        "records={records} partitions={n} ingest={:.1}s delivered_by={:.1}s objects={objects}",
        ingested.as_secs_f64(),
        elapsed.as_secs_f64()
    );
    println!("end-to-end: {rps:.0} records/s (~{:.1} MiB/s of records)", rps * record_bytes / 1048576.0);
    println!("jq: {:.0} ms in total, {:.0} records/s of jq time", jq_ms, records as f64 / (jq_ms / 1000.0));
    println!("server peak RSS: {:.1} MiB", rss.unwrap_or(0) as f64 / 1024.0);
    drop(server);
    Ok(())
}

/// CPU seconds (user + system) of a process, from `/proc/<pid>/stat` (clock ticks of 10 ms).
fn cpu_secs(pid: u64) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command (which may contain spaces) start after the last ')'.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok());
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the command.
    Some((ticks(11)? + ticks(12)?) / 100.0)
}

/// CPU seconds of the live children of `pid` (the warm Python workers).
fn children_cpu_secs(pid: u64) -> f64 {
    let Ok(dir) = std::fs::read_dir("/proc") else { return 0.0 };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u64>().ok()))
        .filter(|child| {
            std::fs::read_to_string(format!("/proc/{child}/stat"))
                .ok()
                .and_then(|s| s.rsplit_once(')').and_then(|(_, r)| r.split_whitespace().nth(1).map(str::to_string)))
                .is_some_and(|ppid| ppid == pid.to_string())
        })
        .filter_map(cpu_secs)
        .sum()
}

fn clickstream_event(i: usize) -> String {
    format!(
        "{{\"event_id\":\"evt-{i}\",\"user_id\":\"user-{}\",\"event_type\":\"page_view\",\"timestamp\":\"2026-11-22T10:00:00Z\",\
         \"session_id\":\"sess-{}\",\"page_url\":\"/products/{}\",\"referrer\":\"https://example.com\",\
         \"user_agent\":\"Mozilla/5.0\",\"ip_address\":\"10.0.0.{}\"}}",
        i % 1000,
        i % 97,
        i % 50,
        i % 250
    )
}

/// The handler alone in a Python loop on batches of `batch` events: records/s.
fn python_alone(file: &Path, batch: usize, seconds: f64) -> anyhow::Result<f64> {
    let events: Vec<String> = (0..batch).map(clickstream_event).collect();
    let script = r#"
import base64, importlib.util, json, sys, time
spec = importlib.util.spec_from_file_location("lambda_function", sys.argv[1])
m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)
events = json.loads(sys.stdin.read())
class Ctx:
    aws_request_id = "bench"; function_name = "bench"; memory_limit_in_mb = 128
    def get_remaining_time_in_millis(self): return 300000
event = {"invocationId": "x", "deliveryStreamArn": "arn", "region": "us-east-1",
         "records": [{"recordId": str(i), "approximateArrivalTimestamp": 0,
                      "data": base64.b64encode(e.encode()).decode()} for i, e in enumerate(events)]}
import logging; logging.disable(logging.CRITICAL)
n, t0 = 0, time.perf_counter()
while time.perf_counter() - t0 < float(sys.argv[2]):
    # Like a real invocation: the event arrives as JSON text and the response leaves as JSON text.
    out = m.lambda_handler(json.loads(json.dumps(event)), Ctx())
    json.dumps(out)
    n += len(events)
print(n / (time.perf_counter() - t0))
"#;
    let mut child = std::process::Command::new("python3")
        .args(["-c", script, &file.display().to_string(), &seconds.to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("cannot start python3")?;
    if let Some(mut stdin) = child.stdin.take() {
        use std::io::Write;
        stdin.write_all(serde_json::to_string(&events)?.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    // The handler prints its own lines; the rate is the last one.
    let last = text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or_default();
    last.trim().parse::<f64>().with_context(|| format!("python printed {last:?}"))
}

async fn lambda(args: &ProcessingArgs) -> anyhow::Result<()> {
    let (dir, remove) = data_dir(args.data_dir.as_ref(), "lambda");
    std::fs::create_dir_all(&dir)?;
    let file = dir.join("lambda_function.py");
    std::fs::write(&file, SEED001_LAMBDA)?;
    let config = format!(
        "[functions.\"{FUNCTION_ARN}\"]\nfile = \"{}\"\nhandler = \"lambda_handler\"\nworkers = {}\n",
        file.display(),
        args.workers
    );
    let (endpoint, server): (String, Spawned) = spawn_server_at(dir, remove, Some(&config))?;
    let c = client(args.connections);
    let status = wait_ready(&c, &endpoint).await?;
    create(
        &c,
        &endpoint,
        serde_json::json!({"RoleARN": ROLE, "BucketARN": "arn:aws:s3:::bench", "Prefix": "processed/",
            "ErrorOutputPrefix": "errors/",
            "BufferingHints": {"SizeInMBs": 64, "IntervalInSeconds": 900},
            "ProcessingConfiguration": {"Enabled": true, "Processors": [{"Type": "Lambda", "Parameters": [
                {"ParameterName": "LambdaArn", "ParameterValue": FUNCTION_ARN},
                {"ParameterName": "BufferSizeInMBs", "ParameterValue": "1"},
                {"ParameterName": "BufferIntervalInSeconds", "ParameterValue": "1"}]}]}}),
    )
    .await?;
    let bodies = bodies(16, clickstream_event);
    let event_bytes = clickstream_event(12345).len();
    let start = Instant::now();
    let records = load(&c, &endpoint, bodies, args.connections, start + args.duration, args.records).await?;
    let ingested = start.elapsed();
    // Wait until the function has seen every record, then deliver the rest.
    let deadline = Instant::now() + Duration::from_secs(600);
    while (metric(&c, &endpoint, "SucceedProcessing_Records_total").await? as u64) < records {
        if Instant::now() > deadline {
            bail!("the function did not process {records} records in 10 minutes");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    flush(&c, &endpoint).await?;
    let elapsed = start.elapsed();
    let delivered = metric(&c, &endpoint, "DeliveryToS3_Records_total").await? as u64;
    let succeeded = metric(&c, &endpoint, "SucceedProcessing_Records_total").await? as u64;
    if delivered != records || succeeded != records {
        bail!("{records} records acknowledged, {succeeded} transformed, {delivered} delivered");
    }
    let pid = status["pid"].as_u64().unwrap_or(0);
    let (server_cpu, python_cpu) = (cpu_secs(pid).unwrap_or(0.0), children_cpu_secs(pid));
    let invocations = metric(&c, &endpoint, "ExecuteProcessing_Duration_count").await?;
    let rss = status["pid"].as_u64().and_then(peak_rss_kib);
    let rps = records as f64 / elapsed.as_secs_f64();
    // A 1 MiB Lambda buffer holds this many events.
    let batch = (1 << 20) / event_bytes;
    let alone = python_alone(&server.data_dir.join("lambda_function.py"), batch, 3.0)?;
    println!(
        "records={records} ingest={:.1}s delivered_by={:.1}s invocations={invocations:.0} workers={}",
        ingested.as_secs_f64(),
        elapsed.as_secs_f64(),
        args.workers
    );
    println!("end-to-end: {rps:.0} records/s through the Python handler");
    println!(
        "split: CPU seconds: Python workers {python_cpu:.1}s, spillway server {server_cpu:.1}s \
         (ingest, WAL, events, responses, delivery) over {:.1}s wall on {} cores",
        elapsed.as_secs_f64(),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!("the same handler alone in one Python loop (JSON in and out, batches of {batch}): {alone:.0} records/s");
    println!("server peak RSS: {:.1} MiB", rss.unwrap_or(0) as f64 / 1024.0);
    drop(server);
    Ok(())
}
