#!/usr/bin/env python3
"""Validate the support-call language data (standard library only).

    python3 data/check_data.py              # check data/support_{train,heldout}.jsonl
    python3 data/check_data.py --self-test  # prove the checker catches planted faults
    python3 data/check_data.py TRAIN HELDOUT

Checks, for both files together:

* the record format and its values (see EMOTION_GUIDELINE.md), unique ids
  whose prefix is the line's language, the characters each language may use;
* the labelling rules that can be checked mechanically: sarcasm and mixed
  flags, emotion and polarity agreeing, and the agent and customer rules;
* exact duplicates (ignoring case, accents and punctuation) and
  near-duplicates (high word overlap, or a long shared run of words), within
  a split and across the two splits: a line and its near-twin must not sit
  on both sides;
* the minimums: total lines, the non-English share, and per language the
  line count, polarity balance, emotion shares, agent share, agent lines of
  the apology / empathy / hold / verification / transfer / bad-news kinds,
  sarcastic and mixed lines, and the held-out share (18-22 %);
* that no line shares more than five consecutive words with a line of the
  scripted test calls (audio-fixtures/*.script.json) or with the probe
  sentences quoted in issue 12.

Prints a summary table and exits non-zero with every problem listed.
"""

import collections
import glob
import hashlib
import json
import os
import re
import sys
import unicodedata

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TRAIN = os.path.join(HERE, "support_train.jsonl")
HELDOUT = os.path.join(HERE, "support_heldout.jsonl")
SPLITS = ("train", "heldout")

LANGS = ("en", "es", "de", "fr", "pt", "it")
ROLES = ("agent", "customer")
POLARITIES = ("negative", "neutral", "positive")
EMOTIONS = ("anger", "frustration", "anxiety", "confusion", "satisfaction", "neutral")
FIELDS = ("id", "text", "lang", "role", "polarity", "emotion", "sarcasm", "mixed")
ID_RE = re.compile(r"^([a-z]{2})-([0-9]{4})$")

LIMITS = {
    "min_total": 2000,
    "min_non_english_share": 0.45,
    "min_per_language": 150,
    "min_polarity_share": 0.20,     # of a language's lines, for each polarity
    "min_emotion_share": 0.08,      # of a language's lines, for each emotion
    "min_agent_share": 0.35,        # of a language's lines
    "min_agent_care_share": 0.30,   # of a language's agent lines (cue words, see below)
    "min_sarcasm": 15,              # per language
    "min_mixed": 15,                # per language
    "heldout_share": (0.18, 0.22),  # per language
    "min_diacritic_share": 0.20,    # non-English lines using a letter outside ASCII
}
MIN_WORDS, MAX_WORDS = 3, 35
NEAR_DUP_JACCARD = 0.8        # content-word overlap that makes a near-duplicate anywhere
CROSS_SPLIT_JACCARD = 0.6     # stricter across the splits (leakage into held-out)
CROSS_SPLIT_RUN = 7           # or this many consecutive words in common across the splits
MAX_FIXTURE_RUN = 5           # consecutive words allowed in common with a fixture or probe

# Sentences quoted in issue 12 as test probes: no line may reuse them.
ISSUE_PROBES = (
    "I'm sorry to hear that. Let me pull up your account and run a line test.",
    "I understand, and I apologise for the missed appointment.",
    "The line test shows some noise. I can book a technician for Thursday.",
    "Hi, yes, my internet keeps dropping every evening and I would like to find out why.",
)

PUNCT = " .,;:!?'\"-()%"
LETTERS = {
    "en": "",
    "es": "áéíóúüñÁÉÍÓÚÜÑ¿¡",
    "de": "äöüßÄÖÜ",
    "fr": "àâæçéèêëîïôœùûüÿÀÂÆÇÉÈÊËÎÏÔŒÙÛÜŸ",
    "pt": "áâãàçéêíóôõúÁÂÃÀÇÉÊÍÓÔÕÚ",
    "it": "àèéìíòóùúÀÈÉÌÒÙ",
}
ASCII_OK = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789" + PUNCT)

# Spoken fillers, left out when word overlap is measured.
FILLERS = {
    "en": "uh um er erm hmm mm hm ah oh like so well okay ok right yeah look i mean",
    "es": "eh em este pues bueno vale a ver o sea mire oiga vamos es que hombre mujer claro ya si",
    "de": "äh ähm hm also ja na naja halt mal so gut okay genau eben doch ne oder",
    "fr": "euh ben bah bon alors enfin du coup voila hein quoi ok oui ah oh donc",
    "pt": "e ne ta bom entao olha pois tipo assim ah oh ok sim ai",
    "it": "eh ehm allora cioe ecco insomma senta guardi beh dunque tipo si ok va bene no",
}
FILLERS = {lang: set(words.split()) for lang, words in FILLERS.items()}

# Cue words of the agent lines that matter most (apology, empathy,
# acknowledgement, hold, verification, transfer, bad news delivered politely).
# A line counts when its lower-cased, accent-stripped text contains a cue.
APOLOGY_CUES = {
    "en": ["sorry", "apologi", "i understand", "i can understand", "i hear you", "i appreciate",
           "forgive me", "my apologies", "i regret"],
    "es": ["siento", "lamento", "disculp", "perdone", "perdon", "entiendo", "comprendo"],
    "de": ["tut mir", "entschuldig", "bedaure", "verstehe", "kann ich nachvollziehen",
           "nachvollziehbar", "verzeihung"],
    "fr": ["desole", "excuse", "regrette", "je comprends", "pardon", "navre"],
    "pt": ["lamento", "desculp", "sinto muito", "entendo", "compreendo", "perdao"],
    "it": ["mi dispiace", "scus", "capisco", "comprendo", "perdoni", "mi rincresce"],
}
CARE_CUES = {
    "en": ["hold", "bear with", "one moment", "a moment", "confirm", "security", "verify",
           "transfer you", "put you through", "pass you", "unfortunately", "afraid", "sadly",
           "regrettably", "let me check", "let me look", "let me see"],
    "es": ["espera", "momento", "un segundo", "confirm", "verific", "seguridad", "le paso",
           "te paso", "transfiero", "le transfiero", "desgraciadamente", "lamentablemente",
           "me temo", "por desgracia", "dejeme", "deje que", "voy a revisar", "voy a comprobar"],
    "de": ["warteschleife", "moment", "augenblick", "bestatig", "sicherheit", "verbinde",
           "weiterleiten", "leite sie", "stelle sie", "leider", "bedauerlicherweise", "ich schaue", "ich prufe", "ich sehe mir"],
    "fr": ["patienter", "attente", "instant", "confirmer", "verifi", "securite", "transf",
           "mettre en relation", "je vous passe", "malheureusement", "je crains", "je regarde", "je verifie"],
    "pt": ["aguard", "espera", "momento", "instante", "confirm", "verific", "seguranca",
           "transferi", "transfiro", "vou passa", "infelizmente", "receio", "vou verificar", "deixa eu ver",
           "deixe-me ver", "vou ver"],
    "it": ["attesa", "attimo", "momento", "confermare", "conferma", "verific", "sicurezza",
           "la passo", "ti passo", "trasferisco", "purtroppo", "temo", "controllo subito",
           "do un'occhiata", "verifico"],
}


def fold(text):
    """Lower-case, strip accents, unify apostrophes."""
    text = text.lower().replace("’", "'").replace("ß", "ss").replace("œ", "oe").replace("æ", "ae")
    text = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in text if not unicodedata.combining(ch))


def norm_words(text):
    """Words for comparison: folded, apostrophes dropped, punctuation removed."""
    return re.findall(r"[a-z0-9]+", fold(text).replace("'", ""))


def content_words(text, lang):
    fill = FILLERS.get(lang, set())
    return {w for w in norm_words(text) if w not in fill}


def ngrams(ws, n):
    return {tuple(ws[i:i + n]) for i in range(len(ws) - n + 1)}


def has_cue(text, cues):
    t = " " + re.sub(r"[^a-z0-9' ]+", " ", fold(text)) + " "
    return any(c in t for c in cues)


def is_agent_care(rec):
    lang = rec.get("lang")
    return has_cue(rec["text"], APOLOGY_CUES.get(lang, []) + CARE_CUES.get(lang, []))


def is_apology(rec):
    return has_cue(rec["text"], APOLOGY_CUES.get(rec.get("lang"), []))


# --------------------------------------------------------------------------
# Loading and per-record checks


def load(path, split, errors):
    rows = []
    name = os.path.basename(path)
    if not os.path.exists(path):
        errors.append("%s: missing" % name)
        return rows
    with open(path, encoding="utf-8") as f:
        for no, line in enumerate(f, 1):
            where = "%s:%d" % (name, no)
            if not line.strip():
                errors.append("%s: blank line" % where)
                continue
            try:
                rec = json.loads(line)
            except ValueError as e:
                errors.append("%s: bad JSON (%s)" % (where, e))
                continue
            if not isinstance(rec, dict):
                errors.append("%s: not a JSON object" % where)
                continue
            rows.append({"split": split, "where": "%s (%s)" % (where, rec.get("id")), "rec": rec})
    return rows


def check_record(rec, where):
    """Schema, values and the mechanical labelling rules for one record."""
    errs = []

    def err(msg):
        errs.append("%s: %s" % (where, msg))

    keys = set(rec)
    if keys != set(FIELDS):
        missing, extra = sorted(set(FIELDS) - keys), sorted(keys - set(FIELDS))
        err("fields: missing %s, unexpected %s" % (missing, extra))
    lang, role, pol, emo = rec.get("lang"), rec.get("role"), rec.get("polarity"), rec.get("emotion")
    if lang not in LANGS:
        err("lang %r (allowed %s)" % (lang, ", ".join(LANGS)))
    m = ID_RE.match(rec.get("id") if isinstance(rec.get("id"), str) else "")
    if not m:
        err("id %r is not like es-0412" % rec.get("id"))
    elif m.group(1) != lang:
        err("id %r does not start with its lang %r" % (rec["id"], lang))
    if role not in ROLES:
        err("role %r" % role)
    if pol not in POLARITIES:
        err("polarity %r" % pol)
    if emo not in EMOTIONS:
        err("emotion %r" % emo)
    sarcasm, mixed = rec.get("sarcasm"), rec.get("mixed")
    if not isinstance(sarcasm, bool):
        err("sarcasm must be true or false")
    if not isinstance(mixed, bool):
        err("mixed must be true or false")

    text = rec.get("text")
    if not isinstance(text, str):
        err("text is not a string")
        return errs
    if text != text.strip() or "  " in text:
        err("stray whitespace in text")
    allowed = ASCII_OK | set(LETTERS.get(lang, ""))
    bad = sorted({ch for ch in text if ch not in allowed})
    if bad:
        err("characters not allowed for %s (markup, emoji, another alphabet?): %s"
            % (lang, " ".join("U+%04X" % ord(ch) for ch in bad)))
    n = len(norm_words(text))
    if not MIN_WORDS <= n <= MAX_WORDS:
        err("%d words (allowed %d-%d)" % (n, MIN_WORDS, MAX_WORDS))

    # Rules from EMOTION_GUIDELINE.md that can be checked mechanically.
    if emo == "satisfaction" and pol != "positive":
        err("satisfaction must be positive")
    if emo in ("anger", "frustration", "anxiety") and pol != "negative":
        err("%s must be negative" % emo)
    if emo == "confusion" and pol == "positive":
        err("confusion cannot be positive")
    if role == "agent" and emo == "anger":
        err("an agent line is never anger")
    if role == "agent" and emo == "frustration" and lang in APOLOGY_CUES and is_apology(rec):
        err("an agent's apology, empathy or acknowledgement is never frustration")
    if role == "customer" and emo == "neutral" and pol != "neutral":
        err("a customer line with no emotion (a calm statement) is polarity neutral")
    if sarcasm is True:
        if role != "customer":
            err("a sarcastic line must be a customer line")
        if emo not in ("anger", "frustration"):
            err("a sarcastic line must be anger or frustration")
        if pol != "negative":
            err("a sarcastic line must be negative")
        if mixed is True:
            err("a line is either sarcastic or mixed, not both")
    if mixed is True and emo == "neutral":
        err("a mixed line is labelled by its dominant clause, which carries an emotion")
    return errs


# --------------------------------------------------------------------------
# Checks across lines


def check_ids(rows):
    errs = []
    seen = {}
    for r in rows:
        i = r["rec"].get("id")
        if i in seen:
            errs.append("%s: id also used at %s" % (r["where"], seen[i]))
        else:
            seen[i] = r["where"]
    return errs


def check_duplicates(rows):
    """Exact and near-duplicates within a split and across the splits."""
    errs = []
    texts = [r for r in rows if isinstance(r["rec"].get("text"), str)]
    exact = {}
    for r in texts:
        key = " ".join(norm_words(r["rec"]["text"]))
        if key in exact:
            o = exact[key]
            side = "across splits" if o["split"] != r["split"] else "within %s" % r["split"]
            errs.append("%s: duplicates %s (%s)" % (r["where"], o["where"], side))
        else:
            exact[key] = r

    by_lang = collections.defaultdict(list)
    for r in texts:
        ws = norm_words(r["rec"]["text"])
        by_lang[r["rec"].get("lang")].append((r, content_words(r["rec"]["text"], r["rec"].get("lang")), ws))
    for items in by_lang.values():
        # Long shared runs of words, found through an index of word runs.
        index = collections.defaultdict(list)
        run_pairs = set()
        for k, (_, _, ws) in enumerate(items):
            for g in ngrams(ws, CROSS_SPLIT_RUN):
                for j in index[g]:
                    run_pairs.add((j, k))
                index[g].append(k)
        for j, (ra, a, wa) in enumerate(items):
            for k in range(j + 1, len(items)):
                rb, b, wb = items[k]
                if " ".join(wa) == " ".join(wb):
                    continue  # already reported as an exact duplicate
                cross = ra["split"] != rb["split"]
                jac = len(a & b) / float(len(a | b)) if a and b else 0.0
                small = len(a) < 3 or len(b) < 3
                if not small and jac >= NEAR_DUP_JACCARD:
                    side = "across splits" if cross else "within %s" % ra["split"]
                    errs.append("%s: near-duplicate of %s (%s, word overlap %.2f)"
                                % (rb["where"], ra["where"], side, jac))
                elif cross and not small and min(len(a), len(b)) >= 4 and jac >= CROSS_SPLIT_JACCARD:
                    errs.append("%s: near-twin of %s across splits (word overlap %.2f)"
                                % (rb["where"], ra["where"], jac))
                elif cross and (j, k) in run_pairs:
                    errs.append("%s: shares %d or more consecutive words with %s across splits"
                                % (rb["where"], CROSS_SPLIT_RUN, ra["where"]))
    return errs


def fixture_lines():
    out = []
    for p in sorted(glob.glob(os.path.join(ROOT, "audio-fixtures", "*.script.json"))):
        with open(p, encoding="utf-8") as f:
            for t in json.load(f)["turns"]:
                out.append(t["text"])
    return out


def check_held_out_text(rows, protected, label):
    """No line may share more than MAX_FIXTURE_RUN consecutive words with a
    protected line. Returns (errors, longest run seen)."""
    errs = []
    grams = {}
    for n in range(1, 16):
        grams[n] = set()
        for text in protected:
            grams[n] |= ngrams(norm_words(text), n)
    worst = 0
    for r in rows:
        if not isinstance(r["rec"].get("text"), str):
            continue
        ws = norm_words(r["rec"]["text"])
        run = 0
        for n in range(1, 16):
            if ngrams(ws, n) & grams[n]:
                run = n
            else:
                break
        worst = max(worst, run)
        if run > MAX_FIXTURE_RUN:
            errs.append("%s: shares %d consecutive words with %s: %s"
                        % (r["where"], run, label, r["rec"]["text"]))
    return errs, worst


# --------------------------------------------------------------------------
# Counts, minimums and the summary table


def summarise(rows, limits, out=print):
    errs = []
    recs = [r["rec"] for r in rows if r["rec"].get("lang") in LANGS]
    split_of = [r["split"] for r in rows if r["rec"].get("lang") in LANGS]
    langs = [l for l in LANGS if any(r["lang"] == l for r in recs)]
    C = collections.Counter()
    for rec, split in zip(recs, split_of):
        l = rec["lang"]
        C[l] += 1
        C[(l, split)] += 1
        C[(l, split, rec.get("polarity"))] += 1
        C[(l, "pol", rec.get("polarity"))] += 1
        C[(l, "emo", rec.get("emotion"))] += 1
        C[(l, "role", rec.get("role"))] += 1
        C[(l, "sarcasm")] += rec.get("sarcasm") is True
        C[(l, "mixed")] += rec.get("mixed") is True
        if rec.get("role") == "agent" and isinstance(rec.get("text"), str):
            C[(l, "care")] += is_agent_care(rec)
        if l != "en" and isinstance(rec.get("text"), str):
            C[(l, "diacritic")] += any(ch in LETTERS[l] for ch in rec["text"])

    total = len(recs)
    non_en = total - C["en"]
    short = {"negative": "neg", "neutral": "neu", "positive": "pos"}

    out("Polarity by language and split")
    head = "%-5s" % "lang" + "".join("%10s" % ("train-" + short[p]) for p in POLARITIES) \
        + "".join("%10s" % ("held-" + short[p]) for p in POLARITIES) + "%7s%7s%7s" % ("train", "held", "held%")
    out(head)
    out("-" * len(head))
    for l in langs + ["all"]:
        ls = langs if l == "all" else [l]
        cnt = lambda *k: sum(C[(x,) + k] for x in ls)
        n_tr, n_ho = cnt("train"), cnt("heldout")
        out("%-5s" % l + "".join("%10d" % cnt("train", p) for p in POLARITIES)
            + "".join("%10d" % cnt("heldout", p) for p in POLARITIES)
            + "%7d%7d%6.1f%%" % (n_tr, n_ho, 100.0 * n_ho / max(1, n_tr + n_ho)))
    out("")
    out("Emotions (both splits)")
    head = "%-5s" % "lang" + "".join("%13s" % e for e in EMOTIONS) + "%7s" % "total"
    out(head)
    out("-" * len(head))
    for l in langs + ["all"]:
        ls = langs if l == "all" else [l]
        n = sum(C[x] for x in ls)
        out("%-5s" % l + "".join("%7d %4.1f%%" % (sum(C[(x, "emo", e)] for x in ls),
                                                 100.0 * sum(C[(x, "emo", e)] for x in ls) / max(1, n))
                                 for e in EMOTIONS) + "%7d" % n)
    out("")
    out("Roles, flags and script (both splits)")
    head = "%-5s%7s%9s%8s%12s%9s%7s%11s" % ("lang", "agent", "customer", "agent%", "agent-care%",
                                             "sarcasm", "mixed", "diacritic%")
    out(head)
    out("-" * len(head))
    for l in langs + ["all"]:
        ls = langs if l == "all" else [l]
        n = sum(C[x] for x in ls)
        ag = sum(C[(x, "role", "agent")] for x in ls)
        cu = sum(C[(x, "role", "customer")] for x in ls)
        care = sum(C[(x, "care")] for x in ls)
        dia_n = sum(C[x] for x in ls if x != "en")
        dia = ("%10.1f%%" % (100.0 * sum(C[(x, "diacritic")] for x in ls) / dia_n)) if dia_n else "%11s" % "-"
        out("%-5s%7d%9d%7.1f%%%11.1f%%%9d%7d%s" % (
            l, ag, cu, 100.0 * ag / max(1, n), 100.0 * care / max(1, ag),
            sum(C[(x, "sarcasm")] for x in ls), sum(C[(x, "mixed")] for x in ls), dia))
    out("")
    out("lines %d, non-English %d (%.1f%%)" % (total, non_en, 100.0 * non_en / max(1, total)))

    # Minimums.
    if total < limits["min_total"]:
        errs.append("only %d lines in all (need %d)" % (total, limits["min_total"]))
    if non_en < limits["min_non_english_share"] * total:
        errs.append("non-English share %.1f%% (need %.0f%%)"
                    % (100.0 * non_en / max(1, total), 100 * limits["min_non_english_share"]))
    for l in LANGS:
        n = C[l]
        if n < limits["min_per_language"]:
            errs.append("%s: only %d lines (need %d)" % (l, n, limits["min_per_language"]))
        if not n:
            continue
        for p in POLARITIES:
            if C[(l, "pol", p)] < limits["min_polarity_share"] * n:
                errs.append("%s: %s is %.1f%% of the lines (need %.0f%%)"
                            % (l, p, 100.0 * C[(l, "pol", p)] / n, 100 * limits["min_polarity_share"]))
        for e in EMOTIONS:
            if C[(l, "emo", e)] < limits["min_emotion_share"] * n:
                errs.append("%s: %s is %.1f%% of the lines (need %.0f%%)"
                            % (l, e, 100.0 * C[(l, "emo", e)] / n, 100 * limits["min_emotion_share"]))
        ag = C[(l, "role", "agent")]
        if ag < limits["min_agent_share"] * n:
            errs.append("%s: agent lines are %.1f%% (need %.0f%%)"
                        % (l, 100.0 * ag / n, 100 * limits["min_agent_share"]))
        if ag and C[(l, "care")] < limits["min_agent_care_share"] * ag:
            errs.append("%s: apology/empathy/hold/verification/transfer/bad-news agent lines are "
                        "%.1f%% of agent lines (need %.0f%%)"
                        % (l, 100.0 * C[(l, "care")] / ag, 100 * limits["min_agent_care_share"]))
        if C[(l, "sarcasm")] < limits["min_sarcasm"]:
            errs.append("%s: only %d sarcastic lines (need %d)" % (l, C[(l, "sarcasm")], limits["min_sarcasm"]))
        if C[(l, "mixed")] < limits["min_mixed"]:
            errs.append("%s: only %d mixed lines (need %d)" % (l, C[(l, "mixed")], limits["min_mixed"]))
        lo, hi = limits["heldout_share"]
        share = C[(l, "heldout")] / float(n)
        if not lo <= share <= hi:
            errs.append("%s: held-out share %.1f%% (need %.0f-%.0f%%)" % (l, 100 * share, 100 * lo, 100 * hi))
        if l != "en" and C[(l, "diacritic")] < limits["min_diacritic_share"] * n:
            errs.append("%s: only %.1f%% of lines use the language's own letters (need %.0f%%)"
                        % (l, 100.0 * C[(l, "diacritic")] / n, 100 * limits["min_diacritic_share"]))
    return errs


def check_all(rows, limits, protected_fixtures, probes, out=print):
    """Every check on loaded rows. Returns the list of problems."""
    errs = []
    for r in rows:
        errs.extend(check_record(r["rec"], r["where"]))
    errs.extend(check_ids(rows))
    errs.extend(check_duplicates(rows))
    e, worst_fixture = check_held_out_text(rows, protected_fixtures, "an audio fixture line")
    errs.extend(e)
    e, worst_probe = check_held_out_text(rows, probes, "a probe sentence of issue 12")
    errs.extend(e)
    if limits is not None:
        errs.extend(summarise(rows, limits, out))
    out("%d fixture lines and %d issue probes checked; longest shared word run %d and %d (limit %d)"
        % (len(protected_fixtures), len(probes), worst_fixture, worst_probe, MAX_FIXTURE_RUN))
    return errs


# --------------------------------------------------------------------------
# Self-test: plant faults in a small synthetic set and make sure each is caught.


def _rec(i, text, lang="en", role="agent", pol="neutral", emo="neutral", sarcasm=False, mixed=False):
    return {"id": "%s-%04d" % (lang, i), "text": text, "lang": lang, "role": role,
            "polarity": pol, "emotion": emo, "sarcasm": sarcasm, "mixed": mixed}


def self_test():
    train = [
        _rec(1, "Could you read me the postcode on the account, please?"),
        _rec(2, "I've been waiting since nine and nobody has turned up.", role="customer",
             pol="negative", emo="frustration"),
        _rec(3, "Lo siento mucho, ahora mismo le cambio la cita.", lang="es", pol="positive"),
        _rec(4, "Oh wonderful, the app crashed again, just lovely.", role="customer",
             pol="negative", emo="frustration", sarcasm=True),
    ]
    heldout = [
        _rec(5, "Ich verbinde Sie jetzt mit der Technik, einen Moment bitte.", lang="de"),
        _rec(6, "Merci beaucoup, ça marche enfin, vous m'avez sauvé la journée.", lang="fr",
             role="customer", pol="positive", emo="satisfaction"),
    ]
    fixtures = ["Thank you for calling, I am happy to help."]

    def rows_of(tr, ho):
        return ([{"split": "train", "where": "train:%d (%s)" % (k, r["id"]), "rec": r} for k, r in enumerate(tr, 1)]
                + [{"split": "heldout", "where": "heldout:%d (%s)" % (k, r["id"]), "rec": r}
                   for k, r in enumerate(ho, 1)])

    def run(tr, ho):
        return check_all(rows_of(tr, ho), None, fixtures, ISSUE_PROBES, out=lambda *_: None)

    cases = [
        ("clean set passes", train, heldout, None),
        ("cross-split duplicate", train,
         heldout + [_rec(7, "could you read me the POSTCODE on the account please")], "duplicates"),
        ("cross-split near-twin", train,
         heldout + [_rec(8, "Could you read me the postcode on your account, please?")], "across splits"),
        ("bad emotion label", train + [_rec(9, "That is not what I asked for.", role="customer",
                                            pol="negative", emo="rage")], heldout, "emotion 'rage'"),
        ("satisfaction with negative polarity", train + [_rec(10, "Thanks so much, that is perfect.",
                                                              role="customer", pol="negative",
                                                              emo="satisfaction")],
         heldout, "satisfaction must be positive"),
        ("agent labelled anger", train + [_rec(11, "I have already told you the fee stays.",
                                               pol="negative", emo="anger")], heldout, "never anger"),
        ("agent apology labelled frustration", train + [_rec(12, "I'm so sorry, the screen has frozen.",
                                                             pol="negative", emo="frustration")],
         heldout, "never frustration"),
        ("sarcasm on an agent line", train + [_rec(13, "Oh brilliant, the system is down again.",
                                                   pol="negative", emo="frustration", sarcasm=True)],
         heldout, "must be a customer line"),
        ("id prefix and language disagree", train + [_rec(14, "Un momento, por favor, no cuelgue.", lang="es")
                                                     | {"id": "it-0014"}], heldout, "does not start"),
        ("reused id", train + [_rec(1, "Which card would you like to use today?")], heldout, "id also used"),
        ("fixture overlap", train + [_rec(15, "Thank you for calling, I am happy to help with that.")],
         heldout, "audio fixture"),
        ("probe reused", train + [_rec(16, "The line test shows some noise, so I will send someone.")],
         heldout, "probe sentence"),
        ("emoji in text", train + [_rec(17, "Thanks a lot \U0001F600 that helped.", role="customer",
                                        pol="positive", emo="satisfaction")], heldout, "not allowed"),
    ]
    failed = 0
    for name, tr, ho, expect in cases:
        errs = run(tr, ho)
        if expect is None:
            ok = not errs
        else:
            ok = any(expect in e for e in errs)
        print("%-4s %s" % ("ok" if ok else "FAIL", name))
        if not ok:
            failed += 1
            for e in errs:
                print("     got:", e)
    print("self-test: %d of %d cases behaved" % (len(cases) - failed, len(cases)))
    return 1 if failed else 0


def main(argv):
    if argv[1:2] == ["--self-test"]:
        return self_test()
    if len(argv) not in (1, 3):
        print(__doc__)
        return 2
    train, heldout = (argv[1], argv[2]) if len(argv) == 3 else (TRAIN, HELDOUT)
    errors = []
    rows = load(train, "train", errors) + load(heldout, "heldout", errors)
    errors.extend(check_all(rows, LIMITS, fixture_lines(), ISSUE_PROBES))
    for e in errors:
        print("ERROR:", e)
    print("OK" if not errors else "FAILED (%d problems)" % len(errors))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
