//! The S3 calls of the shared runs store (`--runs-dir s3://bucket/prefix`):
//! a location, and put (plain or only-if-absent), get and list under it.
//!
//! Everything above this (which keys a run writes, when) is `store`'s and the
//! journal's business; this file only knows S3.

use aws_config::{BehaviorVersion, Region};
use aws_sdk_s3::primitives::ByteStream;

use super::{AwsError, ConnectError, ConnectOptions, api};

/// A bucket and a key prefix (no leading or trailing `/`; may be empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Url {
    /// The bucket.
    pub bucket: String,
    /// The prefix of every key, without slashes at either end.
    pub prefix: String,
}

impl S3Url {
    /// `s3://bucket/prefix` (the prefix is optional). `None` when `text` does
    /// not start with `s3://`; an error when it does but names no bucket.
    pub fn parse(text: &str) -> Option<Result<S3Url, String>> {
        let rest = text.strip_prefix("s3://")?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Some(Err(format!(
                "`{text}` names no bucket: expected s3://BUCKET or s3://BUCKET/PREFIX"
            )));
        }
        Some(Ok(S3Url {
            bucket: bucket.to_string(),
            prefix: prefix.trim_matches('/').to_string(),
        }))
    }

    /// The full key of `rel` (a path under the prefix, with `/`).
    pub fn key(&self, rel: &str) -> String {
        if self.prefix.is_empty() {
            rel.to_string()
        } else {
            format!("{}/{rel}", self.prefix)
        }
    }
}

impl std::fmt::Display for S3Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.prefix.is_empty() {
            write!(f, "s3://{}", self.bucket)
        } else {
            write!(f, "s3://{}/{}", self.bucket, self.prefix)
        }
    }
}

/// A runs store in S3: a client and where.
#[derive(Debug, Clone)]
pub struct S3Store {
    client: aws_sdk_s3::Client,
    /// Bucket and prefix.
    pub url: S3Url,
}

/// Why a put did not happen.
#[derive(Debug, thiserror::Error)]
pub enum PutError {
    /// `If-None-Match: *` failed: the key exists (another writer was first).
    #[error("s3://{bucket}/{key} already exists: another runner wrote it first")]
    Exists {
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
    },
    /// Any other failure.
    #[error(transparent)]
    Api(#[from] AwsError),
}

impl S3Store {
    /// A client from the standard chain (as [`super::Aws::connect`]). With an
    /// endpoint override (`--endpoint-url` or `AWS_ENDPOINT_URL`, e.g. a local
    /// emulator) the client addresses buckets by path (`http://host/bucket/key`),
    /// as emulators on 127.0.0.1 have no per-bucket host names.
    pub async fn connect(url: S3Url, opts: &ConnectOptions) -> Result<S3Store, ConnectError> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(u) = &opts.endpoint_url {
            loader = loader.endpoint_url(u);
        }
        if let Some(region) = &opts.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(profile) = &opts.profile {
            loader = loader.profile_name(profile);
        }
        let config = loader.load().await;
        config.region().ok_or(ConnectError::NoRegion)?;
        let overridden = opts.endpoint_url.is_some()
            || std::env::var("AWS_ENDPOINT_URL").is_ok_and(|s| !s.is_empty())
            || std::env::var("AWS_ENDPOINT_URL_S3").is_ok_and(|s| !s.is_empty());
        let s3 = aws_sdk_s3::config::Builder::from(&config)
            .force_path_style(overridden)
            .build();
        Ok(S3Store {
            client: aws_sdk_s3::Client::from_conf(s3),
            url,
        })
    }

    /// A store using `client` as it is.
    pub fn with_client(client: aws_sdk_s3::Client, url: S3Url) -> S3Store {
        S3Store { client, url }
    }

    /// Writes `rel` (under the prefix), replacing what is there.
    pub async fn put(&self, rel: &str, body: Vec<u8>) -> Result<(), AwsError> {
        self.client
            .put_object()
            .bucket(&self.url.bucket)
            .key(self.url.key(rel))
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(api("s3", "PutObject"))?;
        Ok(())
    }

    /// Writes `rel` only if no object has that key (`If-None-Match: *`): of
    /// two writers of one key, exactly one succeeds.
    pub async fn put_new(&self, rel: &str, body: Vec<u8>) -> Result<(), PutError> {
        let key = self.url.key(rel);
        let r = self
            .client
            .put_object()
            .bucket(&self.url.bucket)
            .key(&key)
            .if_none_match("*")
            .body(ByteStream::from(body))
            .send()
            .await;
        match r {
            Ok(_) => Ok(()),
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 412) => Err(PutError::Exists {
                bucket: self.url.bucket.clone(),
                key,
            }),
            Err(e) => Err(AwsError::from_sdk("s3", "PutObject", e).into()),
        }
    }

    /// Reads `rel`; `None` when there is no such object.
    pub async fn get(&self, rel: &str) -> Result<Option<Vec<u8>>, AwsError> {
        let r = self
            .client
            .get_object()
            .bucket(&self.url.bucket)
            .key(self.url.key(rel))
            .send()
            .await;
        let out = match r {
            Ok(o) => o,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => return Ok(None),
            Err(e) => return Err(AwsError::from_sdk("s3", "GetObject", e)),
        };
        let bytes = out.body.collect().await.map_err(|e| AwsError::Api {
            service: "s3".into(),
            operation: "GetObject".into(),
            code: "ReadBody".into(),
            message: e.to_string(),
            kind: super::ErrorKind::Transient,
        })?;
        Ok(Some(bytes.into_bytes().to_vec()))
    }

    /// The keys under `rel` (a folder, `a/b/`), relative to it, sorted.
    pub async fn list(&self, rel: &str) -> Result<Vec<String>, AwsError> {
        let full = self.url.key(rel);
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.url.bucket)
            .prefix(&full)
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            for o in page.map_err(api("s3", "ListObjectsV2"))?.contents() {
                if let Some(k) = o.key().and_then(|k| k.strip_prefix(&full)) {
                    out.push(k.to_string());
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// The sub-folders of `rel` (`a/b/`; empty for the prefix itself), by name, sorted.
    pub async fn folders(&self, rel: &str) -> Result<Vec<String>, AwsError> {
        let full = self.url.key(rel);
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.url.bucket)
            .prefix(&full)
            .delimiter("/")
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            for p in page.map_err(api("s3", "ListObjectsV2"))?.common_prefixes() {
                if let Some(name) = p.prefix().and_then(|k| k.strip_prefix(&full)) {
                    out.push(name.trim_end_matches('/').to_string());
                }
            }
        }
        out.sort();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_s3_url_is_a_bucket_and_a_prefix() {
        assert_eq!(S3Url::parse("runs"), None);
        assert_eq!(
            S3Url::parse("s3://b/team/runs/"),
            Some(Ok(S3Url {
                bucket: "b".into(),
                prefix: "team/runs".into()
            }))
        );
        let bare = S3Url::parse("s3://b").and_then(Result::ok).expect("bucket only");
        assert_eq!(bare.key("x/y"), "x/y");
        assert_eq!(bare.to_string(), "s3://b");
        assert!(matches!(S3Url::parse("s3:///p"), Some(Err(_))));
    }
}
