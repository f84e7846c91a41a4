"""The training steps: fine-tuning, TinyBERT-style distillation, Taylor importance of heads
and feed-forward neurons, and prediction. Each takes encoded sequences (lists of token ids)
and a seeded `random.Random`, so a run is repeatable on the same machine."""

import math
import random
import time

import torch
import torch.nn.functional as F

from .data import batches, pad
from .encoder import Encoder


def _schedule(opt, total, warmup=0.06):
    """Linear warm-up, then linear decay to zero (BERT's schedule)."""
    w = max(1, int(total * warmup))
    return torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / w, max(0.0, (total - s) / max(1, total - w)))
    )


def _optimiser(model, lr, total, head_lr=1.0):
    """AdamW with BERT's weight decay; the new classifier (`cls`, `pool`) learns `head_lr`
    times faster than the pre-trained body (a fresh layer on top of a trained one)."""
    groups = {}
    for n, p in model.named_parameters():
        head = n.startswith(("cls.", "pool.", "aux."))
        key = (head, p.dim() > 1)
        groups.setdefault(key, []).append(p)
    opt = torch.optim.AdamW(
        [
            {"params": ps, "weight_decay": 0.01 if decay else 0.0, "lr": lr * (head_lr if head else 1.0)}
            for (head, decay), ps in groups.items()
        ],
        lr=lr,
    )
    return opt, _schedule(opt, total)


def _step(model, opt, sched, loss):
    """One optimiser step, gradients clipped to norm 1 (BERT's recipe)."""
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    sched.step()


def _log(step, t0, what, loss):
    print(f"  {what}: step {step}, loss {loss:.4f}, {time.time() - t0:.0f} s", flush=True)


def finetune(model: Encoder, seqs, y, epochs, lr, batch, rng, teacher_logits=None, alpha=0.5,
             temp=2.0, weights=None, head_lr=1.0, aux=None):
    """Cross-entropy on the labels; with `teacher_logits` (one row per sequence), mixed with
    the soft-label loss of knowledge distillation (Hinton et al.) at temperature `temp`. A
    label of -1 means unlabelled: that row learns from the soft labels alone. `weights` (one
    per row) weigh the rows' losses (sources of different value). `aux` = (labels, weight):
    a second task read from the same sentence vector by `model.aux` (a linear layer the
    caller attaches and removes), its cross-entropy added with that weight where its label
    is not -1."""
    lengths = [len(s) for s in seqs]
    steps = epochs * math.ceil(len(seqs) / batch)
    opt, sched = _optimiser(model, lr, steps, head_lr)
    y = torch.tensor(y)
    if aux is not None:
        aux_y, aux_weight = torch.tensor(aux[0]), aux[1]
    w = torch.ones(len(seqs)) if weights is None else torch.tensor(weights, dtype=torch.float)
    model.train()
    t0, step = time.time(), 0
    for _ in range(epochs):
        for idx in batches(len(seqs), lengths, batch, rng):
            ids, mask = pad([seqs[i] for i in idx])
            hiddens, _ = model.encode(ids, mask)
            pooled = model.pooled(hiddens[-1], mask)
            logits = model.cls(pooled)
            labelled = y[idx] >= 0
            ce = F.cross_entropy(logits, y[idx].clamp(min=0), reduction="none") * labelled
            per_row = ce
            if teacher_logits is not None:
                soft = F.softmax(teacher_logits[idx] / temp, -1)
                kd = F.kl_div(F.log_softmax(logits / temp, -1), soft, reduction="none").sum(-1)
                kd = kd * temp * temp
                per_row = torch.where(labelled, (1 - alpha) * ce + alpha * kd, kd)
            if aux is not None:
                has = aux_y[idx] >= 0
                aux_ce = F.cross_entropy(model.aux(pooled), aux_y[idx].clamp(min=0),
                                         reduction="none")
                per_row = per_row + aux_weight * aux_ce * has
            loss = (per_row * w[idx]).sum() / w[idx].sum()
            _step(model, opt, sched, loss)
            step += 1
            if step % 200 == 0:
                _log(step, t0, "fine-tune", loss.item())


def distill_layers(teacher: Encoder, student: Encoder, seqs, epochs, lr, batch, rng,
                   layer_map=None):
    """TinyBERT's intermediate-layer distillation: student block m imitates teacher block
    g(m) (by default m * L_t / L_s) in attention scores (MSE, padding masked) and hidden
    states (MSE), and the embeddings imitate the teacher's. Same width and heads, so no
    projection."""
    lt, ls = teacher.cfg.layers, student.cfg.layers
    layer_map = layer_map or [(m + 1) * lt // ls - 1 for m in range(ls)]
    lengths = [len(s) for s in seqs]
    steps = epochs * math.ceil(len(seqs) / batch)
    opt, sched = _optimiser(student, lr, steps)
    teacher.eval()
    student.train()
    t0, step = time.time(), 0
    for _ in range(epochs):
        for idx in batches(len(seqs), lengths, batch, rng):
            ids, mask = pad([seqs[i] for i in idx])
            with torch.no_grad():
                th, ts = teacher.encode(ids, mask)
            sh, ss = student.encode(ids, mask)
            keep = mask[:, None, :, None] * mask[:, None, None, :]  # real query x key pairs
            loss = F.mse_loss(sh[0], th[0])
            for m, g in enumerate(layer_map):
                diff = (ss[m] - ts[g]) * keep
                loss = loss + diff.pow(2).sum() / (keep.sum() * ss[m].shape[1])
                loss = loss + F.mse_loss(sh[m + 1], th[g + 1])
            _step(student, opt, sched, loss)
            step += 1
            if step % 200 == 0:
                _log(step, t0, "distil layers", loss.item())
    return layer_map


def taylor_importance(model: Encoder, seqs, y, batch, rng):
    """Michel et al. (2019): the importance of head h is |sum over the data of
    d loss / d gate_h| with every gate at 1, normalised per layer (L2); the same for every
    feed-forward neuron (Molchanov et al.'s first-order Taylor criterion). Labels of -1
    (unlabelled rows) are skipped. Returns (heads, neurons), per layer."""
    model.eval()
    gates = [torch.ones(h, requires_grad=True) for h in model.cfg.heads]
    ffn_gates = [torch.ones(f, requires_grad=True) for f in model.cfg.ffns]
    y = torch.tensor(y)
    keep = [i for i in range(len(seqs)) if y[i] >= 0]
    lengths = [len(seqs[i]) for i in keep]
    for chunk in batches(len(keep), lengths, batch, rng):
        idx = [keep[i] for i in chunk]
        ids, mask = pad([seqs[i] for i in idx])
        hiddens, _ = model.encode(ids, mask, gates, ffn_gates)
        loss = F.cross_entropy(model.classify(hiddens[-1], mask), y[idx], reduction="sum")
        loss.backward()
    model.zero_grad()

    def normalised(gs):
        return [(g.grad.abs() / (g.grad.abs().norm() + 1e-12)).tolist() for g in gs]

    return normalised(gates), normalised(ffn_gates)


@torch.no_grad()
def logits_of(model: Encoder, seqs, batch=128):
    model.eval()
    out = torch.zeros(len(seqs), model.cfg.labels)
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    for i in range(0, len(order), batch):
        idx = order[i : i + batch]
        ids, mask = pad([seqs[j] for j in idx])
        out[idx] = model(ids, mask)
    return out
