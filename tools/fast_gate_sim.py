#!/usr/bin/env python3
"""Served figures of ways to combine two routers on the fast path, on the split that
`kefu-edge export-splits` wrote (target/model-data), from `kefu-edge classify` alone.

    tools/fast_gate_sim.py dev MAIN_CONF SECOND_CONF [--curves]

MAIN_CONF is a configuration with the main router (and no `fast_path`), SECOND_CONF the same
with the second router as `model`; both with absolute paths (conf/*.yaml use ../ paths). The
model stage's answer is read on every line from a copy of MAIN_CONF whose thresholds no router
reaches, so the simulation is exact: what the fast path does not answer, the model stage
answers with the main router's guess mixed in, as the server does.

With `--curves` it also prints gates that read the two routers' probabilities instead of
their verdicts (a calibrated mean instead of "either sure"), each over a grid: the frontier of
fast-path precision against coverage that these two routers allow. The thresholds are each
router's own, from the `manifest.json` beside its model.
"""
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from jddc_splits import blind_labels, split_rows

split, main_conf, second_conf = sys.argv[1], sys.argv[2], sys.argv[3]
curves = "--curves" in sys.argv[4:]
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


def report(name, answers_fast):
    """One row: served and fast-path figures per group; `answers_fast(i)` -> (fast?, intent)."""
    cells = []
    for group, keep in GROUPS:
        idx = [i for i, r in enumerate(rows) if keep(r)]
        right = fast = fast_right = fast_intent = fast_intent_fast = 0
        for i in idx:
            on_fast, guess = answers_fast(i)
            answer = guess if on_fast else model[i][0]
            fast += on_fast
            fast_right += on_fast and answer == rows[i][1]
            right += answer == rows[i][1]
            if rows[i][1] in FAST_INTENTS:
                fast_intent += 1
                fast_intent_fast += on_fast
        cov = fast_intent_fast / max(fast_intent, 1)
        cells.append(f"{group} {right}/{len(idx)}, fast {fast_right}/{fast}, coverage {cov:.3f}")
    print(f"{name:26} " + " | ".join(cells))


def verdicts(rule):
    def answers_fast(i):
        m_sure, s_sure = main[i][2] == "rule", second[i][2] == "rule"
        on_fast = rule(m_sure, s_sure, main[i][0] == second[i][0])
        return on_fast, main[i][0] if m_sure else second[i][0]

    return answers_fast


for name, rule in RULES.items():
    report(name, verdicts(rule))

if curves:
    def thresholds(conf):
        cfg = (Path(conf) / "router.yaml").read_text(encoding="utf-8")
        # Relative to the configuration's directory, as the server reads it.
        model_path = Path(conf) / re.search(r"(?m)^model:\s*(\S+)", cfg).group(1)
        t = json.loads((model_path.parent / "manifest.json").read_text())["thresholds"]
        return {i: t["per_intent"].get(i, t["global"]) for i in FAST_INTENTS}

    t_main, t_second = thresholds(main_conf), thresholds(second_conf)

    def gate(score):
        """Both routers name the same fast intent and `score(intent, p_main, p_second)`; a
        keyword rule (stage rule at 1.0 in both) always answers."""
        def answers_fast(i):
            (mi, mp, mst), (si, sp, sst) = main[i], second[i]
            mp, sp = float(mp), float(sp)
            keyword = mst == sst == "rule" and mp == sp == 1.0 and mi == si
            on_fast = keyword or (mi == si and mi in FAST_INTENTS and score(mi, mp, sp))
            return on_fast, mi

        return answers_fast

    for d in (0, 0.02, 0.04, 0.06, 0.08, 0.1):
        report(f"agree, mean p/t >= {1 - d:.2f}",
               gate(lambda i, mp, sp: (mp / t_main[i] + sp / t_second[i]) / 2 >= 1 - d))
    for tau in (0.6, 0.65, 0.7, 0.75, 0.8, 0.9):
        report(f"agree, min p >= {tau}", gate(lambda i, mp, sp: min(mp, sp) >= tau))
    for tau in (0.7, 0.75, 0.8, 0.85, 0.9):
        report(f"agree, mean p >= {tau}", gate(lambda i, mp, sp: (mp + sp) / 2 >= tau))
