# Firehose transformation in the style of seed 002 ("Serverless data processing flow with Kinesis
# Data Firehose and Terraform"): the function behind `handler = "hello.lambda_handler"` adds a
# demo key "EXTRA2" = fuel_consumption * lap_time to every telemetry record and sends it on.
import base64
import json


def lambda_handler(event, context):
    output = []

    for record in event['records']:
        payload = json.loads(base64.b64decode(record['data']).decode('utf-8'))

        payload['EXTRA2'] = payload['fuel_consumption'] * payload['lap_time']

        output.append({
            'recordId': record['recordId'],
            'result': 'Ok',
            'data': base64.b64encode((json.dumps(payload) + '\n').encode('utf-8')).decode('utf-8'),
        })

    print('Processed {} records.'.format(len(event['records'])))
    return {'records': output}
