//! Runs `tests/smoke.sh` (the README's curl examples) against the real binary on the
//! shipped configuration (only the listen ports changed).

mod common;

use std::process::Command;

use common::*;

#[test]
fn readme_curl_examples_work() {
    let conf = Conf::new();
    // The shipped buckets: the smoke test checks the README's 429 example.
    let shipped =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/conf/limits.yaml")).unwrap();
    conf.write("limits.yaml", &shipped);
    let server = Server::start(&conf);
    let out = Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/smoke.sh"))
        .env("KEFU_URL", format!("http://{}", server.chat))
        .env("KEFU_ADMIN", format!("http://{}", server.admin))
        .output()
        .expect("run smoke.sh (needs bash and curl)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}\n{}", server.log_text());
    assert!(text.contains("smoke: all checks passed"), "{text}");
}
