//! `--backend postgres,s3`: the registries under test on the scale-out
//! stores instead of their embedded defaults. Berth gets a PostgreSQL
//! database of its own on `BERTH_TEST_POSTGRES_URL`'s server and a prefix
//! of its own in `BERTH_TEST_S3`'s bucket (both as `make test` starts them:
//! PostgreSQL on :55432, Garage on :3900); Distribution 2.8 uses its S3
//! driver on the same bucket under another prefix. A second Berth host on
//! the same stores measures how the registry scales across hosts.

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use std::path::{Path, PathBuf};

/// `BERTH_TEST_S3`: `http://<key id>:<secret>@<host>:<port>/<bucket>`.
#[derive(Clone, Debug)]
pub struct S3 {
    pub endpoint: String,
    pub key: String,
    pub secret: String,
    pub bucket: String,
}

impl S3 {
    fn parse(url: &str) -> Result<S3> {
        let bad =
            || format!("BERTH_TEST_S3={url}: http://<key id>:<secret>@<host>:<port>/<bucket>");
        let (scheme, rest) = url.split_once("://").with_context(bad)?;
        let (creds, rest) = rest.rsplit_once('@').with_context(bad)?;
        let (key, secret) = creds.split_once(':').with_context(bad)?;
        let (host, bucket) = rest.split_once('/').with_context(bad)?;
        Ok(S3 {
            endpoint: format!("{scheme}://{host}"),
            key: key.into(),
            secret: secret.into(),
            bucket: bucket.trim_end_matches('/').into(),
        })
    }

    /// A client of the bucket.
    pub fn store(&self) -> Result<AmazonS3> {
        Ok(AmazonS3Builder::new()
            .with_endpoint(&self.endpoint)
            .with_allow_http(true)
            .with_region("garage")
            .with_bucket_name(&self.bucket)
            .with_access_key_id(&self.key)
            .with_secret_access_key(&self.secret)
            .build()?)
    }
}

/// The stores of one run.
#[derive(Clone, Debug, Default)]
pub struct Backends {
    /// The PostgreSQL server (its `postgres` database's URL).
    pub postgres: Option<String>,
    pub s3: Option<S3>,
    /// This run's own: database name and bucket prefixes carry it.
    pub run: String,
}

impl Backends {
    /// From `--backend` (`postgres`, `s3`, or both).
    pub fn from_args(names: &[String]) -> Result<Backends> {
        let mut b = Backends {
            run: format!("{}", std::process::id()),
            ..Default::default()
        };
        for n in names {
            match n.as_str() {
                "embedded" => {}
                "postgres" => {
                    b.postgres = Some(std::env::var("BERTH_TEST_POSTGRES_URL").context(
                        "--backend postgres needs BERTH_TEST_POSTGRES_URL (make test's server: scripts/postgres-test)",
                    )?)
                }
                "s3" => {
                    b.s3 = Some(S3::parse(&std::env::var("BERTH_TEST_S3").context(
                        "--backend s3 needs BERTH_TEST_S3 (make test's Garage: scripts/garage-test)",
                    )?)?)
                }
                other => bail!("--backend {other}: embedded, postgres or s3"),
            }
        }
        Ok(b)
    }

    pub fn scaled(&self) -> bool {
        self.postgres.is_some() || self.s3.is_some()
    }

    /// What the figures were measured on.
    pub fn describe(&self) -> String {
        match (&self.postgres, &self.s3) {
            (None, None) => "embedded (SQLite + filesystem; Distribution: filesystem)".into(),
            (Some(_), None) => "PostgreSQL + filesystem (Distribution: filesystem)".into(),
            (None, Some(_)) => "SQLite + S3 (Garage; Distribution: its S3 driver)".into(),
            (Some(_), Some(_)) => "PostgreSQL + S3 (Garage; Distribution: its S3 driver)".into(),
        }
    }

    /// Berth's runtime config in `dir` (a fresh database and prefix), if
    /// any store is not embedded.
    pub async fn berth_runtime_config(&self, dir: &Path) -> Result<Option<PathBuf>> {
        if !self.scaled() {
            return Ok(None);
        }
        let mut text = String::new();
        if let Some(url) = &self.postgres {
            let db = fresh_database(url, &format!("berth_bench_{}", self.run)).await?;
            text += &format!("[metadata_store.default]\ntype = \"postgres\"\nurl = \"{db}\"\n");
        }
        if let Some(s3) = &self.s3 {
            text += &format!(
                "[blob_store.default]\ntype = \"s3\"\nendpoint = \"{}\"\nregion = \"garage\"\nbucket = \"{}\"\naccess_key_id = \"{}\"\nsecret_access_key = \"{}\"\nprefix = \"bench-berth-{}/\"\n",
                s3.endpoint, s3.bucket, s3.key, s3.secret, self.run
            );
        }
        text += &format!(
            "[credentials]\nkeys_dir = \"{}\"\n",
            dir.join("keys").display()
        );
        let path = dir.join("runtime-config.toml");
        std::fs::write(&path, text)?;
        Ok(Some(path))
    }

    /// The Spin build's stores (`--spin`): a runtime config for its host
    /// (the administrator's bootstrap, keys given) and the Spin variables
    /// of its adapters, on a database and prefix of its own so its
    /// catalog and blobs are its alone.
    pub async fn spin_stores(&self, dir: &Path) -> Result<(PathBuf, Vec<(String, String)>)> {
        let (Some(url), Some(s3)) = (&self.postgres, &self.s3) else {
            bail!("--spin needs --backend postgres,s3 (the Spin build's stores)");
        };
        use sha2::Digest;
        let db_url = fresh_database(url, &format!("berth_bench_{}_spin", self.run)).await?;
        let base = url.rsplit_once('/').map_or(url.as_str(), |(b, _)| b);
        let key = |label: &str| hex::encode(sha2::Sha256::digest(format!("{label}{}", self.run)));
        let (token, seal) = (key("token"), key("seal"));
        let config = dir.join("spin-runtime-config.toml");
        std::fs::write(
            &config,
            format!(
                "[metadata_store.default]\ntype = \"postgres\"\nurl = \"{db_url}\"\n[credentials]\ntoken_signing_key = \"{token}\"\nsealing_key = \"{seal}\"\n"
            ),
        )?;
        let pg_host = base
            .rsplit_once('@')
            .map_or(base, |(_, h)| h)
            .trim_start_matches("postgres://");
        let variables = [
            ("metadata_postgres_url", db_url.as_str()),
            ("metadata_postgres_host", pg_host),
            ("s3_endpoint", &s3.endpoint),
            ("s3_region", "garage"),
            ("s3_bucket", &s3.bucket),
            ("s3_prefix", &format!("bench-spin-{}/", self.run)),
            ("s3_access_key_id", &s3.key),
            ("s3_secret_access_key", &s3.secret),
            ("token_signing_key", &token),
            ("sealing_key", &seal),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        Ok((config, variables))
    }

    /// Distribution's `storage:` section for its S3 driver, if on S3.
    pub fn distribution_storage(&self) -> Option<String> {
        let s3 = self.s3.as_ref()?;
        // Blob GETs are served by the registry, as Berth's are: no
        // redirects to the bucket.
        Some(format!(
            "storage: {{s3: {{accesskey: {}, secretkey: {}, region: garage, regionendpoint: \"{}\", bucket: {}, rootdirectory: /bench-dist-{}, secure: false, v4auth: true}}, delete: {{enabled: true}}, redirect: {{disable: true}}}}",
            s3.key, s3.secret, s3.endpoint, s3.bucket, self.run
        ))
    }

    /// Removes what this run stored (its database and prefixes).
    pub async fn clean(&self) {
        if let Some(s3) = &self.s3
            && let Ok(store) = s3.store()
        {
            for prefix in [
                format!("bench-berth-{}", self.run),
                format!("bench-dist-{}", self.run),
                format!("bench-spin-{}", self.run),
            ] {
                let p = ObjectPath::from(prefix);
                let locations = store
                    .list(Some(&p))
                    .filter_map(|m| async move { m.ok().map(|m| Ok(m.location)) })
                    .boxed();
                let mut deleted = store.delete_stream(locations);
                while deleted.next().await.is_some() {}
            }
        }
        if let Some(url) = &self.postgres
            && let Ok((client, conn)) = tokio_postgres::connect(url, tokio_postgres::NoTls).await
        {
            tokio::spawn(conn);
            for db in [
                format!("berth_bench_{}", self.run),
                format!("berth_bench_{}_spin", self.run),
            ] {
                let _ = client
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
                    .await;
            }
        }
    }
}

/// The url of database `name` on the server of `url`, made empty.
async fn fresh_database(url: &str, name: &str) -> Result<String> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .context("connecting to BERTH_TEST_POSTGRES_URL")?;
    tokio::spawn(conn);
    // One statement each: DROP DATABASE refuses a transaction.
    client
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await?;
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await?;
    let base = url.rsplit_once('/').map_or(url, |(b, _)| b);
    Ok(format!("{base}/{name}"))
}

/// Distribution's metadata-scale seeding on S3: the template tag's and
/// repository's objects (pushed over HTTP, so the layout is Distribution's
/// own) copied inside the bucket, as `workloads::seed_distribution` copies
/// files.
pub async fn seed_distribution_s3(
    s3: &S3,
    run: &str,
    tags: std::ops::Range<usize>,
    repos: std::ops::Range<usize>,
) -> Result<()> {
    let store = std::sync::Arc::new(s3.store()?);
    let root = format!("bench-dist-{run}/docker/registry/v2/repositories/scale");
    let mut copies = Vec::new();
    let template = format!(
        "{root}/tags/_manifests/tags/t{:06}",
        tags.start.saturating_sub(1)
    );
    for rel in under(&store, &template).await? {
        for i in tags.clone() {
            copies.push((
                format!("{template}/{rel}"),
                format!("{root}/tags/_manifests/tags/t{i:06}/{rel}"),
            ));
        }
    }
    let template = format!("{root}/repo{:05}", repos.start.saturating_sub(1));
    for rel in under(&store, &template).await? {
        for i in repos.clone() {
            copies.push((
                format!("{template}/{rel}"),
                format!("{root}/repo{i:05}/{rel}"),
            ));
        }
    }
    futures::stream::iter(copies)
        .map(|(from, to)| {
            let store = store.clone();
            async move {
                store
                    .copy(&ObjectPath::from(from), &ObjectPath::from(to))
                    .await
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
    Ok(())
}

/// The keys under `prefix`, relative to it.
async fn under(store: &AmazonS3, prefix: &str) -> Result<Vec<String>> {
    let p = ObjectPath::from(prefix);
    let mut out = Vec::new();
    let mut listed = store.list(Some(&p));
    while let Some(m) = listed.next().await {
        let key = m?.location.to_string();
        out.push(key[prefix.len() + 1..].to_string());
    }
    if out.is_empty() {
        bail!("nothing under {prefix} to seed from");
    }
    Ok(out)
}
