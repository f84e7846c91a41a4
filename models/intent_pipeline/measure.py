"""How every step of the pipeline is judged, on the development split only: the model alone,
the two-stage decision (the fast path's answer where it answered, the model's elsewhere),
and the two-stage decision with the model's probabilities mixed with the router's as the
server mixes them (`router_weight` 0.5, geometric). JDDC lines are also judged on the lines
whose blind label confirms the published one, and on the confirmed lines that are clear from
the message alone; written dialogues on the turns that need the previous one."""

import numpy as np

from . import export

ROUTER_WEIGHT = 0.5


def _mixed(probs, router, w=ROUTER_WEIGHT):
    if not router:
        return probs
    r = np.asarray(router, dtype=np.float64)
    m = np.exp(w * np.log(r + 1e-9) + (1 - w) * np.log(probs + 1e-9))
    return m / m.sum()


class Judge:
    def __init__(self, labels, dev, dialogues, x_dev, x_dialogues):
        self.labels = labels
        self.dev, self.dialogues = dev, dialogues
        self.x_dev, self.x_dialogues = x_dev, x_dialogues

    def accuracy(self, p_dev, p_dlg) -> dict:
        """{group: {model, two_stage, mixed, n}} (fractions)."""
        lab = self.labels
        groups = {
            "authored": lambda r: r.origin == "authored",
            "jddc": lambda r: r.origin == "jddc",
            "jddc_confirmed": lambda r: r.origin == "jddc" and r.blind == r.mapped,
            "jddc_confirmed_clear": lambda r: r.origin == "jddc" and r.blind == r.mapped
            and r.kind == "clear",
        }
        out = {}
        for name, keep in groups.items():
            idx = [i for i, r in enumerate(self.dev) if keep(r)]
            if not idx:
                continue
            model = two = mixed = 0
            for i in idx:
                r = self.dev[i]
                alone = lab[int(p_dev[i].argmax())]
                fused = lab[int(_mixed(p_dev[i], r.router).argmax())]
                model += alone == r.intent
                two += (r.decided if r.stage == "rule" else alone) == r.intent
                mixed += (r.decided if r.stage == "rule" else fused) == r.intent
            n = len(idx)
            out[name] = {"model": round(model / n, 4), "two_stage": round(two / n, 4),
                         "mixed": round(mixed / n, 4), "n": n}
        for kind in ("alone", "context", "ack"):
            idx = [i for i, r in enumerate(self.dialogues) if r.kind == kind]
            if idx:
                right = sum(lab[int(p_dlg[i].argmax())] == self.dialogues[i].intent for i in idx)
                acc = round(right / len(idx), 4)
                out[f"dialogue_{kind}"] = {"model": acc, "two_stage": acc, "mixed": acc,
                                           "n": len(idx)}
        return out

    def step_row(self, name, model, precision, work, train_s, quick) -> dict:
        """Export (and quantize) `model`, score it with ONNX Runtime, time it: a row of the
        step table (`path`: the ONNX file scored)."""
        fp32 = work / f"{name}.onnx"
        export.export_onnx(model, fp32)
        path = fp32
        if precision == "int8":
            path = work / f"{name}.int8.onnx"
            export.quantize(fp32, path)
        sess = export.session(path, threads=1)
        acc = self.accuracy(export.probabilities(sess, self.x_dev),
                            export.probabilities(sess, self.x_dialogues))
        b1 = export.latency_ms(sess, self.x_dev, 1, 30 if quick else 300)
        b32 = export.latency_ms(sess, self.x_dev, 32, 5 if quick else 40)
        params = sum(p.numel() for p in model.parameters())
        return {
            "step": name if precision == "fp32" else f"{name} + INT8",
            "layers": model.cfg.layers, "heads": sum(model.cfg.heads),
            "ffn": sum(model.cfg.ffns), "params": params, "precision": precision,
            "file_bytes": export.size_bytes(path), "accuracy": acc,
            "batch1_ms": [round(v, 3) for v in b1], "batch32_ms": [round(v, 3) for v in b32],
            "train_s": train_s, "path": str(path),
        }
