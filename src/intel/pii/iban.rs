//! IBANs, ended where the mod-97 checksum holds.

use super::*;

/// ISO 13616 check: move the first four characters to the end, map letters
/// to 10..=35 and take the whole number mod 97; valid IBANs give 1.
pub(super) fn iban_checksum_ok(country_and_check: &str, bban: &str) -> bool {
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

pub(super) fn find_ibans(text: &str, spans: &mut Vec<PiiSpan>) {
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
pub(super) fn glued_before(text: &str, p: usize) -> bool {
    let mut before = text[..p].chars().rev();
    match before.next() {
        Some(c) if is_apostrophe(c) => before.next().is_some_and(char::is_alphanumeric),
        Some(c) => c.is_alphanumeric(),
        None => false,
    }
}

/// End offset of the IBAN whose country code starts at byte `p`, if any.
pub(super) fn iban_end(text: &str, p: usize) -> Option<usize> {
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
