#!/usr/bin/env bash
# Seed 001 walk-through: clickstream events → Firehose → the seed's Lambda transform → Parquet in S3
# (a local folder) → DuckDB.
#
# Start the server first (from the repository root):
#   cargo run --release -- serve --config examples/clickstream-etl-parquet/spillway.toml
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
# Record data below is raw text: AWS CLI v1 base64-encodes blobs itself, v2 does with this option.
RAW=()
if ! aws --version 2>&1 | grep -q '^aws-cli/1\.'; then RAW=(--cli-binary-format raw-in-base64-out); fi
FIREHOSE_STREAM_NAME=streaming-etl-demo01

echo "== 7. create the delivery stream (the seed's firehose-config.json)"
aws firehose create-delivery-stream --endpoint-url "$ENDPOINT" \
  --cli-input-json "file://$HERE/firehose-config.json"

echo "== 8. wait for the stream to be active"
for _ in $(seq 100); do
  STATUS=$(aws firehose describe-delivery-stream --endpoint-url "$ENDPOINT" \
    --delivery-stream-name "$FIREHOSE_STREAM_NAME" \
    --query 'DeliveryStreamDescription.DeliveryStreamStatus' --output text)
  [ "$STATUS" = ACTIVE ] && break
  sleep 0.1
done
echo "Stream status: $STATUS"
[ "$STATUS" = ACTIVE ]

echo "== 9. send the seed's test data, one put-record per event"
while IFS= read -r record; do
  aws firehose put-record --endpoint-url "$ENDPOINT" "${RAW[@]}" \
    --delivery-stream-name "$FIREHOSE_STREAM_NAME" \
    --record "$(jq -nc --arg data "$record" '{Data: ($data + "\n")}')"
  echo "Record sent: $record"
done < <(jq -c '.[]' "$HERE/test-data.json")

echo "== 9b. and 2000 more clickstream events like them"
spillway generate --endpoint "$ENDPOINT" --profile clickstream --stream "$FIREHOSE_STREAM_NAME" \
  --count 2000 --rate 0 --seed 1

echo "== test error handling: a record that is not JSON (the seed's \"invalid-json-data\")"
aws firehose put-record --endpoint-url "$ENDPOINT" "${RAW[@]}" \
  --delivery-stream-name "$FIREHOSE_STREAM_NAME" --record '{"Data":"invalid-json-data"}'

echo "== flush: transform, convert and deliver now instead of after 300 s"
spillway streams flush --endpoint "$ENDPOINT" "$FIREHOSE_STREAM_NAME"

echo "== the objects in the bucket (aws s3 ls s3://streaming-etl-data-demo01/ --recursive)"
(cd "$DATA/buckets/streaming-etl-data-demo01" && find processed-data error-data -type f | sort)

echo "== queries, with DuckDB on the Parquet files"
python3 "$HERE/query.py" --data "$DATA"
