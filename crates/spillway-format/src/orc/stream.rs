//! ORC output streams and the generic compression layer.
//!
//! With compression, a stream is a sequence of chunks, each `[3-byte LE header][body]` where the header is
//! `(body length << 1) | is_original`; every chunk holds at most `block_size` uncompressed bytes, compressed on
//! its own (zlib: raw DEFLATE without the zlib header; snappy: one raw snappy block). A chunk whose compressed form
//! is not smaller than its input is stored as is with `is_original = 1`. Without compression, a stream is just its
//! bytes.
//!
//! Chunks are cut at exact multiples of `block_size` uncompressed bytes and compressed as soon as they fill, so a
//! stream position (for the row index) is `[compressed offset of the current chunk, bytes into the chunk]`, or
//! `[byte offset]` without compression. Invariant: between calls, the pending chunk holds fewer than `block_size`
//! bytes, so a recorded position never points at the end of a full chunk.

use flate2::{Compress, Compression, FlushCompress, Status};

use super::{OrcCompression, OrcError};

/// Largest chunk the 3-byte header can describe (23 bits of length).
pub(crate) const MAX_BLOCK_SIZE: usize = (1 << 23) - 1;

/// The zlib level: the level Java's `Deflater` uses by default.
const ZLIB_LEVEL: u32 = 6;

enum Codec {
    None,
    Zlib(Box<Compress>),
    Snappy(Box<snap::raw::Encoder>),
}

/// The writer-wide compressor (shared by all streams; its state is reset per chunk).
pub(crate) struct Compressor {
    codec: Codec,
    block_size: usize,
    scratch: Vec<u8>,
}

impl Compressor {
    pub(crate) fn new(kind: OrcCompression, block_size: usize) -> Self {
        let codec = match kind {
            OrcCompression::None => Codec::None,
            OrcCompression::Zlib => Codec::Zlib(Box::new(Compress::new(Compression::new(ZLIB_LEVEL), false))),
            OrcCompression::Snappy => Codec::Snappy(Box::new(snap::raw::Encoder::new())),
        };
        Self { codec, block_size, scratch: Vec::new() }
    }

    #[inline]
    pub(crate) fn is_compressed(&self) -> bool {
        !matches!(self.codec, Codec::None)
    }

    /// Appends one chunk (header and body) holding `input` (at most `block_size` bytes) to `out`.
    fn put_chunk(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), OrcError> {
        let compressed_len = match &mut self.codec {
            Codec::None => None,
            Codec::Zlib(z) => {
                z.reset();
                self.scratch.clear();
                self.scratch.reserve(input.len());
                let status = z
                    .compress_vec(input, &mut self.scratch, FlushCompress::Finish)
                    .map_err(|e| OrcError::Compression(format!("zlib: {e}")))?;
                (status == Status::StreamEnd).then_some(self.scratch.len())
            }
            Codec::Snappy(enc) => {
                let max = snap::raw::max_compress_len(input.len());
                if self.scratch.len() < max {
                    self.scratch.resize(max, 0);
                }
                let n = enc
                    .compress(input, &mut self.scratch[..max])
                    .map_err(|e| OrcError::Compression(format!("snappy: {e}")))?;
                Some(n)
            }
        };
        match compressed_len {
            Some(n) if n < input.len() => {
                put_header(out, n, false);
                out.extend_from_slice(&self.scratch[..n]);
            }
            _ => {
                put_header(out, input.len(), true);
                out.extend_from_slice(input);
            }
        }
        Ok(())
    }

    /// The whole of `data` as a (compressed) stream: footers, metadata and row indexes.
    pub(crate) fn compress_all(&mut self, data: &[u8]) -> Result<Vec<u8>, OrcError> {
        if !self.is_compressed() {
            return Ok(data.to_vec());
        }
        let mut out = Vec::with_capacity(data.len() / 2 + 16);
        for chunk in data.chunks(self.block_size) {
            self.put_chunk(chunk, &mut out)?;
        }
        Ok(out)
    }
}

fn put_header(out: &mut Vec<u8>, len: usize, original: bool) {
    let v = (len << 1) | usize::from(original);
    out.extend_from_slice(&[v as u8, (v >> 8) as u8, (v >> 16) as u8]);
}

/// One ORC stream of a stripe being written.
#[derive(Debug, Default)]
pub(crate) struct OutStream {
    /// Finished chunks (headers included), or every byte without compression.
    out: Vec<u8>,
    /// The chunk being filled (compression only): fewer than `block_size` bytes between calls.
    pending: Vec<u8>,
}

impl OutStream {
    #[inline]
    pub(crate) fn write(&mut self, mut data: &[u8], cx: &mut Compressor) -> Result<(), OrcError> {
        if !cx.is_compressed() {
            self.out.extend_from_slice(data);
            return Ok(());
        }
        loop {
            let room = cx.block_size - self.pending.len();
            if data.len() < room {
                self.pending.extend_from_slice(data);
                return Ok(());
            }
            self.pending.extend_from_slice(&data[..room]);
            data = &data[room..];
            cx.put_chunk(&self.pending, &mut self.out)?;
            self.pending.clear();
        }
    }

    /// Appends this stream's current position: `[chunk offset, offset in chunk]` or `[byte offset]`.
    pub(crate) fn position(&self, cx: &Compressor, positions: &mut Vec<u64>) {
        positions.push(self.out.len() as u64);
        if cx.is_compressed() {
            positions.push(self.pending.len() as u64);
        }
    }

    /// Compresses the last, partial chunk. The stream is complete afterwards.
    pub(crate) fn finish(&mut self, cx: &mut Compressor) -> Result<(), OrcError> {
        if !self.pending.is_empty() {
            cx.put_chunk(&self.pending, &mut self.out)?;
            self.pending.clear();
        }
        Ok(())
    }

    /// The stream's bytes (complete only after [`OutStream::finish`]).
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.out
    }

    /// Bytes buffered so far (compressed chunks plus the pending chunk).
    pub(crate) fn buffered_len(&self) -> usize {
        self.out.len() + self.pending.len()
    }

    /// Empties the stream for the next stripe, keeping its allocations.
    pub(crate) fn clear(&mut self) {
        self.out.clear();
        self.pending.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_headers_match_the_spec() {
        let mut out = Vec::new();
        put_header(&mut out, 100_000, false);
        assert_eq!(out, [0x40, 0x0d, 0x03]);
        out.clear();
        put_header(&mut out, 5, true);
        assert_eq!(out, [0x0b, 0x00, 0x00]);
    }

    #[test]
    fn uncompressible_chunks_are_stored_original() {
        for kind in [OrcCompression::Zlib, OrcCompression::Snappy] {
            let mut cx = Compressor::new(kind, 8);
            let mut s = OutStream::default();
            s.write(b"abcdefghij", &mut cx).unwrap();
            // The first 8 bytes form a full chunk that does not compress.
            assert_eq!(&s.bytes()[..11], b"\x11\x00\x00abcdefgh");
            let mut pos = Vec::new();
            s.position(&cx, &mut pos);
            assert_eq!(pos, [11, 2]);
            s.finish(&mut cx).unwrap();
            assert_eq!(&s.bytes()[11..], b"\x05\x00\x00ij");
        }
    }

    #[test]
    fn compressible_chunks_are_compressed() {
        let data = vec![7u8; 1000];
        let mut cx = Compressor::new(OrcCompression::Zlib, 256);
        let out = cx.compress_all(&data).unwrap();
        let mut at = 0;
        let mut decoded = Vec::new();
        while at < out.len() {
            let h = usize::from(out[at]) | usize::from(out[at + 1]) << 8 | usize::from(out[at + 2]) << 16;
            assert_eq!(h & 1, 0);
            let body = &out[at + 3..at + 3 + (h >> 1)];
            let mut d = flate2::Decompress::new(false);
            let mut chunk = Vec::with_capacity(256);
            d.decompress_vec(body, &mut chunk, flate2::FlushDecompress::Finish).unwrap();
            decoded.extend_from_slice(&chunk);
            at += 3 + (h >> 1);
        }
        assert_eq!(decoded, data);
    }
}
