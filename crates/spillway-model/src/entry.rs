//! The WAL entry that one PutRecord/PutRecordBatch request becomes.
//!
//! Layout (all integers little-endian):
//!
//! ```text
//! u8   version (= 1)
//! [u8; 3] reserved (zero)
//! u32  record count n
//! i64  approximate arrival timestamp, epoch milliseconds (one per request, as Firehose does per call)
//! u32 × n  decoded length of each record
//! bytes    the decoded records, concatenated
//! ```
//!
//! Invariant: [`encode`] decodes each record's base64 exactly once, directly into the entry buffer;
//! [`EntryView::parse`] checks every length against the buffer, so a view never reads out of bounds.

use crate::error::ApiError;
use crate::put::PutRequest;

pub const VERSION: u8 = 1;
const HEADER: usize = 16;

/// Builds the entry for a validated put. Fails with `SerializationException` if a record is not
/// valid base64.
pub fn encode(req: &PutRequest<'_>, arrival_ms: i64) -> Result<Vec<u8>, ApiError> {
    let n = req.records.len();
    let mut buf = vec![0u8; HEADER + 4 * n + req.decoded_bytes];
    buf[0] = VERSION;
    buf[4..8].copy_from_slice(&(n as u32).to_le_bytes());
    buf[8..16].copy_from_slice(&arrival_ms.to_le_bytes());
    let (head, data) = buf.split_at_mut(HEADER + 4 * n);
    let mut at = 0usize;
    for (i, (rec, &len)) in req.records.iter().zip(&req.decoded_lens).enumerate() {
        head[HEADER + 4 * i..HEADER + 4 * i + 4].copy_from_slice(&(len as u32).to_le_bytes());
        let out = &mut data[at..at + len];
        let written = base64_simd::STANDARD
            .decode(rec.as_bytes(), base64_simd::Out::from_slice(out))
            .map_err(|_| ApiError::serialization("Record data is not valid base64"))?;
        if written.len() != len {
            return Err(ApiError::serialization("Record data is not valid base64"));
        }
        at += len;
    }
    Ok(buf)
}

/// Why an entry could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EntryError {
    #[error("entry too short: {0} bytes")]
    TooShort(usize),
    #[error("unknown entry version {0}")]
    Version(u8),
    #[error("record lengths exceed the entry")]
    Lengths,
}

/// A parsed entry borrowing its buffer.
#[derive(Debug, Clone, Copy)]
pub struct EntryView<'a> {
    pub arrival_ms: i64,
    lens: &'a [u8],
    data: &'a [u8],
}

impl<'a> EntryView<'a> {
    pub fn parse(buf: &'a [u8]) -> Result<Self, EntryError> {
        if buf.len() < HEADER {
            return Err(EntryError::TooShort(buf.len()));
        }
        if buf[0] != VERSION {
            return Err(EntryError::Version(buf[0]));
        }
        let n = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]) as usize;
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&buf[8..16]);
        let lens_end = n.checked_mul(4).and_then(|l| l.checked_add(HEADER)).ok_or(EntryError::Lengths)?;
        if lens_end > buf.len() {
            return Err(EntryError::Lengths);
        }
        let (lens, data) = (&buf[HEADER..lens_end], &buf[lens_end..]);
        let total: u64 = lens.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as u64).sum();
        if total != data.len() as u64 {
            return Err(EntryError::Lengths);
        }
        Ok(Self { arrival_ms: i64::from_le_bytes(ts), lens, data })
    }

    pub fn len(&self) -> usize {
        self.lens.len() / 4
    }

    pub fn is_empty(&self) -> bool {
        self.lens.is_empty()
    }

    /// Total decoded bytes of the records.
    pub fn data_len(&self) -> usize {
        self.data.len()
    }

    /// The records in order.
    pub fn records(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        let data = self.data;
        let mut at = 0usize;
        self.lens.chunks_exact(4).map(move |c| {
            let len = u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as usize;
            let r = &data[at..at + len];
            at += len;
            r
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::put::parse_put_record_batch;

    #[test]
    fn round_trip() {
        let body = br#"{"DeliveryStreamName":"s","Records":[{"Data":"aGVsbG8="},{"Data":""},{"Data":"d29ybGQK"}]}"#;
        let req = parse_put_record_batch(body).unwrap();
        let buf = encode(&req, 1_700_000_000_123).unwrap();
        let view = EntryView::parse(&buf).unwrap();
        assert_eq!(view.arrival_ms, 1_700_000_000_123);
        assert_eq!(view.len(), 3);
        let recs: Vec<&[u8]> = view.records().collect();
        assert_eq!(recs, vec![&b"hello"[..], &b""[..], &b"world\n"[..]]);
    }

    #[test]
    fn rejects_inconsistent_buffers() {
        assert_eq!(EntryView::parse(&[1, 0, 0]).unwrap_err(), EntryError::TooShort(3));
        let mut buf = vec![0u8; 16];
        buf[0] = 9;
        assert_eq!(EntryView::parse(&buf).unwrap_err(), EntryError::Version(9));
        let mut buf = vec![0u8; 20];
        buf[0] = 1;
        buf[4] = 1;
        buf[16] = 5; // one record of 5 bytes, but no data
        assert_eq!(EntryView::parse(&buf).unwrap_err(), EntryError::Lengths);
        let mut buf = vec![0u8; 16];
        buf[0] = 1;
        buf[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(EntryView::parse(&buf).unwrap_err(), EntryError::Lengths);
    }
}
