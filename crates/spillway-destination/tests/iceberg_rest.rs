//! `RestCatalog` against a real Iceberg REST catalog: SeaweedFS's (`weed mini -s3.port.iceberg=<port>
//! -tableBucket=<name>`), which signs with SigV4 (service `s3tables`) and keeps table files in the S3 bucket of the
//! same name on its S3 port.
//!
//! Runs only when `SPILLWAY_ICEBERG_REST_URI` is set (with `SPILLWAY_ICEBERG_TABLE_BUCKET`, `SPILLWAY_S3_ENDPOINT`,
//! `SPILLWAY_S3_ACCESS_KEY` and `SPILLWAY_S3_SECRET_KEY`: the catalog accepts the S3 identity's keys); each test
//! prints "skipped: set SPILLWAY_ICEBERG_REST_URI" and passes otherwise. `tests/compat/s3server.py` starts SeaweedFS
//! that way and runs a command with the variables set:
//!
//! ```text
//! .venv/bin/python tests/compat/s3server.py --bucket warehouse --table-bucket warehouse -- \
//!     cargo test -p spillway-destination --test iceberg_rest
//! ```
//!
//! Every test works in its own fresh namespace `it_<uuid>`, so the tests run in parallel and against a catalog
//! that already holds tables. Data files go through `ObjectStorageFactory` with the S3 keys as its default store.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use futures::TryStreamExt;
use iceberg::arrow::schema_to_arrow_schema;
use iceberg::spec::{DataFileFormat, FormatVersion, NestedField, PrimitiveType, Schema, Type};
use iceberg::table::Table;
use iceberg::transaction::{ApplyTransactionAction, Transaction};
use iceberg::writer::base_writer::data_file_writer::DataFileWriterBuilder;
use iceberg::writer::file_writer::ParquetWriterBuilder;
use iceberg::writer::file_writer::location_generator::{DefaultFileNameGenerator, DefaultLocationGenerator};
use iceberg::writer::file_writer::rolling_writer::RollingFileWriterBuilder;
use iceberg::writer::{IcebergWriter, IcebergWriterBuilder};
use iceberg::{Catalog, ErrorKind, NamespaceIdent, TableCreation, TableIdent, TableRequirement, TableUpdate};
use parquet::file::properties::WriterProperties;
use spillway_destination::S3Config;
use spillway_destination::iceberg::rest::{RestCatalog, RestConfig, SigV4Config};
use spillway_destination::iceberg::storage::ObjectStorageFactory;
use spillway_destination::iceberg::{FieldSpec, IcebergCatalog};

struct Server {
    uri: String,
    table_bucket: String,
    s3_endpoint: String,
    access_key: String,
    secret_key: String,
}

fn server() -> Option<Server> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let Some(uri) = var("SPILLWAY_ICEBERG_REST_URI") else {
        println!("skipped: set SPILLWAY_ICEBERG_REST_URI");
        return None;
    };
    let expect = |name: &str| var(name).unwrap_or_else(|| panic!("SPILLWAY_ICEBERG_REST_URI is set but {name} is not"));
    Some(Server {
        uri,
        table_bucket: expect("SPILLWAY_ICEBERG_TABLE_BUCKET"),
        s3_endpoint: expect("SPILLWAY_S3_ENDPOINT"),
        access_key: expect("SPILLWAY_S3_ACCESS_KEY"),
        secret_key: expect("SPILLWAY_S3_SECRET_KEY"),
    })
}

impl Server {
    fn config(&self, secret_key: &str) -> RestConfig {
        RestConfig {
            uri: self.uri.clone(),
            warehouse: Some(self.table_bucket.clone()),
            prefix: None,
            token: None,
            sigv4: Some(SigV4Config {
                region: Some("us-east-1".into()),
                service: None,
                access_key_id: Some(self.access_key.clone()),
                secret_access_key: Some(secret_key.to_string()),
                session_token: None,
            }),
            timeout_secs: Some(30),
            properties: HashMap::new(),
        }
    }

    fn storage(&self) -> Arc<ObjectStorageFactory> {
        let s3 = S3Config {
            endpoint: Some(self.s3_endpoint.clone()),
            region: Some("us-east-1".into()),
            access_key_id: Some(self.access_key.clone()),
            secret_access_key: Some(self.secret_key.clone()),
            ..Default::default()
        };
        Arc::new(ObjectStorageFactory::new(Some(s3), HashMap::new()))
    }

    async fn catalog(&self) -> RestCatalog {
        RestCatalog::connect("it", self.config(&self.secret_key), self.storage()).await.expect("connect")
    }
}

/// A fresh namespace name (SeaweedFS namespaces: lower-case letters, digits, underscores).
fn fresh() -> String {
    format!("it_{}", uuid::Uuid::new_v4().simple())
}

fn schema() -> Schema {
    Schema::builder()
        .with_fields(vec![
            NestedField::required(1, "id", Type::Primitive(PrimitiveType::Long)).into(),
            NestedField::optional(2, "name", Type::Primitive(PrimitiveType::String)).into(),
            NestedField::optional(3, "amount", Type::Primitive(PrimitiveType::Double)).into(),
        ])
        .build()
        .expect("schema")
}

/// Creates namespace `ns` and table `ns.t` with [`schema`].
async fn create_table(catalog: &RestCatalog, ns: &str, table: &str) -> Table {
    let namespace = NamespaceIdent::new(ns.to_string());
    if !catalog.namespace_exists(&namespace).await.expect("namespace exists") {
        catalog.create_namespace(&namespace, HashMap::new()).await.expect("create namespace");
    }
    let creation = TableCreation::builder()
        .name(table.to_string())
        .schema(schema())
        .properties([("owner".to_string(), "spillway-it".to_string())])
        .build();
    catalog.create_table(&namespace, creation).await.expect("create table")
}

#[tokio::test]
async fn connect_reads_the_catalog_config() {
    let Some(server) = server() else { return };
    let catalog = server.catalog().await;
    let expected = format!("s3://{}", server.table_bucket);
    assert_eq!(catalog.warehouse_location(), Some(expected.as_str()));
    let text = format!("{catalog:?}");
    assert!(!text.contains(&server.secret_key), "{text}");
}

#[tokio::test]
async fn namespaces_create_exist_list_update_drop() {
    let Some(server) = server() else { return };
    let catalog = server.catalog().await;
    let name = fresh();
    let ns = NamespaceIdent::new(name.clone());
    assert!(!catalog.namespace_exists(&ns).await.expect("exists before"));
    let e = catalog.get_namespace(&ns).await.expect_err("missing namespace");
    assert_eq!(e.kind(), ErrorKind::NamespaceNotFound, "{e}");

    let created = catalog.create_namespace(&ns, HashMap::from([("a".into(), "1".into())])).await.expect("create");
    assert_eq!(created.name(), &ns);
    assert_eq!(created.properties().get("a").map(String::as_str), Some("1"));
    assert!(catalog.namespace_exists(&ns).await.expect("exists after"));
    let e = catalog.create_namespace(&ns, HashMap::new()).await.expect_err("twice");
    assert_eq!(e.kind(), ErrorKind::NamespaceAlreadyExists, "{e}");

    let got = catalog.get_namespace(&ns).await.expect("get");
    assert_eq!(got.properties().get("a").map(String::as_str), Some("1"));
    assert!(catalog.list_namespaces(None).await.expect("list").contains(&ns));

    // Two levels: the path carries `<name>%1Fsub`, which the signature must cover as sent.
    let child = NamespaceIdent::from_strs([name.as_str(), "sub"]).expect("child");
    catalog.create_namespace(&child, HashMap::new()).await.expect("create child");
    assert!(catalog.namespace_exists(&child).await.expect("child exists"));
    assert_eq!(catalog.get_namespace(&child).await.expect("get child").name(), &child);
    assert_eq!(catalog.list_namespaces(Some(&ns)).await.expect("list children"), vec![child.clone()]);

    // The full set: `a` goes, `b` comes (what the server adds itself, `location`, is kept by the caller).
    let mut props: HashMap<String, String> = got.properties().clone();
    props.remove("a");
    props.insert("b".into(), "2".into());
    catalog.update_namespace(&ns, props).await.expect("update");
    let updated = catalog.get_namespace(&ns).await.expect("get updated");
    assert_eq!(updated.properties().get("a"), None);
    assert_eq!(updated.properties().get("b").map(String::as_str), Some("2"));

    catalog.drop_namespace(&child).await.expect("drop child");
    catalog.drop_namespace(&ns).await.expect("drop");
    assert!(!catalog.namespace_exists(&ns).await.expect("exists after drop"));
    assert!(!catalog.list_namespaces(None).await.expect("list after drop").contains(&ns));
    let e = catalog.drop_namespace(&ns).await.expect_err("drop twice");
    assert_eq!(e.kind(), ErrorKind::NamespaceNotFound, "{e}");
}

#[tokio::test]
async fn tables_create_load_list_rename_drop() {
    let Some(server) = server() else { return };
    let catalog = server.catalog().await;
    let ns_name = fresh();
    let ns = NamespaceIdent::new(ns_name.clone());
    let ident = TableIdent::new(ns.clone(), "events".into());
    let created = create_table(&catalog, &ns_name, "events").await;
    let location = format!("s3://{}/{ns_name}/events", server.table_bucket);
    assert_eq!(created.metadata().location(), location);
    assert_eq!(created.metadata().format_version(), FormatVersion::V2);
    assert!(created.metadata_location().is_some_and(|l| l.starts_with(&format!("{location}/metadata/"))));

    let loaded = catalog.load_table(&ident).await.expect("load");
    assert_eq!(loaded.identifier(), &ident);
    assert_eq!(loaded.metadata().uuid(), created.metadata().uuid());
    let fields: Vec<&str> =
        loaded.metadata().current_schema().as_struct().fields().iter().map(|f| f.name.as_str()).collect();
    assert_eq!(fields, ["id", "name", "amount"]);
    assert_eq!(loaded.metadata().properties().get("owner").map(String::as_str), Some("spillway-it"));
    assert!(catalog.table_exists(&ident).await.expect("exists"));
    assert_eq!(catalog.list_tables(&ns).await.expect("list"), vec![ident.clone()]);

    let missing = TableIdent::new(ns.clone(), "missing".into());
    assert!(!catalog.table_exists(&missing).await.expect("missing exists"));
    let e = catalog.load_table(&missing).await.expect_err("load missing");
    assert_eq!(e.kind(), ErrorKind::TableNotFound, "{e}");
    let e = catalog.create_namespace(&ns, HashMap::new()).await.expect_err("namespace twice");
    assert_eq!(e.kind(), ErrorKind::NamespaceAlreadyExists, "{e}");
    let e = catalog.drop_namespace(&ns).await.expect_err("namespace not empty");
    assert_eq!(e.kind(), ErrorKind::PreconditionFailed, "{e}");

    let renamed = TableIdent::new(ns.clone(), "events2".into());
    catalog.rename_table(&ident, &renamed).await.expect("rename");
    assert!(!catalog.table_exists(&ident).await.expect("old name"));
    assert_eq!(catalog.load_table(&renamed).await.expect("load renamed").metadata().uuid(), created.metadata().uuid());

    catalog.drop_table(&renamed).await.expect("drop");
    assert!(!catalog.table_exists(&renamed).await.expect("after drop"));
    let e = catalog.drop_table(&renamed).await.expect_err("drop twice");
    assert_eq!(e.kind(), ErrorKind::TableNotFound, "{e}");
    assert!(catalog.list_tables(&ns).await.expect("list after drop").is_empty());
    catalog.drop_namespace(&ns).await.expect("drop namespace");
}

#[tokio::test]
async fn missing_tables_and_namespaces_map_to_not_found() {
    let Some(server) = server() else { return };
    let catalog = server.catalog().await;
    let ns_name = fresh();
    let ns = NamespaceIdent::new(ns_name.clone());
    // The spec says 404 NoSuchNamespaceException; SeaweedFS 4.48 lists nothing instead.
    match catalog.list_tables(&ns).await {
        Ok(tables) => assert!(tables.is_empty(), "{tables:?}"),
        Err(e) => assert_eq!(e.kind(), ErrorKind::NamespaceNotFound, "{e}"),
    }
    let in_missing_ns = TableIdent::new(ns.clone(), "t".into());
    let e = catalog.load_table(&in_missing_ns).await.expect_err("table of a missing namespace");
    assert!(matches!(e.kind(), ErrorKind::TableNotFound | ErrorKind::NamespaceNotFound), "{e}");
    assert!(!catalog.table_exists(&in_missing_ns).await.expect("exists"));

    catalog.create_namespace(&ns, HashMap::new()).await.expect("create namespace");
    let missing = TableIdent::new(ns.clone(), "nope".into());
    let update = TableUpdate::SetProperties { updates: HashMap::from([("k".into(), "v".into())]) };
    let e = catalog.commit_updates(&missing, vec![], vec![update]).await.expect_err("commit to a missing table");
    assert_eq!(e.kind(), ErrorKind::TableNotFound, "{e}");
    let e = catalog.drop_table(&missing).await.expect_err("drop missing");
    assert_eq!(e.kind(), ErrorKind::TableNotFound, "{e}");
    catalog.drop_namespace(&ns).await.expect("drop namespace");
}

#[tokio::test]
async fn property_commits_and_stale_requirements() {
    let Some(server) = server() else { return };
    let catalog = server.catalog().await;
    let ns_name = fresh();
    let table = create_table(&catalog, &ns_name, "props").await;
    let ident = table.identifier().clone();

    // Through iceberg's Transaction (which calls update_table).
    let tx = Transaction::new(&table);
    let tx = tx.update_table_properties().set("k".into(), "v1".into()).apply(tx).expect("apply");
    let committed = tx.commit(&catalog).await.expect("commit");
    assert_eq!(committed.metadata().properties().get("k").map(String::as_str), Some("v1"));
    assert_ne!(committed.metadata_location(), table.metadata_location());
    let reloaded = catalog.load_table(&ident).await.expect("reload");
    assert_eq!(reloaded.metadata().properties().get("k").map(String::as_str), Some("v1"));
    assert_eq!(reloaded.metadata_location(), committed.metadata_location());

    // Directly, with a requirement that holds.
    let uuid = reloaded.metadata().uuid();
    let update = |v: &str| TableUpdate::SetProperties { updates: HashMap::from([("k".into(), v.into())]) };
    let t = catalog
        .commit_updates(&ident, vec![TableRequirement::UuidMatch { uuid }], vec![update("v2")])
        .await
        .expect("commit with a matching uuid");
    assert_eq!(t.metadata().properties().get("k").map(String::as_str), Some("v2"));

    // Stale requirements: conflicts, retryable, and nothing changed.
    let e = catalog
        .commit_updates(&ident, vec![TableRequirement::UuidMatch { uuid: uuid::Uuid::nil() }], vec![update("x")])
        .await
        .expect_err("wrong uuid");
    assert_eq!(e.kind(), ErrorKind::CatalogCommitConflicts, "{e}");
    assert!(e.retryable(), "{e}");
    let stale_snapshot = TableRequirement::RefSnapshotIdMatch { r#ref: "main".into(), snapshot_id: Some(42) };
    let e = catalog.commit_updates(&ident, vec![stale_snapshot], vec![update("y")]).await.expect_err("stale ref");
    assert_eq!(e.kind(), ErrorKind::CatalogCommitConflicts, "{e}");
    assert!(e.retryable(), "{e}");
    let now = catalog.load_table(&ident).await.expect("load");
    assert_eq!(now.metadata().properties().get("k").map(String::as_str), Some("v2"));

    // A transaction built on the stale first handle still commits: iceberg reloads before committing.
    let tx = Transaction::new(&table);
    let tx = tx.update_table_properties().set("k2".into(), "w".into()).apply(tx).expect("apply");
    let t = tx.commit(&catalog).await.expect("commit on a stale handle");
    assert_eq!(t.metadata().properties().get("k").map(String::as_str), Some("v2"));
    assert_eq!(t.metadata().properties().get("k2").map(String::as_str), Some("w"));

    catalog.drop_table(&ident).await.expect("drop");
    catalog.drop_namespace(&NamespaceIdent::new(ns_name)).await.expect("drop namespace");
}

fn batch(table: &Table, ids: &[i64]) -> RecordBatch {
    let arrow = Arc::new(schema_to_arrow_schema(table.metadata().current_schema()).expect("arrow schema"));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(ids.to_vec())),
        Arc::new(StringArray::from(ids.iter().map(|i| Some(format!("n{i}"))).collect::<Vec<_>>())),
        Arc::new(Float64Array::from(ids.iter().map(|i| *i as f64 / 2.0).collect::<Vec<_>>())),
    ];
    RecordBatch::try_new(arrow, columns).expect("batch")
}

async fn read_ids(table: &Table) -> Vec<i64> {
    let batches: Vec<RecordBatch> = table
        .scan()
        .select(["id"])
        .build()
        .expect("scan")
        .to_arrow()
        .await
        .expect("to_arrow")
        .try_collect()
        .await
        .expect("read");
    let mut ids: Vec<i64> = batches
        .iter()
        .flat_map(|b| {
            let col = b.column(0).as_any().downcast_ref::<Int64Array>().expect("int64");
            col.values().to_vec()
        })
        .collect();
    ids.sort_unstable();
    ids
}

#[tokio::test]
async fn fast_append_writes_data_files_to_s3_and_commits() {
    let Some(server) = server() else { return };
    let catalog = server.catalog().await;
    let ns_name = fresh();
    let table = create_table(&catalog, &ns_name, "data").await;
    assert_eq!(table.metadata().current_snapshot_id(), None);

    let metadata = table.metadata();
    let parquet = ParquetWriterBuilder::new(WriterProperties::builder().build(), metadata.current_schema().clone());
    let locations = DefaultLocationGenerator::new(metadata).expect("locations");
    let names = DefaultFileNameGenerator::new("it".into(), None, DataFileFormat::Parquet);
    let rolling =
        RollingFileWriterBuilder::new_with_default_file_size(parquet, table.file_io().clone(), locations, names);
    let mut writer = DataFileWriterBuilder::new(rolling).build(None).await.expect("writer");
    writer.write(batch(&table, &[1, 2, 3])).await.expect("write");
    let files = writer.close().await.expect("close");
    assert_eq!(files.len(), 1);
    let path = files[0].file_path().to_string();
    assert!(path.starts_with(&format!("s3://{}/{ns_name}/data/data/", server.table_bucket)), "{path}");
    assert!(table.file_io().exists(&path).await.expect("exists"), "{path}");

    let tx = Transaction::new(&table);
    let action = tx
        .fast_append()
        .add_data_files(files)
        .set_snapshot_properties(HashMap::from([("spillway.it".to_string(), "1".to_string())]));
    let tx = action.apply(tx).expect("apply");
    let committed = tx.commit(&catalog).await.expect("commit");
    let snapshot = committed.metadata().current_snapshot().expect("snapshot");
    assert_eq!(snapshot.summary().additional_properties.get("spillway.it").map(String::as_str), Some("1"));

    let loaded = catalog.load_table(table.identifier()).await.expect("reload");
    assert_eq!(loaded.metadata().current_snapshot_id(), Some(snapshot.snapshot_id()));
    assert_eq!(read_ids(&loaded).await, [1, 2, 3]);

    catalog.purge_table(table.identifier()).await.expect("purge");
    assert!(!catalog.table_exists(table.identifier()).await.expect("after purge"));
    catalog.drop_namespace(&NamespaceIdent::new(ns_name)).await.expect("drop namespace");
}

#[tokio::test]
async fn iceberg_catalog_appends_through_the_rest_catalog() {
    let Some(server) = server() else { return };
    let ns_name = fresh();
    let catalog = IcebergCatalog::rest("it", server.catalog().await);
    assert_eq!(catalog.warehouse(), format!("s3://{}", server.table_bucket));
    let fields = vec![
        FieldSpec { name: "id".into(), field_type: "long".into(), required: true },
        FieldSpec { name: "name".into(), field_type: "string".into(), required: false },
    ];
    assert!(catalog.create_table(&ns_name, "events", &fields, &[], false).await.expect("create"));
    assert!(!catalog.create_table(&ns_name, "events", &fields, &[], true).await.expect("create again"));
    let info = catalog.table_info(&ns_name, "events").await.expect("info");
    assert_eq!(info.location, format!("s3://{}/{ns_name}/events", server.table_bucket));

    let arrow = Arc::new(arrow_schema::Schema::new(vec![
        arrow_schema::Field::new("id", arrow_schema::DataType::Int64, true),
        arrow_schema::Field::new("name", arrow_schema::DataType::Utf8, true),
    ]));
    let rows = RecordBatch::try_new(
        arrow,
        vec![Arc::new(Int64Array::from(vec![7, 8])), Arc::new(StringArray::from(vec![Some("a"), None]))],
    )
    .expect("batch");
    let result = catalog.append(&ns_name, "events", vec![rows], "s1", 10, 11).await.expect("append");
    assert_eq!((result.data_files.len(), result.rows), (1, 2));
    assert!(result.snapshot_id.is_some());
    assert_eq!(catalog.committed_position(&ns_name, "events", "s1").await.expect("position"), Some(11));

    let rest = server.catalog().await;
    let ident = TableIdent::new(NamespaceIdent::new(ns_name.clone()), "events".into());
    assert_eq!(read_ids(&rest.load_table(&ident).await.expect("load")).await, [7, 8]);
    rest.purge_table(&ident).await.expect("purge");
    rest.drop_namespace(&NamespaceIdent::new(ns_name)).await.expect("drop namespace");
}

#[tokio::test]
async fn wrong_secret_key_is_access_denied() {
    let Some(server) = server() else { return };
    let wrong = "not-the-secret-key";
    let result = RestCatalog::connect("it", server.config(wrong), server.storage()).await;
    // SeaweedFS answers /v1/config without checking the signature; the first other call is refused.
    let e = match result {
        Err(e) => e,
        Ok(catalog) => catalog.list_namespaces(None).await.expect_err("wrong key"),
    };
    assert_eq!(e.kind(), ErrorKind::Unexpected, "{e}");
    assert!(!e.retryable(), "{e}");
    let text = e.to_string();
    assert!(text.contains("access denied"), "{text}");
    assert!(text.contains("signature"), "the server's message: {text}");
    assert!(!text.contains(wrong), "{text}");
}

#[tokio::test]
async fn unsigned_requests_are_access_denied() {
    let Some(server) = server() else { return };
    let config = RestConfig { sigv4: None, ..server.config(&server.secret_key) };
    let catalog = RestCatalog::connect("it", config, server.storage()).await.expect("config is public");
    let e = catalog.list_namespaces(None).await.expect_err("unsigned");
    assert_eq!(e.kind(), ErrorKind::Unexpected, "{e}");
    assert!(e.to_string().contains("access denied"), "{e}");
}
