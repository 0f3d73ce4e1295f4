//! JSON records → Arrow columns, by the rules of Firehose's two input SerDes (reference §13).
//!
//! A [`JsonConverter`] is built once per object from the table's data columns and the
//! `Deserializer` (OpenX JSON SerDe or Hive JSON SerDe). [`JsonConverter::push_record`] takes one
//! record: one JSON object, or several concatenated (`{"a":1}{"a":2}` gives two rows). It parses
//! with a pull parser (jiter) straight into column builders: no intermediate JSON tree, keys matched
//! without allocating, numbers converted from their text (so `decimal(38,s)` is exact).
//! [`JsonConverter::flush`] hands the rows over as a `RecordBatch`.
//!
//! Invariants:
//! - a record is all or nothing: when any of its values cannot be converted, every builder is
//!   truncated back to the row count before the record and the record's [`ConversionError`] says
//!   why (`DataFormatConversion.MalformedData`, `.ParseError` or `.InvalidSchema`); the converter
//!   stays usable;
//! - every builder of a struct level has that level's length: a key that is absent or `null` gives
//!   a null; unknown keys are skipped; when a key repeats in one object, the first value is kept;
//! - nothing here panics on input.
//!
//! Conversion rules, per Hive type (OpenX = `org.openx.data.jsonserde.JsonSerDe`, Hive =
//! `org.apache.hive.hcatalog.data.JsonSerDe`; both as Firehose runs them):
//! - string, varchar(n), char(n): strings as they are; numbers as their JSON text; booleans as
//!   `true`/`false`; OpenX writes a nested object or array as its JSON text, Hive refuses it.
//!   varchar keeps the first n characters, char pads with spaces to n (Hive's fixed length).
//! - boolean: JSON booleans; a string is `true` when it equals "true" ignoring case (Java's
//!   `Boolean.valueOf`), else `false`.
//! - tinyint..bigint: JSON integers within the type's range (a fraction or exponent is refused, as
//!   `Integer.parseInt` does); OpenX also parses numeric strings, Hive refuses strings.
//! - float, double: JSON numbers; OpenX also parses numeric strings (`Double.parseDouble`).
//! - decimal(p,s): numbers (OpenX: also strings), rounded half-up to s digits; a value that then has
//!   more than p digits becomes null (Hive's precision enforcement).
//! - date: `yyyy-[m]m-[d]d` strings (`java.sql.Date.valueOf`).
//! - timestamp: OpenX takes `yyyy-MM-ddTHH:mm:ss[.f]Z` and `yyyy-[M]M-[d]d HH:mm:ss[.f]` strings,
//!   integer epoch seconds, 13-digit integers as epoch milliseconds, and fractional epoch seconds
//!   (numbers or strings); a numeric offset such as `+00:00` is refused, as by the real service.
//!   Hive tries each of `TimestampFormats` (Joda-Time patterns, or `millis` for epoch
//!   milliseconds), then `java.sql.Timestamp.valueOf`. Values are UTC wall-clock time, kept to the
//!   microsecond.
//! - binary: OpenX cannot deserialize binary columns: every record fails with
//!   `DataFormatConversion.InvalidSchema`, as in the real service. Hive takes base64 strings
//!   (Hive 3's `JsonSerDe` default encoding).
//! - array<>: JSON arrays; map<k,v>: JSON objects, keys converted to k; struct<>: JSON objects,
//!   fields matched like top-level keys.
//!
//! Key matching: OpenX lower-cases keys when `CaseInsensitive` (the default) and matches them to
//! the (lower-case) column names, applies `ColumnToJsonKeyMappings` at the top level and
//! `ConvertDotsInJsonKeysToUnderscores` at every level. Hive matches keys ignoring case (Hive
//! column names are case-insensitive; unconfirmed for the real service).

use crate::schema::{Column, HiveType, MAP_ENTRIES, MAP_KEY, MAP_VALUE};
use arrow_array::types::Decimal128Type;
use arrow_array::{
    ArrayRef, BinaryArray, BooleanArray, Date32Array, Float32Array, Float64Array, Int8Array, Int16Array, Int32Array,
    Int64Array, ListArray, MapArray, PrimitiveArray, RecordBatch, StringArray, StructArray, TimestampMicrosecondArray,
};
use arrow_buffer::{BooleanBufferBuilder, NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow_schema::{DataType, Field, Fields, Schema, SchemaRef};
use base64::Engine;
use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime};
use jiter::{Jiter, JiterError, Peek};
use std::collections::HashMap;
use std::sync::Arc;

pub const MALFORMED_DATA: &str = "DataFormatConversion.MalformedData";
pub const PARSE_ERROR: &str = "DataFormatConversion.ParseError";
pub const INVALID_SCHEMA: &str = "DataFormatConversion.InvalidSchema";

/// Why a record could not be converted: the `lastErrorCode` and `lastErrorMessage` of its
/// `format-conversion-failed` error record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ConversionError {
    pub code: &'static str,
    pub message: String,
}

impl ConversionError {
    fn mismatch(detail: impl std::fmt::Display) -> Self {
        Self { code: MALFORMED_DATA, message: format!("Data does not match the schema. {detail}") }
    }
}

/// A `TimestampFormats` entry of the Hive JSON SerDe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimestampFormat {
    /// `millis`: epoch milliseconds.
    Millis,
    /// A Joda-Time pattern, kept as written and as the equivalent chrono pattern.
    Pattern { joda: String, chrono: String, zoned: bool, has_time: bool },
}

impl TimestampFormat {
    /// Parses one `TimestampFormats` entry; `Err` names what cannot be translated.
    pub fn parse(text: &str) -> Result<TimestampFormat, String> {
        if text == "millis" {
            return Ok(TimestampFormat::Millis);
        }
        joda_to_chrono(text).map(|(chrono, zoned, has_time)| TimestampFormat::Pattern {
            joda: text.to_string(),
            chrono,
            zoned,
            has_time,
        })
    }
}

/// `InputFormatConfiguration.Deserializer`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deserializer {
    OpenX {
        case_insensitive: bool,
        /// column → JSON key
        column_to_json_key: HashMap<String, String>,
        dots_to_underscores: bool,
    },
    Hive {
        timestamp_formats: Vec<TimestampFormat>,
    },
}

impl Default for Deserializer {
    /// Firehose's default when `InputFormatConfiguration` names the OpenX SerDe with no options.
    fn default() -> Self {
        Deserializer::OpenX { case_insensitive: true, column_to_json_key: HashMap::new(), dots_to_underscores: false }
    }
}

// ---------------------------------------------------------------------------------------------
// Column builders with truncation (Arrow's builders cannot roll back a failed record).

#[derive(Debug)]
enum Data {
    Bool(BooleanBufferBuilder),
    I8(Vec<i8>),
    I16(Vec<i16>),
    I32(Vec<i32>),
    I64(Vec<i64>),
    F32(Vec<f32>),
    F64(Vec<f64>),
    Decimal { values: Vec<i128>, precision: u8, scale: u8 },
    Str { offsets: Vec<i32>, bytes: Vec<u8>, limit: Option<(usize, bool)> },
    Binary { offsets: Vec<i32>, bytes: Vec<u8> },
    Date(Vec<i32>),
    Timestamp(Vec<i64>),
    List { offsets: Vec<i32>, item: Box<Col> },
    Map { offsets: Vec<i32>, key: Box<Col>, value: Box<Col> },
    Struct(Level),
}

#[derive(Debug)]
struct Col {
    name: String,
    hive: HiveType,
    valid: BooleanBufferBuilder,
    data: Data,
}

/// The fields of a struct (or of the table) and how JSON keys find them.
#[derive(Debug)]
struct Level {
    fields: Vec<Col>,
    /// Matching key of each field (lower-case when matching ignores case), by field index.
    keys: Vec<String>,
    /// Matching key → field index, for wide levels.
    index: HashMap<String, usize>,
    ignore_case: bool,
    /// Where the previous key matched: records of one stream usually list keys in the same order,
    /// so the next key is tried at the following field first.
    hint: usize,
}

/// Levels up to this many fields are searched linearly (after the hint) instead of hashed.
const LINEAR_FIELDS: usize = 16;

impl Col {
    fn new(column: &Column, d: &Deserializer) -> Col {
        let data = match &column.data_type {
            HiveType::Boolean => Data::Bool(BooleanBufferBuilder::new(0)),
            HiveType::TinyInt => Data::I8(Vec::new()),
            HiveType::SmallInt => Data::I16(Vec::new()),
            HiveType::Int => Data::I32(Vec::new()),
            HiveType::BigInt => Data::I64(Vec::new()),
            HiveType::Float => Data::F32(Vec::new()),
            HiveType::Double => Data::F64(Vec::new()),
            HiveType::Decimal { precision, scale } => {
                Data::Decimal { values: Vec::new(), precision: *precision, scale: *scale }
            }
            HiveType::String => Data::Str { offsets: vec![0], bytes: Vec::new(), limit: None },
            HiveType::Varchar(n) => {
                Data::Str { offsets: vec![0], bytes: Vec::new(), limit: Some((*n as usize, false)) }
            }
            HiveType::Char(n) => Data::Str { offsets: vec![0], bytes: Vec::new(), limit: Some((*n as usize, true)) },
            HiveType::Binary => Data::Binary { offsets: vec![0], bytes: Vec::new() },
            HiveType::Date => Data::Date(Vec::new()),
            HiveType::Timestamp => Data::Timestamp(Vec::new()),
            HiveType::Array(item) => Data::List {
                offsets: vec![0],
                item: Box::new(Col::new(&Column::new(crate::schema::LIST_ITEM, (**item).clone()), d)),
            },
            HiveType::Map(k, v) => Data::Map {
                offsets: vec![0],
                key: Box::new(Col::new(&Column::new(MAP_KEY, (**k).clone()), d)),
                value: Box::new(Col::new(&Column::new(MAP_VALUE, (**v).clone()), d)),
            },
            HiveType::Struct(fields) => Data::Struct(Level::new(fields, d, false)),
        };
        Col { name: column.name.clone(), hive: column.data_type.clone(), valid: BooleanBufferBuilder::new(0), data }
    }

    fn len(&self) -> usize {
        self.valid.len()
    }

    fn push_null(&mut self) {
        self.valid.append(false);
        match &mut self.data {
            Data::Bool(b) => b.append(false),
            Data::I8(v) => v.push(0),
            Data::I16(v) => v.push(0),
            Data::I32(v) | Data::Date(v) => v.push(0),
            Data::I64(v) | Data::Timestamp(v) => v.push(0),
            Data::F32(v) => v.push(0.0),
            Data::F64(v) => v.push(0.0),
            Data::Decimal { values, .. } => values.push(0),
            Data::Str { offsets, .. } | Data::Binary { offsets, .. } => offsets.push(*offsets.last().unwrap_or(&0)),
            Data::List { offsets, .. } | Data::Map { offsets, .. } => offsets.push(*offsets.last().unwrap_or(&0)),
            Data::Struct(level) => level.fields.iter_mut().for_each(Col::push_null),
        }
    }

    /// Back to `n` rows. Children are cut too even when this column has `n` rows or fewer: a
    /// failed value can leave children ahead of their parent.
    fn truncate(&mut self, n: usize) {
        if self.valid.len() > n {
            self.valid.truncate(n);
        }
        match &mut self.data {
            Data::Bool(b) if b.len() > n => b.truncate(n),
            Data::Bool(_) => {}
            Data::I8(v) => v.truncate(n),
            Data::I16(v) => v.truncate(n),
            Data::I32(v) | Data::Date(v) => v.truncate(n),
            Data::I64(v) | Data::Timestamp(v) => v.truncate(n),
            Data::F32(v) => v.truncate(n),
            Data::F64(v) => v.truncate(n),
            Data::Decimal { values, .. } => values.truncate(n),
            Data::Str { offsets, bytes, .. } | Data::Binary { offsets, bytes } => {
                offsets.truncate(n + 1);
                bytes.truncate(*offsets.last().unwrap_or(&0) as usize);
            }
            Data::List { offsets, item } => {
                offsets.truncate(n + 1);
                item.truncate(*offsets.last().unwrap_or(&0) as usize);
            }
            Data::Map { offsets, key, value } => {
                offsets.truncate(n + 1);
                let end = *offsets.last().unwrap_or(&0) as usize;
                key.truncate(end);
                value.truncate(end);
            }
            Data::Struct(level) => level.truncate(n),
        }
    }

    /// Approximate bytes held.
    fn mem_size(&self) -> usize {
        let n = self.len();
        n / 8
            + match &self.data {
                Data::Bool(_) => n / 8,
                Data::I8(_) => n,
                Data::I16(_) => 2 * n,
                Data::I32(_) | Data::Date(_) | Data::F32(_) => 4 * n,
                Data::I64(_) | Data::Timestamp(_) | Data::F64(_) => 8 * n,
                Data::Decimal { .. } => 16 * n,
                Data::Str { bytes, .. } | Data::Binary { bytes, .. } => 4 * n + bytes.len(),
                Data::List { item, .. } => 4 * n + item.mem_size(),
                Data::Map { key, value, .. } => 4 * n + key.mem_size() + value.mem_size(),
                Data::Struct(level) => level.fields.iter().map(Col::mem_size).sum(),
            }
    }

    /// Takes the built values as an Arrow array and resets the builder.
    fn finish(&mut self) -> ArrayRef {
        let nulls = take_nulls(&mut self.valid);
        match &mut self.data {
            Data::Bool(b) => Arc::new(BooleanArray::new(b.finish(), nulls)),
            Data::I8(v) => Arc::new(Int8Array::new(ScalarBuffer::from(std::mem::take(v)), nulls)),
            Data::I16(v) => Arc::new(Int16Array::new(ScalarBuffer::from(std::mem::take(v)), nulls)),
            Data::I32(v) => Arc::new(Int32Array::new(ScalarBuffer::from(std::mem::take(v)), nulls)),
            Data::Date(v) => Arc::new(Date32Array::new(ScalarBuffer::from(std::mem::take(v)), nulls)),
            Data::I64(v) => Arc::new(Int64Array::new(ScalarBuffer::from(std::mem::take(v)), nulls)),
            Data::Timestamp(v) => {
                Arc::new(TimestampMicrosecondArray::new(ScalarBuffer::from(std::mem::take(v)), nulls))
            }
            Data::F32(v) => Arc::new(Float32Array::new(ScalarBuffer::from(std::mem::take(v)), nulls)),
            Data::F64(v) => Arc::new(Float64Array::new(ScalarBuffer::from(std::mem::take(v)), nulls)),
            Data::Decimal { values, precision, scale } => Arc::new(
                PrimitiveArray::<Decimal128Type>::new(ScalarBuffer::from(std::mem::take(values)), nulls)
                    .with_data_type(DataType::Decimal128(*precision, *scale as i8)),
            ),
            Data::Str { offsets, bytes, .. } => {
                let (offsets, bytes) = take_offsets(offsets, bytes);
                // Valid by construction: values are appended from &str and cut at char
                // boundaries, offsets only grow.
                Arc::new(StringArray::new(offsets, bytes.into(), nulls))
            }
            Data::Binary { offsets, bytes } => {
                let (offsets, bytes) = take_offsets(offsets, bytes);
                Arc::new(BinaryArray::new(offsets, bytes.into(), nulls))
            }
            Data::List { offsets, item } => {
                let offsets = OffsetBuffer::new(ScalarBuffer::from(std::mem::replace(offsets, vec![0])));
                let field = Arc::new(Field::new(&item.name, item.hive.to_arrow(), true));
                Arc::new(ListArray::new(field, offsets, item.finish(), nulls))
            }
            Data::Map { offsets, key, value } => {
                let offsets = OffsetBuffer::new(ScalarBuffer::from(std::mem::replace(offsets, vec![0])));
                let fields = Fields::from(vec![
                    Field::new(MAP_KEY, key.hive.to_arrow(), false),
                    Field::new(MAP_VALUE, value.hive.to_arrow(), true),
                ]);
                let (keys, values) = (key.finish(), value.finish());
                let entries = StructArray::new(fields.clone(), vec![keys, values], None);
                let field = Arc::new(Field::new(MAP_ENTRIES, DataType::Struct(fields), false));
                Arc::new(MapArray::new(field, offsets, entries, nulls, false))
            }
            Data::Struct(level) => {
                let fields: Fields =
                    level.fields.iter().map(|c| Field::new(&c.name, c.hive.to_arrow(), true)).collect();
                let arrays = level.fields.iter_mut().map(Col::finish).collect();
                Arc::new(StructArray::new(fields, arrays, nulls))
            }
        }
    }
}

fn take_nulls(valid: &mut BooleanBufferBuilder) -> Option<NullBuffer> {
    let n = NullBuffer::new(valid.finish());
    (n.null_count() > 0).then_some(n)
}

fn take_offsets(offsets: &mut Vec<i32>, bytes: &mut Vec<u8>) -> (OffsetBuffer<i32>, Vec<u8>) {
    let o = OffsetBuffer::new(ScalarBuffer::from(std::mem::replace(offsets, vec![0])));
    (o, std::mem::take(bytes))
}

impl Level {
    fn new(columns: &[Column], d: &Deserializer, top: bool) -> Level {
        let ignore_case = match d {
            Deserializer::OpenX { case_insensitive, .. } => *case_insensitive,
            Deserializer::Hive { .. } => true,
        };
        let mut keys = Vec::with_capacity(columns.len());
        let mut index = HashMap::new();
        let fields: Vec<Col> = columns.iter().map(|c| Col::new(c, d)).collect();
        for (i, c) in columns.iter().enumerate() {
            let mut key = c.name.clone();
            if top && let Deserializer::OpenX { column_to_json_key, .. } = d {
                // Mapping keys are column names (case-insensitive, like Hive's).
                if let Some(k) =
                    column_to_json_key.iter().find(|(col, _)| col.eq_ignore_ascii_case(&c.name)).map(|(_, k)| k)
                {
                    key = k.clone();
                }
            }
            if ignore_case {
                key = key.to_lowercase();
            }
            if index.contains_key(&key) {
                // Two fields answer to one key: the first keeps it.
                keys.push(String::from("\u{0}"));
                continue;
            }
            index.insert(key.clone(), i);
            keys.push(key);
        }
        Level { fields, keys, index, ignore_case, hint: 0 }
    }

    fn truncate(&mut self, n: usize) {
        for f in &mut self.fields {
            f.truncate(n);
        }
    }

    /// The field a JSON key names, if any. `scratch` avoids an allocation per key.
    fn find(&mut self, key: &str, dots: bool, scratch: &mut String) -> Option<usize> {
        let special = (self.ignore_case && key.bytes().any(|b| b.is_ascii_uppercase() || b >= 0x80))
            || (dots && key.contains('.'));
        let plain = !special;
        if plain {
            return self.lookup(key);
        }
        scratch.clear();
        if self.ignore_case {
            for ch in key.chars().flat_map(char::to_lowercase) {
                scratch.push(if dots && ch == '.' { '_' } else { ch });
            }
        } else {
            scratch.extend(key.chars().map(|ch| if dots && ch == '.' { '_' } else { ch }));
        }
        let key = std::mem::take(scratch);
        let found = self.lookup(key.as_bytes());
        *scratch = key;
        found
    }

    /// [`find`](Self::find) on a key's raw JSON text (between the quotes): the common case, a
    /// plain key, is matched without decoding or UTF-8 validation.
    fn find_raw(&mut self, raw: &[u8], dots: bool, scratch: &mut String) -> Option<usize> {
        // Most keys are exactly the column name of the field after the previous one.
        if let Some(k) = self.keys.get(self.hint)
            && k.as_bytes() == raw
        {
            self.hint += 1;
            return Some(self.hint - 1);
        }
        // One pass: does the key need decoding, lower-casing or dot replacement?
        let (case, mut special) = (self.ignore_case, false);
        for &b in raw {
            special |= b == b'\\' || b >= 0x80 || (case && b.is_ascii_uppercase()) || (dots && b == b'.');
        }
        if !special {
            return self.lookup(raw);
        }
        let key = decode_json_string(raw)?;
        self.find(&key, dots, scratch)
    }

    fn lookup(&mut self, key: impl AsRef<[u8]>) -> Option<usize> {
        let key = key.as_ref();
        let n = self.keys.len();
        if n > LINEAR_FIELDS {
            return std::str::from_utf8(key).ok().and_then(|k| self.index.get(k).copied());
        }
        let start = if self.hint < n { self.hint } else { 0 };
        let found = (start..n).chain(0..start).find(|&i| self.keys[i].as_bytes() == key)?;
        self.hint = found + 1;
        Some(found)
    }
}

// ---------------------------------------------------------------------------------------------

/// Converts JSON records of one table into Arrow record batches.
#[derive(Debug)]
pub struct JsonConverter {
    schema: SchemaRef,
    root: Level,
    rows: usize,
    hive: bool,
    dots: bool,
    timestamp_formats: Vec<TimestampFormat>,
    /// Set when the deserializer cannot handle the schema at all (OpenX and binary columns).
    invalid_schema: Option<ConversionError>,
    scratch: String,
    /// A record must be exactly one JSON object (Iceberg destinations, reference §14).
    single_object: bool,
}

fn contains_binary(t: &HiveType) -> bool {
    match t {
        HiveType::Binary => true,
        HiveType::Array(i) => contains_binary(i),
        HiveType::Map(k, v) => contains_binary(k) || contains_binary(v),
        HiveType::Struct(f) => f.iter().any(|c| contains_binary(&c.data_type)),
        _ => false,
    }
}

type Res<T> = Result<T, ConversionError>;

fn parse_error(e: JiterError, data: &[u8]) -> ConversionError {
    let jiter = Jiter::new(data);
    ConversionError { code: PARSE_ERROR, message: format!("Encountered malformed JSON. {}", e.description(&jiter)) }
}

impl JsonConverter {
    /// A converter for the table's data `columns` (partition columns excluded).
    pub fn new(columns: &[Column], deserializer: &Deserializer) -> JsonConverter {
        let invalid_schema = (matches!(deserializer, Deserializer::OpenX { .. })
            && columns.iter().any(|c| contains_binary(&c.data_type)))
        .then(|| ConversionError {
            code: INVALID_SCHEMA,
            message: "The schema is invalid. One or more columns have types that are not supported by org.openx.data.JsonSerDe".into(),
        });
        let (hive, dots, timestamp_formats) = match deserializer {
            Deserializer::OpenX { dots_to_underscores, .. } => (false, *dots_to_underscores, Vec::new()),
            Deserializer::Hive { timestamp_formats } => (true, false, timestamp_formats.clone()),
        };
        JsonConverter {
            schema: Arc::new(Schema::new(
                columns.iter().map(|c| Field::new(&c.name, c.data_type.to_arrow(), true)).collect::<Fields>(),
            )),
            root: Level::new(columns, deserializer, true),
            rows: 0,
            hive,
            dots,
            timestamp_formats,
            invalid_schema,
            scratch: String::new(),
            single_object: false,
        }
    }

    /// Refuses records holding more than one JSON object (Iceberg: one record, one row).
    pub fn with_single_object(mut self) -> Self {
        self.single_object = true;
        self
    }

    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Rows waiting for [`flush`](Self::flush).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Approximate bytes the waiting rows hold.
    pub fn mem_size(&self) -> usize {
        self.root.fields.iter().map(Col::mem_size).sum()
    }

    /// Converts one record (one or more concatenated JSON objects) into rows; on error nothing of
    /// the record is kept. Returns the number of rows added.
    pub fn push_record(&mut self, data: &[u8]) -> Res<usize> {
        if let Some(e) = &self.invalid_schema {
            return Err(e.clone());
        }
        if data.iter().all(u8::is_ascii_whitespace) {
            return Err(ConversionError {
                code: MALFORMED_DATA,
                message: "The record was empty or contained only whitespace.".into(),
            });
        }
        let before = self.rows;
        match self.push_objects(data) {
            Ok(()) => Ok(self.rows - before),
            Err(e) => {
                self.root.truncate(before);
                self.rows = before;
                Err(e)
            }
        }
    }

    fn push_objects(&mut self, data: &[u8]) -> Res<()> {
        let mut offset = 0;
        loop {
            let rest = &data[offset..];
            if rest.iter().all(u8::is_ascii_whitespace) {
                return Ok(());
            }
            let mut j = Jiter::new(rest);
            let peek = j.peek().map_err(|e| parse_error(e, rest))?;
            match peek {
                Peek::Object => {}
                Peek::Array => {
                    return Err(ConversionError {
                        code: MALFORMED_DATA,
                        message: "The top level of a record must be a JSON object; this record contains an array."
                            .into(),
                    });
                }
                _ => {
                    return Err(ConversionError {
                        code: MALFORMED_DATA,
                        message: "The input JSON contained a primitive at the top level. The top level must be an object or array.".into(),
                    });
                }
            }
            let mut ctx =
                Ctx { hive: self.hive, dots: self.dots, formats: &self.timestamp_formats, scratch: &mut self.scratch };
            let row = self.rows;
            fill_object(&mut j, &mut self.root, row, &mut ctx, rest)?;
            self.rows += 1;
            offset += j.current_index();
            if self.single_object && !data[offset..].iter().all(u8::is_ascii_whitespace) {
                return Err(ConversionError::mismatch("A record must hold exactly one JSON object."));
            }
        }
    }

    /// The waiting rows as a batch; the converter is empty afterwards.
    pub fn flush(&mut self) -> Result<RecordBatch, arrow_schema::ArrowError> {
        let rows = std::mem::take(&mut self.rows);
        let arrays: Vec<ArrayRef> = self.root.fields.iter_mut().map(Col::finish).collect();
        let options = arrow_array::RecordBatchOptions::new().with_row_count(Some(rows));
        RecordBatch::try_new_with_options(Arc::clone(&self.schema), arrays, &options)
    }
}

struct Ctx<'a> {
    hive: bool,
    dots: bool,
    formats: &'a [TimestampFormat],
    scratch: &'a mut String,
}

/// Fills one row of `level` (whose fields all have length `row`) from the object at `j`.
fn fill_object(j: &mut Jiter, level: &mut Level, row: usize, ctx: &mut Ctx, data: &[u8]) -> Res<()> {
    let perr = |e: JiterError| parse_error(e, data);
    let dots = ctx.dots;
    let mut next = j.next_object_bytes().map_err(perr)?.map(|k| level.find_raw(k, dots, ctx.scratch));
    while let Some(idx) = next {
        match idx {
            Some(i) if level.fields[i].len() == row => fill_value(j, &mut level.fields[i], ctx, data)?,
            _ => j.next_skip().map_err(perr)?,
        }
        next = j.next_key_bytes().map_err(perr)?.map(|k| level.find_raw(k, dots, ctx.scratch));
    }
    for f in &mut level.fields {
        if f.len() == row {
            f.push_null();
        }
    }
    Ok(())
}

fn json_kind(peek: Peek) -> &'static str {
    match peek {
        Peek::Object => "a JSON object",
        Peek::Array => "a JSON array",
        Peek::String => "a string",
        Peek::True | Peek::False => "a boolean",
        _ => "a number",
    }
}

/// Appends the value at `j` to `col` (one element).
fn fill_value(j: &mut Jiter, col: &mut Col, ctx: &mut Ctx, data: &[u8]) -> Res<()> {
    let perr = |e: JiterError| parse_error(e, data);
    let peek = j.peek().map_err(perr)?;
    if peek == Peek::Null {
        j.known_null().map_err(perr)?;
        col.push_null();
        return Ok(());
    }
    let Col { name, hive, valid, data: builder } = col;
    let (name, hive) = (name.as_str(), &*hive);
    let type_error =
        |peek: Peek| ConversionError::mismatch(format!("Column '{name}' ({hive}) cannot hold {}.", json_kind(peek)));
    match builder {
        Data::Str { offsets, bytes, limit } => {
            let start = bytes.len();
            match peek {
                Peek::String => bytes.extend_from_slice(j.known_str().map_err(perr)?.as_bytes()),
                Peek::True | Peek::False => {
                    bytes.extend_from_slice(if j.known_bool(peek).map_err(perr)? { b"true" } else { b"false" })
                }
                Peek::Object | Peek::Array => {
                    if ctx.hive {
                        return Err(type_error(peek));
                    }
                    let from = j.current_index();
                    j.known_skip(peek).map_err(perr)?;
                    let text = j.slice_to_current(from);
                    bytes.extend_from_slice(trim_ascii(text));
                }
                _ => bytes.extend_from_slice(j.known_number_bytes(peek).map_err(perr)?),
            }
            if let Some((n, pad)) = *limit {
                fit_chars(bytes, start, n, pad);
            }
            offsets.push(bytes.len() as i32);
            if bytes.len() > i32::MAX as usize {
                return Err(ConversionError::mismatch("The strings of one object exceed 2 GiB."));
            }
        }
        Data::Bool(b) => {
            let v = match peek {
                Peek::True | Peek::False => j.known_bool(peek).map_err(perr)?,
                Peek::String => j.known_str().map_err(perr)?.eq_ignore_ascii_case("true"),
                _ => return Err(type_error(peek)),
            };
            b.append(v);
        }
        Data::I8(v) => v.push(int_value(j, peek, (name, hive), ctx, i8::MIN as i64, i8::MAX as i64, data)? as i8),
        Data::I16(v) => v.push(int_value(j, peek, (name, hive), ctx, i16::MIN as i64, i16::MAX as i64, data)? as i16),
        Data::I32(v) => v.push(int_value(j, peek, (name, hive), ctx, i32::MIN as i64, i32::MAX as i64, data)? as i32),
        Data::I64(v) => v.push(int_value(j, peek, (name, hive), ctx, i64::MIN, i64::MAX, data)?),
        Data::F32(v) => v.push(float_value(j, peek, (name, hive), ctx, data)? as f32),
        Data::F64(v) => v.push(float_value(j, peek, (name, hive), ctx, data)?),
        Data::Decimal { values, precision, scale } => {
            let text = number_text(j, peek, (name, hive), ctx, data)?;
            match parse_decimal(text.trim(), *precision, *scale) {
                Some(Some(v)) => values.push(v),
                Some(None) => {
                    // Does not fit the precision: null, as Hive's enforcePrecisionScale gives.
                    values.push(0);
                    valid.append(false);
                    return Ok(());
                }
                None => return Err(ConversionError::mismatch(format!("For input string: \"{text}\""))),
            }
        }
        Data::Date(v) => {
            if peek != Peek::String {
                return Err(type_error(peek));
            }
            let s = j.known_str().map_err(perr)?;
            let d = parse_date(s).ok_or_else(|| {
                ConversionError::mismatch(format!("Column '{name}' (date): cannot parse \"{s}\" as yyyy-mm-dd."))
            })?;
            v.push(d);
        }
        Data::Timestamp(v) => {
            let micros = match peek {
                Peek::String => {
                    // The raw text between the quotes: timestamps rarely hold escapes, and the
                    // common layouts parse without decoding or UTF-8 validation.
                    let raw = j.known_bytes().map_err(perr)?;
                    let fast =
                        if raw.contains(&b'\\') || ctx.hive { None } else { fast_timestamp(raw, raw.ends_with(b"Z")) };
                    match fast {
                        Some(t) => t,
                        None => {
                            let text = decode_json_string(raw).ok_or_else(|| {
                                ConversionError::mismatch(format!("Column '{name}' (timestamp): not a string."))
                            })?;
                            timestamp_value(&text, false, ctx, name)?
                        }
                    }
                }
                Peek::True | Peek::False | Peek::Object | Peek::Array => return Err(type_error(peek)),
                _ => {
                    let s = std::str::from_utf8(j.known_number_bytes(peek).map_err(perr)?).unwrap_or_default();
                    timestamp_value(s, true, ctx, name)?
                }
            };
            v.push(micros);
        }
        Data::Binary { offsets, bytes } => {
            if peek != Peek::String {
                return Err(type_error(peek));
            }
            let s = j.known_str().map_err(perr)?;
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(s)
                .map_err(|e| ConversionError::mismatch(format!("Column '{name}' (binary): not base64: {e}.")))?;
            bytes.extend_from_slice(&decoded);
            offsets.push(bytes.len() as i32);
        }
        Data::List { offsets, item } => {
            if peek != Peek::Array {
                return Err(type_error(peek));
            }
            let mut next = j.known_array().map_err(perr)?;
            while next.is_some() {
                fill_value(j, item, ctx, data)?;
                next = j.array_step().map_err(perr)?;
            }
            offsets.push(item.len() as i32);
        }
        Data::Map { offsets, key, value } => {
            if peek != Peek::Object {
                return Err(type_error(peek));
            }
            let mut k = j.known_object().map_err(perr)?.map(|name| push_map_key(key, name, ctx));
            while let Some(pushed) = k {
                pushed?;
                fill_value(j, value, ctx, data)?;
                k = j.next_key().map_err(perr)?.map(|name| push_map_key(key, name, ctx));
            }
            offsets.push(key.len() as i32);
        }
        Data::Struct(level) => {
            if peek != Peek::Object {
                return Err(type_error(peek));
            }
            let row = valid.len();
            fill_object(j, level, row, ctx, data)?;
        }
    }
    valid.append(true);
    Ok(())
}

fn trim_ascii(b: &[u8]) -> &[u8] {
    b.trim_ascii()
}

/// varchar(n) keeps the first n characters; char(n) also pads with spaces to n.
fn fit_chars(bytes: &mut Vec<u8>, start: usize, n: usize, pad: bool) {
    let value = &bytes[start..];
    let mut count = 0;
    let mut cut = value.len();
    for (i, _) in std::str::from_utf8(value).unwrap_or_default().char_indices() {
        if count == n {
            cut = i;
            break;
        }
        count += 1;
    }
    bytes.truncate(start + cut);
    if pad && count < n {
        bytes.resize(bytes.len() + (n - count), b' ');
    }
}

/// The text of a number (or, with OpenX, a string) for a numeric column.
fn number_text(j: &mut Jiter, peek: Peek, (name, hive): (&str, &HiveType), ctx: &Ctx, data: &[u8]) -> Res<String> {
    let perr = |e: JiterError| parse_error(e, data);
    match peek {
        Peek::String if !ctx.hive => Ok(j.known_str().map_err(perr)?.to_string()),
        Peek::String => {
            let s = j.known_str().map_err(perr)?;
            Err(ConversionError::mismatch(format!("Column '{name}' ({hive}) cannot hold a string: \"{s}\".")))
        }
        p if p.is_num() => {
            Ok(std::str::from_utf8(j.known_number_bytes(peek).map_err(perr)?).unwrap_or_default().to_string())
        }
        p => Err(ConversionError::mismatch(format!("Column '{name}' ({hive}) cannot hold {}.", json_kind(p)))),
    }
}

fn int_value(
    j: &mut Jiter,
    peek: Peek,
    col: (&str, &HiveType),
    ctx: &Ctx,
    min: i64,
    max: i64,
    data: &[u8],
) -> Res<i64> {
    let perr = |e: JiterError| parse_error(e, data);
    // Fast path: a JSON integer, parsed from its bytes without a copy.
    if peek.is_num() {
        let b = j.known_number_bytes(peek).map_err(perr)?;
        return parse_int(b, min, max);
    }
    let text = number_text(j, peek, col, ctx, data)?;
    parse_int(text.as_bytes(), min, max)
}

/// `Long.parseLong` then a range check, with Java's messages.
fn parse_int(b: &[u8], min: i64, max: i64) -> Res<i64> {
    let text = || String::from_utf8_lossy(b).into_owned();
    let (neg, digits) = match b.first() {
        Some(b'-') => (true, &b[1..]),
        Some(b'+') => (false, &b[1..]),
        _ => (false, b),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(ConversionError::mismatch(format!("For input string: \"{}\"", text())));
    }
    let mut v: i128 = 0;
    for d in digits {
        v = v * 10 + i128::from(d - b'0');
        if v > i128::from(u64::MAX) {
            break;
        }
    }
    let v = if neg { -v } else { v };
    if v < i128::from(min) || v > i128::from(max) {
        return Err(ConversionError::mismatch(format!("Value out of range. Value:\"{}\" Radix:10", text())));
    }
    Ok(v as i64)
}

fn float_value(j: &mut Jiter, peek: Peek, col: (&str, &HiveType), ctx: &Ctx, data: &[u8]) -> Res<f64> {
    let perr = |e: JiterError| parse_error(e, data);
    if peek.is_num() {
        // One pass: jiter parses the number where it scans it.
        return j.known_float(peek).map_err(perr);
    }
    let text = number_text(j, peek, col, ctx, data)?;
    // Double.parseDouble: surrounding whitespace, NaN, Infinity and a trailing d/f are accepted.
    let t = text.trim();
    let t = t.strip_suffix(['d', 'D', 'f', 'F']).unwrap_or(t);
    match t {
        "NaN" => Ok(f64::NAN),
        "Infinity" | "+Infinity" => Ok(f64::INFINITY),
        "-Infinity" => Ok(f64::NEG_INFINITY),
        _ => t.parse::<f64>().map_err(|_| ConversionError::mismatch(format!("For input string: \"{text}\""))),
    }
}

/// Parses a decimal text exactly and rounds it half-up to `scale`. `None`: not a number;
/// `Some(None)`: more than `precision` digits after rounding.
fn parse_decimal(text: &str, precision: u8, scale: u8) -> Option<Option<i128>> {
    let b = text.as_bytes();
    let (neg, rest) = match b.first() {
        Some(b'-') => (true, &b[1..]),
        Some(b'+') => (false, &b[1..]),
        _ => (false, b),
    };
    let (mantissa, exp) = match rest.iter().position(|c| *c == b'e' || *c == b'E') {
        Some(i) => (&rest[..i], std::str::from_utf8(&rest[i + 1..]).ok()?.parse::<i32>().ok()?),
        None => (rest, 0),
    };
    let (int_part, frac_part) = match mantissa.iter().position(|c| *c == b'.') {
        Some(i) => (&mantissa[..i], &mantissa[i + 1..]),
        None => (mantissa, &mantissa[..0]),
    };
    if int_part.is_empty() && frac_part.is_empty() {
        return None;
    }
    if !int_part.iter().chain(frac_part).all(u8::is_ascii_digit) {
        return None;
    }
    // value = digits × 10^(exp − frac_len); we want round(value × 10^scale).
    let digits: Vec<u8> = int_part.iter().chain(frac_part).map(|d| d - b'0').collect();
    let shift = exp as i64 - frac_part.len() as i64 + i64::from(scale);
    let first_nonzero = digits.iter().position(|d| *d != 0);
    let Some(first) = first_nonzero else { return Some(Some(0)) };
    let significant = &digits[first..];
    let mut v: i128 = 0;
    let limit = 10i128.pow(u32::from(precision));
    if shift >= 0 {
        if significant.len() as i64 + shift > i64::from(precision) {
            return Some(None);
        }
        for d in significant {
            v = v * 10 + i128::from(*d);
        }
        v *= 10i128.pow(shift as u32);
    } else {
        let keep = significant.len() as i64 + shift;
        if keep > i64::from(precision) {
            return Some(None);
        }
        if keep < 0 {
            return Some(Some(0));
        }
        let keep = keep as usize;
        for d in &significant[..keep] {
            v = v * 10 + i128::from(*d);
        }
        if significant.get(keep).is_some_and(|d| *d >= 5) {
            v += 1;
        }
    }
    if v >= limit {
        return Some(None);
    }
    Some(Some(if neg { -v } else { v }))
}

/// `java.sql.Date.valueOf`: `yyyy-[m]m-[d]d`, as days since 1970-01-01.
fn parse_date(s: &str) -> Option<i32> {
    let mut parts = s.split('-');
    let y = parts.next()?;
    let m = parts.next()?;
    let d = parts.next()?;
    if parts.next().is_some() || y.len() != 4 || !(1..=2).contains(&m.len()) || !(1..=2).contains(&d.len()) {
        return None;
    }
    let date = NaiveDate::from_ymd_opt(y.parse().ok()?, m.parse().ok()?, d.parse().ok()?)?;
    Some((date - NaiveDate::from_ymd_opt(1970, 1, 1)?).num_days() as i32)
}

/// `java.sql.Timestamp.valueOf`: `yyyy-[m]m-[d]d hh:mm:ss[.f...]` (fraction up to 9 digits), as
/// epoch microseconds (UTC wall clock).
fn parse_timestamp_valueof(s: &str) -> Option<i64> {
    let s = s.trim();
    let (date, time) = s.split_once(' ')?;
    let days = parse_date(date)?;
    let (hms, frac) = match time.split_once('.') {
        Some((hms, f)) => (hms, Some(f)),
        None => (time, None),
    };
    let mut t = hms.split(':');
    let (h, m, sec) = (t.next()?, t.next()?, t.next()?);
    if t.next().is_some()
        || [h, m, sec].iter().any(|p| p.is_empty() || p.len() > 2 || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    let (h, m, sec): (i64, i64, i64) = (h.parse().ok()?, m.parse().ok()?, sec.parse().ok()?);
    if h > 23 || m > 59 || sec > 59 {
        return None;
    }
    let mut micros = 0i64;
    if let Some(f) = frac {
        if f.is_empty() || f.len() > 9 || !f.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let mut nanos: i64 = f.parse().ok()?;
        nanos *= 10i64.pow(9 - f.len() as u32);
        micros = nanos / 1000;
    }
    Some(i64::from(days) * 86_400_000_000 + (h * 3600 + m * 60 + sec) * 1_000_000 + micros)
}

/// The text of a JSON string from its raw bytes between the quotes.
fn decode_json_string(raw: &[u8]) -> Option<String> {
    if !raw.contains(&b'\\') {
        return std::str::from_utf8(raw).ok().map(str::to_string);
    }
    let mut quoted = Vec::with_capacity(raw.len() + 2);
    quoted.push(b'"');
    quoted.extend_from_slice(raw);
    quoted.push(b'"');
    serde_json::from_slice(&quoted).ok()
}

/// Days from 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The common layouts without allocating: `yyyy-MM-ddTHH:mm:ss[.f]Z` (`t_z`) or
/// `yyyy-MM-dd HH:mm:ss[.f]`, two-digit fields, a fraction of 1 to 9 digits. `None` sends the
/// value to the general parser.
fn fast_timestamp(b: &[u8], t_z: bool) -> Option<i64> {
    let digits = |r: std::ops::Range<usize>| -> Option<i64> {
        let mut v = 0i64;
        for &c in b.get(r)? {
            if !c.is_ascii_digit() {
                return None;
            }
            v = v * 10 + i64::from(c - b'0');
        }
        Some(v)
    };
    let body = if t_z { b.strip_suffix(b"Z")? } else { b };
    if body.len() < 19 || body[4] != b'-' || body[7] != b'-' || body[13] != b':' || body[16] != b':' {
        return None;
    }
    if body[10] != if t_z { b'T' } else { b' ' } {
        return None;
    }
    let (y, mo, d) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    let (h, mi, sec) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
    if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 || sec > 59 {
        return None;
    }
    let mut micros = 0;
    if body.len() > 19 {
        let frac = &body[20..];
        if body[19] != b'.' || frac.is_empty() || frac.len() > 9 {
            return None;
        }
        let nanos = digits(20..body.len())? * 10i64.pow(9 - frac.len() as u32);
        micros = nanos / 1000;
    }
    Some((days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec) * 1_000_000 + micros)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// OpenX's timestamp rules (see the module header); `numeric` when the JSON value was a number.
fn openx_timestamp(s: &str) -> Option<i64> {
    if let Some(t) = fast_timestamp(s.as_bytes(), s.ends_with('Z')) {
        return Some(t);
    }
    let s = s.trim();
    if s.contains(':') {
        // `yyyy-MM-ddTHH:mm:ss[.f]Z` is first rewritten to the `valueOf` form.
        let rewritten;
        let s = match s.strip_suffix('Z') {
            Some(body) if body.len() > 10 && body.as_bytes()[10] == b'T' => {
                rewritten = format!("{} {}", &body[..10], &body[11..]);
                rewritten.as_str()
            }
            _ => s,
        };
        return parse_timestamp_valueof(s);
    }
    if s.contains('.') {
        let secs: f64 = s.parse().ok()?;
        let micros = (secs * 1000.0).trunc() * 1000.0;
        return micros.is_finite().then_some(micros as i64);
    }
    let v: i64 = s.parse().ok()?;
    let digits = s.trim_start_matches('-').len();
    if digits == 13 { v.checked_mul(1000) } else { v.checked_mul(1_000_000) }
}

fn timestamp_value(s: &str, numeric: bool, ctx: &Ctx, column: &str) -> Res<i64> {
    let parsed = if ctx.hive { hive_timestamp(s, numeric, ctx.formats) } else { openx_timestamp(s) };
    parsed.ok_or_else(|| {
        ConversionError::mismatch(format!(
            "Column '{column}' (timestamp): cannot parse \"{s}\" as a timestamp{}.",
            if ctx.hive {
                ""
            } else {
                " (expected yyyy-MM-dd'T'HH:mm:ss[.S]'Z', yyyy-MM-dd HH:mm:ss[.S], or epoch seconds or milliseconds)"
            }
        ))
    })
}

fn hive_timestamp(s: &str, numeric: bool, formats: &[TimestampFormat]) -> Option<i64> {
    for f in formats {
        match f {
            TimestampFormat::Millis => {
                if let Ok(ms) = s.trim().parse::<i64>() {
                    return ms.checked_mul(1000);
                }
            }
            TimestampFormat::Pattern { chrono, zoned, has_time, .. } if !numeric || !chrono.is_empty() => {
                let parsed = if *zoned {
                    DateTime::parse_from_str(s, chrono).ok().map(|d| d.naive_utc())
                } else if *has_time {
                    NaiveDateTime::parse_from_str(s, chrono).ok()
                } else {
                    NaiveDate::parse_from_str(s, chrono).ok().map(|d| d.and_time(NaiveTime::MIN))
                };
                if let Some(t) = parsed {
                    return Some(t.and_utc().timestamp_micros());
                }
            }
            TimestampFormat::Pattern { .. } => {}
        }
    }
    if numeric { None } else { parse_timestamp_valueof(s) }
}

/// Translates a Joda-Time `DateTimeFormat` pattern into a chrono one. Returns (pattern, has an
/// offset, has a time of day).
fn joda_to_chrono(joda: &str) -> Result<(String, bool, bool), String> {
    let chars: Vec<char> = joda.chars().collect();
    let mut out = String::new();
    let (mut zoned, mut has_time) = (false, false);
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' {
            // Quoted literal; '' is a quote.
            i += 1;
            if chars.get(i) == Some(&'\'') {
                out.push('\'');
                i += 1;
                continue;
            }
            while i < chars.len() {
                if chars[i] == '\'' {
                    if chars.get(i + 1) == Some(&'\'') {
                        out.push('\'');
                        i += 2;
                        continue;
                    }
                    break;
                }
                if chars[i] == '%' {
                    out.push_str("%%");
                } else {
                    out.push(chars[i]);
                }
                i += 1;
            }
            i += 1;
            continue;
        }
        if !c.is_ascii_alphabetic() {
            if c == '%' {
                out.push_str("%%");
            } else {
                out.push(c);
            }
            i += 1;
            continue;
        }
        let mut n = 1;
        while chars.get(i + n) == Some(&c) {
            n += 1;
        }
        let spec = match (c, n) {
            ('y' | 'Y' | 'u', 2) => "%y",
            ('y' | 'Y' | 'u', _) => "%Y",
            ('M', 1 | 2) => "%m",
            ('M', 3) => "%b",
            ('M', _) => "%B",
            ('d', _) => "%d",
            ('D', _) => "%j",
            ('H', _) => {
                has_time = true;
                "%H"
            }
            ('h', _) => {
                has_time = true;
                "%I"
            }
            ('m', _) => "%M",
            ('s', _) => "%S",
            ('S', _) => {
                // Fraction: chrono's %.f takes the dot with it.
                if out.ends_with('.') {
                    out.pop();
                    "%.f"
                } else {
                    match n {
                        3 => "%3f",
                        6 => "%6f",
                        9 => "%9f",
                        _ => return Err(format!("'{joda}': a fraction of {n} digits must follow a '.'")),
                    }
                }
            }
            ('a', _) => "%p",
            ('E', 1..=3) => "%a",
            ('E', _) => "%A",
            ('Z', 1) => {
                zoned = true;
                "%z"
            }
            ('Z', 2) => {
                zoned = true;
                "%:z"
            }
            _ => return Err(format!("'{joda}': the pattern letter '{c}' is not supported")),
        };
        out.push_str(spec);
        i += n;
    }
    Ok((out, zoned, has_time))
}

fn push_map_key(key: &mut Col, name: &str, ctx: &mut Ctx) -> Res<()> {
    // Keys are JSON strings; convert them to the key type by parsing them as that type's JSON.
    let text;
    let json: &[u8] = match key.hive {
        HiveType::String
        | HiveType::Char(_)
        | HiveType::Varchar(_)
        | HiveType::Date
        | HiveType::Timestamp
        | HiveType::Binary => {
            text = serde_json::to_string(name).unwrap_or_default();
            text.as_bytes()
        }
        _ => name.as_bytes(),
    };
    let mut j = Jiter::new(json);
    let hive = std::mem::replace(&mut ctx.hive, false);
    let result = fill_value(&mut j, key, ctx, json);
    ctx.hive = hive;
    result.map_err(|_| ConversionError::mismatch(format!("Map key \"{name}\" is not a {}.", key.hive)))?;
    if !key.valid.is_empty() && !key.valid.get_bit(key.valid.len() - 1) {
        return Err(ConversionError::mismatch(format!("Map key \"{name}\" is not a {}.", key.hive)));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
