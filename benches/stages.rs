//! Per-stage cost of the rule path, in-process (no sockets): how many nanoseconds each stage
//! adds to a request. `cargo bench --bench stages`. Messages: tests/data/intent_samples.tsv,
//! or the file named by `KEFU_BENCH_MESSAGES` (one message per line, `text<TAB>...` ok).

use std::hint::black_box;
use std::net::IpAddr;
use std::path::Path;
use std::time::Instant;

use kefu_edge::api::{self, Limits};
use kefu_edge::config::Config;
use kefu_edge::limits::LimitMetrics;
use kefu_edge::state::Snapshot;

mod common;

fn messages() -> Vec<String> {
    common::messages("tests/data/intent_samples.tsv")
}

/// Run `f` over the inputs until about 0.5 s has passed; print ns per call.
fn bench<T>(name: &str, inputs: &[T], mut f: impl FnMut(&T)) {
    for x in inputs {
        f(x);
    }
    let start = Instant::now();
    let mut calls = 0u64;
    while start.elapsed().as_millis() < 500 {
        for x in inputs {
            f(x);
        }
        calls += inputs.len() as u64;
    }
    let ns = start.elapsed().as_nanos() as f64 / calls as f64;
    println!("{name:<28} {ns:>9.0} ns/call {:>12.0} calls/s", 1e9 / ns);
}

/// Time every call separately (after a warm-up pass); print p50, p99 and max.
fn latency<T>(name: &str, inputs: &[T], mut f: impl FnMut(&T)) {
    for x in inputs {
        f(x);
    }
    let mut ns: Vec<u64> = Vec::with_capacity(inputs.len() * 200);
    for _ in 0..200 {
        for x in inputs {
            let t = Instant::now();
            f(x);
            ns.push(t.elapsed().as_nanos() as u64);
        }
    }
    ns.sort_unstable();
    let q = |p: f64| ns[((ns.len() - 1) as f64 * p) as usize];
    println!(
        "{name:<28} p50 {:>7} ns  p99 {:>7} ns  max {:>8} ns  ({} calls)",
        q(0.5),
        q(0.99),
        ns[ns.len() - 1],
        ns.len()
    );
}

fn main() {
    let dir = std::env::var("KEFU_BENCH_CONF")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/conf"));
    let config = Config::load(&dir).unwrap_or_else(|e| panic!("{e}"));
    let snap = Snapshot::build(config, 1, None, &LimitMetrics::unregistered()).expect("snapshot");
    let msgs = messages();
    let bodies: Vec<Vec<u8>> = msgs
        .iter()
        .enumerate()
        .map(|(i, m)| {
            serde_json::to_vec(&serde_json::json!({"user_id": format!("user-{i}"), "text": m}))
                .unwrap()
        })
        .collect();
    let limits = Limits {
        max_text_chars: 500,
        max_user_id_bytes: 128,
    };
    let ip: IpAddr = "198.51.100.7".parse().unwrap();
    println!("{} messages, bench/conf", msgs.len());
    bench("edge: client ip + ua", &msgs, |_| {
        let c = snap.edge.client_addr(black_box(ip), None);
        let _ = black_box(snap.edge.check_ip(c.ip));
        let _ = black_box(
            snap.edge
                .check_user_agent(Some(b"Mozilla/5.0 (iPhone; CPU iPhone OS 17_0)")),
        );
    });
    bench("limits: global + ip + user", &msgs, |m| {
        let _ = black_box(snap.limits.check_client(ip));
        let _ = black_box(snap.limits.check_user(m));
    });
    bench("parse body", &bodies, |b| {
        let _ = black_box(api::parse_chat(b, limits));
    });
    if let Some(router) = snap.pipeline.router() {
        bench("router: classify", &msgs, |m| {
            black_box(router.router.classify(m));
        });
        latency("router: classify latency", &msgs, |m| {
            black_box(router.router.classify(m));
        });
    }
    bench("router: features", &msgs, |m| {
        black_box(kefu_edge::router::features::tokens(m));
    });
    bench("keywords: classify", &msgs, |m| {
        black_box(snap.pipeline.keywords().classify(m));
    });
    bench("pipeline.decide", &msgs, |m| {
        black_box(snap.pipeline.decide(m));
    });
    bench("pipeline.answer", &msgs, |m| {
        black_box(snap.pipeline.answer(m));
    });
    let none = kefu_edge::dialog::Slots::default();
    let alone = kefu_edge::dialog::Context::NONE;
    bench("pipeline.step (as served)", &msgs, |m| {
        black_box(matches!(
            snap.pipeline.step(m, &alone, &none),
            kefu_edge::pipeline::Step::Answered { .. }
        ));
    });
    let answers: Vec<_> = msgs.iter().map(|m| snap.pipeline.answer(m)).collect();
    let post = kefu_edge::post::ReplyFilter::new(&snap.config.post).expect("post");
    bench("post: campaign_now", &msgs, |_| {
        black_box(post.campaign_now());
    });
    bench("post: filter reply (made replies)", &answers, |a| {
        black_box(post.filter(a.reply.text()));
    });
    let trace_ids = api::TraceIds::default();
    bench("trace id", &msgs, |_| {
        black_box(trace_ids.next());
    });
    let trace = trace_ids.next();
    bench("answer json", &answers, |a| {
        black_box(api::answer_json(a, &trace));
    });
    bench("all stages", &bodies, |b| {
        let c = snap.edge.client_addr(ip, None);
        let _ = black_box(snap.edge.check_ip(c.ip));
        let _ = black_box(snap.edge.check_user_agent(Some(b"Mozilla/5.0 (iPhone)")));
        let _ = black_box(snap.limits.check_client(ip));
        if let Ok(req) = api::parse_chat(b, limits) {
            let _ = snap.limits.check_user(&req.user_id);
            // As the server answers a message with no dialogue state (bench/conf).
            if let kefu_edge::pipeline::Step::Answered { answer, .. } =
                snap.pipeline.step(&req.text, &alone, &none)
            {
                black_box(api::answer_json(&answer, &trace_ids.next()));
            }
        }
    });
}
