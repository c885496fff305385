//! Splitting a turn's transcript into sentences and clauses, with character
//! offsets and, from the word timestamps, time spans.
//!
//! A turn like "thanks for the refund, but the router still doesn't work"
//! carries two judgements; each clause is scored on its own.

/// One clause of a transcript.
#[derive(Debug, Clone, PartialEq)]
pub struct Clause {
    /// Byte range in the transcript.
    pub bytes: (usize, usize),
    /// Character range in the transcript (Unicode scalar values).
    pub chars: (usize, usize),
    /// The clause text.
    pub text: String,
    /// Index range of the words it covers (first, one past last), when the
    /// words could be aligned.
    pub words: Option<(usize, usize)>,
}

/// Words that open a contrasting clause; the split falls before them.
const CONTRAST: [&str; 7] = [
    "but",
    "however",
    "although",
    "though",
    "yet",
    "except",
    "unfortunately",
];

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '\''
}

/// Byte ranges of the clauses of `text`: sentences end at `.`, `!`, `?` or
/// `;`; a sentence is split again before a contrastive connective ("but",
/// "however", ...) that follows a comma or starts a new clause. Clauses of
/// fewer than two words are merged into their neighbour.
pub fn clause_ranges(text: &str) -> Vec<(usize, usize)> {
    let mut cuts = vec![0usize];
    let bytes: Vec<(usize, char)> = text.char_indices().collect();
    let mut i = 0;
    while i < bytes.len() {
        let (b, c) = bytes[i];
        if matches!(c, '.' | '!' | '?' | ';') {
            // Not a decimal point (digit on both sides).
            let prev_digit = i > 0 && bytes[i - 1].1.is_ascii_digit();
            let next_digit = bytes.get(i + 1).is_some_and(|x| x.1.is_ascii_digit());
            if !(c == '.' && prev_digit && next_digit) {
                cuts.push(b + c.len_utf8());
            }
        } else if is_word_char(c) && (i == 0 || !is_word_char(bytes[i - 1].1)) {
            let end = bytes[i..]
                .iter()
                .find(|x| !is_word_char(x.1))
                .map(|x| x.0)
                .unwrap_or(text.len());
            let word = text[b..end].to_ascii_lowercase();
            if CONTRAST.contains(&word.as_str()) && b > 0 {
                // Split before the connective, after any comma before it.
                cuts.push(b);
            }
        }
        i += 1;
    }
    cuts.push(text.len());
    cuts.sort_unstable();
    cuts.dedup();
    let mut ranges: Vec<(usize, usize)> = Vec::new();
    for w in cuts.windows(2) {
        let (mut s, mut e) = (w[0], w[1]);
        while s < e && text[s..].starts_with(|c: char| c.is_whitespace() || c == ',') {
            s += text[s..].chars().next().map_or(1, char::len_utf8);
        }
        while e > s && text[..e].ends_with(|c: char| c.is_whitespace() || c == ',') {
            e -= text[..e].chars().next_back().map_or(1, char::len_utf8);
        }
        if s < e {
            ranges.push((s, e));
        }
    }
    // Merge one-word fragments ("Okay." "Right,") into the next clause
    // (or the previous one at the end).
    let words = |r: &(usize, usize)| {
        text[r.0..r.1]
            .split_whitespace()
            .filter(|w| w.chars().any(char::is_alphanumeric))
            .count()
    };
    let mut merged: Vec<(usize, usize)> = Vec::new();
    let mut pending: Option<(usize, usize)> = None;
    for r in ranges {
        let r = match pending.take() {
            Some(p) => (p.0, r.1),
            None => r,
        };
        if words(&r) < 2 {
            pending = Some(r);
            continue;
        }
        merged.push(r);
    }
    if let Some(p) = pending {
        match merged.last_mut() {
            Some(last) => last.1 = p.1,
            None => merged.push(p),
        }
    }
    merged.retain(|r| r.0 < r.1);
    merged
}

/// Locate each word in `text` (in order); returns its byte offset, or None
/// when a word cannot be found (then alignment stops for the rest).
pub fn align_words(text: &str, words: &[&str]) -> Vec<Option<usize>> {
    let mut out = Vec::with_capacity(words.len());
    let mut cursor = 0;
    let mut lost = false;
    for w in words {
        let w = w.trim();
        if lost || w.is_empty() {
            out.push(None);
            continue;
        }
        match text[cursor..].find(w) {
            Some(off) => {
                out.push(Some(cursor + off));
                cursor += off + w.len();
            }
            None => {
                lost = true;
                out.push(None);
            }
        }
    }
    out
}

/// Clauses of `text` with character offsets and the words each covers.
pub fn clauses(text: &str, words: &[&str]) -> Vec<Clause> {
    let starts = align_words(text, words);
    let char_index = |b: usize| text[..b].chars().count();
    clause_ranges(text)
        .into_iter()
        .map(|(s, e)| {
            let inside: Vec<usize> = starts
                .iter()
                .enumerate()
                .filter_map(|(i, o)| o.filter(|&o| o >= s && o < e).map(|_| i))
                .collect();
            Clause {
                bytes: (s, e),
                chars: (char_index(s), char_index(e)),
                text: text[s..e].to_string(),
                words: match (inside.first(), inside.last()) {
                    (Some(&a), Some(&b)) => Some((a, b + 1)),
                    _ => None,
                },
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(t: &str) -> Vec<String> {
        clause_ranges(t)
            .into_iter()
            .map(|(s, e)| t[s..e].to_string())
            .collect()
    }

    #[test]
    fn splits_sentences_and_contrasts() {
        assert_eq!(
            texts("Thanks for the refund, but the router still doesn't work."),
            vec![
                "Thanks for the refund",
                "but the router still doesn't work."
            ]
        );
        assert_eq!(
            texts("I waited an hour. Nobody called me back! Why?"),
            vec!["I waited an hour.", "Nobody called me back! Why?"]
        );
        assert_eq!(
            texts("It costs 4.50 a month"),
            vec!["It costs 4.50 a month"]
        );
        assert_eq!(texts(""), Vec::<String>::new());
        // A one-word sentence joins the next clause.
        assert_eq!(
            texts("Okay. The technician comes tomorrow."),
            vec!["Okay. The technician comes tomorrow."]
        );
    }

    #[test]
    fn clauses_carry_char_offsets_and_words() {
        let t = "Café was fine, but the bill is wrong.";
        let words = ["Café", "was", "fine,", "but", "the", "bill", "is", "wrong."];
        let c = clauses(t, &words);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].text, "Café was fine");
        assert_eq!(c[0].chars, (0, 13));
        assert_eq!(c[0].words, Some((0, 3)));
        assert_eq!(c[1].text, "but the bill is wrong.");
        assert_eq!(c[1].chars, (15, 37));
        assert_eq!(&t[c[1].bytes.0..c[1].bytes.1], c[1].text);
        assert_eq!(c[1].words, Some((3, 8)));
    }
}
