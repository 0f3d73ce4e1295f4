-- Queries on both buckets, with DuckDB (query.py). The seed has no SQL besides its Kinesis Data
-- Analytics application (analytics.sql) and leaves the processed bucket "available for further
-- analysis via tools like Amazon Athena". query.py defines two views:
--   sg12_prefix_001  the JSON records the first stream delivered to sg12-tf-bucket (YYYY/MM/DD/HH/ objects)
--   processed        the CSV rows the second stream delivered to sg12-tf-processed-bucket (speed, rpm, gear, throttle)

-- The first bucket: every record, with the EXTRA2 key the Lambda adds
SELECT COUNT(*) AS records,
       COUNT(*) FILTER (WHERE EXTRA2 = fuel_consumption * lap_time) AS with_extra2,
       COUNT(*) FILTER (WHERE speed >= 200) AS speed_200_or_more
FROM sg12_prefix_001;

-- Records as the seed shows them (a few columns of the nested record)
SELECT speed, rpm, gear, fuel_consumption, lap_time, EXTRA2,
       suspension.ride_height, temperatures.tires.front_left AS front_left_tire_temp
FROM sg12_prefix_001
ORDER BY speed DESC
LIMIT 5;

-- The processed bucket: the CSV rows of the analytics output
SELECT COUNT(*) AS total_rows, MIN(speed) AS min_speed, MAX(speed) AS max_speed, ROUND(AVG(rpm)) AS avg_rpm
FROM processed;

-- Fast records per gear
SELECT gear, COUNT(*) AS fast_records, ROUND(AVG(throttle), 3) AS avg_throttle
FROM processed
GROUP BY gear
ORDER BY gear;
