//! `spillway wal inspect`: reads the WAL of a stopped server and prints its entries, or every
//! stored RecordId (the crash tests compare those with what clients were told).

use anyhow::Context;
use spillway_model::entry::EntryView;
use spillway_model::record_id::{RecordPosition, encode_into};
use spillway_pipeline::registry::StreamStore;
use spillway_wal::{Wal, WalOptions};
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

pub fn run(data_dir: &Path, record_ids: bool) -> anyhow::Result<()> {
    let (_, streams) = StreamStore::open(data_dir.join("streams"))?;
    let names: HashMap<u64, String> = streams.into_iter().map(|s| (s.id, s.name)).collect();
    let (wal, recovery) = Wal::open(WalOptions { dir: data_dir.join("wal"), ..WalOptions::default() })
        .context("cannot open the write-ahead log (is the server still running?)")?;
    let stats = wal.stats();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    if !record_ids {
        writeln!(
            out,
            "{}",
            serde_json::json!({
                "wal_id": format!("{:016x}", stats.wal_id),
                "segments": stats.segments,
                "bytes": stats.bytes,
                "first_lsn": stats.first_lsn,
                "next_lsn": stats.next_lsn,
                "recovered_entries": recovery.entries,
                "truncated_bytes": recovery.truncated_bytes,
            })
        )?;
    }
    let mut id = String::with_capacity(37);
    for entry in wal.reader(stats.first_lsn)? {
        let entry = entry?;
        let view = EntryView::parse(&entry.payload).with_context(|| format!("entry {} is not a put", entry.lsn))?;
        if record_ids {
            for index in 0..view.len() {
                id.clear();
                encode_into(&mut id, RecordPosition { wal_id: stats.wal_id, lsn: entry.lsn, index: index as u16 });
                id.push('\n');
                out.write_all(id.as_bytes())?;
            }
        } else {
            writeln!(
                out,
                "{}",
                serde_json::json!({
                    "lsn": entry.lsn,
                    "stream": names.get(&entry.tag),
                    "tag": format!("{:016x}", entry.tag),
                    "acked": entry.lsn < wal.acked(entry.tag),
                    "records": view.len(),
                    "bytes": view.data_len(),
                    "arrival_ms": view.arrival_ms,
                })
            )?;
        }
    }
    out.flush()?;
    wal.close();
    Ok(())
}
