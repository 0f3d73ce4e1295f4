//! Iceberg storage over `object_store`: lets Iceberg tables (metadata, manifests, data files) live in
//! S3-compatible stores (AWS S3, MinIO, SeaweedFS...) as well as on the local disk.
//!
//! # What it owns
//!
//! [`ObjectStorageFactory`] is an iceberg-rust `StorageFactory` (give it to `FileIOBuilder::new`, or
//! to a catalog builder); the [`ObjectStorage`] it builds is the `Storage` behind a `FileIO`. It
//! owns one `object_store` S3 client per bucket (built like spillway's S3 destination builds its
//! own, see `S3Bucket::build_store`) and nothing else: no state survives the process, and what the
//! files hold is iceberg's business.
//!
//! # Locations
//!
//! Every path is an absolute location:
//!
//! - `s3://bucket/key` and `s3a://bucket/key`: the object `key` of `bucket`, reached with the first
//!   of: `buckets[bucket]` (spillway.toml `[buckets.NAME]`), `default` (`[s3]`), or the FileIO
//!   properties an Iceberg REST catalog hands out (`s3.endpoint`, `s3.access-key-id`,
//!   `s3.secret-access-key`, `s3.session-token`, `s3.region` / `client.region`,
//!   `s3.path-style-access`; path style unless `s3.path-style-access` says otherwise or there is no
//!   endpoint, i.e. AWS). Without any of them the operation fails with a message saying to
//!   configure `[buckets.<bucket>]` or `[s3]`. Keys follow spillway's key rules
//!   (`crate::object::key::check_key`: no empty, `.` or `..` segment, no control character, at
//!   most 1,024 bytes) and are stored exactly as written (`%20` stays `%20`).
//! - `file:///path`, `file:/path` and bare `/path`: the local file, through iceberg's own
//!   `LocalFsStorage`.
//! - Any other scheme fails with `FeatureUnsupported`; a relative path with `DataInvalid`.
//!
//! # Operations on objects
//!
//! `read` is one GET, `reader` ranged GETs, `metadata` and `exists` a HEAD, `write` one PUT,
//! `delete` one DELETE (a missing object is not an error), `delete_prefix` a listing of
//! `<prefix>/` then bulk deletes (the object `<prefix>` itself is kept, like a file given to
//! `LocalFsStorage::delete_prefix`; an empty prefix, the whole bucket, is refused), `delete_stream`
//! a DELETE per path. `writer` buffers: a file below [`PART_SIZE`] (8 MiB) is one PUT at `close`,
//! a larger one a multipart upload of [`PART_SIZE`] parts, at most [`PARTS_IN_FLIGHT`] uploading
//! at a time, so a writer holds at most one part plus the parts in flight whatever the file size.
//!
//! # Invariants
//!
//! - A file written through `writer` appears whole at `close` or not at all: a failed write or
//!   close, or a writer dropped unclosed, aborts its multipart upload (best effort when dropped).
//! - Errors: a missing object is `DataInvalid` (what iceberg's `LocalFsStorage` and
//!   `MemoryStorage` report), everything else `Unexpected`, with the location in the message and
//!   the `object_store` error as the source.
//! - Secrets never appear in messages or `Debug` output (`S3Config`'s `Debug` redacts them); they
//!   are in the serde form, which must carry them to be of any use.
//! - Cloning an [`ObjectStorage`] is cheap and shares its clients.

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use iceberg::io::{
    CLIENT_REGION, FileMetadata, FileRead, FileWrite, InputFile, LocalFsStorageFactory, OutputFile, S3_ACCESS_KEY_ID,
    S3_ENDPOINT, S3_PATH_STYLE_ACCESS, S3_REGION, S3_SECRET_ACCESS_KEY, S3_SESSION_TOKEN, Storage, StorageConfig,
    StorageFactory,
};
use iceberg::{Error, ErrorKind, Result};
use object_store::path::Path;
use object_store::{MultipartUpload, ObjectStore, ObjectStoreExt, PutPayload};
use tokio::task::{JoinError, JoinSet};

use crate::object::key::check_key;
use crate::object::{ObjectError, PART_SIZE, PARTS_IN_FLIGHT, S3Bucket, S3Config};

/// Paths deleted at once by `delete_stream`.
const DELETES_IN_FLIGHT: usize = 16;

/// iceberg StorageFactory for `s3://`, `s3a://` and `file://` locations.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct ObjectStorageFactory {
    /// The store of every bucket without its own entry (spillway.toml `[s3]`).
    pub default: Option<S3Config>,
    /// Per-bucket stores, by bucket name (spillway.toml `[buckets.NAME]`); they win over `default`.
    pub buckets: HashMap<String, S3Config>,
}

impl ObjectStorageFactory {
    pub fn new(default: Option<S3Config>, buckets: HashMap<String, S3Config>) -> Self {
        ObjectStorageFactory { default, buckets }
    }

    /// The storage [`StorageFactory::build`] returns, as its concrete type.
    fn storage(&self, config: &StorageConfig) -> Result<ObjectStorage> {
        let local = LocalFsStorageFactory.build(config)?;
        Ok(ObjectStorage::from_parts(
            StorageState {
                default: self.default.clone(),
                buckets: self.buckets.clone(),
                props: s3_config_from_props(config.props()),
            },
            local,
        ))
    }
}

#[typetag::serde]
impl StorageFactory for ObjectStorageFactory {
    fn build(&self, config: &StorageConfig) -> Result<Arc<dyn Storage>> {
        Ok(Arc::new(self.storage(config)?))
    }
}

/// The S3 settings of a FileIO's properties (the names of PyIceberg and Iceberg Java); None when
/// none of them is set.
fn s3_config_from_props(props: &HashMap<String, String>) -> Option<S3Config> {
    let keys = [
        S3_ENDPOINT,
        S3_ACCESS_KEY_ID,
        S3_SECRET_ACCESS_KEY,
        S3_SESSION_TOKEN,
        S3_REGION,
        CLIENT_REGION,
        S3_PATH_STYLE_ACCESS,
    ];
    if !keys.iter().any(|key| props.contains_key(*key)) {
        return None;
    }
    let get = |key: &str| props.get(key).map(|v| v.trim()).filter(|v| !v.is_empty()).map(str::to_owned);
    let endpoint = get(S3_ENDPOINT);
    let path_style = match get(S3_PATH_STYLE_ACCESS) {
        Some(value) => ["true", "t", "1", "on", "yes"].contains(&value.to_ascii_lowercase().as_str()),
        None => endpoint.is_some(),
    };
    Some(S3Config {
        endpoint,
        region: get(CLIENT_REGION).or_else(|| get(S3_REGION)),
        access_key_id: get(S3_ACCESS_KEY_ID),
        secret_access_key: get(S3_SECRET_ACCESS_KEY),
        session_token: get(S3_SESSION_TOKEN),
        virtual_hosted_style: !path_style,
        ..S3Config::default()
    })
}

/// The serde form of an [`ObjectStorage`]: its configuration, without clients.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct StorageState {
    default: Option<S3Config>,
    buckets: HashMap<String, S3Config>,
    /// From the FileIO properties.
    props: Option<S3Config>,
}

/// iceberg `Storage` over `object_store` (see the module docs); built by [`ObjectStorageFactory`].
/// Cheap to clone: clones share the clients.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
#[serde(from = "StorageState", into = "StorageState")]
pub struct ObjectStorage {
    inner: Arc<Inner>,
}

struct Inner {
    state: StorageState,
    /// One client per bucket, built on first use.
    stores: Mutex<HashMap<String, Arc<dyn ObjectStore>>>,
    /// `file://` locations.
    local: Arc<dyn Storage>,
}

impl From<StorageState> for ObjectStorage {
    fn from(state: StorageState) -> Self {
        ObjectStorage::from_parts(state, Arc::new(iceberg::io::LocalFsStorage::new()))
    }
}

impl From<ObjectStorage> for StorageState {
    fn from(storage: ObjectStorage) -> Self {
        storage.inner.state.clone()
    }
}

impl fmt::Debug for ObjectStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = &self.inner.state;
        f.debug_struct("ObjectStorage")
            .field("default", &state.default)
            .field("buckets", &state.buckets)
            .field("props", &state.props)
            .finish_non_exhaustive()
    }
}

/// A location, parsed.
#[derive(Debug, PartialEq)]
enum Location<'a> {
    Local,
    S3 { bucket: &'a str, key: &'a str },
}

fn parse_location(location: &str) -> Result<Location<'_>> {
    if location.starts_with('/') {
        return Ok(Location::Local);
    }
    let Some((scheme, rest)) = location.split_once(':') else {
        return Err(Error::new(
            ErrorKind::DataInvalid,
            format!("{location:?} is not an absolute location (s3://bucket/key or file:///path)"),
        ));
    };
    if scheme.eq_ignore_ascii_case("file") {
        return Ok(Location::Local);
    }
    if !scheme.eq_ignore_ascii_case("s3") && !scheme.eq_ignore_ascii_case("s3a") {
        return Err(Error::new(
            ErrorKind::FeatureUnsupported,
            format!("location {location:?}: the {scheme}:// scheme is not supported (s3://, s3a:// and file:// are)"),
        ));
    }
    let (bucket, key) = rest.strip_prefix("//").map(|r| r.split_once('/').unwrap_or((r, ""))).unwrap_or(("", ""));
    if bucket.is_empty() {
        return Err(Error::new(ErrorKind::DataInvalid, format!("location {location:?} names no bucket")));
    }
    Ok(Location::S3 { bucket, key })
}

/// An object key as an `object_store` path (kept exactly as written).
fn object_path(location: &str, key: &str) -> Result<Path> {
    check_key(key).map_err(|reason| Error::new(ErrorKind::DataInvalid, format!("location {location:?}: {reason}")))?;
    Path::parse(key).map_err(|e| Error::new(ErrorKind::DataInvalid, format!("location {location:?}: {e}")))
}

/// An `object_store` failure on `location`: a missing object is `DataInvalid`, the rest `Unexpected`.
fn store_error(err: object_store::Error, action: &str, location: &str) -> Error {
    let kind = match err {
        object_store::Error::NotFound { .. } => ErrorKind::DataInvalid,
        _ => ErrorKind::Unexpected,
    };
    Error::new(kind, format!("cannot {action} {location}")).with_source(err)
}

fn is_not_found(err: &object_store::Error) -> bool {
    matches!(err, object_store::Error::NotFound { .. })
}

/// Where an operation goes.
enum Target {
    Local,
    Object { store: Arc<dyn ObjectStore>, path: Path },
}

impl ObjectStorage {
    fn from_parts(state: StorageState, local: Arc<dyn Storage>) -> Self {
        ObjectStorage { inner: Arc::new(Inner { state, stores: Mutex::new(HashMap::new()), local }) }
    }

    /// The settings of `bucket`: its own entry, else the default, else the FileIO properties.
    fn config_for(&self, bucket: &str) -> Result<&S3Config> {
        let state = &self.inner.state;
        state.buckets.get(bucket).or(state.default.as_ref()).or(state.props.as_ref()).ok_or_else(|| {
            Error::new(
                ErrorKind::Unexpected,
                format!(
                    "no S3 store is configured for bucket {bucket}: configure [buckets.{bucket}] or [s3] in \
                     spillway.toml (or have the catalog hand out s3.endpoint and s3.access-key-id)"
                ),
            )
        })
    }

    /// The client of `bucket`, built on first use.
    fn store(&self, bucket: &str) -> Result<Arc<dyn ObjectStore>> {
        let stores = || self.inner.stores.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(store) = stores().get(bucket) {
            return Ok(Arc::clone(store));
        }
        let config = self.config_for(bucket)?;
        let (store, _) = S3Bucket::build_store(config, bucket, None).map_err(|e| {
            let kind = match e {
                ObjectError::InvalidBucket { .. } => ErrorKind::DataInvalid,
                _ => ErrorKind::Unexpected,
            };
            Error::new(kind, format!("cannot set up the S3 client of bucket {bucket}: {e}"))
        })?;
        let store: Arc<dyn ObjectStore> = Arc::new(store);
        Ok(Arc::clone(stores().entry(bucket.to_owned()).or_insert(store)))
    }

    /// Where the file `location` is.
    fn target(&self, location: &str) -> Result<Target> {
        match parse_location(location)? {
            Location::Local => Ok(Target::Local),
            Location::S3 { bucket, key } => {
                let path = object_path(location, key)?;
                Ok(Target::Object { store: self.store(bucket)?, path })
            }
        }
    }

    #[cfg(test)]
    fn put_store(&self, bucket: &str, store: Arc<dyn ObjectStore>) {
        self.inner.stores.lock().unwrap_or_else(PoisonError::into_inner).insert(bucket.to_owned(), store);
    }
}

#[async_trait]
#[typetag::serde]
impl Storage for ObjectStorage {
    async fn exists(&self, path: &str) -> Result<bool> {
        match self.target(path)? {
            Target::Local => self.inner.local.exists(path).await,
            Target::Object { store, path: key } => match store.head(&key).await {
                Ok(_) => Ok(true),
                Err(e) if is_not_found(&e) => Ok(false),
                Err(e) => Err(store_error(e, "check", path)),
            },
        }
    }

    async fn metadata(&self, path: &str) -> Result<FileMetadata> {
        match self.target(path)? {
            Target::Local => self.inner.local.metadata(path).await,
            Target::Object { store, path: key } => {
                let meta = store.head(&key).await.map_err(|e| store_error(e, "get the metadata of", path))?;
                Ok(FileMetadata { size: meta.size })
            }
        }
    }

    async fn read(&self, path: &str) -> Result<Bytes> {
        match self.target(path)? {
            Target::Local => self.inner.local.read(path).await,
            Target::Object { store, path: key } => {
                let result = store.get(&key).await.map_err(|e| store_error(e, "read", path))?;
                result.bytes().await.map_err(|e| store_error(e, "read", path))
            }
        }
    }

    async fn reader(&self, path: &str) -> Result<Box<dyn FileRead>> {
        match self.target(path)? {
            Target::Local => self.inner.local.reader(path).await,
            Target::Object { store, path: key } => {
                Ok(Box::new(ObjectFileRead { store, path: key, location: path.to_owned() }))
            }
        }
    }

    async fn write(&self, path: &str, bs: Bytes) -> Result<()> {
        match self.target(path)? {
            Target::Local => self.inner.local.write(path, bs).await,
            Target::Object { store, path: key } => {
                store.put(&key, PutPayload::from(bs)).await.map(drop).map_err(|e| store_error(e, "write", path))
            }
        }
    }

    async fn writer(&self, path: &str) -> Result<Box<dyn FileWrite>> {
        match self.target(path)? {
            Target::Local => self.inner.local.writer(path).await,
            Target::Object { store, path: key } => Ok(Box::new(ObjectFileWrite::new(store, key, path.to_owned()))),
        }
    }

    async fn delete(&self, path: &str) -> Result<()> {
        match self.target(path)? {
            Target::Local => self.inner.local.delete(path).await,
            Target::Object { store, path: key } => match store.delete(&key).await {
                Ok(()) => Ok(()),
                Err(e) if is_not_found(&e) => Ok(()),
                Err(e) => Err(store_error(e, "delete", path)),
            },
        }
    }

    async fn delete_prefix(&self, path: &str) -> Result<()> {
        let (bucket, key) = match parse_location(path)? {
            Location::Local => return self.inner.local.delete_prefix(path).await,
            Location::S3 { bucket, key } => (bucket, key.trim_end_matches('/')),
        };
        if key.is_empty() {
            return Err(Error::new(
                ErrorKind::DataInvalid,
                format!("refusing to delete every object of bucket {bucket} ({path:?} names no prefix)"),
            ));
        }
        let prefix = object_path(path, key)?;
        let store = self.store(bucket)?;
        let locations = store.list(Some(&prefix)).map_ok(|meta| meta.location).boxed();
        store
            .delete_stream(locations)
            .try_for_each(|_| async { Ok(()) })
            .await
            .or_else(|e| if is_not_found(&e) { Ok(()) } else { Err(store_error(e, "delete the files under", path)) })
    }

    async fn delete_stream(&self, paths: BoxStream<'static, String>) -> Result<()> {
        paths
            .map(|path| async move { self.delete(&path).await })
            .buffer_unordered(DELETES_IN_FLIGHT)
            .try_for_each(|()| async { Ok(()) })
            .await
    }

    fn new_input(&self, path: &str) -> Result<InputFile> {
        parse_location(path)?;
        Ok(InputFile::new(Arc::new(self.clone()), path.to_owned()))
    }

    fn new_output(&self, path: &str) -> Result<OutputFile> {
        parse_location(path)?;
        Ok(OutputFile::new(Arc::new(self.clone()), path.to_owned()))
    }
}

/// Ranged GETs of one object.
#[derive(Debug)]
struct ObjectFileRead {
    store: Arc<dyn ObjectStore>,
    path: Path,
    location: String,
}

#[async_trait]
impl FileRead for ObjectFileRead {
    async fn read(&self, range: Range<u64>) -> Result<Bytes> {
        if range.start >= range.end {
            return if range.start == range.end {
                Ok(Bytes::new())
            } else {
                Err(Error::new(
                    ErrorKind::DataInvalid,
                    format!(
                        "cannot read bytes {}..{} of {}: the range is reversed",
                        range.start, range.end, self.location
                    ),
                ))
            };
        }
        let expected = range.end - range.start;
        let bytes =
            self.store.get_range(&self.path, range.clone()).await.map_err(|e| {
                store_error(e, &format!("read bytes {}..{} of", range.start, range.end), &self.location)
            })?;
        if bytes.len() as u64 != expected {
            return Err(Error::new(
                ErrorKind::DataInvalid,
                format!(
                    "cannot read bytes {}..{} of {}: got {} bytes (the object is shorter)",
                    range.start,
                    range.end,
                    self.location,
                    bytes.len()
                ),
            ));
        }
        Ok(bytes)
    }
}

/// Writes one object: one PUT at `close` below [`PART_SIZE`], else a multipart upload.
struct ObjectFileWrite {
    store: Arc<dyn ObjectStore>,
    path: Path,
    location: String,
    /// Bytes not sent yet: less than one part.
    buf: BytesMut,
    /// The multipart upload, from the first full part until it completes or is aborted.
    upload: Option<Box<dyn MultipartUpload>>,
    /// Parts uploading (when a tokio runtime drives them; else each part is awaited in turn).
    parts: JoinSet<object_store::Result<()>>,
    runtime: Option<tokio::runtime::Handle>,
    /// Closed, or failed (after which the upload was aborted).
    closed: bool,
}

impl ObjectFileWrite {
    fn new(store: Arc<dyn ObjectStore>, path: Path, location: String) -> Self {
        ObjectFileWrite {
            store,
            path,
            location,
            buf: BytesMut::new(),
            upload: None,
            parts: JoinSet::new(),
            runtime: tokio::runtime::Handle::try_current().ok(),
            closed: false,
        }
    }

    async fn push(&mut self, mut data: Bytes) -> Result<()> {
        while !data.is_empty() {
            if self.buf.is_empty() && data.len() >= PART_SIZE {
                let part = data.split_to(PART_SIZE);
                self.put_part(part).await?;
                continue;
            }
            let take = (PART_SIZE - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data.split_to(take));
            if self.buf.len() >= PART_SIZE {
                let part = std::mem::replace(&mut self.buf, BytesMut::with_capacity(PART_SIZE)).freeze();
                self.put_part(part).await?;
            }
        }
        Ok(())
    }

    /// Sends one part (starting the upload with the first); waits while too many are in flight.
    async fn put_part(&mut self, part: Bytes) -> Result<()> {
        if self.upload.is_none() {
            let upload = self
                .store
                .put_multipart(&self.path)
                .await
                .map_err(|e| store_error(e, "start a multipart upload of", &self.location))?;
            self.upload = Some(upload);
        }
        let Some(upload) = self.upload.as_mut() else {
            return Err(Error::new(ErrorKind::Unexpected, format!("no multipart upload of {}", self.location)));
        };
        let part = upload.put_part(PutPayload::from(part));
        match &self.runtime {
            Some(runtime) => {
                self.parts.spawn_on(part, runtime);
                while self.parts.len() >= PARTS_IN_FLIGHT {
                    if let Some(joined) = self.parts.join_next().await {
                        self.part_result(joined)?;
                    }
                }
                Ok(())
            }
            None => part.await.map_err(|e| store_error(e, "upload a part of", &self.location)),
        }
    }

    fn part_result(&self, joined: std::result::Result<object_store::Result<()>, JoinError>) -> Result<()> {
        match joined {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(store_error(e, "upload a part of", &self.location)),
            Err(e) => Err(Error::new(ErrorKind::Unexpected, format!("cannot upload a part of {}: {e}", self.location))),
        }
    }

    async fn finish(&mut self) -> Result<()> {
        if self.upload.is_none() {
            let body = std::mem::take(&mut self.buf).freeze();
            return self
                .store
                .put(&self.path, PutPayload::from(body))
                .await
                .map(drop)
                .map_err(|e| store_error(e, "write", &self.location));
        }
        if !self.buf.is_empty() {
            let last = std::mem::take(&mut self.buf).freeze();
            self.put_part(last).await?;
        }
        while let Some(joined) = self.parts.join_next().await {
            self.part_result(joined)?;
        }
        if let Some(upload) = self.upload.as_mut() {
            upload.complete().await.map_err(|e| store_error(e, "complete the multipart upload of", &self.location))?;
        }
        self.upload = None;
        Ok(())
    }

    /// After a failure: stops the parts in flight and aborts the upload.
    async fn abort(&mut self) {
        self.closed = true;
        self.buf = BytesMut::new();
        self.parts.shutdown().await;
        if let Some(mut upload) = self.upload.take()
            && let Err(e) = upload.abort().await
        {
            tracing::warn!(location = %self.location, error = %e, "could not abort a multipart upload");
        }
    }
}

#[async_trait]
impl FileWrite for ObjectFileWrite {
    async fn write(&mut self, bs: Bytes) -> Result<()> {
        if self.closed {
            return Err(Error::new(
                ErrorKind::DataInvalid,
                format!("cannot write {}: the writer is closed", self.location),
            ));
        }
        let result = self.push(bs).await;
        if result.is_err() {
            self.abort().await;
        }
        result
    }

    async fn close(&mut self) -> Result<()> {
        if self.closed {
            return Err(Error::new(ErrorKind::DataInvalid, format!("{} is already closed", self.location)));
        }
        self.closed = true;
        let result = self.finish().await;
        if result.is_err() {
            self.abort().await;
        }
        result
    }
}

impl Drop for ObjectFileWrite {
    fn drop(&mut self) {
        // Dropped unclosed in the middle of a multipart upload: the parts in flight stop with the
        // JoinSet; abort the upload so that the server drops the parts already sent.
        let Some(mut upload) = self.upload.take() else { return };
        let runtime = self.runtime.clone().or_else(|| tokio::runtime::Handle::try_current().ok());
        let location = std::mem::take(&mut self.location);
        match runtime {
            Some(runtime) => {
                runtime.spawn(async move {
                    if let Err(e) = upload.abort().await {
                        tracing::warn!(%location, error = %e, "could not abort a multipart upload");
                    }
                });
            }
            None => tracing::warn!(%location, "a multipart upload was left incomplete (no runtime to abort it)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use iceberg::io::{FileIO, FileIOBuilder};
    use object_store::memory::InMemory;

    fn file_io(factory: ObjectStorageFactory) -> FileIO {
        FileIOBuilder::new(Arc::new(factory)).build()
    }

    fn s3(endpoint: &str) -> S3Config {
        S3Config {
            endpoint: Some(endpoint.to_owned()),
            access_key_id: Some("AKIDEXAMPLE".into()),
            secret_access_key: Some("very-private".into()),
            ..Default::default()
        }
    }

    /// `len` bytes that differ from one part to the next.
    fn body(len: usize) -> Bytes {
        Bytes::from((0..len).map(|i| (i % 251) as u8 ^ (i / 4096) as u8).collect::<Vec<u8>>())
    }

    #[tokio::test]
    async fn file_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let io = file_io(ObjectStorageFactory::default());
        let root = format!("file://{}", dir.path().display());
        let a = format!("{root}/t/metadata/a.json");
        let b = format!("{root}/t/data/b.parquet");

        io.new_output(&a).expect("output").write(Bytes::from_static(b"hello world")).await.expect("write");
        let mut writer = io.new_output(&b).expect("output").writer().await.expect("writer");
        writer.write(Bytes::from_static(b"0123")).await.expect("write");
        writer.write(Bytes::from_static(b"456789")).await.expect("write");
        writer.close().await.expect("close");

        let input = io.new_input(&a).expect("input");
        assert_eq!(input.read().await.expect("read"), Bytes::from_static(b"hello world"));
        assert_eq!(input.metadata().await.expect("metadata").size, 11);
        let reader = io.new_input(&b).expect("input").reader().await.expect("reader");
        assert_eq!(reader.read(2..7).await.expect("range"), Bytes::from_static(b"23456"));
        assert!(io.exists(&a).await.expect("exists"));
        // Bare absolute paths are local too.
        assert!(io.exists(dir.path().join("t/data/b.parquet").to_string_lossy()).await.expect("exists"));

        io.delete(&a).await.expect("delete");
        assert!(!io.exists(&a).await.expect("exists"));
        io.delete(&a).await.expect("deleting a missing file is fine");
        io.delete_prefix(format!("{root}/t")).await.expect("delete_prefix");
        assert!(!io.exists(&b).await.expect("exists"));
        assert!(!dir.path().join("t").exists());
    }

    #[test]
    fn locations() {
        assert_eq!(parse_location("s3://b/k/x.avro").ok(), Some(Location::S3 { bucket: "b", key: "k/x.avro" }));
        assert_eq!(parse_location("S3A://b/k").ok(), Some(Location::S3 { bucket: "b", key: "k" }));
        assert_eq!(parse_location("s3://b").ok(), Some(Location::S3 { bucket: "b", key: "" }));
        assert_eq!(parse_location("file:///tmp/x").ok(), Some(Location::Local));
        assert_eq!(parse_location("/tmp/x").ok(), Some(Location::Local));
        for bad in ["s3:///k", "s3:b/k", "relative/path", ""] {
            let err = parse_location(bad).expect_err(bad);
            assert_eq!(err.kind(), ErrorKind::DataInvalid, "{bad}: {err}");
        }
        let err = parse_location("gs://b/k").expect_err("gs");
        assert_eq!(err.kind(), ErrorKind::FeatureUnsupported);
        assert!(err.to_string().contains("gs://"), "{err}");
        for bad in ["", "a//b", "a/../b", "/a", "a/"] {
            assert!(object_path("s3://b/", bad).is_err(), "{bad:?}");
        }
        // Kept exactly as written.
        assert_eq!(object_path("s3://b/", "p=a%20b/x y").expect("path").as_ref(), "p=a%20b/x y");
    }

    #[test]
    fn bucket_resolution() {
        let factory = ObjectStorageFactory::new(
            Some(s3("http://default.invalid:9000")),
            HashMap::from([("own".to_owned(), s3("http://own.invalid:9000"))]),
        );
        let props = StorageConfig::new()
            .with_prop(S3_ENDPOINT, "http://props.invalid:9000")
            .with_prop(S3_ACCESS_KEY_ID, "AKIDPROPS")
            .with_prop(S3_SECRET_ACCESS_KEY, "props-private")
            .with_prop(S3_REGION, "eu-west-1");
        let storage = factory.storage(&props).expect("storage");
        let endpoint = |s: &ObjectStorage, bucket| s.config_for(bucket).ok().and_then(|c| c.endpoint.clone());
        assert_eq!(endpoint(&storage, "own").as_deref(), Some("http://own.invalid:9000"));
        assert_eq!(endpoint(&storage, "other").as_deref(), Some("http://default.invalid:9000"));
        assert!(storage.store("own").is_ok() && storage.store("other").is_ok());

        let from_props = ObjectStorageFactory::default().storage(&props).expect("storage");
        let cfg = from_props.config_for("any").expect("props config");
        assert_eq!(cfg.endpoint.as_deref(), Some("http://props.invalid:9000"));
        assert_eq!((cfg.region.as_deref(), cfg.access_key_id.as_deref()), (Some("eu-west-1"), Some("AKIDPROPS")));
        assert!(!cfg.virtual_hosted_style, "path style is the default for a custom endpoint");
        let debug = format!("{from_props:?}");
        assert!(!debug.contains("private"), "{debug}");

        let vhost = s3_config_from_props(&HashMap::from([
            (S3_ENDPOINT.to_owned(), "https://s3.example.com".to_owned()),
            (S3_PATH_STYLE_ACCESS.to_owned(), "false".to_owned()),
        ]));
        assert!(vhost.expect("config").virtual_hosted_style);
        let aws = s3_config_from_props(&HashMap::from([(CLIENT_REGION.to_owned(), "eu-north-1".to_owned())]));
        assert!(aws.as_ref().is_some_and(|c| c.virtual_hosted_style && c.endpoint.is_none()), "{aws:?}");
        assert!(s3_config_from_props(&HashMap::from([("other".to_owned(), "x".to_owned())])).is_none());

        let bad = ObjectStorageFactory::default().storage(&StorageConfig::new()).expect("storage");
        assert!(bad.store("bad bucket!").is_err());
    }

    #[tokio::test]
    async fn missing_configuration() {
        let io = file_io(ObjectStorageFactory::default());
        let err = io.new_input("s3://lonely/t/x.json").expect("input").read().await.expect_err("no config");
        let text = err.to_string();
        assert!(text.contains("[buckets.lonely]") && text.contains("[s3]") && text.contains("spillway.toml"), "{text}");
        let err = io.new_input("gs://b/x").expect_err("unsupported scheme");
        assert_eq!(err.kind(), ErrorKind::FeatureUnsupported);
    }

    #[test]
    fn serde_round_trip() {
        let factory = ObjectStorageFactory::new(
            Some(s3("http://default.invalid:9000")),
            HashMap::from([("own".to_owned(), S3Config { virtual_hosted_style: true, ..s3("https://own.invalid") })]),
        );
        let boxed: Box<dyn StorageFactory> = Box::new(factory.clone());
        let json = serde_json::to_string(&boxed).expect("serialize");
        assert!(json.contains("\"type\":\"ObjectStorageFactory\""), "{json}");
        let back: Box<dyn StorageFactory> = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(format!("{back:?}"), format!("{factory:?}"));

        let props = StorageConfig::new().with_prop(S3_ENDPOINT, "http://props.invalid");
        let storage: Box<dyn Storage> = Box::new(factory.storage(&props).expect("storage"));
        let json = serde_json::to_string(&storage).expect("serialize");
        assert!(json.contains("\"type\":\"ObjectStorage\""), "{json}");
        let back: Box<dyn Storage> = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(format!("{back:?}"), format!("{storage:?}"));
        assert!(format!("{back:?}").contains("http://props.invalid"));
    }

    /// The object paths of the storage, against an in-memory store standing in for bucket `mem`.
    #[tokio::test]
    async fn object_round_trip_in_memory() {
        let storage = ObjectStorageFactory::default().storage(&StorageConfig::new()).expect("storage");
        let memory = Arc::new(InMemory::new());
        storage.put_store("mem", memory.clone());
        round_trip(Arc::new(storage), "s3://mem/it").await;
        assert!(memory.list(None).next().await.is_none(), "everything was deleted");
    }

    #[tokio::test]
    async fn writer_abort_and_close_rules() {
        let memory: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let mut writer = ObjectFileWrite::new(memory.clone(), Path::from("big"), "s3://mem/big".into());
        writer.write(body(PART_SIZE + 1)).await.expect("write");
        assert!(writer.upload.is_some());
        drop(writer);
        assert!(memory.head(&Path::from("big")).await.is_err(), "a dropped writer writes nothing");

        let mut writer = ObjectFileWrite::new(memory.clone(), Path::from("small"), "s3://mem/small".into());
        writer.close().await.expect("an empty file");
        assert!(writer.close().await.is_err(), "second close");
        assert!(writer.write(Bytes::from_static(b"x")).await.is_err(), "write after close");
        assert_eq!(memory.head(&Path::from("small")).await.expect("head").size, 0);
    }

    /// write, writer (small and multipart), read, ranged reads, metadata, exists, delete,
    /// delete_prefix and delete_stream under `root`.
    async fn round_trip(storage: Arc<dyn Storage>, root: &str) {
        let small = format!("{root}/metadata/00000-x.metadata.json");
        let big = format!("{root}/data/p=a%20b/big.parquet");
        let streamed = format!("{root}/data/streamed.avro");
        let outside = format!("{root}-sibling/keep.txt");

        storage.write(&small, Bytes::from_static(b"{\"format-version\":2}")).await.expect("write");
        storage.write(&outside, Bytes::from_static(b"keep")).await.expect("write");
        assert_eq!(storage.read(&small).await.expect("read"), Bytes::from_static(b"{\"format-version\":2}"));
        assert_eq!(storage.metadata(&small).await.expect("metadata").size, 20);
        assert!(storage.exists(&small).await.expect("exists"));
        assert!(!storage.exists(&format!("{root}/missing")).await.expect("exists"));
        let err = storage.read(&format!("{root}/missing")).await.expect_err("missing");
        assert_eq!(err.kind(), ErrorKind::DataInvalid, "{err}");

        // 12 MiB + 3 in uneven writes: a multipart upload of two parts.
        let data = body(12 * 1024 * 1024 + 3);
        let output = storage.new_output(&big).expect("output");
        let mut writer = output.writer().await.expect("writer");
        let mut at = 0;
        for (i, step) in [1_000_003usize, 5 * 1024 * 1024, 7, 3 * 1024 * 1024].iter().cycle().enumerate() {
            if at >= data.len() || i > 100 {
                break;
            }
            let end = data.len().min(at + step);
            writer.write(data.slice(at..end)).await.expect("write");
            at = end;
        }
        writer.close().await.expect("close");
        let input = output.to_input_file();
        assert_eq!(input.metadata().await.expect("metadata").size, data.len() as u64);
        assert!(input.read().await.expect("read") == data, "the big file reads back");
        let reader = input.reader().await.expect("reader");
        let cross = PART_SIZE as u64 - 10..PART_SIZE as u64 + 10;
        assert_eq!(
            reader.read(cross.clone()).await.expect("range"),
            data.slice(cross.start as usize..cross.end as usize)
        );
        assert_eq!(reader.read(5..5).await.expect("empty range"), Bytes::new());
        assert!(reader.read(data.len() as u64 - 1..data.len() as u64 + 5).await.is_err(), "short read");

        let mut writer = storage.writer(&streamed).await.expect("writer");
        writer.write(Bytes::from_static(b"a")).await.expect("write");
        writer.write(Bytes::from_static(b"bc")).await.expect("write");
        writer.close().await.expect("close");
        assert_eq!(storage.read(&streamed).await.expect("read"), Bytes::from_static(b"abc"));

        storage.delete(&small).await.expect("delete");
        assert!(!storage.exists(&small).await.expect("exists"));
        storage.delete(&small).await.expect("deleting a missing object is fine");
        storage
            .delete_stream(futures::stream::iter([streamed.clone(), format!("{root}/missing")]).boxed())
            .await
            .expect("delete_stream");
        assert!(!storage.exists(&streamed).await.expect("exists"));
        let bucket_root = root.rsplit_once('/').map_or(root, |(bucket, _)| bucket);
        assert!(storage.delete_prefix(&format!("{bucket_root}/")).await.is_err(), "a whole bucket is refused");
        storage.delete_prefix(&format!("{root}/")).await.expect("delete_prefix");
        assert!(!storage.exists(&big).await.expect("exists"));
        assert!(storage.exists(&outside).await.expect("a sibling prefix is kept"));
        storage.delete(&outside).await.expect("delete");
    }

    /// Against a real S3-compatible server, like `tests/s3_seaweed.rs`: runs when
    /// `SPILLWAY_S3_ENDPOINT`, `SPILLWAY_S3_ACCESS_KEY`, `SPILLWAY_S3_SECRET_KEY` and
    /// `SPILLWAY_S3_BUCKET` are set (`tests/compat/s3server.py` sets them), else passes.
    #[tokio::test]
    async fn s3_round_trip() {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let Some(endpoint) = var("SPILLWAY_S3_ENDPOINT") else {
            println!("skipped: set SPILLWAY_S3_ENDPOINT");
            return;
        };
        let expect = |name: &str| var(name).unwrap_or_else(|| panic!("SPILLWAY_S3_ENDPOINT is set but {name} is not"));
        let (access_key, secret_key, bucket) =
            (expect("SPILLWAY_S3_ACCESS_KEY"), expect("SPILLWAY_S3_SECRET_KEY"), expect("SPILLWAY_S3_BUCKET"));
        let root = format!("s3://{bucket}/it-{}", uuid::Uuid::new_v4().simple());

        // Through the bucket's own entry.
        let config = S3Config {
            endpoint: Some(endpoint.clone()),
            access_key_id: Some(access_key.clone()),
            secret_access_key: Some(secret_key.clone()),
            timeout_secs: Some(30),
            ..Default::default()
        };
        let factory = ObjectStorageFactory::new(None, HashMap::from([(bucket.clone(), config)]));
        let storage = FileIOBuilder::new(Arc::new(factory.clone())).build();
        storage
            .new_output(format!("{root}/fileio.txt"))
            .expect("output")
            .write(Bytes::from_static(b"x"))
            .await
            .expect("put");
        assert!(storage.exists(format!("{root}/fileio.txt")).await.expect("exists"));
        storage.delete_prefix(&root).await.expect("delete_prefix");
        assert!(!storage.exists(format!("{root}/fileio.txt")).await.expect("exists"));
        round_trip(factory.build(&StorageConfig::new()).expect("storage"), &root).await;

        // Through the FileIO properties a REST catalog hands out.
        let props = StorageConfig::new()
            .with_prop(S3_ENDPOINT, &endpoint)
            .with_prop(S3_ACCESS_KEY_ID, &access_key)
            .with_prop(S3_SECRET_ACCESS_KEY, &secret_key);
        let storage = ObjectStorageFactory::default().build(&props).expect("storage");
        let path = format!("{root}/props.txt");
        storage.write(&path, Bytes::from_static(b"props")).await.expect("write");
        assert_eq!(storage.read(&path).await.expect("read"), Bytes::from_static(b"props"));
        storage.delete_prefix(&root).await.expect("delete_prefix");
        assert!(!storage.exists(&path).await.expect("exists"));

        // Wrong keys: an error, not a panic or a hang.
        let wrong = StorageConfig::new()
            .with_prop(S3_ENDPOINT, &endpoint)
            .with_prop(S3_ACCESS_KEY_ID, &access_key)
            .with_prop(S3_SECRET_ACCESS_KEY, "wrong-secret");
        let storage = ObjectStorageFactory::default().build(&wrong).expect("storage");
        let err = storage.write(&path, Bytes::from_static(b"x")).await.expect_err("wrong keys");
        assert_eq!(err.kind(), ErrorKind::Unexpected, "{err}");
        assert!(!err.to_string().contains("wrong-secret"), "{err}");
    }
}
