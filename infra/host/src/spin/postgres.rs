//! `spin:postgres/postgres@4.2.0` on tokio-postgres: a connection is a
//! client taken from a pool kept per address (so the Spin build's
//! metadata adapter does not pay a PostgreSQL login each time it opens
//! one), returned to it when the connection is dropped — by the guest, or
//! with its instance when that traps or ends. A connection left inside a
//! transaction (a `BEGIN` without its `COMMIT`) is rolled back first, or
//! closed if that fails: what a guest half wrote never reaches the next
//! user of the client.
//!
//! Provided: `open`, `query`, `execute` and their builder and `-async`
//! forms, except `query-async`, whose row stream the adapters do not use
//! (it answers `other`). Values: booleans, integers, floats, text, bytea,
//! and arrays of text and integers; a parameter of another type is
//! `bad-parameter`, a column of another type comes back `unsupported`.
//! Connections are made without TLS, as the host's own PostgreSQL
//! backend's are.

// The error is spin:postgres's own WIT variant: its size is not ours to
// choose, and the trait methods return it as it is.
#![allow(clippy::result_large_err)]

use super::spin::postgres::postgres::{
    Column, DbDataType, DbError, DbValue, Error, Host, HostConnection, HostConnectionBuilder,
    HostConnectionBuilderWithStore, HostConnectionWithStore, ParameterValue, QueryError, Row,
    RowSet,
};
use super::{Spin, SpinView};
use crate::outbound::AllowedHosts;
use deadpool_postgres::{Object, Pool};
use std::collections::HashMap;
use std::sync::Mutex;
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};
use wasmtime::component::{Accessor, FutureReader, Resource, StreamReader};

/// Connections most held at once per address.
const POOL_SIZE: usize = 16;

/// A guest's connection: the pooled client while it is open, and whether
/// the statements run on it left a transaction open.
pub struct Connection {
    client: Option<Object>,
    in_transaction: bool,
}

impl Connection {
    /// Notes what `statement`, which succeeded, did to the transaction.
    fn ran(&mut self, statement: &str) {
        let words: Vec<String> = statement
            .split_whitespace()
            .take(2)
            .map(|w| w.trim_end_matches(';').to_ascii_uppercase())
            .collect();
        match words.iter().map(String::as_str).collect::<Vec<_>>()[..] {
            ["BEGIN", ..] | ["START", "TRANSACTION"] => self.in_transaction = true,
            ["ROLLBACK", "TO"] => {}
            ["COMMIT" | "ROLLBACK" | "END" | "ABORT", ..] => self.in_transaction = false,
            _ => {}
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        let Some(client) = self.client.take() else {
            return;
        };
        if !self.in_transaction {
            return; // back to the pool as it is
        }
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    if client.batch_execute("ROLLBACK").await.is_err() {
                        // Never back to the pool in an unknown state.
                        drop(Object::take(client));
                    }
                });
            }
            Err(_) => drop(Object::take(client)),
        }
    }
}

/// `connection-builder`: the address, until `build`.
pub struct ConnectionBuilder {
    address: String,
}

/// One pool per address the guests open.
#[derive(Default)]
pub struct Pools {
    pools: Mutex<HashMap<String, Pool>>,
}

impl Pools {
    fn pool(&self, address: &str) -> Result<Pool, Error> {
        if let Some(pool) = self.pools.lock().unwrap().get(address) {
            return Ok(pool.clone());
        }
        use crate::capabilities::metadata::postgres::{deadlines, pool};
        let mut config: tokio_postgres::Config = address
            .parse()
            .map_err(|e| Error::ConnectionFailed(format!("the address: {e}")))?;
        deadlines(&mut config);
        let pool = pool(config, POOL_SIZE).map_err(|e| Error::ConnectionFailed(e.to_string()))?;
        Ok(self
            .pools
            .lock()
            .unwrap()
            .entry(address.to_string())
            .or_insert(pool)
            .clone())
    }

    /// A client for `address`, if the component's `allowed_outbound_hosts`
    /// name each of its hosts as `postgres://host:port` (as Spin checks).
    async fn connect(&self, address: &str, allowed: &AllowedHosts) -> Result<Connection, Error> {
        let config: tokio_postgres::Config = address
            .parse()
            .map_err(|e| Error::ConnectionFailed(format!("the address: {e}")))?;
        // tokio-postgres: one port given serves every host; none is 5432.
        let ports = config.get_ports();
        for (i, host) in config.get_hosts().iter().enumerate() {
            let port = match ports {
                [one] => one,
                _ => ports.get(i).unwrap_or(&5432),
            };
            let name = match host {
                tokio_postgres::config::Host::Tcp(h) => h.as_str(),
                tokio_postgres::config::Host::Unix(_) => "localhost",
            };
            if !allowed.allows("postgres", name, *port) {
                return Err(Error::ConnectionFailed(format!(
                    "postgres://{name}:{port} is not in the component's allowed_outbound_hosts"
                )));
            }
        }
        let client = self.pool(address)?.get().await.map_err(|e| {
            Error::ConnectionFailed(crate::capabilities::metadata::postgres::causes(&e))
        })?;
        Ok(Connection {
            client: Some(client),
            in_transaction: false,
        })
    }
}

/// A NULL of whatever type the statement wants there.
#[derive(Debug)]
struct Null;

impl ToSql for Null {
    fn to_sql(
        &self,
        _: &Type,
        _: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        Ok(IsNull::Yes)
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

type Param = Box<dyn ToSql + Sync + Send>;

fn param(p: ParameterValue) -> Result<Param, Error> {
    Ok(match p {
        ParameterValue::Boolean(v) => Box::new(v),
        ParameterValue::Int8(v) => Box::new(v),
        ParameterValue::Int16(v) => Box::new(v),
        ParameterValue::Int32(v) => Box::new(v),
        ParameterValue::Int64(v) => Box::new(v),
        ParameterValue::Floating32(v) => Box::new(v),
        ParameterValue::Floating64(v) => Box::new(v),
        ParameterValue::Str(v) => Box::new(v),
        ParameterValue::Binary(v) => Box::new(v),
        ParameterValue::ArrayInt32(v) => Box::new(v),
        ParameterValue::ArrayInt64(v) => Box::new(v),
        ParameterValue::ArrayStr(v) => Box::new(v),
        ParameterValue::DbNull => Box::new(Null),
        _ => {
            return Err(Error::BadParameter(
                "berth serve's spin:postgres takes booleans, integers, floats, text, bytea, arrays of text and integers, and NULL".into(),
            ));
        }
    })
}

fn data_type(t: &Type) -> DbDataType {
    match *t {
        Type::BOOL => DbDataType::Boolean,
        Type::CHAR => DbDataType::Int8,
        Type::INT2 => DbDataType::Int16,
        Type::INT4 => DbDataType::Int32,
        Type::INT8 => DbDataType::Int64,
        Type::FLOAT4 => DbDataType::Floating32,
        Type::FLOAT8 => DbDataType::Floating64,
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => DbDataType::Str,
        Type::BYTEA => DbDataType::Binary,
        Type::INT4_ARRAY => DbDataType::ArrayInt32,
        Type::INT8_ARRAY => DbDataType::ArrayInt64,
        Type::TEXT_ARRAY | Type::VARCHAR_ARRAY => DbDataType::ArrayStr,
        _ => DbDataType::Other(t.name().to_string()),
    }
}

/// Column `i` of `row` as a Spin value; NULL as `db-null`.
fn value(row: &tokio_postgres::Row, i: usize) -> Result<DbValue, Error> {
    fn get<'a, T: tokio_postgres::types::FromSql<'a>>(
        row: &'a tokio_postgres::Row,
        i: usize,
        wrap: impl FnOnce(T) -> DbValue,
    ) -> Result<DbValue, Error> {
        row.try_get::<_, Option<T>>(i)
            .map(|v| v.map_or(DbValue::DbNull, wrap))
            .map_err(|e| Error::ValueConversionFailed(e.to_string()))
    }
    let t = row.columns()[i].type_().clone();
    match t {
        Type::BOOL => get(row, i, DbValue::Boolean),
        Type::CHAR => get(row, i, DbValue::Int8),
        Type::INT2 => get(row, i, DbValue::Int16),
        Type::INT4 => get(row, i, DbValue::Int32),
        Type::INT8 => get(row, i, DbValue::Int64),
        Type::FLOAT4 => get(row, i, DbValue::Floating32),
        Type::FLOAT8 => get(row, i, DbValue::Floating64),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => get(row, i, DbValue::Str),
        Type::BYTEA => get(row, i, DbValue::Binary),
        Type::INT4_ARRAY => get(row, i, DbValue::ArrayInt32),
        Type::INT8_ARRAY => get(row, i, DbValue::ArrayInt64),
        Type::TEXT_ARRAY | Type::VARCHAR_ARRAY => get(row, i, DbValue::ArrayStr),
        // `pg_notify` and other procedures return void.
        Type::VOID => Ok(DbValue::DbNull),
        _ => Ok(DbValue::Unsupported(Vec::new())),
    }
}

/// A failed statement: the server's error as Spin reports it (its SQLSTATE
/// in `code`), or the client's reason.
fn query_failed(e: tokio_postgres::Error) -> Error {
    match e.as_db_error() {
        Some(db) => Error::QueryFailed(QueryError::DbError(DbError {
            as_text: db.to_string(),
            severity: db.severity().to_string(),
            code: db.code().code().to_string(),
            message: db.message().to_string(),
            detail: db.detail().map(str::to_string),
            extras: Vec::new(),
        })),
        None => Error::QueryFailed(QueryError::Text(
            crate::capabilities::metadata::postgres::causes(&e),
        )),
    }
}

fn params(values: Vec<ParameterValue>) -> Result<Vec<Param>, Error> {
    values.into_iter().map(param).collect()
}

fn refs(params: &[Param]) -> Vec<&(dyn ToSql + Sync)> {
    params
        .iter()
        .map(|p| p.as_ref() as &(dyn ToSql + Sync))
        .collect()
}

async fn query(
    client: &Object,
    statement: &str,
    values: Vec<ParameterValue>,
) -> Result<RowSet, Error> {
    let params = params(values)?;
    let stmt = client
        .prepare_cached(statement)
        .await
        .map_err(query_failed)?;
    let rows = client
        .query(&stmt, &refs(&params))
        .await
        .map_err(query_failed)?;
    let columns = stmt
        .columns()
        .iter()
        .map(|c| Column {
            name: c.name().to_string(),
            data_type: data_type(c.type_()),
        })
        .collect();
    let rows = rows
        .iter()
        .map(|r| {
            (0..r.len())
                .map(|i| value(r, i))
                .collect::<Result<Row, Error>>()
        })
        .collect::<Result<Vec<Row>, Error>>()?;
    Ok(RowSet { columns, rows })
}

async fn execute(
    client: &Object,
    statement: &str,
    values: Vec<ParameterValue>,
) -> Result<u64, Error> {
    let params = params(values)?;
    let stmt = client
        .prepare_cached(statement)
        .await
        .map_err(query_failed)?;
    client
        .execute(&stmt, &refs(&params))
        .await
        .map_err(query_failed)
}

fn closed() -> Error {
    Error::Other("the connection is closed".into())
}

impl Host for SpinView<'_> {}

impl HostConnection for SpinView<'_> {
    async fn open(&mut self, address: String) -> Result<Resource<Connection>, Error> {
        let c = self
            .state
            .postgres
            .connect(&address, &self.state.allowed_hosts)
            .await?;
        self.table.push(c).map_err(|e| Error::Other(e.to_string()))
    }

    async fn query(
        &mut self,
        conn: Resource<Connection>,
        statement: String,
        params: Vec<ParameterValue>,
    ) -> Result<RowSet, Error> {
        let c = self
            .table
            .get_mut(&conn)
            .map_err(|e| Error::Other(e.to_string()))?;
        let rows = query(c.client.as_ref().ok_or_else(closed)?, &statement, params).await?;
        c.ran(&statement);
        Ok(rows)
    }

    async fn execute(
        &mut self,
        conn: Resource<Connection>,
        statement: String,
        params: Vec<ParameterValue>,
    ) -> Result<u64, Error> {
        let c = self
            .table
            .get_mut(&conn)
            .map_err(|e| Error::Other(e.to_string()))?;
        let n = execute(c.client.as_ref().ok_or_else(closed)?, &statement, params).await?;
        c.ran(&statement);
        Ok(n)
    }

    async fn drop(&mut self, conn: Resource<Connection>) -> wasmtime::Result<()> {
        // `Connection`'s drop returns the client (see the module's doc).
        self.table.delete(conn)?;
        Ok(())
    }
}

/// Takes the client out of `conn` for an `-async` call (the table cannot
/// be borrowed across it) — the guest cannot use the connection meanwhile.
fn take<T>(a: &Accessor<T, Spin>, conn: &Resource<Connection>) -> Result<Connection, Error> {
    a.with(|mut v| {
        let c = v
            .get()
            .table
            .get_mut(conn)
            .map_err(|e| Error::Other(e.to_string()))?;
        let client = c.client.take().ok_or_else(closed)?;
        Ok(Connection {
            client: Some(client),
            in_transaction: std::mem::take(&mut c.in_transaction),
        })
    })
}

/// Puts `taken` back in `conn`; if the guest dropped `conn` meanwhile,
/// `taken` is dropped as a connection is (rolled back if need be).
fn put_back<T>(a: &Accessor<T, Spin>, conn: &Resource<Connection>, mut taken: Connection) {
    a.with(|mut v| {
        if let Ok(c) = v.get().table.get_mut(conn) {
            c.client = taken.client.take();
            c.in_transaction = taken.in_transaction;
        }
    })
}

fn push<T>(a: &Accessor<T, Spin>, c: Connection) -> Result<Resource<Connection>, Error> {
    a.with(|mut v| {
        v.get()
            .table
            .push(c)
            .map_err(|e| Error::Other(e.to_string()))
    })
}

impl<T: Send> HostConnectionWithStore<T> for Spin {
    async fn open_async(
        a: &Accessor<T, Self>,
        address: String,
    ) -> Result<Resource<Connection>, Error> {
        let state = a.with(|mut v| v.get().state.clone());
        let c = state
            .postgres
            .connect(&address, &state.allowed_hosts)
            .await?;
        push(a, c)
    }

    async fn query_async(
        _: &Accessor<T, Self>,
        _: Resource<Connection>,
        _: String,
        _: Vec<ParameterValue>,
    ) -> Result<
        (
            Vec<Column>,
            StreamReader<Row>,
            FutureReader<Result<(), Error>>,
        ),
        Error,
    > {
        Err(Error::Other(
            "berth serve does not provide query-async; use query".into(),
        ))
    }

    async fn execute_async(
        a: &Accessor<T, Self>,
        conn: Resource<Connection>,
        statement: String,
        params: Vec<ParameterValue>,
    ) -> Result<u64, Error> {
        let mut taken = take(a, &conn)?;
        let client = taken.client.as_ref().ok_or_else(closed)?;
        let result = execute(client, &statement, params).await;
        if result.is_ok() {
            taken.ran(&statement);
        }
        put_back(a, &conn, taken);
        result
    }
}

impl HostConnectionBuilder for SpinView<'_> {
    async fn new(&mut self, address: String) -> wasmtime::Result<Resource<ConnectionBuilder>> {
        Ok(self.table.push(ConnectionBuilder { address })?)
    }

    async fn set_ca_root(
        &mut self,
        _: Resource<ConnectionBuilder>,
        _: String,
    ) -> Result<(), Error> {
        Err(Error::Other(
            "berth serve connects to PostgreSQL without TLS: custom CA roots are not supported"
                .into(),
        ))
    }

    async fn build(
        &mut self,
        b: Resource<ConnectionBuilder>,
    ) -> Result<Resource<Connection>, Error> {
        let address = self
            .table
            .get(&b)
            .map_err(|e| Error::Other(e.to_string()))?
            .address
            .clone();
        self.open(address).await
    }

    async fn drop(&mut self, b: Resource<ConnectionBuilder>) -> wasmtime::Result<()> {
        self.table.delete(b)?;
        Ok(())
    }
}

impl<T: Send> HostConnectionBuilderWithStore<T> for Spin {
    async fn build_async(
        a: &Accessor<T, Self>,
        b: Resource<ConnectionBuilder>,
    ) -> Result<Resource<Connection>, Error> {
        let (state, address) = a.with(|mut v| {
            let v = v.get();
            let address = v.table.get(&b).map(|b| b.address.clone());
            (v.state.clone(), address)
        });
        let address = address.map_err(|e| Error::Other(e.to_string()))?;
        let c = state
            .postgres
            .connect(&address, &state.allowed_hosts)
            .await?;
        push(a, c)
    }
}

#[cfg(test)]
mod tests {
    use super::{Connection, Error, Pools};
    use crate::outbound::AllowedHosts;

    #[tokio::test]
    async fn addresses_outside_allowed_outbound_hosts_are_refused() {
        let allowed = AllowedHosts::parse(&["postgres://127.0.0.1:55432".into()]).unwrap();
        let pools = Pools::default();
        for address in [
            "postgres://u:secret@10.0.0.1:55432/db",
            "postgres://u:secret@127.0.0.1/db", // 5432, not 55432
            "host=127.0.0.1,10.0.0.1 port=55432 user=u",
        ] {
            match pools.connect(address, &allowed).await {
                Err(Error::ConnectionFailed(m)) => {
                    assert!(
                        m.contains("allowed_outbound_hosts") && !m.contains("secret"),
                        "{m}"
                    )
                }
                _ => panic!("{address} was let through"),
            }
        }
        // Nothing was connected to, so no pool was made for them.
        assert!(pools.pools.lock().unwrap().is_empty());
    }

    #[test]
    fn transactions_are_followed_by_their_statements() {
        let mut c = Connection {
            client: None,
            in_transaction: false,
        };
        for (statement, open) in [
            ("begin", true),
            ("SELECT 1", true),
            ("ROLLBACK TO SAVEPOINT a", true),
            ("COMMIT;", false),
            ("START TRANSACTION ISOLATION LEVEL SERIALIZABLE", true),
            ("rollback", false),
            ("BEGIN;", true),
            ("END", false),
        ] {
            c.ran(statement);
            assert_eq!(c.in_transaction, open, "{statement}");
        }
    }
}
