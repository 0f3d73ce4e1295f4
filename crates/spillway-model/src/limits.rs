//! Firehose's service limits (reference §2, §7). One place, so every check uses the same numbers.

/// Largest record, after base64 decoding (1,000 KiB).
pub const MAX_RECORD_BYTES: usize = 1_024_000;
/// Most records in one PutRecordBatch.
pub const MAX_BATCH_RECORDS: usize = 500;
/// Largest PutRecordBatch payload, summed over decoded records (4 MiB; exactly 4,194,304 is accepted).
pub const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;
/// Largest request body the server reads; beyond the 4 MiB of data, base64 (4/3) and JSON framing.
pub const MAX_REQUEST_BODY_BYTES: usize = 16 * 1024 * 1024;
/// Tags per stream and per Tag/Untag call.
pub const MAX_TAGS: usize = 50;
/// Default `Limit` of ListDeliveryStreams.
pub const DEFAULT_LIST_LIMIT: usize = 10;
/// Default and maximum `Limit` of ListTagsForDeliveryStream.
pub const MAX_LIST_TAGS_LIMIT: usize = 50;
/// Start + Stop encryption calls per stream per 24 h.
pub const MAX_ENCRYPTION_CALLS_PER_DAY: usize = 25;
/// The only destination id a stream has.
pub const DESTINATION_ID: &str = "destinationId-000000000001";
