#!/usr/bin/env python3
"""Write a benchmark configuration: bench/conf copied to DIR (its links into conf/ followed),
its relative paths made absolute for this checkout, the model stage enabled, and each
`--set key=value` applied to model.yaml (a top-level or indented `key:` line, first match).

    bench/model_conf.py DIR [--models-dir PATH] [--set shed_wait=0s] [--set candidate=v2b]

Used by model_path.sh, shedding.sh and soak.sh, so the three run the same configuration.
"""
import argparse
import pathlib
import re
import shutil
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dir", type=pathlib.Path)
    ap.add_argument("--models-dir", help="model versions directory (default: models/intent)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args()

    shutil.copytree(ROOT / "bench/conf", args.dir, symlinks=False)
    router = args.dir / "router.yaml"
    router.write_text(router.read_text().replace("../../models/router", f"{ROOT}/models/router"))

    model = args.dir / "model.yaml"
    text = model.read_text().replace("../../third_party", f"{ROOT}/third_party")
    text = text.replace("../../models/intent", f"{ROOT}/models/intent")
    sets = [("enabled", "true")]
    if args.models_dir:
        sets.append(("models_dir", args.models_dir))
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            ap.error(f"--set {item}: expected KEY=VALUE")
        sets.append((key, value))
    for key, value in sets:
        text, n = re.subn(rf"(?m)^(\s*{re.escape(key)}:)[ \t]*[^\s#]+", rf"\g<1> {value}", text, count=1)
        if n == 0:
            print(f"model_conf.py: no `{key}:` in model.yaml", file=sys.stderr)
            return 1
    model.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
