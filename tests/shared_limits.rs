//! Shared token buckets with real processes: kefu-edge and a real nginx running the
//! OpenResty module (`lua-compat/demo/run.sh`) on one Redis, three kefu-edge nodes, a Redis
//! Cluster, and Redis killed and frozen under a request loop.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::redis_env::{RedisCluster, RedisProcess};
use common::{Conf, Response, Server, assert_rate_limited, chat, free_port, get, metric_sum};

/// The quotas of every test here: a user may send 10 requests, then one a minute, so
/// "burst ± one refill" is exact within a test's run time.
const USER_BURST: u32 = 10;

/// `timeout`: the counting tests give Redis 200 ms, so a loaded machine does not turn a
/// check into a local fallback; the failure test runs the product's default of 2 ms.
fn limits_with(shared: &str, timeout: &str) -> String {
    format!(
        "global: {{rate: 100000r/s, burst: 100000}}\n\
         per_ip: {{rate: 100000r/s, burst: 100000, shared: true}}\n\
         per_user: {{rate: 1r/m, burst: {USER_BURST}, shared: true}}\n\
         shared:\n{shared}  timeout: {timeout}\n  nodes: 3\n  breaker: {{failures: 2, open_for: 300ms}}\n"
    )
}

fn limits(shared: &str) -> String {
    limits_with(shared, "200ms")
}

fn conf_with(shared: &str) -> Conf {
    let conf = Conf::new();
    conf.write("limits.yaml", &limits(shared));
    conf
}

/// The server connects to Redis on first use: until then its shared buckets answer from
/// the local fallback. Wait until Redis answers (users `warm-*` are not counted).
fn wait_connected(server: &Server) {
    let deadline = Instant::now() + Duration::from_secs(20);
    for i in 0.. {
        server.chat(&format!("warm-{i}"), "你好");
        let text = get(server.admin, "/metrics").expect("metrics").text();
        if metric_sum(&text, "kefu_limits_shared_checks_total", "") > 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "never connected to Redis:\n{}",
            server.log_text()
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// Send `n` chat requests for `user`, round robin over `tiers`; the statuses.
fn statuses(tiers: &[SocketAddr], user: &str, n: usize) -> Vec<Response> {
    (0..n)
        .map(|i| chat(tiers[i % tiers.len()], user, "怎么退款"))
        .collect()
}

fn assert_burst_then_refused(answers: &[Response], tiers: usize) {
    let codes: Vec<u16> = answers.iter().map(|r| r.status).collect();
    let admitted = codes.iter().filter(|&&c| c == 200).count();
    assert_eq!(admitted, USER_BURST as usize, "{codes:?}");
    assert!(
        codes[..USER_BURST as usize].iter().all(|&c| c == 200),
        "the first {USER_BURST} are admitted: {codes:?}"
    );
    // Every tier answers 429 with Retry-After and the same JSON error after that.
    answers[answers.len() - tiers..]
        .iter()
        .for_each(assert_rate_limited);
}

/// The demo's files in a scratch copy whose limits.yaml has this test's quotas.
struct OpenResty {
    child: Child,
    pub addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl OpenResty {
    fn start(redis_url: &str) -> Option<OpenResty> {
        if !Path::new("/usr/lib/nginx/modules/ngx_http_lua_module.so").exists() {
            eprintln!(
                "skipped: nginx's Lua module is not installed (scripts/setup.sh --test installs it)"
            );
            return None;
        }
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("lua-compat");
        let dir = tempfile::tempdir().expect("tempdir");
        let demo = dir.path().join("demo");
        std::fs::create_dir_all(demo.join("conf")).expect("mkdir");
        for f in ["gcra.lua", "kefu_limit.lua"] {
            std::fs::copy(root.join(f), dir.path().join(f)).expect("copy");
        }
        for f in ["run.sh", "nginx.conf"] {
            std::fs::copy(root.join("demo").join(f), demo.join(f)).expect("copy");
        }
        std::fs::write(demo.join("conf/limits.yaml"), limits("")).expect("limits");
        let port = free_port();
        let child = Command::new(demo.join("run.sh"))
            .arg(port.to_string())
            .arg(redis_url.trim_end_matches('/'))
            .env("REDIS_TIMEOUT_MS", "200")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run.sh");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "nginx did not start on {addr}");
            thread::sleep(Duration::from_millis(50));
        }
        Some(OpenResty {
            child,
            addr,
            _dir: dir,
        })
    }
}

impl Drop for OpenResty {
    fn drop(&mut self) {
        // run.sh stops nginx on SIGTERM.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

#[test]
fn one_bucket_for_a_user_across_openresty_and_kefu_edge() {
    let dir = tempfile::tempdir().expect("tempdir");
    let redis = RedisProcess::start(dir.path(), &[]);
    let Some(nginx) = OpenResty::start(&redis.url()) else {
        return;
    };
    let conf = conf_with(&format!("  redis: {}\n", redis.url()));
    let server = Server::start(&conf);
    wait_connected(&server);
    let answers = statuses(&[server.chat, nginx.addr], "alternating", 16);
    assert_burst_then_refused(&answers, 2);
    // The OpenResty tier let its requests through to its stub.
    assert_eq!(answers[1].json()["source"], "openresty");
}

#[test]
fn one_bucket_for_a_user_across_three_nodes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let redis = RedisProcess::start(dir.path(), &[]);
    let shared = format!("  redis: {}\n", redis.url());
    let confs: Vec<Conf> = (0..3).map(|_| conf_with(&shared)).collect();
    let servers: Vec<Server> = confs.iter().map(Server::start).collect();
    servers.iter().for_each(wait_connected);
    let tiers: Vec<SocketAddr> = servers.iter().map(|s| s.chat).collect();
    assert_burst_then_refused(&statuses(&tiers, "round-robin", 16), 3);
}

#[test]
fn one_bucket_for_a_user_on_a_redis_cluster() {
    let cluster = RedisCluster::start();
    let nodes = cluster
        .urls()
        .iter()
        .map(|u| format!("'{u}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let shared = format!("  cluster: [{nodes}]\n");
    let confs: Vec<Conf> = (0..2).map(|_| conf_with(&shared)).collect();
    let servers: Vec<Server> = confs.iter().map(Server::start).collect();
    servers.iter().for_each(wait_connected);
    let tiers: Vec<SocketAddr> = servers.iter().map(|s| s.chat).collect();
    assert_burst_then_refused(&statuses(&tiers, "clustered", 14), 2);
}

/// Requests through a Redis outage: (status, seconds) of each.
fn request_loop(server: &Server, user: &str, for_how_long: Duration) -> Vec<(u16, f64)> {
    let end = Instant::now() + for_how_long;
    let mut out = Vec::new();
    let mut i = 0;
    while Instant::now() < end {
        // Fresh users: their buckets are far from empty, so every answer should be 200.
        let started = Instant::now();
        let r = chat(server.chat, &format!("{user}-{i}"), "怎么退款");
        out.push((r.status, started.elapsed().as_secs_f64()));
        i += 1;
    }
    out
}

fn assert_all_answered(phase: &str, answers: &[(u16, f64)], baseline_max: f64) {
    assert!(!answers.is_empty());
    let bad: Vec<_> = answers.iter().filter(|(s, _)| *s != 200).collect();
    assert!(bad.is_empty(), "{phase}: failed requests {bad:?}");
    // A request that waited on a dead or frozen Redis without a bound would take the
    // connect timeout or forever; here each check waits at most 2 ms, and with the breaker
    // open none waits at all. 200 ms over the slowest healthy request would be a hang.
    let slow = answers
        .iter()
        .filter(|(_, t)| *t > baseline_max + 0.2)
        .count();
    assert!(slow == 0, "{phase}: {slow} requests hung on Redis");
    let waited = answers
        .iter()
        .filter(|(_, t)| *t > baseline_max + 0.01)
        .count();
    let max = answers.iter().map(|(_, t)| *t).fold(0.0, f64::max);
    eprintln!(
        "{phase}: {} requests, all 200; slowest {:.1} ms (healthy: {:.1} ms); {waited} more than 10 ms over that",
        answers.len(),
        max * 1000.0,
        baseline_max * 1000.0
    );
    assert!(
        waited * 10 <= answers.len().max(30),
        "{phase}: {waited} of {} requests waited for Redis",
        answers.len()
    );
}

#[test]
fn a_dead_or_frozen_redis_costs_no_request_and_shared_limits_come_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut redis = RedisProcess::start(dir.path(), &[]);
    let conf = Conf::new();
    let shared = format!("  redis: {}\n", redis.url());
    conf.write("limits.yaml", &limits_with(&shared, "2ms"));
    let server = Server::start(&conf);
    wait_connected(&server);
    let healthy = request_loop(&server, "healthy", Duration::from_millis(500));
    assert_all_answered("healthy", &healthy, 1.0);
    let baseline = healthy.iter().map(|(_, t)| *t).fold(0.0, f64::max);

    redis.kill();
    let dead = request_loop(&server, "dead", Duration::from_secs(1));
    assert_all_answered("killed", &dead, baseline);
    // Local limits apply meanwhile: this node's share of a user's burst (10 / 3 nodes).
    let local: Vec<u16> = (0..6)
        .map(|_| server.chat("while-dead", "x").status)
        .collect();
    assert_eq!(local.iter().filter(|&&s| s == 200).count(), 3, "{local:?}");
    let m = get(server.admin, "/metrics").expect("metrics").text();
    assert!(metric_sum(&m, "kefu_limits_local_fallbacks_total", "") > 0);

    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(20);
    let before = metric_sum(&m, "kefu_limits_shared_checks_total", "result=\"allowed\"");
    for i in 0.. {
        server.chat(&format!("after-restart-{i}"), "你好");
        let m = get(server.admin, "/metrics").expect("metrics").text();
        if metric_sum(&m, "kefu_limits_shared_checks_total", "result=\"allowed\"") > before {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "shared limits did not come back:\n{m}"
        );
        thread::sleep(Duration::from_millis(50));
    }

    redis.pause();
    let frozen = request_loop(&server, "frozen", Duration::from_secs(1));
    redis.resume();
    assert_all_answered("frozen", &frozen, baseline);
    let deadline = Instant::now() + Duration::from_secs(20);
    for i in 0.. {
        server.chat(&format!("after-resume-{i}"), "你好");
        let m = get(server.admin, "/metrics").expect("metrics").text();
        if m.lines().any(|l| l == "kefu_limits_breaker_state 0") {
            break;
        }
        assert!(Instant::now() < deadline, "breaker did not close:\n{m}");
        thread::sleep(Duration::from_millis(50));
    }
}
