//! HTTPS on the HTTP listener (`server.tls_cert`/`server.tls_key`): queries
//! over TLS, nothing for plain HTTP, the `healthcheck` probe, what
//! `/config/summary` shows, and the settings refused at check and at start.

use crate::common;

use std::{
    io::{Read, Write},
    path::{Path, PathBuf},
    process::{Output, Stdio},
    time::Duration,
};

use common::binary::service_command;
use ducklake_backend::Application;
use serde_json::Value;

/// A certificate for `localhost` (not for 127.0.0.1) signed by a CA of the
/// test's own, and a second key that belongs to no certificate.
struct Files {
    cert: PathBuf,
    key: PathBuf,
    ca: PathBuf,
    other_key: PathBuf,
}

fn make_certificate(dir: &Path) -> Files {
    let made = common::certs::certificate(dir, "DNS:localhost");
    let other = std::process::Command::new("openssl")
        .current_dir(dir)
        .args([
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-out", "other.key"])
        .output()
        .expect("openssl runs");
    assert!(other.status.success(), "{other:?}");
    Files {
        cert: made.cert,
        key: made.key,
        ca: made.ca,
        other_key: dir.join("other.key"),
    }
}

fn run(cmd: &mut std::process::Command) -> Output {
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("the binary runs")
}

/// The `healthcheck` command against the service on `port`, with `env`.
async fn healthcheck(data_dir: &Path, port: u16, env: &[(&str, &Path)]) -> Output {
    let mut cmd = service_command();
    cmd.env("DATA_DIR", data_dir)
        .env("SERVER_PORT", port.to_string())
        .envs(env.iter().map(|(k, v)| (*k, v.as_os_str())))
        .arg("healthcheck");
    tokio::task::spawn_blocking(move || run(&mut cmd))
        .await
        .unwrap()
}

/// Sends a plain HTTP query to `port` and returns all it gets back before
/// the connection ends (the read timeout only bounds a hang).
async fn plain_http_exchange(port: u16, sql: &str) -> Vec<u8> {
    let body = serde_json::json!({ "sql": sql }).to_string();
    let request = format!(
        "POST /api/v1/query HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut received = Vec::new();
        // The server may reset the connection while the request is still
        // being written: nothing came back then.
        if stream.write_all(request.as_bytes()).is_ok() {
            let _ = stream.read_to_end(&mut received);
        }
        received
    })
    .await
    .unwrap()
}

#[actix_web::test]
async fn https_serves_queries_and_plain_http_gets_no_data() {
    let dir = tempfile::tempdir().unwrap();
    let files = make_certificate(dir.path());
    let data_dir = dir.path().join("data");
    let mut config = common::test_config(&data_dir);
    config.server.tls_cert = Some(files.cert.clone());
    config.server.tls_key = Some(files.key.clone());
    let mut app = common::spawn_with(config, None).await;
    let port: u16 = app.base.rsplit(':').next().unwrap().parse().unwrap();

    // A client that trusts only the test's CA, by the certificate's name.
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&files.ca).unwrap()).unwrap();
    app.base = format!("https://localhost:{port}");
    app.client = reqwest::Client::builder()
        .tls_certs_only([ca])
        .build()
        .unwrap();
    let answer = app.sql("SELECT 'over-tls' AS marker").await;
    assert!(answer.to_string().contains("over-tls"), "{answer}");
    let (status, ready) = app.get_json("/ready").await;
    assert_eq!(status, 200, "{ready}");

    // The summary shows both paths and nothing of the key's content.
    let (status, summary) = app.get_json("/config/summary").await;
    assert_eq!(status, 200, "{summary}");
    let setting = |key: &str| -> Value {
        summary["settings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["key"] == key)
            .unwrap_or_else(|| panic!("{key} in {summary}"))["value"]
            .clone()
    };
    assert_eq!(setting("server.tls_cert"), files.cert.display().to_string());
    assert_eq!(setting("server.tls_key"), files.key.display().to_string());
    let key_pem = std::fs::read_to_string(&files.key).unwrap();
    let key_body = key_pem.lines().nth(1).unwrap();
    let text = summary.to_string();
    assert!(!text.contains("PRIVATE KEY"), "{text}");
    assert!(!text.contains(key_body), "{text}");

    // Plain HTTP to the same port: no HTTP answer, no data.
    let received = plain_http_exchange(port, "SELECT 'over-plain' AS marker").await;
    let received = String::from_utf8_lossy(&received);
    assert!(!received.starts_with("HTTP/"), "{received}");
    assert!(!received.contains("over-plain"), "{received}");

    // The probe the image and the Deployment run: https when the service
    // has a certificate, though the certificate does not name 127.0.0.1;
    // plain http gets no answer from that port.
    let tls_env = [
        ("SERVER_TLS_CERT", files.cert.as_path()),
        ("SERVER_TLS_KEY", files.key.as_path()),
    ];
    let probe = healthcheck(&data_dir, port, &tls_env).await;
    assert!(probe.status.success(), "{probe:?}");
    let probe = healthcheck(&data_dir, port, &[]).await;
    assert_eq!(probe.status.code(), Some(1), "{probe:?}");
    assert!(
        String::from_utf8_lossy(&probe.stderr).contains(&format!("http://127.0.0.1:{port}")),
        "{probe:?}"
    );
    app.stop().await;
    drop(dir);
}

#[test]
fn check_config_refuses_a_certificate_without_its_key() {
    let dir = tempfile::tempdir().unwrap();
    for (set, path) in [
        ("SERVER_TLS_CERT", "/etc/tls/tls.crt"),
        ("SERVER_TLS_KEY", "/etc/tls/tls.key"),
    ] {
        let out = run(service_command()
            .env("DATA_DIR", dir.path())
            .env(set, path)
            .arg("check-config"));
        assert_eq!(out.status.code(), Some(2), "{set}: {out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.lines().any(|l| l.contains("server.tls_key")
                && l.contains("SERVER_TLS_CERT and SERVER_TLS_KEY")),
            "{set}: {stderr}"
        );
    }
}

/// A key that is not one, or not the certificate's: the start fails
/// naming `server.tls_key`, and quotes nothing of the file.
#[actix_web::test]
async fn a_key_that_is_not_the_certificates_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let files = make_certificate(dir.path());
    for key in [&files.cert, &files.other_key] {
        let mut config = common::test_config(&dir.path().join("data"));
        config.server.tls_cert = Some(files.cert.clone());
        config.server.tls_key = Some(key.clone());
        let err = match Application::build(config).await {
            Ok(_) => panic!("the service started with {}", key.display()),
            Err(err) => err.to_string(),
        };
        assert!(err.contains("server.tls_key"), "{err}");
        for line in std::fs::read_to_string(key).unwrap().lines().skip(1) {
            assert!(line.starts_with("-----") || !err.contains(line), "{err}");
        }
    }
}
