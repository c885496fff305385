//! Call metadata from a recording's file name: `--name-pattern` such as
//! `{agent}_{date}_*` reads `alice_2026-11-30_0915.wav` as agent `alice` on
//! 2026-11-30.
//!
//! Fields: `{agent}` (one or more characters), `{date}` (`YYYY-MM-DD` or
//! `YYYYMMDD`), `{time}` (`HHMM`, `HHMMSS`, `HH-MM` or `HH-MM-SS`); `*`
//! matches anything; every other character matches itself. The pattern is
//! matched against the whole file name without its extension.

use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Lit(char),
    Any,
    Field(String),
}

/// A parsed `--name-pattern`.
#[derive(Debug, Clone)]
pub struct NamePattern {
    toks: Vec<Tok>,
}

/// What a file name said.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NameFields {
    /// `{agent}`.
    pub agent: Option<String>,
    /// `{date}` and `{time}` as ms since the epoch (UTC).
    pub started_unix_ms: Option<u64>,
}

impl NamePattern {
    /// Parse; errors name the problem.
    pub fn parse(p: &str) -> Result<Self, String> {
        let mut toks = Vec::new();
        let mut chars = p.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '*' => toks.push(Tok::Any),
                '{' => {
                    let name: String = chars.by_ref().take_while(|c| *c != '}').collect();
                    if !matches!(name.as_str(), "agent" | "date" | "time") {
                        return Err(format!(
                            "name pattern '{p}': unknown field {{{name}}} (use {{agent}}, {{date}}, {{time}})"
                        ));
                    }
                    toks.push(Tok::Field(name));
                }
                c => toks.push(Tok::Lit(c)),
            }
        }
        if !toks.iter().any(|t| matches!(t, Tok::Field(_))) {
            return Err(format!(
                "name pattern '{p}' has no field: use {{agent}}, {{date}} or {{time}}"
            ));
        }
        Ok(NamePattern { toks })
    }

    /// Match a file name (without extension); None when it does not fit.
    pub fn fields(&self, name: &str) -> Option<NameFields> {
        let chars: Vec<char> = name.chars().collect();
        let mut got = BTreeMap::new();
        if !matches(&self.toks, &chars, &mut got) {
            return None;
        }
        let mut f = NameFields {
            agent: got.get("agent").cloned(),
            started_unix_ms: None,
        };
        if let Some(d) = got.get("date") {
            let t = got.get("time").map(|t| {
                let t: String = t.chars().filter(|c| c.is_ascii_digit()).collect();
                let (h, rest) = t.split_at(2);
                let (m, s) = rest.split_at(2);
                format!("T{h}:{m}:{}Z", if s.is_empty() { "00" } else { s })
            });
            f.started_unix_ms =
                super::time::parse_time(&format!("{d}{}", t.unwrap_or_default())).ok();
        }
        Some(f)
    }
}

fn field_ok(name: &str, v: &[char]) -> bool {
    let s: String = v.iter().collect();
    let digits = |x: &str| x.bytes().all(|b| b.is_ascii_digit());
    match name {
        "date" => {
            (s.len() == 10 && super::time::parse_time(&s).is_ok() && s.contains('-'))
                || (s.len() == 8 && digits(&s) && super::time::parse_time(&s).is_ok())
        }
        "time" => {
            let d: String = s.chars().filter(|c| *c != '-').collect();
            (d.len() == 4 || d.len() == 6)
                && digits(&d)
                && (s.len() == d.len() || s.len() == d.len() + d.len() / 2 - 1)
        }
        _ => !v.is_empty() && !v.contains(&'/'),
    }
}

fn matches(toks: &[Tok], s: &[char], got: &mut BTreeMap<String, String>) -> bool {
    match toks.first() {
        None => s.is_empty(),
        Some(Tok::Lit(c)) => s.first() == Some(c) && matches(&toks[1..], &s[1..], got),
        Some(Tok::Any) => (0..=s.len()).any(|i| matches(&toks[1..], &s[i..], got)),
        Some(Tok::Field(name)) => {
            for i in 1..=s.len() {
                if field_ok(name, &s[..i]) {
                    got.insert(name.clone(), s[..i].iter().collect());
                    if matches(&toks[1..], &s[i..], got) {
                        return true;
                    }
                    got.remove(name);
                }
            }
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_give_agent_and_start() {
        let p = NamePattern::parse("{agent}_{date}_{time}*").unwrap();
        let f = p.fields("alice_2026-11-30_0915_call7").unwrap();
        assert_eq!(f.agent.as_deref(), Some("alice"));
        assert_eq!(
            f.started_unix_ms,
            Some(super::super::time::parse_time("2026-11-30T09:15:00Z").unwrap())
        );
        let p = NamePattern::parse("call-{date}-{agent}").unwrap();
        let f = p.fields("call-20261201-bob_smith").unwrap();
        assert_eq!(f.agent.as_deref(), Some("bob_smith"));
        assert_eq!(
            super::super::time::day(f.started_unix_ms.unwrap()),
            "2026-12-01"
        );
        assert!(p.fields("other-name").is_none());
        assert!(NamePattern::parse("{who}_x").unwrap_err().contains("{who}"));
        assert!(NamePattern::parse("plain").is_err());
    }
}
