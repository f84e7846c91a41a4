#!/usr/bin/env python3
"""Two-stage figures of `kefu-edge classify` on a JDDC split, judged three ways: the published
(mapped) labels; the lines whose blind label (models/eval/jddc_blind_test.tsv or
models/data/jddc_blind_dev.tsv, ids only) confirms the mapped one; and the confirmed lines by
the blind reader's kind: clear from the message alone, needing the earlier dialogue, ambiguous. The text comes from the split that
`kefu-edge export-splits` wrote (target/model-data, never committed).

    tools/jddc_blind.py [--split test] [--with-model] [-c conf/] [--bin target/release/kefu-edge]
"""
import argparse
import subprocess
import tempfile
from pathlib import Path

from jddc_splits import blind_labels, split_rows

ap = argparse.ArgumentParser()
ap.add_argument("--split", default="test", choices=["dev", "test"])
ap.add_argument("--splits", default="target/model-data")
ap.add_argument("--with-model", action="store_true")
ap.add_argument("-c", "--conf", default="conf")
ap.add_argument("--bin", default="target/release/kefu-edge")
a = ap.parse_args()

blind = blind_labels(a.split)
rows = [(text, intent, ref) for text, intent, origin, ref in split_rows(a.splits, a.split)
        if origin == "jddc"]


def confirmed(kind=None):
    """The lines whose blind label agrees with the published one (of the blind reader's
    `kind`, when given)."""
    return [r for r in rows
            if blind.get(r[2], ("", ""))[0] == r[1] and kind in (None, blind[r[2]][1])]


groups = {
    "raw (published labels)": rows,
    "confirmed (blind label agrees)": confirmed(),
    "confirmed and clear from the message": confirmed("clear"),
    # The two remaining parts of the confirmed lines: what the message alone can't settle
    # bounds the confirmed figure whatever the clear lines score.
    "confirmed, needing the earlier dialogue": confirmed("context"),
    "confirmed, ambiguous": confirmed("ambiguous"),
}
for name, group in groups.items():
    with tempfile.NamedTemporaryFile("w", suffix=".tsv", encoding="utf-8", delete=False) as f:
        for text, intent, _ in group:
            f.write(f"{text}\t{intent}\n")
    cmd = [a.bin, "classify", "-c", a.conf, "--eval", f.name] + (["--with-model"] if a.with_model else [])
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    print(f"== JDDC {a.split}, {name}")
    print("\n".join(out.splitlines()[:4]))
    Path(f.name).unlink()
