"""Control plane: CreateDeliveryStream, Describe, List, Delete, UpdateDestination, tags, encryption,
errors on the wire, and persistence of stream definitions across restarts."""

import copy
import datetime
import random
import re
import threading

import pytest
from botocore.exceptions import ClientError

from conftest import ACCOUNT_ID, REGION, ROLE, Server, create_s3_stream, raw_request, s3_destination

DEST_ID = "destinationId-000000000001"
UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
KMS_KEY = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"

S3_DEFAULTS = {
    "BufferingHints": {"SizeInMBs": 5, "IntervalInSeconds": 300},
    "CompressionFormat": "UNCOMPRESSED",
    "EncryptionConfiguration": {"NoEncryptionConfig": "NoEncryption"},
    "CloudWatchLoggingOptions": {"Enabled": False},
}
S3_MEMBERS = ["RoleARN", "BucketARN", "Prefix", "ErrorOutputPrefix", "BufferingHints", "CompressionFormat",
              "EncryptionConfiguration", "CloudWatchLoggingOptions"]


def arn(name):
    return f"arn:aws:firehose:{REGION}:{ACCOUNT_ID}:deliverystream/{name}"


def not_found(name):
    return f"Firehose {name} under account {ACCOUNT_ID} not found."


def s3_description(cfg):
    """The S3DestinationDescription AWS answers for an S3 configuration: its S3 members plus defaults."""
    out = {k: copy.deepcopy(cfg[k]) for k in S3_MEMBERS if k in cfg}
    for k, v in S3_DEFAULTS.items():
        out.setdefault(k, copy.deepcopy(v))
    return out


def describe(client, name):
    return client.describe_delivery_stream(DeliveryStreamName=name)["DeliveryStreamDescription"]


def describe_raw(server, name):
    """The DeliveryStreamDescription exactly as sent on the wire (JSON, timestamps as epoch numbers)."""
    r = raw_request(server, "DescribeDeliveryStream", {"DeliveryStreamName": name})
    assert r.status == 200, r.text
    return r.json["DeliveryStreamDescription"]


def error_of(excinfo):
    err = excinfo.value.response["Error"]
    return err["Code"], err["Message"]


def params_as_dicts(value):
    """Turns every processor's Parameters list into a dict (AWS may reorder parameters)."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if k == "Parameters" and isinstance(v, list):
                out[k] = {p["ParameterName"]: p["ParameterValue"] for p in v}
                assert len(out[k]) == len(v), f"duplicate processor parameters: {v}"
            else:
                out[k] = params_as_dicts(v)
        return out
    if isinstance(value, list):
        return [params_as_dicts(v) for v in value]
    return value


def assert_recent(ts):
    assert isinstance(ts, datetime.datetime), ts
    assert ts.tzinfo is not None
    now = datetime.datetime.now(datetime.timezone.utc)
    assert abs((now - ts).total_seconds()) < 120, (ts, now)


# --------------------------------------------------------------------------------------------------
# CreateDeliveryStream / DescribeDeliveryStream
# --------------------------------------------------------------------------------------------------

def test_create_extended_s3_and_describe_minimal_defaults(firehose):
    resp = firehose.create_delivery_stream(DeliveryStreamName="orders",
                                           ExtendedS3DestinationConfiguration=s3_destination("orders-bucket"))
    assert resp["DeliveryStreamARN"] == arn("orders")
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert UUID_RE.match(resp["ResponseMetadata"]["RequestId"])

    d = describe(firehose, "orders")
    assert d["DeliveryStreamName"] == "orders"
    assert d["DeliveryStreamARN"] == arn("orders")
    assert d["DeliveryStreamStatus"] == "ACTIVE"
    assert d["DeliveryStreamType"] == "DirectPut"
    assert d["VersionId"] == "1"
    assert_recent(d["CreateTimestamp"])
    assert "LastUpdateTimestamp" not in d
    assert "FailureDescription" not in d
    assert d["DeliveryStreamEncryptionConfiguration"] == {"Status": "DISABLED"}
    assert d["HasMoreDestinations"] is False
    assert len(d["Destinations"]) == 1
    dest = d["Destinations"][0]
    assert dest["DestinationId"] == DEST_ID
    assert dest["ExtendedS3DestinationDescription"] == {
        "RoleARN": ROLE,
        "BucketARN": "arn:aws:s3:::orders-bucket",
        "BufferingHints": {"SizeInMBs": 5, "IntervalInSeconds": 300},
        "CompressionFormat": "UNCOMPRESSED",
        "EncryptionConfiguration": {"NoEncryptionConfig": "NoEncryption"},
        "CloudWatchLoggingOptions": {"Enabled": False},
        "S3BackupMode": "Disabled",
    }
    assert dest["S3DestinationDescription"] == {
        "RoleARN": ROLE,
        "BucketARN": "arn:aws:s3:::orders-bucket",
        "BufferingHints": {"SizeInMBs": 5, "IntervalInSeconds": 300},
        "CompressionFormat": "UNCOMPRESSED",
        "EncryptionConfiguration": {"NoEncryptionConfig": "NoEncryption"},
        "CloudWatchLoggingOptions": {"Enabled": False},
    }
    assert set(dest) == {"DestinationId", "ExtendedS3DestinationDescription", "S3DestinationDescription"}

    # A stream has exactly one destination: paging past it gives none.
    paged = firehose.describe_delivery_stream(DeliveryStreamName="orders", ExclusiveStartDestinationId=DEST_ID)
    assert paged["DeliveryStreamDescription"]["Destinations"] == []
    assert paged["DeliveryStreamDescription"]["HasMoreDestinations"] is False
    limited = firehose.describe_delivery_stream(DeliveryStreamName="orders", Limit=1)["DeliveryStreamDescription"]
    assert [x["DestinationId"] for x in limited["Destinations"]] == [DEST_ID]


def test_longest_stream_name_is_accepted(firehose):
    name = "a-" + "x" * 60 + ".1"
    assert len(name) == 64
    assert firehose.create_delivery_stream(DeliveryStreamName=name,
                                           ExtendedS3DestinationConfiguration=s3_destination())[
        "DeliveryStreamARN"] == arn(name)
    assert describe(firehose, name)["DeliveryStreamName"] == name


def test_concurrent_creates_of_one_name(server):
    clients = [server.client() for _ in range(8)]
    outcomes = []
    barrier = threading.Barrier(len(clients))

    def create(c):
        barrier.wait()
        try:
            c.create_delivery_stream(DeliveryStreamName="race", ExtendedS3DestinationConfiguration=s3_destination())
            outcomes.append("created")
        except ClientError as e:
            outcomes.append(e.response["Error"]["Code"])

    threads = [threading.Thread(target=create, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(outcomes) == ["ResourceInUseException"] * 7 + ["created"]
    assert clients[0].list_delivery_streams()["DeliveryStreamNames"] == ["race"]


def test_create_timestamp_is_epoch_seconds_on_the_wire(server, firehose):
    create_s3_stream(firehose, "ts")
    raw = describe_raw(server, "ts")
    assert isinstance(raw["CreateTimestamp"], (int, float))
    now = datetime.datetime.now(datetime.timezone.utc).timestamp()
    assert abs(raw["CreateTimestamp"] - now) < 120, "CreateTimestamp must be epoch seconds"


def test_deprecated_s3_destination_configuration_describes_as_both(firehose):
    cfg = s3_destination("legacy", Prefix="legacy/", CompressionFormat="GZIP")
    resp = firehose.create_delivery_stream(DeliveryStreamName="legacy", S3DestinationConfiguration=cfg)
    assert resp["DeliveryStreamARN"] == arn("legacy")
    d = describe(firehose, "legacy")
    assert d["DeliveryStreamStatus"] == "ACTIVE"
    dest = d["Destinations"][0]
    expected_s3 = s3_description(cfg)
    assert expected_s3["CompressionFormat"] == "GZIP"
    assert dest["S3DestinationDescription"] == expected_s3
    assert dest["ExtendedS3DestinationDescription"] == {**expected_s3, "S3BackupMode": "Disabled"}


FULL_EXTENDED_S3 = {
    "RoleARN": ROLE,
    "BucketARN": "arn:aws:s3:::full-bucket",
    "Prefix": "data/customer=!{partitionKeyFromQuery:customer}/",
    "ErrorOutputPrefix": "errors/!{firehose:error-output-type}/",
    "BufferingHints": {"SizeInMBs": 64, "IntervalInSeconds": 60},
    "CompressionFormat": "GZIP",
    "EncryptionConfiguration": {"KMSEncryptionConfig": {"AWSKMSKeyARN": KMS_KEY}},
    "CloudWatchLoggingOptions": {"Enabled": True, "LogGroupName": "/aws/kinesisfirehose/full",
                                 "LogStreamName": "DestinationDelivery"},
    "ProcessingConfiguration": {
        "Enabled": True,
        "Processors": [
            {"Type": "Lambda", "Parameters": [
                {"ParameterName": "LambdaArn",
                 "ParameterValue": "arn:aws:lambda:us-east-1:123456789012:function:transform:$LATEST"},
            ]},
            {"Type": "MetadataExtraction", "Parameters": [
                {"ParameterName": "MetadataExtractionQuery", "ParameterValue": "{customer:.customer}"},
                {"ParameterName": "JsonParsingEngine", "ParameterValue": "JQ-1.6"},
            ]},
        ],
    },
    "S3BackupMode": "Enabled",
    "S3BackupConfiguration": {"RoleARN": ROLE, "BucketARN": "arn:aws:s3:::backup-bucket", "Prefix": "backup/",
                              "CompressionFormat": "GZIP"},
    "DataFormatConversionConfiguration": {
        "Enabled": False,
        "SchemaConfiguration": {"RoleARN": ROLE, "DatabaseName": "db", "TableName": "events", "Region": "us-east-1",
                                "VersionId": "LATEST", "CatalogId": ACCOUNT_ID},
        "InputFormatConfiguration": {"Deserializer": {"OpenXJsonSerDe": {"CaseInsensitive": True}}},
        "OutputFormatConfiguration": {"Serializer": {"ParquetSerDe": {"Compression": "SNAPPY"}}},
    },
    "DynamicPartitioningConfiguration": {"Enabled": True},
    "FileExtension": ".json.gz",
    "CustomTimeZone": "America/New_York",
}


# The full configuration without the features spillway cannot deliver yet (transformation, dynamic
# partitioning): a stream that becomes ACTIVE.
DELIVERABLE_EXTENDED_S3 = {
    **{k: v for k, v in FULL_EXTENDED_S3.items() if k != "DynamicPartitioningConfiguration"},
    "Prefix": "data/year=!{timestamp:yyyy}/",
    "ProcessingConfiguration": {**FULL_EXTENDED_S3["ProcessingConfiguration"], "Enabled": False},
}


def test_full_extended_s3_configuration_is_echoed(server, firehose):
    firehose.create_delivery_stream(DeliveryStreamName="full",
                                    ExtendedS3DestinationConfiguration=copy.deepcopy(FULL_EXTENDED_S3))
    expected = copy.deepcopy(FULL_EXTENDED_S3)
    backup = expected.pop("S3BackupConfiguration")
    expected["S3BackupDescription"] = s3_description(backup)
    expected["DynamicPartitioningConfiguration"] = {"Enabled": True, "RetryOptions": {"DurationInSeconds": 300}}
    expected["ProcessingConfiguration"]["Processors"][0]["Parameters"] += [
        {"ParameterName": "NumberOfRetries", "ParameterValue": "3"},
        {"ParameterName": "BufferSizeInMBs", "ParameterValue": "1"},
        {"ParameterName": "BufferIntervalInSeconds", "ParameterValue": "60"},
    ]

    raw = describe_raw(server, "full")["Destinations"][0]
    assert raw["DestinationId"] == DEST_ID
    assert params_as_dicts(raw["ExtendedS3DestinationDescription"]) == params_as_dicts(expected)
    assert raw["S3DestinationDescription"] == s3_description(FULL_EXTENDED_S3)

    # botocore parses the same description into its modeled shapes.
    ext = describe(firehose, "full")["Destinations"][0]["ExtendedS3DestinationDescription"]
    assert ext["S3BackupDescription"]["BucketARN"] == "arn:aws:s3:::backup-bucket"
    assert ext["DataFormatConversionConfiguration"]["SchemaConfiguration"]["TableName"] == "events"
    assert ext["DynamicPartitioningConfiguration"]["RetryOptions"]["DurationInSeconds"] == 300
    assert ext["FileExtension"] == ".json.gz"
    assert ext["CustomTimeZone"] == "America/New_York"


def test_data_format_conversion_rules(firehose, server):
    # The table SchemaConfiguration names (spillway's stand-in for the Glue table).
    (server.data_dir / "tables" / "db").mkdir(parents=True, exist_ok=True)
    (server.data_dir / "tables" / "db" / "t.sql").write_text("CREATE TABLE t (a int)")
    dfc = {
        "SchemaConfiguration": {"RoleARN": ROLE, "DatabaseName": "db", "TableName": "t"},
        "InputFormatConfiguration": {"Deserializer": {"HiveJsonSerDe": {"TimestampFormats": ["millis"]}}},
        "OutputFormatConfiguration": {"Serializer": {"OrcSerDe": {"Compression": "ZLIB"}}},
    }
    firehose.create_delivery_stream(DeliveryStreamName="dfc",
                                    ExtendedS3DestinationConfiguration=s3_destination(
                                        DataFormatConversionConfiguration=dfc))
    ext = describe(firehose, "dfc")["Destinations"][0]["ExtendedS3DestinationDescription"]
    assert ext["BufferingHints"] == {"SizeInMBs": 128, "IntervalInSeconds": 300}, \
        "format conversion raises the default buffer size to 128 MiB"
    assert ext["DataFormatConversionConfiguration"] == dfc

    with pytest.raises(firehose.exceptions.InvalidArgumentException):
        firehose.create_delivery_stream(DeliveryStreamName="dfc-gzip", ExtendedS3DestinationConfiguration=s3_destination(
            CompressionFormat="GZIP", DataFormatConversionConfiguration={**dfc, "Enabled": True}))
    with pytest.raises(firehose.exceptions.InvalidArgumentException):
        firehose.create_delivery_stream(DeliveryStreamName="dfc-small", ExtendedS3DestinationConfiguration=s3_destination(
            BufferingHints={"SizeInMBs": 5, "IntervalInSeconds": 60}, DataFormatConversionConfiguration=dfc))
    for name in ("dfc-gzip", "dfc-small"):
        with pytest.raises(firehose.exceptions.ResourceNotFoundException):
            describe(firehose, name)


def test_direct_put_source_configuration_is_described(firehose):
    firehose.create_delivery_stream(DeliveryStreamName="hinted", DeliveryStreamType="DirectPut",
                                    DirectPutSourceConfiguration={"ThroughputHintInMBs": 5},
                                    ExtendedS3DestinationConfiguration=s3_destination())
    d = describe(firehose, "hinted")
    assert d["Source"] == {"DirectPutSourceDescription": {"ThroughputHintInMBs": 5}}
    assert d["DeliveryStreamStatus"] == "ACTIVE"


# --------------------------------------------------------------------------------------------------
# Destinations spillway cannot deliver to yet
# --------------------------------------------------------------------------------------------------

NESTED_S3 = s3_destination("intermediate", Prefix="stage/", CompressionFormat="GZIP")
PRIVATE_KEY = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC" * 9 + "AAAA"

UNDELIVERABLE = {
    "Redshift": (
        "RedshiftDestinationConfiguration", "RedshiftDestinationDescription", "redshift",
        {"RoleARN": ROLE,
         "ClusterJDBCURL": "jdbc:redshift://cluster.abc123xyz789.us-east-1.redshift.amazonaws.com:5439/dev",
         "CopyCommand": {"DataTableName": "events", "DataTableColumns": "a,b", "CopyOptions": "json 'auto'"},
         "Username": "loader", "Password": "redshift-secret-pw",
         "RetryOptions": {"DurationInSeconds": 3600},
         "S3Configuration": NESTED_S3, "S3BackupMode": "Disabled",
         "CloudWatchLoggingOptions": {"Enabled": True, "LogGroupName": "g", "LogStreamName": "s"}},
        ["Password"], ["redshift-secret-pw"]),
    "AmazonOpenSearchService": (
        "AmazonopensearchserviceDestinationConfiguration", "AmazonopensearchserviceDestinationDescription",
        "opensearch",
        {"RoleARN": ROLE, "DomainARN": "arn:aws:es:us-east-1:123456789012:domain/logs", "IndexName": "logs",
         "IndexRotationPeriod": "OneDay", "BufferingHints": {"IntervalInSeconds": 60, "SizeInMBs": 5},
         "RetryOptions": {"DurationInSeconds": 300}, "S3BackupMode": "FailedDocumentsOnly",
         "S3Configuration": NESTED_S3,
         "VpcConfiguration": {"SubnetIds": ["subnet-0a1b2c3d"], "RoleARN": ROLE, "SecurityGroupIds": ["sg-0a1b2c3d"]},
         "DocumentIdOptions": {"DefaultDocumentIdFormat": "FIREHOSE_DEFAULT"}},
        [], []),
    "Elasticsearch": (
        "ElasticsearchDestinationConfiguration", "ElasticsearchDestinationDescription", "elasticsearch",
        {"RoleARN": ROLE, "ClusterEndpoint": "https://search-logs.us-east-1.es.amazonaws.com", "IndexName": "logs",
         "TypeName": "doc", "IndexRotationPeriod": "OneWeek", "S3BackupMode": "AllDocuments",
         "S3Configuration": NESTED_S3},
        [], []),
    "Splunk": (
        "SplunkDestinationConfiguration", "SplunkDestinationDescription", "splunk",
        {"HECEndpoint": "https://splunk.example.com:8088", "HECEndpointType": "Raw", "HECToken": "hec-token-value",
         "HECAcknowledgmentTimeoutInSeconds": 180, "RetryOptions": {"DurationInSeconds": 60},
         "S3BackupMode": "FailedEventsOnly", "S3Configuration": NESTED_S3,
         "BufferingHints": {"IntervalInSeconds": 60, "SizeInMBs": 5},
         "ProcessingConfiguration": {"Enabled": True, "Processors": [{"Type": "Lambda", "Parameters": [
             {"ParameterName": "LambdaArn", "ParameterValue": "arn:aws:lambda:us-east-1:123456789012:function:f"},
             {"ParameterName": "NumberOfRetries", "ParameterValue": "2"},
             {"ParameterName": "RoleArn", "ParameterValue": ROLE},
             {"ParameterName": "BufferSizeInMBs", "ParameterValue": "0.256"},
             {"ParameterName": "BufferIntervalInSeconds", "ParameterValue": "30"}]}]}},
        [], []),
    "HttpEndpoint": (
        "HttpEndpointDestinationConfiguration", "HttpEndpointDestinationDescription", "http",
        {"EndpointConfiguration": {"Url": "https://ingest.example.com/v1", "Name": "example",
                                   "AccessKey": "http-endpoint-access-key"},
         "BufferingHints": {"SizeInMBs": 1, "IntervalInSeconds": 60},
         "RequestConfiguration": {"ContentEncoding": "GZIP",
                                  "CommonAttributes": [{"AttributeName": "env", "AttributeValue": "test"}]},
         "RoleARN": ROLE, "RetryOptions": {"DurationInSeconds": 300}, "S3BackupMode": "FailedDataOnly",
         "S3Configuration": NESTED_S3},
        ["EndpointConfiguration.AccessKey"], ["http-endpoint-access-key"]),
    "OpenSearchServerless": (
        "AmazonOpenSearchServerlessDestinationConfiguration", "AmazonOpenSearchServerlessDestinationDescription",
        "opensearch serverless",
        {"RoleARN": ROLE, "CollectionEndpoint": "https://abc123.us-east-1.aoss.amazonaws.com", "IndexName": "idx",
         "BufferingHints": {"IntervalInSeconds": 60, "SizeInMBs": 5}, "RetryOptions": {"DurationInSeconds": 300},
         "S3BackupMode": "FailedDocumentsOnly", "S3Configuration": NESTED_S3},
        [], []),
    "Snowflake": (
        "SnowflakeDestinationConfiguration", "SnowflakeDestinationDescription", "snowflake",
        {"AccountUrl": "https://abc12345.us-east-1.snowflakecomputing.com", "PrivateKey": PRIVATE_KEY,
         "KeyPassphrase": "snowflake-passphrase", "User": "firehose_user", "Database": "DB", "Schema": "PUBLIC",
         "Table": "EVENTS", "SnowflakeRoleConfiguration": {"Enabled": True, "SnowflakeRole": "LOADER"},
         "DataLoadingOption": "JSON_MAPPING", "SnowflakeVpcConfiguration": {"PrivateLinkVpceId": "com.amazonaws.vpce.us-east-1.vpce-svc-0a1b2c3d4e5f67890"},
         "RoleARN": ROLE, "RetryOptions": {"DurationInSeconds": 60}, "S3BackupMode": "FailedDataOnly",
         "S3Configuration": NESTED_S3, "BufferingHints": {"SizeInMBs": 128, "IntervalInSeconds": 0}},
        ["PrivateKey", "KeyPassphrase"], [PRIVATE_KEY, "snowflake-passphrase"]),
}


def expected_destination_description(config, secret_paths):
    d = copy.deepcopy(config)
    for path in secret_paths:
        obj = d
        *outer, last = path.split(".")
        for p in outer:
            obj = obj[p]
        obj.pop(last)
    d["S3DestinationDescription"] = s3_description(d.pop("S3Configuration"))
    if "VpcConfiguration" in d:
        d["VpcConfigurationDescription"] = d.pop("VpcConfiguration")
    return d


@pytest.mark.parametrize("kind", list(UNDELIVERABLE))
def test_undeliverable_destination_is_stored_but_creating_failed(server, firehose, kind):
    member, describe_member, label, config, secret_paths, secrets = UNDELIVERABLE[kind]
    name = f"to-{kind.lower()}"
    resp = firehose.create_delivery_stream(DeliveryStreamName=name, **{member: copy.deepcopy(config)})
    assert resp["DeliveryStreamARN"] == arn(name)

    d = describe(firehose, name)
    assert d["DeliveryStreamStatus"] == "CREATING_FAILED"
    assert d["FailureDescription"]["Type"] == "UNKNOWN_ERROR"
    assert label in d["FailureDescription"]["Details"].lower(), d["FailureDescription"]
    assert d["Destinations"][0]["DestinationId"] == DEST_ID
    assert describe_member in d["Destinations"][0]

    raw = describe_raw(server, name)
    dest = raw["Destinations"][0]
    assert set(dest) == {"DestinationId", describe_member}, "only the destination's own description"
    got = copy.deepcopy(dest[describe_member])
    if "VpcConfigurationDescription" in got:
        got["VpcConfigurationDescription"].pop("VpcId", None)  # AWS adds the VPC id
    assert got == expected_destination_description(config, secret_paths)

    text = raw_request(server, "DescribeDeliveryStream", {"DeliveryStreamName": name}).text
    for secret in secrets:
        assert secret not in text, f"{kind} description leaks a secret"

    with pytest.raises(firehose.exceptions.ResourceNotFoundException):
        firehose.put_record(DeliveryStreamName=name, Record={"Data": b"x"})
    with pytest.raises(firehose.exceptions.ResourceNotFoundException):
        firehose.put_record_batch(DeliveryStreamName=name, Records=[{"Data": b"x"}])

    firehose.delete_delivery_stream(DeliveryStreamName=name)
    with pytest.raises(firehose.exceptions.ResourceNotFoundException):
        describe(firehose, name)


ICEBERG = {"DestinationTableConfigurationList": [{"DestinationTableName": "events", "DestinationDatabaseName": "db",
                                           "UniqueKeys": ["id"], "S3ErrorOutputPrefix": "iceberg-errors/"}],
    "SchemaEvolutionConfiguration": {"Enabled": True}, "TableCreationConfiguration": {"Enabled": False},
    "BufferingHints": {"SizeInMBs": 64, "IntervalInSeconds": 300}, "S3BackupMode": "FailedDataOnly",
    "RetryOptions": {"DurationInSeconds": 300}, "RoleARN": ROLE, "AppendOnly": False,
    "CatalogConfiguration": {"CatalogARN": "arn:aws:glue:us-east-1:123456789012:catalog",
                             "WarehouseLocation": "s3://warehouse/"},
    "S3Configuration": NESTED_S3}


def test_iceberg_destination_description_round_trips(server, firehose):
    """Table creation and schema evolution are delivered now: the stream is ACTIVE, described as configured."""
    resp = firehose.create_delivery_stream(DeliveryStreamName="to-iceberg",
                                           IcebergDestinationConfiguration=copy.deepcopy(ICEBERG))
    assert resp["DeliveryStreamARN"] == arn("to-iceberg")
    d = describe(firehose, "to-iceberg")
    assert d["DeliveryStreamStatus"] == "ACTIVE", d.get("FailureDescription")
    raw = describe_raw(server, "to-iceberg")
    dest = raw["Destinations"][0]
    assert set(dest) == {"DestinationId", "IcebergDestinationDescription"}
    assert dest["IcebergDestinationDescription"] == expected_destination_description(ICEBERG, [])


KINESIS_SOURCE = {"KinesisStreamARN": f"arn:aws:kinesis:us-east-1:{ACCOUNT_ID}:stream/source", "RoleARN": ROLE}


def test_kinesis_stream_as_source(server, firehose):
    firehose.create_delivery_stream(DeliveryStreamName="from-kinesis", DeliveryStreamType="KinesisStreamAsSource",
                                    KinesisStreamSourceConfiguration=KINESIS_SOURCE,
                                    ExtendedS3DestinationConfiguration=s3_destination())
    d = describe(firehose, "from-kinesis")
    assert d["DeliveryStreamType"] == "KinesisStreamAsSource"
    assert d["DeliveryStreamStatus"] == "CREATING_FAILED"
    assert d["FailureDescription"]["Type"] == "UNKNOWN_ERROR"
    assert "kinesis" in d["FailureDescription"]["Details"].lower()
    src = d["Source"]["KinesisStreamSourceDescription"]
    assert src["KinesisStreamARN"] == KINESIS_SOURCE["KinesisStreamARN"]
    assert src["RoleARN"] == ROLE
    assert_recent(src["DeliveryStartTimestamp"])

    msg = "This operation is not permitted on KinesisStreamAsSource delivery stream type."
    with pytest.raises(firehose.exceptions.InvalidArgumentException) as e:
        firehose.put_record(DeliveryStreamName="from-kinesis", Record={"Data": b"x"})
    assert error_of(e) == ("InvalidArgumentException", msg)
    with pytest.raises(firehose.exceptions.InvalidArgumentException) as e:
        firehose.put_record_batch(DeliveryStreamName="from-kinesis", Records=[{"Data": b"x"}])
    assert error_of(e) == ("InvalidArgumentException", msg)

    # Kinesis-sourced streams rely on KDS encryption; a CREATING_FAILED stream cannot be updated.
    with pytest.raises(firehose.exceptions.InvalidArgumentException):
        firehose.start_delivery_stream_encryption(DeliveryStreamName="from-kinesis")
    with pytest.raises(firehose.exceptions.ResourceInUseException):
        firehose.update_destination(DeliveryStreamName="from-kinesis", CurrentDeliveryStreamVersionId="1",
                                    DestinationId=DEST_ID, ExtendedS3DestinationUpdate={"Prefix": "x/"})

    firehose.delete_delivery_stream(DeliveryStreamName="from-kinesis")
    with pytest.raises(firehose.exceptions.ResourceNotFoundException):
        describe(firehose, "from-kinesis")


def test_source_configuration_must_match_stream_type(firehose):
    with pytest.raises(firehose.exceptions.InvalidArgumentException):
        firehose.create_delivery_stream(DeliveryStreamName="mismatch", DeliveryStreamType="DirectPut",
                                        KinesisStreamSourceConfiguration=KINESIS_SOURCE,
                                        ExtendedS3DestinationConfiguration=s3_destination())
    with pytest.raises(firehose.exceptions.InvalidArgumentException):
        firehose.create_delivery_stream(DeliveryStreamName="mismatch", DeliveryStreamType="KinesisStreamAsSource",
                                        ExtendedS3DestinationConfiguration=s3_destination())
    assert firehose.list_delivery_streams()["DeliveryStreamNames"] == []


# --------------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------------

def test_duplicate_name_is_resource_in_use(firehose):
    create_s3_stream(firehose, "dup", Prefix="first/")
    with pytest.raises(firehose.exceptions.ResourceInUseException) as e:
        firehose.create_delivery_stream(DeliveryStreamName="dup",
                                        ExtendedS3DestinationConfiguration=s3_destination("other", Prefix="second/"))
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert "dup" in error_of(e)[1]
    ext = describe(firehose, "dup")["Destinations"][0]["ExtendedS3DestinationDescription"]
    assert ext["Prefix"] == "first/" and ext["BucketARN"] == "arn:aws:s3:::test-bucket"


@pytest.mark.parametrize("members", [
    {},
    {"S3DestinationConfiguration": s3_destination(), "ExtendedS3DestinationConfiguration": s3_destination()},
    {"ExtendedS3DestinationConfiguration": s3_destination(),
     "HttpEndpointDestinationConfiguration": {"EndpointConfiguration": {"Url": "https://x.example.com"},
                                              "S3Configuration": s3_destination()}},
], ids=["none", "s3-and-extended-s3", "extended-s3-and-http"])
def test_exactly_one_destination_is_required(firehose, members):
    with pytest.raises(firehose.exceptions.InvalidArgumentException) as e:
        firehose.create_delivery_stream(DeliveryStreamName="nodest", **members)
    assert error_of(e) == ("InvalidArgumentException",
                           "Exactly one destination configuration is supported for a Firehose")
    with pytest.raises(firehose.exceptions.ResourceNotFoundException):
        describe(firehose, "nodest")


def test_invalid_stream_name_is_validation_exception(server, firehose):
    with pytest.raises(ClientError) as e:
        firehose.create_delivery_stream(DeliveryStreamName="bad name!",
                                        ExtendedS3DestinationConfiguration=s3_destination())
    assert error_of(e) == ("ValidationException",
                           "1 validation error detected: Value 'bad name!' at 'deliveryStreamName' failed to satisfy "
                           "constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+")
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400

    long_name = "n" * 65
    r = raw_request(server, "CreateDeliveryStream",
                    {"DeliveryStreamName": long_name, "ExtendedS3DestinationConfiguration": s3_destination()})
    assert r.status == 400
    assert r.error_type == "ValidationException"
    assert r.message == (f"1 validation error detected: Value '{long_name}' at 'deliveryStreamName' failed to satisfy "
                         "constraint: Member must have length less than or equal to 64")
    assert firehose.list_delivery_streams()["DeliveryStreamNames"] == []


def test_missing_role_arn_is_validation_exception(server, firehose):
    # botocore refuses a missing required member client-side, so this goes over raw HTTP.
    r = raw_request(server, "CreateDeliveryStream",
                    {"DeliveryStreamName": "norole",
                     "ExtendedS3DestinationConfiguration": {"BucketARN": "arn:aws:s3:::b"}})
    assert r.status == 400
    assert r.error_type == "ValidationException"
    assert r.message == ("1 validation error detected: Value null at 'extendedS3DestinationConfiguration.roleARN' "
                         "failed to satisfy constraint: Member must not be null")
    with pytest.raises(firehose.exceptions.ResourceNotFoundException):
        describe(firehose, "norole")


def test_several_violations_are_counted(server):
    r = raw_request(server, "CreateDeliveryStream",
                    {"DeliveryStreamName": "multi",
                     "ExtendedS3DestinationConfiguration": {"BucketARN": "not-an-arn", "CompressionFormat": "LZ4"}})
    assert r.status == 400 and r.error_type == "ValidationException"
    assert r.message.startswith("3 validation errors detected: "), r.message
    violations = r.message[len("3 validation errors detected: "):].split("; ")
    assert len(violations) == 3, r.message
    assert any("'extendedS3DestinationConfiguration.roleARN'" in v and "Member must not be null" in v
               for v in violations)
    assert any(v.startswith("Value 'not-an-arn' at 'extendedS3DestinationConfiguration.bucketARN' failed to satisfy "
                            "constraint: Member must satisfy regular expression pattern: ") for v in violations)
    assert any(v.startswith("Value 'LZ4' at 'extendedS3DestinationConfiguration.compressionFormat'")
               for v in violations)


def test_bad_compression_format_is_validation_exception(server, firehose):
    # botocore does not check enums: the server must.
    with pytest.raises(ClientError) as e:
        create_s3_stream(firehose, "snappy", CompressionFormat="SNAPPY")
    code, message = error_of(e)
    assert code == "ValidationException"
    prefix = ("1 validation error detected: Value 'SNAPPY' at 'extendedS3DestinationConfiguration.compressionFormat' "
              "failed to satisfy constraint: Member must satisfy enum value set: [")
    assert message.startswith(prefix), message
    assert set(message[len(prefix):].rstrip("]").split(", ")) == {"UNCOMPRESSED", "GZIP", "ZIP", "Snappy",
                                                                  "HADOOP_SNAPPY"}
    # The case-sensitive "Snappy" is valid.
    create_s3_stream(firehose, "snappy", CompressionFormat="Snappy")
    assert describe(firehose, "snappy")["Destinations"][0]["ExtendedS3DestinationDescription"][
        "CompressionFormat"] == "Snappy"


@pytest.mark.parametrize("hints", [{"SizeInMBs": 5}, {"IntervalInSeconds": 60}])
def test_buffering_hints_need_both_members(firehose, hints):
    with pytest.raises(firehose.exceptions.InvalidArgumentException):
        create_s3_stream(firehose, "half-hints", BufferingHints=hints)
    with pytest.raises(firehose.exceptions.ResourceNotFoundException):
        describe(firehose, "half-hints")


UNKNOWN_STREAM_CALLS = {
    "DescribeDeliveryStream": lambda c, n: c.describe_delivery_stream(DeliveryStreamName=n),
    "DeleteDeliveryStream": lambda c, n: c.delete_delivery_stream(DeliveryStreamName=n),
    "PutRecord": lambda c, n: c.put_record(DeliveryStreamName=n, Record={"Data": b"x"}),
    "PutRecordBatch": lambda c, n: c.put_record_batch(DeliveryStreamName=n, Records=[{"Data": b"x"}]),
    "TagDeliveryStream": lambda c, n: c.tag_delivery_stream(DeliveryStreamName=n, Tags=[{"Key": "k", "Value": "v"}]),
    "UntagDeliveryStream": lambda c, n: c.untag_delivery_stream(DeliveryStreamName=n, TagKeys=["k"]),
    "ListTagsForDeliveryStream": lambda c, n: c.list_tags_for_delivery_stream(DeliveryStreamName=n),
    "UpdateDestination": lambda c, n: c.update_destination(DeliveryStreamName=n, CurrentDeliveryStreamVersionId="1",
                                                           DestinationId=DEST_ID,
                                                           ExtendedS3DestinationUpdate={"Prefix": "p/"}),
    "StartDeliveryStreamEncryption": lambda c, n: c.start_delivery_stream_encryption(DeliveryStreamName=n),
    "StopDeliveryStreamEncryption": lambda c, n: c.stop_delivery_stream_encryption(DeliveryStreamName=n),
}


@pytest.mark.parametrize("operation", list(UNKNOWN_STREAM_CALLS))
def test_unknown_stream_is_resource_not_found(firehose, operation):
    create_s3_stream(firehose, "exists")
    with pytest.raises(firehose.exceptions.ResourceNotFoundException) as e:
        UNKNOWN_STREAM_CALLS[operation](firehose, "missing-stream")
    assert error_of(e) == ("ResourceNotFoundException", not_found("missing-stream"))
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


@pytest.mark.parametrize("target", ["Firehose_20150804.DescribeStream", "Kinesis_20131202.ListStreams",
                                    "Firehose_20150804.", "firehose_20150804.ListDeliveryStreams", None])
def test_unknown_operation(server, target):
    r = raw_request(server, None, {}, target=target)
    assert r.status == 400
    assert r.error_type == "UnknownOperationException", r.text
    assert r.message


@pytest.mark.parametrize("operation,body", [
    ("DescribeDeliveryStream", "{not json"),
    ("CreateDeliveryStream", '{"DeliveryStreamName": "x", '),
    ("ListDeliveryStreams", "[1, 2]"),
    ("PutRecord", "{not json"),
    ("PutRecordBatch", '{"DeliveryStreamName": "s", "Records": "x"}'),
    ("DescribeDeliveryStream", '{"DeliveryStreamName": 5}'),
])
def test_malformed_body_is_serialization_exception(server, operation, body):
    r = raw_request(server, operation, body)
    assert r.status == 400
    assert r.error_type == "SerializationException", r.text


def test_error_responses_carry_request_id_and_content_type(server, firehose):
    create_s3_stream(firehose, "present")
    responses = [
        raw_request(server, "DescribeDeliveryStream", {"DeliveryStreamName": "absent"}),
        raw_request(server, "CreateDeliveryStream", {"DeliveryStreamName": "bad name"}),
        raw_request(server, "CreateDeliveryStream", {"DeliveryStreamName": "nodest"}),
        raw_request(server, "CreateDeliveryStream", {"DeliveryStreamName": "present",
                                                     "ExtendedS3DestinationConfiguration": s3_destination()}),
        raw_request(server, "Nope", {}),
        raw_request(server, "ListDeliveryStreams", "{"),
        raw_request(server, "UpdateDestination", {"DeliveryStreamName": "present", "CurrentDeliveryStreamVersionId": "9",
                                                  "DestinationId": DEST_ID}),
    ]
    expected = ["ResourceNotFoundException", "ValidationException", "InvalidArgumentException",
                "ResourceInUseException", "UnknownOperationException", "SerializationException",
                "ConcurrentModificationException"]
    assert [r.error_type for r in responses] == expected
    ids = set()
    for r in responses:
        assert r.status == 400, (r.status, r.text)
        assert r.headers.get("Content-Type", "").startswith("application/x-amz-json-1.1"), r.headers
        rid = r.headers.get("x-amzn-RequestId")
        assert rid and UUID_RE.match(rid), r.headers
        ids.add(rid)
        assert isinstance(r.message, str) and r.message
    assert len(ids) == len(responses), "request ids must be unique"

    ok = raw_request(server, "ListDeliveryStreams", {})
    assert ok.status == 200
    assert ok.headers.get("Content-Type", "").startswith("application/x-amz-json-1.1")
    assert UUID_RE.match(ok.headers.get("x-amzn-RequestId", ""))
    assert ok.json == {"DeliveryStreamNames": ["present"], "HasMoreDeliveryStreams": False}


def test_empty_body_is_an_empty_input(server, firehose):
    create_s3_stream(firehose, "only")
    r = raw_request(server, "ListDeliveryStreams", b"")
    assert r.status == 200 and r.json["DeliveryStreamNames"] == ["only"]


# --------------------------------------------------------------------------------------------------
# ListDeliveryStreams
# --------------------------------------------------------------------------------------------------

def test_list_delivery_streams_empty(firehose):
    resp = firehose.list_delivery_streams()
    assert resp["DeliveryStreamNames"] == []
    assert resp["HasMoreDeliveryStreams"] is False


def test_list_delivery_streams_order_paging_and_type_filter(firehose):
    direct = [f"s{i:02d}" for i in range(12)]
    shuffled = direct[:]
    random.Random(7).shuffle(shuffled)
    for name in shuffled:
        create_s3_stream(firehose, name)
    firehose.create_delivery_stream(DeliveryStreamName="s05-kinesis", DeliveryStreamType="KinesisStreamAsSource",
                                    KinesisStreamSourceConfiguration=KINESIS_SOURCE,
                                    ExtendedS3DestinationConfiguration=s3_destination())
    everything = sorted(direct + ["s05-kinesis"])

    def ls(**kw):
        r = firehose.list_delivery_streams(**kw)
        return r["DeliveryStreamNames"], r["HasMoreDeliveryStreams"]

    assert ls() == (everything[:10], True), "default Limit is 10, names in alphabetical order"
    assert ls(Limit=100) == (everything, False)
    assert ls(Limit=13) == (everything, False)
    assert ls(Limit=3) == (everything[:3], True)
    assert ls(Limit=1) == (["s00"], True)
    assert ls(ExclusiveStartDeliveryStreamName="s05") == (["s05-kinesis", "s06", "s07", "s08", "s09", "s10", "s11"],
                                                          False)
    # The cursor need not name an existing stream: "s05-kinesis" < "s055" < "s06".
    assert ls(ExclusiveStartDeliveryStreamName="s055", Limit=2) == (["s06", "s07"], True)
    assert ls(ExclusiveStartDeliveryStreamName="s11") == ([], False)
    assert ls(ExclusiveStartDeliveryStreamName="a") == (everything[:10], True)
    assert ls(DeliveryStreamType="DirectPut", Limit=100) == (direct, False)
    assert ls(DeliveryStreamType="KinesisStreamAsSource") == (["s05-kinesis"], False)
    assert ls(DeliveryStreamType="MSKAsSource") == ([], False)

    # Manual paging visits every name exactly once, in order.
    seen, cursor = [], None
    while True:
        kw = {"Limit": 4}
        if cursor:
            kw["ExclusiveStartDeliveryStreamName"] = cursor
        names, more = ls(**kw)
        seen += names
        if not more:
            break
        cursor = names[-1]
    assert seen == everything


def test_list_limit_out_of_range_is_validation_exception(server):
    for limit in (0, 10001):
        r = raw_request(server, "ListDeliveryStreams", {"Limit": limit})
        assert r.status == 400 and r.error_type == "ValidationException", r.text
        assert "'limit'" in r.message


# --------------------------------------------------------------------------------------------------
# DeleteDeliveryStream
# --------------------------------------------------------------------------------------------------

def test_delete_then_describe_is_not_found_and_name_can_be_reused(firehose):
    create_s3_stream(firehose, "gone", Prefix="old/")
    create_s3_stream(firehose, "stays")
    firehose.tag_delivery_stream(DeliveryStreamName="gone", Tags=[{"Key": "k", "Value": "v"}])
    firehose.put_record(DeliveryStreamName="gone", Record={"Data": b"before delete"})
    old_created = describe(firehose, "gone")["CreateTimestamp"]

    assert firehose.delete_delivery_stream(DeliveryStreamName="gone")["ResponseMetadata"]["HTTPStatusCode"] == 200
    with pytest.raises(firehose.exceptions.ResourceNotFoundException) as e:
        describe(firehose, "gone")
    assert error_of(e)[1] == not_found("gone")
    assert firehose.list_delivery_streams()["DeliveryStreamNames"] == ["stays"]
    with pytest.raises(firehose.exceptions.ResourceNotFoundException):
        firehose.put_record(DeliveryStreamName="gone", Record={"Data": b"after delete"})
    with pytest.raises(firehose.exceptions.ResourceNotFoundException):
        firehose.list_tags_for_delivery_stream(DeliveryStreamName="gone")

    firehose.create_delivery_stream(DeliveryStreamName="gone",
                                    ExtendedS3DestinationConfiguration=s3_destination("new-bucket"))
    d = describe(firehose, "gone")
    assert d["DeliveryStreamStatus"] == "ACTIVE"
    assert d["VersionId"] == "1"
    assert d["CreateTimestamp"] >= old_created
    ext = d["Destinations"][0]["ExtendedS3DestinationDescription"]
    assert ext["BucketARN"] == "arn:aws:s3:::new-bucket" and "Prefix" not in ext
    assert firehose.list_tags_for_delivery_stream(DeliveryStreamName="gone")["Tags"] == []
    assert firehose.put_record(DeliveryStreamName="gone", Record={"Data": b"again"})["RecordId"]


# --------------------------------------------------------------------------------------------------
# UpdateDestination
# --------------------------------------------------------------------------------------------------

def update(client, name, version, **members):
    return client.update_destination(DeliveryStreamName=name, CurrentDeliveryStreamVersionId=version,
                                     DestinationId=DEST_ID, **members)


def test_update_destination_merges_and_bumps_version(firehose):
    create_s3_stream(firehose, "upd", Prefix="a/", CompressionFormat="GZIP",
                     BufferingHints={"SizeInMBs": 10, "IntervalInSeconds": 120})
    before = describe(firehose, "upd")
    update(firehose, "upd", "1", ExtendedS3DestinationUpdate={"Prefix": "b/"})
    d = describe(firehose, "upd")
    assert d["VersionId"] == "2"
    assert "LastUpdateTimestamp" in d
    assert_recent(d["LastUpdateTimestamp"])
    assert d["LastUpdateTimestamp"] >= d["CreateTimestamp"]
    assert d["CreateTimestamp"] == before["CreateTimestamp"]
    ext = d["Destinations"][0]["ExtendedS3DestinationDescription"]
    assert ext["Prefix"] == "b/"
    assert ext["BucketARN"] == "arn:aws:s3:::test-bucket"
    assert ext["RoleARN"] == ROLE
    assert ext["CompressionFormat"] == "GZIP"
    assert ext["BufferingHints"] == {"SizeInMBs": 10, "IntervalInSeconds": 120}
    assert d["Destinations"][0]["S3DestinationDescription"]["Prefix"] == "b/"

    update(firehose, "upd", "2", ExtendedS3DestinationUpdate={
        "BufferingHints": {"SizeInMBs": 1, "IntervalInSeconds": 0}, "BucketARN": "arn:aws:s3:::moved"})
    d = describe(firehose, "upd")
    assert d["VersionId"] == "3"
    ext = d["Destinations"][0]["ExtendedS3DestinationDescription"]
    assert ext["BufferingHints"] == {"SizeInMBs": 1, "IntervalInSeconds": 0}
    assert ext["BucketARN"] == "arn:aws:s3:::moved"
    assert ext["Prefix"] == "b/" and ext["CompressionFormat"] == "GZIP"


def test_update_destination_version_conflict(firehose):
    create_s3_stream(firehose, "cm", Prefix="a/")
    update(firehose, "cm", "1", ExtendedS3DestinationUpdate={"Prefix": "b/"})
    for stale in ("1", "3", "10"):
        with pytest.raises(firehose.exceptions.ConcurrentModificationException):
            update(firehose, "cm", stale, ExtendedS3DestinationUpdate={"Prefix": "c/"})
    d = describe(firehose, "cm")
    assert d["VersionId"] == "2"
    assert d["Destinations"][0]["ExtendedS3DestinationDescription"]["Prefix"] == "b/"


def test_update_destination_unknown_destination_id(firehose):
    create_s3_stream(firehose, "did", Prefix="a/")
    with pytest.raises(firehose.exceptions.InvalidArgumentException):
        firehose.update_destination(DeliveryStreamName="did", CurrentDeliveryStreamVersionId="1",
                                    DestinationId="destinationId-000000000002",
                                    ExtendedS3DestinationUpdate={"Prefix": "b/"})
    d = describe(firehose, "did")
    assert d["VersionId"] == "1"
    assert d["Destinations"][0]["ExtendedS3DestinationDescription"]["Prefix"] == "a/"


def test_identical_update_keeps_the_version(firehose):
    create_s3_stream(firehose, "same", Prefix="a/")
    update(firehose, "same", "1", ExtendedS3DestinationUpdate={"Prefix": "a/"})
    d = describe(firehose, "same")
    assert d["VersionId"] == "1"
    assert "LastUpdateTimestamp" not in d
    update(firehose, "same", "1", ExtendedS3DestinationUpdate={"Prefix": "b/"})
    d = describe(firehose, "same")
    assert d["VersionId"] == "2"
    last = d["LastUpdateTimestamp"]
    update(firehose, "same", "2", ExtendedS3DestinationUpdate={"Prefix": "b/", "RoleARN": ROLE})
    d = describe(firehose, "same")
    assert d["VersionId"] == "2"
    assert d["LastUpdateTimestamp"] == last


def test_s3_backup_cannot_go_from_enabled_to_disabled(firehose):
    create_s3_stream(firehose, "bk", S3BackupMode="Enabled",
                     S3BackupConfiguration=s3_destination("backup", Prefix="raw/"))
    with pytest.raises(firehose.exceptions.InvalidArgumentException):
        update(firehose, "bk", "1", ExtendedS3DestinationUpdate={"S3BackupMode": "Disabled"})
    d = describe(firehose, "bk")
    assert d["VersionId"] == "1"
    ext = d["Destinations"][0]["ExtendedS3DestinationDescription"]
    assert ext["S3BackupMode"] == "Enabled"
    assert ext["S3BackupDescription"]["Prefix"] == "raw/"
    # The backup bucket itself can be updated (member-wise).
    update(firehose, "bk", "1", ExtendedS3DestinationUpdate={"S3BackupUpdate": {"Prefix": "raw2/"}})
    ext = describe(firehose, "bk")["Destinations"][0]["ExtendedS3DestinationDescription"]
    assert ext["S3BackupDescription"]["Prefix"] == "raw2/"
    assert ext["S3BackupDescription"]["BucketARN"] == "arn:aws:s3:::backup"


def test_cannot_change_destination_type_to_http_endpoint(firehose):
    create_s3_stream(firehose, "tohttp")
    with pytest.raises(firehose.exceptions.InvalidArgumentException):
        update(firehose, "tohttp", "1", HttpEndpointDestinationUpdate={
            "EndpointConfiguration": {"Url": "https://x.example.com"},
            "S3Update": s3_destination()})
    d = describe(firehose, "tohttp")
    assert d["VersionId"] == "1"
    assert set(d["Destinations"][0]) == {"DestinationId", "ExtendedS3DestinationDescription",
                                         "S3DestinationDescription"}


def test_dynamic_partitioning_is_fixed_at_creation(firehose):
    create_s3_stream(firehose, "no-dp")
    with pytest.raises(firehose.exceptions.InvalidArgumentException):
        update(firehose, "no-dp", "1", ExtendedS3DestinationUpdate={
            "DynamicPartitioningConfiguration": {"Enabled": True}})
    firehose.create_delivery_stream(DeliveryStreamName="dp", ExtendedS3DestinationConfiguration=s3_destination(
        Prefix="k=!{partitionKeyFromQuery:k}/", ErrorOutputPrefix="err/",
        DynamicPartitioningConfiguration={"Enabled": True},
        ProcessingConfiguration={"Enabled": True, "Processors": [{"Type": "MetadataExtraction", "Parameters": [
            {"ParameterName": "MetadataExtractionQuery", "ParameterValue": "{k: .k}"},
            {"ParameterName": "JsonParsingEngine", "ParameterValue": "JQ-1.6"}]}]}))
    assert describe(firehose, "dp")["DeliveryStreamStatus"] == "ACTIVE"
    # Once enabled, dynamic partitioning cannot be disabled.
    with pytest.raises(firehose.exceptions.InvalidArgumentException):
        update(firehose, "dp", "1", ExtendedS3DestinationUpdate={
            "DynamicPartitioningConfiguration": {"Enabled": False}})
    assert describe(firehose, "no-dp")["VersionId"] == "1"
    assert describe(firehose, "dp")["VersionId"] == "1"


def test_nested_update_merge_granularity(firehose):
    lambda_arn = "arn:aws:lambda:us-east-1:123456789012:function:f"
    create_s3_stream(firehose, "nested", BufferingHints={"SizeInMBs": 64, "IntervalInSeconds": 60},
                     DataFormatConversionConfiguration={
                         "Enabled": False,
                         "SchemaConfiguration": {"RoleARN": ROLE, "DatabaseName": "db", "TableName": "t1"}},
                     ProcessingConfiguration={"Enabled": False, "Processors": [{"Type": "Lambda", "Parameters": [
                         {"ParameterName": "LambdaArn", "ParameterValue": lambda_arn}]}]})
    update(firehose, "nested", "1", ExtendedS3DestinationUpdate={
        "DataFormatConversionConfiguration": {"SchemaConfiguration": {"TableName": "t2"}},
        "ProcessingConfiguration": {"Processors": [{"Type": "AppendDelimiterToRecord", "Parameters": []}]}})
    ext = describe(firehose, "nested")["Destinations"][0]["ExtendedS3DestinationDescription"]
    # DataFormatConversionConfiguration merges member by member ...
    assert ext["DataFormatConversionConfiguration"] == {
        "Enabled": False, "SchemaConfiguration": {"RoleARN": ROLE, "DatabaseName": "db", "TableName": "t2"}}
    # ... ProcessingConfiguration is replaced as a whole, an omitted Enabled keeps the previous value.
    assert ext["ProcessingConfiguration"] == {
        "Enabled": False, "Processors": [{"Type": "AppendDelimiterToRecord", "Parameters": []}]}


# --------------------------------------------------------------------------------------------------
# Tags
# --------------------------------------------------------------------------------------------------

def test_tags_lifecycle(firehose):
    firehose.create_delivery_stream(DeliveryStreamName="tagged", ExtendedS3DestinationConfiguration=s3_destination(),
                                    Tags=[{"Key": "team", "Value": "data"}, {"Key": "env", "Value": "dev"}])

    def tags(**kw):
        r = firehose.list_tags_for_delivery_stream(DeliveryStreamName="tagged", **kw)
        return [(t["Key"], t.get("Value")) for t in r["Tags"]], r["HasMoreTags"]

    assert tags() == ([("env", "dev"), ("team", "data")], False)
    firehose.tag_delivery_stream(DeliveryStreamName="tagged",
                                 Tags=[{"Key": "env", "Value": "prod"}, {"Key": "cost-center", "Value": "42"}])
    assert tags() == ([("cost-center", "42"), ("env", "prod"), ("team", "data")], False)
    assert tags(Limit=2) == ([("cost-center", "42"), ("env", "prod")], True)
    assert tags(Limit=3) == ([("cost-center", "42"), ("env", "prod"), ("team", "data")], False)
    assert tags(ExclusiveStartTagKey="env") == ([("team", "data")], False)
    assert tags(ExclusiveStartTagKey="d", Limit=1) == ([("env", "prod")], True)
    assert tags(ExclusiveStartTagKey="zzz") == ([], False)

    # Within one request the last value of a key wins.
    firehose.tag_delivery_stream(DeliveryStreamName="tagged",
                                 Tags=[{"Key": "team", "Value": "x"}, {"Key": "team", "Value": "data"}])
    assert tags() == ([("cost-center", "42"), ("env", "prod"), ("team", "data")], False)

    firehose.untag_delivery_stream(DeliveryStreamName="tagged", TagKeys=["cost-center", "does-not-exist"])
    assert tags() == ([("env", "prod"), ("team", "data")], False)
    firehose.untag_delivery_stream(DeliveryStreamName="tagged", TagKeys=["never-there"])
    assert tags() == ([("env", "prod"), ("team", "data")], False)
    # Tagging does not change the destination version.
    assert describe(firehose, "tagged")["VersionId"] == "1"


def test_more_than_50_tags_is_limit_exceeded(firehose):
    firehose.create_delivery_stream(DeliveryStreamName="many", ExtendedS3DestinationConfiguration=s3_destination(),
                                    Tags=[{"Key": f"k{i:02d}", "Value": str(i)} for i in range(40)])
    with pytest.raises(firehose.exceptions.LimitExceededException):
        firehose.tag_delivery_stream(DeliveryStreamName="many",
                                     Tags=[{"Key": f"n{i:02d}", "Value": "x"} for i in range(11)])
    listed = firehose.list_tags_for_delivery_stream(DeliveryStreamName="many")["Tags"]
    assert len(listed) == 40, "a refused TagDeliveryStream changes nothing"
    firehose.tag_delivery_stream(DeliveryStreamName="many",
                                 Tags=[{"Key": f"n{i:02d}", "Value": "x"} for i in range(10)])
    # At 50: replacing a value is fine, a new key is not.
    firehose.tag_delivery_stream(DeliveryStreamName="many", Tags=[{"Key": "k00", "Value": "replaced"}])
    with pytest.raises(firehose.exceptions.LimitExceededException):
        firehose.tag_delivery_stream(DeliveryStreamName="many", Tags=[{"Key": "one-more", "Value": "x"}])
    listed = firehose.list_tags_for_delivery_stream(DeliveryStreamName="many", Limit=50)
    assert len(listed["Tags"]) == 50 and listed["HasMoreTags"] is False
    assert listed["Tags"][0] == {"Key": "k00", "Value": "replaced"}


def test_aws_prefixed_tag_keys_are_rejected(server, firehose):
    create_s3_stream(firehose, "awstag")
    with pytest.raises(ClientError) as e:
        firehose.tag_delivery_stream(DeliveryStreamName="awstag", Tags=[{"Key": "aws:reserved", "Value": "x"}])
    assert error_of(e)[0] == "ValidationException"
    r = raw_request(server, "TagDeliveryStream",
                    {"DeliveryStreamName": "awstag", "Tags": [{"Key": "ok", "Value": "1"},
                                                              {"Key": "aws:reserved", "Value": "x"}]})
    assert r.status == 400 and r.error_type == "ValidationException"
    assert r.message.startswith("1 validation error detected: Value 'aws:reserved' at 'tags.2.member.key' failed to "
                                "satisfy constraint: Member must satisfy regular expression pattern: "), r.message
    assert firehose.list_tags_for_delivery_stream(DeliveryStreamName="awstag")["Tags"] == [], \
        "a rejected request tags nothing"

    with pytest.raises(ClientError) as e:
        firehose.create_delivery_stream(DeliveryStreamName="awstag2", ExtendedS3DestinationConfiguration=s3_destination(),
                                        Tags=[{"Key": "aws:cloudformation:stack-name", "Value": "x"}])
    assert error_of(e)[0] == "ValidationException"
    with pytest.raises(firehose.exceptions.ResourceNotFoundException):
        describe(firehose, "awstag2")


# --------------------------------------------------------------------------------------------------
# Server-side encryption
# --------------------------------------------------------------------------------------------------

def test_start_and_stop_encryption(firehose):
    create_s3_stream(firehose, "sse")
    assert firehose.put_record(DeliveryStreamName="sse", Record={"Data": b"a"})["Encrypted"] is False

    firehose.start_delivery_stream_encryption(DeliveryStreamName="sse")
    enc = describe(firehose, "sse")["DeliveryStreamEncryptionConfiguration"]
    assert enc["Status"] == "ENABLED"
    assert enc["KeyType"] == "AWS_OWNED_CMK"
    assert "KeyARN" not in enc
    assert firehose.put_record(DeliveryStreamName="sse", Record={"Data": b"b"})["Encrypted"] is True
    assert firehose.put_record_batch(DeliveryStreamName="sse", Records=[{"Data": b"c"}])["Encrypted"] is True

    firehose.start_delivery_stream_encryption(
        DeliveryStreamName="sse",
        DeliveryStreamEncryptionConfigurationInput={"KeyType": "CUSTOMER_MANAGED_CMK", "KeyARN": KMS_KEY})
    enc = describe(firehose, "sse")["DeliveryStreamEncryptionConfiguration"]
    assert enc == {"Status": "ENABLED", "KeyType": "CUSTOMER_MANAGED_CMK", "KeyARN": KMS_KEY}

    firehose.stop_delivery_stream_encryption(DeliveryStreamName="sse")
    d = describe(firehose, "sse")
    assert d["DeliveryStreamEncryptionConfiguration"] == {"Status": "DISABLED"}
    assert d["VersionId"] == "1"
    assert firehose.put_record(DeliveryStreamName="sse", Record={"Data": b"d"})["Encrypted"] is False
    assert firehose.put_record_batch(DeliveryStreamName="sse", Records=[{"Data": b"e"}])["Encrypted"] is False


def test_encryption_key_rules(firehose):
    create_s3_stream(firehose, "keys")
    with pytest.raises(firehose.exceptions.InvalidArgumentException):
        firehose.start_delivery_stream_encryption(
            DeliveryStreamName="keys", DeliveryStreamEncryptionConfigurationInput={"KeyType": "CUSTOMER_MANAGED_CMK"})
    with pytest.raises(firehose.exceptions.InvalidArgumentException):
        firehose.start_delivery_stream_encryption(
            DeliveryStreamName="keys",
            DeliveryStreamEncryptionConfigurationInput={"KeyType": "AWS_OWNED_CMK", "KeyARN": KMS_KEY})
    with pytest.raises(ClientError) as e:
        firehose.start_delivery_stream_encryption(
            DeliveryStreamName="keys",
            DeliveryStreamEncryptionConfigurationInput={"KeyType": "CUSTOMER_MANAGED_CMK",
                                                        "KeyARN": "arn:aws:kms:us-east-1:123456789012:alias/mine"})
    assert error_of(e)[0] == "ValidationException", "stream encryption takes key ARNs, not aliases"
    assert describe(firehose, "keys")["DeliveryStreamEncryptionConfiguration"] == {"Status": "DISABLED"}
    assert firehose.put_record(DeliveryStreamName="keys", Record={"Data": b"x"})["Encrypted"] is False


def test_create_with_encryption(firehose):
    firehose.create_delivery_stream(
        DeliveryStreamName="born-encrypted", ExtendedS3DestinationConfiguration=s3_destination(),
        DeliveryStreamEncryptionConfigurationInput={"KeyType": "CUSTOMER_MANAGED_CMK", "KeyARN": KMS_KEY})
    enc = describe(firehose, "born-encrypted")["DeliveryStreamEncryptionConfiguration"]
    assert enc == {"Status": "ENABLED", "KeyType": "CUSTOMER_MANAGED_CMK", "KeyARN": KMS_KEY}
    assert firehose.put_record(DeliveryStreamName="born-encrypted", Record={"Data": b"x"})["Encrypted"] is True
    with pytest.raises(firehose.exceptions.InvalidArgumentException):
        firehose.create_delivery_stream(
            DeliveryStreamName="bad-key", ExtendedS3DestinationConfiguration=s3_destination(),
            DeliveryStreamEncryptionConfigurationInput={"KeyType": "CUSTOMER_MANAGED_CMK"})


def test_encryption_calls_are_limited_per_day(firehose):
    create_s3_stream(firehose, "budget")
    for i in range(25):
        if i % 2 == 0:
            firehose.start_delivery_stream_encryption(DeliveryStreamName="budget")
        else:
            firehose.stop_delivery_stream_encryption(DeliveryStreamName="budget")
    with pytest.raises(firehose.exceptions.LimitExceededException):
        firehose.stop_delivery_stream_encryption(DeliveryStreamName="budget")
    # The 25th call (a start) took effect, the refused one did not.
    assert describe(firehose, "budget")["DeliveryStreamEncryptionConfiguration"]["Status"] == "ENABLED"


# --------------------------------------------------------------------------------------------------
# Persistence
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("how", ["clean", "sigkill"])
def test_stream_definitions_survive_restart(tmp_data, how):
    servers = [Server(tmp_data).start()]
    try:
        server = servers[0]
        c = server.client()
        firehose_cfg = copy.deepcopy(DELIVERABLE_EXTENDED_S3)
        c.create_delivery_stream(DeliveryStreamName="kept", ExtendedS3DestinationConfiguration=firehose_cfg,
                                 Tags=[{"Key": "team", "Value": "data"}])
        c.tag_delivery_stream(DeliveryStreamName="kept", Tags=[{"Key": "env", "Value": "prod"}])
        update(c, "kept", "1", ExtendedS3DestinationUpdate={"Prefix": "v2/!{timestamp:yyyy}/"})
        c.start_delivery_stream_encryption(
            DeliveryStreamName="kept",
            DeliveryStreamEncryptionConfigurationInput={"KeyType": "CUSTOMER_MANAGED_CMK", "KeyARN": KMS_KEY})
        member, _, _, redshift, _, _ = UNDELIVERABLE["Redshift"]
        c.create_delivery_stream(DeliveryStreamName="failed", **{member: copy.deepcopy(redshift)})
        create_s3_stream(c, "deleted")
        c.delete_delivery_stream(DeliveryStreamName="deleted")
        c.put_record(DeliveryStreamName="kept", Record={"Data": b"payload"})

        before = {n: describe_raw(server, n) for n in ("kept", "failed")}
        tags_before = c.list_tags_for_delivery_stream(DeliveryStreamName="kept")["Tags"]
        assert before["kept"]["VersionId"] == "2"

        if how == "clean":
            assert server.stop() == 0, server.log()
        else:
            server.kill()
        server = Server(tmp_data).start()
        servers.append(server)
        c = server.client()

        assert c.list_delivery_streams()["DeliveryStreamNames"] == ["failed", "kept"]
        assert server.status()["streams"] == 2
        for name, d in before.items():
            after = describe_raw(server, name)
            # Timestamps are compared to the millisecond here; their exact round trip has its own test.
            for key in ("CreateTimestamp", "LastUpdateTimestamp"):
                assert (key in after) == (key in d), key
                if key in d:
                    assert abs(after.pop(key) - d.pop(key)) < 1e-3, f"{name} {key} changed across a {how} restart"
            assert after == d, f"{name} changed across a {how} restart"
        assert c.list_tags_for_delivery_stream(DeliveryStreamName="kept")["Tags"] == tags_before
        with pytest.raises(c.exceptions.ResourceNotFoundException):
            describe(c, "deleted")
        with pytest.raises(c.exceptions.ConcurrentModificationException):
            update(c, "kept", "1", ExtendedS3DestinationUpdate={"Prefix": "stale/"})
        update(c, "kept", "2", ExtendedS3DestinationUpdate={"Prefix": "v3/!{timestamp:yyyy}/"})
        assert describe(c, "kept")["VersionId"] == "3"
        assert c.put_record(DeliveryStreamName="kept", Record={"Data": b"after restart"})["Encrypted"] is True
        # A name deleted before the restart can be created again.
        create_s3_stream(c, "deleted")
        assert describe(c, "deleted")["DeliveryStreamStatus"] == "ACTIVE"
    finally:
        for s in servers:
            s.kill()


def test_timestamps_are_exactly_the_same_after_restart(tmp_data):
    """CreateTimestamp / LastUpdateTimestamp are stored values: a restart must not change a single bit of them.
    (Many streams, because a lossy float round trip only shows on some values.)"""
    servers = [Server(tmp_data).start()]
    try:
        c = servers[0].client()
        names = [f"ts{i:02d}" for i in range(60)]
        for n in names:
            create_s3_stream(c, n)
            update(c, n, "1", ExtendedS3DestinationUpdate={"Prefix": f"{n}/"})
        before = {}
        for n in names:
            d = describe_raw(servers[0], n)
            before[n] = (d["CreateTimestamp"], d["LastUpdateTimestamp"])
        assert servers[0].stop() == 0
        servers.append(Server(tmp_data).start())
        after = {}
        for n in names:
            d = describe_raw(servers[1], n)
            after[n] = (d["CreateTimestamp"], d["LastUpdateTimestamp"])
        changed = {n: (before[n], after[n]) for n in names if before[n] != after[n]}
        assert not changed, f"{len(changed)} of {len(names)} streams changed timestamps across a restart: " \
                            f"{list(changed.items())[:3]}"
    finally:
        for s in servers:
            s.kill()
