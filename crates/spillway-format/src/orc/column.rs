//! Column writers: one per ORC column (node of the flattened type tree), each owning its streams, its statistics
//! and its part of the stripe's row index.
//!
//! A column is handed an Arrow array and the slot ranges of it to write (ascending, non-overlapping). It writes a
//! PRESENT bit for every slot, then the values of the non-null slots only; a struct passes its non-null slots to its
//! children, a list / map passes the element ranges of its non-null slots. So a child never sees the slots of a
//! null parent, whatever Arrow keeps there, which is what ORC readers expect.
//!
//! The PRESENT stream is always encoded (cheaply: runs of valid slots go in whole bytes) and dropped at the end of
//! a stripe in which the column had no null, together with its positions in the row index.

use arrow_array::types::ByteArrayType;
use arrow_array::types::{Date32Type, Int16Type, Int32Type, Int64Type};
use arrow_array::{
    Array, ArrayRef, ArrowPrimitiveType, BinaryArray, BooleanArray, Decimal128Array, Float32Array, Float64Array,
    GenericByteArray, Int8Array, ListArray, MapArray, PrimitiveArray, StringArray, StructArray,
    TimestampMicrosecondArray, TimestampMillisecondArray, TimestampNanosecondArray, TimestampSecondArray,
};
use arrow_buffer::bit_iterator::BitSliceIterator;
use arrow_schema::{DataType, TimeUnit};

use super::OrcError;
use super::proto::Proto;
use super::rle::{BoolRle, ByteRle, IntRle};
use super::stats::{ColumnStats, TypeStats};
use super::stream::{Compressor, OutStream};

/// Seconds from the Unix epoch to ORC's timestamp base, 2015-01-01 00:00:00 UTC.
pub(crate) const ORC_EPOCH_SECONDS: i64 = 1_420_070_400;

/// `Stream.Kind` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StreamKind {
    Present = 0,
    Data = 1,
    Length = 2,
    Secondary = 5,
    RowIndex = 6,
}

/// A finished stream of the current stripe, borrowed from its column.
pub(crate) struct StreamRef<'a> {
    pub(crate) kind: StreamKind,
    pub(crate) column: u32,
    pub(crate) bytes: &'a [u8],
}

/// `Type.Kind` values.
mod type_kind {
    pub(super) const BOOLEAN: u64 = 0;
    pub(super) const BYTE: u64 = 1;
    pub(super) const SHORT: u64 = 2;
    pub(super) const INT: u64 = 3;
    pub(super) const LONG: u64 = 4;
    pub(super) const FLOAT: u64 = 5;
    pub(super) const DOUBLE: u64 = 6;
    pub(super) const STRING: u64 = 7;
    pub(super) const BINARY: u64 = 8;
    pub(super) const TIMESTAMP: u64 = 9;
    pub(super) const LIST: u64 = 10;
    pub(super) const MAP: u64 = 11;
    pub(super) const STRUCT: u64 = 12;
    pub(super) const DECIMAL: u64 = 14;
    pub(super) const DATE: u64 = 15;
}

#[allow(
    clippy::large_enum_variant,
    reason = "one per column, built once and never moved on the hot path; boxing would add an indirection per value"
)]
enum Kind {
    Struct { children: Vec<Column> },
    List { lengths: IntRle, child: Box<Column>, child_ranges: Vec<(usize, usize)> },
    Map { lengths: IntRle, key: Box<Column>, value: Box<Column>, child_ranges: Vec<(usize, usize)> },
    Boolean { data: BoolRle },
    Byte { data: ByteRle },
    Short { data: IntRle },
    Int { data: IntRle },
    Long { data: IntRle },
    Date { data: IntRle },
    Float { data: OutStream },
    Double { data: OutStream },
    String { data: OutStream, lengths: IntRle },
    Binary { data: OutStream, lengths: IntRle },
    Decimal { data: OutStream, scales: IntRle, scale: i8 },
    Timestamp { seconds: IntRle, nanos: IntRle, unit: TimeUnit },
}

pub(crate) struct Column {
    pub(crate) id: u32,
    present: BoolRle,
    /// Statistics of the current row group, of the current stripe (finished row groups) and of the file (finished
    /// stripes).
    group: ColumnStats,
    stripe: ColumnStats,
    file: ColumnStats,
    /// Row index of the current stripe: the start positions of every row group begun so far
    /// (`positions_per_entry` each, PRESENT's `present_positions` first), and the statistics of every finished one.
    index_positions: Vec<u64>,
    index_stats: Vec<ColumnStats>,
    positions_per_entry: usize,
    present_positions: usize,
    /// Scratch: the non-null slot ranges of the current write.
    valid: Vec<(usize, usize)>,
    kind: Kind,
}

/// Builds the column tree for `data_type` (ids in pre-order from `*next_id`) and appends each column's encoded
/// `Type` message to `types`.
pub(crate) fn build(
    data_type: &DataType,
    path: &str,
    next_id: &mut u32,
    types: &mut Vec<Vec<u8>>,
    cx: &Compressor,
) -> Result<Column, OrcError> {
    let id = *next_id;
    *next_id = next_id
        .checked_add(1)
        .ok_or_else(|| OrcError::UnsupportedType { column: path.to_string(), reason: "too many columns".into() })?;
    types.push(Vec::new());
    let mut t = Proto::new();
    let (type_kind, kind) = match data_type {
        DataType::Boolean => (type_kind::BOOLEAN, Kind::Boolean { data: BoolRle::default() }),
        DataType::Int8 => (type_kind::BYTE, Kind::Byte { data: ByteRle::default() }),
        DataType::Int16 => (type_kind::SHORT, Kind::Short { data: IntRle::new(true) }),
        DataType::Int32 => (type_kind::INT, Kind::Int { data: IntRle::new(true) }),
        DataType::Int64 => (type_kind::LONG, Kind::Long { data: IntRle::new(true) }),
        DataType::Float32 => (type_kind::FLOAT, Kind::Float { data: OutStream::default() }),
        DataType::Float64 => (type_kind::DOUBLE, Kind::Double { data: OutStream::default() }),
        DataType::Utf8 => (type_kind::STRING, Kind::String { data: OutStream::default(), lengths: IntRle::new(false) }),
        DataType::Binary => {
            (type_kind::BINARY, Kind::Binary { data: OutStream::default(), lengths: IntRle::new(false) })
        }
        DataType::Date32 => (type_kind::DATE, Kind::Date { data: IntRle::new(true) }),
        DataType::Timestamp(unit, None) => (
            type_kind::TIMESTAMP,
            Kind::Timestamp { seconds: IntRle::new(true), nanos: IntRle::new(false), unit: *unit },
        ),
        DataType::Decimal128(precision, scale) => {
            if *precision == 0 || *precision > 38 || *scale < 0 || *scale as u8 > *precision {
                return Err(OrcError::UnsupportedType {
                    column: path.to_string(),
                    reason: format!("{data_type} needs 1 <= precision <= 38 and 0 <= scale <= precision"),
                });
            }
            t.uint(5, u64::from(*precision)).uint(6, *scale as u64);
            (type_kind::DECIMAL, Kind::Decimal { data: OutStream::default(), scales: IntRle::new(true), scale: *scale })
        }
        DataType::List(item) => {
            let child = build(item.data_type(), &format!("{path}.{}", item.name()), next_id, types, cx)?;
            t.packed_uint(2, &[u64::from(child.id)]);
            (
                type_kind::LIST,
                Kind::List { lengths: IntRle::new(false), child: Box::new(child), child_ranges: Vec::new() },
            )
        }
        DataType::Map(entries, _) => {
            let DataType::Struct(kv) = entries.data_type() else {
                return Err(OrcError::UnsupportedType {
                    column: path.to_string(),
                    reason: "map entries are not a struct".into(),
                });
            };
            let [k, v] = &kv[..] else {
                return Err(OrcError::UnsupportedType {
                    column: path.to_string(),
                    reason: "map entries do not have exactly two fields".into(),
                });
            };
            let key = build(k.data_type(), &format!("{path}.{}", k.name()), next_id, types, cx)?;
            let value = build(v.data_type(), &format!("{path}.{}", v.name()), next_id, types, cx)?;
            t.packed_uint(2, &[u64::from(key.id), u64::from(value.id)]);
            (
                type_kind::MAP,
                Kind::Map {
                    lengths: IntRle::new(false),
                    key: Box::new(key),
                    value: Box::new(value),
                    child_ranges: Vec::new(),
                },
            )
        }
        DataType::Struct(fields) => {
            let mut children = Vec::with_capacity(fields.len());
            for f in fields {
                let child_path = if path.is_empty() { f.name().clone() } else { format!("{path}.{}", f.name()) };
                children.push(build(f.data_type(), &child_path, next_id, types, cx)?);
            }
            let ids: Vec<u64> = children.iter().map(|c| u64::from(c.id)).collect();
            t.packed_uint(2, &ids);
            for f in fields {
                t.bytes(3, f.name().as_bytes());
            }
            (type_kind::STRUCT, Kind::Struct { children })
        }
        other => {
            return Err(OrcError::UnsupportedType {
                column: if path.is_empty() { "<root>".into() } else { path.to_string() },
                reason: format!("Arrow type {other} has no ORC mapping in this writer"),
            });
        }
    };
    // `kind` is required in `Type`; it goes first by convention.
    let mut encoded = Proto::new();
    encoded.uint(1, type_kind);
    encoded.buf.extend_from_slice(&t.into_bytes());
    types[id as usize] = encoded.into_bytes();

    let stats = ColumnStats::new(match &kind {
        Kind::Struct { .. } | Kind::List { .. } | Kind::Map { .. } => TypeStats::Plain,
        Kind::Boolean { .. } => TypeStats::Bool { trues: 0 },
        Kind::Byte { .. } | Kind::Short { .. } | Kind::Int { .. } | Kind::Long { .. } => TypeStats::int(),
        Kind::Date { .. } => TypeStats::date(),
        Kind::Float { .. } | Kind::Double { .. } => TypeStats::double(),
        Kind::String { .. } => TypeStats::string(),
        Kind::Binary { .. } => TypeStats::Binary { sum: 0 },
        Kind::Decimal { scale, .. } => TypeStats::decimal(*scale as u8),
        Kind::Timestamp { .. } => TypeStats::timestamp(),
    });
    let mut column = Column {
        id,
        present: BoolRle::default(),
        group: stats.clone(),
        stripe: stats.clone(),
        file: stats,
        index_positions: Vec::new(),
        index_stats: Vec::new(),
        positions_per_entry: 0,
        present_positions: 0,
        valid: Vec::new(),
        kind,
    };
    let mut probe = Vec::new();
    column.present.position(cx, &mut probe);
    column.present_positions = probe.len();
    column.kind.positions(cx, &mut probe);
    column.positions_per_entry = probe.len();
    Ok(column)
}

/// Whether arrays of type `actual` can be written by a column built for `expected` (nullability and field names
/// aside).
pub(crate) fn same_shape(expected: &DataType, actual: &DataType) -> bool {
    match (expected, actual) {
        (DataType::List(a), DataType::List(b)) => same_shape(a.data_type(), b.data_type()),
        (DataType::Map(a, _), DataType::Map(b, _)) => same_shape(a.data_type(), b.data_type()),
        (DataType::Struct(a), DataType::Struct(b)) => {
            a.len() == b.len() && a.iter().zip(b.iter()).all(|(a, b)| same_shape(a.data_type(), b.data_type()))
        }
        _ => expected == actual,
    }
}

fn downcast<T: 'static>(array: &dyn Array, id: u32) -> Result<&T, OrcError> {
    array.as_any().downcast_ref::<T>().ok_or_else(|| {
        OrcError::SchemaMismatch(format!("column {id}: unexpected Arrow array of type {}", array.data_type()))
    })
}

/// Appends `[start, end)` to `ranges`, merging it with the previous range when they touch; drops empty ranges.
#[inline]
fn push_range(ranges: &mut Vec<(usize, usize)>, start: usize, end: usize) {
    if start == end {
        return;
    }
    if let Some(last) = ranges.last_mut()
        && last.1 == start
    {
        last.1 = end;
        return;
    }
    ranges.push((start, end));
}

impl Column {
    /// Writes the slots of `array` in `ranges`.
    pub(crate) fn write(
        &mut self,
        array: &dyn Array,
        ranges: &[(usize, usize)],
        cx: &mut Compressor,
    ) -> Result<(), OrcError> {
        self.valid.clear();
        let mut slots = 0;
        match array.nulls().filter(|n| n.null_count() > 0) {
            None => {
                for &(start, end) in ranges {
                    self.present.write_repeated(true, end - start, cx)?;
                    push_range(&mut self.valid, start, end);
                    slots += end - start;
                }
            }
            Some(nulls) => {
                for &(start, end) in ranges {
                    let mut at = start;
                    for (s, e) in BitSliceIterator::new(nulls.validity(), nulls.offset() + start, end - start) {
                        let (s, e) = (start + s, start + e);
                        if s > at {
                            self.present.write_repeated(false, s - at, cx)?;
                        }
                        self.present.write_repeated(true, e - s, cx)?;
                        push_range(&mut self.valid, s, e);
                        at = e;
                    }
                    if end > at {
                        self.present.write_repeated(false, end - at, cx)?;
                    }
                    slots += end - start;
                }
            }
        }
        let values: usize = self.valid.iter().map(|(s, e)| e - s).sum();
        self.group.values += values as u64;
        if values < slots {
            self.group.has_null = true;
        }
        if values == 0 {
            return Ok(());
        }
        write_values(&mut self.kind, self.id, array, &self.valid, &mut self.group, cx)
    }

    /// Writes rows `[start, end)` of a record batch's columns into this (root struct) column's children.
    pub(crate) fn write_root(
        &mut self,
        columns: &[ArrayRef],
        start: usize,
        end: usize,
        cx: &mut Compressor,
    ) -> Result<(), OrcError> {
        let Kind::Struct { children } = &mut self.kind else {
            return Err(OrcError::SchemaMismatch("the root column is not a struct".into()));
        };
        if children.len() != columns.len() {
            return Err(OrcError::SchemaMismatch(format!(
                "{} columns in the batch, {} in the schema",
                columns.len(),
                children.len()
            )));
        }
        self.group.values += (end - start) as u64;
        for (child, array) in children.iter_mut().zip(columns) {
            child.write(array.as_ref(), &[(start, end)], cx)?;
        }
        Ok(())
    }

    fn children_mut(&mut self) -> impl Iterator<Item = &mut Column> {
        let (many, two): (&mut [Column], [Option<&mut Column>; 2]) = match &mut self.kind {
            Kind::Struct { children } => (children.as_mut_slice(), [None, None]),
            Kind::List { child, .. } => (&mut [], [Some(child.as_mut()), None]),
            Kind::Map { key, value, .. } => (&mut [], [Some(key.as_mut()), Some(value.as_mut())]),
            _ => (&mut [], [None, None]),
        };
        many.iter_mut().chain(two.into_iter().flatten())
    }

    fn children(&self) -> impl Iterator<Item = &Column> {
        let (many, two): (&[Column], [Option<&Column>; 2]) = match &self.kind {
            Kind::Struct { children } => (children.as_slice(), [None, None]),
            Kind::List { child, .. } => (&[], [Some(child.as_ref()), None]),
            Kind::Map { key, value, .. } => (&[], [Some(key.as_ref()), Some(value.as_ref())]),
            _ => (&[], [None, None]),
        };
        many.iter().chain(two.into_iter().flatten())
    }

    /// Records the start positions of a new row group, in this subtree.
    pub(crate) fn start_group(&mut self, cx: &Compressor) {
        self.present.position(cx, &mut self.index_positions);
        self.kind.positions(cx, &mut self.index_positions);
        for child in self.children_mut() {
            child.start_group(cx);
        }
    }

    /// Ends the current row group in this subtree: its statistics join the stripe's, and, with `indexed`, become
    /// a row index entry.
    pub(crate) fn end_group(&mut self, indexed: bool) {
        if indexed {
            self.index_stats.push(self.group.clone());
        }
        self.stripe.merge(&self.group);
        self.group.reset();
        for child in self.children_mut() {
            child.end_group(indexed);
        }
    }

    /// Bytes buffered for the current stripe in this subtree.
    pub(crate) fn buffered_len(&self) -> usize {
        self.present.buffered_len()
            + self.kind.buffered_len()
            + self.children().map(Column::buffered_len).sum::<usize>()
    }

    /// Completes every stream of this subtree for the end of the stripe.
    pub(crate) fn finish_streams(&mut self, cx: &mut Compressor) -> Result<(), OrcError> {
        self.present.finish(cx)?;
        self.kind.finish(cx)?;
        for child in self.children_mut() {
            child.finish_streams(cx)?;
        }
        Ok(())
    }

    /// Appends this subtree's data streams in column order (PRESENT only for columns that had nulls).
    pub(crate) fn collect_streams<'a>(&'a self, out: &mut Vec<StreamRef<'a>>) {
        let column = self.id;
        if self.stripe.has_null {
            out.push(StreamRef { kind: StreamKind::Present, column, bytes: self.present.stream().bytes() });
        }
        let mut push = |kind, s: &'a OutStream| out.push(StreamRef { kind, column, bytes: s.bytes() });
        match &self.kind {
            Kind::Struct { .. } => {}
            Kind::List { lengths, .. } | Kind::Map { lengths, .. } => push(StreamKind::Length, lengths.stream()),
            Kind::Boolean { data } => push(StreamKind::Data, data.stream()),
            Kind::Byte { data } => push(StreamKind::Data, data.stream()),
            Kind::Short { data } | Kind::Int { data } | Kind::Long { data } | Kind::Date { data } => {
                push(StreamKind::Data, data.stream())
            }
            Kind::Float { data } | Kind::Double { data } => push(StreamKind::Data, data),
            Kind::String { data, lengths } | Kind::Binary { data, lengths } => {
                push(StreamKind::Data, data);
                push(StreamKind::Length, lengths.stream());
            }
            Kind::Decimal { data, scales, .. } => {
                push(StreamKind::Data, data);
                push(StreamKind::Secondary, scales.stream());
            }
            Kind::Timestamp { seconds, nanos, .. } => {
                push(StreamKind::Data, seconds.stream());
                push(StreamKind::Secondary, nanos.stream());
            }
        }
        for child in self.children() {
            child.collect_streams(out);
        }
    }

    /// Appends this subtree's encoded `RowIndex` messages, one per column in column order.
    pub(crate) fn collect_indexes(&self, out: &mut Vec<(u32, Vec<u8>)>) {
        let mut index = Proto::new();
        let skip = if self.stripe.has_null { 0 } else { self.present_positions };
        for (i, stats) in self.index_stats.iter().enumerate() {
            let entry = &self.index_positions[i * self.positions_per_entry..(i + 1) * self.positions_per_entry];
            index.message(1, |e| {
                e.packed_uint(1, &entry[skip..]);
                e.message(2, |s| stats.encode(s));
            });
        }
        out.push((self.id, index.into_bytes()));
        for child in self.children() {
            child.collect_indexes(out);
        }
    }

    /// Encodes the stripe's statistics of this subtree as repeated `ColumnStatistics` in field `field` of `p`.
    pub(crate) fn encode_stripe_stats(&self, p: &mut Proto, field: u32) {
        p.message(field, |m| self.stripe.encode(m));
        for child in self.children() {
            child.encode_stripe_stats(p, field);
        }
    }

    /// Encodes the file's statistics of this subtree as repeated `ColumnStatistics` in field `field` of `p`.
    pub(crate) fn encode_file_stats(&self, p: &mut Proto, field: u32) {
        p.message(field, |m| self.file.encode(m));
        for child in self.children() {
            child.encode_file_stats(p, field);
        }
    }

    /// Starts the next stripe: the stripe's statistics join the file's; streams and index are emptied.
    pub(crate) fn reset_stripe(&mut self) {
        self.file.merge(&self.stripe);
        self.stripe.reset();
        self.group.reset();
        self.present.clear();
        self.kind.clear();
        self.index_positions.clear();
        self.index_stats.clear();
        for child in self.children_mut() {
            child.reset_stripe();
        }
    }
}

impl Kind {
    /// Appends the current positions of the data streams, in the order readers consume them.
    fn positions(&self, cx: &Compressor, p: &mut Vec<u64>) {
        match self {
            Kind::Struct { .. } => {}
            Kind::List { lengths, .. } | Kind::Map { lengths, .. } => lengths.position(cx, p),
            Kind::Boolean { data } => data.position(cx, p),
            Kind::Byte { data } => data.position(cx, p),
            Kind::Short { data } | Kind::Int { data } | Kind::Long { data } | Kind::Date { data } => {
                data.position(cx, p)
            }
            Kind::Float { data } | Kind::Double { data } => data.position(cx, p),
            Kind::String { data, lengths } | Kind::Binary { data, lengths } => {
                data.position(cx, p);
                lengths.position(cx, p);
            }
            Kind::Decimal { data, scales, .. } => {
                data.position(cx, p);
                scales.position(cx, p);
            }
            Kind::Timestamp { seconds, nanos, .. } => {
                seconds.position(cx, p);
                nanos.position(cx, p);
            }
        }
    }

    fn buffered_len(&self) -> usize {
        match self {
            Kind::Struct { .. } => 0,
            Kind::List { lengths, .. } | Kind::Map { lengths, .. } => lengths.buffered_len(),
            Kind::Boolean { data } => data.buffered_len(),
            Kind::Byte { data } => data.buffered_len(),
            Kind::Short { data } | Kind::Int { data } | Kind::Long { data } | Kind::Date { data } => {
                data.buffered_len()
            }
            Kind::Float { data } | Kind::Double { data } => data.buffered_len(),
            Kind::String { data, lengths } | Kind::Binary { data, lengths } => {
                data.buffered_len() + lengths.buffered_len()
            }
            Kind::Decimal { data, scales, .. } => data.buffered_len() + scales.buffered_len(),
            Kind::Timestamp { seconds, nanos, .. } => seconds.buffered_len() + nanos.buffered_len(),
        }
    }

    fn finish(&mut self, cx: &mut Compressor) -> Result<(), OrcError> {
        match self {
            Kind::Struct { .. } => Ok(()),
            Kind::List { lengths, .. } | Kind::Map { lengths, .. } => lengths.finish(cx),
            Kind::Boolean { data } => data.finish(cx),
            Kind::Byte { data } => data.finish(cx),
            Kind::Short { data } | Kind::Int { data } | Kind::Long { data } | Kind::Date { data } => data.finish(cx),
            Kind::Float { data } | Kind::Double { data } => data.finish(cx),
            Kind::String { data, lengths } | Kind::Binary { data, lengths } => {
                data.finish(cx)?;
                lengths.finish(cx)
            }
            Kind::Decimal { data, scales, .. } => {
                data.finish(cx)?;
                scales.finish(cx)
            }
            Kind::Timestamp { seconds, nanos, .. } => {
                seconds.finish(cx)?;
                nanos.finish(cx)
            }
        }
    }

    fn clear(&mut self) {
        match self {
            Kind::Struct { .. } => {}
            Kind::List { lengths, .. } | Kind::Map { lengths, .. } => lengths.clear(),
            Kind::Boolean { data } => data.clear(),
            Kind::Byte { data } => data.clear(),
            Kind::Short { data } | Kind::Int { data } | Kind::Long { data } | Kind::Date { data } => data.clear(),
            Kind::Float { data } | Kind::Double { data } => data.clear(),
            Kind::String { data, lengths } | Kind::Binary { data, lengths } => {
                data.clear();
                lengths.clear();
            }
            Kind::Decimal { data, scales, .. } => {
                data.clear();
                scales.clear();
            }
            Kind::Timestamp { seconds, nanos, .. } => {
                seconds.clear();
                nanos.clear();
            }
        }
    }
}

/// Writes the values of the non-null slots `valid` of `array` into the streams of `kind`.
fn write_values(
    kind: &mut Kind,
    id: u32,
    array: &dyn Array,
    valid: &[(usize, usize)],
    stats: &mut ColumnStats,
    cx: &mut Compressor,
) -> Result<(), OrcError> {
    match kind {
        Kind::Struct { children } => {
            let array = downcast::<StructArray>(array, id)?;
            for (i, child) in children.iter_mut().enumerate() {
                child.write(array.column(i).as_ref(), valid, cx)?;
            }
        }
        Kind::List { lengths, child, child_ranges } => {
            let array = downcast::<ListArray>(array, id)?;
            write_lengths(array.value_offsets(), valid, lengths, child_ranges, cx)?;
            child.write(array.values().as_ref(), child_ranges, cx)?;
        }
        Kind::Map { lengths, key, value, child_ranges } => {
            let array = downcast::<MapArray>(array, id)?;
            write_lengths(array.value_offsets(), valid, lengths, child_ranges, cx)?;
            key.write(array.keys().as_ref(), child_ranges, cx)?;
            value.write(array.values().as_ref(), child_ranges, cx)?;
        }
        Kind::Boolean { data } => {
            let values = downcast::<BooleanArray>(array, id)?.values();
            for &(s, e) in valid {
                for i in s..e {
                    let v = values.value(i);
                    data.write(v, cx)?;
                    stats.update_bool(v);
                }
            }
        }
        Kind::Byte { data } => {
            let values = downcast::<Int8Array>(array, id)?.values();
            for &(s, e) in valid {
                for &v in &values[s..e] {
                    data.write(v as u8, cx)?;
                    stats.update_int(i64::from(v));
                }
            }
        }
        Kind::Short { data } => write_ints::<Int16Type>(array, id, valid, data, stats, cx)?,
        Kind::Int { data } => write_ints::<Int32Type>(array, id, valid, data, stats, cx)?,
        Kind::Long { data } => write_ints::<Int64Type>(array, id, valid, data, stats, cx)?,
        Kind::Date { data } => {
            let values = downcast::<PrimitiveArray<Date32Type>>(array, id)?.values();
            for &(s, e) in valid {
                for &v in &values[s..e] {
                    data.write(i64::from(v), cx)?;
                    stats.update_date(v);
                }
            }
        }
        Kind::Float { data } => {
            let values = downcast::<Float32Array>(array, id)?.values();
            for &(s, e) in valid {
                let run = &values[s..e];
                write_le(data, run, f32::to_le_bytes, cx)?;
                for &v in run {
                    stats.update_double(f64::from(v));
                }
            }
        }
        Kind::Double { data } => {
            let values = downcast::<Float64Array>(array, id)?.values();
            for &(s, e) in valid {
                let run = &values[s..e];
                write_le(data, run, f64::to_le_bytes, cx)?;
                for &v in run {
                    stats.update_double(v);
                }
            }
        }
        Kind::String { data, lengths } => {
            write_bytes(downcast::<StringArray>(array, id)?, valid, data, lengths, stats, cx)?;
        }
        Kind::Binary { data, lengths } => {
            write_bytes(downcast::<BinaryArray>(array, id)?, valid, data, lengths, stats, cx)?;
        }
        Kind::Decimal { data, scales, scale } => {
            let values = downcast::<Decimal128Array>(array, id)?.values();
            let mut buf = [0u8; 19];
            for &(s, e) in valid {
                for &v in &values[s..e] {
                    // Unbounded zigzag varint; 128 bits take at most 19 bytes.
                    let mut u = ((v << 1) ^ (v >> 127)) as u128;
                    let mut n = 0;
                    while u >= 0x80 {
                        buf[n] = (u as u8) | 0x80;
                        u >>= 7;
                        n += 1;
                    }
                    buf[n] = u as u8;
                    data.write(&buf[..=n], cx)?;
                    scales.write(i64::from(*scale), cx)?;
                    stats.update_decimal(v);
                }
            }
        }
        Kind::Timestamp { seconds, nanos, unit } => {
            let (values, per_second) = match unit {
                TimeUnit::Second => (downcast::<TimestampSecondArray>(array, id)?.values().as_ref(), 1),
                TimeUnit::Millisecond => (downcast::<TimestampMillisecondArray>(array, id)?.values().as_ref(), 1_000),
                TimeUnit::Microsecond => {
                    (downcast::<TimestampMicrosecondArray>(array, id)?.values().as_ref(), 1_000_000)
                }
                TimeUnit::Nanosecond => {
                    (downcast::<TimestampNanosecondArray>(array, id)?.values().as_ref(), 1_000_000_000)
                }
            };
            let nanos_per_unit = 1_000_000_000 / per_second;
            for &(s, e) in valid {
                for &v in &values[s..e] {
                    let secs = v.div_euclid(per_second);
                    let nano = (v.rem_euclid(per_second) * nanos_per_unit) as u32;
                    stats.update_timestamp(
                        secs.saturating_mul(1000).saturating_add(i64::from(nano / 1_000_000)),
                        nano % 1_000_000,
                    );
                    // The reference writers store seconds truncated towards zero for negative times (readers
                    // subtract one again when the seconds are negative and the nanoseconds exceed 999,999).
                    let stored = if secs < 0 && nano > 999_999 { secs + 1 } else { secs };
                    let stored = stored.checked_sub(ORC_EPOCH_SECONDS).ok_or_else(|| OrcError::ValueOutOfRange {
                        column: id,
                        reason: format!("timestamp {v} ({unit:?})"),
                    })?;
                    seconds.write(stored, cx)?;
                    nanos.write(format_nanos(nano) as i64, cx)?;
                }
            }
        }
    }
    Ok(())
}

/// ORC's nanosecond encoding: with more than two trailing decimal zeros, the zeros are dropped and their count
/// minus one goes in the low three bits.
pub(crate) fn format_nanos(nanos: u32) -> u64 {
    if nanos == 0 {
        return 0;
    }
    if !nanos.is_multiple_of(100) {
        return u64::from(nanos) << 3;
    }
    let mut n = nanos / 100;
    let mut zeros = 1;
    while n.is_multiple_of(10) && zeros < 7 {
        n /= 10;
        zeros += 1;
    }
    (u64::from(n) << 3) | zeros
}

fn write_ints<T>(
    array: &dyn Array,
    id: u32,
    valid: &[(usize, usize)],
    data: &mut IntRle,
    stats: &mut ColumnStats,
    cx: &mut Compressor,
) -> Result<(), OrcError>
where
    T: ArrowPrimitiveType,
    T::Native: Into<i64>,
{
    let values = downcast::<PrimitiveArray<T>>(array, id)?.values();
    for &(s, e) in valid {
        for &v in &values[s..e] {
            let v: i64 = v.into();
            data.write(v, cx)?;
            stats.update_int(v);
        }
    }
    Ok(())
}

/// Writes fixed-width values little-endian (a plain copy on little-endian hosts).
fn write_le<T: arrow_buffer::ArrowNativeType, const N: usize>(
    data: &mut OutStream,
    values: &[T],
    to_le: fn(T) -> [u8; N],
    cx: &mut Compressor,
) -> Result<(), OrcError> {
    if cfg!(target_endian = "little") {
        use arrow_buffer::ToByteSlice;
        data.write(values.to_byte_slice(), cx)
    } else {
        for &v in values {
            data.write(&to_le(v), cx)?;
        }
        Ok(())
    }
}

fn write_bytes<T: ByteArrayType<Offset = i32>>(
    array: &GenericByteArray<T>,
    valid: &[(usize, usize)],
    data: &mut OutStream,
    lengths: &mut IntRle,
    stats: &mut ColumnStats,
    cx: &mut Compressor,
) -> Result<(), OrcError> {
    let offsets = array.value_offsets();
    let bytes = array.value_data();
    for &(s, e) in valid {
        data.write(&bytes[offsets[s] as usize..offsets[e] as usize], cx)?;
        for w in offsets[s..=e].windows(2) {
            let (a, b) = (w[0] as usize, w[1] as usize);
            lengths.write((b - a) as i64, cx)?;
            stats.update_bytes(&bytes[a..b]);
        }
    }
    Ok(())
}

/// Writes the lengths of the non-null lists / maps in `valid` and collects their element ranges.
fn write_lengths(
    offsets: &[i32],
    valid: &[(usize, usize)],
    lengths: &mut IntRle,
    child_ranges: &mut Vec<(usize, usize)>,
    cx: &mut Compressor,
) -> Result<(), OrcError> {
    child_ranges.clear();
    for &(s, e) in valid {
        for w in offsets[s..=e].windows(2) {
            lengths.write(i64::from(w[1] - w[0]), cx)?;
        }
        push_range(child_ranges, offsets[s] as usize, offsets[e] as usize);
    }
    Ok(())
}
