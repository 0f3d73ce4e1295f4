#!/usr/bin/env bash
# Seed 004 walk-through: NYC taxi trips → Firehose with record format conversion (the seed's Hive DDL)
# → Parquet in S3 (a local folder), partitioned by arrival hour → the seed's query with DuckDB.
#
# Start the server first (from the repository root):
#   cargo run --release -- serve --config examples/nyc-taxi-trips-parquet/spillway.toml
# then run this script from the same folder (the data dir is ./spillway-data there).
#
#   SPILLWAY_ENDPOINT  the server (default http://127.0.0.1:4573)
#   SPILLWAY           the spillway command (default: `spillway` on PATH, else `cargo run --release --`)
#   SPILLWAY_DATA      the server's data dir (default ./spillway-data)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ENDPOINT="${SPILLWAY_ENDPOINT:-http://127.0.0.1:4573}"
DATA="${SPILLWAY_DATA:-./spillway-data}"
if [ -n "${SPILLWAY:-}" ]; then
  read -r -a SPILLWAY_CMD <<< "$SPILLWAY"
elif command -v spillway > /dev/null; then
  SPILLWAY_CMD=(spillway)
else
  SPILLWAY_CMD=(cargo run --quiet --release --)
fi
spillway() { command "${SPILLWAY_CMD[@]}" "$@"; }
# spillway accepts any credentials when its config has no [auth]; the AWS CLI needs some to sign with.
export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-local}" AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-local}"
export AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}" AWS_PAGER=""
STREAM=nyc-taxi-trips

echo "== create the delivery stream nyc-taxi-trips (the seed's console settings, as JSON)"
aws firehose create-delivery-stream --endpoint-url "$ENDPOINT" \
  --cli-input-json "file://$HERE/firehose-config.json"
aws firehose describe-delivery-stream --endpoint-url "$ENDPOINT" --delivery-stream-name "$STREAM" \
  --query 'DeliveryStreamDescription.[DeliveryStreamStatus,Destinations[0].ExtendedS3DestinationDescription.DataFormatConversionConfiguration.SchemaConfiguration.[DatabaseName,TableName]]' \
  --output text

echo "== produce the stream data: 2000 taxi trips, PutRecordBatch straight into the delivery stream"
spillway generate --endpoint "$ENDPOINT" --profile taxi-trips --stream "$STREAM" --count 2000 --rate 0 --seed 4

echo "== flush: convert and deliver now instead of after 180 s"
spillway streams flush --endpoint "$ENDPOINT" "$STREAM"

echo "== the S3 bucket (aws s3 ls --recursive s3://kinesislab-nyctaxitrips-initials)"
(cd "$DATA/buckets/kinesislab-nyctaxitrips-initials" && find . -type f ! -name '.*' | sed 's|^\./||' | sort)

echo "== query with DuckDB"
python3 "$HERE/query.py" --data "$DATA"
