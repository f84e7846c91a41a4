#!/usr/bin/env python3
"""What the served decision would be with two routers: the fast path decided by the router of
configuration GATE (its rule/router answers are kept), every other message decided by
configuration REST with the model stage. Both from `kefu-edge classify`, on the split that
`kefu-edge export-splits` wrote (target/model-data). GATE = REST gives the served figures of
that configuration (a check of the simulation).

    tools/fast_gate_sim.py dev GATE_CONF REST_CONF
"""
import subprocess
import sys

from jddc_splits import blind_labels, split_rows

split, gate, rest = sys.argv[1], sys.argv[2], sys.argv[3]
blind = blind_labels(split)
rows = split_rows("target/model-data", split)
FAST = {"rule", "router"}


def classify(conf, with_model):
    """`intent, confidence, stage` of every row, as `kefu-edge classify` decides it."""
    cmd = ["target/release/kefu-edge", "classify", "-c", conf]
    if with_model:
        cmd.append("--with-model")
    text = "\n".join(r[0] for r in rows) + "\n"
    out = subprocess.run(cmd, input=text, capture_output=True, text=True, check=True).stdout
    return [line.split("\t") for line in out.splitlines()]


gated, served = classify(gate, False), classify(rest, True)
assert len(gated) == len(rows) == len(served)


def confirmed(r):
    return r[2] == "jddc" and blind.get(r[3], ("",))[0] == r[1]


groups = [
    ("authored", lambda r: r[2] == "authored"),
    ("confirmed", confirmed),
    ("clear", lambda r: confirmed(r) and blind[r[3]][1] == "clear"),
]
for name, keep in groups:
    idx = [i for i, r in enumerate(rows) if keep(r)]
    right = fast_answers = fast_right = 0
    for i in idx:
        if gated[i][2] in FAST:
            answer = gated[i][0]
            fast_answers += 1
            fast_right += answer == rows[i][1]
        else:
            answer = served[i][0]
        right += answer == rows[i][1]
    print(f"{name}: served {right / len(idx):.4f} ({right}/{len(idx)}), "
          f"fast answers {fast_answers} right {fast_right}")
