//! Metadata on SQLite (the embedded default): one ordered table of
//! versioned values in one file.
//!
//! Reads run inline on a per-thread connection (WAL lets them proceed while
//! a write commits). Writes go to one writer thread that group-commits: the
//! commits waiting in its queue run in one transaction, each inside its own
//! savepoint (a failed precondition rolls back that commit only), and one
//! `synchronous=FULL` fsync makes them all durable before any is
//! acknowledged. Versions come from one global sequence, so a key deleted and
//! written again never reuses a version (no ABA for CAS).

use super::{
    COUNT_FLUSH, Done, Entry, GROUP_MAX, Job, MetaError, Pending, Precondition, Stat, Watchers,
    WriteOp, Writer, answer, nth_log_key,
};
use anyhow::{Context, Result};
use rusqlite::{Connection, OptionalExtension, params};
use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

impl From<rusqlite::Error> for MetaError {
    fn from(e: rusqlite::Error) -> Self {
        MetaError::Backend(e.into())
    }
}

pub struct Sqlite {
    path: PathBuf,
    /// Identifies this store for the per-thread reader cache.
    id: usize,
    pub(super) writer: Writer,
    /// Statistics not yet written ([`super::Metadata::note`]).
    pending: Arc<Mutex<Pending>>,
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

impl Sqlite {
    pub fn open(path: &Path) -> Result<Sqlite> {
        let conn = open(path)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value BLOB NOT NULL, version INTEGER NOT NULL) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS counters (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS sequence (id INTEGER PRIMARY KEY CHECK (id = 0), next INTEGER NOT NULL);
             INSERT OR IGNORE INTO sequence (id, next) VALUES (0, 1);",
        )?;
        static NEXT_ID: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let (writer, queue) = mpsc::channel();
        let pending = Arc::new(Mutex::new(Pending::default()));
        let counts = pending.clone();
        std::thread::Builder::new()
            .name("metadata-writer".into())
            .spawn(move || write_loop(conn, queue, counts))?;
        Ok(Sqlite {
            path: path.to_path_buf(),
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            writer: Writer {
                send: Box::new(move |job| writer.send(job).is_ok()),
                watchers: Watchers::default(),
            },
            pending,
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

    pub fn counters(&self, keys: &[String]) -> Result<Vec<i64>, MetaError> {
        let stored: Vec<i64> = self.read(|c| {
            let mut stmt = c.prepare_cached("SELECT value FROM counters WHERE key = ?1")?;
            keys.iter()
                .map(|k| Ok(stmt.query_row([k], |r| r.get(0)).optional()?.unwrap_or(0)))
                .collect::<rusqlite::Result<Vec<i64>>>()
        })?;
        Ok(self.pending.lock().unwrap().apply_to(keys, stored))
    }

    pub fn note(&self, stats: impl IntoIterator<Item = Stat>) {
        self.pending.lock().unwrap().note(stats);
    }

    /// Keys strictly between `lower` and `upper` (metrics).
    pub fn count_between(&self, lower: &str, upper: &str) -> Result<u64, MetaError> {
        self.read(|c| {
            c.prepare_cached("SELECT count(*) FROM kv WHERE key > ?1 AND key < ?2")?
                .query_row(params![lower, upper], |r| r.get::<_, i64>(0))
        })
        .map(|n| n as u64)
    }

    /// The bytes the database file takes (metrics).
    pub fn store_bytes(&self) -> Result<u64, MetaError> {
        self.read(|c| {
            c.query_row(
                "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()",
                [],
                |r| r.get::<_, i64>(0),
            )
        })
        .map(|n| n as u64)
    }

    /// Keys under `prefix` in byte order, after `after`, at most `limit`.
    pub fn scan(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Entry>, MetaError> {
        // [prefix, prefix + U+10FFFF) covers every key starting with prefix.
        // One lower bound only: given both `>= prefix` and `> after`, SQLite
        // seeks to the prefix and filters up to `after` row by row (a page
        // deep in 100k tags took 9 ms instead of 0.3 ms).
        let upper = format!("{prefix}\u{10FFFF}");
        let (sql, lower) = match after {
            Some(a) if a.as_bytes() >= prefix.as_bytes() => (
                "SELECT key, value, version FROM kv WHERE key > ?1 AND key < ?2 ORDER BY key LIMIT ?3",
                a,
            ),
            _ => (
                "SELECT key, value, version FROM kv WHERE key >= ?1 AND key < ?2 ORDER BY key LIMIT ?3",
                prefix,
            ),
        };
        self.read(|c| {
            let mut stmt = c.prepare_cached(sql)?;
            let rows = stmt.query_map(params![lower, upper, limit], |r| {
                Ok(Entry {
                    key: r.get(0)?,
                    value: r.get(1)?,
                    version: r.get::<_, i64>(2)? as u64,
                })
            })?;
            rows.collect()
        })
    }
}

/// The writer thread: takes every queued job, runs them in one transaction
/// (a savepoint each), commits once, then answers each job.
fn write_loop(mut conn: Connection, queue: mpsc::Receiver<Job>, pending: Arc<Mutex<Pending>>) {
    loop {
        let mut jobs = match queue.recv_timeout(COUNT_FLUSH) {
            Ok(first) => vec![first],
            Err(mpsc::RecvTimeoutError::Timeout) => Vec::new(),
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        while jobs.len() < GROUP_MAX {
            match queue.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        // Pending statistics counts ride along with this group.
        let counts = std::mem::take(&mut *pending.lock().unwrap());
        if jobs.is_empty() && counts.is_empty() {
            continue;
        }
        if let Err(e) = write_counts(&mut conn, &counts) {
            tracing::warn!(error = %e, "statistics not written; kept for the next try");
            pending.lock().unwrap().merge(counts);
        }
        let outcome = run_group(&mut conn, &jobs);
        answer(jobs, outcome);
    }
}

fn write_counts(conn: &mut Connection, counts: &Pending) -> rusqlite::Result<()> {
    if counts.is_empty() {
        return Ok(());
    }
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    for (k, v) in &counts.add {
        tx.prepare_cached(
            "INSERT INTO counters (key, value) VALUES (?1, ?2)
             ON CONFLICT (key) DO UPDATE SET value = value + excluded.value",
        )?
        .execute(params![k, v])?;
    }
    for (k, v) in &counts.raise {
        tx.prepare_cached(
            "INSERT INTO counters (key, value) VALUES (?1, ?2)
             ON CONFLICT (key) DO UPDATE SET value = max(value, excluded.value)",
        )?
        .execute(params![k, v])?;
    }
    tx.commit()
}

/// Runs `jobs` in one transaction; one result per job. If the final commit
/// fails, every job fails (none of them was applied).
fn run_group(conn: &mut Connection, jobs: &[Job]) -> Vec<Result<Done, MetaError>> {
    let mut group = || -> Result<Vec<Result<Done, MetaError>>, rusqlite::Error> {
        let mut tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let mut results = Vec::with_capacity(jobs.len());
        for job in jobs {
            let sp = tx.savepoint()?;
            let result = match job {
                Job::Commit(ops, _) => apply(&sp, ops).map(Done::Versions),
                Job::Increment(key, delta, _) => sp
                    .query_row(
                        "INSERT INTO counters (key, value) VALUES (?1, ?2)
                         ON CONFLICT (key) DO UPDATE SET value = value + excluded.value RETURNING value",
                        params![key, delta],
                        |r| r.get(0),
                    )
                    .map(Done::Counter)
                    .map_err(MetaError::from),
            };
            if result.is_ok() {
                sp.commit()?;
            } // else dropping the savepoint rolls this job back.
            results.push(result);
        }
        tx.commit()?;
        Ok(results)
    };
    match group() {
        Ok(results) => results,
        Err(e) => {
            let msg = e.to_string();
            jobs.iter()
                .map(|_| {
                    Err(MetaError::Backend(anyhow::anyhow!(
                        "metadata commit failed: {msg}"
                    )))
                })
                .collect()
        }
    }
}

fn check(tx: &Connection, key: &str, pre: &Precondition) -> Result<(), MetaError> {
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

fn apply(tx: &Connection, ops: &[WriteOp]) -> Result<Vec<u64>, MetaError> {
    let version: i64 = tx.query_row(
        "UPDATE sequence SET next = next + 1 WHERE id = 0 RETURNING next - 1",
        [],
        |r| r.get(0),
    )?;
    let mut versions = Vec::new();
    let mut appended = std::collections::HashMap::new();
    for op in ops {
        match op {
            WriteOp::Put(key, value, pre) => {
                check(tx, key, pre)?;
                tx.prepare_cached(
                    "INSERT INTO kv (key, value, version) VALUES (?1, ?2, ?3)
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value, version = excluded.version",
                )?
                .execute(params![key, value, version])?;
                versions.push(version as u64);
            }
            WriteOp::Delete(key, pre) => {
                check(tx, key, pre)?;
                tx.prepare_cached("DELETE FROM kv WHERE key = ?1")?
                    .execute([key])?;
            }
            WriteOp::Append(prefix, value) => {
                // Versions are unique, so the key is new; further appends
                // under the prefix in this commit follow it (`.1`, `.2`…).
                let earlier = appended.entry(prefix.as_str()).or_insert(0u32);
                let key = nth_log_key(prefix, version as u64, *earlier);
                *earlier += 1;
                tx.prepare_cached("INSERT INTO kv (key, value, version) VALUES (?1, ?2, ?3)")?
                    .execute(params![key, value, version])?;
                versions.push(version as u64);
            }
            WriteOp::Check(key, pre) => check(tx, key, pre)?,
        }
    }
    Ok(versions)
}

#[cfg(test)]
mod tests {
    use super::super::{Metadata, contract};
    use std::sync::Arc;

    fn store() -> (tempfile::TempDir, Metadata) {
        let dir = tempfile::tempdir().unwrap();
        let m = Metadata::Sqlite(super::Sqlite::open(&dir.path().join("meta.db")).unwrap());
        (dir, m)
    }

    #[tokio::test]
    async fn versioned_writes_and_scans() {
        contract::versioned_writes_and_scans(&store().1).await;
    }

    #[tokio::test]
    async fn counters() {
        contract::counters(&store().1).await;
    }

    #[tokio::test]
    async fn appends_form_a_log_in_commit_order() {
        contract::appends_form_a_log_in_commit_order(&store().1).await;
    }

    #[tokio::test]
    async fn appends_in_one_commit_follow_each_other_and_checks_write_nothing() {
        contract::appends_in_one_commit_follow_each_other_and_checks_write_nothing(&store().1)
            .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn grouped_commits_fail_alone() {
        let (_d, m) = store();
        contract::grouped_commits_fail_alone(Arc::new(m)).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_log_never_fills_in_behind_a_reader() {
        let (_d, m) = store();
        let m = Arc::new(m);
        contract::the_log_never_fills_in_behind_a_reader(m.clone(), m).await;
    }
}
