//! Model rollout steps taken through the admin API (`POST /admin/model/{promote,gray,
//! rollback}`) over what `model.yaml` says (`active`, `candidate`, `gray_percent`).
//!
//! `model.yaml` stays the source of truth: a step is kept over it only while the file still
//! says what it said when the first step was taken. Once the operator writes a new rollout
//! into the file (and reloads), the file wins and the steps are dropped, with a log line.
//! Steps live in memory: after a restart the file's rollout serves (each step's log line says
//! so, and what to write to keep it). Only versions the file named are ever served: a
//! promotion swaps the two names it has, a gray step changes a percentage.

use serde::Serialize;

use crate::config::ModelConfig;

/// Which versions serve whom.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rollout {
    pub active: String,
    pub candidate: Option<String>,
    pub gray_percent: u8,
}

/// A step an operator takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The candidate serves everyone; the active version stays loaded as the candidate at
    /// 0%, so a rollback is a swap of warm sessions.
    Promote,
    /// The candidate serves this percentage of users.
    Gray(u8),
    /// Back to the rollout before the last step.
    Rollback,
}

/// Why a step cannot be taken (the admin API answers 409).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StepError {
    #[error("no candidate version: set `candidate` in model.yaml and reload first")]
    NoCandidate,
    #[error("gray percent must be within 0..=100")]
    Percent,
    #[error("nothing to roll back: the versions served are model.yaml's")]
    NothingToRollBack,
}

impl Rollout {
    pub fn of(cfg: &ModelConfig) -> Rollout {
        Rollout {
            active: cfg.active.clone(),
            candidate: cfg.candidate.clone(),
            gray_percent: cfg.gray_percent,
        }
    }

    pub fn apply_to(&self, cfg: &mut ModelConfig) {
        cfg.active.clone_from(&self.active);
        cfg.candidate.clone_from(&self.candidate);
        cfg.gray_percent = self.gray_percent;
    }
}

impl std::fmt::Display for Rollout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "active: {}, candidate: ", self.active)?;
        match &self.candidate {
            Some(c) => write!(f, "{c}")?,
            None => write!(f, "null")?,
        }
        write!(f, ", gray_percent: {}", self.gray_percent)
    }
}

/// The steps taken over the file's rollout.
#[derive(Debug, Default)]
pub struct Steps {
    /// The file's rollout when the first step was taken.
    file: Option<Rollout>,
    /// The rollout before each step, oldest first.
    before: Vec<Rollout>,
    /// The rollout the steps lead to.
    current: Option<Rollout>,
}

impl Steps {
    /// What to serve for a freshly read `file` rollout, and whether steps were dropped
    /// because the file changed since they were taken.
    pub fn resolve(&mut self, file: &Rollout) -> (Rollout, bool) {
        match (&self.file, &self.current) {
            (Some(base), Some(current)) if base == file => (current.clone(), false),
            (Some(_), _) => {
                *self = Steps::default();
                (file.clone(), true)
            }
            _ => (file.clone(), false),
        }
    }

    /// Take `step` from `serving`, the rollout served now; returns the new one.
    pub fn take(&mut self, serving: &Rollout, step: Step) -> Result<Rollout, StepError> {
        let next = match step {
            Step::Promote => {
                let candidate = serving.candidate.clone().ok_or(StepError::NoCandidate)?;
                Rollout {
                    active: candidate,
                    candidate: Some(serving.active.clone()),
                    gray_percent: 0,
                }
            }
            Step::Gray(percent) => {
                if percent > 100 {
                    return Err(StepError::Percent);
                }
                if serving.candidate.is_none() {
                    return Err(StepError::NoCandidate);
                }
                Rollout {
                    gray_percent: percent,
                    ..serving.clone()
                }
            }
            Step::Rollback => {
                let previous = self.before.pop().ok_or(StepError::NothingToRollBack)?;
                if self.before.is_empty() {
                    // Back where the file is: no steps are left.
                    *self = Steps::default();
                } else {
                    self.current = Some(previous.clone());
                }
                return Ok(previous);
            }
        };
        if self.file.is_none() {
            self.file = Some(serving.clone());
        }
        self.before.push(serving.clone());
        self.current = Some(next.clone());
        Ok(next)
    }

    /// Forget the last step (it could not be applied).
    pub fn undo(&mut self, restore: Steps) {
        *self = restore;
    }

    /// A copy to restore with [`Steps::undo`].
    pub fn save(&self) -> Steps {
        Steps {
            file: self.file.clone(),
            before: self.before.clone(),
            current: self.current.clone(),
        }
    }

    /// The file's rollout the steps were taken over, and how many steps there are.
    pub fn over_file(&self) -> Option<(&Rollout, usize)> {
        self.file.as_ref().map(|f| (f, self.before.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(active: &str, candidate: Option<&str>, gray: u8) -> Rollout {
        Rollout {
            active: active.into(),
            candidate: candidate.map(Into::into),
            gray_percent: gray,
        }
    }

    #[test]
    fn gray_promote_and_roll_back_step_by_step() {
        let file = r("v2", Some("v3"), 0);
        let mut steps = Steps::default();
        assert_eq!(steps.resolve(&file), (file.clone(), false));
        let gray = steps.take(&file, Step::Gray(10)).unwrap();
        assert_eq!(gray, r("v2", Some("v3"), 10));
        let promoted = steps.take(&gray, Step::Promote).unwrap();
        assert_eq!(promoted, r("v3", Some("v2"), 0));
        // A reload of the unchanged file keeps serving the steps' rollout.
        assert_eq!(steps.resolve(&file), (promoted.clone(), false));
        assert_eq!(steps.over_file(), Some((&file, 2)));
        assert_eq!(steps.take(&promoted, Step::Rollback).unwrap(), gray);
        assert_eq!(steps.resolve(&file), (gray.clone(), false));
        assert_eq!(steps.take(&gray, Step::Rollback).unwrap(), file);
        assert_eq!(steps.over_file(), None);
        assert_eq!(
            steps.take(&file, Step::Rollback),
            Err(StepError::NothingToRollBack)
        );
    }

    #[test]
    fn the_file_wins_once_it_changes() {
        let file = r("v2", Some("v3"), 0);
        let mut steps = Steps::default();
        steps.take(&file, Step::Promote).unwrap();
        let written = r("v3", None, 0);
        assert_eq!(steps.resolve(&written), (written.clone(), true));
        assert_eq!(steps.over_file(), None);
        assert_eq!(steps.resolve(&written), (written, false));
    }

    #[test]
    fn steps_need_a_candidate_and_a_percentage() {
        let mut steps = Steps::default();
        let alone = r("v2", None, 0);
        assert_eq!(
            steps.take(&alone, Step::Promote),
            Err(StepError::NoCandidate)
        );
        assert_eq!(
            steps.take(&alone, Step::Gray(5)),
            Err(StepError::NoCandidate)
        );
        let with = r("v2", Some("v3"), 0);
        assert_eq!(steps.take(&with, Step::Gray(101)), Err(StepError::Percent));
        assert_eq!(steps.over_file(), None, "a refused step leaves nothing");
    }

    #[test]
    fn an_undone_step_is_forgotten() {
        let file = r("v2", Some("v3"), 0);
        let mut steps = Steps::default();
        let saved = steps.save();
        steps.take(&file, Step::Promote).unwrap();
        steps.undo(saved);
        assert_eq!(steps.over_file(), None);
        assert_eq!(steps.resolve(&file), (file, false));
    }
}
