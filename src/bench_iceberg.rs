//! `spillway bench iceberg`: PutRecordBatch load into one Iceberg table of the embedded catalog
//! (seed 000's readings, SNAPPY Parquet), end to end: rows/s from the first put until every row is
//! committed, commit latency (from the server's `DeliveryToIceberg_CommitDuration` histogram:
//! data files written plus the snapshot committed, reported as the upper bound of the 25 %-wide
//! bucket holding the percentile), and the data files written, extrapolated to an hour.
//!
//! `--interval-secs` is the stream's `BufferingHints.IntervalInSeconds` (60 and 1 are the figures
//! in BENCHMARKS.md); `SizeInMBs` is 128, Firehose's maximum for Iceberg.

use crate::bench::{Spawned, call, peak_rss_kib, sample_body, spawn_server_at, worker};
use crate::bench_delivery::{client, data_dir, files_under, flush, metric, wait_ready};
use anyhow::bail;
use bytes::Bytes;
use clap::Args;
use http_body_util::{BodyExt, Full};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Args, Clone)]
pub struct IcebergArgs {
    /// BufferingHints.IntervalInSeconds of the stream.
    #[arg(long, default_value_t = 60)]
    interval_secs: u64,
    /// Load duration.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Concurrent connections.
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// Record size in bytes.
    #[arg(long, default_value_t = 200)]
    record_bytes: usize,
    /// Data directory [default: a temp dir, removed afterwards].
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

const ROLE: &str = "arn:aws:iam::000000000000:role/bench";
const CATALOG: &str = "bench-tables";

/// The table: the fields of the records `sample_body` makes.
const CONFIG: &str = r#"
[[iceberg_tables]]
name = "bench.readings"
catalog = "bench-tables"
fields = [
  { name = "sensor_id", type = "string" },
  { name = "location", type = "string" },
  { name = "temperature", type = "double" },
  { name = "humidity", type = "double" },
  { name = "seq", type = "long" },
  { name = "pad", type = "string" },
]
"#;

/// The real service's documented Iceberg throughput per stream (reference §14), for comparison.
const FIREHOSE_ICEBERG_MIB_S: f64 = 5.0;

pub fn iceberg(args: IcebergArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(run(&args))
}

fn parquet_files(dir: &Path) -> usize {
    files_under(dir).iter().filter(|p| p.extension().is_some_and(|x| x == "parquet")).count()
}

/// Percentiles of the commit-duration histogram: the upper bound of the bucket holding each.
async fn commit_percentiles(c: &crate::bench::HttpClient, endpoint: &str, ps: &[f64]) -> anyhow::Result<Vec<f64>> {
    let req = http::Request::get(format!("{endpoint}/metrics")).body(Full::new(Bytes::new()))?;
    let text = c.request(req).await?.into_body().collect().await?.to_bytes();
    let text = String::from_utf8_lossy(&text);
    let mut buckets: Vec<(f64, f64)> = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("DeliveryToIceberg_CommitDuration_bucket{") else { continue };
        if !rest.contains("delivery_stream=\"bench\"") {
            continue;
        }
        let le = rest.split("le=\"").nth(1).and_then(|s| s.split('"').next()).unwrap_or("");
        let le = if le == "+Inf" { f64::INFINITY } else { le.parse().unwrap_or(f64::NAN) };
        let count: f64 = line.rsplit(' ').next().and_then(|v| v.parse().ok()).unwrap_or(0.0);
        buckets.push((le, count));
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = buckets.last().map_or(0.0, |b| b.1);
    Ok(ps.iter().map(|p| buckets.iter().find(|(_, n)| *n >= total * p).map_or(f64::NAN, |(le, _)| *le)).collect())
}

async fn run(args: &IcebergArgs) -> anyhow::Result<()> {
    let (dir, remove) = data_dir(args.data_dir.as_ref(), "iceberg");
    let (endpoint, server): (String, Spawned) = spawn_server_at(dir, remove, Some(CONFIG))?;
    let c = client(args.connections);
    let status = wait_ready(&c, &endpoint).await?;
    let config = serde_json::json!({
        "RoleARN": ROLE,
        "CatalogConfiguration": {"CatalogARN": format!("arn:aws:s3tables:us-east-1:000000000000:bucket/{CATALOG}")},
        "DestinationTableConfigurationList": [{"DestinationDatabaseName": "bench", "DestinationTableName": "readings"}],
        "BufferingHints": {"SizeInMBs": 128, "IntervalInSeconds": args.interval_secs},
        "S3Configuration": {"RoleARN": ROLE, "BucketARN": "arn:aws:s3:::bench-errors"},
    });
    let body = serde_json::json!({"DeliveryStreamName": "bench", "IcebergDestinationConfiguration": config});
    let (code, resp) = call(&c, &endpoint, "CreateDeliveryStream", Bytes::from(body.to_string())).await?;
    if code != 200 {
        bail!("cannot create the stream: {}", String::from_utf8_lossy(&resp));
    }

    let put = sample_body("bench", 500, args.record_bytes);
    let start = Instant::now();
    let until = start + args.duration;
    let tasks: Vec<_> = (0..args.connections)
        .map(|_| tokio::spawn(worker(c.clone(), endpoint.clone(), put.clone(), start, until)))
        .collect();
    let mut records = 0u64;
    for t in tasks {
        let w = t.await?;
        if w.errors > 0 {
            bail!("{} requests failed", w.errors);
        }
        records += w.requests * 500 - w.failed_records;
    }
    let ingested = start.elapsed();
    flush(&c, &endpoint).await?;
    let elapsed = start.elapsed();
    let rows = metric(&c, &endpoint, "DeliveryToIceberg_SuccessfulRowCount_total").await? as u64;
    let failed = metric(&c, &endpoint, "DeliveryToIceberg_FailedRowCount_total").await? as u64;
    if rows != records || failed != 0 {
        bail!("{records} records acknowledged, {rows} rows committed, {failed} failed");
    }
    let commits = metric(&c, &endpoint, "DeliveryToIceberg_Success_total").await? as u64;
    let pcts = commit_percentiles(&c, &endpoint, &[0.5, 0.99]).await?;
    let files = parquet_files(&server.data_dir.join("buckets").join(CATALOG).join("bench.db").join("readings"));
    let rss = status["pid"].as_u64().and_then(peak_rss_kib);
    let secs = elapsed.as_secs_f64();
    let mib_s = records as f64 * args.record_bytes as f64 / 1048576.0 / secs;
    println!(
        "interval={}s records={records} ({} B each) ingest={:.1}s committed_by={:.1}s commits={commits} data_files={files}",
        args.interval_secs,
        args.record_bytes,
        ingested.as_secs_f64(),
        secs
    );
    println!(
        "end-to-end: {:.0} rows/s, {mib_s:.1} MiB/s of records ({:.0}x Firehose's {FIREHOSE_ICEBERG_MIB_S} MiB/s)",
        records as f64 / secs,
        mib_s / FIREHOSE_ICEBERG_MIB_S
    );
    println!("commit latency (files written + snapshot committed): p50 <= {:.0} ms, p99 <= {:.0} ms", pcts[0], pcts[1]);
    println!("data files: {files} in {secs:.0} s = {:.0} per hour at this rate", files as f64 * 3600.0 / secs);
    println!("server peak RSS: {:.1} MiB", rss.unwrap_or(0) as f64 / 1024.0);
    Ok(())
}
