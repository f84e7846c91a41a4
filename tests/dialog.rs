//! Multi-turn dialogue state through the real binary: the embedded store, the shared Redis
//! on 127.0.0.1:6379 (keys under a per-run prefix, deleted afterwards), and a Redis of
//! its own that is killed, slowed and brought back.

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::redis_env::{self, RedisProcess};
use common::{Conf, Server, get, metric_sum};

/// Point dialog.yaml at the Redis at `url` with `prefix`.
fn use_redis(conf: &Conf, url: &str, prefix: &str) {
    conf.patch("dialog.yaml", "store: memory", "store: redis");
    conf.patch(
        "dialog.yaml",
        "url: redis://127.0.0.1:6379/",
        &format!("url: {url}"),
    );
    conf.patch(
        "dialog.yaml",
        "key_prefix: \"kefu:\"",
        &format!("key_prefix: \"{prefix}\""),
    );
    // Generous on a loaded test machine: a frozen Redis still times out, a busy one not.
    conf.patch(
        "dialog.yaml",
        "command_timeout: 50ms",
        "command_timeout: 1s",
    );
}

fn turn_of(r: &common::Response) -> Option<u32> {
    r.header("x-kefu-turn").and_then(|v| v.parse().ok())
}

/// The exchange → return dialogue of the issue, and a refund follow-up: context decides,
/// the order is kept, turns are acknowledged and indexed.
fn exchange_then_return(server: &Server, user: &str) {
    let r = server.chat(user, "这件外套大了 能换小一号吗 单号4410298736651207");
    assert_eq!(r.json()["intent"], "exchange_goods", "{}", r.text());
    assert_eq!(turn_of(&r), Some(1), "{:?}", r.headers);
    let r = server.chat(user, "算了还是直接退了吧");
    let v = r.json();
    assert_eq!(v["intent"], "return_goods", "{v}");
    assert_eq!(v["source"], "rule", "{v}");
    assert_eq!(turn_of(&r), Some(2));

    let latest = |intent: &str| {
        get(
            server.admin,
            &format!("/admin/users/{user}/latest?intent={intent}"),
        )
        .expect("latest")
    };
    let l = latest("return_goods");
    assert_eq!(l.status, 200, "{}", l.text());
    let l = l.json();
    assert_eq!(l["order"], "4410298736651207", "the same order: {l}");
    assert_eq!(l["turn"], 2);
    assert_eq!(latest("exchange_goods").json()["turn"], 1);
    assert_eq!(latest("coupon").status, 404);
    assert_eq!(latest("refund").status, 400);
    assert_eq!(latest("refund").json()["error"]["code"], "invalid_intent");
}

#[test]
fn context_changes_answers_in_the_embedded_store() {
    let conf = Conf::new();
    // A template that uses the order slot is chosen once the dialogue has an order.
    conf.set_replies(
        "refund_progress",
        &[
            "亲，退款会原路退回哦~",
            "亲，订单{order}的退款正在处理中，请耐心等待哦~",
        ],
    );
    let server = Server::start(&conf);
    exchange_then_return(&server, "mem-1");

    // Without a dialogue "那要多久" is no refund question; after a refund request it is.
    let alone = server.chat("mem-2", "那要多久").json();
    assert_ne!(alone["intent"], "refund_progress", "{alone}");
    server.chat("mem-3", "我想退款 订单号3821940567128834");
    let after = server.chat("mem-3", "那要多久").json();
    assert_eq!(after["intent"], "refund_progress", "{after}");
    assert!(
        after["reply"]
            .as_str()
            .unwrap()
            .contains("3821940567128834"),
        "the slot template: {after}"
    );
    let metrics = get(server.admin, "/metrics").unwrap().text();
    assert!(
        metric_sum(&metrics, "kefu_dialog_follow_ups_total", "") >= 2,
        "{metrics}"
    );
    assert_eq!(
        metric_sum(&metrics, "kefu_dialog_store_errors_total", ""),
        0
    );

    // A reload that changes the context rules keeps the store and its states.
    conf.patch("dialog.yaml", "within: 10m", "within: 20m");
    let r = common::post(server.admin, "/reload", "", b"").unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        turn_of(&server.chat("mem-3", "好的谢谢")),
        Some(3),
        "the dialogue survived"
    );

    // A user id with braces and slashes stays one user (its hash tag is escaped).
    let odd = "a}b{c";
    server.chat(odd, "我要换货 换大一码");
    assert_eq!(
        server.chat(odd, "不换了 直接退吧").json()["intent"],
        "return_goods"
    );
    let r = get(
        server.admin,
        "/admin/users/a%7Db%7Bc/latest?intent=return_goods",
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn standalone_redis_keeps_hash_tagged_capped_state_with_a_sliding_ttl() {
    let prefix = redis_env::unique_prefix("standalone");
    let conf = Conf::new();
    use_redis(&conf, redis_env::SHARED_URL, &prefix);
    let server = Server::start(&conf);
    exchange_then_return(&server, "r-1");

    let mut c = redis::Client::open(redis_env::SHARED_URL)
        .and_then(|c| c.get_connection())
        .expect("redis on 127.0.0.1:6379");
    let state_key = format!("{prefix}{{r-1}}:state");
    let latest_key = format!("{prefix}{{r-1}}:latest");
    let ttl: i64 = redis::cmd("PTTL").arg(&state_key).query(&mut c).unwrap();
    assert!(ttl > 29 * 60 * 1000 && ttl <= 30 * 60 * 1000, "pttl {ttl}");
    let ttl: i64 = redis::cmd("PTTL").arg(&latest_key).query(&mut c).unwrap();
    assert!(ttl > 29 * 60 * 1000, "index pttl {ttl}");
    // A read refreshes the expiry: shorten it by hand, then one message puts it back.
    let _: () = redis::cmd("PEXPIRE")
        .arg(&state_key)
        .arg(5000)
        .query(&mut c)
        .unwrap();
    server.chat("r-1", "好的谢谢");
    let ttl: i64 = redis::cmd("PTTL").arg(&state_key).query(&mut c).unwrap();
    assert!(ttl > 29 * 60 * 1000, "refreshed pttl {ttl}");

    // A long dialogue stays under 2 KB: the history is trimmed, the turn count is not.
    let long = "我想问一下这个订单的退款到底什么时候能到账啊已经等了好几天了真的很着急";
    let mut last = None;
    for _ in 0..60 {
        last = turn_of(&server.chat("r-long", long));
    }
    assert_eq!(last, Some(60));
    let bytes: Vec<u8> = redis::cmd("GET")
        .arg(format!("{prefix}{{r-long}}:state"))
        .query(&mut c)
        .unwrap();
    assert!(bytes.len() <= 2048, "{} bytes", bytes.len());
    let state = kefu_edge::dialog::DialogState::decode(&bytes).unwrap();
    assert_eq!(state.turns, 60);
    assert!(state.history.len() < 60 && !state.history.is_empty());
    redis_env::delete_prefix(&prefix);
}

#[test]
fn redis_down_or_slow_still_answers_and_the_store_recovers_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let mut redis = RedisProcess::start(dir.path(), &[]);
    let conf = Conf::new();
    use_redis(&conf, &redis.url(), "kefu:");
    let mut server = Server::start(&conf);
    assert_eq!(turn_of(&server.chat("d-1", "我要退款")), Some(1));

    // Down: answered without context, not acknowledged, counted and logged.
    redis.kill();
    for _ in 0..5 {
        let r = server.chat("d-1", "那要多久");
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(turn_of(&r), None, "nothing was saved");
        assert!(r.json()["reply"].as_str().is_some_and(|s| !s.is_empty()));
    }
    let metrics = get(server.admin, "/metrics").unwrap().text();
    let errors = metric_sum(&metrics, "kefu_dialog_store_errors_total", "op=\"load\"");
    assert!(errors >= 5, "{errors}: {metrics}");
    assert!(
        server.log_text().contains("dialogue store (redis): load"),
        "{}",
        server.log_text()
    );

    // Back (empty: it keeps nothing on disk): the store reconnects without a restart.
    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = server.chat("d-2", "我要退款");
        assert_eq!(r.status, 200);
        if turn_of(&r).is_some() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the store did not recover:\n{}",
            server.log_text()
        );
        thread::sleep(Duration::from_millis(100));
    }

    // Slow: a Redis that answers nothing (frozen) costs each request its command timeout.
    redis.pause();
    let r = server.chat("d-3", "我要退款");
    redis.resume();
    assert_eq!(r.status, 200);
    assert_eq!(turn_of(&r), None);
    assert_eq!(
        turn_of(&server.chat("d-3", "我要退款")),
        Some(1),
        "recovered once it answers"
    );
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "the server is still up"
    );
}
