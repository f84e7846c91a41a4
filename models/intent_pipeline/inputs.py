"""What the model of v2 is trained and judged on, and how a message with its dialogue becomes
token ids.

- The router's splits (`kefu-edge export-splits`): training, development (every choice is
  made on it) and test (reported, never chosen on) lines of the corpus and of the JDDC
  questions, with the fast path's decision on the development and test lines.
- The blind labels of the JDDC questions (`models/data/jddc_blind_{train,dev}.tsv`,
  `models/eval/jddc_blind_test.tsv`): ids only. A JDDC line is *confirmed* when the blind
  label and the published (mapped) one agree; the targets are judged on confirmed lines.
- Written dialogues (`models/data/dialogues_train.tsv`): every turn after the first becomes a
  message with its previous turn; 15% of the dialogues (by hash of their id) are held out
  for development. `models/data/dialogues.tsv` is the dialogue test set and is never read
  here.
- Distractor contexts: a share of the standalone training lines is given the previous turn
  of an unrelated line, with the label unchanged, so the model learns that a message which
  says what it wants is not changed by what came before.

The input is `<s> message </s>` or, with the previous turn, `<s> message </s></s> context
</s>` where the context is `<intent name>：<previous text>`; the message is cut to
`MESSAGE_TOKENS`, the context to `CONTEXT_TOKENS`. The Rust model stage builds the same ids
(the format is in the version's manifest)."""

import hashlib
import random
from dataclasses import dataclass, field
from pathlib import Path

MESSAGE_TOKENS = 64
CONTEXT_TOKENS = 32
CONTEXT_SEPARATOR = "："
BOS, PAD, EOS = 0, 1, 2


@dataclass
class Example:
    text: str
    intent: str  # the label trained on, or "" for unlabelled text
    origin: str  # authored | jddc | dialogue | unlabelled
    context: tuple = None  # (previous intent, previous text) or None
    source: str = "-"  # JDDC file:line, or dialogue id:turn
    stage: str = ""  # development / test lines: the fast path's decision (rule | model) ...
    decided: str = ""  # ... and the intent it decided
    router: list = field(default_factory=list)  # the router's probabilities (intents.tsv order)
    mapped: str = ""  # JDDC: the published label, before any relabelling
    blind: str = ""  # JDDC: the blind label ...
    kind: str = ""  # ... and its kind (clear | context | ambiguous); dialogues: alone | context | ack
    fine: str = ""  # JDDC: the published fine-grained JDDC intent (one of 123)


def intents(intents_tsv: Path) -> tuple:
    """(ids in intents.tsv order, {id: Chinese name})."""
    ids, names = [], {}
    for line in intents_tsv.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            cols = line.split("\t")
            ids.append(cols[0])
            names[cols[0]] = cols[2]
    return ids, names


def read_blind(path: Path) -> dict:
    out = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            if line and not line.startswith("#"):
                ref, intent, kind = line.split("\t")
                out[ref] = (intent, kind)
    return out


def read_split(path: Path, blind: dict) -> list:
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line or line.startswith("#"):
            continue
        text, intent, origin, stage, decided, probs, source = line.split("\t")
        b_intent, b_kind = blind.get(source, ("", ""))
        rows.append(Example(
            text=text, intent=intent, origin=origin, source=source, stage=stage,
            decided=decided, router=[float(p) for p in probs.split(",")] if probs else [],
            mapped=intent if origin == "jddc" else "", blind=b_intent, kind=b_kind,
        ))
    return rows


def relabel_jddc(rows: list, how: str) -> list:
    """The JDDC training labels: `mapped` as published; `agreed` keeps only the lines whose
    blind label agrees; `blind` trains on the blind label of every line."""
    if how == "mapped":
        return rows
    out = []
    for r in rows:
        if r.origin != "jddc" or not r.blind:
            out.append(r)
        elif how == "agreed" and r.blind == r.mapped:
            out.append(r)
        elif how == "blind":
            r.intent = r.blind
            out.append(r)
    return out


def _held_out(dialogue_id: str, share=0.15) -> bool:
    h = int.from_bytes(hashlib.sha256(dialogue_id.encode()).digest()[:8], "big")
    return h / 2**64 < share


def read_dialogues(path: Path, held_out_share=0.15) -> tuple:
    """(training, development) examples from the written dialogues: the first turn alone,
    every later turn with the previous turn's labelled intent and text; `held_out_share` of
    the dialogues (by hash of their id) are development."""
    by_id = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line or line.startswith("#"):
            continue
        did, turn, text, intent, _order, kind = line.split("\t")
        by_id.setdefault(did, []).append((int(turn), text, intent, kind))
    train, dev = [], []
    for did, turns in sorted(by_id.items()):
        turns.sort()
        previous = None
        for turn, text, intent, kind in turns:
            ex = Example(text=text, intent=intent, origin="dialogue", context=previous,
                         source=f"{did}:{turn}", kind=kind)
            (dev if _held_out(did, held_out_share) else train).append(ex)
            previous = (intent, text)
    return train, dev


def with_distractors(rows: list, share: float, rng: random.Random) -> list:
    """Copies of `share` of the standalone labelled rows, each with the previous turn of a
    random line of another intent: a message that says what it wants keeps its label."""
    pool = [r for r in rows if r.intent and r.context is None]
    out = []
    for r in pool:
        if rng.random() >= share:
            continue
        for _ in range(10):
            other = rng.choice(pool)
            if other.intent != r.intent:
                break
        out.append(Example(text=r.text, intent=r.intent, origin=r.origin,
                           context=(other.intent, other.text), source=r.source))
    return out


JDDC_FILES = ("jddc_intents_dev.tsv", "jddc_intents_extra.tsv")


def jddc_fine_labels(jddc_dir: Path) -> dict:
    """{`file:line` (the splits' JDDC source ids): the published fine-grained JDDC intent}."""
    out = {}
    for name in JDDC_FILES:
        for n, line in enumerate((jddc_dir / name).read_text(encoding="utf-8").splitlines()):
            text, _, label = line.partition("\t")
            if text.strip() and label.strip():
                out[f"{name}:{n + 1}"] = label.strip()
    return out


def unlabelled_jddc(jddc_dir: Path, exclude: set) -> list:
    """JDDC questions whose intent has no counterpart in intents.tsv: no label of ours, still
    real shopper text (with its fine-grained JDDC label in `fine`), for the soft labels of
    distillation and the teacher's fine-grained task. Development and test texts are left
    out."""
    mapped = set()
    for line in (jddc_dir / "jddc_to_kefu.tsv").read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            mapped.add(line.split("\t")[0].strip())
    out = {}
    for name in JDDC_FILES:
        for line in (jddc_dir / name).read_text(encoding="utf-8").splitlines():
            text, _, label = line.partition("\t")
            text = text.strip()
            if text and label.strip() not in mapped and text not in exclude:
                out.setdefault(text, label.strip())
    return [Example(text=t, intent="", origin="unlabelled", fine=f)
            for t, f in sorted(out.items())]


def context_text(context: tuple, names: dict) -> str:
    intent, text = context
    return f"{names.get(intent, intent)}{CONTEXT_SEPARATOR}{text}"


def encode(tok, examples: list, names: dict) -> list:
    """Token ids of every example, in the format the Rust model stage builds."""
    msgs = tok.encode_batch([e.text for e in examples], add_special_tokens=False)
    ctx_idx = [i for i, e in enumerate(examples) if e.context is not None]
    ctxs = tok.encode_batch([context_text(examples[i].context, names) for i in ctx_idx],
                            add_special_tokens=False)
    ctx_of = dict(zip(ctx_idx, ctxs))
    out = []
    for i, m in enumerate(msgs):
        ids = [BOS] + m.ids[:MESSAGE_TOKENS] + [EOS]
        if i in ctx_of:
            ids += [EOS] + ctx_of[i].ids[:CONTEXT_TOKENS] + [EOS]
        out.append(ids)
    return out
