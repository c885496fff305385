//! Who is the agent on a mono call: the speaker who opens with a greeting or
//! the company script.
//!
//! Over the call's opening (the first [`RoleConfig::first_turns`] turns that
//! start within [`RoleConfig::within_s`] seconds), each speaker scores one
//! point per script phrase found in their text. The speaker with the most
//! points is the `agent` (a tie goes to the one who said a phrase first);
//! every other speaker is a `customer`. When nobody says a phrase, all stay
//! `unknown`. Text is compared lower-cased, with punctuation dropped and
//! apostrophes removed (`how're` = `howre`), word by word; `*` in a phrase
//! stands for one to four words (`my name is * from`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::event::Role;

/// One turn as the role assignment sees it.
#[derive(Debug, Clone, Copy)]
pub struct RoleTurn<'a> {
    /// Speaker index from diarisation.
    pub speaker: usize,
    /// Transcript.
    pub text: &'a str,
    /// Start, seconds from the start of the call.
    pub start: f64,
}

/// The phrase list and how much of the opening to read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoleConfig {
    /// Script phrases that mark the agent.
    pub phrases: Vec<String>,
    /// Turns of the opening to read.
    pub first_turns: usize,
    /// Only turns that start before this many seconds.
    pub within_s: f64,
}

/// The default script phrases.
pub const DEFAULT_PHRASES: &[&str] = &[
    "thank you for calling",
    "thanks for calling",
    "thank you for contacting",
    "how can i help",
    "how may i help",
    "how can i assist",
    "how may i assist",
    "what can i do for you",
    "my name is * from",
    "this is * from",
    "this is * speaking",
    "you have reached",
    "youve reached",
    "welcome to",
];

impl Default for RoleConfig {
    fn default() -> Self {
        RoleConfig {
            phrases: DEFAULT_PHRASES.iter().map(|s| s.to_string()).collect(),
            first_turns: 4,
            within_s: 60.0,
        }
    }
}

/// Lower-case words without punctuation; apostrophes vanish.
fn words(text: &str) -> Vec<String> {
    text.to_lowercase()
        .chars()
        .filter(|c| *c != '\'' && *c != '’')
        .map(|c| if c.is_alphanumeric() { c } else { ' ' })
        .collect::<String>()
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// Most words one `*` may stand for.
const WILDCARD_MAX: usize = 4;

/// Does `pat` match `text` starting at word `at`?
fn matches_at(text: &[String], at: usize, pat: &[String]) -> bool {
    match pat.split_first() {
        None => true,
        Some((p, rest)) if p == "*" => {
            (1..=WILDCARD_MAX).any(|n| at + n <= text.len() && matches_at(text, at + n, rest))
        }
        Some((p, rest)) => text.get(at) == Some(p) && matches_at(text, at + 1, rest),
    }
}

/// How many of `phrases` occur in `text`.
fn phrase_hits(text: &str, phrases: &[Vec<String>]) -> usize {
    let w = words(text);
    phrases
        .iter()
        .filter(|p| !p.is_empty() && (0..w.len()).any(|i| matches_at(&w, i, p)))
        .count()
}

/// Roles by speaker for `turns` (any order).
pub fn assign_roles(turns: &[RoleTurn], cfg: &RoleConfig) -> BTreeMap<usize, Role> {
    let phrases: Vec<Vec<String>> = cfg.phrases.iter().map(|p| words_keep_star(p)).collect();
    let mut ordered: Vec<&RoleTurn> = turns.iter().collect();
    ordered.sort_by(|a, b| a.start.total_cmp(&b.start));
    // speaker -> (points, order of first hit)
    let mut score: BTreeMap<usize, (usize, usize)> = BTreeMap::new();
    for (i, t) in ordered
        .iter()
        .filter(|t| t.start < cfg.within_s)
        .take(cfg.first_turns)
        .enumerate()
    {
        let hits = phrase_hits(t.text, &phrases);
        if hits > 0 {
            let e = score.entry(t.speaker).or_insert((0, i));
            e.0 += hits;
        }
    }
    let agent = score
        .iter()
        .max_by(|a, b| a.1 .0.cmp(&b.1 .0).then(b.1 .1.cmp(&a.1 .1)))
        .map(|(s, _)| *s);
    ordered
        .iter()
        .map(|t| {
            let role = match agent {
                Some(a) if a == t.speaker => Role::Agent,
                Some(_) => Role::Customer,
                None => Role::Unknown,
            };
            (t.speaker, role)
        })
        .collect()
}

/// Like [`words`] but keeps `*` as a word.
fn words_keep_star(p: &str) -> Vec<String> {
    p.split('*')
        .map(words)
        .collect::<Vec<_>>()
        .join(&["*".to_string()][..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn turn(speaker: usize, start: f64, text: &str) -> RoleTurn<'_> {
        RoleTurn {
            speaker,
            text,
            start,
        }
    }

    #[test]
    fn the_greeter_is_the_agent() {
        let t = [
            turn(
                1,
                0.4,
                "Thank you for calling Acme Bank, my name is Dana. How can I help you today?",
            ),
            turn(0, 4.0, "Hi, I've been charged twice for my card."),
            turn(1, 7.0, "I'm sorry to hear that, let me check."),
        ];
        let r = assign_roles(&t, &RoleConfig::default());
        assert_eq!(r[&1], Role::Agent);
        assert_eq!(r[&0], Role::Customer);
    }

    #[test]
    fn order_of_input_does_not_matter_and_the_customer_may_speak_first() {
        let t = [
            turn(
                0,
                3.0,
                "Hello, you've reached Northwind support, how may I assist?",
            ),
            turn(1, 0.2, "Hello?"),
        ];
        let r = assign_roles(&t, &RoleConfig::default());
        assert_eq!(r[&0], Role::Agent);
        assert_eq!(r[&1], Role::Customer);
    }

    #[test]
    fn wildcards_span_a_company_name() {
        let t = [turn(2, 0.0, "Hi, my name is Sam from Blue Sky Internet.")];
        assert_eq!(assign_roles(&t, &RoleConfig::default())[&2], Role::Agent);
        // Five words between is too many for one `*`.
        let t = [turn(2, 0.0, "my name is a b c d e from")];
        assert_eq!(assign_roles(&t, &RoleConfig::default())[&2], Role::Unknown);
    }

    #[test]
    fn without_a_script_phrase_roles_stay_unknown() {
        let t = [turn(0, 0.0, "Hey, it's me."), turn(1, 1.0, "Oh hi!")];
        let r = assign_roles(&t, &RoleConfig::default());
        assert!(r.values().all(|r| *r == Role::Unknown));
    }

    #[test]
    fn late_greetings_and_custom_phrases() {
        // A phrase after the opening window does not count.
        let t = [
            turn(0, 0.0, "So about my bill."),
            turn(1, 90.0, "Thanks for calling!"),
        ];
        let r = assign_roles(&t, &RoleConfig::default());
        assert_eq!(r[&1], Role::Unknown);
        // A company's own script.
        let cfg = RoleConfig {
            phrases: vec!["good morning * care".into()],
            ..RoleConfig::default()
        };
        let t = [
            turn(0, 0.0, "Good morning, Contoso Care."),
            turn(1, 2.0, "Hi."),
        ];
        let r = assign_roles(&t, &cfg);
        assert_eq!((r[&0], r[&1]), (Role::Agent, Role::Customer));
    }

    #[test]
    fn more_hits_win_and_ties_go_to_the_first() {
        let t = [
            turn(0, 0.0, "Welcome to the show."),
            turn(1, 1.0, "Thank you for calling, how can I help?"),
        ];
        assert_eq!(assign_roles(&t, &RoleConfig::default())[&1], Role::Agent);
        let t = [
            turn(0, 0.0, "Welcome to Acme."),
            turn(1, 1.0, "Thanks for calling."),
        ];
        assert_eq!(assign_roles(&t, &RoleConfig::default())[&0], Role::Agent);
    }
}
