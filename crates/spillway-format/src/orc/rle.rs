//! ORC's run-length encodings, version 1: byte RLE, boolean RLE (bits packed MSB first, then byte RLE) and
//! integer RLE v1 (signed with zigzag varints, or unsigned).
//!
//! The run detection follows the reference Java writer (`RunLengthByteWriter`, `RunLengthIntegerWriter`) step for
//! step, so the bytes match what Hive writes. Each encoder keeps at most one pending group (up to 128 literals, or a
//! run of up to 130 values) that has not been written yet; its position for the row index is therefore
//! `[stream position where that group's header will go, number of pending values]`, and a reader that seeks there
//! and skips that many values lands on the next value to be written.

use super::OrcError;
use super::proto::zigzag;
use super::stream::{Compressor, OutStream};

const MIN_REPEAT: usize = 3;
const MAX_LITERALS: usize = 128;
const MAX_REPEAT: usize = 127 + MIN_REPEAT;
const MIN_DELTA: i64 = -128;
const MAX_DELTA: i64 = 127;

/// Byte run-length encoding.
#[derive(Debug)]
pub(crate) struct ByteRle {
    out: OutStream,
    literals: [u8; MAX_LITERALS],
    num: usize,
    repeat: bool,
    tail_run: usize,
}

impl Default for ByteRle {
    fn default() -> Self {
        Self { out: OutStream::default(), literals: [0; MAX_LITERALS], num: 0, repeat: false, tail_run: 0 }
    }
}

impl ByteRle {
    fn write_values(&mut self, cx: &mut Compressor) -> Result<(), OrcError> {
        if self.num != 0 {
            if self.repeat {
                self.out.write(&[(self.num - MIN_REPEAT) as u8, self.literals[0]], cx)?;
            } else {
                let mut group = [0u8; MAX_LITERALS + 1];
                group[0] = (self.num as u8).wrapping_neg();
                group[1..=self.num].copy_from_slice(&self.literals[..self.num]);
                self.out.write(&group[..=self.num], cx)?;
            }
            self.repeat = false;
            self.num = 0;
            self.tail_run = 0;
        }
        Ok(())
    }

    #[inline]
    pub(crate) fn write(&mut self, value: u8, cx: &mut Compressor) -> Result<(), OrcError> {
        if self.num == 0 {
            self.literals[0] = value;
            self.num = 1;
            self.tail_run = 1;
        } else if self.repeat {
            if value == self.literals[0] {
                self.num += 1;
                if self.num == MAX_REPEAT {
                    self.write_values(cx)?;
                }
            } else {
                self.write_values(cx)?;
                self.literals[0] = value;
                self.num = 1;
                self.tail_run = 1;
            }
        } else {
            if value == self.literals[self.num - 1] {
                self.tail_run += 1;
            } else {
                self.tail_run = 1;
            }
            if self.tail_run == MIN_REPEAT {
                if self.num + 1 == MIN_REPEAT {
                    self.repeat = true;
                    self.num += 1;
                } else {
                    self.num -= MIN_REPEAT - 1;
                    self.write_values(cx)?;
                    self.literals[0] = value;
                    self.repeat = true;
                    self.num = MIN_REPEAT;
                }
            } else {
                self.literals[self.num] = value;
                self.num += 1;
                if self.num == MAX_LITERALS {
                    self.write_values(cx)?;
                }
            }
        }
        Ok(())
    }

    /// `count` copies of `value`; the same bytes as `count` calls to [`ByteRle::write`], in O(count / 130).
    pub(crate) fn write_repeated(&mut self, value: u8, mut count: usize, cx: &mut Compressor) -> Result<(), OrcError> {
        while count > 0 {
            if self.repeat && self.literals[0] == value {
                let take = count.min(MAX_REPEAT - self.num);
                self.num += take;
                count -= take;
                if self.num == MAX_REPEAT {
                    self.write_values(cx)?;
                }
            } else {
                self.write(value, cx)?;
                count -= 1;
            }
        }
        Ok(())
    }

    pub(crate) fn position(&self, cx: &Compressor, positions: &mut Vec<u64>) {
        self.out.position(cx, positions);
        positions.push(self.num as u64);
    }

    pub(crate) fn finish(&mut self, cx: &mut Compressor) -> Result<(), OrcError> {
        self.write_values(cx)?;
        self.out.finish(cx)
    }

    pub(crate) fn stream(&self) -> &OutStream {
        &self.out
    }

    pub(crate) fn clear(&mut self) {
        self.out.clear();
        self.num = 0;
        self.repeat = false;
        self.tail_run = 0;
    }
}

/// Boolean run-length encoding: 8 values a byte, most significant bit first, then byte RLE. The last byte of a
/// stream is padded with zero bits.
#[derive(Debug, Default)]
pub(crate) struct BoolRle {
    bytes: ByteRle,
    current: u8,
    bits: u8,
}

impl BoolRle {
    #[inline]
    pub(crate) fn write(&mut self, value: bool, cx: &mut Compressor) -> Result<(), OrcError> {
        if value {
            self.current |= 0x80 >> self.bits;
        }
        self.bits += 1;
        if self.bits == 8 {
            self.bytes.write(self.current, cx)?;
            self.current = 0;
            self.bits = 0;
        }
        Ok(())
    }

    /// `count` copies of `value`, whole bytes at a time where possible.
    pub(crate) fn write_repeated(
        &mut self,
        value: bool,
        mut count: usize,
        cx: &mut Compressor,
    ) -> Result<(), OrcError> {
        while count > 0 && self.bits != 0 {
            self.write(value, cx)?;
            count -= 1;
        }
        if count >= 8 {
            self.bytes.write_repeated(if value { 0xff } else { 0 }, count / 8, cx)?;
            count %= 8;
        }
        for _ in 0..count {
            self.write(value, cx)?;
        }
        Ok(())
    }

    /// The byte RLE position, then the number of bits already used in the current byte.
    pub(crate) fn position(&self, cx: &Compressor, positions: &mut Vec<u64>) {
        self.bytes.position(cx, positions);
        positions.push(u64::from(self.bits));
    }

    pub(crate) fn finish(&mut self, cx: &mut Compressor) -> Result<(), OrcError> {
        if self.bits != 0 {
            self.bytes.write(self.current, cx)?;
            self.current = 0;
            self.bits = 0;
        }
        self.bytes.finish(cx)
    }

    pub(crate) fn stream(&self) -> &OutStream {
        self.bytes.stream()
    }

    pub(crate) fn clear(&mut self) {
        self.bytes.clear();
        self.current = 0;
        self.bits = 0;
    }
}

/// Integer run-length encoding, version 1. Unsigned encoders must only be given non-negative values.
#[derive(Debug)]
pub(crate) struct IntRle {
    out: OutStream,
    signed: bool,
    literals: [i64; MAX_LITERALS],
    num: usize,
    delta: i64,
    repeat: bool,
    tail_run: usize,
}

/// A varint into `buf` at `at`; returns the new end.
#[inline]
fn varint_at(buf: &mut [u8], mut at: usize, mut v: u64) -> usize {
    while v >= 0x80 {
        buf[at] = (v as u8) | 0x80;
        v >>= 7;
        at += 1;
    }
    buf[at] = v as u8;
    at + 1
}

impl IntRle {
    pub(crate) fn new(signed: bool) -> Self {
        Self {
            out: OutStream::default(),
            signed,
            literals: [0; MAX_LITERALS],
            num: 0,
            delta: 0,
            repeat: false,
            tail_run: 0,
        }
    }

    #[inline]
    fn encode(&self, v: i64) -> u64 {
        if self.signed { zigzag(v) } else { v as u64 }
    }

    fn write_values(&mut self, cx: &mut Compressor) -> Result<(), OrcError> {
        if self.num != 0 {
            // Header, then up to 128 varints of at most 10 bytes.
            let mut group = [0u8; 1 + MAX_LITERALS * 10];
            let end = if self.repeat {
                group[0] = (self.num - MIN_REPEAT) as u8;
                group[1] = self.delta as i8 as u8;
                varint_at(&mut group, 2, self.encode(self.literals[0]))
            } else {
                group[0] = (self.num as u8).wrapping_neg();
                let mut at = 1;
                for i in 0..self.num {
                    at = varint_at(&mut group, at, self.encode(self.literals[i]));
                }
                at
            };
            self.out.write(&group[..end], cx)?;
            self.repeat = false;
            self.num = 0;
            self.tail_run = 0;
        }
        Ok(())
    }

    /// The delta from `prev` to `value` if it fits a run's signed byte.
    #[inline]
    fn small_delta(prev: i64, value: i64) -> Option<i64> {
        value.checked_sub(prev).filter(|d| (MIN_DELTA..=MAX_DELTA).contains(d))
    }

    #[inline]
    pub(crate) fn write(&mut self, value: i64, cx: &mut Compressor) -> Result<(), OrcError> {
        if self.num == 0 {
            self.literals[0] = value;
            self.num = 1;
            self.tail_run = 1;
        } else if self.repeat {
            // A run's values are base + delta * i, all of which were real values: no overflow on the way.
            if self.literals[0].checked_add(self.delta * self.num as i64) == Some(value) {
                self.num += 1;
                if self.num == MAX_REPEAT {
                    self.write_values(cx)?;
                }
            } else {
                self.write_values(cx)?;
                self.literals[0] = value;
                self.num = 1;
                self.tail_run = 1;
            }
        } else {
            let prev = self.literals[self.num - 1];
            if self.tail_run >= 2 && prev.checked_add(self.delta) == Some(value) {
                self.tail_run += 1;
            } else if let Some(d) = Self::small_delta(prev, value) {
                self.delta = d;
                self.tail_run = 2;
            } else {
                self.tail_run = 1;
            }
            if self.tail_run == MIN_REPEAT {
                if self.num + 1 == MIN_REPEAT {
                    self.repeat = true;
                    self.num += 1;
                } else {
                    self.num -= MIN_REPEAT - 1;
                    let base = self.literals[self.num];
                    self.write_values(cx)?;
                    self.literals[0] = base;
                    self.repeat = true;
                    self.num = MIN_REPEAT;
                }
            } else {
                self.literals[self.num] = value;
                self.num += 1;
                if self.num == MAX_LITERALS {
                    self.write_values(cx)?;
                }
            }
        }
        Ok(())
    }

    pub(crate) fn position(&self, cx: &Compressor, positions: &mut Vec<u64>) {
        self.out.position(cx, positions);
        positions.push(self.num as u64);
    }

    pub(crate) fn finish(&mut self, cx: &mut Compressor) -> Result<(), OrcError> {
        self.write_values(cx)?;
        self.out.finish(cx)
    }

    pub(crate) fn stream(&self) -> &OutStream {
        &self.out
    }

    pub(crate) fn buffered_len(&self) -> usize {
        self.out.buffered_len()
    }

    pub(crate) fn clear(&mut self) {
        self.out.clear();
        self.num = 0;
        self.repeat = false;
        self.tail_run = 0;
    }
}

impl ByteRle {
    pub(crate) fn buffered_len(&self) -> usize {
        self.out.buffered_len()
    }
}

impl BoolRle {
    pub(crate) fn buffered_len(&self) -> usize {
        self.bytes.buffered_len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orc::OrcCompression;

    fn cx() -> Compressor {
        Compressor::new(OrcCompression::None, 1 << 16)
    }

    fn ints(signed: bool, values: &[i64]) -> Vec<u8> {
        let mut cx = cx();
        let mut e = IntRle::new(signed);
        for &v in values {
            e.write(v, &mut cx).unwrap();
        }
        e.finish(&mut cx).unwrap();
        e.stream().bytes().to_vec()
    }

    fn bytes(values: &[u8]) -> Vec<u8> {
        let mut cx = cx();
        let mut e = ByteRle::default();
        for &v in values {
            e.write(v, &mut cx).unwrap();
        }
        e.finish(&mut cx).unwrap();
        e.stream().bytes().to_vec()
    }

    /// A straightforward decoder, to check the encoders against.
    fn decode_ints(signed: bool, mut data: &[u8]) -> Vec<i64> {
        fn varint(data: &mut &[u8]) -> u64 {
            let (mut v, mut shift) = (0u64, 0);
            loop {
                let b = data[0];
                *data = &data[1..];
                v |= u64::from(b & 0x7f) << shift;
                shift += 7;
                if b < 0x80 {
                    return v;
                }
            }
        }
        let value = |u: u64| if signed { (u >> 1) as i64 ^ -((u & 1) as i64) } else { u as i64 };
        let mut out = Vec::new();
        while !data.is_empty() {
            let h = data[0] as i8;
            data = &data[1..];
            if h >= 0 {
                let delta = i64::from(data[0] as i8);
                data = &data[1..];
                let base = value(varint(&mut data));
                for i in 0..(h as i64 + 3) {
                    out.push(base + delta * i);
                }
            } else {
                for _ in 0..-(h as i64) {
                    out.push(value(varint(&mut data)));
                }
            }
        }
        out
    }

    #[test]
    fn integer_rle_v1_spec_examples() {
        assert_eq!(ints(false, &[7; 100]), [0x61, 0x00, 0x07]);
        let down: Vec<i64> = (1..=100).rev().collect();
        assert_eq!(ints(false, &down), [0x61, 0xff, 0x64]);
        assert_eq!(ints(false, &[2, 3, 6, 7, 11]), [0xfb, 0x02, 0x03, 0x06, 0x07, 0x0b]);
        // Signed values are zigzagged: -1 -> 1, 5 -> 10.
        assert_eq!(ints(true, &[-1, 5]), [0xfe, 0x01, 0x0a]);
        assert_eq!(ints(true, &[-1; 3]), [0x00, 0x00, 0x01]);
    }

    #[test]
    fn integer_rle_v1_runs_and_literals_mix() {
        // Literals, then a run that starts inside the literal buffer (the Java writer's behaviour).
        assert_eq!(ints(false, &[1, 5, 2, 9, 9, 9]), [0xfd, 0x01, 0x05, 0x02, 0x00, 0x00, 0x09]);
        // Three values with a common small delta already form a run.
        assert_eq!(ints(false, &[1, 5, 9, 9, 9, 9]), [0x00, 0x04, 0x01, 0x00, 0x00, 0x09]);
        // A run is cut at 130 values.
        let mut long = vec![4; 131];
        long.push(8);
        assert_eq!(ints(false, &long), [0x7f, 0x00, 0x04, 0xfe, 0x04, 0x08]);
        // Literal groups hold at most 128 values.
        let spread: Vec<i64> = (0..300).map(|i| i * 1000).collect();
        let enc = ints(false, &spread);
        assert_eq!(enc[0], 0x80);
        assert_eq!(decode_ints(false, &enc), spread);
    }

    #[test]
    fn integer_rle_v1_extremes_round_trip() {
        let values = [i64::MIN, i64::MAX, i64::MAX, i64::MAX, i64::MIN, i64::MIN + 1, i64::MIN + 2, 0, -1, -129, 127];
        assert_eq!(decode_ints(true, &ints(true, &values)), values);
        let overflowing = [i64::MAX - 200, i64::MAX - 100, i64::MAX, i64::MIN + 50, i64::MIN + 150];
        assert_eq!(decode_ints(true, &ints(true, &overflowing)), overflowing);
        let unsigned = [0, 1, 2, 3, 1 << 40, i64::MAX, 5, 5, 5];
        assert_eq!(decode_ints(false, &ints(false, &unsigned)), unsigned);
    }

    #[test]
    fn byte_rle_spec_examples() {
        assert_eq!(bytes(&[0; 100]), [0x61, 0x00]);
        assert_eq!(bytes(&[0x44, 0x45]), [0xfe, 0x44, 0x45]);
        assert_eq!(bytes(&[1, 2, 3, 3, 3, 3]), [0xfe, 0x01, 0x02, 0x01, 0x03]);
    }

    #[test]
    fn byte_rle_repeated_matches_single_writes() {
        let mut cx = cx();
        for (prefix, value, count) in
            [(&[][..], 9u8, 1000usize), (&[9, 9][..], 9, 3), (&[1, 2][..], 3, 500), (&[5][..], 5, 1)]
        {
            let mut bulk = ByteRle::default();
            let mut single = ByteRle::default();
            for &p in prefix {
                bulk.write(p, &mut cx).unwrap();
                single.write(p, &mut cx).unwrap();
            }
            bulk.write_repeated(value, count, &mut cx).unwrap();
            for _ in 0..count {
                single.write(value, &mut cx).unwrap();
            }
            let (mut pb, mut ps) = (Vec::new(), Vec::new());
            bulk.position(&cx, &mut pb);
            single.position(&cx, &mut ps);
            assert_eq!(pb, ps);
            bulk.finish(&mut cx).unwrap();
            single.finish(&mut cx).unwrap();
            assert_eq!(bulk.stream().bytes(), single.stream().bytes());
        }
    }

    #[test]
    fn boolean_rle_packs_msb_first() {
        let mut cx = cx();
        let mut e = BoolRle::default();
        e.write(true, &mut cx).unwrap();
        e.write_repeated(false, 7, &mut cx).unwrap();
        e.write_repeated(true, 8, &mut cx).unwrap();
        e.write(true, &mut cx).unwrap();
        e.finish(&mut cx).unwrap();
        // [0x80, 0xff, 0x80] as a 3-literal byte RLE group.
        assert_eq!(e.stream().bytes(), [0xfd, 0x80, 0xff, 0x80]);

        let mut e = BoolRle::default();
        e.write(false, &mut cx).unwrap();
        e.write_repeated(true, 8 * 100 + 3, &mut cx).unwrap();
        let mut pos = Vec::new();
        e.position(&cx, &mut pos);
        // One byte 0x7f (pending literal), 99 bytes 0xff (pending run), then 4 bits used.
        assert_eq!(pos, [2, 99, 4]);
        e.finish(&mut cx).unwrap();
        assert_eq!(e.stream().bytes(), [0xff, 0x7f, 0x60, 0xff, 0xff, 0xf0]);
    }
}
