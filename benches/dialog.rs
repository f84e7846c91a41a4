//! Dialogue state: bytes per state for the written dialogues, and load+save latency (one
//! turn's two round trips, as the chat path makes them) on each store.
//!
//! `cargo bench --bench dialog -- [--redis URL] [--cluster URL,URL,...]`
//! (default `--redis redis://127.0.0.1:6379/`; bench/dialog_path.sh starts a cluster and
//! passes it). Keys go under `kefubench:` and are deleted afterwards.

use std::time::{Duration, Instant};

use kefu_edge::config::{ClusterConfig, MemoryStoreConfig, RedisConfig, RedisOptions};
use kefu_edge::dialog::{DialogState, DialogStore, MemoryStore, RedisStore, Slots, Turn};
use kefu_edge::intent::Intent;

const OPS: usize = 5000;
const USERS: usize = 1000;
const TTL: Duration = Duration::from_secs(1800);

fn options(wait_replicas: u32) -> RedisOptions {
    RedisOptions {
        key_prefix: "kefubench:".into(),
        command_timeout: Duration::from_millis(200),
        connect_timeout: Duration::from_millis(500),
        retry_budget: Duration::from_millis(10),
        wait_replicas,
        wait_timeout: Duration::from_millis(100),
    }
}

/// The final state of every dialogue of models/data/dialogues.tsv, encoded.
fn dialogue_states() -> Vec<Vec<u8>> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/models/data/dialogues.tsv");
    let text = std::fs::read_to_string(path).expect("dialogues.tsv");
    let turns = kefu_edge::offline::dialogues::parse(&text).expect("parse");
    let mut out = Vec::new();
    let mut state = DialogState::default();
    let mut current = String::new();
    for (i, t) in turns.iter().enumerate() {
        if t.dialogue != current && i > 0 {
            out.push(state.encode_capped(2048).expect("encode"));
            state = DialogState::default();
        }
        current.clone_from(&t.dialogue);
        let turn = Turn {
            intent: t.intent,
            at: 1_764_000_000 + i as i64,
            text: t.text.clone(),
        };
        state.record(turn, &Slots::extract(&t.text), false, 16);
    }
    out.push(state.encode_capped(2048).expect("encode"));
    out
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

async fn measure(name: &str, store: &dyn DialogStore, encoded: &[u8]) {
    let latest = DialogState::decode(encoded).expect("decode").latest();
    // Warm: connect, and give every user a state.
    for u in 0..USERS {
        let user = format!("bench-{u}");
        if let Err(e) = store.save(&user, encoded, latest.as_ref()).await {
            println!("{name}\tunavailable: {e}");
            return;
        }
    }
    let mut times = Vec::with_capacity(OPS);
    let mut failed = 0;
    let started = Instant::now();
    for i in 0..OPS {
        let user = format!("bench-{}", i % USERS);
        let t = Instant::now();
        let ok = match store.load(&user).await {
            Ok(_) => store.save(&user, encoded, latest.as_ref()).await.is_ok(),
            Err(_) => false,
        };
        times.push(t.elapsed());
        failed += usize::from(!ok);
    }
    let wall = started.elapsed();
    times.sort();
    println!(
        "{name}\tload+save p50 {:.3} ms\tp99 {:.3} ms\tmax {:.3} ms\t{:.0} turns/s (one client)\tfailed {failed}",
        percentile(&times, 0.5).as_secs_f64() * 1e3,
        percentile(&times, 0.99).as_secs_f64() * 1e3,
        times[times.len() - 1].as_secs_f64() * 1e3,
        OPS as f64 / wall.as_secs_f64(),
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let redis_url = arg("--redis").unwrap_or_else(|| "redis://127.0.0.1:6379/".into());
    let cluster = arg("--cluster");

    let states = dialogue_states();
    let mut sizes: Vec<usize> = states.iter().map(Vec::len).collect();
    sizes.sort();
    let mean = sizes.iter().sum::<usize>() as f64 / sizes.len() as f64;
    println!(
        "bytes per state ({} written dialogues, 2-5 turns)\tmean {mean:.0}\tp50 {}\tmax {}",
        sizes.len(),
        sizes[sizes.len() / 2],
        sizes[sizes.len() - 1]
    );
    // A long dialogue: 16 turns (the history kept) of 30-character messages.
    let mut long = DialogState::default();
    for i in 0..40 {
        let turn = Turn {
            intent: Intent::ALL[i % 20],
            at: 1_764_000_000 + i as i64,
            text: "我想问一下这个订单的退款到底什么时候能到账啊已经等了好几天".into(),
        };
        long.record(
            turn,
            &Slots::extract("订单号3821940567128834 黑色XL"),
            false,
            16,
        );
    }
    let long = long.encode_capped(2048).expect("encode");
    println!(
        "bytes per state (40 turns, 16 kept, 30-char texts)\t{}",
        long.len()
    );
    let typical = &states[sizes.len() / 2];

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let memory = MemoryStore::new(&MemoryStoreConfig::default(), TTL);
        measure("memory", &memory, typical).await;
        let redis = |wait| {
            RedisStore::standalone(
                &RedisConfig {
                    url: redis_url.clone(),
                    options: options(wait),
                },
                TTL,
            )
            .expect("redis config")
        };
        measure(&format!("redis {redis_url}"), &redis(0), typical).await;
        if let Some(nodes) = &cluster {
            let nodes: Vec<String> = nodes.split(',').map(str::to_owned).collect();
            for wait in [0, 1] {
                let store = RedisStore::cluster(
                    &ClusterConfig {
                        nodes: nodes.clone(),
                        options: options(wait),
                    },
                    TTL,
                )
                .expect("cluster config");
                measure(&format!("cluster wait_replicas={wait}"), &store, typical).await;
            }
        }
    });
    if let Ok(mut c) = redis::Client::open(redis_url.as_str()).and_then(|c| c.get_connection()) {
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg("kefubench:*")
            .query(&mut c)
            .unwrap_or_default();
        for k in keys {
            let _: redis::RedisResult<()> = redis::cmd("DEL").arg(k).query(&mut c);
        }
    }
}
