//! The chat API end to end: rule hits for every fast intent, fallback, input errors, the
//! reply filter and campaign windows, against the real binary on real sockets.

mod common;

use std::time::Duration;

use common::*;

#[test]
fn every_fast_intent_is_answered_from_the_rule_cache() {
    let conf = Conf::new();
    let server = Server::start(&conf);
    let samples = tsv("tests/data/intent_samples.tsv");
    let mut seen = std::collections::BTreeSet::new();
    // One user per message: a message alone (in a dialogue the model stage decides).
    for (i, (text, want)) in samples.iter().enumerate() {
        let r = server.chat(&format!("u-intents-{i}"), text);
        assert_eq!(r.status, 200, "{text}: {}", r.text());
        let v = r.json();
        if want == "fallback" {
            // Nothing in the rules fits; the model stage may still know it, or it carries
            // no request (an acknowledgement: kept open, not handed on).
            let acknowledged = v["intent"] == "thanks_bye" && v["handoff"] == false;
            assert!(
                v["source"] == "model" || v["source"] == "fallback" || acknowledged,
                "{text}: {v}"
            );
            continue;
        }
        assert!(v["trace_id"].as_str().is_some_and(|s| s.len() == 16), "{v}");
        if v["source"] != "rule" {
            // Below its threshold: the model stage answers, or the fallback.
            assert!(
                v["source"] == "model" || v["source"] == "fallback",
                "{text}: {v}"
            );
            assert!(v["reply"].as_str().is_some_and(|s| !s.is_empty()), "{v}");
            continue;
        }
        assert_eq!(v["intent"], want.as_str(), "{text}: {v}");
        // 1 for an operator keyword rule, the router's probability otherwise.
        assert!(
            v["confidence"]
                .as_f64()
                .is_some_and(|c| c > 0.0 && c <= 1.0),
            "{v}"
        );
        assert!(v["reply"].as_str().is_some_and(|s| s.contains('亲')), "{v}");
        seen.insert(want.clone());
    }
    assert_eq!(
        seen.len(),
        20,
        "one sentence per fast intent at least: {seen:?}"
    );
}

#[test]
fn a_person_takes_over_only_when_needed_and_the_answer_says_so() {
    let conf = Conf::new();
    // Nothing the model says is sure enough: a hand-off, with the fallback text.
    conf.patch("model.yaml", "threshold: 0.7 ", "threshold: 1.0 ");
    let server = Server::start(&conf);
    let v = server.chat("u1", "这个东西到底能不能用啊我也说不清").json();
    assert_eq!(v["reply"], "亲,转人工客服哦~", "{v}");
    assert_eq!(v["source"], "fallback");
    assert_eq!(v["handoff"], true);
    assert_eq!(v["handoff_reason"], "low_confidence");
    // An explicit request for a person: the intent's own reply, and the hand-off.
    let v = server.chat("u2", "转人工").json();
    assert_eq!(
        (&v["intent"], &v["handoff"]),
        (&"human_agent".into(), &true.into()),
        "{v}"
    );
    assert_eq!(v["handoff_reason"], "policy");
    assert_ne!(v["reply"], "亲,转人工客服哦~");
    // An acknowledgement after that stays with the person.
    let v = server.chat("u2", "好的").json();
    assert_eq!(
        (&v["handoff"], &v["handoff_reason"]),
        (&true.into(), &"with_person".into()),
        "{v}"
    );
    // A rule answer is not a hand-off; an acknowledgement after it keeps the chat open,
    // a closing closes it; neither is handed on.
    let v = server.chat("u3", "亲，我要退款").json();
    assert_eq!(
        (&v["source"], &v["handoff"]),
        (&"rule".into(), &false.into()),
        "{v}"
    );
    let v = server.chat("u3", "好的").json();
    assert_eq!(v["handoff"], false, "{v}");
    assert_eq!(v["intent"], "thanks_bye");
    assert!(v["reply"].as_str().unwrap().contains("还有其他"), "{v}");
    let v = server.chat("u3", "没有了 谢谢").json();
    assert_eq!(v["handoff"], false, "{v}");
    assert!(v["reply"].as_str().unwrap().contains("不客气"), "{v}");
    // A card alone is asked back about, with its order number.
    let v = server.chat("u4", "订单号：4410298736651207").json();
    assert_eq!(v["handoff"], false, "{v}");
    assert!(
        v["reply"].as_str().unwrap().contains("4410298736651207"),
        "{v}"
    );
    // Hand-offs are counted by reason.
    let metrics = get(server.admin, "/metrics").unwrap().text();
    for reason in ["low_confidence", "policy", "with_person"] {
        let label = format!("reason=\"{reason}\"");
        assert!(
            metric_sum(&metrics, "kefu_chat_handoffs_total", &label) >= 1,
            "{reason}"
        );
    }
}

#[test]
fn bad_input_gets_a_json_4xx_naming_the_problem() {
    let conf = Conf::new();
    let server = Server::start(&conf);
    let addr = server.chat;
    let check = |r: Response, status: u16, code: &str, needle: &str| {
        assert_eq!(r.status, status, "{}", r.text());
        assert_eq!(r.header("content-type"), Some("application/json"));
        let v = r.json();
        assert_eq!(v["error"]["code"], code, "{v}");
        let message = v["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(needle), "{message:?} lacks {needle:?}");
    };
    check(
        post(addr, "/v1/chat", "", b"{\"user_id\":\"u\",").unwrap(),
        400,
        "malformed_json",
        "EOF",
    );
    check(
        post(addr, "/v1/chat", "", b"not json").unwrap(),
        400,
        "malformed_json",
        "expected",
    );
    check(
        post(
            addr,
            "/v1/chat",
            "",
            b"{\"user_id\":\"u\",\"text\":\"\xe9\x80\x80\xff\"}",
        )
        .unwrap(),
        400,
        "invalid_utf8",
        "UTF-8",
    );
    check(
        post(addr, "/v1/chat", "", br#"{"text":"hi"}"#).unwrap(),
        400,
        "invalid_field",
        "`user_id` is missing",
    );
    check(
        post(addr, "/v1/chat", "", br#"{"user_id":"u"}"#).unwrap(),
        400,
        "invalid_field",
        "`text` is missing",
    );
    check(
        post(addr, "/v1/chat", "", br#"{"user_id":"u","text":42}"#).unwrap(),
        400,
        "invalid_field",
        "`text` must be a string",
    );
    check(
        post(addr, "/v1/chat", "", br#"{"user_id":["u"],"text":"x"}"#).unwrap(),
        400,
        "invalid_field",
        "`user_id` must be a string",
    );
    let long = "退".repeat(501);
    check(
        post(addr, "/v1/chat", "", &chat_body("u", &long)).unwrap(),
        400,
        "invalid_field",
        "longer than 500 characters",
    );
    assert_eq!(
        post(addr, "/v1/chat", "", &chat_body("u", &"退".repeat(500)))
            .unwrap()
            .status,
        200
    );

    // 413: declared too large, and too large without a declared length (chunked).
    let big = chat_body("u", &"a".repeat(17 * 1024));
    check(
        post(addr, "/v1/chat", "", &big).unwrap(),
        413,
        "body_too_large",
        "16384",
    );
    let mut chunked = format!("{:x}\r\n", big.len()).into_bytes();
    chunked.extend_from_slice(&big);
    chunked.extend_from_slice(b"\r\n0\r\n\r\n");
    let r = request(
        addr,
        &format!("POST /v1/chat HTTP/1.1\nHost: t\nUser-Agent: {UA}\nTransfer-Encoding: chunked\nConnection: close\n"),
        &chunked,
    )
    .unwrap();
    check(r, 413, "body_too_large", "16384");

    // A client that asks before sending (curl does for bodies over 1 KiB) gets 100 Continue.
    let body = chat_body("u", &format!("我要退款{}", "啊".repeat(400)));
    assert!(body.len() > 1024);
    let r = post(addr, "/v1/chat", "Expect: 100-continue\n", &body).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());

    let r = get(addr, "/v1/chat").unwrap();
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("POST"));

    // The process is still fine and counted every refusal.
    assert_eq!(server.chat("u", "我要退款").status, 200);
    server.assert_metrics(&[
        r#"kefu_chat_bad_requests_total{code="invalid_field"} 5"#,
        r#"kefu_chat_bad_requests_total{code="body_too_large"} 2"#,
    ]);
}

#[test]
fn replies_are_masked_but_whitelisted_words_kept() {
    let conf = Conf::new();
    // An operator template that (wrongly) contains diversion and absolute-claim words, next
    // to ordinary shop words that contain sensitive ones.
    conf.set_replies(
        "coupon",
        &["亲，这款爆款杀菌喷雾全网最低价，领券加微信 ＶＸ：abc123 秒杀~{campaign}"],
    );
    let server = Server::start(&conf);
    let v = server.chat("u1", "优惠券怎么领").json();
    assert_eq!(v["intent"], "coupon", "{v}");
    let reply = v["reply"].as_str().unwrap();
    assert!(
        reply.contains("爆款杀菌"),
        "whitelisted words kept: {reply}"
    );
    assert!(reply.contains("秒杀"), "{reply}");
    assert!(
        !reply.contains("加微信") && !reply.contains("ＶＸ"),
        "diversion masked: {reply}"
    );
    assert!(!reply.contains("最低价"), "absolute claim masked: {reply}");
    assert!(reply.contains("***"), "{reply}");
    server.assert_metrics(&["kefu_post_replies_masked_total 1"]);
}

fn campaign_yaml(start: &str, end: &str) -> String {
    format!(
        "sensitive:\n  words_file: words/sensitive.txt\n  whitelist_file: words/whitelist.txt\ncampaigns:\n  - name: test\n    text: \"【限时】满300减40，\"\n    start: {start}\n    end: {end}\n"
    )
}

#[test]
fn campaign_text_follows_its_window() {
    let now = jiff::Timestamp::now();
    let hour = jiff::SignedDuration::from_hours(1);
    let conf = Conf::new();
    // Open now.
    conf.write(
        "post.yaml",
        &campaign_yaml(&(now - hour).to_string(), &(now + hour).to_string()),
    );
    let server = Server::start(&conf);
    let reply = server.chat("u1", "优惠券怎么领").json()["reply"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(reply.contains("【限时】满300减40，"), "{reply}");
    drop(server);

    // Closed (in the past), then one that opens while the server runs.
    let conf = Conf::new();
    conf.write(
        "post.yaml",
        &campaign_yaml(&(now - hour * 2).to_string(), &(now - hour).to_string()),
    );
    let server = Server::start(&conf);
    let reply = server.chat("u1", "优惠券怎么领").json()["reply"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(!reply.contains("【限时】"), "{reply}");
    drop(server);

    let conf = Conf::new();
    // A whole second: windows are compared in seconds. Far enough ahead for a server start
    // (model load and warm-up) on a loaded machine.
    let opens = jiff::Timestamp::from_second(jiff::Timestamp::now().as_second() + 8).unwrap();
    conf.write(
        "post.yaml",
        &campaign_yaml(&opens.to_string(), &(opens + hour).to_string()),
    );
    let server = Server::start(&conf);
    let before = server.chat("u1", "优惠券怎么领").json();
    assert!(
        jiff::Timestamp::now() < opens,
        "test too slow to observe the closed window"
    );
    assert!(
        !before["reply"].as_str().unwrap().contains("【限时】"),
        "{before}"
    );
    while jiff::Timestamp::now() < opens {
        std::thread::sleep(Duration::from_millis(100));
    }
    let after = server.chat("u1", "优惠券怎么领").json();
    assert!(
        after["reply"].as_str().unwrap().contains("【限时】"),
        "{after}"
    );
}
