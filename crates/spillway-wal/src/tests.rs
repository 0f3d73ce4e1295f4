//! Unit tests of the public API, recovery and failure handling.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::*;
use crate::segment::{HEADER_LEN, encode_frame_header};

fn options(dir: &Path, segment_bytes: u64) -> WalOptions {
    WalOptions {
        dir: dir.to_path_buf(),
        segment_bytes,
        max_bytes: 1 << 30,
        max_batch_bytes: 1 << 20,
        tail_cache_bytes: 1 << 20,
    }
}

fn open(dir: &Path, segment_bytes: u64) -> (Wal, Recovery) {
    Wal::open(options(dir, segment_bytes)).expect("open wal")
}

fn payload(seed: u64, len: usize) -> Bytes {
    (0..len).map(|i| (seed.wrapping_mul(31).wrapping_add(i as u64) % 251) as u8).collect()
}

fn append(wal: &Wal, tag: u64, data: Bytes) -> Lsn {
    wal.append_blocking(tag, data).expect("append")
}

fn read_all(wal: &Wal, from: Lsn) -> Vec<Entry> {
    wal.reader(from).expect("reader").collect::<Result<Vec<_>, _>>().expect("read entries")
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    segment::list_segments(dir).expect("list segments").into_iter().map(|(_, path)| path).collect()
}

fn append_to_file(path: &Path, bytes: &[u8]) {
    let mut file = OpenOptions::new().append(true).open(path).expect("open");
    file.write_all(bytes).expect("write");
}

fn flip_byte(path: &Path, offset: u64) {
    let mut data = fs::read(path).expect("read");
    data[offset as usize] ^= 0x40;
    fs::write(path, data).expect("write");
}

fn file_len(path: &Path) -> u64 {
    fs::metadata(path).expect("metadata").len()
}

/// Appends `count` entries of `len` bytes with tag `lsn % tags`; returns them.
fn fill(wal: &Wal, count: u64, len: usize, tags: u64) -> Vec<Entry> {
    (0..count)
        .map(|i| {
            let tag = i % tags;
            let data = payload(i, len);
            let lsn = append(wal, tag, data.clone());
            Entry { lsn, tag, payload: data }
        })
        .collect()
}

#[test]
fn round_trip_across_segment_rolls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (wal, recovery) = open(dir.path(), 300);
    assert_eq!(recovery.next_lsn, 1);
    let written: Vec<Entry> = (0..60u64)
        .map(|i| {
            let data = payload(i, (i as usize * 7) % 90);
            let lsn = append(&wal, i % 3, data.clone());
            Entry { lsn, tag: i % 3, payload: data }
        })
        .collect();
    let lsns: Vec<Lsn> = written.iter().map(|e| e.lsn).collect();
    assert_eq!(lsns, (1..=60).collect::<Vec<_>>());
    assert!(segment_files(dir.path()).len() > 5, "segments should roll");
    assert_eq!(read_all(&wal, 1), written);
    assert_eq!(read_all(&wal, 0), written);
    assert_eq!(read_all(&wal, 37), written[36..].to_vec());
    assert!(read_all(&wal, 61).is_empty());
    let stats = wal.stats();
    assert_eq!((stats.first_lsn, stats.next_lsn), (1, 61));
    let on_disk: u64 = segment_files(dir.path()).iter().map(|p| file_len(p)).sum();
    assert_eq!(stats.bytes, on_disk);
    for path in segment_files(dir.path()) {
        // only single oversized entries may exceed segment_bytes
        assert!(file_len(&path) <= 300, "{} too large", path.display());
    }
}

#[test]
fn reader_seeks_with_sparse_index_in_large_segment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (wal, _) = open(dir.path(), 64 << 20);
    let written = fill(&wal, 400, 5000, 2);
    assert_eq!(segment_files(dir.path()).len(), 1);
    for from in [1, 2, 150, 399, 400] {
        assert_eq!(read_all(&wal, from), written[from as usize - 1..].to_vec());
    }
}

#[test]
fn reader_follows_new_commits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (wal, _) = open(dir.path(), 200);
    let mut watch = wal.subscribe();
    let mut reader = wal.reader(1).expect("reader");
    assert!(reader.next().is_none());
    append(&wal, 1, payload(1, 10));
    assert!(watch.has_changed().expect("watch open"));
    assert_eq!(*watch.borrow_and_update(), 2);
    let entry = reader.next().expect("entry").expect("ok");
    assert_eq!(entry.lsn, 1);
    assert!(reader.next().is_none());
    for i in 0..20 {
        append(&wal, 1, payload(i, 50));
    }
    assert_eq!(reader.by_ref().count(), 20);
    assert_eq!(reader.position(), 22);
}

#[test]
fn reopen_keeps_entries_and_lsn_continuity() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut written = {
        let (wal, _) = open(dir.path(), 256);
        fill(&wal, 30, 40, 2)
    };
    let (wal, recovery) = open(dir.path(), 256);
    assert_eq!(recovery.next_lsn, 31);
    assert_eq!(recovery.entries, 30);
    assert_eq!(recovery.truncated_bytes, 0);
    assert_eq!(recovery.segments, segment_files(dir.path()).len());
    assert_eq!(wal.next_lsn(), 31);
    let lsn = append(&wal, 5, Bytes::from_static(b"after"));
    assert_eq!(lsn, 31);
    written.push(Entry { lsn, tag: 5, payload: Bytes::from_static(b"after") });
    assert_eq!(read_all(&wal, 1), written);
}

#[test]
fn wal_id_is_stable_and_distinct() {
    let dir = tempfile::tempdir().expect("tempdir");
    let other = tempfile::tempdir().expect("tempdir");
    let id = open(dir.path(), 1024).0.wal_id();
    assert_eq!(open(dir.path(), 1024).0.wal_id(), id);
    let (wal, _) = open(dir.path(), 1024);
    assert_eq!(wal.stats().wal_id, id);
    assert_ne!(open(other.path(), 1024).0.wal_id(), id);
}

#[test]
fn second_open_is_locked_until_dropped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (wal, _) = open(dir.path(), 1024);
    let second = Wal::open(options(dir.path(), 1024));
    assert!(matches!(second, Err(OpenError::Locked { .. })), "{second:?}");
    let reader = wal.reader(1).expect("reader");
    drop(wal);
    assert!(matches!(Wal::open(options(dir.path(), 1024)), Err(OpenError::Locked { .. })));
    drop(reader);
    open(dir.path(), 1024);
}

#[test]
fn ack_deletes_segment_only_when_every_tag_is_done() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (wal, _) = open(dir.path(), 200);
    // segment 1: tags 1 and 2; segment 2: tag 1 only; segment 3: tag 3 (active)
    let a = append(&wal, 1, payload(1, 60));
    let b = append(&wal, 2, payload(2, 60));
    let c = append(&wal, 1, payload(3, 150));
    let d = append(&wal, 3, payload(4, 150));
    assert_eq!(segment_files(dir.path()).len(), 3);
    assert_eq!((a, b, c, d), (1, 2, 3, 4));

    wal.ack(1, 3).expect("ack");
    assert_eq!(segment_files(dir.path()).len(), 3, "lsn 3 of tag 1 undelivered");
    wal.ack(1, 4).expect("ack");
    assert_eq!(segment_files(dir.path()).len(), 2, "segment 2 only had tag 1");
    assert_eq!(read_all(&wal, 1).iter().map(|e| e.lsn).collect::<Vec<_>>(), vec![1, 2, 4]);
    wal.ack(2, 2).expect("ack");
    assert_eq!(segment_files(dir.path()).len(), 2, "lsn 2 of tag 2 undelivered");
    wal.ack(2, 3).expect("ack");
    assert_eq!(segment_files(dir.path()).len(), 1);
    assert_eq!(wal.stats().first_lsn, 4);
    assert_eq!(read_all(&wal, 1).iter().map(|e| e.lsn).collect::<Vec<_>>(), vec![4]);
    let used = wal.stats().bytes;
    assert_eq!(used, file_len(&segment_files(dir.path())[0]));
    drop(wal);

    let (wal, recovery) = open(dir.path(), 200);
    assert_eq!((wal.acked(1), wal.acked(2), wal.acked(3)), (4, 3, 1));
    assert_eq!(recovery.next_lsn, 5);
    assert_eq!(recovery.entries, 1);
}

#[test]
fn non_prefix_deletion_survives_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (wal, _) = open(dir.path(), 200);
    append(&wal, 1, payload(1, 150)); // segment [1]
    append(&wal, 2, payload(2, 150)); // segment [2]
    append(&wal, 1, payload(3, 150)); // segment [3] (active)
    wal.ack(2, 3).expect("ack");
    assert_eq!(segment_files(dir.path()).len(), 2);
    drop(wal);
    let (wal, recovery) = open(dir.path(), 200);
    assert_eq!(recovery.entries, 2);
    let lsns: Vec<Lsn> = read_all(&wal, 1).iter().map(|e| e.lsn).collect();
    assert_eq!(lsns, vec![1, 3]);
}

#[test]
fn ack_is_monotonic_and_bounded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (wal, _) = open(dir.path(), 1024);
    fill(&wal, 5, 10, 1);
    wal.ack(0, 4).expect("ack");
    wal.ack(0, 2).expect("lower ack is ignored");
    assert_eq!(wal.acked(0), 4);
    assert_eq!(wal.acked(9), 1);
    let err = wal.ack(0, 7).expect_err("beyond end");
    assert!(matches!(err, AckError::BeyondEnd { next_lsn: 6, .. }), "{err}");
    wal.ack(0, 6).expect("ack up to next_lsn");
}

#[test]
fn retire_releases_segments_and_rejects_appends() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (wal, _) = open(dir.path(), 200);
    append(&wal, 7, payload(1, 150));
    append(&wal, 8, payload(2, 150));
    assert_eq!(segment_files(dir.path()).len(), 2);
    wal.retire(7).expect("retire");
    assert_eq!(segment_files(dir.path()).len(), 1);
    let err = wal.append_blocking(7, payload(3, 1)).expect_err("retired");
    assert!(matches!(err, AppendError::Retired { tag: 7 }));
    assert!(!err.is_retryable());
    drop(wal);
    let (wal, _) = open(dir.path(), 200);
    assert!(matches!(wal.append_blocking(7, payload(3, 1)), Err(AppendError::Retired { .. })));
}

#[test]
fn next_lsn_survives_deleting_everything_deletable() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (wal, _) = open(dir.path(), 100);
        fill(&wal, 10, 60, 1);
        wal.ack(0, 11).expect("ack");
        assert_eq!(segment_files(dir.path()).len(), 1, "active segment is kept");
        assert_eq!(wal.stats().first_lsn, 10);
    }
    let (wal, recovery) = open(dir.path(), 100);
    assert_eq!(recovery.next_lsn, 11);
    assert_eq!(append(&wal, 0, payload(0, 1)), 11);
}

#[test]
fn quota_rejects_without_writing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = WalOptions { max_bytes: 1000, ..options(dir.path(), 300) };
    let (wal, _) = Wal::open(opts.clone()).expect("open");
    let mut written = Vec::new();
    let err = loop {
        match wal.append_blocking(1, payload(written.len() as u64, 100)) {
            Ok(lsn) => written.push(lsn),
            Err(e) => break e,
        }
    };
    assert!(matches!(err, AppendError::QuotaExceeded { max: 1000, .. }), "{err}");
    assert!(err.is_retryable());
    let stats = wal.stats();
    let on_disk: u64 = segment_files(dir.path()).iter().map(|p| file_len(p)).sum();
    assert_eq!(stats.bytes, on_disk);
    assert!(on_disk <= 1000, "{on_disk}");
    assert_eq!(stats.next_lsn, written.len() as u64 + 1);
    assert!(wal.append_blocking(1, payload(0, 100)).is_err());
    assert_eq!(read_all(&wal, 1).len(), written.len());

    wal.ack(1, stats.next_lsn).expect("ack");
    let lsn = append(&wal, 1, payload(0, 100));
    assert_eq!(lsn, stats.next_lsn);
    drop(wal);
    let (_, recovery) = Wal::open(opts).expect("reopen");
    assert_eq!(recovery.next_lsn, lsn + 1);
}

#[test]
fn oversized_payload_is_rejected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (wal, _) = open(dir.path(), 1024);
    let err = wal.append_blocking(1, Bytes::from(vec![0u8; MAX_PAYLOAD + 1])).expect_err("too large");
    assert!(matches!(err, AppendError::TooLarge { .. }));
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = WalOptions { max_bytes: 1000, ..options(dir.path(), 500) };
    let (wal, _) = Wal::open(opts).expect("open");
    let err = wal.append_blocking(1, Bytes::from(vec![0u8; 1000 - 28 - 24 + 1])).expect_err("cannot ever fit");
    assert!(matches!(err, AppendError::TooLarge { max: 948, .. }), "{err}");
    assert!(!err.is_retryable());
    assert_eq!(append(&wal, 1, Bytes::from(vec![0u8; 948])), 1);
}

fn torn_tail_case(suffix: impl FnOnce(Lsn) -> Vec<u8>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let written = {
        let (wal, _) = open(dir.path(), 400);
        fill(&wal, 12, 50, 3)
    };
    let last = segment_files(dir.path()).pop().expect("segment");
    let before = file_len(&last);
    let tail = suffix(13);
    append_to_file(&last, &tail);
    let (wal, recovery) = open(dir.path(), 400);
    assert_eq!(recovery.truncated_bytes, tail.len() as u64);
    assert_eq!(recovery.next_lsn, 13);
    assert_eq!(file_len(&last), before);
    assert_eq!(read_all(&wal, 1), written);
    assert_eq!(append(&wal, 1, payload(99, 5)), 13);
    drop(wal);
    let (_, recovery) = open(dir.path(), 400);
    assert_eq!((recovery.truncated_bytes, recovery.next_lsn), (0, 14));
}

fn frame_bytes(lsn: Lsn, tag: u64, data: &[u8]) -> Vec<u8> {
    let mut frame = encode_frame_header(lsn, tag, data).to_vec();
    frame.extend_from_slice(data);
    frame
}

#[test]
fn torn_tail_partial_frame_is_truncated() {
    torn_tail_case(|next| {
        let frame = frame_bytes(next, 1, &payload(5, 80));
        frame[..frame.len() - 3].to_vec()
    });
    torn_tail_case(|next| frame_bytes(next, 1, &payload(5, 80))[..10].to_vec());
}

#[test]
fn torn_tail_complete_frame_then_partial_keeps_complete_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    drop(open(dir.path(), 4096));
    let last = segment_files(dir.path()).pop().expect("segment");
    let mut tail = frame_bytes(1, 4, b"unacknowledged but complete");
    let partial = frame_bytes(2, 4, b"partial");
    tail.extend_from_slice(&partial[..20]);
    append_to_file(&last, &tail);
    let (wal, recovery) = open(dir.path(), 4096);
    assert_eq!((recovery.next_lsn, recovery.truncated_bytes), (2, 20));
    assert_eq!(read_all(&wal, 1).len(), 1);
}

#[test]
fn torn_tail_garbage_is_truncated() {
    torn_tail_case(|_| (0..77u32).map(|i| (i * 97 % 256) as u8).collect());
}

#[test]
fn torn_tail_zeros_are_truncated() {
    torn_tail_case(|_| vec![0u8; 4096]);
    torn_tail_case(|_| vec![0u8; 5]);
}

#[test]
fn flipped_byte_with_valid_frames_after_is_corrupt() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (wal, _) = open(dir.path(), 1 << 20);
        fill(&wal, 10, 50, 2);
    }
    let last = segment_files(dir.path()).pop().expect("segment");
    let before = file_len(&last);
    let frame_len = (FRAME_HEADER_LEN + 50) as u64;
    let fourth = HEADER_LEN as u64 + 3 * frame_len;
    for target in [fourth + 30, fourth + 1, fourth + 9] {
        flip_byte(&last, target);
        let err = Wal::open(options(dir.path(), 1 << 20)).err();
        match err {
            Some(OpenError::Corrupt { segment, offset, .. }) => {
                assert_eq!(segment, last);
                assert_eq!(offset, fourth, "flip at {target}");
            }
            other => panic!("expected corruption for flip at {target}, got {other:?}"),
        }
        assert_eq!(file_len(&last), before, "nothing may be truncated");
        flip_byte(&last, target);
    }
    assert_eq!(open(dir.path(), 1 << 20).1.entries, 10);
}

#[test]
fn flipped_byte_in_last_frame_is_a_torn_tail() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (wal, _) = open(dir.path(), 1 << 20);
        fill(&wal, 3, 50, 1);
    }
    let last = segment_files(dir.path()).pop().expect("segment");
    let len = file_len(&last);
    flip_byte(&last, len - 1);
    let (_, recovery) = open(dir.path(), 1 << 20);
    assert_eq!(recovery.next_lsn, 3);
    assert_eq!(recovery.truncated_bytes, (FRAME_HEADER_LEN + 50) as u64);
}

#[test]
fn flipped_byte_in_older_segment_is_corrupt() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (wal, _) = open(dir.path(), 300);
        fill(&wal, 20, 50, 2);
    }
    let files = segment_files(dir.path());
    assert!(files.len() > 2);
    let last_frame_byte = file_len(&files[0]) - 1;
    flip_byte(&files[0], last_frame_byte);
    let err = Wal::open(options(dir.path(), 300)).err();
    assert!(matches!(&err, Some(OpenError::Corrupt { segment, .. }) if *segment == files[0]), "{err:?}");
    flip_byte(&files[0], last_frame_byte);
    flip_byte(&files[1], 3);
    let err = Wal::open(options(dir.path(), 300)).err();
    assert!(matches!(err, Some(OpenError::BadHeader { .. })), "{err:?}");
}

#[test]
fn missing_segment_is_corrupt() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (wal, _) = open(dir.path(), 300);
        fill(&wal, 20, 50, 2);
    }
    let files = segment_files(dir.path());
    fs::remove_file(&files[1]).expect("remove");
    let err = Wal::open(options(dir.path(), 300)).err();
    assert!(matches!(err, Some(OpenError::Corrupt { .. })), "{err:?}");
    fs::remove_file(&files[0]).expect("remove");
    let err = Wal::open(options(dir.path(), 300)).err();
    assert!(matches!(err, Some(OpenError::Corrupt { .. })), "first segment: {err:?}");
}

#[test]
fn lost_active_segment_is_corrupt() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (wal, _) = open(dir.path(), 300);
        fill(&wal, 20, 50, 1);
        wal.ack(0, 21).expect("ack");
    }
    let files = segment_files(dir.path());
    assert_eq!(files.len(), 1);
    fs::remove_file(&files[0]).expect("remove");
    let err = Wal::open(options(dir.path(), 300)).err();
    assert!(matches!(err, Some(OpenError::Corrupt { .. })), "{err:?}");
}

#[test]
fn torn_new_segment_header_is_rewritten() {
    let dir = tempfile::tempdir().expect("tempdir");
    let written = {
        let (wal, _) = open(dir.path(), 4096);
        fill(&wal, 5, 10, 1)
    };
    for torn in [vec![], b"SPWAL".to_vec(), vec![0u8; 64]] {
        let path = dir.path().join(segment::segment_file_name(6));
        fs::write(&path, &torn).expect("write");
        let (wal, recovery) = open(dir.path(), 4096);
        assert_eq!(recovery.truncated_bytes, torn.len() as u64);
        assert_eq!(recovery.next_lsn, 6);
        assert_eq!(read_all(&wal, 1), written);
        assert_eq!(file_len(&path), HEADER_LEN as u64);
        drop(wal);
        fs::remove_file(&path).expect("remove");
    }
}

#[test]
fn foreign_segment_is_bad_header() {
    let dir = tempfile::tempdir().expect("tempdir");
    let other = tempfile::tempdir().expect("tempdir");
    drop(open(dir.path(), 4096));
    drop(open(other.path(), 4096));
    let name = segment::segment_file_name(1);
    fs::copy(other.path().join(&name), dir.path().join(&name)).expect("copy");
    let err = Wal::open(options(dir.path(), 4096)).err();
    assert!(matches!(err, Some(OpenError::BadHeader { .. })), "{err:?}");
}

#[test]
fn interrupted_deletion_is_finished_on_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let saved = dir.path().join("saved");
    {
        let (wal, _) = open(dir.path(), 200);
        append(&wal, 1, payload(1, 150));
        append(&wal, 1, payload(2, 150));
        let first = segment_files(dir.path())[0].clone();
        fs::copy(&first, &saved).expect("copy");
        wal.ack(1, 2).expect("ack");
        assert!(!first.exists());
        fs::rename(&saved, &first).expect("restore as if unlink was lost");
    }
    let (wal, recovery) = open(dir.path(), 200);
    assert_eq!(recovery.segments, 1);
    assert_eq!(segment_files(dir.path()).len(), 1);
    assert_eq!(read_all(&wal, 1).len(), 1);
}

#[test]
fn failed_write_is_rolled_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (wal, _) = open(dir.path(), 1 << 20);
    let mut written = fill(&wal, 3, 100, 1);
    let len = file_len(&segment_files(dir.path())[0]);
    wal.inner.shared.faults.partial_write_enospc.store(true, Ordering::SeqCst);
    let err = wal.append_blocking(0, payload(9, 100)).expect_err("enospc");
    assert!(matches!(err, AppendError::NoSpace), "{err}");
    assert!(err.is_retryable());
    assert_eq!(file_len(&segment_files(dir.path())[0]), len);
    assert_eq!(wal.next_lsn(), 4);

    wal.inner.shared.faults.sync_eio.store(true, Ordering::SeqCst);
    let err = wal.append_blocking(0, payload(9, 100)).expect_err("eio");
    assert!(matches!(err, AppendError::Io(_)), "{err}");
    assert_eq!(file_len(&segment_files(dir.path())[0]), len);

    let data = payload(10, 100);
    assert_eq!(append(&wal, 0, data.clone()), 4);
    written.push(Entry { lsn: 4, tag: 0, payload: data });
    assert_eq!(read_all(&wal, 1), written);
    drop(wal);
    let (_, recovery) = open(dir.path(), 1 << 20);
    assert_eq!((recovery.truncated_bytes, recovery.next_lsn), (0, 5));
}

#[test]
fn failed_rollback_poisons_the_wal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (wal, _) = open(dir.path(), 1 << 20);
    fill(&wal, 3, 100, 1);
    let faults = &wal.inner.shared.faults;
    faults.partial_write_enospc.store(true, Ordering::SeqCst);
    faults.truncate_eio.store(true, Ordering::SeqCst);
    assert!(wal.append_blocking(0, payload(9, 100)).is_err());
    let err = wal.append_blocking(0, payload(9, 100)).expect_err("failed");
    assert!(matches!(err, AppendError::Io(_)), "{err}");
    assert!(!err.is_retryable());
    assert_eq!(read_all(&wal, 1).len(), 3);
    drop(wal);
    // the half-written frame is a torn tail for recovery
    let (wal, recovery) = open(dir.path(), 1 << 20);
    assert_eq!(recovery.next_lsn, 4);
    assert!(recovery.truncated_bytes > 0);
    assert_eq!(append(&wal, 0, payload(1, 1)), 4);
}

#[test]
fn close_completes_pending_and_rejects_later_appends() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (wal, _) = open(dir.path(), 4096);
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let wal = wal.clone();
            std::thread::spawn(move || wal.append_blocking(i, payload(i, 64)))
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().expect("thread")).collect();
    wal.close();
    wal.close();
    assert!(results.iter().all(Result::is_ok));
    assert!(matches!(wal.append_blocking(1, payload(1, 1)), Err(AppendError::Closed)));
    assert_eq!(read_all(&wal, 1).len(), 8);
    wal.ack(0, 9).expect("ack after close");
}

#[test]
fn invalid_options_are_rejected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = WalOptions { segment_bytes: 0, ..options(dir.path(), 1) };
    assert!(matches!(Wal::open(opts), Err(OpenError::InvalidOptions(_))));
}

#[test]
fn live_tags_lists_unretired_tags_with_entries() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (wal, _) = open(dir.path(), 1 << 20);
    assert!(wal.live_tags().is_empty());
    append(&wal, 7, payload(1, 10));
    append(&wal, 3, payload(2, 10));
    append(&wal, 7, payload(3, 10));
    assert_eq!(wal.live_tags(), vec![3, 7]);
    wal.retire(7).expect("retire");
    assert_eq!(wal.live_tags(), vec![3]);
    wal.close();
    drop(wal);
    let (wal, _) = open(dir.path(), 1 << 20);
    assert_eq!(wal.live_tags(), vec![3], "retirement survives reopen");
}

#[test]
fn caught_up_readers_are_served_from_memory() {
    // A flipped byte on disk is invisible to a reader served by the tail cache, and visible
    // (as corruption) to one that reads the file: proof of where each reads from.
    for (cache, from_memory) in [(1 << 20, true), (0, false)] {
        let dir = tempfile::tempdir().expect("tempdir");
        let opts = WalOptions { tail_cache_bytes: cache, ..options(dir.path(), 1 << 20) };
        let (wal, _) = Wal::open(opts).expect("open");
        let data = payload(9, 100);
        append(&wal, 1, data.clone());
        let seg = segment_files(dir.path()).pop().expect("segment");
        let len = file_len(&seg);
        flip_byte(&seg, len - 10);
        let got: Vec<_> = wal.reader(1).expect("reader").take(1).collect();
        if from_memory {
            assert_eq!(got.len(), 1);
            assert_eq!(got[0].as_ref().expect("entry").payload, data);
        } else {
            assert!(matches!(got[0], Err(ReadError::Corrupt { .. })), "{got:?}");
        }
    }
}
