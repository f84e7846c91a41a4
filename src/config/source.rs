//! One configuration file's text, and errors that point into it.

use std::path::{Path, PathBuf};

use super::ConfigError;

/// A file of the configuration directory, kept while it is validated so errors found after
/// parsing can still name a line.
pub struct Source {
    pub path: PathBuf,
    dir: PathBuf,
    text: String,
    /// Whether model files must exist (not when loading a configuration to train them).
    pub check_models: bool,
}

impl Source {
    pub fn read(dir: &Path, name: &str) -> Result<Source, ConfigError> {
        let path = dir.join(name);
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(Source {
                path,
                dir: dir.to_path_buf(),
                text,
                check_models: true,
            }),
            Err(e) => Err(ConfigError {
                file: path,
                line: None,
                reason: format!("cannot read file: {e}"),
            }),
        }
    }

    /// Build a source from text, for tests of single files.
    #[cfg(test)]
    pub fn from_text(dir: &Path, name: &str, text: &str) -> Source {
        Source {
            path: dir.join(name),
            dir: dir.to_path_buf(),
            text: text.to_owned(),
            check_models: true,
        }
    }

    /// Parse and validate a text as file `name` of `dir` (tests of single files).
    #[cfg(test)]
    pub fn check_text<R: serde::de::DeserializeOwned, T>(
        dir: &Path,
        name: &str,
        text: &str,
        validate: fn(R, &Source) -> Result<T, Vec<ConfigError>>,
    ) -> Result<T, Vec<ConfigError>> {
        let src = Source::from_text(dir, name, text);
        validate(src.parse().map_err(|e| vec![e])?, &src)
    }

    /// Add this file to a configuration's hash: its name, length and text.
    pub fn hash_into(&self, hash: &mut sha2::Sha256) {
        use sha2::Digest;
        let name = self
            .path
            .file_name()
            .map(|n| n.as_encoded_bytes())
            .unwrap_or_default();
        hash.update(name);
        hash.update((self.text.len() as u64).to_le_bytes());
        hash.update(self.text.as_bytes());
    }

    pub fn parse<R: serde::de::DeserializeOwned>(&self) -> Result<R, ConfigError> {
        serde_yaml_ng::from_str(&self.text).map_err(|e| {
            let mut reason = e.to_string();
            // The location is reported in its own field; drop the parser's suffix.
            if let Some(at) = reason.find(" at line ") {
                reason.truncate(at);
            }
            let line = e.location().map(|l| self.refine_line(l.line(), &reason));
            ConfigError {
                file: self.path.clone(),
                line,
                reason,
            }
        })
    }

    /// The parser marks a bad element of a sequence at the start of the sequence. When the
    /// reason quotes the offending value (`like this`), point at the line that holds it.
    fn refine_line(&self, line: usize, reason: &str) -> usize {
        let Some(value) = reason.split('`').nth(1).filter(|v| !v.is_empty()) else {
            return line;
        };
        self.text
            .lines()
            .enumerate()
            .skip(line.saturating_sub(1))
            .find(|(_, l)| l.contains(value))
            .map_or(line, |(i, _)| i + 1)
    }

    /// An error about the value of `key` (the last component of its path), reported at the
    /// first line that defines that key.
    pub fn error_at(&self, key: &str, reason: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.path.clone(),
            line: self.line_of(key),
            reason: reason.into(),
        }
    }

    fn line_of(&self, key: &str) -> Option<usize> {
        let bare = format!("{key}:");
        let quoted = format!("\"{key}\":");
        self.text
            .lines()
            .position(|l| {
                let l = l.trim_start().trim_start_matches("- ");
                l.starts_with(&bare) || l.starts_with(&quoted)
            })
            .map(|i| i + 1)
    }

    /// A secret kept in its own file, named under `key` (a token, a hashing key): its bytes
    /// without surrounding ASCII whitespace, at least `min` of them. `label` and `noun` name
    /// it in the error (`admin_token_file`, `token`).
    pub fn read_secret(
        &self,
        key: &str,
        label: &str,
        noun: &str,
        file: &Path,
        min: usize,
    ) -> Result<Vec<u8>, ConfigError> {
        let path = self.resolve(file);
        match std::fs::read(&path) {
            Ok(bytes) if bytes.trim_ascii().len() >= min => Ok(bytes.trim_ascii().to_vec()),
            Ok(_) => Err(self.error_at(
                key,
                format!(
                    "{label}: the {noun} in {} is shorter than {min} bytes",
                    path.display()
                ),
            )),
            Err(e) => {
                Err(self.error_at(key, format!("{label}: cannot read {}: {e}", path.display())))
            }
        }
    }

    /// Resolve a path written in this file: relative paths are relative to the directory.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.dir.join(p)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_errors_carry_the_line() {
        #[derive(serde::Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct T {
            a: u32,
        }
        let src = Source::from_text(Path::new("conf"), "t.yaml", "# c\na: 1\nb: 2\n");
        let e = src.parse::<T>().unwrap_err();
        assert_eq!(e.line, Some(3));
        assert!(e.reason.contains("unknown field `b`"), "{}", e.reason);
        assert_eq!(e.to_string(), format!("conf/t.yaml:3: {}", e.reason));
    }

    #[test]
    fn key_errors_find_the_key_line() {
        let src = Source::from_text(Path::new("c"), "t.yaml", "x:\n  y: 1\n  - z: 2\n");
        assert_eq!(src.error_at("y", "bad").line, Some(2));
        assert_eq!(src.error_at("z", "bad").line, Some(3));
        assert_eq!(src.error_at("w", "bad").line, None);
    }
}
