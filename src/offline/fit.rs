//! Fitting the router: L2-regularised softmax regression over the hashed features of
//! `features`, minimised to convergence with L-BFGS (the `argmin` crate).
//!
//! A convex objective minimised to convergence has one answer, so training needs no seed, no
//! learning-rate schedule and no epoch count, and the same examples in the same order give the
//! same model bit for bit (the sums below run in a fixed order on one thread).
//!
//! Objective, as scikit-learn's `LogisticRegression(C)` writes it:
//! `Σ_i −log p(y_i | x_i) + ‖W‖² / (2C)`, biases unpenalised, each message's features
//! weighted `1/sqrt(n)`. Buckets seen in fewer than `min_count` training messages get no row.
//! A message may instead have a distribution over intents to match (a teacher's, `teacher`):
//! its term is the cross-entropy `−Σ_k t_k log p(k | x_i)`, still convex; a label is the
//! distribution with all its mass on one intent, and gives exactly the term above.

use std::cell::RefCell;
use std::collections::BTreeMap;

use argmin::core::{CostFunction, Executor, Gradient, State};
use argmin::solver::linesearch::MoreThuenteLineSearch;
use argmin::solver::quasinewton::LBFGS;

use crate::intent::Intent;
use crate::router::features;
use crate::router::manifest::TrainParams;
use crate::router::trained::TrainedRouter;

/// One training message as the objective sees it.
struct Sample {
    /// Indices of its kept features (model rows).
    rows: Vec<u32>,
    /// The weight of each feature: `1/sqrt(rows.len())`.
    x: f64,
    /// The distribution to match, as (label index, mass), masses summing to 1.
    target: Vec<(usize, f64)>,
    /// How much its term counts in the loss (1 unless the caller weighs its sources).
    weight: f64,
}

/// What one training message should score: (intent, mass) pairs whose masses sum to 1; a
/// label is `[(intent, 1.0)]`.
pub type Target = Vec<(Intent, f64)>;

/// A point, its cost and its gradient.
type Evaluated = (Vec<f64>, f64, Vec<f64>);

struct Objective {
    samples: Vec<Sample>,
    n_labels: usize,
    n_rows: usize,
    /// `1/C`.
    penalty: f64,
    /// The last point evaluated: L-BFGS asks for the cost and the gradient of the same point
    /// separately, and one pass computes both.
    last: RefCell<Option<Evaluated>>,
}

impl Objective {
    fn evaluate(&self, w: &[f64]) -> (f64, Vec<f64>) {
        if let Some((p, f, g)) = self.last.borrow().as_ref()
            && p.as_slice() == w
        {
            return (*f, g.clone());
        }
        let l = self.n_labels;
        let bias_at = self.n_rows * l;
        let mut grad = vec![0.0; w.len()];
        let mut loss = 0.0;
        let mut scores = vec![0.0f64; l];
        for s in &self.samples {
            scores.copy_from_slice(&w[bias_at..]);
            for &r in &s.rows {
                let row = &w[r as usize * l..(r as usize + 1) * l];
                scores.iter_mut().zip(row).for_each(|(a, b)| *a += s.x * b);
            }
            let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let total: f64 = scores.iter().map(|v| (v - max).exp()).sum();
            // −Σ t_k (score_k − max − ln total), with Σ t_k = 1.
            let mut term = max + total.ln();
            for &(k, t) in &s.target {
                term -= t * scores[k];
            }
            loss += s.weight * term;
            // d loss / d score = weight · (p − t)
            for v in scores.iter_mut() {
                *v = (*v - max).exp() / total;
            }
            for &(k, t) in &s.target {
                scores[k] -= t;
            }
            if s.weight != 1.0 {
                scores.iter_mut().for_each(|d| *d *= s.weight);
            }
            for &r in &s.rows {
                let row = &mut grad[r as usize * l..(r as usize + 1) * l];
                row.iter_mut().zip(&scores).for_each(|(g, d)| *g += s.x * d);
            }
            grad[bias_at..]
                .iter_mut()
                .zip(&scores)
                .for_each(|(g, d)| *g += d);
        }
        for (g, v) in grad[..bias_at].iter_mut().zip(&w[..bias_at]) {
            loss += 0.5 * self.penalty * v * v;
            *g += self.penalty * v;
        }
        *self.last.borrow_mut() = Some((w.to_vec(), loss, grad.clone()));
        (loss, grad)
    }
}

impl CostFunction for Objective {
    type Param = Vec<f64>;
    type Output = f64;

    fn cost(&self, w: &Vec<f64>) -> Result<f64, argmin::core::Error> {
        Ok(self.evaluate(w).0)
    }
}

impl Gradient for Objective {
    type Param = Vec<f64>;
    type Gradient = Vec<f64>;

    fn gradient(&self, w: &Vec<f64>) -> Result<Vec<f64>, argmin::core::Error> {
        Ok(self.evaluate(w).1)
    }
}

/// What the optimiser did, for the training report.
#[derive(Debug, Clone)]
pub struct FitReport {
    pub iterations: u64,
    pub loss: f64,
    pub rows: usize,
    pub stopped: String,
}

/// Fit a router on `(message, target)` pairs, in the order given.
pub fn fit(
    examples: &[(&str, Target)],
    params: &TrainParams,
) -> anyhow::Result<(TrainedRouter, FitReport)> {
    fit_weighted(examples, &vec![1.0; examples.len()], params)
}

/// [`fit`] with a weight per example: its term in the loss counts `weights[i]` times (so a
/// source can count more or less than another). All weights 1 is exactly [`fit`].
pub fn fit_weighted(
    examples: &[(&str, Target)],
    weights: &[f64],
    params: &TrainParams,
) -> anyhow::Result<(TrainedRouter, FitReport)> {
    anyhow::ensure!(!examples.is_empty(), "no training examples");
    anyhow::ensure!(weights.len() == examples.len(), "one weight per example");
    anyhow::ensure!(
        weights.iter().all(|w| w.is_finite() && *w > 0.0),
        "example weights must be positive"
    );
    anyhow::ensure!(params.c > 0.0, "c must be positive");
    // Labels in intent order, so the file does not depend on which examples come first.
    let mut labels: Vec<Intent> = examples
        .iter()
        .flat_map(|(_, t)| t.iter().map(|(i, _)| *i))
        .collect();
    labels.sort_by_key(|i| i.index());
    labels.dedup();
    let label_of: BTreeMap<Intent, usize> =
        labels.iter().enumerate().map(|(j, &i)| (i, j)).collect();

    let mut tokens = String::new();
    let hashed: Vec<Vec<u32>> = examples
        .iter()
        .map(|(text, _)| {
            tokens.clear();
            features::tokens_into(text, &mut tokens);
            let mut f = Vec::new();
            features::hashed_into(&tokens, params.buckets, &mut f);
            f
        })
        .collect();
    let mut seen: BTreeMap<u32, u32> = BTreeMap::new();
    for f in &hashed {
        for &b in f {
            *seen.entry(b).or_default() += 1;
        }
    }
    // Kept buckets in bucket order: row r of the model is the r-th kept bucket.
    let kept: Vec<u32> = seen
        .into_iter()
        .filter(|&(_, n)| n >= params.min_count)
        .map(|(b, _)| b)
        .collect();
    let row_of: BTreeMap<u32, u32> = kept
        .iter()
        .enumerate()
        .map(|(r, &b)| (b, r as u32))
        .collect();
    let samples: Vec<Sample> = hashed
        .iter()
        .zip(examples.iter().zip(weights))
        .filter(|(f, _)| !f.is_empty())
        .map(|(f, ((_, target), &weight))| {
            let rows: Vec<u32> = f.iter().filter_map(|b| row_of.get(b).copied()).collect();
            let x = if rows.is_empty() {
                0.0
            } else {
                1.0 / (rows.len() as f64).sqrt()
            };
            Sample {
                rows,
                x,
                target: target.iter().map(|(i, t)| (label_of[i], *t)).collect(),
                weight,
            }
        })
        .collect();

    let n_labels = labels.len();
    let objective = Objective {
        samples,
        n_labels,
        n_rows: kept.len(),
        penalty: 1.0 / params.c,
        last: RefCell::new(None),
    };
    let start = vec![0.0; (kept.len() + 1) * n_labels];
    let solver = LBFGS::new(MoreThuenteLineSearch::new(), 10)
        .with_tolerance_grad(params.tolerance)?
        .with_tolerance_cost(0.0)?;
    let result = Executor::new(objective, solver)
        .configure(|state| state.param(start).max_iters(params.max_iters))
        .run()
        .map_err(|e| anyhow::anyhow!("fitting the router: {e}"))?;
    let state = result.state();
    let w = state
        .get_best_param()
        .ok_or_else(|| anyhow::anyhow!("the optimiser returned no parameters"))?;
    let report = FitReport {
        iterations: state.get_iter(),
        loss: state.get_best_cost(),
        rows: kept.len(),
        stopped: format!("{}", state.get_termination_status()),
    };
    let bias_at = kept.len() * n_labels;
    let rows = kept
        .iter()
        .enumerate()
        .map(|(r, &b)| {
            let row = &w[r * n_labels..(r + 1) * n_labels];
            (b, row.iter().map(|&v| v as f32).collect())
        })
        .collect();
    let bias = w[bias_at..].iter().map(|&v| v as f32).collect();
    Ok((
        TrainedRouter::from_parts(params.buckets, labels, bias, rows)?,
        report,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The analytic gradient agrees with finite differences (so the optimiser minimises the
    /// objective it claims to).
    #[test]
    fn gradient_matches_finite_differences() {
        let samples = vec![
            Sample {
                rows: vec![0, 1],
                x: 0.5f64.sqrt(),
                target: vec![(0, 1.0)],
                weight: 1.0,
            },
            Sample {
                rows: vec![1, 2],
                x: 0.5f64.sqrt(),
                target: vec![(1, 0.7), (2, 0.3)],
                weight: 2.5,
            },
            Sample {
                rows: vec![],
                x: 0.0,
                target: vec![(2, 1.0)],
                weight: 0.5,
            },
        ];
        let o = Objective {
            samples,
            n_labels: 3,
            n_rows: 3,
            penalty: 0.3,
            last: RefCell::new(None),
        };
        let w: Vec<f64> = (0..12).map(|i| (i as f64 * 0.37).sin()).collect();
        let (_, g) = o.evaluate(&w);
        for k in 0..w.len() {
            let (mut up, mut down) = (w.clone(), w.clone());
            up[k] += 1e-6;
            down[k] -= 1e-6;
            let numeric = (o.evaluate(&up).0 - o.evaluate(&down).0) / 2e-6;
            assert!((numeric - g[k]).abs() < 1e-5, "{k}: {numeric} vs {}", g[k]);
        }
    }

    #[test]
    fn fits_separable_messages_and_is_deterministic() {
        let examples = [
            ("我要退款", Intent::RefundApply),
            ("申请退款怎么弄", Intent::RefundApply),
            ("退款退款", Intent::RefundApply),
            ("开发票", Intent::Invoice),
            ("发票抬头写公司", Intent::Invoice),
            ("电子发票在哪", Intent::Invoice),
        ];
        let params = TrainParams {
            min_count: 1,
            ..TrainParams::default()
        };
        let examples: Vec<(&str, Target)> = examples
            .iter()
            .map(|&(text, intent)| (text, vec![(intent, 1.0)]))
            .collect();
        let (a, report) = fit(&examples, &params).unwrap();
        let (b, _) = fit(&examples, &params).unwrap();
        assert!(a.to_bytes() == b.to_bytes(), "same inputs, same model");
        assert!(
            report.iterations > 0 && report.loss.is_finite(),
            "{report:?}"
        );
        assert_eq!(a.labels(), &[Intent::RefundApply, Intent::Invoice]);
        for (text, target) in &examples {
            assert_eq!(a.classify(text).unwrap().intent, target[0].0, "{text}");
        }
        assert_eq!(a.classify("退款吧").unwrap().intent, Intent::RefundApply);
        assert_eq!(a.classify("要发票").unwrap().intent, Intent::Invoice);
    }

    /// Weights of 1 are exactly the unweighted fit; a heavier example pulls its message's
    /// probability towards its label; a weight that is not positive is refused.
    #[test]
    fn an_example_weight_counts_its_term_that_many_times() {
        let params = TrainParams {
            min_count: 1,
            ..TrainParams::default()
        };
        let examples: Vec<(&str, Target)> = [
            ("退款", Intent::RefundApply),
            ("退款", Intent::Invoice),
            ("发票", Intent::Invoice),
        ]
        .iter()
        .map(|&(text, intent)| (text, vec![(intent, 1.0)]))
        .collect();
        let (plain, _) = fit(&examples, &params).unwrap();
        let (ones, _) = fit_weighted(&examples, &[1.0; 3], &params).unwrap();
        assert!(plain.to_bytes() == ones.to_bytes());
        let prob = |w: f64| {
            let (r, _) = fit_weighted(&examples, &[w, 1.0, 1.0], &params).unwrap();
            assert_eq!(r.labels()[0], Intent::RefundApply);
            r.probabilities("退款").unwrap()[0]
        };
        assert!(prob(3.0) > prob(1.0) + 0.1, "{} {}", prob(3.0), prob(1.0));
        assert!(fit_weighted(&examples, &[0.0, 1.0, 1.0], &params).is_err());
        assert!(fit_weighted(&examples, &[1.0], &params).is_err());
    }
}
