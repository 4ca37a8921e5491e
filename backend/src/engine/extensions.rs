//! The loadable extensions the lake needs, found on local disk only.
//!
//! DuckDB looks for `<dir>/v1.5.5/<platform>/<name>.duckdb_extension`. The
//! service never installs anything: `scripts/fetch-extensions.sh` (or
//! `./build.sh extensions`) provisions the directory from the pinned wheels,
//! and a missing file stops start-up with a message naming it.

use std::path::{Path, PathBuf};

/// The DuckDB release the bundled library is; extension files must match it.
pub const DUCKDB_RELEASE: &str = "v1.5.5";

/// The release of the DuckDB library this binary links, as the library
/// itself reports it (`v1.5.5`).
pub fn linked_release() -> String {
    // SAFETY: duckdb_library_version takes nothing and returns a pointer to
    // a NUL-terminated string with static lifetime inside the library.
    let version = unsafe { std::ffi::CStr::from_ptr(duckdb::ffi::duckdb_library_version()) };
    version.to_string_lossy().into_owned()
}

/// The command that provisions the extension directory.
pub const FETCH_COMMAND: &str = "./build.sh extensions";

#[derive(Debug, thiserror::Error)]
#[error(
    "DuckDB extension `{name}` is missing: {path} does not exist. \
     Run `{command}` (or scripts/fetch-extensions.sh {dir}) to fetch the pinned extensions, \
     or point DUCKDB_EXTENSION_DIRECTORY at a directory that has them."
)]
pub struct MissingExtension {
    pub name: String,
    pub path: String,
    pub dir: String,
    pub command: &'static str,
}

#[derive(Debug)]
pub struct ExtensionSet {
    directory: PathBuf,
    names: Vec<&'static str>,
}

impl ExtensionSet {
    /// Checks that every extension in `names` is on disk under `directory`
    /// (default `~/.duckdb/extensions`).
    pub fn locate(
        directory: Option<PathBuf>,
        names: Vec<&'static str>,
    ) -> Result<Self, MissingExtension> {
        let directory = directory.unwrap_or_else(default_directory);
        for name in &names {
            let path = extension_path(&directory, name);
            if !path.is_file() {
                return Err(MissingExtension {
                    name: name.to_string(),
                    path: path.display().to_string(),
                    dir: directory.display().to_string(),
                    command: FETCH_COMMAND,
                });
            }
        }
        Ok(Self { directory, names })
    }

    pub fn directory(&self) -> &Path {
        &self.directory
    }

    pub fn names(&self) -> &[&'static str] {
        &self.names
    }
}

/// DuckDB's own default: `~/.duckdb/extensions`.
pub fn default_directory() -> PathBuf {
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/"));
    home.join(".duckdb").join("extensions")
}

pub fn extension_path(directory: &Path, name: &str) -> PathBuf {
    directory
        .join(DUCKDB_RELEASE)
        .join(platform())
        .join(format!("{name}.duckdb_extension"))
}

/// DuckDB's platform string for this build.
pub fn platform() -> &'static str {
    match (std::env::consts::OS, std::env::consts::ARCH) {
        ("linux", "aarch64") => "linux_arm64",
        ("macos", "aarch64") => "osx_arm64",
        ("macos", _) => "osx_amd64",
        _ => "linux_amd64",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_linked_library_is_the_release_extensions_are_fetched_for() {
        assert_eq!(linked_release(), DUCKDB_RELEASE);
    }

    #[test]
    fn missing_file_is_named_with_the_fetch_command() {
        let dir = tempfile::tempdir().unwrap();
        let err =
            ExtensionSet::locate(Some(dir.path().to_path_buf()), vec!["ducklake"]).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("v1.5.5/linux_amd64/ducklake.duckdb_extension"),
            "{text}"
        );
        assert!(text.contains("./build.sh extensions"), "{text}");
    }
}
