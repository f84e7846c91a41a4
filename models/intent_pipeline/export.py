"""ONNX export, dynamic INT8 quantization, and measurement with ONNX Runtime: what each
step's row in the table of models/README.md is made of."""

import os
import statistics
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from onnxruntime.quantization import QuantType, quant_pre_process, quantize_dynamic

from .data import pad
from .encoder import Encoder, Exportable

OPSET = 17


def export_onnx(model: Encoder, path: Path):
    """One file, dynamic batch and sequence axes (the TorchScript exporter: the dynamo one
    writes the weights to a separate .data file)."""
    model.eval()
    ids, mask = pad([[2, 10, 11, 3], [2, 12, 3]])
    torch.onnx.export(
        Exportable(model),
        (ids, mask),
        str(path),
        input_names=["input_ids", "attention_mask"],
        output_names=["logits"],
        dynamic_axes={
            "input_ids": {0: "batch", 1: "sequence"},
            "attention_mask": {0: "batch", 1: "sequence"},
            "logits": {0: "batch"},
        },
        opset_version=OPSET,
        dynamo=False,
    )


def quantize(fp32: Path, int8: Path):
    """Dynamic quantization: INT8 weights, activations quantized per batch at run time. The
    fully connected layers (MatMul) as in the reference, and the embedding table (Gather),
    which is most of this small model's bytes. Per output channel: a pre-trained encoder's
    weights vary by channel, and one scale per matrix cost a point on the development split
    (per tensor 0.929 vs per channel 0.939 on the confirmed JDDC lines, the same size and
    speed)."""
    pre = int8.with_suffix(".pre.onnx")
    quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
    quantize_dynamic(
        str(pre),
        str(int8),
        weight_type=QuantType.QInt8,
        op_types_to_quantize=["MatMul", "Gather"],
        per_channel=True,
    )
    pre.unlink()


def session(path: Path, threads=1) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _feed(seqs):
    ids, mask = pad(seqs)
    return {"input_ids": ids.numpy(), "attention_mask": mask.numpy()}


def probabilities(sess, seqs, batch=64) -> np.ndarray:
    """Softmax of the logits, one row per sequence."""
    out = np.zeros((len(seqs), 0), dtype=np.float32)
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    for i in range(0, len(order), batch):
        idx = order[i : i + batch]
        (logits,) = sess.run(["logits"], _feed([seqs[j] for j in idx]))
        if out.shape[1] == 0:
            out = np.zeros((len(seqs), logits.shape[1]), dtype=np.float32)
        e = np.exp(logits - logits.max(-1, keepdims=True))
        out[idx] = e / e.sum(-1, keepdims=True)
    return out


def predict(sess, seqs, batch=64) -> np.ndarray:
    out = np.zeros((len(seqs),), dtype=np.int64)
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    for i in range(0, len(order), batch):
        idx = order[i : i + batch]
        (logits,) = sess.run(["logits"], _feed([seqs[j] for j in idx]))
        out[idx] = logits.argmax(-1)
    return out


def latency_ms(sess, seqs, batch, rounds):
    """Median and p99 milliseconds of one run over `batch` messages taken in their order
    (mixed lengths, padded to the longest, as the batcher does)."""
    times = []
    for r in range(rounds):
        start = (r * batch) % max(1, len(seqs) - batch)
        feed = _feed(seqs[start : start + batch])
        t = time.perf_counter()
        sess.run(["logits"], feed)
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, int(len(times) * 0.99))]


def size_bytes(path: Path) -> int:
    return os.path.getsize(path)
