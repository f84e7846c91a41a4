//! `server.yaml`'s `access_log`: one JSON line per request, without personal data in clear.

use std::path::PathBuf;

use serde::Deserialize;

use super::ConfigError;
use super::source::Source;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAccessLog {
    /// A file (relative to the configuration directory) or `stdout` (for journald).
    path: String,
    #[serde(default = "default_buffer")]
    buffer_bytes: usize,
    #[serde(default = "default_v4")]
    client_prefix_v4: u8,
    #[serde(default = "default_v6")]
    client_prefix_v6: u8,
    user_key_file: Option<PathBuf>,
    #[serde(default)]
    log_text: LogText,
}

fn default_buffer() -> usize {
    4 << 20
}

fn default_v4() -> u8 {
    24
}

fn default_v6() -> u8 {
    48
}

/// Where the lines go.
#[derive(Debug, Clone, PartialEq)]
pub enum LogTarget {
    File(PathBuf),
    Stdout,
}

impl std::fmt::Display for LogTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LogTarget::File(p) => write!(f, "{}", p.display()),
            LogTarget::Stdout => f.write_str("stdout"),
        }
    }
}

/// Whether the shopper's text is written: never (the default), or with phone numbers, order
/// numbers, ID numbers and addresses masked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogText {
    #[default]
    Off,
    Masked,
}

/// The key user ids are hashed with. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct UserKey(pub Vec<u8>);

impl std::fmt::Debug for UserKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "UserKey({} bytes)", self.0.len())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct AccessLogConfig {
    pub target: LogTarget,
    /// Bytes of lines waiting for the writer (written out every 50 ms); a line beyond this
    /// is dropped and counted, never waited for.
    pub buffer_bytes: usize,
    /// Client addresses are written truncated to these prefixes (32 / 128: whole).
    pub client_prefix_v4: u8,
    pub client_prefix_v6: u8,
    /// With no key file, a random key per process: user hashes join within a run only.
    pub user_key: Option<UserKey>,
    pub log_text: LogText,
}

impl AccessLogConfig {
    /// Whether `other` differs in what the writer is started with (read at start-up).
    pub fn needs_restart(a: Option<&Self>, b: Option<&Self>) -> bool {
        let start = |c: Option<&Self>| c.map(|c| (c.target.clone(), c.buffer_bytes));
        start(a) != start(b)
    }
}

/// The shortest user key accepted.
const MIN_KEY_BYTES: usize = 16;

pub fn validate(raw: RawAccessLog, src: &Source, errors: &mut Vec<ConfigError>) -> AccessLogConfig {
    let target = match raw.path.as_str() {
        "stdout" | "-" => LogTarget::Stdout,
        p => LogTarget::File(src.resolve(std::path::Path::new(p))),
    };
    // Like `nginx -t`, but without creating anything: an existing file must open for
    // appending, a new one needs its directory.
    if let LogTarget::File(path) = &target {
        let problem = if path.exists() {
            std::fs::OpenOptions::new()
                .append(true)
                .open(path)
                .err()
                .map(|e| format!("cannot append to {}: {e}", path.display()))
        } else {
            match path.parent() {
                Some(dir) if dir.is_dir() => None,
                _ => Some(format!("no directory for {}", path.display())),
            }
        };
        if let Some(why) = problem {
            errors.push(src.error_at("path", format!("access_log.path: {why}")));
        }
    }
    if raw.buffer_bytes < 4096 || raw.buffer_bytes > 1 << 30 {
        errors.push(src.error_at(
            "buffer_bytes",
            "access_log.buffer_bytes must be 4096..=1073741824",
        ));
    }
    if raw.client_prefix_v4 > 32 || raw.client_prefix_v6 > 128 {
        errors.push(src.error_at(
            "client_prefix_v4",
            "access_log.client_prefix_v4 must be 0..=32 and client_prefix_v6 0..=128",
        ));
    }
    let user_key = raw.user_key_file.and_then(|f| {
        let label = "access_log.user_key_file";
        src.read_secret("user_key_file", label, "key", &f, MIN_KEY_BYTES)
            .map(UserKey)
            .map_err(|e| errors.push(e))
            .ok()
    });
    AccessLogConfig {
        target,
        buffer_bytes: raw.buffer_bytes,
        client_prefix_v4: raw.client_prefix_v4,
        client_prefix_v6: raw.client_prefix_v6,
        user_key,
        log_text: raw.log_text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::server::validate as validate_server;
    use std::path::Path;

    fn check(text: &str) -> Result<crate::config::ServerConfig, Vec<ConfigError>> {
        Source::check_text(Path::new("/tmp"), "server.yaml", text, validate_server)
    }

    #[test]
    fn the_log_path_must_be_writable_and_the_key_long_enough() {
        let listen = "listen: {chat: ['127.0.0.1:8080'], admin: ['127.0.0.1:9901']}\n";
        let e = check(&format!(
            "{listen}access_log: {{path: /nonexistent/dir/a.log}}\n"
        ))
        .unwrap_err();
        assert!(e[0].reason.contains("no directory"), "{e:?}");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("short.key"), "abc").unwrap();
        let e = check(&format!(
            "{listen}access_log: {{path: {}/a.log, user_key_file: {}/short.key}}\n",
            dir.path().display(),
            dir.path().display()
        ))
        .unwrap_err();
        assert!(e[0].reason.contains("shorter than"), "{e:?}");
        let c = check(&format!(
            "{listen}access_log: {{path: {}/a.log, log_text: masked}}\n",
            dir.path().display()
        ))
        .unwrap();
        let log = c.access_log.unwrap();
        assert_eq!(log.log_text, LogText::Masked);
        assert_eq!(log.buffer_bytes, 4 << 20);
        assert!(!dir.path().join("a.log").exists(), "-t creates nothing");
        assert!(check(&format!("{listen}access_log: {{path: stdout}}\n")).is_ok());
    }
}
