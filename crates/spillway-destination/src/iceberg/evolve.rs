//! Tables from records: the Iceberg schema JSON records imply, for automatic table creation
//! (`TableCreationConfiguration`) and schema evolution (`SchemaEvolutionConfiguration`).
//!
//! # What it owns
//!
//! [`SchemaInference`] reads records (one JSON object each) and keeps, per field, the type its
//! values imply; [`IcebergCatalog::create_inferred`] creates a table with those fields and
//! [`IcebergCatalog::evolve`] adds the ones a table lacks, in one schema commit.
//!
//! # Rules
//!
//! Firehose documents the feature (new columns are added; existing ones never change type or
//! go away) but not its type inference; spillway's choice, the natural reading of JSON:
//!
//! | JSON value | Iceberg type |
//! |---|---|
//! | `true` / `false` | boolean |
//! | integer in the i64 range | long |
//! | any other number | double |
//! | string | string (no guessing of dates or timestamps: a string stays text) |
//! | object | struct of its fields (by the same rules) |
//! | array | list of the type of its non-null elements |
//! | `null`, `[]`, `{}` | nothing yet: the field is added once a record gives it a type |
//!
//! - The first type seen wins, except that long and double meet in double. A later record whose
//!   value does not fit the column fails its conversion and goes to the error output, as it would
//!   with a column created by hand.
//! - Names match the table's case-insensitively (the converter reads keys that way), so `Temp`
//!   does not add a column next to `temp`. A new column keeps the case of the first record that
//!   has it.
//! - New fields of struct columns (and of structs inside lists) are added inside them.
//! - Fields whose name Iceberg cannot hold as a column (empty, with `.`, longer than 255 bytes,
//!   control characters) are never added; their values are left out of the rows.
//! - Added columns are optional; existing records read them as null.
//!
//! # Invariants
//!
//! - Evolution only adds: no column is dropped, renamed or retyped, so files written before keep
//!   their meaning and a replay after a crash converts the same records to the same rows (plus
//!   nulls).
//! - Inference is pure and bounded by the input: nesting deeper than [`MAX_DEPTH`] is not typed.

use super::types::field_name_text;
use super::{FieldSpec, IcebergCatalog, IcebergError};
use iceberg::ErrorKind;
use iceberg::spec::{NestedFieldRef, Schema, Type};
use iceberg::transaction::{AddColumn, ApplyTransactionAction, Transaction};
use jiter::JsonValue;

/// Deepest nesting of objects and arrays that gets a type.
pub const MAX_DEPTH: usize = 32;

/// The type JSON values imply (see the module docs).
#[derive(Debug, Clone, PartialEq)]
enum Shape {
    Boolean,
    Long,
    Double,
    String,
    Struct(Vec<(String, Shape)>),
    List(Box<Shape>),
}

impl Shape {
    fn of(v: &JsonValue<'_>, depth: usize) -> Option<Shape> {
        if depth > MAX_DEPTH {
            return None;
        }
        Some(match v {
            JsonValue::Null => return None,
            JsonValue::Bool(_) => Shape::Boolean,
            JsonValue::Int(_) => Shape::Long,
            JsonValue::Float(_) => Shape::Double,
            JsonValue::Str(_) => Shape::String,
            JsonValue::Object(map) => {
                let mut fields = Vec::new();
                for (k, v) in map.iter() {
                    if let Some(s) = Shape::of(v, depth + 1) {
                        merge_field(&mut fields, k, s);
                    }
                }
                if fields.is_empty() {
                    return None;
                }
                Shape::Struct(fields)
            }
            JsonValue::Array(items) => {
                let mut element: Option<Shape> = None;
                for item in items.iter() {
                    if let Some(s) = Shape::of(item, depth + 1) {
                        element = Some(match element {
                            None => s,
                            Some(e) => e.merged(s),
                        });
                    }
                }
                Shape::List(Box::new(element?))
            }
            // Integers beyond i64 (jiter's big-integer variant, when built with it).
            #[allow(unreachable_patterns)]
            _ => Shape::Double,
        })
    }

    /// `self` widened by `other`: long and double meet in double, structs and lists merge, any
    /// other conflict keeps `self` (the first type seen).
    fn merged(self, other: Shape) -> Shape {
        match (self, other) {
            (Shape::Long, Shape::Double) | (Shape::Double, Shape::Long) => Shape::Double,
            (Shape::Struct(mut a), Shape::Struct(b)) => {
                for (k, s) in b {
                    merge_field(&mut a, &k, s);
                }
                Shape::Struct(a)
            }
            (Shape::List(a), Shape::List(b)) => Shape::List(Box::new(a.merged(*b))),
            (a, _) => a,
        }
    }

    fn type_text(&self) -> String {
        match self {
            Shape::Boolean => "boolean".into(),
            Shape::Long => "long".into(),
            Shape::Double => "double".into(),
            Shape::String => "string".into(),
            Shape::List(e) => format!("list<{}>", e.type_text()),
            Shape::Struct(fields) => {
                let inner: Vec<String> =
                    fields.iter().map(|(k, s)| format!("{}:{}", field_name_text(k), s.type_text())).collect();
                format!("struct<{}>", inner.join(","))
            }
        }
    }
}

/// Whether Iceberg can hold `name` as a column (see the module docs).
fn name_ok(name: &str) -> bool {
    !name.is_empty() && name.len() <= 255 && !name.contains('.') && !name.chars().any(char::is_control)
}

fn merge_field(fields: &mut Vec<(String, Shape)>, name: &str, shape: Shape) {
    if !name_ok(name) {
        return;
    }
    match fields.iter_mut().find(|(k, _)| k.eq_ignore_ascii_case(name)) {
        Some((_, existing)) => {
            let old = std::mem::replace(existing, Shape::Boolean);
            *existing = old.merged(shape);
        }
        None => fields.push((name.to_string(), shape)),
    }
}

/// The fields records imply, in order of first appearance.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SchemaInference {
    fields: Vec<(String, Shape)>,
}

/// One column to add: `parent` is the dotted path of the struct (or list of structs) it goes
/// into, None at the top level.
#[derive(Debug, Clone, PartialEq)]
pub struct NewColumn {
    pub parent: Option<String>,
    pub name: String,
    /// Iceberg type text ([`field_type_text`] form).
    pub field_type: String,
}

impl SchemaInference {
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads one record; false (and nothing learned) when it is not one JSON object.
    pub fn observe(&mut self, record: &[u8]) -> bool {
        let Ok(JsonValue::Object(map)) = JsonValue::parse(record, false) else { return false };
        for (k, v) in map.iter() {
            if let Some(s) = Shape::of(v, 1) {
                merge_field(&mut self.fields, k, s);
            }
        }
        true
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// The fields of a new table (all optional).
    pub fn fields(&self) -> Vec<FieldSpec> {
        self.fields
            .iter()
            .map(|(name, s)| FieldSpec { name: name.clone(), field_type: s.type_text(), required: false })
            .collect()
    }

    /// The columns `schema` lacks, parents before their children.
    pub fn missing_from(&self, schema: &Schema) -> Vec<NewColumn> {
        let mut out = Vec::new();
        missing(&self.fields, schema.as_struct().fields(), None, &mut out);
        out
    }
}

fn missing(inferred: &[(String, Shape)], existing: &[NestedFieldRef], parent: Option<&str>, out: &mut Vec<NewColumn>) {
    for (name, shape) in inferred {
        let path = |n: &str| match parent {
            Some(p) => format!("{p}.{n}"),
            None => n.to_string(),
        };
        match existing.iter().find(|f| f.name.eq_ignore_ascii_case(name)) {
            None => out.push(NewColumn {
                parent: parent.map(str::to_string),
                name: name.clone(),
                field_type: shape.type_text(),
            }),
            Some(field) => match (shape, field.field_type.as_ref()) {
                (Shape::Struct(inner), Type::Struct(s)) => missing(inner, s.fields(), Some(&path(&field.name)), out),
                (Shape::List(element), Type::List(l)) => {
                    if let (Shape::Struct(inner), Type::Struct(s)) =
                        (element.as_ref(), l.element_field.field_type.as_ref())
                    {
                        missing(inner, s.fields(), Some(&path(&field.name)), out);
                    }
                }
                // Same kind, or a conflict the conversion reports per record.
                _ => {}
            },
        }
    }
}

impl IcebergCatalog {
    /// Creates `database.table` with the fields `inference` found (all optional) and identity
    /// partitions on the `partition_by` columns the records have as primitive top-level fields
    /// (the others are left out: a partition needs a column). Ok(false) if the table already
    /// existed (another writer created it first).
    pub async fn create_inferred(
        &self,
        database: &str,
        table: &str,
        inference: &SchemaInference,
        partition_by: &[String],
    ) -> Result<bool, IcebergError> {
        if inference.is_empty() {
            return Err(IcebergError::InvalidSchema(format!(
                "cannot create {database}.{table}: no field of the records has a type yet (only nulls or empty values)"
            )));
        }
        let fields = inference.fields();
        let partitions: Vec<String> = partition_by
            .iter()
            .filter_map(|column| {
                fields
                    .iter()
                    .find(|f| f.name.eq_ignore_ascii_case(column) && !f.field_type.contains('<'))
                    .map(|f| f.name.clone())
            })
            .collect();
        self.create_table(database, table, &fields, &partitions, true).await
    }

    /// Adds the columns `database.table` lacks for the records `inference` read, in one schema
    /// commit; the number added (0: nothing committed).
    pub async fn evolve(
        &self,
        database: &str,
        table: &str,
        inference: &SchemaInference,
    ) -> Result<usize, IcebergError> {
        let ice = |e| IcebergError::from_iceberg(e, database, table);
        let mut attempt = 0;
        loop {
            let t = self.load(database, table).await?;
            Self::check_version(&t, database, table)?;
            let columns = inference.missing_from(t.metadata().current_schema());
            if columns.is_empty() {
                return Ok(0);
            }
            let tx = Transaction::new(&t);
            let mut action = tx.update_schema();
            for c in &columns {
                let field_type = super::parse_field_type(&c.field_type)?;
                let add = match &c.parent {
                    Some(parent) => {
                        AddColumn::builder().parent(parent.clone()).name(c.name.clone()).field_type(field_type).build()
                    }
                    None => AddColumn::optional(&c.name, field_type),
                };
                action = action.add_column(add);
            }
            let tx = action.apply(tx).map_err(ice)?;
            match tx.commit(self.catalog()).await {
                Ok(_) => return Ok(columns.len()),
                // Another writer changed the schema first (maybe adding the same columns): look
                // again at the new schema.
                Err(e)
                    if attempt < 3
                        && matches!(e.kind(), ErrorKind::CatalogCommitConflicts | ErrorKind::DataInvalid) =>
                {
                    attempt += 1;
                }
                Err(e) => return Err(ice(e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn infer(records: &[&str]) -> SchemaInference {
        let mut i = SchemaInference::new();
        for r in records {
            i.observe(r.as_bytes());
        }
        i
    }

    fn texts(i: &SchemaInference) -> Vec<(String, String)> {
        i.fields().into_iter().map(|f| (f.name, f.field_type)).collect()
    }

    #[test]
    fn json_values_imply_iceberg_types() {
        let i = infer(&[
            r#"{"id": 7, "t": 21.5, "ok": true, "name": "a", "tags": ["x"], "pos": {"x": 1, "y": 2.5}, "none": null, "e": [], "o": {}}"#,
        ]);
        assert_eq!(
            texts(&i),
            vec![
                ("id".into(), "long".into()),
                ("t".into(), "double".into()),
                ("ok".into(), "boolean".into()),
                ("name".into(), "string".into()),
                ("tags".into(), "list<string>".into()),
                ("pos".into(), "struct<x:long,y:double>".into()),
            ]
        );
        for (_, t) in texts(&i) {
            super::super::parse_field_type(&t).expect("type text parses");
        }
    }

    #[test]
    fn later_records_widen_and_add_but_never_retype() {
        let i = infer(&[
            r#"{"n": 1, "s": "x", "pos": {"x": 1}}"#,
            r#"{"n": 1.5, "s": 3, "pos": {"z": "q"}, "late": null}"#,
            r#"{"late": [1, 2.5], "N": 2, "bad.name": 1, "": 2}"#,
        ]);
        assert_eq!(
            texts(&i),
            vec![
                ("n".into(), "double".into()),
                ("s".into(), "string".into()),
                ("pos".into(), "struct<x:long,z:string>".into()),
                ("late".into(), "list<double>".into()),
            ]
        );
        assert!(!infer(&["[1]"]).observe(b"not json"));
    }

    #[test]
    fn missing_columns_are_found_top_level_and_nested() {
        let schema = super::super::types::build_schema(&[
            FieldSpec { name: "id".into(), field_type: "long".into(), required: false },
            FieldSpec { name: "pos".into(), field_type: "struct<x:long>".into(), required: false },
            FieldSpec { name: "items".into(), field_type: "list<struct<a:int>>".into(), required: false },
        ])
        .expect("schema");
        let i = infer(&[r#"{"ID": 1, "pos": {"x": 1, "y": 2}, "items": [{"a": 1, "b": "z"}], "extra": true}"#]);
        assert_eq!(
            i.missing_from(&schema),
            vec![
                NewColumn { parent: Some("pos".into()), name: "y".into(), field_type: "long".into() },
                NewColumn { parent: Some("items".into()), name: "b".into(), field_type: "string".into() },
                NewColumn { parent: None, name: "extra".into(), field_type: "boolean".into() },
            ]
        );
    }

    #[test]
    fn deep_nesting_stops_typing() {
        let deep = format!("{{\"a\": {}1{}}}", "[".repeat(MAX_DEPTH + 5), "]".repeat(MAX_DEPTH + 5));
        let i = infer(&[&deep]);
        assert!(i.is_empty(), "{:?}", i);
    }

    #[tokio::test]
    async fn a_table_is_created_from_records_then_grows_columns_and_takes_the_rows() {
        use futures::TryStreamExt;
        use spillway_format::json::{Deserializer, JsonConverter};
        let dir = tempfile::tempdir().expect("tempdir");
        let catalog =
            IcebergCatalog::embedded(&dir.path().join("catalog.db"), "AwsDataCatalog", &dir.path().join("wh"))
                .await
                .expect("open");
        let first =
            [r#"{"device": "d1", "temp": 20, "site": "north"}"#, r#"{"device": "d2", "temp": 21.5, "x": null}"#];
        let i = infer(&first);
        let parts = ["site".to_string(), "nope".to_string()];
        assert!(catalog.create_inferred("iot", "events", &i, &parts).await.expect("create"));
        assert!(!catalog.create_inferred("iot", "events", &i, &parts).await.expect("again"), "exists: false");
        let fields = catalog.table_fields("iot", "events").await.expect("fields");
        let names: Vec<_> = fields.iter().map(|f| (f.name.as_str(), f.field_type.as_str())).collect();
        assert_eq!(names, vec![("device", "string"), ("temp", "double"), ("site", "string")]);
        let t = catalog.load("iot", "events").await.expect("load");
        let spec = t.metadata().default_partition_spec();
        assert_eq!(spec.fields().iter().map(|f| f.name.as_str()).collect::<Vec<_>>(), vec!["site"]);

        let second = [r#"{"device": "d3", "temp": 19, "site": "south", "battery": 88, "pos": {"lat": 1.5}}"#];
        let i2 = infer(&second);
        assert_eq!(catalog.evolve("iot", "events", &i2).await.expect("evolve"), 2);
        assert_eq!(catalog.evolve("iot", "events", &i2).await.expect("again"), 0, "nothing left to add");
        let i3 = infer(&[r#"{"pos": {"lat": 1, "lon": 2.5}}"#]);
        assert_eq!(catalog.evolve("iot", "events", &i3).await.expect("nested"), 1);

        let info = catalog.table_info("iot", "events").await.expect("info");
        let mut converter = JsonConverter::new(&info.columns, &Deserializer::default()).with_single_object();
        for r in first.iter().chain(second.iter()) {
            converter.push_record(r.as_bytes()).expect("convert");
        }
        let batch = converter.flush().expect("flush");
        catalog.append("iot", "events", vec![batch], "s", 1, 3).await.expect("append");
        let t = catalog.load("iot", "events").await.expect("load");
        let schema = t.metadata().current_schema();
        let cols: Vec<_> = schema.as_struct().fields().iter().map(|f| f.name.as_str()).collect();
        assert_eq!(cols, vec!["device", "temp", "site", "battery", "pos"]);
        assert!(schema.field_by_name("pos.lon").is_some());
        // iceberg-rust 0.10.1's Arrow reader fails ("field not found") on struct columns of
        // tables like this one (PyIceberg and pyarrow read them): read the primitive columns.
        let batches: Vec<arrow_array::RecordBatch> = t
            .scan()
            .select(["device", "battery"])
            .build()
            .expect("scan")
            .to_arrow()
            .await
            .expect("arrow")
            .try_collect()
            .await
            .expect("read");
        assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 3);
        let battery: usize = batches.iter().map(|b| b.column(1).len() - b.column(1).null_count()).sum();
        assert_eq!(battery, 1, "only the third record has a battery value");
    }
}
