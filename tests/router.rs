//! The trained router end to end: the CLI and the server make the same decisions (the
//! model stage included), and a reload refuses a router file that does not match its
//! manifest.

mod common;

use common::*;

#[test]
fn classify_cli_and_server_agree() {
    let conf = Conf::new();
    let server = Server::start(&conf);
    let samples = tsv("tests/data/intent_samples.tsv");
    let mut second: Vec<(String, String)> = tsv("models/eval/second_eval.tsv");
    second.truncate(120);
    let texts: Vec<&str> = samples
        .iter()
        .chain(&second)
        .map(|(t, _)| t.as_str())
        .collect();
    let out = run_cli(
        &[
            "classify",
            "--with-model",
            "-c",
            conf.path().to_str().unwrap(),
        ],
        &(texts.join("\n") + "\n"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), texts.len());
    let mut rule = 0;
    // One user per message: `classify` decides messages alone, without a dialogue.
    for (i, (text, line)) in texts.iter().zip(lines).enumerate() {
        let cols: Vec<&str> = line.split('\t').collect();
        assert_eq!(cols.len(), 3, "{line}");
        let (intent, confidence, stage) = (cols[0], cols[1].parse::<f64>().unwrap(), cols[2]);
        let v = server.chat(&format!("agree-{i}"), text).json();
        assert_eq!(v["intent"], intent, "{text}: cli {line}, server {v}");
        let served = v["confidence"].as_f64().unwrap();
        assert!(
            (served - confidence).abs() < 1e-3,
            "{text}: cli {line}, server {v}"
        );
        if stage == "rule" {
            assert_eq!(v["source"], "rule", "{text}: cli {line}, server {v}");
        } else {
            // Handed on: the model's intent, answered from its templates or by the fallback.
            assert!(
                v["source"] == "model" || v["source"] == "fallback",
                "{text}: cli {line}, server {v}"
            );
        }
        rule += usize::from(stage == "rule");
    }
    assert!(
        rule > 0 && rule < texts.len(),
        "both stages exercised: {rule}/{}",
        texts.len()
    );
}

#[test]
fn a_corrupted_router_is_refused_on_reload_and_the_old_one_serves() {
    let conf = Conf::new();
    // A private copy of the model the test may break.
    let models = conf.path().join("model");
    std::fs::create_dir_all(&models).unwrap();
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/router");
    for f in ["router.bin", "manifest.json"] {
        std::fs::copy(shipped.join(f), models.join(f)).unwrap();
    }
    let router_yaml = conf.read("router.yaml");
    let line = router_yaml
        .lines()
        .find(|l| l.starts_with("model:"))
        .unwrap()
        .to_string();
    conf.patch(
        "router.yaml",
        &line,
        &format!("model: {}/router.bin", models.display()),
    );
    let server = Server::start(&conf);
    let before = server.chat("u", "我的退款到账了吗").json();

    let mut bytes = std::fs::read(models.join("router.bin")).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(models.join("router.bin"), &bytes).unwrap();
    server.signal("HUP");
    let h = server.wait_reload(|c| c["reloads_failed"] == 1);
    let errors = h["config"]["last"]["errors"].to_string();
    assert!(errors.contains("does not match the manifest"), "{errors}");
    assert_eq!(h["config"]["generation"], 1);
    let after = server.chat("u", "我的退款到账了吗").json();
    assert_eq!(before["intent"], after["intent"]);
    assert_eq!(before["confidence"], after["confidence"]);

    // A model below the quality gate is refused too.
    std::fs::copy(shipped.join("router.bin"), models.join("router.bin")).unwrap();
    conf.patch(
        "router.yaml",
        "min_fast_precision: 0.95",
        "min_fast_precision: 0.999",
    );
    let r = post(server.admin, "/reload", "", b"").unwrap();
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(r.text().contains("quality gate"), "{}", r.text());
}

/// The shipped router does what its manifest says on the fixed validation splits (so the
/// manifest cannot go stale), and meets the precision and accuracy targets it claims.
#[test]
fn shipped_router_meets_its_manifest_on_the_validation_splits() {
    use kefu_edge::offline::corpus::{self, Origin};
    use kefu_edge::offline::eval::Evaluation;
    let Some(shared) = shared_data("shipped_router_meets_its_manifest_on_the_validation_splits")
    else {
        return;
    };
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = kefu_edge::config::Config::load(&root.join("conf")).unwrap();
    let pipeline = kefu_edge::pipeline::Pipeline::new(&config, None).unwrap();
    let manifest = &pipeline
        .router()
        .expect("the shipped conf has a router")
        .manifest;
    let mut examples = corpus::load_authored(&root.join("models/data/corpus")).unwrap();
    examples.extend(corpus::load_jddc(&shared).unwrap());
    let validation = corpus::split(&examples).dev;
    for origin in [Origin::Authored, Origin::Jddc] {
        let mut eval = Evaluation::default();
        for e in validation.iter().filter(|e| e.origin == origin) {
            eval.add(e.intent, &pipeline.decide(&e.text));
        }
        let measured = eval.metrics();
        let claimed = &manifest.validation[origin.as_str()];
        // Equal up to the last digit a JSON round trip may change.
        let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
        assert!(
            measured.examples == claimed.examples
                && close(measured.accuracy, claimed.accuracy)
                && close(measured.fast_coverage, claimed.fast_coverage)
                && close(measured.fast_precision, claimed.fast_precision),
            "{}: measured {measured:?}, manifest {claimed:?}",
            origin.as_str()
        );
        let target = match origin {
            Origin::Authored => 0.97,
            Origin::Jddc => 0.95,
        };
        assert!(
            measured.fast_precision >= target,
            "{}: {measured:?}",
            origin.as_str()
        );
    }
    assert!(manifest.thresholds.targets_met);
    assert!(manifest.validation["authored"].accuracy >= 0.90);
}

/// A follow-up is decided the same way by `classify --context` and by the server: the
/// server's first turn (its intent and text) is the CLI's previous turn, and the second
/// message, which the fast path no longer answers alone in a dialogue, gets the same intent
/// and confidence from both.
#[test]
fn classify_context_and_server_agree_on_follow_ups() {
    let conf = Conf::new();
    let server = Server::start(&conf);
    let dialogues = [
        ("我要退款，东西不想要了", "我看到了"),
        ("我的快递到哪了", "还是没动"),
        ("能开发票吗", "公司的"),
        ("这件衣服有没有L码", "黑色的呢"),
        ("在吗", "我想换个颜色"),
        ("衣服收到了，线头很多，质量太差了", "可以退吗"),
    ];
    let mut input = String::new();
    let mut served = Vec::new();
    for (i, (first, second)) in dialogues.iter().enumerate() {
        let user = format!("follow-{i}");
        let a = server.chat(&user, first).json();
        let b = server.chat(&user, second).json();
        input.push_str(&format!(
            "{}\t{first}\t{second}\n",
            a["intent"].as_str().unwrap()
        ));
        served.push(b);
    }
    let out = run_cli(
        &[
            "classify",
            "--with-model",
            "--context",
            "-c",
            conf.path().to_str().unwrap(),
        ],
        &input,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    for (line, v) in stdout.lines().zip(&served) {
        let cols: Vec<&str> = line.split('\t').collect();
        assert_eq!(v["intent"], cols[0], "cli {line}, server {v}");
        let confidence = cols[1].parse::<f64>().unwrap();
        let got = v["confidence"].as_f64().unwrap();
        assert!((got - confidence).abs() < 1e-3, "cli {line}, server {v}");
    }
    assert_eq!(stdout.lines().count(), dialogues.len());
    // A bad context line is refused with its line number.
    let out = run_cli(
        &["classify", "--context", "-c", conf.path().to_str().unwrap()],
        "refundz\tx\ty\n",
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("stdin line 1"));
}
