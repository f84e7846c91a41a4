//! Redis for tests: the shared server on 127.0.0.1:6379 (keys under a per-run prefix,
//! deleted afterwards), own `redis-server` processes on free ports, and a real
//! 3-master/3-replica Redis Cluster. Every process started here is killed on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::free_port;

pub const SHARED_URL: &str = "redis://127.0.0.1:6379/";

/// A key prefix of its own for one test of one run.
pub fn unique_prefix(test: &str) -> String {
    format!("kefutest:{}:{test}:", std::process::id())
}

/// Delete every key under `prefix` on the shared Redis.
pub fn delete_prefix(prefix: &str) {
    let Ok(mut c) = redis::Client::open(SHARED_URL).and_then(|c| c.get_connection()) else {
        return;
    };
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query(&mut c)
        .unwrap_or_default();
    for k in keys {
        let _: redis::RedisResult<()> = redis::cmd("DEL").arg(k).query(&mut c);
    }
}

/// One `redis-server` process on its own port, in its own directory.
pub struct RedisProcess {
    pub port: u16,
    dir: PathBuf,
    extra: Vec<String>,
    child: Option<Child>,
}

impl RedisProcess {
    pub fn start(dir: &Path, extra: &[&str]) -> RedisProcess {
        let port = free_port();
        let dir = dir.join(format!("redis-{port}"));
        std::fs::create_dir_all(&dir).expect("redis dir");
        let mut p = RedisProcess {
            port,
            dir,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            child: None,
        };
        p.restart();
        p
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Start (again) on the same port.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let mut cmd = Command::new("redis-server");
        cmd.arg("--port")
            .arg(self.port.to_string())
            .arg("--bind")
            .arg("127.0.0.1")
            .arg("--save")
            .arg("")
            .arg("--appendonly")
            .arg("no")
            .arg("--dir")
            .arg(&self.dir)
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        self.child = Some(
            cmd.spawn()
                .expect("start redis-server (apt-get install redis-server)"),
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.cli(&["PING"]).as_deref() != Some("PONG") {
            assert!(
                Instant::now() < deadline,
                "redis-server :{} did not start",
                self.port
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Freeze the process (SIGSTOP): connections stay open, nothing is answered.
    pub fn pause(&self) {
        self.signal("STOP");
    }

    pub fn resume(&self) {
        self.signal("CONT");
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("running").id();
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &pid.to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -{sig} {pid}");
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// `redis-cli -p <port> args…`, its output trimmed (None if it failed).
    pub fn cli(&self, args: &[&str]) -> Option<String> {
        cli(self.port, args)
    }
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn cli(port: u16, args: &[&str]) -> Option<String> {
    let out = Command::new("redis-cli")
        .arg("-p")
        .arg(port.to_string())
        .args(args)
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// `redis-cli -p <port>` fed `commands` on stdin (one connection), its output.
fn cli_stdin(port: u16, commands: &str) -> String {
    use std::io::Write;
    let Ok(mut child) = Command::new("redis-cli")
        .arg("-p")
        .arg(port.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
    else {
        return String::new();
    };
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(commands.as_bytes());
    }
    child
        .wait_with_output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// A Redis Cluster of three masters with one replica each, on loopback.
pub struct RedisCluster {
    pub nodes: Vec<RedisProcess>,
    _dir: tempfile::TempDir,
}

impl RedisCluster {
    pub fn start() -> RedisCluster {
        let dir = tempfile::tempdir().expect("tempdir");
        // A replica must finish its first sync before its master may be killed (NOTES.md):
        // no diskless-sync delay, and the test waits for every link to be up.
        // The bus port is chosen too: by default it is the port + 10000, which can fall in
        // the kernel's ephemeral range and be taken.
        let nodes: Vec<RedisProcess> = (0..6)
            .map(|_| {
                let bus = free_port().to_string();
                RedisProcess::start(
                    dir.path(),
                    &[
                        "--cluster-enabled",
                        "yes",
                        "--cluster-port",
                        &bus,
                        "--cluster-node-timeout",
                        "2000",
                        "--repl-diskless-sync-delay",
                        "0",
                    ],
                )
            })
            .collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let mut args = vec!["--cluster", "create"];
        args.extend(addrs.iter().map(String::as_str));
        args.extend(["--cluster-replicas", "1", "--cluster-yes"]);
        let created = cli(nodes[0].port, &args);
        assert!(created.is_some(), "redis-cli --cluster create failed");
        let cluster = RedisCluster { nodes, _dir: dir };
        cluster.wait_healthy(Duration::from_secs(30));
        cluster.wait_writes_replicated(Duration::from_secs(30));
        cluster
    }

    /// Seed URLs for the server's `cluster.nodes`.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.url()).collect()
    }

    /// Until every running node says `cluster_state:ok` and every running replica's link to
    /// its master is up.
    pub fn wait_healthy(&self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let ok = self.nodes.iter().filter(|n| n.is_running()).all(|n| {
                let state = n.cli(&["CLUSTER", "INFO"]).unwrap_or_default();
                let repl = n.cli(&["INFO", "replication"]).unwrap_or_default();
                state.contains("cluster_state:ok")
                    && (!repl.contains("role:slave") || repl.contains("master_link_status:up"))
            });
            if ok {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "cluster not healthy in {within:?}"
            );
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Until a write on every master is acknowledged by a replica (`WAIT 1`). A replica
    /// reported `online` just after its first sync may not acknowledge yet (seen here:
    /// `WAIT 1 500` answering 0), which a test must not mistake for lost replication.
    pub fn wait_writes_replicated(&self, within: Duration) {
        let deadline = Instant::now() + within;
        for n in self.nodes.iter().filter(|n| n.is_running()) {
            if !n.cli(&["ROLE"]).unwrap_or_default().starts_with("master") {
                continue;
            }
            // A key of a slot this master holds.
            let key = (0..10_000)
                .map(|i| format!("ready:{{{i}}}"))
                .find(|k| {
                    n.cli(&["CLUSTER", "KEYSLOT", k])
                        .and_then(|s| s.parse::<u16>().ok())
                        .is_some_and(|slot| owns_slot(n, slot))
                })
                .expect("a key of this master");
            loop {
                let out = cli_stdin(n.port, &format!("SET {key} 1\nWAIT 1 200\n"));
                if out.lines().nth(1).map(str::trim) == Some("1") {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "writes on :{} not replicated",
                    n.port
                );
                thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// The index of the running master that serves `key`.
    pub fn master_of(&self, key: &str) -> usize {
        let slot: u16 = self.nodes[0]
            .cli(&["CLUSTER", "KEYSLOT", key])
            .and_then(|s| s.parse().ok())
            .expect("keyslot");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            for (i, n) in self
                .nodes
                .iter()
                .enumerate()
                .filter(|(_, n)| n.is_running())
            {
                let role = n.cli(&["ROLE"]).unwrap_or_default();
                if !role.starts_with("master") {
                    continue;
                }
                let owns = owns_slot(n, slot);
                if owns {
                    return i;
                }
            }
            assert!(Instant::now() < deadline, "no master serves slot {slot}");
            thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Whether `node` (a master) holds `slot`, from its own `CLUSTER NODES` line ("myself").
fn owns_slot(node: &RedisProcess, slot: u16) -> bool {
    let nodes = node.cli(&["CLUSTER", "NODES"]).unwrap_or_default();
    let Some(me) = nodes.lines().find(|l| l.contains("myself")) else {
        return false;
    };
    me.split_whitespace().skip(8).any(|range| {
        let mut it = range.splitn(2, '-');
        let lo: u16 = it.next().and_then(|s| s.parse().ok()).unwrap_or(u16::MAX);
        let hi: u16 = it.next().and_then(|s| s.parse().ok()).unwrap_or(lo);
        (lo..=hi).contains(&slot)
    })
}
