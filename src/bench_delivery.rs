//! `spillway bench delivery`: end-to-end benchmarks of S3 delivery to the embedded (folder) store.
//!
//! - `--mode throughput`: PutRecordBatch load for a fixed time into a GZIP stream, then a flush;
//!   records/s from the first put until every record is in an object.
//! - `--mode freshness`: `IntervalInSeconds: 0`; one PutRecord at a time, and the time from its
//!   acknowledgement until the object holding it is visible in the bucket folder (p50/p99).
//! - `--mode backlog`: a backlog of `--backlog-mib` is ingested while the bucket points at a dead
//!   S3 endpoint, the server is killed, and a new server drains it to the folder: drain rate and the
//!   draining server's peak RSS.
//!
//! Each mode starts its own release server (this binary) with a fresh data directory.

use crate::bench::{HttpClient, Spawned, call, peak_rss_kib, sample_body, spawn_server_at, worker};
use anyhow::{Context, bail};
use base64::Engine;
use bytes::Bytes;
use clap::{Args, ValueEnum};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, ValueEnum)]
pub enum Mode {
    Throughput,
    Freshness,
    Backlog,
}

#[derive(Args, Clone)]
pub struct DeliveryArgs {
    #[arg(long, value_enum, default_value = "throughput")]
    mode: Mode,
    /// Concurrent connections (throughput, backlog).
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// Load duration (throughput).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Record size in bytes.
    #[arg(long, default_value_t = 200)]
    record_bytes: usize,
    /// PutRecord calls measured (freshness).
    #[arg(long, default_value_t = 300)]
    samples: usize,
    /// Backlog size in MiB of record data (backlog).
    #[arg(long, default_value_t = 1024)]
    backlog_mib: usize,
    /// GZIP level of the server ([delivery] gzip_level).
    #[arg(long, default_value_t = 6)]
    gzip_level: u32,
    /// Data directory [default: a temp dir, removed afterwards].
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

const ROLE: &str = "arn:aws:iam::000000000000:role/bench";

/// The data directory of a bench server: `given`, or a fresh temp dir (to remove afterwards).
pub(crate) fn data_dir(given: Option<&PathBuf>, tag: &str) -> (PathBuf, bool) {
    match given {
        Some(d) => (d.clone(), false),
        None => (std::env::temp_dir().join(format!("spillway-bench-{tag}-{}", std::process::id())), true),
    }
}

pub(crate) fn client(connections: usize) -> HttpClient {
    Client::builder(TokioExecutor::new()).pool_max_idle_per_host(connections.max(1)).build_http()
}

pub(crate) async fn wait_ready(client: &HttpClient, endpoint: &str) -> anyhow::Result<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let req = http::Request::get(format!("{endpoint}/_spillway/status")).body(Full::new(Bytes::new()))?;
        match client.request(req).await {
            Ok(resp) => return Ok(serde_json::from_slice(&resp.into_body().collect().await?.to_bytes())?),
            Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(e) => bail!("server at {endpoint} does not answer: {e}"),
        }
    }
}

/// Creates the stream `bench` and checks that it is ACTIVE.
pub(crate) async fn create(client: &HttpClient, endpoint: &str, config: serde_json::Value) -> anyhow::Result<()> {
    let body = serde_json::json!({"DeliveryStreamName": "bench", "ExtendedS3DestinationConfiguration": config});
    let (code, resp) = call(client, endpoint, "CreateDeliveryStream", Bytes::from(body.to_string())).await?;
    if code != 200 {
        bail!("cannot create the stream: {}", String::from_utf8_lossy(&resp));
    }
    let describe = serde_json::json!({"DeliveryStreamName": "bench"});
    let (_, resp) = call(client, endpoint, "DescribeDeliveryStream", Bytes::from(describe.to_string())).await?;
    let d: serde_json::Value = serde_json::from_slice(&resp)?;
    let status = &d["DeliveryStreamDescription"]["DeliveryStreamStatus"];
    if status != "ACTIVE" {
        bail!("stream is {status}: {}", d["DeliveryStreamDescription"]["FailureDescription"]);
    }
    Ok(())
}

/// Flushes the stream `bench`; returns the number of objects written.
pub(crate) async fn flush(client: &HttpClient, endpoint: &str) -> anyhow::Result<u64> {
    let req = http::Request::post(format!("{endpoint}/_spillway/streams/bench/flush")).body(Full::new(Bytes::new()))?;
    let resp = client.request(req).await?;
    let ok = resp.status().is_success();
    let body = resp.into_body().collect().await?.to_bytes();
    if !ok {
        bail!("flush failed: {}", String::from_utf8_lossy(&body));
    }
    let v: serde_json::Value = serde_json::from_slice(&body)?;
    Ok(v["Objects"].as_array().map_or(0, Vec::len) as u64)
}

/// A series of the stream `bench` (`name` with its suffix, e.g. `_total`, `_sum`).
pub(crate) async fn metric(client: &HttpClient, endpoint: &str, name: &str) -> anyhow::Result<f64> {
    let req = http::Request::get(format!("{endpoint}/metrics")).body(Full::new(Bytes::new()))?;
    let text = client.request(req).await?.into_body().collect().await?.to_bytes();
    let text = String::from_utf8_lossy(&text);
    let prefix = format!("{name}{{delivery_stream=\"bench\"}} ");
    Ok(text.lines().find_map(|l| l.strip_prefix(&prefix)).and_then(|v| v.trim().parse().ok()).unwrap_or(0.0))
}

pub(crate) fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if !p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(".spillway-tmp-")) {
                out.push(p);
            }
        }
    }
    out
}

/// Runs `connections` PutRecordBatch workers until `until`; returns the records acknowledged.
async fn load(client: &HttpClient, endpoint: &str, args: &DeliveryArgs, until: Instant) -> anyhow::Result<u64> {
    let body = sample_body("bench", 500, args.record_bytes);
    let now = Instant::now();
    let tasks: Vec<_> = (0..args.connections)
        .map(|_| tokio::spawn(worker(client.clone(), endpoint.to_string(), body.clone(), now, until)))
        .collect();
    let mut records = 0;
    for t in tasks {
        let w = t.await?;
        if w.errors > 0 {
            bail!("{} requests failed", w.errors);
        }
        records += w.requests * 500 - w.failed_records;
    }
    Ok(records)
}

pub fn delivery(args: DeliveryArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        match args.mode {
            Mode::Throughput => throughput(&args).await,
            Mode::Freshness => freshness(&args).await,
            Mode::Backlog => backlog(&args).await,
        }
    })
}

fn config_text(args: &DeliveryArgs, extra: &str) -> String {
    format!("[delivery]\ngzip_level = {}\n{extra}", args.gzip_level)
}

async fn throughput(args: &DeliveryArgs) -> anyhow::Result<()> {
    let (dir, remove) = data_dir(args.data_dir.as_ref(), "throughput");
    let (endpoint, server): (String, Spawned) = spawn_server_at(dir, remove, Some(&config_text(args, "")))?;
    let c = client(args.connections);
    let status = wait_ready(&c, &endpoint).await?;
    create(
        &c,
        &endpoint,
        serde_json::json!({"RoleARN": ROLE, "BucketARN": "arn:aws:s3:::bench",
        "CompressionFormat": "GZIP", "BufferingHints": {"SizeInMBs": 64, "IntervalInSeconds": 60}}),
    )
    .await?;
    let start = Instant::now();
    let records = load(&c, &endpoint, args, start + args.duration).await?;
    let ingested = start.elapsed();
    flush(&c, &endpoint).await?;
    let elapsed = start.elapsed();
    let delivered = metric(&c, &endpoint, "DeliveryToS3_Records_total").await? as u64;
    if delivered != records {
        bail!("{records} records acknowledged but {delivered} delivered");
    }
    let objects = files_under(&server.data_dir.join("buckets/bench"));
    let stored: u64 = objects.iter().filter_map(|p| std::fs::metadata(p).ok()).map(|m| m.len()).sum();
    let rss = status["pid"].as_u64().and_then(peak_rss_kib);
    let rps = records as f64 / elapsed.as_secs_f64();
    println!(
        "records={records} ingest={:.1}s delivered_by={:.1}s objects={} stored={:.1} MiB (gzip level {})",
        ingested.as_secs_f64(),
        elapsed.as_secs_f64(),
        objects.len(),
        stored as f64 / 1048576.0,
        args.gzip_level
    );
    println!("end-to-end: {rps:.0} records/s, {:.1} MiB/s of records", rps * args.record_bytes as f64 / 1048576.0);
    println!("server peak RSS: {:.1} MiB", rss.unwrap_or(0) as f64 / 1024.0);
    Ok(())
}

async fn freshness(args: &DeliveryArgs) -> anyhow::Result<()> {
    let (dir, remove) = data_dir(args.data_dir.as_ref(), "freshness");
    let (endpoint, server) = spawn_server_at(dir, remove, Some(&config_text(args, "")))?;
    let c = client(1);
    wait_ready(&c, &endpoint).await?;
    create(
        &c,
        &endpoint,
        serde_json::json!({"RoleARN": ROLE, "BucketARN": "arn:aws:s3:::bench",
        "BufferingHints": {"SizeInMBs": 1, "IntervalInSeconds": 0}}),
    )
    .await?;
    let bucket = server.data_dir.join("buckets/bench");
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut latencies = Vec::with_capacity(args.samples);
    for i in 0..args.samples {
        let data = b64.encode(format!("{{\"seq\":{i}}}\n"));
        let body = format!("{{\"DeliveryStreamName\":\"bench\",\"Record\":{{\"Data\":\"{data}\"}}}}");
        let (code, resp) = call(&c, &endpoint, "PutRecord", Bytes::from(body)).await?;
        if code != 200 {
            bail!("put failed: {}", String::from_utf8_lossy(&resp));
        }
        let acked = Instant::now();
        let deadline = acked + Duration::from_secs(10);
        // Each record becomes its own object (interval 0, one record at a time).
        loop {
            if files_under(&bucket).len() > i {
                break;
            }
            if Instant::now() > deadline {
                bail!("record {i} not visible after 10 s");
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        latencies.push(acked.elapsed().as_secs_f64() * 1000.0);
    }
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| latencies[((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1];
    println!(
        "freshness over {} PutRecord calls (ack → object visible): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        latencies.len(),
        pct(0.5),
        pct(0.99),
        pct(1.0)
    );
    Ok(())
}

async fn backlog(args: &DeliveryArgs) -> anyhow::Result<()> {
    let (dir, remove) = data_dir(args.data_dir.as_ref(), "backlog");
    // Phase 1: the bucket points at a dead endpoint, so everything stays in the WAL.
    let dead = "[buckets.bench]\nendpoint = \"http://127.0.0.1:9\"\naccess_key_id = \"x\"\nsecret_access_key = \"y\"\n";
    let (endpoint, server) = spawn_server_at(dir, false, Some(&config_text(args, dead)))?;
    let c = client(args.connections);
    wait_ready(&c, &endpoint).await?;
    create(
        &c,
        &endpoint,
        serde_json::json!({"RoleARN": ROLE, "BucketARN": "arn:aws:s3:::bench",
        "CompressionFormat": "GZIP", "BufferingHints": {"SizeInMBs": 128, "IntervalInSeconds": 900}}),
    )
    .await?;
    let target = (args.backlog_mib * 1048576 / args.record_bytes) as u64;
    let mut records = 0u64;
    while records < target {
        records += load(&c, &endpoint, args, Instant::now() + Duration::from_millis(200)).await?;
    }
    let dir = server.kill_keep();
    println!("backlog: {records} records, {:.0} MiB", records as f64 * args.record_bytes as f64 / 1048576.0);

    // Phase 2: the bucket is the local folder again; measure the drain.
    let (endpoint, server) = spawn_server_at(dir, remove, Some(&config_text(args, "")))?;
    let c = client(1);
    let start = Instant::now();
    let status = wait_ready(&c, &endpoint).await?;
    let pid = status["pid"].as_u64().context("no pid")?;
    loop {
        // Full buffers drain by themselves; the flush delivers the last, partial one (which would
        // otherwise wait for its interval) and returns when the backlog read before it is stored.
        let _ = flush(&c, &endpoint).await;
        let delivered = metric(&c, &endpoint, "DeliveryToS3_Records_total").await? as u64;
        if delivered >= records {
            break;
        }
        if start.elapsed() > Duration::from_secs(1800) {
            bail!("backlog not drained after 30 min ({delivered} of {records})");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let rss = peak_rss_kib(pid).unwrap_or(0);
    println!(
        "drain: {:.1} s, {:.0} records/s, {:.1} MiB/s; draining server peak RSS {:.1} MiB",
        elapsed,
        records as f64 / elapsed,
        records as f64 * args.record_bytes as f64 / 1048576.0 / elapsed,
        rss as f64 / 1024.0
    );
    drop(server);
    Ok(())
}
