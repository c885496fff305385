#!/usr/bin/env python3
"""Validate data/support_polarity.jsonl (stdlib only).

    python3 data/check_data.py

Checks the schema, label/role values, duplicates, the label balance, and
that no line shares more than five consecutive words with any line of the
audio fixture scripts (audio-fixtures/*.script.json), which are the
held-out test set.
"""

import collections
import glob
import json
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "data", "support_polarity.jsonl")
MAX_SHARED = 5  # consecutive words allowed in common with a fixture line


def words(text):
    return re.findall(r"[a-z0-9']+", text.lower())


def ngrams(ws, n):
    return {tuple(ws[i:i + n]) for i in range(len(ws) - n + 1)}


def longest_common_run(a, b):
    best = 0
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0] * (len(b) + 1)
        for j, y in enumerate(b, 1):
            if x == y:
                cur[j] = prev[j - 1] + 1
                best = max(best, cur[j])
        prev = cur
    return best


def main():
    errors = []
    rows = []
    with open(DATA) as f:
        for no, line in enumerate(f, 1):
            try:
                r = json.loads(line)
            except ValueError as e:
                errors.append("line %d: bad json (%s)" % (no, e))
                continue
            if set(r) != {"text", "label", "role"}:
                errors.append("line %d: keys %s" % (no, sorted(r)))
            if r.get("label") not in ("negative", "neutral", "positive"):
                errors.append("line %d: label %r" % (no, r.get("label")))
            if r.get("role") not in ("agent", "customer"):
                errors.append("line %d: role %r" % (no, r.get("role")))
            if not isinstance(r.get("text"), str) or len(words(r["text"])) < 2:
                errors.append("line %d: text" % no)
            rows.append((no, r))

    seen = {}
    for no, r in rows:
        key = " ".join(words(r["text"]))
        if key in seen:
            errors.append("line %d duplicates line %d" % (no, seen[key]))
        seen[key] = no

    labels = collections.Counter(r["label"] for _, r in rows)
    cells = collections.Counter((r["label"], r["role"]) for _, r in rows)
    print("%d lines" % len(rows))
    for lab in ("negative", "neutral", "positive"):
        print("  %-8s %3d  (agent %d, customer %d)"
              % (lab, labels[lab], cells[(lab, "agent")], cells[(lab, "customer")]))
        if labels[lab] < 90:
            errors.append("only %d %s lines" % (labels[lab], lab))
    if len(rows) < 300:
        errors.append("fewer than 300 lines")

    fixtures = []
    for p in sorted(glob.glob(os.path.join(ROOT, "audio-fixtures", "*.script.json"))):
        for t in json.load(open(p))["turns"]:
            fixtures.append((os.path.basename(p), t["index"], t["text"]))
    fixture_grams = set()
    for _, _, text in fixtures:
        fixture_grams |= ngrams(words(text), MAX_SHARED + 1)
    worst = 0
    for no, r in rows:
        ws = words(r["text"])
        if ngrams(ws, MAX_SHARED + 1) & fixture_grams:
            errors.append("line %d shares more than %d words with a fixture line: %s"
                          % (no, MAX_SHARED, r["text"]))
        for _, _, text in fixtures:
            worst = max(worst, longest_common_run(ws, words(text)))
    print("%d fixture lines checked; longest shared word run %d (limit %d)"
          % (len(fixtures), worst, MAX_SHARED))

    for e in errors:
        print("ERROR:", e)
    print("OK" if not errors else "FAILED")
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
