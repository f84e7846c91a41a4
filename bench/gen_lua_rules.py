#!/usr/bin/env python3
"""Generate the nginx + Lua reference tier's rules from a kefu-edge configuration directory.

The benchmark in bench/rule_path.sh compares kefu-edge with an OpenResty-style tier doing the
same rule-path work. So that both do the *same* keyword work, the reference tier never carries
its own copy of the rules: this script reads the YAML kefu-edge reads and writes, into OUT_DIR,

  kefu_rules_data.lua   keyword rules, exclusions, patterns, priorities and rendered reply
                        templates from intents.yaml (plus the chat input caps of server.yaml);
                        loaded once by bench/nginx/kefu_rules.lua at init_by_lua time.
  kefu_http.conf        http-level nginx include: user-agent and client-IP deny rules from
                        edge.yaml (`map` / `geo`) and the limit_req zones of limits.yaml.
  kefu_chat.conf        location-level include for the chat API: limit_req lines and the body
                        size cap (server.yaml chat.max_body_bytes).

Semantics follow the header of conf/intents.yaml (src/config/intents.rs, src/text.rs):
keywords and exclusions are folded (full-width ASCII -> ASCII, U+3000 -> space, ASCII
lower-cased) exactly like kefu-edge folds them at load time; a keyword's hit length is its
length in characters; `{campaign}` is rendered with the campaign of post.yaml that is open
*now* (kefu-edge decides per request; a bench run does not cross a campaign boundary), and
`{{` / `}}` are literal braces.

Usage:
  bench/gen_lua_rules.py --conf bench/conf --out /tmp/dir [--intents FILE] [--limits FILE|none]
                         [--campaign TEXT]

A file missing from CONF is read from the shipped conf/ instead, and without that too the
defaults are permissive (no IP rules, the four scanner user agents, a per-IP zone that never
throttles a benchmark, no campaign, server.yaml's default chat caps). Exits non-zero with the file and reason on anything kefu-edge would
also reject (unknown keys, empty keywords, a keyword listed twice, bad templates).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import sys

try:
    import yaml
except ImportError:  # pragma: no cover - environment problem, say what to install
    sys.exit("gen_lua_rules.py: needs PyYAML (apt-get install python3-yaml, or pip install pyyaml)")

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

DEFAULT_FALLBACK = "亲,转人工客服哦~"
# What the brief for the reference tier asks for when no edge.yaml is around.
DEFAULT_UA_DENY = ["sqlmap", "nikto", "masscan", "zgrab"]
# "Do not throttle the benchmark" when no limits.yaml is around.
DEFAULT_PER_IP = ("1000000r/s", 100000)

INTENT_KEYS = {"keywords", "patterns", "exclude", "priority", "replies", "answer"}


class ConfError(Exception):
    pass


# ---------------------------------------------------------------- text folding (src/text.rs)

def fold_char(c: str) -> str:
    o = ord(c)
    if 0xFF01 <= o <= 0xFF5E:
        return chr(o - 0xFEE0).lower()
    if o == 0x3000:
        return " "
    if o < 128:
        return c.lower()
    return c


def fold(s: str) -> str:
    return "".join(fold_char(c) for c in s)


# ---------------------------------------------------------------- templates (src/template.rs)

# Dialogue slots: kefu-edge fills them from a user's dialogue state; the nginx tier keeps
# none, so templates that use them are left out there (kefu-edge, too, answers a message
# without a dialogue from the other templates).
SLOT_VARS = {"order", "size", "color"}


class SlotTemplate(Exception):
    pass


def render_template(src: str, campaign: str) -> str:
    if not src.strip():
        raise ConfError("empty template")
    out = []
    i, n = 0, len(src)
    while i < n:
        c = src[i]
        if c == "{":
            if i + 1 < n and src[i + 1] == "{":
                out.append("{")
                i += 2
                continue
            j = src.find("}", i + 1)
            if j < 0:
                raise ConfError("unclosed `{` (write `{{` for a literal brace)")
            name = src[i + 1:j].strip()
            if name in SLOT_VARS:
                raise SlotTemplate(name)
            if name != "campaign":
                raise ConfError(f"unknown variable `{{{name}}}` (known: {{campaign}}, {{order}}, {{size}}, {{color}})")
            out.append(campaign)
            i = j + 1
        elif c == "}":
            if i + 1 < n and src[i + 1] == "}":
                out.append("}")
                i += 2
                continue
            raise ConfError("stray `}` (write `}}` for a literal brace)")
        else:
            out.append(c)
            i += 1
    return "".join(out)


# ---------------------------------------------------------------- Lua / nginx emitters

def lua_str(s: str) -> str:
    """A double-quoted Lua string literal; UTF-8 bytes are written as they are."""
    out = bytearray(b'"')
    for b in s.encode("utf-8"):
        if b == 0x22:
            out += b'\\"'
        elif b == 0x5C:
            out += b"\\\\"
        elif b < 0x20 or b == 0x7F:
            out += b"\\%03d" % b
        else:
            out.append(b)
    out += b'"'
    return out.decode("utf-8")


def nginx_quote(s: str) -> str:
    if any(c in s for c in "\r\n"):
        raise ConfError(f"line break in `{s!r}`")
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def pcre_literal(s: str) -> str:
    """Escape a literal for PCRE inside an nginx quoted string: every non-alphanumeric ASCII
    character becomes \\xHH, which neither nginx's quoting nor PCRE reinterpret."""
    out = []
    for c in s:
        if ord(c) < 128 and not c.isalnum():
            out.append("\\x%02x" % ord(c))
        else:
            out.append(c)
    return "".join(out)


def nginx_rate(rate: str, where: str) -> str:
    m = re.fullmatch(r"\s*(\d+)\s*r/\s*([smh])\s*", str(rate))
    if not m or int(m.group(1)) == 0:
        raise ConfError(f"{where}: invalid rate `{rate}`")
    n, unit = int(m.group(1)), m.group(2)
    if unit == "h":  # nginx knows r/s and r/m only
        return f"{max(1, -(-n // 60))}r/m"
    return f"{n}r/{unit}"


# ---------------------------------------------------------------- readers

def load_yaml(path: str):
    with open(path, encoding="utf-8") as f:
        try:
            return yaml.safe_load(f)
        except yaml.YAMLError as e:
            raise ConfError(f"{path}: {e}") from None


def as_list(v, where: str) -> list:
    if v is None:
        return []
    if not isinstance(v, list):
        raise ConfError(f"{where}: expected a list")
    return v


def open_campaign(post: dict | None, path: str, now: dt.datetime) -> str:
    if not post:
        return ""
    for c in as_list(post.get("campaigns"), f"{path}: campaigns"):
        try:
            start = c["start"] if isinstance(c["start"], dt.datetime) else dt.datetime.fromisoformat(str(c["start"]))
            end = c["end"] if isinstance(c["end"], dt.datetime) else dt.datetime.fromisoformat(str(c["end"]))
        except (KeyError, ValueError) as e:
            raise ConfError(f"{path}: campaign {c.get('name', '?')}: bad start/end ({e})") from None
        if start.tzinfo is None or end.tzinfo is None:
            raise ConfError(f"{path}: campaign {c.get('name', '?')}: start/end need a UTC offset")
        if start <= now < end:
            return str(c.get("text", ""))
    return ""


def read_intents(path: str, campaign: str) -> dict:
    doc = load_yaml(path)
    if not isinstance(doc, dict) or not isinstance(doc.get("intents"), dict):
        raise ConfError(f"{path}: expected `fallback_reply` and an `intents` mapping")
    # `conversation` (turns without a request) is kefu-edge's dialogue handling, which the
    # nginx tier it is compared with does not have: read past it, like `answer` below.
    unknown = set(doc) - {"fallback_reply", "intents", "conversation"}
    if unknown:
        raise ConfError(f"{path}: unknown top-level key(s) {sorted(unknown)}")
    fallback = doc.get("fallback_reply") or DEFAULT_FALLBACK
    errors = []
    intents = []
    for order, (iid, rules) in enumerate(doc["intents"].items(), start=1):
        rules = rules or {}
        where = f"{path}: {iid}"
        if not isinstance(rules, dict):
            errors.append(f"{where}: expected a mapping")
            continue
        bad = set(rules) - INTENT_KEYS
        if bad:
            errors.append(f"{where}: unknown key(s) {sorted(bad)}")
        keywords = []
        for k in as_list(rules.get("keywords"), f"{where}.keywords"):
            f = fold(str(k).strip())
            if not f:
                errors.append(f"{where}: empty keyword")
            elif f in keywords:
                errors.append(f"{where}: keyword `{k}` listed twice")
            else:
                keywords.append(f)
        exclude = []
        for k in as_list(rules.get("exclude"), f"{where}.exclude"):
            f = fold(str(k).strip())
            if not f:
                errors.append(f"{where}: empty exclude entry")
            elif f not in exclude:
                exclude.append(f)
        patterns = []
        for p in as_list(rules.get("patterns"), f"{where}.patterns"):
            p = str(p)
            try:  # Python's syntax is close to Rust regex's and PCRE's for what rules use
                re.compile(p)
            except re.error as e:
                errors.append(f"{where}: invalid regex `{p}`: {e}")
            patterns.append(p)
        replies = []
        for r in as_list(rules.get("replies"), f"{where}.replies"):
            try:
                replies.append(render_template(str(r), campaign))
            except SlotTemplate:
                continue
            except ConfError as e:
                errors.append(f"{where}: reply `{r}`: {e}")
        prio = rules.get("priority", 0)
        if not isinstance(prio, int):
            errors.append(f"{where}: priority must be an integer")
            prio = 0
        if (keywords or patterns) and not replies:
            errors.append(f"{where}: needs at least one reply")
        intents.append(dict(id=str(iid), order=order, priority=prio, keywords=keywords,
                            exclude=exclude, patterns=patterns, replies=replies))
    if errors:
        raise ConfError("\n".join(errors))
    return dict(fallback=fallback, intents=intents)


# ---------------------------------------------------------------- outputs

def write_rules_lua(out: str, rules: dict, chat: dict, src: str) -> tuple[int, int]:
    intents = rules["intents"]
    # One flat keyword list sorted by hit length (characters), longest first; ties in file
    # order. The matcher scans it until no remaining keyword can beat the best hit.
    flat = []
    for i, it in enumerate(intents, start=1):
        for pos, k in enumerate(it["keywords"]):
            flat.append((-len(k), i, pos, k))
    flat.sort()
    lines = [
        f"-- Generated by bench/gen_lua_rules.py from {src} at "
        f"{dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds')}. Do not edit.",
        "-- keywords: {folded text, length in characters, intent index}, longest first.",
        "return {",
        f"  fallback_reply = {lua_str(rules['fallback'])},",
        f"  max_text_chars = {int(chat['max_text_chars'])},",
        f"  max_user_id_bytes = {int(chat['max_user_id_bytes'])},",
        "  intents = {",
    ]
    for it in intents:
        lines.append("    { id = %s, priority = %d," % (lua_str(it["id"]), it["priority"]))
        lines.append("      exclude = { %s }," % ", ".join(lua_str(x) for x in it["exclude"]))
        lines.append("      patterns = { %s }," % ", ".join(lua_str(x) for x in it["patterns"]))
        lines.append("      replies = {")
        for r in it["replies"]:
            lines.append(f"        {lua_str(r)},")
        lines.append("      } },")
    lines.append("  },")
    lines.append("  keywords = {")
    for neg_len, i, _, k in flat:
        lines.append(f"    {{ {lua_str(k)}, {-neg_len}, {i} }},")
    lines.append("  },")
    lines.append("}")
    with open(os.path.join(out, "kefu_rules_data.lua"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return len(flat), sum(len(it["patterns"]) for it in intents)


def write_nginx_includes(out: str, edge: dict | None, limits: dict | None, chat: dict,
                         edge_src: str, limits_src: str) -> list[str]:
    notes = []
    http = [f"# Generated by bench/gen_lua_rules.py from {edge_src} and {limits_src}. Do not edit."]
    # --- user agent (edge.yaml user_agent): map runs once per request, PCRE JIT.
    ua = (edge or {}).get("user_agent") or {}
    deny_empty = bool(ua.get("deny_empty", True if edge is None else False))
    contains = [str(s).lower() for s in as_list(ua.get("deny_contains"), "edge.yaml user_agent.deny_contains")] \
        if edge is not None else list(DEFAULT_UA_DENY)
    regexes = [str(s) for s in as_list(ua.get("deny_regex"), "edge.yaml user_agent.deny_regex")]
    http.append("map $http_user_agent $kefu_ua_denied {")
    http.append("    default 0;")
    if deny_empty:
        http.append('    "" 1;')
    if contains:
        alt = "|".join(pcre_literal(s) for s in contains)
        http.append(f"    {nginx_quote('~*(?:' + alt + ')')} 1;")
    for r in regexes:
        http.append(f"    {nginx_quote('~' + r)} 1;")
    http.append("}")
    # --- client IP (edge.yaml ip_rules): geo = most specific network wins, like kefu-edge.
    ipr = (edge or {}).get("ip_rules") or {}
    default_deny = str(ipr.get("default", "allow")).lower() == "deny"
    http.append("geo $kefu_ip_denied {")
    http.append(f"    default {1 if default_deny else 0};")
    for c in as_list(ipr.get("deny"), "edge.yaml ip_rules.deny"):
        http.append(f"    {c} 1;")
    for c in as_list(ipr.get("allow"), "edge.yaml ip_rules.allow"):
        http.append(f"    {c} 0;")
    http.append("}")
    if ((edge or {}).get("real_ip") or {}).get("trusted_proxies"):
        notes.append("edge.yaml real_ip.trusted_proxies is not mirrored (the bench has no proxy in front)")
    # --- limits (limits.yaml): limit_req zones; per_user needs the parsed body, see README.
    chat_conf = [f"# Generated by bench/gen_lua_rules.py from {limits_src}. Do not edit."]
    body = int(chat["max_body_bytes"])
    chat_conf.append(f"client_max_body_size {body};")
    chat_conf.append(f"client_body_buffer_size {body};  # whole body in memory, never a temp file")
    buckets = []
    if limits is None:
        buckets.append(("per_ip", "$binary_remote_addr", DEFAULT_PER_IP[0], DEFAULT_PER_IP[1]))
    else:
        for name, key in (("global", "$kefu_global_key"), ("per_ip", "$binary_remote_addr")):
            b = limits.get(name)
            if b:
                buckets.append((name, key, nginx_rate(b.get("rate"), f"limits.yaml {name}"), int(b.get("burst", 1))))
        if limits.get("per_user"):
            notes.append("limits.yaml per_user is not mirrored: limit_req runs before the body is read")
    if any(k == "$kefu_global_key" for _, k, _, _ in buckets):
        http.append('map $server_port $kefu_global_key { default "all"; }')
    for name, key, rate, burst in buckets:
        http.append(f"limit_req_zone {key} zone=kefu_{name}:10m rate={rate};")
        chat_conf.append(f"limit_req zone=kefu_{name} burst={burst} nodelay;")
    with open(os.path.join(out, "kefu_http.conf"), "w", encoding="utf-8") as f:
        f.write("\n".join(http) + "\n")
    with open(os.path.join(out, "kefu_chat.conf"), "w", encoding="utf-8") as f:
        f.write("\n".join(chat_conf) + "\n")
    for name, _, rate, burst in buckets:
        notes.append(f"limit_req {name}: rate={rate} burst={burst}")
    return notes


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--conf", default=os.path.join(ROOT, "conf"),
                    help="kefu-edge configuration directory (default: conf/)")
    ap.add_argument("--intents", help="intents.yaml to use (default: CONF/intents.yaml, else conf/intents.yaml)")
    ap.add_argument("--limits", help="limits.yaml to mirror (default: CONF/limits.yaml); `none`: "
                    "a per-IP zone high enough never to throttle a benchmark")
    ap.add_argument("--campaign", help="text for {campaign} (default: the campaign of CONF/post.yaml open now)")
    ap.add_argument("--out", required=True, help="directory to write into (created)")
    args = ap.parse_args()

    conf = args.conf
    intents_path = args.intents or os.path.join(conf, "intents.yaml")
    if not args.intents and not os.path.exists(intents_path):
        intents_path = os.path.join(ROOT, "conf", "intents.yaml")

    def optional(name):
        # CONF/name, else the shipped conf/name, else None (permissive defaults).
        for p in (os.path.join(conf, name), os.path.join(ROOT, "conf", name)):
            if os.path.exists(p):
                return load_yaml(p) or {}, p
        return None, f"(no {name})"

    try:
        edge, edge_src = optional("edge.yaml")
        if args.limits == "none":
            limits, limits_src = None, "(no limits.yaml: --limits none)"
        elif args.limits:
            limits, limits_src = load_yaml(args.limits) or {}, args.limits
        else:
            limits, limits_src = optional("limits.yaml")
        post, post_src = optional("post.yaml")
        server, _ = optional("server.yaml")
        chat = {"max_body_bytes": 16384, "max_text_chars": 500, "max_user_id_bytes": 128}
        chat.update(((server or {}).get("chat") or {}))
        if args.campaign is not None:
            campaign = args.campaign
        else:
            campaign = open_campaign(post, post_src, dt.datetime.now(dt.timezone.utc))
        rules = read_intents(intents_path, campaign)
        os.makedirs(args.out, exist_ok=True)
        nkw, npat = write_rules_lua(args.out, rules, chat, intents_path)
        notes = write_nginx_includes(args.out, edge, limits, chat, edge_src, limits_src)
    except (ConfError, OSError) as e:
        print(f"gen_lua_rules.py: {e}", file=sys.stderr)
        return 1
    nrep = sum(len(it["replies"]) for it in rules["intents"])
    print(f"gen_lua_rules.py: {intents_path}: {len(rules['intents'])} intents, {nkw} keywords, "
          f"{npat} patterns, {nrep} replies; campaign text {'set' if campaign else 'empty'} -> {args.out}",
          file=sys.stderr)
    for n in notes:
        print(f"gen_lua_rules.py: {n}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
