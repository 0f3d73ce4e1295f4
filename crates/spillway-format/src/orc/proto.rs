//! A minimal protobuf (proto2) encoder for ORC's metadata messages.
//!
//! Only what `orc_proto.proto` needs: varint, zigzag (`sint64`), fixed64 (`double`), length-delimited (strings,
//! bytes, nested messages, packed repeated varints). Fields are written in the order the caller asks; readers accept
//! any order. Nested messages are encoded in place and their length prefix is spliced in front afterwards, so there
//! is no temporary buffer per message (only a memmove of the body; these messages are small and written once per
//! row group at most).

/// Appends `v` as a base-128 varint (least significant group first).
#[inline]
pub(crate) fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

/// Zigzag-maps a signed value so that small magnitudes give small unsigned values.
#[inline]
pub(crate) fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

const WIRE_VARINT: u64 = 0;
const WIRE_FIXED64: u64 = 1;
const WIRE_LEN: u64 = 2;

/// A protobuf message being encoded.
#[derive(Debug, Default)]
pub(crate) struct Proto {
    pub(crate) buf: Vec<u8>,
}

impl Proto {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    pub(crate) fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    fn tag(&mut self, field: u32, wire: u64) {
        put_varint(&mut self.buf, (u64::from(field) << 3) | wire);
    }

    /// `uint32`, `uint64`, `int32` (non-negative) and enum fields.
    pub(crate) fn uint(&mut self, field: u32, v: u64) -> &mut Self {
        self.tag(field, WIRE_VARINT);
        put_varint(&mut self.buf, v);
        self
    }

    /// `sint32` / `sint64` fields (zigzag; identical bytes for both widths).
    pub(crate) fn sint(&mut self, field: u32, v: i64) -> &mut Self {
        self.uint(field, zigzag(v))
    }

    pub(crate) fn boolean(&mut self, field: u32, v: bool) -> &mut Self {
        self.uint(field, u64::from(v))
    }

    pub(crate) fn double(&mut self, field: u32, v: f64) -> &mut Self {
        self.tag(field, WIRE_FIXED64);
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }

    /// `bytes` and `string` fields.
    pub(crate) fn bytes(&mut self, field: u32, v: &[u8]) -> &mut Self {
        self.tag(field, WIRE_LEN);
        put_varint(&mut self.buf, v.len() as u64);
        self.buf.extend_from_slice(v);
        self
    }

    /// A nested message, encoded by `f` in place.
    pub(crate) fn message(&mut self, field: u32, f: impl FnOnce(&mut Proto)) -> &mut Self {
        self.tag(field, WIRE_LEN);
        let start = self.buf.len();
        f(self);
        self.prefix_len(start);
        self
    }

    /// A packed repeated varint field (`[packed=true]`); nothing when `values` is empty.
    pub(crate) fn packed_uint(&mut self, field: u32, values: &[u64]) -> &mut Self {
        if values.is_empty() {
            return self;
        }
        self.tag(field, WIRE_LEN);
        let start = self.buf.len();
        for &v in values {
            put_varint(&mut self.buf, v);
        }
        self.prefix_len(start);
        self
    }

    /// Inserts the varint length of `buf[start..]` at `start`.
    fn prefix_len(&mut self, start: usize) {
        let mut len = (self.buf.len() - start) as u64;
        let mut prefix = [0u8; 10];
        let mut n = 0;
        while len >= 0x80 {
            prefix[n] = (len as u8) | 0x80;
            len >>= 7;
            n += 1;
        }
        prefix[n] = len as u8;
        self.buf.splice(start..start, prefix[..=n].iter().copied());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_match_the_spec_table() {
        for (v, bytes) in [
            (0u64, &[0x00][..]),
            (1, &[0x01]),
            (127, &[0x7f]),
            (128, &[0x80, 0x01]),
            (129, &[0x81, 0x01]),
            (16_383, &[0xff, 0x7f]),
            (16_384, &[0x80, 0x80, 0x01]),
            (16_385, &[0x81, 0x80, 0x01]),
        ] {
            let mut buf = Vec::new();
            put_varint(&mut buf, v);
            assert_eq!(buf, bytes, "{v}");
        }
        assert_eq!([0, -1, 1, -2, 2].map(zigzag), [0, 1, 2, 3, 4]);
        assert_eq!(zigzag(i64::MIN), u64::MAX);
    }

    #[test]
    fn nested_and_packed_fields() {
        let mut p = Proto::new();
        p.uint(1, 150).message(3, |m| {
            m.bytes(2, b"testing");
        });
        p.packed_uint(4, &[3, 270, 86942]);
        p.packed_uint(5, &[]);
        assert_eq!(
            p.into_bytes(),
            [
                0x08, 0x96, 0x01, // field 1 = 150
                0x1a, 0x09, 0x12, 0x07, b't', b'e', b's', b't', b'i', b'n',
                b'g', // field 3 { field 2 = "testing" }
                0x22, 0x06, 0x03, 0x8e, 0x02, 0x9e, 0xa7, 0x05, // packed field 4
            ]
        );
        let mut p = Proto::new();
        p.uint(8000, 1);
        assert_eq!(p.into_bytes(), [0x80, 0xf4, 0x03, 0x01]);
    }
}
