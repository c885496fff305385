#!/usr/bin/env python3
"""Validate the support-call intent data (standard library only).

    python3 data/check_intent.py              # check data/intent_{train,heldout}.jsonl
    python3 data/check_intent.py --self-test  # prove the checker catches planted faults
    python3 data/check_intent.py TRAIN HELDOUT

Checks, for both files together: the record format (id, text, lang, role,
intent; labels from INTENT_TAXONOMY.md), unique ids whose prefix is the
line's language, exact duplicates (ignoring case, accents and punctuation)
anywhere, near-duplicates (word overlap of 0.8 or more) across the two
splits, and the minimums: per language and label at least 20 training and 4
held-out lines, both roles in every language, and a held-out share of
18-22 %. Prints a summary and exits non-zero with every problem listed.
"""

import collections
import json
import os
import re
import sys
import unicodedata

HERE = os.path.dirname(os.path.abspath(__file__))
TRAIN = os.path.join(HERE, "intent_train.jsonl")
HELDOUT = os.path.join(HERE, "intent_heldout.jsonl")
LANGS = ("en", "es", "de", "fr", "pt", "it")
ROLES = ("agent", "customer")
LABELS = (
    "billing", "technical_fault", "cancellation", "service_complaint", "praise",
    "account_access", "order_delivery", "plan_change", "appointment",
    "escalation_request", "greeting_closing",
)
FIELDS = ("id", "text", "lang", "role", "intent")
ID_RE = re.compile(r"^([a-z]{2})-i([0-9]{4})$")


def norm(text):
    t = unicodedata.normalize("NFKD", text.lower())
    t = "".join(c for c in t if not unicodedata.combining(c))
    return " ".join(re.findall(r"\w+", t))


def load(path, problems):
    out = []
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                r = json.loads(line)
            except ValueError as e:
                problems.append(f"{path}:{i}: not JSON ({e})")
                continue
            if tuple(sorted(r)) != tuple(sorted(FIELDS)):
                problems.append(f"{path}:{i}: fields {sorted(r)}, expected {sorted(FIELDS)}")
                continue
            m = ID_RE.match(str(r["id"]))
            if not m or m.group(1) != r["lang"]:
                problems.append(f"{path}:{i}: id {r['id']!r} is not LANG-iNNNN of its language")
            if r["lang"] not in LANGS:
                problems.append(f"{path}:{i}: language {r['lang']!r}")
            if r["role"] not in ROLES:
                problems.append(f"{path}:{i}: role {r['role']!r}")
            if r["intent"] not in LABELS:
                problems.append(f"{path}:{i}: intent {r['intent']!r}")
            if not (1 <= len(r["text"].split()) <= 60):
                problems.append(f"{path}:{i}: text of {len(r['text'].split())} words")
            out.append(r)
    return out


def check(train_path, held_path):
    problems = []
    train, held = load(train_path, problems), load(held_path, problems)
    ids = collections.Counter(r["id"] for r in train + held)
    problems += [f"id {i} used {n} times" for i, n in ids.items() if n > 1]
    seen = {}
    for split, rows in (("train", train), ("heldout", held)):
        for r in rows:
            k = norm(r["text"])
            if k in seen:
                problems.append(f"{r['id']} ({split}) duplicates {seen[k]}")
            seen.setdefault(k, r["id"])
    # Near-duplicates across the splits, within a language.
    by_lang = collections.defaultdict(list)
    for r in train:
        by_lang[r["lang"]].append((set(norm(r["text"]).split()), r["id"]))
    for r in held:
        w = set(norm(r["text"]).split())
        for tw, tid in by_lang[r["lang"]]:
            if w and tw and len(w & tw) / len(w | tw) >= 0.8:
                problems.append(f"{r['id']} (heldout) nearly duplicates {tid} (train)")
                break
    counts = collections.Counter((s, r["lang"], r["intent"]) for s, rows in (("train", train), ("heldout", held)) for r in rows)
    for lang in LANGS:
        for label in LABELS:
            if counts[("train", lang, label)] < 20:
                problems.append(f"{lang} {label}: {counts[('train', lang, label)]} training lines (need 20)")
            if counts[("heldout", lang, label)] < 4:
                problems.append(f"{lang} {label}: {counts[('heldout', lang, label)]} held-out lines (need 4)")
        roles = {r["role"] for r in train + held if r["lang"] == lang}
        if roles != set(ROLES):
            problems.append(f"{lang}: roles {sorted(roles)}")
    total = len(train) + len(held)
    share = len(held) / max(total, 1)
    if not 0.18 <= share <= 0.22:
        problems.append(f"held-out share {share:.3f} (need 0.18-0.22)")
    print(f"{len(train)} training and {len(held)} held-out lines ({share:.1%} held out)")
    for lang in LANGS:
        n = sum(v for (s, l, _), v in counts.items() if l == lang)
        print(f"  {lang}: {n} lines")
    return problems


def self_test():
    import tempfile
    d = tempfile.mkdtemp()
    tr, he = os.path.join(d, "t.jsonl"), os.path.join(d, "h.jsonl")
    with open(TRAIN, encoding="utf-8") as f:
        lines = f.read().splitlines()
    with open(HELDOUT, encoding="utf-8") as f:
        held = f.read().splitlines()
    leak = json.loads(lines[0])
    leak["id"] = leak["lang"] + "-i9999"
    leak["text"] = leak["text"].upper() + "!"
    with open(tr, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    with open(he, "w", encoding="utf-8") as f:
        f.write("\n".join(held + [json.dumps(leak), '{"id": "en-i0001", "text": "x", "lang": "en", "role": "boss", "intent": "weather"}']) + "\n")
    p = check(tr, he)
    want = ["duplicates", "role 'boss'", "intent 'weather'", "id en-i0001 used"]
    missing = [w for w in want if not any(w in x for x in p)]
    if missing:
        print("self-test: the checker missed", missing)
        return 1
    print("self-test: planted faults caught")
    return 0


if __name__ == "__main__":
    if sys.argv[1:] == ["--self-test"]:
        sys.exit(self_test())
    args = sys.argv[1:] or [TRAIN, HELDOUT]
    problems = check(*args)
    for p in problems:
        print("problem:", p)
    sys.exit(1 if problems else 0)
