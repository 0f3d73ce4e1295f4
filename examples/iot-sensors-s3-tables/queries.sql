-- Seed 000's Athena queries, run by DuckDB (query.py) on the Iceberg table itself: query.py makes
-- firehosetos3demo.firehosetos3demo a view of iceberg_scan() over the table's current metadata
-- file, so the queries keep the seed's names. Only Athena's from_unixtime() became DuckDB's
-- to_timestamp().

-- View All Sensor Data
SELECT * FROM firehosetos3demo.firehosetos3demo LIMIT 100;

-- Average Temperature by Location
SELECT 
    location, 
    AVG(temperature) as avg_temp,
    COUNT(*) as reading_count
FROM firehosetos3demo.firehosetos3demo
GROUP BY location
ORDER BY avg_temp DESC;

-- Recent High Temperature Alerts
SELECT 
    sensor_id, 
    temperature, 
    humidity,
    timestamp,
    to_timestamp(timestamp) as reading_time
FROM firehosetos3demo.firehosetos3demo
WHERE temperature > 25
ORDER BY timestamp DESC
LIMIT 50;

-- Sensor Activity Summary
SELECT 
    sensor_id,
    location,
    COUNT(*) as total_readings,
    AVG(temperature) as avg_temp,
    AVG(humidity) as avg_humidity,
    MIN(timestamp) as first_reading,
    MAX(timestamp) as last_reading
FROM firehosetos3demo.firehosetos3demo
GROUP BY sensor_id, location
ORDER BY sensor_id;
