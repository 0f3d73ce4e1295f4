//! Group-commit throughput: `cargo run --release -p spillway-wal --example throughput
//! -- [dir] [appenders] [payload_bytes] [seconds]`. Appenders append (and ack) in a
//! loop; prints appends/s and MB/s including fsync.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use spillway_wal::{Wal, WalOptions};

fn arg<T: std::str::FromStr>(n: usize, default: T) -> T {
    std::env::args().nth(n).and_then(|a| a.parse().ok()).unwrap_or(default)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir: PathBuf = arg(1, std::env::temp_dir().join("spillway-wal-throughput"));
    let appenders: u64 = arg(2, 32);
    let payload_len: usize = arg(3, 100_000);
    let seconds: u64 = arg(4, 5);
    let _ = std::fs::remove_dir_all(&dir);
    let (wal, _) = Wal::open(WalOptions { dir: dir.clone(), ..WalOptions::default() })?;
    let payload = Bytes::from(vec![0x5a; payload_len]);
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let tasks: Vec<_> = (0..appenders)
        .map(|tag| {
            let (wal, payload, done) = (wal.clone(), payload.clone(), done.clone());
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    let lsn = wal.append(tag, payload.clone()).await?;
                    done.fetch_add(1, Ordering::Relaxed);
                    if lsn % 64 == 0 {
                        let wal = wal.clone();
                        tokio::task::spawn_blocking(move || wal.ack(tag, lsn + 1)).await??;
                    }
                }
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
            })
        })
        .collect();
    for task in tasks {
        task.await?.map_err(|e| e.to_string())?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let appends = done.load(Ordering::Relaxed) as f64;
    println!(
        "{appenders} appenders x {payload_len} B: {:.0} appends/s, {:.1} MB/s, {} segments",
        appends / elapsed,
        appends * payload_len as f64 / elapsed / 1e6,
        wal.stats().segments,
    );
    wal.close();
    drop(wal);
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
