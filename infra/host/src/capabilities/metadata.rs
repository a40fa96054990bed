//! Metadata on SQLite: one ordered table of versioned values.
//!
//! Reads run inline on a per-thread connection (WAL lets them proceed while
//! a write commits); writes go through one connection on a blocking thread,
//! each commit one transaction with `synchronous=FULL`, so an acknowledged
//! write survives a crash. Versions come from one global sequence, so a key
//! deleted and written again never reuses a version (no ABA for CAS).

use anyhow::{Context, Result};
use rusqlite::{Connection, OptionalExtension, params};
use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    pub value: Vec<u8>,
    pub version: u64,
}

#[derive(Debug, Clone)]
pub enum Precondition {
    None,
    Absent,
    Version(u64),
}

#[derive(Debug, Clone)]
pub enum WriteOp {
    Put(String, Vec<u8>, Precondition),
    Delete(String, Precondition),
}

#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    #[error("precondition failed")]
    Conflict,
    #[error(transparent)]
    Backend(#[from] anyhow::Error),
}

impl From<rusqlite::Error> for MetaError {
    fn from(e: rusqlite::Error) -> Self {
        MetaError::Backend(e.into())
    }
}

pub struct Metadata {
    path: PathBuf,
    /// Identifies this store for the per-thread reader cache.
    id: usize,
    writer: Arc<Mutex<Connection>>,
}

thread_local! {
    static READERS: RefCell<HashMap<usize, Connection>> = RefCell::new(HashMap::new());
}

fn open(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path).with_context(|| format!("opening {}", path.display()))?;
    conn.busy_timeout(std::time::Duration::from_secs(30))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    Ok(conn)
}

impl Metadata {
    pub fn open(path: &Path) -> Result<Metadata> {
        let conn = open(path)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value BLOB NOT NULL, version INTEGER NOT NULL) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS counters (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS sequence (id INTEGER PRIMARY KEY CHECK (id = 0), next INTEGER NOT NULL);
             INSERT OR IGNORE INTO sequence (id, next) VALUES (0, 1);",
        )?;
        static NEXT_ID: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        Ok(Metadata {
            path: path.to_path_buf(),
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            writer: Arc::new(Mutex::new(conn)),
        })
    }

    /// Runs `f` on this thread's read connection (opened on first use).
    fn read<R>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<R>) -> Result<R, MetaError> {
        READERS.with(|readers| {
            let mut readers = readers.borrow_mut();
            if let std::collections::hash_map::Entry::Vacant(slot) = readers.entry(self.id) {
                slot.insert(open(&self.path)?);
            }
            Ok(f(&readers[&self.id])?)
        })
    }

    pub fn get(&self, key: &str) -> Result<Option<Entry>, MetaError> {
        self.read(|c| {
            c.prepare_cached("SELECT value, version FROM kv WHERE key = ?1")?
                .query_row([key], |r| {
                    Ok(Entry {
                        key: key.to_string(),
                        value: r.get(0)?,
                        version: r.get::<_, i64>(1)? as u64,
                    })
                })
                .optional()
        })
    }

    pub fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Entry>>, MetaError> {
        self.read(|c| {
            let mut stmt = c.prepare_cached("SELECT value, version FROM kv WHERE key = ?1")?;
            keys.iter()
                .map(|k| {
                    stmt.query_row([k], |r| {
                        Ok(Entry {
                            key: k.clone(),
                            value: r.get(0)?,
                            version: r.get::<_, i64>(1)? as u64,
                        })
                    })
                    .optional()
                })
                .collect()
        })
    }

    /// Keys under `prefix` in byte order, after `after`, at most `limit`.
    pub fn scan(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Entry>, MetaError> {
        // [prefix, prefix + U+10FFFF) covers every key starting with prefix.
        let upper = format!("{prefix}\u{10FFFF}");
        let lower = match after {
            Some(a) if a.as_bytes() >= prefix.as_bytes() => a.to_string(),
            _ => String::new(),
        };
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT key, value, version FROM kv WHERE key >= ?1 AND key < ?2 AND key > ?3 ORDER BY key LIMIT ?4",
            )?;
            let rows = stmt.query_map(params![prefix, upper, lower, limit], |r| {
                Ok(Entry { key: r.get(0)?, value: r.get(1)?, version: r.get::<_, i64>(2)? as u64 })
            })?;
            rows.collect()
        })
    }

    /// Applies `ops` in one transaction; returns the version of each put.
    pub async fn commit(&self, ops: Vec<WriteOp>) -> Result<Vec<u64>, MetaError> {
        let writer = self.writer.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = writer.lock().unwrap_or_else(|p| p.into_inner());
            commit_sync(&mut conn, &ops)
        })
        .await
        .map_err(|e| MetaError::Backend(e.into()))?
    }

    pub async fn increment(&self, key: String, delta: i64) -> Result<i64, MetaError> {
        let writer = self.writer.clone();
        tokio::task::spawn_blocking(move || {
            let conn = writer.lock().unwrap_or_else(|p| p.into_inner());
            let v: i64 = conn.query_row(
                "INSERT INTO counters (key, value) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET value = value + excluded.value RETURNING value",
                params![key, delta],
                |r| r.get(0),
            )?;
            Ok(v)
        })
        .await
        .map_err(|e| MetaError::Backend(e.into()))?
    }
}

fn check(tx: &rusqlite::Transaction, key: &str, pre: &Precondition) -> Result<(), MetaError> {
    let current: Option<i64> = match pre {
        Precondition::None => return Ok(()),
        _ => tx
            .prepare_cached("SELECT version FROM kv WHERE key = ?1")?
            .query_row([key], |r| r.get(0))
            .optional()?,
    };
    let ok = match (pre, current) {
        (Precondition::Absent, None) => true,
        (Precondition::Version(v), Some(c)) => *v == c as u64,
        _ => false,
    };
    if ok { Ok(()) } else { Err(MetaError::Conflict) }
}

fn commit_sync(conn: &mut Connection, ops: &[WriteOp]) -> Result<Vec<u64>, MetaError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let version: i64 = tx.query_row(
        "UPDATE sequence SET next = next + 1 WHERE id = 0 RETURNING next - 1",
        [],
        |r| r.get(0),
    )?;
    let mut versions = Vec::new();
    for op in ops {
        match op {
            WriteOp::Put(key, value, pre) => {
                check(&tx, key, pre)?;
                tx.prepare_cached(
                    "INSERT INTO kv (key, value, version) VALUES (?1, ?2, ?3)
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value, version = excluded.version",
                )?
                .execute(params![key, value, version])?;
                versions.push(version as u64);
            }
            WriteOp::Delete(key, pre) => {
                check(&tx, key, pre)?;
                tx.prepare_cached("DELETE FROM kv WHERE key = ?1")?
                    .execute([key])?;
            }
        }
    }
    tx.commit()?;
    Ok(versions)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Metadata) {
        let dir = tempfile::tempdir().unwrap();
        let m = Metadata::open(&dir.path().join("meta.db")).unwrap();
        (dir, m)
    }

    #[tokio::test]
    async fn versioned_writes_and_scans() {
        let (_d, m) = store();
        let put = |k: &str, v: &str, p| WriteOp::Put(k.into(), v.as_bytes().to_vec(), p);
        let v = m
            .commit(vec![
                put("tag/a:1", "x", Precondition::Absent),
                put("tag/a:2", "y", Precondition::None),
                put("tag/ab:1", "z", Precondition::None),
            ])
            .await
            .unwrap();
        assert_eq!(v.len(), 3);
        // Absent fails when present; the whole commit is refused.
        assert!(matches!(
            m.commit(vec![
                put("new", "n", Precondition::None),
                put("tag/a:1", "x", Precondition::Absent)
            ])
            .await,
            Err(MetaError::Conflict)
        ));
        assert!(m.get("new").unwrap().is_none());
        let e = m.get("tag/a:1").unwrap().unwrap();
        assert!(matches!(
            m.commit(vec![put(
                "tag/a:1",
                "w",
                Precondition::Version(e.version + 1)
            )])
            .await,
            Err(MetaError::Conflict)
        ));
        m.commit(vec![put("tag/a:1", "w", Precondition::Version(e.version))])
            .await
            .unwrap();
        let s = m.scan("tag/a:", None, 10).unwrap();
        assert_eq!(
            s.iter().map(|e| e.key.as_str()).collect::<Vec<_>>(),
            ["tag/a:1", "tag/a:2"]
        );
        let s = m.scan("tag/a:", Some("tag/a:1"), 10).unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(m.scan("tag/", None, 2).unwrap().len(), 2);
        // Delete then recreate never reuses a version.
        m.commit(vec![WriteOp::Delete("tag/a:2".into(), Precondition::None)])
            .await
            .unwrap();
        let again = m
            .commit(vec![put("tag/a:2", "y", Precondition::Absent)])
            .await
            .unwrap()[0];
        assert!(again > v[1]);
    }

    #[tokio::test]
    async fn counters() {
        let (_d, m) = store();
        assert_eq!(m.increment("c".into(), 5).await.unwrap(), 5);
        assert_eq!(m.increment("c".into(), -2).await.unwrap(), 3);
        assert_eq!(m.increment("c".into(), 0).await.unwrap(), 3);
    }
}
