//! Dialogue state on a real Redis Cluster (3 masters, 3 replicas, started here): one
//! user's keys share a slot, context survives, and a master killed under load loses no
//! turn the server acknowledged (saves wait for a replica), while every request is answered.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::redis_env::RedisCluster;
use common::{Client, Conf, Server, get};

fn cluster_conf(cluster: &RedisCluster) -> Conf {
    let conf = Conf::new();
    let nodes = cluster.urls().join(", ");
    conf.patch("dialog.yaml", "store: memory", "store: cluster");
    conf.patch(
        "dialog.yaml",
        "nodes: [redis://127.0.0.1:7000/, redis://127.0.0.1:7001/, redis://127.0.0.1:7002/]",
        &format!("nodes: [{nodes}]"),
    );
    // Generous timeouts on a loaded test machine (the standalone tests check timeouts; the
    // benchmark measures what WAIT costs).
    let dialog = conf.read("dialog.yaml");
    let (head, tail) = dialog.split_at(dialog.find("cluster:\n").expect("cluster section"));
    conf.write(
        "dialog.yaml",
        &format!(
            "{head}{}",
            tail.replacen("wait_timeout: 20ms", "wait_timeout: 500ms", 1)
                .replacen("command_timeout: 50ms", "command_timeout: 1s", 1)
        ),
    );
    conf
}

/// The server's warnings and its dialogue-store error counters (not rate-limited).
fn warnings(server: &Server) -> String {
    let log = server.log_text();
    let metrics = get(server.admin, "/metrics")
        .map(|r| r.text())
        .unwrap_or_default();
    log.lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .chain(
            metrics
                .lines()
                .filter(|l| l.starts_with("kefu_dialog_store_errors_total")),
        )
        .collect::<Vec<_>>()
        .join("\n")
}

fn state_of(
    conn: &mut redis::cluster::ClusterConnection,
    user: &str,
) -> Option<kefu_edge::dialog::DialogState> {
    let bytes: Option<Vec<u8>> = redis::cmd("GET")
        .arg(format!("kefu:{{{user}}}:state"))
        .query(conn)
        .ok()?;
    kefu_edge::dialog::DialogState::decode(&bytes?).ok()
}

#[test]
fn cluster_keeps_context_and_every_acknowledged_turn_across_a_failover() {
    let mut cluster = RedisCluster::start();
    let conf = cluster_conf(&cluster);
    let server = Server::start(&conf);

    // The server connects to the cluster on first use; wait until it acknowledges turns.
    let deadline = Instant::now() + Duration::from_secs(20);
    while server
        .chat("warm-up", "在吗")
        .header("x-kefu-turn")
        .is_none()
    {
        assert!(
            Instant::now() < deadline,
            "no turn acknowledged:\n{}",
            server.log_text()
        );
        thread::sleep(Duration::from_millis(100));
    }

    // One user's keys: one slot, one node.
    let r = server.chat("c-1", "这件外套大了 能换小一号吗 单号4410298736651207");
    assert_eq!(
        r.header("x-kefu-turn"),
        Some("1"),
        "{:?}\nLOG (warnings):\n{}",
        r.headers,
        warnings(&server)
    );
    let state_key = "kefu:{c-1}:state";
    let latest_key = "kefu:{c-1}:latest";
    let slot = |k: &str| cluster.nodes[0].cli(&["CLUSTER", "KEYSLOT", k]).unwrap();
    assert_eq!(slot(state_key), slot(latest_key));
    let owner = &cluster.nodes[cluster.master_of(state_key)];
    assert_eq!(
        owner.cli(&["EXISTS", state_key, latest_key]).as_deref(),
        Some("2")
    );

    // Context across turns, from the cluster.
    let v = server.chat("c-1", "算了还是直接退了吧").json();
    assert_eq!(v["intent"], "return_goods", "{v}");
    let l = get(server.admin, "/admin/users/c-1/latest?intent=return_goods")
        .unwrap()
        .json();
    assert_eq!(l["order"], "4410298736651207", "{l}");

    // Failover under load: clients run dialogues; one master is killed with SIGKILL.
    let users: Vec<String> = (0..12).map(|i| format!("f-{i}")).collect();
    let victim = cluster.master_of(&format!("kefu:{{{}}}:state", users[0]));
    let stop = Arc::new(AtomicBool::new(false));
    let texts = [
        "我要退款 订单号3821940567128834",
        "那要多久",
        "还是那个单子",
        "物流到哪了",
    ];
    let workers: Vec<_> = users
        .chunks(3)
        .map(|chunk| {
            let chunk = chunk.to_vec();
            let stop = Arc::clone(&stop);
            let addr = server.chat;
            thread::spawn(move || {
                let mut client = Client::connect(addr);
                let mut acked: HashMap<String, u32> = HashMap::new();
                let (mut answered, mut unacked, mut refused) = (0u32, 0u32, 0u32);
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let user = &chunk[i % chunk.len()];
                    let r = match client.chat(user, texts[i % texts.len()]) {
                        Ok(r) => r,
                        Err(_) => {
                            client = Client::connect(addr);
                            refused += 1;
                            continue;
                        }
                    };
                    i += 1;
                    if r.status != 200 {
                        refused += 1;
                        continue;
                    }
                    answered += 1;
                    match r.header("x-kefu-turn").and_then(|t| t.parse::<u32>().ok()) {
                        Some(turn) => {
                            let e = acked.entry(user.clone()).or_default();
                            *e = (*e).max(turn);
                        }
                        None => unacked += 1,
                    }
                }
                (acked, answered, unacked, refused)
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(1500));
    let killed_at = Instant::now();
    cluster.nodes[victim].kill();
    cluster.wait_healthy(Duration::from_secs(30));
    let failover = killed_at.elapsed();
    thread::sleep(Duration::from_millis(1500));
    stop.store(true, Ordering::Relaxed);

    let mut acked: HashMap<String, u32> = HashMap::new();
    let (mut answered, mut unacked, mut refused) = (0, 0, 0);
    for w in workers {
        let (a, n, u, r) = w.join().expect("client thread");
        acked.extend(a);
        answered += n;
        unacked += u;
        refused += r;
    }
    eprintln!(
        "failover in {failover:?}: {answered} answered, {unacked} not acknowledged, {refused} refused"
    );
    assert_eq!(refused, 0, "every request is answered during the failover");
    assert!(
        unacked > 0,
        "the dead master's users were not acknowledged meanwhile"
    );
    let client = redis::cluster::ClusterClient::new(
        cluster
            .nodes
            .iter()
            .filter(|n| n.is_running())
            .map(|n| n.url())
            .collect::<Vec<_>>(),
    )
    .expect("cluster client");
    let mut conn = client.get_connection().expect("cluster connection");
    for (user, turn) in &acked {
        let state = state_of(&mut conn, user).unwrap_or_else(|| panic!("{user}: no state"));
        assert!(
            state.turns >= *turn,
            "{user}: acknowledged turn {turn}, stored {}",
            state.turns
        );
    }
    assert!(acked.len() >= 10, "most users were acknowledged: {acked:?}");

    // The killed node comes back as a replica; its shard is acknowledged again.
    cluster.nodes[victim].restart();
    cluster.wait_healthy(Duration::from_secs(30));
    let deadline = Instant::now() + Duration::from_secs(20);
    while server
        .chat(&users[0], "好的谢谢")
        .header("x-kefu-turn")
        .is_none()
    {
        assert!(
            Instant::now() < deadline,
            "the shard was not acknowledged again"
        );
        thread::sleep(Duration::from_millis(100));
    }
}
