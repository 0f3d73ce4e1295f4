//! `spillway serve`: opens the WAL and the stream registry, serves the API, shuts down on
//! SIGINT/SIGTERM after finishing the requests in flight and closing the WAL.

use crate::config::Config;
use anyhow::Context;
use clap::Args;
use spillway_api::{ApiConfig, sigv4};
use spillway_destination::ObjectStores;
use spillway_format::table::TableRegistry;
use spillway_pipeline::processors::functions::FunctionRegistry;
use spillway_pipeline::{Service, ServiceConfig};
use spillway_wal::{Wal, WalOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

#[derive(Args)]
pub struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:4573].
    #[arg(long)]
    listen: Option<String>,
    /// Where records, stream definitions and the local buckets are kept [default: ./spillway-data].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Optional configuration file (spillway.toml).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Region used in ARNs [default: us-east-1].
    #[arg(long)]
    region: Option<String>,
    /// Account id used in ARNs [default: 000000000000].
    #[arg(long)]
    account_id: Option<String>,
}

const DEFAULT_WAL_MAX_BYTES: u64 = 8 << 30;
const DEFAULT_SEGMENT_BYTES: u64 = 64 << 20;

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let config = match &args.config {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    let listen = args.listen.or(config.server.listen.clone()).unwrap_or_else(|| "127.0.0.1:4573".into());
    let data_dir = args.data_dir.or(config.server.data_dir.clone()).unwrap_or_else(|| PathBuf::from("./spillway-data"));
    let region = args.region.or(config.server.region.clone()).unwrap_or_else(|| "us-east-1".into());
    let account_id = args.account_id.or(config.server.account_id.clone()).unwrap_or_else(|| "000000000000".into());
    if account_id.len() != 12 || !account_id.bytes().all(|b| b.is_ascii_digit()) {
        anyhow::bail!("account id must be 12 digits, got {account_id:?}");
    }
    std::fs::create_dir_all(&data_dir).with_context(|| format!("cannot create {}", data_dir.display()))?;

    let wal_opts = WalOptions {
        dir: data_dir.join("wal"),
        segment_bytes: config.wal.segment_bytes.unwrap_or(DEFAULT_SEGMENT_BYTES),
        max_bytes: config.wal.max_bytes.unwrap_or(DEFAULT_WAL_MAX_BYTES),
        ..WalOptions::default()
    };
    let (wal, recovery) = Wal::open(wal_opts).context("cannot open the write-ahead log")?;
    tracing::info!(
        entries = recovery.entries,
        segments = recovery.segments,
        truncated_bytes = recovery.truncated_bytes,
        next_lsn = recovery.next_lsn,
        "write-ahead log recovered"
    );
    let iceberg = Arc::new(config.catalogs(&data_dir));
    let stores = Arc::new(ObjectStores::new(data_dir.join("buckets"), config.s3, config.buckets));
    let gzip_level = config.delivery.gzip_level.unwrap_or(spillway_format::compression::DEFAULT_LEVEL).min(9);
    let shutdown_timeout = Duration::from_secs(config.delivery.shutdown_timeout_secs.unwrap_or(10));
    // Relative paths in `[functions]` are relative to the folder of spillway.toml.
    let config_dir =
        args.config.as_deref().and_then(|p| p.parent()).map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
    let functions = Arc::new(
        FunctionRegistry::new(config.functions, &config_dir).context("invalid [functions] in the configuration")?,
    );
    let tables = Arc::new(
        TableRegistry::new(Some(data_dir.join("tables")), &config.tables)
            .context("invalid [[tables]] in the configuration")?,
    );
    let service = Service::open(
        ServiceConfig {
            region,
            account_id,
            streams_dir: data_dir.join("streams"),
            delivery_dir: data_dir.join("delivery"),
            stores,
            gzip_level,
            functions: Arc::clone(&functions),
            spill_dir: data_dir.join("spill"),
            active_partitions_limit: config
                .delivery
                .active_partitions_limit
                .unwrap_or(spillway_pipeline::service::DEFAULT_ACTIVE_PARTITIONS_LIMIT),
            partition_memory_bytes: config
                .delivery
                .partition_memory_bytes
                .unwrap_or(spillway_pipeline::service::DEFAULT_PARTITION_MEMORY_BYTES),
            tables,
            iceberg: Arc::clone(&iceberg),
            logs_dir: data_dir.join("logs"),
        },
        wal.clone(),
    )?;

    let verifier = if config.auth.credentials.is_empty() {
        tracing::warn!("no credentials configured: every request is accepted without checking its signature");
        None
    } else {
        let creds = config
            .auth
            .credentials
            .into_iter()
            .map(|c| sigv4::Credentials {
                access_key_id: c.access_key_id,
                secret_access_key: c.secret_access_key,
                session_token: c.session_token,
            })
            .collect();
        Some(sigv4::Verifier::new("firehose", creds))
    };

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let iceberg_tables = config.iceberg_tables;
    let result = runtime.block_on(async move {
        // `[[iceberg_tables]]`: created when missing, before any stream delivers.
        for t in &iceberg_tables {
            let (db, table) = t
                .name
                .split_once('.')
                .with_context(|| format!("[[iceberg_tables]] name {:?} must be DATABASE.TABLE", t.name))?;
            let catalog = iceberg
                .open(&t.catalog, None)
                .await
                .with_context(|| format!("cannot open the Iceberg catalog {}", t.catalog))?;
            if catalog.create_table(db, table, &t.fields, &t.partition_by, true).await? {
                tracing::info!(catalog = %t.catalog, table = %t.name, "created Iceberg table");
            }
        }
        let listener =
            tokio::net::TcpListener::bind(&listen).await.with_context(|| format!("cannot listen on {listen}"))?;
        tracing::info!(listen = %listener.local_addr()?, data_dir = %data_dir.display(), "spillway is serving");
        let shutdown = CancellationToken::new();
        tokio::spawn(wait_for_signal(shutdown.clone()));
        service.start_delivery();
        let served = spillway_api::serve(listener, Arc::new(service.clone()), ApiConfig { verifier }, shutdown).await;
        // Ingest has stopped: deliver what is buffered, within the deadline; the rest stays in the WAL.
        service.shutdown(Instant::now() + shutdown_timeout).await;
        functions.shutdown().await;
        served?;
        anyhow::Ok(())
    });
    wal.close();
    tracing::info!("spillway stopped");
    result
}

async fn wait_for_signal(shutdown: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                let _ = ctrl_c.await;
                shutdown.cancel();
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutting down");
    shutdown.cancel();
}
