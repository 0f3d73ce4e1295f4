//! Re-typing the converter's record batches to a table's Iceberg Arrow schema.
//!
//! The JSON converter builds plain Arrow types (`HiveType::to_arrow`): every field nullable, no
//! field ids, `Timestamp(Microsecond, None)` for both timestamp kinds, `Utf8` for `uuid` and
//! `time`, `Binary` for `binary` and `fixed[N]`. The Parquet writer of iceberg-rust wants the
//! schema of `iceberg::arrow::schema_to_arrow_schema`: field ids in the metadata, required fields
//! non-nullable, `+00:00` on timestamptz, `FixedSizeBinary(16)` for uuid, `Time64(Microsecond)`,
//! `LargeBinary`, `FixedSizeBinary(N)`. [`adapt_batch`] rebuilds each column to that type,
//! reusing buffers where the physical layout is the same, and reports the first value it cannot
//! take (a null in a required field, text that is not a uuid or a time of day, a binary of the
//! wrong length) with its column and its row.
//!
//! Columns are matched by name (exactly, else ignoring case); a table column the batch lacks is
//! all nulls; a batch column the table lacks is a schema mismatch (the schema changed after the
//! batch was converted: convert again with the new `table_info`).

use arrow_array::types::{Float64Type, Int64Type, Time64MicrosecondType};
use arrow_array::{
    Array, ArrayRef, BinaryArray, FixedSizeBinaryArray, Float32Array, Int32Array, LargeBinaryArray, ListArray,
    MapArray, PrimitiveArray, RecordBatch, StringArray, StructArray, TimestampMicrosecondArray, new_null_array,
};
use arrow_buffer::{BooleanBufferBuilder, Buffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow_schema::{DataType, FieldRef, Fields, SchemaRef, TimeUnit};
use std::sync::Arc;

/// Why a value (or a column) does not fit the table.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Problem {
    /// A required field is null (or absent).
    Missing,
    /// The value cannot be represented in the field's type.
    Invalid(String),
    /// The batch's shape does not match the table's schema.
    Mismatch(String),
}

/// A [`Problem`] at `row` (of the array being adapted; parents translate it to their rows) of the
/// field at `path` (dotted; `element`, `key`, `value` inside lists and maps).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AdaptError {
    pub problem: Problem,
    pub path: String,
    pub row: usize,
}

impl AdaptError {
    fn mismatch(path: &str, reason: String) -> Self {
        AdaptError { problem: Problem::Mismatch(reason), path: path.to_string(), row: 0 }
    }
}

type Res<T> = Result<T, AdaptError>;

/// `batch` re-typed to `schema` (an Iceberg Arrow schema with field ids).
pub(crate) fn adapt_batch(batch: &RecordBatch, schema: &SchemaRef) -> Res<RecordBatch> {
    let rows = batch.num_rows();
    let columns = match_children(batch.schema().fields(), batch.columns(), schema.fields(), "", rows, None)?;
    let options = arrow_array::RecordBatchOptions::new().with_row_count(Some(rows));
    RecordBatch::try_new_with_options(Arc::clone(schema), columns, &options)
        .map_err(|e| AdaptError::mismatch("", format!("cannot assemble the batch: {e}")))
}

fn join(parent: &str, name: &str) -> String {
    if parent.is_empty() { name.to_string() } else { format!("{parent}.{name}") }
}

/// The children of a struct (or the columns of a batch) for `targets`, by name. `mask` holds the
/// parent's nulls: a child value under a null parent is never looked at.
fn match_children(
    source_fields: &Fields,
    source: &[ArrayRef],
    targets: &Fields,
    parent: &str,
    len: usize,
    mask: Option<&NullBuffer>,
) -> Res<Vec<ArrayRef>> {
    for f in source_fields.iter() {
        let known = targets.iter().any(|t| t.name() == f.name() || t.name().eq_ignore_ascii_case(f.name()));
        if !known {
            return Err(AdaptError::mismatch(
                &join(parent, f.name()),
                format!("the table has no column {:?}", join(parent, f.name())),
            ));
        }
    }
    targets
        .iter()
        .map(|t| {
            let path = join(parent, t.name());
            let found = source_fields
                .iter()
                .position(|f| f.name() == t.name())
                .or_else(|| source_fields.iter().position(|f| f.name().eq_ignore_ascii_case(t.name())));
            match found {
                Some(i) => adapt(&source[i], t, mask, &path),
                None => {
                    let absent = new_null_array(t.data_type(), len);
                    if !t.is_nullable() {
                        // Absent everywhere: the first row the parent holds is missing it.
                        let row = (0..len).find(|&r| mask.is_none_or(|m| m.is_valid(r)));
                        if let Some(row) = row {
                            return Err(AdaptError { problem: Problem::Missing, path, row });
                        }
                    }
                    Ok(absent)
                }
            }
        })
        .collect()
}

/// `array` as the type of `target` (including its nullability). `mask` holds the nulls of the
/// parents: values under a null parent are neither checked nor parsed (they keep their own nulls).
fn adapt(array: &ArrayRef, target: &FieldRef, mask: Option<&NullBuffer>, path: &str) -> Res<ArrayRef> {
    let own = array.logical_nulls();
    if !target.is_nullable()
        && let Some(n) = &own
        && n.null_count() > 0
        && let Some(row) = (0..n.len()).find(|&r| n.is_null(r) && mask.is_none_or(|m| m.is_valid(r)))
    {
        return Err(AdaptError { problem: Problem::Missing, path: path.to_string(), row });
    }
    // The rows not to look at: null here or above.
    let skip = NullBuffer::union(own.as_ref(), mask);
    let nulls = array.nulls().cloned();
    let from = array.data_type();
    let to = target.data_type();
    let mismatch = || AdaptError::mismatch(path, format!("cannot write {from} values into a column of type {to}"));
    let out: ArrayRef = match (from, to) {
        (DataType::List(_), DataType::List(element)) => {
            let list = downcast::<ListArray>(array, path)?;
            let child_mask = spread_nulls(list.offsets(), skip.as_ref(), list.values().len());
            let values = adapt(list.values(), element, child_mask.as_ref(), &join(path, element.name()))
                .map_err(|e| to_parent_row(e, list.offsets()))?;
            Arc::new(
                ListArray::try_new(Arc::clone(element), list.offsets().clone(), values, nulls)
                    .map_err(|e| AdaptError::mismatch(path, e.to_string()))?,
            )
        }
        (DataType::Map(_, _), DataType::Map(entries_field, ordered)) => {
            let map = downcast::<MapArray>(array, path)?;
            let DataType::Struct(entry_fields) = entries_field.data_type() else { return Err(mismatch()) };
            let (Some(key_field), Some(value_field)) = (entry_fields.first(), entry_fields.get(1)) else {
                return Err(mismatch());
            };
            let entries = map.entries();
            if entries.num_columns() != 2 {
                return Err(mismatch());
            }
            let child_mask = spread_nulls(map.offsets(), skip.as_ref(), entries.len());
            let keys = adapt(entries.column(0), key_field, child_mask.as_ref(), &join(path, key_field.name()))
                .map_err(|e| to_parent_row(e, map.offsets()))?;
            let values = adapt(entries.column(1), value_field, child_mask.as_ref(), &join(path, value_field.name()))
                .map_err(|e| to_parent_row(e, map.offsets()))?;
            let entries = StructArray::try_new(entry_fields.clone(), vec![keys, values], None)
                .map_err(|e| AdaptError::mismatch(path, e.to_string()))?;
            Arc::new(
                MapArray::try_new(Arc::clone(entries_field), map.offsets().clone(), entries, nulls, *ordered)
                    .map_err(|e| AdaptError::mismatch(path, e.to_string()))?,
            )
        }
        (DataType::Struct(source_fields), DataType::Struct(target_fields)) => {
            let s = downcast::<StructArray>(array, path)?;
            let children = match_children(source_fields, s.columns(), target_fields, path, s.len(), skip.as_ref())?;
            // Null where a parent is null too, so that required children null there are allowed.
            Arc::new(
                StructArray::try_new_with_length(target_fields.clone(), children, skip, s.len())
                    .map_err(|e| AdaptError::mismatch(path, e.to_string()))?,
            )
        }
        (DataType::Timestamp(TimeUnit::Microsecond, _), DataType::Timestamp(TimeUnit::Microsecond, zone)) => {
            let t = downcast::<TimestampMicrosecondArray>(array, path)?.clone();
            Arc::new(match zone {
                Some(z) => t.with_timezone(Arc::clone(z)),
                None => t.with_timezone_opt(None::<Arc<str>>),
            })
        }
        (DataType::Utf8, DataType::FixedSizeBinary(16)) => {
            uuids(downcast::<StringArray>(array, path)?, skip.as_ref(), nulls, path)?
        }
        (DataType::Utf8, DataType::Time64(TimeUnit::Microsecond)) => {
            times(downcast::<StringArray>(array, path)?, skip.as_ref(), nulls, path)?
        }
        (DataType::Binary, DataType::LargeBinary) => {
            let b = downcast::<BinaryArray>(array, path)?;
            let offsets: Vec<i64> = b.offsets().iter().map(|&o| i64::from(o)).collect();
            Arc::new(
                LargeBinaryArray::try_new(
                    OffsetBuffer::new(ScalarBuffer::from(offsets)),
                    b.values().clone(),
                    b.nulls().cloned(),
                )
                .map_err(|e| AdaptError::mismatch(path, e.to_string()))?,
            )
        }
        (DataType::Binary, DataType::FixedSizeBinary(n)) => {
            fixed(downcast::<BinaryArray>(array, path)?, *n, skip.as_ref(), nulls, path)?
        }
        // Promotions Iceberg allows (the table's schema evolved after the batch was converted).
        (DataType::Int32, DataType::Int64) => {
            Arc::new(downcast::<Int32Array>(array, path)?.unary::<_, Int64Type>(i64::from))
        }
        (DataType::Float32, DataType::Float64) => {
            Arc::new(downcast::<Float32Array>(array, path)?.unary::<_, Float64Type>(f64::from))
        }
        (a, b) if a == b && !a.is_nested() => Arc::clone(array),
        _ => return Err(mismatch()),
    };
    Ok(out)
}

fn downcast<'a, T: 'static>(array: &'a ArrayRef, path: &str) -> Res<&'a T> {
    array.as_any().downcast_ref::<T>().ok_or_else(|| {
        AdaptError::mismatch(path, format!("unexpected array for type {} in column {path:?}", array.data_type()))
    })
}

/// The row of a list (or map) that holds element `e.row` of its values.
fn to_parent_row<O: arrow_buffer::ArrowNativeType + Ord>(mut e: AdaptError, offsets: &OffsetBuffer<O>) -> AdaptError {
    let child = e.row;
    let after = offsets.partition_point(|o| o.as_usize() <= child);
    e.row = after.saturating_sub(1);
    e
}

/// Child nulls for the values of a list (or map) whose slots `nulls` are null: the values those
/// slots span (normally none) are not looked at.
fn spread_nulls(offsets: &OffsetBuffer<i32>, nulls: Option<&NullBuffer>, len: usize) -> Option<NullBuffer> {
    let nulls = nulls.filter(|n| n.null_count() > 0)?;
    let mut valid = BooleanBufferBuilder::new(len);
    valid.append_n(len, true);
    let mut any = false;
    for (slot, w) in offsets.windows(2).enumerate() {
        if nulls.is_null(slot) {
            let (start, end) = (w[0].max(0) as usize, (w[1].max(0) as usize).min(len));
            for i in start..end {
                valid.set_bit(i, false);
                any = true;
            }
        }
    }
    any.then(|| NullBuffer::new(valid.finish()))
}

fn uuids(text: &StringArray, skip: Option<&NullBuffer>, nulls: Option<NullBuffer>, path: &str) -> Res<ArrayRef> {
    let mut bytes = Vec::with_capacity(text.len() * 16);
    for row in 0..text.len() {
        if skip.is_some_and(|n| n.is_null(row)) {
            bytes.extend_from_slice(&[0; 16]);
            continue;
        }
        let value = text.value(row);
        let u = uuid::Uuid::try_parse(value.trim()).map_err(|e| AdaptError {
            problem: Problem::Invalid(format!("{value:?} is not a UUID: {e}")),
            path: path.to_string(),
            row,
        })?;
        bytes.extend_from_slice(u.as_bytes());
    }
    Ok(Arc::new(
        FixedSizeBinaryArray::try_new(16, Buffer::from_vec(bytes), nulls)
            .map_err(|e| AdaptError::mismatch(path, e.to_string()))?,
    ))
}

/// Microseconds since midnight of `HH:MM`, `HH:MM:SS` or `HH:MM:SS.fraction` (up to 9 digits,
/// truncated to microseconds).
pub(crate) fn parse_time(text: &str) -> Option<i64> {
    let t = text.trim();
    let (hms, fraction) = match t.split_once('.') {
        Some((a, b)) => (a, Some(b)),
        None => (t, None),
    };
    let mut parts = hms.split(':');
    let mut field = |max: i64| -> Option<i64> {
        let p = parts.next()?;
        if p.len() != 2 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let v: i64 = p.parse().ok()?;
        (v <= max).then_some(v)
    };
    let h = field(23)?;
    let m = field(59)?;
    let s = match parts.next() {
        None if fraction.is_none() => 0,
        None => return None,
        Some(p) => {
            if p.len() != 2 || !p.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let v: i64 = p.parse().ok()?;
            if v > 59 {
                return None;
            }
            v
        }
    };
    if parts.next().is_some() {
        return None;
    }
    let micros = match fraction {
        None => 0,
        Some(f) => {
            if f.is_empty() || f.len() > 9 || !f.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let digits: String = f.chars().chain(std::iter::repeat('0')).take(6).collect();
            digits.parse::<i64>().ok()?
        }
    };
    Some(((h * 60 + m) * 60 + s) * 1_000_000 + micros)
}

fn times(text: &StringArray, skip: Option<&NullBuffer>, nulls: Option<NullBuffer>, path: &str) -> Res<ArrayRef> {
    let mut values = Vec::with_capacity(text.len());
    for row in 0..text.len() {
        if skip.is_some_and(|n| n.is_null(row)) {
            values.push(0);
            continue;
        }
        let value = text.value(row);
        let micros = parse_time(value).ok_or_else(|| AdaptError {
            problem: Problem::Invalid(format!("{value:?} is not a time of day (HH:MM:SS[.ffffff])")),
            path: path.to_string(),
            row,
        })?;
        values.push(micros);
    }
    Ok(Arc::new(PrimitiveArray::<Time64MicrosecondType>::new(ScalarBuffer::from(values), nulls)))
}

fn fixed(bin: &BinaryArray, n: i32, skip: Option<&NullBuffer>, nulls: Option<NullBuffer>, path: &str) -> Res<ArrayRef> {
    let width = usize::try_from(n).map_err(|_| AdaptError::mismatch(path, format!("bad fixed length {n}")))?;
    let mut bytes = Vec::with_capacity(bin.len() * width);
    for row in 0..bin.len() {
        if skip.is_some_and(|b| b.is_null(row)) {
            bytes.resize(bytes.len() + width, 0);
            continue;
        }
        let v = bin.value(row);
        if v.len() != width {
            return Err(AdaptError {
                problem: Problem::Invalid(format!("{} bytes where fixed[{width}] needs {width}", v.len())),
                path: path.to_string(),
                row,
            });
        }
        bytes.extend_from_slice(v);
    }
    Ok(Arc::new(
        FixedSizeBinaryArray::try_new(n, Buffer::from_vec(bytes), nulls)
            .map_err(|e| AdaptError::mismatch(path, e.to_string()))?,
    ))
}
