//! Connecting, migrating, and the few column types whose storage differs per engine.
//!
//! The store writes each query once and runs it on SQLite or PostgreSQL. What differs is
//! hidden in three newtypes that encode differently per engine:
//!
//! - [`Ts`]: `TIMESTAMPTZ` on PostgreSQL; on SQLite TEXT in one fixed-width RFC 3339 form, so
//!   that text comparison is time comparison (sqlx's own encoding varies the fraction width).
//! - [`Money`]: exact `NUMERIC` on PostgreSQL; on SQLite TEXT holding the decimal as written.
//! - [`MoneyKey`]: what value filters compare against: `NUMERIC` on PostgreSQL; on SQLite a
//!   fixed-width digit string matching the `value_sort` column, because SQLite has no exact
//!   decimal type and would compare TEXT as text or REAL as a float.
//!
//! The schema is applied with sqlx migrations embedded in the binary (no `migrate!` macro,
//! no migrations folder at run time).

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use rust_decimal::Decimal;
use sqlx::error::BoxDynError;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use sqlx::{Database, Decode, Encode, Postgres, SqlSafeStr, Sqlite, Type, encode::IsNull};

use crate::error::CrmError;

const SQLITE_SCHEMA: &str = include_str!("../migrations/sqlite/0001_crm.sql");
const POSTGRES_SCHEMA: &str = include_str!("../migrations/postgres/0001_crm.sql");

/// How long a SQLite writer waits for another process's write lock before giving up.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Reader connections per SQLite store (writes go through a single connection).
const SQLITE_READERS: u32 = 4;

/// The database behind a store. Pools are reference-counted, so cloning is cheap.
#[derive(Clone, Debug)]
pub(crate) enum Backend {
    /// SQLite allows one writer at a time; a one-connection write pool with `BEGIN IMMEDIATE`
    /// queues writers in-process instead of failing with SQLITE_BUSY, and the busy timeout
    /// covers writers in other processes.
    Sqlite {
        read: SqlitePool,
        write: SqlitePool,
    },
    Postgres(PgPool),
}

/// Which SQL dialect a query is for, where the text must differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// The column value filters compare with [`MoneyKey`].
    pub(crate) fn value_sort_column(self) -> &'static str {
        match self {
            Dialect::Sqlite => "value_sort",
            Dialect::Postgres => "value",
        }
    }
}

/// Opens (creating if needed) and migrates the database at `url`.
///
/// `postgres://` and `postgresql://` URLs select PostgreSQL; `sqlite:` URLs and bare paths
/// select SQLite, whose parent directories are created.
pub(crate) async fn connect(url: &str, max_connections: u32) -> Result<Backend, CrmError> {
    let backend = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let options = PgConnectOptions::from_str(url)?;
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .connect_with(options)
            .await?;
        Backend::Postgres(pool)
    } else {
        let url = if url.starts_with("sqlite:") {
            url.to_owned()
        } else {
            format!("sqlite://{url}")
        };
        let options = SqliteConnectOptions::from_str(&url)?
            .create_if_missing(true)
            .foreign_keys(true)
            .busy_timeout(SQLITE_BUSY_TIMEOUT);
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        if in_memory {
            // Every connection to an unnamed in-memory database is a different database, so
            // reads and writes must share the one connection.
            let pool = SqlitePoolOptions::new()
                .max_connections(1)
                .connect_with(options)
                .await?;
            Backend::Sqlite {
                read: pool.clone(),
                write: pool,
            }
        } else {
            create_parent_dirs(options.get_filename())?;
            let options = options.journal_mode(SqliteJournalMode::Wal);
            let write = SqlitePoolOptions::new()
                .max_connections(1)
                .connect_with(options.clone())
                .await?;
            let read = SqlitePoolOptions::new()
                .max_connections(SQLITE_READERS)
                .connect_with(options)
                .await?;
            Backend::Sqlite { read, write }
        }
    };
    migrate(&backend).await?;
    Ok(backend)
}

fn create_parent_dirs(file: &Path) -> Result<(), CrmError> {
    match file.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => {
            std::fs::create_dir_all(parent).map_err(|err| {
                CrmError::Internal(format!("could not create {}: {err}", parent.display()))
            })
        }
        _ => Ok(()),
    }
}

fn migrator(schema: &'static str) -> Migrator {
    Migrator::with_migrations(vec![Migration::new(
        1,
        "crm schema".into(),
        MigrationType::Simple,
        schema.into_sql_str(),
        false,
    )])
}

async fn migrate(backend: &Backend) -> Result<(), CrmError> {
    match backend {
        Backend::Sqlite { write, .. } => migrator(SQLITE_SCHEMA).run(write).await?,
        Backend::Postgres(pool) => migrator(POSTGRES_SCHEMA).run(pool).await?,
    }
    Ok(())
}

/// Drops sub-microsecond precision, which PostgreSQL would drop anyway, so both engines
/// return exactly what was written.
pub(crate) fn truncate_micros(time: DateTime<Utc>) -> DateTime<Utc> {
    let micros = time.timestamp_micros();
    DateTime::from_timestamp_micros(micros).unwrap_or(time)
}

/// The current time, at the precision the database keeps.
pub(crate) fn now() -> DateTime<Utc> {
    truncate_micros(Utc::now())
}

/// How every timestamp is shown and stored as text: fixed-width, UTC, microseconds.
pub(crate) fn format_ts(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// A UTC timestamp column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Ts(pub DateTime<Utc>);

impl Type<Sqlite> for Ts {
    fn type_info() -> <Sqlite as Database>::TypeInfo {
        <String as Type<Sqlite>>::type_info()
    }
    fn compatible(ty: &<Sqlite as Database>::TypeInfo) -> bool {
        <String as Type<Sqlite>>::compatible(ty)
    }
}

impl Encode<'_, Sqlite> for Ts {
    fn encode_by_ref(
        &self,
        buf: &mut <Sqlite as Database>::ArgumentBuffer,
    ) -> Result<IsNull, BoxDynError> {
        <String as Encode<Sqlite>>::encode(format_ts(self.0), buf)
    }
}

impl<'r> Decode<'r, Sqlite> for Ts {
    fn decode(value: <Sqlite as Database>::ValueRef<'r>) -> Result<Self, BoxDynError> {
        let text = <&str as Decode<Sqlite>>::decode(value)?;
        Ok(Ts(DateTime::parse_from_rfc3339(text)?.with_timezone(&Utc)))
    }
}

impl Type<Postgres> for Ts {
    fn type_info() -> <Postgres as Database>::TypeInfo {
        <DateTime<Utc> as Type<Postgres>>::type_info()
    }
    fn compatible(ty: &<Postgres as Database>::TypeInfo) -> bool {
        <DateTime<Utc> as Type<Postgres>>::compatible(ty)
    }
}

impl Encode<'_, Postgres> for Ts {
    fn encode_by_ref(
        &self,
        buf: &mut <Postgres as Database>::ArgumentBuffer,
    ) -> Result<IsNull, BoxDynError> {
        <DateTime<Utc> as Encode<Postgres>>::encode_by_ref(&self.0, buf)
    }
}

impl<'r> Decode<'r, Postgres> for Ts {
    fn decode(value: <Postgres as Database>::ValueRef<'r>) -> Result<Self, BoxDynError> {
        Ok(Ts(<DateTime<Utc> as Decode<Postgres>>::decode(value)?))
    }
}

/// An exact money amount column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Money(pub Decimal);

impl Type<Sqlite> for Money {
    fn type_info() -> <Sqlite as Database>::TypeInfo {
        <String as Type<Sqlite>>::type_info()
    }
    fn compatible(ty: &<Sqlite as Database>::TypeInfo) -> bool {
        <String as Type<Sqlite>>::compatible(ty)
    }
}

impl Encode<'_, Sqlite> for Money {
    fn encode_by_ref(
        &self,
        buf: &mut <Sqlite as Database>::ArgumentBuffer,
    ) -> Result<IsNull, BoxDynError> {
        <String as Encode<Sqlite>>::encode(self.0.to_string(), buf)
    }
}

impl<'r> Decode<'r, Sqlite> for Money {
    fn decode(value: <Sqlite as Database>::ValueRef<'r>) -> Result<Self, BoxDynError> {
        let text = <&str as Decode<Sqlite>>::decode(value)?;
        Ok(Money(Decimal::from_str(text)?))
    }
}

impl Type<Postgres> for Money {
    fn type_info() -> <Postgres as Database>::TypeInfo {
        <Decimal as Type<Postgres>>::type_info()
    }
    fn compatible(ty: &<Postgres as Database>::TypeInfo) -> bool {
        <Decimal as Type<Postgres>>::compatible(ty)
    }
}

impl Encode<'_, Postgres> for Money {
    fn encode_by_ref(
        &self,
        buf: &mut <Postgres as Database>::ArgumentBuffer,
    ) -> Result<IsNull, BoxDynError> {
        <Decimal as Encode<Postgres>>::encode_by_ref(&self.0, buf)
    }
}

impl<'r> Decode<'r, Postgres> for Money {
    fn decode(value: <Postgres as Database>::ValueRef<'r>) -> Result<Self, BoxDynError> {
        Ok(Money(<Decimal as Decode<Postgres>>::decode(value)?))
    }
}

/// A value to compare money against in filters (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct MoneyKey(pub Decimal);

/// The SQLite sort key of a non-negative amount below 10^16 with at most 4 places: the
/// amount in ten-thousandths, zero-padded to 21 digits, so text order is numeric order.
pub(crate) fn money_sort_key(value: Decimal) -> String {
    let mut scaled = value;
    scaled.rescale(4);
    format!("{:021}", scaled.mantissa())
}

impl Type<Sqlite> for MoneyKey {
    fn type_info() -> <Sqlite as Database>::TypeInfo {
        <String as Type<Sqlite>>::type_info()
    }
    fn compatible(ty: &<Sqlite as Database>::TypeInfo) -> bool {
        <String as Type<Sqlite>>::compatible(ty)
    }
}

impl Encode<'_, Sqlite> for MoneyKey {
    fn encode_by_ref(
        &self,
        buf: &mut <Sqlite as Database>::ArgumentBuffer,
    ) -> Result<IsNull, BoxDynError> {
        <String as Encode<Sqlite>>::encode(money_sort_key(self.0), buf)
    }
}

impl Type<Postgres> for MoneyKey {
    fn type_info() -> <Postgres as Database>::TypeInfo {
        <Decimal as Type<Postgres>>::type_info()
    }
    fn compatible(ty: &<Postgres as Database>::TypeInfo) -> bool {
        <Decimal as Type<Postgres>>::compatible(ty)
    }
}

impl Encode<'_, Postgres> for MoneyKey {
    fn encode_by_ref(
        &self,
        buf: &mut <Postgres as Database>::ArgumentBuffer,
    ) -> Result<IsNull, BoxDynError> {
        <Decimal as Encode<Postgres>>::encode_by_ref(&self.0, buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sort_keys_order_like_numbers() {
        let values = [
            "0",
            "0.0001",
            "9.9999",
            "10",
            "12000.50",
            "50000",
            "9999999999999999.9999",
        ];
        let keys: Vec<String> = values
            .iter()
            .filter_map(|v| Decimal::from_str(v).ok())
            .map(money_sort_key)
            .collect();
        assert_eq!(keys.len(), values.len());
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "{keys:?}");
        assert!(keys.iter().all(|k| k.len() == 21));
    }

    #[test]
    fn timestamps_are_fixed_width() {
        let t = DateTime::from_timestamp(1_737_331_200, 0).map(format_ts);
        assert_eq!(t.as_deref(), Some("2025-01-20T00:00:00.000000Z"));
    }
}
