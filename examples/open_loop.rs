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
//! out on the first idle one. Pacing: tokio's timers have millisecond granularity, so one
//! pacer task waits for each due time on a timerfd (a high-resolution timer, timer slack set
//! to 1 ns) that the event loop polls with the connections: sends leave within tens of
//! microseconds of their schedule and the core sleeps in between. `--pacer spin` instead
//! yields in a loop for the last 2 ms before each due time: sends within a few microseconds,
//! but the core is never idle, so whatever shares it (the bench's Redis) runs only when the
//! scheduler preempts the generator. Prints one `OPENLOOP key=value` line: achieved rate,
//! latency p50/p99/p99.9/max in µs, non-2xx answers and errors.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use clap::Parser;
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::TcpStream;
use tokio::sync::Notify;

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
    /// How due times are waited for: `timerfd` (sleeps) or `spin` (yields in a loop).
    #[arg(long, value_enum, default_value_t = PacerKind::Timerfd)]
    pacer: PacerKind,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum PacerKind {
    Timerfd,
    Spin,
}

/// What the connections share (one thread: cells, no locks).
struct Run {
    requests: Vec<Vec<u8>>,
    /// When request 0 is due, and the time between two requests (CLOCK_MONOTONIC, ns): the
    /// pacer's timer and every latency read the same clock.
    start_ns: u128,
    interval_ns: u128,
    total: u64,
    /// Requests due and not yet taken by a connection, oldest first.
    due: RefCell<VecDeque<u64>>,
    /// Woken when a request becomes due, and when the pacer is done.
    wake: Notify,
    paced_all: Cell<bool>,
    latencies_us: RefCell<Vec<u32>>,
    /// How late each request left (from its due time to its write): the pacer's own error
    /// plus any wait for a free connection; part of its latency.
    late_us: RefCell<Vec<u32>>,
    /// How late the pacer made each request due: the generator's own lag alone (a busy
    /// core, a late timer), without any wait for a connection the server still holds.
    pacer_late_us: RefCell<Vec<u32>>,
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

/// A timerfd on CLOCK_MONOTONIC, polled by tokio.
struct Timer {
    fd: AsyncFd<OwnedFd>,
}

impl Timer {
    fn new() -> anyhow::Result<Timer> {
        // SAFETY: plain system calls; the descriptor is owned from here on.
        let fd = unsafe {
            libc::prctl(libc::PR_SET_TIMERSLACK, 1u64);
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        anyhow::ensure!(
            fd >= 0,
            "timerfd_create: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: fd is a fresh descriptor nothing else owns; the OwnedFd keeps it open, and
        // the same, for as long as the AsyncFd holds it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let fd = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }
            .map_err(std::io::Error::from)?;
        Ok(Timer { fd })
    }

    /// Sleep until `due` (a CLOCK_MONOTONIC reading in nanoseconds).
    async fn until(&self, due_ns: u128) -> anyhow::Result<()> {
        if monotonic_ns() >= due_ns {
            return Ok(());
        }
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: (due_ns / 1_000_000_000) as libc::time_t,
                tv_nsec: (due_ns % 1_000_000_000) as libc::c_long,
            },
        };
        let fd = self.fd.get_ref().as_raw_fd();
        // SAFETY: fd is our timerfd and spec a valid absolute expiry.
        let rc = unsafe {
            libc::timerfd_settime(fd, libc::TFD_TIMER_ABSTIME, &spec, std::ptr::null_mut())
        };
        anyhow::ensure!(
            rc == 0,
            "timerfd_settime: {}",
            std::io::Error::last_os_error()
        );
        loop {
            let mut ready = self.fd.readable().await?;
            let mut expirations = 0u64;
            // SAFETY: reads 8 bytes into a u64 we own.
            let n = unsafe { libc::read(fd, (&mut expirations as *mut u64).cast(), 8) };
            if n == 8 {
                return Ok(());
            }
            ready.clear_ready();
        }
    }
}

impl Run {
    /// When request `k` is due.
    fn due_ns(&self, k: u64) -> u128 {
        self.start_ns + self.interval_ns * u128::from(k)
    }
}

fn monotonic_ns() -> u128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: writes into ts.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u128 * 1_000_000_000 + ts.tv_nsec as u128
}

/// Make request k due at its time, for k in 0..total; the connections take them.
async fn pacer(run: Rc<Run>, kind: PacerKind) -> anyhow::Result<()> {
    let timer = match kind {
        PacerKind::Timerfd => Some(Timer::new()?),
        PacerKind::Spin => None,
    };
    for k in 0..run.total {
        let due_ns = run.due_ns(k);
        match &timer {
            Some(timer) => timer.until(due_ns).await?,
            None => {
                let spin_from = due_ns.saturating_sub(2_000_000);
                let now = monotonic_ns();
                if spin_from > now {
                    tokio::time::sleep(Duration::from_nanos((spin_from - now) as u64)).await;
                }
                while monotonic_ns() < due_ns {
                    tokio::task::yield_now().await;
                }
            }
        }
        run.pacer_late_us.borrow_mut().push(micros_since(due_ns));
        run.due.borrow_mut().push_back(k);
        run.wake.notify_one();
    }
    run.paced_all.set(true);
    run.wake.notify_waiters();
    Ok(())
}

/// The next due request, or None when every request has been taken.
async fn next_due(run: &Run) -> Option<u64> {
    loop {
        let notified = run.wake.notified();
        if let Some(k) = run.due.borrow_mut().pop_front() {
            return Some(k);
        }
        if run.paced_all.get() {
            return None;
        }
        notified.await;
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

/// One connection: take the oldest due request, send it, read the answer, count its latency
/// from when it was due (a request that waited for a free connection pays for the wait).
async fn connection(run: Rc<Run>, addr: String) {
    let mut conn: Option<TcpStream> = None;
    let mut buf = Vec::with_capacity(16 << 10);
    loop {
        let Some(k) = next_due(&run).await else {
            return;
        };
        let due_ns = run.due_ns(k);
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
            run.late_us.borrow_mut().push(micros_since(due_ns));
            c.write_all(request).await?;
            response(c, &mut buf).await
        }
        .await;
        let us = micros_since(due_ns);
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
        start_ns: monotonic_ns() + 100_000_000,
        interval_ns: Duration::from_secs_f64(1.0 / args.rate).as_nanos(),
        total: (args.rate * args.duration) as u64,
        due: RefCell::new(VecDeque::new()),
        wake: Notify::new(),
        paced_all: Cell::new(false),
        latencies_us: RefCell::new(Vec::with_capacity((args.rate * args.duration) as usize)),
        late_us: RefCell::new(Vec::with_capacity((args.rate * args.duration) as usize)),
        pacer_late_us: RefCell::new(Vec::with_capacity((args.rate * args.duration) as usize)),
        non_2xx: Cell::new(0),
        errors: Cell::new(0),
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async {
        let pace = tokio::task::spawn_local(pacer(Rc::clone(&run), args.pacer));
        let tasks: Vec<_> = (0..args.conns)
            .map(|_| tokio::task::spawn_local(connection(Rc::clone(&run), args.addr.clone())))
            .collect();
        for t in tasks {
            let _ = t.await;
        }
        pace.await
    })??;
    let elapsed = monotonic_ns().saturating_sub(run.start_ns) as f64 / 1e9;
    let lat = sorted(run.latencies_us.take());
    let late = sorted(run.late_us.take());
    let pacer_late = sorted(run.pacer_late_us.take());
    println!(
        "OPENLOOP rate={:.0} achieved={:.0} requests={} p50_us={} p99_us={} p999_us={} max_us={} non2xx={} errors={} late_p50_us={} late_p99_us={} pacer_late_p99_us={}",
        args.rate,
        lat.len() as f64 / elapsed,
        lat.len(),
        quantile(&lat, 0.5),
        quantile(&lat, 0.99),
        quantile(&lat, 0.999),
        lat.last().copied().unwrap_or(0),
        run.non_2xx.get(),
        run.errors.get(),
        quantile(&late, 0.5),
        quantile(&late, 0.99),
        quantile(&pacer_late, 0.99),
    );
    Ok(())
}

/// Microseconds from `due_ns` to now (0 when not yet due).
fn micros_since(due_ns: u128) -> u32 {
    (monotonic_ns().saturating_sub(due_ns) / 1000).min(u128::from(u32::MAX)) as u32
}

fn sorted(mut v: Vec<u32>) -> Vec<u32> {
    v.sort_unstable();
    v
}

fn quantile(sorted: &[u32], p: f64) -> u32 {
    sorted
        .get(((sorted.len().max(1) - 1) as f64 * p) as usize)
        .copied()
        .unwrap_or(0)
}
