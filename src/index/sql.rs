//! The one way the index talks to SQLite: statements run through [`Sql`],
//! rows are read through [`Row`], and every failure becomes an
//! [`Error`](super::Error) naming the database file. Integers read from the
//! database are converted with [`Row::num`], so a negative or out-of-range
//! value is reported as damage naming its table and column, never cast.

use super::Error;
use crate::chunk::ChunkId;
use gix::ObjectId;
use rusqlite::types::FromSql;
use rusqlite::{Connection, OptionalExtension, Params};
use std::path::Path;

/// A connection (or an open transaction) and the database file it belongs to.
#[derive(Clone, Copy)]
pub(super) struct Sql<'c> {
    conn: &'c Connection,
    path: &'c Path,
}

impl<'c> Sql<'c> {
    pub(super) fn new(conn: &'c Connection, path: &'c Path) -> Self {
        Self { conn, path }
    }

    /// A SQLite failure of this database.
    pub(super) fn err(&self, source: rusqlite::Error) -> Error {
        Error::Sqlite {
            path: self.path.to_owned(),
            source,
        }
    }

    /// A value of this database that the schema does not allow.
    pub(super) fn corrupt(&self, reason: impl Into<String>) -> Error {
        Error::Corrupt {
            path: self.path.to_owned(),
            reason: reason.into(),
        }
    }

    /// Runs statements without parameters.
    pub(super) fn batch(&self, sql: &str) -> Result<(), Error> {
        self.conn.execute_batch(sql).map_err(|e| self.err(e))
    }

    /// Runs one statement; returns the number of rows it changed.
    pub(super) fn exec(&self, sql: &str, params: impl Params) -> Result<usize, Error> {
        self.conn
            .prepare_cached(sql)
            .and_then(|mut st| st.execute(params))
            .map_err(|e| self.err(e))
    }

    /// Runs an `INSERT`; returns the new row id.
    pub(super) fn insert(&self, sql: &str, params: impl Params) -> Result<i64, Error> {
        self.exec(sql, params)?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Calls `f` on every row of a query over `table` (the table named in
    /// errors about the values read).
    pub(super) fn each(
        &self,
        table: &'static str,
        sql: &str,
        params: impl Params,
        mut f: impl FnMut(&Row<'_, '_>) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let mut st = self.conn.prepare_cached(sql).map_err(|e| self.err(e))?;
        let mut rows = st.query(params).map_err(|e| self.err(e))?;
        while let Some(row) = rows.next().map_err(|e| self.err(e))? {
            f(&Row {
                row,
                sql: *self,
                table,
            })?;
        }
        Ok(())
    }

    /// Every row of a query over `table`, each mapped by `f`.
    pub(super) fn rows<T>(
        &self,
        table: &'static str,
        sql: &str,
        params: impl Params,
        mut f: impl FnMut(&Row<'_, '_>) -> Result<T, Error>,
    ) -> Result<Vec<T>, Error> {
        let mut out = Vec::new();
        self.each(table, sql, params, |r| {
            out.push(f(r)?);
            Ok(())
        })?;
        Ok(out)
    }

    /// The first row of a query over `table`, mapped by `f`, if there is one.
    pub(super) fn row<T>(
        &self,
        table: &'static str,
        sql: &str,
        params: impl Params,
        f: impl FnOnce(&Row<'_, '_>) -> Result<T, Error>,
    ) -> Result<Option<T>, Error> {
        let mut st = self.conn.prepare_cached(sql).map_err(|e| self.err(e))?;
        let mut rows = st.query(params).map_err(|e| self.err(e))?;
        rows.next()
            .map_err(|e| self.err(e))?
            .map(|row| {
                f(&Row {
                    row,
                    sql: *self,
                    table,
                })
            })
            .transpose()
    }

    /// One value of the first row (a count, an id...), if there is a row.
    pub(super) fn value<T: FromSql>(
        &self,
        sql: &str,
        params: impl Params,
    ) -> Result<Option<T>, Error> {
        self.conn
            .query_row(sql, params, |r| r.get(0))
            .optional()
            .map_err(|e| self.err(e))
    }

    /// A count or sum over `table`: one non-negative integer (0 for NULL).
    pub(super) fn count(
        &self,
        table: &'static str,
        sql: &str,
        params: impl Params,
    ) -> Result<u64, Error> {
        Ok(self
            .row(table, sql, params, |r| r.num::<Option<u64>>(0))?
            .flatten()
            .unwrap_or(0))
    }
}

/// A row being read, with the table its values are reported under.
pub(super) struct Row<'s, 'r> {
    row: &'r rusqlite::Row<'s>,
    sql: Sql<'s>,
    table: &'static str,
}

/// An integer type a column converts to with a range check.
pub(super) trait Num: Sized {
    /// Converts `v`; `None` when it is out of range.
    fn from_i64(v: Option<i64>) -> Option<Option<Self>>;
}

macro_rules! num {
    ($($t:ty),*) => {$(
        impl Num for $t {
            fn from_i64(v: Option<i64>) -> Option<Option<Self>> {
                v.map(|v| <$t>::try_from(v).ok())
            }
        }
        impl Num for Option<$t> {
            fn from_i64(v: Option<i64>) -> Option<Option<Self>> {
                match v {
                    None => Some(Some(None)),
                    Some(v) => Some(<$t>::try_from(v).ok().map(Some)),
                }
            }
        }
    )*};
}
num!(u8, u32, u64, usize);

impl Row<'_, '_> {
    /// The column's name, as the query spells it.
    fn column(&self, i: usize) -> &str {
        self.row.as_ref().column_name(i).unwrap_or("?")
    }

    /// Damage in column `i` of this row.
    pub(super) fn bad(&self, i: usize, what: String) -> Error {
        Error::CorruptValue {
            path: self.sql.path.to_owned(),
            table: self.table,
            column: self.column(i).to_owned(),
            what,
        }
    }

    /// Column `i`, of a type SQLite stores as is (text, blob, row ids, times).
    pub(super) fn get<T: FromSql>(&self, i: usize) -> Result<T, Error> {
        self.row.get(i).map_err(|e| self.sql.err(e))
    }

    /// Column `i` as an unsigned integer (or an `Option` of one, for a
    /// nullable column): a negative or too large value is damage.
    pub(super) fn num<T: Num>(&self, i: usize) -> Result<T, Error> {
        let v: Option<i64> = self.get(i)?;
        match T::from_i64(v) {
            Some(Some(x)) => Ok(x),
            Some(None) => {
                Err(self.bad(i, format!("holds {}, out of range", v.unwrap_or_default())))
            }
            None => Err(self.bad(i, "is NULL".into())),
        }
    }

    /// Column `i` as a git object id (20 bytes).
    pub(super) fn oid(&self, i: usize) -> Result<ObjectId, Error> {
        let b: Vec<u8> = self.get(i)?;
        ObjectId::try_from(&b[..]).map_err(|_| {
            self.bad(
                i,
                format!("holds a malformed object id ({} bytes)", b.len()),
            )
        })
    }

    /// Column `i` as an optional git object id.
    pub(super) fn opt_oid(&self, i: usize) -> Result<Option<ObjectId>, Error> {
        match self.get::<Option<Vec<u8>>>(i)? {
            None => Ok(None),
            Some(_) => self.oid(i).map(Some),
        }
    }

    /// Column `i` as a chunk id (32 bytes).
    pub(super) fn chunk_id(&self, i: usize) -> Result<ChunkId, Error> {
        let b: Vec<u8> = self.get(i)?;
        ChunkId::from_slice(&b)
            .ok_or_else(|| self.bad(i, format!("holds a malformed chunk id ({} bytes)", b.len())))
    }

    /// Column `i` as an optional chunk id.
    pub(super) fn opt_chunk_id(&self, i: usize) -> Result<Option<ChunkId>, Error> {
        match self.get::<Option<Vec<u8>>>(i)? {
            None => Ok(None),
            Some(_) => self.chunk_id(i).map(Some),
        }
    }

    /// Column `i` as an integer code that `parse` understands (a kind).
    pub(super) fn kind<C>(
        &self,
        i: usize,
        parse: impl FnOnce(u8) -> Option<C>,
    ) -> Result<C, Error> {
        let v: i64 = self.get(i)?;
        u8::try_from(v)
            .ok()
            .and_then(parse)
            .ok_or_else(|| self.bad(i, format!("holds unknown kind {v}")))
    }

    /// Column `i` as a text code that `parse` understands (a state).
    pub(super) fn text<C>(
        &self,
        i: usize,
        parse: impl FnOnce(&str) -> Option<C>,
    ) -> Result<C, Error> {
        let v: String = self.get(i)?;
        parse(&v).ok_or_else(|| self.bad(i, format!("holds unknown value {v:?}")))
    }
}
