//! The model stage on a KServe v2 pool (issue 15): real inference servers (the `kserve`
//! package's ModelServer with the shipped model on ONNX Runtime, `bench/kserve/
//! intent_server.py`) answer as the in-process backend does; the edge starts while its pool
//! is down and uses a server once it passes the version check; a server killed under load
//! costs fallbacks, never a failed request, and the other takes over.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The Python that `scripts/setup.sh --test` gives the kserve package, if it is there.
fn kserve_python() -> Option<PathBuf> {
    let python = root().join("third_party/kserve-venv/bin/python");
    let ok = Command::new(&python)
        .args(["-c", "import kserve, onnxruntime"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        println!(
            "skipped: the kserve package is not installed in third_party/kserve-venv (scripts/setup.sh --test installs it)"
        );
    }
    ok.then_some(python)
}

/// One inference server on a port of its own, killed when dropped.
struct InferenceServer {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl InferenceServer {
    fn start(python: &Path, dir: &Path, port: u16) -> InferenceServer {
        let log = dir.join(format!("kserve-{port}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        let child = Command::new(python)
            .arg(root().join("bench/kserve/intent_server.py"))
            .arg("--model-dir")
            .arg(root().join("models/intent/v2"))
            .args(["--port", &port.to_string()])
            .stdout(Stdio::from(file.try_clone().expect("log clone")))
            .stderr(Stdio::from(file))
            .spawn()
            .expect("start the inference server");
        InferenceServer { child, port, log }
    }

    fn wait_ready(&mut self) {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], self.port));
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if get(addr, "/v2/health/ready").is_ok_and(|r| r.status == 200) {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "inference server exited with {status}:\n{}",
                    self.log_text()
                );
            }
            assert!(Instant::now() < deadline, "not ready:\n{}", self.log_text());
            thread::sleep(Duration::from_millis(100));
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for InferenceServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn use_pool(conf: &Conf, ports: &[u16], binary: bool) {
    let endpoints: Vec<String> = ports.iter().map(|p| format!("'127.0.0.1:{p}'")).collect();
    conf.patch(
        "model.yaml",
        "backend: onnx ",
        &format!(
            "backend: kserve\nkserve: {{endpoints: [{}], timeout: 2s, health_interval: 200ms, binary_tensors: {binary}}}\n#",
            endpoints.join(", ")
        ),
    );
    // Generous on a loaded test machine: what is compared is the answer, not its speed.
    conf.patch("model.yaml", "deadline: 2s", "deadline: 5s");
}

#[test]
fn the_remote_backend_answers_as_the_in_process_one() {
    let Some(python) = kserve_python() else {
        return;
    };
    let local = Conf::new();
    local.patch("model.yaml", "deadline: 2s", "deadline: 5s");
    let remote = Conf::new();
    let port = free_port();
    let mut pool = InferenceServer::start(&python, remote.path(), port);
    pool.wait_ready();
    // The binary tensor extension here, JSON lists in the test below.
    use_pool(&remote, &[port], true);
    let local = Server::start(&local);
    let remote = Server::start(&remote);
    for (i, text) in HANDED_ON.iter().enumerate() {
        let user = format!("u-{i}");
        let (a, b) = (
            local.chat(&user, text).json(),
            remote.chat(&user, text).json(),
        );
        assert_eq!(a["source"], b["source"], "{text}: {a} / {b}");
        assert_eq!(a["intent"], b["intent"], "{text}: {a} / {b}");
        let (pa, pb) = (a["confidence"].as_f64(), b["confidence"].as_f64());
        let close = pa.zip(pb).is_some_and(|(x, y)| (x - y).abs() < 1e-4);
        assert!(close, "{text}: {a} / {b}");
    }
    let metrics = get(remote.admin, "/metrics").unwrap().text();
    let answered = metric_sum(&metrics, "kefu_model_requests_total", "version=\"v2\"");
    assert_eq!(answered as usize, HANDED_ON.len(), "{metrics}");
    let ready =
        format!("kefu_model_remote_ready{{server=\"http://127.0.0.1:{port}\",version=\"v2\"}} 1");
    assert!(metrics.lines().any(|l| l == ready), "{metrics}");
}

#[test]
fn the_pool_may_start_late_and_a_killed_server_costs_fallbacks_not_errors() {
    let Some(python) = kserve_python() else {
        return;
    };
    let conf = Conf::new();
    let ports = [free_port(), free_port()];
    use_pool(&conf, &ports, false);
    // The pool is down: the edge starts anyway and hands the model's messages over.
    let server = Arc::new(Server::start(&conf));
    let r = server.chat("u-early", HANDED_ON[0]).json();
    assert_eq!(r["handoff_reason"], "model_down", "{r}");

    let mut first = InferenceServer::start(&python, conf.path(), ports[0]);
    let mut second = InferenceServer::start(&python, conf.path(), ports[1]);
    first.wait_ready();
    second.wait_ready();
    let deadline = Instant::now() + Duration::from_secs(20);
    while server.chat("u-late", HANDED_ON[1]).json()["source"] != "model" {
        assert!(Instant::now() < deadline, "{}", server.log_text());
        thread::sleep(Duration::from_millis(100));
    }

    let stop = Arc::new(AtomicBool::new(false));
    let by_model = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..4)
        .map(|c| {
            let (server, stop) = (Arc::clone(&server), Arc::clone(&stop));
            let (by_model, failed) = (Arc::clone(&by_model), Arc::clone(&failed));
            thread::spawn(move || {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let r = server.chat(&format!("user-{c}-{i}"), HANDED_ON[i % HANDED_ON.len()]);
                    let j = r.json();
                    let answered = j["reply"].as_str().is_some_and(|s| !s.is_empty());
                    if r.status != 200 || !answered {
                        failed.fetch_add(1, Ordering::Relaxed);
                    } else if j["source"] == "model" {
                        by_model.fetch_add(1, Ordering::Relaxed);
                    }
                    i += 1;
                }
            })
        })
        .collect();
    let wait_model_answers = |more: usize| {
        let target = by_model.load(Ordering::Relaxed) + more;
        let deadline = Instant::now() + Duration::from_secs(60);
        while by_model.load(Ordering::Relaxed) < target {
            assert!(Instant::now() < deadline, "{}", server.log_text());
            thread::sleep(Duration::from_millis(20));
        }
    };
    wait_model_answers(40);
    first.kill();
    // The second server takes over: the model keeps answering.
    wait_model_answers(40);
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().expect("client");
    }
    assert_eq!(failed.load(Ordering::Relaxed), 0, "failed requests");
    let log = server.log_text();
    assert!(log.contains("not ready"), "{log}");
    assert_eq!(
        get(server.admin, "/healthz").unwrap().status,
        200,
        "still up"
    );
    drop(second);
}
