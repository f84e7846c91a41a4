//! `kefu-edge import-nginx` on the fixtures of lua-compat/fixtures/: the written files match
//! the golden ones (`expected/`), and every output passes `-t`. `KEFU_BLESS=1` rewrites
//! the golden files from the current output (review the diff).

mod common;

use std::path::Path;

use common::BIN;

const FILES: [&str; 4] = ["edge.yaml", "limits.yaml", "upstreams.yaml", "IMPORT.txt"];

fn import(fixture: &str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = root.join("lua-compat/fixtures").join(fixture);
    let out = tempfile::tempdir().expect("tempdir");
    let run = std::process::Command::new(BIN)
        .arg("-c")
        .arg(root.join("conf"))
        .arg("import-nginx")
        .arg(dir.join("nginx.conf"))
        .arg("-o")
        .arg(out.path())
        .output()
        .expect("run import-nginx");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{fixture}: import-nginx failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(stdout.contains("configuration ok"), "{stdout}");
    let check = std::process::Command::new(BIN)
        .arg("-t")
        .arg("-c")
        .arg(out.path())
        .output()
        .expect("run -t");
    assert!(check.status.success(), "{fixture}: -t failed");

    let server = std::fs::read_to_string(out.path().join("server.yaml")).expect("server.yaml");
    let listen: String = server
        .lines()
        .filter(|l| l.trim_start().starts_with("chat: ["))
        .collect();
    let expected = dir.join("expected");
    let bless = std::env::var_os("KEFU_BLESS").is_some();
    if bless {
        std::fs::create_dir_all(&expected).expect("mkdir expected");
    }
    let mut outputs: Vec<(String, String)> = FILES
        .iter()
        .map(|f| {
            let text = std::fs::read_to_string(out.path().join(f)).expect("output file");
            (f.to_string(), text)
        })
        .collect();
    outputs.push(("server_listen.txt".into(), format!("{listen}\n")));
    for (name, text) in outputs {
        let golden = expected.join(&name);
        if bless {
            std::fs::write(&golden, &text).expect("bless");
            continue;
        }
        let want = std::fs::read_to_string(&golden)
            .unwrap_or_else(|e| panic!("{}: {e} (KEFU_BLESS=1 writes it)", golden.display()));
        assert_eq!(
            text,
            want,
            "{fixture}/{name} differs from {}",
            golden.display()
        );
    }
}

#[test]
fn the_bench_nginx_tier_imports() {
    import("bench");
}

#[test]
fn a_tengine_front_imports() {
    import("tengine");
}

#[test]
fn a_config_split_over_includes_imports() {
    import("includes");
}
