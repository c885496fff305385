//! Word error rate: a text normaliser and a Levenshtein word alignment that
//! counts substitutions, deletions and insertions.
//!
//! Both sides go through [`normalise`] before they are aligned, so the score
//! does not depend on how a recogniser writes numbers, case, punctuation or
//! contractions. The rules, applied in this order:
//!
//! 1. Lower case; typographic apostrophes become `'`.
//! 2. Bracketed spans are dropped: `[laughter]`, `<unk>`, `(coughs)`.
//! 3. Hyphens, dashes and slashes split words (`mm-hm` → `mm hm`,
//!    `twenty-one` → `twenty one`).
//! 4. Numbers are spelled out: `42` → `forty two`, `1,000` → `one thousand`,
//!    `3.5` → `three point five`, `42%` → `forty two percent`, `$5` →
//!    `five dollars`; four-digit numbers from 1100 to 2099 except 2000–2009
//!    read as years (`1984` → `nineteen eighty four`, `1905` →
//!    `nineteen oh five`, `2024` → `twenty twenty four`); ordinals (`1st`,
//!    `22nd`, `100th`) → `first`, `twenty second`, `one hundred th`… spelled
//!    as ordinals.
//! 5. Contractions expand: `i'm` → `i am`, `don't` → `do not`,
//!    `won't` → `will not`, `can't`/`cannot` → `can not`, `'re` → `are`,
//!    `'ve` → `have`, `'ll` → `will`, `'d` → `would`, `it's`/`that's`/…
//!    → `it is`, `let's` → `let us`; `gonna` → `going to`, `wanna` →
//!    `want to`, `gotta` → `got to`, `yknow`/`y'know` → `you know`;
//!    `mr`/`mrs`/`dr` → `mister`/`missus`/`doctor`; `ok` → `okay`.
//! 6. Remaining punctuation is dropped (`john's` → `johns`).
//! 7. Fillers are dropped: `uh`, `um`, `uhm`, `er`, `erm`, `ah`, `eh`, `hm`,
//!    `hmm`, `mm`, `mhm`, `mmm`.

use serde::Serialize;

const ONES: [&str; 20] = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
];
const TENS: [&str; 10] = [
    "", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety",
];
const SCALES: [(u64, &str); 4] = [
    (1_000_000_000_000, "trillion"),
    (1_000_000_000, "billion"),
    (1_000_000, "million"),
    (1_000, "thousand"),
];

/// Words dropped on both sides.
pub const FILLERS: [&str; 12] = [
    "uh", "um", "uhm", "er", "erm", "ah", "eh", "hm", "hmm", "mm", "mhm", "mmm",
];

fn below_hundred(n: u64, out: &mut Vec<String>) {
    if n < 20 {
        out.push(ONES[n as usize].into());
    } else {
        out.push(TENS[(n / 10) as usize].into());
        if n % 10 != 0 {
            out.push(ONES[(n % 10) as usize].into());
        }
    }
}

fn below_thousand(n: u64, out: &mut Vec<String>) {
    if n >= 100 {
        out.push(ONES[(n / 100) as usize].into());
        out.push("hundred".into());
        if n % 100 != 0 {
            below_hundred(n % 100, out);
        }
    } else {
        below_hundred(n, out);
    }
}

/// A whole number in words: `1234` → `one thousand two hundred thirty four`.
pub fn cardinal(n: u64) -> Vec<String> {
    let mut out = Vec::new();
    if n == 0 {
        out.push("zero".into());
        return out;
    }
    let mut rest = n;
    for (scale, name) in SCALES {
        if rest >= scale {
            let head = rest / scale;
            if head >= 1000 {
                out.extend(cardinal(head));
            } else {
                below_thousand(head, &mut out);
            }
            out.push(name.into());
            rest %= scale;
        }
    }
    if rest > 0 {
        below_thousand(rest, &mut out);
    }
    out
}

/// A year as it is read: `1984` → `nineteen eighty four`, `1900` →
/// `nineteen hundred`, `1905` → `nineteen oh five`; other numbers as cardinals.
pub fn year(n: u64) -> Vec<String> {
    if !(1100..=2099).contains(&n) || (2000..=2009).contains(&n) {
        return cardinal(n);
    }
    let (hi, lo) = (n / 100, n % 100);
    let mut out = Vec::new();
    below_hundred(hi, &mut out);
    match lo {
        0 => out.push("hundred".into()),
        1..=9 => {
            out.push("oh".into());
            out.push(ONES[lo as usize].into());
        }
        _ => below_hundred(lo, &mut out),
    }
    out
}

fn ordinal_word(w: &str) -> String {
    match w {
        "one" => "first".into(),
        "two" => "second".into(),
        "three" => "third".into(),
        "five" => "fifth".into(),
        "eight" => "eighth".into(),
        "nine" => "ninth".into(),
        "twelve" => "twelfth".into(),
        _ => match w.strip_suffix('y') {
            Some(stem) => format!("{stem}ieth"),
            None => format!("{w}th"),
        },
    }
}

/// An ordinal in words: `22` → `twenty second`.
pub fn ordinal(n: u64) -> Vec<String> {
    let mut words = cardinal(n);
    if let Some(last) = words.last_mut() {
        *last = ordinal_word(last);
    }
    words
}

fn digits_only(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// `1,000` or `1000` → 1000; `None` for anything else (or too large).
fn parse_grouped(s: &str) -> Option<u64> {
    if digits_only(s) {
        return s.parse().ok().filter(|_| s.len() <= 15);
    }
    let groups: Vec<&str> = s.split(',').collect();
    let well_formed = groups.len() > 1
        && (1..=3).contains(&groups[0].len())
        && groups.iter().all(|g| digits_only(g))
        && groups[1..].iter().all(|g| g.len() == 3);
    if well_formed && s.len() <= 19 {
        s.replace(',', "").parse().ok()
    } else {
        None
    }
}

/// Spell a token that is a number (with an optional `$`, `%`, decimal part or
/// ordinal suffix); `None` if it is not one.
fn spell_number(tok: &str) -> Option<Vec<String>> {
    let (dollars, t) = match tok.strip_prefix('$') {
        Some(rest) => (true, rest),
        None => (false, tok),
    };
    let (percent, t) = match t.strip_suffix('%') {
        Some(rest) => (true, rest),
        None => (false, t),
    };
    for suffix in ["st", "nd", "rd", "th"] {
        if let Some(num) = t.strip_suffix(suffix) {
            if digits_only(num) && !dollars && !percent {
                return num.parse().ok().map(ordinal);
            }
        }
    }
    let (int_part, frac) = match t.split_once('.') {
        Some((i, f)) if digits_only(f) => (i, Some(f)),
        Some(_) => return None,
        None => (t, None),
    };
    let n = parse_grouped(int_part)?;
    let plain_year =
        !dollars && !percent && frac.is_none() && int_part.len() == 4 && digits_only(int_part);
    let mut out = if plain_year { year(n) } else { cardinal(n) };
    if let Some(f) = frac {
        out.push("point".into());
        out.extend(f.bytes().map(|b| ONES[(b - b'0') as usize].to_string()));
    }
    if percent {
        out.push("percent".into());
    }
    if dollars {
        out.push(if n == 1 && frac.is_none() {
            "dollar".into()
        } else {
            "dollars".into()
        });
    }
    Some(out)
}

/// Whole-word rewrites (after lower-casing, before punctuation is dropped).
fn rewrite(w: &str) -> Option<&'static [&'static str]> {
    Some(match w {
        "i'm" => &["i", "am"],
        "won't" => &["will", "not"],
        "can't" | "cannot" => &["can", "not"],
        "shan't" => &["shall", "not"],
        "ain't" => &["is", "not"],
        "let's" => &["let", "us"],
        "it's" => &["it", "is"],
        "that's" => &["that", "is"],
        "there's" => &["there", "is"],
        "here's" => &["here", "is"],
        "what's" => &["what", "is"],
        "where's" => &["where", "is"],
        "who's" => &["who", "is"],
        "how's" => &["how", "is"],
        "he's" => &["he", "is"],
        "she's" => &["she", "is"],
        "gonna" => &["going", "to"],
        "wanna" => &["want", "to"],
        "gotta" => &["got", "to"],
        "yknow" | "y'know" => &["you", "know"],
        "mr" => &["mister"],
        "mrs" => &["missus"],
        "dr" => &["doctor"],
        "ok" => &["okay"],
        _ => return None,
    })
}

const SUFFIXES: [(&str, &str); 5] = [
    ("n't", "not"),
    ("'re", "are"),
    ("'ve", "have"),
    ("'ll", "will"),
    ("'d", "would"),
];

/// Drop `[...]`, `<...>` and `(...)` spans.
fn drop_brackets(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut close: Option<char> = None;
    for c in s.chars() {
        match close {
            Some(end) if c == end => {
                close = None;
                out.push(' ');
            }
            Some(_) => {}
            None => match c {
                '[' => close = Some(']'),
                '<' => close = Some('>'),
                '(' => close = Some(')'),
                _ => out.push(c),
            },
        }
    }
    out
}

fn push_word(w: &str, out: &mut Vec<String>) {
    let clean: String = w.chars().filter(|c| c.is_alphanumeric()).collect();
    if let Some(words) = rewrite(&clean) {
        out.extend(words.iter().map(|w| w.to_string()));
    } else if !clean.is_empty() && !FILLERS.contains(&clean.as_str()) {
        out.push(clean);
    }
}

fn normalise_token(tok: &str, out: &mut Vec<String>) {
    let is_edge = |c: char| !(c.is_alphanumeric() || c == '$' || c == '%' || c == '\'');
    let tok = tok.trim_matches(is_edge).trim_matches('\'');
    if tok.is_empty() {
        return;
    }
    if let Some(words) = spell_number(tok) {
        out.extend(words);
        return;
    }
    // Strip sentence punctuation such as a trailing `.` left by `$`/`%` rules.
    let tok = tok.trim_matches(|c: char| !(c.is_alphanumeric() || c == '\''));
    if let Some(words) = rewrite(tok) {
        words.iter().for_each(|w| push_word(w, out));
        return;
    }
    for (suffix, full) in SUFFIXES {
        if let Some(stem) = tok.strip_suffix(suffix) {
            if !stem.is_empty() {
                push_word(stem, out);
                push_word(full, out);
                return;
            }
        }
    }
    push_word(tok, out);
}

/// The normalised words of `text` (rules in the module docs).
pub fn normalise(text: &str) -> Vec<String> {
    let lower = text.to_lowercase().replace(['\u{2019}', '\u{2018}'], "'");
    let plain = drop_brackets(&lower);
    let mut out = Vec::new();
    for tok in plain.split(|c: char| c.is_whitespace() || matches!(c, '-' | '–' | '—' | '/')) {
        normalise_token(tok, &mut out);
    }
    out
}

/// Error counts of one alignment (or a sum of several).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Reference words.
    pub ref_words: usize,
    /// Hypothesis words.
    pub hyp_words: usize,
    /// Substitutions.
    pub sub: usize,
    /// Deletions (reference words missing from the hypothesis).
    pub del: usize,
    /// Insertions (hypothesis words not in the reference).
    pub ins: usize,
}

impl Counts {
    /// Substitutions + deletions + insertions.
    pub fn errors(&self) -> usize {
        self.sub + self.del + self.ins
    }

    /// Errors / reference words (0 when both are empty; 1 per inserted word
    /// when the reference is empty).
    pub fn wer(&self) -> f64 {
        if self.ref_words == 0 {
            return if self.errors() == 0 { 0.0 } else { 1.0 };
        }
        self.errors() as f64 / self.ref_words as f64
    }

    /// Add another alignment's counts (corpus WER = total errors / total words).
    pub fn add(&mut self, o: &Counts) {
        self.ref_words += o.ref_words;
        self.hyp_words += o.hyp_words;
        self.sub += o.sub;
        self.del += o.del;
        self.ins += o.ins;
    }
}

#[derive(Clone, Copy, Default)]
struct Cell {
    cost: u32,
    sub: u32,
    del: u32,
    ins: u32,
}

impl Cell {
    fn step(self, sub: u32, del: u32, ins: u32) -> Cell {
        Cell {
            cost: self.cost + sub + del + ins,
            sub: self.sub + sub,
            del: self.del + del,
            ins: self.ins + ins,
        }
    }
}

/// Align already-normalised word sequences (minimum edit distance; among
/// equal-cost alignments, substitutions are preferred, then deletions).
/// Memory is linear in the hypothesis length.
pub fn align<S: AsRef<str>>(reference: &[S], hyp: &[S]) -> Counts {
    let mut prev: Vec<Cell> = (0..=hyp.len())
        .map(|j| Cell::default().step(0, 0, j as u32))
        .collect();
    let mut cur = prev.clone();
    for r in reference {
        cur[0] = prev[0].step(0, 1, 0);
        for (j, h) in hyp.iter().enumerate() {
            let diag = prev[j].step(u32::from(r.as_ref() != h.as_ref()), 0, 0);
            let up = prev[j + 1].step(0, 1, 0);
            let left = cur[j].step(0, 0, 1);
            let mut best = diag;
            for c in [up, left] {
                if c.cost < best.cost {
                    best = c;
                }
            }
            cur[j + 1] = best;
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    let end = prev[hyp.len()];
    Counts {
        ref_words: reference.len(),
        hyp_words: hyp.len(),
        sub: end.sub as usize,
        del: end.del as usize,
        ins: end.ins as usize,
    }
}

/// Normalise both texts and align them.
pub fn score(reference: &str, hyp: &str) -> Counts {
    align(&normalise(reference), &normalise(hyp))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> String {
        normalise(s).join(" ")
    }

    #[test]
    fn numbers_are_spelled_out() {
        assert_eq!(n("42"), "forty two");
        assert_eq!(n("1,000 and 1000"), "one thousand and one thousand");
        assert_eq!(
            n("1234567"),
            "one million two hundred thirty four thousand five hundred sixty seven"
        );
        assert_eq!(n("3.5"), "three point five");
        assert_eq!(n("42%"), "forty two percent");
        assert_eq!(n("$5, $1"), "five dollars one dollar");
        assert_eq!(n("in 1984."), "in nineteen eighty four");
        assert_eq!(
            n("1905 1900 2005 2024"),
            "nineteen oh five nineteen hundred two thousand five twenty twenty four"
        );
        assert_eq!(
            n("1st 2nd 3rd 22nd 12th 40th 100th"),
            "first second third twenty second twelfth fortieth one hundredth"
        );
        assert_eq!(n("0"), "zero");
    }

    #[test]
    fn contractions_case_punctuation_and_fillers() {
        assert_eq!(
            n("Uh, I'm sure you don't. It's fine—isn't it? Um..."),
            "i am sure you do not it is fine is not it"
        );
        assert_eq!(
            n("We'll, they've, you'd, can't, cannot"),
            "we will they have you would can not can not"
        );
        assert_eq!(n("Mm-hm. Yeah, o.k."), "yeah okay");
        assert_eq!(
            n("OK, Mr. Dashwood's self-substantial"),
            "okay mister dashwoods self substantial"
        );
        assert_eq!(n("[laughter] so <unk> (coughs) yknow"), "so you know");
        assert_eq!(n("don\u{2019}t"), "do not");
        assert_eq!(n("Wentworth la substitución"), "wentworth la substitución");
    }

    #[test]
    fn alignment_counts_are_hand_checked() {
        // the cat sat on the mat / the cat sit on mat: sat→sit (S), "the" deleted (D).
        let c = score("the cat sat on the mat", "the cat sit on mat");
        assert_eq!((c.sub, c.del, c.ins, c.ref_words), (1, 1, 0, 6));
        assert!((c.wer() - 2.0 / 6.0).abs() < 1e-12);
        // a b c / a x b c d: two insertions.
        let c = score("a b c", "a x b c d");
        assert_eq!((c.sub, c.del, c.ins), (0, 0, 2));
        // Everything deleted, everything inserted.
        assert_eq!(score("a b", "").del, 2);
        let c = score("", "a b");
        assert_eq!((c.ins, c.wer()), (2, 1.0));
        assert_eq!(score("", "").wer(), 0.0);
        // Normalisation makes these equal.
        assert_eq!(
            score("You have been very helpful.", "you've been very helpful").errors(),
            0
        );
        assert_eq!(score("Four days, 2 hours", "4 days two hours").errors(), 0);
        // Three words for one: 1 S + 2 I.
        let c = score("forty", "for tea too");
        assert_eq!((c.sub, c.del, c.ins), (1, 0, 2));
    }

    #[test]
    fn report_sums_and_prints() {
        let r = Report::new(vec![
            ("a.stm".into(), "a.jsonl".into(), score("a b c d", "a x c")),
            ("b.txt".into(), "b.txt".into(), score("e f", "e f")),
        ]);
        assert_eq!((r.total.ref_words, r.total.errors()), (6, 2));
        let t = r.to_text();
        assert!(
            t.contains("corpus (2 files)") && t.contains("50.0%") && t.contains("33.3%"),
            "{t}"
        );
        let j = serde_json::to_value(&r).unwrap();
        assert_eq!(j["files"][0]["sub"], 1);
        assert_eq!(j["files"][0]["del"], 1);
    }

    #[test]
    fn corpus_counts_add_up() {
        let mut total = Counts::default();
        total.add(&score("a b c d", "a x c"));
        total.add(&score("e f", "e f"));
        assert_eq!((total.ref_words, total.errors()), (6, 2));
        assert!((total.wer() - 2.0 / 6.0).abs() < 1e-12);
    }
}

/// The WER of one reference/hypothesis pair.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FileWer {
    /// Reference file.
    pub reference: String,
    /// Hypothesis file (or scored audio).
    pub hypothesis: String,
    /// Counts.
    #[serde(flatten)]
    pub counts: Counts,
    /// Errors / reference words.
    pub wer: f64,
}

/// Per-file and corpus WER (corpus WER = total errors / total reference words).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// One line per pair.
    pub files: Vec<FileWer>,
    /// Sums over the files.
    pub total: Counts,
    /// Corpus WER.
    pub wer: f64,
}

impl Report {
    /// A report over scored pairs `(reference name, hypothesis name, counts)`.
    pub fn new(pairs: Vec<(String, String, Counts)>) -> Report {
        let mut total = Counts::default();
        let files = pairs
            .into_iter()
            .map(|(reference, hypothesis, counts)| {
                total.add(&counts);
                FileWer {
                    reference,
                    hypothesis,
                    wer: counts.wer(),
                    counts,
                }
            })
            .collect();
        Report {
            files,
            wer: total.wer(),
            total,
        }
    }

    /// A fixed-width table.
    pub fn to_text(&self) -> String {
        let row = |name: &str, c: &Counts| {
            format!(
                "{name:<40} {:>6} {:>6} {:>5} {:>5} {:>5} {:>7.1}%\n",
                c.ref_words,
                c.hyp_words,
                c.sub,
                c.del,
                c.ins,
                c.wer() * 100.0
            )
        };
        let mut s = format!(
            "{:<40} {:>6} {:>6} {:>5} {:>5} {:>5} {:>8}\n",
            "reference", "words", "hyp", "sub", "del", "ins", "WER"
        );
        for f in &self.files {
            let name = std::path::Path::new(&f.reference)
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_else(|| f.reference.clone());
            s.push_str(&row(&name, &f.counts));
        }
        s.push_str(&row(
            &format!("corpus ({} files)", self.files.len()),
            &self.total,
        ));
        s
    }
}
