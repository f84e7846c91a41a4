//! Necessary literals of a regex: a small set of strings at least one of which occurs in
//! every match. The keyword router puts them in its automaton and runs a pattern only when
//! one of them was seen, the prefilter idea of regex engines applied across many patterns.
//!
//! Two sources, the better one wins: regex-syntax's prefix/suffix extraction (long literals
//! such as `物流`), and a walk of the pattern's syntax tree that also finds literals in the
//! middle (`人工` in `(^|[\s,])人工([\s,]|$)`) where prefixes and suffixes are unbounded.

use regex_syntax::hir::literal::{ExtractKind, Extractor, Seq};
use regex_syntax::hir::{Class, Hir, HirKind};

use crate::text;

/// A pattern with more necessary literals than this is not worth gating.
const MAX_LITERALS: usize = 64;
/// A character class larger than this is not a useful gate.
const MAX_CLASS_CHARS: usize = 16;

/// The best set of necessary literals of `pattern`, or `None` when it has none worth using.
/// Literals are as they occur in folded text; the caller must match folded text.
pub fn gate_literals(pattern: &str) -> Option<Vec<String>> {
    let hir = regex_syntax::ParserBuilder::new()
        .build()
        .parse(pattern)
        .ok()?;
    let mut candidates = Vec::new();
    candidates.extend(required(&hir));
    for kind in [ExtractKind::Prefix, ExtractKind::Suffix] {
        candidates.extend(extracted(&hir, kind));
    }
    candidates
        .into_iter()
        .filter_map(usable)
        .max_by_key(|set| (min_chars(set), std::cmp::Reverse(set.len())))
}

fn min_chars(set: &[String]) -> usize {
    set.iter().map(|s| s.chars().count()).min().unwrap_or(0)
}

/// Drop literals folded text can never contain; refuse empty or oversized sets.
fn usable(set: Vec<String>) -> Option<Vec<String>> {
    if set.is_empty() || set.len() > MAX_LITERALS || set.iter().any(String::is_empty) {
        return None;
    }
    let folded: Vec<String> = set.into_iter().filter(|s| text::is_folded(s)).collect();
    (!folded.is_empty()).then_some(folded)
}

/// Prefix or suffix literals from regex-syntax, trimmed to shorter literals when there are
/// too many (`[0-9]{2,3}斤` starts with any of 100 digit pairs; it ends with `斤`).
fn extracted(hir: &Hir, kind: ExtractKind) -> Option<Vec<String>> {
    let seq = Extractor::new().kind(kind.clone()).extract(hir);
    let to_strings = |seq: &Seq| -> Option<Vec<String>> {
        let lits = seq.literals()?;
        if lits.len() > MAX_LITERALS {
            return None;
        }
        // A literal cut inside a character is not valid UTF-8: not usable.
        lits.iter()
            .map(|l| std::str::from_utf8(l.as_bytes()).ok().map(str::to_owned))
            .collect()
    };
    if let Some(set) = to_strings(&seq) {
        return Some(set);
    }
    if !seq.is_finite() {
        return None;
    }
    [9, 6, 3].into_iter().find_map(|bytes| {
        let mut trimmed = seq.clone();
        match kind {
            ExtractKind::Suffix => trimmed.keep_last_bytes(bytes),
            _ => trimmed.keep_first_bytes(bytes),
        }
        trimmed.sort();
        trimmed.dedup();
        to_strings(&trimmed)
    })
}

/// Literals at least one of which every match of `hir` contains.
fn required(hir: &Hir) -> Option<Vec<String>> {
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => None,
        HirKind::Literal(lit) => std::str::from_utf8(&lit.0).ok().map(|s| vec![s.to_owned()]),
        HirKind::Class(Class::Unicode(class)) => {
            let count: usize = class
                .ranges()
                .iter()
                .map(|r| r.end() as usize - r.start() as usize + 1)
                .sum();
            if count > MAX_CLASS_CHARS {
                return None;
            }
            Some(
                class
                    .ranges()
                    .iter()
                    .flat_map(|r| r.start()..=r.end())
                    .map(String::from)
                    .collect(),
            )
        }
        HirKind::Class(Class::Bytes(_)) => None,
        HirKind::Repetition(rep) if rep.min >= 1 => required(&rep.sub),
        HirKind::Repetition(_) => None,
        HirKind::Capture(cap) => required(&cap.sub),
        HirKind::Concat(parts) => parts
            .iter()
            .filter_map(required)
            .filter(|set| set.len() <= MAX_LITERALS)
            .max_by_key(|set| (min_chars(set), std::cmp::Reverse(set.len()))),
        HirKind::Alternation(branches) => {
            let mut all: Vec<String> = Vec::new();
            for branch in branches {
                for lit in required(branch)? {
                    if !all.contains(&lit) {
                        all.push(lit);
                    }
                }
                if all.len() > MAX_LITERALS {
                    return None;
                }
            }
            Some(all)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(p: &str) -> Option<Vec<String>> {
        gate_literals(p).map(|mut v| {
            v.sort();
            v
        })
    }

    #[test]
    fn prefixes_suffixes_and_inner_literals() {
        // Longer literals are the more selective gate.
        assert_eq!(
            gate("(券|劵)[^,]{0,4}(用不了|失效)").unwrap(),
            ["失效", "用不了"]
        );
        assert_eq!(
            gate("券[^,]{0,4}(用不了|失效)").unwrap(),
            ["失效", "用不了"]
        );
        let either = gate("(物流|快递)[^,]{0,4}(没动|卡住)").unwrap();
        assert!(
            either == ["快递", "物流"] || either == ["卡住", "没动"],
            "{either:?}"
        );
        assert_eq!(gate(r"[0-9]{2,3}\s*(斤|kg)").unwrap(), ["kg", "斤"]);
        assert_eq!(gate(r"(^|[\s,.])人工([\s,.]|$)").unwrap(), ["人工"]);
        let set = gate(r"^\s*(亲+|嗨+|hi+|在)\s*$").unwrap();
        assert_eq!(set.len(), 4, "{set:?}");
        assert!(
            ["亲", "嗨", "在"]
                .iter()
                .all(|w| set.iter().any(|s| s == w)),
            "{set:?}"
        );
        let set = gate("质量(太|很)?(差|烂)").unwrap();
        assert!(
            set.len() == 6 && set.iter().all(|s| s.starts_with("质量")),
            "{set:?}"
        );
    }

    #[test]
    fn no_gate_where_no_literal_is_necessary() {
        assert_eq!(gate(r"\d{11}"), None);
        assert_eq!(gate("a?"), None);
        assert_eq!(gate("(退款|.)"), None, "one branch needs nothing");
        assert_eq!(gate("[一-龥]+"), None, "a huge class is not a gate");
    }

    #[test]
    fn literals_folding_removes_are_dropped() {
        // Matching runs on folded (lower-case) text: `A` can never occur there.
        let set = gate("(?i)ab").unwrap();
        assert!(
            !set.is_empty() && set.iter().all(|s| text::is_folded(s)),
            "{set:?}"
        );
    }
}
