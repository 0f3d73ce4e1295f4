//! `spillway streams list|describe|flush`: the delivery streams of a running server.

use crate::client::{self, ApiError, FirehoseClient};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

#[derive(Args)]
pub struct EndpointArg {
    /// The spillway server.
    #[arg(long, env = "SPILLWAY_ENDPOINT", default_value = client::DEFAULT_ENDPOINT)]
    pub endpoint: String,
}

#[derive(Subcommand)]
pub enum StreamsCommand {
    /// A table of every delivery stream: name, status, destination, creation time.
    List {
        #[command(flatten)]
        endpoint: EndpointArg,
    },
    /// A stream's DeliveryStreamDescription, as JSON.
    Describe {
        /// The delivery stream.
        name: String,
        #[command(flatten)]
        endpoint: EndpointArg,
    },
    /// Deliver everything a stream buffers now, whatever its buffering hints say.
    Flush {
        /// The delivery stream.
        name: String,
        #[command(flatten)]
        endpoint: EndpointArg,
    },
}

pub fn run(command: StreamsCommand) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        match command {
            StreamsCommand::List { endpoint } => list(&FirehoseClient::new(&endpoint.endpoint)?).await,
            StreamsCommand::Describe { name, endpoint } => {
                let description = describe(&FirehoseClient::new(&endpoint.endpoint)?, &name).await?;
                println!("{}", serde_json::to_string_pretty(&description)?);
                Ok(())
            }
            StreamsCommand::Flush { name, endpoint } => {
                let answer = FirehoseClient::new(&endpoint.endpoint)?.flush(&name).await?;
                println!("{}", flush_summary(&name, &answer));
                Ok(())
            }
        }
    })
}

async fn describe(client: &FirehoseClient, name: &str) -> anyhow::Result<Value> {
    let answer = client.call("DescribeDeliveryStream", &json!({"DeliveryStreamName": name})).await?;
    Ok(answer["DeliveryStreamDescription"].clone())
}

async fn list(client: &FirehoseClient) -> anyhow::Result<()> {
    let mut names = Vec::new();
    loop {
        let mut request = json!({"Limit": 10000});
        if let Some(last) = names.last() {
            request["ExclusiveStartDeliveryStreamName"] = json!(last);
        }
        let answer = client.call("ListDeliveryStreams", &request).await?;
        let page: Vec<String> = answer["DeliveryStreamNames"]
            .as_array()
            .map(|a| a.iter().filter_map(|n| n.as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        let more = answer["HasMoreDeliveryStreams"].as_bool().unwrap_or(false);
        let empty = page.is_empty();
        names.extend(page);
        if !more || empty {
            break;
        }
    }
    let mut rows = vec![["NAME".to_string(), "STATUS".into(), "DESTINATION".into(), "CREATED".into()]];
    for name in names {
        let d = match describe(client, &name).await {
            Ok(d) => d,
            // Deleted between the list and the describe.
            Err(e) if e.downcast_ref::<ApiError>().is_some_and(|a| a.error_type == "ResourceNotFoundException") => {
                continue;
            }
            Err(e) => return Err(e),
        };
        rows.push([
            name,
            d["DeliveryStreamStatus"].as_str().unwrap_or("-").to_string(),
            destination(&d),
            created(&d["CreateTimestamp"]),
        ]);
    }
    print!("{}", table(&rows));
    Ok(())
}

/// Where a stream delivers, in a few words: the bucket ARN of an S3 destination, the catalog
/// (and warehouse) of an Iceberg one, the URL of an HTTP endpoint, otherwise its kind.
fn destination(d: &Value) -> String {
    let Some(dest) = d["Destinations"].get(0).and_then(Value::as_object) else {
        return "-".into();
    };
    let str_at = |v: &Value, path: &[&str]| {
        path.iter().try_fold(v, |v, k| v.get(*k)).and_then(Value::as_str).map(str::to_string)
    };
    for key in ["ExtendedS3DestinationDescription", "S3DestinationDescription"] {
        if let Some(bucket) = dest.get(key).and_then(|v| str_at(v, &["BucketARN"])) {
            return bucket;
        }
    }
    if let Some(iceberg) = dest.get("IcebergDestinationDescription") {
        let catalog = str_at(iceberg, &["CatalogConfiguration", "CatalogARN"]).unwrap_or_else(|| "iceberg".into());
        return match str_at(iceberg, &["CatalogConfiguration", "WarehouseLocation"]) {
            Some(warehouse) => format!("{catalog} ({warehouse})"),
            None => catalog,
        };
    }
    if let Some(url) =
        dest.get("HttpEndpointDestinationDescription").and_then(|v| str_at(v, &["EndpointConfiguration", "Url"]))
    {
        return url;
    }
    dest.keys()
        .find(|k| k.ends_with("DestinationDescription"))
        .map(|k| k.trim_end_matches("DestinationDescription").to_string())
        .unwrap_or_else(|| "-".into())
}

/// `CreateTimestamp` (epoch seconds) as UTC RFC 3339.
fn created(ts: &Value) -> String {
    ts.as_f64()
        .and_then(|secs| chrono::DateTime::from_timestamp(secs.floor() as i64, 0))
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| "-".into())
}

/// Left-aligned columns, two spaces apart.
fn table(rows: &[[String; 4]]) -> String {
    let mut widths = [0usize; 4];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}  "));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// One line about a flush answer (`{"Objects": [...], "Records": n}`).
fn flush_summary(name: &str, answer: &Value) -> String {
    let objects: Vec<&str> =
        answer["Objects"].as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
    let records = answer["Records"].as_u64().unwrap_or(0);
    let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    let mut line =
        format!("flushed {name}: {} in {}", plural(records as usize, "record"), plural(objects.len(), "object"));
    if !objects.is_empty() {
        line.push_str(": ");
        line.push_str(&objects.join(", "));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destination_of_each_kind() {
        let s3 = json!({"Destinations": [{"DestinationId": "d", "ExtendedS3DestinationDescription": {"BucketARN": "arn:aws:s3:::b"},
            "S3DestinationDescription": {"BucketARN": "arn:aws:s3:::b"}}]});
        assert_eq!(destination(&s3), "arn:aws:s3:::b");
        let iceberg = json!({"Destinations": [{"IcebergDestinationDescription": {"CatalogConfiguration":
            {"CatalogARN": "arn:aws:glue:us-east-1:1:catalog", "WarehouseLocation": "s3://w/"}}}]});
        assert_eq!(destination(&iceberg), "arn:aws:glue:us-east-1:1:catalog (s3://w/)");
        let splunk = json!({"Destinations": [{"DestinationId": "d", "SplunkDestinationDescription": {}}]});
        assert_eq!(destination(&splunk), "Splunk");
        assert_eq!(destination(&json!({})), "-");
    }

    #[test]
    fn table_and_times() {
        let rows = vec![
            ["NAME".to_string(), "STATUS".into(), "DESTINATION".into(), "CREATED".into()],
            ["a-long-name".to_string(), "ACTIVE".into(), "x".into(), created(&json!(1_700_000_000.5))],
        ];
        assert_eq!(
            table(&rows),
            "NAME         STATUS  DESTINATION  CREATED\na-long-name  ACTIVE  x            2023-11-14T22:13:20Z\n"
        );
        assert_eq!(created(&json!(null)), "-");
    }

    #[test]
    fn flush_lines() {
        let answer = json!({"Objects": ["k1", "k2"], "Records": 7});
        assert_eq!(flush_summary("s", &answer), "flushed s: 7 records in 2 objects: k1, k2");
        assert_eq!(flush_summary("s", &json!({"Objects": [], "Records": 0})), "flushed s: 0 records in 0 objects");
        assert_eq!(flush_summary("s", &json!({"Objects": ["k"], "Records": 1})), "flushed s: 1 record in 1 object: k");
    }
}
