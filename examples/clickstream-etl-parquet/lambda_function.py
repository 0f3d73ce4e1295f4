import json
import base64
import boto3
from datetime import datetime

def lambda_handler(event, context):
    output = []
    
    for record in event['records']:
        try:
            # Decode the data
            compressed_payload = base64.b64decode(record['data'])
            uncompressed_payload = compressed_payload.decode('utf-8')
            
            # Parse JSON data
            data = json.loads(uncompressed_payload)
            
            # Transform the data - add timestamp and enrich
            transformed_data = {
                'timestamp': datetime.utcnow().isoformat(),
                'event_type': data.get('event_type', 'unknown'),
                'user_id': data.get('user_id', 'anonymous'),
                'session_id': data.get('session_id', ''),
                'page_url': data.get('page_url', ''),
                'referrer': data.get('referrer', ''),
                'user_agent': data.get('user_agent', ''),
                'ip_address': data.get('ip_address', ''),
                'processed_by': 'lambda-firehose-transform',
                'processing_timestamp': datetime.utcnow().timestamp()
            }
            
            # Convert back to JSON and encode
            output_record = {
                'recordId': record['recordId'],
                'result': 'Ok',
                'data': base64.b64encode(
                    (json.dumps(transformed_data) + '\n').encode('utf-8')
                ).decode('utf-8')
            }
            
        except Exception as e:
            print(f"Error processing record {record['recordId']}: {str(e)}")
            # Mark as processing failed
            output_record = {
                'recordId': record['recordId'],
                'result': 'ProcessingFailed'
            }
        
        output.append(output_record)
    
    print(f"Successfully processed {len([r for r in output if r['result'] == 'Ok'])} out of {len(output)} records")
    return {'records': output}
