//! The Iceberg REST catalog client: spillway's own implementation of `iceberg::Catalog` over the
//! Iceberg REST protocol, for catalogs that iceberg-catalog-rest 0.10 cannot talk to (AWS S3
//! Tables and Glue, SeaweedFS: they want SigV4-signed requests) and for commits of arbitrary table
//! updates ([`RestCatalog::commit_updates`], used by compaction).
//!
//! # What it owns
//!
//! The HTTP exchange with one catalog: `GET /v1/config` once in [`RestCatalog::connect`], then the
//! namespace and table endpoints under `/v1/{prefix}/`, their JSON shapes (the REST OpenAPI spec's
//! `CreateNamespaceRequest`, `LoadTableResult`, `CommitTableRequest`, ...; the table metadata,
//! requirements and updates are iceberg's own serde types), the authentication, and the mapping of
//! HTTP answers to `iceberg::Error`. Table data and metadata files are read and written by the
//! `FileIO` each loaded table carries, built from the caller's `StorageFactory`; this module never
//! touches storage itself.
//!
//! # Configuration merge
//!
//! `GET /v1/config[?warehouse=]` answers `{"defaults": {...}, "overrides": {...}}`. The catalog
//! properties are the defaults with the overrides on top. The path prefix is
//! [`RestConfig::prefix`] if set, else the catalog's `prefix` (used verbatim: servers send it
//! already URL-encoded, e.g. an encoded table-bucket ARN); no prefix means `/v1/namespaces/...`.
//! The warehouse location is the catalog's `warehouse` property. A `uri` override is ignored: the
//! configured URI is the only host that ever sees the credentials. Each table's `FileIO` gets the
//! catalog properties, then the table's `config` from its `LoadTableResult` (remembered per table
//! for the tables that commits return), then [`RestConfig::properties`]: the operator's word wins.
//!
//! # Authentication (the SigV4 rule)
//!
//! With [`RestConfig::sigv4`], every request (`/v1/config` included) is signed with AWS SigV4:
//! service `s3tables` unless set, region `us-east-1` unless set, the body's SHA-256 in the
//! signature (no `x-amz-content-sha256` header), the path double-encoded for the canonical request
//! as AWS and botocore do for every service but S3, and the signed headers `host`, `x-amz-date`,
//! `content-type` (when there is a body) and `x-amz-security-token` (with a session token). The
//! keys are both given or both absent; absent means `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`
//! and `AWS_SESSION_TOKEN` read once by `connect`. With [`RestConfig::token`] instead, requests
//! carry `Authorization: Bearer <token>`; the two are exclusive. Neither: requests are anonymous.
//!
//! # Error mapping
//!
//! The REST error model is `{"error": {"message", "type", "code"}}`; the kind comes from the status
//! and the `type`, falling back on what the call was about when the type is missing or unknown:
//!
//! | HTTP | type | `ErrorKind` |
//! |---|---|---|
//! | 404 | `NoSuchTableException` (or a table call) | `TableNotFound` |
//! | 404 | `NoSuchNamespaceException` (or a namespace call) | `NamespaceNotFound` |
//! | 409 | `CommitFailedException` (or a commit) | `CatalogCommitConflicts`, retryable |
//! | 409 | `AlreadyExistsException` | `TableAlreadyExists` / `NamespaceAlreadyExists` by call |
//! | 409 | `NamespaceNotEmptyException` | `PreconditionFailed` |
//! | 400, 422 | any | `DataInvalid` |
//! | 401, 403, 419 | any | `Unexpected`, "access denied: <server's message>" |
//! | 406, 501 | any | `FeatureUnsupported` |
//! | 429, 5xx, no answer, timeout | any | `Unexpected`, retryable |
//! | other | any | `Unexpected` |
//!
//! A commit answered with 5xx (`CommitStateUnknownException` among them) may or may not have
//! happened; it is reported retryable like any 5xx, and iceberg's `Transaction::commit` then
//! reloads the table and re-applies its actions. Conflicts are not retried here: iceberg's
//! `Transaction::commit` retries retryable errors after reloading the table (`commit.retry.*`).
//!
//! # Invariants
//!
//! - Nothing the network sends can make this panic: no `unwrap` on statuses, headers or bodies;
//!   bodies are read up to [`MAX_RESPONSE_BYTES`].
//! - The secret access key, the session token and the bearer token appear in no error, log line
//!   or `Debug` output (the access key id does; [`RestConfig::properties`] values are redacted in
//!   `Debug` when their key names a secret).
//! - Path segments are percent-encoded (everything but RFC 3986 unreserved characters); the
//!   levels of a namespace are joined with the unit separator, `%1F` in paths and query values.
//! - Listings follow `next-page-token` to the end.
//! - One request is bounded by [`RestConfig::timeout_secs`] (default 30 s) from sending to the end
//!   of the body.

use crate::text::{error_chain, preview};
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use iceberg::io::{FileIOBuilder, StorageFactory};

use iceberg::spec::{Schema, SortOrder, TableMetadata, UnboundPartitionSpec};
use iceberg::table::Table;
use iceberg::{
    Catalog, Error, ErrorKind, Namespace, NamespaceIdent, Result, Runtime, TableCommit, TableCreation, TableIdent,
    TableRequirement, TableUpdate,
};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::{Method, Url};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// Default time allowed for one request.
pub const DEFAULT_TIMEOUT_SECS: u64 = 30;
/// Default SigV4 signing region.
pub const DEFAULT_SIGNING_REGION: &str = "us-east-1";
/// Default SigV4 signing service (AWS S3 Tables; Glue's Iceberg endpoint wants `glue`).
pub const DEFAULT_SIGNING_SERVICE: &str = "s3tables";
/// Largest response body read (table metadata with a long history can run to megabytes).
pub const MAX_RESPONSE_BYTES: usize = 256 << 20;
/// Longest piece of an unparseable error body quoted in an error.
/// Most pages one listing follows (a server repeating its page token must not loop forever).
const MAX_PAGES: usize = 100_000;

/// RFC 3986 unreserved characters stay; everything else is `%XX` (the unit separator `%1F`).
const ENCODE_SET: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// How to reach an Iceberg REST catalog (the `[iceberg.rest]`-style table of the configuration).
#[derive(Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestConfig {
    /// Base URL, without `/v1` (e.g. `http://127.0.0.1:8181`,
    /// `https://s3tables.us-east-1.amazonaws.com/iceberg`).
    pub uri: String,
    /// Sent as `?warehouse=` on `GET /v1/config` (a name, or an S3 Tables table-bucket ARN).
    pub warehouse: Option<String>,
    /// Overrides the path prefix `/v1/config` returns (used verbatim: already URL-encoded).
    pub prefix: Option<String>,
    /// Static bearer token (`Authorization: Bearer`); exclusive with `sigv4`.
    pub token: Option<String>,
    /// Sign every request with AWS SigV4.
    pub sigv4: Option<SigV4Config>,
    /// Time allowed for one request, in seconds; default 30.
    pub timeout_secs: Option<u64>,
    /// Extra `FileIO` properties for every table (they win over what the catalog sends).
    #[serde(default)]
    pub properties: HashMap<String, String>,
}

/// SigV4 signing of catalog requests.
#[derive(Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SigV4Config {
    /// Signing region; default `us-east-1`.
    pub region: Option<String>,
    /// Signing service; default `s3tables`.
    pub service: Option<String>,
    /// Static credentials, both or neither; neither: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`
    /// (and `AWS_SESSION_TOKEN`) from the environment.
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub session_token: Option<String>,
}

const REDACTED: &str = "** redacted **";

/// Whether a property's value is a secret (by its key: `s3.secret-access-key`, `s3.session-token`,
/// `token`, `credential`, `...password`).
fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["secret", "token", "password", "credential"].iter().any(|word| key.contains(word))
}

fn redacted_properties(props: &HashMap<String, String>) -> Vec<(&str, &str)> {
    let mut out: Vec<(&str, &str)> =
        props.iter().map(|(k, v)| (k.as_str(), if is_secret_key(k) { REDACTED } else { v.as_str() })).collect();
    out.sort_unstable();
    out
}

impl fmt::Debug for RestConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RestConfig")
            .field("uri", &self.uri)
            .field("warehouse", &self.warehouse)
            .field("prefix", &self.prefix)
            .field("token", &self.token.as_ref().map(|_| REDACTED))
            .field("sigv4", &self.sigv4)
            .field("timeout_secs", &self.timeout_secs)
            .field("properties", &redacted_properties(&self.properties))
            .finish()
    }
}

impl fmt::Debug for SigV4Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigV4Config")
            .field("region", &self.region)
            .field("service", &self.service)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &self.secret_access_key.as_ref().map(|_| REDACTED))
            .field("session_token", &self.session_token.as_ref().map(|_| REDACTED))
            .finish()
    }
}

/// How requests are authenticated.
enum Auth {
    None,
    Bearer(String),
    SigV4 { region: String, service: String, credentials: aws_credential_types::Credentials },
}

/// What a call is about: decides the error kind when the server's error type does not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Subject {
    Namespace,
    Table,
    Commit,
    Other,
}

/// The endpoints of one catalog (pure string building, see the module docs for the encoding).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Endpoints {
    /// `<uri without trailing slash>/v1`.
    v1: String,
    /// `<v1>` or `<v1>/<prefix>`.
    root: String,
}

/// One path segment, percent-encoded.
fn encode(segment: &str) -> String {
    utf8_percent_encode(segment, ENCODE_SET).to_string()
}

/// A namespace as one path segment (or query value): levels joined by `%1F`.
fn namespace_segment(ns: &NamespaceIdent) -> String {
    ns.iter().map(|level| encode(level)).collect::<Vec<_>>().join("%1F")
}

impl Endpoints {
    fn new(uri: &str, prefix: Option<&str>) -> Self {
        let v1 = format!("{}/v1", uri.trim_end_matches('/'));
        let root = match prefix.map(|p| p.trim_matches('/')).filter(|p| !p.is_empty()) {
            Some(p) => format!("{v1}/{p}"),
            None => v1.clone(),
        };
        Endpoints { v1, root }
    }

    fn config(&self, warehouse: Option<&str>) -> String {
        match warehouse {
            Some(w) => format!("{}/config?warehouse={}", self.v1, encode(w)),
            None => format!("{}/config", self.v1),
        }
    }

    fn namespaces(&self, parent: Option<&NamespaceIdent>, page_token: Option<&str>) -> String {
        let mut query = Vec::new();
        if let Some(parent) = parent {
            query.push(format!("parent={}", namespace_segment(parent)));
        }
        if let Some(token) = page_token {
            query.push(format!("pageToken={}", encode(token)));
        }
        with_query(format!("{}/namespaces", self.root), &query)
    }

    fn namespace(&self, ns: &NamespaceIdent) -> String {
        format!("{}/namespaces/{}", self.root, namespace_segment(ns))
    }

    fn namespace_properties(&self, ns: &NamespaceIdent) -> String {
        format!("{}/properties", self.namespace(ns))
    }

    fn tables(&self, ns: &NamespaceIdent, page_token: Option<&str>) -> String {
        let query: Vec<String> = page_token.map(|t| format!("pageToken={}", encode(t))).into_iter().collect();
        with_query(format!("{}/tables", self.namespace(ns)), &query)
    }

    fn table(&self, ident: &TableIdent) -> String {
        format!("{}/tables/{}", self.namespace(ident.namespace()), encode(ident.name()))
    }

    fn register(&self, ns: &NamespaceIdent) -> String {
        format!("{}/register", self.namespace(ns))
    }

    fn rename(&self) -> String {
        format!("{}/tables/rename", self.root)
    }
}

fn with_query(path: String, query: &[String]) -> String {
    if query.is_empty() { path } else { format!("{path}?{}", query.join("&")) }
}

// ---- wire shapes (the REST OpenAPI spec's; unknown fields are ignored) ----

#[derive(Deserialize, Default)]
struct ConfigResponse {
    #[serde(default)]
    defaults: Option<HashMap<String, String>>,
    #[serde(default)]
    overrides: Option<HashMap<String, String>>,
}

#[derive(Deserialize)]
struct ListNamespacesResponse {
    namespaces: Vec<Vec<String>>,
    #[serde(default, rename = "next-page-token")]
    next_page_token: Option<String>,
}

#[derive(Deserialize)]
struct NamespaceResponse {
    namespace: Vec<String>,
    #[serde(default)]
    properties: Option<HashMap<String, String>>,
}

#[derive(Deserialize)]
struct ListTablesResponse {
    identifiers: Vec<TableIdent>,
    #[serde(default, rename = "next-page-token")]
    next_page_token: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct LoadTableResult {
    #[serde(default)]
    metadata_location: Option<String>,
    metadata: TableMetadata,
    #[serde(default)]
    config: Option<HashMap<String, String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct CommitTableResponse {
    metadata_location: String,
    metadata: TableMetadata,
}

#[derive(serde::Serialize)]
struct CreateNamespaceRequest<'a> {
    namespace: &'a [String],
    properties: &'a HashMap<String, String>,
}

#[derive(serde::Serialize)]
struct UpdateNamespacePropertiesRequest {
    removals: Vec<String>,
    updates: HashMap<String, String>,
}

#[derive(serde::Serialize)]
#[serde(rename_all = "kebab-case")]
struct CreateTableRequest<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    location: Option<&'a str>,
    schema: &'a Schema,
    #[serde(skip_serializing_if = "Option::is_none")]
    partition_spec: Option<&'a UnboundPartitionSpec>,
    #[serde(skip_serializing_if = "Option::is_none")]
    write_order: Option<&'a SortOrder>,
    stage_create: bool,
    #[serde(skip_serializing_if = "HashMap::is_empty")]
    properties: &'a HashMap<String, String>,
}

#[derive(serde::Serialize)]
struct CommitTableRequest<'a> {
    identifier: &'a TableIdent,
    requirements: Vec<TableRequirement>,
    updates: Vec<TableUpdate>,
}

#[derive(serde::Serialize)]
struct RenameTableRequest<'a> {
    source: &'a TableIdent,
    destination: &'a TableIdent,
}

#[derive(serde::Serialize)]
#[serde(rename_all = "kebab-case")]
struct RegisterTableRequest<'a> {
    name: &'a str,
    metadata_location: &'a str,
}

/// An Iceberg REST catalog (see the module docs).
pub struct RestCatalog {
    name: String,
    client: reqwest::Client,
    endpoints: Endpoints,
    auth: Auth,
    timeout: Duration,
    /// The catalog's properties: `/v1/config` defaults with its overrides on top.
    catalog_props: HashMap<String, String>,
    /// [`RestConfig::properties`].
    user_props: HashMap<String, String>,
    warehouse_location: Option<String>,
    storage: Arc<dyn StorageFactory>,
    runtime: Runtime,
    /// The `config` of each table's last `LoadTableResult`, for the tables commits return.
    table_configs: Mutex<HashMap<TableIdent, HashMap<String, String>>>,
}

impl fmt::Debug for RestCatalog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let auth = match &self.auth {
            Auth::None => "none".to_string(),
            Auth::Bearer(_) => "bearer token".to_string(),
            Auth::SigV4 { region, service, credentials } => {
                format!("sigv4 {service}/{region} as {}", credentials.access_key_id())
            }
        };
        f.debug_struct("RestCatalog")
            .field("name", &self.name)
            .field("root", &self.endpoints.root)
            .field("warehouse_location", &self.warehouse_location)
            .field("auth", &auth)
            .field("timeout", &self.timeout)
            .field("catalog_props", &redacted_properties(&self.catalog_props))
            .field("user_props", &redacted_properties(&self.user_props))
            .finish_non_exhaustive()
    }
}

fn invalid_config(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::DataInvalid, format!("invalid REST catalog configuration: {}", message.into()))
}

/// Checks the base URI: http(s), a host, no credentials, query or fragment.
fn check_uri(uri: &str) -> Result<()> {
    let bad = |reason: &str| invalid_config(format!("uri {uri:?} {reason}"));
    let url = Url::parse(uri).map_err(|e| bad(&format!("is not a valid URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("must be http or https"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("must not carry credentials"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("must not have a query or fragment"));
    }
    Ok(())
}

/// Non-empty printable ASCII without spaces (what can go in a header or a signature).
fn header_safe(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic())
}

fn build_auth(config: &RestConfig) -> Result<Auth> {
    match (&config.token, &config.sigv4) {
        (Some(_), Some(_)) => Err(invalid_config("token and sigv4 cannot both be set")),
        (Some(token), None) => {
            if !header_safe(token) {
                return Err(invalid_config("token must be non-empty printable ASCII without spaces"));
            }
            Ok(Auth::Bearer(token.clone()))
        }
        (None, None) => Ok(Auth::None),
        (None, Some(s)) => {
            let region = s.region.clone().unwrap_or_else(|| DEFAULT_SIGNING_REGION.to_string());
            let service = s.service.clone().unwrap_or_else(|| DEFAULT_SIGNING_SERVICE.to_string());
            if !header_safe(&region) {
                return Err(invalid_config("sigv4.region must be a region name without spaces"));
            }
            if !header_safe(&service) {
                return Err(invalid_config("sigv4.service must be a service name without spaces"));
            }
            let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
            let (access, secret, session, source) = match (&s.access_key_id, &s.secret_access_key) {
                (Some(a), Some(k)) => (a.clone(), k.clone(), s.session_token.clone(), "spillway configuration"),
                (None, None) => {
                    if s.session_token.is_some() {
                        return Err(invalid_config("sigv4.session_token needs access_key_id and secret_access_key"));
                    }
                    match (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) {
                        (Some(a), Some(k)) => (a, k, env("AWS_SESSION_TOKEN"), "environment"),
                        _ => {
                            return Err(invalid_config(
                                "sigv4 has no access_key_id/secret_access_key, and AWS_ACCESS_KEY_ID and \
                                 AWS_SECRET_ACCESS_KEY are not both set",
                            ));
                        }
                    }
                }
                _ => return Err(invalid_config("sigv4.access_key_id and secret_access_key go together")),
            };
            for (field, value) in [
                ("access key id", Some(&access)),
                ("secret access key", Some(&secret)),
                ("session token", session.as_ref()),
            ] {
                if value.is_some_and(|v| !header_safe(v)) {
                    return Err(invalid_config(format!("the sigv4 {field} must be printable ASCII without spaces")));
                }
            }
            let credentials = aws_credential_types::Credentials::new(access, secret, session, None, source);
            Ok(Auth::SigV4 { region, service, credentials })
        }
    }
}

/// Maps a non-2xx answer to an `iceberg::Error` (see the table in the module docs). `what` names
/// the call ("load table ns.t").
fn http_error(status: u16, body: &[u8], subject: Subject, what: &str) -> Error {
    let json: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let model = json.as_ref().and_then(|v| v.get("error")).and_then(|v| v.as_object());
    let text = |name: &str| model.and_then(|m| m.get(name)).and_then(|v| v.as_str()).map(str::trim).map(str::to_string);
    let error_type = text("type").filter(|t| !t.is_empty());
    let message = text("message").filter(|m| !m.is_empty()).unwrap_or_else(|| {
        let p = preview(body);
        if p.is_empty() { "(no details)".to_string() } else { p }
    });
    let typed = match &error_type {
        Some(t) => format!("{t}: {message}"),
        None => message.clone(),
    };
    let t = error_type.as_deref().unwrap_or("");
    let (kind, retryable, detail) = match status {
        404 => {
            let kind = match (t, subject) {
                ("NoSuchTableException", _) => ErrorKind::TableNotFound,
                ("NoSuchNamespaceException", _) => ErrorKind::NamespaceNotFound,
                ("NoSuchViewException", _) => ErrorKind::Unexpected,
                // No type, or a router's "not found": the thing the call was about is missing.
                (_, Subject::Table | Subject::Commit) => ErrorKind::TableNotFound,
                (_, Subject::Namespace) => ErrorKind::NamespaceNotFound,
                (_, Subject::Other) => ErrorKind::Unexpected,
            };
            (kind, false, typed)
        }
        409 => {
            let already_exists = match subject {
                Subject::Namespace => ErrorKind::NamespaceAlreadyExists,
                Subject::Table => ErrorKind::TableAlreadyExists,
                Subject::Commit => ErrorKind::CatalogCommitConflicts,
                Subject::Other => ErrorKind::Unexpected,
            };
            let kind = match t {
                "CommitFailedException" => ErrorKind::CatalogCommitConflicts,
                "NamespaceNotEmptyException" => ErrorKind::PreconditionFailed,
                "AlreadyExistsException" | "" => already_exists,
                // Every 409 of the commit endpoint is a failed requirement.
                _ if subject == Subject::Commit => ErrorKind::CatalogCommitConflicts,
                _ => ErrorKind::Unexpected,
            };
            (kind, kind == ErrorKind::CatalogCommitConflicts, typed)
        }
        400 | 422 => (ErrorKind::DataInvalid, false, typed),
        401 | 403 | 419 => (ErrorKind::Unexpected, false, format!("access denied: {typed}")),
        406 | 501 => (ErrorKind::FeatureUnsupported, false, typed),
        429 | 500..=599 => (ErrorKind::Unexpected, true, typed),
        _ => (ErrorKind::Unexpected, false, typed),
    };
    let mut error = Error::new(kind, format!("{what}: HTTP {status}: {detail}")).with_retryable(retryable);
    error = error.with_context("status", status.to_string());
    if let Some(t) = error_type {
        error = error.with_context("type", t);
    }
    error
}

fn parse<T: DeserializeOwned>(body: &[u8], what: &str) -> Result<T> {
    serde_json::from_slice(body).map_err(|e| {
        Error::new(ErrorKind::Unexpected, format!("{what}: the catalog's answer is not what the REST spec says: {e}"))
    })
}

fn namespace_from(levels: Vec<String>, what: &str) -> Result<NamespaceIdent> {
    NamespaceIdent::from_vec(levels)
        .map_err(|_| Error::new(ErrorKind::Unexpected, format!("{what}: the catalog answered an empty namespace")))
}

impl RestCatalog {
    /// GET /v1/config (?warehouse=), merges defaults/overrides (prefix, warehouse location),
    /// builds the HTTP client. Tables get `FileIO`s from `storage`.
    pub async fn connect(name: &str, config: RestConfig, storage: Arc<dyn StorageFactory>) -> Result<Self> {
        check_uri(&config.uri)?;
        let timeout_secs = config.timeout_secs.unwrap_or(DEFAULT_TIMEOUT_SECS);
        if timeout_secs == 0 {
            return Err(invalid_config("timeout_secs must be at least 1"));
        }
        if config.prefix.as_deref().is_some_and(|p| p.contains(['?', '#'])) {
            return Err(invalid_config("prefix must not contain '?' or '#'"));
        }
        let auth = build_auth(&config)?;
        let timeout = Duration::from_secs(timeout_secs);
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("spillway/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
                Error::new(ErrorKind::Unexpected, format!("cannot build the HTTP client: {}", error_chain(&e)))
            })?;
        let runtime = Runtime::try_current()?;
        let mut catalog = RestCatalog {
            name: name.to_string(),
            client,
            endpoints: Endpoints::new(&config.uri, None),
            auth,
            timeout,
            catalog_props: HashMap::new(),
            user_props: config.properties,
            warehouse_location: None,
            storage,
            runtime,
            table_configs: Mutex::new(HashMap::new()),
        };
        let url = catalog.endpoints.config(config.warehouse.as_deref());
        let answer: ConfigResponse =
            catalog.call(Method::GET, &url, None, Subject::Other, "get the catalog config").await?;
        let mut props = answer.defaults.unwrap_or_default();
        props.extend(answer.overrides.unwrap_or_default());
        let prefix = config.prefix.clone().or_else(|| props.get("prefix").cloned());
        if prefix.as_deref().is_some_and(|p| p.contains(['?', '#'])) {
            return Err(Error::new(
                ErrorKind::Unexpected,
                "get the catalog config: the catalog's prefix contains '?' or '#'",
            ));
        }
        catalog.endpoints = Endpoints::new(&config.uri, prefix.as_deref());
        catalog.warehouse_location = props.get("warehouse").filter(|w| !w.is_empty()).cloned();
        catalog.catalog_props = props;
        Ok(catalog)
    }

    /// The warehouse location the catalog reported (config `warehouse` default/override), if any.
    pub fn warehouse_location(&self) -> Option<&str> {
        self.warehouse_location.as_deref()
    }

    /// POST /v1/{prefix}/namespaces/{ns}/tables/{table} with {identifier, requirements, updates};
    /// returns the committed table. A failed requirement is `CatalogCommitConflicts` (retryable):
    /// reload the table and try again.
    pub async fn commit_updates(
        &self,
        ident: &TableIdent,
        requirements: Vec<TableRequirement>,
        updates: Vec<TableUpdate>,
    ) -> Result<Table> {
        let what = format!("commit to table {ident}");
        let body = json_body(&CommitTableRequest { identifier: ident, requirements, updates }, &what)?;
        let answer: CommitTableResponse =
            self.call(Method::POST, &self.endpoints.table(ident), Some(body), Subject::Commit, &what).await?;
        let config = self.table_config(ident);
        self.table(ident.clone(), Some(answer.metadata_location), answer.metadata, config)
    }

    /// The table config last seen for `ident` (empty if none).
    fn table_config(&self, ident: &TableIdent) -> HashMap<String, String> {
        let configs = self.table_configs.lock().unwrap_or_else(|e| e.into_inner());
        configs.get(ident).cloned().unwrap_or_default()
    }

    /// A table from a `LoadTableResult`, remembering its config.
    fn loaded(&self, ident: TableIdent, result: LoadTableResult, what: &str, need_location: bool) -> Result<Table> {
        if need_location && result.metadata_location.is_none() {
            return Err(Error::new(
                ErrorKind::Unexpected,
                format!("{what}: the catalog's answer has no metadata-location"),
            ));
        }
        let config = result.config.unwrap_or_default();
        {
            let mut configs = self.table_configs.lock().unwrap_or_else(|e| e.into_inner());
            configs.insert(ident.clone(), config.clone());
        }
        self.table(ident, result.metadata_location, result.metadata, config)
    }

    fn table(
        &self,
        ident: TableIdent,
        metadata_location: Option<String>,
        metadata: TableMetadata,
        table_config: HashMap<String, String>,
    ) -> Result<Table> {
        let mut props = self.catalog_props.clone();
        props.extend(table_config);
        props.extend(self.user_props.iter().map(|(k, v)| (k.clone(), v.clone())));
        let file_io = FileIOBuilder::new(self.storage.clone()).with_props(props).build();
        let mut builder =
            Table::builder().identifier(ident).metadata(metadata).file_io(file_io).runtime(self.runtime.clone());
        if let Some(location) = metadata_location {
            builder = builder.metadata_location(location);
        }
        builder.build()
    }

    /// Sends one request and reads the whole answer: (status, body).
    async fn send(&self, method: Method, url: &str, body: Option<Vec<u8>>, what: &str) -> Result<(u16, Vec<u8>)> {
        let unexpected = |message: String| Error::new(ErrorKind::Unexpected, format!("{what}: {message}"));
        let url = Url::parse(url).map_err(|e| unexpected(format!("bad request URL {url:?}: {e}")))?;
        let mut headers: Vec<(&str, &str)> = Vec::new();
        if body.is_some() {
            headers.push(("content-type", "application/json"));
        }
        let mut builder = self.client.request(method.clone(), url.clone()).header("accept", "application/json");
        for (name, value) in &headers {
            builder = builder.header(*name, *value);
        }
        match &self.auth {
            Auth::None => {}
            Auth::Bearer(token) => builder = builder.bearer_auth(token),
            Auth::SigV4 { region, service, credentials } => {
                let identity = credentials.clone().into();
                let cannot_sign = |e: &dyn std::error::Error| unexpected(format!("cannot sign the request: {e}"));
                let params = v4::SigningParams::builder()
                    .identity(&identity)
                    .region(region)
                    .name(service)
                    .time(SystemTime::now())
                    .settings(SigningSettings::default())
                    .build()
                    .map_err(|e| cannot_sign(&e))?
                    .into();
                let payload = body.as_deref().unwrap_or_default();
                let signable = SignableRequest::new(
                    method.as_str(),
                    url.as_str(),
                    headers.iter().copied(),
                    SignableBody::Bytes(payload),
                )
                .map_err(|e| cannot_sign(&e))?;
                let (instructions, _signature) = sign(signable, &params).map_err(|e| cannot_sign(&e))?.into_parts();
                for (name, value) in instructions.headers() {
                    builder = builder.header(name, value);
                }
            }
        }
        if let Some(body) = body {
            builder = builder.body(body);
        }
        let request = builder.build().map_err(|e| unexpected(error_chain(&e)))?;
        let unreachable = |e: reqwest::Error| {
            Error::new(ErrorKind::Unexpected, format!("{what}: {method} {url}: {}", error_chain(&e)))
                .with_retryable(true)
        };
        let mut response = self.client.execute(request).await.map_err(unreachable)?;
        let status = response.status().as_u16();
        if response.content_length().is_some_and(|n| n > MAX_RESPONSE_BYTES as u64) {
            return Err(unexpected(format!("the answer is larger than {MAX_RESPONSE_BYTES} bytes")));
        }
        let mut answer = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(unreachable)? {
            if answer.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(unexpected(format!("the answer is larger than {MAX_RESPONSE_BYTES} bytes")));
            }
            answer.extend_from_slice(&chunk);
        }
        Ok((status, answer))
    }

    /// A call whose 2xx answer is JSON `T`.
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        url: &str,
        body: Option<Vec<u8>>,
        subject: Subject,
        what: &str,
    ) -> Result<T> {
        let (status, answer) = self.send(method, url, body, what).await?;
        if !(200..300).contains(&status) {
            return Err(http_error(status, &answer, subject, what));
        }
        parse(&answer, what)
    }

    /// A call whose 2xx answer carries nothing we need.
    async fn call_empty(
        &self,
        method: Method,
        url: &str,
        body: Option<Vec<u8>>,
        subject: Subject,
        what: &str,
    ) -> Result<()> {
        let (status, answer) = self.send(method, url, body, what).await?;
        if !(200..300).contains(&status) {
            return Err(http_error(status, &answer, subject, what));
        }
        Ok(())
    }

    /// HEAD `url`: 2xx → true, 404 → false. Servers without HEAD (405, 501) get a GET instead.
    async fn exists(&self, url: &str, subject: Subject, what: &str) -> Result<bool> {
        let (status, answer) = self.send(Method::HEAD, url, None, what).await?;
        let (status, answer) =
            if matches!(status, 405 | 501) { self.send(Method::GET, url, None, what).await? } else { (status, answer) };
        match status {
            200..=299 => Ok(true),
            404 => Ok(false),
            _ => Err(http_error(status, &answer, subject, what)),
        }
    }

    async fn get_namespace_properties(&self, namespace: &NamespaceIdent, what: &str) -> Result<Namespace> {
        let answer: NamespaceResponse =
            self.call(Method::GET, &self.endpoints.namespace(namespace), None, Subject::Namespace, what).await?;
        let name = namespace_from(answer.namespace, what)?;
        Ok(Namespace::with_properties(name, answer.properties.unwrap_or_default()))
    }
}

fn json_body<T: serde::Serialize>(value: &T, what: &str) -> Result<Vec<u8>> {
    serde_json::to_vec(value)
        .map_err(|e| Error::new(ErrorKind::DataInvalid, format!("{what}: cannot serialize the request: {e}")))
}

/// Follows `next-page-token`s: `fetch(token)` returns a page and the next token.
async fn all_pages<T, F, Fut>(what: &str, mut fetch: F) -> Result<Vec<T>>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: Future<Output = Result<(Vec<T>, Option<String>)>>,
{
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    let mut seen = HashSet::new();
    for _ in 0..MAX_PAGES {
        let (items, next) = fetch(token.take()).await?;
        out.extend(items);
        match next.filter(|t| !t.is_empty()) {
            None => return Ok(out),
            Some(next) => {
                if !seen.insert(next.clone()) {
                    return Err(Error::new(
                        ErrorKind::Unexpected,
                        format!("{what}: the catalog repeated the page token {next:?}"),
                    ));
                }
                token = Some(next);
            }
        }
    }
    Err(Error::new(ErrorKind::Unexpected, format!("{what}: more than {MAX_PAGES} pages")))
}

#[async_trait::async_trait]
impl Catalog for RestCatalog {
    async fn list_namespaces(&self, parent: Option<&NamespaceIdent>) -> Result<Vec<NamespaceIdent>> {
        let what = match parent {
            Some(p) => format!("list the namespaces in {p}"),
            None => "list the namespaces".to_string(),
        };
        let pages = all_pages(&what, |token| {
            let url = self.endpoints.namespaces(parent, token.as_deref());
            let what = what.clone();
            async move {
                let page: ListNamespacesResponse =
                    self.call(Method::GET, &url, None, Subject::Namespace, &what).await?;
                Ok((page.namespaces, page.next_page_token))
            }
        })
        .await?;
        pages.into_iter().map(|levels| namespace_from(levels, &what)).collect()
    }

    async fn create_namespace(
        &self,
        namespace: &NamespaceIdent,
        properties: HashMap<String, String>,
    ) -> Result<Namespace> {
        let what = format!("create namespace {namespace}");
        let body = json_body(&CreateNamespaceRequest { namespace, properties: &properties }, &what)?;
        let answer: NamespaceResponse = self
            .call(Method::POST, &self.endpoints.namespaces(None, None), Some(body), Subject::Namespace, &what)
            .await?;
        let name = namespace_from(answer.namespace, &what)?;
        Ok(Namespace::with_properties(name, answer.properties.unwrap_or(properties)))
    }

    async fn get_namespace(&self, namespace: &NamespaceIdent) -> Result<Namespace> {
        self.get_namespace_properties(namespace, &format!("get namespace {namespace}")).await
    }

    async fn namespace_exists(&self, namespace: &NamespaceIdent) -> Result<bool> {
        self.exists(&self.endpoints.namespace(namespace), Subject::Namespace, &format!("check namespace {namespace}"))
            .await
    }

    /// Makes `properties` the namespace's full set: what it has and `properties` lacks is removed.
    async fn update_namespace(&self, namespace: &NamespaceIdent, properties: HashMap<String, String>) -> Result<()> {
        let what = format!("update namespace {namespace}");
        let current = self.get_namespace_properties(namespace, &what).await?;
        let mut removals: Vec<String> =
            current.properties().keys().filter(|k| !properties.contains_key(*k)).cloned().collect();
        removals.sort_unstable();
        let body = json_body(&UpdateNamespacePropertiesRequest { removals, updates: properties }, &what)?;
        let url = self.endpoints.namespace_properties(namespace);
        self.call_empty(Method::POST, &url, Some(body), Subject::Namespace, &what).await
    }

    async fn drop_namespace(&self, namespace: &NamespaceIdent) -> Result<()> {
        let what = format!("drop namespace {namespace}");
        self.call_empty(Method::DELETE, &self.endpoints.namespace(namespace), None, Subject::Namespace, &what).await
    }

    async fn list_tables(&self, namespace: &NamespaceIdent) -> Result<Vec<TableIdent>> {
        let what = format!("list the tables of {namespace}");
        all_pages(&what, |token| {
            let url = self.endpoints.tables(namespace, token.as_deref());
            let what = what.clone();
            async move {
                let page: ListTablesResponse = self.call(Method::GET, &url, None, Subject::Namespace, &what).await?;
                Ok((page.identifiers, page.next_page_token))
            }
        })
        .await
    }

    async fn create_table(&self, namespace: &NamespaceIdent, creation: TableCreation) -> Result<Table> {
        let ident = TableIdent::new(namespace.clone(), creation.name.clone());
        let what = format!("create table {ident}");
        let request = CreateTableRequest {
            name: &creation.name,
            location: creation.location.as_deref(),
            schema: &creation.schema,
            partition_spec: creation.partition_spec.as_ref(),
            write_order: creation.sort_order.as_ref(),
            stage_create: false,
            properties: &creation.properties,
        };
        // The format version travels as the table property the spec reserves for it.
        let mut body = serde_json::to_value(&request)
            .map_err(|e| Error::new(ErrorKind::DataInvalid, format!("{what}: cannot serialize the request: {e}")))?;
        if let Some(props) = body.as_object_mut() {
            let entry = props.entry("properties").or_insert_with(|| serde_json::json!({}));
            if let Some(map) = entry.as_object_mut() {
                map.entry("format-version").or_insert_with(|| (creation.format_version as u8).to_string().into());
            }
        }
        let body = json_body(&body, &what)?;
        let url = self.endpoints.tables(namespace, None);
        let answer: LoadTableResult = self.call(Method::POST, &url, Some(body), Subject::Table, &what).await?;
        self.loaded(ident, answer, &what, true)
    }

    async fn load_table(&self, table: &TableIdent) -> Result<Table> {
        let what = format!("load table {table}");
        let answer: LoadTableResult =
            self.call(Method::GET, &self.endpoints.table(table), None, Subject::Table, &what).await?;
        self.loaded(table.clone(), answer, &what, false)
    }

    async fn drop_table(&self, table: &TableIdent) -> Result<()> {
        let what = format!("drop table {table}");
        self.call_empty(Method::DELETE, &self.endpoints.table(table), None, Subject::Table, &what).await
    }

    /// Drops the table with `purgeRequested=true`: the catalog deletes the files.
    async fn purge_table(&self, table: &TableIdent) -> Result<()> {
        let what = format!("purge table {table}");
        let url = format!("{}?purgeRequested=true", self.endpoints.table(table));
        self.call_empty(Method::DELETE, &url, None, Subject::Table, &what).await
    }

    async fn table_exists(&self, table: &TableIdent) -> Result<bool> {
        self.exists(&self.endpoints.table(table), Subject::Table, &format!("check table {table}")).await
    }

    async fn rename_table(&self, src: &TableIdent, dest: &TableIdent) -> Result<()> {
        let what = format!("rename table {src} to {dest}");
        let body = json_body(&RenameTableRequest { source: src, destination: dest }, &what)?;
        self.call_empty(Method::POST, &self.endpoints.rename(), Some(body), Subject::Table, &what).await
    }

    async fn register_table(&self, table: &TableIdent, metadata_location: String) -> Result<Table> {
        let what = format!("register table {table}");
        let request = RegisterTableRequest { name: table.name(), metadata_location: &metadata_location };
        let body = json_body(&request, &what)?;
        let url = self.endpoints.register(table.namespace());
        let answer: LoadTableResult = self.call(Method::POST, &url, Some(body), Subject::Table, &what).await?;
        self.loaded(table.clone(), answer, &what, true)
    }

    async fn update_table(&self, mut commit: TableCommit) -> Result<Table> {
        let ident = commit.identifier().clone();
        self.commit_updates(&ident, commit.take_requirements(), commit.take_updates()).await
    }
}

#[cfg(test)]
mod tests {
    //! What needs no catalog: URLs, error mapping, configuration, redaction; and one exchange with
    //! a scripted loopback HTTP server (canned answers, recorded requests) for the request plumbing.
    //! The real protocol is exercised against SeaweedFS by `tests/iceberg_rest.rs`.

    use super::*;
    use iceberg::io::LocalFsStorageFactory;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn ns(levels: &[&str]) -> NamespaceIdent {
        NamespaceIdent::from_strs(levels).expect("namespace")
    }

    #[test]
    fn endpoints_encode_names_and_join_levels_with_unit_separator() {
        let e = Endpoints::new("http://127.0.0.1:8181/", Some("warehouse"));
        assert_eq!(e.config(None), "http://127.0.0.1:8181/v1/config");
        assert_eq!(
            e.config(Some("arn:aws:s3tables:us-east-1:123:bucket/b")),
            "http://127.0.0.1:8181/v1/config?warehouse=arn%3Aaws%3As3tables%3Aus-east-1%3A123%3Abucket%2Fb"
        );
        assert_eq!(e.namespaces(None, None), "http://127.0.0.1:8181/v1/warehouse/namespaces");
        assert_eq!(
            e.namespaces(Some(&ns(&["a", "b"])), Some("x y")),
            "http://127.0.0.1:8181/v1/warehouse/namespaces?parent=a%1Fb&pageToken=x%20y"
        );
        assert_eq!(e.namespace(&ns(&["a", "b c"])), "http://127.0.0.1:8181/v1/warehouse/namespaces/a%1Fb%20c");
        assert_eq!(e.namespace_properties(&ns(&["db"])), "http://127.0.0.1:8181/v1/warehouse/namespaces/db/properties");
        let t = TableIdent::new(ns(&["a/b", "ä"]), "t.1?#%".to_string());
        assert_eq!(e.table(&t), "http://127.0.0.1:8181/v1/warehouse/namespaces/a%2Fb%1F%C3%A4/tables/t.1%3F%23%25");
        assert_eq!(
            e.tables(&ns(&["db"]), Some("p")),
            "http://127.0.0.1:8181/v1/warehouse/namespaces/db/tables?pageToken=p"
        );
        assert_eq!(e.register(&ns(&["db"])), "http://127.0.0.1:8181/v1/warehouse/namespaces/db/register");
        assert_eq!(e.rename(), "http://127.0.0.1:8181/v1/warehouse/tables/rename");
        // A unit separator inside a level cannot be told apart from a level boundary: the spec's
        // encoding has no escape for it, and it is encoded like any control character.
        assert_eq!(namespace_segment(&ns(&["a\u{1f}b"])), "a%1Fb");
    }

    #[test]
    fn endpoints_keep_a_base_path_and_an_encoded_prefix_verbatim() {
        let e = Endpoints::new("https://s3tables.us-east-1.amazonaws.com/iceberg", Some("/arn%3Aaws%3Ax/"));
        assert_eq!(
            e.namespaces(None, None),
            "https://s3tables.us-east-1.amazonaws.com/iceberg/v1/arn%3Aaws%3Ax/namespaces"
        );
        let e = Endpoints::new("http://h", None);
        assert_eq!(e.namespace(&ns(&["db"])), "http://h/v1/namespaces/db");
        let e = Endpoints::new("http://h", Some(""));
        assert_eq!(e.rename(), "http://h/v1/tables/rename");
        // Whatever we build parses and comes back unchanged (what is signed is what is sent).
        let url = Endpoints::new("http://h:1", Some("p")).table(&TableIdent::new(ns(&["a", "b"]), "c d".into()));
        assert_eq!(Url::parse(&url).expect("url").as_str(), url);
    }

    fn error_json(kind: &str, message: &str, code: u16) -> Vec<u8> {
        serde_json::json!({"error": {"message": message, "type": kind, "code": code}}).to_string().into_bytes()
    }

    #[test]
    fn errors_map_by_status_and_type() {
        let cases: &[(u16, &str, Subject, ErrorKind, bool)] = &[
            (404, "NoSuchTableException", Subject::Table, ErrorKind::TableNotFound, false),
            (404, "NoSuchTableException", Subject::Namespace, ErrorKind::TableNotFound, false),
            (404, "NoSuchNamespaceException", Subject::Table, ErrorKind::NamespaceNotFound, false),
            (404, "NotFound", Subject::Table, ErrorKind::TableNotFound, false),
            (404, "", Subject::Namespace, ErrorKind::NamespaceNotFound, false),
            (404, "", Subject::Other, ErrorKind::Unexpected, false),
            (409, "AlreadyExistsException", Subject::Table, ErrorKind::TableAlreadyExists, false),
            (409, "AlreadyExistsException", Subject::Namespace, ErrorKind::NamespaceAlreadyExists, false),
            (409, "CommitFailedException", Subject::Commit, ErrorKind::CatalogCommitConflicts, true),
            (409, "", Subject::Commit, ErrorKind::CatalogCommitConflicts, true),
            (409, "SomethingElse", Subject::Commit, ErrorKind::CatalogCommitConflicts, true),
            (409, "NamespaceNotEmptyException", Subject::Namespace, ErrorKind::PreconditionFailed, false),
            (409, "SomethingElse", Subject::Table, ErrorKind::Unexpected, false),
            (400, "BadRequestException", Subject::Commit, ErrorKind::DataInvalid, false),
            (422, "ValidationException", Subject::Table, ErrorKind::DataInvalid, false),
            (401, "NotAuthorizedException", Subject::Table, ErrorKind::Unexpected, false),
            (403, "ForbiddenException", Subject::Namespace, ErrorKind::Unexpected, false),
            (406, "UnsupportedOperationException", Subject::Table, ErrorKind::FeatureUnsupported, false),
            (501, "UnsupportedOperationException", Subject::Table, ErrorKind::FeatureUnsupported, false),
            (429, "", Subject::Table, ErrorKind::Unexpected, true),
            (500, "CommitStateUnknownException", Subject::Commit, ErrorKind::Unexpected, true),
            (503, "ServiceUnavailableException", Subject::Table, ErrorKind::Unexpected, true),
            (418, "", Subject::Table, ErrorKind::Unexpected, false),
        ];
        for &(status, kind, subject, expected, retryable) in cases {
            let e = http_error(status, &error_json(kind, "the message", status), subject, "do it");
            assert_eq!((e.kind(), e.retryable()), (expected, retryable), "{status} {kind} {subject:?}: {e}");
            assert!(e.to_string().contains("do it: HTTP"), "{e}");
            assert!(e.to_string().contains("the message"), "{e}");
        }
    }

    #[test]
    fn access_denied_errors_say_so_with_the_servers_message() {
        let body = error_json("ForbiddenException", "The request signature we calculated does not match", 403);
        let e = http_error(403, &body, Subject::Namespace, "list the namespaces");
        assert_eq!(e.kind(), ErrorKind::Unexpected);
        assert!(!e.retryable());
        let text = e.to_string();
        assert!(text.contains("access denied: ForbiddenException: The request signature we calculated"), "{text}");
    }

    #[test]
    fn error_bodies_that_are_not_the_error_model_still_give_a_message() {
        let e = http_error(502, b"<html>bad gateway</html>", Subject::Table, "load table a.b");
        assert_eq!(e.kind(), ErrorKind::Unexpected);
        assert!(e.retryable());
        assert!(e.to_string().contains("<html>bad gateway</html>"), "{e}");
        let e = http_error(404, b"", Subject::Table, "load table a.b");
        assert_eq!(e.kind(), ErrorKind::TableNotFound);
        assert!(e.to_string().contains("(no details)"), "{e}");
        let e = http_error(409, br#"{"error": "nope"}"#, Subject::Namespace, "create namespace a");
        assert_eq!(e.kind(), ErrorKind::NamespaceAlreadyExists);
        let long = vec![b'x'; 10_000];
        let e = http_error(500, &long, Subject::Table, "x");
        assert!(e.to_string().len() < 1_000, "preview is bounded");
        let e = http_error(400, &[0xff, 0xfe, b'{'], Subject::Table, "x");
        assert_eq!(e.kind(), ErrorKind::DataInvalid);
    }

    #[test]
    fn config_deserializes_and_refuses_unknown_fields() {
        let config: RestConfig = toml::from_str(
            r#"
            uri = "http://127.0.0.1:8181"
            warehouse = "warehouse"
            timeout_secs = 5
            [sigv4]
            region = "eu-west-1"
            access_key_id = "AKID"
            secret_access_key = "SECRET"
            [properties]
            "s3.endpoint" = "http://127.0.0.1:8333"
            "#,
        )
        .expect("config");
        assert_eq!(config.uri, "http://127.0.0.1:8181");
        assert_eq!(config.warehouse.as_deref(), Some("warehouse"));
        assert_eq!(config.prefix, None);
        assert_eq!(config.timeout_secs, Some(5));
        let sigv4 = config.sigv4.as_ref().expect("sigv4");
        assert_eq!(sigv4.region.as_deref(), Some("eu-west-1"));
        assert_eq!(sigv4.service, None);
        assert_eq!(config.properties["s3.endpoint"], "http://127.0.0.1:8333");

        let minimal: RestConfig = serde_json::from_str(r#"{"uri": "http://h"}"#).expect("minimal");
        assert!(minimal.properties.is_empty() && minimal.sigv4.is_none() && minimal.token.is_none());

        let unknown = serde_json::from_str::<RestConfig>(r#"{"uri": "http://h", "credential": "x"}"#);
        assert!(unknown.is_err_and(|e| e.to_string().contains("unknown field")));
        let unknown = serde_json::from_str::<RestConfig>(r#"{"uri": "http://h", "sigv4": {"signing_name": "x"}}"#);
        assert!(unknown.is_err_and(|e| e.to_string().contains("unknown field")));
    }

    fn config_with_secrets() -> RestConfig {
        RestConfig {
            uri: "http://h".into(),
            warehouse: None,
            prefix: None,
            token: None,
            sigv4: Some(SigV4Config {
                region: None,
                service: None,
                access_key_id: Some("AKIDVISIBLE".into()),
                secret_access_key: Some("TOPSECRETKEY".into()),
                session_token: Some("TOPSECRETSESSION".into()),
            }),
            timeout_secs: None,
            properties: HashMap::from([
                ("s3.secret-access-key".to_string(), "TOPSECRETPROP".to_string()),
                ("s3.endpoint".to_string(), "http://visible".to_string()),
            ]),
        }
    }

    #[test]
    fn debug_redacts_secrets() {
        let config = config_with_secrets();
        let text = format!("{config:?}");
        assert!(!text.contains("TOPSECRET"), "{text}");
        assert!(text.contains("AKIDVISIBLE") && text.contains("http://visible"), "{text}");
        let text = format!("{:?}", RestConfig { token: Some("TOPSECRETTOKEN".into()), sigv4: None, ..config });
        assert!(!text.contains("TOPSECRET"), "{text}");
        assert!(text.contains("redacted"), "{text}");
    }

    #[tokio::test]
    async fn catalog_debug_redacts_secrets() {
        let config = config_with_secrets();
        let catalog = RestCatalog {
            name: "c".into(),
            client: reqwest::Client::new(),
            endpoints: Endpoints::new("http://h", None),
            auth: build_auth(&config).expect("auth"),
            timeout: Duration::from_secs(1),
            catalog_props: HashMap::from([("token".to_string(), "TOPSECRETCATALOG".to_string())]),
            user_props: config.properties.clone(),
            warehouse_location: None,
            storage: Arc::new(LocalFsStorageFactory),
            runtime: Runtime::current(),
            table_configs: Mutex::new(HashMap::new()),
        };
        let text = format!("{catalog:?}");
        assert!(!text.contains("TOPSECRET"), "{text}");
        assert!(text.contains("sigv4 s3tables/us-east-1 as AKIDVISIBLE"), "{text}");
    }

    #[test]
    fn auth_rules() {
        let mut config = config_with_secrets();
        assert!(matches!(build_auth(&config), Ok(Auth::SigV4 { ref region, ref service, .. })
            if region == DEFAULT_SIGNING_REGION && service == DEFAULT_SIGNING_SERVICE));
        config.token = Some("t".into());
        let e = build_auth(&config).err().expect("token and sigv4");
        assert!(e.to_string().contains("cannot both be set"), "{e}");
        config.token = None;
        if let Some(s) = config.sigv4.as_mut() {
            s.secret_access_key = None;
        }
        let e = build_auth(&config).err().expect("one key");
        assert_eq!(e.kind(), ErrorKind::DataInvalid);
        assert!(!e.to_string().contains("TOPSECRET"), "{e}");
        config.sigv4 = None;
        assert!(matches!(build_auth(&config), Ok(Auth::None)));
        config.token = Some("has space".into());
        assert!(build_auth(&config).is_err());
        config.token = Some("abc".into());
        assert!(matches!(build_auth(&config), Ok(Auth::Bearer(_))));
    }

    #[test]
    fn uri_rules() {
        assert!(check_uri("http://127.0.0.1:8181").is_ok());
        assert!(check_uri("https://s3tables.us-east-1.amazonaws.com/iceberg").is_ok());
        for bad in ["ftp://h", "http://u:p@h", "http://h?x=1", "not a url", "http://h#f"] {
            let e = check_uri(bad).expect_err(bad);
            assert_eq!(e.kind(), ErrorKind::DataInvalid, "{bad}");
        }
    }

    #[test]
    fn create_table_request_has_the_spec_shape() {
        use iceberg::spec::{NestedField, PrimitiveType, Type};
        let schema = Schema::builder()
            .with_fields(vec![NestedField::required(1, "id", Type::Primitive(PrimitiveType::Long)).into()])
            .build()
            .expect("schema");
        let props = HashMap::new();
        let request = CreateTableRequest {
            name: "t",
            location: None,
            schema: &schema,
            partition_spec: None,
            write_order: None,
            stage_create: false,
            properties: &props,
        };
        let json = serde_json::to_value(&request).expect("json");
        assert_eq!(json["name"], "t");
        assert_eq!(json["stage-create"], false);
        assert_eq!(json["schema"]["fields"][0]["name"], "id");
        assert!(json.get("location").is_none() && json.get("partition-spec").is_none());
    }

    /// A loopback HTTP/1.1 server answering `answers` in order (one connection each), recording
    /// each request's head and body.
    async fn scripted_server(answers: Vec<(u16, String)>) -> (String, tokio::task::JoinHandle<Vec<String>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            let mut seen = Vec::new();
            for (status, body) in answers {
                let (mut socket, _) = listener.accept().await.expect("accept");
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let head_end = loop {
                    let n = socket.read(&mut chunk).await.expect("read");
                    assert!(n > 0, "connection closed early");
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                };
                let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                let length = head
                    .lines()
                    .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string()))
                    .and_then(|v| v.parse::<usize>().ok())
                    .unwrap_or(0);
                while buf.len() < head_end + length {
                    let n = socket.read(&mut chunk).await.expect("read body");
                    assert!(n > 0, "connection closed in the body");
                    buf.extend_from_slice(&chunk[..n]);
                }
                seen.push(format!("{head}{}", String::from_utf8_lossy(&buf[head_end..])));
                let answer = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                socket.write_all(answer.as_bytes()).await.expect("write");
                socket.shutdown().await.ok();
            }
            seen
        });
        (format!("http://{addr}"), task)
    }

    #[tokio::test]
    async fn connect_uses_the_config_prefix_pages_through_listings_and_maps_conflicts() {
        let answers = vec![
            (
                200,
                r#"{"defaults": {"warehouse": "s3://wh", "prefix": "ignored"}, "overrides": {"prefix": "p%2Fq"}}"#
                    .into(),
            ),
            (200, r#"{"namespaces": [["a"], ["a", "b"]], "next-page-token": "tok 1"}"#.into()),
            (200, r#"{"namespaces": [["c"]]}"#.into()),
            (
                409,
                r#"{"error": {"message": "Requirement failed", "type": "CommitFailedException", "code": 409}}"#.into(),
            ),
        ];
        let (uri, server) = scripted_server(answers).await;
        let config = RestConfig {
            uri: uri.clone(),
            warehouse: Some("my wh".into()),
            prefix: None,
            token: Some("SECRETTOKEN".into()),
            sigv4: None,
            timeout_secs: Some(5),
            properties: HashMap::new(),
        };
        let catalog = RestCatalog::connect("c", config, Arc::new(LocalFsStorageFactory)).await.expect("connect");
        assert_eq!(catalog.warehouse_location(), Some("s3://wh"));
        let listed = catalog.list_namespaces(None).await.expect("list");
        assert_eq!(listed, vec![ns(&["a"]), ns(&["a", "b"]), ns(&["c"])]);
        let ident = TableIdent::new(ns(&["a"]), "t".into());
        let e = catalog.commit_updates(&ident, vec![TableRequirement::NotExist], vec![]).await.expect_err("conflict");
        assert_eq!(e.kind(), ErrorKind::CatalogCommitConflicts);
        assert!(e.retryable());
        assert!(!e.to_string().contains("SECRETTOKEN") && !format!("{catalog:?}").contains("SECRETTOKEN"));

        let seen = server.await.expect("server");
        assert!(seen[0].starts_with("GET /v1/config?warehouse=my%20wh HTTP/1.1\r\n"), "{}", seen[0]);
        assert!(seen[0].to_ascii_lowercase().contains("authorization: bearer secrettoken"), "{}", seen[0]);
        assert!(seen[1].starts_with("GET /v1/p%2Fq/namespaces HTTP/1.1\r\n"), "{}", seen[1]);
        assert!(seen[2].starts_with("GET /v1/p%2Fq/namespaces?pageToken=tok%201 HTTP/1.1\r\n"), "{}", seen[2]);
        assert!(seen[3].starts_with("POST /v1/p%2Fq/namespaces/a/tables/t HTTP/1.1\r\n"), "{}", seen[3]);
        assert!(seen[3].to_ascii_lowercase().contains("content-type: application/json"), "{}", seen[3]);
        let body = &seen[3][seen[3].find("\r\n\r\n").expect("body") + 4..];
        let json: serde_json::Value = serde_json::from_str(body).expect("commit body");
        assert_eq!(
            json,
            serde_json::json!({
                "identifier": {"namespace": ["a"], "name": "t"},
                "requirements": [{"type": "assert-create"}],
                "updates": []
            })
        );
    }

    #[tokio::test]
    async fn unreachable_catalog_is_a_retryable_error() {
        // A port that was free a moment ago: nothing listens there.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr").port()
        };
        let config: RestConfig =
            serde_json::from_value(serde_json::json!({"uri": format!("http://127.0.0.1:{port}"), "timeout_secs": 2}))
                .expect("config");
        let e = RestCatalog::connect("c", config, Arc::new(LocalFsStorageFactory)).await.expect_err("no server");
        assert_eq!(e.kind(), ErrorKind::Unexpected);
        assert!(e.retryable(), "{e}");
    }
}
