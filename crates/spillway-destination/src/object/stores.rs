//! [`ObjectStores`]: resolves a Firehose `BucketARN` to the sink that stores that bucket's objects.
//!
//! Resolution order for `arn:aws:s3:::NAME`: the per-bucket S3 config of `NAME`, then the global S3 config,
//! else the embedded [`LocalBucket`] `<data-dir>/buckets/NAME/`. Sinks are built on first use and cached for
//! the life of the process, one per (bucket, KMS key) for S3 (SSE is a client setting, see [`super::s3`]) and
//! one per bucket for folders (which ignore SSE). Building a sink makes no network request; opening a folder
//! walks it once for crash leftovers. Configuration errors surface as [`ObjectError::Config`] on first use.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use super::{LocalBucket, ObjectError, ObjectStoreSink, S3Bucket, S3Config};

type CacheKey = (String, Option<String>);

/// Every bucket's sink, built on demand.
pub struct ObjectStores {
    local_root: PathBuf,
    global: Option<S3Config>,
    per_bucket: HashMap<String, S3Config>,
    cache: Mutex<HashMap<CacheKey, Arc<dyn ObjectStoreSink>>>,
}

impl ObjectStores {
    /// `local_root` is `<data-dir>/buckets`; `per_bucket` is keyed by bucket name (not ARN).
    pub fn new(local_root: PathBuf, global: Option<S3Config>, per_bucket: HashMap<String, S3Config>) -> Self {
        ObjectStores { local_root, global, per_bucket, cache: Mutex::new(HashMap::new()) }
    }

    /// The bucket name of an S3 bucket ARN `arn:<partition>:s3:::NAME` (any `aws*` partition).
    pub fn bucket_name(bucket_arn: &str) -> Option<&str> {
        let rest = bucket_arn.strip_prefix("arn:")?;
        let (partition, rest) = rest.split_once(':')?;
        if !partition.starts_with("aws") {
            return None;
        }
        let name = rest.strip_prefix("s3:::")?;
        if name.is_empty() || name.contains(['/', ':']) { None } else { Some(name) }
    }

    /// The sink of `bucket_arn`, writing with SSE-KMS key `sse_kms_key_id` when the bucket is on S3.
    pub fn sink(
        &self,
        bucket_arn: &str,
        sse_kms_key_id: Option<&str>,
    ) -> Result<Arc<dyn ObjectStoreSink>, ObjectError> {
        let bucket = Self::bucket_name(bucket_arn).ok_or_else(|| ObjectError::InvalidBucket {
            bucket: bucket_arn.to_owned(),
            reason: "not an S3 bucket ARN (arn:aws:s3:::NAME)",
        })?;
        let s3 = self.per_bucket.get(bucket).or(self.global.as_ref());
        let key: CacheKey = (bucket.to_owned(), s3.and(sse_kms_key_id).map(str::to_owned));
        if let Some(sink) = self.lock().get(&key) {
            return Ok(Arc::clone(sink));
        }
        // Built outside the lock: opening a folder walks it. Two first uses racing build twice and keep one,
        // which is safe (a LocalBucket's leftover scan never removes this process's temp files).
        let built: Arc<dyn ObjectStoreSink> = match s3 {
            Some(cfg) => Arc::new(S3Bucket::new(cfg, bucket, sse_kms_key_id)?),
            None => Arc::new(LocalBucket::new(self.local_root.clone(), bucket)?),
        };
        tracing::debug!(bucket, sink = %built.describe(), "object store sink ready");
        Ok(Arc::clone(self.lock().entry(key).or_insert(built)))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<CacheKey, Arc<dyn ObjectStoreSink>>> {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for ObjectStores {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut cached: Vec<String> = self.lock().values().map(|sink| sink.describe()).collect();
        cached.sort();
        f.debug_struct("ObjectStores")
            .field("local_root", &self.local_root)
            .field("global", &self.global)
            .field("per_bucket", &self.per_bucket)
            .field("cached", &cached)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object::PutOptions;

    #[test]
    fn bucket_names_from_arns() {
        assert_eq!(ObjectStores::bucket_name("arn:aws:s3:::my-bucket"), Some("my-bucket"));
        assert_eq!(ObjectStores::bucket_name("arn:aws-cn:s3:::b.c"), Some("b.c"));
        assert_eq!(ObjectStores::bucket_name("arn:aws-us-gov:s3:::x"), Some("x"));
        for bad in [
            "",
            "my-bucket",
            "arn:aws:s3:::",
            "arn:aws:s3:::b/key",
            "arn:aws:s3:us-east-1:123:b",
            "arn:aws:iam:::b",
            "arn:other:s3:::b",
            "arn:aws:s3::::b",
        ] {
            assert_eq!(ObjectStores::bucket_name(bad), None, "{bad}");
        }
    }

    fn s3(endpoint: &str) -> S3Config {
        S3Config {
            endpoint: Some(endpoint.into()),
            access_key_id: Some("AKID".into()),
            secret_access_key: Some("secret".into()),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn resolves_per_bucket_then_global_then_local_and_caches() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().join("buckets");
        let per_bucket = HashMap::from([("remote".to_owned(), s3("http://127.0.0.1:9"))]);

        let stores = ObjectStores::new(root.clone(), None, per_bucket.clone());
        let remote = stores.sink("arn:aws:s3:::remote", None).expect("remote");
        assert_eq!(remote.describe(), "s3 bucket remote at http://127.0.0.1:9");
        let local = stores.sink("arn:aws:s3:::local", Some("arn:aws:kms:us-east-1:1:key/k")).expect("local");
        assert_eq!(local.describe(), format!("local folder {}", root.join("local").display()));
        local.put("k", bytes::Bytes::from_static(b"v"), &PutOptions::default()).await.expect("put");
        assert_eq!(std::fs::read(root.join("local/k")).expect("read"), b"v");

        // Cached: the same Arc, for folders whatever the KMS key.
        let again = stores.sink("arn:aws:s3:::local", None).expect("local again");
        assert!(Arc::ptr_eq(&local, &again));
        assert!(Arc::ptr_eq(&remote, &stores.sink("arn:aws:s3:::remote", None).expect("remote again")));
        // One S3 client per KMS key.
        let kms = stores.sink("arn:aws:s3:::remote", Some("key-1")).expect("remote kms");
        assert!(!Arc::ptr_eq(&remote, &kms));
        assert_eq!(kms.describe(), "s3 bucket remote at http://127.0.0.1:9 with sse-kms key key-1");

        let with_global = ObjectStores::new(root, Some(s3("http://127.0.0.1:10")), per_bucket);
        assert_eq!(
            with_global.sink("arn:aws:s3:::other", None).expect("global").describe(),
            "s3 bucket other at http://127.0.0.1:10"
        );
        assert_eq!(
            with_global.sink("arn:aws:s3:::remote", None).expect("per bucket").describe(),
            "s3 bucket remote at http://127.0.0.1:9"
        );
    }

    #[test]
    fn bad_arns_and_configs_are_errors() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let half_keys = S3Config { access_key_id: Some("AKID".into()), ..Default::default() };
        let stores = ObjectStores::new(tmp.path().to_path_buf(), None, HashMap::from([("half".to_owned(), half_keys)]));
        let err = stores.sink("not-an-arn", None).err().expect("bad arn");
        assert!(matches!(err, ObjectError::InvalidBucket { .. }), "{err}");
        let err = stores.sink("arn:aws:s3:::half", None).err().expect("bad config");
        assert!(matches!(err, ObjectError::Config { .. }), "{err}");
        assert!(!err.is_retryable());
    }
}
