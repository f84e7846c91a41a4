//! `kefu-edge import-nginx FILE -o DIR`: an nginx/OpenResty front configuration turned into
//! a kefu-edge configuration directory. The base directory (`-c`, the shipped `conf/` by
//! default) is copied, then edge.yaml, limits.yaml and upstreams.yaml are written from what
//! the nginx files say and server.yaml's chat listeners from their `listen`s. Everything
//! not translated, or translated with a difference, is listed with file:line and why in
//! `DIR/IMPORT.txt` (and printed).

mod render;
mod source;
mod translate;

use std::path::{Path, PathBuf};

use anyhow::Context as _;

pub use source::{At, Node};
pub use translate::{Imported, Remark, translate};

/// Read `file` (and what it includes) and translate it, writing nothing.
pub fn read_and_translate(file: &Path) -> anyhow::Result<Imported> {
    Ok(translate(&source::load(file)?))
}

/// The files `import` writes from `imported`, by name (report included), for a main file
/// shown as `shown` and the base's limits.yaml and server.yaml texts.
pub fn render_files(
    imported: &Imported,
    shown: &str,
    base_limits: &str,
    base_server: &str,
) -> [(&'static str, String); 5] {
    [
        ("edge.yaml", render::edge(imported, shown)),
        ("limits.yaml", render::limits(imported, shown, base_limits)),
        ("upstreams.yaml", render::upstreams(imported, shown)),
        ("server.yaml", render::server(imported, base_server)),
        ("IMPORT.txt", render::report(imported, shown)),
    ]
}

/// Import `file` into `out`, on top of a copy of `base`. The report (IMPORT.txt).
pub fn import(file: &Path, base: &Path, out: &Path) -> anyhow::Result<String> {
    let imported = read_and_translate(file)?;
    copy_base(base, out)?;
    let base_limits = std::fs::read_to_string(base.join("limits.yaml")).unwrap_or_default();
    let base_server = std::fs::read_to_string(base.join("server.yaml"))
        .with_context(|| format!("reading {}/server.yaml", base.display()))?;
    let shown = file.file_name().map_or_else(
        || file.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let mut report = String::new();
    for (name, text) in render_files(&imported, &shown, &base_limits, &base_server) {
        write(&out.join(name), &text)?;
        if name == "IMPORT.txt" {
            report = text;
        }
    }
    Ok(report)
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// Copy the base configuration, with the paths that point outside it (`../models`, the
/// ONNX Runtime library) made absolute so the copy works wherever it is.
fn copy_base(base: &Path, out: &Path) -> anyhow::Result<()> {
    let base_abs =
        std::fs::canonicalize(base).with_context(|| format!("reading {}", base.display()))?;
    copy_dir(&base_abs, out, &base_abs)
}

fn copy_dir(from: &Path, to: &Path, base: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let path: PathBuf = entry?.path();
        let target = to.join(path.file_name().unwrap_or_default());
        if path.is_dir() {
            copy_dir(&path, &target, base)?;
        } else if path.extension().is_some_and(|e| e == "yaml") {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            write(&target, &rebase(&text, base))?;
        } else {
            std::fs::copy(&path, &target).with_context(|| format!("copying {}", path.display()))?;
        }
    }
    Ok(())
}

/// `key: ../x` becomes `key: <base>/../x`.
fn rebase(text: &str, base: &Path) -> String {
    text.replace(": ../", &format!(": {}/../", base.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_out_of_the_base_become_absolute() {
        let t = rebase(
            "models_dir: ../models/intent  # x\nactive: v2\n",
            Path::new("/srv/conf"),
        );
        assert_eq!(
            t,
            "models_dir: /srv/conf/../models/intent  # x\nactive: v2\n"
        );
    }
}
