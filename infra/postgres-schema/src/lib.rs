//! The PostgreSQL schema of Berth's metadata and the statements that read
//! and write it, in one place for the two code paths that use them: the
//! host's native backend (`infra/host/src/capabilities/metadata/postgres.rs`)
//! and the Spin build's adapter (`infra/spin/adapters/metadata-postgres`).
//! Both may share one database, so they must agree on every table, key
//! order and version rule; keeping the SQL here means they cannot drift.
//!
//! The tables:
//!
//! - `berth_kv (key TEXT COLLATE "C", value BYTEA, version BIGINT)`: the
//!   versioned entries; the `C` collation sorts keys by their UTF-8
//!   bytes, whatever the database's locale.
//! - `berth_counters (key TEXT COLLATE "C", value BIGINT)`: counters and
//!   statistics (missing = 0).
//! - `berth_sequence (id = 0, next BIGINT)`: one row, the next commit
//!   version. A commit takes its version by updating it, which holds the
//!   row's lock to the end of its transaction: commits are applied one
//!   after another, in version order.
//! - `berth_migrations (version INT, applied TIMESTAMPTZ)`: which of
//!   [`MIGRATIONS`] have run.
//!
//! Parameters are PostgreSQL's `$n`; each statement's docstring gives their
//! types (`TEXT`, `BYTEA`, `BIGINT`, `INT`, `TEXT[]`) and the columns it
//! returns. Keys are `TEXT`, which cannot hold NUL: callers never pass a
//! key with NUL (such keys are never stored).

/// The schema, in order: migration `n` (from 1) is `MIGRATIONS[n - 1]`,
/// its statements in order. Each migration runs once, in one transaction,
/// with its number recorded in `berth_migrations` ([`RECORD_MIGRATION`]).
///
/// Statements, not one script: a client that runs one statement per call
/// (the extended protocol, as `spin:postgres` does) runs them one by one;
/// one that can run a script may join them with `;`.
pub const MIGRATIONS: &[&[&str]] = &[
    // 1: the versioned table, counters and the commit sequence.
    &[
        r#"CREATE TABLE berth_kv (
               key TEXT COLLATE "C" PRIMARY KEY,
               value BYTEA NOT NULL,
               version BIGINT NOT NULL)"#,
        r#"CREATE TABLE berth_counters (
               key TEXT COLLATE "C" PRIMARY KEY,
               value BIGINT NOT NULL)"#,
        "CREATE TABLE berth_sequence (
               id INT PRIMARY KEY CHECK (id = 0),
               next BIGINT NOT NULL)",
        "INSERT INTO berth_sequence (id, next) VALUES (0, 1)",
    ],
];

/// The advisory lock (a transaction-level one, `pg_advisory_xact_lock`)
/// migrations run under, so hosts and adapters starting together apply
/// each migration once. Any fixed number; every client must use this one.
pub const MIGRATION_LOCK: i64 = 0x6265_7274_6800;

/// The `NOTIFY` channel a commit that appends sends each appended prefix
/// on (the payload is the prefix); hosts `LISTEN` on it to wake their
/// watchers of other hosts' appends.
pub const CHANNEL: &str = "berth_appends";

/// The largest code point, appended to a prefix to bound a scan: in the
/// `C` collation `[prefix, prefix + U+10FFFF)` holds every key starting
/// with `prefix` (the database must be UTF-8, see [`SERVER_ENCODING`]).
pub const SCAN_BOUND: char = '\u{10FFFF}';

// --- Migrations -----------------------------------------------------------

/// The database's encoding; one text column. Keys sort by their bytes
/// only in a `UTF8` database (the scan bound [`SCAN_BOUND`] must be
/// representable), so anything else is refused.
pub const SERVER_ENCODING: &str = "SHOW server_encoding";

/// Takes the migration lock until the transaction ends. `$1 BIGINT` =
/// [`MIGRATION_LOCK`].
pub const LOCK_MIGRATIONS: &str = "SELECT pg_advisory_xact_lock($1)";

/// Creates the migration record, if missing.
pub const CREATE_MIGRATIONS: &str = "CREATE TABLE IF NOT EXISTS berth_migrations (
             version INT PRIMARY KEY,
             applied TIMESTAMPTZ NOT NULL DEFAULT now())";

/// The last migration applied, 0 for none; one `INT` column. A number
/// above `MIGRATIONS.len()` is a schema newer than the client: refuse it.
pub const MIGRATED: &str = "SELECT COALESCE(MAX(version), 0) FROM berth_migrations";

/// Records that a migration ran. `$1 INT`: its number (from 1).
pub const RECORD_MIGRATION: &str = "INSERT INTO berth_migrations (version) VALUES ($1)";

// --- Reads ----------------------------------------------------------------

/// One entry. `$1 TEXT`: the key. Returns `value BYTEA, version BIGINT`,
/// no row when missing.
pub const GET: &str = "SELECT value, version FROM berth_kv WHERE key = $1";

/// Several entries. `$1 TEXT[]`: the keys. Returns `key TEXT, value BYTEA,
/// version BIGINT` for those that exist, in no order.
pub const GET_MANY: &str = "SELECT key, value, version FROM berth_kv WHERE key = ANY($1)";

/// Several counters. `$1 TEXT[]`: the keys. Returns `key TEXT, value
/// BIGINT` for those that exist, in no order (missing = 0).
pub const COUNTERS: &str = "SELECT key, value FROM berth_counters WHERE key = ANY($1)";

/// A scan's first page. `$1 TEXT`: the prefix; `$2 TEXT`: the prefix +
/// [`SCAN_BOUND`]; `$3 BIGINT`: the limit. Returns `key TEXT, value BYTEA,
/// version BIGINT` in key order.
pub const SCAN_FROM: &str =
    "SELECT key, value, version FROM berth_kv WHERE key >= $1 AND key < $2 ORDER BY key LIMIT $3";

/// A scan's later page. `$1 TEXT`: the `after` key (at or above the
/// prefix); `$2`, `$3` and the result as [`SCAN_FROM`].
pub const SCAN_AFTER: &str =
    "SELECT key, value, version FROM berth_kv WHERE key > $1 AND key < $2 ORDER BY key LIMIT $3";

/// How many keys a range holds (metrics). `$1 TEXT`: the lower bound,
/// exclusive; `$2 TEXT`: the upper bound, exclusive. Returns one `BIGINT`.
pub const COUNT_BETWEEN: &str = "SELECT count(*) FROM berth_kv WHERE key > $1 AND key < $2";

/// The bytes the metadata tables take on disk (metrics); no parameters.
/// Returns one `BIGINT`.
pub const STORE_BYTES: &str = "SELECT (pg_total_relation_size('berth_kv') + pg_total_relation_size('berth_counters'))::BIGINT";

// --- Commits --------------------------------------------------------------

/// Locks the sequence row to the end of the transaction; no parameters.
/// A writing transaction takes it first, so every row lock it takes after
/// (counters included) is taken under it: writers never wait on each other
/// in opposite orders.
pub const LOCK_SEQUENCE: &str = "SELECT 1 FROM berth_sequence WHERE id = 0 FOR UPDATE";

/// Takes the commit's version; no parameters. Returns one `BIGINT`: the
/// version, never reused (a deleted key written again gets a new one).
pub const NEXT_VERSION: &str =
    "UPDATE berth_sequence SET next = next + 1 WHERE id = 0 RETURNING next - 1";

/// A key's current version, to check a precondition. `$1 TEXT`: the key.
/// Returns `version BIGINT`, no row when missing.
pub const VERSION_OF: &str = "SELECT version FROM berth_kv WHERE key = $1";

/// A put. `$1 TEXT`: the key; `$2 BYTEA`: the value; `$3 BIGINT`: the
/// commit's version.
pub const UPSERT: &str = "INSERT INTO berth_kv (key, value, version) VALUES ($1, $2, $3)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value, version = excluded.version";

/// An append (its key is new: it holds the commit's fresh version).
/// `$1 TEXT`: the log key; `$2 BYTEA`: the value; `$3 BIGINT`: the
/// commit's version.
pub const INSERT: &str = "INSERT INTO berth_kv (key, value, version) VALUES ($1, $2, $3)";

/// A delete. `$1 TEXT`: the key.
pub const DELETE: &str = "DELETE FROM berth_kv WHERE key = $1";

/// Announces an append, delivered when the transaction commits. `$1 TEXT`:
/// [`CHANNEL`]; `$2 TEXT`: the prefix appended under.
pub const NOTIFY: &str = "SELECT pg_notify($1, $2)";

// --- Counters -------------------------------------------------------------

/// Adds to a counter and returns the new value. `$1 TEXT`: the key; `$2
/// BIGINT`: the delta. Returns one `BIGINT`. Fails (numeric overflow,
/// SQLSTATE 22003) past the range of `BIGINT`.
pub const INCREMENT: &str = "INSERT INTO berth_counters (key, value) VALUES ($1, $2)
             ON CONFLICT (key) DO UPDATE SET value = berth_counters.value + excluded.value
             RETURNING value";

/// Adds to a statistic (`stat::add`). `$1 TEXT`: the key; `$2 BIGINT`: the
/// amount.
pub const ADD: &str = "INSERT INTO berth_counters (key, value) VALUES ($1, $2)
             ON CONFLICT (key) DO UPDATE SET value = berth_counters.value + excluded.value";

/// Raises a statistic to at least a value (`stat::raise`). `$1 TEXT`: the
/// key; `$2 BIGINT`: the value.
pub const RAISE: &str = "INSERT INTO berth_counters (key, value) VALUES ($1, $2)
             ON CONFLICT (key) DO UPDATE SET value = GREATEST(berth_counters.value, excluded.value)";
