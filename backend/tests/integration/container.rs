//! The deployment as a tested artifact, without a container engine or a
//! cluster: `kubectl kustomize` renders `k8s/` (and `k8s/jobs/`) and
//! `docker-compose.yml` is read with `.env.example`'s values; then every
//! container of ours runs its own command with exactly what its manifest
//! declares — the image's environment (the Dockerfile's `ENV`) under its
//! `envFrom`/`environment`, its user, a read-only copy of the image's files,
//! its volumes (emptyDir, Secret files with their mode, tmpfs) and no other
//! writable path, its memory and CPU limits (cgroups with those limits, as
//! the kubelet makes: over the memory limit the process is OOM-killed and
//! the test fails; its CPU is throttled to the limit) and its volumes' size
//! limits — against a real PostgreSQL and S3 server
//! here, in the manifests' order: the bucket step, the migration, the
//! service through its probes, preStop and SIGTERM. A container that would
//! fail in the cluster fails here.
//!
//! What differs from a cluster, and only that: the addresses (the catalog
//! and the object store are on loopback, the service listens on free
//! loopback ports), container paths map to directories here, the object
//! store's keys are the test server's (garage imports its own), and the
//! binary is this build's (or the image's release binary when
//! `CONTAINER_BINARY` names it, as `scripts/image-smoke.sh` does).
//!
//! uid 1000: as root the test switches to it (and owns the volumes to it);
//! otherwise it runs the binary as uid 1000 in a user namespace (`unshare`),
//! and says on stderr when neither is possible.

use crate::common;

use std::{
    collections::BTreeMap,
    os::unix::{fs::PermissionsExt, process::CommandExt},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use common::{
    free_port,
    servers::{Postgres, PG_PASSWORD, S3, S3_ACCESS_KEY, S3_SECRET_KEY},
};
use serde_json::{json, Value};

const KEY: &str = "container-bootstrap-admin-key-0123456789";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// YAML documents as JSON, read by Python's yaml (installed with yamllint).
fn yaml_docs(text: &str) -> Vec<Value> {
    let mut child = Command::new("python3")
        .args([
            "-c",
            "import sys, json, yaml; print(json.dumps([d for d in yaml.safe_load_all(sys.stdin) if d]))",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `kubectl kustomize dir`: the manifests as the cluster receives them.
pub fn kustomize(dir: &Path) -> Vec<Value> {
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(dir)
        .output()
        .expect("kubectl (scripts/install-test-deps.sh installs it)");
    assert!(
        out.status.success(),
        "kubectl kustomize {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    yaml_docs(&String::from_utf8_lossy(&out.stdout))
}

pub fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in the rendered manifests"))
}

fn strings(map: &Value) -> BTreeMap<String, String> {
    map.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    let v = match v {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    (k.clone(), v)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// `512Mi`, `1Gi`, `256M`, `2560Mi`, `1073741824`: bytes.
pub fn quantity(text: &str) -> u64 {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().unwrap_or_else(|_| panic!("{text}"));
    let factor: f64 = match unit {
        "" => 1.0,
        "k" | "K" | "KB" => 1e3,
        "M" | "MB" => 1e6,
        "G" | "GB" => 1e9,
        "Ki" | "KiB" => 1024.0,
        "Mi" | "MiB" => 1024.0 * 1024.0,
        "Gi" | "GiB" => 1024.0 * 1024.0 * 1024.0,
        "m" => 1e-3,
        other => panic!("unit {other} of {text}"),
    };
    (number * factor) as u64
}

/// `500m`, `1`, `2`: thousandths of a CPU.
fn millis(cpu: &str) -> u64 {
    match cpu.strip_suffix('m') {
        Some(m) => m.parse().unwrap(),
        None => (cpu.parse::<f64>().unwrap() * 1000.0) as u64,
    }
}

/// A size as docker reads it: `16m`, `512M`, `1g` (powers of 1024).
fn docker_size(text: &str) -> u64 {
    let (number, unit) = text.split_at(text.len() - 1);
    let factor = match unit.to_ascii_lowercase().as_str() {
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        _ => return text.parse().unwrap(),
    };
    number.parse::<u64>().unwrap() * factor
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

fn disk_usage(dir: &Path) -> u64 {
    let out = Command::new("du").arg("-sb").arg(dir).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn chown(path: &Path, uid: u32, gid: u32) {
    let status = Command::new("chown")
        .args(["-R", &format!("{uid}:{gid}")])
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

/// How the binary becomes the container's user.
enum RunAs {
    /// Root switches to it, and the volumes belong to it.
    Switch,
    /// A user namespace maps this user to it (the volumes are this user's,
    /// so they are its own inside).
    Namespace(PathBuf),
    /// Neither: the binary runs as this user; why is on stderr.
    Unchanged,
}

fn run_as(uid: u32) -> RunAs {
    if is_root() {
        return RunAs::Switch;
    }
    let Some(unshare) = ["/usr/bin/unshare", "/bin/unshare"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
    else {
        eprintln!("SKIPPED the uid {uid} part: not root and no unshare(1)");
        return RunAs::Unchanged;
    };
    let probe = Command::new(&unshare)
        .args(namespace_args(uid))
        .args(["id", "-u"])
        .output();
    match probe {
        Ok(out) if String::from_utf8_lossy(&out.stdout).trim() == uid.to_string() => {
            eprintln!("not root: the binary runs as uid {uid} in a user namespace (unshare)");
            RunAs::Namespace(unshare)
        }
        other => {
            eprintln!("SKIPPED the uid {uid} part: no user namespace here ({other:?})");
            RunAs::Unchanged
        }
    }
}

fn namespace_args(uid: u32) -> [String; 4] {
    [
        "--user".into(),
        format!("--map-user={uid}"),
        format!("--map-group={uid}"),
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

/// Kills the service if the test fails before reaping it.
struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = Command::new("kill")
                .args(["-KILL", &self.0.to_string()])
                .status();
        }
    }
}

/// How a process ended: its exit code, or the signal that killed it.
type Ended = std::process::ExitStatus;

/// Reaps `child`; `None` while it runs (when not `block`).
fn reap(child: &mut Child, block: bool) -> Option<Ended> {
    if block {
        Some(child.wait().unwrap())
    } else {
        child.try_wait().unwrap()
    }
}

/// A container's memory and CPU limits, enforced as the kubelet and docker
/// do: cgroups of its own (v1 or v2, under this process's) with the limits,
/// which the process enters before it execs, so going over the memory limit
/// gets it OOM-killed and its CPU is throttled to the limit; the memory
/// cgroup's high-water mark is its peak.
struct MemoryCgroup {
    /// Every cgroup to enter (v1: one per controller; v2: one).
    dirs: Vec<PathBuf>,
    /// The file holding the peak memory use.
    peak: PathBuf,
    limit: u64,
}

impl MemoryCgroup {
    /// `None` (and why, on stderr) where no cgroup can be made.
    fn create(name: &str, limit: u64, cpu_millis: Option<u64>, uid: u32) -> Option<Self> {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
        let v2 = Path::new("/sys/fs/cgroup/cgroup.controllers").is_file();
        // This process's cgroup of a controller ("" for v2's unified one).
        let path_of = |controller: &str| {
            own.lines().find_map(|line| {
                let mut parts = line.splitn(3, ':');
                let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
                let ours = if controller.is_empty() {
                    controllers.is_empty()
                } else {
                    controllers.split(',').any(|c| c == controller)
                };
                ours.then(|| path.trim_start_matches('/').to_string())
            })
        };
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let leaf = format!("ducklake-test-{}-{n}-{name}", std::process::id());
        let quota = cpu_millis.map(|m| m * 100); // of a 100 ms period
                                                 // (directory, its settings)
        let mut groups: Vec<(PathBuf, Vec<(&str, String)>)> = Vec::new();
        let peak;
        if v2 {
            let dir = Path::new("/sys/fs/cgroup").join(path_of("")?).join(&leaf);
            let mut settings = vec![("memory.max", limit.to_string())];
            if let Some(q) = quota {
                settings.push(("cpu.max", format!("{q} 100000")));
            }
            peak = dir.join("memory.peak");
            groups.push((dir, settings));
        } else {
            let memory = Path::new("/sys/fs/cgroup/memory")
                .join(path_of("memory")?)
                .join(&leaf);
            peak = memory.join("memory.max_usage_in_bytes");
            groups.push((memory, vec![("memory.limit_in_bytes", limit.to_string())]));
            if let (Some(q), Some(cpu)) = (quota, path_of("cpu")) {
                let dir = Path::new("/sys/fs/cgroup/cpu").join(cpu).join(&leaf);
                groups.push((dir, vec![("cpu.cfs_quota_us", q.to_string())]));
            }
        }
        let mut made = Self {
            dirs: Vec::new(),
            peak,
            limit,
        };
        for (dir, settings) in groups {
            let result = std::fs::create_dir(&dir).and_then(|()| {
                made.dirs.push(dir.clone());
                for (file, value) in &settings {
                    std::fs::write(dir.join(file), value)?;
                }
                // The process enters it itself, after taking the container's uid.
                std::os::unix::fs::chown(dir.join("cgroup.procs"), Some(uid), None)
            });
            if let Err(e) = result {
                eprintln!(
                    "resource limits are not enforced here: no cgroup at {} ({e})",
                    dir.display()
                );
                return None;
            }
        }
        Some(made)
    }

    /// `cmd`'s process moves itself into the cgroups just before it execs.
    fn enter_before_exec(&self, cmd: &mut Command) {
        use std::os::unix::ffi::OsStrExt;
        let procs: Vec<std::ffi::CString> = self
            .dirs
            .iter()
            .map(|d| std::ffi::CString::new(d.join("cgroup.procs").as_os_str().as_bytes()).unwrap())
            .collect();
        // SAFETY: only async-signal-safe calls (open, write, close) between
        // fork and exec, on memory prepared before the fork.
        unsafe {
            cmd.pre_exec(move || {
                for path in &procs {
                    let fd = libc::open(path.as_ptr(), libc::O_WRONLY);
                    if fd < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    // "0": the writing process itself.
                    let written = libc::write(fd, b"0".as_ptr().cast(), 1);
                    libc::close(fd);
                    if written != 1 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
    }

    fn peak(&self) -> u64 {
        std::fs::read_to_string(&self.peak)
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for MemoryCgroup {
    fn drop(&mut self) {
        for dir in &self.dirs {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// The image's files, read-only, laid out as in the image, and the
/// environment, working directory and user its Dockerfile gives.
struct Image {
    root: PathBuf,
    env: Vec<(String, String)>,
    workdir: String,
    uid: u32,
    before: String,
}

impl Image {
    fn build(at: &Path) -> Self {
        let dockerfile = std::fs::read_to_string(repo().join("backend/Dockerfile")).unwrap();
        // The last stage's ENV (with line continuations), WORKDIR and USER.
        let last = &dockerfile[dockerfile.rfind("\nFROM ").unwrap()..];
        let joined = last.replace("\\\n", " ");
        let mut env = Vec::new();
        let mut workdir = "/".to_string();
        let mut uid = 0;
        for line in joined.lines() {
            let mut words = line.split_whitespace();
            match words.next() {
                Some("ENV") => env.extend(words.map(|pair| {
                    let (k, v) = pair.split_once('=').unwrap();
                    (k.to_string(), v.trim_matches('"').to_string())
                })),
                Some("WORKDIR") => workdir = words.next().unwrap().to_string(),
                Some("USER") => {
                    uid = words
                        .next()
                        .unwrap()
                        .split(':')
                        .next()
                        .unwrap()
                        .parse()
                        .unwrap()
                }
                _ => {}
            }
        }
        let root = at.join("image");
        let binary = root.join("usr/local/bin/ducklake-backend");
        std::fs::create_dir_all(binary.parent().unwrap()).unwrap();
        // CONTAINER_BINARY: the release binary taken out of the built image
        // (scripts/image-smoke.sh runs this test with it); else this build's.
        let source =
            std::env::var("CONTAINER_BINARY").unwrap_or_else(|_| common::binary::BIN.to_string());
        println!("binary under test: {source}");
        std::fs::copy(&source, &binary).unwrap();
        let extensions = env
            .iter()
            .find(|(k, _)| k == "DUCKDB_EXTENSION_DIRECTORY")
            .map(|(_, v)| v.clone())
            .expect("the image sets DUCKDB_EXTENSION_DIRECTORY");
        let into = root.join(extensions.trim_start_matches('/'));
        std::fs::create_dir_all(into.parent().unwrap()).unwrap();
        let from = std::env::var("DUCKDB_EXTENSION_DIRECTORY").map_or_else(
            |_| PathBuf::from(std::env::var("HOME").unwrap()).join(".duckdb/extensions"),
            PathBuf::from,
        );
        assert!(Command::new("cp")
            .arg("-r")
            .arg(&from)
            .arg(&into)
            .status()
            .unwrap()
            .success());
        // The image's CA bundle (Debian's ca-certificates, as here).
        if let Some((_, bundle)) = env.iter().find(|(k, _)| k == "SSL_CERT_FILE") {
            let into = root.join(bundle.trim_start_matches('/'));
            std::fs::create_dir_all(into.parent().unwrap()).unwrap();
            std::fs::copy(bundle, &into).unwrap();
        }
        assert!(Command::new("chmod")
            .args(["-R", "a-w"])
            .arg(&root)
            .status()
            .unwrap()
            .success());
        std::fs::set_permissions(at, PermissionsExt::from_mode(0o755)).unwrap();
        let before = snapshot(&root);
        Self {
            root,
            env,
            workdir,
            uid,
            before,
        }
    }

    fn unchanged(&self) {
        assert_eq!(
            snapshot(&self.root),
            self.before,
            "the image's files changed"
        );
    }
}

/// Where this machine's servers are, in place of the cluster's.
struct Here {
    pg_port: u16,
    s3_port: u16,
    http_port: u16,
    flight_port: u16,
}

/// One container as its manifest declares it.
struct Container<'a> {
    name: String,
    image: &'a Image,
    args: Vec<String>,
    /// As declared: the image's, then the manifest's (later wins).
    env: Vec<(String, String)>,
    /// Container path → directory here.
    mounts: Vec<(String, PathBuf)>,
    uid: u32,
    gid: u32,
    memory_limit: Option<u64>,
    /// The CPU limit in thousandths of a CPU.
    cpu_millis: Option<u64>,
    run_as: &'a RunAs,
}

impl Container<'_> {
    fn host_path(&self, path: &str) -> PathBuf {
        let mount = self
            .mounts
            .iter()
            .filter(|(at, _)| path == at || path.starts_with(&format!("{at}/")))
            .max_by_key(|(at, _)| at.len());
        match mount {
            Some((at, dir)) => dir.join(path[at.len()..].trim_start_matches('/')),
            None => self.image.root.join(path.trim_start_matches('/')),
        }
    }

    fn declared(&self, key: &str) -> Option<&str> {
        self.env
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The declared environment on this machine: addresses and paths only.
    fn environment(&self, here: &Here) -> Vec<(String, String)> {
        let mut env: BTreeMap<String, String> = BTreeMap::new();
        for (k, v) in &self.env {
            env.insert(k.clone(), v.clone());
        }
        for (key, value) in env.iter_mut() {
            let replaced = match key.as_str() {
                "DB_POSTGRES_HOST" => Some("127.0.0.1".to_string()),
                "DB_POSTGRES_PORT" => Some(here.pg_port.to_string()),
                "STORAGE_MINIO_ENDPOINT" => Some(format!("127.0.0.1:{}", here.s3_port)),
                "SERVER_HOST" if value == "0.0.0.0" => Some("127.0.0.1".to_string()),
                "SERVER_PORT" => Some(here.http_port.to_string()),
                "FLIGHT_PORT" => Some(here.flight_port.to_string()),
                _ if value.starts_with('/') => Some(self.host_path(value).display().to_string()),
                _ => None,
            };
            if let Some(replaced) = replaced {
                *value = replaced;
            }
        }
        env.into_iter().collect()
    }

    /// The container's command in a memory cgroup of its limit, if it has one.
    fn limited(&self, here: &Here, args: &[String]) -> (Command, Option<MemoryCgroup>) {
        let mut cmd = self.command(here, args);
        let cgroup = self
            .memory_limit
            .and_then(|limit| MemoryCgroup::create(&self.name, limit, self.cpu_millis, self.uid));
        if let Some(cgroup) = &cgroup {
            cgroup.enter_before_exec(&mut cmd);
        }
        (cmd, cgroup)
    }

    fn command(&self, here: &Here, args: &[String]) -> Command {
        let binary = self.host_path("/usr/local/bin/ducklake-backend");
        // unshare execs the binary: the child's pid is the service's.
        let mut cmd = match self.run_as {
            RunAs::Namespace(unshare) => {
                let mut cmd = Command::new(unshare);
                cmd.args(namespace_args(self.uid)).arg(&binary);
                cmd
            }
            RunAs::Switch | RunAs::Unchanged => Command::new(&binary),
        };
        cmd.env_clear()
            .envs(self.environment(here))
            .env("PATH", "/nonexistent")
            .current_dir(self.host_path(&self.image.workdir))
            .args(args);
        if let RunAs::Switch = self.run_as {
            cmd.uid(self.uid).gid(self.gid);
        }
        cmd
    }

    /// Runs the container's own command to its end: it must exit 0 within
    /// its memory limit.
    fn run_to_completion(&self, here: &Here) -> String {
        use std::io::Read;
        let (mut cmd, cgroup) = self.limited(here, &self.args);
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let errors = std::thread::spawn(move || {
            let mut err = String::new();
            stderr.read_to_string(&mut err).unwrap();
            err
        });
        let mut out = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        let err = errors.join().unwrap();
        let ended = reap(&mut child, true).unwrap();
        assert_eq!(
            ended.code(),
            Some(0),
            "container {} ({:?}) failed ({ended:?}{}):\n{out}\n{err}",
            self.name,
            self.args,
            self.memory_note(cgroup.as_ref())
        );
        self.within_memory(cgroup.as_ref());
        println!("{} {:?}: {}", self.name, self.args, out.trim());
        out
    }

    /// The peak against the limit (the limit itself was enforced: going
    /// over it is an OOM kill, which fails the container's run).
    fn within_memory(&self, cgroup: Option<&MemoryCgroup>) {
        if let Some(cgroup) = cgroup {
            let peak = cgroup.peak();
            assert!(
                peak > 0 && peak <= cgroup.limit,
                "container {} peaked at {peak} bytes; its memory limit is {}",
                self.name,
                cgroup.limit
            );
            println!(
                "{}: peak {} MiB of its {} MiB limit",
                self.name,
                peak >> 20,
                cgroup.limit >> 20
            );
        }
    }

    fn memory_note(&self, cgroup: Option<&MemoryCgroup>) -> String {
        cgroup.map_or_else(String::new, |c| {
            format!(
                "; memory peak {} of its limit {}: killed at the limit if equal",
                c.peak(),
                c.limit
            )
        })
    }
}

/// A certificate for 127.0.0.1 and localhost signed by a CA of the test's
/// own (openssl), made once per process: the Secret `ducklake-tls` of
/// `components/tls`. PEM text of each.
struct TestTls {
    cert: String,
    key: String,
    ca: String,
}

fn test_tls() -> &'static TestTls {
    static TLS: std::sync::LazyLock<TestTls> = std::sync::LazyLock::new(|| {
        let dir = tempfile::tempdir().unwrap();
        let made = common::certs::certificate(dir.path(), "DNS:localhost,IP:127.0.0.1");
        let read = |path: &Path| std::fs::read_to_string(path).unwrap();
        TestTls {
            cert: read(&made.cert),
            key: read(&made.key),
            ca: read(&made.ca),
        }
    });
    &TLS
}

/// The test's Secrets: the names and keys of `k8s/secrets.example.yaml`,
/// with values for this machine's servers.
fn secrets() -> BTreeMap<String, BTreeMap<String, String>> {
    let tls = test_tls();
    let values: BTreeMap<&str, &str> = [
        ("DB_POSTGRES_USER", "postgres"),
        ("DB_POSTGRES_PASSWORD", PG_PASSWORD),
        ("STORAGE_MINIO_ACCESS_KEY", S3_ACCESS_KEY),
        ("STORAGE_MINIO_SECRET_KEY", S3_SECRET_KEY),
        ("bootstrap-key", KEY),
        ("tls.crt", &tls.cert),
        ("tls.key", &tls.key),
    ]
    .into();
    let example = std::fs::read_to_string(repo().join("k8s/secrets.example.yaml")).unwrap();
    yaml_docs(&example)
        .iter()
        .map(|secret| {
            let keys = secret["data"].as_object().unwrap().keys().map(|key| {
                let value = values
                    .get(key.as_str())
                    .unwrap_or_else(|| panic!("no test value for the Secret key {key}"));
                (key.clone(), value.to_string())
            });
            (
                secret["metadata"]["name"].as_str().unwrap().to_string(),
                keys.collect(),
            )
        })
        .collect()
}

/// A pod of `spec` (a Deployment's or Job's template spec): its volumes as
/// directories under `at`, its containers as declared.
struct Pod<'a> {
    init: Vec<Container<'a>>,
    main: Vec<Container<'a>>,
    /// emptyDir volumes with their size limits.
    limits: Vec<(String, PathBuf, u64)>,
}

fn pod<'a>(
    spec: &Value,
    rendered: &[Value],
    image: &'a Image,
    run_as: &'a RunAs,
    at: &Path,
) -> Pod<'a> {
    let secrets = secrets();
    let security = &spec["securityContext"];
    let fs_group = security["fsGroup"].as_u64().unwrap_or(0) as u32;
    let mut volumes = BTreeMap::new();
    let mut limits = Vec::new();
    for volume in spec["volumes"].as_array().into_iter().flatten() {
        let name = volume["name"].as_str().unwrap();
        let dir = at.join("volumes").join(name);
        std::fs::create_dir_all(&dir).unwrap();
        if let Some(empty) = volume.get("emptyDir") {
            if let Some(limit) = empty["sizeLimit"].as_str() {
                limits.push((name.to_string(), dir.clone(), quantity(limit)));
            }
        } else if let Some(secret) = volume.get("secret") {
            let name = secret["secretName"].as_str().unwrap();
            let mode = secret["defaultMode"].as_u64().unwrap_or(0o644) as u32;
            for (key, value) in &secrets[name] {
                let file = dir.join(key);
                std::fs::write(&file, value).unwrap();
                std::fs::set_permissions(&file, PermissionsExt::from_mode(mode)).unwrap();
            }
        } else {
            panic!("volume {name}: only emptyDir and secret volumes are run here");
        }
        if let RunAs::Switch = run_as {
            // fsGroup: the pod's group owns its volumes.
            chown(&dir, 0, fs_group);
            std::fs::set_permissions(&dir, PermissionsExt::from_mode(0o2775)).unwrap();
        }
        volumes.insert(name.to_string(), dir);
    }
    let container = |c: &Value| -> Container<'a> {
        let name = c["name"].as_str().unwrap().to_string();
        assert_eq!(
            c["image"]
                .as_str()
                .unwrap()
                .rsplit('/')
                .next()
                .unwrap()
                .split(':')
                .next(),
            Some("ducklake-backend"),
            "container {name} runs our image"
        );
        let context = &c["securityContext"];
        assert_eq!(
            context["readOnlyRootFilesystem"], true,
            "container {name} has a read-only root"
        );
        let id = |key: &str| {
            context[key]
                .as_u64()
                .or(security[key].as_u64())
                .map_or(image.uid, |v| v as u32)
        };
        let mut env = image.env.clone();
        for from in c["envFrom"].as_array().into_iter().flatten() {
            if let Some(map) = from["configMapRef"]["name"].as_str() {
                env.extend(strings(&find(rendered, "ConfigMap", map)["data"]));
            }
            if let Some(secret) = from["secretRef"]["name"].as_str() {
                env.extend(secrets[secret].clone());
            }
        }
        for var in c["env"].as_array().into_iter().flatten() {
            env.push((
                var["name"].as_str().unwrap().to_string(),
                var["value"].as_str().unwrap().to_string(),
            ));
        }
        let mounts = c["volumeMounts"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|m| {
                (
                    m["mountPath"].as_str().unwrap().to_string(),
                    volumes[m["name"].as_str().unwrap()].clone(),
                )
            })
            .collect();
        let mut args: Vec<String> = c["command"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| a.as_str().unwrap().to_string())
            .collect();
        if let Some(first) = args.first() {
            assert_eq!(first, "/usr/local/bin/ducklake-backend");
            args.remove(0);
        }
        args.extend(
            c["args"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|a| a.as_str().unwrap().to_string()),
        );
        Container {
            name,
            image,
            args,
            env,
            mounts,
            uid: id("runAsUser"),
            gid: id("runAsGroup"),
            memory_limit: c["resources"]["limits"]["memory"].as_str().map(quantity),
            cpu_millis: c["resources"]["limits"]["cpu"].as_str().map(millis),
            run_as,
        }
    };
    Pod {
        init: spec["initContainers"]
            .as_array()
            .into_iter()
            .flatten()
            .map(container)
            .collect(),
        main: spec["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .map(container)
            .collect(),
        limits,
    }
}

impl Pod<'_> {
    fn within_size_limits(&self, when: &str) {
        for (name, dir, limit) in &self.limits {
            let used = disk_usage(dir);
            assert!(
                used <= *limit,
                "volume {name} holds {used} bytes {when}, over its sizeLimit of {limit}"
            );
        }
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

/// The service's HTTP listener as a client reaches it: plain, or HTTPS
/// trusting the test's CA only.
struct Http {
    base: String,
    client: reqwest::blocking::Client,
}

impl Http {
    fn new(port: u16, tls: bool) -> Self {
        let mut client = reqwest::blocking::Client::builder();
        if tls {
            client = client
                .tls_certs_only(
                    [reqwest::Certificate::from_pem(test_tls().ca.as_bytes()).unwrap()],
                );
        }
        let scheme = if tls { "https" } else { "http" };
        Self {
            base: format!("{scheme}://127.0.0.1:{port}"),
            client: client.build().unwrap(),
        }
    }

    fn status(&self, path: &str) -> Option<u16> {
        self.client
            .get(format!("{}{path}", self.base))
            .timeout(Duration::from_secs(3))
            .send()
            .ok()
            .map(|r| r.status().as_u16())
    }

    fn query(&self, key: &str, sql: &str) -> Value {
        let res = self
            .client
            .post(format!("{}/api/v1/query", self.base))
            .bearer_auth(key)
            .json(&json!({ "sql": sql }))
            .send()
            .unwrap();
        let code = res.status();
        let body: Value = res.json().unwrap();
        assert_eq!(code, 200, "{sql}: {body}");
        body
    }
}

/// Catalog connections the service holds now (its pools name themselves
/// `ducklake-backend/<pool>/<instance>`).
fn catalog_connections(pg: &Postgres) -> u64 {
    pg.psql(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'ducklake-backend/%'",
    )
    .trim()
    .parse()
    .unwrap()
}

/// How the service container is watched: by Kubernetes (its manifest's
/// probes and preStop hook) or by compose (its healthcheck command).
enum Watched<'a> {
    Kubernetes(&'a Value),
    Compose { healthcheck: Vec<String> },
}

/// The service container: through its probes, a workload, preStop and
/// SIGTERM, within its memory and volumes, `grace` its termination grace
/// period.
#[allow(clippy::too_many_arguments, clippy::zombie_processes)] // reaped in its wait loops
fn serve(
    container: &Container,
    pod: &Pod,
    here: &Here,
    pg: &Postgres,
    s3: &S3,
    key: &str,
    watched: Watched,
    grace: Duration,
) {
    let bucket = container.declared("STORAGE_DEFAULT_BUCKET").unwrap();
    let spec_container = match &watched {
        Watched::Kubernetes(c) => Some(*c),
        Watched::Compose { .. } => None,
    };
    // TLS on the listeners when the container's environment says so; then
    // the Kubernetes probes must speak HTTPS.
    let tls = container.declared("SERVER_TLS_CERT").is_some();
    if let Some(c) = spec_container {
        for name in ["startupProbe", "livenessProbe", "readinessProbe"] {
            let scheme = c[name]["httpGet"]["scheme"].as_str().unwrap_or("HTTP");
            assert_eq!(scheme == "HTTPS", tls, "{name}'s scheme with TLS {tls}");
        }
    }
    let http = Http::new(here.http_port, tls);
    let log = container.host_path("/tmp").join("service.log");
    let (mut cmd, cgroup) = container.limited(here, &container.args);
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let _kill = KillOnDrop(child.id());
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
    let (startup, liveness, readiness) = match spec_container {
        Some(c) => (
            probe(c, "startupProbe"),
            probe(c, "livenessProbe"),
            probe(c, "readinessProbe"),
        ),
        // compose: the healthcheck's start period and retries.
        None => {
            let p = |path: &str| Probe {
                path: path.into(),
                period: Duration::from_secs(10),
                failures: 6,
            };
            (p("/health"), p("/health"), p("/ready"))
        }
    };
    let mut ended = None;
    let note = || container.memory_note(cgroup.as_ref());
    let mut running = |ended: &mut Option<Ended>| {
        if ended.is_none() {
            *ended = reap(&mut child, false);
        }
        assert!(
            ended.is_none(),
            "exited ({ended:?}{}):\n{}",
            note(),
            log_text()
        );
    };

    // Start-up: the startup probe passes within its budget, then readiness.
    let started = Instant::now();
    wait_until(
        startup.period * startup.failures,
        || {
            running(&mut ended);
            http.status(&startup.path) == Some(200)
        },
        || format!("startup probe never passed:\n{}", log_text()),
    );
    wait_until(
        readiness.period * readiness.failures,
        || http.status(&readiness.path) == Some(200),
        || format!("never ready:\n{}", log_text()),
    );
    println!(
        "{}: ready {:?} after start",
        container.name,
        started.elapsed()
    );
    if tls {
        // HTTPS only: plain HTTP gets no answer; Flight SQL shows the same
        // certificate to a gRPC client (ALPN h2) that trusts the CA only.
        assert_eq!(
            Http::new(here.http_port, false).status("/health"),
            None,
            "plain HTTP on a TLS listener"
        );
        assert!(container.declared("FLIGHT_TLS_CERT").is_some());
        let ca = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(ca.path(), &test_tls().ca).unwrap();
        let handshake = Command::new("openssl")
            .args(["s_client", "-alpn", "h2", "-verify_return_error", "-CAfile"])
            .arg(ca.path())
            .args(["-connect", &format!("127.0.0.1:{}", here.flight_port)])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&handshake.stdout);
        assert!(
            handshake.status.success() && said.contains("Verify return code: 0 (ok)"),
            "Flight SQL's TLS: {said}{}",
            String::from_utf8_lossy(&handshake.stderr)
        );
    }
    if let Watched::Compose { healthcheck } = &watched {
        assert_eq!(healthcheck[0], "/usr/local/bin/ducklake-backend");
        let healthy = container.command(here, &healthcheck[1..]).output().unwrap();
        assert!(
            healthy.status.success(),
            "the healthcheck fails on a ready service: {}",
            String::from_utf8_lossy(&healthy.stderr)
        );
    }

    // Steady state: SQL with the bootstrap key, to S3; an upload; many
    // queries at once stay within the catalog connections the budget gives
    // a replica.
    http.query(
        key,
        "CREATE TABLE shipped AS SELECT range AS n FROM range(1000)",
    );
    assert_eq!(
        http.query(key, "SELECT count(*) FROM shipped")["rows"],
        json!([[1000]])
    );
    let unauthenticated = http
        .client
        .post(format!("{}/api/v1/query", http.base))
        .json(&json!({"sql": "SELECT 1"}))
        .send()
        .unwrap();
    assert_eq!(unauthenticated.status(), 401, "production requires a key");
    let csv: String = std::iter::once("n\n".to_string())
        .chain((0..20_000).map(|i| format!("{i}\n")))
        .collect();
    let upload = http
        .client
        .post(format!("{}/api/v1/tables/main/shipped/data", http.base))
        .bearer_auth(key)
        .header("Content-Type", "text/csv")
        .body(csv)
        .send()
        .unwrap();
    assert_eq!(upload.status(), 200, "{}", upload.text().unwrap());
    assert!(s3.list(bucket).contains(".parquet"), "data went to S3");
    let per_replica: u64 = ["DUCKDB_CONNECTIONS", "DB_POSTGRES_POOL_SIZE"]
        .iter()
        .map(|k| container.declared(k).unwrap().parse::<u64>().unwrap())
        .sum::<u64>()
        + SERVICE_DUCKDB_CONNECTIONS;
    let most = std::sync::atomic::AtomicU64::new(0);
    let busiest = std::sync::Mutex::new(String::new());
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        let watcher = scope.spawn(|| {
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let now = catalog_connections(pg);
                if now > most.fetch_max(now, std::sync::atomic::Ordering::Relaxed) {
                    *busiest.lock().unwrap() = pg.psql(
                        "SELECT application_name, state, left(query, 60) FROM pg_stat_activity \
                         WHERE application_name LIKE 'ducklake-backend/%' ORDER BY 1",
                    );
                }
            }
        });
        let clients: Vec<_> = (0..2 * per_replica)
            .map(|i| {
                let http = &http;
                scope.spawn(move || {
                    for _ in 0..5 {
                        http.status("/ready");
                        http.query(
                            key,
                            &format!(
                                "SELECT count(*), sum(n) + {i} FROM shipped WHERE n % 7 = {}",
                                i % 7
                            ),
                        );
                    }
                })
            })
            .collect();
        for c in clients {
            c.join().unwrap();
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        watcher.join().unwrap();
    });
    let most = most.into_inner();
    println!(
        "{}: at most {most} catalog connections of {per_replica}",
        container.name
    );
    assert!(
        most <= per_replica,
        "{most} catalog connections, over the {per_replica} the budget gives a replica:\n{}",
        busiest.into_inner().unwrap()
    );
    for (what, probe) in [("liveness", &liveness), ("readiness", &readiness)] {
        assert_eq!(http.status(&probe.path), Some(200), "{what} after work");
    }
    pod.within_size_limits("after work");

    // preStop, then SIGTERM: readiness fails by the next probe, the process
    // exits 0 well within the grace period.
    let stopping = Instant::now();
    if let Some(c) = spec_container {
        let pre_stop: Vec<String> = c["lifecycle"]["preStop"]["exec"]["command"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect();
        assert_eq!(pre_stop[0], "/usr/local/bin/ducklake-backend");
        let hook = container.command(here, &pre_stop[1..]).status().unwrap();
        assert!(hook.success());
    }
    common::binary::sigterm(&child);
    wait_until(
        readiness.period,
        || {
            let ready = http.status(&readiness.path);
            ready.is_none() || ready == Some(503)
        },
        || format!("readiness still passes after SIGTERM:\n{}", log_text()),
    );
    wait_until(
        grace.saturating_sub(stopping.elapsed()),
        || {
            if ended.is_none() {
                ended = reap(&mut child, false);
            }
            ended.is_some()
        },
        || "still running after the termination grace period".to_string(),
    );
    let ended = ended.unwrap();
    assert_eq!(ended.code(), Some(0), "{ended:?}{}: {}", note(), log_text());
    container.within_memory(cgroup.as_ref());
    pod.within_size_limits("at the end");

    // No secret in its log, which is JSON in production.
    let text = log_text();
    assert!(!text.contains(key) && !text.contains(PG_PASSWORD) && !text.contains(S3_SECRET_KEY));
    for line in text.lines() {
        serde_json::from_str::<Value>(line)
            .unwrap_or_else(|e| panic!("production logs are JSON ({e}): {line}"));
    }
}

#[test]
fn the_kubernetes_manifests_run_as_rendered() {
    run_kubernetes(&repo().join("k8s"));
}

#[test]
fn the_tls_component_serves_https_and_flight_over_tls_through_the_probes() {
    // k8s/ with `components/tls` enabled, as the guide says to.
    let dir = tempfile::tempdir().unwrap();
    let k8s = copy_of_k8s(dir.path());
    enable_component(&k8s, "tls");
    run_kubernetes(&k8s);
}

/// Renders `k8s` (and its `jobs/`) and runs every container of it.
fn run_kubernetes(k8s: &Path) {
    let rendered = kustomize(k8s);
    let jobs = kustomize(&k8s.join("jobs"));
    let configmap = strings(&find(&rendered, "ConfigMap", "ducklake-backend")["data"]);
    let bucket = &configmap["STORAGE_DEFAULT_BUCKET"];
    let pg = Postgres::start();
    pg.psql(&format!("CREATE DATABASE {}", configmap["DB_POSTGRES_DB"]));
    // The server has another bucket: the lake's is created by the bucket step.
    let s3 = S3::start("unrelated-bucket");
    assert!(
        !s3.garage(&["bucket", "list"]).contains(bucket.as_str()),
        "the lake's bucket does not exist yet"
    );
    let here = Here {
        pg_port: pg.port,
        s3_port: s3.port,
        http_port: free_port(),
        flight_port: free_port(),
    };
    let root = tempfile::tempdir().unwrap();
    let image = Image::build(root.path());
    let run_as = run_as(image.uid);
    let mut ran = Vec::new();

    // The optional migration Job, with exactly its environment: the
    // ConfigMap and the catalog's Secret (no object store keys).
    let job = find(&jobs, "Job", "ducklake-backend-migrate");
    let job_pod = pod(
        &job["spec"]["template"]["spec"],
        &rendered,
        &image,
        &run_as,
        &root.path().join("job"),
    );
    for c in job_pod.init.iter().chain(&job_pod.main) {
        assert!(c.declared("STORAGE_MINIO_ACCESS_KEY").is_none());
        let out = c.run_to_completion(&here);
        assert!(
            out.contains("migration") || out.contains("up to date"),
            "{out}"
        );
        ran.push(format!("Job/{}", c.name));
    }
    job_pod.within_size_limits("after the Job");

    // The Deployment's pod: its init containers in order (the bucket, then
    // the migration, which finds nothing left), then the service.
    let deployment = find(&rendered, "Deployment", "ducklake-backend");
    let spec = &deployment["spec"]["template"]["spec"];
    let service_pod = pod(spec, &rendered, &image, &run_as, &root.path().join("pod"));
    let init_names: Vec<&str> = service_pod.init.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(init_names, ["create-bucket", "migrate"]);
    let created = service_pod.init[0].run_to_completion(&here);
    assert_eq!(created.trim(), format!("created bucket {bucket}"));
    assert!(s3.garage(&["bucket", "list"]).contains(bucket.as_str()));
    let migrated = service_pod.init[1].run_to_completion(&here);
    assert!(migrated.contains("up to date"), "{migrated}");
    ran.extend(
        service_pod
            .init
            .iter()
            .map(|c| format!("Deployment/{}", c.name)),
    );
    // A second pod's bucket step finds the bucket.
    assert_eq!(
        service_pod.init[0].run_to_completion(&here).trim(),
        format!("bucket {bucket} exists")
    );

    let manifest = &spec["containers"][0];
    let service = &service_pod.main[0];
    // The probes' named port is the port the service listens on.
    let http = manifest["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == manifest["readinessProbe"]["httpGet"]["port"])
        .unwrap();
    assert_eq!(
        http["containerPort"].to_string(),
        configmap["SERVER_PORT"],
        "the probes reach SERVER_PORT"
    );
    let grace = Duration::from_secs(spec["terminationGracePeriodSeconds"].as_u64().unwrap());
    serve(
        service,
        &service_pod,
        &here,
        &pg,
        &s3,
        KEY,
        Watched::Kubernetes(manifest),
        grace,
    );
    ran.push(format!("Deployment/{}", service.name));
    image.unchanged();

    // Every container of ours in the rendered manifests ran.
    let mut declared = Vec::new();
    for doc in rendered.iter().chain(&jobs) {
        let spec = &doc["spec"]["template"]["spec"];
        for key in ["initContainers", "containers"] {
            for c in spec[key].as_array().into_iter().flatten() {
                declared.push(format!(
                    "{}/{}",
                    doc["kind"].as_str().unwrap(),
                    c["name"].as_str().unwrap()
                ));
            }
        }
    }
    declared.sort();
    ran.sort();
    assert_eq!(ran, declared, "every container of the manifests ran");
}

/// docker-compose.yml's variables filled in from `.env.example` the way
/// compose interpolates them: `${VAR}`, `${VAR:-default}`, `${VAR:?error}`,
/// `$$` for a literal `$`.
fn compose_file() -> Value {
    let env: BTreeMap<String, String> = std::fs::read_to_string(repo().join(".env.example"))
        .unwrap()
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let text = std::fs::read_to_string(repo().join("docker-compose.yml")).unwrap();
    let variable = regex::Regex::new(r"\$\$|\$\{([A-Z0-9_]+)(?:(:-|:\?)([^}]*))?\}").unwrap();
    let filled = variable.replace_all(&text, |c: &regex::Captures| {
        if &c[0] == "$$" {
            return "$".to_string();
        }
        let name = &c[1];
        match (
            env.get(name).filter(|v| !v.is_empty()),
            c.get(2).map(|m| m.as_str()),
        ) {
            (Some(v), _) => v.clone(),
            (None, Some(":-")) => c[3].to_string(),
            (None, Some(":?")) => panic!("compose would stop: {name}: {}", &c[3]),
            (None, _) => String::new(),
        }
    });
    yaml_docs(&filled).remove(0)
}

#[test]
fn the_compose_stack_runs_in_order() {
    let compose = compose_file();
    let services = compose["services"].as_object().unwrap();
    // Dependency order: each service after what it depends on.
    let mut order: Vec<String> = Vec::new();
    while order.len() < services.len() {
        let before = order.len();
        for (name, service) in services {
            let deps: Vec<&String> = service["depends_on"]
                .as_object()
                .map(|d| d.keys().collect())
                .unwrap_or_default();
            if !order.contains(name) && deps.iter().all(|d| order.contains(d)) {
                order.push(name.clone());
            }
        }
        assert!(order.len() > before, "a dependency cycle in {order:?}");
    }
    println!("compose order: {order:?}");

    let root = tempfile::tempdir().unwrap();
    let image = Image::build(root.path());
    let run_as = run_as(image.uid);
    let mut pg = None;
    let mut s3 = None;
    let mut here = None;
    let mut ran = Vec::new();
    for name in &order {
        let service = &services[name];
        let reference = service["image"].as_str().unwrap();
        let environment = strings(&service["environment"]);
        if reference.starts_with("postgres:") {
            // The catalog: our PostgreSQL, with the database and role
            // compose's postgres image makes from its environment.
            let server = Postgres::start();
            server.psql(&format!(
                "CREATE ROLE {} LOGIN PASSWORD '{}'",
                environment["POSTGRES_USER"], environment["POSTGRES_PASSWORD"]
            ));
            server.psql(&format!(
                "CREATE DATABASE {} OWNER {}",
                environment["POSTGRES_DB"], environment["POSTGRES_USER"]
            ));
            pg = Some(server);
            ran.push(name.clone());
            continue;
        }
        if reference.starts_with("minio/") {
            s3 = Some(S3::start("unrelated-bucket"));
            ran.push(name.clone());
            continue;
        }
        assert!(
            reference.starts_with("ducklake-backend:"),
            "{name}: {reference} is neither ours nor a server this test stands in for"
        );
        let (pg, s3) = (pg.as_ref().unwrap(), s3.as_ref().unwrap());
        let here = here.get_or_insert_with(|| Here {
            pg_port: pg.port,
            s3_port: s3.port,
            http_port: free_port(),
            flight_port: free_port(),
        });
        assert_eq!(service["read_only"], true, "{name} has a read-only root");
        let (uid, gid) = service["user"]
            .as_str()
            .map(|u| {
                let (u, g) = u.split_once(':').unwrap();
                (u.parse().unwrap(), g.parse().unwrap())
            })
            .unwrap_or((image.uid, image.uid));
        let dir = root.path().join(name);
        let mut mounts = Vec::new();
        let mut limits = Vec::new();
        for tmpfs in service["tmpfs"].as_array().into_iter().flatten() {
            let spec = tmpfs.as_str().unwrap();
            let (at, options) = spec.split_once(':').unwrap_or((spec, ""));
            let host = dir.join(at.trim_start_matches('/'));
            std::fs::create_dir_all(&host).unwrap();
            if let Some(size) = options.split(',').find_map(|o| o.strip_prefix("size=")) {
                limits.push((at.to_string(), host.clone(), docker_size(size)));
            }
            mounts.push((at.to_string(), host));
        }
        for volume in service["volumes"].as_array().into_iter().flatten() {
            let (_, at) = volume.as_str().unwrap().split_once(':').unwrap();
            let host = dir.join(at.trim_start_matches('/'));
            std::fs::create_dir_all(&host).unwrap();
            mounts.push((at.to_string(), host));
        }
        if let RunAs::Switch = run_as {
            chown(&dir, uid, gid);
        }
        let mut env = image.env.clone();
        env.extend(environment);
        // The object store's keys: the test server's (garage imports its own).
        env.retain(|(k, _)| k != "STORAGE_MINIO_ACCESS_KEY" && k != "STORAGE_MINIO_SECRET_KEY");
        env.push(("STORAGE_MINIO_ACCESS_KEY".into(), S3_ACCESS_KEY.into()));
        env.push(("STORAGE_MINIO_SECRET_KEY".into(), S3_SECRET_KEY.into()));
        let args: Vec<String> = service["command"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_string())
            .collect();
        let container = Container {
            name: name.clone(),
            image: &image,
            args,
            env,
            mounts,
            uid,
            gid,
            cpu_millis: service["deploy"]["resources"]["limits"]["cpus"]
                .as_str()
                .map(|cpus| (cpus.parse::<f64>().unwrap() * 1000.0) as u64),
            memory_limit: service["deploy"]["resources"]["limits"]["memory"]
                .as_str()
                .map(docker_size),
            run_as: &run_as,
        };
        let pod = Pod {
            init: Vec::new(),
            main: Vec::new(),
            limits,
        };
        if service["restart"].as_str() == Some("no") {
            // A one-shot step: exits 0 (service_completed_successfully).
            container.run_to_completion(here);
            pod.within_size_limits("after it");
        } else {
            // Published on loopback only, unless BIND_ADDRESS says otherwise.
            for port in service["ports"].as_array().unwrap() {
                assert!(
                    port.as_str().unwrap().starts_with("127.0.0.1:"),
                    "{name} publishes {port} beyond this machine"
                );
            }
            let healthcheck: Vec<String> = service["healthcheck"]["test"]
                .as_array()
                .unwrap()
                .iter()
                .skip(1)
                .map(|a| a.as_str().unwrap().to_string())
                .collect();
            let grace = service["stop_grace_period"]
                .as_str()
                .map_or(Duration::from_secs(10), |g| {
                    Duration::from_secs(g.trim_end_matches('s').parse().unwrap())
                });
            let key = container
                .declared("AUTH_BOOTSTRAP_KEY")
                .unwrap()
                .to_string();
            serve(
                &container,
                &pod,
                here,
                pg,
                s3,
                &key,
                Watched::Compose { healthcheck },
                grace,
            );
        }
        ran.push(name.clone());
    }
    image.unchanged();
    assert_eq!(ran, order, "every compose service ran");
}

/// The budgets table of the deploy guide, row by row.
fn budget_rows() -> BTreeMap<String, String> {
    let page = std::fs::read_to_string(repo().join("docs/src/guides/deploy.md")).unwrap();
    let table = &page[page.find("### Budgets").expect("a Budgets section")..];
    table
        .lines()
        .skip_while(|l| !l.starts_with("| Budget |"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            let cells: Vec<&str> = l.trim_matches('|').split(" | ").map(str::trim).collect();
            assert_eq!(cells.len(), 3, "{l}");
            (cells[0].to_string(), cells[2].to_string())
        })
        .collect()
}

/// DuckDB connections of the service's own that reach the lake, beside the
/// `DUCKDB_CONNECTIONS` that run queries: the readiness probe's and the
/// hot-table copier's.
const SERVICE_DUCKDB_CONNECTIONS: u64 = 2;

/// PostgreSQL's defaults and the connections the guide keeps for people.
const PG_MAX_CONNECTIONS: u64 = 100;
const PG_SUPERUSER_RESERVED: u64 = 3;
const PG_KEPT_FOR_TOOLS: u64 = 10;

#[test]
fn the_budgets_table_holds_for_the_manifests() {
    let rendered = kustomize(&repo().join("k8s"));
    let config = strings(&find(&rendered, "ConfigMap", "ducklake-backend")["data"]);
    let setting = |key: &str| {
        config
            .get(key)
            .unwrap_or_else(|| panic!("{key} is set"))
            .clone()
    };
    let number = |key: &str| setting(key).parse::<u64>().unwrap();
    let deployment = find(&rendered, "Deployment", "ducklake-backend");
    let spec = &deployment["spec"]["template"]["spec"];
    let service = spec["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "ducklake-backend")
        .unwrap();
    let hpa = find(&rendered, "HorizontalPodAutoscaler", "ducklake-backend");
    let rows = budget_rows();
    let row = |name: &str| {
        rows.get(name)
            .unwrap_or_else(|| panic!("no row {name}"))
            .clone()
    };

    // Connections.
    let max = hpa["spec"]["maxReplicas"].as_u64().unwrap();
    let surge = deployment["spec"]["strategy"]["rollingUpdate"]["maxSurge"]
        .as_u64()
        .unwrap();
    let (duckdb, pool) = (
        number("DUCKDB_CONNECTIONS"),
        number("DB_POSTGRES_POOL_SIZE"),
    );
    let own = SERVICE_DUCKDB_CONNECTIONS;
    let used = (max + surge) * (duckdb + own + pool) + 1;
    let room = PG_MAX_CONNECTIONS - PG_SUPERUSER_RESERVED - PG_KEPT_FOR_TOOLS;
    assert_eq!(
        row("PostgreSQL connections"),
        format!(
            "({max} + {surge}) × ({duckdb} + {own} + {pool}) + 1 = {used} ≤ \
             {PG_MAX_CONNECTIONS} − {PG_SUPERUSER_RESERVED} − {PG_KEPT_FOR_TOOLS} = {room}"
        )
    );
    assert!(used <= room, "{used} connections > {room}");

    // Memory: DuckDB's share of the limit; request = limit; the HPA does
    // not scale on memory.
    let limits = &service["resources"]["limits"];
    let requests = &service["resources"]["requests"];
    let memory = limits["memory"].as_str().unwrap();
    assert_eq!(
        requests["memory"], limits["memory"],
        "memory request = limit"
    );
    let duckdb_memory = setting("DUCKDB_MEMORY_LIMIT");
    let share = quantity(memory) * 6 / 10;
    assert_eq!(
        row("Memory"),
        format!(
            "{duckdb_memory} ≤ 60% of {memory} ({}MB)",
            share / 1_000_000
        )
    );
    assert!(quantity(&duckdb_memory) <= share);
    for metric in hpa["spec"]["metrics"].as_array().unwrap() {
        assert_eq!(
            metric["resource"]["name"], "cpu",
            "the HPA scales on CPU only"
        );
    }

    // Disk.
    let size_limit = |volume: &str| -> String {
        spec["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == volume)
            .unwrap()["emptyDir"]["sizeLimit"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let mount = |volume: &str| -> String {
        service["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == volume)
            .unwrap()["mountPath"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(
        mount("data"),
        setting("DATA_DIR"),
        "DATA_DIR is the data volume"
    );
    assert_eq!(mount("tmp"), "/tmp");
    let gib = |bytes: u64| {
        assert_eq!(bytes % (1 << 30), 0, "{bytes}");
        format!("{}GiB", bytes >> 30)
    };
    let (upload, spool) = (
        number("INGEST_MAX_UPLOAD_BYTES"),
        number("INGEST_MAX_SPOOL_BYTES"),
    );
    let temp = setting("DUCKDB_MAX_TEMP_DIRECTORY_SIZE");
    let data = size_limit("data");
    assert_eq!(
        row("Disk: `/data`"),
        format!(
            "{} ≤ {}; {temp} + {} ≤ {data}",
            gib(upload),
            gib(spool),
            gib(spool)
        )
    );
    assert!(upload <= spool && spool > 0);
    assert!(quantity(&temp) + spool <= quantity(&data));
    let tmp = size_limit("tmp");
    let ephemeral = limits["ephemeral-storage"].as_str().unwrap();
    assert_eq!(
        row("Ephemeral storage"),
        format!("{data} + {tmp} ≤ {ephemeral}")
    );
    assert!(quantity(&data) + quantity(&tmp) <= quantity(ephemeral));

    // CPU.
    let threads = setting("DUCKDB_THREADS");
    let cpu = limits["cpu"].as_str().unwrap();
    assert_eq!(row("CPU"), format!("{threads} ≤ {cpu}"));
    let millis = millis(cpu);
    assert!(threads.parse::<u64>().unwrap() * 1000 <= millis);
    assert_eq!(rows.len(), 5, "a row the test does not check: {rows:?}");

    // docker compose keeps the same numbers where it has them.
    let compose = compose_file();
    let service = &compose["services"]["ducklake-backend"];
    let env = strings(&service["environment"]);
    for key in [
        "DUCKDB_MEMORY_LIMIT",
        "DUCKDB_THREADS",
        "DUCKDB_CONNECTIONS",
        "DB_POSTGRES_POOL_SIZE",
        "INGEST_MAX_UPLOAD_BYTES",
        "INGEST_MAX_SPOOL_BYTES",
        "DUCKDB_MAX_TEMP_DIRECTORY_SIZE",
    ] {
        assert_eq!(env.get(key), config.get(key), "compose's {key}");
    }
    let compose_limits = &service["deploy"]["resources"]["limits"];
    assert_eq!(
        docker_size(compose_limits["memory"].as_str().unwrap()),
        quantity(memory)
    );
    assert_eq!(
        compose_limits["cpus"]
            .as_str()
            .unwrap()
            .parse::<f64>()
            .unwrap()
            * 1000.0,
        millis as f64
    );
}

/// A copy of `k8s/` to render variations of, at `at/k8s`.
fn copy_of_k8s(at: &Path) -> PathBuf {
    assert!(Command::new("cp")
        .arg("-r")
        .arg(repo().join("k8s"))
        .arg(at)
        .status()
        .unwrap()
        .success());
    at.join("k8s")
}

#[test]
fn the_guides_image_overlay_names_every_container() {
    // The guide's commands, verbatim: the overlay file they write.
    let page = std::fs::read_to_string(repo().join("docs/src/guides/deploy.md")).unwrap();
    let block = page
        .split("```sh,norun\n")
        .find(|b| b.contains("deploy/kustomization.yaml"))
        .expect("the image walkthrough")
        .split("```")
        .next()
        .unwrap();
    let overlay: String = block
        .lines()
        .skip_while(|l| !l.contains("<<'YAML'"))
        .skip(1)
        .take_while(|l| *l != "YAML")
        .map(|l| format!("{l}\n"))
        .collect();
    let name = regex::Regex::new(r"newName: (\S+)\n\s+newTag: (\S+)")
        .unwrap()
        .captures(&overlay)
        .expect("newName and newTag");
    let wanted = format!("{}:{}", &name[1], &name[2]);
    let dir = tempfile::tempdir().unwrap();
    copy_of_k8s(dir.path());
    std::fs::create_dir_all(dir.path().join("deploy")).unwrap();
    std::fs::write(dir.path().join("deploy/kustomization.yaml"), &overlay).unwrap();
    let rendered = kustomize(&dir.path().join("deploy"));
    let mut images = Vec::new();
    for doc in &rendered {
        let spec = &doc["spec"]["template"]["spec"];
        for key in ["initContainers", "containers"] {
            for c in spec[key].as_array().into_iter().flatten() {
                images.push((
                    c["image"].as_str().unwrap().to_string(),
                    c["imagePullPolicy"].clone(),
                ));
            }
        }
    }
    assert_eq!(images.len(), 3, "{images:?}");
    for (image, policy) in images {
        assert_eq!(image, wanted);
        assert_eq!(policy, "IfNotPresent");
    }
    // The shipped version is the crate's, in both kustomizations.
    let version = env!("CARGO_PKG_VERSION");
    for dir in ["k8s", "k8s/jobs"] {
        for doc in kustomize(&repo().join(dir)) {
            let spec = &doc["spec"]["template"]["spec"];
            for key in ["initContainers", "containers"] {
                for c in spec[key].as_array().into_iter().flatten() {
                    assert_eq!(c["image"], format!("ducklake-backend:{version}"));
                }
            }
        }
    }
}

/// Enables the optional component `name` of the kustomization at `k8s` as
/// the guide says: uncomment `components:` and the component's line.
fn enable_component(k8s: &Path, name: &str) {
    let file = k8s.join("kustomization.yaml");
    let text = std::fs::read_to_string(&file).unwrap();
    let line = format!("#   - components/{name}\n");
    assert!(
        text.contains("\n# components:\n") && text.contains(&line),
        "{name} is offered, commented out, in {text}"
    );
    let text = text
        .replace("\n# components:\n", "\ncomponents:\n")
        .replace(&line, &format!("  - components/{name}\n"));
    std::fs::write(&file, text).unwrap();
}

/// The egress rules of the policies: (policy, destinations, ports).
fn egress(rendered: &[Value]) -> Vec<(String, Vec<Value>, Vec<Value>)> {
    rendered
        .iter()
        .filter(|d| d["kind"] == "NetworkPolicy")
        .flat_map(|d| {
            let name = d["metadata"]["name"].as_str().unwrap().to_string();
            d["spec"]["egress"]
                .as_array()
                .unwrap()
                .iter()
                .map(move |rule| {
                    (
                        name.clone(),
                        rule["to"].as_array().unwrap().clone(),
                        rule["ports"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|p| p["port"].clone())
                            .collect(),
                    )
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn egress_follows_the_configmap_and_the_external_endpoints_knob() {
    let dir = tempfile::tempdir().unwrap();
    let k8s = copy_of_k8s(dir.path());
    // An external catalog and object store on other ports.
    let configmap = k8s.join("configmap.yaml");
    let text = std::fs::read_to_string(&configmap)
        .unwrap()
        .replace("DB_POSTGRES_PORT: \"5432\"", "DB_POSTGRES_PORT: \"6432\"")
        .replace(
            "STORAGE_MINIO_ENDPOINT: minio.ducklake.svc.cluster.local:9000",
            "STORAGE_MINIO_ENDPOINT: s3.eu-west-1.amazonaws.com:443",
        );
    assert!(text.contains("6432") && text.contains(":443"));
    std::fs::write(&configmap, text).unwrap();
    let base = kustomize(&k8s);
    let rules = egress(&base);
    let dns = json!([53, 53]);
    let expect_in_cluster = [
        ("ducklake-backend", "postgres", json!([6432])),
        ("ducklake-backend", "minio", json!([443])),
        ("ducklake-backend-migrate", "postgres", json!([6432])),
    ];
    for (policy, label, ports) in &expect_in_cluster {
        assert!(
            rules.iter().any(|(p, to, ps)| p == policy
                && to[0]["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == *label
                && json!(ps) == *ports),
            "{policy} reaches {label} on {ports}: {rules:?}"
        );
    }
    assert_eq!(rules.len(), 5, "no other destination: {rules:?}");
    assert!(rules.iter().all(|(_, _, ps)| json!(ps) != json!([])));
    assert_eq!(
        rules.iter().filter(|(_, _, ps)| json!(ps) == dns).count(),
        2,
        "DNS"
    );

    // The knob, as the guide says: CIDRs in egress.yaml, the component on.
    let egress_file = k8s.join("components/external-endpoints/egress.yaml");
    let text = std::fs::read_to_string(&egress_file)
        .unwrap()
        .replace("POSTGRES_CIDR: 10.0.0.10/32", "POSTGRES_CIDR: 192.0.2.7/32")
        .replace("S3_CIDR: 10.0.0.20/32", "S3_CIDR: 198.51.100.0/24");
    std::fs::write(&egress_file, text).unwrap();
    enable_component(&k8s, "external-endpoints");
    let external = kustomize(&k8s);
    let rules = egress(&external);
    for (policy, cidr, ports) in [
        ("ducklake-backend", "192.0.2.7/32", json!([6432])),
        ("ducklake-backend", "198.51.100.0/24", json!([443])),
        ("ducklake-backend-migrate", "192.0.2.7/32", json!([6432])),
    ] {
        assert!(
            rules.iter().any(|(p, to, ps)| p == policy
                && to == &vec![json!({"ipBlock": {"cidr": cidr}})]
                && json!(ps) == ports),
            "{policy} reaches {cidr} on {ports}: {rules:?}"
        );
    }
    assert!(
        !rules.iter().any(
            |(_, to, _)| to.iter().any(|t| t["podSelector"]["matchLabels"]
                ["app.kubernetes.io/name"]
                .is_string()
                && t["namespaceSelector"].is_null())
        ),
        "no in-namespace pod destinations left: {rules:?}"
    );
    // The service does not read the knob's ConfigMap (it has no settings).
    let deployment = find(&external, "Deployment", "ducklake-backend");
    assert!(!deployment.to_string().contains("ducklake-egress"));
}
