//! The shipped reply filter (`conf/post.yaml`, its word lists and its match judge) on the
//! project's own test lists, written blind to the filter (`tests/data/post/`):
//! - clean shop replies, most of them with an ordinary word that contains or straddles a
//!   listed one, must come back unchanged. `clean_replies.txt` was written first; while the
//!   judge's training examples were commissioned, its failures were quoted to the writers,
//!   so it is no longer blind to the judge. `clean_replies_b.txt` was written afterwards by a
//!   writer who saw nothing of the project: it is the judge's honest figure;
//! - every evasion of a listed word (separators, full width, case, homophones, pinyin) and
//!   every plain use of one in its sensitive sense must be masked.
//!
//! Run with `--nocapture` for the figures. The targets (0 changed, every evasion masked) are
//! not met: the assertions hold the measured frontier, so a change that makes it worse fails
//! (README.md, "The reply filter", has the figures).

use std::borrow::Cow;
use std::path::Path;

use kefu_edge::config::{Config, PostConfig};
use kefu_edge::post::ReplyFilter;

fn lines(path: &str) -> Vec<String> {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full)
        .unwrap_or_else(|e| panic!("{}: {e}", full.display()))
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

fn shipped_filter() -> ReplyFilter {
    let conf = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf");
    let config = Config::load(&conf).unwrap_or_else(|e| panic!("{e}"));
    ReplyFilter::new(&config.post).unwrap()
}

/// The shipped filter without its match judge (segmentation and word lists alone).
fn filter_without_judge() -> ReplyFilter {
    let conf = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf");
    let config = Config::load(&conf).unwrap_or_else(|e| panic!("{e}"));
    ReplyFilter::new(&PostConfig {
        judge: None,
        ..config.post
    })
    .unwrap()
}

/// (clean replies changed: (reply, masked), evasions missed) of a pair of lists.
fn score(
    filter: &ReplyFilter,
    clean: &[String],
    evasions: &[String],
) -> (Vec<(String, String)>, Vec<String>) {
    let changed = clean
        .iter()
        .filter_map(|r| match filter.filter(r) {
            Cow::Borrowed(_) => None,
            Cow::Owned(m) => Some((r.clone(), m)),
        })
        .collect();
    let mut missed = Vec::new();
    for line in evasions {
        let (text, word) = line.split_once('\t').expect("text<TAB>word");
        if let Cow::Borrowed(_) = filter.filter(text) {
            missed.push(format!("{text}\t({word})"));
        }
    }
    (changed, missed)
}

fn print_score(
    name: &str,
    clean: usize,
    evasions: usize,
    changed: &[(String, String)],
    missed: &[String],
) {
    println!(
        "{name}: clean replies changed: {} of {clean}; evasions masked: {} of {evasions} (recall {:.4})",
        changed.len(),
        evasions - missed.len(),
        (evasions - missed.len()) as f64 / evasions as f64
    );
    for (r, m) in changed {
        println!("changed: {r}\n     ->  {m}");
    }
    for m in missed {
        println!("missed:  {m}");
    }
}

#[test]
fn clean_replies_are_never_changed_and_evasions_are_always_masked() {
    let filter = shipped_filter();
    let clean = lines("tests/data/post/clean_replies.txt");
    let evasions = lines("tests/data/post/evasions.tsv");
    let (changed, missed) = score(&filter, &clean, &evasions);
    print_score("test lists", clean.len(), evasions.len(), &changed, &missed);
    assert!(clean.len() >= 300 && evasions.len() >= 100);
    let second = lines("tests/data/post/clean_replies_b.txt");
    let (second_changed, _) = score(&filter, &second, &[]);
    print_score("second clean list", second.len(), 0, &second_changed, &[]);
    let plain = lines("tests/data/post/plain_violations.tsv");
    let (_, plain_missed) = score(&filter, &[], &plain);
    print_score("plain uses", 0, plain.len(), &[], &plain_missed);
    assert!(plain_missed.len() <= 4, "{plain_missed:?}");
    assert!(
        changed.len() <= 7,
        "{} clean replies changed",
        changed.len()
    );
    assert!(
        second_changed.len() <= 12,
        "{} clean replies of the second list changed",
        second_changed.len()
    );
    assert!(missed.len() <= 4, "{} evasions not masked", missed.len());
}

/// The development lists the filter's rules were tuned on (`models/data/filter_dev_*`): the
/// figures only, `cargo test --test reply_filter -- --ignored --nocapture`.
#[test]
#[ignore]
fn development_lists() {
    let filter = shipped_filter();
    let clean = lines("models/data/filter_dev_clean.txt");
    let evasions = lines("models/data/filter_dev_evasions.tsv");
    let (changed, missed) = score(&filter, &clean, &evasions);
    print_score(
        "development lists",
        clean.len(),
        evasions.len(),
        &changed,
        &missed,
    );
}

/// The same lists through the filter without its match judge: the figures only,
/// `cargo test --test reply_filter -- --ignored --nocapture`.
#[test]
#[ignore]
fn without_the_judge() {
    let filter = filter_without_judge();
    for (name, clean, masked) in [
        (
            "test lists",
            "tests/data/post/clean_replies.txt",
            "tests/data/post/evasions.tsv",
        ),
        ("plain uses", "", "tests/data/post/plain_violations.tsv"),
        (
            "second clean list",
            "tests/data/post/clean_replies_b.txt",
            "",
        ),
    ] {
        let clean = if clean.is_empty() {
            vec![]
        } else {
            lines(clean)
        };
        let masked = if masked.is_empty() {
            vec![]
        } else {
            lines(masked)
        };
        let (changed, missed) = score(&filter, &clean, &masked);
        print_score(name, clean.len(), masked.len(), &changed, &missed);
    }
}
