//! Hive column types (the types of a Glue / Athena table) and their Arrow form.
//!
//! A table schema is a list of [`Column`]s; each has a [`HiveType`] parsed from Hive's type syntax
//! (`int`, `decimal(10,2)`, `array<struct<a:string,b:bigint>>`, ...). [`HiveType::to_arrow`] gives
//! the Arrow type the converter builds and the Parquet / ORC writers write.
//!
//! Invariants: names are kept as written (Hive lower-cases column names; the converter matches
//! JSON keys against the lower-cased name); `Display` prints the canonical Hive spelling, which
//! [`HiveType::parse`] reads back to the same value.

use arrow_schema::{DataType, Field, Fields, Schema, TimeUnit};
use std::fmt;
use std::sync::Arc;

/// Largest precision of a Hive decimal (and of an Arrow Decimal128).
pub const MAX_DECIMAL_PRECISION: u8 = 38;

/// A Hive / Glue column type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HiveType {
    Boolean,
    TinyInt,
    SmallInt,
    Int,
    BigInt,
    Float,
    Double,
    /// `decimal(precision, scale)`; bare `decimal` is `decimal(10,0)`.
    Decimal {
        precision: u8,
        scale: u8,
    },
    String,
    /// `char(n)`: fixed length, padded with spaces.
    Char(u32),
    /// `varchar(n)`: at most n characters.
    Varchar(u32),
    Date,
    Timestamp,
    Binary,
    Array(Box<HiveType>),
    Map(Box<HiveType>, Box<HiveType>),
    Struct(Vec<Column>),
}

/// A named column (or struct field).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub data_type: HiveType,
}

impl Column {
    pub fn new(name: impl Into<String>, data_type: HiveType) -> Self {
        Self { name: name.into(), data_type }
    }
}

/// A type string Hive would not accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid column type '{text}': {reason}")]
pub struct TypeError {
    pub text: String,
    pub reason: String,
}

/// The list child's name in Arrow and Parquet (the Parquet LIST convention).
pub const LIST_ITEM: &str = "element";
/// The map entries' names in Arrow and Parquet (the Parquet MAP convention).
pub const MAP_ENTRIES: &str = "key_value";
pub const MAP_KEY: &str = "key";
pub const MAP_VALUE: &str = "value";

impl HiveType {
    /// Parses Hive type syntax, case-insensitively, with or without spaces
    /// (`array< struct<a:int, `b`:string> >`).
    pub fn parse(text: &str) -> Result<HiveType, TypeError> {
        let mut p = TypeParser { t: TypeTokens::new(text), text };
        let t = p.parse_type()?;
        if !p.t.at_end() {
            return Err(p.err("unexpected text after the type"));
        }
        Ok(t)
    }

    /// The Arrow type of this column's values. Timestamps are microseconds without a time zone
    /// (Hive timestamps carry no zone; Parquet INT64 TIMESTAMP(MICROS, isAdjustedToUTC=false));
    /// char/varchar are strings.
    pub fn to_arrow(&self) -> DataType {
        match self {
            HiveType::Boolean => DataType::Boolean,
            HiveType::TinyInt => DataType::Int8,
            HiveType::SmallInt => DataType::Int16,
            HiveType::Int => DataType::Int32,
            HiveType::BigInt => DataType::Int64,
            HiveType::Float => DataType::Float32,
            HiveType::Double => DataType::Float64,
            HiveType::Decimal { precision, scale } => DataType::Decimal128(*precision, *scale as i8),
            HiveType::String | HiveType::Char(_) | HiveType::Varchar(_) => DataType::Utf8,
            HiveType::Date => DataType::Date32,
            HiveType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
            HiveType::Binary => DataType::Binary,
            HiveType::Array(item) => DataType::List(Arc::new(Field::new(LIST_ITEM, item.to_arrow(), true))),
            HiveType::Map(k, v) => DataType::Map(
                Arc::new(Field::new(
                    MAP_ENTRIES,
                    DataType::Struct(Fields::from(vec![
                        Field::new(MAP_KEY, k.to_arrow(), false),
                        Field::new(MAP_VALUE, v.to_arrow(), true),
                    ])),
                    false,
                )),
                false,
            ),
            HiveType::Struct(fields) => DataType::Struct(struct_fields(fields)),
        }
    }
}

fn struct_fields(columns: &[Column]) -> Fields {
    columns.iter().map(|c| Field::new(&c.name, c.data_type.to_arrow(), true)).collect()
}

/// The Arrow schema of a table's data columns (every column nullable).
pub fn arrow_schema(columns: &[Column]) -> Schema {
    Schema::new(struct_fields(columns))
}

impl fmt::Display for HiveType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HiveType::Boolean => f.write_str("boolean"),
            HiveType::TinyInt => f.write_str("tinyint"),
            HiveType::SmallInt => f.write_str("smallint"),
            HiveType::Int => f.write_str("int"),
            HiveType::BigInt => f.write_str("bigint"),
            HiveType::Float => f.write_str("float"),
            HiveType::Double => f.write_str("double"),
            HiveType::Decimal { precision, scale } => write!(f, "decimal({precision},{scale})"),
            HiveType::String => f.write_str("string"),
            HiveType::Char(n) => write!(f, "char({n})"),
            HiveType::Varchar(n) => write!(f, "varchar({n})"),
            HiveType::Date => f.write_str("date"),
            HiveType::Timestamp => f.write_str("timestamp"),
            HiveType::Binary => f.write_str("binary"),
            HiveType::Array(t) => write!(f, "array<{t}>"),
            HiveType::Map(k, v) => write!(f, "map<{k},{v}>"),
            HiveType::Struct(cols) => {
                f.write_str("struct<")?;
                for (i, c) in cols.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{}:{}", c.name, c.data_type)?;
                }
                f.write_str(">")
            }
        }
    }
}

/// The tokens of a type text, shared by the type parsers (Hive here, Iceberg in the destination
/// crate): white space is skipped before every token.
#[derive(Debug, Clone)]
pub struct TypeTokens<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> TypeTokens<'a> {
    pub fn new(text: &'a str) -> Self {
        Self { s: text.as_bytes(), i: 0 }
    }

    /// Byte offset of the next token (for messages: `position() + 1` is the character).
    pub fn position(&self) -> usize {
        self.i
    }

    /// Goes back to a [`position`](Self::position) (a one-word lookahead).
    pub fn rewind(&mut self, position: usize) {
        self.i = position;
    }

    /// Whether only white space is left.
    pub fn at_end(&mut self) -> bool {
        self.skip_ws();
        self.i == self.s.len()
    }

    fn skip_ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    /// Consumes `c` if it comes next.
    pub fn eat(&mut self, c: u8) -> bool {
        self.skip_ws();
        if self.s.get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    /// A bare word (letters, digits, `_`), as written.
    pub fn word(&mut self) -> String {
        self.skip_ws();
        let start = self.i;
        while self.i < self.s.len() && (self.s[self.i].is_ascii_alphanumeric() || self.s[self.i] == b'_') {
            self.i += 1;
        }
        String::from_utf8_lossy(&self.s[start..self.i]).into_owned()
    }

    /// A decimal number.
    pub fn number(&mut self) -> Option<u64> {
        self.skip_ws();
        let start = self.i;
        while self.i < self.s.len() && self.s[self.i].is_ascii_digit() {
            self.i += 1;
        }
        std::str::from_utf8(&self.s[start..self.i]).ok().and_then(|d| d.parse().ok())
    }

    /// A struct field name: a backticked name (`` ` `` doubled inside), or the text up to the
    /// next `:` `,` `<` `>`, trimmed. `Err` says what is wrong.
    pub fn field_name(&mut self) -> Result<String, &'static str> {
        self.skip_ws();
        if self.s.get(self.i) == Some(&b'`') {
            self.i += 1;
            let mut name = Vec::new();
            loop {
                match self.s.get(self.i) {
                    None => return Err("unterminated `name`"),
                    Some(b'`') if self.s.get(self.i + 1) == Some(&b'`') => {
                        name.push(b'`');
                        self.i += 2;
                    }
                    Some(b'`') => {
                        self.i += 1;
                        break;
                    }
                    Some(&c) => {
                        name.push(c);
                        self.i += 1;
                    }
                }
            }
            return Ok(String::from_utf8_lossy(&name).into_owned());
        }
        let start = self.i;
        while self.i < self.s.len() && !matches!(self.s[self.i], b':' | b',' | b'<' | b'>') {
            self.i += 1;
        }
        let name = String::from_utf8_lossy(&self.s[start..self.i]).trim().to_string();
        if name.is_empty() {
            return Err("expected a field name");
        }
        Ok(name)
    }
}

struct TypeParser<'a> {
    t: TypeTokens<'a>,
    text: &'a str,
}

impl TypeParser<'_> {
    fn err(&self, reason: &str) -> TypeError {
        TypeError { text: self.text.to_string(), reason: format!("{reason} (at character {})", self.t.position() + 1) }
    }

    fn eat(&mut self, c: u8) -> bool {
        self.t.eat(c)
    }

    fn expect(&mut self, c: u8) -> Result<(), TypeError> {
        if self.eat(c) { Ok(()) } else { Err(self.err(&format!("expected '{}'", c as char))) }
    }

    fn word(&mut self) -> String {
        self.t.word()
    }

    fn field_name(&mut self) -> Result<String, TypeError> {
        self.t.field_name().map_err(|e| self.err(e))
    }

    fn number(&mut self) -> Result<u32, TypeError> {
        self.t.number().and_then(|n| u32::try_from(n).ok()).ok_or_else(|| self.err("expected a number"))
    }

    fn parse_type(&mut self) -> Result<HiveType, TypeError> {
        let word = self.word().to_ascii_lowercase();
        Ok(match word.as_str() {
            "boolean" => HiveType::Boolean,
            "tinyint" => HiveType::TinyInt,
            "smallint" => HiveType::SmallInt,
            "int" | "integer" => HiveType::Int,
            "bigint" => HiveType::BigInt,
            "float" | "real" => HiveType::Float,
            "double" => {
                // `double precision` is an alias.
                let save = self.t.position();
                if !self.word().eq_ignore_ascii_case("precision") {
                    self.t.rewind(save);
                }
                HiveType::Double
            }
            "decimal" | "numeric" => {
                let (mut precision, mut scale) = (10, 0);
                if self.eat(b'(') {
                    precision = self.number()?;
                    if self.eat(b',') {
                        scale = self.number()?;
                    }
                    self.expect(b')')?;
                }
                if precision == 0 || precision > u32::from(MAX_DECIMAL_PRECISION) {
                    return Err(self.err("decimal precision must be between 1 and 38"));
                }
                if scale > precision {
                    return Err(self.err("decimal scale must not exceed its precision"));
                }
                HiveType::Decimal { precision: precision as u8, scale: scale as u8 }
            }
            "string" => HiveType::String,
            "char" | "varchar" => {
                self.expect(b'(')?;
                let n = self.number()?;
                self.expect(b')')?;
                let max = if word == "char" { 255 } else { 65535 };
                if n == 0 || n > max {
                    return Err(self.err(&format!("{word} length must be between 1 and {max}")));
                }
                if word == "char" { HiveType::Char(n) } else { HiveType::Varchar(n) }
            }
            "date" => HiveType::Date,
            "timestamp" => HiveType::Timestamp,
            "binary" => HiveType::Binary,
            "array" => {
                self.expect(b'<')?;
                let item = self.parse_type()?;
                self.expect(b'>')?;
                HiveType::Array(Box::new(item))
            }
            "map" => {
                self.expect(b'<')?;
                let k = self.parse_type()?;
                if !k.is_primitive() {
                    return Err(self.err("map keys must be a primitive type"));
                }
                self.expect(b',')?;
                let v = self.parse_type()?;
                self.expect(b'>')?;
                HiveType::Map(Box::new(k), Box::new(v))
            }
            "struct" => {
                self.expect(b'<')?;
                let mut fields = Vec::new();
                if !self.eat(b'>') {
                    loop {
                        let name = self.field_name()?;
                        self.expect(b':')?;
                        let t = self.parse_type()?;
                        fields.push(Column::new(name, t));
                        if self.eat(b'>') {
                            break;
                        }
                        self.expect(b',')?;
                    }
                }
                HiveType::Struct(fields)
            }
            "" => return Err(self.err("expected a type")),
            "uniontype" => return Err(self.err("uniontype is not supported")),
            other => return Err(self.err(&format!("unknown type '{other}'"))),
        })
    }
}

impl HiveType {
    /// Whether this is a primitive (not array, map or struct).
    pub fn is_primitive(&self) -> bool {
        !matches!(self, HiveType::Array(_) | HiveType::Map(..) | HiveType::Struct(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_primitives_and_aliases() {
        assert_eq!(HiveType::parse("INT").unwrap(), HiveType::Int);
        assert_eq!(HiveType::parse(" integer ").unwrap(), HiveType::Int);
        assert_eq!(HiveType::parse("double precision").unwrap(), HiveType::Double);
        assert_eq!(HiveType::parse("decimal").unwrap(), HiveType::Decimal { precision: 10, scale: 0 });
        assert_eq!(HiveType::parse("DECIMAL( 12 , 3 )").unwrap(), HiveType::Decimal { precision: 12, scale: 3 });
        assert_eq!(HiveType::parse("varchar(20)").unwrap(), HiveType::Varchar(20));
        assert_eq!(HiveType::parse("char(3)").unwrap(), HiveType::Char(3));
    }

    #[test]
    fn parses_nested_types_and_round_trips() {
        let t = HiveType::parse("array< struct<a:int, `b c`:map<string,array<bigint>>> >").unwrap();
        let HiveType::Array(inner) = &t else { panic!() };
        let HiveType::Struct(fields) = inner.as_ref() else { panic!() };
        assert_eq!(fields[1].name, "b c");
        assert_eq!(HiveType::parse(&t.to_string()).unwrap(), t);
    }

    #[test]
    fn refuses_bad_types() {
        for bad in [
            "",
            "int8",
            "decimal(39,0)",
            "decimal(5,6)",
            "array<int",
            "map<array<int>,int>",
            "char(0)",
            "uniontype<int>",
            "int x",
        ] {
            assert!(HiveType::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn arrow_types() {
        assert_eq!(HiveType::parse("timestamp").unwrap().to_arrow(), DataType::Timestamp(TimeUnit::Microsecond, None));
        assert_eq!(HiveType::parse("decimal(5,2)").unwrap().to_arrow(), DataType::Decimal128(5, 2));
        let DataType::Map(entries, false) = HiveType::parse("map<string,int>").unwrap().to_arrow() else { panic!() };
        assert_eq!(entries.name(), MAP_ENTRIES);
    }
}
