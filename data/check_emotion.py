#!/usr/bin/env python3
"""Validate data/support_emotion.jsonl (stdlib only).

    python3 data/check_emotion.py [path/to/support_emotion.jsonl]

Checks that every line parses, the fields and their values (see
EMOTION_GUIDELINE.md), the sarcasm and mixed flags, the per-emotion and
per-speaker counts, exact duplicates (ignoring case and punctuation) and
near-duplicates, and that no line shares more than five consecutive words
with a line of the audio fixture scripts (audio-fixtures/*.script.json, the
held-out test set) or repeats a line of support_polarity.jsonl. Prints a
table and exits non-zero on any error.
"""

import collections
import glob
import json
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DATA = os.path.join(HERE, "support_emotion.jsonl")
POLARITY_DATA = os.path.join(HERE, "support_polarity.jsonl")

EMOTIONS = ("anger", "frustration", "anxiety", "confusion", "satisfaction", "neutral")
SPEAKERS = ("agent", "customer")
POLARITIES = ("negative", "neutral", "positive")
REQUIRED = {"text", "emotion", "speaker", "polarity", "sarcasm"}
OPTIONAL = {"mixed"}

MIN_PER_EMOTION = 60
MIN_AGENT = 100
MIN_SARCASM = 30
MIN_MIXED = 20
MIN_WORDS, MAX_WORDS = 3, 35
NEAR_DUP_JACCARD = 0.8   # word-set overlap at or above this is a near-duplicate
MAX_FIXTURE_RUN = 5      # consecutive words allowed in common with a fixture line
FILLERS = {"uh", "um", "er", "erm", "hmm", "mm", "hm", "ah", "oh", "like", "so",
           "well", "okay", "ok", "right", "yeah", "look", "i", "mean"}
MARKUP = re.compile(r"[*_#`<>\[\]{}|~\\]")


def norm_words(text):
    """Lower-case words with apostrophes and other punctuation removed."""
    return re.findall(r"[a-z0-9]+", text.lower().replace("'", ""))


def content_words(text):
    return {w for w in norm_words(text) if w not in FILLERS}


def longest_common_run(a, b):
    best = 0
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0] * (len(b) + 1)
        for j, y in enumerate(b, 1):
            if x == y:
                cur[j] = prev[j - 1] + 1
                if cur[j] > best:
                    best = cur[j]
        prev = cur
    return best


def ngrams(ws, n):
    return {tuple(ws[i:i + n]) for i in range(len(ws) - n + 1)}


def load(path, errors):
    rows = []
    with open(path, encoding="utf-8") as f:
        for no, line in enumerate(f, 1):
            if not line.strip():
                errors.append("line %d: blank line" % no)
                continue
            try:
                r = json.loads(line)
            except ValueError as e:
                errors.append("line %d: bad json (%s)" % (no, e))
                continue
            if not isinstance(r, dict):
                errors.append("line %d: not a JSON object" % no)
                continue
            rows.append((no, r))
    return rows


def check_row(no, r, errors, warnings):
    keys = set(r)
    if not REQUIRED <= keys or keys - REQUIRED - OPTIONAL:
        errors.append("line %d: keys %s" % (no, sorted(keys)))
    text = r.get("text")
    if not isinstance(text, str):
        errors.append("line %d: text is not a string" % no)
        return
    if text != text.strip() or "  " in text:
        errors.append("line %d: stray whitespace in text" % no)
    if not all(32 <= ord(ch) < 127 for ch in text):
        errors.append("line %d: non-ASCII or control character in text" % no)
    if MARKUP.search(text):
        errors.append("line %d: markup-like character in text: %s" % (no, text))
    n = len(norm_words(text))
    if not MIN_WORDS <= n <= MAX_WORDS:
        errors.append("line %d: %d words (allowed %d-%d)" % (no, n, MIN_WORDS, MAX_WORDS))

    emo, spk, pol = r.get("emotion"), r.get("speaker"), r.get("polarity")
    if emo not in EMOTIONS:
        errors.append("line %d: emotion %r" % (no, emo))
    if spk not in SPEAKERS:
        errors.append("line %d: speaker %r" % (no, spk))
    if pol not in POLARITIES:
        errors.append("line %d: polarity %r" % (no, pol))
    sarcasm = r.get("sarcasm")
    if not isinstance(sarcasm, bool):
        errors.append("line %d: sarcasm must be true or false" % no)
    if "mixed" in r and r["mixed"] is not True:
        errors.append("line %d: mixed, when present, must be true" % no)
    mixed = r.get("mixed") is True

    # Consistency rules from the guideline.
    if sarcasm is True:
        if spk != "customer":
            errors.append("line %d: sarcastic line must be a customer line" % no)
        if emo not in ("anger", "frustration"):
            errors.append("line %d: sarcastic line must be anger or frustration" % no)
        if pol != "negative":
            errors.append("line %d: sarcastic line must be negative" % no)
        if mixed:
            errors.append("line %d: a line is either sarcastic or mixed, not both" % no)
    if emo == "satisfaction" and pol != "positive":
        errors.append("line %d: satisfaction must be positive" % no)
    if emo == "confusion" and pol == "positive":
        errors.append("line %d: confusion cannot be positive" % no)
    if emo in ("anger", "frustration", "anxiety") and pol != "negative":
        warnings.append("line %d: %s line with %s polarity" % (no, emo, pol))
    if mixed and emo == "neutral":
        errors.append("line %d: a mixed line needs an emotional dominant clause" % no)


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else DATA
    errors, warnings = [], []
    rows = load(path, errors)
    for no, r in rows:
        check_row(no, r, errors, warnings)
    rows = [(no, r) for no, r in rows if isinstance(r.get("text"), str)]

    # Exact duplicates, ignoring case and punctuation.
    seen = {}
    for no, r in rows:
        key = " ".join(norm_words(r["text"]))
        if key in seen:
            errors.append("line %d duplicates line %d: %s" % (no, seen[key], r["text"]))
        else:
            seen[key] = no

    # Near-duplicates: same content words, give or take a filler or two.
    sets = [(no, content_words(r["text"])) for no, r in rows]
    near = 0
    for i, (na, a) in enumerate(sets):
        for nb, b in sets[i + 1:]:
            if len(a) < 3 or len(b) < 3:
                continue
            jac = len(a & b) / float(len(a | b))
            if jac >= NEAR_DUP_JACCARD:
                near += 1
                errors.append("line %d near-duplicates line %d (word overlap %.2f)" % (nb, na, jac))

    # Held-out fixtures and the sister polarity set.
    fixtures = []
    for p in sorted(glob.glob(os.path.join(ROOT, "audio-fixtures", "*.script.json"))):
        with open(p, encoding="utf-8") as f:
            fixtures.extend(t["text"] for t in json.load(f)["turns"])
    fixture_grams = set()
    for text in fixtures:
        fixture_grams |= ngrams(norm_words(text), MAX_FIXTURE_RUN + 1)
    for no, r in rows:
        if ngrams(norm_words(r["text"]), MAX_FIXTURE_RUN + 1) & fixture_grams:
            errors.append("line %d shares more than %d words with a fixture line: %s"
                          % (no, MAX_FIXTURE_RUN, r["text"]))
    polarity_texts = set()
    if os.path.exists(POLARITY_DATA):
        with open(POLARITY_DATA, encoding="utf-8") as f:
            for line in f:
                try:
                    polarity_texts.add(" ".join(norm_words(json.loads(line)["text"])))
                except (ValueError, KeyError, TypeError):
                    pass
    for no, r in rows:
        if " ".join(norm_words(r["text"])) in polarity_texts:
            errors.append("line %d repeats a line of support_polarity.jsonl: %s" % (no, r["text"]))

    # Counts.
    valid = [r for _, r in rows if r.get("emotion") in EMOTIONS]
    by_emo = collections.Counter(r["emotion"] for r in valid)
    cell = collections.Counter((r["emotion"], r.get("speaker")) for r in valid)
    pol = collections.Counter((r["emotion"], r.get("polarity")) for r in valid)
    sarc = collections.Counter(r["emotion"] for r in valid if r.get("sarcasm") is True)
    mix = collections.Counter(r["emotion"] for r in valid if r.get("mixed") is True)

    head = "%-13s %6s %6s %8s %6s %6s %6s %6s %6s" % (
        "emotion", "total", "agent", "customer", "neg", "neu", "pos", "sarc", "mixed")
    print(path)
    print(head)
    print("-" * len(head))
    for e in EMOTIONS:
        print("%-13s %6d %6d %8d %6d %6d %6d %6d %6d" % (
            e, by_emo[e], cell[(e, "agent")], cell[(e, "customer")],
            pol[(e, "negative")], pol[(e, "neutral")], pol[(e, "positive")], sarc[e], mix[e]))
        if by_emo[e] < MIN_PER_EMOTION:
            errors.append("only %d %s lines (need %d)" % (by_emo[e], e, MIN_PER_EMOTION))
    print("-" * len(head))
    n_agent = sum(cell[(e, "agent")] for e in EMOTIONS)
    n_cust = sum(cell[(e, "customer")] for e in EMOTIONS)
    tot_pol = [sum(pol[(e, p)] for e in EMOTIONS) for p in POLARITIES]
    print("%-13s %6d %6d %8d %6d %6d %6d %6d %6d" % (
        "all", len(valid), n_agent, n_cust, tot_pol[0], tot_pol[1], tot_pol[2],
        sum(sarc.values()), sum(mix.values())))
    print()
    print("lines %d, agent %d, customer %d, sarcasm %d, mixed %d, near-duplicate pairs %d"
          % (len(rows), n_agent, n_cust, sum(sarc.values()), sum(mix.values()), near))
    print("%d fixture lines and %d polarity-set lines checked for overlap"
          % (len(fixtures), len(polarity_texts)))
    if n_agent < MIN_AGENT:
        errors.append("only %d agent lines (need %d)" % (n_agent, MIN_AGENT))
    if sum(sarc.values()) < MIN_SARCASM:
        errors.append("only %d sarcastic lines (need %d)" % (sum(sarc.values()), MIN_SARCASM))
    if sum(mix.values()) < MIN_MIXED:
        errors.append("only %d mixed lines (need %d)" % (sum(mix.values()), MIN_MIXED))

    for w in warnings:
        print("warning:", w)
    for e in errors:
        print("ERROR:", e)
    print("OK" if not errors else "FAILED (%d errors)" % len(errors))
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
