//! The release contract of the container, without a container engine: the
//! binary (the release binary out of the image when `CONTAINER_BINARY`
//! names it, as `scripts/image-smoke.sh` does) runs the way `backend/Dockerfile` and `k8s/` run it — as uid 1000,
//! from a read-only copy of its files, writing only to its data and tmp
//! directories, with the environment of `k8s/configmap.yaml` plus the
//! Secrets — against a real PostgreSQL and S3 server. The migration runs
//! first as the Job does; the probes of `k8s/deployment.yaml` are checked
//! at their paths and within their periods through start-up, steady state,
//! the preStop hook and SIGTERM.
//!
//! uid 1000: as root the test switches to it (and owns the volumes to it);
//! otherwise it runs the binary as uid 1000 in a user namespace (`unshare`),
//! and says on stderr when neither is possible.

use crate::common;

use std::{
    os::unix::{fs::PermissionsExt, process::CommandExt},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use common::{
    free_port,
    servers::{Postgres, PG_PASSWORD, S3, S3_ACCESS_KEY, S3_SECRET_KEY},
};
use serde_json::{json, Value};

const UID: u32 = 1000;
const KEY: &str = "container-bootstrap-admin-key-0123456789";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// YAML documents as JSON, read by Python's yaml (installed with yamllint).
fn yaml(path: &Path) -> Vec<Value> {
    let out = Command::new("python3")
        .args([
            "-c",
            "import sys, json, yaml; print(json.dumps(list(yaml.safe_load_all(open(sys.argv[1])))))",
        ])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Every file under `dir` with its size and modification time.
fn snapshot(dir: &Path) -> String {
    let out = Command::new("find")
        .arg(dir)
        .args(["-printf", "%p %s %T@ %m\n"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn chown(path: &Path) {
    let status = Command::new("chown")
        .args(["-R", &format!("{UID}:{UID}")])
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// How the binary becomes uid 1000.
enum RunAs {
    /// Root switches to uid 1000, and the volumes belong to it.
    Switch,
    /// A user namespace maps this user to uid 1000 (the volumes are this
    /// user's, so they are uid 1000's inside).
    Namespace(PathBuf),
    /// Neither: the binary runs as this user; why is on stderr.
    Unchanged,
}

fn run_as() -> RunAs {
    if is_root() {
        return RunAs::Switch;
    }
    let Some(unshare) = ["/usr/bin/unshare", "/bin/unshare"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
    else {
        eprintln!(
            "SKIPPED the uid {UID} part: not root and no unshare(1); the binary runs as this user"
        );
        return RunAs::Unchanged;
    };
    let probe = Command::new(&unshare)
        .args(namespace_args())
        .args(["id", "-u"])
        .output();
    match probe {
        Ok(out) if String::from_utf8_lossy(&out.stdout).trim() == UID.to_string() => {
            eprintln!(
                "not root: the binary runs as uid {UID} in a user namespace (unshare), \
                 mapped to this user, who owns the volumes"
            );
            RunAs::Namespace(unshare)
        }
        other => {
            eprintln!(
                "SKIPPED the uid {UID} part: not root, and no user namespace here \
                 (unshare {:?}: {other:?}); the binary runs as this user",
                namespace_args()
            );
            RunAs::Unchanged
        }
    }
}

fn namespace_args() -> [String; 4] {
    [
        "--user".into(),
        format!("--map-user={UID}"),
        format!("--map-group={UID}"),
        "--".into(),
    ]
}

/// Polls `check` until it returns true; panics with `why()` after `budget`
/// (each budget here is one of the deployment's probe or grace periods).
fn wait_until(budget: Duration, mut check: impl FnMut() -> bool, why: impl Fn() -> String) {
    let deadline = Instant::now() + budget;
    while !check() {
        assert!(Instant::now() < deadline, "after {budget:?}: {}", why());
        std::thread::sleep(Duration::from_millis(50));
    }
}

struct Probe {
    path: String,
    period: Duration,
    failures: u32,
}

fn probe(container: &Value, name: &str) -> Probe {
    let p = &container[name];
    Probe {
        path: p["httpGet"]["path"].as_str().unwrap().to_string(),
        period: Duration::from_secs(p["periodSeconds"].as_u64().unwrap()),
        failures: p["failureThreshold"].as_u64().unwrap() as u32,
    }
}

fn status(base: &str, path: &str) -> Option<u16> {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()
        .unwrap()
        .get(format!("{base}{path}"))
        .send()
        .ok()
        .map(|r| r.status().as_u16())
}

#[test]
fn runs_as_the_container_does_read_only_as_uid_1000_through_its_probes() {
    let pg = Postgres::start();
    pg.psql("CREATE DATABASE ducklake");
    let s3 = S3::start("ducklake-data");

    // The image's files, read-only; the volumes, writable by uid 1000 only.
    let root = tempfile::tempdir().unwrap();
    let image = root.path().join("image");
    std::fs::create_dir_all(image.join("bin")).unwrap();
    let binary = image.join("bin/ducklake-backend");
    // CONTAINER_BINARY: the release binary taken out of the built image
    // (scripts/image-smoke.sh runs this test with it); else this build's.
    let source =
        std::env::var("CONTAINER_BINARY").unwrap_or_else(|_| common::binary::BIN.to_string());
    println!("binary under test: {source}");
    std::fs::copy(&source, &binary).unwrap();
    let extensions_from = std::env::var("DUCKDB_EXTENSION_DIRECTORY").map_or_else(
        |_| PathBuf::from(std::env::var("HOME").unwrap()).join(".duckdb/extensions"),
        PathBuf::from,
    );
    let copied = Command::new("cp")
        .arg("-r")
        .arg(&extensions_from)
        .arg(image.join("extensions"))
        .status()
        .unwrap();
    assert!(copied.success());
    let secrets = root.path().join("secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    std::fs::write(secrets.join("bootstrap-key"), KEY).unwrap();
    let data = root.path().join("data");
    let tmp = root.path().join("tmp");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::create_dir_all(&tmp).unwrap();
    let run_as = run_as();
    if let RunAs::Switch = run_as {
        chown(&data);
        chown(&tmp);
        chown(&secrets);
    }
    std::fs::set_permissions(
        secrets.join("bootstrap-key"),
        PermissionsExt::from_mode(0o440),
    )
    .unwrap();
    let read_only = Command::new("chmod")
        .args(["-R", "a-w"])
        .arg(&image)
        .status()
        .unwrap();
    assert!(read_only.success());
    let image_before = snapshot(&image);
    std::fs::set_permissions(root.path(), PermissionsExt::from_mode(0o755)).unwrap();

    // The environment: the ConfigMap, the Secrets, and this machine's
    // addresses in place of the cluster's.
    let configmap = &yaml(&repo().join("k8s/configmap.yaml"))[0]["data"];
    let port = free_port();
    let mut env: Vec<(String, String)> = configmap
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect();
    let overrides = [
        ("SERVER_PORT", port.to_string()),
        ("SERVER_SHUTDOWN_GRACE_MS", "3000".to_string()),
        ("DATA_DIR", data.display().to_string()),
        ("HOME", data.display().to_string()),
        ("TMPDIR", tmp.display().to_string()),
        (
            "DUCKDB_EXTENSION_DIRECTORY",
            image.join("extensions").display().to_string(),
        ),
        (
            "AUTH_BOOTSTRAP_KEY_FILE",
            secrets.join("bootstrap-key").display().to_string(),
        ),
        ("DB_POSTGRES_HOST", "127.0.0.1".to_string()),
        ("DB_POSTGRES_PORT", pg.port.to_string()),
        ("DB_POSTGRES_USER", "postgres".to_string()),
        ("DB_POSTGRES_PASSWORD", PG_PASSWORD.to_string()),
        ("STORAGE_MINIO_ENDPOINT", format!("127.0.0.1:{}", s3.port)),
        ("STORAGE_MINIO_ACCESS_KEY", S3_ACCESS_KEY.to_string()),
        ("STORAGE_MINIO_SECRET_KEY", S3_SECRET_KEY.to_string()),
    ];
    for (key, value) in overrides {
        env.retain(|(k, _)| k != key);
        env.push((key.to_string(), value));
    }
    assert!(env
        .iter()
        .any(|(k, v)| k == "ENVIRONMENT" && v == "production"));
    let command = |args: &[&str]| {
        // unshare execs the binary: the child's pid is the service's.
        let mut cmd = match &run_as {
            RunAs::Namespace(unshare) => {
                let mut cmd = Command::new(unshare);
                cmd.args(namespace_args()).arg(&binary);
                cmd
            }
            RunAs::Switch | RunAs::Unchanged => Command::new(&binary),
        };
        cmd.env_clear()
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env("PATH", "/nonexistent")
            .current_dir(&data)
            .args(args);
        if let RunAs::Switch = run_as {
            cmd.uid(UID).gid(UID);
        }
        cmd
    };

    // The migration Job first: `serve` refuses a schema that is behind.
    let migrate = command(&["migrate"]).output().unwrap();
    assert!(
        migrate.status.success(),
        "{}",
        String::from_utf8_lossy(&migrate.stderr)
    );

    let deployment = &yaml(&repo().join("k8s/deployment.yaml"))[0];
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let startup = probe(container, "startupProbe");
    let liveness = probe(container, "livenessProbe");
    let readiness = probe(container, "readinessProbe");
    let grace = Duration::from_secs(
        deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
            .as_u64()
            .unwrap(),
    );
    let base = format!("http://127.0.0.1:{port}");
    let log = root.path().join("service.log");
    let mut child = command(&["serve"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();

    // Start-up: the startup probe passes within its budget (Kubernetes would
    // restart the pod after it), then readiness within its own.
    let started = Instant::now();
    wait_until(
        startup.period * startup.failures,
        || {
            assert!(
                child.try_wait().unwrap().is_none(),
                "exited during start-up:\n{}",
                log_text()
            );
            status(&base, &startup.path) == Some(200)
        },
        || format!("startup probe never passed:\n{}", log_text()),
    );
    wait_until(
        readiness.period * readiness.failures,
        || status(&base, &readiness.path) == Some(200),
        || format!("never ready:\n{}", log_text()),
    );
    println!("ready {:?} after start", started.elapsed());

    // Steady state: the probes pass, the HEALTHCHECK command passes, SQL works
    // with the bootstrap key read from the mounted secret, and it writes to S3.
    let probes_pass = |when: &str| {
        assert_eq!(status(&base, &liveness.path), Some(200), "liveness {when}");
        assert_eq!(
            status(&base, &readiness.path),
            Some(200),
            "readiness {when}"
        );
    };
    probes_pass("once ready");
    let healthcheck = command(&["healthcheck"]).output().unwrap();
    assert!(
        healthcheck.status.success(),
        "{}",
        String::from_utf8_lossy(&healthcheck.stderr)
    );
    let client = reqwest::blocking::Client::new();
    for sql in [
        "CREATE TABLE shipped AS SELECT range AS n FROM range(1000)",
        "SELECT count(*) FROM shipped",
    ] {
        let res = client
            .post(format!("{base}/api/v1/query"))
            .bearer_auth(KEY)
            .json(&json!({ "sql": sql }))
            .send()
            .unwrap();
        assert_eq!(res.status(), 200, "{sql}: {}", res.text().unwrap());
    }
    let unauthenticated = client
        .post(format!("{base}/api/v1/query"))
        .json(&json!({"sql": "SELECT 1"}))
        .send()
        .unwrap();
    assert_eq!(unauthenticated.status(), 401, "production requires a key");
    assert!(
        s3.list("ducklake-data").contains(".parquet"),
        "data went to S3"
    );
    probes_pass("after writing");

    // preStop, then SIGTERM: readiness fails at once, the process exits 0
    // well within terminationGracePeriodSeconds.
    let pre_stop: Vec<String> = container["lifecycle"]["preStop"]["exec"]["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(pre_stop[0], "/usr/local/bin/ducklake-backend");
    let stopping = Instant::now();
    let hook = command(&pre_stop[1..].iter().map(String::as_str).collect::<Vec<_>>())
        .status()
        .unwrap();
    assert!(hook.success());
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    // The signal is handled asynchronously: readiness fails (503, or the
    // listener is already closed) by the kubelet's next probe at the latest.
    let mut ready_after = Some(200);
    wait_until(
        readiness.period,
        || {
            ready_after = status(&base, &readiness.path);
            ready_after.is_none() || ready_after == Some(503)
        },
        || format!("readiness still passes after SIGTERM:\n{}", log_text()),
    );
    println!("readiness after SIGTERM: {ready_after:?}");
    let mut exit = None;
    wait_until(
        grace.saturating_sub(stopping.elapsed()),
        || {
            exit = child.try_wait().unwrap();
            exit.is_some()
        },
        || "still running after terminationGracePeriodSeconds".to_string(),
    );
    let exit = exit.unwrap();
    assert!(exit.success(), "exit {exit}:\n{}", log_text());

    // It wrote only where volumes are declared; no secret in its log.
    let text = log_text();
    assert!(!text.contains(KEY) && !text.contains(PG_PASSWORD) && !text.contains(S3_SECRET_KEY));
    for line in text.lines() {
        serde_json::from_str::<Value>(line)
            .unwrap_or_else(|e| panic!("production logs are JSON ({e}): {line}"));
    }
    assert_eq!(snapshot(&image), image_before, "the image's files changed");
}
