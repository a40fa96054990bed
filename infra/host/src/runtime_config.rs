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
//! [credentials]
//! keys_dir = "/shared/berth-keys"    # token.key and seal.key
//! ```
//!
//! Without the file, or without a table, the embedded defaults serve:
//! SQLite in `<data-dir>/metadata.db`, blobs and uploads under
//! `<data-dir>`, keys in `<data-dir>/keys`. Hosts that serve one registry
//! share the metadata store, the blob store and the keys (so that a token
//! or a sealed secret made on one host is good on all). Paths in the file
//! are relative to the file. The file holds credentials: keep it readable
//! by Berth only.

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
    Fs { path: PathBuf },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CredentialsConfig {
    keys_dir: PathBuf,
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
    /// Where blobs, uploads and temporary files live (`blobs/`,
    /// `uploads/`, `tmp/` below it).
    pub blobs_root: PathBuf,
    /// Whether other hosts may share `blobs_root` (named in the runtime
    /// config rather than the data directory).
    pub blobs_shared: bool,
    /// Where the token signing and sealing keys live.
    pub keys_dir: PathBuf,
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
        format!(
            "{metadata}; blobs: fs {}; keys: {}",
            self.blobs_root.display(),
            self.keys_dir.display()
        )
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
    let blobs_root = match config.blob_store.get("default") {
        None => data_dir.to_path_buf(),
        Some(BlobStore::Fs { path }) => base.join(path),
    };
    let keys_dir = match &config.credentials {
        None => data_dir.join("keys"),
        Some(c) => base.join(&c.keys_dir),
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
        blobs_shared: blobs_root != data_dir,
        blobs_root,
        keys_dir,
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
        assert_eq!(s.blobs_root, Path::new("/shared/b"));
        assert!(s.keys_dir.ends_with("k") && s.keys_dir != Path::new("k"));
        for bad in [
            "[metadata_store.other]\ntype = \"sqlite\"\n",
            "[metadata_store.default]\ntype = \"redis\"\n",
            "[metadata_store.default]\ntype = \"postgres\"\nurl = \"mysql://x\"\n",
            "[metadata_store.default]\ntype = \"postgres\"\nurl = \"postgres://x/y\"\npool = 3\n",
            "[key_value_store.default]\ntype = \"spin\"\n",
            "[blob_store.default]\ntype = \"s4\"\npath = \"x\"\n",
            "[credentials]\nkeys = \"x\"\n",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
