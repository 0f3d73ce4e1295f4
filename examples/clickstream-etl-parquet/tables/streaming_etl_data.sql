-- The Glue table default.streaming_etl_data that the stream's SchemaConfiguration names. The seed does not
-- define it (its "Challenge" suggests a Glue crawler); these are the columns of the records the seed's
-- transform Lambda writes, with the types a crawler gives them. `timestamp` is Python's
-- datetime.utcnow().isoformat() ("2025-07-12T10:11:12.123456": no zone designator), which Firehose's
-- JSON SerDes do not take as a timestamp, so it is a string; processing_timestamp is epoch seconds.
CREATE EXTERNAL TABLE streaming_etl_data (
  `timestamp` string,
  `event_type` string,
  `user_id` string,
  `session_id` string,
  `page_url` string,
  `referrer` string,
  `user_agent` string,
  `ip_address` string,
  `processed_by` string,
  `processing_timestamp` double)
PARTITIONED BY (
  `year` string,
  `month` string,
  `day` string,
  `hour` string)
STORED AS PARQUET
LOCATION 's3://streaming-etl-data-demo01/processed-data/';
