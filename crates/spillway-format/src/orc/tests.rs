//! Round trips through a small ORC decoder written for these tests (independent of the writer's code paths):
//! every supported type, nulls at every level, sliced batches, multi-stripe files, each compression; plus a check
//! of every row index position against the decoded streams.
//!
//! Cross-checks with real ORC readers are `#[ignore]`d (they need Python): see [`write_pyarrow_samples`].

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::{
    ArrayRef, BinaryArray, BooleanArray, Date32Array, Decimal128Array, Float32Array, Float64Array, Int8Array,
    Int16Array, Int32Array, Int64Array, ListArray, MapArray, RecordBatch, StringArray, StructArray,
    TimestampMicrosecondArray,
};
use arrow_buffer::{NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};

use super::column::{ORC_EPOCH_SECONDS, format_nanos};
use super::*;
use crate::schema::{Column as HiveColumn, HiveType, arrow_schema};

// ---------------------------------------------------------------------------------------------------------------
// Sample data: values as a tree, built into Arrow arrays.

#[derive(Debug, Clone, PartialEq)]
enum V {
    Null,
    Bool(bool),
    Int(i64),
    F32(u32),
    F64(u64),
    Dec(i128),
    Str(String),
    Bin(Vec<u8>),
    Date(i32),
    /// Microseconds since the epoch.
    Ts(i64),
    List(Vec<V>),
    Map(Vec<(V, V)>),
    Struct(Vec<V>),
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % ((hi - lo) as u64 + 1)) as i64
    }
}

const WORDS: &[&str] = &["", "a", "héllo", "日本語", "emoji 🎉", "Zürich", "tab\tnew\nline", "quote\"", "x", "ascii"];

fn sample_columns() -> Vec<HiveColumn> {
    [
        ("b", "boolean"),
        ("t", "tinyint"),
        ("s", "smallint"),
        ("i", "int"),
        ("l", "bigint"),
        ("f", "float"),
        ("d", "double"),
        ("dec", "decimal(10,2)"),
        ("big", "decimal(38,6)"),
        ("str", "string"),
        ("vc", "varchar(10)"),
        ("dt", "date"),
        ("ts", "timestamp"),
        ("bin", "binary"),
        ("arr", "array<int>"),
        ("arr_st", "array<struct<a:string,b:bigint>>"),
        ("m", "map<string,int>"),
        ("m_arr", "map<int,array<string>>"),
        ("st", "struct<x:int,y:struct<z:string,w:array<double>>,dd:date>"),
        ("aa", "array<array<bigint>>"),
        ("e", "struct<>"),
    ]
    .into_iter()
    .map(|(n, t)| HiveColumn::new(n, HiveType::parse(t).unwrap()))
    .collect()
}

/// A value of `t`; `mode` changes every 50 rows so that some stretches form RLE runs.
fn gen_value(t: &HiveType, rng: &mut Rng, row: usize, mode: u64, nullable: bool) -> V {
    if nullable && rng.chance(12) {
        return V::Null;
    }
    let ramp = (row / 3) as i64;
    match t {
        HiveType::Boolean => V::Bool(if mode == 0 { true } else { rng.chance(50) }),
        HiveType::TinyInt => V::Int(match mode {
            0 => 7,
            1 => i64::from(rng.next() as i8),
            2 => [-128, 127][rng.below(2) as usize],
            _ => rng.range(-3, 3),
        }),
        HiveType::SmallInt | HiveType::Int | HiveType::BigInt => {
            let (lo, hi) = match t {
                HiveType::SmallInt => (i64::from(i16::MIN), i64::from(i16::MAX)),
                HiveType::Int => (i64::from(i32::MIN), i64::from(i32::MAX)),
                _ => (i64::MIN, i64::MAX),
            };
            V::Int(match mode {
                0 => ramp.clamp(lo, hi),
                1 => rng.range(-1000, 1000),
                2 => [lo, hi, 0, -1][rng.below(4) as usize],
                _ => {
                    let r = rng.next() as i64;
                    if hi == i64::MAX { r } else { r.rem_euclid(hi - lo + 1) + lo }
                }
            })
        }
        HiveType::Float => {
            let v = match rng.below(8) {
                0 => f32::NAN,
                1 => f32::INFINITY,
                2 => -0.0,
                _ => (rng.range(-1_000_000, 1_000_000) as f32) / 7.0,
            };
            V::F32(v.to_bits())
        }
        HiveType::Double => {
            let v = match rng.below(10) {
                0 => f64::NEG_INFINITY,
                1 => f64::MIN_POSITIVE,
                2 => 1e300,
                _ => (rng.range(-1_000_000_000, 1_000_000_000) as f64) / 13.0,
            };
            V::F64(v.to_bits())
        }
        HiveType::Decimal { precision, .. } => {
            let max = 10i128.pow(u32::from(*precision)) - 1;
            V::Dec(match rng.below(5) {
                0 => max,
                1 => -max,
                2 => 0,
                3 => i128::from(rng.range(-999, 999)),
                _ => (i128::from(rng.next() >> 1) * i128::from(rng.next() as i64)) % (max + 1),
            })
        }
        HiveType::String | HiveType::Char(_) | HiveType::Varchar(_) => {
            let limit = match t {
                HiveType::Varchar(n) | HiveType::Char(n) => *n as usize,
                _ => usize::MAX,
            };
            let s = match rng.below(12) {
                0 if limit > 2000 => "long ✓ ".repeat(300),
                1 => format!("row {row}"),
                2 => "same".to_string(),
                _ => WORDS[rng.below(WORDS.len() as u64) as usize].to_string(),
            };
            V::Str(s.chars().take(limit).collect())
        }
        HiveType::Date => V::Date(match rng.below(6) {
            0 => -719_162,  // 0001-01-01
            1 => 2_932_896, // 9999-12-31
            2 => rng.range(-30_000, -1) as i32,
            _ => rng.range(-20_000, 40_000) as i32,
        }),
        HiveType::Timestamp => {
            let v = match rng.below(8) {
                0 => -9_000_000_000_000_000, // 1684-10-22 (pyarrow reads ORC timestamps as ns: ±292 years)
                1 => 9_000_000_000_999_999,  // 2255-03-14
                2 => rng.range(-2_000_000, 2_000_000), // around the epoch
                3 => 1_420_070_400_000_000 + rng.range(-5_000_000, 5_000_000), // around 2015
                4 => rng.range(-3_000_000_000, 3_000_000_000) * 1_000_000, // whole seconds
                _ => rng.range(-2_208_988_800_000_000, 4_102_444_800_000_000), // 1900..2100
            };
            // ORC cannot represent (-1 s, 0) with a fraction of 1 ms or more (see the module docs).
            V::Ts(if (-999_000..0).contains(&v) { v - 1_000_000 } else { v })
        }
        HiveType::Binary => {
            let n = rng.below(20) as usize;
            V::Bin((0..n).map(|_| rng.next() as u8).collect())
        }
        HiveType::Array(item) => {
            let n = rng.below(5) as usize;
            V::List((0..n).map(|_| gen_value(item, rng, row, mode, true)).collect())
        }
        HiveType::Map(k, v) => {
            let n = rng.below(4) as usize;
            let mut entries: Vec<(V, V)> = Vec::new();
            for _ in 0..n {
                let key = gen_value(k, rng, row, mode, false);
                if !entries.iter().any(|(e, _)| *e == key) {
                    entries.push((key, gen_value(v, rng, row, mode, true)));
                }
            }
            V::Map(entries)
        }
        HiveType::Struct(fields) => {
            V::Struct(fields.iter().map(|f| gen_value(&f.data_type, rng, row, mode, true)).collect())
        }
    }
}

fn sample_rows(columns: &[HiveColumn], n: usize, seed: u64) -> Vec<Vec<V>> {
    let mut rng = Rng(seed | 1);
    (0..n)
        .map(|row| {
            columns
                .iter()
                .enumerate()
                .map(|(c, col)| gen_value(&col.data_type, &mut rng, row, (c as u64 + row as u64 / 50) % 4, true))
                .collect()
        })
        .collect()
}

/// A non-null value for the slots Arrow keeps under null parents (which the writer must skip).
fn filler(dt: &DataType) -> V {
    match dt {
        DataType::Boolean => V::Bool(true),
        DataType::Float32 => V::F32(1.5f32.to_bits()),
        DataType::Float64 => V::F64(2.5f64.to_bits()),
        DataType::Decimal128(..) => V::Dec(12345),
        DataType::Utf8 => V::Str("garbage".into()),
        DataType::Binary => V::Bin(b"garbage".to_vec()),
        DataType::Date32 => V::Date(99),
        DataType::Timestamp(..) => V::Ts(99),
        DataType::List(f) => V::List(vec![filler(f.data_type())]),
        DataType::Map(..) => V::Map(Vec::new()),
        DataType::Struct(fields) => V::Struct(fields.iter().map(|f| filler(f.data_type())).collect()),
        _ => V::Int(42),
    }
}

fn nulls_of(vals: &[V]) -> Option<NullBuffer> {
    let valid: Vec<bool> = vals.iter().map(|v| *v != V::Null).collect();
    valid.contains(&false).then(|| NullBuffer::from(valid))
}

fn build_array(dt: &DataType, vals: &[V]) -> ArrayRef {
    let int = |v: &V| if let V::Int(i) = v { Some(*i) } else { None };
    match dt {
        DataType::Boolean => Arc::new(BooleanArray::from(
            vals.iter().map(|v| if let V::Bool(b) = v { Some(*b) } else { None }).collect::<Vec<_>>(),
        )),
        DataType::Int8 => Arc::new(Int8Array::from(vals.iter().map(|v| int(v).map(|i| i as i8)).collect::<Vec<_>>())),
        DataType::Int16 => {
            Arc::new(Int16Array::from(vals.iter().map(|v| int(v).map(|i| i as i16)).collect::<Vec<_>>()))
        }
        DataType::Int32 => {
            Arc::new(Int32Array::from(vals.iter().map(|v| int(v).map(|i| i as i32)).collect::<Vec<_>>()))
        }
        DataType::Int64 => Arc::new(Int64Array::from(vals.iter().map(int).collect::<Vec<_>>())),
        DataType::Float32 => Arc::new(Float32Array::from(
            vals.iter().map(|v| if let V::F32(b) = v { Some(f32::from_bits(*b)) } else { None }).collect::<Vec<_>>(),
        )),
        DataType::Float64 => Arc::new(Float64Array::from(
            vals.iter().map(|v| if let V::F64(b) = v { Some(f64::from_bits(*b)) } else { None }).collect::<Vec<_>>(),
        )),
        DataType::Decimal128(p, s) => Arc::new(
            Decimal128Array::from(
                vals.iter().map(|v| if let V::Dec(d) = v { Some(*d) } else { None }).collect::<Vec<_>>(),
            )
            .with_precision_and_scale(*p, *s)
            .unwrap(),
        ),
        DataType::Utf8 => Arc::new(StringArray::from(
            vals.iter().map(|v| if let V::Str(s) = v { Some(s.as_str()) } else { None }).collect::<Vec<_>>(),
        )),
        DataType::Binary => Arc::new(BinaryArray::from_opt_vec(
            vals.iter().map(|v| if let V::Bin(b) = v { Some(b.as_slice()) } else { None }).collect(),
        )),
        DataType::Date32 => Arc::new(Date32Array::from(
            vals.iter().map(|v| if let V::Date(d) = v { Some(*d) } else { None }).collect::<Vec<_>>(),
        )),
        DataType::Timestamp(TimeUnit::Microsecond, None) => Arc::new(TimestampMicrosecondArray::from(
            vals.iter().map(|v| if let V::Ts(t) = v { Some(*t) } else { None }).collect::<Vec<_>>(),
        )),
        DataType::List(field) => {
            let (mut offsets, mut items) = (vec![0i32], Vec::new());
            for v in vals {
                match v {
                    V::List(xs) => items.extend(xs.iter().cloned()),
                    _ => items.push(filler(field.data_type())),
                }
                offsets.push(items.len() as i32);
            }
            Arc::new(ListArray::new(
                field.clone(),
                OffsetBuffer::new(ScalarBuffer::from(offsets)),
                build_array(field.data_type(), &items),
                nulls_of(vals),
            ))
        }
        DataType::Map(field, sorted) => {
            let DataType::Struct(kv) = field.data_type() else { panic!() };
            let (mut offsets, mut keys, mut values) = (vec![0i32], Vec::new(), Vec::new());
            for v in vals {
                match v {
                    V::Map(entries) => {
                        for (k, x) in entries {
                            keys.push(k.clone());
                            values.push(x.clone());
                        }
                    }
                    _ => {
                        keys.push(filler(kv[0].data_type()));
                        values.push(filler(kv[1].data_type()));
                    }
                }
                offsets.push(keys.len() as i32);
            }
            let entries = StructArray::new(
                kv.clone(),
                vec![build_array(kv[0].data_type(), &keys), build_array(kv[1].data_type(), &values)],
                None,
            );
            Arc::new(MapArray::new(
                field.clone(),
                OffsetBuffer::new(ScalarBuffer::from(offsets)),
                entries,
                nulls_of(vals),
                *sorted,
            ))
        }
        DataType::Struct(fields) => {
            let arrays = fields
                .iter()
                .enumerate()
                .map(|(i, f)| {
                    let child: Vec<V> = vals
                        .iter()
                        .map(|v| match v {
                            V::Struct(xs) => xs[i].clone(),
                            _ => filler(f.data_type()),
                        })
                        .collect();
                    build_array(f.data_type(), &child)
                })
                .collect();
            Arc::new(StructArray::try_new_with_length(fields.clone(), arrays, nulls_of(vals), vals.len()).unwrap())
        }
        other => panic!("no test builder for {other}"),
    }
}

fn to_batch(schema: &SchemaRef, rows: &[Vec<V>]) -> RecordBatch {
    let columns = schema
        .fields()
        .iter()
        .enumerate()
        .map(|(c, f)| build_array(f.data_type(), &rows.iter().map(|r| r[c].clone()).collect::<Vec<_>>()))
        .collect();
    RecordBatch::try_new(schema.clone(), columns).unwrap()
}

/// Writes `rows` in slices of varying sizes (so arrays with offsets are written too).
fn write_file(schema: &SchemaRef, rows: &[Vec<V>], options: OrcOptions) -> Vec<u8> {
    let batch = to_batch(schema, rows);
    let mut w = OrcWriter::try_new(Vec::new(), schema.clone(), options).unwrap();
    let mut at = 0;
    for size in [1usize, 17, 0, 300, 1000].into_iter().cycle() {
        if at >= batch.num_rows() {
            break;
        }
        let size = size.min(batch.num_rows() - at);
        w.write(&batch.slice(at, size)).unwrap();
        at += size;
    }
    w.close().unwrap()
}

// ---------------------------------------------------------------------------------------------------------------
// A small ORC decoder.

#[derive(Debug, Clone, Copy)]
enum Pb<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed64(u64),
}

fn read_varint(data: &mut &[u8]) -> u64 {
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

fn parse(mut msg: &[u8]) -> Vec<(u32, Pb<'_>)> {
    let mut fields = Vec::new();
    while !msg.is_empty() {
        let tag = read_varint(&mut msg);
        let value = match tag & 7 {
            0 => Pb::Varint(read_varint(&mut msg)),
            1 => {
                let v = u64::from_le_bytes(msg[..8].try_into().unwrap());
                msg = &msg[8..];
                Pb::Fixed64(v)
            }
            2 => {
                let n = read_varint(&mut msg) as usize;
                let (b, rest) = msg.split_at(n);
                msg = rest;
                Pb::Bytes(b)
            }
            w => panic!("wire type {w}"),
        };
        fields.push(((tag >> 3) as u32, value));
    }
    fields
}

fn get_u(msg: &[u8], field: u32) -> Option<u64> {
    parse(msg).into_iter().find_map(|(f, v)| match v {
        Pb::Varint(x) if f == field => Some(x),
        _ => None,
    })
}

fn get_s(msg: &[u8], field: u32) -> Option<i64> {
    get_u(msg, field).map(|u| (u >> 1) as i64 ^ -((u & 1) as i64))
}

fn get_all(msg: &[u8], field: u32) -> Vec<&[u8]> {
    parse(msg)
        .into_iter()
        .filter_map(|(f, v)| match v {
            Pb::Bytes(b) if f == field => Some(b),
            _ => None,
        })
        .collect()
}

fn get_f64(msg: &[u8], field: u32) -> Option<f64> {
    parse(msg).into_iter().find_map(|(f, v)| match v {
        Pb::Fixed64(x) if f == field => Some(f64::from_bits(x)),
        _ => None,
    })
}

fn packed(msg: &[u8], field: u32) -> Vec<u64> {
    let mut out = Vec::new();
    for mut b in get_all(msg, field) {
        while !b.is_empty() {
            out.push(read_varint(&mut b));
        }
    }
    out
}

fn decompress(data: &[u8], kind: u64) -> Vec<u8> {
    decompress_chunks(data, kind).0
}

/// The decompressed stream and, with compression, the decompressed offset of every chunk start (and of the end),
/// by compressed offset.
fn decompress_chunks(data: &[u8], kind: u64) -> (Vec<u8>, HashMap<usize, usize>) {
    if kind == 0 {
        return (data.to_vec(), HashMap::new());
    }
    let mut out = Vec::new();
    let mut chunks = HashMap::new();
    let mut at = 0;
    while at < data.len() {
        chunks.insert(at, out.len());
        let h = usize::from(data[at]) | usize::from(data[at + 1]) << 8 | usize::from(data[at + 2]) << 16;
        let body = &data[at + 3..at + 3 + (h >> 1)];
        if h & 1 == 1 {
            out.extend_from_slice(body);
        } else if kind == 1 {
            let mut d = flate2::Decompress::new(false);
            let mut chunk = Vec::with_capacity(1 << 18);
            let status = d.decompress_vec(body, &mut chunk, flate2::FlushDecompress::Finish).unwrap();
            assert_eq!(status, flate2::Status::StreamEnd);
            out.extend_from_slice(&chunk);
        } else {
            out.extend_from_slice(&snap::raw::Decoder::new().decompress_vec(body).unwrap());
        }
        at += 3 + (h >> 1);
    }
    chunks.insert(at, out.len());
    (out, chunks)
}

fn decode_byte_rle(data: &[u8]) -> Vec<u8> {
    decode_byte_rle_max(data, usize::MAX)
}

/// Byte RLE groups until at least `max` values are decoded.
fn decode_byte_rle_max(mut data: &[u8], max: usize) -> Vec<u8> {
    let mut out = Vec::new();
    while !data.is_empty() && out.len() < max {
        let h = data[0] as i8;
        if h >= 0 {
            out.extend(std::iter::repeat_n(data[1], h as usize + 3));
            data = &data[2..];
        } else {
            let n = -(h as isize) as usize;
            out.extend_from_slice(&data[1..=n]);
            data = &data[n + 1..];
        }
    }
    out
}

fn decode_bools(data: &[u8]) -> Vec<bool> {
    bits(&decode_byte_rle(data))
}

fn bits(bytes: &[u8]) -> Vec<bool> {
    bytes.iter().flat_map(|b| (0..8).map(move |i| b & (0x80 >> i) != 0)).collect()
}

fn decode_int_rle(data: &[u8], signed: bool) -> Vec<i64> {
    decode_int_rle_max(data, signed, usize::MAX)
}

/// Integer RLE v1 groups until at least `max` values are decoded.
fn decode_int_rle_max(mut data: &[u8], signed: bool, max: usize) -> Vec<i64> {
    let value = |u: u64| if signed { (u >> 1) as i64 ^ -((u & 1) as i64) } else { u as i64 };
    let mut out = Vec::new();
    while !data.is_empty() && out.len() < max {
        let h = data[0] as i8;
        data = &data[1..];
        if h >= 0 {
            let delta = i64::from(data[0] as i8);
            data = &data[1..];
            let base = value(read_varint(&mut data));
            out.extend((0..h as i64 + 3).map(|i| base + delta * i));
        } else {
            for _ in 0..-(h as i64) {
                out.push(value(read_varint(&mut data)));
            }
        }
    }
    out
}

struct OrcFile {
    compression: u64,
    block_size: u64,
    version: Vec<u64>,
    writer_version: Option<u64>,
    footer: Vec<u8>,
    metadata: Vec<u8>,
    data: Vec<u8>,
}

impl OrcFile {
    fn open(data: &[u8]) -> OrcFile {
        assert_eq!(&data[..3], b"ORC");
        let ps_len = usize::from(data[data.len() - 1]);
        let ps = &data[data.len() - 1 - ps_len..data.len() - 1];
        assert_eq!(get_all(ps, 8000), [b"ORC"]);
        let compression = get_u(ps, 2).unwrap();
        let footer_len = get_u(ps, 1).unwrap() as usize;
        let meta_len = get_u(ps, 5).unwrap() as usize;
        let footer_end = data.len() - 1 - ps_len;
        let footer = decompress(&data[footer_end - footer_len..footer_end], compression);
        let metadata = decompress(&data[footer_end - footer_len - meta_len..footer_end - footer_len], compression);
        assert_eq!(get_u(&footer, 2).unwrap() as usize, footer_end - footer_len - meta_len, "contentLength");
        OrcFile {
            compression,
            block_size: get_u(ps, 3).unwrap(),
            version: packed(ps, 4),
            writer_version: get_u(ps, 6),
            footer,
            metadata,
            data: data.to_vec(),
        }
    }

    fn types(&self) -> Vec<&[u8]> {
        get_all(&self.footer, 4)
    }
}

/// One column's decoded streams in a stripe, with read cursors.
#[derive(Default, Clone)]
struct Col {
    kind: u64,
    subtypes: Vec<usize>,
    scale: u64,
    /// Decompressed streams by kind, with their chunk maps (see [`decompress_chunks`]).
    raw: HashMap<u64, (Vec<u8>, HashMap<usize, usize>)>,
    present: Option<Vec<bool>>,
    bools: Vec<bool>,
    ints: Vec<i64>,
    bytes: Vec<u8>,
    lengths: Vec<i64>,
    secondary: Vec<i64>,
    // cursors: present bits, data (values or bytes), lengths, secondary
    cur: [usize; 4],
}

fn read_value(cols: &mut [Col], c: usize) -> V {
    let col = &mut cols[c];
    if let Some(p) = &col.present {
        let bit = p[col.cur[0]];
        col.cur[0] += 1;
        if !bit {
            return V::Null;
        }
    }
    let next_len = |col: &mut Col| {
        let n = col.lengths[col.cur[2]] as usize;
        col.cur[2] += 1;
        n
    };
    match col.kind {
        0 => {
            col.cur[1] += 1;
            V::Bool(col.bools[col.cur[1] - 1])
        }
        1..=4 | 15 => {
            col.cur[1] += 1;
            let v = col.ints[col.cur[1] - 1];
            if col.kind == 15 { V::Date(v as i32) } else { V::Int(v) }
        }
        5 => {
            let v = u32::from_le_bytes(col.bytes[col.cur[1]..col.cur[1] + 4].try_into().unwrap());
            col.cur[1] += 4;
            V::F32(v)
        }
        6 => {
            let v = u64::from_le_bytes(col.bytes[col.cur[1]..col.cur[1] + 8].try_into().unwrap());
            col.cur[1] += 8;
            V::F64(v)
        }
        7 | 8 => {
            let n = next_len(col);
            let b = col.bytes[col.cur[1]..col.cur[1] + n].to_vec();
            col.cur[1] += n;
            if col.kind == 7 { V::Str(String::from_utf8(b).unwrap()) } else { V::Bin(b) }
        }
        9 => {
            let secs = col.ints[col.cur[1]] + ORC_EPOCH_SECONDS;
            col.cur[1] += 1;
            let raw = col.secondary[col.cur[3]] as u64;
            col.cur[3] += 1;
            let zeros = raw & 7;
            let mut nanos = raw >> 3;
            if zeros != 0 {
                nanos *= 10u64.pow(zeros as u32 + 1);
            }
            let secs = if secs < 0 && nanos > 999_999 { secs - 1 } else { secs };
            assert_eq!(nanos % 1000, 0);
            V::Ts(i64::try_from(i128::from(secs) * 1_000_000 + i128::from(nanos / 1000)).unwrap())
        }
        14 => {
            let (mut u, mut shift) = (0u128, 0);
            loop {
                let b = col.bytes[col.cur[1]];
                col.cur[1] += 1;
                u |= u128::from(b & 0x7f) << shift;
                shift += 7;
                if b < 0x80 {
                    break;
                }
            }
            assert_eq!(col.secondary[col.cur[3]] as u64, col.scale);
            col.cur[3] += 1;
            V::Dec((u >> 1) as i128 ^ -((u & 1) as i128))
        }
        10 => {
            let n = next_len(col);
            let child = col.subtypes[0];
            V::List((0..n).map(|_| read_value(cols, child)).collect())
        }
        11 => {
            let n = next_len(col);
            let (k, v) = (col.subtypes[0], col.subtypes[1]);
            V::Map((0..n).map(|_| (read_value(cols, k), read_value(cols, v))).collect())
        }
        12 => {
            let subtypes = col.subtypes.clone();
            V::Struct(subtypes.into_iter().map(|s| read_value(cols, s)).collect())
        }
        k => panic!("type kind {k}"),
    }
}

/// The decompressed stream from a recorded position onward (consumes 1 or 2 positions). A compressed position
/// must name a chunk start.
fn seek<'a>(
    stream: &'a (Vec<u8>, HashMap<usize, usize>),
    compression: u64,
    pos: &mut std::slice::Iter<'_, u64>,
) -> &'a [u8] {
    let start = *pos.next().unwrap() as usize;
    if compression == 0 {
        return &stream.0[start..];
    }
    let skip = *pos.next().unwrap() as usize;
    let chunk = *stream.1.get(&start).unwrap_or_else(|| panic!("{start} is not a chunk start"));
    &stream.0[chunk + skip..]
}

/// How many values after each recorded position are compared.
const CHECKED: usize = 40;

/// Checks the positions of one row index entry of `col` against the cursors `at` recorded when the decoder
/// reached the row group's first row: decoding from the positions gives the values the decoder read from there.
fn check_positions(col: &Col, at: [usize; 4], positions: &[u64], compression: u64) {
    fn prefix<T>(xs: &[T]) -> &[T] {
        &xs[..xs.len().min(CHECKED)]
    }
    let mut pos = positions.iter();
    let raw = |kind: u64| &col.raw[&kind];
    let rle_ints = |kind: u64, signed: bool, full: &[i64], cursor: usize, pos: &mut std::slice::Iter<'_, u64>| {
        let bytes = seek(raw(kind), compression, pos);
        let skip = *pos.next().unwrap() as usize;
        let got = decode_int_rle_max(bytes, signed, skip + CHECKED);
        assert_eq!(prefix(&got[skip..]), prefix(&full[cursor..]), "int stream {kind}");
    };
    let booleans = |kind: u64, full: &[bool], cursor: usize, pos: &mut std::slice::Iter<'_, u64>| {
        let bytes = seek(raw(kind), compression, pos);
        let (skip_bytes, skip_bits) = (*pos.next().unwrap() as usize, *pos.next().unwrap() as usize);
        let got = bits(&decode_byte_rle_max(bytes, skip_bytes + CHECKED));
        let got = &got[skip_bytes * 8 + skip_bits..];
        let n = got.len().min(full.len() - cursor).min(CHECKED);
        assert_eq!(got[..n], full[cursor..cursor + n], "boolean stream {kind}");
    };
    let bytes_at = |full: &[u8], cursor: usize, pos: &mut std::slice::Iter<'_, u64>| {
        let got = seek(raw(1), compression, pos);
        assert_eq!(prefix(got), prefix(&full[cursor..]), "data bytes");
    };
    if let Some(present) = &col.present {
        booleans(0, present, at[0], &mut pos);
    }
    match col.kind {
        0 => booleans(1, &col.bools, at[1], &mut pos),
        1 => {
            let bytes = seek(raw(1), compression, &mut pos);
            let skip = *pos.next().unwrap() as usize;
            let got: Vec<i64> =
                decode_byte_rle_max(bytes, skip + CHECKED)[skip..].iter().map(|&b| i64::from(b as i8)).collect();
            assert_eq!(prefix(&got), prefix(&col.ints[at[1]..]), "bytes");
        }
        2..=4 | 15 => rle_ints(1, true, &col.ints, at[1], &mut pos),
        5 | 6 => bytes_at(&col.bytes, at[1], &mut pos),
        7 | 8 => {
            bytes_at(&col.bytes, at[1], &mut pos);
            rle_ints(2, false, &col.lengths, at[2], &mut pos);
        }
        9 => {
            rle_ints(1, true, &col.ints, at[1], &mut pos);
            rle_ints(5, false, &col.secondary, at[3], &mut pos);
        }
        14 => {
            bytes_at(&col.bytes, at[1], &mut pos);
            rle_ints(5, true, &col.secondary, at[3], &mut pos);
        }
        10 | 11 => rle_ints(2, false, &col.lengths, at[2], &mut pos),
        12 => {}
        k => panic!("type kind {k}"),
    }
    assert!(pos.next().is_none(), "unused positions for type kind {}", col.kind);
}

struct Decoded {
    rows: Vec<Vec<V>>,
    stripes: usize,
    /// (numberOfValues, hasNull) per column from the file statistics.
    file_stats: Vec<(u64, bool)>,
    file_stats_raw: Vec<Vec<u8>>,
}

/// Decodes a whole file, checking the stripe layout, the row index and the statistics' counts on the way.
fn decode(file: &[u8]) -> Decoded {
    let f = OrcFile::open(file);
    let types = f.types();
    let stride = get_u(&f.footer, 8).unwrap() as usize;
    let template: Vec<Col> = types
        .iter()
        .map(|t| Col {
            kind: get_u(t, 1).unwrap(),
            subtypes: packed(t, 2).into_iter().map(|s| s as usize).collect(),
            scale: get_u(t, 6).unwrap_or(0),
            ..Col::default()
        })
        .collect();
    let stripe_stats = get_all(&f.metadata, 1);
    let stripes = get_all(&f.footer, 3);
    assert_eq!(stripe_stats.len(), stripes.len());
    let mut rows = Vec::new();
    let mut offset = 3;
    for (si, stripe) in stripes.iter().enumerate() {
        let start = get_u(stripe, 1).unwrap() as usize;
        assert_eq!(start, offset, "stripes are contiguous");
        let (index_len, data_len, footer_len) = (
            get_u(stripe, 2).unwrap() as usize,
            get_u(stripe, 3).unwrap() as usize,
            get_u(stripe, 4).unwrap() as usize,
        );
        let n = get_u(stripe, 5).unwrap() as usize;
        offset = start + index_len + data_len + footer_len;
        let sf = decompress(&f.data[start + index_len + data_len..offset], f.compression);
        assert_eq!(get_all(&sf, 3), [b"UTC"]);
        assert_eq!(get_all(&sf, 2).len(), types.len());
        let mut cols = template.clone();
        let mut indexes: HashMap<usize, Vec<u8>> = HashMap::new();
        let mut at = start;
        for s in get_all(&sf, 1) {
            let (kind, column, len) =
                (get_u(s, 1).unwrap_or(0), get_u(s, 2).unwrap() as usize, get_u(s, 3).unwrap() as usize);
            let raw = f.data[at..at + len].to_vec();
            at += len;
            if kind == 6 {
                assert!(at <= start + index_len, "index streams come first");
                indexes.insert(column, decompress(&raw, f.compression));
                continue;
            }
            assert!(at - len >= start + index_len, "data streams follow the index");
            let col = &mut cols[column];
            let (bytes, chunks) = decompress_chunks(&raw, f.compression);
            match (kind, col.kind) {
                (0, _) => col.present = Some(decode_bools(&bytes)),
                (1, 0) => col.bools = decode_bools(&bytes),
                (1, 1) => col.ints = decode_byte_rle(&bytes).into_iter().map(|b| i64::from(b as i8)).collect(),
                (1, 2..=4 | 9 | 15) => col.ints = decode_int_rle(&bytes, true),
                (1, _) => col.bytes = bytes.clone(),
                (2, _) => col.lengths = decode_int_rle(&bytes, false),
                (5, 9) => col.secondary = decode_int_rle(&bytes, false),
                (5, _) => col.secondary = decode_int_rle(&bytes, true),
                other => panic!("unexpected stream {other:?}"),
            }
            col.raw.insert(kind, (bytes, chunks));
        }
        assert_eq!(at, start + index_len + data_len);
        // Decode the rows, recording every column's cursors at each row group start.
        let mut group_cursors = Vec::new();
        for r in 0..n {
            if stride > 0 && r % stride == 0 {
                group_cursors.push(cols.iter().map(|c| c.cur).collect::<Vec<_>>());
            }
            let root = cols[0].subtypes.clone();
            rows.push(root.into_iter().map(|c| read_value(&mut cols, c)).collect::<Vec<_>>());
        }
        // Every stream was consumed entirely (no stray values; booleans pad the last byte with zeros).
        for c in &cols {
            if let Some(p) = &c.present {
                assert!(p[c.cur[0]..].len() < 8 && !p[c.cur[0]..].contains(&true));
            }
            match c.kind {
                0 => assert!(c.bools[c.cur[1]..].len() < 8 && !c.bools[c.cur[1]..].contains(&true)),
                1..=4 | 9 | 15 => assert_eq!(c.ints.len(), c.cur[1]),
                _ => assert_eq!(c.bytes.len(), c.cur[1]),
            }
            assert_eq!(c.lengths.len(), c.cur[2]);
            assert_eq!(c.secondary.len(), c.cur[3]);
        }
        // Row index: one entry per row group for every column; positions seek to the group's first values; the
        // entries' value counts add up to the stripe's.
        let colstats = get_all(stripe_stats[si], 1);
        assert_eq!(colstats.len(), types.len());
        if stride > 0 {
            assert_eq!(indexes.len(), types.len());
            for (c, col) in cols.iter().enumerate() {
                let entries = get_all(&indexes[&c], 1);
                assert_eq!(entries.len(), n.div_ceil(stride), "entries of column {c}");
                let mut values = 0;
                for (g, e) in entries.iter().enumerate() {
                    check_positions(col, group_cursors[g][c], &packed(e, 1), f.compression);
                    values += get_u(get_all(e, 2)[0], 1).unwrap();
                }
                assert_eq!(values, get_u(colstats[c], 1).unwrap(), "row group values of column {c}");
            }
        } else {
            assert!(indexes.is_empty());
        }
        assert_eq!(get_u(colstats[0], 1).unwrap() as usize, n);
    }
    assert_eq!(get_u(&f.footer, 6).unwrap() as usize, rows.len());
    let file_stats_raw: Vec<Vec<u8>> = get_all(&f.footer, 7).into_iter().map(<[u8]>::to_vec).collect();
    assert_eq!(file_stats_raw.len(), types.len());
    Decoded {
        rows,
        stripes: stripes.len(),
        file_stats: file_stats_raw.iter().map(|s| (get_u(s, 1).unwrap(), get_u(s, 10) == Some(1))).collect(),
        file_stats_raw,
    }
}

/// (non-null values, any null) per column id, computed from the values.
fn expected_counts(schema: &Schema, rows: &[Vec<V>]) -> Vec<(u64, bool)> {
    fn walk(dt: &DataType, v: &V, id: usize, out: &mut Vec<(u64, bool)>) {
        if *v == V::Null {
            out[id].1 = true;
            return;
        }
        out[id].0 += 1;
        match (dt, v) {
            (DataType::List(f), V::List(xs)) => {
                for x in xs {
                    walk(f.data_type(), x, id + 1, out);
                }
            }
            (DataType::Map(f, _), V::Map(es)) => {
                let DataType::Struct(kv) = f.data_type() else { panic!() };
                let value_id = skip(kv[0].data_type(), id + 1);
                for (k, x) in es {
                    walk(kv[0].data_type(), k, id + 1, out);
                    walk(kv[1].data_type(), x, value_id, out);
                }
            }
            (DataType::Struct(fields), V::Struct(xs)) => {
                let mut at = id + 1;
                for (f, x) in fields.iter().zip(xs) {
                    walk(f.data_type(), x, at, out);
                    at = skip(f.data_type(), at);
                }
            }
            _ => {}
        }
    }
    fn skip(dt: &DataType, id: usize) -> usize {
        match dt {
            DataType::List(f) => skip(f.data_type(), id + 1),
            DataType::Map(f, _) => {
                let DataType::Struct(kv) = f.data_type() else { panic!() };
                skip(kv[1].data_type(), skip(kv[0].data_type(), id + 1))
            }
            DataType::Struct(fields) => fields.iter().fold(id + 1, |at, f| skip(f.data_type(), at)),
            _ => id + 1,
        }
    }
    let root = DataType::Struct(schema.fields().clone());
    let mut out = vec![(0, false); skip(&root, 0)];
    for row in rows {
        walk(&root, &V::Struct(row.clone()), 0, &mut out);
    }
    out
}

fn sample_schema() -> SchemaRef {
    Arc::new(arrow_schema(&sample_columns()))
}

fn options(compression: OrcCompression) -> OrcOptions {
    OrcOptions { compression, ..OrcOptions::default() }
}

// ---------------------------------------------------------------------------------------------------------------
// Tests.

#[test]
fn every_type_round_trips_with_each_compression() {
    let schema = sample_schema();
    let rows = sample_rows(&sample_columns(), 2500, 7);
    let expected_counts = expected_counts(&schema, &rows);
    for compression in [OrcCompression::None, OrcCompression::Zlib, OrcCompression::Snappy] {
        // Zlib resets its state for every chunk, which is slow with tiny chunks in debug builds.
        let tiny = if compression == OrcCompression::Zlib { 997 } else { 3 };
        for (stripe_size, stride, block) in [
            (64 << 20, 10_000, 256 << 10),
            (4096, 7, if compression == OrcCompression::Zlib { 640 } else { 3 }),
            (20_000, 1000, 1000),
            (1, 0, tiny),
        ] {
            let opts = OrcOptions {
                stripe_size_bytes: stripe_size,
                row_index_stride: stride,
                compression_block_size: block,
                ..options(compression)
            };
            let t0 = std::time::Instant::now();
            let file = write_file(&schema, &rows, opts);
            let t1 = t0.elapsed();
            let d = decode(&file);
            eprintln!(
                "TIMING {compression:?} {stripe_size} {stride} {block}: write {t1:?} decode {:?}",
                t0.elapsed() - t1
            );
            let label = format!("{compression:?} stripe {stripe_size} stride {stride} block {block}");
            assert_eq!(d.rows.len(), rows.len(), "{label}");
            for (r, (got, want)) in d.rows.iter().zip(&rows).enumerate() {
                assert_eq!(got, want, "{label}: row {r}");
            }
            assert_eq!(d.file_stats, expected_counts, "{label}");
            if stripe_size < 64 << 20 {
                assert!(d.stripes > 1, "{label}: {} stripes", d.stripes);
            }
        }
    }
}

#[test]
fn postscript_and_footer_fields() {
    let schema = sample_schema();
    let rows = sample_rows(&sample_columns(), 10, 3);
    for (version, expect) in [(OrcFormatVersion::V0_11, vec![0, 11]), (OrcFormatVersion::V0_12, vec![0, 12])] {
        let opts = OrcOptions { format_version: version, compression_block_size: 1000, ..OrcOptions::default() };
        let file = write_file(&schema, &rows, opts);
        let f = OrcFile::open(&file);
        assert_eq!(f.version, expect);
        assert_eq!((f.compression, f.block_size, f.writer_version), (2, 1000, Some(6)));
        assert_eq!(get_u(&f.footer, 1), Some(3));
        assert_eq!(get_u(&f.footer, 8), Some(10_000));
        let types = f.types();
        // Root struct with the schema's field names, in pre-order.
        assert_eq!(get_u(types[0], 1), Some(12));
        let names: Vec<&[u8]> = get_all(types[0], 3);
        assert_eq!(names[0], b"b");
        assert_eq!(names.len(), 21);
        assert_eq!(packed(types[0], 2).len(), 21);
        let dec = types[packed(types[0], 2)[7] as usize];
        assert_eq!((get_u(dec, 1), get_u(dec, 5), get_u(dec, 6)), (Some(14), Some(10), Some(2)));
    }
}

#[test]
fn statistics_values() {
    let schema = Arc::new(Schema::new(vec![
        Field::new("i", DataType::Int32, true),
        Field::new("s", DataType::Utf8, true),
        Field::new("d", DataType::Float64, true),
        Field::new("dec", DataType::Decimal128(5, 2), true),
        Field::new("ts", DataType::Timestamp(TimeUnit::Microsecond, None), true),
        Field::new("dt", DataType::Date32, true),
        Field::new("b", DataType::Boolean, true),
        Field::new("bin", DataType::Binary, true),
    ]));
    let rows = vec![
        vec![
            V::Int(5),
            V::Str("pear".into()),
            V::F64(2.5f64.to_bits()),
            V::Dec(-150),
            V::Ts(-1_001_500),
            V::Date(-3),
            V::Bool(true),
            V::Bin(vec![1, 2]),
        ],
        vec![V::Null, V::Null, V::Null, V::Null, V::Null, V::Null, V::Null, V::Null],
        vec![
            V::Int(-7),
            V::Str("apple".into()),
            V::F64(1.0f64.to_bits()),
            V::Dec(5),
            V::Ts(1_000_123),
            V::Date(10),
            V::Bool(false),
            V::Bin(vec![]),
        ],
    ];
    let file = write_file(&schema, &rows, options(OrcCompression::None));
    let d = decode(&file);
    assert_eq!(d.rows, rows);
    let s = &d.file_stats_raw;
    assert_eq!(d.file_stats[0], (3, false));
    assert_eq!(d.file_stats[1], (2, true));
    let int = get_all(&s[1], 2)[0];
    assert_eq!((get_s(int, 1), get_s(int, 2), get_s(int, 3)), (Some(-7), Some(5), Some(-2)));
    let st = get_all(&s[2], 4)[0];
    assert_eq!((get_all(st, 1), get_all(st, 2), get_s(st, 3)), (vec![&b"apple"[..]], vec![&b"pear"[..]], Some(9)));
    let dbl = get_all(&s[3], 3)[0];
    assert_eq!((get_f64(dbl, 1), get_f64(dbl, 2), get_f64(dbl, 3)), (Some(1.0), Some(2.5), Some(3.5)));
    let dec = get_all(&s[4], 6)[0];
    assert_eq!(
        (get_all(dec, 1), get_all(dec, 2), get_all(dec, 3)),
        (vec![&b"-1.50"[..]], vec![&b"0.05"[..]], vec![&b"-1.45"[..]])
    );
    let ts = get_all(&s[5], 9)[0];
    // -1001.5 ms floors to -1002 ms + 500 µs; 1000.123 ms is 1000 ms + 123 µs. Nanoseconds are stored plus one.
    let got = (get_s(ts, 3), get_s(ts, 4), get_u(ts, 5), get_u(ts, 6));
    assert_eq!(got, (Some(-1002), Some(1000), Some(500_001), Some(123_001)));
    let dt = get_all(&s[6], 7)[0];
    assert_eq!((get_s(dt, 1), get_s(dt, 2)), (Some(-3), Some(10)));
    assert_eq!(packed(get_all(&s[7], 5)[0], 1), [1]);
    assert_eq!(get_s(get_all(&s[8], 8)[0], 1), Some(2));
}

#[test]
fn timestamps_use_the_reference_encoding() {
    assert_eq!(format_nanos(0), 0);
    assert_eq!(format_nanos(1000), 0x0a);
    assert_eq!(format_nanos(100_000), 0x0c);
    assert_eq!(format_nanos(123_456_789), 123_456_789 << 3);
    assert_eq!(format_nanos(500_000_000), (5 << 3) | 7);
    assert_eq!(format_nanos(120), 120 << 3);

    let schema = Arc::new(Schema::new(vec![Field::new("ts", DataType::Timestamp(TimeUnit::Microsecond, None), false)]));
    // 1969-12-31 23:59:58.5: floor -2 s + 0.5 s, stored as -1 s (truncated) relative to 2015.
    let rows = vec![
        vec![V::Ts(-1_500_000)],
        vec![V::Ts(1_420_070_400_000_000)],
        vec![V::Ts(-999_999)],
        vec![V::Ts(-62_135_596_800_000_000)], // 0001-01-01 00:00:00
        vec![V::Ts(253_402_300_799_999_999)], // 9999-12-31 23:59:59.999999
        vec![V::Ts(i64::MIN)],
        vec![V::Ts(i64::MAX)],
    ];
    let file = write_file(&schema, &rows, options(OrcCompression::None));
    let d = decode(&file);
    // -0.999999 s floors to -1 s + 1 µs: nanos 1000 <= 999,999, so no adjustment, and it reads back exactly.
    assert_eq!(d.rows, rows);
}

#[test]
fn empty_files_are_valid() {
    let schema = sample_schema();
    for compression in [OrcCompression::None, OrcCompression::Zlib, OrcCompression::Snappy] {
        let w = OrcWriter::try_new(Vec::new(), schema.clone(), options(compression)).unwrap();
        let file = w.close().unwrap();
        let d = decode(&file);
        assert_eq!((d.rows.len(), d.stripes), (0, 0));
        assert!(d.file_stats.iter().all(|&(n, has_null)| n == 0 && !has_null));
    }
}

#[test]
fn output_does_not_depend_on_batch_boundaries() {
    let schema = sample_schema();
    let rows = sample_rows(&sample_columns(), 3000, 11);
    let opts = OrcOptions { stripe_size_bytes: 50_000, row_index_stride: 500, ..OrcOptions::default() };
    let sliced = write_file(&schema, &rows, opts.clone());
    let mut w = OrcWriter::try_new(Vec::new(), schema.clone(), opts).unwrap();
    w.write(&to_batch(&schema, &rows)).unwrap();
    assert_eq!(w.close().unwrap(), sliced);
}

#[test]
fn unsupported_types_and_mismatched_batches_are_refused() {
    for dt in [
        DataType::UInt32,
        DataType::LargeUtf8,
        DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        DataType::Decimal128(39, 0),
        DataType::Decimal128(5, -1),
        DataType::List(Arc::new(Field::new("element", DataType::Float16, true))),
    ] {
        let schema = Arc::new(Schema::new(vec![Field::new("x", dt.clone(), true)]));
        let err = OrcWriter::try_new(Vec::new(), schema, OrcOptions::default()).err().unwrap();
        assert!(matches!(err, OrcError::UnsupportedType { .. }), "{dt}: {err}");
        assert!(err.to_string().starts_with("column 'x"), "{err}");
    }
    let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int32, true)]));
    let bad = OrcOptions { compression_block_size: 0, ..OrcOptions::default() };
    assert!(matches!(OrcWriter::try_new(Vec::new(), schema.clone(), bad), Err(OrcError::InvalidOption(_))));

    let mut w = OrcWriter::try_new(Vec::new(), schema, OrcOptions::default()).unwrap();
    let other = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, true)]));
    let batch = RecordBatch::try_new(other, vec![Arc::new(Int64Array::from(vec![1]))]).unwrap();
    assert!(matches!(w.write(&batch), Err(OrcError::SchemaMismatch(_))));
    // Not poisoned by a refused batch.
    let ok = RecordBatch::try_new(w.schema().clone(), vec![Arc::new(Int32Array::from(vec![Some(1), None]))]).unwrap();
    w.write(&ok).unwrap();
    let d = decode(&w.close().unwrap());
    assert_eq!(d.rows, [vec![V::Int(1)], vec![V::Null]]);
}

#[test]
fn io_errors_poison_the_writer() {
    struct Failing(usize);
    impl std::io::Write for Failing {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if self.0 < buf.len() {
                return Err(std::io::Error::other("disk full"));
            }
            self.0 -= buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, true)]));
    let opts = OrcOptions { stripe_size_bytes: 1, ..OrcOptions::default() };
    let mut w = OrcWriter::try_new(Failing(10), schema.clone(), opts).unwrap();
    let batch =
        RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from((0..5000).collect::<Vec<i64>>()))]).unwrap();
    assert!(matches!(w.write(&batch), Err(OrcError::Io(_))));
    assert!(matches!(w.write(&batch), Err(OrcError::Poisoned)));
    assert!(matches!(w.close(), Err(OrcError::Poisoned)));
}

#[test]
fn present_streams_only_in_stripes_with_nulls() {
    let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int32, true)]));
    let rows: Vec<Vec<V>> =
        (0..4000).map(|i| vec![if i >= 2000 && i % 3 == 0 { V::Null } else { V::Int(i) }]).collect();
    let opts = OrcOptions {
        stripe_size_bytes: 1,
        row_index_stride: 100,
        compression: OrcCompression::None,
        ..OrcOptions::default()
    };
    let file = write_file(&schema, &rows, opts);
    let d = decode(&file);
    assert_eq!(d.rows, rows);
    let f = OrcFile::open(&file);
    let mut with_present = Vec::new();
    for stripe in get_all(&f.footer, 3) {
        let start = get_u(stripe, 1).unwrap() as usize;
        let body = get_u(stripe, 2).unwrap() as usize + get_u(stripe, 3).unwrap() as usize;
        let sf = &file[start + body..start + body + get_u(stripe, 4).unwrap() as usize];
        with_present.push(get_all(sf, 1).iter().any(|s| get_u(s, 1).unwrap_or(0) == 0));
    }
    assert!(with_present.len() > 2);
    assert!(!with_present[0] && with_present[with_present.len() - 1]);
}

// ---------------------------------------------------------------------------------------------------------------
// Cross-checks and measurements (ignored: they need Python or a release build).

fn json_value(v: &V, dt: &DataType) -> serde_json::Value {
    use serde_json::{Value, json};
    match (v, dt) {
        (V::Null, _) => Value::Null,
        (V::Bool(b), _) => json!(b),
        (V::Int(i), _) => json!(i),
        (V::F32(b), _) => json!(format!("{:?}", f64::from(f32::from_bits(*b)))),
        (V::F64(b), _) => json!(format!("{:?}", f64::from_bits(*b))),
        (V::Dec(d), DataType::Decimal128(_, s)) => json!(stats::format_decimal(*d, *s as u8)),
        (V::Str(s), _) => json!(s),
        (V::Bin(b), _) => json!(b.iter().map(|x| format!("{x:02x}")).collect::<String>()),
        (V::Date(d), _) => json!(d),
        (V::Ts(t), _) => json!(t),
        (V::List(xs), DataType::List(f)) => Value::Array(xs.iter().map(|x| json_value(x, f.data_type())).collect()),
        (V::Map(es), DataType::Map(f, _)) => {
            let DataType::Struct(kv) = f.data_type() else { panic!() };
            Value::Array(
                es.iter()
                    .map(|(k, x)| json!([json_value(k, kv[0].data_type()), json_value(x, kv[1].data_type())]))
                    .collect(),
            )
        }
        (V::Struct(xs), DataType::Struct(fields)) => Value::Object(
            fields.iter().zip(xs).map(|(f, x)| (f.name().clone(), json_value(x, f.data_type()))).collect(),
        ),
        other => panic!("{other:?}"),
    }
}

/// Writes sample files (each compression; default, multi-stripe, tiny-stripe/stride and index-less layouts; an
/// empty file) and their expected rows to /tmp/orc-check/ for a check with real ORC readers:
/// `cargo test -p spillway-format --lib orc::tests::write_pyarrow_samples -- --ignored`, then read each
/// `<name>.orc` with e.g. `pyarrow.orc.read_table` (and `pyorc` for seeks, statistics and predicates) and compare
/// every value with `<name>.json` (one object per row; floats as strings, decimals as strings, binary as hex,
/// dates as days and timestamps as microseconds since the epoch, maps as `[key, value]` lists).
#[test]
#[ignore]
fn write_pyarrow_samples() {
    let dir = std::path::Path::new("/tmp/orc-check");
    std::fs::create_dir_all(dir).unwrap();
    let schema = sample_schema();
    let rows = sample_rows(&sample_columns(), 25_000, 5);
    let expected: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            serde_json::Value::Object(
                schema.fields().iter().zip(r).map(|(f, v)| (f.name().clone(), json_value(v, f.data_type()))).collect(),
            )
        })
        .collect();
    for compression in [OrcCompression::None, OrcCompression::Zlib, OrcCompression::Snappy] {
        for (name, stripe_size, stride, block, version) in [
            ("default", 64 << 20, 10_000, 256 << 10, OrcFormatVersion::V0_12),
            ("multistripe", 100_000, 1000, 4096, OrcFormatVersion::V0_12),
            ("tiny", 1, 7, 100, OrcFormatVersion::V0_11),
            ("noindex", 300_000, 0, 256 << 10, OrcFormatVersion::V0_11),
        ] {
            let opts = OrcOptions {
                compression,
                stripe_size_bytes: stripe_size,
                row_index_stride: stride,
                compression_block_size: block,
                format_version: version,
                ..OrcOptions::default()
            };
            let n = if name == "tiny" { 3000 } else { rows.len() };
            let file = write_file(&schema, &rows[..n], opts);
            let stem = format!("{name}-{compression:?}").to_lowercase();
            std::fs::write(dir.join(format!("{stem}.orc")), &file).unwrap();
            std::fs::write(dir.join(format!("{stem}.json")), serde_json::to_vec(&expected[..n]).unwrap()).unwrap();
        }
        let file = OrcWriter::try_new(Vec::new(), schema.clone(), options(compression)).unwrap().close().unwrap();
        let stem = format!("empty-{compression:?}").to_lowercase();
        std::fs::write(dir.join(format!("{stem}.orc")), &file).unwrap();
        std::fs::write(dir.join(format!("{stem}.json")), b"[]").unwrap();
    }
}

/// Encoding speed for 1M rows of mixed columns:
/// `cargo test --release -p spillway-format --lib orc::tests::speed -- --ignored --nocapture`.
#[test]
#[ignore]
fn speed() {
    let columns: Vec<HiveColumn> = [
        ("id", "bigint"),
        ("n", "int"),
        ("price", "double"),
        ("amount", "decimal(12,2)"),
        ("name", "string"),
        ("ts", "timestamp"),
        ("day", "date"),
        ("flag", "boolean"),
        ("tags", "array<string>"),
    ]
    .into_iter()
    .map(|(n, t)| HiveColumn::new(n, HiveType::parse(t).unwrap()))
    .collect();
    let schema = Arc::new(arrow_schema(&columns));
    let rows = 1_000_000;
    let mut rng = Rng(99);
    let words = ["alpha", "beta", "gamma", "delta", "epsilon-zeta", "日本"];
    let arrays: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values((0..rows).map(|i| 1_000_000 + i as i64))),
        Arc::new(Int32Array::from_iter((0..rows).map(|_| rng.chance(95).then(|| rng.range(0, 10_000) as i32)))),
        Arc::new(Float64Array::from_iter_values((0..rows).map(|_| rng.range(0, 1_000_000) as f64 / 100.0))),
        Arc::new(
            Decimal128Array::from_iter_values((0..rows).map(|_| i128::from(rng.range(0, 10_000_000))))
                .with_precision_and_scale(12, 2)
                .unwrap(),
        ),
        Arc::new(StringArray::from_iter_values((0..rows).map(|i| format!("{}-{}", words[i % words.len()], i % 1000)))),
        Arc::new(TimestampMicrosecondArray::from_iter_values(
            (0..rows).map(|i| 1_700_000_000_000_000 + i as i64 * 1_234_567),
        )),
        Arc::new(Date32Array::from_iter_values((0..rows).map(|i| 19_000 + (i / 50_000) as i32))),
        Arc::new(BooleanArray::from_iter((0..rows).map(|_| Some(rng.chance(50))))),
        build_array(
            schema.field(8).data_type(),
            &(0..rows)
                .map(|i| V::List((0..i % 3).map(|j| V::Str(words[(i + j) % words.len()].to_string())).collect()))
                .collect::<Vec<_>>(),
        ),
    ];
    let batch = RecordBatch::try_new(schema.clone(), arrays).unwrap();
    let input: usize = batch.columns().iter().map(|a| a.get_array_memory_size()).sum();
    for compression in [OrcCompression::None, OrcCompression::Snappy, OrcCompression::Zlib] {
        let start = std::time::Instant::now();
        let mut w = OrcWriter::try_new(Vec::new(), schema.clone(), options(compression)).unwrap();
        w.write(&batch).unwrap();
        let out = w.close().unwrap();
        let secs = start.elapsed().as_secs_f64();
        println!(
            "{compression:?}: {rows} rows, {:.1} MB Arrow in, {:.1} MB out, {secs:.3} s, {:.0} MB/s",
            input as f64 / 1e6,
            out.len() as f64 / 1e6,
            input as f64 / 1e6 / secs
        );
    }
}
