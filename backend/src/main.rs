//! The `ducklake-backend` command line. Parsing only; the work is in the library.

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use ducklake_backend::{
    config::{Config, ConfigError, Uses},
    telemetry, Application,
};

#[derive(Parser)]
#[command(name = "ducklake-backend", version = VERSION.as_str(), about = "SQL over HTTP on a DuckLake lakehouse")]
struct Cli {
    /// TOML configuration file (also: DUCKLAKE_CONFIG). Environment variables override it.
    /// For `client`: the client's file (url, key), see `client --help`.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP service (the default).
    Serve,
    /// Print the effective configuration, secrets redacted, with where each value came from; exit 2 if invalid.
    CheckConfig {
        /// Check for this command: the credentials it needs are those of what
        /// it reaches (migrate: PostgreSQL; create-bucket: the object store).
        #[arg(long = "for", value_enum, default_value_t = For::Serve)]
        command: For,
    },
    /// Apply pending migrations of the service's own schema (`ducklake_backend`), under a lock.
    /// Needs PostgreSQL only.
    Migrate,
    /// Create the lake's bucket (storage.default_bucket) unless it exists, then
    /// exit 0: the bucket step of docker compose and Kubernetes. Needs the
    /// object store only.
    CreateBucket,
    /// Probe a running service (a container HEALTHCHECK without curl): exit 0
    /// when GET /health (or --path) answers 200 within --timeout-ms, else 1.
    Healthcheck {
        /// Path to probe on 127.0.0.1:SERVER_PORT.
        #[arg(long, default_value = "/health")]
        path: String,
        #[arg(long, default_value_t = 3000)]
        timeout_ms: u64,
    },
    /// Sleep, then exit 0: a Kubernetes preStop hook for an image without a shell.
    Pause {
        #[arg(long, default_value_t = 5)]
        seconds: u64,
    },
    /// Manage API keys in the service's store (PostgreSQL, or the local store
    /// while the embedded service is stopped).
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Talk to a running service over its HTTP API: query, ingest, tables,
    /// snapshots, jobs, health. Exit codes: 0 ok, 1 API error, 2 usage,
    /// 3 unreachable or server error, 4 job failed or cancelled. URL and key:
    /// flags, else DUCKLAKE_URL/DUCKLAKE_KEY, else the TOML file (`url`, `key`)
    /// of --config, DUCKLAKE_CLIENT_CONFIG or ~/.config/ducklake/client.toml.
    Client(ducklake_backend::client::ClientArgs),
}

/// The commands that reach PostgreSQL or the object store, and which:
/// `check-config --for` checks for one of them.
#[derive(Clone, Copy, clap::ValueEnum)]
enum For {
    Serve,
    Migrate,
    CreateBucket,
    Keys,
}

impl For {
    fn uses(self) -> Uses {
        match self {
            For::Serve => Uses::EVERYTHING,
            For::Migrate | For::Keys => Uses::CATALOG,
            For::CreateBucket => Uses::STORAGE,
        }
    }
}

impl Command {
    /// What the command reaches, so which credentials it must be given.
    fn uses(&self) -> Uses {
        let reaching = match self {
            Command::Serve => For::Serve,
            Command::CheckConfig { command } => *command,
            Command::Migrate => For::Migrate,
            Command::Keys { .. } => For::Keys,
            Command::CreateBucket => For::CreateBucket,
            Command::Healthcheck { .. } | Command::Pause { .. } | Command::Client(_) => {
                return Uses::NOTHING
            }
        };
        reaching.uses()
    }
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Make a key; it is printed once, on stdout, and stored only as a hash.
    Create {
        /// Who the key is for.
        #[arg(long)]
        owner: String,
        /// read, write or admin.
        #[arg(long, value_parser = ["read", "write", "admin"])]
        role: String,
        /// Days until the key expires (never when absent).
        #[arg(long, value_name = "DAYS")]
        expires_in_days: Option<u32>,
        /// Print the key and its record as JSON instead of the key alone.
        #[arg(long)]
        json: bool,
    },
    /// List keys (never the keys themselves), newest first.
    List {
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key by id or visible prefix; it stops working at once.
    Revoke { id_or_prefix: String },
}

/// The service's version and the DuckDB release it links, as the library
/// reports it.
static VERSION: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "{} (DuckDB {})",
        env!("CARGO_PKG_VERSION"),
        ducklake_backend::engine::extensions::linked_release()
    )
});

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The client needs no server configuration: it only talks HTTP.
    let command = match cli.command {
        Some(Command::Client(args)) => {
            return ducklake_backend::client::run(args, cli.config.as_deref())
        }
        command => command.unwrap_or(Command::Serve),
    };
    let loaded = match Config::load(cli.config) {
        Ok(loaded) => loaded,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::from(2);
        }
    };
    for unknown in &loaded.unknown {
        eprintln!("warning: {unknown}");
    }
    let missing = loaded.config.missing_for(command.uses());
    if !missing.is_empty() {
        eprintln!("{}", ConfigError(missing));
        return ExitCode::from(2);
    }
    match command {
        Command::Client(_) => unreachable!("the client was dispatched above"),
        Command::CheckConfig { .. } => {
            out(&check_config_report(&loaded));
            ExitCode::SUCCESS
        }
        Command::Serve => serve(loaded),
        Command::Migrate => migrate(loaded.config),
        Command::CreateBucket => create_bucket(loaded.config),
        Command::Keys { command } => keys(loaded.config, command),
        Command::Pause { seconds } => {
            std::thread::sleep(std::time::Duration::from_secs(seconds));
            ExitCode::SUCCESS
        }
        Command::Healthcheck { path, timeout_ms } => healthcheck(&loaded.config, &path, timeout_ms),
    }
}

fn healthcheck(config: &Config, path: &str, timeout_ms: u64) -> ExitCode {
    let Some(runtime) = one_shot_runtime() else {
        return ExitCode::from(1);
    };
    let https = config.server.tls_cert.is_some();
    let scheme = if https { "https" } else { "http" };
    let url = format!("{scheme}://127.0.0.1:{}{path}", config.server.port);
    let outcome = runtime.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_millis(timeout_ms))
            // This probes our own listener over loopback, where the
            // certificate (issued for the service's public name, seldom for
            // 127.0.0.1) cannot be verified: the probe asks whether the
            // service answers, not who it is, so it accepts any certificate.
            .tls_danger_accept_invalid_certs(https)
            .build()
            .map_err(|e| e.to_string())?;
        let res = client.get(&url).send().await.map_err(|e| e.to_string())?;
        Ok::<_, String>(res.status().as_u16())
    });
    match outcome {
        Ok(200) => ExitCode::SUCCESS,
        Ok(status) => {
            eprintln!("unhealthy: {url} answered {status}");
            ExitCode::from(1)
        }
        Err(err) => {
            eprintln!("unhealthy: {url}: {err}");
            ExitCode::from(1)
        }
    }
}

/// A runtime for the one-shot commands that talk to the store.
fn one_shot_runtime() -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => Some(runtime),
        Err(err) => {
            eprintln!("error: cannot start a runtime: {err}");
            None
        }
    }
}

fn keys(config: Config, command: KeysCommand) -> ExitCode {
    use ducklake_backend::{auth, role::Role};
    let Some(runtime) = one_shot_runtime() else {
        return ExitCode::from(1);
    };
    let result: Result<String, String> = runtime.block_on(async {
        // Verifies the schema (and migrates the local store, as serve does).
        let store = ducklake_backend::open_store(&config, false)
            .await
            .map_err(|e| e.to_string())?;
        match command {
            KeysCommand::Create {
                owner,
                role,
                expires_in_days,
                json,
            } => {
                let role = Role::parse(&role).ok_or("unknown role")?;
                let owner = ducklake_backend::api::keys::validate_owner(&owner)
                    .map_err(|e| e.to_string())?;
                let expires = expires_in_days
                    .map(|days| chrono::Utc::now() + chrono::Duration::days(i64::from(days)));
                let key = auth::generate(owner, role, expires).map_err(|e| e.to_string())?;
                store
                    .insert_key(&key.stored)
                    .await
                    .map_err(|e| e.to_string())?;
                eprintln!(
                    "created key {} for {} with role {}; it is shown only now",
                    key.stored.record.prefix, key.stored.record.owner, role
                );
                if json {
                    let mut value =
                        serde_json::to_value(&key.stored.record).map_err(|e| e.to_string())?;
                    value["key"] = serde_json::Value::String(key.secret);
                    Ok(value.to_string())
                } else {
                    Ok(key.secret)
                }
            }
            KeysCommand::List { json } => {
                let keys = store.list_keys().await.map_err(|e| e.to_string())?;
                if json {
                    return serde_json::to_string_pretty(&keys).map_err(|e| e.to_string());
                }
                let mut lines = vec![format!(
                    "{:<36}  {:<12}  {:<6}  {:<8}  {:<20}  {:<20}  {}",
                    "ID", "PREFIX", "ROLE", "ACTIVE", "CREATED", "EXPIRES", "OWNER"
                )];
                let time = |t: Option<chrono::DateTime<chrono::Utc>>| {
                    t.map_or("-".to_string(), |t| {
                        t.format("%Y-%m-%d %H:%M:%S").to_string()
                    })
                };
                for k in keys {
                    lines.push(format!(
                        "{:<36}  {:<12}  {:<6}  {:<8}  {:<20}  {:<20}  {}",
                        // As text first: not every type's Display pads.
                        k.id.to_string(),
                        k.prefix,
                        k.role.to_string(),
                        k.active.to_string(),
                        time(Some(k.created_at)),
                        time(k.expires_at),
                        k.owner
                    ));
                }
                Ok(lines.join("\n"))
            }
            KeysCommand::Revoke { id_or_prefix } => {
                let revoked = store
                    .revoke_key(&id_or_prefix)
                    .await
                    .map_err(|e| e.to_string())?;
                if revoked.is_empty() {
                    return Err(format!("no API key with id or prefix {id_or_prefix}"));
                }
                Ok(revoked
                    .iter()
                    .map(|k| format!("revoked {} ({})", k.prefix, k.owner))
                    .collect::<Vec<_>>()
                    .join("\n"))
            }
        }
    });
    match result {
        Ok(output) => {
            out(&output);
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::from(1)
        }
    }
}

fn migrate(config: Config) -> ExitCode {
    telemetry::init(&config);
    let Some(runtime) = one_shot_runtime() else {
        return ExitCode::from(1);
    };
    let result = runtime.block_on(async {
        let store = ducklake_backend::store::Store::open(&config)?;
        store
            .wait_until_reachable(config.ducklake.connection_retries)
            .await?;
        store.migrate().await
    });
    match result {
        Ok(report) => {
            if report.waited {
                out("waited for another process that held the migration lock");
            }
            if report.applied.is_empty() {
                out(&format!(
                    "schema is up to date at version {}",
                    report.version
                ));
            } else {
                out(&format!(
                    "applied {} migration(s): {}; schema version {}",
                    report.applied.len(),
                    report.applied.join(", "),
                    report.version
                ));
            }
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::from(1)
        }
    }
}

fn create_bucket(config: Config) -> ExitCode {
    use ducklake_backend::bucket::{Bucket, BucketState};
    telemetry::init(&config);
    let Some(runtime) = one_shot_runtime() else {
        return ExitCode::from(1);
    };
    let bucket = &config.storage.default_bucket;
    let result = runtime.block_on(async {
        Bucket::from_config(&config)?
            .wait_until_reachable(config.ducklake.connection_retries, true)
            .await
    });
    match result {
        Ok(BucketState::Exists) => out(&format!("bucket {bucket} exists")),
        Ok(BucketState::Created) => out(&format!("created bucket {bucket}")),
        Ok(BucketState::Local) => out(&format!(
            "no object store (storage.minio_endpoint is unset): the lake's files are under {}",
            config.data_dir.join("lake").display()
        )),
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(1);
        }
    }
    ExitCode::SUCCESS
}

fn check_config_report(loaded: &ducklake_backend::config::LoadedConfig) -> String {
    let mut lines = vec!["configuration is valid".to_string()];
    for setting in ducklake_backend::config::settings(&loaded.config, &loaded.sources) {
        if let Some(source) = &setting.source {
            lines.push(format!("{} = {}  ({source})", setting.key, setting.value));
        }
    }
    lines.join("\n")
}

fn serve(loaded: ducklake_backend::config::LoadedConfig) -> ExitCode {
    telemetry::init(&loaded.config);
    let result = actix_web::rt::System::new().block_on(async move {
        let app = Application::build_with_sources(loaded.config, loaded.sources).await?;
        app.run_until_stopped()
            .await
            .map_err(|source| ducklake_backend::StartupError::Bind {
                address: "server".into(),
                source,
            })
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = %err, "start-up failed");
            eprintln!("error: {err}");
            ExitCode::from(1)
        }
    }
}

/// Prints a command's output. A reader that went away (`| head`) is no
/// error: the rest is not wanted, and the command ends as it would have.
fn out(text: &str) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if let Err(err) = writeln!(stdout, "{text}").and_then(|()| stdout.flush()) {
        if err.kind() != std::io::ErrorKind::BrokenPipe {
            eprintln!("error: cannot write the output: {err}");
        }
    }
}
