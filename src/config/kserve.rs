//! `model.yaml`'s `backend` and `kserve` sections: whether a version's model runs in this
//! process (ONNX Runtime, the default) or on a pool of KServe v2 / Triton inference servers
//! (the open inference protocol over HTTP/JSON). The tokenizer, the batcher, the deadline
//! and the fallback stay here either way; only a padded batch crosses the network.

use std::time::Duration;

use serde::Deserialize;

use super::ConfigError;
use super::source::Source;

/// Where a version's model runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    #[default]
    Onnx,
    Kserve,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKserve {
    endpoints: Vec<String>,
    #[serde(default = "default_model_name")]
    model_name: String,
    #[serde(default = "default_timeout", with = "humantime_serde")]
    timeout: Duration,
    #[serde(default = "default_health_interval", with = "humantime_serde")]
    health_interval: Duration,
    #[serde(default)]
    binary_tensors: bool,
}

fn default_model_name() -> String {
    "kefu-intent-{version}".into()
}

fn default_timeout() -> Duration {
    Duration::from_millis(150)
}

fn default_health_interval() -> Duration {
    Duration::from_secs(1)
}

/// A pool of inference servers that serve the model stage's versions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KserveConfig {
    /// Base URLs, `http://host:port`, without a trailing slash.
    pub endpoints: Vec<String>,
    /// The model's name on the servers; `{version}` stands for the version's manifest
    /// version, so a server holding another version is never asked.
    pub model_name: String,
    /// One infer request, connect included. A request that fails or runs out of time is
    /// tried once more on the next ready server.
    pub timeout: Duration,
    /// How often every server's readiness and model metadata are checked.
    pub health_interval: Duration,
    /// Tensors in the binary data extension (Triton, KServe) rather than as JSON lists (the
    /// default: every v2 server reads those).
    pub binary_tensors: bool,
}

impl KserveConfig {
    /// The model's name on the servers for `version`.
    pub fn model_for(&self, version: &str) -> String {
        self.model_name.replace("{version}", version)
    }
}

/// The model's backend as validated.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ModelBackend {
    #[default]
    Onnx,
    Kserve(KserveConfig),
}

/// `host:port` or `http://host:port`, as a base URL. HTTPS is refused: the client is built
/// without TLS (an inference pool sits on the shop's private network).
fn endpoint(s: &str) -> Result<String, String> {
    let rest = match s.split_once("://") {
        Some(("http", rest)) => rest,
        Some((scheme, _)) => return Err(format!("`{s}`: scheme {scheme} (only http)")),
        None => s,
    };
    let rest = rest.trim_end_matches('/');
    let Some((host, port)) = rest.rsplit_once(':') else {
        return Err(format!("`{s}`: expected host:port"));
    };
    if host.is_empty() || host.contains('/') || !port.parse::<u16>().is_ok_and(|p| p != 0) {
        return Err(format!("`{s}`: expected host:port"));
    }
    Ok(format!("http://{rest}"))
}

pub fn validate(
    kind: BackendKind,
    raw: Option<RawKserve>,
    src: &Source,
    errors: &mut Vec<ConfigError>,
) -> ModelBackend {
    let raw = match (kind, raw) {
        (BackendKind::Onnx, None) => return ModelBackend::Onnx,
        (BackendKind::Onnx, Some(_)) => {
            errors.push(src.error_at("kserve", "a kserve section needs backend: kserve"));
            return ModelBackend::Onnx;
        }
        (BackendKind::Kserve, None) => {
            errors.push(src.error_at("backend", "backend: kserve needs a kserve section"));
            return ModelBackend::Onnx;
        }
        (BackendKind::Kserve, Some(raw)) => raw,
    };
    let mut endpoints = Vec::new();
    for e in &raw.endpoints {
        match endpoint(e) {
            Ok(url) if endpoints.contains(&url) => {
                errors.push(src.error_at("endpoints", format!("kserve.endpoints: {url} twice")))
            }
            Ok(url) => endpoints.push(url),
            Err(m) => errors.push(src.error_at("endpoints", format!("kserve.endpoints: {m}"))),
        }
    }
    if raw.endpoints.is_empty() {
        errors.push(src.error_at("endpoints", "kserve.endpoints: at least one server"));
    }
    let name_ok = |n: &str| {
        !n.is_empty()
            && n.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    };
    if !name_ok(&raw.model_name.replace("{version}", "v")) {
        errors.push(src.error_at(
            "model_name",
            "kserve.model_name: letters, digits, . _ - and {version}",
        ));
    }
    if raw.timeout.is_zero() || raw.health_interval < Duration::from_millis(100) {
        errors.push(src.error_at(
            "kserve",
            "kserve: timeout must be more than 0 and health_interval at least 100ms",
        ));
    }
    ModelBackend::Kserve(KserveConfig {
        endpoints,
        model_name: raw.model_name,
        timeout: raw.timeout,
        health_interval: raw.health_interval,
        binary_tensors: raw.binary_tensors,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_become_base_urls() {
        assert_eq!(endpoint("127.0.0.1:8500").unwrap(), "http://127.0.0.1:8500");
        assert_eq!(endpoint("http://infer-1:80/").unwrap(), "http://infer-1:80");
        assert_eq!(endpoint("http://[::1]:80").unwrap(), "http://[::1]:80");
        for bad in ["https://a:1", "a", "a:0", ":80", "a:b", "http://a:1/v2"] {
            assert!(endpoint(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_version_goes_into_the_model_name() {
        let c = KserveConfig {
            endpoints: vec![],
            model_name: default_model_name(),
            timeout: default_timeout(),
            health_interval: default_health_interval(),
            binary_tensors: false,
        };
        assert_eq!(c.model_for("v2"), "kefu-intent-v2");
    }
}
