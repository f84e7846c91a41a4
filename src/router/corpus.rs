//! Training data for the router: the project's own corpus (`models/data/corpus/<intent>.txt`)
//! and the licensed JDDC intent questions (read by path, mapped through `jddc_to_kefu.tsv`,
//! never copied into the project), split once and for all into training and validation.
//!
//! The split is a pure function of the text: within each (source, intent) group, examples are
//! ordered by a 64-bit FNV-1a hash of their text and the first 15% (at least one) are
//! validation. Adding lines moves few others across the split, and no random state is needed
//! to reproduce it.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use anyhow::Context;

use crate::intent::Intent;

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
}

/// The share of each group kept for validation.
pub const VALIDATION_SHARE: f64 = 0.15;

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
    for name in ["jddc_intents_dev.tsv", "jddc_intents_extra.tsv"] {
        let path = dir.join(name);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        for line in text.lines() {
            let Some((message, label)) = line.split_once('\t') else {
                continue;
            };
            if let Some(intent) = mapping.get(label.trim()) {
                out.push(Example {
                    text: message.trim().to_owned(),
                    intent: *intent,
                    origin: Origin::Jddc,
                });
            }
        }
    }
    anyhow::ensure!(
        !out.is_empty(),
        "no mapped JDDC questions in {}",
        dir.display()
    );
    Ok(dedupe(out))
}

/// Drop repeated texts (the first label wins) and empty ones.
fn dedupe(examples: Vec<Example>) -> Vec<Example> {
    let mut seen = HashSet::new();
    examples
        .into_iter()
        .filter(|e| !e.text.is_empty() && seen.insert(e.text.clone()))
        .collect()
}

/// 64-bit FNV-1a: stable across platforms and Rust versions, unlike `DefaultHasher`.
pub fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// Split into (training, validation), stratified by origin and intent.
pub fn split(examples: &[Example]) -> (Vec<Example>, Vec<Example>) {
    let mut groups: BTreeMap<(Origin, Intent), Vec<&Example>> = BTreeMap::new();
    for e in examples {
        groups.entry((e.origin, e.intent)).or_default().push(e);
    }
    let (mut train, mut val) = (Vec::new(), Vec::new());
    for (_, mut group) in groups {
        group.sort_by_key(|e| (fnv1a(&e.text), e.text.clone()));
        let n_val = ((group.len() as f64 * VALIDATION_SHARE).ceil() as usize).min(group.len());
        for (i, e) in group.into_iter().enumerate() {
            if i < n_val {
                val.push(e.clone());
            } else {
                train.push(e.clone());
            }
        }
    }
    (train, val)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(text: &str, intent: Intent) -> Example {
        Example {
            text: text.into(),
            intent,
            origin: Origin::Authored,
        }
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
        let (train, val) = split(&all);
        assert_eq!(train.len() + val.len(), 47);
        assert_eq!(
            val.iter()
                .filter(|e| e.intent == Intent::RefundApply)
                .count(),
            6
        );
        assert_eq!(
            val.iter().filter(|e| e.intent == Intent::Invoice).count(),
            2
        );
        assert!(train.iter().all(|t| !val.contains(t)));
        // The same input in another order splits the same way.
        all.reverse();
        let (_, val2) = split(&all);
        let mut a: Vec<_> = val.iter().map(|e| &e.text).collect();
        let mut b: Vec<_> = val2.iter().map(|e| &e.text).collect();
        a.sort();
        b.sort();
        assert_eq!(a, b);
    }

    #[test]
    fn fnv_is_the_reference_function() {
        assert_eq!(fnv1a(""), 0xcbf29ce484222325);
        assert_eq!(fnv1a("a"), 0xaf63dc4c8601ec8c);
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
