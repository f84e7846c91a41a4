//! The configuration loader: the shipped directory with one of its YAML files (picked by the
//! first byte) replaced by the input. Every input loads or is refused with errors; none
//! panics.
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use kefu_edge::config::Config;
use libfuzzer_sys::fuzz_target;

const FILES: [&str; 9] = [
    "server.yaml",
    "edge.yaml",
    "limits.yaml",
    "intents.yaml",
    "post.yaml",
    "upstreams.yaml",
    "dialog.yaml",
    "router.yaml",
    "model.yaml",
];

/// A copy of conf/ with absolute paths to what lies outside it (models, ONNX Runtime).
fn dir() -> &'static PathBuf {
    static DIR: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &DIR.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let root = std::fs::canonicalize(root).expect("repository root");
        let tmp = tempfile::tempdir().expect("temp dir");
        let conf = tmp.path().join("conf");
        copy(&root.join("conf"), &conf);
        for name in ["model.yaml", "router.yaml"] {
            let p = conf.join(name);
            let text = std::fs::read_to_string(&p).expect("read");
            let text = text.replace("../", &format!("{}/", root.display()));
            std::fs::write(&p, text).expect("write");
        }
        (tmp, conf)
    })
    .1
}

fn copy(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read_dir") {
        let e = e.expect("entry");
        let target = to.join(e.file_name());
        if e.path().is_dir() {
            copy(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).expect("copy");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, text)) = data.split_first() else {
        return;
    };
    let name = FILES[usize::from(pick) % FILES.len()];
    let path = dir().join(name);
    let shipped = std::fs::read(&path).expect("read");
    std::fs::write(&path, text).expect("write");
    let _ = Config::load_for_training(dir());
    std::fs::write(&path, shipped).expect("restore");
});
