//! Object key validation, shared by every sink.
//!
//! S3 keys are arbitrary UTF-8 up to 1,024 bytes; spillway accepts the subset that both a filesystem folder
//! tree and `object_store`'s [`Path`](object_store::path::Path) can hold without rewriting it. A key that
//! passes [`check_key`] maps one-to-one onto a relative path made of normal components only, so joining it to a
//! bucket folder can never leave that folder:
//!
//! - not empty, at most [`MAX_KEY_BYTES`] bytes;
//! - no leading `/` (an absolute path) and no empty segment (`a//b`, trailing `/`);
//! - no `.` or `..` segment;
//! - no control characters (NUL included);
//! - for folders only ([`check_local_key`]): every segment at most [`MAX_SEGMENT_BYTES`] bytes and none starting
//!   with [`TEMP_PREFIX`], the reserved prefix of in-flight writes.
//!
//! Rejections are [`ObjectError::InvalidKey`](super::ObjectError::InvalidKey), never retried: the same key fails
//! the same way every time.

/// S3's own limit on key length, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;
/// The longest file or folder name common filesystems (ext4, xfs, btrfs) accept, in bytes.
pub const MAX_SEGMENT_BYTES: usize = 255;
/// Name prefix of the hidden temp files a [`LocalBucket`](super::LocalBucket) writes before renaming.
pub const TEMP_PREFIX: &str = ".spillway-tmp-";

/// Checks the rules every sink shares; returns the reason of the first rule broken.
pub fn check_key(key: &str) -> Result<(), &'static str> {
    if key.is_empty() {
        return Err("key is empty");
    }
    if key.len() > MAX_KEY_BYTES {
        return Err("key is longer than 1024 bytes");
    }
    if key.starts_with('/') {
        return Err("key starts with '/'");
    }
    if key.chars().any(char::is_control) {
        return Err("key contains a control character");
    }
    for segment in key.split('/') {
        match segment {
            "" => return Err("key has an empty segment"),
            "." | ".." => return Err("key has a '.' or '..' segment"),
            _ => {}
        }
    }
    Ok(())
}

/// Checks that a bucket name can be one folder name: 1 to 255 characters among `A-Z a-z 0-9 . - _` (S3's names
/// and the legacy ones, which allowed upper case and `_`), neither `.` nor `..`, and not the temp-file prefix.
pub fn check_bucket_name(bucket: &str) -> Result<(), &'static str> {
    if bucket.is_empty() || bucket.len() > MAX_SEGMENT_BYTES {
        return Err("bucket name must be 1 to 255 characters");
    }
    if !bucket.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_')) {
        return Err("bucket name may only contain letters, digits, '.', '-' and '_'");
    }
    if bucket == "." || bucket == ".." || bucket.starts_with(TEMP_PREFIX) {
        return Err("bucket name is reserved");
    }
    Ok(())
}

/// Checks [`check_key`] plus the rules of a folder tree.
pub fn check_local_key(key: &str) -> Result<(), &'static str> {
    check_key(key)?;
    for segment in key.split('/') {
        if segment.len() > MAX_SEGMENT_BYTES {
            return Err("key has a segment longer than 255 bytes");
        }
        if segment.starts_with(TEMP_PREFIX) {
            return Err("key has a segment starting with the reserved prefix '.spillway-tmp-'");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_firehose_keys() {
        for key in [
            "2024/05/06/07/stream-1-2024-05-06-07-08-09-0a1b2c3d-aaaa-bbbb-cccc-ddddeeeeffff.gz",
            "prefix/year=2024/month=05/file.parquet",
            "a",
            "a/b/c",
            ".hidden",
            "...",
            "a/.b",
            "ünïcödé/键",
            "with space/and+plus=eq%20",
        ] {
            assert_eq!(check_local_key(key), Ok(()), "{key}");
        }
    }

    #[test]
    fn rejects_unsafe_keys() {
        let long_segment = "x".repeat(256);
        let long_key = ["a"; 600].join("/");
        let cases: &[(&str, &str)] = &[
            ("", "key is empty"),
            ("/abs", "key starts with '/'"),
            ("a//b", "key has an empty segment"),
            ("a/", "key has an empty segment"),
            (".", "key has a '.' or '..' segment"),
            ("..", "key has a '.' or '..' segment"),
            ("a/../b", "key has a '.' or '..' segment"),
            ("a/./b", "key has a '.' or '..' segment"),
            ("../escape", "key has a '.' or '..' segment"),
            ("nul\0byte", "key contains a control character"),
            ("new\nline", "key contains a control character"),
            ("del\u{7f}", "key contains a control character"),
            ("c1\u{85}", "key contains a control character"),
            (&long_segment, "key has a segment longer than 255 bytes"),
            (&long_key, "key is longer than 1024 bytes"),
            ("a/.spillway-tmp-x", "key has a segment starting with the reserved prefix '.spillway-tmp-'"),
        ];
        for (key, reason) in cases {
            assert_eq!(check_local_key(key), Err(*reason), "{key:?}");
        }
    }

    #[test]
    fn bucket_names() {
        for ok in ["my-bucket", "logs.example.com", "Legacy_Bucket", "abc"] {
            assert_eq!(check_bucket_name(ok), Ok(()), "{ok}");
        }
        for bad in ["", ".", "..", "a/b", "a\\b", "sp ace", "nul\0", ".spillway-tmp-x", &"b".repeat(256)] {
            assert!(check_bucket_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn shared_rules_ignore_folder_limits() {
        assert_eq!(check_key(&"x".repeat(300)), Ok(()));
        assert_eq!(check_key(".spillway-tmp-x"), Ok(()));
    }

    #[test]
    fn accepted_keys_are_object_store_paths() {
        for key in ["a", "a/b.gz", "ünï/c", "sp ace/+=%"] {
            let path = object_store::path::Path::parse(key).expect("valid path");
            assert_eq!(path.as_ref(), key);
        }
    }
}
