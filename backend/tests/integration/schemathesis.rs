//! Schemathesis (PyPI) generates requests from `/openapi.json` — valid,
//! invalid and odd ones — against a running service with authentication on:
//! not one may answer with a server error. The short form runs in CI;
//! `SCHEMATHESIS_EXAMPLES=500 cargo test --test integration schemathesis` is the long one.

use crate::common;

use common::{spawn_with, test_config};
use ducklake_backend::config::Secret;

const KEY: &str = "schemathesis-admin-key-0123456789abcdef";

#[actix_web::test]
async fn generated_requests_never_get_a_server_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.auth.enabled = true;
    config.auth.bootstrap_key = Some(Secret::new(KEY));
    let app = spawn_with(config, None).await;
    app.client
        .post(app.url("/api/v1/query"))
        .bearer_auth(KEY)
        .json(&serde_json::json!({"sql": "CREATE TABLE t AS SELECT range AS a FROM range(10)"}))
        .send()
        .await
        .unwrap();
    let examples = std::env::var("SCHEMATHESIS_EXAMPLES").unwrap_or_else(|_| "25".into());
    let schema = app.url("/openapi.json");
    let workdir = dir.path().join("schemathesis");
    std::fs::create_dir_all(&workdir).unwrap();
    let output = actix_web::rt::task::spawn_blocking(move || {
        std::process::Command::new("schemathesis")
            .current_dir(workdir)
            .args(["run", &schema, "--checks", "not_a_server_error"])
            .args(["--max-examples", &examples, "--request-timeout", "30"])
            .args(["--header", &format!("Authorization: Bearer {KEY}")])
            .args(["--generation-deterministic", "--no-color"])
            .output()
    })
    .await
    .unwrap()
    .expect("schemathesis runs (scripts/install-test-deps.sh installs it)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "schemathesis found server errors:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("passed"), "{stdout}");
    if let Some(line) = stdout.lines().find(|l| l.contains("generated")) {
        println!("schemathesis: {}", line.trim());
    }
    let (status, _) = app.get_json("/ready").await;
    assert_eq!(status, 200, "still healthy afterwards");
    app.stop().await;
}
