//! Where the service is and how to talk to it: the URL and key from flags,
//! environment or the client's config file, and one HTTP client that turns
//! every failure into a [`Failure`] with the API's own code and message.
//! The key is only ever sent, never printed.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use figment::{
    providers::{Format, Toml},
    Figment,
};
use reqwest::{
    blocking::{Client, RequestBuilder, Response},
    Method, Url,
};
use secrecy::{ExposeSecret, SecretString};
use serde::{de::DeserializeOwned, Deserialize};

use super::failure::Failure;

pub const DEFAULT_URL: &str = "http://127.0.0.1:8000";

/// The client's config file: `--config`, else `DUCKLAKE_CLIENT_CONFIG`, else
/// `$XDG_CONFIG_HOME/ducklake/client.toml` (`~/.config/...`) when it exists.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    url: Option<String>,
    key: Option<SecretString>,
}

/// A service to talk to.
pub struct Api {
    base: Url,
    key: Option<SecretString>,
    http: Client,
}

fn default_config_path() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("DUCKLAKE_CLIENT_CONFIG") {
        return Some(PathBuf::from(path));
    }
    let dir = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|dir| dir.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".config")))?;
    let path = dir.join("ducklake").join("client.toml");
    path.is_file().then_some(path)
}

fn read_config_file(explicit: Option<&Path>) -> Result<ConfigFile, Failure> {
    let Some(path) = explicit.map(Path::to_path_buf).or_else(default_config_path) else {
        return Ok(ConfigFile::default());
    };
    if !path.is_file() {
        return Err(Failure::usage(format!(
            "config file {} does not exist",
            path.display()
        )));
    }
    Figment::from(Toml::file_exact(&path))
        .extract()
        .map_err(|err| Failure::usage(format!("config file {}: {err}", path.display())))
}

/// Every source of an error, joined: reqwest's own message names only the
/// outer layer ("error sending request"), the cause is further down.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let message = cause.to_string();
        if !text.contains(&message) {
            text.push_str(": ");
            text.push_str(&message);
        }
        source = cause.source();
    }
    text
}

impl Api {
    /// Flags (and their environment variables) win over the config file.
    pub fn connect(
        url: Option<String>,
        key: Option<String>,
        config: Option<&Path>,
    ) -> Result<Self, Failure> {
        let file = read_config_file(config)?;
        let url = url.or(file.url).unwrap_or_else(|| DEFAULT_URL.to_string());
        let base = Url::parse(&url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && !u.cannot_be_a_base())
            .ok_or_else(|| Failure::usage(format!("invalid service URL {url:?}")))?;
        let key = key
            .filter(|k| !k.is_empty())
            .map(SecretString::from)
            .or(file.key);
        // No overall timeout: queries, uploads and results take what they take.
        let http = Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(None)
            .user_agent(concat!(
                "ducklake-backend-client/",
                env!("CARGO_PKG_VERSION")
            ))
            .build()
            .map_err(|err| Failure::Service(format!("cannot build the HTTP client: {err}")))?;
        Ok(Self { base, key, http })
    }

    /// The URL of `segments` under the base URL, each percent-encoded (schema
    /// and table names are any text).
    pub fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    pub fn request(&self, method: Method, segments: &[&str]) -> RequestBuilder {
        let request = self.http.request(method, self.url(segments));
        match &self.key {
            Some(key) => request.bearer_auth(key.expose_secret()),
            None => request,
        }
    }

    /// Sends a request; any answer but 2xx (and 3xx) becomes the API's error.
    pub fn send(&self, request: RequestBuilder) -> Result<Response, Failure> {
        let response = request.send().map_err(|err| self.transport_failure(&err))?;
        check(response)
    }

    pub fn get_json<T: DeserializeOwned>(
        &self,
        segments: &[&str],
        query: &[(&str, String)],
    ) -> Result<T, Failure> {
        let response = self.send(self.request(Method::GET, segments).query(query))?;
        read_json(response)
    }

    pub fn transport_failure(&self, err: &reqwest::Error) -> Failure {
        let origin = self.base.as_str().trim_end_matches('/');
        if err.is_connect() {
            let mut cause: &dyn std::error::Error = err;
            while let Some(source) = cause.source() {
                cause = source;
            }
            Failure::Service(format!("cannot connect to {origin}: {cause}"))
        } else if err.is_timeout() {
            Failure::Service(format!("{origin} did not answer in time"))
        } else {
            Failure::Service(format!("request to {origin} failed: {}", error_chain(err)))
        }
    }
}

/// A response body as JSON; a body that breaks off is a service failure.
pub fn read_json<T: DeserializeOwned>(response: Response) -> Result<T, Failure> {
    let bytes = response.bytes().map_err(|err| {
        Failure::Service(format!("the response broke off: {}", error_chain(&err)))
    })?;
    serde_json::from_slice(&bytes)
        .map_err(|err| Failure::Service(format!("the service answered unexpected JSON: {err}")))
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    code: String,
    message: String,
}

/// A response, or its error as the API worded it when it is not 2xx/3xx.
pub fn check(response: Response) -> Result<Response, Failure> {
    if response.status().is_client_error() || response.status().is_server_error() {
        return Err(api_failure(response));
    }
    Ok(response)
}

/// An error response as the API worded it: 4xx exit 1, 5xx exit 3.
fn api_failure(response: Response) -> Failure {
    let status = response.status();
    let text = response.text().unwrap_or_default();
    let (code, message) = match serde_json::from_str::<ErrorBody>(&text) {
        Ok(body) => (body.error.code, body.error.message),
        // Not the service's own error (a proxy in between, say).
        Err(_) => {
            let snippet: String = text.trim().chars().take(300).collect();
            let reason = status.canonical_reason().unwrap_or("error");
            let message = if snippet.is_empty() {
                reason.to_string()
            } else {
                format!("{reason}: {snippet}")
            };
            (format!("http_{}", status.as_u16()), message)
        }
    };
    if status.is_server_error() {
        Failure::ServiceError { code, message }
    } else {
        Failure::Api { code, message }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_in_paths_are_percent_encoded_under_the_base_path() {
        let api = Api::connect(Some("http://h:1/lake/".into()), None, None).unwrap();
        let url = api.url(&["api", "v1", "tables", "my schema", "a/b?"]);
        assert_eq!(
            url.as_str(),
            "http://h:1/lake/api/v1/tables/my%20schema/a%2Fb%3F"
        );
    }

    #[test]
    fn a_url_that_is_not_http_is_a_usage_error() {
        let err = Api::connect(Some("ftp://x".into()), None, None)
            .err()
            .unwrap();
        assert_eq!(err.exit_code(), 2);
    }
}
