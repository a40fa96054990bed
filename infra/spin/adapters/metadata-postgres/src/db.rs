//! The connections to PostgreSQL: one per operation (a commit, a read),
//! opened from the Spin variable `metadata_postgres_url` and dropped at its
//! end, so no instance holds a connection of the platform's pool between
//! requests (an instance lives for many); statements through the
//! synchronous functions of `spin:postgres/postgres@4.2.0`; transactions;
//! the schema's migrations when it is missing; and how PostgreSQL's
//! failures become `store-error`s.
//!
//! Why the synchronous functions (`open`, `query`, `execute`) and not
//! `open-async`/`query-async`/`execute-async`: the local host implements
//! the synchronous ones (it provides no row streams), and a metadata
//! operation runs one statement at a time on one connection anyway — a
//! commit is a sequence of statements each waiting for the previous one.
//! The cost: a synchronous call blocks the instance (on `berth serve`, the
//! whole store: every request the instance serves at once) for the
//! statement's round trip. An operation's connection is its own, so the
//! statements of two operations never mix on one.

use crate::StoreError;
use berth_postgres_schema as sql;
use spin_sdk::pg::wit::postgres::{self as pg, Connection, DbValue, ParameterValue};
use std::cell::RefCell;
use std::rc::Rc;

/// The Spin variable holding the database's address: a URL
/// (`postgres://user:password@host:port/database`) or a key-value string
/// (`host=… user=… password=… dbname=…`), as `spin:postgres` takes it.
const URL_VARIABLE: &str = "metadata_postgres_url";

/// SQLSTATE `undefined_table`: a table of the schema does not exist yet.
const UNDEFINED_TABLE: &str = "42P01";

/// Why a statement or an operation failed.
#[derive(Debug)]
pub enum Failure {
    /// A precondition of a commit failed (the commit was rolled back).
    Conflict,
    /// The schema is not there yet (SQLSTATE 42P01): migrate, then retry.
    NoSchema(String),
    /// PostgreSQL, the platform or the adapter failed (the connection
    /// ends with the operation either way). The message is for logs.
    Backend(String),
}

impl From<Failure> for StoreError {
    fn from(f: Failure) -> StoreError {
        match f {
            Failure::Conflict => StoreError::Conflict,
            Failure::NoSchema(m) | Failure::Backend(m) => backend(m),
        }
    }
}

/// A backend failure: the detail (PostgreSQL's reason, its user) goes to
/// the log; components, and so clients, learn only that storage failed,
/// as on the host.
fn backend(detail: String) -> StoreError {
    eprintln!("berth metadata: {detail}");
    StoreError::Backend("metadata storage failed; see the registry's log".into())
}

/// An open connection and the address it was opened with (kept to strip
/// it, and its password, from error messages). Dropping it returns the
/// connection to the platform.
pub struct Db {
    connection: Connection,
    address: Rc<str>,
}

thread_local! {
    /// The address, once read (the variable does not change while the
    /// instance lives).
    static ADDRESS: RefCell<Option<Rc<str>>> = const { RefCell::new(None) };
}

/// The database's address, from the variable the first time.
///
/// Errors: `backend` when the variable is missing.
async fn address() -> Result<Rc<str>, StoreError> {
    if let Some(a) = ADDRESS.with_borrow(|a| a.clone()) {
        return Ok(a);
    }
    let address: Rc<str> = spin_sdk::variables::get(URL_VARIABLE)
        .await
        .map_err(|e| {
            use spin_sdk::variables::Error as E;
            let (E::InvalidName(m) | E::Undefined(m) | E::Provider(m) | E::Other(m)) = e;
            backend(format!("the Spin variable {URL_VARIABLE}: {m}"))
        })?
        .into();
    ADDRESS.set(Some(address.clone()));
    Ok(address)
}

/// A connection of the operation's own.
///
/// Errors: `backend` when PostgreSQL cannot be reached (with its reason,
/// never the address).
fn open(address: Rc<str>) -> Result<Db, StoreError> {
    let connection =
        Connection::open(&address).map_err(|e| StoreError::from(failure(e, &address)))?;
    Ok(Db {
        connection,
        address,
    })
}

/// Runs `op` on a connection of its own. When the schema is missing
/// (PostgreSQL answers `undefined_table`), migrates it ([`migrate`]) and
/// runs `op` once more: no request pays a migration check, and a fresh
/// database is set up by the first request that needs it.
pub async fn run<T>(op: impl Fn(&Db) -> Result<T, Failure>) -> Result<T, StoreError> {
    let db = open(address().await?)?;
    attempt(&db, op)
}

/// [`run`] for synchronous exports. Reading the address the first time is
/// an async call: `block_on` does not wait when the host answers at once
/// (as it does for variables it holds), which a synchronous export needs —
/// one that had to wait would trap ("cannot block a synchronous task").
pub fn run_now<T>(op: impl Fn(&Db) -> Result<T, Failure>) -> Result<T, StoreError> {
    let address = match ADDRESS.with_borrow(|a| a.clone()) {
        Some(a) => a,
        None => spin_sdk::wit_bindgen::block_on(address())?,
    };
    let db = open(address)?;
    attempt(&db, op)
}

fn attempt<T>(db: &Db, op: impl Fn(&Db) -> Result<T, Failure>) -> Result<T, StoreError> {
    let result = match op(db) {
        Err(Failure::NoSchema(_)) => migrate(db).and_then(|()| op(db)),
        result => result,
    };
    result.map_err(StoreError::from)
}

impl Db {
    /// Runs a statement that returns rows; the rows, each a list of column
    /// values in the statement's column order.
    pub fn query(
        &self,
        statement: &str,
        params: &[ParameterValue],
    ) -> Result<Vec<Vec<DbValue>>, Failure> {
        self.connection
            .query(statement, params)
            .map(|set| set.rows)
            .map_err(|e| failure(e, &self.address))
    }

    /// Runs a statement for its effect; how many rows it touched.
    pub fn execute(&self, statement: &str, params: &[ParameterValue]) -> Result<u64, Failure> {
        self.connection
            .execute(statement, params)
            .map_err(|e| failure(e, &self.address))
    }

    /// Runs `body` in one transaction: committed when it returns `Ok`,
    /// rolled back when it fails (its failure is returned). A rollback
    /// that fails is a [`Failure::Backend`]: the connection ends with the
    /// operation, and the platform rolls back what it left open.
    pub fn transaction<T>(
        &self,
        body: impl FnOnce(&Db) -> Result<T, Failure>,
    ) -> Result<T, Failure> {
        self.execute("BEGIN", &[])?;
        let result = body(self).and_then(|value| self.execute("COMMIT", &[]).map(|_| value));
        if let Err(failed) = result {
            // After a failed COMMIT PostgreSQL has ended the transaction
            // already; the ROLLBACK then only warns, harmlessly.
            return Err(match self.execute("ROLLBACK", &[]) {
                Ok(_) => failed,
                Err(e) => Failure::Backend(format!(
                    "{}; and the rollback failed: {}",
                    message(&failed),
                    message(&e)
                )),
            });
        }
        result
    }
}

fn message(f: &Failure) -> &str {
    match f {
        Failure::Conflict => "precondition failed",
        Failure::NoSchema(m) | Failure::Backend(m) => m,
    }
}

/// Applies the migrations not yet applied, as the host's backend does
/// (`infra/host/src/capabilities/metadata/postgres.rs`, `migrate`): in one
/// transaction, under the advisory lock [`sql::MIGRATION_LOCK`], recorded
/// in `berth_migrations`, so hosts and instances migrating together apply
/// each once. Refuses a database not encoded in UTF-8 (keys sort by their
/// bytes only there) and a schema newer than this adapter knows.
///
/// Runs only when a statement found a table missing; a schema that exists
/// is never checked (that would cost every request a round trip), so a
/// schema migrated past this adapter is refused only if a table this
/// adapter uses is gone.
fn migrate(db: &Db) -> Result<(), Failure> {
    let encoding = db
        .query(sql::SERVER_ENCODING, &[])?
        .into_iter()
        .next()
        .and_then(|row| row.into_iter().next());
    match encoding {
        Some(DbValue::Str(e)) if e == "UTF8" => {}
        Some(DbValue::Str(e)) => {
            return Err(Failure::Backend(format!(
                "the PostgreSQL database is encoded {e}: Berth needs UTF8 (CREATE DATABASE … ENCODING 'UTF8')"
            )));
        }
        other => return Err(unexpected("server_encoding", other.as_ref())),
    }
    let migrated = db.transaction(|db| {
        db.execute(sql::LOCK_MIGRATIONS, &[ParameterValue::Int64(sql::MIGRATION_LOCK)])?;
        db.execute(sql::CREATE_MIGRATIONS, &[])?;
        let done = int(&one(db.query(sql::MIGRATED, &[])?, "the migrated version")?)?;
        let known = sql::MIGRATIONS.len() as i64;
        if done > known {
            return Err(Failure::Backend(format!(
                "the PostgreSQL schema is at version {done}, newer than this berth knows ({known}): upgrade berth"
            )));
        }
        for (i, statements) in sql::MIGRATIONS.iter().enumerate() {
            let version = i as i32 + 1;
            if i64::from(version) <= done {
                continue;
            }
            // One statement per call: `spin:postgres` prepares each one,
            // and a prepared statement holds a single command.
            for statement in *statements {
                db.execute(statement, &[]).map_err(|e| {
                    Failure::Backend(format!("PostgreSQL migration {version}: {}", message(&e)))
                })?;
            }
            db.execute(sql::RECORD_MIGRATION, &[ParameterValue::Int32(version)])?;
            eprintln!("metadata-postgres: PostgreSQL metadata schema migrated to version {version}");
        }
        Ok(())
    });
    // A table missing even now is no reason to migrate again: report it.
    migrated.map_err(|f| match f {
        Failure::NoSchema(m) => Failure::Backend(m),
        f => f,
    })
}

/// `pg`'s failure as a [`Failure`], its message PostgreSQL's own reason
/// (severity, message, detail, SQLSTATE), stripped of the address and
/// password should a provider have quoted them.
fn failure(e: pg::Error, address: &str) -> Failure {
    use pg::{Error as E, QueryError as Q};
    let (kind, text): (fn(String) -> Failure, String) = match e {
        E::QueryFailed(Q::DbError(d)) => {
            let mut text = format!("{}: {}", d.severity, d.message);
            if let Some(detail) = d.detail {
                text.push_str(&format!(" ({detail})"));
            }
            text.push_str(&format!(" [SQLSTATE {}]", d.code));
            if d.code == UNDEFINED_TABLE {
                (Failure::NoSchema, text)
            } else {
                (Failure::Backend, text)
            }
        }
        // A provider without structured errors: tokio-postgres' text for
        // a missing table is `relation "…" does not exist`.
        E::QueryFailed(Q::Text(t))
            if t.contains("relation \"berth_") && t.contains("does not exist") =>
        {
            (Failure::NoSchema, t)
        }
        E::QueryFailed(Q::Text(t)) => (Failure::Backend, t),
        E::ConnectionFailed(m) => (Failure::Backend, format!("connection failed: {m}")),
        E::Other(m) => (Failure::Backend, m),
        E::BadParameter(m) => (Failure::Backend, format!("bad parameter: {m}")),
        E::ValueConversionFailed(m) => (Failure::Backend, format!("value conversion failed: {m}")),
    };
    kind(format!("PostgreSQL: {}", redact(text, address)))
}

/// `text` without `address` or the password in it.
fn redact(mut text: String, address: &str) -> String {
    if !address.is_empty() && text.contains(address) {
        text = text.replace(address, "<metadata_postgres_url>");
    }
    if let Some(password) = password(address) {
        let decoded = percent_decoded(password);
        for p in [password, decoded.as_str()] {
            // A password of one or two characters protects nothing;
            // replacing it would garble the message.
            if p.len() >= 3 && text.contains(p) {
                text = text.replace(p, "<password>");
            }
        }
    }
    text
}

/// The password in a URL (`scheme://user:password@host…`) or in a
/// key-value string (`… password=secret …`, possibly quoted).
fn password(address: &str) -> Option<&str> {
    if let Some((_, rest)) = address.split_once("://") {
        let authority = rest.split(['/', '?']).next().unwrap_or(rest);
        let (userinfo, _) = authority.rsplit_once('@')?;
        return userinfo.split_once(':').map(|(_, p)| p);
    }
    let at = address.find("password")?;
    let value = address[at + "password".len()..]
        .trim_start()
        .strip_prefix('=')?
        .trim_start();
    match value.strip_prefix('\'') {
        Some(quoted) => quoted.split('\'').next(),
        None => value.split_whitespace().next(),
    }
}

/// `s` with `%XX` escapes decoded (what a URL's password means).
fn percent_decoded(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A column value PostgreSQL should not have given (a schema other than
/// this adapter's).
fn unexpected(what: &str, value: Option<&DbValue>) -> Failure {
    Failure::Backend(format!("PostgreSQL: unexpected {what}: {value:?}"))
}

/// The one row's one value of a statement that returns exactly one
/// (`RETURNING`, an aggregate).
pub fn one(rows: Vec<Vec<DbValue>>, what: &str) -> Result<DbValue, Failure> {
    rows.into_iter()
        .next()
        .and_then(|row| row.into_iter().next())
        .ok_or_else(|| Failure::Backend(format!("PostgreSQL: no {what} returned")))
}

/// An integer column (`BIGINT`, `INT`, …).
pub fn int(value: &DbValue) -> Result<i64, Failure> {
    match value {
        DbValue::Int64(v) => Ok(*v),
        DbValue::Int32(v) => Ok(i64::from(*v)),
        DbValue::Int16(v) => Ok(i64::from(*v)),
        DbValue::Int8(v) => Ok(i64::from(*v)),
        other => Err(unexpected("integer", Some(other))),
    }
}

/// A `TEXT` column.
pub fn text(value: DbValue) -> Result<String, Failure> {
    match value {
        DbValue::Str(s) => Ok(s),
        other => Err(unexpected("text", Some(&other))),
    }
}

/// A `BYTEA` column.
pub fn bytes(value: DbValue) -> Result<Vec<u8>, Failure> {
    match value {
        DbValue::Binary(b) => Ok(b),
        other => Err(unexpected("bytea", Some(&other))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_passwords_never_reach_messages() {
        let url = "postgres://berth:s%40cret@db:5432/berth";
        assert_eq!(password(url), Some("s%40cret"));
        let text = redact(format!("failed for {url}: s@cret and s%40cret"), url);
        assert!(!text.contains("cret"), "{text}");
        let kv = "host=db user=berth password='a b c' dbname=berth";
        assert_eq!(password(kv), Some("a b c"));
        assert_eq!(password("host=db password = xyz dbname=b"), Some("xyz"));
        assert_eq!(password("postgres://berth@db/berth"), None);
    }
}
