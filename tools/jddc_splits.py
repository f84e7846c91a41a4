"""What tools/jddc_blind.py and tools/fast_gate_sim.py both read: the blind labels of a JDDC
split (ids only) and the lines of the split that `kefu-edge export-splits` wrote."""
from pathlib import Path

BLIND_FILES = {"test": "models/eval/jddc_blind_test.tsv", "dev": "models/data/jddc_blind_dev.tsv"}


def blind_labels(split: str) -> dict:
    """`file:line` -> (blind intent, kind)."""
    blind = {}
    for line in open(BLIND_FILES[split], encoding="utf-8"):
        if line.strip() and not line.startswith("#"):
            ref, intent, kind = line.rstrip("\n").split("\t")
            blind[ref] = (intent, kind)
    return blind


def split_rows(splits_dir, split: str) -> list:
    """(text, intent, origin, source) of every line of the exported split."""
    rows = []
    for line in open(Path(splits_dir) / f"{split}.tsv", encoding="utf-8"):
        if line.startswith("#") or not line.strip():
            continue
        cols = line.rstrip("\n").split("\t")
        rows.append((cols[0], cols[1], cols[2], cols[6]))
    return rows
