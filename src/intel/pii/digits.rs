//! Digit runs (digits, spoken digit words or both) classified as card, SSN, phone or account numbers.

use super::*;

/// The digit a single spoken word stands for, if it is a digit word.
pub(super) fn digit_word(w: &str) -> Option<u8> {
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
pub(super) fn homophone_digit(w: &str) -> Option<u8> {
    const WORDS: [(&str, u8); 4] = [("to", 2), ("too", 2), ("for", 4), ("won", 1)];
    WORDS
        .iter()
        .find(|(s, _)| w.eq_ignore_ascii_case(s))
        .map(|&(_, d)| d)
}

/// Is the nearest token before (or after) `i`, skipping separators, a digit?
pub(super) fn digit_neighbour(toks: &[Token<'_>], i: usize, after: bool) -> bool {
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
pub(super) fn is_separator(t: &Token<'_>) -> bool {
    match t.kind {
        TokKind::Punct(c) => matches!(c, ',' | '.' | '-' | '\u{2013}' | '\u{2014}' | '(' | ')'),
        TokKind::Word => t.is_word_in(&["dash", "hyphen", "space"]),
        _ => false,
    }
}

/// One digit-bearing element of a run.
#[derive(Debug, Clone)]
pub(super) struct Atom {
    /// First and last token index of the atom ("double one" has two).
    pub(super) first: usize,
    pub(super) last: usize,
    pub(super) digits: Vec<u8>,
    /// Written as digits (as opposed to spoken words).
    pub(super) written: bool,
    /// Separator tokens between the previous atom and this one.
    pub(super) seps: Vec<usize>,
}

pub(super) fn parse_atom(toks: &[Token<'_>], covered: &[bool], i: usize) -> Option<Atom> {
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

pub(super) fn find_digit_runs(text: &str, toks: &[Token<'_>], spans: &mut Vec<PiiSpan>) {
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
pub(super) fn trim_interjection(toks: &[Token<'_>], chain: &mut Vec<Atom>) {
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

pub(super) fn is_card(digits: &[u8]) -> bool {
    (13..=19).contains(&digits.len()) && luhn_ok(digits)
}

/// Luhn (mod 10) check over a digit sequence.
pub(super) fn luhn_ok(digits: &[u8]) -> bool {
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

pub(super) fn is_year(a: &Atom) -> bool {
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
pub(super) fn breaks_before(toks: &[Token<'_>], chain: &[Atom], k: usize) -> bool {
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
pub(super) fn dictated(a: &Atom) -> bool {
    !a.written || a.digits.len() == 1
}

/// What nearby words say a number is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Context {
    Phone,
    Account,
    Card,
    Ssn,
}

pub(super) const PHONE_WORDS: &[&str] = &[
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
pub(super) const ACCOUNT_WORDS: &[&str] = &[
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
pub(super) const CARD_WORDS: &[&str] = &["card", "visa", "mastercard", "amex", "credit", "debit"];
pub(super) const SSN_WORDS: &[&str] = &["social", "ssn", "security"];

pub(super) const UNIT_WORDS: &[&str] = &[
    "dollars", "dollar", "bucks", "pounds", "pound", "euros", "euro", "cents", "pence", "percent",
    "usd", "eur", "gbp", "points", "miles", "minutes", "seconds", "hours", "days", "times",
    "people", "thousand", "million", "billion",
];

/// The keyword class of a word, ignoring a possessive "'s" ("account's").
pub(super) fn context_of(t: &Token<'_>) -> Option<Context> {
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
pub(super) fn context(toks: &[Token<'_>], first: usize, last: usize) -> Option<Context> {
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
pub(super) fn looks_like_amount(toks: &[Token<'_>], piece: &[Atom]) -> bool {
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
pub(super) fn looks_like_date(toks: &[Token<'_>], piece: &[Atom]) -> bool {
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

pub(super) fn emit_piece(text: &str, toks: &[Token<'_>], piece: &[Atom], out: &mut Vec<PiiSpan>) {
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
pub(super) fn group_lengths(piece: &[Atom]) -> Vec<usize> {
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

pub(super) fn classify(
    digits: &[u8],
    groups: &[usize],
    plus: bool,
    ctx: Option<Context>,
) -> PiiKind {
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
