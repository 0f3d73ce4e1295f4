//! Concurrent appenders on a tokio runtime: unique lsns, everything readable.

use std::collections::BTreeMap;
use std::time::Instant;

use bytes::Bytes;
use spillway_wal::{Wal, WalOptions};

const TASKS: u64 = 16;
const PER_TASK: u64 = 60;

fn payload(task: u64, i: u64) -> Bytes {
    let len = ((task * 131 + i * 17) % 2000) as usize;
    let mut data = format!("task {task} entry {i} ").into_bytes();
    data.resize(data.len() + len, (task ^ i) as u8);
    Bytes::from(data)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_get_unique_lsns_and_are_readable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = WalOptions { dir: dir.path().to_path_buf(), segment_bytes: 16 << 10, ..WalOptions::default() };
    let (wal, _) = Wal::open(opts.clone()).expect("open");
    let mut commits = wal.subscribe();
    let started = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let wal = wal.clone();
            tokio::spawn(async move {
                let mut out = Vec::new();
                for i in 0..PER_TASK {
                    let data = payload(task, i);
                    let lsn = wal.append(task, data.clone()).await.expect("append");
                    out.push((lsn, task, data));
                }
                out
            })
        })
        .collect();
    let mut expected = BTreeMap::new();
    for task in tasks {
        for (lsn, tag, data) in task.await.expect("task") {
            assert!(expected.insert(lsn, (tag, data)).is_none(), "lsn {lsn} twice");
        }
    }
    let elapsed = started.elapsed();
    let total = TASKS * PER_TASK;
    assert_eq!(expected.len() as u64, total);
    assert_eq!(expected.keys().copied().collect::<Vec<_>>(), (1..=total).collect::<Vec<_>>());
    assert_eq!(wal.next_lsn(), total + 1);
    assert!(commits.has_changed().expect("watch"));
    assert_eq!(*commits.borrow_and_update(), total + 1);
    eprintln!("{total} concurrent appends in {elapsed:?}");

    let check = |wal: &Wal| {
        let entries: Vec<_> = wal.reader(1).expect("reader").collect::<Result<_, _>>().expect("read");
        assert_eq!(entries.len() as u64, total);
        for entry in entries {
            let (tag, data) = &expected[&entry.lsn];
            assert_eq!((entry.tag, &entry.payload), (*tag, data), "lsn {}", entry.lsn);
        }
    };
    check(&wal);
    wal.close();
    drop(wal);
    let (wal, recovery) = tokio::task::spawn_blocking(move || Wal::open(opts)).await.expect("join").expect("reopen");
    assert_eq!((recovery.entries, recovery.truncated_bytes), (total, 0));
    check(&wal);
}
