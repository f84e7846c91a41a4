//! `kefu-edge train-router`: train the router from the corpus, choose thresholds on the
//! validation split, and write the model and its manifest.
//!
//! Deterministic: the split is a function of the text, the training file is written in a
//! fixed order, and fastText runs on one thread with a fixed seed. The same inputs give a
//! byte-identical model (a test checks it). No quantization: a 32-wide model with 20k hash
//! buckets is under 3 MB, and the serving forward pass reads dense matrices.
//!
//! Thresholds: for every validation message the keyword layer's decision and the model's
//! best guess are computed once; then the global threshold is the lowest one (in steps of
//! 0.01) at which the two-stage fast path reaches the precision target on all validation
//! messages together, and an intent whose own fast answers stay below the target at that
//! threshold gets the lowest threshold that brings it there.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use fasttext::FastText;
use fasttext::args::{Args, LossName, ModelName};

use super::corpus::{self, Example, Origin};
use super::features;
use super::manifest::{Manifest, Thresholds, TrainParams, sha256_hex};
use super::trained::{LABEL_PREFIX, RouterGuess, TrainedRouter};
use crate::config::Config;
use crate::eval::Evaluation;
use crate::intent::Intent;
use crate::pipeline::{Decision, Pipeline, Stage, two_stage};

pub struct TrainOptions {
    pub corpus_dir: PathBuf,
    /// `../shared/data` with the JDDC files; `None` trains on the project's corpus alone.
    pub jddc_dir: Option<PathBuf>,
    /// Where `router.ftz` and `manifest.json` go.
    pub out_dir: PathBuf,
    /// Where validation splits are written for `classify --eval` (JDDC text stays out of git).
    pub eval_dir: PathBuf,
    pub params: TrainParams,
    /// Fast-path precision the thresholds must reach on each validation split.
    pub precision_targets: BTreeMap<Origin, f64>,
}

/// What a training run produced.
pub struct Trained {
    pub manifest: Manifest,
    /// Evaluation reports by split.
    pub reports: Vec<(String, String)>,
}

pub const MODEL_FILE: &str = "router.ftz";

/// fastText input lines: `__label__<intent> <tokens>`, in a fixed order.
fn training_lines(examples: &[Example]) -> String {
    let mut ordered: Vec<&Example> = examples.iter().collect();
    ordered.sort_by_key(|e| (corpus::fnv1a(&e.text), e.text.clone()));
    let mut out = String::new();
    for e in ordered {
        let tokens = features::tokens(&e.text);
        if tokens.is_empty() {
            continue;
        }
        out.push_str(LABEL_PREFIX);
        out.push_str(e.intent.as_str());
        out.push(' ');
        out.push_str(&tokens);
        out.push('\n');
    }
    out
}

fn fasttext_args(input: &Path, p: &TrainParams) -> Args {
    Args {
        input: input.to_path_buf(),
        model: ModelName::Supervised,
        loss: LossName::Softmax,
        dim: p.dim,
        epoch: p.epoch,
        lr: p.lr,
        word_ngrams: p.word_ngrams,
        bucket: p.bucket,
        min_count: p.min_count,
        // Tokens are single characters or short words: no character n-grams inside them.
        minn: 0,
        maxn: 0,
        thread: 1,
        seed: p.seed,
        verbose: 0,
        ..Args::default()
    }
}

/// Train a model on `examples` (no evaluation), as bytes of a `.ftz`/`.bin` file.
pub fn train_model(
    examples: &[Example],
    params: &TrainParams,
    scratch: &Path,
) -> anyhow::Result<(Vec<u8>, String)> {
    let lines = training_lines(examples);
    let corpus_sha = sha256_hex(lines.as_bytes());
    let input = scratch.join("router.train.txt");
    std::fs::write(&input, &lines).with_context(|| format!("writing {}", input.display()))?;
    let args = fasttext_args(&input, params);
    let model = FastText::train(args).map_err(|e| anyhow::anyhow!("fastText training: {e}"))?;
    let mut bytes = Vec::new();
    model
        .save(&mut bytes)
        .map_err(|e| anyhow::anyhow!("saving model: {e}"))?;
    Ok((bytes, corpus_sha))
}

/// One validation message with what both layers said about it.
struct Scored {
    truth: Intent,
    origin: Origin,
    /// The keyword layer's fast answer, if any.
    keyword: Option<Intent>,
    guess: Option<RouterGuess>,
}

fn decide(
    s: &Scored,
    threshold: impl Fn(Intent) -> f32,
    answers: impl Fn(Intent) -> bool,
) -> Decision {
    two_stage(s.keyword, || s.guess, threshold, answers)
}

fn precision(
    scored: &[Scored],
    t: impl Fn(Intent) -> f32 + Copy,
    answers: impl Fn(Intent) -> bool + Copy,
    origin: Origin,
    only: Option<Intent>,
) -> Option<(f64, usize)> {
    let (mut answered, mut right) = (0usize, 0usize);
    for s in scored.iter().filter(|s| s.origin == origin) {
        let d = decide(s, t, answers);
        if d.stage == Stage::Rule && only.is_none_or(|i| i == d.intent) {
            answered += 1;
            right += usize::from(d.intent == s.truth);
        }
    }
    (answered > 0).then(|| (right as f64 / answered as f64, answered))
}

/// Per-intent figures on fewer fast answers than this are too noisy to move a threshold.
const MIN_INTENT_SUPPORT: usize = 5;

/// Whether every validation split meets its precision target (for one intent: only where
/// it has enough answers to say).
fn meets(
    scored: &[Scored],
    targets: &BTreeMap<Origin, f64>,
    t: impl Fn(Intent) -> f32 + Copy,
    answers: impl Fn(Intent) -> bool + Copy,
    only: Option<Intent>,
) -> bool {
    targets.iter().all(
        |(&origin, &target)| match precision(scored, t, answers, origin, only) {
            None => true,
            Some((_, n)) if only.is_some() && n < MIN_INTENT_SUPPORT => true,
            Some((p, _)) => p >= target,
        },
    )
}

fn choose_thresholds(
    scored: &[Scored],
    targets: &BTreeMap<Origin, f64>,
    answers: impl Fn(Intent) -> bool + Copy,
) -> Thresholds {
    let steps: Vec<f32> = (0..100).map(|i| i as f32 / 100.0).collect();
    let found = steps
        .iter()
        .copied()
        .find(|&t| meets(scored, targets, |_| t, answers, None));
    let global = found.unwrap_or(0.99);
    let mut per_intent = BTreeMap::new();
    for intent in Intent::fast() {
        let with = |t: f32| move |i: Intent| if i == intent { t } else { global };
        if meets(scored, targets, with(global), answers, Some(intent)) {
            continue;
        }
        let raised = steps
            .iter()
            .copied()
            .filter(|&t| t > global)
            .find(|&t| meets(scored, targets, with(t), answers, Some(intent)))
            .unwrap_or(0.99);
        per_intent.insert(intent, raised);
    }
    let targets: Vec<String> = targets
        .iter()
        .map(|(o, t)| format!("{} >= {t}", o.as_str()))
        .collect();
    Thresholds {
        global,
        per_intent,
        targets_met: found.is_some(),
        method: format!(
            "lowest global threshold (step 0.01) at which the two-stage fast-path precision of each validation split meets its target ({}); then each fast intent whose own fast answers (at least {MIN_INTENT_SUPPORT} in a split) miss a target there is raised to its lowest threshold that meets them",
            targets.join(", ")
        ),
    }
}

/// How each layer does on its own, to see which one limits the decision.
fn layer_figures(scored: &[Scored], origin: Origin) -> String {
    let group: Vec<&Scored> = scored.iter().filter(|s| s.origin == origin).collect();
    let keyword_answered = group.iter().filter(|s| s.keyword.is_some()).count();
    let keyword_right = group.iter().filter(|s| s.keyword == Some(s.truth)).count();
    let router_right = group
        .iter()
        .filter(|s| s.guess.is_some_and(|g| g.intent == s.truth))
        .count();
    format!(
        "keyword layer alone  answered {keyword_answered}, precision {:.4}\nrouter alone         accuracy {:.4} ({router_right}/{})\n",
        keyword_right as f64 / keyword_answered.max(1) as f64,
        router_right as f64 / group.len().max(1) as f64,
        group.len()
    )
}

fn write_split(path: &Path, examples: &[&Example]) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = std::io::BufWriter::new(
        std::fs::File::create(path).with_context(|| format!("writing {}", path.display()))?,
    );
    writeln!(
        f,
        "# text\tintent (validation split: never used for training)"
    )?;
    for e in examples {
        writeln!(f, "{}\t{}", e.text, e.intent)?;
    }
    Ok(())
}

/// The whole training run.
pub fn train(config: &Config, opts: &TrainOptions) -> anyhow::Result<Trained> {
    let mut examples = corpus::load_authored(&opts.corpus_dir)?;
    if let Some(dir) = &opts.jddc_dir {
        examples.extend(corpus::load_jddc(dir)?);
    }
    let (train_set, val_set) = corpus::split(&examples);
    std::fs::create_dir_all(&opts.out_dir)?;
    std::fs::create_dir_all(&opts.eval_dir)?;
    let (bytes, corpus_sha256) = train_model(&train_set, &opts.params, &opts.eval_dir)?;
    let model =
        FastText::load(&mut std::io::Cursor::new(&bytes)).map_err(|e| anyhow::anyhow!("{e}"))?;
    let router = TrainedRouter::from_model(model)?;

    // The keyword layer and rule cache of this configuration, without any router.
    let mut keyword_only = config.clone();
    keyword_only.router.enabled = false;
    let keywords = Pipeline::new(&keyword_only, None)?;
    let scored: Vec<Scored> = val_set
        .iter()
        .map(|e| {
            let d = keywords.decide(&e.text);
            Scored {
                truth: e.intent,
                origin: e.origin,
                keyword: (d.stage == Stage::Rule).then_some(d.intent),
                guess: router.classify(&e.text),
            }
        })
        .collect();
    let answers = |i: Intent| keywords.answers(i);
    let thresholds = choose_thresholds(&scored, &opts.precision_targets, answers);
    let t = |i: Intent| {
        thresholds
            .per_intent
            .get(&i)
            .copied()
            .unwrap_or(thresholds.global)
    };

    let mut validation = BTreeMap::new();
    let mut reports = Vec::new();
    for origin in [Origin::Authored, Origin::Jddc] {
        let mut eval = Evaluation::default();
        for s in scored.iter().filter(|s| s.origin == origin) {
            eval.add(s.truth, &decide(s, t, answers));
        }
        if eval.metrics().examples > 0 {
            validation.insert(origin.as_str().to_owned(), eval.metrics());
            reports.push((
                format!("validation ({})", origin.as_str()),
                layer_figures(&scored, origin) + &eval.report(),
            ));
        }
    }
    let mut counts = BTreeMap::new();
    for (name, set) in [("train", &train_set), ("validation", &val_set)] {
        for origin in [Origin::Authored, Origin::Jddc] {
            let n = set.iter().filter(|e| e.origin == origin).count();
            counts.insert(format!("{name}_{}", origin.as_str()), n);
        }
    }
    for origin in [Origin::Authored, Origin::Jddc] {
        let split: Vec<&Example> = val_set.iter().filter(|e| e.origin == origin).collect();
        if !split.is_empty() {
            write_split(
                &opts.eval_dir.join(format!("val_{}.tsv", origin.as_str())),
                &split,
            )?;
        }
    }
    let model_path = opts.out_dir.join(MODEL_FILE);
    std::fs::write(&model_path, &bytes)
        .with_context(|| format!("writing {}", model_path.display()))?;
    let manifest = Manifest {
        model_file: MODEL_FILE.into(),
        model_sha256: sha256_hex(&bytes),
        model_bytes: bytes.len() as u64,
        corpus_sha256,
        examples: counts,
        params: opts.params.clone(),
        thresholds,
        validation,
        trained_with: format!("kefu-edge {} train-router", env!("CARGO_PKG_VERSION")),
    };
    manifest.write(&opts.out_dir.join("manifest.json"))?;
    Ok(Trained { manifest, reports })
}

/// How one operator rule decided on labelled messages.
#[derive(Debug, Clone)]
pub struct RuleStat {
    pub rule: String,
    pub intent: Intent,
    pub decided: usize,
    pub correct: usize,
    /// The true intents it got wrong, most frequent first.
    pub wrong: Vec<(Intent, usize)>,
}

/// Score every operator rule on the training split (never the validation split, which must
/// stay unseen): how often it decided, how often rightly. Worst precision first.
pub fn audit_keywords(config: &Config, opts: &TrainOptions) -> anyhow::Result<Vec<RuleStat>> {
    let mut examples = corpus::load_authored(&opts.corpus_dir)?;
    if let Some(dir) = &opts.jddc_dir {
        examples.extend(corpus::load_jddc(dir)?);
    }
    let (train_set, _) = corpus::split(&examples);
    let pipeline = Pipeline::new(config, None)?;
    let keywords = pipeline.keywords();
    let mut stats: BTreeMap<
        super::keyword::RuleId,
        (Intent, usize, usize, BTreeMap<Intent, usize>),
    > = BTreeMap::new();
    for e in &train_set {
        if let Some(hit) = keywords.classify(&e.text) {
            let entry = stats
                .entry(hit.rule)
                .or_insert((hit.intent, 0, 0, BTreeMap::new()));
            entry.1 += 1;
            if hit.intent == e.intent {
                entry.2 += 1;
            } else {
                *entry.3.entry(e.intent).or_default() += 1;
            }
        }
    }
    let mut out: Vec<RuleStat> = stats
        .into_iter()
        .map(|(rule, (intent, decided, correct, wrong))| {
            let mut wrong: Vec<(Intent, usize)> = wrong.into_iter().collect();
            wrong.sort_by_key(|w| std::cmp::Reverse(w.1));
            RuleStat {
                rule: keywords.rule_name(rule),
                intent,
                decided,
                correct,
                wrong,
            }
        })
        .collect();
    out.sort_by(|a, b| {
        let pa = a.correct as f64 / a.decided as f64;
        let pb = b.correct as f64 / b.decided as f64;
        pa.total_cmp(&pb).then(b.decided.cmp(&a.decided))
    });
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> Vec<Example> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/router_fixture");
        corpus::load_authored(&dir).unwrap()
    }

    fn small() -> TrainParams {
        TrainParams {
            dim: 16,
            epoch: 20,
            bucket: 10_000,
            ..TrainParams::default()
        }
    }

    #[test]
    fn training_is_deterministic() {
        let scratch = tempfile::tempdir().unwrap();
        let (a, sha_a) = train_model(&fixture(), &small(), scratch.path()).unwrap();
        let (b, sha_b) = train_model(&fixture(), &small(), scratch.path()).unwrap();
        assert_eq!(sha_a, sha_b, "same training lines");
        assert!(a == b, "same model bytes from the same inputs");
        // And it learned something.
        let model = FastText::load(&mut std::io::Cursor::new(&a)).unwrap();
        let router = TrainedRouter::from_model(model).unwrap();
        let right = fixture()
            .iter()
            .filter(|e| {
                router
                    .classify(&e.text)
                    .is_some_and(|g| g.intent == e.intent)
            })
            .count();
        assert!(
            right * 10 >= fixture().len() * 8,
            "{right}/{}",
            fixture().len()
        );
    }

    #[test]
    fn thresholds_reach_the_target_or_raise_the_intent() {
        let s = |truth, guess, p| Scored {
            truth,
            origin: Origin::Authored,
            keyword: None,
            guess: Some(RouterGuess {
                intent: guess,
                prob: p,
            }),
        };
        let scored = vec![
            s(Intent::Coupon, Intent::Coupon, 0.9),
            s(Intent::Coupon, Intent::Coupon, 0.6),
            s(Intent::Invoice, Intent::Coupon, 0.5),
            s(Intent::Invoice, Intent::Invoice, 0.95),
            s(Intent::Other, Intent::Invoice, 0.8),
        ];
        let target = |p: f64| BTreeMap::from([(Origin::Authored, p)]);
        let t = choose_thresholds(&scored, &target(1.0), |_| true);
        // 0.51..=0.80 would keep coupon clean but let the 0.8 invoice mistake in; 0.81 is
        // the lowest global threshold with only right answers.
        assert_eq!(t.global, 0.81);
        assert!(t.per_intent.is_empty());
        // At 0.75 the global threshold can be lower: 3 of 4 right at 0.51.
        let t = choose_thresholds(&scored, &target(0.75), |_| true);
        assert_eq!(t.global, 0.51, "{t:?}");
        // Invoice is right 1 of 2 there, too few answers to move its threshold on.
        assert!(t.per_intent.is_empty(), "{t:?}");
    }
}
