//! Model-based crash test: random appends, acks, retires, crashes with torn tails, and
//! reopens; after every reopen the log must open cleanly and still hold every returned
//! entry that its tag has not acked past.
//!
//! Frames for torn tails are built here from the documented on-disk format, so this
//! also checks the format documentation against the implementation.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use spillway_wal::{AppendError, Lsn, Wal, WalOptions};

const TAGS: u64 = 4;

#[derive(Debug, Clone)]
enum Tail {
    Nothing,
    Zeros(usize),
    Garbage(Vec<u8>),
    /// `complete` valid frames with the next lsns, then a prefix of one more frame.
    Frames {
        complete: usize,
        payloads: Vec<Vec<u8>>,
        cut: usize,
    },
    /// A new segment file whose header write was torn.
    TornSegment(usize),
}

#[derive(Debug, Clone)]
enum Op {
    Append { tag: u64, payload: Vec<u8> },
    Ack { tag: u64, fraction: u8 },
    Retire { tag: u64 },
    Crash(Tail),
    Reopen,
}

fn tail_strategy() -> impl Strategy<Value = Tail> {
    prop_oneof![
        1 => Just(Tail::Nothing),
        2 => (1usize..200).prop_map(Tail::Zeros),
        2 => prop::collection::vec(any::<u8>(), 1..200).prop_map(Tail::Garbage),
        4 => (0usize..3, prop::collection::vec(prop::collection::vec(any::<u8>(), 0..120), 3), any::<usize>())
            .prop_map(|(complete, payloads, cut)| Tail::Frames { complete, payloads, cut }),
        1 => (0usize..28).prop_map(Tail::TornSegment),
    ]
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        12 => (0..TAGS, prop::collection::vec(any::<u8>(), 0..300))
            .prop_map(|(tag, payload)| Op::Append { tag, payload }),
        4 => (0..TAGS, any::<u8>()).prop_map(|(tag, fraction)| Op::Ack { tag, fraction }),
        1 => (0..TAGS).prop_map(|tag| Op::Retire { tag }),
        3 => tail_strategy().prop_map(Op::Crash),
        1 => Just(Op::Reopen),
    ]
}

/// Masked crc32c over lsn ‖ tag ‖ payload, as documented.
fn frame(lsn: Lsn, tag: u64, payload: &[u8]) -> Vec<u8> {
    let mut ids = [0u8; 16];
    ids[..8].copy_from_slice(&lsn.to_le_bytes());
    ids[8..].copy_from_slice(&tag.to_le_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&ids), payload);
    let masked = crc.rotate_right(15).wrapping_add(0xa282_ead8);
    let mut out = Vec::with_capacity(24 + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&masked.to_le_bytes());
    out.extend_from_slice(&lsn.to_le_bytes());
    out.extend_from_slice(&tag.to_le_bytes());
    out.extend_from_slice(payload);
    out
}

fn segment_header(wal_id: u64, first_lsn: Lsn) -> Vec<u8> {
    let mut out = b"SPWALv1\0".to_vec();
    out.extend_from_slice(&wal_id.to_le_bytes());
    out.extend_from_slice(&first_lsn.to_le_bytes());
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

fn last_segment(dir: &Path) -> PathBuf {
    let mut names: Vec<PathBuf> = fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    names.sort();
    names.pop().expect("at least one segment")
}

fn append_bytes(path: &Path, bytes: &[u8]) {
    let mut file = OpenOptions::new().append(true).open(path).expect("open segment");
    file.write_all(bytes).expect("append tail");
}

/// Simulates the unsynced bytes a crash may leave behind.
fn apply_tail(dir: &Path, tail: &Tail, wal_id: u64, next_lsn: Lsn) {
    let last = last_segment(dir);
    match tail {
        Tail::Nothing => {}
        Tail::Zeros(n) => append_bytes(&last, &vec![0u8; *n]),
        Tail::Garbage(bytes) => append_bytes(&last, bytes),
        Tail::Frames { complete, payloads, cut } => {
            let mut bytes = Vec::new();
            for (i, payload) in payloads.iter().take(*complete).enumerate() {
                bytes.extend(frame(next_lsn + i as u64, i as u64 % TAGS, payload));
            }
            let partial = frame(next_lsn + *complete as u64, 1, &payloads[*complete]);
            bytes.extend_from_slice(&partial[..1 + cut % (partial.len() - 1)]);
            append_bytes(&last, &bytes);
        }
        Tail::TornSegment(cut) => {
            let path = dir.join(format!("{next_lsn:020}.wal"));
            if !path.exists() {
                fs::write(&path, &segment_header(wal_id, next_lsn)[..*cut]).expect("torn segment");
            }
        }
    }
}

#[derive(Default)]
struct Model {
    entries: BTreeMap<Lsn, (u64, Bytes)>,
    acked: HashMap<u64, Lsn>,
    retired: HashSet<u64>,
    max_lsn: Lsn,
}

impl Model {
    fn acked(&self, tag: u64) -> Lsn {
        self.acked.get(&tag).copied().unwrap_or(1)
    }

    fn must_survive(&self, lsn: Lsn, tag: u64) -> bool {
        !self.retired.contains(&tag) && lsn >= self.acked(tag)
    }
}

fn options(dir: &Path) -> WalOptions {
    WalOptions {
        dir: dir.to_path_buf(),
        segment_bytes: 700,
        max_bytes: 1 << 30,
        max_batch_bytes: 1 << 20,
        tail_cache_bytes: 4096,
    }
}

/// Reads the whole log and checks it against the model; adopts entries that a crash
/// tail legitimately added (complete frames past the committed end).
fn check(wal: &Wal, model: &mut Model) -> Result<(), TestCaseError> {
    let mut last = 0;
    let mut seen = HashSet::new();
    for entry in wal.reader(1).expect("reader") {
        let entry = entry.map_err(|e| TestCaseError::fail(format!("read failed: {e}")))?;
        prop_assert!(entry.lsn > last, "lsn {} after {}", entry.lsn, last);
        last = entry.lsn;
        match model.entries.get(&entry.lsn) {
            Some((tag, payload)) => {
                prop_assert_eq!(*tag, entry.tag, "tag of lsn {}", entry.lsn);
                prop_assert_eq!(payload, &entry.payload, "payload of lsn {}", entry.lsn);
            }
            None => {
                prop_assert!(entry.lsn > model.max_lsn, "unknown old lsn {}", entry.lsn);
                model.entries.insert(entry.lsn, (entry.tag, entry.payload.clone()));
            }
        }
        seen.insert(entry.lsn);
    }
    model.max_lsn = model.max_lsn.max(last);
    for (lsn, (tag, _)) in &model.entries {
        if model.must_survive(*lsn, *tag) {
            prop_assert!(seen.contains(lsn), "lost lsn {} of tag {}", lsn, tag);
        }
    }
    for tag in 0..TAGS {
        prop_assert_eq!(wal.acked(tag), model.acked(tag), "acked({})", tag);
    }
    prop_assert!(wal.next_lsn() > model.max_lsn);
    Ok(())
}

fn reopen(dir: &Path, model: &mut Model) -> Result<Wal, TestCaseError> {
    let (wal, recovery) = Wal::open(options(dir)).map_err(|e| TestCaseError::fail(format!("reopen failed: {e}")))?;
    prop_assert_eq!(recovery.next_lsn, wal.next_lsn());
    check(&wal, model)?;
    Ok(wal)
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut model = Model::default();
    let (mut wal, _) = Wal::open(options(dir.path())).expect("open");
    for op in ops {
        match op {
            Op::Append { tag, payload } => {
                let payload = Bytes::from(payload);
                match wal.append_blocking(tag, payload.clone()) {
                    Ok(lsn) => {
                        prop_assert!(!model.retired.contains(&tag));
                        prop_assert!(lsn > model.max_lsn, "lsn {} reused", lsn);
                        model.max_lsn = lsn;
                        model.entries.insert(lsn, (tag, payload));
                    }
                    Err(AppendError::Retired { .. }) => prop_assert!(model.retired.contains(&tag)),
                    Err(e) => return Err(TestCaseError::fail(format!("append failed: {e}"))),
                }
            }
            Op::Ack { tag, fraction } => {
                let current = wal.acked(tag);
                let span = wal.next_lsn() - current;
                let upto = current + span * u64::from(fraction) / 255;
                wal.ack(tag, upto).expect("ack");
                model.acked.insert(tag, upto.max(current));
            }
            Op::Retire { tag } => {
                wal.retire(tag).expect("retire");
                model.retired.insert(tag);
            }
            Op::Crash(tail) => {
                let (wal_id, next_lsn) = (wal.wal_id(), wal.next_lsn());
                drop(wal);
                apply_tail(dir.path(), &tail, wal_id, next_lsn);
                wal = reopen(dir.path(), &mut model)?;
            }
            Op::Reopen => {
                wal.close();
                drop(wal);
                wal = reopen(dir.path(), &mut model)?;
            }
        }
    }
    check(&wal, &mut model)?;
    drop(wal);
    let wal = reopen(dir.path(), &mut model)?;
    prop_assert!(wal.stats().segments >= 1);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 64,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn crash_recovery_preserves_unacked_entries(ops in prop::collection::vec(op_strategy(), 1..40)) {
        run(ops)?;
    }
}
