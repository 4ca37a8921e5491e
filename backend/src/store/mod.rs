//! The service's own tables (API keys, query jobs, audit), in their own
//! schema `ducklake_backend`, apart from DuckLake's `ducklake_*` tables.
//!
//! With a PostgreSQL catalog they live in the catalog database and are reached
//! through a deadpool-postgres pool, which also serves the readiness check. In
//! the embedded default they live in a local DuckDB file (`data_dir/service.duckdb`)
//! so every feature works without PostgreSQL. The migrations are the same
//! portable SQL files in both.

pub mod audit;
pub mod jobs;
pub mod keys;
pub mod migrations;
mod sql;

use std::{sync::Arc, time::Duration};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;

use crate::config::Config;
use migrations::{Applied, Migration, SchemaMismatch, BOOTSTRAP_SQL, MIGRATIONS};

/// Key of the PostgreSQL advisory lock `migrate` holds ("ducklake" in ASCII).
const MIGRATION_LOCK: i64 = 0x6475_636b_6c61_6b65;
/// Key of the lock a replica holds while it runs periodic maintenance.
const MAINTENANCE_LOCK: i64 = MIGRATION_LOCK + 1;

/// Held while this replica runs a maintenance round. With PostgreSQL it is
/// a session advisory lock on a connection taken out of the pool: dropping
/// it closes that connection, which releases the lock whatever happened.
pub enum MaintenanceLock {
    Local,
    Postgres(deadpool_postgres::ClientWrapper),
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached (down, wrong address, bad credentials).
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Failed(String),
    #[error(transparent)]
    Schema(#[from] SchemaMismatch),
}

/// What `migrate` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationReport {
    /// Labels of the migrations applied by this run, in order.
    pub applied: Vec<String>,
    /// The schema version afterwards.
    pub version: i32,
    /// Whether another process held the migration lock and this one waited.
    pub waited: bool,
}

impl crate::retry::GaveUp for StoreError {
    fn gave_up(self, attempts: u32) -> Self {
        match self {
            Self::Unavailable(m) => {
                Self::Unavailable(format!("{m} (gave up after {attempts} attempt(s))"))
            }
            other => other,
        }
    }
}

#[derive(Clone)]
pub enum Store {
    Postgres(Pool),
    Local(Arc<parking_lot::Mutex<duckdb::Connection>>),
}

impl Store {
    /// The pool (nothing connects yet) or the local file (opened now).
    pub fn open(config: &Config) -> Result<Self, StoreError> {
        match &config.postgres.host {
            Some(host) => {
                let pg = &config.postgres;
                let mut pg_config = tokio_postgres::Config::new();
                pg_config
                    .host(host)
                    .port(pg.port)
                    .dbname(&pg.db)
                    .user(&pg.user)
                    .application_name(crate::instance::application_name("pool"))
                    .connect_timeout(Duration::from_secs_f64(config.ducklake.connection_timeout));
                if let Some(password) = &pg.password {
                    pg_config.password(password.expose());
                }
                let manager = Manager::from_config(
                    pg_config,
                    NoTls,
                    ManagerConfig {
                        recycling_method: RecyclingMethod::Fast,
                    },
                );
                let timeout = Duration::from_secs_f64(config.ducklake.connection_timeout);
                let pool = Pool::builder(manager)
                    .max_size(pg.pool_size)
                    .runtime(Runtime::Tokio1)
                    .wait_timeout(Some(timeout))
                    .create_timeout(Some(timeout))
                    .recycle_timeout(Some(timeout))
                    .build()
                    .map_err(|e| StoreError::Failed(format!("building the catalog pool: {e}")))?;
                Ok(Self::Postgres(pool))
            }
            None => {
                let path = config.data_dir.join("service.duckdb");
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(|e| {
                        StoreError::Failed(format!("cannot create {}: {e}", dir.display()))
                    })?;
                }
                let conn = duckdb::Connection::open(&path).map_err(|e| {
                    StoreError::Failed(format!(
                        "cannot open the local store {}: {e}",
                        path.display()
                    ))
                })?;
                Ok(Self::Local(Arc::new(parking_lot::Mutex::new(conn))))
            }
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Self::Postgres(_) => "postgres",
            Self::Local(_) => "duckdb",
        }
    }

    /// Waits until the database answers: up to `attempts` tries with
    /// exponential backoff, each failure logged.
    pub async fn wait_until_reachable(&self, attempts: u32) -> Result<(), StoreError> {
        crate::retry::retry_startup("catalog database", attempts, || self.ping()).await
    }

    /// The maintenance lock, unless another replica holds it.
    pub async fn try_maintenance_lock(&self) -> Result<Option<MaintenanceLock>, StoreError> {
        match self {
            Self::Postgres(pool) => {
                let client = deadpool_postgres::Object::take(pool.get().await.map_err(pool_error)?);
                let row = client
                    .query_one("SELECT pg_try_advisory_lock($1)", &[&MAINTENANCE_LOCK])
                    .await
                    .map_err(pg_error)?;
                Ok(row
                    .get::<_, bool>(0)
                    .then_some(MaintenanceLock::Postgres(client)))
            }
            Self::Local(_) => Ok(Some(MaintenanceLock::Local)),
        }
    }

    /// A trivial round trip.
    pub async fn ping(&self) -> Result<(), StoreError> {
        match self {
            Self::Postgres(pool) => {
                let client = pool.get().await.map_err(pool_error)?;
                client.simple_query("SELECT 1").await.map_err(pg_error)?;
                Ok(())
            }
            Self::Local(conn) => {
                let conn = Arc::clone(conn);
                blocking(move || {
                    conn.lock()
                        .execute_batch("SELECT 1")
                        .map_err(|e| StoreError::Failed(e.to_string()))
                })
                .await
            }
        }
    }

    /// Applies the pending migrations in order, each in its own transaction
    /// together with its `schema_migrations` row. On PostgreSQL under an
    /// advisory lock, so concurrent runs apply each migration once.
    pub async fn migrate(&self) -> Result<MigrationReport, StoreError> {
        match self {
            Self::Postgres(pool) => migrate_postgres(pool, MIGRATIONS).await,
            Self::Local(conn) => {
                let conn = Arc::clone(conn);
                blocking(move || migrate_local(&conn.lock(), MIGRATIONS)).await
            }
        }
    }

    /// `serve`'s check: the schema exists, matches this build and nothing is
    /// pending. Returns the schema version.
    pub async fn verify(&self) -> Result<i32, StoreError> {
        let applied = self.applied().await?;
        Ok(migrations::verify(&applied, MIGRATIONS)?)
    }

    /// The recorded migrations; empty when the schema was never created.
    pub async fn applied(&self) -> Result<Vec<Applied>, StoreError> {
        match self {
            Self::Postgres(pool) => {
                let client = pool.get().await.map_err(pool_error)?;
                applied_postgres(&client).await
            }
            Self::Local(conn) => {
                let conn = Arc::clone(conn);
                blocking(move || applied_local(&conn.lock())).await
            }
        }
    }

    /// How many connections to the catalog database this replica holds, by
    /// pool (`duckdb` for DuckDB's postgres extension, `pool` for ours),
    /// from `pg_stat_activity`. None for the local store.
    pub async fn catalog_connections(&self) -> Result<Option<CatalogConnections>, StoreError> {
        let Self::Postgres(pool) = self else {
            return Ok(None);
        };
        let client = pool.get().await.map_err(pool_error)?;
        let rows = client
            .query(
                "SELECT application_name, count(*) FROM pg_stat_activity \
                 WHERE datname = current_database() AND application_name = ANY($1) \
                 GROUP BY application_name",
                &[&vec![
                    crate::instance::application_name("duckdb"),
                    crate::instance::application_name("pool"),
                ]],
            )
            .await
            .map_err(pg_error)?;
        let mut counts = CatalogConnections::default();
        for row in rows {
            let name: String = row.get(0);
            let n: i64 = row.get(1);
            if name == crate::instance::application_name("duckdb") {
                counts.duckdb = n as u64;
            } else {
                counts.pool = n as u64;
            }
        }
        let status = pool.status();
        counts.pool_idle = status.available as u64;
        counts.pool_waiting = status.waiting as u64;
        Ok(Some(counts))
    }

    /// Closes pooled connections idle for longer than `idle`.
    pub fn reap_idle(&self, idle: Duration) {
        if let Self::Postgres(pool) = self {
            pool.retain(|_, metrics| metrics.last_used() < idle);
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct CatalogConnections {
    pub duckdb: u64,
    pub pool: u64,
    pub pool_idle: u64,
    pub pool_waiting: u64,
}

async fn migrate_postgres(pool: &Pool, known: &[Migration]) -> Result<MigrationReport, StoreError> {
    let mut client = pool.get().await.map_err(pool_error)?;
    let locked: bool = client
        .query_one("SELECT pg_try_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(pg_error)?
        .get(0);
    if !locked {
        tracing::info!("another process is migrating; waiting for its lock");
        client
            .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(pg_error)?;
    }
    let result = async {
        client
            .batch_execute(BOOTSTRAP_SQL)
            .await
            .map_err(pg_error)?;
        let applied = applied_postgres(&client).await?;
        let pending = migrations::pending(&applied, known)?;
        let mut labels = Vec::new();
        for migration in pending {
            let tx = client.transaction().await.map_err(pg_error)?;
            tx.batch_execute(migration.sql)
                .await
                .map_err(|e| migration_failed(migration, pg_message(&e)))?;
            tx.execute(
                "INSERT INTO ducklake_backend.schema_migrations (version, name, checksum) \
                 VALUES ($1, $2, $3)",
                &[&migration.version, &migration.name, &migration.checksum()],
            )
            .await
            .map_err(pg_error)?;
            tx.commit().await.map_err(pg_error)?;
            tracing::info!(migration = %migration.label(), "applied");
            labels.push(migration.label());
        }
        let version = migrations::verify(&applied_postgres(&client).await?, known)?;
        Ok(MigrationReport {
            applied: labels,
            version,
            waited: !locked,
        })
    }
    .await;
    // The lock is per session: release it even when a migration failed.
    let _ = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await;
    result
}

async fn applied_postgres(client: &tokio_postgres::Client) -> Result<Vec<Applied>, StoreError> {
    let exists: bool = client
        .query_one(
            "SELECT to_regclass('ducklake_backend.schema_migrations') IS NOT NULL",
            &[],
        )
        .await
        .map_err(pg_error)?
        .get(0);
    if !exists {
        return Ok(Vec::new());
    }
    let rows = client
        .query(
            "SELECT version, name, checksum FROM ducklake_backend.schema_migrations ORDER BY version",
            &[],
        )
        .await
        .map_err(pg_error)?;
    Ok(rows
        .iter()
        .map(|row| Applied {
            version: row.get(0),
            name: row.get(1),
            checksum: row.get(2),
        })
        .collect())
}

fn migrate_local(
    conn: &duckdb::Connection,
    known: &[Migration],
) -> Result<MigrationReport, StoreError> {
    let failed = |e: duckdb::Error| StoreError::Failed(e.to_string());
    conn.execute_batch(BOOTSTRAP_SQL).map_err(failed)?;
    let applied = applied_local(conn)?;
    let mut labels = Vec::new();
    for migration in migrations::pending(&applied, known)? {
        let run = || -> duckdb::Result<()> {
            conn.execute_batch("BEGIN TRANSACTION")?;
            conn.execute_batch(migration.sql)?;
            conn.execute(
                "INSERT INTO ducklake_backend.schema_migrations (version, name, checksum) \
                 VALUES (?, ?, ?)",
                duckdb::params![migration.version, migration.name, migration.checksum()],
            )?;
            conn.execute_batch("COMMIT")
        };
        if let Err(e) = run() {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(migration_failed(migration, e.to_string()));
        }
        tracing::info!(migration = %migration.label(), "applied");
        labels.push(migration.label());
    }
    // Into the database file, out of the WAL: DuckDB 1.5.5 cannot replay a
    // WAL holding a table whose default calls nextval() (0003's audit_log),
    // so a crash before the next checkpoint would stop every later start.
    conn.execute_batch("CHECKPOINT").map_err(failed)?;
    let version = migrations::verify(&applied_local(conn)?, known)?;
    Ok(MigrationReport {
        applied: labels,
        version,
        waited: false,
    })
}

fn applied_local(conn: &duckdb::Connection) -> Result<Vec<Applied>, StoreError> {
    let failed = |e: duckdb::Error| StoreError::Failed(e.to_string());
    let exists: bool = conn
        .query_row(
            "SELECT count(*) > 0 FROM duckdb_tables() \
             WHERE schema_name = 'ducklake_backend' AND table_name = 'schema_migrations'",
            [],
            |row| row.get(0),
        )
        .map_err(failed)?;
    if !exists {
        return Ok(Vec::new());
    }
    let mut stmt = conn
        .prepare(
            "SELECT version, name, checksum FROM ducklake_backend.schema_migrations ORDER BY version",
        )
        .map_err(failed)?;
    let rows = stmt
        .query_map([], |row| {
            Ok(Applied {
                version: row.get(0)?,
                name: row.get(1)?,
                checksum: row.get(2)?,
            })
        })
        .map_err(failed)?;
    rows.collect::<duckdb::Result<Vec<_>>>().map_err(failed)
}

fn migration_failed(migration: &Migration, message: String) -> StoreError {
    StoreError::Failed(format!(
        "migration {} failed and was rolled back: {message}",
        migration.label()
    ))
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| StoreError::Failed(format!("store task failed: {e}")))?
}

/// A PostgreSQL error as one line: the server's own message when there is
/// one, else the client's error and its causes. Never holds the password.
pub fn pg_message(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{}: {}", db.severity(), db.message());
    }
    let mut message = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        message.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    message
}

fn pg_error(e: tokio_postgres::Error) -> StoreError {
    let fatal = e
        .as_db_error()
        .is_some_and(|db| matches!(db.severity(), "FATAL" | "PANIC"));
    if e.as_db_error().is_some() && !e.is_closed() && !fatal {
        StoreError::Failed(pg_message(&e))
    } else {
        StoreError::Unavailable(format!(
            "the catalog database is unreachable: {}",
            pg_message(&e)
        ))
    }
}

fn pool_error(e: deadpool_postgres::PoolError) -> StoreError {
    use deadpool_postgres::PoolError;
    match e {
        PoolError::Backend(e) => StoreError::Unavailable(format!(
            "cannot connect to the catalog database: {}",
            pg_message(&e)
        )),
        PoolError::Timeout(kind) => StoreError::Unavailable(format!(
            "the catalog database did not answer in time ({kind:?})"
        )),
        other => StoreError::Unavailable(format!("the catalog pool failed: {other}")),
    }
}
