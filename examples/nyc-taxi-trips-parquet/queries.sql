-- Seed 004's Athena queries, run by DuckDB (query.py) on the Parquet files the stream writes.
-- query.py makes "kinesislab"."nyctaxitrips" a view of read_parquet() over
-- nyctaxitrips/year=/month=/day=/hour=/*.parquet with hive_partitioning: DuckDB finds the partitions
-- in the object keys by itself, which is what the seed's `MSCK REPAIR TABLE nyctaxitrips;` does for
-- Athena, so that statement has no DuckDB counterpart and is left out.

-- The seed's query, as written for Athena
SELECT * FROM "kinesislab"."nyctaxitrips" limit 10;

-- Trips per partition
SELECT year, month, day, hour,
       COUNT(*) AS trips,
       ROUND(SUM(total_amount), 2) AS total_amount,
       MIN(pickup_datetime) AS first_pickup,
       MAX(dropoff_datetime) AS last_dropoff
FROM "kinesislab"."nyctaxitrips"
GROUP BY ALL
ORDER BY ALL;

-- Trips the seed's Kinesis-side Lambda would have filtered out as spurious (not in this pipeline: see README)
SELECT COUNT(*) AS spurious_trips,
       COUNT(*) FILTER (WHERE pickup_latitude = 0 OR pickup_longitude = 0) AS zero_coordinates,
       COUNT(*) FILTER (WHERE trip_distance <= 0) AS no_distance,
       COUNT(*) FILTER (WHERE passenger_count < 1) AS no_passengers,
       COUNT(*) FILTER (WHERE dropoff_datetime < pickup_datetime) AS dropoff_before_pickup,
       COUNT(*) FILTER (WHERE total_amount <= 0) AS negative_amount
FROM "kinesislab"."nyctaxitrips"
WHERE pickup_latitude = 0 OR pickup_longitude = 0 OR trip_distance <= 0 OR passenger_count < 1
   OR dropoff_datetime < pickup_datetime OR total_amount <= 0;
