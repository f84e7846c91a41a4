"""Inputs of the pipeline: the router's splits (written by `kefu-edge export-splits`, so the
model is trained and scored on exactly the router's training and validation lines), the
labels in intents.tsv order, unlabelled text for masked-LM pre-training, the tokenizer, and
length-bucketed batches."""

import random
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

MAX_LEN = 128
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


@dataclass
class Row:
    text: str
    intent: str
    origin: str  # authored | jddc
    stage: str = ""  # validation lines: the fast path's decision (rule | model)
    decided: str = ""  # ... and the intent it decided


def read_split(path: Path) -> list:
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line or line.startswith("#"):
            continue
        cols = line.split("\t")
        rows.append(Row(*cols[:5]))
    return rows


def labels(intents_tsv: Path) -> list:
    out = []
    for line in intents_tsv.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            out.append(line.split("\t")[0])
    return out


def unlabelled_jddc(jddc_dir: Path, exclude: set) -> list:
    """JDDC questions whose intent has no counterpart in intents.tsv: unusable as labels,
    still real shopper text for masked-LM. Validation texts are left out."""
    mapped = set()
    for line in (jddc_dir / "jddc_to_kefu.tsv").read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            mapped.add(line.split("\t")[0].strip())
    out = []
    for name in ("jddc_intents_dev.tsv", "jddc_intents_extra.tsv"):
        for line in (jddc_dir / name).read_text(encoding="utf-8").splitlines():
            text, _, label = line.partition("\t")
            text = text.strip()
            if text and label.strip() not in mapped and text not in exclude:
                out.append(text)
    return sorted(set(out))


def build_tokenizer(texts: list, vocab_size: int) -> Tokenizer:
    """WordPiece over BERT's normaliser, which puts every CJK character on its own: Chinese
    is read character by character, Latin words and numbers by word pieces."""
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.Sequence(
        [
            normalizers.NFKC(),
            normalizers.BertNormalizer(
                clean_text=True, handle_chinese_chars=True, strip_accents=False, lowercase=True
            ),
        ]
    )
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size, min_frequency=2, special_tokens=SPECIAL, show_progress=False
    )
    tok.train_from_iterator(texts, trainer)
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    tok.enable_truncation(MAX_LEN)
    return tok


def encode(tok: Tokenizer, texts: list) -> list:
    return [e.ids for e in tok.encode_batch(texts)]


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
