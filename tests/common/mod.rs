//! Test harness: a copy of the shipped configuration in a temporary directory, the real
//! binary started on free ports, a small HTTP/1.1 client and a stub upstream.
#![allow(dead_code)]

pub mod redis_env;

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_kefu-edge");
pub const UA: &str = "kefu-edge-tests/1.0";

/// Messages the fast path hands on to the model stage, of several lengths (tests/model.rs
/// checks that it does).
pub const HANDED_ON: &[&str] = &[
    "这个耳机能连电脑用吗",
    "你们家有没有实体店啊",
    "请问这款和上一代有什么区别",
    "充电器是原装的吗",
    "你们是正品吗 有没有授权书",
    "商品页面写的材质是纯棉，但是摸起来不像，能确认一下吗",
    "会员积分怎么兑换",
    "开箱发现说明书是英文的，有中文版吗",
];

/// A port nobody listens on right now. Taken from a counter below the kernel's ephemeral
/// range, so two tests of one run never get the same port and outgoing connections never
/// take it between this check and the server's bind.
pub fn free_port() -> u16 {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let base = 20_000 + (std::process::id() as usize % 500) * 20;
    loop {
        let port = (base + NEXT.fetch_add(1, Ordering::Relaxed)) % 10_000 + 20_000;
        let port = u16::try_from(port).expect("port");
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A configuration directory: the shipped `conf/` copied, with test listeners and limits
/// high enough that only tests about limits see a 429.
pub struct Conf {
    pub dir: tempfile::TempDir,
    pub chat_port: u16,
    pub admin_port: u16,
}

impl Conf {
    pub fn new() -> Conf {
        let dir = tempfile::tempdir().expect("tempdir");
        copy_dir(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("conf"),
            dir.path(),
        );
        let conf = Conf {
            dir,
            chat_port: free_port(),
            admin_port: free_port(),
        };
        conf.write_server(&format!("\"127.0.0.1:{}\"", conf.chat_port));
        // The copy lives elsewhere: point it at the repository's shipped router models.
        let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/router");
        let router = conf.read("router.yaml");
        assert!(router.contains("model: ../models/router/router.bin"));
        conf.write(
            "router.yaml",
            &router.replace("../models/router/", &format!("{}/", models.display())),
        );
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        conf.patch(
            "model.yaml",
            "models_dir: ../models/intent",
            &format!("models_dir: {}/models/intent", root.display()),
        );
        conf.patch(
            "model.yaml",
            "library: ../third_party/",
            &format!("library: {}/third_party/", root.display()),
        );
        // A loaded test machine must not turn the model's answers into fallbacks: the
        // tests of deadlines and shedding set their own.
        conf.patch("model.yaml", "deadline: 200ms", "deadline: 2s");
        conf.patch("model.yaml", "shed_wait: 100ms", "shed_wait: 0s");
        conf.write(
            "limits.yaml",
            "global: {rate: 100000r/s, burst: 100000}\nper_ip: {rate: 100000r/s, burst: 100000}\nper_user: {rate: 100000r/s, burst: 100000}\n",
        );
        conf
    }

    /// Rewrite server.yaml with these chat listeners (a YAML flow list body).
    pub fn write_server(&self, chat_listeners: &str) {
        let dir = self.path().display().to_string();
        self.write(
            "server.yaml",
            &format!(
                "listen:\n  chat: [{chat_listeners}]\n  admin: [\"127.0.0.1:{}\"]\nthreads: 2\nshutdown:\n  grace_period_seconds: 3\n  graceful_shutdown_timeout_seconds: 3\npid_file: {dir}/kefu.pid\nupgrade_sock: {dir}/upgrade.sock\n",
                self.admin_port
            ),
        );
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write(&self, name: &str, text: &str) {
        std::fs::write(self.path().join(name), text).expect("write conf file");
    }

    pub fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.path().join(name)).expect("read conf file")
    }

    /// Replace `from` by `to` in a file; `from` must be there.
    pub fn patch(&self, name: &str, from: &str, to: &str) {
        let text = self.read(name);
        assert!(text.contains(from), "{name} does not contain {from:?}");
        self.write(name, &text.replacen(from, to, 1));
    }

    /// Replace one intent's reply templates in intents.yaml.
    pub fn set_replies(&self, intent: &str, replies: &[&str]) {
        let mut doc: serde_yaml_ng::Value =
            serde_yaml_ng::from_str(&self.read("intents.yaml")).expect("intents.yaml");
        doc["intents"][intent]["replies"] = replies
            .iter()
            .map(|r| serde_yaml_ng::Value::from(*r))
            .collect();
        self.write(
            "intents.yaml",
            &serde_yaml_ng::to_string(&doc).expect("yaml"),
        );
    }

    pub fn chat_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.chat_port))
    }

    pub fn admin_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.admin_port))
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read conf dir") {
        let entry = entry.expect("dir entry");
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// The real binary, running on a [`Conf`]. Stopped (SIGKILL) when dropped.
pub struct Server {
    pub child: Child,
    pub log: PathBuf,
    pub chat: SocketAddr,
    pub admin: SocketAddr,
}

impl Server {
    pub fn start(conf: &Conf) -> Server {
        let log = conf.path().join("server.log");
        let log_file = std::fs::File::create(&log).expect("log file");
        let child = Command::new(BIN)
            .arg("-c")
            .arg(conf.path())
            .env("RUST_LOG", "info")
            .stdout(Stdio::from(log_file.try_clone().expect("log clone")))
            .stderr(Stdio::from(log_file))
            .spawn()
            .expect("start kefu-edge");
        let mut server = Server {
            child,
            log,
            chat: conf.chat_addr(),
            admin: conf.admin_addr(),
        };
        server.wait_ready();
        server
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("kefu-edge exited with {status}:\n{}", self.log_text());
            }
            let admin_up = get(self.admin, "/healthz").is_ok_and(|r| r.status == 200);
            if admin_up && TcpStream::connect(self.chat).is_ok() {
                return;
            }
            thread::sleep(Duration::from_millis(50));
        }
        panic!("kefu-edge did not become ready:\n{}", self.log_text());
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.pid().to_string()])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The admin /healthz document.
    pub fn health(&self) -> serde_json::Value {
        get(self.admin, "/healthz").expect("healthz").json()
    }

    /// Wait until the configuration generation reaches `generation` (or the failed-reload
    /// count reaches `failed`), so a test knows its SIGHUP was processed.
    pub fn wait_reload(&self, done: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let h = self.health();
            if done(&h["config"]) {
                return h;
            }
            assert!(
                Instant::now() < deadline,
                "reload not seen: {h}\n{}",
                self.log_text()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn chat(&self, user_id: &str, text: &str) -> Response {
        chat(self.chat, user_id, text)
    }

    /// Assert that `/metrics` on the admin listener has each of these sample lines.
    pub fn assert_metrics(&self, lines: &[&str]) {
        let text = get(self.admin, "/metrics").expect("metrics").text();
        for line in lines {
            assert!(text.lines().any(|l| l == *line), "no `{line}` in:\n{text}");
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.text()))
    }
}

/// Send one raw request on a new connection (with `Connection: close`) and read the answer.
pub fn request(addr: SocketAddr, raw_head: &str, body: &[u8]) -> std::io::Result<Response> {
    let mut stream = TcpStream::connect(addr)?;
    exchange(&mut stream, raw_head, body)
}

/// Like [`request`], from a chosen local address (for tests of client-address rules).
pub fn request_from(
    local: IpAddr,
    addr: SocketAddr,
    raw_head: &str,
    body: &[u8],
) -> std::io::Result<Response> {
    let mut stream = connect_from(local, addr)?;
    exchange(&mut stream, raw_head, body)
}

/// A connection to `addr` from a chosen local address (127.0.0.2, …: one host, many clients).
pub fn connect_from(local: IpAddr, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let domain = if addr.is_ipv4() {
        socket2::Domain::IPV4
    } else {
        socket2::Domain::IPV6
    };
    let socket = socket2::Socket::new(domain, socket2::Type::STREAM, None)?;
    socket.bind(&SocketAddr::new(local, 0).into())?;
    socket.connect(&addr.into())?;
    Ok(socket.into())
}

/// Send one raw request on an open connection and read the answer.
pub fn exchange(stream: &mut TcpStream, raw_head: &str, body: &[u8]) -> std::io::Result<Response> {
    stream.set_read_timeout(Some(Duration::from_secs(20)))?;
    let mut req = raw_head.replace('\n', "\r\n").into_bytes();
    req.extend_from_slice(b"\r\n");
    req.extend_from_slice(body);
    stream.write_all(&req)?;
    read_response(&mut BufReader::new(stream))
}

/// Read one response (Content-Length, chunked, or until close).
pub fn read_response(reader: &mut impl BufRead) -> std::io::Result<Response> {
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "no status line",
            ));
        }
        // Skip interim responses (100 Continue).
        if line.starts_with("HTTP/1.1 1") {
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h)? == 0 || h.trim().is_empty() {
                    break;
                }
            }
            continue;
        }
        break;
    }
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h)?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((n, v)) = h.split_once(':') {
            headers.push((n.trim().to_string(), v.trim().to_string()));
        }
    }
    let find = |n: &str| {
        headers
            .iter()
            .find(|(k, _): &&(String, String)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| v.clone())
    };
    let mut body = Vec::new();
    if let Some(len) = find("content-length").and_then(|v| v.parse::<usize>().ok()) {
        body.resize(len, 0);
        reader.read_exact(&mut body)?;
    } else if find("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size)?;
            let n = usize::from_str_radix(size.trim(), 16).map_err(std::io::Error::other)?;
            let mut chunk = vec![0; n + 2];
            reader.read_exact(&mut chunk)?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    } else {
        reader.read_to_end(&mut body)?;
    }
    Ok(Response {
        status,
        headers,
        body,
    })
}

/// The sum of the samples of metric `name` whose labels contain `label` ("" for all), in a
/// Prometheus text exposition.
pub fn metric_sum(exposition: &str, name: &str, label: &str) -> u64 {
    let prefix = format!("{name}{{");
    exposition
        .lines()
        .filter(|l| l.starts_with(&prefix) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// A 429 as every tier answers it: `Retry-After` in 1..=60 s and the `rate_limited` error.
pub fn assert_rate_limited(r: &Response) {
    assert_eq!(r.status, 429, "{}", r.text());
    let retry: u64 = r
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("Retry-After in seconds");
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(r.json()["error"]["code"], "rate_limited");
}

pub fn get(addr: SocketAddr, path: &str) -> std::io::Result<Response> {
    request(
        addr,
        &format!("GET {path} HTTP/1.1\nHost: t\nUser-Agent: {UA}\nConnection: close\n"),
        b"",
    )
}

/// POST a body to the chat API with the given extra header lines.
pub fn post(
    addr: SocketAddr,
    path: &str,
    extra_headers: &str,
    body: &[u8],
) -> std::io::Result<Response> {
    request(addr, &post_head(path, extra_headers, body), body)
}

/// The head of [`post`]'s request (`Connection: close`).
pub fn post_head(path: &str, extra_headers: &str, body: &[u8]) -> String {
    format!(
        "POST {path} HTTP/1.1\nHost: t\nUser-Agent: {UA}\nContent-Type: application/json\nContent-Length: {}\nConnection: close\n{extra_headers}",
        body.len()
    )
}

pub fn chat_body(user_id: &str, text: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({"user_id": user_id, "text": text})).expect("json")
}

pub fn chat(addr: SocketAddr, user_id: &str, text: &str) -> Response {
    post(addr, "/v1/chat", "", &chat_body(user_id, text)).expect("chat request")
}

/// A persistent connection for request loops.
pub struct Client {
    reader: BufReader<TcpStream>,
    addr: SocketAddr,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        Client {
            reader: BufReader::new(stream),
            addr,
        }
    }

    pub fn chat(&mut self, user_id: &str, text: &str) -> std::io::Result<Response> {
        let body = chat_body(user_id, text);
        let head = format!(
            "POST /v1/chat HTTP/1.1\r\nHost: t\r\nUser-Agent: {UA}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        let stream = self.reader.get_mut();
        stream.write_all(head.as_bytes())?;
        stream.write_all(&body)?;
        let resp = read_response(&mut self.reader)?;
        if resp
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
        {
            *self = Client::connect(self.addr);
        }
        Ok(resp)
    }
}

/// A stub HTTP upstream on a free port: answers every request with 200 and a body naming
/// itself and the request line, optionally after a delay. Stops when dropped.
pub struct Upstream {
    pub addr: SocketAddr,
    pub hits: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Upstream {
    pub fn start(name: &'static str, delay: Duration) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind upstream");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let hits = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (h, s) = (Arc::clone(&hits), Arc::clone(&stop));
        thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let h = Arc::clone(&h);
                        thread::spawn(move || serve_stub(stream, name, delay, &h));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Upstream { addr, hits, stop }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve_stub(stream: TcpStream, name: &str, delay: Duration, hits: &AtomicUsize) {
    let _ = stream.set_nonblocking(false);
    let mut reader = BufReader::new(match stream.try_clone() {
        Ok(s) => s,
        Err(_) => return,
    });
    let mut writer = stream;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut forwarded = String::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            if h.trim().is_empty() {
                break;
            }
            if h.to_ascii_lowercase().starts_with("x-forwarded-for:") {
                forwarded = h[16..].trim().to_string();
            }
        }
        hits.fetch_add(1, Ordering::Relaxed);
        thread::sleep(delay);
        let body = format!("{name} {} xff={forwarded}", request_line.trim());
        let resp = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if writer.write_all(resp.as_bytes()).is_err() {
            return;
        }
    }
}

/// Run `kefu-edge` with arguments to completion.
pub fn run_cli(args: &[&str], stdin: &str) -> std::process::Output {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run kefu-edge");
    if let Some(mut input) = child.stdin.take() {
        input.write_all(stdin.as_bytes()).expect("stdin");
    }
    child.wait_with_output().expect("wait")
}

/// Lines of a `text<TAB>label` data file, without comments.
pub fn tsv(path: &str) -> Vec<(String, String)> {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full)
        .unwrap_or_else(|e| panic!("{}: {e}", full.display()))
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            l.split_once('\t')
                .map(|(a, b)| (a.to_string(), b.to_string()))
        })
        .collect()
}

/// `../shared/data` (the licensed JDDC files), or `None` with the reason printed when a clone
/// has nothing beside it: a test that needs it then skips instead of failing. CI has it and
/// runs those tests; `KEFU_REQUIRE_SHARED_DATA=1` turns the skip into a failure there.
pub fn shared_data(test: &str) -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data");
    if dir.join("jddc_to_kefu.tsv").is_file() {
        return Some(dir);
    }
    assert!(
        std::env::var_os("KEFU_REQUIRE_SHARED_DATA").is_none(),
        "{test}: {} is missing and KEFU_REQUIRE_SHARED_DATA is set",
        dir.display()
    );
    eprintln!(
        "skipped {test}: it needs the licensed JDDC files in {} (not part of the repository)",
        dir.display()
    );
    None
}
