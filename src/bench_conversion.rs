//! `spillway bench conversion`: record format conversion on one core, against pyarrow on the same
//! data in the same run.
//!
//! The data is `--mib` MiB of NDJSON taxi trips (seed 004's records, deterministic), converted
//! against seed 004's table (its Hive DDL, verbatim) with the OpenX JSON SerDe, one record per
//! line, exactly as a supervisor converts one object: [`spillway_format::convert::convert`] on this
//! thread. pyarrow gets the same file and the same schema with threads off
//! (`pyarrow.json.read_json` + `pyarrow.parquet.write_table`, or `pyarrow.orc.write_table`).
//! Reported: input MB/s of each (best of `--runs`), the ratio, output sizes, and spillway's peak
//! memory above the input buffer (`VmHWM` after resetting it through `/proc/self/clear_refs`).

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use spillway_format::convert::{Conversion, OutputFormat, ParquetOptions, convert};
use spillway_format::json::Deserializer;
use spillway_format::orc::OrcOptions;
use std::io::Write as _;
use std::path::PathBuf;
use std::time::Instant;

/// Seed 004's table, as written in the seed.
const SEED004_DDL: &str = include_str!("../crates/spillway-format/tests/fixtures/nyctaxitrips.sql");

const PYARROW_SCRIPT: &str = r#"
import json, sys, time
import pyarrow as pa, pyarrow.json as pj, pyarrow.parquet as pq, pyarrow.orc as po
pa.set_cpu_count(1)
pa.set_io_thread_count(1)
path, fmt, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
schema = pa.schema([("pickup_latitude", pa.float64()), ("pickup_longitude", pa.float64()),
    ("dropoff_latitude", pa.float64()), ("dropoff_longitude", pa.float64()), ("trip_id", pa.int64()),
    ("trip_distance", pa.float64()), ("passenger_count", pa.int32()), ("pickup_datetime", pa.timestamp("us")),
    ("dropoff_datetime", pa.timestamp("us")), ("total_amount", pa.float64())])
best = None
for _ in range(runs):
    t = time.perf_counter()
    table = pj.read_json(path, read_options=pj.ReadOptions(use_threads=False, block_size=16 << 20),
                         parse_options=pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore"))
    sink = pa.BufferOutputStream()
    if fmt == "parquet":
        pq.write_table(table, sink, compression="snappy")
    else:
        po.write_table(table, sink, compression="snappy")
    secs = time.perf_counter() - t
    size = sink.getvalue().size
    if best is None or secs < best[0]:
        best = (secs, size, table.num_rows)
print(json.dumps({"secs": best[0], "bytes": best[1], "rows": best[2], "version": pa.__version__}))
"#;

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Format {
    Parquet,
    Orc,
}

#[derive(Args, Clone)]
pub struct ConversionArgs {
    /// Output format.
    #[arg(long, value_enum, default_value = "parquet")]
    format: Format,
    /// MiB of NDJSON input (one buffer; Firehose's default with conversion is 128).
    #[arg(long, default_value_t = 128)]
    mib: usize,
    /// Runs of each converter; the best is reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Python with pyarrow for the comparison; `none` skips it.
    #[arg(long, default_value = "python3")]
    python: String,
    /// Where the NDJSON file for pyarrow goes [default: a temp dir].
    #[arg(long)]
    dir: Option<PathBuf>,
}

/// xorshift64*: deterministic data without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (self.next() >> 11) as f64 / (1u64 << 53) as f64 * (hi - lo)
    }
}

/// `mib` MiB of taxi trips, one JSON object per line; returns the text and the line ranges.
fn taxi_ndjson(mib: usize) -> (Vec<u8>, Vec<(usize, usize)>) {
    let mut rng = Rng(0x5eed_0004);
    let (mut out, mut lines) = (Vec::with_capacity(mib << 20), Vec::new());
    let base = chrono::NaiveDate::from_ymd_opt(2020, 9, 3).and_then(|d| d.and_hms_opt(9, 0, 0)).unwrap_or_default();
    let mut i = 0u64;
    while out.len() < mib << 20 {
        let pickup = base + chrono::Duration::milliseconds((rng.next() % 86_400_000) as i64);
        let drop = pickup + chrono::Duration::milliseconds((rng.next() % 3_600_000) as i64);
        let start = out.len();
        let _ = write!(
            out,
            "{{\"pickup_latitude\":{:.6},\"pickup_longitude\":{:.6},\"dropoff_latitude\":{:.6},\"dropoff_longitude\":{:.6},\
             \"trip_id\":{},\"trip_distance\":{:.2},\"passenger_count\":{},\"pickup_datetime\":\"{}\",\
             \"dropoff_datetime\":\"{}\",\"total_amount\":{:.2},\"type\":\"trip\"}}",
            rng.uniform(40.5, 40.9),
            rng.uniform(-74.1, -73.7),
            rng.uniform(40.5, 40.9),
            rng.uniform(-74.1, -73.7),
            10_000_000_000 + i,
            rng.uniform(0.1, 30.0),
            1 + rng.next() % 6,
            pickup.format("%Y-%m-%dT%H:%M:%S%.3fZ"),
            drop.format("%Y-%m-%dT%H:%M:%S%.3fZ"),
            rng.uniform(3.0, 150.0),
        );
        lines.push((start, out.len()));
        out.push(b'\n');
        i += 1;
    }
    (out, lines)
}

fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

pub fn conversion(args: ConversionArgs) -> anyhow::Result<()> {
    let table = spillway_format::table::parse_ddl(SEED004_DDL, "kinesislab").context("seed 004 DDL")?;
    let output = match args.format {
        Format::Parquet => OutputFormat::Parquet(ParquetOptions::default()),
        Format::Orc => OutputFormat::Orc(OrcOptions::default()),
    };
    let plan = Conversion { columns: table.columns.clone(), deserializer: Deserializer::default(), output };
    let (data, lines) = taxi_ndjson(args.mib);
    let mb = data.len() as f64 / 1e6;
    println!("input: {} records, {:.1} MB of NDJSON (seed 004 taxi trips)", lines.len(), mb);

    let mut best: Option<(f64, usize)> = None;
    let mut peak_kib = 0;
    for _ in 0..args.runs.max(1) {
        let before = status_kib("VmRSS:").unwrap_or(0);
        // Resets VmHWM to the current RSS (Linux ≥ 4.0), so the peak below is this run's.
        let _ = std::fs::write("/proc/self/clear_refs", "5");
        let t = Instant::now();
        let out = convert(&plan, lines.iter().map(|&(s, e)| &data[s..e]))?;
        let secs = t.elapsed().as_secs_f64();
        peak_kib = peak_kib.max(status_kib("VmHWM:").unwrap_or(0).saturating_sub(before));
        if out.rows as usize != lines.len() || !out.failed.is_empty() {
            bail!("converted {} of {} records: {:?}", out.rows, lines.len(), out.failed.first());
        }
        if best.is_none_or(|(s, _)| secs < s) {
            best = Some((secs, out.body.len()));
        }
    }
    let (secs, size) = best.unwrap_or_default();
    let ours = mb / secs;
    println!(
        "spillway:  {ours:>7.1} MB/s  ({secs:.2} s, {:.1} MB out, peak memory above the input: {} MiB)",
        size as f64 / 1e6,
        peak_kib / 1024
    );

    if args.python == "none" {
        return Ok(());
    }
    let tmp = tempfile::tempdir()?;
    let dir = args.dir.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    let path = dir.join("taxi.ndjson");
    std::fs::write(&path, &data)?;
    drop(data);
    let fmt = if args.format == Format::Parquet { "parquet" } else { "orc" };
    let out = std::process::Command::new(&args.python)
        .args(["-c", PYARROW_SCRIPT])
        .arg(&path)
        .arg(fmt)
        .arg(args.runs.max(1).to_string())
        .output()
        .with_context(|| format!("cannot run {}", args.python))?;
    if !out.status.success() {
        bail!("pyarrow run failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).context("pyarrow output")?;
    let py_secs = result["secs"].as_f64().unwrap_or(f64::NAN);
    let theirs = mb / py_secs;
    println!(
        "pyarrow {}: {theirs:>7.1} MB/s  ({py_secs:.2} s, {:.1} MB out, {} rows; read_json + write_table, threads off)",
        result["version"].as_str().unwrap_or("?"),
        result["bytes"].as_f64().unwrap_or(0.0) / 1e6,
        result["rows"]
    );
    println!("ratio: {:.2}x pyarrow", ours / theirs);
    Ok(())
}
