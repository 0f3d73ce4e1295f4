//! The `spillway` binary: command line, start-up and wiring, shutdown.
//!
//! Domain logic lives in the library crates; this file only parses arguments and hands over.

mod bench;
mod bench_conversion;
mod bench_delivery;
mod bench_iceberg;
mod bench_processing;
mod client;
mod config;
mod generate;
mod inspect;
mod logs;
mod send;
mod serve;
mod streams;
mod tables;

use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "spillway",
    version,
    about = "A self-hosted delivery service that speaks the Amazon Data Firehose API"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve(serve::ServeArgs),
    /// Table definitions: the local stand-ins for the Glue tables of SchemaConfiguration.
    Tables {
        #[command(subcommand)]
        command: tables::TablesCommand,
    },
    /// Inspect the write-ahead log.
    Wal {
        #[command(subcommand)]
        command: WalCommand,
    },
    /// Put records from a file or stdin (NDJSON, one record per line) with PutRecordBatch.
    Send(send::SendArgs),
    /// Error events of streams with CloudWatchLoggingOptions enabled (`<data-dir>/logs`).
    Logs(logs::LogsArgs),
    /// Generate the seeds' data (IoT sensors, clickstream, telemetry, taxi trips) into a stream.
    Generate(generate::GenerateArgs),
    /// List, describe and flush the delivery streams of a running server.
    Streams {
        #[command(subcommand)]
        command: streams::StreamsCommand,
    },
    /// Benchmarks.
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
}

#[derive(Subcommand)]
enum WalCommand {
    /// Print the WAL's entries (the server must be stopped: the WAL is locked while it runs).
    Inspect {
        /// The server's data directory.
        #[arg(long, default_value = "./spillway-data")]
        data_dir: PathBuf,
        /// Print every stored RecordId, one per line, instead of one line per entry.
        #[arg(long)]
        record_ids: bool,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Drive PutRecordBatch over HTTP/1.1 keep-alive and report throughput and latency.
    Ingest(bench::IngestArgs),
    /// End-to-end delivery to the embedded store: throughput, freshness, backlog drain.
    Delivery(bench_delivery::DeliveryArgs),
    /// Transformation and dynamic partitioning: jq into many partitions, a warm Python handler.
    Processing(bench_processing::ProcessingArgs),
    /// Record format conversion (NDJSON to Parquet or ORC) on one core, against pyarrow.
    Conversion(bench_conversion::ConversionArgs),
    /// Records into one Iceberg table of the embedded catalog: rows/s, commit latency, files.
    Iceberg(bench_iceberg::IcebergArgs),
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Tables { command } => tables::run(command),
        Command::Send(args) => send::run(args),
        Command::Logs(args) => logs::run(args),
        Command::Generate(args) => generate::run(args),
        Command::Streams { command } => streams::run(command),
        Command::Wal { command: WalCommand::Inspect { data_dir, record_ids } } => inspect::run(&data_dir, record_ids),
        Command::Bench { command: BenchCommand::Ingest(args) } => bench::ingest(args),
        Command::Bench { command: BenchCommand::Delivery(args) } => bench_delivery::delivery(args),
        Command::Bench { command: BenchCommand::Processing(args) } => bench_processing::processing(args),
        Command::Bench { command: BenchCommand::Conversion(args) } => bench_conversion::conversion(args),
        Command::Bench { command: BenchCommand::Iceberg(args) } => bench_iceberg::iceberg(args),
    }
}
