//! Test helpers shared by the workspace's tests: an in-process server on port 0 with its own
//! temporary data directory, and polling with a deadline (tests never sleep to wait for state).
//!
//! [`TestServer`] wires the same pieces as `spillway serve` (WAL, stream registry, delivery
//! supervisors, API) but in the test's process, so Rust tests can drive the HTTP API without a
//! built binary.

use spillway_api::ApiConfig;
use spillway_destination::ObjectStores;
use spillway_pipeline::{Service, ServiceConfig};
use spillway_wal::{Wal, WalOptions};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// A temporary data directory, removed on drop.
pub fn data_dir() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("spillway-test-").tempdir().expect("create temp dir")
}

/// Polls `check` until it returns `Some`, or panics with `what` after `deadline`.
pub fn eventually<T>(what: &str, deadline: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = check() {
            return v;
        }
        if start.elapsed() > deadline {
            panic!("timed out after {deadline:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A server running inside the test process on `127.0.0.1:<free port>`.
pub struct TestServer {
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    runtime: Option<tokio::runtime::Runtime>,
    shutdown: CancellationToken,
    service: Service,
    wal: Wal,
    _dir: Option<tempfile::TempDir>,
}

impl TestServer {
    /// Starts a server with a fresh temporary data directory.
    pub fn start() -> TestServer {
        let dir = data_dir();
        let path = dir.path().to_path_buf();
        let mut s = Self::start_in(&path);
        s._dir = Some(dir);
        s
    }

    /// Starts a server on an existing data directory (kept after the server stops).
    pub fn start_in(data_dir: &Path) -> TestServer {
        let runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio runtime");
        let (wal, _) =
            Wal::open(WalOptions { dir: data_dir.join("wal"), ..WalOptions::default() }).expect("open the WAL");
        let service = Service::open(
            ServiceConfig {
                region: "us-east-1".into(),
                account_id: "123456789012".into(),
                streams_dir: data_dir.join("streams"),
                delivery_dir: data_dir.join("delivery"),
                stores: Arc::new(ObjectStores::new(data_dir.join("buckets"), None, HashMap::new())),
                gzip_level: 6,
                functions: Arc::new(spillway_pipeline::processors::functions::FunctionRegistry::empty()),
                spill_dir: data_dir.join("spill"),
                active_partitions_limit: spillway_pipeline::service::DEFAULT_ACTIVE_PARTITIONS_LIMIT,
                partition_memory_bytes: spillway_pipeline::service::DEFAULT_PARTITION_MEMORY_BYTES,
                tables: Arc::new(
                    spillway_format::table::TableRegistry::new(Some(data_dir.join("tables")), &[])
                        .expect("open the tables folder"),
                ),
                iceberg: Arc::new(spillway_destination::iceberg::catalogs::Catalogs::new(
                    data_dir,
                    HashMap::new(),
                    Default::default(),
                )),
                logs_dir: data_dir.join("logs"),
            },
            wal.clone(),
        )
        .expect("open the service");
        let shutdown = CancellationToken::new();
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("bind a free port");
        let addr = listener.local_addr().expect("local address");
        let (svc, token) = (service.clone(), shutdown.clone());
        runtime.spawn(async move {
            svc.start_delivery();
            let _ = spillway_api::serve(listener, Arc::new(svc), ApiConfig::default(), token).await;
        });
        TestServer {
            addr,
            data_dir: data_dir.to_path_buf(),
            runtime: Some(runtime),
            shutdown,
            service,
            wal,
            _dir: None,
        }
    }

    /// `http://127.0.0.1:<port>`
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Where the local folder of `bucket` is.
    pub fn bucket_dir(&self, bucket: &str) -> PathBuf {
        self.data_dir.join("buckets").join(bucket)
    }

    /// Stops like SIGTERM does: no new requests, buffered records delivered (deadline 5 s), WAL closed.
    pub fn stop(mut self) {
        self.stop_inner();
    }

    fn stop_inner(&mut self) {
        let Some(runtime) = self.runtime.take() else { return };
        self.shutdown.cancel();
        let svc = self.service.clone();
        runtime.block_on(svc.shutdown(Instant::now() + Duration::from_secs(5)));
        runtime.shutdown_timeout(Duration::from_secs(5));
        self.wal.close();
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop_inner();
    }
}
