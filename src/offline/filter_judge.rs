//! Training the reply filter's match judge (`post::MatchJudge`): an L2-regularised logistic
//! regression over the features `post::judge_features` gives a plain match, fitted on written
//! examples (`label<TAB>word<TAB>text`, label `mask` or `clean`), with the penalty and the
//! threshold chosen on the development lists, never on the test lists.
//!
//! The objective is convex and minimised by full-batch gradient descent from zero in a fixed
//! order, so the same examples give the same weights on every run.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context as _, bail};

use std::borrow::Cow;

use crate::config::{Config, JudgeConfig, PostConfig};
use crate::post::{ReplyFilter, Segmenter, judge_features};
use crate::text;

/// One written example: the match's features and whether it must be masked.
pub struct Example {
    pub features: Vec<String>,
    pub mask: bool,
}

/// The examples of every `*.tsv` under `dir`, with how many lines were skipped because the
/// judge never sees them (a word with a character neither Chinese nor an ASCII letter).
pub fn read_examples(dir: &Path) -> anyhow::Result<(Vec<Example>, usize)> {
    let seg = Segmenter::new();
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "tsv"))
        .collect();
    files.sort();
    let (mut examples, mut skipped) = (Vec::new(), 0);
    for file in files {
        let body = std::fs::read_to_string(&file)
            .with_context(|| format!("reading {}", file.display()))?;
        for (n, line) in body.lines().enumerate() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let at = || format!("{}:{}", file.display(), n + 1);
            let mut fields = line.split('\t');
            let (Some(label), Some(word), Some(reply)) =
                (fields.next(), fields.next(), fields.next())
            else {
                bail!("{}: not label<TAB>word<TAB>text", at());
            };
            let mask = match label {
                "mask" => true,
                "clean" => false,
                other => bail!("{}: label `{other}` is neither mask nor clean", at()),
            };
            let word: Vec<char> = text::fold(word).chars().collect();
            if !word.iter().all(|&c| crate::post::is_judged(c)) {
                skipped += 1;
                continue;
            }
            let all: Vec<char> = reply.chars().map(text::fold_char).collect();
            let Some(start) = all.windows(word.len()).position(|w| w == word.as_slice()) else {
                bail!(
                    "{}: `{}` is not in the text",
                    at(),
                    String::from_iter(&word)
                );
            };
            examples.push(Example {
                features: judge_features(&all, &seg.tagged(&all), start, start + word.len() - 1),
                mask,
            });
        }
    }
    Ok((examples, skipped))
}

/// The fitted model: bias and weights by feature (features seen once or more).
pub struct Model {
    pub bias: f64,
    pub weights: BTreeMap<String, f64>,
}

/// Minimise `mean log loss + lambda/2 ‖w‖²` (bias unpenalised).
pub fn fit(examples: &[Example], lambda: f64) -> Model {
    let mut index: BTreeMap<&str, usize> = BTreeMap::new();
    for e in examples {
        for f in &e.features {
            let next = index.len();
            index.entry(f.as_str()).or_insert(next);
        }
    }
    let rows: Vec<(Vec<usize>, f64)> = examples
        .iter()
        .map(|e| {
            let r = e.features.iter().map(|f| index[f.as_str()]).collect();
            (r, if e.mask { 1.0 } else { 0.0 })
        })
        .collect();
    let (n, dims) = (rows.len() as f64, index.len());
    let mut w = vec![0.0; dims];
    let mut bias = 0.0;
    // Step within 1/L: each example has at most 15 active features of value 1.
    let step = 0.2;
    let mut grad = vec![0.0; dims];
    for _ in 0..10_000 {
        grad.iter_mut().zip(&w).for_each(|(g, w)| *g = lambda * w);
        let mut grad_bias = 0.0;
        for (r, y) in &rows {
            let z = bias + r.iter().map(|&i| w[i]).sum::<f64>();
            let err = (1.0 / (1.0 + (-z).exp()) - y) / n;
            grad_bias += err;
            r.iter().for_each(|&i| grad[i] += err);
        }
        bias -= step * grad_bias;
        w.iter_mut().zip(&grad).for_each(|(w, g)| *w -= step * g);
    }
    Model {
        bias,
        weights: index
            .into_iter()
            .map(|(f, i)| (f.to_owned(), w[i]))
            .filter(|(_, w)| w.abs() >= 1e-4)
            .collect(),
    }
}

impl Model {
    /// The weights file `post.yaml`'s `judge.weights_file` reads, with `header` as comments.
    pub fn to_file(&self, header: &str) -> String {
        let mut out = String::new();
        for line in header.lines() {
            let _ = writeln!(out, "# {line}");
        }
        let _ = writeln!(out, "bias\t{:.4}", self.bias);
        for (f, w) in &self.weights {
            let _ = writeln!(out, "{f}\t{w:.4}");
        }
        out
    }
}

/// A reply filter on lists: how many clean replies it changed, how many lines that must be
/// masked it left (per list).
pub struct ListScore {
    pub changed: usize,
    pub missed: Vec<usize>,
}

/// The non-comment lines of a list; for `text<TAB>word` lists, the text.
pub fn read_list(path: &Path) -> anyhow::Result<Vec<String>> {
    let body =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(body
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| l.split('\t').next().unwrap_or(l).to_owned())
        .collect())
}

pub fn score(filter: &ReplyFilter, clean: &[String], masked: &[Vec<String>]) -> ListScore {
    let changes = |t: &String| matches!(filter.filter(t), Cow::Owned(_));
    ListScore {
        changed: clean.iter().filter(|t| changes(t)).count(),
        missed: masked
            .iter()
            .map(|list| list.iter().filter(|t| !changes(t)).count())
            .collect(),
    }
}

/// `train-filter-judge`: fit on `train`, choose the penalty and threshold on the development
/// lists (fewest clean replies changed, with no more missed than without the judge), write
/// the chosen weights to `out`.
pub fn train_command(
    dir: &Path,
    train: &Path,
    dev_clean: &Path,
    dev_masked: &[std::path::PathBuf],
    out: &Path,
) -> anyhow::Result<()> {
    let (examples, skipped) = read_examples(train)?;
    let masks = examples.iter().filter(|e| e.mask).count();
    println!(
        "examples: {} ({masks} mask, {} clean); {skipped} with a word the judge never reads skipped",
        examples.len(),
        examples.len() - masks
    );
    let config = Config::load(dir).map_err(|e| anyhow::anyhow!("{e}"))?;
    let clean = read_list(dev_clean)?;
    let masked: Vec<Vec<String>> = dev_masked
        .iter()
        .map(|p| read_list(p))
        .collect::<anyhow::Result<_>>()?;
    let filter_with = |judge: Option<JudgeConfig>| {
        ReplyFilter::new(&PostConfig {
            judge,
            ..config.post.clone()
        })
    };
    let base = score(&filter_with(None)?, &clean, &masked);
    println!(
        "development, no judge: {} of {} clean changed, missed {:?} of {:?}",
        base.changed,
        clean.len(),
        base.missed,
        masked.iter().map(Vec::len).collect::<Vec<_>>()
    );
    println!("lambda\texempt_below\tclean changed\tmissed");
    let mut best: Option<(usize, f64, f32, Model)> = None;
    for lambda in [0.0003, 0.001, 0.003, 0.01] {
        let model = fit(&examples, lambda);
        let mut chosen = None;
        for exempt_below in [0.1f32, 0.2, 0.3, 0.4, 0.5, 0.6] {
            let judge = JudgeConfig {
                bias: model.bias as f32,
                weights: model
                    .weights
                    .iter()
                    .map(|(f, w)| (f.clone(), *w as f32))
                    .collect(),
                exempt_below,
            };
            let s = score(&filter_with(Some(judge))?, &clean, &masked);
            println!("{lambda}\t{exempt_below}\t{}\t{:?}", s.changed, s.missed);
            let safe = s.missed.iter().zip(&base.missed).all(|(m, b)| m <= b);
            if safe && chosen.is_none_or(|(c, _)| s.changed < c) {
                chosen = Some((s.changed, exempt_below));
            }
        }
        if let Some((changed, t)) = chosen
            && best.as_ref().is_none_or(|b| changed < b.0)
        {
            best = Some((changed, lambda, t, model));
        }
    }
    let Some((changed, lambda, exempt_below, model)) = best else {
        bail!("no setting keeps every development line that must be masked");
    };
    let header = format!(
        "The reply filter's match judge (src/post/judge.rs): written by `kefu-edge train-filter-judge`\n\
         from {} examples in {}; lambda {lambda} and exempt_below {exempt_below} chosen on the\n\
         development lists ({changed} of {} clean replies changed, none more missed than without it).",
        examples.len(),
        train.display(),
        clean.len()
    );
    std::fs::write(out, model.to_file(&header))
        .with_context(|| format!("writing {}", out.display()))?;
    println!(
        "chosen: lambda {lambda}, exempt_below {exempt_below} ({changed} changed); wrote {} ({} weights)",
        out.display(),
        model.weights.len()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(features: &[&str], mask: bool) -> Example {
        Example {
            features: features.iter().map(|s| s.to_string()).collect(),
            mask,
        }
    }

    #[test]
    fn fit_separates_what_the_features_separate_and_is_repeatable() {
        let examples = vec![
            ex(&["w=爆炸", "R1=头"], false),
            ex(&["w=爆炸", "R1=头"], false),
            ex(&["w=爆炸", "R1=$"], true),
            ex(&["w=爆炸", "R1=了"], true),
        ];
        let m = fit(&examples, 0.01);
        assert!(m.weights["R1=头"] < -1.0, "{:?}", m.weights);
        assert!(m.weights["R1=$"] > 0.0);
        let again = fit(&examples, 0.01);
        assert_eq!(m.to_file("x"), again.to_file("x"));
        assert!(
            m.to_file("made by a test")
                .starts_with("# made by a test\nbias\t")
        );
    }
}
