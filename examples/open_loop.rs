//! An open-loop load generator for `POST /v1/chat` (bench/rule_path.sh `OPEN_LOOP=...`):
//! requests leave on a fixed schedule, request k at `k / rate` seconds, whatever the server
//! does, and each latency is counted from the moment the request was due, not from when a
//! connection was free to send it. A server that stalls therefore pays for every request the
//! stall delayed (no coordinated omission, as wrk2 and oha's latency correction do).
//!
//!     cargo run --release --example open_loop -- --addr 127.0.0.1:8080 --rate 16000 \
//!         --duration 10 --samples tests/data/intent_samples.tsv
//!
//! Why not oha or wrk2: wrk2 is not packaged in Debian, and oha sends one body, where the
//! rule path's per-user buckets need the message and the user to change with every request
//! (as bench/wrk/chat.lua does: request k carries message k mod n and user k mod USERS).
//!
//! One thread (pin it with taskset), `--conns` keep-alive connections: a due request goes
//! out on the first idle one. Timers: tokio's have millisecond granularity, so the last
//! stretch before a request is due is waited by yielding, which keeps sends within a few
//! microseconds of their schedule at the cost of a busy core. Prints one `OPENLOOP key=value`
//! line: achieved rate, latency p50/p99/p99.9/max in µs, non-2xx answers and errors.

use std::cell::{Cell, RefCell};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use clap::Parser;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Parser)]
struct Args {
    /// Server address.
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: String,
    #[arg(long, default_value = "/v1/chat")]
    path: String,
    /// Requests per second.
    #[arg(long)]
    rate: f64,
    /// Seconds of schedule.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Connections (the most requests in flight).
    #[arg(long, default_value_t = 64)]
    conns: usize,
    /// Messages, first tab-separated column; empty and `#` lines skipped.
    #[arg(long)]
    samples: PathBuf,
    #[arg(long, default_value_t = 4096)]
    users: usize,
    #[arg(long, default_value = "kefu-bench/1.0")]
    ua: String,
    /// Microseconds before a request is due that are waited by yielding rather than by
    /// tokio's millisecond timer (0: the timer alone, requests late by up to 1 ms).
    #[arg(long, default_value_t = 2000)]
    spin_us: u64,
}

/// What the connections share (one thread: cells, no locks).
struct Run {
    requests: Vec<Vec<u8>>,
    start: Instant,
    interval: Duration,
    spin: Duration,
    total: u64,
    next: Cell<u64>,
    latencies_us: RefCell<Vec<u32>>,
    non_2xx: Cell<u64>,
    errors: Cell<u64>,
}

fn requests(args: &Args) -> anyhow::Result<Vec<Vec<u8>>> {
    let text = std::fs::read_to_string(&args.samples)?;
    let texts: Vec<&str> = text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split('\t').next())
        .filter(|t| !t.is_empty())
        .collect();
    anyhow::ensure!(
        !texts.is_empty(),
        "no messages in {}",
        args.samples.display()
    );
    let n = texts.len().max(args.users);
    Ok((0..n)
        .map(|k| {
            let body = serde_json::json!({
                "user_id": format!("u{:05}", k % args.users),
                "text": texts[k % texts.len()],
            })
            .to_string();
            format!(
                "POST {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                args.path,
                args.addr,
                args.ua,
                body.len()
            )
            .into_bytes()
        })
        .collect())
}

/// Wait until `due`: tokio's timer for all but the last `spin`, then yielding.
async fn until(due: Instant, spin: Duration) {
    let now = Instant::now();
    if due > now + spin {
        tokio::time::sleep(due - now - spin).await;
    }
    while Instant::now() < due {
        tokio::task::yield_now().await;
    }
}

/// Read one response; its status. Content-Length and chunked bodies.
async fn response(conn: &mut TcpStream, buf: &mut Vec<u8>) -> anyhow::Result<u16> {
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        read_more(conn, buf).await?;
    };
    let head = std::str::from_utf8(&buf[..head_end])?.to_ascii_lowercase();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no status line"))?;
    let header = |name: &str| {
        head.lines()
            .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_owned()))
    };
    let end = if let Some(len) = header("content-length:") {
        head_end + len.parse::<usize>()?
    } else if header("transfer-encoding:").is_some_and(|v| v.contains("chunked")) {
        loop {
            if let Some(i) = buf[head_end..].windows(5).position(|w| w == b"0\r\n\r\n") {
                break head_end + i + 5;
            }
            read_more(conn, buf).await?;
        }
    } else {
        head_end
    };
    while buf.len() < end {
        read_more(conn, buf).await?;
    }
    buf.drain(..end);
    Ok(status)
}

async fn read_more(conn: &mut TcpStream, buf: &mut Vec<u8>) -> anyhow::Result<()> {
    let mut chunk = [0u8; 8192];
    let n = conn.read(&mut chunk).await?;
    anyhow::ensure!(n > 0, "connection closed");
    buf.extend_from_slice(&chunk[..n]);
    Ok(())
}

/// One connection: take the next due request, send it when it is due (or at once when it is
/// already late), read the answer, count its latency from when it was due.
async fn connection(run: Rc<Run>, addr: String) {
    let mut conn: Option<TcpStream> = None;
    let mut buf = Vec::with_capacity(16 << 10);
    loop {
        let k = run.next.get();
        if k >= run.total {
            return;
        }
        run.next.set(k + 1);
        let due = run.start + run.interval.mul_f64(k as f64);
        until(due, run.spin).await;
        let request = &run.requests[k as usize % run.requests.len()];
        let result = async {
            if conn.is_none() {
                let c = TcpStream::connect(&addr).await?;
                c.set_nodelay(true)?;
                conn = Some(c);
                buf.clear();
            }
            let c = conn
                .as_mut()
                .ok_or_else(|| anyhow::anyhow!("no connection"))?;
            c.write_all(request).await?;
            response(c, &mut buf).await
        }
        .await;
        let us = due.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
        match result {
            Ok(status) => {
                run.latencies_us.borrow_mut().push(us);
                if !(200..300).contains(&status) {
                    run.non_2xx.set(run.non_2xx.get() + 1);
                }
            }
            Err(_) => {
                run.errors.set(run.errors.get() + 1);
                conn = None;
            }
        }
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        args.rate > 0.0 && args.conns > 0,
        "rate and conns must be positive"
    );
    let run = Rc::new(Run {
        requests: requests(&args)?,
        start: Instant::now() + Duration::from_millis(100),
        interval: Duration::from_secs_f64(1.0 / args.rate),
        spin: Duration::from_micros(args.spin_us),
        total: (args.rate * args.duration) as u64,
        next: Cell::new(0),
        latencies_us: RefCell::new(Vec::with_capacity((args.rate * args.duration) as usize)),
        non_2xx: Cell::new(0),
        errors: Cell::new(0),
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async {
        let tasks: Vec<_> = (0..args.conns)
            .map(|_| tokio::task::spawn_local(connection(Rc::clone(&run), args.addr.clone())))
            .collect();
        for t in tasks {
            let _ = t.await;
        }
    });
    let elapsed = run.start.elapsed().as_secs_f64();
    let mut lat = run.latencies_us.take();
    lat.sort_unstable();
    let q = |p: f64| {
        lat.get(((lat.len().max(1) - 1) as f64 * p) as usize)
            .copied()
            .unwrap_or(0)
    };
    println!(
        "OPENLOOP rate={:.0} achieved={:.0} requests={} p50_us={} p99_us={} p999_us={} max_us={} non2xx={} errors={}",
        args.rate,
        lat.len() as f64 / elapsed,
        lat.len(),
        q(0.5),
        q(0.99),
        q(0.999),
        lat.last().copied().unwrap_or(0),
        run.non_2xx.get(),
        run.errors.get()
    );
    Ok(())
}
