//! Tokens: words, digit groups, mixed words and punctuation, with offsets.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TokKind {
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
pub(super) struct Token<'a> {
    pub(super) kind: TokKind,
    pub(super) text: &'a str,
    pub(super) start: usize,
    pub(super) end: usize,
    /// Whether whitespace (or the start of the text) precedes the token.
    pub(super) space_before: bool,
}

impl Token<'_> {
    pub(super) fn is_word(&self, w: &str) -> bool {
        self.kind == TokKind::Word && self.text.eq_ignore_ascii_case(w)
    }

    pub(super) fn is_word_in(&self, list: &[&str]) -> bool {
        self.kind == TokKind::Word && list.iter().any(|w| self.text.eq_ignore_ascii_case(w))
    }
}

pub(super) fn is_apostrophe(c: char) -> bool {
    c == '\'' || c == '\u{2019}'
}

pub(super) fn tokenize(text: &str) -> Vec<Token<'_>> {
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
