//! An nginx configuration as a tree of directives, `include`s expanded in place, each
//! directive with the file and line it came from. Parsing is nginx-lint-parser's; this
//! module only resolves includes (relative to the main file's directory, as nginx resolves
//! them against its prefix; a `*` in the last path component matches files, sorted, like
//! nginx's glob) and flattens arguments to text (`$var` keeps its `$`, quotes are removed).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use nginx_lint_parser::ast::{ConfigItem, Directive};

/// Where a directive is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct At {
    pub file: Arc<str>,
    pub line: usize,
}

impl fmt::Display for At {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// One directive: its name, arguments, block (if it has one) and place.
#[derive(Debug, Clone)]
pub struct Node {
    pub name: String,
    pub args: Vec<String>,
    pub block: Option<Vec<Node>>,
    pub at: At,
}

impl Node {
    pub fn arg(&self, i: usize) -> &str {
        self.args.get(i).map_or("", String::as_str)
    }

    /// `key=value` arguments (limit_req_zone, server): the value of `key`.
    pub fn param(&self, key: &str) -> Option<&str> {
        self.args
            .iter()
            .find_map(|a| a.strip_prefix(key)?.strip_prefix('='))
    }

    pub fn has_flag(&self, flag: &str) -> bool {
        self.args.iter().any(|a| a == flag)
    }

    pub fn children(&self) -> &[Node] {
        self.block.as_deref().unwrap_or(&[])
    }
}

/// Read `main` and every file it includes. `shown` is how file names appear in reports
/// (relative to the main file's directory, so golden outputs do not depend on where the
/// fixture lives).
pub fn load(main: &Path) -> anyhow::Result<Vec<Node>> {
    let dir = main.parent().unwrap_or(Path::new(".")).to_path_buf();
    let name = main.file_name().map_or_else(
        || main.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let mut depth = 0;
    read_file(main, &dir, Arc::from(name.as_str()), &mut depth)
}

fn read_file(
    path: &Path,
    dir: &Path,
    shown: Arc<str>,
    depth: &mut usize,
) -> anyhow::Result<Vec<Node>> {
    *depth += 1;
    anyhow::ensure!(
        *depth < 32,
        "{}: includes nested too deep (a cycle?)",
        path.display()
    );
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let config = nginx_lint_parser::parse_string(&blank_lua_blocks(&text))
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let nodes = convert(&config.items, dir, &shown, depth)?;
    *depth -= 1;
    Ok(nodes)
}

fn convert(
    items: &[ConfigItem],
    dir: &Path,
    file: &Arc<str>,
    depth: &mut usize,
) -> anyhow::Result<Vec<Node>> {
    let mut out = Vec::new();
    for item in items {
        let ConfigItem::Directive(d) = item else {
            continue;
        };
        if d.name == "include" && d.block.is_none() {
            for path in expand(dir, d.args.first().map_or("", |a| a.as_str()))? {
                let shown = path
                    .strip_prefix(dir)
                    .unwrap_or(&path)
                    .display()
                    .to_string();
                out.extend(read_file(&path, dir, Arc::from(shown.as_str()), depth)?);
            }
            continue;
        }
        out.push(node(d, dir, file, depth)?);
    }
    Ok(out)
}

fn node(d: &Directive, dir: &Path, file: &Arc<str>, depth: &mut usize) -> anyhow::Result<Node> {
    let args = d
        .args
        .iter()
        .map(|a| {
            if a.is_variable() {
                a.raw.clone()
            } else {
                a.as_str().to_owned()
            }
        })
        .collect();
    let block = match &d.block {
        Some(b) => Some(convert(&b.items, dir, file, depth)?),
        None => None,
    };
    Ok(Node {
        name: d.name.clone(),
        args,
        block,
        at: At {
            file: Arc::clone(file),
            line: d.span.start.line,
        },
    })
}

/// The files an `include` names: one path, or a `*` pattern in its last component.
fn expand(dir: &Path, pattern: &str) -> anyhow::Result<Vec<PathBuf>> {
    let path = dir.join(pattern);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if !name.contains('*') {
        anyhow::ensure!(
            path.exists(),
            "include {pattern}: {} does not exist",
            path.display()
        );
        return Ok(vec![path]);
    }
    let parent = path.parent().unwrap_or(dir);
    let mut found: Vec<PathBuf> = std::fs::read_dir(parent)
        .with_context(|| format!("include {pattern}: reading {}", parent.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| wildcard(&name, &n.to_string_lossy()))
        })
        .collect();
    found.sort();
    Ok(found)
}

/// The bodies of `*_by_lua_block { … }` blanked out (newlines kept, so lines stay right).
/// Lua is opaque to the importer, and the parser would read a quote in a Lua comment
/// (`-- Debian's`) as the start of an nginx string; nginx's own Lua module skips these
/// blocks by Lua's rules, as this does: strings, comments and long brackets.
fn blank_lua_blocks(text: &str) -> String {
    let Ok(start) = regex::Regex::new(r"[A-Za-z_]+_by_lua_block\s*\{") else {
        return text.to_owned();
    };
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(m) = start.find(rest) {
        out.push_str(&rest[..m.end()]);
        let body = &rest[m.end()..];
        let end = lua_block_end(body);
        out.extend(
            body[..end]
                .chars()
                .map(|c| if c == '\n' { '\n' } else { ' ' }),
        );
        rest = &body[end..];
    }
    out.push_str(rest);
    out
}

/// Where the Lua body ends: the byte offset of its closing `}` (or the end of the text).
fn lua_block_end(body: &str) -> usize {
    let b = body.as_bytes();
    let (mut i, mut depth) = (0, 0usize);
    while i < b.len() {
        match b[i] {
            b'-' if b.get(i + 1) == Some(&b'-') => {
                i += 2;
                if body[i..].starts_with("[[") {
                    i = body[i..].find("]]").map_or(b.len(), |j| i + j + 2);
                } else {
                    i = body[i..].find('\n').map_or(b.len(), |j| i + j);
                }
            }
            b'[' if b.get(i + 1) == Some(&b'[') => {
                i = body[i..].find("]]").map_or(b.len(), |j| i + j + 2);
            }
            q @ (b'"' | b'\'') => {
                i += 1;
                while i < b.len() && b[i] != q {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'{' => {
                depth += 1;
                i += 1;
            }
            b'}' if depth == 0 => return i,
            b'}' => {
                depth -= 1;
                i += 1;
            }
            _ => i += 1,
        }
    }
    b.len()
}

/// `*` matches any run of characters; nothing else is special.
fn wildcard(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !name.starts_with(first) || name.len() < first.len() + last.len() || !name.ends_with(last) {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_like_a_shell_glob() {
        assert!(wildcard("*.conf", "a.conf"));
        assert!(!wildcard("*.conf", "a.conf.bak"));
        assert!(wildcard("site-*.conf", "site-1.conf"));
        assert!(!wildcard("site-*.conf", "x-1.conf"));
        assert!(wildcard("a*b*c", "a-b-c"));
    }

    #[test]
    fn lua_blocks_are_opaque() {
        let text = "init_by_lua_block {\n  -- Debian's module\n  local t = { a = \"}\" }\n}\nserver_tokens off;\n";
        let blanked = blank_lua_blocks(text);
        assert_eq!(blanked.lines().count(), text.lines().count());
        assert!(blanked.contains("{\n  "), "{blanked}");
        assert!(blanked.ends_with("}\nserver_tokens off;\n"), "{blanked}");
        assert!(!blanked.contains("Debian"));
    }

    #[test]
    fn includes_are_expanded_in_place_with_their_own_lines() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("conf.d")).unwrap();
        std::fs::write(
            dir.path().join("nginx.conf"),
            "http {\n  include conf.d/*.conf;\n  server_tokens off;\n}\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("conf.d/b.conf"), "\nallow 10.0.0.0/8;\n").unwrap();
        std::fs::write(dir.path().join("conf.d/a.conf"), "deny all;\n").unwrap();
        let nodes = load(&dir.path().join("nginx.conf")).unwrap();
        let http = nodes[0].children();
        let seen: Vec<String> = http
            .iter()
            .map(|n| format!("{} {}", n.name, n.at))
            .collect();
        assert_eq!(
            seen,
            [
                "deny conf.d/a.conf:1",
                "allow conf.d/b.conf:2",
                "server_tokens nginx.conf:3"
            ]
        );
        assert!(load(&dir.path().join("missing.conf")).is_err());
    }
}
