#!/usr/bin/env python3
"""Served figures of ways to combine two routers on the fast path, on the split that
`kefu-edge export-splits` wrote (target/model-data), from `kefu-edge classify` alone.

    tools/fast_gate_sim.py dev MAIN_CONF SECOND_CONF

MAIN_CONF is a configuration with the main router (and no `fast_path`), SECOND_CONF the same
with the second router as `model`; both with absolute paths (conf/*.yaml use ../ paths). The
model stage's answer is read on every line from a copy of MAIN_CONF whose thresholds no router
reaches, so the simulation is exact: what the fast path does not answer, the model stage
answers with the main router's guess mixed in, as the server does.
"""
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from jddc_splits import blind_labels, split_rows

split, main_conf, second_conf = sys.argv[1], sys.argv[2], sys.argv[3]
blind = blind_labels(split)
rows = split_rows("target/model-data", split)
FAST_INTENTS = [
    line.split("\t")[0]
    for line in open("models/intents.tsv", encoding="utf-8")
    if not line.startswith("#") and line.split("\t")[1:2] == ["fast"]
]


def classify(conf, with_model):
    """`intent, confidence, stage` of every row, as `kefu-edge classify` decides it."""
    cmd = ["target/release/kefu-edge", "classify", "-c", conf]
    if with_model:
        cmd.append("--with-model")
    text = "\n".join(r[0] for r in rows) + "\n"
    out = subprocess.run(cmd, input=text, capture_output=True, text=True, check=True).stdout
    return [line.split("\t") for line in out.splitlines()]


with tempfile.TemporaryDirectory() as tmp:
    no_fast = Path(tmp) / "conf"
    shutil.copytree(main_conf, no_fast)
    router_yaml = no_fast / "router.yaml"
    unreachable = ", ".join(f"{i}: 1.0" for i in FAST_INTENTS)
    text, n = re.subn(r"(?m)^thresholds:.*$", f"thresholds: {{{unreachable}}}",
                      router_yaml.read_text(encoding="utf-8"))
    assert n == 1, "router.yaml needs one `thresholds:` line"
    router_yaml.write_text(text, encoding="utf-8")
    model = classify(str(no_fast), True)
main, second = classify(main_conf, False), classify(second_conf, False)
assert len(main) == len(second) == len(model) == len(rows)


def confirmed(r):
    return r[2] == "jddc" and blind.get(r[3], ("",))[0] == r[1]


GROUPS = [
    ("authored", lambda r: r[2] == "authored"),
    ("confirmed", confirmed),
    ("clear", lambda r: confirmed(r) and blind[r[3]][1] == "clear"),
]
# Whether the fast path answers, from: main router sure, second router sure, same intent.
RULES = {
    "main alone": lambda m, s, same: m,
    "second alone": lambda m, s, same: s,
    "either sure": lambda m, s, same: m or (s and same),
    "agree, either sure": lambda m, s, same: (m or s) and same,
    "agree, second sure": lambda m, s, same: s and same,
    "agree, both sure": lambda m, s, same: m and s and same,
}
for name, rule in RULES.items():
    cells = []
    for group, keep in GROUPS:
        idx = [i for i, r in enumerate(rows) if keep(r)]
        right = fast = fast_right = 0
        for i in idx:
            m_sure, s_sure = main[i][2] == "rule", second[i][2] == "rule"
            if rule(m_sure, s_sure, main[i][0] == second[i][0]):
                answer = main[i][0] if m_sure else second[i][0]
                fast += 1
                fast_right += answer == rows[i][1]
            else:
                answer = model[i][0]
            right += answer == rows[i][1]
        cells.append(f"{group} {right}/{len(idx)}, fast {fast_right}/{fast}")
    print(f"{name:20} " + " | ".join(cells))
