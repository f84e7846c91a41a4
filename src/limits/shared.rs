//! Buckets shared through Redis. One script call (`lua-compat/gcra.lua`, the same file the
//! OpenResty module loads) checks every shared bucket of a request, all or nothing, with
//! Redis's clock; `EVALSHA`, falling back to `EVAL` on `NOSCRIPT`. The requests that arrive
//! while a call is out go together in the next call (a driver task, like the model stage's
//! batcher), so a busy node pays one round trip per batch. A check never waits longer than
//! the configured timeout, and never for a connect: without a connection the caller falls
//! back at once while one is made. With `shared.ahead`, a request far from its limits is
//! admitted before Redis answers ([`Headroom`]); its check still goes out in the next call.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use redis::cluster::ClusterClientBuilder;
use redis::{ErrorKind, ServerErrorKind};
use tokio::sync::{mpsc, oneshot};

use super::LimitKind;
use super::headroom::Headroom;
use crate::config::SharedLimitsConfig;
use crate::redis_link::{RedisLink, Target};

/// The bucket script both tiers run.
pub const GCRA_SCRIPT: &str = include_str!("../../lua-compat/gcra.lua");

/// One shared bucket of a request: which, its key (the client address or user id as
/// text) and its quota.
#[derive(Debug, Clone, Copy)]
pub struct SharedBucket<'a> {
    pub kind: LimitKind,
    pub key: &'a str,
    pub interval_us: u64,
    pub burst: u32,
}

/// Why Redis gave no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SharedError {
    /// No connection yet (one is being made in the background): no time was lost.
    NotConnected,
    /// An error or a timeout, in one line.
    Failed(String),
}

/// What Redis said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Allowed,
    /// Admitted before Redis answered: the last answer left plenty (`shared.ahead`).
    AllowedAhead,
    Limited {
        kind: LimitKind,
        retry_after: Duration,
    },
}

pub struct RedisBuckets {
    link: Arc<RedisLink>,
    /// The batching driver's queue, made on first use (inside the server's runtime).
    queue: OnceLock<mpsc::Sender<Job>>,
    /// SHA1 of [`GCRA_SCRIPT`], for EVALSHA.
    sha: String,
    timeout: Duration,
    /// `<key_prefix>{<hash_tag>}:`.
    key_base: String,
    /// `shared.ahead`: the share of the smallest burst that must be left for a request to
    /// be admitted before Redis answers (0: always wait).
    ahead: f64,
    /// Present only with `ahead` > 0: without it nothing is remembered.
    headroom: Option<Arc<Headroom>>,
    /// `shared.ahead_linger`.
    ahead_linger: Duration,
}

/// The key part of a bucket kind; the OpenResty module uses the same words.
fn key_part(kind: LimitKind) -> &'static str {
    match kind {
        LimitKind::Global => "global",
        LimitKind::ClientIp => "ip",
        LimitKind::User => "user",
    }
}

impl RedisBuckets {
    pub fn new(cfg: &SharedLimitsConfig) -> Result<RedisBuckets, String> {
        let target = match &cfg.redis {
            Some(url) => {
                Target::Standalone(redis::Client::open(url.as_str()).map_err(|e| e.to_string())?)
            }
            None => {
                let client = ClusterClientBuilder::new(cfg.cluster.iter().map(String::as_str))
                    // A redirection after a failover is followed once; the timeout bounds all.
                    .retries(1)
                    .connection_timeout(cfg.connect_timeout)
                    .response_timeout(cfg.timeout)
                    .build()
                    .map_err(|e| e.to_string())?;
                Target::Cluster(Box::new(client))
            }
        };
        Ok(RedisBuckets {
            link: Arc::new(RedisLink::new(target, cfg.connect_timeout, cfg.timeout)),
            queue: OnceLock::new(),
            sha: redis::Script::new(GCRA_SCRIPT).get_hash().to_owned(),
            timeout: cfg.timeout,
            key_base: format!("{}{{{}}}:", cfg.key_prefix, cfg.hash_tag),
            ahead: cfg.ahead,
            headroom: (cfg.ahead > 0.0).then(|| Arc::new(Headroom::default())),
            ahead_linger: cfg.ahead_linger,
        })
    }

    /// The Redis key of one bucket: `kefu:rl:{rl}:user:alice`.
    pub fn key(&self, kind: LimitKind, key: &str) -> String {
        format!("{}{}:{key}", self.key_base, key_part(kind))
    }

    /// Check `buckets` (at least one). Requests that arrive while a call is out go
    /// together in the next one (one `EVALSHA` for all of them, each all or nothing), so
    /// Redis and this node pay one round trip per batch instead of one per request.
    /// With `may_answer_ahead` (and `shared.ahead` set) a request far from its limits is
    /// answered at once ([`Outcome::AllowedAhead`]) and its check sent without waiting.
    pub async fn check(
        &self,
        buckets: &[SharedBucket<'_>],
        may_answer_ahead: bool,
    ) -> Result<Outcome, SharedError> {
        let queue = self.queue.get_or_init(|| self.start_driver());
        let keys: Vec<String> = buckets.iter().map(|b| self.key(b.kind, b.key)).collect();
        let headroom_key = self.headroom.as_ref().map(|_| Headroom::key_of(&keys));
        let mut job = Job {
            keys,
            quotas: buckets.iter().map(|b| (b.interval_us, b.burst)).collect(),
            kinds: buckets.iter().map(|b| b.kind).collect(),
            headroom_key,
            reply: None,
        };
        if let (true, Some(headroom), Some(key)) = (may_answer_ahead, &self.headroom, headroom_key)
        {
            let smallest = buckets.iter().map(|b| b.burst).min().unwrap_or(0);
            let floor = (f64::from(smallest) * self.ahead).ceil() as u32;
            if headroom.take(key, floor, Instant::now()) {
                return match queue.try_send(job) {
                    Ok(()) => Ok(Outcome::AllowedAhead),
                    Err(_) => Err(SharedError::Failed("check queue full".into())),
                };
            }
        }
        let (reply, answer) = oneshot::channel();
        job.reply = Some(reply);
        queue
            .try_send(job)
            .map_err(|_| SharedError::Failed("check queue full".into()))?;
        match tokio::time::timeout(self.timeout, answer).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_)) => Err(SharedError::Failed("check dropped".into())),
            Err(_) => Err(SharedError::Failed(format!(
                "no answer within {:?}",
                self.timeout
            ))),
        }
    }

    /// The task that sends the queued checks; started in the server's runtime on first use.
    fn start_driver(&self) -> mpsc::Sender<Job> {
        let (tx, rx) = mpsc::channel(QUEUE);
        let driver = Driver {
            link: Arc::clone(&self.link),
            sha: self.sha.clone(),
            timeout: self.timeout,
            headroom: self.headroom.clone(),
            linger: self.ahead_linger,
        };
        tokio::spawn(driver.run(rx));
        tx
    }
}

/// Checks waiting for a call, at most (a full queue answers at once: the caller falls back).
const QUEUE: usize = 4096;
/// Requests in one call, at most.
const MAX_BATCH: usize = 128;

/// One request's check, waiting for a call.
struct Job {
    keys: Vec<String>,
    quotas: Vec<(u64, u32)>,
    kinds: Vec<LimitKind>,
    /// [`Headroom::key_of`] the keys, when headroom is kept.
    headroom_key: Option<u64>,
    /// None for a request admitted ahead: nobody waits for the answer.
    reply: Option<oneshot::Sender<Result<Outcome, SharedError>>>,
}

struct Driver {
    link: Arc<RedisLink>,
    sha: String,
    timeout: Duration,
    headroom: Option<Arc<Headroom>>,
    linger: Duration,
}

impl Driver {
    async fn run(self, mut rx: mpsc::Receiver<Job>) {
        let mut jobs = Vec::with_capacity(MAX_BATCH);
        while rx.recv_many(&mut jobs, MAX_BATCH).await > 0 {
            self.linger(&mut rx, &mut jobs).await;
            let answers = self.call(&jobs).await;
            let now = Instant::now();
            if let (Err(_), Some(headroom)) = (&answers, &self.headroom) {
                headroom.clear();
            }
            for (i, job) in jobs.drain(..).enumerate() {
                let answer = match &answers {
                    Ok(values) => decode(values, i, &job.kinds).map(|(outcome, remaining)| {
                        if let (Some(headroom), Some(key)) = (&self.headroom, job.headroom_key) {
                            headroom.record(key, remaining, now);
                        }
                        outcome
                    }),
                    Err(e) => Err(e.clone()),
                };
                // The caller may have given up (its timeout): nothing to tell it then.
                if let Some(reply) = job.reply {
                    let _ = reply.send(answer);
                }
            }
        }
    }

    /// While every check in `jobs` is of a request already admitted (nobody waits for its
    /// answer), wait up to the linger for more before calling: under load one call then
    /// carries many checks, which saves Redis and this node a round trip's work per
    /// request. A check someone waits for ends the wait at once.
    async fn linger(&self, rx: &mut mpsc::Receiver<Job>, jobs: &mut Vec<Job>) {
        if self.linger.is_zero() {
            return;
        }
        let until = tokio::time::Instant::now() + self.linger;
        let mut seen = 0; // jobs already known to have nobody waiting
        while jobs.len() < MAX_BATCH && jobs[seen..].iter().all(|j| j.reply.is_none()) {
            seen = jobs.len();
            let room = MAX_BATCH - jobs.len();
            match tokio::time::timeout_at(until, rx.recv_many(jobs, room)).await {
                Ok(n) if n > 0 => continue,
                _ => return, // the linger is over, or the queue closed
            }
        }
    }

    /// One `EVALSHA` for `jobs` (`EVAL` with the script's text when Redis does not know
    /// it: a restarted or failed-over Redis, which also caches it there again).
    async fn call(&self, jobs: &[Job]) -> Result<Vec<i64>, SharedError> {
        let mut conn = self
            .link
            .connection_now()
            .map_err(|_| SharedError::NotConnected)?;
        let command = |verb: &str, script: &str| {
            let mut cmd = redis::cmd(verb);
            let keys: usize = jobs.iter().map(|j| j.keys.len()).sum();
            cmd.arg(script).arg(keys);
            for key in jobs.iter().flat_map(|j| &j.keys) {
                cmd.arg(key);
            }
            cmd.arg(jobs.len());
            for j in jobs {
                cmd.arg(j.keys.len());
                for &(interval_us, burst) in &j.quotas {
                    cmd.arg(interval_us).arg(burst).arg(1);
                }
            }
            cmd
        };
        let call = async {
            let evalsha = command("EVALSHA", &self.sha);
            match evalsha.query_async::<Vec<i64>>(&mut conn).await {
                Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                    command("EVAL", GCRA_SCRIPT).query_async(&mut conn).await
                }
                answer => answer,
            }
        };
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(values)) if values.len() == 4 * jobs.len() => Ok(values),
            Ok(Ok(values)) => Err(SharedError::Failed(format!(
                "the script answered {} values for {} requests",
                values.len(),
                jobs.len()
            ))),
            Ok(Err(e)) => Err(SharedError::Failed(e.to_string())),
            Err(_) => Err(SharedError::Failed(format!(
                "no answer within {:?}",
                self.timeout
            ))),
        }
    }
}

/// Request `i`'s four values: allowed, remaining, retry-after (ms), refused by (from 1);
/// the outcome and the admissions left.
fn decode(values: &[i64], i: usize, kinds: &[LimitKind]) -> Result<(Outcome, u32), SharedError> {
    let v = values
        .get(4 * i..4 * i + 4)
        .ok_or_else(|| SharedError::Failed("short answer".into()))?;
    if v[0] == 1 {
        return Ok((Outcome::Allowed, u32::try_from(v[1]).unwrap_or(0)));
    }
    let kind = usize::try_from(v[3] - 1)
        .ok()
        .and_then(|k| kinds.get(k))
        .copied()
        .unwrap_or(LimitKind::User);
    let limited = Outcome::Limited {
        kind,
        retry_after: Duration::from_millis(u64::try_from(v[2]).unwrap_or(0)),
    };
    Ok((limited, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(url: &str) -> SharedLimitsConfig {
        SharedLimitsConfig {
            redis: Some(url.into()),
            cluster: vec![],
            timeout: Duration::from_millis(500),
            connect_timeout: Duration::from_millis(500),
            key_prefix: format!("kefu:test:{}:", std::process::id()),
            hash_tag: "rl".into(),
            nodes: 1,
            breaker: Default::default(),
            ahead: 0.0,
            ahead_linger: Duration::from_millis(1),
        }
    }

    /// Buckets on the Redis at 127.0.0.1:6379 (the test suite's); `None`, said, without one.
    fn local_redis() -> Option<RedisBuckets> {
        if std::net::TcpStream::connect("127.0.0.1:6379").is_err() {
            eprintln!("skipped: no Redis on 127.0.0.1:6379");
            return None;
        }
        Some(RedisBuckets::new(&cfg("redis://127.0.0.1:6379")).unwrap())
    }

    /// Remove a test's keys.
    async fn delete(r: &RedisBuckets, keys: &[String]) {
        let mut conn = r.link.connection().await.unwrap();
        let _: () = redis::cmd("DEL")
            .arg(keys)
            .query_async(&mut conn)
            .await
            .unwrap();
    }

    fn driver(linger: Duration) -> Driver {
        let client = redis::Client::open("redis://127.0.0.1:1").unwrap();
        Driver {
            link: Arc::new(RedisLink::new(
                Target::Standalone(client),
                Duration::from_millis(50),
                Duration::from_millis(50),
            )),
            sha: String::new(),
            timeout: Duration::from_millis(50),
            headroom: None,
            linger,
        }
    }

    /// A check; `waited` when a caller waits for its answer (the receiver is returned).
    fn job(waited: bool) -> (Job, Option<oneshot::Receiver<Result<Outcome, SharedError>>>) {
        let (reply, answer) = if waited {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let job = Job {
            keys: vec!["k".into()],
            quotas: vec![(1000, 1)],
            kinds: vec![LimitKind::User],
            headroom_key: None,
            reply,
        };
        (job, answer)
    }

    #[tokio::test]
    async fn checks_of_requests_admitted_ahead_wait_for_company_and_a_waited_check_ends_the_wait() {
        // Only checks nobody waits for: they linger for the whole linger.
        let d = driver(Duration::from_millis(30));
        let (tx, mut rx) = mpsc::channel(16);
        let mut jobs = vec![job(false).0];
        let started = Instant::now();
        d.linger(&mut rx, &mut jobs).await;
        assert!(started.elapsed() >= Duration::from_millis(30));
        assert_eq!(jobs.len(), 1);
        // More arrive during the linger, then one a caller waits for: the call goes at
        // once with all of them (the linger is ten seconds).
        let d = driver(Duration::from_secs(10));
        let mut jobs = vec![job(false).0];
        let sender = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            tx.send(job(false).0).await.ok();
            tokio::time::sleep(Duration::from_millis(10)).await;
            let (waited, answer) = job(true);
            tx.send(waited).await.ok();
            answer
        });
        let started = Instant::now();
        d.linger(&mut rx, &mut jobs).await;
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "a waited check sat out the linger"
        );
        assert_eq!(jobs.len(), 3);
        assert!(jobs[2].reply.is_some());
        let _answer = sender.await.unwrap();
        // No linger: nothing waits.
        let d = driver(Duration::ZERO);
        let (_tx, mut rx) = mpsc::channel(16);
        let mut jobs = vec![job(false).0];
        let started = Instant::now();
        d.linger(&mut rx, &mut jobs).await;
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(jobs.len(), 1);
    }

    #[test]
    fn keys_share_one_hash_tag() {
        let r = RedisBuckets::new(&cfg("redis://127.0.0.1:6379")).unwrap();
        let k = r.key(LimitKind::ClientIp, "10.0.0.1");
        assert!(k.ends_with("{rl}:ip:10.0.0.1"), "{k}");
    }

    /// Concurrent checks of one user go out batched, decided in order: exactly the burst.
    #[tokio::test]
    async fn concurrent_checks_of_one_user_admit_exactly_the_burst() {
        let Some(r) = local_redis() else {
            return;
        };
        let user = format!("c{}", std::process::id());
        let bucket = SharedBucket {
            kind: LimitKind::User,
            key: &user,
            interval_us: 3_600_000_000,
            burst: 5,
        };
        // Until connected, checks are not answered.
        while r.check(&[bucket], true).await == Err(SharedError::NotConnected) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let one = [bucket];
        let answers = futures::future::join_all((0..40).map(|_| r.check(&one, true))).await;
        let allowed = answers
            .iter()
            .filter(|a| **a == Ok(Outcome::Allowed))
            .count();
        assert_eq!(allowed, 4, "5 minus the one that connected: {answers:?}");
        delete(&r, &[r.key(LimitKind::User, &user)]).await;
    }

    #[tokio::test]
    async fn burst_then_refusal_across_two_buckets_all_or_nothing() {
        let Some(r) = local_redis() else {
            return;
        };
        let user = format!("u{}", std::process::id());
        let ip = SharedBucket {
            kind: LimitKind::ClientIp,
            key: "10.9.9.9",
            interval_us: 3_600_000_000,
            burst: 100,
        };
        let per_user = SharedBucket {
            kind: LimitKind::User,
            key: &user,
            interval_us: 3_600_000_000,
            burst: 3,
        };
        // The first call connects in the background and is not answered.
        let mut answers = Vec::new();
        for _ in 0..200 {
            match r.check(&[ip, per_user], true).await {
                Ok(o) => answers.push(o),
                Err(_) if answers.is_empty() => tokio::time::sleep(Duration::from_millis(5)).await,
                Err(e) => panic!("{e:?}"),
            }
            if answers.len() == 5 {
                break;
            }
        }
        assert_eq!(answers[..3], [Outcome::Allowed; 3]);
        let Outcome::Limited { kind, retry_after } = answers[3] else {
            panic!("{answers:?}")
        };
        assert_eq!(kind, LimitKind::User);
        assert!(retry_after > Duration::from_secs(3000), "{retry_after:?}");
        // Refusals by the user bucket charged the address bucket nothing: 97 left of 100.
        let mut left = 0;
        while r.check(&[ip], true).await.unwrap() == Outcome::Allowed {
            left += 1;
        }
        assert_eq!(left, 97);
        let mut conn = r.link.connection().await.unwrap();
        // A Redis that lost its scripts (restart, failover): EVAL, and the bucket goes on.
        let _: () = redis::cmd("SCRIPT")
            .arg("FLUSH")
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(matches!(
            r.check(&[per_user], true).await,
            Ok(Outcome::Limited { .. })
        ));
        let keys = [
            r.key(LimitKind::ClientIp, "10.9.9.9"),
            r.key(LimitKind::User, &user),
        ];
        delete(&r, &keys).await;
    }

    /// With `ahead`, requests far from the limit do not wait for Redis, yet Redis counts
    /// them all and the last ones before the limit wait: exactly the burst is admitted.
    #[tokio::test]
    async fn admitting_ahead_still_admits_exactly_the_burst() {
        if local_redis().is_none() {
            return;
        }
        let r = RedisBuckets::new(&SharedLimitsConfig {
            ahead: 0.5,
            ..cfg("redis://127.0.0.1:6379")
        })
        .unwrap();
        let user = format!("a{}", std::process::id());
        let bucket = SharedBucket {
            kind: LimitKind::User,
            key: &user,
            interval_us: 3_600_000_000,
            burst: 10,
        };
        let mut answers = Vec::new();
        while answers.len() < 20 {
            match r.check(&[bucket], true).await {
                Ok(o) => answers.push(o),
                Err(SharedError::NotConnected) => {
                    tokio::time::sleep(Duration::from_millis(5)).await
                }
                Err(e) => panic!("{e:?}"),
            }
        }
        let count = |o: fn(&Outcome) -> bool| answers.iter().filter(|a| o(a)).count();
        let ahead = count(|a| *a == Outcome::AllowedAhead);
        let waited = count(|a| *a == Outcome::Allowed);
        assert_eq!(ahead + waited, 10, "{answers:?}");
        assert!(
            ahead >= 4,
            "9 left after the first, 5 kept for Redis: {answers:?}"
        );
        assert_eq!(
            answers[9],
            Outcome::Allowed,
            "the last admission waited for Redis"
        );
        // Redis counted the ones admitted ahead: another node finds the bucket empty.
        let other = RedisBuckets::new(&cfg("redis://127.0.0.1:6379")).unwrap();
        let mut seen = None;
        while seen.is_none() {
            match other.check(&[bucket], true).await {
                Ok(o) => seen = Some(o),
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
        assert!(matches!(seen, Some(Outcome::Limited { .. })), "{seen:?}");
        delete(&r, &[r.key(LimitKind::User, &user)]).await;
    }
}
