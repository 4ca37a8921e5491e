//! What loading reports when the configuration is wrong: one
//! [`ConfigProblem`] per line, all of them at once in a [`ConfigError`]. A leaf.

use std::fmt;

/// One thing wrong with the configuration, printed as one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    pub key: String,
    pub value: String,
    pub expected: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid configuration: {} = {}: expected {}",
            self.key, self.value, self.expected
        )
    }
}

/// Every problem found, so the operator fixes them in one round.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError(pub Vec<ConfigProblem>);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&lines.join("\n"))
    }
}
