//! (being written) Compaction, and raw commits to the embedded catalog.
#![allow(dead_code, unused_variables)]

use iceberg::table::Table;
use iceberg::{TableRequirement, TableUpdate};
use std::path::Path;

pub(super) async fn commit_sql(
    db_path: &Path,
    catalog_name: &str,
    table: &Table,
    requirements: Vec<TableRequirement>,
    updates: Vec<TableUpdate>,
) -> iceberg::Result<Table> {
    Err(iceberg::Error::new(iceberg::ErrorKind::FeatureUnsupported, "stub"))
}
