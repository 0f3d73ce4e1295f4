CREATE EXTERNAL TABLE nyctaxitrips(
    `pickup_latitude` double, 
    `pickup_longitude` double, 
    `dropoff_latitude` double, 
    `dropoff_longitude` double, 
    `trip_id` bigint, 
    `trip_distance` double, 
    `passenger_count` int, 
    `pickup_datetime` timestamp, 
    `dropoff_datetime` timestamp, 
    `total_amount` double)
    PARTITIONED BY ( 
    `year` string, 
    `month` string, 
    `day` string, 
    `hour` string)
    ROW FORMAT SERDE 
    'org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe' 
    STORED AS INPUTFORMAT 
    'org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat' 
    OUTPUTFORMAT 
    'org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat'
    LOCATION
    's3://kinesislab-nyctaxitrips-initials/nyctaxitrips/'
    TBLPROPERTIES ('has_encrypted_data'='false');
