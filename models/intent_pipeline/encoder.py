"""A BERT-style encoder, written out so that every step of the pipeline can reach what it
needs: attention scores and hidden states (distillation), a gate per attention head and per
feed-forward neuron (Taylor importance), heads and feed-forward widths of different sizes per
layer (after pruning), and a plain `input_ids, attention_mask -> logits` graph for ONNX export.

Post-LayerNorm blocks as in BERT and XLM-R; learned positions up to `max_len`; [CLS] pooling
through a tanh layer (BERT), or the mean over the tokens (E5, whose pre-training made the mean
the sentence's meaning). `from_e5` carries multilingual-e5-small's weights into this shape.
"""

from dataclasses import asdict, dataclass, field

import torch
from torch import nn


@dataclass
class EncoderConfig:
    vocab: int
    labels: int
    hidden: int = 256
    layers: int = 8
    heads: list = field(default_factory=list)  # per layer; empty: `default_heads` each
    default_heads: int = 8
    head_dim: int = 32
    ffn: int = 1024
    ffns: list = field(default_factory=list)  # per layer; empty: `ffn` each
    max_len: int = 128
    dropout: float = 0.1
    eps: float = 1e-5
    pool: str = "cls"  # cls | mean

    def __post_init__(self):
        if not self.heads:
            self.heads = [self.default_heads] * self.layers
        if not self.ffns:
            self.ffns = [self.ffn] * self.layers
        assert len(self.heads) == self.layers and len(self.ffns) == self.layers
        assert self.pool in ("cls", "mean")

    def to_dict(self):
        return asdict(self)


class Attention(nn.Module):
    def __init__(self, hidden, heads, head_dim, dropout):
        super().__init__()
        self.heads, self.head_dim = heads, head_dim
        width = heads * head_dim
        self.q = nn.Linear(hidden, width)
        self.k = nn.Linear(hidden, width)
        self.v = nn.Linear(hidden, width)
        self.o = nn.Linear(width, hidden)
        self.drop = nn.Dropout(dropout)

    def split(self, x):
        b, t, _ = x.shape
        return x.view(b, t, self.heads, self.head_dim).transpose(1, 2)

    def forward(self, x, bias, gate=None):
        q, k, v = self.split(self.q(x)), self.split(self.k(x)), self.split(self.v(x))
        scores = q @ k.transpose(-1, -2) / (self.head_dim**0.5) + bias
        probs = self.drop(scores.softmax(-1))
        ctx = probs @ v  # b, h, t, d
        if gate is not None:  # one scalar per head: its Taylor importance is d loss / d gate
            ctx = ctx * gate.view(1, -1, 1, 1)
        b, _, t, _ = ctx.shape
        return self.o(ctx.transpose(1, 2).reshape(b, t, -1)), scores


class Block(nn.Module):
    def __init__(self, cfg, heads, ffn):
        super().__init__()
        self.attn = Attention(cfg.hidden, heads, cfg.head_dim, cfg.dropout)
        self.ln1 = nn.LayerNorm(cfg.hidden, cfg.eps)
        self.ff = nn.Sequential(nn.Linear(cfg.hidden, ffn), nn.GELU(), nn.Linear(ffn, cfg.hidden))
        self.ln2 = nn.LayerNorm(cfg.hidden, cfg.eps)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x, bias, gate=None, ffn_gate=None):
        a, scores = self.attn(x, bias, gate)
        x = self.ln1(x + self.drop(a))
        inner = self.ff[1](self.ff[0](x))
        if ffn_gate is not None:  # one scalar per neuron, like the head gates
            inner = inner * ffn_gate
        x = self.ln2(x + self.drop(self.ff[2](inner)))
        return x, scores


class Encoder(nn.Module):
    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.cfg = cfg
        self.tok = nn.Embedding(cfg.vocab, cfg.hidden)
        self.pos = nn.Embedding(cfg.max_len, cfg.hidden)
        self.ln = nn.LayerNorm(cfg.hidden, cfg.eps)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg, h, f) for h, f in zip(cfg.heads, cfg.ffns))
        self.pool = nn.Linear(cfg.hidden, cfg.hidden)
        self.cls = nn.Linear(cfg.hidden, cfg.labels)
        self.apply(self._init)

    @staticmethod
    def _init(m):
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    def encode(self, ids, mask, gates=None, ffn_gates=None):
        """Hidden states (embeddings first, then one per block) and attention scores."""
        t = ids.shape[1]
        pos = torch.arange(t, device=ids.device).unsqueeze(0)
        x = self.drop(self.ln(self.tok(ids) + self.pos(pos)))
        bias = (1.0 - mask[:, None, None, :].to(x.dtype)) * -10000.0
        hiddens, scores = [x], []
        for i, block in enumerate(self.blocks):
            gate = None if gates is None else gates[i]
            ffn_gate = None if ffn_gates is None else ffn_gates[i]
            x, s = block(x, bias, gate, ffn_gate)
            hiddens.append(x)
            scores.append(s)
        return hiddens, scores

    def pooled(self, last_hidden, mask):
        """The sentence vector the classifier reads (after dropout)."""
        if self.cfg.pool == "mean":
            m = mask.unsqueeze(-1).to(last_hidden.dtype)
            return self.drop((last_hidden * m).sum(1) / m.sum(1))
        return self.drop(torch.tanh(self.pool(last_hidden[:, 0])))

    def classify(self, last_hidden, mask):
        return self.cls(self.pooled(last_hidden, mask))

    def forward(self, ids, mask):
        hiddens, _ = self.encode(ids, mask)
        return self.classify(hiddens[-1], mask)


def prune_heads(model: Encoder, keep: list) -> Encoder:
    """A copy of `model` with only the heads in `keep[layer]` (sorted indices) left: the
    Q/K/V output rows and the O input columns of the removed heads are cut out, so the
    pruned model is smaller and faster, not just masked."""
    cfg = EncoderConfig(**{**model.cfg.to_dict(), "heads": [len(k) for k in keep]})
    pruned = Encoder(cfg)
    state = model.state_dict()
    d = cfg.head_dim
    for i, kept in enumerate(keep):
        rows = torch.cat([torch.arange(h * d, (h + 1) * d) for h in kept])
        p = f"blocks.{i}.attn."
        for name in ("q", "k", "v"):
            state[p + name + ".weight"] = state[p + name + ".weight"][rows]
            state[p + name + ".bias"] = state[p + name + ".bias"][rows]
        state[p + "o.weight"] = state[p + "o.weight"][:, rows]
    pruned.load_state_dict(state)
    return pruned


def prune_ffn(model: Encoder, keep: list) -> Encoder:
    """A copy of `model` with only the feed-forward neurons in `keep[layer]` (sorted indices):
    their rows of the first matrix and columns of the second are kept."""
    cfg = EncoderConfig(**{**model.cfg.to_dict(), "ffns": [len(k) for k in keep]})
    pruned = Encoder(cfg)
    state = model.state_dict()
    for i, kept in enumerate(keep):
        rows = torch.tensor(kept)
        p = f"blocks.{i}.ff."
        state[p + "0.weight"] = state[p + "0.weight"][rows]
        state[p + "0.bias"] = state[p + "0.bias"][rows]
        state[p + "2.weight"] = state[p + "2.weight"][:, rows]
    pruned.load_state_dict(state)
    return pruned


def from_e5(e5, labels: int, layers: list, max_len: int, dropout=0.1) -> Encoder:
    """An encoder of e5's width whose blocks are e5's blocks `layers` (0-based, in order) and
    whose classifier is new. XLM-R's token type is always 0, so its one type row is folded
    into the position table; the positions are cut to `max_len`."""
    c = e5.config
    cfg = EncoderConfig(
        vocab=c["vocab"], labels=labels, hidden=c["hidden"], layers=len(layers),
        default_heads=c["heads"], head_dim=c["hidden"] // c["heads"], ffn=c["ffn"],
        max_len=max_len, dropout=dropout, eps=c["eps"], pool="mean",
    )
    model = Encoder(cfg)
    src = e5.state_dict()
    state = model.state_dict()
    state["tok.weight"] = src["word.weight"].clone()
    state["pos.weight"] = src["pos.weight"][:max_len] + src["types.weight"][0]
    state["ln.weight"], state["ln.bias"] = src["ln.weight"].clone(), src["ln.bias"].clone()
    names = {"q": "attn.q", "k": "attn.k", "v": "attn.v", "ao": "attn.o", "aln": "ln1",
             "fi": "ff.0", "fo": "ff.2", "oln": "ln2"}
    for m, g in enumerate(layers):
        for a, b in names.items():
            for kind in ("weight", "bias"):
                state[f"blocks.{m}.{b}.{kind}"] = src[f"blocks.{g}.{a}.{kind}"].clone()
    model.load_state_dict(state)
    return model


class Exportable(nn.Module):
    """`input_ids, attention_mask -> logits`, the graph the Rust backend runs."""

    def __init__(self, model: Encoder):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        return self.model(input_ids, attention_mask)
