//! RecordIds: opaque to clients, but they encode where the record is kept.
//!
//! A RecordId is 36 lowercase hex digits: the WAL id (16), the entry's LSN (16) and the record's
//! index within the request (4). The WAL id is random per data directory and LSNs never repeat, so ids
//! are unique; `spillway wal inspect` decodes them.

/// Where a record lives: which WAL, which entry, which position in the entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordPosition {
    pub wal_id: u64,
    pub lsn: u64,
    pub index: u16,
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn push_hex(out: &mut String, v: u64, digits: u32) {
    for i in (0..digits).rev() {
        out.push(HEX[((v >> (i * 4)) & 0xf) as usize] as char);
    }
}

/// Appends the RecordId of `pos` to `out` (no allocation when `out` has room).
pub fn encode_into(out: &mut String, pos: RecordPosition) {
    push_hex(out, pos.wal_id, 16);
    push_hex(out, pos.lsn, 16);
    push_hex(out, u64::from(pos.index), 4);
}

pub fn encode(pos: RecordPosition) -> String {
    let mut s = String::with_capacity(36);
    encode_into(&mut s, pos);
    s
}

/// Decodes a RecordId produced by [`encode`].
pub fn decode(id: &str) -> Option<RecordPosition> {
    if id.len() != 36 || !id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return None;
    }
    let wal_id = u64::from_str_radix(&id[0..16], 16).ok()?;
    let lsn = u64::from_str_radix(&id[16..32], 16).ok()?;
    let index = u16::from_str_radix(&id[32..36], 16).ok()?;
    Some(RecordPosition { wal_id, lsn, index })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trip(wal_id: u64, lsn: u64, index: u16) {
            let pos = RecordPosition { wal_id, lsn, index };
            let id = encode(pos);
            prop_assert_eq!(id.len(), 36);
            prop_assert_eq!(decode(&id), Some(pos));
        }
    }

    #[test]
    fn rejects_foreign_ids() {
        assert_eq!(decode("abc"), None);
        assert_eq!(decode(&"G".repeat(36)), None);
    }
}
