//! `notarium server migrate`: copy a whole installation from one database (and blob store)
//! to another: trust files with every version, the changefeed (ids kept), sealed server
//! keys, settings (the master key's salt and check), registry manifests, tags, links and
//! references; then every blob, each checked against its digest as it is written.
//!
//! Resumable: rows are written in key order, a page per transaction, and a row already in
//! the target is skipped (`ON CONFLICT DO NOTHING`), so a run that was stopped is simply
//! run again; blobs already in the target with the right size are skipped. Verified:
//! every table's row count and an order-independent hash of its rows are compared between
//! source and target, and every blob of the target is read back and hashed.
//!
//! Both databases have the same tables (each backend's migrations make them); what only
//! PostgreSQL keeps (each repository's head row, the id sequences) is derived from the
//! copied rows at the end.

use std::fmt::Write as _;
use std::sync::Arc;

use async_trait::async_trait;
use rusqlite::types::ValueRef;
use sqlx::Row as _;

use super::Database;
use crate::storage::StorageError;

/// Rows read and written per page (one transaction each).
const PAGE: usize = 500;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Int,
    Text,
    OptText,
    Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Value {
    Null,
    Int(i64),
    Text(String),
    Bytes(Vec<u8>),
}

struct Table {
    /// The database file of the SQLite backend (`notarium.db` or `registry.db`).
    file: &'static str,
    name: &'static str,
    columns: &'static [(&'static str, Kind)],
    /// Leading columns forming the primary key.
    key: usize,
}

use Kind::{Bytes, Int, OptText, Text};

/// Every table of an installation, in copy order.
const TABLES: &[Table] = &[
    Table {
        file: "notarium.db",
        name: "settings",
        columns: &[("name", Text), ("value", Bytes)],
        key: 1,
    },
    Table {
        file: "notarium.db",
        name: "tuf_files",
        columns: &[
            ("id", Int),
            ("gun", Text),
            ("role", Text),
            ("version", Int),
            ("sha256", Text),
            ("data", Bytes),
            ("created_at", Int),
        ],
        key: 1,
    },
    Table {
        file: "notarium.db",
        name: "changefeed",
        columns: &[
            ("id", Int),
            ("created_at", Int),
            ("gun", Text),
            ("version", Int),
            ("sha256", Text),
            ("category", Text),
        ],
        key: 1,
    },
    Table {
        file: "notarium.db",
        name: "private_keys",
        columns: &[
            ("key_id", Text),
            ("gun", Text),
            ("role", Text),
            ("algorithm", Text),
            ("sealed", Bytes),
            ("created_at", Int),
        ],
        key: 1,
    },
    Table {
        file: "notarium.db",
        name: "pending_keys",
        columns: &[("gun", Text), ("role", Text), ("key_id", Text)],
        key: 2,
    },
    Table {
        file: "registry.db",
        name: "blob_links",
        columns: &[("repo", Text), ("digest", Text)],
        key: 2,
    },
    Table {
        file: "registry.db",
        name: "manifests",
        columns: &[
            ("repo", Text),
            ("digest", Text),
            ("media_type", Text),
            ("artifact_type", OptText),
            ("subject", OptText),
            ("annotations", OptText),
            ("content", Bytes),
            ("created_at", Int),
        ],
        key: 2,
    },
    Table {
        file: "registry.db",
        name: "manifest_refs",
        columns: &[("repo", Text), ("digest", Text), ("target", Text)],
        key: 3,
    },
    Table {
        file: "registry.db",
        name: "tags",
        columns: &[("repo", Text), ("tag", Text), ("digest", Text)],
        key: 2,
    },
];

#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("{0}")]
    Storage(#[from] StorageError),
    #[error("{db}: {table}: {message}")]
    Table {
        db: String,
        table: &'static str,
        message: String,
    },
    #[error("verification failed: {0}")]
    Mismatch(String),
    #[error("the source and the target are the same: {0}")]
    Same(String),
    #[error("blobs: {0}")]
    Blobs(String),
}

/// A table's rows as counted and hashed for the comparison.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Summary {
    rows: u64,
    /// Sum (mod 2^128) of the first 16 bytes of each row's SHA-256: the same for the same
    /// rows in any order.
    hash: u128,
}

impl Summary {
    fn add(&mut self, row: &[Value]) {
        let mut enc = Vec::new();
        for v in row {
            match v {
                Value::Null => enc.push(0),
                Value::Int(i) => {
                    enc.push(1);
                    enc.extend_from_slice(&i.to_be_bytes());
                }
                Value::Text(s) => {
                    enc.push(2);
                    enc.extend_from_slice(&(s.len() as u64).to_be_bytes());
                    enc.extend_from_slice(s.as_bytes());
                }
                Value::Bytes(b) => {
                    enc.push(3);
                    enc.extend_from_slice(&(b.len() as u64).to_be_bytes());
                    enc.extend_from_slice(b);
                }
            }
        }
        let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &enc);
        let mut first = [0u8; 16];
        first.copy_from_slice(&d.as_ref()[..16]);
        self.rows += 1;
        self.hash = self.hash.wrapping_add(u128::from_be_bytes(first));
    }
}

/// What a migration did, table by table.
#[derive(Debug, Default)]
pub struct CopyReport {
    /// (table, rows in the source, rows written now, rows already in the target)
    pub tables: Vec<(&'static str, u64, u64, u64)>,
    /// Blobs in the source, copied now, already in the target, bytes copied now.
    pub blobs: Option<(u64, u64, u64, u64)>,
}

impl std::fmt::Display for CopyReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (t, n, new, had) in &self.tables {
            writeln!(
                f,
                "{t}: {n} rows ({new} copied now, {had} already there), verified"
            )?;
        }
        match self.blobs {
            Some((n, new, had, bytes)) => write!(
                f,
                "blobs: {n} ({new} copied now, {bytes} bytes; {had} already there), every digest verified"
            ),
            None => write!(f, "blobs: not copied (no --blobs-to)"),
        }
    }
}

/// Raw access to one backend's tables.
#[async_trait]
trait Tables: Send + Sync {
    /// Rows in key order after `after` (a key), at most `limit`.
    async fn page(
        &self,
        t: &Table,
        after: Option<&[Value]>,
        limit: usize,
    ) -> Result<Vec<Vec<Value>>, String>;
    /// Insert rows, skipping those whose key is there already, in one transaction; how
    /// many were new.
    async fn insert(&self, t: &Table, rows: &[Vec<Value>]) -> Result<u64, String>;
    /// What the backend derives from the copied rows.
    async fn finish(&self) -> Result<(), String>;
}

fn key_list(t: &Table) -> String {
    t.columns[..t.key]
        .iter()
        .map(|(c, _)| *c)
        .collect::<Vec<_>>()
        .join(", ")
}

/// `?1, ?2, …` (SQLite) or `$1, $2, …` (PostgreSQL): `n` placeholders.
fn placeholders(n: usize, sigil: char) -> String {
    (1..=n)
        .map(|i| format!("{sigil}{i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn column_list(t: &Table) -> String {
    t.columns
        .iter()
        .map(|(c, _)| *c)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The two database files of a SQLite installation, each opened once.
struct SqliteTables {
    dir: std::path::PathBuf,
    conns: std::sync::Mutex<std::collections::HashMap<&'static str, rusqlite::Connection>>,
}

impl SqliteTables {
    fn with_conn<T>(
        &self,
        t: &Table,
        f: impl FnOnce(&mut rusqlite::Connection) -> Result<T, String>,
    ) -> Result<T, String> {
        let mut conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        let c = match conns.entry(t.file) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                let c =
                    rusqlite::Connection::open(self.dir.join(t.file)).map_err(|e| e.to_string())?;
                c.execute_batch("PRAGMA busy_timeout=5000; PRAGMA synchronous=FULL;")
                    .map_err(|e| e.to_string())?;
                e.insert(c)
            }
        };
        f(c)
    }
}

fn sqlite_value(v: &Value) -> rusqlite::types::Value {
    match v {
        Value::Null => rusqlite::types::Value::Null,
        Value::Int(i) => rusqlite::types::Value::Integer(*i),
        Value::Text(s) => rusqlite::types::Value::Text(s.clone()),
        Value::Bytes(b) => rusqlite::types::Value::Blob(b.clone()),
    }
}

#[async_trait]
impl Tables for SqliteTables {
    async fn page(
        &self,
        t: &Table,
        after: Option<&[Value]>,
        limit: usize,
    ) -> Result<Vec<Vec<Value>>, String> {
        let keys = key_list(t);
        let mut sql = format!("SELECT {} FROM {}", column_list(t), t.name);
        let mut params: Vec<rusqlite::types::Value> = Vec::new();
        if let Some(after) = after {
            let _ = write!(sql, " WHERE ({keys}) > ({})", placeholders(t.key, '?'));
            params.extend(after.iter().map(sqlite_value));
        }
        let _ = write!(sql, " ORDER BY {keys} LIMIT {limit}");
        self.with_conn(t, |c| {
            let mut st = c.prepare(&sql).map_err(|e| e.to_string())?;
            let rows = st
                .query_map(rusqlite::params_from_iter(params), |r| {
                    let mut row = Vec::with_capacity(t.columns.len());
                    for (i, (_, kind)) in t.columns.iter().enumerate() {
                        row.push(match (r.get_ref(i)?, kind) {
                            (ValueRef::Null, _) => Value::Null,
                            (ValueRef::Integer(n), _) => Value::Int(n),
                            (ValueRef::Text(s), Kind::Bytes) | (ValueRef::Blob(s), Kind::Bytes) => {
                                Value::Bytes(s.to_vec())
                            }
                            (ValueRef::Text(s), _) | (ValueRef::Blob(s), _) => {
                                Value::Text(String::from_utf8_lossy(s).into_owned())
                            }
                            (ValueRef::Real(f), _) => Value::Int(f as i64),
                        });
                    }
                    Ok(row)
                })
                .map_err(|e| e.to_string())?;
            rows.collect::<Result<Vec<_>, _>>()
                .map_err(|e| e.to_string())
        })
    }

    async fn insert(&self, t: &Table, rows: &[Vec<Value>]) -> Result<u64, String> {
        let sql = format!(
            "INSERT OR IGNORE INTO {} ({}) VALUES ({})",
            t.name,
            column_list(t),
            placeholders(t.columns.len(), '?')
        );
        self.with_conn(t, |c| {
            let tx = c.transaction().map_err(|e| e.to_string())?;
            let mut n = 0;
            {
                let mut st = tx.prepare(&sql).map_err(|e| e.to_string())?;
                for row in rows {
                    n += st
                        .execute(rusqlite::params_from_iter(row.iter().map(sqlite_value)))
                        .map_err(|e| e.to_string())? as u64;
                }
            }
            tx.commit().map_err(|e| e.to_string())?;
            Ok(n)
        })
    }

    async fn finish(&self) -> Result<(), String> {
        // AUTOINCREMENT follows explicit ids by itself.
        Ok(())
    }
}

struct PgTables {
    pool: sqlx::PgPool,
}

fn bind_pg<'q>(
    q: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    v: &Value,
    kind: Kind,
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    match (v, kind) {
        (Value::Int(i), _) => q.bind(*i),
        (Value::Text(s), _) => q.bind(s.clone()),
        (Value::Bytes(b), _) => q.bind(b.clone()),
        (Value::Null, Kind::Int) => q.bind(None::<i64>),
        (Value::Null, Kind::Bytes) => q.bind(None::<Vec<u8>>),
        (Value::Null, _) => q.bind(None::<String>),
    }
}

#[async_trait]
impl Tables for PgTables {
    async fn page(
        &self,
        t: &Table,
        after: Option<&[Value]>,
        limit: usize,
    ) -> Result<Vec<Vec<Value>>, String> {
        // Byte order on text keys, whatever the database's collation.
        let keys: String = t.columns[..t.key]
            .iter()
            .map(|(c, k)| {
                if *k == Kind::Int {
                    (*c).to_owned()
                } else {
                    format!("{c} COLLATE \"C\"")
                }
            })
            .collect::<Vec<_>>()
            .join(", ");
        let mut sql = format!("SELECT {} FROM {}", column_list(t), t.name);
        if after.is_some() {
            let _ = write!(sql, " WHERE ({keys}) > ({})", placeholders(t.key, '$'));
        }
        let _ = write!(sql, " ORDER BY {keys} LIMIT {limit}");
        let mut q = sqlx::query(&sql);
        if let Some(after) = after {
            for (v, (_, kind)) in after.iter().zip(t.columns) {
                q = bind_pg(q, v, *kind);
            }
        }
        let rows = q.fetch_all(&self.pool).await.map_err(|e| e.to_string())?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let mut row = Vec::with_capacity(t.columns.len());
            for (i, (_, kind)) in t.columns.iter().enumerate() {
                let v = match kind {
                    Kind::Int => r.try_get::<i64, _>(i).map(Value::Int),
                    Kind::Text => r.try_get::<String, _>(i).map(Value::Text),
                    Kind::OptText => r
                        .try_get::<Option<String>, _>(i)
                        .map(|v| v.map_or(Value::Null, Value::Text)),
                    Kind::Bytes => r.try_get::<Vec<u8>, _>(i).map(Value::Bytes),
                }
                .map_err(|e| e.to_string())?;
                row.push(v);
            }
            out.push(row);
        }
        Ok(out)
    }

    async fn insert(&self, t: &Table, rows: &[Vec<Value>]) -> Result<u64, String> {
        let sql = format!(
            "INSERT INTO {} ({}) VALUES ({}) ON CONFLICT DO NOTHING",
            t.name,
            column_list(t),
            placeholders(t.columns.len(), '$')
        );
        let mut tx = self.pool.begin().await.map_err(|e| e.to_string())?;
        let mut n = 0;
        for row in rows {
            let mut q = sqlx::query(&sql);
            for (v, (_, kind)) in row.iter().zip(t.columns) {
                q = bind_pg(q, v, *kind);
            }
            n += q
                .execute(&mut *tx)
                .await
                .map_err(|e| e.to_string())?
                .rows_affected();
        }
        tx.commit().await.map_err(|e| e.to_string())?;
        Ok(n)
    }

    async fn finish(&self) -> Result<(), String> {
        let mut tx = self.pool.begin().await.map_err(|e| e.to_string())?;
        for table in ["tuf_files", "changefeed"] {
            sqlx::query(&format!(
                "SELECT setval(pg_get_serial_sequence('{table}', 'id'), \
                 GREATEST((SELECT max(id) FROM {table}), 1))"
            ))
            .execute(&mut *tx)
            .await
            .map_err(|e| e.to_string())?;
        }
        // Each repository's head: its newest timestamp.
        sqlx::query(
            "INSERT INTO repositories (gun, head) \
             SELECT gun, max(version) FROM tuf_files WHERE role = 'timestamp' GROUP BY gun \
             ON CONFLICT (gun) DO UPDATE SET head = GREATEST(repositories.head, EXCLUDED.head)",
        )
        .execute(&mut *tx)
        .await
        .map_err(|e| e.to_string())?;
        tx.commit().await.map_err(|e| e.to_string())
    }
}

async fn tables_of(db: &Database) -> Result<Box<dyn Tables>, CopyError> {
    // Opening runs the backend's migrations: both ends have every table.
    super::open(db, Arc::new(tuf::SystemClock)).await?;
    Ok(match db {
        Database::Sqlite(dir) => Box::new(SqliteTables {
            dir: dir.clone(),
            conns: Default::default(),
        }),
        Database::Postgres(url) => Box::new(PgTables {
            pool: super::postgres::connect(url).await?,
        }),
    })
}

/// Copy every table of `from` into `to`, then check both hold the same rows.
pub async fn copy_metadata(from: &Database, to: &Database) -> Result<CopyReport, CopyError> {
    if from == to {
        return Err(CopyError::Same(from.to_string()));
    }
    let (src, dst) = (tables_of(from).await?, tables_of(to).await?);
    let mut report = CopyReport::default();
    // The source's rows are summarized as they are copied; the target's read back after.
    let mut source = Vec::with_capacity(TABLES.len());
    for t in TABLES {
        let err = |db: &Database, message: String| CopyError::Table {
            db: db.to_string(),
            table: t.name,
            message,
        };
        let (mut after, mut new, mut summary) = (None::<Vec<Value>>, 0u64, Summary::default());
        loop {
            let rows = src
                .page(t, after.as_deref(), PAGE)
                .await
                .map_err(|e| err(from, e))?;
            if rows.is_empty() {
                break;
            }
            new += dst.insert(t, &rows).await.map_err(|e| err(to, e))?;
            rows.iter().for_each(|r| summary.add(r));
            after = rows.last().map(|r| r[..t.key].to_vec());
        }
        report
            .tables
            .push((t.name, summary.rows, new, summary.rows - new));
        source.push(summary);
    }
    dst.finish().await.map_err(|e| CopyError::Table {
        db: to.to_string(),
        table: "repositories",
        message: e,
    })?;
    for (t, a) in TABLES.iter().zip(source) {
        let b = summarize(&*dst, t).await.map_err(|e| CopyError::Table {
            db: to.to_string(),
            table: t.name,
            message: e,
        })?;
        if a != b {
            return Err(CopyError::Mismatch(format!(
                "{}: the source has {} rows, the target {}{} (was the target used by another installation?)",
                t.name,
                a.rows,
                b.rows,
                if a.rows == b.rows { " with different contents" } else { "" },
            )));
        }
    }
    Ok(report)
}

async fn summarize(tables: &dyn Tables, t: &Table) -> Result<Summary, String> {
    let mut s = Summary::default();
    let mut after = None::<Vec<Value>>;
    loop {
        let rows = tables.page(t, after.as_deref(), PAGE).await?;
        if rows.is_empty() {
            return Ok(s);
        }
        for r in &rows {
            s.add(r);
        }
        after = rows.last().map(|r| r[..t.key].to_vec());
    }
}
