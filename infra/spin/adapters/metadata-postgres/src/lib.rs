//! `berth:registry/metadata` over PostgreSQL, for the Spin build: the
//! component of world `berth:registry/metadata-adapter` (`wit/adapters.wit`)
//! that `berth compose` plugs into every Berth component, so Berth runs on
//! Spin, which has no metadata capability of its own. It imports only
//! `spin:postgres/postgres@4.2.0` and `spin:variables/variables@3.0.0`
//! (the address: the variable `metadata_postgres_url`).
//!
//! Same schema, statements and semantics as the host's PostgreSQL backend
//! (`infra/host/src/capabilities/metadata/postgres.rs`); both take the SQL
//! from `berth-postgres-schema`, so a host and a Spin app may share one
//! database: versions come from the one `berth_sequence` row, keys sort by
//! their bytes, appends form one log in commit order.
//!
//! What differs, because a Spin instance has no life of its own between
//! requests (no task runs in it when no request does):
//!
//! - **No group commit**: each `commit` is its own transaction (`BEGIN`,
//!   lock the sequence row, take the version, check and apply, `COMMIT`).
//!   The host folds concurrent commits into one transaction; here commits
//!   of different instances queue on the sequence row's lock instead.
//! - **`note` writes at once** (the host buffers statistics up to half a
//!   second): an instance may end right after the call, and nothing of it
//!   would remain to write them later. So `counters` reads the table only,
//!   and a pull waits for its statistics' write (one statement).
//! - **Migrations on demand**: no request checks the schema; a statement
//!   that finds a table missing (SQLSTATE 42P01) migrates it, as the host
//!   does at start, and runs again ([`db::run`]).
//! - **No wake-ups of its own**: a commit that appends still sends
//!   `NOTIFY` (hosts sharing the database hear it); nothing here listens.
//!
//! Errors: a failed precondition is `conflict`; everything else is
//! `backend` with PostgreSQL's reason (`PostgreSQL: ERROR: … [SQLSTATE …]`),
//! never the address or password.

mod db;

spin_sdk::wit_bindgen::generate!({
    runtime_path: "::spin_sdk::wit_bindgen::rt",
    world: "berth:registry/metadata-adapter",
    path: "../../../../wit",
    generate_all,
});

use berth_postgres_schema as sql;
use db::{Db, Failure, bytes, int, one, text};
use exports::berth::registry::metadata::{Entry, Guest, Precondition, Stat, StoreError, WriteOp};
use spin_sdk::pg::wit::postgres::{DbValue, ParameterValue as P};
use std::collections::BTreeMap;

/// The exporting type of `berth:registry/metadata`.
struct Metadata;

export!(Metadata);

/// Keys are `TEXT`, which cannot hold NUL in PostgreSQL; no key Berth
/// writes has one, so none is stored, found or written (as on the host:
/// reads find nothing, writes fail with this).
fn no_nul() -> Failure {
    Failure::Backend("a metadata key with a NUL byte".into())
}

/// An entry from a row `key, value, version` (or `value, version` with
/// the key given).
fn entry(key: Option<String>, row: Vec<DbValue>) -> Result<Entry, Failure> {
    let mut columns = row.into_iter();
    let mut next = || {
        columns
            .next()
            .ok_or_else(|| Failure::Backend("PostgreSQL: a row with too few columns".into()))
    };
    let key = match key {
        Some(k) => k,
        None => text(next()?)?,
    };
    let value = bytes(next()?)?;
    let version = int(&next()?)? as u64;
    Ok(Entry {
        key,
        value,
        version,
    })
}

/// The keys a `= ANY($1)` statement asks for: those without NUL (the
/// others are never stored).
fn asked(keys: &[String]) -> P {
    P::ArrayStr(
        keys.iter()
            .filter(|k| !k.contains('\0'))
            .map(|k| Some(k.clone()))
            .collect(),
    )
}

/// Whether `key` meets `pre`; [`Failure::Conflict`] when not.
fn check(db: &Db, key: &str, pre: &Precondition) -> Result<(), Failure> {
    if let Precondition::None = pre {
        return Ok(());
    }
    let current = match db
        .query(sql::VERSION_OF, &[P::Str(key.into())])?
        .into_iter()
        .next()
    {
        Some(row) => Some(int(row.first().unwrap_or(&DbValue::DbNull))?),
        None => None,
    };
    let ok = match (pre, current) {
        (Precondition::Absent, None) => true,
        (Precondition::Version(v), Some(c)) => *v == c as u64,
        _ => false,
    };
    if ok { Ok(()) } else { Err(Failure::Conflict) }
}

/// The key an append under `prefix` takes in the commit of `version`: the
/// version as 20 digits, and for the `n`th further append under the same
/// prefix in one commit (from 1) `.<n, 5 digits>` after it (`append` in
/// `wit/store.wit`; the host's `nth_log_key`).
fn log_key(prefix: &str, version: u64, n: u32) -> String {
    let mut key = format!("{prefix}{version:020}");
    if n > 0 {
        key.push_str(&format!(".{n:05}"));
    }
    key
}

/// One commit, in its own transaction: locks the sequence row (held to
/// `COMMIT`, so commits of every host and instance are applied one after
/// another in version order), takes the next version, checks each
/// precondition and applies each write in order, as the host's `apply`
/// does. The versions of the puts and appends, in order.
fn commit(db: &Db, ops: &[WriteOp]) -> Result<Vec<u64>, Failure> {
    let with_nul = |op: &WriteOp| match op {
        WriteOp::Put((k, ..))
        | WriteOp::Delete((k, _))
        | WriteOp::Append((k, _))
        | WriteOp::Check((k, _)) => k.contains('\0'),
    };
    if ops.iter().any(with_nul) {
        return Err(no_nul());
    }
    db.transaction(|db| {
        db.execute(sql::LOCK_SEQUENCE, &[])?;
        let version = int(&one(db.query(sql::NEXT_VERSION, &[])?, "version")?)?;
        let mut versions = Vec::new();
        let mut appended: BTreeMap<&str, u32> = BTreeMap::new();
        for op in ops {
            match op {
                WriteOp::Put((key, value, pre)) => {
                    check(db, key, pre)?;
                    db.execute(
                        sql::UPSERT,
                        &[
                            P::Str(key.clone()),
                            P::Binary(value.clone()),
                            P::Int64(version),
                        ],
                    )?;
                    versions.push(version as u64);
                }
                WriteOp::Delete((key, pre)) => {
                    check(db, key, pre)?;
                    db.execute(sql::DELETE, &[P::Str(key.clone())])?;
                }
                WriteOp::Append((prefix, value)) => {
                    let n = appended.entry(prefix.as_str()).or_insert(0);
                    let key = log_key(prefix, version as u64, *n);
                    if *n == 0 {
                        // Delivered at COMMIT, to every host listening.
                        db.execute(
                            sql::NOTIFY,
                            &[P::Str(sql::CHANNEL.into()), P::Str(prefix.clone())],
                        )?;
                    }
                    *n += 1;
                    db.execute(
                        sql::INSERT,
                        &[P::Str(key), P::Binary(value.clone()), P::Int64(version)],
                    )?;
                    versions.push(version as u64);
                }
                WriteOp::Check((key, pre)) => check(db, key, pre)?,
            }
        }
        Ok(versions)
    })
}

/// Writes statistics now, each key once (adds summed, raises at their
/// maximum), in key order, adds before raises, as the host's
/// `write_counts`. Each is its own statement, committed alone: a
/// statistic that cannot be written (an overflow) is reported on stderr
/// and costs only itself, and holding one row lock at a time, these
/// writes never wait on a host's commits in an opposite order.
fn write_stats(
    db: &Db,
    add: &BTreeMap<&str, i64>,
    raise: &BTreeMap<&str, i64>,
) -> Result<(), Failure> {
    let writes = add
        .iter()
        .map(|(k, v)| (sql::ADD, k, v))
        .chain(raise.iter().map(|(k, v)| (sql::RAISE, k, v)));
    for (statement, key, value) in writes {
        match db.execute(statement, &[P::Str((*key).into()), P::Int64(*value)]) {
            Ok(_) => {}
            // The schema is missing: migrate and write them all (db::run).
            Err(f @ Failure::NoSchema(_)) => return Err(f),
            Err(f) => {
                eprintln!(
                    "metadata-postgres: statistic {key:?} not written: {}",
                    StoreError::from(f)
                );
            }
        }
    }
    Ok(())
}

impl Guest for Metadata {
    async fn get(key: String) -> Result<Option<Entry>, StoreError> {
        if key.contains('\0') {
            return Ok(None);
        }
        db::run(|db| {
            db.query(sql::GET, &[P::Str(key.clone())])?
                .into_iter()
                .next()
                .map(|row| entry(Some(key.clone()), row))
                .transpose()
        })
        .await
    }

    async fn get_many(keys: Vec<String>) -> Result<Vec<Option<Entry>>, StoreError> {
        let found: BTreeMap<String, Entry> = db::run(|db| {
            db.query(sql::GET_MANY, &[asked(&keys)])?
                .into_iter()
                .map(|row| entry(None, row).map(|e| (e.key.clone(), e)))
                .collect()
        })
        .await?;
        // In the order asked.
        Ok(keys.iter().map(|k| found.get(k).cloned()).collect())
    }

    async fn commit(ops: Vec<WriteOp>) -> Result<Vec<u64>, StoreError> {
        db::run(|db| commit(db, &ops)).await
    }

    /// As the host: one statement (`INSERT … ON CONFLICT … RETURNING`),
    /// atomic on its own; it takes no other lock than its counter's row.
    async fn increment(key: String, delta: i64) -> Result<i64, StoreError> {
        if key.contains('\0') {
            return Err(no_nul().into());
        }
        db::run(|db| {
            int(&one(
                db.query(sql::INCREMENT, &[P::Str(key.clone()), P::Int64(delta)])?,
                "counter",
            )?)
        })
        .await
    }

    /// Writes at once (see the crate's docs); failures are reported on
    /// stderr only, as the interface has no way to return them.
    fn note(stats: Vec<Stat>) {
        let mut add: BTreeMap<&str, i64> = BTreeMap::new();
        let mut raise: BTreeMap<&str, i64> = BTreeMap::new();
        for stat in &stats {
            match stat {
                Stat::Add((k, v)) if !k.contains('\0') => {
                    let sum = add.entry(k).or_insert(0);
                    *sum = sum.saturating_add(*v);
                }
                Stat::Raise((k, v)) if !k.contains('\0') => {
                    let max = raise.entry(k).or_insert(*v);
                    *max = (*max).max(*v);
                }
                _ => {}
            }
        }
        if add.is_empty() && raise.is_empty() {
            return;
        }
        if let Err(e) = db::run_now(|db| write_stats(db, &add, &raise)) {
            eprintln!("metadata-postgres: statistics not written: {e}");
        }
    }

    async fn counters(keys: Vec<String>) -> Result<Vec<i64>, StoreError> {
        let found: BTreeMap<String, i64> = db::run(|db| {
            db.query(sql::COUNTERS, &[asked(&keys)])?
                .into_iter()
                .map(|row| {
                    let mut columns = row.into_iter();
                    let key = text(columns.next().unwrap_or(DbValue::DbNull))?;
                    let value = int(&columns.next().unwrap_or(DbValue::DbNull))?;
                    Ok((key, value))
                })
                .collect()
        })
        .await?;
        Ok(keys
            .iter()
            .map(|k| found.get(k).copied().unwrap_or(0))
            .collect())
    }

    async fn scan(
        prefix: String,
        after: Option<String>,
        limit: u32,
    ) -> Result<Vec<Entry>, StoreError> {
        if prefix.contains('\0') {
            return Ok(Vec::new());
        }
        // [prefix, prefix + U+10FFFF) covers every key starting with
        // prefix (the largest code point sorts last in the C collation).
        let upper = format!("{prefix}{}", sql::SCAN_BOUND);
        // No key holds NUL: keys after `x\0…` are the keys after `x`.
        let after = after
            .as_deref()
            .map(|a| a.split('\0').next().unwrap_or_default());
        let (statement, lower) = match after {
            Some(a) if a.as_bytes() >= prefix.as_bytes() => (sql::SCAN_AFTER, a),
            _ => (sql::SCAN_FROM, prefix.as_str()),
        };
        db::run(|db| {
            db.query(
                statement,
                &[
                    P::Str(lower.into()),
                    P::Str(upper.clone()),
                    P::Int64(i64::from(limit)),
                ],
            )?
            .into_iter()
            .map(|row| entry(None, row))
            .collect()
        })
        .await
    }
}
