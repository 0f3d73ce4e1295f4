//! `spillway bench ingest`: a load generator for the ingest path.
//!
//! It sends PutRecordBatch requests (by default 500 records of 200 bytes of JSON) over HTTP/1.1
//! keep-alive from N concurrent connections for a fixed time, and reports records/s, MiB/s, the
//! p50/p99/max acknowledgement latency and the server's peak RSS. Without `--endpoint` it starts its
//! own server (this binary, release build) on a free port with a fresh data directory, so client and
//! server share the machine, as the figures in BENCHMARKS.md are measured.
//!
//! The request body is built once and sent again and again: the client's cost is the HTTP exchange,
//! not JSON or base64 encoding.

use anyhow::{Context, bail};
use base64::Engine;
use bytes::Bytes;
use clap::Args;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Args, Clone)]
pub struct IngestArgs {
    /// A running server (e.g. http://127.0.0.1:4573); without it a server is started for the run.
    #[arg(long)]
    endpoint: Option<String>,
    /// Delivery stream to put into (created if missing).
    #[arg(long, default_value = "bench")]
    stream: String,
    /// Concurrent connections.
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// How long to measure.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Unmeasured run before the measurement.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// Size of each record in bytes.
    #[arg(long, default_value_t = 200)]
    record_bytes: usize,
    /// Records per PutRecordBatch (1..=500).
    #[arg(long, default_value_t = 500)]
    batch_records: usize,
    /// Data directory of the server started for the run (removed afterwards) [default: a temp dir].
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

pub(crate) type HttpClient = Client<HttpConnector, Full<Bytes>>;

pub(crate) struct Spawned {
    child: Child,
    pub(crate) data_dir: PathBuf,
    remove_dir: bool,
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if self.remove_dir {
            let _ = std::fs::remove_dir_all(&self.data_dir);
        }
    }
}

fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

fn spawn_server(args: &IngestArgs) -> anyhow::Result<(String, Spawned)> {
    let (data_dir, remove_dir) = match &args.data_dir {
        Some(d) => (d.clone(), false),
        None => (std::env::temp_dir().join(format!("spillway-bench-{}", std::process::id())), true),
    };
    spawn_server_at(data_dir, remove_dir, None)
}

/// Starts `spillway serve` (this binary) on a free port with `data_dir` and an optional
/// configuration text.
pub(crate) fn spawn_server_at(
    data_dir: PathBuf,
    remove_dir: bool,
    config: Option<&str>,
) -> anyhow::Result<(String, Spawned)> {
    let port = free_port()?;
    std::fs::create_dir_all(&data_dir)?;
    let exe = std::env::current_exe().context("cannot find the spillway binary")?;
    let mut cmd = Command::new(exe);
    cmd.args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"]).arg(&data_dir);
    if let Some(text) = config {
        let path = data_dir.join("bench-spillway.toml");
        std::fs::write(&path, text)?;
        cmd.arg("--config").arg(path);
    }
    let child = cmd.env("RUST_LOG", "warn").stdin(Stdio::null()).spawn().context("cannot start the server")?;
    Ok((format!("http://127.0.0.1:{port}"), Spawned { child, data_dir, remove_dir }))
}

impl Spawned {
    /// SIGKILL, keeping the data directory.
    pub(crate) fn kill_keep(mut self) -> PathBuf {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.remove_dir = false;
        self.data_dir.clone()
    }
}

pub(crate) async fn call(
    client: &HttpClient,
    endpoint: &str,
    target: &str,
    body: Bytes,
) -> anyhow::Result<(u16, Bytes)> {
    let req = http::Request::post(endpoint)
        .header("content-type", "application/x-amz-json-1.1")
        .header("x-amz-target", format!("Firehose_20150804.{target}"))
        .body(Full::new(body))?;
    let resp = client.request(req).await?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

pub(crate) fn sample_body(stream: &str, records: usize, record_bytes: usize) -> Bytes {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut out = format!("{{\"DeliveryStreamName\":\"{stream}\",\"Records\":[");
    for i in 0..records {
        let mut rec = format!(
            "{{\"sensor_id\":\"sensor-{:04}\",\"location\":\"warehouse-{}\",\"temperature\":{:.2},\"humidity\":{:.1},\"seq\":{i},\"pad\":\"",
            i % 10,
            i % 3,
            20.0 + (i % 17) as f64 * 0.37,
            40.0 + (i % 23) as f64
        );
        // Pseudo-random hex padding (like ids and hashes in real events), so compression sees
        // realistic, not trivially repetitive, data.
        let mut x = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        while rec.len() + 3 < record_bytes {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            rec.push(char::from(b"0123456789abcdef"[(x & 15) as usize]));
        }
        rec.push_str("\"}\n");
        rec.truncate(record_bytes.max(1));
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"Data\":\"");
        out.push_str(&b64.encode(rec.as_bytes()));
        out.push_str("\"}");
    }
    out.push_str("]}");
    Bytes::from(out)
}

pub(crate) fn peak_rss_kib(pid: u64) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

pub(crate) struct Worker {
    latencies_us: Vec<u32>,
    pub(crate) requests: u64,
    pub(crate) failed_records: u64,
    pub(crate) errors: u64,
}

pub(crate) async fn worker(
    client: HttpClient,
    endpoint: String,
    body: Bytes,
    warm_until: Instant,
    until: Instant,
) -> Worker {
    let mut w = Worker { latencies_us: Vec::with_capacity(1 << 16), requests: 0, failed_records: 0, errors: 0 };
    loop {
        let start = Instant::now();
        if start >= until {
            return w;
        }
        let measured = start >= warm_until;
        match call(&client, &endpoint, "PutRecordBatch", body.clone()).await {
            Ok((200, resp)) => {
                if measured {
                    w.latencies_us.push(start.elapsed().as_micros().min(u32::MAX as u128) as u32);
                    w.requests += 1;
                    if !resp.starts_with(b"{\"FailedPutCount\":0,") {
                        let v: serde_json::Value = serde_json::from_slice(&resp).unwrap_or_default();
                        w.failed_records += v["FailedPutCount"].as_u64().unwrap_or(0);
                    }
                }
            }
            Ok(_) | Err(_) => {
                w.errors += 1;
                if w.errors > 1000 {
                    return w;
                }
            }
        }
    }
}

pub fn ingest(args: IngestArgs) -> anyhow::Result<()> {
    if args.batch_records == 0 || args.batch_records > 500 {
        bail!("--batch-records must be 1..=500");
    }
    let (endpoint, spawned) = match &args.endpoint {
        Some(e) => (e.trim_end_matches('/').to_string(), None),
        None => {
            let (e, s) = spawn_server(&args)?;
            (e, Some(s))
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(run(args, endpoint, spawned))
}

async fn run(args: IngestArgs, endpoint: String, spawned: Option<Spawned>) -> anyhow::Result<()> {
    let client: HttpClient =
        Client::builder(TokioExecutor::new()).pool_max_idle_per_host(args.connections).build_http();
    let status_url = format!("{endpoint}/_spillway/status");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        let req = http::Request::get(&status_url).body(Full::new(Bytes::new()))?;
        match client.request(req).await {
            Ok(resp) => break resp.into_body().collect().await?.to_bytes(),
            Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(e) => bail!("server at {endpoint} does not answer: {e}"),
        }
    };
    let status: serde_json::Value = serde_json::from_slice(&status)?;
    let pid = status["pid"].as_u64();

    let create = serde_json::json!({
        "DeliveryStreamName": args.stream,
        "ExtendedS3DestinationConfiguration": {
            "RoleARN": "arn:aws:iam::000000000000:role/bench",
            "BucketARN": "arn:aws:s3:::bench",
        }
    });
    let (code, body) = call(&client, &endpoint, "CreateDeliveryStream", Bytes::from(create.to_string())).await?;
    if code != 200 && !body.windows(22).any(|w| w == b"ResourceInUseException") {
        bail!("cannot create stream: {}", String::from_utf8_lossy(&body));
    }

    let body = sample_body(&args.stream, args.batch_records, args.record_bytes);
    let start = Instant::now();
    let warm_until = start + args.warmup;
    let until = warm_until + args.duration;
    let mut tasks = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        tasks.push(tokio::spawn(worker(client.clone(), endpoint.clone(), body.clone(), warm_until, until)));
    }
    let mut latencies = Vec::new();
    let (mut requests, mut failed, mut errors) = (0u64, 0u64, 0u64);
    for t in tasks {
        let w = t.await?;
        latencies.extend(w.latencies_us);
        requests += w.requests;
        failed += w.failed_records;
        errors += w.errors;
    }
    let secs = args.duration.as_secs_f64();
    latencies.sort_unstable();
    let pct = |p: f64| -> f64 {
        if latencies.is_empty() {
            return 0.0;
        }
        let i = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1;
        latencies[i] as f64 / 1000.0
    };
    let records = requests * args.batch_records as u64 - failed;
    let rps = records as f64 / secs;
    let mib = records as f64 * args.record_bytes as f64 / secs / (1024.0 * 1024.0);
    let rss = pid.and_then(peak_rss_kib);
    println!(
        "connections={} batch={}x{}B duration={:.1}s requests={} records={} failed_records={} errors={}",
        args.connections, args.batch_records, args.record_bytes, secs, requests, records, failed, errors
    );
    println!("throughput: {rps:.0} records/s, {mib:.1} MiB/s");
    println!("ack latency: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms", pct(0.50), pct(0.99), pct(1.0));
    match rss {
        Some(kib) => println!("server peak RSS: {:.1} MiB", kib as f64 / 1024.0),
        None => println!("server peak RSS: unknown (server not on this machine)"),
    }
    println!(
        "{}",
        serde_json::json!({
            "records_per_sec": rps.round(), "mib_per_sec": (mib * 10.0).round() / 10.0,
            "p50_ms": pct(0.5), "p99_ms": pct(0.99), "max_ms": pct(1.0),
            "server_peak_rss_kib": rss, "failed_records": failed, "errors": errors,
            "connections": args.connections, "batch_records": args.batch_records, "record_bytes": args.record_bytes,
        })
    );
    drop(spawned);
    if errors > 0 {
        bail!("{errors} requests failed");
    }
    Ok(())
}
