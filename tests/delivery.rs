//! In-process end-to-end tests of the HTTP API and S3 delivery to the local folder, without the
//! Python suite: a put is answered, delivered on flush, and re-delivered under the same key after a
//! restart if it was not acknowledged.

use spillway_testkit::{TestServer, eventually};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One HTTP/1.1 request; returns (status, body).
fn http(addr: std::net::SocketAddr, method: &str, path: &str, target: Option<&str>, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    let target = target.map(|t| format!("X-Amz-Target: Firehose_20150804.{t}\r\n")).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-amz-json-1.1\r\n{target}\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    let status = out.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path());
            }
        }
    }
    out.sort();
    out
}

const CREATE: &str = r#"{"DeliveryStreamName":"s","ExtendedS3DestinationConfiguration":{
    "RoleARN":"arn:aws:iam::123456789012:role/r","BucketARN":"arn:aws:s3:::b",
    "Prefix":"p/","BufferingHints":{"SizeInMBs":5,"IntervalInSeconds":900}}}"#;

#[test]
fn put_then_flush_writes_the_records_in_order_without_delimiters() {
    let server = TestServer::start();
    let (code, body) = http(server.addr, "POST", "/", Some("CreateDeliveryStream"), CREATE);
    assert_eq!(code, 200, "{body}");
    let put = r#"{"DeliveryStreamName":"s","Records":[{"Data":"YWJj"},{"Data":"ZGVm"}]}"#;
    let (code, body) = http(server.addr, "POST", "/", Some("PutRecordBatch"), put);
    assert_eq!(code, 200, "{body}");
    assert!(body.starts_with(r#"{"FailedPutCount":0"#), "{body}");
    assert!(files(&server.bucket_dir("b")).is_empty(), "interval 900: nothing before the flush");
    let (code, body) = http(server.addr, "POST", "/_spillway/streams/s/flush", None, "");
    assert_eq!(code, 200, "{body}");
    let objects = files(&server.bucket_dir("b"));
    assert_eq!(objects.len(), 1);
    let key = objects[0].strip_prefix(server.bucket_dir("b")).unwrap().to_string_lossy().to_string();
    assert!(key.starts_with("p/") && key.contains("/s-1-"), "{key}");
    assert_eq!(std::fs::read(&objects[0]).unwrap(), b"abcdef");
}

#[test]
fn a_clean_stop_delivers_the_buffer_and_a_restart_adds_nothing() {
    let dir = spillway_testkit::data_dir();
    {
        let server = TestServer::start_in(dir.path());
        assert_eq!(http(server.addr, "POST", "/", Some("CreateDeliveryStream"), CREATE).0, 200);
        let put = r#"{"DeliveryStreamName":"s","Record":{"Data":"eHl6"}}"#;
        assert_eq!(http(server.addr, "POST", "/", Some("PutRecord"), put).0, 200);
        // A clean stop delivers the buffer.
        server.stop();
    }
    let server = TestServer::start_in(dir.path());
    let objects = eventually("the object of the first run", Duration::from_secs(10), || {
        let f = files(&server.bucket_dir("b"));
        (!f.is_empty()).then_some(f)
    });
    assert_eq!(objects.len(), 1);
    assert_eq!(std::fs::read(&objects[0]).unwrap(), b"xyz");
    // Nothing is left to deliver: a flush writes no second object.
    assert_eq!(http(server.addr, "POST", "/_spillway/streams/s/flush", None, "").0, 200);
    assert_eq!(files(&server.bucket_dir("b")).len(), 1);
}
