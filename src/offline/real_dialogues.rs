//! `eval-dialogues --real`: real dialogues through the server's answer path. The text comes
//! from the JDDC 2019 chat sample (`data/chat_0.1per.txt` of the public repository
//! EndlessLethe/jddc2019-3th-retrieve-model, read by path, never committed); the labels
//! (`models/eval/jddc_dialogues.tsv`: session, shopper turn, intent, kind) were made blind
//! to the product's answers. Each session's shopper turns go through [`Decider::answer`]
//! in order, with the dialogue state the server keeps, and every answer is scored: right
//! intent or not, answered at the edge or handed to a person (and why).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io::Write;
use std::path::Path;

use anyhow::Context as _;

use super::decider::Decider;
use crate::dialog::{CONTEXT_TURNS, DialogState, Slots, Turn};
use crate::intent::Intent;
use crate::pipeline::Handoff;

/// What a labelled turn is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Alone,
    Context,
    Ack,
    Card,
    Unclear,
}

impl Kind {
    fn parse(s: &str) -> anyhow::Result<Kind> {
        Ok(match s {
            "alone" => Kind::Alone,
            "context" => Kind::Context,
            "ack" => Kind::Ack,
            "card" => Kind::Card,
            "unclear" => Kind::Unclear,
            _ => anyhow::bail!("unknown kind `{s}`"),
        })
    }

    fn as_str(self) -> &'static str {
        match self {
            Kind::Alone => "alone",
            Kind::Context => "context",
            Kind::Ack => "ack",
            Kind::Card => "card",
            Kind::Unclear => "unclear",
        }
    }

    /// A turn that asks for something.
    fn substantive(self) -> bool {
        matches!(self, Kind::Alone | Kind::Context)
    }
}

/// A labelled shopper turn: its number in the session (from 1), intent and kind.
pub type LabelledTurn = (usize, Intent, Kind);

/// A session's id and its labelled turns.
pub type LabelledSession = (String, Vec<LabelledTurn>);

/// Shopper turns of every session in the chat sample, in order.
pub fn read_chat(path: &Path) -> anyhow::Result<HashMap<String, Vec<String>>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut sessions: HashMap<String, Vec<String>> = HashMap::new();
    for line in text.lines() {
        let cols: Vec<&str> = line.split('\t').collect();
        if cols.len() >= 7 && cols[2] == "0" {
            sessions
                .entry(cols[0].to_owned())
                .or_default()
                .push(cols[6].trim().to_owned());
        }
    }
    Ok(sessions)
}

/// `session<TAB>k<TAB>intent<TAB>kind` lines, by session in file order.
pub fn read_labels(path: &Path) -> anyhow::Result<Vec<LabelledSession>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut out: Vec<LabelledSession> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let at = || format!("{}:{}", path.display(), n + 1);
        let cols: Vec<&str> = line.split('\t').collect();
        let [session, k, intent, kind] = cols[..] else {
            anyhow::bail!("{}: expected `session<TAB>k<TAB>intent<TAB>kind`", at());
        };
        let turn = (
            k.parse::<usize>().with_context(at)?,
            intent.parse::<Intent>().with_context(at)?,
            Kind::parse(kind).with_context(at)?,
        );
        match out.last_mut() {
            Some((s, turns)) if s == session => turns.push(turn),
            _ => out.push((session.to_owned(), vec![turn])),
        }
    }
    Ok(out)
}

#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    n: usize,
    right: usize,
}

impl Tally {
    fn add(&mut self, right: bool) {
        self.n += 1;
        self.right += usize::from(right);
    }
}

impl fmt::Display for Tally {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let share = self.right as f64 / self.n.max(1) as f64;
        write!(f, "{share:.4} ({}/{})", self.right, self.n)
    }
}

#[derive(Debug, Default)]
pub struct Report {
    pub sessions: usize,
    /// Intent right, by kind.
    intent: BTreeMap<Kind, Tally>,
    /// Answered at the edge (no hand-off), by kind.
    at_edge: BTreeMap<Kind, Tally>,
    /// Substantive turns answered at the edge with the right intent.
    substantive_right_at_edge: Tally,
    /// Of the turns answered at the edge, right intent (substantive turns; all turns).
    edge_precision_substantive: Tally,
    edge_precision_all: Tally,
    handoffs: Tally,
    reasons: BTreeMap<&'static str, usize>,
}

/// Score `labels` (turns of `chat`) with `decider`; every turn goes to `trace` when given.
pub fn run(
    decider: &Decider,
    chat: &HashMap<String, Vec<String>>,
    labels: &[LabelledSession],
    mut trace: Option<&mut dyn Write>,
) -> anyhow::Result<Report> {
    let mut report = Report::default();
    for (session, turns) in labels {
        let texts = chat
            .get(session)
            .with_context(|| format!("session {session} is not in the chat file"))?;
        report.sessions += 1;
        let mut state = DialogState::default();
        // The turns of one session happen together: the context window is not what is scored.
        let now = 0;
        for &(k, want, kind) in turns {
            let text = texts
                .get(k.wrapping_sub(1))
                .with_context(|| format!("session {session} has no shopper turn {k}"))?;
            let turn_slots = Slots::extract(text);
            let mut slots = state.slots.clone();
            slots.update(&turn_slots);
            let recent = state.recent(now, i64::MAX, CONTEXT_TURNS);
            let context = state.context(&recent, now, i64::MAX, turn_slots.order.as_deref());
            let answer = decider.answer(text, &context, &slots);
            let right = answer.intent == want;
            let edge = answer.handoff.is_none();
            report.intent.entry(kind).or_default().add(right);
            report.at_edge.entry(kind).or_default().add(edge);
            report.handoffs.add(!edge);
            if let Some(reason) = answer.handoff {
                *report.reasons.entry(reason.as_str()).or_default() += 1;
            }
            if kind.substantive() {
                report.substantive_right_at_edge.add(edge && right);
                if edge {
                    report.edge_precision_substantive.add(right);
                }
            }
            if edge {
                report.edge_precision_all.add(right);
            }
            if let Some(w) = trace.as_mut() {
                let reason = answer.handoff.map_or("-", |h| h.as_str());
                writeln!(
                    w,
                    "{session}\t{k}\t{}\t{want}\t{}\t{:?}\t{:.3}\t{reason}\t{}",
                    kind.as_str(),
                    answer.intent,
                    answer.source,
                    answer.confidence,
                    text.replace(['\t', '\n'], " ")
                )?;
            }
            let (intent, handed) = (answer.intent, answer.handoff.is_some());
            let turn = Turn {
                intent,
                at: now,
                text: text.clone(),
            };
            state.record(turn, &turn_slots, handed, 16);
        }
    }
    Ok(report)
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let turns: usize = self.intent.values().map(|t| t.n).sum();
        writeln!(f, "sessions\t{}\nturns\t{turns}", self.sessions)?;
        for (kind, t) in &self.intent {
            let edge = self.at_edge.get(kind).copied().unwrap_or_default();
            writeln!(
                f,
                "{}\tintent right {t}\tanswered at the edge {edge}",
                kind.as_str()
            )?;
        }
        writeln!(
            f,
            "substantive turns answered at the edge with the right intent\t{}",
            self.substantive_right_at_edge
        )?;
        writeln!(
            f,
            "answered at the edge: right intent (substantive)\t{}",
            self.edge_precision_substantive
        )?;
        writeln!(
            f,
            "answered at the edge: right intent (all turns)\t{}",
            self.edge_precision_all
        )?;
        let ack = self.at_edge.get(&Kind::Ack).copied().unwrap_or_default();
        writeln!(f, "acknowledgements and closings not handed off\t{ack}")?;
        writeln!(f, "hand-offs\t{}", self.handoffs)?;
        for reason in Handoff::ALL {
            let n = self.reasons.get(reason.as_str()).copied().unwrap_or(0);
            writeln!(f, "  {}\t{n}", reason.as_str())?;
        }
        Ok(())
    }
}
