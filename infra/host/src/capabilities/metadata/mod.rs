//! The metadata capability (`berth:registry/metadata` in `wit/store.wit`):
//! one ordered table of versioned values, with atomic multi-key commits
//! under preconditions, an append-only log keyed in commit order,
//! counters, and buffered statistics. One module per backend, chosen by
//! the runtime config (`crate::runtime_config`):
//!
//! - [`sqlite`]: the embedded default, one file, one writer thread that
//!   group-commits;
//! - [`postgres`]: PostgreSQL, shared by several hosts, with a connection
//!   pool, migrations, group commit and `LISTEN`/`NOTIFY` wake-ups.
//!
//! Both keep the same contract, which the tests below check on each:
//! keys sort by their bytes; every write takes a version from one global
//! sequence (never reused, so CAS has no ABA); a commit is all or nothing;
//! commits are applied in version order, so a reader that saw version `v`
//! of the log never later finds an entry below `v` appear.

pub mod postgres;
pub mod sqlite;

use anyhow::Result;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

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
    /// Put under `prefix` + the commit's version as 20 digits ([`log_key`]).
    Append(String, Vec<u8>),
    /// Writes nothing: the key must meet the precondition.
    Check(String, Precondition),
}

/// The key an [`WriteOp::Append`] under `prefix` takes in the commit of
/// `version`: keys sort in commit order. The `n`th further append under
/// the same prefix in one commit (from 1) follows it as `.<n, 5 digits>`.
pub fn log_key(prefix: &str, version: u64) -> String {
    format!("{prefix}{version:020}")
}

fn nth_log_key(prefix: &str, version: u64, n: u32) -> String {
    let mut key = log_key(prefix, version);
    if n > 0 {
        key.push_str(&format!(".{n:05}"));
    }
    key
}

/// A statistic written later ([`Metadata::note`]).
#[derive(Debug, Clone)]
pub enum Stat {
    /// Adds to a counter.
    Add(String, i64),
    /// Raises a value to at least this one.
    Raise(String, i64),
}

/// Statistics noted and not yet written.
#[derive(Default)]
struct Pending {
    add: HashMap<String, i64>,
    raise: HashMap<String, i64>,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.add.is_empty() && self.raise.is_empty()
    }

    /// Folds `other` (taken earlier, not written) back in.
    fn merge(&mut self, other: Pending) {
        for (k, v) in other.add {
            *self.add.entry(k).or_insert(0) += v;
        }
        for (k, v) in other.raise {
            let e = self.raise.entry(k).or_insert(v);
            *e = (*e).max(v);
        }
    }

    fn note(&mut self, stats: impl IntoIterator<Item = Stat>) {
        for stat in stats {
            match stat {
                Stat::Add(k, v) => *self.add.entry(k).or_insert(0) += v,
                Stat::Raise(k, v) => {
                    let e = self.raise.entry(k).or_insert(v);
                    *e = (*e).max(v);
                }
            }
        }
    }

    /// `stored` (one value per key, missing = 0) with what is not yet
    /// written folded in.
    fn apply_to(&self, keys: &[String], stored: Vec<i64>) -> Vec<i64> {
        keys.iter()
            .zip(stored)
            .map(|(k, v)| {
                let v = v + self.add.get(k).copied().unwrap_or(0);
                self.raise.get(k).map_or(v, |r| v.max(*r))
            })
            .collect()
    }
}

/// How long statistics counts wait in memory before they are written.
const COUNT_FLUSH: std::time::Duration = std::time::Duration::from_millis(500);

/// Most commits folded into one transaction.
const GROUP_MAX: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    #[error("precondition failed")]
    Conflict,
    #[error(transparent)]
    Backend(#[from] anyhow::Error),
}

/// A metadata prefix and who to signal when a commit appends under it.
type Watcher = (String, Arc<tokio::sync::Notify>);

/// Who to signal after commits that append under a prefix
/// ([`Metadata::watch`]).
#[derive(Default, Clone)]
struct Watchers(Arc<Mutex<Vec<Watcher>>>);

impl Watchers {
    fn add(&self, prefixes: &[String]) -> Arc<tokio::sync::Notify> {
        let notify = Arc::new(tokio::sync::Notify::new());
        let mut w = self.0.lock().expect("watchers lock");
        for p in prefixes {
            w.push((p.clone(), notify.clone()));
        }
        notify
    }

    /// The signals of the prefixes `ops` append under.
    fn of_appends(&self, ops: &[WriteOp]) -> Vec<Arc<tokio::sync::Notify>> {
        if !ops.iter().any(|op| matches!(op, WriteOp::Append(..))) {
            return Vec::new();
        }
        let w = self.0.lock().expect("watchers lock");
        ops.iter()
            .filter_map(|op| match op {
                WriteOp::Append(prefix, _) => Some(prefix),
                _ => None,
            })
            .flat_map(|prefix| {
                w.iter()
                    .filter(move |(p, _)| p == prefix)
                    .map(|(_, n)| n.clone())
            })
            .collect()
    }

    /// Signals every watcher.
    fn wake_all(&self) {
        for (_, n) in self.0.lock().expect("watchers lock").iter() {
            n.notify_waiters();
        }
    }

    /// Signals the watchers of `prefix` (an append another host made).
    fn wake(&self, prefix: &str) {
        for (p, n) in self.0.lock().expect("watchers lock").iter() {
            if p == prefix {
                n.notify_waiters();
            }
        }
    }
}

/// A write waiting for a backend's writer (thread or task).
enum Job {
    Commit(Vec<WriteOp>, oneshot::Sender<Result<Vec<u64>, MetaError>>),
    Increment(String, i64, oneshot::Sender<Result<i64, MetaError>>),
}

/// What a job came to.
enum Done {
    Versions(Vec<u64>),
    Counter(i64),
}

/// Answers each job with its result (a caller that went away no longer
/// needs its answer).
fn answer(jobs: Vec<Job>, results: Vec<Result<Done, MetaError>>) {
    for (job, result) in jobs.into_iter().zip(results) {
        match (job, result) {
            (Job::Commit(_, tx), Ok(Done::Versions(v))) => drop(tx.send(Ok(v))),
            (Job::Increment(_, _, tx), Ok(Done::Counter(v))) => drop(tx.send(Ok(v))),
            (Job::Commit(_, tx), Err(e)) => drop(tx.send(Err(e))),
            (Job::Increment(_, _, tx), Err(e)) => drop(tx.send(Err(e))),
            _ => unreachable!("each job gets the result of its own kind"),
        }
    }
}

fn writer_gone() -> MetaError {
    MetaError::Backend(anyhow::anyhow!("the metadata writer has stopped"))
}

/// The callers' side of a backend's writer: queues commits and
/// increments, and wakes the watchers of what a commit appended.
struct Writer {
    /// Hands a job to the writer; `false` once it has stopped.
    send: Box<dyn Fn(Job) -> bool + Send + Sync>,
    watchers: Watchers,
}

impl Writer {
    async fn commit(&self, ops: Vec<WriteOp>) -> Result<Vec<u64>, MetaError> {
        let woken = self.watchers.of_appends(&ops);
        let (tx, rx) = oneshot::channel();
        if !(self.send)(Job::Commit(ops, tx)) {
            return Err(writer_gone());
        }
        let result = rx.await.map_err(|_| writer_gone())?;
        if result.is_ok() {
            for n in woken {
                n.notify_waiters();
            }
        }
        result
    }

    async fn increment(&self, key: String, delta: i64) -> Result<i64, MetaError> {
        let (tx, rx) = oneshot::channel();
        if !(self.send)(Job::Increment(key, delta, tx)) {
            return Err(writer_gone());
        }
        rx.await.map_err(|_| writer_gone())?
    }
}

/// Which backend serves metadata (`[metadata_store.default]` in the
/// runtime config).
#[derive(Debug, Clone)]
pub enum MetadataConfig {
    /// One SQLite file.
    Sqlite { path: std::path::PathBuf },
    /// A PostgreSQL database (`postgres://user:password@host:port/db`),
    /// with at most `pool_size` connections.
    Postgres { url: String, pool_size: usize },
}

/// The metadata store this host uses.
pub enum Metadata {
    Sqlite(sqlite::Sqlite),
    Postgres(postgres::Postgres),
}

impl Metadata {
    /// Opens (and, for PostgreSQL, migrates) the configured store.
    pub async fn open(config: &MetadataConfig) -> Result<Metadata> {
        Ok(match config {
            MetadataConfig::Sqlite { path } => Metadata::Sqlite(sqlite::Sqlite::open(path)?),
            MetadataConfig::Postgres { url, pool_size } => {
                Metadata::Postgres(postgres::Postgres::open(url, *pool_size).await?)
            }
        })
    }

    pub async fn get(&self, key: &str) -> Result<Option<Entry>, MetaError> {
        match self {
            Metadata::Sqlite(s) => s.get(key),
            Metadata::Postgres(p) => p.get(key).await,
        }
    }

    pub async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Entry>>, MetaError> {
        match self {
            Metadata::Sqlite(s) => s.get_many(keys),
            Metadata::Postgres(p) => p.get_many(keys).await,
        }
    }

    /// Statistics (missing = 0), including those not yet written.
    pub async fn counters(&self, keys: &[String]) -> Result<Vec<i64>, MetaError> {
        match self {
            Metadata::Sqlite(s) => s.counters(keys),
            Metadata::Postgres(p) => p.counters(keys).await,
        }
    }

    /// Records statistics without waiting: they are merged in memory and
    /// written with the next commit, at the latest within half a second (a
    /// crash may lose that last half second). Downloads and last-pull
    /// times are noted this way so a pull never waits for a write.
    pub fn note(&self, stats: impl IntoIterator<Item = Stat>) {
        match self {
            Metadata::Sqlite(s) => s.note(stats),
            Metadata::Postgres(p) => p.note(stats),
        }
    }

    /// Writes every pending count now (at shutdown).
    pub async fn flush(&self) -> Result<(), MetaError> {
        self.commit(Vec::new()).await.map(|_| ())
    }

    /// How many keys start with `prefix` and sort after `after` (all of
    /// them when none): an indexed count, for metrics.
    pub async fn count(&self, prefix: &str, after: Option<&str>) -> Result<u64, MetaError> {
        let upper = format!("{prefix}\u{10FFFF}");
        // Strictly after the prefix: that misses only a key equal to the
        // prefix, which none of the prefixes counted (`event/`, `upload/`) is.
        let lower = match after {
            Some(a) if a.as_bytes() >= prefix.as_bytes() => a.to_string(),
            _ => prefix.to_string(),
        };
        match self {
            Metadata::Sqlite(s) => s.count_between(&lower, &upper),
            Metadata::Postgres(p) => p.count_between(&lower, &upper).await,
        }
    }

    /// The bytes the store takes on disk, for metrics.
    pub async fn store_bytes(&self) -> Result<u64, MetaError> {
        match self {
            Metadata::Sqlite(s) => s.store_bytes(),
            Metadata::Postgres(p) => p.store_bytes().await,
        }
    }

    /// Keys under `prefix` in byte order, after `after`, at most `limit`.
    pub async fn scan(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Entry>, MetaError> {
        match self {
            Metadata::Sqlite(s) => s.scan(prefix, after, limit),
            Metadata::Postgres(p) => p.scan(prefix, after, limit).await,
        }
    }

    /// Applies `ops` atomically; returns the version of each put and
    /// append once durable.
    pub async fn commit(&self, ops: Vec<WriteOp>) -> Result<Vec<u64>, MetaError> {
        self.writer().commit(ops).await
    }

    fn writer(&self) -> &Writer {
        match self {
            Metadata::Sqlite(s) => &s.writer,
            Metadata::Postgres(p) => &p.writer,
        }
    }

    /// A signal given after each commit that appends under one of
    /// `prefixes` (the event log wakes its consumers; a GC task request
    /// wakes the gc job), on PostgreSQL also for other hosts' commits.
    pub fn watch(&self, prefixes: &[String]) -> Arc<tokio::sync::Notify> {
        self.writer().watchers.add(prefixes)
    }

    pub async fn increment(&self, key: String, delta: i64) -> Result<i64, MetaError> {
        self.writer().increment(key, delta).await
    }
}

/// The contract, checked on each backend (`sqlite::tests`,
/// `postgres::tests`).
#[cfg(test)]
pub(crate) mod contract {
    use super::*;

    fn put(k: &str, v: &str, p: Precondition) -> WriteOp {
        WriteOp::Put(k.into(), v.as_bytes().to_vec(), p)
    }

    pub async fn versioned_writes_and_scans(m: &Metadata) {
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
        assert!(m.get("new").await.unwrap().is_none());
        let e = m.get("tag/a:1").await.unwrap().unwrap();
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
        let s = m.scan("tag/a:", None, 10).await.unwrap();
        assert_eq!(
            s.iter().map(|e| e.key.as_str()).collect::<Vec<_>>(),
            ["tag/a:1", "tag/a:2"]
        );
        let s = m.scan("tag/a:", Some("tag/a:1"), 10).await.unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(m.scan("tag/", None, 2).await.unwrap().len(), 2);
        // Byte order, whatever the locale: upper case before lower, and
        // multi-byte characters after ASCII.
        m.commit(vec![
            put("o/B", "", Precondition::None),
            put("o/a", "", Precondition::None),
            put("o/é", "", Precondition::None),
            put("o/z", "", Precondition::None),
        ])
        .await
        .unwrap();
        let keys: Vec<String> = m
            .scan("o/", None, 10)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.key)
            .collect();
        assert_eq!(keys, ["o/B", "o/a", "o/z", "o/é"]);
        let many = m
            .get_many(&["o/z".into(), "nothing".into(), "o/B".into()])
            .await
            .unwrap();
        assert_eq!(
            many.iter()
                .map(|e| e.as_ref().map(|e| e.key.as_str()))
                .collect::<Vec<_>>(),
            [Some("o/z"), None, Some("o/B")]
        );
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

    pub async fn counters(m: &Metadata) {
        assert_eq!(m.increment("c".into(), 5).await.unwrap(), 5);
        assert_eq!(m.increment("c".into(), -2).await.unwrap(), 3);
        assert_eq!(m.increment("c".into(), 0).await.unwrap(), 3);
        assert_eq!(
            m.counters(&["c".into(), "none".into()]).await.unwrap(),
            [3, 0]
        );
        // Buffered statistics are visible at once and written within the
        // flush period: sums for counters, maxima for raised values.
        let add = |k: &str, v| Stat::Add(k.into(), v);
        let raise = |k: &str, v| Stat::Raise(k.into(), v);
        m.note([add("c", 4), add("d", 1), raise("t", 20), raise("t", 10)]);
        let ks = |names: &[&str]| names.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(m.counters(&ks(&["c", "d", "t"])).await.unwrap(), [7, 1, 20]);
        tokio::time::sleep(COUNT_FLUSH * 3).await;
        assert_eq!(m.counters(&ks(&["c", "d", "t"])).await.unwrap(), [7, 1, 20]);
        m.note([add("d", 1), raise("t", 15)]);
        assert_eq!(m.counters(&ks(&["t"])).await.unwrap(), [20]);
        m.flush().await.unwrap();
        assert_eq!(m.increment("d".into(), 0).await.unwrap(), 2);
        assert_eq!(m.counters(&ks(&["t"])).await.unwrap(), [20]);
        m.note([raise("t", 30)]);
        m.flush().await.unwrap();
        assert_eq!(m.counters(&ks(&["t"])).await.unwrap(), [30]);
    }

    pub async fn appends_form_a_log_in_commit_order(m: &Metadata) {
        let append = |v: &[u8]| WriteOp::Append("event/".into(), v.to_vec());
        let first = m.commit(vec![append(b"a")]).await.unwrap()[0];
        m.commit(vec![WriteOp::Put("x".into(), vec![], Precondition::None)])
            .await
            .unwrap();
        let second = m.commit(vec![append(b"b")]).await.unwrap()[0];
        assert!(second > first);
        // A refused commit appends nothing.
        assert!(matches!(
            m.commit(vec![
                append(b"lost"),
                WriteOp::Put("x".into(), vec![], Precondition::Absent)
            ])
            .await,
            Err(MetaError::Conflict)
        ));
        let log = m.scan("event/", None, 10).await.unwrap();
        let values: Vec<&[u8]> = log.iter().map(|e| e.value.as_slice()).collect();
        assert_eq!(values, [b"a", b"b"]);
        assert_eq!(log[0].key, log_key("event/", first));
        assert_eq!(log[0].key.len(), "event/".len() + 20);
    }

    pub async fn appends_in_one_commit_follow_each_other_and_checks_write_nothing(m: &Metadata) {
        let append = |v: &[u8]| WriteOp::Append("q/".into(), v.to_vec());
        m.commit(vec![append(b"a"), append(b"b"), append(b"c")])
            .await
            .unwrap();
        m.commit(vec![append(b"d")]).await.unwrap();
        let log = m.scan("q/", None, 10).await.unwrap();
        let values: Vec<&[u8]> = log.iter().map(|e| e.value.as_slice()).collect();
        assert_eq!(values, [b"a", b"b", b"c", b"d"]);
        assert!(log[1].key.ends_with(".00001") && log[2].key.ends_with(".00002"));

        let v = m
            .commit(vec![WriteOp::Put("k".into(), vec![1], Precondition::None)])
            .await
            .unwrap()[0];
        let check = |key: &str, p| WriteOp::Check(key.into(), p);
        // Checks that hold let the commit through, and leave the key as it was.
        m.commit(vec![
            check("k", Precondition::Version(v)),
            check("absent", Precondition::Absent),
            WriteOp::Put("other".into(), vec![2], Precondition::None),
        ])
        .await
        .unwrap();
        assert_eq!(m.get("k").await.unwrap().unwrap().version, v);
        assert!(m.get("absent").await.unwrap().is_none());
        // One that fails refuses the whole commit.
        for failing in [
            check("k", Precondition::Version(v + 100)),
            check("k", Precondition::Absent),
        ] {
            assert!(matches!(
                m.commit(vec![
                    failing,
                    WriteOp::Put("lost".into(), vec![], Precondition::None)
                ])
                .await,
                Err(MetaError::Conflict)
            ));
        }
        assert!(m.get("lost").await.unwrap().is_none());
    }

    pub async fn grouped_commits_fail_alone(m: Arc<Metadata>) {
        m.commit(vec![WriteOp::Put(
            "taken".into(),
            vec![1],
            Precondition::None,
        )])
        .await
        .unwrap();
        // Many concurrent commits land in shared groups; the ones whose
        // precondition fails must not take the others down with them.
        let tasks: Vec<_> = (0..200)
            .map(|i| {
                let m = m.clone();
                tokio::spawn(async move {
                    let key = if i % 10 == 0 {
                        "taken".to_string()
                    } else {
                        format!("k{i:03}")
                    };
                    let r = m
                        .commit(vec![
                            WriteOp::Put(format!("side{i:03}"), vec![2], Precondition::None),
                            WriteOp::Put(key, vec![3], Precondition::Absent),
                        ])
                        .await;
                    (i, r.is_ok())
                })
            })
            .collect();
        for t in tasks {
            let (i, ok) = t.await.unwrap();
            assert_eq!(ok, i % 10 != 0, "commit {i}");
            assert_eq!(m.get(&format!("side{i:03}")).await.unwrap().is_some(), ok);
        }
        assert_eq!(m.scan("k", None, 1000).await.unwrap().len(), 180);
    }

    /// Commits racing from many tasks (and, for PostgreSQL, two stores,
    /// as two hosts): every log entry a reader sees below the highest one
    /// it saw is already there, so a cursor never skips one.
    pub async fn the_log_never_fills_in_behind_a_reader(a: Arc<Metadata>, b: Arc<Metadata>) {
        let writers: Vec<_> = (0..8)
            .map(|i| {
                let m = if i % 2 == 0 { a.clone() } else { b.clone() };
                tokio::spawn(async move {
                    for j in 0..25 {
                        m.commit(vec![WriteOp::Append(
                            "race/".into(),
                            format!("{i}-{j}").into_bytes(),
                        )])
                        .await
                        .unwrap();
                    }
                })
            })
            .collect();
        let mut seen: Vec<String> = Vec::new();
        loop {
            let done = writers.iter().all(|w| w.is_finished());
            let now: Vec<String> = a
                .scan("race/", None, 10_000)
                .await
                .unwrap()
                .into_iter()
                .map(|e| e.key)
                .collect();
            // What was seen is a prefix of what is seen now.
            assert_eq!(
                &now[..seen.len()],
                &seen[..],
                "an entry appeared behind the reader"
            );
            seen = now;
            if done {
                break;
            }
        }
        for w in writers {
            w.await.unwrap();
        }
        assert_eq!(a.scan("race/", None, 10_000).await.unwrap().len(), 200);
    }
}
