//! The model stage on the shipped model: batched and single inference agree, the chat
//! answers from the model, overload and deadlines end in the fallback, and versions swap
//! under load without a failed request.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use kefu_edge::config::Config;
use kefu_edge::model::{BatchMetrics, ModelStage};
use kefu_edge::pipeline::{Pipeline, Stage};

const SHIPPED_VERSION: &str = "v2";

/// The shipped configuration (the copy is kept while the config is used).
fn shipped_config() -> (Conf, Config) {
    let conf = Conf::new();
    let config = Config::load(conf.path()).unwrap_or_else(|e| panic!("{e}"));
    (conf, config)
}

#[test]
fn batched_and_single_inference_give_the_same_classes() {
    let (_conf, cfg) = shipped_config();
    let pipeline = Pipeline::new(&cfg, None).unwrap();
    for t in HANDED_ON {
        assert_eq!(
            pipeline.decide(t).stage,
            Stage::Model,
            "the fast path answers {t}"
        );
    }
    let stage = ModelStage::start(&cfg.model, BatchMetrics::unregistered()).expect("model loads");
    let single: Vec<_> = HANDED_ON
        .iter()
        .map(|t| {
            stage
                .classify_blocking(kefu_edge::model::ModelInput::alone(t))
                .expect("single")
        })
        .collect();
    assert!(single.iter().all(|p| p.batch_size == 1));
    // All at once from many threads: they queue behind each other and share batches.
    let stage = Arc::new(stage);
    let rounds = 6;
    let handles: Vec<_> = (0..rounds * HANDED_ON.len())
        .map(|i| {
            let stage = Arc::clone(&stage);
            thread::spawn(move || {
                stage
                    .classify_blocking(kefu_edge::model::ModelInput::alone(
                        HANDED_ON[i % HANDED_ON.len()],
                    ))
                    .expect("batched")
            })
        })
        .collect();
    let batched: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(
        batched.iter().any(|p| p.batch_size > 1),
        "concurrent requests were never batched"
    );
    for (i, b) in batched.iter().enumerate() {
        let s = &single[i % HANDED_ON.len()];
        assert_eq!(b.intent, s.intent, "{}", HANDED_ON[i % HANDED_ON.len()]);
        // Padding itself is masked, but the model is dynamic INT8: each MatMul quantizes its
        // input with one scale for the whole batch, so the other rows move a row's rounding.
        // Measured: up to 0.026 on one machine, 0.017 on another. The class must not move.
        assert!(
            (b.prob - s.prob).abs() < 0.05,
            "padding moved the probability: {} vs {}",
            b.prob,
            s.prob
        );
    }
}

#[test]
fn handed_on_messages_are_answered_by_the_model_or_the_fallback() {
    let conf = Conf::new();
    let server = Server::start(&conf);
    let mut sources = std::collections::BTreeMap::new();
    for text in HANDED_ON {
        let r = server.chat("u-model", text);
        assert_eq!(r.status, 200, "{}", r.text());
        let j = r.json();
        let source = j["source"].as_str().unwrap().to_owned();
        assert!(source == "model" || source == "fallback", "{text}: {j}");
        if source == "fallback" {
            assert_eq!(j["reply"], "亲,转人工客服哦~");
        }
        *sources.entry(source).or_insert(0) += 1;
    }
    let h = server.health();
    assert_eq!(h["model"]["active"]["version"], SHIPPED_VERSION, "{h}");
    let text = get(server.admin, "/metrics").unwrap().text();
    let through_model = metric_sum(
        &text,
        "kefu_model_requests_total",
        &format!("version=\"{SHIPPED_VERSION}\""),
    );
    assert_eq!(
        through_model as usize,
        HANDED_ON.len(),
        "every handed-on message reached the model: {sources:?}\n{text}"
    );
}

#[test]
fn a_model_past_its_deadline_answers_with_the_fallback() {
    let conf = Conf::new();
    conf.patch("model.yaml", "deadline: 2s", "deadline: 1ns");
    let server = Server::start(&conf);
    for text in HANDED_ON {
        let r = server.chat("u-slow", text);
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["source"], "fallback");
    }
    server.assert_metrics(&[&format!(
        "kefu_model_requests_total{{outcome=\"deadline\",version=\"\"}} {}",
        HANDED_ON.len()
    )]);
}

/// A copy of the shipped version under another name, in a models directory of the test.
fn copy_version(models: &Path, name: &str) -> PathBuf {
    let from = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("models/intent")
        .join(SHIPPED_VERSION);
    let to = models.join(name);
    std::fs::create_dir_all(&to).unwrap();
    for f in [
        "model.onnx",
        "tokenizer.json",
        "labels.txt",
        "manifest.json",
    ] {
        std::fs::copy(from.join(f), to.join(f)).unwrap();
    }
    let manifest = std::fs::read_to_string(to.join("manifest.json")).unwrap();
    let renamed = manifest.replacen(
        &format!("\"version\": \"{SHIPPED_VERSION}\""),
        &format!("\"version\": \"{name}\""),
        1,
    );
    assert!(
        name == SHIPPED_VERSION || manifest != renamed,
        "manifest has a version field"
    );
    std::fs::write(to.join("manifest.json"), renamed).unwrap();
    to
}

/// Point the test configuration's model.yaml at `models`.
fn use_models_dir(conf: &Conf, models: &Path) {
    let text = conf.read("model.yaml");
    let models_line = text
        .lines()
        .find(|l| l.starts_with("models_dir:"))
        .unwrap()
        .to_owned();
    conf.patch(
        "model.yaml",
        &models_line,
        &format!("models_dir: {}", models.display()),
    );
}

fn wait_model(server: &Server, done: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let h = server.health();
        if done(&h["model"]) {
            return h["model"].clone();
        }
        assert!(
            Instant::now() < deadline,
            "model state not reached: {h}\n{}",
            server.log_text()
        );
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn versions_swap_under_load_without_a_failed_request_and_a_broken_one_is_refused() {
    let conf = Conf::new();
    let models = conf.path().join("models");
    copy_version(&models, "v1");
    copy_version(&models, "v2");
    let broken = copy_version(&models, "v3");
    std::fs::write(broken.join("model.onnx"), b"not a model").unwrap();
    use_models_dir(&conf, &models);
    // Start on v1 (a copy of the shipped version under that name).
    conf.patch("model.yaml", "active: v2", "active: v1");
    let server = Arc::new(Server::start(&conf));

    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..4)
        .map(|c| {
            let (server, stop, ok, failed) = (
                Arc::clone(&server),
                Arc::clone(&stop),
                Arc::clone(&ok),
                Arc::clone(&failed),
            );
            thread::spawn(move || {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let r = server.chat(&format!("user-{c}-{i}"), HANDED_ON[i % HANDED_ON.len()]);
                    let good = r.status == 200
                        && r.json()["reply"].as_str().is_some_and(|s| !s.is_empty());
                    if good {
                        ok.fetch_add(1, Ordering::Relaxed)
                    } else {
                        failed.fetch_add(1, Ordering::Relaxed)
                    };
                    i += 1;
                }
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(300));

    // A candidate for half the users, then promoted.
    conf.patch("model.yaml", "candidate: null", "candidate: v2");
    conf.patch("model.yaml", "gray_percent: 0 ", "gray_percent: 50 ");
    server.signal("HUP");
    let m = wait_model(&server, |m| m["candidate"]["version"] == "v2");
    assert!(m["candidate"]["load_ms"].as_u64().is_some(), "{m}");
    thread::sleep(Duration::from_millis(300));
    conf.patch("model.yaml", "active: v1", "active: v2");
    conf.patch("model.yaml", "candidate: v2", "candidate: null");
    conf.patch("model.yaml", "gray_percent: 50 ", "gray_percent: 0 ");
    server.signal("HUP");
    wait_model(&server, |m| {
        m["active"]["version"] == "v2" && m["candidate"].is_null()
    });
    thread::sleep(Duration::from_millis(300));

    // A broken version is refused; v2 keeps serving.
    conf.patch("model.yaml", "active: v2", "active: v3");
    server.signal("HUP");
    let m = wait_model(&server, |m| m["last_load"]["ok"] == false);
    assert_eq!(m["active"]["version"], "v2", "{m}");
    assert!(
        m["last_load"]["error"].as_str().unwrap().contains("sha256"),
        "{m}"
    );
    thread::sleep(Duration::from_millis(200));

    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    assert_eq!(failed, 0, "{failed} failed requests of {}", ok + failed);
    assert!(ok > 20, "the clients made too few requests: {ok}");
    let metrics = get(server.admin, "/metrics").unwrap().text();
    for v in ["v1", "v2"] {
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with("kefu_model_requests_total{")
                    && l.contains(&format!("version=\"{v}\""))),
            "no request answered by {v}:\n{metrics}"
        );
    }
}

/// POST an admin model step; the status and the JSON body.
fn step(server: &Server, route: &str, body: &str) -> (u16, serde_json::Value) {
    let r = post(
        server.admin,
        &format!("/admin/model/{route}"),
        "",
        body.as_bytes(),
    )
    .unwrap();
    (r.status, r.json())
}

#[test]
fn rollout_steps_through_the_admin_api_sit_over_model_yaml_until_it_changes() {
    let conf = Conf::new();
    let models = conf.path().join("models");
    copy_version(&models, "v1");
    copy_version(&models, "v2");
    use_models_dir(&conf, &models);
    conf.patch("model.yaml", "active: v2", "active: v1");
    conf.patch("model.yaml", "candidate: null", "candidate: v2");
    let server = Server::start(&conf);
    wait_model(&server, |m| m["candidate"]["version"] == "v2");

    let (status, j) = step(&server, "gray", r#"{"percent": 30}"#);
    assert_eq!(status, 200, "{j}");
    assert_eq!(j["rollout"]["gray_percent"], 30);
    wait_model(&server, |m| m["gray_percent"] == 30);
    let (status, j) = step(&server, "promote", "");
    assert_eq!(status, 200, "{j}");
    assert_eq!(j["rollout"]["active"], "v2");
    assert_eq!(j["rollout"]["candidate"], "v1");
    wait_model(&server, |m| {
        m["active"]["version"] == "v2"
            && m["candidate"]["version"] == "v1"
            && m["gray_percent"] == 0
    });
    // A reload of the unchanged model.yaml keeps the steps.
    let generation = server.health()["config"]["generation"].as_u64().unwrap();
    server.signal("HUP");
    server.wait_reload(|c| c["generation"].as_u64() > Some(generation));
    let status_now = get(server.admin, "/admin/model").unwrap().json();
    assert_eq!(status_now["rollout"]["active"], "v2", "{status_now}");
    assert_eq!(status_now["model_yaml"]["active"], "v1", "{status_now}");
    assert_eq!(status_now["admin_steps"], 2, "{status_now}");
    assert_eq!(server.chat("u1", HANDED_ON[0]).status, 200);

    // Back step by step, to model.yaml's rollout; then nothing is left to roll back.
    let (_, j) = step(&server, "rollback", "");
    assert_eq!(j["rollout"]["gray_percent"], 30, "{j}");
    assert_eq!(j["rollout"]["active"], "v1", "{j}");
    let (_, j) = step(&server, "rollback", "");
    assert_eq!(j["rollout"]["gray_percent"], 0, "{j}");
    wait_model(&server, |m| {
        m["active"]["version"] == "v1" && m["gray_percent"] == 0
    });
    let (status, j) = step(&server, "rollback", "");
    assert_eq!(
        (status, j["error"]["code"].as_str()),
        (409, Some("step_refused")),
        "{j}"
    );

    // Once model.yaml says something else, it wins over the steps.
    assert_eq!(step(&server, "promote", "").0, 200);
    conf.patch("model.yaml", "candidate: v2", "candidate: null");
    server.signal("HUP");
    wait_model(&server, |m| {
        m["active"]["version"] == "v1" && m["candidate"].is_null()
    });
    let status_now = get(server.admin, "/admin/model").unwrap().json();
    assert_eq!(status_now["admin_steps"], 0, "{status_now}");
    assert!(
        server
            .log_text()
            .contains("replaces the one set through the admin API")
    );

    // Refused and malformed steps.
    let (status, j) = step(&server, "gray", r#"{"percent": 5}"#);
    assert_eq!(status, 409, "no candidate: {j}");
    assert_eq!(step(&server, "gray", "{\"percent\": 500}").0, 400);
    assert_eq!(step(&server, "gray", "nope").0, 400);
    let r = get(server.admin, "/admin/model/promote").unwrap();
    assert_eq!(r.status, 405);
}

#[test]
fn shadow_scoring_compares_fast_path_answers_with_the_model() {
    let conf = Conf::new();
    conf.patch("model.yaml", "sample: 0.0 ", "sample: 1.0 ");
    let server = Server::start(&conf);
    let texts = ["亲，我要退款", "优惠券怎么用不了", "什么时候发货"];
    for t in texts {
        let r = server.chat("u-shadow", t).json();
        assert_eq!(r["source"], "rule", "{t}: {r}");
    }
    // Scored off the request path: wait for the counts to arrive.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = get(server.admin, "/metrics").unwrap().text();
        let scored = metric_sum(&text, "kefu_model_shadow_total", "");
        if scored as usize == texts.len() {
            break;
        }
        assert!(Instant::now() < deadline, "shadow scores: {scored}\n{text}");
        thread::sleep(Duration::from_millis(20));
    }
}

/// A stand-in for the shop's bot: answers every POST with a reply naming the intent header
/// it got, on kept-alive connections; counts the requests.
fn start_bot(reply_extra: &'static str) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let asked = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&asked);
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let count = Arc::clone(&count);
            thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut stream = stream;
                loop {
                    let (mut len, mut intent) = (0usize, String::new());
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    loop {
                        let mut h = String::new();
                        if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                            break;
                        }
                        let lower = h.to_ascii_lowercase();
                        if let Some(v) = lower.strip_prefix("content-length:") {
                            len = v.trim().parse().unwrap_or(0);
                        }
                        if let Some(v) = lower.strip_prefix("x-kefu-intent:") {
                            intent = v.trim().to_owned();
                        }
                    }
                    let mut body = vec![0; len];
                    if reader.read_exact(&mut body).is_err() {
                        return;
                    }
                    let asked: serde_json::Value = serde_json::from_slice(&body).unwrap();
                    assert_eq!(
                        asked["intent"].as_str().unwrap(),
                        intent,
                        "header and body agree"
                    );
                    count.fetch_add(1, Ordering::Relaxed);
                    let reply =
                        serde_json::json!({"reply": format!("机器人答复({intent}){reply_extra}")})
                            .to_string();
                    let response = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{reply}",
                        reply.len()
                    );
                    if stream.write_all(response.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, asked)
}

#[test]
fn what_the_model_cannot_answer_goes_to_the_answer_upstream_and_its_reply_is_filtered() {
    let (bot, asked) = start_bot("，加微信详聊");
    let conf = Conf::new();
    conf.write(
        "upstreams.yaml",
        &format!(
            "pools:\n  bot:\n    servers: [\"{bot}\"]\nroutes:\n  - {{prefix: /, pool: bot}}\n"
        ),
    );
    // Nothing is sure enough for a template: everything handed on is asked of the bot.
    conf.patch("model.yaml", "threshold: 0.7 ", "threshold: 1.0 ");
    conf.patch(
        "model.yaml",
        "answer_upstream: null",
        "answer_upstream: {pool: bot, path: /v1/answer, timeout: 2s}",
    );
    let server = Server::start(&conf);
    for text in HANDED_ON {
        let v = server.chat("u-bot", text).json();
        assert_eq!(v["source"], "upstream", "{text}: {v}");
        let reply = v["reply"].as_str().unwrap();
        assert!(
            reply.starts_with(&format!("机器人答复({})", v["intent"].as_str().unwrap())),
            "{v}"
        );
        assert!(
            !reply.contains("微信"),
            "the reply filter masks upstream replies too: {reply}"
        );
    }
    assert_eq!(asked.load(Ordering::Relaxed), HANDED_ON.len());
    // A fast-path answer never reaches the bot (a first message: in a dialogue the model
    // stage, which reads the previous turn, decides).
    assert_eq!(
        server.chat("u-bot-first", "亲，我要退款").json()["source"],
        "rule"
    );
    assert_eq!(asked.load(Ordering::Relaxed), HANDED_ON.len());
}

#[test]
fn an_answer_upstream_that_is_down_leaves_the_fallback() {
    // A port nothing listens on.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let conf = Conf::new();
    conf.write(
        "upstreams.yaml",
        &format!("pools:\n  bot:\n    servers: [\"{dead}\"]\n    connect_timeout: 200ms\nroutes:\n  - {{prefix: /, pool: bot}}\n"),
    );
    conf.patch("model.yaml", "threshold: 0.7 ", "threshold: 1.0 ");
    conf.patch(
        "model.yaml",
        "answer_upstream: null",
        "answer_upstream: {pool: bot, path: /v1/answer, timeout: 500ms}",
    );
    let server = Server::start(&conf);
    for text in &HANDED_ON[..3] {
        let r = server.chat("u-nobot", text);
        assert_eq!(r.status, 200, "{}", r.text());
        let v = r.json();
        assert_eq!(v["source"], "fallback", "{text}: {v}");
        assert_eq!(v["reply"], "亲,转人工客服哦~");
    }
    server.assert_metrics(&["kefu_upstream_failures_total{pool=\"bot\"} 3"]);
}

/// Every shipped version that reads the previous turn encodes its manifest's examples to the
/// ids the training pipeline gave them: the server asks the model exactly what it learned.
#[test]
fn shipped_versions_encode_inputs_as_the_training_pipeline_did() {
    use kefu_edge::config::ModelGate;
    use kefu_edge::intent::Intent;
    use kefu_edge::model::{ModelInput, ModelVersion};
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/intent");
    let gate = ModelGate { min_accuracy: 0.0 };
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        let version =
            ModelVersion::open(&path, &name, &gate, 512).unwrap_or_else(|e| panic!("{e}"));
        let Some(format) = &version.manifest.input_format else {
            continue;
        };
        assert!(
            format.examples.len() >= 4,
            "{name}: examples in the manifest"
        );
        assert!(format.examples.iter().any(|e| e.previous.is_some()));
        for e in &format.examples {
            let input = ModelInput {
                text: e.text.clone(),
                previous: e
                    .previous
                    .as_ref()
                    .map(|(i, t)| (i.parse::<Intent>().unwrap(), t.clone())),
            };
            assert_eq!(
                version.encoder.encode(&input).unwrap(),
                e.ids,
                "{name}: {e:?}"
            );
            checked += 1;
        }
    }
    // v1 reads the message alone; once a version with an input format ships, it is checked.
    let conf =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/model.yaml"))
            .unwrap();
    if !conf.contains("active: v1") {
        assert!(
            checked > 0,
            "no version with an input format in {}",
            dir.display()
        );
    }
}

#[test]
fn a_reload_that_changes_runtime_settings_builds_the_version_again() {
    let (_conf, cfg) = shipped_config();
    let stage = ModelStage::start(&cfg.model, BatchMetrics::unregistered()).expect("model loads");
    let first = stage.deployment().expect("serving").active.clone();
    // The same configuration again: the loaded version is kept.
    stage.load(&cfg.model).expect("reload");
    let same = stage.deployment().expect("serving").active.clone();
    assert!(
        Arc::ptr_eq(&first, &same),
        "an unchanged reload rebuilt the version"
    );
    // Only the inference threads and their priority change: new sessions, made with them.
    let mut changed = cfg.model.clone();
    changed.runtime.inference_threads = cfg.model.runtime.inference_threads + 1;
    changed.runtime.inference_nice = (cfg.model.runtime.inference_nice + 1) % 20;
    stage.load(&changed).expect("reload with other threads");
    let rebuilt = stage.deployment().expect("serving").active.clone();
    assert!(
        !Arc::ptr_eq(&first, &rebuilt),
        "runtime settings changed but the old sessions serve"
    );
    assert_eq!(rebuilt.runtime, changed.runtime);
    let p = stage
        .classify_blocking(kefu_edge::model::ModelInput::alone(HANDED_ON[0]))
        .expect("the rebuilt version answers");
    assert!(p.prob > 0.0 && p.prob <= 1.0);
}

#[test]
fn a_missing_onnx_runtime_is_a_clear_error_and_without_the_model_the_rule_path_serves() {
    let conf = Conf::new();
    let text = conf.read("model.yaml");
    let library = text
        .lines()
        .find(|l| l.trim_start().starts_with("library:"))
        .unwrap()
        .to_owned();
    conf.patch(
        "model.yaml",
        &library,
        "  library: /nonexistent/libonnxruntime.so",
    );
    // The server refuses to start, naming the file and the line.
    let mut child = std::process::Command::new(BIN)
        .arg("-c")
        .arg(conf.path())
        .env_remove("ORT_DYLIB_PATH")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("kefu-edge started without ONNX Runtime");
        }
        thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("model.yaml") && err.contains("/nonexistent/libonnxruntime.so"),
        "{err}"
    );
    // With the model stage off the library is not needed, and the rule path serves.
    // (Follow-ups are then read by the follow-up rules alone: dialog.yaml says so or the
    // configuration is refused.)
    conf.patch("model.yaml", "enabled: true", "enabled: false");
    conf.patch(
        "dialog.yaml",
        "model_decides_follow_ups: true",
        "model_decides_follow_ups: false",
    );
    let server = Server::start(&conf);
    let r = server.chat("u-no-ort", "怎么申请退款");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["source"], "rule");
    let r = server.chat("u-no-ort", HANDED_ON[0]);
    assert_eq!(r.status, 200, "{}", r.text());
}
