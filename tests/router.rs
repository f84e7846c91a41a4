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

/// Each shipped router (the main one, and the fast-path one of models/router/fast_path) does
/// what its manifest says on the fixed validation splits (so a manifest cannot go stale), and
/// meets the precision and accuracy targets it claims.
#[test]
fn shipped_router_meets_its_manifest_on_the_validation_splits() {
    use kefu_edge::offline::corpus;
    let Some(shared) = shared_data("shipped_router_meets_its_manifest_on_the_validation_splits")
    else {
        return;
    };
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut config = kefu_edge::config::Config::load(&root.join("conf")).unwrap();
    // Each router alone, as it was trained: the main one, then the fast-path one (router.yaml's,
    // or the one shipped for it) in its place.
    let shipped_fast = root.join("models/router/fast_path/router.bin");
    let fast = config
        .router
        .fast_path
        .take()
        .map(|f| (f.model, f.manifest));
    let fast = fast.or_else(|| {
        shipped_fast.is_file().then(|| {
            (
                shipped_fast.clone(),
                shipped_fast.with_file_name("manifest.json"),
            )
        })
    });
    let mut alone = vec![];
    if let Some((model, manifest)) = fast {
        let mut c = config.clone();
        (c.router.model, c.router.manifest) = (model, manifest);
        alone.push(c);
    }
    alone.push(config);
    let mut examples = corpus::load_authored(&root.join("models/data/corpus")).unwrap();
    examples.extend(corpus::load_jddc(&shared).unwrap());
    let validation = corpus::split(&examples).dev;
    for config in alone {
        let pipeline = kefu_edge::pipeline::Pipeline::new(&config, None).unwrap();
        let manifest = &pipeline
            .router()
            .expect("the shipped conf has a router")
            .manifest;
        meets_its_manifest(&pipeline, manifest, &validation);
    }
}

fn meets_its_manifest(
    pipeline: &kefu_edge::pipeline::Pipeline,
    manifest: &kefu_edge::router::manifest::Manifest,
    validation: &[kefu_edge::offline::corpus::Example],
) {
    use kefu_edge::offline::corpus::Origin;
    use kefu_edge::offline::eval::Evaluation;
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

/// With `fast_path` in router.yaml, the fast path answers only when both routers name the same
/// intent and at least one reaches its own threshold (the fast-path router's from its
/// manifest); what is handed on carries the main router's guess, which the model stage mixes
/// with. Checked on every line of the second evaluation set that no keyword rule answers,
/// against a fast-path router that knows only two intents.
#[test]
fn the_fast_path_needs_both_routers_to_agree() {
    use kefu_edge::config::Config;
    use kefu_edge::intent::{Intent, Tier};
    use kefu_edge::offline::fit::{Target, fit};
    use kefu_edge::pipeline::{Pipeline, Stage};
    use kefu_edge::router::manifest::{TrainParams, sha256_hex};

    let conf = Conf::new();
    let labelled = [
        ("优惠券怎么用", Intent::Coupon),
        ("领券", Intent::Coupon),
        ("有没有券", Intent::Coupon),
        ("你好", Intent::Greeting),
        ("在吗", Intent::Greeting),
        ("您好在吗", Intent::Greeting),
    ];
    let examples: Vec<(&str, Target)> = labelled
        .iter()
        .map(|&(text, intent)| (text, vec![(intent, 1.0)]))
        .collect();
    let params = TrainParams {
        buckets: 4096,
        min_count: 1,
        ..TrainParams::default()
    };
    let (small, _) = fit(&examples, &params).unwrap();
    let bytes = small.to_bytes();
    let dir = conf.path().join("fast");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("router.bin"), &bytes).unwrap();
    // The shipped manifest (its figures pass the gate), for this file, one threshold for all.
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/models/router/manifest.json");
    let mut manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(shipped).unwrap()).unwrap();
    manifest["model_sha256"] = sha256_hex(&bytes).into();
    manifest["model_bytes"] = bytes.len().into();
    manifest["thresholds"]["global"] = 0.6.into();
    manifest["thresholds"]["per_intent"] = serde_json::json!({});
    std::fs::write(dir.join("manifest.json"), manifest.to_string()).unwrap();
    let mut config = Config::load(conf.path()).unwrap();
    config.router.fast_path = Some(kefu_edge::config::ModelFiles {
        model: dir.join("router.bin"),
        manifest: dir.join("manifest.json"),
    });
    let with = Pipeline::new(&config, None).unwrap();
    config.router.fast_path = None;
    let without = Pipeline::new(&config, None).unwrap();
    let gate = &with.fast_path_router().expect("a fast-path router").router;
    let main = with.router().expect("the main router");

    let lines = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/models/eval/second_eval.tsv"
    ))
    .unwrap();
    let (mut checked, mut only_with, mut only_without) = (0, 0, 0);
    for text in lines
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split('\t').next())
    {
        if with
            .keywords()
            .classify(text)
            .is_some_and(|hit| with.answers(hit.intent))
        {
            continue;
        }
        checked += 1;
        let d = with.decide(text);
        let (m, g) = (
            main.router.classify(text).unwrap(),
            gate.classify(text).unwrap(),
        );
        let answerable = |i: Intent| i.tier() == Tier::Fast && with.answers(i);
        let sure = (answerable(m.intent) && m.prob >= main.threshold(m.intent))
            || (answerable(g.intent) && g.prob >= 0.6);
        let want = if m.intent == g.intent && sure {
            Stage::Rule
        } else {
            Stage::Model
        };
        assert_eq!((d.stage, d.intent), (want, m.intent), "{text}");
        match (d.stage, without.decide(text).stage) {
            (Stage::Rule, Stage::Model) => only_with += 1,
            (Stage::Model, Stage::Rule) => only_without += 1,
            _ => {}
        }
    }
    assert!(checked > 100, "{checked}");
    assert!(
        only_with > 0 && only_without > 0,
        "{only_with} {only_without}"
    );
}
