//! The access log through the real binary: one JSON line per request with the client
//! address truncated, the user id hashed, the shopper's text masked (or absent), the
//! answer's source, intent and stage latencies; SIGUSR1 reopens the file after a rename.

mod common;

use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use common::{Conf, Server, post};

fn lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// Wait until the file at `path` holds `n` lines (the writer is asynchronous).
fn wait_lines(path: &Path, n: usize) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = lines(path);
        if got.len() >= n {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "{} lines of {n} in {}",
            got.len(),
            path.display()
        );
        thread::sleep(Duration::from_millis(20));
    }
}

fn conf_with_log(log_text: &str) -> Conf {
    let conf = Conf::new();
    conf.write("user.key", "a-key-for-user-hashes-0123456789\n");
    let server = conf.read("server.yaml");
    conf.write(
        "server.yaml",
        &format!(
            "{server}access_log:\n  path: access.log\n  user_key_file: user.key\n  log_text: {log_text}\n"
        ),
    );
    conf
}

#[test]
fn one_line_per_request_without_personal_data_and_reopened_on_sigusr1() {
    let conf = conf_with_log("masked");
    let server = Server::start(&conf);
    let path = conf.path().join("access.log");

    let r = server.chat(
        "shopper-42",
        "我的快递到哪了 电话13812345678 订单2024112345678",
    );
    assert_eq!(r.status, 200);
    let bad = post(server.chat, "/v1/chat", "", b"{not json").expect("post");
    assert_eq!(bad.status, 400);
    let got = wait_lines(&path, 2);
    // Each line is written when its request is done, which may be after the client has read
    // the answer: find them by status, not by order.
    let by_status = |status: u64| {
        got.iter()
            .find(|l| l["status"] == status)
            .unwrap_or_else(|| panic!("no {status} line in {got:?}"))
    };
    let chat = by_status(200);
    assert_eq!(chat["status"], 200);
    assert_eq!(chat["route"], "chat");
    assert_eq!(chat["client"], "127.0.0.0/24");
    assert_eq!(chat["intent"], "logistics_track", "{chat}");
    assert!(chat["source"].is_string() && chat["confidence"].is_number());
    assert_eq!(chat["trace_id"], r.json()["trace_id"]);
    let user = chat["user"].as_str().expect("user hash");
    assert_eq!(user.len(), 16);
    assert!(!user.contains("shopper"));
    let text = chat["text"].as_str().expect("masked text");
    assert_eq!(text, "我的快递到哪了 电话[phone] 订单[number]");
    for stage in ["total", "load", "answer", "save"] {
        assert!(chat["ms"][stage].as_f64().is_some(), "{stage}: {chat}");
    }
    assert_eq!(
        by_status(400)["error"],
        "malformed_json",
        "{}",
        by_status(400)
    );
    let raw = std::fs::read_to_string(&path).unwrap();
    assert!(!raw.contains("13812345678") && !raw.contains("shopper-42"));

    // logrotate: rename, SIGUSR1, and the next lines go to a new file by the old name.
    let rotated = conf.path().join("access.log.1");
    std::fs::rename(&path, &rotated).unwrap();
    server.signal("USR1");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !path.exists() {
        assert!(Instant::now() < deadline, "access.log not reopened");
        thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(server.chat("shopper-42", "谢谢").status, 200);
    let after = wait_lines(&path, 1);
    assert_eq!(after[0]["user"], user, "same key, same hash");
    assert_eq!(lines(&rotated).len(), 2);
    server.assert_metrics(&["kefu_access_log_dropped_total 0"]);
}

#[test]
fn text_is_never_written_unless_asked_for() {
    let conf = conf_with_log("off");
    let server = Server::start(&conf);
    let path = conf.path().join("access.log");
    assert_eq!(server.chat("u1", "13812345678 退款").status, 200);
    let got = wait_lines(&path, 1);
    assert!(got[0].get("text").is_none(), "{}", got[0]);
    assert!(!std::fs::read_to_string(&path).unwrap().contains("退款"));
}
