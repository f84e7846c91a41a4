#!/usr/bin/env python3
"""Remove imprecise operator rules from intents.yaml, using the output of
`kefu-edge audit-keywords` (measured on the training split only).

    kefu-edge audit-keywords -c conf/ > /tmp/audit.tsv
    tools/prune_rules.py /tmp/audit.tsv conf/intents.yaml --below 0.95

A rule (keyword or /regex/) is removed from its intent when its precision is below the
bound. Repeat until nothing changes: removing a rule lets other rules win on its messages.
Edits the file in place, keeping its layout and comments (keyword lists are flow lists).
"""
import argparse
import re
import sys


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("audit")
    ap.add_argument("intents")
    ap.add_argument("--below", type=float, default=0.95)
    a = ap.parse_args()
    drop = {}  # intent -> set of rules
    for line in open(a.audit, encoding="utf-8"):
        if line.startswith("precision"):
            continue
        cols = line.rstrip("\n").split("\t")
        precision, intent, rule = float(cols[0]), cols[2], cols[3]
        if precision < a.below:
            drop.setdefault(intent, set()).add(rule)
    text = open(a.intents, encoding="utf-8").read()
    lines = text.split("\n")
    out, intent, removed = [], None, 0
    i = 0
    while i < len(lines):
        line = lines[i]
        m = re.match(r"^  ([a-z_]+):\s*$", line)
        if m:
            intent = m.group(1)
        rules = drop.get(intent, set())
        km = re.match(r"^(\s+keywords:\s*\[)(.*)$", line)
        if km and rules:
            # Gather the whole flow list (it may span lines).
            block = [line]
            while not block[-1].rstrip().endswith("]"):
                i += 1
                block.append(lines[i])
            body = "\n".join(block)
            head, inner = body.split("[", 1)
            inner = inner.rsplit("]", 1)[0]
            words = [w.strip() for w in inner.replace("\n", " ").split(",") if w.strip()]
            kept = [w for w in words if w.strip("'\"") not in rules]
            removed += len(words) - len(kept)
            out.append(head + "[" + ", ".join(kept) + "]")
            i += 1
            continue
        pm = re.match(r"^(\s+)- '(.*)'\s*$", line)
        if pm and rules and ("/" + pm.group(2).replace("''", "'") + "/") in rules:
            removed += 1
            i += 1
            continue
        out.append(line)
        i += 1
    # A `patterns:` key whose every item went reads as null: drop it.
    out = [l for j, l in enumerate(out)
           if not (re.match(r"^\s+patterns:\s*$", l)
                   and not (j + 1 < len(out) and re.match(r"^\s+- ", out[j + 1])))]
    open(a.intents, "w", encoding="utf-8").write("\n".join(out))
    print(f"removed {removed} rules below precision {a.below}", file=sys.stderr)


if __name__ == "__main__":
    main()
