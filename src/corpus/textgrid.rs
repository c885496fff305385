//! Praat TextGrid interval tiers (both the long "ooTextFile" layout and the
//! short one): the word and utterance timings that come with the recordings.
//!
//! Both layouts carry the same values in the same order; only the keys
//! (`xmin = `, `intervals [3]:`) differ. So the parser reads the numbers and
//! quoted strings in order, skipping keys and bracketed indices.

use super::CorpusError;

/// One interval of a tier.
#[derive(Debug, Clone, PartialEq)]
pub struct Interval {
    /// Start, seconds.
    pub start: f64,
    /// End, seconds.
    pub end: f64,
    /// Label ("" for silence).
    pub text: String,
}

/// A named interval tier.
#[derive(Debug, Clone, PartialEq)]
pub struct Tier {
    /// Tier name.
    pub name: String,
    /// Intervals in time order.
    pub intervals: Vec<Interval>,
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Num(f64),
    Str(String),
}

fn tokens(text: &str) -> Vec<Token> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                // A quoted string; `""` is an escaped quote.
                let mut s = String::new();
                while let Some(c) = chars.next() {
                    if c == '"' {
                        if chars.peek() == Some(&'"') {
                            chars.next();
                            s.push('"');
                        } else {
                            break;
                        }
                    } else {
                        s.push(c);
                    }
                }
                out.push(Token::Str(s));
            }
            '[' => {
                // `item [1]:`, `intervals [3]:` — indices, not values.
                for c in chars.by_ref() {
                    if c == ']' {
                        break;
                    }
                }
            }
            c if c.is_ascii_digit() || c == '-' || c == '.' => {
                let mut s = String::from(c);
                while let Some(&d) = chars.peek() {
                    if d.is_ascii_digit() || matches!(d, '.' | 'e' | 'E' | '-' | '+') {
                        s.push(d);
                        chars.next();
                    } else {
                        break;
                    }
                }
                if let Ok(v) = s.parse() {
                    out.push(Token::Num(v));
                }
            }
            c if c.is_alphabetic() => {
                // A key such as `xmin` or `intervals`: skip the word.
                while chars
                    .peek()
                    .is_some_and(|d| d.is_alphanumeric() || *d == '_')
                {
                    chars.next();
                }
            }
            _ => {}
        }
    }
    out
}

struct Reader<'a> {
    toks: std::vec::IntoIter<Token>,
    what: &'a str,
}

impl Reader<'_> {
    fn err(&self, expected: &str) -> CorpusError {
        CorpusError::Reference {
            file: self.what.to_string(),
            reason: format!("not a TextGrid: expected {expected}"),
        }
    }
    fn num(&mut self, expected: &str) -> Result<f64, CorpusError> {
        match self.toks.next() {
            Some(Token::Num(v)) => Ok(v),
            _ => Err(self.err(expected)),
        }
    }
    fn string(&mut self, expected: &str) -> Result<String, CorpusError> {
        match self.toks.next() {
            Some(Token::Str(s)) => Ok(s),
            _ => Err(self.err(expected)),
        }
    }
}

/// Parse the interval tiers of a TextGrid (`what` names it in errors).
/// Point tiers are refused.
pub fn parse(text: &str, what: &str) -> Result<Vec<Tier>, CorpusError> {
    let mut r = Reader {
        toks: tokens(text).into_iter(),
        what,
    };
    // Header: "ooTextFile", "TextGrid", xmin, xmax, tier count.
    r.string("the file type")?;
    r.string("the object class")?;
    r.num("xmin")?;
    r.num("xmax")?;
    let n_tiers = r.num("the tier count")? as usize;
    let mut tiers = Vec::with_capacity(n_tiers.min(64));
    for _ in 0..n_tiers {
        let class = r.string("a tier class")?;
        if class != "IntervalTier" {
            return Err(r.err("an IntervalTier"));
        }
        let name = r.string("a tier name")?;
        r.num("tier xmin")?;
        r.num("tier xmax")?;
        let n = r.num("an interval count")? as usize;
        let mut intervals = Vec::with_capacity(n.min(100_000));
        for _ in 0..n {
            let start = r.num("interval xmin")?;
            let end = r.num("interval xmax")?;
            let text = r.string("interval text")?;
            intervals.push(Interval {
                start,
                end,
                text: text.split_whitespace().collect::<Vec<_>>().join(" "),
            });
        }
        tiers.push(Tier { name, intervals });
    }
    Ok(tiers)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LONG: &str = r#"File type = "ooTextFile"
Object class = "TextGrid"

xmin = 0
xmax = 3.5
tiers? <exists>
size = 1
item []:
    item [1]:
        class = "IntervalTier"
        name = "michael"
        xmin = 0
        xmax = 3.5
        intervals: size = 2
        intervals [1]:
            xmin = 0
            xmax = 1.25
            text = ""
        intervals [2]:
            xmin = 1.25
            xmax = 3.5
            text = "he said ""hi""
there"
"#;

    const SHORT: &str = "File type = \"ooTextFile\"\nObject class = \"TextGrid\"\n\n0\n3.5\n<exists>\n1\n\"IntervalTier\"\n\"michael\"\n0\n3.5\n2\n0\n1.25\n\"\"\n1.25\n3.5\n\"he said \"\"hi\"\" there\"\n";

    #[test]
    fn long_and_short_layouts_agree() {
        let a = parse(LONG, "long").unwrap();
        let b = parse(SHORT, "short").unwrap();
        assert_eq!(a, b);
        assert_eq!(a[0].name, "michael");
        assert_eq!(a[0].intervals[1].text, "he said \"hi\" there");
        assert_eq!(a[0].intervals[1].start, 1.25);
    }

    #[test]
    fn truncated_file_is_an_error() {
        let e = parse(&SHORT[..SHORT.len() - 30], "cut.TextGrid").unwrap_err();
        assert!(e.to_string().contains("cut.TextGrid"), "{e}");
    }
}
