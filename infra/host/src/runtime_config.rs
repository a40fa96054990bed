//! `--runtime-config-file`: which backend serves each capability, in the
//! shape of Spin's `runtime-config.toml` (a table per store, labelled,
//! with a `type`; Berth has one store of each kind, `default`):
//!
//! ```toml
//! [metadata_store.default]
//! type = "postgres"                  # or "sqlite" (the default)
//! url = "postgres://berth:secret@db.internal:5432/berth"
//! pool_size = 16                     # connections, default 16
//!
//! [blob_store.default]
//! type = "fs"                        # blobs/, uploads/, tmp/ under path
//! path = "/shared/berth"
//!
//! # or an S3-compatible bucket (object_store's S3 client):
//! [blob_store.default]
//! type = "s3"
//! endpoint = "http://garage.internal:3900"   # none: AWS
//! region = "garage"
//! bucket = "berth"
//! access_key_id = "GK..."
//! secret_access_key = "..."
//! prefix = "registry/"               # optional: keys under it
//! redirect_seconds = 1200            # optional: blob GETs answer 307 to
//!                                    # presigned URLs valid this long
//!
//! [credentials]
//! keys_dir = "/shared/berth-keys"    # token.key and seal.key
//! # or the keys themselves, 32 bytes as 64 hex digits each (what the Spin
//! # build's variables token_signing_key and sealing_key hold):
//! token_signing_key = "9f0c…"
//! sealing_key = "41d2…"
//! ```
//!
//! Without the file, or without a table, the embedded defaults serve:
//! SQLite in `<data-dir>/metadata.db`, blobs and uploads under
//! `<data-dir>`, keys in `<data-dir>/keys`. Hosts that serve one registry
//! share the metadata store, the blob store and the keys (so that a token
//! or a sealed secret made on one host is good on all). Paths in the file
//! are relative to the file. The file holds credentials: keep it readable
//! by Berth only.

use crate::capabilities::blobs::{BlobsConfig, s3::S3Config};
use crate::capabilities::credentials::KeySource;
use crate::capabilities::metadata::MetadataConfig;
use anyhow::{Context, Result, bail};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuntimeConfig {
    #[serde(default)]
    metadata_store: BTreeMap<String, MetadataStore>,
    #[serde(default)]
    blob_store: BTreeMap<String, BlobStore>,
    #[serde(default)]
    credentials: Option<CredentialsConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum BlobStore {
    Fs {
        path: PathBuf,
    },
    S3 {
        endpoint: Option<String>,
        region: String,
        bucket: String,
        access_key_id: String,
        secret_access_key: String,
        #[serde(default)]
        prefix: String,
        redirect_seconds: Option<u64>,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CredentialsConfig {
    keys_dir: Option<PathBuf>,
    token_signing_key: Option<String>,
    sealing_key: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum MetadataStore {
    Sqlite {
        path: Option<PathBuf>,
    },
    Postgres {
        url: String,
        #[serde(default = "default_pool")]
        pool_size: usize,
    },
}

fn default_pool() -> usize {
    16
}

/// The backends a host uses.
#[derive(Debug, Clone)]
pub struct Stores {
    pub metadata: MetadataConfig,
    pub blobs: BlobsConfig,
    /// Where the token signing and sealing keys come from.
    pub keys: KeySource,
}

impl Stores {
    /// A short description for the log, without credentials.
    pub fn describe(&self) -> String {
        let metadata = match &self.metadata {
            MetadataConfig::Sqlite { path } => format!("metadata: sqlite {}", path.display()),
            MetadataConfig::Postgres { url, .. } => {
                // Hosts, ports and database only: never the password,
                // wherever the url puts it.
                match url.parse::<tokio_postgres::Config>() {
                    Ok(c) => {
                        let hosts: Vec<String> = c
                            .get_hosts()
                            .iter()
                            .zip(c.get_ports().iter().chain(std::iter::repeat(&5432)))
                            .map(|(h, p)| match h {
                                tokio_postgres::config::Host::Tcp(h) => format!("{h}:{p}"),
                                tokio_postgres::config::Host::Unix(d) => d.display().to_string(),
                            })
                            .collect();
                        format!(
                            "metadata: postgres {}/{}",
                            hosts.join(","),
                            c.get_dbname().unwrap_or_default()
                        )
                    }
                    Err(_) => "metadata: postgres (unparsable url)".to_string(),
                }
            }
        };
        let blobs = match &self.blobs {
            BlobsConfig::Fs { root, .. } => format!("fs {}", root.display()),
            BlobsConfig::S3(c) => format!(
                "s3 {}/{}/{}",
                c.endpoint.as_deref().unwrap_or("aws"),
                c.bucket,
                c.prefix
            ),
        };
        let keys = match &self.keys {
            KeySource::Dir(dir) => dir.display().to_string(),
            KeySource::Given { .. } => "given in the runtime config".into(),
        };
        format!("{metadata}; blobs: {blobs}; keys: {keys}")
    }
}

/// The stores `file` names (if given), with the embedded defaults under
/// `data_dir` for the rest.
pub fn load(file: Option<&Path>, data_dir: &Path) -> Result<Stores> {
    let (config, base) = match file {
        Some(f) => {
            let text = std::fs::read_to_string(f)
                .with_context(|| format!("reading the runtime config {}", f.display()))?;
            let config: RuntimeConfig = toml::from_str(&text)
                .with_context(|| format!("parsing the runtime config {}", f.display()))?;
            (
                config,
                f.parent().map(Path::to_path_buf).unwrap_or_default(),
            )
        }
        None => (RuntimeConfig::default(), PathBuf::new()),
    };
    if let Some(label) = config.metadata_store.keys().find(|l| *l != "default") {
        bail!("[metadata_store.{label}]: Berth has one metadata store, `default`");
    }
    if let Some(label) = config.blob_store.keys().find(|l| *l != "default") {
        bail!("[blob_store.{label}]: Berth has one blob store, `default`");
    }
    let blobs = match config.blob_store.get("default") {
        None => BlobsConfig::Fs {
            root: data_dir.to_path_buf(),
            shared: false,
        },
        Some(BlobStore::Fs { path }) => BlobsConfig::Fs {
            root: base.join(path),
            shared: base.join(path) != data_dir,
        },
        Some(BlobStore::S3 {
            endpoint,
            region,
            bucket,
            access_key_id,
            secret_access_key,
            prefix,
            redirect_seconds,
        }) => {
            if let Some(e) = endpoint
                && !e.starts_with("http://")
                && !e.starts_with("https://")
            {
                bail!("[blob_store.default] endpoint: http(s)://host:port");
            }
            if !prefix.is_empty() && !prefix.ends_with('/') || prefix.starts_with('/') {
                bail!("[blob_store.default] prefix: empty, or a path ending in / (\"registry/\")");
            }
            if redirect_seconds.is_some_and(|s| !(1..=7 * 24 * 3600).contains(&s)) {
                bail!("[blob_store.default] redirect_seconds: 1 to 604800 (S3's limit)");
            }
            BlobsConfig::S3(S3Config {
                endpoint: endpoint.clone(),
                region: region.clone(),
                bucket: bucket.clone(),
                access_key_id: access_key_id.clone(),
                secret_access_key: secret_access_key.clone(),
                prefix: prefix.clone(),
                redirect: redirect_seconds.map(std::time::Duration::from_secs),
            })
        }
    };
    let keys = match &config.credentials {
        None => KeySource::Dir(data_dir.join("keys")),
        Some(CredentialsConfig {
            keys_dir: Some(dir),
            token_signing_key: None,
            sealing_key: None,
        }) => KeySource::Dir(base.join(dir)),
        Some(CredentialsConfig {
            keys_dir: None,
            token_signing_key: Some(token),
            sealing_key: Some(seal),
        }) => KeySource::Given {
            token: berth_credentials::key_from_hex(token)
                .context("[credentials] token_signing_key")?,
            seal: berth_credentials::key_from_hex(seal).context("[credentials] sealing_key")?,
        },
        Some(_) => {
            bail!("[credentials]: either keys_dir, or both token_signing_key and sealing_key")
        }
    };
    let metadata = match config.metadata_store.get("default") {
        None | Some(MetadataStore::Sqlite { path: None }) => MetadataConfig::Sqlite {
            path: data_dir.join("metadata.db"),
        },
        Some(MetadataStore::Sqlite { path: Some(p) }) => {
            MetadataConfig::Sqlite { path: base.join(p) }
        }
        Some(MetadataStore::Postgres { url, pool_size }) => {
            if !url.starts_with("postgres://") && !url.starts_with("postgresql://") {
                bail!("[metadata_store.default] url: postgres://user:password@host:port/database");
            }
            MetadataConfig::Postgres {
                url: url.clone(),
                pool_size: *pool_size,
            }
        }
    };
    Ok(Stores {
        metadata,
        blobs,
        keys,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Stores> {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("runtime-config.toml");
        std::fs::write(&f, text).unwrap();
        load(Some(&f), Path::new("/data"))
    }

    #[test]
    fn defaults_and_backends() {
        let s = load(None, Path::new("/data")).unwrap();
        assert!(
            matches!(s.metadata, MetadataConfig::Sqlite { ref path } if path == Path::new("/data/metadata.db"))
        );
        let s = parse(
            "[metadata_store.default]\ntype = \"postgres\"\nurl = \"postgres://u:secret@db:5432/b\"\n",
        )
        .unwrap();
        assert!(
            matches!(s.metadata, MetadataConfig::Postgres { ref url, pool_size: 16 } if url.ends_with("/b"))
        );
        assert!(
            s.describe()
                .starts_with("metadata: postgres db:5432/b; blobs: fs /data;")
        );
        assert!(!s.describe().contains("secret"));
        let s = parse(
            "[metadata_store.default]\ntype = \"postgres\"\nurl = \"postgres://db/b?password=secret\"\n",
        )
        .unwrap();
        assert!(!s.describe().contains("secret"), "{}", s.describe());
        let s = parse("[blob_store.default]\ntype = \"fs\"\npath = \"/shared/b\"\n[credentials]\nkeys_dir = \"k\"\n")
            .unwrap();
        assert!(
            matches!(s.blobs, BlobsConfig::Fs { ref root, shared: true } if root == Path::new("/shared/b"))
        );
        assert!(matches!(s.keys, KeySource::Dir(ref d) if d.ends_with("k") && d != Path::new("k")));
        let given = format!(
            "[credentials]\ntoken_signing_key = \"{}\"\nsealing_key = \"{}\"\n",
            "0a".repeat(32),
            "0b".repeat(32)
        );
        let s = parse(&given).unwrap();
        assert!(
            matches!(s.keys, KeySource::Given { token, seal } if token == [10; 32] && seal == [11; 32])
        );
        assert!(!s.describe().contains("0a0a"));
        let s = parse(
            "[blob_store.default]\ntype = \"s3\"\nendpoint = \"http://127.0.0.1:3900\"\nregion = \"garage\"\nbucket = \"b\"\naccess_key_id = \"GK1\"\nsecret_access_key = \"s3cret\"\nprefix = \"r/\"\nredirect_seconds = 60\n",
        )
        .unwrap();
        assert!(
            matches!(s.blobs, BlobsConfig::S3(ref c) if c.bucket == "b" && c.prefix == "r/" && c.redirect == Some(std::time::Duration::from_secs(60)))
        );
        assert!(
            s.describe()
                .contains("blobs: s3 http://127.0.0.1:3900/b/r/")
        );
        assert!(!s.describe().contains("s3cret") && !s.describe().contains("GK1"));
        for bad in [
            "[metadata_store.other]\ntype = \"sqlite\"\n",
            "[metadata_store.default]\ntype = \"redis\"\n",
            "[metadata_store.default]\ntype = \"postgres\"\nurl = \"mysql://x\"\n",
            "[metadata_store.default]\ntype = \"postgres\"\nurl = \"postgres://x/y\"\npool = 3\n",
            "[key_value_store.default]\ntype = \"spin\"\n",
            "[blob_store.default]\ntype = \"s4\"\npath = \"x\"\n",
            "[blob_store.default]\ntype = \"s3\"\nregion = \"r\"\nbucket = \"b\"\naccess_key_id = \"a\"\nsecret_access_key = \"s\"\nprefix = \"/x\"\n",
            "[blob_store.default]\ntype = \"s3\"\nendpoint = \"ftp://x\"\nregion = \"r\"\nbucket = \"b\"\naccess_key_id = \"a\"\nsecret_access_key = \"s\"\n",
            "[blob_store.default]\ntype = \"s3\"\nregion = \"r\"\nbucket = \"b\"\naccess_key_id = \"a\"\n",
            "[credentials]\nkeys = \"x\"\n",
            "[credentials]\ntoken_signing_key = \"00\"\nsealing_key = \"00\"\n",
            "[credentials]\nkeys_dir = \"k\"\nsealing_key = \"00\"\n",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
