use super::*;
use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int32Type, Int64Type, Time64MicrosecondType, TimestampMicrosecondType};
use arrow_array::{Array, ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema as ArrowSchema, TimeUnit};
use futures::TryStreamExt;
use iceberg::spec::{NestedField, PrimitiveType, Schema, Type};
use spillway_format::json::{Deserializer, JsonConverter};
use spillway_format::schema::HiveType;

/// Seed 000's table: the Terraform `metadata { iceberg { schema { field {...} } } }` of the IoT
/// readings (sensor_id, Unix-seconds timestamp queried with `from_unixtime`, location,
/// temperature, humidity, pressure), as the JSON form `spillway tables create --schema` reads.
const SEED_SCHEMA: &str = r#"{"fields": [
    {"name": "sensor_id",   "type": "string", "required": false},
    {"name": "timestamp",   "type": "long",   "required": false},
    {"name": "location",    "type": "string", "required": false},
    {"name": "temperature", "type": "double", "required": false},
    {"name": "humidity",    "type": "double", "required": false},
    {"name": "pressure",    "type": "double", "required": false}
]}"#;

const DB: &str = "firehosetos3demo";
const TABLE: &str = "firehosetos3demo";

async fn open(dir: &Path) -> IcebergCatalog {
    IcebergCatalog::embedded(&dir.join("catalog/catalog.db"), DB, &dir.join("buckets").join(DB)).await.expect("open")
}

/// A catalog "tables" in `dir` (warehouse `dir/warehouse`), for the tests of other modules.
pub(super) async fn open_tables(dir: &Path) -> IcebergCatalog {
    IcebergCatalog::embedded(&dir.join("catalog/catalog.db"), "tables", &dir.join("warehouse")).await.expect("open")
}

/// Creates `db.table` with the fields of `schema` (JSON) and identity partitions on `partition_by`.
pub(super) async fn create_table(catalog: &IcebergCatalog, db: &str, table: &str, schema: &str, partition_by: &[&str]) {
    let fields = parse_field_specs(schema).expect("schema");
    let partition_by: Vec<String> = partition_by.iter().map(|c| c.to_string()).collect();
    assert!(catalog.create_table(db, table, &fields, &partition_by, false).await.expect("create"));
}

fn reading(i: usize, location: &str) -> String {
    format!(
        r#"{{"sensor_id":"sensor_{:03}","timestamp":{},"location":"{location}","temperature":{},"humidity":{},"pressure":{}}}"#,
        i % 10 + 1,
        1_700_000_000 + i,
        20.0 + (i % 7) as f64 * 1.5,
        40.0 + (i % 5) as f64,
        1000.0 + i as f64 * 0.25
    )
}

fn convert(columns: &[Column], records: &[String], deserializer: &Deserializer) -> RecordBatch {
    let mut c = JsonConverter::new(columns, deserializer);
    for r in records {
        c.push_record(r.as_bytes()).unwrap_or_else(|e| panic!("{r}: {e:?}"));
    }
    c.flush().expect("flush")
}

async fn read_all(catalog: &IcebergCatalog, db: &str, table: &str) -> Vec<RecordBatch> {
    let t = catalog.load(db, table).await.expect("load");
    let stream = t.scan().select_all().build().expect("scan").to_arrow().await.expect("to_arrow");
    stream.try_collect().await.expect("read")
}

fn rows(batches: &[RecordBatch]) -> usize {
    batches.iter().map(RecordBatch::num_rows).sum()
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir") {
            let p = e.expect("entry").path();
            if p.is_dir() { todo.push(p) } else { out.push(p) }
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn seed_table_appends_twice_and_remembers_the_wal_position() {
    let tmp = tempfile::tempdir().expect("tmp");
    let catalog = open(tmp.path()).await;
    let fields = parse_field_specs(SEED_SCHEMA).expect("schema");
    assert_eq!(fields.len(), 6);
    assert!(catalog.create_table(DB, TABLE, &fields, &[], false).await.expect("create"));
    assert!(!catalog.create_table(DB, TABLE, &fields, &[], true).await.expect("again"));
    let e = catalog.create_table(DB, TABLE, &fields, &[], false).await.expect_err("exists");
    assert_eq!(e.firehose_code(), "Iceberg.TableAlreadyExists");

    let info = catalog.table_info(DB, TABLE).await.expect("info");
    let expected = [
        ("sensor_id", HiveType::String),
        ("timestamp", HiveType::BigInt),
        ("location", HiveType::String),
        ("temperature", HiveType::Double),
        ("humidity", HiveType::Double),
        ("pressure", HiveType::Double),
    ]
    .map(|(n, t)| Column::new(n, t));
    assert_eq!(info.columns, expected);
    assert!(info.identifier_columns.is_empty());
    assert_eq!(info.format_version, 2);
    let table_dir = tmp.path().join("buckets").join(DB).join(format!("{DB}.db")).join(TABLE);
    let table_dir = table_dir.canonicalize().expect("table dir exists");
    assert_eq!(info.location, format!("file://{}", table_dir.display()));
    assert_eq!(catalog.committed_position(DB, TABLE, "stream-a").await.expect("none yet"), None);

    let d = Deserializer::default();
    let first: Vec<String> = (0..10).map(|i| reading(i, if i % 2 == 0 { "warehouse_a" } else { "office_1" })).collect();
    let second: Vec<String> = (10..25).map(|i| reading(i, "warehouse_b")).collect();
    let r1 =
        catalog.append(DB, TABLE, vec![convert(&info.columns, &first, &d)], "stream-a", 1, 10).await.expect("append 1");
    assert_eq!((r1.data_files.len(), r1.rows), (1, 10));
    assert!(r1.snapshot_id.is_some() && r1.bytes > 0);
    // Two batches in one append: one snapshot, one file.
    let (a, b) = second.split_at(5);
    let batches = vec![convert(&info.columns, a, &d), convert(&info.columns, b, &d)];
    let r2 = catalog.append(DB, TABLE, batches, "stream-a", 11, 20).await.expect("append 2");
    assert_eq!((r2.data_files.len(), r2.rows), (1, 15));
    assert_ne!(r2.snapshot_id, r1.snapshot_id);
    // Another stream's commit does not hide stream-a's position.
    let r3 = catalog
        .append(DB, TABLE, vec![convert(&info.columns, &[reading(99, "lab")], &d)], "stream-b", 7, 7)
        .await
        .expect("append 3");
    assert_eq!(r3.rows, 1);

    assert_eq!(catalog.committed_position(DB, TABLE, "stream-a").await.expect("a"), Some(20));
    assert_eq!(catalog.committed_position(DB, TABLE, "stream-b").await.expect("b"), Some(7));
    assert_eq!(catalog.committed_position(DB, TABLE, "stream-c").await.expect("c"), None);

    // Empty input commits nothing.
    let empty = convert(&info.columns, &[], &d);
    let r4 = catalog.append(DB, TABLE, vec![empty], "stream-a", 21, 30).await.expect("empty");
    assert_eq!(r4, AppendResult::default());
    assert_eq!(catalog.append(DB, TABLE, vec![], "stream-a", 21, 30).await.expect("none"), AppendResult::default());
    assert_eq!(catalog.committed_position(DB, TABLE, "stream-a").await.expect("a"), Some(20));

    // The snapshot summaries.
    let t = catalog.load(DB, TABLE).await.expect("load");
    let snapshots: Vec<_> = t.metadata().snapshots().collect();
    assert_eq!(snapshots.len(), 3);
    let s2 = t.metadata().snapshot_by_id(r2.snapshot_id.expect("id")).expect("snapshot 2");
    let props = &s2.summary().additional_properties;
    assert_eq!(props.get("spillway.stream-a.wal-first").map(String::as_str), Some("11"));
    assert_eq!(props.get("spillway.stream-a.wal-last").map(String::as_str), Some("20"));
    assert_eq!(props.get("added-records").map(String::as_str), Some("15"));

    // The files: SNAPPY Parquet under data/, named after the WAL range.
    let data = files_under(&table_dir.join("data"));
    assert_eq!(data.len(), 3, "{data:?}");
    let names: Vec<String> = data.iter().map(|p| p.file_name().unwrap_or_default().to_string_lossy().into()).collect();
    assert!(names.iter().any(|n| n.starts_with("wal-11-20-00000-") && n.ends_with(".parquet")), "{names:?}");
    let reader = parquet::file::reader::SerializedFileReader::new(std::fs::File::open(&data[0]).expect("open"))
        .expect("parquet");
    let meta = parquet::file::reader::FileReader::metadata(&reader);
    assert_eq!(meta.row_group(0).column(0).compression(), parquet::basic::Compression::SNAPPY);

    // Read back: every row, as the seed's queries would see them.
    let batches = read_all(&catalog, DB, TABLE).await;
    assert_eq!(rows(&batches), 26);
    let mut pressure_sum = 0.0;
    let mut ids = Vec::new();
    for b in &batches {
        let ts = b.column_by_name("timestamp").expect("ts").as_primitive::<Int64Type>();
        let p = b.column_by_name("pressure").expect("pressure").as_primitive::<Float64Type>();
        let sensor = b.column_by_name("sensor_id").expect("sensor").as_string::<i32>();
        for r in 0..b.num_rows() {
            ids.push(ts.value(r) - 1_700_000_000);
            pressure_sum += p.value(r);
            assert!(sensor.value(r).starts_with("sensor_0") || sensor.value(r) == "sensor_010");
        }
    }
    ids.sort_unstable();
    let mut want: Vec<i64> = (0..25).collect();
    want.push(99);
    assert_eq!(ids, want);
    let want_pressure: f64 = want.iter().map(|&i| 1000.0 + i as f64 * 0.25).sum();
    assert!((pressure_sum - want_pressure).abs() < 1e-6);

    // A second catalog on the same files sees the same table (the server and the CLI).
    let again = open(tmp.path()).await;
    assert_eq!(again.committed_position(DB, TABLE, "stream-a").await.expect("a"), Some(20));

    // The positions are also table properties: they outlive the snapshots that carry them.
    assert_eq!(t.metadata().properties().get("spillway.stream-a.wal-last").map(String::as_str), Some("20"));
    let older: Vec<i64> =
        t.metadata().snapshots().map(|s| s.snapshot_id()).filter(|id| Some(*id) != r3.snapshot_id).collect();
    let tx = iceberg::transaction::Transaction::new(&t);
    let tx = tx.expire_snapshots().expire_snapshot_ids(older).apply(tx).expect("expire");
    let t = tx.commit(catalog.catalog()).await.expect("commit the expiry");
    assert_eq!(t.metadata().snapshots().count(), 1);
    assert_eq!(catalog.committed_position(DB, TABLE, "stream-a").await.expect("a"), Some(20));
}

const NESTED_SCHEMA: &str = r#"[
    {"name": "id", "type": "long", "required": true},
    {"name": "flag", "type": "boolean"},
    {"name": "n", "type": "int"},
    {"name": "ratio", "type": "float"},
    {"name": "amount", "type": "decimal(10, 2)"},
    {"name": "day", "type": "date"},
    {"name": "at", "type": "time"},
    {"name": "ts", "type": "timestamp"},
    {"name": "tstz", "type": "TimestampTZ"},
    {"name": "uid", "type": "uuid"},
    {"name": "blob", "type": "binary"},
    {"name": "code", "type": "fixed[4]"},
    {"name": "tags", "type": "list<string>"},
    {"name": "attrs", "type": "map<string, int>"},
    {"name": "reading", "type": "struct<temp: double, unit: string, pos: struct<x: float, y: float>>"},
    {"name": "samples", "type": "list<struct<at: timestamp, v: decimal(10,2)>>"},
    {"name": "nested", "type": "map<string, list<long>>"}
]"#;

fn nested_columns() -> Vec<Column> {
    let p = |t: &str| HiveType::parse(t).expect("hive type");
    [
        ("id", "bigint"),
        ("flag", "boolean"),
        ("n", "int"),
        ("ratio", "float"),
        ("amount", "decimal(10,2)"),
        ("day", "date"),
        ("at", "string"),
        ("ts", "timestamp"),
        ("tstz", "timestamp"),
        ("uid", "string"),
        ("blob", "binary"),
        ("code", "binary"),
        ("tags", "array<string>"),
        ("attrs", "map<string,int>"),
        ("reading", "struct<temp:double,unit:string,pos:struct<x:float,y:float>>"),
        ("samples", "array<struct<at:timestamp,v:decimal(10,2)>>"),
        ("nested", "map<string,array<bigint>>"),
    ]
    .map(|(n, t)| Column::new(n, p(t)))
    .to_vec()
}

/// Records for the nested table (Hive deserializer: binary columns are base64).
fn nested_records() -> Vec<String> {
    vec![
        r#"{"id": 1, "flag": true, "n": 7, "ratio": 0.5, "amount": 12.34, "day": "2024-02-29",
            "at": "13:45:30.25", "ts": "2024-02-29 13:45:30.123456", "tstz": "2024-02-29 13:45:30",
            "uid": "67e55044-10b1-426f-9247-bb680e5fe0c8", "blob": "aGVsbG8=", "code": "AAECAw==",
            "tags": ["a", "b"], "attrs": {"x": 1, "y": 2},
            "reading": {"temp": 21.5, "unit": "C", "pos": {"x": 1.5, "y": -2.0}},
            "samples": [{"at": "2024-01-01 00:00:00", "v": 1.25}, {"at": "2024-01-02 00:00:00", "v": 2.5}],
            "nested": {"k": [1, 2, 3]}}"#
            .into(),
        r#"{"id": 2, "at": "00:00", "uid": "67E5504410B1426F9247BB680E5FE0C9", "tags": [], "attrs": {},
            "reading": {"temp": null, "pos": null}, "samples": [], "nested": {"e": []}}"#
            .into(),
        r#"{"id": 3}"#.into(),
    ]
}

fn hive() -> Deserializer {
    Deserializer::Hive { timestamp_formats: Vec::new() }
}

#[tokio::test]
async fn nested_and_all_primitive_types_round_trip() {
    let tmp = tempfile::tempdir().expect("tmp");
    let catalog = open(tmp.path()).await;
    let fields = parse_field_specs(NESTED_SCHEMA).expect("schema");
    assert!(catalog.create_table("lab", "everything", &fields, &[], false).await.expect("create"));
    let info = catalog.table_info("lab", "everything").await.expect("info");
    assert_eq!(info.columns, nested_columns());
    let back = catalog.table_fields("lab", "everything").await.expect("fields");
    assert_eq!(back.len(), fields.len());
    for (b, f) in back.iter().zip(&fields) {
        assert_eq!((&b.name, b.required), (&f.name, f.required));
        assert_eq!(parse_field_type(&b.field_type).ok().map(|t| field_type_text(&t)), Some(b.field_type.clone()));
    }
    assert_eq!(back[4].field_type, "decimal(10,2)");
    assert_eq!(back[8].field_type, "timestamptz");
    assert_eq!(back[14].field_type, "struct<temp:double,unit:string,pos:struct<x:float,y:float>>");

    // Field ids: top level 1..n, nested after, as Iceberg assigns them.
    let t = catalog.load("lab", "everything").await.expect("load");
    let schema = t.metadata().current_schema().clone();
    assert_eq!(schema.field_by_name("id").map(|f| (f.id, f.required)), Some((1, true)));
    assert_eq!(schema.field_by_name("nested").map(|f| f.id), Some(17));
    assert!(schema.field_by_name("reading.pos.y").is_some_and(|f| f.id > 17));
    assert_eq!(*schema.field_by_name("tstz").expect("tstz").field_type, Type::Primitive(PrimitiveType::Timestamptz));

    let batch = convert(&info.columns, &nested_records(), &hive());
    let r = catalog.append("lab", "everything", vec![batch], "s", 5, 7).await.expect("append");
    assert_eq!(r.rows, 3);

    let batches = read_all(&catalog, "lab", "everything").await;
    assert_eq!(rows(&batches), 3);
    let b = arrow_select_concat(&batches);
    let col = |n: &str| -> ArrayRef { b.column_by_name(n).unwrap_or_else(|| panic!("{n}")).clone() };
    let s = b.schema();
    let ty = |n: &str| s.field_with_name(n).expect("field").data_type().clone();
    assert_eq!(ty("tstz"), DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())));
    assert_eq!(ty("ts"), DataType::Timestamp(TimeUnit::Microsecond, None));
    assert_eq!(ty("at"), DataType::Time64(TimeUnit::Microsecond));
    assert_eq!(ty("uid"), DataType::FixedSizeBinary(16));
    assert_eq!(ty("code"), DataType::FixedSizeBinary(4));
    assert!(!s.field_with_name("id").expect("id").is_nullable());

    let id = col("id");
    let order: Vec<usize> = {
        let ids = id.as_primitive::<Int64Type>();
        let mut o: Vec<usize> = (0..3).collect();
        o.sort_by_key(|&i| ids.value(i));
        o
    };
    let (r0, r1, r2) = (order[0], order[1], order[2]);
    assert_eq!(col("n").as_primitive::<Int32Type>().value(r0), 7);
    assert_eq!(
        col("at").as_primitive::<Time64MicrosecondType>().value(r0),
        (13 * 3600 + 45 * 60 + 30) * 1_000_000 + 250_000
    );
    assert_eq!(col("at").as_primitive::<Time64MicrosecondType>().value(r1), 0);
    assert!(col("at").is_null(r2));
    let tstz = col("tstz");
    assert_eq!(tstz.as_primitive::<TimestampMicrosecondType>().value(r0), 1_709_214_330_000_000);
    let uid = col("uid");
    let uid = uid.as_fixed_size_binary();
    assert_eq!(uid.value(r0), uuid::Uuid::parse_str("67e55044-10b1-426f-9247-bb680e5fe0c8").expect("uuid").as_bytes());
    assert_eq!(uid.value(r1), uuid::Uuid::parse_str("67e55044-10b1-426f-9247-bb680e5fe0c9").expect("uuid").as_bytes());
    assert!(uid.is_null(r2));
    assert_eq!(col("code").as_fixed_size_binary().value(r0), [0, 1, 2, 3]);
    let blob = col("blob");
    assert_eq!(blob.as_binary_opt::<i64>().expect("large binary").value(r0), b"hello");
    let tags = col("tags");
    let tags = tags.as_list::<i32>();
    assert_eq!(tags.value(r0).as_string::<i32>().iter().flatten().collect::<Vec<_>>(), ["a", "b"]);
    assert_eq!(tags.value(r1).len(), 0);
    let attrs = col("attrs");
    let attrs = attrs.as_map();
    let e0 = attrs.value(r0);
    assert_eq!(e0.column(0).as_string::<i32>().iter().flatten().collect::<Vec<_>>(), ["x", "y"]);
    assert_eq!(e0.column(1).as_primitive::<Int32Type>().values().to_vec(), [1, 2]);
    let reading = col("reading");
    let reading = reading.as_struct();
    assert_eq!(reading.column_by_name("temp").expect("temp").as_primitive::<Float64Type>().value(r0), 21.5);
    let pos = reading.column_by_name("pos").expect("pos").as_struct();
    assert_eq!(pos.column_by_name("y").expect("y").as_primitive::<arrow_array::types::Float32Type>().value(r0), -2.0);
    assert!(pos.is_null(r1));
    let samples = col("samples");
    let first = samples.as_list::<i32>().value(r0);
    let v =
        first.as_struct().column_by_name("v").expect("v").as_primitive::<arrow_array::types::Decimal128Type>().value(1);
    assert_eq!(v, 250);
    let nested = col("nested");
    let n0 = nested.as_map().value(r0);
    assert_eq!(n0.column(1).as_list::<i32>().value(0).as_primitive::<Int64Type>().values().to_vec(), [1, 2, 3]);
}

/// `batches` as one (the scan may return several).
fn arrow_select_concat(batches: &[RecordBatch]) -> RecordBatch {
    assert_eq!(batches.len(), 1, "one file, one batch");
    batches[0].clone()
}

#[tokio::test]
async fn partitioned_tables_write_one_file_per_value_inside_the_table() {
    let tmp = tempfile::tempdir().expect("tmp");
    let catalog = open(tmp.path()).await;
    let fields = parse_field_specs(SEED_SCHEMA).expect("schema");
    let e = catalog.create_table(DB, "bad", &fields, &["nope".into()], false).await.expect_err("unknown column");
    assert_eq!(e.firehose_code(), "Iceberg.InvalidSchema");
    assert!(catalog.create_table(DB, "by_location", &fields, &["location".into()], false).await.expect("create"));
    let info = catalog.table_info(DB, "by_location").await.expect("info");
    let locations = ["warehouse_a", "office b", "../../../../escape", "warehouse_a", "x/y"];
    let mut records: Vec<String> = locations.iter().enumerate().map(|(i, l)| reading(i, l)).collect();
    records.push(r#"{"sensor_id":"sensor_404","timestamp":1}"#.into());
    let batch = convert(&info.columns, &records, &Deserializer::default());
    let r = catalog.append(DB, "by_location", vec![batch], "s", 1, 6).await.expect("append");
    assert_eq!((r.data_files.len(), r.rows), (5, 6));

    let table_dir = tmp.path().join("buckets").join(DB).join(format!("{DB}.db/by_location/data"));
    let mut folders: Vec<String> = files_under(&table_dir)
        .iter()
        .map(|p| p.parent().and_then(|d| d.file_name()).unwrap_or_default().to_string_lossy().into_owned())
        .collect();
    folders.sort();
    assert_eq!(
        folders,
        [
            "location=..%2F..%2F..%2F..%2Fescape",
            "location=null",
            "location=office+b",
            "location=warehouse_a",
            "location=x%2Fy"
        ]
    );
    // Nothing outside the table's folder but the catalog database.
    let all = files_under(tmp.path());
    assert!(
        all.iter().all(|p| p.starts_with(tmp.path().join("catalog"))
            || p.starts_with(tmp.path().join("buckets").join(DB).join(format!("{DB}.db/by_location")))),
        "{all:?}"
    );

    // The partition values are in the manifests: a scan filtered on them finds the rows.
    let t = catalog.load(DB, "by_location").await.expect("load");
    let filter = iceberg::expr::Reference::new("location").equal_to(iceberg::spec::Datum::string("warehouse_a"));
    let scan = t.scan().with_filter(filter).select_all().build().expect("scan");
    let tasks: Vec<_> = scan.plan_files().await.expect("plan").try_collect().await.expect("tasks");
    assert_eq!(tasks.len(), 1, "pruned to one file");
    let batches: Vec<RecordBatch> = scan.to_arrow().await.expect("arrow").try_collect().await.expect("read");
    assert_eq!(rows(&batches), 2);
    assert_eq!(rows(&read_all(&catalog, DB, "by_location").await), 6);
}

#[tokio::test]
async fn errors_carry_firehose_codes() {
    let tmp = tempfile::tempdir().expect("tmp");
    let catalog = open(tmp.path()).await;
    let e = catalog.table_info("nodb", "nothing").await.expect_err("missing");
    assert!(matches!(&e, IcebergError::NoSuchTable { database, table } if database == "nodb" && table == "nothing"));
    assert_eq!(e.firehose_code(), "Iceberg.NoSuchTable");
    assert!(!e.is_retryable());
    assert_eq!(e.to_string(), "Table nodb.nothing was not found in the catalog.");
    let fields = parse_field_specs(SEED_SCHEMA).expect("schema");
    catalog.create_table("db", "t", &fields, &[], false).await.expect("create");
    let e = catalog.table_info("db", "other").await.expect_err("missing table");
    assert_eq!(e.firehose_code(), "Iceberg.NoSuchTable");
    let e = catalog.committed_position("db", "other", "s").await.expect_err("missing table");
    assert_eq!(e.firehose_code(), "Iceberg.NoSuchTable");
    assert!(catalog.table_info("db", "T").await.is_err(), "names match exactly");
    for (db, table) in [("db", "a.b"), ("d-b", "t"), ("", "t"), ("db", "t/../x")] {
        let e = catalog.table_info(db, table).await.expect_err("bad name");
        assert_eq!(e.firehose_code(), "Iceberg.InvalidTableName", "{db}.{table}");
        let e = catalog.create_table(db, table, &fields, &[], true).await.expect_err("bad name");
        assert_eq!(e.firehose_code(), "Iceberg.InvalidTableName");
    }
    let bad = [FieldSpec { name: "x".into(), field_type: "bigint".into(), required: false }];
    let e = catalog.create_table("db", "u", &bad, &[], false).await.expect_err("bad type");
    assert_eq!(e.firehose_code(), "Iceberg.InvalidSchema");
    assert!(e.to_string().contains("Iceberg calls it long"), "{e}");

    // Format v1: refused like a missing table (Firehose needs v2).
    let schema = Schema::builder()
        .with_fields(vec![Arc::new(NestedField::optional(1, "a", Type::Primitive(PrimitiveType::Long)))])
        .build()
        .expect("schema");
    let creation = TableCreation::builder()
        .name("old".to_string())
        .location(catalog.table_location("db", "old").expect("embedded"))
        .schema(schema)
        .format_version(FormatVersion::V1)
        .build();
    catalog.catalog().create_table(&NamespaceIdent::new("db".into()), creation).await.expect("v1");
    let e = catalog.table_info("db", "old").await.expect_err("v1");
    assert!(matches!(e, IcebergError::UnsupportedFormatVersion { version: 1, .. }), "{e:?}");
    assert_eq!(e.firehose_code(), "Iceberg.NoSuchTable");
    let batch = RecordBatch::try_new(
        Arc::new(ArrowSchema::new(vec![Field::new("a", DataType::Int64, true)])),
        vec![Arc::new(Int64Array::from(vec![1]))],
    )
    .expect("batch");
    let e = catalog.append("db", "old", vec![batch], "s", 1, 1).await.expect_err("v1 append");
    assert_eq!(e.firehose_code(), "Iceberg.NoSuchTable");
}

#[tokio::test]
async fn values_the_table_refuses_name_their_row_and_column() {
    let tmp = tempfile::tempdir().expect("tmp");
    let catalog = open(tmp.path()).await;
    let fields = parse_field_specs(NESTED_SCHEMA).expect("schema");
    catalog.create_table("lab", "strict", &fields, &[], false).await.expect("create");
    let info = catalog.table_info("lab", "strict").await.expect("info");
    let good = convert(&info.columns, &nested_records(), &hive());

    // `id` is required: row 1 of the second batch is row 4 of the append.
    let missing = convert(&info.columns, &[r#"{"id": 9}"#.into(), r#"{"flag": true}"#.into()], &hive());
    let e = catalog.append("lab", "strict", vec![good.clone(), missing], "s", 1, 2).await.expect_err("missing");
    assert!(matches!(&e, IcebergError::MissingRequiredValue { column, row: 4 } if column == "id"), "{e:?}");
    assert_eq!(e.firehose_code(), "Iceberg.MissingColumnWithinRecord");
    assert!(!e.is_retryable());

    let bad_uuid = convert(&info.columns, &[r#"{"id": 1}"#.into(), r#"{"id": 2, "uid": "nope"}"#.into()], &hive());
    let e = catalog.append("lab", "strict", vec![bad_uuid], "s", 1, 2).await.expect_err("uuid");
    assert!(matches!(&e, IcebergError::InvalidValue { column, row: 1, .. } if column == "uid"), "{e:?}");
    assert_eq!(e.firehose_code(), "Iceberg.SchemaMismatch");

    // Inside a list of structs: the row is the list's.
    let bad_time = convert(&info.columns, &[r#"{"id": 1, "at": "25:00"}"#.into()], &hive());
    let e = catalog.append("lab", "strict", vec![bad_time], "s", 1, 1).await.expect_err("time");
    assert!(matches!(&e, IcebergError::InvalidValue { column, row: 0, .. } if column == "at"), "{e:?}");
    let bad_fixed = convert(
        &info.columns,
        &[r#"{"id": 1}"#.into(), r#"{"id": 2}"#.into(), r#"{"id": 3, "code": "AAEC"}"#.into()],
        &hive(),
    );
    let e = catalog.append("lab", "strict", vec![bad_fixed], "s", 1, 1).await.expect_err("fixed");
    assert!(matches!(&e, IcebergError::InvalidValue { column, row: 2, .. } if column == "code"), "{e:?}");

    // A column the table does not have: converted with a stale schema.
    let extra = RecordBatch::try_new(
        Arc::new(ArrowSchema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("zzz", DataType::Utf8, true),
        ])),
        vec![Arc::new(Int64Array::from(vec![1])), Arc::new(StringArray::from(vec!["x"]))],
    )
    .expect("batch");
    let e = catalog.append("lab", "strict", vec![extra], "s", 1, 1).await.expect_err("extra");
    assert!(matches!(e, IcebergError::SchemaMismatch(_)), "{e:?}");
    // Nothing was committed by the failures.
    assert_eq!(catalog.committed_position("lab", "strict", "s").await.expect("position"), None);
    let t = catalog.load("lab", "strict").await.expect("load");
    assert!(t.metadata().current_snapshot().is_none());

    // Columns missing from the batch are nulls; a Float64 where the table has long is a mismatch.
    let only_id = RecordBatch::try_new(
        Arc::new(ArrowSchema::new(vec![Field::new("ID", DataType::Int64, true)])),
        vec![Arc::new(Int64Array::from(vec![5]))],
    )
    .expect("batch");
    let r = catalog.append("lab", "strict", vec![only_id], "s", 3, 3).await.expect("only id");
    assert_eq!(r.rows, 1);
    let wrong = RecordBatch::try_new(
        Arc::new(ArrowSchema::new(vec![Field::new("id", DataType::Float64, true)])),
        vec![Arc::new(Float64Array::from(vec![5.0]))],
    )
    .expect("batch");
    let e = catalog.append("lab", "strict", vec![wrong], "s", 4, 4).await.expect_err("wrong type");
    assert!(matches!(e, IcebergError::SchemaMismatch(_)), "{e:?}");
}

#[tokio::test]
async fn identifier_columns_come_from_the_schema() {
    let tmp = tempfile::tempdir().expect("tmp");
    let catalog = open(tmp.path()).await;
    let ns = NamespaceIdent::new("db".into());
    catalog.catalog().create_namespace(&ns, HashMap::new()).await.expect("namespace");
    let schema = Schema::builder()
        .with_fields(vec![
            Arc::new(NestedField::required(1, "order_id", Type::Primitive(PrimitiveType::Long))),
            Arc::new(NestedField::required(2, "region", Type::Primitive(PrimitiveType::String))),
            Arc::new(NestedField::optional(3, "total", Type::decimal(12, 2).expect("decimal"))),
        ])
        .with_identifier_field_ids([2, 1])
        .build()
        .expect("schema");
    let creation = TableCreation::builder()
        .name("orders".to_string())
        .location(catalog.table_location("db", "orders").expect("embedded"))
        .schema(schema)
        .build();
    catalog.catalog().create_table(&ns, creation).await.expect("create");
    let info = catalog.table_info("db", "orders").await.expect("info");
    assert_eq!(info.identifier_columns, ["order_id", "region"]);
    assert_eq!(info.columns[2], Column::new("total", HiveType::Decimal { precision: 12, scale: 2 }));
}

#[test]
fn field_types_parse() {
    let t = |s: &str| parse_field_type(s).unwrap_or_else(|e| panic!("{s}: {e}"));
    assert_eq!(t(" LONG "), Type::Primitive(PrimitiveType::Long));
    assert_eq!(t("decimal( 38 , 0 )"), Type::decimal(38, 0).expect("decimal"));
    assert_eq!(t("fixed[16]"), Type::Primitive(PrimitiveType::Fixed(16)));
    assert_eq!(t("fixed(3)"), Type::Primitive(PrimitiveType::Fixed(3)));
    assert_eq!(t("timestamptz"), Type::Primitive(PrimitiveType::Timestamptz));
    let Type::Struct(s) = t("struct<`a b`: list<map<string, struct<x:int>>>, c:uuid>") else { panic!("struct") };
    assert_eq!(s.fields()[0].name, "a b");
    assert!(!s.fields()[0].required);
    for bad in [
        "",
        "bigint",
        "decimal(39,0)",
        "decimal(5,6)",
        "decimal(5)",
        "fixed[0]",
        "list<int",
        "map<list<int>,int>",
        "struct<>",
        "struct<a:int,A:int>",
        "struct<a.b:int>",
        "int x",
        "timestamp_ns",
    ] {
        let e = parse_field_type(bad).expect_err(bad);
        assert_eq!(e.firehose_code(), "Iceberg.InvalidSchema", "{bad}");
    }
    for text in [
        "struct<`a:b`:list<map<string,struct<x:int>>>,c:uuid>",
        "struct<a b:int>",
        "decimal(38,0)",
        "fixed[3]",
        "map<date,timestamptz>",
    ] {
        assert_eq!(field_type_text(&t(text)), text);
    }
    let dup = [
        FieldSpec { name: "a".into(), field_type: "int".into(), required: false },
        FieldSpec { name: "A".into(), field_type: "int".into(), required: false },
    ];
    assert!(types::build_schema(&dup).is_err());
    assert!(types::build_schema(&[]).is_err());
}

#[test]
fn schema_files_take_both_forms() {
    let list = r#"[{"name": "a", "type": "int", "required": true}, {"name": "b", "type": "string"}]"#;
    let object = format!(r#"{{"fields": {list}}}"#);
    let want = vec![
        FieldSpec { name: "a".into(), field_type: "int".into(), required: true },
        FieldSpec { name: "b".into(), field_type: "string".into(), required: false },
    ];
    assert_eq!(parse_field_specs(list).expect("list"), want);
    assert_eq!(parse_field_specs(&object).expect("object"), want);
    let e = parse_field_specs(r#"{"fields": [{"name": "a"}]}"#).expect_err("no type");
    assert!(e.to_string().contains("missing field `type`"), "{e}");
    assert!(parse_field_specs("nope").is_err());
}

#[test]
fn times_of_day_parse() {
    use adapt::parse_time;
    assert_eq!(parse_time("00:00"), Some(0));
    assert_eq!(parse_time("23:59:59.999999"), Some(86_399_999_999));
    assert_eq!(parse_time(" 01:02:03.5 "), Some(3_723_500_000));
    assert_eq!(parse_time("01:02:03.123456789"), Some(3_723_123_456));
    for bad in ["24:00", "1:02", "01:60", "01:02:03.", "01:02:03.1234567890", "01:02:03:04", "x", "01:02.5"] {
        assert_eq!(parse_time(bad), None, "{bad}");
    }
}

#[test]
fn partition_values_are_escaped() {
    assert_eq!(url_encode("a b/c"), "a+b%2Fc");
    assert_eq!(url_encode(".."), "%2E%2E");
    assert_eq!(url_encode("é"), "%C3%A9");
    assert_eq!(sqlite_url_path("/tmp/a b?#%.db"), "/tmp/a%20b%3F%23%25.db");
}

/// Writes tables for a cross-check with PyIceberg into `$SPILLWAY_ICEBERG_EXPORT` (run with
/// `--ignored`): the seed table (two appends), the nested table and a partitioned one.
#[tokio::test]
#[ignore]
async fn export_for_pyiceberg() {
    let Ok(dir) = std::env::var("SPILLWAY_ICEBERG_EXPORT") else { return };
    let dir = PathBuf::from(dir);
    let catalog = open(&dir).await;
    let fields = parse_field_specs(SEED_SCHEMA).expect("schema");
    catalog.create_table(DB, TABLE, &fields, &[], false).await.expect("create");
    let info = catalog.table_info(DB, TABLE).await.expect("info");
    let d = Deserializer::default();
    let first: Vec<String> = (0..10).map(|i| reading(i, "warehouse_a")).collect();
    let second: Vec<String> = (10..25).map(|i| reading(i, "office_1")).collect();
    catalog.append(DB, TABLE, vec![convert(&info.columns, &first, &d)], "stream-a", 1, 10).await.expect("1");
    catalog.append(DB, TABLE, vec![convert(&info.columns, &second, &d)], "stream-a", 11, 20).await.expect("2");

    let fields = parse_field_specs(NESTED_SCHEMA).expect("schema");
    catalog.create_table("lab", "everything", &fields, &[], false).await.expect("create");
    let batch = convert(&nested_columns(), &nested_records(), &hive());
    catalog.append("lab", "everything", vec![batch], "s", 5, 7).await.expect("nested");

    let fields = parse_field_specs(SEED_SCHEMA).expect("schema");
    catalog.create_table(DB, "by_location", &fields, &["location".into()], false).await.expect("create");
    let locations = ["warehouse_a", "office b", "../../../../escape", "warehouse_a", "x/y"];
    let mut records: Vec<String> = locations.iter().enumerate().map(|(i, l)| reading(i, l)).collect();
    records.push(r#"{"sensor_id":"sensor_404","timestamp":1}"#.into());
    let batch = convert(&info.columns, &records, &d);
    catalog.append(DB, "by_location", vec![batch], "s", 1, 6).await.expect("partitioned");
}

/// After PyIceberg appended to the seed table exported by [`export_for_pyiceberg`] (run with
/// `--ignored`): the position survives a foreign snapshot on top, and appends continue.
#[tokio::test]
#[ignore]
async fn append_after_pyiceberg() {
    let Ok(dir) = std::env::var("SPILLWAY_ICEBERG_EXPORT") else { return };
    let catalog = open(Path::new(&dir)).await;
    assert_eq!(catalog.committed_position(DB, TABLE, "stream-a").await.expect("position"), Some(20));
    let info = catalog.table_info(DB, TABLE).await.expect("info");
    let batch = convert(&info.columns, &[reading(30, "after_py")], &Deserializer::default());
    catalog.append(DB, TABLE, vec![batch], "stream-a", 21, 21).await.expect("append");
    assert_eq!(catalog.committed_position(DB, TABLE, "stream-a").await.expect("position"), Some(21));
    assert_eq!(rows(&read_all(&catalog, DB, TABLE).await), 27);
}

/// Streams appending to one table at once (each with its own catalog, as each stream's supervisor
/// opens one): the commits that lose the race retry on the new metadata, none is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_all_commit() {
    let tmp = tempfile::tempdir().expect("tmp");
    let catalog = open(tmp.path()).await;
    let fields = parse_field_specs(SEED_SCHEMA).expect("schema");
    catalog.create_table(DB, TABLE, &fields, &[], false).await.expect("create");
    let info = catalog.table_info(DB, TABLE).await.expect("info");
    let mut tasks = Vec::new();
    for s in 0..6u64 {
        let catalog = open(tmp.path()).await;
        let batch = convert(
            &info.columns,
            &[reading(s as usize, "x"), reading(s as usize + 100, "y")],
            &Deserializer::default(),
        );
        tasks.push(tokio::spawn(async move {
            // As the supervisor does: a commit that kept losing the race (iceberg's own retries
            // exhausted on a busy machine) is retryable, and is retried.
            let mut attempt = 0;
            loop {
                let key = format!("stream-{s}");
                match catalog.append(DB, TABLE, vec![batch.clone()], &key, s * 10 + 1, s * 10 + 2).await {
                    Err(e) if e.is_retryable() && attempt < 10 => attempt += 1,
                    other => break other,
                }
            }
        }));
    }
    for t in tasks {
        let r = t.await.expect("join").expect("append");
        assert_eq!(r.rows, 2);
    }
    for s in 0..6u64 {
        let p = catalog.committed_position(DB, TABLE, &format!("stream-{s}")).await.expect("position");
        assert_eq!(p, Some(s * 10 + 2));
    }
    assert_eq!(rows(&read_all(&catalog, DB, TABLE).await), 12);
    let t = catalog.load(DB, TABLE).await.expect("load");
    assert_eq!(t.metadata().snapshots().len(), 6);
}
