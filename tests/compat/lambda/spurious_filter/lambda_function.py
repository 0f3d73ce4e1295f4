# Firehose transformation in the style of seed 004 ("Lambda + Kinesis Data Firehose", NYC taxi
# trips): filters out the spurious data in the incoming events and passes the clean trips on with
# exactly the columns of the `nyctaxitrips` Glue table, one JSON object per line.
#
# Spurious trip → Dropped; a record that is not a JSON object → ProcessingFailed; clean → Ok.
import base64
import json
import logging
from datetime import datetime

logger = logging.getLogger()
logger.setLevel(logging.INFO)

COLUMNS = [
    'pickup_latitude', 'pickup_longitude', 'dropoff_latitude', 'dropoff_longitude', 'trip_id',
    'trip_distance', 'passenger_count', 'pickup_datetime', 'dropoff_datetime', 'total_amount',
]

# Rough bounding box of New York City.
MIN_LAT, MAX_LAT = 40.4, 41.0
MIN_LON, MAX_LON = -74.3, -73.6


def in_nyc(lat, lon):
    return MIN_LAT <= lat <= MAX_LAT and MIN_LON <= lon <= MAX_LON


def is_spurious(trip):
    try:
        if trip.get('type', 'trip') != 'trip':
            return True
        if any(trip.get(column) is None for column in COLUMNS):
            return True
        if trip['trip_distance'] <= 0 or trip['total_amount'] <= 0 or trip['passenger_count'] < 1:
            return True
        if not in_nyc(trip['pickup_latitude'], trip['pickup_longitude']):
            return True
        if not in_nyc(trip['dropoff_latitude'], trip['dropoff_longitude']):
            return True
        pickup = datetime.fromisoformat(trip['pickup_datetime'].replace('Z', '+00:00'))
        dropoff = datetime.fromisoformat(trip['dropoff_datetime'].replace('Z', '+00:00'))
        return dropoff < pickup
    except (TypeError, ValueError, AttributeError):
        return True


def lambda_handler(event, context):
    output = []
    dropped = 0

    for record in event['records']:
        try:
            trip = json.loads(base64.b64decode(record['data']))
            if not isinstance(trip, dict):
                raise ValueError('not a JSON object')
        except ValueError as e:
            logger.info('record %s is not a trip: %s', record['recordId'], e)
            output.append({'recordId': record['recordId'], 'result': 'ProcessingFailed', 'data': record['data']})
            continue

        if is_spurious(trip):
            dropped += 1
            output.append({'recordId': record['recordId'], 'result': 'Dropped', 'data': record['data']})
            continue

        clean = {column: trip[column] for column in COLUMNS}
        data = base64.b64encode((json.dumps(clean) + '\n').encode('utf-8')).decode('utf-8')
        output.append({'recordId': record['recordId'], 'result': 'Ok', 'data': data})

    logger.info('dropped %d spurious records out of %d', dropped, len(event['records']))
    return {'records': output}
