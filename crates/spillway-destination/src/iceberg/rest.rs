//! (being written) The Iceberg REST catalog client.
#![allow(dead_code, unused_variables)]

use iceberg::table::Table;
use iceberg::{TableIdent, TableRequirement, TableUpdate};

/// (stub)
#[derive(Debug)]
pub struct RestCatalog {}

impl RestCatalog {
    pub fn warehouse_location(&self) -> Option<&str> {
        None
    }

    pub async fn commit_updates(
        &self,
        ident: &TableIdent,
        requirements: Vec<TableRequirement>,
        updates: Vec<TableUpdate>,
    ) -> iceberg::Result<Table> {
        Err(iceberg::Error::new(iceberg::ErrorKind::FeatureUnsupported, "stub"))
    }
}
