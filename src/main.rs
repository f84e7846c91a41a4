//! The `kefu-edge` binary: parse flags, load the configuration, add the services, run.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use pingora::server::Server;
use pingora::server::configuration::{Opt, ServerConf};
use pingora::services::background::background_service;
use pingora::services::listening::Service;

use kefu_edge::admin::AdminApp;
use kefu_edge::cli::{Cli, Command};
use kefu_edge::config::Config;
use kefu_edge::dialog::Context;
use kefu_edge::eval::Evaluation;
use kefu_edge::intent::Intent;
use kefu_edge::metrics::Metrics;
use kefu_edge::model::{BatchMetrics, ModelStage};
use kefu_edge::pipeline::{Decision, Pipeline, Stage};
use kefu_edge::proxy::KefuProxy;
use kefu_edge::proxy::upstream::HealthCheckService;
use kefu_edge::router::corpus::Origin;
use kefu_edge::router::manifest::TrainParams;
use kefu_edge::router::train::{TrainOptions, audit_keywords, export_splits, train};
use kefu_edge::signals::{HangupPipe, ReloadOnHangup};
use kefu_edge::state::{Reloader, Snapshot};

fn main() -> ExitCode {
    // First: an unhandled SIGHUP would kill the process.
    let hangup = match HangupPipe::install() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("kefu-edge: cannot install the SIGHUP handler: {e}");
            return ExitCode::FAILURE;
        }
    };
    let cli = Cli::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    if cli.test {
        return check(&cli.conf);
    }
    match cli.command {
        Some(Command::Classify {
            eval: None,
            with_model,
        }) => classify(&cli.conf, with_model),
        Some(Command::Classify {
            eval: Some(file),
            with_model,
        }) => evaluate(&cli.conf, &file, with_model),
        Some(Command::TrainRouter {
            data,
            out,
            eval_dir,
            precision_target,
            jddc_precision_target,
            params,
        }) => {
            let d = TrainParams::default();
            let opts = TrainOptions {
                jddc_dir: data.jddc_dir(),
                jddc_adjudication: data.jddc_adjudication,
                corpus_dir: data.corpus,
                out_dir: out,
                eval_dir,
                params: TrainParams {
                    buckets: params.buckets.unwrap_or(d.buckets),
                    min_count: params.min_count.unwrap_or(d.min_count),
                    c: params.c.unwrap_or(d.c),
                    max_iters: params.max_iters.unwrap_or(d.max_iters),
                    ..d
                },
                precision_targets: BTreeMap::from([
                    (Origin::Authored, precision_target),
                    (Origin::Jddc, jddc_precision_target),
                ]),
            };
            train_router(&cli.conf, &opts)
        }
        Some(Command::EvalDialogues { file, with_model }) => {
            eval_dialogues(&cli.conf, &file, with_model)
        }
        Some(Command::AuditKeywords { data }) => audit(&cli.conf, &data_only(data)),
        Some(Command::ExportSplits { data, out }) => export(&cli.conf, &data_only(data), &out),
        None => serve(cli, hangup),
    }
}

/// Options that only say where the labelled messages are (no training).
fn data_only(data: kefu_edge::cli::CorpusFlags) -> TrainOptions {
    TrainOptions {
        jddc_dir: data.jddc_dir(),
        jddc_adjudication: data.jddc_adjudication,
        corpus_dir: data.corpus,
        out_dir: PathBuf::new(),
        eval_dir: PathBuf::new(),
        params: TrainParams::default(),
        precision_targets: BTreeMap::new(),
    }
}

fn export(dir: &Path, opts: &TrainOptions, out: &Path) -> ExitCode {
    let result = Config::load_for_model_training(dir)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .and_then(|config| export_splits(&config, opts, out));
    match result {
        Ok(n) => {
            println!(
                "wrote {} training, {} development and {} test lines to {}",
                n.train,
                n.dev,
                n.test,
                out.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("kefu-edge: export-splits: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn audit(dir: &Path, opts: &TrainOptions) -> ExitCode {
    let result = Config::load_for_training(dir)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .and_then(|config| audit_keywords(&config, opts));
    match result {
        Ok(stats) => {
            // Written with errors handled: `audit-keywords | head` closes the pipe early.
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            let write = || -> std::io::Result<()> {
                writeln!(
                    out,
                    "precision\tdecided\tintent\trule\twrong (true intent: count)"
                )?;
                for s in stats {
                    let wrong: Vec<String> =
                        s.wrong.iter().map(|(i, n)| format!("{i}:{n}")).collect();
                    writeln!(
                        out,
                        "{:.3}\t{}\t{}\t{}\t{}",
                        s.correct as f64 / s.decided as f64,
                        s.decided,
                        s.intent,
                        s.rule,
                        wrong.join(" ")
                    )?;
                }
                out.flush()
            };
            match write() {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("kefu-edge: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Err(e) => {
            eprintln!("kefu-edge: audit-keywords: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Load and validate the directory, or print every error.
fn load(dir: &Path) -> Option<Config> {
    match Config::load(dir) {
        Ok(c) => Some(c),
        Err(errors) => {
            for e in &errors.0 {
                eprintln!("kefu-edge: {e}");
            }
            eprintln!(
                "kefu-edge: configuration in {} is invalid ({} errors)",
                dir.display(),
                errors.0.len()
            );
            None
        }
    }
}

fn check(dir: &Path) -> ExitCode {
    let Some(config) = load(dir) else {
        return ExitCode::FAILURE;
    };
    if let Err(e) = ModelStage::start(&config.model, BatchMetrics::unregistered()) {
        eprintln!("kefu-edge: {}: model stage: {e}", dir.display());
        return ExitCode::FAILURE;
    }
    match Snapshot::build(config, 1, None) {
        Ok(_) => {
            println!("kefu-edge: configuration ok ({})", dir.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("kefu-edge: {}: {e:#}", dir.display());
            ExitCode::FAILURE
        }
    }
}

/// The decision stages of a configuration directory for the CLI (the pipeline, and the
/// model stage when asked for), or the errors printed.
struct Decider {
    pipeline: Pipeline,
    model: Option<ModelStage>,
    router_weight: f32,
}

impl Decider {
    fn open(dir: &Path, with_model: bool) -> Option<Decider> {
        let config = load(dir)?;
        let pipeline = match Pipeline::new(&config, None) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("kefu-edge: {e:#}");
                return None;
            }
        };
        let model = if with_model {
            match ModelStage::start(&config.model, BatchMetrics::unregistered()) {
                Ok(m) => Some(m),
                Err(e) => {
                    eprintln!("kefu-edge: model stage: {e}");
                    return None;
                }
            }
        } else {
            None
        };
        Some(Decider {
            pipeline,
            model,
            router_weight: config.model.router_weight,
        })
    }

    /// The fast-path decision; for a message it hands on, the model's intent when the
    /// model stage runs (a model failure leaves the router's guess).
    fn decide(&self, text: &str) -> Decision {
        self.decide_in_context(text, &Context::NONE).0
    }

    /// [`Decider::decide`] for a message of a dialogue; the flag says whether the context
    /// decided (then no model is asked).
    fn decide_in_context(&self, text: &str, context: &Context<'_>) -> (Decision, bool) {
        let (d, by_context) = self.pipeline.decide_in_context(text, context);
        if by_context {
            return (d, true);
        }
        let d = match (&self.model, d.stage) {
            (Some(model), Stage::Model) => match model.classify_blocking(text) {
                Ok(p) => {
                    let p = self.pipeline.model_intent(text, &p, self.router_weight);
                    Decision {
                        intent: p.intent,
                        confidence: p.prob,
                        stage: Stage::Model,
                    }
                }
                Err(e) => {
                    eprintln!("kefu-edge: model stage: {e}");
                    d
                }
            },
            _ => d,
        };
        (d, false)
    }
}

fn evaluate(dir: &Path, file: &Path, with_model: bool) -> ExitCode {
    let Some(decider) = Decider::open(dir, with_model) else {
        return ExitCode::FAILURE;
    };
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("kefu-edge: {}: {e}", file.display());
            return ExitCode::FAILURE;
        }
    };
    let mut eval = Evaluation::default();
    for (n, line) in text.lines().enumerate() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let parsed = line
            .rsplit_once('\t')
            .map(|(t, i)| (t, i.trim().parse::<Intent>()));
        let Some((message, Ok(truth))) = parsed else {
            eprintln!(
                "kefu-edge: {}:{}: expected `text<TAB>intent`",
                file.display(),
                n + 1
            );
            return ExitCode::FAILURE;
        };
        eval.add(truth, &decider.decide(message));
    }
    print!("{}", eval.report());
    ExitCode::SUCCESS
}

fn train_router(dir: &Path, opts: &TrainOptions) -> ExitCode {
    let config = match Config::load_for_training(dir) {
        Ok(c) => c,
        Err(errors) => {
            for e in &errors.0 {
                eprintln!("kefu-edge: {e}");
            }
            return ExitCode::FAILURE;
        }
    };
    let started = std::time::Instant::now();
    match train(&config, opts) {
        Ok(trained) => {
            for (name, report) in &trained.reports {
                println!("== {name}\n{report}");
            }
            let m = &trained.manifest;
            let f = &trained.fit;
            println!(
                "fit: {} rows, {} L-BFGS iterations, loss {:.3} ({})",
                f.rows, f.iterations, f.loss, f.stopped
            );
            println!(
                "wrote {} ({} bytes) and manifest.json to {} in {:.1} s; thresholds: global {:.2}, raised {:?}",
                m.model_file,
                m.model_bytes,
                opts.out_dir.display(),
                started.elapsed().as_secs_f64(),
                m.thresholds.global,
                m.thresholds.per_intent
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("kefu-edge: train-router: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn eval_dialogues(dir: &Path, file: &Path, with_model: bool) -> ExitCode {
    let Some(decider) = Decider::open(dir, with_model) else {
        return ExitCode::FAILURE;
    };
    let run = || -> anyhow::Result<kefu_edge::dialog::eval::Report> {
        let text = std::fs::read_to_string(file)
            .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
        let turns = kefu_edge::dialog::eval::parse(&text)?;
        Ok(kefu_edge::dialog::eval::run(&turns, |text, context| {
            decider.decide_in_context(text, context)
        }))
    };
    match run() {
        Ok(report) => {
            print!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("kefu-edge: eval-dialogues: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn classify(dir: &Path, with_model: bool) -> ExitCode {
    let Some(decider) = Decider::open(dir, with_model) else {
        return ExitCode::FAILURE;
    };
    let stdin = std::io::stdin().lock();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for line in stdin.lines() {
        let Ok(line) = line else {
            eprintln!("kefu-edge: stdin is not UTF-8");
            return ExitCode::FAILURE;
        };
        let d = decider.decide(line.trim_end_matches('\r'));
        if writeln!(
            out,
            "{}\t{:.4}\t{}",
            d.intent,
            d.confidence,
            d.stage.as_str()
        )
        .is_err()
        {
            return ExitCode::FAILURE;
        }
    }
    if out.flush().is_err() {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// Bind and release every listener address, to report a busy or forbidden port now.
fn check_listeners(cfg: &kefu_edge::config::ServerConfig) -> Result<(), String> {
    for addr in cfg.chat_listen.iter().chain(&cfg.admin_listen) {
        std::net::TcpListener::bind(addr.as_str())
            .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    }
    Ok(())
}

fn serve(cli: Cli, hangup: HangupPipe) -> ExitCode {
    let Some(config) = load(&cli.conf) else {
        return ExitCode::FAILURE;
    };
    let metrics = match Metrics::new() {
        Ok(m) => Arc::new(m),
        Err(e) => {
            eprintln!("kefu-edge: metrics: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let server_cfg = config.server.clone();
    let model_cfg = config.model.clone();
    // Loaded before listening, so the first request finds it. Threads do not survive the
    // fork of --daemon: there it is only checked here and loaded again after the fork.
    let model = match ModelStage::start(&model_cfg, metrics.model_batch.clone()) {
        Ok(stage) if !cli.daemon => Arc::new(stage),
        Ok(_) => Arc::new(ModelStage::disabled(metrics.model_batch.clone())),
        Err(e) => {
            eprintln!("kefu-edge: {}: model stage: {e}", cli.conf.display());
            return ExitCode::FAILURE;
        }
    };
    let snapshot = match Snapshot::build(config, 1, None) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("kefu-edge: {}: {e:#}", cli.conf.display());
            return ExitCode::FAILURE;
        }
    };
    // Pingora retries a busy port for 30 s, then its listener thread panics and the process
    // lives on without that listener. Fail at once instead, like nginx, so a supervisor sees
    // it. (With -u the ports are busy by design: the old process hands them over.)
    if !cli.upgrade
        && let Err(e) = check_listeners(&server_cfg)
    {
        eprintln!("kefu-edge: {e}");
        return ExitCode::FAILURE;
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
            "model stage",
            LoadModelAfterFork {
                stage: Arc::clone(&model),
                cfg: model_cfg,
            },
        ));
    }
    let reloader = Arc::new(Reloader::new(
        cli.conf.clone(),
        snapshot,
        Arc::clone(&metrics),
        Arc::clone(&model),
    ));
    let state = Arc::clone(&reloader.current);

    let mut chat = pingora::proxy::http_proxy_service_with_name(
        &server.configuration,
        KefuProxy::new(Arc::clone(&state), Arc::clone(&metrics), model),
        "chat",
    );
    for addr in &server_cfg.chat_listen {
        chat.add_tcp(addr);
    }
    chat.threads = Some(server_cfg.threads);

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

    server.add_service(chat);
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

/// Loads the model stage once the server runs (after the fork of --daemon).
struct LoadModelAfterFork {
    stage: Arc<ModelStage>,
    cfg: kefu_edge::config::ModelConfig,
}

#[async_trait::async_trait]
impl pingora::services::background::BackgroundService for LoadModelAfterFork {
    async fn start(&self, _shutdown: pingora::server::ShutdownWatch) {
        self.stage.apply(&self.cfg);
    }
}
