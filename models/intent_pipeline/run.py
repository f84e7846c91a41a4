"""The whole model pipeline, end to end: tokenizer, teacher (masked-LM pre-training on the
project's own text, then fine-tuning), 4-layer student distilled TinyBERT-style, heads pruned
by Taylor importance, ONNX export, dynamic INT8 quantization; every step measured.

    python -m models.intent_pipeline.run --splits target/model-data --out models/intent/v1

(`models/train_intent.sh` runs `kefu-edge export-splits` first, then this.)"""

import argparse
import hashlib
import json
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from . import data, export, steps
from .encoder import Encoder, EncoderConfig, prune_heads

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Sizes:
    vocab: int = 6000
    hidden: int = 256
    teacher_layers: int = 8
    student_layers: int = 4
    heads: int = 8
    head_dim: int = 32
    ffn: int = 1024
    batch: int = 32
    mlm_epochs: int = 10
    teacher_epochs: int = 5
    distil_epochs: int = 4
    kd_epochs: int = 4
    recover_epochs: int = 2
    lr: float = 3e-4
    keep_heads: float = 0.5  # share of heads kept per layer
    limit: int = 0  # use only this many training lines (quick mode)


QUICK = Sizes(
    vocab=1500, hidden=64, teacher_layers=4, student_layers=2, heads=4, head_dim=16, ffn=128,
    mlm_epochs=1, teacher_epochs=1, distil_epochs=1, kd_epochs=1, recover_epochs=1, lr=1e-3,
    limit=1500,
)


def accuracy(rows, predicted, labels):
    """Model alone and two-stage (the fast path's answer where it answered, else the
    model's), per origin."""
    out = {}
    for origin in ("authored", "jddc"):
        idx = [i for i, r in enumerate(rows) if r.origin == origin]
        if not idx:
            continue
        alone = sum(labels[predicted[i]] == rows[i].intent for i in idx)
        two = sum(
            (rows[i].decided if rows[i].stage == "rule" else labels[predicted[i]]) == rows[i].intent
            for i in idx
        )
        out[origin] = {"model": round(alone / len(idx), 4), "two_stage": round(two / len(idx), 4)}
    return out


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--splits", type=Path, default=ROOT / "target/model-data")
    ap.add_argument("--jddc", type=Path, default=ROOT.parent / "shared/data")
    ap.add_argument("--out", type=Path, default=ROOT / "models/intent/v1")
    ap.add_argument("--work", type=Path, default=ROOT / "target/model-work")
    ap.add_argument("--version", default="v1")
    ap.add_argument("--quick", action="store_true", help="tiny sizes, to check the scripts")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=20261201)
    ap.add_argument("--set", action="append", default=[], metavar="SIZE=VALUE",
                    help="override one of the sizes (e.g. --set teacher_epochs=8)")
    args = ap.parse_args()
    sizes = QUICK if args.quick else Sizes()
    for item in args.set:
        key, _, value = item.partition("=")
        if not hasattr(sizes, key):
            ap.error(f"--set: no size `{key}`")
        setattr(sizes, key, type(getattr(sizes, key))(value))
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    rng = random.Random(args.seed)
    args.work.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.time()

    labels = data.labels(ROOT / "models/intents.tsv")
    train = data.read_split(args.splits / "train.tsv")
    val = data.read_split(args.splits / "val.tsv")
    if sizes.limit:
        train = random.Random(args.seed).sample(train, min(sizes.limit, len(train)))
    val_texts = {r.text for r in val}
    extra = data.unlabelled_jddc(args.jddc, val_texts) if args.jddc.exists() else []
    print(f"{len(train)} training lines, {len(val)} validation, {len(extra)} unlabelled", flush=True)

    tok = data.build_tokenizer([r.text for r in train] + extra, sizes.vocab)
    tok_path = args.out / "tokenizer.json"
    tok.save(str(tok_path))
    x_train = data.encode(tok, [r.text for r in train])
    y_train = [labels.index(r.intent) for r in train]
    x_val = data.encode(tok, [r.text for r in val])
    x_mlm = x_train + data.encode(tok, extra)

    def config(layers, heads=None):
        return EncoderConfig(
            vocab=tok.get_vocab_size(), labels=len(labels), hidden=sizes.hidden, layers=layers,
            heads=heads or [], default_heads=sizes.heads, head_dim=sizes.head_dim, ffn=sizes.ffn,
        )

    rows, timings = [], {}

    def measure(name, model, what):
        fp32 = args.work / f"{name}.onnx"
        export.export_onnx(model, fp32)
        files = [(name, fp32, "fp32")]
        if what == "int8":
            int8 = args.work / f"{name}.int8.onnx"
            export.quantize(fp32, int8)
            files = [(name + " + INT8", int8, "int8")]
        for label, path, precision in files:
            sess = export.session(path, threads=1)
            acc = accuracy(val, export.predict(sess, x_val), labels)
            b1 = export.latency_ms(sess, x_val, 1, 300 if not args.quick else 30)
            b32 = export.latency_ms(sess, x_val, 32, 40 if not args.quick else 5)
            row = {
                "step": label, "layers": model.cfg.layers, "heads": sum(model.cfg.heads),
                "params": model.parameters_without_mlm(), "precision": precision,
                "file_bytes": export.size_bytes(path), "accuracy": acc,
                "batch1_ms": [round(v, 3) for v in b1], "batch32_ms": [round(v, 3) for v in b32],
                "train_s": round(timings.get(name, 0.0)),
            }
            rows.append(row)
            print(json.dumps(row, ensure_ascii=False), flush=True)
            yield path

    def timed(name, fn):
        t = time.time()
        out = fn()
        timings[name] = time.time() - t
        return out

    # 1. Teacher: masked-LM on the project's own text, then fine-tuned.
    teacher = Encoder(config(sizes.teacher_layers))
    print("teacher: masked-LM pre-training", flush=True)
    timed("mlm", lambda: steps.pretrain_mlm(teacher, x_mlm, sizes.mlm_epochs, sizes.lr, sizes.batch, rng))
    print("teacher: fine-tuning", flush=True)
    timed("teacher", lambda: steps.finetune(teacher, x_train, y_train, sizes.teacher_epochs, sizes.lr / 3, sizes.batch, rng))
    timings["teacher"] += timings["mlm"]
    list(measure("teacher", teacher, "fp32"))
    teacher_logits = steps.logits_of(teacher, x_train)

    # 2. Student: every (L_t / L_s)-th teacher block as its start, layer distillation, then
    # prediction-layer distillation (soft labels + hard labels).
    student = Encoder(config(sizes.student_layers))
    layer_map = [(m + 1) * sizes.teacher_layers // sizes.student_layers - 1 for m in range(sizes.student_layers)]
    state = {k: v for k, v in teacher.state_dict().items() if not k.startswith("blocks.")}
    for m, g in enumerate(layer_map):
        for k, v in teacher.blocks[g].state_dict().items():
            state[f"blocks.{m}.{k}"] = v
    student.load_state_dict(state)

    def distil():
        steps.distill_layers(teacher, student, x_train, sizes.distil_epochs, sizes.lr, sizes.batch, rng)
        steps.finetune(student, x_train, y_train, sizes.kd_epochs, sizes.lr / 3, sizes.batch, rng, teacher_logits)

    print(f"student: distillation from teacher blocks {layer_map}", flush=True)
    timed("student", distil)
    list(measure("student", student, "fp32"))

    # 3. Heads pruned by Taylor importance (the least important half in each layer), then a
    # short recovery with the teacher's soft labels.
    importance = steps.taylor_head_importance(student, x_train, y_train, 64, rng)
    keep_n = max(1, round(sizes.heads * sizes.keep_heads))
    keep = [sorted(sorted(range(len(s)), key=lambda h: -s[h])[:keep_n]) for s in importance]
    pruned = prune_heads(student, keep)

    def recover():
        steps.finetune(pruned, x_train, y_train, sizes.recover_epochs, sizes.lr / 3, sizes.batch, rng, teacher_logits)

    print(f"pruning: kept heads {keep}", flush=True)
    timed("pruned", recover)
    list(measure("pruned", pruned, "fp32"))
    (shipped,) = list(measure("pruned", pruned, "int8"))

    # 4. The shipped files and their manifest.
    model_path = args.out / "model.onnx"
    model_path.write_bytes(shipped.read_bytes())
    (args.out / "labels.txt").write_text("".join(l + "\n" for l in labels), encoding="utf-8")
    files = {
        name: {"sha256": sha256(args.out / name), "bytes": (args.out / name).stat().st_size}
        for name in ("model.onnx", "tokenizer.json", "labels.txt")
    }
    manifest = {
        "version": args.version,
        "files": files,
        "inputs": ["input_ids", "attention_mask"],
        "output": "logits",
        "max_len": data.MAX_LEN,
        "metrics": rows[-1]["accuracy"],
        "steps": rows,
        "encoder": pruned.cfg.to_dict(),
        "head_importance": [[round(v, 4) for v in s] for s in importance],
        "sizes": asdict(sizes),
        "seed": args.seed,
        "examples": {"train": len(train), "validation": len(val), "unlabelled": len(extra)},
        "quick": args.quick,
        "pipeline_s": round(time.time() - started),
        "torch": torch.__version__,
    }
    (args.out / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=2) + "\n")
    print(f"wrote {args.out} in {manifest['pipeline_s']} s", flush=True)


if __name__ == "__main__":
    main()
