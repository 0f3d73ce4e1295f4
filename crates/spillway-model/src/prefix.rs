//! S3 object naming: the `Prefix` / `ErrorOutputPrefix` expression engine and the object name suffix
//! (reference §9.1, §9.3, §12).
//!
//! # What this module owns
//!
//! - [`PrefixPlan::parse`] validates an (Extended) S3 destination's `Prefix`, `ErrorOutputPrefix` and
//!   `CustomTimeZone` once, at CreateDeliveryStream/UpdateDestination time, and answers
//!   `InvalidArgumentException` for everything the real service rejects there.
//! - [`PrefixPlan::evaluate_prefix`] / [`PrefixPlan::evaluate_error_prefix`] turn a plan into the key prefix
//!   of one object. Evaluation never fails on configuration; it fails only on record data (a missing or
//!   unsafe partition key, an evaluated prefix over 512 characters), and the caller then sends those
//!   records to the error output.
//! - [`object_suffix`] and [`object_uuid`] build the rest of the key:
//!   `<evaluated prefix><StreamName>-<VersionId>-<yyyy>-<MM>-<dd>-<HH>-<mm>-<ss>-<uuid><extension>`.
//!
//! # Grammar
//!
//! ```text
//! prefix     = *( literal / expression )
//! literal    = any characters; "!{" only ever opens an expression
//! expression = "!{" namespace ":" value "}"     ; value runs to the first "}", is non-empty, holds no "!{"
//! namespace  = "timestamp" / "firehose" / "partitionKeyFromQuery" / "partitionKeyFromLambda"   ; case-sensitive
//! ```
//!
//! | Expression | Evaluates to | Allowed in |
//! |---|---|---|
//! | `!{timestamp:<pattern>}` | the arrival instant in the plan's zone, Java `DateTimeFormatter` pattern | both |
//! | `!{firehose:random-string}` | 11 lowercase hex digits, new per occurrence, derived from the seed | both |
//! | `!{firehose:error-output-type}` | the failure category, e.g. `processing-failed` | ErrorOutputPrefix |
//! | `!{partitionKeyFromQuery:<k>}` | the jq-extracted key `<k>` of the records | Prefix, dynamic partitioning only |
//! | `!{partitionKeyFromLambda:<k>}` | the Lambda's `metadata.partitionKeys.<k>` | Prefix, dynamic partitioning only |
//!
//! Timestamp patterns follow `java.time.format.DateTimeFormatter` in an English locale: `G` era, `y`/`u` year
//! (`yy` = two digits, `yyyy`+ pads), `Y` week-based year (US weeks, Sunday first), `M`/`L` month (`M`, `MM`, `MMM` = `Aug`, `MMMM` = `August`, `MMMMM` = `A`),
//! `Q`/`q` quarter, `d`, `D` day-of-year, `E` day-of-week (`Mon`, `Monday`, `M`), `a` AM/PM, `H`, `h`, `K`, `k`,
//! `m`, `s`, `S`… fraction (truncated), `n`/`N`/`A` nano-of-second/nano-of-day/milli-of-day, `VV` zone id,
//! `z` zone abbreviation, `O`/`ZZZZ` `GMT+9`-style offsets, `X`/`x`/`Z` numeric offsets. Text in single
//! quotes is literal (`''` is a quote, inside or outside quotes), `[` `]` optional sections always print (a
//! zoned instant has every field), `#` `{` are reserved, any other non-letter is literal. Letter counts are
//! checked as Java checks them (`mmm` → `Too many pattern letters: m`). Unknown letters, and the
//! locale-dependent `B c e F g v w W`, the pad modifier `p` and full zone names `zzzz` are create-time
//! errors: spillway has no locale data to reproduce them faithfully. `z` prints the tzdb abbreviation (`JST`,
//! `EDT`, `UTC`), or the `GMT+05:45` offset where tzdb has only a number.
//!
//! # Key layout (reference §9.1, §9.3)
//!
//! | Configuration | Evaluated prefix | Evaluated error prefix |
//! |---|---|---|
//! | no/empty `Prefix` | `yyyy/MM/dd/HH/` | `<error-output-type>/yyyy/MM/dd/HH/` (or per `ErrorOutputPrefix`) |
//! | static `Prefix` (no `!{`) | `Prefix` + `yyyy/MM/dd/HH/`, no `/` inserted | `Prefix<type>/yyyy/MM/dd/HH/` |
//! | `Prefix` with expressions | evaluated, nothing appended | `ErrorOutputPrefix` required |
//! | static `ErrorOutputPrefix` | — | `ErrorOutputPrefix<error-output-type>/yyyy/MM/dd/HH/` |
//! | `ErrorOutputPrefix` with expressions | — | evaluated, nothing appended |
//!
//! # Invariants
//!
//! - Configuration errors surface only from [`PrefixPlan::parse`]; time formatting cannot fail afterwards.
//! - Evaluation is a pure function of (plan, arrival instant, partition keys, seed): re-delivering the same
//!   records after a crash produces the same key. Every timestamp occurrence in one evaluation uses the
//!   same instant, formatted in the plan's zone (UTC unless `CustomTimeZone`).
//! - The evaluated `Prefix` is at most 512 characters (Unicode scalar values) or evaluation fails with
//!   [`EvalError::TooLong`]. An `ErrorOutputPrefix` cannot contain partition keys, so its evaluated length is
//!   bounded at parse time and a plan whose bound exceeds 512 is rejected there;
//!   [`PrefixPlan::evaluate_error_prefix`] is therefore infallible. The implicit `yyyy/MM/dd/HH/` and
//!   `<error-output-type>/` additions do not count (a 512-character literal prefix plus the date was accepted
//!   by the real service).
//! - Partition key values come from records and are untrusted. A value never makes a key escape its prefix
//!   on a filesystem-backed store: evaluation fails with [`EvalError::UnsafeKeyValue`] when a value is
//!   empty, starts with `/`, contains an ASCII control character (U+0000–U+001F, U+007F), or has a `.` or
//!   `..` segment when split on `/`; and when a `.` or `..` segment of the evaluated prefix contains
//!   characters of a value or is delimited by a `/` of a value (value `a/` before literal `../x` would form
//!   `a/../x`). Every other character, `/` included, is allowed (S3 allows them and AWS documents no
//!   restriction), so a store must still treat empty segments (`a//b`) as it sees fit. Literal text from the
//!   configuration is the stream owner's and is not policed.
//!
//! # Choices where the reference is unconfirmed
//!
//! - A `Prefix` whose only expression is `!{firehose:random-string}` still counts as an expression prefix:
//!   nothing is appended (the reference's "safest model").
//! - A static `ErrorOutputPrefix` gets `<error-output-type>/yyyy/MM/dd/HH/` appended: it takes the place of
//!   `Prefix` in the observed default, and failure categories never share a folder.
//! - Messages other than the two observed ones are spillway's, in the observed `The supplied prefix(es) do
//!   not satisfy the following constraint: ...` form. When several rules are broken the first reported is:
//!   expression syntax (Prefix, then ErrorOutputPrefix), namespaces needing dynamic partitioning,
//!   error-output-type in Prefix, partition keys in ErrorOutputPrefix, dynamic partitioning requirements,
//!   ErrorOutputPrefix required, error-output-type required, length, `CustomTimeZone`.
//! - `CustomTimeZone` accepts any id chrono-tz knows (the documented list is a subset); matching is
//!   case-sensitive.
//! - `!{firehose:random-string}` is hex only, although the real service's examples (`046b6c7f-0b`) suggest the
//!   first 11 characters of a UUID, dash included.

use std::fmt::Write as _;
use std::ops::Range;

use chrono::{DateTime, Datelike, Offset, Timelike, Utc};
use chrono_tz::{OffsetName, Tz};
use uuid::Uuid;

use crate::error::ApiError;

/// The longest an evaluated `Prefix` or `ErrorOutputPrefix` may be, in characters (reference §9.1).
pub const MAX_EVALUATED_PREFIX_CHARS: usize = 512;

/// Number of characters `!{firehose:random-string}` evaluates to.
pub const RANDOM_STRING_CHARS: usize = 11;

/// Upper bound on an `error-output-type` value assumed when bounding an `ErrorOutputPrefix` at parse time
/// (the longest known, `AmazonOpenSearchService-failed`, has 30).
pub const MAX_ERROR_OUTPUT_TYPE_CHARS: usize = 32;

/// The start of every prefix validation message (the one message observed from the real service uses it).
const CONSTRAINT: &str = "The supplied prefix(es) do not satisfy the following constraint: ";

const DYNAMIC_PARTITIONING_DISABLED: &str =
    "Dynamic Partitioning Namespaces can only be part of a prefix expression when Dynamic Partitioning is enabled.";

/// Looks up partition key values of the records an object holds.
pub trait PartitionKeys {
    /// The value of `partitionKeyFromQuery:<key>` (MetadataExtraction / jq).
    fn query(&self, key: &str) -> Option<&str>;
    /// The value of `partitionKeyFromLambda:<key>` (Lambda `metadata.partitionKeys`).
    fn lambda(&self, key: &str) -> Option<&str>;
}

/// No partition keys (streams without dynamic partitioning).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoKeys;

impl PartitionKeys for NoKeys {
    fn query(&self, _key: &str) -> Option<&str> {
        None
    }
    fn lambda(&self, _key: &str) -> Option<&str> {
        None
    }
}

/// Why a prefix could not be evaluated for some records; the caller sends them to the error output.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum EvalError {
    #[error("partition key {key:?} of {namespace} is missing")]
    MissingKey { namespace: &'static str, key: String },
    #[error("evaluated prefix has {len} characters, more than 512")]
    TooLong { len: usize },
    #[error("value of partition key {key:?} of {namespace} is unsafe in an object key: {reason}")]
    UnsafeKeyValue { namespace: &'static str, key: String, reason: &'static str },
}

/// The raw prefix members of an (Extended) S3 destination.
#[derive(Debug, Clone, Copy, Default)]
pub struct PrefixOptions<'a> {
    pub prefix: Option<&'a str>,
    pub error_output_prefix: Option<&'a str>,
    pub custom_time_zone: Option<&'a str>,
    pub dynamic_partitioning: bool,
}

/// A parsed `Prefix` + `ErrorOutputPrefix` + `CustomTimeZone` of an (Extended) S3 destination, validated once at
/// CreateDeliveryStream/UpdateDestination time; evaluation never fails on time formatting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrefixPlan {
    prefix: Shape,
    error: Shape,
    tz: Tz,
}

/// How one of the two prefixes evaluates.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Shape {
    /// No expression: the text followed by the implicit date (error prefix: by `<error-output-type>/` and the
    /// date). Empty for the default prefix.
    Static(String),
    /// At least one expression: evaluated, nothing appended.
    Template(Template),
}

impl PrefixPlan {
    /// Validates the prefix members. Errors are `InvalidArgumentException`s worded like the real service's.
    pub fn parse(opts: PrefixOptions<'_>) -> Result<PrefixPlan, ApiError> {
        let prefix_text = opts.prefix.unwrap_or("");
        let prefix = Template::parse(prefix_text, Field::Prefix)?;
        // An empty ErrorOutputPrefix is the same as none (the observed message says "null or empty").
        let error = match opts.error_output_prefix {
            Some(text) if !text.is_empty() => Some((text, Template::parse(text, Field::ErrorOutputPrefix)?)),
            _ => None,
        };
        let error_template = error.as_ref().map(|(_, t)| t);

        if !opts.dynamic_partitioning
            && (prefix.has_partition_keys() || error_template.is_some_and(Template::has_partition_keys))
        {
            return Err(ApiError::invalid_argument(DYNAMIC_PARTITIONING_DISABLED));
        }
        if prefix.has_error_output_type() {
            return Err(constraint("Prefix cannot contain the expression !{firehose:error-output-type}"));
        }
        if error_template.is_some_and(Template::has_partition_keys) {
            return Err(constraint(
                "ErrorOutputPrefix cannot contain the Dynamic Partitioning Namespaces partitionKeyFromQuery \
                 and partitionKeyFromLambda",
            ));
        }
        if opts.dynamic_partitioning {
            if !prefix.has_partition_keys() {
                return Err(constraint(
                    "Prefix must contain at least one !{partitionKeyFromQuery:<key>} or \
                     !{partitionKeyFromLambda:<key>} expression when Dynamic Partitioning is enabled",
                ));
            }
            if error.is_none() {
                return Err(constraint(
                    "ErrorOutputPrefix cannot be null or empty when Dynamic Partitioning is enabled",
                ));
            }
        }
        if prefix.has_expressions() && error.is_none() {
            return Err(constraint("ErrorOutputPrefix cannot be null or empty when Prefix contains expressions"));
        }
        if let Some(t) = error_template
            && t.has_expressions()
            && !t.has_error_output_type()
        {
            return Err(constraint(
                "ErrorOutputPrefix must contain !{firehose:error-output-type} when it contains expressions",
            ));
        }
        // A prefix whose shortest evaluation is already too long could never deliver a record; an error prefix
        // must always fit because error output has nowhere else to go.
        if prefix.min_chars() > MAX_EVALUATED_PREFIX_CHARS {
            return Err(constraint("Prefix cannot be longer than 512 characters after evaluation"));
        }
        if error_template.is_some_and(|t| t.max_chars() > MAX_EVALUATED_PREFIX_CHARS) {
            return Err(constraint("ErrorOutputPrefix cannot be longer than 512 characters after evaluation"));
        }

        let tz = match opts.custom_time_zone {
            None | Some("") => Tz::UTC,
            Some(name) => name.parse::<Tz>().map_err(|_| {
                ApiError::invalid_argument(format!("CustomTimeZone '{name}' is not a supported time zone ID."))
            })?,
        };

        let prefix_shape =
            if prefix.has_expressions() { Shape::Template(prefix) } else { Shape::Static(prefix_text.to_owned()) };
        let error_shape = match error {
            Some((_, t)) if t.has_expressions() => Shape::Template(t),
            // A static ErrorOutputPrefix (unconfirmed): it takes the place of Prefix in the documented default
            // `<Prefix><error-output-type>/yyyy/MM/dd/HH/`, so failure categories never share a folder — the
            // same guarantee the rule "an ErrorOutputPrefix with expressions must use error-output-type" gives.
            Some((text, _)) => Shape::Static(text.to_owned()),
            // Unset: Prefix has no expression here (checked above), so this is the observed default.
            None => Shape::Static(prefix_text.to_owned()),
        };
        Ok(PrefixPlan { prefix: prefix_shape, error: error_shape, tz })
    }

    /// Evaluated prefix for an object whose oldest record arrived at `arrival` (UTC instant; formatted in the plan's
    /// zone). `keys` looks up partitionKeyFromQuery / partitionKeyFromLambda values. `seed` makes
    /// `!{firehose:random-string}` deterministic: the same seed gives the same key.
    pub fn evaluate_prefix(
        &self,
        arrival: DateTime<Utc>,
        keys: &dyn PartitionKeys,
        seed: u64,
    ) -> Result<String, EvalError> {
        let local = arrival.with_timezone(&self.tz);
        match &self.prefix {
            Shape::Static(text) => {
                let mut out = text.clone();
                push_default_date(&mut out, &local);
                Ok(out)
            }
            Shape::Template(t) => {
                let out = t.render(&local, keys, "", seed)?;
                let len = out.chars().count();
                if len > MAX_EVALUATED_PREFIX_CHARS {
                    return Err(EvalError::TooLong { len });
                }
                Ok(out)
            }
        }
    }

    /// Evaluated error prefix for an error-output object: `error_output_type` is e.g. `processing-failed`.
    /// Infallible: the error prefix has no partition keys and its length was bounded at parse time (assuming
    /// an `error_output_type` of at most [`MAX_ERROR_OUTPUT_TYPE_CHARS`]).
    pub fn evaluate_error_prefix(&self, arrival: DateTime<Utc>, error_output_type: &str, seed: u64) -> String {
        let local = arrival.with_timezone(&self.tz);
        match &self.error {
            Shape::Static(text) => {
                let mut out = String::with_capacity(text.len() + error_output_type.len() + 15);
                out.push_str(text);
                out.push_str(error_output_type);
                out.push('/');
                push_default_date(&mut out, &local);
                out
            }
            // Partition keys were rejected in an ErrorOutputPrefix at parse time, so NoKeys is never consulted
            // and rendering cannot fail; the fallback only keeps this infallible without a panic.
            Shape::Template(t) => t.render(&local, &NoKeys, error_output_type, seed).unwrap_or_default(),
        }
    }

    /// Whether `Prefix` uses partitionKeyFromQuery / partitionKeyFromLambda (dynamic partitioning).
    pub fn uses_partition_keys(&self) -> bool {
        matches!(&self.prefix, Shape::Template(t) if t.has_partition_keys())
    }

    /// The partition key names `Prefix` uses: (partitionKeyFromQuery keys, partitionKeyFromLambda keys), each
    /// in order of first use, without repeats.
    pub fn partition_key_names(&self) -> (Vec<&str>, Vec<&str>) {
        let (mut query, mut lambda) = (Vec::new(), Vec::new());
        if let Shape::Template(t) = &self.prefix {
            for part in &t.parts {
                if let Part::PartitionKey { source, key } = part {
                    let names = match source {
                        KeySource::Query => &mut query,
                        KeySource::Lambda => &mut lambda,
                    };
                    if !names.contains(&key.as_str()) {
                        names.push(key.as_str());
                    }
                }
            }
        }
        (query, lambda)
    }

    /// The zone timestamps are formatted in: `CustomTimeZone`, UTC when empty/absent.
    pub fn time_zone(&self) -> Tz {
        self.tz
    }
}

/// The object name suffix: `<StreamName>-<VersionId>-<yyyy>-<MM>-<dd>-<HH>-<mm>-<ss>-<uuid><extension>`, time
/// formatted in `tz`.
pub fn object_suffix(
    stream_name: &str,
    version_id: u64,
    time: DateTime<Utc>,
    tz: Tz,
    uuid: &Uuid,
    extension: &str,
) -> String {
    let t = time.with_timezone(&tz);
    let mut out = String::with_capacity(stream_name.len() + extension.len() + 64);
    out.push_str(stream_name);
    let _ = write!(out, "-{version_id}-");
    push_year(&mut out, t.year(), 4);
    let _ = write!(
        out,
        "-{:02}-{:02}-{:02}-{:02}-{:02}-{}{extension}",
        t.month(),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        uuid.hyphenated()
    );
    out
}

/// Namespace of the SHA-1 name-based UUIDs behind [`object_uuid`] (a fixed random value; changing it renames
/// every object spillway would re-deliver).
const OBJECT_UUID_NAMESPACE: Uuid = Uuid::from_u128(0x5b1d_7a3e_44c2_4f0e_9a61_c3d8_2e7f_b049);

/// A UUID derived deterministically from (stream id, first lsn, last lsn, discriminator string) — same inputs, same
/// UUID. It is SHA-1 name-based (like a v5 UUID) but carries the version-4 and RFC 4122 variant bits, so it looks
/// like the random UUIDs Firehose puts in object names.
pub fn object_uuid(stream_id: u64, first: u64, last: u64, discriminator: &str) -> Uuid {
    // Fixed-width integers first, the variable-length string last: the encoding is unambiguous.
    let mut name = Vec::with_capacity(24 + discriminator.len());
    name.extend_from_slice(&stream_id.to_be_bytes());
    name.extend_from_slice(&first.to_be_bytes());
    name.extend_from_slice(&last.to_be_bytes());
    name.extend_from_slice(discriminator.as_bytes());
    let digest = Uuid::new_v5(&OBJECT_UUID_NAMESPACE, &name);
    uuid::Builder::from_random_bytes(digest.into_bytes()).into_uuid()
}

fn constraint(what: &str) -> ApiError {
    ApiError::invalid_argument(format!("{CONSTRAINT}{what}"))
}

/// `yyyy/MM/dd/HH/` of `t`.
fn push_default_date(out: &mut String, t: &DateTime<Tz>) {
    push_year(out, year_of_era(t.year()), 4);
    let _ = write!(out, "/{:02}/{:02}/{:02}/", t.month(), t.day(), t.hour());
}

/// The 11 characters of the `index`-th `!{firehose:random-string}` for `seed`: element `index` of the
/// splitmix64 sequence seeded with `seed`, top 44 bits in lowercase hex. The real service's examples look like
/// the start of a random UUID (`046b6c7f-0b` includes the UUID's `-`); spillway keeps to hex digits.
fn random_string(out: &mut String, seed: u64, index: u64) {
    const GOLDEN_GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut z = seed.wrapping_add(index.wrapping_add(1).wrapping_mul(GOLDEN_GAMMA));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    let _ = write!(out, "{:011x}", z >> (64 - 4 * RANDOM_STRING_CHARS as u32));
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Prefix,
    ErrorOutputPrefix,
}

impl Field {
    fn name(self) -> &'static str {
        match self {
            Self::Prefix => "Prefix",
            Self::ErrorOutputPrefix => "ErrorOutputPrefix",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeySource {
    Query,
    Lambda,
}

impl KeySource {
    fn namespace(self) -> &'static str {
        match self {
            Self::Query => "partitionKeyFromQuery",
            Self::Lambda => "partitionKeyFromLambda",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Timestamp(Vec<TimeItem>),
    RandomString,
    ErrorOutputType,
    PartitionKey { source: KeySource, key: String },
}

/// A parsed prefix: literal text and expressions in order.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Template {
    parts: Vec<Part>,
}

impl Template {
    fn parse(text: &str, field: Field) -> Result<Template, ApiError> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("!{") {
            literal.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else {
                return Err(constraint(&format!(
                    "{} contains an expression that is not closed with '}}': '{}'",
                    field.name(),
                    clip(&rest[start..])
                )));
            };
            let body = &after[..end];
            if body.contains("!{") {
                return Err(constraint(&format!(
                    "{} contains '!{{' inside an expression; '!{{' may only start an expression: '!{{{}}}'",
                    field.name(),
                    clip(body)
                )));
            }
            if !literal.is_empty() {
                parts.push(Part::Literal(std::mem::take(&mut literal)));
            }
            parts.push(parse_expression(body, field)?);
            rest = &after[end + 1..];
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        Ok(Template { parts })
    }

    fn has_expressions(&self) -> bool {
        self.parts.iter().any(|p| !matches!(p, Part::Literal(_)))
    }
    fn has_partition_keys(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::PartitionKey { .. }))
    }
    fn has_error_output_type(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::ErrorOutputType))
    }

    /// The fewest characters an evaluation can have (partition key values are at least one character).
    fn min_chars(&self) -> usize {
        self.parts
            .iter()
            .map(|p| match p {
                Part::Literal(s) => s.chars().count(),
                Part::RandomString => RANDOM_STRING_CHARS,
                Part::PartitionKey { .. } => 1,
                Part::Timestamp(_) | Part::ErrorOutputType => 0,
            })
            .sum()
    }

    /// The most characters an evaluation can have, for templates without partition keys.
    fn max_chars(&self) -> usize {
        self.parts
            .iter()
            .map(|p| match p {
                Part::Literal(s) => s.chars().count(),
                Part::Timestamp(items) => items.iter().map(TimeItem::max_chars).sum(),
                Part::RandomString => RANDOM_STRING_CHARS,
                Part::ErrorOutputType => MAX_ERROR_OUTPUT_TYPE_CHARS,
                Part::PartitionKey { .. } => MAX_EVALUATED_PREFIX_CHARS + 1,
            })
            .sum()
    }

    fn render(
        &self,
        t: &DateTime<Tz>,
        keys: &dyn PartitionKeys,
        error_output_type: &str,
        seed: u64,
    ) -> Result<String, EvalError> {
        let mut out = String::new();
        let mut random_index = 0u64;
        // Where each partition key value landed, to check the segments around it afterwards.
        let mut spans: Vec<(Range<usize>, KeySource, &str)> = Vec::new();
        for part in &self.parts {
            match part {
                Part::Literal(s) => out.push_str(s),
                Part::Timestamp(items) => items.iter().for_each(|item| item.format(&mut out, t)),
                Part::RandomString => {
                    random_string(&mut out, seed, random_index);
                    random_index += 1;
                }
                Part::ErrorOutputType => out.push_str(error_output_type),
                Part::PartitionKey { source, key } => {
                    let value = match source {
                        KeySource::Query => keys.query(key),
                        KeySource::Lambda => keys.lambda(key),
                    };
                    let Some(value) = value else {
                        return Err(EvalError::MissingKey { namespace: source.namespace(), key: key.clone() });
                    };
                    if let Some(reason) = unsafe_value(value) {
                        return Err(EvalError::UnsafeKeyValue {
                            namespace: source.namespace(),
                            key: key.clone(),
                            reason,
                        });
                    }
                    let start = out.len();
                    out.push_str(value);
                    spans.push((start..out.len(), *source, key));
                }
            }
        }
        if !spans.is_empty() {
            let mut seg_start = 0;
            for segment in out.split('/') {
                let seg = seg_start..seg_start + segment.len();
                // A value touches a segment when it overlaps it or supplies one of the `/` around it
                // (value `a/` before literal `../x` makes `a/../x`).
                if matches!(segment, "." | "..")
                    && let Some((_, source, key)) =
                        spans.iter().find(|(s, ..)| s.start <= seg.end && seg.start <= s.end)
                {
                    return Err(EvalError::UnsafeKeyValue {
                        namespace: source.namespace(),
                        key: (*key).to_owned(),
                        reason: "it forms a '.' or '..' path segment with the surrounding prefix",
                    });
                }
                seg_start = seg.end + 1;
            }
        }
        Ok(out)
    }
}

/// Why a partition key value cannot go into a key on its own, if it cannot (see the module header).
fn unsafe_value(value: &str) -> Option<&'static str> {
    if value.is_empty() {
        Some("it is empty")
    } else if value.starts_with('/') {
        Some("it starts with '/'")
    } else if value.chars().any(|c| c.is_ascii_control()) {
        Some("it contains a control character")
    } else if value.split('/').any(|s| s == "." || s == "..") {
        Some("it contains a '.' or '..' path segment")
    } else {
        None
    }
}

/// At most 64 characters of user input for a message.
fn clip(s: &str) -> String {
    match s.char_indices().nth(64) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_owned(),
    }
}

fn parse_expression(body: &str, field: Field) -> Result<Part, ApiError> {
    let unknown_namespace = || {
        constraint(&format!(
            "{} contains an expression with an unknown namespace: '!{{{}}}'. Valid namespaces are timestamp, \
             firehose, partitionKeyFromQuery and partitionKeyFromLambda",
            field.name(),
            clip(body)
        ))
    };
    let Some((namespace, value)) = body.split_once(':') else {
        return Err(unknown_namespace());
    };
    if value.is_empty()
        && matches!(namespace, "timestamp" | "firehose" | "partitionKeyFromQuery" | "partitionKeyFromLambda")
    {
        return Err(constraint(&format!(
            "{} contains an expression with an empty value: '!{{{}}}'",
            field.name(),
            clip(body)
        )));
    }
    match namespace {
        "timestamp" => parse_pattern(value).map(Part::Timestamp).map_err(|why| {
            constraint(&format!("{} contains an invalid timestamp pattern '{}': {why}", field.name(), clip(value)))
        }),
        "firehose" => match value {
            "random-string" => Ok(Part::RandomString),
            "error-output-type" => Ok(Part::ErrorOutputType),
            _ => Err(constraint(&format!(
                "{} contains an unknown firehose expression '!{{{}}}'. Valid values are random-string and \
                 error-output-type",
                field.name(),
                clip(body)
            ))),
        },
        "partitionKeyFromQuery" => Ok(Part::PartitionKey { source: KeySource::Query, key: value.to_owned() }),
        "partitionKeyFromLambda" => Ok(Part::PartitionKey { source: KeySource::Lambda, key: value.to_owned() }),
        _ => Err(unknown_namespace()),
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Java DateTimeFormatter patterns
// ---------------------------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NumField {
    Month,
    Quarter,
    DayOfMonth,
    DayOfYear,
    HourOfDay,
    ClockHourOfAmPm,
    HourOfAmPm,
    ClockHourOfDay,
    Minute,
    Second,
    NanoOfSecond,
    NanoOfDay,
    MilliOfDay,
}

impl NumField {
    fn max_digits(self) -> usize {
        match self {
            Self::Quarter => 1,
            Self::DayOfYear => 3,
            Self::NanoOfSecond => 9,
            Self::NanoOfDay => 14,
            Self::MilliOfDay => 8,
            _ => 2,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TextField {
    Era,
    Month,
    Quarter,
    DayOfWeek,
    AmPm,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TextWidth {
    Short,
    Full,
    Narrow,
}

/// One element of a timestamp pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum TimeItem {
    Literal(String),
    /// `y` (year-of-era), `u` (proleptic year) or `Y` (week-based year) repeated `count` times.
    Year {
        proleptic: bool,
        /// `Y`: the year of the week (Sunday to Saturday, as in the US English locale) that holds
        /// the day; the week of January 1 is the first week of its year.
        week_based: bool,
        count: usize,
    },
    /// A zero-padded number of at least `width` digits.
    Number {
        field: NumField,
        width: usize,
    },
    /// `S` repeated: the first `digits` digits of the second's fraction.
    Fraction {
        digits: u32,
    },
    Text {
        field: TextField,
        width: TextWidth,
    },
    /// `VV`: the zone id.
    ZoneId,
    /// `z`: the zone abbreviation.
    ZoneName,
    /// `O` / `OOOO` / `ZZZZ`: `GMT+9` / `GMT+09:00`.
    LocalizedOffset {
        full: bool,
    },
    /// `X` / `x` / `Z`: `kind` indexes Java's offset patterns
    /// `+HH +HHmm +HH:mm +HHMM +HH:MM +HHMMss +HH:MM:ss +HHMMSS +HH:MM:SS`; `zero` is printed for a zero offset.
    Offset {
        kind: u8,
        zero: &'static str,
    },
}

/// Parses a `DateTimeFormatter` pattern, with Java's messages for the errors Java reports.
fn parse_pattern(pattern: &str) -> Result<Vec<TimeItem>, String> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut items: Vec<TimeItem> = Vec::new();
    let mut optional_depth = 0usize;
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        if c.is_ascii_alphabetic() {
            let count = chars[i..].iter().take_while(|&&x| x == c).count();
            items.push(pattern_letter(c, count)?);
            i += count;
        } else if c == '\'' {
            // A quoted literal; `''` is a quote both inside and outside quotes.
            let mut literal = String::new();
            let mut j = i + 1;
            loop {
                match chars.get(j) {
                    None => return Err(format!("Pattern ends with an incomplete string literal: {pattern}")),
                    Some('\'') if chars.get(j + 1) == Some(&'\'') => {
                        literal.push('\'');
                        j += 2;
                    }
                    Some('\'') => break,
                    Some(&x) => {
                        literal.push(x);
                        j += 1;
                    }
                }
            }
            if j == i + 1 {
                literal.push('\'');
            }
            push_literal(&mut items, &literal);
            i = j + 1;
        } else {
            match c {
                // Optional sections print whenever their fields are available, and a zoned instant has all.
                '[' => optional_depth += 1,
                ']' => {
                    if optional_depth == 0 {
                        return Err("Pattern invalid as it contains ] without previous [".to_owned());
                    }
                    optional_depth -= 1;
                }
                '{' | '}' | '#' => return Err(format!("Pattern includes reserved character: '{c}'")),
                _ => push_literal(&mut items, c.encode_utf8(&mut [0; 4])),
            }
            i += 1;
        }
    }
    Ok(items)
}

fn push_literal(items: &mut Vec<TimeItem>, s: &str) {
    match items.last_mut() {
        Some(TimeItem::Literal(prev)) => prev.push_str(s),
        _ => items.push(TimeItem::Literal(s.to_owned())),
    }
}

/// The item for `count` repetitions of pattern letter `c`, checked as `DateTimeFormatterBuilder.appendPattern` does.
fn pattern_letter(c: char, count: usize) -> Result<TimeItem, String> {
    use TimeItem::*;
    let too_many = || Err(format!("Too many pattern letters: {c}"));
    let number =
        |field, max_count: usize| if count <= max_count { Ok(Number { field, width: count }) } else { too_many() };
    let text = |field| match count {
        1..=3 => Ok(Text { field, width: TextWidth::Short }),
        4 => Ok(Text { field, width: TextWidth::Full }),
        5 => Ok(Text { field, width: TextWidth::Narrow }),
        _ => too_many(),
    };
    let number_or_text = |num, txt| if count <= 2 { Ok(Number { field: num, width: count }) } else { text(txt) };
    match c {
        'G' => text(TextField::Era),
        'y' | 'u' | 'Y' if count <= 19 => Ok(Year { proleptic: c == 'u', week_based: c == 'Y', count }),
        'y' | 'u' | 'Y' => too_many(),
        'M' | 'L' => number_or_text(NumField::Month, TextField::Month),
        'Q' | 'q' => number_or_text(NumField::Quarter, TextField::Quarter),
        'E' => text(TextField::DayOfWeek),
        'a' if count == 1 => Ok(Text { field: TextField::AmPm, width: TextWidth::Short }),
        'a' => too_many(),
        'd' => number(NumField::DayOfMonth, 2),
        'D' => number(NumField::DayOfYear, 3),
        'H' => number(NumField::HourOfDay, 2),
        'h' => number(NumField::ClockHourOfAmPm, 2),
        'K' => number(NumField::HourOfAmPm, 2),
        'k' => number(NumField::ClockHourOfDay, 2),
        'm' => number(NumField::Minute, 2),
        's' => number(NumField::Second, 2),
        'S' if count <= 9 => Ok(Fraction { digits: count as u32 }),
        'S' => too_many(),
        'n' => number(NumField::NanoOfSecond, 19),
        'N' => number(NumField::NanoOfDay, 19),
        'A' => number(NumField::MilliOfDay, 19),
        'V' if count == 2 => Ok(ZoneId),
        'V' => Err("Pattern letter count must be 2: V".to_owned()),
        'z' if count <= 3 => Ok(ZoneName),
        'z' if count == 4 => Err("full time-zone names (zzzz) are not supported".to_owned()),
        'z' => too_many(),
        'O' if count == 1 => Ok(LocalizedOffset { full: false }),
        'O' if count == 4 => Ok(LocalizedOffset { full: true }),
        'O' => Err("Pattern letter count must be 1 or 4: O".to_owned()),
        'X' | 'x' if count <= 5 => {
            let kind = if count == 1 { 1 } else { count as u8 + 1 };
            let zero = match (c, count) {
                ('X', _) => "Z",
                (_, 1) => "+00",
                (_, 2 | 4) => "+0000",
                _ => "+00:00",
            };
            Ok(Offset { kind, zero })
        }
        'X' | 'x' => too_many(),
        'Z' if count <= 3 => Ok(Offset { kind: 3, zero: "+0000" }),
        'Z' if count == 4 => Ok(LocalizedOffset { full: true }),
        'Z' if count == 5 => Ok(Offset { kind: 6, zero: "Z" }),
        'Z' => too_many(),
        'B' | 'c' | 'e' | 'F' | 'g' | 'p' | 'v' | 'w' | 'W' => {
            Err(format!("pattern letter '{c}' is locale-dependent or a modifier and is not supported"))
        }
        _ => Err(format!("Unknown pattern letter: {c}")),
    }
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS: [&str; 7] = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"];
const QUARTERS: [&str; 4] = ["1st quarter", "2nd quarter", "3rd quarter", "4th quarter"];

impl TimeItem {
    fn format(&self, out: &mut String, t: &DateTime<Tz>) {
        match self {
            Self::Literal(s) => out.push_str(s),
            Self::Year { proleptic, week_based, count } => {
                let year = if *week_based { week_based_year(t) } else { t.year() };
                push_year(out, if *proleptic || *week_based { year } else { year_of_era(year) }, *count)
            }
            Self::Number { field, width } => {
                let nanos = u64::from(t.nanosecond().min(999_999_999));
                let hour = t.hour();
                let value = match field {
                    NumField::Month => u64::from(t.month()),
                    NumField::Quarter => u64::from(t.month0() / 3 + 1),
                    NumField::DayOfMonth => u64::from(t.day()),
                    NumField::DayOfYear => u64::from(t.ordinal()),
                    NumField::HourOfDay => u64::from(hour),
                    NumField::ClockHourOfAmPm => u64::from(if hour.is_multiple_of(12) { 12 } else { hour % 12 }),
                    NumField::HourOfAmPm => u64::from(hour % 12),
                    NumField::ClockHourOfDay => u64::from(if hour == 0 { 24 } else { hour }),
                    NumField::Minute => u64::from(t.minute()),
                    NumField::Second => u64::from(t.second()),
                    NumField::NanoOfSecond => nanos,
                    NumField::NanoOfDay => u64::from(t.num_seconds_from_midnight()) * 1_000_000_000 + nanos,
                    NumField::MilliOfDay => {
                        (u64::from(t.num_seconds_from_midnight()) * 1_000_000_000 + nanos) / 1_000_000
                    }
                };
                let _ = write!(out, "{value:0width$}");
            }
            Self::Fraction { digits } => {
                let nanos = t.nanosecond().min(999_999_999);
                let value = nanos / 10u32.pow(9 - digits);
                let _ = write!(out, "{value:0width$}", width = *digits as usize);
            }
            Self::Text { field, width } => out.push_str(&text_value(*field, *width, t)),
            Self::ZoneId => out.push_str(t.timezone().name()),
            Self::ZoneName => match t.offset().abbreviation() {
                // tzdb spells some zones' abbreviations as numbers (`+0545`) where Java's locale data may have a
                // name (`NPT`); spillway prints the full GMT offset there rather than guess.
                Some(abbreviation) if abbreviation.starts_with(|c: char| c.is_ascii_alphabetic()) => {
                    out.push_str(abbreviation)
                }
                _ => push_localized_offset(out, t.offset().fix().local_minus_utc(), true),
            },
            Self::LocalizedOffset { full } => push_localized_offset(out, t.offset().fix().local_minus_utc(), *full),
            Self::Offset { kind, zero } => push_offset(out, t.offset().fix().local_minus_utc(), *kind, zero),
        }
    }

    /// The most characters this item can print (years up to six digits, zone ids up to 32 characters).
    fn max_chars(&self) -> usize {
        match self {
            Self::Literal(s) => s.chars().count(),
            Self::Year { count: 2, .. } => 2,
            Self::Year { count, .. } => (*count).max(6) + 1,
            Self::Number { field, width } => (*width).max(field.max_digits()),
            Self::Fraction { digits } => *digits as usize,
            Self::Text { width: TextWidth::Narrow, .. } => 1,
            Self::Text { field, width: TextWidth::Short } => match field {
                TextField::Month | TextField::DayOfWeek => 3,
                TextField::Era | TextField::Quarter | TextField::AmPm => 2,
            },
            Self::Text { field, width: TextWidth::Full } => match field {
                TextField::Era => 13,
                TextField::Month | TextField::DayOfWeek => 9,
                TextField::Quarter => 11,
                TextField::AmPm => 2,
            },
            Self::ZoneId => 32,
            Self::ZoneName | Self::LocalizedOffset { .. } => 12,
            Self::Offset { .. } => 9,
        }
    }
}

/// English text of a field (Java's `Locale.ENGLISH` / `Locale.US` text).
fn text_value(field: TextField, width: TextWidth, t: &DateTime<Tz>) -> String {
    let pick = |full: &str| match width {
        TextWidth::Full => full.to_owned(),
        TextWidth::Short => full.chars().take(3).collect(),
        TextWidth::Narrow => full.chars().take(1).collect(),
    };
    match field {
        TextField::Era => {
            let (short, full, narrow) =
                if t.year() >= 1 { ("AD", "Anno Domini", "A") } else { ("BC", "Before Christ", "B") };
            match width {
                TextWidth::Short => short,
                TextWidth::Full => full,
                TextWidth::Narrow => narrow,
            }
            .to_owned()
        }
        TextField::Month => pick(MONTHS[t.month0() as usize % 12]),
        TextField::DayOfWeek => pick(DAYS[t.weekday().num_days_from_monday() as usize % 7]),
        TextField::Quarter => {
            let q = t.month0() as usize / 3 % 4;
            match width {
                TextWidth::Short => format!("Q{}", q + 1),
                TextWidth::Full => QUARTERS[q].to_owned(),
                TextWidth::Narrow => (q + 1).to_string(),
            }
        }
        TextField::AmPm => (if t.hour() < 12 { "AM" } else { "PM" }).to_owned(),
    }
}

/// `OffsetIdPrinterParser.format`: sign and hours, minutes and seconds as `kind` asks, `zero` for a zero offset
/// (also when the printed fields are all zero, as Java does).
fn push_offset(out: &mut String, seconds: i32, kind: u8, zero: &str) {
    let start = out.len();
    if seconds != 0 {
        let abs = seconds.unsigned_abs();
        let (h, m, s) = (abs / 3600, abs / 60 % 60, abs % 60);
        let colon = if kind.is_multiple_of(2) { ":" } else { "" };
        let _ = write!(out, "{}{h:02}", if seconds < 0 { '-' } else { '+' });
        let mut printed = h;
        if kind >= 3 || (kind >= 1 && m > 0) {
            let _ = write!(out, "{colon}{m:02}");
            printed += m;
            if kind >= 7 || (kind >= 5 && s > 0) {
                let _ = write!(out, "{colon}{s:02}");
                printed += s;
            }
        }
        if printed != 0 {
            return;
        }
    }
    out.truncate(start);
    out.push_str(zero);
}

/// `GMT`, `GMT+9`, `GMT+5:30` (short) or `GMT+09:00` (full); seconds only when non-zero.
fn push_localized_offset(out: &mut String, seconds: i32, full: bool) {
    out.push_str("GMT");
    if seconds == 0 {
        return;
    }
    let abs = seconds.unsigned_abs();
    let (h, m, s) = (abs / 3600, abs / 60 % 60, abs % 60);
    out.push(if seconds < 0 { '-' } else { '+' });
    if full {
        let _ = write!(out, "{h:02}:{m:02}");
        if s > 0 {
            let _ = write!(out, ":{s:02}");
        }
    } else {
        let _ = write!(out, "{h}");
        if m > 0 || s > 0 {
            let _ = write!(out, ":{m:02}");
            if s > 0 {
                let _ = write!(out, ":{s:02}");
            }
        }
    }
}

/// Java's year printing: `yy` is the last two digits; otherwise at least `count` digits, a `-` for negative
/// years, and for `count` ≥ 4 a `+` when the year needs more digits than `count`.
fn push_year(out: &mut String, year: i32, count: usize) {
    if count == 2 {
        let _ = write!(out, "{:02}", (year % 100).unsigned_abs());
        return;
    }
    let abs = year.unsigned_abs();
    if year < 0 {
        out.push('-');
    } else if count >= 4 && abs.checked_ilog10().map_or(1, |l| l as usize + 1) > count {
        out.push('+');
    }
    let _ = write!(out, "{abs:0count$}");
}

/// The week-based year (`Y`) in the US English locale: weeks run Sunday to Saturday and the week
/// holding January 1 is week 1, so the last days of December can belong to the next year. (Seed
/// 004's prefix uses `YYYY`; the real service accepts it.)
fn week_based_year(t: &DateTime<Tz>) -> i32 {
    let saturday = t.date_naive() + chrono::Duration::days(6 - i64::from(t.weekday().num_days_from_sunday()));
    saturday.year()
}

/// Year-of-era (`y`): 1 BC is year-of-era 1.
fn year_of_era(year: i32) -> i32 {
    if year >= 1 { year } else { 1 - year }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;
    use chrono::TimeZone;
    use std::collections::HashMap;

    /// The instant of the reference's examples: 2018-08-27 10:30 UTC (a Monday, day 239).
    fn example_time() -> DateTime<Utc> {
        at(2018, 8, 27, 10, 30, 0)
    }

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
    }

    fn opts<'a>(prefix: Option<&'a str>, error_output_prefix: Option<&'a str>) -> PrefixOptions<'a> {
        PrefixOptions { prefix, error_output_prefix, ..PrefixOptions::default() }
    }

    fn plan(prefix: Option<&str>, error_output_prefix: Option<&str>) -> PrefixPlan {
        PrefixPlan::parse(opts(prefix, error_output_prefix)).unwrap()
    }

    fn dp_plan(prefix: &str, error_output_prefix: &str) -> PrefixPlan {
        PrefixPlan::parse(PrefixOptions { dynamic_partitioning: true, ..opts(Some(prefix), Some(error_output_prefix)) })
            .unwrap()
    }

    /// The message of an InvalidArgumentException (fails if parsing succeeds or answers another code).
    fn rejected(o: PrefixOptions<'_>) -> String {
        let e = PrefixPlan::parse(o).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidArgument, "{e}");
        e.message
    }

    fn constraint_msg(what: &str) -> String {
        format!("The supplied prefix(es) do not satisfy the following constraint: {what}")
    }

    #[test]
    fn week_based_year_as_in_seed004() {
        let p = |t| {
            let plan = PrefixPlan::parse(opts(Some("year=!{timestamp:YYYY}/"), Some("e/"))).unwrap();
            eval(&plan, t)
        };
        assert_eq!(p(at(2020, 9, 3, 9, 0, 0)), "year=2020/");
        // 2020-12-27 is a Sunday: that week holds 2021-01-01.
        assert_eq!(p(at(2020, 12, 26, 0, 0, 0)), "year=2020/");
        assert_eq!(p(at(2020, 12, 27, 0, 0, 0)), "year=2021/");
        assert_eq!(p(at(2021, 1, 2, 0, 0, 0)), "year=2021/");
    }

    fn eval(p: &PrefixPlan, t: DateTime<Utc>) -> String {
        p.evaluate_prefix(t, &NoKeys, 7).unwrap()
    }

    /// `!{timestamp:<pattern>}` of `t` in `zone`.
    fn ts_in(pattern: &str, t: DateTime<Utc>, zone: &str) -> String {
        let prefix = format!("!{{timestamp:{pattern}}}");
        let p = PrefixPlan::parse(PrefixOptions {
            custom_time_zone: Some(zone),
            ..opts(Some(&prefix), Some("e/!{firehose:error-output-type}"))
        })
        .unwrap();
        eval(&p, t)
    }

    fn pattern_error(pattern: &str) -> String {
        let prefix = format!("!{{timestamp:{pattern}}}");
        rejected(opts(Some(&prefix), Some("e/!{firehose:error-output-type}")))
    }

    #[derive(Default)]
    struct Keys {
        query: HashMap<String, String>,
        lambda: HashMap<String, String>,
    }

    impl Keys {
        fn query(pairs: &[(&str, &str)]) -> Self {
            Keys { query: pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(), ..Keys::default() }
        }
    }

    impl PartitionKeys for Keys {
        fn query(&self, key: &str) -> Option<&str> {
            self.query.get(key).map(String::as_str)
        }
        fn lambda(&self, key: &str) -> Option<&str> {
            self.lambda.get(key).map(String::as_str)
        }
    }

    fn is_random_string(s: &str) -> bool {
        s.len() == 11 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    }

    // --- key layout (§9.1) ---

    #[test]
    fn absent_or_empty_prefix_is_the_utc_hour() {
        assert_eq!(eval(&plan(None, None), example_time()), "2018/08/27/10/");
        assert_eq!(eval(&plan(Some(""), Some("")), example_time()), "2018/08/27/10/");
        assert_eq!(eval(&plan(None, None), at(2026, 1, 2, 3, 4, 5)), "2026/01/02/03/");
    }

    #[test]
    fn static_prefix_gets_the_date_appended_without_a_slash() {
        let t = at(2026, 7, 13, 14, 5, 9);
        assert_eq!(eval(&plan(Some("legacy"), None), t), "legacy2026/07/13/14/");
        assert_eq!(eval(&plan(Some("logs/"), None), t), "logs/2026/07/13/14/");
        // `!`, `{` and `}` are ordinary characters when they do not form `!{`.
        assert_eq!(eval(&plan(Some("a!b{c}/"), None), t), "a!b{c}/2026/07/13/14/");
    }

    #[test]
    fn prefix_with_expressions_gets_nothing_appended() {
        let p = plan(Some("x/!{timestamp:yyyy}/"), Some("e/!{firehose:error-output-type}/"));
        assert_eq!(eval(&p, example_time()), "x/2018/");
        // Only a random string: still an expression, so still nothing appended (unconfirmed upstream).
        let p = plan(Some("r=!{firehose:random-string}/"), Some("e/!{firehose:error-output-type}/"));
        let out = eval(&p, example_time());
        assert!(out.starts_with("r=") && out.ends_with('/') && is_random_string(&out[2..13]), "{out}");
        assert_eq!(out.len(), 14);
    }

    #[test]
    fn default_error_prefix_is_prefix_type_and_date() {
        let t = example_time();
        assert_eq!(
            plan(None, None).evaluate_error_prefix(t, "processing-failed", 1),
            "processing-failed/2018/08/27/10/"
        );
        assert_eq!(
            plan(Some("legacy"), None).evaluate_error_prefix(t, "format-conversion-failed", 1),
            "legacyformat-conversion-failed/2018/08/27/10/"
        );
        assert_eq!(
            plan(Some("logs/"), Some("")).evaluate_error_prefix(t, "processing-failed", 1),
            "logs/processing-failed/2018/08/27/10/"
        );
    }

    #[test]
    fn static_error_prefix_takes_the_place_of_prefix() {
        let p = plan(Some("data/"), Some("errors/"));
        assert_eq!(eval(&p, example_time()), "data/2018/08/27/10/");
        assert_eq!(
            p.evaluate_error_prefix(example_time(), "iceberg-failed", 1),
            "errors/iceberg-failed/2018/08/27/10/"
        );
    }

    // --- the reference's example table (§9.3), at 2018-08-27 10:30 UTC ---

    #[test]
    fn spec_example_unset_prefix_with_error_output_prefix() {
        let p = plan(None, Some("myFirehoseFailures/!{firehose:error-output-type}/"));
        assert_eq!(eval(&p, example_time()), "2018/08/27/10/");
        assert_eq!(
            p.evaluate_error_prefix(example_time(), "processing-failed", 1),
            "myFirehoseFailures/processing-failed/"
        );
    }

    #[test]
    fn spec_example_timestamp_prefix_without_error_output_prefix_is_invalid() {
        let expected = constraint_msg("ErrorOutputPrefix cannot be null or empty when Prefix contains expressions");
        assert_eq!(rejected(opts(Some("!{timestamp:yyyy/MM/dd}"), None)), expected);
        assert_eq!(rejected(opts(Some("!{timestamp:yyyy/MM/dd}"), Some(""))), expected);
    }

    #[test]
    fn spec_example_year_and_random_string() {
        let p = plan(
            Some("myFirehose/DeliveredYear=!{timestamp:yyyy}/anyMonth/rand=!{firehose:random-string}"),
            Some("myFirehoseFailures/!{firehose:error-output-type}/!{timestamp:yyyy}/anyMonth/!{timestamp:dd}"),
        );
        let out = eval(&p, example_time());
        let rand = out.strip_prefix("myFirehose/DeliveredYear=2018/anyMonth/rand=").unwrap();
        assert!(is_random_string(rand), "{out}");
        // The reference's table shows `.../anyMonth/10` (the hour) for `dd`; `dd` is the day of the month: erratum.
        assert_eq!(
            p.evaluate_error_prefix(example_time(), "processing-failed", 1),
            "myFirehoseFailures/processing-failed/2018/anyMonth/27"
        );
    }

    #[test]
    fn spec_example_hive_style_timestamps() {
        let p = plan(
            Some("myPrefix/year=!{timestamp:yyyy}/month=!{timestamp:MM}/day=!{timestamp:dd}/hour=!{timestamp:HH}/"),
            Some("myErrorPrefix/year=!{timestamp:yyyy}/month=!{timestamp:MM}/!{firehose:error-output-type}"),
        );
        assert_eq!(eval(&p, example_time()), "myPrefix/year=2018/month=08/day=27/hour=10/");
        assert_eq!(
            p.evaluate_error_prefix(example_time(), "processing-failed", 1),
            "myErrorPrefix/year=2018/month=08/processing-failed"
        );
    }

    // --- timestamp patterns ---

    #[test]
    fn quoted_literals() {
        let t = example_time();
        assert_eq!(ts_in("yyyy'-'MM'-'dd", t, ""), "2018-08-27");
        assert_eq!(ts_in("''yyyy''", t, ""), "'2018'");
        assert_eq!(ts_in("h 'o''clock' a", t, ""), "10 o'clock AM");
        assert_eq!(ts_in("'yyyy=' yyyy", t, ""), "yyyy= 2018");
        assert_eq!(ts_in("yyyy/MM/dd/HH/", t, ""), "2018/08/27/10/");
    }

    #[test]
    fn pattern_letters_follow_java() {
        let t = Utc.with_ymd_and_hms(2018, 8, 27, 10, 30, 5).unwrap() + chrono::Duration::nanoseconds(123_456_789);
        let cases = [
            ("y", "2018"),
            ("yy", "18"),
            ("yyy", "2018"),
            ("yyyy", "2018"),
            ("yyyyy", "02018"),
            ("uuuu", "2018"),
            ("G GGGG GGGGG", "AD Anno Domini A"),
            ("M MM MMM MMMM MMMMM", "8 08 Aug August A"),
            ("LLL", "Aug"),
            ("Q QQ QQQ QQQQ QQQQQ", "3 03 Q3 3rd quarter 3"),
            ("d dd", "27 27"),
            ("D DD DDD", "239 239 239"),
            ("E EEE EEEE EEEEE", "Mon Mon Monday M"),
            ("H HH h hh K k", "10 10 10 10 10 10"),
            ("m mm s ss", "30 30 5 05"),
            ("S SSS SSSSSS SSSSSSSSS", "1 123 123456 123456789"),
            ("n", "123456789"),
            ("A", "37805123"),
            ("a", "AM"),
            ("Z ZZZ ZZZZ ZZZZZ", "+0000 +0000 GMT Z"),
            ("X XX XXX x xx xxx", "Z Z Z +00 +0000 +00:00"),
            ("z VV O", "UTC UTC GMT"),
            ("[yyyy]-[MM[dd]]", "2018-0827"),
            ("yyyy.MM,dd_HH~ü", "2018.08,27_10~ü"),
        ];
        for (pattern, expected) in cases {
            assert_eq!(ts_in(pattern, t, ""), expected, "pattern {pattern}");
        }
    }

    #[test]
    fn clock_hours_and_small_values() {
        assert_eq!(ts_in("h K k H a", at(2018, 1, 5, 0, 7, 3), ""), "12 0 24 0 AM");
        assert_eq!(ts_in("h K k H a", at(2018, 1, 5, 12, 7, 3), ""), "12 0 12 12 PM");
        assert_eq!(ts_in("hh K a", at(2018, 1, 5, 22, 7, 3), ""), "10 10 PM");
        assert_eq!(ts_in("D DD DDD d M m s", at(2018, 1, 5, 22, 7, 3), ""), "5 05 005 5 1 7 3");
        assert_eq!(ts_in("Q QQQQ E", at(2018, 12, 30, 0, 0, 0), ""), "4 4th quarter Sun");
    }

    #[test]
    fn offsets_and_zone_names_in_a_custom_zone() {
        let t = example_time();
        assert_eq!(
            ts_in("HH:mm Z X XX XXX XXXXX x O OOOO ZZZZ z VV", t, "Asia/Kolkata"),
            "16:00 +0530 +0530 +0530 +05:30 +05:30 +0530 GMT+5:30 GMT+05:30 GMT+05:30 IST Asia/Kolkata"
        );
        // tzdb has no letters for Nepal's zone: `z` falls back to the full GMT offset (spillway's choice).
        assert_eq!(ts_in("HH:mm z O", t, "Asia/Kathmandu"), "16:15 GMT+05:45 GMT+5:45");
        assert_eq!(ts_in("Z XXX O z", t, "America/Los_Angeles"), "-0700 -07:00 GMT-7 PDT");
    }

    #[test]
    fn every_timestamp_occurrence_uses_the_same_instant() {
        let t = at(2018, 8, 27, 23, 59, 59) + chrono::Duration::milliseconds(999);
        let p = plan(
            Some("!{timestamp:HH:mm:ss.SSS}/!{timestamp:dd}/!{timestamp:ss.SSS}/"),
            Some("e!{firehose:error-output-type}"),
        );
        assert_eq!(eval(&p, t), "23:59:59.999/27/59.999/");
    }

    #[test]
    fn custom_time_zone_tokyo_crosses_midnight() {
        let t = at(2026, 7, 13, 15, 30, 0);
        let tokyo =
            PrefixPlan::parse(PrefixOptions { custom_time_zone: Some("Asia/Tokyo"), ..opts(None, None) }).unwrap();
        assert_eq!(tokyo.time_zone(), chrono_tz::Asia::Tokyo);
        assert_eq!(eval(&tokyo, t), "2026/07/14/00/");
        assert_eq!(tokyo.evaluate_error_prefix(t, "processing-failed", 0), "processing-failed/2026/07/14/00/");
        assert_eq!(eval(&plan(None, None), t), "2026/07/13/15/");
        assert_eq!(ts_in("yyyy-MM-dd HH:mm EEE z", t, "Asia/Tokyo"), "2026-07-14 00:30 Tue JST");
        let u = Uuid::nil();
        assert_eq!(
            object_suffix("s", 1, t, tokyo.time_zone(), &u, ""),
            "s-1-2026-07-14-00-30-00-00000000-0000-0000-0000-000000000000"
        );
    }

    #[test]
    fn dst_transitions_in_new_york() {
        let zone = "America/New_York";
        let fmt = "yyyy-MM-dd HH:mm z Z";
        // Spring forward: 01:59:59 EST is followed by 03:00 EDT.
        assert_eq!(ts_in(fmt, at(2026, 3, 8, 6, 59, 59), zone), "2026-03-08 01:59 EST -0500");
        assert_eq!(ts_in(fmt, at(2026, 3, 8, 7, 0, 0), zone), "2026-03-08 03:00 EDT -0400");
        // Fall back: 01:30 happens twice, once in each offset; both land in the same hour folder.
        assert_eq!(ts_in(fmt, at(2026, 11, 1, 5, 30, 0), zone), "2026-11-01 01:30 EDT -0400");
        assert_eq!(ts_in(fmt, at(2026, 11, 1, 6, 30, 0), zone), "2026-11-01 01:30 EST -0500");
        let p = PrefixPlan::parse(PrefixOptions { custom_time_zone: Some(zone), ..opts(None, None) }).unwrap();
        assert_eq!(eval(&p, at(2026, 11, 1, 5, 30, 0)), "2026/11/01/01/");
        assert_eq!(eval(&p, at(2026, 11, 1, 6, 30, 0)), "2026/11/01/01/");
    }

    #[test]
    fn time_zone_defaults_to_utc_and_unknown_zones_are_rejected() {
        assert_eq!(plan(None, None).time_zone(), Tz::UTC);
        let empty = PrefixPlan::parse(PrefixOptions { custom_time_zone: Some(""), ..opts(None, None) }).unwrap();
        assert_eq!(empty.time_zone(), Tz::UTC);
        assert_eq!(
            rejected(PrefixOptions { custom_time_zone: Some("Mars/Olympus"), ..opts(None, None) }),
            "CustomTimeZone 'Mars/Olympus' is not a supported time zone ID."
        );
        // Ids are case-sensitive, as IANA ids are.
        rejected(PrefixOptions { custom_time_zone: Some("asia/tokyo"), ..opts(None, None) });
    }

    #[test]
    fn invalid_patterns_are_rejected_with_javas_reason() {
        let bad = |why: &str| constraint_msg(&format!("Prefix contains an invalid timestamp pattern {why}"));
        assert_eq!(pattern_error("yyyy-bb"), bad("'yyyy-bb': Unknown pattern letter: b"));
        assert_eq!(pattern_error("mmm"), bad("'mmm': Too many pattern letters: m"));
        assert_eq!(pattern_error("dd'x"), bad("'dd'x': Pattern ends with an incomplete string literal: dd'x"));
        assert_eq!(pattern_error("yyyy]"), bad("'yyyy]': Pattern invalid as it contains ] without previous ["));
        assert_eq!(pattern_error("yyyy#"), bad("'yyyy#': Pattern includes reserved character: '#'"));
        assert_eq!(pattern_error("V"), bad("'V': Pattern letter count must be 2: V"));
        assert_eq!(pattern_error("OO"), bad("'OO': Pattern letter count must be 1 or 4: O"));
        for p in
            ["aa", "EEEEEE", "MMMMMM", "SSSSSSSSSS", "ZZZZZZ", "XXXXXX", "zzzzz", "DDDD", "HHH", "yyyyyyyyyyyyyyyyyyyy"]
        {
            assert!(pattern_error(p).contains("Too many pattern letters"), "{p}");
        }
        for p in ["ww", "e", "zzzz", "ppH"] {
            assert!(pattern_error(p).contains("not supported"), "{p}");
        }
        // The same rules in an ErrorOutputPrefix name that member.
        assert_eq!(
            rejected(opts(None, Some("!{firehose:error-output-type}/!{timestamp:qqqqqq}"))),
            constraint_msg(
                "ErrorOutputPrefix contains an invalid timestamp pattern 'qqqqqq': Too many pattern letters: q"
            )
        );
    }

    // --- dynamic partitioning (§12) ---

    #[test]
    fn dynamic_partitioning_example() {
        let p = dp_plan(
            concat!(
                "customer_id=!{partitionKeyFromQuery:customer_id}/device=!{partitionKeyFromQuery:device}/",
                "year=!{partitionKeyFromQuery:year}/"
            ),
            "errors/!{firehose:error-output-type}/",
        );
        assert!(p.uses_partition_keys());
        assert_eq!(p.partition_key_names(), (vec!["customer_id", "device", "year"], vec![]));
        let keys = Keys::query(&[("customer_id", "1234567890"), ("device", "mobile"), ("year", "2019")]);
        assert_eq!(
            p.evaluate_prefix(at(2019, 8, 9, 23, 55, 9), &keys, 0).unwrap(),
            "customer_id=1234567890/device=mobile/year=2019/"
        );
        assert_eq!(
            p.evaluate_error_prefix(at(2019, 8, 9, 23, 55, 9), "processing-failed", 0),
            "errors/processing-failed/"
        );
        let partial = Keys::query(&[("customer_id", "1"), ("year", "2019")]);
        assert_eq!(
            p.evaluate_prefix(example_time(), &partial, 0),
            Err(EvalError::MissingKey { namespace: "partitionKeyFromQuery", key: "device".into() })
        );
        assert_eq!(
            p.evaluate_prefix(example_time(), &NoKeys, 0),
            Err(EvalError::MissingKey { namespace: "partitionKeyFromQuery", key: "customer_id".into() })
        );
    }

    #[test]
    fn lambda_keys_mixed_with_query_keys_and_timestamps() {
        let p = dp_plan(
            concat!(
                "t=!{partitionKeyFromLambda:tenant}/q=!{partitionKeyFromQuery:tenant}/!{timestamp:yyyy}/",
                "t2=!{partitionKeyFromLambda:tenant}/r=!{partitionKeyFromLambda:region}/"
            ),
            "err/!{firehose:error-output-type}",
        );
        assert_eq!(p.partition_key_names(), (vec!["tenant"], vec!["tenant", "region"]));
        let mut keys = Keys::query(&[("tenant", "fromjq")]);
        keys.lambda.insert("tenant".into(), "acme".into());
        assert_eq!(
            p.evaluate_prefix(example_time(), &keys, 0),
            Err(EvalError::MissingKey { namespace: "partitionKeyFromLambda", key: "region".into() })
        );
        keys.lambda.insert("region".into(), "eu".into());
        assert_eq!(p.evaluate_prefix(example_time(), &keys, 0).unwrap(), "t=acme/q=fromjq/2018/t2=acme/r=eu/");
        assert!(!plan(Some("x/"), None).uses_partition_keys());
        assert_eq!(plan(None, None).partition_key_names(), (vec![], vec![]));
    }

    // --- validation rules (§9.3, §12) ---

    #[test]
    fn partition_keys_need_dynamic_partitioning() {
        let msg = "Dynamic Partitioning Namespaces can only be part of a prefix expression when Dynamic \
                   Partitioning is enabled.";
        assert_eq!(rejected(opts(Some("k=!{partitionKeyFromQuery:k}/"), Some("e/!{firehose:error-output-type}"))), msg);
        assert_eq!(rejected(opts(Some("k=!{partitionKeyFromLambda:k}/"), None)), msg);
        assert_eq!(rejected(opts(Some("x/"), Some("e/!{firehose:error-output-type}/!{partitionKeyFromQuery:k}"))), msg);
    }

    #[test]
    fn dynamic_partitioning_needs_a_partition_key_in_prefix() {
        let msg = constraint_msg(
            "Prefix must contain at least one !{partitionKeyFromQuery:<key>} or !{partitionKeyFromLambda:<key>} \
             expression when Dynamic Partitioning is enabled",
        );
        let dp = |prefix| PrefixOptions {
            dynamic_partitioning: true,
            ..opts(prefix, Some("e/!{firehose:error-output-type}"))
        };
        assert_eq!(rejected(dp(None)), msg);
        assert_eq!(rejected(dp(Some("static/"))), msg);
        assert_eq!(rejected(dp(Some("!{timestamp:yyyy}/"))), msg);
    }

    #[test]
    fn dynamic_partitioning_needs_an_error_output_prefix() {
        let msg = constraint_msg("ErrorOutputPrefix cannot be null or empty when Dynamic Partitioning is enabled");
        for eop in [None, Some("")] {
            let o = PrefixOptions { dynamic_partitioning: true, ..opts(Some("k=!{partitionKeyFromQuery:k}/"), eop) };
            assert_eq!(rejected(o), msg);
        }
        // A static error prefix is enough.
        let p = dp_plan("k=!{partitionKeyFromQuery:k}/", "err/");
        assert_eq!(
            p.evaluate_error_prefix(example_time(), "processing-failed", 0),
            "err/processing-failed/2018/08/27/10/"
        );
    }

    #[test]
    fn error_output_prefix_with_expressions_needs_error_output_type() {
        assert_eq!(
            rejected(opts(Some("x/"), Some("errors/!{timestamp:yyyy}/"))),
            constraint_msg("ErrorOutputPrefix must contain !{firehose:error-output-type} when it contains expressions")
        );
        assert_eq!(
            rejected(opts(None, Some("errors/!{firehose:random-string}/"))),
            constraint_msg("ErrorOutputPrefix must contain !{firehose:error-output-type} when it contains expressions")
        );
    }

    #[test]
    fn prefix_cannot_use_error_output_type() {
        assert_eq!(
            rejected(opts(Some("x/!{firehose:error-output-type}/"), Some("e/!{firehose:error-output-type}"))),
            constraint_msg("Prefix cannot contain the expression !{firehose:error-output-type}")
        );
    }

    #[test]
    fn error_output_prefix_cannot_use_partition_keys() {
        let o = PrefixOptions {
            dynamic_partitioning: true,
            ..opts(
                Some("k=!{partitionKeyFromQuery:k}/"),
                Some("e/!{firehose:error-output-type}/!{partitionKeyFromLambda:k}"),
            )
        };
        assert_eq!(
            rejected(o),
            constraint_msg(
                "ErrorOutputPrefix cannot contain the Dynamic Partitioning Namespaces partitionKeyFromQuery and \
                 partitionKeyFromLambda"
            )
        );
    }

    #[test]
    fn malformed_expressions_are_rejected() {
        let eop = Some("e/!{firehose:error-output-type}");
        assert_eq!(
            rejected(opts(Some("x/!{foo:bar}/"), eop)),
            constraint_msg(
                "Prefix contains an expression with an unknown namespace: '!{foo:bar}'. Valid namespaces are \
                 timestamp, firehose, partitionKeyFromQuery and partitionKeyFromLambda"
            )
        );
        // No `:` at all, and namespaces are case-sensitive.
        assert!(rejected(opts(Some("!{timestamp}"), eop)).contains("unknown namespace: '!{timestamp}'"));
        assert!(rejected(opts(Some("!{Timestamp:yyyy}"), eop)).contains("unknown namespace"));
        assert_eq!(
            rejected(opts(Some("!{firehose:random}"), eop)),
            constraint_msg(
                "Prefix contains an unknown firehose expression '!{firehose:random}'. Valid values are \
                 random-string and error-output-type"
            )
        );
        assert_eq!(
            rejected(PrefixOptions { dynamic_partitioning: true, ..opts(Some("k=!{partitionKeyFromQuery:}/"), eop) }),
            constraint_msg("Prefix contains an expression with an empty value: '!{partitionKeyFromQuery:}'")
        );
        assert!(rejected(opts(Some("!{timestamp:}"), eop)).contains("empty value"));
        assert_eq!(
            rejected(opts(Some("x/!{timestamp:yyyy"), eop)),
            constraint_msg("Prefix contains an expression that is not closed with '}': '!{timestamp:yyyy'")
        );
        assert_eq!(
            rejected(opts(Some("!{timestamp:yyyy!{timestamp:MM}"), eop)),
            constraint_msg(
                "Prefix contains '!{' inside an expression; '!{' may only start an expression: \
                 '!{timestamp:yyyy!{timestamp:MM}'"
            )
        );
        assert!(
            rejected(opts(None, Some("e/!{firehose:error-output-type")))
                .starts_with(&constraint_msg("ErrorOutputPrefix contains an expression that is not closed"))
        );
    }

    // --- length limit ---

    #[test]
    fn evaluated_prefix_longer_than_512_is_an_eval_error() {
        let prefix = format!("{}/!{{partitionKeyFromQuery:k}}", "a".repeat(500));
        let p = dp_plan(&prefix, "e/!{firehose:error-output-type}");
        let fits = p.evaluate_prefix(example_time(), &Keys::query(&[("k", "bbbbbbbbbbb")]), 0).unwrap();
        assert_eq!(fits.len(), 512);
        assert_eq!(
            p.evaluate_prefix(example_time(), &Keys::query(&[("k", "bbbbbbbbbbbb")]), 0),
            Err(EvalError::TooLong { len: 513 })
        );
        // Characters, not bytes: 11 two-byte characters fit.
        assert!(p.evaluate_prefix(example_time(), &Keys::query(&[("k", "ééééééééééé")]), 0).is_ok());
    }

    #[test]
    fn length_limit_at_parse_time() {
        // A 512-character literal prefix is accepted and still gets the date (observed).
        let literal = "p".repeat(512);
        assert_eq!(eval(&plan(Some(&literal), None), example_time()), format!("{literal}2018/08/27/10/"));
        assert_eq!(
            rejected(opts(Some(&"p".repeat(513)), None)),
            constraint_msg("Prefix cannot be longer than 512 characters after evaluation")
        );
        // An error prefix must always fit: its longest evaluation is bounded.
        let eop = format!("{}!{{firehose:error-output-type}}", "e".repeat(481));
        assert_eq!(
            rejected(opts(None, Some(&eop))),
            constraint_msg("ErrorOutputPrefix cannot be longer than 512 characters after evaluation")
        );
        let eop = format!("{}!{{firehose:error-output-type}}", "e".repeat(512 - MAX_ERROR_OUTPUT_TYPE_CHARS));
        assert!(PrefixPlan::parse(opts(None, Some(&eop))).is_ok());
        assert!(PrefixPlan::parse(opts(None, Some(&"e".repeat(513)))).is_err());
    }

    // --- random strings ---

    #[test]
    fn random_string_is_deterministic_per_seed_and_occurrence() {
        let p =
            plan(Some("!{firehose:random-string}/!{firehose:random-string}/"), Some("e/!{firehose:error-output-type}"));
        let a = p.evaluate_prefix(example_time(), &NoKeys, 42).unwrap();
        assert_eq!(a, p.evaluate_prefix(example_time(), &NoKeys, 42).unwrap());
        let (first, second) = (&a[..11], &a[12..23]);
        assert!(is_random_string(first) && is_random_string(second), "{a}");
        assert_ne!(first, second, "occurrences must differ");
        // Pinned: elements 0 and 1 of the splitmix64 sequence for seed 0 (the algorithm's published first
        // outputs 0xe220a8397b1dcdaf, 0x6e789e6aa1b965f4), top 44 bits.
        assert_eq!(p.evaluate_prefix(example_time(), &NoKeys, 0).unwrap(), "e220a8397b1/6e789e6aa1b/");
        let b = p.evaluate_prefix(example_time(), &NoKeys, 43).unwrap();
        assert_ne!(a, b, "seeds must differ");
        // Many seeds: all distinct, all 11 lowercase hex digits, and every hex digit position varies.
        let outs: std::collections::HashSet<String> = (0..1000u64)
            .map(|seed| p.evaluate_prefix(example_time(), &NoKeys, seed).unwrap()[..11].to_owned())
            .collect();
        assert_eq!(outs.len(), 1000);
        assert!(outs.iter().all(|s| is_random_string(s)));
        assert!(outs.iter().any(|s| s.starts_with(|c: char| c >= '8')), "top bits are used");
        // The error prefix's random strings are deterministic too.
        let e = plan(None, Some("e/!{firehose:error-output-type}/!{firehose:random-string}"));
        let x = e.evaluate_error_prefix(example_time(), "processing-failed", 9);
        assert_eq!(x, e.evaluate_error_prefix(example_time(), "processing-failed", 9));
        assert!(is_random_string(x.strip_prefix("e/processing-failed/").unwrap()));
        assert_ne!(x, e.evaluate_error_prefix(example_time(), "processing-failed", 10));
    }

    // --- object names ---

    #[test]
    fn object_suffix_format() {
        let uuid = Uuid::parse_str("a9fa96af-e4e4-409f-bac3-1f804714faaa").unwrap();
        assert_eq!(
            object_suffix("my-stream", 3, at(2026, 7, 13, 14, 5, 9), Tz::UTC, &uuid, ".gz"),
            "my-stream-3-2026-07-13-14-05-09-a9fa96af-e4e4-409f-bac3-1f804714faaa.gz"
        );
        assert_eq!(
            object_suffix("s", 12, at(2026, 1, 2, 3, 4, 5), chrono_tz::America::New_York, &uuid, ""),
            "s-12-2026-01-01-22-04-05-a9fa96af-e4e4-409f-bac3-1f804714faaa"
        );
    }

    #[test]
    fn object_uuid_is_deterministic_and_looks_random() {
        let u = object_uuid(1, 10, 20, "main");
        assert_eq!(u, object_uuid(1, 10, 20, "main"));
        assert_eq!(u.get_version(), Some(uuid::Version::Random));
        assert_eq!(u.get_variant(), uuid::Variant::RFC4122);
        let others = [
            object_uuid(2, 10, 20, "main"),
            object_uuid(1, 11, 20, "main"),
            object_uuid(1, 10, 21, "main"),
            object_uuid(1, 10, 20, "processing-failed"),
            object_uuid(1, 10, 20, ""),
        ];
        for o in others {
            assert_ne!(o, u);
        }
        // Pinned: changing the derivation would rename objects spillway re-delivers after an upgrade.
        // SHA-1 of namespace ‖ be64(7) ‖ be64(1) ‖ be64(2) ‖ "x", version nibble 4, variant 10 (checked in Python).
        assert_eq!(object_uuid(7, 1, 2, "x").to_string(), "70a90887-16f5-4416-b772-c01fb13eb460");
    }

    // --- untrusted partition key values ---

    #[test]
    fn unsafe_partition_key_values_are_rejected() {
        let p = dp_plan("data/k=!{partitionKeyFromQuery:k}/", "e/!{firehose:error-output-type}");
        let unsafe_reason = |v: &str| match p.evaluate_prefix(example_time(), &Keys::query(&[("k", v)]), 0) {
            Err(EvalError::UnsafeKeyValue { namespace, key, reason }) => {
                assert_eq!((namespace, key.as_str()), ("partitionKeyFromQuery", "k"));
                Some(reason)
            }
            Err(other) => panic!("unexpected {other:?}"),
            Ok(_) => None,
        };
        assert_eq!(unsafe_reason(""), Some("it is empty"));
        assert_eq!(unsafe_reason("/etc"), Some("it starts with '/'"));
        assert_eq!(unsafe_reason("a\nb"), Some("it contains a control character"));
        assert_eq!(unsafe_reason("a\u{7f}"), Some("it contains a control character"));
        assert_eq!(unsafe_reason("a\0"), Some("it contains a control character"));
        for v in [".", "..", "../x", "a/../../b", "a/..", "./a", "a/./b"] {
            assert_eq!(unsafe_reason(v), Some("it contains a '.' or '..' path segment"), "{v}");
        }
        for v in ["a/b", "x..y", "...", "..a", "a b", "日本", "k=v", "%2e%2e", "a\\b", "-"] {
            assert_eq!(unsafe_reason(v), None, "{v}");
        }
        // Values safe alone can still form `..` with the literal text around them.
        let q = dp_plan("!{partitionKeyFromQuery:k}../x/", "e/!{firehose:error-output-type}");
        assert_eq!(
            q.evaluate_prefix(example_time(), &Keys::query(&[("k", "a/")]), 0),
            Err(EvalError::UnsafeKeyValue {
                namespace: "partitionKeyFromQuery",
                key: "k".into(),
                reason: "it forms a '.' or '..' path segment with the surrounding prefix",
            })
        );
        assert_eq!(q.evaluate_prefix(example_time(), &Keys::query(&[("k", "a")]), 0).unwrap(), "a../x/");
        assert_eq!(q.evaluate_prefix(example_time(), &Keys::query(&[("k", "a/b")]), 0).unwrap(), "a/b../x/");
        // A value at the very start cannot make the key absolute.
        let r = dp_plan("!{partitionKeyFromQuery:k}/", "e/!{firehose:error-output-type}");
        assert!(matches!(
            r.evaluate_prefix(example_time(), &Keys::query(&[("k", "/abs")]), 0),
            Err(EvalError::UnsafeKeyValue { .. })
        ));
        // The stream owner's own literal text is not policed.
        let s = dp_plan("../!{partitionKeyFromQuery:k}/", "e/!{firehose:error-output-type}");
        assert_eq!(s.evaluate_prefix(example_time(), &Keys::query(&[("k", "v")]), 0).unwrap(), "../v/");
    }

    #[test]
    fn no_keys_has_no_values() {
        assert_eq!(NoKeys.query("k"), None);
        assert_eq!(NoKeys.lambda("k"), None);
    }
}
