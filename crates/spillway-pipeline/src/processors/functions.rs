//! The function registry: which program, process or endpoint runs a `LambdaArn`, configured in
//! spillway.toml under `[functions."<key>"]` (reference §11.2).
//!
//! ```toml
//! [functions."arn:aws:lambda:us-east-1:123456789012:function:clickstream-transform"]
//! file = "lambda/lambda_function.py"   # a Python handler file, run unchanged
//! handler = "lambda_handler"           # default "lambda_handler"
//! python = "python3"                   # default "python3"
//! workers = 2                          # outstanding invocations (default 1; 5 for url)
//! timeout_secs = 60                    # per invocation (default 300)
//! memory_limit_mb = 128                # reported in the context object (default 128)
//! env = { TABLE = "x" }                # the function's environment variables
//!
//! [functions.enricher]
//! command = ["node", "enrich.js"]     # any program speaking the JSON-lines protocol of lambda.rs
//! cwd = "lambda"
//!
//! [functions.remote]
//! url = "http://127.0.0.1:9001"        # the Lambda Invoke API (AWS, LocalStack, the emulator)
//! function_name = "my-fn"              # default: the name (and qualifier) of the ARN resolved
//! region = "us-east-1"                 # default: the ARN's region
//! access_key_id = "..."                # with secret_access_key (and session_token): SigV4-signed
//! ```
//!
//! Owns the validation of that table, the lookup of a `LambdaArn` in it and the backends built
//! from it. Invariants:
//! - every entry is checked by [`FunctionRegistry::new`]: the key is a Lambda function ARN (with or
//!   without qualifier) or a function name (`name` or `name:qualifier`); exactly one of `file`,
//!   `command`, `url`; only the options of that kind; relative `file`/`cwd` resolved against the
//!   folder of spillway.toml; the Python file exists; the URL and credentials are usable. Errors
//!   name the entry;
//! - lookup order for a `LambdaArn`: the exact ARN, the ARN without its qualifier,
//!   `name:qualifier`, `name`;
//! - backends are built on first use and cached, one per entry, shared by every stream that
//!   resolves to it (process workers stay warm). A `url` entry that takes its function name or
//!   region from the ARN gets one backend per distinct target instead. A process backend's
//!   context ARN (`context.invoked_function_arn`, `AWS_REGION`) is the entry's key when that is
//!   an ARN, else the first `LambdaArn` resolved to it;
//! - [`FunctionRegistry::shutdown`] stops the process backends; secrets never appear in `Debug`
//!   output or errors.

use super::lambda::{CommandHandler, FunctionArn, FunctionBackend, PythonHandler, WorkerOptions};
use super::lambda_http::{InvokeApiBackend, InvokeApiOptions, InvokeCredentials};
use parking_lot::Mutex;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// `[functions]` of spillway.toml: key → how to run the function.
pub type FunctionsConfig = BTreeMap<String, FunctionConfig>;

/// One `[functions."<key>"]` entry, as written (see the module header).
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FunctionConfig {
    /// A Python file with the handler (`file` kind).
    pub file: Option<PathBuf>,
    /// The handler function in `file` (default `lambda_handler`).
    pub handler: Option<String>,
    /// The interpreter for `file` (default `python3`).
    pub python: Option<PathBuf>,
    /// Program and arguments speaking the JSON-lines protocol (`command` kind).
    pub command: Option<Vec<String>>,
    /// Working directory of `command`.
    pub cwd: Option<PathBuf>,
    /// Lambda Invoke API endpoint (`url` kind).
    pub url: Option<String>,
    /// `FunctionName` sent to `url` (default: the resolved ARN's name and qualifier).
    pub function_name: Option<String>,
    /// Signing region for `url` (default: the resolved ARN's region).
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub session_token: Option<String>,
    /// Outstanding invocations: process pool size, or HTTP concurrency.
    pub workers: Option<usize>,
    /// Per-invocation timeout in seconds (default 300).
    pub timeout_secs: Option<u64>,
    /// `context.memory_limit_in_mb` of process backends (default 128).
    pub memory_limit_mb: Option<u32>,
    /// Environment variables of process backends.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

impl fmt::Debug for FunctionConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redacted = |s: &Option<String>| s.as_ref().map(|_| "** redacted **");
        f.debug_struct("FunctionConfig")
            .field("file", &self.file)
            .field("handler", &self.handler)
            .field("python", &self.python)
            .field("command", &self.command)
            .field("cwd", &self.cwd)
            .field("url", &self.url)
            .field("function_name", &self.function_name)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &redacted(&self.secret_access_key))
            .field("session_token", &redacted(&self.session_token))
            .field("workers", &self.workers)
            .field("timeout_secs", &self.timeout_secs)
            .field("memory_limit_mb", &self.memory_limit_mb)
            .field("env", &self.env)
            .finish()
    }
}

/// A `[functions]` entry that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FunctionConfigError {
    #[error(
        "[functions.\"{key}\"]: the key must be a Lambda function ARN \
         (arn:aws:lambda:<region>:<account>:function:<name>[:<qualifier>]) or a function name ([A-Za-z0-9_-], \
         optionally followed by :<qualifier>)"
    )]
    BadKey { key: String },
    #[error("[functions.\"{key}\"]: set exactly one of file, command or url; {found}")]
    Kind { key: String, found: String },
    #[error("[functions.\"{key}\"]: {field} does not apply to a function given by {kind}")]
    NotApplicable { key: String, field: &'static str, kind: &'static str },
    #[error("[functions.\"{key}\"]: handler file {} does not exist", path.display())]
    MissingFile { key: String, path: PathBuf },
    #[error("[functions.\"{key}\"]: {field} {problem}")]
    Invalid { key: String, field: &'static str, problem: String },
}

/// A validated entry.
#[derive(Debug, Clone)]
enum Spec {
    Python { file: PathBuf, handler: String, options: WorkerOptions },
    Command { argv: Vec<String>, options: WorkerOptions },
    Http(HttpSpec),
}

#[derive(Debug, Clone)]
struct HttpSpec {
    url: String,
    function_name: Option<String>,
    region: Option<String>,
    credentials: Option<InvokeCredentials>,
    timeout: Duration,
    max_concurrency: usize,
}

impl Spec {
    fn kind(&self) -> &'static str {
        match self {
            Self::Python { .. } => "file",
            Self::Command { .. } => "command",
            Self::Http(_) => "url",
        }
    }
}

/// A built backend, kept with its concrete type for shutdown.
#[derive(Clone)]
enum Built {
    Python(Arc<PythonHandler>),
    Command(Arc<CommandHandler>),
    Http(Arc<InvokeApiBackend>),
}

impl Built {
    fn backend(&self) -> Arc<dyn FunctionBackend> {
        match self {
            Self::Python(b) => b.clone(),
            Self::Command(b) => b.clone(),
            Self::Http(b) => b.clone(),
        }
    }
}

/// Which built backend: the entry's key, plus the invoke target for `url` entries that take it
/// from the ARN.
type CacheKey = (String, Option<(String, Option<String>, String)>);

/// The `[functions]` table, validated, with the backends built so far (see the module header).
#[derive(Default)]
pub struct FunctionRegistry {
    entries: BTreeMap<String, Spec>,
    built: Mutex<HashMap<CacheKey, Built>>,
    /// Set by [`FunctionRegistry::shutdown`]: no backend is built or handed out afterwards.
    closed: AtomicBool,
}

impl fmt::Debug for FunctionRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let entries: BTreeMap<&str, &str> = self.entries.iter().map(|(k, s)| (k.as_str(), s.kind())).collect();
        f.debug_struct("FunctionRegistry").field("entries", &entries).finish_non_exhaustive()
    }
}

impl FunctionRegistry {
    /// No functions: every `LambdaArn` is unmapped.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Validates every entry; relative paths resolve against `base_dir` (the folder of
    /// spillway.toml). Reports the first bad entry in key order.
    pub fn new(config: FunctionsConfig, base_dir: &Path) -> Result<Self, FunctionConfigError> {
        let mut entries = BTreeMap::new();
        for (key, entry) in config {
            let spec = validate(&key, entry, base_dir)?;
            entries.insert(key, spec);
        }
        Ok(Self { entries, built: Mutex::new(HashMap::new()), closed: AtomicBool::new(false) })
    }

    /// The configured keys, in order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// Whether `lambda_arn` resolves to an entry (CreateDeliveryStream / UpdateDestination time).
    pub fn check(&self, lambda_arn: &str) -> Result<(), String> {
        self.resolve(lambda_arn).map(|_| ())
    }

    /// The backend running `lambda_arn`, built on first use and shared afterwards.
    pub fn backend(&self, lambda_arn: &str) -> Result<Arc<dyn FunctionBackend>, String> {
        let (key, spec) = self.resolve(lambda_arn)?;
        let arn = FunctionArn::parse(lambda_arn);
        let http_target = match spec {
            Spec::Http(http) if http.function_name.is_none() || http.region.is_none() => {
                let (name, qualifier) = match (&http.function_name, &arn) {
                    (Some(name), _) => (name.clone(), None),
                    (None, Some(arn)) => (arn.name.clone(), arn.qualifier.clone()),
                    // A LambdaArn that is not an ARN only matches the key equal to it: take it as the name.
                    (None, None) => (lambda_arn.to_owned(), None),
                };
                let region = http
                    .region
                    .clone()
                    .or_else(|| arn.as_ref().map(|a| a.region.clone()).filter(|r| !r.is_empty()))
                    .unwrap_or_else(|| super::lambda_http::DEFAULT_REGION.to_owned());
                Some((name, qualifier, region))
            }
            _ => None,
        };
        let cache_key = (key.to_owned(), http_target.clone());
        let mut built = self.built.lock();
        if self.closed.load(Ordering::Acquire) {
            return Err(format!("the function registry is shut down (LambdaArn {lambda_arn})"));
        }
        if let Some(existing) = built.get(&cache_key) {
            return Ok(existing.backend());
        }
        let context_arn = if FunctionArn::parse(key).is_some() { key } else { lambda_arn };
        let fail = |e: &dyn fmt::Display| format!("[functions.\"{key}\"] (for LambdaArn {lambda_arn}): {e}");
        let new = match spec {
            Spec::Python { file, handler, options } => Built::Python(Arc::new(
                PythonHandler::new(file, handler, context_arn, options.clone()).map_err(|e| fail(&e))?,
            )),
            Spec::Command { argv, options } => Built::Command(Arc::new(
                CommandHandler::new(argv.clone(), context_arn, options.clone()).map_err(|e| fail(&e))?,
            )),
            Spec::Http(http) => {
                let (function_name, qualifier, region) = match http_target {
                    Some(target) => target,
                    None => {
                        (http.function_name.clone().unwrap_or_default(), None, http.region.clone().unwrap_or_default())
                    }
                };
                let options = InvokeApiOptions {
                    endpoint: http.url.clone(),
                    function_name,
                    qualifier,
                    region,
                    credentials: http.credentials.clone(),
                    timeout: http.timeout,
                    max_concurrency: http.max_concurrency,
                };
                Built::Http(Arc::new(InvokeApiBackend::new(options).map_err(|e| fail(&e))?))
            }
        };
        let backend = new.backend();
        built.insert(cache_key, new);
        Ok(backend)
    }

    /// Stops the process backends built so far (idle workers exit; busy ones when they finish;
    /// handed-out backends refuse new invocations) and makes [`Self::backend`] fail from now on.
    pub async fn shutdown(&self) {
        let built: Vec<Built> = {
            let mut built = self.built.lock();
            self.closed.store(true, Ordering::Release);
            built.drain().map(|(_, b)| b).collect()
        };
        for backend in built {
            match backend {
                Built::Python(b) => b.shutdown().await,
                Built::Command(b) => b.shutdown().await,
                Built::Http(_) => {}
            }
        }
    }

    /// The entry for `lambda_arn`, in lookup order (see the module header).
    fn resolve(&self, lambda_arn: &str) -> Result<(&str, &Spec), String> {
        let candidates = candidates(lambda_arn);
        candidates.iter().find_map(|c| self.entries.get_key_value(c.as_str())).map(|(k, s)| (k.as_str(), s)).ok_or_else(
            || {
                let alternative = match FunctionArn::parse(lambda_arn) {
                    Some(arn) => format!(" (or [functions.{}])", arn.name),
                    None => String::new(),
                };
                format!(
                    "LambdaArn {lambda_arn} is not mapped to a function: add [functions.\"{lambda_arn}\"]{alternative} \
                     to spillway.toml"
                )
            },
        )
    }
}

/// The keys `lambda_arn` may be configured under, most specific first.
fn candidates(lambda_arn: &str) -> Vec<String> {
    let mut keys = vec![lambda_arn.to_owned()];
    if let Some(arn) = FunctionArn::parse(lambda_arn) {
        if let Some(qualifier) = &arn.qualifier {
            // `arn:...:function:name:qualifier` → `arn:...:function:name`.
            if let Some((unqualified, _)) = lambda_arn.rsplit_once(':') {
                keys.push(unqualified.to_owned());
            }
            keys.push(format!("{}:{qualifier}", arn.name));
        }
        keys.push(arn.name);
    }
    keys
}

/// Whether `key` is a function ARN, `name` or `name:qualifier`.
fn valid_key(key: &str) -> bool {
    if FunctionArn::parse(key).is_some() {
        return true;
    }
    let (name, qualifier) = match key.split_once(':') {
        Some((name, qualifier)) => (name, Some(qualifier)),
        None => (key, None),
    };
    let name_ok = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    let qualifier_ok = qualifier.is_none_or(|q| {
        !q.is_empty() && q.len() <= 128 && q.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_$".contains(&b))
    });
    name_ok && qualifier_ok
}

fn validate(key: &str, entry: FunctionConfig, base_dir: &Path) -> Result<Spec, FunctionConfigError> {
    if !valid_key(key) {
        return Err(FunctionConfigError::BadKey { key: key.to_owned() });
    }
    let invalid = |field: &'static str, problem: &str| FunctionConfigError::Invalid {
        key: key.to_owned(),
        field,
        problem: problem.to_owned(),
    };
    let given: Vec<&str> =
        [("file", entry.file.is_some()), ("command", entry.command.is_some()), ("url", entry.url.is_some())]
            .into_iter()
            .filter_map(|(name, set)| set.then_some(name))
            .collect();
    let kind = match given.as_slice() {
        [one] => *one,
        [] => return Err(FunctionConfigError::Kind { key: key.to_owned(), found: "none is set".to_owned() }),
        many => {
            return Err(FunctionConfigError::Kind {
                key: key.to_owned(),
                found: format!("found {}", many.join(" and ")),
            });
        }
    };
    // Options that belong to another kind are mistakes, not silently ignored.
    let options: [(&'static str, bool, &[&str]); 10] = [
        ("handler", entry.handler.is_some(), &["file"]),
        ("python", entry.python.is_some(), &["file"]),
        ("cwd", entry.cwd.is_some(), &["command"]),
        ("function_name", entry.function_name.is_some(), &["url"]),
        ("region", entry.region.is_some(), &["url"]),
        ("access_key_id", entry.access_key_id.is_some(), &["url"]),
        ("secret_access_key", entry.secret_access_key.is_some(), &["url"]),
        ("session_token", entry.session_token.is_some(), &["url"]),
        ("memory_limit_mb", entry.memory_limit_mb.is_some(), &["file", "command"]),
        ("env", !entry.env.is_empty(), &["file", "command"]),
    ];
    for (field, set, kinds) in options {
        if set && !kinds.contains(&kind) {
            return Err(FunctionConfigError::NotApplicable { key: key.to_owned(), field, kind });
        }
    }
    if entry.workers == Some(0) {
        return Err(invalid("workers", "must be at least 1"));
    }
    let timeout = match entry.timeout_secs {
        None => super::lambda::DEFAULT_TIMEOUT,
        Some(0) => return Err(invalid("timeout_secs", "must be at least 1")),
        Some(s) => Duration::from_secs(s),
    };
    let resolve = |p: &Path| if p.is_absolute() { p.to_path_buf() } else { base_dir.join(p) };
    let defaults = WorkerOptions::default();
    let process_options = |cwd: Option<PathBuf>, python: Option<PathBuf>| WorkerOptions {
        workers: entry.workers.unwrap_or(defaults.workers),
        timeout,
        memory_limit_mb: entry.memory_limit_mb.unwrap_or(defaults.memory_limit_mb),
        python: python.unwrap_or_else(|| defaults.python.clone()),
        env: entry.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        cwd,
    };
    for name in entry.env.keys() {
        if name.is_empty() || name.contains('=') || name.contains('\0') {
            return Err(invalid("env", &format!("has an invalid variable name {name:?}")));
        }
    }
    if entry.env.values().any(|v| v.contains('\0')) {
        return Err(invalid("env", "values must not contain NUL"));
    }

    match kind {
        "file" => {
            let file = resolve(entry.file.as_deref().unwrap_or(Path::new("")));
            if !file.is_file() {
                return Err(FunctionConfigError::MissingFile { key: key.to_owned(), path: file });
            }
            let handler = entry.handler.clone().unwrap_or_else(|| "lambda_handler".to_owned());
            let identifier = handler.chars().next().is_some_and(|c| c.is_alphabetic() || c == '_')
                && handler.chars().all(|c| c.is_alphanumeric() || c == '_');
            if !identifier {
                return Err(invalid("handler", &format!("{handler:?} is not a Python function name")));
            }
            if entry.python.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
                return Err(invalid("python", "must not be empty"));
            }
            // A bare interpreter name is looked up on PATH; a path is taken relative to spillway.toml.
            let python = entry.python.as_ref().map(|p| if p.components().count() > 1 { resolve(p) } else { p.clone() });
            Ok(Spec::Python { file, handler, options: process_options(None, python) })
        }
        "command" => {
            let argv = entry.command.clone().unwrap_or_default();
            if argv.first().is_none_or(String::is_empty) {
                return Err(invalid("command", "must start with a program name"));
            }
            let cwd = entry.cwd.as_deref().map(resolve);
            if let Some(dir) = &cwd
                && !dir.is_dir()
            {
                return Err(invalid("cwd", &format!("{} is not a directory", dir.display())));
            }
            Ok(Spec::Command { argv, options: process_options(cwd, None) })
        }
        _ => {
            let url = entry.url.clone().unwrap_or_default();
            let credentials = match (&entry.access_key_id, &entry.secret_access_key) {
                (Some(access_key_id), Some(secret_access_key)) => Some(InvokeCredentials {
                    access_key_id: access_key_id.clone(),
                    secret_access_key: secret_access_key.clone(),
                    session_token: entry.session_token.clone(),
                }),
                (None, None) if entry.session_token.is_some() => {
                    return Err(invalid("session_token", "needs access_key_id and secret_access_key"));
                }
                (None, None) => None,
                (Some(_), None) => return Err(invalid("access_key_id", "needs secret_access_key")),
                (None, Some(_)) => return Err(invalid("secret_access_key", "needs access_key_id")),
            };
            if entry.function_name.as_deref().is_some_and(str::is_empty) {
                return Err(invalid("function_name", "must not be empty"));
            }
            if entry.region.as_deref().is_some_and(str::is_empty) {
                return Err(invalid("region", "must not be empty"));
            }
            let spec = HttpSpec {
                url,
                function_name: entry.function_name.clone(),
                region: entry.region.clone(),
                credentials,
                timeout,
                max_concurrency: entry.workers.unwrap_or(super::lambda_http::DEFAULT_MAX_CONCURRENCY),
            };
            // Build once to check the URL, names and credentials now rather than at first use.
            let probe = InvokeApiOptions {
                endpoint: spec.url.clone(),
                function_name: spec.function_name.clone().unwrap_or_else(|| "probe".to_owned()),
                qualifier: None,
                region: spec.region.clone().unwrap_or_else(|| super::lambda_http::DEFAULT_REGION.to_owned()),
                credentials: spec.credentials.clone(),
                timeout: spec.timeout,
                max_concurrency: spec.max_concurrency,
            };
            check_http(key, probe)?;
            Ok(Spec::Http(spec))
        }
    }
}

fn check_http(key: &str, probe: InvokeApiOptions) -> Result<(), FunctionConfigError> {
    use super::lambda_http::InvokeApiConfigError as E;
    match InvokeApiBackend::new(probe) {
        Ok(_) => Ok(()),
        Err(E::BadEndpoint { reason, .. }) => Err(FunctionConfigError::Invalid {
            key: key.to_owned(),
            field: "url",
            problem: format!("is not usable: {reason}"),
        }),
        Err(E::Invalid { field, problem }) => Err(FunctionConfigError::Invalid { key: key.to_owned(), field, problem }),
        Err(E::Client(detail)) => Err(FunctionConfigError::Invalid {
            key: key.to_owned(),
            field: "url",
            problem: format!("cannot be served: {detail}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::processors::lambda::{InputRecord, Invocation, LambdaConfig, Outcome, StreamContext, invoke_batch};

    const ARN: &str = "arn:aws:lambda:us-east-1:123456789012:function:clickstream-transform";

    fn fixtures() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lambda")
    }

    #[derive(Deserialize)]
    struct Toml {
        functions: FunctionsConfig,
    }

    fn parse(text: &str) -> Result<FunctionsConfig, String> {
        toml::from_str::<Toml>(text).map(|t| t.functions).map_err(|e| e.to_string())
    }

    fn load(text: &str) -> Result<FunctionRegistry, FunctionConfigError> {
        FunctionRegistry::new(parse(text).expect("TOML"), &fixtures())
    }

    fn ptr(backend: &Arc<dyn FunctionBackend>) -> *const () {
        Arc::as_ptr(backend) as *const ()
    }

    const SAMPLE: &str = r#"
        [functions."arn:aws:lambda:us-east-1:123456789012:function:clickstream-transform"]
        file = "seed001/lambda_function.py"
        handler = "lambda_handler"
        python = "python3"
        workers = 2
        timeout_secs = 60
        memory_limit_mb = 256
        env = { TABLE = "x" }

        [functions.enricher]
        command = ["python3", "echo_command.py"]
        cwd = "."

        [functions.remote]
        url = "http://127.0.0.1:9001"
        function_name = "my-fn"
        region = "eu-west-1"
        access_key_id = "AKIDEXAMPLE"
        secret_access_key = "very-secret"
        session_token = "token-secret"
        workers = 3
    "#;

    #[test]
    fn the_sample_parses_into_the_documented_shape() {
        let config = parse(SAMPLE).expect("sample");
        let entry = &config[ARN];
        assert_eq!(entry.file.as_deref(), Some(Path::new("seed001/lambda_function.py")));
        assert_eq!(entry.handler.as_deref(), Some("lambda_handler"));
        assert_eq!((entry.workers, entry.timeout_secs, entry.memory_limit_mb), (Some(2), Some(60), Some(256)));
        assert_eq!(entry.env.get("TABLE").map(String::as_str), Some("x"));
        assert_eq!(
            config["enricher"].command.as_deref(),
            Some(&["python3".to_owned(), "echo_command.py".to_owned()][..])
        );
        assert_eq!(config["remote"].url.as_deref(), Some("http://127.0.0.1:9001"));
        let debug = format!("{:?}", config["remote"]);
        assert!(!debug.contains("very-secret") && !debug.contains("token-secret"), "{debug}");

        let registry = FunctionRegistry::new(config, &fixtures()).expect("valid");
        assert_eq!(registry.keys().collect::<Vec<_>>(), [ARN, "enricher", "remote"]);
        match &registry.entries[ARN] {
            Spec::Python { file, handler, options } => {
                assert_eq!(file, &fixtures().join("seed001/lambda_function.py"));
                assert_eq!(handler, "lambda_handler");
                assert_eq!(options.workers, 2);
                assert_eq!(options.timeout, Duration::from_secs(60));
                assert_eq!(options.memory_limit_mb, 256);
                assert_eq!(options.env, [("TABLE".to_owned(), "x".to_owned())]);
            }
            other => panic!("expected a Python entry, got {other:?}"),
        }
        match &registry.entries["enricher"] {
            Spec::Command { argv, options } => {
                assert_eq!(argv, &["python3", "echo_command.py"]);
                assert_eq!(options.cwd.as_deref(), Some(fixtures().join(".").as_path()));
                assert_eq!((options.workers, options.timeout), (1, Duration::from_secs(300)));
            }
            other => panic!("expected a command entry, got {other:?}"),
        }
        match &registry.entries["remote"] {
            Spec::Http(http) => {
                assert_eq!(http.max_concurrency, 3);
                assert_eq!(http.timeout, Duration::from_secs(300));
                assert_eq!(http.region.as_deref(), Some("eu-west-1"));
            }
            other => panic!("expected a url entry, got {other:?}"),
        }
        let debug = format!("{registry:?}");
        assert!(!debug.contains("very-secret"), "{debug}");
    }

    #[test]
    fn unknown_options_are_rejected_by_the_parser() {
        let error = parse("[functions.f]\nfile = \"a.py\"\nhandlr = \"x\"\n").expect_err("typo");
        assert!(error.contains("handlr"), "{error}");
    }

    #[test]
    fn lookup_order_is_arn_unqualified_arn_name_qualifier_name() {
        let unqualified = "arn:aws:lambda:us-east-1:123456789012:function:f";
        let qualified = "arn:aws:lambda:us-east-1:123456789012:function:f:prod";
        let keys = [qualified, unqualified, "f:prod", "f"];
        // With all four configured, each key wins over the ones after it.
        for first in 0..keys.len() {
            let text: String =
                keys[first..].iter().map(|k| format!("[functions.\"{k}\"]\ncommand = [\"{k}\"]\n")).collect();
            let registry = load(&text).expect("valid");
            let (key, _) = registry.resolve(qualified).expect("mapped");
            assert_eq!(key, keys[first]);
        }
        assert_eq!(candidates(qualified), keys);
        assert_eq!(candidates(unqualified), [unqualified, "f"]);
        assert_eq!(candidates("not-an-arn"), ["not-an-arn"]);

        // A qualifier key does not match another qualifier or the unqualified ARN.
        let registry = load("[functions.\"f:prod\"]\ncommand = [\"x\"]\n").expect("valid");
        assert!(registry.check(qualified).is_ok());
        assert!(registry.check(unqualified).is_err());
        assert!(registry.check("arn:aws:lambda:us-east-1:123456789012:function:f:dev").is_err());
        // The bare name matches any region, account and qualifier.
        let registry = registry_of("f");
        for arn in [qualified, unqualified, "arn:aws-cn:lambda:cn-north-1:000000000000:function:f:7"] {
            assert!(registry.check(arn).is_ok(), "{arn}");
        }
        assert!(registry.check("arn:aws:lambda:us-east-1:123456789012:function:g").is_err());
    }

    fn registry_of(key: &str) -> FunctionRegistry {
        load(&format!("[functions.\"{key}\"]\ncommand = [\"x\"]\n")).expect("valid")
    }

    #[test]
    fn unmapped_arns_get_a_message_saying_what_to_add() {
        let arn = "arn:aws:lambda:us-east-1:123456789012:function:x";
        let registry = FunctionRegistry::empty();
        assert_eq!(
            registry.check(arn),
            Err(format!(
                "LambdaArn {arn} is not mapped to a function: add [functions.\"{arn}\"] (or [functions.x]) to \
                 spillway.toml"
            ))
        );
        let error = registry.backend(arn).err().expect("unmapped");
        assert!(error.contains("is not mapped"), "{error}");
        assert!(FunctionRegistry::default().check("garbage").is_err_and(|e| !e.contains("(or")));
    }

    #[test]
    fn invalid_entries_are_errors_naming_the_entry() {
        let cases: &[(&str, &str)] = &[
            ("[functions.f]\nhandler = \"h\"\n", "set exactly one of file, command or url; none is set"),
            ("[functions.f]\nfile = \"handlers.py\"\nurl = \"http://h\"\n", "found file and url"),
            (
                "[functions.f]\nfile = \"a.py\"\ncommand = [\"x\"]\nurl = \"http://h\"\n",
                "found file and command and url",
            ),
            ("[functions.f]\nfile = \"absent.py\"\n", "handler file"),
            ("[functions.f]\nfile = \"handlers.py\"\nhandler = \"a.b\"\n", "handler"),
            ("[functions.f]\ncommand = []\n", "command must start with a program name"),
            ("[functions.f]\ncommand = [\"x\"]\ncwd = \"nowhere\"\n", "cwd"),
            (
                "[functions.f]\ncommand = [\"x\"]\nregion = \"us-east-1\"\n",
                "region does not apply to a function given by command",
            ),
            ("[functions.f]\nurl = \"http://h\"\nenv = { A = \"b\" }\n", "env does not apply"),
            ("[functions.f]\nfile = \"handlers.py\"\ncwd = \".\"\n", "cwd does not apply"),
            ("[functions.f]\nurl = \"not a url\"\n", "url is not usable"),
            ("[functions.f]\nurl = \"ftp://h\"\n", "url is not usable"),
            ("[functions.f]\nurl = \"http://h\"\naccess_key_id = \"AK\"\n", "needs secret_access_key"),
            ("[functions.f]\nurl = \"http://h\"\nsession_token = \"t\"\n", "session_token needs"),
            ("[functions.f]\ncommand = [\"x\"]\nworkers = 0\n", "workers must be at least 1"),
            ("[functions.f]\ncommand = [\"x\"]\ntimeout_secs = 0\n", "timeout_secs must be at least 1"),
            ("[functions.\"arn:aws:lambda:us-east-1:1:function:\"]\ncommand = [\"x\"]\n", "the key must be"),
            ("[functions.\"bad name\"]\ncommand = [\"x\"]\n", "the key must be"),
        ];
        for (text, want) in cases {
            let error = load(text).expect_err(text).to_string();
            assert!(error.starts_with("[functions."), "{error}");
            assert!(error.contains(want), "{text}: {error} should contain {want}");
        }
        let error = load("[functions.f]\nfile = \"absent.py\"\n").expect_err("missing");
        assert_eq!(error, FunctionConfigError::MissingFile { key: "f".to_owned(), path: fixtures().join("absent.py") });
        // Absolute paths are kept as they are.
        let absolute = fixtures().join("handlers.py");
        let text = format!("[functions.f]\nfile = {:?}\nhandler = \"echo\"\n", absolute.display().to_string());
        assert!(FunctionRegistry::new(parse(&text).expect("TOML"), Path::new("/nonexistent")).is_ok());
    }

    #[tokio::test]
    async fn backends_are_built_once_and_shared() {
        let registry = Arc::new(load(SAMPLE).expect("valid"));
        let first = registry.backend(ARN).expect("backend");
        let second = registry.backend(ARN).expect("backend");
        assert_eq!(ptr(&first), ptr(&second), "the same warm backend");
        let enricher = registry.backend("arn:aws:lambda:us-east-1:123456789012:function:enricher").expect("backend");
        let enricher_again =
            registry.backend("arn:aws:lambda:eu-west-1:999999999999:function:enricher:live").expect("backend");
        assert_eq!(ptr(&enricher), ptr(&enricher_again), "one backend per entry");
        assert_ne!(ptr(&first), ptr(&enricher));
        let remote = registry.backend("arn:aws:lambda:us-east-1:123456789012:function:remote").expect("backend");
        let remote_again =
            registry.backend("arn:aws:lambda:us-west-2:123456789012:function:remote:2").expect("backend");
        assert_eq!(ptr(&remote), ptr(&remote_again), "name and region are fixed: one backend");

        // A url entry without function_name/region follows the ARN: one backend per target.
        let open = registry_text_url();
        let a = open.backend("arn:aws:lambda:us-east-1:1:function:open").expect("backend");
        let b = open.backend("arn:aws:lambda:us-east-1:2:function:open").expect("backend");
        let c = open.backend("arn:aws:lambda:eu-west-1:1:function:open").expect("backend");
        let d = open.backend("arn:aws:lambda:us-east-1:1:function:open:v2").expect("backend");
        assert_eq!(ptr(&a), ptr(&b));
        assert_ne!(ptr(&a), ptr(&c));
        assert_ne!(ptr(&a), ptr(&d));

        // Shared across threads.
        fn assert_send_sync<T: Send + Sync>(_: &T) {}
        assert_send_sync(&registry);
        registry.shutdown().await;
    }

    fn registry_text_url() -> FunctionRegistry {
        load("[functions.open]\nurl = \"http://127.0.0.1:9\"\n").expect("valid")
    }

    /// `boto3` when installed, else the fixture stand-in (seed 001 imports it, never calls it).
    fn seed_env() -> String {
        let installed = std::process::Command::new("python3")
            .args(["-c", "import boto3"])
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if installed {
            String::new()
        } else {
            format!("env = {{ PYTHONPATH = {:?} }}\n", fixtures().join("stubs").display().to_string())
        }
    }

    #[tokio::test]
    async fn a_python_file_entry_runs_the_seed_handler() {
        let text =
            format!("[functions.\"{ARN}\"]\nfile = \"seed001/lambda_function.py\"\ntimeout_secs = 30\n{}", seed_env());
        let registry = load(&text).expect("valid");
        let qualified = format!("{ARN}:prod");
        let backend = registry.backend(&qualified).expect("backend");
        let cfg = LambdaConfig::from_parameters(&[("LambdaArn", qualified.as_str()), ("NumberOfRetries", "0")])
            .expect("parameters");
        let stream = StreamContext {
            delivery_stream_arn: "arn:aws:firehose:us-east-1:123456789012:deliverystream/clicks".to_owned(),
            region: "us-east-1".to_owned(),
            source_kinesis_stream_arn: None,
        };
        let records = [
            InputRecord {
                data: bytes::Bytes::from_static(b"{\"event_type\":\"click\",\"user_id\":\"u1\"}\n"),
                arrival_ms: 0,
                kinesis: None,
            },
            InputRecord { data: bytes::Bytes::from_static(b"invalid-json-data"), arrival_ms: 0, kinesis: None },
        ];
        let outcomes = invoke_batch(backend.as_ref(), &cfg, &stream, &records).await;
        match &outcomes[0] {
            Outcome::Ok { data, .. } => {
                let value: serde_json::Value = serde_json::from_slice(data).expect("JSON");
                assert_eq!(value["event_type"], "click");
                assert_eq!(value["user_id"], "u1");
                assert_eq!(value["processed_by"], "lambda-firehose-transform");
            }
            other => panic!("expected Ok, got {other:?}"),
        }
        assert!(matches!(&outcomes[1], Outcome::Failed { .. }), "{:?}", outcomes[1]);

        // After shutdown the handed-out handler refuses work and the registry hands out nothing.
        registry.shutdown().await;
        let invocation = Invocation { invocation_id: "x".to_owned(), payload: "{\"records\":[]}".to_owned() };
        assert!(backend.invoke(&invocation).await.is_err());
        let error = registry.backend(ARN).err().expect("shut down");
        assert!(error.contains("shut down"), "{error}");
        assert!(registry.check(ARN).is_ok(), "the mapping itself stays");
    }
}
