//! Metadata on PostgreSQL, shared by several `berth serve` hosts: the
//! contract of [`super`] on three tables (`berth_kv`, `berth_counters`,
//! `berth_sequence`, keys in the `C` collation so they sort by their
//! bytes, as in SQLite).
//!
//! - **Reads** go through a connection pool (`deadpool-postgres`),
//!   statements prepared once per connection.
//! - **Writes** go to one writer task per host that group-commits: the
//!   commits waiting in its queue run in one transaction, each in its own
//!   savepoint (a failed precondition rolls back that commit only), and
//!   are acknowledged after the transaction commits. Each commit takes its
//!   version by updating the one row of `berth_sequence`; that row lock is
//!   held to the end of the transaction, so commits of all hosts are
//!   applied one after another in version order — the event log's readers
//!   can never see a later entry before an earlier one is committed (a
//!   plain `SEQUENCE` would allow that).
//! - **Wake-ups**: a commit that appends under a prefix sends
//!   `NOTIFY berth_appends, '<prefix>'`; every host listens on a connection
//!   of its own and wakes its watchers, so another host's push wakes this
//!   host's webhook and replication jobs at once.
//! - **Migrations** run at start in one transaction under an advisory lock
//!   (`berth_migrations` records which have run), so hosts starting
//!   together apply each once.

use super::{
    COUNT_FLUSH, Done, Entry, GROUP_MAX, Job, MetaError, Pending, Precondition, Stat, Watchers,
    WriteOp, Writer, answer, nth_log_key,
};
use anyhow::{Context, Result, anyhow};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;
use tokio_postgres::NoTls;

// The schema and every statement, shared with the Spin build's adapter
// (infra/spin/adapters/metadata-postgres) so the two cannot drift.
use berth_postgres_schema::{self as sql, CHANNEL, MIGRATION_LOCK, MIGRATIONS};

pub struct Postgres {
    pool: Pool,
    pub(super) writer: Writer,
    pending: Arc<Mutex<Pending>>,
}

fn backend(e: tokio_postgres::Error) -> MetaError {
    MetaError::Backend(anyhow!("PostgreSQL: {}", causes(&e)))
}

fn pool_error(e: deadpool_postgres::PoolError) -> MetaError {
    MetaError::Backend(anyhow!("PostgreSQL connection pool: {}", causes(&e)))
}

/// `e` and its causes, `: `-separated: the server's own reason
/// (`password authentication failed for user "berth"`, `database "x"
/// does not exist`, `Connection refused`), never the url or password.
pub(crate) fn causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.ends_with(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

impl Postgres {
    /// Connects to `url` (`postgres://user:password@host:port/database`),
    /// migrates the schema, and starts the writer and listener tasks.
    pub async fn open(url: &str, pool_size: usize) -> Result<Postgres> {
        let mut config: tokio_postgres::Config = url
            .parse()
            .context("the PostgreSQL url (postgres://user:password@host:port/database)")?;
        deadlines(&mut config);
        let pool =
            pool(config.clone(), pool_size.max(2)).context("building the PostgreSQL pool")?;
        {
            let mut client = pool
                .get()
                .await
                .map_err(|e| anyhow!("connecting to PostgreSQL: {}", causes(&e)))?;
            // Keys sort by their bytes only in a UTF-8 database (the scan
            // bound U+10FFFF must be representable).
            let encoding: String = client.query_one(sql::SERVER_ENCODING, &[]).await?.get(0);
            if encoding != "UTF8" {
                anyhow::bail!(
                    "the PostgreSQL database is encoded {encoding}: Berth needs UTF8 (CREATE DATABASE … ENCODING 'UTF8')"
                );
            }
            migrate(&mut client).await?;
        }
        let pending = Arc::new(Mutex::new(Pending::default()));
        let watchers = Watchers::default();
        let (writer, queue) = mpsc::unbounded_channel();
        tokio::spawn(write_loop(pool.clone(), queue, pending.clone()));
        tokio::spawn(listen(config, watchers.clone()));
        Ok(Postgres {
            pool,
            writer: Writer {
                send: Box::new(move |job| writer.send(job).is_ok()),
                watchers,
            },
            pending,
        })
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, MetaError> {
        self.pool.get().await.map_err(pool_error)
    }

    pub async fn get(&self, key: &str) -> Result<Option<Entry>, MetaError> {
        if key.contains('\0') {
            return Ok(None);
        }
        let c = self.client().await?;
        let stmt = c.prepare_cached(sql::GET).await.map_err(backend)?;
        let row = c.query_opt(&stmt, &[&key]).await.map_err(backend)?;
        Ok(row.map(|r| Entry {
            key: key.to_string(),
            value: r.get(0),
            version: r.get::<_, i64>(1) as u64,
        }))
    }

    pub async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Entry>>, MetaError> {
        // Keys with NUL are never stored: asked for, they are not found.
        let asked: Vec<&String> = keys.iter().filter(|k| !k.contains('\0')).collect();
        let c = self.client().await?;
        let stmt = c.prepare_cached(sql::GET_MANY).await.map_err(backend)?;
        let found: HashMap<String, Entry> = c
            .query(&stmt, &[&asked])
            .await
            .map_err(backend)?
            .into_iter()
            .map(|r| {
                let key: String = r.get(0);
                let e = Entry {
                    key: key.clone(),
                    value: r.get(1),
                    version: r.get::<_, i64>(2) as u64,
                };
                (key, e)
            })
            .collect();
        // In the order asked.
        Ok(keys.iter().map(|k| found.get(k).cloned()).collect())
    }

    pub async fn counters(&self, keys: &[String]) -> Result<Vec<i64>, MetaError> {
        let asked: Vec<&String> = keys.iter().filter(|k| !k.contains('\0')).collect();
        let c = self.client().await?;
        let stmt = c.prepare_cached(sql::COUNTERS).await.map_err(backend)?;
        let found: HashMap<String, i64> = c
            .query(&stmt, &[&asked])
            .await
            .map_err(backend)?
            .into_iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let stored = keys
            .iter()
            .map(|k| found.get(k).copied().unwrap_or(0))
            .collect();
        Ok(self.pending.lock().unwrap().apply_to(keys, stored))
    }

    pub fn note(&self, stats: impl IntoIterator<Item = Stat>) {
        self.pending.lock().unwrap().note(stats);
    }

    /// Keys strictly between `lower` and `upper` (metrics).
    pub async fn count_between(&self, lower: &str, upper: &str) -> Result<u64, MetaError> {
        let c = self.client().await?;
        let row = c
            .query_one(sql::COUNT_BETWEEN, &[&lower, &upper])
            .await
            .map_err(backend)?;
        Ok(row.get::<_, i64>(0) as u64)
    }

    /// The bytes the metadata tables take (metrics).
    pub async fn store_bytes(&self) -> Result<u64, MetaError> {
        let c = self.client().await?;
        let row = c.query_one(sql::STORE_BYTES, &[]).await.map_err(backend)?;
        Ok(row.get::<_, i64>(0) as u64)
    }

    pub async fn scan(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Entry>, MetaError> {
        // [prefix, prefix + U+10FFFF) covers every key starting with
        // prefix (the largest code point sorts last in the C collation).
        if prefix.contains('\0') {
            return Ok(Vec::new());
        }
        let upper = format!("{prefix}{}", sql::SCAN_BOUND);
        // No key holds NUL: keys after `x\0…` are the keys after `x`.
        let after = after.map(|a| a.split('\0').next().unwrap_or_default());
        let (sql, lower) = match after {
            Some(a) if a.as_bytes() >= prefix.as_bytes() => (sql::SCAN_AFTER, a),
            _ => (sql::SCAN_FROM, prefix),
        };
        let c = self.client().await?;
        let stmt = c.prepare_cached(sql).await.map_err(backend)?;
        let rows = c
            .query(&stmt, &[&lower, &upper, &i64::from(limit)])
            .await
            .map_err(backend)?;
        Ok(rows
            .into_iter()
            .map(|r| Entry {
                key: r.get(0),
                value: r.get(1),
                version: r.get::<_, i64>(2) as u64,
            })
            .collect())
    }
}

/// The deadlines every PostgreSQL client of Berth keeps (this backend's
/// pool and listener, and the Spin platform's `spin:postgres` in
/// `crate::spin`): a server gone silent (a partition, a failover without a
/// reset) fails requests in seconds instead of hanging them for the two
/// hours of TCP keep-alive, and a client that stalls inside a transaction
/// loses its locks (the sequence row's) after a minute, so the others
/// write on.
pub(crate) fn deadlines(config: &mut tokio_postgres::Config) {
    config
        .connect_timeout(std::time::Duration::from_secs(10))
        .keepalives_idle(std::time::Duration::from_secs(30))
        .tcp_user_timeout(std::time::Duration::from_secs(60))
        .options("-c idle_in_transaction_session_timeout=60000");
}

/// A pool of at most `size` connections to `config` (without TLS), which
/// waits at most 30 s for a free connection and 10 s to make one.
pub(crate) fn pool(
    config: tokio_postgres::Config,
    size: usize,
) -> Result<Pool, deadpool_postgres::BuildError> {
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(size)
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .wait_timeout(Some(std::time::Duration::from_secs(30)))
        .create_timeout(Some(std::time::Duration::from_secs(10)))
        .build()
}

/// Applies the migrations not yet applied, under the advisory lock.
async fn migrate(client: &mut deadpool_postgres::Object) -> Result<()> {
    let tx = client.transaction().await?;
    tx.execute(sql::LOCK_MIGRATIONS, &[&MIGRATION_LOCK]).await?;
    tx.batch_execute(sql::CREATE_MIGRATIONS).await?;
    let done: i32 = tx.query_one(sql::MIGRATED, &[]).await?.get(0);
    for (i, statements) in MIGRATIONS.iter().enumerate() {
        let version = i as i32 + 1;
        if version <= done {
            continue;
        }
        tx.batch_execute(&statements.join(";\n"))
            .await
            .with_context(|| format!("PostgreSQL migration {version}"))?;
        tx.execute(sql::RECORD_MIGRATION, &[&version]).await?;
        tracing::info!(version, "PostgreSQL metadata schema migrated");
    }
    if done as usize > MIGRATIONS.len() {
        anyhow::bail!(
            "the PostgreSQL schema is at version {done}, newer than this berth knows ({}): upgrade berth",
            MIGRATIONS.len()
        );
    }
    tx.commit().await?;
    Ok(())
}

/// The writer task: takes every queued job, runs them in one transaction
/// (a savepoint each), commits once, then answers each job. Pending
/// statistics ride along, at the latest every [`COUNT_FLUSH`].
async fn write_loop(
    pool: Pool,
    mut queue: mpsc::UnboundedReceiver<Job>,
    pending: Arc<Mutex<Pending>>,
) {
    loop {
        let mut jobs = match tokio::time::timeout(COUNT_FLUSH, queue.recv()).await {
            Ok(Some(first)) => vec![first],
            Ok(None) => break,
            Err(_) => Vec::new(),
        };
        // Fewer than PostgreSQL's 64 cached subtransactions per transaction.
        while jobs.len() < GROUP_MAX.min(60) {
            match queue.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        let counts = std::mem::take(&mut *pending.lock().unwrap());
        if jobs.is_empty() && counts.is_empty() {
            continue;
        }
        let outcome = match pool.get().await {
            Ok(mut client) => run_group(&mut client, &jobs, &counts).await,
            Err(e) => Err(pool_error(e).to_string()),
        };
        let results = match outcome {
            Ok((results, true)) => results,
            Ok((results, false)) => {
                // Kept for the next group; only these counts are late.
                tracing::warn!("statistics not written; kept for the next try");
                pending.lock().unwrap().merge(counts);
                results
            }
            Err(msg) => {
                // Nothing of the group was applied: statistics wait for
                // the next try, every job fails.
                tracing::warn!(error = %msg, "metadata commit failed");
                pending.lock().unwrap().merge(counts);
                jobs.iter()
                    .map(|_| Err(MetaError::Backend(anyhow!("metadata commit failed: {msg}"))))
                    .collect()
            }
        };
        answer(jobs, results);
    }
}

/// Runs `jobs` (and the statistics `counts`) in one transaction; one
/// result per job, or why the whole group failed (none of it applied), and
/// whether the statistics were written.
///
/// The group first takes the sequence row's lock, so every row lock it
/// takes after (counters included) is taken under it: groups of different
/// hosts never wait on each other in opposite orders (no deadlocks). Each
/// job runs in a savepoint released at once (a failed one is rolled back
/// to and released), so savepoints never nest.
async fn run_group(
    client: &mut deadpool_postgres::Object,
    jobs: &[Job],
    counts: &Pending,
) -> Result<(Vec<Result<Done, MetaError>>, bool), String> {
    let tx = client.transaction().await.map_err(|e| e.to_string())?;
    let lock = tx
        .prepare_cached(sql::LOCK_SEQUENCE)
        .await
        .map_err(|e| e.to_string())?;
    tx.execute(&lock, &[]).await.map_err(|e| e.to_string())?;
    // Statistics in a savepoint of their own: a count that cannot be
    // written (an overflow) never holds back the commits.
    tx.batch_execute("SAVEPOINT job")
        .await
        .map_err(|e| e.to_string())?;
    let written = write_counts(&tx, counts).await.map_err(backend);
    let counted = in_savepoint(&tx, written).await?.is_ok();
    let mut results = Vec::with_capacity(jobs.len());
    for job in jobs {
        tx.batch_execute("SAVEPOINT job")
            .await
            .map_err(|e| e.to_string())?;
        let result = match job {
            Job::Commit(ops, _) => apply(&tx, ops).await.map(Done::Versions),
            Job::Increment(key, delta, _) => increment(&tx, key, *delta).await.map(Done::Counter),
        };
        results.push(in_savepoint(&tx, result).await?);
    }
    tx.commit().await.map_err(|e| e.to_string())?;
    Ok((results, counted))
}

/// Ends the savepoint `job` opened before `result` was worked out: released
/// when it holds, rolled back to and released when not.
async fn in_savepoint<T>(
    tx: &deadpool_postgres::Transaction<'_>,
    result: Result<T, MetaError>,
) -> Result<Result<T, MetaError>, String> {
    let end = if result.is_ok() {
        "RELEASE SAVEPOINT job"
    } else {
        "ROLLBACK TO SAVEPOINT job; RELEASE SAVEPOINT job"
    };
    tx.batch_execute(end).await.map_err(|e| e.to_string())?;
    Ok(result)
}

async fn increment(
    tx: &deadpool_postgres::Transaction<'_>,
    key: &str,
    delta: i64,
) -> Result<i64, MetaError> {
    if key.contains('\0') {
        return Err(no_nul());
    }
    let stmt = tx.prepare_cached(sql::INCREMENT).await.map_err(backend)?;
    Ok(tx
        .query_one(&stmt, &[&key, &delta])
        .await
        .map_err(backend)?
        .get(0))
}

/// Keys are text, which cannot hold NUL in PostgreSQL; no key Berth
/// writes has one, so none is stored, found or written.
fn no_nul() -> MetaError {
    MetaError::Backend(anyhow!("a metadata key with a NUL byte"))
}

/// Writes the statistics, each counter once, in key order (row locks in
/// one order on every host).
async fn write_counts(
    tx: &deadpool_postgres::Transaction<'_>,
    counts: &Pending,
) -> Result<(), tokio_postgres::Error> {
    if counts.is_empty() {
        return Ok(());
    }
    let add = tx.prepare_cached(sql::ADD).await?;
    let mut adds: Vec<_> = counts
        .add
        .iter()
        .filter(|(k, _)| !k.contains('\0'))
        .collect();
    adds.sort();
    for (k, v) in adds {
        tx.execute(&add, &[k, v]).await?;
    }
    let raise = tx.prepare_cached(sql::RAISE).await?;
    let mut raises: Vec<_> = counts
        .raise
        .iter()
        .filter(|(k, _)| !k.contains('\0'))
        .collect();
    raises.sort();
    for (k, v) in raises {
        tx.execute(&raise, &[k, v]).await?;
    }
    Ok(())
}

async fn check(
    tx: &deadpool_postgres::Transaction<'_>,
    key: &str,
    pre: &Precondition,
) -> Result<(), MetaError> {
    let current: Option<i64> = match pre {
        Precondition::None => return Ok(()),
        _ => {
            let stmt = tx.prepare_cached(sql::VERSION_OF).await.map_err(backend)?;
            tx.query_opt(&stmt, &[&key])
                .await
                .map_err(backend)?
                .map(|r| r.get(0))
        }
    };
    let ok = match (pre, current) {
        (Precondition::Absent, None) => true,
        (Precondition::Version(v), Some(c)) => *v == c as u64,
        _ => false,
    };
    if ok { Ok(()) } else { Err(MetaError::Conflict) }
}

/// One commit, inside its savepoint: takes the next version (and with it
/// the sequence row's lock, to the end of the transaction), checks each
/// precondition and applies each write.
async fn apply(
    tx: &deadpool_postgres::Transaction<'_>,
    ops: &[WriteOp],
) -> Result<Vec<u64>, MetaError> {
    let with_nul = |op: &WriteOp| match op {
        WriteOp::Put(k, ..)
        | WriteOp::Delete(k, _)
        | WriteOp::Append(k, _)
        | WriteOp::Check(k, _) => k.contains('\0'),
    };
    if ops.iter().any(with_nul) {
        return Err(no_nul());
    }
    let next = tx
        .prepare_cached(sql::NEXT_VERSION)
        .await
        .map_err(backend)?;
    let version: i64 = tx.query_one(&next, &[]).await.map_err(backend)?.get(0);
    let delete = tx.prepare_cached(sql::DELETE).await.map_err(backend)?;
    let insert = tx.prepare_cached(sql::INSERT).await.map_err(backend)?;
    let notify = tx.prepare_cached(sql::NOTIFY).await.map_err(backend)?;
    let upsert = tx.prepare_cached(sql::UPSERT).await.map_err(backend)?;
    let mut versions = Vec::new();
    let mut appended: HashMap<&str, u32> = HashMap::new();
    for op in ops {
        match op {
            WriteOp::Put(key, value, pre) => {
                check(tx, key, pre).await?;
                tx.execute(&upsert, &[key, value, &version])
                    .await
                    .map_err(backend)?;
                versions.push(version as u64);
            }
            WriteOp::Delete(key, pre) => {
                check(tx, key, pre).await?;
                tx.execute(&delete, &[key]).await.map_err(backend)?;
            }
            WriteOp::Append(prefix, value) => {
                let n = appended.entry(prefix.as_str()).or_insert(0);
                let key = nth_log_key(prefix, version as u64, *n);
                if *n == 0 {
                    // Delivered at commit, to every host listening.
                    tx.execute(&notify, &[&CHANNEL, prefix])
                        .await
                        .map_err(backend)?;
                }
                *n += 1;
                tx.execute(&insert, &[&key, value, &version])
                    .await
                    .map_err(backend)?;
                versions.push(version as u64);
            }
            WriteOp::Check(key, pre) => check(tx, key, pre).await?,
        }
    }
    Ok(versions)
}

/// Listens for other hosts' appends and wakes this host's watchers;
/// reconnects (after a pause) when the connection drops.
async fn listen(config: tokio_postgres::Config, watchers: Watchers) {
    use futures::StreamExt;
    loop {
        match config.connect(NoTls).await {
            Ok((client, mut connection)) => {
                let (tx, mut rx) = mpsc::unbounded_channel();
                let messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
                let pump = tokio::spawn(async move {
                    let mut messages = std::pin::pin!(messages);
                    while let Some(m) = messages.next().await {
                        match m {
                            Ok(tokio_postgres::AsyncMessage::Notification(n)) => {
                                let _ = tx.send(n.payload().to_string());
                            }
                            Ok(_) => {}
                            Err(e) => {
                                tracing::warn!(error = %causes(&e), "PostgreSQL listener connection failed");
                                break;
                            }
                        }
                    }
                });
                if let Err(e) = client.batch_execute(&format!("LISTEN {CHANNEL}")).await {
                    tracing::warn!(error = %causes(&e), "PostgreSQL LISTEN failed");
                } else {
                    // Appends made while this host was not listening
                    // (its first connection, or a reconnect): every
                    // watcher looks once.
                    watchers.wake_all();
                    while let Some(prefix) = rx.recv().await {
                        watchers.wake(&prefix);
                    }
                }
                pump.abort();
            }
            Err(e) => tracing::warn!(error = %causes(&e), "PostgreSQL listener could not connect"),
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

#[cfg(test)]
mod tests {
    //! The contract on a real PostgreSQL: `BERTH_TEST_POSTGRES_URL` names
    //! a server where the test may create databases (`make test` starts
    //! one: `scripts/install-test-deps`). Each test gets a database of its
    //! own.
    use super::super::{Metadata, contract};
    use std::sync::Arc;

    /// A fresh database on the test server; the url to reach it.
    async fn database() -> String {
        let base = std::env::var("BERTH_TEST_POSTGRES_URL").expect(
            "BERTH_TEST_POSTGRES_URL: a PostgreSQL server for these tests (make test starts one)",
        );
        let (client, connection) = tokio_postgres::connect(&base, tokio_postgres::NoTls)
            .await
            .expect("connecting to the test PostgreSQL");
        tokio::spawn(connection);
        let name = format!("berth_test_{}", crate::capabilities::blobs::random_id());
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        let mut config: tokio_postgres::Config = base.parse().unwrap();
        config.dbname(&name);
        // Back to a url: user, password, host and port of the base one.
        let host = match &config.get_hosts()[0] {
            tokio_postgres::config::Host::Tcp(h) => h.clone(),
            tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let user = config.get_user().unwrap_or("postgres");
        let password = config
            .get_password()
            .map(|p| format!(":{}", String::from_utf8_lossy(p)))
            .unwrap_or_default();
        format!("postgres://{user}{password}@{host}:{port}/{name}")
    }

    async fn store() -> Metadata {
        Metadata::Postgres(super::Postgres::open(&database().await, 4).await.unwrap())
    }

    #[tokio::test]
    #[ignore = "needs PostgreSQL (BERTH_TEST_POSTGRES_URL); make test runs it"]
    async fn versioned_writes_and_scans() {
        contract::versioned_writes_and_scans(&store().await).await;
    }

    #[tokio::test]
    #[ignore = "needs PostgreSQL (BERTH_TEST_POSTGRES_URL); make test runs it"]
    async fn counters() {
        contract::counters(&store().await).await;
    }

    #[tokio::test]
    #[ignore = "needs PostgreSQL (BERTH_TEST_POSTGRES_URL); make test runs it"]
    async fn appends_form_a_log_in_commit_order() {
        contract::appends_form_a_log_in_commit_order(&store().await).await;
    }

    #[tokio::test]
    #[ignore = "needs PostgreSQL (BERTH_TEST_POSTGRES_URL); make test runs it"]
    async fn appends_in_one_commit_follow_each_other_and_checks_write_nothing() {
        contract::appends_in_one_commit_follow_each_other_and_checks_write_nothing(&store().await)
            .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs PostgreSQL (BERTH_TEST_POSTGRES_URL); make test runs it"]
    async fn grouped_commits_fail_alone() {
        contract::grouped_commits_fail_alone(Arc::new(store().await)).await;
    }

    /// Two stores on one database, as two hosts.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs PostgreSQL (BERTH_TEST_POSTGRES_URL); make test runs it"]
    async fn the_log_never_fills_in_behind_a_reader_across_hosts() {
        let url = database().await;
        let a = Metadata::Postgres(super::Postgres::open(&url, 4).await.unwrap());
        let b = Metadata::Postgres(super::Postgres::open(&url, 4).await.unwrap());
        contract::the_log_never_fills_in_behind_a_reader(Arc::new(a), Arc::new(b)).await;
    }

    /// An append by one host wakes the watchers of another.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs PostgreSQL (BERTH_TEST_POSTGRES_URL); make test runs it"]
    async fn appends_wake_other_hosts() {
        let url = database().await;
        let a = Metadata::Postgres(super::Postgres::open(&url, 4).await.unwrap());
        let b = Metadata::Postgres(super::Postgres::open(&url, 4).await.unwrap());
        let woken = b.watch(&["event/".to_string()]);
        // The listener connects in the background: retry until it hears.
        let heard = async {
            loop {
                let notified = woken.notified();
                a.commit(vec![super::WriteOp::Append("event/".into(), b"e".to_vec())])
                    .await
                    .unwrap();
                if tokio::time::timeout(std::time::Duration::from_millis(500), notified)
                    .await
                    .is_ok()
                {
                    return;
                }
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(20), heard)
            .await
            .expect("host b never heard host a's append");
    }

    /// Keys with NUL (which PostgreSQL text cannot hold) are never found
    /// nor written, and a page bound holding one pages as without it.
    #[tokio::test]
    #[ignore = "needs PostgreSQL (BERTH_TEST_POSTGRES_URL); make test runs it"]
    async fn nul_keys_are_refused_not_failed() {
        let m = store().await;
        let put = |k: &str| super::WriteOp::Put(k.into(), vec![1], super::Precondition::None);
        m.commit(vec![put("t/a"), put("t/b")]).await.unwrap();
        assert!(m.get("t/a\0x").await.unwrap().is_none());
        assert_eq!(
            m.get_many(&["t/a".into(), "t/\0".into()]).await.unwrap()[1],
            None
        );
        let keys: Vec<String> = m
            .scan("t/", Some("t/a\0zz"), 10)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.key)
            .collect();
        assert_eq!(keys, ["t/b"]);
        assert!(m.scan("t/\0", None, 10).await.unwrap().is_empty());
        assert!(matches!(
            m.commit(vec![put("t/\0c")]).await,
            Err(super::MetaError::Backend(_))
        ));
        assert_eq!(m.scan("t/", None, 10).await.unwrap().len(), 2);
    }

    /// Hosts starting at once migrate once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs PostgreSQL (BERTH_TEST_POSTGRES_URL); make test runs it"]
    async fn hosts_starting_together_migrate_once() {
        let url = database().await;
        let opens: Vec<_> = (0..4)
            .map(|_| {
                let url = url.clone();
                tokio::spawn(async move { super::Postgres::open(&url, 2).await.map(|_| ()) })
            })
            .collect();
        for o in opens {
            o.await.unwrap().unwrap();
        }
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        let n: i64 = client
            .query_one("SELECT count(*) FROM berth_migrations", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(n as usize, super::MIGRATIONS.len());
    }
}
