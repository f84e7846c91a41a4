"""Padding and length-bucketed batches: how the pipeline's steps feed encoded sequences to
the encoder (the Rust batcher pads the same way)."""

import random

import torch


def pad(seqs: list):
    """Pad to the longest sequence (as the Rust batcher does)."""
    t = max(len(s) for s in seqs)
    ids = torch.zeros(len(seqs), t, dtype=torch.long)
    mask = torch.zeros(len(seqs), t, dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s)
        mask[i, : len(s)] = 1
    return ids, mask


def batches(n_items: int, lengths: list, batch: int, rng: random.Random):
    """Indices in batches of similar length (little padding), in a shuffled order."""
    order = sorted(range(n_items), key=lambda i: (lengths[i], rng.random()))
    chunks = [order[i : i + batch] for i in range(0, n_items, batch)]
    rng.shuffle(chunks)
    return chunks
