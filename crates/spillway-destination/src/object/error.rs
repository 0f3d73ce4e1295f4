//! [`ObjectError`]: why an object could not be written, classified for the caller.
//!
//! Two questions matter to the pipeline and each has one method: may the same put succeed later
//! ([`ObjectError::is_retryable`]), and what does Firehose call this failure in its logs and error records
//! ([`ObjectError::firehose_code`]). Firehose retries every S3 failure (missing bucket, access denied, KMS
//! errors) for up to 24 hours, so those are retryable here too and the caller's retry window decides when to
//! give up; only failures that the same request can never get past (an invalid key, a bad configuration) are
//! not.
//!
//! S3 error codes: `object_store` 0.13 keeps a failed response's status and body in a crate-private type and
//! exposes them only through its `Display`, which carries the S3 error document. The `<Code>` element of that
//! document is the structured field S3 defines for classification, so [`s3_error_fields`] reads it (and
//! `<Message>`) from the rendered error; transport failures are recognised by type
//! ([`object_store::client::HttpError`]), never by message text.

use std::io;
use std::path::PathBuf;

/// A failed object write.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    /// The bucket does not exist (S3 `NoSuchBucket`).
    #[error("bucket {bucket} does not exist")]
    NoSuchBucket { bucket: String },
    /// The store refused the credentials or the operation (`AccessDenied`, `SignatureDoesNotMatch`,
    /// `InvalidAccessKeyId`, `AccountProblem`...); `code` is the S3 code.
    #[error("access denied to bucket {bucket}: {code}: {message}")]
    AccessDenied { bucket: String, code: String, message: String },
    /// The key cannot be stored (see [`super::key`]); never retryable.
    #[error("invalid object key {key:?}: {reason}")]
    InvalidKey { key: String, reason: &'static str },
    /// The bucket name or ARN cannot name a bucket; never retryable.
    #[error("invalid bucket {bucket:?}: {reason}")]
    InvalidBucket { bucket: String, reason: &'static str },
    /// A local filesystem operation failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The store answered with an error not covered above; `code` is the S3 code (`InternalError`, `SlowDown`,
    /// `KMS.NotFoundException`...) or `"Unknown"` when the answer had none.
    #[error("object store error {code}: {message}")]
    Remote { code: String, message: String, retryable: bool },
    /// The store could not be reached or did not answer in time (connection refused, DNS, timeout).
    #[error("object store unreachable: {message}")]
    Unavailable { message: String },
    /// The sink's configuration cannot work (bad endpoint, half-set credentials...); never retryable.
    #[error("invalid object store configuration: {message}")]
    Config { message: String },
}

impl ObjectError {
    /// Whether the same put may succeed later. True for every store-side failure, including a missing bucket
    /// and access denied (Firehose retries those until its retry window ends); false for invalid keys,
    /// bucket names and configurations.
    pub fn is_retryable(&self) -> bool {
        match self {
            ObjectError::NoSuchBucket { .. }
            | ObjectError::AccessDenied { .. }
            | ObjectError::Io { .. }
            | ObjectError::Unavailable { .. } => true,
            ObjectError::Remote { retryable, .. } => *retryable,
            ObjectError::InvalidKey { .. } | ObjectError::InvalidBucket { .. } | ObjectError::Config { .. } => false,
        }
    }

    /// Firehose's error code for logs and error records: `S3.NoSuchBucket`, `S3.AccessDenied`,
    /// `S3.KMS.NotFoundException`, `InternalError`... `S3.InvalidKey` is spillway's own: real S3 accepts the keys
    /// a folder cannot hold, so Firehose has no code for it.
    pub fn firehose_code(&self) -> &'static str {
        match self {
            ObjectError::NoSuchBucket { .. } | ObjectError::InvalidBucket { .. } => "S3.NoSuchBucket",
            ObjectError::AccessDenied { code, .. } => match firehose_code_for_s3(code) {
                "InternalError" => "S3.AccessDenied",
                mapped => mapped,
            },
            ObjectError::InvalidKey { .. } => "S3.InvalidKey",
            ObjectError::Io { source, .. } if source.kind() == io::ErrorKind::PermissionDenied => "S3.AccessDenied",
            ObjectError::Remote { code, .. } => firehose_code_for_s3(code),
            ObjectError::Io { .. } | ObjectError::Unavailable { .. } | ObjectError::Config { .. } => "InternalError",
        }
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> ObjectError {
        let path = path.into();
        move |source| ObjectError::Io { op, path, source }
    }
}

/// Maps an S3 error code onto the codes Firehose documents for S3 delivery; anything else is `InternalError`.
pub(crate) fn firehose_code_for_s3(code: &str) -> &'static str {
    match code {
        "NoSuchBucket" => "S3.NoSuchBucket",
        "AccessDenied"
        | "InvalidAccessKeyId"
        | "SignatureDoesNotMatch"
        | "ExpiredToken"
        | "InvalidToken"
        | "TokenRefreshRequired"
        | "InvalidSecurity" => "S3.AccessDenied",
        "AccountProblem" => "S3.AccountProblem",
        "AllAccessDisabled" => "S3.AllAccessDisabled",
        "InvalidPayer" => "S3.InvalidPayer",
        "NotSignedUp" => "S3.NotSignedUp",
        "MethodNotAllowed" => "S3.MethodNotAllowed",
        kms if kms.starts_with("KMS.") && kms.contains("NotFound") => "S3.KMS.NotFoundException",
        kms if kms.starts_with("KMS.") && (kms.contains("Throttl") || kms.contains("LimitExceeded")) => {
            "S3.KMS.RequestLimitExceeded"
        }
        _ => "InternalError",
    }
}

/// The `<Code>` and `<Message>` of the first S3 error document in `text`, if any.
pub(crate) fn s3_error_fields(text: &str) -> Option<(&str, Option<&str>)> {
    let code = xml_element(text, "Code")?;
    if code.is_empty() {
        return None;
    }
    Some((code, xml_element(text, "Message")))
}

fn xml_element<'t>(text: &'t str, name: &str) -> Option<&'t str> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let start = text.find(&open)? + open.len();
    let len = text.get(start..)?.find(&close)?;
    text.get(start..start + len).map(str::trim)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_code_and_message_from_an_s3_error_document() {
        let text = "Object at location k not found: Error performing PUT http://h/b/k in 2ms - Server returned \
                    non-2xx status code: 404 Not Found: <?xml version=\"1.0\"?><Error><Code>NoSuchBucket</Code>\
                    <Message>The specified bucket does not exist</Message><BucketName>b</BucketName></Error>";
        assert_eq!(s3_error_fields(text), Some(("NoSuchBucket", Some("The specified bucket does not exist"))));
        assert_eq!(s3_error_fields("<Error><Code>SlowDown</Code></Error>"), Some(("SlowDown", None)));
        assert_eq!(s3_error_fields("connection refused"), None);
        assert_eq!(s3_error_fields("<Code></Code>"), None);
        assert_eq!(s3_error_fields("<Code>unterminated"), None);
    }

    #[test]
    fn firehose_codes() {
        let remote = |code: &str| ObjectError::Remote { code: code.into(), message: String::new(), retryable: true };
        assert_eq!(remote("KMS.NotFoundException").firehose_code(), "S3.KMS.NotFoundException");
        assert_eq!(remote("KMS.ThrottlingException").firehose_code(), "S3.KMS.RequestLimitExceeded");
        assert_eq!(remote("KMS.RequestLimitExceeded").firehose_code(), "S3.KMS.RequestLimitExceeded");
        assert_eq!(remote("InternalError").firehose_code(), "InternalError");
        assert_eq!(remote("MethodNotAllowed").firehose_code(), "S3.MethodNotAllowed");
        let denied =
            |code: &str| ObjectError::AccessDenied { bucket: "b".into(), code: code.into(), message: "m".into() };
        assert_eq!(denied("SignatureDoesNotMatch").firehose_code(), "S3.AccessDenied");
        assert_eq!(denied("AccountProblem").firehose_code(), "S3.AccountProblem");
        assert_eq!(denied("Unknown").firehose_code(), "S3.AccessDenied");
        assert_eq!(ObjectError::NoSuchBucket { bucket: "b".into() }.firehose_code(), "S3.NoSuchBucket");
        let io = |kind| ObjectError::Io { op: "write", path: "/x".into(), source: io::Error::from(kind) };
        assert_eq!(io(io::ErrorKind::PermissionDenied).firehose_code(), "S3.AccessDenied");
        assert_eq!(io(io::ErrorKind::StorageFull).firehose_code(), "InternalError");
    }

    #[test]
    fn retryability() {
        assert!(ObjectError::NoSuchBucket { bucket: "b".into() }.is_retryable());
        assert!(ObjectError::AccessDenied { bucket: "b".into(), code: "x".into(), message: "m".into() }.is_retryable());
        assert!(ObjectError::Unavailable { message: "refused".into() }.is_retryable());
        assert!(!ObjectError::InvalidKey { key: "".into(), reason: "key is empty" }.is_retryable());
        assert!(!ObjectError::InvalidBucket { bucket: "".into(), reason: "empty" }.is_retryable());
        assert!(!ObjectError::Config { message: "m".into() }.is_retryable());
        assert!(
            !ObjectError::Remote { code: "EntityTooLarge".into(), message: "m".into(), retryable: false }
                .is_retryable()
        );
    }
}
