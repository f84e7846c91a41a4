"""A KServe v2 inference server for one shipped intent model version, as a shop's shared
inference pool would run it: the `kserve` package's ModelServer (REST, open inference
protocol) with the version's `model.onnx` on ONNX Runtime's CPU provider.

    python bench/kserve/intent_server.py --model-dir models/intent/v2 --port 8500

It serves the model as `kefu-intent-<version>` (model.yaml's default `kserve.model_name`),
with input_ids / attention_mask (INT64, batch x seq) in and logits (FP32, batch x labels)
out. Used by tests/kserve.rs and bench/model_remote.sh; not part of the product.
"""

import argparse
import json
import os

import numpy as np
import onnxruntime as ort
from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer


class IntentModel(Model):
    def __init__(self, model_dir: str, threads: int):
        with open(os.path.join(model_dir, "manifest.json"), encoding="utf-8") as f:
            manifest = json.load(f)
        with open(os.path.join(model_dir, "labels.txt"), encoding="utf-8") as f:
            self.labels = sum(1 for line in f if line.strip())
        super().__init__(f"kefu-intent-{manifest['version']}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            os.path.join(model_dir, "model.onnx"),
            options,
            providers=["CPUExecutionProvider"],
        )
        self.ready = True

    def get_input_types(self):
        return [
            {"name": "input_ids", "datatype": "INT64", "shape": [-1, -1]},
            {"name": "attention_mask", "datatype": "INT64", "shape": [-1, -1]},
        ]

    def get_output_types(self):
        return [{"name": "logits", "datatype": "FP32", "shape": [-1, self.labels]}]

    async def predict(self, payload: InferRequest, headers=None, response_headers=None):
        feeds = {}
        for name in ("input_ids", "attention_mask"):
            tensor = payload.get_input_by_name(name)
            if tensor is None:
                raise ValueError(f"missing input {name}")
            feeds[name] = np.asarray(tensor.as_numpy(), dtype=np.int64)
        (logits,) = self.session.run(["logits"], feeds)
        logits = np.asarray(logits, dtype=np.float32)
        out = InferOutput(name="logits", shape=list(logits.shape), datatype="FP32")
        out.set_data_from_numpy(logits, binary_data=False)
        # requested_outputs: logits in the binary extension when the request asks for it.
        return InferResponse(
            response_id=payload.id or "",
            model_name=self.name,
            infer_outputs=[out],
            requested_outputs=payload.request_outputs,
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--threads", type=int, default=1)
    args, _ = parser.parse_known_args()
    model = IntentModel(args.model_dir, args.threads)
    ModelServer(
        http_port=args.port, workers=1, enable_grpc=False, enable_docs_url=False
    ).start([model])


if __name__ == "__main__":
    main()
