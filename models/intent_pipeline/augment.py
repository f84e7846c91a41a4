"""TinyBERT's task-specific data augmentation, at the level of token pieces: more inputs for
the student to imitate the teacher on, labelled by the teacher alone (soft labels), so a
replacement that changes what a message means changes its label with it.

Each augmented copy of a training sequence replaces every piece of the *message* (the
previous turn is kept as it is) with probability `p_replace` by one of its `k` nearest pieces
in the fine-tuned teacher's embedding table (TinyBERT used GloVe neighbours and BERT's masked
LM; the teacher's own table needs neither), and drops it with probability `p_drop`."""

import random

import torch
import torch.nn.functional as F

from .inputs import BOS, EOS, PAD


@torch.no_grad()
def neighbours(embeddings: torch.Tensor, k: int = 8) -> list:
    """The `k` nearest pieces (cosine) of every piece; special pieces are never chosen."""
    e = F.normalize(embeddings.float(), dim=-1)
    sims = e @ e.T
    sims.fill_diagonal_(-2.0)
    sims[:, [BOS, PAD, EOS]] = -2.0
    return sims.topk(k, dim=-1).indices.tolist()


def augment(seqs: list, nbrs: list, copies: int, rng: random.Random, p_replace=0.15,
            p_drop=0.05) -> tuple:
    """(augmented sequences, the index of the sequence each came from)."""
    out, source = [], []
    for i, s in enumerate(seqs):
        end = s.index(EOS, 1)  # the message is s[1:end]
        for _ in range(copies):
            message = []
            for piece in s[1:end]:
                r = rng.random()
                if r < p_drop:
                    continue
                message.append(rng.choice(nbrs[piece]) if r < p_drop + p_replace else piece)
            if not message or message == s[1:end]:
                continue
            out.append([BOS] + message + s[end:])
            source.append(i)
    return out, source
