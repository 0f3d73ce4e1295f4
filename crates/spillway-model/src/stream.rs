//! Delivery streams as the control plane sees them: the persisted [`StreamRecord`] and the pure
//! operations on it (create, describe, update, tags, encryption, list), reference §3–§4.
//!
//! Invariants: a `StreamRecord` only exists for a request that passed validation; `version_id`
//! starts at 1 and grows by one per effective UpdateDestination; `id` (the stream's WAL tag) is
//! assigned by the registry and never reused. Everything here is pure: the registry does the I/O.

use crate::destination::{self, DestinationKind};
use crate::error::{ApiError, ErrorCode, Violations};
use crate::limits::{DESTINATION_ID, MAX_ENCRYPTION_CALLS_PER_DAY, MAX_LIST_TAGS_LIMIT, MAX_TAGS};
use crate::names::{Pattern, check_enum, check_range, check_stream_name, check_string, check_tag_key, check_tag_value};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

const STREAM_TYPE_VALUES: [&str; 4] = ["DirectPut", "KinesisStreamAsSource", "MSKAsSource", "DatabaseAsSource"];

/// Where and when an operation runs.
#[derive(Debug, Clone, Copy)]
pub struct Ctx<'a> {
    pub region: &'a str,
    pub account_id: &'a str,
    /// Now, in epoch seconds.
    pub now: f64,
}

impl Ctx<'_> {
    pub fn arn(&self, name: &str) -> String {
        format!("arn:aws:firehose:{}:{}:deliverystream/{name}", self.region, self.account_id)
    }
    pub fn not_found(&self, name: &str) -> ApiError {
        ApiError::stream_not_found(name, self.account_id)
    }
}

/// Stream status values.
pub mod status {
    pub const CREATING: &str = "CREATING";
    pub const CREATING_FAILED: &str = "CREATING_FAILED";
    pub const ACTIVE: &str = "ACTIVE";
    pub const DELETING: &str = "DELETING";
}

/// Server-side encryption state of a stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Encryption {
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_arn: Option<String>,
}

impl Default for Encryption {
    fn default() -> Self {
        Self { status: "DISABLED".into(), key_type: None, key_arn: None }
    }
}

/// A source configuration as given (`KinesisStreamSourceConfiguration`, ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceConfig {
    pub member: String,
    pub config: Value,
}

/// Everything spillway keeps about a delivery stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamRecord {
    /// The stream's tag in the WAL. Never reused, also not after deletion.
    pub id: u64,
    pub name: String,
    pub arn: String,
    pub stream_type: String,
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<Value>,
    pub version_id: u64,
    pub create_timestamp: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_update_timestamp: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<SourceConfig>,
    /// Create member of the destination (`ExtendedS3DestinationConfiguration`, ...).
    pub destination_member: String,
    /// The destination configuration in the Create shape, as given and as updated.
    pub destination: Value,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    #[serde(default)]
    pub encryption: Encryption,
    /// Times of Start/StopDeliveryStreamEncryption calls within the last 24 h.
    #[serde(default)]
    pub encryption_calls: Vec<f64>,
}

/// Why a configuration that passed the model's checks cannot run.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// spillway cannot run it (yet): the stream is created as `CREATING_FAILED` with these
    /// `FailureDescription.Details` (an update is refused with InvalidArgumentException).
    Unsupported(String),
    /// The configuration is wrong in a way the real service refuses at the API (an unknown table,
    /// a bad processor parameter): the request fails with this error.
    Invalid(ApiError),
}

impl From<String> for Refusal {
    fn from(details: String) -> Self {
        Refusal::Unsupported(details)
    }
}

/// Decides whether spillway can run a stream of this type with this destination.
pub type Capabilities<'a> = &'a dyn Fn(&str, &DestinationKind, &Value) -> Result<(), Refusal>;

fn object(input: &Value) -> Result<&Map<String, Value>, ApiError> {
    input.as_object().ok_or_else(|| ApiError::serialization("request body must be a JSON object"))
}

fn opt_str<'a>(m: &'a Map<String, Value>, key: &str) -> Result<Option<&'a str>, ApiError> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ApiError::serialization(format!("{key} must be a string"))),
    }
}

fn opt_int(m: &Map<String, Value>, key: &str) -> Result<Option<i64>, ApiError> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_i64().map(Some).ok_or_else(|| ApiError::serialization(format!("{key} must be an integer"))),
    }
}

/// The stream name member of any request, checked.
pub fn stream_name(input: &Value) -> Result<&str, ApiError> {
    let m = object(input)?;
    let name = opt_str(m, "DeliveryStreamName")?;
    let mut v = Violations::new();
    check_stream_name(&mut v, name, "deliveryStreamName");
    v.into_result()?;
    name.ok_or_else(ApiError::internal)
}

/// The destination members present in a request.
fn destination_members(
    m: &Map<String, Value>,
    by: fn(&str) -> Option<&'static DestinationKind>,
) -> Vec<(&'static DestinationKind, &Value)> {
    m.iter().filter(|(_, v)| !v.is_null()).filter_map(|(k, v)| by(k).map(|kind| (kind, v))).collect()
}

fn parse_tags(v: &mut Violations, value: Option<&Value>, path: &str) -> Result<Vec<(String, String)>, ApiError> {
    let Some(value) = value else { return Ok(Vec::new()) };
    let list = value.as_array().ok_or_else(|| ApiError::serialization("Tags must be a list"))?;
    if list.len() > MAX_TAGS {
        v.push(
            format_args!("[{} tags]", list.len()),
            path,
            format_args!("Member must have length less than or equal to {MAX_TAGS}"),
        );
    }
    let mut tags = Vec::with_capacity(list.len());
    for (i, t) in list.iter().enumerate() {
        let m = t.as_object().ok_or_else(|| ApiError::serialization("a tag must be an object"))?;
        let p = format!("{path}.{}.member", i + 1);
        let key = opt_str(m, "Key")?;
        let value = opt_str(m, "Value")?.unwrap_or("");
        match key {
            None => v.missing(&format!("{p}.key")),
            Some(k) => check_tag_key(v, k, &format!("{p}.key")),
        }
        check_tag_value(v, value, &format!("{p}.value"));
        if let Some(k) = key {
            tags.push((k.to_string(), value.to_string()));
        }
    }
    Ok(tags)
}

fn encryption_input(v: &mut Violations, value: &Value, path: &str) -> Result<Encryption, ApiError> {
    let m = value.as_object().ok_or_else(|| ApiError::serialization(format!("{path} must be an object")))?;
    let key_type = opt_str(m, "KeyType")?;
    let key_arn = opt_str(m, "KeyARN")?;
    match key_type {
        None => v.missing(&format!("{path}.keyType")),
        Some(t) => check_enum(v, t, &format!("{path}.keyType"), &["AWS_OWNED_CMK", "CUSTOMER_MANAGED_CMK"]),
    }
    if let Some(k) = key_arn {
        check_string(v, k, &format!("{path}.keyARN"), 1, 512, Some(Pattern::KmsKeyArnForSse));
    }
    match (key_type, key_arn) {
        (Some("CUSTOMER_MANAGED_CMK"), None) => {
            return Err(ApiError::invalid_argument("KeyARN must be specified when KeyType is CUSTOMER_MANAGED_CMK."));
        }
        (Some("AWS_OWNED_CMK"), Some(_)) => {
            return Err(ApiError::invalid_argument("KeyARN must not be specified when KeyType is AWS_OWNED_CMK."));
        }
        _ => {}
    }
    Ok(Encryption {
        status: "ENABLED".into(),
        key_type: key_type.map(str::to_string),
        key_arn: key_arn.map(str::to_string),
    })
}

/// Source members and the stream type each belongs to.
const SOURCES: [(&str, &str, &[&str]); 3] = [
    ("KinesisStreamSourceConfiguration", "KinesisStreamAsSource", &["KinesisStreamARN", "RoleARN"]),
    ("MSKSourceConfiguration", "MSKAsSource", &["MSKClusterARN", "TopicName", "AuthenticationConfiguration"]),
    (
        "DatabaseSourceConfiguration",
        "DatabaseAsSource",
        &[
            "Type",
            "Endpoint",
            "Port",
            "Databases",
            "Tables",
            "SnapshotWatermarkTable",
            "DatabaseSourceAuthenticationConfiguration",
            "DatabaseSourceVPCConfiguration",
        ],
    ),
];

/// Validates a CreateDeliveryStream request and builds the stream.
pub fn create(input: &Value, id: u64, ctx: Ctx<'_>, supports: Capabilities<'_>) -> Result<StreamRecord, ApiError> {
    let m = object(input)?;
    let mut v = Violations::new();
    let name = opt_str(m, "DeliveryStreamName")?;
    check_stream_name(&mut v, name, "deliveryStreamName");
    let stream_type = opt_str(m, "DeliveryStreamType")?.unwrap_or("DirectPut");
    check_enum(&mut v, stream_type, "deliveryStreamType", &STREAM_TYPE_VALUES);
    let tags = parse_tags(&mut v, m.get("Tags"), "tags")?;

    let destinations = destination_members(m, destination::by_create);
    if let [(kind, config)] = destinations.as_slice() {
        destination::validate_create(kind, config, &destination::camel(kind.create), &mut v)?;
    }

    // Sources.
    let mut source = None;
    for (member, ty, required) in SOURCES {
        let Some(cfg) = m.get(member).filter(|c| !c.is_null()) else { continue };
        let cm = cfg.as_object().ok_or_else(|| ApiError::serialization(format!("{member} must be an object")))?;
        for r in required {
            if cm.get(*r).is_none_or(Value::is_null) {
                v.missing(&format!("{}.{}", destination::camel(member), destination::camel(r)));
            }
        }
        source = Some((member, ty, cfg));
    }
    if let Some(dp) = m.get("DirectPutSourceConfiguration").filter(|c| !c.is_null()) {
        let dm =
            dp.as_object().ok_or_else(|| ApiError::serialization("DirectPutSourceConfiguration must be an object"))?;
        match opt_int(dm, "ThroughputHintInMBs")? {
            None => v.missing("directPutSourceConfiguration.throughputHintInMBs"),
            Some(t) => check_range(&mut v, t, "directPutSourceConfiguration.throughputHintInMBs", 1, 100),
        }
    }
    let encryption = match m.get("DeliveryStreamEncryptionConfigurationInput").filter(|c| !c.is_null()) {
        Some(e) => Some(encryption_input(&mut v, e, "deliveryStreamEncryptionConfigurationInput")?),
        None => None,
    };
    v.into_result()?;

    let name = name.ok_or_else(ApiError::internal)?;
    let [(kind, config)] = destinations.as_slice() else {
        return Err(ApiError::invalid_argument("Exactly one destination configuration is supported for a Firehose"));
    };
    if kind.is_s3() {
        destination::check_s3_rules(config)?;
    }
    match source {
        Some((member, ty, _)) if ty != stream_type => {
            return Err(ApiError::invalid_argument(format!("{member} is only applicable for {ty} stream type")));
        }
        None if stream_type != "DirectPut" => {
            return Err(ApiError::invalid_argument(format!(
                "A source configuration is required for {stream_type} stream type"
            )));
        }
        _ => {}
    }
    if encryption.is_some() && stream_type != "DirectPut" {
        return Err(ApiError::invalid_argument(
            "DeliveryStreamEncryptionConfigurationInput is only supported for DirectPut delivery streams.",
        ));
    }
    let source = match source {
        Some((member, _, cfg)) => Some(SourceConfig { member: member.into(), config: cfg.clone() }),
        None => m
            .get("DirectPutSourceConfiguration")
            .filter(|c| !c.is_null())
            .map(|c| SourceConfig { member: "DirectPutSourceConfiguration".into(), config: c.clone() }),
    };
    let (status, failure) = match supports(stream_type, kind, config) {
        Ok(()) => (status::ACTIVE, None),
        Err(Refusal::Unsupported(details)) => {
            (status::CREATING_FAILED, Some(json!({"Type": "UNKNOWN_ERROR", "Details": details})))
        }
        Err(Refusal::Invalid(e)) => return Err(e),
    };
    Ok(StreamRecord {
        id,
        name: name.to_string(),
        arn: ctx.arn(name),
        stream_type: stream_type.to_string(),
        status: status.to_string(),
        failure,
        version_id: 1,
        create_timestamp: ctx.now,
        last_update_timestamp: None,
        source,
        destination_member: kind.create.to_string(),
        destination: (*config).clone(),
        tags: tags.into_iter().collect(),
        encryption: encryption.unwrap_or_default(),
        encryption_calls: Vec::new(),
    })
}

impl StreamRecord {
    pub fn kind(&self) -> &'static DestinationKind {
        destination::by_create(&self.destination_member).unwrap_or(&destination::EXTENDED_S3)
    }

    pub fn is_active(&self) -> bool {
        self.status == status::ACTIVE
    }

    /// `Encrypted` of Put responses.
    pub fn encrypted(&self) -> bool {
        self.encryption.status == "ENABLED"
    }

    /// Checks that records may be put into this stream.
    pub fn check_accepts_records(&self, ctx: Ctx<'_>) -> Result<(), ApiError> {
        if self.stream_type != "DirectPut" {
            return Err(ApiError::invalid_argument(format!(
                "This operation is not permitted on {} delivery stream type.",
                self.stream_type
            )));
        }
        if !self.is_active() {
            // A stream that is not ACTIVE does not take data; the real service answers
            // ResourceNotFoundException for a CREATING stream, and spillway does the same for
            // CREATING_FAILED, with the status in the message.
            return Err(ApiError::new(
                ErrorCode::ResourceNotFound,
                format!(
                    "Firehose {} under account {} is in status {} and does not accept records.",
                    self.name, ctx.account_id, self.status
                ),
            ));
        }
        Ok(())
    }

    /// The `DeliveryStreamDescription` of DescribeDeliveryStream.
    pub fn describe(&self, exclusive_start_destination_id: Option<&str>) -> Value {
        let mut d = Map::new();
        d.insert("DeliveryStreamName".into(), json!(self.name));
        d.insert("DeliveryStreamARN".into(), json!(self.arn));
        d.insert("DeliveryStreamStatus".into(), json!(self.status));
        if let Some(f) = &self.failure {
            d.insert("FailureDescription".into(), f.clone());
        }
        let mut enc = Map::new();
        if let Some(k) = &self.encryption.key_arn {
            enc.insert("KeyARN".into(), json!(k));
        }
        if let Some(t) = &self.encryption.key_type {
            enc.insert("KeyType".into(), json!(t));
        }
        enc.insert("Status".into(), json!(self.encryption.status));
        d.insert("DeliveryStreamEncryptionConfiguration".into(), Value::Object(enc));
        d.insert("DeliveryStreamType".into(), json!(self.stream_type));
        d.insert("VersionId".into(), json!(self.version_id.to_string()));
        d.insert("CreateTimestamp".into(), json!(self.create_timestamp));
        if let Some(t) = self.last_update_timestamp {
            d.insert("LastUpdateTimestamp".into(), json!(t));
        }
        if let Some(source) = self.source_description() {
            d.insert("Source".into(), source);
        }
        let destinations = if exclusive_start_destination_id == Some(DESTINATION_ID) {
            Vec::new()
        } else {
            let mut dest = Map::new();
            dest.insert("DestinationId".into(), json!(DESTINATION_ID));
            dest.extend(destination::describe(self.kind(), &self.destination));
            vec![Value::Object(dest)]
        };
        d.insert("Destinations".into(), Value::Array(destinations));
        d.insert("HasMoreDestinations".into(), json!(false));
        Value::Object(d)
    }

    fn source_description(&self) -> Option<Value> {
        let s = self.source.as_ref()?;
        let mut cfg = s.config.as_object().cloned().unwrap_or_default();
        let member = match s.member.as_str() {
            "DirectPutSourceConfiguration" => "DirectPutSourceDescription",
            "KinesisStreamSourceConfiguration" => {
                cfg.insert("DeliveryStartTimestamp".into(), json!(self.create_timestamp));
                "KinesisStreamSourceDescription"
            }
            "MSKSourceConfiguration" => {
                cfg.insert("DeliveryStartTimestamp".into(), json!(self.create_timestamp));
                "MSKSourceDescription"
            }
            _ => "DatabaseSourceDescription",
        };
        Some(json!({ member: cfg }))
    }

    /// UpdateDestination. Returns whether anything changed (identical or empty updates do not
    /// increment the version).
    pub fn update_destination(
        &mut self,
        input: &Value,
        ctx: Ctx<'_>,
        supports: Capabilities<'_>,
    ) -> Result<bool, ApiError> {
        let m = object(input)?;
        let mut v = Violations::new();
        let current = opt_str(m, "CurrentDeliveryStreamVersionId")?;
        let destination_id = opt_str(m, "DestinationId")?;
        match current {
            None => v.missing("currentDeliveryStreamVersionId"),
            Some(c) => check_string(&mut v, c, "currentDeliveryStreamVersionId", 1, 50, None),
        }
        match destination_id {
            None => v.missing("destinationId"),
            Some(d) => check_string(&mut v, d, "destinationId", 1, 100, None),
        }
        let updates = destination_members(m, destination::by_update);
        for (kind, u) in &updates {
            let path = destination::camel(kind.update);
            let um =
                u.as_object().ok_or_else(|| ApiError::serialization(format!("{} must be an object", kind.update)))?;
            if kind.is_s3() {
                destination::validate_s3(um, &path, &mut v, kind.create == destination::EXTENDED_S3.create)?;
            } else if let Some(s3) = um.get("S3Update") {
                let sm = s3.as_object().ok_or_else(|| ApiError::serialization("S3Update must be an object"))?;
                destination::validate_s3(sm, &format!("{path}.s3Update"), &mut v, false)?;
            }
        }
        v.into_result()?;
        let (Some(current), Some(destination_id)) = (current, destination_id) else {
            return Err(ApiError::internal());
        };
        if !self.is_active() {
            return Err(ApiError::in_use(format!(
                "Firehose {} is in status {}; UpdateDestination needs an ACTIVE stream.",
                self.name, self.status
            )));
        }
        if current != self.version_id.to_string() {
            return Err(ApiError::new(
                ErrorCode::ConcurrentModification,
                format!(
                    "Cannot update firehose: {} since the current version id: {} and specified version id: {} do not match",
                    self.name, self.version_id, current
                ),
            ));
        }
        if destination_id != DESTINATION_ID {
            return Err(ApiError::invalid_argument(format!("Destination Id {destination_id} not found")));
        }
        let (kind, update) = match updates.as_slice() {
            [] => return Ok(false),
            [(kind, update)] => (*kind, *update),
            _ => return Err(ApiError::invalid_argument("Exactly one destination update is supported for a Firehose")),
        };
        let update =
            update.as_object().ok_or_else(|| ApiError::serialization("destination update must be an object"))?;
        let current_kind = self.kind();
        let (new_member, new_config) = if kind.is_s3() && current_kind.is_s3() {
            let merged = destination::merge_update(&self.destination, update);
            let member = if kind.create == destination::EXTENDED_S3.create { kind.create } else { current_kind.create };
            (member, merged)
        } else if kind.create == current_kind.create {
            (kind.create, destination::merge_update(&self.destination, update))
        } else {
            let fixed = ["Elasticsearch", "Amazon OpenSearch Service", "Amazon OpenSearch Serverless", "HTTP endpoint"];
            if fixed.contains(&kind.label) || fixed.contains(&current_kind.label) {
                return Err(ApiError::invalid_argument(format!(
                    "Changing the destination type to or from {} is not supported at this time.",
                    if fixed.contains(&kind.label) { kind.label } else { current_kind.label }
                )));
            }
            let config = destination::update_to_config(update);
            let mut v = Violations::new();
            destination::validate_create(kind, &config, &destination::camel(kind.update), &mut v)?;
            v.into_result()?;
            (kind.create, config)
        };
        let new_kind = destination::by_create(new_member).unwrap_or(kind);
        supports(&self.stream_type, new_kind, &new_config).map_err(|r| match r {
            Refusal::Unsupported(details) => ApiError::invalid_argument(details),
            Refusal::Invalid(e) => e,
        })?;
        if new_kind.is_s3() {
            destination::check_s3_rules(&new_config)?;
            let was_backup = self.destination.get("S3BackupMode").and_then(Value::as_str) == Some("Enabled");
            let is_backup = new_config.get("S3BackupMode").and_then(Value::as_str) == Some("Enabled");
            if was_backup && !is_backup {
                return Err(ApiError::invalid_argument("S3BackupMode cannot be changed from Enabled to Disabled."));
            }
            let was_dp = destination::dynamic_partitioning_enabled(&self.destination);
            if was_dp != destination::dynamic_partitioning_enabled(&new_config) {
                return Err(ApiError::invalid_argument(if was_dp {
                    "Dynamic partitioning cannot be disabled once it is enabled."
                } else {
                    "Dynamic partitioning can only be enabled when the delivery stream is created."
                }));
            }
        }
        if new_member == self.destination_member && new_config == self.destination {
            return Ok(false);
        }
        self.destination_member = new_member.to_string();
        self.destination = new_config;
        self.version_id += 1;
        self.last_update_timestamp = Some(ctx.now);
        Ok(true)
    }

    /// TagDeliveryStream: adds or replaces tags; at most 50 per stream.
    pub fn tag(&mut self, input: &Value) -> Result<(), ApiError> {
        let m = object(input)?;
        let mut v = Violations::new();
        if m.get("Tags").is_none_or(Value::is_null) {
            v.missing("tags");
        }
        let tags = parse_tags(&mut v, m.get("Tags"), "tags")?;
        if m.get("Tags").and_then(Value::as_array).is_some_and(Vec::is_empty) {
            v.push("[]", "tags", "Member must have length greater than or equal to 1");
        }
        v.into_result()?;
        let mut merged = self.tags.clone();
        merged.extend(tags);
        if merged.len() > MAX_TAGS {
            return Err(ApiError::new(
                ErrorCode::LimitExceeded,
                format!("A delivery stream cannot have more than {MAX_TAGS} tags; {} were requested.", merged.len()),
            ));
        }
        self.tags = merged;
        Ok(())
    }

    /// UntagDeliveryStream: removes keys; unknown keys are ignored.
    pub fn untag(&mut self, input: &Value) -> Result<(), ApiError> {
        let m = object(input)?;
        let mut v = Violations::new();
        let keys = match m.get("TagKeys") {
            None | Some(Value::Null) => {
                v.missing("tagKeys");
                Vec::new()
            }
            Some(Value::Array(keys)) => {
                if keys.is_empty() || keys.len() > MAX_TAGS {
                    v.push(
                        format_args!("[{} keys]", keys.len()),
                        "tagKeys",
                        format_args!("Member must have length between 1 and {MAX_TAGS}"),
                    );
                }
                let mut out = Vec::with_capacity(keys.len());
                for (i, k) in keys.iter().enumerate() {
                    let k = k.as_str().ok_or_else(|| ApiError::serialization("TagKeys must be strings"))?;
                    check_tag_key(&mut v, k, &format!("tagKeys.{}.member", i + 1));
                    out.push(k);
                }
                out
            }
            Some(_) => return Err(ApiError::serialization("TagKeys must be a list")),
        };
        v.into_result()?;
        for k in keys {
            self.tags.remove(k);
        }
        Ok(())
    }

    /// ListTagsForDeliveryStream: keys in lexical order after `ExclusiveStartTagKey`.
    pub fn list_tags(&self, input: &Value) -> Result<Value, ApiError> {
        let m = object(input)?;
        let mut v = Violations::new();
        let limit = opt_int(m, "Limit")?;
        if let Some(l) = limit {
            check_range(&mut v, l, "limit", 1, MAX_LIST_TAGS_LIMIT as i64);
        }
        let start = opt_str(m, "ExclusiveStartTagKey")?;
        v.into_result()?;
        let limit = limit.map_or(MAX_LIST_TAGS_LIMIT, |l| l as usize);
        let mut after = self.tags.iter().filter(|(k, _)| start.is_none_or(|s| k.as_str() > s));
        let tags: Vec<Value> = after.by_ref().take(limit).map(|(k, v)| json!({"Key": k, "Value": v})).collect();
        Ok(json!({"Tags": tags, "HasMoreTags": after.next().is_some()}))
    }

    fn count_encryption_call(&mut self, now: f64) -> Result<(), ApiError> {
        self.encryption_calls.retain(|t| now - t < 86_400.0);
        if self.encryption_calls.len() >= MAX_ENCRYPTION_CALLS_PER_DAY {
            return Err(ApiError::new(
                ErrorCode::LimitExceeded,
                format!(
                    "You have exceeded the limit of {MAX_ENCRYPTION_CALLS_PER_DAY} StartDeliveryStreamEncryption and \
                     StopDeliveryStreamEncryption calls for this delivery stream in 24 hours."
                ),
            ));
        }
        self.encryption_calls.push(now);
        Ok(())
    }

    fn check_encryption_allowed(&self) -> Result<(), ApiError> {
        if self.stream_type != "DirectPut" {
            return Err(ApiError::invalid_argument(format!(
                "Server-side encryption is not supported for {} delivery streams.",
                self.stream_type
            )));
        }
        if !self.is_active() {
            return Err(ApiError::in_use(format!("Firehose {} is in status {}.", self.name, self.status)));
        }
        Ok(())
    }

    /// StartDeliveryStreamEncryption. Keys are not managed locally, so the state becomes ENABLED at once.
    pub fn start_encryption(&mut self, input: &Value, now: f64) -> Result<(), ApiError> {
        let m = object(input)?;
        let mut v = Violations::new();
        let enc = match m.get("DeliveryStreamEncryptionConfigurationInput").filter(|c| !c.is_null()) {
            Some(e) => encryption_input(&mut v, e, "deliveryStreamEncryptionConfigurationInput")?,
            None => Encryption { status: "ENABLED".into(), key_type: Some("AWS_OWNED_CMK".into()), key_arn: None },
        };
        v.into_result()?;
        self.check_encryption_allowed()?;
        self.count_encryption_call(now)?;
        self.encryption = enc;
        Ok(())
    }

    /// StopDeliveryStreamEncryption.
    pub fn stop_encryption(&mut self, now: f64) -> Result<(), ApiError> {
        self.check_encryption_allowed()?;
        self.count_encryption_call(now)?;
        self.encryption = Encryption::default();
        Ok(())
    }
}

/// ListDeliveryStreams over `(name, type)` pairs in name order.
pub fn list<'a>(input: &Value, streams: impl Iterator<Item = (&'a str, &'a str)>) -> Result<Value, ApiError> {
    let m = object(input)?;
    let mut v = Violations::new();
    let limit = opt_int(m, "Limit")?;
    if let Some(l) = limit {
        check_range(&mut v, l, "limit", 1, 10_000);
    }
    let ty = opt_str(m, "DeliveryStreamType")?;
    if let Some(t) = ty {
        check_enum(&mut v, t, "deliveryStreamType", &STREAM_TYPE_VALUES);
    }
    let start = opt_str(m, "ExclusiveStartDeliveryStreamName")?;
    if let Some(s) = start {
        check_stream_name(&mut v, Some(s), "exclusiveStartDeliveryStreamName");
    }
    v.into_result()?;
    let limit = limit.map_or(crate::limits::DEFAULT_LIST_LIMIT, |l| l as usize);
    let mut matching =
        streams.filter(|(name, _)| start.is_none_or(|s| *name > s)).filter(|(_, t)| ty.is_none_or(|want| *t == want));
    let names: Vec<&str> = matching.by_ref().take(limit).map(|(n, _)| n).collect();
    Ok(json!({"DeliveryStreamNames": names, "HasMoreDeliveryStreams": matching.next().is_some()}))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROLE: &str = "arn:aws:iam::123456789012:role/firehose";

    fn ctx() -> Ctx<'static> {
        Ctx { region: "us-east-1", account_id: "123456789012", now: 1_700_000_000.5 }
    }

    fn s3_only(_: &str, kind: &DestinationKind, _: &Value) -> Result<(), Refusal> {
        if kind.is_s3() { Ok(()) } else { Err(Refusal::Unsupported(format!("cannot deliver to {} yet", kind.label))) }
    }

    fn s3_stream() -> StreamRecord {
        let input = json!({"DeliveryStreamName": "s", "ExtendedS3DestinationConfiguration": {"RoleARN": ROLE, "BucketARN": "arn:aws:s3:::b"},
                           "Tags": [{"Key": "team", "Value": "data"}]});
        create(&input, 7, ctx(), &s3_only).unwrap()
    }

    #[test]
    fn create_and_describe() {
        let s = s3_stream();
        assert_eq!(s.status, "ACTIVE");
        assert_eq!(s.arn, "arn:aws:firehose:us-east-1:123456789012:deliverystream/s");
        let d = s.describe(None);
        assert_eq!(d["VersionId"], "1");
        assert_eq!(d["DeliveryStreamType"], "DirectPut");
        assert_eq!(d["DeliveryStreamEncryptionConfiguration"], json!({"Status": "DISABLED"}));
        assert_eq!(d["Destinations"][0]["DestinationId"], DESTINATION_ID);
        assert_eq!(d["HasMoreDestinations"], false);
        assert!(d.get("LastUpdateTimestamp").is_none());
        assert_eq!(s.describe(Some(DESTINATION_ID))["Destinations"], json!([]));
    }

    #[test]
    fn create_rules() {
        let e = create(&json!({"DeliveryStreamName": "s"}), 1, ctx(), &s3_only).unwrap_err();
        assert_eq!(e.message, "Exactly one destination configuration is supported for a Firehose");
        let two = json!({"DeliveryStreamName": "s", "S3DestinationConfiguration": {"RoleARN": ROLE, "BucketARN": "arn:aws:s3:::b"},
                         "ExtendedS3DestinationConfiguration": {"RoleARN": ROLE, "BucketARN": "arn:aws:s3:::b"}});
        assert_eq!(create(&two, 1, ctx(), &s3_only).unwrap_err().code, ErrorCode::InvalidArgument);
        let kinesis = json!({"DeliveryStreamName": "s", "KinesisStreamSourceConfiguration": {"KinesisStreamARN": "arn:aws:kinesis:us-east-1:123456789012:stream/x", "RoleARN": ROLE},
                             "ExtendedS3DestinationConfiguration": {"RoleARN": ROLE, "BucketARN": "arn:aws:s3:::b"}});
        assert!(
            create(&kinesis, 1, ctx(), &s3_only)
                .unwrap_err()
                .message
                .contains("only applicable for KinesisStreamAsSource")
        );
        let redshift = json!({"DeliveryStreamName": "r", "RedshiftDestinationConfiguration": {"RoleARN": ROLE, "ClusterJDBCURL": "jdbc:redshift://x", "CopyCommand": {"DataTableName": "t"},
                              "Password": "secret12", "S3Configuration": {"RoleARN": ROLE, "BucketARN": "arn:aws:s3:::b"}}});
        let r = create(&redshift, 1, ctx(), &s3_only).unwrap();
        assert_eq!(r.status, "CREATING_FAILED");
        assert_eq!(r.failure.as_ref().unwrap()["Details"], "cannot deliver to Redshift yet");
        let d = r.describe(None);
        assert!(d["Destinations"][0]["RedshiftDestinationDescription"].get("Password").is_none());
        assert_eq!(
            d["Destinations"][0]["RedshiftDestinationDescription"]["S3DestinationDescription"]["BucketARN"],
            "arn:aws:s3:::b"
        );
        let missing = json!({"DeliveryStreamName": "r", "RedshiftDestinationConfiguration": {"RoleARN": ROLE}});
        let e = create(&missing, 1, ctx(), &s3_only).unwrap_err();
        assert_eq!(e.code, ErrorCode::Validation);
        assert!(e.message.contains("redshiftDestinationConfiguration.clusterJDBCURL"), "{}", e.message);
    }

    #[test]
    fn update_versions_and_conflicts() {
        let mut s = s3_stream();
        let upd = |v: &str, prefix: &str| {
            json!({"DeliveryStreamName": "s", "CurrentDeliveryStreamVersionId": v, "DestinationId": DESTINATION_ID,
                                                "ExtendedS3DestinationUpdate": {"Prefix": prefix}})
        };
        assert!(s.update_destination(&upd("1", "a/"), ctx(), &s3_only).unwrap());
        assert_eq!(s.version_id, 2);
        assert_eq!(s.last_update_timestamp, Some(ctx().now));
        assert!(!s.update_destination(&upd("2", "a/"), ctx(), &s3_only).unwrap(), "identical update changes nothing");
        assert_eq!(s.version_id, 2);
        let e = s.update_destination(&upd("1", "b/"), ctx(), &s3_only).unwrap_err();
        assert_eq!(e.code, ErrorCode::ConcurrentModification);
        let mut wrong = upd("2", "b/");
        wrong["DestinationId"] = json!("destinationId-000000000002");
        assert_eq!(s.update_destination(&wrong, ctx(), &s3_only).unwrap_err().code, ErrorCode::InvalidArgument);
        let to_http = json!({"CurrentDeliveryStreamVersionId": "2", "DestinationId": DESTINATION_ID,
                             "HttpEndpointDestinationUpdate": {"EndpointConfiguration": {"Url": "https://x"}}});
        assert!(s.update_destination(&to_http, ctx(), &s3_only).unwrap_err().message.contains("not supported"));
    }

    #[test]
    fn tags() {
        let mut s = s3_stream();
        s.tag(&json!({"Tags": [{"Key": "b", "Value": "2"}, {"Key": "a"}]})).unwrap();
        let l = s.list_tags(&json!({"Limit": 2})).unwrap();
        assert_eq!(l["Tags"], json!([{"Key": "a", "Value": ""}, {"Key": "b", "Value": "2"}]));
        assert_eq!(l["HasMoreTags"], true);
        let l = s.list_tags(&json!({"ExclusiveStartTagKey": "b"})).unwrap();
        assert_eq!(l["Tags"], json!([{"Key": "team", "Value": "data"}]));
        s.untag(&json!({"TagKeys": ["a", "nope"]})).unwrap();
        assert_eq!(s.tags.len(), 2);
        let many: Vec<Value> = (0..49).map(|i| json!({"Key": format!("k{i}")})).collect();
        assert_eq!(s.tag(&json!({"Tags": many})).unwrap_err().code, ErrorCode::LimitExceeded);
        assert_eq!(s.tag(&json!({"Tags": [{"Key": "aws:x"}]})).unwrap_err().code, ErrorCode::Validation);
    }

    #[test]
    fn encryption() {
        let mut s = s3_stream();
        s.start_encryption(&json!({}), 0.0).unwrap();
        assert!(s.encrypted());
        let e = s
            .start_encryption(
                &json!({"DeliveryStreamEncryptionConfigurationInput": {"KeyType": "CUSTOMER_MANAGED_CMK"}}),
                1.0,
            )
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidArgument);
        s.stop_encryption(2.0).unwrap();
        assert!(!s.encrypted());
        for i in 0..23 {
            s.stop_encryption(3.0 + i as f64).unwrap();
        }
        assert_eq!(s.stop_encryption(30.0).unwrap_err().code, ErrorCode::LimitExceeded);
        s.stop_encryption(90_000.0).unwrap();
    }

    #[test]
    fn listing() {
        let streams = [("a", "DirectPut"), ("b", "KinesisStreamAsSource"), ("c", "DirectPut")];
        let l = list(&json!({"Limit": 1}), streams.iter().copied()).unwrap();
        assert_eq!(l, json!({"DeliveryStreamNames": ["a"], "HasMoreDeliveryStreams": true}));
        let l = list(
            &json!({"ExclusiveStartDeliveryStreamName": "a", "DeliveryStreamType": "DirectPut"}),
            streams.iter().copied(),
        )
        .unwrap();
        assert_eq!(l, json!({"DeliveryStreamNames": ["c"], "HasMoreDeliveryStreams": false}));
    }
}
