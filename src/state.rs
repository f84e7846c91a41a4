//! The serving state built from one configuration, and the reloader that replaces it.
//!
//! A [`Snapshot`] holds every compiled stage; requests load the current one from an
//! `ArcSwap` and keep it for their whole life, so a reload never changes the rules under a
//! request in flight. A reload parses and validates the whole directory, builds a new
//! snapshot (reusing token buckets and upstream pools whose configuration is unchanged, so
//! their counters and health survive), and publishes it with one atomic store. Anything
//! wrong is logged and counted, and the old snapshot keeps serving.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use jiff::Timestamp;
use serde::Serialize;

use crate::config::{Config, ConfigErrors};
use crate::dialog::Dialog;
use crate::edge::EdgeFilter;
use crate::limits::{LimitMetrics, Limiters};
use crate::metrics::Metrics;
use crate::model::ModelStage;
use crate::pipeline::Pipeline;
use crate::rollout::{Rollout, Step, StepError, Steps};
use crate::upstream::Upstreams;

pub struct Snapshot {
    pub generation: u64,
    pub config: Config,
    pub edge: EdgeFilter,
    pub limits: Arc<Limiters>,
    pub pipeline: Pipeline,
    pub upstreams: Upstreams,
    pub dialog: Dialog,
}

impl Snapshot {
    /// Compile every stage of `config`, reusing what `previous` built from equal sections.
    pub fn build(
        config: Config,
        generation: u64,
        previous: Option<&Snapshot>,
        limit_metrics: &LimitMetrics,
    ) -> anyhow::Result<Snapshot> {
        let limits = match previous {
            Some(p) if p.config.limits == config.limits => Arc::clone(&p.limits),
            _ => Arc::new(Limiters::new(&config.limits, limit_metrics.clone())?),
        };
        Ok(Snapshot {
            generation,
            edge: EdgeFilter::new(&config.edge)?,
            pipeline: Pipeline::new(&config, previous.map(|p| &p.pipeline))?,
            upstreams: Upstreams::new(&config.upstreams, previous.map(|p| &p.upstreams))?,
            dialog: Dialog::new(&config.dialog, previous.map(|p| &p.dialog))?,
            limits,
            config,
        })
    }
}

/// What the admin listener reports about reloads.
#[derive(Debug, Clone, Serialize, Default)]
pub struct ReloadStatus {
    pub generation: u64,
    pub reloads_ok: u64,
    pub reloads_failed: u64,
    pub last: Option<LastReload>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LastReload {
    pub at: String,
    pub ok: bool,
    pub errors: Vec<String>,
}

/// Owns the current snapshot and replaces it on request (SIGHUP or the admin endpoint).
pub struct Reloader {
    dir: PathBuf,
    pub current: Arc<ArcSwap<Snapshot>>,
    status: Mutex<ReloadStatus>,
    metrics: Arc<Metrics>,
    /// Loads model versions in the background when `model.yaml` changes.
    pub model: Arc<ModelStage>,
    /// Rollout steps taken through the admin API over `model.yaml`'s.
    steps: Mutex<Steps>,
}

/// Why a rollout step was not taken.
#[derive(Debug)]
pub enum StepFailure {
    /// The step makes no sense for what serves now.
    Refused(StepError),
    /// The configuration directory no longer loads; the step was undone.
    Reload(Vec<String>),
}

impl Reloader {
    pub fn new(
        dir: PathBuf,
        first: Snapshot,
        metrics: Arc<Metrics>,
        model: Arc<ModelStage>,
    ) -> Reloader {
        metrics.config_generation.set(first.generation as i64);
        metrics.last_reload_success.set(1);
        let status = ReloadStatus {
            generation: first.generation,
            ..ReloadStatus::default()
        };
        Reloader {
            dir,
            current: Arc::new(ArcSwap::from_pointee(first)),
            status: Mutex::new(status),
            metrics,
            model,
            steps: Mutex::new(Steps::default()),
        }
    }

    pub fn status(&self) -> ReloadStatus {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Re-read the directory and swap it in if it is valid. Serialised by the status lock,
    /// so two reloads never interleave.
    pub fn reload(&self) -> Result<u64, Vec<String>> {
        let mut status = self.status.lock().unwrap_or_else(|e| e.into_inner());
        self.reload_locked(&mut status)
    }

    /// Take a rollout step over what serves now, and reload to apply it (the versions load
    /// in the background). Returns the new generation and rollout.
    pub fn rollout_step(&self, step: Step) -> Result<(u64, Rollout), StepFailure> {
        // Under the status lock: no reload or other step runs meanwhile.
        let mut status = self.status.lock().unwrap_or_else(|e| e.into_inner());
        let serving = Rollout::of(&self.current.load().config.model);
        let (saved, next) = {
            let mut steps = self.steps.lock().unwrap_or_else(|e| e.into_inner());
            let saved = steps.save();
            let next = steps.take(&serving, step).map_err(StepFailure::Refused)?;
            (saved, next)
        };
        match self.reload_locked(&mut status) {
            Ok(generation) => {
                log::info!(
                    "model rollout set through the admin API: {next}; model.yaml is unchanged: write these there to keep them after a restart"
                );
                Ok((generation, next))
            }
            Err(errors) => {
                self.steps
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .undo(saved);
                Err(StepFailure::Reload(errors))
            }
        }
    }

    /// The rollout `model.yaml` says, when admin steps serve another one over it, and how
    /// many steps were taken.
    pub fn rollout_steps(&self) -> Option<(Rollout, usize)> {
        let steps = self.steps.lock().unwrap_or_else(|e| e.into_inner());
        steps.over_file().map(|(f, n)| (f.clone(), n))
    }

    fn reload_locked(&self, status: &mut ReloadStatus) -> Result<u64, Vec<String>> {
        let previous = self.current.load_full();
        let generation = previous.generation + 1;
        let result = Config::load(&self.dir)
            .map_err(|ConfigErrors(errors)| errors.iter().map(ToString::to_string).collect::<Vec<_>>())
            .and_then(|mut config| {
                self.apply_steps(&mut config);
                if previous.config.server.needs_restart(&config.server) {
                    log::warn!(
                        "server.yaml: listeners, threads or shutdown settings changed; they take effect after a restart"
                    );
                }
                if previous.config.model.runtime.library != config.model.runtime.library {
                    log::warn!(
                        "model.yaml: runtime.library changed; ONNX Runtime is loaded once, the new library is used after a restart"
                    );
                }
                Snapshot::build(config, generation, Some(&previous), &self.metrics.limits).map_err(|e| vec![format!("{e:#}")])
            });
        let at = Timestamp::now().to_string();
        let status = &mut *status;
        match result {
            Ok(snapshot) => {
                if snapshot.config.model != previous.config.model {
                    // Loaded and warmed off this thread; swapped in when ready.
                    self.model.apply(&snapshot.config.model);
                }
                self.current.store(Arc::new(snapshot));
                status.generation = generation;
                status.reloads_ok += 1;
                status.last = Some(LastReload {
                    at,
                    ok: true,
                    errors: vec![],
                });
                self.metrics.reloads_ok.inc();
                self.metrics.config_generation.set(generation as i64);
                self.metrics.last_reload_success.set(1);
                log::info!(
                    "configuration reloaded from {} (generation {generation})",
                    self.dir.display()
                );
                Ok(generation)
            }
            Err(errors) => {
                status.reloads_failed += 1;
                status.last = Some(LastReload {
                    at,
                    ok: false,
                    errors: errors.clone(),
                });
                self.metrics.reloads_failed.inc();
                self.metrics.last_reload_success.set(0);
                for e in &errors {
                    log::error!(
                        "reload refused, keeping generation {}: {e}",
                        previous.generation
                    );
                }
                Err(errors)
            }
        }
    }

    /// Serve the admin steps' rollout over the file's, while the file has not changed since.
    fn apply_steps(&self, config: &mut Config) {
        let file = Rollout::of(&config.model);
        let (serve, dropped) = self
            .steps
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .resolve(&file);
        if dropped {
            log::warn!(
                "model.yaml's rollout changed ({file}): it replaces the one set through the admin API"
            );
        }
        serve.apply_to(&mut config.model);
    }
}
