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

mod digits;
mod email;
mod iban;
#[cfg(test)]
mod tests;
mod tokens;

use digits::*;
use email::*;
use iban::*;
use tokens::*;

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

fn overlaps(spans: &[PiiSpan], start: usize, end: usize) -> bool {
    spans.iter().any(|s| s.start < end && start < s.end)
}
