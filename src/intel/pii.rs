//! Redaction of personally identifiable information (PII) in transcripts.
//!
//! Works on text as whisper.cpp writes it, where numbers come as digits
//! ("4111 1111 1111 1111"), as spoken digit words ("four one one one, one
//! one one one"), or as a mix of both ("4111-1111 one one one one"), with
//! "oh"/"o" for zero, "double five" / "triple seven" for repeats, and
//! commas, periods, hyphens or the words "dash", "hyphen" and "space"
//! between digit groups.
//!
//! Detection runs in priority order; later rules never overlap earlier
//! ones:
//!
//! 1. written e-mail addresses (`local@domain.tld`);
//! 2. spoken e-mail addresses ("john dot smith at example dot com");
//! 3. IBANs (two letters, two check digits, 11–30 alphanumerics, possibly
//!    in space-separated groups; a valid mod-97 checksum decides where an
//!    IBAN ends);
//! 4. digit runs of 6 or more digits, classified as
//!    [`PiiKind::Ssn`] (9 digits grouped 3-2-4, or 9 digits after "social"
//!    / "SSN"), [`PiiKind::CardNumber`] (13–19 digits passing Luhn),
//!    [`PiiKind::PhoneNumber`] (7–15 digits, optionally after `+`, unless
//!    account words are nearby) and [`PiiKind::AccountNumber`] (anything
//!    else, or numbers near words such as "account", "order", "reference");
//!    a word of letters glued to 6 or more digits ("ABC123456") is an
//!    account number too.
//!
//! A run may cross separators but no other word. Amounts ("$1,250,000",
//! "20 dollars"), years, dates ("2024-01-15"), times ("10:30") and
//! quantity words ("ten", "eleven") are left alone. The module uses only
//! the standard library.
//!
//! ```text
//! let (text, spans) = pii::redact("my card is 4111 1111 1111 1111 thanks");
//! assert_eq!(text, "my card is [CARD_NUMBER] thanks");
//! assert_eq!(spans[0].kind, pii::PiiKind::CardNumber);
//! ```

use std::fmt;
use std::ops::Range;

/// The kind of personally identifiable information a span holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PiiKind {
    /// A payment card number: 13–19 digits passing the Luhn check.
    CardNumber,
    /// A telephone number: 7–15 digits, optionally with a leading `+`.
    PhoneNumber,
    /// An e-mail address, written or spoken.
    Email,
    /// A US social security number: 9 digits in the 3-2-4 pattern.
    Ssn,
    /// An international bank account number.
    Iban,
    /// Any other run of 6 or more digits (account, order, reference ...).
    AccountNumber,
}

impl PiiKind {
    /// Every kind, in declaration order.
    pub const ALL: [PiiKind; 6] = [
        PiiKind::CardNumber,
        PiiKind::PhoneNumber,
        PiiKind::Email,
        PiiKind::Ssn,
        PiiKind::Iban,
        PiiKind::AccountNumber,
    ];

    /// The placeholder that replaces the entity in redacted text, e.g.
    /// `"[CARD_NUMBER]"`.
    pub fn tag(self) -> &'static str {
        match self {
            PiiKind::CardNumber => "[CARD_NUMBER]",
            PiiKind::PhoneNumber => "[PHONE_NUMBER]",
            PiiKind::Email => "[EMAIL]",
            PiiKind::Ssn => "[SSN]",
            PiiKind::Iban => "[IBAN]",
            PiiKind::AccountNumber => "[ACCOUNT_NUMBER]",
        }
    }

    /// A lower-case, snake-case name for logs and schemas, e.g.
    /// `"card_number"`.
    pub fn name(self) -> &'static str {
        match self {
            PiiKind::CardNumber => "card_number",
            PiiKind::PhoneNumber => "phone_number",
            PiiKind::Email => "email",
            PiiKind::Ssn => "ssn",
            PiiKind::Iban => "iban",
            PiiKind::AccountNumber => "account_number",
        }
    }
}

impl fmt::Display for PiiKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One detected entity: its kind and its byte range in the input text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PiiSpan {
    /// What the span holds.
    pub kind: PiiKind,
    /// Byte offset of the first byte of the entity (a char boundary).
    pub start: usize,
    /// Byte offset one past the last byte of the entity (a char boundary).
    pub end: usize,
}

impl PiiSpan {
    /// The span as a byte range, for slicing the text it was found in.
    pub fn range(&self) -> Range<usize> {
        self.start..self.end
    }
}

/// Finds the PII entities in `text`.
///
/// The spans are sorted by start offset and never overlap. Each covers the
/// whole entity, including spoken digit words and the separators between
/// digit groups, but not the words around it ("my card is").
pub fn find(text: &str) -> Vec<PiiSpan> {
    let mut spans = Vec::new();
    find_written_emails(text, &mut spans);
    find_cued_addresses(text, &mut spans);
    let toks = tokenize(text);
    find_spoken_emails(&toks, &mut spans);
    find_ibans(text, &mut spans);
    find_digit_runs(text, &toks, &mut spans);
    spans.sort_by_key(|s| (s.start, s.end));
    let mut out: Vec<PiiSpan> = Vec::with_capacity(spans.len());
    for s in spans {
        if out.last().is_none_or(|p| p.end <= s.start) {
            out.push(s);
        }
    }
    out
}

/// Replaces every PII entity in `text` with its [`PiiKind::tag`].
///
/// Returns the redacted text and the spans that were replaced; the spans
/// refer to byte offsets in the original `text`, not the redacted one.
/// Redacting already-redacted text changes nothing.
pub fn redact(text: &str) -> (String, Vec<PiiSpan>) {
    let spans = find(text);
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for s in &spans {
        out.push_str(&text[at..s.start]);
        out.push_str(s.kind.tag());
        at = s.end;
    }
    out.push_str(&text[at..]);
    (out, spans)
}

/// Says, for each whisper word, which PII entity (if any) it falls inside.
///
/// The words (which may carry punctuation, like `"1111,"` or `"one,"`) are
/// joined with single spaces and passed to [`find`]; a word is marked when
/// any of its bytes lie inside an entity. The result has one entry per
/// input word.
pub fn redact_words(words: &[&str]) -> Vec<Option<PiiKind>> {
    let mut joined = String::new();
    let mut ranges = Vec::with_capacity(words.len());
    for (i, w) in words.iter().enumerate() {
        if i > 0 {
            joined.push(' ');
        }
        let start = joined.len();
        joined.push_str(w);
        ranges.push((start, joined.len()));
    }
    let spans = find(&joined);
    ranges
        .iter()
        .map(|&(start, end)| {
            let i = spans.partition_point(|s| s.end <= start);
            spans
                .get(i)
                .filter(|s| s.start < end && start < end)
                .map(|s| s.kind)
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Tokens
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TokKind {
    /// Letters only (apostrophes allowed inside: "it's", "o'clock").
    Word,
    /// ASCII digits only.
    Digits,
    /// Letters and digits mixed ("GB82", "1st").
    Mixed,
    /// A single non-alphanumeric, non-space character.
    Punct(char),
}

#[derive(Debug, Clone, Copy)]
struct Token<'a> {
    kind: TokKind,
    text: &'a str,
    start: usize,
    end: usize,
    /// Whether whitespace (or the start of the text) precedes the token.
    space_before: bool,
}

impl Token<'_> {
    fn is_word(&self, w: &str) -> bool {
        self.kind == TokKind::Word && self.text.eq_ignore_ascii_case(w)
    }

    fn is_word_in(&self, list: &[&str]) -> bool {
        self.kind == TokKind::Word && list.iter().any(|w| self.text.eq_ignore_ascii_case(w))
    }
}

fn is_apostrophe(c: char) -> bool {
    c == '\'' || c == '\u{2019}'
}

fn tokenize(text: &str) -> Vec<Token<'_>> {
    let mut toks = Vec::new();
    let mut chars = text.char_indices().peekable();
    let mut space_before = true;
    while let Some((start, c)) = chars.next() {
        if c.is_whitespace() {
            space_before = true;
            continue;
        }
        let mut end = start + c.len_utf8();
        let kind = if c.is_alphanumeric() {
            while let Some(&(j, d)) = chars.peek() {
                let after = j + d.len_utf8();
                let keep = d.is_alphanumeric()
                    || (is_apostrophe(d)
                        && text[after..]
                            .chars()
                            .next()
                            .is_some_and(char::is_alphanumeric));
                if !keep {
                    break;
                }
                end = after;
                chars.next();
            }
            let s = &text[start..end];
            if s.bytes().all(|b| b.is_ascii_digit()) {
                TokKind::Digits
            } else if s.bytes().any(|b| b.is_ascii_digit()) {
                TokKind::Mixed
            } else {
                TokKind::Word
            }
        } else {
            TokKind::Punct(c)
        };
        toks.push(Token {
            kind,
            text: &text[start..end],
            start,
            end,
            space_before,
        });
        space_before = false;
    }
    toks
}

fn overlaps(spans: &[PiiSpan], start: usize, end: usize) -> bool {
    spans.iter().any(|s| s.start < end && start < s.end)
}

// ---------------------------------------------------------------------------
// E-mail, written
// ---------------------------------------------------------------------------

fn is_local_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '.' | '_' | '%' | '+' | '-')
}

fn is_domain_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '.' | '-')
}

fn find_written_emails(text: &str, spans: &mut Vec<PiiSpan>) {
    for (at, _) in text.match_indices('@') {
        let mut start = at;
        for (i, c) in text[..at].char_indices().rev() {
            if !is_local_char(c) {
                break;
            }
            start = i;
        }
        let local = text[start..at].trim_start_matches(['.', '-', '+']);
        let start = at - local.len();
        let mut end = at + 1;
        for (i, c) in text[at + 1..].char_indices() {
            if !is_domain_char(c) {
                break;
            }
            end = at + 1 + i + c.len_utf8();
        }
        let domain = text[at + 1..end].trim_end_matches(['.', '-']);
        let end = at + 1 + domain.len();
        if local.is_empty() || overlaps(spans, start, end) {
            continue;
        }
        let labels: Vec<&str> = domain.split('.').collect();
        let tld = labels[labels.len() - 1];
        let ok = labels.len() >= 2
            && labels.iter().all(|l| !l.is_empty())
            && tld.chars().count() >= 2
            && tld.chars().all(char::is_alphabetic);
        if ok {
            spans.push(PiiSpan {
                kind: PiiKind::Email,
                start,
                end,
            });
        }
    }
}

/// A recogniser sometimes glues a spoken address into one token without the
/// "@" ("jon.smithatgmail.com"). Right after "email (address) is", a token
/// ending in a known top-level domain is taken as an e-mail address.
fn find_cued_addresses(text: &str, spans: &mut Vec<PiiSpan>) {
    let lower = text.to_ascii_lowercase();
    for cue in [
        "email is ",
        "e-mail is ",
        "email address is ",
        "e-mail address is ",
    ] {
        for (at, _) in lower.match_indices(cue) {
            let start = at + cue.len();
            let end = text[start..]
                .char_indices()
                .find(|(_, c)| !(is_local_char(*c) || is_domain_char(*c)))
                .map(|(i, _)| start + i)
                .unwrap_or(text.len());
            let token = text[start..end].trim_end_matches(['.', '-']);
            let end = start + token.len();
            let tld = token.rsplit('.').next().unwrap_or("");
            if token.contains('.')
                && SPOKEN_TLDS.contains(&tld.to_ascii_lowercase().as_str())
                && !overlaps(spans, start, end)
            {
                spans.push(PiiSpan {
                    kind: PiiKind::Email,
                    start,
                    end,
                });
            }
        }
    }
}

// ---------------------------------------------------------------------------
// E-mail, spoken
// ---------------------------------------------------------------------------

/// Top-level domains accepted after a spoken "dot".
const SPOKEN_TLDS: &[&str] = &[
    "com", "net", "org", "edu", "gov", "mil", "int", "io", "co", "uk", "us", "ca", "au", "de",
    "fr", "es", "it", "nl", "be", "ch", "ie", "nz", "in", "info", "biz", "me", "ai", "app", "dev",
    "tv", "eu", "se", "no", "dk", "fi", "pl", "br", "mx", "jp", "cn", "za", "sg", "hk", "online",
];

/// Words that cannot be a whole local part ("reach me at ...").
const LOCAL_STOPWORDS: &[&str] = &[
    "a", "an", "the", "is", "was", "be", "am", "are", "me", "us", "you", "him", "her", "them",
    "it", "i", "we", "they", "my", "your", "our", "their", "his", "its", "email", "mail",
    "address", "at", "to", "from", "and", "or", "there", "here", "that", "this", "reach", "call",
    "contact", "send", "home", "work", "office", "look", "only", "back", "out", "up", "dot",
];

fn is_label(t: &Token<'_>) -> bool {
    match t.kind {
        TokKind::Word => !t.text.contains(is_apostrophe) && !t.is_word("at") && !t.is_word("dot"),
        TokKind::Digits | TokKind::Mixed => true,
        TokKind::Punct(_) => false,
    }
}

/// A "dot" between labels: the word, or a `.` with no space around it.
fn is_dot_connector(toks: &[Token<'_>], i: usize) -> bool {
    let t = &toks[i];
    t.is_word("dot")
        || (t.kind == TokKind::Punct('.')
            && !t.space_before
            && toks.get(i + 1).is_some_and(|n| !n.space_before))
}

/// A hyphen inside a label: the words, or a `-` with no space around it.
fn is_hyphen_connector(toks: &[Token<'_>], i: usize) -> bool {
    let t = &toks[i];
    t.is_word_in(&["dash", "hyphen"])
        || (t.kind == TokKind::Punct('-')
            && !t.space_before
            && toks.get(i + 1).is_some_and(|n| !n.space_before))
}

fn is_underscore_connector(toks: &[Token<'_>], i: usize) -> bool {
    let t = &toks[i];
    t.is_word("underscore")
        || (t.kind == TokKind::Punct('_')
            && !t.space_before
            && toks.get(i + 1).is_some_and(|n| !n.space_before))
}

fn find_spoken_emails(toks: &[Token<'_>], spans: &mut Vec<PiiSpan>) {
    for i in 1..toks.len() {
        let trigger = toks[i].is_word("at") || toks[i].kind == TokKind::Punct('@');
        if !trigger || overlaps(spans, toks[i].start, toks[i].end) {
            continue;
        }
        let Some(last) = spoken_domain_end(toks, i + 1) else {
            continue;
        };
        let Some(first) = spoken_local_start(toks, i - 1) else {
            continue;
        };
        let (start, end) = (toks[first].start, toks[last].end);
        if !overlaps(spans, start, end) {
            spans.push(PiiSpan {
                kind: PiiKind::Email,
                start,
                end,
            });
        }
    }
}

/// Index of the token ending the domain that starts at `first`, if the
/// domain has at least one dot and ends in a top-level domain.
fn spoken_domain_end(toks: &[Token<'_>], first: usize) -> Option<usize> {
    if !toks.get(first).is_some_and(is_label) {
        return None;
    }
    let mut last = first;
    let mut best = None;
    while last + 2 < toks.len() && is_label(&toks[last + 2]) {
        let c = last + 1;
        if is_hyphen_connector(toks, c) {
            last = c + 1;
        } else if is_dot_connector(toks, c) {
            last = c + 1;
            let tld = &toks[last];
            let written = toks[c].kind == TokKind::Punct('.');
            let any_tld = written
                && tld.kind == TokKind::Word
                && tld.text.len() >= 2
                && tld.text.bytes().all(|b| b.is_ascii_alphabetic());
            if any_tld || tld.is_word_in(SPOKEN_TLDS) {
                best = Some(last);
            }
        } else {
            break;
        }
    }
    best
}

/// A digit, digit word or single letter: local parts are often spelled
/// out ("j o h n one two at ...").
fn is_spelled(t: &Token<'_>) -> bool {
    match t.kind {
        TokKind::Digits => true,
        TokKind::Word => digit_word(t.text).is_some() || t.text.chars().count() == 1,
        _ => false,
    }
}

/// Index of the token starting the local part that ends at `last`.
fn spoken_local_start(toks: &[Token<'_>], last: usize) -> Option<usize> {
    if !is_label(&toks[last]) {
        return None;
    }
    let mut first = last;
    loop {
        if first >= 2
            && is_label(&toks[first - 2])
            && (is_dot_connector(toks, first - 1)
                || is_underscore_connector(toks, first - 1)
                || is_hyphen_connector(toks, first - 1))
        {
            first -= 2;
        } else if first >= 1
            && is_spelled(&toks[first])
            && is_label(&toks[first - 1])
            && !(toks[first - 1].text.len() > 1 && toks[first - 1].is_word_in(LOCAL_STOPWORDS))
        {
            first -= 1;
        } else {
            break;
        }
    }
    if first == last && toks[first].is_word_in(LOCAL_STOPWORDS) {
        return None;
    }
    Some(first)
}

// ---------------------------------------------------------------------------
// IBAN
// ---------------------------------------------------------------------------

/// ISO 13616 check: move the first four characters to the end, map letters
/// to 10..=35 and take the whole number mod 97; valid IBANs give 1.
fn iban_checksum_ok(country_and_check: &str, bban: &str) -> bool {
    let mut rem: u32 = 0;
    for c in bban.chars().chain(country_and_check.chars()) {
        let v = match c.to_digit(36) {
            Some(v) => v,
            None => return false,
        };
        rem = if v < 10 {
            (rem * 10 + v) % 97
        } else {
            (rem * 100 + v) % 97
        };
    }
    rem == 1
}

fn find_ibans(text: &str, spans: &mut Vec<PiiSpan>) {
    let bytes = text.as_bytes();
    let mut p = 0;
    while p + 4 <= bytes.len() {
        // The ASCII prefix is checked first: it makes `p` a char boundary.
        let prefix_ok = bytes[p].is_ascii_alphabetic()
            && bytes[p + 1].is_ascii_alphabetic()
            && bytes[p + 2].is_ascii_digit()
            && bytes[p + 3].is_ascii_digit()
            && !glued_before(text, p);
        if prefix_ok {
            if let Some(end) = iban_end(text, p) {
                if !overlaps(spans, p, end) {
                    spans.push(PiiSpan {
                        kind: PiiKind::Iban,
                        start: p,
                        end,
                    });
                    p = end;
                    continue;
                }
            }
        }
        p += 1;
    }
}

/// Whether byte `p` continues a word: it follows a letter or digit, or an
/// apostrophe that follows one ("O'GB82" is one word to the tokenizer).
fn glued_before(text: &str, p: usize) -> bool {
    let mut before = text[..p].chars().rev();
    match before.next() {
        Some(c) if is_apostrophe(c) => before.next().is_some_and(char::is_alphanumeric),
        Some(c) => c.is_alphanumeric(),
        None => false,
    }
}

/// End offset of the IBAN whose country code starts at byte `p`, if any.
fn iban_end(text: &str, p: usize) -> Option<usize> {
    let bytes = text.as_bytes();
    let head = &text[p..p + 4];
    // Groups of ASCII alphanumerics after the prefix, joined by one space or
    // hyphen. Group 0 is glued to the prefix and may be empty.
    let mut groups: Vec<(usize, usize)> = Vec::new();
    let mut at = p + 4;
    loop {
        let start = at;
        while at < bytes.len() && bytes[at].is_ascii_alphanumeric() {
            at += 1;
        }
        let mut rest = text[at..].chars();
        let glued = match rest.next() {
            Some(c) if is_apostrophe(c) => rest.next().is_some_and(char::is_alphanumeric),
            Some(c) => c.is_alphanumeric(),
            None => false,
        };
        if glued {
            // Glued to a non-ASCII letter or digit, or to an apostrophe
            // inside a word ("O'Neil"): not a clean group.
            if groups.is_empty() {
                return None;
            }
            break;
        }
        if !groups.is_empty() && at == start {
            break;
        }
        groups.push((start, at));
        let sep_ok = at + 1 < bytes.len()
            && matches!(bytes[at], b' ' | b'-')
            && bytes[at + 1].is_ascii_alphanumeric();
        if !sep_ok {
            break;
        }
        at += 1;
    }
    let mut bban = String::new();
    let mut valid_end = None;
    let mut loose_end = None;
    let mut strict = true;
    let upper_country = bytes[p].is_ascii_uppercase() && bytes[p + 1].is_ascii_uppercase();
    for (k, &(s, e)) in groups.iter().enumerate() {
        let g = &text[s..e];
        bban.push_str(g);
        if bban.len() > 30 {
            break;
        }
        if k > 0 {
            let has_digit = g.bytes().any(|b| b.is_ascii_digit());
            let upper = g
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
            strict &= has_digit || upper;
        }
        if bban.len() >= 11 {
            if iban_checksum_ok(head, &bban) {
                valid_end = Some(e);
            }
            if strict && upper_country {
                loose_end = Some(e);
            }
        }
    }
    valid_end.or(loose_end)
}

// ---------------------------------------------------------------------------
// Digit runs
// ---------------------------------------------------------------------------

/// The digit a single spoken word stands for, if it is a digit word.
fn digit_word(w: &str) -> Option<u8> {
    const WORDS: [(&str, u8); 13] = [
        ("zero", 0),
        ("oh", 0),
        ("o", 0),
        ("nought", 0),
        ("one", 1),
        ("two", 2),
        ("three", 3),
        ("four", 4),
        ("five", 5),
        ("six", 6),
        ("seven", 7),
        ("eight", 8),
        ("nine", 9),
    ];
    WORDS
        .iter()
        .find(|(s, _)| w.eq_ignore_ascii_case(s))
        .map(|&(_, d)| d)
}

/// Words that sound like a digit.
fn homophone_digit(w: &str) -> Option<u8> {
    const WORDS: [(&str, u8); 4] = [("to", 2), ("too", 2), ("for", 4), ("won", 1)];
    WORDS
        .iter()
        .find(|(s, _)| w.eq_ignore_ascii_case(s))
        .map(|&(_, d)| d)
}

/// Is the nearest token before (or after) `i`, skipping separators, a digit?
fn digit_neighbour(toks: &[Token<'_>], i: usize, after: bool) -> bool {
    let mut j = i;
    loop {
        if after {
            j += 1;
            if j >= toks.len() {
                return false;
            }
        } else {
            if j == 0 {
                return false;
            }
            j -= 1;
        }
        let t = &toks[j];
        if is_separator(t) {
            continue;
        }
        return match t.kind {
            TokKind::Digits => true,
            TokKind::Word => digit_word(t.text).is_some(),
            _ => false,
        };
    }
}

/// Separators allowed between digit groups of one run.
fn is_separator(t: &Token<'_>) -> bool {
    match t.kind {
        TokKind::Punct(c) => matches!(c, ',' | '.' | '-' | '\u{2013}' | '\u{2014}' | '(' | ')'),
        TokKind::Word => t.is_word_in(&["dash", "hyphen", "space"]),
        _ => false,
    }
}

/// One digit-bearing element of a run.
#[derive(Debug, Clone)]
struct Atom {
    /// First and last token index of the atom ("double one" has two).
    first: usize,
    last: usize,
    digits: Vec<u8>,
    /// Written as digits (as opposed to spoken words).
    written: bool,
    /// Separator tokens between the previous atom and this one.
    seps: Vec<usize>,
}

fn parse_atom(toks: &[Token<'_>], covered: &[bool], i: usize) -> Option<Atom> {
    let t = toks.get(i)?;
    if covered[i] {
        return None;
    }
    let atom = |last, digits, written| Atom {
        first: i,
        last,
        digits,
        written,
        seps: Vec::new(),
    };
    match t.kind {
        TokKind::Digits => Some(atom(i, t.text.bytes().map(|b| b - b'0').collect(), true)),
        TokKind::Word => {
            if let Some(d) = digit_word(t.text) {
                return Some(atom(i, vec![d], false));
            }
            // A recogniser writes "two" as "to" and "four" as "for" in the
            // middle of a dictated number ("506 to 7455"): only between digits.
            if let Some(d) = homophone_digit(t.text) {
                if digit_neighbour(toks, i, false) && digit_neighbour(toks, i, true) {
                    return Some(atom(i, vec![d], false));
                }
            }
            let times = if t.is_word("double") {
                2
            } else if t.is_word("triple") {
                3
            } else {
                return None;
            };
            let n = toks.get(i + 1).filter(|_| !covered[i + 1])?;
            let d = match n.kind {
                TokKind::Word => digit_word(n.text)?,
                TokKind::Digits if n.text.len() == 1 => n.text.as_bytes()[0] - b'0',
                _ => return None,
            };
            Some(atom(i + 1, vec![d; times], false))
        }
        _ => None,
    }
}

fn find_digit_runs(text: &str, toks: &[Token<'_>], spans: &mut Vec<PiiSpan>) {
    let covered: Vec<bool> = toks
        .iter()
        .map(|t| overlaps(spans, t.start, t.end))
        .collect();
    let mut found = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        let Some(first) = parse_atom(toks, &covered, i) else {
            i += 1;
            continue;
        };
        let mut next = first.last + 1;
        let mut chain = vec![first];
        loop {
            let mut k = next;
            let mut seps = Vec::new();
            while seps.len() < 3 && k < toks.len() && !covered[k] && is_separator(&toks[k]) {
                seps.push(k);
                k += 1;
            }
            match parse_atom(toks, &covered, k) {
                Some(mut a) => {
                    a.seps = seps;
                    next = a.last + 1;
                    chain.push(a);
                }
                None => break,
            }
        }
        i = next;
        trim_interjection(toks, &mut chain);
        let whole: Vec<u8> = chain
            .iter()
            .flat_map(|a| a.digits.iter().copied())
            .collect();
        if is_card(&whole) {
            emit_piece(text, toks, &chain, &mut found);
        } else {
            let mut from = 0;
            for k in 1..=chain.len() {
                if k == chain.len() || breaks_before(toks, &chain, k) {
                    emit_piece(text, toks, &chain[from..k], &mut found);
                    from = k;
                }
            }
        }
    }
    // Letters mixed with 6 or more digits ("ABC123456"): a reference.
    for (t, &c) in toks.iter().zip(&covered) {
        let digits = t.text.bytes().filter(u8::is_ascii_digit).count();
        if t.kind == TokKind::Mixed && !c && digits >= 6 {
            found.push(PiiSpan {
                kind: PiiKind::AccountNumber,
                start: t.start,
                end: t.end,
            });
        }
    }
    spans.extend(found);
}

/// Drops an "oh" interjection from the edges of a run: a leading "Oh,"
/// ("Oh, 555 1234") or an "oh" after a pause at the end ("555-867-5309.
/// Oh, and ...").
fn trim_interjection(toks: &[Token<'_>], chain: &mut Vec<Atom>) {
    let is_oh = |a: &Atom| a.first == a.last && toks[a.first].is_word_in(&["oh", "o"]);
    let pause = |a: &Atom| {
        a.seps
            .iter()
            .any(|&s| matches!(toks[s].kind, TokKind::Punct(',' | '.')))
    };
    if chain.len() >= 2 {
        let t = toks[chain[0].first].text;
        if (t == "Oh" || t == "O") && pause(&chain[1]) {
            chain.remove(0);
            chain[0].seps.clear();
        }
    }
    if chain.len() >= 2 {
        let last = &chain[chain.len() - 1];
        if is_oh(last) && pause(last) {
            chain.pop();
        }
    }
}

fn is_card(digits: &[u8]) -> bool {
    (13..=19).contains(&digits.len()) && luhn_ok(digits)
}

/// Luhn (mod 10) check over a digit sequence.
fn luhn_ok(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    for (i, &d) in digits.iter().rev().enumerate() {
        let mut v = u32::from(d);
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum.is_multiple_of(10)
}

fn is_year(a: &Atom) -> bool {
    a.written && a.digits.len() == 4 && {
        let y = a
            .digits
            .iter()
            .fold(0u32, |acc, &d| acc * 10 + u32::from(d));
        (1900..=2099).contains(&y)
    }
}

/// Whether the run should be cut between atoms `k - 1` and `k`: a pause
/// (", " or ". ") next to a short written number or a year usually ends one
/// quantity and starts another ("since 2019, 15 times").
///
/// Digits dictated one by one ("5 5 5, 1 2 3") count as one group, so they
/// are not short.
fn breaks_before(toks: &[Token<'_>], chain: &[Atom], k: usize) -> bool {
    let (a, b) = (&chain[k - 1], &chain[k]);
    if !(a.written && b.written) {
        return false;
    }
    if b.seps.is_empty() {
        return is_year(a) && is_year(b);
    }
    let soft = b.seps.len() == 1
        && matches!(toks[b.seps[0]].kind, TokKind::Punct(',' | '.'))
        && toks[b.first].space_before;
    let joined =
        |x: usize, y: usize| chain[y].seps.is_empty() && dictated(&chain[x]) && dictated(&chain[y]);
    let mut j = k - 1;
    let mut left = a.digits.len();
    while j > 0 && joined(j - 1, j) {
        j -= 1;
        left += chain[j].digits.len();
    }
    let mut j = k;
    let mut right = b.digits.len();
    while j + 1 < chain.len() && joined(j, j + 1) {
        j += 1;
        right += chain[j].digits.len();
    }
    soft && (left <= 2 || right <= 2 || is_year(a) || is_year(b))
}

/// Spoken digits and single written digits are dictated digit by digit.
fn dictated(a: &Atom) -> bool {
    !a.written || a.digits.len() == 1
}

/// What nearby words say a number is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Context {
    Phone,
    Account,
    Card,
    Ssn,
}

const PHONE_WORDS: &[&str] = &[
    "phone",
    "telephone",
    "mobile",
    "cell",
    "cellphone",
    "landline",
    "call",
    "calling",
    "reach",
    "ring",
    "text",
    "fax",
    "dial",
    "contact",
    "whatsapp",
    "extension",
];
const ACCOUNT_WORDS: &[&str] = &[
    "account",
    "acct",
    "reference",
    "ref",
    "order",
    "policy",
    "customer",
    "member",
    "membership",
    "invoice",
    "ticket",
    "case",
    "tracking",
    "confirmation",
    "routing",
    "sort",
    "pin",
    "id",
    "bank",
    "claim",
    "booking",
    "reservation",
    "serial",
    "license",
    "licence",
    "passport",
];
const CARD_WORDS: &[&str] = &["card", "visa", "mastercard", "amex", "credit", "debit"];
const SSN_WORDS: &[&str] = &["social", "ssn", "security"];

const UNIT_WORDS: &[&str] = &[
    "dollars", "dollar", "bucks", "pounds", "pound", "euros", "euro", "cents", "pence", "percent",
    "usd", "eur", "gbp", "points", "miles", "minutes", "seconds", "hours", "days", "times",
    "people", "thousand", "million", "billion",
];

/// The keyword class of a word, ignoring a possessive "'s" ("account's").
fn context_of(t: &Token<'_>) -> Option<Context> {
    if t.kind != TokKind::Word {
        return None;
    }
    let w = t
        .text
        .strip_suffix("'s")
        .or_else(|| t.text.strip_suffix("\u{2019}s"))
        .unwrap_or(t.text);
    let is_in = |list: &[&str]| list.iter().any(|k| w.eq_ignore_ascii_case(k));
    if is_in(SSN_WORDS) {
        Some(Context::Ssn)
    } else if is_in(CARD_WORDS) {
        Some(Context::Card)
    } else if is_in(ACCOUNT_WORDS) {
        Some(Context::Account)
    } else if is_in(PHONE_WORDS) {
        Some(Context::Phone)
    } else {
        None
    }
}

/// The nearest keyword within eight words before the run, or failing
/// that within four words after it.
fn context(toks: &[Token<'_>], first: usize, last: usize) -> Option<Context> {
    let before = toks[..first]
        .iter()
        .rev()
        .filter(|t| t.kind == TokKind::Word)
        .take(8);
    let after = toks[last + 1..]
        .iter()
        .filter(|t| t.kind == TokKind::Word)
        .take(4);
    before
        .filter_map(context_of)
        .next()
        .or_else(|| after.filter_map(context_of).next())
}

/// A written number with thousands separators ("1,250,000", "12.500,00")
/// or a decimal ("12345.67").
fn looks_like_amount(toks: &[Token<'_>], piece: &[Atom]) -> bool {
    if piece.len() < 2 || piece.iter().any(|a| !a.written) {
        return false;
    }
    let mut seps = Vec::new();
    for a in &piece[1..] {
        if a.seps.len() != 1 || toks[a.first].space_before || toks[a.seps[0]].space_before {
            return false;
        }
        match toks[a.seps[0]].kind {
            TokKind::Punct(c @ (',' | '.')) => seps.push(c),
            _ => return false,
        }
    }
    let lens: Vec<usize> = piece.iter().map(|a| a.digits.len()).collect();
    let last = lens.len() - 1;
    let decimal = lens[last] <= 2 && (last == 1 || seps[last - 1] != seps[0]);
    let grouped_end = if decimal { last } else { lens.len() };
    if decimal && grouped_end == 1 {
        return true;
    }
    (1..=3).contains(&lens[0])
        && lens[1..grouped_end].iter().all(|&l| l == 3)
        && seps[..grouped_end - 1].iter().all(|&c| c == seps[0])
}

/// A written date: Y-M-D or D-M-Y / M-D-Y with `-` or `.` between parts.
fn looks_like_date(toks: &[Token<'_>], piece: &[Atom]) -> bool {
    if piece.len() != 3 || piece.iter().any(|a| !a.written) {
        return false;
    }
    let plain = piece[1..].iter().all(|a| {
        a.seps.len() == 1 && matches!(toks[a.seps[0]].kind, TokKind::Punct('-' | '.' | '\u{2013}'))
    });
    let val = |a: &Atom| {
        a.digits
            .iter()
            .fold(0u32, |acc, &d| acc * 10 + u32::from(d))
    };
    let (l0, l1, l2) = (
        piece[0].digits.len(),
        piece[1].digits.len(),
        piece[2].digits.len(),
    );
    let (v0, v1, v2) = (val(&piece[0]), val(&piece[1]), val(&piece[2]));
    let day = |v: u32| (1..=31).contains(&v);
    let month = |v: u32| (1..=12).contains(&v);
    let ymd = is_year(&piece[0]) && l1 <= 2 && l2 <= 2 && month(v1) && day(v2);
    let dmy = l0 <= 2
        && l1 <= 2
        && (is_year(&piece[2]) || l2 == 2)
        && day(v0)
        && day(v1)
        && (month(v0) || month(v1));
    plain && (ymd || dmy)
}

fn emit_piece(text: &str, toks: &[Token<'_>], piece: &[Atom], out: &mut Vec<PiiSpan>) {
    let digits: Vec<u8> = piece
        .iter()
        .flat_map(|a| a.digits.iter().copied())
        .collect();
    if digits.len() < 6 {
        return;
    }
    let (first, last) = (piece[0].first, piece[piece.len() - 1].last);
    let mut start_tok = first;
    let mut plus = false;
    if first >= 1 {
        let p = &toks[first - 1];
        if (p.kind == TokKind::Punct('+') && !toks[first].space_before) || p.is_word("plus") {
            plus = true;
            start_tok = first - 1;
        }
    }
    let has_close = piece
        .iter()
        .flat_map(|a| a.seps.iter())
        .any(|&s| toks[s].kind == TokKind::Punct(')'));
    if has_close && start_tok >= 1 && toks[start_tok - 1].kind == TokKind::Punct('(') {
        start_tok -= 1;
    }
    let card = is_card(&digits);
    let ctx = context(toks, first, last);
    if !card {
        let currency_before = text[..toks[start_tok].start]
            .chars()
            .next_back()
            .is_some_and(|c| matches!(c, '$' | '\u{a3}' | '\u{20ac}' | '\u{a5}'));
        let unit_after = toks
            .get(last + 1)
            .is_some_and(|t| t.is_word_in(UNIT_WORDS) || t.kind == TokKind::Punct('%'));
        let id_context = matches!(ctx, Some(Context::Account | Context::Card | Context::Ssn));
        if currency_before
            || unit_after
            || looks_like_amount(toks, piece)
            || (!id_context && looks_like_date(toks, piece))
        {
            return;
        }
    }
    let groups = group_lengths(piece);
    let kind = classify(&digits, &groups, plus, ctx);
    out.push(PiiSpan {
        kind,
        start: toks[start_tok].start,
        end: toks[last].end,
    });
}

/// Lengths of the digit groups: a new group starts at every separator, at
/// every written number of two or more digits, and where dictated digits
/// meet such a number.
fn group_lengths(piece: &[Atom]) -> Vec<usize> {
    let mut groups: Vec<usize> = Vec::new();
    for (k, a) in piece.iter().enumerate() {
        let joins = k > 0 && a.seps.is_empty() && dictated(a) && dictated(&piece[k - 1]);
        match groups.last_mut() {
            Some(g) if joins => *g += a.digits.len(),
            _ => groups.push(a.digits.len()),
        }
    }
    groups
}

fn classify(digits: &[u8], groups: &[usize], plus: bool, ctx: Option<Context>) -> PiiKind {
    let n = digits.len();
    let phone_len = (7..=15).contains(&n);
    if n == 9 && (groups == [3, 2, 4] || ctx == Some(Context::Ssn)) {
        PiiKind::Ssn
    } else if plus && phone_len {
        PiiKind::PhoneNumber
    } else if is_card(digits) {
        PiiKind::CardNumber
    } else if phone_len && matches!(ctx, None | Some(Context::Phone)) {
        PiiKind::PhoneNumber
    } else {
        PiiKind::AccountNumber
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (kind, covered text) for each span found in `text`.
    fn found(text: &str) -> Vec<(PiiKind, &str)> {
        find(text)
            .into_iter()
            .map(|s| (s.kind, &text[s.range()]))
            .collect()
    }

    fn red(text: &str) -> String {
        redact(text).0
    }

    #[test]
    fn tags_and_names() {
        let tags: Vec<&str> = PiiKind::ALL.iter().map(|k| k.tag()).collect();
        assert_eq!(
            tags,
            [
                "[CARD_NUMBER]",
                "[PHONE_NUMBER]",
                "[EMAIL]",
                "[SSN]",
                "[IBAN]",
                "[ACCOUNT_NUMBER]"
            ]
        );
        let names: Vec<&str> = PiiKind::ALL.iter().map(|k| k.name()).collect();
        assert_eq!(
            names,
            [
                "card_number",
                "phone_number",
                "email",
                "ssn",
                "iban",
                "account_number"
            ]
        );
        assert_eq!(PiiKind::Ssn.to_string(), "ssn");
    }

    #[test]
    fn card_in_digits() {
        let t = "my card is 4111 1111 1111 1111 thanks";
        assert_eq!(found(t), [(PiiKind::CardNumber, "4111 1111 1111 1111")]);
        assert_eq!(red(t), "my card is [CARD_NUMBER] thanks");
        assert_eq!(red("card 4111-1111-1111-1111."), "card [CARD_NUMBER].");
        assert_eq!(red("it's 4111111111111111"), "it's [CARD_NUMBER]");
        // Amex, 15 digits.
        assert_eq!(red("amex 3782 822463 10005 ok"), "amex [CARD_NUMBER] ok");
    }

    #[test]
    fn card_in_words_with_commas() {
        let t = "it's four one one one, one one one one, one one one one, one one one one";
        assert_eq!(
            found(t),
            [(
                PiiKind::CardNumber,
                "four one one one, one one one one, one one one one, one one one one"
            )]
        );
        assert_eq!(red(t), "it's [CARD_NUMBER]");
        assert_eq!(
            red("Four one one one. One one one one. One one one one. One one one one. Thanks."),
            "[CARD_NUMBER]. Thanks."
        );
    }

    #[test]
    fn a_glued_address_after_email_is() {
        assert_eq!(
            red("My email is jon.smithatgmail.com"),
            "My email is [EMAIL]"
        );
        assert_eq!(red("My email is fine."), "My email is fine.");
    }

    #[test]
    fn digit_homophones_inside_a_number() {
        // The recogniser heard "two" as "to" inside a card number.
        assert_eq!(
            red("It is 492 9, 3813, 506 to 7455."),
            "It is [CARD_NUMBER]."
        );
        // Outside a number they stay words.
        assert_eq!(
            red("I talked to 3 people for 20 minutes"),
            "I talked to 3 people for 20 minutes"
        );
    }

    #[test]
    fn card_mixed_digits_and_words() {
        let t = "it's 4111-1111 one one one one, 1111 please";
        assert_eq!(
            found(t),
            [(PiiKind::CardNumber, "4111-1111 one one one one, 1111")]
        );
        assert_eq!(
            red("4111 1111 one one one one double one double one ok"),
            "[CARD_NUMBER] ok"
        );
    }

    #[test]
    fn luhn_failure_is_account_number() {
        assert!(luhn_ok(&[4, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]));
        assert!(!luhn_ok(&[4, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2]));
        let t = "my card is 4111 1111 1111 1112 ok";
        assert_eq!(found(t), [(PiiKind::AccountNumber, "4111 1111 1111 1112")]);
        assert_eq!(
            red("the number 8273 1934 5502 6617"),
            "the number [ACCOUNT_NUMBER]"
        );
    }

    #[test]
    fn phone_in_digits() {
        assert_eq!(
            found("call me on 07700 900123 please"),
            [(PiiKind::PhoneNumber, "07700 900123")]
        );
        assert_eq!(
            found("my number is +44 20 7946 0958."),
            [(PiiKind::PhoneNumber, "+44 20 7946 0958")]
        );
        assert_eq!(
            found("it's (555) 123-4567 ok"),
            [(PiiKind::PhoneNumber, "(555) 123-4567")]
        );
        assert_eq!(red("try 555-1234"), "try [PHONE_NUMBER]");
        assert_eq!(red("plus one 415 555 0132"), "[PHONE_NUMBER]");
    }

    #[test]
    fn phone_in_words_with_double_and_triple() {
        let t = "call me back on oh seven seven zero zero nine double one two three four";
        assert_eq!(
            found(t),
            [(
                PiiKind::PhoneNumber,
                "oh seven seven zero zero nine double one two three four"
            )]
        );
        assert_eq!(red(t), "call me back on [PHONE_NUMBER]");
        assert_eq!(
            red("it's o two o, triple seven, double five one two. Bye"),
            "it's [PHONE_NUMBER]. Bye"
        );
        assert_eq!(
            red("call 555 double 1 two three four"),
            "call [PHONE_NUMBER]"
        );
    }

    #[test]
    fn email_written_and_spoken() {
        assert_eq!(
            found("my email is john.smith@example.com."),
            [(PiiKind::Email, "john.smith@example.com")]
        );
        assert_eq!(
            red("mail jane_doe+cs@mail.example.co.uk now"),
            "mail [EMAIL] now"
        );
        let t = "my email is john dot smith at example dot com thanks";
        assert_eq!(
            found(t),
            [(PiiKind::Email, "john dot smith at example dot com")]
        );
        assert_eq!(red(t), "my email is [EMAIL] thanks");
        assert_eq!(
            red("it's jsmith one two three at gmail dot com"),
            "it's [EMAIL]"
        );
        assert_eq!(
            red("contact me at john underscore doe at my-company dot co dot uk"),
            "contact me at [EMAIL]"
        );
        assert_eq!(
            red("write to john.smith at example.com"),
            "write to [EMAIL]"
        );
        // "at" without a domain is just a word.
        let plain = "I'll be at home at five, I work at the office dot";
        assert_eq!(found(plain), []);
        assert_eq!(found("look at example dot com"), []);
    }

    #[test]
    fn ssn_in_digits_and_words() {
        assert_eq!(
            found("my ssn is 123-45-6789."),
            [(PiiKind::Ssn, "123-45-6789")]
        );
        let t = "my social is one two three dash four five dash six seven eight nine";
        assert_eq!(
            found(t),
            [(
                PiiKind::Ssn,
                "one two three dash four five dash six seven eight nine"
            )]
        );
        assert_eq!(red(t), "my social is [SSN]");
        assert_eq!(red("social security 123456789"), "social security [SSN]");
        assert_eq!(red("it is 123 45 6789 ok"), "it is [SSN] ok");
    }

    #[test]
    fn iban_spaced_and_compact() {
        let t = "my IBAN is GB82 WEST 1234 5698 7654 32 OK thanks";
        assert_eq!(found(t), [(PiiKind::Iban, "GB82 WEST 1234 5698 7654 32")]);
        assert_eq!(red("iban DE89370400440532013000."), "iban [IBAN].");
        assert_eq!(
            red("lowercase de89 3704 0044 0532 0130 00 here"),
            "lowercase [IBAN] here"
        );
        // Bad checksum, but the shape is right: still an IBAN.
        assert_eq!(red("it's FR12 3456 7890 1234 5678 901"), "it's [IBAN]");
        assert!(iban_checksum_ok("GB82", "WEST12345698765432"));
        assert!(!iban_checksum_ok("GB83", "WEST12345698765432"));
    }

    #[test]
    fn account_numbers() {
        assert_eq!(
            found("account number 12345678"),
            [(PiiKind::AccountNumber, "12345678")]
        );
        assert_eq!(
            red("my order is one two three four five six"),
            "my order is [ACCOUNT_NUMBER]"
        );
        assert_eq!(red("ref 987654 please"), "ref [ACCOUNT_NUMBER] please");
        assert_eq!(
            red("the code is 12345678901234567890123"),
            "the code is [ACCOUNT_NUMBER]"
        );
    }

    #[test]
    fn two_entities_in_one_sentence() {
        let t = "my card number is 4111 1111 1111 1111 and my email is john.smith@example.com";
        let spans = find(t);
        assert_eq!(spans.len(), 2);
        assert_eq!(spans[0].kind, PiiKind::CardNumber);
        assert_eq!(&t[spans[0].range()], "4111 1111 1111 1111");
        assert_eq!(spans[1].kind, PiiKind::Email);
        assert_eq!(&t[spans[1].range()], "john.smith@example.com");
        let (out, rs) = redact(t);
        assert_eq!(
            out,
            "my card number is [CARD_NUMBER] and my email is [EMAIL]"
        );
        assert_eq!(rs, spans);

        let t = "account 12345678, and call me on 555 0123 456";
        assert_eq!(
            red(t),
            "account [ACCOUNT_NUMBER], and call me on [PHONE_NUMBER]"
        );
    }

    #[test]
    fn amounts_years_times_not_redacted() {
        for t in [
            "I paid 20 dollars 3 days ago",
            "back in 2024 it cost 150",
            "call me at 10:30 or 11:45 tomorrow",
            "since 2019, 15 times",
            "it was 2023, 2024 and 2025",
            "in 2019 2020 we paid",
            "the bill was $1,250,000",
            "that's 1,250,000 people",
            "it was 12345.67",
            "a balance of 12.500,00",
            "on 2024-01-15 at 3",
            "on 15.01.2024 we spoke",
            "up 1234567 percent",
            "twelve thousand and ten, eleven, twenty one",
            "one two three ten four five six",
            "I have two or three, maybe four cards",
            "it's five o'clock",
            "pay $1234567 now",
        ] {
            assert_eq!(found(t), [], "{t}");
            assert_eq!(red(t), t);
        }
    }

    #[test]
    fn separator_words_and_zero_forms() {
        assert_eq!(
            red("it's five five five dash one two three four"),
            "it's [PHONE_NUMBER]"
        );
        assert_eq!(
            red("six space seven hyphen eight, nine. o oh zero ok"),
            "[PHONE_NUMBER] ok"
        );
        // Other words break a run.
        assert_eq!(
            red("one two three and four five six"),
            "one two three and four five six"
        );
        // A sentence-initial "Oh," is an interjection.
        assert_eq!(
            found("Oh, 555 1234 is mine"),
            [(PiiKind::PhoneNumber, "555 1234")]
        );
    }

    #[test]
    fn dictated_digits_references_and_context() {
        // Whisper often writes dictated digits one by one.
        assert_eq!(
            found("Yeah, it's 5 5 5, 1 2 3, 4 5 6 7."),
            [(PiiKind::PhoneNumber, "5 5 5, 1 2 3, 4 5 6 7")]
        );
        assert_eq!(red("it's 1 2 3 - 4 5 - 6 7 8 9"), "it's [SSN]");
        // An "Oh" after the number is an interjection, not a zero.
        assert_eq!(
            red("My number is 555-867-5309. Oh, and my email is j.doe@acme.org."),
            "My number is [PHONE_NUMBER]. Oh, and my email is [EMAIL]."
        );
        // Letters glued to 6+ digits.
        assert_eq!(
            found("the reference is ABC123456 ok"),
            [(PiiKind::AccountNumber, "ABC123456")]
        );
        assert_eq!(found("my postcode is SW1A 1AA, COVID19"), []);
        // A spelled-out local part.
        assert_eq!(
            found("my email is j o h n one two at gmail dot com"),
            [(PiiKind::Email, "j o h n one two at gmail dot com")]
        );
        // Keywords decide between phone and account; a possessive counts.
        assert_eq!(
            red("my account's 12345678 and then 20, 30, 40 dollars"),
            "my account's [ACCOUNT_NUMBER] and then 20, 30, 40 dollars"
        );
        assert_eq!(red("my mobile is 123456789"), "my mobile is [PHONE_NUMBER]");
        assert_eq!(
            red("12345678 is my policy"),
            "[ACCOUNT_NUMBER] is my policy"
        );
    }

    #[test]
    fn byte_offsets_with_multibyte_text() {
        let t = "café ☕ — naïve: 4111 1111 1111 1111 ünd mail josé@exämple.com";
        let spans = find(t);
        assert_eq!(spans[0].kind, PiiKind::CardNumber);
        let start = t.find("4111").unwrap();
        assert_eq!((spans[0].start, spans[0].end), (start, start + 19));
        assert_eq!(&t[spans[0].range()], "4111 1111 1111 1111");
        let (out, _) = redact(t);
        assert!(
            out.starts_with("café ☕ — naïve: [CARD_NUMBER] ünd"),
            "{out}"
        );
        // Every span lies on char boundaries.
        for s in &spans {
            assert!(t.is_char_boundary(s.start) && t.is_char_boundary(s.end));
        }
        let t = "Ünïcödé → one two three dash four five dash six seven eight nine";
        let s = find(t)[0];
        assert_eq!(s.start, t.find("one").unwrap());
        assert_eq!(s.end, t.len());
        let t = "café josé@exämple.com";
        assert_eq!(found(t), [(PiiKind::Email, "josé@exämple.com")]);
        assert_eq!(red(t), "café [EMAIL]");
    }

    #[test]
    fn spans_refer_to_original_and_are_sorted() {
        let t = "a 4111 1111 1111 1111 b john@x.io c 555 1234 d 123-45-6789";
        let (out, spans) = redact(t);
        assert_eq!(out, "a [CARD_NUMBER] b [EMAIL] c [PHONE_NUMBER] d [SSN]");
        for w in spans.windows(2) {
            assert!(w[0].end <= w[1].start);
        }
        let texts: Vec<&str> = spans.iter().map(|s| &t[s.range()]).collect();
        assert_eq!(
            texts,
            [
                "4111 1111 1111 1111",
                "john@x.io",
                "555 1234",
                "123-45-6789"
            ]
        );
    }

    #[test]
    fn redact_words_alignment() {
        let words = [
            "my", "card", "is", "four", "one", "one", "one,", "1111", "1111", "1111.", "Email",
            "john", "dot", "smith", "at", "example", "dot", "com,", "thanks",
        ];
        let marks = redact_words(&words);
        assert_eq!(marks.len(), words.len());
        let card = Some(PiiKind::CardNumber);
        let mail = Some(PiiKind::Email);
        assert_eq!(
            marks,
            [
                None, None, None, card, card, card, card, card, card, card, None, mail, mail, mail,
                mail, mail, mail, mail, None
            ]
        );
        assert_eq!(redact_words(&[]), []);
        assert_eq!(redact_words(&["", "20", "dollars"]), [None, None, None]);
        let w = ["+44", "7700", "900123"];
        assert_eq!(redact_words(&w), [Some(PiiKind::PhoneNumber); 3]);
    }

    #[test]
    fn idempotent() {
        for t in [
            "my card number is 4111 1111 1111 1111 and my email is john.smith@example.com",
            "it's four one one one, one one one one, one one one one, one one one one",
            "call me back on oh seven seven zero zero nine double one two three four",
            "my social is one two three dash four five dash six seven eight nine",
            "my IBAN is GB82 WEST 1234 5698 7654 32 and account 12345678",
            "john dot smith at example dot com, +44 20 7946 0958",
            "[CARD_NUMBER] [PHONE_NUMBER] [EMAIL] [SSN] [IBAN] [ACCOUNT_NUMBER]",
        ] {
            let once = red(t);
            assert_eq!(red(&once), once, "{t}");
            assert_eq!(find(&once), [], "{once}");
            assert_eq!(once == t, t.starts_with('['), "{t}");
        }
        assert_eq!(found("[CARD_NUMBER] and [EMAIL]"), []);
    }

    #[test]
    fn empty_and_plain_text() {
        assert_eq!(find(""), []);
        assert_eq!(red(""), "");
        assert_eq!(
            red("hello, how can I help you today?"),
            "hello, how can I help you today?"
        );
    }
}
