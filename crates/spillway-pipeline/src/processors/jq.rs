//! jq partition key extraction: the `MetadataExtraction` processor with `JsonParsingEngine: JQ-1.6`
//! (reference §11.1, §12).
//!
//! Owns: compiling a `MetadataExtractionQuery` once (at CreateDeliveryStream time; a compile error becomes
//! the create-time `InvalidArgumentException` message) into a [`MetadataQuery`], and running it on each record
//! to get the `!{partitionKeyFromQuery:<key>}` values ([`QueryKeys`]). Every per-record failure is a
//! [`JqError`] whose [`JqError::code`] is `DynamicPartitioning.MetadataExtractionFailed`; the caller sends such
//! records to the error output. Nothing here touches the network or files.
//!
//! The engine is jaq (jaq-core/jaq-std/jaq-json 3.x), which implements the common subset of jq 1.6. Where the
//! two differ on things a partition key can observe, this module makes jaq behave like jq 1.6:
//!
//! - **Numbers** are printed the way jq 1.6 prints them (jq keeps every number as an IEEE double and prints
//!   it with `jvp_dtoa_fmt`, the shortest round-trip digits): `1.0` → `1`, `10/2` → `5`, `1e3` → `1000`,
//!   `1.5` → `1.5`, `0.00001` → `1e-05`, `1e17` → `1e+17`, `-0.0` → `-0`, ±infinity → ±`1.7976931348623157e+308`,
//!   and integers beyond 2^53 lose precision exactly as in jq 1.6 (`12345678901234567890` →
//!   `12345678901234567000`). This applies to partition values, to `tostring`/`tojson`/`@text`/`@json`/`@sh`/
//!   `join`, and to string interpolation: the query text is rewritten so that every un-formatted `"\(f)"`
//!   becomes `"\((f)|_spillway_tostring)"` (jaq's own interpolation would print `5.0`).
//! - **Partition values**: the query must yield exactly one JSON object. Each value becomes a key: strings
//!   raw (not quoted; invalid UTF-8 replaced by U+FFFD), numbers as above, `true`/`false`. A `null` value —
//!   which is what jq yields for a missing field (`.customer_id` on a record without it) — and NaN (which
//!   jq 1.6 prints as `null`) are [`JqError::NullValue`]: Firehose sends records whose key is missing to the
//!   error output with `DynamicPartitioning.MetadataExtractionFailed`. Arrays and objects as values are
//!   [`JqError::NonScalarValue`] (no stable one-segment rendering of them is documented). An empty string is a
//!   valid value. No output, two or more outputs, or a non-object output are errors too.
//! - **Side effects are removed**: `env` is not defined (compile error: it would leak the server's
//!   environment into S3 keys), `halt`/`halt_error` raise an error instead of exiting the process, and
//!   `debug`/`stderr` pass their input through without logging.
//! - **Known divergences kept** (jq 1.6 behaviour that jaq does not reproduce): regexes use Rust's engine
//!   (no look-around/back-references); `$__loc__`, `input_line_number`, `@csv`, `@tsv`, `?//`, SQL-style
//!   builtins and `*stream` filters are missing and fail at compile time; `limit(0; f)` yields nothing;
//!   division by zero yields infinity instead of an error; `localtime`/`strflocaltime`/`mktime` use the server's
//!   time zone; integers have no negative zero (an integer `-0` in the record or query and `0 * -1` print `0`
//!   where jq 1.6 prints `-0`; `-0.0` prints `-0` in both). The record parser (jaq-json) accepts a superset of
//!   JSON (`#` comments, `NaN`, `Infinity`, non-string object keys), so a few records jq 1.6 rejects as
//!   non-JSON are processed instead.
//!
//! Performance: the record is parsed once with jaq-json (no serde_json round trip). A query that is a flat
//! object constructor with literal keys — the usual shape, e.g. `{customer_id:.customer_id,device:.type.device,
//! year:.event_timestamp|strftime("%Y")}` — is split into its fields at compile time (only when jaq's parser sees
//! exactly the same value expressions), so jaq's object construction is skipped: a plain `.a.b` path is looked up
//! directly, `.a.b | strftime(f)` with `f` made of `%Y %y %m %d %j %H %M %S %%` is formatted directly for epoch
//! seconds in [0, year 10000) (anything else runs that field in jaq), and other values run in jaq one by one.
//! The results are the same as running the whole query (tested differentially); when several fields fail, the
//! first failing field's error is reported. `QueryKeys` can be reused across records to keep its strings.
//!
//! Invariants: a [`MetadataQuery`] is immutable after [`MetadataQuery::compile`] and is `Send + Sync` (shared
//! by reference or `Arc` between delivery threads); jaq values (`Rc`-based, not `Send`) live only inside one
//! [`MetadataQuery::extract_into`] call. Record content cannot make this code panic or overflow the stack:
//! records nested deeper than jq 1.6's limit of 256 are rejected before parsing (jq's own message, "Exceeds
//! depth limit for parsing"), and queries are compiled on a thread with a large stack and rejected when their
//! syntax tree is deeper than 64 (so evaluation recursion per record is bounded), and `halt` cannot exit the
//! process. What a query computes is not bounded: like jq, a query that loops, recurses without end or builds
//! huge values (`range(1e9)`) blocks or exhausts the delivery thread — queries are operator configuration.

use std::borrow::Cow;
use std::fmt::{self, Write as _};

use jaq_core::box_iter::box_once;
use jaq_core::load::lex::{self, StrPart, Tok};
use jaq_core::load::{Arena, File, Loader};
use jaq_core::native::{self, Fun, bome, v};
use jaq_core::{Compiler, Ctx, Cv, Error, Exn, ValXs, Vars, data};
use jaq_json::{Num, Val};

/// Data kind the compiled filter runs on: plain jaq-json values, no global data besides the lookup table.
type Data = data::JustLut<Val>;

/// Error code Firehose writes for records whose partition keys could not be extracted (reference §12).
pub const METADATA_EXTRACTION_FAILED: &str = "DynamicPartitioning.MetadataExtractionFailed";

/// Name of the native filter interpolations are rewritten to call (see the module docs).
const INTERPOLATION_TOSTRING: &str = "_spillway_tostring";

/// Longest runtime error message kept (jq errors quote values, which can be whole records).
const MAX_MESSAGE_CHARS: usize = 512;

/// jq 1.6's limit on the nesting of arrays and objects in its input (deeper records are "Exceeds depth limit for
/// parsing"). It also keeps jaq's recursive parser and `Val`'s recursive drop within a small stack.
const MAX_RECORD_DEPTH: usize = 256;

/// Deepest syntax tree a query may have. Evaluation recurses along the tree on the delivery thread's stack,
/// so this bounds the stack a query needs per record; real partitioning queries are under 20 deep.
const MAX_QUERY_DEPTH: usize = 64;

/// Longest query compiled (the API caps processor parameter values far lower); bounds compile-time recursion.
const MAX_QUERY_BYTES: usize = 64 * 1024;

/// Stack of the thread queries are compiled on: jaq's lexer, parser and compiler recurse along the query, and
/// a query is only known to be shallow once it has been parsed.
const COMPILE_STACK_BYTES: usize = 256 << 20;

/// jq 1.6 definitions that replace jaq's, appended to the prelude after dropping jaq's versions (nothing in
/// the prelude calls them, so their position does not matter). `join` is jq 1.6's own definition (nulls
/// become "", numbers and booleans go through `tojson`, anything else must be a string).
const PRELUDE_OVERRIDES: &str = r#"
def join($x): reduce .[] as $i (null;
    (if . == null then "" else . + $x end) +
    ($i | if . == null then "" elif type == "boolean" or type == "number" then tojson else . end)
  ) // "";
def @text: tostring;
def @sh: [if isarray then .[] end | if . >= "" then "'\(escape_sh)'" else tostring end] | join(" ");
"#;

/// Prelude definitions (name, arity) dropped in favour of [`PRELUDE_OVERRIDES`] or a native filter.
const DROPPED_DEFS: [(&str, usize); 4] = [("tostring", 0), ("join", 1), ("@text", 0), ("@sh", 0)];

/// Native filters (name, arity) dropped: replaced by [`overriding_natives`] or, for `env`, removed.
const DROPPED_NATIVES: [(&str, usize); 5] =
    [("tojson", 0), ("halt", 1), ("env", 0), ("stderr_empty", 0), ("debug_empty", 0)];

/// Why a query did not compile, or why partition keys could not be extracted from a record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JqError {
    /// The query is not valid jq or uses a filter this engine does not provide (create time).
    #[error("invalid MetadataExtractionQuery: {0}")]
    Compile(String),
    /// The record is not a single JSON value.
    #[error("the record is not valid JSON: {0}")]
    NotJson(String),
    /// The query raised an error on the record (`error(...)`, a type error, ...).
    #[error("the MetadataExtractionQuery failed: {0}")]
    Runtime(String),
    /// The query's output is not a JSON object.
    #[error("the MetadataExtractionQuery must yield a JSON object, it yielded {found}")]
    NotAnObject {
        /// jq type name of the output.
        found: &'static str,
    },
    /// The query yielded nothing (e.g. `select` or `empty`).
    #[error("the MetadataExtractionQuery yielded no output")]
    NoOutput,
    /// The query yielded more than one output.
    #[error("the MetadataExtractionQuery yielded more than one output")]
    MultipleOutputs,
    /// A partition key's value is an array or an object.
    #[error("partition key {key:?} is {found}, not a string, number or boolean")]
    NonScalarValue {
        /// The partition key.
        key: String,
        /// jq type name of the value.
        found: &'static str,
    },
    /// A partition key's value is null: the field is missing from the record (or null, or NaN).
    #[error("partition key {key:?} is null or missing from the record")]
    NullValue {
        /// The partition key.
        key: String,
    },
}

impl JqError {
    /// Firehose's error code for the error output. Every failure has the same code (reference §12); a
    /// [`JqError::Compile`] only happens at create time, where the message becomes an
    /// `InvalidArgumentException` instead.
    pub fn code(&self) -> &'static str {
        METADATA_EXTRACTION_FAILED
    }
}

/// Partition keys extracted from one record, in the order the query's object lists them. Reusable: pass the
/// same value to [`MetadataQuery::extract_into`] for each record and its strings' capacity is kept.
#[derive(Debug, Clone, Default)]
pub struct QueryKeys {
    /// Slots; only the first `len` are live, the rest keep their capacity for the next record.
    entries: Vec<(String, String)>,
    len: usize,
}

impl QueryKeys {
    /// The value of partition key `key`, if the query's object has it.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.live().iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// The (key, value) pairs in query order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &str)> {
        self.live().iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the query's object was empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The pairs as an owned vector (query order).
    pub fn into_vec(mut self) -> Vec<(String, String)> {
        self.entries.truncate(self.len);
        self.entries
    }

    fn live(&self) -> &[(String, String)] {
        self.entries.get(..self.len).unwrap_or_default()
    }

    fn clear(&mut self) {
        self.len = 0;
    }

    /// A cleared slot for the next pair.
    fn push_slot(&mut self) -> &mut (String, String) {
        if self.len == self.entries.len() {
            self.entries.push((String::new(), String::new()));
        }
        self.len += 1;
        let slot = &mut self.entries[self.len - 1];
        slot.0.clear();
        slot.1.clear();
        slot
    }
}

impl spillway_model::prefix::PartitionKeys for QueryKeys {
    fn query(&self, key: &str) -> Option<&str> {
        self.get(key)
    }
    fn lambda(&self, _key: &str) -> Option<&str> {
        None
    }
}

/// A compiled MetadataExtractionQuery: compile once at CreateDeliveryStream time, run per record.
pub struct MetadataQuery {
    /// The whole query: always compiled (it validates the query) and run when `fields` is `None`.
    whole: jaq_core::Filter<Data>,
    /// The query split into its object's fields when it is a flat object constructor with literal keys (the
    /// usual shape, e.g. the reference example): each value runs on its own and goes straight to its key,
    /// skipping jaq's object construction, and plain `.a.b` paths skip jaq altogether.
    fields: Option<Vec<Field>>,
}

/// One `key: value` entry of a decomposed query.
struct Field {
    key: String,
    value: FieldValue,
}

enum FieldValue {
    /// `.a.b."c"`: object lookups, evaluated directly with jq 1.6 semantics (null input → null, missing key →
    /// null, anything else but an object → error).
    Path(Vec<String>),
    /// `.a.b | strftime("…")` with a format of only [`TimePiece`]s: formatted directly when the path holds an
    /// epoch time in [0, year 10000); any other value runs `fallback` (the field compiled on its own).
    Strftime { path: Vec<String>, format: Vec<TimePiece>, fallback: jaq_core::Filter<Data> },
    /// Any other value expression, compiled on its own.
    Filter(jaq_core::Filter<Data>),
}

/// A piece of a `strftime` format handled without jaq: the conversions whose output C's `strftime` (jq 1.6)
/// and jaq agree on for times in [1970, 10000), and literal text.
#[derive(Debug, Clone, PartialEq, Eq)]
enum TimePiece {
    Text(String),
    /// `%Y`, four digits in the supported range.
    Year,
    /// `%y`
    YearOfCentury,
    /// `%m`
    Month,
    /// `%d`
    Day,
    /// `%j`
    DayOfYear,
    /// `%H`
    Hour,
    /// `%M`
    Minute,
    /// `%S`
    Second,
}

/// Epoch seconds of 10000-01-01T00:00:00Z: the direct `strftime` path handles [0, this).
const DIRECT_TIME_LIMIT: i64 = 253_402_300_800;

impl fmt::Debug for MetadataQuery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fields = self.fields.as_ref().map(|fields| fields.iter().map(|f| f.key.as_str()).collect::<Vec<_>>());
        f.debug_struct("MetadataQuery").field("fields", &fields).finish_non_exhaustive()
    }
}

// The compiled filters hold no `Val` and no `Rc`: they can be shared between delivery threads.
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<MetadataQuery>();
};

impl MetadataQuery {
    /// Compiles `query`. Syntax errors, unknown filters/variables (including jq 1.6 features jaq lacks, such as
    /// `$__loc__`) and module imports are [`JqError::Compile`] with a message naming the problem.
    pub fn compile(query: &str) -> Result<MetadataQuery, JqError> {
        Self::compile_with(query, true)
    }

    fn compile_with(query: &str, decompose: bool) -> Result<MetadataQuery, JqError> {
        if query.len() > MAX_QUERY_BYTES {
            return Err(JqError::Compile(format!("the query is longer than {MAX_QUERY_BYTES} bytes")));
        }
        let compile = || {
            let whole = compile_filter(query)?;
            check_query_depth(query)?;
            let fields = if decompose { decompose_object(query) } else { None };
            Ok(MetadataQuery { whole, fields })
        };
        std::thread::scope(|scope| {
            let thread = std::thread::Builder::new().name("jq-compile".into()).stack_size(COMPILE_STACK_BYTES);
            let handle = thread
                .spawn_scoped(scope, compile)
                .map_err(|e| JqError::Compile(format!("internal error: cannot start the compiler thread: {e}")))?;
            handle.join().map_err(|_| JqError::Compile("internal error: the jq compiler panicked".into()))?
        })
    }

    /// The keys the query produces, when it is an object constructor whose keys are known at compile
    /// time (`{a: .x, b: .y}`); `None` when they depend on the record.
    pub fn field_names(&self) -> Option<Vec<&str>> {
        self.fields.as_ref().map(|fields| fields.iter().map(|f| f.key.as_str()).collect())
    }

    /// Runs the query on one JSON record and returns its partition keys (see the module docs for the rules).
    pub fn extract(&self, record: &[u8]) -> Result<QueryKeys, JqError> {
        let mut keys = QueryKeys::default();
        self.extract_into(record, &mut keys)?;
        Ok(keys)
    }

    /// [`Self::extract`] into a reused [`QueryKeys`] (its previous contents are replaced; on error its contents
    /// are unspecified).
    pub fn extract_into(&self, record: &[u8], keys: &mut QueryKeys) -> Result<(), JqError> {
        keys.clear();
        check_record_depth(record)?;
        let input = jaq_json::read::parse_single(record).map_err(|e| JqError::NotJson(e.to_string()))?;
        match &self.fields {
            Some(fields) => extract_fields(fields, &input, keys),
            None => extract_whole(&self.whole, input, keys),
        }
    }
}

/// Rejects records nested deeper than [`MAX_RECORD_DEPTH`] before they reach jaq's recursive parser.
fn check_record_depth(record: &[u8]) -> Result<(), JqError> {
    // Nesting cannot exceed the number of openers; counting them is much cheaper than tracking strings.
    if record.iter().filter(|&&b| b == b'[' || b == b'{').count() <= MAX_RECORD_DEPTH {
        return Ok(());
    }
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in record {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_RECORD_DEPTH {
                    return Err(JqError::NotJson("Exceeds depth limit for parsing".into()));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// Runs the whole query: it must yield one object, whose entries become the keys.
fn extract_whole(filter: &jaq_core::Filter<Data>, input: Val, keys: &mut QueryKeys) -> Result<(), JqError> {
    let output = run_single(filter, input)?;
    let Val::Obj(object) = &output else {
        return Err(JqError::NotAnObject { found: type_name(&output) });
    };
    for (key, value) in object.iter() {
        let key = match key {
            Val::TStr(b) | Val::BStr(b) => &b[..],
            other => return Err(JqError::Runtime(format!("object key {} is not a string", json_text(other)))),
        };
        push_key(keys, key, Some(value))?;
    }
    Ok(())
}

/// Runs a decomposed query field by field. Like the whole query, a field that fails to run (error, no output,
/// several outputs) takes precedence over a field whose value is unusable (null, array, object); among several
/// failures, the first field's is reported.
fn extract_fields(fields: &[Field], input: &Val, keys: &mut QueryKeys) -> Result<(), JqError> {
    let mut value_error = None;
    for field in fields {
        let owned;
        let value = match &field.value {
            FieldValue::Path(path) => lookup(input, path)?,
            FieldValue::Strftime { path, format, fallback } => {
                let time = match lookup(input, path) {
                    Ok(Some(Val::Num(n))) => direct_time(n),
                    _ => None,
                };
                if let Some(time) = time {
                    if value_error.is_none() {
                        let slot = keys.push_slot();
                        slot.0.push_str(&field.key);
                        push_time(&mut slot.1, format, &time);
                    }
                    continue;
                }
                owned = run_single(fallback, input.clone())?;
                Some(&owned)
            }
            FieldValue::Filter(filter) => {
                owned = run_single(filter, input.clone())?;
                Some(&owned)
            }
        };
        if value_error.is_none()
            && let Err(e) = push_key(keys, field.key.as_bytes(), value)
        {
            value_error = Some(e);
        }
    }
    value_error.map_or(Ok(()), Err)
}

/// Runs a filter that must yield exactly one value.
fn run_single(filter: &jaq_core::Filter<Data>, input: Val) -> Result<Val, JqError> {
    let ctx = Ctx::<Data>::new(&filter.lut, Vars::new([]));
    let mut outputs = filter.id.run((ctx, input));
    let output = match outputs.next() {
        None => return Err(JqError::NoOutput),
        Some(out) => out.map_err(runtime_error)?,
    };
    match outputs.next() {
        None => Ok(output),
        Some(Ok(_)) => Err(JqError::MultipleOutputs),
        Some(Err(e)) => Err(runtime_error(e)),
    }
}

/// `.k1.k2…` on `input` with jq 1.6 semantics; `None` is null.
fn lookup<'v>(input: &'v Val, path: &[String]) -> Result<Option<&'v Val>, JqError> {
    let mut current = input;
    for key in path {
        match current {
            Val::Null => return Ok(None),
            // Linear scan: comparing bytes needs no key `Val` (an allocation); records have few keys per level.
            Val::Obj(map) => {
                let found =
                    map.iter().find(|(k, _)| matches!(k, Val::TStr(b) | Val::BStr(b) if b[..] == *key.as_bytes()));
                match found {
                    Some((_, v)) => current = v,
                    None => return Ok(None),
                }
            }
            other => {
                let msg = format!("Cannot index {} with \"{}\"", type_name(other), key);
                return Err(JqError::Runtime(truncate_chars(msg, MAX_MESSAGE_CHARS)));
            }
        }
    }
    Ok(Some(current))
}

/// The UTC time of an epoch-seconds number if the direct `strftime` path handles it (whole seconds, truncated
/// like jq 1.6's conversion to `time_t`).
fn direct_time(n: &Num) -> Option<chrono::DateTime<chrono::Utc>> {
    let secs = match n {
        Num::Int(i) => i64::try_from(*i).ok()?,
        Num::Float(f) => float_secs(*f)?,
        Num::Dec(text) => float_secs(text.parse().ok()?)?,
        Num::BigInt(_) => return None,
    };
    if !(0..DIRECT_TIME_LIMIT).contains(&secs) {
        return None;
    }
    chrono::DateTime::from_timestamp(secs, 0)
}

fn float_secs(f: f64) -> Option<i64> {
    // The range check keeps the cast exact; NaN fails it.
    (0.0..DIRECT_TIME_LIMIT as f64).contains(&f).then(|| f.trunc() as i64)
}

fn push_time(out: &mut String, format: &[TimePiece], time: &chrono::DateTime<chrono::Utc>) {
    use chrono::{Datelike, Timelike};
    for piece in format {
        let _ = match piece {
            TimePiece::Text(text) => {
                out.push_str(text);
                Ok(())
            }
            TimePiece::Year => write!(out, "{:04}", time.year()),
            TimePiece::YearOfCentury => write!(out, "{:02}", time.year().rem_euclid(100)),
            TimePiece::Month => write!(out, "{:02}", time.month()),
            TimePiece::Day => write!(out, "{:02}", time.day()),
            TimePiece::DayOfYear => write!(out, "{:03}", time.ordinal()),
            TimePiece::Hour => write!(out, "{:02}", time.hour()),
            TimePiece::Minute => write!(out, "{:02}", time.minute()),
            TimePiece::Second => write!(out, "{:02}", time.second()),
        };
    }
}

/// A `strftime` format made only of [`TimePiece`]s, or `None`.
fn time_format(format: &str) -> Option<Vec<TimePiece>> {
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            text.push(c);
            continue;
        }
        let piece = match chars.next()? {
            '%' => {
                text.push('%');
                continue;
            }
            'Y' => TimePiece::Year,
            'y' => TimePiece::YearOfCentury,
            'm' => TimePiece::Month,
            'd' => TimePiece::Day,
            'j' => TimePiece::DayOfYear,
            'H' => TimePiece::Hour,
            'M' => TimePiece::Minute,
            'S' => TimePiece::Second,
            _ => return None,
        };
        if !text.is_empty() {
            pieces.push(TimePiece::Text(std::mem::take(&mut text)));
        }
        pieces.push(piece);
    }
    if !text.is_empty() {
        pieces.push(TimePiece::Text(text));
    }
    Some(pieces)
}

/// Appends one partition key, or says why its value cannot be one.
fn push_key(keys: &mut QueryKeys, key: &[u8], value: Option<&Val>) -> Result<(), JqError> {
    let value = match value {
        None | Some(Val::Null) => return Err(JqError::NullValue { key: lossy(key) }),
        Some(Val::Num(Num::Float(f))) if f.is_nan() => return Err(JqError::NullValue { key: lossy(key) }),
        Some(v @ (Val::Arr(_) | Val::Obj(_))) => {
            return Err(JqError::NonScalarValue { key: lossy(key), found: type_name(v) });
        }
        Some(v) => v,
    };
    let slot = keys.push_slot();
    push_lossy(&mut slot.0, key);
    match value {
        Val::TStr(b) | Val::BStr(b) => push_lossy(&mut slot.1, b),
        Val::Num(n) => push_number(&mut slot.1, n),
        Val::Bool(b) => slot.1.push_str(if *b { "true" } else { "false" }),
        // Rejected above.
        Val::Null | Val::Arr(_) | Val::Obj(_) => {}
    }
    Ok(())
}

// ------------------------------------------------------------------------------------------------
// Compilation
// ------------------------------------------------------------------------------------------------

/// Parses `code` with the jq 1.6-adjusted prelude. Module imports are rejected (the loader has no reader).
fn load<'s>(arena: &'s Arena, code: &'s str) -> Result<jaq_core::load::Modules<&'s str, ()>, JqError> {
    let overrides = jaq_core::load::parse(PRELUDE_OVERRIDES, |p| p.defs())
        .ok_or_else(|| JqError::Compile("internal error: the jq 1.6 prelude does not parse".into()))?;
    let defs = jaq_core::defs()
        .chain(jaq_std::defs())
        .chain(jaq_json::defs())
        .filter(|d| !DROPPED_DEFS.contains(&(d.name, d.args.len())))
        .chain(overrides);
    Loader::new(defs).load(arena, File { code, path: () }).map_err(|errs| {
        let mut msg = String::new();
        for (_file, err) in errs {
            match err {
                jaq_core::load::Error::Io(paths) => {
                    for (path, _) in paths {
                        sep(&mut msg);
                        let _ = write!(msg, "modules cannot be imported ({path:?})");
                    }
                }
                jaq_core::load::Error::Lex(lex_errs) => {
                    for (expected, found) in lex_errs {
                        sep(&mut msg);
                        match expected {
                            lex::Expect::Delim(open) => {
                                let _ = write!(msg, "unclosed {open}");
                            }
                            other => {
                                let _ = write!(msg, "expected {}", other.as_str());
                            }
                        }
                        describe_position(&mut msg, code, found);
                    }
                }
                jaq_core::load::Error::Parse(parse_errs) => {
                    for (expected, found) in parse_errs {
                        sep(&mut msg);
                        let _ = write!(msg, "expected {}", expected.as_str());
                        describe_position(&mut msg, code, found);
                    }
                }
            }
        }
        JqError::Compile(msg)
    })
}

/// Compiles a whole query (interpolations rewritten, jq 1.6 prelude and natives).
fn compile_filter(query: &str) -> Result<jaq_core::Filter<Data>, JqError> {
    // Parse the query as written first, so that syntax errors point into the user's text.
    let arena = Arena::default();
    load(&arena, query)?;
    let rewritten = rewrite_interpolations(query)?;
    let modules = load(&arena, &rewritten)?;
    Compiler::default().with_funs(natives()).compile(modules).map_err(|errs| {
        let mut msg = String::new();
        for (_file, undefined) in errs {
            for (name, what) in undefined {
                sep(&mut msg);
                match what {
                    jaq_core::compile::Undefined::Filter(arity) => {
                        let _ = write!(msg, "undefined filter {name}/{arity}");
                    }
                    other => {
                        let _ = write!(msg, "undefined {} {name}", other.as_str());
                    }
                }
            }
        }
        JqError::Compile(msg)
    })
}

/// Rejects queries whose syntax tree is deeper than [`MAX_QUERY_DEPTH`] (called after a successful load).
fn check_query_depth(query: &str) -> Result<(), JqError> {
    let Some(term) = jaq_core::load::parse(query, |p| p.term()) else {
        return Err(JqError::Compile("module directives are not supported".into()));
    };
    if term_exceeds(&term, MAX_QUERY_DEPTH) {
        return Err(JqError::Compile(format!("the query nests more than {MAX_QUERY_DEPTH} levels deep")));
    }
    Ok(())
}

/// Whether `term` is deeper than `budget`. The recursion itself stops at `budget` levels.
fn term_exceeds(term: &jaq_core::load::parse::Term<&str>, budget: usize) -> bool {
    use jaq_core::load::parse::{BinaryOp, Term};
    use jaq_core::path::Part;
    let Some(budget) = budget.checked_sub(1) else { return true };
    let sub = |t: &Term<&str>| term_exceeds(t, budget);
    let opt = |t: &Option<Box<Term<&str>>>| t.as_deref().is_some_and(sub);
    match term {
        Term::Id | Term::Recurse | Term::Num(_) | Term::Var(_) | Term::Break(_) => false,
        Term::Str(_, parts) => parts.iter().any(|p| matches!(p, StrPart::Term(t) if sub(t))),
        Term::Arr(t) => opt(t),
        Term::Obj(entries) => entries.iter().any(|(k, v)| sub(k) || v.as_ref().is_some_and(sub)),
        Term::Neg(t) | Term::Label(_, t) => sub(t),
        Term::BinOp(l, op, r) => {
            sub(l) || sub(r) || matches!(op, BinaryOp::Pipe(Some(p)) if pattern_exceeds(p, budget))
        }
        Term::Fold(_, xs, pattern, args) => sub(xs) || pattern_exceeds(pattern, budget) || args.iter().any(sub),
        Term::TryCatch(t, catch) => sub(t) || opt(catch),
        Term::IfThenElse(branches, otherwise) => branches.iter().any(|(c, t)| sub(c) || sub(t)) || opt(otherwise),
        Term::Def(defs, t) => defs.iter().any(|d| sub(&d.body)) || sub(t),
        Term::Call(_, args) => args.iter().any(sub),
        Term::Path(t, path) => {
            sub(t)
                || path.0.iter().any(|(part, _)| match part {
                    Part::Index(i) => sub(i),
                    Part::Range(from, to) => from.as_ref().is_some_and(sub) || to.as_ref().is_some_and(sub),
                })
        }
    }
}

fn pattern_exceeds(pattern: &jaq_core::load::parse::Pattern<&str>, budget: usize) -> bool {
    use jaq_core::load::parse::Pattern;
    let Some(budget) = budget.checked_sub(1) else { return true };
    match pattern {
        Pattern::Var(_) => false,
        Pattern::Arr(items) => items.iter().any(|p| pattern_exceeds(p, budget)),
        Pattern::Obj(entries) => entries.iter().any(|(k, p)| term_exceeds(k, budget) || pattern_exceeds(p, budget)),
    }
}

/// Splits a query of the form `{k1: v1, "k2": v2, …}` (literal, distinct keys; no shorthand entries; nothing
/// around the braces) into fields, or `None` for any other shape. The split is by top-level commas of the
/// lexed braces; it is accepted only if the parser sees the same entries: each value text, parsed on its own,
/// must give the same syntax tree as in the whole query (a comma inside e.g. `if … then a, b end` thus makes
/// the query fall back to running whole).
fn decompose_object(query: &str) -> Option<Vec<Field>> {
    use jaq_core::load::parse::Term;
    let Some(Term::Obj(entries)) = jaq_core::load::parse(query, |p| p.term()) else { return None };
    let tokens = lex::Lexer::new(query).lex().ok()?;
    let [lex::Token(braces, Tok::Block(inner))] = &tokens[..] else { return None };
    if !braces.starts_with('{') {
        return None;
    }
    // The last inner token is the closing brace.
    let (_close, inner) = inner.split_last()?;
    let segments: Vec<_> = inner.split(|t| matches!(t, lex::Token(",", Tok::Sym))).collect();
    if segments.len() != entries.len() {
        return None;
    }
    let mut fields: Vec<Field> = Vec::with_capacity(entries.len());
    for (segment, (key, value)) in segments.into_iter().zip(&entries) {
        let key = literal_string(key)?;
        let value = value.as_ref()?;
        if fields.iter().any(|f| f.key == key) {
            return None;
        }
        let colon = segment.iter().position(|t| matches!(t, lex::Token(":", Tok::Sym)))?;
        let (first, last) = (segment.get(colon + 1)?, segment.last()?);
        let start = offset_in(query, first.0)?;
        let end = offset_in(query, last.0)? + last.0.len();
        let text = query.get(start..end)?;
        let alone = jaq_core::load::parse(text, |p| p.term())?;
        if format!("{alone:?}") != format!("{value:?}") {
            return None;
        }
        let value = match (literal_path(value), path_strftime(value)) {
            (Some(path), _) => FieldValue::Path(path),
            (None, Some((path, format))) => FieldValue::Strftime { path, format, fallback: compile_filter(text).ok()? },
            (None, None) => FieldValue::Filter(compile_filter(text).ok()?),
        };
        fields.push(Field { key, value });
    }
    Some(fields)
}

/// Byte offset of `part` in `whole`, if `part` is a slice of it.
fn offset_in(whole: &str, part: &str) -> Option<usize> {
    (part.as_ptr() as usize).checked_sub(whole.as_ptr() as usize).filter(|o| o + part.len() <= whole.len())
}

/// The text of a string term without interpolation or format (`a`, `"a\tb"`).
fn literal_string(term: &jaq_core::load::parse::Term<&str>) -> Option<String> {
    use jaq_core::load::parse::Term;
    let Term::Str(None, parts) = term else { return None };
    let mut out = String::new();
    for part in parts {
        match part {
            StrPart::Str(s) => out.push_str(s),
            StrPart::Char(c) => out.push(*c),
            StrPart::Term(_) => return None,
        }
    }
    Some(out)
}

/// `<literal path> | strftime("<format of TimePieces>")`.
fn path_strftime(term: &jaq_core::load::parse::Term<&str>) -> Option<(Vec<String>, Vec<TimePiece>)> {
    use jaq_core::load::parse::{BinaryOp, Term};
    let Term::BinOp(lhs, BinaryOp::Pipe(None), rhs) = term else { return None };
    let Term::Call("strftime", args) = &**rhs else { return None };
    let [format] = &args[..] else { return None };
    Some((literal_path(lhs)?, time_format(&literal_string(format)?)?))
}

/// The keys of a path made only of essential literal object lookups (`.`, `.a`, `.a."b c".d`).
fn literal_path(term: &jaq_core::load::parse::Term<&str>) -> Option<Vec<String>> {
    use jaq_core::load::parse::Term;
    use jaq_core::path::{Opt, Part};
    match term {
        Term::Id => Some(Vec::new()),
        Term::Path(base, path) => {
            let mut keys = literal_path(base)?;
            for (part, opt) in &path.0 {
                match (part, opt) {
                    (Part::Index(key), Opt::Essential) => keys.push(literal_string(key)?),
                    _ => return None,
                }
            }
            Some(keys)
        }
        _ => None,
    }
}

/// Appends "; " between messages.
fn sep(msg: &mut String) {
    if !msg.is_empty() {
        msg.push_str("; ");
    }
}

/// Appends where in `code` the slice `found` starts and what it starts with.
fn describe_position(msg: &mut String, code: &str, found: &str) {
    let offset = (found.as_ptr() as usize).checked_sub(code.as_ptr() as usize).filter(|o| *o <= code.len());
    let snippet: String = found.chars().take(20).collect();
    match (offset, snippet.is_empty()) {
        (Some(o), true) => {
            let _ = write!(msg, " at offset {o} (end of query)");
        }
        (Some(o), false) => {
            let _ = write!(msg, " at offset {o}, found {snippet:?}");
        }
        (None, _) => {
            let _ = write!(msg, ", found {snippet:?}");
        }
    }
}

/// Rewrites every string interpolation `\(f)` that is not under a `@format` into
/// `\((f)|_spillway_tostring)`, so that interpolated numbers print like jq 1.6 (see the module docs).
/// Interpolations under a format go through the format's definition, which uses the jq 1.6 `tostring` /
/// `tojson` natives already.
fn rewrite_interpolations(code: &str) -> Result<Cow<'_, str>, JqError> {
    // A lex error was already reported by `load` on the same text; this only guards the rewrite.
    let tokens = lex::Lexer::new(code).lex().map_err(|_| JqError::Compile("the query does not lex".into()))?;
    let mut inserts = Vec::new();
    collect_interpolations(code, &tokens, &mut inserts);
    if inserts.is_empty() {
        return Ok(Cow::Borrowed(code));
    }
    // Stable: an empty `\()` inserts "(" then ")|…" at the same position, in that order.
    inserts.sort_by_key(|(pos, _)| *pos);
    let suffix = format!(")|{INTERPOLATION_TOSTRING}");
    let mut out = String::with_capacity(code.len() + inserts.len() * (suffix.len() + 1));
    let mut last = 0;
    for (pos, open) in inserts {
        let chunk = code.get(last..pos).ok_or_else(|| JqError::Compile("internal error: rewrite offset".into()))?;
        out.push_str(chunk);
        out.push_str(if open { "(" } else { &suffix });
        last = pos;
    }
    out.push_str(code.get(last..).unwrap_or_default());
    Ok(Cow::Owned(out))
}

/// Collects (byte offset, is-opening) insertion points for [`rewrite_interpolations`].
fn collect_interpolations(code: &str, tokens: &[lex::Token<&str>], inserts: &mut Vec<(usize, bool)>) {
    let mut after_format = false;
    for lex::Token(_, tok) in tokens {
        match tok {
            Tok::Block(inner) => collect_interpolations(code, inner, inserts),
            Tok::Str(parts) => {
                for part in parts {
                    let StrPart::Term(lex::Token(block, Tok::Block(inner))) = part else { continue };
                    collect_interpolations(code, inner, inserts);
                    if after_format {
                        continue;
                    }
                    let start = (block.as_ptr() as usize).checked_sub(code.as_ptr() as usize);
                    let Some(start) = start else { continue };
                    let end = start + block.len();
                    let bytes = code.as_bytes();
                    if block.len() >= 2 && bytes.get(start) == Some(&b'(') && bytes.get(end - 1) == Some(&b')') {
                        inserts.push((start + 1, true));
                        inserts.push((end - 1, false));
                    }
                }
            }
            _ => {}
        }
        after_format = matches!(tok, Tok::Fmt);
    }
}

/// jaq's native filters, minus side effects, with jq 1.6 number printing.
fn natives() -> impl Iterator<Item = Fun<Data>> {
    jaq_core::funs::<Data>()
        .chain(jaq_std::funs::<Data>())
        .chain(jaq_json::funs::<Data>())
        .filter(|(name, args, _)| !DROPPED_NATIVES.contains(&(*name, args.len())))
        .chain(overriding_natives())
}

fn overriding_natives() -> impl Iterator<Item = Fun<Data>> {
    [
        native::run::<Data>(("tostring", v(0), native_tostring)),
        native::run::<Data>((INTERPOLATION_TOSTRING, v(0), native_tostring)),
        native::run::<Data>(("tojson", v(0), native_tojson)),
        native::run::<Data>(("halt", v(1), native_halt)),
        native::run::<Data>(("stderr_empty", v(0), native_nothing)),
        native::run::<Data>(("debug_empty", v(0), native_nothing)),
    ]
    .into_iter()
}

/// jq 1.6 `tostring`: strings unchanged, anything else as jq 1.6 JSON text.
fn native_tostring(cv: Cv<'_, Data>) -> ValXs<'_, Val> {
    let out = match cv.1 {
        s @ Val::TStr(_) => s,
        Val::BStr(b) => Val::TStr(b),
        other => Val::utf8_str(json_text(&other)),
    };
    box_once(Ok(out))
}

/// jq 1.6 `tojson`.
fn native_tojson(cv: Cv<'_, Data>) -> ValXs<'_, Val> {
    box_once(Ok(Val::utf8_str(json_text(&cv.1))))
}

/// `halt/1` must never exit the server.
fn native_halt(cv: Cv<'_, Data>) -> ValXs<'_, Val> {
    let _ = cv;
    bome(Err(Error::str("halt is not supported in a MetadataExtractionQuery")))
}

/// `stderr_empty`/`debug_empty` without the logging: `debug`/`stderr` pass their input through.
fn native_nothing(cv: Cv<'_, Data>) -> ValXs<'_, Val> {
    let _ = cv;
    Box::new(std::iter::empty())
}

// ------------------------------------------------------------------------------------------------
// Running
// ------------------------------------------------------------------------------------------------

/// A jaq exception as a [`JqError::Runtime`]. Halts cannot happen (the native is replaced) but are mapped
/// too, never to `process::exit` as jaq's `unwrap_valr` would.
fn runtime_error(e: Exn<'_, Val>) -> JqError {
    let msg = match e.get_err() {
        Ok(err) => match err.into_val() {
            Val::TStr(b) | Val::BStr(b) => lossy(&b),
            other => json_text(&other),
        },
        Err(e) => match e.get_halt() {
            Ok(code) => format!("halt({code})"),
            Err(_) => "unexpected control flow".to_owned(),
        },
    };
    JqError::Runtime(truncate_chars(msg, MAX_MESSAGE_CHARS))
}

fn truncate_chars(mut s: String, max: usize) -> String {
    if let Some((idx, _)) = s.char_indices().nth(max) {
        s.truncate(idx);
        s.push('…');
    }
    s
}

/// jq type name of a value.
fn type_name(v: &Val) -> &'static str {
    match v {
        Val::Null => "null",
        Val::Bool(_) => "boolean",
        Val::Num(_) => "number",
        Val::TStr(_) | Val::BStr(_) => "string",
        Val::Arr(_) => "array",
        Val::Obj(_) => "object",
    }
}

fn lossy(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len());
    push_lossy(&mut s, bytes);
    s
}

/// Appends bytes as UTF-8, replacing invalid sequences by U+FFFD (what jq 1.6 does when it reads them).
fn push_lossy(out: &mut String, bytes: &[u8]) {
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        if !chunk.invalid().is_empty() {
            out.push(char::REPLACEMENT_CHARACTER);
        }
    }
}

// ------------------------------------------------------------------------------------------------
// jq 1.6 printing
// ------------------------------------------------------------------------------------------------

/// Compact JSON text of a value as jq 1.6 prints it (`tojson`, `tostring` of non-strings).
fn json_text(v: &Val) -> String {
    let mut out = String::new();
    push_json(&mut out, v);
    out
}

fn push_json(out: &mut String, v: &Val) {
    match v {
        Val::Null => out.push_str("null"),
        Val::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Val::Num(n) => push_number(out, n),
        Val::TStr(b) | Val::BStr(b) => push_json_string(out, b),
        Val::Arr(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_json(out, item);
            }
            out.push(']');
        }
        Val::Obj(map) => {
            out.push('{');
            for (i, (k, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                match k {
                    Val::TStr(b) | Val::BStr(b) => push_json_string(out, b),
                    // jq objects only have string keys; jaq's parser also accepts others.
                    other => {
                        let text = json_text(other);
                        push_json_string(out, text.as_bytes());
                    }
                }
                out.push(':');
                push_json(out, item);
            }
            out.push('}');
        }
    }
}

/// A JSON string as jq 1.6 escapes it: `"` and `\`, the named control escapes, other control characters and
/// DEL as `\u00xx`; everything else (including non-ASCII and `/`) raw.
fn push_json_string(out: &mut String, bytes: &[u8]) {
    out.push('"');
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                '\r' => out.push_str("\\r"),
                '\u{8}' => out.push_str("\\b"),
                '\u{c}' => out.push_str("\\f"),
                c if c < ' ' || c == '\u{7f}' => {
                    let _ = write!(out, "\\u{:04x}", c as u32);
                }
                c => out.push(c),
            }
        }
        if !chunk.invalid().is_empty() {
            out.push(char::REPLACEMENT_CHARACTER);
        }
    }
    out.push('"');
}

/// Largest magnitude below which every integer is an exact double (jq 1.6 stores numbers as doubles).
const EXACT_INT_LIMIT: u64 = 1 << 53;

/// Appends a number the way jq 1.6 prints it.
fn push_number(out: &mut String, n: &Num) {
    match n {
        Num::Int(i) if i.unsigned_abs() as u64 <= EXACT_INT_LIMIT => {
            let _ = write!(out, "{i}");
        }
        Num::Int(i) => push_f64(out, *i as f64),
        Num::Float(f) => push_f64(out, *f),
        // Literal decimals from the record or query, kept as text by jaq: jq 1.6 reads them as doubles.
        Num::Dec(text) => push_f64(out, text.parse().unwrap_or(f64::NAN)),
        Num::BigInt(b) => push_f64(out, b.to_string().parse().unwrap_or(f64::NAN)),
    }
}

/// Appends a double as jq 1.6's `jv_dump_term` does: NaN as `null`, infinities clamped to ±DBL_MAX, then
/// `jvp_dtoa_fmt`: shortest round-trip digits, in exponent form when the decimal point position is ≤ -4 or
/// more than 15 past the last digit (`1e-05`, `1e+17`: sign always, at least two exponent digits), otherwise
/// positional (`0.0001`, `1000000000000000`).
fn push_f64(out: &mut String, x: f64) {
    if x.is_nan() {
        out.push_str("null");
        return;
    }
    let x = x.clamp(-f64::MAX, f64::MAX);
    if x.fract() == 0.0 && x.abs() < EXACT_INT_LIMIT as f64 {
        // Exactly representable integer (with |x| < 1e16 jq prints it positionally): itoa, keeping `-0`.
        if x == 0.0 && x.is_sign_negative() {
            out.push_str("-0");
        } else {
            let _ = write!(out, "{}", x as i64);
        }
        return;
    }
    // Rust's `{:e}` gives the shortest round-trip digits, like jq's dtoa mode 0: `-1.2345e-7`, `5e0`.
    let mut buf = StackBuf::default();
    if write!(buf, "{x:e}").is_err() {
        let _ = write!(out, "{x}");
        return;
    }
    let text = buf.as_bytes();
    let (negative, text) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    let Some(e_pos) = text.iter().position(|&b| b == b'e') else {
        let _ = write!(out, "{x}");
        return;
    };
    let (mantissa, exponent) = (&text[..e_pos], &text[e_pos + 1..]);
    let Some(exp10) = parse_i32(exponent) else {
        let _ = write!(out, "{x}");
        return;
    };
    let (first, rest) = match mantissa.split_first() {
        Some((first, rest)) => (*first, rest.strip_prefix(b".").unwrap_or(rest)),
        None => {
            let _ = write!(out, "{x}");
            return;
        }
    };
    // All bytes are ASCII digits from here on.
    let digits = 1 + rest.len() as i32;
    let decpt = exp10 + 1;
    if negative {
        out.push('-');
    }
    if decpt <= -4 || decpt > digits + 15 {
        out.push(first as char);
        if !rest.is_empty() {
            out.push('.');
            rest.iter().for_each(|&d| out.push(d as char));
        }
        let e = decpt - 1;
        let _ = write!(out, "e{}{:02}", if e < 0 { '-' } else { '+' }, e.unsigned_abs());
    } else if decpt <= 0 {
        out.push_str("0.");
        (0..-decpt).for_each(|_| out.push('0'));
        out.push(first as char);
        rest.iter().for_each(|&d| out.push(d as char));
    } else {
        let all = std::iter::once(first).chain(rest.iter().copied());
        for (i, d) in all.enumerate() {
            if i as i32 == decpt {
                out.push('.');
            }
            out.push(d as char);
        }
        (digits..decpt).for_each(|_| out.push('0'));
    }
}

fn parse_i32(bytes: &[u8]) -> Option<i32> {
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

/// Small stack buffer for formatting one double (no allocation per number).
struct StackBuf {
    buf: [u8; 40],
    len: usize,
}

impl Default for StackBuf {
    fn default() -> Self {
        StackBuf { buf: [0; 40], len: 0 }
    }
}

impl StackBuf {
    fn as_bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or_default()
    }
}

impl fmt::Write for StackBuf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len.checked_add(s.len()).ok_or(fmt::Error)?;
        self.buf.get_mut(self.len..end).ok_or(fmt::Error)?.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(query: &str) -> MetadataQuery {
        match MetadataQuery::compile(query) {
            Ok(q) => q,
            Err(e) => panic!("{query}: {e}"),
        }
    }

    fn keys(query: &str, record: &str) -> Vec<(String, String)> {
        match q(query).extract(record.as_bytes()) {
            Ok(k) => k.into_vec(),
            Err(e) => panic!("{query} on {record}: {e}"),
        }
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn err(query: &str, record: &str) -> JqError {
        match q(query).extract(record.as_bytes()) {
            Ok(k) => panic!("{query} on {record}: expected an error, got {:?}", k.into_vec()),
            Err(e) => e,
        }
    }

    fn compile_err(query: &str) -> String {
        match MetadataQuery::compile(query) {
            Ok(_) => panic!("{query}: expected a compile error"),
            Err(JqError::Compile(msg)) => msg,
            Err(other) => panic!("{query}: expected a compile error, got {other:?}"),
        }
    }

    /// `tostring` of a jq literal/expression on a null input.
    fn jq_text(expr: &str) -> String {
        let query = format!("{{v: ({expr} | tostring)}}");
        keys(&query, "null").remove(0).1
    }

    #[test]
    fn reference_example_query() {
        // 1700000000 = 2023-11-14T22:13:20Z
        let record = r#"{"customer_id":"c-42","type":{"device":"mobile"},"event_timestamp":1700000000}"#;
        let got =
            keys(r#"{customer_id:.customer_id,device:.type.device,year:.event_timestamp|strftime("%Y")}"#, record);
        assert_eq!(got, pairs(&[("customer_id", "c-42"), ("device", "mobile"), ("year", "2023")]));
    }

    #[test]
    fn scalar_values_become_strings() {
        let got = keys(
            "{s: .s, i: .i, neg: .neg, t: .t, f: .f, e: .e}",
            r#"{"s":"x y","i":42,"neg":-7,"t":true,"f":false,"e":""}"#,
        );
        assert_eq!(got, pairs(&[("s", "x y"), ("i", "42"), ("neg", "-7"), ("t", "true"), ("f", "false"), ("e", "")]));
    }

    #[test]
    fn numbers_print_like_jq_1_6() {
        assert_eq!(
            keys("{a: (10/2), b: 1.5, c: .c, d: .d}", r#"{"c":1.0,"d":1e3}"#),
            pairs(&[("a", "5"), ("b", "1.5"), ("c", "1"), ("d", "1000")])
        );
        // Expected values printed by jq 1.6 (`jq -n '<expr> | tostring'`).
        let table = [
            ("1.0", "1"),
            ("1e3", "1000"),
            ("1e15", "1000000000000000"),
            ("1e16", "1e+16"),
            ("1e17", "1e+17"),
            ("1.5e16", "15000000000000000"),
            ("3e20", "3e+20"),
            ("1e300", "1e+300"),
            ("1e1000", "1.7976931348623157e+308"),
            ("-1e1000", "-1.7976931348623157e+308"),
            ("0.0001", "0.0001"),
            ("0.00001", "1e-05"),
            ("1.23e-7", "1.23e-07"),
            ("123e-20", "1.23e-18"),
            ("5e-324", "5e-324"),
            ("2.5e-5", "2.5e-05"),
            ("0.1", "0.1"),
            ("0.1 + 0.2", "0.30000000000000004"),
            ("3.14159", "3.14159"),
            ("123456789.123", "123456789.123"),
            ("123456789012", "123456789012"),
            ("12345678901234567890", "12345678901234567000"),
            ("123456789012345678", "123456789012345680"),
            ("100000000000000000000000", "1e+23"),
            // jq 1.6 prints `-0` here: jaq keeps integers apart and integer zero has no sign (documented).
            ("-0", "0"),
            ("-0.0", "-0"),
            ("0", "0"),
            ("-2.5", "-2.5"),
            ("9007199254740993", "9007199254740992"),
            ("nan", "null"),
        ];
        for (expr, want) in table {
            assert_eq!(jq_text(expr), want, "{expr}");
        }
        // Numbers from the record (kept as decimal text by the parser) print the same way.
        let got = keys("{a: .a, b: .b, c: .c, d: .d}", r#"{"a":-0.0,"b":12345678901234567890,"c":2.50,"d":1E+2}"#);
        assert_eq!(got, pairs(&[("a", "-0"), ("b", "12345678901234567000"), ("c", "2.5"), ("d", "100")]));
    }

    #[test]
    fn compound_tostring_and_formats_use_jq_1_6_numbers() {
        assert_eq!(jq_text(r#"[1.0, {"a": 1e17, "b": [null, true]}]"#), r#"[1,{"a":1e+17,"b":[null,true]}]"#);
        assert_eq!(jq_text(r#""\u007f\u0001é/\"\n""#), "\u{7f}\u{1}é/\"\n");
        assert_eq!(jq_text(r#""\u007f\u0001é/\"\n" | tojson"#), r#""\u007f\u0001é/\"\n""#);
        assert_eq!(jq_text(r#"[1.0, 2, "a", null, true] | join("-")"#), "1-2-a--true");
        assert_eq!(jq_text(r#"[] | join("-")"#), "");
        assert_eq!(jq_text(r#"@sh "x \(1.0) \("a")""#), "x 1 'a'");
        assert_eq!(jq_text(r#"@json "x \(1.0) \("a")""#), r#"x 1 "a""#);
        assert_eq!(jq_text("1.0 | @text"), "1");
        assert_eq!(jq_text("1.0 | @base64"), "MQ==");
    }

    #[test]
    fn tostring_and_interpolation() {
        let got = keys(
            r#"{k: "\(.a)-\(.b)", n: (.n / 2 | tostring), nested: "x\("<\(.a * 1.0)>")y", o: "\(.o)"}"#,
            r#"{"a":7,"b":"B","n":10,"o":{"z":2.0}}"#,
        );
        assert_eq!(got, pairs(&[("k", "7-B"), ("n", "5"), ("nested", "x<7>y"), ("o", r#"{"z":2}"#)]));
        // Interpolation in an object key and a path keeps working after the rewrite.
        assert_eq!(keys(r#"{"k\(.a / 1)": ."\(.b)"}"#, r#"{"a":3,"b":"c","c":"v"}"#), pairs(&[("k3", "v")]));
        // A user `tostring` does not change how interpolation prints (as in jq 1.6).
        assert_eq!(keys(r#"def tostring: "no"; {k: "\(.a)"}"#, r#"{"a":1.0}"#), pairs(&[("k", "1")]));
    }

    #[test]
    fn unicode_strings() {
        let got =
            keys(r#"{k: .k, u: (.k | ascii_downcase), j: "\(.k)/€"}"#, r#"{"k":"Zürich-東京-😀","x":"\ud83d\ude00"}"#);
        assert_eq!(got, pairs(&[("k", "Zürich-東京-😀"), ("u", "zürich-東京-😀"), ("j", "Zürich-東京-😀/€")]));
        assert_eq!(keys("{x: .x}", r#"{"x":"\ud83d\ude00 \u00e9"}"#), pairs(&[("x", "😀 é")]));
    }

    #[test]
    fn missing_or_null_key_is_null_value() {
        let e = err("{customer_id: .customer_id, device: .type.device}", r#"{"customer_id":"c"}"#);
        assert_eq!(e, JqError::NullValue { key: "device".into() });
        assert_eq!(e.code(), "DynamicPartitioning.MetadataExtractionFailed");
        assert_eq!(err("{a: .a}", r#"{"a":null}"#), JqError::NullValue { key: "a".into() });
        assert_eq!(err("{a: nan}", "{}"), JqError::NullValue { key: "a".into() });
    }

    #[test]
    fn nested_values_are_errors() {
        assert_eq!(err("{a: .a}", r#"{"a":{"b":1}}"#), JqError::NonScalarValue { key: "a".into(), found: "object" });
        assert_eq!(err("{a: .a}", r#"{"a":[1]}"#), JqError::NonScalarValue { key: "a".into(), found: "array" });
    }

    #[test]
    fn output_shape_errors() {
        assert_eq!(err("{a: .a}, {a: .b}", r#"{"a":"1","b":"2"}"#), JqError::MultipleOutputs);
        assert_eq!(err("{a: (.a, .b)}", r#"{"a":"1","b":"2"}"#), JqError::MultipleOutputs);
        assert_eq!(err(".a", r#"{"a":"1"}"#), JqError::NotAnObject { found: "string" });
        assert_eq!(err(".", "[1]"), JqError::NotAnObject { found: "array" });
        assert_eq!(err("select(.a == 2) | {a: .a}", r#"{"a":1}"#), JqError::NoOutput);
        assert_eq!(err("empty", "{}"), JqError::NoOutput);
        assert!(matches!(err("{a: .a.b}", r#"{"a":"s"}"#), JqError::Runtime(_)));
        assert_eq!(err(r#"error("boom")"#, "{}"), JqError::Runtime("boom".into()));
        assert!(matches!(err("{a: .a}, error(\"x\")", r#"{"a":"1"}"#), JqError::Runtime(_)));
        // `halt` must not exit the process.
        assert!(matches!(err("halt", "{}"), JqError::Runtime(_)));
        assert!(matches!(err("halt_error", "{}"), JqError::Runtime(_)));
        // `debug`/`stderr` pass the input through.
        assert_eq!(keys("{a: (.a | debug | stderr)}", r#"{"a":"1"}"#), pairs(&[("a", "1")]));
    }

    #[test]
    fn runtime_messages_are_bounded() {
        let big = format!(r#"{{"a":"{}"}}"#, "x".repeat(10_000));
        let JqError::Runtime(msg) = err(".a.b", &big) else { panic!("expected a runtime error") };
        assert!(msg.chars().count() <= MAX_MESSAGE_CHARS + 1, "{}", msg.len());
    }

    #[test]
    fn invalid_json_records() {
        for record in ["not json", r#"{"a":"#, "", "   ", r#"{"a":1} {"a":2}"#, "{\"a\":\"\\q\"}"] {
            assert!(matches!(err("{a: .a}", record), JqError::NotJson(_)), "{record:?}");
        }
        // Whitespace around one value is fine.
        assert_eq!(keys("{a: .a}", " \n{\"a\":1}\n"), pairs(&[("a", "1")]));
    }

    #[test]
    fn compile_errors() {
        let syntax = compile_err("{a: .a");
        assert!(syntax.contains("unclosed {"), "{syntax}");
        let syntax = compile_err("{a: .a,, }");
        assert!(syntax.contains("expected"), "{syntax}");
        assert!(compile_err("").contains("expected term"));
        assert!(compile_err("{a: $__loc__}").contains("undefined variable $__loc__"));
        assert!(compile_err("{a: input_line_number}").contains("undefined filter input_line_number/0"));
        assert!(compile_err("{a: (.a | @csv)}").contains("@csv"));
        assert!(compile_err("{a: env.HOME}").contains("undefined filter env/0"));
        assert!(compile_err(". as [$a] ?// $a | {a: $a}").contains("expected"));
        assert!(compile_err(r#"import "foo" as f; {a: 1}"#).contains("modules cannot be imported"));
        assert!(compile_err(r#"{a: "\q"}"#).contains("expected string escape sequence"));
        assert!(compile_err("{a: nosuchfilter(1)}").contains("undefined filter nosuchfilter/1"));
        let e = JqError::Compile("x".into());
        assert_eq!(e.to_string(), "invalid MetadataExtractionQuery: x");
    }

    #[test]
    fn deep_records_are_rejected_like_jq_1_6() {
        let nested = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert_eq!(keys("{a: length}", &nested(256)), pairs(&[("a", "1")]));
        let too_deep = JqError::NotJson("Exceeds depth limit for parsing".into());
        assert_eq!(err("{a: length}", &nested(257)), too_deep);
        assert_eq!(err("{a: length}", &format!(r#"{{"x":{}}}"#, nested(256))), too_deep);
        // Far deeper than any stack would take: rejected before parsing, on the test thread's 2 MiB stack.
        assert_eq!(err("{a: length}", &"[".repeat(1_000_000)), too_deep);
        // Brackets inside strings (escaped quotes included) do not count.
        let record = format!(r#"{{"s":"\"{}","t":"x"}}"#, "[{".repeat(300));
        assert_eq!(keys("{t: .t}", &record), pairs(&[("t", "x")]));
    }

    #[test]
    fn deep_or_huge_queries_are_rejected_at_compile_time() {
        let arrays = |n: usize| format!("{{a: ({}1{} | tostring)}}", "[".repeat(n), "]".repeat(n));
        assert_eq!(keys(&arrays(40), "null"), pairs(&[("a", &format!("{}1{}", "[".repeat(40), "]".repeat(40)))]));
        assert!(compile_err(&arrays(3000)).contains("more than 64 levels"));
        assert!(compile_err(&format!("{{a: {}1}}", "-".repeat(3000))).contains("more than 64 levels"));
        assert!(compile_err(&format!("{{a: .a{}}}", " | .".repeat(3000))).contains("more than 64 levels"));
        let pattern = format!(". as {}$x{} | {{a: 1}}", "[".repeat(100), "]".repeat(100));
        assert!(compile_err(&pattern).contains("more than 64 levels"));
        // Parentheses do not deepen the tree: harmless at run time, and compiling them does not overflow.
        let parens = format!("{{a: {}1{}}}", "(".repeat(3000), ")".repeat(3000));
        assert_eq!(keys(&parens, "null"), pairs(&[("a", "1")]));
        assert!(compile_err(&format!("{{a: \"{}\"}}", "x".repeat(70_000))).contains("longer than"));
        assert!(compile_err("module {}; {a: 1}").contains("module"));
    }

    #[test]
    fn keys_are_reusable_and_looked_up() {
        let query = q("{a: .a, b: .b}");
        let mut keys = QueryKeys::default();
        assert!(query.extract_into(br#"{"a":"1","b":2}"#, &mut keys).is_ok());
        assert_eq!((keys.get("a"), keys.get("b"), keys.get("c"), keys.len()), (Some("1"), Some("2"), None, 2));
        assert!(query.extract_into(br#"{"a":"x"}"#, &mut keys).is_err());
        assert!(query.extract_into(br#"{"a":"3","b":"4"}"#, &mut keys).is_ok());
        assert_eq!(keys.iter().collect::<Vec<_>>(), vec![("a", "3"), ("b", "4")]);
        use spillway_model::prefix::PartitionKeys as _;
        assert_eq!((keys.query("b"), keys.lambda("b")), (Some("4"), None));
        let empty = q("{}").extract(b"{}");
        assert!(empty.is_ok_and(|k| k.is_empty()));
    }

    #[test]
    fn shared_between_threads() {
        let query = q(r#"{customer_id: .customer_id, year: .ts | strftime("%Y"), n: "\(.n / 4)"}"#);
        let record = |i: usize| format!(r#"{{"customer_id":"c{i}","ts":{},"n":{i}}}"#, 1_600_000_000 + i * 40_000_000);
        let expected: Vec<_> = (0..8).map(|i| query.extract(record(i).as_bytes()).map(QueryKeys::into_vec)).collect();
        assert_eq!(expected[2], Ok(pairs(&[("customer_id", "c2"), ("year", "2023"), ("n", "0.5")])));
        let results: Vec<Vec<_>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..2)
                .map(|_| {
                    s.spawn(|| {
                        (0..200)
                            .map(|n| query.extract(record(n % 8).as_bytes()).map(QueryKeys::into_vec))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap_or_default()).collect()
        });
        assert_eq!(results.len(), 2);
        for per_thread in results {
            assert_eq!(per_thread.len(), 200);
            for (n, got) in per_thread.into_iter().enumerate() {
                assert_eq!(got, expected[n % 8]);
            }
        }
    }

    /// "P" for a direct path field, "F" for a compiled one; `None` when the query runs whole.
    fn shape(query: &str) -> Option<String> {
        let fields = q(query).fields?;
        let kind = |f: &Field| match f.value {
            FieldValue::Path(_) => 'P',
            FieldValue::Strftime { .. } => 'T',
            FieldValue::Filter(_) => 'F',
        };
        Some(fields.iter().map(kind).collect())
    }

    #[test]
    fn flat_objects_are_decomposed() {
        let reference = r#"{customer_id:.customer_id,device:.type.device,year:.event_timestamp|strftime("%Y")}"#;
        assert_eq!(shape(reference).as_deref(), Some("PPT"));
        assert_eq!(
            shape(r#"{a: .t | strftime("%A"), b: (.t | strftime("%Y")), c: .t|strftime("%Y-%m-%d %%")}"#).as_deref(),
            Some("FTT")
        );
        assert_eq!(shape(r#"{ "a b": ., "c": ."d e".f, g: .["h"], i: .j? }"#).as_deref(), Some("PPPF"));
        assert_eq!(shape("{a: (.a, .b), b: if . then 1 else 2 end}").as_deref(), Some("FF"));
        for whole in [
            "{a: .a} | .",
            "{a: if . then 1, 2 else 3 end}",
            "{a: label $out | 1, 2}",
            "{a, b: .b}",
            "{$__loc__}",
            "{(.k): 1}",
            r#"{"a\(.x)": 1}"#,
            "{@base64 \"a\": 1}",
            "{a: .a, a: .b}",
            "def f: 1; {a: f}",
            ".",
            "{}",
        ] {
            if let Ok(query) = MetadataQuery::compile(whole) {
                assert!(query.fields.is_none(), "{whole} should run whole");
            }
        }
    }

    #[test]
    fn decomposed_and_whole_queries_agree() {
        let queries = [
            r#"{customer_id:.customer_id,device:.type.device,year:.event_timestamp|strftime("%Y")}"#,
            r#"{a: .a, "b c": .b.c, d: (.n / 2), e: "\(.a)-\(.n)", f: (.n | tostring), g: .t}"#,
            r#"{a: .a, b: .missing}"#,
            r#"{a: .a.b}"#,
            r#"{a: (.a, .a)}"#,
            r#"{a: .arr}"#,
            r#"{a: .obj, b: .a}"#,
            r#"{a: .a // "dflt", b: (.arr | length)}"#,
            r#"{a: (.a | ascii_downcase), b: (.arr | join("/"))}"#,
            r#"{a: empty, b: .a}"#,
            r#"{a: .a, b: error("boom")}"#,
            r#"{a: if .t then "yes", "again" else "no" end, b: .a}"#,
            r#"{a: .}"#,
            r#"{a: .a?, b: .["n"]}"#,
        ];
        let records = [
            concat!(
                r#"{"customer_id":"c1","type":{"device":"d"},"event_timestamp":1700000000,"#,
                r#""a":"X","b":{"c":1.0},"n":5,"t":true,"arr":[1,2],"obj":{}}"#
            ),
            r#"{"a":"y","b":{"c":"z"},"n":1e3,"t":false,"arr":["p","q"]}"#,
            r#"{"a":{"b":"deep"},"b":null,"n":-2.5}"#,
            r#"{"a":null}"#,
            r#"{"a":"s","b":"t"}"#,
            r#"[1,2]"#,
            r#""just a string""#,
            r#"null"#,
            r#"{}"#,
        ];
        let mut decomposed = 0;
        for query in queries {
            let fast = q(query);
            decomposed += usize::from(fast.fields.is_some());
            let whole = match MetadataQuery::compile_with(query, false) {
                Ok(w) => w,
                Err(e) => panic!("{query}: {e}"),
            };
            assert!(whole.fields.is_none());
            for record in records {
                let (a, b) = (fast.extract(record.as_bytes()), whole.extract(record.as_bytes()));
                match (a, b) {
                    (Ok(a), Ok(b)) => assert_eq!(a.into_vec(), b.into_vec(), "{query} on {record}"),
                    (Err(a), Err(b)) => assert_eq!(
                        std::mem::discriminant(&a),
                        std::mem::discriminant(&b),
                        "{query} on {record}: {a:?} vs {b:?}"
                    ),
                    (a, b) => panic!("{query} on {record}: {a:?} vs {b:?}"),
                }
            }
        }
        assert_eq!(decomposed, queries.len() - 1, "all but the `if … , … end` query are decomposed");
    }

    #[test]
    fn direct_strftime_matches_jq_1_6_and_jaq() {
        let format = "%Y-%m-%dT%H:%M:%SZ %y %j %%";
        let query = format!(r#"{{t: .t | strftime("{format}")}}"#);
        // Printed by jq 1.6: `jq -nr '<t> | strftime("%Y-%m-%dT%H:%M:%SZ %y %j %%")'`.
        for (t, want) in [
            ("1700000000", "2023-11-14T22:13:20Z 23 318 %"),
            ("0", "1970-01-01T00:00:00Z 70 001 %"),
            ("951782400", "2000-02-29T00:00:00Z 00 060 %"),
            ("253402300799", "9999-12-31T23:59:59Z 99 365 %"),
            ("1700000000.9", "2023-11-14T22:13:20Z 23 318 %"),
            ("86399.5", "1970-01-01T23:59:59Z 70 001 %"),
        ] {
            assert_eq!(keys(&query, &format!(r#"{{"t":{t}}}"#)), pairs(&[("t", want)]), "{t}");
        }
        // Same answers (or same kind of failure) as jaq's own strftime, in and out of the direct range.
        let fast = q(&query);
        assert!(matches!(fast.fields.as_deref(), Some([Field { value: FieldValue::Strftime { .. }, .. }])));
        let whole = MetadataQuery::compile_with(&query, false).map_err(|e| e.to_string());
        let Ok(whole) = whole else { panic!("{whole:?}") };
        let mut values: Vec<String> =
            ["-1", "-86400.5", "253402300800", "1e20", "\"2023\"", "null", "[2023,0,1,0,0,0,0,0]", "true", "1.5e9"]
                .map(String::from)
                .into();
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        for _ in 0..500 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let secs = seed % 253_402_300_800;
            values.push(secs.to_string());
            values.push(format!("{secs}.{}", seed % 1000));
        }
        for t in values {
            let record = format!(r#"{{"t":{t}}}"#);
            match (fast.extract(record.as_bytes()), whole.extract(record.as_bytes())) {
                (Ok(a), Ok(b)) => assert_eq!(a.into_vec(), b.into_vec(), "{t}"),
                (Err(a), Err(b)) => assert_eq!(std::mem::discriminant(&a), std::mem::discriminant(&b), "{t}"),
                (a, b) => panic!("{t}: {a:?} vs {b:?}"),
            }
        }
    }

    #[test]
    fn direct_path_errors_like_jq() {
        let e = err("{a: .a.b}", r#"{"a":"s"}"#);
        assert_eq!(e, JqError::Runtime(r#"Cannot index string with "b""#.into()));
        assert_eq!(err("{a: .a.b}", "[1]"), JqError::Runtime(r#"Cannot index array with "a""#.into()));
        assert_eq!(keys(r#"{a: ."x y".z}"#, r#"{"x y":{"z":"ok"}}"#), pairs(&[("a", "ok")]));
        assert_eq!(err("{a: .a.b.c}", r#"{"a":null}"#), JqError::NullValue { key: "a".into() });
        // A failing field wins over an earlier null one, as in the whole query.
        assert!(matches!(err("{a: .missing, b: .s.x}", r#"{"s":"str"}"#), JqError::Runtime(_)));
    }

    #[test]
    fn interpolation_rewrite_is_targeted() {
        assert!(matches!(rewrite_interpolations("{a: .a}"), Ok(Cow::Borrowed(_))));
        let rewritten = rewrite_interpolations(r#"@base64 "\(.a)", "x\(.b)\()""#).map(Cow::into_owned);
        assert_eq!(rewritten, Ok(r#"@base64 "\(.a)", "x\((.b)|_spillway_tostring)\(()|_spillway_tostring)""#.into()));
    }

    /// Run by hand: `cargo test -p spillway-pipeline --release processors::jq::tests::throughput -- --ignored
    /// --nocapture`.
    #[test]
    #[ignore]
    fn throughput() {
        let query = q(r#"{customer_id: .customer_id, device: .type.device, year: .event_timestamp | strftime("%Y")}"#);
        let records: Vec<String> = (0..1000)
            .map(|i| {
                format!(
                    concat!(
                        r#"{{"customer_id":"customer-{}","type":{{"device":"{}","os":"android"}},"#,
                        r#""event_timestamp":{},"amount":{}.25,"padding":"{:064x}"}}"#
                    ),
                    i % 37,
                    ["mobile", "desktop", "tablet"][i % 3],
                    1_700_000_000 + i * 997,
                    i,
                    i * 2_654_435_761usize
                )
            })
            .collect();
        let total = 100_000;
        let text = r#"{customer_id: .customer_id, device: .type.device, year: .event_timestamp | strftime("%Y")}"#;
        let whole = MetadataQuery::compile_with(text, false).map_err(|e| e.to_string());
        let Ok(whole) = whole else { panic!("{whole:?}") };
        let parse_only = |record: &[u8]| jaq_json::read::parse_single(record).is_ok();
        let measure = |label: &str, run: &mut dyn FnMut(&[u8]) -> bool| {
            let mut bytes = 0usize;
            let start = std::time::Instant::now();
            for i in 0..total {
                let record = records[i % records.len()].as_bytes();
                bytes += record.len();
                assert!(run(record));
            }
            let elapsed = start.elapsed().as_secs_f64();
            println!(
                "jq extraction, {label}: {total} records ({:.0} B avg) in {elapsed:.3} s = {:.0} records/s",
                bytes as f64 / total as f64,
                total as f64 / elapsed
            );
        };
        let (mut keys, mut whole_keys) = (QueryKeys::default(), QueryKeys::default());
        measure("as compiled (decomposed)", &mut |r| query.extract_into(r, &mut keys).is_ok());
        measure("whole query in jaq", &mut |r| whole.extract_into(r, &mut whole_keys).is_ok());
        measure("JSON parse only", &mut |r| parse_only(r));
    }
}
