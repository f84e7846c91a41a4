//! `kefu-edge train-router`: fit the router on the training split, choose thresholds on the
//! development split, measure on the test split, and write the model and its manifest.
//!
//! Deterministic: the split is a function of the text, the training examples are put in a
//! fixed order, and the fit (`fit`) is a convex problem solved on one thread. The same inputs
//! give a byte-identical model (a test checks it).
//!
//! Thresholds: for every development message the keyword layer's decision and the model's
//! best guess are computed once, and `thresholds::choose` searches on those.

use std::collections::{BTreeMap, HashSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;

use super::corpus::{self, Example, Origin};
use super::eval::Evaluation;
use super::fit::{FitReport, Target, fit_weighted};
use super::teacher::Teacher;
use super::thresholds::{self, Scored};
use crate::config::Config;
use crate::intent::Intent;
use crate::pipeline::{Decision, Pipeline, Stage};
use crate::router::features;
use crate::router::keyword::RuleId;
use crate::router::manifest::{Manifest, Metrics, Thresholds, TrainParams, sha256_hex};
use crate::router::trained::TrainedRouter;
use crate::text::fnv1a;

pub struct TrainOptions {
    pub corpus_dir: PathBuf,
    /// `../shared/data` with the JDDC files; `None` trains on the project's corpus alone.
    pub jddc_dir: Option<PathBuf>,
    /// Corrections of JDDC training labels (`corpus::Adjudication`), if any.
    pub jddc_adjudication: Option<PathBuf>,
    /// Blind labels: train on confirmed JDDC lines only; choose thresholds on confirmed
    /// development lines; report confirmed test figures (`corpus::BlindLabels`).
    pub jddc_train_confirmed: Option<PathBuf>,
    pub jddc_dev_confirmed: Option<PathBuf>,
    pub jddc_test_blind: Option<PathBuf>,
    /// Where `router.bin` and `manifest.json` go.
    pub out_dir: PathBuf,
    /// Where the development and test splits are written for `classify --eval` (JDDC text
    /// stays out of git).
    pub eval_dir: PathBuf,
    pub params: TrainParams,
    /// Fast-path precision the thresholds must reach on each development split.
    pub precision_targets: BTreeMap<Origin, f64>,
}

/// What a training run produced.
pub struct Trained {
    pub manifest: Manifest,
    pub fit: FitReport,
    /// Evaluation reports by split.
    pub reports: Vec<(String, String)>,
}

pub const MODEL_FILE: &str = "router.bin";

/// The training messages as fitted: `(message, target)` in order, the weight of each, and
/// the sha256 of the training lines.
struct Ordered<'a> {
    pairs: Vec<(&'a str, Target)>,
    weights: Vec<f64>,
    sha256: String,
}

/// The training messages in their fixed order (by hash of the text, then the text) with the
/// target each is fitted at and its weight (`jddc_weight` for a real question, else 1), and
/// the sha256 of the lines `<target>[@<weight>]\t<tokens>` (a label is written as its id, a
/// distribution as `id:mass,…`; the weight only when it is not 1).
fn ordered<'a>(
    examples: &'a [Example],
    teacher: Option<&'a Distillation>,
    params: &TrainParams,
) -> anyhow::Result<Ordered<'a>> {
    let mut items: Vec<(&str, Target, f64)> = Vec::with_capacity(examples.len());
    for e in examples {
        let target = match teacher {
            Some(d) if params.teacher_weight > 0.0 => d
                .teacher
                .target(&e.text, Some(e.intent), params.teacher_weight)
                .with_context(|| format!("the teacher was not asked about `{}`", e.text))?,
            _ => vec![(e.intent, 1.0)],
        };
        let weight = match e.origin {
            Origin::Jddc => params.jddc_weight,
            Origin::Authored => 1.0,
        };
        items.push((&e.text, target, weight));
    }
    if let Some(d) = teacher.filter(|_| params.teacher_unmapped) {
        for text in &d.unmapped {
            let target = d
                .teacher
                .target(text, None, 1.0)
                .with_context(|| format!("the teacher was not asked about `{text}`"))?;
            items.push((text, target, params.jddc_weight));
        }
    }
    items.sort_by(|a, b| (fnv1a(a.0), a.0).cmp(&(fnv1a(b.0), b.0)));
    let mut lines = String::new();
    for (text, target, weight) in &items {
        match target.as_slice() {
            [(intent, m)] if *m == 1.0 => lines.push_str(intent.as_str()),
            _ => {
                let parts: Vec<String> =
                    target.iter().map(|(i, m)| format!("{i}:{m:.4}")).collect();
                lines.push_str(&parts.join(","));
            }
        }
        if *weight != 1.0 {
            lines.push_str(&format!("@{weight}"));
        }
        lines.push('\t');
        lines.push_str(&features::tokens(text));
        lines.push('\n');
    }
    let weights = items.iter().map(|i| i.2).collect();
    let pairs = items
        .into_iter()
        .map(|(t, target, _)| (t, target))
        .collect();
    Ok(Ordered {
        pairs,
        weights,
        sha256: sha256_hex(lines.as_bytes()),
    })
}

/// The served model's view of the training messages and of the JDDC questions without a
/// label of ours (`teacher`).
pub struct Distillation {
    pub teacher: Teacher,
    pub unmapped: Vec<String>,
}

/// Fit a model on `examples` (no evaluation), at the teacher's targets where `params` says
/// so: the model, the training lines' sha256, and what the optimiser did.
pub fn train_model(
    examples: &[Example],
    teacher: Option<&Distillation>,
    params: &TrainParams,
) -> anyhow::Result<(TrainedRouter, String, FitReport)> {
    let ordered = ordered(examples, teacher, params)?;
    let (router, report) = fit_weighted(&ordered.pairs, &ordered.weights, params)?;
    Ok((router, ordered.sha256, report))
}

/// The teacher's view, when `params` ask for one: of the training messages, and of the JDDC
/// questions without a label of ours that are no message of any split.
fn distillation(
    config: &Config,
    opts: &TrainOptions,
    parts: &corpus::Splits,
) -> anyhow::Result<Option<Distillation>> {
    let params = &opts.params;
    anyhow::ensure!(
        (0.0..=1.0).contains(&params.teacher_weight),
        "teacher_weight must be between 0 and 1, not {}",
        params.teacher_weight
    );
    if params.teacher_weight == 0.0 && !params.teacher_unmapped {
        return Ok(None);
    }
    let mut unmapped = match (&opts.jddc_dir, params.teacher_unmapped) {
        (Some(dir), true) => corpus::load_jddc_unmapped(dir)?,
        _ => Vec::new(),
    };
    let in_splits: HashSet<&str> = [&parts.train, &parts.dev, &parts.test]
        .into_iter()
        .flatten()
        .map(|e| e.text.as_str())
        .collect();
    unmapped.retain(|t| !in_splits.contains(t.as_str()));
    // The training messages' targets take the teacher's view only at a weight above 0.
    let train = parts.train.iter().filter(|_| params.teacher_weight > 0.0);
    let texts = train.map(|e| e.text.as_str());
    let teacher = Teacher::label(
        &config.model,
        texts.chain(unmapped.iter().map(String::as_str)),
    )?;
    Ok(Some(Distillation { teacher, unmapped }))
}

fn decide(s: &Scored, t: &Thresholds, answers: impl Fn(Intent) -> bool) -> Decision {
    s.decide(
        |i| t.per_intent.get(&i).copied().unwrap_or(t.global),
        answers,
    )
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
    writeln!(f, "# text\tintent (never used for training)")?;
    for e in examples {
        writeln!(f, "{}\t{}", e.text, e.intent)?;
    }
    Ok(())
}

/// The three parts: the split is made on the labels as published, then the adjudication (if
/// any) corrects the training part; also how many it dropped and corrected.
fn splits(opts: &TrainOptions) -> anyhow::Result<(corpus::Splits, Option<(usize, usize)>)> {
    let mut examples = corpus::load_authored(&opts.corpus_dir)?;
    if let Some(dir) = &opts.jddc_dir {
        examples.extend(corpus::load_jddc(dir)?);
    }
    let mut parts = corpus::split(&examples);
    let adjusted = match &opts.jddc_adjudication {
        Some(path) if opts.jddc_dir.is_some() => {
            Some(corpus::Adjudication::load(path)?.apply(&mut parts.train))
        }
        _ => None,
    };
    if let Some(path) = &opts.jddc_train_confirmed {
        corpus::BlindLabels::load(path)?.keep_confirmed(&mut parts.train);
    }
    Ok((parts, adjusted))
}

/// The whole training run.
pub fn train(config: &Config, opts: &TrainOptions) -> anyhow::Result<Trained> {
    let w = opts.params.jddc_weight;
    anyhow::ensure!(
        w.is_finite() && w > 0.0,
        "jddc_weight must be positive, not {w}"
    );
    let (parts, adjusted) = splits(opts)?;
    std::fs::create_dir_all(&opts.out_dir)?;
    std::fs::create_dir_all(&opts.eval_dir)?;
    let distilled = distillation(config, opts, &parts)?;
    let (router, corpus_sha256, fit) = train_model(&parts.train, distilled.as_ref(), &opts.params)?;
    let bytes = router.to_bytes();

    // The keyword layer and rule cache of this configuration, without any router.
    let mut keyword_only = config.clone();
    keyword_only.router.enabled = false;
    let keywords = Pipeline::new(&keyword_only, None)?;
    let score = |set: &[Example]| -> Vec<Scored> {
        set.iter()
            .map(|e| {
                let d = keywords.decide(&e.text);
                Scored {
                    truth: e.intent,
                    origin: e.origin,
                    keyword: (d.stage == Stage::Rule).then_some(d.intent),
                    guess: router.classify(&e.text),
                }
            })
            .collect()
    };
    let (dev, test) = (score(&parts.dev), score(&parts.test));
    // The confirmed JDDC lines of a part (blind label agrees), scored.
    let confirmed =
        |path: &Option<PathBuf>, set: &[Example]| -> anyhow::Result<Option<Vec<Scored>>> {
            let Some(path) = path.as_ref().filter(|p| p.is_file()) else {
                return Ok(None);
            };
            let blind = corpus::BlindLabels::load(path)?;
            let mut kept = set.to_vec();
            blind.keep_confirmed(&mut kept);
            kept.retain(|e| e.origin == Origin::Jddc);
            Ok(Some(score(&kept)))
        };
    let dev_confirmed = confirmed(&opts.jddc_dev_confirmed, &parts.dev)?;
    let test_confirmed = confirmed(&opts.jddc_test_blind, &parts.test)?;
    let answers = |i: Intent| keywords.answers(i);
    // The JDDC precision target applies to the confirmed development lines when given.
    let choose_on: Vec<Scored> = match &dev_confirmed {
        Some(c) => dev
            .iter()
            .filter(|s| s.origin == Origin::Authored)
            .chain(c)
            .cloned()
            .collect(),
        None => dev.clone(),
    };
    let thresholds = thresholds::choose(&choose_on, &opts.precision_targets, answers);

    let mut figures: BTreeMap<&str, BTreeMap<String, Metrics>> = BTreeMap::new();
    let mut reports = Vec::new();
    if let Some(d) = &distilled {
        reports.push((
            "teacher".to_owned(),
            format!(
                "{}: weight {}, {} JDDC questions without a label of ours fitted at its view\n",
                d.teacher.model,
                opts.params.teacher_weight,
                d.unmapped.len(),
            ),
        ));
    }
    let parts_scored = [
        ("development", &dev, None),
        ("development", &dev, dev_confirmed.as_ref()),
        ("test", &test, None),
        ("test", &test, test_confirmed.as_ref()),
    ];
    for (part, all, confirmed) in parts_scored {
        for origin in [Origin::Authored, Origin::Jddc] {
            let (scored, name) = match confirmed {
                None => (all, origin.as_str().to_owned()),
                Some(_) if origin == Origin::Authored => continue,
                Some(c) => (c, "jddc_confirmed".to_owned()),
            };
            let mut eval = Evaluation::default();
            for s in scored.iter().filter(|s| s.origin == origin) {
                eval.add(s.truth, &decide(s, &thresholds, answers));
            }
            if eval.metrics().examples > 0 {
                reports.push((
                    format!("{part} ({name})"),
                    layer_figures(scored, origin) + &eval.report(),
                ));
                figures
                    .entry(part)
                    .or_default()
                    .insert(name, eval.metrics());
            }
        }
    }
    let mut counts = BTreeMap::new();
    for (name, set) in [
        ("train", &parts.train),
        ("dev", &parts.dev),
        ("test", &parts.test),
    ] {
        for origin in [Origin::Authored, Origin::Jddc] {
            let n = set.iter().filter(|e| e.origin == origin).count();
            counts.insert(format!("{name}_{}", origin.as_str()), n);
        }
    }
    if let Some((dropped, corrected)) = adjusted {
        counts.insert("train_jddc_dropped_context_only".into(), dropped);
        counts.insert("train_jddc_labels_corrected".into(), corrected);
    }
    for (name, set) in [("dev", &parts.dev), ("test", &parts.test)] {
        for origin in [Origin::Authored, Origin::Jddc] {
            let split: Vec<&Example> = set.iter().filter(|e| e.origin == origin).collect();
            if !split.is_empty() {
                let file = format!("{name}_{}.tsv", origin.as_str());
                write_split(&opts.eval_dir.join(file), &split)?;
            }
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
        validation: figures.remove("development").unwrap_or_default(),
        test: figures.remove("test").unwrap_or_default(),
        trained_with: match &distilled {
            None => format!("kefu-edge {} train-router", env!("CARGO_PKG_VERSION")),
            Some(d) => format!(
                "kefu-edge {} train-router, teacher {}",
                env!("CARGO_PKG_VERSION"),
                d.teacher.model
            ),
        },
    };
    manifest.write(&opts.out_dir.join("manifest.json"))?;
    Ok(Trained {
        manifest,
        fit,
        reports,
    })
}

/// What `export-splits` wrote.
pub struct Exported {
    pub train: usize,
    pub dev: usize,
    pub test: usize,
}

/// Write the router's three splits for the model pipeline in `models/` (`train.tsv`,
/// `dev.tsv`, `test.tsv`: `text<TAB>intent<TAB>origin<TAB>stage<TAB>decided<TAB>router
/// probabilities`), so the model is trained, tuned and scored on exactly the router's
/// splits. `stage` and `decided` are the fast-path decision of `config` (`rule` lines are
/// answered before the model stage); on training lines they are left empty. JDDC text is in
/// the files: keep `out` out of git.
pub fn export_splits(config: &Config, opts: &TrainOptions, out: &Path) -> anyhow::Result<Exported> {
    let (parts, _) = splits(opts)?;
    let pipeline = Pipeline::new(config, None)?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let write = |name: &str, set: &[Example], decide: bool| -> anyhow::Result<()> {
        let path = out.join(name);
        let mut f = std::io::BufWriter::new(
            std::fs::File::create(&path).with_context(|| format!("writing {}", path.display()))?,
        );
        writeln!(
            f,
            "# text\tintent\torigin\tstage\tdecided\trouter probabilities (intents.tsv order)\tsource"
        )?;
        for e in set {
            // Tabs and newlines cannot be in a corpus line; the loaders split on them.
            let (stage, decided, probs) = if decide {
                let d = pipeline.decide(&e.text);
                (
                    d.stage.as_str(),
                    d.intent.as_str(),
                    router_probabilities(&pipeline, &e.text),
                )
            } else {
                ("", "", String::new())
            };
            writeln!(
                f,
                "{}\t{}\t{}\t{stage}\t{decided}\t{probs}\t{}",
                e.text,
                e.intent,
                e.origin.as_str(),
                e.source.as_deref().unwrap_or("-")
            )?;
        }
        f.flush()
            .with_context(|| format!("writing {}", path.display()))
    };
    write("train.tsv", &parts.train, false)?;
    write("dev.tsv", &parts.dev, true)?;
    write("test.tsv", &parts.test, true)?;
    Ok(Exported {
        train: parts.train.len(),
        dev: parts.dev.len(),
        test: parts.test.len(),
    })
}

/// The router's probability of every intent (intents.tsv order), comma-separated; empty
/// without a router or for a message without tokens.
fn router_probabilities(pipeline: &Pipeline, text: &str) -> String {
    pipeline
        .router_probabilities(text)
        .map_or_else(String::new, |probs| {
            probs
                .iter()
                .map(|p| format!("{p:.6}"))
                .collect::<Vec<_>>()
                .join(",")
        })
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

/// Score every operator rule on the training split (never the development or test split):
/// how often it decided, how often rightly. Worst precision first.
pub fn audit_keywords(config: &Config, opts: &TrainOptions) -> anyhow::Result<Vec<RuleStat>> {
    let (parts, _) = splits(opts)?;
    let train_set = parts.train;
    let pipeline = Pipeline::new(config, None)?;
    let keywords = pipeline.keywords();
    let mut stats: BTreeMap<RuleId, (Intent, usize, usize, BTreeMap<Intent, usize>)> =
        BTreeMap::new();
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
            buckets: 10_000,
            min_count: 1,
            ..TrainParams::default()
        }
    }

    /// A teacher sure that every message is `intent`.
    fn teacher_saying(intent: Intent, examples: &[Example], unmapped: &[&str]) -> Distillation {
        let probs = examples
            .iter()
            .map(|e| e.text.as_str())
            .chain(unmapped.iter().copied())
            .map(|text| {
                let mut p = vec![0.0f32; Intent::ALL.len()];
                p[intent.index()] = 1.0;
                (text.to_owned(), p)
            })
            .collect();
        Distillation {
            teacher: Teacher::from_probs(probs),
            unmapped: unmapped.iter().map(|t| t.to_string()).collect(),
        }
    }

    #[test]
    fn the_teacher_changes_nothing_unless_asked_and_moves_the_fit_when_asked() {
        let examples = fixture();
        let teacher = teacher_saying(Intent::Greeting, &examples, &["随便问问"]);
        let (plain, sha, _) = train_model(&examples, None, &small()).unwrap();
        let (off, sha_off, _) = train_model(&examples, Some(&teacher), &small()).unwrap();
        assert_eq!(sha, sha_off);
        assert!(
            plain.to_bytes() == off.to_bytes(),
            "weight 0: the labels alone"
        );
        let on = TrainParams {
            teacher_weight: 0.9,
            teacher_unmapped: true,
            ..small()
        };
        let (taught, sha_on, _) = train_model(&examples, Some(&teacher), &on).unwrap();
        assert_ne!(sha, sha_on, "the targets are part of the training lines");
        // Nine tenths of every target on one intent: the fit follows the teacher.
        let greeted = examples
            .iter()
            .filter(|e| {
                taught
                    .classify(&e.text)
                    .is_some_and(|g| g.intent == Intent::Greeting)
            })
            .count();
        assert_eq!(greeted, examples.len());
        // A teacher that was not asked about a training message is an error, not a guess.
        let partial = teacher_saying(Intent::Greeting, &examples[1..], &[]);
        assert!(train_model(&examples, Some(&partial), &on).is_err());
    }

    #[test]
    fn training_is_deterministic() {
        let (a, sha_a, _) = train_model(&fixture(), None, &small()).unwrap();
        let mut reversed = fixture();
        reversed.reverse();
        let (b, sha_b, _) = train_model(&reversed, None, &small()).unwrap();
        assert_eq!(sha_a, sha_b, "same training lines, whatever the file order");
        assert!(
            a.to_bytes() == b.to_bytes(),
            "same model bytes from the same inputs"
        );
        // And it learned something.
        let router = TrainedRouter::from_bytes(&a.to_bytes()).unwrap();
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
}
