"""A small BERT-style encoder, written out so that every step of the pipeline can reach what
it needs: attention scores and hidden states (distillation), a gate per attention head
(Taylor importance), heads of different counts per layer (after pruning), and a plain
`input_ids, attention_mask -> logits` graph for ONNX export.

Post-LayerNorm blocks as in BERT; learned positions up to `max_len`; [CLS] pooling.
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
    max_len: int = 128
    dropout: float = 0.1

    def __post_init__(self):
        if not self.heads:
            self.heads = [self.default_heads] * self.layers
        assert len(self.heads) == self.layers

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
    def __init__(self, cfg, heads):
        super().__init__()
        self.attn = Attention(cfg.hidden, heads, cfg.head_dim, cfg.dropout)
        self.ln1 = nn.LayerNorm(cfg.hidden)
        self.ff = nn.Sequential(
            nn.Linear(cfg.hidden, cfg.ffn), nn.GELU(), nn.Linear(cfg.ffn, cfg.hidden)
        )
        self.ln2 = nn.LayerNorm(cfg.hidden)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x, bias, gate=None):
        a, scores = self.attn(x, bias, gate)
        x = self.ln1(x + self.drop(a))
        x = self.ln2(x + self.drop(self.ff(x)))
        return x, scores


class Encoder(nn.Module):
    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.cfg = cfg
        self.tok = nn.Embedding(cfg.vocab, cfg.hidden)
        self.pos = nn.Embedding(cfg.max_len, cfg.hidden)
        self.ln = nn.LayerNorm(cfg.hidden)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg, h) for h in cfg.heads)
        self.pool = nn.Linear(cfg.hidden, cfg.hidden)
        self.cls = nn.Linear(cfg.hidden, cfg.labels)
        self.mlm_bias = nn.Parameter(torch.zeros(cfg.vocab))  # MLM decoder tied to `tok`
        self.apply(self._init)

    @staticmethod
    def _init(m):
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    def encode(self, ids, mask, gates=None):
        """Hidden states (embeddings first, then one per block) and attention scores."""
        t = ids.shape[1]
        pos = torch.arange(t, device=ids.device).unsqueeze(0)
        x = self.drop(self.ln(self.tok(ids) + self.pos(pos)))
        bias = (1.0 - mask[:, None, None, :].to(x.dtype)) * -10000.0
        hiddens, scores = [x], []
        for i, block in enumerate(self.blocks):
            x, s = block(x, bias, None if gates is None else gates[i])
            hiddens.append(x)
            scores.append(s)
        return hiddens, scores

    def classify(self, last_hidden):
        return self.cls(self.drop(torch.tanh(self.pool(last_hidden[:, 0]))))

    def mlm_logits(self, last_hidden):
        return last_hidden @ self.tok.weight.T + self.mlm_bias

    def forward(self, ids, mask):
        hiddens, _ = self.encode(ids, mask)
        return self.classify(hiddens[-1])

    def parameters_without_mlm(self):
        return sum(p.numel() for n, p in self.named_parameters() if n != "mlm_bias")


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


class Exportable(nn.Module):
    """`input_ids, attention_mask -> logits`, the graph the Rust backend runs."""

    def __init__(self, model: Encoder):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        return self.model(input_ids, attention_mask)
