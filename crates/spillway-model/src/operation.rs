//! The operations of the Firehose API (`X-Amz-Target: Firehose_20150804.<Operation>`).

/// The target prefix of every Firehose operation.
pub const TARGET_PREFIX: &str = "Firehose_20150804.";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    CreateDeliveryStream,
    DeleteDeliveryStream,
    DescribeDeliveryStream,
    ListDeliveryStreams,
    ListTagsForDeliveryStream,
    PutRecord,
    PutRecordBatch,
    StartDeliveryStreamEncryption,
    StopDeliveryStreamEncryption,
    TagDeliveryStream,
    UntagDeliveryStream,
    UpdateDestination,
}

impl Operation {
    pub const ALL: [Operation; 12] = [
        Self::CreateDeliveryStream,
        Self::DeleteDeliveryStream,
        Self::DescribeDeliveryStream,
        Self::ListDeliveryStreams,
        Self::ListTagsForDeliveryStream,
        Self::PutRecord,
        Self::PutRecordBatch,
        Self::StartDeliveryStreamEncryption,
        Self::StopDeliveryStreamEncryption,
        Self::TagDeliveryStream,
        Self::UntagDeliveryStream,
        Self::UpdateDestination,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::CreateDeliveryStream => "CreateDeliveryStream",
            Self::DeleteDeliveryStream => "DeleteDeliveryStream",
            Self::DescribeDeliveryStream => "DescribeDeliveryStream",
            Self::ListDeliveryStreams => "ListDeliveryStreams",
            Self::ListTagsForDeliveryStream => "ListTagsForDeliveryStream",
            Self::PutRecord => "PutRecord",
            Self::PutRecordBatch => "PutRecordBatch",
            Self::StartDeliveryStreamEncryption => "StartDeliveryStreamEncryption",
            Self::StopDeliveryStreamEncryption => "StopDeliveryStreamEncryption",
            Self::TagDeliveryStream => "TagDeliveryStream",
            Self::UntagDeliveryStream => "UntagDeliveryStream",
            Self::UpdateDestination => "UpdateDestination",
        }
    }

    /// Parses an `X-Amz-Target` header value.
    pub fn from_target(target: &str) -> Option<Self> {
        let op = target.strip_prefix(TARGET_PREFIX)?;
        Self::ALL.into_iter().find(|o| o.name() == op)
    }

    pub fn is_put(self) -> bool {
        matches!(self, Self::PutRecord | Self::PutRecordBatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!(Operation::from_target("Firehose_20150804.PutRecordBatch"), Some(Operation::PutRecordBatch));
        assert_eq!(Operation::from_target("Firehose_20150804.Nope"), None);
        assert_eq!(Operation::from_target("Kinesis_20131202.PutRecord"), None);
        for op in Operation::ALL {
            assert_eq!(Operation::from_target(&format!("{TARGET_PREFIX}{}", op.name())), Some(op));
        }
    }
}
