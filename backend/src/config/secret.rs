//! [`Secret`], a configuration value that never prints (`***` in `Debug`,
//! `Display` and `Serialize`), its lenient deserialisation, and [`exposed`]
//! for reading an optional one.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::lenient;

/// A configuration value that must never be printed: `Debug`, `Display` and
/// `Serialize` all show `***`. Read it with [`Secret::expose`].
#[derive(Clone)]
pub struct Secret(SecretString);

/// An optional secret's value, or empty when it is unset.
pub fn exposed(secret: &Option<Secret>) -> &str {
    secret.as_ref().map(Secret::expose).unwrap_or_default()
}

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(SecretString::from(value.into()))
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("***")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        lenient::string(d).map(Secret::new)
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{load::env, Config};

    #[test]
    fn secrets_never_print() {
        let loaded =
            Config::load_from(None, &env(&[("DB_POSTGRES_PASSWORD", "hunter2-secret")])).unwrap();
        let c = loaded.config;
        assert!(!format!("{c:?}").contains("hunter2"));
        assert!(!c.redacted().to_string().contains("hunter2"));
        assert_eq!(c.redacted()["postgres"]["password"], "***");
    }
}
