#!/usr/bin/env bash
# Seed 000 walk-through: IoT sensor readings → Firehose → S3 Tables (Iceberg) → the seed's queries.
#
# Start the server first (from the repository root):
#   cargo run --release -- serve --config examples/iot-sensors-s3-tables/spillway.toml
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
STREAM=firehosetos3demo

echo "== 1. create the delivery stream (the seed's Iceberg destination, as JSON)"
aws firehose create-delivery-stream --endpoint-url "$ENDPOINT" \
  --cli-input-json "file://$HERE/firehose-config.json"
aws firehose describe-delivery-stream --endpoint-url "$ENDPOINT" --delivery-stream-name "$STREAM" \
  --query 'DeliveryStreamDescription.[DeliveryStreamStatus,Destinations[0].IcebergDestinationDescription.CatalogConfiguration.CatalogARN]' \
  --output text

echo "== 2. send 2000 sensor readings (the seed's data generator Lambda: 10 sensors, warehouse and office)"
spillway generate --endpoint "$ENDPOINT" --profile iot-sensors --stream "$STREAM" --count 2000 --rate 0 --seed 0

echo "== 3. flush: commit the buffered readings to the table now instead of after 300 s"
spillway streams flush --endpoint "$ENDPOINT" "$STREAM"

echo "== 4. check for errors (should be empty): s3://firehosetos3demo-errors/errors/"
errors=$(find "$DATA/buckets/firehosetos3demo-errors" -type f ! -name '.*' 2> /dev/null | sort || true)
echo "${errors:-(no error records)}"

echo "== 5. the seed's queries, with DuckDB on the Iceberg table"
python3 "$HERE/query.py" --data "$DATA"
