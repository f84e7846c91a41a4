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

split, gate, rest = sys.argv[1], sys.argv[2], sys.argv[3]
blind_file = {"test": "models/eval/jddc_blind_test.tsv", "dev": "models/data/jddc_blind_dev.tsv"}[split]
blind = {}
for line in open(blind_file, encoding="utf-8"):
    if line.strip() and not line.startswith("#"):
        ref, intent, kind = line.rstrip("\n").split("\t"); blind[ref] = (intent, kind)
rows = []
for line in open(f"target/model-data/{split}.tsv", encoding="utf-8"):
    if line.startswith("#") or not line.strip(): continue
    c = line.rstrip("\n").split("\t")
    rows.append((c[0], c[1], c[2], c[6]))
def run(conf, model):
    cmd = ["target/release/kefu-edge", "classify", "-c", conf] + (["--with-model"] if model else [])
    out = subprocess.run(cmd, input="\n".join(r[0] for r in rows) + "\n", capture_output=True, text=True, check=True).stdout
    return [l.split("\t") for l in out.splitlines()]
g = run(gate, False); b = run(rest, True)
assert len(g) == len(rows) == len(b)
fast = {"rule", "router"}
for name, keep in [("authored", lambda r: r[2] == "authored"),
                   ("confirmed", lambda r: r[2] == "jddc" and blind.get(r[3], ("",))[0] == r[1]),
                   ("clear", lambda r: r[2] == "jddc" and blind.get(r[3], ("",))[0] == r[1] and blind[r[3]][1] == "clear")]:
    idx = [i for i, r in enumerate(rows) if keep(r)]
    right = 0; fa = 0; fr = 0
    for i in idx:
        if g[i][2] in fast: ans = g[i][0]; fa += 1; fr += ans == rows[i][1]
        else: ans = b[i][0]
        right += ans == rows[i][1]
    print(f"{name}: served {right/len(idx):.4f} ({right}/{len(idx)}), fast answers {fa} right {fr}")
