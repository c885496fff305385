//! E-mail addresses, written (`local@domain.tld`) and spoken ("john dot smith at example dot com").

use super::*;

pub(super) fn is_local_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '.' | '_' | '%' | '+' | '-')
}

pub(super) fn is_domain_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '.' | '-')
}

pub(super) fn find_written_emails(text: &str, spans: &mut Vec<PiiSpan>) {
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
pub(super) fn find_cued_addresses(text: &str, spans: &mut Vec<PiiSpan>) {
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

/// Top-level domains accepted after a spoken "dot".
pub(super) const SPOKEN_TLDS: &[&str] = &[
    "com", "net", "org", "edu", "gov", "mil", "int", "io", "co", "uk", "us", "ca", "au", "de",
    "fr", "es", "it", "nl", "be", "ch", "ie", "nz", "in", "info", "biz", "me", "ai", "app", "dev",
    "tv", "eu", "se", "no", "dk", "fi", "pl", "br", "mx", "jp", "cn", "za", "sg", "hk", "online",
];

/// Words that cannot be a whole local part ("reach me at ...").
pub(super) const LOCAL_STOPWORDS: &[&str] = &[
    "a", "an", "the", "is", "was", "be", "am", "are", "me", "us", "you", "him", "her", "them",
    "it", "i", "we", "they", "my", "your", "our", "their", "his", "its", "email", "mail",
    "address", "at", "to", "from", "and", "or", "there", "here", "that", "this", "reach", "call",
    "contact", "send", "home", "work", "office", "look", "only", "back", "out", "up", "dot",
];

pub(super) fn is_label(t: &Token<'_>) -> bool {
    match t.kind {
        TokKind::Word => !t.text.contains(is_apostrophe) && !t.is_word("at") && !t.is_word("dot"),
        TokKind::Digits | TokKind::Mixed => true,
        TokKind::Punct(_) => false,
    }
}

/// A "dot" between labels: the word, or a `.` with no space around it.
pub(super) fn is_dot_connector(toks: &[Token<'_>], i: usize) -> bool {
    let t = &toks[i];
    t.is_word("dot")
        || (t.kind == TokKind::Punct('.')
            && !t.space_before
            && toks.get(i + 1).is_some_and(|n| !n.space_before))
}

/// A hyphen inside a label: the words, or a `-` with no space around it.
pub(super) fn is_hyphen_connector(toks: &[Token<'_>], i: usize) -> bool {
    let t = &toks[i];
    t.is_word_in(&["dash", "hyphen"])
        || (t.kind == TokKind::Punct('-')
            && !t.space_before
            && toks.get(i + 1).is_some_and(|n| !n.space_before))
}

pub(super) fn is_underscore_connector(toks: &[Token<'_>], i: usize) -> bool {
    let t = &toks[i];
    t.is_word("underscore")
        || (t.kind == TokKind::Punct('_')
            && !t.space_before
            && toks.get(i + 1).is_some_and(|n| !n.space_before))
}

pub(super) fn find_spoken_emails(toks: &[Token<'_>], spans: &mut Vec<PiiSpan>) {
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
pub(super) fn spoken_domain_end(toks: &[Token<'_>], first: usize) -> Option<usize> {
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
pub(super) fn is_spelled(t: &Token<'_>) -> bool {
    match t.kind {
        TokKind::Digits => true,
        TokKind::Word => digit_word(t.text).is_some() || t.text.chars().count() == 1,
        _ => false,
    }
}

/// Index of the token starting the local part that ends at `last`.
pub(super) fn spoken_local_start(toks: &[Token<'_>], last: usize) -> Option<usize> {
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
