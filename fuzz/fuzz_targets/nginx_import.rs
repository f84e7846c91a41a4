//! The nginx importer: any text as nginx.conf is read and translated (or refused with an
//! error), and the translation renders.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use kefu_edge::migrate::{read_and_translate, render_files};
use libfuzzer_sys::fuzz_target;

fn file() -> &'static PathBuf {
    static FILE: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &FILE
        .get_or_init(|| {
            let tmp = tempfile::tempdir().expect("temp dir");
            let file = tmp.path().join("nginx.conf");
            (tmp, file)
        })
        .1
}

fuzz_target!(|data: &[u8]| {
    std::fs::write(file(), data).expect("write");
    if let Ok(imported) = read_and_translate(file()) {
        let files = render_files(&imported, "nginx.conf", "", "listen:\n  chat: []\n");
        assert!(files.iter().all(|(name, _)| !name.is_empty()));
    }
});
