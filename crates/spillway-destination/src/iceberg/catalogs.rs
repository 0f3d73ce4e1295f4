//! Which catalog a name means: the catalogs of Iceberg streams (the S3 Tables table bucket of a
//! `CatalogARN`, or `AwsDataCatalog`) resolved to an embedded catalog or a REST catalog, and where
//! their warehouses live.
//!
//! # Rules
//!
//! - A name configured as a REST catalog (`[iceberg_catalogs.NAME]` in spillway.toml) is that
//!   catalog; tables keep the locations it gives, and their files are read and written through
//!   the bucket stores (`[buckets.NAME]`, `[s3]`) or the FileIO properties the catalog hands out.
//! - Any other name is a catalog of the embedded SQLite database (`<data-dir>/catalog/catalog.db`,
//!   one `catalog_name` per name). Its warehouse is the bucket of `WarehouseLocation` (with its
//!   path), else the bucket named like the catalog, and that bucket is where spillway keeps the
//!   bucket: a folder under `<data-dir>/buckets/` unless `[buckets.BUCKET]` or `[s3]` puts it on
//!   an S3-compatible store, in which case the warehouse is `s3://BUCKET/PATH` there.
//!
//! # Invariants
//!
//! - Opening is idempotent and cheap enough to do once per stream start.
//! - A catalog's warehouse never changes for a given configuration, so tables created earlier
//!   are found again (their metadata records their own locations in any case).

use super::rest::{RestCatalog, RestConfig};
use super::storage::ObjectStorageFactory;
use super::{IcebergCatalog, IcebergError};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

/// Everything needed to open the catalogs of Iceberg streams.
#[derive(Debug, Clone, Default)]
pub struct Catalogs {
    /// The embedded catalog's database (`<data-dir>/catalog/catalog.db`).
    pub catalog_db: PathBuf,
    /// The folder of local buckets (`<data-dir>/buckets`).
    pub buckets_dir: PathBuf,
    /// REST catalogs by name (`[iceberg_catalogs.NAME]`).
    pub rest: HashMap<String, RestConfig>,
    /// The bucket stores (`[s3]`, `[buckets.NAME]`): where S3 warehouses are.
    pub storage: ObjectStorageFactory,
}

impl Catalogs {
    /// The embedded catalog in `data_dir` with the given stores and REST catalogs.
    pub fn new(data_dir: &std::path::Path, rest: HashMap<String, RestConfig>, storage: ObjectStorageFactory) -> Self {
        Catalogs {
            catalog_db: data_dir.join("catalog").join("catalog.db"),
            buckets_dir: data_dir.join("buckets"),
            rest,
            storage,
        }
    }

    /// Whether `bucket` lives on an S3-compatible store rather than in the data dir.
    fn remote(&self, bucket: &str) -> bool {
        self.storage.default.is_some() || self.storage.buckets.contains_key(bucket)
    }

    /// Opens catalog `name`; `warehouse` is `WarehouseLocation` as (bucket, path), if configured
    /// (embedded catalogs only: a REST catalog has its own).
    pub async fn open(&self, name: &str, warehouse: Option<(&str, &str)>) -> Result<IcebergCatalog, IcebergError> {
        // The name (and a warehouse bucket) may become a folder of the data dir: S3 Tables bucket
        // names and AwsDataCatalog fit this.
        let folder_ok = |n: &str| {
            !n.is_empty()
                && n.len() <= 255
                && !n.starts_with('-')
                && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if !folder_ok(name) || warehouse.is_some_and(|(b, _)| !folder_ok(b)) {
            return Err(IcebergError::Config(format!(
                "catalog name {name:?} (and a warehouse bucket) must be letters, digits, '-' or '_' (an S3 Tables table bucket name)"
            )));
        }
        if warehouse.is_some_and(|(_, p)| p.split('/').any(|seg| seg == ".." || seg == ".")) {
            return Err(IcebergError::Config(format!("the warehouse path of catalog {name} has '.' or '..' segments")));
        }
        if let Some(config) = self.rest.get(name) {
            let storage = Arc::new(self.storage.clone());
            let catalog = RestCatalog::connect(name, config.clone(), storage)
                .await
                .map_err(|e| IcebergError::Catalog(format!("REST catalog {name}: {e}")))?;
            return Ok(IcebergCatalog::rest(name, catalog));
        }
        let (bucket, path) = warehouse.unwrap_or((name, ""));
        let path = path.trim_matches('/');
        if self.remote(bucket) {
            let url = if path.is_empty() { format!("s3://{bucket}") } else { format!("s3://{bucket}/{path}") };
            return IcebergCatalog::embedded_at(&self.catalog_db, name, url, Arc::new(self.storage.clone())).await;
        }
        let mut dir = self.buckets_dir.join(bucket);
        if !path.is_empty() {
            dir = dir.join(path);
        }
        IcebergCatalog::embedded(&self.catalog_db, name, &dir).await
    }
}
