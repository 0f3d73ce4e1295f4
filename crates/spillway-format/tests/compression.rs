//! Round trips, exact byte layouts and external-tool interop for `spillway_format::compression`.

use std::io::{Read, Write};
use std::process::{Command, Stdio};

use proptest::prelude::*;
use spillway_format::compression::{
    Compression, CompressionError, DEFAULT_LEVEL, Encoder, HADOOP_SNAPPY_BLOCK_SIZE, SNAPPY_JAVA_BLOCK_SIZE,
    SNAPPY_JAVA_HEADER_LEN, SNAPPY_JAVA_MAGIC, decompress,
};

const ENTRY: &str = "stream-1-2025-01-01-00-00-00-0f8fad5b-d9cb-469f-a165-70867728950e";

/// xorshift64* — deterministic, dependency-free.
struct Prng(u64);

impl Prng {
    fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            out.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        out.truncate(len);
        out
    }
}

fn random(len: usize) -> Vec<u8> {
    Prng(0x9E37_79B9_7F4A_7C15).bytes(len)
}

/// JSON-lines-like data: highly compressible but not trivially repetitive.
fn compressible(len: usize) -> Vec<u8> {
    let mut rng = Prng(42);
    let mut out = Vec::with_capacity(len + 128);
    while out.len() < len {
        let line = format!(
            "{{\"ticker\":\"{}\",\"sector\":\"TECHNOLOGY\",\"change\":{},\"price\":{}}}\n",
            ["AMZN", "MSFT", "GOOG", "NFLX"][rng.below(4)],
            rng.below(100),
            rng.below(10_000)
        );
        out.extend_from_slice(line.as_bytes());
    }
    out.truncate(len);
    out
}

fn encode_chunks<'a>(compression: Compression, level: u32, chunks: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut encoder = Encoder::new(compression, level, ENTRY, 0);
    let mut total = 0u64;
    for chunk in chunks {
        encoder.write(chunk).expect("write");
        total += chunk.len() as u64;
        assert_eq!(encoder.input_len(), total);
    }
    encoder.finish().expect("finish")
}

fn encode(compression: Compression, data: &[u8]) -> Vec<u8> {
    encode_chunks(compression, DEFAULT_LEVEL, [data])
}

/// Splits `data` into pseudo-random pieces of 0..=max bytes (empty writes included).
fn split(data: &[u8], max: usize, seed: u64) -> Vec<&[u8]> {
    let mut rng = Prng(seed);
    let mut pieces = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let n = rng.below(max + 1).min(rest.len());
        let (head, tail) = rest.split_at(n);
        pieces.push(head);
        rest = tail;
    }
    pieces
}

/// The interesting sizes for a format: around its internal block/buffer size.
fn block_size(compression: Compression) -> usize {
    match compression {
        Compression::Snappy => SNAPPY_JAVA_BLOCK_SIZE,
        Compression::HadoopSnappy => HADOOP_SNAPPY_BLOCK_SIZE,
        // GZIP/ZIP stage 64 KiB of input before deflating.
        Compression::Uncompressed | Compression::Gzip | Compression::Zip => 64 * 1024,
    }
}

fn cases(compression: Compression) -> Vec<(&'static str, Vec<u8>)> {
    let block = block_size(compression);
    vec![
        ("empty", Vec::new()),
        ("one byte", vec![0x2a]),
        ("block - 1", random(block - 1)),
        ("exactly one block", random(block)),
        ("block + 1", random(block + 1)),
        ("two blocks exactly", compressible(2 * block)),
        ("1 MiB random", random(1 << 20)),
        ("1 MiB compressible", compressible(1 << 20)),
    ]
}

#[test]
fn firehose_names_extensions_and_encodings() {
    let expected = [
        (Compression::Uncompressed, "UNCOMPRESSED", "", None),
        (Compression::Gzip, "GZIP", ".gz", Some("gzip")),
        (Compression::Zip, "ZIP", ".zip", Some("zip")),
        (Compression::Snappy, "Snappy", ".snappy", Some("snappy-java")),
        (Compression::HadoopSnappy, "HADOOP_SNAPPY", ".snappy", Some("hadoop-snappy")),
    ];
    assert_eq!(Compression::ALL.len(), expected.len());
    for (compression, name, extension, encoding) in expected {
        assert_eq!(Compression::from_firehose(name), Some(compression));
        assert_eq!(compression.firehose_name(), name);
        assert_eq!(compression.to_string(), name);
        assert_eq!(compression.extension(), extension);
        assert_eq!(compression.content_encoding(), encoding);
    }
    for bad in ["", "gzip", "Gzip", "SNAPPY", "snappy", "HADOOP_SNAPPY ", "Zip", "uncompressed", "NONE"] {
        assert_eq!(Compression::from_firehose(bad), None, "{bad:?}");
    }
}

#[test]
fn round_trip_every_format_and_size() {
    for compression in Compression::ALL {
        for (name, data) in cases(compression) {
            let whole = encode(compression, &data);
            let back = decompress(compression, &whole).unwrap_or_else(|e| panic!("{compression} {name}: {e}"));
            assert!(back == data, "{compression} {name}: round trip differs");
            if compression == Compression::Uncompressed {
                assert_eq!(whole, data, "UNCOMPRESSED is the records verbatim");
            }
        }
    }
}

#[test]
fn many_small_writes_match_one_big_write() {
    let data = compressible(300_000);
    for compression in Compression::ALL {
        let whole = encode(compression, &data);
        for (max, seed) in [(1, 1), (17, 2), (700, 3), (40_000, 4), (300_000, 5)] {
            let pieces = split(&data, max, seed);
            let chunked = encode_chunks(compression, DEFAULT_LEVEL, pieces.iter().copied());
            assert!(chunked == whole, "{compression}: writes of <= {max} bytes changed the output");
        }
        assert_eq!(decompress(compression, &whole).expect("decode"), data, "{compression}");
    }
}

#[test]
fn deterministic_output() {
    for compression in Compression::ALL {
        for data in [Vec::new(), b"abc".to_vec(), compressible(500_000), random(100_000)] {
            let first = encode(compression, &data);
            let second = encode(compression, &data);
            assert!(first == second, "{compression}: two encodings of the same input differ");
        }
    }
}

#[test]
fn compressed_formats_actually_compress() {
    let data = compressible(1 << 20);
    for compression in [Compression::Gzip, Compression::Zip, Compression::Snappy, Compression::HadoopSnappy] {
        let out = encode(compression, &data);
        assert!(out.len() < data.len() / 3, "{compression}: {} -> {} bytes", data.len(), out.len());
    }
}

#[test]
fn deflate_levels_round_trip_and_clamp() {
    let data = compressible(200_000);
    for compression in [Compression::Gzip, Compression::Zip] {
        let mut sizes = Vec::new();
        for level in 0..=9 {
            let out = encode_chunks(compression, level, [&data[..]]);
            assert_eq!(decompress(compression, &out).expect("decode"), data, "{compression} level {level}");
            sizes.push(out.len());
        }
        assert!(sizes[9] < sizes[1], "{compression}: level 9 ({}) not smaller than 1 ({})", sizes[9], sizes[1]);
        let clamped = encode_chunks(compression, 99, [&data[..]]);
        assert_eq!(clamped, encode_chunks(compression, 9, [&data[..]]), "{compression}: level 99 is level 9");
    }
    // GZIP level 0 is stored deflate blocks: bigger than the input, still valid.
    assert!(encode_chunks(Compression::Gzip, 0, [&data[..]]).len() > data.len());
    // ZIP has no level 0: it is raised to 1.
    assert_eq!(encode_chunks(Compression::Zip, 0, [&data[..]]), encode_chunks(Compression::Zip, 1, [&data[..]]));
}

#[test]
fn capacity_hint_does_not_change_output() {
    let data = compressible(100_000);
    for compression in Compression::ALL {
        let mut encoder = Encoder::new(compression, DEFAULT_LEVEL, ENTRY, 10 << 20);
        encoder.write(&data).expect("write");
        assert_eq!(encoder.finish().expect("finish"), encode(compression, &data), "{compression}");
    }
}

// ---------------------------------------------------------------------------------------------------------------
// GZIP

#[test]
fn gzip_is_one_member_with_fixed_header() {
    let data = compressible(1 << 20);
    let out = encode(Compression::Gzip, &data);
    // ID1 ID2 CM=deflate FLG=0 (no name/comment/extra) MTIME=0; XFL at [8]; OS=255 (unknown).
    assert_eq!(&out[..8], &[0x1f, 0x8b, 0x08, 0x00, 0, 0, 0, 0]);
    assert_eq!(out[9], 0xff);
    let isize = u32::from_le_bytes(out[out.len() - 4..].try_into().expect("4 bytes"));
    assert_eq!(isize as usize, data.len());

    let mut decoded = Vec::new();
    flate2::read::MultiGzDecoder::new(&out[..]).read_to_end(&mut decoded).expect("MultiGzDecoder");
    assert!(decoded == data);
    // A single-member decoder must consume the whole object: nothing follows the first member.
    let mut single = flate2::read::GzDecoder::new(&out[..]);
    let mut decoded = Vec::new();
    single.read_to_end(&mut decoded).expect("GzDecoder");
    assert!(decoded == data);
    let header = single.header().expect("header");
    assert_eq!(header.filename(), None);
    assert_eq!(header.mtime(), 0);
}

#[test]
fn gzip_decodes_with_gzip_command() {
    for data in [Vec::new(), b"x".to_vec(), compressible(1 << 20), random(300_000)] {
        let out = encode(Compression::Gzip, &data);
        let Some(decoded) = run_with_stdin("gzip", &["-dc"], &out) else { return };
        assert!(decoded == data, "gzip -dc output differs ({} vs {} bytes)", decoded.len(), data.len());
    }
}

/// Runs `program args` with `input` on stdin; `None` (with a note) when the program is not installed.
fn run_with_stdin(program: &str, args: &[&str], input: &[u8]) -> Option<Vec<u8>> {
    let child = Command::new(program).args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("note: `{program}` not installed; skipping the external-tool check");
            return None;
        }
        Err(e) => panic!("spawning {program}: {e}"),
    };
    let mut stdin = child.stdin.take().expect("stdin");
    let input = input.to_vec();
    let feeder = std::thread::spawn(move || stdin.write_all(&input));
    let output = child.wait_with_output().expect("wait");
    feeder.join().expect("feeder thread").expect("write stdin");
    assert!(output.status.success(), "{program} {args:?} failed: {:?}", output.status);
    Some(output.stdout)
}

// ---------------------------------------------------------------------------------------------------------------
// ZIP

#[test]
fn zip_has_exactly_one_deflate_entry_with_the_given_name() {
    let data = compressible(1 << 20);
    let out = encode(Compression::Zip, &data);
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(&out[..])).expect("open archive");
    assert_eq!(archive.len(), 1);
    let mut entry = archive.by_index(0).expect("entry");
    assert_eq!(entry.name().expect("name"), ENTRY);
    assert_eq!(entry.compression(), zip::CompressionMethod::Deflated);
    assert_eq!(entry.size(), data.len() as u64);
    assert_eq!(entry.last_modified(), Some(zip::DateTime::default()), "fixed 1980-01-01 timestamp");
    let mut decoded = Vec::new();
    entry.read_to_end(&mut decoded).expect("read entry");
    assert!(decoded == data);
}

#[test]
fn zip_empty_input_is_one_empty_entry() {
    let out = encode(Compression::Zip, b"");
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(&out[..])).expect("open archive");
    assert_eq!(archive.len(), 1);
    assert_eq!(archive.by_index(0).expect("entry").name().expect("name"), ENTRY);
    assert_eq!(decompress(Compression::Zip, &out).expect("decode"), b"");
}

#[test]
fn zip_decodes_with_unzip_command() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (i, data) in [Vec::new(), b"x".to_vec(), compressible(1 << 20), random(300_000)].into_iter().enumerate() {
        let out = encode(Compression::Zip, &data);
        let path = dir.path().join(format!("object-{i}.zip"));
        std::fs::write(&path, &out).expect("write zip");
        let path = path.to_str().expect("utf-8 path");
        let result = Command::new("unzip").args(["-p", path, ENTRY]).output();
        let output = match result {
            Ok(output) => output,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                eprintln!("note: `unzip` not installed; skipping the external-tool check");
                return;
            }
            Err(e) => panic!("spawning unzip: {e}"),
        };
        assert!(
            output.status.success(),
            "unzip -p failed: {:?} {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(output.stdout == data, "unzip -p output differs ({} vs {} bytes)", output.stdout.len(), data.len());
    }
}

#[test]
fn zip_decoder_rejects_archives_without_exactly_one_entry() {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default();
    writer.start_file("a", options).expect("a");
    writer.write_all(b"1").expect("write a");
    writer.start_file("b", options).expect("b");
    writer.write_all(b"2").expect("write b");
    let two = writer.finish().expect("finish").into_inner();
    assert!(matches!(decompress(Compression::Zip, &two), Err(CompressionError::ZipEntryCount(2))));
}

// ---------------------------------------------------------------------------------------------------------------
// Snappy (xerial snappy-java stream)

fn snappy_java_header() -> Vec<u8> {
    let mut header = SNAPPY_JAVA_MAGIC.to_vec();
    header.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1]);
    header
}

#[test]
fn snappy_java_known_vector_hello() {
    let out = encode(Compression::Snappy, b"hello");
    let mut expected = vec![0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0x00, 0, 0, 0, 1, 0, 0, 0, 1];
    expected.extend_from_slice(&[0, 0, 0, 7]);
    expected.extend_from_slice(&[0x05, 0x10, b'h', b'e', b'l', b'l', b'o']);
    assert_eq!(out, expected);
    assert_eq!(decompress(Compression::Snappy, &out).expect("decode"), b"hello");
}

#[test]
fn snappy_java_empty_input_is_header_only() {
    let out = encode(Compression::Snappy, b"");
    assert_eq!(out, snappy_java_header());
    assert_eq!(out.len(), SNAPPY_JAVA_HEADER_LEN);
    assert_eq!(decompress(Compression::Snappy, &out).expect("decode"), b"");
}

/// Walks the blocks after the header, checking each length prefix; returns each block's decoded size.
fn snappy_java_blocks(out: &[u8]) -> Vec<usize> {
    assert_eq!(&out[..SNAPPY_JAVA_HEADER_LEN], &snappy_java_header()[..]);
    let mut pos = SNAPPY_JAVA_HEADER_LEN;
    let mut sizes = Vec::new();
    while pos < out.len() {
        let len = i32::from_be_bytes(out[pos..pos + 4].try_into().expect("4 bytes"));
        assert!(len > 0, "block length {len}");
        let end = pos + 4 + len as usize;
        assert!(end <= out.len(), "block length {len} at {pos} overruns the object");
        let block = snap::raw::Decoder::new().decompress_vec(&out[pos + 4..end]).expect("raw snappy block");
        sizes.push(block.len());
        pos = end;
    }
    assert_eq!(pos, out.len(), "trailing bytes after the last block");
    sizes
}

#[test]
fn snappy_java_blocks_are_32k_with_exact_length_prefixes() {
    for (len, expected) in [
        (1, vec![1]),
        (SNAPPY_JAVA_BLOCK_SIZE, vec![SNAPPY_JAVA_BLOCK_SIZE]),
        (SNAPPY_JAVA_BLOCK_SIZE + 1, vec![SNAPPY_JAVA_BLOCK_SIZE, 1]),
        (100_000, vec![32_768, 32_768, 32_768, 1_696]),
    ] {
        for data in [random(len), compressible(len)] {
            assert_eq!(snappy_java_blocks(&encode(Compression::Snappy, &data)), expected, "{len} bytes");
            // Record boundaries never shift block boundaries.
            let pieces = split(&data, 5_000, len as u64);
            let chunked = encode_chunks(Compression::Snappy, DEFAULT_LEVEL, pieces.iter().copied());
            assert_eq!(snappy_java_blocks(&chunked), expected, "{len} bytes in pieces");
        }
    }
}

#[test]
fn snappy_java_decoder_accepts_concatenated_streams() {
    let mut both = encode(Compression::Snappy, b"first ");
    both.extend_from_slice(&encode(Compression::Snappy, b"second"));
    assert_eq!(decompress(Compression::Snappy, &both).expect("decode"), b"first second");
}

// ---------------------------------------------------------------------------------------------------------------
// HADOOP_SNAPPY

/// Walks `[u32 uncompressed][u32 compressed][raw]` blocks; returns each block's declared uncompressed size.
fn hadoop_blocks(out: &[u8]) -> Vec<usize> {
    let mut pos = 0;
    let mut sizes = Vec::new();
    while pos < out.len() {
        let uncompressed = u32::from_be_bytes(out[pos..pos + 4].try_into().expect("4 bytes")) as usize;
        let compressed = u32::from_be_bytes(out[pos + 4..pos + 8].try_into().expect("4 bytes")) as usize;
        let end = pos + 8 + compressed;
        assert!(end <= out.len(), "block at {pos} overruns the object");
        let block = snap::raw::Decoder::new().decompress_vec(&out[pos + 8..end]).expect("raw snappy block");
        assert_eq!(block.len(), uncompressed, "declared vs actual uncompressed length at {pos}");
        // Hadoop's reader copies a chunk into a 256 KiB buffer: it must fit.
        assert!(compressed <= 256 * 1024, "compressed chunk of {compressed} bytes would break Hadoop's reader");
        sizes.push(uncompressed);
        pos = end;
    }
    sizes
}

#[test]
fn hadoop_snappy_block_size_is_hadoops_max_input_size() {
    let buffer = 256 * 1024;
    assert_eq!(HADOOP_SNAPPY_BLOCK_SIZE, buffer - (buffer / 6 + 32));
    assert_eq!(HADOOP_SNAPPY_BLOCK_SIZE, 218_422);
}

#[test]
fn hadoop_snappy_first_block_header_and_block_split() {
    let data = random(600 * 1024);
    let out = encode(Compression::HadoopSnappy, &data);
    let uncompressed = u32::from_be_bytes(out[0..4].try_into().expect("4 bytes"));
    let compressed = u32::from_be_bytes(out[4..8].try_into().expect("4 bytes"));
    assert_eq!(uncompressed as usize, HADOOP_SNAPPY_BLOCK_SIZE);
    let first = snap::raw::Decoder::new().decompress_vec(&out[8..8 + compressed as usize]).expect("first block");
    assert!(first[..] == data[..HADOOP_SNAPPY_BLOCK_SIZE]);

    let sizes = hadoop_blocks(&out);
    assert_eq!(sizes.len(), 3, "600 KiB is three blocks");
    assert_eq!(sizes, [HADOOP_SNAPPY_BLOCK_SIZE, HADOOP_SNAPPY_BLOCK_SIZE, 600 * 1024 - 2 * HADOOP_SNAPPY_BLOCK_SIZE]);
    assert_eq!(decompress(Compression::HadoopSnappy, &out).expect("decode"), data);

    let pieces = split(&data, 3_000, 7);
    let chunked = encode_chunks(Compression::HadoopSnappy, DEFAULT_LEVEL, pieces.iter().copied());
    assert_eq!(chunked, out, "record boundaries never shift block boundaries");
}

#[test]
fn hadoop_snappy_small_and_empty() {
    assert_eq!(encode(Compression::HadoopSnappy, b""), b"");
    assert_eq!(decompress(Compression::HadoopSnappy, b"").expect("decode"), b"");
    let out = encode(Compression::HadoopSnappy, b"hello");
    assert_eq!(out, [0, 0, 0, 5, 0, 0, 0, 7, 0x05, 0x10, b'h', b'e', b'l', b'l', b'o']);
    assert_eq!(
        hadoop_blocks(&encode(Compression::HadoopSnappy, &compressible(HADOOP_SNAPPY_BLOCK_SIZE + 1))),
        [HADOOP_SNAPPY_BLOCK_SIZE, 1]
    );
}

#[test]
fn hadoop_snappy_decoder_handles_multi_chunk_blocks_and_empty_block_eof() {
    // One block of 10 bytes made of two chunks (as Hadoop writes when a compressor drains in pieces),
    // then a zero-length block, which Hadoop's reader treats as end of stream.
    let mut encoder = snap::raw::Encoder::new();
    let a = encoder.compress_vec(b"hello").expect("a");
    let b = encoder.compress_vec(b"world").expect("b");
    let mut data = 10u32.to_be_bytes().to_vec();
    for chunk in [&a, &b] {
        data.extend_from_slice(&(chunk.len() as u32).to_be_bytes());
        data.extend_from_slice(chunk);
    }
    data.extend_from_slice(&[0, 0, 0, 0]);
    assert_eq!(decompress(Compression::HadoopSnappy, &data).expect("decode"), b"helloworld");
}

// ---------------------------------------------------------------------------------------------------------------
// Corrupt input

#[test]
fn corrupt_input_is_an_error_not_a_panic() {
    let header = snappy_java_header();
    let mut negative = header.clone();
    negative.extend_from_slice(&[0xff, 0xff, 0xff, 0xf0]);
    let mut overrun = header.clone();
    overrun.extend_from_slice(&[0, 0, 0, 50, 1, 2, 3]);
    let mut partial_len = header.clone();
    partial_len.extend_from_slice(&[0, 0]);
    let mut bad_version = SNAPPY_JAVA_MAGIC.to_vec();
    bad_version.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 2]);
    // A raw snappy block claiming far more output than its size allows.
    let mut bomb = header.clone();
    bomb.extend_from_slice(&[0, 0, 0, 5, 0xff, 0xff, 0xff, 0xff, 0x0f]);
    let gzip = encode(Compression::Gzip, &compressible(10_000));
    let zip = encode(Compression::Zip, &compressible(10_000));

    let bad: Vec<(Compression, Vec<u8>)> = vec![
        (Compression::Gzip, b"not gzip".to_vec()),
        (Compression::Gzip, gzip[..gzip.len() - 5].to_vec()),
        (Compression::Zip, b"not a zip".to_vec()),
        (Compression::Zip, zip[..zip.len() / 2].to_vec()),
        (Compression::Snappy, b"SNAPPY".to_vec()),
        (Compression::Snappy, header[..10].to_vec()),
        (Compression::Snappy, negative),
        (Compression::Snappy, overrun),
        (Compression::Snappy, partial_len),
        (Compression::Snappy, bad_version),
        (Compression::Snappy, bomb),
        (Compression::HadoopSnappy, vec![0, 0, 0, 5]),
        (Compression::HadoopSnappy, vec![0, 0, 0, 5, 0, 0, 0, 9, 1]),
        (Compression::HadoopSnappy, vec![0, 0, 0, 9, 0, 0, 0, 7, 0x05, 0x10, b'h', b'e', b'l', b'l', b'o']),
        (Compression::HadoopSnappy, vec![0, 0, 0, 3, 0, 0, 0, 7, 0x05, 0x10, b'h', b'e', b'l', b'l', b'o']),
    ];
    for (compression, data) in bad {
        assert!(decompress(compression, &data).is_err(), "{compression}: {data:02x?} decoded");
    }
}

#[test]
fn encoder_is_send() {
    fn assert_send<T: Send>() {}
    assert_send::<Encoder>();
    assert_send::<CompressionError>();
}

// ---------------------------------------------------------------------------------------------------------------
// Properties

fn any_compression() -> impl Strategy<Value = Compression> {
    prop::sample::select(Compression::ALL.to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn prop_round_trip(
        compression in any_compression(),
        chunks in prop::collection::vec(
            prop_oneof![
                prop::collection::vec(any::<u8>(), 0..64),
                prop::collection::vec(0u8..4, 0..5_000),
                prop::collection::vec(any::<u8>(), 30_000..70_000),
            ],
            0..12,
        ),
        level in 0u32..=9,
    ) {
        let data: Vec<u8> = chunks.concat();
        let chunked = encode_chunks(compression, level, chunks.iter().map(Vec::as_slice));
        let whole = encode_chunks(compression, level, [&data[..]]);
        prop_assert!(chunked == whole, "output depends on how the input was split");
        prop_assert!(decompress(compression, &chunked).expect("decode") == data);
    }

    #[test]
    fn prop_decompress_never_panics(compression in any_compression(), data in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = decompress(compression, &data);
        // Also with a valid snappy-java header in front, so the block parser is exercised.
        let mut framed = snappy_java_header();
        framed.extend_from_slice(&data);
        let _ = decompress(Compression::Snappy, &framed);
    }
}
