//! Test databases on real engines: a SQLite file in a temp dir, or a fresh PostgreSQL schema
//! that is dropped when the test ends (even when it fails), so tests run in parallel and
//! leave nothing behind.

#![allow(dead_code)]

use switchboard_crm::{CrmConfig, CrmStore};

pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

pub fn postgres_url() -> String {
    std::env::var("SWITCHBOARD_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_owned())
}

pub struct TestDb {
    pub store: CrmStore,
    pub url: String,
    pub dir: Option<tempfile::TempDir>,
    schema: Option<SchemaGuard>,
}

/// Drops its PostgreSQL schema on drop, on a thread of its own because drop cannot await.
struct SchemaGuard {
    admin_url: String,
    schema: String,
}

impl Drop for SchemaGuard {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let schema = self.schema.clone();
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async move {
                use sqlx::Connection;
                let mut conn = sqlx::PgConnection::connect(&admin_url).await?;
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP SCHEMA IF EXISTS {schema} CASCADE"
                )))
                .execute(&mut conn)
                .await?;
                conn.close().await?;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) && !std::thread::panicking() {
            panic!("could not drop test schema {}", self.schema);
        }
    }
}

impl TestDb {
    pub async fn sqlite(demo_data: bool) -> TestDb {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!(
            "sqlite://{}",
            dir.path().join("nested/dir/crm.db").display()
        );
        let store = CrmStore::open(&CrmConfig {
            demo_data,
            ..CrmConfig::new(url.clone())
        })
        .await
        .expect("open SQLite store");
        TestDb {
            store,
            url,
            dir: Some(dir),
            schema: None,
        }
    }

    /// A store in a fresh schema. Fails (never skips) when PostgreSQL is not reachable.
    pub async fn postgres(demo_data: bool) -> TestDb {
        use sqlx::Connection;
        let admin_url = postgres_url();
        let mut conn = match sqlx::PgConnection::connect(&admin_url).await {
            Ok(conn) => conn,
            Err(err) => panic!(
                "PostgreSQL is required for these tests and is not reachable at {admin_url}: {err}\n\
                 Start it with `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`, \
                 or set SWITCHBOARD_TEST_POSTGRES_URL to a database you may create schemas in."
            ),
        };
        let schema = format!("crm_test_{}", uuid::Uuid::new_v4().simple());
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(&mut conn)
            .await
            .expect("create test schema");
        conn.close().await.expect("close admin connection");
        let guard = SchemaGuard {
            admin_url: admin_url.clone(),
            schema: schema.clone(),
        };
        let separator = if admin_url.contains('?') { '&' } else { '?' };
        let url = format!("{admin_url}{separator}options=-csearch_path%3D{schema}");
        let store = CrmStore::open(&CrmConfig {
            demo_data,
            max_connections: 40,
            ..CrmConfig::new(url.clone())
        })
        .await
        .expect("open PostgreSQL store");
        TestDb {
            store,
            url,
            dir: None,
            schema: Some(guard),
        }
    }

    /// Closes the pools, then drops the schema (if any).
    pub async fn finish(self) {
        self.store.close().await;
        drop(self.schema);
    }
}

/// Runs each listed `async fn(&CrmStore)` scenario once on SQLite and once on PostgreSQL.
#[macro_export]
macro_rules! on_both_engines {
    ($demo:expr => $($name:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let db = $crate::common::TestDb::sqlite($demo).await;
                    super::$name(&db.store).await;
                    db.finish().await;
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let db = $crate::common::TestDb::postgres($demo).await;
                    super::$name(&db.store).await;
                    db.finish().await;
                }
            )+
        }
    };
}
