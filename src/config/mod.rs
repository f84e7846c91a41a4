//! Configuration: a directory of split YAML files, parsed once into one validated [`Config`].
//!
//! What the operator writes (`raw` serde structs, `deny_unknown_fields`, human units) is not
//! what the stages use: every file is converted once, with validation, into plain internal
//! types. Field-level problems (bad CIDR, bad regex, unknown intent id, unknown key) are
//! raised while deserialising, so the YAML parser reports their line; cross-field problems
//! are reported against the line of the key they concern. All errors of all files are
//! collected, so `kefu-edge -t` shows everything wrong at once, like `nginx -t`.

mod access_log;
mod dialog;
mod edge;
mod intents;
mod kserve;
mod limits;
mod model;
mod post;
mod router;
mod server;
mod source;
mod tls;
pub mod types;
mod upstreams;

use sha2::{Digest, Sha256};
use std::fmt;
use std::path::{Path, PathBuf};

pub use access_log::{AccessLogConfig, LogTarget, LogText, UserKey};
pub use dialog::{
    After, ClusterConfig, ContextConfig, DialogConfig, FollowUpIntent, FollowUpRule,
    MemoryStoreConfig, RedisConfig, RedisOptions, StoreConfig, StoreKind,
};
pub use edge::{EdgeConfig, IpDefault, RealIpConfig, RealIpHeader, UserAgentConfig};
pub use intents::{AnswerPolicy, ConversationConfig, IntentRules, IntentsConfig};
pub use kserve::{KserveConfig, ModelBackend};
pub use limits::{BreakerConfig, BucketConfig, LimitsConfig, SharedLimitsConfig};
pub use model::{
    AnswerUpstream, BatchConfig, ModelConfig, ModelGate, ORT_DYLIB_ENV, Provider, RuntimeConfig,
    ShadowConfig,
};
pub use post::{CampaignConfig, JudgeConfig, PostConfig};
pub use router::{ModelFiles, QualityGate, RouterConfig};
pub use server::{ChatApiConfig, ClientCaps, ServerConfig};
pub use tls::{ServerCertificate, TlsConfig};
pub use upstreams::{
    BackendConfig, HealthCheckConfig, HealthCheckKind, PoolConfig, RouteConfig, UpstreamsConfig,
};

use source::Source;

/// The whole validated configuration of one directory.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The directory it was read from; relative file references resolve against it.
    pub dir: PathBuf,
    /// sha256 of its nine files (name, length and text, in load order): which configuration
    /// a node runs, comparable across nodes (`GET /admin/config`).
    pub sha256: String,
    pub server: ServerConfig,
    pub edge: EdgeConfig,
    pub limits: LimitsConfig,
    pub intents: IntentsConfig,
    pub post: PostConfig,
    pub upstreams: UpstreamsConfig,
    pub router: RouterConfig,
    pub model: ModelConfig,
    pub dialog: DialogConfig,
}

/// One problem in one file, with the line where the parser or the key lookup found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: {}", self.file.display(), line, self.reason),
            None => write!(f, "{}: {}", self.file.display(), self.reason),
        }
    }
}

/// Every problem found in a configuration directory.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl Config {
    /// Read, parse and validate every file of `dir`. Either the whole configuration is
    /// valid, or every error found is returned.
    pub fn load(dir: &Path) -> Result<Config, ConfigErrors> {
        Self::load_checking(dir, true)
    }

    /// Load a directory whose router model may not exist yet (to train it); the router is
    /// disabled in the result.
    pub fn load_for_training(dir: &Path) -> Result<Config, ConfigErrors> {
        let mut config = Self::load_checking(dir, false)?;
        config.router.enabled = false;
        config.model.enabled = false;
        Ok(config)
    }

    /// Load a directory whose model stage may not exist yet (to train it: the router must,
    /// its decisions are part of the training data); the model stage is disabled.
    pub fn load_for_model_training(dir: &Path) -> Result<Config, ConfigErrors> {
        let mut config = Self::load_with(dir, true, false)?;
        config.model.enabled = false;
        Ok(config)
    }

    fn load_checking(dir: &Path, check_models: bool) -> Result<Config, ConfigErrors> {
        Self::load_with(dir, check_models, check_models)
    }

    fn load_with(
        dir: &Path,
        check_router: bool,
        check_model: bool,
    ) -> Result<Config, ConfigErrors> {
        let mut errors = Vec::new();
        // Over the texts as parsed, in this fixed order (see `Config::sha256`).
        let mut hash = Sha256::new();
        let server = load_file(
            dir,
            "server.yaml",
            &mut errors,
            &mut hash,
            server::validate,
            true,
        );
        let edge = load_file(
            dir,
            "edge.yaml",
            &mut errors,
            &mut hash,
            edge::validate,
            true,
        );
        let limits = load_file(
            dir,
            "limits.yaml",
            &mut errors,
            &mut hash,
            limits::validate,
            true,
        );
        let intents = load_file(
            dir,
            "intents.yaml",
            &mut errors,
            &mut hash,
            intents::validate,
            true,
        );
        let post = load_file(
            dir,
            "post.yaml",
            &mut errors,
            &mut hash,
            post::validate,
            true,
        );
        let upstreams = load_file(
            dir,
            "upstreams.yaml",
            &mut errors,
            &mut hash,
            upstreams::validate,
            true,
        );
        let router = load_file(
            dir,
            "router.yaml",
            &mut errors,
            &mut hash,
            router::validate,
            check_router,
        );
        let model = load_file(
            dir,
            "model.yaml",
            &mut errors,
            &mut hash,
            model::validate,
            check_model,
        );
        let dialog = load_file(
            dir,
            "dialog.yaml",
            &mut errors,
            &mut hash,
            dialog::validate,
            true,
        );
        // Across files: the answer upstream names a pool of upstreams.yaml.
        if let (Some(m), Some(u)) = (&model, &upstreams)
            && let Some(up) = &m.answer_upstream
            && !u.pools.contains_key(&up.pool)
        {
            errors.push(ConfigError {
                file: dir.join("model.yaml"),
                line: None,
                reason: format!(
                    "answer_upstream.pool: `{}` is not a pool of upstreams.yaml",
                    up.pool
                ),
            });
        }
        // Across files: follow-ups decided by the model need the model stage, or every
        // message after the first would be handed to a person.
        if let (Some(m), Some(d)) = (&model, &dialog)
            && d.enabled
            && d.context.model_decides_follow_ups
            && !m.enabled
        {
            errors.push(ConfigError {
                file: dir.join("dialog.yaml"),
                line: None,
                reason: "context.model_decides_follow_ups needs the model stage (model.yaml enabled: true); set it to false without one".into(),
            });
        }
        match (
            server, edge, limits, intents, post, upstreams, router, model, dialog,
        ) {
            (
                Some(server),
                Some(edge),
                Some(limits),
                Some(intents),
                Some(post),
                Some(upstreams),
                Some(router),
                Some(model),
                Some(dialog),
            ) if errors.is_empty() => Ok(Config {
                dir: dir.to_path_buf(),
                sha256: hash.finalize().iter().map(|b| format!("{b:02x}")).collect(),
                server,
                edge,
                limits,
                intents,
                post,
                upstreams,
                router,
                model,
                dialog,
            }),
            _ => Err(ConfigErrors(errors)),
        }
    }
}

/// Parse one file into its raw type and validate it, pushing every error into `errors`.
fn load_file<R, T>(
    dir: &Path,
    name: &str,
    errors: &mut Vec<ConfigError>,
    hash: &mut Sha256,
    validate: fn(R, &Source) -> Result<T, Vec<ConfigError>>,
    check_models: bool,
) -> Option<T>
where
    R: serde::de::DeserializeOwned,
{
    let source = match Source::read(dir, name) {
        Ok(mut source) => {
            source.check_models = check_models;
            source.hash_into(hash);
            source
        }
        Err(e) => {
            errors.push(e);
            return None;
        }
    };
    let raw: R = match source.parse() {
        Ok(raw) => raw,
        Err(e) => {
            errors.push(e);
            return None;
        }
    };
    match validate(raw, &source) {
        Ok(valid) => Some(valid),
        Err(mut es) => {
            errors.append(&mut es);
            None
        }
    }
}

/// Parse an `upstreams.yaml` text on its own (tests of the proxy stage).
#[cfg(test)]
pub fn upstreams_from_str(text: &str) -> Result<UpstreamsConfig, Vec<ConfigError>> {
    Source::check_text(
        Path::new("conf"),
        "upstreams.yaml",
        text,
        upstreams::validate,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("conf")
    }

    #[test]
    fn shipped_configuration_is_valid() {
        let config = Config::load(&shipped()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.server.chat_listen, vec!["0.0.0.0:8080".to_string()]);
        assert_eq!(
            config.server.admin_listen,
            vec!["127.0.0.1:9901".to_string()]
        );
        assert_eq!(config.intents.fallback_reply, "亲,转人工客服哦~");
    }

    /// The shipped configuration's files in a directory a test may change.
    fn shipped_copy() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for entry in std::fs::read_dir(shipped()).unwrap() {
            let entry = entry.unwrap();
            if entry.path().is_file() {
                std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
            }
        }
        dir
    }

    #[test]
    fn the_answer_upstream_must_name_a_pool() {
        let dir = shipped_copy();
        let model = dir.path().join("model.yaml");
        let text = std::fs::read_to_string(&model).unwrap();
        let text = text.replace(
            "answer_upstream: null",
            "answer_upstream: {pool: nobody, path: /v1/answer}",
        );
        std::fs::write(&model, text).unwrap();
        let errors = Config::load_for_training(dir.path())
            .unwrap_err()
            .to_string();
        assert!(
            errors.contains("answer_upstream.pool: `nobody` is not a pool of upstreams.yaml"),
            "{errors}"
        );
    }

    #[test]
    fn follow_ups_decided_by_the_model_need_the_model_stage() {
        let dir = shipped_copy();
        let model = dir.path().join("model.yaml");
        let text = std::fs::read_to_string(&model).unwrap();
        assert!(text.starts_with("enabled: true") || text.contains("\nenabled: true"));
        std::fs::write(&model, text.replacen("enabled: true", "enabled: false", 1)).unwrap();
        let errors = Config::load_for_training(dir.path())
            .unwrap_err()
            .to_string();
        assert!(
            errors.contains("context.model_decides_follow_ups needs the model stage"),
            "{errors}"
        );
    }

    #[test]
    fn a_missing_directory_names_every_file() {
        let errors = Config::load(Path::new("/nonexistent/kefu")).unwrap_err();
        assert_eq!(errors.0.len(), 9);
        assert!(errors.0[0].to_string().contains("server.yaml"));
    }
}
