//! The tail cache: the most recently committed entries, kept in memory so that readers that
//! are caught up never touch the disk.
//!
//! Invariants: the cached lsns are contiguous and all committed (the writer pushes a chunk
//! after its fsync and before publishing the new committed end); payloads are the appenders'
//! own `Bytes`, shared, never copied; the cache holds at most `max_bytes` of payload plus one
//! entry (an entry larger than the budget is cached alone until the next push).

use std::collections::VecDeque;

use crate::{Entry, Lsn};

pub(crate) struct TailCache {
    entries: VecDeque<Entry>,
    bytes: usize,
    max_bytes: usize,
}

impl TailCache {
    pub(crate) fn new(max_bytes: usize) -> TailCache {
        TailCache { entries: VecDeque::new(), bytes: 0, max_bytes }
    }

    /// Appends a committed entry, evicting the oldest ones beyond the budget.
    pub(crate) fn push(&mut self, entry: Entry) {
        if self.max_bytes == 0 {
            return;
        }
        if let Some(last) = self.entries.back()
            && last.lsn >= entry.lsn
        {
            // Out of order (cannot happen with one writer); start over rather than lie.
            self.entries.clear();
            self.bytes = 0;
        }
        self.bytes += entry.payload.len();
        self.entries.push_back(entry);
        while self.bytes > self.max_bytes && self.entries.len() > 1 {
            if let Some(old) = self.entries.pop_front() {
                self.bytes -= old.payload.len();
            }
        }
    }

    /// Copies (by reference count) up to `max` entries with lsn `>= from` into `out`; returns
    /// false if `from` is older than the cache or nothing newer is cached. Entries removed by
    /// [`TailCache::forget`] are skipped, as the disk reader skips deleted segments.
    pub(crate) fn read(&self, from: Lsn, max: usize, out: &mut VecDeque<Entry>) -> bool {
        let Some(first) = self.entries.front().map(|e| e.lsn) else { return false };
        if from < first {
            return false;
        }
        let start = self.entries.partition_point(|e| e.lsn < from);
        if start == self.entries.len() {
            return false;
        }
        out.extend(self.entries.range(start..).take(max).cloned());
        true
    }

    /// Drops the entries of a deleted segment (`first..end`).
    pub(crate) fn forget(&mut self, first: Lsn, end: Lsn) {
        let before = self.entries.len();
        let bytes = &mut self.bytes;
        self.entries.retain(|e| {
            let keep = e.lsn < first || e.lsn >= end;
            if !keep {
                *bytes -= e.payload.len();
            }
            keep
        });
        debug_assert!(self.entries.len() <= before);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn entry(lsn: Lsn, len: usize) -> Entry {
        Entry { lsn, tag: 1, payload: Bytes::from(vec![0u8; len]) }
    }

    #[test]
    fn keeps_the_newest_entries_within_budget() {
        let mut c = TailCache::new(100);
        for lsn in 1..=5 {
            c.push(entry(lsn, 30));
        }
        let mut out = VecDeque::new();
        assert!(!c.read(2, 10, &mut out), "evicted");
        assert!(c.read(3, 10, &mut out));
        assert_eq!(out.iter().map(|e| e.lsn).collect::<Vec<_>>(), vec![3, 4, 5]);
        out.clear();
        assert!(c.read(5, 10, &mut out));
        assert_eq!(out.len(), 1);
        assert!(!c.read(6, 10, &mut out), "not committed yet");
    }

    #[test]
    fn an_oversized_entry_is_cached_alone() {
        let mut c = TailCache::new(10);
        c.push(entry(1, 5));
        c.push(entry(2, 50));
        let mut out = VecDeque::new();
        assert!(c.read(2, 10, &mut out));
        assert!(!c.read(1, 10, &mut out));
    }

    #[test]
    fn forgotten_ranges_are_skipped() {
        let mut c = TailCache::new(1000);
        for lsn in 1..=6 {
            c.push(entry(lsn, 10));
        }
        c.forget(3, 5);
        let mut out = VecDeque::new();
        assert!(c.read(3, 10, &mut out));
        assert_eq!(out.iter().map(|e| e.lsn).collect::<Vec<_>>(), vec![5, 6]);
        assert_eq!(c.bytes, 40);
        c.forget(1, 3);
        out.clear();
        assert!(!c.read(1, 10, &mut out), "older than the cache: the disk reader decides");
    }

    #[test]
    fn disabled_cache_holds_nothing() {
        let mut c = TailCache::new(0);
        c.push(entry(1, 5));
        assert!(!c.read(1, 10, &mut VecDeque::new()));
    }
}
