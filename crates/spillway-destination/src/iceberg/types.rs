//! Iceberg type text (the `type` of a [`FieldSpec`]) and the mapping of Iceberg types to the Hive
//! types of spillway's JSON converter.
//!
//! Parsing follows the Iceberg type names as S3 Tables and PyIceberg print them
//! (`decimal(10,2)`, `fixed[16]`, `struct<a:int,b:string>`, `list<long>`, `map<string,double>`),
//! case-insensitively and with spaces allowed. Nested fields, list elements and map values are
//! optional (the converter cannot promise a value for them); map keys must be primitive (they come
//! from JSON object keys).

use super::{FieldSpec, IcebergError};
use iceberg::spec::{ListType, MapType, NestedField, NestedFieldRef, PrimitiveType, Schema, StructType, Type};
use spillway_format::schema::{Column, HiveType, MAX_DECIMAL_PRECISION, TypeTokens};
use std::collections::HashSet;
use std::sync::Arc;

/// Parses the type text of a [`FieldSpec`] (exposed for validation at create time). Field ids
/// inside the returned type are placeholders (0); [`build_schema`] assigns the real ones.
pub fn parse_field_type(text: &str) -> Result<Type, IcebergError> {
    let mut p = Parser { t: TypeTokens::new(text), text, next_id: 0 };
    let t = p.parse_type()?;
    if !p.t.at_end() {
        return Err(p.err("unexpected text after the type"));
    }
    Ok(t)
}

/// The canonical text of an Iceberg type, which [`parse_field_type`] reads back (`decimal(10,2)`,
/// `fixed[16]`, `struct<a:int,b:list<string>>`, `map<string,long>`; names with a character the
/// grammar uses are backticked). Nested fields print without their ids and optionality.
pub fn field_type_text(t: &Type) -> String {
    match t {
        Type::Primitive(p) => match p {
            PrimitiveType::Decimal { precision, scale } => format!("decimal({precision},{scale})"),
            PrimitiveType::Fixed(n) => format!("fixed[{n}]"),
            other => other.to_string(),
        },
        Type::Struct(s) => {
            let fields: Vec<String> = s
                .fields()
                .iter()
                .map(|f| format!("{}:{}", field_name_text(&f.name), field_type_text(&f.field_type)))
                .collect();
            format!("struct<{}>", fields.join(","))
        }
        Type::List(l) => format!("list<{}>", field_type_text(&l.element_field.field_type)),
        Type::Map(m) => {
            format!("map<{},{}>", field_type_text(&m.key_field.field_type), field_type_text(&m.value_field.field_type))
        }
    }
}

/// A struct field's name as type text writes it: backticked when it has a character the grammar
/// uses (or surrounding spaces).
pub(crate) fn field_name_text(name: &str) -> String {
    let plain = !name.is_empty() && name == name.trim() && !name.contains([':', ',', '<', '>', '`']);
    if plain { name.to_string() } else { format!("`{}`", name.replace('`', "``")) }
}

/// The schema of a new table: `fields` in order with ids 1..n, nested ids after them (Iceberg
/// reassigns ids at creation in the same order: one level, then the next).
pub(crate) fn build_schema(fields: &[FieldSpec]) -> Result<Schema, IcebergError> {
    if fields.is_empty() {
        return Err(IcebergError::InvalidSchema("a table needs at least one field".into()));
    }
    let mut seen = HashSet::new();
    let mut parsed = Vec::with_capacity(fields.len());
    for f in fields {
        let name = f.name.trim();
        check_name(name).map_err(|reason| IcebergError::InvalidSchema(format!("field {:?}: {reason}", f.name)))?;
        if !seen.insert(name.to_lowercase()) {
            return Err(IcebergError::InvalidSchema(format!("field {name:?} is defined twice")));
        }
        let t = parse_field_type(&f.field_type)
            .map_err(|e| IcebergError::InvalidSchema(format!("field {name:?}: {}", e.detail())))?;
        parsed.push((name.to_string(), t, f.required));
    }
    let mut next_id = parsed.len() as i32;
    let top: Vec<NestedFieldRef> = parsed
        .into_iter()
        .enumerate()
        .map(|(i, (name, t, required))| {
            let t = assign_ids(t, &mut next_id);
            Arc::new(NestedField::new(i as i32 + 1, name, t, required))
        })
        .collect();
    Schema::builder()
        .with_schema_id(0)
        .with_fields(top)
        .build()
        .map_err(|e| IcebergError::InvalidSchema(e.message().to_string()))
}

/// Gives the nested fields of `t` fresh ids after `next_id`, one level before the next.
fn assign_ids(t: Type, next_id: &mut i32) -> Type {
    let mut take = || {
        *next_id += 1;
        *next_id
    };
    match t {
        Type::Primitive(_) => t,
        Type::Struct(s) => {
            let renumbered: Vec<(i32, NestedFieldRef)> = s.fields().iter().map(|f| (take(), f.clone())).collect();
            let fields = renumbered
                .into_iter()
                .map(|(id, f)| {
                    let inner = assign_ids((*f.field_type).clone(), next_id);
                    Arc::new(NestedField::new(id, &f.name, inner, f.required))
                })
                .collect();
            Type::Struct(StructType::new(fields))
        }
        Type::List(l) => {
            let id = take();
            let inner = assign_ids((*l.element_field.field_type).clone(), next_id);
            Type::List(ListType::new(Arc::new(NestedField::list_element(id, inner, l.element_field.required))))
        }
        Type::Map(m) => {
            let (kid, vid) = (take(), take());
            let k = assign_ids((*m.key_field.field_type).clone(), next_id);
            let v = assign_ids((*m.value_field.field_type).clone(), next_id);
            Type::Map(MapType::new(
                Arc::new(NestedField::map_key_element(kid, k)),
                Arc::new(NestedField::map_value_element(vid, v, m.value_field.required)),
            ))
        }
    }
}

fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the name is empty".into());
    }
    if name.len() > 255 {
        return Err("the name is longer than 255 bytes".into());
    }
    if name.contains('.') {
        // Iceberg addresses nested fields with dotted names; a dot inside a name is ambiguous.
        return Err("the name contains '.'".into());
    }
    if name.chars().any(char::is_control) {
        return Err("the name contains a control character".into());
    }
    Ok(())
}

/// The Hive type the JSON converter builds for an Iceberg type (see the module documentation of
/// `super` for the table). `field` names the column in errors.
pub(crate) fn hive_type(t: &Type, field: &str) -> Result<HiveType, IcebergError> {
    Ok(match t {
        Type::Primitive(p) => match p {
            PrimitiveType::Boolean => HiveType::Boolean,
            PrimitiveType::Int => HiveType::Int,
            PrimitiveType::Long => HiveType::BigInt,
            PrimitiveType::Float => HiveType::Float,
            PrimitiveType::Double => HiveType::Double,
            PrimitiveType::Decimal { precision, scale } => {
                if *precision == 0 || *precision > u32::from(MAX_DECIMAL_PRECISION) || scale > precision {
                    return Err(IcebergError::InvalidSchema(format!(
                        "column {field:?}: decimal({precision},{scale}) is beyond decimal(38,s)"
                    )));
                }
                HiveType::Decimal { precision: *precision as u8, scale: *scale as u8 }
            }
            PrimitiveType::Date => HiveType::Date,
            // Written as text ("14:30:00", "14:30:00.123456") and parsed when appending.
            PrimitiveType::Time => HiveType::String,
            PrimitiveType::Timestamp | PrimitiveType::Timestamptz => HiveType::Timestamp,
            PrimitiveType::TimestampNs | PrimitiveType::TimestamptzNs => {
                return Err(IcebergError::InvalidSchema(format!(
                    "column {field:?}: nanosecond timestamps (format v3) are not supported"
                )));
            }
            PrimitiveType::String => HiveType::String,
            // Written as text in any form the uuid crate reads (hyphenated, simple, urn, braced).
            PrimitiveType::Uuid => HiveType::String,
            PrimitiveType::Fixed(_) | PrimitiveType::Binary => HiveType::Binary,
        },
        Type::Struct(s) => HiveType::Struct(columns_of(s.fields(), Some(field))?),
        Type::List(l) => HiveType::Array(Box::new(hive_type(&l.element_field.field_type, field)?)),
        Type::Map(m) => HiveType::Map(
            Box::new(hive_type(&m.key_field.field_type, field)?),
            Box::new(hive_type(&m.value_field.field_type, field)?),
        ),
    })
}

/// The converter columns of a struct's fields (the table's top level when `parent` is None).
pub(crate) fn columns_of(fields: &[NestedFieldRef], parent: Option<&str>) -> Result<Vec<Column>, IcebergError> {
    fields
        .iter()
        .map(|f| {
            let path = match parent {
                Some(p) => format!("{p}.{}", f.name),
                None => f.name.clone(),
            };
            Ok(Column::new(&f.name, hive_type(&f.field_type, &path)?))
        })
        .collect()
}

struct Parser<'a> {
    t: TypeTokens<'a>,
    text: &'a str,
    next_id: i32,
}

impl Parser<'_> {
    fn err(&self, reason: &str) -> IcebergError {
        IcebergError::InvalidSchema(format!(
            "invalid type {:?}: {reason} (at character {})",
            self.text,
            self.t.position() + 1
        ))
    }

    fn eat(&mut self, c: u8) -> bool {
        self.t.eat(c)
    }

    fn expect(&mut self, c: u8) -> Result<(), IcebergError> {
        if self.eat(c) { Ok(()) } else { Err(self.err(&format!("expected '{}'", c as char))) }
    }

    fn word(&mut self) -> String {
        self.t.word().to_ascii_lowercase()
    }

    fn number(&mut self) -> Result<u64, IcebergError> {
        self.t.number().ok_or_else(|| self.err("expected a number"))
    }

    fn field_name(&mut self) -> Result<String, IcebergError> {
        self.t.field_name().map_err(|e| self.err(e))
    }

    fn placeholder(&mut self) -> i32 {
        self.next_id += 1;
        self.next_id
    }

    fn parse_type(&mut self) -> Result<Type, IcebergError> {
        let word = self.word();
        let p = |t: PrimitiveType| Ok(Type::Primitive(t));
        match word.as_str() {
            "boolean" => p(PrimitiveType::Boolean),
            "int" => p(PrimitiveType::Int),
            "long" => p(PrimitiveType::Long),
            "float" => p(PrimitiveType::Float),
            "double" => p(PrimitiveType::Double),
            "date" => p(PrimitiveType::Date),
            "time" => p(PrimitiveType::Time),
            "timestamp" => p(PrimitiveType::Timestamp),
            "timestamptz" => p(PrimitiveType::Timestamptz),
            "string" => p(PrimitiveType::String),
            "uuid" => p(PrimitiveType::Uuid),
            "binary" => p(PrimitiveType::Binary),
            "decimal" => {
                self.expect(b'(')?;
                let precision = self.number()?;
                self.expect(b',')?;
                let scale = self.number()?;
                self.expect(b')')?;
                if precision == 0 || precision > u64::from(MAX_DECIMAL_PRECISION) {
                    return Err(self.err("decimal precision must be between 1 and 38"));
                }
                if scale > precision {
                    return Err(self.err("decimal scale must not exceed its precision"));
                }
                p(PrimitiveType::Decimal { precision: precision as u32, scale: scale as u32 })
            }
            "fixed" => {
                let close = if self.eat(b'[') {
                    b']'
                } else if self.eat(b'(') {
                    b')'
                } else {
                    return Err(self.err("expected fixed[length]"));
                };
                let n = self.number()?;
                self.expect(close)?;
                if n == 0 || n > i32::MAX as u64 {
                    return Err(self.err("fixed length must be between 1 and 2147483647"));
                }
                p(PrimitiveType::Fixed(n))
            }
            "list" => {
                self.expect(b'<')?;
                let item = self.parse_type()?;
                self.expect(b'>')?;
                let id = self.placeholder();
                Ok(Type::List(ListType::new(Arc::new(NestedField::list_element(id, item, false)))))
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
                let (kid, vid) = (self.placeholder(), self.placeholder());
                Ok(Type::Map(MapType::new(
                    Arc::new(NestedField::map_key_element(kid, k)),
                    Arc::new(NestedField::map_value_element(vid, v, false)),
                )))
            }
            "struct" => {
                self.expect(b'<')?;
                let mut fields: Vec<NestedFieldRef> = Vec::new();
                let mut seen = HashSet::new();
                loop {
                    let name = self.field_name()?;
                    if let Err(reason) = check_name(&name) {
                        return Err(self.err(&format!("struct field {name:?}: {reason}")));
                    }
                    if !seen.insert(name.to_lowercase()) {
                        return Err(self.err(&format!("struct field {name:?} is defined twice")));
                    }
                    self.expect(b':')?;
                    let t = self.parse_type()?;
                    let id = self.placeholder();
                    fields.push(Arc::new(NestedField::optional(id, name, t)));
                    if self.eat(b'>') {
                        break;
                    }
                    self.expect(b',')?;
                }
                Ok(Type::Struct(StructType::new(fields)))
            }
            "" => Err(self.err("expected a type")),
            "timestamp_ns" | "timestamptz_ns" | "variant" | "geometry" | "geography" | "unknown" => {
                Err(self.err(&format!("{word} needs Iceberg format v3, which spillway does not write")))
            }
            other => {
                let hint = match other {
                    "integer" | "smallint" | "tinyint" => " (Iceberg calls it int)",
                    "bigint" => " (Iceberg calls it long)",
                    "real" => " (Iceberg calls it float)",
                    "varchar" | "char" | "text" => " (Iceberg calls it string)",
                    "array" => " (Iceberg calls it list<...>)",
                    "bool" => " (Iceberg calls it boolean)",
                    _ => "",
                };
                Err(self.err(&format!("unknown type '{other}'{hint}")))
            }
        }
    }
}
