//! The data plane's request shapes: PutRecord and PutRecordBatch, parsed without copying and checked
//! against Firehose's limits.
//!
//! Record data stays base64 text borrowed from the request body; its decoded size is computed from the
//! text, so limits are checked before any decoding. Decoding happens once, straight into the WAL entry
//! buffer ([`crate::entry`]).

use crate::error::{ApiError, ErrorCode, Violations};
use crate::limits::{MAX_BATCH_BYTES, MAX_BATCH_RECORDS, MAX_RECORD_BYTES};
use crate::names::check_stream_name;
use serde::Deserialize;
use std::borrow::Cow;

/// Base64 text, borrowed from the body unless it contains JSON escapes.
#[derive(Deserialize)]
struct Text<'a>(#[serde(borrow)] Cow<'a, str>);

#[derive(Deserialize)]
struct RecordIn<'a> {
    #[serde(borrow, rename = "Data", default)]
    data: Option<Text<'a>>,
}

#[derive(Deserialize)]
struct PutRecordIn<'a> {
    #[serde(borrow, rename = "DeliveryStreamName", default)]
    name: Option<Text<'a>>,
    #[serde(borrow, rename = "Record", default)]
    record: Option<RecordIn<'a>>,
}

#[derive(Deserialize)]
struct PutRecordBatchIn<'a> {
    #[serde(borrow, rename = "DeliveryStreamName", default)]
    name: Option<Text<'a>>,
    #[serde(borrow, rename = "Records", default)]
    records: Option<Vec<RecordIn<'a>>>,
}

/// A validated put: the stream name and each record's base64 text with its decoded length.
#[derive(Debug)]
pub struct PutRequest<'a> {
    pub stream_name: Cow<'a, str>,
    pub records: Vec<Cow<'a, str>>,
    /// Sum of the decoded record sizes.
    pub decoded_bytes: usize,
    /// Decoded size of each record, same order as `records`.
    pub decoded_lens: Vec<usize>,
}

fn serde_error(e: serde_json::Error) -> ApiError {
    ApiError::serialization(format!("cannot parse request body: {e}"))
}

/// The decoded size of standard, padded base64 text, or a `SerializationException`.
pub fn decoded_len(b64: &str) -> Result<usize, ApiError> {
    base64_simd::STANDARD
        .decoded_length(b64.as_bytes())
        .map_err(|_| ApiError::serialization("Record data is not valid base64"))
}

/// Parses and validates a PutRecord body.
pub fn parse_put_record(body: &[u8]) -> Result<PutRequest<'_>, ApiError> {
    let input: PutRecordIn<'_> = serde_json::from_slice(body).map_err(serde_error)?;
    let mut v = Violations::new();
    check_stream_name(&mut v, input.name.as_ref().map(|t| t.0.as_ref()), "deliveryStreamName");
    let data = match input.record {
        None => {
            v.missing("record");
            None
        }
        Some(RecordIn { data: None }) => {
            v.missing("record.data");
            None
        }
        Some(RecordIn { data: Some(Text(d)) }) => Some(d),
    };
    let mut lens = Vec::with_capacity(1);
    if let Some(d) = &data {
        let n = decoded_len(d)?;
        if n > MAX_RECORD_BYTES {
            v.push(
                format_args!("java.nio.HeapByteBuffer[pos=0 lim={n} cap={n}]"),
                "record.data",
                format_args!("Member must have length less than or equal to {MAX_RECORD_BYTES}"),
            );
        }
        lens.push(n);
    }
    v.into_result()?;
    let (Some(Text(name)), Some(data)) = (input.name, data) else {
        return Err(ApiError::internal());
    };
    Ok(PutRequest { stream_name: name, records: vec![data], decoded_bytes: lens[0], decoded_lens: lens })
}

/// Parses and validates a PutRecordBatch body: 1..=500 records, each at most 1,000 KiB decoded
/// (`ValidationException`, shape constraints of the model), at most 4 MiB in total
/// (`InvalidArgumentException: Records size exceeds 4 MB limit`, as observed on the real service).
pub fn parse_put_record_batch(body: &[u8]) -> Result<PutRequest<'_>, ApiError> {
    let input: PutRecordBatchIn<'_> = serde_json::from_slice(body).map_err(serde_error)?;
    let mut v = Violations::new();
    check_stream_name(&mut v, input.name.as_ref().map(|t| t.0.as_ref()), "deliveryStreamName");
    let mut records = Vec::new();
    let mut lens = Vec::new();
    let mut total = 0usize;
    match input.records {
        None => v.missing("records"),
        Some(list) => {
            if list.is_empty() {
                v.push("[]", "records", "Member must have length greater than or equal to 1");
            }
            if list.len() > MAX_BATCH_RECORDS {
                v.push(
                    format_args!("[{} records]", list.len()),
                    "records",
                    format_args!("Member must have length less than or equal to {MAX_BATCH_RECORDS}"),
                );
            }
            records.reserve(list.len());
            lens.reserve(list.len());
            for (i, r) in list.into_iter().enumerate() {
                let path = || format!("records.{}.member.data", i + 1);
                match r.data {
                    None => v.missing(&path()),
                    Some(Text(d)) => {
                        let n = decoded_len(&d)?;
                        if n > MAX_RECORD_BYTES {
                            v.push(
                                format_args!("java.nio.HeapByteBuffer[pos=0 lim={n} cap={n}]"),
                                &path(),
                                format_args!("Member must have length less than or equal to {MAX_RECORD_BYTES}"),
                            );
                        }
                        total += n;
                        lens.push(n);
                        records.push(d);
                    }
                }
            }
        }
    }
    v.into_result()?;
    if total > MAX_BATCH_BYTES {
        return Err(ApiError::new(ErrorCode::InvalidArgument, "Records size exceeds 4 MB limit"));
    }
    let Some(Text(name)) = input.name else {
        return Err(ApiError::internal());
    };
    Ok(PutRequest { stream_name: name, records, decoded_bytes: total, decoded_lens: lens })
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    fn b64(n: usize) -> String {
        base64::engine::general_purpose::STANDARD.encode(vec![b'x'; n])
    }

    #[test]
    fn batch_borrows_data_and_counts_decoded_bytes() {
        let body = format!(r#"{{"DeliveryStreamName":"s","Records":[{{"Data":"{}"}},{{"Data":""}}]}}"#, b64(10));
        let req = parse_put_record_batch(body.as_bytes()).unwrap();
        assert_eq!(req.stream_name, "s");
        assert_eq!(req.decoded_lens, vec![10, 0]);
        assert_eq!(req.decoded_bytes, 10);
        assert!(matches!(req.records[0], Cow::Borrowed(_)));
    }

    #[test]
    fn batch_limits() {
        let many = format!(r#"{{"DeliveryStreamName":"s","Records":[{}]}}"#, vec![r#"{"Data":"YQ=="}"#; 501].join(","));
        let e = parse_put_record_batch(many.as_bytes()).unwrap_err();
        assert_eq!(e.code, ErrorCode::Validation);
        assert!(e.message.contains("Member must have length less than or equal to 500"), "{}", e.message);

        let big = format!(r#"{{"DeliveryStreamName":"s","Records":[{{"Data":"{}"}}]}}"#, b64(MAX_RECORD_BYTES + 1));
        let e = parse_put_record_batch(big.as_bytes()).unwrap_err();
        assert_eq!(e.code, ErrorCode::Validation);
        assert!(e.message.contains("records.1.member.data"), "{}", e.message);

        let rec = format!(r#"{{"Data":"{}"}}"#, b64(MAX_RECORD_BYTES));
        let over = format!(r#"{{"DeliveryStreamName":"s","Records":[{}]}}"#, [rec.as_str(); 5].join(","));
        let e = parse_put_record_batch(over.as_bytes()).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidArgument);
        assert_eq!(e.message, "Records size exceeds 4 MB limit");

        // Exactly 4 MiB is accepted.
        let exact = format!(
            r#"{{"DeliveryStreamName":"s","Records":[{{"Data":"{}"}},{{"Data":"{}"}},{{"Data":"{}"}},{{"Data":"{}"}},{{"Data":"{}"}}]}}"#,
            b64(1_000_000),
            b64(1_000_000),
            b64(1_000_000),
            b64(1_000_000),
            b64(MAX_BATCH_BYTES - 4_000_000)
        );
        assert_eq!(parse_put_record_batch(exact.as_bytes()).unwrap().decoded_bytes, MAX_BATCH_BYTES);

        let e = parse_put_record_batch(br#"{"DeliveryStreamName":"s","Records":[]}"#).unwrap_err();
        assert_eq!(e.code, ErrorCode::Validation);
    }

    #[test]
    fn malformed_input() {
        assert_eq!(parse_put_record_batch(b"{not json").unwrap_err().code, ErrorCode::Serialization);
        let e = parse_put_record(br#"{"DeliveryStreamName":"s","Record":{"Data":"!!!"}}"#).unwrap_err();
        assert_eq!(e.code, ErrorCode::Serialization);
        let e = parse_put_record(br#"{"DeliveryStreamName":"s"}"#).unwrap_err();
        assert_eq!(e.code, ErrorCode::Validation);
        assert!(e.message.contains("at 'record'"));
        let e = parse_put_record(br#"{"DeliveryStreamName":"bad name","Record":{"Data":"YQ=="}}"#).unwrap_err();
        assert!(e.message.contains("deliveryStreamName"));
        let e = parse_put_record_batch(br#"{"DeliveryStreamName":"s","Records":"x"}"#).unwrap_err();
        assert_eq!(e.code, ErrorCode::Serialization);
    }
}
