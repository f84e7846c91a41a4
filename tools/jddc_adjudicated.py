#!/usr/bin/env python3
"""Fast-path figures of `kefu-edge classify` on the JDDC validation split, with the raw mapped
labels and with the blind adjudication of models/eval/jddc_val_adjudication.tsv (context-only
lines left out, wrong labels corrected). The text is read from ../shared/data by file:line.

    tools/jddc_adjudicated.py [-c conf/] [--data ../shared/data] [--bin target/release/kefu-edge]
"""
import argparse
import subprocess

ap = argparse.ArgumentParser()
ap.add_argument("-c", "--conf", default="conf")
ap.add_argument("--data", default="../shared/data")
ap.add_argument("--bin", default="target/release/kefu-edge")
ap.add_argument("--adjudication", default="models/eval/jddc_val_adjudication.tsv")
a = ap.parse_args()

fast = {l.split("\t")[0] for l in open("models/intents.tsv", encoding="utf-8") if "\tfast" in l}
mapping = {}
for line in open(f"{a.data}/jddc_to_kefu.tsv", encoding="utf-8"):
    if line.strip() and not line.startswith("#"):
        jddc, kefu = line.rstrip("\n").split("\t")
        mapping[jddc.strip()] = kefu.strip()
files = {}
rows = []
for line in open(a.adjudication, encoding="utf-8"):
    if line.startswith("#") or not line.strip():
        continue
    ref, verdict, intent = line.rstrip("\n").split("\t")
    name, number = ref.rsplit(":", 1)
    if name not in files:
        files[name] = open(f"{a.data}/{name}", encoding="utf-8").read().split("\n")
    text, label = files[name][int(number) - 1].split("\t", 1)
    rows.append((text.strip(), mapping[label.strip()], verdict, intent))

out = subprocess.run([a.bin, "classify", "-c", a.conf], input="\n".join(r[0] for r in rows) + "\n",
                     capture_output=True, text=True, check=True).stdout.splitlines()
assert len(out) == len(rows), "one decision per line"


def figures(pairs):
    answered = [(t, p) for t, p, stage in pairs if stage == "rule"]
    right = sum(t == p for t, p in answered)
    fast_true = [stage for t, p, stage in pairs if t in fast]
    return (f"n={len(pairs)} accuracy {sum(t == p for t, p, _ in pairs) / len(pairs):.4f} "
            f"fast-path coverage {fast_true.count('rule') / max(1, len(fast_true)):.4f} "
            f"precision {right / max(1, len(answered)):.4f} ({right}/{len(answered)})")


raw, adjudicated = [], []
for (text, label, verdict, intent), decision in zip(rows, out):
    predicted, _, stage = decision.split("\t")
    raw.append((label, predicted, stage))
    if verdict != "context":
        adjudicated.append((intent, predicted, stage))
counts = {v: sum(r[2] == v for r in rows) for v in ("ok", "wrong", "context")}
print(f"verdicts: {counts}")
print("raw labels:          ", figures(raw))
print("adjudicated labels:  ", figures(adjudicated))
