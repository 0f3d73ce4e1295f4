//! `spillway generate`: puts synthetic records shaped like the seeds' producers into a stream.
//!
//! Each record is one JSON object followed by `\n`, sent with `PutRecordBatch` (base64 `Data`), as the
//! seeds' producers send them. The profiles (in [`profiles`]) mirror:
//!
//! - `iot-sensors` — seed 000 (S3 Tables + Firehose, Lambda `data_generator.py`): 10 sensors
//!   `sensor_001`..`sensor_010` in warehouse and office locations, each reading
//!   `{sensor_id, timestamp (epoch seconds), location, temperature (°C), humidity (%), pressure (hPa)}`.
//!   The seed does not list location names: sensors 1–5 are in `warehouse_a`/`warehouse_b`, 6–10 in
//!   `office_1`/`office_2` (a sensor's location never changes).
//! - `clickstream` — seed 001 (streaming ETL recipe, `test-data.json`): the seven fields the producer sends,
//!   `{event_type, user_id, session_id, page_url, referrer, user_agent, ip_address}`, with the seed's
//!   `page_view`/`click`/`purchase` events, `userNNN`/`sessionNNN` ids, `https://example.com/...` pages and
//!   `192.168.1.x` addresses (the seed's transform Lambda, not the producer, adds the timestamps).
//! - `telemetry` — seed 002 (F1-style car telemetry through API Gateway): the nested
//!   `{speed, rpm, gear, throttle, brakes, steering_angle, suspension{ride_height, damper_settings{..}},
//!   temperatures{engine, brakes{..}, tires{..}}, pressures{engine, brakes{..}, tires{..}}, fuel_consumption,
//!   lap_time}` record of the seed's sample (without `EXTRA2`, which the seed's Lambda adds).
//! - `taxi-trips` — seed 004 (NYC taxi trips, Kinesis replay → Lambda → Firehose → Parquet): the columns of
//!   the seed's `nyctaxitrips` Hive DDL (`pickup_latitude`, `pickup_longitude`, `dropoff_latitude`,
//!   `dropoff_longitude`, `trip_id` bigint, `trip_distance`, `passenger_count` int, `pickup_datetime` and
//!   `dropoff_datetime` as `yyyy-MM-dd HH:mm:ss`, `total_amount`). About 2 % of the records are the
//!   "spurious data" the seed's Lambda filters out: out-of-range values that keep the column types
//!   (coordinates outside New York, zero or negative distances, no passengers, a drop-off before the pick-up,
//!   a negative amount) — see `profiles::taxi_is_spurious`.
//!
//! Output is deterministic for a `--seed` (a splitmix64 generator; only timestamps follow the clock).
//! Records answered with an `ErrorCode` are sent again (only those); a summary line ends the run, and
//! the exit status is non-zero when records were still refused after the retries, as with `send`.
use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use base64::Engine;
use chrono::{DateTime, Utc};
use clap::{Args, ValueEnum};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::client::{self, ApiError, FirehoseClient};

/// Retries of records a `PutRecordBatch` answer reports with an `ErrorCode`.
const RECORD_RETRIES: u32 = 5;
/// Retries of a call that failed as a whole (connection error, 5xx, throttling).
const CALL_RETRIES: u32 = 10;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Profile {
    /// Seed 000: IoT sensor readings.
    IotSensors,
    /// Seed 001: e-commerce clickstream events.
    Clickstream,
    /// Seed 002: nested F1-style car telemetry.
    Telemetry,
    /// Seed 004: NYC taxi trips (with ~2 % spurious records).
    TaxiTrips,
}

#[derive(Args)]
pub struct GenerateArgs {
    /// Which seed's data to generate.
    #[arg(long, value_enum)]
    pub profile: Profile,
    /// The delivery stream to put the records into.
    #[arg(long)]
    pub stream: String,
    /// Records per second (0 = as fast as possible).
    #[arg(long, default_value_t = 100)]
    pub rate: u64,
    /// Stop after this many records.
    #[arg(long, conflicts_with = "duration")]
    pub count: Option<u64>,
    /// Stop after this long (e.g. `30s`, `5m`); without --count or --duration, runs until Ctrl-C.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// The spillway server.
    #[arg(long, env = "SPILLWAY_ENDPOINT", default_value = client::DEFAULT_ENDPOINT)]
    pub endpoint: String,
    /// Seed of the generator (the same seed gives the same records, timestamps aside).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Records per PutRecordBatch call (at most 500).
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..=500))]
    pub batch: u64,
}

/// splitmix64: small, fast, deterministic.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [lo, hi).
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.f64()
    }

    /// Uniform integer in [lo, hi] (inclusive).
    pub fn int(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next_u64() % ((hi - lo + 1) as u64)) as i64
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next_u64() % items.len() as u64) as usize]
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.f64() < p
    }
}

/// `x` rounded to `places` decimals (as Python's `round`, for the seeds' value shapes).
fn round(x: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (x * f).round() / f
}

pub mod profiles {
    use super::{Rng, round};
    use chrono::{DateTime, Duration, Utc};
    use serde_json::{Value, json};

    const LOCATIONS: [&str; 10] = [
        "warehouse_a",
        "warehouse_a",
        "warehouse_a",
        "warehouse_b",
        "warehouse_b",
        "office_1",
        "office_1",
        "office_2",
        "office_2",
        "office_2",
    ];

    /// Seed 000: one IoT sensor reading.
    pub fn iot_sensors(rng: &mut Rng, _seq: u64, now: DateTime<Utc>) -> Value {
        let i = rng.int(1, 10) as usize;
        json!({
            "sensor_id": format!("sensor_{i:03}"),
            "timestamp": now.timestamp(),
            "location": LOCATIONS[i - 1],
            "temperature": round(rng.range(18.0, 32.0), 2),
            "humidity": round(rng.range(30.0, 70.0), 2),
            "pressure": round(rng.range(990.0, 1030.0), 2),
        })
    }

    const PAGES: [(&str, &str); 6] = [
        ("page_view", "https://example.com/products"),
        ("page_view", "https://example.com/"),
        ("click", "https://example.com/cart"),
        ("click", "https://example.com/checkout"),
        ("purchase", "https://example.com/success"),
        ("page_view", "https://example.com/products/item"),
    ];
    const REFERRERS: [&str; 5] = [
        "https://google.com",
        "https://example.com/cart",
        "https://example.com/checkout",
        "https://example.com/products",
        "",
    ];
    const USER_AGENTS: [&str; 3] = [
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64)",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7)",
        "Mozilla/5.0 (X11; Linux x86_64)",
    ];

    /// Seed 001: one clickstream event as the seed's producer sends it.
    pub fn clickstream(rng: &mut Rng, _seq: u64, _now: DateTime<Utc>) -> Value {
        let user = rng.int(100, 999);
        let (event_type, page_url) = *rng.pick(&PAGES);
        json!({
            "event_type": event_type,
            "user_id": format!("user{user}"),
            "session_id": format!("session{}", rng.int(100, 999)),
            "page_url": page_url,
            "referrer": *rng.pick(&REFERRERS),
            "user_agent": USER_AGENTS[(user % 3) as usize],
            "ip_address": format!("192.168.1.{}", user % 254 + 1),
        })
    }

    fn corners(rng: &mut Rng, lo: f64, hi: f64, decimals: Option<i32>) -> Value {
        let mut v = || match decimals {
            Some(d) => json!(round(rng.range(lo, hi), d)),
            None => json!(rng.range(lo, hi)),
        };
        json!({"front_left": v(), "front_right": v(), "rear_left": v(), "rear_right": v()})
    }

    /// Seed 002: one nested car telemetry record.
    pub fn telemetry(rng: &mut Rng, _seq: u64, _now: DateTime<Utc>) -> Value {
        let brake_pressures = {
            let mut p = || rng.int(14, 20);
            json!({"front_left": p(), "front_right": p(), "rear_left": p(), "rear_right": p()})
        };
        json!({
            "speed": rng.range(80.0, 340.0),
            "rpm": rng.int(8000, 15500),
            "gear": rng.int(1, 8),
            "throttle": rng.f64(),
            "brakes": rng.f64(),
            "steering_angle": rng.range(-1.0, 1.0),
            "suspension": {
                "ride_height": rng.range(30.0, 40.0),
                "damper_settings": corners(rng, 1.0, 12.0, None),
            },
            "temperatures": {
                "engine": rng.range(85.0, 110.0),
                "brakes": corners(rng, 180.0, 260.0, None),
                "tires": corners(rng, 80.0, 115.0, None),
            },
            "pressures": {
                "engine": round(rng.range(3.5, 5.0), 1),
                "brakes": brake_pressures,
                "tires": corners(rng, 1.5, 2.0, Some(1)),
            },
            "fuel_consumption": round(rng.range(1.5, 3.0), 1),
            "lap_time": round(rng.range(70.0, 90.0), 1),
        })
    }

    /// The taxi-trips share of spurious records.
    pub const TAXI_SPURIOUS_SHARE: f64 = 0.02;
    const NYC_LAT: (f64, f64) = (40.55, 40.92);
    const NYC_LON: (f64, f64) = (-74.05, -73.70);
    const TS_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

    /// Seed 004: one NYC taxi trip (the Hive DDL's columns); ~2 % are spurious.
    pub fn taxi_trips(rng: &mut Rng, seq: u64, now: DateTime<Utc>) -> Value {
        let pickup = (now - Duration::seconds(rng.int(60, 3600))).naive_utc();
        let trip_seconds = rng.int(120, 3000);
        let dropoff = pickup + Duration::seconds(trip_seconds);
        let distance = round(rng.range(0.3, 20.0), 2);
        let passengers = rng.int(1, 6);
        let total = round(3.0 + distance * 2.5 + trip_seconds as f64 / 60.0 * 0.5 + rng.range(0.0, 8.0), 2);
        let mut trip = json!({
            "pickup_latitude": rng.range(NYC_LAT.0 + 0.05, NYC_LAT.1 - 0.05),
            "pickup_longitude": rng.range(NYC_LON.0 + 0.05, NYC_LON.1 - 0.05),
            "dropoff_latitude": rng.range(NYC_LAT.0 + 0.05, NYC_LAT.1 - 0.05),
            "dropoff_longitude": rng.range(NYC_LON.0 + 0.05, NYC_LON.1 - 0.05),
            "trip_id": seq + 1,
            "trip_distance": distance,
            "passenger_count": passengers,
            "pickup_datetime": pickup.format(TS_FORMAT).to_string(),
            "dropoff_datetime": dropoff.format(TS_FORMAT).to_string(),
            "total_amount": total,
        });
        if rng.chance(TAXI_SPURIOUS_SHARE) {
            match rng.int(0, 4) {
                0 => {
                    trip["pickup_latitude"] = json!(0.0);
                    trip["pickup_longitude"] = json!(0.0);
                }
                1 => trip["trip_distance"] = json!(-round(rng.range(0.0, 5.0), 2)),
                2 => trip["passenger_count"] = json!(0),
                3 => {
                    let before = pickup - Duration::seconds(trip_seconds);
                    trip["dropoff_datetime"] = json!(before.format(TS_FORMAT).to_string());
                }
                _ => trip["total_amount"] = json!(-total),
            }
        }
        trip
    }

    /// Whether a taxi trip is one of the spurious records (what the seed's Lambda filters out).
    #[cfg(test)]
    pub fn taxi_is_spurious(trip: &Value) -> bool {
        use chrono::NaiveDateTime;
        let f = |k: &str| trip[k].as_f64().unwrap_or(f64::NAN);
        let in_nyc =
            |lat: f64, lon: f64| (NYC_LAT.0..=NYC_LAT.1).contains(&lat) && (NYC_LON.0..=NYC_LON.1).contains(&lon);
        let ts = |k: &str| trip[k].as_str().and_then(|s| NaiveDateTime::parse_from_str(s, TS_FORMAT).ok());
        let ordered = matches!((ts("pickup_datetime"), ts("dropoff_datetime")), (Some(p), Some(d)) if d > p);
        !(in_nyc(f("pickup_latitude"), f("pickup_longitude"))
            && in_nyc(f("dropoff_latitude"), f("dropoff_longitude"))
            && f("trip_distance") > 0.0
            && (1..=6).contains(&trip["passenger_count"].as_i64().unwrap_or(0))
            && ordered
            && f("total_amount") > 0.0)
    }
}

impl Profile {
    fn generator(self) -> fn(&mut Rng, u64, DateTime<Utc>) -> Value {
        match self {
            Profile::IotSensors => profiles::iot_sensors,
            Profile::Clickstream => profiles::clickstream,
            Profile::Telemetry => profiles::telemetry,
            Profile::TaxiTrips => profiles::taxi_trips,
        }
    }
}

/// Records per batch: `batch`, but at a limited rate no more than ~1/10 s worth, so pacing is smooth.
pub fn paced_batch_size(rate: u64, batch: u64) -> u64 {
    if rate == 0 { batch } else { (rate / 10).clamp(1, batch) }
}

/// When (after the start) the batch beginning at record `seq` is due at `rate` records/s.
pub fn due_offset(seq: u64, rate: u64) -> Duration {
    if rate == 0 { Duration::ZERO } else { Duration::from_secs_f64(seq as f64 / rate as f64) }
}

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    bytes: AtomicU64,
    failed: AtomicU64,
}

pub fn run(args: GenerateArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(generate(args))
}

async fn generate(args: GenerateArgs) -> anyhow::Result<()> {
    let client = FirehoseClient::new(&args.endpoint)?;
    let cancel = CancellationToken::new();
    {
        let cancel = cancel.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                cancel.cancel();
            }
        });
    }
    let counters = Arc::new(Counters::default());
    let start = Instant::now();
    let progress = std::io::stderr().is_terminal().then(|| {
        let counters = counters.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            loop {
                tick.tick().await;
                print_progress(&counters, start.elapsed());
            }
        })
    });

    let result = produce(&args, &client, &counters, &cancel, start).await;
    if let Some(task) = progress {
        task.abort();
        eprint!("\r\x1b[2K");
        let _ = std::io::stderr().flush();
    }
    result?;

    let elapsed = start.elapsed().as_secs_f64();
    let sent = counters.sent.load(Ordering::Relaxed);
    let rate = if elapsed > 0.0 { sent as f64 / elapsed } else { 0.0 };
    println!(
        "sent {sent} records ({} bytes) to {} in {elapsed:.2} s ({rate:.1} records/s); {} failed after retries",
        counters.bytes.load(Ordering::Relaxed),
        args.stream,
        counters.failed.load(Ordering::Relaxed),
    );
    // As `spillway send`: a record that never got in makes the run a failure for scripts.
    let failed = counters.failed.load(Ordering::Relaxed);
    if failed > 0 {
        bail!("{failed} records were not accepted after {RECORD_RETRIES} retries");
    }
    Ok(())
}

fn print_progress(counters: &Counters, elapsed: Duration) {
    let sent = counters.sent.load(Ordering::Relaxed);
    let secs = elapsed.as_secs_f64();
    let rate = if secs > 0.0 { sent as f64 / secs } else { 0.0 };
    let failed = counters.failed.load(Ordering::Relaxed);
    eprint!("\r\x1b[2K{sent} records sent, {rate:.1} records/s, {failed} failed");
    let _ = std::io::stderr().flush();
}

async fn produce(
    args: &GenerateArgs,
    client: &FirehoseClient,
    counters: &Counters,
    cancel: &CancellationToken,
    start: Instant,
) -> anyhow::Result<()> {
    let generator = args.profile.generator();
    let mut rng = Rng::new(args.seed);
    let deadline = args.duration.map(|d| start + d);
    let batch_size = paced_batch_size(args.rate, args.batch);
    let mut seq = 0u64;
    loop {
        let n = match args.count {
            Some(count) => batch_size.min(count - seq),
            None => batch_size,
        };
        if n == 0 || cancel.is_cancelled() {
            break;
        }
        let due = start + due_offset(seq, args.rate);
        if deadline.is_some_and(|d| due >= d) {
            break;
        }
        if due > Instant::now() {
            tokio::select! {
                _ = tokio::time::sleep_until(due.into()) => {}
                _ = cancel.cancelled() => break,
            }
        }
        let now = Utc::now();
        let records: Vec<String> = (seq..seq + n)
            .map(|s| {
                let mut line = generator(&mut rng, s, now).to_string();
                line.push('\n');
                line
            })
            .collect();
        seq += n;
        put_batch(client, &args.stream, records, counters, cancel).await?;
    }
    Ok(())
}

/// Puts `records`, retrying those the answer reports failed (up to [`RECORD_RETRIES`] times) and
/// failed calls (up to [`CALL_RETRIES`] times); counts what was accepted and what failed for good.
async fn put_batch(
    client: &FirehoseClient,
    stream: &str,
    mut records: Vec<String>,
    counters: &Counters,
    cancel: &CancellationToken,
) -> anyhow::Result<()> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut record_attempt = 0u32;
    let mut call_attempt = 0u32;
    loop {
        let body = json!({
            "DeliveryStreamName": stream,
            "Records": records.iter().map(|r| json!({"Data": b64.encode(r)})).collect::<Vec<_>>(),
        });
        match client.call("PutRecordBatch", &body).await {
            Ok(answer) => {
                call_attempt = 0;
                let responses = answer["RequestResponses"].as_array().map(Vec::as_slice).unwrap_or(&[]);
                let mut failed = Vec::new();
                for (i, record) in records.into_iter().enumerate() {
                    let error = responses.get(i).is_none_or(|r| r.get("ErrorCode").is_some_and(|e| !e.is_null()));
                    if error {
                        failed.push(record);
                    } else {
                        counters.sent.fetch_add(1, Ordering::Relaxed);
                        counters.bytes.fetch_add(record.len() as u64, Ordering::Relaxed);
                    }
                }
                if failed.is_empty() {
                    return Ok(());
                }
                if record_attempt >= RECORD_RETRIES {
                    counters.failed.fetch_add(failed.len() as u64, Ordering::Relaxed);
                    return Ok(());
                }
                record_attempt += 1;
                records = failed;
                if !backoff(record_attempt, cancel).await {
                    counters.failed.fetch_add(records.len() as u64, Ordering::Relaxed);
                    return Ok(());
                }
            }
            Err(e) => {
                if let Some(api) = e.downcast_ref::<ApiError>() {
                    let retryable = api.status >= 500
                        || api.status == 429
                        || matches!(api.error_type.as_str(), "ServiceUnavailableException" | "ThrottlingException");
                    if !retryable {
                        if api.error_type == "ResourceNotFoundException" {
                            bail!("{api} (is the stream {stream:?} created? see `spillway streams`)");
                        }
                        return Err(e).context(format!("PutRecordBatch to {stream} failed"));
                    }
                }
                if call_attempt >= CALL_RETRIES {
                    return Err(e).context(format!("PutRecordBatch to {stream} failed {} times", CALL_RETRIES + 1));
                }
                call_attempt += 1;
                if !backoff(call_attempt, cancel).await {
                    counters.failed.fetch_add(records.len() as u64, Ordering::Relaxed);
                    return Ok(());
                }
            }
        }
    }
}

/// Sleeps 100 ms × 2^(attempt-1), at most 5 s; false when cancelled meanwhile.
async fn backoff(attempt: u32, cancel: &CancellationToken) -> bool {
    let delay = Duration::from_millis(100u64.saturating_mul(1 << (attempt - 1).min(6))).min(Duration::from_secs(5));
    tokio::select! {
        _ = tokio::time::sleep(delay) => true,
        _ = cancel.cancelled() => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2025-06-01T12:00:00Z").unwrap().with_timezone(&Utc)
    }

    fn sample(profile: Profile, seed: u64, n: u64) -> Vec<String> {
        let mut rng = Rng::new(seed);
        let g = profile.generator();
        (0..n).map(|s| g(&mut rng, s, now()).to_string()).collect()
    }

    fn keys(v: &Value) -> Vec<&str> {
        let mut k: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        k.sort_unstable();
        k
    }

    #[test]
    fn iot_sensors_have_the_seed_fields() {
        let mut sensors = std::collections::BTreeSet::new();
        for line in sample(Profile::IotSensors, 1, 1000) {
            let v: Value = serde_json::from_str(&line).unwrap();
            assert_eq!(keys(&v), ["humidity", "location", "pressure", "sensor_id", "temperature", "timestamp"]);
            assert_eq!(v["timestamp"].as_i64(), Some(now().timestamp()));
            let loc = v["location"].as_str().unwrap();
            assert!(loc.starts_with("warehouse") || loc.starts_with("office"), "{loc}");
            assert!((18.0..=32.0).contains(&v["temperature"].as_f64().unwrap()));
            assert!((30.0..=70.0).contains(&v["humidity"].as_f64().unwrap()));
            assert!((990.0..=1030.0).contains(&v["pressure"].as_f64().unwrap()));
            sensors.insert(v["sensor_id"].as_str().unwrap().to_string());
        }
        let expected: std::collections::BTreeSet<String> = (1..=10).map(|i| format!("sensor_{i:03}")).collect();
        assert_eq!(sensors, expected);
    }

    #[test]
    fn clickstream_has_the_seed_fields() {
        for line in sample(Profile::Clickstream, 1, 200) {
            let v: Value = serde_json::from_str(&line).unwrap();
            assert_eq!(
                keys(&v),
                ["event_type", "ip_address", "page_url", "referrer", "session_id", "user_agent", "user_id"]
            );
            assert!(["page_view", "click", "purchase"].contains(&v["event_type"].as_str().unwrap()));
            assert!(v["user_id"].as_str().unwrap().starts_with("user"));
            assert!(v["session_id"].as_str().unwrap().starts_with("session"));
            assert!(v["page_url"].as_str().unwrap().starts_with("https://example.com/"));
            assert!(v["ip_address"].as_str().unwrap().starts_with("192.168.1."));
        }
    }

    #[test]
    fn telemetry_has_the_seed_structure() {
        let corners = ["front_left", "front_right", "rear_left", "rear_right"];
        for line in sample(Profile::Telemetry, 1, 200) {
            let v: Value = serde_json::from_str(&line).unwrap();
            assert_eq!(
                keys(&v),
                [
                    "brakes",
                    "fuel_consumption",
                    "gear",
                    "lap_time",
                    "pressures",
                    "rpm",
                    "speed",
                    "steering_angle",
                    "suspension",
                    "temperatures",
                    "throttle"
                ]
            );
            assert!(v["rpm"].is_u64() && v["gear"].is_u64());
            assert!(v["suspension"]["ride_height"].is_f64());
            assert_eq!(keys(&v["suspension"]["damper_settings"]), corners);
            assert!(v["temperatures"]["engine"].is_f64());
            for group in ["brakes", "tires"] {
                assert_eq!(keys(&v["temperatures"][group]), corners);
                assert_eq!(keys(&v["pressures"][group]), corners);
            }
            assert!(v["pressures"]["brakes"]["front_left"].is_u64());
            assert!(v["pressures"]["engine"].is_f64());
        }
    }

    #[test]
    fn taxi_trips_have_the_ddl_columns_and_about_two_percent_spurious() {
        let lines = sample(Profile::TaxiTrips, 7, 10_000);
        let mut spurious = 0;
        for (i, line) in lines.iter().enumerate() {
            let v: Value = serde_json::from_str(line).unwrap();
            assert_eq!(
                keys(&v),
                [
                    "dropoff_datetime",
                    "dropoff_latitude",
                    "dropoff_longitude",
                    "passenger_count",
                    "pickup_datetime",
                    "pickup_latitude",
                    "pickup_longitude",
                    "total_amount",
                    "trip_distance",
                    "trip_id"
                ]
            );
            assert_eq!(v["trip_id"].as_u64(), Some(i as u64 + 1));
            assert!(v["passenger_count"].is_i64());
            if profiles::taxi_is_spurious(&v) {
                spurious += 1;
            }
        }
        assert!((100..=300).contains(&spurious), "{spurious} spurious of 10000");
    }

    #[test]
    fn the_same_seed_gives_the_same_records() {
        for profile in [Profile::IotSensors, Profile::Clickstream, Profile::Telemetry, Profile::TaxiTrips] {
            assert_eq!(sample(profile, 42, 50), sample(profile, 42, 50));
            assert_ne!(sample(profile, 42, 50), sample(profile, 43, 50));
        }
    }

    #[test]
    fn pacing_math() {
        assert_eq!(paced_batch_size(0, 500), 500);
        assert_eq!(paced_batch_size(50, 500), 5);
        assert_eq!(paced_batch_size(5, 500), 1);
        assert_eq!(paced_batch_size(100_000, 500), 500);
        assert_eq!(paced_batch_size(1000, 20), 20);
        assert_eq!(due_offset(0, 50), Duration::ZERO);
        assert_eq!(due_offset(50, 50), Duration::from_secs(1));
        assert_eq!(due_offset(25, 100), Duration::from_millis(250));
        assert_eq!(due_offset(1_000_000, 0), Duration::ZERO);
        // batches of 5 at 50/s due before a 1 s deadline: 0, 0.1, ..., 0.9 s → 50 records
        let due: Vec<u64> = (0..).step_by(5).take_while(|&s| due_offset(s, 50) < Duration::from_secs(1)).collect();
        assert_eq!(due.len() * 5, 50);
    }
}
