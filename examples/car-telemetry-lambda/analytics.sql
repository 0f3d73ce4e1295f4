-- The Kinesis Data Analytics application's SQL (the seed's "SQL pump" into DESTINATION_SQL_STREAM),
-- run by DuckDB in one batch: the in-application input stream "sg12_prefix_001" is a view of the
-- records the first stream delivered to sg12-tf-bucket (query.py). The result rows go to the second
-- delivery stream as CSV, as the application's output (record_format_type = "CSV") does.
SELECT "speed", "rpm", "gear", "throttle"
FROM "sg12_prefix_001"
WHERE "speed" >= 200;
