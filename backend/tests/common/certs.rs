//! TLS certificates for tests: a CA of the test's own (openssl) and a
//! certificate it signed, for the names a test asks for.

use std::path::{Path, PathBuf};

/// PEM files in the directory they were made in.
pub struct Certificate {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

/// A CA and a certificate for `CN=localhost` with the subject alternative
/// names `alt_names` (as openssl writes them: `DNS:localhost,IP:127.0.0.1`),
/// EC P-256, valid a day, made in `dir`.
pub fn certificate(dir: &Path, alt_names: &str) -> Certificate {
    let made = std::process::Command::new("sh")
        .current_dir(dir)
        .arg("-ec")
        .arg(
            "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
               -days 1 -subj /CN=test-ca -keyout ca.key -out ca.pem 2>/dev/null
             openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
               -subj /CN=localhost -keyout key.pem -out leaf.csr 2>/dev/null
             printf 'subjectAltName=%s\\nbasicConstraints=CA:FALSE\\n' \"$1\" > leaf.ext
             openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
               -days 1 -extfile leaf.ext -out cert.pem 2>/dev/null",
        )
        .arg("certificate")
        .arg(alt_names)
        .output()
        .expect("openssl runs (./build.sh setup installs it)");
    assert!(made.status.success(), "{made:?}");
    Certificate {
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
        ca: dir.join("ca.pem"),
    }
}
