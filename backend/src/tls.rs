//! TLS of our listeners: the process's one rustls crypto provider (ring,
//! for the HTTP listener and Flight SQL alike) and the rustls server
//! configuration of the HTTP listener, read from `server.tls_cert` and
//! `server.tls_key` at start-up. A file that cannot be read or holds no
//! certificate or key stops the start with an error naming the setting; the
//! service never falls back to plain HTTP, and no error quotes the key file.

use std::path::Path;

use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};

use crate::config::ServerConfig;

/// Installs ring as the process's rustls crypto provider: rustls asks for
/// one when several are built in (object_store brings aws-lc-rs). One
/// installed earlier (by a library) is fine too.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The rustls configuration of the HTTP listener when `server.tls_cert` and
/// `server.tls_key` are set (config validation has checked they come
/// together), None when neither is.
pub fn http_server_config(config: &ServerConfig) -> Result<Option<rustls::ServerConfig>, String> {
    let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) else {
        return Ok(None);
    };
    let chain = certificate_chain("server.tls_cert", cert)?;
    let private = private_key("server.tls_key", key)?;
    install_crypto_provider();
    let server = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, private)
        // rustls's error says what is wrong (a key of another certificate,
        // an algorithm it does not know), never the key's bytes.
        .map_err(|e| {
            format!(
                "server.tls_key {}: not a usable key for the certificate of server.tls_cert: {e}",
                key.display()
            )
        })?;
    Ok(Some(server))
}

/// The certificates of the PEM file `path` (the setting `setting`), leaf
/// first.
fn certificate_chain(setting: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = read(setting, path)?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            format!(
                "{setting} {}: not a PEM certificate chain: {e}",
                path.display()
            )
        })?;
    if chain.is_empty() {
        return Err(format!(
            "{setting} {}: holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            path.display()
        ));
    }
    Ok(chain)
}

/// The private key of the PEM file `path` (the setting `setting`): PKCS#8,
/// PKCS#1 (RSA) or SEC1 (EC). The parser's own error is not shown: it can
/// quote the file's lines.
fn private_key(setting: &str, path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let pem = read(setting, path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => format!(
            "{setting} {}: holds no PEM private key (-----BEGIN PRIVATE KEY-----)",
            path.display()
        ),
        _ => format!(
            "{setting} {}: not a readable PEM private key",
            path.display()
        ),
    })
}

fn read(setting: &str, path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{setting} {}: cannot read: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MARKER: &str = "c2VjcmV0LWtleS1tYXRlcmlhbA";

    fn config_with(dir: &Path, cert: &str, key: &str) -> ServerConfig {
        let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert_path, cert).unwrap();
        std::fs::write(&key_path, key).unwrap();
        ServerConfig {
            tls_cert: Some(cert_path),
            tls_key: Some(key_path),
            ..ServerConfig::default()
        }
    }

    fn error_of(config: &ServerConfig) -> String {
        match http_server_config(config) {
            Ok(_) => panic!("the files are not a certificate and key"),
            Err(err) => err,
        }
    }

    #[test]
    fn unset_serves_plain() {
        assert!(http_server_config(&ServerConfig::default())
            .unwrap()
            .is_none());
    }

    #[test]
    fn a_missing_file_names_its_setting() {
        let dir = tempfile::tempdir().unwrap();
        let config = ServerConfig {
            tls_cert: Some(dir.path().join("absent.pem")),
            tls_key: Some(dir.path().join("key.pem")),
            ..ServerConfig::default()
        };
        let err = error_of(&config);
        assert!(err.starts_with("server.tls_cert "), "{err}");
        assert!(err.contains("absent.pem: cannot read"), "{err}");
    }

    #[test]
    fn a_file_without_a_certificate_names_server_tls_cert() {
        let dir = tempfile::tempdir().unwrap();
        let err = error_of(&config_with(dir.path(), "not a certificate\n", ""));
        assert!(err.starts_with("server.tls_cert "), "{err}");
        assert!(err.contains("holds no PEM certificate"), "{err}");
    }

    #[test]
    fn a_broken_key_is_named_but_never_quoted() {
        // Checked before the key: a certificate of the right shape (its
        // bytes are not looked into until the key is read).
        let cert = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let dir = tempfile::tempdir().unwrap();
        for key in [
            format!("-----BEGIN PRIVATE KEY-----\n{MARKER}\n"),
            format!("-----BEGIN PRIVATE KEY-----\n{MARKER}!!\n-----END PRIVATE KEY-----\n"),
            format!("{MARKER}\n"),
        ] {
            let err = error_of(&config_with(dir.path(), cert, &key));
            assert!(err.starts_with("server.tls_key "), "{err}");
            assert!(!err.contains(MARKER), "{err}");
        }
    }

    #[test]
    fn a_key_rustls_cannot_use_is_refused_unquoted() {
        let cert = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let key = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        let dir = tempfile::tempdir().unwrap();
        let err = error_of(&config_with(dir.path(), cert, key));
        assert!(err.starts_with("server.tls_key "), "{err}");
        assert!(!err.contains("AAAA"), "{err}");
    }
}
