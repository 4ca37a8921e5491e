//! The bucket: the lake's data path as an object store (object_store
//! crate), not to be confused with [`crate::store`], our own tables. The
//! storage readiness check, bucket existence and creation at start-up, and listing.
//!
//! DuckDB itself reads and writes Parquet through httpfs; this client is the
//! service's own view of the same bucket (or local directory).

use std::{sync::Arc, time::Duration};

use futures_util::StreamExt;
use object_store::{
    aws::{AmazonS3, AmazonS3Builder},
    local::LocalFileSystem,
    path::Path,
    signer::Signer,
    ClientOptions, ObjectStore, RetryConfig,
};
use serde::Serialize;

use crate::config::{exposed, Config};

#[derive(Debug, thiserror::Error)]
pub enum BucketError {
    /// The store cannot be reached or refuses us.
    #[error("{0}")]
    Unavailable(String),
    /// The bucket is missing and we may not create it.
    #[error("{0}")]
    MissingBucket(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    InvalidPath(String),
    #[error("{0}")]
    Failed(String),
}

impl crate::retry::GaveUp for BucketError {
    fn gave_up(self, attempts: u32) -> Self {
        match self {
            Self::Unavailable(m) => {
                Self::Unavailable(format!("{m} (gave up after {attempts} attempt(s))"))
            }
            other => other,
        }
    }
}

/// What start-up found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BucketState {
    Exists,
    Created,
    /// A local directory: nothing to check.
    Local,
}

struct BucketRequests {
    s3: AmazonS3,
    name: String,
    http: reqwest::Client,
}

pub struct Bucket {
    store: Arc<dyn ObjectStore>,
    bucket: Option<BucketRequests>,
    /// Where the lake's files start inside the store.
    prefix: Path,
}

#[derive(Debug, Clone, Serialize)]
pub struct Listing {
    /// Sub-folders, relative to the lake's data path, ending in `/`.
    pub prefixes: Vec<String>,
    pub objects: Vec<ObjectEntry>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ObjectEntry {
    /// Relative to the lake's data path.
    pub path: String,
    pub size: u64,
    pub last_modified: String,
}

impl Bucket {
    pub fn from_config(config: &Config) -> Result<Self, BucketError> {
        let storage = &config.storage;
        let Some(endpoint) = &storage.minio_endpoint else {
            let root = config.data_dir.join("lake");
            std::fs::create_dir_all(&root).map_err(|e| {
                BucketError::Failed(format!("cannot create {}: {e}", root.display()))
            })?;
            let store = LocalFileSystem::new_with_prefix(&root)
                .map_err(|e| BucketError::Failed(e.to_string()))?;
            return Ok(Self {
                store: Arc::new(store),
                bucket: None,
                prefix: Path::default(),
            });
        };
        let url = if endpoint.contains("://") {
            endpoint.clone()
        } else {
            let scheme = if storage.minio_secure {
                "https"
            } else {
                "http"
            };
            format!("{scheme}://{endpoint}")
        };
        let timeout = Duration::from_secs_f64(config.ducklake.connection_timeout);
        let ca = match &storage.minio_ca_file {
            Some(path) => Some(std::fs::read(path).map_err(|e| {
                BucketError::Failed(format!("cannot read storage.minio_ca_file {path}: {e}"))
            })?),
            None => None,
        };
        let mut options = ClientOptions::new()
            .with_allow_http(!storage.minio_secure)
            .with_connect_timeout(timeout.min(Duration::from_secs(5)))
            .with_timeout(timeout);
        let mut http = reqwest::Client::builder()
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .timeout(timeout);
        if let Some(pem) = &ca {
            let invalid = |e: String| {
                BucketError::Failed(format!(
                    "storage.minio_ca_file holds no usable PEM certificate: {e}"
                ))
            };
            for cert in object_store::Certificate::from_pem_bundle(pem)
                .map_err(|e| invalid(e.to_string()))?
            {
                options = options.with_root_certificate(cert);
            }
            for cert in
                reqwest::Certificate::from_pem_bundle(pem).map_err(|e| invalid(e.to_string()))?
            {
                http = http.add_root_certificate(cert);
            }
        }
        let mut builder = AmazonS3Builder::new()
            .with_endpoint(&url)
            .with_virtual_hosted_style_request(false)
            .with_bucket_name(&storage.default_bucket)
            .with_region(&storage.region)
            .with_access_key_id(exposed(&storage.minio_access_key))
            .with_secret_access_key(exposed(&storage.minio_secret_key))
            .with_client_options(options)
            .with_retry(RetryConfig {
                max_retries: 2,
                retry_timeout: timeout,
                ..RetryConfig::default()
            });
        if config.features.enable_s3_encryption {
            if let Some(key) = &storage.kms_key_id {
                builder = builder.with_sse_kms_encryption(key);
            }
        }
        let s3 = builder
            .build()
            .map_err(|e| BucketError::Failed(format!("configuring the S3 client: {e}")))?;
        let http = http
            .build()
            .map_err(|e| BucketError::Failed(format!("building an HTTP client: {e}")))?;
        Ok(Self {
            store: Arc::new(s3.clone()),
            bucket: Some(BucketRequests {
                s3,
                name: storage.default_bucket.clone(),
                http,
            }),
            prefix: Path::from(storage.prefix.trim_matches('/')),
        })
    }

    pub fn kind(&self) -> &'static str {
        if self.bucket.is_some() {
            "s3"
        } else {
            "local"
        }
    }

    /// Checks that the bucket exists, creating it when `create` is set.
    pub async fn ensure_bucket(&self, create: bool) -> Result<BucketState, BucketError> {
        let Some(bucket) = &self.bucket else {
            return Ok(BucketState::Local);
        };
        // HeadBucket / CreateBucket are bucket-level calls that the object
        // API does not offer; they go out as requests presigned by the same
        // client (so the credentials never leave it).
        let status = bucket.request(reqwest::Method::HEAD).await?;
        match status.as_u16() {
            200 => Ok(BucketState::Exists),
            404 if create => {
                let status = bucket.request(reqwest::Method::PUT).await?;
                // 409: another replica created it a moment ago.
                if status.is_success() || status.as_u16() == 409 {
                    tracing::info!(bucket = %bucket.name, "created the bucket");
                    Ok(BucketState::Created)
                } else {
                    Err(BucketError::Unavailable(format!(
                        "creating bucket {} failed with HTTP {status}",
                        bucket.name
                    )))
                }
            }
            404 => Err(BucketError::MissingBucket(format!(
                "bucket {} does not exist; create it or set STORAGE_CREATE_BUCKET=true",
                bucket.name
            ))),
            401 | 403 => Err(BucketError::Unavailable(format!(
                "the object store refused access to bucket {} (HTTP {status}): check \
                 STORAGE_MINIO_ACCESS_KEY and STORAGE_MINIO_SECRET_KEY",
                bucket.name
            ))),
            _ => Err(BucketError::Unavailable(format!(
                "checking bucket {} failed with HTTP {status}",
                bucket.name
            ))),
        }
    }

    /// Waits until the bucket answers (and exists, or was created).
    pub async fn wait_until_reachable(
        &self,
        attempts: u32,
        create: bool,
    ) -> Result<BucketState, BucketError> {
        crate::retry::retry_startup("object storage", attempts, || self.ensure_bucket(create)).await
    }

    /// A cheap round trip: list at most one object under the data path.
    pub async fn ping(&self) -> Result<(), BucketError> {
        let mut listing = self.store.list(Some(&self.prefix));
        match listing.next().await {
            None | Some(Ok(_)) => Ok(()),
            Some(Err(object_store::Error::NotFound { .. })) if self.bucket.is_none() => Ok(()),
            Some(Err(e)) if refused(&e) => Err(BucketError::Unavailable(format!(
                "the object store refused access to the data path: check \
                 STORAGE_MINIO_ACCESS_KEY and STORAGE_MINIO_SECRET_KEY ({})",
                describe(&e)
            ))),
            Some(Err(e)) => Err(BucketError::Unavailable(format!(
                "the object store did not answer: {}",
                describe(&e)
            ))),
        }
    }

    /// Every object under the data path: how many, and their bytes.
    pub async fn usage(&self) -> Result<(u64, u64), BucketError> {
        let mut listing = self.store.list(Some(&self.prefix));
        let (mut files, mut bytes) = (0u64, 0u64);
        while let Some(entry) = listing.next().await {
            match entry {
                Ok(meta) => {
                    files += 1;
                    bytes += meta.size;
                }
                Err(object_store::Error::NotFound { .. }) => break,
                Err(e) => return Err(BucketError::Unavailable(describe(&e))),
            }
        }
        Ok((files, bytes))
    }

    /// One level of the data path: sub-folders and files under `relative`.
    pub async fn list(&self, relative: &str) -> Result<Listing, BucketError> {
        let relative = relative.trim_matches('/');
        if relative.split('/').any(|part| part == "..") {
            return Err(BucketError::InvalidPath(
                "a path may not contain '..'".into(),
            ));
        }
        let location = self
            .prefix
            .parts()
            .chain(Path::from(relative).parts())
            .collect::<Path>();
        let listing = self
            .store
            .list_with_delimiter(Some(&location))
            .await
            .map_err(|e| match e {
                object_store::Error::NotFound { .. } => {
                    BucketError::NotFound(format!("no such folder: {relative}"))
                }
                e => BucketError::Unavailable(describe(&e)),
            })?;
        let strip = |path: &Path| -> String {
            let parts: Vec<_> = path.parts().skip(self.prefix.parts().count()).collect();
            parts
                .iter()
                .map(|p| p.as_ref())
                .collect::<Vec<&str>>()
                .join("/")
        };
        Ok(Listing {
            prefixes: listing
                .common_prefixes
                .iter()
                .map(|p| format!("{}/", strip(p)))
                .collect(),
            objects: listing
                .objects
                .iter()
                .map(|o| ObjectEntry {
                    path: strip(&o.location),
                    size: o.size,
                    last_modified: o.last_modified.to_rfc3339(),
                })
                .collect(),
        })
    }
}

/// A place for the service's own files beside the lake's data path, never
/// under it (DuckLake's clean-up of orphaned files would delete them).
#[derive(Clone)]
pub struct SideStore {
    pub store: Arc<dyn ObjectStore>,
    /// Where the files start inside `store`.
    pub prefix: Path,
    /// For messages: `s3://bucket/lake-jobs/` or the local directory.
    pub display: String,
}

impl Bucket {
    /// `s3://bucket/<prefix>-<name>/` beside `s3://bucket/<prefix>/`, or
    /// `data_dir/<name>/` beside the local data path `data_dir/lake/`.
    pub fn beside_data_path(&self, config: &Config, name: &str) -> Result<SideStore, BucketError> {
        match &self.bucket {
            Some(bucket) => {
                let prefix = match self.prefix.as_ref() {
                    "" => name.to_string(),
                    lake => format!("{lake}-{name}"),
                };
                Ok(SideStore {
                    store: Arc::clone(&self.store),
                    display: format!("s3://{}/{prefix}/", bucket.name),
                    prefix: Path::from(prefix),
                })
            }
            None => {
                let root = config.data_dir.join(name);
                std::fs::create_dir_all(&root).map_err(|e| {
                    BucketError::Failed(format!("cannot create {}: {e}", root.display()))
                })?;
                let store = LocalFileSystem::new_with_prefix(&root)
                    .map_err(|e| BucketError::Failed(e.to_string()))?;
                Ok(SideStore {
                    store: Arc::new(store),
                    prefix: Path::default(),
                    display: root.display().to_string(),
                })
            }
        }
    }
}

/// object_store's error as a [`BucketError`] without request URLs.
pub fn storage_error(e: object_store::Error) -> BucketError {
    match e {
        object_store::Error::NotFound { .. } => BucketError::NotFound(describe(&e)),
        e => BucketError::Unavailable(describe(&e)),
    }
}

impl BucketRequests {
    /// Sends a presigned bucket-level request and returns its status.
    async fn request(&self, method: reqwest::Method) -> Result<reqwest::StatusCode, BucketError> {
        let method_name = method.as_str().to_string();
        let url = self
            .s3
            .signed_url(method.clone(), &Path::default(), Duration::from_secs(60))
            .await
            .map_err(|e| BucketError::Failed(format!("signing a bucket request: {e}")))?;
        let mut request = self.http.request(method.clone(), url.as_str());
        if method == reqwest::Method::PUT {
            request = request
                .header(reqwest::header::CONTENT_LENGTH, "0")
                .body(Vec::<u8>::new());
        }
        let response = request.send().await.map_err(|e| {
            // reqwest's own message holds the presigned URL: keep it out,
            // and say what its causes say (a refused connection, a
            // certificate nobody vouches for).
            let what = if e.is_timeout() {
                "timed out"
            } else if e.is_connect() {
                "connection failed"
            } else {
                "request failed"
            };
            BucketError::Unavailable(with_causes(
                format!(
                    "the object store is unreachable ({method_name} bucket {}): {what}",
                    self.name
                ),
                std::error::Error::source(&e),
                |cause| !cause.contains("X-Amz-"),
            ))
        })?;
        Ok(response.status())
    }
}

/// Whether the store answered 401 or 403. object_store says so in its
/// error kind for object requests, but a listing's refusal comes back as a
/// generic error whose status only its message carries.
fn refused(e: &object_store::Error) -> bool {
    matches!(
        e,
        object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. }
    ) || {
        let message = describe(e);
        message.contains("status code: 403") || message.contains("status code: 401")
    }
}

/// object_store's message without request URLs.
fn describe(e: &object_store::Error) -> String {
    let message = with_causes(e.to_string(), std::error::Error::source(e), |_| true);
    match message.find("http") {
        Some(i) if message[i..].contains("X-Amz-") => message[..i].trim_end().to_string(),
        _ => message,
    }
}

/// `message` followed by each cause in `source`'s chain that it does not
/// already say and that `keep` keeps.
fn with_causes(
    mut message: String,
    mut source: Option<&(dyn std::error::Error + 'static)>,
    keep: impl Fn(&str) -> bool,
) -> String {
    while let Some(cause) = source {
        let text = cause.to_string();
        if keep(&text) && !message.contains(&text) {
            message.push_str(&format!(": {text}"));
        }
        source = cause.source();
    }
    message
}
