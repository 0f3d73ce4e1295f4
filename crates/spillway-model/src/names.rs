//! Shape constraints of the Firehose model's scalar types (reference §2), checked into [`Violations`].

use crate::error::Violations;
use regex::Regex;
use std::sync::LazyLock;

pub const STREAM_NAME_PATTERN: &str = "[a-zA-Z0-9_.-]+";
pub const ROLE_ARN_PATTERN: &str = r"arn:.*:iam::\d{12}:role/[a-zA-Z_0-9+=,.@\-_/]+";
pub const BUCKET_ARN_PATTERN: &str = r"arn:.*:s3:::[\w\.\-]{1,255}";
pub const FILE_EXTENSION_PATTERN: &str = r"^$|\.[0-9a-z!\-_.*'()]+";
pub const CUSTOM_TIME_ZONE_PATTERN: &str = r"^$|[a-zA-Z/_]+";
pub const KMS_KEY_ARN_PATTERN: &str = r"arn:.*:kms:[a-zA-Z0-9\-]+:\d{12}:(key|alias)/[a-zA-Z_0-9+=,.@\-_/]+";
pub const KMS_KEY_ARN_FOR_SSE_PATTERN: &str = r"arn:.*:kms:[a-zA-Z0-9\-]+:\d{12}:key/[a-zA-Z_0-9+=,.@\-_/]+";
pub const TAG_KEY_PATTERN: &str = r"^(?!aws:)[\p{L}\p{Z}\p{N}_.:\/=+\-@%]*$";
pub const TAG_VALUE_PATTERN: &str = r"^[\p{L}\p{Z}\p{N}_.:\/=+\-@%]*$";

/// A whole-string match of an AWS model pattern (the model's patterns are implicitly anchored).
fn anchored(p: &str) -> Regex {
    // The patterns above are constants; a failure here is a programming error caught by the tests.
    // Java's `\w` (the model's dialect) is ASCII-only; the regex crate's is Unicode and far larger.
    let ascii = p.replace(r"\w", "[A-Za-z0-9_]");
    Regex::new(&format!("^(?:{ascii})$")).unwrap_or_else(|e| panic!("bad built-in pattern {p}: {e}"))
}

static STREAM_NAME: LazyLock<Regex> = LazyLock::new(|| anchored(STREAM_NAME_PATTERN));
static ROLE_ARN: LazyLock<Regex> = LazyLock::new(|| anchored(ROLE_ARN_PATTERN));
static BUCKET_ARN: LazyLock<Regex> = LazyLock::new(|| anchored(BUCKET_ARN_PATTERN));
static FILE_EXTENSION: LazyLock<Regex> = LazyLock::new(|| anchored(FILE_EXTENSION_PATTERN));
static CUSTOM_TIME_ZONE: LazyLock<Regex> = LazyLock::new(|| anchored(CUSTOM_TIME_ZONE_PATTERN));
static KMS_KEY_ARN: LazyLock<Regex> = LazyLock::new(|| anchored(KMS_KEY_ARN_PATTERN));
static KMS_KEY_ARN_FOR_SSE: LazyLock<Regex> = LazyLock::new(|| anchored(KMS_KEY_ARN_FOR_SSE_PATTERN));
// The regex crate has no look-ahead: `(?!aws:)` is checked separately.
static TAG_CHARS: LazyLock<Regex> = LazyLock::new(|| anchored(r"[\p{L}\p{Z}\p{N}_.:/=+\-@%]*"));

/// Which pattern a string member must match.
#[derive(Debug, Clone, Copy)]
pub enum Pattern {
    StreamName,
    RoleArn,
    BucketArn,
    FileExtension,
    CustomTimeZone,
    KmsKeyArn,
    KmsKeyArnForSse,
}

impl Pattern {
    fn regex(self) -> &'static Regex {
        match self {
            Self::StreamName => &STREAM_NAME,
            Self::RoleArn => &ROLE_ARN,
            Self::BucketArn => &BUCKET_ARN,
            Self::FileExtension => &FILE_EXTENSION,
            Self::CustomTimeZone => &CUSTOM_TIME_ZONE,
            Self::KmsKeyArn => &KMS_KEY_ARN,
            Self::KmsKeyArnForSse => &KMS_KEY_ARN_FOR_SSE,
        }
    }
    fn source(self) -> &'static str {
        match self {
            Self::StreamName => STREAM_NAME_PATTERN,
            Self::RoleArn => ROLE_ARN_PATTERN,
            Self::BucketArn => BUCKET_ARN_PATTERN,
            Self::FileExtension => FILE_EXTENSION_PATTERN,
            Self::CustomTimeZone => CUSTOM_TIME_ZONE_PATTERN,
            Self::KmsKeyArn => KMS_KEY_ARN_PATTERN,
            Self::KmsKeyArnForSse => KMS_KEY_ARN_FOR_SSE_PATTERN,
        }
    }
}

/// Checks length bounds (in characters) and an optional pattern.
pub fn check_string(v: &mut Violations, value: &str, path: &str, min: usize, max: usize, pattern: Option<Pattern>) {
    let len = value.chars().count();
    if len < min {
        v.push(value, path, format!("Member must have length greater than or equal to {min}"));
    }
    if len > max {
        v.push(value, path, format!("Member must have length less than or equal to {max}"));
    }
    if let Some(p) = pattern
        && !p.regex().is_match(value)
    {
        v.push(value, path, format!("Member must satisfy regular expression pattern: {}", p.source()));
    }
}

/// `DeliveryStreamName`: 1..64, `[a-zA-Z0-9_.-]+`.
pub fn check_stream_name(v: &mut Violations, name: Option<&str>, path: &str) {
    match name {
        None => v.missing(path),
        Some(n) => check_string(v, n, path, 1, 64, Some(Pattern::StreamName)),
    }
}

/// A value of an enum member.
pub fn check_enum(v: &mut Violations, value: &str, path: &str, allowed: &[&str]) {
    if !allowed.contains(&value) {
        v.push(value, path, format!("Member must satisfy enum value set: [{}]", allowed.join(", ")));
    }
}

/// An integer within `min..=max`.
pub fn check_range(v: &mut Violations, value: i64, path: &str, min: i64, max: i64) {
    if value < min {
        v.push(value, path, format!("Member must have value greater than or equal to {min}"));
    }
    if value > max {
        v.push(value, path, format!("Member must have value less than or equal to {max}"));
    }
}

/// `TagKey`: 1..128, no `aws:` prefix, letters, spaces, digits and `_.:/=+-@%`.
pub fn check_tag_key(v: &mut Violations, key: &str, path: &str) {
    check_string(v, key, path, 1, 128, None);
    if key.starts_with("aws:") || !TAG_CHARS.is_match(key) {
        v.push(key, path, format!("Member must satisfy regular expression pattern: {TAG_KEY_PATTERN}"));
    }
}

/// `TagValue`: 0..256, same characters as keys.
pub fn check_tag_value(v: &mut Violations, value: &str, path: &str) {
    check_string(v, value, path, 0, 256, None);
    if !TAG_CHARS.is_match(value) {
        v.push(value, path, format!("Member must satisfy regular expression pattern: {TAG_VALUE_PATTERN}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(f: impl FnOnce(&mut Violations)) -> bool {
        let mut v = Violations::new();
        f(&mut v);
        v.is_empty()
    }

    #[test]
    fn stream_names() {
        assert!(ok(|v| check_stream_name(v, Some("my-stream_1.0"), "n")));
        assert!(!ok(|v| check_stream_name(v, Some("bad name"), "n")));
        assert!(!ok(|v| check_stream_name(v, Some(""), "n")));
        assert!(!ok(|v| check_stream_name(v, Some(&"a".repeat(65)), "n")));
        assert!(!ok(|v| check_stream_name(v, None, "n")));
    }

    #[test]
    fn arns() {
        let role = "arn:aws:iam::123456789012:role/firehose_delivery_role";
        assert!(ok(|v| check_string(v, role, "r", 1, 512, Some(Pattern::RoleArn))));
        assert!(!ok(|v| check_string(v, "role", "r", 1, 512, Some(Pattern::RoleArn))));
        assert!(ok(|v| check_string(v, "arn:aws:s3:::my-bucket.x", "b", 1, 2048, Some(Pattern::BucketArn))));
        assert!(!ok(|v| check_string(v, "arn:aws:s3:::a/b", "b", 1, 2048, Some(Pattern::BucketArn))));
        let key = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";
        assert!(ok(|v| check_string(v, key, "k", 1, 512, Some(Pattern::KmsKeyArnForSse))));
        let alias = "arn:aws:kms:us-east-1:123456789012:alias/mine";
        assert!(!ok(|v| check_string(v, alias, "k", 1, 512, Some(Pattern::KmsKeyArnForSse))));
        assert!(ok(|v| check_string(v, alias, "k", 1, 512, Some(Pattern::KmsKeyArn))));
    }

    #[test]
    fn extensions_time_zones_and_tags() {
        assert!(ok(|v| check_string(v, ".json", "e", 0, 128, Some(Pattern::FileExtension))));
        assert!(ok(|v| check_string(v, "", "e", 0, 128, Some(Pattern::FileExtension))));
        assert!(!ok(|v| check_string(v, "json", "e", 0, 128, Some(Pattern::FileExtension))));
        assert!(ok(|v| check_string(v, "Asia/Tokyo", "z", 0, 50, Some(Pattern::CustomTimeZone))));
        assert!(!ok(|v| check_string(v, "America/Port-au-Prince", "z", 0, 50, Some(Pattern::CustomTimeZone))));
        assert!(ok(|v| check_tag_key(v, "team:data eng", "k")));
        assert!(!ok(|v| check_tag_key(v, "aws:reserved", "k")));
        assert!(!ok(|v| check_tag_key(v, "a*b", "k")));
        assert!(ok(|v| check_tag_value(v, "", "v")));
    }
}
