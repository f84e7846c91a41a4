//! Training data for the router: the project's own corpus (`models/data/corpus/<intent>.txt`)
//! and the licensed JDDC intent questions (read by path, mapped through `jddc_to_kefu.tsv`,
//! never copied into the project), split once and for all into training, development and test
//! parts.
//!
//! The split is a pure function of the text: within each (source, intent) group, examples are
//! ordered by a 64-bit FNV-1a hash of their text; the first 15% (at least one) are the
//! development split (thresholds, weights and every other choice are made on it), the next
//! 15% the test split (reported, never used for a choice), the rest training. Adding lines
//! moves few others across the split, and no random state is needed to reproduce it.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use anyhow::Context;

use crate::intent::Intent;
use crate::text::fnv1a;

/// Where an example comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Origin {
    Authored,
    Jddc,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Authored => "authored",
            Origin::Jddc => "jddc",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Example {
    pub text: String,
    pub intent: Intent,
    pub origin: Origin,
    /// `file:line` of a JDDC question in `../shared/data` (what an adjudication refers to).
    pub source: Option<String>,
}

/// The share of each group in the development split (choices are made on it).
pub const DEV_SHARE: f64 = 0.15;
/// The share of each group in the test split (figures are reported from it).
pub const TEST_SHARE: f64 = 0.15;

/// The three parts of the labelled examples.
#[derive(Debug, Clone, Default)]
pub struct Splits {
    pub train: Vec<Example>,
    pub dev: Vec<Example>,
    pub test: Vec<Example>,
}

/// Every `<intent>.txt` of `dir`; one message per line, blank lines and `#` lines skipped.
pub fn load_authored(dir: &Path) -> anyhow::Result<Vec<Example>> {
    let mut out = Vec::new();
    for intent in Intent::ALL {
        let path = dir.join(format!("{intent}.txt"));
        if !path.exists() {
            continue;
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            out.push(Example {
                text: line.to_owned(),
                intent: *intent,
                origin: Origin::Authored,
                source: None,
            });
        }
    }
    anyhow::ensure!(
        !out.is_empty(),
        "no corpus files (<intent>.txt) in {}",
        dir.display()
    );
    Ok(dedupe(out))
}

/// The JDDC intent questions of `dir` whose JDDC label maps to an intent id.
pub fn load_jddc(dir: &Path) -> anyhow::Result<Vec<Example>> {
    Ok(read_jddc(dir)?.0)
}

/// The JDDC questions of `dir` whose JDDC label has no intent id (texts, deduplicated, none
/// that is also a mapped question): real traffic with no label of ours, in no split.
pub fn load_jddc_unmapped(dir: &Path) -> anyhow::Result<Vec<String>> {
    let (mapped, unmapped) = read_jddc(dir)?;
    let mapped: HashSet<&str> = mapped.iter().map(|e| e.text.as_str()).collect();
    let mut seen = HashSet::new();
    Ok(unmapped
        .into_iter()
        .filter(|t| !t.is_empty() && !mapped.contains(t.as_str()) && seen.insert(t.clone()))
        .collect())
}

/// The mapped questions, and the texts of the others.
fn read_jddc(dir: &Path) -> anyhow::Result<(Vec<Example>, Vec<String>)> {
    let mapping_path = dir.join("jddc_to_kefu.tsv");
    let mapping_text = std::fs::read_to_string(&mapping_path)
        .with_context(|| format!("reading {}", mapping_path.display()))?;
    let mut mapping = BTreeMap::new();
    for line in mapping_text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let (jddc, id) = line
            .split_once('\t')
            .with_context(|| format!("{}: `{line}`", mapping_path.display()))?;
        let intent: Intent = id.trim().parse()?;
        mapping.insert(jddc.trim().to_owned(), intent);
    }
    let mut out = Vec::new();
    let mut unmapped = Vec::new();
    for name in ["jddc_intents_dev.tsv", "jddc_intents_extra.tsv"] {
        let path = dir.join(name);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        for (n, line) in text.lines().enumerate() {
            let Some((message, label)) = line.split_once('\t') else {
                continue;
            };
            if let Some(intent) = mapping.get(label.trim()) {
                out.push(Example {
                    text: message.trim().to_owned(),
                    intent: *intent,
                    origin: Origin::Jddc,
                    source: Some(format!("{name}:{}", n + 1)),
                });
            } else {
                unmapped.push(message.trim().to_owned());
            }
        }
    }
    anyhow::ensure!(
        !out.is_empty(),
        "no mapped JDDC questions in {}",
        dir.display()
    );
    Ok((dedupe(out), unmapped))
}

/// Drop repeated texts (the first label wins) and empty ones.
fn dedupe(examples: Vec<Example>) -> Vec<Example> {
    let mut seen = HashSet::new();
    examples
        .into_iter()
        .filter(|e| !e.text.is_empty() && seen.insert(e.text.clone()))
        .collect()
}

/// A second look at JDDC labels (`models/data/jddc_train_adjudication.tsv`): by `file:line`,
/// the right intent, or `None` where the message alone does not say which intent it is (it
/// only made sense in its dialogue). Applied to training examples only: the development and
/// test splits are scored on the labels as published.
pub struct Adjudication(BTreeMap<String, Option<Intent>>);

impl Adjudication {
    /// Lines `id<TAB>verdict<TAB>intent`, verdict `ok`, `wrong` (intent: the right one) or
    /// `context` (intent `-`); `#` lines are comments.
    pub fn load(path: &Path) -> anyhow::Result<Adjudication> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let mut verdicts = BTreeMap::new();
        for (n, line) in text.lines().enumerate() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let at = || format!("{}:{}", path.display(), n + 1);
            let cols: Vec<&str> = line.split('\t').collect();
            let [id, verdict, intent] = cols[..] else {
                anyhow::bail!("{}: expected `id<TAB>verdict<TAB>intent`", at());
            };
            let intent = match verdict {
                "ok" | "wrong" => Some(intent.parse::<Intent>().with_context(at)?),
                "context" => None,
                _ => anyhow::bail!("{}: unknown verdict `{verdict}`", at()),
            };
            anyhow::ensure!(
                verdicts.insert(id.to_owned(), intent).is_none(),
                "{}: `{id}` appears twice",
                at()
            );
        }
        Ok(Adjudication(verdicts))
    }

    /// Drop the context-only examples and correct the wrong labels; returns how many of each.
    pub fn apply(&self, examples: &mut Vec<Example>) -> (usize, usize) {
        let (mut dropped, mut corrected) = (0, 0);
        examples.retain_mut(|e| {
            let verdict = e.source.as_ref().and_then(|id| self.0.get(id));
            match verdict {
                Some(None) => {
                    dropped += 1;
                    false
                }
                Some(Some(intent)) => {
                    corrected += usize::from(*intent != e.intent);
                    e.intent = *intent;
                    true
                }
                None => true,
            }
        });
        (dropped, corrected)
    }
}

/// A blind labelling of JDDC questions (`models/data/jddc_blind_{train,dev}.tsv`,
/// `models/eval/jddc_blind_test.tsv`): by `file:line`, the intent a reader who never saw the
/// published label gave, and whether the message alone made it clear. A line is *confirmed*
/// when the two labels agree; the published labels are as noisy as a second reader finds
/// them (they agree on about three lines in four).
pub struct BlindLabels(BTreeMap<String, (Intent, bool)>);

impl BlindLabels {
    /// Lines `id<TAB>intent<TAB>kind` (`clear`, `context`, `ambiguous`); `#` lines are comments.
    pub fn load(path: &Path) -> anyhow::Result<BlindLabels> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let mut labels = BTreeMap::new();
        for (n, line) in text.lines().enumerate() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let at = || format!("{}:{}", path.display(), n + 1);
            let cols: Vec<&str> = line.split('\t').collect();
            let [id, intent, kind] = cols[..] else {
                anyhow::bail!("{}: expected `id<TAB>intent<TAB>kind`", at());
            };
            let intent = intent.parse::<Intent>().with_context(at)?;
            labels.insert(id.to_owned(), (intent, kind == "clear"));
        }
        Ok(BlindLabels(labels))
    }

    /// Whether a JDDC example's blind label agrees with its published one (`None`: not a
    /// labelled JDDC line).
    pub fn confirms(&self, e: &Example) -> Option<bool> {
        let (intent, _) = self.0.get(e.source.as_ref()?)?;
        Some(*intent == e.intent)
    }

    /// The examples without the JDDC lines the blind reader disagrees with (corpus lines and
    /// unlabelled JDDC lines stay); how many were dropped.
    pub fn keep_confirmed(&self, examples: &mut Vec<Example>) -> usize {
        let before = examples.len();
        examples.retain(|e| self.confirms(e) != Some(false));
        before - examples.len()
    }
}

/// Split into training, development and test parts, stratified by origin and intent.
pub fn split(examples: &[Example]) -> Splits {
    let mut groups: BTreeMap<(Origin, Intent), Vec<&Example>> = BTreeMap::new();
    for e in examples {
        groups.entry((e.origin, e.intent)).or_default().push(e);
    }
    let mut out = Splits::default();
    for (_, mut group) in groups {
        group.sort_by_key(|e| (fnv1a(&e.text), e.text.clone()));
        let n = group.len() as f64;
        let dev_end = ((n * DEV_SHARE).ceil() as usize).min(group.len());
        let test_end = ((n * (DEV_SHARE + TEST_SHARE)).ceil() as usize).min(group.len());
        for (i, e) in group.into_iter().enumerate() {
            let part = if i < dev_end {
                &mut out.dev
            } else if i < test_end {
                &mut out.test
            } else {
                &mut out.train
            };
            part.push(e.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(text: &str, intent: Intent) -> Example {
        Example {
            text: text.into(),
            intent,
            origin: Origin::Authored,
            source: None,
        }
    }

    #[test]
    fn adjudication_drops_context_and_corrects_labels() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("adj.tsv");
        std::fs::write(
            &path,
            "# id\tverdict\tintent\na.tsv:1\tok\tinvoice\na.tsv:2\twrong\tchange_address\na.tsv:3\tcontext\t-\n",
        )
        .unwrap();
        let adj = Adjudication::load(&path).unwrap();
        let jddc = |line: usize, intent| Example {
            source: Some(format!("a.tsv:{line}")),
            origin: Origin::Jddc,
            ..ex(&format!("m{line}"), intent)
        };
        let mut examples = vec![
            jddc(1, Intent::Invoice),
            jddc(2, Intent::ModifyOrder),
            jddc(3, Intent::Coupon),
            jddc(4, Intent::Coupon),
            ex("在吗", Intent::Greeting),
        ];
        assert_eq!(adj.apply(&mut examples), (1, 1));
        let intents: Vec<Intent> = examples.iter().map(|e| e.intent).collect();
        use Intent::*;
        assert_eq!(intents, [Invoice, ChangeAddress, Coupon, Greeting]);
        std::fs::write(&path, "a.tsv:1\tmaybe\tinvoice\n").unwrap();
        let e = Adjudication::load(&path).err().unwrap();
        assert!(format!("{e:#}").contains(":1: unknown verdict"), "{e:#}");
        std::fs::write(&path, "a.tsv:1\tok\tcoupons\n").unwrap();
        assert!(Adjudication::load(&path).is_err());
    }

    #[test]
    fn split_is_stratified_stable_and_disjoint() {
        let mut all = Vec::new();
        for i in 0..40 {
            all.push(ex(&format!("退款{i}"), Intent::RefundApply));
        }
        for i in 0..7 {
            all.push(ex(&format!("发票{i}"), Intent::Invoice));
        }
        let s = split(&all);
        assert_eq!(s.train.len() + s.dev.len() + s.test.len(), 47);
        let count = |part: &[Example], intent| part.iter().filter(|e| e.intent == intent).count();
        assert_eq!(count(&s.dev, Intent::RefundApply), 6);
        assert_eq!(count(&s.test, Intent::RefundApply), 6);
        assert_eq!(count(&s.dev, Intent::Invoice), 2);
        assert_eq!(count(&s.test, Intent::Invoice), 1);
        assert!(
            s.train
                .iter()
                .all(|t| !s.dev.contains(t) && !s.test.contains(t))
        );
        assert!(s.dev.iter().all(|d| !s.test.contains(d)));
        // The same input in another order splits the same way.
        all.reverse();
        let s2 = split(&all);
        let texts = |part: &[Example]| {
            let mut t: Vec<String> = part.iter().map(|e| e.text.clone()).collect();
            t.sort();
            t
        };
        assert_eq!(texts(&s.dev), texts(&s2.dev));
        assert_eq!(texts(&s.test), texts(&s2.test));
    }

    #[test]
    fn dedupe_keeps_the_first_label() {
        let d = dedupe(vec![
            ex("在吗", Intent::Greeting),
            ex("在吗", Intent::Other),
            ex("", Intent::Other),
        ]);
        assert_eq!(d, vec![ex("在吗", Intent::Greeting)]);
    }
}
