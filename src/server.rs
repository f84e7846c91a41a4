//! The server: what `kefu-edge -c conf/` runs and what `-t` checks. It loads and builds the
//! configuration, binds nothing it cannot, and hands Pingora its services: the chat proxy,
//! the admin listener, and the background services (SIGHUP reload, upstream health checks,
//! the model stage after a `--daemon` fork). Threads, ONNX sessions and Redis connections
//! start inside those services, never here before `run_forever()` (which may fork).

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::apps::{HttpServerOptions, ServerApp};
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::{Server, ShutdownWatch};
use pingora::services::background::{BackgroundService, background_service};
use pingora::services::listening::Service;

use crate::access_log::AccessLog;
use crate::admin::AdminApp;
use crate::cli::{Cli, Failure, load_config};
use crate::config::ServerConfig;
use crate::connections::{ConnectionCaps, ConnectionGuard, ConnectionTable, TlsTerminator};
use crate::limits::LimitMetrics;
use crate::metrics::Metrics;
use crate::model::{BatchMetrics, ModelStage};
use crate::proxy::KefuProxy;
use crate::signals::{HangupPipe, ReloadOnHangup};
use crate::state::{Reloader, Snapshot};

/// `-t`: every file, every referenced file and every stage built (the model stage loaded
/// too), then `configuration ok`.
pub fn check(dir: &Path) -> Result<(), Failure> {
    let config = load_config(dir)?;
    if let Err(e) = ModelStage::start(&config.model, BatchMetrics::unregistered()) {
        return Err(anyhow::anyhow!("{}: model stage: {e}", dir.display()).into());
    }
    Snapshot::build(config, 1, None, &LimitMetrics::unregistered())
        .map_err(|e| e.context(dir.display().to_string()))?;
    println!("kefu-edge: configuration ok ({})", dir.display());
    Ok(())
}

/// Bind and release every listener address, to report a busy or forbidden port now.
fn check_listeners(cfg: &ServerConfig) -> Result<(), String> {
    let all = [&cfg.chat_listen, &cfg.chat_tls_listen, &cfg.admin_listen];
    for addr in all.into_iter().flatten() {
        std::net::TcpListener::bind(addr.as_str())
            .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    }
    Ok(())
}

/// Run the server on the configuration of `cli.conf` until Pingora stops it; returns only
/// when it could not start.
pub fn serve(cli: &Cli, hangup: HangupPipe, reopen: Arc<AtomicBool>) -> Result<(), Failure> {
    let config = load_config(&cli.conf)?;
    let metrics = Arc::new(Metrics::new().map_err(|e| e.context("metrics"))?);
    let server_cfg = config.server.clone();
    let model_cfg = config.model.clone();
    // Loaded before listening, so the first request finds it. With --daemon it is loaded
    // only after the fork, and ONNX Runtime is not even opened before it: threads do not
    // survive a fork, and the runtime's exit handlers, run by the fork's intermediate process
    // when it exits, wait for its threads forever (the launcher never returned). The
    // configuration check has already seen the model files and the library.
    let model = if cli.daemon {
        Arc::new(ModelStage::disabled(metrics.model_batch.clone()))
    } else {
        match ModelStage::start(&model_cfg, metrics.model_batch.clone()) {
            Ok(stage) => Arc::new(stage),
            Err(e) => {
                return Err(anyhow::anyhow!("{}: model stage: {e}", cli.conf.display()).into());
            }
        }
    };
    // Like the model: its thread does not survive --daemon's fork, so there it starts after.
    let access_log = Arc::new(OnceLock::new());
    let start_log = {
        let (cfg, dropped) = (
            server_cfg.access_log.clone(),
            metrics.access_log_dropped.clone(),
        );
        let (slot, reopen) = (Arc::clone(&access_log), reopen);
        move || -> anyhow::Result<()> {
            if let Some(cfg) = &cfg {
                let log = AccessLog::start(cfg, Arc::clone(&reopen), dropped.clone())
                    .map_err(|e| anyhow::anyhow!("access log {}: {e}", cfg.target))?;
                let _ = slot.set(log);
            }
            Ok(())
        }
    };
    if !cli.daemon {
        start_log().map_err(|e| e.context(cli.conf.display().to_string()))?;
    }
    let snapshot = Snapshot::build(config, 1, None, &metrics.limits)
        .map_err(|e| e.context(cli.conf.display().to_string()))?;
    first_health_checks(&snapshot);
    // Pingora retries a busy port for 30 s, then its listener thread panics and the process
    // lives on without that listener. Fail at once instead, like nginx, so a supervisor sees
    // it. (With -u the ports are busy by design: the old process hands them over.)
    if !cli.upgrade {
        check_listeners(&server_cfg).map_err(anyhow::Error::msg)?;
    }
    let conf = ServerConf {
        daemon: cli.daemon,
        threads: server_cfg.threads,
        pid_file: server_cfg.pid_file.clone(),
        upgrade_sock: server_cfg.upgrade_sock.clone(),
        grace_period_seconds: Some(server_cfg.grace_period_seconds),
        graceful_shutdown_timeout_seconds: Some(server_cfg.graceful_shutdown_timeout_seconds),
        ..ServerConf::default()
    };
    let opt = Opt {
        upgrade: cli.upgrade,
        daemon: cli.daemon,
        ..Opt::default()
    };
    let mut server = Server::new_with_opt_and_conf(opt, conf);
    server.bootstrap();

    if cli.daemon {
        server.add_service(background_service(
            "access log",
            StartAfterFork(Box::new(start_log)),
        ));
        let stage = Arc::clone(&model);
        server.add_service(background_service(
            "model stage",
            StartAfterFork(Box::new(move || {
                stage.apply(&model_cfg);
                Ok(())
            })),
        ));
    }
    let reloader = Arc::new(Reloader::new(
        cli.conf.clone(),
        snapshot,
        Arc::clone(&metrics),
        Arc::clone(&model),
    ));
    let state = Arc::clone(&reloader.current);

    let mut proxy = pingora::proxy::http_proxy(
        &server.configuration,
        KefuProxy::new(Arc::clone(&state), Arc::clone(&metrics), model, access_log),
    );
    let mut options = HttpServerOptions::default();
    options.h2c = server_cfg.h2c;
    // An idle HTTP/2 connection is closed like an idle HTTP/1.1 keep-alive one.
    options.h2_idle_timeout = Some(Duration::from_secs(
        server_cfg.client.keepalive_timeout_secs,
    ));
    proxy.server_options = Some(options);
    for chat in chat_services(Arc::new(proxy), &server_cfg, &state, &metrics)? {
        server.add_service(chat);
    }

    let mut admin = Service::new(
        "admin".to_string(),
        AdminApp {
            reloader: Arc::clone(&reloader),
            metrics,
        },
    );
    for addr in &server_cfg.admin_listen {
        admin.add_tcp(addr);
    }
    admin.threads = Some(1);

    server.add_service(admin);
    server.add_service(background_service(
        "reload on SIGHUP",
        ReloadOnHangup {
            pipe: hangup,
            reloader,
        },
    ));
    server.add_service(background_service(
        "upstream health checks",
        HealthCheckService { state },
    ));
    log::info!(
        "kefu-edge {} starting from {}",
        env!("CARGO_PKG_VERSION"),
        cli.conf.display()
    );
    server.run_forever()
}

/// The chat API's listening services: the cleartext addresses, and the HTTPS ones when
/// there are any (their own service, whose guard does the TLS handshake), one application
/// and one connection count behind both.
fn chat_services<A: ServerApp + Send + Sync + 'static>(
    app: Arc<A>,
    server_cfg: &ServerConfig,
    state: &Arc<ArcSwap<Snapshot>>,
    metrics: &Metrics,
) -> Result<Vec<Service<ConnectionGuard<A>>>, Failure> {
    let caps: Arc<dyn Fn() -> ConnectionCaps + Send + Sync> = {
        let state = Arc::clone(state);
        Arc::new(move || {
            let client = &state.load().config.server.client;
            ConnectionCaps {
                header_timeout: client.header_timeout,
                max_connections: client.max_connections,
                max_connections_per_client: client.max_connections_per_client,
            }
        })
    };
    let table = Arc::new(ConnectionTable::default());
    let guard = |h2c| {
        ConnectionGuard::new(
            Arc::clone(&app),
            Arc::clone(&caps),
            Arc::clone(&table),
            metrics.connections.clone(),
            h2c,
        )
    };
    let mut chat = Service::new("chat".to_string(), guard(server_cfg.h2c));
    for addr in &server_cfg.chat_listen {
        chat.add_tcp(addr);
    }
    chat.threads = Some(server_cfg.threads);
    let mut services = vec![chat];
    if let Some(tls) = &server_cfg.tls {
        // The certificate in force: the one of the configuration loaded last (a reload
        // that drops `tls` keeps the listeners, so it keeps the last certificate too).
        let latest = std::sync::Mutex::new(Arc::clone(&tls.server_certificate.key));
        let state = Arc::clone(state);
        let certificate = move || {
            let mut latest = latest.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(t) = &state.load().config.server.tls {
                *latest = Arc::clone(&t.server_certificate.key);
            }
            Arc::clone(&latest)
        };
        let terminator = TlsTerminator::new(certificate, tls.http2)
            .map_err(|e| anyhow::anyhow!("TLS on listen.chat_tls: {e}"))?;
        let mut https = Service::new("chat-tls".to_string(), guard(false).with_tls(terminator));
        for addr in &server_cfg.chat_tls_listen {
            https.add_tcp(addr);
        }
        https.threads = Some(server_cfg.threads);
        services.push(https);
    }
    Ok(services)
}

/// The first health check of every upstream pool, before any listener opens, so the first
/// request already avoids a backend that is down (and uses one that is up). Bounded: a pool
/// whose checks take longer is left to the health-check service.
fn first_health_checks(snapshot: &Snapshot) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let Ok(runtime) = runtime else {
        return;
    };
    let now = Instant::now();
    runtime.block_on(async {
        let checks = snapshot.upstreams.pools().map(|p| p.check_if_due(now));
        let all = futures::future::join_all(checks);
        if tokio::time::timeout(Duration::from_secs(5), all).await.is_err() {
            log::warn!("upstream health checks at start took over 5 s; the first requests may reach a backend that is down");
        }
    });
}

/// Work that must run in the daemon, after the fork of --daemon (loading the model stage,
/// starting the access log's thread), once.
struct StartAfterFork(Box<dyn Fn() -> anyhow::Result<()> + Send + Sync>);

#[async_trait]
impl BackgroundService for StartAfterFork {
    async fn start(&self, _shutdown: ShutdownWatch) {
        if let Err(e) = (self.0)() {
            log::error!("{e:#}");
        }
    }
}

/// Health checks for the upstream pools of whatever configuration is current: every tick,
/// each pool whose interval has passed is checked (`upstream::Pool::check_if_due`).
pub struct HealthCheckService {
    pub state: Arc<ArcSwap<Snapshot>>,
}

#[async_trait]
impl BackgroundService for HealthCheckService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let tick = Duration::from_millis(100);
        loop {
            let snapshot = self.state.load_full();
            let now = Instant::now();
            for pool in snapshot.upstreams.pools() {
                pool.check_if_due(now).await;
            }
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(tick) => {}
            }
        }
    }
}
