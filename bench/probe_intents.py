#!/usr/bin/env python3
"""Post the benchmark's messages once to a chat endpoint and record what came back.

bench/rule_path.sh runs this against kefu-edge and the nginx + Lua tier in the first round, so
the report can say what mix of work the load really exercised (how many messages were rule
hits, fallbacks, model answers) and whether both servers agree on the rule hits; a throughput
figure means little if one server answered most messages from another path.

Usage: probe_intents.py URL SAMPLES OUT [--limit N]
  URL      e.g. http://127.0.0.1:8080/v1/chat
  SAMPLES  the wrk SAMPLES file (first tab-separated column; '#' lines skipped)
  OUT      written with one line per message: status<TAB>intent<TAB>source
Prints one summary line: `probe: N messages: rule=.. fallback=.. model=.. non200=..`.
"""

import argparse
import collections
import http.client
import json
import sys
import urllib.parse


def read_texts(path, limit):
    texts = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\r\n")
            if not line or line.startswith("#"):
                continue
            text = line.split("\t", 1)[0]
            if text:
                texts.append(text)
            if limit and len(texts) >= limit:
                break
    return texts


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("samples")
    ap.add_argument("out")
    ap.add_argument("--limit", type=int, default=0, help="first N messages only (0: all)")
    args = ap.parse_args()

    u = urllib.parse.urlsplit(args.url)
    conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=10)
    counts = collections.Counter()
    rows = []
    for n, text in enumerate(read_texts(args.samples, args.limit)):
        body = json.dumps({"user_id": f"probe{n % 4096:05d}", "text": text}, ensure_ascii=False)
        conn.request("POST", u.path or "/", body=body.encode("utf-8"),
                     headers={"Content-Type": "application/json", "User-Agent": "kefu-bench-probe/1.0"})
        resp = conn.getresponse()
        data = resp.read()
        intent = source = "-"
        if resp.status == 200:
            try:
                doc = json.loads(data)
                intent, source = str(doc.get("intent")), str(doc.get("source"))
            except ValueError:
                source = "badjson"
        else:
            counts["non200"] += 1
        counts[source] += 1 if resp.status == 200 else 0
        rows.append(f"{resp.status}\t{intent}\t{source}")
        if resp.getheader("Connection", "").lower() == "close":
            conn.close()
            conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=10)
    with open(args.out, "w", encoding="utf-8") as f:
        f.write("\n".join(rows) + "\n")
    parts = " ".join(f"{k}={v}" for k, v in sorted(counts.items()) if v)
    print(f"probe: {len(rows)} messages: {parts}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
