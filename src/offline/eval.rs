//! Scoring the two-stage decision against labelled messages: what `classify --eval` prints
//! and what `train-router` writes into a model's manifest.
//!
//! - accuracy: the decided intent is the true one (whichever stage decided);
//! - fast-path coverage: of the messages whose true intent is `fast`, the share the fast path
//!   answered;
//! - fast-path precision: of the messages the fast path answered, the share with the true
//!   intent (a wrong fast answer is the expensive mistake: the shopper gets the wrong reply).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::intent::{Intent, Tier};
use crate::pipeline::{Decision, Stage};
use crate::router::manifest::Metrics;

#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    /// Decided this intent, correctly.
    tp: usize,
    /// Decided this intent, wrongly.
    fp: usize,
    /// Truly this intent, decided otherwise.
    fn_: usize,
}

#[derive(Debug, Clone, Default)]
pub struct Evaluation {
    n: usize,
    correct: usize,
    truth_fast: usize,
    truth_fast_answered: usize,
    answered: usize,
    answered_correct: usize,
    per_intent: BTreeMap<Intent, Counts>,
    confusions: BTreeMap<(Intent, Intent), usize>,
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

impl Evaluation {
    pub fn add(&mut self, truth: Intent, decision: &Decision) {
        self.n += 1;
        let right = decision.intent == truth;
        self.correct += usize::from(right);
        if truth.tier() == Tier::Fast {
            self.truth_fast += 1;
            self.truth_fast_answered += usize::from(decision.stage == Stage::Rule);
        }
        if decision.stage == Stage::Rule {
            self.answered += 1;
            self.answered_correct += usize::from(right);
        }
        if right {
            self.per_intent.entry(truth).or_default().tp += 1;
        } else {
            self.per_intent.entry(decision.intent).or_default().fp += 1;
            self.per_intent.entry(truth).or_default().fn_ += 1;
            *self.confusions.entry((truth, decision.intent)).or_default() += 1;
        }
    }

    pub fn metrics(&self) -> Metrics {
        Metrics {
            examples: self.n,
            accuracy: ratio(self.correct, self.n),
            fast_coverage: ratio(self.truth_fast_answered, self.truth_fast),
            fast_precision: ratio(self.answered_correct, self.answered),
        }
    }

    /// A report for people: headline figures, per-intent precision/recall, worst confusions.
    pub fn report(&self) -> String {
        let m = self.metrics();
        let mut out = String::new();
        let _ = writeln!(out, "examples            {}", m.examples);
        let _ = writeln!(
            out,
            "accuracy            {:.4}  ({}/{})",
            m.accuracy, self.correct, self.n
        );
        let _ = writeln!(
            out,
            "fast-path coverage  {:.4}  ({}/{} fast-intent messages answered by the fast path)",
            m.fast_coverage, self.truth_fast_answered, self.truth_fast
        );
        let _ = writeln!(
            out,
            "fast-path precision {:.4}  ({}/{} fast-path answers correct)",
            m.fast_precision, self.answered_correct, self.answered
        );
        let _ = writeln!(
            out,
            "\nintent               tier   precision  recall   support"
        );
        for (intent, c) in &self.per_intent {
            let tier = if intent.tier() == Tier::Fast {
                "fast"
            } else {
                "model"
            };
            let _ = writeln!(
                out,
                "{:<20} {:<5}  {:>9.3}  {:>6.3}   {:>7}",
                intent.as_str(),
                tier,
                ratio(c.tp, c.tp + c.fp),
                ratio(c.tp, c.tp + c.fn_),
                c.tp + c.fn_
            );
        }
        let mut worst: Vec<_> = self.confusions.iter().collect();
        worst.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let _ = writeln!(out, "\nworst confusions (true -> decided: count)");
        for ((truth, decided), n) in worst.into_iter().take(15) {
            let _ = writeln!(out, "  {truth} -> {decided}: {n}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(intent: Intent, stage: Stage) -> Decision {
        Decision {
            intent,
            confidence: 1.0,
            stage,
        }
    }

    #[test]
    fn figures_follow_their_definitions() {
        let mut e = Evaluation::default();
        e.add(Intent::Coupon, &d(Intent::Coupon, Stage::Rule)); // fast, answered, right
        e.add(Intent::Coupon, &d(Intent::Invoice, Stage::Rule)); // fast, answered, wrong
        e.add(Intent::Invoice, &d(Intent::Invoice, Stage::Model)); // fast, not answered, right
        e.add(Intent::Complaint, &d(Intent::Complaint, Stage::Model)); // model intent
        let m = e.metrics();
        assert_eq!(m.examples, 4);
        assert_eq!(m.accuracy, 0.75);
        assert!((m.fast_coverage - 2.0 / 3.0).abs() < 1e-9);
        assert_eq!(m.fast_precision, 0.5);
        let r = e.report();
        assert!(r.contains("coupon -> invoice: 1"), "{r}");
    }
}
