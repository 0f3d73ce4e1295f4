-- Queries on the Parquet files the stream writes, with DuckDB (query.py). The seed has no SQL of its
-- own (it stops at "query with Athena"); these are what its Athena table is for. query.py defines
-- two views:
--   streaming_etl_data  the table default.streaming_etl_data: processed-data/year=/month=/day=/hour=/*.parquet,
--                       with the partition columns read from the object keys (as MSCK REPAIR TABLE would add them)
--   error_records       the error output under error-data/: Firehose's JSON error records, one per line

-- Events by type
SELECT event_type, COUNT(*) AS events, COUNT(DISTINCT user_id) AS users, COUNT(DISTINCT session_id) AS sessions
FROM streaming_etl_data
GROUP BY event_type
ORDER BY events DESC;

-- Top pages
SELECT page_url, COUNT(*) AS views
FROM streaming_etl_data
GROUP BY page_url
ORDER BY views DESC, page_url
LIMIT 5;

-- Rows per partition, and what the transform Lambda added
SELECT year, month, day, hour,
       COUNT(*) AS total_rows,
       COUNT(DISTINCT processed_by) AS processors,
       ANY_VALUE(processed_by) AS processed_by,
       MIN(CAST("timestamp" AS TIMESTAMP)) AS first_processed,
       MAX(to_timestamp(processing_timestamp)) AS last_processed
FROM streaming_etl_data
GROUP BY ALL
ORDER BY ALL;

-- The seed's three test records
SELECT event_type, user_id, session_id, page_url, referrer, user_agent, ip_address, processed_by
FROM streaming_etl_data
JOIN (VALUES ('user123', 'session456'), ('user456', 'session789'), ('user789', 'session101'))
    AS test_data(user_id, session_id) USING (user_id, session_id)
ORDER BY user_id;

-- Records the transform Lambda marked ProcessingFailed (the seed's error-handling test)
SELECT errorCode, errorMessage, decode(from_base64(rawData)) AS raw_data
FROM error_records
ORDER BY raw_data;
