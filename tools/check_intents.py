#!/usr/bin/env python3
"""Check conf/intents.yaml against its own schema and against tests/data/intent_samples.tsv
(keyword layer only: whatever it answers must be right).

Mirrors the matching of src/router/keyword.rs (see the header of conf/intents.yaml):
  * the text is folded: full-width ASCII U+FF01..U+FF5E -> ASCII, U+3000 -> space,
    ASCII upper case -> lower case (one character for one character);
  * an intent is a candidate when one of its keywords (substring) or patterns (regex,
    leftmost-first match, its length in characters) occurs and none of its excludes occurs;
  * the longest hit wins; ties go to the higher priority, then to file order.
A sample whose intent is `fallback` must match no rule.

Also checks, when present, that replies survive conf/words/ (no sensitive word outside a
whitelist word) and that tests/data/mask_samples.tsv agrees with the word lists.

Usage: python3 tools/check_intents.py [--root DIR] [--classify]   (--classify: read lines
from stdin and print `intent<TAB>hit length` for each, `fallback` when no rule matches)
Exit status 0 when everything passes, 1 otherwise.
"""
import argparse
import os
import re
import sys

try:
    import yaml
except ImportError:  # pragma: no cover
    sys.exit("check_intents.py needs PyYAML: pip install pyyaml")

FALLBACK_REPLY = "亲,转人工客服哦~"
ALLOWED_KEYS = {"keywords", "patterns", "exclude", "priority", "replies"}
# Rust `regex` has no look-around and no backreferences.
UNSUPPORTED_RE = re.compile(r"\(\?[=!]|\(\?<[=!]|\\[1-9]|\\k<|\(\?P=")
IGNORE_CHARS = " ·.-_|/\\"  # post.yaml default `ignore_chars`


def fold_char(c):
    o = ord(c)
    if 0xFF01 <= o <= 0xFF5E:
        c = chr(o - 0xFEE0)
    elif o == 0x3000:
        return " "
    if "A" <= c <= "Z":
        return c.lower()
    return c


def fold(s):
    return "".join(fold_char(c) for c in s)


class Rules:
    def __init__(self, doc):
        self.intents = []  # (id, keywords, patterns, exclude, priority)
        for iid, r in (doc.get("intents") or {}).items():
            r = r or {}
            kws = [fold(str(k).strip()) for k in r.get("keywords") or []]
            exc = [fold(str(k).strip()) for k in r.get("exclude") or []]
            pats = [re.compile(p) for p in r.get("patterns") or []]
            self.intents.append((iid, kws, pats, exc, int(r.get("priority") or 0)))

    def classify(self, text):
        """(intent, hit length) or (None, 0)."""
        t = fold(text)
        best = None  # (len, priority, -index, id)
        for idx, (iid, kws, pats, exc, prio) in enumerate(self.intents):
            if any(e and e in t for e in exc):
                continue
            n = max((len(k) for k in kws if k and k in t), default=0)
            for p in pats:
                m = p.search(t)
                if m:
                    n = max(n, len(m.group(0)), 1)
            if n == 0:
                continue
            key = (n, prio, -idx, iid)
            if best is None or key[:3] > best[:3]:
                best = key
        return (best[3], best[0]) if best else (None, 0)


def load_intent_ids(path):
    fast, model = [], []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.strip() or line.startswith("#"):
                continue
            cols = line.rstrip("\n").split("\t")
            (fast if cols[1] == "fast" else model).append(cols[0])
    return fast, model


def read_words(path):
    words = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            w = fold(line.split("#", 1)[0].strip())
            if w and w not in words:
                words.append(w)
    return words


def find_word(text, word, start):
    """Match `word` at `start` in folded `text`, skipping ignore chars between its
    characters; return the end index or None."""
    i = start
    for j, wc in enumerate(word):
        if j > 0:
            while i < len(text) and text[i] in IGNORE_CHARS and text[i] != wc:
                i += 1
        if i >= len(text) or text[i] != wc:
            return None
        i += 1
    return i


def spans(text, words):
    out = []
    for s in range(len(text)):
        for w in words:
            e = find_word(text, w, s)
            if e is not None:
                out.append((s, e))
    return out


def mask(text, sensitive, whitelist, mask_char="*"):
    """Mask every character of every sensitive match (in the original text) unless the
    match lies fully inside a whitelist match."""
    t = fold(text)
    sens = [w for w in sensitive if w not in whitelist]
    white = spans(t, whitelist)
    chars = list(text)
    for s, e in spans(t, sens):
        if any(ws <= s and e <= we for ws, we in white):
            continue
        for i in range(s, e):
            if t[i] not in IGNORE_CHARS or i in (s, e - 1):
                chars[i] = mask_char
    return "".join(chars)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    ap.add_argument("--classify", action="store_true")
    args = ap.parse_args()
    root = os.path.abspath(args.root)
    conf = os.path.join(root, "conf", "intents.yaml")
    with open(conf, encoding="utf-8") as f:
        doc = yaml.safe_load(f)

    if args.classify:
        rules = Rules(doc)
        for line in sys.stdin:
            iid, n = rules.classify(line.rstrip("\n"))
            print(f"{iid or 'fallback'}\t{n}")
        return 0

    errors = []
    tsv = None
    for cand in (os.path.join(root, "..", "shared", "intents.tsv"), "/work/shared/intents.tsv"):
        if os.path.exists(cand):
            tsv = cand
            break
    if tsv is None:
        print("cannot find shared/intents.tsv", file=sys.stderr)
        return 1
    fast, model = load_intent_ids(tsv)

    # ---- schema -------------------------------------------------------------------------
    if set(doc) != {"fallback_reply", "intents"}:
        errors.append(f"top-level keys must be fallback_reply and intents, got {sorted(doc)}")
    if doc.get("fallback_reply") != FALLBACK_REPLY:
        errors.append(f"fallback_reply must be {FALLBACK_REPLY!r}")
    intents = doc.get("intents") or {}
    for iid in intents:
        if iid not in fast and iid not in model:
            errors.append(f"unknown intent id {iid!r}")
        elif iid in model:
            errors.append(f"{iid}: model intent must not have an entry here")
    missing = [i for i in fast if i not in intents]
    if missing:
        errors.append(f"fast intents without an entry: {missing}")
    order = [i for i in intents if i in fast]
    if order != [i for i in fast if i in intents]:
        errors.append("intents are not in intents.tsv order")

    for iid, r in intents.items():
        if not isinstance(r, dict):
            errors.append(f"{iid}: entry must be a mapping")
            continue
        unknown = set(r) - ALLOWED_KEYS
        if unknown:
            errors.append(f"{iid}: unknown keys {sorted(unknown)}")
        if not isinstance(r.get("priority", 0), int) or isinstance(r.get("priority", 0), bool):
            errors.append(f"{iid}: priority must be an integer")
        kws = r.get("keywords") or []
        if not 8 <= len(kws) <= 25:
            errors.append(f"{iid}: {len(kws)} keywords (want 8-25)")
        seen = set()
        for k in kws:
            if not isinstance(k, str):
                errors.append(f"{iid}: keyword {k!r} is not a string (quote it)")
                continue
            if len(k.strip()) < 2:
                errors.append(f"{iid}: keyword {k!r} shorter than 2 characters")
            if fold(k.strip()) != k:
                errors.append(f"{iid}: keyword {k!r} is not folded (write {fold(k.strip())!r})")
            if fold(k.strip()) in seen:
                errors.append(f"{iid}: duplicate keyword {k!r}")
            seen.add(fold(k.strip()))
        for k in r.get("exclude") or []:
            if not isinstance(k, str) or len(k.strip()) < 2 or fold(k.strip()) != k:
                errors.append(f"{iid}: bad exclude entry {k!r} (string, >=2 chars, folded)")
            elif k in seen:
                errors.append(f"{iid}: {k!r} is both a keyword and an exclude")
        for p in r.get("patterns") or []:
            if not isinstance(p, str):
                errors.append(f"{iid}: pattern {p!r} is not a string")
                continue
            if UNSUPPORTED_RE.search(p):
                errors.append(f"{iid}: pattern {p!r} uses look-around or a backreference")
            try:
                rx = re.compile(p)
                if rx.search("") is not None:
                    errors.append(f"{iid}: pattern {p!r} matches the empty string")
            except re.error as e:
                errors.append(f"{iid}: pattern {p!r}: {e}")
        replies = r.get("replies") or []
        if iid in fast and len(replies) < 2:
            errors.append(f"{iid}: {len(replies)} replies (want at least 2)")
        for rep in replies:
            if not isinstance(rep, str) or not rep.strip():
                errors.append(f"{iid}: empty or non-string reply {rep!r}")
                continue
            rest = rep.replace("{campaign}", "")
            for slot in ("{order}", "{size}", "{color}"):
                rest = rest.replace(slot, "")
            if "{" in rest or "}" in rest:
                errors.append(f"{iid}: reply uses an unknown variable or a stray brace: {rep!r}")
            if "{campaign}" not in rep:
                errors.append(f"{iid}: reply without {{campaign}}: {rep!r}")

    if errors:
        for e in errors:
            print("SCHEMA:", e)
        return 1
    rules = Rules(doc)

    # ---- samples ------------------------------------------------------------------------
    samples = os.path.join(root, "tests", "data", "intent_samples.tsv")
    counts = {}
    n = 0
    with open(samples, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line.strip() or line.startswith("#"):
                continue
            cols = line.split("\t")
            if len(cols) != 2:
                errors.append(f"{samples}:{lineno}: want text<TAB>intent")
                continue
            text, want = cols
            if want != "fallback" and want not in fast:
                errors.append(f"{samples}:{lineno}: {want!r} is neither a fast intent nor fallback")
                continue
            got, hit = rules.classify(text)
            got = got or "fallback"
            n += 1
            counts[want] = counts.get(want, 0) + 1
            # The keyword layer is the operator override in front of the trained router: what it
            # answers must be right, and fallback samples it must leave alone; the rest is the
            # router's (tested by the Rust suite against the shipped model).
            if got != "fallback" and got != want:
                errors.append(f"{samples}:{lineno}: {text!r}: want {want}, got {got} (hit {hit})")
    for iid in fast:
        if counts.get(iid, 0) < 3:
            errors.append(f"samples: {iid} has {counts.get(iid, 0)} samples (want 3)")

    # ---- reply filter ---------------------------------------------------------------------
    words_dir = os.path.join(root, "conf", "words")
    sens_path = os.path.join(words_dir, "sensitive.txt")
    white_path = os.path.join(words_dir, "whitelist.txt")
    nmask = 0
    if os.path.exists(sens_path):
        sensitive = read_words(sens_path)
        whitelist = read_words(white_path) if os.path.exists(white_path) else []
        for w in sensitive + whitelist:
            if w != w.lower():
                errors.append(f"word list: {w!r} is not lower case")
        dup = set(sensitive) & set(whitelist)
        if dup:
            errors.append(f"word list: in both lists: {sorted(dup)}")
        replies = [doc["fallback_reply"]] + [rep for r in intents.values() for rep in r.get("replies") or []]
        for rep in replies:
            plain = rep.replace("{campaign}", "").replace("{order}", "").replace("{size}", "").replace("{color}", "")
            masked = mask(plain, sensitive, whitelist)
            if masked != plain:
                errors.append(f"reply would be masked: {masked!r}")
        ms = os.path.join(root, "tests", "data", "mask_samples.tsv")
        if os.path.exists(ms):
            with open(ms, encoding="utf-8") as f:
                for lineno, line in enumerate(f, 1):
                    line = line.rstrip("\n")
                    if not line.strip() or line.startswith("#"):
                        continue
                    cols = line.split("\t")
                    if len(cols) != 2:
                        errors.append(f"{ms}:{lineno}: want text<TAB>masked")
                        continue
                    got = mask(cols[0], sensitive, whitelist)
                    nmask += 1
                    if got != cols[1]:
                        errors.append(f"{ms}:{lineno}: {cols[0]!r}: want {cols[1]!r}, got {got!r}")

    for e in errors:
        print("FAIL:", e)
    print(f"{len(intents)} intents, {n} intent samples, {nmask} mask samples, {len(errors)} failures")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
