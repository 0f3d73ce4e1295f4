#!/usr/bin/env bash
# Seed 002 walk-through: car telemetry → Firehose → the seed's Lambda (adds EXTRA2) → sg12-tf-bucket;
# the analytics SQL (speed >= 200) → CSV → a second Firehose → sg12-tf-processed-bucket → DuckDB.
#
# Start the server first (from the repository root):
#   cargo run --release -- serve --config examples/car-telemetry-lambda/spillway.toml
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
STREAM=sg12-kinesis-firehose-extended-s3-stream
AFTER_ANALYTICS=sg12-kinesis-firehose-after-analytics

echo "== create the two delivery streams (the seed's Terraform, as CreateDeliveryStream JSON)"
aws firehose create-delivery-stream --endpoint-url "$ENDPOINT" \
  --cli-input-json "file://$HERE/firehose-config.json"
aws firehose create-delivery-stream --endpoint-url "$ENDPOINT" \
  --cli-input-json "file://$HERE/firehose-after-analytics-config.json"
spillway streams list --endpoint "$ENDPOINT"

echo "== send 2000 telemetry records (what the seed's producer script puts through API Gateway)"
spillway generate --endpoint "$ENDPOINT" --profile telemetry --stream "$STREAM" --count 2000 --rate 0 --seed 2

echo "== flush: run the Lambda and deliver to sg12-tf-bucket now instead of after 60 s"
spillway streams flush --endpoint "$ENDPOINT" "$STREAM"

echo "== the analytics SQL (speed >= 200) over the delivered records, its CSV rows into the second stream"
python3 "$HERE/query.py" --data "$DATA" --analytics | spillway send --endpoint "$ENDPOINT" --stream "$AFTER_ANALYTICS"
spillway streams flush --endpoint "$ENDPOINT" "$AFTER_ANALYTICS"

echo "== a record in sg12-tf-bucket (note the EXTRA2 key)"
first=$(find "$DATA/buckets/sg12-tf-bucket" -type f ! -name '.*' | sort | sed -n 1p)
head -n 1 "$first"

echo "== the first rows in sg12-tf-processed-bucket (CSV: speed, rpm, gear, throttle)"
first=$(find "$DATA/buckets/sg12-tf-processed-bucket" -type f ! -name '.*' | sort | sed -n 1p)
head -n 3 "$first"

echo "== queries, with DuckDB on both buckets"
python3 "$HERE/query.py" --data "$DATA"
