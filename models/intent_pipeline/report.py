"""The step table of models/README.md on the TEST split, which no choice of the pipeline
touched: every step's ONNX file (kept in the work directory by `run`) scored on the test
lines of the corpus and of the JDDC questions (raw, confirmed by the blind labels, confirmed
and clear), and on the turns of the written test dialogues (models/data/dialogues.tsv) with
their previous turn.

    python -m models.intent_pipeline.report --work target/model-work --version models/intent/v2
"""

import argparse
import json
from pathlib import Path

from tokenizers import Tokenizer

from . import export, inputs, measure

ROOT = Path(__file__).resolve().parents[2]
STEPS = [("teacher", "teacher.onnx"), ("student", "student.onnx"), ("pruned", "pruned.onnx"),
         ("pruned + INT8", "pruned.int8.onnx")]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--splits", type=Path, default=ROOT / "target/model-data")
    ap.add_argument("--work", type=Path, default=ROOT / "target/model-work")
    ap.add_argument("--version", type=Path, default=ROOT / "models/intent/v2")
    args = ap.parse_args()
    labels, names = inputs.intents(ROOT / "models/intents.tsv")
    blind = inputs.read_blind(ROOT / "models/eval/jddc_blind_test.tsv")
    test = inputs.read_split(args.splits / "test.tsv", blind)
    dialogues, _ = inputs.read_dialogues(ROOT / "models/data/dialogues.tsv", held_out_share=0.0)
    tok = Tokenizer.from_file(str(args.version / "tokenizer.json"))
    judge = measure.Judge(labels, test, dialogues, inputs.encode(tok, test, names),
                          inputs.encode(tok, dialogues, names))
    rows = []
    for name, file in STEPS:
        path = args.work / file
        if not path.exists():
            continue
        sess = export.session(path, threads=1)
        acc = judge.accuracy(export.probabilities(sess, judge.x_dev),
                             export.probabilities(sess, judge.x_dialogues))
        rows.append({"step": name, "file_bytes": export.size_bytes(path), "test": acc})
        print(json.dumps(rows[-1], ensure_ascii=False), flush=True)
    (args.work / "test_report.json").write_text(json.dumps(rows, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
