//! Zero-downtime binary upgrade through the shipped helper (`systemd/kefu-edge-upgrade`): a
//! client loop keeps sending chat requests while a new process takes the listening sockets
//! over (`-u`, SIGQUIT to the old one); every request must be answered, before, during and
//! after the hand-over.

mod common;

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::{BIN, Conf, Server, chat_body, get, post};

const MIN_REQUESTS: usize = 5_000;

#[test]
fn a_client_loop_sees_no_failure_across_a_binary_upgrade() {
    let conf = Conf::new();
    let old = Server::start(&conf);
    let old_pid = old.pid();

    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let client = {
        let (stop, sent, addr) = (Arc::clone(&stop), Arc::clone(&sent), old.chat);
        thread::spawn(move || {
            let mut failures = Vec::new();
            while !stop.load(Ordering::Acquire) || sent.load(Ordering::Acquire) < MIN_REQUESTS {
                let n = sent.fetch_add(1, Ordering::AcqRel);
                let user = format!("u{}", n % 64);
                match post(addr, "/v1/chat", "", &chat_body(&user, "怎么申请退款")) {
                    Ok(r) if r.status == 200 => {}
                    Ok(r) => failures.push(format!("request {n}: status {}", r.status)),
                    Err(e) => failures.push(format!("request {n}: {e}")),
                }
            }
            failures
        })
    };
    // Some traffic on the old process first.
    while sent.load(Ordering::Acquire) < 500 {
        thread::sleep(Duration::from_millis(10));
    }

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/systemd/kefu-edge-upgrade");
    let out = Command::new(script)
        .args(["-c", &conf.path().display().to_string()])
        .args(["-b", BIN, "-p", &old_pid.to_string(), "-t", "60"])
        .args([
            "-l",
            &conf.path().join("upgraded.log").display().to_string(),
        ])
        .env("RUST_LOG", "warn")
        .output()
        .expect("run the upgrade script");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let pid_file = conf.path().join("kefu.pid");
    let new_pid: i32 = std::fs::read_to_string(&pid_file)
        .ok()
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or(0);
    // Whatever happens below, the new daemon does not outlive the test.
    let _reaper = Reaper(new_pid);
    assert!(out.status.success(), "upgrade failed: {said}");
    assert!(said.contains(&format!("{old_pid} -> {new_pid}")), "{said}");
    assert_ne!(new_pid, old_pid);

    // The old process is gone: its exit was reaped by the test's Child, which says so.
    let mut old = old;
    let deadline = Instant::now() + Duration::from_secs(30);
    while old.child.try_wait().expect("try_wait").is_none() {
        assert!(Instant::now() < deadline, "the old process did not exit");
        thread::sleep(Duration::from_millis(50));
    }
    // More requests on the new process alone, then stop.
    let after = sent.load(Ordering::Acquire);
    while sent.load(Ordering::Acquire) < after + 500 {
        thread::sleep(Duration::from_millis(10));
    }
    stop.store(true, Ordering::Release);
    let failures = client.join().expect("client thread");
    let total = sent.load(Ordering::Acquire);
    eprintln!(
        "{total} requests across the upgrade, {} failed",
        failures.len()
    );
    assert!(total >= MIN_REQUESTS, "{total} requests");
    assert!(
        failures.is_empty(),
        "{} of {total} requests failed across the upgrade: {:?}",
        failures.len(),
        &failures[..failures.len().min(10)]
    );
    assert_eq!(
        get(conf.admin_addr(), "/healthz").expect("healthz").status,
        200
    );
}

/// Kills the upgraded daemon (not a child of the test) when the test ends.
struct Reaper(i32);

impl Drop for Reaper {
    fn drop(&mut self) {
        if self.0 > 0 {
            let _ = Command::new("kill").arg(self.0.to_string()).status();
        }
    }
}
