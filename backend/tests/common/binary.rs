//! The real binary as a child process (for tests that must kill a replica
//! the hard way), with a clean environment: only what the test sets.

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use super::free_port;

/// SIGTERM, as an orchestrator stops a container; returns once it is sent.
pub fn sigterm(child: &Child) {
    let sent = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success(), "kill -TERM {}", child.id());
}

/// SIGTERM, then wait: the service drains and exits 0.
pub fn stop_gracefully(child: &mut Child) {
    sigterm(child);
    let status = child.wait().unwrap();
    assert!(status.success(), "graceful shutdown exits 0, got {status}");
}

/// The service's binary, as Cargo built it for the tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_ducklake-backend");

/// The binary with a clean environment: `PATH`, `HOME`, `ENVIRONMENT=test`,
/// `FLIGHT_PORT=0` and the DuckDB extension directory the tests were given, nothing else
/// (so a variable of the developer's shell cannot change a test). Every
/// test that runs the service's command line starts from here.
pub fn service_command() -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_clear()
        .env("HOME", std::env::var("HOME").unwrap_or_default())
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("ENVIRONMENT", "test")
        // Parallel replicas must not all take Flight SQL's default port.
        .env("FLIGHT_PORT", "0");
    if let Ok(dir) = std::env::var("DUCKDB_EXTENSION_DIRECTORY") {
        cmd.env("DUCKDB_EXTENSION_DIRECTORY", dir);
    }
    cmd
}

pub struct Replica {
    pub child: Child,
    pub base: String,
}

impl Replica {
    /// Starts `serve` with `env` on a free port and waits until /ready answers 200.
    pub async fn start(data_dir: &Path, env: &[(&str, String)]) -> Self {
        let port = free_port();
        let log_path = data_dir.join(format!("service-{port}.log"));
        let log = std::fs::File::create(&log_path).expect("log file");
        let mut cmd = service_command();
        cmd.env("DATA_DIR", data_dir)
            .env("SERVER_PORT", port.to_string())
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .arg("serve")
            .stdout(Stdio::null())
            .stderr(log.try_clone().expect("log file"));
        let mut replica = Self {
            child: cmd.spawn().expect("the service starts"),
            base: format!("http://127.0.0.1:{port}"),
        };
        let client = reqwest::Client::new();
        // A bound that only catches a hang: start-up on a loaded machine
        // (extensions, the catalog, migrations) can take many seconds.
        let deadline = Instant::now() + Duration::from_secs(180);
        while Instant::now() < deadline {
            let ready = client.get(format!("{}/ready", replica.base)).send().await;
            if ready.is_ok_and(|res| res.status() == 200) {
                return replica;
            }
            if let Ok(Some(status)) = replica.child.try_wait() {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                panic!("the service exited during start-up: {status}\n{log}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        replica.kill();
        panic!("the service did not become ready");
    }

    /// The service process's own memory, in bytes: its peak resident set
    /// (VmHWM) and its current one (VmRSS). A test's client is not in it.
    pub fn memory(&self) -> ProcessMemory {
        ProcessMemory::of(self.child.id())
    }

    /// SIGTERM, then wait: the replica drains and exits 0, as a stop by its
    /// orchestrator would.
    pub fn stop(mut self) {
        stop_gracefully(&mut self.child);
    }

    /// SIGKILL: no drain, no goodbye, as when a node dies.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Resident memory of one process, from /proc.
#[derive(Debug, Clone, Copy)]
pub struct ProcessMemory {
    pub peak_bytes: u64,
    pub resident_bytes: u64,
}

impl ProcessMemory {
    pub fn of(pid: u32) -> Self {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_else(|e| panic!("/proc/{pid}/status: {e}"));
        let field = |name: &str| -> u64 {
            let line = status
                .lines()
                .find(|l| l.starts_with(name))
                .unwrap_or_else(|| panic!("{name} in /proc/{pid}/status"));
            let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
            kb * 1024
        };
        Self {
            peak_bytes: field("VmHWM:"),
            resident_bytes: field("VmRSS:"),
        }
    }
}
