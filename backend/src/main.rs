//! The `ducklake-backend` command line. Parsing only; the work is in the library.

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use ducklake_backend::{config::Config, telemetry, Application};

#[derive(Parser)]
#[command(name = "ducklake-backend", version = VERSION, about = "SQL over HTTP on a DuckLake lakehouse")]
struct Cli {
    /// TOML configuration file (also: DUCKLAKE_CONFIG). Environment variables override it.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP service (the default).
    Serve,
    /// Print the effective configuration, secrets redacted, with where each value came from; exit 1 if invalid.
    CheckConfig,
    /// Apply pending migrations of the service's own schema (`ducklake_backend`), under a lock.
    Migrate,
}

const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (DuckDB v1.5.5)");

fn main() -> ExitCode {
    let cli = Cli::parse();
    let loaded = match Config::load(cli.config) {
        Ok(loaded) => loaded,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::from(2);
        }
    };
    match cli.command.unwrap_or(Command::Serve) {
        Command::CheckConfig => {
            println!("{}", check_config_report(&loaded));
            ExitCode::SUCCESS
        }
        Command::Serve => serve(loaded),
        Command::Migrate => migrate(loaded.config),
    }
}

fn migrate(config: Config) -> ExitCode {
    telemetry::init(&config);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start a runtime: {err}");
            return ExitCode::from(1);
        }
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
                println!("waited for another process that held the migration lock");
            }
            if report.applied.is_empty() {
                println!("schema is up to date at version {}", report.version);
            } else {
                println!(
                    "applied {} migration(s): {}; schema version {}",
                    report.applied.len(),
                    report.applied.join(", "),
                    report.version
                );
            }
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::from(1)
        }
    }
}

fn check_config_report(loaded: &ducklake_backend::config::LoadedConfig) -> String {
    let redacted = loaded.config.redacted();
    let mut lines = vec!["configuration is valid".to_string()];
    for (key, source) in &loaded.sources {
        let value = key.split('.').fold(&redacted, |v, k| &v[k]);
        lines.push(format!("{key} = {value}  ({source})"));
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
