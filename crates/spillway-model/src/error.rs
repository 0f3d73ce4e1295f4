//! The errors a client sees: AWS JSON 1.1 error codes (`__type`), HTTP status and message.
//!
//! Every failure that reaches a client is an [`ApiError`]. Classification is by [`ErrorCode`], never by
//! matching message text. Messages are what the real service says where the reference knows it;
//! internal details (paths, OS errors) are logged by the caller, never put in a message.

use std::fmt;

/// The AWS error codes spillway answers with (reference §1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidArgument,
    LimitExceeded,
    ResourceInUse,
    ResourceNotFound,
    ConcurrentModification,
    InvalidKmsResource,
    InvalidSource,
    ServiceUnavailable,
    Validation,
    Serialization,
    UnknownOperation,
    InternalFailure,
    MissingAuthenticationToken,
    IncompleteSignature,
    InvalidSignature,
    UnrecognizedClient,
    AccessDenied,
}

impl ErrorCode {
    /// The `__type` member of the error body.
    pub fn aws_type(self) -> &'static str {
        match self {
            Self::InvalidArgument => "InvalidArgumentException",
            Self::LimitExceeded => "LimitExceededException",
            Self::ResourceInUse => "ResourceInUseException",
            Self::ResourceNotFound => "ResourceNotFoundException",
            Self::ConcurrentModification => "ConcurrentModificationException",
            Self::InvalidKmsResource => "InvalidKMSResourceException",
            Self::InvalidSource => "InvalidSourceException",
            Self::ServiceUnavailable => "ServiceUnavailableException",
            Self::Validation => "ValidationException",
            Self::Serialization => "SerializationException",
            Self::UnknownOperation => "UnknownOperationException",
            Self::InternalFailure => "InternalFailure",
            Self::MissingAuthenticationToken => "MissingAuthenticationTokenException",
            Self::IncompleteSignature => "IncompleteSignatureException",
            Self::InvalidSignature => "InvalidSignatureException",
            Self::UnrecognizedClient => "UnrecognizedClientException",
            Self::AccessDenied => "AccessDeniedException",
        }
    }

    /// HTTP status: 400 for client faults (AWS JSON convention), 403 for a missing token,
    /// 503 for throttling (botocore retries it), 500 for internal failures.
    pub fn status(self) -> u16 {
        match self {
            Self::MissingAuthenticationToken | Self::AccessDenied => 403,
            Self::ServiceUnavailable => 503,
            Self::InternalFailure => 500,
            _ => 400,
        }
    }

    /// Whether a client may retry the same request unchanged.
    pub fn is_retryable(self) -> bool {
        matches!(self, Self::ServiceUnavailable | Self::InternalFailure)
    }
}

/// An error answered to a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }
    pub fn invalid_argument(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidArgument, message)
    }
    pub fn in_use(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::ResourceInUse, message)
    }
    pub fn serialization(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Serialization, message)
    }
    pub fn internal() -> Self {
        Self::new(ErrorCode::InternalFailure, "We encountered an internal error. Please try again.")
    }
    /// `ResourceNotFoundException` in the real service's wording.
    pub fn stream_not_found(name: &str, account_id: &str) -> Self {
        Self::new(ErrorCode::ResourceNotFound, format!("Firehose {name} under account {account_id} not found."))
    }
    /// Ingest throttling: the WAL is at its disk quota or the disk is full.
    pub fn slow_down() -> Self {
        Self::new(ErrorCode::ServiceUnavailable, "Slow down.")
    }
    pub fn aws_type(&self) -> &'static str {
        self.code.aws_type()
    }
    pub fn status(&self) -> u16 {
        self.code.status()
    }
    /// The JSON error body: `{"__type": ..., "message": ...}`.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({ "__type": self.aws_type(), "message": self.message })
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.aws_type(), self.message)
    }
}

impl std::error::Error for ApiError {}

/// Collects shape-constraint violations and renders them as AWS's `ValidationException` message:
/// `1 validation error detected: Value 'x' at 'deliveryStreamName' failed to satisfy constraint: ...`.
#[derive(Debug, Default)]
pub struct Violations(Vec<String>);

impl Violations {
    pub fn new() -> Self {
        Self::default()
    }
    /// Records one violation. `path` is the lowerCamelCase member path (`records.3.member.data`).
    pub fn push(&mut self, value: impl fmt::Display, path: &str, constraint: impl fmt::Display) {
        self.0.push(format!("Value '{value}' at '{path}' failed to satisfy constraint: {constraint}"));
    }
    /// A required member that is absent.
    pub fn missing(&mut self, path: &str) {
        self.0.push(format!("Value null at '{path}' failed to satisfy constraint: Member must not be null"));
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// `Ok(())` if nothing was recorded, else the `ValidationException`.
    pub fn into_result(self) -> Result<(), ApiError> {
        match self.0.len() {
            0 => Ok(()),
            1 => Err(ApiError::new(ErrorCode::Validation, format!("1 validation error detected: {}", self.0[0]))),
            n => Err(ApiError::new(
                ErrorCode::Validation,
                format!("{n} validation errors detected: {}", self.0.join("; ")),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_messages_follow_the_aws_format() {
        let mut v = Violations::new();
        v.push("a b", "deliveryStreamName", "Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+");
        let e = v.into_result().unwrap_err();
        assert_eq!(e.code, ErrorCode::Validation);
        assert_eq!(
            e.message,
            "1 validation error detected: Value 'a b' at 'deliveryStreamName' failed to satisfy constraint: \
             Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+"
        );
        let mut v = Violations::new();
        v.missing("deliveryStreamName");
        v.missing("records");
        let e = v.into_result().unwrap_err();
        assert!(e.message.starts_with("2 validation errors detected: Value null at 'deliveryStreamName'"));
        assert!(e.message.contains("; Value null at 'records'"));
    }

    #[test]
    fn error_body_carries_type_and_message() {
        let e = ApiError::stream_not_found("s", "123456789012");
        assert_eq!(e.body()["__type"], "ResourceNotFoundException");
        assert_eq!(e.body()["message"], "Firehose s under account 123456789012 not found.");
        assert_eq!(e.status(), 400);
        assert_eq!(ApiError::slow_down().status(), 503);
    }
}
